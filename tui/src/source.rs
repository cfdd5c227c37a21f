//! Where the UI's data comes from, on a worker thread of its own: capture files replayed
//! through the decoder and the correlator, paced by the replay clock, or an NDJSON event
//! file (the agent's or the gateway's), optionally followed as it grows. The worker sends
//! snapshots and raw event lines over a bounded channel; for a replay a full channel makes
//! the producer wait (nothing is lost), for a followed file a snapshot that does not fit
//! is dropped and counted.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};

use kcd_capture::{replay_file, replay_reader};
use kcd_correlate::Correlator;
use kcd_decode::{Decoder, Sink};
use kcd_schema::{Event, Timestamp};

use crate::model::{Control, EventLine, Msg, Speed, EVENTS_KEPT};
use crate::snapshot::{self, Counters};
use crate::text::clean;

/// One capture to replay.
pub enum Input {
    File(PathBuf),
    /// A capture built into the binary (the bundled incident).
    Bytes(String, &'static [u8]),
    /// The gateway's own events (NDJSON), joined with the captures in time order.
    GatewayEvents(PathBuf),
}

/// The worker fed with the captures' events and, before each, the gateway's events that
/// happened until then.
struct Joined<'w> {
    w: &'w mut Worker,
    feeds: Vec<(String, kcd_export::feed::EventFeed<BufReader<std::fs::File>>)>,
}

impl Joined<'_> {
    fn feed(&mut self, until: Option<Timestamp>) {
        for (label, f) in &mut self.feeds {
            let w = &mut *self.w;
            f.feed_until(until, |g| {
                let mut g = g.clone();
                if g.pcap_file.is_none() {
                    g.pcap_file = Some(std::borrow::Cow::Owned(label.clone()));
                }
                w.event(&g)
            });
        }
    }
}

impl Sink for Joined<'_> {
    fn event(&mut self, e: &Event<'_>) {
        self.feed(Some(e.timestamp));
        self.w.event(e);
    }
}

pub enum Source {
    Replay { inputs: Vec<Input>, decode: kcd_decode::Config, diagnosis: kcd_correlate::Config },
    Events { path: PathBuf, follow: bool, diagnosis: kcd_correlate::Config },
}

/// Longest NDJSON line read from an event file; longer ones are skipped and counted.
const MAX_LINE: usize = 1 << 20;
/// Least wall time between two snapshots.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(100);

/// The worker's side of the channels.
struct Link {
    tx: SyncSender<Msg>,
    ctl: Receiver<Control>,
    /// Block when the UI is behind (replay) or drop and count (followed file).
    blocking: bool,
    gone: bool,
}

impl Link {
    fn send(&mut self, m: Msg, counters: &mut Counters) {
        if self.gone {
            return;
        }
        if self.blocking {
            self.gone = self.tx.send(m).is_err();
            return;
        }
        match self.tx.try_send(m) {
            Ok(()) => {}
            Err(TrySendError::Full(Msg::Snapshot(_))) => counters.snapshots_dropped += 1,
            Err(TrySendError::Full(Msg::Events(v))) => counters.events_dropped += v.len() as u64,
            Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => self.gone = true,
        }
    }
}

/// The replay clock: capture time mapped onto wall time at a speed, paused, or running
/// ahead to a seek target.
struct Pace {
    speed: Speed,
    paused: bool,
    seek: Option<Timestamp>,
    /// (wall, capture) at the last (re)start of the clock: changing speed or resuming
    /// starts it again, so the replay never jumps.
    anchor: Option<(Instant, Timestamp)>,
    /// A seek backwards: replay from the beginning.
    restart: bool,
}

impl Pace {
    fn apply(&mut self, c: Control, position: Option<Timestamp>) {
        match c {
            Control::Speed(s) => {
                self.speed = s;
                self.anchor = None;
            }
            Control::Pause(p) => {
                self.paused = p;
                self.anchor = None;
            }
            Control::Live => {
                self.paused = false;
                self.seek = None;
                self.anchor = None;
            }
            Control::Seek(t) => {
                if position.is_some_and(|p| t < p) {
                    self.restart = true;
                }
                self.seek = Some(t);
                self.paused = false;
                self.anchor = None;
            }
        }
    }
}

struct Worker {
    link: Link,
    corr: Correlator,
    pace: Pace,
    counters: Counters,
    lines: Vec<EventLine>,
    last_snapshot: Instant,
    snapshot_cost: Duration,
    start: Option<Timestamp>,
    position: Option<Timestamp>,
    /// The rest of this pass is skipped (a restart or the UI is gone).
    skip: bool,
    text: String,
    json: Vec<u8>,
}

