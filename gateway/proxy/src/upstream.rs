//! Connections to Exchange: HTTP/1.1 on TCP or TLS, with a pool of idle keep-alive
//! connections. The bytes (request head, response head, framing, chunked decoding) are
//! `wire`'s; this file moves them.
//!
//! While Exchange holds a request (a Ping: up to an hour) the request keeps only its
//! connection: nothing is read until the socket is readable, so no buffer is held (with
//! hyper's client it was 16 KiB per held Ping, measured; see `wire`).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::header::HeaderMap;
use hyper::{Method, Response};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::server::{BoxError, ProxyBody};
use crate::wire::{self, BodyKind, Chunked, HeadError, RequestFraming};

/// Bodies this size or smaller go out with the head in one write.
const COALESCE: usize = 64 * 1024;
/// The most read from Exchange at a time for a body.
const READ_CHUNK: usize = 16 * 1024;

/// Why Exchange's answer did not come.
#[derive(Debug)]
pub enum UpstreamError {
    /// No connection: refused, unreachable, timed out, or TLS failed.
    Connect(String),
    /// The connection failed while sending or before the response head was complete.
    Io(String),
    /// A kept-alive connection was closed by Exchange as the request went out, before any
    /// answer: the request may or may not have been seen, so it is not sent again.
    ClosedKeptAlive,
    /// The response head is larger than `exchange.response_head_bytes`.
    HeadTooLarge,
    /// The response is not HTTP/1.1 as RFC 9112 frames it.
    BadResponse(String),
    /// The device's body failed while it was being sent (the device's fault).
    DeviceBody(BoxError),
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Connect(e) => write!(f, "cannot connect: {e}"),
            UpstreamError::Io(e) => write!(f, "{e}"),
            UpstreamError::ClosedKeptAlive => f.write_str("Exchange closed a kept-alive connection as the request went out, without a response"),
            UpstreamError::HeadTooLarge => f.write_str("the response head is too large"),
            UpstreamError::BadResponse(e) => write!(f, "bad response: {e}"),
            UpstreamError::DeviceBody(e) => write!(f, "the device's body: {e}"),
        }
    }
}

impl std::error::Error for UpstreamError {}

/// The request's body as the handler has it: read whole, or still streaming from the device.
pub enum Outgoing {
    Whole(Bytes),
    Stream(ProxyBody),
}

