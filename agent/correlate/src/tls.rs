//! TLS on the wire: a device's client certificate and the server's verdict on it (its
//! alert, or a certificate a certificate-to-Kerberos gateway would refuse).

use kcd_findings::catalogue::{self, Rule};
use kcd_findings::device::{self as steps, Step};
use kcd_schema::Event;

use crate::device::{DeviceCert, Observation};
use crate::Correlator;

/// CDP URLs of a device certificate remembered.
const CDP_KEPT: usize = 4;

impl Correlator {
    /// A TLS handshake seen on the wire. Only handshakes where the server asked for a
    /// client certificate, or the client sent one, are a device's; in TLS 1.3 both are
    /// encrypted and the gateway's events tell the rest.
    pub(crate) fn tls_handshake(&mut self, e: &Event<'_>) {
        let Some(t) = &e.tls else { return };
        let leaf = t.client_certificates.first();
        if leaf.is_none() && !t.client_certificate_requested {
            return;
        }
        let at = e.timestamp;
        let ev = self.ev(e);
        let upn = leaf.and_then(|c| c.san_upn.first().or(c.san_email.first())).map(String::as_str);
        let cert = leaf.map(|c| DeviceCert {
            subject: c.subject.as_str().into(),
            issuer: c.issuer.as_str().into(),
            serial: c.serial.as_str().into(),
            sha256: c.sha256.as_str().into(),
            upn: upn.map(Into::into),
            not_after: None,
            revocation: None,
            cdp: c.cdp.iter().take(CDP_KEPT).map(|u| u.as_str().into()).collect(),
        });
        let issuer = leaf.map(|c| c.issuer.clone());
        // The server's fatal alert refuses the device; a problem of the certificate itself
        // says why when the alert is vague.
        let server_alert = t.alert.as_ref().filter(|a| a.sender == kcd_schema::Side::Server).map(|a| a.description.as_str());
        let problem = leaf.and_then(|c| {
            use kcd_schema::CertProblem as P;
            c.problems.iter().find_map(|p| match p {
                P::ExpiredAtCapture => Some(&catalogue::CERT_EXPIRED),
                P::NotYetValidAtCapture => Some(&catalogue::CERT_NOT_YET_VALID),
                P::NoClientAuthEku => Some(&catalogue::CERT_NO_CLIENT_AUTH_EKU),
                P::NoUpnOrEmail => Some(&catalogue::CERT_NO_UPN),
                P::LdapOnlyCdp => Some(&catalogue::CRL_CDP_LDAP_ONLY),
                P::NoHttpCdp => None,
            })
        });
        let not_acceptable = match (leaf, t.acceptable_cas.is_empty()) {
            (Some(c), false) => !t.acceptable_cas.iter().any(|a| names_equal(a, &c.issuer)),
            _ => false,
        };
        let crl = leaf.and_then(|c| c.cdp.iter().find_map(|u| self.crl_trouble.peek(u.as_str()).copied()));
        let rule: Option<&'static Rule> = match server_alert {
            Some(a) => {
                let by_alert = if leaf.is_none() || t.client_certificate_empty {
                    Some(&catalogue::CERT_NOT_PRESENTED)
                } else {
                    steps::tls_alert(a)
                };
                // unknown_ca is also how gateways say "could not check revocation".
                match (a, crl, problem) {
                    ("unknown_ca", Some((r, _)), _) => Some(r),
                    (_, _, Some(p)) if by_alert.is_none_or(|r| r.id == catalogue::CERT_INVALID.id || r.id == catalogue::CERT_ISSUER_NOT_TRUSTED.id) && !not_acceptable => Some(p),
                    ("unknown_ca", _, _) if not_acceptable => Some(&catalogue::CERT_ISSUER_NOT_TRUSTED),
                    _ => by_alert,
                }
            }
            // Accepted by this server, but a certificate-to-Kerberos gateway that checks
            // what DOMAIN.md lists (UPN, Client Authentication EKU, an HTTP CDP, validity)
            // refuses it, during the handshake or at its first request.
            None => problem,
        };
        let failure = rule.map(|r| {
            let detail = match server_alert {
                Some(a) => format!("the server refused the handshake with TLS alert {a}"),
                None => {
                    let p: Vec<&str> = leaf.map(|c| c.problems.iter().map(|p| p.as_str()).collect()).unwrap_or_default();
                    format!("the server accepted the handshake, but the certificate is unfit for a device: {}", p.join(", "))
                }
            };
            let detail = if not_acceptable && r.id == catalogue::CERT_ISSUER_NOT_TRUSTED.id {
                format!("{detail}; the certificate's issuer is not among the CAs the server named as acceptable")
            } else {
                detail
            };
            (steps::step_of(r), Some(r), server_alert.unwrap_or("certificate").to_string(), detail, None)
        });
        // A TLS 1.2 handshake that completed passed the certificate and revocation checks.
        let reached = match t.outcome {
            kcd_schema::TlsOutcome::Established => Some(Step::Crl),
            _ => Some(Step::Certificate),
        };
        let obs = Observation {
            fingerprint: leaf.map(|c| c.sha256.as_str()),
            address: e.src_ip,
            upn,
            cert,
            request: false,
            reached,
            failure,
            ..Default::default()
        };
        let Some(key) = self.devices.observe(obs, at, ev) else { return };
        if let Some(r) = rule {
            let detail = self.devices.get(&key).and_then(|d| d.failing.as_ref()).map(|f| f.detail.to_string()).unwrap_or_default();
            self.device_finding(&key, r, &detail, issuer.as_deref(), t.sni.as_deref(), at, ev);
        }
    }
}

/// Distinguished names compared as an administrator would: case and spacing after commas
/// aside ("CN=Lab Issuing CA, O=Lab" and "CN=Lab Issuing CA,O=Lab").
fn names_equal(a: &str, b: &str) -> bool {
    // Part by part, without copies: every handshake compares its issuer with each
    // acceptable CA.
    let (mut x, mut y) = (a.split(',').map(str::trim), b.split(',').map(str::trim));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) if p.eq_ignore_ascii_case(q) => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::names_equal;

    /// As the copying comparison was: case and spacing around commas aside, part by part.
    #[test]
    fn names_compare_as_an_administrator_would() {
        assert!(names_equal("CN=Lab Issuing CA, O=Lab", "cn=lab issuing ca,O=LAB"));
        assert!(names_equal("", ""));
        assert!(!names_equal("CN=Lab Issuing CA, O=Lab", "CN=Lab Issuing CA"));
        assert!(!names_equal("CN=Lab Issuing CA", "CN=Lab Issuing CA, O=Lab"));
        assert!(!names_equal("CN=Lab Issuing CA", "CN=Lab  Issuing CA"));
        assert!(!names_equal("CN=A,O=B", "O=B,CN=A"));
    }
}
