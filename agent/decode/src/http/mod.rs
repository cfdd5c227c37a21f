//! HTTP/1.x transactions: requests and responses paired in order on keep-alive and
//! pipelined connections, bodies framed by Content-Length, chunked encoding or the end of
//! the connection, and kept only where they are read (a CRL), under a cap. One `http`
//! event per transaction, with `eas` for an ActiveSync request and `crl` for a CRL fetch.

mod auth;
mod crl;
pub mod eas;

use std::collections::VecDeque;

use kcd_schema::{AnomalyLayer, Eas, EventType, Http, Timestamp};

use crate::emit::{Ctx, Emit};
use crate::keytab::{Keytab, KeytabStats};
use crate::Sink;

pub use auth::{authorization, authorization_with};

/// Headers kept per message for the event; the rest are read and dropped.
const MAX_FIELD: usize = 512;
/// WWW-Authenticate schemes kept.
const MAX_SCHEMES: usize = 8;
/// Longest chunk-size or trailer line.
const MAX_LINE: usize = 1024;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_header: usize,
    pub max_body_kept: usize,
    pub max_pipeline: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd(u8),
    Trailer,
}

/// A message body being read.
struct Body {
    framing: Framing,
    chunk: Chunk,
    line: Vec<u8>,
    total: u64,
    keep: bool,
    kept: Vec<u8>,
    /// The body was longer than the cap: what was kept is not all of it.
    cut: bool,
}

impl Body {
    fn new(framing: Framing, keep: bool) -> Self {
        Body { framing, chunk: Chunk::Size, line: Vec::new(), total: 0, keep, kept: Vec::new(), cut: false }
    }

    fn content(&mut self, b: &[u8], cap: usize) {
        self.total += b.len() as u64;
        if self.keep && !self.cut {
            if self.kept.len() + b.len() > cap {
                self.cut = true;
                self.kept = Vec::new();
            } else {
                self.kept.extend_from_slice(b);
            }
        }
    }

    /// Takes body bytes from `b`; returns how many it used and whether the body ended.
    /// Err: the chunked framing is broken.
    fn feed(&mut self, b: &[u8], cap: usize) -> Result<(usize, bool), &'static str> {
        match self.framing {
            Framing::None => Ok((0, true)),
            Framing::Length(n) => {
                let take = usize::try_from(n).unwrap_or(usize::MAX).min(b.len());
                self.content(&b[..take], cap);
                let left = n - take as u64;
                self.framing = Framing::Length(left);
                Ok((take, left == 0))
            }
            Framing::Close => {
                self.content(b, cap);
                Ok((b.len(), false))
            }
            Framing::Chunked => {
                let mut i = 0;
                while i < b.len() {
                    match self.chunk {
                        Chunk::Size | Chunk::Trailer => {
                            let Some(nl) = b[i..].iter().position(|&c| c == b'\n') else {
                                self.line.extend_from_slice(&b[i..]);
                                if self.line.len() > MAX_LINE {
                                    return Err("chunk-size or trailer line too long");
                                }
                                return Ok((b.len(), false));
                            };
                            self.line.extend_from_slice(&b[i..i + nl]);
                            i += nl + 1;
                            let line = std::mem::take(&mut self.line);
                            let text = line.strip_suffix(b"\r").unwrap_or(&line);
                            if self.chunk == Chunk::Trailer {
                                if text.is_empty() {
                                    return Ok((i, true));
                                }
                                continue;
                            }
                            let hex = text.split(|&c| c == b';').next().unwrap_or_default();
                            let hex = std::str::from_utf8(hex).map_err(|_| "chunk size not text")?.trim();
                            let n = u64::from_str_radix(hex, 16).map_err(|_| "chunk size not hexadecimal")?;
                            self.chunk = if n == 0 { Chunk::Trailer } else { Chunk::Data(n) };
                        }
                        Chunk::Data(n) => {
                            let take = usize::try_from(n).unwrap_or(usize::MAX).min(b.len() - i);
                            self.content(&b[i..i + take], cap);
                            i += take;
                            let left = n - take as u64;
                            self.chunk = if left == 0 { Chunk::DataEnd(2) } else { Chunk::Data(left) };
                        }
                        Chunk::DataEnd(k) => {
                            // CRLF after the chunk's data.
                            i += 1;
                            self.chunk = if k <= 1 { Chunk::Size } else { Chunk::DataEnd(k - 1) };
                        }
                    }
                }
                Ok((b.len(), false))
            }
        }
    }
}

