//! Where NDJSON goes besides standard output: a rotated file (also the spool the network
//! outputs read from), a syslog collector, HTTP bulk receivers.

pub mod file;
pub mod ship;
pub mod syslog;
