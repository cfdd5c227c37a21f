//! Why the gateway refused a device or a request, in one place: the label that goes into
//! events and metrics, the TLS alert (for refusals during the handshake), the HTTP status
//! (for refusals after it), and what the administrator can do.

use rustls::CertificateError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    // The handshake: the certificate itself.
    NoCert,
    Expired,
    NotYetValid,
    UnknownCa,
    BadEku,
    BadSignature,
    BadCertificate,
    // The handshake: revocation.
    Revoked,
    CrlMissing,
    CdpLdapOnly,
    CrlUnreachable,
    CrlExpired,
    CrlBadSignature,
    CrlWrongIssuer,
    CrlDeltaBlocked,
    CrlBaseMismatch,
    CrlNumberRegressed,
    // After the handshake: who the device is.
    NoUpn,
    TwoUpns,
    UpnNotMapped,
    // After the handshake: the request.
    BadRequest,
    UpgradeRefused,
    BodyOnGet,
    BodyTooLarge,
    BodyTimeout,
    /// The device's body could not be read (chunked framing broken, connection ended early).
    BadBody,
    /// Both Content-Length and Transfer-Encoding (RFC 9112 6.1): framed one way by hyper, it
    /// might be framed another by a reader behind it.
    AmbiguousLength,
    HeaderTooLarge,
    UriTooLong,
    /// No complete request head within limits.header_read_timeout_ms.
    HeaderTimeout,
    MethodNotAllowed,
    MethodUnknown,
    PathRefused,
    // Delegation and Exchange.
    Kerberos,
    KdcUnreachable,
    ExchangeUnreachable,
    /// Exchange answered, but not with an HTTP/1.1 response the gateway can read (a head
    /// over exchange.response_head_bytes, a status line that is not HTTP).
    ExchangeBadResponse,
    ExchangeTimeout,
    ExchangeRefusedTicket,
    Draining,
}

