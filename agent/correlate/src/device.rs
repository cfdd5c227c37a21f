//! Devices: the unit an administrator thinks in ("Bob's iPhone cannot sync"). Kerberos never
//! names the device; the gateway's request events (EAS DeviceId, certificate, user, the step
//! that failed), TLS handshakes (the certificate, the alert) and Exchange's HTTP (DeviceId,
//! status) do. A device is keyed by its EAS DeviceId when known, else by its certificate's
//! fingerprint, else by its address; the weaker names stay as aliases, so a device first
//! seen by its certificate and later by its DeviceId is one device.
//!
//! Bounded: the devices and the aliases are kept in least-recently-seen order and the
//! oldest go (counted) when a cap is reached.

use std::net::IpAddr;

use kcd_findings::catalogue::Rule;
use kcd_findings::device::Step;
use kcd_schema::Timestamp;
use smallvec::SmallVec;

use crate::state::Ev;

type Lru<K, V> = lru::LruCache<K, V, foldhash::fast::RandomState>;

fn lru<K: std::hash::Hash + Eq, V>() -> Lru<K, V> {
    lru::LruCache::unbounded_with_hasher(foldhash::fast::RandomState::default())
}

/// The device's certificate, as the gateway verified it or as seen in a TLS handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceCert {
    pub subject: Box<str>,
    pub issuer: Box<str>,
    pub serial: Box<str>,
    pub sha256: Box<str>,
    pub upn: Option<Box<str>>,
    /// Unix seconds.
    pub not_after: Option<i64>,
    /// good, revoked, unknown, soft_fail (the gateway's word).
    pub revocation: Option<Box<str>>,
    /// CRL distribution points (from the wire; the gateway's events do not list them).
    pub cdp: Vec<Box<str>>,
}

/// Why the device's latest failed request stopped where it did.
#[derive(Debug, Clone)]
pub struct Failure {
    pub step: Step,
    pub rule: Option<&'static Rule>,
    /// The gateway's reason label, the TLS alert, or the HTTP status, as seen.
    pub reason: Box<str>,
    pub detail: Box<str>,
    pub status: Option<u16>,
    pub at: Timestamp,
    pub(crate) ev: Ev,
}

#[derive(Debug, Clone)]
pub struct DeviceState {
    /// How the report names it: the DeviceId, else `cert:` and the fingerprint's first 16
    /// hex digits, else `ip:` and the address.
    pub key: Box<str>,
    pub device_id: Option<Box<str>>,
    pub device_type: Option<Box<str>>,
    pub upn: Option<Box<str>>,
    pub addresses: SmallVec<[IpAddr; 2]>,
    pub cert: Option<Box<DeviceCert>>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// Requests (or handshakes) seen, and how many ended well.
    pub requests: u64,
    pub ok: u64,
    /// The furthest step the latest request reached.
    pub reached: Option<Step>,
    /// The latest request failed: where and why. Cleared by a later success.
    pub failing: Option<Failure>,
    /// The last failure ever seen, kept after a success for the record.
    pub last_failure: Option<Failure>,
    /// The last ActiveSync command (Ping, Sync, FolderSync...).
    pub cmd: Option<Box<str>>,
    /// Exchange's last HTTP status.
    pub exchange_status: Option<u16>,
    /// The query's User= named someone else than the certificate's user.
    pub user_mismatch: Option<Box<str>>,
}

const ADDRESSES_KEPT: usize = 4;

