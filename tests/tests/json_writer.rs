//! The hand-written JSON writer must produce exactly serde_json's bytes: on every event of
//! every capture, and on events built to stress escaping, IPv6 and numbers.

use std::borrow::Cow;

use kcd_decode::{Config, Decoder};
use kcd_schema::*;
use kcd_tests::{captures, rel};

fn check(e: &Event<'_>) {
    let want = serde_json::to_vec(e).expect("serde serialises events");
    let mut got = Vec::new();
    e.write_json(&mut got);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
}

#[test]
fn same_bytes_as_serde_on_every_captured_event() {
    let mut n = 0usize;
    let mut dec = Decoder::new(Config::default());
    let mut sink = |e: &Event<'_>| {
        check(e);
        n += 1;
    };
    for f in captures("") {
        kcd_capture::replay_file(&f, &rel(&f), &mut dec, &mut sink).expect("replays");
    }
    dec.finish(&mut sink);
    assert!(n > 400, "only {n} events");
}

#[test]
fn same_bytes_as_serde_on_hostile_strings() {
    let nasty = [
        "",
        "\"",
        "\\",
        "a\"b\\c",
        "\n\r\t\u{8}\u{c}",
        "\u{0}\u{1f}\u{7f}",
        "łukasz/zoë",
        "日本語",
        "\u{2028}",
    ];
    for s in nasty {
        let c = |x: &str| Cow::Owned(x.to_string());
        let k = Krb5 {
            msg_type: MessageType(99),
            direction: Some(Direction::FromKdc),
            realm: Some(c(s)),
            cname: Some(Principal {
                parts: smallvec![c(s), c("x"), c(s)],
                name_type: NameType(-128),
            }),
            kdc_options: KdcOptions(Flags32(0xffff_ffff)),
            etypes: smallvec![EncryptionType(18), EncryptionType(-4242)],
            nonce: Some(-1),
            padata: smallvec![PaDataType(129), PaDataType(7777)],
            for_user: Some(ForUser {
                user: None,
                realm: Some(c(s)),
                auth_package: None,
            }),
            s4u_x509_user: Some(S4uX509User {
                user: None,
                realm: None,
                has_certificate: true,
                options: S4uOptions(Flags32(0x6000_0001)),
            }),
            pac_options: PacOptions(Flags32(0x1000_0000)),
            additional_tickets: smallvec![TicketInfo {
                id: Some(TicketId([0, 1, 2, 0xab, 0xcd, 0xef, 0xff, 9])),
                realm: None,
                sname: None,
                enc_part: Some(EncInfo {
                    etype: EncryptionType(23),
                    kvno: Some(i64::MIN)
                })
            }],
            armored: true,
            error: Some(KrbErrorInfo {
                code: ErrorCode(i32::MIN),
                stime: Some(Timestamp(-1)),
                ctime: Some(Timestamp(i64::MAX / 2)),
                e_text: Some(c(s)),
                e_data: Some(EData {
                    format: EDataFormat::MethodData,
                    padata: smallvec![PaDataType(19), PaDataType(-1)],
                    ntstatus: Some(NtStatusInfo(NtStatus(0xC000_0072))),
                    etype_info2: smallvec![SaltInfo {
                        etype: EncryptionType(17),
                        salt: Some(c(s))
                    }],
                    data_type: Some(-7),
                }),
                skew_seconds: Some(-599.999_871),
            }),
            request: Some(RequestRef {
                pcap_file: Some(c(s)),
                frame: u64::MAX,
                msg_type: MessageType::AS_REQ,
                latency_us: -3,
            }),
            malformed: Some(c(s)),
            ..Krb5::default()
        };
        for (src, skew) in [
            ("2001:db8::1", 0.1),
            ("::ffff:10.0.0.1", 1e21),
            ("10.0.0.255", -0.0),
        ] {
            let mut k = k.clone();
            if let Some(e) = k.error.as_mut() {
                e.skew_seconds = Some(skew);
                e.code = ErrorCode(13);
            }
            if let Some(d) = k.error.as_mut().and_then(|e| e.e_data.as_mut()) {
                d.ntstatus = Some(NtStatusInfo(NtStatus(0xDEAD_BEEF)));
            }
            check(&Event {
                timestamp: Timestamp::from_parts(1_795_382_055, 1),
                event_type: EventType::Krb5,
                pcap_file: Some(Cow::Borrowed(s)),
                frame: 0,
                flow_id: None,
                src_ip: Some(src.parse().expect("address")),
                src_port: Some(0),
                dest_ip: Some("fe80::1".parse().expect("address")),
                dest_port: Some(65535),
                proto: Some(Transport::Tcp),
                krb5: Some(k),
                anomaly: None,
                finding: None,
                gateway: None,
            });
        }
        check(&Event {
            flow_id: Some(Cow::Borrowed(s)),
            anomaly: Some(Anomaly {
                layer: AnomalyLayer::Pcap,
                kind: Cow::Borrowed(s),
                detail: Cow::Borrowed(s),
                count: None,
                first_frame: None,
            }),
            ..Event::bare(Timestamp(0), EventType::Anomaly, None, 1)
        });
        // A repeated anomaly, folded: its count and first frame.
        check(&Event {
            anomaly: Some(Anomaly {
                layer: AnomalyLayer::Tcp,
                kind: Cow::Borrowed(s),
                detail: Cow::Borrowed(s),
                count: Some(u64::MAX),
                first_frame: Some(7),
            }),
            ..Event::bare(Timestamp(-1), EventType::Anomaly, None, 9)
        });
        let mut facts = std::collections::BTreeMap::new();
        facts.insert(s.to_string(), serde_json::json!({"x": [1.5, s]}));
        check(
            &Finding {
                id: s.to_string(),
                severity: Severity::Warning,
                subject: Subject { kind: SubjectKind::ServiceAccount, name: s.to_string() },
                first_seen: Timestamp(1),
                last_seen: Timestamp(2),
                count: 3,
                explanation: s.to_string(),
                fix: s.to_string(),
                facts,
                evidence: vec![Evidence { pcap_file: Some(s.to_string()), frame: 4, flow_id: None }],
            }
            .into_event(),
        );
    }
}

/// Events written and read back are the same events.
#[test]
fn json_round_trips_through_serde() {
    let mut dec = Decoder::new(Config::default());
    let mut n = 0usize;
    let mut sink = |e: &Event<'_>| {
        let mut line = Vec::new();
        e.write_json(&mut line);
        let back: Event<'_> = serde_json::from_slice(&line).expect("reads back");
        let mut again = Vec::new();
        back.write_json(&mut again);
        assert_eq!(
            String::from_utf8_lossy(&again),
            String::from_utf8_lossy(&line)
        );
        n += 1;
    };
    for f in captures("krb5") {
        kcd_capture::replay_file(&f, &rel(&f), &mut dec, &mut sink).expect("replays");
    }
    assert!(n > 400);
}
