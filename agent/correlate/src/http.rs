//! HTTP on the wire: CRL fetches (a CA's revocation list unreachable, expired or its delta
//! blocked) and Exchange's answers to ActiveSync and Negotiate (401s, replayed tokens).

use kcd_findings::catalogue::{self, Rule};
use kcd_findings::device::{self as steps, Step};
use kcd_schema::{Event, SubjectKind, Timestamp};

use crate::device::Observation;
use crate::join::LISTED;
use crate::Correlator;

/// CRL URLs whose fetch went wrong, kept to explain the devices that fail after it.
pub(crate) const CRL_TROUBLE_KEPT: usize = 1024;
/// Accepted Kerberos tokens remembered to recognise their replays.
pub(crate) const ACCEPTED_TOKENS_KEPT: usize = 4096;

impl Correlator {
    /// An HTTP transaction seen on the wire: a CRL fetch, or an ActiveSync request (on the
    /// gateway's leg to Exchange, in the clear), or any request Exchange answered 401.
    pub(crate) fn http_transaction(&mut self, e: &Event<'_>) {
        let Some(h) = &e.http else { return };
        let at = e.timestamp;
        if let Some(c) = &e.crl {
            self.crl_fetch(e, c, at);
            return;
        }
        let ev = self.ev(e);
        let server = h.hostname.clone().or_else(|| e.dest_ip.map(|a| a.to_string()));
        let krb = h.authorization.as_ref().is_some_and(|a| {
            matches!(a.kind, kcd_schema::AuthKind::Kerberos | kcd_schema::AuthKind::Spnego)
        });
        let key_unknown = h.authorization.as_ref().and_then(|a| a.kerberos.as_ref()).and_then(|k| k.key_in_keytab) == Some(false);
        let rule: Option<&'static Rule> = match h.status {
            Some(401) => {
                let offered: Vec<&str> = h.www_authenticate.iter().map(String::as_str).collect();
                if key_unknown {
                    Some(&catalogue::EXCHANGE_TICKET_KEY_UNKNOWN)
                } else {
                    steps::exchange_401(&offered, krb)
                }
            }
            Some(413) => Some(&catalogue::HTTP_BODY_TOO_LARGE),
            // Unanswered, the ticket may still be what stopped it. Any other answer means
            // Exchange opened the ticket: the keytab given is not the one Exchange uses,
            // which says nothing against Exchange.
            None if key_unknown => Some(&catalogue::EXCHANGE_TICKET_KEY_UNKNOWN),
            _ => None,
        };
        // A KDC whose clock is 5 minutes or more off this host's makes tickets a server
        // with the right time refuses (KRB_AP_ERR_SKEW inside the 401): the clock, not the
        // server's set-up, is then the first thing to fix.
        let skew = (rule.is_some_and(|r| r.id == catalogue::EXCHANGE_TICKET_REFUSED.id))
            .then(|| {
                self.kdcs
                    .values()
                    .filter(|k| k.offset.samples > 0)
                    .map(|k| k.offset.worst())
                    .filter(|o| o.abs() >= 300.0)
                    .max_by(|a, b| a.abs().total_cmp(&b.abs()))
            })
            .flatten();
        let detail = match (rule, h.status) {
            (Some(r), Some(s)) if r.id == catalogue::EXCHANGE_NEGOTIATE_NOT_OFFERED.id => {
                format!("{} {} answered {s} offering {}", h.http_method, h.url, if h.www_authenticate.is_empty() { "nothing".to_string() } else { h.www_authenticate.join(", ") })
            }
            (Some(_), Some(s)) => format!("{} {} answered {s}", h.http_method, h.url),
            _ => String::new(),
        };
        let token = h.authorization.as_ref().and_then(|a| a.kerberos.as_ref()).and_then(|k| k.authenticator_id.as_deref());
        let mut replay_of = None;
        if let (Some(id), Some(status)) = (token, h.status) {
            if (200..300).contains(&status) {
                self.accepted_tokens.put(id.to_string(), e.frame);
                while self.accepted_tokens.len() > ACCEPTED_TOKENS_KEPT {
                    self.accepted_tokens.pop_lru();
                }
            } else if status == 401 {
                replay_of = self.accepted_tokens.peek(id).copied();
            }
        }
        let detail = match replay_of {
            Some(f) => format!(
                "{detail}; the same Kerberos token (authenticator {}) was accepted before (frame {f}): this is a replayed token, which the server's replay cache refuses; the client (or a proxy) must not resend a used Negotiate header",
                token.unwrap_or("")
            ),
            None => detail,
        };
        let detail = match skew {
            Some(o) => format!(
                "{detail}; a KDC's clock is {:.0} s off this host's (krb.clock_skew): a server whose clock differs from the KDC's by 5 minutes or more refuses its tickets, so fix the clocks (NTP) before Exchange's settings",
                o
            ),
            None => detail,
        };
        let Some(eas) = &e.eas else {
            // Not a device's request: the finding is the server's alone.
            if let Some(r) = rule {
                let name = server.as_deref().unwrap_or("Exchange");
                let a = self.findings.record(r, SubjectKind::Server, name, at, [ev]);
                a.fact("detail", detail.as_str());
                a.explanation = format!("Requests to {name} failed: {detail}.");
            }
            return;
        };
        let status = h.status;
        let failure = match (rule, status) {
            (Some(r), _) => Some((Step::Exchange, Some(r), status.map_or("no answer".into(), |s| format!("http_{s}")), detail.clone(), status)),
            (None, Some(s)) if s >= 500 => Some((Step::Exchange, None, format!("http_{s}"), format!("Exchange answered {s}"), Some(s))),
            _ => None,
        };
        // The first leg of a Negotiate handshake (401 without a token sent) is no failure.
        let first_leg = status == Some(401) && rule.is_none();
        let obs = Observation {
            device_id: eas.device_id.as_deref(),
            device_type: eas.device_type.as_deref(),
            cmd: eas.cmd.as_deref(),
            ok: failure.is_none() && status.is_some_and(|s| s < 500) && !first_leg,
            request: !first_leg,
            // The first leg of Negotiate proves nothing yet.
            reached: (!first_leg).then_some(Step::Exchange),
            failure,
            exchange_status: status,
            ..Default::default()
        };
        let Some(key) = self.devices.observe(obs, at, ev) else { return };
        if let Some(r) = rule {
            self.device_finding(&key, r, &detail, None, server.as_deref(), at, ev);
        }
    }

    fn crl_fetch(&mut self, e: &Event<'_>, c: &kcd_schema::Crl, at: Timestamp) {
        use kcd_schema::CrlProblem as P;
        let rule: Option<&'static Rule> = c.problems.iter().find_map(|p| match p {
            P::NotFoundPlusName => Some(&catalogue::CRL_DELTA_BLOCKED),
            P::ExpiredAtCapture => Some(&catalogue::CRL_EXPIRED),
            P::HttpError | P::Unparseable => Some(&catalogue::CRL_UNREACHABLE),
            P::NotYetValidAtCapture => None,
        });
        let Some(r) = rule else {
            // A good fetch clears the URL's trouble.
            self.crl_trouble.pop(c.url.as_str());
            return;
        };
        let ev = self.ev(e);
        self.crl_trouble.put(c.url.clone(), (r, at));
        while self.crl_trouble.len() > CRL_TROUBLE_KEPT {
            self.crl_trouble.pop_lru();
        }
        // The CA when the CRL could be read; else the CDP server's URL.
        let (kind, subject) = match &c.issuer {
            Some(i) => (SubjectKind::Ca, i.clone()),
            None => (SubjectKind::Server, c.url.clone()),
        };
        let status = e.http.as_ref().and_then(|h| h.status);
        let detail = match (r.id, status) {
            (id, Some(s)) if id != catalogue::CRL_EXPIRED.id => format!("{} answered HTTP {s}", c.url),
            _ => match &c.next_update {
                Some(n) => format!("{} expired at {n} (nextUpdate)", c.url),
                None => c.url.clone(),
            },
        };
        let a = self.findings.record(r, kind, &subject, at, [ev]);
        a.fact_list("urls", &c.url, LISTED);
        a.fact("detail", detail.as_str());
        a.explanation = format!("The CRL at {detail}; devices whose certificates point there cannot be checked and are refused.");
    }
}
