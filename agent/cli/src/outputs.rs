//! Command-line options of the outputs: the NDJSON file's rotation and fsync (`-o FILE`),
//! and the network outputs that ship it (`--bulk`, `--hec`, `--kafka`, `--syslog`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use anyhow::{bail, Context, Result};
use kcd_export::outputs::file::{Fsync, Rotation};
use kcd_export::outputs::ship::policy::{Backoff, BatchLimits};
use kcd_export::outputs::ship::{KafkaTarget, Kind, Secret, ShipConfig, ShipCounters, StopWhen};
use kcd_export::outputs::syslog::{SyslogTarget, Transport};

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
    #[command(flatten)]
    pub(crate) file: RotationArgs,

    #[command(flatten)]
    pub(crate) ship: ShipArgs,

    #[command(flatten)]
    pub(crate) filter: FilterArgs,
}

/// Rotation and fsync of the NDJSON file (replay's and watch's -o, the gateway's --events).
#[derive(Args, Clone, Default)]
pub(crate) struct RotationArgs {
    /// Of the NDJSON file: start a new file before the current one would pass this many
    /// bytes (the old one becomes FILE.000001, FILE.000002...; a line is never split).
    #[arg(long, value_name = "BYTES")]
    rotate_bytes: Option<u64>,

    /// Of the NDJSON file: start a new file when the current one is this many seconds old.
    #[arg(long, value_name = "SECONDS")]
    rotate_seconds: Option<u64>,

    /// Of the NDJSON file, with rotation: keep this many rotated files, deleting the oldest.
    #[arg(long, value_name = "N")]
    rotate_keep: Option<usize>,

    /// Of the NDJSON file: when to fsync it (default: rotate).
    #[arg(long, value_enum)]
    fsync: Option<FsyncArg>,

    /// Of the NDJSON file: bound it and its rotated files together to this many bytes (the
    /// spool of --bulk/--hec/--kafka/--syslog): the oldest rotated files are deleted, and the events
    /// in them not yet shipped are counted as dropped. Rotates at an eighth of it unless
    /// --rotate-bytes says otherwise.
    #[arg(long, value_name = "BYTES")]
    spool_max_bytes: Option<u64>,
}

impl RotationArgs {
    /// Whether any option was given (they need a file to apply to).
    pub(crate) fn given(&self) -> bool {
        self.rotate_bytes.is_some() || self.rotate_seconds.is_some() || self.rotate_keep.is_some() || self.fsync.is_some() || self.spool_max_bytes.is_some()
    }

    /// The rotation of `spool`, which `ship`'s outputs read (their checkpoints are counted
    /// against when the spool is bounded).
    pub(crate) fn rotation(&self, spool: &Path, ship: &ShipArgs) -> Rotation {
        Rotation {
            max_bytes: self.rotate_bytes.or(self.spool_max_bytes.map(|m| (m / 8).max(4096))),
            max_total_bytes: self.spool_max_bytes,
            checkpoints: ship.checkpoints(spool),
            max_age: self.rotate_seconds.map(Duration::from_secs),
            keep: self.rotate_keep,
            fsync: match self.fsync.unwrap_or(FsyncArg::Rotate) {
                FsyncArg::Never => Fsync::Never,
                FsyncArg::Rotate => Fsync::Rotate,
                FsyncArg::Second => Fsync::Interval(Duration::from_secs(1)),
                FsyncArg::Always => Fsync::Always,
            },
        }
    }
}

impl OutputArgs {
    pub(crate) fn rotation(&self, spool: &Path) -> Rotation {
        self.file.rotation(spool, &self.ship)
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum SeverityArg {
    Info,
    Warning,
    Error,
}

/// `--event-types` names: the schema's own (`EventType::as_str`).
fn event_type_parser() -> impl clap::builder::TypedValueParser<Value = kcd_schema::EventType> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(kcd_schema::EventType::ALL.map(kcd_schema::EventType::as_str))
        .try_map(|s: String| kcd_schema::EventType::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| format!("unknown event type {s}")))
}

/// Which events the outputs get (standard output and -o, and so the network outputs that
/// ship -o).
#[derive(Args)]
pub(crate) struct FilterArgs {
    /// Only events of these types (comma-separated).
    #[arg(long, value_name = "TYPE,...", value_delimiter = ',', value_parser = event_type_parser())]
    event_types: Vec<kcd_schema::EventType>,

    /// Leave out findings below this severity (events that are not findings are kept).
    #[arg(long, value_enum, value_name = "SEVERITY")]
    min_severity: Option<SeverityArg>,
}

impl FilterArgs {
    pub(crate) fn filter(&self) -> kcd_export::filter::EventFilter {
        use kcd_schema::Severity as S;
        kcd_export::filter::EventFilter {
            types: (!self.event_types.is_empty()).then(|| self.event_types.clone()),
            min_severity: self.min_severity.map(|s| match s {
                SeverityArg::Info => S::Info,
                SeverityArg::Warning => S::Warning,
                SeverityArg::Error => S::Error,
            }),
        }
    }
}

