//! The incident report: what an administrator on a call reads. Findings first (errors
//! first, each with its fix), then the KDCs, each principal's delegation chain and the
//! client hosts. Plain text that fits 80 columns; colour only when asked for (a terminal).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kcd_correlate::{Correlator, Outcome, Step};
use kcd_decode::Stats;
use kcd_schema::{Evidence, Finding, Severity, Timestamp, Transport};

pub const WIDTH: usize = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn severity(&self, s: Severity) -> String {
        let (label, code) = match s {
            Severity::Error => ("ERROR  ", "1;31"),
            Severity::Warning => ("WARNING", "1;33"),
            Severity::Info => ("INFO   ", "36"),
        };
        self.paint(code, label)
    }
    fn heading(&self, s: &str) -> String {
        self.paint("1", s)
    }
}

/// Appends `text` wrapped at WIDTH, every line starting with `indent` spaces (the first
/// with `first` instead, when given). The text may hold names and messages from the wire:
/// control characters are escaped (see `crate::visible`), and a word longer than a line
/// is cut, so that nothing can move the cursor or push past 80 columns.
/// `wrap` whose first line starts at `first` columns and the rest at `rest`.
fn wrap_hanging(out: &mut String, first: usize, rest: usize, text: &str) {
    let mut tmp = String::new();
    wrap(&mut tmp, None, rest, text);
    let cut = rest.saturating_sub(first);
    out.push_str(tmp.get(cut..).unwrap_or(&tmp));
}

fn wrap(out: &mut String, first: Option<&str>, indent: usize, text: &str) {
    wrap_painted(out, first, indent, &crate::visible(text));
}

/// `wrap` for text whose only escape sequences are the report's own colours (every wire
/// string in it already passed through `crate::visible`).
fn wrap_painted(out: &mut String, first: Option<&str>, indent: usize, text: &str) {
    let pad = " ".repeat(indent);
    let mut line = match first {
        Some(f) => f.to_string(),
        None => pad.clone(),
    };
    let mut visible = visible_len(&line);
    // A first line that starts with its own text takes words only as far as they fit.
    let mut empty = first.is_none();
    let room = WIDTH.saturating_sub(indent).max(8);
    for word in text.split_whitespace().flat_map(|w| cut(w, room)) {
        let w = visible_len(word);
        if !empty && visible + 1 + w > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = pad.clone();
            visible = indent;
            empty = true;
        }
        if !empty {
            line.push(' ');
            visible += 1;
        }
        line.push_str(word);
        visible += w;
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// `word` in pieces of at most `room` characters (colour sequences are never cut: only
/// escaped wire text, which has none, is long enough to need cutting).
fn cut(word: &str, room: usize) -> Vec<&str> {
    if visible_len(word) <= room {
        return vec![word];
    }
    let mut out = Vec::new();
    let mut rest = word;
    while !rest.is_empty() {
        let at = rest.char_indices().nth(room).map_or(rest.len(), |(i, _)| i);
        out.push(&rest[..at]);
        rest = &rest[at..];
    }
    out
}

/// Width on screen: ANSI colour sequences take none.
pub fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut esc = false;
    for c in s.chars() {
        if esc {
            esc = c != 'm';
        } else if c == '\x1b' {
            esc = true;
        } else {
            n += 1;
        }
    }
    n
}

fn clock(t: Timestamp) -> String {
    // "2026-11-23T01:15:23.612345678Z" -> "01:15:23.612"
    let s = t.to_rfc3339();
    s.get(11..23).unwrap_or(&s).to_string()
}

fn date_clock(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    match (s.get(..10), s.get(11..23)) {
        (Some(d), Some(c)) => format!("{d} {c}"),
        _ => s,
    }
}

