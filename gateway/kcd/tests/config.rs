//! Configuration is checked whole at start; each mistake is named by its key.

use std::path::Path;

use kcd_client::config::{Config, Secret, TokenFormat, TransportMode, EXAMPLE};
use kcd_client::KcdError;

fn parse(text: &str) -> Result<Config, KcdError> {
    let read = |p: &Path| -> std::io::Result<Vec<u8>> {
        match p.file_name().and_then(|n| n.to_str()) {
            Some("svc_awseg.password") => Ok(b"S3cret-pw\n".to_vec()),
            Some("empty.password") => Ok(Vec::new()),
            _ => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory")),
        }
    };
    let env = |k: &str| (k == "KCD_PW").then(|| "from-env".to_string());
    Config::parse(text, Path::new("/etc/kcdscope"), &read, &env)
}

fn refused(text: &str) -> (String, String) {
    match parse(text) {
        Err(KcdError::Config { key, problem }) => (key, problem),
        other => panic!("accepted or other error: {other:?}"),
    }
}

#[test]
fn the_example_is_valid_and_means_what_it_says() {
    let c = parse(EXAMPLE).expect("example parses");
    assert_eq!(c.service_name, ["svc_awseg"]);
    assert_eq!(c.service_realm, "LAB.TEST");
    assert_eq!(c.target_spn, "HTTP/exchange.lab.test");
    assert_eq!(c.token, TokenFormat::Spnego);
    assert_eq!(c.transport, TransportMode::Udp);
    assert_eq!(c.timeout.as_millis(), 3000);
    assert_eq!(c.domains[0].kdcs, ["dc1.lab.test", "10.88.0.3:88"]);
    assert_eq!(c.etypes(), [18, 17]);
    match &c.secret {
        Secret::Password(p) => assert_eq!(p.as_str(), "S3cret-pw"),
        other => panic!("{other:?}"),
    }
    let shown = format!("{c:?}");
    assert!(!shown.contains("S3cret"), "Debug shows the password: {shown}");
}

#[test]
fn each_mistake_names_its_key() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("realm = \"LAB.TEST\"", "realm = \"lab.test\"", "domain[0].realm", "UPPERCASE"),
        ("domain_controllers = [\"dc1.lab.test\", \"10.88.0.3:88\"]", "domain_controllers = []", "domain[0].domain_controllers", "empty"),
        ("domain_controllers = [\"dc1.lab.test\", \"10.88.0.3:88\"]", "domain_controllers = [\"tcp/dc1\"]", "domain[0].domain_controllers", "tcp/dc1"),
        ("target_spn = \"HTTP/exchange.lab.test\"", "target_spn = \"exchange\"", "kcd.target_spn", "service principal name"),
        ("timeout_ms = 3000", "timeout_ms = 0", "kdc.timeout_ms", "outside"),
        ("retry_first_seconds = 60", "retry_first_seconds = 0", "kdc.retry_first_seconds", "outside"),
        ("token = \"spnego\"", "token = \"ntlm\"", "config", "ntlm"),
        ("transport = \"udp\"", "transport = \"udp\"\nretries = 3", "config", "retries"),
        ("password_file = \"/etc/kcdscope/svc_awseg.password\"", "password_file = \"missing.password\"", "service_account.password_file", "/etc/kcdscope/missing.password"),
        ("password_file = \"/etc/kcdscope/svc_awseg.password\"", "password_file = \"empty.password\"", "service_account.password_file", "empty"),
        ("password_file = \"/etc/kcdscope/svc_awseg.password\"", "", "service_account", "no secret"),
        ("password_file = \"/etc/kcdscope/svc_awseg.password\"", "password_env = \"NOT_SET\"", "service_account.password_env", "NOT_SET"),
        ("# password_env = \"KCDSCOPE_SVC_PASSWORD\"", "password_env = \"KCD_PW\"", "service_account", "only one"),
        ("user = \"svc_awseg\"", "user = \"svc_awseg@OTHER.TEST\"", "service_account.user", "OTHER.TEST"),
        ("cache_size = 10000", "cache_size = 0", "kcd.cache_size", "outside"),
    ];
    for (from, to, key, words) in cases {
        assert!(EXAMPLE.contains(from), "example lacks {from}");
        let (k, p) = refused(&EXAMPLE.replacen(from, to, 1));
        assert_eq!(&k, key, "{to:?}: {p}");
        assert!(p.contains(words), "{to:?}: {p:?} should mention {words:?}");
    }
    let no_domain = EXAMPLE.split("[[domain]]").next().expect("head");
    assert_eq!(refused(no_domain).0, "domain");
}

