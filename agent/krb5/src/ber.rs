//! A minimal, lenient BER reader over borrowed bytes. It is not a second codec: the typed
//! codec is rasn. It exists for the two jobs rasn cannot do: probing whether bytes start a
//! Kerberos message before committing to a decode, and walking a message that rasn
//! rejected, tag by tag, to salvage the fields that are still readable.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Universal,
    Application,
    Context,
    Private,
}

#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    pub class: Class,
    pub constructed: bool,
    pub tag: u32,
    pub value: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BerError {
    #[error("truncated: {needed} more bytes needed")]
    Truncated { needed: usize },
    #[error("indefinite length")]
    Indefinite,
    #[error("length field of {0} octets")]
    LengthTooLong(usize),
    #[error("tag number too large")]
    TagTooLarge,
}

/// Reads the identifier and length octets. Returns (class, constructed, tag, header_len, value_len).
pub fn read_header(input: &[u8]) -> Result<(Class, bool, u32, usize, usize), BerError> {
    let first = *input.first().ok_or(BerError::Truncated { needed: 2 })?;
    let class = match first >> 6 {
        0 => Class::Universal,
        1 => Class::Application,
        2 => Class::Context,
        _ => Class::Private,
    };
    let constructed = first & 0x20 != 0;
    let mut pos = 1;
    let mut tag = u32::from(first & 0x1f);
    if tag == 0x1f {
        tag = 0;
        loop {
            let b = *input.get(pos).ok_or(BerError::Truncated { needed: 1 })?;
            pos += 1;
            if tag > (u32::MAX >> 7) {
                return Err(BerError::TagTooLarge);
            }
            tag = (tag << 7) | u32::from(b & 0x7f);
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    let lb = *input.get(pos).ok_or(BerError::Truncated { needed: 1 })?;
    pos += 1;
    let len = if lb < 0x80 {
        usize::from(lb)
    } else if lb == 0x80 {
        return Err(BerError::Indefinite);
    } else {
        let n = usize::from(lb & 0x7f);
        if n > 4 {
            return Err(BerError::LengthTooLong(n));
        }
        let bytes = input.get(pos..pos + n).ok_or_else(|| BerError::Truncated {
            needed: pos + n - input.len(),
        })?;
        pos += n;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    Ok((class, constructed, tag, pos, len))
}

const CLASSES: [Class; 4] = [
    Class::Universal,
    Class::Application,
    Class::Context,
    Class::Private,
];

/// Reads one TLV; returns it and the bytes after it.
#[inline]
pub fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), BerError> {
    // Fast path for what DER Kerberos is made of: one-octet tags, lengths below 64 KiB.
    if let [first, lb, rest @ ..] = input {
        if first & 0x1f != 0x1f {
            let (hlen, len) = match (*lb, rest) {
                (l, _) if l < 0x80 => (2, usize::from(l)),
                (0x81, [a, ..]) => (3, usize::from(*a)),
                (0x82, [a, b, ..]) => (4, usize::from(*a) << 8 | usize::from(*b)),
                _ => return read_tlv_slow(input),
            };
            if hlen + len <= input.len() {
                let tlv = Tlv {
                    class: CLASSES[usize::from(first >> 6)],
                    constructed: first & 0x20 != 0,
                    tag: u32::from(first & 0x1f),
                    value: &input[hlen..hlen + len],
                };
                return Ok((tlv, &input[hlen + len..]));
            }
        }
    }
    read_tlv_slow(input)
}

#[cold]
fn read_tlv_slow(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), BerError> {
    let (class, constructed, tag, header_len, len) = read_header(input)?;
    let end = header_len
        .checked_add(len)
        .ok_or(BerError::LengthTooLong(8))?;
    if end > input.len() {
        return Err(BerError::Truncated {
            needed: end - input.len(),
        });
    }
    Ok((
        Tlv {
            class,
            constructed,
            tag,
            value: &input[header_len..end],
        },
        &input[end..],
    ))
}

/// Iterates the TLVs inside a constructed value; stops at the first unreadable one.
pub fn children(value: &[u8]) -> impl Iterator<Item = Tlv<'_>> {
    let mut rest = value;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match read_tlv(rest) {
            Ok((tlv, tail)) => {
                rest = tail;
                Some(tlv)
            }
            Err(_) => {
                rest = &[];
                None
            }
        }
    })
}

impl<'a> Tlv<'a> {
    /// The content of context tag [n] inside this constructed value (explicit tagging: the
    /// inner TLV).
    pub fn field(&self, n: u32) -> Option<Tlv<'a>> {
        let outer = children(self.value).find(|t| t.class == Class::Context && t.tag == n)?;
        read_tlv(outer.value).ok().map(|(inner, _)| inner)
    }

    /// A universal INTEGER that fits in i64.
    pub fn integer(&self) -> Option<i64> {
        if self.class != Class::Universal
            || self.tag != 2
            || self.value.is_empty()
            || self.value.len() > 8
        {
            return None;
        }
        let mut v: i64 = if self.value[0] & 0x80 != 0 { -1 } else { 0 };
        for b in self.value {
            v = (v << 8) | i64::from(*b);
        }
        Some(v)
    }

    /// The inner SEQUENCE of an [APPLICATION n] wrapper, or self when not wrapped.
    pub fn unwrap_application(self) -> Option<Tlv<'a>> {
        if self.class == Class::Application {
            read_tlv(self.value).ok().map(|(t, _)| t)
        } else {
            Some(self)
        }
    }
}

/// Quick test that `b` starts like a Kerberos KDC message: [APPLICATION n] (constructed)
/// around a SEQUENCE, n one of AS-REQ/REP, TGS-REQ/REP, AP-REQ/REP, KRB-ERROR. Returns n.
/// Used to resynchronise a TCP stream after a gap.
pub fn probe_message(b: &[u8]) -> Option<u32> {
    let (class, constructed, tag, hlen, _) = read_header(b).ok()?;
    if class != Class::Application || !constructed || !matches!(tag, 10..=15 | 30) {
        return None;
    }
    let inner = b.get(hlen..)?;
    (inner.first() == Some(&0x30)).then_some(tag)
}
