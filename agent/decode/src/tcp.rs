//! One direction of a TCP stream put back in order, with bounded memory. Protocol
//! neutral: it hands contiguous bytes and gaps to whoever parses the application layer.

/// What the stream hands on, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery<'a> {
    Data(&'a [u8]),
    /// Bytes that never arrived (or were dropped to keep memory bounded).
    Gap(u64),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SegmentStats {
    pub retransmitted: bool,
    pub out_of_order: bool,
    /// Bytes dropped because the out-of-order store was full.
    pub dropped: u64,
}

/// `a - b` on the 32-bit sequence circle.
fn seq_diff(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

/// What one held segment costs besides its bytes: its share of a B-tree node (key, vector
/// header, node links; nodes may be half full) and the allocator's rounding and header.
/// Counting only payload let 1-byte segments use 70 times the memory the cap allowed.
pub const SEGMENT_OVERHEAD: usize = 96;

/// Held segments per direction, whatever their size: each costs a tree entry.
pub const MAX_HELD_SEGMENTS: usize = 4096;

/// The heap cost of holding `v`.
fn cost(_: &[u8], capacity: usize) -> usize {
    capacity + SEGMENT_OVERHEAD
}

#[derive(Debug, Default)]
pub struct StreamDir {
    /// Next expected sequence number; None until the first SYN or data segment.
    next: Option<u32>,
    /// `next` as a stream offset that does not wrap: held segments are keyed by it.
    next_off: u64,
    /// Segments ahead of `next`, by stream offset: insertion, lookup and the in-order
    /// drain are O(log n). Contiguous arrivals are appended to the run they continue.
    ooo: std::collections::BTreeMap<u64, Vec<u8>>,
    /// Heap bytes `ooo` costs (see `SEGMENT_OVERHEAD`).
    ooo_cost: usize,
    pub fin: bool,
}

impl StreamDir {
    /// Heap bytes held.
    pub fn buffered(&self) -> usize {
        self.ooo_cost
    }

    /// Segments held out of order.
    pub fn held_segments(&self) -> usize {
        self.ooo.len()
    }

    pub fn syn(&mut self, seq: u32) {
        if self.next.is_none() {
            self.next = Some(seq.wrapping_add(1));
        }
    }

    /// The stream offset of `seq`, which lies within 2^31 of `next`.
    fn offset(&self, seq: u32, next: u32) -> u64 {
        self.next_off.wrapping_add_signed(seq_diff(seq, next))
    }

    fn advance_to(&mut self, seq: u32) {
        if let Some(n) = self.next {
            self.next_off = self.offset(seq, n);
        }
        self.next = Some(seq);
    }

    /// Takes one segment; calls `deliver` with what is now in order. `cap` bounds the
    /// heap bytes held out of order for this direction.
    pub fn segment(
        &mut self,
        seq: u32,
        payload: &[u8],
        fin: bool,
        cap: usize,
        deliver: &mut impl FnMut(Delivery<'_>),
    ) -> SegmentStats {
        let mut st = SegmentStats::default();
        let next = *self.next.get_or_insert(seq);
        let end = seq.wrapping_add(payload.len() as u32);
        if fin {
            self.fin = true;
        }
        if payload.is_empty() {
            return st;
        }
        let ahead = seq_diff(seq, next);
        if ahead > 0 {
            st.out_of_order = true;
            let off = self.offset(seq, next);
            if self.ooo.get(&off).is_some_and(|d| d.len() >= payload.len()) {
                st.retransmitted = true;
                return st;
            }
            // Continues the run before it: one allocation for a whole burst.
            let run = self
                .ooo
                .range(..off)
                .next_back()
                .filter(|(k, d)| **k + d.len() as u64 == off)
                .map(|(k, d)| (*k, d.len(), d.capacity()));
            let grow = match run {
                // A Vec grows to at least twice its capacity.
                Some((_, len, capacity)) if len + payload.len() > capacity => {
                    (len + payload.len()).max(2 * capacity) - capacity
                }
                Some(_) => 0,
                None => cost(payload, payload.len()),
            };
            let full = self.ooo_cost + grow > cap
                || (run.is_none() && self.ooo.len() >= MAX_HELD_SEGMENTS);
            if full {
                // No room: give up waiting for the missing bytes.
                st.dropped = self.flush_to_first_held(deliver);
                if seq_diff(seq, self.next.unwrap_or(seq)) > 0 {
                    let lost = seq_diff(seq, self.next.unwrap_or(seq)) as u64;
                    deliver(Delivery::Gap(lost));
                    st.dropped += lost;
                    self.advance_to(seq);
                }
                return self.in_order(seq, payload, deliver, st);
            }
            match run.and_then(|(k, _, _)| self.ooo.get_mut(&k)) {
                Some(d) => {
                    let before = d.capacity();
                    d.extend_from_slice(payload);
                    self.ooo_cost += d.capacity() - before;
                }
                None => {
                    let v = payload.to_vec();
                    self.ooo_cost += cost(&v, v.capacity());
                    if let Some(old) = self.ooo.insert(off, v) {
                        self.ooo_cost -= cost(&old, old.capacity());
                    }
                }
            }
            return st;
        }
        if seq_diff(end, next) <= 0 {
            st.retransmitted = true;
            return st;
        }
        self.in_order(seq, payload, deliver, st)
    }

    /// `seq` is at or before `next` and `payload` reaches past it.
    fn in_order(
        &mut self,
        seq: u32,
        payload: &[u8],
        deliver: &mut impl FnMut(Delivery<'_>),
        mut st: SegmentStats,
    ) -> SegmentStats {
        let next = self.next.unwrap_or(seq);
        let skip = seq_diff(next, seq).max(0) as usize;
        if skip > 0 {
            st.retransmitted = true;
        }
        if skip < payload.len() {
            deliver(Delivery::Data(&payload[skip..]));
            self.advance_to(seq.wrapping_add(payload.len() as u32));
        }
        self.drain_held(deliver);
        st
    }

    /// Hands on held segments that have become contiguous; drops those wholly behind.
    fn drain_held(&mut self, deliver: &mut impl FnMut(Delivery<'_>)) {
        while let Some(entry) = self.ooo.first_entry() {
            let off = *entry.key();
            if off > self.next_off {
                return;
            }
            let d = entry.remove();
            self.ooo_cost -= cost(&d, d.capacity());
            let end = off + d.len() as u64;
            if end > self.next_off {
                let skip = (self.next_off - off) as usize;
                deliver(Delivery::Data(&d[skip..]));
                let next = self.next.unwrap_or(0);
                self.next = Some(next.wrapping_add((end - self.next_off) as u32));
                self.next_off = end;
            }
        }
    }

    /// Skips to the earliest held segment, reporting the gap; returns the bytes skipped.
    fn flush_to_first_held(&mut self, deliver: &mut impl FnMut(Delivery<'_>)) -> u64 {
        let Some(next) = self.next else { return 0 };
        let Some((&first, _)) = self.ooo.first_key_value() else {
            return 0;
        };
        let lost = first.saturating_sub(self.next_off);
        if lost > 0 {
            deliver(Delivery::Gap(lost));
        }
        self.next = Some(next.wrapping_add(lost as u32));
        self.next_off += lost;
        self.drain_held(deliver);
        lost
    }

    /// The other side acknowledged up to `ack`. Bytes it acknowledges that we never saw
    /// were lost by the capture, not the network: nothing will fill the hole, so report it
    /// now instead of holding what follows until the connection ends.
    pub fn acked(&mut self, ack: u32, deliver: &mut impl FnMut(Delivery<'_>)) -> u64 {
        let Some(next) = self.next else { return 0 };
        // A FIN takes one sequence number; acknowledging it is not a hole.
        let beyond = seq_diff(ack, next) - i64::from(self.fin);
        if beyond <= 0 {
            return 0;
        }
        let mut lost = 0;
        if !self.ooo.is_empty() {
            lost += self.flush_to_first_held(deliver);
        }
        let next = self.next.unwrap_or(ack);
        let still = seq_diff(ack, next) - i64::from(self.fin);
        if still > 0 && self.ooo.is_empty() {
            deliver(Delivery::Gap(still as u64));
            self.advance_to(next.wrapping_add(still as u32));
            lost += still as u64;
        }
        lost
    }

    /// Whether `ack` covers bytes this direction has not delivered (see `acked`).
    pub fn acks_unseen(&self, ack: u32) -> bool {
        self.next
            .is_some_and(|n| seq_diff(ack, n) - i64::from(self.fin) > 0)
    }

    /// The stream ends: anything still held is behind a hole that will not be filled.
    pub fn close(&mut self, deliver: &mut impl FnMut(Delivery<'_>)) -> u64 {
        let mut lost = 0;
        while !self.ooo.is_empty() {
            let before = self.ooo.len();
            lost += self.flush_to_first_held(deliver);
            if self.ooo.len() == before {
                self.ooo.clear();
                self.ooo_cost = 0;
            }
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(
        dir: &mut StreamDir,
        segs: &[(u32, &[u8])],
        cap: usize,
    ) -> (Vec<u8>, u64, Vec<SegmentStats>) {
        let mut out = Vec::new();
        let mut gaps = 0;
        let mut stats = Vec::new();
        for (seq, p) in segs {
            stats.push(dir.segment(*seq, p, false, cap, &mut |d| match d {
                Delivery::Data(b) => out.extend_from_slice(b),
                Delivery::Gap(n) => gaps += n,
            }));
        }
        (out, gaps, stats)
    }

    #[test]
    fn in_order_retransmitted_and_reordered_segments() {
        let mut d = StreamDir::default();
        d.syn(999);
        let (out, gaps, st) = feed(
            &mut d,
            &[
                (1000, b"abc"),
                (1006, b"ghi"),
                (1003, b"def"),
                (1003, b"def"),
                (1001, b"bcdEFG"),
            ],
            1 << 20,
        );
        assert_eq!(out, b"abcdefghi");
        assert_eq!(gaps, 0);
        assert!(st[1].out_of_order && st[3].retransmitted && st[4].retransmitted);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut d = StreamDir::default();
        let start = u32::MAX - 2;
        let (out, gaps, _) = feed(
            &mut d,
            &[
                (start, b"ab"),
                (start.wrapping_add(4), b"ef"),
                (start.wrapping_add(2), b"cd"),
            ],
            1 << 20,
        );
        assert_eq!((out.as_slice(), gaps), (&b"abcdef"[..], 0));
    }

    #[test]
    fn a_full_store_turns_the_hole_into_a_gap() {
        let mut d = StreamDir::default();
        let one = SEGMENT_OVERHEAD + 8;
        let (out, gaps, st) = feed(&mut d, &[(0, b"aa"), (4, b"cc"), (8, b"ee")], one);
        assert_eq!(out, b"aaccee");
        assert_eq!(gaps, 4);
        assert_eq!(st[2].dropped, 4);
        assert!(d.buffered() <= one);
    }

    #[test]
    fn each_held_segment_costs_more_than_its_bytes() {
        // 1-byte segments behind a hole: the cap must count what they cost, not 1 byte.
        let mut d = StreamDir::default();
        let segs: Vec<(u32, [u8; 1])> = (0..1000u32).rev().map(|i| (2 + 2 * i, [b'x'])).collect();
        let refs: Vec<(u32, &[u8])> = segs.iter().map(|(s, b)| (*s, &b[..])).collect();
        feed(&mut d, &[(0, b"a")], 1 << 20);
        feed(&mut d, &refs, 1 << 20);
        assert_eq!(d.held_segments(), 1000);
        assert!(d.buffered() >= 1000 * SEGMENT_OVERHEAD, "{}", d.buffered());
        // Contiguous arrivals share one run.
        let mut d = StreamDir::default();
        let segs: Vec<(u32, [u8; 1])> = (0..1000u32).map(|i| (2 + i, [b'x'])).collect();
        let refs: Vec<(u32, &[u8])> = segs.iter().map(|(s, b)| (*s, &b[..])).collect();
        feed(&mut d, &[(0, b"a")], 1 << 20);
        feed(&mut d, &refs, 1 << 20);
        assert_eq!(d.held_segments(), 1);
        let (out, gaps, _) = feed(&mut d, &[(1, b"b")], 1 << 20);
        assert_eq!((out.len(), gaps, d.buffered()), (1001, 0, 0));
    }

    #[test]
    fn held_segments_per_direction_are_bounded() {
        let mut d = StreamDir::default();
        feed(&mut d, &[(0, b"a")], usize::MAX / 2);
        let segs: Vec<(u32, [u8; 1])> = (0..3 * MAX_HELD_SEGMENTS as u32)
            .rev()
            .map(|i| (2 + 2 * i, [b'x']))
            .collect();
        let refs: Vec<(u32, &[u8])> = segs.iter().map(|(s, b)| (*s, &b[..])).collect();
        let (out, gaps, _) = feed(&mut d, &refs, usize::MAX / 2);
        assert!(d.held_segments() <= MAX_HELD_SEGMENTS);
        assert!(gaps > 0 && !out.is_empty());
    }

    #[test]
    fn sequence_numbers_wrap_while_segments_are_held() {
        let mut d = StreamDir::default();
        let start = u32::MAX - 3;
        let (out, gaps, _) = feed(
            &mut d,
            &[
                (start, b"ab"),
                (start.wrapping_add(6), b"gh"),
                (start.wrapping_add(4), b"ef"),
                (start.wrapping_add(2), b"cd"),
            ],
            1 << 20,
        );
        assert_eq!((out.as_slice(), gaps, d.buffered()), (&b"abcdefgh"[..], 0, 0));
    }

    #[test]
    fn an_ack_beyond_what_was_seen_reports_the_hole_at_once() {
        let mut d = StreamDir::default();
        feed(&mut d, &[(0, b"aa"), (4, b"cc")], 100);
        let mut out = Vec::new();
        let lost = d.acked(6, &mut |x| {
            if let Delivery::Data(b) = x {
                out.extend_from_slice(b)
            }
        });
        assert_eq!((lost, out.as_slice(), d.buffered()), (2, &b"cc"[..], 0));
        // An ack of bytes never sent at all (capture lost them entirely) is a gap too.
        let mut gaps = 0;
        assert_eq!(
            d.acked(10, &mut |x| if let Delivery::Gap(n) = x {
                gaps += n
            }),
            4
        );
        assert_eq!(gaps, 4);
        // Acks at or behind what was seen, or of the FIN, change nothing.
        assert_eq!(d.acked(10, &mut |_| panic!("no delivery")), 0);
        d.segment(10, b"", true, 100, &mut |_| {});
        assert_eq!(d.acked(11, &mut |_| panic!("no delivery")), 0);
    }

    #[test]
    fn close_reports_the_hole_and_hands_on_the_rest() {
        let mut d = StreamDir::default();
        feed(&mut d, &[(0, b"aa"), (10, b"zz")], 100);
        let mut out = Vec::new();
        let lost = d.close(&mut |x| {
            if let Delivery::Data(b) = x {
                out.extend_from_slice(b)
            }
        });
        assert_eq!((lost, out.as_slice()), (8, &b"zz"[..]));
    }
}