/// The network outputs, which ship the NDJSON file (the spool) from a checkpoint beside it
/// (FILE.bulk.checkpoint, FILE.hec.checkpoint, FILE.kafka.checkpoint, FILE.syslog.checkpoint).
#[derive(Args, Clone)]
pub(crate) struct ShipArgs {
    /// Ship the events to Elasticsearch/OpenSearch with `_bulk` (create, with the event's id):
    /// http(s)://HOST:PORT/INDEX.
    #[arg(long, value_name = "URL")]
    bulk: Option<String>,

    /// With --bulk: a file holding the Authorization header's value (`ApiKey ...`,
    /// `Basic ...`). Read from a file so that it is not on the command line.
    #[arg(long, value_name = "FILE")]
    bulk_auth_file: Option<PathBuf>,

    /// Ship the events to a Splunk HTTP Event Collector: http(s)://HOST:PORT (the path
    /// /services/collector/event is added when absent). Needs --hec-token-file.
    #[arg(long, value_name = "URL")]
    hec: Option<String>,

    /// With --hec: a file holding the HEC token.
    #[arg(long, value_name = "FILE")]
    hec_token_file: Option<PathBuf>,

    /// Ship the events to Kafka, to the bootstrap brokers HOST:PORT[,HOST:PORT...]. Each
    /// record is keyed by the event's flow (Community ID) and goes to the partition Kafka's
    /// default partitioner picks for that key, so a flow's events stay in order.
    #[arg(long, value_name = "HOST:PORT,...")]
    kafka: Option<String>,

    /// With --kafka: the topic (it must exist).
    #[arg(long, value_name = "NAME", default_value = "kcdscope")]
    kafka_topic: String,

    /// With --kafka: connect over TLS; the CA certificates (PEM) the brokers' certificates
    /// must chain to.
    #[arg(long, value_name = "FILE")]
    kafka_ca: Option<PathBuf>,

    /// Ship the events to a syslog collector as RFC 5424 messages: tcp://HOST:PORT
    /// (octet-counted framing, RFC 6587), tls://HOST:PORT (RFC 5425; with --syslog-ca) or
    /// udp://HOST:PORT (one datagram per event).
    #[arg(long, value_name = "URL")]
    syslog: Option<String>,

    /// With --syslog tls://: the CA certificates (PEM) the collector's certificate must
    /// chain to; it must also carry HOST.
    #[arg(long, value_name = "FILE")]
    syslog_ca: Option<PathBuf>,

    /// With --hec: the events' sourcetype.
    #[arg(long, value_name = "NAME", default_value = "kcdscope")]
    hec_sourcetype: String,

    /// For https:// receivers: the CA certificates (PEM) their certificate must chain to.
    #[arg(long, value_name = "FILE")]
    ship_ca: Option<PathBuf>,

    /// Most events in one request.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    batch_events: usize,

    /// Most bytes of events in one request.
    #[arg(long, value_name = "BYTES", default_value_t = 5 << 20)]
    batch_bytes: usize,

    /// Milliseconds a batch that is not full waits for more events.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    batch_linger_ms: u64,

    /// Longest pause between two attempts (capped exponential backoff from 100 ms, jittered).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    retry_max_seconds: u64,

    /// When the events are all written (end of a replay, a stop), how long to keep trying
    /// to ship the rest; what is left stays in the spool for the next run.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    ship_drain_seconds: u64,
}

/// The shipping threads of one spool.
pub(crate) struct Shippers {
    threads: Vec<(String, Arc<ShipCounters>, std::thread::JoinHandle<std::io::Result<()>>)>,
    when: StopWhen,
}

fn secret_file(p: &Path, what: &str) -> Result<String> {
    let s = std::fs::read_to_string(p).with_context(|| format!("{what}: cannot read {}", p.display()))?;
    let s = s.trim().to_string();
    if s.is_empty() {
        bail!("{what}: {} is empty", p.display());
    }
    Ok(s)
}

impl ShipArgs {
    pub(crate) fn any(&self) -> bool {
        self.bulk.is_some() || self.hec.is_some() || self.kafka.is_some() || self.syslog.is_some()
    }

    /// The checkpoint files of the outputs asked for, beside `spool`.
    pub(crate) fn checkpoints(&self, spool: &Path) -> Vec<PathBuf> {
        let mut v = Vec::new();
        if self.bulk.is_some() {
            v.push(checkpoint_path(spool, "bulk"));
        }
        if self.hec.is_some() {
            v.push(checkpoint_path(spool, "hec"));
        }
        if self.kafka.is_some() {
            v.push(checkpoint_path(spool, "kafka"));
        }
        if self.syslog.is_some() {
            v.push(checkpoint_path(spool, "syslog"));
        }
        v
    }

