//! Diagnosis: kcdscope's events in, findings out. Pairs every Kerberos request with its
//! outcome (reply, error, silence, another KDC), follows each principal's delegation chain
//! (service account login, S4U2Self, S4U2Proxy) and keeps per-KDC and per-client figures;
//! the findings name the root cause and the fix (the catalogue).
//!
//! Pure: no I/O, and time comes only from the events, so a replay gives the same findings
//! every time. Memory is bounded: every table has a cap, ages out with capture time and
//! counts what it evicts.
//!
//! Each source has its module: Kerberos in `kerberos/` (requests, replies, errors,
//! RESPONSE_TOO_BIG, silence, names), TLS in `tls.rs`, HTTP (CRLs, Exchange) in `http.rs`,
//! the gateway's events in `gateway.rs`; `join.rs` joins them per device. This file holds
//! the core: the state, the dispatch, capture time and the bounds of the tables.

use std::net::IpAddr;

use kcd_schema::{Event, EventType, Finding, SubjectKind, TicketId, Timestamp};

pub use kcd_findings::{catalogue, s4u};
mod config;
mod device;
mod findings;
mod gateway;
mod http;
mod join;
mod kerberos;
mod output;
mod state;
mod table;
mod tls;

pub use config::{Config, Stats};
pub use device::{upn_matches, DeviceCert, DeviceState, Failure};
pub use join::{device_label, DeviceStatus, Verdict};
pub use kerberos::{full_name, user_key};
pub use kcd_findings::device::Step as DeviceStep;
pub use state::{
    Client, Kdc, OffsetStats, Outcome, Percentiles, PrincipalState, Step, StepKind, STEPS_KEPT,
};

use catalogue::Rule;
use findings::{Agg, FindingSet};
use kerberos::{
    ClientNote, Delegations, Impersonation, OutReq, ReqKey, TicketLink, TooBig, CLIENT_NOTES,
    IMPERSONATION_WINDOW_NS,
};
use state::{Ev, FlowTag};

pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A principal or SPN name, shared (interned) rather than copied for every message.
pub type Name = std::sync::Arc<str>;

const SECOND: i64 = 1_000_000_000;

/// The cap of the tables a flood churns (requests in flight, clients): half the capacity
/// of a 131,072-bucket hash table. hashbrown reclaims the slots of removed entries by
/// rehashing in place only while at most half its capacity is in use; a cap of 65,536
/// made the table double to 262,144 buckets under churn (about 11 MB more per table).
pub const TABLE_CAP: usize = 57_344;

