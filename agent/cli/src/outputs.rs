//! Command-line options of the NDJSON file output (`-o FILE`): rotation and fsync.

use std::time::Duration;

use clap::{Args, ValueEnum};
use kcd_export::outputs::file::{Fsync, Rotation};

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum FsyncArg {
    /// Leave it to the kernel.
    Never,
    /// Sync each file when it is rotated or closed (and the directory after the rename).
    Rotate,
    /// As `rotate`, and the current file at most once a second.
    Second,
    /// After every write.
    Always,
}

#[derive(Args)]
pub(crate) struct FileOutputArgs {
    /// With -o: start a new file before the current one would pass this many bytes
    /// (the old one becomes FILE.000001, FILE.000002...; a line is never split).
    #[arg(long, value_name = "BYTES", requires = "output")]
    rotate_bytes: Option<u64>,

    /// With -o: start a new file when the current one is this many seconds old.
    #[arg(long, value_name = "SECONDS", requires = "output")]
    rotate_seconds: Option<u64>,

    /// With -o and rotation: keep this many rotated files, deleting the oldest.
    #[arg(long, value_name = "N", requires = "output")]
    rotate_keep: Option<usize>,

    /// With -o: when to fsync the file.
    #[arg(long, value_enum, default_value = "rotate", requires = "output")]
    fsync: FsyncArg,
}

impl FileOutputArgs {
    pub(crate) fn rotation(&self) -> Rotation {
        Rotation {
            max_bytes: self.rotate_bytes,
            max_age: self.rotate_seconds.map(Duration::from_secs),
            keep: self.rotate_keep,
            fsync: match self.fsync {
                FsyncArg::Never => Fsync::Never,
                FsyncArg::Rotate => Fsync::Rotate,
                FsyncArg::Second => Fsync::Interval(Duration::from_secs(1)),
                FsyncArg::Always => Fsync::Always,
            },
        }
    }
}
