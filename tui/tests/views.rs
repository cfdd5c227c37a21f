//! The views drawn from the bundled incident (captures/incident, made by the Samba lab; its
//! README says what each user's case is), at the sizes a terminal has, with and without
//! colour, and at every size without panicking.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use kcd_correlate::Correlator;
use kcd_decode::Decoder;
use kcd_schema::Event;
use kcd_tui::model::{EventLine, Key, Model, Msg, View};
use kcd_tui::snapshot::{self, Counters};
use kcd_tui::text::clean;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;
use ratatui::Terminal;

fn incident() -> (kcd_tui::snapshot::Snapshot, Vec<EventLine>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../captures/incident");
    let mut dec = Decoder::new(Default::default());
    let mut corr = Correlator::new(Default::default());
    let mut lines = Vec::new();
    {
        let mut sink = |e: &Event<'_>| {
            corr.event(e);
            let mut t = String::new();
            kcd_export::describe(e, &mut t);
            let mut j = Vec::new();
            e.write_json(&mut j);
            lines.push(EventLine { at: e.timestamp, text: clean(&t), json: String::from_utf8_lossy(&j).into_owned() });
        };
        for f in ["incident.pcap", "incident-clock.pcap"] {
            let p = dir.join(f);
            kcd_capture::replay_file(&p, f, &mut dec, &mut sink).unwrap();
        }
        dec.finish(&mut sink);
    }
    corr.finish();
    let counters = Counters { packets: dec.stats().packets, events: lines.len() as u64, ..Default::default() };
    (snapshot::take(&corr, counters, None, true), lines)
}

fn model(w: u16, h: u16, color: bool) -> Model {
    let (s, lines) = incident();
    let mut m = Model::new("replay: the bundled incident", true, color);
    m.update(Msg::Resize(w, h));
    m.update(Msg::Events(lines));
    m.update(Msg::Snapshot(Box::new(s)));
    m
}

fn draw(m: &Model) -> Buffer {
    let mut t = Terminal::new(TestBackend::new(m.width, m.height)).unwrap();
    t.draw(|f| kcd_tui::view::draw(m, f)).unwrap();
    t.backend().buffer().clone()
}

fn text(b: &Buffer) -> String {
    let mut s = String::new();
    for y in 0..b.area.height {
        for x in 0..b.area.width {
            s.push_str(b[(x, y)].symbol());
        }
        s.push('\n');
    }
    s
}

fn keys(m: &mut Model, ks: &[Key]) {
    for k in ks {
        m.update(Msg::Key(*k));
    }
}

/// Each view, as it is reached by keys, at three sizes.
#[test]
fn every_view_at_every_size() {
    for (w, h) in [(80, 24), (120, 40), (200, 50)] {
        let mut m = model(w, h, true);
        let mut shots = vec![("devices", text(&draw(&m)))];
        keys(&mut m, &[Key::Enter]);
        assert_eq!(m.view, View::Detail);
        shots.push(("detail", text(&draw(&m))));
        keys(&mut m, &[Key::Esc, Key::Tab]);
        shots.push(("kdcs", text(&draw(&m))));
        keys(&mut m, &[Key::Tab]);
        shots.push(("findings", text(&draw(&m))));
        keys(&mut m, &[Key::Tab]);
        shots.push(("events", text(&draw(&m))));
        keys(&mut m, &[Key::Char('?')]);
        shots.push(("help", text(&draw(&m))));
        for (name, s) in shots {
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), s);
        }
    }
}

/// What the lab made of each user (captures/incident/README.md) is what the Devices view
/// says, and the failing device's detail carries its fix.
#[test]
fn the_devices_view_names_each_users_outcome() {
    let m = model(120, 40, true);
    let s = text(&draw(&m));
    for (user, status, finding) in [
        ("carol@lab.test", "FAILING", "krb.account_disabled"),
        ("frank@lab.test", "FAILING", "krb.s4u2proxy.user_not_delegable"),
        ("ivan@lab.test", "FAILING", "krb.account_expired"),
        ("nosuch@lab.test", "FAILING", "krb.principal_unknown"),
        ("erin@lab.test", "FAILING", "krb.s4u2proxy.refused"),
        ("alice@lab.test", "OK", ""),
        ("grace@lab.test", "OK", ""),
    ] {
        let line = s.lines().find(|l| l.contains(user)).unwrap_or_else(|| panic!("{user} not shown:\n{s}"));
        assert!(line.contains(status) && line.contains(finding), "{user}: {line}");
    }
    // Failing devices sort first.
    let first = s.lines().position(|l| l.contains("FAILING")).unwrap();
    let ok = s.lines().position(|l| l.contains("+ OK")).unwrap();
    assert!(first < ok);
}

#[test]
fn no_color_means_no_colour_and_status_still_reads() {
    let m = model(80, 24, false);
    let b = draw(&m);
    for c in b.content() {
        assert!(c.fg == Color::Reset && c.bg == Color::Reset, "a coloured cell without colour: {c:?}");
    }
    let s = text(&b);
    assert!(s.contains("x FAILING") && s.contains("+ OK"), "{s}");
    // With colour, the failing rows are red.
    let b = draw(&model(80, 24, true));
    assert!(b.content().iter().any(|c| c.fg == Color::Red));
}

