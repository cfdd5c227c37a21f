//! Hostile and huge input: floods of new connections and clients, out-of-order floods,
//! anomaly amplification, captures cut anywhere, odd pcap and pcapng files. Each test was
//! written against a defect the replay had; the floods are scaled down (the full-size ones
//! are in tests/bench/replay).

use std::io::Cursor;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use kcd_decode::{Config, Decoder, LinkType, Packet, Stats};
use kcd_schema::Timestamp;
use kcd_tests::pcap::*;
use serde_json::Value;

const NS: i64 = 1_795_400_000_000_000_000;

fn as_req() -> Vec<u8> {
    real_exchanges(&kcd_tests::repo_root().join("captures/krb5/mit"))
        .into_iter()
        .map(|(q, _)| q)
        .find(|q| q.first() == Some(&0x6a))
        .expect("an AS-REQ")
}

fn exchange() -> (Vec<u8>, Vec<u8>) {
    real_exchanges(&kcd_tests::repo_root().join("captures/krb5/mit"))
        .into_iter()
        .find(|(q, _)| q.first() == Some(&0x6a))
        .expect("an AS exchange")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn replay(bytes: &[u8], cfg: Config) -> (Vec<Value>, Stats) {
    let mut dec = Decoder::new(cfg);
    let mut events = Vec::new();
    let mut sink = |e: &kcd_schema::Event<'_>| events.push(serde_json::to_value(e).expect("json"));
    kcd_capture::replay_reader(Cursor::new(bytes.to_vec()), "t.pcap", &mut dec, &mut sink)
        .expect("a capture");
    dec.finish(&mut sink);
    (events, dec.stats().clone())
}

fn diagnose(bytes: &[u8]) -> Vec<kcd_schema::Finding> {
    let mut dec = Decoder::new(Config::default());
    let mut corr = kcd_correlate::Correlator::new(kcd_correlate::Config::default());
    let mut sink = |e: &kcd_schema::Event<'_>| corr.event(e);
    kcd_capture::replay_reader(Cursor::new(bytes.to_vec()), "t.pcap", &mut dec, &mut sink)
        .expect("a capture");
    dec.finish(&mut sink);
    corr.finish();
    corr.findings()
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event_type"] == "anomaly")
        .map(|e| e["anomaly"]["kind"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn raw(dec: &mut Decoder, sink: &mut impl kcd_decode::Sink, ts: i64, frame: u64, data: &[u8]) {
    dec.packet(
        &Packet {
            ts: Timestamp(ts),
            link: LinkType::RAW,
            data,
            frame,
        },
        sink,
    );
}

fn client(i: u32) -> (IpAddr, u16) {
    (
        IpAddr::from([10, 64 + (i >> 16) as u8, (i >> 8) as u8, i as u8]),
        40_000,
    )
}

/// The time a flood may take here (an unoptimised test build on a busy machine): the
/// same floods took minutes when each new entry scanned the table for the oldest.
const FLOOD_BUDGET: Duration = Duration::from_secs(60);

#[test]
fn a_flood_of_new_tcp_connections_costs_constant_time_per_connection() {
    // A dead KDC, clients retrying from new ports: SYN and one AS-REQ segment each.
    let cfg = Config {
        max_tcp_flows: 20_000,
        ..Config::default()
    };
    let mut dec = Decoder::new(cfg);
    let mut events = 0u64;
    let mut table_full_events = 0u64;
    let mut sink = |e: &kcd_schema::Event<'_>| {
        events += 1;
        table_full_events += u64::from(
            e.anomaly
                .as_ref()
                .is_some_and(|a| a.kind == "tcp_flow_table_full"),
        );
    };
    let req = as_req();
    let mut record = (req.len() as u32).to_be_bytes().to_vec();
    record.extend_from_slice(&req);
    let kdc = (ip("10.9.9.9"), 88);
    let n = 200_000u32;
    let t0 = Instant::now();
    for i in 0..n {
        let c = client(i);
        let ts = NS + i64::from(i) * 5_000;
        raw(&mut dec, &mut sink, ts, u64::from(i) * 2 + 1, &ip_packet(c, kdc, Some((7, 0, "S")), &[]));
        raw(&mut dec, &mut sink, ts + 1, u64::from(i) * 2 + 2, &ip_packet(c, kdc, Some((8, 0, "P")), &record));
    }
    dec.finish(&mut sink);
    let took = t0.elapsed();
    assert!(took < FLOOD_BUDGET, "{n} connections took {took:?}");
    let s = dec.stats();
    assert_eq!(s.messages, u64::from(n));
    assert_eq!(s.anomalies.get("tcp_flow_table_full").copied(), Some(u64::from(n) - 20_000));
    // Reported, but a few dozen times, not once per connection.
    assert!((1..=40).contains(&table_full_events), "{table_full_events}");
}

#[test]
fn a_flood_of_udp_clients_costs_constant_time_and_evictions_are_reported() {
    let cfg = Config {
        max_pending_udp: 20_000,
        ..Config::default()
    };
    let mut dec = Decoder::new(cfg);
    let mut table_full = Vec::new();
    let mut sink = |e: &kcd_schema::Event<'_>| {
        if let Some(a) = e.anomaly.as_ref().filter(|a| a.kind == "krb5_request_table_full") {
            table_full.push(a.detail.to_string());
        }
    };
    let (req, rep) = exchange();
    let kdc = (ip("10.9.9.9"), 88);
    let n = 200_000u32;
    let t0 = Instant::now();
    for i in 0..n {
        let ts = NS + i64::from(i) * 5_000;
        raw(&mut dec, &mut sink, ts, u64::from(i) + 1, &ip_packet(client(i), kdc, None, &req));
    }
    // The first client's reply comes late: its request was given up to make room.
    raw(&mut dec, &mut sink, NS + 2_000_000_000, u64::from(n) + 1, &ip_packet(kdc, client(0), None, &rep));
    dec.finish(&mut sink);
    let took = t0.elapsed();
    assert!(took < FLOOD_BUDGET, "{n} clients took {took:?}");
    let s = dec.stats();
    assert_eq!(s.requests_evicted, u64::from(n) - 20_000);
    assert_eq!(s.replies_without_request, 1);
    // Evicted requests are not known to be unanswered; the rest were cut by the end.
    assert_eq!(s.requests_unanswered, 0);
    assert_eq!(s.pending_at_end, 20_000);
    assert!((1..=40).contains(&table_full.len()), "{}", table_full.len());
    assert!(table_full[0].contains("--max-pending-requests 20000"), "{table_full:?}");
    assert!(s.summary().contains("given up by a full table"), "{}", s.summary());
}

#[test]
fn a_long_out_of_order_flow_is_reassembled_in_n_log_n() {
    // One connection: byte 1 never comes, then 100,000 one-byte segments, last first.
    let mut dec = Decoder::new(Config::default());
    let mut sink = |_: &kcd_schema::Event<'_>| {};
    let (c, k) = (client(1), (ip("10.9.9.9"), 88));
    raw(&mut dec, &mut sink, NS, 1, &ip_packet(c, k, Some((0, 0, "S")), &[]));
    let mut peak = 0;
    let t0 = Instant::now();
    for j in (0..100_000u32).rev() {
        raw(&mut dec, &mut sink, NS + 1000, 2, &ip_packet(c, k, Some((2 + j, 0, "P")), &[0x30]));
        peak = peak.max(dec.reassembly_memory());
    }
    dec.finish(&mut sink);
    assert!(t0.elapsed() < FLOOD_BUDGET, "{:?}", t0.elapsed());
    // Held segments per direction are bounded, each counted at its real cost.
    let per_flow = kcd_decode::tcp::MAX_HELD_SEGMENTS * (kcd_decode::tcp::SEGMENT_OVERHEAD + 1);
    assert!(peak <= per_flow + (64 << 10), "{peak}");
    assert!(peak >= 2_000 * kcd_decode::tcp::SEGMENT_OVERHEAD, "{peak}");
}

#[test]
fn the_reassembly_cap_counts_what_segments_cost() {
    // 400 connections x 1,000 one-byte segments behind a hole, under a 2 MB cap: the cap
    // once counted 1 byte for each, while each cost about 100.
    let cfg = Config {
        max_reassembly_memory: 2_000_000,
        ..Config::default()
    };
    let mut dec = Decoder::new(cfg.clone());
    let mut sink = |_: &kcd_schema::Event<'_>| {};
    let k = (ip("10.9.9.9"), 88);
    let mut peak = 0;
    let mut held = 0usize;
    for f in 0..400u32 {
        let c = client(f);
        raw(&mut dec, &mut sink, NS, 1, &ip_packet(c, k, Some((0, 0, "S")), &[]));
        for j in (0..1000u32).rev() {
            raw(&mut dec, &mut sink, NS + 1, 2, &ip_packet(c, k, Some((2 + 2 * j, 0, "P")), &[0x30]));
        }
        peak = peak.max(dec.reassembly_memory());
        held += 1000;
    }
    assert!(peak <= cfg.max_reassembly_memory + 2 * cfg.max_flow_buffer, "{peak}");
    let closed = dec.stats().anomalies.get("tcp_memory_limit").copied().unwrap_or(0);
    // 400,000 held segments cannot fit in 2 MB: connections were closed to stay within it.
    assert!(held * kcd_decode::tcp::SEGMENT_OVERHEAD > cfg.max_reassembly_memory);
    assert!(closed >= 300, "{closed} closed");
}

/// A TCP connection to port 88 whose client sends `stream`, unanswered but acknowledged.
fn tcp_stream_frames(stream: &[u8]) -> Vec<Frame> {
    let (c, k) = (client(3), (ip("10.9.9.9"), 88));
    let mut frames = vec![
        Frame { ts_ns: NS, link: LINKTYPE_RAW, data: ip_packet(c, k, Some((99, 0, "S")), &[]) },
        Frame { ts_ns: NS + 100, link: LINKTYPE_RAW, data: ip_packet(k, c, Some((500, 100, "SA")), &[]) },
    ];
    let mut seq = 100u32;
    for (i, chunk) in stream.chunks(1400).enumerate() {
        frames.push(Frame {
            ts_ns: NS + 200 + i as i64,
            link: LINKTYPE_RAW,
            data: ip_packet(c, k, Some((seq, 501, "PA")), chunk),
        });
        seq = seq.wrapping_add(chunk.len() as u32);
    }
    frames
}

#[test]
fn zero_bytes_in_a_stream_do_not_multiply_into_anomalies() {
    // 200 KB of zeros (50,000 empty record marks), then a real request.
    let req = as_req();
    let mut stream = vec![0u8; 200_000];
    stream.extend_from_slice(&(req.len() as u32).to_be_bytes());
    stream.extend_from_slice(&req);
    let (events, stats) = replay(&pcap(&tcp_stream_frames(&stream), LINKTYPE_RAW, false), Config::default());
    let k = kinds(&events);
    assert!(k.len() <= 6, "{} anomaly events: {:?}", k.len(), &k[..k.len().min(10)]);
    assert_eq!(stats.messages, 1, "the request after the zeros is decoded");
    // Repetitions are aggregated into one event with a count and the first frame.
    let rep: Vec<&Value> = events.iter().filter(|e| e["anomaly"]["count"].is_u64()).collect();
    for e in &rep {
        assert!(e["anomaly"]["first_frame"].as_u64() <= e["frame"].as_u64(), "{e}");
    }
}

#[test]
fn repeated_gaps_in_one_connection_are_one_event_with_a_count() {
    // Every other 100-byte segment is missing: 100 gaps.
    let (c, k) = (client(4), (ip("10.9.9.9"), 88));
    let mut frames = vec![Frame { ts_ns: NS, link: LINKTYPE_RAW, data: ip_packet(c, k, Some((99, 0, "S")), &[]) }];
    for i in 0..200u32 {
        if i % 2 == 0 {
            frames.push(Frame {
                ts_ns: NS + 10 + i64::from(i),
                link: LINKTYPE_RAW,
                data: ip_packet(c, k, Some((100 + 100 * i, 0, "PA")), &[0x55; 100]),
            });
            // The server acknowledges the missing bytes too: the capture lost them.
            frames.push(Frame {
                ts_ns: NS + 10 + i64::from(i),
                link: LINKTYPE_RAW,
                data: ip_packet(k, c, Some((1, 100 + 100 * (i + 2), "A")), &[]),
            });
        }
    }
    let (events, stats) = replay(&pcap(&frames, LINKTYPE_RAW, false), Config::default());
    let gaps: Vec<&Value> = events.iter().filter(|e| e["anomaly"]["kind"] == "tcp_gap").collect();
    assert!(gaps.len() <= 2, "{} tcp_gap events", gaps.len());
    let counted: u64 = gaps.iter().map(|e| e["anomaly"]["count"].as_u64().unwrap_or(1)).sum();
    assert_eq!(Some(&counted), stats.anomalies.get("tcp_gap"), "the count covers every gap");
}

#[test]
fn a_capture_cut_after_a_syn_raises_no_alarm() {
    // Every TCP capture cut after each of its frames: a connection that had no time to
    // be answered is not evidence of a dead KDC or a firewall.
    let mut cuts = 0;
    for path in kcd_tests::captures("krb5") {
        let bytes = std::fs::read(&path).expect("capture");
        if bytes.get(..4) != Some(&[0xd4, 0xc3, 0xb2, 0xa1][..]) {
            continue;
        }
        let whole: Vec<String> = diagnose(&bytes).iter().map(|f| f.id.to_string()).collect();
        let alarms = ["krb.kdc.tcp_unanswered", "krb.response_too_big.tcp_blocked"];
        if whole.iter().any(|id| alarms.contains(&id.as_str())) {
            continue;
        }
        // Record boundaries of the classic pcap.
        let mut at = 24;
        let mut ends = Vec::new();
        while at + 16 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4")) as usize;
            at += 16 + len;
            ends.push(at.min(bytes.len()));
        }
        for &end in &ends {
            let got = diagnose(&bytes[..end]);
            cuts += 1;
            for f in &got {
                assert!(
                    !alarms.contains(&&*f.id),
                    "{} cut at byte {end}: {} ({})",
                    kcd_tests::rel(&path),
                    f.id,
                    f.explanation
                );
            }
        }
    }
    assert!(cuts > 100, "{cuts} cuts");
}

#[test]
fn a_syn_left_unanswered_long_enough_is_still_reported() {
    let (c, k) = (client(5), (ip("10.9.9.9"), 88));
    let syn = ip_packet(c, k, Some((7, 0, "S")), &[]);
    let other = ip_packet(client(6), (ip("10.9.9.8"), 53), None, b"x");
    let at = |ts_ns, data: &Vec<u8>| Frame { ts_ns, link: LINKTYPE_RAW, data: data.clone() };
    // One SYN, then 4 s of other traffic before the capture ends: reported.
    let (events, _) = replay(&pcap(&[at(NS, &syn), at(NS + 4_000_000_000, &other)], LINKTYPE_RAW, false), Config::default());
    assert!(kinds(&events).contains(&"tcp_no_answer".to_string()));
    // The same SYN 1 s before the end: not.
    let (events, _) = replay(&pcap(&[at(NS, &syn), at(NS + 1_000_000_000, &other)], LINKTYPE_RAW, false), Config::default());
    assert!(!kinds(&events).contains(&"tcp_no_answer".to_string()), "{:?}", kinds(&events));
    // Sent again: reported at once.
    let (events, _) = replay(&pcap(&[at(NS, &syn), at(NS + 1_000_000_000, &syn)], LINKTYPE_RAW, false), Config::default());
    assert!(kinds(&events).contains(&"tcp_no_answer".to_string()));
}

/// pcapng with one interface whose if_tsresol byte is `tsresol`, and one packet per
/// (time units, data).
fn pcapng_raw(tsresol: u8, packets: &[(u64, Vec<u8>)], pad_with: u8) -> Vec<u8> {
    fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
        let len = (12 + body.len()) as u32;
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&len.to_le_bytes());
    }
    let mut out = Vec::new();
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0a0d_0d0a, &shb);
    let mut idb = vec![101, 0, 0, 0];
    idb.extend_from_slice(&262_144u32.to_le_bytes());
    idb.extend_from_slice(&[9, 0, 1, 0, tsresol, 0, 0, 0, 0, 0, 0, 0]);
    block(&mut out, 1, &idb);
    for (units, data) in packets {
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&((units >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(*units as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(data);
        epb.extend(std::iter::repeat_n(pad_with, (4 - data.len() % 4) % 4));
        block(&mut out, 6, &epb);
    }
    out
}

#[test]
fn pcapng_power_of_two_time_resolution() {
    let (req, _) = exchange();
    let data = ip_packet(client(1), (ip("10.9.9.9"), 88), None, &req);
    // 2026-11-23 01:15:22.5 in units of 2^-20 s.
    let secs = 1_795_396_522u64;
    let units = (secs << 20) + (1 << 19);
    let bytes = pcapng_raw(0x80 | 20, &[(units, data.clone())], 0);
    let (events, stats) = replay(&bytes, Config::default());
    assert_eq!(stats.messages, 1);
    assert_eq!(events[0]["timestamp"], Timestamp(secs as i64 * 1_000_000_000 + 500_000_000).to_rfc3339());
    assert!(kinds(&events).is_empty(), "{:?}", kinds(&events));
    // tshark reads the same time.
    kcd_tests::require_tshark();
    let path = std::env::temp_dir().join(format!("kcd-tsresol-{}.pcapng", std::process::id()));
    std::fs::write(&path, &bytes).expect("written");
    let out = std::process::Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&path)
        .args(["-T", "fields", "-e", "frame.time_epoch"])
        .output()
        .expect("tshark runs");
    let _ = std::fs::remove_file(&path);
    let epoch = String::from_utf8_lossy(&out.stdout);
    assert!(epoch.trim().starts_with(&format!("{secs}.5")), "tshark: {epoch}");
    // A resolution that cannot be represented is said, never silently replaced.
    let (events, _) = replay(&pcapng_raw(0x80 | 70, &[(units, data)], 0), Config::default());
    assert!(kinds(&events).contains(&"pcap_bad_tsresol".to_string()), "{:?}", kinds(&events));
}

#[test]
fn pcapng_block_padding_stays_out_of_the_stream() {
    // TSO captures carry an IPv4 total length of 0, so only the captured length says
    // where the packet ends; two requests on one connection, each in one segment whose
    // length is not a multiple of 4.
    let req = real_exchanges(&kcd_tests::repo_root().join("captures/krb5/mit"))
        .into_iter()
        .map(|(q, _)| q)
        .find(|q| q.len() % 4 != 0)
        .expect("a request whose length is not a multiple of 4");
    let mut record = (req.len() as u32).to_be_bytes().to_vec();
    record.extend_from_slice(&req);
    let (c, k) = (client(2), (ip("10.9.9.9"), 88));
    let mut packets = Vec::new();
    let mut seq = 100u32;
    packets.push((1u64, ip_packet(c, k, Some((99, 0, "S")), &[])));
    for i in 0..2 {
        let mut p = ip_packet(c, k, Some((seq, 0, "PA")), &record);
        p[2] = 0;
        p[3] = 0;
        packets.push((2 + i, p));
        seq = seq.wrapping_add(record.len() as u32);
    }
    let (events, stats) = replay(&pcapng_raw(6, &packets, 0xee), Config::default());
    assert_eq!(stats.messages, 2, "{:?}", kinds(&events));
    assert!(!kinds(&events).iter().any(|k| k.starts_with("krb5_")), "{:?}", kinds(&events));
}

#[test]
fn concatenated_pcap_files_are_read_to_the_end() {
    let (req, rep) = exchange();
    let kdc = (ip("10.9.9.9"), 88);
    let file = |n: u32, nanos: bool| {
        let frames: Vec<Frame> = (0..n)
            .flat_map(|i| {
                [
                    Frame { ts_ns: NS + i64::from(i) * 1000, link: LINKTYPE_RAW, data: ip_packet(client(i), kdc, None, &req) },
                    Frame { ts_ns: NS + i64::from(i) * 1000 + 500, link: LINKTYPE_RAW, data: ip_packet(kdc, client(i), None, &rep) },
                ]
            })
            .collect();
        pcap(&frames, LINKTYPE_RAW, nanos)
    };
    let mut cat = file(3, false);
    cat.extend_from_slice(&file(20, true));
    let (events, stats) = replay(&cat, Config::default());
    assert_eq!(stats.messages, 46, "{:?}", kinds(&events));
    assert!(kinds(&events).is_empty(), "{:?}", kinds(&events));
    // A pcapng appended to a pcap cannot be read on: the replay says so and fails.
    let mut cat = file(3, false);
    cat.extend_from_slice(&pcapng(&[Frame { ts_ns: NS, link: LINKTYPE_RAW, data: vec![0x45] }], &[]));
    let mut dec = Decoder::new(Config::default());
    let mut ev = Vec::new();
    let mut sink = |e: &kcd_schema::Event<'_>| ev.push(serde_json::to_value(e).expect("json"));
    let r = kcd_capture::replay_reader(Cursor::new(cat), "t", &mut dec, &mut sink).expect("read");
    assert!(matches!(r.ending, kcd_capture::Ending::Unsupported(_)), "{:?}", r.ending);
    assert_eq!(kinds(&ev), ["pcap_unsupported"]);
}

#[test]
fn a_damaged_block_in_the_middle_is_not_called_a_truncation() {
    let (req, rep) = exchange();
    let kdc = (ip("10.9.9.9"), 88);
    let frames: Vec<Frame> = (0..50u32)
        .map(|i| Frame {
            ts_ns: NS + i64::from(i),
            link: LINKTYPE_RAW,
            data: ip_packet(client(i), kdc, None, if i % 2 == 0 { &req } else { &rep }),
        })
        .collect();
    let mut bytes = pcap(&frames, LINKTYPE_RAW, false);
    // The fifth record's captured length: 3 MB, in a 30 KB file.
    let mut at = 24;
    for _ in 0..4 {
        at += 16 + u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4")) as usize;
    }
    bytes[at + 8..at + 12].copy_from_slice(&3_000_000u32.to_le_bytes());
    let (events, _) = replay(&bytes, Config::default());
    assert_eq!(kinds(&events), ["pcap_malformed"]);
    // A file that really stops early is still a truncation.
    let (events, _) = replay(&pcap(&frames, LINKTYPE_RAW, false)[..at + 30], Config::default());
    assert_eq!(kinds(&events), ["pcap_truncated"]);
}

#[test]
fn four_or_more_vlan_tags_are_decoded() {
    let (req, rep) = exchange();
    let kdc = (ip("10.9.9.9"), 88);
    for tags in [1usize, 3, 4, 6] {
        let vlans: Vec<u16> = (1..=tags as u16).collect();
        let frames = vec![
            Frame { ts_ns: NS, link: LINKTYPE_ETHERNET, data: link_frame(LINKTYPE_ETHERNET, &ip_packet(client(1), kdc, None, &req), &vlans) },
            Frame { ts_ns: NS + 1, link: LINKTYPE_ETHERNET, data: link_frame(LINKTYPE_ETHERNET, &ip_packet(kdc, client(1), None, &rep), &vlans) },
        ];
        let (events, stats) = replay(&pcap(&frames, LINKTYPE_ETHERNET, false), Config::default());
        assert_eq!(stats.messages, 2, "{tags} tags: {:?}", kinds(&events));
    }
    let vlans = [7u16; 40];
    let frames = vec![Frame { ts_ns: NS, link: LINKTYPE_ETHERNET, data: link_frame(LINKTYPE_ETHERNET, &ip_packet(client(1), kdc, None, &req), &vlans) }];
    let (events, _) = replay(&pcap(&frames, LINKTYPE_ETHERNET, false), Config::default());
    assert_eq!(kinds(&events), ["link_vlan_too_deep"]);
}

/// The incident report and the listing of a capture, as `kcdscope replay` prints them.
fn report_and_listing(bytes: &[u8]) -> (String, String, Vec<kcd_schema::Finding>) {
    let mut dec = Decoder::new(Config::default());
    let mut corr = kcd_correlate::Correlator::new(kcd_correlate::Config::default());
    let mut listing = Vec::new();
    {
        let mut text = kcd_export::TextWriter::new(&mut listing);
        let mut sink = |e: &kcd_schema::Event<'_>| {
            kcd_decode::Sink::event(&mut text, e);
            corr.event(e);
        };
        kcd_capture::replay_reader(Cursor::new(bytes.to_vec()), "t.pcap", &mut dec, &mut sink)
            .expect("a capture");
        dec.finish(&mut sink);
        text.finish().expect("written");
    }
    corr.finish();
    let findings = corr.findings();
    let report = kcd_export::report::render(&corr, &findings, dec.stats(), kcd_export::report::Style::default());
    (report, String::from_utf8(listing).expect("utf-8"), findings)
}

