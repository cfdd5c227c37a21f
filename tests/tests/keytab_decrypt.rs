//! `--keytab`: tickets and authenticators opened with the Samba lab's keytab, checked against
//! independent sources: the REMOTE_USER Apache + mod_auth_gssapi established when the
//! captures were recorded (captures/krb5/samba-lab/CHECKS.txt), and tshark decrypting the
//! same packets with the same keytab (`-K`), field by field. A keytab made by MIT's ktutil
//! for the same account, kvno and etype from another password must not open anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use kcd_decode::keytab::Keytab;
use kcd_decode::Config;
use kcd_tests::{replay_diagnosed, replay_json, repo_root, require_tshark};
use serde_json::Value;

fn lab() -> PathBuf {
    repo_root().join("captures/krb5/samba-lab")
}

fn keytab(name: &str) -> Arc<Keytab> {
    let raw = std::fs::read(lab().join(name)).expect("keytab readable");
    Arc::new(Keytab::parse(&raw).expect("keytab parses"))
}

fn cfg(k: &str) -> Config {
    Config { keytab: Some(keytab(k)), ..Config::default() }
}

/// REMOTE_USER per case, as recorded in CHECKS.txt from Apache's answer.
fn remote_users() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(lab().join("CHECKS.txt")).expect("CHECKS.txt");
    let mut m = BTreeMap::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("PASS ") else { continue };
        let Some((case, what)) = rest.split_once(": ") else { continue };
        let user = if let Some(u) = what.split("REMOTE_USER=").nth(1) {
            u.split_whitespace().next()
        } else if let Some(u) = what.strip_prefix("Apache REMOTE_USER keeps the enterprise form ") {
            u.split_whitespace().next()
        } else {
            None
        };
        if let Some(u) = user {
            m.insert(case.to_string(), u.to_string());
        }
    }
    m
}

/// The HTTP requests with a Kerberos AP-REQ: (request frame, status, kerberos summary).
fn ap_reqs(events: &[Value]) -> Vec<(u64, Option<u64>, Value)> {
    events
        .iter()
        .filter_map(|e| {
            let h = e.get("http")?;
            let k = h.get("authorization")?.get("kerberos")?;
            Some((h["request_frame"].as_u64()?, h["status"].as_u64(), k.clone()))
        })
        .collect()
}

/// tshark's decryption of one frame: column -> values.
fn tshark_decrypted(pcap: &Path, keytab: &str, frame: u64, cols: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(pcap).arg("-K").arg(lab().join(keytab));
    cmd.args(["-o", "kerberos.decrypt:TRUE", "-Y", &format!("frame.number=={frame}")]);
    cmd.args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=;"]);
    for c in cols {
        cmd.args(["-e", c]);
    }
    let out = cmd.output().expect("tshark runs");
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_string();
    cols.iter()
        .zip(line.split('|').chain(std::iter::repeat("")))
        .map(|(c, v)| (c.to_string(), if v.is_empty() { Vec::new() } else { v.split(';').map(str::to_string).collect() }))
        .collect()
}

/// "2026-11-23T01:18:59.282652000Z" -> unix seconds and microseconds.
fn ours(t: &Value) -> (i64, u32) {
    let d = chrono::DateTime::parse_from_rfc3339(t.as_str().expect("time")).expect("rfc3339");
    (d.timestamp(), d.timestamp_subsec_micros())
}

/// "Nov 23, 2026 01:18:59.000000000 UTC" -> unix seconds.
fn theirs(t: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(t, "%b %d, %Y %H:%M:%S%.f UTC").expect("tshark time").and_utc().timestamp()
}

