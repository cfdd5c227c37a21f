//! Revocation by CRLs fetched over HTTP, not by webpki's CRL support (which takes no delta
//! CRLs, uses only the first CRL of an issuer and verifies its signature on every lookup).
//!
//! A fetched CRL is verified once, against the CA certificate matched by name AND key
//! identifier (a renewed CA keeps its name and changes its key), and kept as serial sets.
//! A certificate is revoked when its serial is in the base CRL or in an applicable delta,
//! and not taken back by the delta's removeFromCRL: base ∪ delta − removeFromCRL. The
//! snapshot of every CRL is immutable; the fetcher builds the next one and swaps it in.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kcd_cert::{CertInfo, CrlInfo};
use rustls::pki_types::SignatureVerificationAlgorithm;

use crate::reason::Reason;

/// A refusal with what the administrator needs to find the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub detail: String,
}

impl Refusal {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into() }
    }
}

/// A CRL whose signature verified, reduced to what lookups need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCrl {
    pub url: String,
    pub issuer: String,
    pub issuer_der: Vec<u8>,
    /// The signing CA's subject key identifier.
    pub key_id: Option<Vec<u8>>,
    pub number: Option<u128>,
    pub delta_base: Option<u128>,
    pub this_update: i64,
    pub next_update: Option<i64>,
    pub next_publish: Option<i64>,
    pub revoked: HashSet<Vec<u8>>,
    pub removed: HashSet<Vec<u8>>,
    pub size: usize,
    pub fetched_at: i64,
}

impl VerifiedCrl {
    fn is_for(&self, issuer: &CertInfo) -> bool {
        self.issuer_der == issuer.subject_der && key_ids_agree(self.key_id.as_deref(), issuer.subject_key_id.as_deref())
    }

    /// When to fetch again: the CA's announced next publication, else a little before
    /// nextUpdate (a tenth of the CRL's lifetime, as AD CS's overlap).
    pub fn refresh_at(&self) -> Option<i64> {
        if let Some(p) = self.next_publish {
            return Some(p);
        }
        let next = self.next_update?;
        let life = (next - self.this_update).max(0);
        Some(next - life / 10)
    }
}

fn key_ids_agree(a: Option<&[u8]>, b: Option<&[u8]>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        // Without identifiers on one side only the name can match; the signature decides.
        _ => true,
    }
}

/// Verifies a fetched CRL against the known CA certificates: the issuer by name and key
/// identifier, then the signature with the given algorithms (rustls's provider's).
pub fn verify_crl(
    der: &[u8],
    url: &str,
    cas: &[CertInfo],
    algs: &[&dyn SignatureVerificationAlgorithm],
    now: i64,
) -> Result<VerifiedCrl, Refusal> {
    let crl = CrlInfo::parse(der).map_err(|e| Refusal::new(Reason::CrlBadSignature, format!("{url}: unreadable CRL: {e}")))?;
    let named: Vec<&CertInfo> = cas.iter().filter(|c| c.subject_der == crl.issuer_der).collect();
    if named.is_empty() {
        return Err(Refusal::new(
            Reason::CrlWrongIssuer,
            format!("{url}: the CRL is issued by {}, which is not in the client certificate chain", crl.issuer),
        ));
    }
    let keyed: Vec<&CertInfo> = named
        .iter()
        .copied()
        .filter(|c| key_ids_agree(crl.authority_key_id.as_deref(), c.subject_key_id.as_deref()))
        .collect();
    if keyed.is_empty() {
        return Err(Refusal::new(
            Reason::CrlWrongIssuer,
            format!("{url}: the CRL of {} is signed by a key the chain does not hold (authority key id {})", crl.issuer, crl.authority_key_id.as_deref().map(kcd_cert::hex_upper).unwrap_or_default()),
        ));
    }
    let mut signer = None;
    for ca in keyed {
        let alg = algs.iter().find(|a| {
            a.signature_alg_id().as_ref() == crl.signature_algorithm.as_slice()
                && a.public_key_alg_id().as_ref() == ca.key_algorithm.as_slice()
        });
        if let Some(alg) = alg {
            if alg.verify_signature(&ca.public_key, &crl.tbs, &crl.signature).is_ok() {
                signer = Some(ca);
                break;
            }
        }
    }
    let Some(ca) = signer else {
        return Err(Refusal::new(Reason::CrlBadSignature, format!("{url}: the signature of the CRL of {} does not verify", crl.issuer)));
    };
    let mut revoked = HashSet::new();
    let mut removed = HashSet::new();
    for e in crl.entries {
        if e.remove_from_crl {
            removed.insert(e.serial);
        } else {
            revoked.insert(e.serial);
        }
    }
    Ok(VerifiedCrl {
        url: url.to_string(),
        issuer: crl.issuer,
        issuer_der: crl.issuer_der,
        key_id: ca.subject_key_id.clone(),
        number: crl.number,
        delta_base: crl.delta_base,
        this_update: crl.this_update,
        next_update: crl.next_update,
        next_publish: crl.next_publish,
        revoked,
        removed,
        size: der.len(),
        fetched_at: now,
    })
}

/// A newly fetched CRL replaces the one held only if its number does not go back.
pub fn accept_newer(previous: Option<&VerifiedCrl>, new: VerifiedCrl) -> Result<VerifiedCrl, Refusal> {
    if let (Some(p), Some(n)) = (previous.and_then(|p| p.number), new.number) {
        if n < p {
            return Err(Refusal::new(
                Reason::CrlNumberRegressed,
                format!("{}: CRL number {n} is older than the {p} already held; kept {p}", new.url),
            ));
        }
    }
    Ok(new)
}

