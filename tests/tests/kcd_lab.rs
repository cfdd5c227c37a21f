//! `kcdscope kcd token` against real KDCs and a real Apache + mod_auth_gssapi: a Samba AD
//! DC and an MIT KDC with its LDAP backend (tests/lab/*.sh). What Apache's CGI echoes
//! (REMOTE_USER) and the KDCs' own error codes and e-texts are the judges; MIT's GSSAPI
//! (tests/lab/gss-token.py) is the reference implementation for the differential check.
//!
//! They need root (network namespaces, daemons on port 88): `tests/run` runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kcd_tests::{kcdscope_bin, repo_root};
use serde_json::Value;

kcd_tests::lab_steps!(
    /// The lab (`kcd_tests::Lab`: taken down when dropped) and this test's steps in it.
    Lab
);

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    events: Vec<Value>,
}

impl Run {
    /// The gateway objects of the events, with their krb5 part when there is one.
    fn gw(&self) -> impl Iterator<Item = (&Value, &Value)> {
        self.events.iter().filter_map(|e| Some((e.get("gateway")?, e)))
    }
    /// Requests sent to a KDC for a step.
    fn requests(&self, step: &str) -> usize {
        self.gw().filter(|(g, _)| g["step"] == step && g["outcome"] == "request").count()
    }
    fn outcome(&self, step: &str, outcome: &str) -> usize {
        self.gw().filter(|(g, _)| g["step"] == step && g["outcome"] == outcome).count()
    }
}

impl Lab {
    fn up(script: &str, name: &str) -> Lab {
        let dir = std::env::temp_dir().join(format!("kcd-client-{name}-{}", std::process::id()));
        Lab(kcd_tests::Lab::up(script, dir, "KCDLAB_KEEP", true, &[]))
    }

    /// A configuration file: service account `user` with `secret` (a TOML line), the
    /// realm's KDCs, and extra lines for [kcd] and [kdc].
    fn config(&self, name: &str, user: &str, secret: &str, kdcs: &[String], kcd_extra: &str, kdc_extra: &str) -> PathBuf {
        let list: Vec<String> = kdcs.iter().map(|k| format!("{k:?}")).collect();
        let text = format!(
            "[service_account]\nuser = {user:?}\n{secret}\n\n[kcd]\ntarget_spn = {:?}\n{kcd_extra}\n\n[kdc]\ntimeout_ms = 1500\n{kdc_extra}\n\n[[domain]]\nrealm = {:?}\ndomain_controllers = [{}]\n",
            self.v("LAB_TARGET_SPN"),
            self.v("LAB_REALM"),
            list.join(", ")
        );
        let p = self.dir.join(format!("{name}.toml"));
        std::fs::write(&p, text).expect("config written");
        p
    }

    fn password(&self, key: &str) -> String {
        format!("password_file = {:?}", self.v(key))
    }

