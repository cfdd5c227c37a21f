//! kcdscope: the command line. Argument parsing and wiring only; the work is in the
//! library crates.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;

use clap::ValueEnum;
use kcd_capture::{replay_file, replay_reader, Ending, ReaderError};
use kcd_correlate::Correlator;
use kcd_decode::{Config, Decoder, Sink};
use kcd_export::report::{self, Style};
use kcd_export::{NdjsonWriter, Tee, TextWriter};
use kcd_schema::{Event, Severity};

mod demo;
mod gateway;
mod kcd;
mod outputs;
mod pipeline;
mod tui;
mod watch;

#[derive(Parser)]
#[command(
    name = "kcdscope",
    version,
    about = "Explains Kerberos constrained delegation (S4U2Self/S4U2Proxy) failures: decodes Kerberos from captures, finds what is wrong and says how to fix it.",
    long_about = "Explains Kerberos constrained delegation (S4U2Self/S4U2Proxy) failures.\n\nWith no command, replays the incident captures built into kcdscope and prints the incident report (kcdscope replay --demo --report)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

// Parsed once per run: the size of the replay's arguments does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Replay capture files (pcap or pcapng) and report every Kerberos message.
    Replay(ReplayArgs),
    /// The terminal UI for incidents: devices and their story, KDCs, findings, events.
    Tui(tui::TuiArgs),
    /// The gateway's Kerberos constrained delegation client (S4U2Self + S4U2Proxy).
    Kcd {
        #[command(subcommand)]
        command: kcd::KcdCommand,
    },
    /// The gateway: device client certificates -> Kerberos constrained delegation -> Exchange.
    Gateway(gateway::GatewayArgs),
    /// Ship an NDJSON events file (the gateway's --events, watch -o) to Elasticsearch/
    /// OpenSearch, Splunk HEC, Kafka or syslog, from a checkpoint beside it.
    Ship(outputs::ShipCommand),
    /// Capture live (eBPF, or libpcap) and explain what happens as it happens.
    Watch(watch::WatchArgs),
}

#[derive(Args)]
struct ReplayArgs {
    /// Capture files, read in the order given ("-" reads standard input). State carries
    /// over from one file to the next, so a rotated capture reads as one.
    #[arg(value_name = "FILE", required_unless_present = "demo")]
    files: Vec<PathBuf>,

    /// Replay the incident captures built into kcdscope (instead of, or before, FILEs).
    #[arg(long)]
    demo: bool,

    /// Write events as NDJSON (one JSON object per line) to standard output.
    #[arg(long)]
    json: bool,

    /// Write events as NDJSON to this file.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Layout of the NDJSON: kcdscope's own schema (eve), or Elastic Common Schema names
    /// (ecs; see the README's ECS mapping).
    #[arg(long, value_enum, default_value = "eve")]
    format: JsonFormat,

    #[command(flatten)]
    outputs: outputs::OutputArgs,

    /// Do not print the summary line on standard error.
    #[arg(short, long)]
    quiet: bool,

    /// Only count: decode everything, print the summary line, list nothing.
    #[arg(long, conflicts_with_all = ["json", "quiet", "report"])]
    count: bool,

    /// Print the incident report (findings with their fixes, KDCs, delegation chains,
    /// client hosts) instead of the message listing.
    #[arg(long, conflicts_with = "json")]
    report: bool,

    /// Exit with status 3 when a finding of this severity or worse exists.
    #[arg(long, value_name = "SEVERITY")]
    fail_on: Option<FailOn>,

    /// Decode only: no correlation, no findings.
    #[arg(long, conflicts_with_all = ["report", "fail_on"])]
    no_diagnosis: bool,

    /// Open the terminal UI on these captures instead of printing.
    #[arg(long, conflicts_with_all = ["json", "output", "count", "report", "no_diagnosis"])]
    tui: bool,

    /// The gateway's own events (its `--events` NDJSON file), joined with the capture in
    /// time order: devices, certificates, refusals and Exchange's answers.
    #[arg(long, value_name = "FILE")]
    gateway_events: Option<PathBuf>,

