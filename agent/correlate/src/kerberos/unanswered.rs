//! Kerberos requests nobody answered, and the verdict taken back when the reply is only late.

use std::net::IpAddr;

use super::{OutReq, ReqKey};
use crate::state::{Ev, Outcome, Step};
use crate::{Correlator, SECOND};

/// Requests kept for a late reply: a reply later than --unanswered-after is rare, a flood
/// of unanswered requests is not.
const LATE_KEPT: usize = 4096;

/// How long after being declared unanswered a request may still be answered (the
/// decoder pairs replies for 30 s).
const LATE_WINDOW_NS: i64 = 60 * SECOND;

impl Correlator {
    /// Takes back the verdict `unanswered` gave the request sent in `frame`.
    pub(crate) fn answered_late(&mut self, frame: (u32, u64)) -> Option<(ReqKey, OutReq)> {
        let (key, o) = self.late.remove(&frame)?;
        let o = *o;
        let mut kdcs: smallvec::SmallVec<[(IpAddr, u16); 2]> = smallvec::SmallVec::new();
        for a in &o.attempts {
            if !kdcs.contains(&(a.kdc, a.port)) {
                kdcs.push((a.kdc, a.port));
            }
        }
        let frames: smallvec::SmallVec<[Ev; 2]> = o.attempts.iter().map(|a| a.ev).collect();
        for (kdc, port) in kdcs {
            if let Some(s) = self.kdcs.get_mut(&(kdc, port)) {
                s.unanswered = s.unanswered.saturating_sub(1);
                s.silent.count = s.silent.count.saturating_sub(1);
                s.silent.evidence.retain(|e| !frames.iter().any(|f| f.file == e.file && f.frame == e.frame));
            }
        }
        if let Some(p) = o.principal.as_deref() {
            if let Some(ps) = self.principals.get_mut(p) {
                let before = ps.steps.len();
                ps.steps.retain(|s| !(s.outcome == Outcome::Unanswered && frames.iter().any(|f| f.file == s.file && f.frame == s.frame)));
                if ps.steps.len() < before {
                    ps.failed = ps.failed.saturating_sub(1);
                }
            }
        }
        self.stats.answered_late += 1;
        // The other attempts' frames lead to the same request.
        for a in &o.attempts {
            self.late.remove(&(a.ev.file, a.ev.frame));
        }
        Some((key, o))
    }

    pub(crate) fn unanswered(&mut self, key: ReqKey, o: OutReq) {
        let mut kdcs: smallvec::SmallVec<[(IpAddr, u16); 2]> = smallvec::SmallVec::new();
        for a in &o.attempts {
            if !kdcs.contains(&(a.kdc, a.port)) {
                kdcs.push((a.kdc, a.port));
            }
        }
        let cap = self.cfg.evidence_per_finding;
        let last = o.attempts.last().map_or(o.first, |a| a.at);
        for (kdc, port) in &kdcs {
            let evs: Vec<Ev> = o.attempts.iter().filter(|a| a.kdc == *kdc).map(|a| a.ev).collect();
            let s = self.kdc(*kdc, *port, last);
            s.unanswered += 1;
            s.silent.add(o.first, evs, cap);
            s.silent.principal(o.principal.as_deref());
        }
        if let Some(p) = &o.principal {
            let a = o.attempts.last().copied();
            if let Some(a) = a {
                let step = Step {
                    kind: o.kind.step(),
                    target: o.target.clone(),
                    via: o.via.clone(),
                    kdc: a.kdc,
                    transport: a.transport,
                    at: o.first,
                    latency_us: None,
                    outcome: Outcome::Unanswered,
                    frame: a.ev.frame,
                    file: a.ev.file,
                    after_too_big: o.after_too_big,
                    after_failover: kdcs.len() > 1,
                };
                let p = p.clone();
                self.record_step(&p, step);
            }
        }
        // Kept a while, in case the reply is only late.
        let now = self.now.unwrap_or(o.first);
        while self.late_order.front().is_some_and(|(t, _)| now.0 - t.0 > LATE_WINDOW_NS)
            || self.late_order.len() >= LATE_KEPT
        {
            if let Some((_, k)) = self.late_order.pop_front() {
                self.late.remove(&k);
            }
        }
        if let Some(a) = o.attempts.first() {
            let k = (a.ev.file, a.ev.frame);
            self.late_order.push_back((now, k));
            // Every attempt's frame leads to the request: the reply names the one the
            // decoder paired it with.
            for a in o.attempts.iter().skip(1) {
                self.late_order.push_back((now, (a.ev.file, a.ev.frame)));
                self.late.insert((a.ev.file, a.ev.frame), (key, Box::new(o.clone())));
            }
            self.late.insert(k, (key, Box::new(o)));
        }
    }
}
