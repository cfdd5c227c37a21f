//! Reading the spool (the NDJSON file output, `NAME` and its rotated `NAME.000001`...)
//! from a checkpoint.
//!
//! A position names a file by its rotation number, its inode and a fingerprint of its first
//! bytes, and an offset in it. Rotation renames (the inode and the bytes stay), so a position
//! taken in the current file is still valid once that file is `NAME.N`: the current file's
//! number is the one it will get, one more than the last rotated file's. The fingerprint
//! tells a file recreated in place (a replay without rotation starts `-o FILE` afresh, and
//! the kernel may hand out the same inode again) from the one the checkpoint was taken in.
//! When the checkpoint's file is gone (deleted to bound the spool), reading goes on at the
//! first later file, and the gap is counted.
//!
//! The checkpoint is saved as a temporary file, synced, renamed over the old one and the
//! directory synced: it is always one whole checkpoint, the old or the new.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::outputs::file::rotated_files;

/// Bytes of a file's start that identify it.
pub const FINGERPRINT_BYTES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    pub seq: u64,
    pub ino: u64,
    pub fingerprint: u64,
    pub offset: u64,
}

impl Checkpoint {
    pub fn to_line(&self) -> String {
        format!("kcdscope-checkpoint 1 seq={} ino={} fp={:016x} offset={}\n", self.seq, self.ino, self.fingerprint, self.offset)
    }

    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split_whitespace();
        if it.next()? != "kcdscope-checkpoint" || it.next()? != "1" {
            return None;
        }
        let mut c = Checkpoint::default();
        for kv in it {
            let (k, v) = kv.split_once('=')?;
            match k {
                "seq" => c.seq = v.parse().ok()?,
                "ino" => c.ino = v.parse().ok()?,
                "fp" => c.fingerprint = u64::from_str_radix(v, 16).ok()?,
                "offset" => c.offset = v.parse().ok()?,
                _ => {}
            }
        }
        Some(c)
    }
}

/// One file of the spool as listed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolFile {
    pub seq: u64,
    pub ino: u64,
    /// Fingerprint of the first `FINGERPRINT_BYTES` (of fewer, while the file is shorter).
    pub fingerprint: u64,
    pub len: u64,
    pub path: PathBuf,
}

/// Where reading starts, given the spool's files (oldest first, the current file last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub index: usize,
    pub offset: u64,
    /// The checkpoint's file is gone (deleted while full, or recreated): what it still held
    /// unread is lost to this output.
    pub gap: bool,
}

/// Pure: where to start reading `files` from `ck`.
pub fn locate(files: &[SpoolFile], ck: Option<&Checkpoint>) -> Option<Start> {
    if files.is_empty() {
        return None;
    }
    let Some(ck) = ck else { return Some(Start { index: 0, offset: 0, gap: false }) };
    let same = files.iter().position(|f| {
        // The fingerprint is compared when the checkpoint's offset covers it (it was taken
        // over the same number of bytes or more).
        f.seq == ck.seq && f.ino == ck.ino && f.len >= ck.offset && (ck.offset < FINGERPRINT_BYTES as u64 || f.fingerprint == ck.fingerprint)
    });
    if let Some(index) = same {
        return Some(Start { index, offset: ck.offset, gap: false });
    }
    // Gone: the first file after it, or (the spool started afresh with lower numbers) the
    // oldest there is.
    let index = files.iter().position(|f| f.seq > ck.seq || (f.seq == ck.seq && f.ino != ck.ino)).unwrap_or(0);
    Some(Start { index, offset: 0, gap: ck.offset > 0 || files.iter().all(|f| f.seq != ck.seq) })
}

fn fingerprint_of(path: &Path) -> io::Result<u64> {
    fingerprint_from(&mut File::open(path)?)
}

fn fingerprint_from(f: &mut File) -> io::Result<u64> {
    let mut head = [0u8; FINGERPRINT_BYTES];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(fingerprint(&head[..n]))
}

