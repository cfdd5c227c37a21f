//! NDJSON file with rotation by size and by age. A line is never split across files:
//! bytes are taken up to the last newline, lines go into the current file until one would
//! take it past the size limit, then the file is closed (and fsynced, as the policy says)
//! and renamed to `NAME.000001`, `NAME.000002`... (increasing, so that a tailer reading
//! `NAME.*` in name order reads them in writing order), and a new `NAME` is started.
//! Rename, never copy-and-truncate: a tailer that holds the old file open reads it to its
//! end. A single line longer than the limit gets a file of its own.
//!
//! Fsync policy (`Fsync`): `never` leaves it to the kernel (a crash of the machine may lose
//! the last seconds; a crash of kcdscope loses nothing written); `rotate` (default) syncs each
//! file when it is closed, and the directory after the rename, so a rotated file is on disk
//! whole; `interval` adds a sync of the current file at most every given time; `always`
//! syncs after every write (slow; for tests of durability).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fsync {
    Never,
    #[default]
    Rotate,
    Interval(Duration),
    Always,
}

#[derive(Debug, Clone, Default)]
pub struct Rotation {
    /// Start a new file before one would grow past this many bytes.
    pub max_bytes: Option<u64>,
    /// Start a new file when the current one is this old (and not empty).
    pub max_age: Option<Duration>,
    /// Rotated files kept (oldest deleted first, counted); None keeps them all.
    pub keep: Option<usize>,
    pub fsync: Fsync,
    /// The spool's bound: rotated files are deleted, oldest first, while all files together
    /// hold more than this many bytes. Events in them that an output had not shipped yet
    /// (its checkpoint, in `checkpoints`, is before them) are counted as dropped.
    pub max_total_bytes: Option<u64>,
    /// The checkpoint files of the outputs that ship this file.
    pub checkpoints: Vec<PathBuf>,
}

