//! Helpers shared by the end-to-end tests: replaying captures through the real pipeline,
//! and reading tshark's decode of the same files as an independent oracle.

#![allow(clippy::unwrap_used)] // test support: a failure here is a test failure

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use kcd_decode::{Config, Decoder};
use serde_json::Value;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The kcdscope binary `cargo test --workspace` built next to the test executables.
pub fn kcdscope_bin() -> PathBuf {
    // An explicit binary (an installed one, or one copied aside from a target dir that
    // other checkouts share) wins over the one beside the test.
    if let Some(p) = std::env::var_os("KCDSCOPE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join(format!("kcdscope{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} is missing: run cargo build -p kcdscope first", bin.display());
    bin
}

/// The load client (`kcd-load`) built beside kcdscope (`cargo test --workspace` builds it),
/// or KCD_LOAD_BIN.
pub fn kcd_load_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KCD_LOAD_BIN") {
        return PathBuf::from(p);
    }
    let p = kcdscope_bin().with_file_name(format!("kcd-load{}", std::env::consts::EXE_SUFFIX));
    assert!(p.exists(), "{} is missing: cargo build -p kcd-load", p.display());
    p
}

pub use lab::Lab;

/// A lab's `lab.env` (KEY=value lines written by its script) as a map.
pub fn lab_env(lab: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(lab.join("lab.env")).expect("lab.env");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Stops a child still running: SIGTERM, up to 10 s to finish (a gateway drains), then
/// SIGKILL. An exited child is left alone: its pid may belong to another process now.
pub fn stop(c: &mut Child) {
    if !matches!(c.try_wait(), Ok(None)) {
        return;
    }
    let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = c.kill();
    let _ = c.wait();
}

pub mod lab;
pub mod oracle;
pub mod pcap;
pub mod ship;
pub mod synth;

/// Every capture file under captures/ (sorted), optionally only those under `sub`.
pub fn captures(sub: &str) -> Vec<PathBuf> {
    captures_in(&repo_root().join("captures").join(sub))
}

/// Every capture file under `dir` (sorted).
pub fn captures_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The path relative to the repository, as events name it in tests.
pub fn rel(p: &Path) -> String {
    p.strip_prefix(repo_root())
        .unwrap_or(p)
        .display()
        .to_string()
}

/// Replays files through the decoder as `kcdscope replay` does and returns every event as
/// the JSON a consumer would read.
pub fn replay_json(files: &[PathBuf], cfg: Config) -> (Vec<Value>, kcd_decode::Stats) {
    let mut dec = Decoder::new(cfg);
    let mut events = Vec::new();
    let mut sink = |e: &kcd_schema::Event<'_>| events.push(serde_json::to_value(e).unwrap());
    for f in files {
        kcd_capture::replay_file(f, &rel(f), &mut dec, &mut sink).unwrap();
    }
    dec.finish(&mut sink);
    let stats = dec.stats().clone();
    (events, stats)
}

/// Replays files as `kcdscope replay --json` does (decoder, then correlator) and returns
/// the NDJSON and the findings.
pub fn replay_diagnosed(files: &[PathBuf], cfg: Config, diag: kcd_correlate::Config) -> (Vec<u8>, Vec<kcd_schema::Finding>) {
    let mut dec = Decoder::new(cfg);
    let mut corr = kcd_correlate::Correlator::new(diag);
    let mut out = Vec::new();
    let mut sink = |e: &kcd_schema::Event<'_>| {
        e.write_json(&mut out);
        out.push(b'\n');
        corr.event(e);
    };
    for f in files {
        kcd_capture::replay_file(f, &rel(f), &mut dec, &mut sink).unwrap();
    }
    dec.finish(&mut sink);
    corr.finish();
    let findings = corr.findings();
    for f in &findings {
        f.clone().into_event().write_json(&mut out);
        out.push(b'\n');
    }
    (out, findings)
}

pub fn krb5_events(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["event_type"] == "krb5")
        .collect()
}

/// "U:AS-REQ U:ERR25 T:AS-REP ..." as in the captures' INDEX files.
pub fn flow_signature(events: &[Value]) -> String {
    krb5_events(events)
        .iter()
        .map(|e| {
            let t = if e["proto"] == "TCP" { "T" } else { "U" };
            let k = &e["krb5"];
            match k["error"]["code"].as_i64() {
                Some(c) => format!("{t}:ERR{c}"),
                None => format!("{t}:{}", k["msg_type"].as_str().unwrap_or("?")),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Fails the test with a clear message when tshark is not installed.
pub fn require_tshark() {
    let ok = Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "tshark is needed for the oracle tests: apt-get install tshark (tests/run installs it when run as root)");
}

/// tshark's JSON for the Kerberos messages on the given ports, one Value per packet.
pub fn tshark_json(path: &Path, ports: &[u16]) -> Vec<Value> {
    let filter = ports
        .iter()
        .map(|p| format!("udp.port=={p} || tcp.port=={p}"))
        .collect::<Vec<_>>()
        .join(" || ");
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(path);
    for p in ports.iter().filter(|p| **p != 88) {
        cmd.args([
            "-d",
            &format!("udp.port=={p},kerberos"),
            "-d",
            &format!("tcp.port=={p},kerberos"),
        ]);
    }
    // A clean profile: no keytab can make tshark decrypt and add fields.
    let profile = std::env::temp_dir().join("kcd-tests-wireshark-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let out = cmd
        .env("WIRESHARK_CONFIG_DIR", &profile)
        .args([
            "-o",
            "kerberos.decrypt:FALSE",
            "-Y",
            &format!("kerberos && ({filter})"),
            "-T",
            "json",
            "--no-duplicate-keys",
            "-J",
            "frame kerberos",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tshark failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Vec::new();
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

/// tshark writes one occurrence as a scalar/object and several as an array.
pub fn many(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

pub fn s(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

pub fn int(v: &Value) -> Option<i64> {
    v.as_str()
        .and_then(|x| x.parse().ok())
        .or_else(|| v.as_i64())
}
