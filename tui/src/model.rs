//! The UI's state and how messages change it (the Elm pattern): keys, resizes, ticks and
//! what the source sends come in as messages; what the shell must do (quit, tell the
//! source, copy, export) goes out as commands. No terminal, no clock, no I/O here.

use std::collections::{BTreeMap, VecDeque};

use kcd_schema::{Severity, Timestamp};

use crate::filter::Filter;
use crate::snapshot::{DeviceRow, Snapshot, Status};
use crate::text::clean;

/// Raw events kept for the Events view.
pub const EVENTS_KEPT: usize = 5_000;
/// Samples of each KDC's rate kept for its sparkline.
pub const HISTORY_KEPT: usize = 60;
/// What `[` and `]` move, in capture time.
pub const STEP_NS: i64 = 10_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Devices,
    Detail,
    Kdcs,
    Findings,
    Events,
    Help,
}

/// The views Tab goes through, in order.
pub const TABS: [View; 4] = [View::Devices, View::Kdcs, View::Findings, View::Events];

impl View {
    pub fn title(self) -> &'static str {
        match self {
            View::Devices => "Devices",
            View::Detail => "Device",
            View::Kdcs => "KDCs",
            View::Findings => "Findings",
            View::Events => "Events",
            View::Help => "Help",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Enter,
    Esc,
    Tab,
    BackTab,
    Backspace,
    CtrlC,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Speed {
    X1,
    X10,
    X100,
    Max,
}

impl Speed {
    pub fn factor(self) -> Option<f64> {
        match self {
            Speed::X1 => Some(1.0),
            Speed::X10 => Some(10.0),
            Speed::X100 => Some(100.0),
            Speed::Max => None,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Speed::X1 => "1x",
            Speed::X10 => "10x",
            Speed::X100 => "100x",
            Speed::Max => "max",
        }
    }
    fn faster(self) -> Self {
        match self {
            Speed::X1 => Speed::X10,
            Speed::X10 => Speed::X100,
            _ => Speed::Max,
        }
    }
    fn slower(self) -> Self {
        match self {
            Speed::Max => Speed::X100,
            Speed::X100 => Speed::X10,
            _ => Speed::X1,
        }
    }
}

/// What the source is asked to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Control {
    Speed(Speed),
    Pause(bool),
    /// Replay up to this capture time, then pause there.
    Seek(Timestamp),
    /// Back to live: unpaused, at the chosen speed, no seek target.
    Live,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    None,
    Quit,
    Control(Control),
    /// Put this text on the clipboard (OSC 52).
    Copy(String),
    /// Write the selected device's story: a file stem, NDJSON lines and a markdown summary.
    Export { name: String, ndjson: String, markdown: String },
}

/// One raw event for the Events view.
#[derive(Debug, Clone, PartialEq)]
pub struct EventLine {
    pub at: Timestamp,
    /// The one-line description, made safe for the terminal.
    pub text: String,
    /// The event as NDJSON.
    pub json: String,
}

#[derive(Debug, Clone)]
pub enum Msg {
    Key(Key),
    Resize(u16, u16),
    /// Wall time in milliseconds (for rates).
    Tick(u64),
    Snapshot(Box<Snapshot>),
    Events(Vec<EventLine>),
    /// The live capture's counters, as the capture reads them.
    Capture(Capture),
}

/// A live capture's counters (`kcdscope watch --tui`): the packets the capture matched,
/// those handed to the decoder and those lost, in the kernel or in the agent. Once the
/// capture has drained, captured + dropped = seen exactly; while packets wait in the
/// kernel's buffer the difference is shown as pending.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capture {
    /// "eBPF" or "libpcap".
    pub backend: String,
    pub seen: u64,
    pub captured: u64,
    pub dropped_kernel: u64,
    pub dropped_user: u64,
}

