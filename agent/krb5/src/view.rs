//! A borrowed, zero-copy reading of a Kerberos message: the fields a monitor reports,
//! found by walking the BER of the same ASN.1 that `asn1.rs` derives with rasn.
//!
//! Why a second reader next to rasn: the agent reads hundreds of thousands of messages a
//! second, and rasn's decoder allocates for every OCTET STRING and name (about 1.4 µs a
//! message on the captures here), several times the agent's whole budget per message.
//! The view allocates nothing and reads only what it is asked for. It is also lenient: a
//! damaged message still yields every field that can be read, plus the first structural
//! problem found, which makes it the salvage walker for messages rasn rejects.
//! `tests/differential.rs` holds the view to rasn's typed decode on every captured
//! message and on generated ones.

use crate::ber::{self, Class, Tlv};
use kcd_names::MessageType;

/// The first structural problem found in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed {
    /// Which part of the message: "KDC-REQ-BODY", "KRB-ERROR", "PA-FOR-USER"...
    pub part: &'static str,
    /// Context tag number of the field, when the problem is one field.
    pub field: Option<u32>,
    pub problem: &'static str,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.field {
            Some(n) => write!(f, "{} field [{}]: {}", self.part, n, self.problem),
            None => write!(f, "{}: {}", self.part, self.problem),
        }
    }
}

/// Collects the first problem; later ones are usually consequences of it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Problems(pub Option<Malformed>);

impl Problems {
    fn note(&mut self, part: &'static str, field: Option<u32>, problem: &'static str) {
        if self.0.is_none() {
            self.0 = Some(Malformed {
                part,
                field,
                problem,
            });
        }
    }
}

/// The explicitly tagged fields [0]..[N-1] of a SEQUENCE, by tag number.
fn fields<'a, const N: usize>(
    seq: &'a [u8],
    part: &'static str,
    p: &mut Problems,
) -> [Option<Tlv<'a>>; N] {
    let mut out = [None; N];
    let mut rest = seq;
    let mut last: Option<u32> = None;
    // Fast path: well-formed fields are [n] with a one-octet identifier and a short or
    // one/two-octet length, in ascending order, wrapping exactly one TLV.
    while let [id @ 0xa0..=0xbe, lb, more @ ..] = rest {
        let tag = u32::from(id & 0x1f);
        let (len, body) = match (*lb, more) {
            (l, _) if l < 0x80 => (usize::from(l), more),
            (0x81, [a, b @ ..]) => (usize::from(*a), b),
            (0x82, [a, b, c @ ..]) => (usize::from(*a) << 8 | usize::from(*b), c),
            _ => break,
        };
        if len > body.len() || last.is_some_and(|l| tag <= l) || tag as usize >= N {
            break;
        }
        match ber::read_tlv(&body[..len]) {
            Ok((inner, [])) => out[tag as usize] = Some(inner),
            _ => break,
        }
        last = Some(tag);
        rest = &body[len..];
    }
    // Anything else, and the diagnosis of what is wrong, takes the general path.
    while !rest.is_empty() {
        let (outer, tail) = match ber::read_tlv(rest) {
            Ok(x) => x,
            Err(_) => {
                // A truncated field: still try to read what it holds.
                if let Ok((Class::Context, true, tag, hlen, _)) = ber::read_header(rest) {
                    p.note(part, Some(tag), "truncated");
                    if (tag as usize) < N {
                        if let Ok((inner, _)) = ber::read_tlv(&rest[hlen..]) {
                            out[tag as usize] = Some(inner);
                        }
                    }
                } else {
                    p.note(part, None, "unreadable field");
                }
                break;
            }
        };
        rest = tail;
        if outer.class != Class::Context || !outer.constructed {
            p.note(part, None, "field without a context tag");
            continue;
        }
        if last.is_some_and(|l| outer.tag <= l) {
            p.note(part, Some(outer.tag), "field out of order or repeated");
        }
        last = Some(outer.tag);
        if outer.tag as usize >= N {
            p.note(part, Some(outer.tag), "unknown field");
            continue;
        }
        match ber::read_tlv(outer.value) {
            Ok((inner, after)) => {
                if !after.is_empty() {
                    p.note(part, Some(outer.tag), "bytes after the field's value");
                }
                out[outer.tag as usize] = Some(inner);
            }
            Err(_) => p.note(part, Some(outer.tag), "unreadable value"),
        }
    }
    out
}