/// What is known about one CDP URL.
#[derive(Debug, Clone, Default)]
pub struct UrlState {
    /// The last CRL that verified: served until it expires, whatever later fetches do.
    pub good: Option<Arc<VerifiedCrl>>,
    /// The last fetch's failure, cleared by a success.
    pub error: Option<Refusal>,
    pub failures: u64,
}

/// Every CDP's state, immutable once published.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub urls: HashMap<String, Arc<UrlState>>,
}

/// Where the revocation answer came from, for the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub source: String,
    pub crl_number: Option<u128>,
    /// Seconds since the CRL was fetched.
    pub age: i64,
    pub delta: Option<String>,
}

pub fn is_http(u: &str) -> bool {
    u.len() > 7 && u.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("http://"))
}

impl Snapshot {
    fn lookup<'a>(&'a self, url: &str, issuer: &CertInfo) -> Result<&'a Arc<VerifiedCrl>, Refusal> {
        let Some(st) = self.urls.get(url) else {
            return Err(Refusal::new(Reason::CrlMissing, format!("{url}: not fetched yet")));
        };
        if let Some(g) = st.good.as_ref() {
            if g.is_for(issuer) {
                return Ok(g);
            }
            return Err(Refusal::new(
                Reason::CrlWrongIssuer,
                format!("{url}: holds the CRL of {} with another key, not of the certificate's issuer {}", g.issuer, issuer.subject),
            ));
        }
        Err(st.error.clone().unwrap_or_else(|| Refusal::new(Reason::CrlMissing, format!("{url}: not fetched yet"))))
    }

    /// The revocation status of `cert`, issued by `issuer`, at `now` (Unix seconds).
    pub fn check(&self, cert: &CertInfo, issuer: &CertInfo, now: i64) -> Result<Checked, Refusal> {
        let http: Vec<&String> = cert.crl_urls.iter().filter(|u| is_http(u)).collect();
        if http.is_empty() {
            if cert.crl_urls.is_empty() {
                return Err(Refusal::new(Reason::CrlMissing, format!("{} has no CRL distribution point", cert.subject)));
            }
            return Err(Refusal::new(Reason::CdpLdapOnly, format!("{} lists only {}", cert.subject, cert.crl_urls.join(", "))));
        }
        let mut first_err = None;
        let mut base = None;
        for u in &http {
            match self.lookup(u, issuer) {
                Ok(c) => {
                    base = Some(c);
                    break;
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let Some(base) = base else {
            return Err(first_err.unwrap_or_else(|| Refusal::new(Reason::CrlMissing, "no CRL")));
        };
        if base.delta_base.is_some() {
            return Err(Refusal::new(Reason::CrlBaseMismatch, format!("{}: a delta CRL where the base CRL belongs", base.url)));
        }
        if base.next_update.is_some_and(|t| t < now) {
            return Err(Refusal::new(Reason::CrlExpired, format!("{}: the CRL of {} expired (nextUpdate passed)", base.url, base.issuer)));
        }
        let mut delta = None;
        // The first HTTP delta location is the one that counts (AD CS lists one).
        if let Some(u) = cert.delta_urls.iter().find(|u| is_http(u)) {
            let d = self.lookup(u, issuer)?;
            if d.next_update.is_some_and(|t| t < now) {
                return Err(Refusal::new(Reason::CrlExpired, format!("{u}: the delta CRL of {} expired", d.issuer)));
            }
            let (Some(db), Some(bn)) = (d.delta_base, base.number) else {
                return Err(Refusal::new(Reason::CrlBaseMismatch, format!("{u}: not a delta CRL, or the base has no CRL number")));
            };
            if db > bn {
                return Err(Refusal::new(
                    Reason::CrlBaseMismatch,
                    format!("{u}: the delta extends base CRL {db}, newer than the base {bn} held"),
                ));
            }
            // A delta no newer than the base adds nothing the base does not hold.
            if d.number.is_some_and(|n| n > bn) {
                delta = Some(d);
            }
        }
        let serial = &cert.serial;
        let removed = delta.is_some_and(|d| d.removed.contains(serial));
        let listed = base.revoked.contains(serial) || delta.is_some_and(|d| d.revoked.contains(serial));
        if listed && !removed {
            let by = if delta.is_some_and(|d| d.revoked.contains(serial)) { delta.map(|d| d.url.as_str()) } else { Some(base.url.as_str()) };
            return Err(Refusal::new(
                Reason::Revoked,
                format!("serial {} revoked by {} ({})", cert.serial_hex(), base.issuer, by.unwrap_or_default()),
            ));
        }
        Ok(Checked {
            source: base.url.clone(),
            crl_number: delta.and_then(|d| d.number).or(base.number),
            age: (now - base.fetched_at).max(0),
            delta: delta.map(|d| d.url.clone()),
        })
    }

    /// The whole chain: every certificate below a self-signed one is checked against its
    /// issuer's CRL (an intermediate revoked by the root refuses its devices too).
    pub fn check_chain(&self, leaf: &CertInfo, others: &[&CertInfo], now: i64) -> Result<Checked, Refusal> {
        let mut cur = leaf;
        let mut first = None;
        for _ in 0..8 {
            if cur.subject_der == cur.issuer_der && key_ids_agree(cur.authority_key_id.as_deref(), cur.subject_key_id.as_deref()) {
                break;
            }
            let Some(issuer) = others.iter().copied().find(|c| {
                c.subject_der == cur.issuer_der && key_ids_agree(cur.authority_key_id.as_deref(), c.subject_key_id.as_deref())
            }) else {
                break;
            };
            let c = self.check(cur, issuer, now)?;
            first.get_or_insert(c);
            cur = issuer;
        }
        first.ok_or_else(|| Refusal::new(Reason::CrlMissing, format!("no issuer of {} in the chain to check revocation with", leaf.subject)))
    }
}
