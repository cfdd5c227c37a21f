//! The labs record their cases again against real KDCs (tests/lab/*.sh): an MIT KDC and a
//! Samba AD DC with Apache. The lab's own checks (client traces, exit codes, KDC logs) must
//! pass; then kcdscope must read every fresh capture with the same message flow as the
//! committed one in captures/, and agree with tshark on it field by field.
//!
//! They need root (network namespaces, daemons on port 88): `tests/run` runs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use kcd_tests::oracle::compare_file;
use kcd_tests::{
    captures, captures_in, flow_signature, rel, replay_json, repo_root, require_tshark,
};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kcd-lab-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn lab(args: &[&Path]) {
    let script = args[0];
    let st = Command::new("bash").args(args).status().expect("bash runs");
    assert!(st.success(), "{} failed", script.display());
}

/// The lab's own verdicts: one "PASS ..." or "FAIL ..." line per fact it checked.
fn no_failed_checks(out: &Path) {
    let checks = std::fs::read_to_string(out.join("CHECKS.txt")).expect("CHECKS.txt");
    let failed: Vec<&str> = checks.lines().filter(|l| l.starts_with("FAIL")).collect();
    let passed = checks.lines().filter(|l| l.starts_with("PASS")).count();
    assert!(
        passed > 20 && failed.is_empty(),
        "{passed} passed, failed:\n{}",
        failed.join("\n")
    );
}

fn same_flows(fresh_dir: &Path, committed: &str) {
    let fresh = captures_in(fresh_dir);
    // Only the folder's own files (samba-lab/nofast/ holds the FAST-off variants).
    let top = repo_root().join("captures").join(committed);
    let old: Vec<PathBuf> = captures(committed)
        .into_iter()
        .filter(|c| c.parent() == Some(top.as_path()))
        .collect();
    assert!(
        !old.is_empty(),
        "nothing committed under captures/{committed}"
    );
    let mut problems = Vec::new();
    for c in &old {
        let Some(name) = c.file_name() else { continue };
        let Some(f) = fresh.iter().find(|f| f.file_name() == Some(name)) else {
            problems.push(format!("{}: not recorded again", rel(c)));
            continue;
        };
        let (a, _) = replay_json(std::slice::from_ref(c), kcd_decode::Config::default());
        let (b, _) = replay_json(std::slice::from_ref(f), kcd_decode::Config::default());
        if flow_signature(&a) != flow_signature(&b) {
            problems.push(format!(
                "{}: committed {} / fresh {}",
                rel(c),
                flow_signature(&a),
                flow_signature(&b)
            ));
        }
        problems.extend(compare_file(f).problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
#[ignore = "needs root and network namespaces; tests/run runs it"]
fn mit_lab_records_what_the_committed_captures_show() {
    require_tshark();
    let out = scratch("mit");
    lab(&[
        &repo_root().join("tests/lab/mit-kdc.sh"),
        Path::new("record"),
        &out,
    ]);
    no_failed_checks(&out);
    same_flows(&out, "krb5/mit-lab");
}

#[test]
#[ignore = "needs root and network namespaces; tests/run runs it"]
fn samba_lab_records_what_the_committed_captures_show() {
    require_tshark();
    let dir = scratch("samba");
    let out = dir.join("out");
    let script = repo_root().join("tests/lab/samba-ad.sh");
    lab(&[&script, Path::new("up"), &dir.join("lab")]);
    let rec = Command::new("bash")
        .arg(&script)
        .arg("record")
        .arg(dir.join("lab"))
        .arg(&out)
        .status();
    lab(&[&script, Path::new("down"), &dir.join("lab")]);
    assert!(
        rec.expect("bash runs").success(),
        "samba-ad.sh record failed"
    );
    no_failed_checks(&out);
    same_flows(&out, "krb5/samba-lab");
}