    #[command(flatten)]
    diagnosis: DiagnosisArgs,

    #[command(flatten)]
    limits: Limits,
}

#[derive(Clone, Copy, ValueEnum)]
enum JsonFormat {
    Eve,
    Ecs,
}

#[derive(Clone, Copy, ValueEnum)]
enum FailOn {
    Warning,
    Error,
}

/// Thresholds of the diagnosis.
#[derive(Args)]
pub(crate) struct DiagnosisArgs {
    /// Seconds after which a request nobody answered counts as unanswered.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    unanswered_after: f64,
    /// Seconds a client has, after RESPONSE_TOO_BIG, to send its request again over TCP.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    tcp_retry_window: f64,
    /// KDC clock offset (seconds) that is worth a warning; Kerberos fails at 300.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    clock_offset_warning: f64,
}

impl DiagnosisArgs {
    pub(crate) fn config(&self) -> kcd_correlate::Config {
        let ns = |s: f64| (s.max(0.0) * 1e9) as i64;
        kcd_correlate::Config {
            unanswered_after_ns: ns(self.unanswered_after),
            tcp_retry_window_ns: ns(self.tcp_retry_window),
            clock_offset_warning_s: self.clock_offset_warning.abs(),
            ..Default::default()
        }
    }
}

/// Ports and memory caps. Defaults suit a gateway host; every cap bounds memory whatever
/// the capture holds.
#[derive(Args)]
pub(crate) struct Limits {
    /// Port carrying Kerberos (repeat for several).
    #[arg(long = "krb5-port", value_name = "PORT", default_value = "88")]
    krb5_ports: Vec<u16>,
    /// Port carrying TLS (repeat for several); TLS on other ports is recognised by its
    /// ClientHello unless --no-tls-detect.
    #[arg(long = "tls-port", value_name = "PORT", default_value = "443")]
    tls_ports: Vec<u16>,
    /// Do not look for TLS ClientHellos on unconfigured ports.
    #[arg(long)]
    no_tls_detect: bool,
    /// Port carrying cleartext HTTP: CRL distribution points, Exchange behind a gateway
    /// (repeat for several).
    #[arg(long = "http-port", value_name = "PORT", default_value = "80")]
    http_ports: Vec<u16>,
    /// Largest HTTP response body kept to be read (CRLs); larger CRLs are reported unread.
    #[arg(long, value_name = "BYTES", default_value_t = 2 * 1024 * 1024)]
    max_http_body: usize,
    /// TCP connections tracked at once.
    #[arg(long, value_name = "N", default_value_t = kcd_decode::TCP_FLOWS)]
    max_tcp_flows: usize,
    /// Bytes one TCP direction may hold for reassembly.
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024)]
    max_flow_buffer: usize,
    /// Bytes all TCP connections together may hold for reassembly.
    #[arg(long, value_name = "BYTES", default_value_t = 32 * 1024 * 1024)]
    max_reassembly_memory: usize,
    /// Longest Kerberos message accepted over TCP.
    #[arg(long, value_name = "BYTES", default_value_t = 128 * 1024)]
    max_krb5_record: usize,
    /// Seconds of capture time after which an idle TCP connection is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    tcp_idle_timeout: u32,
    /// Seconds after which a request without a reply is given up.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    request_timeout: u32,
    /// UDP client/KDC pairs with requests awaiting replies.
    #[arg(long, value_name = "N", default_value_t = kcd_decode::PENDING_UDP)]
    max_pending_requests: usize,
    /// IP datagrams being reassembled from fragments at once.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_fragment_sets: usize,
    /// MIT keytab (Exchange's, the gateway's, `samba-tool domain exportkeytab`'s): tickets
    /// on the wire (port 88 and HTTP Negotiate) are decrypted to tell whether their key is
    /// in it, whose they are, their times and PAC. Keys are never shown.
    #[arg(long, value_name = "FILE", value_parser = load_keytab)]
    keytab: Option<Arc<kcd_decode::keytab::Keytab>>,
}

