//! What kcdscope can diagnose from Kerberos, certificates, CRLs and Exchange's answers: one entry per finding id, with its
//! severity and the fix in an administrator's words (after the vendors' troubleshooting
//! guides, DOMAIN.md section 4). Ids are stable: SIEM rules and scripts key on them.

use kcd_schema::Severity;

#[derive(Debug)]
pub struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    pub fix: &'static str,
}

macro_rules! rules {
    ($($konst:ident = $id:literal, $sev:ident, $fix:literal;)*) => {
        $(pub const $konst: Rule = Rule { id: $id, severity: Severity::$sev, fix: $fix };)*
        pub const ALL: &[Rule] = &[$($konst,)*];
    };
}

rules! {
    RESPONSE_TOO_BIG_TCP_RETRY = "krb.response_too_big.tcp_retry", Info,
        "Nothing is broken: the client retried over TCP. To save the round trip, make clients use TCP from the start: on Windows, registry HKLM\\System\\CurrentControlSet\\Control\\Lsa\\Kerberos\\Parameters, DWORD MaxPacketSize = 1; with MIT Kerberos, udp_preference_limit = 1.";
    RESPONSE_TOO_BIG_NO_TCP_RETRY = "krb.response_too_big.no_tcp_retry", Error,
        "The reply must be fetched over TCP/88 and the client never tried: make it use TCP (Windows: MaxPacketSize = 1 under HKLM\\System\\CurrentControlSet\\Control\\Lsa\\Kerberos\\Parameters; MIT: udp_preference_limit = 1) and make sure TCP/88 to the domain controller is open.";
    RESPONSE_TOO_BIG_TCP_BLOCKED = "krb.response_too_big.tcp_blocked", Error,
        "A firewall blocks TCP/88 between this host and the domain controller, and replies too large for UDP can only come over TCP: open TCP/88 (Kerberos needs both UDP and TCP port 88).";
    KDC_TCP_UNANSWERED = "krb.kdc.tcp_unanswered", Error,
        "TCP/88 connections to this KDC are never answered: open TCP/88 on the firewalls between this host and the domain controller, or check that the KDC is running.";
    KDC_NAME_UNRESOLVED = "krb.kdc.name_unresolved", Error,
        "The domain controller's name does not resolve: check the spelling in the gateway's domain/domain controller pairs and that this host's DNS (or hosts file) knows the name.";
    CROSS_REALM_NO_TRUST = "krb.cross_realm.no_trust", Error,
        "The service account's realm has no trust to the user's realm: its KDC knows no krbtgt/USER-REALM@SERVICE-REALM, so it cannot refer the S4U2Self request to the user's domain. Create the trust (Active Directory: a forest or external trust in Active Directory Domains and Trusts, or netdom trust; MIT: krbtgt/USER-REALM@SERVICE-REALM and krbtgt/SERVICE-REALM@USER-REALM with the same keys in both KDCs, or [capaths] for a path through another realm), or put the user in a domain the service account's domain trusts.";
    KDC_UNREACHABLE = "krb.kdc.unreachable", Error,
        "This KDC does not answer: check that it runs and that UDP and TCP 88 reach it, and configure several domain controllers so that clients can fail over.";
    KDC_REQUESTS_UNANSWERED = "krb.kdc.requests_unanswered", Warning,
        "This KDC answers most requests but leaves some without a reply (packet loss or overload): check the network path to it and its load (on a domain controller: the KDC service, LSASS CPU, the Kerberos event log).";
    KDC_FAILOVER = "krb.kdc.failover", Warning,
        "Clients wait for this KDC to time out on every request, then ask another one: repair it or remove it from the domain controller list (DNS SRV records, krb5.conf, the gateway's domain/DC pairs).";
    CLOCK_SKEW = "krb.clock_skew", Error,
        "The clocks of this host and the KDC must be within 5 minutes of each other: run NTP on both (in Active Directory the domain controller holding the PDC role is the time source).";
    CLOCK_OFFSET = "krb.clock_offset", Warning,
        "The KDC's clock and this host's differ; at 5 minutes Kerberos fails with KRB_AP_ERR_SKEW: run NTP on both before it does.";
    TARGET_SPN_UNKNOWN = "krb.target_spn_unknown", Error,
        "The KDC knows no account with the service principal name {SPN}: register it on the account that runs the service, setspn -s {SPN} ACCOUNT, where ACCOUNT is the Exchange server's computer account (for example EXCHANGE$) or, with a CAS array, the Alternate Service Account{SPN_WORDS}; and check the gateway's target SPN setting.";
    S4U2PROXY_DELEGATION_NOT_ALLOWED = "krb.s4u2proxy.delegation_not_allowed", Error,
        "The service account may not delegate: on its Delegation tab in Active Directory select \"Trust this user for delegation to specified services only\" and \"Use any authentication protocol\", and add the Exchange HTTP SPN (or the Alternate Service Account's) to the list.";
    S4U2PROXY_TARGET_NOT_ALLOWED = "krb.s4u2proxy.target_not_allowed", Error,
        "The target SPN is not in the service account's list of services it may delegate to (msDS-AllowedToDelegateTo): add the Exchange HTTP SPN, or with a CAS array the SPN registered on the Alternate Service Account.";
    S4U2PROXY_PROTOCOL_TRANSITION_NOT_ALLOWED = "krb.s4u2proxy.protocol_transition_not_allowed", Error,
        "The service account may delegate only users who logged in with Kerberos, and devices log in with a certificate: on its Delegation tab select \"Use any authentication protocol\" (not \"Use Kerberos only\"). Also check that the user is not \"sensitive and cannot be delegated\" nor in Protected Users.";
    S4U2PROXY_RBCD_DENIED = "krb.s4u2proxy.rbcd_denied", Error,
        "Resource-based constrained delegation was refused: the target account's msDS-AllowedToActOnBehalfOfOtherIdentity must allow the service account.";
    S4U2PROXY_USER_NOT_DELEGABLE = "krb.s4u2proxy.user_not_delegable", Error,
        "The same service account obtains tickets for this service for other users, so its delegation settings are right: this user's account is marked \"Account is sensitive and cannot be delegated\" or is a member of Protected Users. Clear the flag or remove the user from the group (or accept that this user cannot use the gateway).";
    S4U2PROXY_REFUSED = "krb.s4u2proxy.refused", Error,
        "On the service account in Active Directory (Delegation tab): \"Trust this user for delegation to specified services only\", \"Use any authentication protocol\", and the Exchange HTTP SPN (or the Alternate Service Account's) in the list of services; and the user must not be \"sensitive and cannot be delegated\" nor in Protected Users. The KDC did not say which is missing: the explanation lists what remains possible.";
    S4U2PROXY_SKIPPED = "krb.s4u2proxy.skipped", Warning,
        "The gateway asked for the service ticket under its own name instead of with S4U2Proxy, so the server sees the service account, not the user. With GSSAPI, acquire the impersonated credential for the mechanism the security context uses (SPNEGO as well as krb5), not the default credential; check the gateway's KCD settings.";
    PRINCIPAL_UNKNOWN = "krb.principal_unknown", Error,
        "The name is not a user of this realm: for a device, check the UPN in the certificate's Subject Alternative Name and the certificate template; check the gateway's domain/domain controller pairs (realm in uppercase).";
    ACCOUNT_EXPIRED = "krb.account_expired", Error,
        "The user's account has expired in Active Directory (Account tab, \"Account expires\"; accountExpires): extend or clear the expiry date if the user may still use the gateway.";
    ACCOUNT_DISABLED = "krb.account_disabled", Error,
        "The account is disabled, locked out or expired in Active Directory: correct the account's state.";
    PASSWORD_EXPIRED = "krb.password_expired", Error,
        "The account's password has expired: set a new one (for the gateway's service account, update the gateway's service account password setting too, and consider a managed password policy for it).";
    PASSWORD_WRONG = "krb.password_wrong", Error,
        "The password does not match the account: if this is the gateway's service account, correct the service account password setting (and check that the account is not about to be locked out).";
    ETYPE_UNSUPPORTED = "krb.etype_unsupported", Error,
        "The client and the KDC share no encryption type for this account: check msDS-SupportedEncryptionTypes on the accounts involved (AES or RC4) and the client's permitted encryption types.";
    TICKET_NOT_DECRYPTABLE = "krb.ticket_not_decryptable", Error,
        "The service cannot decrypt the ticket made for its SPN: look for a duplicate SPN (setspn -X), an SPN on the wrong account, or an Alternate Service Account credential not deployed to every CAS server (RollAlternateServiceAccountPassword.ps1).";
    WRONG_REALM = "krb.wrong_realm", Error,
        "The request went to the wrong realm: write the domain name in uppercase, check the domain/domain controller pairs, and that every domain trusts the primary one.";
    GENERIC_ERROR = "krb.generic_error", Error,
        "The KDC refused with a generic error: its message (e-text) and its log say why.";
    OTHER_ERROR = "krb.error", Warning,
        "An unusual Kerberos error: see its name and the KDC's log.";

    // The device's certificate (DOMAIN.md section 4, certificate rows).
    CERT_NOT_PRESENTED = "cert.not_presented", Error,
        "The device sent no client certificate: install the identity certificate on the device (MDM profile or certificate enrolment) and make the mail profile use it; check that the gateway's client certificate chain lists the CA that issued it (the device offers only certificates from the CAs the server names).";
    CERT_NO_UPN = "cert.no_upn", Error,
        "The certificate template (or the CA) must put the user's UPN (and e-mail) into the Subject Alternative Name; re-enrol the device.";
    CERT_TWO_UPNS = "cert.two_upns", Error,
        "The certificate names two different users in its Subject Alternative Name: fix the certificate template so that it carries only the enrolled user's UPN, and re-enrol the device.";
    CERT_UPN_NOT_MAPPED = "cert.upn_not_mapped", Error,
        "The UPN's suffix belongs to no configured domain: add the domain and its domain controllers to the gateway's domain/domain controller pairs, or an alternate UPN suffix rewrite to the AD domain.";
    CERT_NO_CLIENT_AUTH_EKU = "cert.no_client_auth_eku", Error,
        "The certificate template must include the Client Authentication EKU (1.3.6.1.5.5.7.3.2); re-enrol the device.";
    CERT_ISSUER_NOT_TRUSTED = "cert.issuer_not_trusted", Error,
        "Upload the issuing and root CA to the gateway's client certificate chain (in AD also: certutil -enterprise -addstore NTAuth CA_CertFilename.cer).";
    CERT_EXPIRED = "cert.expired", Error,
        "The device's certificate has expired: renew it (re-enrol the device, or let the MDM renew it before it expires).";
    CERT_NOT_YET_VALID = "cert.not_yet_valid", Error,
        "The device's certificate is not valid yet: check the clocks of the gateway and of the CA (NTP), or wait until its notBefore.";
    CERT_REVOKED = "cert.revoked", Warning,
        "The device's certificate is revoked, and the gateway refuses it as it should: if the revocation is a mistake, issue the device a new certificate (a revoked certificate cannot be reinstated unless it was put on hold).";
    CERT_INVALID = "cert.invalid", Error,
        "The certificate could not be verified (bad signature or encoding): re-enrol the device; if every device fails, check the gateway's client certificate chain.";
    // Revocation (CRL rows).
    CRL_UNREACHABLE = "crl.unreachable", Error,
        "CRLs of every certificate in the chain must be reachable over HTTP from the gateway: check the CDP URL, DNS, the CDP web server and the firewall between the gateway and it (port 80).";
    CRL_CDP_LDAP_ONLY = "crl.cdp_ldap_only", Error,
        "The certificate's CDP lists only ldap:// URLs, useless to a gateway outside the domain: add an HTTP CDP and AIA to the CA's extensions, republish the CRL and re-enrol the devices.";
    CRL_DELTA_BLOCKED = "crl.delta_blocked_double_escaping", Error,
        "The CDP web server refuses the delta CRL's file name with '+' (IIS request filtering): set allowDoubleEscaping = True on the CDP web site.";
    CRL_EXPIRED = "crl.expired", Error,
        "The CRL's nextUpdate has passed: the CA must publish a new CRL; check the CA service and its publication schedule (certutil -crl publishes one now).";
    CRL_BAD_SIGNATURE = "crl.bad_signature", Error,
        "The CRL is not signed by the key of the CA that issued the certificate (a CA renewed with a new key?): publish the CRL signed by the current key and upload the renewed CA certificate to the gateway's client certificate chain.";
    CRL_WRONG_ISSUER = "crl.wrong_issuer", Error,
        "The CDP URL serves the CRL of another CA: correct the CDP extension of the issuing CA (or the file published at that URL).";
    // Exchange and the request (Exchange rows).
    EXCHANGE_TICKET_REFUSED = "exchange.ticket_refused", Error,
        "Exchange refused a fresh Kerberos ticket: on the ActiveSync virtual directory enable Windows Authentication with providers Negotiate and NTLM, useAppPoolCredentials and useKernelMode = True, anonymous off; look for a duplicate SPN (setspn -X) or an Alternate Service Account credential not deployed on every CAS (RollAlternateServiceAccountPassword.ps1).";
    EXCHANGE_TICKET_KEY_UNKNOWN = "exchange.ticket_key_unknown", Error,
        "The ticket for Exchange is encrypted in a key (key version and encryption type) that Exchange's keytab does not hold: the SPN is registered on another account than the one whose key Exchange uses; look for a duplicate SPN (setspn -X), move the SPN to the Alternate Service Account, and deploy the ASA credential to every CAS (RollAlternateServiceAccountPassword.ps1).";
    EXCHANGE_NEGOTIATE_NOT_OFFERED = "exchange.negotiate_not_offered", Error,
        "Exchange does not offer Kerberos (no Negotiate in WWW-Authenticate): on the ActiveSync virtual directory enable Windows Authentication with providers Negotiate and NTLM (Negotiate first), anonymous off.";
    EXCHANGE_UNREACHABLE = "exchange.unreachable", Error,
        "The gateway cannot reach Exchange: check the email server host setting, DNS, the firewall to Exchange's port and that IIS runs; with https, that Exchange's certificate carries the configured name and chains to the configured CA bundle.";
    EXCHANGE_BAD_RESPONSE = "exchange.bad_response", Error,
        "Exchange answered with a response the gateway cannot read: a response head larger than the gateway's exchange.response_head_bytes (raise it, up to 65536; ActiveSync's heads are under 1 KiB, so look first for what adds headers: a module or a load balancer in front of IIS) or not HTTP/1.1 at all (check that the gateway's Exchange URL names IIS's port and scheme).";
    EXCHANGE_TIMEOUT = "exchange.timeout", Warning,
        "Exchange did not answer in time: check its load and the timeouts (Ping and Sync are held up to 59 minutes, every timeout on that path must be longer).";
    HTTP_BODY_TOO_LARGE = "http.body_too_large", Warning,
        "A request body was larger than the limit: raise the gateway's limits.body_bytes and IIS's uploadReadAheadSize (10 MB is usual) if such mails are legitimate.";
}

