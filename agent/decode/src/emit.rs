//! What every decoder needs to report: the envelope of an event (where it was seen) and
//! the anomaly reporting, with repeated anomalies of one connection folded into one event.

use std::borrow::Cow;
use std::sync::Arc;

use kcd_schema::{Anomaly, AnomalyLayer, Direction, Event, EventType, Timestamp, Transport};

use crate::flow::{Endpoint, FlowId};
use crate::{Sink, Stats};

/// Distinct anomaly kinds aggregated per connection; past it they are reported one by one.
const REPEAT_KINDS: usize = 8;

/// Where a message was seen, for the event's envelope.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub(crate) ts: Timestamp,
    pub(crate) frame: u64,
    pub(crate) pcap_file: Option<&'a str>,
    pub(crate) flow_id: &'a FlowId,
    pub(crate) src: Endpoint,
    pub(crate) dst: Endpoint,
    pub(crate) transport: Transport,
    pub(crate) direction: Direction,
    pub(crate) source: u32,
}

impl<'a> Ctx<'a> {
    pub(crate) fn envelope(&self, event_type: EventType) -> Event<'a> {
        Event {
            flow_id: Some(Cow::Borrowed(self.flow_id.as_str())),
            src_ip: Some(self.src.ip),
            src_port: Some(self.src.port),
            dest_ip: Some(self.dst.ip),
            dest_port: Some(self.dst.port),
            proto: Some(self.transport),
            ..Event::bare(self.ts, event_type, self.pcap_file.map(Cow::Borrowed), self.frame)
        }
    }
}

/// Shared by the UDP and TCP paths: what an event needs besides its context.
pub(crate) struct Emit<'s, S: Sink + ?Sized> {
    pub(crate) max_record: usize,
    /// With --keytab: the keys that open tickets.
    pub(crate) keytab: Option<&'s crate::keytab::Keytab>,
    pub(crate) certs: &'s mut crate::x509::CertCache,
    pub(crate) stats: &'s mut Stats,
    pub(crate) sources: &'s [Arc<str>],
    pub(crate) sink: &'s mut S,
    /// The connection's repeated anomalies (None outside a TCP connection).
    pub(crate) repeats: Option<&'s mut Option<Box<Repeats>>>,
}

/// A connection's repeated anomalies, boxed in `TcpFlow`: one pointer while there are none.
#[derive(Default)]
pub(crate) struct Repeats(Vec<Repeat>);

/// An anomaly kind seen more than once in one connection and direction: the first was
/// reported, the others are counted and reported as one event when the connection ends.
/// Four zero bytes each made an event before: 1.5 MB of capture gave 128 MB of output.
struct Repeat {
    pub(crate) kind: &'static str,
    pub(crate) layer: AnomalyLayer,
    pub(crate) direction: Direction,
    /// Repetitions after the first.
    pub(crate) count: u64,
    pub(crate) first_frame: u64,
    pub(crate) last_frame: u64,
    pub(crate) last_ts: Timestamp,
    pub(crate) detail: String,
}

impl<S: Sink + ?Sized> Emit<'_, S> {
    pub(crate) fn anomaly(&mut self, ctx: &Ctx<'_>, layer: AnomalyLayer, kind: &'static str, detail: String) {
        self.stats.anomaly(kind);
        if let Some(slot) = self.repeats.as_deref_mut() {
            let reps = &mut slot.get_or_insert_with(Default::default).0;
            if let Some(r) = reps.iter_mut().find(|r| r.kind == kind && r.direction == ctx.direction) {
                if r.count == 0 {
                    r.first_frame = ctx.frame;
                }
                r.count += 1;
                r.last_frame = ctx.frame;
                r.last_ts = ctx.ts;
                r.detail = detail;
                return;
            }
            if reps.len() < REPEAT_KINDS && kind != "tcp_no_answer" {
                reps.push(Repeat {
                    kind,
                    layer,
                    direction: ctx.direction,
                    count: 0,
                    first_frame: 0,
                    last_frame: 0,
                    last_ts: ctx.ts,
                    detail: String::new(),
                });
            }
        }
        self.emit_anomaly(ctx, layer, kind, detail, None);
    }

    pub(crate) fn emit_anomaly(
        &mut self,
        ctx: &Ctx<'_>,
        layer: AnomalyLayer,
        kind: &'static str,
        detail: String,
        repeated: Option<(u64, u64)>,
    ) {
        let mut e = ctx.envelope(EventType::Anomaly);
        e.anomaly = Some(Anomaly {
            layer,
            kind: Cow::Borrowed(kind),
            detail: Cow::Owned(detail),
            count: repeated.map(|r| r.0),
            first_frame: repeated.map(|r| r.1),
        });
        self.sink.event(&e);
    }

    /// Reports each anomaly the connection repeated, as one event per kind and direction.
    pub(crate) fn flush_repeats(&mut self, ctx: &Ctx<'_>, client: Endpoint, server: Endpoint) {
        let Some(reps) = self.repeats.take().and_then(Option::take) else { return };
        let reps = reps.0;
        for r in reps.into_iter().filter(|r| r.count > 0) {
            let (src, dst) = match r.direction {
                Direction::ToKdc => (client, server),
                Direction::FromKdc => (server, client),
            };
            let at = Ctx {
                ts: r.last_ts,
                frame: r.last_frame,
                src,
                dst,
                direction: r.direction,
                ..*ctx
            };
            let detail = format!(
                "{} more times in this connection, frames {} to {} (the last: {})",
                r.count, r.first_frame, r.last_frame, r.detail
            );
            self.emit_anomaly(&at, r.layer, r.kind, detail, Some((r.count, r.first_frame)));
        }
    }
}

pub(crate) fn opposite(d: Direction) -> Direction {
    match d {
        Direction::ToKdc => Direction::FromKdc,
        Direction::FromKdc => Direction::ToKdc,
    }
}

