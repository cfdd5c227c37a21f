//! A lab from `tests/lab/` (network namespaces, KDCs, web servers) held up for one test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::repo_root;

/// A lab brought up by `tests/lab/SCRIPT up DIR/lab`. Dropping it stops the processes the test
/// started in it and takes the lab down, also when the test fails half-way (a lab left up
/// holds its namespaces and addresses, and the next run's `up` would meet them), unless the
/// environment variable named by `keep` is set, to look at the lab afterwards.
pub struct Lab {
    script: PathBuf,
    /// The test's scratch directory; the lab's own files are in `dir/lab`.
    pub dir: PathBuf,
    /// The lab's `lab.env`.
    pub env: HashMap<String, String>,
    /// Processes the test started (gateways, servers), stopped first.
    pub children: Vec<Child>,
    keep: &'static str,
    /// The scratch directory is removed with the lab (it is made per run).
    scratch: bool,
    passed: usize,
    failures: Vec<String>,
}

impl Lab {
    /// Brings the lab up with `SCRIPT up DIR/lab` (with `envs` added to the script's
    /// environment) and reads its `lab.env`. `scratch`: `dir` is this run's alone, and is
    /// removed with the lab (otherwise it is kept, e.g. a provisioned domain reused by the
    /// next run).
    pub fn up(script: &str, dir: PathBuf, keep: &'static str, scratch: bool, envs: &[(&str, String)]) -> Lab {
        if scratch {
            let _ = std::fs::remove_dir_all(&dir);
        }
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let script = repo_root().join("tests/lab").join(script);
        let mut c = Command::new("bash");
        c.arg(&script).arg("up").arg(dir.join("lab"));
        for (k, v) in envs {
            c.env(k, v);
        }
        let st = c.status().expect("bash runs");
        assert!(st.success(), "{} up failed", script.display());
        let env = crate::lab_env(&dir.join("lab"));
        Lab { script, dir, env, children: Vec::new(), keep, scratch, passed: 0, failures: Vec::new() }
    }

    /// A value of `lab.env`.
    pub fn v(&self, k: &str) -> String {
        self.env.get(k).cloned().unwrap_or_else(|| panic!("lab.env has no {k}"))
    }

    /// The lab's script, for its commands with arguments of their own.
    pub fn script(&self) -> &Path {
        &self.script
    }

    /// Runs another command of the lab's script (`SCRIPT WHAT DIR/lab`), which must succeed.
    pub fn run(&self, what: &str) {
        let st = Command::new("bash").arg(&self.script).arg(what).arg(self.dir.join("lab")).status().expect("bash runs");
        assert!(st.success(), "{} {what} failed", self.script.display());
    }

    /// One named check of a test that goes on after a failed check, to report them all.
    pub fn check(&mut self, what: &str, ok: bool, detail: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
            eprintln!("PASS {what}");
        } else {
            let d = detail();
            eprintln!("FAIL {what}: {d}");
            self.failures.push(format!("{what}: {d}"));
        }
    }

    /// Fails the test if a check failed, listing them.
    pub fn assert_checks(&self) {
        eprintln!("{} checks passed, {} failed", self.passed, self.failures.len());
        assert!(self.failures.is_empty(), "{} passed, failed:\n{}", self.passed, self.failures.join("\n"));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.children.iter_mut().for_each(crate::stop);
        if std::env::var_os(self.keep).is_none() {
            let _ = Command::new("bash").arg(&self.script).arg("down").arg(self.dir.join("lab")).status();
            if self.scratch {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
    }
}

/// `struct NAME(kcd_tests::Lab)` that dereferences to the lab: a test's own steps on a lab go
/// in `impl NAME`, and the lab's (`v`, `check`, `children`, ...) stay reachable as its own.
#[macro_export]
macro_rules! lab_steps {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        struct $name($crate::Lab);

        impl std::ops::Deref for $name {
            type Target = $crate::Lab;
            fn deref(&self) -> &$crate::Lab {
                &self.0
            }
        }

        impl std::ops::DerefMut for $name {
            fn deref_mut(&mut self) -> &mut $crate::Lab {
                &mut self.0
            }
        }

        impl $name {
            /// [`Lab::check`](crate::Lab::check) as the test's own method, so that its
            /// arguments may read the lab (`lab.check(.., lab.v(..) == ..)`), which a call
            /// through `DerefMut` does not allow.
            #[allow(dead_code)]
            fn check(&mut self, what: &str, ok: bool, detail: impl FnOnce() -> String) {
                self.0.check(what, ok, detail)
            }
        }
    };
}
