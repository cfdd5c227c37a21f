//! The gateway's decisions on the openssl-made fixture PKI (agent/cert/tests/pki, from
//! tests/lab/gateway-pki.sh): certificate policy and mapping, CRL verification and the
//! base ∪ delta − removeFromCRL rule, configuration errors by key and line.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use kcd_cert::{pem_blocks, CertInfo};
use kcd_gateway::config::{key_line, GatewayConfig};
use kcd_gateway::crl::{accept_newer, verify_crl, Snapshot, UrlState, VerifiedCrl};
use kcd_gateway::identity::{check_eku, map_user, MapFrom, Mapping};
use kcd_gateway::reason::Reason;

const BASE: &str = "http://crl.lab.test/pki/issuing.crl";
const DELTA: &str = "http://crl.lab.test/pki/issuing+.crl";
const ROOT: &str = "http://crl.lab.test/pki/root.crl";
/// The fixture CRLs' thisUpdate is 2026-12-05; they are valid for 7 days.
const NOW: i64 = 1_796_500_000;

fn pki(p: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../../agent/cert/tests/pki/{p}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

fn cert(name: &str) -> CertInfo {
    let path = if ["root", "issuing", "other-root"].contains(&name) { format!("{name}.pem") } else { format!("dev/{name}.pem") };
    CertInfo::parse(&pem_blocks(&pki(&path), "CERTIFICATE").expect("pem").remove(0)).expect(name)
}

fn algs() -> Vec<&'static dyn rustls::pki_types::SignatureVerificationAlgorithm> {
    kcd_gateway::provider().signature_verification_algorithms.all.to_vec()
}

fn cas() -> Vec<CertInfo> {
    vec![cert("issuing"), cert("root")]
}

fn verified(file: &str, url: &str) -> VerifiedCrl {
    verify_crl(&pki(&format!("crl/{file}")), url, &cas(), &algs(), NOW).expect(file)
}

fn snapshot(entries: &[(&str, Option<VerifiedCrl>)]) -> Snapshot {
    let mut urls = HashMap::new();
    for (u, c) in entries {
        urls.insert(u.to_string(), Arc::new(UrlState { good: c.clone().map(Arc::new), error: None, failures: 0 }));
    }
    Snapshot { urls }
}

fn full() -> Snapshot {
    snapshot(&[
        (BASE, Some(verified("issuing.crl", BASE))),
        (DELTA, Some(verified("issuing+.crl", DELTA))),
        (ROOT, Some(verified("root.crl", ROOT))),
    ])
}

fn reason(s: &Snapshot, name: &str, now: i64) -> Option<Reason> {
    let (issuing, root) = (cert("issuing"), cert("root"));
    s.check_chain(&cert(name), &[&issuing, &root], now).err().map(|r| r.reason)
}

#[test]
fn base_union_delta_minus_remove_from_crl() {
    let s = full();
    assert_eq!(reason(&s, "alice", NOW), None);
    assert_eq!(reason(&s, "bob", NOW), Some(Reason::Revoked), "revoked in the base");
    assert_eq!(reason(&s, "carol", NOW), Some(Reason::Revoked), "revoked only in the delta");
    assert_eq!(reason(&s, "dave", NOW), None, "on hold in the base, removeFromCRL in the delta");
    let ok = s.check_chain(&cert("alice"), &[&cert("issuing"), &cert("root")], NOW).expect("alice");
    assert_eq!(ok.source, BASE);
    assert_eq!(ok.delta.as_deref(), Some(DELTA));
    assert_eq!(ok.crl_number, Some(4));
    // Without the delta, carol passes the base and dave is still on hold: the delta is
    // required when the certificate names one.
    let no_delta = snapshot(&[(BASE, Some(verified("issuing.crl", BASE))), (ROOT, Some(verified("root.crl", ROOT)))]);
    assert_eq!(reason(&no_delta, "carol", NOW), Some(Reason::CrlMissing));
}

