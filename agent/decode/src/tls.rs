//! TLS handshakes, passively: records framed per direction, handshake messages put back
//! together across records (and so across segments), then read with tls-parser. One
//! `tls` event per connection, when the outcome is known: both ChangeCipherSpecs (TLS
//! 1.2 and below), the ServerHello of TLS 1.3 (all that follows is encrypted), a fatal
//! alert, or the end of the connection.

use kcd_schema::{AnomalyLayer, EventType, Side, Tls, TlsAlert, TlsOutcome, X509};
use tls_parser::{
    parse_tls_client_hello_extensions, parse_tls_message_handshake,
    parse_tls_server_hello_extensions, TlsCipherSuite, TlsExtension, TlsMessage,
    TlsMessageHandshake, TlsVersion,
};

use crate::emit::{Ctx, Emit};
use crate::Sink;

/// Longest record body TLS allows (2^14 plus expansion, RFC 5246 6.2.3).
const MAX_RECORD: usize = 16_384 + 2_048;
/// Certificates kept per chain: a chain longer than this is a mistake or an attack.
const MAX_CHAIN: usize = 8;
/// Items kept of the ClientHello's lists.
const MAX_LIST: usize = 64;
/// Largest direction buffer a reused connection state keeps.
const KEPT_BUFFER: usize = 16 * 1024;

const HANDSHAKE: u8 = 22;
const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const APPLICATION_DATA: u8 = 23;

/// The SHA-256 of "HelloRetryRequest": a ServerHello with this random is an HRR (RFC 8446 4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8,
    0x91, 0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8,
    0x33, 0x9c,
];

/// Whether `b` starts like a TLS record carrying a ClientHello: handshake record, a
/// version 3.x, a plausible length, handshake type 1. Used to recognise TLS on any port.
pub fn looks_like_client_hello(b: &[u8]) -> bool {
    match b {
        [HANDSHAKE, 3, minor, hi, lo, 1, ..] => {
            let len = usize::from(*hi) << 8 | usize::from(*lo);
            *minor <= 4 && (4..=MAX_RECORD).contains(&len)
        }
        _ => false,
    }
}

/// One direction's framing state.
#[derive(Default)]
struct Dir {
    /// Bytes of an unfinished record (header included).
    record: Vec<u8>,
    /// Bytes of unfinished handshake messages, across records.
    handshake: Vec<u8>,
    /// ChangeCipherSpec seen: what follows is encrypted.
    encrypted: bool,
    /// Framing lost (gap, oversize, garbage): nothing more is read in this direction.
    lost: bool,
}

/// The TLS state of one connection.
pub struct TlsConn {
    dirs: [Dir; 2],
    tls: Tls,
    /// A ClientHello was seen: an event is due.
    started: bool,
    /// The event was written; the rest of the connection is ignored.
    done: bool,
    tls13: bool,
    max_handshake: usize,
}

impl TlsConn {
    pub fn new(max_handshake: usize) -> Self {
        TlsConn {
            dirs: Default::default(),
            tls: Tls::default(),
            started: false,
            done: false,
            tls13: false,
            max_handshake,
        }
    }

    /// As new, keeping the direction buffers' allocations when they are small (a
    /// certificate message spans records, and growing a buffer past 1 KiB makes glibc
    /// consolidate its free lists).
    pub(crate) fn reset(&mut self, max_handshake: usize) {
        let mut dirs = std::mem::take(&mut self.dirs);
        *self = TlsConn::new(max_handshake);
        for (old, new) in dirs.iter_mut().zip(self.dirs.iter_mut()) {
            for (from, to) in [(&mut old.record, &mut new.record), (&mut old.handshake, &mut new.handshake)] {
                if from.capacity() <= KEPT_BUFFER {
                    from.clear();
                    *to = std::mem::take(from);
                }
            }
        }
    }

    pub fn capacity(&self) -> usize {
        self.dirs.iter().map(|d| d.record.capacity() + d.handshake.capacity()).sum()
    }

    pub fn buffered(&self, d: usize) -> usize {
        self.dirs.get(d).map_or(0, |x| x.record.len() + x.handshake.len())
    }

    pub fn gap(&mut self, d: usize) {
        if let Some(x) = self.dirs.get_mut(d) {
            // Record boundaries are lost with the bytes.
            x.lost = true;
            x.record = Vec::new();
            x.handshake = Vec::new();
        }
    }

