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
    let c = match CertInfo::parse(der) {
        Ok(c) => c,
        Err(e) => {
            let (sha256, sha1) = kcd_cert::fingerprints(der);
            return X509 {
                sha256: hex_lower(&sha256),
                sha1: hex_lower(&sha1),
                malformed: Some(e.to_string()),
                ..X509::default()
            };
        }
    };
    let now = at.secs();
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
    if now > c.not_after {
        problems.push(CertProblem::ExpiredAtCapture);
    }
    if now < c.not_before {
        problems.push(CertProblem::NotYetValidAtCapture);
    }
    let eku = c
        .eku
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|o| EKU_NAMES.iter().find(|(k, _)| k == o).map_or_else(|| o.clone(), |(_, n)| (*n).to_string()))
        .collect();
    X509 {
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
    }
}

pub fn is_http(u: &str) -> bool {
    let l = u.get(..8).unwrap_or(u).to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}