enum Conn {
    Plain(TcpStream),
    // Boxed: a client TLS connection is about 1 KiB, and the plain case should not carry it.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Conn {
    /// An idle connection still usable: not closed by Exchange, and nothing unasked-for
    /// waiting on it (either means it must not carry a request).
    fn idle_ok(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self {
            Conn::Plain(t) => matches!(t.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            Conn::Tls(t) => {
                let mut cx = Context::from_waker(Waker::noop());
                let mut rb = ReadBuf::new(&mut byte);
                Pin::new(&mut **t).poll_read(&mut cx, &mut rb).is_pending()
            }
        }
    }

    /// Whether Exchange has said something while the request is still going out: bytes
    /// (appended to `early`) or the end of the stream (nothing appended). Pending while it
    /// has not. A TLS connection's own records (session tickets) are not "something".
    fn poll_spoke(&mut self, cx: &mut Context<'_>, early: &mut bytes::BytesMut) -> Poll<io::Result<()>> {
        let mut tmp = [0u8; 1024];
        match self {
            Conn::Plain(t) => loop {
                match t.poll_read_ready(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {}
                }
                match t.try_read(&mut tmp) {
                    Ok(n) => {
                        early.extend_from_slice(&tmp[..n]);
                        return Poll::Ready(Ok(()));
                    }
                    // Readiness was stale; polling again registers for the next.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            },
            Conn::Tls(t) => {
                let mut rb = ReadBuf::new(&mut tmp);
                match Pin::new(&mut **t).poll_read(cx, &mut rb) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {
                        early.extend_from_slice(rb.filled());
                        Poll::Ready(Ok(()))
                    }
                }
            }
        }
    }

    /// Waits for Exchange's answer without a buffer of `response_head_bytes` (a held Ping
    /// waits here for up to an hour): a plain socket is only watched; a TLS one is read
    /// into 64 bytes on the stack. Returns what was read.
    async fn first_bytes(&mut self) -> io::Result<Vec<u8>> {
        match self {
            Conn::Plain(t) => t.readable().await.map(|()| Vec::new()),
            Conn::Tls(t) => {
                let mut first = [0u8; 64];
                let n = t.read(&mut first).await?;
                Ok(first[..n].to_vec())
            }
        }
    }
}

/// Writes `data` to Exchange unless Exchange speaks first: Ok(true) written and flushed,
/// Ok(false) Exchange spoke (an early answer, in `early`, or the end of the connection).
async fn write_watching(conn: &mut Conn, data: &[u8], early: &mut bytes::BytesMut) -> io::Result<bool> {
    let mut pos = 0;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = conn.poll_spoke(cx, early) {
            return Poll::Ready(r.map(|()| false));
        }
        while pos < data.len() {
            match Pin::new(&mut *conn).poll_write(cx, &data[pos..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => pos += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        match Pin::new(&mut *conn).poll_flush(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(true)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// A request on its way: the connection, what Exchange said while it was being sent, and
/// whether all of it went out (a connection whose request was cut short is not kept).
struct Sent {
    conn: Conn,
    early: bytes::BytesMut,
    whole: bool,
    reused: bool,
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(t) => Pin::new(t).poll_read(cx, buf),
            Conn::Tls(t) => Pin::new(&mut **t).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(t) => Pin::new(t).poll_write(cx, buf),
            Conn::Tls(t) => Pin::new(&mut **t).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(t) => Pin::new(t).poll_flush(cx),
            Conn::Tls(t) => Pin::new(&mut **t).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(t) => Pin::new(t).poll_shutdown(cx),
            Conn::Tls(t) => Pin::new(&mut **t).poll_shutdown(cx),
        }
    }
}

struct Pool {
    idle: Mutex<Vec<(Conn, Instant)>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    fn put(&self, mut conn: Conn) {
        // Bytes after the response (or Exchange closing it already): not for the next request.
        if self.max_idle == 0 || !conn.idle_ok() {
            return;
        }
        let Ok(mut idle) = self.idle.lock() else { return };
        if idle.len() >= self.max_idle {
            // The oldest goes: the likeliest to be closed by Exchange soon.
            idle.remove(0);
        }
        idle.push((conn, Instant::now()));
    }

    /// The most recently used connection that is still good.
    fn take(&self) -> Option<Conn> {
        let Ok(mut idle) = self.idle.lock() else { return None };
        while let Some((mut c, since)) = idle.pop() {
            if since.elapsed() < self.idle_timeout && c.idle_ok() {
                return Some(c);
            }
        }
        None
    }

    fn sweep(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            let timeout = self.idle_timeout;
            idle.retain_mut(|(c, since)| since.elapsed() < timeout && c.idle_ok());
        }
    }
}

/// The client of one Exchange server.
pub struct Upstream {
    /// host:port, resolved at each new connection.
    authority: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
    head_limit: usize,
    pool: Arc<Pool>,
}

impl Upstream {
    pub fn new(
        authority: String,
        tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
        connect_timeout: Duration,
        head_limit: usize,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Self {
        let pool = Arc::new(Pool { idle: Mutex::new(Vec::new()), max_idle, idle_timeout });
        // Without traffic nothing takes from the pool; the sweeper closes what idled too
        // long or what Exchange closed. It holds the pool weakly: a replaced configuration's
        // pool goes with its generation.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak: Weak<Pool> = Arc::downgrade(&pool);
            rt.spawn(async move {
                let mut tick = tokio::time::interval(idle_timeout.max(Duration::from_secs(2)) / 2);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    match weak.upgrade() {
                        Some(p) => p.sweep(),
                        None => return,
                    }
                }
            });
        }
        let tls = tls.map(|(cfg, name)| (tokio_rustls::TlsConnector::from(cfg), name));
        Upstream { authority, tls, connect_timeout, head_limit, pool }
    }

    async fn connect(&self) -> Result<Conn, UpstreamError> {
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(self.authority.as_str())).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(UpstreamError::Connect(format!("tcp connect error: {e}"))),
            Err(_) => return Err(UpstreamError::Connect("tcp connect timed out (exchange.connect_timeout_ms)".into())),
        };
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Conn::Plain(tcp)),
            Some((c, name)) => match tokio::time::timeout(self.connect_timeout, c.connect(name.clone(), tcp)).await {
                Ok(Ok(t)) => Ok(Conn::Tls(Box::new(t))),
                Ok(Err(e)) => Err(UpstreamError::Connect(format!("TLS: {e}"))),
                Err(_) => Err(UpstreamError::Connect("TLS handshake timed out (exchange.connect_timeout_ms)".into())),
            },
        }
    }

    /// Sends the request (origin-form `target`; `headers` as `normalize` left them, Host
    /// set) and reads the response head. A pooled connection that fails before the request
    /// went out is replaced by a new one; a request that went out is never sent twice.
    ///
    /// The future keeps the connection and little else while Exchange holds the request:
    /// connecting and sending are boxed, and freed before the wait.
    pub fn request<'a>(
        &'a self,
        method: &'a Method,
        target: &'a str,
        headers: &'a HeaderMap,
        body: Outgoing,
    ) -> impl Future<Output = Result<Response<ExchangeBody>, UpstreamError>> + Send + 'a {
        let sending = Box::pin(self.send(method, target, headers, body));
        async move {
            let sent = sending.await?;
            self.receive(sent, method == Method::HEAD).await
        }
    }

    async fn send(&self, method: &Method, target: &str, headers: &HeaderMap, body: Outgoing) -> Result<Sent, UpstreamError> {
        let framing = match &body {
            Outgoing::Whole(b) if b.is_empty() && matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) => RequestFraming::None,
            Outgoing::Whole(b) => RequestFraming::Length(b.len() as u64),
            Outgoing::Stream(s) => match s.size_hint().exact() {
                Some(n) => RequestFraming::Length(n),
                None => RequestFraming::Chunked,
            },
        };
        let mut head = wire::request_head(method, target, headers, framing);
        let mut rest = None;
        match body {
            Outgoing::Whole(b) if b.len() <= COALESCE => head.extend_from_slice(&b),
            Outgoing::Whole(b) => rest = Some(Outgoing::Whole(b)),
            s @ Outgoing::Stream(_) => rest = Some(s),
        }
        let mut early = bytes::BytesMut::new();
        let pooled = match self.pool.take() {
            Some(mut c) => match write_watching(&mut c, &head, &mut early).await {
                Ok(true) => Some(c),
                // Exchange closed it (or wrote to it) as it was taken: not an answer to a
                // request it has not had whole. Nothing of the request is taken as sent.
                Ok(false) | Err(_) => {
                    early.clear();
                    None
                }
            },
            None => None,
        };
        let (mut conn, reused, spoke) = match pooled {
            Some(c) => (c, true, false),
            None => {
                let mut c = self.connect().await?;
                let done = write_watching(&mut c, &head, &mut early).await.map_err(|e| UpstreamError::Io(format!("sending the request: {e}")))?;
                (c, false, !done)
            }
        };
        drop(head);
        if spoke {
            return Ok(Sent { conn, early, whole: false, reused });
        }
        let body_err = |e: io::Error| UpstreamError::Io(format!("sending the body: {e}"));
        match rest {
            None => Ok(Sent { conn, early, whole: true, reused }),
            Some(Outgoing::Whole(b)) => {
                let whole = write_watching(&mut conn, &b, &mut early).await.map_err(body_err)?;
                Ok(Sent { conn, early, whole, reused })
            }
            Some(Outgoing::Stream(mut s)) => {
                let chunked = framing == RequestFraming::Chunked;
                let mut sent: u64 = 0;
                loop {
                    // Exchange may answer before it has the whole body (a refusal, a
                    // limit): the answer is the device's, and the rest is not sent.
                    let next = tokio::select! {
                        biased;
                        r = std::future::poll_fn(|cx| conn.poll_spoke(cx, &mut early)) => {
                            r.map_err(body_err)?;
                            return Ok(Sent { conn, early, whole: false, reused });
                        }
                        f = s.frame() => f,
                    };
                    let Some(f) = next else { break };
                    let f = f.map_err(UpstreamError::DeviceBody)?;
                    let Ok(d) = f.into_data() else { continue };
                    if d.is_empty() {
                        continue;
                    }
                    sent += d.len() as u64;
                    let piece = if chunked {
                        let mut p = wire::chunk_header(d.len());
                        p.extend_from_slice(&d);
                        p.extend_from_slice(b"\r\n");
                        Bytes::from(p)
                    } else {
                        d
                    };
                    if !write_watching(&mut conn, &piece, &mut early).await.map_err(body_err)? {
                        return Ok(Sent { conn, early, whole: false, reused });
                    }
                }
                if let RequestFraming::Length(n) = framing {
                    // hyper holds the device to its Content-Length; this keeps the framing
                    // right whatever the body's source.
                    if sent != n {
                        return Err(UpstreamError::DeviceBody(format!("the body ended after {sent} of its {n} bytes").into()));
                    }
                }
                let whole = if chunked { write_watching(&mut conn, b"0\r\n\r\n", &mut early).await.map_err(body_err)? } else { true };
                Ok(Sent { conn, early, whole, reused })
            }
        }
    }

    async fn receive(&self, sent: Sent, head_request: bool) -> Result<Response<ExchangeBody>, UpstreamError> {
        let Sent { mut conn, early, whole, reused } = sent;
        let mut buf = early;
        if buf.is_empty() {
            let first = conn.first_bytes().await.map_err(|e| UpstreamError::Io(format!("waiting for the response: {e}")))?;
            buf = bytes::BytesMut::with_capacity(self.head_limit.max(first.len()));
            buf.extend_from_slice(&first);
        }
        loop {
            match wire::response_head(&buf, head_request) {
                Ok(Some((h, n))) => {
                    let _ = buf.split_to(n);
                    if h.status.is_informational() {
                        // 100 Continue and the like precede the response; 101 would hand
                        // the connection over, which the gateway never asked for.
                        if h.status == hyper::StatusCode::SWITCHING_PROTOCOLS {
                            return Err(UpstreamError::BadResponse("101 Switching Protocols".into()));
                        }
                        continue;
                    }
                    let mut resp = Response::new(ExchangeBody {
                        conn: Some(conn),
                        kind: h.body,
                        remaining: match h.body {
                            BodyKind::Length(n) => n,
                            _ => 0,
                        },
                        chunked: Chunked::default(),
                        buf,
                        done: false,
                        reusable: h.reusable && whole,
                        pool: self.pool.clone(),
                    });
                    *resp.status_mut() = h.status;
                    *resp.headers_mut() = h.headers;
                    return Ok(resp);
                }
                Ok(None) if buf.len() >= self.head_limit => return Err(UpstreamError::HeadTooLarge),
                Ok(None) => {}
                Err(HeadError::TooLarge) => return Err(UpstreamError::HeadTooLarge),
                Err(HeadError::Invalid(e)) => return Err(UpstreamError::BadResponse(e)),
            }
            let room = self.head_limit.saturating_sub(buf.len()).max(1);
            let n = (&mut conn).take(room as u64).read_buf(&mut buf).await.map_err(|e| UpstreamError::Io(format!("reading the response: {e}")))?;
            if n == 0 {
                return Err(if buf.is_empty() && reused && whole {
                    // A kept-alive connection Exchange closed as the request went out (its
                    // idle timeout): no sign that Exchange is down.
                    UpstreamError::ClosedKeptAlive
                } else if buf.is_empty() {
                    UpstreamError::Io("Exchange closed the connection without a response".into())
                } else {
                    UpstreamError::Io("Exchange closed the connection within the response head".into())
                });
            }
        }
    }
}

