//! HTTP/1.1 to Exchange on bytes: the forwarded request's head, Exchange's response head and
//! how its body is framed (RFC 9112 section 6.3), and the chunked decoding (section 7.1).
//! Pure: the connections are in `upstream`.
//!
//! Why not hyper's client: it keeps about 16 KiB per request that Exchange holds (measured:
//! 36.6 KiB per held Ping with it, 20.2 KiB with the request held before it; its dispatch
//! channel's block and its write buffer each keep a page resident), and a Ping is held up to
//! an hour on every device. The head is parsed by httparse, hyper's own parser; framing is
//! strict: anything ambiguous is refused (502), never guessed.

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};

/// The most header lines accepted in a response head (IIS and Exchange send about 15).
pub const MAX_HEADERS: usize = 100;
/// The longest chunk-size line, extensions included, and the most trailer bytes.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body and no Content-Length (a GET, HEAD or OPTIONS without one).
    None,
    Length(u64),
    Chunked,
}

/// The request head as sent to Exchange. `headers` come from `normalize` (hop-by-hop,
/// framing and Host handled there, Host set), so only the framing header is added here.
pub fn request_head(method: &Method, target: &str, headers: &HeaderMap, framing: RequestFraming) -> Vec<u8> {
    let mut h = Vec::with_capacity(256 + headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum::<usize>());
    h.extend_from_slice(method.as_str().as_bytes());
    h.push(b' ');
    h.extend_from_slice(target.as_bytes());
    h.extend_from_slice(b" HTTP/1.1\r\n");
    for (n, v) in headers {
        h.extend_from_slice(n.as_str().as_bytes());
        h.extend_from_slice(b": ");
        h.extend_from_slice(v.as_bytes());
        h.extend_from_slice(b"\r\n");
    }
    match framing {
        RequestFraming::None => {}
        RequestFraming::Length(n) => h.extend_from_slice(format!("content-length: {n}\r\n").as_bytes()),
        RequestFraming::Chunked => h.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    h.extend_from_slice(b"\r\n");
    h
}

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// None at all (HEAD, 1xx, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until Exchange closes the connection.
    Close,
}

#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: BodyKind,
    /// The connection may carry another request after this response.
    pub reusable: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// Longer than the buffer given (`exchange.response_head_bytes`) or more headers than
    /// [`MAX_HEADERS`].
    TooLarge,
    Invalid(String),
}