fn udp_exchange_frames(req: &[u8], rep: &[u8], reply_after_ns: i64) -> Vec<Frame> {
    let (c, k) = (client(7), (ip("10.9.9.9"), 88));
    vec![
        Frame { ts_ns: NS, link: LINKTYPE_RAW, data: ip_packet(c, k, None, req) },
        Frame { ts_ns: NS + reply_after_ns, link: LINKTYPE_RAW, data: ip_packet(k, c, None, rep) },
    ]
}

#[test]
fn a_late_reply_is_slow_not_unanswered_and_its_latency_is_exact() {
    let (req, rep) = exchange();
    let bytes = pcap(&udp_exchange_frames(&req, &rep, 6_000_000_000), LINKTYPE_RAW, false);
    let (report, _, findings) = report_and_listing(&bytes);
    let ids: Vec<&str> = findings.iter().map(|f| &*f.id).collect();
    assert!(!ids.iter().any(|id| id.starts_with("krb.kdc.")), "{ids:?}\n{report}");
    assert!(report.contains("0 unanswered"), "{report}");
    assert!(report.contains("max 6000 ms"), "{report}");
}

#[test]
fn time_going_back_within_a_capture_does_not_miscount() {
    // A request, another client's request stamped 20 s in the future (a clock glitch),
    // then the reply 300 ms after the first request.
    let (req, rep) = exchange();
    let mut frames = udp_exchange_frames(&req, &rep, 300_000_000);
    let glitch = Frame {
        ts_ns: NS + 20_000_000_000,
        link: LINKTYPE_RAW,
        data: ip_packet(client(9), (ip("10.9.9.9"), 88), None, &req),
    };
    frames.insert(1, glitch);
    let bytes = pcap(&frames, LINKTYPE_RAW, false);
    let (report, _, findings) = report_and_listing(&bytes);
    let ids: Vec<&str> = findings.iter().map(|f| &*f.id).collect();
    assert!(!ids.iter().any(|id| id.starts_with("krb.kdc.")), "{ids:?}\n{report}");
    assert!(report.contains("0 unanswered"), "{report}");
}

