//! The HTTP outputs (`--bulk`, `--hec`) against receivers on 127.0.0.1, run as the user
//! runs them (the kcdscope binary: `replay -o SPOOL --bulk URL`, `ship SPOOL --follow`).
//!
//! Neither Elasticsearch nor OpenSearch nor Splunk can be installed here (no Debian
//! package, no registry here carries them), so the receivers are stand-ins written in this
//! file, faithful to the documented APIs where the shipper depends on them:
//! - `_bulk`: `POST /INDEX/_bulk`, `Content-Type: application/x-ndjson`, action/source
//!   line pairs, a trailing newline; `create` of an `_id` that exists answers 409
//!   `version_conflict_engine_exception` for that item; a source that is not a JSON object
//!   answers 400 `mapper_parsing_exception`; the answer lists one item per action, in order,
//!   with `errors: true` when any failed; overload is 429 (per item or for the request).
//! - HEC: `POST /services/collector/event`, `Authorization: Splunk TOKEN` (401 code 2
//!   without, 403 code 4 for a wrong one), a body of concatenated JSON objects each with an
//!   `event`; events are indexed in order until an invalid one, answered 400 code 6 with
//!   `invalid-event-number`; 503 code 9 when busy.
//!
//! What is checked is what the receiver stored, against the file output (the spool) line
//! by line: every event once, in the file's order, ids computed here independently.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcd_tests::{captures, kcdscope_bin};
use serde_json::Value;
use sha2::{Digest, Sha256};

struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

type Handler = dyn Fn(&Request) -> (u16, String) + Send + Sync;

/// A minimal HTTP/1.1 server (keep-alive, Content-Length bodies, as hyper's client sends).
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(listener: TcpListener, handler: Arc<Handler>) -> Server {
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop2.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let (h, s) = (handler.clone(), stop2.clone());
            std::thread::spawn(move || connection(conn, &*h, &s));
        }
    });
    Server { port, stop }
}

fn connection(conn: TcpStream, handler: &Handler, stop: &AtomicBool) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || stop.load(Ordering::SeqCst) {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let (status, answer) = handler(&Request { method, path, headers, body });
        if status == 0 {
            // A receiver that dies mid-request: the connection drops without an answer.
            return;
        }
        let resp = format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}", answer.len());
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

