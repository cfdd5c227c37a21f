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
    // Years 1970 to 9999 written directly: chrono's formatter, which interprets its format
    // string each time, cost 3% of a mixed replay (two dates per CRL fetch). Other years go
    // to chrono, which the tests compare this with.
    const Y10K: i64 = 253_402_300_800;
    if !(0..Y10K).contains(&secs) {
        return rfc3339_chrono(secs);
    }
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    let mut b = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, v: i64, width: usize| {
        let mut v = v;
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, y, 4);
    put(5, m, 2);
    put(8, d, 2);
    put(11, rem / 3600, 2);
    put(14, rem / 60 % 60, 2);
    put(17, rem % 60, 2);
    b.iter().map(|&c| char::from(c)).collect()
}

fn rfc3339_chrono(secs: i64) -> String {
    match chrono::DateTime::from_timestamp(secs, 0) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => secs.to_string(),
    }
}

/// Year, month, day of a count of days since 1970-01-01 (not negative), by Howard
/// Hinnant's `civil_from_days` (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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
    /// Distinguished names as text: a server names the same acceptable CAs in every
    /// CertificateRequest, and turning one into RFC 4514 text (each attribute's name
    /// looked up in const-oid's table) cost a fifth of a mixed replay.
    names: crate::Lru<u64, CachedName>,
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

struct CachedName {
    der: Box<[u8]>,
    text: String,
}

/// Distinct names kept, and the longest kept (a name is a few hundred bytes).
pub const NAME_CACHE: usize = 256;
const NAME_CACHE_MAX_BYTES: usize = 1024;

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
        Self { entries: crate::lru(), crls: crate::lru(), names: crate::lru(), hasher: foldhash::fast::RandomState::default() }
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

    /// A distinguished name (DER) as RFC 4514 text, or what to show when it is unreadable.
    pub fn name(&mut self, der: &[u8]) -> String {
        use std::hash::BuildHasher;
        let read = |der: &[u8]| kcd_cert::name_string(der).unwrap_or_else(|_| "(unreadable name)".into());
        if der.len() > NAME_CACHE_MAX_BYTES {
            return read(der);
        }
        let key = self.hasher.hash_one(der);
        if let Some(c) = self.names.get(&key) {
            if *c.der == *der {
                return c.text.clone();
            }
        }
        let text = read(der);
        self.names.put(key, CachedName { der: der.into(), text: text.clone() });
        while self.names.len() > NAME_CACHE {
            self.names.pop_lru();
        }
        text
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

    /// The direct writing of dates is chrono's, second for second around leap days,
    /// century years and the ends of the range, and day by day over the whole range.
    #[test]
    fn rfc3339_is_chronos() {
        let mut probes: Vec<i64> = vec![0, 1, 59, 60, 86_399, 86_400, 951_782_400, 951_868_799, 4_107_542_400, 253_402_300_799, 253_402_300_800, -1, -86_400, i64::MAX, i64::MIN];
        probes.extend((0..253_402_300_800i64).step_by(86_400 * 7 + 3_601));
        for p in [68_169_600i64, 951_782_400, 4_107_542_400, 13_574_563_200] {
            probes.extend((p - 86_400 * 3..p + 86_400 * 3).step_by(3_599));
        }
        for s in probes {
            assert_eq!(rfc3339(s), rfc3339_chrono(s), "{s}");
        }
    }

    /// A DER Name with one CN (RFC 5280: SEQUENCE OF SET OF AttributeTypeAndValue, CN
    /// 2.5.4.3 as UTF8String), written by hand.
    fn cn(text: &str) -> Vec<u8> {
        let n = text.len() as u8;
        let mut v = vec![0x30, n + 11, 0x31, n + 9, 0x30, n + 7, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, n];
        v.extend_from_slice(text.as_bytes());
        v
    }

    /// Names read again and from the cache give the same RFC 4514 text, distinct names
    /// stay distinct, and an unreadable one says so.
    #[test]
    fn cached_names_keep_their_own_text() {
        let mut cache = CertCache::default();
        for _ in 0..3 {
            assert_eq!(cache.name(&cn("Lab Issuing CA")), "CN=Lab Issuing CA");
            assert_eq!(cache.name(&cn("Other Root")), "CN=Other Root");
            assert_eq!(cache.name(&cn("a+b,c")), "CN=a\\+b\\,c");
        }
        let mut cut = cn("Lab Issuing CA");
        cut.pop();
        assert_eq!(cache.name(&cut), "(unreadable name)");
        assert_eq!(cache.name(&cut), "(unreadable name)");
    }
}
