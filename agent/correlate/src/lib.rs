//! Diagnosis: kcdscope's events in, findings out. Pairs every Kerberos request with its
//! outcome (reply, error, silence, another KDC), follows each principal's delegation chain
//! (service account login, S4U2Self, S4U2Proxy) and keeps per-KDC and per-client figures;
//! the findings name the root cause and the fix (the catalogue).
//!
//! Pure: no I/O, and time comes only from the events, so a replay gives the same findings
//! every time. Memory is bounded: every table has a cap, ages out with capture time and
//! counts what it evicts.

use std::net::IpAddr;

use kcd_schema::{
    kdc_options, ErrorCode, Event, EventType, Finding, Krb5, MessageType, NameType, Principal,
    SubjectKind, TicketId, Timestamp, Transport,
};

pub use kcd_findings::{catalogue, s4u};
mod config;
mod device;
mod errors;
mod findings;
mod join;
mod output;
mod state;
mod table;
mod too_big;

pub use config::{Config, Stats};
pub use device::{upn_matches, DeviceCert, DeviceState, Failure};
pub use join::{device_label, DeviceStatus, Verdict};
pub use kcd_findings::device::Step as DeviceStep;
pub use state::{
    Client, Kdc, OffsetStats, Outcome, Percentiles, PrincipalState, Step, StepKind, STEPS_KEPT,
};

use catalogue::Rule;
use findings::{Agg, FindingSet};
use state::{kdc_name, Ev, FlowTag};

pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A principal or SPN name, shared (interned) rather than copied for every message.
pub type Name = std::sync::Arc<str>;

/// One key per user however the name was written: Active Directory compares account names
/// without regard to case, and a UPN asked for as an enterprise name ("alice@lab.test",
/// or "alice@lab.test@LAB.TEST" with its realm) is the account the KDC names
/// "alice@LAB.TEST" when the suffix is the realm's.
pub fn user_key(name: &str) -> std::borrow::Cow<'_, str> {
    // An enterprise name with the realm appended: the realm adds nothing.
    let n = match name.rsplit_once('@') {
        Some((inner, _realm)) if inner.contains('@') && !inner.contains('/') => inner,
        _ => name,
    };
    if n.chars().any(char::is_uppercase) {
        std::borrow::Cow::Owned(n.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(n)
    }
}

const SECOND: i64 = 1_000_000_000;

/// The cap of the tables a flood churns (requests in flight, clients): half the capacity
/// of a 131,072-bucket hash table. hashbrown reclaims the slots of removed entries by
/// rehashing in place only while at most half its capacity is in use; a cap of 65,536
/// made the table double to 262,144 buckets under churn (about 11 MB more per table).
pub const TABLE_CAP: usize = 57_344;

#[derive(Debug, Clone, Copy)]
enum ClientNote {
    Request { kind: ReqKind, transport: Transport, kdc_id: u32 },
    Error,
}