#[test]
fn names_from_the_wire_cannot_drive_the_terminal() {
    // A real AS-REQ whose client name is replaced, byte for byte, with "clear the
    // screen, carriage return"; the KDC never answers.
    let req = as_req();
    let hostile = b"\x1b[2J\r";
    let name_at = req
        .windows(5)
        .position(|w| w.iter().all(u8::is_ascii_lowercase))
        .expect("a five-letter name");
    let mut bad = req.clone();
    bad[name_at..name_at + 5].copy_from_slice(hostile);
    let (c, k) = (client(8), (ip("10.9.9.9"), 88));
    // Another client's request 40 s later moves the diagnosis' clock past the deadline.
    let other = ip_packet(client(9), k, None, &req);
    let frames = vec![
        Frame { ts_ns: NS, link: LINKTYPE_RAW, data: ip_packet(c, k, None, &bad) },
        Frame { ts_ns: NS + 40_000_000_000, link: LINKTYPE_RAW, data: other },
    ];
    let (report, listing, _) = report_and_listing(&pcap(&frames, LINKTYPE_RAW, false));
    for (what, text) in [("report", &report), ("listing", &listing)] {
        assert!(!text.contains('\x1b') && !text.contains('\r'), "{what}: {text:?}");
        assert!(text.contains("\\x1b[2J\\r"), "{what} shows the name escaped: {text}");
    }
}

