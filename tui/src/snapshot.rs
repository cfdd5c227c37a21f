//! What the UI shows, taken from the correlator at one moment of the replay: plain data,
//! built on the worker thread, so that the UI thread never touches the correlator and a
//! frame only reads. Pure: a correlator in, a snapshot out.

use kcd_correlate::{Correlator, DeviceState, DeviceStatus, DeviceStep, Outcome, PrincipalState, Step};
use kcd_schema::{Finding, Severity, SubjectKind, Timestamp};

use crate::text::clean;

/// How a device (or principal) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Failing,
    Warning,
    Pending,
    Healthy,
}

impl Status {
    /// A glyph and a word: the status reads without colour.
    pub fn glyph(self) -> &'static str {
        match self {
            Status::Failing => "x",
            Status::Warning => "!",
            Status::Pending => "~",
            Status::Healthy => "+",
        }
    }
    pub fn word(self) -> &'static str {
        match self {
            Status::Failing => "FAILING",
            Status::Warning => "WARNING",
            Status::Pending => "PENDING",
            Status::Healthy => "OK",
        }
    }
}

/// One step of a device's story.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    /// "S4U2Self", "S4U2Proxy", "AS", "TGS" (later: "TLS", "CRL", "Exchange").
    pub name: &'static str,
    pub at: Timestamp,
    pub latency_ms: Option<f64>,
    pub ok: bool,
    /// What was asked for, and the answer ("HTTP/exchange.lab.test: KDC_ERR_BADOPTION (13)").
    pub detail: String,
    /// Where it shows: "file.pcap frame 12".
    pub evidence: String,
}

/// One row of the Devices view: a device, or a principal while no device is known.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    /// The device's key (DeviceId, else certificate, else address), or the principal.
    pub key: String,
    pub upn: String,
    pub device_id: String,
    pub address: String,
    pub status: Status,
    pub last_step: &'static str,
    pub failing_step: Option<&'static str>,
    pub finding: Option<String>,
    pub severity: Option<Severity>,
    pub requests: u64,
    /// KDCs it talked with (for `kdc:` filters).
    pub kdcs: Vec<String>,
    /// KRB-ERROR names and codes met (for `err:` filters).
    pub errors: Vec<String>,
    pub steps: Vec<StepRow>,
    /// The finding's explanation and fix, for the detail view.
    pub explanation: Option<String>,
    pub fix: Option<String>,
    pub also_known_as: Vec<String>,
}

