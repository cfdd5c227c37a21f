//! Findings being accumulated: one per (rule, subject), however often it recurs, with the
//! first packets that show it. Bounded: past the cap, new subjects of a rule fold into one
//! "(other ...)" subject, so a flood of distinct names cannot grow memory.

use std::collections::BTreeMap;

use kcd_schema::{Finding, Subject, SubjectKind, Timestamp};
use serde_json::Value;
use smallvec::SmallVec;
use std::hash::BuildHasher;

use crate::catalogue::Rule;
use crate::state::Ev;
use crate::Map;

/// A running minimum, maximum and mean of one measured value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measure {
    pub n: u64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
}

impl Measure {
    fn new() -> Self {
        Measure { n: 0, min: f64::INFINITY, max: f64::NEG_INFINITY, sum: 0.0 }
    }
    pub fn add(&mut self, v: f64) {
        self.n += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
    }
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum / self.n as f64
        }
    }
}

pub(crate) struct Agg {
    pub rule: &'static Rule,
    pub subject: Subject,
    pub first: Timestamp,
    pub last: Timestamp,
    pub count: u64,
    pub evidence: Vec<Ev>,
    pub facts: BTreeMap<String, Value>,
    pub measures: BTreeMap<&'static str, Measure>,
    pub explanation: String,
}

impl Agg {
    pub fn is_new(&self) -> bool {
        self.count == 1
    }
    pub fn fact(&mut self, k: &str, v: impl Into<Value>) {
        self.facts.insert(k.to_string(), v.into());
    }
    /// Adds to a list fact, keeping at most `cap` distinct values.
    pub fn fact_list(&mut self, k: &str, v: &str, cap: usize) {
        if !self.facts.contains_key(k) {
            self.facts.insert(k.to_string(), Value::Array(Vec::new()));
        }
        if let Some(Value::Array(a)) = self.facts.get_mut(k) {
            if a.len() < cap && !a.iter().any(|x| x.as_str() == Some(v)) {
                a.push(Value::String(v.to_string()));
            }
        }
    }
    pub fn measure(&mut self, k: &'static str, v: f64) {
        self.measures.entry(k).or_insert_with(Measure::new).add(v);
    }
}

pub(crate) struct FindingSet {
    /// Hash of (rule, subject) to positions in `aggs`: looked up with borrowed names, so a
    /// recurring finding costs no allocation.
    index: Map<u64, SmallVec<[u32; 1]>>,
    aggs: Vec<Agg>,
    hasher: foldhash::fast::RandomState,
    max: usize,
    max_evidence: usize,
    pub folded: u64,
}

impl FindingSet {
    pub fn new(max: usize, max_evidence: usize) -> Self {
        FindingSet {
            index: Map::default(),
            aggs: Vec::new(),
            hasher: Default::default(),
            max: max.max(1),
            max_evidence,
            folded: 0,
        }
    }

    fn find(&self, id: &str, kind: SubjectKind, name: &str) -> (u64, Option<usize>) {
        let h = self.hasher.hash_one((id, kind, name));
        let at = self.index.get(&h).and_then(|v| {
            v.iter().map(|&i| i as usize).find(|&i| {
                let a = &self.aggs[i];
                a.rule.id == id && a.subject.kind == kind && a.subject.name == name
            })
        });
        (h, at)
    }

    pub fn record(
        &mut self,
        rule: &'static Rule,
        kind: SubjectKind,
        name: &str,
        at: Timestamp,
        ev: impl IntoIterator<Item = Ev>,
    ) -> &mut Agg {
        let (mut h, mut found) = self.find(rule.id, kind, name);
        let mut name = std::borrow::Cow::Borrowed(name);
        if found.is_none() && self.aggs.len() >= self.max {
            self.folded += 1;
            name = std::borrow::Cow::Owned(format!("(other {})", plural(kind)));
            (h, found) = self.find(rule.id, kind, &name);
        }
        let i = match found {
            Some(i) => i,
            None => {
                self.aggs.push(Agg {
                    rule,
                    subject: Subject { kind, name: name.into_owned() },
                    first: at,
                    last: at,
                    count: 0,
                    evidence: Vec::new(),
                    facts: BTreeMap::new(),
                    measures: BTreeMap::new(),
                    explanation: String::new(),
                });
                let i = self.aggs.len() - 1;
                self.index.entry(h).or_default().push(i as u32);
                i
            }
        };
        let cap = self.max_evidence;
        let a = &mut self.aggs[i];
        a.count += 1;
        a.first = a.first.min(at);
        a.last = a.last.max(at);
        for e in ev {
            if a.evidence.len() < cap {
                a.evidence.push(e);
            }
        }
        a
    }

