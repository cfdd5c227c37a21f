//! `kcdscope watch` without root: what it says before any kernel work. The live capture
//! itself is tested as root in tests/tests/watch_lab.rs.

#[test]
fn watch_names_an_unknown_interface_without_touching_the_kernel() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kcdscope"))
        .args(["watch", "-i", "no-such-if0", "--duration", "1"])
        .output()
        .expect("kcdscope runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no interface named \"no-such-if0\""), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn watch_needs_an_interface() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kcdscope")).arg("watch").output().expect("kcdscope runs");
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--interface"));
}
