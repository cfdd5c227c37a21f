//! What the correlator knows, for people and for the NDJSON: findings (with those that
//! need the whole picture decided now), KDCs, clients and principals in a stable order.

use kcd_schema::{Finding, SubjectKind};

use crate::state::{self, Kdc, PrincipalState, Step};
use crate::kerberos::offset_words;
use crate::{capitalise, catalogue, findings, Client, Correlator, SECOND};

impl Correlator {
    /// Findings so far, errors first. Decisions that need the whole picture (is a silent
    /// KDC down, or only dropping some requests?) are taken on the state as it stands.
    pub fn findings(&self) -> Vec<Finding> {
        let mut out: Vec<Finding> =
            self.findings.iter().map(|a| findings::materialize(a, &self.files)).collect();
        let mut kdcs: Vec<&Kdc> = self.kdcs.values().collect();
        kdcs.sort_by_key(|k| (k.addr, k.port));
        for k in kdcs {
            self.kdc_findings(k, &mut out);
        }
        out.extend(self.retired.iter().cloned());
        for f in &mut out {
            self.add_devices(f);
        }
        findings::sort(&mut out);
        out
    }

    fn add_devices(&self, f: &mut Finding) {
        if !matches!(f.subject.kind, SubjectKind::Principal) {
            return;
        }
        let devs = self.devices.for_principal(&f.subject.name, f.first_seen, f.last_seen, self.cfg.device_window_ns);
        if !devs.is_empty() {
            let names: Vec<String> = devs.iter().map(|d| d.key.to_string()).collect();
            f.facts.insert("devices".into(), names.into());
        }
    }

    pub(crate) fn kdc_findings(&self, k: &Kdc, out: &mut Vec<Finding>) {
        let name = k.name();
        let ev = |t: &state::Trouble| t.evidence.iter().map(|e| e.evidence(&self.files)).collect();
        let answered = k.answers();
        // A flood: requests were given up before any could wait long enough, but the KDC
        // answered none of them in all that time (a dead KDC's retry storm).
        let flooded = answered == 0
            && k.given_up.count > 0
            && k.given_up.first.is_some_and(|f| k.last_seen.0 - f.0 >= self.cfg.unanswered_after_ns);
        if k.silent.count > 0 || flooded {
            let rule = if answered == 0 { &catalogue::KDC_UNREACHABLE } else { &catalogue::KDC_REQUESTS_UNANSWERED };
            let explanation = if flooded {
                format!(
                    "KDC {name} answered none of the {} request(s) sent to it in {:.0} s ({} given up unanswered when the request table was full), and no other KDC answered them either.",
                    k.silent.count + k.given_up.count,
                    (k.last_seen.0 - k.given_up.first.map_or(k.first_seen, |t| t.min(k.first_seen)).0) as f64 / 1e9,
                    k.given_up.count
                )
            } else if answered == 0 {
                format!(
                    "KDC {name} answered none of the {} request(s) sent to it ({}s of waiting or more each), and no other KDC answered them either.",
                    k.silent.count,
                    self.cfg.unanswered_after_ns / SECOND
                )
            } else {
                format!(
                    "KDC {name} left {} of {} request(s) unanswered (no reply within {} s, and no other KDC answered them).",
                    k.silent.count,
                    k.silent.count + answered,
                    self.cfg.unanswered_after_ns / SECOND
                )
            };
            let given_up = if flooded { k.given_up.count } else { 0 };
            let mut facts = std::collections::BTreeMap::new();
            facts.insert("unanswered".into(), (k.silent.count + given_up).into());
            facts.insert("answered".into(), answered.into());
            if given_up > 0 {
                facts.insert("given_up_table_full".into(), given_up.into());
            }
            if !k.silent.principals.is_empty() {
                let p: Vec<String> = k.silent.principals.iter().map(|p| p.to_string()).collect();
                facts.insert("principals".into(), p.into());
            }
            let shown = if k.silent.count > 0 { &k.silent } else { &k.given_up };
            out.push(Finding {
                id: rule.id.into(),
                severity: rule.severity,
                subject: kcd_schema::Subject { kind: SubjectKind::Kdc, name: name.clone() },
                first_seen: shown.first.unwrap_or(k.first_seen),
                last_seen: shown.last.unwrap_or(k.last_seen),
                count: k.silent.count + given_up,
                explanation,
                fix: rule.fix_for(Default::default()),
                facts,
                evidence: ev(shown),
            });
        }
        let skewed = self.findings.contains(catalogue::CLOCK_SKEW.id, SubjectKind::Kdc, &name);
        if k.offset_over.count > 0 && !skewed {
            let rule = &catalogue::CLOCK_OFFSET;
            let mut facts = std::collections::BTreeMap::new();
            facts.insert("offset_seconds".into(), findings::round(k.offset_over.worst).into());
            facts.insert("threshold_seconds".into(), self.cfg.clock_offset_warning_s.into());
            facts.insert("samples".into(), k.offset.samples.into());
            out.push(Finding {
                id: rule.id.into(),
                severity: rule.severity,
                subject: kcd_schema::Subject { kind: SubjectKind::Kdc, name: name.clone() },
                first_seen: k.offset_over.first.unwrap_or(k.first_seen),
                last_seen: k.offset_over.last.unwrap_or(k.last_seen),
                count: k.offset_over.count,
                explanation: format!(
                    "{} (measured from the time in its KRB-ERRORs); nothing has failed yet, but Kerberos refuses clocks 5 minutes apart.",
                    capitalise(&offset_words(k.offset_over.worst).replacen("its clock", &format!("KDC {name}'s clock"), 1))
                ),
                fix: rule.fix_for(Default::default()),
                facts,
                evidence: ev(&k.offset_over),
            });
        }
    }

