//! Events read back from NDJSON: the gateway's `--events` file, joined into a replay. Read
//! one line at a time and parsed when wanted, so that a file of any size costs one line of
//! memory; a line that is not an event (or is too long) is counted and skipped, and the
//! rest is read on.

use std::io::{self, BufRead};

use kcd_schema::{Event, EventType, Timestamp};

/// Longest line accepted: a gateway event is a few kilobytes.
pub const MAX_LINE: usize = 1 << 20;

pub struct EventFeed<R> {
    r: R,
    line: Vec<u8>,
    /// The line in `line` is an event of a wanted type, with this time.
    ready: Option<Timestamp>,
    done: bool,
    /// Lines that were not events (bad JSON, too long, not UTF-8).
    pub bad: u64,
    /// Events of other types than the gateway's (a replay's own output, say), skipped.
    pub skipped: u64,
    pub fed: u64,
    /// The first read error, which ends the feed.
    pub error: Option<io::Error>,
}

impl<R: BufRead> EventFeed<R> {
    pub fn new(r: R) -> Self {
        EventFeed { r, line: Vec::new(), ready: None, done: false, bad: 0, skipped: 0, fed: 0, error: None }
    }

    /// The time of the next gateway event, reading on to it.
    pub fn peek_time(&mut self) -> Option<Timestamp> {
        while self.ready.is_none() && !self.done {
            match read_line(&mut self.r, &mut self.line) {
                Ok(Line::Eof) => self.done = true,
                Ok(Line::TooLong) => self.bad += 1,
                Ok(Line::Whole) => {
                    let l = self.line.trim_ascii();
                    if l.is_empty() {
                        continue;
                    }
                    match serde_json::from_slice::<Event<'_>>(l) {
                        Ok(e) if matches!(e.event_type, EventType::Gateway | EventType::Kcd) => self.ready = Some(e.timestamp),
                        Ok(_) => self.skipped += 1,
                        Err(_) => self.bad += 1,
                    }
                }
                Err(e) => {
                    self.error = Some(e);
                    self.done = true;
                }
            }
        }
        self.ready
    }

    /// Hands the next gateway event to `f`.
    pub fn next_with(&mut self, f: impl FnOnce(&Event<'_>)) -> bool {
        if self.peek_time().is_none() {
            return false;
        }
        self.ready = None;
        // Parsed a second time: the event borrows the line, which the reader reuses.
        match serde_json::from_slice::<Event<'_>>(self.line.trim_ascii()) {
            Ok(e) => {
                self.fed += 1;
                f(&e);
                true
            }
            Err(_) => {
                self.bad += 1;
                true
            }
        }
    }

    /// Feeds every gateway event up to `until` (all of them with `None`).
    pub fn feed_until(&mut self, until: Option<Timestamp>, mut f: impl FnMut(&Event<'_>)) {
        while let Some(t) = self.peek_time() {
            if until.is_some_and(|u| t > u) {
                break;
            }
            self.next_with(&mut f);
        }
    }
}

enum Line {
    Whole,
    TooLong,
    Eof,
}

fn read_line<R: BufRead>(r: &mut R, out: &mut Vec<u8>) -> io::Result<Line> {
    out.clear();
    let mut too_long = false;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(match (out.is_empty() && !too_long, too_long) {
                (true, _) => Line::Eof,
                (_, true) => Line::TooLong,
                _ => Line::Whole,
            });
        }
        let (take, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if !too_long {
            if out.len() + take > MAX_LINE {
                too_long = true;
                out.clear();
            } else {
                out.extend_from_slice(&buf[..take]);
            }
        }
        r.consume(take);
        if end {
            return Ok(if too_long { Line::TooLong } else { Line::Whole });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gateway_events_and_counts_the_rest() {
        let long = format!("{{\"x\":\"{}\"}}\n", "a".repeat(MAX_LINE + 10));
        let text = format!(
            "{}\nnot json\n{}\n{long}\n\n{}",
            r#"{"timestamp":"2026-12-05T10:00:00.000000Z","event_type":"gateway","frame":1,"gateway":{"step":"request","outcome":"refused","reason":"revoked"}}"#,
            r#"{"timestamp":"2026-12-05T10:00:01.000000Z","event_type":"krb5","frame":2}"#,
            r#"{"timestamp":"2026-12-05T10:00:02.000000Z","event_type":"gateway","frame":3,"gateway":{"step":"request","outcome":"served","status":200}}"#,
        );
        let mut f = EventFeed::new(text.as_bytes());
        let t0 = f.peek_time();
        assert!(t0.is_some());
        let mut frames = Vec::new();
        f.feed_until(t0, |e| frames.push(e.frame));
        assert_eq!(frames, [1]);
        f.feed_until(None, |e| frames.push(e.frame));
        assert_eq!(frames, [1, 3]);
        assert_eq!((f.fed, f.bad, f.skipped), (2, 2, 1));
        assert!(f.error.is_none());
    }
}
