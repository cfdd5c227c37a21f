//! Writes the benchmark capture: real Kerberos exchanges from captures/ replayed between
//! tens of thousands of clients and a few KDCs, over UDP and over real TCP connections.
//!
//!     kcd-benchgen OUT.pcap [EXCHANGES]
//!
//!     kcd-benchgen --flood tcp-connections|udp-clients|ooo-one-flow|ooo-many-flows OUT.pcap [N]
//!
//!     kcd-benchgen --mixed OUT.pcap [PACKETS]
//!
//! `--mixed` (PACKETS, default 1,000,000) is the whole path of a gateway host: the Kerberos
//! exchanges above, TLS handshakes with client certificates (captures/tls), CRL fetches
//! (captures/http/crl-fetches.pcap) and ActiveSync requests, with Negotiate tokens and
//! without (captures/http/eas.pcap, captures/krb5/samba-lab/*_http.pcap). Every TCP
//! connection of those captures is replayed as recorded (sequence numbers, flags,
//! payloads), re-addressed to one of 30,000 devices and a fresh client port, so that every
//! flow is distinct.
//!
//! The floods are the incidents the replay must survive at full speed: `tcp-connections`,
//! N (1,000,000) connections to port 88 that each send a SYN and one AS-REQ segment and
//! are never answered (a dead KDC, clients retrying from new ports); `udp-clients`, N
//! (1,000,000) clients whose UDP AS-REQ is never answered; `ooo-one-flow`, one connection
//! of N (262,143) one-byte segments sent behind a one-byte hole, in reverse order;
//! `ooo-many-flows`, 4,000 connections of N (1,000) one-byte segments each behind a hole.
//!
//! Deterministic: the same arguments always give the same bytes. Each exchange is one
//! request and its reply (an AS or TGS exchange, or a KRB-ERROR), taken from the captures.
//! About half go over TCP, each in its own connection as MIT and Windows clients do:
//! SYN, SYN-ACK, ACK, the record-marked request in segments of at most 1460 bytes each
//! acknowledged, the reply likewise, then FIN/ACK both ways.

#![allow(clippy::unwrap_used)] // a generator: any failure is fatal and reported by the panic

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::Path;

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use kcd_tests::pcap::real_exchanges;

const MSS: usize = 1460;
const CLIENTS: u32 = 40_000;
const KDCS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 200, 0, 1),
    Ipv4Addr::new(10, 200, 0, 2),
    Ipv4Addr::new(10, 200, 0, 3),
];

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Writer<W: Write> {
    out: W,
    ts_us: u64,
    packets: u64,
    messages: u64,
}

impl<W: Write> Writer<W> {
    fn header(&mut self) {
        let mut h = Vec::new();
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&65_535u32.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
        self.out.write_all(&h).unwrap();
    }

    fn frame(&mut self, data: &[u8], gap_us: u64) {
        self.ts_us += gap_us;
        let mut rec = Vec::with_capacity(16);
        rec.extend_from_slice(&((self.ts_us / 1_000_000) as u32).to_le_bytes());
        rec.extend_from_slice(&((self.ts_us % 1_000_000) as u32).to_le_bytes());
        rec.extend_from_slice(&(data.len() as u32).to_le_bytes());
        rec.extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.out.write_all(&rec).unwrap();
        self.out.write_all(data).unwrap();
        self.packets += 1;
    }

