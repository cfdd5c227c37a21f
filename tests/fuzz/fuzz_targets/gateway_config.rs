//! The gateway's configuration parser from arbitrary text: every file it reads is the
//! fixture PKI's certificate, so the checks past the TOML run too. An error names a key,
//! and a line within the text; nothing panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

const PEM: &[u8] = include_bytes!("../../../agent/cert/tests/pki/chain.pem");
const KEY: &[u8] = include_bytes!("../../../agent/cert/tests/pki/dev/alice.key");

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let read = |p: &std::path::Path| -> std::io::Result<Vec<u8>> {
        let s = p.to_string_lossy();
        if s.ends_with(".key") {
            Ok(KEY.to_vec())
        } else if s.ends_with(".password") {
            Ok(b"pw\n".to_vec())
        } else {
            Ok(PEM.to_vec())
        }
    };
    match kcd_gateway::config::GatewayConfig::parse(text, std::path::Path::new("/etc/kcdscope"), &read, &|_| None) {
        Ok(c) => {
            let _ = c.realms();
        }
        Err(e) => {
            assert!(!e.key.is_empty());
            if let Some(l) = e.line {
                assert!(l >= 1 && l <= text.lines().count().max(1), "line {l} of {}", text.lines().count());
            }
        }
    }
    for key in ["listen.address", "domain[1].realm", "exchange", "limits.body_bytes"] {
        let _ = kcd_gateway::config::key_line(text, key);
    }
});
