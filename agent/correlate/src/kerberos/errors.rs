//! KRB-ERRORs: which finding each code is, about what, with which particulars.

use std::borrow::Cow;
use std::cell::LazyCell;

use kcd_schema::{ErrorCode, Krb5, KrbErrorInfo, SubjectKind};

use crate::findings::Agg;
use crate::state::Ev;
use super::{describe_request, offset_words, ErrCtx, ReqKind};
use crate::{catalogue, s4u, Correlator};

impl Correlator {
    pub(crate) fn krb_error(&mut self, c: &ErrCtx<'_>, x: &KrbErrorInfo<'_>, k: &Krb5<'_>) {
        let code = x.code;
        // Words for explanations: built only when a finding is new.
        let err = LazyCell::new(|| format!("{} ({})", code, code.0));
        let e_text = x.e_text.as_deref().filter(|t| !t.is_empty());
        let nt = x.e_data.as_ref().and_then(|d| d.ntstatus).map(|n| n.0);
        let evs: smallvec::SmallVec<[Ev; 2]> = c.req_ev.into_iter().chain([c.ev]).collect();
        let what = LazyCell::new(|| describe_request(c.kind, c.who, c.target));
        let add_common = |a: &mut Agg| {
            a.fact("kdc", c.kdc.to_string());
            a.fact("error", (*err).clone());
            if let Some(t) = e_text {
                a.fact("e_text", t.to_string());
            }
            if let Some(n) = nt {
                a.fact("ntstatus", n.to_string());
                a.fact("ntstatus_code", n.hex());
            }
        };
        // ", \"message\", NTSTATUS", to follow an error name inside parentheses.
        let said = LazyCell::new(|| match (e_text, nt) {
            (Some(t), Some(n)) => format!(", \"{t}\", {n}"),
            (Some(t), None) => format!(", \"{t}\""),
            (None, Some(n)) => format!(", {n}"),
            (None, None) => String::new(),
        });
        // The same, in parentheses of its own.
        let said_paren = LazyCell::new(|| match said.strip_prefix(", ") {
            Some(x) => format!(" ({x})"),
            None => String::new(),
        });
        let kdc = &c.kdc;
        match code {
            ErrorCode::KRB_AP_ERR_SKEW => {
                let skew = x.skew_seconds;
                // The KDC's clock agrees with the capture's: the requester's clock (or the
                // time it wrote into its request) is the wrong one.
                let client_wrong = skew.is_some_and(|s| s.abs() < self.cfg.clock_offset_warning_s);
                let (kind, name): (SubjectKind, Cow<'_, str>) = if client_wrong {
                    (SubjectKind::Client, Cow::Owned(c.client.to_string()))
                } else {
                    (SubjectKind::Kdc, Cow::Borrowed(kdc))
                };
                let client = c.client;
                let a = self.finding(&catalogue::CLOCK_SKEW, kind, &name, c.at, evs);
                if a.is_new() {
                    #[allow(unused_variables)]
                    let (what, err, said, said_paren) = (&*what, &*err, &*said, &*said_paren);
                    a.explanation = match skew {
                        Some(s) if client_wrong => format!(
                            "KDC {kdc} refused {what} with KRB_AP_ERR_SKEW, yet its clock agrees with this capture's (offset {s:+.3} s): the clock of client {client}, or the time it put in its request, is off."
                        ),
                        Some(s) => format!("KDC {kdc} refused {what} with KRB_AP_ERR_SKEW: {}.", offset_words(s)),
                        None => format!(
                            "KDC {kdc} refused {what} with KRB_AP_ERR_SKEW: its clock and the client's differ by more than the allowed skew."
                        ),
                    };
                    add_common(a);
                }
                if let Some(s) = skew {
                    a.measure("offset_seconds", s);
                }
                a.fact_list("principals", c.who.or(c.cname).unwrap_or("?"), 8);
            }
            // The gateway's probe at start: S4U2Self for its own account under its enterprise
            // name, to learn what the KDC does with enterprise names. MIT's KDC holds those
            // only as aliases and answers 6: no one's failure (the gateway's own event says
            // enterprise_unknown), and an ERROR saying the KDC "does not know" the service
            // account would send an administrator after an account that works.
            ErrorCode::KDC_ERR_C_PRINCIPAL_UNKNOWN
                if c.kind == ReqKind::S4u2Self && c.who.zip(c.via).is_some_and(|(w, v)| w.eq_ignore_ascii_case(v)) => {}
            ErrorCode::KDC_ERR_C_PRINCIPAL_UNKNOWN => {
                let name = c.who.or(c.cname).unwrap_or("?");
                let a = self.finding(&catalogue::PRINCIPAL_UNKNOWN, SubjectKind::Principal, name, c.at, evs);
                if a.is_new() {
                    #[allow(unused_variables)]
                    let (what, err, said, said_paren) = (&*what, &*err, &*said, &*said_paren);
                    a.explanation = match c.kind {
                        ReqKind::S4u2Self => format!(
                            "KDC {kdc} does not know {name}: {} asked for a ticket on behalf of this user (S4U2Self: KDC_ERR_C_PRINCIPAL_UNKNOWN{said}).",
                            c.via.unwrap_or("the service account")
                        ),
                        _ => format!("KDC {kdc} does not know {name} (KDC_ERR_C_PRINCIPAL_UNKNOWN{said}, answering {what})."),
                    };
                    add_common(a);
                }
            }
            ErrorCode::KDC_ERR_S_PRINCIPAL_UNKNOWN => {
                let spn = c.target;
                let a = self.finding(&catalogue::TARGET_SPN_UNKNOWN, SubjectKind::Spn, spn, c.at, evs);
                if a.is_new() {
                    #[allow(unused_variables)]
                    let (what, err, said, said_paren) = (&*what, &*err, &*said, &*said_paren);
                    a.explanation = format!(
                        "KDC {kdc} has no account with the service principal name {spn} (KDC_ERR_S_PRINCIPAL_UNKNOWN{said}, answering {what})."
                    );
                    add_common(a);
                    if let Some(v) = c.via {
                        a.fact("service_account", v.to_string());
                    }
                }
                if let Some(u) = c.who {
                    a.fact_list("principals", u, 8);
                }
            }
            ErrorCode::KDC_ERR_BADOPTION if c.kind == ReqKind::S4u2Proxy => {
                self.s4u2proxy_refused(c, x, &said, evs, &add_common);
            }
            // KDC_ERR_NAME_EXP from Samba and MIT; Windows sends CLIENT_REVOKED with the
            // NTSTATUS.
            ErrorCode::KDC_ERR_NAME_EXP | ErrorCode::KDC_ERR_CLIENT_REVOKED
                if code == ErrorCode::KDC_ERR_NAME_EXP
                    || nt == Some(kcd_schema::NtStatus::STATUS_ACCOUNT_EXPIRED) =>
            {
                let name = c.who.or(c.cname).unwrap_or("?");
                let a = self.finding(&catalogue::ACCOUNT_EXPIRED, SubjectKind::Principal, name, c.at, evs);
                if a.is_new() {
                    #[allow(unused_variables)]
                    let (what, err, said, said_paren) = (&*what, &*err, &*said, &*said_paren);
                    a.explanation = format!("KDC {kdc} refused {what} with {err}{said_paren}: the account {name} has expired.");
                    add_common(a);
                }
            }
            ErrorCode::KDC_ERR_POLICY | ErrorCode::KDC_ERR_CLIENT_REVOKED => {
                let name = c.who.or(c.cname).unwrap_or("?");
                let state = match nt.and_then(|n| n.name()) {
                    Some(n) => format!("the KDC says {n}"),
                    None => "the KDC gave no NTSTATUS: disabled, locked out or expired".into(),
                };
                let a = self.finding(&catalogue::ACCOUNT_DISABLED, SubjectKind::Principal, name, c.at, evs);
                if a.is_new() {
                    #[allow(unused_variables)]
                    let (what, err, said, said_paren) = (&*what, &*err, &*said, &*said_paren);
                    a.explanation = format!("KDC {kdc} refused {what} with {err}{said_paren}: the account {name} may not log in ({state}).");
                    add_common(a);
                }
            }
            ErrorCode::KDC_ERR_PREAUTH_FAILED => {
                let name = c.cname.or(c.who).unwrap_or("?");
                let kind = self.subject_kind(name);
                let a = self.finding(&catalogue::PASSWORD_WRONG, kind, name, c.at, evs);
                if a.is_new() {
                    #[allow(unused_variables)]
                    let (what, err, said, said_paren) = (&*what, &*err, &*said, &*said_paren);
                    a.explanation = format!(
                        "KDC {kdc} rejected the login of {name} with KDC_ERR_PREAUTH_FAILED{said_paren}: the password (or key) used does not match the account."
                    );
                    add_common(a);
                }
            }
            ErrorCode::KDC_ERR_KEY_EXPIRED => {
                let name = c.cname.or(c.who).unwrap_or("?");
                let kind = self.subject_kind(name);
                let a = self.finding(&catalogue::PASSWORD_EXPIRED, kind, name, c.at, evs);
                if a.is_new() {
                    #[allow(unused_variables)]
                    let (what, err, said, said_paren) = (&*what, &*err, &*said, &*said_paren);
                    a.explanation = format!("KDC {kdc} refused the login of {name}: its password has expired (KDC_ERR_KEY_EXPIRED{said}).");
                    add_common(a);
                }
            }
            ErrorCode::KDC_ERR_ETYPE_NOSUPP => {
                let name = c.who.or(c.cname).unwrap_or("?");
                let etypes: Vec<String> = k.etypes.iter().map(|e| e.to_string()).collect();
                let a = self.finding(&catalogue::ETYPE_UNSUPPORTED, SubjectKind::Principal, name, c.at, evs);
                if a.is_new() {
                    #[allow(unused_variables)]
                    let (what, err, said, said_paren) = (&*what, &*err, &*said, &*said_paren);
                    a.explanation = format!("KDC {kdc} found no encryption type it shares with the client for {what} (KDC_ERR_ETYPE_NOSUPP{said}).");
                    add_common(a);
                    if !etypes.is_empty() {
                        a.fact("client_etypes", etypes);
                    }
                }
            }
            ErrorCode::KRB_AP_ERR_MODIFIED => {
                let spn = c.target;
                let a = self.finding(&catalogue::TICKET_NOT_DECRYPTABLE, SubjectKind::Spn, spn, c.at, evs);
                if a.is_new() {
                    #[allow(unused_variables)]
                    let (what, err, said, said_paren) = (&*what, &*err, &*said, &*said_paren);
                    a.explanation = format!("A ticket for {spn} could not be decrypted (KRB_AP_ERR_MODIFIED{said} from {kdc}): the key it was made with is not the key the receiver holds.");
                    add_common(a);
                }
            }
            ErrorCode::KDC_ERR_WRONG_REALM => {
                let name = c.who.or(c.cname).unwrap_or("?");
                let a = self.finding(&catalogue::WRONG_REALM, SubjectKind::Principal, name, c.at, evs);
                if a.is_new() {
                    #[allow(unused_variables)]
                    let (what, err, said, said_paren) = (&*what, &*err, &*said, &*said_paren);
                    a.explanation = format!("KDC {kdc} answered {what} with KDC_ERR_WRONG_REALM{said}: the request names a realm this KDC does not serve.");
                    add_common(a);
                }
            }
            ErrorCode::KRB_ERR_GENERIC => {
                let (kind, name) = match (c.kind, c.via) {
                    (ReqKind::S4u2Self | ReqKind::S4u2Proxy, Some(v)) => (SubjectKind::ServiceAccount, v),
                    _ => (SubjectKind::Principal, c.who.or(c.cname).unwrap_or("?")),
                };
                let a = self.finding(&catalogue::GENERIC_ERROR, kind, name, c.at, evs);
                if a.is_new() {
                    #[allow(unused_variables)]
                    let (what, err, said, said_paren) = (&*what, &*err, &*said, &*said_paren);
                    a.explanation = format!(
                        "KDC {kdc} refused {what} with KRB_ERR_GENERIC{}.",
                        match e_text {
                            Some(t) => format!(", saying \"{t}\""),
                            None => " and no message".into(),
                        }
                    );
                    add_common(a);
                }
            }
            _ => {
                let (kind, name) = match c.who.or(c.cname) {
                    Some(n) => (SubjectKind::Principal, n),
                    None => (SubjectKind::Kdc, &**kdc),
                };
                let a = self.finding(&catalogue::OTHER_ERROR, kind, name, c.at, evs);
                if a.is_new() {
                    #[allow(unused_variables)]
                    let (what, err, said, said_paren) = (&*what, &*err, &*said, &*said_paren);
                    a.explanation = format!("KDC {kdc} answered {what} with {err}{said_paren}.");
                    add_common(a);
                }
                a.fact_list("errors", &err, 8);
            }
        }
    }

