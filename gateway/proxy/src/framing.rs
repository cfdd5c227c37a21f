//! The device's request heads as they arrive, read beside hyper from the raw stream, for
//! what hyper does not tell: whether a head carried both Content-Length and
//! Transfer-Encoding. hyper drops the Content-Length of such a request and frames it as
//! chunked; RFC 9112 6.1 lets a server refuse it instead, and a gateway in front of
//! another HTTP reader should (two readers that frame one request differently is request
//! smuggling). Heads and chunk-size lines are read with httparse (hyper's own head parser);
//! bodies are skipped by their length, never kept. Pure: bytes in, verdicts out.

/// Bytes kept for one head (hyper's own read buffer is no larger); beyond it hyper refuses
/// the head, and the scan stops.
const MAX_HELD: usize = 64 * 1024;
/// Header lines looked at per head without allocating; a head with more is read again
/// with room for MAX_HEADERS_ANY.
const MAX_HEADERS: usize = 128;
/// The most limits.max_headers allows; a head with more is refused by hyper.
const MAX_HEADERS_ANY: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    /// Content-Length bytes still to come.
    Body(u64),
    ChunkSize,
    /// Chunk data and its CRLF still to come.
    ChunkData(u64),
    Trailers,
    /// The stream is no longer read as HTTP/1.1 requests: a head hyper refuses (it ends the
    /// connection), an upgrade, or a framing this scan cannot follow.
    Stopped,
}

/// Follows the request boundaries of one connection.
#[derive(Debug)]
pub struct HeadScan {
    state: State,
    held: Vec<u8>,
    heads: u64,
    ambiguous: Option<u64>,
}

impl Default for HeadScan {
    fn default() -> Self {
        Self {
            state: State::Head,
            held: Vec::new(),
            heads: 0,
            ambiguous: None,
        }
    }
}

impl HeadScan {
    /// The index (0 for the connection's first request) of the first head that carried
    /// both Content-Length and Transfer-Encoding.
    pub fn ambiguous(&self) -> Option<u64> {
        self.ambiguous
    }

    /// Whether a request head has begun and not ended: its bytes are held.
    pub fn head_begun(&self) -> bool {
        self.state == State::Head && !self.held.is_empty()
    }

    /// Bytes as they were read from the device, in order.
    pub fn feed(&mut self, data: &[u8]) {
        let mut at = 0;
        while at < data.len() {
            match self.state {
                State::Stopped => return,
                State::Body(n) | State::ChunkData(n) => {
                    let k = n.min((data.len() - at) as u64);
                    at += k as usize;
                    let left = n - k;
                    self.state = match (self.state, left) {
                        (State::Body(_), 0) => State::Head,
                        (State::Body(_), l) => State::Body(l),
                        (_, 0) => State::ChunkSize,
                        (_, l) => State::ChunkData(l),
                    };
                }
                State::Head | State::ChunkSize | State::Trailers if self.held.is_empty() => {
                    // Parsed where it lies in the read; only an unfinished line is kept.
                    let end = data.len().min(at + MAX_HELD);
                    match step(self.state, &data[at..end]) {
                        Parsed::Complete {
                            used,
                            next,
                            ambiguous,
                        } => {
                            at += used;
                            self.moved(next, ambiguous);
                        }
                        Parsed::Partial if end - at >= MAX_HELD => return self.stop(),
                        Parsed::Partial => {
                            self.held.extend_from_slice(&data[at..end]);
                            at = end;
                        }
                        Parsed::Error => return self.stop(),
                    }
                }
                State::Head | State::ChunkSize | State::Trailers => {
                    let before = self.held.len();
                    let take = (data.len() - at).min(MAX_HELD.saturating_sub(before));
                    self.held.extend_from_slice(&data[at..at + take]);
                    match step(self.state, &self.held) {
                        // What was held did not parse alone: the end lies in this read.
                        Parsed::Complete {
                            used,
                            next,
                            ambiguous,
                        } => {
                            at += used.saturating_sub(before);
                            self.held = Vec::new();
                            self.moved(next, ambiguous);
                        }
                        Parsed::Partial if self.held.len() >= MAX_HELD => return self.stop(),
                        Parsed::Partial => at += take,
                        Parsed::Error => return self.stop(),
                    }
                }
            }
        }
    }