    fn udp(&mut self, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8], gap_us: u64) {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src.0.octets(), dst.0.octets(), 64)
            .udp(src.1, dst.1);
        let mut buf = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut buf, payload).unwrap();
        self.frame(&buf, gap_us);
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp(
        &mut self,
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
        seq: u32,
        ack: u32,
        flags: &str,
        payload: &[u8],
        gap_us: u64,
    ) {
        let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src.0.octets(), dst.0.octets(), 64)
            .tcp(src.1, dst.1, seq, 64_240);
        if flags.contains('S') {
            b = b.syn();
        }
        if flags.contains('A') {
            b = b.ack(ack);
        }
        if flags.contains('F') {
            b = b.fin();
        }
        if flags.contains('P') {
            b = b.psh();
        }
        if flags.contains('R') {
            b = b.rst();
        }
        let mut buf = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut buf, payload).unwrap();
        self.frame(&buf, gap_us);
    }

    /// One record-marked message in MSS-sized segments, each acknowledged; returns the
    /// sender's next sequence number.
    fn send(
        &mut self,
        from: (Ipv4Addr, u16),
        to: (Ipv4Addr, u16),
        mut seq: u32,
        ack: u32,
        msg: &[u8],
    ) -> u32 {
        let mut stream = (msg.len() as u32).to_be_bytes().to_vec();
        stream.extend_from_slice(msg);
        for chunk in stream.chunks(MSS) {
            self.tcp(from, to, seq, ack, "PA", chunk, 15);
            seq = seq.wrapping_add(chunk.len() as u32);
            self.tcp(to, from, ack, seq, "A", &[], 10);
        }
        self.messages += 1;
        seq
    }

    /// One connection carrying one request and its reply.
    fn tcp_exchange(
        &mut self,
        c: (Ipv4Addr, u16),
        s: (Ipv4Addr, u16),
        req: &[u8],
        rep: &[u8],
        rng: &mut Rng,
    ) {
        let (mut cs, mut ss) = (rng.next() as u32, rng.next() as u32);
        self.tcp(c, s, cs, 0, "S", &[], 3);
        cs = cs.wrapping_add(1);
        self.tcp(s, c, ss, cs, "SA", &[], 40);
        ss = ss.wrapping_add(1);
        self.tcp(c, s, cs, ss, "A", &[], 20);
        cs = self.send(c, s, cs, ss, req);
        ss = self.send(s, c, ss, cs, rep);
        self.tcp(c, s, cs, ss, "FA", &[], 20);
        self.tcp(s, c, ss, cs.wrapping_add(1), "A", &[], 10);
        self.tcp(s, c, ss, cs.wrapping_add(1), "FA", &[], 5);
        self.tcp(c, s, cs.wrapping_add(1), ss.wrapping_add(1), "A", &[], 10);
    }
}

fn client_addr(n: u64) -> (Ipv4Addr, u16) {
    let ip = Ipv4Addr::new(10, 64 + ((n >> 16) & 0x3f) as u8, (n >> 8) as u8, n as u8);
    (ip, 1024 + ((n >> 22) % 60_000) as u16)
}

fn flood(kind: &str, out_path: &str, n: Option<u64>) {
    let real = real_exchanges(&kcd_tests::repo_root().join("captures").join("krb5"));
    let req = real
        .iter()
        .map(|(q, _)| q)
        .find(|q| q.first() == Some(&0x6a) && q.len() < 1400)
        .expect("an AS-REQ among the captures");
    let mut w = Writer {
        out: BufWriter::with_capacity(1 << 20, File::create(Path::new(out_path)).unwrap()),
        ts_us: 1_795_400_000_000_000,
        packets: 0,
        messages: 0,
    };
    w.header();
    let kdc = (KDCS[0], 88);
    let mut record = (req.len() as u32).to_be_bytes().to_vec();
    record.extend_from_slice(req);
    match kind {
        "tcp-connections" => {
            for i in 0..n.unwrap_or(1_000_000) {
                let c = client_addr(i);
                let seq = (i as u32).wrapping_mul(2_654_435_761);
                // 100,000 new connections a second: a retry storm, for 10 s.
                w.tcp(c, kdc, seq, 0, "S", &[], 4);
                w.tcp(c, kdc, seq.wrapping_add(1), 0, "P", &record, 6);
                w.messages += 1;
            }
        }
        "udp-clients" => {
            for i in 0..n.unwrap_or(1_000_000) {
                w.udp(client_addr(i), kdc, req, 10);
                w.messages += 1;
            }
        }
        "ooo-one-flow" | "ooo-many-flows" => {
            let (flows, segs) = if kind == "ooo-one-flow" {
                (1, n.unwrap_or(262_143))
            } else {
                (4_000, n.unwrap_or(1_000))
            };
            for f in 0..flows {
                let c = client_addr(f);
                w.tcp(c, kdc, 0, 0, "S", &[], 2);
                // Byte 1 never comes; bytes 2.. arrive one at a time, last first, so each
                // new segment lands in front of everything held.
                for j in (0..segs).rev() {
                    w.tcp(c, kdc, 2 + j as u32, 0, "P", &[0x30], 1);
                }
            }
        }
        other => {
            eprintln!("unknown flood {other}: tcp-connections, udp-clients, ooo-one-flow, ooo-many-flows");
            std::process::exit(2);
        }
    }
    w.out.flush().unwrap();
    eprintln!("{out_path}: {kind} flood, {} packets", w.packets);
}

/// One packet of a recorded TCP connection, without its addresses.
struct Seg {
    gap_us: u64,
    from_client: bool,
    seq: u32,
    ack: u32,
    flags: String,
    payload: Vec<u8>,
}