/// A request, read, waiting for its response.
struct Tx {
    http: Http,
    eas: Option<Eas>,
    /// The URL names a CRL (".crl"), or the response will tell.
    crl_url: bool,
    ts: Timestamp,
}

/// A response being read, with its request.
struct Reading {
    tx: Option<Tx>,
    body: Body,
    crl_type: bool,
}

#[derive(Default)]
struct Dir {
    /// An unfinished message head.
    head: Vec<u8>,
}

pub struct HttpConn {
    dirs: [Dir; 2],
    /// The request whose body is being read.
    request: Option<(Tx, Body)>,
    pending: VecDeque<Tx>,
    response: Option<Reading>,
    /// Framing lost (a gap, an upgrade, garbage): nothing more is read.
    lost: bool,
    limits: Limits,
}

impl HttpConn {
    pub fn new(limits: Limits) -> Self {
        HttpConn { dirs: Default::default(), request: None, pending: VecDeque::new(), response: None, lost: false, limits }
    }

    /// As new, keeping the pipeline queue's allocation (a few requests' worth: over
    /// 1 KiB, which glibc's malloc serves only after consolidating its free lists).
    pub(crate) fn reset(&mut self, limits: Limits) {
        let mut pending = std::mem::take(&mut self.pending);
        pending.clear();
        pending.shrink_to(4);
        *self = HttpConn::new(limits);
        self.pending = pending;
    }

    pub fn capacity(&self) -> usize {
        self.dirs.iter().map(|d| d.head.capacity()).sum::<usize>()
            + self.response.as_ref().map_or(0, |r| r.body.kept.capacity() + r.body.line.capacity())
            + self.pending.len() * 256
    }

    pub fn buffered(&self, d: usize) -> usize {
        self.dirs.get(d).map_or(0, |x| x.head.len())
    }

    pub(crate) fn gap<S: Sink + ?Sized>(&mut self, emit: &mut Emit<'_, S>, ctx: &Ctx<'_>) {
        if !self.lost {
            self.lose(emit, ctx, "bytes missing from the stream; the transactions after it are not decoded");
        }
    }

    fn lose<S: Sink + ?Sized>(&mut self, emit: &mut Emit<'_, S>, ctx: &Ctx<'_>, why: &str) {
        self.lost = true;
        self.dirs = Default::default();
        // What was read so far is still told.
        if let Some(mut r) = self.response.take() {
            if let Some(tx) = r.tx.take() {
                self.emit(tx, Some(&mut r), Some(why), emit, ctx);
            }
        }
        while let Some(tx) = self.pending.pop_front() {
            self.emit(tx, None, Some(why), emit, ctx);
        }
    }