#[test]
fn crl_refusals_by_reason() {
    assert_eq!(reason(&full(), "ldaponly", NOW), Some(Reason::CdpLdapOnly));
    assert_eq!(reason(&full(), "alice", NOW + 8 * 86_400), Some(Reason::CrlExpired));
    // The issuing CA's own revocation is looked up in the root's CRL: the whole chain.
    let no_root = snapshot(&[(BASE, Some(verified("issuing.crl", BASE))), (DELTA, Some(verified("issuing+.crl", DELTA)))]);
    assert_eq!(reason(&no_root, "alice", NOW), Some(Reason::CrlMissing));
    // The root's CRL published where the issuing CA's belongs.
    let swapped = snapshot(&[
        (BASE, Some(verified("root.crl", BASE))),
        (DELTA, Some(verified("issuing+.crl", DELTA))),
        (ROOT, Some(verified("root.crl", ROOT))),
    ]);
    assert_eq!(reason(&swapped, "alice", NOW), Some(Reason::CrlWrongIssuer));
    // A delta where a base belongs.
    let delta_as_base = snapshot(&[(BASE, Some(verified("issuing+.crl", BASE))), (ROOT, Some(verified("root.crl", ROOT)))]);
    assert_eq!(reason(&delta_as_base, "alice", NOW), Some(Reason::CrlBaseMismatch));
    // A fetch failure is reported as such when nothing good is held...
    let mut s = full();
    s.urls.insert(
        DELTA.into(),
        Arc::new(UrlState { good: None, error: Some(kcd_gateway::crl::Refusal::new(Reason::CrlDeltaBlocked, "404")), failures: 1 }),
    );
    assert_eq!(reason(&s, "alice", NOW), Some(Reason::CrlDeltaBlocked));
    // ...and the last good CRL is served until it expires when a later fetch fails.
    let mut s = full();
    let good = s.urls[BASE].good.clone();
    s.urls.insert(
        BASE.into(),
        Arc::new(UrlState { good, error: Some(kcd_gateway::crl::Refusal::new(Reason::CrlUnreachable, "timeout")), failures: 3 }),
    );
    assert_eq!(reason(&s, "alice", NOW), None);
}

#[test]
fn signatures_are_verified_against_name_and_key() {
    let raw = pki("crl/issuing.crl");
    // A flipped bit in the signed part, and one in the signature.
    let mut tampered = raw.clone();
    let pos = raw.windows(3).position(|w| w == [0x02, 0x08, 0x3e]).expect("a serial in the CRL");
    tampered[pos + 4] ^= 1;
    let e = verify_crl(&tampered, BASE, &cas(), &algs(), NOW).expect_err("tampered");
    assert_eq!(e.reason, Reason::CrlBadSignature);
    let mut sig = raw.clone();
    let last = sig.len() - 3;
    sig[last] ^= 0x40;
    assert_eq!(verify_crl(&sig, BASE, &cas(), &algs(), NOW).expect_err("signature").reason, Reason::CrlBadSignature);
    // The other root's CRL: an issuer that is not in the chain.
    let e = verify_crl(&pki("crl/other-root.crl"), BASE, &cas(), &algs(), NOW).expect_err("other");
    assert_eq!(e.reason, Reason::CrlWrongIssuer);
    // The issuing CA's CRL when the chain holds a CA of the same name with another key.
    let mut renewed = cert("issuing");
    renewed.subject_key_id = Some(vec![1, 2, 3]);
    let e = verify_crl(&raw, BASE, &[renewed, cert("root")], &algs(), NOW).expect_err("key");
    assert_eq!(e.reason, Reason::CrlWrongIssuer);
    // CRL numbers only go forward.
    let newer = verified("issuing+.crl", DELTA);
    let older = verified("issuing.crl", BASE);
    assert_eq!(accept_newer(Some(&newer), older).expect_err("older").reason, Reason::CrlNumberRegressed);
    // Refreshed a tenth of the lifetime before nextUpdate.
    let b = verified("issuing.crl", BASE);
    assert_eq!(b.refresh_at(), Some(b.next_update.expect("next") - (7 * 86_400) / 10));
}

