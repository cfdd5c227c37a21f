//! The event as JSON, written directly into a byte buffer. serde_json produces the same
//! bytes (the tests hold the two together); this writer exists because serialising
//! hundreds of thousands of events a second through serde's generic string path costs
//! about a third of the agent's time: keys here are pre-quoted literals and each string
//! is copied in one piece unless it needs escaping.

use std::borrow::Cow;
use std::net::IpAddr;

use kcd_names::flags::Flags32;

use crate::{
    Anomaly, AnomalyLayer, Direction, EData, EncInfo, EncryptionType, ErrorCode, Event,
    ForUser, Krb5, KrbErrorInfo, MessageType, NameType, PaDataType, Principal, RequestRef,
    S4uX509User, TicketInfo, Timestamp, Transport,
};

/// Whether any byte needs escaping: a control character, '"' or '\\'. Eight bytes at a
/// time (the classic "has zero byte" bit trick), since most strings need none.
#[inline(always)]
fn needs_escape(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let bad = |v: u64| {
        // < 0x20: (v - 0x20..) borrows into the high bit of bytes below 0x20 that were < 0x80.
        let control = v.wrapping_sub(ONES * 0x20) & !v & HIGH;
        control | has_zero(v ^ (ONES * u64::from(b'"'))) | has_zero(v ^ (ONES * u64::from(b'\\')))
            != 0
    };
    let word = |c: &[u8]| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
    let n = b.len();
    if n >= 8 {
        // Whole words, then the last eight bytes (overlapping the previous word).
        let mut chunks = b.chunks_exact(8);
        if chunks.any(|c| bad(word(c))) {
            return true;
        }
        return bad(word(&b[n - 8..]));
    }
    // Under eight bytes: one word padded with a harmless byte.
    let mut tail = [b'a'; 8];
    for (d, s) in tail.iter_mut().zip(b) {
        *d = *s;
    }
    bad(u64::from_le_bytes(tail))
}

/// Appends `b`. Short strings are the common case here and a libc memcpy call costs more
/// than they do, so up to 16 bytes are copied as two overlapping fixed-size windows
/// (compiled to plain moves) into zeroed space that is then cut to length.
#[inline(always)]
fn put(out: &mut Vec<u8>, b: &[u8]) {
    let n = b.len();
    if n > 16 {
        out.extend_from_slice(b);
        return;
    }
    let start = out.len();
    out.extend_from_slice(&[0u8; 16]);
    let dst = &mut out[start..start + 16];
    if n >= 8 {
        dst[..8].copy_from_slice(&b[..8]);
        dst[n - 8..n].copy_from_slice(&b[n - 8..]);
    } else if n >= 4 {
        dst[..4].copy_from_slice(&b[..4]);
        dst[n - 4..n].copy_from_slice(&b[n - 4..]);
    } else {
        for (d, s) in dst.iter_mut().zip(b) {
            *d = *s;
        }
    }
    out.truncate(start + n);
}

/// Appends `s` as a JSON string, escaped exactly as serde_json does.
#[inline(always)]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_str_content(out, s);
    out.push(b'"');
}

#[inline(always)]
fn write_str_content(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    if !needs_escape(b) {
        put(out, b);
    } else {
        write_escaped(out, b);
    }
}

