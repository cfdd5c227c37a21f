//! What the agent reads above TCP besides Kerberos: TLS handshakes and their certificates,
//! HTTP transactions, and in them ActiveSync queries and CRL fetches. Shaped like
//! Suricata's EVE (`tls`, `http`, `fileinfo`-like siblings) with kcdscope's own checks.
//!
//! These objects own their strings: a handshake or a transaction is one event among many
//! packets, and certificates are parsed into new text anyway, so borrowing from the
//! packet would save nothing worth a lifetime here.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};


/// A certificate as seen in a handshake (or fetched), with the checks that apply to a
/// device certificate at capture time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct X509 {
    /// RFC 4514 form, as `openssl x509 -subject -nameopt RFC2253` prints it.
    pub subject: String,
    pub issuer: String,
    /// Uppercase hex without separators, as `openssl x509 -serial` prints it.
    pub serial: String,
    /// RFC 3339 UTC, seconds ("2026-12-05T12:00:00Z"); as text because certificates
    /// may say 9999-12-31, beyond what a nanosecond timestamp holds.
    pub not_before: String,
    pub not_after: String,
    /// Lowercase hex of the DER certificate's SHA-256.
    pub sha256: String,
    /// Lowercase hex of the SHA-1 (the "thumbprint" of Windows certutil and Suricata).
    pub sha1: String,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub san_dns: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub san_email: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub san_uri: Vec<String>,
    /// otherName 1.3.6.1.4.1.311.20.2.3 (Microsoft UPN), as text.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub san_upn: Vec<String>,
    /// Extended key usages by name ("client_auth", "server_auth"...) or dotted OID.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub eku: Vec<String>,
    /// CRL distribution point URLs, as written (http://, ldap://...).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub cdp: Vec<String>,
    /// Freshest CRL (delta CRL) distribution point URLs.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub delta_cdp: Vec<String>,
    /// Authority Information Access: where the issuer's certificate is published.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub aia_ca_issuers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub aia_ocsp: Vec<String>,
    /// rsa, ec, ed25519, ed448, dsa, or the algorithm's OID.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key_bits: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub is_ca: bool,
    /// What makes this certificate unfit for its role at capture time. Device checks
    /// (UPN/e-mail, Client Authentication EKU, HTTP CDP) are applied to client
    /// certificates only; validity to every certificate.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub problems: Vec<CertProblem>,
    /// Why the certificate could not be read in full; the fields above are what could.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub malformed: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertProblem {
    /// No otherName UPN and no rfc822Name in the SAN: the gateway cannot name the user.
    NoUpnOrEmail,
    /// No EKU extension, or one without 1.3.6.1.5.5.7.3.2 (or anyExtendedKeyUsage): the
    /// gateway refuses both unless told to accept certificates without EKU.
    NoClientAuthEku,
    /// No CDP at all.
    NoHttpCdp,
    /// CDP URLs, all of them ldap://.
    LdapOnlyCdp,
    ExpiredAtCapture,
    NotYetValidAtCapture,
}

impl CertProblem {
    pub fn as_str(self) -> &'static str {
        match self {
            CertProblem::NoUpnOrEmail => "no_upn_or_email",
            CertProblem::NoClientAuthEku => "no_client_auth_eku",
            CertProblem::NoHttpCdp => "no_http_cdp",
            CertProblem::LdapOnlyCdp => "ldap_only_cdp",
            CertProblem::ExpiredAtCapture => "expired_at_capture",
            CertProblem::NotYetValidAtCapture => "not_yet_valid_at_capture",
        }
    }
}

/// Who sent a message of a two-party exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Client,
    Server,
}

/// A TLS alert. In TLS 1.3 (and after ChangeCipherSpec in 1.2) alerts are encrypted:
/// then `description` is "encrypted" and `level` is absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TlsAlert {
    /// warning or fatal.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub level: Option<String>,
    /// RFC 8446 name: bad_certificate, unknown_ca, certificate_expired, ...
    pub description: String,
    /// The alert's number, as tshark's `tls.alert_message.desc`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<u8>,
    pub sender: Side,
}