    pub(crate) fn data<S: Sink + ?Sized>(&mut self, d: usize, mut b: &[u8], emit: &mut Emit<'_, S>, ctx: &Ctx<'_>) {
        while !b.is_empty() && !self.lost {
            let cap = self.limits.max_body_kept;
            let body = if d == 0 { self.request.as_mut().map(|r| &mut r.1) } else { self.response.as_mut().map(|r| &mut r.body) };
            if let Some(body) = body {
                match body.feed(b, cap) {
                    Ok((used, done)) => {
                        b = &b[used..];
                        if done {
                            self.message_done(d, emit, ctx);
                        }
                    }
                    Err(why) => {
                        emit.anomaly(ctx, AnomalyLayer::Http, "http_bad_chunk", why.to_string());
                        self.lose(emit, ctx, why);
                    }
                }
                continue;
            }
            // Headers: up to the empty line. A head whole in this segment (the common case)
            // is read where it lies; only an unfinished one is copied and held.
            if self.dirs[d].head.is_empty() {
                let window = &b[..b.len().min(self.limits.max_header + 4)];
                if let Some(end) = find_end(window) {
                    let (head, rest) = b.split_at(end);
                    b = rest;
                    if !self.head(d, head, emit, ctx) {
                        return;
                    }
                    continue;
                }
            }
            let dir = &mut self.dirs[d];
            let before = dir.head.len();
            let search_from = before.saturating_sub(3);
            dir.head.extend_from_slice(&b[..b.len().min(self.limits.max_header + 4 - before.min(self.limits.max_header))]);
            let Some(end) = find_end(&dir.head[search_from..]).map(|e| e + search_from) else {
                if dir.head.len() > self.limits.max_header {
                    let n = dir.head.len();
                    emit.anomaly(ctx, AnomalyLayer::Http, "http_header_oversize", format!("HTTP header over {n} bytes (--max-http-header); the connection is not decoded further"));
                    self.lose(emit, ctx, "header too large");
                } else if before == 0 && !looks_like_http(&dir.head, d) {
                    let head: Vec<String> = dir.head.iter().take(8).map(|x| format!("{x:02x}")).collect();
                    emit.anomaly(ctx, AnomalyLayer::Http, "http_not_http", format!("bytes on an HTTP port that are not HTTP (start {})", head.join(" ")));
                    self.lose(emit, ctx, "not HTTP");
                }
                return;
            };
            let used = end - before;
            b = &b[used.min(b.len())..];
            let held = std::mem::take(&mut self.dirs[d].head);
            if !self.head(d, &held[..end], emit, ctx) {
                return;
            }
        }
    }

    /// A message head, read; false when the connection is not decoded further.
    fn head<S: Sink + ?Sized>(&mut self, d: usize, head: &[u8], emit: &mut Emit<'_, S>, ctx: &Ctx<'_>) -> bool {
        let ok = if d == 0 { self.request_head(head, ctx, emit.keytab, &mut emit.stats.keytab) } else { self.response_head(head, ctx) };
        if let Err(why) = ok {
            emit.anomaly(ctx, AnomalyLayer::Http, "http_malformed", why.clone());
            self.lose(emit, ctx, &why);
            return false;
        }
        // A message without a body is complete with its head.
        let no_body = if d == 0 {
            self.request.as_ref().is_some_and(|r| r.1.framing == Framing::None)
        } else {
            self.response.as_ref().is_some_and(|r| r.body.framing == Framing::None)
        };
        if no_body {
            self.message_done(d, emit, ctx);
        }
        true
    }

