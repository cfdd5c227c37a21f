//! Syslog messages: one RFC 5424 message per event, for the syslog output
//! (`ship::syslog`, which sends them over UDP, TCP or TLS from the spool).
//!
//! ```text
//! <PRI>1 TIMESTAMP HOST kcdscope PID MSGID [kcdscope@32473 event_type="krb5" severity="info"] {json}
//! ```
//! MSGID is the event type; the structured data names the event type and its severity
//! (a finding's severity and `rule`, its id), so a collector can filter and route without
//! parsing the JSON. 32473 is the private enterprise number RFC 5612 reserves for
//! documentation: replace with your own in `sd_id` if your collector checks it. PRI uses
//! facility local0 (16) by default; severity: a finding's error 3, warning 4, info 6,
//! an anomaly 5 (notice), everything else 6 (informational).
//!
//! The header comes from the event (`header_of`) or from its NDJSON line as the spool holds
//! it, in either layout (`header_of_line`); both give the same header for the same event.
//! Everything here is pure.

use std::borrow::Cow;
use std::io;

use kcd_schema::{Event, EventType, Severity, Timestamp};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One message per datagram (RFC 5426).
    Udp,
    /// Octet-counted framing (RFC 6587 3.4.1): `LEN SP MSG`, which survives newlines and
    /// any byte in the message, unlike LF framing.
    Tcp,
    /// TCP with TLS (RFC 5425), octet-counted like TCP.
    Tls,
}

/// A TLS client configuration trusting the CA certificates in `ca_pem` (PEM file).
pub fn tls_config(ca_pem: &std::path::Path) -> io::Result<std::sync::Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca_pem).map_err(|e| io::Error::other(format!("{}: {e}", ca_pem.display())))? {
        let c = c.map_err(|e| io::Error::other(format!("{}: {e}", ca_pem.display())))?;
        roots.add(c).map_err(|e| io::Error::other(format!("{}: {e}", ca_pem.display())))?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(super::provider()))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(cfg))
}

/// Where the syslog output sends, and the fixed parts of its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogTarget {
    /// The collector's name or address (resolved at each connection; with TLS, the name its
    /// certificate must carry).
    pub host: String,
    pub port: u16,
    pub transport: Transport,
    pub facility: u8,
    pub hostname: String,
    pub app_name: String,
    pub sd_id: String,
}

impl SyslogTarget {
    pub fn new(host: &str, port: u16, transport: Transport) -> Self {
        Self {
            host: host.to_string(),
            port,
            transport,
            facility: 16,
            hostname: hostname(),
            app_name: "kcdscope".into(),
            sd_id: "kcdscope@32473".into(),
        }
    }
}

/// The machine's name (RFC 5424 HOSTNAME: printable ASCII, at most 255), "-" if unknown.
fn hostname() -> String {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let h: String = h.trim().chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    if h.is_empty() {
        "-".into()
    } else {
        h
    }
}

/// What the header of an event's message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    /// None: the line had no readable time (NILVALUE).
    pub timestamp: Option<Timestamp>,
    /// The event type; empty when the line had none.
    pub event_type: Cow<'a, str>,
    /// Syslog severity (RFC 5424 table 2) and its name for the structured data.
    pub severity: (u8, &'static str),
    /// A finding's id.
    pub rule: Option<Cow<'a, str>>,
}

fn severity_name(s: Severity) -> (u8, &'static str) {
    match s {
        Severity::Error => (3, "error"),
        Severity::Warning => (4, "warning"),
        Severity::Info => (6, "info"),
    }
}

/// Syslog severity (RFC 5424 table 2) and its name for the structured data.
pub fn severity_of(e: &Event<'_>) -> (u8, &'static str) {
    match (&e.finding, e.event_type) {
        (Some(f), _) => severity_name(f.severity),
        (None, EventType::Anomaly) => (5, "notice"),
        _ => (6, "info"),
    }
}

/// The header of `e`'s message.
pub fn header_of<'a>(e: &'a Event<'_>) -> Header<'a> {
    Header {
        timestamp: Some(e.timestamp),
        event_type: Cow::Borrowed(e.event_type.as_str()),
        severity: severity_of(e),
        rule: e.finding.as_ref().map(|f| Cow::Borrowed(f.id.as_str())),
    }
}

