//! Shared by the network outputs' tests (ship_kafka, syslog_rsyslog): the spool's lines, a
//! child reaped when the test ends, and a gateway whose refusals make events.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The spool's lines, oldest file first. Read again when a file went missing meanwhile: a
/// writer still running renames the current file before it creates the next one.
pub fn spool_lines(spool: &Path) -> Vec<String> {
    for _ in 0..100 {
        let mut files: Vec<PathBuf> = kcd_export::outputs::file::rotated_files(spool).unwrap().into_iter().map(|(_, p)| p).collect();
        files.push(spool.to_path_buf());
        let texts: Result<Vec<String>, _> = files.iter().map(std::fs::read_to_string).collect();
        match texts {
            Ok(t) => return t.iter().flat_map(|t| t.lines().filter(|l| !l.is_empty()).map(str::to_string)).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("{}: {e}", spool.display()),
        }
    }
    panic!("{}: files kept going missing while read", spool.display())
}

/// A child killed when the test ends, passed or not.
pub struct Reaped(pub Option<Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// SIGTERM to a child whose standard error is piped: that standard error, once it exited
/// successfully.
pub fn term(mut r: Reaped) -> String {
    let mut c = r.0.take().unwrap();
    let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
    let mut err = String::new();
    c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(c.wait().unwrap().success(), "{err}");
    err
}

/// Appends `lines` to the spool, as the agent writes them.
pub fn append(spool: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(spool).unwrap();
    let mut text = lines.join("\n");
    text.push('\n');
    f.write_all(text.as_bytes()).unwrap();
}

/// Runs openssl in DIR; fails the test with its message if it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is needed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `kcdscope gateway --events events.ndjson --rotate-bytes 2048 SHIP_ARGS...` in `dir`,
/// its certificate made with openssl, no KDC or Exchange reachable (nothing gets that far).
pub struct Gateway {
    pub child: Reaped,
    pub listen: u16,
    pub admin: u16,
    pub spool: PathBuf,
    pub stderr: PathBuf,
}

impl Gateway {
    pub fn start(dir: &Path, ship_args: &[&str]) -> Gateway {
        let openssl = |args: &[&str]| openssl(dir, args);
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30"];
        openssl(&[&["req", "-x509"][..], &ec, &["-keyout", "server.key", "-out", "server.pem", "-subj", "/CN=gw.lab.test", "-addext", "subjectAltName=DNS:gw.lab.test"]].concat());
        openssl(&[&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=Device CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]].concat());
        std::fs::write(dir.join("svc.password"), "unused: no KDC is reached\n").unwrap();
        let (listen, admin) = (free_port(), free_port());
        let config = format!(
            r#"[listen]
address = "127.0.0.1:{listen}"
certificate = "server.pem"
key = "server.key"
handshake_timeout_ms = 3000
[client_certificates]
chain = "ca.pem"
[exchange]
url = "http://127.0.0.1:1"
[admin]
address = "127.0.0.1:{admin}"
[service_account]
user = "svc_awseg"
password_file = "svc.password"
[kcd]
target_spn = "HTTP/exchange.lab.test"
[[domain]]
realm = "LAB.TEST"
domain_controllers = ["127.0.0.1:1"]
"#
        );
        std::fs::write(dir.join("gateway.toml"), config).unwrap();
        let stderr = dir.join("gateway.err");
        let child = Reaped(Some(
            Command::new(crate::kcdscope_bin())
                .args(["gateway", "--config", "gateway.toml", "--events", "events.ndjson", "--rotate-bytes", "2048"])
                .args(ship_args)
                .current_dir(dir)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&stderr).unwrap())
                .spawn()
                .unwrap(),
        ));
        let g = Gateway { child, listen, admin, spool: dir.join("events.ndjson"), stderr };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", listen)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(20), "the gateway did not listen: {}", std::fs::read_to_string(&g.stderr).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(50));
        }
        g
    }

    /// `devices` that send plain HTTP, each refused at the handshake (an event each, and
    /// one for the connection that saw the gateway listen); returns once --events holds
    /// their refusals.
    pub fn refuse(&self, devices: usize) {
        for _ in 0..devices {
            let mut s = TcpStream::connect(("127.0.0.1", self.listen)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(b"GET /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: gw.lab.test\r\n\r\n");
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
        let refused = || spool_lines(&self.spool).iter().filter(|l| l.contains("\"reason\":\"tls_handshake\"")).count();
        let t0 = Instant::now();
        while refused() < devices {
            assert!(t0.elapsed() < Duration::from_secs(20), "{} refusals written", refused());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asserts that `lines` (its --events) are the gateway's own: its refusals and its
    /// delegation client's events (kcd and krb5: it asks the KDC as soon as it starts).
    pub fn assert_own_events(lines: &[String]) {
        let other = lines.iter().find(|l| !["gateway", "kcd", "krb5"].iter().any(|t| l.contains(&format!("\"event_type\":\"{t}\""))));
        assert!(other.is_none(), "the gateway's events, not {other:?}");
    }

    /// SIGTERM, and its standard error once it exited successfully.
    pub fn stop(mut self) -> String {
        let mut c = self.child.0.take().unwrap();
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        assert!(c.wait().unwrap().success(), "{}", std::fs::read_to_string(&self.stderr).unwrap_or_default());
        std::fs::read_to_string(&self.stderr).unwrap()
    }
}

/// `kcdscope watch -i lo --backend pcap -o DIR/events.ndjson --rotate-bytes 8192 SHIP_ARGS...`
/// (needs root) while real Kerberos messages (the UDP requests and replies of the captures)
/// are sent over loopback between two sockets here, then SIGTERM. Returns the -o file, the
/// command's standard error and the number of exchanges sent.
pub fn watch_live(dir: &Path, ship_args: &[&str]) -> (PathBuf, String, usize) {
    use std::net::UdpSocket;
    let kdc = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = kdc.local_addr().unwrap().port();
    // UDP messages only (a TCP record starts with its length, not an ASN.1 tag).
    let exchanges: Vec<(Vec<u8>, Vec<u8>)> =
        crate::pcap::real_exchanges(&crate::repo_root().join("captures/krb5")).into_iter().filter(|(q, _)| matches!(q.first(), Some(0x6a | 0x6c))).collect();
    assert!(exchanges.len() >= 20, "{} UDP exchanges in the captures", exchanges.len());
    let spool = dir.join("events.ndjson");
    let err_path = dir.join("watch.err");
    let mut watch = Reaped(Some(
        Command::new(crate::kcdscope_bin())
            .args(["watch", "-i", "lo", "--backend", "pcap", "--krb5-port", &port.to_string(), "-o"])
            .arg(&spool)
            .args(["--rotate-bytes", "8192"])
            .args(ship_args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap(),
    ));
    let t0 = Instant::now();
    while !std::fs::read_to_string(&err_path).unwrap_or_default().contains("kcdscope: watching") {
        assert!(t0.elapsed() < Duration::from_secs(20), "watch did not start: {}", std::fs::read_to_string(&err_path).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    kdc.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = vec![0u8; 65536];
    for (q, r) in &exchanges {
        client.send_to(q, ("127.0.0.1", port)).unwrap();
        let (_, from) = kdc.recv_from(&mut buf).unwrap();
        kdc.send_to(r, from).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut c = watch.0.take().unwrap();
    let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
    assert!(c.wait().unwrap().success(), "{}", std::fs::read_to_string(&err_path).unwrap_or_default());
    (spool, std::fs::read_to_string(&err_path).unwrap(), exchanges.len())
}
