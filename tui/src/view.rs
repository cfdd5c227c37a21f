//! Drawing the model: a pure function of the model onto a frame. Only the rows in sight
//! are built, so a hundred thousand devices cost what one screenful does.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Borders, Cell, LineGauge, Paragraph, Row, Sparkline, Table, Wrap};
use ratatui::Frame;

use kcd_schema::{Severity, Timestamp};

use crate::model::{Model, Prompt, View, TABS};
use crate::snapshot::Status;
use crate::text::fit;

/// Styles with and without colour: without, status and selection still read (glyphs,
/// words, bold and reverse video).
struct Theme {
    color: bool,
}

impl Theme {
    fn status(&self, s: Status) -> Style {
        let base = Style::new();
        if !self.color {
            return if s == Status::Failing { base.add_modifier(Modifier::BOLD) } else { base };
        }
        match s {
            Status::Failing => base.fg(Color::Red).add_modifier(Modifier::BOLD),
            Status::Warning => base.fg(Color::Yellow),
            Status::Pending => base.fg(Color::Cyan),
            Status::Healthy => base.fg(Color::Green),
        }
    }
    fn severity(&self, s: Severity) -> Style {
        self.status(match s {
            Severity::Error => Status::Failing,
            Severity::Warning => Status::Warning,
            Severity::Info => Status::Pending,
        })
    }
    fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }
    fn dim(&self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new()
        }
    }
    fn bad(&self) -> Style {
        if self.color {
            Style::new().fg(Color::Red)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        }
    }
}

pub fn severity_word(s: Severity) -> (&'static str, &'static str) {
    match s {
        Severity::Error => ("x", "ERROR"),
        Severity::Warning => ("!", "WARNING"),
        Severity::Info => ("i", "NOTE"),
    }
}

fn clock(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    // 2026-11-23T01:15:22.177123Z -> 01:15:22.177
    s.get(11..23).unwrap_or(&s).to_string()
}

fn date_clock(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    s.get(..19).map(|x| x.replace('T', " ")).unwrap_or(s)
}

pub fn draw(m: &Model, f: &mut Frame) {
    let area = f.area();
    if area.width < 20 || area.height < 6 {
        // Too small for anything but a word.
        f.render_widget(Paragraph::new(fit("kcdscope: enlarge the terminal", area.width as usize)), area);
        return;
    }
    let th = Theme { color: m.color };
    let [header, tabs, body, footer] =
        Layout::vertical([Constraint::Length(m.header_lines()), Constraint::Length(1), Constraint::Min(1), Constraint::Length(1)]).areas(area);
    draw_header(m, f, header, &th);
    draw_tabs(m, f, tabs, &th);
    match m.view {
        View::Devices => draw_devices(m, f, body, &th),
        View::Detail => draw_detail(m, f, body, &th),
        View::Kdcs => draw_kdcs(m, f, body, &th),
        View::Findings => draw_findings(m, f, body, &th),
        View::Events => draw_events(m, f, body, &th),
        View::Help => draw_help(f, body),
    }
    draw_footer(m, f, footer, &th);
}

fn draw_header(m: &Model, f: &mut Frame, area: Rect, th: &Theme) {
    let pos = match (m.snap.position, m.snap.start) {
        (Some(p), Some(s)) => format!("{} (+{:.1} s)", date_clock(p), (p.0 - s.0) as f64 / 1e9),
        (Some(p), None) => date_clock(p),
        _ => "waiting for events".into(),
    };
    let state = if m.snap.done && m.replay {
        "end".to_string()
    } else if m.paused {
        "paused".to_string()
    } else if m.replay {
        format!("> {}", m.speed.label())
    } else {
        "live".to_string()
    };
    let (e, w, i) = m.severity_counts();
    let c = &m.snap.counters;
    let line1 = format!("kcdscope | {} | {pos} | {state} | {:.0} ev/s", m.source, m.events_per_s);
    let line2 = format!(
        "devices {} ({} failing) | KDCs {} | findings {e} err {w} warn {i} note | dropped {} evicted {} lag {}",
        m.snap.devices.len(),
        m.failing(),
        m.snap.kdcs.len(),
        c.events_dropped + m.events_dropped,
        c.evicted,
        c.snapshots_dropped
    );
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let failing_style = if e > 0 { th.bad() } else { Style::new() };
    let mut lines = vec![Line::styled(fit(&line1, area.width as usize), bold), Line::styled(fit(&line2, area.width as usize), failing_style)];
    // Drops are always shown: a capture that lost packets cannot vouch for what it did not see.
    if let Some(c) = &m.capture {
        let style = if c.dropped() > 0 { th.bad() } else { Style::new() };
        lines.push(Line::styled(fit(&c.line(), area.width as usize), style));
    }
    f.render_widget(Paragraph::new(lines), area);
}

