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
    /// The input goes on in a form that is not read (e.g. a pcapng file appended to a
    /// pcap): unlike damage, the rest was never looked at, so the replay fails.
    Unsupported(String),
}

#[derive(Clone, Copy)]
enum Format {
    Unknown,
    Pcap { big_endian: bool, snaplen: u32 },
    PcapNg { big_endian: bool },
}

fn u32_at(b: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let x: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(x)
    } else {
        u32::from_le_bytes(x)
    })
}

/// Whether the block at the head of `data` has a length no writer produces: then the file
/// does not end early, its block header is damaged (and the rest cannot be found).
fn damaged_header(data: &[u8], format: Format) -> Option<String> {
    match format {
        Format::Pcap { big_endian, .. } if u32_at(data, 0, big_endian) == Some(0x0a0d_0d0a) => None,
        Format::Pcap { big_endian, snaplen } => {
            let caplen = u32_at(data, 8, big_endian)?;
            let limit = snaplen.max(262_144);
            (caplen > limit).then(|| {
                format!("damaged record header: captured length {caplen} is over the snap length {snaplen}")
            })
        }
        Format::PcapNg { big_endian } => {
            let len = u32_at(data, 4, big_endian)?;
            (len < 12 || len % 4 != 0 || len as usize > MAX_BLOCK)
                .then(|| format!("damaged block header: block length {len}"))
        }
        Format::Unknown => None,
    }
}

const APPENDED_PCAPNG: &str = "a pcapng section follows the pcap (concatenated files)";

/// Whether a pcapng section header follows a classic pcap's records (its block type read
/// as a record's seconds).
fn appended_pcapng(data: &[u8], format: Format) -> bool {
    matches!(format, Format::Pcap { big_endian, .. } if u32_at(data, 0, big_endian) == Some(0x0a0d_0d0a))
}

