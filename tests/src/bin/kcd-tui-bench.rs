//! Frame times of the terminal UI, drawn into ratatui's test backend (what a terminal would
//! be sent is not measured, only what the UI thread does per frame):
//!
//!   kcd-tui-bench frames [DEVICES]   the Devices view with DEVICES rows (100,000) at 200x50
//!   kcd-tui-bench replay PCAP        the UI loop while PCAP replays as fast as possible:
//!                                    each frame takes what the source sent, then draws
//!
//! Prints the median, 99th percentile and maximum per frame, and the peak RSS.

use std::time::{Duration, Instant};

use kcd_schema::{Severity, Timestamp};
use kcd_tui::model::{Key, Model, Msg, Speed};
use kcd_tui::snapshot::{DeviceRow, Snapshot, Status, StepRow};
use kcd_tui::source::{self, Input, Source};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn report(what: &str, mut t: Vec<Duration>) {
    t.sort();
    let q = |p: f64| t.get(((t.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{what}: {} frames, median {:.2} ms, p99 {:.2} ms, max {:.2} ms; peak RSS {} MiB",
        t.len(),
        ms(q(0.5)),
        ms(q(0.99)),
        ms(q(1.0)),
        peak_rss_kib() / 1024
    );
}

fn device(i: usize) -> DeviceRow {
    let status = [Status::Healthy, Status::Healthy, Status::Healthy, Status::Failing, Status::Warning][i % 5];
    DeviceRow {
        key: format!("user{i:06}@corp.example"),
        upn: format!("user{i:06}@corp.example"),
        device_id: format!("ApplF{i:011X}"),
        address: format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255),
        status,
        last_step: "S4U2Proxy",
        failing_step: (status == Status::Failing).then_some("S4U2Proxy"),
        finding: (status == Status::Failing).then(|| "krb.s4u2proxy.user_not_delegable".to_string()),
        severity: (status == Status::Failing).then_some(Severity::Error),
        requests: (i % 17) as u64,
        kdcs: vec!["10.0.0.2".into()],
        errors: Vec::new(),
        steps: vec![StepRow { name: "S4U2Self", at: Timestamp(0), latency_ms: Some(1.0), ok: true, detail: "ok".into(), evidence: "frame 1".into() }],
        explanation: None,
        fix: None,
        also_known_as: Vec::new(),
    }
}

fn frames(n: usize) {
    let mut m = Model::new("bench", true, true);
    m.update(Msg::Resize(200, 50));
    let snap = Snapshot { devices: (0..n).map(device).collect(), ..Default::default() };
    m.update(Msg::Snapshot(Box::new(snap)));
    let mut term = Terminal::new(TestBackend::new(200, 50)).expect("test backend");
    let mut times = Vec::new();
    for i in 0..300 {
        // Scroll through the list as a person would, sometimes a page at a time.
        m.update(Msg::Key(if i % 10 == 0 { Key::PageDown } else { Key::Down }));
        let t0 = Instant::now();
        term.draw(|f| kcd_tui::view::draw(&m, f)).expect("draw");
        times.push(t0.elapsed());
    }
    report(&format!("Devices view, {n} devices, 200x50"), times);
}

fn replay(pcap: &str) {
    let src = Source::Replay { inputs: vec![Input::File(pcap.into())], decode: Default::default(), diagnosis: Default::default() };
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    let (ctl, ctl_rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || source::run(src, tx, ctl_rx, Speed::Max));
    let mut m = Model::new("bench", true, true);
    m.update(Msg::Resize(200, 50));
    let mut term = Terminal::new(TestBackend::new(200, 50)).expect("test backend");
    let mut times = Vec::new();
    let t_start = Instant::now();
    let mut done = false;
    while !done {
        // What the UI loop does each pass: take what came, draw at most ~30 times a second.
        let t0 = Instant::now();
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Msg::Snapshot(s)) => {
                done = s.done;
                let t1 = Instant::now();
                m.update(Msg::Snapshot(s));
                term.draw(|f| kcd_tui::view::draw(&m, f)).expect("draw");
                times.push(t1.elapsed());
            }
            Ok(other) => {
                m.update(other);
            }
            Err(_) => break,
        }
        let _ = t0;
    }
    let total = t_start.elapsed();
    drop(ctl);
    drop(rx);
    let _ = worker.join();
    println!("replay of {pcap} under the UI: {:.2} s, {} devices, {} KDCs at the end", total.as_secs_f64(), m.snap.devices.len(), m.snap.kdcs.len());
    report("UI frames during the replay (snapshot taken + drawn), 200x50", times);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("frames") => frames(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(100_000)),
        Some("replay") if args.len() == 3 => replay(&args[2]),
        _ => {
            eprintln!("usage: kcd-tui-bench frames [DEVICES] | replay PCAP");
            std::process::exit(2);
        }
    }
}