impl Capture {
    pub fn dropped(&self) -> u64 {
        self.dropped_kernel.saturating_add(self.dropped_user)
    }
    /// Matched but neither read nor lost yet (in the kernel's buffer).
    pub fn pending(&self) -> u64 {
        self.seen.saturating_sub(self.captured.saturating_add(self.dropped()))
    }
    /// The header's line for it.
    pub fn line(&self) -> String {
        let mut s = format!(
            "capture ({}): seen {} | captured {} | dropped {} ({} kernel, {} agent)",
            clean(&self.backend),
            self.seen,
            self.captured,
            self.dropped(),
            self.dropped_kernel,
            self.dropped_user
        );
        if self.pending() > 0 {
            s.push_str(&format!(" | pending {}", self.pending()));
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Status,
    Upn,
    Requests,
    LastStep,
}

impl SortKey {
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Status => "status",
            SortKey::Upn => "UPN",
            SortKey::Requests => "requests",
            SortKey::LastStep => "last step",
        }
    }
    fn next(self) -> Self {
        match self {
            SortKey::Status => SortKey::Upn,
            SortKey::Upn => SortKey::Requests,
            SortKey::Requests => SortKey::LastStep,
            SortKey::LastStep => SortKey::Status,
        }
    }
}

/// What a text prompt at the bottom is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    Filter,
    GoTo,
}

pub struct Model {
    /// "replay: 11 files", "events: gw.ndjson", "live: eth0".
    pub source: String,
    /// A replay can be paced, paused and scrubbed; an event file or live capture only
    /// followed and paused.
    pub replay: bool,
    pub snap: Snapshot,
    /// Indices into `snap.devices` after the filter and the sort.
    pub visible: Vec<usize>,
    pub visible_findings: Vec<usize>,
    pub events: VecDeque<EventLine>,
    pub events_dropped: u64,
    /// Live capture counters, when the events come from `kcdscope watch`.
    pub capture: Option<Capture>,
    pub view: View,
    /// Where Esc from the detail or help returns.
    pub back: View,
    /// Selected row per tab view.
    pub sel: [usize; 4],
    /// The key of the selected device, kept across snapshots.
    pub sel_key: Option<String>,
    pub sort: SortKey,
    pub filter_text: String,
    pub filter: Result<Filter, String>,
    pub prompt: Option<Prompt>,
    pub goto_text: String,
    pub speed: Speed,
    pub paused: bool,
    pub follow: bool,
    pub message: Option<String>,
    pub width: u16,
    pub height: u16,
    pub color: bool,
    pub events_per_s: f64,
    rate_base: Option<(u64, u64)>,
    /// Per KDC: requests and errors per snapshot interval.
    pub history: BTreeMap<String, VecDeque<(u64, u64)>>,
    last_kdc: BTreeMap<String, (u64, u64)>,
    /// Something changed since the last frame.
    pub dirty: bool,
    pub quit: bool,
}

fn tab_index(v: View) -> usize {
    TABS.iter().position(|t| *t == v).unwrap_or(0)
}

impl Model {
    pub fn new(source: impl Into<String>, replay: bool, color: bool) -> Self {
        Model {
            source: clean(&source.into()),
            replay,
            snap: Snapshot::default(),
            visible: Vec::new(),
            visible_findings: Vec::new(),
            events: VecDeque::new(),
            events_dropped: 0,
            capture: None,
            view: View::Devices,
            back: View::Devices,
            sel: [0; 4],
            sel_key: None,
            sort: SortKey::Status,
            filter_text: String::new(),
            filter: Ok(Filter::default()),
            prompt: None,
            goto_text: String::new(),
            speed: Speed::X10,
            paused: false,
            follow: true,
            message: None,
            width: 80,
            height: 24,
            color,
            events_per_s: 0.0,
            rate_base: None,
            history: BTreeMap::new(),
            last_kdc: BTreeMap::new(),
            dirty: true,
            quit: false,
        }
    }

    pub fn selected_device(&self) -> Option<&DeviceRow> {
        self.visible.get(self.sel[0]).and_then(|&i| self.snap.devices.get(i))
    }

    /// Rows of the list in the current view.
    fn rows(&self) -> usize {
        match self.view {
            View::Devices => self.visible.len(),
            View::Kdcs => self.snap.kdcs.len(),
            View::Findings => self.visible_findings.len(),
            View::Events => self.events_visible().len(),
            _ => 0,
        }
    }

    /// Indices of the events the filter keeps.
    pub fn events_visible(&self) -> Vec<usize> {
        match &self.filter {
            Ok(f) if !f.is_empty() => (0..self.events.len()).filter(|&i| f.line(&self.events[i].text)).collect(),
            _ => (0..self.events.len()).collect(),
        }
    }

    /// The header's height: a third line with the live capture's counters.
    pub fn header_lines(&self) -> u16 {
        if self.capture.is_some() {
            3
        } else {
            2
        }
    }