fn ms(us: i64) -> String {
    let v = us as f64 / 1000.0;
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn short_file(f: &str) -> &str {
    f.rsplit('/').next().unwrap_or(f)
}

/// "d_tcp_blocked.pcap frames 4, 6; other.pcap frame 2"
fn evidence_text(ev: &[Evidence]) -> String {
    let mut by_file: Vec<(String, Vec<u64>)> = Vec::new();
    for e in ev {
        let f = e.pcap_file.as_deref().map(short_file).unwrap_or("-").to_string();
        match by_file.iter_mut().find(|(x, _)| *x == f) {
            Some((_, v)) => v.push(e.frame),
            None => by_file.push((f, vec![e.frame])),
        }
    }
    by_file
        .into_iter()
        .map(|(f, mut frames)| {
            frames.sort_unstable();
            frames.dedup();
            let list: Vec<String> = frames.iter().map(u64::to_string).collect();
            format!("{f} {} {}", if frames.len() == 1 { "frame" } else { "frames" }, list.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn subject_text(f: &Finding) -> String {
    use kcd_schema::SubjectKind as K;
    let kind = match f.subject.kind {
        K::Kdc => "KDC",
        K::Principal => "principal",
        K::ServiceAccount => "service account",
        K::Spn => "SPN",
        K::Client => "client",
        K::Device => "device",
        K::Ca => "CA",
        K::Server => "server",
    };
    format!("{kind} {}", f.subject.name)
}

fn finding(out: &mut String, f: &Finding, st: Style) {
    let _ = writeln!(out, "{} {}", st.severity(f.severity), st.paint("1", &f.id));
    let when = if f.count == 1 {
        format!("seen once at {}", clock(f.first_seen))
    } else {
        format!("seen {} times, {} to {}", f.count, clock(f.first_seen), clock(f.last_seen))
    };
    wrap(out, None, 8, &format!("{}, {when}", subject_text(f)));
    wrap(out, None, 8, &f.explanation);
    wrap(out, None, 8, &format!("Fix: {}", f.fix));
    if !f.evidence.is_empty() {
        wrap(out, None, 8, &format!("Evidence: {}", evidence_text(&f.evidence)));
    }
    out.push('\n');
}

fn step(out: &mut String, c: &Correlator, s: &Step, st: Style) {
    let transport = match s.transport {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
    };
    wrap(out, Some(&format!("    {} {:<9} ->", clock(s.at), s.kind.name())), 17, &s.target);
    let mut detail = match s.outcome {
        Outcome::Ok => st.paint("32", "ok"),
        Outcome::Error(code) => format!("{}: {code} ({})", st.paint("1;31", "FAILED"), code.0),
        Outcome::Unanswered => st.paint("1;31", "NO ANSWER"),
    };
    if let Some(l) = s.latency_us {
        let _ = write!(detail, ", {}", ms(l));
    }
    let _ = write!(detail, ", KDC {} over {transport}", s.kdc);
    if s.after_too_big {
        detail.push_str(" (after RESPONSE_TOO_BIG on UDP)");
    }
    if s.after_failover {
        detail.push_str(" (after another KDC did not answer)");
    }
    let file = crate::visible(c.file_of(s).map(short_file).unwrap_or(""));
    let _ = write!(detail, ", frame {}{}{}", s.frame, if file.is_empty() { "" } else { " of " }, file);
    wrap_painted(out, None, 17, &detail);
}

/// The whole report. `findings` as `Correlator::findings` returned them.
pub fn render(c: &Correlator, findings: &[Finding], stats: &Stats, st: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", st.heading("kcdscope incident report"));
    let span = match c.span() {
        Some((a, b)) => format!(
            "{} to {} UTC ({:.1} s)",
            date_clock(a),
            clock(b),
            (b.0 - a.0) as f64 / 1e9
        ),
        None => "no packets".into(),
    };
    wrap(
        &mut out,
        None,
        2,
        &format!(
            "{} read, {}, {}: {span}",
            plural(stats.files, "capture file", "capture files"),
            plural(stats.packets, "packet", "packets"),
            plural(stats.messages, "Kerberos message", "Kerberos messages")
        ),
    );
    out.push('\n');

    let count = |s| findings.iter().filter(|f| f.severity == s).count() as u64;
    let _ = writeln!(
        out,
        "{}: {}, {}, {}",
        st.heading("FINDINGS"),
        plural(count(Severity::Error), "error", "errors"),
        plural(count(Severity::Warning), "warning", "warnings"),
        plural(count(Severity::Info), "note", "notes"),
    );
    if findings.is_empty() {
        wrap(&mut out, None, 2, "Nothing wrong was seen in these captures.");
    }
    out.push('\n');
    for f in findings {
        finding(&mut out, f, st);
    }

    let kdcs = c.kdcs();
    if !kdcs.is_empty() {
        let _ = writeln!(out, "{}", st.heading("KDCS"));
        for k in kdcs {
            let realms: Vec<&str> = k.realms.iter().map(|r| &**r).collect();
            wrap(&mut out, None, 2, &format!("{}  {}", k.name(), realms.join(", ")));
            let mut line = format!(
                "{} (UDP {}, TCP {}), {} issued, {} unanswered",
                plural(k.requests, "request", "requests"),
                k.requests_udp,
                k.requests_tcp,
                plural(k.tickets, "ticket", "tickets"),
                k.unanswered
            );
            if k.given_up() > 0 {
                let _ = write!(line, ", {} given up unanswered (request table full)", k.given_up());
            }
            if k.failed_over > 0 {
                let _ = write!(line, ", {} answered by another KDC instead", k.failed_over);
            }
            if !k.errors.is_empty() {
                let e: Vec<String> = k.errors.iter().map(|(c, n)| format!("{c} {n}")).collect();
                let _ = write!(line, "; errors: {}", e.join(", "));
            }
            wrap(&mut out, None, 4, &line);
            let mut line = String::new();
            if let Some(p) = k.latency() {
                let _ = write!(
                    line,
                    "latency p50 {}, p90 {}, p99 {}, max {} ({} replies)",
                    ms(p.p50 as i64),
                    ms(p.p90 as i64),
                    ms(p.p99 as i64),
                    ms(p.max as i64),
                    p.n
                );
            }
            if k.offset.samples > 0 {
                if !line.is_empty() {
                    line.push_str("; ");
                }
                let _ = write!(
                    line,
                    "clock offset {:+.3} s (from {} {}, range {:+.3} to {:+.3} s)",
                    k.offset.last,
                    k.offset.samples,
                    if k.offset.samples == 1 { "error" } else { "errors" },
                    k.offset.min,
                    k.offset.max
                );
            }
            if !line.is_empty() {
                wrap(&mut out, None, 4, &line);
            }
        }
        out.push('\n');
    }

    devices(&mut out, c, findings, st);

    let principals = c.principals();
    if !principals.is_empty() {
        let _ = writeln!(out, "{}", st.heading("PRINCIPALS (most recent exchanges, oldest first)"));
        for p in principals {
            let mut head = p.name.to_string();
            if p.service_account {
                head.push_str("  (service account)");
            }
            wrap(&mut out, None, 2, &head);
            if !p.aliases.is_empty() {
                let a: Vec<&str> = p.aliases.iter().map(|a| &**a).collect();
                wrap(&mut out, None, 4, &format!("also asked for as {}", a.join(", ")));
            }
            let devices = c.devices_of(p);
            if !devices.is_empty() {
                let d: Vec<&str> = devices.iter().map(|d| &*d.key).collect();
                wrap(&mut out, None, 4, &format!("devices: {}", d.join(", ")));
            }
            let vias: BTreeMap<&str, ()> = p.steps.iter().filter_map(|s| s.via.as_deref()).map(|v| (v, ())).collect();
            if !vias.is_empty() && !p.service_account {
                let v: Vec<&str> = vias.keys().copied().collect();
                wrap(&mut out, None, 4, &format!("impersonated by {}", v.join(", ")));
            }
            for s in &p.steps {
                step(&mut out, c, s, st);
            }
        }
        out.push('\n');
    }

    let clients = c.clients();
    if !clients.is_empty() {
        let _ = writeln!(out, "{}", st.heading("CLIENT HOSTS"));
        for cl in clients {
            let kdcs: Vec<String> = cl.kdcs.iter().map(|k| k.to_string()).collect();
            let _ = writeln!(out, "  {}", cl.addr);
            wrap(
                &mut out,
                None,
                4,
                &format!(
                    "{} AS-REQ, {} TGS-REQ, {} S4U2Self, {} S4U2Proxy; UDP {}, TCP {}; {}; KDCs: {}",
                    cl.as_req,
                    cl.tgs_req,
                    cl.s4u2self,
                    cl.s4u2proxy,
                    cl.udp,
                    cl.tcp,
                    plural(cl.errors, "error", "errors"),
                    kdcs.join(", ")
                ),
            );
        }
        out.push('\n');
    }

    let cs = c.stats();
    let dropped = cs.requests_evicted
        + cs.principals_evicted
        + cs.clients_evicted
        + cs.kdcs_evicted
        + cs.tickets_evicted
        + cs.findings_folded;
    if dropped > 0 || cs.pending_at_end > 0 || cs.too_big_undecided > 0 {
        wrap(
            &mut out,
            None,
            0,
            &format!(
                "Limits: {} requests, {} principals, {} clients, {} KDCs and {} tickets forgotten to stay within memory caps, {} findings folded; {} requests still waiting and {} RESPONSE_TOO_BIG undecided at the end of the capture.",
                cs.requests_evicted,
                cs.principals_evicted,
                cs.clients_evicted,
                cs.kdcs_evicted,
                cs.tickets_evicted,
                cs.findings_folded,
                cs.pending_at_end,
                cs.too_big_undecided
            ),
        );
    }
    out
}

/// One line per device: how it stands, the furthest step its latest request reached, and
/// the step that failed with the finding that names it; then what it is and what was said.
fn devices(out: &mut String, c: &Correlator, findings: &[Finding], st: Style) {
    let devices = c.devices();
    if devices.is_empty() {
        return;
    }
    let _ = writeln!(out, "{}", st.heading("DEVICES (status, last step reached, failing step and finding)"));
    let mut verdicts: Vec<_> = devices.iter().map(|d| c.verdict(d, findings)).collect();
    // What is broken first; then in the order the devices were seen.
    verdicts.sort_by_key(|v| v.status);
    for v in verdicts {
        let d = v.device;
        let mut head = format!("{:<7} {}", v.status.word(), d.key);
        if let Some(u) = d.upn.as_deref().filter(|u| *u != &*d.key) {
            let _ = write!(head, "  {u}");
        }
        match (v.failed, &v.finding) {
            (Some(f), Some(id)) => {
                let _ = write!(head, ": failed at {} ({id})", f.label());
            }
            (Some(f), None) => {
                let _ = write!(head, ": failed at {}", f.label());
            }
            (None, _) => {
                let _ = write!(head, ": reached {}", v.reached.map_or("-", |s| s.label()));
            }
        }
        wrap_hanging(out, 2, 10, &head);
        let mut line = String::new();
        if let Some(t) = &d.device_type {
            let _ = write!(line, "{t}; ");
        }
        if !d.addresses.is_empty() {
            let a: Vec<String> = d.addresses.iter().map(|a| a.to_string()).collect();
            let _ = write!(line, "{}; ", a.join(", "));
        }
        let _ = write!(line, "{}, {} served", plural(d.requests, "request", "requests"), d.ok);
        if let Some(cmd) = &d.cmd {
            let _ = write!(line, "; last command {cmd}");
        }
        if let Some(s) = d.exchange_status {
            let _ = write!(line, "; Exchange answered {s}");
        }
        if let Some(u) = &d.user_mismatch {
            let _ = write!(line, "; its requests name user {u}, not the certificate's");
        }
        wrap(out, None, 6, &line);
        if let Some(cert) = &d.cert {
            let mut l = format!("certificate {} serial {} issued by {}", cert.subject, cert.serial, cert.issuer);
            if let Some(r) = &cert.revocation {
                let _ = write!(l, ", revocation {r}");
            }
            wrap(out, None, 6, &l);
        }
        if let Some(detail) = v.detail.as_deref().filter(|_| v.failed.is_some()) {
            wrap(out, None, 6, detail);
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_within_the_width_and_indents() {
        let mut s = String::new();
        let text = "word ".repeat(60);
        wrap(&mut s, None, 8, &text);
        assert!(s.lines().all(|l| l.len() <= WIDTH && l.starts_with("        word")));
        assert_eq!(s.split_whitespace().count(), 60);
    }

    #[test]
    fn colour_takes_no_width() {
        let st = Style { colour: true };
        assert_eq!(visible_len(&st.severity(Severity::Error)), 7);
        let mut s = String::new();
        wrap(&mut s, Some(&st.paint("1", "x")), 2, &"abcdefghi ".repeat(20));
        assert!(s.lines().all(|l| visible_len(l) <= WIDTH));
    }
}