    /// KDCs by address.
    pub fn kdcs(&self) -> Vec<&Kdc> {
        let mut v: Vec<&Kdc> = self.kdcs.values().collect();
        v.sort_by_key(|k| (k.addr, k.port));
        v
    }

    /// Client hosts by address.
    pub fn clients(&self) -> Vec<Client> {
        let mut by_id: Vec<(u32, std::net::IpAddr)> = self.kdcs.values().map(|k| (k.id, k.addr)).collect();
        by_id.sort_unstable();
        // Counters still waiting to be applied (a live view between batches) count too.
        let pending;
        let clients = match self.client_notes.is_empty() {
            true => &self.clients,
            false => {
                let mut m = self.clients.clone();
                for &(key, at, note) in &self.client_notes {
                    crate::kerberos::apply_client_note(m.entry(key).or_insert_with(|| crate::state::ClientStats::new(at)), at, note);
                }
                pending = m;
                &pending
            }
        };
        let mut v: Vec<Client> = clients
            .iter()
            .map(|(ip, c)| Client {
                addr: (*ip).into(),
                first_seen: c.first_seen,
                last_seen: c.last_seen,
                as_req: c.as_req.into(),
                tgs_req: c.tgs_req.into(),
                s4u2self: c.s4u2self.into(),
                s4u2proxy: c.s4u2proxy.into(),
                udp: c.udp.into(),
                tcp: c.tcp.into(),
                errors: c.errors.into(),
                kdcs: by_id.iter().filter(|(id, _)| *id < 64 && c.kdcs & (1 << id) != 0).map(|(_, a)| *a).collect(),
            })
            .collect();
        v.sort_by_key(|c| c.addr);
        v
    }

    /// Principals, by name.
    pub fn principals(&self) -> Vec<&PrincipalState> {
        let mut v: Vec<&PrincipalState> = self.principals.values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The capture file a step's frame is in.
    pub fn file_of(&self, s: &Step) -> Option<&str> {
        self.files.get(s.file as usize).map(|f| &**f).filter(|f| !f.is_empty())
    }
}