    pub(crate) fn configs(&self, spool: &Path) -> Result<Vec<ShipConfig>> {
        let mut out = Vec::new();
        let tls = match &self.ship_ca {
            Some(ca) => Some(kcd_export::outputs::syslog::tls_config(ca)?),
            None => None,
        };
        let parse = |flag: &str, url: &str| -> Result<hyper::Uri> {
            let u: hyper::Uri = url.parse().with_context(|| format!("{flag} {url:?} is not a URL"))?;
            match u.scheme_str() {
                Some("http") => {}
                Some("https") if tls.is_some() => {}
                Some("https") => bail!("{flag} {url}: https:// needs --ship-ca FILE"),
                _ => bail!("{flag} {url}: expected http:// or https://"),
            }
            if u.host().is_none() {
                bail!("{flag} {url}: no host");
            }
            Ok(u)
        };
        let with_path = |u: &hyper::Uri, path: &str| -> Result<hyper::Uri> {
            let mut parts = u.clone().into_parts();
            parts.path_and_query = Some(path.parse().with_context(|| format!("{path:?} is not a URL path"))?);
            Ok(hyper::Uri::from_parts(parts)?)
        };
        let common = |c: &mut ShipConfig| {
            c.tls = tls.clone();
            c.batch = BatchLimits {
                max_events: self.batch_events.max(1),
                max_bytes: self.batch_bytes.max(1),
                linger: Duration::from_millis(self.batch_linger_ms),
            };
            c.backoff = Backoff { base: Duration::from_millis(100), cap: Duration::from_secs(self.retry_max_seconds.max(1)) };
        };
        if let Some(url) = &self.bulk {
            let u = parse("--bulk", url)?;
            let index = u.path().trim_matches('/');
            let index = if index.is_empty() { "kcdscope" } else { index };
            if index.contains('/') || index.starts_with('_') {
                bail!("--bulk {url}: the path is the index name (http://HOST:PORT/INDEX)");
            }
            let mut c = ShipConfig::new(Kind::Bulk, with_path(&u, &format!("/{index}/_bulk"))?, spool, checkpoint_path(spool, "bulk"));
            if let Some(p) = &self.bulk_auth_file {
                c.authorization = Some(Secret::new(secret_file(p, "--bulk-auth-file")?));
            }
            common(&mut c);
            out.push(c);
        }
        if let Some(url) = &self.hec {
            let u = parse("--hec", url)?;
            let u = if u.path() == "/" { with_path(&u, "/services/collector/event")? } else { u };
            let Some(p) = &self.hec_token_file else { bail!("--hec {url}: --hec-token-file FILE is needed") };
            let mut c = ShipConfig::new(Kind::Hec, u, spool, checkpoint_path(spool, "hec"));
            c.authorization = Some(Secret::new(format!("Splunk {}", secret_file(p, "--hec-token-file")?)));
            c.sourcetype = self.hec_sourcetype.clone();
            common(&mut c);
            out.push(c);
        }
        if let Some(list) = &self.kafka {
            let brokers: Vec<String> = list.split(',').map(str::trim).filter(|b| !b.is_empty()).map(str::to_string).collect();
            if brokers.is_empty() || brokers.iter().any(|b| b.contains("://") || b.rsplit_once(':').is_none_or(|(_, p)| p.parse::<u16>().is_err())) {
                bail!("--kafka {list}: expected HOST:PORT[,HOST:PORT...]");
            }
            if self.kafka_topic.is_empty() {
                bail!("--kafka-topic: empty");
            }
            let mut c = ShipConfig::new(Kind::Kafka, hyper::Uri::default(), spool, checkpoint_path(spool, "kafka"));
            c.kafka = Some(KafkaTarget { brokers, topic: self.kafka_topic.clone() });
            common(&mut c);
            c.tls = match &self.kafka_ca {
                Some(ca) => Some(kcd_export::outputs::syslog::tls_config(ca)?),
                None => None,
            };
            out.push(c);
        }
        if let Some(url) = &self.syslog {
            let (transport, rest) = match url.split_once("://") {
                Some(("tcp", r)) => (Transport::Tcp, r),
                Some(("udp", r)) => (Transport::Udp, r),
                Some(("tls", r)) => (Transport::Tls, r),
                _ => bail!("--syslog {url}: expected tcp://, tls:// or udp://HOST:PORT"),
            };
            let Some((host, port)) = rest.rsplit_once(':') else { bail!("--syslog {url}: expected HOST:PORT") };
            let host = host.trim_matches(['[', ']']);
            let Ok(port) = port.parse::<u16>() else { bail!("--syslog {url}: {port:?} is not a port") };
            if host.is_empty() {
                bail!("--syslog {url}: no host");
            }
            let mut c = ShipConfig::new(Kind::Syslog, hyper::Uri::default(), spool, checkpoint_path(spool, "syslog"));
            c.syslog = Some(SyslogTarget::new(host, port, transport));
            common(&mut c);
            c.tls = match (transport, &self.syslog_ca) {
                (Transport::Tls, Some(ca)) => Some(kcd_export::outputs::syslog::tls_config(ca)?),
                (Transport::Tls, None) => bail!("--syslog {url}: --syslog-ca FILE is needed for TLS"),
                _ => None,
            };
            out.push(c);
        }
        Ok(out)
    }