/// How far a handshake got, as far as the wire shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TlsOutcome {
    /// TLS 1.2 or below: both sides sent ChangeCipherSpec.
    Established,
    /// TLS 1.3: past ServerHello everything is encrypted; whether the server accepted
    /// the client's certificate is not visible (the gateway's events tell).
    Encrypted,
    /// A fatal alert ended it (see `alert`).
    Alert,
    /// The connection closed (or the capture ended) before the handshake finished.
    Incomplete,
}

/// One TLS handshake: written once per connection, when its outcome is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Tls {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sni: Option<String>,
    /// The ClientHello's record-layer-independent version ("TLS 1.2"), and the versions
    /// of its supported_versions extension when present (GREASE values left out).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_version: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub client_versions: Vec<String>,
    /// IANA names ("TLS_AES_128_GCM_SHA256") or "0x1301" when unknown; GREASE left out.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub cipher_suites: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub alpn: Vec<String>,
    /// The version the server chose (supported_versions in TLS 1.3).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cipher_suite: Option<String>,
    /// The server asked for a client certificate (CertificateRequest seen).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub client_certificate_requested: bool,
    /// CertificateRequest's certificate_authorities, as RFC 4514 names.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub acceptable_cas: Vec<String>,
    /// Leaf first, as sent.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub server_certificates: Vec<X509>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub client_certificates: Vec<X509>,
    /// The client answered a CertificateRequest with an empty Certificate message.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub client_certificate_empty: bool,
    /// False in TLS 1.3, whose Certificate messages are encrypted.
    pub certificates_visible: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub alert: Option<TlsAlert>,
    pub outcome: TlsOutcome,
    /// Why a message could not be read; the fields above are what could.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub malformed: Option<String>,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            sni: None,
            client_version: None,
            client_versions: Vec::new(),
            cipher_suites: Vec::new(),
            alpn: Vec::new(),
            version: None,
            cipher_suite: None,
            client_certificate_requested: false,
            acceptable_cas: Vec::new(),
            server_certificates: Vec::new(),
            client_certificates: Vec::new(),
            client_certificate_empty: false,
            certificates_visible: true,
            alert: None,
            outcome: TlsOutcome::Incomplete,
            malformed: None,
        }
    }
}

/// The kind of an HTTP Authorization credential. The credential itself is never kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// Negotiate with a raw Kerberos AP-REQ (RFC 4559 allows it; the GSS-API framing).
    Kerberos,
    /// Negotiate with a SPNEGO NegTokenInit carrying a Kerberos mechanism token.
    Spnego,
    /// NTLMSSP, under "NTLM" or inside "Negotiate".
    Ntlm,
    Basic,
    Other,
}

/// What a Kerberos AP-REQ in an Authorization header shows without decryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApReqSummary {
    /// The ticket's service principal, components joined with '/' ("HTTP/exchange.lab.test").
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ticket_server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub realm: Option<String>,
    /// The ticket's encryption type and key version: the key the service must hold.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub etype: Option<crate::EncryptionType>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kvno: Option<i64>,
    /// Size of the AP-REQ in bytes (large PACs make headers too big for some servers).
    pub size: u32,
    /// With --keytab: whether a key of the keytab decrypts the ticket (a key of the right
    /// kvno and etype that fails the integrity check is not the ticket's key).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key_in_keytab: Option<bool>,
    /// The first 8 bytes of the authenticator's ciphertext, in hex: the same token sent
    /// twice has the same value (a replay), a fresh one never does.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub authenticator_id: Option<String>,
    /// With --keytab: what the decrypted ticket and authenticator say.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub decrypted: Option<DecryptedTicket>,
}