impl Rotation {
    pub fn rotates(&self) -> bool {
        self.max_bytes.is_some() || self.max_age.is_some()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileCounters {
    pub lines: u64,
    pub bytes: u64,
    pub rotations: u64,
    pub fsyncs: u64,
    /// Rotated files deleted to respect `keep` or `max_total_bytes`.
    pub deleted: u64,
    /// Events deleted with them before every output had shipped them.
    pub dropped_unshipped: u64,
}

/// Pure: from which offset the lines of rotated file (`seq`, `ino`) are still unshipped by
/// at least one of the outputs at `checkpoints` (None: every output is past it).
pub fn unshipped_from(seq: u64, ino: u64, checkpoints: &[crate::outputs::ship::spool::Checkpoint]) -> Option<u64> {
    checkpoints
        .iter()
        .filter_map(|c| match c.seq.cmp(&seq) {
            std::cmp::Ordering::Less => Some(0),
            std::cmp::Ordering::Equal if c.ino == ino => Some(c.offset),
            std::cmp::Ordering::Equal => Some(0),
            std::cmp::Ordering::Greater => None,
        })
        .min()
}

pub struct RotatingFile {
    path: PathBuf,
    cfg: Rotation,
    file: File,
    size: u64,
    opened: Instant,
    last_sync: Instant,
    next_seq: u64,
    /// Bytes after the last newline, held until their line is complete.
    pending: Vec<u8>,
    pub counters: FileCounters,
}

/// `NAME.N` for every rotated file of `path`, sorted by N.
pub fn rotated_files(path: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}.");
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let n = e.file_name();
        let Some(n) = n.to_str() else { continue };
        if let Some(seq) = n.strip_prefix(&prefix).and_then(|s| s.parse::<u64>().ok()) {
            out.push((seq, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

impl RotatingFile {
    /// Opens `path` for appending (a restart continues the current file) when rotation is
    /// configured; otherwise creates it afresh, as `-o` always did.
    pub fn open(path: &Path, cfg: Rotation) -> io::Result<Self> {
        let append = cfg.rotates();
        Self::open_with(path, cfg, append)
    }

    /// Opens `path` for appending, rotating or not: a service restarted (watch, the
    /// gateway) goes on after what it wrote before.
    pub fn append(path: &Path, cfg: Rotation) -> io::Result<Self> {
        Self::open_with(path, cfg, true)
    }

    fn open_with(path: &Path, cfg: Rotation, append: bool) -> io::Result<Self> {
        let file = if append {
            OpenOptions::new().create(true).append(true).open(path)?
        } else {
            File::create(path)?
        };
        let size = file.metadata()?.len();
        let next_seq = rotated_files(path)?.last().map_or(1, |(n, _)| n + 1);
        let now = Instant::now();
        Ok(Self {
            path: path.to_path_buf(),
            cfg,
            file,
            size,
            opened: now,
            last_sync: now,
            next_seq,
            pending: Vec::new(),
            counters: FileCounters::default(),
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.counters.fsyncs += 1;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.cfg.fsync != Fsync::Never {
            self.sync()?;
        }
        let to = PathBuf::from(format!("{}.{:06}", self.path.display(), self.next_seq));
        fs::rename(&self.path, &to)?;
        self.next_seq += 1;
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        if self.cfg.fsync != Fsync::Never {
            // The rename and the new file's entry are in the directory: sync it too.
            let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            File::open(dir)?.sync_all()?;
            self.counters.fsyncs += 1;
        }
        self.size = 0;
        self.opened = Instant::now();
        self.counters.rotations += 1;
        let old = rotated_files(&self.path)?;
        let mut excess = old.len().saturating_sub(self.cfg.keep.unwrap_or(usize::MAX));
        if let Some(max) = self.cfg.max_total_bytes {
            let sizes: Vec<u64> = old.iter().map(|(_, p)| fs::metadata(p).map_or(0, |m| m.len())).collect();
            // Room for the new current file to grow to its size limit: the bound holds
            // between rotations too.
            let mut total: u64 = sizes.iter().sum::<u64>() + self.cfg.max_bytes.unwrap_or(0);
            let mut n = 0;
            while total > max && n < sizes.len() {
                total -= sizes[n];
                n += 1;
            }
            excess = excess.max(n);
        }
        for (seq, p) in old.iter().take(excess) {
            self.count_unshipped(*seq, p);
            fs::remove_file(p)?;
            self.counters.deleted += 1;
        }
        Ok(())
    }

    fn count_unshipped(&mut self, seq: u64, p: &Path) {
        if self.cfg.checkpoints.is_empty() {
            return;
        }
        let cks: Vec<_> = self
            .cfg
            .checkpoints
            .iter()
            .filter_map(|c| crate::outputs::ship::spool::load_checkpoint(c).ok().flatten())
            .collect();
        // An output that never saved a checkpoint has shipped nothing.
        let mut cks = cks;
        if cks.len() < self.cfg.checkpoints.len() {
            cks.push(crate::outputs::ship::spool::Checkpoint::default());
        }
        let ino = fs::metadata(p).map_or(0, |m| std::os::unix::fs::MetadataExt::ino(&m));
        if let Some(from) = unshipped_from(seq, ino, &cks) {
            if let Ok(bytes) = fs::read(p) {
                let from = (from as usize).min(bytes.len());
                self.counters.dropped_unshipped += bytes[from..].iter().filter(|b| **b == b'\n').count() as u64;
            }
        }
    }

    /// Writes whole lines (each ending in '\n'), rotating between lines.
    fn write_lines(&mut self, mut lines: &[u8]) -> io::Result<()> {
        while !lines.is_empty() {
            let too_old = self.cfg.max_age.is_some_and(|a| self.opened.elapsed() >= a);
            if too_old && self.size > 0 {
                self.rotate()?;
            }
            // As many lines as fit; at least one (into an empty file) so that progress is made.
            let room = self.cfg.max_bytes.map_or(u64::MAX, |m| m.saturating_sub(self.size));
            let mut take = 0usize;
            let mut n_lines = 0u64;
            for (i, b) in lines.iter().enumerate() {
                if *b == b'\n' {
                    if (i + 1) as u64 > room {
                        break;
                    }
                    take = i + 1;
                    n_lines += 1;
                }
            }
            if take == 0 {
                if self.size > 0 {
                    self.rotate()?;
                    continue;
                }
                // One line longer than the limit: alone in its file.
                take = lines.iter().position(|b| *b == b'\n').map_or(lines.len(), |p| p + 1);
                n_lines = 1;
            }
            self.file.write_all(&lines[..take])?;
            self.size += take as u64;
            self.counters.bytes += take as u64;
            self.counters.lines += n_lines;
            lines = &lines[take..];
            match self.cfg.fsync {
                Fsync::Always => self.sync()?,
                Fsync::Interval(d) if self.last_sync.elapsed() >= d => self.sync()?,
                _ => {}
            }
        }
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match buf.iter().rposition(|b| *b == b'\n') {
            None => self.pending.extend_from_slice(buf),
            Some(last) => {
                if self.pending.is_empty() {
                    self.write_lines(&buf[..=last])?;
                } else {
                    let mut joined = std::mem::take(&mut self.pending);
                    joined.extend_from_slice(&buf[..=last]);
                    self.write_lines(&joined)?;
                }
                self.pending.extend_from_slice(&buf[last + 1..]);
            }
        }
        Ok(buf.len())
    }

    /// Writes what is pending (an unfinished last line stays pending until its newline)
    /// and syncs only as the policy says: at most once a second under `second` (`always`
    /// synced each write already; `rotate` syncs at rotation and close). The gateway
    /// flushes after every event: a sync there cost a disk round trip per request, on the
    /// request's path (keep-alive requests/s fell from about 20,000 to 2,800).
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if let Fsync::Interval(d) = self.cfg.fsync {
            if self.last_sync.elapsed() >= d {
                self.sync()?;
            }
        }
        Ok(())
    }
}

impl Drop for RotatingFile {
    fn drop(&mut self) {
        // A last line without its newline (never from NdjsonWriter) is written rather than lost.
        if !self.pending.is_empty() {
            let mut p = std::mem::take(&mut self.pending);
            p.push(b'\n');
            let _ = self.write_lines(&p);
        }
        // Closed: synced, as the policy promises for every file but under `never`.
        if self.cfg.fsync != Fsync::Never {
            let _ = self.sync();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kcd-rot-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("temp dir");
        d.join("events.ndjson")
    }

    fn all_lines(path: &Path) -> (Vec<String>, Vec<u64>) {
        let mut files: Vec<PathBuf> = rotated_files(path).expect("list").into_iter().map(|(_, p)| p).collect();
        files.push(path.to_path_buf());
        let mut lines = Vec::new();
        let mut sizes = Vec::new();
        for f in files {
            let t = fs::read_to_string(&f).expect("read");
            sizes.push(t.len() as u64);
            assert!(t.is_empty() || t.ends_with('\n'), "{} ends mid-line", f.display());
            lines.extend(t.lines().map(str::to_string));
        }
        (lines, sizes)
    }

    #[test]
    fn size_rotation_never_splits_a_line_and_keeps_order() {
        let path = tmp("size");
        let cfg = Rotation { max_bytes: Some(1000), ..Default::default() };
        let mut f = RotatingFile::open(&path, cfg).expect("open");
        let want: Vec<String> = (0..500).map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 97))).collect();
        // Written in chunks that cut lines anywhere, as a buffered writer may.
        let text: String = want.iter().map(|l| format!("{l}\n")).collect();
        for chunk in text.as_bytes().chunks(333) {
            f.write_all(chunk).expect("write");
        }
        f.flush().expect("flush");
        let c = f.counters.clone();
        drop(f);
        let (got, sizes) = all_lines(&path);
        assert_eq!(got, want);
        assert!(sizes.iter().all(|s| *s <= 1000), "{sizes:?}");
        assert_eq!(c.lines, 500);
        assert_eq!(c.rotations as usize + 1, sizes.len());
        assert!(c.rotations > 10, "{c:?}");
    }

    #[test]
    fn flushing_syncs_only_as_the_policy_says() {
        let lines = |f: &mut RotatingFile, n: usize| {
            for i in 0..n {
                f.write_all(format!("{{\"n\":{i}}}\n").as_bytes()).expect("write");
                f.flush().expect("flush");
            }
            f.counters.fsyncs
        };
        let path = tmp("sync-rotate");
        let mut f = RotatingFile::open(&path, Rotation::default()).expect("open");
        assert_eq!(lines(&mut f, 100), 0, "rotate: a flush after each event syncs nothing");
        let path = tmp("sync-always");
        let mut f = RotatingFile::open(&path, Rotation { fsync: Fsync::Always, ..Default::default() }).expect("open");
        assert_eq!(lines(&mut f, 10), 10, "always: each write");
        let path = tmp("sync-second");
        let mut f = RotatingFile::open(&path, Rotation { fsync: Fsync::Interval(Duration::from_secs(3600)), ..Default::default() }).expect("open");
        assert_eq!(lines(&mut f, 100), 0, "second: not before the interval");
        f.last_sync -= Duration::from_secs(3601);
        assert_eq!(lines(&mut f, 1), 1, "second: once the interval passed");
        let path = tmp("sync-rotation");
        let mut f = RotatingFile::open(&path, Rotation { max_bytes: Some(50), ..Default::default() }).expect("open");
        lines(&mut f, 20);
        assert!(f.counters.rotations > 0 && f.counters.fsyncs >= f.counters.rotations, "rotate: each rotated file synced {:?}", f.counters);
    }

    #[test]
    fn a_line_longer_than_the_limit_gets_its_own_file() {
        let path = tmp("long");
        let mut f = RotatingFile::open(&path, Rotation { max_bytes: Some(10), ..Default::default() }).expect("open");
        f.write_all(b"a\nbbbbbbbbbbbbbbbbbbbb\nc\n").expect("write");
        drop(f);
        let (got, _) = all_lines(&path);
        assert_eq!(got, ["a", "bbbbbbbbbbbbbbbbbbbb", "c"]);
        assert_eq!(rotated_files(&path).expect("list").len(), 2);
    }

    #[test]
    fn keep_deletes_the_oldest_and_counts_it() {
        let path = tmp("keep");
        let cfg = Rotation { max_bytes: Some(4), keep: Some(2), ..Default::default() };
        let mut f = RotatingFile::open(&path, cfg).expect("open");
        for i in 0..6 {
            writeln!(f, "{i}{i}{i}").expect("write");
        }
        let c = f.counters.clone();
        drop(f);
        let rotated = rotated_files(&path).expect("list");
        assert_eq!(rotated.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(c.deleted, 3);
        assert_eq!(fs::read_to_string(&path).expect("current"), "555\n");
    }

    #[test]
    fn a_full_spool_drops_the_oldest_and_counts_what_was_not_shipped() {
        use crate::outputs::ship::spool::{list, save_checkpoint, Checkpoint};
        let path = tmp("bound");
        let ckp = path.with_extension("ckpt");
        // Each line 4 bytes, each file one line; the bound keeps about 3 files.
        let cfg = Rotation { max_bytes: Some(4), max_total_bytes: Some(12), checkpoints: vec![ckp.clone()], ..Default::default() };
        let mut f = RotatingFile::open(&path, cfg).expect("open");
        writeln!(f, "000").expect("write");
        writeln!(f, "111").expect("write");
        // The output has shipped file 1 (the "000" line) whole.
        let first = list(&path).expect("list").into_iter().next().expect("a file");
        save_checkpoint(&ckp, &Checkpoint { seq: first.seq, ino: first.ino, fingerprint: first.fingerprint, offset: 4 }).expect("save");
        for i in 2..8 {
            writeln!(f, "{i}{i}{i}").expect("write");
        }
        let c = f.counters.clone();
        drop(f);
        let (got, _) = all_lines(&path);
        assert_eq!(got, ["555", "666", "777"]);
        assert_eq!(c.deleted, 5);
        // Deleted: 000 (shipped), 111, 222, 333, 444 (not shipped).
        assert_eq!(c.dropped_unshipped, 4);
        assert_eq!(unshipped_from(3, 9, &[Checkpoint { seq: 2, ..Default::default() }]), Some(0));
        assert_eq!(unshipped_from(3, 9, &[Checkpoint { seq: 3, ino: 9, offset: 40, fingerprint: 0 }]), Some(40));
        assert_eq!(unshipped_from(3, 9, &[Checkpoint { seq: 4, ..Default::default() }]), None);
    }

    #[test]
    fn age_rotation_and_a_restart_continues_the_numbering() {
        let path = tmp("age");
        let cfg = Rotation { max_age: Some(Duration::from_millis(200)), ..Default::default() };
        let mut f = RotatingFile::open(&path, cfg.clone()).expect("open");
        writeln!(f, "one").expect("write");
        std::thread::sleep(Duration::from_millis(250));
        writeln!(f, "two").expect("write");
        drop(f);
        assert_eq!(rotated_files(&path).expect("list").len(), 1);
        let mut f = RotatingFile::open(&path, cfg).expect("reopen");
        std::thread::sleep(Duration::from_millis(250));
        writeln!(f, "three").expect("write");
        drop(f);
        let (got, _) = all_lines(&path);
        assert_eq!(got, ["one", "two", "three"]);
        assert_eq!(rotated_files(&path).expect("list").iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 2]);
    }
}
