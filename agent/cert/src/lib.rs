//! X.509 certificates and CRLs, reduced to what a certificate-to-Kerberos gateway decides
//! with and what the agent reports: names, serial, validity, the UPN and e-mail of the
//! Subject Alternative Name, the EKU, the CRL distribution points, key identifiers, and for
//! CRLs their numbers, delta indicator and entries. One parser (RustCrypto's `x509-cert`)
//! for the gateway, which verifies devices, and the agent, which decodes certificates seen
//! in TLS 1.2 handshakes.
//!
//! Nothing here verifies a signature: the caller holds the crypto provider (the gateway uses
//! rustls's), and gets the signed bytes, the algorithm and the key from here.

#![forbid(unsafe_code)]

use der::asn1::{Ia5String, ObjectIdentifier, Uint};
use der::{Decode, Encode, Tag, Tagged};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, BasicConstraints, CrlDistributionPoints, ExtendedKeyUsage,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::time::Time;
use x509_cert::Certificate;

/// Microsoft's UPN in a SAN otherName (szOID_NT_PRINCIPAL_NAME).
pub const OID_UPN: &str = "1.3.6.1.4.1.311.20.2.3";
/// Client Authentication EKU.
pub const OID_CLIENT_AUTH: &str = "1.3.6.1.5.5.7.3.2";
pub const OID_SERVER_AUTH: &str = "1.3.6.1.5.5.7.3.1";
/// anyExtendedKeyUsage.
pub const OID_ANY_EKU: &str = "2.5.29.37.0";
const OID_SAN: &str = "2.5.29.17";
const OID_EKU: &str = "2.5.29.37";
const OID_CDP: &str = "2.5.29.31";
const OID_FRESHEST: &str = "2.5.29.46";
const OID_AKI: &str = "2.5.29.35";
const OID_SKI: &str = "2.5.29.14";
const OID_AIA: &str = "1.3.6.1.5.5.7.1.1";
const OID_AIA_OCSP: &str = "1.3.6.1.5.5.7.48.1";
const OID_AIA_CA_ISSUERS: &str = "1.3.6.1.5.5.7.48.2";
const OID_BASIC: &str = "2.5.29.19";
const OID_CRL_NUMBER: &str = "2.5.29.20";
const OID_DELTA: &str = "2.5.29.27";
const OID_IDP: &str = "2.5.29.28";
const OID_REASON: &str = "2.5.29.21";
/// Microsoft's "Next CRL Publish": when the CA will publish the next CRL, before nextUpdate.
const OID_NEXT_PUBLISH: &str = "1.3.6.1.4.1.311.21.4";
/// Microsoft's CA version (key index) on CA certificates and CRLs: noted, not needed.
const OID_MS_CA_VERSION: &str = "1.3.6.1.4.1.311.21.1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("not a DER certificate: {0}")]
    Certificate(String),
    #[error("not a DER CRL: {0}")]
    Crl(String),
    #[error("extension {oid}: {problem}")]
    Extension { oid: String, problem: String },
    #[error("PEM: {0}")]
    Pem(String),
}

fn ext_err(oid: &str, e: impl std::fmt::Display) -> CertError {
    CertError::Extension { oid: oid.to_string(), problem: e.to_string() }
}

/// A certificate as the gateway decides on it and reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// RFC 4514 strings, as OpenSSL prints them with `-nameopt RFC2253`.
    pub subject: String,
    pub issuer: String,
    /// The DER of the names: issuers are matched on these.
    pub subject_der: Vec<u8>,
    pub issuer_der: Vec<u8>,
    /// Big-endian, without leading zero bytes.
    pub serial: Vec<u8>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub sha256: [u8; 32],
    /// The thumbprint Windows certutil and Suricata show.
    pub sha1: [u8; 20],
    /// Every otherName UPN that is a UTF8String, in order.
    pub upns: Vec<String>,
    /// otherName UPNs of another type (not usable, but a reason to refuse).
    pub malformed_upns: usize,
    pub emails: Vec<String>,
    /// SAN dNSName and uniformResourceIdentifier entries.
    pub dns_names: Vec<String>,
    pub uris: Vec<String>,
    pub subject_cn: Option<String>,
    /// None: no EKU extension at all (RFC 5280: any purpose).
    pub eku: Option<Vec<String>>,
    /// URIs of the CRL distribution points (http, ldap, ... as written).
    pub crl_urls: Vec<String>,
    /// URIs of the freshest-CRL (delta) distribution points.
    pub delta_urls: Vec<String>,
    /// Authority Information Access: caIssuers and OCSP URIs.
    pub aia_ca_issuers: Vec<String>,
    pub aia_ocsp: Vec<String>,
    pub authority_key_id: Option<Vec<u8>>,
    pub subject_key_id: Option<Vec<u8>>,
    pub is_ca: bool,
    /// The SubjectPublicKeyInfo's AlgorithmIdentifier contents (without its SEQUENCE
    /// header, as rustls's algorithm tables hold them) and the key bits.
    pub key_algorithm: Vec<u8>,
    pub public_key: Vec<u8>,
    /// The key's algorithm as administrators name it: rsa, ec, ed25519, ed448, dsa, or
    /// the OID; and its size in bits where the encoding tells (RSA modulus, EC curve).
    pub key_type: String,
    pub key_bits: Option<u32>,
}

