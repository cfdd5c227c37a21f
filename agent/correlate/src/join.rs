//! The device join: what the gateway's request events (and, from the wire, TLS handshakes
//! and Exchange's HTTP) say about each device, and the findings a refused device raises.
//! Kerberos is joined by the device's user: the principal's own findings tell the
//! S4U2Self and S4U2Proxy steps of devices the gateway's events do not cover.

use kcd_findings::catalogue::{self, Rule};
use kcd_findings::device::{self as steps, Step};
use kcd_schema::{Event, Finding, KcdStep, Severity, SubjectKind, Timestamp};

use crate::device::{parse_address, DeviceCert, DeviceState, Observation};
use crate::state::Ev;
use crate::Correlator;

/// Devices and users listed in a finding's facts, at most.
const LISTED: usize = 16;

/// How a device stands, for the report and the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeviceStatus {
    Failing,
    Warning,
    Pending,
    Ok,
}

impl DeviceStatus {
    pub fn word(self) -> &'static str {
        match self {
            DeviceStatus::Failing => "FAILING",
            DeviceStatus::Warning => "WARNING",
            DeviceStatus::Pending => "PENDING",
            DeviceStatus::Ok => "OK",
        }
    }
}

/// A device's story, decided: its status, the furthest step its latest request reached,
/// and the step that failed with the finding that names it.
#[derive(Debug, Clone)]
pub struct Verdict<'c> {
    pub device: &'c DeviceState,
    pub status: DeviceStatus,
    pub reached: Option<Step>,
    pub failed: Option<Step>,
    /// The finding id naming the failure (or warning).
    pub finding: Option<String>,
    pub detail: Option<String>,
    /// Where the failure shows (the gateway's event, or the packet).
    pub evidence: Option<kcd_schema::Evidence>,
}

impl Correlator {
    /// One request the gateway served or refused (`gateway.step` = request).
    pub(crate) fn gateway_request(&mut self, e: &Event<'_>) {
        let Some(g) = &e.gateway else { return };
        if g.step != KcdStep::Request {
            return;
        }
        let at = e.timestamp;
        let ev = self.ev(e);
        let dev = g.device.as_deref();
        let cert = g.certificate.as_deref();
        let upn = g.user.as_deref().or(cert.and_then(|c| c.upn.as_deref()));
        let address = dev.and_then(|d| d.address.as_deref()).and_then(parse_address).or(e.src_ip);
        let backend = g.backend.as_deref().and_then(|b| b.status);
        let failure = g.reason.as_deref().map(|reason| {
            let (step, rule) = match steps::gateway_reason(reason) {
                Some((s, r)) => (s, Some(r)),
                None => {
                    // "kerberos": the delegation client named it; other refusals are about
                    // one malformed request and name no set-up problem.
                    let rule = g.finding.as_deref().and_then(catalogue::by_id);
                    let step = match g.kcd.as_deref().and_then(|k| k.step) {
                        Some(KcdStep::S4u2proxy) => Step::S4u2Proxy,
                        Some(KcdStep::Login | KcdStep::S4u2self) => Step::S4u2Self,
                        _ => rule.map_or(Step::Exchange, steps::step_of),
                    };
                    (step, rule)
                }
            };
            (step, rule, reason.to_string(), g.detail.as_deref().unwrap_or("").to_string(), g.status)
        });
        // Exchange's own failures (5xx) passed through; EAS answers 449 and 451 by design.
        let failure = failure.or_else(|| {
            backend
                .filter(|&s| s >= 500)
                .map(|s| (Step::Exchange, None, format!("http_{s}"), format!("Exchange answered {s}"), Some(s)))
        });
        let ok = failure.is_none() && g.status.is_some_and(|s| s < 500);
        let finding = failure.as_ref().and_then(|f| f.1.map(|r| (r, f.3.clone())));
        let obs = Observation {
            device_id: dev.and_then(|d| d.device_id.as_deref()),
            device_type: dev.and_then(|d| d.device_type.as_deref()),
            fingerprint: cert.map(|c| c.sha256.as_str()),
            address,
            upn,
            cert: cert.map(|c| DeviceCert {
                subject: c.subject.as_str().into(),
                issuer: c.issuer.as_str().into(),
                serial: c.serial.as_str().into(),
                sha256: c.sha256.as_str().into(),
                upn: c.upn.as_deref().map(Into::into),
                not_after: Some(c.not_after),
                revocation: c.revocation.as_deref().map(Into::into),
                cdp: Vec::new(),
            }),
            cmd: dev.and_then(|d| d.cmd.as_deref()),
            user_mismatch: dev.and_then(|d| d.user_mismatch.as_deref()),
            ok,
            request: true,
            reached: None,
            failure,
            exchange_status: backend,
        };
        let Some(key) = self.devices.observe(obs, at, ev) else { return };
        if let Some((rule, detail)) = finding {
            let issuer = cert.map(|c| c.issuer.clone());
            let server = g.spn.as_deref().map(str::to_string);
            self.device_finding(&key, rule, &detail, issuer.as_deref(), server.as_deref(), at, ev);
        }
    }