impl Reason {
    pub fn label(self) -> &'static str {
        use Reason::*;
        match self {
            NoCert => "no_cert",
            Expired => "expired",
            NotYetValid => "not_yet_valid",
            UnknownCa => "unknown_ca",
            BadEku => "bad_eku",
            BadSignature => "bad_signature",
            BadCertificate => "bad_certificate",
            Revoked => "revoked",
            CrlMissing => "crl_missing",
            CdpLdapOnly => "cdp_ldap_only",
            CrlUnreachable => "crl_unreachable",
            CrlExpired => "crl_expired",
            CrlBadSignature => "crl_bad_signature",
            CrlWrongIssuer => "crl_wrong_issuer",
            CrlDeltaBlocked => "crl_delta_blocked",
            CrlBaseMismatch => "crl_base_mismatch",
            CrlNumberRegressed => "crl_number_regressed",
            NoUpn => "no_upn",
            TwoUpns => "two_upns",
            UpnNotMapped => "upn_not_mapped",
            BadRequest => "bad_request",
            UpgradeRefused => "upgrade_refused",
            BodyOnGet => "body_on_get",
            BodyTooLarge => "body_too_large",
            BodyTimeout => "body_timeout",
            BadBody => "bad_body",
            AmbiguousLength => "ambiguous_length",
            HeaderTooLarge => "header_too_large",
            UriTooLong => "uri_too_long",
            HeaderTimeout => "header_timeout",
            MethodNotAllowed => "method_not_allowed",
            MethodUnknown => "method_unknown",
            PathRefused => "path_refused",
            Kerberos => "kerberos",
            KdcUnreachable => "kdc_unreachable",
            ExchangeUnreachable => "exchange_unreachable",
            ExchangeBadResponse => "exchange_bad_response",
            ExchangeTimeout => "exchange_timeout",
            ExchangeRefusedTicket => "exchange_refused_ticket",
            Draining => "draining",
        }
    }

    /// The error a certificate verifier returns for this reason; rustls turns it into the
    /// alert the device sees (`AlertDescription::from`): revoked -> certificate_revoked,
    /// CRL problems -> unknown_ca as OpenSSL does, EKU -> unsupported_certificate.
    pub fn certificate_error(self) -> CertificateError {
        use Reason::*;
        match self {
            Revoked => CertificateError::Revoked,
            Expired => CertificateError::Expired,
            NotYetValid => CertificateError::NotValidYet,
            UnknownCa => CertificateError::UnknownIssuer,
            BadEku => CertificateError::InvalidPurpose,
            BadSignature => CertificateError::BadSignature,
            CrlExpired => CertificateError::ExpiredRevocationList,
            CrlMissing | CdpLdapOnly | CrlUnreachable | CrlBadSignature | CrlWrongIssuer | CrlDeltaBlocked
            | CrlBaseMismatch | CrlNumberRegressed => CertificateError::UnknownRevocationStatus,
            _ => CertificateError::BadEncoding,
        }
    }

    /// A refusal from the verifier this gateway wraps (chain, validity, EKU), by its error.
    pub fn from_tls_error(e: &rustls::Error) -> Reason {
        use rustls::Error as E;
        match e {
            E::NoCertificatesPresented => Reason::NoCert,
            E::InvalidCertificate(c) => match c {
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => Reason::Expired,
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => Reason::NotYetValid,
                CertificateError::UnknownIssuer => Reason::UnknownCa,
                CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => Reason::BadEku,
                CertificateError::Revoked => Reason::Revoked,
                CertificateError::ExpiredRevocationList | CertificateError::ExpiredRevocationListContext { .. } => {
                    Reason::CrlExpired
                }
                CertificateError::UnknownRevocationStatus => Reason::CrlMissing,
                #[allow(deprecated)]
                CertificateError::BadSignature
                | CertificateError::UnsupportedSignatureAlgorithm
                | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
                | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => Reason::BadSignature,
                _ => Reason::BadCertificate,
            },
            _ => Reason::BadCertificate,
        }
    }

    /// The status for a refusal answered over HTTP: 403 for the certificate and the user,
    /// 502 for Exchange or delegation misconfiguration, 503/504 when nobody answers.
    pub fn http_status(self) -> u16 {
        use Reason::*;
        match self {
            BadRequest | BodyOnGet | BadBody | AmbiguousLength => 400,
            UpgradeRefused => 400,
            BodyTooLarge => 413,
            BodyTimeout | HeaderTimeout => 408,
            HeaderTooLarge => 431,
            UriTooLong => 414,
            MethodNotAllowed => 405,
            MethodUnknown => 501,
            PathRefused => 404,
            Kerberos | ExchangeRefusedTicket => 502,
            KdcUnreachable | ExchangeTimeout => 504,
            ExchangeUnreachable | ExchangeBadResponse => 502,
            Draining => 503,
            _ => 403,
        }
    }

    /// The finding id for refusals the agent's catalogue names (DOMAIN.md section 4): the
    /// one catalogue, so the gateway's events and the agent's report say the same.
    pub fn finding(self) -> Option<&'static str> {
        kcd_findings::device::gateway_reason(self.label()).map(|(_, r)| r.id)
    }

    /// What the administrator should change, in the catalogue's words.
    pub fn fix(self) -> Option<&'static str> {
        kcd_findings::device::gateway_reason(self.label()).map(|(_, r)| r.fix)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::AlertDescription as A;

    #[test]
    fn alerts_the_device_sees() {
        // The alert is rustls's own mapping of the error we return: checked here so that
        // a change of rustls or of our choice shows.
        let alert = |r: Reason| A::from(r.certificate_error());
        assert_eq!(alert(Reason::Revoked), A::CertificateRevoked);
        assert_eq!(alert(Reason::Expired), A::CertificateExpired);
        assert_eq!(alert(Reason::NotYetValid), A::CertificateExpired);
        assert_eq!(alert(Reason::UnknownCa), A::UnknownCA);
        assert_eq!(alert(Reason::BadEku), A::UnsupportedCertificate);
        for r in [Reason::CrlUnreachable, Reason::CrlMissing, Reason::CdpLdapOnly, Reason::CrlDeltaBlocked, Reason::CrlExpired] {
            assert_eq!(alert(r), A::UnknownCA, "{r}");
        }
    }

    #[test]
    fn refusals_read_back_from_rustls_errors() {
        let e = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(Reason::from_tls_error(&e), Reason::UnknownCa);
        assert_eq!(Reason::from_tls_error(&rustls::Error::NoCertificatesPresented), Reason::NoCert);
        for r in [Reason::Revoked, Reason::Expired, Reason::NotYetValid, Reason::UnknownCa, Reason::BadEku] {
            let e = rustls::Error::InvalidCertificate(r.certificate_error());
            assert_eq!(Reason::from_tls_error(&e), r);
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(Reason::NoUpn.http_status(), 403);
        assert_eq!(Reason::UpnNotMapped.http_status(), 403);
        assert_eq!(Reason::BodyTooLarge.http_status(), 413);
        assert_eq!(Reason::KdcUnreachable.http_status(), 504);
        assert_eq!(Reason::ExchangeUnreachable.http_status(), 502);
        assert_eq!(Reason::ExchangeRefusedTicket.finding(), Some("exchange.ticket_refused"));
        assert_eq!(Reason::ExchangeBadResponse.http_status(), 502);
        assert_eq!(Reason::ExchangeBadResponse.finding(), Some("exchange.bad_response"));
    }
}