#[cold]
fn write_escaped(out: &mut Vec<u8>, b: &[u8]) {
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            c if c < 0x20 => {
                out.extend_from_slice(&b[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(c >> 4)],
                    HEX[usize::from(c & 15)],
                ]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
}

fn int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn ts(out: &mut Vec<u8>, t: Timestamp) {
    out.push(b'"');
    t.write_rfc3339_bytes(out);
    out.push(b'"');
}

/// "0" to "255", each as up to three digits and a length.
const OCTETS: [([u8; 3], u8); 256] = {
    let mut t = [([0u8; 3], 0u8); 256];
    let mut i = 0;
    while i < 256 {
        let (h, d, u) = ((i / 100) as u8, ((i / 10) % 10) as u8, (i % 10) as u8);
        t[i] = if i >= 100 {
            ([b'0' + h, b'0' + d, b'0' + u], 3)
        } else if i >= 10 {
            ([b'0' + d, b'0' + u, 0], 2)
        } else {
            ([b'0' + u, 0, 0], 1)
        };
        i += 1;
    }
    t
};

fn ip(out: &mut Vec<u8>, a: IpAddr) {
    out.push(b'"');
    match a {
        IpAddr::V4(v) => {
            let o = v.octets();
            let mut buf = [0u8; 15];
            let mut n = 0;
            for (i, x) in o.iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                let (digits, len) = OCTETS[usize::from(*x)];
                buf[n..n + 3].copy_from_slice(&digits);
                n += usize::from(len);
            }
            put(out, &buf[..n]);
        }
        IpAddr::V6(v) => out.extend_from_slice(v.to_string().as_bytes()),
    }
    out.push(b'"');
}

/// Writes `,"key":` (or `"key":` for the first field of an object).
struct Obj<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Obj<'o> {
    fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }
    /// `key` is `,"name":`; the comma is dropped for the first field. Inlined so that the
    /// literal's length is a constant and the copy needs no call.
    #[inline(always)]
    fn key(&mut self, key: &'static str) -> &mut Vec<u8> {
        let k = key.as_bytes();
        // Two copies of constant length at each (inlined) call site; one copy of a
        // chosen length would be a memcpy call.
        if self.first {
            self.out.extend_from_slice(&k[1..]);
        } else {
            self.out.extend_from_slice(k);
        }
        self.first = false;
        self.out
    }
    #[inline(always)]
    fn str(&mut self, key: &'static str, v: &str) {
        let o = self.key(key);
        write_str(o, v);
    }
    #[inline(always)]
    fn opt_str(&mut self, key: &'static str, v: &Option<Cow<'_, str>>) {
        if let Some(v) = v {
            self.str(key, v);
        }
    }
    fn close(self) {
        self.out.push(b'}');
    }
}

/// A protocol number written as its name. Names come from kcd-names' tables, whose test
/// guarantees plain ASCII without quotes or backslashes, so they need no escaping.
trait Named: Copy {
    fn known(self) -> Option<&'static str>;
    fn prefix() -> &'static str;
    fn number(self) -> i64;
}

macro_rules! named {
    ($($t:ty),*) => {$(
        impl Named for $t {
            fn known(self) -> Option<&'static str> {
                self.name()
            }
            fn prefix() -> &'static str {
                <$t>::PREFIX
            }
            fn number(self) -> i64 {
                i64::from(self.0)
            }
        }
    )*};
}

named!(MessageType, ErrorCode, PaDataType, EncryptionType, NameType);

#[inline(always)]
fn name<T: Named>(out: &mut Vec<u8>, v: T) {
    out.push(b'"');
    match v.known() {
        Some(n) => put(out, n.as_bytes()),
        None => {
            out.extend_from_slice(T::prefix().as_bytes());
            out.push(b'-');
            int(out, v.number());
        }
    }
    out.push(b'"');
}

fn names<T: Named>(out: &mut Vec<u8>, v: &[T]) {
    out.push(b'[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        name(out, *x);
    }
    out.push(b']');
}