    /// A device met a rule: the finding goes to what must be fixed. Certificate problems
    /// are the device's; CRL problems its CA's (one finding however many devices);
    /// Exchange's its server's; Kerberos ones the user's, as the wire diagnosis names them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn device_finding(
        &mut self,
        key: &str,
        rule: &'static Rule,
        detail: &str,
        issuer: Option<&str>,
        server: Option<&str>,
        at: Timestamp,
        ev: Ev,
    ) {
        let Some(d) = self.devices.get(key) else { return };
        let upn = d.upn.clone();
        let label = device_label(d);
        let id = rule.id;
        // What the CA's templates or publication decide is one finding for all its
        // devices; what is wrong with one device's own certificate is that device's.
        let per_ca = id.starts_with("crl.")
            || [
                catalogue::CERT_ISSUER_NOT_TRUSTED.id,
                catalogue::CERT_NO_UPN.id,
                catalogue::CERT_TWO_UPNS.id,
                catalogue::CERT_NO_CLIENT_AUTH_EKU.id,
                catalogue::CERT_UPN_NOT_MAPPED.id,
            ]
            .contains(&id);
        let (kind, subject): (SubjectKind, String) = if per_ca {
            match issuer {
                Some(i) => (SubjectKind::Ca, i.to_string()),
                None => (SubjectKind::Device, key.to_string()),
            }
        } else if id.starts_with("exchange.") {
            (SubjectKind::Server, server.unwrap_or("Exchange").to_string())
        } else if id.starts_with("krb.") {
            match &upn {
                Some(u) => (SubjectKind::Principal, u.to_string()),
                None => (SubjectKind::Device, key.to_string()),
            }
        } else {
            (SubjectKind::Device, key.to_string())
        };
        let a = self.findings.record(rule, kind, &subject, at, [ev]);
        a.fact_list("devices", &label, LISTED);
        if let Some(u) = &upn {
            a.fact_list("users", u, LISTED);
        }
        if !detail.is_empty() {
            a.fact("detail", detail);
        }
        let n = a.facts.get("devices").and_then(|v| v.as_array()).map_or(0, Vec::len);
        let who = if n <= 1 { format!("device {label}") } else { format!("{n} devices (the first {label})") };
        let said = if detail.is_empty() { String::new() } else { format!(": {detail}") };
        a.explanation = match kind {
            SubjectKind::Ca => format!(
                "Requests from {who} with certificates issued by {subject} were refused at the {} step{said}.",
                steps::step_of(rule).label()
            ),
            SubjectKind::Server => format!("Requests from {who} failed at Exchange{said}."),
            SubjectKind::Principal => format!("Requests from {who} of user {subject} failed at {}{said}.", steps::step_of(rule).label()),
            _ => format!("Requests from {who} were refused at the {} step{said}.", steps::step_of(rule).label()),
        };
    }

    /// Every device, first seen first.
    pub fn devices(&self) -> Vec<&DeviceState> {
        self.devices.all()
    }

    /// A device's story, with the Kerberos findings of its user (`findings`: those of this
    /// correlator, as [`Correlator::findings`] gives them).
    pub fn verdict<'c>(&'c self, d: &'c DeviceState, findings: &[Finding]) -> Verdict<'c> {
        if let Some(f) = &d.failing {
            // Refused is failing, whatever the rule's severity (a revoked device is refused
            // as it should be, but it cannot sync).
            return Verdict {
                device: d,
                status: DeviceStatus::Failing,
                reached: Some(f.step),
                failed: Some(f.step),
                finding: f.rule.map(|r| r.id.to_string()),
                detail: Some(if f.detail.is_empty() { f.reason.to_string() } else { f.detail.to_string() }),
                evidence: Some(f.ev.evidence(&self.files)),
            };
        }
        // No refusal of its own recorded: its user's Kerberos findings, if any, are where
        // a device seen only on the wire stops.
        let user = d.upn.as_deref().filter(|_| d.ok == 0);
        let krb = user.and_then(|u| {
            findings
                .iter()
                .filter(|f| f.severity >= Severity::Warning && f.id.starts_with("krb."))
                .filter(|f| {
                    matches!(f.subject.kind, SubjectKind::Principal) && crate::device::upn_matches(u, &f.subject.name)
                        || f.facts.get("principals").and_then(|v| v.as_array()).is_some_and(|a| {
                            a.iter().filter_map(|v| v.as_str()).any(|p| crate::device::upn_matches(u, p))
                        })
                })
                .max_by_key(|f| (f.severity, f.last_seen))
        });
        if let Some(f) = krb {
            let step = steps::kerberos_step(&f.id);
            return Verdict {
                device: d,
                status: if f.severity == Severity::Error { DeviceStatus::Failing } else { DeviceStatus::Warning },
                reached: Some(step),
                failed: Some(step),
                finding: Some(f.id.clone()),
                detail: Some(f.explanation.clone()),
                evidence: f.evidence.first().cloned(),
            };
        }
        let status = match (d.ok, d.reached) {
            (0, Some(Step::Exchange)) | (1.., _) => DeviceStatus::Ok,
            _ => DeviceStatus::Pending,
        };
        Verdict { device: d, status, reached: d.reached, failed: None, finding: None, detail: None, evidence: None }
    }
}

/// "ANDROIDC1234 (alice@lab.test)": the device and its user, as a finding lists it.
pub fn device_label(d: &DeviceState) -> String {
    match &d.upn {
        Some(u) if **u != *d.key => format!("{} ({u})", d.key),
        _ => d.key.to_string(),
    }
}

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