fn load_keytab(path: &str) -> Result<Arc<kcd_decode::keytab::Keytab>, String> {
    let raw = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let k = kcd_decode::keytab::Keytab::parse(&raw).map_err(|e| format!("{path}: {e}"))?;
    if k.is_empty() {
        return Err(format!("{path} holds no keys"));
    }
    Ok(Arc::new(k))
}

impl Limits {
    pub(crate) fn config(&self) -> Config {
        let s = |secs: u32| i64::from(secs) * 1_000_000_000;
        Config {
            krb5_ports: self.krb5_ports.clone(),
            tls_ports: self.tls_ports.clone(),
            tls_detect: !self.no_tls_detect,
            http_ports: self.http_ports.clone(),
            max_http_body_kept: self.max_http_body,
            max_tcp_flows: self.max_tcp_flows.max(1),
            max_flow_buffer: self.max_flow_buffer,
            max_reassembly_memory: self.max_reassembly_memory,
            max_krb5_record: self.max_krb5_record,
            tcp_idle_timeout_ns: s(self.tcp_idle_timeout),
            max_pending_udp: self.max_pending_requests.max(1),
            request_timeout_ns: s(self.request_timeout),
            max_fragment_sets: self.max_fragment_sets,
            fragment_timeout_ns: s(30),
            keytab: self.keytab.clone(),
            ..Config::default()
        }
    }
}

// jemalloc rather than glibc's malloc, measured (README, "Side by side with nginx", (4)): a
// gateway holding thousands of idle Pings keeps buffers sized for the worst case (hyper's 8
// KiB read and write buffers per connection, tokio's 32-slot channel block per Exchange
// connection) of which it writes a few hundred bytes: 36.7 KiB per held Ping with jemalloc,
// 48.5 with glibc, 60.8 with mimalloc. (Likely why: jemalloc keeps its metadata apart from
// the blocks, so the pages of a buffer that were never written are never resident, where
// glibc writes a chunk header between neighbours.) The replay is faster with it too.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Replay(a)) if a.tui => return tui::from_replay(&a.files, a.demo, a.gateway_events.as_ref(), &a.diagnosis, &a.limits),
        Some(Command::Replay(a)) => a,
        Some(Command::Tui(a)) => return tui::run(a),
        Some(Command::Watch(a)) => return watch::run(a),
        Some(Command::Ship(a)) => {
            return outputs::ship_command(a).unwrap_or_else(|e| {
                eprintln!("kcdscope: {e:#}");
                ExitCode::from(1)
            })
        }
        Some(Command::Kcd { command }) => {
            return kcd::run(command).unwrap_or_else(|e| {
                eprintln!("kcdscope: {e:#}");
                ExitCode::from(1)
            })
        }
        Some(Command::Gateway(a)) => {
            return gateway::run(a).unwrap_or_else(|e| {
                eprintln!("kcdscope: {e:#}");
                ExitCode::from(1)
            })
        }
        // On a terminal, the incident in the UI; piped, the report as text.
        None if io::stdout().is_terminal() && io::stdin().is_terminal() => {
            let a = ReplayArgs::parse_defaults();
            return tui::from_replay(&[], true, None, &a.diagnosis, &a.limits);
        }
        None => {
            let mut a = ReplayArgs::parse_defaults();
            a.demo = true;
            a.report = true;
            a
        }
    };
    match replay(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kcdscope: {e:#}");
            ExitCode::from(1)
        }
    }
}

impl ReplayArgs {
    fn parse_defaults() -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            args: ReplayArgs,
        }
        Only::parse_from(["kcdscope", "--demo"]).args
    }
}

