//! Kerberos over TCP (RFC 4120 7.2.2): each message is preceded by a 4-octet big-endian
//! length whose high bit is reserved and must be zero. One message may span many segments
//! and one segment may carry many messages; `RecordFramer` turns a byte stream into
//! messages with bounded memory, and resynchronises after gaps.

use crate::ber;

/// The record mark for `msg`, followed by `msg`.
pub fn encode_record(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 4);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

/// What the framer reports besides complete records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameEvent<'a> {
    Record(&'a [u8]),
    /// A record mark of length zero (skipped).
    EmptyRecord,
    /// A record mark with the reserved high bit set, or one not followed by a Kerberos
    /// message; the framer now scans for the next plausible record.
    BadMark {
        mark: u32,
    },
    /// A record longer than the cap. Its bytes are skipped without being buffered.
    Oversize {
        len: u32,
    },
    /// Bytes dropped while looking for the next record after a gap or a bad mark.
    Skipped {
        bytes: u64,
    },
}

/// Identifier (1) + longest length we accept (5) + the SEQUENCE identifier (1).
const PROBE_LEN: usize = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a record boundary.
    Boundary,
    /// Skipping the rest of an oversize record.
    Discard(u64),
    /// Lost: scanning for a plausible record start.
    Resync,
}

#[derive(Debug, Clone)]
pub struct RecordFramer {
    buf: Vec<u8>,
    max_record: usize,
    state: State,
    skipped: u64,
}