#[test]
fn long_names_keep_the_report_within_80_columns() {
    use kcd_schema::{Event, EventType, Krb5, MessageType, NameType, Principal, Transport};
    use std::borrow::Cow;
    let long = format!("{}\u{202e}{}", "a".repeat(150), "b".repeat(150));
    let mut corr = kcd_correlate::Correlator::new(kcd_correlate::Config::default());
    for (i, t) in [(1u64, NS), (2, NS + 40_000_000_000)] {
        let mut e = Event::bare(Timestamp(t), EventType::Krb5, Some(Cow::Borrowed("x.pcap")), i);
        e.src_ip = Some(ip("10.1.1.1"));
        e.dest_ip = Some(ip("10.9.9.9"));
        e.dest_port = Some(88);
        e.proto = Some(Transport::Udp);
        e.krb5 = Some(Krb5 {
            msg_type: MessageType::AS_REQ,
            cname: Some(Principal::new(Cow::Borrowed(long.as_str()), NameType(1))),
            realm: Some(Cow::Borrowed(long.as_str())),
            sname: Some(Principal::new(Cow::Borrowed(long.as_str()), NameType(2))),
            nonce: Some(i as i64),
            ..Krb5::default()
        });
        corr.event(&e);
    }
    corr.finish();
    let findings = corr.findings();
    let report = kcd_export::report::render(&corr, &findings, &kcd_decode::Stats::default(), kcd_export::report::Style::default());
    assert!(report.contains("aaaa"), "{report}");
    for line in report.lines() {
        assert!(line.chars().count() <= 80, "{} columns: {line}", line.chars().count());
        assert!(!line.contains('\u{202e}'), "{line}");
    }
}

