//! The correlator on arbitrary event sequences (kcd-tests' synth: 12 bytes per event).
//! Nothing may panic; tables stay within their caps.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = kcd_correlate::Config {
        max_outstanding: 8,
        max_principals: 4,
        max_clients: 2,
        max_kdcs: 2,
        max_tickets: 2,
        max_findings: 6,
        ..Default::default()
    };
    let mut c = kcd_correlate::Correlator::new(cfg);
    for e in kcd_tests::synth::events_from_bytes(data) {
        c.event(&e);
    }
    c.finish();
    assert!(c.principals().len() <= 4 && c.clients().len() <= 2 && c.kdcs().len() <= 2);
    let _ = c.findings();
});
