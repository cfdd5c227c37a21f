//! Capture time: nanoseconds since the Unix epoch, written as RFC 3339 UTC with nine
//! fractional digits ("2026-11-22T21:14:15.000123456Z"), so that the same capture always
//! gives the same text.

use chrono::{DateTime, Datelike, Timelike};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const fn from_parts(secs: i64, nanos: u32) -> Self {
        Self(
            secs.saturating_mul(1_000_000_000)
                .saturating_add(nanos as i64),
        )
    }
    pub const fn secs(self) -> i64 {
        self.0.div_euclid(1_000_000_000)
    }
    pub const fn subsec_nanos(self) -> u32 {
        self.0.rem_euclid(1_000_000_000) as u32
    }
    /// Signed difference in microseconds.
    pub const fn micros_since(self, earlier: Timestamp) -> i64 {
        (self.0 - earlier.0) / 1000
    }

    /// Appends the RFC 3339 form; fast enough to call for every event: events come in
    /// bursts within one second, so the date and time of day are kept from the last call.
    pub fn write_rfc3339_bytes(self, out: &mut Vec<u8>) {
        thread_local! {
            static LAST: std::cell::Cell<Option<(i64, [u8; 20])>> = const { std::cell::Cell::new(None) };
        }
        let secs = self.secs();
        let prefix = match LAST.get() {
            Some((s, p)) if s == secs => p,
            _ => {
                let Some(t) = DateTime::from_timestamp(secs, 0) else {
                    out.extend_from_slice(b"invalid-time");
                    return;
                };
                let mut buf = *b"0000-00-00T00:00:00.";
                let mut put = |at: usize, width: usize, mut v: u32| {
                    for i in (0..width).rev() {
                        buf[at + i] = b'0' + (v % 10) as u8;
                        v /= 10;
                    }
                };
                put(0, 4, t.year().clamp(0, 9999) as u32);
                put(5, 2, t.month());
                put(8, 2, t.day());
                put(11, 2, t.hour());
                put(14, 2, t.minute());
                put(17, 2, t.second());
                LAST.set(Some((secs, buf)));
                buf
            }
        };
        let mut frac = *b"000000000Z";
        let mut v = self.subsec_nanos();
        for d in frac[..9].iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        out.extend_from_slice(&prefix);
        out.extend_from_slice(&frac);
    }

    pub fn write_rfc3339(self, out: &mut String) {
        let mut b = Vec::with_capacity(30);
        self.write_rfc3339_bytes(&mut b);
        out.push_str(&String::from_utf8_lossy(&b));
    }

    pub fn to_rfc3339(self) -> String {
        let mut s = String::with_capacity(30);
        self.write_rfc3339(&mut s);
        s
    }

    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let t = DateTime::parse_from_rfc3339(s).ok()?;
        Some(Self::from_parts(t.timestamp(), t.timestamp_subsec_nanos()))
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = String::with_capacity(30);
        self.write_rfc3339(&mut buf);
        s.serialize_str(&buf)
    }
}

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Timestamp")
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "RFC 3339 UTC time with nine fractional digits.",
            "type": "string",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{9}Z$"
        })
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse_rfc3339(&s)
            .ok_or_else(|| de::Error::custom(format!("not an RFC 3339 time: {s}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_back() {
        // 2026-11-22T21:14:15Z is 1795382055 (date -u -d 2026-11-22T21:14:15Z +%s)
        let t = Timestamp::from_parts(1_795_382_055, 123_456_789);
        assert_eq!(t.to_rfc3339(), "2026-11-22T21:14:15.123456789Z");
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-22T21:14:15.123456789Z"),
            Some(t)
        );
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            Timestamp::from_parts(-1, 0).to_rfc3339(),
            "1969-12-31T23:59:59.000000000Z"
        );
    }
}
