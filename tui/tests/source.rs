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

/// What a snapshot says of where the replay stands: (position, done, start).
type Seen = (Option<Timestamp>, bool, Option<Timestamp>);

/// Runs the source and returns the snapshots' (position, done) until `stop` holds.
fn run(speed: Speed, first: Option<Control>, stop: impl Fn(&kcd_tui::snapshot::Snapshot) -> bool) -> (Duration, Vec<Seen>) {
    let (tx, rx) = mpsc::sync_channel(4);
    let (ctl, ctl_rx) = mpsc::channel();
    if let Some(c) = first {
        ctl.send(c).unwrap();
    }
    let t0 = Instant::now();
    let h = std::thread::spawn(move || source::run(src(), tx, ctl_rx, speed));
    let mut seen = Vec::new();
    loop {
        if let Msg::Snapshot(s) = rx.recv_timeout(Duration::from_secs(20)).unwrap() {
            seen.push((s.position, s.done, s.start));
            if stop(&s) {
                break;
            }
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

#[test]
fn a_seek_to_the_start_knows_the_start_before_showing_anything() {
    let (_, all) = run(Speed::Max, None, |s| s.done);
    let start = all.last().and_then(|x| x.2).unwrap();
    // Paused on the first event, nothing shown yet: the UI needs the start to step on from.
    let t0 = Instant::now();
    let (_, seen) = run(Speed::X1, Some(Control::Seek(start)), |_| t0.elapsed() > Duration::from_millis(800));
    let last = seen.last().unwrap();
    assert_eq!(last.0, None, "nothing shown yet: {seen:?}");
    assert_eq!(last.2, Some(start), "the start is known: {seen:?}");
}

/// An NDJSON event file (what `replay -o` writes) gives the devices the capture gives, and
/// a followed file shows what is appended to it.
#[test]
fn an_event_file_read_whole_and_followed() {
    // The events of the incident, as NDJSON, from the capture directly.
    let pcap = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../captures/incident/incident.pcap");
    let mut dec = kcd_decode::Decoder::new(Default::default());
    let mut lines = Vec::new();
    {
        let mut sink = |e: &kcd_schema::Event<'_>| {
            let mut j = Vec::new();
            e.write_json(&mut j);
            j.push(b'\n');
            lines.push(j);
        };
        kcd_capture::replay_file(&pcap, "incident.pcap", &mut dec, &mut sink).unwrap();
        dec.finish(&mut sink);
    }
    let dir = std::env::temp_dir().join(format!("kcd-tui-events-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let whole = dir.join("whole.ndjson");
    std::fs::write(&whole, lines.concat()).unwrap();

    let devices_of = |src: Source, until: &dyn Fn(&kcd_tui::snapshot::Snapshot) -> bool| {
        let (tx, rx) = mpsc::sync_channel(4);
        let (ctl, ctl_rx) = mpsc::channel::<Control>();
        let h = std::thread::spawn(move || source::run(src, tx, ctl_rx, Speed::Max));
        let mut last = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while let Ok(m) = rx.recv_timeout(Duration::from_secs(10)) {
            if std::time::Instant::now() > deadline {
                break;
            }
            if let Msg::Snapshot(s) = m {
                let stop = until(&s);
                last = Some(s);
                if stop {
                    break;
                }
            }
        }
        drop(ctl);
        drop(rx);
        h.join().unwrap();
        let mut d: Vec<String> = last.map(|s| s.devices.iter().map(|d| d.upn.clone()).collect()).unwrap_or_default();
        d.sort();
        d
    };
    let from_pcap = devices_of(src(), &|s| s.done);
    let from_file = devices_of(Source::Events { path: whole.clone(), follow: false, diagnosis: Default::default() }, &|s| s.done);
    assert_eq!(from_pcap.len(), 7, "{from_pcap:?}");
    assert_eq!(from_file, from_pcap);

    // Followed: half the file, then the rest appended while the source reads.
    let grow = dir.join("grow.ndjson");
    let half = lines.len() / 2;
    std::fs::write(&grow, lines[..half].concat()).unwrap();
    let rest = lines[half..].concat();
    let g = grow.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(g).unwrap();
        // In two writes, the first ending mid-line: a partial line waits for its end.
        let cut = rest.len() / 2 + 3;
        f.write_all(&rest[..cut]).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(400));
        f.write_all(&rest[cut..]).unwrap();
    });
    let want = from_pcap.len();
    let followed = devices_of(Source::Events { path: grow, follow: true, diagnosis: Default::default() }, &|s| s.devices.len() >= want);
    writer.join().unwrap();
    assert_eq!(followed, from_pcap);

    // Followed across a rotation (`watch -o F --rotate-bytes N --tui`): lines appended to
    // the file, the file renamed F.1, the rest written to a new F.
    let rot = dir.join("rot.ndjson");
    let third = lines.len() / 3;
    std::fs::write(&rot, lines[..third].concat()).unwrap();
    let (before, after) = (lines[third..2 * third].concat(), lines[2 * third..].concat());
    let r = rot.clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        std::thread::sleep(Duration::from_millis(500));
        let mut f = std::fs::OpenOptions::new().append(true).open(&r).unwrap();
        f.write_all(&before).unwrap();
        drop(f);
        std::fs::rename(&r, r.with_extension("ndjson.1")).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(&r, &after).unwrap();
    });
    let followed = devices_of(Source::Events { path: rot, follow: true, diagnosis: Default::default() }, &|s| s.devices.len() >= want);
    writer.join().unwrap();
    assert_eq!(followed, from_pcap, "every device, from both files");
    let _ = std::fs::remove_dir_all(&dir);
}