/// Parses a response head from the start of `buf`: `Ok(None)` while it is incomplete, else
/// the head and its length in bytes. `head_request`: the request was HEAD (no body follows,
/// whatever Content-Length says).
pub fn response_head(buf: &[u8], head_request: bool) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut slots);
    let n = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Invalid(format!("response head: {e}"))),
    };
    let code = r.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| HeadError::Invalid(format!("status {code}")))?;
    let http11 = r.version == Some(1);
    let mut headers = HeaderMap::with_capacity(r.headers.len());
    let mut lengths: Vec<&[u8]> = Vec::new();
    let mut codings: Vec<&[u8]> = Vec::new();
    // HTTP/1.0 keeps the connection only when asked to; "close" wins over everything.
    let (mut said_close, mut said_keep) = (false, false);
    for h in r.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| HeadError::Invalid(format!("header name {:?}", h.name)))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| HeadError::Invalid(format!("value of {name}")))?;
        if name == hyper::header::CONTENT_LENGTH {
            lengths.extend(h.value.split(|b| *b == b','));
        } else if name == hyper::header::TRANSFER_ENCODING {
            codings.extend(h.value.split(|b| *b == b','));
        } else if name == hyper::header::CONNECTION {
            for t in h.value.split(|b| *b == b',').map(trim) {
                said_close |= t.eq_ignore_ascii_case(b"close");
                said_keep |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        headers.append(name, value);
    }
    let mut close = said_close || (!http11 && !said_keep);
    let no_body = head_request || status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let body = if no_body {
        BodyKind::Empty
    } else if !codings.is_empty() {
        if !http11 {
            return Err(HeadError::Invalid("Transfer-Encoding in an HTTP/1.0 response".into()));
        }
        // Both headers: RFC 9112 6.3 says Transfer-Encoding wins and the connection closes
        // after; a proxy that guesses differently is how responses get smuggled, so refused.
        if !lengths.is_empty() {
            return Err(HeadError::Invalid("both Transfer-Encoding and Content-Length".into()));
        }
        // Only chunked is decoded. Another coding (gzip, deflate, compress) could not be
        // passed on: the device's framing is the gateway's, so the header naming it would be
        // gone and the device would take compressed bytes for the body. Exchange sends none.
        if let Some(other) = codings.iter().map(|c| trim(c)).find(|c| !c.eq_ignore_ascii_case(b"chunked")) {
            return Err(HeadError::Invalid(format!(
                "Transfer-Encoding {:?}: only chunked is decoded",
                String::from_utf8_lossy(&other[..other.len().min(32)])
            )));
        }
        // chunked applied twice is not HTTP/1.1.
        if codings.len() > 1 {
            return Err(HeadError::Invalid("chunked more than once".into()));
        }
        BodyKind::Chunked
    } else if !lengths.is_empty() {
        let mut value: Option<u64> = None;
        for l in &lengths {
            let l = trim(l);
            if l.is_empty() || l.len() > 19 || !l.iter().all(u8::is_ascii_digit) {
                return Err(HeadError::Invalid("Content-Length is not a number".into()));
            }
            let v = std::str::from_utf8(l).ok().and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| HeadError::Invalid("Content-Length".into()))?;
            if value.is_some_and(|x| x != v) {
                return Err(HeadError::Invalid("differing Content-Length values".into()));
            }
            value = Some(v);
        }
        BodyKind::Length(value.unwrap_or(0))
    } else {
        close = true;
        BodyKind::Close
    };
    Ok(Some((ResponseHead { status, headers, body, reusable: !close }, n)))
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b.iter().position(|c| *c != b' ' && *c != b'\t').unwrap_or(b.len());
    let e = b.iter().rposition(|c| *c != b' ' && *c != b'\t').map_or(s, |e| e + 1);
    &b[s..e.max(s)]
}

/// The chunked decoder's place in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a chunk-size line: the size so far, hex digits seen, and after them: 0 nothing
    /// yet, 1 whitespace (only more of it or ';' may follow), 2 in the extensions.
    Size { size: u64, digits: u8, ext: u8 },
    /// The LF of a chunk-size line.
    SizeLf { size: u64 },
    Data(u64),
    DataCr,
    DataLf,
    /// In the trailer section: the current line's length.
    Trailer { line: usize },
    TrailerLf { line: usize },
    Done,
}

/// What [`Chunked::feed`] did with the bytes given.
#[derive(Debug, PartialEq, Eq)]
pub struct Fed {
    /// Bytes of the input used (framing and data).
    pub used: usize,
    /// Where in the input the data is (empty when there was none).
    pub data: std::ops::Range<usize>,
}

/// Incremental chunked decoding, strict: CRLF line ends only, hex sizes without sign or
/// spaces, bounded lines and trailers (which are read and dropped).
#[derive(Debug)]
pub struct Chunked {
    state: State,
    line: usize,
    trailers: usize,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked { state: State::Size { size: 0, digits: 0, ext: 0 }, line: 0, trailers: 0 }
    }
}

