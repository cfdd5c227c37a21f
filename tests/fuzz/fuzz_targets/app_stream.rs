//! TLS and HTTP over TCP: arbitrary client and server byte streams, cut into segments of a
//! size the input chooses, on the TLS port, the HTTP port or an unconfigured port (TLS
//! recognised by content). Nothing may panic, every event serialises, memory stays under
//! its cap, and on the TLS port the TLS events do not depend on how the streams were cut.
#![no_main]
use std::net::{IpAddr, Ipv4Addr};

use kcd_decode::{Config, Decoder, LinkType, Packet};
use kcd_schema::Timestamp;
use kcd_tests::pcap::ip_packet;
use libfuzzer_sys::fuzz_target;

const CAP: usize = 1 << 20;

fn run(port: u16, client: &[u8], server: &[u8], step: usize) -> Vec<String> {
    let cfg = Config { max_reassembly_memory: CAP, max_http_body_kept: 64 * 1024, max_tls_handshake: 16 * 1024, ..Config::default() };
    let mut dec = Decoder::new(cfg);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut sink = |e: &kcd_schema::Event<'_>| {
        buf.clear();
        e.write_json(&mut buf);
        if e.tls.is_some() {
            out.push(String::from_utf8_lossy(&buf).replace(|c: char| c.is_ascii_digit(), ""));
        }
    };
    let c = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 50000);
    let s = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), port);
    let (mut cseq, mut sseq) = (1000u32, 9000u32);
    let mut frame = 0u64;
    let mut send = |dec: &mut Decoder, from_client: bool, data: &[u8], flags: &str, sink: &mut dyn kcd_decode::Sink| {
        frame += 1;
        let (src, dst, seq, ack) = if from_client { (c, s, cseq, sseq) } else { (s, c, sseq, cseq) };
        let ip = ip_packet(src, dst, Some((seq, ack, flags)), data);
        dec.packet(&Packet { ts: Timestamp(frame as i64 * 1000), link: LinkType::RAW, data: &ip, frame }, sink);
        let n = data.len() as u32 + u32::from(flags.contains('S') || flags.contains('F'));
        if from_client { cseq = cseq.wrapping_add(n) } else { sseq = sseq.wrapping_add(n) }
    };
    send(&mut dec, true, &[], "S", &mut sink);
    send(&mut dec, false, &[], "SA", &mut sink);
    // Each direction whole before the other: only the cutting differs between two runs,
    // not the order in which the two directions' bytes arrive.
    for (from_client, stream) in [(true, client), (false, server)] {
        for d in stream.chunks(step) {
            send(&mut dec, from_client, d, "AP", &mut sink);
            assert!(dec.reassembly_memory() <= CAP + 2 * (step + 16 * 1024 + 64 * 1024 + 40 * 1024), "memory {}", dec.reassembly_memory());
        }
    }
    send(&mut dec, true, &[], "FA", &mut sink);
    send(&mut dec, false, &[], "FA", &mut sink);
    dec.finish(&mut sink);
    out
}

fuzz_target!(|data: &[u8]| {
    let [mode, seed, split_hi, split_lo, rest @ ..] = data else { return };
    let port = [443, 80, 4433][usize::from(*mode % 3)];
    let split = (usize::from(*split_hi) << 8 | usize::from(*split_lo)).min(rest.len());
    let (client, server) = rest.split_at(split);
    let whole = run(port, client, server, 1500);
    let cut = run(port, client, server, usize::from(*seed % 97) + 1);
    // On an unconfigured port TLS is recognised by the first data segment of a connection
    // (as Zeek's DPD looks at the start): how the stream is cut decides where segments
    // start, so the property holds on the configured ports only.
    if port != 4433 {
        assert_eq!(whole, cut, "TLS events depend on segmentation");
    }
});