    /// In-order bytes of direction `d` (0: client to server).
    pub(crate) fn data<S: Sink + ?Sized>(&mut self, d: usize, mut b: &[u8], emit: &mut Emit<'_, S>, ctx: &Ctx<'_>) {
        while !b.is_empty() && !self.done && !self.dirs[d].lost {
            let dir = &mut self.dirs[d];
            // Whole records straight from the segment when nothing is held (the common
            // case); otherwise complete the held one first.
            if dir.record.is_empty() && b.len() >= 5 {
                let len = usize::from(b[3]) << 8 | usize::from(b[4]);
                if !self.header_ok(d, b, len, emit, ctx) {
                    return;
                }
                if b.len() >= 5 + len {
                    let (rec, rest) = b.split_at(5 + len);
                    b = rest;
                    self.record(d, rec[0], &rec[5..], emit, ctx);
                    continue;
                }
            }
            let dir = &mut self.dirs[d];
            let need = if dir.record.len() < 5 {
                5 - dir.record.len()
            } else {
                let len = usize::from(dir.record[3]) << 8 | usize::from(dir.record[4]);
                5 + len - dir.record.len()
            };
            let take = need.min(b.len());
            dir.record.extend_from_slice(&b[..take]);
            b = &b[take..];
            if dir.record.len() == 5 {
                let hdr = [dir.record[0], dir.record[1], dir.record[2], dir.record[3], dir.record[4]];
                let len = usize::from(hdr[3]) << 8 | usize::from(hdr[4]);
                if !self.header_ok(d, &hdr, len, emit, ctx) {
                    return;
                }
            }
            let dir = &mut self.dirs[d];
            if dir.record.len() >= 5 {
                let len = usize::from(dir.record[3]) << 8 | usize::from(dir.record[4]);
                if dir.record.len() == 5 + len {
                    let rec = std::mem::take(&mut dir.record);
                    self.record(d, rec[0], &rec[5..], emit, ctx);
                    // Keep the allocation for the next record of this direction.
                    let dir = &mut self.dirs[d];
                    if dir.record.capacity() == 0 {
                        dir.record = rec;
                        dir.record.clear();
                    }
                }
            }
        }
    }

    /// Checks a record header; on garbage, stops reading this direction and says why.
    fn header_ok<S: Sink + ?Sized>(&mut self, d: usize, h: &[u8], len: usize, emit: &mut Emit<'_, S>, ctx: &Ctx<'_>) -> bool {
        let ok = matches!(h[0], 20..=24) && h[1] == 3 && len <= MAX_RECORD;
        if !ok {
            self.dirs[d].lost = true;
            self.dirs[d].record = Vec::new();
            let kind = if len > MAX_RECORD && matches!(h[0], 20..=24) { "tls_record_oversize" } else { "tls_not_a_record" };
            emit.anomaly(
                ctx,
                AnomalyLayer::Tls,
                kind,
                format!(
                    "record header {:02x} {:02x} {:02x} (length {len}) is not TLS; the rest of this direction is not decoded",
                    h[0], h[1], h[2]
                ),
            );
        }
        ok
    }

