//! The eBPF backend: loads the probe embedded at build time, sets its ports, attaches it
//! to ingress and egress of each interface (TCX links on kernels >= 6.6, which the kernel
//! removes when the process exits, however it exits) and drains the ring buffer.

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::tc::SchedClassifierLinkId;
use aya::programs::{SchedClassifier, TcAttachType};
use aya::Ebpf;

use crate::reasm::Reassembler;
use crate::wire;
use crate::{Counters, Iface, LiveError, LivePacket};

static PROBE: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/capture.bpf.o"));

pub struct EbpfCapture {
    bpf: Ebpf,
    ring: RingBuf<MapData>,
    counters_map: PerCpuArray<MapData, u64>,
    links: Vec<(&'static str, SchedClassifierLinkId)>,
    reasm: Reassembler,
    ifaces: Vec<Iface>,
    /// CLOCK_REALTIME - CLOCK_MONOTONIC, read once: the probe stamps packets with the
    /// monotonic clock, and one offset keeps their order and spacing exact.
    wall_offset_ns: i128,
    captured: u64,
    /// The frame with its VLAN tag put back (reused).
    tagged: Vec<u8>,
    /// Packets of an interface we did not attach to (cannot happen; counted, not trusted).
    foreign: u64,
    vlan_restored: u64,
}

/// Why the probe is not available in this binary, if it is not.
pub fn probe_missing() -> Option<&'static str> {
    let why = env!("KCD_PROBE_MISSING");
    (!why.is_empty() || PROBE.is_empty()).then_some(if why.is_empty() { "the eBPF probe was not built into this binary" } else { why })
}

fn clock_offset() -> i128 {
    use rustix::time::{clock_gettime, ClockId};
    let ns = |t: rustix::time::Timespec| i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec);
    let m1 = ns(clock_gettime(ClockId::Monotonic));
    let r = ns(clock_gettime(ClockId::Realtime));
    let m2 = ns(clock_gettime(ClockId::Monotonic));
    r - (m1 + m2) / 2
}