    fn request_head(&mut self, head: &[u8], ctx: &Ctx<'_>, keytab: Option<&Keytab>, ks: &mut KeytabStats) -> Result<(), String> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err("request head incomplete".into()),
            Err(e) => return Err(format!("request head: {e}")),
        }
        let url = clip(req.path.unwrap_or(""));
        let mut http = Http {
            http_method: clip(req.method.unwrap_or("")),
            url: url.clone(),
            protocol: req.version.map(|v| match v {
                1 => "HTTP/1.1".to_string(),
                v => format!("HTTP/1.{v}"),
            }),
            request_frame: Some(ctx.frame),
            ..Http::default()
        };
        let mut framing = Framing::None;
        let mut eas_version = None;
        for h in req.headers.iter() {
            // Only the headers read are turned into text.
            let v = || text(h.value);
            let name = h.name;
            if name.eq_ignore_ascii_case("host") {
                http.hostname = Some(clip(v().trim()));
            } else if name.eq_ignore_ascii_case("user-agent") {
                http.http_user_agent = Some(clip(v().trim()));
            } else if name.eq_ignore_ascii_case("authorization") {
                http.authorization = Some(authorization_with(v().trim(), keytab.map(|k| (k, ctx.ts, &mut *ks))));
            } else if name.eq_ignore_ascii_case("ms-asprotocolversion") {
                eas_version = Some(clip(v().trim()));
            } else if name.eq_ignore_ascii_case("content-length") {
                framing = content_length(&v())?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") && v().to_ascii_lowercase().contains("chunked") {
                framing = Framing::Chunked;
            }
        }
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let eas = eas::request(path, query, eas_version);
        let crl_url = ends_with_ignore_case(path, ".crl");
        let tx = Tx { http, eas, crl_url, ts: ctx.ts };
        self.request = Some((tx, Body::new(framing, false)));
        Ok(())
    }

    fn response_head(&mut self, head: &[u8], ctx: &Ctx<'_>) -> Result<(), String> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err("response head incomplete".into()),
            Err(e) => return Err(format!("response head: {e}")),
        }
        let status = resp.code.unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            // Interim (100 Continue): the real response follows.
            return Ok(());
        }
        let mut tx = self.pending.pop_front();
        let head_method = tx.as_ref().is_some_and(|t| t.http.http_method.eq_ignore_ascii_case("HEAD"));
        let mut framing = Framing::Close;
        let mut content_type = None;
        let mut schemes = Vec::new();
        for h in resp.headers.iter() {
            let v = || text(h.value);
            if h.name.eq_ignore_ascii_case("content-length") {
                if framing != Framing::Chunked {
                    framing = content_length(&v())?;
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") && v().to_ascii_lowercase().contains("chunked") {
                framing = Framing::Chunked;
            } else if h.name.eq_ignore_ascii_case("content-type") {
                content_type = Some(clip(v().trim()));
            } else if h.name.eq_ignore_ascii_case("www-authenticate") && schemes.len() < MAX_SCHEMES {
                if let Some(s) = v().split_whitespace().next() {
                    schemes.push(clip(s.trim_end_matches(',')));
                }
            }
        }
        if head_method || status == 204 || status == 304 {
            framing = Framing::None;
        }
        let ct = content_type.as_deref().unwrap_or("").to_ascii_lowercase();
        let crl_type = ct.contains("pkix-crl") || ct.contains("x-pkcs7-crl");
        let keep = crl_type || tx.as_ref().is_some_and(|t| t.crl_url) || ct.starts_with("application/octet-stream");
        if let Some(t) = tx.as_mut() {
            t.http.status = Some(status);
            t.http.http_content_type = content_type;
            t.http.www_authenticate = schemes;
            t.http.latency_us = Some(ctx.ts.micros_since(t.ts));
        }
        if status == 101 {
            // Upgraded (WebSocket...): not HTTP any more.
            self.lost = true;
        }
        let body = Body::new(framing, keep && status < 300);
        self.response = Some(Reading { tx, body, crl_type });
        Ok(())
    }

    /// A request or a response has been read in full.
    fn message_done<S: Sink + ?Sized>(&mut self, d: usize, emit: &mut Emit<'_, S>, ctx: &Ctx<'_>) {
        if d == 0 {
            if let Some((mut tx, body)) = self.request.take() {
                tx.http.request_body_length = Some(body.total);
                if self.pending.len() >= self.limits.max_pipeline {
                    emit.anomaly(ctx, AnomalyLayer::Http, "http_pipeline_full", format!("more than {} requests waiting for responses; the oldest is reported without one", self.limits.max_pipeline));
                    if let Some(old) = self.pending.pop_front() {
                        self.emit(old, None, Some("no response before the pipeline overflowed"), emit, ctx);
                    }
                }
                self.pending.push_back(tx);
            }
            return;
        }
        if let Some(mut r) = self.response.take() {
            match r.tx.take() {
                Some(tx) => self.emit(tx, Some(&mut r), None, emit, ctx),
                None => emit.anomaly(
                    ctx,
                    AnomalyLayer::Http,
                    "http_response_without_request",
                    "a response to no request seen (the capture began mid-connection?)".into(),
                ),
            }
        }
    }

    fn emit<S: Sink + ?Sized>(&mut self, mut tx: Tx, r: Option<&mut Reading>, why: Option<&str>, emit: &mut Emit<'_, S>, ctx: &Ctx<'_>) {
        let mut crl = None;
        if let Some(r) = r {
            tx.http.length = Some(r.body.total);
            let der = (!r.body.cut && !r.body.kept.is_empty()).then(|| kcd_cert::crl_der(&r.body.kept));
            let parsed = der.as_deref().map(|d| emit.certs.crl(d));
            let is_crl = tx.crl_url || r.crl_type || matches!(parsed, Some(Some(_)));
            if is_crl {
                crl = Some(crl::crl_event(&tx, parsed, ctx.ts));
            }
        }
        if tx.http.malformed.is_none() {
            tx.http.malformed = why.map(str::to_string);
        }
        let client_first = ctx.direction == kcd_schema::Direction::ToKdc;
        let at = if client_first { *ctx } else { Ctx { src: ctx.dst, dst: ctx.src, ..*ctx } };
        let mut e = at.envelope(EventType::Http);
        emit.stats.http_transactions += 1;
        emit.stats.crl_fetches += u64::from(crl.is_some());
        e.http = Some(Box::new(tx.http));
        e.eas = tx.eas.map(Box::new);
        e.crl = crl.map(Box::new);
        // The device it names, written with it (the report's and the correlator's key).
        e.device = e.device_key().map(std::borrow::Cow::Owned);
        emit.sink.event(&e);
    }

    /// The connection ended: a response read to the end of the connection is complete;
    /// requests without a response are reported so.
    pub(crate) fn close<S: Sink + ?Sized>(&mut self, emit: &mut Emit<'_, S>, ctx: &Ctx<'_>) {
        if self.lost {
            return;
        }
        let close_framed = self.response.as_ref().is_some_and(|r| r.body.framing == Framing::Close);
        if let Some(mut r) = self.response.take() {
            if let Some(tx) = r.tx.take() {
                let why = (!close_framed).then_some("the connection ended before the response did");
                self.emit(tx, Some(&mut r), why, emit, ctx);
            }
        }
        if let Some((tx, _)) = self.request.take() {
            self.pending.push_back(tx);
        }
        while let Some(tx) = self.pending.pop_front() {
            self.emit(tx, None, None, emit, ctx);
        }
        self.lost = true;
    }
}

