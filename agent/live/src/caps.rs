//! Which capabilities this process holds, read from /proc/self/status, so that a missing
//! one is named before the kernel answers a bare EPERM.

use crate::LiveError;

/// What to tell someone who lacks them.
pub const HINT: &str = "run as root, as the systemd unit in the README does (AmbientCapabilities=CAP_BPF CAP_PERFMON CAP_NET_ADMIN CAP_NET_RAW), or: setcap cap_bpf,cap_perfmon,cap_net_admin,cap_net_raw+ep kcdscope";

pub const CAP_NET_RAW: u32 = 13;
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

fn name(c: u32) -> &'static str {
    match c {
        CAP_NET_RAW => "CAP_NET_RAW",
        CAP_NET_ADMIN => "CAP_NET_ADMIN",
        CAP_SYS_ADMIN => "CAP_SYS_ADMIN",
        CAP_PERFMON => "CAP_PERFMON",
        CAP_BPF => "CAP_BPF",
        _ => "a capability",
    }
}

/// The effective capability set, parsed from the `CapEff:` line.
pub fn parse_effective(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

pub fn missing(eff: u64, wanted: &[u32]) -> Vec<&'static str> {
    // CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON (kernels before 5.8 had only it).
    let sys_admin = eff & (1 << CAP_SYS_ADMIN) != 0;
    wanted
        .iter()
        .filter(|&&c| eff & (1u64 << c) == 0 && !(sys_admin && matches!(c, CAP_BPF | CAP_PERFMON)))
        .map(|&c| name(c))
        .collect()
}

pub fn require(wanted: &[u32], to: &str) -> Result<(), LiveError> {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return Ok(()) };
    let Some(eff) = parse_effective(&status) else { return Ok(()) };
    let m = missing(eff, wanted);
    if m.is_empty() {
        Ok(())
    } else {
        Err(LiveError::Privileges(format!("{} needed to {to}", m.join(", "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_is_missing() {
        let st = "Name:\tx\nCapEff:\t0000000000001000\n";
        let eff = parse_effective(st).expect("parsed");
        assert_eq!(eff, 1 << CAP_NET_ADMIN);
        assert_eq!(missing(eff, &[CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN]), vec!["CAP_BPF", "CAP_PERFMON"]);
        assert!(missing(eff | (1 << CAP_SYS_ADMIN), &[CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN]).is_empty());
        assert_eq!(missing(0, &[CAP_NET_RAW]), vec!["CAP_NET_RAW"]);
    }
}
