//! Why a KDC refused S4U2Proxy with KDC_ERR_BADOPTION (13). The error alone does not say;
//! what narrows it down: the NTSTATUS a Windows KDC puts in e-data (MS-SFU 3.2.5.2.1 and
//! 3.2.5.2.3), MIT's e-text, and what the same service account obtained earlier in the
//! capture.

use kcd_schema::NtStatus;

use crate::catalogue::{self, Rule};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    /// The account may not delegate at all (msDS-AllowedToDelegateTo empty).
    NoDelegation,
    /// It may delegate, but not to this SPN.
    TargetNotListed,
    /// The S4U2Self ticket was not forwardable: "Kerberos only" instead of "any
    /// authentication protocol", or a user who cannot be delegated.
    NoProtocolTransition,
    /// The account's settings work for other users: this user cannot be delegated.
    UserNotDelegable,
    /// Resource-based delegation refused by the target's ACL.
    RbcdDenied,
}

impl Cause {
    pub fn describe(self) -> &'static str {
        match self {
            Cause::NoDelegation => "the service account is not trusted for constrained delegation",
            Cause::TargetNotListed => "the target SPN is not among the services it may delegate to",
            Cause::NoProtocolTransition => {
                "protocol transition is not allowed (\"Kerberos only\"), or the user cannot be delegated"
            }
            Cause::UserNotDelegable => "the user is sensitive and cannot be delegated (or in Protected Users)",
            Cause::RbcdDenied => "the target's resource-based delegation list does not include the service account",
        }
    }
    pub fn id(self) -> &'static str {
        match self {
            Cause::NoDelegation => "delegation_not_allowed",
            Cause::TargetNotListed => "target_not_allowed",
            Cause::NoProtocolTransition => "protocol_transition_not_allowed",
            Cause::UserNotDelegable => "user_not_delegable",
            Cause::RbcdDenied => "rbcd_denied",
        }
    }
}

/// What is known about one refusal.
#[derive(Debug, Default, Clone, Copy)]
pub struct Refusal<'a> {
    pub ntstatus: Option<NtStatus>,
    pub e_text: Option<&'a str>,
    /// The service account obtained a ticket for another SPN (for any user) earlier.
    pub other_target_ok: bool,
    /// ... and for this very user.
    pub other_target_ok_same_user: bool,
    /// It obtained a ticket for this SPN for another user.
    pub same_target_other_user_ok: bool,
    /// Whether the S4U2Self ticket presented was forwardable, when known.
    pub evidence_forwardable: Option<bool>,
    /// Whether the user's own account is marked "sensitive and cannot be delegated"
    /// (NOT_DELEGATED in the PAC's logon information), when the ticket could be read.
    pub user_not_delegated: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub causes: Vec<Cause>,
    /// What narrowed it down, for the explanation.
    pub because: Vec<&'static str>,
}

impl Diagnosis {
    pub fn rule(&self) -> &'static Rule {
        match self.causes.as_slice() {
            [Cause::NoDelegation] => &catalogue::S4U2PROXY_DELEGATION_NOT_ALLOWED,
            [Cause::TargetNotListed] => &catalogue::S4U2PROXY_TARGET_NOT_ALLOWED,
            [Cause::NoProtocolTransition] => &catalogue::S4U2PROXY_PROTOCOL_TRANSITION_NOT_ALLOWED,
            [Cause::UserNotDelegable] => &catalogue::S4U2PROXY_USER_NOT_DELEGABLE,
            [Cause::RbcdDenied] => &catalogue::S4U2PROXY_RBCD_DENIED,
            _ => &catalogue::S4U2PROXY_REFUSED,
        }
    }
}

fn keep(set: &mut Vec<Cause>, allowed: &[Cause]) {
    set.retain(|c| allowed.contains(c));
}