fn flags(out: &mut Vec<u8>, f: Flags32, table: &[(u8, &'static str)]) {
    out.push(b'[');
    let mut first = true;
    f.for_each_name(table, |n| {
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        put(out, n.as_bytes());
        out.push(b'"');
    });
    for b in f.unnamed_bits(table) {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(b"\"bit-");
        int(out, b);
        out.push(b'"');
    }
    out.push(b']');
}

fn principal(out: &mut Vec<u8>, p: &Principal<'_>) {
    let mut o = Obj::open(out);
    let n = o.key(",\"name\":");
    n.push(b'"');
    for (i, part) in p.parts.iter().enumerate() {
        if i > 0 {
            n.push(b'/');
        }
        write_str_content(n, part);
    }
    n.push(b'"');
    name(o.key(",\"name_type\":"), p.name_type);
    o.close();
}

fn opt_principal(o: &mut Obj<'_>, key: &'static str, p: &Option<Principal<'_>>) {
    if let Some(p) = p {
        principal(o.key(key), p);
    }
}

fn enc(out: &mut Vec<u8>, e: &EncInfo) {
    let mut o = Obj::open(out);
    name(o.key(",\"etype\":"), e.etype);
    if let Some(k) = e.kvno {
        int(o.key(",\"kvno\":"), k);
    }
    o.close();
}

fn ticket(out: &mut Vec<u8>, t: &TicketInfo<'_>) {
    let mut o = Obj::open(out);
    if let Some(id) = t.id {
        let v = o.key(",\"id\":");
        v.push(b'"');
        id.write_hex(v);
        v.push(b'"');
    }
    o.opt_str(",\"realm\":", &t.realm);
    opt_principal(&mut o, ",\"sname\":", &t.sname);
    if let Some(e) = &t.enc_part {
        enc(o.key(",\"enc_part\":"), e);
    }
    o.close();
}

fn for_user(out: &mut Vec<u8>, f: &ForUser<'_>) {
    let mut o = Obj::open(out);
    opt_principal(&mut o, ",\"user\":", &f.user);
    o.opt_str(",\"realm\":", &f.realm);
    o.opt_str(",\"auth_package\":", &f.auth_package);
    o.close();
}

fn s4u(out: &mut Vec<u8>, s: &S4uX509User<'_>) {
    let mut o = Obj::open(out);
    opt_principal(&mut o, ",\"user\":", &s.user);
    o.opt_str(",\"realm\":", &s.realm);
    if s.has_certificate {
        o.key(",\"has_certificate\":").extend_from_slice(b"true");
    }
    if !s.options.is_empty() {
        flags(
            o.key(",\"options\":"),
            s.options.0,
            crate::S4uOptions::TABLE,
        );
    }
    o.close();
}

fn e_data(out: &mut Vec<u8>, d: &EData<'_>) {
    let mut o = Obj::open(out);
    let f = o.key(",\"format\":");
    f.push(b'"');
    put(f, d.format.name().as_bytes());
    f.push(b'"');
    if !d.padata.is_empty() {
        names(o.key(",\"padata\":"), &d.padata);
    }
    if let Some(n) = &d.ntstatus {
        let mut no = Obj::open(o.key(",\"ntstatus\":"));
        no.str(",\"code\":", &n.0.hex());
        if let Some(nm) = n.0.name() {
            no.str(",\"name\":", nm);
        }
        no.close();
    }
    if !d.etype_info2.is_empty() {
        let a = o.key(",\"etype_info2\":");
        a.push(b'[');
        for (i, s) in d.etype_info2.iter().enumerate() {
            if i > 0 {
                a.push(b',');
            }
            let mut so = Obj::open(a);
            name(so.key(",\"etype\":"), s.etype);
            so.opt_str(",\"salt\":", &s.salt);
            so.close();
        }
        a.push(b']');
    }
    if let Some(t) = d.data_type {
        int(o.key(",\"data_type\":"), t);
    }
    o.close();
}

fn error(out: &mut Vec<u8>, e: &KrbErrorInfo<'_>) {
    let mut o = Obj::open(out);
    int(o.key(",\"code\":"), e.code.0);
    name(o.key(",\"name\":"), e.code);
    if let Some(t) = e.stime {
        ts(o.key(",\"stime\":"), t);
    }
    if let Some(t) = e.ctime {
        ts(o.key(",\"ctime\":"), t);
    }
    o.opt_str(",\"e_text\":", &e.e_text);
    if let Some(d) = &e.e_data {
        e_data(o.key(",\"e_data\":"), d);
    }
    if let Some(s) = e.skew_seconds {
        float(o.key(",\"skew_seconds\":"), s);
    }
    o.close();
}

/// Exactly as serde_json writes an f64 (its float format has changed between versions).
fn float(out: &mut Vec<u8>, v: f64) {
    if serde_json::to_writer(&mut *out, &v).is_err() {
        out.extend_from_slice(b"null");
    }
}

fn nested<T: serde::Serialize>(out: &mut Vec<u8>, v: &T) {
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"{}");
    }
}