#[test]
fn requests_carry_from_till_and_rtime_as_tshark_reads_them() {
    kcd_tests::require_tshark();
    let mut compared = 0;
    for path in kcd_tests::captures("krb5/mit-lab") {
        let out = std::process::Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&path)
            .args(["-Y", "kerberos.msg_type==10 || kerberos.msg_type==12", "-T", "fields", "-E", "occurrence=f"])
            .args(["-e", "frame.number", "-e", "kerberos.from", "-e", "kerberos.till", "-e", "kerberos.rtime"])
            .output()
            .expect("tshark runs");
        let (events, _) = kcd_tests::replay_json(std::slice::from_ref(&path), Config::default());
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let f: Vec<&str> = line.split('\t').collect();
            let frame: u64 = f[0].parse().expect("frame number");
            let ours = events
                .iter()
                .find(|e| e["frame"] == frame && e["event_type"] == "krb5")
                .unwrap_or_else(|| panic!("{} frame {frame} decoded", path.display()));
            for (i, key) in ["from", "till", "rtime"].iter().enumerate() {
                let theirs = f.get(i + 1).copied().unwrap_or("");
                let want = (!theirs.is_empty()).then(|| {
                    let t = chrono::NaiveDateTime::parse_from_str(theirs, "%b %e, %Y %H:%M:%S%.f UTC")
                        .unwrap_or_else(|e| panic!("tshark time {theirs:?}: {e}"));
                    Timestamp(t.and_utc().timestamp() * 1_000_000_000).to_rfc3339()
                });
                assert_eq!(
                    ours["krb5"][key].as_str().map(str::to_string),
                    want,
                    "{} frame {frame} {key}",
                    path.display()
                );
                compared += usize::from(!theirs.is_empty());
            }
        }
    }
    assert!(compared > 20, "{compared} times compared");
}