pub fn diagnose(r: &Refusal<'_>) -> Diagnosis {
    use Cause::*;
    let mut causes = vec![NoDelegation, TargetNotListed, NoProtocolTransition];
    let mut because = Vec::new();
    match r.ntstatus {
        Some(NtStatus::STATUS_NOT_SUPPORTED) => {
            keep(&mut causes, &[NoDelegation]);
            because.push("NTSTATUS STATUS_NOT_SUPPORTED: the account's delegation list is empty");
        }
        Some(NtStatus::STATUS_NO_MATCH) => {
            keep(&mut causes, &[TargetNotListed, NoProtocolTransition]);
            because.push("NTSTATUS STATUS_NO_MATCH: target not in the list, or the S4U2Self ticket not forwardable");
        }
        Some(NtStatus::STATUS_ACCOUNT_RESTRICTION) => {
            keep(&mut causes, &[NoProtocolTransition]);
            because.push("NTSTATUS STATUS_ACCOUNT_RESTRICTION: the S4U2Self ticket is not forwardable");
        }
        Some(NtStatus::STATUS_NOT_FOUND) => {
            causes = vec![RbcdDenied];
            because.push("NTSTATUS STATUS_NOT_FOUND: the resource-based delegation check failed");
        }
        _ => {}
    }
    match r.e_text.map(str::trim) {
        Some("EVIDENCE_TKT_NOT_FORWARDABLE") => {
            keep(&mut causes, &[NoProtocolTransition]);
            because.push("the KDC's message EVIDENCE_TKT_NOT_FORWARDABLE: the S4U2Self ticket is not forwardable");
        }
        Some("UNSUPPORTED_S4U2PROXY_REQUEST") | Some("NOT_ALLOWED_TO_DELEGATE") => {
            keep(&mut causes, &[NoDelegation, TargetNotListed]);
            because.push("the KDC's message: delegation to this target is not allowed for the account");
        }
        _ => {}
    }
    // The user's own PAC is the KDC's word on the user: it decides between the service
    // account's setting and the user's flag.
    match (r.user_not_delegated, r.evidence_forwardable) {
        (Some(true), _) => {
            return Diagnosis {
                causes: vec![UserNotDelegable],
                because: vec!["the user's PAC marks the account NOT_DELEGATED (sensitive and cannot be delegated)"],
            };
        }
        (Some(false), Some(false)) if causes.contains(&NoProtocolTransition) => {
            return Diagnosis {
                causes: vec![NoProtocolTransition],
                because: vec!["the S4U2Self ticket is not forwardable although the user's PAC allows delegation"],
            };
        }
        (_, Some(false)) if causes.contains(&NoProtocolTransition) => {
            keep(&mut causes, &[NoProtocolTransition]);
            because.push("the S4U2Self ticket it presented is not forwardable");
        }
        (_, Some(true)) => {
            causes.retain(|c| *c != NoProtocolTransition);
            because.push("the S4U2Self ticket it presented is forwardable");
        }
        _ => {}
    }
    // History narrows further, unless it contradicts the KDC's own word.
    let mut h = causes.clone();
    let mut hb = Vec::new();
    if r.same_target_other_user_ok {
        keep(&mut h, &[NoProtocolTransition]);
        if h.contains(&NoProtocolTransition) {
            h = vec![UserNotDelegable];
        }
        hb.push("the same service account obtained tickets for this SPN for other users");
    } else if r.other_target_ok {
        // It delegates (so it is trusted, with protocol transition) to other SPNs: for
        // this user and this target, either the target is missing from its list or the
        // user cannot be delegated.
        h.retain(|c| *c != NoDelegation);
        if r.other_target_ok_same_user {
            h.retain(|c| *c != NoProtocolTransition);
        } else if let Some(c) = h.iter_mut().find(|c| **c == NoProtocolTransition) {
            *c = UserNotDelegable;
        }
        hb.push("the same service account obtained tickets for other SPNs");
    }
    if !h.is_empty() && h != causes {
        causes = h;
        because.extend(hb);
    }
    Diagnosis { causes, because }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Cause::*;

    fn d(r: Refusal<'_>) -> (Vec<Cause>, &'static str) {
        let x = diagnose(&r);
        (x.causes.clone(), x.rule().id)
    }

    #[test]
    fn nothing_known_lists_the_three_settings() {
        assert_eq!(
            d(Refusal::default()),
            (vec![NoDelegation, TargetNotListed, NoProtocolTransition], "krb.s4u2proxy.refused")
        );
    }

    // MS-SFU 3.2.5.2.1: "If Service 1's ServicesAllowedToSendForwardedTicketsTo parameter
    // was empty, this is returned with STATUS_NOT_SUPPORTED, else STATUS_NO_MATCH".
    #[test]
    fn ntstatus_from_a_windows_kdc() {
        let st = |s| Refusal { ntstatus: Some(s), ..Default::default() };
        assert_eq!(d(st(NtStatus::STATUS_NOT_SUPPORTED)).1, "krb.s4u2proxy.delegation_not_allowed");
        assert_eq!(d(st(NtStatus::STATUS_NO_MATCH)).0, vec![TargetNotListed, NoProtocolTransition]);
        assert_eq!(
            d(st(NtStatus::STATUS_ACCOUNT_RESTRICTION)).1,
            "krb.s4u2proxy.protocol_transition_not_allowed"
        );
        assert_eq!(d(st(NtStatus::STATUS_NOT_FOUND)).1, "krb.s4u2proxy.rbcd_denied");
    }

    // MIT 1.20 kdc_util.c / tgs_policy.c status strings.
    #[test]
    fn e_text_from_mit() {
        let t = |s| Refusal { e_text: Some(s), ..Default::default() };
        assert_eq!(
            d(t("EVIDENCE_TKT_NOT_FORWARDABLE")).1,
            "krb.s4u2proxy.protocol_transition_not_allowed"
        );
        assert_eq!(d(t("UNSUPPORTED_S4U2PROXY_REQUEST")).0, vec![NoDelegation, TargetNotListed]);
    }

    // The delegation client and the replay must name a not-delegable user alike: the
    // client reads the user's PAC, the replay sees other users succeed.
    #[test]
    fn a_non_forwardable_ticket_is_the_user_when_the_pac_or_history_says_so() {
        let nf = Refusal { evidence_forwardable: Some(false), ..Default::default() };
        assert_eq!(d(nf).1, "krb.s4u2proxy.protocol_transition_not_allowed");
        let pac = Refusal { user_not_delegated: Some(true), ..nf };
        assert_eq!(d(pac).1, "krb.s4u2proxy.user_not_delegable");
        let pac_ok = Refusal { user_not_delegated: Some(false), ..nf };
        assert_eq!(d(pac_ok).1, "krb.s4u2proxy.protocol_transition_not_allowed");
        let hist = Refusal { same_target_other_user_ok: true, ..nf };
        assert_eq!(d(hist).1, "krb.s4u2proxy.user_not_delegable");
        let fwd = Refusal { evidence_forwardable: Some(true), ..Default::default() };
        assert_eq!(d(fwd).0, vec![NoDelegation, TargetNotListed]);
    }

    #[test]
    fn history_narrows_but_never_contradicts() {
        let r = Refusal { same_target_other_user_ok: true, ..Default::default() };
        assert_eq!(d(r).1, "krb.s4u2proxy.user_not_delegable");
        let r = Refusal { other_target_ok: true, other_target_ok_same_user: true, ..Default::default() };
        assert_eq!(d(r).1, "krb.s4u2proxy.target_not_allowed");
        let r = Refusal { other_target_ok: true, ..Default::default() };
        assert_eq!(d(r).0, vec![TargetNotListed, UserNotDelegable]);
        let r = Refusal {
            e_text: Some("UNSUPPORTED_S4U2PROXY_REQUEST"),
            other_target_ok: true,
            ..Default::default()
        };
        assert_eq!(d(r).1, "krb.s4u2proxy.target_not_allowed");
        // The KDC says "not forwardable" yet other users got this SPN: the user is the cause.
        let r = Refusal {
            e_text: Some("EVIDENCE_TKT_NOT_FORWARDABLE"),
            same_target_other_user_ok: true,
            ..Default::default()
        };
        assert_eq!(d(r).1, "krb.s4u2proxy.user_not_delegable");
        // The KDC says "list empty" yet other users got this SPN: settings changed in
        // between; keep the KDC's word.
        let r = Refusal {
            ntstatus: Some(NtStatus::STATUS_NOT_SUPPORTED),
            same_target_other_user_ok: true,
            ..Default::default()
        };
        assert_eq!(d(r).1, "krb.s4u2proxy.delegation_not_allowed");
    }
}
