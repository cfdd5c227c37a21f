//! `--format ecs` on real captures: every event maps to a well-formed ECS document, and
//! the Kerberos fields agree with tshark's decode of the same frames (message type ->
//! Windows security-log event.action, client name and realm -> user.*, PA-FOR-USER ->
//! user.effective.*, error codes), not with our own EVE output.

use std::collections::BTreeMap;

use kcd_decode::{Config, Decoder};
use kcd_export::ecs::{self, to_ecs};
use kcd_schema::Event;
use kcd_tests::oracle::tshark_msgs;
use kcd_tests::{captures, rel, require_tshark};
use serde_json::Value;

/// ECS 8.11 allowed values (https://www.elastic.co/guide/en/ecs/current/ecs-allowed-values-event-*.html).
const KINDS: &[&str] = &["alert", "asset", "enrichment", "event", "metric", "state", "pipeline_error", "signal"];
const CATEGORIES: &[&str] = &[
    "api", "authentication", "configuration", "database", "driver", "email", "file", "host", "iam",
    "intrusion_detection", "library", "malware", "network", "package", "process", "registry", "session",
    "threat", "vulnerability", "web",
];
const TYPES: &[&str] = &[
    "access", "admin", "allowed", "change", "connection", "creation", "deletion", "denied", "end", "error",
    "group", "indicator", "info", "installation", "protocol", "start", "user",
];
const OUTCOMES: &[&str] = &["failure", "success", "unknown"];

/// The capture's events, then its findings (as `kcdscope replay` writes them), in ECS.
fn ecs_of(file: &std::path::Path) -> Vec<Value> {
    let mut dec = Decoder::new(Config::default());
    let mut corr = kcd_correlate::Correlator::new(Default::default());
    let mut out = Vec::new();
    let mut sink = |e: &Event<'_>| {
        out.push(to_ecs(e));
        corr.event(e);
    };
    kcd_capture::replay_file(file, &rel(file), &mut dec, &mut sink).expect("replays");
    dec.finish(&mut sink);
    corr.finish();
    for f in corr.findings() {
        let d = to_ecs(&f.clone().into_event());
        assert_eq!(get(&d, "event.kind"), "alert");
        assert_eq!(text(&d, "rule.id").as_deref(), Some(f.id.as_str()));
        assert_eq!(text(&d, "message").as_deref(), Some(f.explanation.as_str()));
        out.push(d);
    }
    out
}

fn get<'v>(v: &'v Value, path: &str) -> &'v Value {
    path.split('.').fold(v, |v, k| &v[k])
}

fn text(v: &Value, path: &str) -> Option<String> {
    get(v, path).as_str().map(str::to_string)
}

/// Keys and values that must never leave the agent.
fn secrets(v: &Value, at: &str, found: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let key = k.to_ascii_lowercase();
                if ["password", "secret", "private", "keytab", "session_key", "cipher_text", "token"]
                    .iter()
                    .any(|w| key == *w || key.ends_with(&format!("_{w}")) && !key.ends_with("_bytes"))
                {
                    found.push(format!("{at}.{k}"));
                }
                secrets(x, &format!("{at}.{k}"), found);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| secrets(x, at, found)),
        Value::String(s) if s.contains("-----BEGIN") => found.push(format!("{at}: PEM")),
        _ => {}
    }
}

#[test]
fn every_captured_event_is_a_well_formed_ecs_document() {
    let mut n = 0;
    let mut actions: BTreeMap<String, usize> = BTreeMap::new();
    let mut ids = std::collections::BTreeSet::new();
    for f in captures("") {
        for d in ecs_of(&f) {
            n += 1;
            let name = format!("{} {}", rel(&f), get(&d, "kcdscope.frame"));
            assert!(text(&d, "@timestamp").is_some_and(|t| t.ends_with('Z')), "{name}: @timestamp");
            assert_eq!(get(&d, "ecs.version"), ecs::ECS_VERSION, "{name}");
            assert_eq!(get(&d, "kcdscope.schema_version"), &Value::from(kcd_schema::SCHEMA_VERSION), "{name}");
            assert!(KINDS.contains(&get(&d, "event.kind").as_str().unwrap_or("")), "{name}: event.kind");
            for (field, allowed) in [("event.category", CATEGORIES), ("event.type", TYPES)] {
                let vals = get(&d, field).as_array().unwrap_or_else(|| panic!("{name}: {field} is a list"));
                assert!(!vals.is_empty(), "{name}: {field} empty");
                for v in vals {
                    assert!(allowed.contains(&v.as_str().unwrap_or("")), "{name}: {field} {v}");
                }
            }
            if let Some(o) = text(&d, "event.outcome") {
                assert!(OUTCOMES.contains(&o.as_str()), "{name}: outcome {o}");
            }
            // Nothing outside ECS's own field sets but the kcdscope namespace.
            for k in d.as_object().expect("an object").keys() {
                assert!(
                    ["@timestamp", "ecs", "event", "kcdscope", "source", "destination", "network", "user", "related",
                     "error", "message", "rule", "tls", "http", "url", "user_agent"]
                        .contains(&k.as_str()),
                    "{name}: top-level {k} is neither ECS nor kcdscope.*"
                );
            }
            let mut found = Vec::new();
            secrets(&d, "", &mut found);
            assert!(found.is_empty(), "{name}: {found:?}");
            *actions.entry(text(&d, "event.action").unwrap_or_default()).or_default() += 1;
            ids.insert(text(&d, "event.id").unwrap_or_else(|| panic!("{name}: no event.id")));
        }
    }
    eprintln!("{n} ECS documents, actions: {actions:?}, {} distinct event.id", ids.len());
    assert_eq!(ids.len(), n, "event.id is not unique");
    assert!(n > 400, "only {n}");
    for a in [ecs::ACTION_TGT, ecs::ACTION_SERVICE_TICKET, ecs::ACTION_PREAUTH_FAILED, "finding"] {
        assert!(actions.contains_key(a), "no {a} among the captures");
    }
}