struct Conn {
    server_port: u16,
    segs: Vec<Seg>,
}

/// The TCP connections of a capture (Ethernet, IPv4), in the order they start; the client
/// is the side that sent the SYN.
fn connections(path: &Path) -> Vec<Conn> {
    use pcap_parser::traits::PcapReaderIterator;
    let file = File::open(path).unwrap();
    let mut r = pcap_parser::LegacyPcapReader::new(65_536, file).unwrap();
    let mut by_key: Vec<((u16, u16), Conn, u64)> = Vec::new();
    loop {
        match r.next() {
            Ok((off, block)) => {
                if let pcap_parser::PcapBlockOwned::Legacy(b) = block {
                    let ts = u64::from(b.ts_sec) * 1_000_000 + u64::from(b.ts_usec);
                    if let Ok(p) = SlicedPacket::from_ethernet(b.data) {
                        if let Some(TransportSlice::Tcp(t)) = &p.transport {
                            let (sp, dp) = (t.source_port(), t.destination_port());
                            let key = (sp.min(dp), sp.max(dp));
                            if t.syn() && !t.ack() {
                                by_key.push((key, Conn { server_port: dp, segs: Vec::new() }, ts));
                            }
                            if let Some((_, c, last)) = by_key.iter_mut().rev().find(|(k, _, _)| *k == key) {
                                let mut flags = String::new();
                                for (on, f) in [(t.syn(), 'S'), (t.ack(), 'A'), (t.fin(), 'F'), (t.psh(), 'P'), (t.rst(), 'R')] {
                                    if on {
                                        flags.push(f);
                                    }
                                }
                                c.segs.push(Seg {
                                    // Idle time in the lab (a person typing) is not traffic.
                                    gap_us: ts.saturating_sub(*last).min(2_000),
                                    from_client: dp == c.server_port,
                                    seq: t.sequence_number(),
                                    ack: t.acknowledgment_number(),
                                    flags,
                                    payload: t.payload().to_vec(),
                                });
                                *last = ts;
                            }
                        }
                    }
                }
                r.consume(off);
            }
            Err(pcap_parser::PcapError::Eof) => break,
            Err(pcap_parser::PcapError::Incomplete(_)) => r.refill().unwrap(),
            Err(e) => panic!("{}: {e:?}", path.display()),
        }
    }
    by_key.into_iter().map(|(_, c, _)| c).filter(|c| !c.segs.is_empty()).collect()
}