    fn moved(&mut self, next: State, head: Option<bool>) {
        if let Some(ambiguous) = head {
            if ambiguous {
                self.ambiguous.get_or_insert(self.heads);
            }
            self.heads += 1;
        }
        self.state = next;
        if next == State::Stopped {
            self.held = Vec::new();
        }
    }

    fn stop(&mut self) {
        self.state = State::Stopped;
        self.held = Vec::new();
    }
}

enum Parsed {
    /// `ambiguous`: Some for a request head (whether it had both lengths).
    Complete {
        used: usize,
        next: State,
        ambiguous: Option<bool>,
    },
    Partial,
    Error,
}

/// Parses `buf` in state `state` (a head, a chunk-size line, trailers).
fn step(state: State, buf: &[u8]) -> Parsed {
    match state {
        State::Head => {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match head(buf, &mut headers) {
                Ok(p) => p,
                Err(_) => head(buf, &mut vec![httparse::EMPTY_HEADER; MAX_HEADERS_ANY])
                    .unwrap_or(Parsed::Error),
            }
        }
        State::ChunkSize => match httparse::parse_chunk_size(buf) {
            Ok(httparse::Status::Complete((used, 0))) => Parsed::Complete {
                used,
                next: State::Trailers,
                ambiguous: None,
            },
            Ok(httparse::Status::Complete((used, size))) => match size.checked_add(2) {
                Some(n) => Parsed::Complete {
                    used,
                    next: State::ChunkData(n),
                    ambiguous: None,
                },
                None => Parsed::Error,
            },
            Ok(httparse::Status::Partial) => Parsed::Partial,
            Err(_) => Parsed::Error,
        },
        State::Trailers => {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match httparse::parse_headers(buf, &mut headers) {
                Ok(httparse::Status::Complete((used, _))) => Parsed::Complete {
                    used,
                    next: State::Head,
                    ambiguous: None,
                },
                Ok(httparse::Status::Partial) => Parsed::Partial,
                Err(_) => Parsed::Error,
            }
        }
        State::Body(_) | State::ChunkData(_) | State::Stopped => Parsed::Error,
    }
}

/// A request head at the start of `buf`. Err only for more header lines than `headers`
/// holds.
fn head<'b>(
    buf: &'b [u8],
    headers: &mut [httparse::Header<'b>],
) -> Result<Parsed, httparse::Error> {
    let mut req = httparse::Request::new(headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(used)) => {
            let has = |name: &str| {
                req.headers
                    .iter()
                    .any(|h| h.name.eq_ignore_ascii_case(name))
            };
            let te = has("transfer-encoding");
            let lengths: Vec<&[u8]> = req
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| h.value)
                .collect();
            // hyper closes the connection after a request with both: nothing after
            // it is a request.
            let ambiguous = te && !lengths.is_empty();
            let upgrade = req.method == Some("CONNECT") || has("upgrade");
            let next = if ambiguous || upgrade {
                State::Stopped
            } else if te {
                // hyper refuses a request whose last coding is not chunked.
                State::ChunkSize
            } else if lengths.is_empty() {
                State::Head
            } else {
                match content_length(&lengths) {
                    Some(0) => State::Head,
                    Some(n) => State::Body(n),
                    None => State::Stopped,
                }
            };
            Ok(Parsed::Complete {
                used,
                next,
                ambiguous: Some(ambiguous),
            })
        }
        Ok(httparse::Status::Partial) => Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => Err(httparse::Error::TooManyHeaders),
        Err(_) => Ok(Parsed::Error),
    }
}

