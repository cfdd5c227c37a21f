//! What the correlator remembers per KDC, per client host and per principal. These are also
//! the report's rows, so their fields are public and read-only to other crates.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use hdrhistogram::Histogram;
use kcd_schema::{ErrorCode, Evidence, Timestamp, Transport};
use smallvec::SmallVec;

/// A packet to cite, held compactly: file index, frame, Community ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ev {
    pub file: u32,
    pub frame: u64,
    pub flow: Option<FlowTag>,
}

impl Ev {
    pub fn evidence(&self, files: &[Box<str>]) -> Evidence {
        Evidence {
            pcap_file: files.get(self.file as usize).map(|f| f.to_string()),
            frame: self.frame,
            flow_id: self.flow.map(|f| f.as_str().to_string()),
        }
    }
}

/// A Community ID ("1:" + 28 base64 characters) held inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlowTag {
    bytes: [u8; 32],
    len: u8,
}

impl FlowTag {
    pub fn new(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() > 32 || !s.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        bytes[..b.len()].copy_from_slice(b);
        Some(FlowTag { bytes, len: b.len() as u8 })
    }
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl std::fmt::Debug for FlowTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Clock offset of a KDC, from the stime of its KRB-ERRORs minus the capture time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OffsetStats {
    pub samples: u64,
    pub last: f64,
    pub min: f64,
    pub max: f64,
}

impl OffsetStats {
    pub fn add(&mut self, v: f64) {
        if self.samples == 0 {
            self.min = v;
            self.max = v;
        }
        self.samples += 1;
        self.last = v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }
    /// The sample farthest from zero.
    pub fn worst(&self) -> f64 {
        if self.max.abs() >= self.min.abs() {
            self.max
        } else {
            self.min
        }
    }
}

impl Default for OffsetStats {
    fn default() -> Self {
        OffsetStats { samples: 0, last: 0.0, min: 0.0, max: 0.0 }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    pub n: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

/// Evidence of a problem kept in state until the report decides what it means (a KDC that
/// never answered is "unreachable"; one that answered others "drops requests").
#[derive(Debug, Clone, Default)]
pub(crate) struct Trouble {
    pub count: u64,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
    pub evidence: Vec<Ev>,
    pub worst: f64,
    pub principals: Vec<Box<str>>,
}

impl Trouble {
    pub fn add(&mut self, at: Timestamp, ev: impl IntoIterator<Item = Ev>, cap: usize) {
        self.count += 1;
        self.first = Some(self.first.map_or(at, |f| f.min(at)));
        self.last = Some(self.last.map_or(at, |l| l.max(at)));
        for e in ev {
            if self.evidence.len() < cap {
                self.evidence.push(e);
            }
        }
    }
    pub fn principal(&mut self, p: Option<&str>) {
        if let Some(p) = p {
            if self.principals.len() < 8 && !self.principals.iter().any(|x| &**x == p) {
                self.principals.push(p.into());
            }
        }
    }
}

pub struct Kdc {
    pub addr: IpAddr,
    pub port: u16,
    /// Assigned in order of appearance.
    pub id: u32,
    /// "10.0.0.2", or with its port when not 88.
    pub label: crate::Name,
    pub realms: SmallVec<[Box<str>; 1]>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub requests: u64,
    pub requests_udp: u64,
    pub requests_tcp: u64,
    /// AS-REP and TGS-REP.
    pub tickets: u64,
    pub errors: BTreeMap<ErrorCode, u64>,
    /// Requests (counted once however often sent) it never answered.
    pub unanswered: u64,
    /// Requests it did not answer that another KDC then answered.
    pub failed_over: u64,
    pub offset: OffsetStats,
    pub(crate) latency: Option<Histogram<u64>>,
    pub(crate) latency_max: u64,
    pub(crate) silent: Trouble,
    /// Requests to it given up, still unanswered, because the request table was full (a
    /// flood): none lived long enough to be called unanswered.
    pub(crate) given_up: Trouble,
    pub(crate) offset_over: Trouble,
}

impl Kdc {
    pub(crate) fn new(addr: IpAddr, port: u16, id: u32, at: Timestamp) -> Self {
        Kdc {
            addr,
            port,
            id,
            label: kdc_name(addr, port).into(),
            realms: SmallVec::new(),
            first_seen: at,
            last_seen: at,
            requests: 0,
            requests_udp: 0,
            requests_tcp: 0,
            tickets: 0,
            errors: BTreeMap::new(),
            unanswered: 0,
            failed_over: 0,
            offset: OffsetStats::default(),
            // Microseconds up to an hour at 2 significant digits: a few KiB per KDC.
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 2).ok(),
            latency_max: 0,
            silent: Trouble::default(),
            given_up: Trouble::default(),
            offset_over: Trouble::default(),
        }
    }

    /// Requests given up unanswered because the request table was full.
    pub fn given_up(&self) -> u64 {
        self.given_up.count
    }

    pub fn answers(&self) -> u64 {
        self.tickets + self.errors.values().sum::<u64>()
    }

    pub fn latency(&self) -> Option<Percentiles> {
        let h = self.latency.as_ref()?;
        (!h.is_empty()).then(|| Percentiles {
            n: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            max: self.latency_max,
        })
    }

    pub(crate) fn realm(&mut self, r: Option<&str>) {
        if let Some(r) = r.filter(|r| !r.is_empty()) {
            if self.realms.len() < 4 && !self.realms.iter().any(|x| &**x == r) {
                self.realms.push(r.into());
            }
        }
    }

    /// "10.0.0.2" on port 88, "10.0.0.2:8888" elsewhere.
    pub fn name(&self) -> String {
        self.label.to_string()
    }
}

pub(crate) fn kdc_name(addr: IpAddr, port: u16) -> String {
    match (port, addr) {
        (88, a) => a.to_string(),
        (p, IpAddr::V6(a)) => format!("[{a}]:{p}"),
        (p, a) => format!("{a}:{p}"),
    }
}

/// A host that talks to KDCs (on a gateway host: the gateway itself), as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub addr: IpAddr,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub as_req: u64,
    pub tgs_req: u64,
    pub s4u2self: u64,
    pub s4u2proxy: u64,
    pub udp: u64,
    pub tcp: u64,
    pub errors: u64,
    pub kdcs: Vec<IpAddr>,
}

/// A client as the correlator keeps it: small, because a busy network has tens of
/// thousands and every message touches one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientStats {
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub as_req: u32,
    pub tgs_req: u32,
    pub s4u2self: u32,
    pub s4u2proxy: u32,
    pub udp: u32,
    pub tcp: u32,
    pub errors: u32,
    /// Bit n: the KDC whose `id` is n talked with it (the first 64 KDCs).
    pub kdcs: u64,
}

