//! The `/` filter: free words plus `upn:` `dev:` `kdc:` `err:` `step:` `sev:` terms, all of
//! which must match (case-insensitive substrings). Parsed as it is typed, so that a mistake
//! shows at once with what is wrong.

use kcd_schema::Severity;

use crate::snapshot::{DeviceRow, FindingRow};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Text(String),
    Upn(String),
    Dev(String),
    Kdc(String),
    Err(String),
    Step(String),
    Sev(Severity),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub terms: Vec<Term>,
}

pub const KEYS: &str = "upn: dev: kdc: err: step: sev:";

fn severity(v: &str) -> Option<Severity> {
    match v {
        "error" | "err" | "e" => Some(Severity::Error),
        "warning" | "warn" | "w" => Some(Severity::Warning),
        "info" | "note" | "i" => Some(Severity::Info),
        _ => None,
    }
}

impl Filter {
    /// The filter the text means, or what is wrong with it.
    pub fn parse(text: &str) -> Result<Filter, String> {
        let mut terms = Vec::new();
        for word in text.split_whitespace() {
            let lower = word.to_lowercase();
            let term = match lower.split_once(':') {
                Some((k, v)) if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphabetic()) => {
                    if v.is_empty() {
                        return Err(format!("{k}: needs a value"));
                    }
                    let v = v.to_string();
                    match k {
                        "upn" => Term::Upn(v),
                        "dev" => Term::Dev(v),
                        "kdc" => Term::Kdc(v),
                        "err" => Term::Err(v),
                        "step" => Term::Step(v),
                        "sev" => Term::Sev(severity(&v).ok_or_else(|| format!("sev:{v}: use error, warning or info"))?),
                        _ => return Err(format!("{k}: is not a filter key ({KEYS})")),
                    }
                }
                _ => Term::Text(lower),
            };
            terms.push(term);
        }
        Ok(Filter { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn device(&self, d: &DeviceRow) -> bool {
        let has = |hay: &str, needle: &str| hay.to_lowercase().contains(needle);
        self.terms.iter().all(|t| match t {
            Term::Text(w) => {
                has(&d.key, w)
                    || has(&d.upn, w)
                    || has(&d.device_id, w)
                    || has(&d.address, w)
                    || d.finding.as_deref().is_some_and(|f| has(f, w))
                    || has(d.status.word(), w)
            }
            Term::Upn(v) => has(&d.upn, v) || d.also_known_as.iter().any(|a| has(a, v)),
            Term::Dev(v) => has(&d.device_id, v) || has(&d.key, v) || has(&d.address, v),
            Term::Kdc(v) => d.kdcs.iter().any(|k| has(k, v)),
            Term::Err(v) => d.errors.iter().any(|e| has(e, v)) || d.finding.as_deref().is_some_and(|f| has(f, v)),
            Term::Step(v) => d.failing_step.is_some_and(|s| has(s, v)) || has(d.last_step, v),
            Term::Sev(s) => d.severity.is_some_and(|x| x >= *s),
        })
    }

    pub fn finding(&self, f: &FindingRow) -> bool {
        let has = |hay: &str, needle: &str| hay.to_lowercase().contains(needle);
        self.terms.iter().all(|t| match t {
            Term::Text(w) => has(&f.id, w) || has(&f.subject, w) || has(&f.explanation, w),
            Term::Upn(v) | Term::Dev(v) => f.devices.iter().any(|d| has(d, v)) || has(&f.subject, v),
            Term::Kdc(v) => has(&f.subject, v) || has(&f.explanation, v),
            Term::Err(v) => has(&f.id, v) || has(&f.explanation, v),
            Term::Step(v) => has(&f.explanation, v),
            Term::Sev(s) => f.severity >= *s,
        })
    }

    /// For the raw events: every word and every term's value must occur in the line.
    pub fn line(&self, line: &str) -> bool {
        let l = line.to_lowercase();
        self.terms.iter().all(|t| match t {
            Term::Text(w) | Term::Upn(w) | Term::Dev(w) | Term::Kdc(w) | Term::Err(w) | Term::Step(w) => l.contains(w.as_str()),
            Term::Sev(_) => true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_validated_as_typed() {
        assert_eq!(Filter::parse("").map(|f| f.terms.len()), Ok(0));
        assert_eq!(
            Filter::parse("upn:Alice sev:error bob").map(|f| f.terms),
            Ok(vec![Term::Upn("alice".into()), Term::Sev(Severity::Error), Term::Text("bob".into())])
        );
        assert!(Filter::parse("upn:").expect_err("refused").contains("needs a value"));
        assert!(Filter::parse("sev:bad").expect_err("refused").contains("error, warning or info"));
        assert!(Filter::parse("host:x").expect_err("refused").contains("not a filter key"));
        // An address with a port, or a time, is free text.
        assert_eq!(Filter::parse("10.0.0.1:88").map(|f| f.terms), Ok(vec![Term::Text("10.0.0.1:88".into())]));
    }
}