    fn s4u2proxy_refused(
        &mut self,
        c: &ErrCtx<'_>,
        x: &KrbErrorInfo<'_>,
        said: &str,
        evs: smallvec::SmallVec<[Ev; 2]>,
        add_common: &dyn Fn(&mut Agg),
    ) {
        let via = c.via.unwrap_or("the service account");
        let mut r = s4u::Refusal {
            ntstatus: x.e_data.as_ref().and_then(|d| d.ntstatus).map(|n| n.0),
            e_text: x.e_text.as_deref(),
            ..Default::default()
        };
        let mut worked_before = None;
        if let Some(d) = c.via.and_then(|v| self.delegations.get(v)) {
            for (t, u, at) in &d.ok {
                let same_user = Some(&**u) == c.who;
                if &**t == c.target {
                    if same_user {
                        worked_before = Some(*at);
                    } else {
                        r.same_target_other_user_ok = true;
                    }
                } else {
                    r.other_target_ok = true;
                    r.other_target_ok_same_user |= same_user;
                }
            }
        }
        let d = s4u::diagnose(&r);
        let rule = d.rule();
        let target = c.target;
        let user = c.who.unwrap_or("a user whose S4U2Self is not in the capture");
        let kdc = c.kdc.clone();
        // A user who cannot be delegated is the user's problem, not the service account's.
        let (kind, subject) = match (d.causes.as_slice(), c.who) {
            ([s4u::Cause::UserNotDelegable], Some(u)) => (SubjectKind::Principal, u),
            _ => (SubjectKind::ServiceAccount, via),
        };
        let a = self.finding(rule, kind, subject, c.at, evs);
        if a.is_new() {
            let causes: Vec<&str> = d.causes.iter().map(|x| x.describe()).collect();
            let mut s = format!(
                "KDC {kdc} refused S4U2Proxy: {via} may not delegate {user} to {target} (KDC_ERR_BADOPTION{said})"
            );
            match causes.as_slice() {
                [one] => s.push_str(&format!(": {one}")),
                many => s.push_str(&format!("; possible causes: {}", many.join("; "))),
            }
            if !d.because.is_empty() {
                s.push_str(&format!("; deduced from: {}", d.because.join("; ")));
            }
            s.push('.');
            if let Some(t) = worked_before {
                s.push_str(&format!(
                    " The same delegation succeeded at {}: a setting changed since.",
                    t.to_rfc3339()
                ));
            }
            a.explanation = s;
            add_common(a);
            a.fact("target_spn", target.to_string());
            a.fact(
                "possible_causes",
                d.causes.iter().map(|x| x.id().to_string()).collect::<Vec<_>>(),
            );
        }
        if let Some(u) = c.who {
            a.fact_list("principals", u, 8);
        }
    }

    fn subject_kind(&self, name: &str) -> SubjectKind {
        if self.principals.get(&*crate::user_key(name)).is_some_and(|p| p.service_account) {
            SubjectKind::ServiceAccount
        } else {
            SubjectKind::Principal
        }
    }
}
