//! A device's story: certificate, revocation, S4U2Self, S4U2Proxy, Exchange. Which step a
//! refusal belongs to and which rule names it, from what the gateway or the wire says, so
//! that the gateway's events, a TLS alert seen on the wire and the replay's diagnosis
//! name the same failure the same way.

use crate::catalogue::{self as c, Rule};

/// The steps of a device's request in the order they happen (DOMAIN.md section 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// The TLS handshake and the certificate's chain, validity, EKU and user.
    Certificate,
    /// Revocation: the CRLs of the chain.
    Crl,
    S4u2Self,
    S4u2Proxy,
    /// The request forwarded to Exchange and its answer.
    Exchange,
}

impl Step {
    pub fn label(self) -> &'static str {
        match self {
            Step::Certificate => "certificate",
            Step::Crl => "crl",
            Step::S4u2Self => "s4u2self",
            Step::S4u2Proxy => "s4u2proxy",
            Step::Exchange => "exchange",
        }
    }
}

/// The step and rule of a gateway refusal, by the reason label in its request event
/// (`gateway.reason`). `kerberos` is told by the event's own finding id and KCD step;
/// refusals of one malformed request (bad_request, body_timeout...) say nothing about the
/// device's set-up and have no rule.
pub fn gateway_reason(label: &str) -> Option<(Step, &'static Rule)> {
    use Step::*;
    Some(match label {
        "no_cert" => (Certificate, &c::CERT_NOT_PRESENTED),
        "expired" => (Certificate, &c::CERT_EXPIRED),
        "not_yet_valid" => (Certificate, &c::CERT_NOT_YET_VALID),
        "unknown_ca" => (Certificate, &c::CERT_ISSUER_NOT_TRUSTED),
        "bad_eku" => (Certificate, &c::CERT_NO_CLIENT_AUTH_EKU),
        "bad_signature" | "bad_certificate" => (Certificate, &c::CERT_INVALID),
        "no_upn" => (Certificate, &c::CERT_NO_UPN),
        "two_upns" => (Certificate, &c::CERT_TWO_UPNS),
        "upn_not_mapped" => (Certificate, &c::CERT_UPN_NOT_MAPPED),
        "revoked" => (Crl, &c::CERT_REVOKED),
        "crl_missing" | "crl_unreachable" => (Crl, &c::CRL_UNREACHABLE),
        "cdp_ldap_only" => (Crl, &c::CRL_CDP_LDAP_ONLY),
        "crl_expired" => (Crl, &c::CRL_EXPIRED),
        "crl_bad_signature" => (Crl, &c::CRL_BAD_SIGNATURE),
        "crl_wrong_issuer" | "crl_base_mismatch" | "crl_number_regressed" => (Crl, &c::CRL_WRONG_ISSUER),
        "crl_delta_blocked" => (Crl, &c::CRL_DELTA_BLOCKED),
        "kdc_unreachable" => (S4u2Self, &c::KDC_UNREACHABLE),
        "body_too_large" => (Exchange, &c::HTTP_BODY_TOO_LARGE),
        "exchange_unreachable" => (Exchange, &c::EXCHANGE_UNREACHABLE),
        "exchange_bad_response" => (Exchange, &c::EXCHANGE_BAD_RESPONSE),
        "exchange_timeout" => (Exchange, &c::EXCHANGE_TIMEOUT),
        "exchange_refused_ticket" => (Exchange, &c::EXCHANGE_TICKET_REFUSED),
        _ => return None,
    })
}

/// The step a Kerberos finding stops a device at: S4U2Proxy for the delegation rules,
/// S4U2Self for everything about the user or the KDC.
pub fn kerberos_step(rule_id: &str) -> Step {
    if rule_id.starts_with("krb.s4u2proxy.") || rule_id == c::TARGET_SPN_UNKNOWN.id {
        Step::S4u2Proxy
    } else {
        Step::S4u2Self
    }
}

