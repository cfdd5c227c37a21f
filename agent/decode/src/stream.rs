//! TCP connections: one per flow, its two reassembled directions handed to the
//! application decoder the connection was recognised as (by port or by content).

use std::borrow::Cow;

use kcd_krb5::frame::RecordFramer;
use kcd_schema::{Anomaly, AnomalyLayer, Direction, Event, EventType, Timestamp, Transport};

use crate::emit::{opposite, Ctx, Emit, Repeats};
use crate::flow::{Endpoint, FlowId, FlowKey, PROTO_TCP};
use crate::http::{HttpConn, Limits};
use crate::krb5::PendingQueue;
use crate::net::Segment;
use crate::tcp::{Delivery, StreamDir};
use crate::tls::TlsConn;
use crate::{Config, Decoder, Packet, Protocol, Sink, END_OF_CAPTURE, SYN_ANSWER_WAIT_NS};

/// The application layer's state for one TCP connection.
pub(crate) enum StreamApp {
    /// RFC 4120 record marking, one framer per direction.
    Krb5([RecordFramer; 2]),
    /// Boxed: a Kerberos connection should not pay for the others' state.
    Tls(Box<TlsConn>),
    Http(Box<HttpConn>),
}

/// TLS and HTTP connection states of closed flows, reset, for the next connections. Each
/// is over the 1 KiB from which glibc's malloc first consolidates its free lists, and
/// allocating one per connection cost more than reading its handshake. At most
/// `SPARE_KEPT` of each.
#[derive(Default)]
// The boxes are what is reused: `StreamApp` holds its states boxed.
#[allow(clippy::vec_box)]
pub(crate) struct Spare {
    tls: Vec<Box<TlsConn>>,
    http: Vec<Box<HttpConn>>,
}

const SPARE_KEPT: usize = 64;

fn http_limits(cfg: &Config) -> Limits {
    Limits { max_header: cfg.max_http_header, max_body_kept: cfg.max_http_body_kept, max_pipeline: cfg.max_http_pipeline }
}

impl Spare {
    /// Keeps a closed connection's state, emptied (what it held is freed now).
    fn keep(&mut self, app: StreamApp, cfg: &Config) {
        match app {
            StreamApp::Tls(mut t) if self.tls.len() < SPARE_KEPT => {
                t.reset(cfg.max_tls_handshake);
                self.tls.push(t);
            }
            StreamApp::Http(mut h) if self.http.len() < SPARE_KEPT => {
                h.reset(http_limits(cfg));
                self.http.push(h);
            }
            _ => {}
        }
    }
}

impl StreamApp {
    fn new(p: Protocol, cfg: &Config, spare: &mut Spare) -> Self {
        match p {
            Protocol::Krb5 => Self::Krb5([
                RecordFramer::new(cfg.max_krb5_record),
                RecordFramer::new(cfg.max_krb5_record),
            ]),
            Protocol::Tls => Self::Tls(spare.tls.pop().unwrap_or_else(|| Box::new(TlsConn::new(cfg.max_tls_handshake)))),
            Protocol::Http => Self::Http(spare.http.pop().unwrap_or_else(|| Box::new(HttpConn::new(http_limits(cfg))))),
        }
    }

    pub(crate) fn protocol(&self) -> Protocol {
        match self {
            Self::Krb5(_) => Protocol::Krb5,
            Self::Tls(_) => Protocol::Tls,
            Self::Http(_) => Protocol::Http,
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
            Self::Tls(t) => t.data(d, b, emit, ctx),
            Self::Http(h) => h.data(d, b, emit, ctx),
        }
    }

    /// Bytes of direction `d` are missing.
    fn gap<S: Sink + ?Sized>(&mut self, d: usize, emit: &mut Emit<'_, S>, ctx: &Ctx<'_>) {
        match self {
            Self::Krb5(f) => f[d].gap(),
            Self::Tls(t) => t.gap(d),
            Self::Http(h) => h.gap(emit, ctx),
        }
    }

