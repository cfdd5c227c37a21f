//! The replay clock against the wall clock, on the bundled incident: paced at 1x it takes
//! about as long as the capture spans; a seek stops at its time, paused.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kcd_schema::Timestamp;
use kcd_tui::model::{Control, Msg, Speed};
use kcd_tui::source::{self, Input, Source};

fn src() -> Source {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../captures/incident/incident.pcap");
    Source::Replay { inputs: vec![Input::File(p)], decode: Default::default(), diagnosis: Default::default() }
}

/// Runs the source and returns the snapshots' (position, done) until `stop` holds.
fn run(speed: Speed, first: Option<Control>, stop: impl Fn(&kcd_tui::snapshot::Snapshot) -> bool) -> (Duration, Vec<(Option<Timestamp>, bool, Option<Timestamp>)>) {
    let (tx, rx) = mpsc::sync_channel(4);
    let (ctl, ctl_rx) = mpsc::channel();
    if let Some(c) = first {
        ctl.send(c).unwrap();
    }
    let t0 = Instant::now();
    let h = std::thread::spawn(move || source::run(src(), tx, ctl_rx, speed));
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(20)).unwrap() {
            Msg::Snapshot(s) => {
                seen.push((s.position, s.done, s.start));
                if stop(&s) {
                    break;
                }
            }
            _ => {}
        }
    }
    let took = t0.elapsed();
    drop(ctl);
    drop(rx);
    h.join().unwrap();
    (took, seen)
}

#[test]
fn paced_replay_takes_the_capture_time() {
    // incident.pcap spans about 0.95 s (tshark: frame.time_relative of its last frame).
    let (fast, _) = run(Speed::Max, None, |s| s.done);
    let (paced, _) = run(Speed::X1, None, |s| s.done);
    assert!(paced >= Duration::from_millis(800), "1x took {paced:?}");
    assert!(fast < paced, "max {fast:?} vs 1x {paced:?}");
}

#[test]
fn a_seek_stops_there_paused() {
    let (_, all) = run(Speed::Max, None, |s| s.done);
    let start = all.last().and_then(|x| x.2).unwrap();
    let target = Timestamp(start.0 + 300_000_000);
    // At 1x the target is 0.3 s away; give it 1.5 s, then look where it stands.
    let t0 = Instant::now();
    let (_, seen) = run(Speed::X1, Some(Control::Seek(target)), |_| t0.elapsed() > Duration::from_millis(1500));
    let tail: Vec<_> = seen.iter().rev().take(2).collect();
    assert!(tail.iter().all(|x| !x.1), "not at the end: {seen:?}");
    let pos = tail[0].0.unwrap();
    assert!(pos <= target && pos.0 > start.0, "stopped at {pos:?}, target {target:?}");
    assert_eq!(tail[0].0, tail[1].0, "paused: the position no longer moves");
}