fn is_universal(t: &Tlv<'_>, tag: u32, constructed: bool) -> bool {
    t.class == Class::Universal && t.tag == tag && t.constructed == constructed
}

const INTEGER: u32 = 2;
const BIT_STRING: u32 = 3;
const OCTET_STRING: u32 = 4;
const SEQUENCE: u32 = 16;
const GENERALIZED_TIME: u32 = 24;
const GENERAL_STRING: u32 = 27;

/// Reads field `n` as an INTEGER; notes a problem if present but not an integer, or if
/// `required` and absent.
fn int_field<const N: usize>(
    f: &[Option<Tlv<'_>>; N],
    n: u32,
    required: bool,
    part: &'static str,
    p: &mut Problems,
) -> Option<i64> {
    match f[n as usize] {
        Some(t) if is_universal(&t, INTEGER, false) => {
            let v = t.integer();
            if v.is_none() {
                p.note(part, Some(n), "integer too large or empty");
            }
            v
        }
        Some(_) => {
            p.note(part, Some(n), "not an INTEGER");
            None
        }
        None => {
            if required {
                p.note(part, Some(n), "missing");
            }
            None
        }
    }
}

fn int32_field<const N: usize>(
    f: &[Option<Tlv<'_>>; N],
    n: u32,
    required: bool,
    part: &'static str,
    p: &mut Problems,
) -> Option<i32> {
    let v = int_field(f, n, required, part, p)?;
    let r = i32::try_from(v).ok();
    if r.is_none() {
        p.note(part, Some(n), "integer outside Int32");
    }
    r
}

fn prim_field<'a, const N: usize>(
    f: &[Option<Tlv<'a>>; N],
    n: u32,
    tag: u32,
    required: bool,
    part: &'static str,
    p: &mut Problems,
) -> Option<&'a [u8]> {
    match f[n as usize] {
        Some(t) if is_universal(&t, tag, false) => Some(t.value),
        Some(_) => {
            p.note(part, Some(n), "wrong type");
            None
        }
        None => {
            if required {
                p.note(part, Some(n), "missing");
            }
            None
        }
    }
}

fn seq_field<'a, const N: usize>(
    f: &[Option<Tlv<'a>>; N],
    n: u32,
    required: bool,
    part: &'static str,
    p: &mut Problems,
) -> Option<&'a [u8]> {
    match f[n as usize] {
        Some(t) if is_universal(&t, SEQUENCE, true) => Some(t.value),
        Some(_) => {
            p.note(part, Some(n), "not a SEQUENCE");
            None
        }
        None => {
            if required {
                p.note(part, Some(n), "missing");
            }
            None
        }
    }
}

/// KerberosFlags: the first 32 bits of a BIT STRING.
fn flags_field<const N: usize>(
    f: &[Option<Tlv<'_>>; N],
    n: u32,
    required: bool,
    part: &'static str,
    p: &mut Problems,
) -> Option<u32> {
    let v = prim_field(f, n, BIT_STRING, required, part, p)?;
    let (&unused, bits) = v.split_first().or_else(|| {
        p.note(part, Some(n), "empty BIT STRING");
        None
    })?;
    if unused > 7 || (bits.is_empty() && unused != 0) {
        p.note(part, Some(n), "bad BIT STRING");
        return None;
    }
    let mut word = [0u8; 4];
    for (i, b) in bits.iter().take(4).enumerate() {
        word[i] = *b;
    }
    // The last octet's `unused` low bits are padding, not flags.
    if bits.len() <= 4 && unused > 0 {
        word[bits.len() - 1] &= 0xffu8 << unused;
    }
    Some(u32::from_be_bytes(word))
}

/// A SEQUENCE OF whose elements all satisfy `check`; returns the raw content for lazy
/// iteration and notes a problem otherwise.
fn seq_of<'a>(
    v: &'a [u8],
    part: &'static str,
    field: u32,
    p: &mut Problems,
    check: impl Fn(&Tlv<'a>) -> bool,
) -> &'a [u8] {
    let mut rest = v;
    while !rest.is_empty() {
        match ber::read_tlv(rest) {
            Ok((t, tail)) => {
                if !check(&t) {
                    p.note(part, Some(field), "element of the wrong type");
                }
                rest = tail;
            }
            Err(_) => {
                p.note(part, Some(field), "unreadable element");
                return &v[..v.len() - rest.len()];
            }
        }
    }
    v
}