    /// Rows a list shows at the current size (header, tabs, footer and the panes below).
    pub fn page(&self) -> usize {
        (self.height as usize).saturating_sub(10 + self.header_lines() as usize - 2).max(1)
    }

    /// Applies the filter and the sort to the snapshot's rows, keeping the selection on the
    /// same device.
    pub fn refresh(&mut self) {
        let f = self.filter.clone().unwrap_or_default();
        let d = &self.snap.devices;
        let mut v: Vec<usize> = (0..d.len()).filter(|&i| f.device(&d[i])).collect();
        match self.sort {
            SortKey::Status => v.sort_by(|&a, &b| d[a].status.cmp(&d[b].status).then_with(|| d[a].key.cmp(&d[b].key))),
            SortKey::Upn => v.sort_by(|&a, &b| d[a].upn.cmp(&d[b].upn)),
            SortKey::Requests => v.sort_by(|&a, &b| d[b].requests.cmp(&d[a].requests).then_with(|| d[a].key.cmp(&d[b].key))),
            SortKey::LastStep => v.sort_by(|&a, &b| d[a].last_step.cmp(d[b].last_step).then_with(|| d[a].key.cmp(&d[b].key))),
        }
        self.visible = v;
        let fr = &self.snap.findings;
        let mut vf: Vec<usize> = (0..fr.len()).filter(|&i| f.finding(&fr[i])).collect();
        vf.sort_by(|&a, &b| fr[b].severity.cmp(&fr[a].severity).then_with(|| fr[a].id.cmp(&fr[b].id)));
        self.visible_findings = vf;
        if let Some(k) = &self.sel_key {
            if let Some(p) = self.visible.iter().position(|&i| &d[i].key == k) {
                self.sel[0] = p;
            }
        }
        for (sel, tab) in self.sel.iter_mut().zip(TABS) {
            let n = match tab {
                View::Devices => self.visible.len(),
                View::Kdcs => self.snap.kdcs.len(),
                View::Findings => self.visible_findings.len(),
                _ => self.events.len(),
            };
            *sel = (*sel).min(n.saturating_sub(1));
        }
        self.sel_key = self.selected_device().map(|d| d.key.clone());
    }

    fn take_snapshot(&mut self, s: Snapshot) {
        for k in &s.kdcs {
            let now = (k.requests, k.errors.iter().map(|e| e.1).sum::<u64>());
            let before = self.last_kdc.insert(k.name.clone(), now).unwrap_or((0, 0));
            let h = self.history.entry(k.name.clone()).or_default();
            h.push_back((now.0.saturating_sub(before.0), now.1.saturating_sub(before.1)));
            while h.len() > HISTORY_KEPT {
                h.pop_front();
            }
        }
        // The history is bounded by the KDCs the correlator keeps.
        if self.history.len() > s.kdcs.len() * 2 + 16 {
            let names: std::collections::BTreeSet<&str> = s.kdcs.iter().map(|k| k.name.as_str()).collect();
            self.history.retain(|k, _| names.contains(k.as_str()));
            self.last_kdc.retain(|k, _| names.contains(k.as_str()));
        }
        self.snap = s;
        self.refresh();
        if self.follow && self.view == View::Devices && self.sel_key.is_none() {
            self.sel[0] = 0;
        }
    }

    fn take_events(&mut self, lines: Vec<EventLine>) {
        for l in lines {
            if self.events.len() == EVENTS_KEPT {
                self.events.pop_front();
                self.events_dropped += 1;
            }
            self.events.push_back(l);
        }
        if self.follow {
            self.sel[tab_index(View::Events)] = self.events.len().saturating_sub(1);
        }
    }

    pub fn update(&mut self, msg: Msg) -> Cmd {
        match msg {
            Msg::Resize(w, h) => {
                self.width = w;
                self.height = h;
                self.dirty = true;
                Cmd::None
            }
            Msg::Tick(ms) => {
                let ev = self.snap.counters.events;
                match self.rate_base {
                    Some((t0, e0)) if ms >= t0 + 1000 => {
                        let r = (ev.saturating_sub(e0)) as f64 * 1000.0 / (ms - t0) as f64;
                        if (r - self.events_per_s).abs() > f64::EPSILON {
                            self.dirty = true;
                        }
                        self.events_per_s = r;
                        self.rate_base = Some((ms, ev));
                    }
                    None => self.rate_base = Some((ms, ev)),
                    _ => {}
                }
                Cmd::None
            }
            Msg::Snapshot(s) => {
                self.take_snapshot(*s);
                self.dirty = true;
                Cmd::None
            }
            Msg::Capture(c) => {
                if self.capture.as_ref() != Some(&c) {
                    self.capture = Some(c);
                    self.dirty = true;
                }
                Cmd::None
            }
            Msg::Events(lines) => {
                if !lines.is_empty() {
                    self.take_events(lines);
                    self.dirty = true;
                }
                Cmd::None
            }
            Msg::Key(k) => {
                self.dirty = true;
                self.key(k)
            }
        }
    }

