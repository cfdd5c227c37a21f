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
    assert_eq!(events.len(), 11);
    assert!(events[..10].iter().all(|e| e["event_type"] == "krb5"));
    // ... and both 52s were followed by the same request over TCP: one note.
    assert_eq!(events[10]["event_type"], "finding");
    assert_eq!(events[10]["finding"]["id"], "krb.response_too_big.tcp_retry");
    assert_eq!(events[10]["finding"]["count"], 2);
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
                if let Some(ev) = e.pointer_mut("/finding/evidence").and_then(|v| v.as_array_mut()) {
                    ev.iter_mut().for_each(|x| {
                        x.as_object_mut().map(|m| m.remove("pcap_file"));
                    });
                }
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
            .filter(|e| e["event_type"] == "krb5")
            .map(|e| e["krb5"].clone())
            .collect::<Vec<_>>()
    };
    let findings = |o: &Output| {
        lines(o)
            .into_iter()
            .filter(|e| e["event_type"] == "finding")
            .map(|e| (e["finding"]["id"].clone(), e["finding"]["subject"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(findings(&split), findings(&whole));
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
    let events = lines(&o);
    assert_eq!(
        events.iter().filter(|e| e["event_type"] == "krb5").count(),
        2,
        "the good file's AS-REQ and KRB-ERROR are still reported"
    );
    assert_eq!(events[2]["finding"]["id"], "krb.principal_unknown");
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
fn with_no_arguments_it_reports_on_the_built_in_incidents() {
    let o = kcdscope(&[]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("kcdscope incident report"), "{text}");
    for want in [
        "krb.s4u2proxy.protocol_transition_not_allowed",
        "krb.response_too_big.tcp_blocked",
        "Fix: ",
        "KDCS",
        "PRINCIPALS",
        "S4U2Proxy -> HTTP/exchange.lab.test@LAB.TEST",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
    let same = kcdscope(&["replay", "--demo", "--report"]);
    assert_eq!(same.stdout, o.stdout);
    let listing = kcdscope(&["replay", "--demo"]);
    let text = String::from_utf8_lossy(&listing.stdout);
    assert!(text.contains("KDC_ERR_BADOPTION (13)"), "{text}");
    assert!(text.contains("KRB_ERR_RESPONSE_TOO_BIG (52)"), "{text}");
    let count = kcdscope(&["replay", "--demo", "--count"]);
    assert!(count.status.success() && count.stdout.is_empty());
    assert!(String::from_utf8_lossy(&count.stderr).contains("10 files"));
}

#[test]
fn fail_on_sets_the_exit_status_for_pipelines() {
    let healthy = capture("krb5/samba-lab/ok_http.pcap"); // one note: 52 then TCP
    let skew = capture("krb5/mit-lab/e_skew_as_timesync_default.pcap"); // a warning
    let broken = capture("krb5/mit-lab/d_tcp_blocked.pcap"); // an error
    let code = |f: &str, level: &str| kcdscope(&["replay", f, "--count", "--fail-on", level]).status.code();
    assert_eq!(code(&healthy, "warning"), Some(0));
    assert_eq!(code(&healthy, "error"), Some(0));
    assert_eq!(code(&skew, "warning"), Some(3));
    assert_eq!(code(&skew, "error"), Some(0));
    assert_eq!(code(&broken, "error"), Some(3));
    assert_eq!(kcdscope(&["replay", &broken, "--count"]).status.code(), Some(0));
    let bad = kcdscope(&["replay", &broken, "--fail-on", "sometimes"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("possible values: warning, error"));
}

#[test]
fn the_report_fits_80_columns_and_is_plain_in_a_pipe() {
    let all: Vec<String> = ["mit", "mit-lab", "samba-lab"]
        .iter()
        .flat_map(|d| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../captures/krb5").join(d);
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .expect("captures")
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
                .map(|p| p.display().to_string())
                .collect();
            v.sort();
            v
        })
        .collect();
    for f in &all {
        let o = kcdscope(&["replay", f, "--report", "-q"]);
        assert!(o.status.success());
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(!text.contains('\x1b'), "no colour in a pipe: {f}");
        for l in text.lines() {
            assert!(l.chars().count() <= 80, "{f}: {} columns: {l}", l.chars().count());
        }
    }
    let o = kcdscope(&["replay", "--report", "-q"].iter().copied().chain(all.iter().map(String::as_str)).collect::<Vec<_>>());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.lines().all(|l| l.chars().count() <= 80));
    let errors = text.find("ERROR  ").expect("errors");
    let warnings = text.find("WARNING").expect("warnings");
    let notes = text.find("INFO   ").expect("notes");
    assert!(errors < warnings && warnings < notes, "sorted by severity");
}

/// In a real terminal (tmux), severities are in colour; NO_COLOR turns it off.
#[test]
fn colour_only_on_a_terminal() {
    let tmux = |session: &str, env: &str| {
        let f = capture("krb5/mit-lab/d_tcp_blocked.pcap");
        let bin = env!("CARGO_BIN_EXE_kcdscope");
        let cmd = format!("{env} {bin} replay --report -q {f}; echo KCDSCOPE-DONE; sleep 30");
        // One server per session (its own socket): a second session started while the first
        // server is shutting down fails with "server exited unexpectedly".
        let st = Command::new("tmux")
            .args(["-L", session, "-f", "/dev/null", "new-session", "-d", "-s", session, "-x", "80", "-y", "200", &cmd])
            .status()
            .expect("tmux is needed for this test (tests/run installs it)");
        assert!(st.success());
        let mut screen = String::new();
        for _ in 0..100 {
            let o = Command::new("tmux")
                .args(["-L", session, "capture-pane", "-p", "-e", "-J", "-t", session, "-S", "-200"])
                .output()
                .expect("capture-pane");
            screen = String::from_utf8_lossy(&o.stdout).to_string();
            if screen.contains("KCDSCOPE-DONE") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = Command::new("tmux").args(["-L", session, "kill-server"]).status();
        assert!(screen.contains("KCDSCOPE-DONE"), "{screen}");
        screen
    };
    let id = std::process::id();
    let coloured = tmux(&format!("kcd-colour-{id}"), "");
    assert!(coloured.contains("\x1b[31mERROR"), "red severity: {coloured}");
    let plain = tmux(&format!("kcd-plain-{id}"), "NO_COLOR=1");
    assert!(plain.contains("ERROR   krb.response_too_big.tcp_blocked"), "{plain}");
    assert!(!plain.contains("\x1b[31m"), "{plain}");
}

#[test]
fn syslog_ships_the_file_output_and_says_what_is_wrong_with_its_url() {
    let cap = capture("krb5/mit-lab/a_kinit_kvno.pcap");
    let cases: [(&[&str], &str); 5] = [
        (&["--syslog", "tcp://127.0.0.1:514"], "ship the -o FILE: give one"),
        (&["-o", "x", "--syslog", "http://127.0.0.1:514"], "expected tcp://, tls:// or udp://HOST:PORT"),
        (&["-o", "x", "--syslog", "tcp://127.0.0.1"], "expected HOST:PORT"),
        (&["-o", "x", "--syslog", "udp://127.0.0.1:x"], "is not a port"),
        (&["-o", "x", "--syslog", "tls://localhost:6514"], "--syslog-ca FILE is needed for TLS"),
    ];
    for (args, want) in cases {
        let spool = tmp("syslog.ndjson");
        let args: Vec<&str> = args.iter().map(|a| if *a == "x" { spool.to_str().unwrap_or("x") } else { a }).collect();
        let o = kcdscope(&[&["replay", "--count", cap.as_str()][..], &args].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{args:?}: {err}");
    }
}