    /// Starts one thread per output on `spool`; `stop` stops them at once (keeping their
    /// checkpoints), `Shippers::finish` lets them ship what is left first.
    pub(crate) fn start(&self, spool: &Path, stop: Arc<AtomicBool>) -> Result<Shippers> {
        let when = StopWhen { stop, drain: Arc::new(AtomicBool::new(false)), drain_timeout: Duration::from_secs(self.ship_drain_seconds) };
        let mut threads = Vec::new();
        for cfg in self.configs(spool)? {
            let counters = Arc::new(ShipCounters::default());
            let (c2, w2, name) = (counters.clone(), when.clone(), cfg.name.clone());
            let h = std::thread::Builder::new()
                .name(format!("ship-{name}"))
                .spawn(move || kcd_export::outputs::ship::run(&cfg, &c2, &w2))
                .context("cannot start a shipping thread")?;
            threads.push((name, counters, h));
        }
        Ok(Shippers { threads, when })
    }
}

/// The outputs' warnings (retries, refusals) on standard error; the Kafka client's own
/// informational lines (each new connection) are left out.
pub(crate) fn log_to_stderr() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .try_init();
}

pub(crate) fn checkpoint_path(spool: &Path, name: &str) -> PathBuf {
    let mut p = spool.as_os_str().to_owned();
    p.push(format!(".{name}.checkpoint"));
    PathBuf::from(p)
}

impl Shippers {
    /// The outputs' counters, for the gateway's /metrics.
    pub(crate) fn metrics(&self) -> kcd_export::outputs::ship::ShipMetrics {
        kcd_export::outputs::ship::ShipMetrics(self.threads.iter().map(|(n, c, _)| (n.clone(), c.clone())).collect())
    }

    /// Tells the outputs that nothing more will be written, waits for them to ship the rest
    /// (or to give up) and prints their counters. False when one failed.
    pub(crate) fn finish(self, quiet: bool) -> bool {
        self.when.drain.store(true, Ordering::SeqCst);
        let mut ok = true;
        for (name, c, h) in self.threads {
            let r = h.join();
            let line = c.summary(&name);
            match r {
                Ok(Ok(())) => {
                    if !quiet || ShipCounters::get(&c.rejected) > 0 || ShipCounters::get(&c.gaps) > 0 {
                        eprintln!("kcdscope: {line}");
                    }
                }
                Ok(Err(e)) => {
                    eprintln!("kcdscope: {line}; {e}");
                    ok = false;
                }
                Err(_) => {
                    eprintln!("kcdscope: {name}: the shipping thread failed");
                    ok = false;
                }
            }
        }
        ok
    }
}

/// `kcdscope ship`: ship a spool written by another process (the gateway's --events, a
/// `watch -o`), from the checkpoints beside it.
#[derive(Args)]
pub(crate) struct ShipCommand {
    /// The NDJSON file (and its rotated FILE.000001...) to ship.
    #[arg(value_name = "FILE")]
    spool: PathBuf,

    /// Keep following the file as it grows, until SIGINT or SIGTERM; without it, ship
    /// what is there and stop.
    #[arg(long)]
    follow: bool,

    #[command(flatten)]
    ship: ShipArgs,

    /// No counters on standard error.
    #[arg(short, long)]
    quiet: bool,
}

pub(crate) fn ship_command(a: ShipCommand) -> Result<std::process::ExitCode> {
    if !a.ship.any() {
        bail!("ship: nothing to ship to (--bulk URL, --hec URL, --kafka BROKERS, --syslog URL)");
    }
    log_to_stderr();
    let stop = Arc::new(AtomicBool::new(false));
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, term.clone()).context("cannot handle signals")?;
    }
    let s = a.ship.start(&a.spool, stop.clone())?;
    if a.follow {
        while !term.load(Ordering::SeqCst) && s.threads.iter().any(|(_, _, h)| !h.is_finished()) {
            std::thread::sleep(Duration::from_millis(50));
        }
        // A stop keeps the checkpoints where they are: what is unshipped goes next time.
        stop.store(true, Ordering::SeqCst);
    }
    Ok(if s.finish(a.quiet) { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::from(1) })
}
