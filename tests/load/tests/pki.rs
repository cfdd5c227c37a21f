//! The benchmark's PKI as openssl reads it: the device certificates chain to the CA, carry
//! the UPN and the CDP asked for, and the CRL holds the number of entries asked for. (This
//! test also makes `cargo test --workspace` build kcd-load, which the KDC fail-over lab runs.)

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

fn openssl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is needed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn devices_chain_to_the_ca_with_their_upn_and_the_crl_has_its_entries() {
    let dir = std::env::temp_dir().join(format!("kcd-load-pki-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let st = Command::new(env!("CARGO_BIN_EXE_kcd-load"))
        .args(["pki", "--dir", dir.to_str().unwrap(), "--devices", "3", "--crl-entries", "10", "--cdp", "http://crl.lab.test/load.crl"])
        .status()
        .unwrap();
    assert!(st.success());
    // The first device: its certificate is the first PEM block of devices.pem.
    let first = openssl(&["x509", "-in", "devices.pem"], &dir);
    std::fs::write(dir.join("first.pem"), first).unwrap();
    assert!(openssl(&["verify", "-CAfile", "ca.pem", "first.pem"], &dir).contains("first.pem: OK"));
    let text = openssl(&["x509", "-in", "first.pem", "-noout", "-text"], &dir);
    assert!(text.contains("loaduser0@lab.test"), "{text}");
    assert!(text.contains("URI:http://crl.lab.test/load.crl"), "{text}");
    let crl = openssl(&["crl", "-in", "crl.der", "-inform", "DER", "-noout", "-text"], &dir);
    assert_eq!(crl.matches("Serial Number:").count(), 10, "{crl}");
    let _ = std::fs::remove_dir_all(&dir);
}