fn draw_tabs(m: &Model, f: &mut Frame, area: Rect, th: &Theme) {
    let current = match m.view {
        View::Detail => View::Devices,
        View::Help => m.back,
        v => v,
    };
    let mut spans = Vec::new();
    for (n, t) in TABS.iter().enumerate() {
        let label = format!(" {} {} ", n + 1, t.title());
        spans.push(if *t == current { Span::styled(label, th.selected()) } else { Span::raw(label) });
    }
    let info = match &m.filter {
        Ok(fl) if !fl.is_empty() => format!("  filter: {}", m.filter_text),
        Err(_) => format!("  filter: {} (invalid)", m.filter_text),
        _ => String::new(),
    };
    spans.push(Span::styled(info, th.dim()));
    spans.push(Span::styled(format!("  sort: {}", m.sort.label()), th.dim()));
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The first row shown so that `sel` is in sight in a list of `page` rows.
fn offset(sel: usize, page: usize, len: usize) -> usize {
    if len <= page || page == 0 {
        return 0;
    }
    // Keep the selection near the middle once past the first page.
    sel.saturating_sub(page / 2).min(len - page)
}

fn draw_devices(m: &Model, f: &mut Frame, area: Rect, th: &Theme) {
    // DeviceId and address only when there is room and something to show.
    let wide = area.width >= 120 && m.snap.devices.iter().any(|d| !d.device_id.is_empty() || !d.address.is_empty());
    let [list, pane] = Layout::vertical([Constraint::Min(3), Constraint::Length(4)]).areas(area);
    let page = list.height.saturating_sub(2) as usize;
    let off = offset(m.sel[0], page, m.visible.len());
    let rows: Vec<Row> = m
        .visible
        .iter()
        .enumerate()
        .skip(off)
        .take(page)
        .filter_map(|(n, &i)| m.snap.devices.get(i).map(|d| (n, d)))
        .map(|(n, d)| {
            let mut cells = vec![
                Cell::from(format!("{} {}", d.status.glyph(), d.status.word())).style(th.status(d.status)),
                Cell::from(d.label()),
                Cell::from(d.last_step),
                Cell::from(d.failing_step.unwrap_or("")),
                Cell::from(d.finding.clone().unwrap_or_default()),
            ];
            if wide {
                cells.push(Cell::from(d.device_id.clone()));
                cells.push(Cell::from(d.address.clone()));
            }
            cells.push(Cell::from(d.requests.to_string()));
            let r = Row::new(cells);
            if n == m.sel[0] {
                r.style(th.selected())
            } else {
                r
            }
        })
        .collect();
    let mut widths = vec![Constraint::Length(9), Constraint::Fill(3), Constraint::Length(9), Constraint::Length(9), Constraint::Fill(4)];
    let mut head = vec!["STATUS", "DEVICE / USER", "LAST", "FAILING", "FINDING"];
    if wide {
        widths.extend([Constraint::Length(16), Constraint::Length(15)]);
        head.extend(["DEVICE ID", "ADDRESS"]);
    }
    widths.push(Constraint::Length(5));
    head.push("REQ");
    let title = format!(" Devices {} of {} ", m.visible.len(), m.snap.devices.len());
    let t = Table::new(rows, widths)
        .header(Row::new(head).style(Style::new().add_modifier(Modifier::BOLD)))
        .block(Block::new().borders(Borders::TOP).title(title));
    f.render_widget(t, list);
    let text = match m.selected_device() {
        Some(d) => {
            let mut v = vec![Line::from(vec![
                Span::styled(format!("{} {} ", d.status.glyph(), d.status.word()), th.status(d.status)),
                Span::raw(format!("{}  ", d.label())),
                Span::styled(d.finding.clone().unwrap_or_default(), th.dim()),
            ])];
            if let Some(fix) = &d.fix {
                v.push(Line::raw(format!("Fix: {fix}")));
            }
            Text::from(v)
        }
        None if m.snap.devices.is_empty() => Text::raw("No device or principal yet."),
        None => Text::raw("No device matches the filter (Esc clears it)."),
    };
    f.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }).block(Block::new().borders(Borders::TOP)), pane);
}

