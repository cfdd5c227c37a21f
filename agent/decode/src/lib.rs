//! Packets in, events out. Pure: the caller feeds packets (from a file, libpcap or the eBPF
//! ring buffer) and receives events through a callback; time is the packets' own.
//!
//! Dispatch is by port and protocol-neutral below the application layer: the IP and TCP
//! layers know nothing of Kerberos, which is the first application decoder.

#![forbid(unsafe_code)]

pub mod flow;
pub mod krb5;
pub mod net;
mod stats;
pub mod tcp;

use std::borrow::Cow;

/// Flow tables are keyed by addresses an attacker chooses: a seeded hasher, and fast.
/// A table in least-recently-used order: the entry to evict or to age out is at one end,
/// so a flood of new flows costs O(1) each instead of a scan of the table.
type Lru<K, V> = lru::LruCache<K, V, foldhash::fast::RandomState>;

fn lru<K: std::hash::Hash + Eq, V>() -> Lru<K, V> {
    lru::LruCache::unbounded_with_hasher(foldhash::fast::RandomState::default())
}

/// A client's SYN left this long without an answer (in capture time) is evidence that
/// nobody answers: Linux resends it after 1 s, Windows after 3 s. A connection cut by the
/// end of the capture (or evicted) sooner is not.
const SYN_ANSWER_WAIT_NS: i64 = 3 * SECOND;

const END_OF_CAPTURE: &str = "end of capture";

/// Distinct anomaly kinds aggregated per connection; past it they are reported one by one.
const REPEAT_KINDS: usize = 8;
use std::sync::Arc;

use kcd_krb5::frame::{FrameEvent, RecordFramer};
use kcd_schema::{
    Anomaly, AnomalyLayer, Direction, Event, EventType, Krb5, RequestRef, Timestamp, Transport,
};

use crate::flow::{Endpoint, FlowId, FlowKey, PROTO_TCP, PROTO_UDP};
use crate::krb5::{Pending, PendingQueue, Role};
use crate::net::{Defragmenter, NetOutcome, Segment};
use crate::tcp::{Delivery, StreamDir};
pub use net::LinkType;
pub use stats::Stats;

const SECOND: i64 = 1_000_000_000;

/// Limits and ports. Every cap bounds memory whatever the input.
#[derive(Debug, Clone)]
pub struct Config {
    pub krb5_ports: Vec<u16>,
    /// TCP connections tracked at once; beyond it the least recently active is dropped.
    pub max_tcp_flows: usize,
    /// Bytes one TCP direction may hold (out-of-order segments plus a partial record).
    pub max_flow_buffer: usize,
    /// Bytes all TCP flows together may hold.
    pub max_reassembly_memory: usize,
    /// Longest Kerberos message accepted over TCP; longer ones are skipped and reported.
    pub max_krb5_record: usize,
    /// A TCP connection with no packet for this long (capture time) is closed.
    pub tcp_idle_timeout_ns: i64,
    /// UDP client/KDC pairs with requests awaiting a reply.
    pub max_pending_udp: usize,
    /// A request without a reply after this long is given up (and counted unanswered).
    pub request_timeout_ns: i64,
    pub max_fragment_sets: usize,
    pub fragment_timeout_ns: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            krb5_ports: vec![88],
            max_tcp_flows: 65_536,
            max_flow_buffer: 256 * 1024,
            max_reassembly_memory: 32 * 1024 * 1024,
            max_krb5_record: 128 * 1024,
            tcp_idle_timeout_ns: 120 * SECOND,
            max_pending_udp: 65_536,
            request_timeout_ns: 30 * SECOND,
            max_fragment_sets: 1024,
            fragment_timeout_ns: 30 * SECOND,
        }
    }
}

/// One captured frame.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    pub ts: Timestamp,
    pub link: LinkType,
    pub data: &'a [u8],
    /// Frame number within its source, from 1.
    pub frame: u64,
}