    fn kcd(&self, config: &Path, args: &[&str]) -> Run {
        let events = config.with_extension(format!("{}.events", args.join("_").replace(['/', ':'], "_")));
        let _ = std::fs::remove_file(&events);
        let out: Output = Command::new("ip")
            .args(["netns", "exec", &self.v("LAB_NS"), &kcdscope_bin().display().to_string(), "kcd", "token", "--config"])
            .arg(config)
            .arg("--events")
            .arg(&events)
            .args(args)
            .output()
            .expect("kcdscope runs");
        let events = std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every event line is JSON"))
            .collect();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            events,
        }
    }

    /// Runs `f` while tcpdump records the gateway side's Kerberos traffic into `name`.pcap.
    fn captured(&mut self, name: &str, f: impl FnOnce(&mut Lab)) -> PathBuf {
        let file = self.dir.join(format!("{name}.pcap"));
        let mut tcpdump = Command::new("ip")
            .args(["netns", "exec", &self.v("LAB_NS"), "tcpdump", "-i", &self.v("LAB_IFACE"), "-n", "-U", "--immediate-mode", "-w"])
            .arg(&file)
            .arg("port 88")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("tcpdump runs");
        // tcpdump says "listening on" once it captures.
        let mut err = tcpdump.stderr.take().expect("stderr piped");
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("listening") {
            match std::io::Read::read(&mut err, &mut buf) {
                Ok(0) | Err(_) => panic!("tcpdump did not start: {}", String::from_utf8_lossy(&seen)),
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        f(self);
        std::thread::sleep(std::time::Duration::from_millis(500));
        let _ = Command::new("kill").arg("-INT").arg(tcpdump.id().to_string()).status();
        let _ = tcpdump.wait();
        file
    }

    /// The replay's findings for a capture: (id, subject kind, subject name).
    fn replay_findings(&self, pcap: &Path) -> Vec<(String, String, String)> {
        let out = Command::new(kcdscope_bin()).arg("replay").arg(pcap).arg("--json").arg("-q").output().expect("replay runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["event_type"] == "finding")
            .map(|e| {
                let f = &e["finding"];
                let s = |v: &Value| v.as_str().unwrap_or("").to_string();
                (s(&f["id"]), s(&f["subject"]["kind"]), s(&f["subject"]["name"]))
            })
            .collect()
    }

    /// MIT's own S4U through python3-gssapi, then GET with its token. MIT's client gives up
    /// with "Cannot contact any KDC" after one round of its UDP timeouts; a KDC that was
    /// briefly busy (it once happened in CI) is waited for (its TCP port accepting in the
    /// client namespace) and asked again, at most twice, and the retry is reported.
    fn mit_gss(&self, user: &str) -> String {
        let mut out = String::new();
        for attempt in 0..3 {
            let o = Command::new("/usr/bin/python3")
                .arg(repo_root().join("tests/lab/gss-token.py"))
                .arg(self.dir.join("lab/lab.env"))
                .arg(user)
                .arg(self.v("LAB_TARGET_SPN"))
                .arg("--url")
                .arg(self.v("LAB_WHOAMI_URL"))
                .output()
                .expect("gss-token.py runs");
            out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
            if !out.contains("Cannot contact any KDC") {
                break;
            }
            eprintln!("note: MIT GSSAPI could not reach the KDC (attempt {}); waiting for its port, then again", attempt + 1);
            self.wait_kdc_port(&self.v("LAB_KDC_ADDR"));
        }
        out
    }

    /// Waits (at most 10 s) until ADDR's TCP port 88 accepts a connection from the client
    /// namespace.
    fn wait_kdc_port(&self, addr: &str) {
        for _ in 0..50 {
            let ok = Command::new("ip")
                .args(["netns", "exec", &self.v("LAB_NS"), "bash", "-c", &format!("exec 3<>/dev/tcp/{addr}/88")])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// The checks' verdict; the lab goes down when dropped.
    fn down(self) {
        self.assert_checks();
    }

    /// An expected refusal: exit 1, the step, the KDC's error by name and number, and the
    /// finding, in the command's explanation; the same in the token event.
    fn refused(&mut self, what: &str, r: &Run, step: &str, code: i32, name: &str, finding: &str) {
        let want = format!("{step}: the KDC");
        let code_text = format!("answered {name} ({code})");
        let ev = r.gw().find(|(g, _)| g["step"] == "token" && g["outcome"] == "failed").map(|(g, _)| g.clone());
        self.check(
            &format!("{what}: {step} refused with {name} ({code}), finding {finding}"),
            r.code == 1
                && r.stderr.contains(&want)
                && r.stderr.contains(&code_text)
                && r.stderr.contains(&format!("finding: {finding}"))
                && ev.as_ref().is_some_and(|g| g["finding"] == finding && g["detail"].as_str().is_some_and(|d| d.contains(&code_text))),
            || format!("exit {}, stderr: {}, event {ev:?}", r.code, r.stderr),
        );
        // The KRB-ERROR itself, as the gateway's krb5 event records it.
        let seen = r.gw().any(|(g, e)| g["step"] == step.to_lowercase() && e["krb5"]["error"]["code"] == code);
        self.check(&format!("{what}: the KRB-ERROR {code} is in the events"), seen, || format!("{} events", r.events.len()));
    }
}

fn remote_user(stdout: &str) -> Option<&str> {
    stdout.lines().find_map(|l| l.strip_prefix("REMOTE_USER="))
}

fn http_200s(stdout: &str) -> usize {
    stdout.lines().filter(|l| *l == "HTTP 200" || *l == "HTTP_STATUS=200").count()
}

/// What every lab checks the same way: the user gets in, the cached ticket serves the
/// second token, 50 concurrent callers share one exchange, the failure cases, fail-over.
fn common(lab: &mut Lab, kdc: &str) {
    let url = lab.v("LAB_WHOAMI_URL");
    let good = lab.config("good", "svc_awseg", &lab.password("LAB_SVC_PASSWORD_FILE"), &[kdc.to_string()], "", "");
    let upn = lab.v("LAB_USER_UPN");

    let r = lab.kcd(&good, &["--user", &upn, "--url", &url, "--repeat", "2"]);
    let first_token = r.gw().position(|(g, _)| g["step"] == "token");
    let kdc_after_first = first_token.map(|i| r.gw().skip(i + 1).filter(|(_, e)| e.get("krb5").is_some()).count());
    lab.check(
        "two tokens for alice: both HTTP 200",
        r.code == 0 && http_200s(&r.stdout) == 2,
        || format!("exit {} stdout {} stderr {}", r.code, r.stdout, r.stderr),
    );
    let outcomes: Vec<&Value> = r.gw().filter(|(g, _)| g["step"] == "token").map(|(g, _)| &g["outcome"]).collect();
    lab.check(
        "second token from the cache: outcome cache_hit, no KDC message after the first token",
        outcomes == ["issued", "cache_hit"] && kdc_after_first == Some(0),
        || format!("{outcomes:?}, {kdc_after_first:?} KDC messages after the first token"),
    );
    lab.check("one S4U2Proxy for two tokens", r.requests("s4u2proxy") == 1, || format!("{}", r.requests("s4u2proxy")));
    let secrets = [std::fs::read_to_string(lab.v("LAB_SVC_PASSWORD_FILE")).unwrap_or_default().trim().to_string()];
    let tokens: Vec<&str> = r.stdout.lines().filter_map(|l| l.strip_prefix("Negotiate ")).collect();
    let all_events = r.events.iter().map(Value::to_string).collect::<String>();
    lab.check(
        "no password in output or events, no token in events",
        !secrets[0].is_empty()
            && !r.stdout.contains(&secrets[0])
            && !r.stderr.contains(&secrets[0])
            && !all_events.contains(&secrets[0])
            && tokens.iter().all(|t| !all_events.contains(&t[..40.min(t.len())])),
        || "a secret leaked".into(),
    );

    // The first user after a start: the client first learns what the KDC does with
    // enterprise names from an S4U2Self for the service account itself (as the gateway does
    // when it starts), so that the user's own costs one S4U2Self on either KDC: Samba keeps
    // the enterprise name (the user is asked for under the account name at once), MIT does
    // not hold the service account under one (it answers 6; the user's enterprise name is
    // asked as before, one S4U2Self). Counted on the wire by tshark: the PA-FOR-USER name of
    // each S4U2Self request.
    let mut run = None;
    let pcap = lab.captured("learn", |lab| run = Some(lab.kcd(&good, &["--user", &upn, "--url", &url, "--learn-enterprise-names"])));
    let r = run.expect("kcd ran");
    let names = s4u2self_names(&pcap);
    let base = |n: &str| n.split('@').next().unwrap_or("").to_lowercase();
    let for_user: Vec<&String> = names.iter().filter(|n| base(n) == base(&upn)).collect();
    let for_svc = names.iter().filter(|n| base(n) == "svc_awseg").count();
    let (learnt, user_name) = match lab.v("LAB_KIND").as_str() {
        "samba" => ("enterprise_kept", base(&upn)),
        _ => ("enterprise_unknown", upn.clone()),
    };
    lab.check(
        &format!("first user after a start, KDC's way learnt first ({learnt}): HTTP 200, on the wire one S4U2Self for the service account and exactly one for {upn} (as {user_name})"),
        r.code == 0 && http_200s(&r.stdout) == 1 && r.outcome("s4u2self", learnt) == 1 && for_svc == 1 && for_user.len() == 1 && *for_user[0] == user_name,
        || format!("exit {} outcome {learnt}: {}, S4U2Self names on the wire {names:?}, stderr {}", r.code, r.outcome("s4u2self", learnt), r.stderr),
    );

    // 50 callers at once for a user nobody asked for yet.
    let new_user = lab.v("LAB_USER_NEW_UPN");
    let r = lab.kcd(&good, &["--user", &new_user, "--url", &url, "--concurrent", "50", "--repeat", "1"]);
    let canon = r.outcome("s4u2self", "canonicalised");
    lab.check(
        "50 concurrent tokens for a new user: exactly 50 HTTP 200",
        r.code == 0 && http_200s(&r.stdout) == 50,
        || format!("exit {} {} x 200, stderr {}", r.code, http_200s(&r.stdout), r.stderr),
    );
    lab.check(
        "50 concurrent tokens: one S4U2Self exchange (plus its canonicalisation on a KDC that needs it) and one S4U2Proxy",
        r.requests("s4u2self") == 1 + canon && canon <= 1 && r.requests("s4u2proxy") == 1,
        || format!("S4U2Self {} (canonicalised {canon}), S4U2Proxy {}", r.requests("s4u2self"), r.requests("s4u2proxy")),
    );
    let flights = r.gw().filter(|(g, _)| g["step"] == "token" && g["outcome"] == "issued").count();
    lab.check("50 concurrent tokens: one issued by the exchange, the rest shared it", flights == 1, || format!("{flights} issued"));

    // Fail-over: the first domain controller never answers.
    let fo = lab.config("failover", "svc_awseg", &lab.password("LAB_SVC_PASSWORD_FILE"), &[lab.v("LAB_KDC_DEAD_ADDR"), kdc.to_string()], "", "");
    let r = lab.kcd(&fo, &["--user", &upn, "--url", &url]);
    let dead = lab.v("LAB_KDC_DEAD_ADDR");
    let timeouts: Vec<&Value> = r.gw().filter(|(g, _)| g["outcome"] == "timeout").map(|(g, _)| g).collect();
    lab.check(
        "dead first KDC: HTTP 200 through the second, the timeout reported once (the KDC that answered is asked first afterwards)",
        r.code == 0 && http_200s(&r.stdout) == 1 && timeouts.len() == 1 && timeouts[0]["kdc"] == dead.as_str() && timeouts[0]["attempt"] == 1,
        || format!("exit {} timeouts {timeouts:?} stderr {}", r.code, r.stderr),
    );

    // Tickets replaced before they end: with a margin as long as their lifetime, every
    // token finds the TGT and the service ticket due, so the second logs in again.
    let renew = lab.config("renew", "svc_awseg", &lab.password("LAB_SVC_PASSWORD_FILE"), &[kdc.to_string()], "renew_before_seconds = 86400", "");
    let r = lab.kcd(&renew, &["--user", &upn, "--url", &url, "--repeat", "2"]);
    let once = lab.kcd(&renew, &["--user", &upn]);
    let outcomes: Vec<&Value> = r.gw().filter(|(g, _)| g["step"] == "token").map(|(g, _)| &g["outcome"]).collect();
    lab.check(
        "tickets due for renewal are replaced: the second token logs in and delegates again, HTTP 200 twice",
        r.code == 0
            && http_200s(&r.stdout) == 2
            && outcomes == ["issued", "issued"]
            && r.requests("login") == 2 * once.requests("login")
            && r.requests("s4u2proxy") == 2,
        || format!("exit {} outcomes {outcomes:?} logins {} (one token: {}) stderr {}", r.code, r.requests("login"), once.requests("login"), r.stderr),
    );

    // Keytab instead of password.
    let kt = lab.config("keytab", "svc_awseg", &format!("keytab = {:?}", lab.v("LAB_SVC_KEYTAB")), &[kdc.to_string()], "", "");
    let r = lab.kcd(&kt, &["--user", &upn, "--url", &url]);
    lab.check("service account from its keytab: HTTP 200", r.code == 0 && http_200s(&r.stdout) == 1, || r.stderr.clone());

    // Raw krb5 GSS token instead of SPNEGO, over TCP only.
    let raw = lab.config("raw", "svc_awseg", &lab.password("LAB_SVC_PASSWORD_FILE"), &[kdc.to_string()], "token = \"krb5\"", "transport = \"tcp\"");
    let r = lab.kcd(&raw, &["--user", &upn, "--url", &url]);
    let udp = r.events.iter().filter(|e| e["proto"] == "UDP").count();
    lab.check(
        "raw krb5 token, TCP only: HTTP 200 and no UDP",
        r.code == 0 && http_200s(&r.stdout) == 1 && udp == 0 && r.requests("login") == 2,
        || format!("exit {} udp {udp} stderr {}", r.code, r.stderr),
    );

    // Failures.
    let r = lab.kcd(&good, &["--user", &lab.v("LAB_USER_UNKNOWN_UPN")]);
    lab.refused("unknown user", &r, "S4U2Self", 6, "KDC_ERR_C_PRINCIPAL_UNKNOWN", "krb.principal_unknown");
    let r = lab.kcd(&good, &["--user", &upn, "--spn", &lab.v("LAB_SPN_UNKNOWN")]);
    lab.refused("target SPN unknown", &r, "S4U2Proxy", 7, "KDC_ERR_S_PRINCIPAL_UNKNOWN", "krb.target_spn_unknown");
    let r = lab.kcd(&good, &["--user", &upn, "--spn", &lab.v("LAB_SPN_NOT_ALLOWED")]);
    lab.refused("target not in the allowed list", &r, "S4U2Proxy", 13, "KDC_ERR_BADOPTION", "krb.s4u2proxy.refused");
    let nodeleg = lab.config("nodeleg", &lab.v("LAB_SVC_NODELEG_PRINCIPAL"), &lab.password("LAB_SVC_NODELEG_PASSWORD_FILE"), &[kdc.to_string()], "", "");
    let r = lab.kcd(&nodeleg, &["--user", &upn]);
    lab.refused("delegation removed", &r, "S4U2Proxy", 13, "KDC_ERR_BADOPTION", "krb.s4u2proxy.refused");
    let nopt = lab.config("nopt", &lab.v("LAB_SVC_NOPT_PRINCIPAL"), &lab.password("LAB_SVC_NOPT_PASSWORD_FILE"), &[kdc.to_string()], "", "");
    let r = lab.kcd(&nopt, &["--user", &upn]);
    lab.refused("protocol transition off", &r, "S4U2Proxy", 13, "KDC_ERR_BADOPTION", "krb.s4u2proxy.protocol_transition_not_allowed");
    lab.check(
        "protocol transition off: the non-forwardable S4U2Self ticket is reported",
        r.stderr.contains("not forwardable") && r.gw().any(|(g, _)| g["step"] == "s4u2self" && g["forwardable"] == false),
        || r.stderr.clone(),
    );
    let wrong_pw = lab.dir.join("wrong.password");
    std::fs::write(&wrong_pw, "not-the-password\n").expect("write");
    let wrong = lab.config("wrong", "svc_awseg", &format!("password_file = {wrong_pw:?}"), &[kdc.to_string()], "", "");
    let r = lab.kcd(&wrong, &["--user", &upn]);
    lab.refused("wrong service-account password", &r, "login", 24, "KDC_ERR_PREAUTH_FAILED", "krb.password_wrong");
}

#[test]
#[ignore = "needs root and network namespaces; tests/run runs it"]
fn kcd_client_against_samba_ad_and_apache() {
    let mut lab = Lab::up("samba-ad.sh", "samba");
    let kdc = lab.v("LAB_KDC_HOST");
    common(&mut lab, &kdc);
    account_cases(&mut lab, &kdc);
    let url = lab.v("LAB_WHOAMI_URL");
    let good = lab.dir.join("good.toml");

    let r = lab.kcd(&good, &["--user", &lab.v("LAB_USER_UPN"), "--url", &url]);
    lab.check(
        "alice@lab.test: HTTP 200, REMOTE_USER alice@LAB.TEST",
        r.code == 0 && remote_user(&r.stdout) == Some("alice@LAB.TEST"),
        || format!("exit {} stdout {} stderr {}", r.code, r.stdout, r.stderr),
    );
    let r = lab.kcd(&good, &["--user", &lab.v("LAB_USER_DISABLED_UPN")]);
    // Samba answers 12 for a disabled account where Windows answers 18 (LAB-FACTS).
    lab.refused("disabled user", &r, "S4U2Self", 12, "KDC_ERR_POLICY", "krb.account_disabled");

    // MIT's GSSAPI for the same user: Samba keeps an enterprise name as sent, so MIT's
    // token for alice@lab.test names "alice\@lab.test"; for alice@LAB.TEST it names the
    // account, which is what ours gives for the UPN.
    let mit = lab.mit_gss("alice@LAB.TEST");
    let ours = lab.kcd(&good, &["--user", &lab.v("LAB_USER_UPN"), "--url", &url]);
    lab.check(
        "differential: MIT GSSAPI and kcdscope tokens both accepted, naming the same user",
        mit.contains("HTTP_STATUS=200") && remote_user(&mit).is_some() && remote_user(&mit) == remote_user(&ours.stdout),
        || format!("MIT: {mit}\nours: {}", ours.stdout),
    );
    lab.down();
}

/// The defects of issue 9, on Samba: each case as the client names it and as the replay
/// of the same traffic names it, which must agree.
fn account_cases(lab: &mut Lab, kdc: &str) {
    let url = lab.v("LAB_WHOAMI_URL");
    let good = lab.dir.join("good.toml");
    let upn = lab.v("LAB_USER_UPN");
    let not_delegable = lab.v("LAB_USER_NOT_DELEGABLE_UPN");
    let expired = lab.v("LAB_USER_EXPIRED_UPN");

    // A user marked "sensitive and cannot be delegated", after a user who can be: the
    // client reads the PAC, the replay sees the other user succeed; both name the user.
    let mut runs = Vec::new();
    let pcap = lab.captured("accounts", |lab| {
        runs.push(lab.kcd(&good, &["--user", &upn]));
        runs.push(lab.kcd(&good, &["--user", &not_delegable]));
        runs.push(lab.kcd(&good, &["--user", &expired]));
    });
    let (ok, nd, exp) = (&runs[0], &runs[1], &runs[2]);
    lab.check("alice before them: a token", ok.code == 0, || ok.stderr.clone());
    lab.refused("not-delegable user", nd, "S4U2Proxy", 13, "KDC_ERR_BADOPTION", "krb.s4u2proxy.user_not_delegable");
    lab.check(
        "not-delegable user: the user is named, HTTP 403, the S4U2Self ticket reported not forwardable",
        nd.stderr.contains("HTTP 403") && nd.gw().any(|(g, _)| g["step"] == "s4u2self" && g["forwardable"] == false),
        || nd.stderr.clone(),
    );
    lab.refused("expired account", exp, "S4U2Self", 1, "KDC_ERR_NAME_EXP", "krb.account_expired");
    lab.check("expired account: HTTP 403", exp.stderr.contains("HTTP 403"), || exp.stderr.clone());
    let found = lab.replay_findings(&pcap);
    let name_of = |u: &str| u.split('@').next().unwrap_or(u).to_lowercase();
    lab.check(
        "replay of the same traffic: user_not_delegable naming the user, account_expired, no krb.error",
        found.iter().any(|(id, kind, name)| id == "krb.s4u2proxy.user_not_delegable" && kind == "principal" && name.to_lowercase().starts_with(&name_of(&not_delegable)))
            && found.iter().any(|(id, _, name)| id == "krb.account_expired" && name.to_lowercase().starts_with(&name_of(&expired)))
            && !found.iter().any(|(id, _, _)| id == "krb.error" || id == "krb.s4u2proxy.protocol_transition_not_allowed"),
        || format!("{found:?}"),
    );
    // One user, one chain: the enterprise name and the canonical retry read as one.
    let rep = Command::new(kcdscope_bin()).arg("replay").arg(&pcap).arg("--report").output().expect("replay runs");
    let text = String::from_utf8_lossy(&rep.stdout).into_owned();
    let alice_heads = text.lines().filter(|l| l.starts_with("  ") && !l.starts_with("   ") && l.trim().to_lowercase().starts_with("alice@")).count();
    lab.check(
        "report: alice's chain is one principal, with the names it was asked under",
        alice_heads == 1 && text.contains("also asked for as"),
        || text.clone(),
    );

    // A domain controller name that does not resolve: its own finding, and an event even
    // when the next domain controller answers.
    let bad_dc = lab.v("LAB_KDC_UNRESOLVABLE_HOST");
    let both = lab.config("unresolved_then_good", "svc_awseg", &lab.password("LAB_SVC_PASSWORD_FILE"), &[bad_dc.clone(), kdc.to_string()], "", "");
    let r = lab.kcd(&both, &["--user", &upn]);
    let unresolved = r.gw().filter(|(g, _)| g["outcome"] == "unresolved" && g["kdc"] == bad_dc.as_str() && g["finding"] == "krb.kdc.name_unresolved").count();
    lab.check("unresolvable first DC: a token from the second, the failed lookup in an event", r.code == 0 && unresolved >= 1, || format!("exit {} unresolved events {unresolved} stderr {}", r.code, r.stderr));
    let only = lab.config("unresolved_only", "svc_awseg", &lab.password("LAB_SVC_PASSWORD_FILE"), std::slice::from_ref(&bad_dc), "", "");
    let r = lab.kcd(&only, &["--user", &upn]);
    lab.check(
        "unresolvable only DC: finding krb.kdc.name_unresolved, HTTP 504, the DNS fix",
        r.code == 1 && r.stderr.contains("finding: krb.kdc.name_unresolved") && r.stderr.contains("HTTP 504") && r.stderr.contains("DNS"),
        || r.stderr.clone(),
    );

    // A stale keytab: the KDC's own kvno for the account is newer than the keytab's.
    let stale_kt = lab.v("LAB_SVC_STALE_KEYTAB");
    let kt_kvno = Command::new("klist").args(["-k", "-K"]).arg(&stale_kt).output().ok().and_then(|o| {
        String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.split_whitespace().next()?.parse::<u32>().ok()).max()
    });
    let stale = lab.config("stale", &lab.v("LAB_SVC_STALE_PRINCIPAL"), &format!("keytab = {stale_kt:?}"), &[kdc.to_string()], "", "");
    let r = lab.kcd(&stale, &["--user", &upn]);
    lab.refused("stale keytab", &r, "login", 24, "KDC_ERR_PREAUTH_FAILED", "krb.password_wrong");
    lab.check(
        "stale keytab: named with its kvno (as klist -k shows it), and the fix says to export a new one",
        kt_kvno.is_some_and(|v| r.stderr.contains(&format!("keytab {stale_kt} (kvno {v}"))) && r.stderr.contains("Export a new keytab"),
        || format!("klist kvno {kt_kvno:?}, stderr {}", r.stderr),
    );

    // --url https:// is refused before any KDC traffic.
    let r = lab.kcd(&good, &["--user", &upn, "--url", "https://exchange.lab.test/whoami"]);
    lab.check("--url https://: usage error before any KDC message", r.code == 2 && r.events.is_empty(), || format!("exit {} {} events", r.code, r.events.len()));

    // The KDC's clock 10 minutes behind, the target's right: the client adopts the KDC's
    // time, the target refuses the token, and the output says which clock is wrong.
    let clock = |off: &str| {
        Command::new("bash").arg(lab.script()).arg("kdc-clock").arg(lab.dir.join("lab")).arg(off).status().map(|s| s.success()).unwrap_or(false)
    };
    let shifted = clock("-10m");
    let r = lab.kcd(&good, &["--user", &upn, "--url", &url]);
    let restored = clock("0");
    let adopted: Vec<i64> = r.gw().filter(|(g, _)| g["outcome"] == "clock_adjusted").filter_map(|(g, _)| g["clock_offset_seconds"].as_i64()).collect();
    lab.check(
        "KDC clock 10 min behind: offset adopted and reported, the target's 401 explained (the KDC's clock is wrong, NTP fix)",
        shifted
            && restored
            && adopted.len() == 1
            && (-610..=-590).contains(&adopted[0])
            && r.stdout.contains("HTTP 401")
            && r.stderr.contains("its time is now used for Kerberos")
            && r.stderr.contains("clock is the wrong one")
            && r.stderr.contains("finding: krb.clock_skew")
            && r.stderr.contains("NTP"),
        || format!("shifted {shifted} restored {restored} adopted {adopted:?} stdout {} stderr {}", r.stdout, r.stderr),
    );
    let r = lab.kcd(&good, &["--user", &upn, "--quiet"]);
    lab.check(
        "a single quiet token: the summary counts 1 token and its own latency",
        r.code == 0 && r.stderr.contains("1 token in") && !r.stderr.contains("1 tokens"),
        || r.stderr.clone(),
    );
}

/// The user name of each S4U2Self request in a capture (PA-FOR-USER's, the first name
/// tshark gives for it), in order.
fn s4u2self_names(pcap: &Path) -> Vec<String> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-Y", "kerberos.msg_type == 12 && kerberos.padata_type == 129", "-T", "fields", "-e", "kerberos.KerberosString"])
        .output()
        .expect("tshark runs");
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split(',').next().unwrap_or("").to_string()).collect()
}

/// Lines a KDC logged since `from` (its log's line count before).
fn log_since(path: &str, from: usize) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().skip(from).map(str::to_string).collect()
}