/// PrincipalName, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameView<'a> {
    pub name_type: i32,
    /// Content of the SEQUENCE OF KerberosString.
    components: &'a [u8],
}

impl<'a> NameView<'a> {
    pub fn components(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        ber::children(self.components).map(|t| t.value)
    }

    /// Components joined with '/' (lossy UTF-8).
    pub fn display(&self) -> String {
        // The encoded components are a little longer than the joined text: no regrowth.
        let mut s = String::with_capacity(self.components.len());
        self.write_display(&mut s);
        s
    }

    pub fn write_display(&self, out: &mut String) {
        for (i, c) in self.components().enumerate() {
            if i > 0 {
                out.push('/');
            }
            match std::str::from_utf8(c) {
                Ok(s) => out.push_str(s),
                Err(_) => out.push_str(&String::from_utf8_lossy(c)),
            }
        }
    }

    fn read(v: &'a [u8], part: &'static str, p: &mut Problems) -> Option<Self> {
        let f: [Option<Tlv<'a>>; 2] = fields(v, part, p);
        let name_type = int32_field(&f, 0, true, part, p);
        let components = seq_field(&f, 1, true, part, p)
            .map(|c| seq_of(c, part, 1, p, |t| is_universal(t, GENERAL_STRING, false)))
            .unwrap_or(&[]);
        Some(Self {
            name_type: name_type.unwrap_or(0),
            components,
        })
    }
}

fn name_field<'a, const N: usize>(
    f: &[Option<Tlv<'a>>; N],
    n: u32,
    required: bool,
    part: &'static str,
    p: &mut Problems,
) -> Option<NameView<'a>> {
    seq_field(f, n, required, part, p).and_then(|v| NameView::read(v, "PrincipalName", p))
}

/// PA-DATA, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PaView<'a> {
    pub padata_type: i32,
    pub value: &'a [u8],
}

/// How many PA-DATA a list keeps parsed; real messages carry 1 to 7.
const PA_INLINE: usize = 8;

/// SEQUENCE OF PA-DATA (METHOD-DATA): validated and parsed once, on construction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PaList<'a> {
    raw: &'a [u8],
    items: [PaView<'a>; PA_INLINE],
    len: u8,
}

impl<'a> PaList<'a> {
    pub fn iter(&self) -> impl Iterator<Item = PaView<'a>> + 'a {
        let inline = self.items;
        let n = usize::from(self.len);
        // Beyond the inline ones (rare), the rest are parsed again from the raw bytes.
        let overflow = ber::children(self.raw)
            .skip(PA_INLINE)
            .filter_map(|t| pa_data(&t, &mut Problems::default()));
        (0..n).map(move |i| inline[i]).chain(overflow)
    }

    pub fn find(&self, padata_type: i32) -> Option<PaView<'a>> {
        self.iter().find(|pa| pa.padata_type == padata_type)
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    fn read(v: &'a [u8], part: &'static str, field: u32, p: &mut Problems) -> Self {
        let content = seq_of(v, part, field, p, |t| is_universal(t, SEQUENCE, true));
        let mut list = Self {
            raw: content,
            ..Self::default()
        };
        for t in ber::children(content) {
            let pa = pa_data(&t, p);
            if let (Some(pa), true) = (pa, usize::from(list.len) < PA_INLINE) {
                list.items[usize::from(list.len)] = pa;
                list.len += 1;
            }
        }
        list
    }

    /// Parses bytes that should be a METHOD-DATA (as in KRB-ERROR e-data).
    pub fn parse(b: &'a [u8]) -> (Self, Problems) {
        let mut p = Problems::default();
        let list = match ber::read_tlv(b) {
            Ok((t, rest)) if is_universal(&t, SEQUENCE, true) => {
                if !rest.is_empty() {
                    p.note("METHOD-DATA", None, "trailing bytes");
                }
                Self::read(t.value, "METHOD-DATA", 0, &mut p)
            }
            _ => {
                p.note("METHOD-DATA", None, "not a SEQUENCE");
                Self::default()
            }
        };
        (list, p)
    }
}

