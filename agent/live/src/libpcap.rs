//! The libpcap backend: one non-blocking capture per interface with a kernel filter for
//! the watched ports (and later IP fragments, which carry no ports). Non-blocking, read on
//! the same timed drain as the eBPF ring: a blocking read (in immediate mode it never
//! returns once traffic stops) would leave the agent deaf to signals and to its timers.

use pcap::{Active, Capture, Precision};

use crate::{Counters, Iface, LiveError, LivePacket};

/// Longest a captured packet waits in a partly filled block.
const BLOCK_TIMEOUT_MS: i32 = 10;

pub struct PcapCapture {
    caps: Vec<Capture<Active>>,
    links: Vec<u32>,
    captured: u64,
}

/// The BPF filter for the ports: either side, TCP or UDP, tagged or not, and every later
/// fragment (their first fragment decides, in the decoder).
pub fn filter(ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(|p| format!("port {p}")).collect();
    let base = format!("((tcp or udp) and ({})) or (ip[6:2] & 0x1fff != 0) or (ip6 and ip6[6] = 44)", ports.join(" or "));
    format!("{base} or (vlan and ({base}))")
}

impl PcapCapture {
    pub fn open(ifaces: &[Iface], ports: &[u16], buffer_bytes: u32) -> Result<Self, LiveError> {
        crate::caps::require(&[crate::caps::CAP_NET_RAW], "capture with libpcap")?;
        let mut caps = Vec::new();
        let mut links = Vec::new();
        let f = filter(ports);
        for i in ifaces {
            let err = |e: pcap::Error| LiveError::Pcap(i.name.clone(), e.to_string());
            let cap = Capture::from_device(i.name.as_str())
                .map_err(err)?
                .promisc(false)
                // Not immediate mode: libpcap then uses TPACKET_V2 with one fixed frame per
                // packet sized for the snap length (64 frames of a 16 MiB buffer) and drops
                // half of a 50k packets/s load; TPACKET_V3 packs packets into blocks that the
                // kernel hands over when full or after the timeout.
                .immediate_mode(false)
                .timeout(BLOCK_TIMEOUT_MS)
                .snaplen(262_144)
                .buffer_size(buffer_bytes.min(i32::MAX as u32) as i32)
                .precision(Precision::Nano)
                .open()
                .map_err(err)?;
            let mut cap = cap.setnonblock().map_err(err)?;
            cap.filter(&f, true).map_err(err)?;
            links.push(cap.get_datalink().0 as u32);
            caps.push(cap);
        }
        Ok(PcapCapture { caps, links, captured: 0 })
    }

    pub fn drain(&mut self, f: &mut dyn FnMut(&LivePacket<'_>)) -> usize {
        let mut n = 0;
        for (iface, cap) in self.caps.iter_mut().enumerate() {
            // Bounded per call so that one busy interface does not starve the others.
            for _ in 0..4096 {
                match cap.next_packet() {
                    Ok(p) => {
                        let ts = p.header.ts.tv_sec * 1_000_000_000 + p.header.ts.tv_usec;
                        f(&LivePacket { ts_ns: ts, iface, data: p.data, orig_len: p.header.len, link: self.links[iface], egress: false });
                        self.captured += 1;
                        n += 1;
                    }
                    Err(_) => break,
                }
            }
        }
        n
    }

    pub fn counters(&mut self) -> Counters {
        let mut c = Counters { captured: self.captured, ..Default::default() };
        for cap in &mut self.caps {
            if let Ok(s) = cap.stats() {
                c.seen += u64::from(s.received);
                c.dropped_kernel += u64::from(s.dropped) + u64::from(s.if_dropped);
            }
        }
        c.inspected = c.seen;
        c
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_filter_compiles_in_libpcap() {
        let f = super::filter(&[88, 443, 80]);
        let cap = pcap::Capture::dead(pcap::Linktype::ETHERNET).expect("dead capture");
        cap.compile(&f, true).expect("libpcap accepts the filter");
    }
}
