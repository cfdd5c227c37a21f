//! The device join: the findings a refused device raises, whoever saw it (the gateway's
//! request events, gateway.rs; from the wire, TLS handshakes, tls.rs, and Exchange's
//! HTTP, http.rs), and each device's verdict.
//! Kerberos is joined by the device's user: the principal's own findings tell the
//! S4U2Self and S4U2Proxy steps of devices the gateway's events do not cover.

use kcd_findings::catalogue::{self, Rule};
use kcd_findings::device::{self as steps, Step};
use kcd_schema::{Finding, Severity, SubjectKind, Timestamp};

use crate::device::{DeviceState, Observation};
use crate::state::Ev;
use crate::state::PrincipalState;
use crate::Correlator;

/// Devices and users listed in a finding's facts, at most.
pub(crate) const LISTED: usize = 16;

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

    /// A device (EAS DeviceId, certificate fingerprint, address) presented `upn` at `at`:
    /// the gateway's and TLS events call this; principals then list their devices.
    pub fn observe_device(&mut self, device: &str, upn: &str, at: Timestamp) {
        let o = Observation { device_id: Some(device), upn: Some(upn), ..Default::default() };
        self.devices.observe(o, at, Ev { file: 0, frame: 0, flow: None });
    }

    /// Devices seen with a UPN naming this principal around the time it was active.
    pub fn devices_of(&self, principal: &PrincipalState) -> Vec<&DeviceState> {
        self.devices.for_principal(
            &principal.name,
            principal.first_seen,
            principal.last_seen,
            self.cfg.device_window_ns,
        )
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