/// PA-DATA ::= SEQUENCE { padata-type [1] Int32, padata-value [2] OCTET STRING }
fn pa_data<'a>(t: &Tlv<'a>, p: &mut Problems) -> Option<PaView<'a>> {
    let f: [Option<Tlv<'a>>; 3] = fields(t.value, "PA-DATA", p);
    let padata_type = int32_field(&f, 1, true, "PA-DATA", p)?;
    let value = prim_field(&f, 2, OCTET_STRING, true, "PA-DATA", p).unwrap_or(&[]);
    Some(PaView { padata_type, value })
}

/// EncryptedData's visible parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncView<'a> {
    pub etype: i32,
    pub kvno: Option<i64>,
    pub cipher: &'a [u8],
}

fn enc_field<'a, const N: usize>(
    f: &[Option<Tlv<'a>>; N],
    n: u32,
    required: bool,
    part: &'static str,
    p: &mut Problems,
) -> Option<EncView<'a>> {
    let v = seq_field(f, n, required, part, p)?;
    let ef: [Option<Tlv<'a>>; 3] = fields(v, "EncryptedData", p);
    Some(EncView {
        etype: int32_field(&ef, 0, true, "EncryptedData", p).unwrap_or(0),
        kvno: int_field(&ef, 1, false, "EncryptedData", p),
        cipher: prim_field(&ef, 2, OCTET_STRING, true, "EncryptedData", p).unwrap_or(&[]),
    })
}

/// Ticket ::= [APPLICATION 1] SEQUENCE {...}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketView<'a> {
    pub tkt_vno: Option<i64>,
    pub realm: Option<&'a [u8]>,
    pub sname: Option<NameView<'a>>,
    pub enc_part: Option<EncView<'a>>,
}