impl Worker {
    fn new(link: Link, diagnosis: kcd_correlate::Config, speed: Speed) -> Self {
        Worker {
            link,
            corr: Correlator::new(diagnosis),
            pace: Pace { speed, paused: false, seek: None, anchor: None, restart: false },
            counters: Counters::default(),
            lines: Vec::new(),
            last_snapshot: Instant::now(),
            snapshot_cost: Duration::ZERO,
            start: None,
            position: None,
            skip: false,
            text: String::new(),
            json: Vec::new(),
        }
    }

    fn flush(&mut self, done: bool) {
        if !self.lines.is_empty() {
            let lines = std::mem::take(&mut self.lines);
            self.link.send(Msg::Events(lines), &mut self.counters);
        }
        let t0 = Instant::now();
        let s = snapshot::take(&self.corr, self.counters.clone(), self.start, done);
        self.snapshot_cost = t0.elapsed();
        self.link.send(Msg::Snapshot(Box::new(s)), &mut self.counters);
        self.last_snapshot = Instant::now();
    }

    fn controls(&mut self) {
        loop {
            match self.link.ctl.try_recv() {
                Ok(c) => self.pace.apply(c, self.position),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.link.gone = true;
                    break;
                }
            }
        }
        if self.pace.restart || self.link.gone {
            self.skip = true;
        }
    }

    /// Waits while paused, and until the replay clock reaches `at`.
    fn wait_for(&mut self, at: Timestamp) {
        loop {
            self.controls();
            if self.skip {
                return;
            }
            if let Some(t) = self.pace.seek {
                if at >= t {
                    // Arrived: show it and stop here.
                    self.pace.seek = None;
                    self.pace.paused = true;
                    self.flush(false);
                } else {
                    return;
                }
            }
            if self.pace.paused {
                if self.last_snapshot.elapsed() >= SNAPSHOT_EVERY * 5 {
                    self.flush(false);
                }
                match self.link.ctl.recv_timeout(Duration::from_millis(100)) {
                    Ok(c) => self.pace.apply(c, self.position),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => self.link.gone = true,
                }
                continue;
            }
            let Some(f) = self.pace.speed.factor() else { return };
            let (w0, c0) = *self.pace.anchor.get_or_insert((Instant::now(), at));
            let due = w0 + Duration::from_secs_f64(((at.0 - c0.0).max(0) as f64 / 1e9) / f);
            let now = Instant::now();
            if due <= now {
                return;
            }
            if self.last_snapshot.elapsed() >= SNAPSHOT_EVERY {
                self.flush(false);
            }
            std::thread::sleep((due - now).min(Duration::from_millis(50)));
        }
    }
}

impl Sink for Worker {
    fn event(&mut self, e: &Event<'_>) {
        if self.skip {
            return;
        }
        self.counters.events += 1;
        if e.anomaly.is_some() {
            self.counters.anomalies += 1;
        }
        // Known before waiting, so a replay paused on its first event (a seek back to the
        // start) already tells the UI where the capture starts.
        self.start.get_or_insert(e.timestamp);
        self.wait_for(e.timestamp);
        if self.skip {
            return;
        }
        self.position = Some(self.position.map_or(e.timestamp, |p| p.max(e.timestamp)));
        self.corr.event(e);
        if self.lines.len() >= EVENTS_KEPT {
            self.lines.remove(0);
            self.counters.events_dropped += 1;
        }
        self.text.clear();
        kcd_export::describe(e, &mut self.text);
        self.json.clear();
        e.write_json(&mut self.json);
        self.lines.push(EventLine { at: e.timestamp, text: clean(&self.text), json: clean(&String::from_utf8_lossy(&self.json)) });
        // Snapshots cost more with more devices: never spend more than a third of the time
        // on them.
        if self.last_snapshot.elapsed() >= SNAPSHOT_EVERY.max(self.snapshot_cost * 2) {
            self.flush(false);
        }
    }
}

/// Runs the source until the UI goes away.
pub fn run(source: Source, tx: SyncSender<Msg>, ctl: Receiver<Control>, speed: Speed) {
    match source {
        Source::Replay { inputs, decode, diagnosis } => replay(inputs, decode, diagnosis, tx, ctl, speed),
        Source::Events { path, follow, diagnosis } => events(path, follow, diagnosis, tx, ctl),
    }
}

