//! `kcdscope gateway` between real peers (tests/lab/gateway.sh): curl and openssl as
//! devices with certificates from an openssl PKI, a Samba AD DC, Apache + mod_auth_gssapi as
//! Exchange, Apache publishing base and delta CRLs. The judges are independent of the
//! gateway: what Apache received (its REMOTE_USER, the headers it logged, how many requests
//! it read), the TLS alert curl reports, and the KDC's own error codes.
//!
//! Needs root (network namespaces): `tests/run` runs it.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kcd_tests::kcdscope_bin;
use serde_json::Value;

const NS: &str = "kcdgw-gw";

kcd_tests::lab_steps!(
    /// The lab (`kcd_tests::Lab`: taken down when dropped, unless KCDGW_KEEP is set; its
    /// `children` are the gateways started) and this test's steps in it.
    Lab
);

struct Curl {
    status: u16,
    body: String,
    stderr: String,
}

#[derive(Clone)]
struct Device {
    pki: PathBuf,
    gw: PathBuf,
    addr: String,
}

impl Device {
    fn curl(&self, port: u16, cert: Option<&str>, query: &str, extra: &[&str]) -> Curl {
        let mut c = Command::new("ip");
        // A later --max-time in `extra` wins over this one.
        c.args(["netns", "exec", NS, "curl", "-sS", "--max-time", "30", "--resolve"])
            .arg(format!("gw.lab.test:{port}:{}", self.addr))
            .arg("--cacert")
            .arg(self.gw.join("gw.pem"));
        if let Some(n) = cert {
            c.arg("--cert").arg(self.pki.join(format!("dev/{n}.pem"))).arg("--key").arg(self.pki.join(format!("dev/{n}.key")));
        }
        c.args(["-X", "POST", "--data-binary", "<wbxml/>", "-w", "\n%{http_code}"]).args(extra);
        c.arg(format!("https://gw.lab.test:{port}/Microsoft-Server-ActiveSync?{query}"));
        let o: Output = c.output().expect("curl");
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
        Curl { status: code.trim().parse().unwrap_or(0), body: body.to_string(), stderr: String::from_utf8_lossy(&o.stderr).to_string() }
    }
}

impl Lab {
    fn up() -> Lab {
        // The provisioned domain is kept between runs (provisioning takes most of the time).
        let dir = std::env::temp_dir().join("kcdscope-gateway-lab");
        std::fs::create_dir_all(dir.join("gw")).expect("scratch dir");
        Lab(kcd_tests::Lab::up("gateway.sh", dir, "KCDGW_KEEP", false, &[]))
    }

    fn gw(&self) -> PathBuf {
        self.dir.join("gw")
    }

