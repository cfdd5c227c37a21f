//! Packet sources. Today: capture files, read as a stream (a bounded buffer, never the
//! whole file) so that memory does not grow with the file. Live capture (libpcap, eBPF)
//! will feed the same `Decoder`.

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::Read;
use std::path::Path;

use kcd_decode::{Decoder, LinkType, Packet, Sink};
use kcd_schema::Timestamp;
use pcap_parser::pcapng::Block;
use pcap_parser::{PcapBlockOwned, PcapError};

/// Read buffer: large enough for any sane block, grown on demand up to `MAX_BLOCK`.
const BUFFER: usize = 1 << 20;
const MAX_BLOCK: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: empty file")]
    Empty { path: String },
    #[error("{path}: not a pcap or pcapng file (unrecognised header)")]
    NotACapture { path: String },
    #[error("{path}: cannot read: {detail}")]
    Read { path: String, detail: String },
}

/// How reading a file ended when it did not end cleanly; the decoder has already reported
/// it as an anomaly event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Complete,
    /// The file stops in the middle of a block.
    Truncated,
    /// A block that cannot be parsed; nothing after it can be found reliably.
    Malformed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    pub packets: u64,
    pub ending: Ending,
}

#[derive(Clone, Copy)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second.
    resolution: u64,
    offset_secs: i64,
}

fn ts_from_units(units: u64, resolution: u64, offset_secs: i64) -> Timestamp {
    let resolution = resolution.max(1);
    let secs = (units / resolution) as i64 + offset_secs;
    let frac = units % resolution;
    let nanos = (u128::from(frac) * 1_000_000_000 / u128::from(resolution)) as u32;
    Timestamp::from_parts(secs, nanos)
}

/// Replays one capture file into `decoder`. `name` is how events name the file.
pub fn replay_file<S: Sink + ?Sized>(
    path: &Path,
    name: &str,
    decoder: &mut Decoder,
    sink: &mut S,
) -> Result<FileReport, CaptureError> {
    let p = || path.display().to_string();
    let file = File::open(path).map_err(|source| CaptureError::Open { path: p(), source })?;
    replay_reader(file, name, decoder, sink).map_err(|e| match e {
        ReaderError::Empty => CaptureError::Empty { path: p() },
        ReaderError::NotACapture => CaptureError::NotACapture { path: p() },
        ReaderError::Read(detail) => CaptureError::Read { path: p(), detail },
    })
}

#[derive(Debug)]
pub enum ReaderError {
    Empty,
    NotACapture,
    Read(String),
}

/// Replays a capture from any reader (a file, stdin, bytes in a test).
pub fn replay_reader<R: Read + Send, S: Sink + ?Sized>(
    reader: R,
    name: &str,
    decoder: &mut Decoder,
    sink: &mut S,
) -> Result<FileReport, ReaderError> {
    let mut r = match pcap_parser::create_reader(BUFFER, reader) {
        Ok(r) => r,
        Err(PcapError::Eof) => return Err(ReaderError::Empty),
        Err(PcapError::ReadError) => return Err(ReaderError::Read("read error".into())),
        Err(_) => return Err(ReaderError::NotACapture),
    };
    decoder.begin_source(Some(name));
    let mut frame = 0u64;
    let mut last_ts = Timestamp(0);
    let mut legacy: Option<(LinkType, u64)> = None;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut capacity = BUFFER;
    let ending = loop {
        match r.next() {
            Ok((offset, block)) => {
                let mut packet: Option<(Timestamp, LinkType, &[u8])> = None;
                let mut problem: Option<String> = None;
                match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        let res = if h.is_nanosecond_precision() {
                            1_000_000_000
                        } else {
                            1_000_000
                        };
                        legacy = Some((LinkType(h.network.0 as u32), res));
                    }
                    PcapBlockOwned::Legacy(b) => {
                        if let Some((link, res)) = legacy {
                            let ts = ts_from_units(
                                u64::from(b.ts_sec) * res + u64::from(b.ts_usec),
                                res,
                                0,
                            );
                            packet = Some((ts, link, b.data));
                        }
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => interfaces.clear(),
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        let resolution = idb.ts_resolution().unwrap_or(1_000_000);
                        interfaces.push(Interface {
                            link: LinkType(idb.linktype.0 as u32),
                            resolution,
                            offset_secs: idb.if_tsoffset,
                        });
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        match interfaces.get(epb.if_id as usize) {
                            Some(i) => {
                                let units = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                                packet = Some((
                                    ts_from_units(units, i.resolution, i.offset_secs),
                                    i.link,
                                    epb.data,
                                ));
                            }
                            None => {
                                problem = Some(format!(
                                    "packet block for interface {} which was never described",
                                    epb.if_id
                                ))
                            }
                        }
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => match interfaces.first() {
                        // Simple packet blocks carry no time: keep the last one seen.
                        Some(i) => packet = Some((last_ts, i.link, spb.data)),
                        None => problem = Some("simple packet block before any interface".into()),
                    },
                    PcapBlockOwned::NG(_) => {}
                }
                if let Some((ts, link, data)) = packet {
                    frame += 1;
                    last_ts = ts;
                    decoder.packet(
                        &Packet {
                            ts,
                            link,
                            data,
                            frame,
                        },
                        sink,
                    );
                } else if let Some(detail) = problem {
                    frame += 1;
                    decoder.source_anomaly(last_ts, frame, "pcap_bad_block", detail, sink);
                }
                r.consume(offset);
            }
            Err(PcapError::Eof) => break Ending::Complete,
            Err(PcapError::Incomplete(_)) => {
                if r.refill().is_err() {
                    break Ending::Malformed("read error".into());
                }
            }
            Err(PcapError::UnexpectedEof) => break Ending::Truncated,
            Err(PcapError::BufferTooSmall) => {
                if capacity >= MAX_BLOCK || !r.grow(capacity * 2) {
                    break Ending::Malformed(format!("block larger than {} MiB", MAX_BLOCK >> 20));
                }
                capacity *= 2;
                if r.refill().is_err() {
                    break Ending::Malformed("read error".into());
                }
            }
            Err(e) => break Ending::Malformed(format!("{e:?}").chars().take(200).collect()),
        }
    };
    match &ending {
        Ending::Complete => {}
        Ending::Truncated => decoder.source_anomaly(
            last_ts,
            frame,
            "pcap_truncated",
            format!("the file ends in the middle of a block after frame {frame}; everything before it was read"),
            sink,
        ),
        Ending::Malformed(why) => decoder.source_anomaly(
            last_ts,
            frame,
            "pcap_malformed",
            format!("unreadable block after frame {frame} ({why}); the rest of the file is skipped"),
            sink,
        ),
    }
    Ok(FileReport {
        packets: frame,
        ending,
    })
}
