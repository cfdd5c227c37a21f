//! Why a token could not be had: the failing step, the KDC's own error when it gave one,
//! and from those the finding id (DOMAIN.md section 4, the agent's catalogue) and the HTTP
//! status the gateway answers the device with.

use kcd_findings::catalogue::{self as cat, FixFacts};
use kcd_findings::s4u;
use kcd_schema::{ErrorCode, KcdStep, NtStatus};

/// Where a KDC exchange stands when it fails without a KRB-ERROR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub kdc: String,
    pub what: String,
    /// The domain controller's name did not resolve (nothing was sent).
    pub unresolved: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KcdError {
    /// The configuration is unusable; `key` names the setting.
    #[error("configuration: {key}: {problem}")]
    Config { key: String, problem: String },
    /// The service account's keytab cannot be used.
    #[error("keytab {path}: {problem}")]
    Keytab { path: String, problem: String },
    /// The user name is not one the gateway can ask for.
    #[error("user {user:?}: {problem}")]
    BadUser { user: String, problem: String },
    /// The target SPN is not a service principal name.
    #[error("target SPN {spn:?}: {problem}")]
    BadSpn { spn: String, problem: String },
    /// The KDC refused with a KRB-ERROR.
    #[error("{step}: the KDC {kdc} answered {code} ({}){}{}", code.0, e_text.as_deref().map(|t| format!(" ({t})")).unwrap_or_default(), evidence_note(*evidence_forwardable))]
    Kdc {
        step: KcdStep,
        kdc: String,
        code: ErrorCode,
        e_text: Option<String>,
        ntstatus: Option<NtStatus>,
        /// For S4U2Proxy: whether the S4U2Self ticket it presented was forwardable.
        evidence_forwardable: Option<bool>,
        /// For S4U2Proxy: whether the user's PAC (in the S4U2Self ticket) marks the account
        /// "sensitive and cannot be delegated", when the PAC says.
        user_not_delegated: Option<bool>,
        /// For S4U2Proxy: this client obtained tickets for the same SPN for other users.
        other_users_delegated: bool,
        /// The KDC's clock minus ours, when its error carried a usable time.
        clock_offset_seconds: Option<i64>,
    },
    /// The KDC refused the key of the service account's keytab: the keytab is older than
    /// the account's current password.
    #[error("login: the KDC {kdc} answered KDC_ERR_PREAUTH_FAILED (24) to the key from keytab {path} (kvno {kvno}, etype {etype}): the keytab does not hold the account's current key")]
    StaleKeytab { kdc: String, path: String, kvno: u32, etype: i32 },
    /// Cross-realm S4U2Self: the service account's KDC has no trust to the user's realm.
    #[error("S4U2Self: the KDC {kdc} of {service_realm} answered {code} ({}) to krbtgt/{user_realm}@{service_realm}: {service_realm} has no trust to the user's realm {user_realm}", code.0)]
    NoTrust { kdc: String, service_realm: String, user_realm: String, code: ErrorCode },
    /// No KDC of the realm gave an answer.
    #[error("{step}: no KDC answered ({})", attempts.iter().map(|a| format!("{}: {}", a.kdc, a.what)).collect::<Vec<_>>().join("; "))]
    Unreachable { step: KcdStep, attempts: Vec<Attempt> },
    /// A KDC answered with something the gateway cannot accept (undecodable, wrong nonce,
    /// integrity failure, not the principal asked for).
    #[error("{step}: the reply from {kdc} is unusable: {detail}")]
    BadReply { step: KcdStep, kdc: String, detail: String },
    /// The KDC and the gateway share no encryption type for the service account.
    #[error("login: the KDC offers {offered:?}; the gateway can use {usable:?} (rc4-hmac only when allow_rc4 is set)")]
    NoCommonEtype { offered: Vec<i32>, usable: Vec<i32> },
    /// The system's random number generator failed.
    #[error("{step}: the system's random number generator failed")]
    Random { step: KcdStep },
}

fn evidence_note(f: Option<bool>) -> &'static str {
    match f {
        Some(false) => "; the S4U2Self ticket it presented is not forwardable",
        _ => "",
    }
}

impl KcdError {
    pub fn step(&self) -> Option<KcdStep> {
        match self {
            Self::Kdc { step, .. }
            | Self::Unreachable { step, .. }
            | Self::BadReply { step, .. }
            | Self::Random { step } => Some(*step),
            Self::NoCommonEtype { .. } | Self::Keytab { .. } | Self::StaleKeytab { .. } => Some(KcdStep::Login),
            Self::BadUser { .. } | Self::NoTrust { .. } => Some(KcdStep::S4u2self),
            Self::BadSpn { .. } => Some(KcdStep::S4u2proxy),
            Self::Config { .. } => None,
        }
    }