/// The fingerprint of a file's first bytes (fewer than `FINGERPRINT_BYTES` while short).
pub fn fingerprint(head: &[u8]) -> u64 {
    let d = Sha256::digest(&head[..head.len().min(FINGERPRINT_BYTES)]);
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

#[cfg(unix)]
fn ino(m: &fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}
#[cfg(not(unix))]
fn ino(_: &fs::Metadata) -> u64 {
    0
}

/// The spool's files now: rotated ones by number, then the current one (numbered one more).
///
/// The writer renames the current file away at any moment. Read the directory first and
/// then the current file, and the current file may be one rotation newer than the
/// listing: numbered as the file it follows, which would be skipped. So the current file
/// is opened first (its inode and first bytes from that one handle), the rotated files
/// listed after, and the whole taken again if the opened file is among them (rotated in
/// between).
pub fn list(path: &Path) -> io::Result<Vec<SpoolFile>> {
    let mut tries = 0;
    loop {
        tries += 1;
        let current = match File::open(path) {
            Ok(mut f) => {
                let m = f.metadata()?;
                Some((ino(&m), fingerprint_from(&mut f)?, m.len()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let rotated = rotated_files(path)?;
        let next = rotated.last().map_or(1, |(n, _)| n + 1);
        let mut out = Vec::with_capacity(rotated.len() + 1);
        for (seq, p) in rotated {
            // A file may go between the listing and here (deleted when the spool is full).
            let Ok(m) = fs::metadata(&p) else { continue };
            let Ok(fp) = fingerprint_of(&p) else { continue };
            out.push(SpoolFile { seq, ino: ino(&m), fingerprint: fp, len: m.len(), path: p });
        }
        if let Some((ino, fingerprint, len)) = current {
            if out.iter().any(|f| f.ino == ino) && tries < 100 {
                continue;
            }
            out.push(SpoolFile { seq: next, ino, fingerprint, len, path: path.to_path_buf() });
        }
        return Ok(out);
    }
}

pub fn load_checkpoint(path: &Path) -> io::Result<Option<Checkpoint>> {
    match fs::read_to_string(path) {
        Ok(s) => Checkpoint::parse(&s)
            .map(Some)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{}: not a kcdscope checkpoint", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `ck` to `path` atomically: a temporary file beside it, synced, renamed over it.
pub fn save_checkpoint(path: &Path, ck: &Checkpoint) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(ck.to_line().as_bytes())?;
        f.sync_data()?;
    }
    fs::rename(&tmp, path)?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// One event line read from the spool and the position just after it.
pub struct Line {
    pub bytes: Vec<u8>,
    pub end: Checkpoint,
}

/// Reads whole lines from the spool, following it as it grows and rotates.
pub struct SpoolReader {
    path: PathBuf,
    file: Option<(File, Checkpoint)>,
    buf: Vec<u8>,
    /// Start of unread bytes in `buf`.
    pos: usize,
    /// Whether the open file's fingerprint covers all `FINGERPRINT_BYTES` (it was shorter
    /// when opened).
    fp_full: bool,
    /// Checkpoints whose file was gone.
    pub gaps: u64,
}

impl SpoolReader {
    pub fn new(path: &Path) -> Self {
        Self { path: path.to_path_buf(), file: None, buf: Vec::new(), pos: 0, fp_full: false, gaps: 0 }
    }

    fn open_at(&mut self, files: &[SpoolFile], start: &Start) -> io::Result<()> {
        let Some(f) = files.get(start.index) else { return Ok(()) };
        // The listed file is opened by its name, which the writer may have given to a new
        // file since (the listed one renamed away by a rotation, or not yet recreated): the
        // file with the listed inode is looked up again under its new name.
        let same = |h: &File| h.metadata().is_ok_and(|m| ino(&m) == f.ino);
        let mut h = match File::open(&f.path) {
            Ok(h) if same(&h) => Some(h),
            Ok(_) => None,
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if h.is_none() {
            if let Some(g) = list(&self.path)?.into_iter().find(|g| g.ino == f.ino) {
                h = Some(File::open(&g.path)?);
            }
        }
        let Some(mut h) = h else {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{}: gone while being opened", f.path.display())));
        };
        h.seek(SeekFrom::Start(start.offset))?;
        let ck = Checkpoint { seq: f.seq, ino: f.ino, fingerprint: f.fingerprint, offset: start.offset };
        self.file = Some((h, ck));
        self.fp_full = f.len >= FINGERPRINT_BYTES as u64;
        self.buf.clear();
        self.pos = 0;
        Ok(())
    }

    /// Positions the reader at `ck` (None: the spool's beginning).
    pub fn seek(&mut self, ck: Option<&Checkpoint>) -> io::Result<()> {
        let files = list(&self.path)?;
        self.file = None;
        if let Some(s) = locate(&files, ck) {
            if s.gap {
                self.gaps += 1;
            }
            self.open_at(&files, &s)?;
        }
        Ok(())
    }

    /// Refills the buffer; false when nothing new was read.
    fn fill(&mut self) -> io::Result<bool> {
        let Some((f, _)) = self.file.as_mut() else { return Ok(false) };
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + (256 << 10), 0);
        let n = f.read(&mut self.buf[old..])?;
        self.buf.truncate(old + n);
        Ok(n > 0)
    }

    /// The next whole line, or None when the spool has nothing more now (a line still being
    /// written waits for its newline).
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            if self.file.is_none() {
                self.seek(None)?;
                if self.file.is_none() {
                    return Ok(None);
                }
            }
            if let Some(nl) = self.buf[self.pos..].iter().position(|b| *b == b'\n') {
                let bytes = self.buf[self.pos..self.pos + nl].to_vec();
                self.pos += nl + 1;
                let Some((_, ck)) = self.file.as_mut() else { return Ok(None) };
                ck.offset += (nl + 1) as u64;
                if !self.fp_full {
                    // The fingerprint of a file opened while shorter than its head.
                    if let Some(f) = list(&self.path)?.iter().find(|f| f.seq == ck.seq && f.ino == ck.ino) {
                        ck.fingerprint = f.fingerprint;
                        self.fp_full = f.len >= FINGERPRINT_BYTES as u64;
                    }
                }
                if bytes.is_empty() {
                    continue;
                }
                return Ok(Some(Line { bytes, end: *ck }));
            }
            if self.fill()? {
                continue;
            }
            // At the end of this file: is there a later one?
            let Some((_, ck)) = self.file.as_ref() else { return Ok(None) };
            let ck = *ck;
            let files = list(&self.path)?;
            let Some(next) = files.iter().position(|f| f.seq > ck.seq) else { return Ok(None) };
            let ours_rotated = files.iter().any(|f| f.seq == ck.seq && f.ino == ck.ino);
            // The writer renames only after its last write: read once more, to the end.
            if self.fill()? {
                continue;
            }
            if !ours_rotated && files.iter().any(|f| f.seq == ck.seq) {
                // Our file was replaced: the rest of the spool from the next file.
                self.gaps += 1;
            }
            if self.pos < self.buf.len() {
                // A rotated file that does not end in a newline (not from our writer): its
                // last bytes are a line.
                let bytes = self.buf[self.pos..].to_vec();
                let mut end = ck;
                end.offset += bytes.len() as u64;
                self.open_at(&files, &Start { index: next, offset: 0, gap: false })?;
                return Ok(Some(Line { bytes, end }));
            }
            self.open_at(&files, &Start { index: next, offset: 0, gap: false })?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(seq: u64, ino: u64, len: u64) -> SpoolFile {
        SpoolFile { seq, ino, fingerprint: ino * 7, len, path: PathBuf::from(format!("s.{seq}")) }
    }
    fn ck(seq: u64, ino: u64, offset: u64) -> Checkpoint {
        Checkpoint { seq, ino, fingerprint: ino * 7, offset }
    }

    #[test]
    fn a_checkpoint_survives_the_rotation_of_its_file() {
        // Taken in the current file (number 3, inode 30); since then it became NAME.3.
        let files = [f(2, 20, 100), f(3, 30, 500), f(4, 40, 10)];
        assert_eq!(locate(&files, Some(&ck(3, 30, 480))), Some(Start { index: 1, offset: 480, gap: false }));
        assert_eq!(locate(&files, None), Some(Start { index: 0, offset: 0, gap: false }));
        assert_eq!(locate(&[], None), None);
    }

    #[test]
    fn a_deleted_file_is_a_gap_and_reading_goes_on_at_the_next() {
        let files = [f(5, 50, 100), f(6, 60, 100)];
        assert_eq!(locate(&files, Some(&ck(3, 30, 10))), Some(Start { index: 0, offset: 0, gap: true }));
        // Read to its very end before it went: still a gap of nothing, so reported only when
        // something was unread (offset>0 is all the checkpoint knows: reported).
        assert_eq!(locate(&files, Some(&ck(5, 99, 10))).map(|s| s.index), Some(0), "same number, other inode: replaced");
    }

    #[test]
    fn a_file_recreated_in_place_is_read_from_its_start() {
        // Same number and inode (reused), other first bytes: not the checkpoint's file.
        let mut recreated = f(1, 10, 900);
        recreated.fingerprint = 12345;
        assert_eq!(locate(&[recreated.clone()], Some(&ck(1, 10, 500))), Some(Start { index: 0, offset: 0, gap: true }));
        // Shorter than the checkpoint's offset: truncated, from its start too.
        assert_eq!(locate(&[f(1, 10, 100)], Some(&ck(1, 10, 500))).map(|s| s.offset), Some(0));
    }

    #[test]
    fn the_checkpoint_line_round_trips_and_rejects_other_files() {
        let c = Checkpoint { seq: 7, ino: 123456, fingerprint: 0xdead_beef_0000_0001, offset: 99 };
        assert_eq!(Checkpoint::parse(&c.to_line()), Some(c));
        assert_eq!(Checkpoint::parse("hello"), None);
        assert_eq!(Checkpoint::parse("kcdscope-checkpoint 1 seq=x"), None);
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kcd-spool-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("temp dir");
        d.join("events.ndjson")
    }

    #[test]
    fn the_reader_follows_rotation_and_resumes_from_a_saved_checkpoint() {
        use crate::outputs::file::{RotatingFile, Rotation};
        let path = tmp("follow");
        let cfg = Rotation { max_bytes: Some(200), ..Default::default() };
        let mut w = RotatingFile::open(&path, cfg).expect("open");
        let want: Vec<String> = (0..60).map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "y".repeat(i % 50))).collect();
        let mut r = SpoolReader::new(&path);
        let mut got = Vec::new();
        let mut last = None;
        for (i, l) in want.iter().enumerate() {
            writeln!(w, "{l}").expect("write");
            if i % 7 == 0 {
                while let Some(line) = r.next_line().expect("read") {
                    got.push(String::from_utf8(line.bytes).expect("utf8"));
                    last = Some(line.end);
                }
            }
            if i == 30 {
                // A restart: a new reader from the saved checkpoint.
                let ckp = path.with_extension("ckpt");
                save_checkpoint(&ckp, &last.expect("read something")).expect("save");
                r = SpoolReader::new(&path);
                r.seek(load_checkpoint(&ckp).expect("load").as_ref()).expect("seek");
            }
        }
        drop(w);
        while let Some(line) = r.next_line().expect("read") {
            got.push(String::from_utf8(line.bytes).expect("utf8"));
        }
        assert!(rotated_files(&path).expect("list").len() > 5);
        assert_eq!(got, want);
        assert_eq!(r.gaps, 0);
    }

    #[test]
    fn a_reader_following_a_writer_that_rotates_fast_misses_nothing() {
        use crate::outputs::file::{RotatingFile, Rotation};
        let path = tmp("fast");
        let want: Vec<String> = (0..3000).map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "z".repeat(i % 90))).collect();
        let w_path = path.clone();
        let w_lines = want.clone();
        // Files of a few lines each, written as fast as they come: the reader lists the
        // spool while files are renamed away under it.
        let writer = std::thread::spawn(move || {
            let mut w = RotatingFile::open(&w_path, Rotation { max_bytes: Some(300), fsync: crate::outputs::file::Fsync::Never, ..Default::default() }).expect("open");
            for l in &w_lines {
                writeln!(w, "{l}").expect("write");
            }
        });
        let mut r = SpoolReader::new(&path);
        let mut got = Vec::new();
        let t0 = std::time::Instant::now();
        while got.len() < want.len() && t0.elapsed() < std::time::Duration::from_secs(60) {
            match r.next_line().expect("read") {
                Some(l) => got.push(String::from_utf8(l.bytes).expect("utf8")),
                None => std::thread::yield_now(),
            }
        }
        writer.join().expect("writer");
        assert_eq!(r.gaps, 0);
        assert!(got == want, "{} of {} lines, in order", got.len(), want.len());
    }
}