fn mapping(from: MapFrom) -> Mapping {
    Mapping { from, rewrites: vec![("corp.example".into(), "lab.test".into())], allow_no_eku: false }
}

#[test]
fn certificates_to_users() {
    let realms = vec!["LAB.TEST".to_string(), "OTHER.TEST".to_string()];
    let u = map_user(&cert("alice"), &mapping(MapFrom::Upn), &realms).expect("alice");
    assert_eq!((u.upn.as_str(), u.realm.as_str()), ("alice@lab.test", "LAB.TEST"));
    let u = map_user(&cert("altsuffix"), &mapping(MapFrom::Upn), &realms).expect("alt");
    assert_eq!((u.upn.as_str(), u.certificate_name.as_str()), ("alice@lab.test", "alice@corp.example"));
    let u = map_user(&cert("altsuffix"), &Mapping { rewrites: vec![], ..mapping(MapFrom::Upn) }, &realms).expect("alt");
    assert_eq!((u.upn.as_str(), u.realm.as_str()), ("alice@corp.example", "LAB.TEST"));
    assert_eq!(map_user(&cert("twoupn"), &mapping(MapFrom::Upn), &realms).expect_err("two").reason, Reason::TwoUpns);
    assert_eq!(map_user(&cert("noupn"), &mapping(MapFrom::Upn), &realms).expect_err("none").reason, Reason::NoUpn);
    let u = map_user(&cert("noupn"), &mapping(MapFrom::Email), &realms).expect("email");
    assert_eq!(u.upn, "alice@lab.test");
    assert_eq!(map_user(&cert("bob"), &mapping(MapFrom::Email), &realms).expect_err("no mail").reason, Reason::NoUpn);
    // subject_cn: the fixtures' CNs are bare names, not UPNs.
    assert_eq!(map_user(&cert("alice"), &mapping(MapFrom::SubjectCn), &realms).expect_err("cn").reason, Reason::NoUpn);

    assert!(check_eku(&cert("alice"), false).is_ok());
    assert_eq!(check_eku(&cert("serverauth"), true).expect_err("eku").reason, Reason::BadEku);
    assert_eq!(check_eku(&cert("noeku"), false).expect_err("no eku").reason, Reason::BadEku);
    assert!(check_eku(&cert("noeku"), true).is_ok());
}

fn files() -> HashMap<String, Vec<u8>> {
    let mut m = HashMap::new();
    m.insert("/c/gw.pem".to_string(), pki("dev/alice.pem"));
    m.insert("/c/gw.key".to_string(), pki("dev/alice.key"));
    m.insert("/c/chain.pem".to_string(), pki("chain.pem"));
    m.insert("/c/pw".to_string(), b"hunter2-pw\n".to_vec());
    m
}

const GOOD: &str = r#"
[listen]
address = "127.0.0.1:8443"
certificate = "gw.pem"
key = "gw.key"

[client_certificates]
chain = "chain.pem"

[exchange]
url = "http://exchange.lab.test"

[service_account]
user = "svc_awseg"
password_file = "pw"

[kcd]
target_spn = "HTTP/exchange.lab.test"

[[domain]]
realm = "LAB.TEST"
domain_controllers = ["10.89.0.2"]
"#;

fn parse(text: &str) -> Result<GatewayConfig, kcd_gateway::config::ConfigError> {
    let f = files();
    GatewayConfig::parse(
        text,
        Path::new("/c"),
        &move |p| f.get(p.to_str().unwrap_or("")).cloned().ok_or_else(|| std::io::Error::other("no such file")),
        &|_| None,
    )
}