impl DeviceRow {
    /// The device and its user ("ALICEPHONE1 alice@lab.test"), or the principal alone.
    pub fn label(&self) -> String {
        if self.key == self.upn || self.upn.is_empty() {
            self.key.clone()
        } else {
            format!("{} {}", self.key, self.upn)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct KdcRow {
    pub name: String,
    pub realms: String,
    pub requests: u64,
    pub answers: u64,
    pub unanswered: u64,
    /// (name and code, count)
    pub errors: Vec<(String, u64)>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Its clock minus the capture's, seconds (from its KRB-ERRORs), when measured.
    pub offset_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FindingRow {
    pub severity: Severity,
    pub id: String,
    pub subject: String,
    pub count: u64,
    /// Device keys this finding concerns.
    pub devices: Vec<String>,
    pub explanation: String,
    pub fix: String,
}

/// Counters for the header: nothing is dropped or evicted silently.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub packets: u64,
    pub events: u64,
    pub anomalies: u64,
    /// Events the UI's stream did not keep (its ring is bounded).
    pub events_dropped: u64,
    /// Table entries the correlator evicted at its caps.
    pub evicted: u64,
    /// Snapshots the UI was too slow to take (live sources).
    pub snapshots_dropped: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Capture time of the last event fed.
    pub position: Option<Timestamp>,
    /// First capture time seen.
    pub start: Option<Timestamp>,
    pub devices: Vec<DeviceRow>,
    pub kdcs: Vec<KdcRow>,
    pub findings: Vec<FindingRow>,
    pub counters: Counters,
    /// The source has nothing more to give (replay at its end).
    pub done: bool,
}

fn step_row(c: &Correlator, s: &Step) -> StepRow {
    let answer = match s.outcome {
        Outcome::Ok => "ok".to_string(),
        Outcome::Error(code) => format!("{} ({})", code, code.0),
        Outcome::Unanswered => "no answer".to_string(),
    };
    let evidence = match c.file_of(s) {
        Some(f) => format!("{} frame {}", f.rsplit('/').next().unwrap_or(f), s.frame),
        None => format!("frame {}", s.frame),
    };
    StepRow {
        name: s.kind.name(),
        at: s.at,
        latency_ms: s.latency_us.map(|u| u as f64 / 1000.0),
        ok: s.outcome == Outcome::Ok,
        detail: clean(&format!("{answer}: {} (KDC {})", s.target, s.kdc)),
        evidence: clean(&evidence),
    }
}

/// The findings that concern a principal: about it, or listing it among those affected.
fn concerns(f: &Finding, p: &PrincipalState) -> bool {
    let key = kcd_correlate::user_key(&p.name);
    let same = |n: &str| kcd_correlate::user_key(n) == key;
    (matches!(f.subject.kind, SubjectKind::Principal | SubjectKind::ServiceAccount) && same(&f.subject.name))
        || f.facts.get("principals").and_then(|v| v.as_array()).is_some_and(|a| a.iter().filter_map(|v| v.as_str()).any(same))
}

/// The KDCs a principal talked with and the KRB-ERRORs it met (for `kdc:` and `err:`).
fn kdcs_and_errors(p: &PrincipalState) -> (Vec<String>, Vec<String>) {
    let mut kdcs: Vec<String> = p.steps.iter().map(|s| s.kdc.to_string()).collect();
    kdcs.sort();
    kdcs.dedup();
    let mut errors: Vec<String> = p
        .steps
        .iter()
        .filter_map(|s| match s.outcome {
            Outcome::Error(e) => Some(format!("{} {}", e, e.0)),
            _ => None,
        })
        .collect();
    errors.sort();
    errors.dedup();
    (kdcs, errors)
}

fn device_row(c: &Correlator, p: &PrincipalState, findings: &[Finding]) -> DeviceRow {
    let steps: Vec<StepRow> = p.steps.iter().map(|s| step_row(c, s)).collect();
    // The most severe, and of those the latest: what is wrong now.
    let worst = findings.iter().filter(|f| concerns(f, p)).max_by_key(|f| (f.severity, f.last_seen));
    let last = p.steps.back();
    let failing = p.steps.iter().rev().find(|s| s.outcome != Outcome::Ok);
    let status = match (worst.map(|f| f.severity), last.map(|s| s.outcome)) {
        (Some(Severity::Error), _) => Status::Failing,
        (_, Some(Outcome::Error(_))) => Status::Failing,
        (Some(Severity::Warning), _) => Status::Warning,
        (_, Some(Outcome::Unanswered)) => Status::Pending,
        _ => Status::Healthy,
    };
    let devices = c.devices_of(p);
    let (kdcs, errors) = kdcs_and_errors(p);
    DeviceRow {
        key: clean(&p.name),
        upn: clean(&p.name),
        device_id: devices.first().map(|d| clean(&d.key)).unwrap_or_default(),
        address: String::new(),
        status,
        last_step: last.map_or("-", |s| s.kind.name()),
        failing_step: (status == Status::Failing).then(|| failing.map_or("-", |s| s.kind.name())),
        finding: worst.filter(|f| f.severity >= Severity::Warning).map(|f| f.id.clone()),
        severity: worst.map(|f| f.severity),
        requests: p.ok + p.failed,
        kdcs,
        errors,
        steps,
        explanation: worst.map(|f| clean(&f.explanation)),
        fix: worst.map(|f| clean(&f.fix)),
        also_known_as: p.aliases.iter().map(|a| clean(a)).collect(),
    }
}

/// The snapshot of a correlator now.
pub fn take(c: &Correlator, counters: Counters, start: Option<Timestamp>, done: bool) -> Snapshot {
    let findings = c.findings();
    let principals = c.principals();
    // Service accounts delegate for others: the users are the devices' stories.
    let users: Vec<&PrincipalState> = principals.iter().copied().filter(|p| !p.service_account && !is_krbtgt(&p.name)).collect();
    // A row per device known from the gateway's events or the wire; a user with no device
    // seen keeps a row of its own, so that a Kerberos-only capture still tells its story.
    let mut devices: Vec<DeviceRow> = c.devices().into_iter().map(|d| device_state_row(c, d, &users, &findings)).collect();
    devices.extend(users.iter().filter(|p| c.devices_of(p).is_empty()).map(|p| device_row(c, p, &findings)));
    let kdcs = c
        .kdcs()
        .into_iter()
        .map(|k| {
            let lat = k.latency();
            KdcRow {
                name: clean(&k.name()),
                realms: clean(&k.realms.iter().map(|r| &**r).collect::<Vec<_>>().join(",")),
                requests: k.requests,
                answers: k.answers(),
                unanswered: k.unanswered + k.failed_over,
                // PREAUTH_REQUIRED is how every password login starts, not an error.
                errors: k.errors.iter().filter(|(code, _)| code.0 != 25).map(|(code, n)| (format!("{} ({})", code, code.0), *n)).collect(),
                p50_ms: lat.map(|l| l.p50 as f64 / 1000.0),
                p99_ms: lat.map(|l| l.p99 as f64 / 1000.0),
                offset_s: (k.offset.samples > 0).then(|| k.offset.worst()),
            }
        })
        .collect();
    let findings = findings
        .iter()
        .map(|f| {
            let mut devices: Vec<String> = users.iter().filter(|p| concerns(f, p)).map(|p| clean(&p.name)).collect();
            if let Some(a) = f.facts.get("devices").and_then(|v| v.as_array()) {
                devices.extend(a.iter().filter_map(|v| v.as_str()).map(clean));
            }
            FindingRow {
                severity: f.severity,
                id: f.id.clone(),
                subject: clean(&f.subject.name),
                count: f.count,
                devices,
                explanation: clean(&f.explanation),
                fix: clean(&f.fix),
            }
        })
        .collect();
    Snapshot { position: c.span().map(|s| s.1), start: start.or(c.span().map(|s| s.0)), devices, kdcs, findings, counters, done }
}

fn is_krbtgt(n: &str) -> bool {
    n.to_ascii_lowercase().starts_with("krbtgt/")
}

fn step_name(s: DeviceStep) -> &'static str {
    match s {
        // The Devices table's step columns are 9 wide.
        DeviceStep::Certificate => "Cert",
        DeviceStep::Crl => "CRL",
        DeviceStep::S4u2Self => "S4U2Self",
        DeviceStep::S4u2Proxy => "S4U2Proxy",
        DeviceStep::Exchange => "Exchange",
    }
}

/// A device's row: its own story (the gateway's verdicts, the wire), with the Kerberos
/// steps of its user.
fn device_state_row(c: &Correlator, d: &DeviceState, users: &[&PrincipalState], findings: &[Finding]) -> DeviceRow {
    let v = c.verdict(d, findings);
    let user = d.upn.as_deref().and_then(|u| users.iter().copied().find(|p| kcd_correlate::upn_matches(u, &p.name)));
    let mut steps: Vec<StepRow> = Vec::new();
    if let Some(f) = &d.failing {
        steps.push(StepRow {
            name: step_name(f.step),
            at: f.at,
            latency_ms: None,
            ok: false,
            detail: clean(&format!("{}: {}", f.reason, f.detail)),
            evidence: String::new(),
        });
    }
    if let Some(p) = user {
        steps.extend(p.steps.iter().map(|s| step_row(c, s)));
    }
    let (kdcs, errors) = user.map(kdcs_and_errors).unwrap_or_default();
    let status = match v.status {
        DeviceStatus::Failing => Status::Failing,
        DeviceStatus::Warning => Status::Warning,
        DeviceStatus::Pending => Status::Pending,
        DeviceStatus::Ok => Status::Healthy,
    };
    let rule = v.finding.as_deref().and_then(kcd_correlate::catalogue::by_id);
    let explanation = v
        .finding
        .as_deref()
        .and_then(|id| {
            let label = kcd_correlate::device_label(d);
            findings.iter().find(|f| {
                f.id == id
                    && f.facts.get("devices").and_then(|x| x.as_array()).is_some_and(|a| a.iter().any(|x| x.as_str() == Some(label.as_str()) || x.as_str() == Some(&*d.key)))
            })
        })
        .map(|f| clean(&f.explanation))
        .or_else(|| v.detail.as_deref().map(clean));
    DeviceRow {
        key: clean(&d.key),
        upn: d.upn.as_deref().map(clean).unwrap_or_default(),
        device_id: d.device_id.as_deref().map(clean).unwrap_or_default(),
        address: d.addresses.last().map(|a| a.to_string()).unwrap_or_default(),
        status,
        last_step: v.reached.map_or("-", step_name),
        failing_step: v.failed.map(step_name),
        finding: v.finding.as_deref().map(clean),
        severity: rule.map(|r| r.severity),
        requests: d.requests,
        kdcs,
        errors,
        steps,
        explanation,
        fix: rule.map(|r| clean(&r.fix_for(Default::default()))),
        also_known_as: user.map(|p| p.aliases.iter().map(|a| clean(a)).collect()).unwrap_or_default(),
    }
}