/// Receives events as they are produced. They borrow from the packet: copy what you keep.
pub trait Sink {
    fn event(&mut self, e: &Event<'_>);
}

impl<F: FnMut(&Event<'_>)> Sink for F {
    fn event(&mut self, e: &Event<'_>) {
        self(e)
    }
}

/// The application protocols decoded, chosen by port. Each is a module beside `krb5`;
/// everything below the application layer (link, IP, TCP reassembly) is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Krb5,
}

/// The application layer's state for one TCP connection.
enum StreamApp {
    /// RFC 4120 record marking, one framer per direction.
    Krb5([RecordFramer; 2]),
}

impl StreamApp {
    fn new(p: Protocol, cfg: &Config) -> Self {
        match p {
            Protocol::Krb5 => Self::Krb5([
                RecordFramer::new(cfg.max_krb5_record),
                RecordFramer::new(cfg.max_krb5_record),
            ]),
        }
    }

    /// In-order stream bytes of direction `d`.
    fn data<S: Sink + ?Sized>(
        &mut self,
        d: usize,
        b: &[u8],
        emit: &mut Emit<'_, S>,
        ctx: &Ctx<'_>,
        pending: &mut PendingQueue,
    ) {
        match self {
            Self::Krb5(f) => f[d].push(b, &mut |fe| emit.frame_event(ctx, fe, pending)),
        }
    }

    /// Bytes of direction `d` are missing.
    fn gap(&mut self, d: usize) {
        match self {
            Self::Krb5(f) => f[d].gap(),
        }
    }

    /// Bytes of direction `d` held for an unfinished message.
    fn buffered(&self, d: usize) -> usize {
        match self {
            Self::Krb5(f) => f[d].buffered(),
        }
    }

    fn capacity(&self) -> usize {
        match self {
            Self::Krb5(f) => f.iter().map(RecordFramer::capacity).sum(),
        }
    }
}

struct TcpFlow {
    client: Endpoint,
    server: Endpoint,
    /// [client to server, server to client]
    dirs: [StreamDir; 2],
    app: StreamApp,
    pending: PendingQueue,
    flow_id: FlowId,
    first_seen: Timestamp,
    last_seen: Timestamp,
    /// The flow's latest frame: what events about the flow's end point at.
    last_frame: u64,
    /// Connection attempts (SYN) from the client, and packets of any kind from the server:
    /// SYNs that the server never answers mean a firewall or a dead server.
    client_syns: u32,
    server_packets: u32,
    /// `tcp_no_answer` was reported (once per connection).
    no_answer_reported: bool,
    /// Heap bytes this flow holds, as last counted into `Decoder::tcp_memory`.
    memory: usize,
    /// Boxed: most connections repeat nothing, and 65,536 of them are held at once.
    repeats: Option<Box<Repeats>>,
}

impl TcpFlow {
    fn held(&self) -> usize {
        self.dirs.iter().map(StreamDir::buffered).sum::<usize>() + self.app.capacity()
    }
}

/// Where a message was seen, for the event's envelope.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    ts: Timestamp,
    frame: u64,
    pcap_file: Option<&'a str>,
    flow_id: &'a FlowId,
    src: Endpoint,
    dst: Endpoint,
    transport: Transport,
    direction: Direction,
    source: u32,
}

impl<'a> Ctx<'a> {
    fn envelope(&self, event_type: EventType) -> Event<'a> {
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
struct Emit<'s, S: Sink + ?Sized> {
    max_record: usize,
    stats: &'s mut Stats,
    sources: &'s [Arc<str>],
    sink: &'s mut S,
    /// The connection's repeated anomalies (None outside a TCP connection).
    repeats: Option<&'s mut Option<Box<Repeats>>>,
}

/// A connection's repeated anomalies, boxed in `TcpFlow`: one pointer while there are none.
#[derive(Default)]
struct Repeats(Vec<Repeat>);

/// An anomaly kind seen more than once in one connection and direction: the first was
/// reported, the others are counted and reported as one event when the connection ends.
/// Four zero bytes each made an event before: 1.5 MB of capture gave 128 MB of output.
struct Repeat {
    kind: &'static str,
    layer: AnomalyLayer,
    direction: Direction,
    /// Repetitions after the first.
    count: u64,
    first_frame: u64,
    last_frame: u64,
    last_ts: Timestamp,
    detail: String,
}

