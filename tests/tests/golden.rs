//! Golden NDJSON for every capture under captures/: the complete output (messages,
//! anomalies, then findings), one snapshot per file, so that any change in what kcdscope
//! reports shows up in review. The output is
//! deterministic (nothing volatile to scrub); the fields tshark can also read are checked
//! against tshark independently in oracle_tshark.rs, and the findings against each
//! scenario's expected set in scenarios.rs.

use kcd_decode::Config;
use kcd_tests::{captures, rel, replay_diagnosed};

#[test]
fn ndjson_of_every_capture() {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    let _guard = settings.bind_to_scope();
    for f in captures("krb5") {
        let name = rel(&f);
        let (out, _) = replay_diagnosed(std::slice::from_ref(&f), Config::default(), Default::default());
        let key = name
            .trim_start_matches("captures/")
            .trim_end_matches(".pcap")
            .replace('/', "__");
        insta::assert_snapshot!(key, String::from_utf8_lossy(&out));
    }
}
