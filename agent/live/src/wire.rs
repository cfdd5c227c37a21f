//! The probe's wire format, mirrored from ebpf/probe/record.h. The tests compile that
//! header with clang and compare every size, offset and constant, so the two cannot drift.

pub const CHUNK_SMALL: usize = 256;
pub const CHUNK_MEDIUM: usize = 1600;
pub const CHUNK_LARGE: usize = 4096;
pub const MAX_PACKET: usize = 69632;
pub const MAX_CHUNKS: usize = MAX_PACKET / CHUNK_LARGE;

pub const DIR_INGRESS: u8 = 0;
pub const DIR_EGRESS: u8 = 1;

pub const FLAG_LAST: u8 = 1;
pub const FLAG_CUT: u8 = 2;
pub const FLAG_VLAN: u8 = 4;

pub const CTR_SEEN: u32 = 0;
pub const CTR_MATCHED: u32 = 1;
pub const CTR_RB_DROPPED: u32 = 2;
pub const CTR_FRAGMENTS: u32 = 3;
pub const CTR_TLS_FLOWS: u32 = 4;
pub const CTR_COUNT: u32 = 5;

pub const PORTS_MAX: usize = 64;
pub const FRAGS_MAX: usize = 4096;
pub const FLOWS_MAX: usize = 8192;
pub const RING_DEFAULT: usize = 16 * 1024 * 1024;

/// Map and program names in the object.
pub const MAP_RING: &str = "kcd_ring";
pub const MAP_PORTS: &str = "kcd_ports";
pub const MAP_COUNTERS: &str = "kcd_counters";
/// The probe's switch for following TLS connections by content.
pub const GLOBAL_TLS_DETECT: &str = "kcd_tls_detect";
pub const PROG_INGRESS: &str = "kcd_ingress";
pub const PROG_EGRESS: &str = "kcd_egress";

/// `struct kcd_record_hdr`: size and field offsets.
pub const HDR_SIZE: usize = 40;
pub const OFF_TS_NS: usize = 0;
pub const OFF_SEQ: usize = 8;
pub const OFF_CPU: usize = 16;
pub const OFF_IFINDEX: usize = 20;
pub const OFF_PKT_LEN: usize = 24;
pub const OFF_OFFSET: usize = 28;
pub const OFF_CHUNK_LEN: usize = 32;
pub const OFF_DIRECTION: usize = 34;
pub const OFF_FLAGS: usize = 35;
pub const OFF_VLAN_TCI: usize = 36;
pub const OFF_VLAN_PROTO: usize = 38;

/// Sizes of the three record classes (header + data).
pub const RECORD_SIZES: [usize; 3] = [HDR_SIZE + CHUNK_SMALL, HDR_SIZE + CHUNK_MEDIUM, HDR_SIZE + CHUNK_LARGE];