fn request(out: &mut Vec<u8>, r: &RequestRef<'_>) {
    let mut o = Obj::open(out);
    o.opt_str(",\"pcap_file\":", &r.pcap_file);
    int(o.key(",\"frame\":"), r.frame);
    name(o.key(",\"msg_type\":"), r.msg_type);
    int(o.key(",\"latency_us\":"), r.latency_us);
    o.close();
}

fn krb5(out: &mut Vec<u8>, k: &Krb5<'_>) {
    let mut o = Obj::open(out);
    name(o.key(",\"msg_type\":"), k.msg_type);
    if let Some(d) = k.direction {
        o.str(
            ",\"direction\":",
            match d {
                Direction::ToKdc => "to_kdc",
                Direction::FromKdc => "from_kdc",
            },
        );
    }
    o.opt_str(",\"realm\":", &k.realm);
    opt_principal(&mut o, ",\"cname\":", &k.cname);
    o.opt_str(",\"crealm\":", &k.crealm);
    opt_principal(&mut o, ",\"sname\":", &k.sname);
    if !k.kdc_options.is_empty() {
        flags(
            o.key(",\"kdc_options\":"),
            k.kdc_options.0,
            crate::KdcOptions::TABLE,
        );
    }
    if !k.etypes.is_empty() {
        names(o.key(",\"etypes\":"), &k.etypes);
    }
    if let Some(n) = k.nonce {
        int(o.key(",\"nonce\":"), n);
    }
    if let Some(t) = k.from {
        ts(o.key(",\"from\":"), t);
    }
    if let Some(t) = k.till {
        ts(o.key(",\"till\":"), t);
    }
    if let Some(t) = k.rtime {
        ts(o.key(",\"rtime\":"), t);
    }
    if !k.padata.is_empty() {
        names(o.key(",\"padata\":"), &k.padata);
    }
    if let Some(f) = &k.for_user {
        for_user(o.key(",\"for_user\":"), f);
    }
    if let Some(s) = &k.s4u_x509_user {
        s4u(o.key(",\"s4u_x509_user\":"), s);
    }
    if !k.pac_options.is_empty() {
        flags(
            o.key(",\"pac_options\":"),
            k.pac_options.0,
            crate::PacOptions::TABLE,
        );
    }
    if !k.additional_tickets.is_empty() {
        let a = o.key(",\"additional_tickets\":");
        a.push(b'[');
        for (i, t) in k.additional_tickets.iter().enumerate() {
            if i > 0 {
                a.push(b',');
            }
            ticket(a, t);
        }
        a.push(b']');
    }
    if let Some(t) = &k.ticket {
        ticket(o.key(",\"ticket\":"), t);
    }
    if let Some(e) = &k.enc_part {
        enc(o.key(",\"enc_part\":"), e);
    }
    if k.armored {
        o.key(",\"armored\":").extend_from_slice(b"true");
    }
    if let Some(d) = &k.decrypted {
        nested(o.key(",\"decrypted\":"), d);
    }
    if let Some(e) = &k.error {
        error(o.key(",\"error\":"), e);
    }
    if let Some(r) = &k.request {
        request(o.key(",\"request\":"), r);
    }
    o.opt_str(",\"malformed\":", &k.malformed);
    o.close();
}

