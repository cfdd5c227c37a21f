//! What kcdscope can diagnose from Kerberos on the wire: one entry per finding id, with its
//! severity and the fix in an administrator's words (after the vendors' troubleshooting
//! guides, DOMAIN.md section 4). Ids are stable: SIEM rules and scripts key on them.

use kcd_schema::Severity;

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
        assert!(ids.iter().all(|i| i.starts_with("krb.")));
    }
}
