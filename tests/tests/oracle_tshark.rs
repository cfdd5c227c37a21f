//! kcdscope and tshark read every capture under captures/ the same way (see
//! kcd_tests::oracle for what is compared and the listed exceptions).

use std::collections::BTreeMap;

use kcd_tests::oracle::compare_file;
use kcd_tests::{captures, require_tshark};

#[test]
fn kcdscope_and_tshark_agree_on_every_captured_message() {
    require_tshark();
    let files = captures("krb5");
    assert!(
        files.len() >= 40,
        "expected the bundled captures, found {}",
        files.len()
    );
    let mut compared = 0usize;
    let mut problems: Vec<String> = Vec::new();
    let mut per_type: BTreeMap<String, usize> = BTreeMap::new();
    let mut excused: BTreeMap<&'static str, usize> = BTreeMap::new();
    for f in &files {
        let c = compare_file(f);
        compared += c.compared;
        problems.extend(c.problems);
        for (t, n) in c.per_type {
            *per_type.entry(t).or_default() += n;
        }
        for (w, n) in c.excused {
            *excused.entry(w).or_default() += n;
        }
    }
    eprintln!(
        "compared {compared} messages ({} fields) in {} files: {per_type:?}",
        compared * 12,
        files.len()
    );
    for (why, n) in &excused {
        eprintln!("excused {n} differences: {why}");
    }
    assert!(compared >= 300, "too few messages compared: {compared}");
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
