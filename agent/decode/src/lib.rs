//! Packets in, events out. Pure: the caller feeds packets (from a file, libpcap or the eBPF
//! ring buffer) and receives events through a callback; time is the packets' own.
//!
//! Dispatch is by port (and for TLS also by content, as Zeek's dynamic protocol detection
//! does) and protocol-neutral below the application layer: the IP and TCP layers know
//! nothing of the application decoders, each in a module of its own: `krb5`, `tls` (with
//! `x509` for its certificates) and `http` (with ActiveSync and CRL fetches).

#![forbid(unsafe_code)]

mod emit;
pub mod flow;
pub mod http;
pub mod keytab;
pub mod krb5;
pub mod net;
mod stats;
mod stream;
pub mod tcp;
pub mod tls;
pub mod x509;

pub use http::eas;

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
use std::sync::Arc;

use kcd_schema::{Anomaly, AnomalyLayer, Direction, Event, EventType, Timestamp, Transport};

use crate::emit::{Ctx, Emit};
use crate::flow::{Endpoint, FlowId, FlowKey, PROTO_TCP, PROTO_UDP};
use crate::krb5::{PendingQueue, Role};
use crate::net::{Defragmenter, NetOutcome, Segment};
use crate::stream::TcpFlow;
pub use net::LinkType;
pub use stats::Stats;

const SECOND: i64 = 1_000_000_000;

/// Limits and ports. Every cap bounds memory whatever the input.
#[derive(Debug, Clone)]
pub struct Config {
    pub krb5_ports: Vec<u16>,
    /// TLS by port; on other TCP ports TLS is recognised by its ClientHello when
    /// `tls_detect` is on.
    pub tls_ports: Vec<u16>,
    pub tls_detect: bool,
    pub http_ports: Vec<u16>,
    /// Longest TLS handshake message read (certificate chains); longer ones are reported.
    pub max_tls_handshake: usize,
    /// Longest HTTP message head (request or status line and headers).
    pub max_http_header: usize,
    /// Largest response body kept to be read (a CRL); larger ones are counted, not kept.
    pub max_http_body_kept: usize,
    /// Requests of one connection waiting for their responses (pipelining).
    pub max_http_pipeline: usize,
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
    /// With --keytab: tickets on the wire (port 88 and HTTP Negotiate) are opened with it.
    pub keytab: Option<Arc<keytab::Keytab>>,
}

/// TCP connections tracked at once by default: half the capacity of a 65,536-bucket table,
/// which hashbrown (under the LRU) then never doubles under churn. A connection costs about
/// 480 bytes; a gateway host's own connections (KDC, CRL, Exchange, devices' TLS) are a few
/// thousand, and the least recently active go first: an idle device connection whose
/// handshake was read has nothing left to tell.
pub const TCP_FLOWS: usize = 28_672;
/// UDP client/KDC pairs with requests waiting, by default (half a 131,072-bucket table).
pub const PENDING_UDP: usize = 57_344;