/// The fields of a line the header needs, in kcdscope's layout (`timestamp`, `event_type`,
/// `finding.severity`, `finding.id`) and in ECS (`@timestamp`, `kcdscope.event_type`,
/// `event.kind` alert with `event.severity` and `rule.id`).
#[derive(Deserialize, Default)]
struct Line<'a> {
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "@timestamp")]
    at_timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    finding: Option<LineFinding<'a>>,
    #[serde(borrow, default)]
    kcdscope: Option<LineKcdscope<'a>>,
    #[serde(borrow, default)]
    event: Option<LineEcsEvent<'a>>,
    #[serde(borrow, default)]
    rule: Option<LineRule<'a>>,
}

#[derive(Deserialize, Default)]
struct LineFinding<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    severity: Option<Severity>,
}

#[derive(Deserialize, Default)]
struct LineKcdscope<'a> {
    #[serde(borrow, default)]
    event_type: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct LineEcsEvent<'a> {
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    severity: Option<u64>,
}

#[derive(Deserialize, Default)]
struct LineRule<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
}

/// The header of the event written as `line` (without its newline), in either layout. A
/// line that is not JSON gets an empty header (NILVALUE time and MSGID): it is still sent.
pub fn header_of_line(line: &[u8]) -> Header<'_> {
    let l: Line<'_> = serde_json::from_slice(line).unwrap_or_default();
    let timestamp = l.timestamp.or(l.at_timestamp).and_then(|t| Timestamp::parse_rfc3339(&t));
    let ecs_type = l.kcdscope.and_then(|k| k.event_type);
    let is_ecs = l.event_type.is_none() && ecs_type.is_some();
    let event_type = l.event_type.or(ecs_type).unwrap_or_default();
    let (severity, rule) = if is_ecs {
        // ECS: a finding is an alert with Elastic's numeric severity (ecs::severity_number).
        match l.event.filter(|e| e.kind.as_deref() == Some("alert") && event_type == "finding") {
            Some(e) => {
                let s = match e.severity {
                    Some(73) => severity_name(Severity::Error),
                    Some(47) => severity_name(Severity::Warning),
                    _ => severity_name(Severity::Info),
                };
                (s, l.rule.and_then(|r| r.id))
            }
            None if event_type == "anomaly" => ((5, "notice"), None),
            None => ((6, "info"), None),
        }
    } else {
        match l.finding {
            Some(f) => (severity_name(f.severity.unwrap_or(Severity::Info)), f.id),
            None if event_type == "anomaly" => ((5, "notice"), None),
            None => ((6, "info"), None),
        }
    };
    Header { timestamp, event_type, severity, rule }
}

