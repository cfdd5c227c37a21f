//! KerberosTime: "YYYYMMDDHHMMSSZ", UTC, whole seconds (RFC 4120 5.2.3).

use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use rasn::types::OctetString;

use crate::asn1::KerberosTime;

impl KerberosTime {
    /// A time from seconds since the Unix epoch; None outside years 0..=9999.
    pub fn from_unix(secs: i64) -> Option<Self> {
        let t = DateTime::from_timestamp(secs, 0)?;
        let year = t.year();
        if !(0..=9999).contains(&year) {
            return None;
        }
        let s = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}Z",
            year,
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        Some(Self(OctetString::from(s.into_bytes())))
    }

    /// Seconds since the Unix epoch. Accepts the strict form and, because real
    /// implementations are not all strict, a fraction before the "Z" (ignored).
    /// None when the characters are not a valid UTC time.
    pub fn unix_seconds(&self) -> Option<i64> {
        unix_seconds(&self.0)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Seconds since the Unix epoch of a KerberosTime's raw characters (see `KerberosTime::unix_seconds`).
pub fn unix_seconds(b: &[u8]) -> Option<i64> {
    if b.len() < 15 || b.last() != Some(&b'Z') {
        return None;
    }
    let frac = &b[14..b.len() - 1];
    if !frac.is_empty() && (frac[0] != b'.' || frac.len() < 2 || digits(&frac[1..]).is_none()) {
        return None;
    }
    let year = digits(&b[0..4])? as i32;
    let date = NaiveDate::from_ymd_opt(year, digits(&b[4..6])?, digits(&b[6..8])?)?;
    // Leap second 60 is legal in GeneralizedTime; chrono rejects it, so fold it onto 59.
    let sec = digits(&b[12..14])?;
    let dt = date.and_hms_opt(digits(&b[8..10])?, digits(&b[10..12])?, sec.min(59))?;
    Some(dt.and_utc().timestamp() + i64::from(sec.saturating_sub(59).min(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_whole_seconds_only() {
        let t = KerberosTime::from_unix(1_795_395_432).expect("in range");
        assert_eq!(t.as_str(), "20261123005712Z");
        assert_eq!(t.unix_seconds(), Some(1_795_395_432));
    }

    #[test]
    fn parses_epoch_and_rejects_garbage() {
        let t = |s: &str| KerberosTime(OctetString::from(s.as_bytes().to_vec())).unix_seconds();
        assert_eq!(t("19700101000000Z"), Some(0));
        assert_eq!(t("20261123005712.5Z"), Some(1_795_395_432));
        assert_eq!(t("20261323005712Z"), None);
        assert_eq!(t("2026112300571Z"), None);
        assert_eq!(t("20261123005712"), None);
        assert_eq!(t("2026112300571xZ"), None);
        assert_eq!(t(""), None);
    }
}