impl Chunked {
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the start of `input` up to and including the next piece of data (or to
    /// the end of the input, or of the body). Call again with the rest.
    pub fn feed(&mut self, input: &[u8]) -> Result<Fed, String> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Data(left) => {
                    let n = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    let left = left - n as u64;
                    self.state = if left == 0 { State::DataCr } else { State::Data(left) };
                    return Ok(Fed { used: i + n, data: i..i + n });
                }
                State::Size { size, digits, ext } => {
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return Err("chunk-size line too long".into());
                    }
                    if b == b'\r' {
                        if digits == 0 {
                            return Err("chunk without a size".into());
                        }
                        self.state = State::SizeLf { size };
                    } else if ext == 2 {
                        if b == b'\n' {
                            return Err("bare LF in a chunk-size line".into());
                        }
                    } else if b == b';' && digits > 0 {
                        self.state = State::Size { size, digits, ext: 2 };
                    } else if (b == b' ' || b == b'\t') && digits > 0 {
                        self.state = State::Size { size, digits, ext: 1 };
                    } else if let Some(d) = (b as char).to_digit(16).filter(|_| ext == 0) {
                        if digits >= 16 {
                            return Err("chunk size too large".into());
                        }
                        self.state = State::Size { size: (size << 4) | u64::from(d), digits: digits + 1, ext: 0 };
                    } else {
                        return Err(format!("byte {b:#04x} in a chunk-size line"));
                    }
                }
                State::SizeLf { size } => {
                    if b != b'\n' {
                        return Err("chunk-size line not ended by CRLF".into());
                    }
                    self.line = 0;
                    self.state = if size == 0 { State::Trailer { line: 0 } } else { State::Data(size) };
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err("chunk data not followed by CRLF".into());
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err("chunk data not followed by CRLF".into());
                    }
                    self.state = State::Size { size: 0, digits: 0, ext: 0 };
                }
                State::Trailer { line } => {
                    self.trailers += 1;
                    if self.trailers > MAX_TRAILERS {
                        return Err("trailers too large".into());
                    }
                    if b == b'\r' {
                        self.state = State::TrailerLf { line };
                    } else if b == b'\n' {
                        return Err("bare LF in the trailers".into());
                    } else {
                        self.state = State::Trailer { line: line + 1 };
                    }
                }
                State::TrailerLf { line } => {
                    self.trailers += 1;
                    if b != b'\n' {
                        return Err("trailer line not ended by CRLF".into());
                    }
                    if line == 0 {
                        self.state = State::Done;
                        return Ok(Fed { used: i + 1, data: i + 1..i + 1 });
                    }
                    self.state = State::Trailer { line: 0 };
                }
                State::Done => return Ok(Fed { used: i, data: i..i }),
            }
            i += 1;
        }
        Ok(Fed { used: i, data: i..i })
    }
}

