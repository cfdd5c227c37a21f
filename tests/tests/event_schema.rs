//! The published JSON Schema (schema/kcdscope-event.schema.json): it is what the types
//! generate (a change to the types that is not reflected in the committed file fails
//! here), and every event the repository's captures produce, findings included,
//! validates against it.

use std::collections::BTreeMap;

use kcd_decode::Config;
use kcd_tests::{captures, rel, repo_root, replay_diagnosed};
use serde_json::Value;

const SCHEMA: &str = "schema/kcdscope-event.schema.json";
const REGENERATE: &str = "UPDATE_SCHEMA=1 cargo test -p kcd-tests --test event_schema";

fn generated() -> String {
    let mut s = serde_json::to_string_pretty(&kcd_schema::event_json_schema()).expect("schema serialises");
    s.push('\n');
    s
}

#[test]
fn committed_schema_is_the_generated_one() {
    let path = repo_root().join(SCHEMA);
    let want = generated();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir schema/");
        std::fs::write(&path, &want).expect("writes the schema");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{SCHEMA} differs from the schema the event types generate; if the change is meant, \
         regenerate it with `{REGENERATE}`, review the diff, and bump SCHEMA_VERSION \
         (agent/schema) if a field changed meaning or disappeared"
    );
}

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo_root().join(SCHEMA)).expect("committed schema");
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::draft202012::new(&schema).expect("schema compiles")
}

#[test]
fn every_event_of_every_capture_validates() {
    let v = validator();
    let mut per_type: BTreeMap<String, usize> = BTreeMap::new();
    let mut bad = Vec::new();
    for f in captures("") {
        let (out, _) = replay_diagnosed(std::slice::from_ref(&f), Config::default(), Default::default());
        for (i, line) in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
            let e: Value = serde_json::from_slice(line).expect("NDJSON line");
            *per_type.entry(e["event_type"].as_str().unwrap_or("?").to_string()).or_default() += 1;
            for err in v.iter_errors(&e).take(3) {
                bad.push(format!("{} line {}: {} at {}", rel(&f), i + 1, err, err.instance_path()));
            }
        }
    }
    assert!(bad.is_empty(), "{} violations, first: {:#?}", bad.len(), &bad[..bad.len().min(10)]);
    let total: usize = per_type.values().sum();
    eprintln!("validated {total} events: {per_type:?}");
    assert!(total > 400, "only {total} events");
    for t in ["krb5", "finding", "anomaly"] {
        assert!(per_type.contains_key(t), "no {t} event among the captures: {per_type:?}");
    }
}

/// The schema is not a rubber stamp: it refuses what the layout does not allow.
#[test]
fn schema_refuses_what_the_layout_does_not_allow() {
    let v = validator();
    let (out, _) = replay_diagnosed(&captures("krb5/mit")[..1], Config::default(), Default::default());
    let first = out.split(|b| *b == b'\n').next().expect("one line");
    let good: Value = serde_json::from_slice(first).expect("JSON");
    assert!(v.is_valid(&good), "{good}");
    let broken = |f: &dyn Fn(&mut Value)| {
        let mut e = good.clone();
        f(&mut e);
        e
    };
    let cases = [
        ("another schema_version", broken(&|e| e["schema_version"] = 2.into())),
        ("no schema_version", broken(&|e| { e.as_object_mut().map(|o| o.remove("schema_version")); })),
        ("unknown event_type", broken(&|e| e["event_type"] = "smtp".into())),
        ("unknown top-level field", broken(&|e| e["password"] = "hunter2".into())),
        ("time without nanoseconds", broken(&|e| e["timestamp"] = "2026-11-22T21:14:15Z".into())),
        ("message type that is no name", broken(&|e| e["krb5"]["msg_type"] = "AS-REQUEST".into())),
        ("port out of range", broken(&|e| e["src_port"] = 70000.into())),
    ];
    for (what, e) in cases {
        assert!(!v.is_valid(&e), "{what} accepted: {e}");
    }
}

/// The gateway's events (no capture holds them): a request with every part, and a
/// delegation step, validate too.
#[test]
fn gateway_events_validate() {
    use kcd_schema::*;
    use std::borrow::Cow;
    let v = validator();
    let mut g = Gateway::new(KcdStep::Request, "refused");
    g.user = Some(Cow::Borrowed("alice@lab.test"));
    g.request_id = Some(Cow::Borrowed("r-1"));
    g.status = Some(403);
    g.reason = Some(Cow::Borrowed("revoked"));
    g.finding = Some(Cow::Borrowed("cert.revoked"));
    g.device = Some(Box::new(GatewayDevice {
        address: Some("10.0.0.9:51234".into()),
        device_id: Some("ABC".into()),
        device_type: Some("iPhone".into()),
        cmd: Some("Sync".into()),
        user_mismatch: Some("bob".into()),
    }));
    g.certificate = Some(Box::new(GatewayCertificate {
        subject: "CN=alice".into(),
        issuer: "CN=CA".into(),
        serial: "0A".into(),
        sha256: "ab".repeat(32),
        upn: Some("alice@lab.test".into()),
        not_after: 1_800_000_000,
        revocation: Some("revoked".into()),
        crl_source: Some("http://pki/ca.crl".into()),
        crl_age_seconds: Some(60),
    }));
    g.kcd = Some(Box::new(GatewayKcd {
        cache_hit: false,
        step: Some(KcdStep::S4u2proxy),
        error: Some(ErrorCode(13)),
        ntstatus: Some(NtStatusInfo(NtStatus(0xC000_0072))),
        kdc: Some("dc1.lab.test:88".into()),
        latency_us: 1200,
    }));
    g.backend = Some(Box::new(GatewayBackend { status: Some(401), latency_us: 5, www_authenticate: vec!["Negotiate".into()] }));
    let request = Event { gateway: Some(g), ..Event::bare(Timestamp(1), EventType::Gateway, None, 1) };
    let mut step = Gateway::new(KcdStep::S4u2self, "canonicalised");
    step.spn = Some(Cow::Borrowed("HTTP/exchange.lab.test"));
    step.attempt = Some(2);
    step.latency_us = Some(10);
    step.detail = Some(Cow::Borrowed("\"quoted\" \u{1b}"));
    step.clock_offset_seconds = Some(-300);
    step.forwardable = Some(true);
    let kcd = Event { gateway: Some(step), ..Event::bare(Timestamp(2), EventType::Kcd, None, 2) };
    for e in [request, kcd] {
        let mut line = Vec::new();
        e.write_json(&mut line);
        let j: Value = serde_json::from_slice(&line).expect("JSON");
        let errors: Vec<String> = v.iter_errors(&j).map(|x| format!("{x} at {}", x.instance_path())).collect();
        assert!(errors.is_empty(), "{errors:?}\n{j}");
    }
}