/// A refusal as an event tells it: step, rule, reason label, detail, HTTP status.
pub(crate) type Refusal = (Step, Option<&'static Rule>, String, String, Option<u16>);

/// What one event says about a device.
#[derive(Debug, Default)]
pub(crate) struct Observation<'a> {
    pub device_id: Option<&'a str>,
    pub device_type: Option<&'a str>,
    /// SHA-256 fingerprint of the certificate (hex).
    pub fingerprint: Option<&'a str>,
    pub address: Option<IpAddr>,
    pub upn: Option<&'a str>,
    pub cert: Option<DeviceCert>,
    pub cmd: Option<&'a str>,
    pub user_mismatch: Option<&'a str>,
    /// The request as a whole ended well (the device got Exchange's answer).
    pub ok: bool,
    /// It counts as a request (a TLS handshake alone does not, unless refused).
    pub request: bool,
    pub reached: Option<Step>,
    pub failure: Option<Refusal>,
    pub exchange_status: Option<u16>,
}

pub(crate) struct Devices {
    by_key: Lru<Box<str>, DeviceState>,
    /// "id:", "fp:" and "ip:" names to the device's key.
    aliases: Lru<Box<str>, Box<str>>,
    max: usize,
    pub evicted: u64,
}

impl Devices {
    pub fn new(max: usize) -> Self {
        Devices { by_key: lru(), aliases: lru(), max: max.max(1), evicted: 0 }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Records what an event says; returns the device's key.
    pub fn observe(&mut self, o: Observation<'_>, at: Timestamp, ev: Ev) -> Option<Box<str>> {
        let id = o.device_id.filter(|s| !s.is_empty()).map(|s| format!("id:{s}"));
        let fp = o.fingerprint.filter(|s| !s.is_empty()).map(|s| format!("fp:{}", s.to_ascii_lowercase()));
        // The strongest name known finds the device. An address never joins a device known
        // by its DeviceId or certificate: addresses are shared behind NAT and reused, and a
        // handshake without a certificate from the same address is not that device.
        let found = [&id, &fp].into_iter().flatten().find_map(|n| self.aliases.get(n.as_str()).cloned()).or_else(|| {
            match (&id, &fp, o.address) {
                (None, None, Some(a)) => Some(format!("ip:{a}").into()),
                _ => None,
            }
        });
        let wanted: Box<str> = match (o.device_id, o.fingerprint, o.address) {
            (Some(d), _, _) if !d.is_empty() => d.into(),
            (_, Some(f), _) if !f.is_empty() => {
                format!("cert:{}", f.chars().take(16).collect::<String>().to_ascii_lowercase()).into()
            }
            (_, _, Some(a)) => format!("ip:{a}").into(),
            _ => return None,
        };
        let mut state = match found.and_then(|k| self.by_key.pop(&k)) {
            Some(mut s) => {
                // A device first known by its certificate or address now says its DeviceId.
                if o.device_id.is_some_and(|d| !d.is_empty()) && s.device_id.is_none() {
                    s.key = wanted.clone();
                }
                s
            }
            None => DeviceState {
                key: wanted.clone(),
                device_id: None,
                device_type: None,
                upn: None,
                addresses: SmallVec::new(),
                cert: None,
                first_seen: at,
                last_seen: at,
                requests: 0,
                ok: 0,
                reached: None,
                failing: None,
                last_failure: None,
                cmd: None,
                exchange_status: None,
                user_mismatch: None,
            },
        };
        let s = &mut state;
        s.first_seen = s.first_seen.min(at);
        s.last_seen = s.last_seen.max(at);
        if let Some(d) = o.device_id.filter(|d| !d.is_empty()) {
            s.device_id = Some(d.into());
        }
        if let Some(t) = o.device_type.filter(|d| !d.is_empty()) {
            s.device_type = Some(t.into());
        }
        if let Some(u) = o.upn.filter(|u| !u.is_empty()) {
            s.upn = Some(u.into());
        }
        if let Some(a) = o.address {
            if !s.addresses.contains(&a) {
                if s.addresses.len() == ADDRESSES_KEPT {
                    s.addresses.remove(0);
                }
                s.addresses.push(a);
            }
        }
        if let Some(c) = o.cert {
            if s.upn.is_none() {
                s.upn = c.upn.clone();
            }
            s.cert = Some(Box::new(c));
        }
        if let Some(c) = o.cmd {
            s.cmd = Some(c.into());
        }
        // What the latest request said: a mismatch of an earlier one is not this one's.
        if o.request {
            s.user_mismatch = o.user_mismatch.map(Into::into);
        }
        if o.exchange_status.is_some() {
            s.exchange_status = o.exchange_status;
        }
        if o.request || o.failure.is_some() {
            s.requests += 1;
        }
        if let Some((step, rule, reason, detail, status)) = o.failure {
            let f = Failure { step, rule, reason: reason.into(), detail: detail.into(), status, at, ev };
            s.reached = Some(step);
            s.last_failure = Some(f.clone());
            s.failing = Some(f);
        } else if o.ok {
            s.ok += 1;
            s.failing = None;
            s.reached = Some(Step::Exchange);
        } else if let Some(r) = o.reached {
            if s.failing.is_none() {
                s.reached = Some(s.reached.map_or(r, |x| x.max(r)));
            }
        }
        let key = s.key.clone();
        // Every strong name the device was known by leads to its (perhaps new) key.
        let known = s.cert.iter().map(|c| format!("fp:{}", c.sha256.to_ascii_lowercase()));
        let names: Vec<String> = [id, fp].into_iter().flatten().chain(known).collect();
        for n in names {
            self.aliases.put(n.into(), key.clone());
        }
        while self.aliases.len() > self.max * 3 {
            self.aliases.pop_lru();
        }
        if self.by_key.len() >= self.max && !self.by_key.contains(&key) {
            self.by_key.pop_lru();
            self.evicted += 1;
        }
        self.by_key.put(key.clone(), state);
        Some(key)
    }

    pub fn get(&self, key: &str) -> Option<&DeviceState> {
        self.by_key.peek(key)
    }

    /// Every device, first seen first.
    pub fn all(&self) -> Vec<&DeviceState> {
        let mut v: Vec<&DeviceState> = self.by_key.iter().map(|(_, d)| d).collect();
        v.sort_by(|a, b| a.first_seen.cmp(&b.first_seen).then_with(|| a.key.cmp(&b.key)));
        v
    }

    /// Devices whose certificate names this principal, seen within `window` of `[from, to]`.
    pub fn for_principal(&self, principal: &str, from: Timestamp, to: Timestamp, window_ns: i64) -> Vec<&DeviceState> {
        let mut out: Vec<&DeviceState> = self
            .by_key
            .iter()
            .map(|(_, d)| d)
            .filter(|d| d.upn.as_deref().is_some_and(|u| upn_matches(u, principal)))
            .filter(|d| d.last_seen.0.saturating_add(window_ns) >= from.0 && d.first_seen.0.saturating_sub(window_ns) <= to.0)
            .collect();
        out.sort_by(|a, b| a.first_seen.cmp(&b.first_seen).then_with(|| a.key.cmp(&b.key)));
        out
    }
}

/// A UPN names a principal when they are equal ignoring case (an enterprise name, as
/// S4U2Self with a UPN sends it), or when the user parts are equal and the UPN's domain is
/// the realm (alice@corp.example and alice@CORP.EXAMPLE). A UPN suffix that differs from the
/// realm cannot be matched without the directory.
pub fn upn_matches(upn: &str, principal: &str) -> bool {
    if upn.eq_ignore_ascii_case(principal) {
        return true;
    }
    match (upn.rsplit_once('@'), principal.rsplit_once('@')) {
        (Some((u, d)), Some((p, r))) => u.eq_ignore_ascii_case(p) && d.eq_ignore_ascii_case(r),
        _ => false,
    }
}

/// The address in the gateway's "ip:port" (or "[v6]:port", or bare address) notation.
pub(crate) fn parse_address(s: &str) -> Option<IpAddr> {
    s.parse::<std::net::SocketAddr>().map(|a| a.ip()).ok().or_else(|| s.parse::<IpAddr>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> Ev {
        Ev { file: 0, frame: 0, flow: None }
    }

    #[test]
    fn upn_forms() {
        assert!(upn_matches("alice@lab.test", "alice@lab.test"));
        assert!(upn_matches("Alice@Lab.Test", "alice@LAB.TEST"));
        assert!(!upn_matches("alice@lab.test", "alice@OTHER.TEST"));
        assert!(!upn_matches("alice@lab.test", "bob@LAB.TEST"));
        assert!(!upn_matches("alice@lab.test", "HTTP/alice@LAB.TEST"));
    }

    #[test]
    fn a_certificate_seen_first_then_its_device_id_is_one_device() {
        let mut d = Devices::new(10);
        let s = |x: i64| Timestamp(x * 1_000_000_000);
        let a: IpAddr = "10.0.0.5".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let k1 = d.observe(Observation { fingerprint: Some("ABCDEF0123456789FFFF"), address: Some(a), upn: Some("alice@lab.test"), ..Default::default() }, s(1), ev());
        assert_eq!(k1.as_deref(), Some("cert:abcdef0123456789"));
        let k2 = d.observe(
            Observation { device_id: Some("ANDROIDC1234"), fingerprint: Some("abcdef0123456789ffff"), ok: true, request: true, ..Default::default() },
            s(2),
            ev(),
        );
        assert_eq!(k2.as_deref(), Some("ANDROIDC1234"));
        assert_eq!(d.len(), 1);
        let dev = d.get("ANDROIDC1234").map(|x| (x.upn.clone(), x.requests, x.ok, x.first_seen));
        assert_eq!(dev, Some((Some("alice@lab.test".into()), 1, 1, s(1))));
        // The address alone is another device (NAT, a device without a certificate); and
        // so is another DeviceId from the same address.
        assert_eq!(d.observe(Observation { address: Some(a), ..Default::default() }, s(3), ev()).as_deref(), Some("ip:10.0.0.5"));
        assert_eq!(d.observe(Observation { address: Some(a), ..Default::default() }, s(3), ev()).as_deref(), Some("ip:10.0.0.5"));
        assert_eq!(d.observe(Observation { device_id: Some("OTHER"), address: Some(a), ..Default::default() }, s(4), ev()).as_deref(), Some("OTHER"));
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn failure_then_success() {
        let mut d = Devices::new(10);
        let t = Timestamp(1);
        let fail = Some((Step::Crl, Some(&kcd_findings::catalogue::CRL_UNREACHABLE), "crl_unreachable".into(), "timeout".into(), None));
        d.observe(Observation { device_id: Some("D"), failure: fail, ..Default::default() }, t, ev());
        assert_eq!(d.get("D").and_then(|x| x.failing.as_ref().map(|f| f.step)), Some(Step::Crl));
        d.observe(Observation { device_id: Some("D"), ok: true, request: true, ..Default::default() }, t, ev());
        let x = d.get("D").map(|x| (x.failing.is_none(), x.last_failure.is_some(), x.reached, x.requests, x.ok));
        assert_eq!(x, Some((true, true, Some(Step::Exchange), 2, 1)));
    }

    #[test]
    fn bounded() {
        let mut d = Devices::new(10);
        for i in 0..100 {
            d.observe(Observation { device_id: Some(&format!("dev{i}")), upn: Some("u@x"), ..Default::default() }, Timestamp(i), ev());
        }
        assert_eq!(d.len(), 10);
        assert_eq!(d.evicted, 90);
        assert!(d.get("dev99").is_some() && d.get("dev0").is_none());
        assert!(d.aliases.len() <= 30);
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_address("10.1.2.3:4433"), Some(IpAddr::from([10, 1, 2, 3])));
        assert_eq!(parse_address("10.1.2.3"), Some(IpAddr::from([10, 1, 2, 3])));
        assert!(parse_address("[::1]:80").is_some_and(|a| a.is_loopback()));
        assert_eq!(parse_address("nonsense"), None);
    }
}
