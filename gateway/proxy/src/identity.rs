//! Certificate to user: the gateway's policy on top of the chain webpki verified (the
//! Client Authentication EKU, also when the certificate has no EKU at all), the user's
//! name from the UPN, the e-mail address or the subject CN, an optional suffix rewrite,
//! and the realm chosen by the UPN's suffix among the domain/DC pairs.

use kcd_cert::CertInfo;
use serde::Deserialize;

use crate::crl::Refusal;
use crate::reason::Reason;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapFrom {
    /// SAN otherName 1.3.6.1.4.1.311.20.2.3 (what AD CS templates put in).
    #[default]
    Upn,
    /// SAN rfc822Name.
    Email,
    /// The subject's CN (as a UPN: "alice@lab.test").
    SubjectCn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub from: MapFrom,
    /// (from suffix, to suffix), lowercase, first match wins: "corp.example" -> "lab.test".
    pub rewrites: Vec<(String, String)>,
    /// Accept a certificate without any EKU (RFC 5280 reads that as "any purpose").
    pub allow_no_eku: bool,
}

/// The user a certificate stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// As sent to the KDC (an enterprise name): "alice@lab.test".
    pub upn: String,
    /// The realm whose domain controllers are asked.
    pub realm: String,
    /// The name in the certificate, before any rewrite.
    pub certificate_name: String,
}

/// The EKU policy webpki does not apply: a certificate with no EKU is refused unless
/// allowed (webpki accepts it).
pub fn check_eku(cert: &CertInfo, allow_no_eku: bool) -> Result<(), Refusal> {
    match cert.client_auth() {
        Some(true) => Ok(()),
        Some(false) => Err(Refusal::new(Reason::BadEku, "the certificate's EKU lacks Client Authentication (1.3.6.1.5.5.7.3.2)")),
        None if allow_no_eku => Ok(()),
        None => Err(Refusal::new(Reason::BadEku, "the certificate has no EKU; Client Authentication is required")),
    }
}

/// Maps a verified certificate to a user; `realms` are the configured realms, the first
/// being the service account's (asked when no realm matches the suffix: a UPN suffix need
/// not be a realm, and the enterprise name lets the KDC find the account).
pub fn map_user(cert: &CertInfo, m: &Mapping, realms: &[String]) -> Result<User, Refusal> {
    let name = match m.from {
        MapFrom::Upn => {
            if cert.malformed_upns > 0 {
                return Err(Refusal::new(Reason::NoUpn, "the certificate's UPN is not a UTF8String"));
            }
            let mut distinct: Vec<String> = cert.upns.iter().map(|u| u.to_lowercase()).collect();
            distinct.dedup();
            distinct.sort();
            distinct.dedup();
            match distinct.len() {
                0 => return Err(Refusal::new(Reason::NoUpn, "the certificate's Subject Alternative Name has no UPN")),
                1 => cert.upns[0].clone(),
                _ => return Err(Refusal::new(Reason::TwoUpns, format!("the certificate carries {} different UPNs", distinct.len()))),
            }
        }
        MapFrom::Email => match cert.emails.as_slice() {
            [] => return Err(Refusal::new(Reason::NoUpn, "the certificate's Subject Alternative Name has no e-mail address")),
            [one] => one.clone(),
            many if many.iter().all(|e| e.eq_ignore_ascii_case(&many[0])) => many[0].clone(),
            _ => return Err(Refusal::new(Reason::TwoUpns, "the certificate carries several e-mail addresses")),
        },
        MapFrom::SubjectCn => match &cert.subject_cn {
            Some(cn) => cn.clone(),
            None => return Err(Refusal::new(Reason::NoUpn, "the certificate's subject has no CN")),
        },
    };
    let (user, suffix) = match name.rsplit_once('@') {
        Some((u, s)) if !u.is_empty() && !s.is_empty() && !u.contains('@') => (u.to_string(), s.to_lowercase()),
        _ => return Err(Refusal::new(Reason::NoUpn, format!("{name:?} is not name@domain"))),
    };
    // The whole name, suffix included: it goes to the KDC as an enterprise name and picks
    // the realm (a NUL or TAB in the suffix once passed; found by fuzzing).
    if name.chars().any(|c| c.is_control() || c.is_whitespace() || c == '/') || name.len() > 256 {
        return Err(Refusal::new(Reason::NoUpn, "the certificate's name has spaces, '/' or control characters"));
    }
    let suffix = m
        .rewrites
        .iter()
        .find(|(from, _)| *from == suffix)
        .map(|(_, to)| to.clone())
        .unwrap_or(suffix);
    let upper = suffix.to_uppercase();
    let realm = realms.iter().find(|r| **r == upper).or(realms.first()).cloned().unwrap_or(upper);
    Ok(User { upn: format!("{user}@{suffix}"), realm, certificate_name: name })
}
