//! The syslog output against a real rsyslog (Debian package rsyslog; tests/run installs
//! it): rsyslogd runs as a plain process on loopback ports with its own configuration in a
//! temporary directory, receiving over TCP (octet-counted framing, RFC 6587) and UDP, and
//! writes each message's MSGID, structured data and message to a file. Every event of
//! every capture (findings included) must arrive exactly once, in order, with the JSON
//! byte for byte what the file output writes, and the structured data naming its type
//! and severity as rsyslog parsed them.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kcd_decode::{Config, Decoder, Sink};
use kcd_export::outputs::syslog::{severity_of, SyslogConfig, SyslogWriter, Transport};
use kcd_schema::Event;
use kcd_tests::{captures, rel};

struct Rsyslog {
    child: Child,
    dir: PathBuf,
    tcp: u16,
    udp: u16,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let p = l.local_addr().expect("addr").port();
    // The same number free for UDP too (checked, not assumed).
    UdpSocket::bind(("127.0.0.1", p)).map(|_| p).unwrap_or_else(|_| free_port())
}

fn start_rsyslog() -> Rsyslog {
    let bin = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"].into_iter().find(|p| Path::new(p).exists());
    let bin = bin.expect("rsyslogd is needed: apt-get install rsyslog (tests/run installs it when run as root)");
    // One directory per rsyslogd: the tests run in parallel.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("kcd-rsyslog-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (tcp, udp) = (free_port(), free_port());
    let d = dir.display();
    let conf = format!(
        r#"global(workDirectory="{d}" maxMessageSize="256k")
module(load="imtcp")
module(load="imudp")
template(name="raw" type="string" string="%msgid%|%structured-data%|%msg%\n")
ruleset(name="tcp") {{ action(type="omfile" file="{d}/tcp.log" template="raw") }}
ruleset(name="udp") {{ action(type="omfile" file="{d}/udp.log" template="raw") }}
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="tcp")
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="udp")
"#
    );
    std::fs::write(dir.join("rsyslog.conf"), conf).expect("conf");
    let child = Command::new(bin)
        .args(["-n", "-f"])
        .arg(dir.join("rsyslog.conf"))
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(dir.join("stderr")).expect("stderr file")))
        .spawn()
        .expect("starts rsyslogd");
    let r = Rsyslog { child, dir, tcp, udp };
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", tcp)).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10), "rsyslogd did not listen: {}",
            std::fs::read_to_string(r.dir.join("stderr")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    r
}

