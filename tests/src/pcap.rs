//! Builds capture files for tests and the benchmark: pcap (micro or nanosecond) and pcapng
//! with several interfaces, frames on any supported link type, and the Kerberos messages
//! found in real captures.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use etherparse::{PacketBuilder, TransportSlice};
use pcap_parser::{PcapBlockOwned, PcapError};

/// One frame to write: capture time in nanoseconds, link type, bytes.
#[derive(Debug, Clone)]
pub struct Frame {
    pub ts_ns: i64,
    pub link: u32,
    pub data: Vec<u8>,
}

/// Classic pcap, little endian. `nanos` selects the nanosecond magic.
pub fn pcap(frames: &[Frame], link: u32, nanos: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
    out.extend_from_slice(&magic.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&262_144u32.to_le_bytes());
    out.extend_from_slice(&link.to_le_bytes());
    for f in frames {
        let div = if nanos { 1 } else { 1000 };
        out.extend_from_slice(&((f.ts_ns / 1_000_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(((f.ts_ns % 1_000_000_000) / div) as u32).to_le_bytes());
        out.extend_from_slice(&(f.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&f.data);
    }
    out
}

fn ng_block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let pad = (4 - body.len() % 4) % 4;
    let len = (12 + body.len() + pad) as u32;
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(body);
    out.extend(std::iter::repeat_n(0u8, pad));
    out.extend_from_slice(&len.to_le_bytes());
}

/// pcapng with one interface per distinct link type in `frames`, each with its own
/// timestamp resolution from `tsresol` (the if_tsresol option byte, e.g. 6 or 9).
pub fn pcapng(frames: &[Frame], tsresol: &[(u32, u8)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    ng_block(&mut out, 0x0a0d_0d0a, &shb);
    let mut ifaces: Vec<u32> = Vec::new();
    for f in frames {
        if !ifaces.contains(&f.link) {
            ifaces.push(f.link);
            let mut idb = Vec::new();
            idb.extend_from_slice(&(f.link as u16).to_le_bytes());
            idb.extend_from_slice(&0u16.to_le_bytes());
            idb.extend_from_slice(&262_144u32.to_le_bytes());
            if let Some((_, r)) = tsresol.iter().find(|(l, _)| *l == f.link) {
                idb.extend_from_slice(&9u16.to_le_bytes());
                idb.extend_from_slice(&1u16.to_le_bytes());
                idb.extend_from_slice(&[*r, 0, 0, 0]);
            }
            idb.extend_from_slice(&[0, 0, 0, 0]);
            ng_block(&mut out, 1, &idb);
        }
    }
    for f in frames {
        let iface = ifaces.iter().position(|l| *l == f.link).unwrap_or(0);
        let res = tsresol
            .iter()
            .find(|(l, _)| *l == f.link)
            .map(|(_, r)| *r)
            .unwrap_or(6);
        let units = (f.ts_ns as i128 * 10i128.pow(u32::from(res)) / 1_000_000_000) as u64;
        let mut epb = Vec::new();
        epb.extend_from_slice(&(iface as u32).to_le_bytes());
        epb.extend_from_slice(&((units >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(units as u32).to_le_bytes());
        epb.extend_from_slice(&(f.data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(f.data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&f.data);
        let pad = (4 - f.data.len() % 4) % 4;
        epb.extend(std::iter::repeat_n(0u8, pad));
        epb.extend_from_slice(&[0, 0, 0, 0]);
        ng_block(&mut out, 6, &epb);
    }
    out
}

/// A UDP or TCP packet as raw IPv4/IPv6 (no link header).
pub fn ip_packet(
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    tcp: Option<(u32, u32, &str)>,
    payload: &[u8],
) -> Vec<u8> {
    let b = match (src.0, dst.0) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed address families"),
    };
    let mut buf = Vec::new();
    match tcp {
        None => {
            let b = b.udp(src.1, dst.1);
            b.write(&mut buf, payload).expect("writes");
        }
        Some((seq, ack, flags)) => {
            let mut b = b.tcp(src.1, dst.1, seq, 64_240);
            if flags.contains('S') {
                b = b.syn();
            }
            if flags.contains('A') {
                b = b.ack(ack);
            }
            if flags.contains('F') {
                b = b.fin();
            }
            if flags.contains('R') {
                b = b.rst();
            }
            if flags.contains('P') {
                b = b.psh();
            }
            b.write(&mut buf, payload).expect("writes");
        }
    }
    buf
}

pub const LINKTYPE_NULL: u32 = 0;
pub const LINKTYPE_ETHERNET: u32 = 1;
pub const LINKTYPE_RAW: u32 = 101;
pub const LINKTYPE_LINUX_SLL: u32 = 113;
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

/// Wraps a raw IP packet in a link-layer header. `vlans` adds 802.1Q tags (Ethernet only).
pub fn link_frame(link: u32, ip: &[u8], vlans: &[u16]) -> Vec<u8> {
    let v6 = ip.first().is_some_and(|b| b >> 4 == 6);
    let et: u16 = if v6 { 0x86dd } else { 0x0800 };
    let mut f = Vec::new();
    match link {
        LINKTYPE_ETHERNET => {
            f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
            for v in vlans {
                f.extend_from_slice(&0x8100u16.to_be_bytes());
                f.extend_from_slice(&(v & 0x0fff).to_be_bytes());
            }
            f.extend_from_slice(&et.to_be_bytes());
        }
        LINKTYPE_LINUX_SLL => {
            f.extend_from_slice(&[0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
            f.extend_from_slice(&et.to_be_bytes());
        }
        LINKTYPE_LINUX_SLL2 => {
            f.extend_from_slice(&et.to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
        }
        LINKTYPE_NULL => {
            let af: u32 = if v6 { 30 } else { 2 };
            f.extend_from_slice(&af.to_le_bytes());
        }
        LINKTYPE_RAW => {}
        other => panic!("link type {other} not built here"),
    }
    f.extend_from_slice(ip);
    f
}

/// IPv4 fragments of a UDP datagram, each carrying at most `chunk` bytes of IP payload
/// (a multiple of 8).
pub fn ipv4_udp_fragments(
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    payload: &[u8],
    chunk: usize,
    id: u16,
) -> Vec<Vec<u8>> {
    let whole = ip_packet(src, dst, None, payload);
    let ihl = usize::from(whole[0] & 0x0f) * 4;
    let body = &whole[ihl..];
    let mut out = Vec::new();
    for (i, part) in body.chunks(chunk).enumerate() {
        let more = (i + 1) * chunk < body.len();
        let mut h = whole[..ihl].to_vec();
        let total = (ihl + part.len()) as u16;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[4..6].copy_from_slice(&id.to_be_bytes());
        let off = ((i * chunk / 8) as u16) | if more { 0x2000 } else { 0 };
        h[6..8].copy_from_slice(&off.to_be_bytes());
        h[10..12].copy_from_slice(&[0, 0]);
        let sum = ipv4_checksum(&h);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        h.extend_from_slice(part);
        out.push(h);
    }
    out
}

fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut s: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// (request, reply) message bytes of every Kerberos exchange in the captures under `dir`,
/// in capture order: UDP pairs by port, and the first record each way of each TCP connection.
pub fn real_exchanges(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for path in crate::captures_in(dir) {
        let mut udp_pending: HashMap<(u16, u16), Vec<u8>> = HashMap::new();
        let mut tcp: HashMap<(u16, bool), Vec<u8>> = HashMap::new();
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        let Ok(mut r) = pcap_parser::create_reader(1 << 20, file) else {
            continue;
        };
        let mut link = 1u32;
        loop {
            match r.next() {
                Ok((off, block)) => {
                    if let PcapBlockOwned::LegacyHeader(h) = &block {
                        link = h.network.0 as u32;
                    }
                    if let PcapBlockOwned::Legacy(b) = block {
                        let sliced = if link == 1 {
                            etherparse::SlicedPacket::from_ethernet(b.data)
                        } else {
                            etherparse::SlicedPacket::from_linux_sll(b.data)
                        };
                        match sliced.ok().and_then(|s| s.transport) {
                            Some(TransportSlice::Udp(u)) => {
                                let (sp, dp) = (u.source_port(), u.destination_port());
                                if dp == 88 {
                                    udp_pending.insert((sp, dp), u.payload().to_vec());
                                } else if sp == 88 {
                                    if let Some(req) = udp_pending.remove(&(dp, sp)) {
                                        out.push((req, u.payload().to_vec()));
                                    }
                                }
                            }
                            Some(TransportSlice::Tcp(t)) if !t.payload().is_empty() => {
                                let to_kdc = t.destination_port() == 88;
                                let client = if to_kdc {
                                    t.source_port()
                                } else {
                                    t.destination_port()
                                };
                                tcp.entry((client, to_kdc))
                                    .or_default()
                                    .extend_from_slice(t.payload());
                            }
                            _ => {}
                        }
                    }
                    r.consume(off);
                }
                Err(PcapError::Eof) => break,
                Err(PcapError::Incomplete(_)) => {
                    if r.refill().is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let mut keys: Vec<u16> = tcp.keys().filter(|k| k.1).map(|k| k.0).collect();
        keys.sort();
        for k in keys {
            let (Some(req), Some(rep)) = (tcp.get(&(k, true)), tcp.get(&(k, false))) else {
                continue;
            };
            if let (Some(a), Some(b)) = (first_record(req), first_record(rep)) {
                out.push((a, b));
            }
        }
    }
    out
}

fn first_record(b: &[u8]) -> Option<Vec<u8>> {
    let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
    b.get(4..4 + len).map(<[u8]>::to_vec)
}
