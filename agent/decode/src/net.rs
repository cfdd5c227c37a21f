//! Link and network layers: from a captured frame to a transport segment, with IP
//! fragments reassembled in a bounded pool.

use std::collections::HashMap;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::net::IpAddr;

use etherparse::defrag::IpDefragBuf;
use etherparse::{
    EtherType, Ethernet2HeaderSlice, IpFragOffset, IpNumber, Ipv4HeaderSlice, Ipv6HeaderSlice,
    LaxNetSlice, LaxSlicedPacket, TcpSlice, TransportSlice, UdpSlice,
};
use kcd_schema::{AnomalyLayer, Timestamp};

use crate::flow::{Endpoint, PROTO_TCP, PROTO_UDP};

/// Link-layer header types (pcap LINKTYPE_* values) the decoder understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkType(pub u32);

impl LinkType {
    /// BSD loopback: 4-octet address family in the capturing host's byte order.
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    /// Raw IP; 12 and 14 are the values some systems wrote before 101 was assigned.
    pub const RAW: LinkType = LinkType(101);
    pub const RAW_OLD: LinkType = LinkType(12);
    pub const RAW_OLD2: LinkType = LinkType(14);
    /// OpenBSD loopback: address family in network byte order.
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);
}

/// A transport segment ready for the flow layer.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub proto: u8,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub payload: &'a [u8],
    /// The capture cut the payload short (snap length).
    pub truncated: bool,
    pub tcp: Option<TcpMeta>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpMeta {
    pub seq: u32,
    /// The acknowledgment number, when the ACK flag is set.
    pub ack: Option<u32>,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
}

/// Why a frame gave no segment. `Ignored` is not an anomaly (ARP, ICMP, ...).
#[derive(Debug, Clone)]
pub enum NetOutcome<'a> {
    Segment(Segment<'a>),
    /// A fragment was stored; the datagram is not complete yet.
    FragmentHeld,
    Ignored,
    Anomaly {
        layer: AnomalyLayer,
        kind: &'static str,
        detail: String,
    },
}

fn anomaly<'a>(
    layer: AnomalyLayer,
    kind: &'static str,
    detail: impl Into<String>,
) -> NetOutcome<'a> {
    NetOutcome::Anomaly {
        layer,
        kind,
        detail: detail.into(),
    }
}

/// BSD null/loop address families meaning IPv4 or IPv6 (AF_INET6 differs per OS).
fn family_to_ether_type(af: u32) -> Option<EtherType> {
    match af {
        2 => Some(EtherType::IPV4),
        10 | 24 | 28 | 30 => Some(EtherType::IPV6),
        _ => None,
    }
}

/// VLAN tags followed on one frame; past it the frame is reported, not guessed at.
const MAX_VLAN_TAGS: usize = 16;

/// Slices a frame down to the network layer.
fn slice_link(link: LinkType, data: &[u8]) -> Result<LaxSlicedPacket<'_>, (&'static str, String)> {
    let bad = |what: &str| ("link_malformed", what.to_string());
    match link {
        LinkType::ETHERNET => {
            // VLAN tags are taken off here: etherparse stops after three, and a frame with
            // more would vanish without a word (tshark decodes any number).
            let mut at = 12;
            let mut tags = 0;
            loop {
                let et = match data.get(at..at + 2) {
                    Some(b) => u16::from_be_bytes([b[0], b[1]]),
                    None => return Err(bad("Ethernet header cut")),
                };
                if !matches!(et, 0x8100 | 0x88a8 | 0x9100) {
                    return Ok(LaxSlicedPacket::from_ether_type(EtherType(et), &data[at + 2..]));
                }
                tags += 1;
                if tags > MAX_VLAN_TAGS {
                    return Err(("link_vlan_too_deep", format!("more than {MAX_VLAN_TAGS} VLAN tags")));
                }
                at += 4;
            }
        }
        LinkType::RAW
        | LinkType::RAW_OLD
        | LinkType::RAW_OLD2
        | LinkType::IPV4
        | LinkType::IPV6 => {
            LaxSlicedPacket::from_ip(data).map_err(|e| ("ip_malformed", e.to_string()))
        }
        LinkType::NULL | LinkType::LOOP => {
            let head: [u8; 4] = data
                .get(..4)
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| bad("loopback header cut"))?;
            let af = if link == LinkType::LOOP {
                u32::from_be_bytes(head)
            } else {
                // Host order of the machine that captured: try both.
                let le = u32::from_le_bytes(head);
                if le < 256 {
                    le
                } else {
                    u32::from_be_bytes(head)
                }
            };
            let et = family_to_ether_type(af)
                .ok_or_else(|| ("link_unsupported", format!("address family {af}")))?;
            Ok(LaxSlicedPacket::from_ether_type(et, &data[4..]))
        }
        LinkType::LINUX_SLL => {
            if data.len() < 16 {
                return Err(bad("SLL header cut"));
            }
            let et = EtherType(u16::from_be_bytes([data[14], data[15]]));
            Ok(LaxSlicedPacket::from_ether_type(et, &data[16..]))
        }
        LinkType::LINUX_SLL2 => {
            if data.len() < 20 {
                return Err(bad("SLL2 header cut"));
            }
            let et = EtherType(u16::from_be_bytes([data[0], data[1]]));
            Ok(LaxSlicedPacket::from_ether_type(et, &data[20..]))
        }
        other => Err(("link_unsupported", format!("link type {}", other.0))),
    }
}