impl ClientStats {
    pub(crate) fn new(at: Timestamp) -> Self {
        ClientStats {
            first_seen: at,
            last_seen: at,
            as_req: 0,
            tgs_req: 0,
            s4u2self: 0,
            s4u2proxy: 0,
            udp: 0,
            tcp: 0,
            errors: 0,
            kdcs: 0,
        }
    }
}

/// An address as one integer (IPv4 as IPv4-mapped IPv6): cheaper to hash and compare
/// than `IpAddr`, for tables keyed by address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Ip(pub u128);

impl From<IpAddr> for Ip {
    fn from(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(v4) => Ip(v4.to_ipv6_mapped().to_bits()),
            IpAddr::V6(v6) => Ip(v6.to_bits()),
        }
    }
}

impl From<Ip> for IpAddr {
    fn from(i: Ip) -> Self {
        let v6 = std::net::Ipv6Addr::from_bits(i.0);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StepKind {
    /// AS exchange: a password (or key) login, e.g. the service account's.
    As,
    /// Protocol transition: a ticket to the service account, for the user.
    S4u2Self,
    /// Constrained delegation: a ticket to the target, for the user.
    S4u2Proxy,
    /// An ordinary service ticket.
    Tgs,
}

impl StepKind {
    pub fn name(self) -> &'static str {
        match self {
            StepKind::As => "AS",
            StepKind::S4u2Self => "S4U2Self",
            StepKind::S4u2Proxy => "S4U2Proxy",
            StepKind::Tgs => "TGS",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error(ErrorCode),
    /// No KDC answered.
    Unanswered,
}

/// One exchange in a principal's story.
#[derive(Debug, Clone)]
pub struct Step {
    pub kind: StepKind,
    /// What was asked for: krbtgt/REALM, the service account, the target SPN.
    pub target: crate::Name,
    /// The service account acting for the principal (S4U steps).
    pub via: Option<crate::Name>,
    pub kdc: IpAddr,
    pub transport: Transport,
    pub at: Timestamp,
    pub latency_us: Option<i64>,
    pub outcome: Outcome,
    /// The reply's frame (the request's when unanswered).
    pub frame: u64,
    pub(crate) file: u32,
    /// The request went over UDP first and was told to use TCP (error 52).
    pub after_too_big: bool,
    /// A KDC that did not answer was tried first.
    pub after_failover: bool,
}

/// A user, a service account, or any client principal.
pub struct PrincipalState {
    /// The name as first seen.
    pub name: crate::Name,
    /// Other spellings the same user was asked under (enterprise name, canonical name,
    /// other case), at most ALIASES_KEPT.
    pub aliases: Vec<crate::Name>,
    /// It delegated for others (S4U2Self/S4U2Proxy service).
    pub service_account: bool,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// The most recent exchanges, oldest first.
    pub steps: VecDeque<Step>,
    pub ok: u64,
    pub failed: u64,
}

pub const STEPS_KEPT: usize = 8;
pub const ALIASES_KEPT: usize = 4;

impl PrincipalState {
    pub(crate) fn new(name: crate::Name, at: Timestamp) -> Self {
        PrincipalState {
            name,
            aliases: Vec::new(),
            service_account: false,
            first_seen: at,
            last_seen: at,
            steps: VecDeque::new(),
            ok: 0,
            failed: 0,
        }
    }
    pub(crate) fn asked_as(&mut self, name: &str) {
        if &*self.name != name && self.aliases.len() < ALIASES_KEPT && !self.aliases.iter().any(|a| &**a == name) {
            self.aliases.push(name.into());
        }
    }
    pub(crate) fn push(&mut self, s: Step) {
        self.last_seen = self.last_seen.max(s.at);
        match s.outcome {
            Outcome::Ok => self.ok += 1,
            _ => self.failed += 1,
        }
        if self.steps.len() == STEPS_KEPT {
            self.steps.pop_front();
        }
        self.steps.push_back(s);
    }
}