/// The rule of a TLS alert a server sent a device during the handshake (RFC 8446 6.2
/// names). `unknown_ca` is also what gateways (OpenSSL, ours) send when the CRL could not
/// be checked: the caller prefers a CRL finding when it saw the CRL fail.
pub fn tls_alert(name: &str) -> Option<&'static Rule> {
    Some(match name {
        "certificate_required" => &c::CERT_NOT_PRESENTED,
        "certificate_expired" => &c::CERT_EXPIRED,
        "certificate_revoked" => &c::CERT_REVOKED,
        "unknown_ca" | "access_denied" => &c::CERT_ISSUER_NOT_TRUSTED,
        "unsupported_certificate" => &c::CERT_NO_CLIENT_AUTH_EKU,
        "bad_certificate" | "certificate_unknown" | "decrypt_error" => &c::CERT_INVALID,
        _ => return None,
    })
}

/// The step of a rule met on a device's path.
pub fn step_of(rule: &Rule) -> Step {
    let id = rule.id;
    if rule.id == c::CERT_REVOKED.id || id.starts_with("crl.") {
        Step::Crl
    } else if id.starts_with("cert.") {
        Step::Certificate
    } else if id.starts_with("exchange.") || id.starts_with("http.") {
        Step::Exchange
    } else {
        kerberos_step(id)
    }
}

/// Exchange answered 401: with the gateway's (or client's) Kerberos token sent and
/// Negotiate offered, the ticket itself was refused; without Negotiate offered, Exchange
/// is not set up for Kerberos at all.
pub fn exchange_401(offered: &[&str], kerberos_sent: bool) -> Option<&'static Rule> {
    let negotiate = offered.iter().any(|s| s.eq_ignore_ascii_case("negotiate") || s.eq_ignore_ascii_case("kerberos"));
    if !negotiate {
        Some(&c::EXCHANGE_NEGOTIATE_NOT_OFFERED)
    } else if kerberos_sent {
        Some(&c::EXCHANGE_TICKET_REFUSED)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gateway_refusal_with_a_rule_is_in_the_catalogue() {
        for l in [
            "no_cert", "expired", "not_yet_valid", "unknown_ca", "bad_eku", "bad_signature", "bad_certificate",
            "no_upn", "two_upns", "upn_not_mapped", "revoked", "crl_missing", "crl_unreachable", "cdp_ldap_only",
            "crl_expired", "crl_bad_signature", "crl_wrong_issuer", "crl_base_mismatch", "crl_number_regressed",
            "crl_delta_blocked", "kdc_unreachable", "body_too_large", "exchange_unreachable", "exchange_timeout",
            "exchange_bad_response", "exchange_refused_ticket",
        ] {
            let (step, rule) = gateway_reason(l).unwrap_or_else(|| panic!("{l}"));
            assert!(c::by_id(rule.id).is_some(), "{l}");
            assert_eq!(step_of(rule), step, "{l} -> {}", rule.id);
        }
        for l in ["bad_request", "body_timeout", "draining", "kerberos", ""] {
            assert!(gateway_reason(l).is_none(), "{l}");
        }
    }

    #[test]
    fn steps_of_kerberos_rules() {
        assert_eq!(kerberos_step("krb.s4u2proxy.target_not_allowed"), Step::S4u2Proxy);
        assert_eq!(kerberos_step("krb.target_spn_unknown"), Step::S4u2Proxy);
        assert_eq!(kerberos_step("krb.principal_unknown"), Step::S4u2Self);
        assert!(Step::Certificate < Step::Crl && Step::Crl < Step::S4u2Self && Step::S4u2Proxy < Step::Exchange);
    }

    #[test]
    fn exchange_401_tells_refusal_from_set_up() {
        assert_eq!(exchange_401(&["Negotiate", "NTLM"], true).map(|r| r.id), Some("exchange.ticket_refused"));
        assert_eq!(exchange_401(&["NTLM"], true).map(|r| r.id), Some("exchange.negotiate_not_offered"));
        assert_eq!(exchange_401(&["Basic"], false).map(|r| r.id), Some("exchange.negotiate_not_offered"));
        // The first leg of a handshake: nothing sent yet, nothing refused.
        assert!(exchange_401(&["Negotiate"], false).is_none());
    }
}