impl CertInfo {
    pub fn parse(der_bytes: &[u8]) -> Result<CertInfo, CertError> {
        let c = Certificate::from_der(der_bytes).map_err(|e| CertError::Certificate(e.to_string()))?;
        let tbs = c.tbs_certificate();
        let enc = |n: &x509_cert::name::Name| n.to_der().map_err(|e| CertError::Certificate(e.to_string()));
        let mut info = CertInfo {
            subject: tbs.subject().to_string(),
            issuer: tbs.issuer().to_string(),
            subject_der: enc(tbs.subject())?,
            issuer_der: enc(tbs.issuer())?,
            serial: strip_zeros(tbs.serial_number().as_bytes()).to_vec(),
            not_before: unix(tbs.validity().not_before),
            not_after: unix(tbs.validity().not_after),
            sha256: Sha256::digest(der_bytes).into(),
            sha1: Sha1::digest(der_bytes).into(),
            upns: Vec::new(),
            malformed_upns: 0,
            emails: Vec::new(),
            dns_names: Vec::new(),
            uris: Vec::new(),
            subject_cn: tbs.subject().common_name().ok().flatten().map(|cn| cn.value().into_owned()),
            eku: None,
            crl_urls: Vec::new(),
            delta_urls: Vec::new(),
            aia_ca_issuers: Vec::new(),
            aia_ocsp: Vec::new(),
            authority_key_id: None,
            subject_key_id: None,
            is_ca: false,
            key_algorithm: alg_contents(&tbs.subject_public_key_info().algorithm)?,
            public_key: tbs.subject_public_key_info().subject_public_key.raw_bytes().to_vec(),
            key_type: String::new(),
            key_bits: None,
        };
        (info.key_type, info.key_bits) = key_kind(&tbs.subject_public_key_info().algorithm, &info.public_key);
        for ext in tbs.extensions().map(|e| e.as_slice()).unwrap_or_default() {
            let oid = ext.extn_id.to_string();
            let v = ext.extn_value.as_bytes();
            match oid.as_str() {
                OID_SAN => {
                    let san = SubjectAltName::from_der(v).map_err(|e| ext_err(OID_SAN, e))?;
                    for name in san.0 {
                        match name {
                            GeneralName::OtherName(o) if o.type_id.to_string() == OID_UPN => {
                                if o.value.tag() == Tag::Utf8String {
                                    match std::str::from_utf8(o.value.value()) {
                                        Ok(s) => info.upns.push(s.to_string()),
                                        Err(_) => info.malformed_upns += 1,
                                    }
                                } else {
                                    info.malformed_upns += 1;
                                }
                            }
                            GeneralName::Rfc822Name(m) => info.emails.push(m.to_string()),
                            GeneralName::DnsName(d) => info.dns_names.push(d.to_string()),
                            GeneralName::UniformResourceIdentifier(u) => info.uris.push(u.to_string()),
                            _ => {}
                        }
                    }
                }
                OID_EKU => {
                    let eku = ExtendedKeyUsage::from_der(v).map_err(|e| ext_err(OID_EKU, e))?;
                    info.eku = Some(eku.0.iter().map(ObjectIdentifier::to_string).collect());
                }
                OID_CDP => {
                    let cdp = CrlDistributionPoints::from_der(v).map_err(|e| ext_err(OID_CDP, e))?;
                    info.crl_urls = dp_uris(&cdp.0);
                }
                OID_FRESHEST => {
                    let cdp = CrlDistributionPoints::from_der(v).map_err(|e| ext_err(OID_FRESHEST, e))?;
                    info.delta_urls = dp_uris(&cdp.0);
                }
                OID_AKI => {
                    let aki = AuthorityKeyIdentifier::from_der(v).map_err(|e| ext_err(OID_AKI, e))?;
                    info.authority_key_id = aki.key_identifier.map(|k| k.as_bytes().to_vec());
                }
                OID_AIA => {
                    let aia = AuthorityInfoAccessSyntax::from_der(v).map_err(|e| ext_err(OID_AIA, e))?;
                    for ad in aia.0 {
                        let Some(u) = uri(&ad.access_location) else { continue };
                        match ad.access_method.to_string().as_str() {
                            OID_AIA_OCSP => info.aia_ocsp.push(u),
                            OID_AIA_CA_ISSUERS => info.aia_ca_issuers.push(u),
                            _ => {}
                        }
                    }
                }
                OID_SKI => {
                    let ski = SubjectKeyIdentifier::from_der(v).map_err(|e| ext_err(OID_SKI, e))?;
                    info.subject_key_id = Some(ski.0.as_bytes().to_vec());
                }
                OID_BASIC => {
                    let bc = BasicConstraints::from_der(v).map_err(|e| ext_err(OID_BASIC, e))?;
                    info.is_ca = bc.ca;
                }
                _ => {}
            }
        }
        Ok(info)
    }