fn mixed(out_path: &str, target: u64) {
    let root = kcd_tests::repo_root().join("captures");
    let real = real_exchanges(&root.join("krb5"));
    let load = |files: &[&str]| -> Vec<Conn> { files.iter().flat_map(|f| connections(&root.join(f))).collect() };
    let tls = load(&["tls/tls12-client-certs.pcap", "tls/tls13.pcap"]);
    let crl = load(&["http/crl-fetches.pcap"]);
    let mut eas = load(&["http/eas.pcap"]);
    for e in std::fs::read_dir(root.join("krb5/samba-lab")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with("_http.pcap") && !name.starts_with("ok_http.") {
            eas.extend(connections(&e.path()));
        }
    }
    eas.retain(|c| c.server_port == 80);
    assert!(!tls.is_empty() && !crl.is_empty() && !eas.is_empty(), "captures missing");
    const DEVICES: u64 = 30_000;
    let gateway = (Ipv4Addr::new(10, 201, 0, 1), 0);
    let cdp = (Ipv4Addr::new(10, 202, 0, 1), 0);
    let exchange = (Ipv4Addr::new(10, 203, 0, 1), 0);
    let mut rng = Rng(0x6d69_7865_645f_6263);
    let mut w = Writer {
        out: BufWriter::with_capacity(1 << 20, File::create(Path::new(out_path)).unwrap()),
        ts_us: 1_795_400_000_000_000,
        packets: 0,
        messages: 0,
    };
    w.header();
    let mut counts = [0u64; 4];
    let mut flows = 0u64;
    while w.packets < target {
        let device = rng.below(DEVICES);
        let ip = Ipv4Addr::new(10, 128 + (device >> 16) as u8, (device >> 8) as u8, device as u8);
        // A fresh port per flow of a device: no two flows share a 4-tuple.
        let port = 1024 + ((flows / DEVICES) % 60_000) as u16 + (device % 7) as u16;
        flows += 1;
        let c = (ip, port);
        let kind = rng.below(100);
        let (conns, server, k) = match kind {
            0..40 => {
                let (req, rep) = &real[rng.below(real.len() as u64) as usize];
                let s = (KDCS[rng.below(KDCS.len() as u64) as usize], 88);
                if req.len() + rep.len() > 1400 || rng.below(2) == 0 {
                    w.tcp_exchange(c, s, req, rep, &mut rng);
                } else {
                    w.udp(c, s, req, 7);
                    w.udp(s, c, rep, 350);
                    w.messages += 2;
                }
                counts[0] += 1;
                continue;
            }
            40..70 => (&tls, gateway, 1),
            70..80 => (&crl, cdp, 2),
            _ => (&eas, exchange, 3),
        };
        let conn = &conns[rng.below(conns.len() as u64) as usize];
        let s = (server.0, conn.server_port);
        for seg in &conn.segs {
            let (from, to) = if seg.from_client { (c, s) } else { (s, c) };
            w.tcp(from, to, seg.seq, seg.ack, &seg.flags, &seg.payload, seg.gap_us.max(1));
        }
        counts[k] += 1;
    }
    w.out.flush().unwrap();
    eprintln!(
        "{out_path}: {} packets: {} Kerberos exchanges ({} messages), {} TLS connections, {} CRL fetch connections, {} ActiveSync connections, from {DEVICES} device addresses",
        w.packets, counts[0], w.messages, counts[1], counts[2], counts[3]
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--mixed") {
        let Some(out) = args.get(2) else {
            eprintln!("usage: kcd-benchgen --mixed OUT.pcap [PACKETS]");
            std::process::exit(2);
        };
        mixed(out, args.get(3).and_then(|n| n.parse().ok()).unwrap_or(1_000_000));
        return;
    }
    if args.get(1).map(String::as_str) == Some("--flood") {
        let (Some(kind), Some(out)) = (args.get(2), args.get(3)) else {
            eprintln!("usage: kcd-benchgen --flood KIND OUT.pcap [N]");
            std::process::exit(2);
        };
        flood(kind, out, args.get(4).and_then(|n| n.parse().ok()));
        return;
    }
    let Some(out_path) = args.get(1) else {
        eprintln!("usage: kcd-benchgen OUT.pcap [EXCHANGES]  (default 136500 exchanges = about 273,000 messages)");
        std::process::exit(2);
    };
    let exchanges: u64 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(136_500);
    let real = real_exchanges(&kcd_tests::repo_root().join("captures").join("krb5"));
    assert!(
        !real.is_empty(),
        "no Kerberos exchanges found under captures/"
    );
    let mut rng = Rng(0x6b63_6473_636f_7065);
    let mut w = Writer {
        out: BufWriter::with_capacity(1 << 20, File::create(Path::new(out_path)).unwrap()),
        ts_us: 1_795_400_000_000_000,
        packets: 0,
        messages: 0,
    };
    w.header();
    // Messages too large for one UDP datagram go over TCP, as real clients send them. Of
    // the rest, enough go over TCP too that about 51% of exchanges are TCP connections,
    // which makes about a million packets for 273,000 messages.
    let big = |req: &[u8], rep: &[u8]| req.len() + rep.len() > 1400;
    let big_share = real.iter().filter(|(a, b)| big(a, b)).count() as f64 / real.len() as f64;
    let small_tcp_percent =
        (((0.51 - big_share) / (1.0 - big_share)).max(0.0) * 100.0).round() as u64;
    let mut tcp_exchanges = 0u64;
    for i in 0..exchanges {
        let (req, rep) = &real[rng.below(real.len() as u64) as usize];
        let n = (i * 7919) % u64::from(CLIENTS);
        let client = Ipv4Addr::new(10, (n >> 16) as u8 + 1, (n >> 8) as u8, n as u8);
        let c = (client, 1024 + rng.below(60_000) as u16);
        let s = (KDCS[rng.below(KDCS.len() as u64) as usize], 88);
        if big(req, rep) || rng.below(100) < small_tcp_percent {
            w.tcp_exchange(c, s, req, rep, &mut rng);
            tcp_exchanges += 1;
        } else {
            w.udp(c, s, req, 7);
            w.udp(s, c, rep, 350);
            w.messages += 2;
        }
    }
    w.out.flush().unwrap();
    eprintln!(
        "{out_path}: {} packets, {} Kerberos messages in {exchanges} exchanges ({tcp_exchanges} over TCP) drawn from {} real exchanges, {CLIENTS} client addresses, {} KDCs",
        w.packets,
        w.messages,
        real.len(),
        KDCS.len()
    );
}