    fn key(&mut self, k: Key) -> Cmd {
        if k == Key::CtrlC {
            self.quit = true;
            return Cmd::Quit;
        }
        if let Some(p) = self.prompt {
            return self.prompt_key(p, k);
        }
        self.message = None;
        match k {
            Key::Char('q') => {
                self.quit = true;
                Cmd::Quit
            }
            Key::Char('?') => {
                if self.view == View::Help {
                    self.view = self.back;
                } else {
                    self.back = if self.view == View::Detail { View::Devices } else { self.view };
                    self.view = View::Help;
                }
                Cmd::None
            }
            Key::Tab | Key::BackTab => {
                let i = match self.view {
                    View::Detail | View::Help => tab_index(self.back),
                    v => tab_index(v),
                };
                let n = TABS.len();
                self.view = TABS[if k == Key::Tab { (i + 1) % n } else { (i + n - 1) % n }];
                Cmd::None
            }
            // The tab bar numbers the views; the digits jump to them, as in htop and k9s.
            Key::Char(c @ '1'..='9') if usize::from(c as u8 - b'1') < TABS.len() => {
                self.view = TABS[usize::from(c as u8 - b'1')];
                Cmd::None
            }
            Key::Esc => {
                match self.view {
                    View::Detail | View::Help => self.view = self.back,
                    _ if !self.filter_text.is_empty() => {
                        self.filter_text.clear();
                        self.filter = Ok(Filter::default());
                        self.refresh();
                    }
                    _ => {}
                }
                Cmd::None
            }
            Key::Char('/') => {
                self.prompt = Some(Prompt::Filter);
                Cmd::None
            }
            Key::Char('s') => {
                self.sort = self.sort.next();
                self.refresh();
                self.message = Some(format!("sorted by {}", self.sort.label()));
                Cmd::None
            }
            Key::Char('f') => {
                self.follow = !self.follow;
                self.message = Some(if self.follow { "following" } else { "not following" }.into());
                Cmd::None
            }
            Key::Char(' ') => {
                self.paused = !self.paused;
                Cmd::Control(Control::Pause(self.paused))
            }
            Key::End if self.view != View::Events || self.paused || !self.follow => {
                self.paused = false;
                self.follow = true;
                self.take_events(Vec::new());
                Cmd::Control(Control::Live)
            }
            Key::Char('+') | Key::Char('=') if self.replay => {
                self.speed = self.speed.faster();
                Cmd::Control(Control::Speed(self.speed))
            }
            Key::Char('-') if self.replay => {
                self.speed = self.speed.slower();
                Cmd::Control(Control::Speed(self.speed))
            }
            Key::Char('[') | Key::Char(']') if self.replay => {
                // Before the first event is shown (just after a seek back to the start) there
                // is no position yet: step from the capture's start.
                let Some(pos) = self.snap.position.or(self.snap.start) else { return Cmd::None };
                let to = if k == Key::Char(']') { pos.0.saturating_add(STEP_NS) } else { pos.0.saturating_sub(STEP_NS) };
                let to = self.snap.start.map_or(to, |s| to.max(s.0));
                self.paused = true;
                Cmd::Control(Control::Seek(Timestamp(to)))
            }
            Key::Char('g') if self.replay => {
                self.prompt = Some(Prompt::GoTo);
                self.goto_text.clear();
                Cmd::None
            }
            Key::Char('+' | '-' | '[' | ']' | 'g') => {
                self.message = Some("replay speed and time apply to replays only".into());
                Cmd::None
            }
            Key::Char('y') => match self.selected_device() {
                Some(d) => {
                    let md = story_markdown(d);
                    self.message = Some(format!("copied the story of {} ({} lines)", d.key, md.lines().count()));
                    Cmd::Copy(md)
                }
                None => {
                    self.message = Some("no device selected".into());
                    Cmd::None
                }
            },
            Key::Char('e') => match self.selected_device() {
                Some(d) => {
                    let name = file_stem(&d.key);
                    let key = d.key.to_lowercase();
                    let mut ndjson = String::new();
                    for l in self.events.iter().filter(|l| l.text.to_lowercase().contains(&key)) {
                        ndjson.push_str(&l.json);
                        ndjson.push('\n');
                    }
                    Cmd::Export { name, ndjson, markdown: story_markdown(d) }
                }
                None => {
                    self.message = Some("no device selected".into());
                    Cmd::None
                }
            },
            Key::Enter => {
                match self.view {
                    View::Devices if self.selected_device().is_some() => {
                        self.back = View::Devices;
                        self.view = View::Detail;
                    }
                    View::Findings => {
                        if let Some(f) = self.visible_findings.get(self.sel[2]).and_then(|&i| self.snap.findings.get(i)) {
                            self.filter_text = format!("err:{}", f.id);
                            self.filter = Filter::parse(&self.filter_text);
                            self.view = View::Devices;
                            self.sel[0] = 0;
                            self.sel_key = None;
                            self.refresh();
                        }
                    }
                    _ => {}
                }
                Cmd::None
            }
            Key::Up | Key::Char('k') => self.move_sel(-1),
            Key::Down | Key::Char('j') => self.move_sel(1),
            Key::PageUp => self.move_sel(-(self.page() as i64)),
            Key::PageDown => self.move_sel(self.page() as i64),
            Key::Home => self.move_sel(i64::MIN / 2),
            Key::End => self.move_sel(i64::MAX / 2),
            _ => Cmd::None,
        }
    }