    pub fn contains(&self, id: &'static str, kind: SubjectKind, name: &str) -> bool {
        self.find(id, kind, name).1.is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Agg> {
        self.aggs.iter()
    }
}

fn plural(k: SubjectKind) -> &'static str {
    match k {
        SubjectKind::Kdc => "KDCs",
        SubjectKind::Principal => "principals",
        SubjectKind::ServiceAccount => "service accounts",
        SubjectKind::Spn => "SPNs",
        SubjectKind::Client => "clients",
        SubjectKind::Device => "devices",
        SubjectKind::Ca => "CAs",
        SubjectKind::Server => "servers",
    }
}

/// Sorts for people and for stable output: errors first, then by id and subject.
pub(crate) fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.id.cmp(&b.id))
            .then_with(|| a.subject.cmp(&b.subject))
    });
}

pub(crate) fn materialize(a: &Agg, files: &[Box<str>]) -> Finding {
    let mut facts = a.facts.clone();
    for (k, m) in &a.measures {
        let mut o = serde_json::Map::new();
        o.insert("min".into(), round(m.min).into());
        o.insert("max".into(), round(m.max).into());
        o.insert("mean".into(), round(m.mean()).into());
        o.insert("n".into(), m.n.into());
        facts.insert((*k).to_string(), Value::Object(o));
    }
    Finding {
        id: a.rule.id.to_string(),
        severity: a.rule.severity,
        subject: a.subject.clone(),
        first_seen: a.first,
        last_seen: a.last,
        count: a.count,
        explanation: a.explanation.clone(),
        fix: a.rule.fix_for(crate::catalogue::FixFacts {
            // setspn takes the SPN without its realm.
            spn: (a.subject.kind == SubjectKind::Spn && !a.subject.name.starts_with('('))
                .then(|| a.subject.name.rsplit_once('@').map_or(a.subject.name.as_str(), |(s, _)| s)),
        }),
        facts,
        evidence: a.evidence.iter().map(|e| e.evidence(files)).collect(),
    }
}

/// Three decimals: measured values, not float noise, in the output.
pub(crate) fn round(v: f64) -> f64 {
    if v.is_finite() {
        (v * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue;

    #[test]
    fn aggregates_and_folds_past_the_cap() {
        let mut s = FindingSet::new(2, 3);
        let ev = |f| Ev { file: 0, frame: f, flow: None };
        for f in 1..=5 {
            s.record(&catalogue::PRINCIPAL_UNKNOWN, SubjectKind::Principal, "a@R", Timestamp(f), [ev(f as u64)]);
        }
        s.record(&catalogue::PRINCIPAL_UNKNOWN, SubjectKind::Principal, "b@R", Timestamp(9), [ev(9)]);
        s.record(&catalogue::PRINCIPAL_UNKNOWN, SubjectKind::Principal, "c@R", Timestamp(10), [ev(10)]);
        s.record(&catalogue::PRINCIPAL_UNKNOWN, SubjectKind::Principal, "d@R", Timestamp(11), [ev(11)]);
        let files = vec![Box::<str>::from("x.pcap")];
        let mut out: Vec<Finding> = s.iter().map(|a| materialize(a, &files)).collect();
        sort(&mut out);
        let got: Vec<(&str, u64, usize)> =
            out.iter().map(|f| (f.subject.name.as_str(), f.count, f.evidence.len())).collect();
        assert_eq!(got, [("(other principals)", 2, 2), ("a@R", 5, 3), ("b@R", 1, 1)]);
        assert_eq!(s.folded, 2);
        assert_eq!(out[1].first_seen, Timestamp(1));
        assert_eq!(out[1].last_seen, Timestamp(5));
    }
}