impl RecordFramer {
    pub fn new(max_record: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_record,
            state: State::Boundary,
            skipped: 0,
        }
    }

    /// Bytes held for an incomplete record.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Heap bytes reserved by this framer.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Bytes are missing from the stream: whatever was buffered cannot be completed.
    pub fn gap(&mut self) {
        self.buf.clear();
        self.state = State::Resync;
    }

    /// Feeds in-order stream bytes; calls `f` for each complete record and each anomaly.
    pub fn push(&mut self, mut data: &[u8], f: &mut impl FnMut(FrameEvent<'_>)) {
        if let State::Discard(left) = self.state {
            let n = (left.min(data.len() as u64)) as usize;
            data = &data[n..];
            self.state = if left > n as u64 {
                State::Discard(left - n as u64)
            } else {
                State::Boundary
            };
            if data.is_empty() {
                return;
            }
        }
        if self.buf.is_empty() {
            // Fast path: records wholly inside `data` are handed out without a copy.
            let used = self.drain(data, f);
            self.keep(&data[used..]);
        } else {
            let mut buf = std::mem::take(&mut self.buf);
            buf.extend_from_slice(data);
            let used = self.drain(&buf, f);
            buf.drain(..used);
            self.buf = buf;
            let over = self.buf.len().saturating_sub(self.max_record + 4);
            if over > 0 && self.state == State::Resync {
                self.buf.drain(..over);
                self.skipped += over as u64;
            }
        }
        if self.state != State::Resync && self.skipped > 0 {
            f(FrameEvent::Skipped {
                bytes: self.skipped,
            });
            self.skipped = 0;
        }
    }

    /// Keeps an unconsumed tail, bounded: in Discard state the tail is skipped instead.
    fn keep(&mut self, tail: &[u8]) {
        if let State::Discard(left) = self.state {
            let n = (left.min(tail.len() as u64)) as usize;
            self.state = if left > n as u64 {
                State::Discard(left - n as u64)
            } else {
                State::Boundary
            };
            if n < tail.len() {
                self.buf.extend_from_slice(&tail[n..]);
            }
        } else {
            // A record mark in hand says how much will be buffered: reserve it once
            // (bounded by the cap) instead of regrowing segment after segment.
            if self.buf.is_empty() && tail.len() >= 4 {
                let len = u32::from_be_bytes([tail[0], tail[1], tail[2], tail[3]]) as usize;
                self.buf.reserve_exact(len.min(self.max_record) + 4);
            }
            self.buf.extend_from_slice(tail);
        }
    }

    /// Consumes as many complete records from `data` as possible; returns bytes used.
    fn drain(&mut self, data: &[u8], f: &mut impl FnMut(FrameEvent<'_>)) -> usize {
        let mut pos = 0;
        loop {
            if let State::Discard(left) = self.state {
                let n = (left.min((data.len() - pos) as u64)) as usize;
                pos += n;
                if left > n as u64 {
                    self.state = State::Discard(left - n as u64);
                    return pos;
                }
                self.state = State::Boundary;
            }
            if self.state == State::Resync {
                match find_record_start(&data[pos..], self.max_record) {
                    Some(off) => {
                        self.skipped += off as u64;
                        pos += off;
                        self.state = State::Boundary;
                        f(FrameEvent::Skipped {
                            bytes: self.skipped,
                        });
                        self.skipped = 0;
                    }
                    None => {
                        // A record mark and message header may straddle this chunk's end.
                        let keep = (data.len() - pos).min(4 + PROBE_LEN - 1);
                        self.skipped += (data.len() - pos - keep) as u64;
                        return data.len() - keep;
                    }
                }
            }
            let rest = &data[pos..];
            if rest.len() < 4 {
                return pos;
            }
            let mark = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
            if mark & 0x8000_0000 != 0 {
                f(FrameEvent::BadMark { mark });
                self.state = State::Resync;
                pos += 1;
                continue;
            }
            if mark == 0 {
                // No Kerberos implementation sends empty records: a run of zero bytes is
                // one anomaly and skipped bytes, not an anomaly per four bytes.
                f(FrameEvent::EmptyRecord);
                pos += 4;
                let zeros = data[pos..]
                    .chunks_exact(4)
                    .take_while(|c| *c == [0, 0, 0, 0])
                    .count()
                    * 4;
                if zeros > 0 {
                    pos += zeros;
                    f(FrameEvent::Skipped {
                        bytes: zeros as u64,
                    });
                }
                continue;
            }
            let len = mark as usize;
            // Enough of the message to see its tag, length and SEQUENCE octets.
            let probe_len = len.min(PROBE_LEN);
            if rest.len() < 4 + probe_len {
                return pos;
            }
            let plausible =
                len < PROBE_LEN || ber::probe_message(&rest[4..4 + probe_len]).is_some();
            if len > self.max_record {
                // A real oversize message starts with a Kerberos tag; anything else means
                // the stream is not where we think it is.
                if plausible {
                    f(FrameEvent::Oversize { len: mark });
                    self.state = State::Discard(len as u64);
                    pos += 4;
                } else {
                    f(FrameEvent::BadMark { mark });
                    self.state = State::Resync;
                    pos += 1;
                }
                continue;
            }
            if !plausible {
                f(FrameEvent::BadMark { mark });
                self.state = State::Resync;
                pos += 1;
                continue;
            }
            if rest.len() < 4 + len {
                return pos;
            }
            f(FrameEvent::Record(&rest[4..4 + len]));
            pos += 4 + len;
        }
    }
}

/// Offset of the first position that looks like a record mark followed by a Kerberos
/// message whose BER length agrees with the mark.
fn find_record_start(b: &[u8], max_record: usize) -> Option<usize> {
    if b.len() < 6 {
        return None;
    }
    (0..b.len() - 5).find(|&i| {
        let mark = u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        if mark == 0 || mark > max_record {
            return false;
        }
        match ber::read_header(&b[i + 4..]) {
            Ok((ber::Class::Application, true, tag, hlen, len)) => {
                matches!(tag, 10..=15 | 30) && hlen + len == mark
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body_len: usize) -> Vec<u8> {
        // [APPLICATION tag] { SEQUENCE { body } }, short lengths only
        let inner_len = body_len;
        let mut m = vec![0x60 | tag, (inner_len + 2) as u8, 0x30, inner_len as u8];
        m.extend(std::iter::repeat_n(0xab, body_len));
        m
    }

    fn run(framer: &mut RecordFramer, chunks: &[&[u8]]) -> Vec<String> {
        let mut out = Vec::new();
        for c in chunks {
            framer.push(c, &mut |e| {
                out.push(match e {
                    FrameEvent::Record(r) => format!("rec{}", r.len()),
                    other => format!("{other:?}"),
                })
            });
        }
        out
    }

    #[test]
    fn several_records_in_one_chunk_and_one_record_in_many() {
        let a = encode_record(&msg(10, 20));
        let b = encode_record(&msg(30, 40));
        let mut all = a.clone();
        all.extend_from_slice(&b);
        let mut f = RecordFramer::new(1000);
        assert_eq!(run(&mut f, &[&all]), ["rec24", "rec44"]);
        let mut f = RecordFramer::new(1000);
        let pieces: Vec<&[u8]> = all.chunks(3).collect();
        assert_eq!(run(&mut f, &pieces), ["rec24", "rec44"]);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn resynchronises_after_a_gap() {
        let a = encode_record(&msg(12, 30));
        let b = encode_record(&msg(13, 30));
        let mut f = RecordFramer::new(1000);
        assert!(run(&mut f, &[&a[..10]]).is_empty());
        f.gap();
        // the rest of `a` is lost; stream resumes mid-record, then `b`
        let mut tail = a[20..].to_vec();
        tail.extend_from_slice(&b);
        let lost = (a.len() - 20) as u64;
        assert_eq!(
            run(&mut f, &[&tail]),
            [
                format!("{:?}", FrameEvent::Skipped { bytes: lost }),
                "rec34".to_string()
            ]
        );
    }

    #[test]
    fn empty_bad_and_oversize_marks() {
        let mut f = RecordFramer::new(64);
        let mut s = vec![0, 0, 0, 0];
        let big = msg(11, 100);
        s.extend_from_slice(&encode_record(&big));
        s.extend_from_slice(&encode_record(&msg(30, 10)));
        assert_eq!(
            run(&mut f, &[&s]),
            ["EmptyRecord", "Oversize { len: 104 }", "rec14"]
        );
        let mut f = RecordFramer::new(64);
        let mut s = vec![0x80, 0, 0, 5, 1, 2, 3, 4, 5];
        s.extend_from_slice(&encode_record(&msg(30, 10)));
        let ev = run(&mut f, &[&s]);
        assert_eq!(
            ev[0],
            format!("{:?}", FrameEvent::BadMark { mark: 0x8000_0005 })
        );
        assert_eq!(ev.last().map(String::as_str), Some("rec14"));
    }

    #[test]
    fn a_run_of_zero_bytes_is_one_anomaly() {
        let mut f = RecordFramer::new(64);
        let mut s = vec![0u8; 4000];
        s.extend_from_slice(&encode_record(&msg(30, 10)));
        assert_eq!(
            run(&mut f, &[&s]),
            ["EmptyRecord", "Skipped { bytes: 3996 }", "rec14"]
        );
    }

    #[test]
    fn resync_buffer_stays_bounded() {
        let mut f = RecordFramer::new(64);
        f.gap();
        for _ in 0..1000 {
            run(&mut f, &[&[0x55u8; 97]]);
            assert!(f.buffered() <= 64 + 4 + 97);
        }
    }
}
