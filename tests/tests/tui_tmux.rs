//! The terminal UI in a real terminal: tmux on a private socket runs kcdscope on the
//! bundled incident, keys are typed, and what a person would see is read back with
//! capture-pane. What the lab made of each user (captures/incident/README.md) is the
//! expectation: frank is "sensitive and cannot be delegated".

use std::process::Command;
use std::time::{Duration, Instant};

use kcd_tests::kcdscope_bin;

struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(name: &str, w: u16, h: u16, cmd: &str) -> Tmux {
        let socket = format!("kcd-tui-{name}-{}", std::process::id());
        let t = Tmux { socket };
        t.run(&["-f", "/dev/null", "new-session", "-d", "-x", &w.to_string(), "-y", &h.to_string(), cmd]);
        t.run(&["set-option", "-g", "remain-on-exit", "on"]);
        t
    }
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("tmux runs (apt-get install tmux)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.run(&["send-keys", "-t", "0", k]);
            std::thread::sleep(Duration::from_millis(60));
        }
    }
    fn literal(&self, text: &str) {
        self.run(&["send-keys", "-t", "0", "-l", text]);
        std::thread::sleep(Duration::from_millis(100));
    }
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "0"])
    }
    /// Polls the screen until `pred` holds (10 s at most).
    fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "waited for {what}; the screen:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    fn format(&self, f: &str) -> String {
        self.run(&["display-message", "-p", "-t", "0", f]).trim().to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-L").arg(&self.socket).arg("kill-server").output();
    }
}

#[test]
fn a_person_finds_the_failing_device_and_its_fix() {
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("tmux is needed for this test: apt-get install tmux (tests/run installs it)");
    }
    let bin = kcdscope_bin();
    // No arguments on a terminal: the UI on the bundled incident.
    let t = Tmux::new("person", 120, 40, &format!("env -u NO_COLOR TERM=xterm-256color {}", bin.display()));
    let s = t.wait("the replay's end", |s| s.contains("| end |"));
    assert_eq!(t.format("#{alternate_on}"), "1", "the UI runs on the alternate screen");
    assert!(s.contains("devices 8 (5 failing)"), "{s}");
    // Filter to frank, open him.
    t.keys(&["/"]);
    t.literal("upn:frank");
    t.keys(&["Enter"]);
    let s = t.wait("the filtered list", |s| s.contains("Devices 1 of 8"));
    assert!(s.lines().any(|l| l.contains("x FAILING") && l.contains("frank@lab.test") && l.contains("S4U2Proxy")), "{s}");
    t.keys(&["Enter"]);
    let s = t.wait("frank's story", |s| s.contains("Story (oldest first)"));
    assert!(s.contains("failing step S4U2Proxy"), "{s}");
    assert!(s.contains("KDC_ERR_BADOPTION (13)"), "{s}");
    assert!(s.contains("krb.s4u2proxy.user_not_delegable"), "{s}");
    assert!(s.contains("sensitive and cannot be delegated"), "the fix is on screen:\n{s}");
    // Faster, then a small terminal: still readable, nothing wider than it.
    t.keys(&["+"]);
    t.run(&["resize-window", "-t", "0", "-x", "80", "-y", "24"]);
    let s = t.wait("the redraw at 80x24", |s| s.lines().next().is_some_and(|l| l.chars().count() <= 80) && s.lines().count() <= 24 && s.contains("frank"));
    assert!(s.contains("x FAILING frank@lab.test"), "{s}");
    assert!(s.lines().all(|l| l.chars().count() <= 80), "{s}");
    t.keys(&["q"]);
    let t0 = Instant::now();
    while t.format("#{pane_dead}") != "1" {
        assert!(t0.elapsed() < Duration::from_secs(5), "q did not quit");
        std::thread::sleep(Duration::from_millis(50));
    }
    // tmux does not always record the status of a pane whose process it reaped (seen
    // empty, never anything else): no failure status and no signal.
    let status = t.format("#{pane_dead_status}");
    assert!(status == "0" || status.is_empty(), "exit status {status}");
    assert_eq!(t.format("#{pane_dead_signal}"), "", "killed by a signal");
    assert_eq!(t.format("#{alternate_on}"), "0", "the terminal left the alternate screen");
}

#[test]
fn sigterm_restores_the_terminal() {
    let bin = kcdscope_bin();
    let t = Tmux::new("sigterm", 100, 30, &format!("{} tui --speed 1", bin.display()));
    t.wait("the UI", |s| s.contains("kcdscope |"));
    let pid = t.format("#{pane_pid}");
    let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
    let t0 = Instant::now();
    while t.format("#{pane_dead}") != "1" {
        assert!(t0.elapsed() < Duration::from_secs(5), "SIGTERM did not stop the UI");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(t.format("#{alternate_on}"), "0", "the terminal left the alternate screen");
}

/// The terminal goes away (an SSH session dropped, tmux killed): the UI ends instead of
/// spinning on a hung-up terminal.
#[test]
fn the_ui_ends_when_its_terminal_goes_away() {
    let bin = kcdscope_bin();
    let t = Tmux::new("hangup", 100, 30, &format!("{} tui --speed max", bin.display()));
    t.wait("the UI", |s| s.contains("| end |"));
    let pid = t.format("#{pane_pid}");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    t.run(&["kill-server"]);
    let t0 = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // A zombie has ended; its parent (tmux) is gone and init reaps it.
        if state.split_whitespace().nth(2) == Some("Z") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "kcdscope {pid} still runs after its terminal went away: {state}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