    /// The KRB-ERROR code, when the KDC sent one.
    pub fn krb_error(&self) -> Option<ErrorCode> {
        match self {
            Self::Kdc { code, .. } => Some(*code),
            Self::StaleKeytab { .. } => Some(ErrorCode(24)),
            Self::NoTrust { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// For an S4U2Proxy refusal, the cause named by the rule the agent's diagnosis uses too.
    pub fn s4u2proxy_diagnosis(&self) -> Option<s4u::Diagnosis> {
        match self {
            Self::Kdc {
                step: KcdStep::S4u2proxy,
                code: ErrorCode(13),
                e_text,
                ntstatus,
                evidence_forwardable,
                user_not_delegated,
                other_users_delegated,
                ..
            } => Some(s4u::diagnose(&s4u::Refusal {
                ntstatus: *ntstatus,
                e_text: e_text.as_deref(),
                same_target_other_user_ok: *other_users_delegated,
                evidence_forwardable: *evidence_forwardable,
                user_not_delegated: *user_not_delegated,
                ..Default::default()
            })),
            _ => None,
        }
    }

    /// Whether the fault lies with the user (unknown, disabled) rather than with the
    /// gateway's own configuration or the network.
    pub fn is_user_fault(&self) -> bool {
        match self {
            Self::BadUser { .. } => true,
            // Unknown, expired, disabled, revoked.
            Self::Kdc { step: KcdStep::S4u2self, code, .. } => matches!(code.0, 1 | 6 | 12 | 18),
            Self::Kdc { step: KcdStep::S4u2proxy, .. } => {
                self.finding_id() == cat::S4U2PROXY_USER_NOT_DELEGABLE.id
            }
            _ => false,
        }
    }

    /// The finding id (as the agent reports it from the wire) that explains this error.
    pub fn finding_id(&self) -> &'static str {
        let rule = match self {
            Self::Config { .. } | Self::Keytab { .. } | Self::Random { .. } => return "kcd.gateway_config",
            Self::BadUser { .. } => cat::PRINCIPAL_UNKNOWN,
            Self::BadSpn { .. } => cat::TARGET_SPN_UNKNOWN,
            Self::NoCommonEtype { .. } => cat::ETYPE_UNSUPPORTED,
            Self::Unreachable { attempts, .. } if !attempts.is_empty() && attempts.iter().all(|a| a.unresolved) => {
                cat::KDC_NAME_UNRESOLVED
            }
            Self::Unreachable { .. } => cat::KDC_UNREACHABLE,
            Self::StaleKeytab { .. } => cat::PASSWORD_WRONG,
            Self::NoTrust { .. } => cat::CROSS_REALM_NO_TRUST,
            Self::BadReply { .. } => cat::OTHER_ERROR,
            Self::Kdc { step, code, ntstatus, .. } => match (step, code.0) {
                (_, 37) => cat::CLOCK_SKEW,
                (_, 14) => cat::ETYPE_UNSUPPORTED,
                (KcdStep::Login, 24) => cat::PASSWORD_WRONG,
                (KcdStep::Login, 23) => cat::PASSWORD_EXPIRED,
                (_, 6) => cat::PRINCIPAL_UNKNOWN,
                (KcdStep::S4u2proxy, 7) => cat::TARGET_SPN_UNKNOWN,
                (_, 7) => cat::PRINCIPAL_UNKNOWN,
                // KDC_ERR_NAME_EXP from Samba and MIT; Windows sends 18 with the NTSTATUS.
                (_, 1) => cat::ACCOUNT_EXPIRED,
                (_, 18) if *ntstatus == Some(NtStatus::STATUS_ACCOUNT_EXPIRED) => cat::ACCOUNT_EXPIRED,
                (_, 12 | 18) => cat::ACCOUNT_DISABLED,
                (KcdStep::S4u2proxy, 13) => {
                    return self.s4u2proxy_diagnosis().map_or(cat::S4U2PROXY_REFUSED.id, |d| d.rule().id)
                }
                (KcdStep::S4u2self, 13) => cat::S4U2PROXY_REFUSED,
                (_, 68) => cat::WRONG_REALM,
                (_, 60) => cat::GENERIC_ERROR,
                _ => cat::OTHER_ERROR,
            },
        };
        rule.id
    }

    /// What the administrator should change, in the catalogue's words, with what this
    /// error knows filled in.
    pub fn fix(&self, spn: Option<&str>) -> String {
        if let Self::StaleKeytab { path, kvno, .. } = self {
            return format!(
                "The keytab {path} holds key version {kvno} of the service account, and the KDC no longer accepts it: the account's password was changed after the keytab was made. Export a new keytab (ktpass, samba-tool domain exportkeytab or kadmin ktadd) and point the service account keytab setting at it; then no password is needed in the configuration."
            );
        }
        let spn = match self {
            Self::BadSpn { spn, .. } => Some(spn.as_str()),
            _ => spn,
        };
        match cat::by_id(self.finding_id()) {
            Some(r) => r.fix_for(FixFacts { spn }),
            None => "Correct the gateway's configuration: the message names the setting.".into(),
        }
    }

    /// The status the gateway answers the device with: 403 when the user may not use the
    /// service, 504 when no KDC answers, 502 for the rest (the gateway or the directory is
    /// misconfigured: the device can do nothing about it).
    pub fn http_status(&self) -> u16 {
        match self {
            _ if self.is_user_fault() => 403,
            Self::Unreachable { .. } => 504,
            _ => 502,
        }
    }
}