/// What was sent: (event type, severity name, JSON) per event, in order.
fn ship(to: SocketAddr, transport: Transport) -> (Vec<(String, &'static str, String)>, kcd_export::outputs::syslog::SyslogCounters) {
    ship_with(to, transport, None)
}

type Tls = Option<(std::sync::Arc<rustls::ClientConfig>, String)>;

fn ship_with(to: SocketAddr, transport: Transport, tls: Tls) -> (Vec<(String, &'static str, String)>, kcd_export::outputs::syslog::SyslogCounters) {
    let mut cfg = SyslogConfig::new(to, transport);
    cfg.tls = tls;
    let mut w = SyslogWriter::connect(cfg).expect("connects");
    let mut sent = Vec::new();
    let mut n = 0u64;
    let mut send = |e: &Event<'_>, w: &mut SyslogWriter| {
        let mut j = Vec::new();
        e.write_json(&mut j);
        let v: serde_json::Value = serde_json::from_slice(&j).expect("JSON");
        sent.push((v["event_type"].as_str().unwrap_or("").to_string(), severity_of(e).1, String::from_utf8(j).expect("UTF-8")));
        w.event(e);
        n += 1;
        // Loopback UDP drops when rsyslog's socket buffer fills: a real sender would pace too.
        if transport == Transport::Udp && n.is_multiple_of(32) {
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    for f in captures("") {
        let mut dec = Decoder::new(Config::default());
        let mut corr = kcd_correlate::Correlator::new(Default::default());
        let mut sink = |e: &Event<'_>| {
            corr.event(e);
            send(e, &mut w);
        };
        kcd_capture::replay_file(&f, &rel(&f), &mut dec, &mut sink).expect("replays");
        dec.finish(&mut sink);
        corr.finish();
        for fi in corr.findings() {
            send(&fi.into_event(), &mut w);
        }
    }
    let c = w.finish().expect("finishes");
    (sent, c)
}

fn received(path: &Path, want: usize) -> Vec<String> {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= want || t0.elapsed() > Duration::from_secs(20) {
            // A moment more, to see duplicates that would arrive late.
            std::thread::sleep(Duration::from_millis(300));
            return std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn compare(sent: &[(String, &'static str, String)], got: &[String], what: &str) {
    assert_eq!(got.len(), sent.len(), "{what}: rsyslog wrote {} messages for {} events", got.len(), sent.len());
    for (i, ((ty, sev, json), line)) in sent.iter().zip(got).enumerate() {
        let mut parts = line.splitn(3, '|');
        let (msgid, sd, msg) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        assert_eq!(msgid, ty, "{what} #{i}: MSGID");
        assert!(sd.starts_with("[kcdscope@32473 "), "{what} #{i}: {sd}");
        assert!(sd.contains(&format!("event_type=\"{ty}\"")), "{what} #{i}: {sd}");
        assert!(sd.contains(&format!("severity=\"{sev}\"")), "{what} #{i}: {sd}");
        assert_eq!(msg.trim_start(), json, "{what} #{i}: message");
    }
}

#[test]
fn rsyslog_receives_every_event_exactly_once_over_tcp_and_udp() {
    let r = start_rsyslog();
    let (sent, c) = ship(([127, 0, 0, 1], r.tcp).into(), Transport::Tcp);
    assert_eq!((c.sent as usize, c.dropped), (sent.len(), 0), "{c:?}");
    compare(&sent, &received(&r.dir.join("tcp.log"), sent.len()), "TCP");
    let findings = sent.iter().filter(|s| s.0 == "finding").count();
    assert!(findings > 10 && sent.len() > 400, "{} events, {findings} findings", sent.len());

    let (sent, c) = ship(([127, 0, 0, 1], r.udp).into(), Transport::Udp);
    assert_eq!((c.sent as usize, c.dropped), (sent.len(), 0), "{c:?}");
    compare(&sent, &received(&r.dir.join("udp.log"), sent.len()), "UDP");
    eprintln!("rsyslog received {} events over TCP and over UDP, {findings} of them findings", sent.len());
}

/// `kcdscope replay --syslog tcp://... --format ecs`: what rsyslog receives is what
/// `--json --format ecs` prints, line for line.
#[test]
fn replay_command_ships_ecs_to_rsyslog() {
    let mut r = start_rsyslog();
    let files: Vec<String> = captures("krb5/mit").iter().map(|p| p.display().to_string()).collect();
    let json = Command::new(kcd_tests::kcdscope_bin())
        .args(["replay", "-q", "--json", "--format", "ecs"])
        .args(&files)
        .output()
        .expect("runs kcdscope");
    assert!(json.status.success(), "{}", String::from_utf8_lossy(&json.stderr));
    let want: Vec<String> = String::from_utf8_lossy(&json.stdout).lines().map(str::to_string).collect();
    let out = Command::new(kcd_tests::kcdscope_bin())
        .args(["replay", "--count", "--format", "ecs", "--syslog", &format!("tcp://127.0.0.1:{}", r.tcp)])
        .args(&files)
        .output()
        .expect("runs kcdscope");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("syslog: {} events sent", want.len())), "{err}");
    let got = received(&r.dir.join("tcp.log"), want.len());
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.splitn(3, '|').nth(2).map(str::trim_start), Some(w.as_str()));
    }
    let _ = r.child.kill();
}

/// Over TLS (RFC 5425): rsyslog's openssl driver (package rsyslog-openssl) with a
/// certificate from a CA made here with openssl; the sender checks the certificate.
#[test]
fn rsyslog_receives_every_event_over_tls() {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("kcd-rsyslog-tls-{}-{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sh = |cmd: &str| {
        let o = Command::new("sh").arg("-c").arg(cmd).current_dir(&dir).output().expect("runs sh");
        assert!(o.status.success(), "{cmd}: {}", String::from_utf8_lossy(&o.stderr));
    };
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca 2>/dev/null");
    sh("openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null");
    sh("printf 'subjectAltName=DNS:localhost\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf \
        && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf 2>/dev/null");
    let port = free_port();
    let d = dir.display();
    let conf = format!(
        r#"global(workDirectory="{d}" maxMessageSize="256k" DefaultNetstreamDriver="ossl"
       DefaultNetstreamDriverCAFile="{d}/ca.pem" DefaultNetstreamDriverCertFile="{d}/server.pem"
       DefaultNetstreamDriverKeyFile="{d}/server.key")
module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
template(name="raw" type="string" string="%msgid%|%structured-data%|%msg%\n")
ruleset(name="tls") {{ action(type="omfile" file="{d}/tls.log" template="raw") }}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="tls")
"#
    );
    std::fs::write(dir.join("rsyslog.conf"), conf).expect("conf");
    let bin = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"].into_iter().find(|p| Path::new(p).exists()).expect("rsyslogd");
    let child = Command::new(bin)
        .args(["-n", "-f"])
        .arg(dir.join("rsyslog.conf"))
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(dir.join("stderr")).expect("stderr file")))
        .spawn()
        .expect("starts rsyslogd");
    let r = Rsyslog { child, dir: dir.clone(), tcp: port, udp: 0 };
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10), "rsyslogd did not listen: {}",
            std::fs::read_to_string(dir.join("stderr")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    let tls = kcd_export::outputs::syslog::tls_config(&dir.join("ca.pem")).expect("CA");
    // A name the certificate does not carry is refused.
    let mut wrong = SyslogConfig::new(([127, 0, 0, 1], r.tcp).into(), Transport::Tls);
    wrong.tls = Some((tls.clone(), "not-localhost".into()));
    assert!(SyslogWriter::connect(wrong).is_err(), "a certificate for another name was accepted");
    let (sent, c) = ship_with(([127, 0, 0, 1], r.tcp).into(), Transport::Tls, Some((tls, "localhost".into())));
    assert_eq!((c.sent as usize, c.dropped), (sent.len(), 0), "{c:?}");
    compare(&sent, &received(&dir.join("tls.log"), sent.len()), "TLS");
    eprintln!("rsyslog received {} events over TLS", sent.len());
}