#[test]
fn an_unreadable_error_code_is_not_a_finding() {
    // A real KRB-ERROR whose error-code [6] INTEGER is damaged into an OCTET STRING.
    let (req, rep) = real_exchanges(&kcd_tests::repo_root().join("captures/krb5"))
        .into_iter()
        .find(|(_, r)| r.first() == Some(&0x7e) && r.windows(5).any(|w| w[..4] == [0xa6, 0x03, 0x02, 0x01] && w[4] != 25 && w[4] != 52))
        .expect("a KRB-ERROR");
    let (_, _, whole) = report_and_listing(&pcap(&udp_exchange_frames(&req, &rep, 1_000_000), LINKTYPE_RAW, false));
    assert!(!whole.is_empty(), "the undamaged error gives a finding");
    let mut bad = rep.clone();
    let at = bad.windows(4).position(|w| w == [0xa6, 0x03, 0x02, 0x01]).expect("error-code");
    bad[at + 2] = 0x04;
    let (report, listing, findings) = report_and_listing(&pcap(&udp_exchange_frames(&req, &bad, 1_000_000), LINKTYPE_RAW, false));
    assert!(listing.contains("MALFORMED"), "{listing}");
    for f in &findings {
        assert!(!f.explanation.contains("-1"), "{}: {}\n{report}", f.id, f.explanation);
    }
}

