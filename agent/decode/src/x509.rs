//! Certificates seen on the wire, read with the workspace's one certificate parser
//! (kcd-cert), and the checks DOMAIN.md asks of a device certificate, at capture time.

use kcd_cert::{CertInfo, OID_ANY_EKU, OID_CLIENT_AUTH};
use kcd_schema::{CertProblem, Timestamp, X509};

const EKU_NAMES: &[(&str, &str)] = &[
    ("1.3.6.1.5.5.7.3.1", "server_auth"),
    ("1.3.6.1.5.5.7.3.2", "client_auth"),
    ("1.3.6.1.5.5.7.3.3", "code_signing"),
    ("1.3.6.1.5.5.7.3.4", "email_protection"),
    ("1.3.6.1.5.5.7.3.8", "time_stamping"),
    ("1.3.6.1.5.5.7.3.9", "ocsp_signing"),
    ("1.3.6.1.4.1.311.20.2.2", "smartcard_logon"),
    ("1.3.6.1.5.2.3.4", "pkinit_client_auth"),
    ("2.5.29.37.0", "any"),
];

fn hex_lower(b: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(HEX[usize::from(x >> 4)]));
        s.push(char::from(HEX[usize::from(x & 15)]));
    }
    s
}

/// Unix seconds as "2026-12-05T12:00:00Z" (years beyond 9999 as the number).
pub fn rfc3339(secs: i64) -> String {
    match chrono::DateTime::from_timestamp(secs, 0) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => secs.to_string(),
    }
}

/// A certificate of a handshake; `client`: a device certificate, which gets the device
/// checks besides validity.
pub fn certificate(der: &[u8], at: Timestamp, client: bool) -> X509 {
    let (mut x, validity) = timeless(der, client);
    at_time(&mut x, validity, at);
    x
}

/// Certificates held for reuse: a gateway's server chain comes in every handshake and a
/// device sends the same certificate on every connection, and reading one (names to RFC
/// 4514 text above all) costs more than the rest of its connection. Keyed by the DER
/// itself (compared on a hit), so only identical bytes share a result.
pub struct CertCache {
    entries: crate::Lru<u64, Cached>,
    /// CRLs the same way: every device's fetch of a CDP brings the same CRL until the CA
    /// publishes the next one.
    crls: crate::Lru<u64, CachedCrl>,
    hasher: foldhash::fast::RandomState,
}

/// What a CRL says, without the capture-time checks; `None`: not a CRL.
pub type CrlFacts = Option<CrlSummary>;

#[derive(Clone)]
pub struct CrlSummary {
    pub issuer: String,
    pub this_update: i64,
    pub next_update: Option<i64>,
    pub number: Option<u128>,
    pub delta_base: Option<u128>,
    pub revoked: u64,
}

struct CachedCrl {
    der: Box<[u8]>,
    facts: CrlFacts,
}

/// Distinct CRLs kept, and the largest kept: a large CRL costs more to hold than to
/// read again relative to its reading, and a capture seldom has many distinct ones.
pub const CRL_CACHE: usize = 32;
pub const CRL_CACHE_MAX_BYTES: usize = 256 * 1024;

struct Cached {
    der: Box<[u8]>,
    client: bool,
    x509: X509,
    validity: Option<(i64, i64)>,
}

/// Distinct certificates kept (about 3 KB each with their text).
pub const CERT_CACHE: usize = 512;

impl Default for CertCache {
    fn default() -> Self {
        Self { entries: crate::lru(), crls: crate::lru(), hasher: foldhash::fast::RandomState::default() }
    }
}

impl CertCache {
    pub fn certificate(&mut self, der: &[u8], at: Timestamp, client: bool) -> X509 {
        use std::hash::BuildHasher;
        let key = self.hasher.hash_one((der, client));
        if let Some(c) = self.entries.get(&key) {
            if *c.der == *der && c.client == client {
                let mut x = c.x509.clone();
                at_time(&mut x, c.validity, at);
                return x;
            }
        }
        let (x509, validity) = timeless(der, client);
        let mut x = x509.clone();
        at_time(&mut x, validity, at);
        self.entries.put(key, Cached { der: der.into(), client, x509, validity });
        while self.entries.len() > CERT_CACHE {
            self.entries.pop_lru();
        }
        x
    }

    /// A CRL's facts (`der`: the body, PEM already removed).
    pub fn crl(&mut self, der: &[u8]) -> CrlFacts {
        use std::hash::BuildHasher;
        if der.len() > CRL_CACHE_MAX_BYTES {
            return crl_facts(der);
        }
        let key = self.hasher.hash_one(der);
        if let Some(c) = self.crls.get(&key) {
            if *c.der == *der {
                return c.facts.clone();
            }
        }
        let facts = crl_facts(der);
        self.crls.put(key, CachedCrl { der: der.into(), facts: facts.clone() });
        while self.crls.len() > CRL_CACHE {
            self.crls.pop_lru();
        }
        facts
    }
}

