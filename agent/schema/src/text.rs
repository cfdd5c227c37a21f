//! Bytes from the wire as event text.

use std::borrow::Cow;

/// Names, realms and texts are bytes on the wire and nearly always ASCII. ASCII is checked
/// eight bytes at a time; anything else goes through full UTF-8 validation, and invalid
/// UTF-8 is replaced (U+FFFD) rather than rejected.
pub fn text_from_bytes(b: &[u8]) -> Cow<'_, str> {
    if is_ascii(b) {
        #[allow(unsafe_code)]
        // SAFETY: every byte is below 0x80, and ASCII is valid UTF-8.
        return Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(b) });
    }
    match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(String::from_utf8_lossy(b).into_owned()),
    }
}

#[inline(always)]
fn is_ascii(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |c: &[u8]| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
    let n = b.len();
    if n >= 8 {
        let mut chunks = b.chunks_exact(8);
        if chunks.any(|c| word(c) & HIGH != 0) {
            return false;
        }
        return word(&b[n - 8..]) & HIGH == 0;
    }
    b.iter().fold(0u8, |acc, c| acc | c) < 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_borrows_utf8_borrows_garbage_is_replaced() {
        for s in [
            "",
            "a",
            "krbtgt",
            "exactly8",
            "HTTP/exchange.lab.test",
            "łukasz",
            "zoë@LAB.TEST",
        ] {
            assert!(matches!(text_from_bytes(s.as_bytes()), Cow::Borrowed(x) if x == s));
        }
        assert_eq!(text_from_bytes(b"ab\xffcd"), "ab\u{fffd}cd");
        for len in 0..20 {
            for pos in 0..len {
                let mut v = vec![b'a'; len];
                v[pos] = 0xc3;
                assert!(!is_ascii(&v));
                v[pos] = 0x7f;
                assert!(is_ascii(&v));
            }
        }
    }
}