/// A ticket (and its authenticator, in an AP-REQ) opened with a keytab key. Keys, session
/// keys and checksums are never kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DecryptedTicket {
    /// Whether a keytab key decrypted the ticket.
    pub key_in_keytab: bool,
    /// The keytab entry whose key did ("EXCHANGE$@LAB.TEST"), with its kvno and etype.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key_principal: Option<String>,
    /// The ticket's client, "name@REALM" (EncTicketPart cname and crealm).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub authtime: Option<crate::Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub endtime: Option<crate::Timestamp>,
    /// The ticket's endtime was past at capture time.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expired: Option<bool>,
    /// The authenticator's ctime (and cusec), and that time minus the capture time in
    /// seconds: the client's clock against the capture point's.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub authenticator_time: Option<crate::Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub clock_skew_seconds: Option<i64>,
    /// The authenticator's client, which must be the ticket's.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub authenticator_client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pac: Option<PacFacts>,
    /// Why the ticket or the authenticator could not be read.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// What a ticket's PAC (MS-PAC) says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PacFacts {
    pub size: u32,
    /// PAC_CLIENT_INFO's name.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub logon_name: Option<String>,
    /// UPN_DNS_INFO's UPN, DNS domain and (extended form) SAM account name.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub upn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dns_domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sam_name: Option<String>,
    /// KERB_VALIDATION_INFO's GroupCount.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub group_count: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Authorization {
    pub kind: AuthKind,
    /// The scheme word as sent ("Negotiate", "NTLM", "Basic"...).
    pub scheme: String,
    /// Length of the decoded token in bytes (base64 decoded where it is base64).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token_bytes: Option<u32>,
    /// NTLMSSP message type: 1 negotiate, 2 challenge, 3 authenticate.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ntlm_message: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kerberos: Option<ApReqSummary>,
}

/// One HTTP/1.x request and its response (absent when none came).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Http {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hostname: Option<String>,
    /// The request target as sent, as EVE's `url`.
    pub url: String,
    pub http_method: String,
    /// "HTTP/1.1".
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub http_user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<u16>,
    /// The response's Content-Type, as sent.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub http_content_type: Option<String>,
    /// The request's body length (bytes on the wire after chunked decoding).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_body_length: Option<u64>,
    /// The response's body length, as EVE's `length`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub length: Option<u64>,
    /// Schemes offered in WWW-Authenticate ("Negotiate", "NTLM"...), in order.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub www_authenticate: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub authorization: Option<Authorization>,
    /// Microseconds from the request's first byte to the response's first byte.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub latency_us: Option<i64>,
    /// The request frame (the event's own frame is the response's).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_frame: Option<u64>,
    /// Why the transaction could not be read in full.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub malformed: Option<String>,
}

/// How an ActiveSync request carried its parameters (MS-ASHTTP 2.2.1.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EasQueryForm {
    Plain,
    Base64,
}

/// Exchange ActiveSync parameters of an HTTP request to /Microsoft-Server-ActiveSync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Eas {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cmd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub device_type: Option<String>,
    /// Protocol version (MS-ASProtocolVersion header or the base64 query's byte).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub protocol_version: Option<String>,
    pub query_form: EasQueryForm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CrlProblem {
    /// nextUpdate before capture time.
    ExpiredAtCapture,
    /// thisUpdate after capture time.
    NotYetValidAtCapture,
    /// 404 on a file name with '+' (a delta CRL): IIS refuses double escaping.
    NotFoundPlusName,
    /// Any other 4xx/5xx answer to a CRL URL.
    HttpError,
    /// The body is not a CRL (HTML error page, truncated, too large to keep).
    Unparseable,
}

impl CrlProblem {
    pub fn as_str(self) -> &'static str {
        match self {
            CrlProblem::ExpiredAtCapture => "expired_at_capture",
            CrlProblem::NotYetValidAtCapture => "not_yet_valid_at_capture",
            CrlProblem::NotFoundPlusName => "not_found_plus_name",
            CrlProblem::HttpError => "http_error",
            CrlProblem::Unparseable => "unparseable",
        }
    }
}

/// A CRL fetched over HTTP (or an attempt to fetch one that failed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Crl {
    /// "http://host/path" as requested.
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub issuer: Option<String>,
    /// RFC 3339 UTC, seconds.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub this_update: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_update: Option<String>,
    /// Uppercase hex, as certutil shows it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crl_number: Option<String>,
    /// A delta CRL (Delta CRL Indicator present), with its base CRL number.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub delta: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub base_crl_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub revoked_count: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub problems: Vec<CrlProblem>,
}