/// Fragments of one datagram being put back together.
struct Reassembly {
    buf: IpDefragBuf,
    started: Timestamp,
    bytes: usize,
    src: IpAddr,
    dst: IpAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
}

/// Bounded IP defragmentation: at most `max_datagrams` in progress, each at most 64 KiB,
/// each dropped after `timeout_ns` of capture time.
pub struct Defragmenter {
    pending: Map<FragKey, Reassembly>,
    max_datagrams: usize,
    timeout_ns: i64,
    /// Reassembled payload of the last completed datagram (segments borrow from it).
    done: Vec<u8>,
}

/// Heap use of one fragment set, as counted against the caps.
const MAX_DATAGRAM: usize = 65_535;

pub struct FragmentExpired {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub bytes: usize,
}

impl Defragmenter {
    pub fn new(max_datagrams: usize, timeout_ns: i64) -> Self {
        Self {
            pending: Map::default(),
            max_datagrams,
            timeout_ns,
            done: Vec::new(),
        }
    }

    /// Takes the state out, leaving an empty pool with the same limits.
    pub fn take(&mut self) -> Self {
        let empty = Self::new(self.max_datagrams, self.timeout_ns);
        std::mem::replace(self, empty)
    }

    pub fn in_progress(&self) -> usize {
        self.pending.len()
    }

    /// Drops fragment sets older than the timeout; returns what was dropped.
    pub fn expire(&mut self, now: Timestamp) -> Vec<FragmentExpired> {
        let timeout = self.timeout_ns;
        let mut gone = Vec::new();
        self.pending.retain(|_, r| {
            let keep = now.0 - r.started.0 <= timeout;
            if !keep {
                gone.push(FragmentExpired {
                    src: r.src,
                    dst: r.dst,
                    bytes: r.bytes,
                });
            }
            keep
        });
        gone.sort_by_key(|g| (g.src, g.dst));
        gone
    }

