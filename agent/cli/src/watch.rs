//! `kcdscope watch`: live capture (eBPF probe, or libpcap) fed to the same decoder and
//! correlator as a replay, as a long-running service. The capture itself is in kcd-live;
//! this is the loop around it: timed drains, periodic reports, findings as they appear,
//! the gateway's events, signals.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, ErrorKind, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use kcd_correlate::Correlator;
use kcd_decode::{Decoder, LinkType, Packet, Sink};
use kcd_export::report::{self, Style};
use kcd_export::TextWriter;
use kcd_live::pcapng::PcapngWriter;
use kcd_live::{Backend, Counters, Live, LiveError};
use kcd_schema::{Event, Timestamp};

use crate::{DiagnosisArgs, Limits};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum BackendArg {
    Ebpf,
    Pcap,
}

#[derive(Args)]
pub struct WatchArgs {
    /// Interfaces to watch, comma-separated or repeated (ingress and egress of each; on
    /// loopback each packet once).
    #[arg(short = 'i', long = "interface", value_name = "IFACE", value_delimiter = ',', required = true)]
    interfaces: Vec<String>,
    /// Capture with the eBPF probe (falls back to libpcap, saying why, when it cannot
    /// load) or with libpcap.
    #[arg(long, value_enum, default_value = "ebpf")]
    backend: BackendArg,
    /// With --backend ebpf: fail instead of falling back to libpcap.
    #[arg(long)]
    no_fallback: bool,
    /// Write events as NDJSON to standard output.
    #[arg(long)]
    json: bool,
    /// Append events as NDJSON to this file.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print the incident report every SECONDS (and at the end), with the capture counters.
    #[arg(long, value_name = "SECONDS")]
    report_every: Option<f64>,
    /// Write what was captured as pcapng, to replay later (`kcdscope replay FILE FILE.1 ...`).
    #[arg(long, value_name = "FILE")]
    write_pcap: Option<PathBuf>,
    /// Start a new pcapng file (FILE.1, FILE.2, ...) past this many MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    write_pcap_rotate: u64,
    /// The gateway's NDJSON events: a file (followed as it grows) or a Unix socket.
    #[arg(long, value_name = "FILE|SOCKET")]
    gateway_events: Option<PathBuf>,
    /// Show the incident in the terminal UI while capturing.
    #[arg(long, conflicts_with = "json")]
    tui: bool,
    /// Ring buffer (eBPF) or socket buffer (libpcap) in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 16)]
    buffer: u32,
    /// Stop after SECONDS (default: run until SIGINT or SIGTERM).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Milliseconds between two drains of the capture buffer.
    #[arg(long, value_name = "MS", default_value_t = 10)]
    drain_every: u64,
    /// No status lines on standard error.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    ship: crate::outputs::ShipArgs,
    /// -o's rotation and fsync.
    #[command(flatten)]
    file: crate::outputs::RotationArgs,
    #[command(flatten)]
    filter: crate::outputs::FilterArgs,
    #[command(flatten)]
    diagnosis: DiagnosisArgs,
    #[command(flatten)]
    limits: Limits,
}

/// NDJSON, flushed at every drain so that followers (`tui --events F --follow`, a SIEM
/// shipper) see events within milliseconds.
struct Lines<W: Write> {
    out: W,
    buf: Vec<u8>,
    error: Option<io::Error>,
}