fn http_pcaps() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for d in [lab(), lab().join("nofast")] {
        for e in std::fs::read_dir(&d).expect("dir").flatten() {
            let p = e.path();
            // NAME_http.pcap is port 80 of the run whose port 88 is NAME.pcap ("ok_http.pcap"
            // itself is port 88 of the case "ok_http").
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
            if name.strip_suffix("_http.pcap").is_some_and(|c| d.join(format!("{c}.pcap")).exists()) {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

#[test]
fn the_ticket_client_is_apaches_remote_user_and_tsharks_decryption() {
    require_tshark();
    let users = remote_users();
    assert!(users.len() >= 5, "CHECKS.txt names REMOTE_USER for the HTTP cases: {users:?}");
    let mut checked = 0;
    for pcap in http_pcaps() {
        let (events, stats) = replay_json(std::slice::from_ref(&pcap), cfg("domain.keytab"));
        let case = pcap.file_name().and_then(|n| n.to_str()).unwrap_or("").trim_end_matches("_http.pcap").to_string();
        let reqs = ap_reqs(&events);
        assert!(!reqs.is_empty(), "{case}: no AP-REQ");
        assert_eq!(stats.keytab.tickets_decrypted as usize, reqs.len(), "{case}");
        assert_eq!(stats.keytab.tickets_not_in_keytab + stats.keytab.decode_failures, 0, "{case}");
        for (frame, status, k) in reqs {
            let d = &k["decrypted"];
            assert_eq!(k["key_in_keytab"], true, "{case} frame {frame}");
            assert_eq!(d["key_principal"], "EXCHANGE$@LAB.TEST (kvno 2, etype 18)", "{case}");
            // Apache's REMOTE_USER for the request it accepted.
            if status == Some(200) {
                assert_eq!(d["client"].as_str(), users.get(&case).map(String::as_str), "{case} frame {frame}");
            }
            assert_eq!(d["authenticator_client"], d["client"], "{case}");
            let t = tshark_decrypted(
                &pcap,
                "domain.keytab",
                frame,
                &[
                    "kerberos.CNameString",
                    "kerberos.crealm",
                    "kerberos.authtime",
                    "kerberos.endtime",
                    "kerberos.ctime",
                    "kerberos.cusec",
                    "kerberos.pac.upn.upn_name",
                    "kerberos.pac.upn.dns_name",
                    "kerberos.pac.upn.samaccountname",
                    "kerberos.pac.name",
                    "netlogon.num_rids",
                ],
            );
            // Ticket's cname, then the authenticator's (MIT escapes '@' in a component).
            let client = d["client"].as_str().expect("client");
            let (name, realm) = client.rsplit_once('@').expect("name@realm");
            let name = name.replace("\\@", "@");
            assert_eq!(t["kerberos.CNameString"], [name.clone(), name], "{case} frame {frame}");
            assert_eq!(t["kerberos.crealm"], [realm, realm], "{case}");
            assert_eq!(ours(&d["authtime"]).0, theirs(&t["kerberos.authtime"][0]), "{case}");
            assert_eq!(ours(&d["endtime"]).0, theirs(&t["kerberos.endtime"][0]), "{case}");
            let (ctime, cusec) = ours(&d["authenticator_time"]);
            assert_eq!(ctime, theirs(&t["kerberos.ctime"][0]), "{case}");
            assert_eq!(cusec.to_string(), t["kerberos.cusec"][0], "{case}");
            let pac = &d["pac"];
            assert_eq!(pac["upn"], t["kerberos.pac.upn.upn_name"][0], "{case}");
            assert_eq!(pac["dns_domain"], t["kerberos.pac.upn.dns_name"][0], "{case}");
            assert_eq!(pac["sam_name"], t["kerberos.pac.upn.samaccountname"][0], "{case}");
            assert_eq!(pac["logon_name"], t["kerberos.pac.name"][0], "{case}");
            assert_eq!(pac["group_count"].to_string(), t["netlogon.num_rids"][0], "{case}");
            // Recorded a second after the tickets were issued: neither expired nor skewed.
            assert_eq!(d["expired"], false);
            assert_eq!(d["clock_skew_seconds"], 0);
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} AP-REQs checked");
}

/// Port 88: the S4U2Self and S4U2Proxy tickets the KDC issued, and the TGT each TGS-REQ
/// presents, opened with the keys of the accounts they are for; tshark agrees on the
/// clients.
#[test]
fn kdc_tickets_open_with_their_accounts_keys() {
    require_tshark();
    let pcap = lab().join("ok_http.pcap");
    let (events, stats) = replay_json(std::slice::from_ref(&pcap), cfg("domain.keytab"));
    let mut seen = Vec::new();
    for e in &events {
        let Some(k) = e.get("krb5") else { continue };
        let Some(d) = k.get("decrypted") else { continue };
        assert_eq!(d["key_in_keytab"], true, "{e}");
        let frame = e["frame"].as_u64().expect("frame");
        let t = tshark_decrypted(&pcap, "domain.keytab", frame, &["kerberos.CNameString"]);
        let name = d["client"].as_str().and_then(|c| c.rsplit_once('@')).map(|x| x.0.to_string()).expect("client");
        assert!(t["kerberos.CNameString"].contains(&name), "frame {frame}: tshark {:?}, ours {name}", t["kerberos.CNameString"]);
        seen.push((k["msg_type"].as_str().unwrap_or("").to_string(), d["key_principal"].as_str().unwrap_or("").to_string(), d["client"].as_str().unwrap_or("").to_string()));
    }
    let has = |m: &str, key: &str, client: &str| seen.iter().any(|s| s.0 == m && s.1.starts_with(key) && s.2 == client);
    // S4U2Self: a ticket for the service account, client alice.
    assert!(has("TGS-REP", "svc_awseg@LAB.TEST", "alice@LAB.TEST"), "{seen:?}");
    // S4U2Proxy: a ticket for Exchange's account, client alice.
    assert!(has("TGS-REP", "EXCHANGE$@LAB.TEST", "alice@LAB.TEST"), "{seen:?}");
    // Each TGS-REQ presents the service account's TGT (krbtgt's key) with an authenticator.
    assert!(has("TGS-REQ", "krbtgt@LAB.TEST", "svc_awseg@LAB.TEST"), "{seen:?}");
    assert!(stats.keytab.tickets_decrypted >= 5 && stats.keytab.decode_failures == 0, "{:?}", stats.keytab);
}

/// A keytab whose key for EXCHANGE$ (kvno 2, aes256) comes from another password, written
/// by MIT ktutil: nothing opens, tshark cannot decrypt either, and the refused request is
/// explained as a ticket in a key the server lacks.
#[test]
fn a_wrong_keytab_opens_nothing_and_the_finding_fires() {
    require_tshark();
    let pcap = lab().join("http_refused_http.pcap");
    let (events, stats) = replay_json(std::slice::from_ref(&pcap), cfg("wrong-exchange.keytab"));
    let reqs = ap_reqs(&events);
    assert_eq!(reqs.len(), 2);
    for (frame, _, k) in &reqs {
        assert_eq!(k["key_in_keytab"], false);
        assert!(k["decrypted"].get("client").is_none());
        assert!(k["decrypted"]["error"].as_str().is_some_and(|e| e.contains("EXCHANGE$@LAB.TEST")), "{k}");
        let t = tshark_decrypted(&pcap, "wrong-exchange.keytab", *frame, &["kerberos.CNameString"]);
        assert!(t["kerberos.CNameString"].is_empty(), "tshark decrypted with the wrong key: {t:?}");
    }
    assert_eq!((stats.keytab.tickets_decrypted, stats.keytab.tickets_not_in_keytab), (0, 2));
    let (_, findings) = replay_diagnosed(std::slice::from_ref(&pcap), cfg("wrong-exchange.keytab"), kcd_correlate::Config::default());
    assert!(findings.iter().any(|f| f.id == "exchange.ticket_key_unknown"), "{findings:?}");
    // With the right keytab the same 401 is not blamed on the key.
    let (_, findings) = replay_diagnosed(std::slice::from_ref(&pcap), cfg("domain.keytab"), kcd_correlate::Config::default());
    assert!(!findings.iter().any(|f| f.id == "exchange.ticket_key_unknown"), "{findings:?}");
    let refused = findings.iter().find(|f| f.id == "exchange.ticket_refused").expect("ticket_refused");
    // The refused token is the accepted one sent again: said so.
    assert!(format!("{refused:?}").contains("replayed token"), "{refused:?}");
}

/// http_refused_http: Apache accepted the delegated token (200) and refused the same token
/// sent again (401, its replay cache): both carry the same authenticator id.
#[test]
fn a_replayed_token_has_the_same_authenticator_id() {
    let pcap = lab().join("http_refused_http.pcap");
    let (events, _) = replay_json(std::slice::from_ref(&pcap), Config::default());
    let reqs = ap_reqs(&events);
    let ids: Vec<(Option<u64>, String)> = reqs.iter().map(|(_, s, k)| (*s, k["authenticator_id"].as_str().unwrap_or("").to_string())).collect();
    assert_eq!(ids.len(), 2);
    assert_eq!((ids[0].0, ids[1].0), (Some(200), Some(401)));
    assert_eq!(ids[0].1, ids[1].1);
    assert_eq!(ids[0].1.len(), 16);
    // Different tokens of another run differ.
    let (other, _) = replay_json(&[lab().join("ok_http_http.pcap")], Config::default());
    let o = ap_reqs(&other);
    assert_ne!(o[0].2["authenticator_id"].as_str(), Some(ids[0].1.as_str()));
}

/// A ticket Exchange accepted cannot be in a key Exchange lacks: with a keytab that is not
/// Exchange's (the wrong-password EXCHANGE$ key), a request Apache answered 200
/// (ok_http_http, REMOTE_USER=alice@LAB.TEST in CHECKS.txt) gives no
/// exchange.ticket_key_unknown, although the ticket does not open with that keytab. In
/// http_refused_http the finding rests on the 401 alone, not on the 200 before it.
#[test]
fn a_ticket_exchange_accepted_is_not_blamed_on_its_key() {
    let pcap = lab().join("ok_http_http.pcap");
    let (events, stats) = replay_json(std::slice::from_ref(&pcap), cfg("wrong-exchange.keytab"));
    let reqs = ap_reqs(&events);
    assert_eq!(reqs.len(), 1);
    assert_eq!((reqs[0].1, &reqs[0].2["key_in_keytab"]), (Some(200), &Value::Bool(false)));
    assert_eq!(stats.keytab.tickets_not_in_keytab, 1);
    let (_, findings) = replay_diagnosed(std::slice::from_ref(&pcap), cfg("wrong-exchange.keytab"), kcd_correlate::Config::default());
    assert!(!findings.iter().any(|f| f.id == "exchange.ticket_key_unknown"), "{findings:?}");

    let pcap = lab().join("http_refused_http.pcap");
    let (events, _) = replay_json(std::slice::from_ref(&pcap), cfg("wrong-exchange.keytab"));
    let refused: Vec<u64> = ap_reqs(&events).iter().filter(|r| r.1 == Some(401)).map(|r| r.0).collect();
    assert_eq!(refused.len(), 1);
    let (_, findings) = replay_diagnosed(std::slice::from_ref(&pcap), cfg("wrong-exchange.keytab"), kcd_correlate::Config::default());
    let f = findings.iter().find(|f| f.id == "exchange.ticket_key_unknown").expect("ticket_key_unknown for the 401");
    assert_eq!(f.count, 1, "{f:?}");
    assert!(f.explanation.contains("answered 401") && !f.explanation.contains("answered 200"), "{f:?}");
}
