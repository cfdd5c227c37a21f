//! What the correlator is told (its caps and time limits) and what it tells back about
//! what it dropped to stay within them.

use crate::{SECOND, TABLE_CAP};

#[derive(Debug, Clone)]
pub struct Config {
    /// A request with no reply after this long is unanswered.
    pub unanswered_after_ns: i64,
    /// How long after RESPONSE_TOO_BIG (52) the same request may come over TCP.
    pub tcp_retry_window_ns: i64,
    /// A KDC clock offset beyond this is worth a warning (Kerberos fails at 300 s).
    pub clock_offset_warning_s: f64,
    /// Requests awaiting an answer.
    pub max_outstanding: usize,
    pub max_principals: usize,
    pub max_clients: usize,
    pub max_kdcs: usize,
    /// S4U2Self tickets remembered to tie S4U2Proxy requests to their user.
    pub max_tickets: usize,
    /// Distinct (finding, subject) pairs; beyond, subjects fold into "(other ...)".
    pub max_findings: usize,
    /// Devices' UPNs remembered.
    pub max_devices: usize,
    /// Packets cited per finding.
    pub evidence_per_finding: usize,
    /// Principals and clients not seen for this long are forgotten.
    pub idle_ns: i64,
    /// An S4U2Self ticket is looked for this long (tickets live 10 hours by default).
    pub ticket_ttl_ns: i64,
    /// Devices are joined to a principal seen within this window.
    pub device_window_ns: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            unanswered_after_ns: 5 * SECOND,
            tcp_retry_window_ns: 10 * SECOND,
            clock_offset_warning_s: 60.0,
            max_outstanding: TABLE_CAP,
            max_principals: 65_536,
            max_clients: TABLE_CAP,
            max_kdcs: 4_096,
            max_tickets: 65_536,
            max_findings: 1_024,
            max_devices: 65_536,
            evidence_per_finding: 16,
            idle_ns: 3_600 * SECOND,
            ticket_ttl_ns: 10 * 3_600 * SECOND,
            device_window_ns: 300 * SECOND,
        }
    }
}

/// What the correlator dropped to stay within its caps, and what it could not decide.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub events: u64,
    pub requests_evicted: u64,
    pub principals_evicted: u64,
    pub clients_evicted: u64,
    pub kdcs_evicted: u64,
    pub tickets_evicted: u64,
    pub devices_evicted: u64,
    pub findings_folded: u64,
    /// Requests still waiting when the capture ended, too recent to call unanswered.
    pub pending_at_end: u64,
    /// RESPONSE_TOO_BIG errors too close to the end of the capture to tell whether the
    /// client retried over TCP.
    pub too_big_undecided: u64,
    /// Times the capture clock went backwards (a new, older file): pending state was closed
    /// as at the end of a capture.
    pub clock_resets: u64,
    /// Requests declared unanswered whose reply came later after all.
    pub answered_late: u64,
}