impl<'a> TicketView<'a> {
    fn read(t: &Tlv<'a>, p: &mut Problems) -> Option<Self> {
        if t.class != Class::Application || t.tag != 1 || !t.constructed {
            p.note("Ticket", None, "not [APPLICATION 1]");
            return None;
        }
        let seq = match ber::read_tlv(t.value) {
            Ok((s, rest)) if is_universal(&s, SEQUENCE, true) && rest.is_empty() => s,
            _ => {
                p.note("Ticket", None, "not a SEQUENCE");
                return None;
            }
        };
        let f: [Option<Tlv<'a>>; 4] = fields(seq.value, "Ticket", p);
        Some(Self {
            tkt_vno: int_field(&f, 0, true, "Ticket", p),
            realm: prim_field(&f, 1, GENERAL_STRING, true, "Ticket", p),
            sname: name_field(&f, 2, true, "Ticket", p),
            enc_part: enc_field(&f, 3, true, "Ticket", p),
        })
    }

    /// Reads a DER Ticket (as found in PA data or additional-tickets).
    pub fn parse(b: &'a [u8]) -> Option<Self> {
        let (t, _) = ber::read_tlv(b).ok()?;
        Self::read(&t, &mut Problems::default())
    }
}

fn ticket_field<'a, const N: usize>(
    f: &[Option<Tlv<'a>>; N],
    n: u32,
    part: &'static str,
    p: &mut Problems,
) -> Option<TicketView<'a>> {
    match f[n as usize] {
        Some(t) => TicketView::read(&t, p),
        None => {
            p.note(part, Some(n), "missing");
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdcReqView<'a> {
    pub padata: PaList<'a>,
    pub kdc_options: Option<u32>,
    pub cname: Option<NameView<'a>>,
    pub realm: Option<&'a [u8]>,
    pub sname: Option<NameView<'a>>,
    pub from: Option<&'a [u8]>,
    pub till: Option<&'a [u8]>,
    pub rtime: Option<&'a [u8]>,
    pub nonce: Option<i64>,
    etypes: &'a [u8],
    pub has_addresses: bool,
    pub has_enc_authorization_data: bool,
    additional_tickets: &'a [u8],
}

impl<'a> KdcReqView<'a> {
    pub fn etypes(&self) -> impl Iterator<Item = i32> + 'a {
        ber::children(self.etypes)
            .filter_map(|t| t.integer())
            .filter_map(|v| i32::try_from(v).ok())
    }

    pub fn additional_tickets(&self) -> impl Iterator<Item = TicketView<'a>> + 'a {
        ber::children(self.additional_tickets)
            .filter_map(|t| TicketView::read(&t, &mut Problems::default()))
    }

    fn read(f: &[Option<Tlv<'a>>; 5], part: &'static str, p: &mut Problems) -> Self {
        let padata = seq_field(f, 3, false, part, p)
            .map(|v| PaList::read(v, part, 3, p))
            .unwrap_or_default();
        if f[0].is_some() {
            p.note(part, Some(0), "unknown field");
        }
        let body = seq_field(f, 4, true, part, p).unwrap_or(&[]);
        const B: &str = "KDC-REQ-BODY";
        let b: [Option<Tlv<'a>>; 12] = fields(body, B, p);
        let etypes = seq_field(&b, 8, true, B, p)
            .map(|v| seq_of(v, B, 8, p, |t| is_universal(t, INTEGER, false)))
            .unwrap_or(&[]);
        let additional_tickets = seq_field(&b, 11, false, B, p)
            .map(|v| seq_of(v, B, 11, p, |t| t.class == Class::Application && t.tag == 1))
            .unwrap_or(&[]);
        for t in ber::children(additional_tickets) {
            TicketView::read(&t, p);
        }
        Self {
            padata,
            kdc_options: flags_field(&b, 0, true, B, p),
            cname: name_field(&b, 1, false, B, p),
            realm: prim_field(&b, 2, GENERAL_STRING, true, B, p),
            sname: name_field(&b, 3, false, B, p),
            from: prim_field(&b, 4, GENERALIZED_TIME, false, B, p),
            till: prim_field(&b, 5, GENERALIZED_TIME, true, B, p),
            rtime: prim_field(&b, 6, GENERALIZED_TIME, false, B, p),
            nonce: int_field(&b, 7, true, B, p),
            etypes,
            has_addresses: seq_field(&b, 9, false, B, p).is_some(),
            has_enc_authorization_data: seq_field(&b, 10, false, B, p).is_some(),
            additional_tickets,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdcRepView<'a> {
    pub padata: PaList<'a>,
    pub crealm: Option<&'a [u8]>,
    pub cname: Option<NameView<'a>>,
    pub ticket: Option<TicketView<'a>>,
    pub enc_part: Option<EncView<'a>>,
}

impl<'a> KdcRepView<'a> {
    fn read(f: &[Option<Tlv<'a>>; 7], p: &mut Problems) -> Self {
        const R: &str = "KDC-REP";
        Self {
            padata: seq_field(f, 2, false, R, p)
                .map(|v| PaList::read(v, R, 2, p))
                .unwrap_or_default(),
            crealm: prim_field(f, 3, GENERAL_STRING, true, R, p),
            cname: name_field(f, 4, true, R, p),
            ticket: ticket_field(f, 5, R, p),
            enc_part: enc_field(f, 6, true, R, p),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KrbErrorView<'a> {
    pub ctime: Option<&'a [u8]>,
    pub cusec: Option<i64>,
    pub stime: Option<&'a [u8]>,
    pub susec: Option<i64>,
    pub error_code: Option<i32>,
    pub crealm: Option<&'a [u8]>,
    pub cname: Option<NameView<'a>>,
    pub realm: Option<&'a [u8]>,
    pub sname: Option<NameView<'a>>,
    pub e_text: Option<&'a [u8]>,
    pub e_data: Option<&'a [u8]>,
}

impl<'a> KrbErrorView<'a> {
    fn read(f: &[Option<Tlv<'a>>; 13], p: &mut Problems) -> Self {
        const E: &str = "KRB-ERROR";
        Self {
            ctime: prim_field(f, 2, GENERALIZED_TIME, false, E, p),
            cusec: int_field(f, 3, false, E, p),
            stime: prim_field(f, 4, GENERALIZED_TIME, true, E, p),
            susec: int_field(f, 5, true, E, p),
            error_code: int32_field(f, 6, true, E, p),
            crealm: prim_field(f, 7, GENERAL_STRING, false, E, p),
            cname: name_field(f, 8, false, E, p),
            realm: prim_field(f, 9, GENERAL_STRING, true, E, p),
            sname: name_field(f, 10, true, E, p),
            e_text: prim_field(f, 11, GENERAL_STRING, false, E, p),
            e_data: prim_field(f, 12, OCTET_STRING, false, E, p),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApReqView<'a> {
    pub ap_options: Option<u32>,
    pub ticket: Option<TicketView<'a>>,
    pub authenticator: Option<EncView<'a>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyView<'a> {
    KdcReq(KdcReqView<'a>),
    KdcRep(KdcRepView<'a>),
    Error(KrbErrorView<'a>),
    ApReq(ApReqView<'a>),
    ApRep {
        enc_part: Option<EncView<'a>>,
    },
    /// Nothing readable beyond the outer tag.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageView<'a> {
    /// From the outer [APPLICATION n] tag.
    pub kind: MessageType,
    pub pvno: Option<i64>,
    pub msg_type: Option<i64>,
    pub body: BodyView<'a>,
    pub malformed: Option<Malformed>,
}

impl<'a> MessageView<'a> {
    /// Reads one message. Err only when the bytes do not even start like a Kerberos
    /// message; everything else yields a view, with `malformed` set if something is off.
    pub fn parse(b: &'a [u8]) -> Result<Self, NotKerberos> {
        let (class, constructed, tag, hlen, len) = ber::read_header(b).map_err(|_| NotKerberos)?;
        if class != Class::Application || !constructed || !matches!(tag, 10..=15 | 30) {
            return Err(NotKerberos);
        }
        let kind = MessageType(tag as i32);
        let mut p = Problems::default();
        let end = hlen.saturating_add(len);
        let content = if end > b.len() {
            p.note("message", None, "truncated");
            &b[hlen.min(b.len())..]
        } else {
            if end < b.len() {
                p.note("message", None, "bytes after the end of the message");
            }
            &b[hlen..end]
        };
        let seq = match ber::read_tlv(content) {
            Ok((s, rest)) if is_universal(&s, SEQUENCE, true) => {
                if !rest.is_empty() {
                    p.note("message", None, "bytes after the SEQUENCE");
                }
                s.value
            }
            Ok(_) => {
                p.note("message", None, "not a SEQUENCE");
                return Ok(Self {
                    kind,
                    pvno: None,
                    msg_type: None,
                    body: BodyView::None,
                    malformed: p.0,
                });
            }
            Err(_) => match ber::read_header(content) {
                // Truncated SEQUENCE: walk what is there.
                Ok((Class::Universal, true, SEQUENCE, h, _)) => {
                    p.note("message", None, "truncated");
                    &content[h.min(content.len())..]
                }
                _ => {
                    p.note("message", None, "unreadable SEQUENCE");
                    return Ok(Self {
                        kind,
                        pvno: None,
                        msg_type: None,
                        body: BodyView::None,
                        malformed: p.0,
                    });
                }
            },
        };
        let part = kind.name().unwrap_or("message");
        let (pvno, msg_type, body) = match tag {
            10 | 12 => {
                let f: [Option<Tlv<'a>>; 5] = fields(seq, part, &mut p);
                let pvno = int_field(&f, 1, true, part, &mut p);
                let mt = int_field(&f, 2, true, part, &mut p);
                (
                    pvno,
                    mt,
                    BodyView::KdcReq(KdcReqView::read(&f, part, &mut p)),
                )
            }
            11 | 13 => {
                let f: [Option<Tlv<'a>>; 7] = fields(seq, part, &mut p);
                let pvno = int_field(&f, 0, true, part, &mut p);
                let mt = int_field(&f, 1, true, part, &mut p);
                (pvno, mt, BodyView::KdcRep(KdcRepView::read(&f, &mut p)))
            }
            30 => {
                let f: [Option<Tlv<'a>>; 13] = fields(seq, part, &mut p);
                let pvno = int_field(&f, 0, true, part, &mut p);
                let mt = int_field(&f, 1, true, part, &mut p);
                (pvno, mt, BodyView::Error(KrbErrorView::read(&f, &mut p)))
            }
            14 => {
                let f: [Option<Tlv<'a>>; 5] = fields(seq, part, &mut p);
                let pvno = int_field(&f, 0, true, part, &mut p);
                let mt = int_field(&f, 1, true, part, &mut p);
                let body = ApReqView {
                    ap_options: flags_field(&f, 2, true, part, &mut p),
                    ticket: ticket_field(&f, 3, part, &mut p),
                    authenticator: enc_field(&f, 4, true, part, &mut p),
                };
                (pvno, mt, BodyView::ApReq(body))
            }
            _ => {
                let f: [Option<Tlv<'a>>; 3] = fields(seq, part, &mut p);
                let pvno = int_field(&f, 0, true, part, &mut p);
                let mt = int_field(&f, 1, true, part, &mut p);
                (
                    pvno,
                    mt,
                    BodyView::ApRep {
                        enc_part: enc_field(&f, 2, true, part, &mut p),
                    },
                )
            }
        };
        if pvno.is_some_and(|v| v != 5) {
            p.note(
                part,
                Some(if matches!(tag, 10 | 12) { 1 } else { 0 }),
                "pvno is not 5",
            );
        }
        if msg_type.is_some_and(|v| v != i64::from(tag)) {
            p.note(
                part,
                Some(if matches!(tag, 10 | 12) { 2 } else { 1 }),
                "msg-type differs from the application tag",
            );
        }
        Ok(Self {
            kind,
            pvno,
            msg_type,
            body,
            malformed: p.0,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotKerberos;

/// PA-FOR-USER (MS-SFU 2.2.1), borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForUserView<'a> {
    pub user_name: Option<NameView<'a>>,
    pub user_realm: Option<&'a [u8]>,
    pub cksum_type: Option<i32>,
    pub auth_package: Option<&'a [u8]>,
    pub malformed: Option<Malformed>,
}

impl<'a> ForUserView<'a> {
    pub fn parse(b: &'a [u8]) -> Self {
        const P: &str = "PA-FOR-USER";
        let mut p = Problems::default();
        let seq = outer_sequence(b, P, &mut p);
        let f: [Option<Tlv<'a>>; 4] = fields(seq, P, &mut p);
        let cksum_type = seq_field(&f, 2, true, P, &mut p).and_then(|c| {
            let cf: [Option<Tlv<'a>>; 2] = fields(c, "Checksum", &mut p);
            prim_field(&cf, 1, OCTET_STRING, true, "Checksum", &mut p);
            int32_field(&cf, 0, true, "Checksum", &mut p)
        });
        Self {
            user_name: name_field(&f, 0, true, P, &mut p),
            user_realm: prim_field(&f, 1, GENERAL_STRING, true, P, &mut p),
            cksum_type,
            auth_package: prim_field(&f, 3, GENERAL_STRING, true, P, &mut p),
            malformed: p.0,
        }
    }
}

/// PA-S4U-X509-USER (MS-SFU 2.2.2), borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S4uX509UserView<'a> {
    pub nonce: Option<i64>,
    pub cname: Option<NameView<'a>>,
    pub crealm: Option<&'a [u8]>,
    pub has_certificate: bool,
    pub options: Option<u32>,
    pub cksum_type: Option<i32>,
    pub malformed: Option<Malformed>,
}

impl<'a> S4uX509UserView<'a> {
    pub fn parse(b: &'a [u8]) -> Self {
        const P: &str = "PA-S4U-X509-USER";
        const U: &str = "S4UUserID";
        let mut p = Problems::default();
        let seq = outer_sequence(b, P, &mut p);
        let f: [Option<Tlv<'a>>; 2] = fields(seq, P, &mut p);
        let uid = seq_field(&f, 0, true, P, &mut p).unwrap_or(&[]);
        let u: [Option<Tlv<'a>>; 5] = fields(uid, U, &mut p);
        let cksum_type = seq_field(&f, 1, true, P, &mut p).and_then(|c| {
            let cf: [Option<Tlv<'a>>; 2] = fields(c, "Checksum", &mut p);
            prim_field(&cf, 1, OCTET_STRING, true, "Checksum", &mut p);
            int32_field(&cf, 0, true, "Checksum", &mut p)
        });
        Self {
            nonce: int_field(&u, 0, true, U, &mut p),
            cname: name_field(&u, 1, false, U, &mut p),
            crealm: prim_field(&u, 2, GENERAL_STRING, true, U, &mut p),
            has_certificate: prim_field(&u, 3, OCTET_STRING, false, U, &mut p).is_some(),
            options: flags_field(&u, 4, false, U, &mut p),
            cksum_type,
            malformed: p.0,
        }
    }
}

/// PA-PAC-OPTIONS (MS-KILE 2.2.10): the flags.
pub fn parse_pac_options(b: &[u8]) -> Option<u32> {
    let mut p = Problems::default();
    let seq = outer_sequence(b, "PA-PAC-OPTIONS", &mut p);
    let f: [Option<Tlv<'_>>; 1] = fields(seq, "PA-PAC-OPTIONS", &mut p);
    flags_field(&f, 0, true, "PA-PAC-OPTIONS", &mut p)
}

/// One ETYPE-INFO2-ENTRY, borrowed: what the client must use to turn its password into a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Salt<'a> {
    pub etype: i32,
    pub salt: Option<&'a [u8]>,
    pub s2kparams: Option<&'a [u8]>,
}

/// ETYPE-INFO2 (RFC 4120 5.2.7.5).
pub fn parse_etype_info2(b: &[u8]) -> Vec<Salt<'_>> {
    let mut p = Problems::default();
    let seq = outer_sequence(b, "ETYPE-INFO2", &mut p);
    ber::children(seq)
        .filter_map(|e| {
            let f: [Option<Tlv<'_>>; 3] = fields(e.value, "ETYPE-INFO2-ENTRY", &mut p);
            Some(Salt {
                etype: int32_field(&f, 0, true, "ETYPE-INFO2-ENTRY", &mut p)?,
                salt: prim_field(&f, 1, GENERAL_STRING, false, "ETYPE-INFO2-ENTRY", &mut p),
                s2kparams: prim_field(&f, 2, OCTET_STRING, false, "ETYPE-INFO2-ENTRY", &mut p),
            })
        })
        .collect()
}

/// TYPED-DATA (RFC 4120 5.9.1): the data-types, when `b` is one.
pub fn parse_typed_data(b: &[u8]) -> Option<Vec<i32>> {
    let mut p = Problems::default();
    let seq = outer_sequence(b, "TYPED-DATA", &mut p);
    let mut types = Vec::new();
    for e in ber::children(seq) {
        if !is_universal(&e, SEQUENCE, true) {
            return None;
        }
        let f: [Option<Tlv<'_>>; 2] = fields(e.value, "TYPED-DATA", &mut p);
        types.push(int32_field(&f, 0, true, "TYPED-DATA", &mut p)?);
        prim_field(&f, 1, OCTET_STRING, false, "TYPED-DATA", &mut p);
    }
    (p.0.is_none() && !types.is_empty()).then_some(types)
}

/// KERB-ERROR-DATA (MS-KILE 2.2.1): (data-type, data-value) when `b` is one.
pub fn parse_kerb_error_data(b: &[u8]) -> Option<(i32, Option<&[u8]>)> {
    let mut p = Problems::default();
    let (t, rest) = ber::read_tlv(b).ok()?;
    if !is_universal(&t, SEQUENCE, true) || !rest.is_empty() {
        return None;
    }
    let f: [Option<Tlv<'_>>; 3] = fields(t.value, "KERB-ERROR-DATA", &mut p);
    if f[0].is_some() {
        return None;
    }
    let data_type = int32_field(&f, 1, true, "KERB-ERROR-DATA", &mut p)?;
    let value = prim_field(&f, 2, OCTET_STRING, false, "KERB-ERROR-DATA", &mut p);
    p.0.is_none().then_some((data_type, value))
}

fn outer_sequence<'a>(b: &'a [u8], part: &'static str, p: &mut Problems) -> &'a [u8] {
    match ber::read_tlv(b) {
        Ok((t, rest)) if is_universal(&t, SEQUENCE, true) => {
            if !rest.is_empty() {
                p.note(part, None, "trailing bytes");
            }
            t.value
        }
        _ => {
            p.note(part, None, "not a SEQUENCE");
            &[]
        }
    }
}