    fn record<S: Sink + ?Sized>(&mut self, d: usize, kind: u8, body: &[u8], emit: &mut Emit<'_, S>, ctx: &Ctx<'_>) {
        let side = if d == 0 { Side::Client } else { Side::Server };
        match kind {
            HANDSHAKE if !self.dirs[d].encrypted => {
                let dir = &mut self.dirs[d];
                if dir.handshake.len() + body.len() > self.max_handshake {
                    dir.lost = true;
                    dir.handshake = Vec::new();
                    emit.anomaly(
                        ctx,
                        AnomalyLayer::Tls,
                        "tls_handshake_oversize",
                        format!("handshake message over {} bytes (--max-tls-handshake); not decoded", self.max_handshake),
                    );
                    return;
                }
                if dir.handshake.is_empty() {
                    self.messages(d, body, emit, ctx);
                } else {
                    let mut held = std::mem::take(&mut self.dirs[d].handshake);
                    held.extend_from_slice(body);
                    self.messages(d, &held, emit, ctx);
                }
            }
            CHANGE_CIPHER_SPEC => {
                self.dirs[d].encrypted = true;
                if !self.tls13 && self.dirs[0].encrypted && self.dirs[1].encrypted {
                    self.tls.outcome = TlsOutcome::Established;
                    self.finish(emit, ctx);
                }
            }
            ALERT => {
                let alert = match body {
                    [level, code] if !self.dirs[d].encrypted => TlsAlert {
                        level: Some(match level {
                            1 => "warning".to_string(),
                            2 => "fatal".to_string(),
                            n => format!("level-{n}"),
                        }),
                        description: alert_name(*code),
                        code: Some(*code),
                        sender: side,
                    },
                    _ => TlsAlert { level: None, description: "encrypted".into(), code: None, sender: side },
                };
                let fatal = alert.level.as_deref() == Some("fatal") || alert.level.is_none();
                let close_notify = alert.code == Some(0);
                if self.tls.alert.is_none() || fatal {
                    self.tls.alert = Some(alert);
                }
                if fatal && !close_notify && self.started {
                    self.tls.outcome = TlsOutcome::Alert;
                    self.finish(emit, ctx);
                }
            }
            APPLICATION_DATA if d == 1 && self.started && !self.tls13 => {
                // Data from the server before we saw both ChangeCipherSpecs (a capture
                // that began late on one side): the handshake is over.
                self.tls.outcome = TlsOutcome::Established;
                self.finish(emit, ctx);
            }
            _ => {}
        }
    }

    /// Handshake messages in `b`; an unfinished one is held for the next record.
    fn messages<S: Sink + ?Sized>(&mut self, d: usize, mut b: &[u8], emit: &mut Emit<'_, S>, ctx: &Ctx<'_>) {
        while b.len() >= 4 && !self.done {
            let len = usize::from(b[1]) << 16 | usize::from(b[2]) << 8 | usize::from(b[3]);
            if len > self.max_handshake {
                self.dirs[d].lost = true;
                emit.anomaly(
                    ctx,
                    AnomalyLayer::Tls,
                    "tls_handshake_oversize",
                    format!("{len}-byte handshake message is over the {}-byte limit (--max-tls-handshake); not decoded", self.max_handshake),
                );
                return;
            }
            if b.len() < 4 + len {
                break;
            }
            let (msg, rest) = b.split_at(4 + len);
            b = rest;
            self.message(d, msg, emit, ctx);
        }
        if !b.is_empty() && !self.done && !self.dirs[d].lost {
            self.dirs[d].handshake.extend_from_slice(b);
        }
    }

