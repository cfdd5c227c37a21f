//! Where NDJSON goes besides standard output: a rotated file (also the spool the network
//! outputs will read from), a syslog collector.

pub mod file;
pub mod syslog;