fn draw_detail(m: &Model, f: &mut Frame, area: Rect, th: &Theme) {
    let Some(d) = m.selected_device() else {
        f.render_widget(Paragraph::new("No device selected (Esc: back)."), area);
        return;
    };
    let [head, steps, why] = Layout::vertical([Constraint::Length(3), Constraint::Min(3), Constraint::Length(7)]).areas(area);
    let mut h = vec![Line::from(vec![
        Span::styled(format!("{} {} ", d.status.glyph(), d.status.word()), th.status(d.status)),
        Span::styled(d.key.clone(), Style::new().add_modifier(Modifier::BOLD)),
    ])];
    let mut facts = format!("UPN {}", d.upn);
    if !d.device_id.is_empty() {
        facts.push_str(&format!("  DeviceId {}", d.device_id));
    }
    if !d.also_known_as.is_empty() {
        facts.push_str(&format!("  also asked for as {}", d.also_known_as.join(", ")));
    }
    h.push(Line::raw(facts));
    h.push(Line::raw(format!("last step {}; failing step {}; {} requests", d.last_step, d.failing_step.unwrap_or("none"), d.requests)));
    f.render_widget(Paragraph::new(h), head);
    // The story in order; the failing step stands out.
    let failing_at = d.steps.iter().rposition(|s| !s.ok);
    let rows: Vec<Row> = d
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mark = if s.ok { "+ ok" } else { "x FAILED" };
            let r = Row::new(vec![
                Cell::from(clock(s.at)),
                Cell::from(s.name),
                Cell::from(s.latency_ms.map(|l| format!("{l:.1} ms")).unwrap_or_else(|| "-".into())),
                Cell::from(mark),
                Cell::from(s.detail.clone()),
                Cell::from(s.evidence.clone()),
            ]);
            if Some(i) == failing_at {
                r.style(th.bad().add_modifier(Modifier::BOLD))
            } else {
                r
            }
        })
        .collect();
    let t = Table::new(
        rows,
        [Constraint::Length(12), Constraint::Length(9), Constraint::Length(9), Constraint::Length(8), Constraint::Fill(3), Constraint::Fill(1)],
    )
    .header(Row::new(["TIME", "STEP", "LATENCY", "RESULT", "WHAT", "EVIDENCE"]).style(Style::new().add_modifier(Modifier::BOLD)))
    .block(Block::new().borders(Borders::TOP).title(" Story (oldest first) "));
    f.render_widget(t, steps);
    let mut w = Vec::new();
    if let Some(id) = &d.finding {
        w.push(Line::styled(id.clone(), th.severity(d.severity.unwrap_or(Severity::Info))));
    }
    if let Some(e) = &d.explanation {
        w.push(Line::raw(e.clone()));
    }
    if let Some(x) = &d.fix {
        w.push(Line::styled(format!("Fix: {x}"), Style::new().add_modifier(Modifier::BOLD)));
    }
    if w.is_empty() {
        w.push(Line::raw("No finding concerns this device."));
    }
    f.render_widget(Paragraph::new(w).wrap(Wrap { trim: true }).block(Block::new().borders(Borders::TOP).title(" Why, and the fix ")), why);
}