/// One length from every Content-Length line (each may be a comma list), all equal, as
/// hyper takes it; None for any other.
fn content_length(values: &[&[u8]]) -> Option<u64> {
    let mut len = None;
    for v in values {
        for part in std::str::from_utf8(v).ok()?.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n: u64 = part.parse().ok()?;
            if len.is_some_and(|l| l != n) {
                return None;
            }
            len = Some(n);
        }
    }
    len
}

#[cfg(test)]
mod tests {
    use super::HeadScan;

    fn scan(pieces: &[&[u8]]) -> HeadScan {
        let mut s = HeadScan::default();
        for p in pieces {
            s.feed(p);
        }
        s
    }

    fn every_split(stream: &[u8]) -> Vec<Option<u64>> {
        let mut out = vec![scan(&[stream]).ambiguous()];
        for i in 1..stream.len() {
            out.push(scan(&[&stream[..i], &stream[i..]]).ambiguous());
        }
        out.push(scan(&stream.chunks(1).collect::<Vec<_>>()).ambiguous());
        out
    }

    #[test]
    fn a_head_with_both_lengths_is_found_wherever_the_reads_split_it() {
        let cl_te = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(every_split(cl_te).iter().all(|a| *a == Some(0)));
        let te_cl = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n";
        assert!(every_split(te_cl).iter().all(|a| *a == Some(0)));
    }

    #[test]
    fn the_third_request_after_a_sized_and_a_chunked_one() {
        let stream = b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloPOST /2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nTrailer: t\r\n\r\nPOST /3 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(every_split(stream).iter().all(|a| *a == Some(2)));
    }

    #[test]
    fn bodies_that_look_like_heads_are_skipped() {
        // A body (sized, then chunked) carrying a head with both lengths is not a head.
        let inner = "POST /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let sized = format!("POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{inner}GET /2 HTTP/1.1\r\nHost: x\r\n\r\n", inner.len());
        assert!(every_split(sized.as_bytes()).iter().all(|a| a.is_none()));
        let chunked = format!("POST /1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{inner}\r\n0\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", inner.len());
        assert!(every_split(chunked.as_bytes()).iter().all(|a| a.is_none()));
    }

    #[test]
    fn a_second_head_begun_in_the_same_read_as_the_first_request() {
        let s = scan(&[b"POST /1 HTTP/1.1\r\nContent-Length: 2\r\n\r\nokPOST /2 HTTP/1.1\r\nHo"]);
        assert!(s.head_begun());
        assert!(!scan(&[b"POST /1 HTTP/1.1\r\nContent-Length: 2\r\n\r\nok"]).head_begun());
        assert!(!scan(&[b"POST /1 HTTP/1.1\r\nContent-Length: 9\r\n\r\nok"]).head_begun());
    }

    #[test]
    fn a_head_with_more_header_lines_than_the_first_try_holds() {
        let many: String = (0..300).map(|i| format!("X-H{i}: v\r\n")).collect();
        let stream = format!("POST / HTTP/1.1\r\n{many}Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        assert_eq!(scan(&[stream.as_bytes()]).ambiguous(), Some(0));
    }

    #[test]
    fn one_length_or_the_other_is_no_finding() {
        assert_eq!(
            scan(&[b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"])
                .ambiguous(),
            None
        );
        assert_eq!(
            scan(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"])
                .ambiguous(),
            None
        );
        assert_eq!(scan(&[b"GET / HTTP/1.1\r\n\r\n"]).ambiguous(), None);
    }

    #[test]
    fn what_hyper_refuses_stops_the_scan_and_nothing_is_held_beyond_the_limit() {
        let mut s = scan(&[b"\x00\x01garbage\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"]);
        assert_eq!(s.ambiguous(), None);
        s = HeadScan::default();
        s.feed(b"GET / HTTP/1.1\r\n");
        for _ in 0..100 {
            s.feed(&[b'a'; 1024]);
        }
        assert!(s.held.capacity() <= 2 * super::MAX_HELD);
        assert_eq!(s.ambiguous(), None);
    }
}