fn anomaly(out: &mut Vec<u8>, a: &Anomaly<'_>) {
    let mut o = Obj::open(out);
    o.str(
        ",\"layer\":",
        match a.layer {
            AnomalyLayer::Pcap => "pcap",
            AnomalyLayer::Link => "link",
            AnomalyLayer::Ip => "ip",
            AnomalyLayer::Tcp => "tcp",
            AnomalyLayer::Udp => "udp",
            AnomalyLayer::Krb5 => "krb5",
            AnomalyLayer::Tls => "tls",
            AnomalyLayer::Http => "http",
        },
    );
    o.str(",\"kind\":", &a.kind);
    o.str(",\"detail\":", &a.detail);
    if let Some(n) = a.count {
        int(o.key(",\"count\":"), n);
    }
    if let Some(n) = a.first_frame {
        int(o.key(",\"first_frame\":"), n);
    }
    o.close();
}

impl Event<'_> {
    /// Appends this event as one line of JSON (without the newline).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Findings and the gateway's events are few and nested: serde writes them.
        if self.finding.is_some() || self.gateway.is_some() {
            if serde_json::to_writer(&mut *out, self).is_err() {
                out.extend_from_slice(b"{}");
            }
            return;
        }
        let mut o = Obj::open(out);
        int(o.key(",\"schema_version\":"), crate::SCHEMA_VERSION);
        ts(o.key(",\"timestamp\":"), self.timestamp);
        o.str(",\"event_type\":", self.event_type.as_str());
        o.opt_str(",\"pcap_file\":", &self.pcap_file);
        int(o.key(",\"frame\":"), self.frame);
        o.opt_str(",\"flow_id\":", &self.flow_id);
        if let Some(a) = self.src_ip {
            ip(o.key(",\"src_ip\":"), a);
        }
        if let Some(p) = self.src_port {
            int(o.key(",\"src_port\":"), p);
        }
        if let Some(a) = self.dest_ip {
            ip(o.key(",\"dest_ip\":"), a);
        }
        if let Some(p) = self.dest_port {
            int(o.key(",\"dest_port\":"), p);
        }
        if let Some(p) = self.proto {
            o.str(
                ",\"proto\":",
                match p {
                    Transport::Udp => "UDP",
                    Transport::Tcp => "TCP",
                },
            );
        }
        o.opt_str(",\"device\":", &self.device);
        if let Some(k) = &self.krb5 {
            krb5(o.key(",\"krb5\":"), k);
        }
        if let Some(a) = &self.anomaly {
            anomaly(o.key(",\"anomaly\":"), a);
        }
        // A handshake or a transaction per connection, among many packets: serde writes
        // these nested objects, in the struct's field order.
        if let Some(t) = &self.tls {
            nested(o.key(",\"tls\":"), t);
        }
        if let Some(h) = &self.http {
            nested(o.key(",\"http\":"), h);
        }
        if let Some(x) = &self.eas {
            nested(o.key(",\"eas\":"), x);
        }
        if let Some(c) = &self.crl {
            nested(o.key(",\"crl\":"), c);
        }
        o.close();
    }
}

#[cfg(test)]
mod tests {
    use super::needs_escape;
    use crate::EventType;

    #[test]
    fn event_type_names_are_those_serde_writes_and_reads() {
        for t in EventType::ALL {
            assert_eq!(serde_json::to_string(&t).ok(), Some(format!("\"{}\"", t.as_str())));
            assert_eq!(serde_json::from_str::<EventType>(&format!("\"{}\"", t.as_str())).ok(), Some(t));
        }
        let mut names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventType::ALL.len(), "every type once");
    }

    #[test]
    fn escape_check_agrees_with_the_byte_by_byte_rule() {
        for len in 0..20 {
            for pos in 0..len {
                for c in 0u8..=255 {
                    let mut v = vec![b'a'; len];
                    v[pos] = c;
                    let want = c < 0x20 || c == b'"' || c == b'\\';
                    assert_eq!(needs_escape(&v), want, "len {len} pos {pos} byte {c:#x}");
                }
            }
        }
    }
}
