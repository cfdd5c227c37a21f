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

#[derive(Debug, Default)]
pub struct StreamDir {
    /// Next expected sequence number; None until the first SYN or data segment.
    next: Option<u32>,
    /// Segments ahead of `next`, in arrival order.
    ooo: Vec<(u32, Vec<u8>)>,
    ooo_bytes: usize,
    pub fin: bool,
}

impl StreamDir {
    /// Heap bytes held.
    pub fn buffered(&self) -> usize {
        self.ooo_bytes
    }

    pub fn syn(&mut self, seq: u32) {
        if self.next.is_none() {
            self.next = Some(seq.wrapping_add(1));
        }
    }

    /// Takes one segment; calls `deliver` with what is now in order. `cap` bounds the
    /// bytes held out of order for this direction.
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
            if self.ooo_bytes + payload.len() > cap {
                // No room: give up waiting for the missing bytes.
                st.dropped = self.flush_to_first_held(deliver);
                if seq_diff(seq, self.next.unwrap_or(seq)) > 0 {
                    let lost = seq_diff(seq, self.next.unwrap_or(seq)) as u64;
                    deliver(Delivery::Gap(lost));
                    st.dropped += lost;
                    self.next = Some(seq);
                }
                return self.in_order(seq, payload, deliver, st);
            }
            if !self
                .ooo
                .iter()
                .any(|(s, d)| *s == seq && d.len() >= payload.len())
            {
                self.ooo_bytes += payload.len();
                self.ooo.push((seq, payload.to_vec()));
            } else {
                st.retransmitted = true;
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
            self.next = Some(seq.wrapping_add(payload.len() as u32));
        }
        self.drain_held(deliver);
        st
    }

    /// Hands on held segments that have become contiguous.
    fn drain_held(&mut self, deliver: &mut impl FnMut(Delivery<'_>)) {
        loop {
            let Some(next) = self.next else { return };
            let Some(i) = self.ooo.iter().position(|(s, d)| {
                seq_diff(*s, next) <= 0 && seq_diff(s.wrapping_add(d.len() as u32), next) > 0
            }) else {
                // Drop held segments now wholly behind `next`.
                let before = self.ooo.len();
                self.ooo
                    .retain(|(s, d)| seq_diff(s.wrapping_add(d.len() as u32), next) > 0);
                if self.ooo.len() != before {
                    self.ooo_bytes = self.ooo.iter().map(|(_, d)| d.len()).sum();
                }
                return;
            };
            let (s, d) = self.ooo.swap_remove(i);
            self.ooo_bytes -= d.len();
            let skip = seq_diff(next, s) as usize;
            deliver(Delivery::Data(&d[skip..]));
            self.next = Some(s.wrapping_add(d.len() as u32));
        }
    }

    /// Skips to the earliest held segment, reporting the gap; returns the bytes skipped.
    fn flush_to_first_held(&mut self, deliver: &mut impl FnMut(Delivery<'_>)) -> u64 {
        let Some(next) = self.next else { return 0 };
        let Some(first) = self
            .ooo
            .iter()
            .map(|(s, _)| *s)
            .min_by_key(|s| seq_diff(*s, next))
        else {
            return 0;
        };
        let lost = seq_diff(first, next).max(0) as u64;
        if lost > 0 {
            deliver(Delivery::Gap(lost));
        }
        self.next = Some(first);
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
            self.next = Some(next.wrapping_add(still as u32));
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
                self.ooo_bytes = 0;
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
        let (out, gaps, st) = feed(&mut d, &[(0, b"aa"), (4, b"cc"), (6, b"dd"), (8, b"ee")], 4);
        assert_eq!(out, b"aaccddee");
        assert_eq!(gaps, 2);
        assert_eq!(st[3].dropped, 2);
        assert!(d.buffered() <= 4);
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
