//! The syslog output (`--syslog`) against a real rsyslog (Debian packages rsyslog and
//! rsyslog-openssl; tests/run installs them), run as the user runs it (the kcdscope
//! binary): rsyslogd runs as a plain process on loopback ports with its own configuration
//! in a temporary directory, receiving over TCP (octet-counted framing, RFC 6587), UDP and
//! TLS (RFC 5425), and writes each message's time, severity, MSGID, structured data and
//! message to a file.
//!
//! What is checked is what rsyslog parsed, against the file output (the spool the syslog
//! output ships): every event of every capture (findings included) once, in the file's
//! order, the message byte for byte the file's line, and the header (time to the
//! microsecond, severity, MSGID, structured data) what the test reads from the line itself.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kcd_tests::ship::{append, spool_lines, term, watch_live, Gateway, Reaped};
use kcd_tests::{captures, kcdscope_bin};
use serde_json::Value;

/// One test at a time: the outage test leaves its collector's port free for seconds, and a
/// collector of another test started meanwhile could take it.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kcd-rsyslog-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port();
    // The same number free for UDP too (checked, not assumed).
    UdpSocket::bind(("127.0.0.1", p)).map(|_| p).unwrap_or_else(|_| free_port())
}

/// rsyslog's view of each message: reported time, severity (from PRI), MSGID, structured
/// data, message.
const TEMPLATE: &str = r#"template(name="raw" type="string" string="%timereported:::date-rfc3339%|%syslogseverity%|%msgid%|%structured-data%|%msg%\n")"#;