    fn move_sel(&mut self, by: i64) -> Cmd {
        let view = if self.view == View::Detail { View::Devices } else { self.view };
        if view == View::Help {
            return Cmd::None;
        }
        let i = tab_index(view);
        let n = {
            let saved = self.view;
            self.view = view;
            let n = self.rows();
            self.view = saved;
            n
        };
        if n == 0 {
            return Cmd::None;
        }
        let cur = self.sel[i] as i64;
        self.sel[i] = (cur.saturating_add(by)).clamp(0, n as i64 - 1) as usize;
        if view == View::Devices {
            self.sel_key = self.selected_device().map(|d| d.key.clone());
        }
        if view == View::Events && by < 0 {
            // Scrolling back stops the tail; End resumes it.
            self.follow = false;
        }
        Cmd::None
    }

    fn prompt_key(&mut self, p: Prompt, k: Key) -> Cmd {
        let text = match p {
            Prompt::Filter => &mut self.filter_text,
            Prompt::GoTo => &mut self.goto_text,
        };
        match k {
            Key::Char(c) if text.chars().count() < 200 => text.push(c),
            Key::Backspace => {
                text.pop();
            }
            Key::Esc => {
                text.clear();
                self.prompt = None;
            }
            Key::Enter => {
                self.prompt = None;
                if p == Prompt::GoTo {
                    return match parse_time(&self.goto_text, self.snap.start) {
                        Ok(t) => {
                            self.paused = true;
                            Cmd::Control(Control::Seek(t))
                        }
                        Err(e) => {
                            self.message = Some(e);
                            Cmd::None
                        }
                    };
                }
            }
            _ => {}
        }
        if p == Prompt::Filter {
            self.filter = Filter::parse(&self.filter_text);
            self.refresh();
        }
        Cmd::None
    }

    /// Findings by severity, for the header.
    pub fn severity_counts(&self) -> (usize, usize, usize) {
        let n = |s| self.snap.findings.iter().filter(|f| f.severity == s).count();
        (n(Severity::Error), n(Severity::Warning), n(Severity::Info))
    }

    pub fn failing(&self) -> usize {
        self.snap.devices.iter().filter(|d| d.status == Status::Failing).count()
    }
}