#[test]
fn kerberos_fields_agree_with_tshark() {
    require_tshark();
    let mut checked = 0;
    let mut effective = 0;
    for f in captures("krb5") {
        let ours: BTreeMap<u64, Vec<Value>> = ecs_of(&f)
            .into_iter()
            .filter(|d| get(d, "network.protocol") == "kerberos")
            .fold(BTreeMap::new(), |mut m, d| {
                m.entry(get(&d, "kcdscope.frame").as_u64().unwrap_or(0)).or_insert_with(Vec::new).push(d);
                m
            });
        for (frame, msg) in tshark_msgs(&f) {
            let name = format!("{} frame {frame} {}", rel(&f), msg.msg_type);
            let Some(d) = ours.get(&frame).and_then(|v| {
                v.iter().find(|d| get(d, "kcdscope.kerberos.msg_type").as_str() == Some(msg.msg_type.as_str()))
            }) else {
                panic!("{name}: no ECS document");
            };
            let action = text(d, "event.action").unwrap_or_default();
            let want = match (msg.msg_type.as_str(), msg.error_code) {
                (_, Some(24)) => Some(ecs::ACTION_PREAUTH_FAILED),
                ("AS-REQ" | "AS-REP", _) => Some(ecs::ACTION_TGT),
                ("TGS-REQ" | "TGS-REP", _) => Some(ecs::ACTION_SERVICE_TICKET),
                _ => None,
            };
            match want {
                Some(w) => assert_eq!(action, w, "{name}"),
                // An error answers the request it follows: the same vocabulary.
                None if msg.msg_type == "KRB-ERROR" => assert!(
                    [ecs::ACTION_TGT, ecs::ACTION_SERVICE_TICKET, ecs::ACTION_RENEW].contains(&action.as_str()),
                    "{name}: {action}"
                ),
                None => {}
            }
            let outcome = text(d, "event.outcome").unwrap_or_default();
            match (msg.msg_type.as_str(), msg.error_code) {
                ("KRB-ERROR", Some(25)) => assert_eq!(outcome, "unknown", "{name}"),
                ("KRB-ERROR", Some(_)) => assert_eq!(outcome, "failure", "{name}"),
                ("AS-REP" | "TGS-REP", _) => assert_eq!(outcome, "success", "{name}"),
                _ => {}
            }
            if let Some(code) = msg.error_code {
                assert_eq!(get(d, "kcdscope.kerberos.error.code").as_i64(), Some(code), "{name}");
                let ecode = text(d, "error.code").unwrap_or_default();
                assert!(ecode.starts_with("KDC_ERR_") || ecode.starts_with("KRB_"), "{name}: {ecode}");
            }
            // An enterprise name ("alice@lab.test") is split at its last '@'; any other
            // name takes the message's realm as its domain.
            let split = |n: &str, realm: Option<String>| match n.rsplit_once('@') {
                Some((u, d)) => (Some(u.to_string()), Some(d.to_string())),
                None => (Some(n.to_string()), realm),
            };
            if let Some((_, cname)) = &msg.cname {
                let (u, dom) = split(cname, msg.crealm.clone().or_else(|| msg.realm.clone()));
                assert_eq!(text(d, "user.name"), u, "{name}: user.name");
                assert_eq!(text(d, "user.domain"), dom, "{name}: user.domain");
            }
            if let Some((_, user, realm)) = &msg.for_user {
                let (u, dom) = split(user, Some(realm.clone()));
                assert_eq!(text(d, "user.effective.name"), u, "{name}");
                assert_eq!(text(d, "user.effective.domain"), dom, "{name}");
                effective += 1;
            }
            checked += 1;
        }
    }
    eprintln!("{checked} Kerberos messages checked against tshark, {effective} with PA-FOR-USER");
    assert!(checked > 100, "only {checked}");
    assert!(effective > 0, "no S4U2Self request among the captures");
}

#[test]
fn event_id_is_the_same_in_every_replay() {
    let f = &captures("krb5/mit")[0];
    let ids = |docs: Vec<Value>| docs.iter().map(|d| text(d, "event.id")).collect::<Vec<_>>();
    let (a, b) = (ids(ecs_of(f)), ids(ecs_of(f)));
    assert!(!a.is_empty() && a.iter().all(|i| i.as_ref().is_some_and(|i| i.len() == 32)));
    assert_eq!(a, b);
}