/// Events a second to rsyslog over TCP (run with a release kcdscope: `KCDSCOPE_BIN=
/// target/release/kcdscope cargo test -p kcd-tests --test syslog_rsyslog -- --ignored
/// --nocapture throughput`): the corpus replayed 200 times in one run (`replay` takes the
/// list of files, state carrying over), timed until rsyslog has written every message,
/// beside the same replay with `--count` only.
#[test]
#[ignore]
fn throughput_to_rsyslog_over_tcp() {
    let r = start_rsyslog();
    let files: Vec<String> = captures("").iter().map(|p| p.display().to_string()).collect();
    let many: Vec<&String> = (0..200).flat_map(|_| files.iter()).collect();
    let t0 = Instant::now();
    let base = Command::new(kcd_tests::kcdscope_bin()).args(["replay", "--count"]).args(&many).output().expect("runs kcdscope");
    let base_wall = t0.elapsed().as_secs_f64();
    assert!(base.status.success());
    let t0 = Instant::now();
    let out = Command::new(kcd_tests::kcdscope_bin())
        .args(["replay", "--count", "--syslog", &format!("tcp://127.0.0.1:{}", r.tcp)])
        .args(&many)
        .output()
        .expect("runs kcdscope");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let sent: usize = err
        .split("syslog: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the syslog counters");
    let sent_wall = t0.elapsed().as_secs_f64();
    let tcp = r.dir.join("tcp.log");
    while std::fs::read(&tcp).map_or(0, |b| b.iter().filter(|c| **c == b'\n').count()) < sent {
        assert!(t0.elapsed() < Duration::from_secs(300), "rsyslog did not write them all");
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall = t0.elapsed().as_secs_f64();
    eprintln!(
        "rsyslog tcp: {sent} events; kcdscope done in {sent_wall:.2} s ({:.0} events/s; the replay alone {base_wall:.2} s), all written by rsyslog after {wall:.2} s ({:.0} events/s end to end)",
        sent as f64 / sent_wall,
        sent as f64 / wall
    );
}
