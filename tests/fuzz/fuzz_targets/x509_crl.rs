//! Certificates, CRLs and Negotiate tokens from arbitrary bytes: the certificate parser and
//! the device checks, the CRL parser (DER and PEM), the Authorization classifier and the
//! ClientHello sniffer. Nothing may panic; what they produce serialises; no credential
//! byte sequence is echoed into the Authorization summary.
#![no_main]
use base64::Engine as _;
use kcd_schema::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let x = kcd_decode::x509::certificate(data, Timestamp(1_800_000_000_000_000_000), true);
    let _ = serde_json::to_vec(&x).expect("serialises");
    let _ = kcd_cert::CrlInfo::parse(&kcd_cert::crl_der(data));
    let _ = kcd_decode::tls::looks_like_client_hello(data);
    let _ = kcd_krb5::gss::classify(data);
    let token = base64::engine::general_purpose::STANDARD.encode(data);
    for scheme in ["Negotiate", "NTLM", "Basic", "Kerberos"] {
        let a = kcd_decode::http::authorization(&format!("{scheme} {token}"));
        let j = serde_json::to_string(&a).expect("serialises");
        assert!(token.len() < 16 || !j.contains(&token));
    }
    let _ = kcd_decode::eas::parse(&String::from_utf8_lossy(data));
});