#[test]
fn filter_keys_and_validation() {
    let mut m = model(80, 24, true);
    keys(&mut m, &[Key::Char('/')]);
    for c in "upn:frank".chars() {
        keys(&mut m, &[Key::Char(c)]);
    }
    keys(&mut m, &[Key::Enter]);
    assert_eq!(m.visible.len(), 1);
    assert_eq!(m.selected_device().unwrap().upn, "frank@lab.test");
    // An unknown key is refused as it is typed, and says why.
    keys(&mut m, &[Key::Esc, Key::Char('/'), Key::Char('x'), Key::Char(':'), Key::Char('1')]);
    let s = text(&draw(&m));
    assert!(s.contains("not a filter key"), "{s}");
    keys(&mut m, &[Key::Esc]);
    assert_eq!(m.visible.len(), m.snap.devices.len());
    // sev:error keeps the failing ones.
    keys(&mut m, &[Key::Char('/')]);
    for c in "sev:error".chars() {
        keys(&mut m, &[Key::Char(c)]);
    }
    keys(&mut m, &[Key::Enter]);
    assert_eq!(m.visible.len(), m.failing());
    // From a finding to its devices.
    let mut m = model(80, 24, true);
    keys(&mut m, &[Key::Tab, Key::Tab]);
    assert_eq!(m.view, View::Findings);
    // The first finding that concerns devices (a server's finding, Exchange's 401, has none).
    let at = m.visible_findings.iter().position(|&i| !m.snap.findings[i].devices.is_empty()).unwrap();
    for _ in 0..at {
        keys(&mut m, &[Key::Down]);
    }
    let id = m.snap.findings[m.visible_findings[at]].id.clone();
    keys(&mut m, &[Key::Enter]);
    assert_eq!(m.view, View::Devices);
    assert_eq!(m.filter_text, format!("err:{id}"));
    assert!(!m.visible.is_empty());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
    #[test]
    fn drawing_never_panics_at_any_size(w in 1u16..=300, h in 1u16..=100, view in 0usize..6) {
        let mut m = model(w, h, view % 2 == 0);
        let ks: &[Key] = match view {
            0 => &[],
            1 => &[Key::Enter],
            2 => &[Key::Tab],
            3 => &[Key::Tab, Key::Tab],
            4 => &[Key::Tab, Key::Tab, Key::Tab],
            _ => &[Key::Char('?')],
        };
        keys(&mut m, ks);
        let _ = draw(&m);
    }
}

/// `kcdscope watch --tui`: the capture's counters are a third header line, the list keeps
/// its place below it, drops in red; at 80 columns the line is cut, not wrapped.
#[test]
fn a_live_capture_shows_its_counters_and_drops_in_the_header() {
    use kcd_tui::model::Capture;
    for (w, h) in [(80, 24), (120, 40)] {
        let mut m = model(w, h, true);
        let before = text(&draw(&m));
        m.update(Msg::Capture(Capture { backend: "eBPF".into(), seen: 100_000, captured: 61_300, dropped_kernel: 38_700, dropped_user: 0 }));
        let b = draw(&m);
        let s = text(&b);
        let third = s.lines().nth(2).unwrap();
        assert!(third.starts_with("capture (eBPF): seen 100000 | captured 61300 | dropped 38700"), "{s}");
        assert!(s.lines().all(|l| l.chars().count() == w as usize), "{s}");
        // The tabs moved down one row, the rest of the screen with them.
        assert_eq!(s.lines().nth(3), before.lines().nth(2), "{s}");
        assert!((0..w).any(|x| b[(x, 2)].fg == Color::Red), "drops are red");
        // No drops: the same line, not red.
        m.update(Msg::Capture(Capture { backend: "eBPF".into(), seen: 5, captured: 5, ..Default::default() }));
        let b = draw(&m);
        assert!(text(&b).lines().nth(2).unwrap().starts_with("capture (eBPF): seen 5 | captured 5 | dropped 0 (0 kernel, 0 agent)  "));
        assert!((0..w).all(|x| b[(x, 2)].fg != Color::Red));
    }
}

/// The tab bar numbers the views; pressing the number written beside a name shows that
/// view, from anywhere but a prompt, where a digit is text.
#[test]
fn the_digits_in_the_tab_bar_switch_views() {
    let mut m = model(120, 40, true);
    let bar = text(&draw(&m)).lines().find(|l| l.contains("Devices") && l.contains("Events")).unwrap().to_string();
    let mut seen = 0;
    for (name, view) in [("Devices", View::Devices), ("KDCs", View::Kdcs), ("Findings", View::Findings), ("Events", View::Events)] {
        let at = bar.find(name).unwrap_or_else(|| panic!("{name} not in {bar}"));
        let digit = bar[..at].trim_end().chars().last().unwrap();
        assert!(digit.is_ascii_digit(), "{name} has no number in {bar}");
        for from in [&[][..], &[Key::Char('?')][..], &[Key::Char('1'), Key::Enter][..]] {
            keys(&mut m, from);
            keys(&mut m, &[Key::Char(digit)]);
            assert_eq!(m.view, view, "{digit} after {from:?}");
        }
        seen += 1;
    }
    assert_eq!(seen, 4);
    // In the filter prompt the digits are the filter's text.
    keys(&mut m, &[Key::Char('1'), Key::Char('/'), Key::Char('3')]);
    assert_eq!(m.view, View::Devices);
    assert_eq!(m.filter_text, "3");
}
