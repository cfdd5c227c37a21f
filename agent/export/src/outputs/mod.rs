//! Where NDJSON goes besides standard output: a rotated file (`file`), which is also the
//! spool the network outputs ship from (`ship`: HTTP bulk receivers, Kafka, syslog), and
//! the syslog messages' RFC 5424 layout (`syslog`).

pub mod file;
pub mod ship;
pub mod syslog;
