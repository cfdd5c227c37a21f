//! Syslog output: one RFC 5424 message per event, over UDP (RFC 5426: one message per
//! datagram) or TCP with octet-counting framing (RFC 6587 3.4.1: `LEN SP MSG`), which
//! survives newlines and any byte in the message, unlike LF framing.
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
//! The formatter is pure; `SyslogWriter` is the blocking socket shell around it.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use kcd_decode::Sink;
use kcd_schema::{Event, EventType, Severity, Timestamp};

use crate::Format;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// TCP with TLS (RFC 5425), octet-counted like TCP.
    Tls,
}

/// A TCP connection, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(b),
            Stream::Tls(s) => s.write_all(b).and_then(|_| s.flush()),
        }
    }
    fn close(self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Tls(mut s) => {
                s.conn.send_close_notify();
                s.flush()?;
                s.sock.shutdown(std::net::Shutdown::Write)
            }
        }
    }
}

/// rustls on *ring*, as the gateway (aws-lc-rs needs cmake); the constructor is deprecated
/// for lacking post-quantum key exchange, which syslog collectors do not need.
#[allow(deprecated)]
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
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
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(cfg))
}

#[derive(Debug, Clone)]
pub struct SyslogConfig {
    pub addr: SocketAddr,
    pub transport: Transport,
    pub facility: u8,
    pub hostname: String,
    pub app_name: String,
    pub sd_id: String,
    pub format: Format,
    /// For `Transport::Tls`: whom to trust, and the name the collector's certificate must carry.
    pub tls: Option<(std::sync::Arc<rustls::ClientConfig>, String)>,
}

