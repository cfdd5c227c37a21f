//! Command-line options of the outputs: the NDJSON file's rotation and fsync (`-o FILE`),
//! and syslog (`--syslog tcp://HOST:PORT`).

use std::time::Duration;

use clap::{Args, ValueEnum};
use anyhow::{bail, Context, Result};
use kcd_export::outputs::file::{Fsync, Rotation};
use kcd_export::outputs::syslog::{SyslogConfig, SyslogWriter, Transport};

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum FsyncArg {
    /// Leave it to the kernel.
    Never,
    /// Sync each file when it is rotated or closed (and the directory after the rename).
    Rotate,
    /// As `rotate`, and the current file at most once a second.
    Second,
    /// After every write.
    Always,
}

#[derive(Args)]
pub(crate) struct OutputArgs {
    /// Also send every event to a syslog collector, as RFC 5424 messages: tcp://HOST:PORT
    /// (octet-counted framing, RFC 6587), tls://HOST:PORT (RFC 5425; with --syslog-ca) or
    /// udp://HOST:PORT. In the layout of --format.
    #[arg(long, value_name = "URL")]
    syslog: Option<String>,

    /// With --syslog tls://: the CA certificates (PEM) the collector's certificate must
    /// chain to; it must also carry HOST.
    #[arg(long, value_name = "FILE")]
    syslog_ca: Option<std::path::PathBuf>,

    /// With -o: start a new file before the current one would pass this many bytes
    /// (the old one becomes FILE.000001, FILE.000002...; a line is never split).
    #[arg(long, value_name = "BYTES", requires = "output")]
    rotate_bytes: Option<u64>,

    /// With -o: start a new file when the current one is this many seconds old.
    #[arg(long, value_name = "SECONDS", requires = "output")]
    rotate_seconds: Option<u64>,

    /// With -o and rotation: keep this many rotated files, deleting the oldest.
    #[arg(long, value_name = "N", requires = "output")]
    rotate_keep: Option<usize>,

    /// With -o: when to fsync the file.
    #[arg(long, value_enum, default_value = "rotate", requires = "output")]
    fsync: FsyncArg,
}

impl OutputArgs {
    pub(crate) fn syslog_writer(&self, format: kcd_export::Format) -> Result<Option<SyslogWriter>> {
        let Some(url) = &self.syslog else { return Ok(None) };
        let (transport, rest) = match url.split_once("://") {
            Some(("tcp", r)) => (Transport::Tcp, r),
            Some(("udp", r)) => (Transport::Udp, r),
            Some(("tls", r)) => (Transport::Tls, r),
            _ => bail!("--syslog {url}: expected tcp://, tls:// or udp://HOST:PORT"),
        };
        let addr = std::net::ToSocketAddrs::to_socket_addrs(rest)
            .with_context(|| format!("--syslog {url}: cannot resolve {rest}"))?
            .next()
            .with_context(|| format!("--syslog {url}: {rest} has no address"))?;
        let mut cfg = SyslogConfig::new(addr, transport);
        cfg.format = format;
        if transport == Transport::Tls {
            let Some(ca) = &self.syslog_ca else { bail!("--syslog {url}: --syslog-ca FILE is needed for TLS") };
            let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h).trim_matches(['[', ']']);
            cfg.tls = Some((kcd_export::outputs::syslog::tls_config(ca)?, host.to_string()));
        }
        SyslogWriter::connect(cfg).with_context(|| format!("--syslog {url}: cannot connect")).map(Some)
    }

    pub(crate) fn rotation(&self) -> Rotation {
        Rotation {
            max_bytes: self.rotate_bytes,
            max_age: self.rotate_seconds.map(Duration::from_secs),
            keep: self.rotate_keep,
            fsync: match self.fsync {
                FsyncArg::Never => Fsync::Never,
                FsyncArg::Rotate => Fsync::Rotate,
                FsyncArg::Second => Fsync::Interval(Duration::from_secs(1)),
                FsyncArg::Always => Fsync::Always,
            },
        }
    }
}
