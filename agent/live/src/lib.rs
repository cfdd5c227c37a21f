//! Live capture for `kcdscope watch`: the eBPF probe (ebpf/probe, loaded with aya) or,
//! when it cannot load, libpcap. Both hand whole packets with wall-clock times to the
//! caller, which feeds them to the same decoder a replay uses. This crate is the shell
//! around the kernel; the pure parts (wire format, chunk reassembly, pcapng encoding) are
//! tested on bytes.

#![forbid(unsafe_code)]

pub mod caps;
pub mod ebpf;
pub mod libpcap;
pub mod pcapng;
pub mod reasm;
pub mod wire;

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("{0}")]
    Privileges(String),
    #[error("no interface named {0:?} (see `ip link`)")]
    UnknownInterface(String),
    #[error("eBPF is not available in this build: {0}")]
    NoProbe(String),
    #[error("cannot load the eBPF probe: {0}")]
    Load(String),
    #[error("cannot attach the eBPF probe to {0}: {1}")]
    Attach(String, String),
    #[error("libpcap on {0}: {1}")]
    Pcap(String, String),
    #[error("{0}")]
    Config(String),
}

/// A watched interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub index: u32,
    pub loopback: bool,
}

impl Iface {
    /// Looks the interface up in /sys/class/net.
    pub fn lookup(name: &str) -> Result<Self, LiveError> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(LiveError::UnknownInterface(name.to_string()));
        }
        let dir = std::path::Path::new("/sys/class/net").join(name);
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok().map(|s| s.trim().to_string());
        let index = read("ifindex").and_then(|s| s.parse().ok()).ok_or_else(|| LiveError::UnknownInterface(name.to_string()))?;
        let flags = read("flags").and_then(|s| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok()).unwrap_or(0);
        Ok(Iface { name: name.to_string(), index, loopback: flags & 0x8 != 0 })
    }
}

/// One captured packet.
#[derive(Debug, Clone, Copy)]
pub struct LivePacket<'a> {
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    /// Index into the interfaces given to `Live::open`.
    pub iface: usize,
    pub data: &'a [u8],
    pub orig_len: u32,
    /// Link type (pcap LINKTYPE_*).
    pub link: u32,
    pub egress: bool,
}

/// Capture counters. `captured + dropped_kernel + dropped_user == seen` once the capture
/// has stopped and been drained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets that matched the ports (eBPF) or the filter (libpcap).
    pub seen: u64,
    /// Packets the probe looked at, matched or not (libpcap: as `seen`).
    pub inspected: u64,
    /// Packets handed to the decoder.
    pub captured: u64,
    /// Lost in the kernel: ring buffer full (eBPF), socket buffer full (libpcap).
    pub dropped_kernel: u64,
    /// Lost in the agent: records it could not read.
    pub dropped_user: u64,
    /// Later IP fragments matched through their first fragment (eBPF).
    pub fragments: u64,
    /// Packets longer than the probe copies (their tail is missing).
    pub cut: u64,
    /// TCP connections on no watched port followed for their TLS ClientHello (eBPF).
    pub tls_flows: u64,
    /// VLAN tags the kernel kept beside the packet (skb->vlan_tci: NIC offload, or the
    /// receive path's untagging) and the agent put back into the frame.
    pub vlan_restored: u64,
}

impl Counters {
    pub fn dropped(&self) -> u64 {
        self.dropped_kernel + self.dropped_user
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} packets matched, {} captured, {} dropped ({} in the kernel, {} in the agent)", self.seen, self.captured, self.dropped(), self.dropped_kernel, self.dropped_user)?;
        if self.cut > 0 {
            write!(f, ", {} cut at {} bytes", self.cut, wire::MAX_PACKET)?;
        }
        if self.tls_flows > 0 {
            write!(f, ", {} TLS connections on other ports", self.tls_flows)?;
        }
        if self.vlan_restored > 0 {
            write!(f, ", {} VLAN tags restored", self.vlan_restored)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Ebpf,
    Pcap,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Ebpf => "eBPF",
            Backend::Pcap => "libpcap",
        })
    }
}

pub struct Config {
    pub ifaces: Vec<String>,
    pub ports: Vec<u16>,
    /// Ring buffer (eBPF) or socket buffer (libpcap) size.
    pub buffer_bytes: u32,
    /// eBPF: also follow TCP connections on other ports that start with a TLS ClientHello.
    pub tls_detect: bool,
}

pub enum Live {
    Ebpf(Box<ebpf::EbpfCapture>),
    Pcap(libpcap::PcapCapture),
}

impl Live {
    /// Opens the backend asked for; with `fallback`, libpcap when eBPF cannot load, and
    /// the reason eBPF was given up.
    pub fn open(cfg: &Config, backend: Backend, fallback: bool) -> Result<(Live, Vec<Iface>, Option<LiveError>), LiveError> {
        let ifaces = cfg.ifaces.iter().map(|n| Iface::lookup(n)).collect::<Result<Vec<_>, _>>()?;
        let mut ports = cfg.ports.clone();
        ports.sort_unstable();
        ports.dedup();
        if backend == Backend::Ebpf {
            match ebpf::EbpfCapture::open(ifaces.clone(), &ports, cfg.buffer_bytes, cfg.tls_detect) {
                Ok(c) => return Ok((Live::Ebpf(Box::new(c)), ifaces, None)),
                Err(e) if fallback && !matches!(e, LiveError::UnknownInterface(_) | LiveError::Config(_)) => {
                    return match libpcap::PcapCapture::open(&ifaces, &ports, cfg.buffer_bytes) {
                        Ok(p) => Ok((Live::Pcap(p), ifaces, Some(e))),
                        // Both refused for want of privileges: say what each needs.
                        Err(LiveError::Privileges(p)) => Err(LiveError::Privileges(format!("eBPF: {e}; libpcap: {p}"))),
                        Err(p) => Err(LiveError::Config(format!("eBPF: {e}; and the libpcap fallback failed too: {p}"))),
                    };
                }
                Err(e) => return Err(e),
            }
        }
        let p = libpcap::PcapCapture::open(&ifaces, &ports, cfg.buffer_bytes)?;
        Ok((Live::Pcap(p), ifaces, None))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Live::Ebpf(_) => Backend::Ebpf,
            Live::Pcap(_) => Backend::Pcap,
        }
    }

    pub fn drain(&mut self, f: &mut dyn FnMut(&LivePacket<'_>)) -> usize {
        match self {
            Live::Ebpf(c) => c.drain(f),
            Live::Pcap(c) => c.drain(f),
        }
    }

    /// Stops capturing new packets (what is buffered can still be drained).
    pub fn stop(&mut self) {
        if let Live::Ebpf(c) = self {
            c.detach();
        }
    }

    pub fn counters(&mut self) -> Counters {
        match self {
            Live::Ebpf(c) => c.counters(),
            Live::Pcap(c) => c.counters(),
        }
    }
}