    /// The gateway's own TLS certificate (devices trust it through --cacert).
    fn server_cert(&self) {
        let g = self.gw();
        let st = Command::new("openssl")
            .args(["req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
            .arg("-keyout")
            .arg(g.join("gw.key"))
            .arg("-out")
            .arg(g.join("gw.pem"))
            .args(["-subj", "/CN=gw.lab.test", "-days", "30", "-addext", "subjectAltName=DNS:gw.lab.test"])
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(st.success());
    }

    /// Writes a gateway configuration; `extra` replaces sections by name.
    fn config(&self, name: &str, port: u16, kdc: &str, exchange: &str, extra: &str, chain: &str) -> PathBuf {
        let p = self.gw().join(format!("{name}.toml"));
        let admin = if port == 8443 { "[admin]\naddress = \"127.0.0.1:9443\"\n" } else { "" };
        let text = format!(
            r#"[listen]
address = "{gw}:{port}"
certificate = "gw.pem"
key = "gw.key"
handshake_timeout_ms = 5000

[client_certificates]
chain = "{chain}"

[exchange]
url = "{exchange}"
connect_timeout_ms = 2000

[crl]
preload = ["http://crl.lab.test/pki/issuing.crl", "http://crl.lab.test/pki/issuing+.crl"]
refresh_seconds = 2
retry_seconds = 2
fetch_timeout_ms = 2000

{admin}{extra}
[service_account]
user = "svc_awseg"
password_file = "{pw}"

[kcd]
target_spn = "{spn}"

[kdc]
timeout_ms = 1000

[[domain]]
realm = "{realm}"
domain_controllers = ["{kdc}"]
"#,
            gw = self.v("LAB_GW_ADDR"),
            pw = self.v("LAB_SVC_PASSWORD_FILE"),
            spn = self.v("LAB_TARGET_SPN"),
            realm = self.v("LAB_REALM"),
        );
        std::fs::write(&p, text).expect("config");
        p
    }

    fn start(&mut self, config: &Path, events: &str) {
        self.start_with(config, events, &[]);
    }

    fn start_with(&mut self, config: &Path, events: &str, extra: &[&str]) {
        let port = std::fs::read_to_string(config)
            .ok()
            .and_then(|t| t.lines().find(|l| l.starts_with("address")).and_then(|l| l.rsplit(':').next()).map(|p| p.trim_matches('"').to_string()))
            .unwrap_or_default();
        // Events are appended to: start each run's gateway with an empty file, so that no
        // check can be passed by an event of an earlier run.
        let _ = std::fs::remove_file(self.gw().join(events));
        let log = std::fs::File::create(self.gw().join(format!("{events}.log"))).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", NS])
            .arg(kcdscope_bin())
            .args(["gateway", "--config"])
            .arg(config)
            .arg("--events")
            .arg(self.gw().join(events))
            .args(extra)
            .current_dir(self.gw())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("gateway starts");
        self.children.push(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let out = Command::new("ip").args(["netns", "exec", NS, "ss", "-Hltn"]).arg(format!("sport = :{port}")).output().expect("ss");
            if !out.stdout.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the gateway on port {port} does not listen; see {}", self.gw().join(format!("{events}.log")).display());
    }

    /// A device: curl in the gateway's namespace with certificate `cert` (None: none).
    fn curl(&self, port: u16, cert: Option<&str>, query: &str, extra: &[&str]) -> Curl {
        self.device().curl(port, cert, query, extra)
    }

    /// What a device needs, owned, for a thread of its own.
    fn device(&self) -> Device {
        Device { pki: PathBuf::from(self.v("LAB_PKI")), gw: self.gw(), addr: self.v("LAB_GW_ADDR") }
    }

    /// Metrics of the gateway whose admin listener is on `port`.
    fn metrics_at(&self, port: u16) -> String {
        let o = Command::new("ip").args(["netns", "exec", NS, "curl", "-sS", &format!("http://127.0.0.1:{port}/metrics")]).output().expect("curl");
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// A Python program run in the gateway's namespace; its standard output.
    fn python(&self, program: &str) -> String {
        let o = Command::new("ip").args(["netns", "exec", NS, "/usr/bin/python3", "-c", program]).output().expect("python");
        if !o.status.success() {
            eprintln!("python: {}", String::from_utf8_lossy(&o.stderr));
        }
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// Requests Apache (Exchange) has read so far (not the "OPTIONS *" that Apache's
    /// prefork master sends its own children to wake them, nor those of the 5-minute Ping
    /// and the requests beside it, which run in the background).
    fn received(&self) -> Vec<String> {
        std::fs::read_to_string(self.v("LAB_EXCHANGE_RECEIVED"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with("OPTIONS * ") && !l.contains("DeviceId=BESIDEPING") && !l.contains("DeviceId=PING5MIN"))
            .map(without_credential)
            .collect()
    }

    fn events(&self, file: &str) -> Vec<Value> {
        std::fs::read_to_string(self.gw().join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The request events of a gateway, newest last.
    fn requests(&self, file: &str) -> Vec<Value> {
        self.events(file).into_iter().filter_map(|e| (e["gateway"]["step"] == "request" && e["event_type"] == "gateway").then(|| e["gateway"].clone())).collect()
    }

    fn last_request(&self, file: &str) -> Value {
        self.requests(file).pop().unwrap_or(Value::Null)
    }

    /// The newest request event once there are more than `before`, Null if none comes in
    /// 5 s. A refusal in the TLS handshake is written after the alert went out, so curl can
    /// exit before the event is in the file (it happened in CI).
    fn request_after(&self, file: &str, before: usize) -> Value {
        let t = Instant::now();
        loop {
            let mut r = self.requests(file);
            if r.len() > before {
                return r.pop().unwrap_or(Value::Null);
            }
            if t.elapsed() > Duration::from_secs(5) {
                return Value::Null;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn metrics(&self) -> String {
        let o = Command::new("ip").args(["netns", "exec", NS, "curl", "-sS", "http://127.0.0.1:9443/metrics"]).output().expect("curl");
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// Bytes sent raw over TLS with a client certificate (openssl s_client), the answer read
    /// until the server closes or `secs` pass.
    fn raw(&self, port: u16, cert: &str, bytes: &[u8], secs: u64) -> String {
        let pki = PathBuf::from(self.v("LAB_PKI"));
        let mut c = Command::new("ip")
            .args(["netns", "exec", NS, "timeout", &secs.to_string(), "openssl", "s_client", "-quiet", "-connect"])
            .arg(format!("{}:{port}", self.v("LAB_GW_ADDR")))
            .args(["-servername", "gw.lab.test", "-cert"])
            .arg(pki.join(format!("dev/{cert}.pem")))
            .arg("-key")
            .arg(pki.join(format!("dev/{cert}.key")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl");
        if let Some(mut i) = c.stdin.take() {
            let _ = i.write_all(bytes);
            // keep stdin open: s_client would close the connection at EOF before the answer
            std::thread::sleep(Duration::from_millis(1500));
            drop(i);
        }
        let mut out = String::new();
        if let Some(mut o) = c.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        let _ = c.wait();
        out
    }
}

/// A line of Exchange's log with the Authorization value's credential replaced by its length:
/// the scheme stays (what the checks look at), the ticket (usable for minutes) is never printed.
fn without_credential(line: &str) -> String {
    let Some((head, rest)) = line.split_once(" auth=") else { return line.to_string() };
    let (value, tail) = rest.split_once(" q=").unwrap_or((rest, ""));
    let value = match value.split_once(' ') {
        Some((scheme, cred)) => format!("{scheme} <{} chars>", cred.len()),
        None => value.to_string(),
    };
    format!("{head} auth={value} q={tail}")
}

fn status_line(raw: &str) -> String {
    raw.lines().next().unwrap_or("").to_string()
}

#[test]
#[ignore = "needs root: network namespaces, Samba AD, Apache (tests/run runs it)"]
fn the_gateway_between_real_peers() {
    let mut lab = Lab::up();
    lab.server_cert();
    // Everything the gateway host sends and receives, for the agent's replay at the end.
    let wire = lab.gw().join("wire.pcap");
    let _ = std::fs::remove_file(&wire);
    let mut tcpdump = Command::new("ip")
        .args(["netns", "exec", NS, "tcpdump", "-i", "any", "-s", "0", "-U", "-n", "-w"])
        .arg(&wire)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump starts");
    let chain = format!("{}/chain.pem", lab.v("LAB_PKI"));
    let exchange = format!("http://{}", lab.v("LAB_EXCHANGE_HOST"));
    let kdc = lab.v("LAB_KDC_ADDR");
    let main = lab.config("main", 8443, &kdc, &exchange, "[limits]\nheader_read_timeout_ms = 10000\n", &chain);
    lab.start(&main, "main.ndjson");
    let dead_kdc = lab.config("deadkdc", 8444, &lab.v("LAB_DEAD_ADDR"), &exchange, "", &chain);
    lab.start(&dead_kdc, "deadkdc.ndjson");
    let down = lab.config("nox", 8445, &kdc, &format!("http://{}:81", lab.v("LAB_EXCHANGE_ADDR")), "", &chain);
    lab.start(&down, "nox.ndjson");
    let rewrite = lab.config("rewrite", 8446, &kdc, &exchange, "[mapping]\nrewrite = [{ from = \"corp.example\", to = \"lab.test\" }]\n[limits]\nheader_read_timeout_ms = 2000\n", &chain);
    // This one also streams its events to a Unix socket, as to the agent.
    let sock = lab.gw().join("events.sock");
    let _ = std::fs::remove_file(&sock);
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("unix socket");
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        // Never wait forever: a gateway that does not connect fails the check, not the run.
        let _ = listener.set_nonblocking(true);
        let deadline = Instant::now() + Duration::from_secs(120);
        let conn = loop {
            match listener.accept() {
                Ok((s, _)) => break Some(s),
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => break None,
            }
        };
        if let Some(s) = conn {
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
            let mut r = std::io::BufReader::new(s);
            let mut l = String::new();
            while r.read_line(&mut l).is_ok_and(|n| n > 0) {
                let done = l.contains("\"ALTSUFFIX\"");
                lines.push(std::mem::take(&mut l));
                if done {
                    break;
                }
            }
        }
        lines
    });
    let unix_arg = format!("unix:{}", sock.display());
    lab.start_with(&rewrite, "rewrite.ndjson", &["--events", &unix_arg]);
    // The same gateway with a service account that may not delegate to Exchange.
    let nodeleg = lab.config("nodeleg", 8447, &kdc, &exchange, "", &chain);
    let text = std::fs::read_to_string(&nodeleg).expect("nodeleg")
        .replace("user = \"svc_awseg\"", "user = \"svc_nodeleg\"")
        .replace(&lab.v("LAB_SVC_PASSWORD_FILE"), &lab.v("LAB_NODELEG_PASSWORD_FILE"));
    std::fs::write(&nodeleg, text).expect("write");
    lab.start(&nodeleg, "nodeleg.ndjson");
    // An Exchange whose key is not the account's (duplicate SPN, ASA not deployed).
    let badkey = lab.config("badkey", 8448, &kdc, &format!("{exchange}:8080"), "", &chain);
    lab.start(&badkey, "badkey.ndjson");
    // CRL problems let through by configuration (crl.fail = "open"), with an event.
    let open = lab.config("open", 8451, &kdc, &exchange, "", &chain);
    let text = std::fs::read_to_string(&open).expect("open").replace("[crl]\n", "[crl]\nfail = \"open\"\n");
    std::fs::write(&open, text).expect("write");
    lab.start(&open, "open.ndjson");
    // A gateway to stop with SIGTERM while it holds a request.
    let drain = lab.config("drain", 8452, &kdc, &exchange, "[limits]\ndrain_seconds = 20\n", &chain);
    let drain_idx = lab.children.len();
    lab.start(&drain, "drain.ndjson");
    // Exchange over HTTPS: its certificate checked against its CA and name.
    let tls_extra = format!("ca = \"{}\"\n", lab.v("LAB_EXCHANGE_CA"));
    let https_url = format!("https://{}", lab.v("LAB_EXCHANGE_HOST"));
    let https = lab.config("https", 8449, &kdc, &https_url, "", &chain);
    let text = std::fs::read_to_string(&https).expect("https").replace("connect_timeout_ms = 2000\n", &format!("connect_timeout_ms = 2000\n{tls_extra}"));
    std::fs::write(&https, text).expect("write");
    lab.start(&https, "https.ndjson");
    let wrongname = lab.config("wrongname", 8450, &kdc, &https_url, "", &chain);
    let text = std::fs::read_to_string(&wrongname)
        .expect("wrongname")
        .replace("connect_timeout_ms = 2000\n", &format!("connect_timeout_ms = 2000\n{tls_extra}server_name = \"mail.lab.test\"\n"));
    std::fs::write(&wrongname, text).expect("write");
    lab.start(&wrongname, "wrongname.ndjson");
    // Two domain controllers, the first one silent: the gateway fails over to the second.
    let failover = lab.config("failover", 8457, &format!("{}\", \"{kdc}", lab.v("LAB_DEAD_ADDR")), &exchange, "", &chain);
    lab.start(&failover, "failover.ndjson");
    // A gateway for the 5-minute Ping (and the requests beside it).
    let ping_gw = lab.config("ping", 8453, &kdc, &exchange, "[admin]\naddress = \"127.0.0.1:9453\"\n", &chain);
    lab.start(&ping_gw, "ping.ndjson");
    // Two connections at most; a body that stalls for 2 s is given up.
    let cap = lab.config("cap", 8454, &kdc, &exchange, "[admin]\naddress = \"127.0.0.1:9454\"\n[limits]\nbody_idle_timeout_ms = 2000\n", &chain);
    let text = std::fs::read_to_string(&cap).expect("cap").replace("handshake_timeout_ms = 5000\n", "handshake_timeout_ms = 5000\nmax_connections = 2\n");
    std::fs::write(&cap, text).expect("write");
    lab.start(&cap, "cap.ndjson");
    // No CRL preloaded: the issuing CA's CDP is first seen in a device's certificate.
    let fresh = lab.config("fresh", 8455, &kdc, &exchange, "", &chain);
    let text = std::fs::read_to_string(&fresh).expect("fresh");
    let text: String = text.lines().filter(|l| !l.starts_with("preload = ")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&fresh, text).expect("write");
    let fresh_idx = lab.children.len();
    lab.start(&fresh, "fresh.ndjson");

    // The first device of an issuer whose CRL was never fetched: the handshake waits for
    // that fetch (bounded) and the device is served, not refused with crl_missing.
    {
        // The chain's own CDP (the root's CRL, listed in the issuing CA's certificate) is
        // fetched at start; it is the device's CDP that is first seen in the handshake.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && !std::fs::read_to_string(lab.gw().join("fresh.ndjson.log")).unwrap_or_default().lines().any(|l| l.contains("CRL loaded") && l.contains("/pki/root.crl")) {
            std::thread::sleep(Duration::from_millis(200));
        }
        let unseen = !std::fs::read_to_string(lab.gw().join("fresh.ndjson.log")).unwrap_or_default().contains("/pki/issuing.crl\"");
        let n = lab.received().len();
        let r = lab.curl(8455, Some("alice"), "Cmd=Sync&DeviceId=FIRSTSIGHT", &[]);
        // Apache logs a request after it has answered it.
        std::thread::sleep(Duration::from_millis(300));
        let e = lab.last_request("fresh.ndjson");
        lab.check("first device, CRL never fetched before (no preload): 200, its CRL fetched during the handshake", unseen && r.status == 200 && r.body.contains("REMOTE_USER=alice@LAB.TEST") && e["certificate"]["revocation"] == "good" && e["certificate"]["crl_source"].as_str().is_some_and(|u| u.ends_with("/pki/issuing.crl")) && lab.received().len() == n + 1, || format!("{} {} {e}", r.status, r.stderr));
        let b = lab.requests("fresh.ndjson").len();
        let r = lab.curl(8455, Some("unreachable"), "Cmd=Sync&DeviceId=FIRSTUNREACH", &[]);
        let e = lab.request_after("fresh.ndjson", b);
        lab.check("first device whose CDP does not answer: refused with the fetch's own reason (crl_unreachable, not crl_missing)", r.status == 0 && e["reason"] == "crl_unreachable" && lab.received().len() == n + 1, || format!("{} {e}", r.status));
    }

    // A Ping held 5 minutes by Exchange, in the background while the rest of the lab runs;
    // beside it, on the same gateway, a request every 10 s must get its 200.
    let ping = {
        let dev = lab.device();
        std::thread::spawn(move || {
            let t = Instant::now();
            let r = dev.curl(8453, Some("dave"), "Cmd=Ping&DeviceId=PING5MIN&hold=300", &["--max-time", "400"]);
            (r.status, t.elapsed(), r.body)
        })
    };
    let beside = {
        let dev = lab.device();
        std::thread::spawn(move || {
            let t = Instant::now();
            let (mut statuses, mut gauges) = (Vec::new(), Vec::new());
            while t.elapsed() < Duration::from_secs(285) {
                std::thread::sleep(Duration::from_secs(10));
                statuses.push(dev.curl(8453, Some("alice"), "Cmd=FolderSync&DeviceId=BESIDEPING", &[]).status);
                let o = Command::new("ip").args(["netns", "exec", NS, "curl", "-sS", "http://127.0.0.1:9453/metrics"]).output();
                let m = o.map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default();
                gauges.push(m.lines().find(|l| l.starts_with("kcdscope_gateway_long_polls ")).unwrap_or("").to_string());
            }
            (statuses, gauges)
        })
    };

    // CRLs are fetched at start; give them a moment.
    std::thread::sleep(Duration::from_secs(2));

    // alice: a ticket through S4U, then from the cache.
    let q = "Cmd=Sync&User=alice&DeviceId=ALICEPHONE1&DeviceType=iPhone";
    let t = Instant::now();
    let r = lab.curl(8443, Some("alice"), q, &[]);
    let cold = t.elapsed();
    lab.check("alice: 200", r.status == 200, || format!("{} {} {}", r.status, r.body, r.stderr));
    lab.check("alice: Exchange's REMOTE_USER is alice@LAB.TEST", r.body.contains("REMOTE_USER=alice@LAB.TEST"), || r.body.clone());
    lab.check("alice: the query reached Exchange", r.body.contains(&format!("QUERY_STRING={q}")), || r.body.clone());
    let e = lab.last_request("main.ndjson");
    lab.check("alice: event with DeviceId, UPN, revocation good", e["device"]["device_id"] == "ALICEPHONE1" && e["certificate"]["upn"] == "alice@lab.test" && e["certificate"]["revocation"] == "good" && e["status"] == 200, || e.to_string());
    lab.check("alice: first ticket from the KDC", e["kcd"]["cache_hit"] == false, || e.to_string());
    let s4u_before = lab.events("main.ndjson").iter().filter(|e| e["event_type"] == "krb5").count();
    let t = Instant::now();
    let r = lab.curl(8443, Some("alice"), q, &[]);
    let warm = t.elapsed();
    let e = lab.last_request("main.ndjson");
    let s4u_after = lab.events("main.ndjson").iter().filter(|e| e["event_type"] == "krb5").count();
    lab.check("alice again: 200 from the ticket cache, no KDC message", r.status == 200 && e["kcd"]["cache_hit"] == true && s4u_after == s4u_before, || format!("{} {e} {s4u_before} {s4u_after}", r.status));
    let tokens: Vec<String> = lab.events("main.ndjson").iter().filter(|e| e["event_type"] == "kcd" && e["gateway"]["step"] == "token" && e["gateway"]["user"] == "alice@lab.test").map(|e| e["gateway"]["outcome"].to_string()).collect();
    lab.check("alice: one token event (issued), none for the cache hit (the request's event tells it)", tokens == ["\"issued\""], || format!("{tokens:?}"));
    eprintln!("latency through curl (handshake included): cold {:?}, warm {:?}", cold, warm);

    // A device's own credentials and forwarding headers never reach Exchange.
    let n = lab.received().len();
    let r = lab.curl(8443, Some("alice"), q, &["-H", "Authorization: Basic YWxpY2U6cGFzc3dvcmQ=", "-H", "X-Forwarded-For: 203.0.113.9", "-H", "Forwarded: for=203.0.113.9"]);
    // Apache logs a request after it has answered it.
    std::thread::sleep(Duration::from_millis(300));
    let rec = lab.received();
    let last = rec.last().cloned().unwrap_or_default();
    lab.check("device Authorization/X-Forwarded-For: Exchange sees only the gateway's", r.status == 200 && rec.len() == n + 1 && last.contains("auth=Negotiate ") && !last.contains("Basic") && last.contains(&format!("xff={} ", lab.v("LAB_GW_ADDR"))) && !last.contains("203.0.113.9"), || format!("{} {last}", r.status));

    // The certificate matrix: each refused before anything reaches Exchange.
    let cases: &[(&str, Option<&str>, &str, Option<&str>)] = &[
        // (certificate, expected reason, curl's view, TLS alert text)
        ("bob", Some("revoked"), "tls", Some("certificate revoked")),
        ("carol", Some("revoked"), "tls", Some("certificate revoked")),
        ("expired", Some("expired"), "tls", Some("certificate expired")),
        ("notyet", Some("not_yet_valid"), "tls", Some("certificate expired")),
        ("wrongca", Some("unknown_ca"), "tls", Some("unknown ca")),
        ("selfsigned", Some("unknown_ca"), "tls", Some("unknown ca")),
        ("serverauth", Some("bad_eku"), "tls", Some("unsupported certificate")),
        ("noeku", Some("bad_eku"), "tls", Some("unsupported certificate")),
        ("ldaponly", Some("cdp_ldap_only"), "tls", Some("unknown ca")),
        ("iisdelta", Some("crl_delta_blocked"), "tls", Some("unknown ca")),
        ("badsig", Some("crl_bad_signature"), "tls", Some("unknown ca")),
        ("noupn", Some("no_upn"), "403", None),
        ("twoupn", Some("two_upns"), "403", None),
        ("nobody", Some("upn_not_mapped"), "403", None),
    ];
    // iisdelta's and badsig's CDPs are learnt from their first handshake: fetch them first.
    let _ = lab.curl(8443, Some("iisdelta"), "Cmd=Sync", &[]);
    let _ = lab.curl(8443, Some("badsig"), "Cmd=Sync", &[]);
    std::thread::sleep(Duration::from_secs(3));
    for (cert, reason, kind, alert) in cases {
        let n = lab.received().len();
        let b = lab.requests("main.ndjson").len();
        let r = lab.curl(8443, Some(cert), &format!("Cmd=Sync&DeviceId=D{cert}"), &[]);
        let e = lab.request_after("main.ndjson", b);
        // Apache logs a request after it has answered it.
        std::thread::sleep(Duration::from_millis(200));
        let reached = lab.received().len() - n;
        let status_ok = match *kind {
            "tls" => r.status == 0 && e["outcome"] == "tls_refused",
            _ => r.status == 403 && r.body.contains("request id:"),
        };
        let alert_ok = alert.is_none_or(|a| r.stderr.contains(a));
        let ok = status_ok && alert_ok && e["reason"].as_str() == *reason && reached == 0;
        lab.check(&format!("{cert}: refused ({}), nothing reached Exchange", reason.unwrap_or("")), ok, || {
            format!("status {} stderr {:?} event {e} reached {reached}", r.status, r.stderr.trim())
        });
    }
    let n = lab.received().len();
    let b = lab.requests("main.ndjson").len();
    let r = lab.curl(8443, None, "Cmd=Sync", &[]);
    let e = lab.request_after("main.ndjson", b);
    lab.check("no certificate: refused in the handshake (certificate required)", r.status == 0 && e["reason"] == "no_cert" && r.stderr.contains("certificate required") && lab.received().len() == n, || format!("{} {:?} {e}", r.status, r.stderr));
    // The renewed CA's device (same issuer name, new key) after the old key's: both work.
    let _ = lab.curl(8443, Some("renewed"), "Cmd=Sync", &[]);
    std::thread::sleep(Duration::from_secs(3));
    let r1 = lab.curl(8443, Some("renewed"), "Cmd=Sync&DeviceId=RENEWED", &[]);
    let e = lab.last_request("main.ndjson");
    let r2 = lab.curl(8443, Some("alice"), "Cmd=Sync", &[]);
    lab.check("CA renewed with the same name and a new key: old and new devices 200, each CRL matched by key", r1.status == 200 && r2.status == 200 && e["certificate"]["crl_source"].as_str().is_some_and(|s| s.ends_with("/issuing2.crl")), || format!("{} {} {e}", r1.status, r2.status));
    let r = lab.curl(8443, Some("dave"), "Cmd=Sync", &[]);
    lab.check("dave: on hold in the base, removeFromCRL in the delta: 200", r.status == 200 && r.body.contains("REMOTE_USER=dave@LAB.TEST"), || format!("{} {}", r.status, r.stderr));
    // Samba keeps the enterprise name in S4U2Self tickets (alice's first ticket showed it):
    // later users are asked for under their account name at once, one S4U2Self each, and
    // Exchange still sees the account's own name (REMOTE_USER above).
    let evs = lab.events("main.ndjson");
    let dave = |outcome: &str| evs.iter().filter(|e| e["gateway"]["step"] == "s4u2self" && e["gateway"]["outcome"] == outcome && e["gateway"]["user"] == "dave@lab.test").count();
    lab.check(
        "dave: one S4U2Self, under the account name (outcome account_name), no enterprise name first",
        dave("request") == 1 && dave("account_name") == 1 && dave("canonicalised") == 0,
        || format!("requests {} account_name {} canonicalised {}", dave("request"), dave("account_name"), dave("canonicalised")),
    );
    let r = lab.curl(8446, Some("altsuffix"), "Cmd=Sync&DeviceId=ALTSUFFIX", &[]);
    lab.check("alternate UPN suffix rewritten: alice@corp.example -> alice@LAB.TEST", r.status == 200 && r.body.contains("REMOTE_USER=alice@LAB.TEST"), || format!("{} {} {}", r.status, r.body, r.stderr));
    let lines = reader.join().unwrap_or_default();
    let file_last = lab.last_request("rewrite.ndjson");
    let sock_last: Value = lines.iter().rev().find_map(|l| serde_json::from_str::<Value>(l).ok().filter(|e| e["gateway"]["step"] == "request")).map(|e| e["gateway"].clone()).unwrap_or(Value::Null);
    lab.check("events on a Unix socket: the same request event as in the file", sock_last == file_last && sock_last["device"]["device_id"] == "ALTSUFFIX", || format!("{} lines; {sock_last}", lines.len()));
    // An unreachable CDP: first "not fetched yet", then the fetch's own failure.
    let _ = lab.curl(8443, Some("unreachable"), "Cmd=Sync", &[]);
    std::thread::sleep(Duration::from_secs(4));
    let n = lab.received().len();
    let b = lab.requests("main.ndjson").len();
    let r = lab.curl(8443, Some("unreachable"), "Cmd=Sync", &[]);
    let e = lab.request_after("main.ndjson", b);
    // The detail is the URL and a reason in words (the OS's), not hyper's Debug text.
    let words = e["detail"].as_str().is_some_and(|d| {
        d.contains("http://10.89.0.99/pki/issuing.crl: ")
            && ["no answer within", "network unreachable", "no route to host", "connection timed out", "connection refused"].iter().any(|w| d.contains(w))
            && !d.contains("ConnectError")
            && !d.contains("Kind(")
    });
    lab.check("CDP unreachable: crl_unreachable with the URL and a reason in words, nothing reached Exchange", r.status == 0 && e["reason"] == "crl_unreachable" && words && lab.received().len() == n, || format!("{} {e}", r.status));

    // Kerberos and Exchange failures, with the delegation client's finding ids.
    let n = lab.received().len();
    let r = lab.curl(8444, Some("alice"), q, &[]);
    let e = lab.last_request("deadkdc.ndjson");
    lab.check("KDC down: 504, krb.kdc.unreachable, nothing reached Exchange", r.status == 504 && e["finding"] == "krb.kdc.unreachable" && lab.received().len() == n, || format!("{} {e}", r.status));
    let r = lab.curl(8443, Some("nobody"), q, &[]);
    let e = lab.last_request("main.ndjson");
    lab.check("unknown user: 403, KDC error 6, krb.principal_unknown", r.status == 403 && e["kcd"]["error"] == "KDC_ERR_C_PRINCIPAL_UNKNOWN" && e["finding"] == "krb.principal_unknown", || format!("{} {e}", r.status));
    lab.check("a query User= naming someone else than the certificate is flagged", e["device"]["user_mismatch"] == "alice", || e.to_string());
    // KDC fail-over: the first DC never answers; the ticket comes from the second, and the
    // gateway's own krb5 events show the unanswered tries and the answer.
    {
        let n = lab.received().len();
        let r = lab.curl(8457, Some("alice"), q, &[]);
        std::thread::sleep(Duration::from_millis(300));
        let e = lab.last_request("failover.ndjson");
        let krb: Vec<Value> = lab.events("failover.ndjson").into_iter().filter(|e| e["event_type"] == "krb5").collect();
        let dead = lab.v("LAB_DEAD_ADDR");
        let to_dead = krb.iter().filter(|k| k["dest_ip"] == dead.as_str() && k["krb5"]["direction"] == "to_kdc").count();
        let proxy_rep = krb.iter().any(|k| k["src_ip"] == kdc.as_str() && k["krb5"]["msg_type"] == "TGS-REP" && k["gateway"]["step"] == "s4u2proxy");
        lab.check("KDC fail-over: first DC silent, ticket from the second (its S4U2Proxy reply), 200; tries to the silent one in the events", r.status == 200 && r.body.contains("REMOTE_USER=alice@LAB.TEST") && e["kcd"]["cache_hit"] == false && to_dead >= 1 && proxy_rep && lab.received().len() == n + 1, || format!("{} to_dead {to_dead} proxy_rep {proxy_rep} {e}", r.status));
    }

    let r = lab.curl(8445, Some("alice"), q, &[]);
    let e = lab.last_request("nox.ndjson");
    lab.check("Exchange down: 502, exchange_unreachable", r.status == 502 && e["reason"] == "exchange_unreachable", || format!("{} {e}", r.status));

    let n = lab.received().len();
    let r = lab.curl(8447, Some("alice"), q, &[]);
    let e = lab.last_request("nodeleg.ndjson");
    lab.check("delegation removed: 502, KDC_ERR_BADOPTION on S4U2Proxy, krb.s4u2proxy.*", r.status == 502 && e["kcd"]["error"] == "KDC_ERR_BADOPTION" && e["kcd"]["step"] == "s4u2proxy" && e["finding"].as_str().is_some_and(|f| f.starts_with("krb.s4u2proxy.")) && lab.received().len() == n, || format!("{} {e}", r.status));
    let r = lab.curl(8448, Some("alice"), q, &[]);
    let e = lab.last_request("badkey.ndjson");
    let offered = e["backend"]["www_authenticate"].as_array().is_some_and(|a| a.iter().any(|x| x == "Negotiate"));
    lab.check("Exchange refuses the ticket (401): 502, exchange.ticket_refused, Negotiate offered", r.status == 502 && e["finding"] == "exchange.ticket_refused" && e["backend"]["status"] == 401 && offered, || format!("{} {e}", r.status));

    let r = lab.curl(8449, Some("alice"), q, &[]);
    lab.check("Exchange over HTTPS (certificate verified against its CA): 200, REMOTE_USER alice@LAB.TEST", r.status == 200 && r.body.contains("REMOTE_USER=alice@LAB.TEST"), || format!("{} {} {}", r.status, r.body, r.stderr));
    let n = lab.received().len();
    let r = lab.curl(8450, Some("alice"), q, &[]);
    let e = lab.last_request("wrongname.ndjson");
    lab.check("Exchange's certificate without the configured name: 502, nothing reached Exchange", r.status == 502 && e["reason"] == "exchange_unreachable" && lab.received().len() == n, || format!("{} {e}", r.status));

    let r = lab.curl(8451, Some("unreachable"), "Cmd=Sync&DeviceId=SOFT", &[]);
    let e = lab.last_request("open.ndjson");
    lab.check("crl.fail = open: an unknown revocation status passes with an event saying so", r.status == 200 && e["certificate"]["revocation"] == "soft_fail" && e["detail"].as_str().is_some_and(|d| d.contains("crl.fail")), || format!("{} {e}", r.status));
    let b = lab.requests("open.ndjson").len();
    let r = lab.curl(8451, Some("bob"), "Cmd=Sync", &[]);
    let e = lab.request_after("open.ndjson", b);
    lab.check("crl.fail = open: a revoked certificate is still refused", r.status == 0 && e["reason"] == "revoked", || format!("{} {e}", r.status));

    // TLS 1.1 is refused (rustls speaks 1.2 and 1.3 only).
    {
        let pki = PathBuf::from(lab.v("LAB_PKI"));
        let n = lab.received().len();
        let o = Command::new("ip")
            .args(["netns", "exec", NS, "timeout", "10", "openssl", "s_client", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-connect"])
            .arg(format!("{}:8443", lab.v("LAB_GW_ADDR")))
            .arg("-cert")
            .arg(pki.join("dev/alice.pem"))
            .arg("-key")
            .arg(pki.join("dev/alice.key"))
            .stdin(Stdio::null())
            .output()
            .expect("openssl");
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        // rustls answers a ClientHello without a common version with handshake_failure.
        let refused = err.contains("alert handshake failure") || err.contains("alert protocol version");
        lab.check("TLS 1.1 refused in the handshake, nothing reached Exchange", refused && lab.received().len() == n, || err.lines().take(3).collect::<Vec<_>>().join(" | "));
        let r = lab.curl(8443, Some("alice"), q, &["--tls-max", "1.2"]);
        lab.check("TLS 1.2 with a client certificate: 200", r.status == 200 && r.body.contains("REMOTE_USER=alice@LAB.TEST"), || format!("{} {}", r.status, r.stderr));
    }

    // A TLS handshake that never starts: closed after listen.handshake_timeout_ms (5 s).
    {
        let py = format!(
            "import socket, time\ns = socket.create_connection(('{}', 8443))\nt = time.time()\ns.settimeout(20)\ntry:\n    s.recv(1)\nexcept Exception:\n    pass\nprint(round(time.time() - t, 1))\n",
            lab.v("LAB_GW_ADDR")
        );
        let o = Command::new("ip").args(["netns", "exec", NS, "/usr/bin/python3", "-c", &py]).output().expect("python");
        let secs: f64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(-1.0);
        std::thread::sleep(Duration::from_millis(200));
        let e = lab.last_request("main.ndjson");
        lab.check("silent TLS client: closed after the handshake timeout (5 s), reason handshake_timeout", (4.5..10.0).contains(&secs) && e["reason"] == "handshake_timeout", || format!("{secs} {e}"));
    }

    // Limits and request smuggling: hyper's parser and our normalisation; Exchange reads
    // zero requests for each.
    let big = format!("POST /Microsoft-Server-ActiveSync?Cmd=Sync HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n", 11 << 20);
    let raws: Vec<(&str, String, &str)> = vec![
        ("CL+TE", "POST /Microsoft-Server-ActiveSync?Cmd=Sync HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /whoami HTTP/1.1\r\nHost: gw\r\n\r\n".into(), " 400"),
        ("two Content-Lengths", "POST /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde".into(), " 400"),
        ("TE on HTTP/1.0", "POST /Microsoft-Server-ActiveSync HTTP/1.0\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".into(), " 400"),
        ("obs-fold", "POST /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: gw\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n".into(), " 400"),
        ("body over 10 MiB", big, " 413"),
        ("101 headers", format!("GET /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: gw\r\n{}\r\n", (0..101).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()), " 431"),
        ("Upgrade", "GET /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: gw\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n".into(), " 400"),
    ];
    for (name, bytes, want) in raws {
        let n = lab.received().len();
        let out = lab.raw(8443, "alice", bytes.as_bytes(), 8);
        std::thread::sleep(Duration::from_millis(300));
        let reached = lab.received().len() - n;
        // CL+TE: refused (RFC 9112 6.1), the smuggled GET with it.
        let ok = reached == 0 && status_line(&out).contains(want);
        lab.check(&format!("{name}: answered{want}, Exchange read {reached}"), ok, || format!("{:?}", out.lines().take(3).collect::<Vec<_>>()));
    }
    // Header drip (slowloris): 408 and the connection closed after header_read_timeout.
    {
        let n = lab.received().len();
        let t = Instant::now();
        let pki = PathBuf::from(lab.v("LAB_PKI"));
        let mut c = Command::new("ip")
            .args(["netns", "exec", NS, "timeout", "20", "openssl", "s_client", "-quiet", "-connect"])
            .arg(format!("{}:8446", lab.v("LAB_GW_ADDR")))
            .arg("-cert")
            .arg(pki.join("dev/alice.pem"))
            .arg("-key")
            .arg(pki.join("dev/alice.key"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl");
        let mut stdin = c.stdin.take().expect("stdin");
        let out = c.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let mut r = std::io::BufReader::new(out);
            let _ = r.read_line(&mut s);
            s
        });
        let _ = stdin.write_all(b"POST /Microsoft-Server-ActiveSync HTTP/1.1\r\n");
        for i in 0..12 {
            std::thread::sleep(Duration::from_millis(500));
            if stdin.write_all(format!("X-Drip-{i}: x\r\n").as_bytes()).is_err() {
                break;
            }
            let _ = stdin.flush();
        }
        let first = reader.join().unwrap_or_default();
        drop(stdin);
        let _ = c.kill();
        let _ = c.wait();
        let took = t.elapsed();
        lab.check("header drip: 408 at the header read timeout (2 s), closed, nothing reached Exchange", took < Duration::from_secs(10) && lab.received().len() == n && first.contains("408"), || format!("{took:?} {first:?}"));
    }

    // The connection cap (listen.max_connections = 2): two devices connected, a third is
    // closed before TLS, counted, and Exchange reads nothing of it; room again once one leaves.
    {
        let n = lab.received().len();
        let py = format!(
            r#"
import socket, ssl, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations("{gw}/gw.pem")
ctx.load_cert_chain("{pki}/dev/alice.pem", "{pki}/dev/alice.key")
def conn():
    return ctx.wrap_socket(socket.create_connection(("{addr}", 8454), timeout=10), server_hostname="gw.lab.test")
a = conn(); b = conn()
try:
    c = conn()
    c.sendall(b"POST /Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=OVERCAP HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n")
    print("third:", c.recv(100).split(b"\r\n")[0].decode() or "closed")
except Exception as e:
    print("third: refused", type(e).__name__)
a.close(); b.close(); time.sleep(1)
d = conn()
d.sendall(b"POST /Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=AFTERCAP HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n")
print("after:", d.recv(100).split(b"\r\n")[0].decode())
"#,
            gw = lab.gw().display(),
            pki = lab.v("LAB_PKI"),
            addr = lab.v("LAB_GW_ADDR"),
        );
        let out = lab.python(&py);
        std::thread::sleep(Duration::from_millis(300));
        let m = lab.metrics_at(9454);
        let counted = m.lines().any(|l| l == "kcdscope_gateway_handshake_refusals_total{reason=\"connection_cap\"} 1");
        let ev = lab.events("cap.ndjson").iter().any(|e| e["gateway"]["reason"] == "connection_cap");
        let rec = lab.received();
        let reached: Vec<&String> = rec.iter().skip(n).collect();
        lab.check("connection cap (2): the third connection closed before TLS, counted once, an event; Exchange read only the request after", out.contains("third: refused") || out.contains("third: closed"), || out.clone());
        lab.check("connection cap: metric connection_cap = 1 and its event", counted && ev, || m.lines().filter(|l| l.contains("refusals")).collect::<Vec<_>>().join(" | "));
        lab.check("connection cap: room again after two left (200); Exchange read exactly that request", out.contains("after: HTTP/1.1 200") && reached.len() == 1 && reached[0].contains("AFTERCAP"), || format!("{out:?} {reached:?}"));
    }

    // A body that stops coming: 408 after limits.body_idle_timeout_ms (2 s). A body within
    // the read-ahead (64 KiB) is read before Exchange is contacted: Exchange logs nothing.
    for (name, id, head, first) in [
        ("slow body (Content-Length)", "SLOWBODY", "Content-Length: 100", "abc"),
        ("slow body (chunked)", "SLOWCHUNKED", "Transfer-Encoding: chunked", "3\\r\\nabc\\r\\n"),
    ] {
        let n = lab.received().len();
        let py = format!(
            r#"
import socket, ssl, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations("{gw}/gw.pem")
ctx.load_cert_chain("{pki}/dev/alice.pem", "{pki}/dev/alice.key")
s = ctx.wrap_socket(socket.create_connection(("{addr}", 8454), timeout=20), server_hostname="gw.lab.test")
s.sendall(b"POST /Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId={id} HTTP/1.1\r\nHost: gw\r\n{head}\r\n\r\n{first}")
t = time.time()
data = s.recv(200)
print(data.split(b"\r\n")[0].decode(), round(time.time() - t, 1))
"#,
            gw = lab.gw().display(),
            pki = lab.v("LAB_PKI"),
            addr = lab.v("LAB_GW_ADDR"),
        );
        let out = lab.python(&py);
        std::thread::sleep(Duration::from_millis(1500));
        let secs: f64 = out.split_whitespace().last().and_then(|x| x.parse().ok()).unwrap_or(-1.0);
        let e = lab.last_request("cap.ndjson");
        let rec = lab.received();
        let seen = rec.iter().skip(n).filter(|l| l.contains(id)).count();
        lab.check(&format!("{name}: 408 after the body idle timeout (2 s), reason body_timeout"), out.starts_with("HTTP/1.1 408") && (1.5..6.0).contains(&secs) && e["reason"] == "body_timeout" && e["status"] == 408, || format!("{out:?} {e}"));
        lab.check(&format!("{name}: Exchange's access log has no request for it at all (refused before forwarding)"), seen == 0, || rec.iter().skip(n).cloned().collect::<Vec<_>>().join(" | "));
    }

    // A chunked body over limits.body_bytes (10 MiB; no Content-Length to refuse it by):
    // 413 when the limit is crossed, and Exchange completes no request with it.
    {
        let n = lab.received().len();
        let py = format!(
            r#"
import socket, ssl, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations("{gw}/gw.pem")
ctx.load_cert_chain("{pki}/dev/alice.pem", "{pki}/dev/alice.key")
s = ctx.wrap_socket(socket.create_connection(("{addr}", 8454), timeout=20), server_hostname="gw.lab.test")
s.sendall(b"POST /Microsoft-Server-ActiveSync?Cmd=SendMail&DeviceId=BIGCHUNKED HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n")
chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
sent = 0
try:
    for i in range(11 * 16):
        s.sendall(chunk)
        sent += 65536
    s.sendall(b"0\r\n\r\n")
except Exception as e:
    pass
try:
    print(s.recv(200).split(b"\r\n")[0].decode() or "closed", sent)
except Exception as e:
    print("reset", sent)
"#,
            gw = lab.gw().display(),
            pki = lab.v("LAB_PKI"),
            addr = lab.v("LAB_GW_ADDR"),
        );
        let out = lab.python(&py);
        std::thread::sleep(Duration::from_millis(1500));
        let e = lab.last_request("cap.ndjson");
        let rec = lab.received();
        let done = rec.iter().skip(n).filter(|l| l.contains("BIGCHUNKED") && l.contains(" 200 ")).count();
        // The device may see the 413 or, still writing when the gateway closed, a reset.
        lab.check("chunked body over 10 MiB: 413 (body_too_large) in the event, the device sees 413 or the close", e["status"] == 413 && e["reason"] == "body_too_large" && (out.starts_with("HTTP/1.1 413") || out.starts_with("reset") || out.starts_with("closed")), || format!("{out:?} {e}"));
        lab.check("chunked body over 10 MiB: Exchange completed no request with it", done == 0, || rec.iter().skip(n).cloned().collect::<Vec<_>>().join(" | "));
        eprintln!("chunked body over 10 MiB: device {out:?}; what Exchange logged: {:?}", rec.iter().skip(n).collect::<Vec<_>>());
    }

    // A long poll held by Exchange while other devices get their answers.
    {
        let lab_ref = &lab;
        let held = std::thread::scope(|s| {
            let h = s.spawn(|| {
                let t = Instant::now();
                let r = lab_ref.curl(8443, Some("dave"), "Cmd=Ping&DeviceId=PINGER&hold=20", &[]);
                (r.status, t.elapsed())
            });
            std::thread::sleep(Duration::from_secs(2));
            let m = lab_ref.metrics();
            let polls = m.lines().any(|l| l.starts_with("kcdscope_gateway_long_polls ") && !l.ends_with(" 0"));
            let mut others = 0;
            for _ in 0..10 {
                if lab_ref.curl(8443, Some("alice"), q, &[]).status == 200 {
                    others += 1;
                }
            }
            (h.join().unwrap_or((0, Duration::ZERO)), others, polls)
        });
        let ((st, took), others, polls) = held;
        lab.check("Ping held 20 s by Exchange: 200 at the end, 10 other requests 200 meanwhile, long_polls gauge 1", st == 200 && took >= Duration::from_secs(19) && others == 10 && polls, || format!("{st} {took:?} {others} {polls}"));
    }

    // CRLs are fetched again with conditional GET: the CDP web server answered 304.
    let access = std::fs::read_to_string(lab.v("LAB_CRL_ACCESS")).unwrap_or_default();
    lab.check("CRL refresh by conditional GET: the CDP server answered 304 Not Modified", access.lines().any(|l| l.starts_with("GET /pki/issuing.crl 304")), || access.lines().rev().take(5).collect::<Vec<_>>().join(" | "));

    // Metrics: by outcome and reason.
    let m = lab.metrics();
    lab.check("metrics: refusals by reason, handshake refusals, cache", m.contains("kcdscope_gateway_requests_total{outcome=\"refused\",reason=\"revoked\"}") && m.contains("kcdscope_gateway_handshake_refusals_total{reason=\"no_cert\"}") && m.contains("kcdscope_gateway_ticket_cache_hits_total"), || m.lines().filter(|l| l.contains("requests_total")).collect::<Vec<_>>().join("\n"));

    // SIGHUP with a new trust anchor while requests flow: none fails; then the other CA's
    // device gets past the chain check (its CRL is what stops it now).
    {
        let both = lab.gw().join("both.pem");
        let mut anchors = std::fs::read(&chain).expect("chain");
        anchors.extend(std::fs::read(format!("{}/other-root.pem", lab.v("LAB_PKI"))).expect("other root"));
        std::fs::write(&both, anchors).expect("both");
        let text = std::fs::read_to_string(&main).expect("main").replace(&chain, &both.display().to_string());
        std::fs::write(&main, text).expect("write");
        let pid = lab.children[0].id();
        let lab_ref = &lab;
        let results = std::thread::scope(|s| {
            let h = s.spawn(|| (0..20).map(|_| lab_ref.curl(8443, Some("alice"), q, &[]).status).collect::<Vec<u16>>());
            std::thread::sleep(Duration::from_millis(300));
            let _ = Command::new("kill").arg("-HUP").arg(pid.to_string()).status();
            h.join().unwrap_or_default()
        });
        std::thread::sleep(Duration::from_secs(1));
        let b = lab.requests("main.ndjson").len();
        let r = lab.curl(8443, Some("wrongca"), "Cmd=Sync", &[]);
        let e = lab.request_after("main.ndjson", b);
        lab.check("SIGHUP with a new trust anchor: 20 requests during the reload all 200", results.len() == 20 && results.iter().all(|s| *s == 200), || format!("{results:?}"));
        lab.check("after the reload the new anchor is in use (wrongca now fails on its CRL, not its CA)", r.status == 0 && e["reason"] != "unknown_ca", || e.to_string());
        // A broken configuration is refused and the old one stays.
        std::fs::write(&main, "[listen]\naddress = 5\n").expect("write");
        let _ = Command::new("kill").arg("-HUP").arg(pid.to_string()).status();
        std::thread::sleep(Duration::from_millis(500));
        let r = lab.curl(8443, Some("alice"), q, &[]);
        let refused = lab.events("main.ndjson").iter().any(|e| e["gateway"]["outcome"] == "reload_refused");
        lab.check("SIGHUP with a broken configuration: refused with an event, requests still served", r.status == 200 && refused, || format!("{} {refused}", r.status));
    }

    // Revocation of a connected device: two requests on one keep-alive connection, the
    // certificate revoked and the CRL republished in between.
    {
        let pki = lab.v("LAB_PKI");
        let py = format!(
            r#"
import socket, ssl, subprocess, time, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations("{gw}/gw.pem")
ctx.load_cert_chain("{pki}/dev/erin.pem", "{pki}/dev/erin.key")
s = ctx.wrap_socket(socket.create_connection(("{addr}", 8443)), server_hostname="gw.lab.test")
req = b"POST /Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=ERIN HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n"
def status():
    s.sendall(req)
    data = b""
    while b"\r\n\r\n" not in data:
        c = s.recv(65536)
        if not c: break
        data += c
    head, body = data.split(b"\r\n\r\n", 1)
    head = head.decode()
    lens = [int(l.split(":")[1]) for l in head.split("\r\n") if l.lower().startswith("content-length")]
    if lens:
        while len(body) < lens[0]:
            body += s.recv(65536)
    else:
        while not body.endswith(b"0\r\n\r\n"):
            body += s.recv(65536)
    return head.split("\r\n")[0]
print(status())
subprocess.run(["bash", "{pkiscript}", "revoke", "{pki}", "erin", "base"], check=True)
subprocess.run(["bash", "{script}", "publish", "{labdir}"], check=True, stdout=subprocess.DEVNULL)
time.sleep(4)
print(status())
"#,
            gw = lab.gw().display(),
            addr = lab.v("LAB_GW_ADDR"),
            pkiscript = lab.v("LAB_PKI_SCRIPT"),
            script = lab.v("LAB_SCRIPT"),
            labdir = lab.dir.join("lab").display(),
        );
        let n = lab.received().len();
        let o = Command::new("ip").args(["netns", "exec", NS, "/usr/bin/python3", "-c", &py]).output().expect("python");
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let lines: Vec<&str> = out.lines().collect();
        let e = lab.last_request("main.ndjson");
        lab.check("revoked while connected: the next request on the same connection is refused", lines.len() == 2 && lines[0].contains(" 200") && lines[1].contains(" 403") && e["reason"] == "revoked" && lab.received().len() == n + 1, || format!("{out:?} {} {e}", String::from_utf8_lossy(&o.stderr)));
    }

    // SIGTERM while a request is held: new connections are refused, the held request
    // finishes, then the process exits.
    {
        let pid = lab.children[drain_idx].id();
        let lab_ref = &lab;
        let (held, fresh) = std::thread::scope(|s| {
            let h = s.spawn(|| lab_ref.curl(8452, Some("dave"), "Cmd=Ping&DeviceId=DRAIN&hold=6", &[]).status);
            std::thread::sleep(Duration::from_secs(2));
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
            std::thread::sleep(Duration::from_millis(500));
            let fresh = lab_ref.curl(8452, Some("alice"), q, &[]).status;
            (h.join().unwrap_or(0), fresh)
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut gone = false;
        while Instant::now() < deadline {
            if matches!(lab.children[drain_idx].try_wait(), Ok(Some(_))) {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        lab.check("SIGTERM: the held Ping finishes (200), a new connection is refused, the gateway exits", held == 200 && fresh == 0 && gone, || format!("held {held} fresh {fresh} exited {gone}"));
    }

    // SIGHUP that moves the listener: refused whole (a restart is needed), said in an event;
    // the gateway goes on serving on its address and nothing listens on the new one.
    {
        let text = std::fs::read_to_string(&fresh).expect("fresh").replace(":8455\"", ":8456\"");
        std::fs::write(&fresh, text).expect("write");
        let pid = lab.children[fresh_idx].id();
        let _ = Command::new("kill").arg("-HUP").arg(pid.to_string()).status();
        std::thread::sleep(Duration::from_millis(700));
        let refused = lab.events("fresh.ndjson").iter().map(|e| e["gateway"].clone()).find(|g| g["outcome"] == "reload_refused").unwrap_or(Value::Null);
        let r = lab.curl(8455, Some("alice"), q, &[]);
        let moved = lab.curl(8456, Some("alice"), q, &[]);
        lab.check("SIGHUP changing listen.address: refused with an event naming the key and the restart it needs; still served on the old address, nothing on the new", refused["detail"].as_str().is_some_and(|d| d.contains("listen.address") && d.contains("restart")) && r.status == 200 && moved.status == 0, || format!("{refused} old {} new {}", r.status, moved.status));
    }

    // The 5-minute Ping: 200 at its end, every request beside it 200, the long-poll gauge 1.
    {
        let (st, took, body) = ping.join().unwrap_or((0, Duration::ZERO, String::new()));
        let (statuses, gauges) = beside.join().unwrap_or_default();
        let e = lab.requests("ping.ndjson").into_iter().find(|e| e["device"]["device_id"] == "PING5MIN").unwrap_or(Value::Null);
        let held_us = e["backend"]["latency_us"].as_i64().unwrap_or(0);
        lab.check("Ping held 5 minutes by Exchange: 200 at the end, REMOTE_USER dave, its event 200 with Exchange's latency >= 300 s", st == 200 && took >= Duration::from_secs(300) && body.contains("REMOTE_USER=dave@LAB.TEST") && e["status"] == 200 && held_us >= 300_000_000, || format!("{st} {took:?} {e}"));
        lab.check("beside the held Ping, on the same gateway: every request 200 (one each 10 s) and the long-poll gauge 1", statuses.len() >= 25 && statuses.iter().all(|s| *s == 200) && gauges.iter().all(|g| g == "kcdscope_gateway_long_polls 1"), || format!("{statuses:?} {gauges:?}"));
        eprintln!("5-minute Ping: {took:?}, {} requests beside it", statuses.len());
    }

    // CRLs that expire while the gateway holds them, then fresh ones.
    {
        let labdir = lab.dir.join("lab");
        let st = Command::new("bash").arg(lab.script()).arg("publish-short").arg(&labdir).arg("2").stdout(Stdio::null()).status().expect("publish");
        std::thread::sleep(Duration::from_secs(6));
        let n = lab.received().len();
        let b = lab.requests("main.ndjson").len();
        let r = lab.curl(8443, Some("alice"), q, &[]);
        let e = lab.request_after("main.ndjson", b);
        lab.check("CRL expired: refused (crl_expired), nothing reached Exchange", st.success() && r.status == 0 && e["reason"] == "crl_expired" && lab.received().len() == n, || format!("{} {e}", r.status));
        let _ = Command::new("bash").arg(lab.script()).arg("publish").arg(&labdir).stdout(Stdio::null()).status();
        std::thread::sleep(Duration::from_secs(5));
        let r = lab.curl(8443, Some("alice"), q, &[]);
        lab.check("fresh CRLs published: alice 200 again", r.status == 200, || format!("{} {}", r.status, r.stderr));
    }

    // The CRL server down for longer than the CRLs' validity: requests go on with the
    // cached CRLs until their nextUpdate, then are refused (crl_expired, fail closed) and
    // /readyz says so; the server back with fresh CRLs: served again, /readyz clear of it.
    {
        let labdir = lab.dir.join("lab");
        let readyz = || {
            let o = Command::new("ip").args(["netns", "exec", NS, "curl", "-sS", "http://127.0.0.1:9443/readyz"]).output();
            o.map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default()
        };
        let expired_line = "CRL http://crl.lab.test/pki/issuing.crl expired";
        let st = Command::new("bash").arg(lab.script()).arg("publish-short").arg(&labdir).arg("14").stdout(Stdio::null()).status().expect("publish");
        std::thread::sleep(Duration::from_secs(4));
        let t = Instant::now();
        let stop = Command::new("bash").arg(lab.script()).arg("crl-stop").arg(&labdir).status().expect("crl-stop");
        let r1 = lab.curl(8443, Some("alice"), q, &[]);
        let ready1 = readyz();
        // Past the CRLs' nextUpdate (14 s after they were made) with the server still down.
        std::thread::sleep(Duration::from_secs(14).saturating_sub(t.elapsed()) + Duration::from_secs(2));
        let n = lab.received().len();
        let b = lab.requests("main.ndjson").len();
        let r2 = lab.curl(8443, Some("alice"), q, &[]);
        let e2 = lab.request_after("main.ndjson", b);
        let reached2 = lab.received().len() - n;
        let ready2 = readyz();
        let down_errors = lab.metrics().lines().filter(|l| l.starts_with("kcdscope_gateway_crl_fetch_errors_total{url=\"http://crl.lab.test/pki/issuing.crl\"}")).map(str::to_string).collect::<Vec<_>>();
        let start = Command::new("bash").arg(lab.script()).arg("crl-start").arg(&labdir).status().expect("crl-start");
        let _ = Command::new("bash").arg(lab.script()).arg("publish").arg(&labdir).stdout(Stdio::null()).status();
        std::thread::sleep(Duration::from_secs(5));
        let r3 = lab.curl(8443, Some("alice"), q, &[]);
        let ready3 = readyz();
        lab.check("CRL server down: served from the cached CRL while it is valid (200), /readyz not reporting it", st.success() && stop.success() && r1.status == 200 && !ready1.contains(expired_line), || format!("{} {ready1:?}", r1.status));
        lab.check("CRL server down past nextUpdate: refused crl_expired, nothing reached Exchange, /readyz 503 naming the expired CRL, fetch errors counted", r2.status == 0 && e2["reason"] == "crl_expired" && reached2 == 0 && ready2.contains(expired_line) && !down_errors.is_empty(), || format!("{} {e2} {ready2:?} {down_errors:?}", r2.status));
        lab.check("CRL server back with fresh CRLs: 200 again, /readyz no longer names it", start.success() && r3.status == 200 && !ready3.contains(expired_line), || format!("{} {ready3:?}", r3.status));
    }

    // Exchange restarted while a Ping is held: the device gets an answer (502) instead of a
    // request left hanging; while it is down, 502 exchange_unreachable; back, 200 within a
    // second of its return.
    {
        let labdir = lab.dir.join("lab");
        let dev = lab.device();
        let held = std::thread::spawn(move || {
            let t = Instant::now();
            let r = dev.curl(8443, Some("dave"), "Cmd=Ping&DeviceId=RESTART&hold=60", &["--max-time", "90"]);
            (r.status, t.elapsed())
        });
        std::thread::sleep(Duration::from_secs(2));
        let stop = Command::new("bash").arg(lab.script()).arg("exchange-stop").arg(&labdir).status().expect("exchange-stop");
        let (held_status, held_took) = held.join().unwrap_or((0, Duration::ZERO));
        let down = lab.curl(8443, Some("alice"), q, &[]);
        let e_down = lab.last_request("main.ndjson");
        let start = Command::new("bash").arg(lab.script()).arg("exchange-start").arg(&labdir).status().expect("exchange-start");
        let back = Instant::now();
        let mut first_ok = None;
        while back.elapsed() < Duration::from_secs(10) {
            if lab.curl(8443, Some("alice"), q, &[]).status == 200 {
                first_ok = Some(back.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        lab.check("Exchange stopped under a held Ping: the device gets 502 at once, not a hang", stop.success() && held_status == 502 && held_took < Duration::from_secs(20), || format!("{held_status} {held_took:?}"));
        lab.check("Exchange down: 502 exchange_unreachable", down.status == 502 && e_down["reason"] == "exchange_unreachable", || format!("{} {e_down}", down.status));
        lab.check("Exchange back: 200 within a second of its return", start.success() && first_ok.is_some_and(|d| d < Duration::from_secs(1)), || format!("{first_ok:?}"));
        eprintln!("Exchange restart: held Ping answered {held_status} after {held_took:?}; first 200 {first_ok:?} after Exchange listened again");
    }

    // The issuing CA revoked by the root: its devices are refused (the whole chain is checked).
    {
        let st = Command::new("bash").arg(lab.v("LAB_PKI_SCRIPT")).arg("revoke").arg(lab.v("LAB_PKI")).arg("issuing").arg("base").status().expect("revoke");
        let _ = Command::new("bash").arg(lab.script()).arg("publish").arg(lab.dir.join("lab")).stdout(Stdio::null()).status();
        std::thread::sleep(Duration::from_secs(5));
        let n = lab.received().len();
        let b = lab.requests("main.ndjson").len();
        let r = lab.curl(8443, Some("alice"), q, &[]);
        let e = lab.request_after("main.ndjson", b);
        lab.check("issuing CA revoked in the root's CRL: alice refused (revoked, root.crl)", st.success() && r.status == 0 && r.stderr.contains("certificate revoked") && e["reason"] == "revoked" && e["detail"].as_str().is_some_and(|d| d.contains("root.crl")) && lab.received().len() == n, || format!("{} {e}", r.status));
    }

    // The agent's view: the capture of the gateway host replayed with the gateway's own
    // events. Each device's story must name the step and the catalogue row that the lab
    // arranged (and that curl and Apache showed above).
    let _ = Command::new("kill").arg("-INT").arg(tcpdump.id().to_string()).status();
    let _ = tcpdump.wait();
    let out = Command::new(kcdscope_bin())
        .arg("replay")
        .arg(&wire)
        .arg("--gateway-events")
        .arg(lab.gw().join("main.ndjson"))
        .arg("--report")
        .output()
        .expect("kcdscope replay");
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    std::fs::write(lab.gw().join("report.txt"), &report).expect("report");
    let device = |needle: &str| device_block(&report, needle);
    let report_path = lab.gw().join("report.txt");
    for (needle, want) in [
        ("certificate CN=bob ", "failed at crl (cert.revoked)"),
        // Refused as unknown_ca first; after the reload that trusts its root, on its CRL
        // (it has no CDP): the device's latest state.
        ("certificate CN=wrongca ", "failed at crl (crl.unreachable)"),
        ("certificate CN=serverauth ", "failed at certificate (cert.no_client_auth_eku)"),
        ("certificate CN=expired ", "failed at certificate (cert.expired)"),
        ("certificate CN=ldaponly ", "failed at crl (crl.cdp_ldap_only)"),
        ("certificate CN=iisdelta ", "failed at crl (crl.delta_blocked_double_escaping)"),
        ("FAILING Dnoupn", "failed at certificate (cert.no_upn)"),
        ("FAILING Dtwoupn", "failed at certificate (cert.two_upns)"),
        ("FAILING Dnobody", "failed at certificate (cert.upn_not_mapped)"),
        // Last refused when the lab revoked its issuing CA.
        ("ALICEPHONE1", "failed at crl (cert.revoked)"),
        ("ALTSUFFIX", "reached exchange"),
    ] {
        let b = device(needle);
        lab.check(&format!("replay with the gateway's events: {needle} -> {want}"), b.contains(want), || format!("{b:?}\n(see {})", report_path.display()));
    }
    // The wire's own Kerberos: the KDC's error 6 for the unknown user is a finding of the
    // capture, and names its user.
    lab.check(
        "replay: the untrusted root's devices are one finding for that CA (cert.issuer_not_trusted)",
        report.contains("ERROR   cert.issuer_not_trusted\n        CA CN=Other Root CA,O=Elsewhere,"),
        || report.chars().take(3000).collect(),
    );
    let kdcs = report.split("\nKDCS").nth(1).and_then(|k| k.split("\n\n").next()).unwrap_or("").to_string();
    lab.check(
        "replay: the KDC's error 6 on the wire is in the KDC's figures and krb.principal_unknown names nobody",
        kdcs.contains("PRINCIPAL_UNKNOWN") && report.contains("krb.principal_unknown") && report.to_ascii_lowercase().contains("principal nobody@"),
        || report.chars().take(3000).collect(),
    );

    lab.assert_checks();
}

/// The report's DEVICES entry (its head line and the lines under it) that contains
/// `needle`, squeezed to single spaces.
fn device_block(report: &str, needle: &str) -> String {
    let Some(devices) = report.split("\nDEVICES").nth(1) else { return String::new() };
    let section = devices.split("\n\n").next().unwrap_or("");
    let mut blocks: Vec<String> = Vec::new();
    for line in section.lines().skip(1) {
        let head = ["FAILING", "WARNING", "PENDING", "OK "].iter().any(|w| line.trim_start().starts_with(w)) && line.starts_with("  ") && !line.starts_with("   ");
        if head || blocks.is_empty() {
            blocks.push(String::new());
        }
        if let Some(b) = blocks.last_mut() {
            b.push(' ');
            b.push_str(line.trim());
        }
    }
    let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    blocks.iter().map(|b| squeeze(b)).find(|b| b.contains(&squeeze(needle))).unwrap_or_default()
}
