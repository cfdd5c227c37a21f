//! Kerberos requests: who asks for what, retransmissions and fail-over by nonce.

use std::net::IpAddr;

use kcd_schema::{kdc_options, Event, Krb5, MessageType, Transport};

use super::{Attempt, ClientNote, OutReq, ReqKey, ReqKind, MAX_ATTEMPTS};
use crate::{oldest, Correlator, Name};

impl Correlator {
    pub(crate) fn request(&mut self, e: &Event<'_>, k: &Krb5<'_>) {
        let (Some(client), Some(kdc)) = (e.src_ip, e.dest_ip) else { return };
        let port = e.dest_port.unwrap_or(88);
        let transport = e.proto.unwrap_or(Transport::Udp);
        let at = e.timestamp;
        let ev = self.ev(e);
        let kind = request_kind(k);
        let kdc_id = {
            let s = self.kdc(kdc, port, at);
            s.requests += 1;
            match transport {
                Transport::Udp => s.requests_udp += 1,
                Transport::Tcp => s.requests_tcp += 1,
            }
            s.realm(k.realm.as_deref());
            s.id
        };
        self.note_client(client, at, ClientNote::Request { kind, transport, kdc_id });
        let key = ReqKey {
            client,
            msg: k.msg_type.0,
            // Without a nonce (a malformed request) it stands alone.
            nonce: k.nonce.unwrap_or(i64::MIN + (e.frame as i64 & 0x7fff_ffff_ffff)),
        };
        let mut after_too_big = false;
        if transport == Transport::Tcp {
            if let Some(t) = self.take_too_big(&key) {
                self.too_big_retried(t, at, kdc);
                after_too_big = true;
            }
        }
        let attempt = Attempt { kdc, port, transport, at, ev };
        if let Some(o) = self.outstanding.get_mut(&key) {
            o.after_too_big |= after_too_big;
            if o.attempts.len() < MAX_ATTEMPTS {
                o.attempts.push(attempt);
            } else if let Some(last) = o.attempts.last_mut() {
                // A retransmission storm: the latest attempt takes the last place, and the one
                // it replaces leaves the frame index, which holds only what `take` removes
                // (it grew by one entry per repeated packet, without bound, before).
                let old = std::mem::replace(last, attempt);
                self.by_frame.remove(&(old.ev.file, old.ev.frame));
            }
            self.by_frame.insert((ev.file, ev.frame), key);
            return;
        }
        let (principal, via) = self.request_parties(kind, k);
        if kind == ReqKind::S4u2Proxy {
            if let Some(v) = &via {
                self.impersonating.remove(&(client, v.clone()));
            }
        }
        let target = match &k.sname {
            Some(sn) => self.name(sn, k.realm.as_deref()),
            None => self.empty.clone(),
        };
        if self.outstanding.len() >= self.cfg.max_outstanding {
            // The oldest waiting requests go.
            for old in oldest(self.outstanding.iter(), |o| o.first, self.cfg.max_outstanding / 8) {
                if let Some(o) = self.take(&old) {
                    self.stats.requests_evicted += 1;
                    // Under a flood no request lives long enough to be called unanswered:
                    // each KDC keeps count of those given up without an answer.
                    let cap = self.cfg.evidence_per_finding;
                    let mut seen: smallvec::SmallVec<[(IpAddr, u16); 2]> = smallvec::SmallVec::new();
                    for a in &o.attempts {
                        if !seen.contains(&(a.kdc, a.port)) {
                            seen.push((a.kdc, a.port));
                            if let Some(k) = self.kdcs.get_mut(&(a.kdc, a.port)) {
                                k.given_up.add(o.first, [a.ev], cap);
                            }
                        }
                    }
                }
            }
        }
        self.outstanding.insert(
            key,
            Box::new(OutReq {
                kind,
                principal,
                via,
                target,
                first: at,
                attempts: smallvec::smallvec![attempt],
                after_too_big,
            }),
        );
        self.by_frame.insert((ev.file, ev.frame), key);
    }

    /// Who a request is for, and which service account acts (S4U).
    pub(crate) fn request_parties(&mut self, kind: ReqKind, k: &Krb5<'_>) -> (Option<Name>, Option<Name>) {
        match kind {
            ReqKind::As => (k.cname.as_ref().map(|c| self.name(c, k.realm.as_deref())), None),
            ReqKind::S4u2Self => {
                let user = match (&k.for_user, &k.s4u_x509_user) {
                    (Some(f), _) if f.user.is_some() => f.user.as_ref().map(|u| (u, f.realm.as_deref())),
                    (_, Some(x)) => x.user.as_ref().map(|u| (u, x.realm.as_deref())),
                    _ => None,
                };
                let user = user.map(|(u, r)| self.name(u, r));
                let via = k.sname.as_ref().map(|s| self.name(s, k.realm.as_deref()));
                (user, via)
            }
            ReqKind::S4u2Proxy => {
                let link = k
                    .additional_tickets
                    .first()
                    .and_then(|t| t.id)
                    .and_then(|id| self.tickets.get(&id));
                match link {
                    Some(l) => (Some(l.user.clone()), Some(l.via.clone())),
                    None => (None, None),
                }
            }
            ReqKind::Tgs => (None, None),
        }
    }
}

fn request_kind(k: &Krb5<'_>) -> ReqKind {
    if k.msg_type == MessageType::AS_REQ {
        ReqKind::As
    } else if k.for_user.is_some() || k.s4u_x509_user.is_some() {
        ReqKind::S4u2Self
    } else if k.kdc_options.has(kdc_options::CNAME_IN_ADDL_TKT) && !k.additional_tickets.is_empty() {
        ReqKind::S4u2Proxy
    } else {
        ReqKind::Tgs
    }
}
