//! The first KDC killed during load, and started again (issue: the gateway under load).
//!
//! The gateway lab has one Samba DC. The gateway is given two KDC addresses that both reach
//! that one Samba process: first 10.89.0.5, a forwarder process (tests/lab/kdc-forward.py,
//! in the DC's namespace) in front of the KDC, then the KDC's own 10.89.0.2. Cold users come
//! in at a steady rate (kcd-load, one new device certificate and user per request, so every
//! request needs S4U2Self and S4U2Proxy); the forwarder is killed and, later, started again.
//! The judges: what Apache (Exchange, mod_auth_gssapi) received and answered (a request
//! without a valid ticket gets 401 there), what the load client saw, the forwarder's own log
//! of the requests that reached the first address, and the gateway's events.
//!
//! Needs root (network namespaces): `tests/run` runs it.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kcd_tests::kcdscope_bin;
use serde_json::Value;

const NS: &str = "kcdgw-gw";
const USERS: usize = 240;
const RATE: f64 = 8.0;
const SECONDS: f64 = 28.0;

kcd_tests::lab_steps!(
    /// The gateway lab (`kcd_tests::Lab`: taken down when dropped, unless KCDGW_KEEP is set)
    /// and this test's steps in it.
    Lab
);

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// An event's time, Unix seconds.
fn event_time(e: &Value) -> f64 {
    e["timestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_micros() as f64 / 1e6)
        .unwrap_or(0.0)
}

impl Lab {
    fn up() -> Lab {
        // The gateway lab's directory: its provisioned domain is reused.
        let dir = std::env::temp_dir().join("kcdscope-gateway-lab");
        std::fs::create_dir_all(dir.join("failover")).expect("scratch dir");
        Lab(kcd_tests::Lab::up("gateway.sh", dir, "KCDGW_KEEP", false, &[]))
    }

    fn work(&self) -> PathBuf {
        self.dir.join("failover")
    }

    fn in_gw(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip").args(["netns", "exec", NS]).args(args).current_dir(self.work()).output().expect("ip netns exec")
    }

    /// The load users in the lab's domain (kept with the provisioned domain), device
    /// certificates for them and their CA's CRL on the lab's CRL server.
    fn load_users(&self) {
        let sam = PathBuf::from(self.v("LAB_SVC_PASSWORD_FILE")).with_file_name("samba").join("private/sam.ldb");
        let last = format!("(sAMAccountName=loaduser{})", USERS - 1);
        let found = Command::new("ldbsearch").arg("-H").arg(&sam).arg(&last).arg("dn").output().expect("ldbsearch");
        if !String::from_utf8_lossy(&found.stdout).lines().any(|l| l.starts_with("dn:")) {
            let realm = self.v("LAB_REALM").to_lowercase();
            let base = realm.split('.').map(|p| format!("DC={p}")).collect::<Vec<_>>().join(",");
            // Accounts like the benchmark's: normal, no password needed (S4U2Self needs
            // none of the user's keys), pwdLastSet "now". Those already there are skipped.
            let mut ldif = String::new();
            for i in 0..USERS {
                let have = Command::new("ldbsearch").arg("-H").arg(&sam).arg(format!("(sAMAccountName=loaduser{i})")).arg("dn").output().expect("ldbsearch");
                if String::from_utf8_lossy(&have.stdout).lines().any(|l| l.starts_with("dn:")) {
                    continue;
                }
                ldif.push_str(&format!(
                    "dn: CN=loaduser{i},CN=Users,{base}\nobjectClass: user\nsAMAccountName: loaduser{i}\nuserPrincipalName: loaduser{i}@{realm}\nuserAccountControl: 544\npwdLastSet: -1\n\n"
                ));
            }
            let f = self.work().join("users.ldif");
            std::fs::write(&f, ldif).expect("ldif");
            let st = Command::new("ldbadd").arg("-H").arg(&sam).arg(&f).stdout(Stdio::null()).status().expect("ldbadd");
            assert!(st.success(), "ldbadd of the load users failed");
        }
        let pki = self.work().join("pki");
        let _ = std::fs::remove_dir_all(&pki);
        let st = Command::new(kcd_tests::kcd_load_bin())
            .args(["pki", "--dir"])
            .arg(&pki)
            .args(["--devices", &USERS.to_string(), "--crl-entries", "10", "--cdp", "http://crl.lab.test/load/crl.der"])
            .stdout(Stdio::null())
            .status()
            .expect("kcd-load pki");
        assert!(st.success(), "kcd-load pki failed");
        let www = PathBuf::from(self.v("LAB_PKI")).join("www/load");
        std::fs::create_dir_all(&www).expect("www/load");
        std::fs::copy(pki.join("crl.der"), www.join("crl.der")).expect("CRL published");
        let _ = Command::new("chmod").args(["-R", "o+rX"]).arg(&www).arg(&pki).arg(self.work()).status();
    }

    fn config(&self) -> PathBuf {
        let p = self.work().join("failover.toml");
        let text = format!(
            r#"[listen]
address = "127.0.0.1:9621"
certificate = "pki/server.pem"
key = "pki/server.key"
[client_certificates]
chain = "pki/ca.pem"
[exchange]
url = "http://{exchange}"
[crl]
preload = ["http://crl.lab.test/load/crl.der"]
[admin]
address = "127.0.0.1:9622"
[service_account]
user = "svc_awseg"
password_file = "{pw}"
[kcd]
target_spn = "{spn}"
[kdc]
timeout_ms = 1000
retry_first_seconds = 3
[[domain]]
realm = "{realm}"
domain_controllers = ["{first}", "{second}"]
"#,
            exchange = self.v("LAB_EXCHANGE_HOST"),
            pw = self.v("LAB_SVC_PASSWORD_FILE"),
            spn = self.v("LAB_TARGET_SPN"),
            realm = self.v("LAB_REALM"),
            first = self.v("LAB_KDC_FORWARD_ADDR"),
            second = self.v("LAB_KDC_ADDR"),
        );
        std::fs::write(&p, text).expect("config");
        p
    }
}

#[test]
#[ignore = "needs root: network namespaces, Samba AD, Apache (tests/run runs it)"]
fn the_first_kdc_killed_during_load_and_back() {
    let mut lab = Lab::up();
    lab.load_users();
    lab.run("kdc-forward-start");
    let first = lab.v("LAB_KDC_FORWARD_ADDR");
    let second = lab.v("LAB_KDC_ADDR");
    let fwd_log = PathBuf::from(lab.v("LAB_KDC_FORWARD_LOG"));

    let cfg = lab.config();
    let events = lab.work().join("failover.ndjson");
    let _ = std::fs::remove_file(&events);
    let gw_log = std::fs::File::create(lab.work().join("failover.log")).expect("log");
    let gw = Command::new("ip")
        .args(["netns", "exec", NS])
        .arg(kcdscope_bin())
        .args(["gateway", "--config"])
        .arg(&cfg)
        .arg("--events")
        .arg(&events)
        .current_dir(lab.work())
        .stdout(Stdio::null())
        .stderr(gw_log)
        .spawn()
        .expect("gateway starts");
    lab.children.push(gw);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !String::from_utf8_lossy(&lab.in_gw(&["curl", "-s", "http://127.0.0.1:9622/readyz"]).stdout).contains("ready") {
        std::thread::sleep(Duration::from_millis(200));
    }
    let received_before = std::fs::read_to_string(lab.v("LAB_EXCHANGE_RECEIVED")).unwrap_or_default().lines().count();

    // Cold users at RATE a second for SECONDS: every request a new user and handshake.
    let load = Command::new("ip")
        .args(["netns", "exec", NS])
        .arg(kcd_tests::kcd_load_bin())
        .args(["run", "--target", "127.0.0.1:9621", "--ca", "pki/ca.pem", "--devices", "pki/devices.pem"])
        .args(["--users", &USERS.to_string(), "--threads", "1", "--connections", "4", "--handshake-per-request"])
        .args(["--rate", &RATE.to_string(), "--seconds", &SECONDS.to_string()])
        .current_dir(lab.work())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcd-load run");
    std::thread::sleep(Duration::from_secs(8));
    let killed_at = unix_now();
    lab.run("kdc-forward-stop");
    let fwd_before = std::fs::read_to_string(&fwd_log).unwrap_or_default();
    std::thread::sleep(Duration::from_secs(9));
    let back_at = unix_now();
    lab.run("kdc-forward-start");
    let out = load.wait_with_output().expect("kcd-load ends");
    std::thread::sleep(Duration::from_millis(500));
    let fwd_after = std::fs::read_to_string(&fwd_log).unwrap_or_default();
    lab.run("kdc-forward-stop");

    let mut failures = Vec::new();
    let mut check = |what: &str, ok: bool, detail: String| {
        if ok {
            eprintln!("PASS {what}");
        } else {
            eprintln!("FAIL {what}: {detail}");
            failures.push(format!("{what}: {detail}"));
        }
    };

    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let summary: Value = stdout.lines().rev().find_map(|l| serde_json::from_str(l).ok()).unwrap_or(Value::Null);
    let ok = summary["ok"].as_u64().unwrap_or(0);
    let bad = summary["non_200"].as_u64().unwrap_or(u64::MAX) + summary["errors"].as_u64().unwrap_or(u64::MAX);
    check(
        "load through the outage: every request answered 200, none failed",
        ok as f64 >= RATE * SECONDS * 0.8 && bad == 0,
        format!("{stdout} {}", String::from_utf8_lossy(&out.stderr)),
    );

    // What Exchange received: as many requests as the devices got 200s, each with a
    // Negotiate token that mod_auth_gssapi accepted (200; no ticket would be 401).
    let received: Vec<String> =
        std::fs::read_to_string(lab.v("LAB_EXCHANGE_RECEIVED")).unwrap_or_default().lines().skip(received_before).filter(|l| !l.starts_with("OPTIONS * ")).map(str::to_string).collect();
    let with_ticket = received.iter().filter(|l| l.contains(" 200 ") && l.contains("auth=Negotiate ")).count();
    check(
        "Exchange received only requests with a ticket it accepted (200 with Negotiate), one per answered request",
        received.len() as u64 == ok && with_ticket == received.len(),
        format!("{} received, {with_ticket} with an accepted ticket, {ok} answered; first others: {:?}", received.len(), received.iter().filter(|l| !(l.contains(" 200 ") && l.contains("auth=Negotiate "))).take(3).collect::<Vec<_>>()),
    );

    let evs: Vec<Value> = std::fs::read_to_string(&events).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let kdc_ev = |kdc: &str, outcomes: &[&str], from: f64, to: f64| {
        evs.iter()
            .filter(|e| {
                let g = &e["gateway"];
                g["kdc"] == kdc && outcomes.iter().any(|o| g["outcome"] == *o) && (from..to).contains(&event_time(e))
            })
            .count()
    };
    let start = 0.0;
    let end = f64::MAX;
    // Before the kill: the first KDC answers (the forwarder carried requests).
    let fwd_lines = |t: &str| t.lines().filter(|l| l.starts_with("udp ") || l.starts_with("tcp ")).count();
    check(
        "before the kill: the first KDC answered (its replies in the events, requests in the forwarder's log)",
        kdc_ev(&first, &["reply"], start, killed_at) > 0 && fwd_lines(&fwd_before) > 0,
        format!("{} replies, forwarder {} requests", kdc_ev(&first, &["reply"], start, killed_at), fwd_lines(&fwd_before)),
    );
    // During the outage: the tries to the first KDC fail, each explained; the second answers.
    let failed: Vec<&Value> = evs
        .iter()
        .filter(|e| e["gateway"]["kdc"] == first.as_str() && (e["gateway"]["outcome"] == "unreachable" || e["gateway"]["outcome"] == "timeout"))
        .collect();
    let explained = failed.iter().all(|e| e["gateway"]["detail"].as_str().is_some_and(|d| !d.is_empty()));
    let in_outage = failed.iter().all(|e| (killed_at - 1.0..back_at + 1.0).contains(&event_time(e)));
    check(
        "during the outage: failed tries to the first KDC counted in events, each with its reason, all within the outage",
        !failed.is_empty() && explained && in_outage,
        format!("{} failed tries, explained {explained}, in the outage {in_outage}: {:?}", failed.len(), failed.iter().take(2).collect::<Vec<_>>()),
    );
    // Fail-over costs one try per retry_first_seconds (3 s), not one per request.
    let outage_replies = kdc_ev(&second, &["reply"], killed_at, back_at);
    check(
        "during the outage: the second KDC answered, and the dead first one was tried about once per retry_first_seconds (not per request)",
        outage_replies > 10 && failed.len() <= 6,
        format!("{outage_replies} replies from the second, {} failed tries to the first", failed.len()),
    );
    // Back: the first KDC is used again.
    let replies_after = kdc_ev(&first, &["reply"], back_at, end);
    check(
        "the first KDC back: used again (its replies in the events, new requests in the forwarder's log)",
        replies_after > 0 && fwd_lines(&fwd_after) > 0,
        format!("{replies_after} replies after its return, forwarder {} requests", fwd_lines(&fwd_after)),
    );
    let kcd_failed = evs.iter().filter(|e| e["gateway"]["step"] == "token" && e["gateway"]["outcome"] == "failed").count();
    check("no token failed for want of a KDC", kcd_failed == 0, format!("{kcd_failed} failed tokens"));

    eprintln!(
        "summary: {ok} requests answered, {} reached Exchange with a ticket; tries to the dead first KDC {}; replies: first before {} after {}, second during {outage_replies}",
        with_ticket,
        failed.len(),
        kdc_ev(&first, &["reply"], start, killed_at),
        replies_after
    );
    assert!(failures.is_empty(), "{} checks failed:\n{}", failures.len(), failures.join("\n"));
}
