//! Kerberos: requests paired with their outcome (reply, error, silence, another KDC),
//! the delegation chain (S4U2Self, S4U2Proxy) and the KDC and client tables.

use std::net::IpAddr;

use kcd_schema::{Timestamp, Transport};

use crate::state::{self, Ev, Kdc, StepKind};
use crate::{oldest, Correlator, Name, SECOND};

mod errors;
mod names;
mod reply;
mod request;
mod too_big;
mod unanswered;

pub use names::{full_name, user_key};

#[derive(Debug, Clone, Copy)]
pub(crate) enum ClientNote {
    Request { kind: ReqKind, transport: Transport, kdc_id: u32 },
    Error,
}

pub(crate) const CLIENT_NOTES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ReqKind {
    As,
    Tgs,
    S4u2Self,
    S4u2Proxy,
}

impl ReqKind {
    fn step(self) -> StepKind {
        match self {
            ReqKind::As => StepKind::As,
            ReqKind::Tgs => StepKind::Tgs,
            ReqKind::S4u2Self => StepKind::S4u2Self,
            ReqKind::S4u2Proxy => StepKind::S4u2Proxy,
        }
    }
}

/// A request as the client sends it, whatever the KDC or transport: retransmissions,
/// fail-over to another KDC and the TCP retry after error 52 all carry the same nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ReqKey {
    client: IpAddr,
    msg: i32,
    nonce: i64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt {
    kdc: IpAddr,
    port: u16,
    transport: Transport,
    at: Timestamp,
    ev: Ev,
}

#[derive(Debug, Clone)]
pub(crate) struct OutReq {
    kind: ReqKind,
    principal: Option<Name>,
    via: Option<Name>,
    target: Name,
    first: Timestamp,
    // One inline: a request sent once is the rule, and a flood holds 65,536 of them.
    attempts: smallvec::SmallVec<[Attempt; 1]>,
    /// The request came over TCP after a 52 on UDP.
    after_too_big: bool,
}

pub(crate) const MAX_ATTEMPTS: usize = 8;

/// A RESPONSE_TOO_BIG waiting for the client's move.
#[derive(Debug)]
pub(crate) struct TooBig {
    client: IpAddr,
    kdc: IpAddr,
    kdc_port: u16,
    requested: Timestamp,
    at: Timestamp,
    ev: Ev,
    request: OutReqSummary,
}

#[derive(Debug, Clone)]
pub(crate) struct OutReqSummary {
    kind: ReqKind,
    principal: Option<Name>,
    via: Option<Name>,
    target: Name,
}

/// Whose S4U2Self ticket this is: ties S4U2Proxy (which carries it) to the user.
#[derive(Debug, Clone)]
pub(crate) struct TicketLink {
    user: Name,
    via: Name,
    pub(crate) at: Timestamp,
}

/// Per service account: what its S4U2Proxy requests obtained.
#[derive(Debug, Default)]
pub(crate) struct Delegations {
    ok: smallvec::SmallVec<[Delegated; 2]>,
}

/// (target, a user it worked for, when)
pub(crate) type Delegated = (Name, Name, Timestamp);

#[derive(Debug, Clone)]
pub(crate) struct Impersonation {
    user: Name,
    pub(crate) at: Timestamp,
    ev: Ev,
}

/// How soon after S4U2Self the service ticket is expected (S4U2Proxy follows at once).
pub(crate) const IMPERSONATION_WINDOW_NS: i64 = 10 * SECOND;
/// S4U2Self tickets watched at once for a service ticket that skips S4U2Proxy.
pub(crate) const MAX_IMPERSONATIONS: usize = 4096;

pub(crate) const DELEGATIONS_KEPT: usize = 16;

impl Correlator {
    /// Decides what waited long enough; at the end of a capture (`end`), also counts what
    /// is too recent to decide.
    pub(crate) fn expire_due(&mut self, now: Timestamp, end: bool) {
        let limit = now.0 - self.cfg.unanswered_after_ns;
        let mut due: Vec<(Timestamp, ReqKey)> = self
            .outstanding
            .iter()
            .filter(|(_, o)| end || o.first.0 <= limit)
            .map(|(k, o)| (o.first, *k))
            .collect();
        // Hash order must not decide which explanation a finding keeps.
        due.sort_unstable();
        for (first, key) in due {
            if let Some(o) = self.take(&key) {
                if first.0 <= limit {
                    self.unanswered(key, o);
                } else {
                    self.stats.pending_at_end += 1;
                }
            }
        }
        let limit = now.0 - self.cfg.tcp_retry_window_ns;
        let mut due: Vec<(Timestamp, ReqKey)> = self
            .too_big
            .iter()
            .filter(|(_, t)| end || t.at.0 <= limit)
            .map(|(k, t)| (t.at, *k))
            .collect();
        due.sort_unstable();
        for (at, key) in due {
            if let Some(t) = self.take_too_big(&key) {
                let silent = self.tcp_silent.contains_key(&(t.client, t.kdc));
                if silent || at.0 <= limit {
                    self.too_big_unretried(t);
                } else {
                    self.stats.too_big_undecided += 1;
                }
            }
        }
    }

    /// An address as text, in a reused buffer (return it with `give_back`).
    pub(crate) fn ip_text(&mut self, ip: IpAddr) -> String {
        use std::fmt::Write as _;
        let mut b = std::mem::take(&mut self.ip_buf);
        b.clear();
        let _ = write!(b, "{ip}");
        b
    }

    pub(crate) fn give_back(&mut self, b: String) {
        self.ip_buf = b;
    }