    fn message<S: Sink + ?Sized>(&mut self, d: usize, msg: &[u8], emit: &mut Emit<'_, S>, ctx: &Ctx<'_>) {
        let parsed = match parse_tls_message_handshake(msg) {
            Ok((_, TlsMessage::Handshake(h))) => h,
            _ => {
                let t = msg.first().copied().unwrap_or(0);
                // Types tls-parser does not know (e.g. TLS 1.3's EncryptedExtensions in a
                // cleartext capture never happen; compressed_certificate 25) are skipped.
                if matches!(t, 1 | 2 | 11 | 13) {
                    self.malformed(format!("handshake message type {t} of {} bytes unreadable", msg.len()));
                    emit.anomaly(ctx, AnomalyLayer::Tls, "tls_malformed", format!("handshake message type {t} ({} bytes) could not be parsed", msg.len()));
                }
                return;
            }
        };
        match parsed {
            TlsMessageHandshake::ClientHello(ch) if d == 0 => {
                self.started = true;
                let t = &mut self.tls;
                t.client_version = Some(version_name(ch.version));
                // Sized first: grown by doubling, a list of 33 names or more passed 1 KiB
                // in a reallocation.
                let mut names = Vec::with_capacity(ch.ciphers.len().min(MAX_LIST));
                names.extend(ch.ciphers.iter().filter(|c| !is_grease(c.0)).take(MAX_LIST).map(|c| cipher_name(c.0)));
                t.cipher_suites = names;
                if let Some(ext) = ch.ext {
                    if let Ok((_, exts)) = parse_tls_client_hello_extensions(ext) {
                        for e in exts {
                            match e {
                                TlsExtension::SNI(names) => {
                                    t.sni = names.first().map(|(_, n)| String::from_utf8_lossy(n).into_owned());
                                }
                                TlsExtension::ALPN(p) => {
                                    t.alpn = p.iter().take(MAX_LIST).map(|x| String::from_utf8_lossy(x).into_owned()).collect();
                                }
                                TlsExtension::SupportedVersions(v) => {
                                    t.client_versions = v.iter().filter(|x| !is_grease(x.0)).take(MAX_LIST).map(|x| version_name(*x)).collect();
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
            TlsMessageHandshake::ServerHello(sh) if d == 1 => {
                let mut version = sh.version;
                if let Some(ext) = sh.ext {
                    if let Ok((_, exts)) = parse_tls_server_hello_extensions(ext) {
                        for e in exts {
                            if let TlsExtension::SupportedVersions(v) = e {
                                if let Some(x) = v.first() {
                                    version = *x;
                                }
                            }
                        }
                    }
                }
                self.tls.version = Some(version_name(version));
                self.tls.cipher_suite = Some(cipher_name(sh.cipher.0));
                if version == TlsVersion::Tls13 {
                    self.tls13 = true;
                    self.tls.certificates_visible = false;
                    // A HelloRetryRequest is followed by a second ClientHello; wait for it.
                    if sh.random != HRR_RANDOM {
                        self.tls.outcome = TlsOutcome::Encrypted;
                        self.finish(emit, ctx);
                    }
                }
            }
            TlsMessageHandshake::Certificate(c) => {
                let client = d == 0;
                let chain: Vec<X509> = c
                    .cert_chain
                    .iter()
                    .take(MAX_CHAIN)
                    .map(|raw| emit.certs.certificate(raw.data, ctx.ts, client))
                    .collect();
                if client {
                    self.tls.client_certificate_empty = chain.is_empty();
                    self.tls.client_certificates = chain;
                } else {
                    self.tls.server_certificates = chain;
                }
            }
            TlsMessageHandshake::CertificateRequest(r) if d == 1 => {
                self.tls.client_certificate_requested = true;
                self.tls.acceptable_cas = r
                    .unparsed_ca
                    .iter()
                    .take(MAX_LIST)
                    .map(|n| emit.certs.name(n))
                    .collect();
            }
            _ => {}
        }
    }

    fn malformed(&mut self, why: String) {
        if self.tls.malformed.is_none() {
            self.tls.malformed = Some(why);
        }
    }

    /// Writes the event (once) with the client as source.
    fn finish<S: Sink + ?Sized>(&mut self, emit: &mut Emit<'_, S>, ctx: &Ctx<'_>) {
        if self.done || !self.started {
            return;
        }
        self.done = true;
        let client_first = ctx.direction == kcd_schema::Direction::ToKdc;
        let at = if client_first { *ctx } else { Ctx { src: ctx.dst, dst: ctx.src, ..*ctx } };
        let mut e = at.envelope(EventType::Tls);
        e.tls = Some(Box::new(std::mem::take(&mut self.tls)));
        // The device it names, written with it (the report's and the correlator's key).
        e.device = e.device_key().map(std::borrow::Cow::Owned);
        emit.stats.tls_handshakes += 1;
        emit.sink.event(&e);
        // Nothing more is read: give the buffers back.
        self.dirs = Default::default();
    }

    /// The connection ended (or the capture did): the handshake, as far as it went.
    pub(crate) fn close<S: Sink + ?Sized>(&mut self, emit: &mut Emit<'_, S>, ctx: &Ctx<'_>) {
        if !self.done && self.started {
            if self.tls.alert.as_ref().is_some_and(|a| a.level.as_deref() == Some("fatal")) {
                self.tls.outcome = TlsOutcome::Alert;
            }
            self.finish(emit, ctx);
        }
    }
}

fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// "TLS 1.2" as Wireshark and Suricata write it.
pub fn version_name(v: TlsVersion) -> String {
    match v.0 {
        0x0300 => "SSL 3.0".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        n => format!("0x{n:04x}"),
    }
}

pub fn cipher_name(id: u16) -> String {
    match TlsCipherSuite::from_id(id) {
        Some(c) => c.name.to_string(),
        None => format!("0x{id:04x}"),
    }
}

/// RFC 8446 6.2 names (and the older ones of RFC 5246).
pub fn alert_name(code: u8) -> String {
    let n = match code {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        60 => "export_restriction",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        111 => "certificate_unobtainable",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        114 => "bad_certificate_hash_value",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        n => return format!("alert-{n}"),
    };
    n.to_string()
}