fn replay(args: &ReplayArgs) -> Result<ExitCode> {
    let mut decoder = Decoder::new(args.limits.config());
    let mut diagnosis = match args.no_diagnosis {
        true => None,
        false => Some(
            pipeline::Diagnosis::start(Correlator::new(args.diagnosis.config()))
                .context("cannot start the diagnosis thread")?,
        ),
    };
    let correlator: Option<Correlator>;
    let format = match args.format {
        JsonFormat::Eve => kcd_export::Format::Eve,
        JsonFormat::Ecs => kcd_export::Format::Ecs,
    };
    let mut json_out = args.json.then(|| NdjsonWriter::new(io::stdout()).with_format(format));
    if args.outputs.file.given() && args.output.is_none() {
        anyhow::bail!("--rotate-*, --fsync and --spool-max-bytes are of the -o FILE: give one");
    }
    if args.outputs.ship.any() && args.output.is_none() {
        anyhow::bail!("--bulk, --hec, --kafka and --syslog ship the -o FILE: give one");
    }
    let mut file_out = match &args.output {
        Some(p) => {
            let rotation = args.outputs.rotation(p);
            if !rotation.rotates() {
                // Without rotation -o starts afresh, and so do the outputs shipping it.
                for c in args.outputs.ship.checkpoints(p) {
                    let _ = std::fs::remove_file(c);
                }
            }
            Some(
                NdjsonWriter::new(
                    kcd_export::outputs::file::RotatingFile::open(p, rotation)
                        .with_context(|| format!("cannot create {}", p.display()))?,
                )
                .with_format(format),
            )
        }
        None => None,
    };
    let shippers = match &args.output {
        Some(p) if args.outputs.ship.any() => Some(args.outputs.ship.start(p, Arc::new(AtomicBool::new(false)))?),
        _ => None,
    };
    if shippers.is_some() {
        outputs::log_to_stderr();
    }
    // Without an NDJSON destination on stdout, list messages for a person.
    let mut text_out = (!args.json && !args.count && !args.report)
        .then(|| TextWriter::new(BufWriter::new(io::stdout())));
    let mut failed = false;
    let mut feed = match &args.gateway_events {
        Some(p) => Some(kcd_export::feed::EventFeed::new(io::BufReader::new(
            File::open(p).with_context(|| format!("cannot open the gateway's events {}", p.display()))?,
        ))),
        None => None,
    };
    let feed_label = args.gateway_events.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let findings;
    {
        let mut sinks: Vec<&mut dyn Sink> = Vec::new();
        if let Some(j) = json_out.as_mut() {
            sinks.push(j);
        }
        if let Some(f) = file_out.as_mut() {
            sinks.push(f);
        }
        if let Some(t) = text_out.as_mut() {
            sinks.push(t);
        }
        let mut tee = Tee(sinks);
        let mut out = kcd_export::filter::Filtered { filter: args.outputs.filter.filter(), inner: &mut tee, skipped: 0 };
        {
            let mut sink = |e: &Event<'_>| {
                // The gateway's events that happened before this packet go first.
                if let Some(f) = feed.as_mut() {
                    f.feed_until(Some(e.timestamp), |g| {
                        let g = from_events_file(g, &feed_label);
                        out.event(&g);
                        if let Some(d) = diagnosis.as_mut() {
                            d.event(&g);
                        }
                    });
                }
                out.event(e);
                if let Some(d) = diagnosis.as_mut() {
                    d.event(e);
                }
            };
            if args.demo {
                for (name, bytes) in demo::CAPTURES {
                    replay_reader(*bytes, name, &mut decoder, &mut sink)
                        .map_err(|e| anyhow::anyhow!("built-in capture {name}: {e:?}"))?;
                }
            }
            for path in &args.files {
                let label = if path.as_os_str() == "-" {
                    "standard input".to_string()
                } else {
                    path.display().to_string()
                };
                let result = if path.as_os_str() == "-" {
                    replay_reader(io::stdin(), "-", &mut decoder, &mut sink).map_err(|e| match e {
                        ReaderError::Empty => "standard input: empty".to_string(),
                        ReaderError::NotACapture => {
                            "standard input: not a pcap or pcapng stream".to_string()
                        }
                        ReaderError::Read(d) => format!("standard input: {d}"),
                    })
                } else {
                    replay_file(path, &path.display().to_string(), &mut decoder, &mut sink)
                        .map_err(|e| e.to_string())
                };
                // Input left unread is a failure, not an anomaly to scroll past.
                let result = result.and_then(|r| match r.ending {
                    Ending::Unsupported(why) => Err(format!("{label}: {why}; the rest was not read")),
                    _ => Ok(()),
                });
                if let Err(msg) = result {
                    eprintln!("kcdscope: {msg}");
                    failed = true;
                }
            }
            decoder.finish(&mut sink);
        }
        if let Some(f) = feed.as_mut() {
            f.feed_until(None, |g| {
                let g = from_events_file(g, &feed_label);
                out.event(&g);
                if let Some(d) = diagnosis.as_mut() {
                    d.event(&g);
                }
            });
        }
        correlator = match diagnosis {
            Some(d) => Some(d.finish().map_err(anyhow::Error::msg)?),
            None => None,
        };
        findings = correlator.as_ref().map(Correlator::findings).unwrap_or_default();
        for f in &findings {
            out.event(&f.clone().into_event());
        }
    }
    if let Some(j) = json_out {
        j.finish().context("writing NDJSON to standard output")?;
    }
    if let Some(f) = file_out {
        let f = f.finish_into().context("writing the NDJSON file")?;
        if f.counters.dropped_unshipped > 0 {
            eprintln!(
                "kcdscope: the spool was full: {} events deleted before they were shipped ({} files deleted)",
                f.counters.dropped_unshipped, f.counters.deleted
            );
        }
    }
    if let Some(s) = shippers {
        if !s.finish(args.quiet) {
            failed = true;
        }
    }
    if let Some(t) = text_out {
        if let Err(e) = t.finish() {
            // A closed pipe (`| head`) is the reader's choice, not an error.
            if e.kind() != io::ErrorKind::BrokenPipe {
                return Err(e).context("writing to standard output");
            }
        }
    }
    if args.report {
        if let Some(c) = &correlator {
            let style = Style {
                colour: io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            };
            let text = report::render(c, &findings, decoder.stats(), style);
            let mut o = io::stdout().lock();
            if let Err(e) = o.write_all(text.as_bytes()).and_then(|_| o.flush()) {
                if e.kind() != io::ErrorKind::BrokenPipe {
                    return Err(e).context("writing to standard output");
                }
            }
        }
    }
    if !args.quiet {
        let mut line = decoder.stats().summary();
        if correlator.is_some() {
            let n = |s, one: &str, many: &str| {
                let k = findings.iter().filter(|f| f.severity == s).count();
                format!("{k} {}", if k == 1 { one } else { many })
            };
            line.push_str(&format!(
                "; findings: {}, {}, {}",
                n(Severity::Error, "error", "errors"),
                n(Severity::Warning, "warning", "warnings"),
                n(Severity::Info, "note", "notes")
            ));
        }
        if let Some(f) = &feed {
            line.push_str(&format!("; gateway events: {}", f.fed));
            if f.bad > 0 {
                line.push_str(&format!(", {} lines that are not events skipped", f.bad));
            }
            if f.skipped > 0 {
                line.push_str(&format!(", {} events of other types skipped", f.skipped));
            }
        }
        let _ = writeln!(io::stderr().lock(), "{line}");
    }
    if let Some(e) = feed.as_mut().and_then(|f| f.error.take()) {
        eprintln!("kcdscope: reading the gateway's events: {e}; the rest was not read");
        failed = true;
    }
    let worst = findings.iter().map(|f| f.severity).max();
    let fail = match args.fail_on {
        Some(FailOn::Warning) => worst >= Some(Severity::Warning),
        Some(FailOn::Error) => worst >= Some(Severity::Error),
        None => false,
    };
    Ok(if failed {
        ExitCode::from(1)
    } else if fail {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// A gateway event as the replay passes it on: its evidence points into the events file
/// (its `frame` is the gateway's event counter).
fn from_events_file<'a>(e: &Event<'a>, file: &str) -> Event<'a> {
    let mut e = e.clone();
    if e.device.is_none() {
        e.device = e.device_key().map(std::borrow::Cow::Owned);
    }
    if e.pcap_file.is_none() {
        e.pcap_file = Some(std::borrow::Cow::Owned(file.to_string()));
    }
    e
}