    pub(crate) fn kdc(&mut self, addr: IpAddr, port: u16, at: Timestamp) -> &mut Kdc {
        let key = (addr, port);
        let mut id = u32::MAX; // only used if the entry is new
        let i = match self.last_kdc.filter(|&i| self.kdcs.key_at(i) == Some(&key)) {
            Some(i) => i,
            None => {
                if !self.kdcs.contains(&key) {
                    if self.kdcs.len() >= self.cfg.max_kdcs {
                        let victims = oldest(self.kdcs.iter(), |k| k.last_seen, self.cfg.max_kdcs / 8);
                        for v in victims {
                            if let Some(k) = self.kdcs.remove(&v) {
                                let mut out = Vec::new();
                                self.kdc_findings(&k, &mut out);
                                self.retired.extend(out);
                                self.stats.kdcs_evicted += 1;
                            }
                        }
                    }
                    id = self.next_kdc_id;
                    self.next_kdc_id = self.next_kdc_id.saturating_add(1);
                }
                self.kdcs.position_or_insert_with(key, || Kdc::new(addr, port, id, at))
            }
        };
        self.last_kdc = Some(i);
        let k = self.kdcs.at_or_insert_with(i, key, || Kdc::new(addr, port, id, at));
        k.last_seen = k.last_seen.max(at);
        k
    }

    pub(crate) fn note_client(&mut self, addr: IpAddr, at: Timestamp, note: ClientNote) {
        self.client_notes.push((state::Ip::from(addr), at, note));
        if self.client_notes.len() >= CLIENT_NOTES {
            self.apply_client_notes();
        }
    }

    pub(crate) fn apply_client_notes(&mut self) {
        let mut notes = std::mem::take(&mut self.client_notes);
        for &(key, at, note) in &notes {
            if self.clients.len() >= self.cfg.max_clients && !self.clients.contains_key(&key) {
                for v in oldest(self.clients.iter(), |c| c.last_seen, self.cfg.max_clients / 8) {
                    self.clients.remove(&v);
                    self.stats.clients_evicted += 1;
                }
            }
            let c = self.clients.entry(key).or_insert_with(|| state::ClientStats::new(at));
            apply_client_note(c, at, note);
        }
        notes.clear();
        self.client_notes = notes;
    }

    pub(crate) fn take(&mut self, key: &ReqKey) -> Option<OutReq> {
        let o = *self.outstanding.remove(key)?;
        for a in &o.attempts {
            self.by_frame.remove(&(a.ev.file, a.ev.frame));
        }
        Some(o)
    }

    pub(crate) fn take_too_big(&mut self, key: &ReqKey) -> Option<TooBig> {
        let t = self.too_big.remove(key)?;
        let pair = (t.client, t.kdc);
        if let Some(n) = self.too_big_pairs.get_mut(&pair) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.too_big_pairs.remove(&pair);
            }
        }
        Some(t)
    }
}

pub(crate) struct ErrCtx<'c> {
    kind: ReqKind,
    client: IpAddr,
    who: Option<&'c str>,
    via: Option<&'c str>,
    target: &'c str,
    cname: Option<&'c str>,
    kdc: Name,
    at: Timestamp,
    ev: Ev,
    req_ev: Option<Ev>,
}

pub(crate) fn describe_request(kind: ReqKind, principal: Option<&str>, target: &str) -> String {
    let t = if target.is_empty() { "a service" } else { target };
    match (kind, principal) {
        (ReqKind::As, Some(p)) => format!("the login (AS-REQ) of {p}"),
        (ReqKind::As, None) => "a login (AS-REQ)".into(),
        (ReqKind::S4u2Self, Some(p)) => format!("S4U2Self for {p}"),
        (ReqKind::S4u2Self, None) => "an S4U2Self request".into(),
        (ReqKind::S4u2Proxy, Some(p)) => format!("S4U2Proxy for {p} to {t}"),
        (ReqKind::S4u2Proxy, None) => format!("S4U2Proxy to {t}"),
        (ReqKind::Tgs, Some(p)) => format!("the ticket request of {p} for {t}"),
        (ReqKind::Tgs, None) => format!("a ticket request for {t}"),
    }
}

/// "its clock is 600 s (10 min) behind this host's".
pub(crate) fn offset_words(s: f64) -> String {
    let a = s.abs();
    let mag = if a >= 120.0 { format!("{a:.0} s ({:.1} min)", a / 60.0) } else { format!("{a:.1} s") };
    format!("its clock is {mag} {} this host's", if s < 0.0 { "behind" } else { "ahead of" })
}

pub(crate) fn apply_client_note(c: &mut state::ClientStats, at: Timestamp, note: ClientNote) {
    c.last_seen = c.last_seen.max(at);
    match note {
        ClientNote::Request { kind, transport, kdc_id } => {
            match kind {
                ReqKind::As => c.as_req = c.as_req.saturating_add(1),
                ReqKind::Tgs => c.tgs_req = c.tgs_req.saturating_add(1),
                ReqKind::S4u2Self => c.s4u2self = c.s4u2self.saturating_add(1),
                ReqKind::S4u2Proxy => c.s4u2proxy = c.s4u2proxy.saturating_add(1),
            }
            match transport {
                Transport::Udp => c.udp = c.udp.saturating_add(1),
                Transport::Tcp => c.tcp = c.tcp.saturating_add(1),
            }
            if kdc_id < 64 {
                c.kdcs |= 1 << kdc_id;
            }
        }
        ClientNote::Error => c.errors = c.errors.saturating_add(1),
    }
}