/// The frame around one piece of a chunked request body.
pub fn chunk_header(len: usize) -> Vec<u8> {
    format!("{len:x}\r\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> Result<Option<(ResponseHead, usize)>, HeadError> {
        response_head(s.as_bytes(), false)
    }

    fn kind(s: &str) -> Result<(BodyKind, bool), HeadError> {
        head(s).map(|h| h.map(|(h, _)| (h.body, h.reusable)).expect("complete"))
    }

    #[test]
    fn framing_follows_rfc_9112_and_refuses_what_is_ambiguous() {
        assert_eq!(kind("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), Ok((BodyKind::Length(5), true)));
        assert_eq!(kind("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"), Ok((BodyKind::Length(5), true)));
        assert_eq!(kind("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), Ok((BodyKind::Chunked, true)));
        assert_eq!(kind("HTTP/1.1 200 OK\r\n\r\n"), Ok((BodyKind::Close, false)));
        assert_eq!(kind("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"), Ok((BodyKind::Length(0), false)));
        assert_eq!(kind("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"), Ok((BodyKind::Length(1), false)));
        assert_eq!(kind("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n"), Ok((BodyKind::Length(1), true)));
        assert_eq!(kind("HTTP/1.0 200 OK\r\nConnection: close, keep-alive\r\nContent-Length: 1\r\n\r\n"), Ok((BodyKind::Length(1), false)));
        assert_eq!(kind("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\nContent-Length: 1\r\n\r\n"), Ok((BodyKind::Length(1), false)));
        assert_eq!(kind("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"), Ok((BodyKind::Empty, true)));
        assert_eq!(kind("HTTP/1.1 304 Not Modified\r\n\r\n"), Ok((BodyKind::Empty, true)));
        assert_eq!(kind("HTTP/1.1 100 Continue\r\n\r\n"), Ok((BodyKind::Empty, true)));
        assert!(matches!(response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true), Ok(Some((ResponseHead { body: BodyKind::Empty, .. }, _)))));
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/2 200 OK\r\n\r\n",
        ] {
            assert!(matches!(head(bad), Err(HeadError::Invalid(_))), "{bad:?}: {:?}", head(bad));
        }
        assert!(matches!(head("HTTP/1.1 200 OK\r\nContent-Len"), Ok(None)));
        let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "X-A: 1\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(head(&many).err(), Some(HeadError::TooLarge));
    }

    #[test]
    fn the_head_keeps_status_headers_and_length() {
        let text = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Negotiate\r\nWWW-Authenticate: NTLM\r\nContent-Length: 0\r\n\r\nNEXT";
        let (h, n) = head(text).expect("parses").expect("complete");
        assert_eq!(h.status, StatusCode::UNAUTHORIZED);
        assert_eq!(h.headers.get_all("www-authenticate").iter().count(), 2);
        assert_eq!(&text[n..], "NEXT");
    }

    /// Decodes `wire` fed in pieces of `step` bytes (the reads a socket may give).
    fn decode(wire: &[u8], step: usize) -> Result<(Vec<u8>, usize), String> {
        let mut d = Chunked::default();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < wire.len() && !d.done() {
            let end = (pos + step).min(wire.len());
            let mut piece = &wire[pos..end];
            while !piece.is_empty() && !d.done() {
                let f = d.feed(piece)?;
                out.extend_from_slice(&piece[f.data.clone()]);
                piece = &piece[f.used..];
                pos += f.used;
            }
            if !d.done() && pos < end {
                return Err("stuck".into());
            }
        }
        if !d.done() {
            return Err("incomplete".into());
        }
        Ok((out, pos))
    }

    #[test]
    fn chunked_bodies_decode_in_any_pieces() {
        let wire = b"5\r\nhello\r\n1 ; name=value\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
        for step in 1..wire.len() {
            let (body, used) = decode(wire, step).unwrap_or_else(|e| panic!("step {step}: {e}"));
            assert_eq!(body, b"hello 0123456789", "step {step}");
            assert_eq!(&wire[used..], b"NEXT", "step {step}");
        }
        assert_eq!(decode(b"0\r\n\r\n", 1).map(|(b, _)| b), Ok(Vec::new()));
    }

    #[test]
    fn chunked_framing_errors_are_refused() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"fffffffffffffffff\r\n",
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",
            b"0\r\nX: y\n\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"5 5\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(decode(bad, 1).is_err() && decode(bad, bad.len()).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(MAX_CHUNK_LINE));
        assert!(decode(long.as_bytes(), 7).is_err());
        let trailers = format!("0\r\n{}\r\n", "X-T: 1\r\n".repeat(MAX_TRAILERS / 8 + 1));
        assert!(decode(trailers.as_bytes(), 100).is_err());
        assert_eq!(decode(b"5\r\nhel", 2), Err("incomplete".into()));
    }

    #[test]
    fn the_request_head_is_what_normalize_left_plus_the_framing() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("mail.lab.test"));
        h.insert("authorization", HeaderValue::from_static("Negotiate YII="));
        let wire = request_head(&Method::POST, "/Microsoft-Server-ActiveSync?Cmd=Ping", &h, RequestFraming::Length(3));
        let mut slots = [httparse::EMPTY_HEADER; 8];
        let mut r = httparse::Request::new(&mut slots);
        assert_eq!(r.parse(&wire), Ok(httparse::Status::Complete(wire.len())));
        assert_eq!((r.method, r.path, r.version), (Some("POST"), Some("/Microsoft-Server-ActiveSync?Cmd=Ping"), Some(1)));
        let got: Vec<(String, String)> = r.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).to_string())).collect();
        assert_eq!(got, [("host", "mail.lab.test"), ("authorization", "Negotiate YII="), ("content-length", "3")].map(|(a, b)| (a.to_string(), b.to_string())));
        let chunked = request_head(&Method::POST, "/x", &HeaderMap::new(), RequestFraming::Chunked);
        assert!(chunked.ends_with(b"transfer-encoding: chunked\r\n\r\n"));
        assert!(request_head(&Method::GET, "/x", &HeaderMap::new(), RequestFraming::None).ends_with(b"HTTP/1.1\r\n\r\n"));
    }
}