struct Rsyslog {
    child: Option<Child>,
    port: u16,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Rsyslog {
    /// rsyslogd with `inputs` (the configuration after the template), writing to
    /// `DIR/NAME.log`; `port` is the one it must be listening on (TCP) before this returns.
    fn start(dir: &Path, name: &str, global: &str, inputs: &str, port: u16, tcp: bool) -> Rsyslog {
        let bin = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"].into_iter().find(|p| Path::new(p).exists());
        let bin = bin.expect("rsyslogd is needed: apt-get install rsyslog rsyslog-openssl (tests/run installs them when run as root)");
        let d = dir.display();
        let work = dir.join(format!("work-{name}"));
        std::fs::create_dir_all(&work).unwrap();
        let conf = format!(
            "global(workDirectory=\"{}\" maxMessageSize=\"256k\" {global})\n{TEMPLATE}\nruleset(name=\"r\") {{ action(type=\"omfile\" file=\"{d}/{name}.log\" template=\"raw\") }}\n{inputs}\n",
            work.display()
        );
        let conf_path = dir.join(format!("{name}.conf"));
        std::fs::write(&conf_path, conf).unwrap();
        let stderr = dir.join(format!("{name}.stderr"));
        let child = Command::new(bin)
            .args(["-n", "-f"])
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.join(format!("{name}.pid")))
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
            .spawn()
            .expect("starts rsyslogd");
        let r = Rsyslog { child: Some(child), port };
        let t0 = Instant::now();
        let listening = || if tcp { TcpStream::connect(("127.0.0.1", port)).is_ok() } else { UdpSocket::bind(("127.0.0.1", port)).is_err() };
        while !listening() {
            assert!(t0.elapsed() < Duration::from_secs(10), "rsyslogd did not listen: {}", std::fs::read_to_string(&stderr).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn tcp(dir: &Path, name: &str, port: u16) -> Rsyslog {
        Rsyslog::start(dir, name, "", &format!("module(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"r\")"), port, true)
    }

    /// A socket buffer large enough for the whole corpus: loopback UDP drops what the
    /// collector's buffer cannot hold, as any UDP collector that is not sized for its load.
    fn udp(dir: &Path, name: &str, port: u16) -> Rsyslog {
        Rsyslog::start(dir, name, "", &format!("module(load=\"imudp\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"r\" rcvbufSize=\"64m\")"), port, false)
    }

    /// TLS with rsyslog's openssl driver and a server certificate for `localhost` made here
    /// with openssl (DIR/ca.pem is its CA).
    fn tls(dir: &Path, name: &str, port: u16) -> Rsyslog {
        let sh = |cmd: &str| {
            let o = Command::new("sh").arg("-c").arg(cmd).current_dir(dir).output().unwrap();
            assert!(o.status.success(), "{cmd}: {}", String::from_utf8_lossy(&o.stderr));
        };
        sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca 2>/dev/null");
        sh("openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null");
        sh("printf 'subjectAltName=DNS:localhost\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf \
            && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf 2>/dev/null");
        let d = dir.display();
        let global = format!(
            "DefaultNetstreamDriver=\"ossl\" DefaultNetstreamDriverCAFile=\"{d}/ca.pem\" DefaultNetstreamDriverCertFile=\"{d}/server.pem\" DefaultNetstreamDriverKeyFile=\"{d}/server.key\""
        );
        let inputs = format!(
            "module(load=\"imtcp\" StreamDriver.Name=\"ossl\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"r\")"
        );
        Rsyslog::start(dir, name, &global, &inputs, port, true)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }
}

/// What rsyslog wrote to DIR/NAME.log, once it has `want` lines (or 30 s passed), and a
/// moment more to see duplicates that would arrive late.
fn received(dir: &Path, name: &str, want: usize) -> Vec<String> {
    let path = dir.join(format!("{name}.log"));
    let read = || std::fs::read_to_string(&path).unwrap_or_default().lines().map(str::to_string).collect::<Vec<_>>();
    let t0 = Instant::now();
    while read().len() < want && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    read()
}

/// The header a line must get, read here from the line in either layout: (event type,
/// syslog severity, its name, the finding's id).
fn expected_header(line: &str) -> (String, u8, &'static str, Option<String>) {
    let v: Value = serde_json::from_str(line).unwrap();
    let (ty, finding, rule) = match v["event_type"].as_str() {
        Some(t) => (t.to_string(), &v["finding"], v["finding"]["id"].as_str()),
        None => (v["kcdscope"]["event_type"].as_str().unwrap().to_string(), &v["kcdscope"]["finding"], v["rule"]["id"].as_str()),
    };
    let (sev, name) = match (ty.as_str(), finding["severity"].as_str()) {
        ("finding", Some("error")) => (3, "error"),
        ("finding", Some("warning")) => (4, "warning"),
        ("finding", _) => (6, "info"),
        ("anomaly", _) => (5, "notice"),
        _ => (6, "info"),
    };
    (ty.clone(), sev, name, if ty == "finding" { rule.map(str::to_string) } else { None })
}

/// Checks one line rsyslog wrote against the spool line it must be.
fn check_message(got: &str, line: &str, what: &str) {
    let mut parts = got.splitn(5, '|');
    let [time, sev, msgid, sd, msg] = [(); 5].map(|_| parts.next().unwrap_or(""));
    assert_eq!(msg.trim_start(), line, "{what}: the message is the file's line");
    let (ty, want_sev, sev_name, rule) = expected_header(line);
    assert_eq!(msgid, ty, "{what}: MSGID");
    assert_eq!(sev, want_sev.to_string(), "{what}: severity");
    let mut want_sd = format!("[kcdscope@32473 event_type=\"{ty}\" severity=\"{sev_name}\"");
    if let Some(r) = rule {
        want_sd.push_str(&format!(" rule=\"{r}\""));
    }
    want_sd.push(']');
    assert_eq!(sd, want_sd, "{what}: structured data");
    let v: Value = serde_json::from_str(line).unwrap();
    let ts = v["timestamp"].as_str().or(v["@timestamp"].as_str()).unwrap();
    let ts = chrono::DateTime::parse_from_rfc3339(ts).unwrap();
    let reported = chrono::DateTime::parse_from_rfc3339(time).unwrap_or_else(|e| panic!("{what}: rsyslog's time {time:?}: {e}"));
    assert_eq!(reported.timestamp_micros(), ts.timestamp_micros(), "{what}: the time, to the microsecond");
}

/// Every spool line once, in order.
fn compare(want: &[String], got: &[String], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: rsyslog wrote {} messages for {} events", got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        check_message(g, w, &format!("{what} #{i}"));
    }
}

/// "syslog: N events sent (D already there), R resent, J rejected, F failed requests, G spool gaps".
fn counters(stderr: &str) -> [u64; 6] {
    let line = stderr.lines().find(|l| l.contains("syslog: ")).unwrap_or_else(|| panic!("no syslog counters in {stderr}"));
    let nums: Vec<u64> = line.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    [nums[0], nums[1], nums[2], nums[3], nums[4], nums[5]]
}

/// `kcdscope replay CAPTURES -o SPOOL --syslog URL EXTRA...`: its standard error.
fn replay(spool: &Path, url: &str, extra: &[&str]) -> String {
    let out = Command::new(kcdscope_bin())
        .arg("replay")
        .args(captures(""))
        .args(["-o", spool.to_str().unwrap(), "--rotate-bytes", "200000", "--count", "--syslog", url, "--batch-linger-ms", "5"])
        .args(extra)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    err
}

fn check_checkpoint(spool: &Path) {
    let ck = std::fs::read_to_string(spool.with_file_name(format!("{}.syslog.checkpoint", spool.file_name().unwrap().to_str().unwrap()))).unwrap();
    assert!(ck.contains(&format!("offset={}", std::fs::metadata(spool).unwrap().len())), "the checkpoint is at the end: {ck}");
}

#[test]
fn rsyslog_receives_every_event_of_the_file_output_over_tcp_and_udp() {
    let _s = serial();
    let dir = tmpdir("tcp-udp");
    let tcp = Rsyslog::tcp(&dir, "tcp", free_port());
    let spool = dir.join("tcp.ndjson");
    let err = replay(&spool, &format!("tcp://127.0.0.1:{}", tcp.port), &["--batch-events", "100"]);
    let want = spool_lines(&spool);
    let findings = want.iter().filter(|l| l.contains("\"event_type\":\"finding\"")).count();
    assert!(findings > 10 && want.len() > 500, "{} events, {findings} findings", want.len());
    assert!(kcd_export::outputs::file::rotated_files(&spool).unwrap().len() >= 2, "-o rotated");
    compare(&want, &received(&dir, "tcp", want.len()), "TCP");
    assert_eq!(counters(&err), [want.len() as u64, 0, 0, 0, 0, 0], "{err}");
    check_checkpoint(&spool);

    let udp = Rsyslog::udp(&dir, "udp", free_port());
    let spool = dir.join("udp.ndjson");
    let err = replay(&spool, &format!("udp://127.0.0.1:{}", udp.port), &[]);
    let want = spool_lines(&spool);
    compare(&want, &received(&dir, "udp", want.len()), "UDP");
    assert_eq!(counters(&err), [want.len() as u64, 0, 0, 0, 0, 0], "{err}");
    check_checkpoint(&spool);
    eprintln!("rsyslog received {} events over TCP and over UDP, {findings} of them findings", want.len());
}

/// `--format ecs`: the header read from ECS lines (kcdscope.event_type, the finding's
/// severity and rule.id) is the same as from kcdscope's own layout.
#[test]
fn rsyslog_receives_ecs_lines_with_the_same_headers() {
    let _s = serial();
    let dir = tmpdir("ecs");
    let r = Rsyslog::tcp(&dir, "tcp", free_port());
    let spool = dir.join("events.ndjson");
    let err = replay(&spool, &format!("tcp://127.0.0.1:{}", r.port), &["--format", "ecs"]);
    let want = spool_lines(&spool);
    assert!(want.iter().all(|l| l.contains("\"@timestamp\"")), "ECS lines");
    assert!(want.iter().any(|l| l.contains("\"kind\":\"alert\"")), "findings among them");
    compare(&want, &received(&dir, "tcp", want.len()), "ECS over TCP");
    assert_eq!(counters(&err)[0], want.len() as u64, "{err}");
}

/// Over TLS (RFC 5425): the collector's certificate is checked against --syslog-ca and the
/// URL's host; one for another name is refused, the events staying in the spool.
#[test]
fn rsyslog_receives_every_event_over_tls_and_a_wrong_name_is_refused() {
    let _s = serial();
    let dir = tmpdir("tls");
    let r = Rsyslog::tls(&dir, "tls", free_port());
    let ca = dir.join("ca.pem");
    let spool = dir.join("wrong.ndjson");
    let out = Command::new(kcdscope_bin())
        .arg("replay")
        .args(captures("krb5/mit"))
        .args(["-o", spool.to_str().unwrap(), "--count", "--syslog", &format!("tls://127.0.0.1:{}", r.port), "--syslog-ca", ca.to_str().unwrap()])
        .args(["--ship-drain-seconds", "2", "--retry-max-seconds", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a certificate without the name 127.0.0.1 was accepted: {err}");
    assert!(err.contains("certificate") && err.contains("stay in the spool"), "{err}");
    assert_eq!(counters(&err)[0], 0, "{err}");

    let spool = dir.join("events.ndjson");
    let err = replay(&spool, &format!("tls://localhost:{}", r.port), &["--syslog-ca", ca.to_str().unwrap()]);
    let want = spool_lines(&spool);
    compare(&want, &received(&dir, "tls", want.len()), "TLS");
    assert_eq!(counters(&err), [want.len() as u64, 0, 0, 0, 0, 0], "{err}");
    check_checkpoint(&spool);
    eprintln!("rsyslog received {} events over TLS", want.len());
}

fn ship(spool: &Path, url: &str, follow: bool) -> Reaped {
    Reaped(Some(
        Command::new(kcdscope_bin())
            .arg("ship")
            .arg(spool)
            .args(if follow { &["--follow"][..] } else { &[] })
            .args(["--syslog", url, "--retry-max-seconds", "1", "--batch-linger-ms", "5", "--batch-events", "40"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ))
}

/// The corpus's events through `replay -o` (no collector), as the lines a spool holds.
fn corpus_lines(dir: &Path) -> Vec<String> {
    let all = dir.join("all.ndjson");
    let out = Command::new(kcdscope_bin()).arg("replay").args(captures("")).args(["-o", all.to_str().unwrap(), "--count"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    spool_lines(&all)
}

/// Over UDP, an event larger than a datagram is refused for good: counted, logged, not sent
/// again, and the events after it still go.
#[test]
fn an_event_too_large_for_udp_is_counted_and_the_rest_goes() {
    let _s = serial();
    let dir = tmpdir("udp-large");
    let lines = corpus_lines(&dir);
    let mut big: Value = serde_json::from_str(&lines[10]).unwrap();
    big["pad"] = Value::from("x".repeat(70_000));
    let mut spool_lines_in = lines[..10].to_vec();
    spool_lines_in.push(serde_json::to_string(&big).unwrap());
    spool_lines_in.extend_from_slice(&lines[10..20]);
    let spool = dir.join("events.ndjson");
    append(&spool, &spool_lines_in);
    let r = Rsyslog::udp(&dir, "udp", free_port());
    let out = Command::new(kcdscope_bin()).arg("ship").arg(&spool).args(["--syslog", &format!("udp://127.0.0.1:{}", r.port)]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let [sent, _, resent, rejected, _, _] = counters(&err);
    assert_eq!((sent, resent, rejected), (20, 0, 1), "{err}");
    assert!(err.contains("too large for a datagram"), "the reason is logged: {err}");
    compare(&lines[..20], &received(&dir, "udp", 20), "UDP around a refused event");
}

/// rsyslog stopped while `ship --follow` is idle and the agent writes on, then started
/// again on the same port: the events written meanwhile arrive once it is back, each once,
/// in order, and the attempts in between are counted.
#[test]
fn rsyslog_stopped_then_restarted_loses_nothing() {
    let _s = serial();
    let dir = tmpdir("outage");
    let want = corpus_lines(&dir);
    let (first, second) = want.split_at(want.len() / 2);
    let port = free_port();
    let mut r = Rsyslog::tcp(&dir, "before", port);
    let spool = dir.join("events.ndjson");
    append(&spool, first);
    let c = ship(&spool, &format!("tcp://127.0.0.1:{port}"), true);
    let before = received(&dir, "before", first.len());
    compare(first, &before, "before the outage");
    r.stop();
    // One event alone first: written to the connection rsyslog closed, it would go in one
    // write that succeeds (the kernel takes it; the collector's RST comes after), and be
    // lost unless the shipper sees the close. Then the rest.
    append(&spool, &second[..1]);
    std::thread::sleep(Duration::from_secs(1));
    append(&spool, &second[1..]);
    std::thread::sleep(Duration::from_secs(2));
    let _r = Rsyslog::tcp(&dir, "after", port);
    let after = received(&dir, "after", second.len());
    let err = term(c);
    compare(second, &after, &format!("after the outage ({err})"));
    let [sent, _, resent, rejected, failed, gaps] = counters(&err);
    assert_eq!((sent, rejected, gaps), (want.len() as u64, 0, 0), "{err}");
    assert!(resent >= 1 && failed >= 1, "the shipper tried while rsyslog was down: {err}");
    assert!(err.contains("cannot connect to 127.0.0.1"), "the reason is logged: {err}");
}

/// `ship` killed with SIGKILL in the middle of a large spool, then run again: every event
/// at least once, from the checkpoint; what was sent after the last checkpoint is sent
/// again (at most the batch in flight, and what the killed process had written).
#[test]
fn sigkill_mid_shipping_resumes_from_the_checkpoint_at_least_once() {
    let _s = serial();
    let dir = tmpdir("kill");
    let base = corpus_lines(&dir);
    // 40 copies of the corpus, each copy's frames moved so that every line is distinct.
    let mut want = Vec::new();
    for k in 0..40u64 {
        for l in &base {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v["frame"] = Value::from(v["frame"].as_u64().unwrap_or(0) + k * 10_000_000);
            want.push(serde_json::to_string(&v).unwrap());
        }
    }
    let spool = dir.join("events.ndjson");
    append(&spool, &want);
    let len = std::fs::metadata(&spool).unwrap().len();
    let r = Rsyslog::tcp(&dir, "tcp", free_port());
    let url = format!("tcp://127.0.0.1:{}", r.port);
    let ck = dir.join("events.ndjson.syslog.checkpoint");
    let shipped = || std::fs::read_to_string(&ck).ok().and_then(|c| kcd_export::outputs::ship::spool::Checkpoint::parse(&c)).map_or(0, |c| c.offset);
    let mut c = ship(&spool, &url, true);
    let t0 = Instant::now();
    while shipped() < len / 4 {
        assert!(t0.elapsed() < Duration::from_secs(30), "no progress");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut child = c.0.take().unwrap();
    child.kill().unwrap(); // SIGKILL: nothing more is saved
    child.wait().unwrap();
    let at_kill = shipped();
    assert!(at_kill < len, "killed before the end ({at_kill} of {len} bytes)");
    let mut again = ship(&spool, &url, false);
    let mut p = again.0.take().unwrap();
    let mut err = String::new();
    p.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(p.wait().unwrap().success(), "{err}");
    let got = received(&dir, "tcp", want.len());
    let msgs: Vec<&str> = got.iter().map(|g| g.splitn(5, '|').nth(4).unwrap_or("").trim_start()).collect();
    let pos: std::collections::HashMap<&str, usize> = want.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
    let mut seen = vec![0usize; want.len()];
    let mut next_new = 0;
    for m in &msgs {
        let i = *pos.get(m).unwrap_or_else(|| panic!("a message that is not a line of the spool: {m}"));
        if seen[i] == 0 {
            assert_eq!(i, next_new, "first arrivals in the file's order");
            next_new += 1;
        }
        seen[i] += 1;
    }
    assert!(seen.iter().all(|n| *n >= 1), "every event at least once: {} missing", seen.iter().filter(|n| **n == 0).count());
    let twice = msgs.len() - want.len();
    // Resent: the batch in flight when killed (40) and what the killed process had written
    // before it was stopped; never more than what lies between the checkpoint and the kill.
    assert!(twice <= 2 * 40, "{twice} duplicates after a restart from {at_kill}: {err}");
    assert_eq!(counters(&err)[0] as usize, want.len() - lines_before(&want, at_kill), "the restart sent what lies after the checkpoint: {err}");
    eprintln!("killed at byte {at_kill} of {len}; {twice} messages received twice after the restart");
}

/// The number of lines that end at or before byte `offset` of the spool file holding `want`.
fn lines_before(want: &[String], offset: u64) -> usize {
    let mut at = 0u64;
    want.iter().take_while(|l| {
        at += l.len() as u64 + 1;
        at <= offset
    })
    .count()
}

/// `kcdscope gateway --events FILE --syslog tcp://...`, rotated small: devices that do not
/// speak TLS are refused at the handshake, each refusal an event; rsyslog receives every
/// event of the rotated --events files as the gateway runs.
#[test]
fn gateway_events_rotated_and_shipped_to_rsyslog() {
    let _s = serial();
    let dir = tmpdir("gateway");
    let r = Rsyslog::tcp(&dir, "tcp", free_port());
    let gw = Gateway::start(&dir, &["--syslog", &format!("tcp://127.0.0.1:{}", r.port), "--batch-linger-ms", "5", "--retry-max-seconds", "1"]);
    let devices = 40;
    gw.refuse(devices);
    // While the gateway runs: the events are at the collector already.
    let live = received(&dir, "tcp", devices);
    assert!(live.len() >= devices, "{} messages at rsyslog while the gateway runs", live.len());
    let metrics = {
        let mut s = TcpStream::connect(("127.0.0.1", gw.admin)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body
    };
    let spool = gw.spool.clone();
    let err = gw.stop();
    let want = spool_lines(&spool);
    assert!(kcd_export::outputs::file::rotated_files(&spool).unwrap().len() >= 3, "--events rotated");
    Gateway::assert_own_events(&want);
    compare(&want, &received(&dir, "tcp", want.len()), "the gateway's events");
    let [sent, _, _, rejected, _, gaps] = counters(&err);
    assert_eq!((sent, rejected, gaps), (want.len() as u64, 0, 0), "{err}");
    let shown: u64 = metrics
        .lines()
        .find(|l| l.starts_with("kcdscope_gateway_ship_events_sent_total{output=\"syslog\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no syslog counter in /metrics: {metrics}"));
    assert!(shown >= devices as u64, "/metrics: {shown} sent");
}

/// `kcdscope watch` live on loopback (libpcap), its -o rotated small, shipped to rsyslog over
/// TLS as it runs: real Kerberos messages decoded live, written, rotated and shipped;
/// rsyslog receives every event of the rotated -o files. Needs root (capture): tests/run
/// runs it.
#[test]
#[ignore = "needs root (live capture on loopback); tests/run runs it"]
fn watch_live_ships_its_rotated_output_to_rsyslog() {
    let _s = serial();
    let dir = tmpdir("watch");
    let r = Rsyslog::tls(&dir, "tls", free_port());
    let ca = dir.join("ca.pem");
    let url = format!("tls://localhost:{}", r.port);
    let (spool, err, exchanges) = watch_live(&dir, &["--syslog", &url, "--syslog-ca", ca.to_str().unwrap(), "--batch-linger-ms", "5", "--retry-max-seconds", "1"]);
    let want = spool_lines(&spool);
    let krb5 = want.iter().filter(|l| l.contains("\"event_type\":\"krb5\"")).count();
    assert_eq!(krb5, 2 * exchanges, "each message sent, decoded live once: {err}");
    assert!(kcd_export::outputs::file::rotated_files(&spool).unwrap().len() >= 2, "-o rotated");
    compare(&want, &received(&dir, "tls", want.len()), "watch's -o over TLS");
    let [sent, _, _, rejected, _, gaps] = counters(&err);
    assert_eq!((sent, rejected, gaps), (want.len() as u64, 0, 0), "{err}");
}

/// Events a second shipped to rsyslog over TCP (run with a release kcdscope: `cargo build
/// --release -p kcdscope && KCDSCOPE_BIN=target/release/kcdscope cargo test -p kcd-tests
/// --test syslog_rsyslog -- --ignored --nocapture throughput`), on the same spool as the
/// `_bulk`, HEC and Kafka figures: the corpus's events 200 times, each copy's frames moved
/// so that every event is distinct. `kcdscope ship` is timed to its end, and until rsyslog
/// has written every message.
#[test]
#[ignore]
fn throughput_to_rsyslog_over_tcp() {
    let _s = serial();
    let dir = tmpdir("throughput");
    let lines = corpus_lines(&dir);
    let mut text = Vec::new();
    for k in 0..200u64 {
        for l in &lines {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v["frame"] = Value::from(v["frame"].as_u64().unwrap_or(0) + k * 10_000_000);
            serde_json::to_writer(&mut text, &v).unwrap();
            text.push(b'\n');
        }
    }
    let spool = dir.join("spool.ndjson");
    std::fs::write(&spool, &text).unwrap();
    let n = lines.len() * 200;
    let r = Rsyslog::tcp(&dir, "tcp", free_port());
    let t0 = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%U %S"])
        .arg(kcdscope_bin())
        .arg("ship")
        .arg(&spool)
        .args(["--syslog", &format!("tcp://127.0.0.1:{}", r.port), "--batch-events", "1000"])
        .output()
        .unwrap();
    let wall = t0.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let cpu: f64 = err.lines().last().unwrap().split_whitespace().map(|x| x.parse::<f64>().unwrap()).sum();
    assert_eq!(counters(&err)[0], n as u64, "{err}");
    let log = dir.join("tcp.log");
    while std::fs::read(&log).map_or(0, |b| b.iter().filter(|c| **c == b'\n').count()) < n {
        assert!(t0.elapsed() < Duration::from_secs(300), "rsyslog did not write them all");
        std::thread::sleep(Duration::from_millis(20));
    }
    let end = t0.elapsed().as_secs_f64();
    eprintln!(
        "syslog tcp: {n} events ({} MB) in {wall:.2} s: {:.0} events/s; kcdscope used {cpu:.2} s of CPU ({:.0} events per CPU second); all written by rsyslog after {end:.2} s ({:.0} events/s end to end)",
        text.len() / 1_000_000,
        n as f64 / wall,
        n as f64 / cpu.max(0.001),
        n as f64 / end
    );
}