const CLIENT_NOTES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ReqKind {
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
struct ReqKey {
    client: IpAddr,
    msg: i32,
    nonce: i64,
}

#[derive(Debug, Clone, Copy)]
struct Attempt {
    kdc: IpAddr,
    port: u16,
    transport: Transport,
    at: Timestamp,
    ev: Ev,
}

#[derive(Debug, Clone)]
struct OutReq {
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

const MAX_ATTEMPTS: usize = 8;

/// A RESPONSE_TOO_BIG waiting for the client's move.
#[derive(Debug)]
struct TooBig {
    client: IpAddr,
    kdc: IpAddr,
    kdc_port: u16,
    requested: Timestamp,
    at: Timestamp,
    ev: Ev,
    request: OutReqSummary,
}

#[derive(Debug, Clone)]
struct OutReqSummary {
    kind: ReqKind,
    principal: Option<Name>,
    via: Option<Name>,
    target: Name,
}

/// Whose S4U2Self ticket this is: ties S4U2Proxy (which carries it) to the user.
#[derive(Debug, Clone)]
struct TicketLink {
    user: Name,
    via: Name,
    at: Timestamp,
}

/// Per service account: what its S4U2Proxy requests obtained.
#[derive(Debug, Default)]
struct Delegations {
    ok: smallvec::SmallVec<[Delegated; 2]>,
}

/// (target, a user it worked for, when)
type Delegated = (Name, Name, Timestamp);

#[derive(Debug, Clone)]
struct Impersonation {
    user: Name,
    at: Timestamp,
    ev: Ev,
}

/// How soon after S4U2Self the service ticket is expected (S4U2Proxy follows at once).
const IMPERSONATION_WINDOW_NS: i64 = 10 * SECOND;
/// S4U2Self tickets watched at once for a service ticket that skips S4U2Proxy.
const MAX_IMPERSONATIONS: usize = 4096;

const DELEGATIONS_KEPT: usize = 16;

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

/// Requests kept for a late reply: a reply later than --unanswered-after is rare, a flood
/// of unanswered requests is not.
const LATE_KEPT: usize = 4096;

/// How long after being declared unanswered a request may still be answered (the
/// decoder pairs replies for 30 s).
const LATE_WINDOW_NS: i64 = 60 * SECOND;

/// Distinct names kept for sharing; past it the set starts over (names in use live on).
const MAX_INTERNED: usize = 1 << 16;

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

    /// A device (EAS DeviceId, certificate fingerprint, address) presented `upn` at `at`:
    /// the gateway's and TLS events call this; principals then list their devices.
    pub fn observe_device(&mut self, device: &str, upn: &str, at: Timestamp) {
        let o = device::Observation { device_id: Some(device), upn: Some(upn), ..Default::default() };
        self.devices.observe(o, at, Ev { file: 0, frame: 0, flow: None });
    }

    /// Devices seen with a UPN naming this principal around the time it was active.
    pub fn devices_of(&self, principal: &PrincipalState) -> Vec<&DeviceState> {
        self.devices.for_principal(
            &principal.name,
            principal.first_seen,
            principal.last_seen,
            self.cfg.device_window_ns,
        )
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

    /// Decides what waited long enough; at the end of a capture (`end`), also counts what
    /// is too recent to decide.
    fn expire_due(&mut self, now: Timestamp, end: bool) {
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

    /// The principal's full name ("alice@R", "HTTP/host@R", "alice@upn.example"), shared:
    /// once a name has been seen, finding it again builds no string.
    fn name(&mut self, p: &Principal<'_>, realm: Option<&str>) -> Name {
        let realm = realm.filter(|r| !r.is_empty() && !is_enterprise(p));
        let h = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = self.name_hasher.build_hasher();
            for part in &p.parts {
                h.write(part.as_bytes());
                h.write_u8(0xff);
            }
            if let Some(r) = realm {
                h.write(r.as_bytes());
            }
            h.finish()
        };
        if let Some(n) = self.name_cache.get(&h) {
            if name_is(n, p, realm) {
                return n.clone();
            }
        }
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        write_full_name(&mut buf, p, realm);
        let n: Name = buf.as_str().into();
        self.scratch = buf;
        if self.name_cache.len() >= MAX_INTERNED {
            self.name_cache.clear();
        }
        self.name_cache.insert(h, n.clone());
        n
    }

    /// An address as text, in a reused buffer (return it with `give_back`).
    fn ip_text(&mut self, ip: IpAddr) -> String {
        use std::fmt::Write as _;
        let mut b = std::mem::take(&mut self.ip_buf);
        b.clear();
        let _ = write!(b, "{ip}");
        b
    }

    fn give_back(&mut self, b: String) {
        self.ip_buf = b;
    }

    fn ev(&mut self, e: &Event<'_>) -> Ev {
        Ev {
            file: self.file_id(e.pcap_file.as_deref()),
            frame: e.frame,
            flow: e.flow_id.as_deref().and_then(FlowTag::new),
        }
    }

    fn kdc(&mut self, addr: IpAddr, port: u16, at: Timestamp) -> &mut Kdc {
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

    fn note_client(&mut self, addr: IpAddr, at: Timestamp, note: ClientNote) {
        self.client_notes.push((state::Ip::from(addr), at, note));
        if self.client_notes.len() >= CLIENT_NOTES {
            self.apply_client_notes();
        }
    }

    fn apply_client_notes(&mut self) {
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

    fn take(&mut self, key: &ReqKey) -> Option<OutReq> {
        let o = *self.outstanding.remove(key)?;
        for a in &o.attempts {
            self.by_frame.remove(&(a.ev.file, a.ev.frame));
        }
        Some(o)
    }

    fn take_too_big(&mut self, key: &ReqKey) -> Option<TooBig> {
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

    // ------------------------------------------------------------------ requests

    fn request(&mut self, e: &Event<'_>, k: &Krb5<'_>) {
        let (Some(client), Some(kdc)) = (e.src_ip, e.dest_ip) else { return };
        let port = e.dest_port.unwrap_or(88);
        let transport = e.proto.unwrap_or(Transport::Udp);
        let at = e.timestamp;
        let ev = self.ev(e);
        let kind = request_kind(k);
        let kdc_id = {
            let s = self.kdc(kdc, port, at);
            s.requests += 1;
            match transport {
                Transport::Udp => s.requests_udp += 1,
                Transport::Tcp => s.requests_tcp += 1,
            }
            s.realm(k.realm.as_deref());
            s.id
        };
        self.note_client(client, at, ClientNote::Request { kind, transport, kdc_id });
        let key = ReqKey {
            client,
            msg: k.msg_type.0,
            // Without a nonce (a malformed request) it stands alone.
            nonce: k.nonce.unwrap_or(i64::MIN + (e.frame as i64 & 0x7fff_ffff_ffff)),
        };
        let mut after_too_big = false;
        if transport == Transport::Tcp {
            if let Some(t) = self.take_too_big(&key) {
                self.too_big_retried(t, at, kdc);
                after_too_big = true;
            }
        }
        let attempt = Attempt { kdc, port, transport, at, ev };
        if let Some(o) = self.outstanding.get_mut(&key) {
            o.after_too_big |= after_too_big;
            if o.attempts.len() < MAX_ATTEMPTS {
                o.attempts.push(attempt);
            } else if let Some(last) = o.attempts.last_mut() {
                // A retransmission storm: the latest attempt takes the last place, and the one
                // it replaces leaves the frame index, which holds only what `take` removes
                // (it grew by one entry per repeated packet, without bound, before).
                let old = std::mem::replace(last, attempt);
                self.by_frame.remove(&(old.ev.file, old.ev.frame));
            }
            self.by_frame.insert((ev.file, ev.frame), key);
            return;
        }
        let (principal, via) = self.request_parties(kind, k);
        if kind == ReqKind::S4u2Proxy {
            if let Some(v) = &via {
                self.impersonating.remove(&(client, v.clone()));
            }
        }
        let target = match &k.sname {
            Some(sn) => self.name(sn, k.realm.as_deref()),
            None => self.empty.clone(),
        };
        if self.outstanding.len() >= self.cfg.max_outstanding {
            // The oldest waiting requests go.
            for old in oldest(self.outstanding.iter(), |o| o.first, self.cfg.max_outstanding / 8) {
                if let Some(o) = self.take(&old) {
                    self.stats.requests_evicted += 1;
                    // Under a flood no request lives long enough to be called unanswered:
                    // each KDC keeps count of those given up without an answer.
                    let cap = self.cfg.evidence_per_finding;
                    let mut seen: smallvec::SmallVec<[(IpAddr, u16); 2]> = smallvec::SmallVec::new();
                    for a in &o.attempts {
                        if !seen.contains(&(a.kdc, a.port)) {
                            seen.push((a.kdc, a.port));
                            if let Some(k) = self.kdcs.get_mut(&(a.kdc, a.port)) {
                                k.given_up.add(o.first, [a.ev], cap);
                            }
                        }
                    }
                }
            }
        }
        self.outstanding.insert(
            key,
            Box::new(OutReq {
                kind,
                principal,
                via,
                target,
                first: at,
                attempts: smallvec::smallvec![attempt],
                after_too_big,
            }),
        );
        self.by_frame.insert((ev.file, ev.frame), key);
    }

    /// Who a request is for, and which service account acts (S4U).
    fn request_parties(&mut self, kind: ReqKind, k: &Krb5<'_>) -> (Option<Name>, Option<Name>) {
        match kind {
            ReqKind::As => (k.cname.as_ref().map(|c| self.name(c, k.realm.as_deref())), None),
            ReqKind::S4u2Self => {
                let user = match (&k.for_user, &k.s4u_x509_user) {
                    (Some(f), _) if f.user.is_some() => f.user.as_ref().map(|u| (u, f.realm.as_deref())),
                    (_, Some(x)) => x.user.as_ref().map(|u| (u, x.realm.as_deref())),
                    _ => None,
                };
                let user = user.map(|(u, r)| self.name(u, r));
                let via = k.sname.as_ref().map(|s| self.name(s, k.realm.as_deref()));
                (user, via)
            }
            ReqKind::S4u2Proxy => {
                let link = k
                    .additional_tickets
                    .first()
                    .and_then(|t| t.id)
                    .and_then(|id| self.tickets.get(&id));
                match link {
                    Some(l) => (Some(l.user.clone()), Some(l.via.clone())),
                    None => (None, None),
                }
            }
            ReqKind::Tgs => (None, None),
        }
    }

    // ------------------------------------------------------------------ replies

    fn reply(&mut self, e: &Event<'_>, k: &Krb5<'_>) {
        let (Some(kdc), Some(client)) = (e.src_ip, e.dest_ip) else { return };
        let port = e.src_port.unwrap_or(88);
        let transport = e.proto.unwrap_or(Transport::Udp);
        let at = e.timestamp;
        let ev = self.ev(e);
        let err = k.error.as_ref();
        let kdc_label = {
            let s = self.kdc(kdc, port, at);
            match err {
                Some(x) => *s.errors.entry(x.code).or_insert(0) += 1,
                None => s.tickets += 1,
            }
            s.realm(k.realm.as_deref());
            if let Some(lat) = k.request.as_ref().map(|r| r.latency_us) {
                let lat = u64::try_from(lat.max(1)).unwrap_or(1);
                if let Some(h) = s.latency.as_mut() {
                    let _ = h.record(lat);
                }
                // The histogram keeps 2 significant digits: the maximum is kept exactly.
                s.latency_max = s.latency_max.max(lat);
            }
            s.label.clone()
        };
        if err.is_some() {
            self.note_client(client, at, ClientNote::Error);
        }
        // The KDC's clock, measured from every error it sends (PREAUTH_REQUIRED included).
        if let Some(skew) = err.and_then(|x| x.skew_seconds) {
            let threshold = self.cfg.clock_offset_warning_s;
            let cap = self.cfg.evidence_per_finding;
            let s = self.kdc(kdc, port, at);
            s.offset.add(skew);
            if skew.abs() > threshold {
                s.offset_over.add(at, [ev], cap);
                if skew.abs() > s.offset_over.worst.abs() {
                    s.offset_over.worst = skew;
                }
            }
        }
        // The request: by the frame the decoder paired it with.
        let req = k.request.as_ref().and_then(|r| {
            let file = match r.pcap_file.as_deref() {
                Some(f) => self.file_id(Some(f)),
                None => ev.file,
            };
            self.by_frame.get(&(file, r.frame)).copied()
        });
        let req = req.and_then(|key| self.take(&key).map(|o| (key, o)));
        // Answered after it was declared unanswered: slow, not silent.
        let req = match (req, &k.request) {
            (None, Some(r)) => {
                let file = match r.pcap_file.as_deref() {
                    Some(f) => self.file_id(Some(f)),
                    None => ev.file,
                };
                self.answered_late((file, r.frame))
            }
            (req, _) => req,
        };
        let mut failed_over = false;
        if let Some((_, o)) = &req {
            failed_over = self.failover(o, kdc, at);
        }
        let (kind, principal, via, target, requested, after_too_big) = match &req {
            Some((_, o)) => (
                Some(o.kind),
                o.principal.clone(),
                o.via.clone(),
                o.target.clone(),
                Some(o.attempts.iter().find(|a| a.kdc == kdc).map_or(o.first, |a| a.at)),
                o.after_too_big,
            ),
            None => (None, None, None, self.empty.clone(), None, false),
        };
        // The reply's own names only where the request did not tell.
        let need_cname = principal.is_none() || err.is_some() || kind.is_none_or(|k| k == ReqKind::Tgs);
        let cname = if need_cname { k.cname.as_ref().map(|c| self.name(c, k.crealm.as_deref())) } else { None };
        let latency_us = k.request.as_ref().map(|r| r.latency_us);
        let target: Name = match &k.sname {
            Some(sn) if target.is_empty() => self.name(sn, k.realm.as_deref()),
            _ => target,
        };
        let kind = kind.unwrap_or(match k.msg_type {
            MessageType::AS_REP => ReqKind::As,
            _ if target.starts_with("krbtgt/") && err.is_some() => ReqKind::As,
            _ => ReqKind::Tgs,
        });
        // Who the step belongs to: the impersonated user for S4U (the error names the
        // service account), otherwise the reply's client.
        let who: Option<Name> = match kind {
            ReqKind::S4u2Self | ReqKind::S4u2Proxy => principal.clone().or_else(|| {
                if err.is_none() {
                    cname.clone()
                } else {
                    None
                }
            }),
            _ => principal.clone().or_else(|| cname.clone()),
        };
        let via: Option<Name> = match kind {
            ReqKind::S4u2Proxy if via.is_none() && err.is_some() => cname.clone(),
            _ => via,
        };
        if let Some(v) = &via {
            if let Some(p) = self.principal(v, at) {
                p.service_account = true;
            }
        }
        let step = |outcome| Step {
            kind: kind.step(),
            target: target.clone(),
            via: via.clone(),
            kdc,
            transport,
            at,
            latency_us,
            outcome,
            frame: ev.frame,
            file: ev.file,
            after_too_big,
            after_failover: failed_over,
        };
        match err {
            None => {
                if let Some(w) = &who {
                    self.record_step(w, step(Outcome::Ok));
                }
                match kind {
                    ReqKind::S4u2Self => {
                        if let (Some(user), Some(v)) = (who.clone(), via.clone()) {
                            self.impersonation(client, v.clone(), Impersonation { user: user.clone(), at, ev });
                            if let Some(id) = k.ticket.as_ref().and_then(|t| t.id) {
                                self.remember_ticket(id, user, v, at);
                            }
                        }
                    }
                    ReqKind::Tgs => {
                        // The service account, fresh from S4U2Self, asks for a service
                        // ticket as itself: whatever it calls will see it, not the user.
                        if let Some(c) = cname.as_deref() {
                            let key = (client, cname.clone().unwrap_or_else(|| Name::from("")));
                            let hit = self
                                .impersonating
                                .get(&key)
                                .filter(|i| at.0 - i.at.0 <= IMPERSONATION_WINDOW_NS && *target != *c)
                                .cloned();
                            if let Some(i) = hit {
                                self.impersonating.remove(&key);
                                let kdc_s = kdc_name(kdc, port);
                                let a = self.finding(
                                    &catalogue::S4U2PROXY_SKIPPED,
                                    SubjectKind::ServiceAccount,
                                    c,
                                    at,
                                    [i.ev, ev],
                                );
                                if a.is_new() {
                                    a.explanation = format!(
                                        "{c} obtained a ticket for {} (S4U2Self) and then a ticket for {target} in its own name, without S4U2Proxy: {target} will see {c}, not {}.",
                                        i.user, i.user
                                    );
                                    a.fact("kdc", kdc_s);
                                    a.fact("target_spn", target.to_string());
                                }
                                a.fact_list("principals", &i.user, 8);
                            }
                        }
                    }
                    ReqKind::S4u2Proxy => {
                        if let (Some(v), Some(user)) = (&via, &who) {
                            let d = self.delegations.entry(v.clone()).or_default();
                            if !d.ok.iter().any(|(t, u, _)| *t == target && u == user) {
                                if d.ok.len() == DELEGATIONS_KEPT {
                                    d.ok.remove(0);
                                }
                                d.ok.push((target.clone(), user.clone(), at));
                            }
                        }
                    }
                    _ => {}
                }
            }
            Some(x) => {
                let code = x.code;
                // No error-code could be read (the decoder says -1): nothing to explain.
                if code == ErrorCode::KDC_ERR_PREAUTH_REQUIRED || code.0 < 0 {
                    return;
                }
                if code == ErrorCode::KRB_ERR_RESPONSE_TOO_BIG && transport == Transport::Udp {
                    if let Some((key, o)) = req {
                        self.too_big_pending(key, o, kdc, port, at, ev, requested.unwrap_or(at));
                    }
                    return;
                }
                if let Some(w) = who.clone().or_else(|| via.clone()) {
                    self.record_step(&w, step(Outcome::Error(code)));
                }
                let ctx = ErrCtx {
                    kind,
                    client,
                    who: who.as_deref(),
                    via: via.as_deref(),
                    target: &target,
                    cname: cname.as_deref(),
                    kdc: kdc_label.clone(),
                    at,
                    ev,
                    req_ev: req.as_ref().and_then(|(_, o)| o.attempts.last().map(|a| a.ev)),
                };
                self.krb_error(&ctx, x, k);
            }
        }
    }

    fn impersonation(&mut self, client: IpAddr, via: Name, i: Impersonation) {
        let cap = MAX_IMPERSONATIONS;
        if self.impersonating.len() >= cap && !self.impersonating.contains_key(&(client, via.clone())) {
            let now = i.at;
            self.impersonating.retain(|_, x| now.0 - x.at.0 <= IMPERSONATION_WINDOW_NS);
            if self.impersonating.len() >= cap {
                for k in oldest(self.impersonating.iter(), |x| x.at, cap / 8) {
                    self.impersonating.remove(&k);
                }
            }
        }
        self.impersonating.insert((client, via), i);
    }

    fn remember_ticket(&mut self, id: TicketId, user: Name, via: Name, at: Timestamp) {
        if !self.tickets.contains_key(&id) && self.tickets.len() >= self.cfg.max_tickets {
            for v in oldest(self.tickets.iter(), |t| t.at, self.cfg.max_tickets / 8) {
                self.tickets.remove(&v);
                self.stats.tickets_evicted += 1;
            }
        }
        self.tickets.insert(id, TicketLink { user, via, at });
    }

    /// A reply came from `kdc`; attempts at other KDCs went unanswered: fail-over.
    fn failover(&mut self, o: &OutReq, kdc: IpAddr, at: Timestamp) -> bool {
        let mut seen: smallvec::SmallVec<[(IpAddr, u16); 2]> = smallvec::SmallVec::new();
        for a in &o.attempts {
            if a.kdc == kdc || seen.contains(&(a.kdc, a.port)) {
                continue;
            }
            seen.push((a.kdc, a.port));
        }
        if seen.is_empty() {
            return false;
        }
        let answered_by = kdc_name(kdc, 88);
        for (dead, port) in seen {
            let evs: Vec<Ev> = o.attempts.iter().filter(|a| a.kdc == dead).map(|a| a.ev).collect();
            let first = o.attempts.iter().find(|a| a.kdc == dead).map_or(o.first, |a| a.at);
            let waited = (at.0 - first.0) as f64 / 1e6;
            self.kdc(dead, port, at).failed_over += 1;
            let name = kdc_name(dead, port);
            let what = describe_request(o.kind, o.principal.as_deref(), &o.target);
            let a = self.finding(&catalogue::KDC_FAILOVER, SubjectKind::Kdc, &name, first, evs);
            if a.is_new() {
                a.explanation = format!(
                    "KDC {name} did not answer {what}; the client asked {answered_by}, which answered {waited:.0} ms after the first attempt."
                );
            }
            a.fact_list("answered_by", &answered_by, 8);
            a.measure("delay_ms", waited);
        }
        true
    }

    /// Takes back the verdict `unanswered` gave the request sent in `frame`.
    fn answered_late(&mut self, frame: (u32, u64)) -> Option<(ReqKey, OutReq)> {
        let (key, o) = self.late.remove(&frame)?;
        let o = *o;
        let mut kdcs: smallvec::SmallVec<[(IpAddr, u16); 2]> = smallvec::SmallVec::new();
        for a in &o.attempts {
            if !kdcs.contains(&(a.kdc, a.port)) {
                kdcs.push((a.kdc, a.port));
            }
        }
        let frames: smallvec::SmallVec<[Ev; 2]> = o.attempts.iter().map(|a| a.ev).collect();
        for (kdc, port) in kdcs {
            if let Some(s) = self.kdcs.get_mut(&(kdc, port)) {
                s.unanswered = s.unanswered.saturating_sub(1);
                s.silent.count = s.silent.count.saturating_sub(1);
                s.silent.evidence.retain(|e| !frames.iter().any(|f| f.file == e.file && f.frame == e.frame));
            }
        }
        if let Some(p) = o.principal.as_deref() {
            if let Some(ps) = self.principals.get_mut(p) {
                let before = ps.steps.len();
                ps.steps.retain(|s| !(s.outcome == Outcome::Unanswered && frames.iter().any(|f| f.file == s.file && f.frame == s.frame)));
                if ps.steps.len() < before {
                    ps.failed = ps.failed.saturating_sub(1);
                }
            }
        }
        self.stats.answered_late += 1;
        // The other attempts' frames lead to the same request.
        for a in &o.attempts {
            self.late.remove(&(a.ev.file, a.ev.frame));
        }
        Some((key, o))
    }

    fn unanswered(&mut self, key: ReqKey, o: OutReq) {
        let mut kdcs: smallvec::SmallVec<[(IpAddr, u16); 2]> = smallvec::SmallVec::new();
        for a in &o.attempts {
            if !kdcs.contains(&(a.kdc, a.port)) {
                kdcs.push((a.kdc, a.port));
            }
        }
        let cap = self.cfg.evidence_per_finding;
        let last = o.attempts.last().map_or(o.first, |a| a.at);
        for (kdc, port) in &kdcs {
            let evs: Vec<Ev> = o.attempts.iter().filter(|a| a.kdc == *kdc).map(|a| a.ev).collect();
            let s = self.kdc(*kdc, *port, last);
            s.unanswered += 1;
            s.silent.add(o.first, evs, cap);
            s.silent.principal(o.principal.as_deref());
        }
        if let Some(p) = &o.principal {
            let a = o.attempts.last().copied();
            if let Some(a) = a {
                let step = Step {
                    kind: o.kind.step(),
                    target: o.target.clone(),
                    via: o.via.clone(),
                    kdc: a.kdc,
                    transport: a.transport,
                    at: o.first,
                    latency_us: None,
                    outcome: Outcome::Unanswered,
                    frame: a.ev.frame,
                    file: a.ev.file,
                    after_too_big: o.after_too_big,
                    after_failover: kdcs.len() > 1,
                };
                let p = p.clone();
                self.record_step(&p, step);
            }
        }
        // Kept a while, in case the reply is only late.
        let now = self.now.unwrap_or(o.first);
        while self.late_order.front().is_some_and(|(t, _)| now.0 - t.0 > LATE_WINDOW_NS)
            || self.late_order.len() >= LATE_KEPT
        {
            if let Some((_, k)) = self.late_order.pop_front() {
                self.late.remove(&k);
            }
        }
        if let Some(a) = o.attempts.first() {
            let k = (a.ev.file, a.ev.frame);
            self.late_order.push_back((now, k));
            // Every attempt's frame leads to the request: the reply names the one the
            // decoder paired it with.
            for a in o.attempts.iter().skip(1) {
                self.late_order.push_back((now, (a.ev.file, a.ev.frame)));
                self.late.insert((a.ev.file, a.ev.frame), (key, Box::new(o.clone())));
            }
            self.late.insert(k, (key, Box::new(o)));
        }
    }

}

struct ErrCtx<'c> {
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

fn request_kind(k: &Krb5<'_>) -> ReqKind {
    if k.msg_type == MessageType::AS_REQ {
        ReqKind::As
    } else if k.for_user.is_some() || k.s4u_x509_user.is_some() {
        ReqKind::S4u2Self
    } else if k.kdc_options.has(kdc_options::CNAME_IN_ADDL_TKT) && !k.additional_tickets.is_empty() {
        ReqKind::S4u2Proxy
    } else {
        ReqKind::Tgs
    }
}

/// "alice@LAB.TEST", "HTTP/web.lab.test@LAB.TEST"; an enterprise name ("alice@lab.test")
/// already names its domain.
pub fn full_name(p: &Principal<'_>, realm: Option<&str>) -> String {
    let mut s = String::new();
    write_full_name(&mut s, p, realm.filter(|r| !r.is_empty() && !is_enterprise(p)));
    s
}

fn is_enterprise(p: &Principal<'_>) -> bool {
    p.name_type == NameType::NT_ENTERPRISE || (p.parts.len() == 1 && p.parts[0].contains('@'))
}

/// `n` is what write_full_name writes for these parts and (already decided) realm.
fn name_is(n: &str, p: &Principal<'_>, realm: Option<&str>) -> bool {
    let mut rest = n;
    for (i, part) in p.parts.iter().enumerate() {
        if i > 0 {
            match rest.strip_prefix('/') {
                Some(r) => rest = r,
                None => return false,
            }
        }
        match rest.strip_prefix(&**part) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    match realm {
        Some(r) => rest.strip_prefix('@').is_some_and(|x| x == r),
        None => rest.is_empty(),
    }
}

/// Parts joined by '/', then "@realm" when `realm` is given (the caller decides).
fn write_full_name(s: &mut String, p: &Principal<'_>, realm: Option<&str>) {
    for (i, part) in p.parts.iter().enumerate() {
        if i > 0 {
            s.push('/');
        }
        s.push_str(part);
    }
    if let Some(r) = realm {
        s.push('@');
        s.push_str(r);
    }
}

fn describe_request(kind: ReqKind, principal: Option<&str>, target: &str) -> String {
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
fn offset_words(s: f64) -> String {
    let a = s.abs();
    let mag = if a >= 120.0 { format!("{a:.0} s ({:.1} min)", a / 60.0) } else { format!("{a:.1} s") };
    format!("its clock is {mag} {} this host's", if s < 0.0 { "behind" } else { "ahead of" })
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


fn apply_client_note(c: &mut state::ClientStats, at: Timestamp, note: ClientNote) {
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
