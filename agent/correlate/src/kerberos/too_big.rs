//! RESPONSE_TOO_BIG (52): did the client send the request again over TCP, did TCP/88
//! answer, or did nothing follow?

use std::net::IpAddr;

use kcd_schema::{ErrorCode, Event, SubjectKind, Timestamp, Transport};

use crate::state::{kdc_name, Ev};
use super::{describe_request, OutReq, OutReqSummary, ReqKey, TooBig};
use crate::{catalogue, Correlator, Outcome, Step};

impl Correlator {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn too_big_pending(
        &mut self,
        key: ReqKey,
        o: OutReq,
        kdc: IpAddr,
        kdc_port: u16,
        at: Timestamp,
        ev: Ev,
        requested: Timestamp,
    ) {
        let t = TooBig {
            client: key.client,
            kdc,
            kdc_port,
            requested,
            at,
            ev,
            request: OutReqSummary { kind: o.kind, principal: o.principal, via: o.via, target: o.target },
        };
        if let Some(old) = self.take_too_big(&key) {
            self.too_big_unretried(old);
        }
        *self.too_big_pairs.entry((key.client, kdc)).or_insert(0) += 1;
        self.too_big.insert(key, t);
    }

    pub(crate) fn too_big_retried(&mut self, t: TooBig, at: Timestamp, tcp_kdc: IpAddr) {
        let added_ms = (at.0 - t.requested.0) as f64 / 1e6;
        let kdc = self.kdc(t.kdc, t.kdc_port, t.at).label.clone();
        let client = self.ip_text(t.client);
        let a = self.finding(&catalogue::RESPONSE_TOO_BIG_TCP_RETRY, SubjectKind::Client, &client, t.at, [t.ev]);
        if a.is_new() {
            let what = describe_request(t.request.kind, t.request.principal.as_deref(), &t.request.target);
            a.explanation = format!(
                "KDC {kdc}'s reply to {what} was too large for UDP (KRB_ERR_RESPONSE_TOO_BIG); client {client} sent the request again over TCP{}, {added_ms:.1} ms after the UDP attempt.",
                if tcp_kdc == t.kdc { String::new() } else { format!(" to {tcp_kdc}") }
            );
        }
        a.fact_list("kdcs", &kdc, 8);
        a.measure("added_latency_ms", added_ms);
        self.give_back(client);
    }

    /// No TCP retry came: either TCP connection attempts to that KDC went unanswered
    /// meanwhile (a firewall), or the client never tried.
    pub(crate) fn too_big_unretried(&mut self, t: TooBig) {
        let pair = (t.client, t.kdc);
        let silent = self.tcp_silent.get(&pair).filter(|(ts, _)| *ts >= t.requested).map(|(_, e)| *e);
        let kdc = self.kdc(t.kdc, t.kdc_port, t.at).label.clone();
        let client = self.ip_text(t.client);
        let what = || describe_request(t.request.kind, t.request.principal.as_deref(), &t.request.target);
        if let Some(syn) = silent {
            let a = self.finding(&catalogue::RESPONSE_TOO_BIG_TCP_BLOCKED, SubjectKind::Kdc, &kdc, t.at, [t.ev, syn]);
            if a.is_new() {
                a.explanation = format!(
                    "KDC {kdc}'s reply to {} was too large for UDP (KRB_ERR_RESPONSE_TOO_BIG); client {client} tried TCP/88 but its connection attempts were never answered.",
                    what()
                );
            }
            a.fact_list("clients", &client, 8);
        } else {
            let a = self.finding(&catalogue::RESPONSE_TOO_BIG_NO_TCP_RETRY, SubjectKind::Client, &client, t.at, [t.ev]);
            if a.is_new() {
                a.explanation = format!(
                    "KDC {kdc}'s reply to {} was too large for UDP (KRB_ERR_RESPONSE_TOO_BIG) and client {client} did not send it again over TCP.",
                    what()
                );
            }
            a.fact_list("kdcs", &kdc, 8);
        }
        self.give_back(client);
        if let Some(p) = t.request.principal.clone() {
            let step = Step {
                kind: t.request.kind.step(),
                target: t.request.target.clone(),
                via: t.request.via.clone(),
                kdc: t.kdc,
                // Blocked: the request went on to TCP and got nothing there.
                transport: if silent.is_some() { Transport::Tcp } else { Transport::Udp },
                at: t.at,
                latency_us: silent.is_none().then_some((t.at.0 - t.requested.0) / 1000),
                outcome: if silent.is_some() {
                    Outcome::Unanswered
                } else {
                    Outcome::Error(ErrorCode::KRB_ERR_RESPONSE_TOO_BIG)
                },
                frame: silent.map_or(t.ev.frame, |e| e.frame),
                file: t.ev.file,
                after_too_big: silent.is_some(),
                after_failover: false,
            };
            self.record_step(&p, step);
        }
    }

    pub(crate) fn tcp_no_answer(&mut self, e: &Event<'_>) {
        let (Some(client), Some(kdc)) = (e.src_ip, e.dest_ip) else { return };
        let port = e.dest_port.unwrap_or(88);
        let at = e.timestamp;
        let ev = self.ev(e);
        if self.too_big_pairs.contains_key(&(client, kdc)) {
            if self.tcp_silent.len() < self.cfg.max_outstanding {
                self.tcp_silent.insert((client, kdc), (at, ev));
            }
            return;
        }
        let name = kdc_name(kdc, port);
        let c = client.to_string();
        let a = self.finding(&catalogue::KDC_TCP_UNANSWERED, SubjectKind::Kdc, &name, at, [ev]);
        if a.is_new() {
            a.explanation = format!("Client {c} tried to connect to KDC {name} over TCP and got no answer.");
        }
        a.fact_list("clients", &c, 8);
    }
}