/// Header bytes as text: `from_utf8` checks ASCII a word at a time where `from_utf8_lossy`
/// goes byte by byte (a 2 KB Negotiate token each request).
fn text(b: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len() && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

fn content_length(v: &str) -> Result<Framing, String> {
    v.trim().parse::<u64>().map(|n| if n == 0 { Framing::None } else { Framing::Length(n) }).map_err(|_| format!("Content-Length {:?} is not a number", clip(v)))
}

fn find_end(b: &[u8]) -> Option<usize> {
    memchr::memmem::find(b, b"\r\n\r\n").map(|p| p + 4)
}

/// A request line starts with a method token; a status line with "HTTP/".
fn looks_like_http(b: &[u8], d: usize) -> bool {
    if d == 1 {
        return b.len() < 5 || b.starts_with(b"HTTP/");
    }
    let word = b.iter().take_while(|c| c.is_ascii_uppercase() || **c == b'-').count();
    word > 0 && (word == b.len() || b.get(word) == Some(&b' '))
}

fn clip(s: &str) -> String {
    let mut end = s.len().min(MAX_FIELD);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9112 7.1's chunked body, fed whole and in every two-piece cut: same content,
    /// same end, same number of bytes used.
    #[test]
    fn chunked_bodies_whatever_the_cut() {
        let wire = b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let end = wire.len() - 4;
        for cut in 0..=wire.len() {
            let mut b = Body::new(Framing::Chunked, true);
            let (a, rest) = wire.split_at(cut);
            let (used_a, done_a) = b.feed(a, 1024).expect("valid");
            let mut used = used_a;
            let mut done = done_a;
            if !done {
                let (u, d) = b.feed(rest, 1024).expect("valid");
                used += u;
                done = d;
            }
            assert!(done, "cut {cut}");
            assert_eq!(used, end, "cut {cut}");
            assert_eq!(b.kept, b"Wikipedia in \r\n\r\nchunks.", "cut {cut}");
            assert_eq!(b.total, 24);
        }
        let mut b = Body::new(Framing::Chunked, false);
        assert!(b.feed(b"zz\r\n", 10).is_err());
        // A body over the cap is counted, not kept.
        let mut b = Body::new(Framing::Length(10), true);
        assert_eq!(b.feed(b"0123456789rest", 4), Ok((10, true)));
        assert!(b.cut && b.kept.is_empty() && b.total == 10);
    }
}