/// SD-PARAM value escaping (RFC 5424 6.3.3): '"', '\' and ']' get a backslash.
fn sd_escape(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        if matches!(b, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// RFC 5424 TIMESTAMP: at most six fractional digits (TIME-SECFRAC), so the nanoseconds
/// are cut to microseconds.
fn timestamp(out: &mut Vec<u8>, t: Timestamp) {
    let mut s = String::with_capacity(30);
    t.write_rfc3339(&mut s);
    // "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ" -> "YYYY-MM-DDTHH:MM:SS.uuuuuuZ"
    match s.find('.') {
        Some(dot) if s.len() >= dot + 7 => {
            out.extend_from_slice(&s.as_bytes()[..dot + 7]);
            out.push(b'Z');
        }
        _ => out.extend_from_slice(s.as_bytes()),
    }
}

/// RFC 5424 MSGID: 1 to 32 printable ASCII characters, else NILVALUE.
fn msgid(ty: &str) -> &str {
    if ty.is_empty() || ty.len() > 32 || !ty.bytes().all(|b| b.is_ascii_graphic()) {
        "-"
    } else {
        ty
    }
}

/// Appends the RFC 5424 message with header `h` whose JSON line (without newline) is `json`.
pub fn format_message(out: &mut Vec<u8>, cfg: &SyslogTarget, pid: u32, h: &Header<'_>, json: &[u8]) {
    let (sev, sev_name) = h.severity;
    let pri = u32::from(cfg.facility) * 8 + u32::from(sev);
    let ty = h.event_type.as_ref();
    out.extend_from_slice(format!("<{pri}>1 ").as_bytes());
    match h.timestamp {
        Some(t) => timestamp(out, t),
        None => out.push(b'-'),
    }
    out.extend_from_slice(format!(" {} {} {pid} {} [{}", cfg.hostname, cfg.app_name, msgid(ty), cfg.sd_id).as_bytes());
    out.extend_from_slice(b" event_type=\"");
    sd_escape(out, ty);
    out.extend_from_slice(b"\" severity=\"");
    sd_escape(out, sev_name);
    out.push(b'"');
    if let Some(r) = &h.rule {
        out.extend_from_slice(b" rule=\"");
        sd_escape(out, r);
        out.push(b'"');
    }
    out.extend_from_slice(b"] ");
    out.extend_from_slice(json);
}

/// Appends `msg` with its octet-counting frame (RFC 6587 3.4.1).
pub fn frame(out: &mut Vec<u8>, msg: &[u8]) {
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg);
}

/// The largest message sent over UDP (IPv4 datagram limit less headers).
pub const UDP_MAX: usize = 65_507;

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, severity: Severity) -> kcd_schema::Finding {
        kcd_schema::Finding {
            id: id.into(),
            severity,
            subject: kcd_schema::Subject { kind: kcd_schema::SubjectKind::Kdc, name: "x".into() },
            first_seen: Timestamp(1_795_382_055_123_456_789),
            last_seen: Timestamp(1_795_382_055_123_456_789),
            count: 1,
            explanation: String::new(),
            fix: String::new(),
            facts: Default::default(),
            evidence: Vec::new(),
        }
    }

    #[test]
    fn message_layout_and_escaping() {
        let mut cfg = SyslogTarget::new("127.0.0.1", 514, Transport::Tcp);
        cfg.hostname = "gw1".into();
        let e = finding("a\"b]c\\d", Severity::Warning).into_event();
        let mut out = Vec::new();
        format_message(&mut out, &cfg, 42, &header_of(&e), b"{}");
        let want = "<132>1 2026-11-22T21:14:15.123456Z gw1 kcdscope 42 finding [kcdscope@32473 event_type=\"finding\" severity=\"warning\" rule=\"a\\\"b\\]c\\\\d\"] {}";
        assert_eq!(String::from_utf8_lossy(&out), want);
        let mut framed = Vec::new();
        frame(&mut framed, &out);
        assert_eq!(framed, format!("{} {want}", want.len()).into_bytes());
    }

    #[test]
    fn the_header_of_a_line_is_the_header_of_its_event_in_both_layouts() {
        let mut events: Vec<Event<'static>> = Vec::new();
        for s in [Severity::Error, Severity::Warning, Severity::Info] {
            events.push(finding("krb.kdc_unreachable", s).into_event());
        }
        let mut anomaly = finding("x", Severity::Info).into_event();
        anomaly.finding = None;
        anomaly.event_type = EventType::Anomaly;
        events.push(anomaly);
        let mut krb5 = finding("x", Severity::Info).into_event();
        krb5.finding = None;
        krb5.event_type = EventType::Krb5;
        events.push(krb5);
        for e in &events {
            let want = header_of(e);
            let mut eve = Vec::new();
            e.write_json(&mut eve);
            assert_eq!(header_of_line(&eve), want, "{}", String::from_utf8_lossy(&eve));
            let ecs = serde_json::to_vec(&crate::ecs::to_ecs(e)).expect("json");
            assert_eq!(header_of_line(&ecs), want, "{}", String::from_utf8_lossy(&ecs));
        }
    }

    #[test]
    fn a_line_that_is_not_an_event_still_makes_a_message() {
        let cfg = SyslogTarget { hostname: "h".into(), ..SyslogTarget::new("h", 1, Transport::Udp) };
        let mut out = Vec::new();
        format_message(&mut out, &cfg, 1, &header_of_line(b"not json"), b"not json");
        assert_eq!(String::from_utf8_lossy(&out), "<134>1 - h kcdscope 1 - [kcdscope@32473 event_type=\"\" severity=\"info\"] not json");
        let h = header_of_line(br#"{"timestamp":"x","event_type":"a b"}"#);
        assert_eq!((h.timestamp, msgid(&h.event_type)), (None, "-"));
    }
}
