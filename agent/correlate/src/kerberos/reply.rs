//! Kerberos replies: the request they answer, fail-over, the delegation chain (S4U2Self
//! tickets, S4U2Proxy) and the errors handed to `errors`.

use std::net::IpAddr;

use kcd_schema::{ErrorCode, Event, Krb5, MessageType, SubjectKind, TicketId, Timestamp, Transport};

use super::{describe_request, ClientNote, ErrCtx, Impersonation, OutReq, ReqKind, TicketLink, DELEGATIONS_KEPT, IMPERSONATION_WINDOW_NS, MAX_IMPERSONATIONS};
use crate::state::{kdc_name, Ev, Outcome, Step};
use crate::{catalogue, oldest, Correlator, Name};

impl Correlator {
    pub(crate) fn reply(&mut self, e: &Event<'_>, k: &Krb5<'_>) {
        let (Some(kdc), Some(client)) = (e.src_ip, e.dest_ip) else { return };
        let port = e.src_port.unwrap_or(88);
        let transport = e.proto.unwrap_or(Transport::Udp);
        let at = e.timestamp;
        let ev = self.ev(e);
        let err = k.error.as_ref();
        let kdc_label = {
            let s = self.kdc(kdc, port, at);
            match err {
                Some(x) => *s.errors.entry(x.code).or_insert(0) += 1,
                None => s.tickets += 1,
            }
            s.realm(k.realm.as_deref());
            if let Some(lat) = k.request.as_ref().map(|r| r.latency_us) {
                let lat = u64::try_from(lat.max(1)).unwrap_or(1);
                if let Some(h) = s.latency.as_mut() {
                    let _ = h.record(lat);
                }
                // The histogram keeps 2 significant digits: the maximum is kept exactly.
                s.latency_max = s.latency_max.max(lat);
            }
            s.label.clone()
        };
        if err.is_some() {
            self.note_client(client, at, ClientNote::Error);
        }
        // The KDC's clock, measured from every error it sends (PREAUTH_REQUIRED included).
        if let Some(skew) = err.and_then(|x| x.skew_seconds) {
            let threshold = self.cfg.clock_offset_warning_s;
            let cap = self.cfg.evidence_per_finding;
            let s = self.kdc(kdc, port, at);
            s.offset.add(skew);
            if skew.abs() > threshold {
                s.offset_over.add(at, [ev], cap);
                if skew.abs() > s.offset_over.worst.abs() {
                    s.offset_over.worst = skew;
                }
            }
        }
        // The request: by the frame the decoder paired it with.
        let req = k.request.as_ref().and_then(|r| {
            let file = match r.pcap_file.as_deref() {
                Some(f) => self.file_id(Some(f)),
                None => ev.file,
            };
            self.by_frame.get(&(file, r.frame)).copied()
        });
        let req = req.and_then(|key| self.take(&key).map(|o| (key, o)));
        // Answered after it was declared unanswered: slow, not silent.
        let req = match (req, &k.request) {
            (None, Some(r)) => {
                let file = match r.pcap_file.as_deref() {
                    Some(f) => self.file_id(Some(f)),
                    None => ev.file,
                };
                self.answered_late((file, r.frame))
            }
            (req, _) => req,
        };
        let mut failed_over = false;
        if let Some((_, o)) = &req {
            failed_over = self.failover(o, kdc, at);
        }
        let (kind, principal, via, target, requested, after_too_big) = match &req {
            Some((_, o)) => (
                Some(o.kind),
                o.principal.clone(),
                o.via.clone(),
                o.target.clone(),
                Some(o.attempts.iter().find(|a| a.kdc == kdc).map_or(o.first, |a| a.at)),
                o.after_too_big,
            ),
            None => (None, None, None, self.empty.clone(), None, false),
        };
        // The reply's own names only where the request did not tell.
        let need_cname = principal.is_none() || err.is_some() || kind.is_none_or(|k| k == ReqKind::Tgs);
        let cname = if need_cname { k.cname.as_ref().map(|c| self.name(c, k.crealm.as_deref())) } else { None };
        let latency_us = k.request.as_ref().map(|r| r.latency_us);
        let target: Name = match &k.sname {
            Some(sn) if target.is_empty() => self.name(sn, k.realm.as_deref()),
            _ => target,
        };
        let kind = kind.unwrap_or(match k.msg_type {
            MessageType::AS_REP => ReqKind::As,
            _ if target.starts_with("krbtgt/") && err.is_some() => ReqKind::As,
            _ => ReqKind::Tgs,
        });
        // Who the step belongs to: the impersonated user for S4U (the error names the
        // service account), otherwise the reply's client.
        let who: Option<Name> = match kind {
            ReqKind::S4u2Self | ReqKind::S4u2Proxy => principal.clone().or_else(|| {
                if err.is_none() {
                    cname.clone()
                } else {
                    None
                }
            }),
            _ => principal.clone().or_else(|| cname.clone()),
        };
        let via: Option<Name> = match kind {
            ReqKind::S4u2Proxy if via.is_none() && err.is_some() => cname.clone(),
            _ => via,
        };
        if let Some(v) = &via {
            if let Some(p) = self.principal(v, at) {
                p.service_account = true;
            }
        }
        let step = |outcome| Step {
            kind: kind.step(),
            target: target.clone(),
            via: via.clone(),
            kdc,
            transport,
            at,
            latency_us,
            outcome,
            frame: ev.frame,
            file: ev.file,
            after_too_big,
            after_failover: failed_over,
        };
        match err {
            None => {
                if let Some(w) = &who {
                    self.record_step(w, step(Outcome::Ok));
                }
                match kind {
                    ReqKind::S4u2Self => {
                        if let (Some(user), Some(v)) = (who.clone(), via.clone()) {
                            self.impersonation(client, v.clone(), Impersonation { user: user.clone(), at, ev });
                            if let Some(id) = k.ticket.as_ref().and_then(|t| t.id) {
                                self.remember_ticket(id, user, v, at);
                            }
                        }
                    }
                    ReqKind::Tgs => {
                        // The service account, fresh from S4U2Self, asks for a service
                        // ticket as itself: whatever it calls will see it, not the user.
                        if let Some(c) = cname.as_deref() {
                            let key = (client, cname.clone().unwrap_or_else(|| Name::from("")));
                            let hit = self
                                .impersonating
                                .get(&key)
                                .filter(|i| at.0 - i.at.0 <= IMPERSONATION_WINDOW_NS && *target != *c)
                                .cloned();
                            if let Some(i) = hit {
                                self.impersonating.remove(&key);
                                let kdc_s = kdc_name(kdc, port);
                                let a = self.finding(
                                    &catalogue::S4U2PROXY_SKIPPED,
                                    SubjectKind::ServiceAccount,
                                    c,
                                    at,
                                    [i.ev, ev],
                                );
                                if a.is_new() {
                                    a.explanation = format!(
                                        "{c} obtained a ticket for {} (S4U2Self) and then a ticket for {target} in its own name, without S4U2Proxy: {target} will see {c}, not {}.",
                                        i.user, i.user
                                    );
                                    a.fact("kdc", kdc_s);
                                    a.fact("target_spn", target.to_string());
                                }
                                a.fact_list("principals", &i.user, 8);
                            }
                        }
                    }
                    ReqKind::S4u2Proxy => {
                        if let (Some(v), Some(user)) = (&via, &who) {
                            let d = self.delegations.entry(v.clone()).or_default();
                            if !d.ok.iter().any(|(t, u, _)| *t == target && u == user) {
                                if d.ok.len() == DELEGATIONS_KEPT {
                                    d.ok.remove(0);
                                }
                                d.ok.push((target.clone(), user.clone(), at));
                            }
                        }
                    }
                    _ => {}
                }
            }
            Some(x) => {
                let code = x.code;
                // No error-code could be read (the decoder says -1): nothing to explain.
                if code == ErrorCode::KDC_ERR_PREAUTH_REQUIRED || code.0 < 0 {
                    return;
                }
                if code == ErrorCode::KRB_ERR_RESPONSE_TOO_BIG && transport == Transport::Udp {
                    if let Some((key, o)) = req {
                        self.too_big_pending(key, o, kdc, port, at, ev, requested.unwrap_or(at));
                    }
                    return;
                }
                if let Some(w) = who.clone().or_else(|| via.clone()) {
                    self.record_step(&w, step(Outcome::Error(code)));
                }
                let ctx = ErrCtx {
                    kind,
                    client,
                    who: who.as_deref(),
                    via: via.as_deref(),
                    target: &target,
                    cname: cname.as_deref(),
                    kdc: kdc_label.clone(),
                    at,
                    ev,
                    req_ev: req.as_ref().and_then(|(_, o)| o.attempts.last().map(|a| a.ev)),
                };
                self.krb_error(&ctx, x, k);
            }
        }
    }