/// One ring-buffer record, read (not cast) from the bytes the kernel wrote, so a record
/// of the wrong size is refused rather than misread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawChunk<'a> {
    pub ts_ns: u64,
    pub seq: u64,
    pub cpu: u32,
    pub ifindex: u32,
    pub pkt_len: u32,
    pub offset: u32,
    pub direction: u8,
    pub flags: u8,
    pub vlan_tci: u16,
    pub vlan_proto: u16,
    /// The chunk's bytes of the packet (chunk_len of them).
    pub data: &'a [u8],
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl<'a> RawChunk<'a> {
    /// None when the record is not one the probe writes (a size no class has, a chunk
    /// longer than its class).
    pub fn parse(rec: &'a [u8]) -> Option<Self> {
        if !RECORD_SIZES.contains(&rec.len()) {
            return None;
        }
        let chunk_len = usize::from(u16_at(rec, OFF_CHUNK_LEN)?);
        let data = rec.get(HDR_SIZE..HDR_SIZE + chunk_len)?;
        Some(RawChunk {
            ts_ns: u64_at(rec, OFF_TS_NS)?,
            seq: u64_at(rec, OFF_SEQ)?,
            cpu: u32_at(rec, OFF_CPU)?,
            ifindex: u32_at(rec, OFF_IFINDEX)?,
            pkt_len: u32_at(rec, OFF_PKT_LEN)?,
            offset: u32_at(rec, OFF_OFFSET)?,
            direction: *rec.get(OFF_DIRECTION)?,
            flags: *rec.get(OFF_FLAGS)?,
            vlan_tci: u16_at(rec, OFF_VLAN_TCI)?,
            vlan_proto: u16_at(rec, OFF_VLAN_PROTO)?,
            data,
        })
    }

    /// Encodes a record as the probe would (tests, benchmarks).
    pub fn encode(&self) -> Vec<u8> {
        let size = RECORD_SIZES.iter().copied().find(|s| s - HDR_SIZE >= self.data.len()).unwrap_or(RECORD_SIZES[2]);
        let mut r = vec![0u8; size];
        r[OFF_TS_NS..OFF_TS_NS + 8].copy_from_slice(&self.ts_ns.to_ne_bytes());
        r[OFF_SEQ..OFF_SEQ + 8].copy_from_slice(&self.seq.to_ne_bytes());
        r[OFF_CPU..OFF_CPU + 4].copy_from_slice(&self.cpu.to_ne_bytes());
        r[OFF_IFINDEX..OFF_IFINDEX + 4].copy_from_slice(&self.ifindex.to_ne_bytes());
        r[OFF_PKT_LEN..OFF_PKT_LEN + 4].copy_from_slice(&self.pkt_len.to_ne_bytes());
        r[OFF_OFFSET..OFF_OFFSET + 4].copy_from_slice(&self.offset.to_ne_bytes());
        let n = self.data.len().min(size - HDR_SIZE);
        r[OFF_CHUNK_LEN..OFF_CHUNK_LEN + 2].copy_from_slice(&(n as u16).to_ne_bytes());
        r[OFF_DIRECTION] = self.direction;
        r[OFF_FLAGS] = self.flags;
        r[OFF_VLAN_TCI..OFF_VLAN_TCI + 2].copy_from_slice(&self.vlan_tci.to_ne_bytes());
        r[OFF_VLAN_PROTO..OFF_VLAN_PROTO + 2].copy_from_slice(&self.vlan_proto.to_ne_bytes());
        r[HDR_SIZE..HDR_SIZE + n].copy_from_slice(&self.data[..n]);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::process::Command;

    /// What clang says the C header holds, as NAME=VALUE lines.
    fn c_layout() -> BTreeMap<String, usize> {
        let dir = std::env::temp_dir().join(format!("kcd-wire-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let src = dir.join("layout.c");
        let header = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ebpf/probe/record.h");
        let mut c = format!("#define KCD_USER_TEST 1\n#include \"{header}\"\n#include <stdio.h>\n#include <stddef.h>\nint main(void) {{\n");
        let mut p = |name: &str, expr: &str| c.push_str(&format!("printf(\"{name}=%zu\\n\", (size_t)({expr}));\n"));
        for (n, e) in [
            ("CHUNK_SMALL", "KCD_CHUNK_SMALL"), ("CHUNK_MEDIUM", "KCD_CHUNK_MEDIUM"), ("CHUNK_LARGE", "KCD_CHUNK_LARGE"),
            ("MAX_PACKET", "KCD_MAX_PACKET"), ("MAX_CHUNKS", "KCD_MAX_CHUNKS"),
            ("DIR_INGRESS", "KCD_DIR_INGRESS"), ("DIR_EGRESS", "KCD_DIR_EGRESS"),
            ("FLAG_LAST", "KCD_FLAG_LAST"), ("FLAG_CUT", "KCD_FLAG_CUT"), ("FLAG_VLAN", "KCD_FLAG_VLAN"),
            ("CTR_SEEN", "KCD_CTR_SEEN"), ("CTR_MATCHED", "KCD_CTR_MATCHED"), ("CTR_RB_DROPPED", "KCD_CTR_RB_DROPPED"),
            ("CTR_FRAGMENTS", "KCD_CTR_FRAGMENTS"), ("CTR_TLS_FLOWS", "KCD_CTR_TLS_FLOWS"), ("CTR_COUNT", "KCD_CTR_COUNT"),
            ("PORTS_MAX", "KCD_PORTS_MAX"), ("FRAGS_MAX", "KCD_FRAGS_MAX"), ("FLOWS_MAX", "KCD_FLOWS_MAX"),
            ("FLOW_KEY_SIZE", "sizeof(struct kcd_flow_key)"), ("RING_DEFAULT", "KCD_RING_DEFAULT"),
            ("HDR_SIZE", "sizeof(struct kcd_record_hdr)"),
            ("OFF_TS_NS", "offsetof(struct kcd_record_hdr, ts_ns)"),
            ("OFF_SEQ", "offsetof(struct kcd_record_hdr, seq)"),
            ("OFF_CPU", "offsetof(struct kcd_record_hdr, cpu)"),
            ("OFF_IFINDEX", "offsetof(struct kcd_record_hdr, ifindex)"),
            ("OFF_PKT_LEN", "offsetof(struct kcd_record_hdr, pkt_len)"),
            ("OFF_OFFSET", "offsetof(struct kcd_record_hdr, offset)"),
            ("OFF_CHUNK_LEN", "offsetof(struct kcd_record_hdr, chunk_len)"),
            ("OFF_DIRECTION", "offsetof(struct kcd_record_hdr, direction)"),
            ("OFF_FLAGS", "offsetof(struct kcd_record_hdr, flags)"),
            ("OFF_VLAN_TCI", "offsetof(struct kcd_record_hdr, vlan_tci)"),
            ("OFF_VLAN_PROTO", "offsetof(struct kcd_record_hdr, vlan_proto)"),
            ("SIZE_SMALL", "sizeof(struct kcd_record_small)"),
            ("SIZE_MEDIUM", "sizeof(struct kcd_record_medium)"),
            ("SIZE_LARGE", "sizeof(struct kcd_record_large)"),
        ] {
            p(n, e);
        }
        c.push_str("return 0;\n}\n");
        std::fs::write(&src, c).expect("write layout.c");
        let exe = dir.join("layout");
        let cc = std::env::var("KCD_CLANG").unwrap_or_else(|_| "clang".into());
        let st = Command::new(&cc).arg(&src).arg("-o").arg(&exe).status().unwrap_or_else(|e| panic!("{cc} is needed to check the wire layout ({e}); apt-get install clang"));
        assert!(st.success(), "{cc} could not compile {}", src.display());
        let out = Command::new(&exe).output().expect("run layout");
        let _ = std::fs::remove_dir_all(&dir);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.parse().expect("number")))
            .collect()
    }

    #[test]
    fn rust_mirror_matches_the_c_header() {
        let c = c_layout();
        let rust: BTreeMap<&str, usize> = [
            ("CHUNK_SMALL", CHUNK_SMALL), ("CHUNK_MEDIUM", CHUNK_MEDIUM), ("CHUNK_LARGE", CHUNK_LARGE),
            ("MAX_PACKET", MAX_PACKET), ("MAX_CHUNKS", MAX_CHUNKS),
            ("DIR_INGRESS", DIR_INGRESS.into()), ("DIR_EGRESS", DIR_EGRESS.into()),
            ("FLAG_LAST", FLAG_LAST.into()), ("FLAG_CUT", FLAG_CUT.into()), ("FLAG_VLAN", FLAG_VLAN.into()),
            ("CTR_SEEN", CTR_SEEN as usize), ("CTR_MATCHED", CTR_MATCHED as usize), ("CTR_RB_DROPPED", CTR_RB_DROPPED as usize),
            ("CTR_FRAGMENTS", CTR_FRAGMENTS as usize), ("CTR_TLS_FLOWS", CTR_TLS_FLOWS as usize), ("CTR_COUNT", CTR_COUNT as usize),
            ("PORTS_MAX", PORTS_MAX), ("FRAGS_MAX", FRAGS_MAX), ("FLOWS_MAX", FLOWS_MAX), ("FLOW_KEY_SIZE", 40), ("RING_DEFAULT", RING_DEFAULT),
            ("HDR_SIZE", HDR_SIZE), ("OFF_TS_NS", OFF_TS_NS), ("OFF_SEQ", OFF_SEQ), ("OFF_CPU", OFF_CPU),
            ("OFF_IFINDEX", OFF_IFINDEX), ("OFF_PKT_LEN", OFF_PKT_LEN), ("OFF_OFFSET", OFF_OFFSET),
            ("OFF_CHUNK_LEN", OFF_CHUNK_LEN), ("OFF_DIRECTION", OFF_DIRECTION), ("OFF_FLAGS", OFF_FLAGS),
            ("OFF_VLAN_TCI", OFF_VLAN_TCI), ("OFF_VLAN_PROTO", OFF_VLAN_PROTO),
            ("SIZE_SMALL", RECORD_SIZES[0]), ("SIZE_MEDIUM", RECORD_SIZES[1]), ("SIZE_LARGE", RECORD_SIZES[2]),
        ]
        .into_iter()
        .collect();
        assert_eq!(c.len(), rust.len(), "every value printed by the C side: {c:?}");
        for (k, v) in &rust {
            assert_eq!(c.get(*k), Some(v), "{k}: C header says {:?}, Rust says {v}", c.get(*k));
        }
    }

    #[test]
    fn the_object_names_what_the_loader_looks_up() {
        let src = include_str!("../../../ebpf/probe/capture.bpf.c");
        for name in [MAP_RING, MAP_PORTS, MAP_COUNTERS, PROG_INGRESS, PROG_EGRESS, GLOBAL_TLS_DETECT] {
            assert!(src.contains(&format!(" {name}")), "{name} not defined in capture.bpf.c");
        }
    }

    #[test]
    fn records_round_trip_and_wrong_sizes_are_refused() {
        let data: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
        let c = RawChunk { ts_ns: 7, seq: 9, cpu: 1, ifindex: 3, pkt_len: 300, offset: 0, direction: DIR_EGRESS, flags: FLAG_LAST, vlan_tci: 5, vlan_proto: 0x8100, data: &data };
        let rec = c.encode();
        assert_eq!(rec.len(), RECORD_SIZES[1]);
        assert_eq!(RawChunk::parse(&rec), Some(c));
        assert_eq!(RawChunk::parse(&rec[..rec.len() - 1]), None);
        let mut bad = rec.clone();
        bad[OFF_CHUNK_LEN..OFF_CHUNK_LEN + 2].copy_from_slice(&u16::MAX.to_ne_bytes());
        assert_eq!(RawChunk::parse(&bad), None);
    }
}