impl<W: Write> Lines<W> {
    fn new(out: W) -> Self {
        Lines { out, buf: Vec::with_capacity(64 << 10), error: None }
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.error.is_none() && !self.buf.is_empty() {
            if let Err(e) = self.out.write_all(&self.buf).and_then(|_| self.out.flush()) {
                self.error = Some(e);
            }
            self.buf.clear();
        }
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl<W: Write> Sink for Lines<W> {
    fn event(&mut self, e: &Event<'_>) {
        e.write_json(&mut self.buf);
        self.buf.push(b'\n');
        if self.buf.len() >= 1 << 20 {
            let _ = self.flush();
        }
    }
}

/// NDJSON lines from the gateway, read as they come (a growing file or a socket).
struct Follow {
    src: Box<dyn Read + Send>,
    line: Vec<u8>,
    skipped: u64,
    closed: bool,
}

const MAX_LINE: usize = 1 << 20;
/// Distinct findings remembered as already emitted (a bound for a service that runs for months).
const MAX_FINDINGS_EMITTED: usize = 100_000;

impl Follow {
    fn open(p: &std::path::Path) -> Result<Self> {
        use std::os::unix::fs::FileTypeExt;
        let meta = std::fs::metadata(p).with_context(|| format!("gateway events {}", p.display()))?;
        let src: Box<dyn Read + Send> = if meta.file_type().is_socket() {
            let s = std::os::unix::net::UnixStream::connect(p).with_context(|| format!("cannot connect to {}", p.display()))?;
            s.set_nonblocking(true)?;
            Box::new(s)
        } else {
            Box::new(File::open(p).with_context(|| format!("cannot open {}", p.display()))?)
        };
        Ok(Follow { src, line: Vec::new(), skipped: 0, closed: false })
    }

    /// Feeds every complete line read so far to `sink`.
    fn poll(&mut self, sink: &mut dyn Sink) {
        let mut buf = [0u8; 64 << 10];
        while !self.closed {
            let n = match self.src.read(&mut buf) {
                Ok(0) => break, // a file at its end for now; a socket closed stays at 0
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => break,
                Err(_) => {
                    self.closed = true;
                    break;
                }
            };
            for chunk in buf[..n].split_inclusive(|&b| b == b'\n') {
                if self.line.len() + chunk.len() <= MAX_LINE + 1 {
                    self.line.extend_from_slice(chunk);
                } else {
                    self.line.clear();
                    self.line.push(0); // too long: poisoned until its newline
                }
                if chunk.ends_with(b"\n") {
                    let l = std::mem::take(&mut self.line);
                    let parsed = serde_json::from_slice::<Event<'_>>(l.trim_ascii());
                    match parsed {
                        Ok(e) => sink.event(&e),
                        Err(_) if l.trim_ascii().is_empty() => {}
                        Err(_) => self.skipped += 1,
                    }
                }
            }
        }
    }
}

fn now() -> Timestamp {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp::from_parts(d.as_secs() as i64, d.subsec_nanos())
}

fn tui_counters(backend: Backend, c: &Counters) -> kcd_tui::model::Capture {
    kcd_tui::model::Capture { backend: backend.to_string(), seen: c.seen, captured: c.captured, dropped_kernel: c.dropped_kernel, dropped_user: c.dropped_user }
}

fn status_line(backend: Backend, c: &Counters, decoder: &Decoder) -> String {
    format!("kcdscope watch ({backend}): {c}; {}", decoder.stats().summary())
}

pub fn run(a: WatchArgs) -> ExitCode {
    match watch(a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kcdscope: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn watch(a: WatchArgs) -> Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot handle signals")?;
    }
    // The probe captures the ports the decoders are configured for (--krb5-port, --tls-port,
    // --http-port, shared with replay) and, unless --no-tls-detect, TCP connections on other
    // ports from a first payload that is a TLS ClientHello on (the probe's bounded flow map;
    // libpcap's filter has the ports only).
    let dc = a.limits.config();
    let mut ports: Vec<u16> = dc.krb5_ports.clone();
    ports.extend(&dc.tls_ports);
    ports.extend(&dc.http_ports);
    ports.sort_unstable();
    ports.dedup();
    let cfg = kcd_live::Config { ifaces: a.interfaces.clone(), ports, buffer_bytes: a.buffer.saturating_mul(1 << 20), tls_detect: dc.tls_detect };
    let backend = match a.backend {
        BackendArg::Ebpf => Backend::Ebpf,
        BackendArg::Pcap => Backend::Pcap,
    };
    let (mut live, ifaces, gave_up) = match Live::open(&cfg, backend, !a.no_fallback) {
        Ok(x) => x,
        Err(e @ LiveError::Privileges(_)) => {
            eprintln!("kcdscope: cannot capture: {e}\nkcdscope: {}", kcd_live::caps::HINT);
            return Ok(ExitCode::from(4));
        }
        Err(e) => return Err(anyhow::Error::new(e).context("cannot capture")),
    };
    {
        let mut l = io::stderr().lock();
        if let Some(why) = &gave_up {
            let _ = writeln!(l, "kcdscope: eBPF unavailable ({why}); capturing with libpcap instead");
        }
        let names: Vec<String> = ifaces
            .iter()
            .map(|i| match (live.backend(), i.loopback) {
                (Backend::Ebpf, true) => format!("{} (ingress: loopback packets once)", i.name),
                (Backend::Ebpf, false) => format!("{} (ingress, egress)", i.name),
                (Backend::Pcap, _) => i.name.clone(),
            })
            .collect();
        let mut p = cfg.ports.clone();
        p.sort_unstable();
        p.dedup();
        let p: Vec<String> = p.iter().map(u16::to_string).collect();
        let tls = if cfg.tls_detect && live.backend() == Backend::Ebpf { " and TLS by its ClientHello on any TCP port" } else { "" };
        let _ = writeln!(l, "kcdscope: watching {} with {}, ports {}{tls}; stop with Ctrl-C or SIGTERM", names.join(", "), live.backend(), p.join(", "));
    }
    let mut pcap_out = match &a.write_pcap {
        Some(p) => Some(
            PcapngWriter::create(p, ifaces.iter().map(|i| (i.name.clone(), 1)).collect(), a.write_pcap_rotate.saturating_mul(1 << 20))
                .with_context(|| format!("cannot create {}", p.display()))?,
        ),
        None => None,
    };
    let mut gateway = match &a.gateway_events {
        Some(p) => Some(Follow::open(p)?),
        None => None,
    };
    // With --tui, events go to a file the UI follows (its live source), ours or -o's.
    let tui_file = match (a.tui, &a.output) {
        (true, Some(p)) => Some((p.clone(), false)),
        (true, None) => Some((std::env::temp_dir().join(format!("kcdscope-watch-{}.ndjson", std::process::id())), true)),
        _ => None,
    };
    let mut json_out = a.json.then(|| Lines::new(io::stdout()));
    let out_path = tui_file.as_ref().map(|(p, _)| p.clone()).or_else(|| a.output.clone());
    if a.file.given() && a.output.is_none() {
        anyhow::bail!("--rotate-*, --fsync and --spool-max-bytes are of the -o FILE: give one");
    }
    let mut file_out = match &out_path {
        // Appended to: a service restarted keeps what it wrote before.
        Some(p) => Some(Lines::new(
            kcd_export::outputs::file::RotatingFile::append(p, a.file.rotation(p, &a.ship)).with_context(|| format!("cannot open {}", p.display()))?,
        )),
        None => None,
    };
    // Standard output is line-buffered: each message is shown as it is decoded.
    let mut text_out = (!a.json && !a.tui && a.report_every.is_none()).then(|| TextWriter::new(io::stdout()));
    let mut tui_thread = None;
    // The UI's header shows the capture counters, from the same reading as the events'.
    let tui_capture = tui_file.as_ref().map(|_| Arc::new(Mutex::new(tui_counters(live.backend(), &live.counters()))));
    if let Some((p, _)) = &tui_file {
        let (p, stop2, d) = (p.clone(), stop.clone(), a.diagnosis.config());
        let label = format!("watch: {} ({})", a.interfaces.join(","), live.backend());
        let capture = tui_capture.clone();
        tui_thread = Some(std::thread::spawn(move || {
            let opts = kcd_tui::Options { label, color: std::env::var_os("NO_COLOR").is_none(), speed: kcd_tui::Speed::Max, export_dir: PathBuf::from("."), capture };
            let r = kcd_tui::run(kcd_tui::Source::Events { path: p, follow: true, diagnosis: d }, opts);
            stop2.store(true, Ordering::SeqCst);
            r
        }));
    }

    let filter = a.filter.filter();
    if a.ship.any() && a.output.is_none() {
        anyhow::bail!("--bulk, --hec, --kafka and --syslog ship the -o FILE: give one");
    }
    // The shippers follow -o as it grows; at the end they get --ship-drain-seconds to finish.
    let shippers = match &a.output {
        Some(p) if a.ship.any() => {
            crate::outputs::log_to_stderr();
            Some(a.ship.start(p, Arc::new(AtomicBool::new(false)))?)
        }
        _ => None,
    };
    let mut decoder = Decoder::new(a.limits.config());
    decoder.begin_source(None);
    let mut corr = Correlator::new(a.diagnosis.config());
    let mut frame = 0u64;
    let mut emitted: HashSet<String> = HashSet::new();
    let report_every = a.report_every.map(|s| Duration::from_secs_f64(s.max(0.1)));
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut last_findings = Instant::now();
    let mut last_drops = 0u64;
    let mut pcap_error: Option<io::Error> = None;
    let drain_every = Duration::from_millis(a.drain_every.clamp(1, 1000));
    let colour = io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();

    loop {
        let stopping = stop.load(Ordering::SeqCst) || a.duration.is_some_and(|d| started.elapsed().as_secs_f64() >= d);
        if stopping {
            // No new packets from here on; what the kernel already holds is still read.
            live.stop();
        }
        let t0 = Instant::now();
        {
            // The filters choose what the outputs get; the diagnosis sees everything.
            let mut outs = kcd_export::Tee(outputs(&mut json_out, &mut file_out, &mut text_out));
            let mut filtered = kcd_export::filter::Filtered { filter: filter.clone(), inner: &mut outs, skipped: 0 };
            let mut to_corr = |e: &Event<'_>| corr.event(e);
            let mut out = kcd_export::Tee(vec![&mut filtered, &mut to_corr]);
            live.drain(&mut |p| {
                frame += 1;
                if let Some(w) = pcap_out.as_mut() {
                    if pcap_error.is_none() {
                        if let Err(e) = w.write(p.iface, p.ts_ns, p.data, p.orig_len) {
                            pcap_error = Some(e);
                        }
                    }
                }
                decoder.packet(&Packet { ts: Timestamp(p.ts_ns), link: LinkType(p.link), data: p.data, frame }, &mut out);
            });
            if let Some(g) = gateway.as_mut() {
                g.poll(&mut out);
            }
            if stopping {
                decoder.finish(&mut out);
            }
            let c = live.counters();
            if let Some(mut g) = tui_capture.as_ref().and_then(|g| g.lock().ok()) {
                *g = tui_counters(live.backend(), &c);
            }
            if c.dropped() > last_drops || (stopping && c.dropped() > 0) {
                let detail = format!("{} packets dropped so far ({} in the kernel, {} in the agent) of {} matched; {} captured", c.dropped(), c.dropped_kernel, c.dropped_user, c.seen, c.captured);
                decoder.source_anomaly(now(), frame, "capture_dropped", detail, &mut out);
                last_drops = c.dropped();
            }
        }
        // Findings as they appear, each once, to the outputs (not to the correlator).
        if stopping || last_findings.elapsed() >= Duration::from_secs(1) {
            if stopping {
                corr.finish();
            }
            let mut outs = kcd_export::Tee(outputs(&mut json_out, &mut file_out, &mut text_out));
            let mut out = kcd_export::filter::Filtered { filter: filter.clone(), inner: &mut outs, skipped: 0 };
            for f in corr.findings() {
                let key = format!("{}/{}", f.id, serde_json::to_string(&f.subject).unwrap_or_default());
                if emitted.len() < MAX_FINDINGS_EMITTED && emitted.insert(key) {
                    out.event(&f.into_event());
                }
            }
            last_findings = Instant::now();
        }
        if let Some(j) = json_out.as_mut() {
            if let Err(e) = j.flush() {
                if e.kind() == ErrorKind::BrokenPipe {
                    stop.store(true, Ordering::SeqCst);
                } else {
                    return Err(e).context("writing NDJSON to standard output");
                }
            }
        }
        if let Some(f) = file_out.as_mut() {
            f.flush().context("writing the NDJSON file")?;
        }
        if let Some(w) = pcap_out.as_mut() {
            if let Some(e) = pcap_error.take() {
                return Err(e).context("writing the pcapng file");
            }
            w.flush().context("writing the pcapng file")?;
        }
        if stopping {
            break;
        }
        if let Some(every) = report_every {
            if last_report.elapsed() >= every {
                print_report(&corr, &decoder, &mut live, a.json, colour);
                last_report = Instant::now();
            }
        }
        if let Some(d) = drain_every.checked_sub(t0.elapsed()) {
            std::thread::sleep(d);
        }
    }
    drop(file_out);
    let shipped = shippers.is_none_or(|s| s.finish(a.quiet));
    if let Some(t) = text_out {
        if let Err(e) = t.finish() {
            if e.kind() != ErrorKind::BrokenPipe {
                return Err(e).context("writing to standard output");
            }
        }
    }
    if let Some(j) = tui_thread {
        if let Ok(Err(e)) = j.join() {
            eprintln!("kcdscope: the terminal UI failed: {e}");
        }
    }
    if let Some((p, true)) = &tui_file {
        let _ = std::fs::remove_file(p);
    }
    if report_every.is_some() || (!a.json && !a.tui && a.output.is_none()) {
        print_report(&corr, &decoder, &mut live, a.json, colour);
    }
    let c = live.counters();
    if !a.quiet {
        let mut l = io::stderr().lock();
        let _ = writeln!(l, "{}", status_line(live.backend(), &c, &decoder));
        if let Some(g) = &gateway {
            if g.skipped > 0 {
                let _ = writeln!(l, "kcdscope: {} gateway event lines were not events and were skipped", g.skipped);
            }
        }
        if let Some(w) = &pcap_out {
            let files: Vec<String> = w.files().iter().map(|f| f.display().to_string()).collect();
            let _ = writeln!(l, "kcdscope: {} packets written to {}", w.packets, files.join(" "));
        }
    }
    Ok(if shipped { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The event outputs asked for.
fn outputs<'a, J: Write, F: Write, T: Write>(
    json: &'a mut Option<Lines<J>>,
    file: &'a mut Option<Lines<F>>,
    text: &'a mut Option<TextWriter<T>>,
) -> Vec<&'a mut dyn Sink> {
    let mut v: Vec<&mut dyn Sink> = Vec::new();
    if let Some(j) = json.as_mut() {
        v.push(j);
    }
    if let Some(f) = file.as_mut() {
        v.push(f);
    }
    if let Some(t) = text.as_mut() {
        v.push(t);
    }
    v
}

fn print_report(corr: &Correlator, decoder: &Decoder, live: &mut Live, json: bool, colour: bool) {
    let findings = corr.findings();
    let c = live.counters();
    let mut text = format!("capture ({}): {c}\n", live.backend());
    text.push_str(&report::render(corr, &findings, decoder.stats(), Style { colour: colour && !json }));
    let r = if json {
        io::stderr().lock().write_all(text.as_bytes())
    } else {
        let mut o = io::stdout().lock();
        o.write_all(text.as_bytes()).and_then(|_| o.flush())
    };
    let _ = r;
}