    /// Adds one fragment; Some(payload) when the datagram is complete.
    fn add(
        &mut self,
        now: Timestamp,
        key: FragKey,
        offset: IpFragOffset,
        more: bool,
        payload: &[u8],
    ) -> Result<bool, (&'static str, String)> {
        if !self.pending.contains_key(&key) && self.pending.len() >= self.max_datagrams {
            return Err((
                "ip_frag_table_full",
                format!("{} datagrams already being reassembled", self.pending.len()),
            ));
        }
        let r = self.pending.entry(key).or_insert_with(|| Reassembly {
            buf: IpDefragBuf::new(IpNumber(key.proto), Vec::new(), Vec::new()),
            started: now,
            bytes: 0,
            src: key.src,
            dst: key.dst,
        });
        let offset_bytes = usize::from(offset.value()) * 8;
        if offset_bytes + payload.len() > MAX_DATAGRAM {
            self.pending.remove(&key);
            return Err((
                "ip_frag_overflow",
                format!("fragment ends at {} bytes", offset_bytes + payload.len()),
            ));
        }
        r.bytes += payload.len();
        if let Err(e) = r.buf.add(offset, more, payload) {
            self.pending.remove(&key);
            return Err(("ip_frag_inconsistent", e.to_string()));
        }
        if r.buf.is_complete() {
            if let Some(r) = self.pending.remove(&key) {
                let (data, _) = r.buf.take_bufs();
                self.done = data;
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn transport<'a>(
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    payload: &'a [u8],
    incomplete: bool,
) -> NetOutcome<'a> {
    match proto {
        PROTO_UDP => match UdpSlice::from_slice_lax(payload) {
            Ok(u) => {
                let h = u.to_header();
                let declared = usize::from(h.length).saturating_sub(8);
                let body = u.payload();
                NetOutcome::Segment(Segment {
                    proto,
                    src: Endpoint {
                        ip: src,
                        port: h.source_port,
                    },
                    dst: Endpoint {
                        ip: dst,
                        port: h.destination_port,
                    },
                    payload: body,
                    truncated: incomplete || body.len() < declared,
                    tcp: None,
                })
            }
            Err(e) => anomaly(AnomalyLayer::Udp, "udp_malformed", e.to_string()),
        },
        PROTO_TCP => match TcpSlice::from_slice(payload) {
            Ok(t) => NetOutcome::Segment(Segment {
                proto,
                src: Endpoint {
                    ip: src,
                    port: t.source_port(),
                },
                dst: Endpoint {
                    ip: dst,
                    port: t.destination_port(),
                },
                payload: t.payload(),
                truncated: incomplete,
                tcp: Some(TcpMeta {
                    seq: t.sequence_number(),
                    ack: t.ack().then(|| t.acknowledgment_number()),
                    syn: t.syn(),
                    fin: t.fin(),
                    rst: t.rst(),
                }),
            }),
            Err(e) => anomaly(AnomalyLayer::Tcp, "tcp_malformed", e.to_string()),
        },
        _ => NetOutcome::Ignored,
    }
}

/// The common frame (Ethernet II, Linux SLL or raw IP; IPv4 without fragmentation or IPv6
/// without extension headers; complete) read with etherparse's header slices. None sends
/// the frame to the general path, which handles everything else at several times the cost.
pub fn fast_path(link: LinkType, data: &[u8]) -> Option<Segment<'_>> {
    let ip = match link {
        LinkType::ETHERNET => {
            let eth = Ethernet2HeaderSlice::from_slice(data).ok()?;
            matches!(eth.ether_type(), EtherType::IPV4 | EtherType::IPV6)
                .then(|| &data[eth.slice().len()..])?
        }
        LinkType::LINUX_SLL => {
            let et = EtherType(u16::from_be_bytes([*data.get(14)?, *data.get(15)?]));
            matches!(et, EtherType::IPV4 | EtherType::IPV6).then(|| &data[16..])?
        }
        LinkType::RAW | LinkType::IPV4 | LinkType::IPV6 => data,
        _ => return None,
    };
    let (src, dst, proto, payload) = match ip.first()? >> 4 {
        4 => {
            let h = Ipv4HeaderSlice::from_slice(ip).ok()?;
            let total = usize::from(h.total_len());
            let hlen = h.slice().len();
            if h.is_fragmenting_payload() || total > ip.len() || total < hlen {
                return None;
            }
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                h.protocol().0,
                &ip[hlen..total],
            )
        }
        6 => {
            let h = Ipv6HeaderSlice::from_slice(ip).ok()?;
            let end = 40 + usize::from(h.payload_length());
            if end > ip.len() {
                return None;
            }
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                h.next_header().0,
                &ip[40..end],
            )
        }
        _ => return None,
    };
    match transport(proto, src, dst, payload, false) {
        NetOutcome::Segment(s) if !s.truncated => Some(s),
        _ => None,
    }
}

/// From a frame to a segment, for frames `fast_path` declined. Fragments are held in
/// `defrag`; the segment that completes a datagram borrows from the defragmenter, hence
/// the lifetime tie.
pub fn segment<'a>(
    link: LinkType,
    data: &'a [u8],
    now: Timestamp,
    defrag: &'a mut Defragmenter,
) -> NetOutcome<'a> {
    let sliced = match slice_link(link, data) {
        Ok(s) => s,
        Err((kind, detail)) => {
            let layer = if kind == "ip_malformed" {
                AnomalyLayer::Ip
            } else {
                AnomalyLayer::Link
            };
            return anomaly(layer, kind, detail);
        }
    };
    let (src, dst, ip_payload, frag) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            let p = v4.payload();
            let frag = h.is_fragmenting_payload().then(|| {
                (
                    u32::from(h.identification()),
                    h.fragments_offset(),
                    h.more_fragments(),
                )
            });
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                p.clone(),
                frag,
            )
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            let p = v6.payload();
            let exts = v6.extensions();
            let frag = v6_fragment(exts.first_header(), exts.slice());
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                p.clone(),
                frag,
            )
        }
        Some(_) => return NetOutcome::Ignored,
        None => {
            return match sliced.stop_err {
                Some((e, _)) => anomaly(AnomalyLayer::Ip, "ip_malformed", e.to_string()),
                None => NetOutcome::Ignored,
            };
        }
    };
    let proto = ip_payload.ip_number.0;
    if proto != PROTO_UDP && proto != PROTO_TCP {
        return NetOutcome::Ignored;
    }
    match frag {
        None => {
            // Prefer etherparse's transport slice when it parsed one.
            match &sliced.transport {
                Some(TransportSlice::Udp(_)) | Some(TransportSlice::Tcp(_)) | None => {
                    transport(proto, src, dst, ip_payload.payload, ip_payload.incomplete)
                }
                Some(_) => NetOutcome::Ignored,
            }
        }
        Some((id, offset, more)) => {
            if ip_payload.incomplete {
                return anomaly(
                    AnomalyLayer::Ip,
                    "ip_frag_truncated",
                    "fragment cut short by the capture",
                );
            }
            let key = FragKey {
                src,
                dst,
                id,
                proto,
            };
            match defrag.add(now, key, offset, more, ip_payload.payload) {
                Ok(true) => transport(proto, src, dst, &defrag.done, false),
                Ok(false) => NetOutcome::FragmentHeld,
                Err((kind, detail)) => anomaly(AnomalyLayer::Ip, kind, detail),
            }
        }
    }
}