    /// The serial as OpenSSL prints it (`openssl x509 -serial`): uppercase hex.
    pub fn serial_hex(&self) -> String {
        hex_upper(&self.serial)
    }

    pub fn fingerprint_hex(&self) -> String {
        hex_upper(&self.sha256)
    }

    pub fn sha1_hex(&self) -> String {
        hex_upper(&self.sha1)
    }

    /// Whether the EKU allows client authentication; `None` when the certificate has no EKU
    /// (webpki accepts that; the gateway's policy decides).
    pub fn client_auth(&self) -> Option<bool> {
        self.eku.as_ref().map(|v| v.iter().any(|o| o == OID_CLIENT_AUTH || o == OID_ANY_EKU))
    }
}

/// One CRL, base or delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlInfo {
    pub issuer: String,
    pub issuer_der: Vec<u8>,
    pub authority_key_id: Option<Vec<u8>>,
    pub this_update: i64,
    pub next_update: Option<i64>,
    /// Microsoft's Next CRL Publish, when present.
    pub next_publish: Option<i64>,
    pub number: Option<u128>,
    /// For a delta CRL: the base CRL number it applies to (deltaCRLIndicator).
    pub delta_base: Option<u128>,
    /// The issuing distribution point's URIs, when it names any.
    pub idp_urls: Vec<String>,
    pub entries: Vec<CrlEntry>,
    /// What the signature covers, its algorithm (AlgorithmIdentifier contents) and value.
    pub tbs: Vec<u8>,
    pub signature_algorithm: Vec<u8>,
    pub signature: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlEntry {
    /// Big-endian, without leading zero bytes.
    pub serial: Vec<u8>,
    /// reasonCode removeFromCRL (8): in a delta, the certificate is no longer revoked.
    pub remove_from_crl: bool,
}

