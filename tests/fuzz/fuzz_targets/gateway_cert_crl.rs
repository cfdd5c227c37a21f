//! The gateway's certificate and CRL decisions from arbitrary bytes: the CRL verified
//! against the fixture PKI's CAs and indexed, a certificate checked against that index,
//! its EKU policy and the mapping to a user in every mode. A user that comes out is
//! name@domain without control characters; nothing panics.
#![no_main]
use std::collections::HashMap;
use std::sync::Arc;

use kcd_cert::CertInfo;
use kcd_gateway::crl::{verify_crl, Snapshot, UrlState};
use kcd_gateway::identity::{check_eku, map_user, MapFrom, Mapping};
use libfuzzer_sys::fuzz_target;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

fn cas() -> Vec<CertInfo> {
    let pem = include_bytes!("../../../agent/cert/tests/pki/chain.pem");
    CertificateDer::pem_slice_iter(pem).filter_map(|c| c.ok()).filter_map(|c| CertInfo::parse(&c).ok()).collect()
}

fuzz_target!(|data: &[u8]| {
    let cas = cas();
    let provider = kcd_gateway::provider();
    let algs = provider.signature_verification_algorithms.all;
    let split = data.first().map_or(0, |b| *b as usize).min(data.len().saturating_sub(1));
    let (a, b) = data.split_at(split.min(data.len()));
    let url = "http://crl.lab.test/issuing.crl";
    let mut snap = Snapshot { urls: HashMap::new() };
    for part in [a, b, data] {
        if let Ok(v) = verify_crl(&kcd_cert::crl_der(part), url, &cas, algs, 1_800_000_000) {
            snap.urls.insert(url.to_string(), Arc::new(UrlState { good: Some(Arc::new(v)), error: None, failures: 0 }));
        }
    }
    for part in [a, b, data] {
        let Ok(cert) = CertInfo::parse(part) else { continue };
        let others: Vec<&CertInfo> = cas.iter().collect();
        let _ = snap.check_chain(&cert, &others, 1_800_000_000);
        let _ = check_eku(&cert, false);
        let _ = check_eku(&cert, true);
        for from in [MapFrom::Upn, MapFrom::Email, MapFrom::SubjectCn] {
            let m = Mapping { from, rewrites: vec![("corp.example".into(), "lab.test".into())], allow_no_eku: false };
            if let Ok(u) = map_user(&cert, &m, &["LAB.TEST".to_string()]) {
                let (user, domain) = u.upn.split_once('@').expect("name@domain");
                assert!(!user.is_empty() && !domain.is_empty() && !domain.contains('@'));
                assert!(!u.upn.chars().any(|c| c.is_control()), "{:?}", u.upn);
            }
        }
    }
});