impl<S: Sink + ?Sized> Emit<'_, S> {
    fn anomaly(&mut self, ctx: &Ctx<'_>, layer: AnomalyLayer, kind: &'static str, detail: String) {
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

    fn emit_anomaly(
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
    fn flush_repeats(&mut self, ctx: &Ctx<'_>, client: Endpoint, server: Endpoint) {
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

    /// Decodes and reports one Kerberos message; pairs it through `queue`.
    fn message(
        &mut self,
        ctx: &Ctx<'_>,
        bytes: &[u8],
        queue: &mut dyn FnMut(Role, Option<Pending>) -> Option<Pending>,
    ) {
        let mut e = ctx.envelope(EventType::Krb5);
        let k = e.krb5.insert(Krb5::default());
        let d = match krb5::decode(bytes, ctx.ts, k) {
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
        self.sink.event(&e);
    }

    fn frame_event(&mut self, ctx: &Ctx<'_>, fe: FrameEvent<'_>, pending: &mut PendingQueue) {
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

fn opposite(d: Direction) -> Direction {
    match d {
        Direction::ToKdc => Direction::FromKdc,
        Direction::FromKdc => Direction::ToKdc,
    }
}

pub struct Decoder {
    cfg: Config,
    sources: Vec<Arc<str>>,
    source: u32,
    tcp: Lru<FlowKey, TcpFlow>,
    tcp_memory: usize,
    /// With the flow's Community ID, computed once for the request and reused for its reply.
    udp_pending: Lru<(Endpoint, Endpoint), (PendingQueue, Option<FlowId>)>,
    defrag: Defragmenter,
    stats: Stats,
    next_sweep: Option<Timestamp>,
    /// The latest capture time seen: how long a connection at the end of the capture had.
    clock: Option<Timestamp>,
}

impl Decoder {
    pub fn new(cfg: Config) -> Self {
        let defrag = Defragmenter::new(cfg.max_fragment_sets, cfg.fragment_timeout_ns);
        Self {
            cfg,
            sources: Vec::new(),
            source: 0,
            tcp: lru(),
            tcp_memory: 0,
            udp_pending: lru(),
            defrag,
            stats: Stats::default(),
            next_sweep: None,
            clock: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Heap bytes held by TCP reassembly right now.
    pub fn reassembly_memory(&self) -> usize {
        self.tcp_memory
    }

    /// Names the source of the packets that follow (a file name, or None for live capture).
    /// State carries over, so a capture split into several files reads as one.
    pub fn begin_source(&mut self, name: Option<&str>) {
        self.stats.files += u64::from(name.is_some());
        self.sources.push(Arc::from(name.unwrap_or("")));
        self.source = (self.sources.len() - 1) as u32;
    }

    fn pcap_file(&self) -> Option<Arc<str>> {
        self.sources
            .get(self.source as usize)
            .filter(|s| !s.is_empty())
            .cloned()
    }

    /// Reports an input problem that belongs to no packet (e.g. a truncated file).
    pub fn source_anomaly<S: Sink + ?Sized>(
        &mut self,
        ts: Timestamp,
        frame: u64,
        kind: &'static str,
        detail: String,
        sink: &mut S,
    ) {
        self.stats.anomaly(kind);
        let file = self.pcap_file();
        let e = Event {
            anomaly: Some(Anomaly {
                layer: AnomalyLayer::Pcap,
                kind: Cow::Borrowed(kind),
                detail: Cow::Owned(detail),
                count: None,
                first_frame: None,
            }),
            ..Event::bare(ts, EventType::Anomaly, file.as_deref().map(Cow::Borrowed), frame)
        };
        sink.event(&e);
    }

    /// The protocol a segment belongs to, and whether it travels to the server (the side
    /// whose port names the protocol).
    fn protocol(&self, src_port: u16, dst_port: u16) -> Option<(Protocol, bool)> {
        if self.cfg.krb5_ports.contains(&dst_port) {
            Some((Protocol::Krb5, true))
        } else if self.cfg.krb5_ports.contains(&src_port) {
            Some((Protocol::Krb5, false))
        } else {
            None
        }
    }

    pub fn packet<S: Sink + ?Sized>(&mut self, pkt: &Packet<'_>, sink: &mut S) {
        self.stats.packets += 1;
        self.stats.bytes += pkt.data.len() as u64;
        self.clock = Some(self.clock.map_or(pkt.ts, |c| c.max(pkt.ts)));
        match self.next_sweep {
            Some(t) if pkt.ts < t => {}
            _ => {
                self.sweep(pkt.ts, pkt.frame, sink);
                self.next_sweep = Some(Timestamp(pkt.ts.0 + SECOND));
            }
        }
        if let Some(seg) = net::fast_path(pkt.link, pkt.data) {
            self.decode_segment(pkt, seg, sink);
            return;
        }
        // The segment that completes a fragmented datagram borrows the reassembly buffer,
        // so the pool is held outside `self` while the packet is processed.
        let mut defrag = self.defrag.take();
        self.decode_frame(pkt, &mut defrag, sink);
        self.defrag = defrag;
    }

    fn decode_frame<S: Sink + ?Sized>(
        &mut self,
        pkt: &Packet<'_>,
        defrag: &mut Defragmenter,
        sink: &mut S,
    ) {
        let seg = match net::segment(pkt.link, pkt.data, pkt.ts, defrag) {
            NetOutcome::Segment(s) => s,
            NetOutcome::FragmentHeld | NetOutcome::Ignored => {
                self.stats.other_packets += 1;
                return;
            }
            NetOutcome::Anomaly {
                layer,
                kind,
                detail,
            } => {
                self.stats.anomaly(kind);
                let file = self.pcap_file();
                let e = Event {
                    anomaly: Some(Anomaly {
                        layer,
                        kind: Cow::Borrowed(kind),
                        detail: Cow::Owned(detail),
                        count: None,
                        first_frame: None,
                    }),
                    ..Event::bare(pkt.ts, EventType::Anomaly, file.as_deref().map(Cow::Borrowed), pkt.frame)
                };
                sink.event(&e);
                return;
            }
        };
        self.decode_segment(pkt, seg, sink);
    }

    fn decode_segment<S: Sink + ?Sized>(
        &mut self,
        pkt: &Packet<'_>,
        seg: Segment<'_>,
        sink: &mut S,
    ) {
        let Some((protocol, to_kdc)) = self.protocol(seg.src.port, seg.dst.port) else {
            self.stats.other_packets += 1;
            return;
        };
        let direction = if to_kdc {
            Direction::ToKdc
        } else {
            Direction::FromKdc
        };
        // Half of a TCP capture is bare ACKs: they only keep their flow alive, unless they
        // acknowledge bytes the capture never saw.
        if let Some(m) = seg
            .tcp
            .filter(|m| seg.payload.is_empty() && !seg.truncated && !m.syn && !m.fin && !m.rst)
        {
            let (key, _) = FlowKey::new(PROTO_TCP, seg.src, seg.dst);
            if let Some(flow) = self.tcp.get_mut(&key) {
                flow.last_seen = pkt.ts;
                let other = usize::from(seg.src == flow.client);
                if !m.ack.is_some_and(|a| flow.dirs[other].acks_unseen(a)) {
                    return;
                }
            } else {
                return;
            }
        }
        let file = self.pcap_file();
        match seg.proto {
            PROTO_UDP => match protocol {
                Protocol::Krb5 => self.udp(pkt, &seg, direction, file.as_deref(), sink),
            },
            PROTO_TCP => self.tcp(pkt, &seg, protocol, direction, file.as_deref(), sink),
            _ => self.stats.other_packets += 1,
        }
    }

    fn udp<S: Sink + ?Sized>(
        &mut self,
        pkt: &Packet<'_>,
        seg: &Segment<'_>,
        direction: Direction,
        file: Option<&str>,
        sink: &mut S,
    ) {
        let (client, server) = if direction == Direction::ToKdc {
            (seg.src, seg.dst)
        } else {
            (seg.dst, seg.src)
        };
        let flow_id = match self
            .udp_pending
            .peek_mut(&(client, server))
            .and_then(|q| q.1.take())
        {
            Some(id) => id,
            None => FlowKey::new(PROTO_UDP, seg.src, seg.dst).0.community_id(),
        };
        let ctx = Ctx {
            ts: pkt.ts,
            frame: pkt.frame,
            pcap_file: file,
            flow_id: &flow_id,
            src: seg.src,
            dst: seg.dst,
            transport: Transport::Udp,
            direction,
            source: self.source,
        };
        let mut emit = Emit {
            max_record: self.cfg.max_krb5_record,
            stats: &mut self.stats,
            sources: &self.sources,
            sink,
            repeats: None,
        };
        if seg.truncated {
            emit.anomaly(
                &ctx,
                AnomalyLayer::Udp,
                "packet_truncated",
                format!(
                    "datagram cut to {} bytes by the capture's snap length",
                    seg.payload.len()
                ),
            );
        }
        let pending = &mut self.udp_pending;
        let max_pending = self.cfg.max_pending_udp;
        let mut evicted = 0u64;
        emit.message(&ctx, seg.payload, &mut |role, p| match (role, p) {
            (Role::Request, Some(p)) if direction == Direction::ToKdc => {
                if pending.len() >= max_pending && !pending.contains(&(client, server)) {
                    // Full: forget the pair waiting longest (the table's LRU end).
                    if let Some((_, (mut q, _))) = pending.pop_lru() {
                        while q.pop().is_some() {
                            evicted += 1;
                        }
                    }
                }
                let q = pending.get_or_insert_mut((client, server), Default::default);
                q.0.push(p);
                q.1 = Some(flow_id);
                None
            }
            (Role::Reply, None) if direction == Direction::FromKdc => {
                let (q, _) = pending.peek_mut(&(client, server))?;
                let p = q.pop();
                if q.is_empty() {
                    pending.pop(&(client, server));
                }
                p
            }
            _ => None,
        });
        if evicted > 0 {
            // Not known to be unanswered: their replies may still come, and will then
            // count as replies without a request.
            let before = emit.stats.requests_evicted;
            emit.stats.requests_evicted += evicted;
            emit.stats.anomalies.entry("krb5_request_table_full").and_modify(|n| *n += 1).or_insert(1);
            // Reported when the count passes a power of two: a flood says so a few dozen
            // times, not once per request.
            if (before + evicted).ilog2() != before.checked_ilog2().unwrap_or(u32::MAX) || before == 0 {
                let detail = format!(
                    "UDP request table full (--max-pending-requests {max_pending}): {} requests waiting longest given up so far, without knowing whether they are answered",
                    before + evicted
                );
                emit.emit_anomaly(&ctx, AnomalyLayer::Krb5, "krb5_request_table_full", detail, None);
            }
        }
    }

    fn tcp<S: Sink + ?Sized>(
        &mut self,
        pkt: &Packet<'_>,
        seg: &Segment<'_>,
        protocol: Protocol,
        direction: Direction,
        file: Option<&str>,
        sink: &mut S,
    ) {
        let Some(meta) = seg.tcp else { return };
        let (key, _) = FlowKey::new(PROTO_TCP, seg.src, seg.dst);
        if !self.tcp.contains(&key) {
            // Only a SYN or data opens a flow: the last ACK of a closed connection must not
            // bring it back to life.
            if meta.rst || (seg.payload.is_empty() && !meta.syn) {
                return;
            }
            if self.tcp.len() >= self.cfg.max_tcp_flows {
                self.evict_oldest_flow(pkt, file, sink);
            }
            let (client, server) = if direction == Direction::ToKdc {
                (seg.src, seg.dst)
            } else {
                (seg.dst, seg.src)
            };
            self.stats.tcp_flows += 1;
            self.tcp.put(
                key,
                TcpFlow {
                    client,
                    server,
                    dirs: Default::default(),
                    app: StreamApp::new(protocol, &self.cfg),
                    pending: PendingQueue::default(),
                    flow_id: key.community_id(),
                    first_seen: pkt.ts,
                    last_seen: pkt.ts,
                    last_frame: pkt.frame,
                    client_syns: 0,
                    server_packets: 0,
                    no_answer_reported: false,
                    memory: 0,
                    repeats: None,
                },
            );
        }
        let Some(flow) = self.tcp.get_mut(&key) else {
            return;
        };
        flow.last_seen = pkt.ts;
        flow.last_frame = pkt.frame;
        let d = usize::from(seg.src != flow.client);
        let ctx = Ctx {
            ts: pkt.ts,
            frame: pkt.frame,
            pcap_file: file,
            flow_id: &flow.flow_id,
            src: seg.src,
            dst: seg.dst,
            transport: Transport::Tcp,
            direction,
            source: self.source,
        };
        let mut emit = Emit {
            max_record: self.cfg.max_krb5_record,
            stats: &mut self.stats,
            sources: &self.sources,
            sink,
            repeats: Some(&mut flow.repeats),
        };
        if seg.truncated {
            emit.anomaly(
                &ctx,
                AnomalyLayer::Tcp,
                "packet_truncated",
                "segment cut short by the capture's snap length; the stream has a gap".into(),
            );
        }
        if meta.syn {
            flow.dirs[d].syn(meta.seq);
        }
        if d == 0 {
            flow.client_syns += u32::from(meta.syn);
            // Reported as soon as the client sends its SYN again (it waited about a second
            // for nothing), not when the connection is given up: a firewall dropping TCP/88
            // must show while the client is still waiting.
            if flow.client_syns == 2 && flow.server_packets == 0 && !flow.no_answer_reported {
                flow.no_answer_reported = true;
                let secs = (pkt.ts.0 - flow.first_seen.0) as f64 / 1e9;
                emit.anomaly(
                    &ctx,
                    AnomalyLayer::Tcp,
                    "tcp_no_answer",
                    format!(
                        "connection attempt (SYN) from {}:{} to {}:{} sent again after {secs:.1} s without an answer",
                        flow.client.ip, flow.client.port, flow.server.ip, flow.server.port
                    ),
                );
            }
        } else {
            flow.server_packets += 1;
        }
        let seq = if meta.syn {
            meta.seq.wrapping_add(1)
        } else {
            meta.seq
        };
        let payload = if seg.truncated { &[][..] } else { seg.payload };
        let app = &mut flow.app;
        let pending = &mut flow.pending;
        let mut gap_bytes = 0u64;
        let st = flow.dirs[d].segment(
            seq,
            payload,
            meta.fin,
            self.cfg.max_flow_buffer,
            &mut |del| match del {
                Delivery::Data(b) => app.data(d, b, &mut emit, &ctx, pending),
                Delivery::Gap(n) => {
                    gap_bytes += n;
                    app.gap(d);
                }
            },
        );
        if seg.truncated && !seg.payload.is_empty() {
            gap_bytes += seg.payload.len() as u64;
            app.gap(d);
        }
        if gap_bytes > 0 {
            emit.anomaly(
                &ctx,
                AnomalyLayer::Tcp,
                "tcp_gap",
                format!("{gap_bytes} bytes missing from the stream"),
            );
        }
        emit.stats.tcp_retransmitted += u64::from(st.retransmitted);
        emit.stats.tcp_out_of_order += u64::from(st.out_of_order);
        // This packet's ACK speaks of the other direction's bytes.
        if let Some(ack) = meta.ack {
            let o = 1 - d;
            let octx = Ctx {
                src: seg.dst,
                dst: seg.src,
                direction: opposite(direction),
                ..ctx
            };
            let app = &mut flow.app;
            let pending = &mut flow.pending;
            let mut lost = 0u64;
            flow.dirs[o].acked(ack, &mut |del| match del {
                Delivery::Data(b) => app.data(o, b, &mut emit, &octx, pending),
                Delivery::Gap(n) => {
                    lost += n;
                    app.gap(o);
                }
            });
            if lost > 0 {
                emit.anomaly(
                    &octx,
                    AnomalyLayer::Tcp,
                    "tcp_gap",
                    format!(
                        "{lost} bytes acknowledged by the receiver but missing from the capture"
                    ),
                );
            }
        }
        let closing = meta.rst || (flow.dirs[0].fin && flow.dirs[1].fin);
        // Memory: this flow's share of the global cap.
        let held = flow.held();
        self.tcp_memory = self.tcp_memory + held - flow.memory.min(self.tcp_memory + held);
        flow.memory = held;
        if closing {
            self.close_flow(key, pkt, file, "connection closed", sink);
        } else if self.tcp_memory > self.cfg.max_reassembly_memory {
            self.close_flow(
                key,
                pkt,
                file,
                "reassembly memory limit (--max-reassembly-memory) reached",
                sink,
            );
            self.stats.anomaly("tcp_memory_limit");
        }
    }

    /// Ends a TCP flow: hands on what is held, reports what can never complete.
    fn close_flow<S: Sink + ?Sized>(
        &mut self,
        key: FlowKey,
        pkt: &Packet<'_>,
        file: Option<&str>,
        why: &str,
        sink: &mut S,
    ) {
        let Some(mut flow) = self.tcp.pop(&key) else {
            return;
        };
        self.tcp_memory = self.tcp_memory.saturating_sub(flow.memory);
        let mut repeats = flow.repeats.take();
        let mut emit = Emit {
            max_record: self.cfg.max_krb5_record,
            stats: &mut self.stats,
            sources: &self.sources,
            sink,
            repeats: Some(&mut repeats),
        };
        for d in 0..2 {
            let (src, dst) = if d == 0 {
                (flow.client, flow.server)
            } else {
                (flow.server, flow.client)
            };
            let ctx = Ctx {
                ts: pkt.ts,
                frame: pkt.frame,
                pcap_file: file,
                flow_id: &flow.flow_id,
                src,
                dst,
                transport: Transport::Tcp,
                direction: if d == 0 {
                    Direction::ToKdc
                } else {
                    Direction::FromKdc
                },
                source: self.source,
            };
            let app = &mut flow.app;
            let pending = &mut flow.pending;
            let lost = flow.dirs[d].close(&mut |del| match del {
                Delivery::Data(b) => app.data(d, b, &mut emit, &ctx, pending),
                Delivery::Gap(_) => app.gap(d),
            });
            if lost > 0 {
                emit.anomaly(
                    &ctx,
                    AnomalyLayer::Tcp,
                    "tcp_gap",
                    format!("{lost} bytes missing from the stream before it ended"),
                );
            }
            if app.buffered(d) > 0 {
                emit.anomaly(
                    &ctx,
                    AnomalyLayer::Krb5,
                    "krb5_unfinished_record",
                    format!(
                        "{} bytes of an incomplete Kerberos record when the stream ended ({why})",
                        app.buffered(d)
                    ),
                );
            }
        }
        let end_ctx = Ctx {
            ts: pkt.ts,
            frame: pkt.frame,
            pcap_file: file,
            flow_id: &flow.flow_id,
            src: flow.client,
            dst: flow.server,
            transport: Transport::Tcp,
            direction: Direction::ToKdc,
            source: self.source,
        };
        emit.flush_repeats(&end_ctx, flow.client, flow.server);
        // How long the SYN waited, by the capture's clock: a connection cut short by the
        // end of the capture or by eviction had no time to be answered.
        let waited = self.clock.map_or(0, |c| c.0 - flow.first_seen.0);
        if flow.client_syns > 0
            && flow.server_packets == 0
            && !flow.no_answer_reported
            && waited >= SYN_ANSWER_WAIT_NS
        {
            let ctx = Ctx {
                ts: pkt.ts,
                frame: pkt.frame,
                pcap_file: file,
                flow_id: &flow.flow_id,
                src: flow.client,
                dst: flow.server,
                transport: Transport::Tcp,
                direction: Direction::ToKdc,
                source: self.source,
            };
            // A single SYN (a second one would have been reported already).
            emit.anomaly(
                &ctx,
                AnomalyLayer::Tcp,
                "tcp_no_answer",
                format!(
                    "connection attempt (SYN) from {}:{} to {}:{} not answered in {:.1} s ({why})",
                    flow.client.ip,
                    flow.client.port,
                    flow.server.ip,
                    flow.server.port,
                    waited as f64 / 1e9
                ),
            );
        }
        // Cut by the end of the capture, a request is undecided, not unanswered.
        let end = why == END_OF_CAPTURE;
        while flow.pending.pop().is_some() {
            if end {
                self.stats.pending_at_end += 1;
            } else {
                self.stats.requests_unanswered += 1;
            }
        }
    }

    fn evict_oldest_flow<S: Sink + ?Sized>(
        &mut self,
        pkt: &Packet<'_>,
        file: Option<&str>,
        sink: &mut S,
    ) {
        let oldest = self.tcp.peek_lru().map(|(k, _)| *k);
        if let Some(k) = oldest {
            self.stats.anomaly("tcp_flow_table_full");
            let n = self.stats.anomalies.get("tcp_flow_table_full").copied().unwrap_or(0);
            // Said when the count reaches a power of two: a few dozen events in a flood.
            if n.is_power_of_two() {
                let detail = format!(
                    "TCP connection table full (--max-tcp-flows {}): {n} least recently active connections closed so far",
                    self.cfg.max_tcp_flows
                );
                let f = self.pcap_file();
                let e = Event {
                    anomaly: Some(Anomaly::new(
                        AnomalyLayer::Tcp,
                        Cow::Borrowed("tcp_flow_table_full"),
                        Cow::Owned(detail),
                    )),
                    ..Event::bare(pkt.ts, EventType::Anomaly, f.as_deref().map(Cow::Borrowed), pkt.frame)
                };
                sink.event(&e);
            }
            self.close_flow(k, pkt, file, "flow table full (--max-tcp-flows)", sink);
        }
    }

    /// Ages state out by capture time: idle TCP flows, unanswered requests, fragments.
    fn sweep<S: Sink + ?Sized>(&mut self, now: Timestamp, frame: u64, sink: &mut S) {
        // Both tables are in order of last activity: what is idle is at the LRU end, and
        // the walk stops at the first entry that is not (O(expired), not O(table)).
        let idle = self.cfg.tcp_idle_timeout_ns;
        let file = self.pcap_file();
        let pkt = Packet {
            ts: now,
            link: LinkType::RAW,
            data: &[],
            frame,
        };
        while let Some(k) = self
            .tcp
            .peek_lru()
            .filter(|(_, f)| now.0 - f.last_seen.0 > idle)
            .map(|(k, _)| *k)
        {
            self.close_flow(k, &pkt, file.as_deref(), "idle timeout", sink);
        }
        let timeout = self.cfg.request_timeout_ns;
        let mut expired = 0u64;
        while self
            .udp_pending
            .peek_lru()
            .is_some_and(|(_, (q, _))| q.newest().is_none_or(|t| now.0 - t.0 > timeout))
        {
            if let Some((_, (mut q, _))) = self.udp_pending.pop_lru() {
                while q.pop().is_some() {
                    expired += 1;
                }
            }
        }
        self.stats.requests_unanswered += expired;
        for f in self.defrag.expire(now) {
            self.source_anomaly(
                now,
                frame,
                "ip_frag_timeout",
                format!(
                    "{} bytes of fragments from {} to {} never completed",
                    f.bytes, f.src, f.dst
                ),
                sink,
            );
        }
    }

    /// End of input: closes every flow so nothing held is lost silently.
    pub fn finish<S: Sink + ?Sized>(&mut self, sink: &mut S) {
        let mut keys: Vec<(FlowKey, Timestamp)> =
            self.tcp.iter().map(|(k, f)| (*k, f.last_seen)).collect();
        keys.sort_by_key(|(k, t)| (*t, k.a, k.b));
        let file = self.pcap_file();
        for (k, last) in keys {
            let frame = self.tcp.peek(&k).map_or(0, |f| f.last_frame);
            let pkt = Packet {
                ts: last,
                link: LinkType::RAW,
                data: &[],
                frame,
            };
            self.close_flow(k, &pkt, file.as_deref(), END_OF_CAPTURE, sink);
        }
        while let Some((_, (mut q, _))) = self.udp_pending.pop_lru() {
            while q.pop().is_some() {
                self.stats.pending_at_end += 1;
            }
        }
    }
}
