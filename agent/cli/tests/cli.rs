//! The `kcdscope` command as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn kcdscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kcdscope"))
        .args(args)
        .output()
        .expect("runs")
}

fn capture(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../captures")
        .join(rel)
        .display()
        .to_string()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kcdscope-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d.join(name)
}

fn lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect()
}

#[test]
fn json_output_is_one_object_per_message_and_the_same_every_time() {
    let f = capture("krb5/mit-lab/d_response_too_big.pcap");
    let a = kcdscope(&["replay", &f, "--json"]);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let events = lines(&a);
    // tshark on this file: AS-REQ, ERR25, AS-REQ, ERR52, AS-REQ(TCP), AS-REP, TGS-REQ, ERR52, TGS-REQ(TCP), TGS-REP
    assert_eq!(events.len(), 10);
    assert!(events.iter().all(|e| e["event_type"] == "krb5"));
    let b = kcdscope(&["replay", &f, "--json"]);
    assert_eq!(a.stdout, b.stdout, "same input, same bytes");
    let summary = String::from_utf8_lossy(&a.stderr);
    assert!(summary.contains("10 Kerberos messages"), "{summary}");
    assert!(
        summary.contains("52 KRB_ERR_RESPONSE_TOO_BIG 2"),
        "{summary}"
    );
    let out = tmp("events.ndjson");
    let c = kcdscope(&["replay", &f, "-o", out.to_str().expect("utf-8"), "-q"]);
    assert!(c.status.success() && c.stderr.is_empty());
    assert_eq!(std::fs::read(&out).expect("written"), a.stdout);
}

#[test]
fn standard_input_and_a_capture_split_in_two_files() {
    let f = capture("krb5/samba-lab/target_not_allowed.pcap");
    let whole = kcdscope(&["replay", &f, "--json", "-q"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kcdscope"))
        .args(["replay", "-", "--json", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("runs");
    std::io::Write::write_all(
        child.stdin.as_mut().expect("stdin"),
        &std::fs::read(&f).expect("capture"),
    )
    .expect("writes");
    drop(child.stdin.take());
    let piped = child.wait_with_output().expect("ends");
    let strip = |o: &Output| {
        lines(o)
            .into_iter()
            .map(|mut e| {
                e.as_object_mut().map(|m| m.remove("pcap_file"));
                e
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&piped), strip(&whole));
    // Cut the file in the middle of a TCP connection, as a rotating capture would.
    let bytes = std::fs::read(&f).expect("capture");
    let mut records = vec![24usize];
    while let Some(&at) = records.last() {
        if at + 16 > bytes.len() {
            break;
        }
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
        records.push(at + 16 + len);
    }
    let cut = records[records.len() - 6];
    let (one, two) = (tmp("part1.pcap"), tmp("part2.pcap"));
    std::fs::write(&one, &bytes[..cut]).expect("write");
    let mut second = bytes[..24].to_vec();
    second.extend_from_slice(&bytes[cut..]);
    std::fs::write(&two, &second).expect("write");
    let split = kcdscope(&[
        "replay",
        one.to_str().expect("utf-8"),
        two.to_str().expect("utf-8"),
        "--json",
        "-q",
    ]);
    let msgs = |o: &Output| {
        lines(o)
            .into_iter()
            .map(|e| e["krb5"].clone())
            .collect::<Vec<_>>()
    };
    let (a, b) = (msgs(&split), msgs(&whole));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["msg_type"], y["msg_type"]);
        assert_eq!(x["error"]["code"], y["error"]["code"]);
        assert_eq!(x["request"]["latency_us"], y["request"]["latency_us"]);
    }
}

#[test]
fn unreadable_inputs_are_named_and_the_rest_still_processed() {
    let garbage = tmp("garbage.pcap");
    std::fs::write(&garbage, b"not a capture at all\n".repeat(50)).expect("write");
    let good = capture("krb5/mit/c_unknown_client.pcap");
    let o = kcdscope(&[
        "replay",
        "/nonexistent/missing.pcap",
        garbage.to_str().expect("utf-8"),
        &good,
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/nonexistent/missing.pcap") && err.contains("No such file"),
        "{err}"
    );
    assert!(
        err.contains("garbage.pcap: not a pcap or pcapng file"),
        "{err}"
    );
    assert_eq!(
        lines(&o).len(),
        2,
        "the good file's AS-REQ and KRB-ERROR are still reported"
    );
}

#[test]
fn a_truncated_file_is_an_anomaly_not_a_failure() {
    let bytes = std::fs::read(capture("krb5/mit-lab/a_kinit_kvno.pcap")).expect("capture");
    let t = tmp("truncated.pcap");
    std::fs::write(&t, &bytes[..bytes.len() - 100]).expect("write");
    let o = kcdscope(&["replay", t.to_str().expect("utf-8"), "--json"]);
    assert!(o.status.success());
    let events = lines(&o);
    assert_eq!(
        events.last().map(|e| e["anomaly"]["kind"].clone()),
        Some("pcap_truncated".into())
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("pcap_truncated 1"));
}

#[test]
fn with_no_arguments_it_replays_the_built_in_incidents() {
    let o = kcdscope(&[]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("KDC_ERR_BADOPTION (13)"), "{text}");
    assert!(text.contains("KRB_ERR_RESPONSE_TOO_BIG (52)"), "{text}");
    let count = kcdscope(&["replay", "--demo", "--count"]);
    assert!(count.status.success() && count.stdout.is_empty());
    assert!(String::from_utf8_lossy(&count.stderr).contains("9 files"));
}
