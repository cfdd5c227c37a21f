//! Event writers. A write error (a closed pipe, a full disk) stops the writer and is kept
//! for the caller to report; events are never half-written silently.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::io::{self, Write};

use kcd_decode::Sink;
use kcd_schema::{Direction, Event, EventType};

pub mod ecs;
pub mod filter;
pub mod outputs;
pub mod feed;
pub mod report;

/// The layout of NDJSON lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// kcdscope's own schema (EVE-like; schema/kcdscope-event.schema.json).
    #[default]
    Eve,
    /// Elastic Common Schema names (see `ecs`).
    Ecs,
}

/// One JSON object per line. Events are written straight into one large buffer that goes
/// to `out` in big writes, so `out` needs no buffering of its own.
pub struct NdjsonWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    error: Option<io::Error>,
    pub written: u64,
    format: Format,
}

const FLUSH_AT: usize = 1 << 20;

impl<W: Write> NdjsonWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            buf: Vec::with_capacity(FLUSH_AT + (64 << 10)),
            error: None,
            written: 0,
            format: Format::Eve,
        }
    }

    /// The same writer, writing `format`.
    pub fn with_format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    fn flush_buf(&mut self) {
        if let Err(e) = self.out.write_all(&self.buf) {
            self.error = Some(e);
        }
        self.buf.clear();
    }

    /// Flushes and returns the first error met, if any.
    pub fn finish(mut self) -> io::Result<u64> {
        if self.error.is_none() {
            self.flush_buf();
        }
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()?;
        Ok(self.written)
    }

    /// As `finish`, handing back the destination (for its counters).
    pub fn finish_into(mut self) -> io::Result<W> {
        if self.error.is_none() {
            self.flush_buf();
        }
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Sink for NdjsonWriter<W> {
    fn event(&mut self, e: &Event<'_>) {
        if self.error.is_some() {
            return;
        }
        match self.format {
            Format::Eve => e.write_json(&mut self.buf),
            Format::Ecs => {
                if serde_json::to_writer(&mut self.buf, &ecs::to_ecs(e)).is_err() {
                    self.buf.extend_from_slice(b"{}");
                }
            }
        }
        self.buf.push(b'\n');
        self.written += 1;
        if self.buf.len() >= FLUSH_AT {
            self.flush_buf();
        }
    }
}

/// Whether `c` must not reach a terminal as it is: control characters (C0, DEL, C1: ESC
/// and CSI start terminal commands, CR and LF forge lines) and the invisible format
/// characters that reorder or hide text (bidi overrides, zero-width characters).
fn hostile(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// `s` as it may be shown on a terminal: what `hostile` flags is written as an escape
/// (`\x1b`, `\r`, `\u{202e}`), so that names and error texts from the wire can neither
/// send terminal commands nor forge lines. Invalid UTF-8 was already replaced by U+FFFD
/// when the message was decoded.
pub fn visible(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(hostile) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if hostile(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if hostile(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A listing for a terminal: one line per Kerberos message or anomaly.
pub struct TextWriter<W: Write> {
    out: W,
    line: String,
    error: Option<io::Error>,
}

impl<W: Write> TextWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            line: String::with_capacity(256),
            error: None,
        }
    }

    pub fn finish(mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()
    }
}

/// The text form of one event, without a newline, safe to show on a terminal (see
/// `visible`).
pub fn describe(e: &Event<'_>, line: &mut String) {
    describe_raw(e, line);
    // Every field may come from the wire (names, e-text, anomaly details quoting them):
    // the whole line is made safe at once.
    if let std::borrow::Cow::Owned(safe) = visible(line) {
        *line = safe;
    }
}

fn describe_raw(e: &Event<'_>, line: &mut String) {
    line.clear();
    let ts = e.timestamp.to_rfc3339();
    // Time of day with milliseconds is what people read; the date is in the JSON.
    let _ = write!(line, "{} {:>6} ", ts.get(11..23).unwrap_or(&ts), e.frame);
    if let (Some(s), Some(d)) = (e.src_ip, e.dest_ip) {
        let proto = match e.proto {
            Some(kcd_schema::Transport::Tcp) => "TCP",
            _ => "UDP",
        };
        let _ = write!(
            line,
            "{}:{} -> {}:{} {proto} ",
            s,
            e.src_port.unwrap_or(0),
            d,
            e.dest_port.unwrap_or(0)
        );
    }
    match e.event_type {
        EventType::Krb5 => {
            let Some(k) = &e.krb5 else { return };
            let _ = write!(line, "{}", k.msg_type);
            let realm = k.crealm.as_ref().or(k.realm.as_ref());
            if let Some(c) = &k.cname {
                let _ = write!(line, " {c}");
                if let Some(r) = realm {
                    let _ = write!(line, "@{r}");
                }
            }
            if let Some(s) = &k.sname {
                let arrow = if k.direction == Some(Direction::FromKdc) {
                    "for"
                } else {
                    "->"
                };
                let _ = write!(line, " {arrow} {s}");
                if let (None, Some(r)) = (&k.cname, &k.realm) {
                    let _ = write!(line, "@{r}");
                }
            }
            if let Some(u) = k.for_user.as_ref().and_then(|f| f.user.as_ref()) {
                let _ = write!(line, " [S4U2Self for {u}]");
            }
            if let Some(t) = k.additional_tickets.first().and_then(|t| t.sname.as_ref()) {
                let _ = write!(line, " [additional ticket for {t}]");
            }
            if let Some(err) = &k.error {
                let _ = write!(line, " {} ({})", err.code, err.code.0);
                if let Some(t) = &err.e_text {
                    let _ = write!(line, " \"{t}\"");
                }
                if let Some(st) = err.e_data.as_ref().and_then(|d| d.ntstatus.as_ref()) {
                    let _ = write!(
                        line,
                        " {}",
                        st.0.name()
                            .map(str::to_string)
                            .unwrap_or_else(|| st.0.hex())
                    );
                }
            }
            if k.armored {
                line.push_str(" [FAST]");
            }
            if let Some(r) = &k.request {
                let _ = write!(line, " (answers frame {}, {} us)", r.frame, r.latency_us);
            }
            if let Some(m) = &k.malformed {
                let _ = write!(line, " MALFORMED: {m}");
            }
        }
        EventType::Anomaly => {
            if let Some(a) = &e.anomaly {
                let _ = write!(line, "ANOMALY {}: {}", a.kind, a.detail);
            }
        }
        EventType::Finding => {
            if let Some(f) = &e.finding {
                let _ = write!(line, "FINDING {:?} {} ({}): {}", f.severity, f.id, f.subject.name, f.explanation);
            }
        }
        EventType::Kcd => {
            if let Some(g) = &e.gateway {
                let _ = write!(line, "KCD {:?} {}", g.step, g.outcome);
            }
        }
        EventType::Gateway => {
            if let Some(g) = &e.gateway {
                let _ = write!(line, "GATEWAY {} {}", visible(g.user.as_deref().unwrap_or("-")), g.outcome);
                if let Some(f) = &g.finding {
                    let _ = write!(line, " {}", visible(f));
                }
            }
        }
        EventType::Tls => {
            if let Some(t) = &e.tls {
                let _ = write!(
                    line,
                    "TLS {} {} {:?}",
                    visible(t.sni.as_deref().unwrap_or("-")),
                    t.version.as_deref().unwrap_or("-"),
                    t.outcome
                );
                if let Some(a) = &t.alert {
                    let _ = write!(line, " alert {} from {:?}", a.description, a.sender);
                }
                if let Some(c) = t.client_certificates.first() {
                    let _ = write!(line, " client cert {}", visible(&c.subject));
                }
            }
        }
        EventType::Http => {
            if let Some(h) = &e.http {
                let _ = write!(line, "HTTP {} {}", visible(&h.http_method), visible(&h.url));
                match h.status {
                    Some(s) => {
                        let _ = write!(line, " -> {s}");
                    }
                    None => line.push_str(" -> no response"),
                }
                if let Some(c) = &e.crl {
                    let _ = write!(line, " CRL {}", visible(c.issuer.as_deref().unwrap_or("-")));
                }
            }
        }
    }
}

impl<W: Write> Sink for TextWriter<W> {
    fn event(&mut self, e: &Event<'_>) {
        if self.error.is_some() {
            return;
        }
        describe(e, &mut self.line);
        self.line.push('\n');
        if let Err(err) = self.out.write_all(self.line.as_bytes()) {
            self.error = Some(err);
        }
    }
}

/// Sends every event to several sinks.
pub struct Tee<'a>(pub Vec<&'a mut dyn Sink>);

impl Sink for Tee<'_> {
    fn event(&mut self, e: &Event<'_>) {
        for s in self.0.iter_mut() {
            s.event(e);
        }
    }
}