/// Exchange's response body as it arrives; its connection goes back to the pool when the
/// body ended where its framing said and nothing followed.
pub struct ExchangeBody {
    conn: Option<Conn>,
    kind: BodyKind,
    remaining: u64,
    chunked: Chunked,
    /// Read, not yet given.
    buf: bytes::BytesMut,
    done: bool,
    reusable: bool,
    pool: Arc<Pool>,
}

impl ExchangeBody {
    fn finish(&mut self) {
        self.done = true;
        if let Some(c) = self.conn.take() {
            if self.reusable && self.buf.is_empty() {
                self.pool.put(c);
            }
        }
    }

    fn complete(&self) -> bool {
        self.done
            || match self.kind {
                BodyKind::Empty => true,
                BodyKind::Length(_) => self.remaining == 0,
                BodyKind::Chunked => self.chunked.done(),
                BodyKind::Close => false,
            }
    }

    /// Reads more from Exchange into `buf`: Ok(false) at the end of the stream.
    fn poll_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let Some(conn) = self.conn.as_mut() else { return Poll::Ready(Ok(false)) };
        let want = match self.kind {
            BodyKind::Length(_) => usize::try_from(self.remaining).unwrap_or(READ_CHUNK).min(READ_CHUNK),
            _ => READ_CHUNK,
        };
        let start = self.buf.len();
        self.buf.resize(start + want, 0);
        let mut rb = ReadBuf::new(&mut self.buf[start..]);
        let r = Pin::new(conn).poll_read(cx, &mut rb);
        let got = rb.filled().len();
        self.buf.truncate(start + got);
        match r {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => Poll::Ready(Ok(got > 0)),
        }
    }
}

