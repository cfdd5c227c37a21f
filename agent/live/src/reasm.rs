//! Packets rebuilt from the probe's chunks. Pure: records in, whole packets out.
//!
//! The probe copies a packet as consecutive chunks with one (cpu, seq); a CPU runs the
//! program to completion, so its chunks arrive in order. A chunk that starts a new packet
//! while the CPU's previous one is unfinished means the ring buffer filled up in between:
//! the kernel counted that packet as dropped, so the partial one is discarded here.

use crate::wire::{RawChunk, FLAG_CUT, FLAG_LAST, FLAG_VLAN, MAX_PACKET};

/// CPUs tracked; a record naming a higher CPU number is refused (bounds memory).
const MAX_CPUS: usize = 4096;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReasmStats {
    pub packets: u64,
    /// Packets started and never finished (already counted by the kernel as dropped).
    pub incomplete: u64,
    /// Records that do not fit the wire format or the packet they continue.
    pub malformed: u64,
    /// Packets longer than the probe copies (their tail is missing).
    pub cut: u64,
}

/// One packet, whole (or cut at `MAX_PACKET` bytes when `orig_len` says more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Whole<'a> {
    pub ts_ns: u64,
    pub ifindex: u32,
    pub direction: u8,
    /// A tag the NIC took out of the data: (TPID, TCI).
    pub vlan: Option<(u16, u16)>,
    pub orig_len: u32,
    pub data: &'a [u8],
}

struct Partial {
    seq: u64,
    ts_ns: u64,
    ifindex: u32,
    direction: u8,
    flags: u8,
    vlan: (u16, u16),
    pkt_len: u32,
    buf: Vec<u8>,
}

#[derive(Default)]
pub struct Reassembler {
    slots: Vec<Option<Partial>>,
    stats: ReasmStats,
}

impl Reassembler {
    pub fn stats(&self) -> ReasmStats {
        self.stats
    }

    /// Feeds one ring-buffer record; returns the packet it completes, if any.
    pub fn push<'a>(&'a mut self, rec: &'a [u8]) -> Option<Whole<'a>> {
        let Some(c) = RawChunk::parse(rec) else {
            self.stats.malformed += 1;
            return None;
        };
        let cpu = c.cpu as usize;
        if cpu >= MAX_CPUS {
            self.stats.malformed += 1;
            return None;
        }
        if self.slots.len() <= cpu {
            self.slots.resize_with(cpu + 1, || None);
        }
        let slot = &mut self.slots[cpu];
        let last = c.flags & FLAG_LAST != 0;
        if c.offset == 0 {
            if slot.take().is_some() {
                self.stats.incomplete += 1;
            }
            if last {
                // The common case, one chunk: no copy.
                self.stats.packets += 1;
                self.stats.cut += u64::from(c.flags & FLAG_CUT != 0);
                return Some(Whole {
                    ts_ns: c.ts_ns,
                    ifindex: c.ifindex,
                    direction: c.direction,
                    vlan: (c.flags & FLAG_VLAN != 0).then_some((c.vlan_proto, c.vlan_tci)),
                    orig_len: c.pkt_len,
                    data: c.data,
                });
            }
            let mut buf = Vec::with_capacity((c.pkt_len as usize).min(MAX_PACKET));
            buf.extend_from_slice(c.data);
            *slot = Some(Partial {
                seq: c.seq,
                ts_ns: c.ts_ns,
                ifindex: c.ifindex,
                direction: c.direction,
                flags: c.flags,
                vlan: (c.vlan_proto, c.vlan_tci),
                pkt_len: c.pkt_len,
                buf,
            });
            return None;
        }
        let fits = slot.as_ref().is_some_and(|p| p.seq == c.seq && p.buf.len() == c.offset as usize && p.buf.len() + c.data.len() <= MAX_PACKET);
        if !fits {
            if slot.take().is_some() {
                self.stats.incomplete += 1;
            }
            self.stats.malformed += 1;
            return None;
        }
        let p = slot.as_mut()?;
        p.buf.extend_from_slice(c.data);
        if !last {
            return None;
        }
        self.stats.packets += 1;
        self.stats.cut += u64::from(p.flags & FLAG_CUT != 0);
        let done = slot.as_ref()?;
        Some(Whole {
            ts_ns: done.ts_ns,
            ifindex: done.ifindex,
            direction: done.direction,
            vlan: (done.flags & FLAG_VLAN != 0).then_some(done.vlan),
            orig_len: done.pkt_len,
            data: &done.buf,
        })
    }

    /// Drops what is unfinished (at the end of a capture); returns how many packets.
    pub fn finish(&mut self) -> u64 {
        let n = self.slots.iter_mut().filter_map(Option::take).count() as u64;
        self.stats.incomplete += n;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{CHUNK_LARGE, DIR_INGRESS};

    fn chunks(cpu: u32, seq: u64, pkt: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut off = 0;
        while off < pkt.len() {
            let end = (off + CHUNK_LARGE).min(pkt.len());
            let flags = if end == pkt.len() { FLAG_LAST } else { 0 };
            out.push(
                RawChunk { ts_ns: seq * 10, seq, cpu, ifindex: 2, pkt_len: pkt.len() as u32, offset: off as u32, direction: DIR_INGRESS, flags, vlan_tci: 0, vlan_proto: 0, data: &pkt[off..end] }
                    .encode(),
            );
            off = end;
        }
        out
    }

    fn packet(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    #[test]
    fn a_64k_packet_interleaved_with_another_cpu_comes_back_whole() {
        let big = packet(65_000, 1);
        let small = packet(90, 2);
        let a = chunks(0, 1, &big);
        let b = chunks(1, 1, &small);
        assert_eq!(a.len(), 16);
        let mut r = Reassembler::default();
        let mut got = Vec::new();
        for (i, rec) in a.iter().enumerate() {
            if let Some(w) = r.push(rec) {
                got.push(w.data.to_vec());
            }
            if i == 3 {
                let w = r.push(&b[0]).expect("one-chunk packet");
                assert_eq!(w.data, &small[..]);
            }
        }
        assert_eq!(got, vec![big]);
        assert_eq!(r.stats(), ReasmStats { packets: 2, incomplete: 0, malformed: 0, cut: 0 });
    }

    #[test]
    fn a_packet_cut_short_by_a_full_ring_is_discarded_not_glued() {
        let big = packet(10_000, 3);
        let next = packet(10_000, 4);
        let a = chunks(0, 1, &big);
        let b = chunks(0, 2, &next);
        let mut r = Reassembler::default();
        // The ring was full after the first chunk of packet 1.
        assert!(r.push(&a[0]).is_none());
        let mut out = Vec::new();
        for rec in &b {
            if let Some(w) = r.push(rec) {
                out.push(w.data.to_vec());
            }
        }
        assert_eq!(out, vec![next]);
        assert_eq!(r.stats().incomplete, 1);
        assert_eq!(r.stats().packets, 1);
    }

    #[test]
    fn garbage_and_orphans_are_counted() {
        let mut r = Reassembler::default();
        assert!(r.push(&[0u8; 17]).is_none());
        let big = packet(9000, 5);
        let a = chunks(0, 1, &big);
        assert!(r.push(&a[1]).is_none(), "a middle chunk without its start");
        assert_eq!(r.stats().malformed, 2);
        assert!(r.push(&a[0]).is_none());
        assert_eq!(r.finish(), 1);
    }
}