fn log_len(path: &str) -> usize {
    std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0)
}

/// Cross-realm S4U2Self: the service account in LAB.TEST, the user dave in OTHER.TEST
/// (UPN dave@other.test), a two-way trust between them; a third configured realm that
/// LAB.TEST does not trust. Judged by Apache's REMOTE_USER and by what each KDC logged.
fn cross_realm(lab: &mut Lab) {
    let url = lab.v("LAB_WHOAMI_URL");
    let (realm, other, notrust) = (lab.v("LAB_REALM"), lab.v("LAB_OTHER_REALM"), lab.v("LAB_NOTRUST_REALM"));
    let (kdc, okdc) = (lab.v("LAB_KDC_ADDR"), lab.v("LAB_OTHER_KDC_ADDR"));
    let (klog, olog) = (lab.v("LAB_KDC_LOG"), lab.v("LAB_OTHER_KDC_LOG"));
    let text = format!(
        "[service_account]\nuser = \"svc_awseg\"\n{}\n\n[kcd]\ntarget_spn = {:?}\n\n[kdc]\ntimeout_ms = 1500\n\n\
         [[domain]]\nrealm = {realm:?}\ndomain_controllers = [{kdc:?}]\n\n\
         [[domain]]\nrealm = {other:?}\ndomain_controllers = [{okdc:?}]\n\n\
         [[domain]]\nrealm = {notrust:?}\ndomain_controllers = [{okdc:?}]\n",
        lab.password("LAB_SVC_PASSWORD_FILE"),
        lab.v("LAB_TARGET_SPN"),
    );
    let cfg = lab.dir.join("cross.toml");
    std::fs::write(&cfg, text).expect("config written");
    let dave = lab.v("LAB_OTHER_USER_UPN");

    let (k0, o0) = (log_len(&klog), log_len(&olog));
    let r = lab.kcd(&cfg, &["--user", &dave, "--url", &url, "--repeat", "2"]);
    let (kl, ol) = (log_since(&klog, k0), log_since(&olog, o0));
    let want_user = format!("dave\\@other.test@{other}");
    lab.check(
        &format!("cross-realm: two tokens for {dave} (realm {other}): both HTTP 200, Apache's REMOTE_USER {want_user}"),
        r.code == 0 && http_200s(&r.stdout) == 2 && r.stdout.lines().filter(|l| *l == format!("REMOTE_USER={want_user}")).count() == 2,
        || format!("exit {} stdout {} stderr {}", r.code, r.stdout, r.stderr),
    );
    // What each KDC saw, from its own log.
    let tgs = |l: &[String]| l.iter().filter(|x| x.contains("TGS_REQ")).count();
    let has = |l: &[String], a: &str, b: &str| l.iter().any(|x| x.contains(a) && x.contains(b));
    lab.check(
        &format!("cross-realm: {realm}'s KDC logged 3 TGS requests: the cross-realm TGT krbtgt/{other}@{realm}, the final S4U2Self (PROTOCOL-TRANSITION for the user of {other}), the S4U2Proxy"),
        tgs(&kl) == 3
            && has(&kl, "ISSUE", &format!("svc_awseg@{realm} for krbtgt/{other}@{realm}"))
            && has(&kl, "PROTOCOL-TRANSITION", &format!("s4u-client={want_user}"))
            && has(&kl, "CONSTRAINED-DELEGATION", &format!("s4u-client={want_user}")),
        || kl.join("\n"),
    );
    lab.check(
        &format!("cross-realm: {other}'s KDC logged exactly one TGS request: the S4U2Self for the user, answered with the referral krbtgt/{realm}@{other}"),
        tgs(&ol) == 1 && has(&ol, "ISSUE", &format!("svc_awseg@{realm} for krbtgt/{realm}@{other}")) && has(&ol, "PROTOCOL-TRANSITION", &format!("s4u-client={want_user}")),
        || ol.join("\n"),
    );
    let to = |addr: &str| r.gw().filter(|(g, _)| g["outcome"] == "request" && g["kdc"] == addr).count();
    let outcomes: Vec<&Value> = r.gw().filter(|(g, _)| g["step"] == "token").map(|(g, _)| &g["outcome"]).collect();
    lab.check(
        "cross-realm: the events name the referral; second token from the cache",
        r.outcome("s4u2self", "referral") == 1 && to(&okdc) == 1 && outcomes == ["issued", "cache_hit"],
        || format!("referral {} to other {} outcomes {outcomes:?}", r.outcome("s4u2self", "referral"), to(&okdc)),
    );

    // MIT's own client, the reference: the lab's self-check made it do the same (kvno -I).
    let sc = std::fs::read_to_string(lab.v("LAB_SELFCHECK")).unwrap_or_default();
    lab.check(
        "cross-realm: MIT's kvno -I dave@OTHER.TEST passed the same flow in this lab's self-check",
        sc.lines().any(|l| l.starts_with("PASS") && l.contains("kvno -I dave@")) && !sc.lines().any(|l| l.starts_with("FAIL")),
        || sc.clone(),
    );

    // A realm the service's realm does not trust: refused at the first step, named, with the fix.
    let (k0, o0) = (log_len(&klog), log_len(&olog));
    let r = lab.kcd(&cfg, &["--user", &format!("erin@{}", notrust.to_lowercase())]);
    let (kl, ol) = (log_since(&klog, k0), log_since(&olog, o0));
    let ev = r.gw().find(|(g, _)| g["step"] == "token" && g["outcome"] == "failed").map(|(g, _)| g.clone());
    lab.check(
        &format!("cross-realm, no trust to {notrust}: exit 1, finding krb.cross_realm.no_trust with the fix, HTTP 502 for a device; the event says the same"),
        r.code == 1
            && r.stderr.contains(&format!("krbtgt/{notrust}@{realm}"))
            && r.stderr.contains("finding: krb.cross_realm.no_trust")
            && r.stderr.contains("Create the trust")
            && r.stderr.contains("HTTP 502")
            && ev.as_ref().is_some_and(|g| g["finding"] == "krb.cross_realm.no_trust"),
        || format!("exit {} stderr {} event {ev:?}", r.code, r.stderr),
    );
    lab.check(
        &format!("cross-realm, no trust: {realm}'s KDC logged UNKNOWN_SERVER for krbtgt/{notrust}@{realm}; nothing went to another realm's KDC"),
        has(&kl, "UNKNOWN_SERVER", &format!("krbtgt/{notrust}@{realm}")) && ol.iter().all(|l| !l.contains("TGS_REQ")) && r.requests("s4u2proxy") == 0,
        || format!("{}\n--\n{}", kl.join("\n"), ol.join("\n")),
    );
    // An unknown user of the other realm: its KDC says so (6), a 403 for a device.
    let r = lab.kcd(&cfg, &["--user", &format!("nosuch@{}", other.to_lowercase())]);
    lab.check(
        "cross-realm, unknown user of the other realm: its KDC answers 6, finding krb.principal_unknown, HTTP 403",
        r.code == 1 && r.stderr.contains(&format!("the KDC {okdc} answered KDC_ERR_C_PRINCIPAL_UNKNOWN (6)")) && r.stderr.contains("HTTP 403"),
        || r.stderr.clone(),
    );
}