fn draw_kdcs(m: &Model, f: &mut Frame, area: Rect, th: &Theme) {
    let [list, pane] = Layout::vertical([Constraint::Min(3), Constraint::Length(6)]).areas(area);
    let page = list.height.saturating_sub(2) as usize;
    let sel = m.sel[1];
    let off = offset(sel, page, m.snap.kdcs.len());
    let ms = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
    let rows: Vec<Row> = m
        .snap
        .kdcs
        .iter()
        .enumerate()
        .skip(off)
        .take(page)
        .map(|(n, k)| {
            let errs: u64 = k.errors.iter().map(|e| e.1).sum();
            let top = k.errors.iter().max_by_key(|e| e.1).map(|e| e.0.clone()).unwrap_or_default();
            let r = Row::new(vec![
                Cell::from(k.name.clone()),
                Cell::from(k.requests.to_string()),
                Cell::from(errs.to_string()),
                Cell::from(k.unanswered.to_string()),
                Cell::from(ms(k.p50_ms)),
                Cell::from(ms(k.p99_ms)),
                Cell::from(k.offset_s.map(|o| format!("{o:+.0} s")).unwrap_or_else(|| "-".into())),
                Cell::from(top),
            ]);
            let r = if k.unanswered > 0 && k.answers == 0 { r.style(th.bad()) } else { r };
            if n == sel {
                r.style(th.selected())
            } else {
                r
            }
        })
        .collect();
    let t = Table::new(
        rows,
        [
            Constraint::Fill(2),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Fill(3),
        ],
    )
    .header(Row::new(["KDC", "REQ", "ERR", "NO ANS", "P50 ms", "P99 ms", "CLOCK", "MOST ERRORS"]).style(Style::new().add_modifier(Modifier::BOLD)))
    .block(Block::new().borders(Borders::TOP).title(format!(" KDCs {} ", m.snap.kdcs.len())));
    f.render_widget(t, list);
    let Some(k) = m.snap.kdcs.get(sel) else {
        f.render_widget(Paragraph::new("No KDC yet.").block(Block::new().borders(Borders::TOP)), pane);
        return;
    };
    let [title, rate, errs, gauge] =
        Layout::vertical([Constraint::Length(m.header_lines()), Constraint::Length(1), Constraint::Length(1), Constraint::Length(1)]).areas(pane);
    f.render_widget(
        Paragraph::new(fit(&format!("{}  realms {}  answers {}  errors: {}", k.name, k.realms, k.answers, k.errors.iter().map(|(e, n)| format!("{e} x{n}")).collect::<Vec<_>>().join(", ")), pane.width as usize))
            .block(Block::new().borders(Borders::TOP)),
        title,
    );
    let hist = m.history.get(&k.name);
    let req: Vec<u64> = hist.map(|h| h.iter().map(|x| x.0).collect()).unwrap_or_default();
    let err: Vec<u64> = hist.map(|h| h.iter().map(|x| x.1).collect()).unwrap_or_default();
    let [l1, s1] = Layout::horizontal([Constraint::Length(9), Constraint::Min(1)]).areas(rate);
    f.render_widget(Paragraph::new("requests"), l1);
    f.render_widget(Sparkline::default().data(&req), s1);
    let [l2, s2] = Layout::horizontal([Constraint::Length(9), Constraint::Min(1)]).areas(errs);
    f.render_widget(Paragraph::new("errors"), l2);
    f.render_widget(Sparkline::default().data(&err).style(th.bad()), s2);
    // The clock against Kerberos' 5-minute limit.
    let off = k.offset_s.unwrap_or(0.0);
    let ratio = (off.abs() / 300.0).clamp(0.0, 1.0);
    let label = match k.offset_s {
        Some(o) => format!("clock {o:+.0} s of +-300 s"),
        None => "clock not measured (no KRB-ERROR yet)".into(),
    };
    let style = if ratio >= 1.0 { th.bad() } else if ratio >= 0.2 { th.status(Status::Warning) } else { th.status(Status::Healthy) };
    f.render_widget(LineGauge::default().ratio(ratio).label(label).filled_style(style), gauge);
}

fn draw_findings(m: &Model, f: &mut Frame, area: Rect, th: &Theme) {
    let [list, pane] = Layout::vertical([Constraint::Min(3), Constraint::Length(6)]).areas(area);
    let page = list.height.saturating_sub(2) as usize;
    let sel = m.sel[2];
    let off = offset(sel, page, m.visible_findings.len());
    let rows: Vec<Row> = m
        .visible_findings
        .iter()
        .enumerate()
        .skip(off)
        .take(page)
        .filter_map(|(n, &i)| m.snap.findings.get(i).map(|x| (n, x)))
        .map(|(n, x)| {
            let (g, w) = severity_word(x.severity);
            let r = Row::new(vec![
                Cell::from(format!("{g} {w}")).style(th.severity(x.severity)),
                Cell::from(x.id.clone()),
                Cell::from(x.count.to_string()),
                Cell::from(x.devices.len().to_string()),
                Cell::from(x.subject.clone()),
            ]);
            if n == sel {
                r.style(th.selected())
            } else {
                r
            }
        })
        .collect();
    let t = Table::new(rows, [Constraint::Length(9), Constraint::Fill(3), Constraint::Length(6), Constraint::Length(7), Constraint::Fill(2)])
        .header(Row::new(["SEVERITY", "FINDING", "COUNT", "DEVICES", "SUBJECT"]).style(Style::new().add_modifier(Modifier::BOLD)))
        .block(Block::new().borders(Borders::TOP).title(format!(" Findings {} (Enter: the devices) ", m.visible_findings.len())));
    f.render_widget(t, list);
    let text = match m.visible_findings.get(sel).and_then(|&i| m.snap.findings.get(i)) {
        Some(x) => Text::from(vec![Line::raw(x.explanation.clone()), Line::styled(format!("Fix: {}", x.fix), Style::new().add_modifier(Modifier::BOLD))]),
        None => Text::raw("No finding."),
    };
    f.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }).block(Block::new().borders(Borders::TOP)), pane);
}