/// Reads the global header at the head of the reader's buffer; returns it with its size.
fn next_pcap_header(
    r: &mut dyn pcap_parser::traits::PcapReaderIterator,
    format: Format,
) -> Result<(pcap_parser::PcapHeader, usize), Ending> {
    const SIZE: usize = 24;
    while r.data().len() < SIZE {
        let before = r.data().len();
        if r.refill().is_err() || r.data().len() == before {
            return Err(Ending::Truncated);
        }
    }
    let h = match pcap_parser::parse_pcap_header(r.data()) {
        Ok((_, h)) => h,
        Err(_) => return Err(Ending::Malformed("damaged second pcap header".into())),
    };
    match format {
        // The reader keeps the first header's byte order.
        Format::Pcap { big_endian, .. } if big_endian == h.is_bigendian() => Ok((h, SIZE)),
        _ => Err(Ending::Unsupported(
            "a second capture with another byte order follows (concatenated files)".into(),
        )),
    }
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

/// Units per second of pcapng's `if_tsresol`: 10^n, or 2^n with the high bit set.
/// pcap-parser 0.17 refuses every 2^n (it tests the byte with its flag bit still set), so
/// the value is read here.
fn tsresol_units(b: u8) -> Option<u64> {
    let n = u32::from(b & 0x7f);
    if b & 0x80 == 0 {
        10u64.checked_pow(n)
    } else {
        1u64.checked_shl(n).filter(|_| n < 64)
    }
}

/// Whether a pcap record header is in fact another file's global header (`cat a.pcap
/// b.pcap`): its "seconds" are a pcap magic number in this file's byte order.
fn is_pcap_magic(v: u32) -> bool {
    matches!(v, 0xa1b2_c3d4 | 0xa1b2_3c4d | 0xd4c3_b2a1 | 0x4d3c_b2a1)
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
    // Byte order and snap length of the classic pcap header, or whether the pcapng section
    // is big endian: what a damaged block header is judged against.
    let mut format = Format::Unknown;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut capacity = BUFFER;
    let ending = loop {
        match r.next() {
            Ok((offset, block)) => {
                let mut packet: Option<(Timestamp, LinkType, &[u8])> = None;
                let mut problem: Option<(&'static str, String)> = None;
                let mut next_header = false;
                match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        let res = if h.is_nanosecond_precision() {
                            1_000_000_000
                        } else {
                            1_000_000
                        };
                        legacy = Some((LinkType(h.network.0 as u32), res));
                        format = Format::Pcap {
                            big_endian: h.is_bigendian(),
                            snaplen: h.snaplen,
                        };
                    }
                    PcapBlockOwned::Legacy(b) if is_pcap_magic(b.ts_sec) => next_header = true,
                    PcapBlockOwned::Legacy(b) => {
                        if let Some((link, res)) = legacy {
                            let ts = ts_from_units(
                                u64::from(b.ts_sec) * res + u64::from(b.ts_usec),
                                res,
                                0,
                            );
                            let caplen = (b.caplen as usize).min(b.data.len());
                            packet = Some((ts, link, &b.data[..caplen]));
                        }
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(shb)) => {
                        interfaces.clear();
                        format = Format::PcapNg {
                            big_endian: shb.big_endian(),
                        };
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        let resolution = match tsresol_units(idb.if_tsresol) {
                            Some(r) => r,
                            None => {
                                problem = Some((
                                    "pcap_bad_tsresol",
                                    format!(
                                        "interface {} has a timestamp resolution (if_tsresol {:#04x}) that cannot be represented; its times are read as microseconds and are wrong",
                                        interfaces.len(),
                                        idb.if_tsresol
                                    ),
                                ));
                                1_000_000
                            }
                        };
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
                                // `data` runs to the block's 32-bit padding: the captured
                                // length says where the packet ends (TSO captures carry an
                                // IP total length of 0, so nothing else trims it).
                                let caplen = (epb.caplen as usize).min(epb.data.len());
                                packet = Some((
                                    ts_from_units(units, i.resolution, i.offset_secs),
                                    i.link,
                                    &epb.data[..caplen],
                                ));
                            }
                            None => {
                                problem = Some((
                                    "pcap_bad_block",
                                    format!(
                                        "packet block for interface {} which was never described",
                                        epb.if_id
                                    ),
                                ))
                            }
                        }
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => match interfaces.first() {
                        // Simple packet blocks carry no time: keep the last one seen. Their
                        // length is the original one, cut to what the block holds.
                        Some(i) => {
                            let len = (spb.origlen as usize).min(spb.data.len());
                            packet = Some((last_ts, i.link, &spb.data[..len]))
                        }
                        None => {
                            problem = Some((
                                "pcap_bad_block",
                                "simple packet block before any interface".into(),
                            ))
                        }
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
                } else if let Some((kind, detail)) = problem {
                    if kind == "pcap_bad_block" {
                        frame += 1;
                    }
                    decoder.source_anomaly(last_ts, frame, kind, detail, sink);
                }
                if !next_header {
                    r.consume(offset);
                    continue;
                }
                // Another capture's global header (`cat a.pcap b.pcap`): a new section.
                match next_pcap_header(&mut *r, format) {
                    Ok((h, size)) => {
                        let res = if h.is_nanosecond_precision() {
                            1_000_000_000
                        } else {
                            1_000_000
                        };
                        legacy = Some((LinkType(h.network.0 as u32), res));
                        format = Format::Pcap {
                            big_endian: h.is_bigendian(),
                            snaplen: h.snaplen,
                        };
                        r.consume(size);
                    }
                    Err(e) => break e,
                }
            }
            Err(PcapError::Eof) => break Ending::Complete,
            Err(PcapError::Incomplete(_)) => {
                if r.refill().is_err() {
                    break Ending::Malformed("read error".into());
                }
            }
            Err(PcapError::UnexpectedEof) => {
                if appended_pcapng(r.data(), format) {
                    break Ending::Unsupported(APPENDED_PCAPNG.into());
                }
                match damaged_header(r.data(), format) {
                    Some(why) => break Ending::Malformed(why),
                    None => break Ending::Truncated,
                }
            }
            Err(PcapError::BufferTooSmall) => {
                if appended_pcapng(r.data(), format) {
                    break Ending::Unsupported(APPENDED_PCAPNG.into());
                }
                // A damaged length would grow the buffer to its limit for nothing.
                if let Some(why) = damaged_header(r.data(), format) {
                    break Ending::Malformed(why);
                }
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
        Ending::Unsupported(why) => decoder.source_anomaly(
            last_ts,
            frame,
            "pcap_unsupported",
            format!("{why} after frame {frame}; the rest of the input is not read"),
            sink,
        ),
    }
    Ok(FileReport {
        packets: frame,
        ending,
    })
}
