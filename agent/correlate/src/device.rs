//! Devices joined to principals. Kerberos never names the device: the gateway's own events
//! (EAS DeviceId, certificate UPN) and TLS (device address, certificate) do. A device is
//! tied to the principal whose UPN its certificate carries, for the time it was seen.

use std::collections::VecDeque;

use kcd_schema::Timestamp;

use crate::Map;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSighting {
    pub device: Box<str>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
}

/// Per UPN (lowercase), the devices seen presenting it, most recent last.
#[derive(Default)]
pub(crate) struct Devices {
    by_upn: Map<Box<str>, VecDeque<DeviceSighting>>,
}

const PER_UPN: usize = 8;

impl Devices {
    pub fn observe(&mut self, device: &str, upn: &str, at: Timestamp, max_upns: usize) -> bool {
        let key = upn.to_ascii_lowercase();
        let mut evicted = false;
        if !self.by_upn.contains_key(key.as_str()) && self.by_upn.len() >= max_upns {
            // The UPN seen least recently goes.
            let oldest = self
                .by_upn
                .iter()
                .map(|(k, v)| (v.back().map(|s| s.last_seen), k.clone()))
                .min();
            if let Some((_, k)) = oldest {
                self.by_upn.remove(&k);
                evicted = true;
            }
        }
        let list = self.by_upn.entry(key.into()).or_default();
        if let Some(s) = list.iter_mut().find(|s| &*s.device == device) {
            s.first_seen = s.first_seen.min(at);
            s.last_seen = s.last_seen.max(at);
        } else {
            if list.len() == PER_UPN {
                list.pop_front();
            }
            list.push_back(DeviceSighting { device: device.into(), first_seen: at, last_seen: at });
        }
        evicted
    }

    /// Devices that presented a UPN matching `principal` within `window` of `[from, to]`.
    pub fn for_principal(
        &self,
        principal: &str,
        from: Timestamp,
        to: Timestamp,
        window_ns: i64,
    ) -> Vec<&DeviceSighting> {
        let mut out = Vec::new();
        for (upn, list) in &self.by_upn {
            if !upn_matches(upn, principal) {
                continue;
            }
            for s in list {
                if s.last_seen.0 + window_ns >= from.0 && s.first_seen.0 - window_ns <= to.0 {
                    out.push(s);
                }
            }
        }
        out.sort_by(|a, b| a.first_seen.cmp(&b.first_seen).then_with(|| a.device.cmp(&b.device)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upn_forms() {
        assert!(upn_matches("alice@lab.test", "alice@lab.test"));
        assert!(upn_matches("Alice@Lab.Test", "alice@LAB.TEST"));
        assert!(!upn_matches("alice@lab.test", "alice@OTHER.TEST"));
        assert!(!upn_matches("alice@lab.test", "bob@LAB.TEST"));
        assert!(!upn_matches("alice@lab.test", "HTTP/alice@LAB.TEST"));
    }

    #[test]
    fn joins_by_upn_and_time_window() {
        let mut d = Devices::default();
        let s = |x: i64| Timestamp(x * 1_000_000_000);
        d.observe("ANDROIDC1234", "alice@lab.test", s(100), 10);
        d.observe("ANDROIDC1234", "alice@lab.test", s(160), 10);
        d.observe("iPhoneXYZ", "alice@lab.test", s(5000), 10);
        d.observe("BOBPHONE", "bob@lab.test", s(150), 10);
        let names = |v: Vec<&DeviceSighting>| v.iter().map(|x| x.device.to_string()).collect::<Vec<_>>();
        assert_eq!(names(d.for_principal("alice@LAB.TEST", s(170), s(170), 30 * 1_000_000_000)), ["ANDROIDC1234"]);
        assert_eq!(names(d.for_principal("alice@lab.test", s(0), s(6000), 0)), ["ANDROIDC1234", "iPhoneXYZ"]);
        assert!(d.for_principal("alice@lab.test", s(1000), s(2000), 0).is_empty());
    }

    #[test]
    fn bounded() {
        let mut d = Devices::default();
        let mut evictions = 0;
        for i in 0..100 {
            evictions += usize::from(d.observe("dev", &format!("u{i}@x"), Timestamp(i), 10));
        }
        assert_eq!(d.by_upn.len(), 10);
        assert_eq!(evictions, 90);
        assert!(d.by_upn.contains_key("u99@x"));
    }
}
