//! Compiles the eBPF probe (ebpf/probe/capture.bpf.c, C: stable Rust cannot build BPF
//! targets) with clang into OUT_DIR, where src/ebpf.rs embeds it. Without clang the crate
//! still builds, with an empty object: `kcdscope watch` then says why eBPF is unavailable
//! and uses libpcap.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let probe = manifest.join("../../ebpf/probe");
    let src = probe.join("capture.bpf.c");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("capture.bpf.o");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed={}", probe.join("record.h").display());
    println!("cargo:rerun-if-env-changed=KCD_CLANG");
    let clang = std::env::var("KCD_CLANG").unwrap_or_else(|_| "clang".into());
    // Debian keeps asm/types.h under the multiarch directory, which -target bpf does not search.
    let multiarch = format!("/usr/include/{}-linux-gnu", std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default());
    let result = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-c"])
        .arg("-I")
        .arg(&multiarch)
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .output();
    let why = match result {
        Ok(o) if o.status.success() => {
            println!("cargo:rustc-env=KCD_PROBE_MISSING=");
            return;
        }
        Ok(o) => format!("{clang} failed on {}:\n{}", src.display(), String::from_utf8_lossy(&o.stderr)),
        Err(e) => format!(
            "{clang} not found ({e}): the eBPF probe needs clang and the BPF headers (Debian: apt-get install clang libbpf-dev linux-libc-dev); `watch` will use libpcap"
        ),
    };
    let first = why.lines().next().unwrap_or_default().to_string();
    println!("cargo:warning=kcd-live: {first}");
    if std::fs::write(&out, b"").is_err() {
        panic!("cannot write {}", out.display());
    }
    println!("cargo:rustc-env=KCD_PROBE_MISSING={}", first.replace('\n', " "));
}