#[test]
fn configuration_errors_name_key_and_line() {
    let c = parse(GOOD).expect("good");
    assert_eq!(c.anchor_info.len(), 2);
    assert_eq!(c.limits.body_bytes, 10 << 20);
    assert_eq!(c.exchange.authority, "exchange.lab.test:80");
    assert!(!format!("{c:?}").contains("hunter2"), "no password in Debug output");

    let e = parse(&GOOD.replace("[exchange]", "[exchange]\ncolour = \"red\"")).expect_err("unknown");
    assert!(e.problem.contains("colour"), "{e}");
    assert_eq!(e.line, Some(11), "{e}");
    let e = parse(&GOOD.replace("127.0.0.1:8443", "localhost")).expect_err("address");
    assert_eq!((e.key.as_str(), e.line), ("listen.address", Some(3)));
    let e = parse(&GOOD.replace("[client_certificates]\n", "[client_certificates]\nrequired = false\n")).expect_err("required");
    assert_eq!((e.key.as_str(), e.line), ("client_certificates.required", Some(8)));
    assert!(e.to_string().contains("not supported"), "{e}");
    let e = parse(&GOOD.replace("http://exchange", "https://exchange")).expect_err("ca");
    assert_eq!(e.key, "exchange.ca");
    // kcd-client's own checks, with the line of the whole file.
    let e = parse(&GOOD.replace("realm = \"LAB.TEST\"", "realm = \"lab.test\"")).expect_err("realm");
    assert_eq!((e.key.as_str(), e.line), ("domain[0].realm", Some(21)), "{e}");
    let e = parse(&GOOD.replace("target_spn = \"HTTP/exchange.lab.test\"", "target_spn = 5")).expect_err("type");
    assert!(e.to_string().contains("(line 18)"), "{e}");
    assert_eq!(key_line(GOOD, "exchange"), Some(10));
    assert_eq!(key_line("[[domain]]\nrealm='A'\n[[domain]]\nrealm='B'\n", "domain[1].realm"), Some(4));
    // The first fetch of a CDP: waited for one fetch timeout and a second by default;
    // zero turns the wait off; more than a minute is refused.
    assert_eq!(c.crl.first_fetch_wait, std::time::Duration::from_millis(c.crl.fetch_timeout.as_millis() as u64 + 1000));
    let text = if GOOD.contains("[crl]\n") { GOOD.replace("[crl]\n", "[crl]\nfirst_fetch_wait_ms = 0\n") } else { format!("{GOOD}\n[crl]\nfirst_fetch_wait_ms = 0\n") };
    assert!(parse(&text).expect("zero").crl.first_fetch_wait.is_zero());
    let e = parse(&text.replace("first_fetch_wait_ms = 0", "first_fetch_wait_ms = 60001")).expect_err("too long");
    assert_eq!(e.key, "crl.first_fetch_wait_ms", "{e}");
    assert!(e.line.is_some(), "{e}");
    // Exchange's response head: one page by default, a setting within 1 KiB..64 KiB.
    assert_eq!(c.exchange.response_head_bytes, 4096);
    let head = |n: &str| parse(&GOOD.replace("[exchange]", &format!("[exchange]\nresponse_head_bytes = {n}")));
    assert_eq!(head("16384").expect("16 KiB").exchange.response_head_bytes, 16384);
    for n in ["512", "65537"] {
        assert_eq!(head(n).expect_err(n).key, "exchange.response_head_bytes");
    }
    // The example parses as far as its files (which do not exist here).
    let e = parse(kcd_gateway::config::EXAMPLE).expect_err("files");
    assert!(e.problem.contains("svc_awseg.password") || e.key.starts_with("listen"), "{e}");
}

#[test]
fn cdp_urls_of_any_text() {
    assert!(kcd_gateway::crl::is_http("http://crl.lab.test/x.crl"));
    assert!(kcd_gateway::crl::is_http("HTTP://crl.lab.test/x.crl"));
    for u in ["ldap:///CN=x", "https://x/y.crl", "http://", "h\u{e9}\u{e9}\u{e9}\u{e9}", "", "\u{1F600}\u{1F600}x"] {
        assert!(!kcd_gateway::crl::is_http(u), "{u:?}");
    }
}