/// What a fix can name when it is known; the rest is said in words.
#[derive(Debug, Default, Clone, Copy)]
pub struct FixFacts<'a> {
    /// The service principal name concerned ("HTTP/exchange.lab.test").
    pub spn: Option<&'a str>,
}

impl Rule {
    /// The fix with what is known filled in: an administrator copies commands from it, so
    /// it never keeps a placeholder, and what cannot be known is named in words.
    pub fn fix_for(&self, f: FixFacts<'_>) -> String {
        let (spn, words) = match f.spn {
            Some(s) => (s, ""),
            None => ("HTTP/HOST", " (HOST: the Exchange host name, as in the gateway's target SPN setting)"),
        };
        self.fix.replace("{SPN}", spn).replace("{SPN_WORDS}", words)
    }
}

/// The rule with this id.
pub fn by_id(id: &str) -> Option<&'static Rule> {
    ALL.iter().find(|r| r.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_fix_keeps_a_placeholder() {
        for r in ALL {
            for f in [FixFacts::default(), FixFacts { spn: Some("HTTP/exchange.lab.test") }] {
                let t = r.fix_for(f);
                assert!(!t.contains('{') && !t.contains('}'), "{}: {t}", r.id);
            }
        }
        let t = TARGET_SPN_UNKNOWN.fix_for(FixFacts { spn: Some("HTTP/mail.corp.example") });
        assert!(t.contains("setspn -s HTTP/mail.corp.example ACCOUNT, where ACCOUNT is"), "{t}");
        let t = TARGET_SPN_UNKNOWN.fix_for(FixFacts::default());
        assert!(t.contains("setspn -s HTTP/HOST ACCOUNT") && t.contains("HOST: the Exchange host name"), "{t}");
    }

    #[test]
    fn ids_are_unique_and_namespaced() {
        let mut ids: Vec<&str> = ALL.iter().map(|r| r.id).collect();
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n);
        assert!(ids.iter().all(|i| ["krb.", "cert.", "crl.", "exchange.", "http."].iter().any(|p| i.starts_with(p))));
    }
}