fn crl_facts(der: &[u8]) -> CrlFacts {
    let p = kcd_cert::CrlInfo::parse(der).ok()?;
    Some(CrlSummary {
        issuer: p.issuer,
        this_update: p.this_update,
        next_update: p.next_update,
        number: p.number,
        delta_base: p.delta_base,
        revoked: p.entries.len() as u64,
    })
}

/// The checks that depend on the capture time, after the others.
fn at_time(x: &mut X509, validity: Option<(i64, i64)>, at: Timestamp) {
    let Some((not_before, not_after)) = validity else { return };
    let now = at.secs();
    if now > not_after {
        x.problems.push(CertProblem::ExpiredAtCapture);
    }
    if now < not_before {
        x.problems.push(CertProblem::NotYetValidAtCapture);
    }
}

/// Everything but the capture-time checks, and the validity period for them.
fn timeless(der: &[u8], client: bool) -> (X509, Option<(i64, i64)>) {
    let c = match CertInfo::parse(der) {
        Ok(c) => c,
        Err(e) => {
            let (sha256, sha1) = kcd_cert::fingerprints(der);
            let x = X509 {
                sha256: hex_lower(&sha256),
                sha1: hex_lower(&sha1),
                malformed: Some(e.to_string()),
                ..X509::default()
            };
            return (x, None);
        }
    };
    let validity = Some((c.not_before, c.not_after));
    let mut problems = Vec::new();
    if client {
        if c.upns.is_empty() && c.emails.is_empty() {
            problems.push(CertProblem::NoUpnOrEmail);
        }
        // No EKU at all counts too: the gateway refuses it unless configured to allow it.
        if c.eku.as_ref().is_none_or(|v| !v.iter().any(|o| o == OID_CLIENT_AUTH || o == OID_ANY_EKU)) {
            problems.push(CertProblem::NoClientAuthEku);
        }
        let http = c.crl_urls.iter().any(|u| is_http(u));
        let ldap = c.crl_urls.iter().any(|u| u.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("ldap://")));
        if !http {
            problems.push(if ldap { CertProblem::LdapOnlyCdp } else { CertProblem::NoHttpCdp });
        }
    }
    let eku = c
        .eku
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|o| EKU_NAMES.iter().find(|(k, _)| k == o).map_or_else(|| o.clone(), |(_, n)| (*n).to_string()))
        .collect();
    let x = X509 {
        serial: c.serial_hex(),
        not_before: rfc3339(c.not_before),
        not_after: rfc3339(c.not_after),
        sha256: hex_lower(&c.sha256),
        sha1: hex_lower(&c.sha1),
        san_dns: c.dns_names,
        san_email: c.emails,
        san_uri: c.uris,
        san_upn: c.upns,
        eku,
        cdp: c.crl_urls,
        delta_cdp: c.delta_urls,
        aia_ca_issuers: c.aia_ca_issuers,
        aia_ocsp: c.aia_ocsp,
        key_type: Some(c.key_type),
        key_bits: c.key_bits,
        is_ca: c.is_ca,
        problems,
        malformed: None,
        subject: c.subject,
        issuer: c.issuer,
    };
    (x, validity)
}

pub fn is_http(u: &str) -> bool {
    let l = u.get(..8).unwrap_or(u).to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../cert/tests/pki/crl").join(name);
        std::fs::read(p).expect("test CRL")
    }

    /// The facts of a CRL read again and from the cache are what `openssl crl -text` says
    /// (issuing.crl: CRL number 3, 2 revoked; issuing+.crl: delta on base 3, number 4, 2
    /// revoked), and two CRLs of one issuer are not confused.
    #[test]
    fn cached_crls_keep_their_own_facts() {
        let mut cache = CertCache::default();
        let base = read("issuing.crl");
        let delta = read("issuing+.crl");
        for _ in 0..3 {
            let b = cache.crl(&base).expect("a CRL");
            assert_eq!((b.number, b.delta_base, b.revoked), (Some(3), None, 2));
            assert_eq!(b.issuer, "CN=Lab Issuing CA");
            let d = cache.crl(&delta).expect("a CRL");
            assert_eq!((d.number, d.delta_base, d.revoked), (Some(4), Some(3), 2));
        }
        assert!(cache.crl(&base[..base.len() - 1]).is_none());
        assert!(cache.crl(b"not a CRL").is_none());
    }
}
