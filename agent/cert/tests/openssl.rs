//! The parser against the fixture PKI (tests/pki, made by tests/lab/gateway-pki.sh with
//! openssl) and against what openssl itself printed for it (tests/pki/openssl-facts.txt).

use kcd_cert::{pem_blocks, CertInfo, CrlInfo, OID_CLIENT_AUTH, OID_SERVER_AUTH};

fn pki(p: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/pki/{p}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

fn cert(name: &str) -> CertInfo {
    let path = if ["root", "issuing", "other-root"].contains(&name) { format!("{name}.pem") } else { format!("dev/{name}.pem") };
    let der = pem_blocks(&pki(&path), "CERTIFICATE").expect("pem").remove(0);
    CertInfo::parse(&der).expect(name)
}

fn crl(name: &str) -> CrlInfo {
    CrlInfo::parse(&pki(&format!("crl/{name}.crl"))).expect(name)
}

#[test]
fn serials_fingerprints_and_dates_as_openssl_prints_them() {
    let facts = String::from_utf8(pki("openssl-facts.txt")).expect("utf8");
    let mut n = 0;
    for line in facts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["cert", name, serial, fp, not_after] => {
                let c = cert(name);
                assert_eq!(c.serial_hex(), *serial, "{name}");
                assert_eq!(c.fingerprint_hex(), *fp, "{name}");
                assert_eq!(c.not_after.to_string(), *not_after, "{name}");
                n += 1;
            }
            ["crl", name, number, next] => {
                let c = crl(name);
                let want = u128::from_str_radix(number.trim_start_matches("0x"), 16).expect("hex");
                assert_eq!(c.number, Some(want), "{name}");
                assert_eq!(c.next_update.map(|t| t.to_string()).as_deref(), Some(*next), "{name}");
                n += 1;
            }
            _ => panic!("bad fact line {line:?}"),
        }
    }
    assert!(n >= 20);
}

#[test]
fn names_and_extensions_of_the_device_certificates() {
    let a = cert("alice");
    assert_eq!(a.upns, ["alice@lab.test"]);
    assert_eq!(a.emails, ["alice@lab.test"]);
    assert_eq!(a.subject_cn.as_deref(), Some("alice"));
    assert_eq!(a.subject, "CN=alice");
    assert_eq!(a.issuer, "CN=Lab Issuing CA");
    assert_eq!(a.client_auth(), Some(true));
    assert_eq!(a.crl_urls.len(), 2);
    assert!(a.crl_urls[0].starts_with("ldap:///"));
    assert_eq!(a.crl_urls[1], "http://crl.lab.test/pki/issuing.crl");
    assert_eq!(a.delta_urls, ["http://crl.lab.test/pki/issuing+.crl"]);
    assert!(!a.is_ca);
    let issuing = cert("issuing");
    assert!(issuing.is_ca);
    assert_eq!(a.authority_key_id, issuing.subject_key_id);
    assert_eq!(a.issuer_der, issuing.subject_der);

    assert_eq!(cert("twoupn").upns, ["alice@lab.test", "bob@lab.test"]);
    assert!(cert("noupn").upns.is_empty());
    assert_eq!(cert("altsuffix").upns, ["alice@corp.example"]);
    let s = cert("serverauth");
    assert_eq!(s.eku.as_deref(), Some(&[OID_SERVER_AUTH.to_string()][..]));
    assert_eq!(s.client_auth(), Some(false));
    assert_eq!(cert("noeku").client_auth(), None);
    assert!(cert("ldaponly").crl_urls.iter().all(|u| u.starts_with("ldap:")));
    assert!(cert("bob").eku.as_ref().is_some_and(|e| e.iter().any(|o| o == OID_CLIENT_AUTH)));
}

#[test]
fn base_and_delta_crls() {
    let base = crl("issuing");
    let delta = crl("issuing+");
    let issuing = cert("issuing");
    assert!(!base.is_delta());
    assert_eq!(delta.delta_base, base.number);
    assert!(delta.number > base.number);
    assert_eq!(base.issuer_der, issuing.subject_der);
    assert_eq!(base.authority_key_id, issuing.subject_key_id);
    let serial = |n: &str| cert(n).serial;
    let has = |c: &CrlInfo, n: &str| c.entries.iter().any(|e| e.serial == serial(n) && !e.remove_from_crl);
    assert!(has(&base, "bob") && has(&base, "dave") && !has(&base, "carol"));
    assert!(has(&delta, "carol"));
    assert!(delta.entries.iter().any(|e| e.serial == serial("dave") && e.remove_from_crl));
    // The signed part is exactly what the signature covers: a prefix of the file after the
    // outer header.
    let raw = pki("crl/issuing.crl");
    assert!(raw.windows(base.tbs.len()).any(|w| w == base.tbs.as_slice()));
    assert!(crl("root").entries.is_empty());
}

#[test]
fn damaged_inputs_are_errors_not_panics() {
    // Every byte of a certificate and of a delta CRL flipped, and every truncation.
    for file in ["dev/alice.pem", "dev/twoupn.pem"] {
        let der = pem_blocks(&pki(file), "CERTIFICATE").expect("pem").remove(0);
        for i in 0..der.len() {
            let mut d = der.clone();
            d[i] ^= 0xff;
            let _ = CertInfo::parse(&d);
            let _ = CertInfo::parse(&der[..i]);
        }
    }
    let crl = pki("crl/issuing+.crl");
    for i in 0..crl.len() {
        let mut d = crl.clone();
        d[i] ^= 0xff;
        let _ = CrlInfo::parse(&d);
        let _ = CrlInfo::parse(&crl[..i]);
    }
    assert!(pem_blocks(b"-----BEGIN CERTIFICATE-----\nnot base64", "CERTIFICATE").is_err());
    assert!(pem_blocks("-----BEGIN CERTIFICATE-----\n\u{e9}\n-----END CERTIFICATE-----".as_bytes(), "CERTIFICATE").is_err());
}

/// SHA-1 thumbprints and key sizes as openssl itself prints them, run on every fixture.
#[test]
fn sha1_and_key_size_as_openssl_prints_them() {
    let dir = format!("{}/tests/pki", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for name in ["alice", "bob", "expired", "ldaponly", "noeku", "noupn", "serverauth", "root", "issuing", "other-root"] {
        let path = if ["root", "issuing", "other-root"].contains(&name) { format!("{dir}/{name}.pem") } else { format!("{dir}/dev/{name}.pem") };
        let Ok(out) = std::process::Command::new("openssl").args(["x509", "-noout", "-text", "-fingerprint", "-sha1", "-in", &path]).output() else {
            eprintln!("openssl not installed: skipped");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let sha1 = text.lines().find_map(|l| l.strip_prefix("sha1 Fingerprint=")).expect("fingerprint").replace(':', "");
        let bits: u32 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Public-Key: ("))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|b| b.parse().ok())
            .expect("key size");
        let c = cert(name);
        assert_eq!(c.sha1_hex(), sha1, "{name}");
        assert_eq!(c.key_bits, Some(bits), "{name}");
        let ty = if text.contains("id-ecPublicKey") { "ec" } else { "rsa" };
        assert_eq!(c.key_type, ty, "{name}");
        n += 1;
    }
    assert_eq!(n, 10);
}