    /// Bytes of direction `d` held for an unfinished message.
    fn buffered(&self, d: usize) -> usize {
        match self {
            Self::Krb5(f) => f[d].buffered(),
            Self::Tls(t) => t.buffered(d),
            Self::Http(h) => h.buffered(d),
        }
    }

    fn capacity(&self) -> usize {
        match self {
            Self::Krb5(f) => f.iter().map(RecordFramer::capacity).sum(),
            Self::Tls(t) => t.capacity(),
            Self::Http(h) => h.capacity(),
        }
    }

    /// The connection ended: what each decoder still holds is reported. `ctx` is the
    /// client-to-server direction's.
    fn end<S: Sink + ?Sized>(&mut self, emit: &mut Emit<'_, S>, ctx: &Ctx<'_>, why: &str) {
        match self {
            // Reported per direction as the stream ends (close_flow).
            Self::Krb5(_) => {
                let _ = why;
            }
            Self::Tls(t) => t.close(emit, ctx),
            Self::Http(h) => h.close(emit, ctx),
        }
    }
}

pub(crate) struct TcpFlow {
    pub(crate) client: Endpoint,
    pub(crate) server: Endpoint,
    /// [client to server, server to client]
    pub(crate) dirs: [StreamDir; 2],
    pub(crate) app: StreamApp,
    pub(crate) pending: PendingQueue,
    pub(crate) flow_id: FlowId,
    pub(crate) first_seen: Timestamp,
    pub(crate) last_seen: Timestamp,
    /// The flow's latest frame: what events about the flow's end point at.
    pub(crate) last_frame: u64,
    /// Connection attempts (SYN) from the client, and packets of any kind from the server:
    /// SYNs that the server never answers mean a firewall or a dead server.
    pub(crate) client_syns: u32,
    pub(crate) server_packets: u32,
    /// `tcp_no_answer` was reported (once per connection).
    pub(crate) no_answer_reported: bool,
    /// Heap bytes this flow holds, as last counted into `Decoder::tcp_memory`.
    pub(crate) memory: usize,
    /// Boxed: most connections repeat nothing, and 65,536 of them are held at once.
    pub(crate) repeats: Option<Box<Repeats>>,
}

impl TcpFlow {
    fn held(&self) -> usize {
        self.dirs.iter().map(StreamDir::buffered).sum::<usize>() + self.app.capacity()
    }
}

impl Decoder {
    pub(crate) fn tcp<S: Sink + ?Sized>(
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
            if self.protocol(seg.src.port, seg.dst.port).is_none() {
                self.detected = true;
            }
            self.tcp.put(
                key,
                TcpFlow {
                    client,
                    server,
                    dirs: Default::default(),
                    app: StreamApp::new(protocol, &self.cfg, &mut self.spare),
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
            keytab: self.cfg.keytab.as_deref(),
            certs: &mut self.certs,
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
                    app.gap(d, &mut emit, &ctx);
                }
            },
        );
        if seg.truncated && !seg.payload.is_empty() {
            gap_bytes += seg.payload.len() as u64;
            app.gap(d, &mut emit, &ctx);
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
                    app.gap(o, &mut emit, &octx);
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
    pub(crate) fn close_flow<S: Sink + ?Sized>(
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
            keytab: self.cfg.keytab.as_deref(),
            certs: &mut self.certs,
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
                Delivery::Gap(_) => app.gap(d, &mut emit, &ctx),
            });
            if lost > 0 {
                emit.anomaly(
                    &ctx,
                    AnomalyLayer::Tcp,
                    "tcp_gap",
                    format!("{lost} bytes missing from the stream before it ended"),
                );
            }
            if matches!(app, StreamApp::Krb5(_)) && app.buffered(d) > 0 {
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
        flow.app.end(&mut emit, &end_ctx, why);
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
        self.spare.keep(flow.app, &self.cfg);
    }

    pub(crate) fn evict_oldest_flow<S: Sink + ?Sized>(
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
}