// The gateway's events joined with the captures: frank's device appears under its
// DeviceId, with the user its certificate names, in place of frank's principal-only row.
#[test]
fn gateway_events_give_devices_their_names() {
    let dir = std::env::temp_dir().join(format!("kcd-tui-gw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ev = dir.join("gateway.ndjson");
    let line = |ms: i64, frame: u64, status: u16| {
        format!(
            "{{\"timestamp\":\"{}\",\"event_type\":\"gateway\",\"frame\":{frame},\"gateway\":{{\"step\":\"request\",\"outcome\":\"refused\",\"user\":\"frank@lab.test\",\"status\":{status},\"reason\":\"kerberos\",\"finding\":\"krb.s4u2proxy.user_not_delegable\",\"device\":{{\"address\":\"10.89.0.7:4000\",\"device_id\":\"FRANKPAD\",\"device_type\":\"iPad\"}},\"kcd\":{{\"cache_hit\":false,\"step\":\"s4u2proxy\",\"latency_us\":1}}}}}}\n",
            Timestamp(1_796_462_687_000_000_000 + ms * 1_000_000).to_rfc3339()
        )
    };
    std::fs::write(&ev, [line(0, 1, 403), "not an event\n".to_string(), line(500, 2, 403)].concat()).unwrap();
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../captures/incident/incident.pcap");
    let src = Source::Replay { inputs: vec![Input::File(p), Input::GatewayEvents(ev)], decode: Default::default(), diagnosis: Default::default() };
    let (tx, rx) = mpsc::sync_channel(4);
    let (ctl, ctl_rx) = mpsc::channel::<Control>();
    let h = std::thread::spawn(move || source::run(src, tx, ctl_rx, Speed::Max));
    let mut last = None;
    while let Ok(m) = rx.recv_timeout(Duration::from_secs(10)) {
        if let Msg::Snapshot(s) = m {
            let done = s.done;
            last = Some(s);
            if done {
                break;
            }
        }
    }
    drop(ctl);
    drop(rx);
    h.join().unwrap();
    let s = last.unwrap();
    let frank: Vec<_> = s.devices.iter().filter(|d| d.upn == "frank@lab.test").collect();
    assert_eq!(frank.len(), 1, "{:?}", s.devices.iter().map(|d| (&d.key, &d.upn)).collect::<Vec<_>>());
    assert_eq!(frank[0].key, "FRANKPAD");
    assert_eq!(frank[0].failing_step, Some("S4U2Proxy"));
    assert_eq!(frank[0].finding.as_deref(), Some("krb.s4u2proxy.user_not_delegable"));
    assert_eq!(frank[0].requests, 2);
    // The other users of the capture keep their rows.
    assert_eq!(s.devices.len(), 7, "{:?}", s.devices.iter().map(|d| &d.key).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
}