#[test]
fn the_password_can_come_from_the_environment() {
    let text = EXAMPLE.replacen("password_file = \"/etc/kcdscope/svc_awseg.password\"", "password_env = \"KCD_PW\"", 1);
    match parse(&text).expect("parses").secret {
        Secret::Password(p) => assert_eq!(p.as_str(), "from-env"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn errors_map_to_findings_and_statuses() {
    use kcd_schema::{ErrorCode, KcdStep};
    let kdc = |step, code, fwd| KcdError::Kdc {
        step,
        kdc: "dc1".into(),
        code: ErrorCode(code),
        e_text: None,
        ntstatus: None,
        evidence_forwardable: fwd,
        user_not_delegated: None,
        other_users_delegated: false,
        clock_offset_seconds: None,
    };
    let c = |e: KcdError| (e.finding_id(), e.http_status());
    assert_eq!(c(kdc(KcdStep::Login, 24, None)), ("krb.password_wrong", 502));
    assert_eq!(c(kdc(KcdStep::S4u2self, 6, None)), ("krb.principal_unknown", 403));
    assert_eq!(c(kdc(KcdStep::S4u2self, 18, None)), ("krb.account_disabled", 403));
    assert_eq!(c(kdc(KcdStep::S4u2proxy, 7, Some(true))), ("krb.target_spn_unknown", 502));
    assert_eq!(c(kdc(KcdStep::S4u2proxy, 13, Some(false))), ("krb.s4u2proxy.protocol_transition_not_allowed", 502));
    assert_eq!(c(kdc(KcdStep::S4u2proxy, 13, Some(true))), ("krb.s4u2proxy.refused", 502));
    assert_eq!(c(kdc(KcdStep::Login, 37, None)), ("krb.clock_skew", 502));
    assert_eq!(c(KcdError::Unreachable { step: KcdStep::Login, attempts: vec![] }), ("krb.kdc.unreachable", 504));
    // An expired account is the user's problem (Samba and MIT: 1; Windows: 18 + NTSTATUS).
    assert_eq!(c(kdc(KcdStep::S4u2self, 1, None)), ("krb.account_expired", 403));
    let mut win = kdc(KcdStep::S4u2self, 18, None);
    if let KcdError::Kdc { ntstatus, .. } = &mut win {
        *ntstatus = Some(kcd_schema::NtStatus::STATUS_ACCOUNT_EXPIRED);
    }
    assert_eq!(c(win), ("krb.account_expired", 403));
    // A non-forwardable S4U2Self ticket: the user when the PAC or other users say so.
    let with = |not_delegated, others| match kdc(KcdStep::S4u2proxy, 13, Some(false)) {
        KcdError::Kdc { step, kdc, code, e_text, ntstatus, evidence_forwardable, clock_offset_seconds, .. } => KcdError::Kdc {
            step,
            kdc,
            code,
            e_text,
            ntstatus,
            evidence_forwardable,
            user_not_delegated: not_delegated,
            other_users_delegated: others,
            clock_offset_seconds,
        },
        other => other,
    };
    assert_eq!(c(with(Some(true), false)), ("krb.s4u2proxy.user_not_delegable", 403));
    assert_eq!(c(with(None, true)), ("krb.s4u2proxy.user_not_delegable", 403));
    assert_eq!(c(with(Some(false), false)), ("krb.s4u2proxy.protocol_transition_not_allowed", 502));
    // A domain controller whose name does not resolve is not an unreachable KDC.
    let unresolved = |u| kcd_client::Attempt { kdc: "dc9.lab.test".into(), what: "name does not resolve".into(), unresolved: u };
    assert_eq!(
        c(KcdError::Unreachable { step: KcdStep::Login, attempts: vec![unresolved(true)] }),
        ("krb.kdc.name_unresolved", 504)
    );
    assert_eq!(
        c(KcdError::Unreachable { step: KcdStep::Login, attempts: vec![unresolved(true), unresolved(false)] }),
        ("krb.kdc.unreachable", 504)
    );
    // A stale keytab is named with its version, in the wrong-password finding.
    let stale = KcdError::StaleKeytab { kdc: "dc1".into(), path: "/etc/svc.keytab".into(), kvno: 2, etype: 18 };
    assert_eq!(c(stale.clone()), ("krb.password_wrong", 502));
    assert!(stale.to_string().contains("keytab /etc/svc.keytab (kvno 2"), "{stale}");
    assert!(stale.fix(None).contains("key version 2"), "{}", stale.fix(None));
    // The unknown-SPN fix names the SPN refused, and keeps no placeholder.
    let spn = kdc(KcdStep::S4u2proxy, 7, Some(true));
    let fix = spn.fix(Some("HTTP/exchange.lab.test"));
    assert!(fix.contains("setspn -s HTTP/exchange.lab.test ACCOUNT") && !fix.contains('{'), "{fix}");
    // Every finding id the client gives is one the agent's catalogue explains.
    for e in [kdc(KcdStep::Login, 24, None), kdc(KcdStep::S4u2proxy, 13, Some(true))] {
        assert!(kcd_findings::catalogue::ALL.iter().any(|r| r.id == e.finding_id()));
    }
}

// The line given is the line of the mistake, for unknown keys (whose span starts the line)
// as for bad values (whose span starts mid-line); counted here from the text itself.
#[test]
fn refusals_name_the_line_of_the_mistake() {
    let line_of = |text: &str, needle: &str| {
        text.lines().position(|l| l.contains(needle)).map(|i| i + 1).expect("needle in text")
    };
    let unknown = EXAMPLE.replacen("transport = \"udp\"", "transport = \"udp\"\nretries = 3", 1);
    let (_, p) = refused(&unknown);
    assert!(p.contains(&format!("(line {})", line_of(&unknown, "retries = 3"))), "{p}");
    let value = EXAMPLE.replacen("token = \"spnego\"", "token = \"ntlm\"", 1);
    let (_, p) = refused(&value);
    assert!(p.contains(&format!("(line {})", line_of(&value, "token = \"ntlm\""))), "{p}");
}

#[test]
fn a_user_realm_is_the_configured_realm_its_upn_suffix_names() {
    let text = EXAMPLE.to_string() + "\n[[domain]]\nrealm = \"OTHER.TEST\"\ndomain_controllers = [\"dc1.other.test\"]\n";
    let c = parse(&text).expect("two domains parse");
    assert_eq!(c.user_realm("dave@other.test"), "OTHER.TEST");
    assert_eq!(c.user_realm("dave@OTHER.test"), "OTHER.TEST");
    assert_eq!(c.user_realm("alice@lab.test"), "LAB.TEST");
    // A suffix that is no configured realm (an alternate UPN suffix): the service's realm,
    // whose KDC resolves the enterprise name.
    assert_eq!(c.user_realm("alice@corp.example"), "LAB.TEST");
    assert_eq!(c.user_realm("alice"), "LAB.TEST");
}

#[test]
fn no_trust_is_named_with_its_fix_and_a_502() {
    let e = KcdError::NoTrust {
        kdc: "dc1.lab.test".into(),
        service_realm: "LAB.TEST".into(),
        user_realm: "OTHER.TEST".into(),
        code: kcd_schema::ErrorCode(7),
    };
    assert_eq!(e.finding_id(), "krb.cross_realm.no_trust");
    assert_eq!(e.http_status(), 502);
    assert!(e.to_string().contains("krbtgt/OTHER.TEST@LAB.TEST"), "{e}");
    assert!(e.fix(None).contains("Create the trust"));
}
