//! Kerberos on its ports: one event per message, each reply paired with its request.

pub mod parse;

use kcd_krb5::view::{BodyView, MessageView, NotKerberos};
use kcd_krb5::{MessageType, PaDataType};
use std::borrow::Cow;

use kcd_krb5::frame::FrameEvent;
use kcd_schema::{AnomalyLayer, DecryptedTicket, Direction, EventType, Krb5, RequestRef, Timestamp};

use crate::emit::{Ctx, Emit};
use crate::keytab::{ApReqUse, Keytab, KeytabStats};
use crate::Sink;

/// A request waiting for its reply.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    pub frame: u64,
    pub ts: Timestamp,
    pub msg_type: MessageType,
    /// Index of the capture file it came from.
    pub source: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Request,
    Reply,
    Other,
}

pub struct Decoded {
    pub role: Role,
    pub kind: MessageType,
    pub error_code: Option<i32>,
}

/// Decodes one message (a UDP payload or one TCP record) into `out`, a fresh
/// `Krb5::default()`.
pub fn decode<'a>(
    bytes: &'a [u8],
    captured: Timestamp,
    out: &mut Krb5<'a>,
) -> Result<Decoded, NotKerberos> {
    let view = MessageView::parse(bytes)?;
    parse::krb5_event(&view, captured, out);
    let role = if view.kind.is_kdc_request() {
        Role::Request
    } else if view.kind.is_kdc_reply() {
        Role::Reply
    } else {
        Role::Other
    };
    Ok(Decoded {
        role,
        kind: view.kind,
        error_code: out.error.as_ref().map(|e| e.code.0),
    })
}

/// The message's ticket opened with the keytab: a KDC reply's new ticket, the ticket (and
/// authenticator) a TGS-REQ presents in PA-TGS-REQ, an AP-REQ's.
pub fn decrypt(bytes: &[u8], kt: &Keytab, captured: Timestamp, stats: &mut KeytabStats) -> Option<DecryptedTicket> {
    let v = MessageView::parse(bytes).ok()?;
    match &v.body {
        BodyView::KdcRep(r) => r.ticket.map(|t| kt.ticket(&t, captured, stats)),
        BodyView::KdcReq(r) => {
            let pa = r.padata.iter().find(|p| PaDataType(p.padata_type) == PaDataType::PA_TGS_REQ)?;
            let inner = MessageView::parse(pa.value).ok()?;
            match &inner.body {
                BodyView::ApReq(a) => Some(kt.ap_req(a, ApReqUse::TgsReq, captured, stats)),
                _ => None,
            }
        }
        BodyView::ApReq(a) => Some(kt.ap_req(a, ApReqUse::Service, captured, stats)),
        _ => None,
    }
}

/// Requests waiting on one UDP 4-tuple or one TCP connection. Bounded: a client that
/// keeps retransmitting without answers cannot grow it. The usual single request is held
/// inline, so a UDP exchange costs no allocation here.
#[derive(Debug, Default)]
pub struct PendingQueue {
    first: Option<Pending>,
    rest: std::collections::VecDeque<Pending>,
}

pub const MAX_PENDING_PER_FLOW: usize = 8;

impl PendingQueue {
    pub fn push(&mut self, p: Pending) {
        if self.first.is_none() {
            self.first = Some(p);
            return;
        }
        if self.rest.len() + 1 == MAX_PENDING_PER_FLOW {
            self.pop();
            if self.first.is_none() {
                self.first = Some(p);
                return;
            }
        }
        self.rest.push_back(p);
    }
    pub fn pop(&mut self) -> Option<Pending> {
        let out = self.first.take();
        self.first = self.rest.pop_front();
        out
    }
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }
    pub fn newest(&self) -> Option<Timestamp> {
        self.rest.back().or(self.first.as_ref()).map(|p| p.ts)
    }
}

