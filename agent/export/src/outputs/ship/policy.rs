//! The pure rules of shipping: when a batch is full or has waited long enough, how long to
//! wait before a retry. No clock and no randomness of their own: both come in as arguments,
//! so that the rules are tested on numbers.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// At most this many events in one request.
    pub max_events: usize,
    /// At most this many bytes of events in one request (a single larger event goes alone).
    pub max_bytes: usize,
    /// A batch that is not full is sent once its first event has waited this long.
    pub linger: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self { max_events: 1000, max_bytes: 5 << 20, linger: Duration::from_millis(200) }
    }
}

impl BatchLimits {
    /// Whether a line of `len` bytes still fits into a batch holding `events` events of
    /// `bytes` bytes. An empty batch takes any line, so that an oversized one is sent alone.
    pub fn fits(&self, events: usize, bytes: usize, len: usize) -> bool {
        events == 0 || (events < self.max_events && bytes.saturating_add(len) <= self.max_bytes)
    }

    /// Whether the batch goes now: it is full, or its oldest event has waited `waited`.
    pub fn due(&self, events: usize, bytes: usize, waited: Duration) -> bool {
        events > 0 && (events >= self.max_events || bytes >= self.max_bytes || waited >= self.linger)
    }
}

/// Capped exponential backoff with "equal jitter": the delay before retry `attempt`
/// (1 for the first) is half of min(cap, base * 2^(attempt-1)) plus a random part of up to
/// the other half, so that many agents retrying at once spread out but none retries at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { base: Duration::from_millis(100), cap: Duration::from_secs(30) }
    }
}

impl Backoff {
    /// `unit` is a random number in [0, 1) (clamped).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let full = self.base.saturating_mul(1u32 << exp).min(self.cap);
        let half = full / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// How a receiver answered for one event of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Stored now.
    Stored,
    /// Already stored by an earlier attempt (bulk `create` with the same `_id`: 409).
    AlreadyThere,
    /// Refused for good (malformed for the receiver, mapping conflict): counted, logged, not
    /// sent again.
    Rejected,
    /// Not stored this time (429, 5xx, not reached): sent again.
    Retry,
}

impl ItemOutcome {
    /// The outcome of an HTTP status, for a whole request or one item of a bulk answer.
    pub fn of_status(status: u16) -> Self {
        match status {
            200..=299 => Self::Stored,
            409 => Self::AlreadyThere,
            // 408 request timeout, 429 too many requests, 5xx: the receiver's trouble, not ours.
            408 | 429 | 500..=599 => Self::Retry,
            _ => Self::Rejected,
        }
    }
}

/// A small non-cryptographic generator for jitter (xorshift64*), seeded per process from
/// the standard library's random hasher keys: jitter needs spread, not secrecy.
pub struct Jitter(u64);

impl Jitter {
    pub fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        Self(h.finish() | 1)
    }

    /// A number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_fills_by_count_or_bytes_and_an_oversized_line_goes_alone() {
        let l = BatchLimits { max_events: 3, max_bytes: 100, linger: Duration::from_secs(1) };
        assert!(l.fits(0, 0, 1000), "an empty batch takes any line");
        assert!(!l.fits(1, 1000, 1));
        assert!(l.fits(2, 50, 50));
        assert!(!l.fits(2, 50, 51));
        assert!(!l.fits(3, 3, 1));
        assert!(l.due(3, 3, Duration::ZERO));
        assert!(l.due(1, 100, Duration::ZERO));
        assert!(!l.due(2, 99, Duration::from_millis(999)));
        assert!(l.due(1, 1, Duration::from_secs(1)));
        assert!(!l.due(0, 0, Duration::from_secs(9)), "nothing to send");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let b = Backoff { base: Duration::from_millis(100), cap: Duration::from_secs(2) };
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(50));
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(100));
        assert_eq!(b.delay(2, 0.0), Duration::from_millis(100));
        assert_eq!(b.delay(3, 0.5), Duration::from_millis(300));
        // 100ms * 2^5 = 3.2 s, capped at 2 s.
        assert_eq!(b.delay(6, 0.0), Duration::from_secs(1));
        assert_eq!(b.delay(6, 1.0), Duration::from_secs(2));
        assert_eq!(b.delay(u32::MAX, 1.0), Duration::from_secs(2), "no overflow");
        assert_eq!(b.delay(1, 7.0), Duration::from_millis(100), "unit clamped");
    }

    #[test]
    fn statuses_are_classified_as_the_bulk_and_hec_apis_define_them() {
        assert_eq!(ItemOutcome::of_status(201), ItemOutcome::Stored);
        assert_eq!(ItemOutcome::of_status(200), ItemOutcome::Stored);
        assert_eq!(ItemOutcome::of_status(409), ItemOutcome::AlreadyThere);
        assert_eq!(ItemOutcome::of_status(400), ItemOutcome::Rejected);
        assert_eq!(ItemOutcome::of_status(413), ItemOutcome::Rejected);
        assert_eq!(ItemOutcome::of_status(429), ItemOutcome::Retry);
        assert_eq!(ItemOutcome::of_status(503), ItemOutcome::Retry);
    }

    #[test]
    fn jitter_stays_in_the_unit_interval_and_spreads() {
        let mut j = Jitter::new();
        let xs: Vec<f64> = (0..1000).map(|_| j.unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(xs.iter().any(|x| *x < 0.1) && xs.iter().any(|x| *x > 0.9));
    }
}