fn draw_events(m: &Model, f: &mut Frame, area: Rect, th: &Theme) {
    let [list, pane] = Layout::vertical([Constraint::Min(3), Constraint::Length(6)]).areas(area);
    let vis = m.events_visible();
    let page = list.height.saturating_sub(1) as usize;
    let sel = m.sel[3].min(vis.len().saturating_sub(1));
    let off = offset(sel, page, vis.len());
    let w = list.width as usize;
    let lines: Vec<Line> = vis
        .iter()
        .enumerate()
        .skip(off)
        .take(page)
        .filter_map(|(n, &i)| m.events.get(i).map(|e| (n, e)))
        .map(|(n, e)| {
            // The listing line carries its own time.
            let l = fit(&e.text, w);
            if n == sel {
                Line::styled(l, th.selected())
            } else {
                Line::raw(l)
            }
        })
        .collect();
    let title = format!(" Events {} kept, {} dropped{} ", m.events.len(), m.events_dropped, if m.follow { ", following" } else { "" });
    f.render_widget(Paragraph::new(lines).block(Block::new().borders(Borders::TOP).title(title)), list);
    let json = vis.get(sel).and_then(|&i| m.events.get(i)).map(|e| e.json.clone()).unwrap_or_default();
    f.render_widget(Paragraph::new(json).wrap(Wrap { trim: false }).block(Block::new().borders(Borders::TOP).title(" Selected event ")), pane);
}

pub const HELP: &[(&str, &str)] = &[
    ("Tab / Shift-Tab, 1-4", "next / previous view, or straight to one: 1 Devices, 2 KDCs, 3 Findings, 4 Events"),
    ("Up Down j k PgUp PgDn Home", "move the selection"),
    ("Enter", "Devices: the device's story; Findings: the devices it concerns"),
    ("Esc", "back; clears the filter"),
    ("/", "filter: words and upn: dev: kdc: err: step: sev: (error|warning|info)"),
    ("s", "sort the devices: status, UPN, requests, last step"),
    ("f", "follow new events on or off"),
    ("space", "pause or resume"),
    ("End", "back to live"),
    ("+ -", "replay speed: 1x, 10x, 100x, as fast as possible"),
    ("[ ]", "replay: 10 s back / forward in capture time"),
    ("g", "replay: go to a time (HH:MM:SS or +SECONDS)"),
    ("y", "copy the selected device's story (OSC 52, works over SSH)"),
    ("e", "export the selected device's story (NDJSON + markdown)"),
    ("?", "this help"),
    ("q / Ctrl-C", "quit"),
];

fn draw_help(f: &mut Frame, area: Rect) {
    let rows: Vec<Row> = HELP.iter().map(|(k, v)| Row::new(vec![Cell::from(*k), Cell::from(*v)])).collect();
    let t = Table::new(rows, [Constraint::Length(27), Constraint::Fill(1)]).block(Block::new().borders(Borders::TOP).title(" Keys (Esc or ?: back) "));
    f.render_widget(t, area);
}

fn draw_footer(m: &Model, f: &mut Frame, area: Rect, th: &Theme) {
    let w = area.width as usize;
    let line = match m.prompt {
        Some(Prompt::Filter) => match &m.filter {
            Ok(_) => Line::raw(fit(&format!("/{}_  (Enter: keep, Esc: clear)", m.filter_text), w)),
            Err(e) => Line::styled(fit(&format!("/{}_  {e}", m.filter_text), w), th.bad()),
        },
        Some(Prompt::GoTo) => Line::raw(fit(&format!("go to (HH:MM:SS or +SECONDS): {}_", m.goto_text), w)),
        None => match &m.message {
            Some(msg) => Line::raw(fit(msg, w)),
            None => Line::styled(fit("q quit  ? help  Tab views  / filter  Enter open  space pause  +/- speed  [ ] step  y copy  e export", w), th.dim()),
        },
    };
    f.render_widget(Paragraph::new(line), area);
}