fn id_of(line: &[u8]) -> String {
    Sha256::digest(line)[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The stand-in `_bulk` receiver's state.
#[derive(Default)]
struct Index {
    /// Documents by id, and the ids in the order they were stored.
    docs: HashMap<String, Vec<u8>>,
    order: Vec<String>,
    requests: usize,
    items: usize,
    largest_request: usize,
    conflicts: usize,
    rejected: usize,
    /// Answer the next N requests with this status as a whole.
    fail_next: Vec<u16>,
    /// Answer items whose source contains this with 400 (mapping conflict).
    reject_containing: Option<String>,
    /// Answer every Nth item 429 on its first attempt.
    item_429_every: Option<usize>,
    seen_ids: std::collections::HashSet<String>,
    /// Ids answered 429 as items.
    item_429_ids: std::collections::HashSet<String>,
    delay: Duration,
    bad_requests: Vec<String>,
}

fn bulk_handler(state: Arc<Mutex<Index>>) -> Arc<Handler> {
    Arc::new(move |req: &Request| {
        let delay = state.lock().unwrap().delay;
        std::thread::sleep(delay);
        let mut s = state.lock().unwrap();
        s.requests += 1;
        if req.method != "POST" || req.path != "/kcdscope/_bulk" || req.headers.get("content-type").map(String::as_str) != Some("application/x-ndjson") {
            s.bad_requests.push(format!("{} {} {:?}", req.method, req.path, req.headers.get("content-type")));
            return (400, r#"{"error":{"type":"illegal_argument_exception"},"status":400}"#.into());
        }
        if !s.fail_next.is_empty() {
            let st = s.fail_next.remove(0);
            if st == 0 {
                return (0, String::new());
            }
            return (st, format!(r#"{{"error":{{"type":"es_rejected_execution_exception","reason":"rejected"}},"status":{st}}}"#));
        }
        if !req.body.ends_with(b"\n") {
            s.bad_requests.push("body without its final newline".into());
            return (400, r#"{"error":{"type":"parse_exception","reason":"The bulk request must be terminated by a newline [\n]"},"status":400}"#.into());
        }
        let lines: Vec<&[u8]> = req.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        let mut items = Vec::new();
        let mut errors = false;
        s.largest_request = s.largest_request.max(lines.len() / 2);
        for pair in lines.chunks(2) {
            let action: Value = serde_json::from_slice(pair[0]).unwrap();
            let id = action["create"]["_id"].as_str().unwrap_or_else(|| panic!("not a create with an _id: {action}")).to_string();
            let source = pair.get(1).copied().unwrap_or_default();
            s.items += 1;
            let first_time = s.seen_ids.insert(id.clone());
            let n = s.items;
            let status = if s.docs.contains_key(&id) {
                s.conflicts += 1;
                409
            } else if serde_json::from_slice::<serde_json::Map<String, Value>>(source).is_err()
                || s.reject_containing.as_ref().is_some_and(|c| String::from_utf8_lossy(source).contains(c.as_str()))
            {
                s.rejected += 1;
                400
            } else if first_time && s.item_429_every.is_some_and(|k| n.is_multiple_of(k)) {
                s.item_429_ids.insert(id.clone());
                429
            } else {
                assert_eq!(id, id_of(source), "the _id is the SHA-256 of the event's line");
                s.docs.insert(id.clone(), source.to_vec());
                s.order.push(id.clone());
                201
            };
            if status != 201 {
                errors = true;
            }
            let error = match status {
                409 => r#","error":{"type":"version_conflict_engine_exception","reason":"document already exists"}"#,
                400 => r#","error":{"type":"mapper_parsing_exception","reason":"failed to parse"}"#,
                429 => r#","error":{"type":"es_rejected_execution_exception","reason":"rejected execution"}"#,
                _ => "",
            };
            items.push(format!(r#"{{"create":{{"_index":"kcdscope","_id":"{id}","status":{status}{error}}}}}"#));
        }
        (200, format!(r#"{{"took":1,"errors":{errors},"items":[{}]}}"#, items.join(",")))
    })
}

/// The stand-in HEC receiver's state.
#[derive(Default)]
struct Hec {
    events: Vec<Value>,
    requests: usize,
    fail_next: Vec<u16>,
    reject_containing: Option<String>,
    rejected: usize,
    unauthorised: usize,
}

const TOKEN: &str = "6f1c4a2e-0b5d-4f8e-9a7c-3d2b1e0f9a8b";

fn hec_handler(state: Arc<Mutex<Hec>>) -> Arc<Handler> {
    Arc::new(move |req: &Request| {
        let mut s = state.lock().unwrap();
        s.requests += 1;
        match req.headers.get("authorization") {
            None => {
                s.unauthorised += 1;
                return (401, r#"{"text":"Token is required","code":2}"#.into());
            }
            Some(a) if a != &format!("Splunk {TOKEN}") => {
                s.unauthorised += 1;
                return (403, r#"{"text":"Invalid token","code":4}"#.into());
            }
            _ => {}
        }
        if req.path != "/services/collector/event" {
            return (404, r#"{"text":"The requested URL was not found on this server.","code":404}"#.into());
        }
        if !s.fail_next.is_empty() {
            let st = s.fail_next.remove(0);
            return (st, r#"{"text":"Server is busy","code":9}"#.into());
        }
        let objs = serde_json::Deserializer::from_slice(&req.body).into_iter::<Value>();
        for (i, o) in objs.enumerate() {
            let Ok(o) = o else { return (400, format!(r#"{{"text":"Invalid data format","code":6,"invalid-event-number":{i}}}"#)) };
            let bad = o.get("event").is_none() || s.reject_containing.as_ref().is_some_and(|c| o["event"].to_string().contains(c.as_str()));
            if bad {
                s.rejected += 1;
                return (400, format!(r#"{{"text":"Invalid data format","code":6,"invalid-event-number":{i}}}"#));
            }
            s.events.push(o);
        }
        (200, r#"{"text":"Success","code":0}"#.into())
    })
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kcd-ship-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The spool's lines, oldest file first.
fn spool_lines(spool: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = kcd_export::outputs::file::rotated_files(spool).unwrap().into_iter().map(|(_, p)| p).collect();
    files.push(spool.to_path_buf());
    let mut out = Vec::new();
    for f in files {
        let b = std::fs::read(&f).unwrap();
        out.extend(b.split(|c| *c == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec));
    }
    out
}

fn replay(args: &[&str]) -> (bool, String) {
    let out = Command::new(kcdscope_bin()).arg("replay").args(captures("")).args(args).arg("--count").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// "NAME: N events sent (D already there), R resent, J rejected, ..." from stderr.
fn counters(stderr: &str, name: &str) -> [u64; 4] {
    let line = stderr.lines().find(|l| l.contains(&format!("{name}: "))).unwrap_or_else(|| panic!("no {name} counters in {stderr}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    [nums[0], nums[1], nums[2], nums[3]]
}

fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

#[test]
fn bulk_stores_every_event_of_the_file_output_once_in_order() {
    let dir = tmpdir("bulk");
    let spool = dir.join("events.ndjson");
    let state = Arc::new(Mutex::new(Index::default()));
    let srv = serve(listener(), bulk_handler(state.clone()));
    let url = format!("http://127.0.0.1:{}/kcdscope", srv.port);
    let (ok, err) = replay(&["-o", spool.to_str().unwrap(), "--rotate-bytes", "100000", "--bulk", &url, "--batch-events", "50", "--batch-linger-ms", "5"]);
    assert!(ok, "{err}");
    let want = spool_lines(&spool);
    assert!(want.len() > 500, "{} events", want.len());
    assert!(kcd_export::outputs::file::rotated_files(&spool).unwrap().len() >= 3, "the spool rotated");
    let s = state.lock().unwrap();
    assert!(s.bad_requests.is_empty(), "{:?}", s.bad_requests);
    let got: Vec<Vec<u8>> = s.order.iter().map(|id| s.docs[id].clone()).collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the index holds the file output's events in its order");
    assert!(s.largest_request <= 50 && s.requests >= want.len() / 50, "batches of at most 50: {} requests, largest {}", s.requests, s.largest_request);
    assert_eq!(s.conflicts, 0);
    assert_eq!(counters(&err, "bulk"), [want.len() as u64, 0, 0, 0]);
    // The checkpoint is at the end of the spool.
    let ck = std::fs::read_to_string(dir.join("events.ndjson.bulk.checkpoint")).unwrap();
    assert!(ck.contains(&format!("offset={}", std::fs::metadata(&spool).unwrap().len())), "{ck}");
}

#[test]
fn bulk_partial_failures_retry_what_was_not_stored_and_count_what_was_refused() {
    let dir = tmpdir("partial");
    let spool = dir.join("events.ndjson");
    let state = Arc::new(Mutex::new(Index {
        // The receiver overloaded (429, 503), then gone mid-request, before the first success.
        fail_next: vec![429, 503, 0],
        reject_containing: Some("\"event_type\":\"anomaly\"".into()),
        item_429_every: Some(7),
        ..Default::default()
    }));
    let srv = serve(listener(), bulk_handler(state.clone()));
    let url = format!("http://127.0.0.1:{}/kcdscope", srv.port);
    let t0 = Instant::now();
    let (ok, err) = replay(&["-o", spool.to_str().unwrap(), "--bulk", &url, "--batch-events", "40", "--batch-linger-ms", "5", "--retry-max-seconds", "1"]);
    let took = t0.elapsed();
    assert!(ok, "{err}");
    let want: Vec<Vec<u8>> = spool_lines(&spool).into_iter().filter(|l| !String::from_utf8_lossy(l).contains("\"event_type\":\"anomaly\"")).collect();
    let anomalies = spool_lines(&spool).len() - want.len();
    assert!(anomalies > 0, "the corpus has anomalies to refuse");
    let s = state.lock().unwrap();
    let got: Vec<Vec<u8>> = s.order.iter().map(|id| s.docs[id].clone()).collect();
    assert_eq!(got.len(), want.len(), "nothing lost, nothing twice");
    // Order per flow: each flow's events in the file's order, except those a bulk item 429
    // refused, which the receiver stores after the later items of their request (it took
    // those): the index orders by the events' timestamps, not by arrival.
    let flow = |l: &[u8]| serde_json::from_slice::<Value>(l).unwrap()["flow_id"].as_u64();
    let mut by_flow_want: HashMap<Option<u64>, Vec<&Vec<u8>>> = HashMap::new();
    let mut by_flow_got: HashMap<Option<u64>, Vec<&Vec<u8>>> = HashMap::new();
    for l in want.iter().filter(|l| !s.item_429_ids.contains(&id_of(l))) {
        by_flow_want.entry(flow(l)).or_default().push(l);
    }
    for l in got.iter().filter(|l| !s.item_429_ids.contains(&id_of(l))) {
        by_flow_got.entry(flow(l)).or_default().push(l);
    }
    assert!(!s.item_429_ids.is_empty());
    assert!(by_flow_got == by_flow_want, "every flow's events in order");
    let mut sorted_got = got.clone();
    sorted_got.sort();
    let mut sorted_want = want.clone();
    sorted_want.sort();
    assert!(sorted_got == sorted_want, "the same events");
    assert_eq!(s.rejected, anomalies, "each refused event sent once, not again");
    let [sent, dup, resent, rejected] = counters(&err, "bulk");
    assert_eq!((sent, dup, rejected), (want.len() as u64, 0, anomalies as u64), "{err}");
    // The whole first batch three times, and the per-item 429s once each.
    assert!(resent >= 3 * 40, "{err}");
    assert!(err.contains("es_rejected_execution_exception") || err.contains("HTTP 429"), "retries are logged: {err}");
    assert!(err.contains("mapper_parsing_exception"), "refusals are logged: {err}");
    // Three whole-request failures: at least 50+100+200 ms of backoff (equal jitter: half).
    assert!(took >= Duration::from_millis(175), "{took:?}");
}

fn ship(spool: &Path, url: &str, extra: &[&str]) -> Child {
    Command::new(kcdscope_bin())
        .arg("ship")
        .arg(spool)
        .arg("--follow")
        .args(["--bulk", url, "--retry-max-seconds", "1", "--batch-linger-ms", "5"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn term(mut c: Child) -> String {
    let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
    let mut err = String::new();
    c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(c.wait().unwrap().success(), "{err}");
    err
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn receiver_down_then_up_loses_nothing_and_stores_nothing_twice() {
    let dir = tmpdir("down");
    let spool = dir.join("events.ndjson");
    let (ok, err) = replay(&["-o", spool.to_str().unwrap(), "--rotate-bytes", "100000"]);
    assert!(ok, "{err}");
    let want = spool_lines(&spool);
    // The port is known, nothing listens yet: connections are refused.
    let l = listener();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let url = format!("http://127.0.0.1:{port}/kcdscope");
    let c = ship(&spool, &url, &["--batch-events", "25"]);
    // Down for a minute (the issue's outage), the shipper retrying at its capped backoff
    // (--retry-max-seconds 1) all along; back, it delivers within a few of those.
    std::thread::sleep(Duration::from_secs(60));
    let state = Arc::new(Mutex::new(Index::default()));
    let _srv = serve(TcpListener::bind(("127.0.0.1", port)).unwrap(), bulk_handler(state.clone()));
    wait_for("every event", Duration::from_secs(10), || state.lock().unwrap().docs.len() >= want.len());
    let err = term(c);
    let s = state.lock().unwrap();
    let got: Vec<Vec<u8>> = s.order.iter().map(|id| s.docs[id].clone()).collect();
    assert!(got == want, "{} of {} events, in order", got.len(), want.len());
    assert_eq!(s.conflicts, 0);
    let [sent, _, resent, _] = counters(&err, "bulk");
    assert_eq!(sent, want.len() as u64);
    assert!(resent >= 25 * 30, "the first batch was tried again and again while the receiver was down: {err}");
    assert!(err.contains("Connection refused") || err.contains("connect"), "{err}");
}

#[test]
fn sigkill_mid_shipping_resumes_from_the_checkpoint_without_duplicates() {
    let dir = tmpdir("kill");
    let spool = dir.join("events.ndjson");
    let (ok, err) = replay(&["-o", spool.to_str().unwrap(), "--rotate-bytes", "100000"]);
    assert!(ok, "{err}");
    let want = spool_lines(&spool);
    let state = Arc::new(Mutex::new(Index { delay: Duration::from_millis(30), ..Default::default() }));
    let srv = serve(listener(), bulk_handler(state.clone()));
    let url = format!("http://127.0.0.1:{}/kcdscope", srv.port);
    let mut c = ship(&spool, &url, &["--batch-events", "10"]);
    wait_for("a third of the events", Duration::from_secs(30), || state.lock().unwrap().docs.len() >= want.len() / 3);
    c.kill().unwrap(); // SIGKILL: no chance to save anything more
    c.wait().unwrap();
    // A request the receiver was handling when the shipper died is still stored.
    std::thread::sleep(Duration::from_millis(200));
    let before = state.lock().unwrap().docs.len();
    assert!(before < want.len(), "killed mid-stream");
    let ck = std::fs::read_to_string(dir.join("events.ndjson.bulk.checkpoint")).unwrap();
    let c = ship(&spool, &url, &["--batch-events", "10"]);
    wait_for("every event", Duration::from_secs(60), || state.lock().unwrap().docs.len() >= want.len());
    let err = term(c);
    let s = state.lock().unwrap();
    let got: Vec<Vec<u8>> = s.order.iter().map(|id| s.docs[id].clone()).collect();
    assert!(got == want, "{} of {} events, in order", got.len(), want.len());
    // At-least-once: what was sent after the last checkpoint is sent again, and the ids
    // make the index keep one copy (409s).
    let [sent, dup, _, _] = counters(&err, "bulk");
    assert_eq!(s.conflicts as u64, dup);
    assert_eq!(sent - dup, (want.len() - before) as u64, "the restart stored exactly what was missing ({ck})");
    assert!(s.items >= want.len());
    eprintln!("killed after {before} stored; resent after the restart {dup} (409); checkpoint was {ck}");
}

#[test]
fn hec_stores_every_event_with_its_time_and_the_token_stays_secret() {
    let dir = tmpdir("hec");
    let spool = dir.join("events.ndjson");
    let token = dir.join("hec.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let state = Arc::new(Mutex::new(Hec { fail_next: vec![503, 429], reject_containing: Some("\"event_type\":\"anomaly\"".into()), ..Default::default() }));
    let srv = serve(listener(), hec_handler(state.clone()));
    let url = format!("http://127.0.0.1:{}", srv.port);
    let (ok, err) = replay(&["-o", spool.to_str().unwrap(), "--hec", &url, "--hec-token-file", token.to_str().unwrap(), "--batch-events", "30", "--batch-linger-ms", "5", "--retry-max-seconds", "1"]);
    assert!(ok, "{err}");
    assert!(!err.contains(TOKEN), "the token is never logged");
    let all = spool_lines(&spool);
    let want: Vec<Value> = all
        .iter()
        .filter(|l| !String::from_utf8_lossy(l).contains("\"event_type\":\"anomaly\""))
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let s = state.lock().unwrap();
    assert_eq!(s.unauthorised, 0);
    let got: Vec<Value> = s.events.iter().map(|e| e["event"].clone()).collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "HEC holds the file output's events, in order");
    for e in &s.events {
        let ts = chrono::DateTime::parse_from_rfc3339(e["event"]["timestamp"].as_str().unwrap()).unwrap();
        let t = e["time"].as_f64().unwrap();
        assert!((t - ts.timestamp_micros() as f64 / 1e6).abs() < 1e-3, "{e}");
        assert_eq!(e["sourcetype"], "kcdscope");
    }
    let [sent, _, resent, rejected] = counters(&err, "hec");
    assert_eq!((sent, rejected), (want.len() as u64, (all.len() - want.len()) as u64), "{err}");
    assert_eq!(s.rejected as u64, rejected, "each refused event sent once");
    assert!(resent >= 60, "{err}");
}

#[test]
fn hec_with_a_wrong_token_keeps_the_events_and_says_why() {
    let dir = tmpdir("hectoken");
    let spool = dir.join("events.ndjson");
    let token = dir.join("hec.token");
    std::fs::write(&token, "wrong-token-value-1234").unwrap();
    let state = Arc::new(Mutex::new(Hec::default()));
    let srv = serve(listener(), hec_handler(state.clone()));
    let url = format!("http://127.0.0.1:{}", srv.port);
    let (ok, err) = replay(&["-o", spool.to_str().unwrap(), "--hec", &url, "--hec-token-file", token.to_str().unwrap(), "--ship-drain-seconds", "1", "--retry-max-seconds", "1"]);
    assert!(!ok, "giving up is a failure");
    assert!(err.contains("Invalid token"), "{err}");
    assert!(!err.contains("wrong-token-value-1234"), "{err}");
    assert!(err.contains("stay in the spool"), "{err}");
    assert!(!dir.join("events.ndjson.hec.checkpoint").exists(), "nothing acknowledged, no checkpoint");
    assert!(state.lock().unwrap().events.is_empty());
}

#[test]
fn filters_apply_to_the_file_and_so_to_the_shipped_events() {
    let dir = tmpdir("filter");
    let all = dir.join("all.ndjson");
    let some = dir.join("some.ndjson");
    let (ok, err) = replay(&["-o", all.to_str().unwrap()]);
    assert!(ok, "{err}");
    let state = Arc::new(Mutex::new(Index::default()));
    let srv = serve(listener(), bulk_handler(state.clone()));
    let url = format!("http://127.0.0.1:{}/kcdscope", srv.port);
    let (ok, err) = replay(&["-o", some.to_str().unwrap(), "--event-types", "finding,tls", "--min-severity", "warning", "--bulk", &url]);
    assert!(ok, "{err}");
    let want: Vec<Vec<u8>> = spool_lines(&all)
        .into_iter()
        .filter(|l| {
            let v: Value = serde_json::from_slice(l).unwrap();
            match v["event_type"].as_str().unwrap() {
                "tls" => true,
                "finding" => matches!(v["finding"]["severity"].as_str().unwrap(), "warning" | "error"),
                _ => false,
            }
        })
        .collect();
    let has_info = spool_lines(&all).iter().any(|l| String::from_utf8_lossy(l).contains("\"severity\":\"info\""));
    assert!(has_info && !want.is_empty());
    assert_eq!(spool_lines(&some), want);
    let s = state.lock().unwrap();
    assert_eq!(s.order.iter().map(|id| s.docs[id].clone()).collect::<Vec<_>>(), want);
}

/// Events a second shipped to each stand-in receiver (run with a release kcdscope:
/// `cargo build --release -p kcdscope && KCDSCOPE_BIN=target/release/kcdscope cargo test -p
/// kcd-tests --test ship_http -- --ignored --nocapture throughput`). The spool is the
/// corpus's events copied 200 times, each copy's frames moved so that every event is
/// distinct (its own id). The receivers run in this test process, on the same two CPUs.
#[test]
#[ignore]
fn throughput_to_the_bulk_and_hec_receivers() {
    let dir = tmpdir("throughput");
    let base = dir.join("base.ndjson");
    let (ok, err) = replay(&["-o", base.to_str().unwrap()]);
    assert!(ok, "{err}");
    let lines = spool_lines(&base);
    let spool = dir.join("spool.ndjson");
    let mut text = Vec::new();
    for k in 0..200u64 {
        for l in &lines {
            let mut v: Value = serde_json::from_slice(l).unwrap();
            let f = v["frame"].as_u64().unwrap_or(0);
            v["frame"] = Value::from(f + k * 10_000_000);
            serde_json::to_writer(&mut text, &v).unwrap();
            text.push(b'\n');
        }
    }
    std::fs::write(&spool, &text).unwrap();
    let n = lines.len() * 200;
    let token = dir.join("hec.token");
    std::fs::write(&token, TOKEN).unwrap();
    for kind in ["bulk", "hec"] {
        let _ = std::fs::remove_file(dir.join(format!("spool.ndjson.{kind}.checkpoint")));
        let bulk = Arc::new(Mutex::new(Index::default()));
        let hec = Arc::new(Mutex::new(Hec::default()));
        let srv = match kind {
            "bulk" => serve(listener(), bulk_handler(bulk.clone())),
            _ => serve(listener(), hec_handler(hec.clone())),
        };
        let mut cmd = Command::new("/usr/bin/time");
        cmd.args(["-f", "%U %S"]).arg(kcdscope_bin()).arg("ship").arg(&spool).args(["--batch-events", "1000"]);
        match kind {
            "bulk" => cmd.args(["--bulk", &format!("http://127.0.0.1:{}/kcdscope", srv.port)]),
            _ => cmd.args(["--hec", &format!("http://127.0.0.1:{}", srv.port), "--hec-token-file", token.to_str().unwrap()]),
        };
        let t0 = Instant::now();
        let out = cmd.output().unwrap();
        let wall = t0.elapsed().as_secs_f64();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        let cpu: f64 = err.lines().last().unwrap().split_whitespace().map(|x| x.parse::<f64>().unwrap()).sum();
        let stored = match kind {
            "bulk" => bulk.lock().unwrap().docs.len(),
            _ => hec.lock().unwrap().events.len(),
        };
        assert_eq!(stored, n);
        eprintln!(
            "{kind}: {n} events ({} MB) in {wall:.2} s: {:.0} events/s; kcdscope used {cpu:.2} s of CPU ({:.0} events per CPU second)",
            text.len() / 1_000_000,
            n as f64 / wall,
            n as f64 / cpu.max(0.001)
        );
    }
}