#[test]
#[ignore = "needs root and network namespaces; tests/run runs it"]
fn kcd_client_against_mit_kdc_ldap_and_apache() {
    let mut lab = Lab::up("mit-kdc.sh", "mit");
    let kdc = lab.v("LAB_KDC_ADDR");
    common(&mut lab, &kdc);
    let url = lab.v("LAB_WHOAMI_URL");
    let upn = lab.v("LAB_USER_UPN");
    let good = lab.dir.join("good.toml");

    let r = lab.kcd(&good, &["--user", &lab.v("LAB_USER_DISABLED_UPN")]);
    lab.refused("disabled user", &r, "S4U2Self", 18, "KDC_ERR_CLIENT_REVOKED", "krb.account_disabled");

    // MIT tells the refusals apart in e-text; so must we.
    let nopt = lab.dir.join("nopt.toml");
    let r = lab.kcd(&nopt, &["--user", &upn]);
    lab.check("MIT: protocol transition off says EVIDENCE_TKT_NOT_FORWARDABLE", r.stderr.contains("(EVIDENCE_TKT_NOT_FORWARDABLE)"), || r.stderr.clone());
    let na = lab.config("notallowed", &lab.v("LAB_SVC_NOT_ALLOWED_PRINCIPAL"), &lab.password("LAB_SVC_NOT_ALLOWED_PASSWORD_FILE"), std::slice::from_ref(&kdc), "", "");
    let r = lab.kcd(&na, &["--user", &upn]);
    lab.refused("MIT: delegation to the target not allowed", &r, "S4U2Proxy", 13, "KDC_ERR_BADOPTION", "krb.s4u2proxy.refused");
    lab.check("MIT: not allowed says UNSUPPORTED_S4U2PROXY_REQUEST", r.stderr.contains("(UNSUPPORTED_S4U2PROXY_REQUEST)"), || r.stderr.clone());

    // Differential with MIT's GSSAPI: same user, same name at Apache.
    let mit = lab.mit_gss(&upn);
    let ours = lab.kcd(&good, &["--user", &upn, "--url", &url]);
    lab.check(
        "differential: MIT GSSAPI and kcdscope tokens both accepted, naming the same user",
        mit.contains("HTTP_STATUS=200") && remote_user(&mit).is_some() && remote_user(&mit) == remote_user(&ours.stdout) && http_200s(&ours.stdout) == 1,
        || format!("MIT: {mit}\nours: {}", ours.stdout),
    );

    // RESPONSE_TOO_BIG: a KDC whose UDP replies stop at 300 bytes.
    let small = lab.config("small", "svc_awseg", &lab.password("LAB_SVC_PASSWORD_FILE"), &[lab.v("LAB_KDC_SMALL_UDP_ADDR")], "", "");
    let r = lab.kcd(&small, &["--user", &upn, "--url", &url]);
    let e52 = r.events.iter().filter(|e| e["krb5"]["error"]["code"] == 52 && e["proto"] == "UDP").count();
    let retries = r.gw().filter(|(g, _)| g["outcome"] == "tcp_retry").count();
    lab.check(
        "RESPONSE_TOO_BIG over UDP: retried over TCP, HTTP 200",
        r.code == 0 && http_200s(&r.stdout) == 1 && e52 >= 1 && retries == e52,
        || format!("exit {} 52s {e52} retries {retries} stderr {}", r.code, r.stderr),
    );

    // Clock skew: a KDC 10 minutes behind (db2 backend: it knows alice but cannot do
    // S4U2Proxy, so the run ends there with 13 after login and S4U2Self succeeded).
    let skew = lab.config("skew", "svc_awseg", &lab.password("LAB_SVC_PASSWORD_FILE"), &[lab.v("LAB_KDC_SKEW_ADDR")], "", "");
    let r = lab.kcd(&skew, &["--user", &lab.v("LAB_USER")]);
    let adj: Vec<i64> = r.gw().filter_map(|(g, _)| g["clock_offset_seconds"].as_i64()).collect();
    let e37 = r.events.iter().filter(|e| e["krb5"]["error"]["code"] == 37).count();
    lab.check(
        "clock skew: KRB_AP_ERR_SKEW once, the KDC's offset (-600 s) adopted, then login and S4U2Self succeed",
        e37 == 1 && adj.len() == 1 && (-605..=-595).contains(&adj[0]) && r.outcome("s4u2self", "forwardable") == 1,
        || format!("37s {e37} offsets {adj:?} stderr {}", r.stderr),
    );
    cross_realm(&mut lab);
    lab.down();
}