/// "HH:MM:SS" on the capture's first day (UTC), or "+SECONDS" from its start.
pub fn parse_time(text: &str, start: Option<Timestamp>) -> Result<Timestamp, String> {
    let t = text.trim();
    let start = start.ok_or("nothing replayed yet")?;
    if let Some(rel) = t.strip_prefix('+') {
        let s: f64 = rel.parse().map_err(|_| format!("{t:?}: give +SECONDS or HH:MM:SS"))?;
        if !(0.0..1e9).contains(&s) {
            return Err(format!("{t:?}: out of range"));
        }
        return Ok(Timestamp(start.0.saturating_add((s * 1e9) as i64)));
    }
    let parts: Vec<&str> = t.split(':').collect();
    let [h, m, s] = parts.as_slice() else {
        return Err(format!("{t:?}: give HH:MM:SS or +SECONDS"));
    };
    let num = |x: &str, max: u32| x.parse::<u32>().ok().filter(|v| *v <= max);
    match (num(h, 23), num(m, 59), num(s, 59)) {
        (Some(h), Some(m), Some(s)) => {
            let day = start.0.div_euclid(86_400_000_000_000) * 86_400_000_000_000;
            Ok(Timestamp(day + i64::from(h * 3600 + m * 60 + s) * 1_000_000_000))
        }
        _ => Err(format!("{t:?}: give HH:MM:SS or +SECONDS")),
    }
}

fn file_stem(key: &str) -> String {
    let s: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).take(64).collect();
    format!("kcdscope-{s}")
}