fn replay(inputs: Vec<Input>, decode: kcd_decode::Config, diagnosis: kcd_correlate::Config, tx: SyncSender<Msg>, ctl: Receiver<Control>, speed: Speed) {
    let mut w = Worker::new(Link { tx, ctl, blocking: true, gone: false }, diagnosis.clone(), speed);
    loop {
        let mut decoder = Decoder::new(decode.clone());
        let mut feeds = Vec::new();
        for input in &inputs {
            if let Input::GatewayEvents(p) = input {
                match std::fs::File::open(p) {
                    Ok(f) => feeds.push((p.display().to_string(), kcd_export::feed::EventFeed::new(BufReader::new(f)))),
                    Err(e) => w.lines.push(EventLine { at: Timestamp(0), text: clean(&format!("cannot open {}: {e}", p.display())), json: String::new() }),
                }
            }
        }
        let mut j = Joined { w: &mut w, feeds };
        for input in &inputs {
            let r = match input {
                Input::File(p) => replay_file(p, &p.display().to_string(), &mut decoder, &mut j).map(|_| ()).map_err(|e| e.to_string()),
                Input::Bytes(name, b) => replay_reader(*b, name, &mut decoder, &mut j).map(|_| ()).map_err(|e| format!("{name}: {e:?}")),
                Input::GatewayEvents(_) => Ok(()),
            };
            if let Err(msg) = r {
                j.w.lines.push(EventLine { at: j.w.position.unwrap_or(Timestamp(0)), text: clean(&format!("cannot replay: {msg}")), json: String::new() });
            }
            if j.w.skip {
                break;
            }
        }
        if !j.w.skip {
            decoder.finish(&mut j);
            j.feed(None);
        }
        if !w.skip {
            let st = decoder.stats();
            w.counters.packets = st.packets;
            let cs = w.corr.stats();
            w.counters.evicted = cs.requests_evicted + cs.principals_evicted + cs.clients_evicted + cs.kdcs_evicted + cs.tickets_evicted + cs.devices_evicted;
            w.corr.finish();
            w.flush(true);
        }
        // At the end: wait for a seek back (or the UI to go).
        while !w.pace.restart && !w.link.gone {
            match w.link.ctl.recv() {
                Ok(Control::Seek(t)) if w.position.is_some_and(|p| t < p) => w.pace.apply(Control::Seek(t), w.position),
                Ok(c) => w.pace.apply(c, None),
                Err(_) => w.link.gone = true,
            }
        }
        if w.link.gone {
            return;
        }
        // From the beginning, as fast as possible up to the seek target.
        let seek = w.pace.seek;
        let link = w.link;
        w = Worker::new(link, diagnosis.clone(), speed);
        w.pace.seek = seek;
        w.pace.speed = Speed::Max;
        w.flush(false);
    }
}

fn events(path: PathBuf, follow: bool, diagnosis: kcd_correlate::Config, tx: SyncSender<Msg>, ctl: Receiver<Control>) {
    let mut w = Worker::new(Link { tx, ctl, blocking: !follow, gone: false }, diagnosis, Speed::Max);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            w.lines.push(EventLine { at: Timestamp(0), text: clean(&format!("cannot open {}: {e}", path.display())), json: String::new() });
            w.flush(true);
            return;
        }
    };
    let mut ino = file.metadata().map(|m| m.ino()).ok();
    let mut r = BufReader::new(file);
    let mut line: Vec<u8> = Vec::new();
    let mut skipped = 0u64;
    // The file followed was rotated (its name is another file now): the old one is read to
    // its end once more, for lines written before the rename, then the new one from its start.
    let mut rotated = false;
    loop {
        let n: usize = r.by_ref().take((MAX_LINE + 1 - line.len().min(MAX_LINE)) as u64).read_until(b'\n', &mut line).unwrap_or_default();
        let complete = line.ends_with(b"\n");
        if complete || (n == 0 && !follow && !line.is_empty()) {
            if line.len() <= MAX_LINE + 1 {
                match serde_json::from_slice::<Event<'_>>(line.trim_ascii_end()) {
                    Ok(e) => w.event(&e),
                    Err(_) if line.trim_ascii().is_empty() => {}
                    Err(_) => skipped += 1,
                }
            } else {
                skipped += 1;
            }
            line.clear();
            continue;
        }
        if line.len() > MAX_LINE {
            // A line too long to be an event: drop it up to its end.
            skipped += 1;
            line.clear();
            let mut sink = Vec::new();
            let _ = r.by_ref().read_until(b'\n', &mut sink);
            continue;
        }
        if n == 0 {
            w.counters.anomalies += std::mem::take(&mut skipped);
            if !follow {
                w.corr.finish();
                w.flush(true);
                while !w.link.gone {
                    match w.link.ctl.recv() {
                        Ok(_) => {}
                        Err(_) => w.link.gone = true,
                    }
                }
                return;
            }
            if rotated {
                if let Ok(f) = std::fs::File::open(&path) {
                    ino = f.metadata().map(|m| m.ino()).ok();
                    r = BufReader::new(f);
                }
                rotated = false;
                continue;
            }
            if ino.is_some() && std::fs::metadata(&path).map(|m| m.ino()).ok().is_some_and(|now| Some(now) != ino) {
                rotated = true;
                continue;
            }
            w.flush(false);
            w.controls();
            if w.link.gone {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