pub struct Correlator {
    cfg: Config,
    now: Option<Timestamp>,
    span: Option<(Timestamp, Timestamp)>,
    files: Vec<Box<str>>,
    last_file: Option<(usize, u32)>,
    /// Boxed: at the cap (65,536) the map has 131,072 buckets, and a bucket the size of a
    /// request would cost 35 MB; a pointer costs 5 MB plus the requests themselves.
    outstanding: Map<ReqKey, Box<OutReq>>,
    by_frame: Map<(u32, u64), ReqKey>,
    too_big: Map<ReqKey, TooBig>,
    /// (client, KDC) pairs with a 52 waiting, and how many.
    too_big_pairs: Map<(IpAddr, IpAddr), u32>,
    /// (client, KDC) pairs whose TCP connection attempts went unanswered while a 52 waited.
    tcp_silent: Map<(IpAddr, IpAddr), (Timestamp, Ev)>,
    kdcs: table::Table<(IpAddr, u16), Kdc>,
    /// The KDC of the last message: most messages in a row talk to the same one.
    last_kdc: Option<usize>,
    clients: Map<state::Ip, state::ClientStats>,
    /// Client counters not yet applied: applied a few hundred at a time, the table lookups
    /// (tens of thousands of clients: cache misses) overlap instead of waiting one by one.
    client_notes: Vec<(state::Ip, Timestamp, ClientNote)>,
    next_kdc_id: u32,
    principals: Map<Name, PrincipalState>,
    tickets: Map<TicketId, TicketLink>,
    delegations: Map<Name, Delegations>,
    /// S4U2Self tickets not yet followed by S4U2Proxy, per (client host, service account).
    impersonating: Map<(IpAddr, Name), Impersonation>,
    devices: device::Devices,
    /// CRL URLs whose last fetch went wrong: how a device's unknown_ca alert is explained.
    crl_trouble: lru::LruCache<String, (&'static Rule, Timestamp), foldhash::fast::RandomState>,
    /// Authenticator ids of Kerberos tokens a server accepted, and the frame: the same
    /// token refused later is a replay, not a key or SPN problem.
    accepted_tokens: lru::LruCache<String, u64, foldhash::fast::RandomState>,
    findings: FindingSet,
    /// Findings of KDCs evicted from the table, kept.
    retired: Vec<Finding>,
    stats: Stats,
    next_sweep: Option<Timestamp>,
    /// Names by a hash of their parts: a message's names are looked up without building
    /// the string (each hit is checked against the parts).
    name_cache: Map<u64, Name>,
    name_hasher: foldhash::fast::RandomState,
    empty: Name,
    scratch: String,
    ip_buf: String,
    next_expiry: Option<Timestamp>,
    /// Requests declared unanswered, by request frame, in the order declared: a reply that
    /// comes later still (slow, not silent) takes the verdict back. Bounded by count and
    /// by the decoder's own pairing horizon.
    late: Map<(u32, u64), (ReqKey, Box<OutReq>)>,
    late_order: std::collections::VecDeque<(Timestamp, (u32, u64))>,
    /// The file of the previous event: time going back within one file is a glitch of the
    /// capture clock, not an older capture.
    current_file: Option<u32>,
}


impl Correlator {
    pub fn new(cfg: Config) -> Self {
        let findings = FindingSet::new(cfg.max_findings, cfg.evidence_per_finding);
        let max_devices = cfg.max_devices;
        Correlator {
            cfg,
            now: None,
            span: None,
            files: Vec::new(),
            last_file: None,
            outstanding: Map::default(),
            by_frame: Map::default(),
            too_big: Map::default(),
            too_big_pairs: Map::default(),
            tcp_silent: Map::default(),
            kdcs: table::Table::default(),
            last_kdc: None,
            clients: Map::default(),
            client_notes: Vec::with_capacity(CLIENT_NOTES),
            next_kdc_id: 0,
            principals: Map::default(),
            tickets: Map::default(),
            delegations: Map::default(),
            impersonating: Map::default(),
            devices: device::Devices::new(max_devices),
            crl_trouble: lru::LruCache::unbounded_with_hasher(Default::default()),
            accepted_tokens: lru::LruCache::unbounded_with_hasher(Default::default()),
            findings,
            retired: Vec::new(),
            stats: Stats::default(),
            next_sweep: None,
            name_cache: Map::default(),
            name_hasher: Default::default(),
            empty: Name::from(""),
            scratch: String::new(),
            ip_buf: String::new(),
            next_expiry: None,
            late: Map::default(),
            late_order: std::collections::VecDeque::new(),
            current_file: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn stats(&self) -> Stats {
        Stats { findings_folded: self.findings.folded, devices_evicted: self.devices.evicted, ..self.stats }
    }

    /// First and last capture time seen.
    pub fn span(&self) -> Option<(Timestamp, Timestamp)> {
        self.span
    }

    /// Feeds one event, in capture order.
    pub fn event(&mut self, e: &Event<'_>) {
        self.stats.events += 1;
        // The gateway's events come interleaved from a file of their own: not a new
        // capture whose older times would close what the capture has pending.
        if matches!(e.event_type, EventType::Gateway | EventType::Kcd) {
            self.advance(e.timestamp, false);
        } else {
            let file = self.file_id(e.pcap_file.as_deref());
            let new_file = self.current_file.is_some_and(|f| f != file);
            self.current_file = Some(file);
            self.advance(e.timestamp, new_file);
        }
        match e.event_type {
            EventType::Krb5 => {
                if let Some(k) = &e.krb5 {
                    if k.msg_type.is_kdc_request() {
                        self.request(e, k);
                    } else if k.msg_type.is_kdc_reply() {
                        self.reply(e, k);
                    }
                }
            }
            EventType::Anomaly => {
                if e.anomaly.as_ref().is_some_and(|a| a.kind == "tcp_no_answer") {
                    self.tcp_no_answer(e);
                }
            }
            // Request events are `gateway` (earlier gateways wrote them as `kcd`).
            EventType::Gateway | EventType::Kcd => self.gateway_request(e),
            EventType::Tls => self.tls_handshake(e),
            EventType::Http => self.http_transaction(e),
            EventType::Finding => {}
        }
    }

    /// The capture is over: what still waits is decided as far as it can be.
    pub fn finish(&mut self) {
        self.close_pending();
        self.apply_client_notes();
    }

    // ------------------------------------------------------------------ time

    fn advance(&mut self, ts: Timestamp, new_file: bool) {
        self.span = Some(match self.span {
            None => (ts, ts),
            Some((a, b)) => (a.min(ts), b.max(ts)),
        });
        match self.now {
            Some(now) if new_file && ts.0 < now.0 - SECOND => {
                // An older capture follows a newer one: what waited in the first cannot be
                // answered in the second.
                self.stats.clock_resets += 1;
                self.close_pending();
                self.now = Some(ts);
            }
            Some(now) if ts <= now => {}
            _ => self.now = Some(ts),
        }
        let now = self.now.unwrap_or(ts);
        self.expire(now);
        if self.next_sweep.is_none_or(|n| now >= n) {
            self.sweep(now);
            self.next_sweep = Some(Timestamp(now.0 + 60 * SECOND));
        }
    }

    /// Requests and RESPONSE_TOO_BIGs past their time, decided a few times a second of
    /// capture time (a scan of what is in flight, which is little).
    fn expire(&mut self, now: Timestamp) {
        if self.next_expiry.is_some_and(|n| now < n) {
            return;
        }
        let tick = (self.cfg.unanswered_after_ns.min(self.cfg.tcp_retry_window_ns) / 5).clamp(1_000_000, SECOND);
        self.next_expiry = Some(Timestamp(now.0 + tick));
        self.expire_due(now, false);
    }


    /// Closes everything that waits, as at the end of a capture.
    fn close_pending(&mut self) {
        let Some(now) = self.now else { return };
        self.expire_due(now, true);
        self.late.clear();
        self.late_order.clear();
        self.outstanding.clear();
        self.by_frame.clear();
        self.too_big.clear();
        self.too_big_pairs.clear();
        self.tcp_silent.clear();
        self.next_expiry = None;
    }

    /// Forgets principals, clients and tickets idle for long, by capture time.
    fn sweep(&mut self, now: Timestamp) {
        let idle = self.cfg.idle_ns;
        let before = self.principals.len();
        self.principals.retain(|_, p| now.0 - p.last_seen.0 <= idle);
        self.stats.principals_evicted += (before - self.principals.len()) as u64;
        self.apply_client_notes();
        let before = self.clients.len();
        self.clients.retain(|_, c| now.0 - c.last_seen.0 <= idle);
        self.stats.clients_evicted += (before - self.clients.len()) as u64;
        self.impersonating.retain(|_, i| now.0 - i.at.0 <= IMPERSONATION_WINDOW_NS);
        let ttl = self.cfg.ticket_ttl_ns;
        let before = self.tickets.len();
        self.tickets.retain(|_, t| now.0 - t.at.0 <= ttl);
        self.stats.tickets_evicted += (before - self.tickets.len()) as u64;
    }

    // ------------------------------------------------------------------ helpers

    fn file_id(&mut self, name: Option<&str>) -> u32 {
        let name = name.unwrap_or("");
        if let Some((i, id)) = self.last_file {
            // Twice per event: live capture has no file name, and libc's memcmp called for
            // zero bytes was 16% of the agent's time under a flood (perf).
            if self.files.get(i).is_some_and(|f| f.len() == name.len() && (name.is_empty() || &**f == name)) {
                return id;
            }
        }
        let i = match self.files.iter().position(|f| &**f == name) {
            Some(i) => i,
            None => {
                self.files.push(name.into());
                self.files.len() - 1
            }
        };
        let id = u32::try_from(i).unwrap_or(u32::MAX);
        self.last_file = Some((i, id));
        id
    }


    fn ev(&mut self, e: &Event<'_>) -> Ev {
        Ev {
            file: self.file_id(e.pcap_file.as_deref()),
            frame: e.frame,
            flow: e.flow_id.as_deref().and_then(FlowTag::new),
        }
    }


    fn principal(&mut self, name: &str, at: Timestamp) -> Option<&mut PrincipalState> {
        let key = user_key(name);
        let name_given = name;
        let name: &str = &key;
        if !self.principals.contains_key(name) {
            if self.principals.len() >= self.cfg.max_principals {
                for v in oldest(self.principals.iter(), |p| p.last_seen, self.cfg.max_principals / 8) {
                    self.principals.remove(&v);
                    self.stats.principals_evicted += 1;
                }
            }
            self.principals.insert(Name::from(name), PrincipalState::new(Name::from(name_given), at));
        }
        let p = self.principals.get_mut(name)?;
        p.last_seen = p.last_seen.max(at);
        p.asked_as(name_given);
        Some(p)
    }

    fn record_step(&mut self, principal: &str, step: Step) {
        if let Some(p) = self.principal(principal, step.at) {
            p.push(step);
        }
    }


    fn finding(
        &mut self,
        rule: &'static Rule,
        kind: SubjectKind,
        name: &str,
        at: Timestamp,
        ev: impl IntoIterator<Item = Ev>,
    ) -> &mut Agg {
        self.findings.record(rule, kind, name, at, ev)
    }
}


fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The `n` entries seen least recently (at least one), ties broken by key so that the
/// choice does not depend on hash order.
fn oldest<'m, K: Clone + Ord + 'm, V: 'm>(
    entries: impl IntoIterator<Item = (&'m K, &'m V)>,
    seen: impl Fn(&V) -> Timestamp,
    n: usize,
) -> Vec<K> {
    let mut v: Vec<(Timestamp, &K)> = entries.into_iter().map(|(k, x)| (seen(x), k)).collect();
    // At least a quarter of a full table: hashbrown reuses the slots of removed entries
    // (rehashing in place) only when at most half its capacity is in use, and a table
    // cut by an eighth then refilled under a flood of new keys doubled its buckets
    // instead (the client table reached 32 MB for 65,536 clients).
    let n = n.max(v.len() / 4 + 1);
    let n = n.clamp(1, v.len().max(1));
    if v.len() > n {
        v.select_nth_unstable(n - 1);
        v.truncate(n);
    }
    // In time order: what is done with them (evidence kept, verdicts) must not depend
    // on the hash order they were found in.
    v.sort_unstable();
    v.into_iter().map(|(_, k)| k.clone()).collect()
}