    pub(crate) fn impersonation(&mut self, client: IpAddr, via: Name, i: Impersonation) {
        let cap = MAX_IMPERSONATIONS;
        if self.impersonating.len() >= cap && !self.impersonating.contains_key(&(client, via.clone())) {
            let now = i.at;
            self.impersonating.retain(|_, x| now.0 - x.at.0 <= IMPERSONATION_WINDOW_NS);
            if self.impersonating.len() >= cap {
                for k in oldest(self.impersonating.iter(), |x| x.at, cap / 8) {
                    self.impersonating.remove(&k);
                }
            }
        }
        self.impersonating.insert((client, via), i);
    }

    pub(crate) fn remember_ticket(&mut self, id: TicketId, user: Name, via: Name, at: Timestamp) {
        if !self.tickets.contains_key(&id) && self.tickets.len() >= self.cfg.max_tickets {
            for v in oldest(self.tickets.iter(), |t| t.at, self.cfg.max_tickets / 8) {
                self.tickets.remove(&v);
                self.stats.tickets_evicted += 1;
            }
        }
        self.tickets.insert(id, TicketLink { user, via, at });
    }

    /// A reply came from `kdc`; attempts at other KDCs went unanswered: fail-over.
    pub(crate) fn failover(&mut self, o: &OutReq, kdc: IpAddr, at: Timestamp) -> bool {
        let mut seen: smallvec::SmallVec<[(IpAddr, u16); 2]> = smallvec::SmallVec::new();
        for a in &o.attempts {
            if a.kdc == kdc || seen.contains(&(a.kdc, a.port)) {
                continue;
            }
            seen.push((a.kdc, a.port));
        }
        if seen.is_empty() {
            return false;
        }
        let answered_by = kdc_name(kdc, 88);
        for (dead, port) in seen {
            let evs: Vec<Ev> = o.attempts.iter().filter(|a| a.kdc == dead).map(|a| a.ev).collect();
            let first = o.attempts.iter().find(|a| a.kdc == dead).map_or(o.first, |a| a.at);
            let waited = (at.0 - first.0) as f64 / 1e6;
            self.kdc(dead, port, at).failed_over += 1;
            let name = kdc_name(dead, port);
            let what = describe_request(o.kind, o.principal.as_deref(), &o.target);
            let a = self.finding(&catalogue::KDC_FAILOVER, SubjectKind::Kdc, &name, first, evs);
            if a.is_new() {
                a.explanation = format!(
                    "KDC {name} did not answer {what}; the client asked {answered_by}, which answered {waited:.0} ms after the first attempt."
                );
            }
            a.fact_list("answered_by", &answered_by, 8);
            a.measure("delay_ms", waited);
        }
        true
    }
}