impl CrlInfo {
    pub fn parse(der_bytes: &[u8]) -> Result<CrlInfo, CertError> {
        let bad = |e: &dyn std::fmt::Display| CertError::Crl(e.to_string());
        let crl = CertificateList::<x509_cert::certificate::Rfc5280>::from_der(der_bytes).map_err(|e| bad(&e))?;
        let tbs_bytes = first_inner_tlv(der_bytes).ok_or_else(|| CertError::Crl("no tbsCertList".into()))?;
        let t = &crl.tbs_cert_list;
        let mut info = CrlInfo {
            issuer: t.issuer.to_string(),
            issuer_der: t.issuer.to_der().map_err(|e| bad(&e))?,
            authority_key_id: None,
            this_update: unix(t.this_update),
            next_update: t.next_update.map(unix),
            next_publish: None,
            number: None,
            delta_base: None,
            idp_urls: Vec::new(),
            entries: Vec::new(),
            tbs: tbs_bytes.to_vec(),
            signature_algorithm: alg_contents(&crl.signature_algorithm)?,
            signature: crl.signature.raw_bytes().to_vec(),
        };
        for ext in t.crl_extensions.as_deref().unwrap_or_default() {
            let oid = ext.extn_id.to_string();
            let v = ext.extn_value.as_bytes();
            match oid.as_str() {
                OID_AKI => {
                    let aki = AuthorityKeyIdentifier::from_der(v).map_err(|e| ext_err(OID_AKI, e))?;
                    info.authority_key_id = aki.key_identifier.map(|k| k.as_bytes().to_vec());
                }
                OID_CRL_NUMBER => info.number = Some(uint(v).map_err(|e| ext_err(OID_CRL_NUMBER, e))?),
                OID_DELTA => info.delta_base = Some(uint(v).map_err(|e| ext_err(OID_DELTA, e))?),
                OID_NEXT_PUBLISH => {
                    let t = Time::from_der(v).map_err(|e| ext_err(OID_NEXT_PUBLISH, e))?;
                    info.next_publish = Some(unix(t));
                }
                OID_IDP => {
                    let idp = x509_cert::ext::pkix::crl::IssuingDistributionPoint::from_der(v)
                        .map_err(|e| ext_err(OID_IDP, e))?;
                    if idp.indirect_crl || idp.only_some_reasons.is_some() || idp.only_contains_attribute_certs {
                        // Partitioned or indirect CRLs would need other rules to be complete.
                        return Err(ext_err(OID_IDP, "indirect or partitioned CRLs are not supported"));
                    }
                    if let Some(DistributionPointName::FullName(names)) = &idp.distribution_point {
                        info.idp_urls = names.iter().filter_map(uri).collect();
                    }
                }
                OID_MS_CA_VERSION | OID_FRESHEST => {}
                _ if ext.critical => return Err(ext_err(&oid, "critical extension not understood")),
                _ => {}
            }
        }
        for r in t.revoked_certificates.as_deref().unwrap_or_default() {
            let mut remove = false;
            for ext in r.crl_entry_extensions.as_deref().unwrap_or_default() {
                let oid = ext.extn_id.to_string();
                if oid == OID_REASON {
                    remove = entry_reason(ext) == Some(8);
                } else if ext.critical {
                    // Certificate issuer (indirect CRL) and anything else critical: the
                    // entry's scope would be misread.
                    return Err(ext_err(&oid, "critical CRL entry extension not understood"));
                }
            }
            info.entries.push(CrlEntry { serial: strip_zeros(r.serial_number.as_bytes()).to_vec(), remove_from_crl: remove });
        }
        Ok(info)
    }

    pub fn is_delta(&self) -> bool {
        self.delta_base.is_some()
    }
}

/// SHA-256 and SHA-1 of DER bytes: what identifies a certificate that could not be parsed.
pub fn fingerprints(der_bytes: &[u8]) -> ([u8; 32], [u8; 20]) {
    (Sha256::digest(der_bytes).into(), Sha1::digest(der_bytes).into())
}

/// An RFC 4514 name from its DER (the CA names of a TLS CertificateRequest).
pub fn name_string(der_bytes: &[u8]) -> Result<String, CertError> {
    x509_cert::name::Name::from_der(der_bytes)
        .map(|n| n.to_string())
        .map_err(|e| CertError::Certificate(e.to_string()))
}

/// Key algorithm name and size. RSA: the modulus's bits; EC: the named curve's.
fn key_kind(alg: &x509_cert::spki::AlgorithmIdentifierOwned, key: &[u8]) -> (String, Option<u32>) {
    match alg.oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => ("rsa".into(), rsa_bits(key)),
        "1.2.840.10045.2.1" => {
            let curve = alg
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
                .map(|o| o.to_string());
            let bits = match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => Some(256),
                Some("1.3.132.0.34") => Some(384),
                Some("1.3.132.0.35") => Some(521),
                Some("1.3.132.0.10") => Some(256),
                _ => None,
            };
            ("ec".into(), bits)
        }
        "1.3.101.112" => ("ed25519".into(), Some(256)),
        "1.3.101.113" => ("ed448".into(), Some(456)),
        "1.2.840.10040.4.1" => ("dsa".into(), None),
        other => (other.to_string(), None),
    }
}

/// RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }.
fn rsa_bits(key: &[u8]) -> Option<u32> {
    let seq = first_tlv_contents(key)?;
    if key.first() != Some(&0x30) || seq.first() != Some(&0x02) {
        return None;
    }
    let m = strip_zeros(first_tlv_contents(seq)?);
    let top = u32::from(*m.first()?);
    Some(u32::try_from(m.len()).ok()?.checked_mul(8)? - top.leading_zeros().saturating_sub(24))
}

fn entry_reason(ext: &Extension) -> Option<u8> {
    // CRLReason ::= ENUMERATED: 0a 01 NN
    match ext.extn_value.as_bytes() {
        [0x0a, 0x01, n] => Some(*n),
        _ => None,
    }
}