impl Default for Config {
    fn default() -> Self {
        Self {
            krb5_ports: vec![88],
            tls_ports: vec![443],
            tls_detect: true,
            http_ports: vec![80],
            max_tls_handshake: 64 * 1024,
            max_http_header: 32 * 1024,
            max_http_body_kept: 2 * 1024 * 1024,
            max_http_pipeline: 32,
            max_tcp_flows: TCP_FLOWS,
            max_flow_buffer: 256 * 1024,
            max_reassembly_memory: 32 * 1024 * 1024,
            max_krb5_record: 128 * 1024,
            tcp_idle_timeout_ns: 120 * SECOND,
            max_pending_udp: PENDING_UDP,
            request_timeout_ns: 30 * SECOND,
            max_fragment_sets: 1024,
            fragment_timeout_ns: 30 * SECOND,
            keytab: None,
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

/// The application protocols decoded, chosen by port (TLS also by content). Each is a module;
/// everything below the application layer (link, IP, TCP reassembly) is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Krb5,
    Tls,
    Http,
}

pub struct Decoder {
    cfg: Config,
    sources: Vec<Arc<str>>,
    source: u32,
    tcp: Lru<FlowKey, TcpFlow>,
    tcp_memory: usize,
    /// A connection was recognised by content: segments on unconfigured ports must be
    /// looked up (until then they cost no lookup).
    detected: bool,
    /// With the flow's Community ID, computed once for the request and reused for its reply.
    udp_pending: Lru<(Endpoint, Endpoint), (PendingQueue, Option<FlowId>)>,
    defrag: Defragmenter,
    stats: Stats,
    next_sweep: Option<Timestamp>,
    /// The latest capture time seen: how long a connection at the end of the capture had.
    clock: Option<Timestamp>,
    certs: x509::CertCache,
    /// Per port, the protocols configured on it (bits: `PORT_KRB5`, `PORT_TLS`,
    /// `PORT_HTTP`): every packet asks, and scanning the three lists cost 3% of a replay.
    ports: Box<[u8]>,
    /// Connection states of closed flows, kept for the next connections (see `Spare`).
    spare: stream::Spare,
}

const PORT_KRB5: u8 = 1;
const PORT_TLS: u8 = 2;
const PORT_HTTP: u8 = 4;
const PORT_BITS: [(u8, Protocol); 3] = [(PORT_KRB5, Protocol::Krb5), (PORT_TLS, Protocol::Tls), (PORT_HTTP, Protocol::Http)];

impl Decoder {
    pub fn new(cfg: Config) -> Self {
        let defrag = Defragmenter::new(cfg.max_fragment_sets, cfg.fragment_timeout_ns);
        let mut ports = vec![0u8; 1 << 16].into_boxed_slice();
        for (list, bit) in [(&cfg.krb5_ports, PORT_KRB5), (&cfg.tls_ports, PORT_TLS), (&cfg.http_ports, PORT_HTTP)] {
            for &p in list {
                ports[usize::from(p)] |= bit;
            }
        }
        Self {
            ports,
            spare: stream::Spare::default(),
            cfg,
            sources: Vec::new(),
            source: 0,
            tcp: lru(),
            tcp_memory: 0,
            detected: false,
            udp_pending: lru(),
            defrag,
            stats: Stats::default(),
            next_sweep: None,
            clock: None,
            certs: x509::CertCache::default(),
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
        let at = |p: u16| self.ports.get(usize::from(p)).copied().unwrap_or(0);
        let (src, dst) = (at(src_port), at(dst_port));
        if src | dst == 0 {
            return None;
        }
        for (bit, p) in PORT_BITS {
            if dst & bit != 0 {
                return Some((p, true));
            }
            if src & bit != 0 {
                return Some((p, false));
            }
        }
        None
    }

    /// A TCP segment on no configured port: a connection recognised by its content
    /// earlier, or a ClientHello that starts one.
    fn detect(&self, seg: &Segment<'_>) -> Option<(Protocol, bool)> {
        if seg.proto != PROTO_TCP {
            return None;
        }
        if self.detected {
            let (key, _) = FlowKey::new(PROTO_TCP, seg.src, seg.dst);
            if let Some(f) = self.tcp.peek(&key) {
                return Some((f.app.protocol(), seg.src == f.client));
            }
        }
        (self.cfg.tls_detect && tls::looks_like_client_hello(seg.payload)).then_some((Protocol::Tls, true))
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
        let Some((protocol, to_kdc)) = self.protocol(seg.src.port, seg.dst.port).or_else(|| self.detect(&seg)) else {
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
                Protocol::Tls | Protocol::Http => self.stats.other_packets += 1,
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
            keytab: self.cfg.keytab.as_deref(),
            certs: &mut self.certs,
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
        // Unstable: no merge buffer beside a full table (the keys are distinct).
        keys.sort_unstable_by_key(|(k, t)| (*t, k.a, k.b));
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