#[test]
fn a_dead_kdc_under_a_flood_is_still_found() {
    // 20,000 clients in 10 s, none answered, against a 1,000-request table: no request
    // lives the 5 s it takes to be called unanswered, yet the KDC answered nothing.
    let run = |answer_every: Option<u32>| {
        let mut dec = Decoder::new(Config::default());
        let mut corr = kcd_correlate::Correlator::new(kcd_correlate::Config {
            max_outstanding: 1000,
            ..kcd_correlate::Config::default()
        });
        let mut sink = |e: &kcd_schema::Event<'_>| corr.event(e);
        let (req, rep) = exchange();
        let kdc = (ip("10.9.9.9"), 88);
        for i in 0..20_000u32 {
            let ts = NS + i64::from(i) * 500_000;
            raw(&mut dec, &mut sink, ts, u64::from(i) * 2 + 1, &ip_packet(client(i), kdc, None, &req));
            if answer_every.is_some_and(|n| i % n == 0) {
                raw(&mut dec, &mut sink, ts + 1000, u64::from(i) * 2 + 2, &ip_packet(kdc, client(i), None, &rep));
            }
        }
        dec.finish(&mut sink);
        corr.finish();
        corr.findings()
    };
    let f = run(None);
    let dead: Vec<&kcd_schema::Finding> = f.iter().filter(|x| x.id == "krb.kdc.unreachable").collect();
    assert_eq!(dead.len(), 1, "{:?}", f.iter().map(|x| &x.id).collect::<Vec<_>>());
    assert!(dead[0].count >= 19_000, "{}", dead[0].count);
    assert!(!dead[0].evidence.is_empty());
    // The same evidence every time, in time order, whatever the tables' hash order.
    let frames = |f: &[kcd_schema::Finding]| -> Vec<u64> {
        f.iter().filter(|x| x.id == "krb.kdc.unreachable").flat_map(|x| x.evidence.iter().map(|e| e.frame)).collect()
    };
    let first = frames(&f);
    assert!(first.windows(2).all(|w| w[0] < w[1]), "{first:?}");
    assert_eq!(first, frames(&run(None)));
    // A KDC that answers some of the flood is not called dead for what was given up.
    let f = run(Some(10));
    assert!(!f.iter().any(|x| x.id == "krb.kdc.unreachable"), "{:?}", f.iter().map(|x| &x.id).collect::<Vec<_>>());
}