fn uint(v: &[u8]) -> Result<u128, String> {
    let u = Uint::from_der(v).map_err(|e| e.to_string())?;
    let b = strip_zeros(u.as_bytes());
    if b.len() > 16 {
        return Err("longer than 16 bytes".into());
    }
    Ok(b.iter().fold(0u128, |a, x| (a << 8) | u128::from(*x)))
}

fn uri(n: &GeneralName) -> Option<String> {
    match n {
        GeneralName::UniformResourceIdentifier(u) => Some(Ia5String::to_string(u)),
        _ => None,
    }
}

fn dp_uris(dps: &[DistributionPoint]) -> Vec<String> {
    let mut out = Vec::new();
    for dp in dps {
        if let Some(DistributionPointName::FullName(names)) = &dp.distribution_point {
            out.extend(names.iter().filter_map(uri));
        }
    }
    out
}

fn alg_contents(a: &x509_cert::spki::AlgorithmIdentifierOwned) -> Result<Vec<u8>, CertError> {
    let full = a.to_der().map_err(|e| CertError::Certificate(e.to_string()))?;
    Ok(first_tlv_contents(&full).unwrap_or_default().to_vec())
}

fn unix(t: Time) -> i64 {
    i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|x| **x == 0).count();
    if n == b.len() && !b.is_empty() {
        &b[b.len() - 1..]
    } else {
        &b[n..]
    }
}

pub fn hex_upper(b: &[u8]) -> String {
    // (the gateway writes a certificate's serial and fingerprint with every request: one
    // format! per byte was 1.5% of its CPU)
    hex::encode_upper(b)
}

/// A DER TLV header at the start of `b`: (header length, content length).
fn tlv_header(b: &[u8]) -> Option<(usize, usize)> {
    let first = *b.get(1)?;
    if first < 0x80 {
        return Some((2, usize::from(first)));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | usize::from(*b.get(2 + i)?);
    }
    Some((2 + n, len))
}

fn first_tlv_contents(b: &[u8]) -> Option<&[u8]> {
    let (h, l) = tlv_header(b)?;
    b.get(h..h.checked_add(l)?)
}

/// The first element inside the outer SEQUENCE, header included: the signed part of a
/// certificate or CRL, exactly as it was signed (re-encoding could differ).
fn first_inner_tlv(b: &[u8]) -> Option<&[u8]> {
    let inner = first_tlv_contents(b)?;
    let (h, l) = tlv_header(inner)?;
    inner.get(..h.checked_add(l)?)
}

/// The DER blocks of one PEM label in a bundle ("CERTIFICATE", "X509 CRL"), in order.
pub fn pem_blocks(text: &[u8], label: &str) -> Result<Vec<Vec<u8>>, CertError> {
    use base64::Engine as _;
    let text = std::str::from_utf8(text).map_err(|_| CertError::Pem("not UTF-8".into()))?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&begin) {
        let after = &rest[i + begin.len()..];
        let j = after.find(&end).ok_or_else(|| CertError::Pem(format!("{begin} without {end}")))?;
        let b64: String = after[..j].chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| CertError::Pem(format!("{label}: {e}")))?;
        out.push(der);
        rest = &after[j + end.len()..];
    }
    Ok(out)
}

/// A CRL as fetched: DER, or one PEM block (some CAs publish PEM).
pub fn crl_der(bytes: &[u8]) -> Vec<u8> {
    if bytes.starts_with(b"-----BEGIN") {
        if let Ok(mut v) = pem_blocks(bytes, "X509 CRL") {
            if !v.is_empty() {
                return v.swap_remove(0);
            }
        }
    }
    bytes.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_headers_and_zeros() {
        assert_eq!(tlv_header(&[0x30, 0x03, 1, 2, 3]), Some((2, 3)));
        assert_eq!(tlv_header(&[0x30, 0x82, 0x01, 0x00]), Some((4, 256)));
        assert_eq!(tlv_header(&[0x30, 0x85, 0, 0, 0, 0, 0]), None);
        assert_eq!(first_tlv_contents(&[0x30, 0x05, 1]), None);
        assert_eq!(strip_zeros(&[0, 0, 5]), &[5]);
        assert_eq!(strip_zeros(&[0]), &[0]);
        assert!(CertInfo::parse(&[0x30, 0x80]).is_err());
        assert!(CrlInfo::parse(b"garbage").is_err());
    }
}