impl SyslogConfig {
    pub fn new(addr: SocketAddr, transport: Transport) -> Self {
        Self {
            addr,
            transport,
            facility: 16,
            hostname: hostname(),
            app_name: "kcdscope".into(),
            sd_id: "kcdscope@32473".into(),
            format: Format::Eve,
            tls: None,
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

/// Syslog severity (RFC 5424 table 2) and its name for the structured data.
pub fn severity_of(e: &Event<'_>) -> (u8, &'static str) {
    match (&e.finding, e.event_type) {
        (Some(f), _) => match f.severity {
            Severity::Error => (3, "error"),
            Severity::Warning => (4, "warning"),
            Severity::Info => (6, "info"),
        },
        (None, EventType::Anomaly) => (5, "notice"),
        _ => (6, "info"),
    }
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

/// Appends the RFC 5424 message for `e` whose JSON line (without newline) is `json`.
pub fn format_message(out: &mut Vec<u8>, cfg: &SyslogConfig, pid: u32, e: &Event<'_>, json: &[u8]) {
    let (sev, sev_name) = severity_of(e);
    let pri = u32::from(cfg.facility) * 8 + u32::from(sev);
    let ty = e.event_type.as_str();
    out.extend_from_slice(format!("<{pri}>1 ").as_bytes());
    timestamp(out, e.timestamp);
    out.extend_from_slice(format!(" {} {} {pid} {ty} [{}", cfg.hostname, cfg.app_name, cfg.sd_id).as_bytes());
    out.extend_from_slice(b" event_type=\"");
    sd_escape(out, ty);
    out.extend_from_slice(b"\" severity=\"");
    sd_escape(out, sev_name);
    out.push(b'"');
    if let Some(f) = &e.finding {
        out.extend_from_slice(b" rule=\"");
        sd_escape(out, &f.id);
        out.push(b'"');
    }
    out.extend_from_slice(b"] ");
    out.extend_from_slice(json);
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyslogCounters {
    pub sent: u64,
    /// Sent again on a new connection after a write failed.
    pub retried: u64,
    /// Not delivered: the collector could not be reached, or (UDP) the message was too
    /// large for a datagram.
    pub dropped: u64,
    pub reconnects: u64,
}

/// Sends each event as it comes. TCP: one connection, re-established once per message
/// when a write fails (the message is then sent again: at-least-once, a duplicate is
/// possible when the collector had read it). No spool yet: what cannot be sent is counted
/// in `dropped`.
pub struct SyslogWriter {
    cfg: SyslogConfig,
    pid: u32,
    udp: Option<UdpSocket>,
    tcp: Option<Stream>,
    json: Vec<u8>,
    msg: Vec<u8>,
    frame: Vec<u8>,
    pub counters: SyslogCounters,
    pub last_error: Option<String>,
}

/// The largest message sent over UDP (IPv4 datagram limit less headers).
pub const UDP_MAX: usize = 65_507;

impl SyslogWriter {
    pub fn connect(cfg: SyslogConfig) -> io::Result<Self> {
        let mut w = Self {
            pid: std::process::id(),
            udp: None,
            tcp: None,
            json: Vec::with_capacity(4096),
            msg: Vec::with_capacity(4096),
            frame: Vec::with_capacity(4096),
            counters: SyslogCounters::default(),
            last_error: None,
            cfg,
        };
        match w.cfg.transport {
            Transport::Udp => {
                let bind: SocketAddr = if w.cfg.addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
                let s = UdpSocket::bind(bind)?;
                s.connect(w.cfg.addr)?;
                w.udp = Some(s);
            }
            Transport::Tcp | Transport::Tls => w.tcp = Some(w.open_tcp()?),
        }
        Ok(w)
    }

    fn open_tcp(&self) -> io::Result<Stream> {
        let s = TcpStream::connect_timeout(&self.cfg.addr, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        if self.cfg.transport != Transport::Tls {
            return Ok(Stream::Plain(s));
        }
        let Some((cfg, name)) = &self.cfg.tls else {
            return Err(io::Error::other("syslog over TLS needs a CA file"));
        };
        let name = rustls_pki_types::ServerName::try_from(name.clone()).map_err(io::Error::other)?;
        let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(io::Error::other)?;
        let mut t = rustls::StreamOwned::new(conn, s);
        // The handshake now, so that a refused certificate is an error at connect time.
        while t.conn.is_handshaking() {
            t.conn.complete_io(&mut t.sock)?;
        }
        Ok(Stream::Tls(Box::new(t)))
    }

    fn send_tcp(&mut self) -> io::Result<()> {
        if self.tcp.is_none() {
            self.tcp = Some(self.open_tcp()?);
            self.counters.reconnects += 1;
        }
        match self.tcp.as_mut() {
            Some(s) => s.write_all(&self.frame),
            None => Err(io::Error::other("not connected")),
        }
    }

    /// Waits until everything written reached the kernel; TCP: closes the sending side
    /// so that the collector sees the end.
    pub fn finish(mut self) -> io::Result<SyslogCounters> {
        if let Some(s) = self.tcp.take() {
            s.close()?;
        }
        Ok(self.counters.clone())
    }
}

impl Sink for SyslogWriter {
    fn event(&mut self, e: &Event<'_>) {
        self.json.clear();
        match self.cfg.format {
            Format::Eve => e.write_json(&mut self.json),
            Format::Ecs => {
                if serde_json::to_writer(&mut self.json, &crate::ecs::to_ecs(e)).is_err() {
                    self.json.extend_from_slice(b"{}");
                }
            }
        }
        self.msg.clear();
        format_message(&mut self.msg, &self.cfg, self.pid, e, &self.json);
        match self.cfg.transport {
            Transport::Udp => {
                let r = match (&self.udp, self.msg.len() > UDP_MAX) {
                    (_, true) => Err(io::Error::other(format!("{} bytes: too large for a datagram", self.msg.len()))),
                    (Some(s), false) => s.send(&self.msg).map(|_| ()),
                    (None, false) => Err(io::Error::other("no socket")),
                };
                match r {
                    Ok(()) => self.counters.sent += 1,
                    Err(err) => {
                        self.counters.dropped += 1;
                        self.last_error = Some(err.to_string());
                    }
                }
            }
            Transport::Tcp | Transport::Tls => {
                self.frame.clear();
                self.frame.extend_from_slice(format!("{} ", self.msg.len()).as_bytes());
                self.frame.extend_from_slice(&self.msg);
                let mut r = self.send_tcp();
                if r.is_err() {
                    self.tcp = None;
                    self.counters.retried += 1;
                    r = self.send_tcp();
                }
                match r {
                    Ok(()) => self.counters.sent += 1,
                    Err(err) => {
                        self.tcp = None;
                        self.counters.dropped += 1;
                        self.last_error = Some(err.to_string());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_layout_and_escaping() {
        let mut cfg = SyslogConfig::new(([127, 0, 0, 1], 514).into(), Transport::Tcp);
        cfg.hostname = "gw1".into();
        let f = kcd_schema::Finding {
            id: "a\"b]c\\d".into(),
            severity: Severity::Warning,
            subject: kcd_schema::Subject { kind: kcd_schema::SubjectKind::Kdc, name: "x".into() },
            first_seen: Timestamp(1_795_382_055_123_456_789),
            last_seen: Timestamp(1_795_382_055_123_456_789),
            count: 1,
            explanation: String::new(),
            fix: String::new(),
            facts: Default::default(),
            evidence: Vec::new(),
        };
        let e = f.into_event();
        let mut out = Vec::new();
        format_message(&mut out, &cfg, 42, &e, b"{}");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "<132>1 2026-11-22T21:14:15.123456Z gw1 kcdscope 42 finding [kcdscope@32473 event_type=\"finding\" severity=\"warning\" rule=\"a\\\"b\\]c\\\\d\"] {}"
        );
    }
}
