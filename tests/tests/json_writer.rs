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
    let v: serde_json::Value = serde_json::from_slice(&got).expect("the writer writes JSON");
    assert_eq!(v["schema_version"], serde_json::json!(SCHEMA_VERSION), "every event carries schema_version");
    // The published schema accepts it too, hostile strings and every event type included.
    let errors: Vec<String> = schema().iter_errors(&v).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:?}\n{v}");
}

fn schema() -> &'static jsonschema::Validator {
    static V: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        let text = std::fs::read_to_string(kcd_tests::repo_root().join("schema/kcdscope-event.schema.json"))
            .expect("committed schema");
        let schema: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
        jsonschema::draft202012::new(&schema).expect("schema compiles")
    })
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
                schema_version: SchemaVersion,
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
                tls: None,
                http: None,
                eas: None,
                crl: None,
                device: None,
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

/// TLS, HTTP, ActiveSync and CRL objects: the writer and serde agree, and they read back.
#[test]
fn same_bytes_as_serde_on_application_events() {
    for s in ["", "\"", "a\\b", "\n\u{1}", "łukasz", "CN=a\\,b,O=\"x\""] {
        let cert = X509 {
            subject: s.into(),
            issuer: s.into(),
            serial: "01AB".into(),
            not_before: "2026-01-01T00:00:00Z".into(),
            not_after: "9999-12-31T23:59:59Z".into(),
            sha256: "00".repeat(32),
            sha1: "ff".repeat(20),
            san_dns: vec![s.into()],
            san_email: vec![s.into()],
            san_uri: vec![],
            san_upn: vec![s.into(), "bob@lab.test".into()],
            eku: vec!["client_auth".into(), "1.2.3".into()],
            cdp: vec!["ldap:///CN=x".into()],
            delta_cdp: vec![s.into()],
            aia_ca_issuers: vec![s.into()],
            aia_ocsp: vec![],
            key_type: Some("rsa".into()),
            key_bits: Some(2048),
            is_ca: true,
            problems: vec![CertProblem::LdapOnlyCdp, CertProblem::ExpiredAtCapture],
            malformed: Some(s.into()),
        };
        let tls = Tls {
            sni: Some(s.into()),
            client_version: Some("TLS 1.2".into()),
            client_versions: vec!["TLS 1.3".into()],
            cipher_suites: vec!["0x1301".into()],
            alpn: vec![s.into()],
            version: Some("TLS 1.2".into()),
            cipher_suite: Some(s.into()),
            client_certificate_requested: true,
            acceptable_cas: vec![s.into()],
            server_certificates: vec![cert.clone()],
            client_certificates: vec![cert.clone(), X509::default()],
            client_certificate_empty: true,
            certificates_visible: false,
            alert: Some(TlsAlert { level: Some("fatal".into()), description: s.into(), code: Some(42), sender: Side::Server }),
            outcome: TlsOutcome::Alert,
            malformed: Some(s.into()),
        };
        let e = Event {
            tls: Some(Box::new(tls)),
            src_ip: "10.0.0.1".parse().ok(),
            proto: Some(Transport::Tcp),
            ..Event::bare(Timestamp(5), EventType::Tls, Some(Cow::Borrowed(s)), 3)
        };
        check(&e);
        let http = Http {
            hostname: Some(s.into()),
            url: s.into(),
            http_method: s.into(),
            protocol: Some("HTTP/1.1".into()),
            http_user_agent: Some(s.into()),
            status: Some(401),
            http_content_type: Some(s.into()),
            request_body_length: Some(0),
            length: Some(u64::MAX),
            www_authenticate: vec!["Negotiate".into(), s.into()],
            authorization: Some(Authorization {
                kind: AuthKind::Spnego,
                scheme: s.into(),
                token_bytes: Some(1500),
                ntlm_message: Some(3),
                kerberos: Some(ApReqSummary {
                    ticket_server: Some(s.into()),
                    realm: Some(s.into()),
                    etype: Some(EncryptionType(-77)),
                    kvno: Some(2),
                    size: 1400,
                    key_in_keytab: Some(false),
                    authenticator_id: Some(s.into()),
                    decrypted: Some(kcd_schema::DecryptedTicket {
                        client: Some(s.into()),
                        error: Some(s.into()),
                        pac: Some(kcd_schema::PacFacts { size: 1, upn: Some(s.into()), ..Default::default() }),
                        ..Default::default()
                    }),
                }),
            }),
            latency_us: Some(-1),
            request_frame: Some(2),
            malformed: Some(s.into()),
        };
        let e = Event {
            http: Some(Box::new(http)),
            eas: Some(Box::new(Eas {
                cmd: Some(s.into()),
                user: Some(s.into()),
                device_id: Some(s.into()),
                device_type: None,
                protocol_version: Some("14.1".into()),
                query_form: EasQueryForm::Base64,
            })),
            crl: Some(Box::new(Crl {
                url: s.into(),
                issuer: Some(s.into()),
                this_update: Some("2026-01-01T00:00:00Z".into()),
                next_update: None,
                crl_number: Some("0A".into()),
                delta: true,
                base_crl_number: Some("09".into()),
                revoked_count: Some(3),
                problems: vec![CrlProblem::NotFoundPlusName, CrlProblem::ExpiredAtCapture],
            })),
            device: Some(Cow::Borrowed(s)),
            ..Event::bare(Timestamp(5), EventType::Http, None, 4)
        };
        check(&e);
        let mut line = Vec::new();
        e.write_json(&mut line);
        let back: Event<'_> = serde_json::from_slice(&line).expect("reads back");
        assert_eq!(back.http, e.http);
        assert_eq!(back.eas, e.eas);
        assert_eq!(back.crl, e.crl);
        // Through a batch (the diagnosis thread's copy) and back, unchanged.
        let mut b = EventBatch::default();
        b.push(&e);
        let again: Vec<Event<'_>> = b.iter().collect();
        assert_eq!(again[0].http, e.http);
        assert_eq!(again[0].eas, e.eas);
        assert_eq!(again[0].crl, e.crl);
    }
}

#[test]
fn schema_version_round_trips_and_another_version_is_refused() {
    let fresh = || Event::bare(Timestamp(0), EventType::Krb5, None, 1);
    let line = serde_json::to_string(&fresh()).expect("serialises");
    assert!(line.starts_with(&format!("{{\"schema_version\":{SCHEMA_VERSION},")), "{line}");
    let back: Event<'_> = serde_json::from_str(&line).expect("reads its own line");
    assert_eq!(back, fresh());
    // A line written before versions existed still reads.
    let old: Event<'_> = serde_json::from_str(r#"{"timestamp":"1970-01-01T00:00:00.000000000Z","event_type":"krb5","frame":1}"#)
        .expect("reads an unversioned line");
    assert_eq!(old, fresh());
    let other = line.replacen(&format!(":{SCHEMA_VERSION},"), ":999,", 1);
    let err = serde_json::from_str::<Event<'_>>(&other).expect_err("refuses another version");
    assert!(err.to_string().contains("schema_version 999"), "{err}");
}
