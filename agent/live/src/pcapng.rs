//! `--write-pcap`: what was captured, as pcapng (nanosecond times, one interface block
//! per watched interface), in files of at most a given size: FILE, then FILE.1, FILE.2...
//! `kcdscope replay FILE FILE.1 ...` reads them back as one capture.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

pub struct PcapngWriter {
    base: PathBuf,
    ifaces: Vec<(String, u32)>,
    out: BufWriter<File>,
    written: u64,
    limit: u64,
    part: u32,
    pub packets: u64,
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

fn option(buf: &mut Vec<u8>, code: u16, value: &[u8]) {
    buf.extend_from_slice(&code.to_le_bytes());
    buf.extend_from_slice(&(value.len() as u16).to_le_bytes());
    buf.extend_from_slice(value);
    buf.resize(pad4(buf.len()), 0);
}

fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let len = (12 + pad4(body.len())) as u32;
    let mut b = Vec::with_capacity(len as usize);
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(body);
    b.resize(8 + pad4(body.len()), 0);
    b.extend_from_slice(&len.to_le_bytes());
    b
}

fn header(ifaces: &[(String, u32)]) -> Vec<u8> {
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    option(&mut shb, 4, b"kcdscope watch"); // shb_userappl
    option(&mut shb, 0, &[]);
    let mut out = block(0x0A0D_0D0A, &shb);
    for (name, link) in ifaces {
        let mut idb = Vec::new();
        idb.extend_from_slice(&(*link as u16).to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&0u32.to_le_bytes()); // snaplen: none
        option(&mut idb, 2, name.as_bytes()); // if_name
        option(&mut idb, 9, &[9]); // if_tsresol: nanoseconds
        option(&mut idb, 0, &[]);
        out.extend_from_slice(&block(1, &idb));
    }
    out
}

impl PcapngWriter {
    /// `limit` bytes per file (0: no limit).
    /// An existing FILE is appended to: a pcapng file may hold several sections, each with
    /// its own header, so a restarted service loses nothing it wrote before.
    pub fn create(base: &Path, ifaces: Vec<(String, u32)>, limit: u64) -> io::Result<Self> {
        let before = std::fs::metadata(base).map_or(0, |m| m.len());
        let mut out = BufWriter::new(std::fs::OpenOptions::new().create(true).append(true).open(base)?);
        let h = header(&ifaces);
        out.write_all(&h)?;
        Ok(PcapngWriter { base: base.to_path_buf(), ifaces, out, written: before + h.len() as u64, limit, part: 0, packets: 0 })
    }

    /// The files written so far, in order.
    pub fn files(&self) -> Vec<PathBuf> {
        (0..=self.part).map(|p| self.part_path(p)).collect()
    }

    fn part_path(&self, p: u32) -> PathBuf {
        if p == 0 {
            self.base.clone()
        } else {
            let mut s = self.base.clone().into_os_string();
            s.push(format!(".{p}"));
            PathBuf::from(s)
        }
    }

    pub fn write(&mut self, iface: usize, ts_ns: i64, data: &[u8], orig_len: u32) -> io::Result<()> {
        let mut epb = Vec::with_capacity(20 + data.len() + 4);
        let ts = ts_ns.max(0) as u64;
        epb.extend_from_slice(&(iface as u32).to_le_bytes());
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&orig_len.max(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(data);
        let b = block(6, &epb);
        if self.limit > 0 && self.written + b.len() as u64 > self.limit && self.packets > 0 {
            self.out.flush()?;
            self.part += 1;
            self.out = BufWriter::new(File::create(self.part_path(self.part))?);
            let h = header(&self.ifaces);
            self.out.write_all(&h)?;
            self.written = h.len() as u64;
        }
        self.out.write_all(&b)?;
        self.written += b.len() as u64;
        self.packets += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcap_parser_reads_back_what_was_written_across_rotation() {
        use pcap_parser::traits::PcapReaderIterator;
        let dir = std::env::temp_dir().join(format!("kcd-pcapng-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let base = dir.join("w.pcapng");
        let mut w = PcapngWriter::create(&base, vec![("veth0".into(), 1), ("lo".into(), 1)], 2000).expect("create");
        for i in 0..10u8 {
            w.write(usize::from(i % 2), 1_700_000_000_123_456_789 + i64::from(i), &vec![i; 301], 301).expect("write");
        }
        w.flush().expect("flush");
        let files = w.files();
        assert!(files.len() > 1, "rotated: {files:?}");
        let mut seen = Vec::new();
        for f in &files {
            let mut r = pcap_parser::PcapNGReader::new(65536, File::open(f).expect("open")).expect("pcapng");
            loop {
                match r.next() {
                    Ok((off, pcap_parser::PcapBlockOwned::NG(pcap_parser::Block::EnhancedPacket(e)))) => {
                        seen.push((e.if_id, ((u64::from(e.ts_high) << 32) | u64::from(e.ts_low)), e.caplen, e.data[0]));
                        r.consume(off);
                    }
                    Ok((off, _)) => r.consume(off),
                    Err(pcap_parser::PcapError::Eof) => break,
                    Err(pcap_parser::PcapError::Incomplete(_)) => r.refill().expect("refill"),
                    Err(e) => panic!("{e:?}"),
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(seen.len(), 10);
        for (i, s) in seen.iter().enumerate() {
            assert_eq!(*s, ((i % 2) as u32, 1_700_000_000_123_456_789 + i as u64, 301, i as u8));
        }
    }
}