/// A device's story for a ticket or a chat: what failed, why, the fix, then every step.
pub fn story_markdown(d: &DeviceRow) -> String {
    let mut s = format!("# {} — {}\n\n", d.key, d.status.word());
    if !d.device_id.is_empty() {
        s.push_str(&format!("- DeviceId: {}\n", d.device_id));
    }
    s.push_str(&format!("- UPN: {}\n", d.upn));
    if !d.also_known_as.is_empty() {
        s.push_str(&format!("- also asked for as: {}\n", d.also_known_as.join(", ")));
    }
    s.push_str(&format!("- last step: {}\n", d.last_step));
    if let Some(f) = d.failing_step {
        s.push_str(&format!("- failing step: {f}\n"));
    }
    if let Some(f) = &d.finding {
        s.push_str(&format!("- finding: {f}\n"));
    }
    if let Some(e) = &d.explanation {
        s.push_str(&format!("\n**Why:** {e}\n"));
    }
    if let Some(f) = &d.fix {
        s.push_str(&format!("\n**Fix:** {f}\n"));
    }
    s.push_str("\n| time | step | latency | result | evidence |\n|---|---|---|---|---|\n");
    for st in &d.steps {
        s.push_str(&format!(
            "| {} | {} | {} | {} {} | {} |\n",
            st.at.to_rfc3339(),
            st.name,
            st.latency_ms.map(|l| format!("{l:.1} ms")).unwrap_or_else(|| "-".into()),
            if st.ok { "ok" } else { "FAILED" },
            st.detail.replace('|', "/"),
            st.evidence
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m() -> Model {
        let mut m = Model::new("test", true, false);
        m.snap.start = Some(Timestamp(1_000 * 1_000_000_000));
        m.snap.position = Some(Timestamp(1_030 * 1_000_000_000));
        m
    }

    #[test]
    fn capture_counters_in_the_header_line() {
        let mut m = m();
        assert_eq!(m.header_lines(), 2);
        let page = m.page();
        let c = Capture { backend: "eBPF".into(), seen: 100_000, captured: 61_234, dropped_kernel: 38_700, dropped_user: 0 };
        m.dirty = false;
        m.update(Msg::Capture(c.clone()));
        assert!(m.dirty);
        assert_eq!(m.header_lines(), 3);
        assert_eq!(m.page(), page - 1, "the third header line takes a row from the lists");
        // 66 neither read nor lost yet: pending, not hidden in the sum.
        assert_eq!(c.pending(), 66);
        assert_eq!(c.line(), "capture (eBPF): seen 100000 | captured 61234 | dropped 38700 (38700 kernel, 0 agent) | pending 66");
        // The same reading again is not a change.
        m.dirty = false;
        m.update(Msg::Capture(c.clone()));
        assert!(!m.dirty);
        let done = Capture { captured: 61_299, dropped_user: 1, ..c };
        assert_eq!(done.pending(), 0);
        assert_eq!(done.captured + done.dropped(), done.seen);
        assert_eq!(done.line(), "capture (eBPF): seen 100000 | captured 61299 | dropped 38701 (38700 kernel, 1 agent)");
        // A backend name with control characters cannot reach the terminal as such.
        let hostile = Capture { backend: "x\x1b[2Jy".into(), ..Default::default() };
        assert!(!hostile.line().contains('\x1b'));
    }

    #[test]
    fn the_replay_clock_keys() {
        let mut m = m();
        assert_eq!(m.update(Msg::Key(Key::Char('+'))), Cmd::Control(Control::Speed(Speed::X100)));
        assert_eq!(m.update(Msg::Key(Key::Char('+'))), Cmd::Control(Control::Speed(Speed::Max)));
        assert_eq!(m.update(Msg::Key(Key::Char('+'))), Cmd::Control(Control::Speed(Speed::Max)));
        assert_eq!(m.update(Msg::Key(Key::Char('-'))), Cmd::Control(Control::Speed(Speed::X100)));
        assert_eq!(m.update(Msg::Key(Key::Char(' '))), Cmd::Control(Control::Pause(true)));
        assert_eq!(m.update(Msg::Key(Key::Char(' '))), Cmd::Control(Control::Pause(false)));
        // Ten seconds back and forth, never before the start.
        assert_eq!(m.update(Msg::Key(Key::Char('['))), Cmd::Control(Control::Seek(Timestamp(1_020 * 1_000_000_000))));
        assert!(m.paused);
        assert_eq!(m.update(Msg::Key(Key::Char(']'))), Cmd::Control(Control::Seek(Timestamp(1_040 * 1_000_000_000))));
        m.snap.position = Some(Timestamp(1_005 * 1_000_000_000));
        assert_eq!(m.update(Msg::Key(Key::Char('['))), Cmd::Control(Control::Seek(Timestamp(1_000 * 1_000_000_000))));
        // Back at the start nothing is shown yet (no position): ] still steps forward.
        m.snap.position = None;
        assert_eq!(m.update(Msg::Key(Key::Char(']'))), Cmd::Control(Control::Seek(Timestamp(1_010 * 1_000_000_000))));
        assert_eq!(m.update(Msg::Key(Key::Char('['))), Cmd::Control(Control::Seek(Timestamp(1_000 * 1_000_000_000))));
        assert_eq!(m.update(Msg::Key(Key::End)), Cmd::Control(Control::Live));
        assert!(!m.paused && m.follow);
        // g: a time typed at the prompt.
        m.update(Msg::Key(Key::Char('g')));
        for c in "+12.5".chars() {
            m.update(Msg::Key(Key::Char(c)));
        }
        assert_eq!(m.update(Msg::Key(Key::Enter)), Cmd::Control(Control::Seek(Timestamp(1_012_500_000_000))));
        m.update(Msg::Key(Key::Char('g')));
        for c in "25:00:00".chars() {
            m.update(Msg::Key(Key::Char(c)));
        }
        assert_eq!(m.update(Msg::Key(Key::Enter)), Cmd::None);
        assert!(m.message.as_deref().is_some_and(|x| x.contains("HH:MM:SS")));
        // A followed event file has no replay clock.
        let mut live = Model::new("events", false, false);
        assert_eq!(live.update(Msg::Key(Key::Char('+'))), Cmd::None);
        assert!(live.message.is_some());
    }

    #[test]
    fn times_on_the_capture_day() {
        let start = Some(Timestamp(1_764_900_000 * 1_000_000_000));
        let day = 1_764_900_000 / 86_400 * 86_400;
        assert_eq!(parse_time("01:02:03", start), Ok(Timestamp((day + 3723) * 1_000_000_000)));
        assert!(parse_time("1:2", start).is_err());
        assert!(parse_time("+x", start).is_err());
        assert!(parse_time("+1", None).is_err());
    }

    #[test]
    fn the_event_ring_is_bounded_and_counts_what_it_drops() {
        let mut m = m();
        let line = |i: i64| EventLine { at: Timestamp(i), text: format!("e{i}"), json: String::new() };
        m.update(Msg::Events((0..(EVENTS_KEPT as i64 + 10)).map(line).collect()));
        assert_eq!(m.events.len(), EVENTS_KEPT);
        assert_eq!(m.events_dropped, 10);
        assert_eq!(m.events.front().map(|e| e.text.as_str()), Some("e10"));
    }

    #[test]
    fn quit_keys() {
        assert_eq!(m().update(Msg::Key(Key::Char('q'))), Cmd::Quit);
        assert_eq!(m().update(Msg::Key(Key::CtrlC)), Cmd::Quit);
        // While typing a filter, q is a letter.
        let mut x = m();
        x.update(Msg::Key(Key::Char('/')));
        assert_eq!(x.update(Msg::Key(Key::Char('q'))), Cmd::None);
        assert_eq!(x.filter_text, "q");
    }
}
