//! `kcdscope watch` live, against tcpdump on the same wire (tests/lab/watch.sh): real MIT
//! clients and KDCs in network namespaces, watched at once by the eBPF probe, by the
//! libpcap backend and by tcpdump. The live events must be those of `kcdscope replay` on
//! tcpdump's capture (same messages, fields and findings; times within a tolerance), and
//! replaying watch's own --write-pcap must give its live events exactly.
//!
//! Needs root: `tests/run` runs it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use kcd_tests::{kcdscope_bin, repo_root, require_tshark};
use serde_json::Value;

/// Largest difference allowed between the probe's (or libpcap's) time and tcpdump's for
/// the same packet: they are stamped at different points of the same stack.
const TOLERANCE_NS: i64 = 20_000_000;

fn ndjson(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", p.display())))
        .collect()
}

fn replay(files: &[PathBuf]) -> Vec<Value> {
    let out = Command::new(kcdscope_bin()).arg("replay").args(files).args(["--json", "-q"]).output().expect("replay runs");
    assert!(out.status.success(), "replay failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("NDJSON")).collect()
}

fn ns(v: &Value) -> i64 {
    let s = v["timestamp"].as_str().expect("timestamp");
    chrono::DateTime::parse_from_rfc3339(s).expect("RFC 3339").timestamp_nanos_opt().expect("in range")
}

/// An event without what depends on where the packets were timed and numbered (time,
/// frame number, file name, and the latency and clock skew measured from packet times,
/// which `timing` compares within the tolerance).
fn fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        for k in ["timestamp", "frame", "pcap_file"] {
            o.remove(k);
        }
    }
    if let Some(r) = v.pointer_mut("/krb5/request").and_then(Value::as_object_mut) {
        r.remove("latency_us");
        r.remove("frame");
    }
    if let Some(e) = v.pointer_mut("/krb5/error").and_then(Value::as_object_mut) {
        e.remove("skew_seconds");
    }
    v
}

/// The time-derived fields of two events for the same message, as nanoseconds apart.
fn timing(a: &Value, b: &Value) -> i64 {
    let lat = |v: &Value| v.pointer("/krb5/request/latency_us").and_then(Value::as_i64).unwrap_or(0) * 1000;
    let skew = |v: &Value| (v.pointer("/krb5/error/skew_seconds").and_then(Value::as_f64).unwrap_or(0.0) * 1e9) as i64;
    (ns(a) - ns(b)).abs().max((lat(a) - lat(b)).abs()).max((skew(a) - skew(b)).abs())
}

fn of_type<'a>(events: &'a [Value], t: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event_type"] == t).collect()
}

/// Findings by what they say and whom they are about. Not their counts: watch emits a
/// finding when it first appears, a replay once at the end.
fn findings(events: &[Value]) -> BTreeSet<String> {
    of_type(events, "finding").iter().map(|f| format!("{} {}", f["finding"]["id"], f["finding"]["subject"])).collect()
}

fn same_as_tcpdump(name: &str, live: &[Value], reference: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    let (a, b) = (of_type(live, "krb5"), of_type(reference, "krb5"));
    if a.len() != b.len() {
        problems.push(format!("{name}: {} Kerberos messages live, {} in tcpdump's capture", a.len(), b.len()));
    }
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        if fields(x) != fields(y) {
            problems.push(format!("{name}: message {i} differs:\n  live    {}\n  tcpdump {}", fields(x), fields(y)));
        }
        let d = timing(x, y);
        if d > TOLERANCE_NS {
            problems.push(format!("{name}: message {i}: its time, latency or clock skew is {d} ns away from tcpdump's"));
        }
    }
    let (fa, fb) = (findings(live), findings(reference));
    if fa != fb {
        problems.push(format!("{name}: findings differ:\n  live    {fa:?}\n  tcpdump {fb:?}"));
    }
    if of_type(live, "anomaly").len() != of_type(reference, "anomaly").len() {
        problems.push(format!("{name}: anomalies live {:?}, from tcpdump's capture {:?}", of_type(live, "anomaly"), of_type(reference, "anomaly")));
    }
    problems
}

#[test]
#[ignore = "needs root and network namespaces; tests/run runs it"]
fn watch_live_gives_the_events_of_a_replayed_tcpdump_capture() {
    require_tshark();
    let out = std::env::temp_dir().join(format!("kcd-lab-watch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let st = Command::new("bash").arg(repo_root().join("tests/lab/watch.sh")).arg("run").arg(&out).arg(kcdscope_bin()).status().expect("bash runs");
    let checks = std::fs::read_to_string(out.join("CHECKS.txt")).unwrap_or_default();
    let failed: Vec<&str> = checks.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(st.success() && failed.is_empty() && checks.lines().count() >= 30, "lab checks failed:\n{}\n(all: {})", failed.join("\n"), out.display());

    let reference = replay(&[out.join("tcpdump.pcap")]);
    let krb5 = of_type(&reference, "krb5");
    // The lab's flows: UDP and TCP, errors 25, 24, 52, 13, 7, and S4U2Self/S4U2Proxy.
    assert!(krb5.len() >= 40, "tcpdump's capture holds {} Kerberos messages", krb5.len());
    for code in [25, 24, 52, 13, 7] {
        assert!(krb5.iter().any(|e| e["krb5"]["error"]["code"] == code), "no error {code} in tcpdump's capture");
    }
    assert!(krb5.iter().any(|e| e["proto"] == "TCP"), "no Kerberos over TCP");
    assert!(!findings(&reference).is_empty(), "the refused S4U2Proxy gives findings");

    let mut problems = Vec::new();
    for name in ["ebpf", "pcap"] {
        let live = ndjson(&out.join(format!("{name}.ndjson")));
        problems.extend(same_as_tcpdump(name, &live, &reference));
        // --write-pcap, replayed: the live events exactly, times included.
        let again = replay(&[out.join(format!("{name}.pcapng"))]);
        let strip = |v: &[Value]| -> Vec<Value> {
            v.iter()
                .filter(|e| e["event_type"] != "finding")
                .map(|e| {
                    let mut e = e.clone();
                    if let Some(o) = e.as_object_mut() {
                        o.remove("pcap_file");
                    }
                    e
                })
                .collect()
        };
        if strip(&live) != strip(&again) {
            problems.push(format!("{name}: replaying its --write-pcap does not give its live events"));
        }
        if findings(&live) != findings(&again) {
            problems.push(format!("{name}: replaying its --write-pcap gives other findings"));
        }
    }
    // TLS on a port not watched, followed from its ClientHello: the events of its TLS
    // handshake, live, are those of tcpdump's capture of the whole connection replayed.
    let live: Vec<Value> = ndjson(&out.join("tls.out")).into_iter().filter(|e| e["event_type"] == "tls").collect();
    let reference: Vec<Value> = replay(&[out.join("tls.tcpdump.pcap")]).into_iter().filter(|e| e["event_type"] == "tls").collect();
    if live.is_empty() || live.len() != reference.len() {
        problems.push(format!("TLS on 8443: {} TLS events live, {} from tcpdump's capture", live.len(), reference.len()));
    }
    for (i, (x, y)) in live.iter().zip(&reference).enumerate() {
        if fields(x) != fields(y) {
            problems.push(format!("TLS on 8443: event {i} differs:\n  live    {}\n  tcpdump {}", fields(x), fields(y)));
        }
        if (ns(x) - ns(y)).abs() > TOLERANCE_NS {
            problems.push(format!("TLS on 8443: event {i}: its time is more than the tolerance away from tcpdump's"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let _ = std::fs::remove_dir_all(&out);
}