type Polled = Poll<Option<Result<Frame<Bytes>, io::Error>>>;

fn broken(what: &str) -> Polled {
    Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::UnexpectedEof, what.to_string()))))
}

impl Body for ExchangeBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.kind {
                BodyKind::Empty => {
                    this.finish();
                    return Poll::Ready(None);
                }
                BodyKind::Length(_) if this.remaining == 0 => {
                    this.finish();
                    return Poll::Ready(None);
                }
                BodyKind::Length(_) if !this.buf.is_empty() => {
                    let n = usize::try_from(this.remaining).unwrap_or(usize::MAX).min(this.buf.len());
                    this.remaining -= n as u64;
                    let data = this.buf.split_to(n).freeze();
                    if this.remaining == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                BodyKind::Chunked if !this.buf.is_empty() => {
                    let fed = match this.chunked.feed(&this.buf) {
                        Ok(f) => f,
                        Err(e) => {
                            this.conn = None;
                            this.done = true;
                            return Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::InvalidData, format!("Exchange's chunked body: {e}")))));
                        }
                    };
                    let mut used = this.buf.split_to(fed.used);
                    let data = used.split_off(fed.data.start).split_to(fed.data.len()).freeze();
                    if this.chunked.done() {
                        this.finish();
                    }
                    if !data.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    continue;
                }
                BodyKind::Close if !this.buf.is_empty() => {
                    return Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))));
                }
                _ => {}
            }
            match this.poll_more(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(true)) => {}
                Poll::Ready(Ok(false)) if this.kind == BodyKind::Close => {
                    this.conn = None;
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(false)) => {
                    this.conn = None;
                    this.done = true;
                    return broken("Exchange closed the connection before the end of the body");
                }
                Poll::Ready(Err(e)) => {
                    this.conn = None;
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.complete() && self.buf.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.kind {
            BodyKind::Empty => SizeHint::with_exact(0),
            BodyKind::Length(_) => SizeHint::with_exact(self.remaining),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for ExchangeBody {
    fn drop(&mut self) {
        // hyper does not poll a body that says it is complete (an empty one).
        if !self.done && self.complete() && self.buf.is_empty() {
            self.finish();
        }
    }
}