impl EbpfCapture {
    pub fn open(ifaces: Vec<Iface>, ports: &[u16], ring_bytes: u32, tls_detect: bool) -> Result<Self, LiveError> {
        if let Some(why) = probe_missing() {
            return Err(LiveError::NoProbe(why.to_string()));
        }
        crate::caps::require(&[crate::caps::CAP_BPF, crate::caps::CAP_PERFMON, crate::caps::CAP_NET_ADMIN], "load and attach the eBPF probe")?;
        if ports.is_empty() || ports.len() > wire::PORTS_MAX {
            return Err(LiveError::Config(format!("between 1 and {} ports can be watched, not {}", wire::PORTS_MAX, ports.len())));
        }
        let ring_bytes = ring_bytes.max(4096).next_power_of_two();
        let mut bpf = aya::EbpfLoader::new()
            .map_max_entries(wire::MAP_RING, ring_bytes)
            .override_global(wire::GLOBAL_TLS_DETECT, &u8::from(tls_detect), true)
            .load(PROBE)
            .map_err(|e| LiveError::Load(format!("{e}{}", source_chain(&e))))?;
        {
            let map = bpf.map_mut(wire::MAP_PORTS).ok_or_else(|| LiveError::Load(format!("map {} missing from the probe", wire::MAP_PORTS)))?;
            let mut m: BpfHashMap<&mut MapData, u16, u8> = BpfHashMap::try_from(map).map_err(|e| LiveError::Load(e.to_string()))?;
            for p in ports {
                m.insert(p, 1, 0).map_err(|e| LiveError::Load(format!("setting port {p}: {e}")))?;
            }
        }
        let ring = RingBuf::try_from(bpf.take_map(wire::MAP_RING).ok_or_else(|| LiveError::Load("ring buffer map missing".into()))?).map_err(|e| LiveError::Load(e.to_string()))?;
        let counters_map = PerCpuArray::try_from(bpf.take_map(wire::MAP_COUNTERS).ok_or_else(|| LiveError::Load("counters map missing".into()))?)
            .map_err(|e| LiveError::Load(e.to_string()))?;
        let mut links = Vec::new();
        for (name, attach) in [(wire::PROG_INGRESS, TcAttachType::Ingress), (wire::PROG_EGRESS, TcAttachType::Egress)] {
            let prog: &mut SchedClassifier = bpf
                .program_mut(name)
                .ok_or_else(|| LiveError::Load(format!("program {name} missing from the probe")))?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| LiveError::Load(e.to_string()))?;
            prog.load().map_err(|e| LiveError::Load(format!("the kernel refused program {name}: {e}{}", source_chain(&e))))?;
            for i in &ifaces {
                // On loopback every packet passes egress and then ingress: one hook sees it once.
                if i.loopback && attach == TcAttachType::Egress {
                    continue;
                }
                let id = prog.attach(&i.name, attach).map_err(|e| LiveError::Attach(i.name.clone(), format!("{e}{}", source_chain(&e))))?;
                links.push((name, id));
            }
        }
        Ok(EbpfCapture { bpf, ring, counters_map, links, reasm: Reassembler::default(), ifaces, wall_offset_ns: clock_offset(), captured: 0, tagged: Vec::new(), foreign: 0, vlan_restored: 0 })
    }

    /// Hands every packet in the ring to `f`; returns how many.
    pub fn drain(&mut self, f: &mut dyn FnMut(&LivePacket<'_>)) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            if let Some(w) = self.reasm.push(&item) {
                let Some(iface) = self.ifaces.iter().position(|i| i.index == w.ifindex) else {
                    self.foreign += 1;
                    continue;
                };
                let ts = (i128::from(w.ts_ns) + self.wall_offset_ns).clamp(0, i128::from(i64::MAX)) as i64;
                // A tag the NIC (or veth) keeps beside the packet goes back into the frame, as
                // libpcap does, so that the pcapng and the decoder see the wire's frame.
                let data = match w.vlan {
                    Some((tpid, tci)) if w.data.len() >= 12 => {
                        self.tagged.clear();
                        self.tagged.extend_from_slice(&w.data[..12]);
                        self.tagged.extend_from_slice(&tpid.to_be_bytes());
                        self.tagged.extend_from_slice(&tci.to_be_bytes());
                        self.tagged.extend_from_slice(&w.data[12..]);
                        self.vlan_restored += 1;
                        &self.tagged[..]
                    }
                    _ => w.data,
                };
                let orig_len = w.orig_len + if data.len() > w.data.len() { 4 } else { 0 };
                f(&LivePacket { ts_ns: ts, iface, data, orig_len, link: 1, egress: w.direction == wire::DIR_EGRESS });
                self.captured += 1;
                n += 1;
            }
        }
        n
    }

    /// Removes the probe from every interface; the ring can still be drained afterwards.
    pub fn detach(&mut self) {
        for (name, id) in self.links.drain(..) {
            if let Some(p) = self.bpf.program_mut(name) {
                if let Ok(prog) = <&mut SchedClassifier>::try_from(p) {
                    let _ = prog.detach(id);
                }
            }
        }
    }

    pub fn counters(&self) -> Counters {
        let sum = |i: u32| self.counters_map.get(&i, 0).map(|v| v.iter().copied().sum::<u64>()).unwrap_or(0);
        let r = self.reasm.stats();
        Counters {
            seen: sum(wire::CTR_MATCHED),
            inspected: sum(wire::CTR_SEEN),
            captured: self.captured,
            dropped_kernel: sum(wire::CTR_RB_DROPPED),
            dropped_user: r.malformed + self.foreign,
            fragments: sum(wire::CTR_FRAGMENTS),
            tls_flows: sum(wire::CTR_TLS_FLOWS),
            cut: r.cut,
            vlan_restored: self.vlan_restored,
        }
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = String::new();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