impl<S: Sink + ?Sized> Emit<'_, S> {
    /// Decodes and reports one Kerberos message; pairs it through `queue`.
    pub(crate) fn message(
        &mut self,
        ctx: &Ctx<'_>,
        bytes: &[u8],
        queue: &mut dyn FnMut(Role, Option<Pending>) -> Option<Pending>,
    ) {
        let mut e = ctx.envelope(EventType::Krb5);
        let k = e.krb5.insert(Krb5::default());
        let d = match decode(bytes, ctx.ts, k) {
            Ok(d) => d,
            Err(_) => {
                let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
                let detail = format!(
                    "{} bytes on a Kerberos port that are not a Kerberos message (starts {})",
                    bytes.len(),
                    head.join(" ")
                );
                self.anomaly(ctx, AnomalyLayer::Krb5, "krb5_not_kerberos", detail);
                return;
            }
        };
        self.stats.messages += 1;
        *self.stats.by_type.entry(d.kind.0).or_default() += 1;
        if let Some(code) = d.error_code {
            *self.stats.errors.entry(code).or_default() += 1;
        }
        if k.malformed.is_some() {
            self.stats.anomaly("krb5_malformed");
        }
        let mine = Pending {
            frame: ctx.frame,
            ts: ctx.ts,
            msg_type: d.kind,
            source: ctx.source,
        };
        match d.role {
            Role::Request => {
                queue(Role::Request, Some(mine));
            }
            Role::Reply => match queue(Role::Reply, None) {
                Some(req) => {
                    k.request = Some(RequestRef {
                        pcap_file: (req.source != ctx.source)
                            .then(|| {
                                self.sources
                                    .get(req.source as usize)
                                    .map(|s| Cow::Owned(s.to_string()))
                            })
                            .flatten(),
                        frame: req.frame,
                        msg_type: req.msg_type,
                        latency_us: ctx.ts.micros_since(req.ts),
                    });
                }
                None => self.stats.replies_without_request += 1,
            },
            Role::Other => {}
        }
        k.direction = Some(ctx.direction);
        if let Some(kt) = self.keytab {
            k.decrypted = decrypt(bytes, kt, ctx.ts, &mut self.stats.keytab);
        }
        self.sink.event(&e);
    }

    pub(crate) fn frame_event(&mut self, ctx: &Ctx<'_>, fe: FrameEvent<'_>, pending: &mut PendingQueue) {
        match fe {
            FrameEvent::Record(bytes) => {
                let is_request = ctx.direction == Direction::ToKdc;
                self.message(ctx, bytes, &mut |role, p| match (role, p) {
                    (Role::Request, Some(p)) if is_request => {
                        pending.push(p);
                        None
                    }
                    (Role::Reply, None) if !is_request => pending.pop(),
                    _ => None,
                });
            }
            FrameEvent::EmptyRecord => self.anomaly(ctx, AnomalyLayer::Krb5, "krb5_record_empty", "record mark of length 0".into()),
            FrameEvent::BadMark { mark } => self.anomaly(
                ctx,
                AnomalyLayer::Krb5,
                "krb5_record_bad_mark",
                format!("record mark {mark:#010x} does not start a Kerberos message; looking for the next one"),
            ),
            FrameEvent::Oversize { len } => self.anomaly(
                ctx,
                AnomalyLayer::Krb5,
                "krb5_record_oversize",
                format!("{len}-byte record is over the {}-byte limit (--max-krb5-record); skipped", self.max_record),
            ),
            FrameEvent::Skipped { bytes } => {
                self.anomaly(ctx, AnomalyLayer::Krb5, "krb5_resync", format!("skipped {bytes} bytes to the next Kerberos record"))
            }
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_bounded() {
        let p = |f| Pending {
            frame: f,
            ts: Timestamp(f as i64),
            msg_type: MessageType::AS_REQ,
            source: 0,
        };
        let mut q = PendingQueue::default();
        for f in 1..=20 {
            q.push(p(f));
        }
        let frames: Vec<u64> = std::iter::from_fn(|| q.pop().map(|x| x.frame)).collect();
        assert_eq!(frames, (13..=20).collect::<Vec<_>>());
        assert!(q.is_empty());
        q.push(p(1));
        q.push(p(2));
        assert_eq!(q.newest(), Some(Timestamp(2)));
        assert_eq!(q.pop().map(|x| x.frame), Some(1));
        assert_eq!(q.newest(), Some(Timestamp(2)));
    }
}