/// The fragment header of an IPv6 extension chain, if it fragments. Walked here with checked
/// slices: etherparse 0.21's extension iterator trusts the chain to be complete, and when
/// lax parsing stopped at a broken header it reads past the end of the packet (found by
/// fuzzing: a heap read overflow under AddressSanitizer).
fn v6_fragment(first: Option<etherparse::IpNumber>, mut rest: &[u8]) -> Option<(u32, etherparse::IpFragOffset, bool)> {
    use etherparse::{ip_number, IpAuthHeaderSlice, Ipv6FragmentHeaderSlice, Ipv6RawExtHeaderSlice};
    let mut next = first?;
    let mut frag = None;
    for _ in 0..16 {
        let (len, following) = match next {
            ip_number::IPV6_FRAG => {
                let Ok(f) = Ipv6FragmentHeaderSlice::from_slice(rest) else { break };
                if f.is_fragmenting_payload() {
                    let h = f.to_header();
                    frag = Some((h.identification, h.fragment_offset, h.more_fragments));
                }
                (f.slice().len(), f.next_header())
            }
            ip_number::AUTH => {
                let Ok(a) = IpAuthHeaderSlice::from_slice(rest) else { break };
                (a.slice().len(), a.next_header())
            }
            n if Ipv6RawExtHeaderSlice::header_type_supported(n) => {
                let Ok(r) = Ipv6RawExtHeaderSlice::from_slice(rest) else { break };
                (r.slice().len(), r.next_header())
            }
            _ => break,
        };
        let Some(r) = rest.get(len..) else { break };
        rest = r;
        next = following;
    }
    frag
}

#[cfg(test)]
mod v6_tests {
    use super::v6_fragment;
    use etherparse::ip_number;

    /// A fragment header (RFC 8200 4.5): next header, reserved, offset/flags, identification.
    fn frag(next: u8, offset_units: u16, more: bool, id: u32) -> Vec<u8> {
        let of = (offset_units << 3) | u16::from(more);
        let mut v = vec![next, 0];
        v.extend_from_slice(&of.to_be_bytes());
        v.extend_from_slice(&id.to_be_bytes());
        v
    }

    #[test]
    fn finds_the_fragment_header_after_other_extensions() {
        let mut chain = vec![ip_number::IPV6_FRAG.0, 0, 1, 4, 0, 0, 0, 0]; // destination options, 8 bytes
        chain.extend(frag(17, 0, true, 0xdead_beef));
        let f = v6_fragment(Some(ip_number::IPV6_DEST_OPTIONS), &chain).expect("fragment");
        assert_eq!((f.0, f.1.value(), f.2), (0xdead_beef, 0, true));
        // An unfragmented fragment header (offset 0, no more fragments) is not fragmentation.
        assert!(v6_fragment(Some(ip_number::IPV6_FRAG), &frag(17, 0, false, 1)).is_none());
    }

    #[test]
    fn broken_chains_end_the_walk_without_reading_past_the_packet() {
        // Destination options claiming 16 bytes in an 8-byte packet.
        let short = [ip_number::IPV6_FRAG.0, 1, 0, 0, 0, 0, 0, 0];
        assert!(v6_fragment(Some(ip_number::IPV6_DEST_OPTIONS), &short).is_none());
        // A chain that announces a fragment header and ends.
        assert!(v6_fragment(Some(ip_number::IPV6_FRAG), &[]).is_none());
        assert!(v6_fragment(Some(ip_number::IPV6_FRAG), &[17, 0, 0]).is_none());
        // The fragment header found before the chain breaks still counts.
        let mut chain = frag(ip_number::IPV6_ROUTE.0, 2, false, 7);
        chain.extend_from_slice(&[17, 9]);
        assert_eq!(v6_fragment(Some(ip_number::IPV6_FRAG), &chain).map(|f| f.0), Some(7));
    }
}
