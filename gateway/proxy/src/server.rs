//! The shell: listeners, connections, the request path to Exchange, the admin listener,
//! reload and drain. Decisions are taken by the pure modules; this file moves bytes.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use kcd_client::{EventSink, KcdClient, KcdError, Token};
use kcd_schema::{
    Event, EventType, Gateway, GatewayBackend, GatewayCertificate, GatewayDevice, GatewayKcd, KcdStep, NtStatusInfo,
};
use tokio::net::TcpListener;

use crate::config::GatewayConfig;
use crate::crl::Refusal;
use crate::fetch::Fetcher;
use crate::metrics::Metrics;
use crate::reason::Reason;
use crate::tls::{handshake_reason, Verdict, Verifier};
use crate::upstream::{Outgoing, Upstream, UpstreamError};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type ProxyBody = BoxBody<Bytes, BoxError>;

/// One configuration and everything built from it; swapped whole on reload.
pub struct Generation {
    pub cfg: Arc<GatewayConfig>,
    pub verifier: Arc<Verifier>,
    /// The device side's TLS, shared by all of this generation's connections.
    tls: Arc<rustls::ServerConfig>,
    pub kcd: Arc<dyn Tickets>,
    upstream: Upstream,
    realms: Vec<String>,
}


/// Where the forwarded request's ticket comes from: the delegation client (S4U2Self +
/// S4U2Proxy against the configured KDCs). Tests of the HTTP path that need no KDC give one
/// of their own through [`serve`]; the binary always uses the delegation client.
pub trait Tickets: Send + Sync {
    fn token<'a>(&'a self, user: &'a str) -> Pin<Box<dyn Future<Output = Result<Token, KcdError>> + Send + 'a>>;
    /// Service tickets held (for the metric).
    fn held(&self) -> usize;
    /// Service tickets evicted from the full cache (for the metric).
    fn evicted(&self) -> u64 {
        0
    }
}

impl Tickets for KcdClient {
    fn token<'a>(&'a self, user: &'a str) -> Pin<Box<dyn Future<Output = Result<Token, KcdError>> + Send + 'a>> {
        // Boxed: the KDC exchange's state is large and is only needed while tickets are
        // fetched, while `handle` lives as long as the request, an hour for a held Ping (hyper
        // keeps room for it with every connection). Measured with heaptrack under 2,000 held
        // Pings: inline it made the request's future about 5.9 KiB.
        Box::pin(KcdClient::token_for_request(self, user))
    }
    fn held(&self) -> usize {
        self.cached_tickets()
    }
    fn evicted(&self) -> u64 {
        self.evicted_tickets()
    }
}

/// What the process asks of a running gateway (signals in the binary, the harness in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Reload,
    Stop,
}

pub struct App {
    pub gen: ArcSwap<Generation>,
    tickets: Option<Arc<dyn Tickets>>,
    pub fetcher: Arc<Fetcher>,
    pub metrics: Arc<Metrics>,
    pub events: Arc<dyn EventSink>,
    draining: AtomicBool,
    frame: AtomicU64,
    id_prefix: u32,
    next_id: AtomicU64,
    kdc_ok: AtomicI64,
    kdc_failed: AtomicI64,
    exchange_ok: AtomicI64,
    exchange_failed: AtomicI64,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Generation {
    /// `kcd`: the ticket source to keep: a test's fixed source, or the running generation's
    /// Kerberos client (with its TGT and ticket cache) when a reload leaves the Kerberos
    /// settings as they were.
    fn build(
        cfg: GatewayConfig,
        fetcher: &Arc<Fetcher>,
        events: Arc<dyn EventSink>,
        kcd: Option<Arc<dyn Tickets>>,
    ) -> Result<Generation, String> {
        let f = fetcher.clone();
        let learn: Arc<dyn Fn(&str) + Send + Sync> = Arc::new(move |u: &str| f.want(u));
        let verifier = Arc::new(Verifier::new(&cfg, fetcher.snapshot.clone(), learn)?);
        let provider = Arc::new(crate::provider());
        let key = provider
            .key_provider
            .load_private_key(cfg.server_key.0.clone_key())
            .map_err(|e| format!("listen.key: {e}"))?;
        let ck = rustls::sign::CertifiedKey::new(cfg.server_chain.clone(), key);
        ck.keys_match().map_err(|e| format!("listen.key does not belong to listen.certificate: {e}"))?;
        let certs: Arc<dyn rustls::server::ResolvesServerCert> = Arc::new(rustls::sign::SingleCertAndKey::from(ck));

        let mut roots = rustls::RootCertStore::empty();
        for c in &cfg.exchange.ca {
            roots.add(c.clone()).map_err(|e| format!("exchange.ca: {e}"))?;
        }
        let tls = if cfg.exchange.https {
            let mut tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(err)?
                .with_root_certificates(roots)
                .with_no_client_auth();
            tls.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = rustls_pki_types::ServerName::try_from(cfg.exchange.server_name.clone())
                .map_err(|e| format!("exchange: the server name {:?}: {e}", cfg.exchange.server_name))?;
            Some((Arc::new(tls), name))
        } else {
            None
        };
        let upstream = Upstream::new(
            cfg.exchange.authority.clone(),
            tls,
            cfg.exchange.connect_timeout,
            cfg.exchange.response_head_bytes,
            256,
            Duration::from_secs(90),
        );
        let realms = cfg.realms();
        let kcd: Arc<dyn Tickets> = match kcd {
            Some(t) => t,
            None => {
                let k = Arc::new(KcdClient::new(cfg.kcd.clone(), events));
                // A new client (start, or a reload that changed the Kerberos settings) learns
                // the KDC's way with enterprise names before the first device comes, so that
                // the first user costs one S4U2Self like every other.
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    let probe = k.clone();
                    rt.spawn(async move {
                        if let Err(e) = probe.learn_enterprise_names().await {
                            tracing::info!(error = %e, "the KDC's way with enterprise names not learnt at start; the first user will show it");
                        }
                    });
                }
                k
            }
        };
        let tls = verifier.server_config(certs).map_err(|e| format!("TLS configuration: {e}"))?;
        Ok(Generation { cfg: Arc::new(cfg), verifier, tls, kcd, upstream, realms })
    }
}

/// Runs the gateway until SIGTERM (or SIGINT); SIGHUP reloads the configuration.
pub async fn run(path: PathBuf, events: Arc<dyn EventSink>) -> Result<(), String> {
    run_with_metrics(path, events, Vec::new()).await
}

/// As `run`, with more metrics on the admin listener (the event outputs' counters).
pub async fn run_with_metrics(path: PathBuf, events: Arc<dyn EventSink>, extra: Vec<Box<dyn prometheus_client::collector::Collector>>) -> Result<(), String> {
    let cfg = GatewayConfig::load(&path).map_err(err)?;
    let listen = cfg.listen;
    let listener = TcpListener::bind(listen).await.map_err(|e| format!("listen.address {listen}: {e}"))?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map_err(err)?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(err)?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).map_err(err)?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let c = tokio::select! {
                _ = hup.recv() => Control::Reload,
                _ = term.recv() => Control::Stop,
                _ = int.recv() => Control::Stop,
            };
            if tx.send(c).await.is_err() || c == Control::Stop {
                break;
            }
        }
    });
    serve(path, cfg, listener, events, None, rx, extra).await
}

/// Runs the gateway of `cfg` (read from `path`, read again on reload) on `listener` until
/// told to stop (or the control channel closes). `tickets`: None for the delegation client;
/// `extra`: more metrics for the admin listener (the event outputs' counters).
pub async fn serve(
    path: PathBuf,
    cfg: GatewayConfig,
    listener: TcpListener,
    events: Arc<dyn EventSink>,
    tickets: Option<Arc<dyn Tickets>>,
    mut control: tokio::sync::mpsc::Receiver<Control>,
    extra: Vec<Box<dyn prometheus_client::collector::Collector>>,
) -> Result<(), String> {
    let metrics = Arc::new(Metrics::new());
    for c in extra {
        metrics.register_collector(c);
    }
    let fetcher = Fetcher::new(cfg.crl.clone(), cfg.anchor_info.clone(), metrics.clone());
    let listen = listener.local_addr().map_err(err)?;
    let admin = cfg.admin;
    let gen = Generation::build(cfg, &fetcher, events.clone(), tickets.clone())?;
    let mut prefix = [0u8; 4];
    getrandom::fill(&mut prefix).map_err(err)?;
    let app = Arc::new(App {
        gen: ArcSwap::from_pointee(gen),
        tickets,
        fetcher: fetcher.clone(),
        metrics,
        events,
        draining: AtomicBool::new(false),
        frame: AtomicU64::new(0),
        id_prefix: u32::from_be_bytes(prefix),
        next_id: AtomicU64::new(0),
        kdc_ok: AtomicI64::new(0),
        kdc_failed: AtomicI64::new(0),
        exchange_ok: AtomicI64::new(0),
        exchange_failed: AtomicI64::new(0),
    });
    let fetch_task = tokio::spawn(fetcher.clone().run());
    tracing::info!(%listen, "gateway listening");
    if let Some(a) = admin {
        let l = TcpListener::bind(a).await.map_err(|e| format!("admin.address {a}: {e}"))?;
        tokio::spawn(admin_loop(app.clone(), l));
    }
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(app.gen.load().cfg.limits.max_connections));
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (tcp, peer) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = sem.clone().try_acquire_owned() else {
                    drop(tcp);
                    connection_refused(&app, peer);
                    continue;
                };
                let app = app.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _permit = permit;
                    connection(app, tcp, peer, watcher).await;
                });
            }
            c = control.recv() => match c {
                Some(Control::Reload) => reload(&app, &path),
                Some(Control::Stop) | None => break,
            },
        }
    }
    app.draining.store(true, Ordering::SeqCst);
    drop(listener);
    let drain = app.gen.load().cfg.limits.drain;
    tracing::info!(open = graceful.count(), "draining");
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!("drain deadline passed; closing the remaining connections");
    }
    fetch_task.abort();
    let _ = app.events.flush();
    Ok(())
}

fn reload(app: &Arc<App>, path: &Path) {
    let r = GatewayConfig::load(path).map_err(err).and_then(|cfg| {
        let (crl, cas) = (cfg.crl.clone(), cfg.anchor_info.clone());
        let old = app.gen.load();
        // The listeners and the connection cap are made once, at start: a change to them is
        // refused whole (the running configuration stays) rather than half applied.
        let fixed = [
            ("listen.address", cfg.listen.to_string(), old.cfg.listen.to_string()),
            ("listen.max_connections", cfg.limits.max_connections.to_string(), old.cfg.limits.max_connections.to_string()),
            ("admin.address", format!("{:?}", cfg.admin), format!("{:?}", old.cfg.admin)),
        ];
        if let Some((key, _, was)) = fixed.iter().find(|(_, new, was)| new != was) {
            return Err(format!("{key} cannot change on reload (still {was}); a restart is needed to change it"));
        }
        // A new Kerberos client starts with no TGT and an empty ticket cache: every device's
        // next request would need its S4U exchanges again, at once. Measured under load
        // (64 connections over 1,000 users, SIGHUP every second) that storm made requests
        // wait for the KDC until they failed with 504; so the client is kept unless the
        // Kerberos settings changed. A test's fixed ticket source is always kept.
        let keep = same_kerberos(&old.cfg.kcd, &cfg.kcd);
        let kept = match &app.tickets {
            Some(t) => Some(t.clone()),
            None => keep.then(|| old.kcd.clone()),
        };
        let g = Generation::build(cfg, &app.fetcher, app.events.clone(), kept)?;
        app.fetcher.reconfigure(crl, cas);
        app.gen.store(Arc::new(g));
        Ok(keep)
    });
    let (outcome, detail) = match &r {
        Ok(true) => ("reloaded", format!("{} reloaded; Kerberos settings unchanged, tickets kept", path.display())),
        Ok(false) => ("reloaded", format!("{} reloaded; Kerberos settings changed, tickets fetched afresh", path.display())),
        Err(e) => ("reload_refused", format!("{e}; the previous configuration stays")),
    };
    tracing::info!(outcome, %detail, "SIGHUP");
    app.metrics.reloads.get_or_create(&crate::metrics::OutcomeLabels { outcome: outcome.into(), reason: String::new() }).inc();
    let mut g = Gateway::new(KcdStep::Request, outcome);
    g.detail = Some(detail.into());
    app.emit(g, None);
}

/// The Kerberos settings alike: everything but the secret compared through Debug (which
/// redacts the secret), the password itself compared as it is; a keytab counts as changed,
/// since its keys may be rotated under the same path.
fn same_kerberos(a: &kcd_client::Config, b: &kcd_client::Config) -> bool {
    use kcd_client::config::Secret;
    let secret = match (&a.secret, &b.secret) {
        (Secret::Password(x), Secret::Password(y)) => x.as_str() == y.as_str(),
        _ => false,
    };
    secret && format!("{a:?}") == format!("{b:?}")
}

impl App {
    fn emit(&self, g: Gateway<'_>, peer: Option<SocketAddr>) {
        let frame = self.frame.fetch_add(1, Ordering::Relaxed) + 1;
        let mut e = Event::bare(kcd_client::transport::now_timestamp(), EventType::Gateway, None, frame);
        if let Some(p) = peer {
            e.src_ip = Some(p.ip());
            e.src_port = Some(p.port());
        }
        e.gateway = Some(g);
        self.events.event(&e);
        let _ = self.events.flush();
    }

    fn request_id(&self) -> String {
        format!("{:08x}-{:06x}", self.id_prefix, self.next_id.fetch_add(1, Ordering::Relaxed) & 0xff_ffff_ffff)
    }
}

struct Counted(Arc<Metrics>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.open_connections.dec();
    }
}

fn cert_object(v: &Verdict, upn: Option<String>) -> Option<Box<GatewayCertificate>> {
    let c = v.leaf.as_ref()?;
    let (revocation, source, age) = match (&v.refusal, &v.revocation, &v.soft_fail) {
        (Some(r), _, _) if r.reason == Reason::Revoked => (Some("revoked"), None, None),
        (Some(r), _, _) if r.reason.label().starts_with("crl") || r.reason == Reason::CdpLdapOnly => (Some("unknown"), None, None),
        (_, Some(ch), _) => (Some("good"), Some(ch.source.clone()), Some(ch.age)),
        (_, _, Some(_)) => (Some("soft_fail"), None, None),
        _ => (None, None, None),
    };
    Some(Box::new(GatewayCertificate {
        subject: c.subject.clone(),
        issuer: c.issuer.clone(),
        serial: c.serial_hex(),
        sha256: c.fingerprint_hex(),
        upn: upn.or_else(|| c.upns.first().cloned()),
        not_after: c.not_after,
        revocation: revocation.map(str::to_string),
        crl_source: source,
        crl_age_seconds: age,
    }))
}

async fn connection(app: Arc<App>, tcp: tokio::net::TcpStream, peer: SocketAddr, watcher: hyper_util::server::graceful::Watcher) {
    app.metrics.open_connections.inc();
    let _open = Counted(app.metrics.clone());
    let _ = tcp.set_nodelay(true);
    let gen = app.gen.load_full();
    let slot = Arc::new(Mutex::new(Verdict::default()));
    let acceptor = tokio_rustls::TlsAcceptor::from(gen.tls.clone());
    // Boxed: the handshake's state (a whole rustls connection) would otherwise stay part of
    // this task's size for as long as the connection is held.
    let handshake = crate::tls::Reporting::new(slot.clone(), Box::pin(acceptor.accept(tcp)));
    let tls = match tokio::time::timeout(gen.cfg.limits.handshake_timeout, handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let (reason, detail) = handshake_reason(&slot, &e);
            let label = if reason == Reason::BadRequest { "tls_handshake" } else { reason.label() };
            handshake_refused(&app, &slot, peer, label, reason.finding(), detail);
            return;
        }
        Err(_) => {
            handshake_refused(&app, &slot, peer, "handshake_timeout", None, "the TLS handshake did not finish in time".into());
            return;
        }
    };
    // Taken, not copied: the slot is not read again once the handshake is done.
    let verdict = Arc::new(slot.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default());
    drop(slot);
    let conn_verdict = verdict.clone();
    let lim = &gen.cfg.limits;
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(lim.header_read_timeout)
        .max_headers(lim.max_headers)
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    let svc_app = app.clone();
    let served = Arc::new(AtomicU64::new(0));
    let svc_served = served.clone();
    let io = HeadWatch::new(tls);
    let after = io.clone();
    let heads = io.clone();
    let svc = hyper::service::service_fn(move |req| {
        let index = svc_served.fetch_add(1, Ordering::Relaxed);
        // hyper calls this once per head, in order: the scan's index is this request's.
        let ambiguous = heads.ambiguous_head() == Some(index);
        let (app, verdict) = (svc_app.clone(), verdict.clone());
        async move { Ok::<_, Infallible>(handle(app, verdict, peer, req, ambiguous).await) }
    });
    let conn = b.serve_connection(TokioIo::new(io), svc);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %e, "connection ended");
        // The header timeout also ends an idle keep-alive connection, which is no refusal;
        // a head begun (bytes since the last answer, or part of a head read with the last
        // request) or never sent on a new connection is.
        let head_begun = after.read_since_write() > 0 || after.head_begun() || served.load(Ordering::Relaxed) == 0;
        if e.is_timeout() && head_begun {
            let id = app.request_id();
            // Boxed: its 4 KiB read buffer would otherwise be part of every connection's
            // task (measured: 5.0 KiB per held Ping, heaptrack), for a rare answer.
            let sent = Box::pin(after.answer_timeout(&id, lim.header_read_timeout)).await;
            header_timeout(&app, &conn_verdict, peer, &id, sent, lim.header_read_timeout);
        } else if !e.is_timeout() {
            connection_error(&app, &conn_verdict, peer, &e);
        }
    }
}

/// The device's TLS stream as hyper reads and writes it, kept reachable after hyper gives
/// up on it: hyper closes a connection whose head does not arrive within
/// header_read_timeout without a word, and the gateway answers 408 on the same stream.
/// Counts the bytes read since the last write, which tell a head begun from an idle
/// keep-alive connection.
struct HeadWatch<T>(Arc<Mutex<Watched<T>>>);

struct Watched<T> {
    io: T,
    read_since_write: u64,
    scan: crate::framing::HeadScan,
}

impl<T> Clone for HeadWatch<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> HeadWatch<T> {
    fn new(io: T) -> Self {
        Self(Arc::new(Mutex::new(Watched { io, read_since_write: 0, scan: Default::default() })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watched<T>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read_since_write(&self) -> u64 {
        self.lock().read_since_write
    }

    fn head_begun(&self) -> bool {
        self.lock().scan.head_begun()
    }

    /// The index of the first request head that carried both Content-Length and
    /// Transfer-Encoding.
    fn ambiguous_head(&self) -> Option<u64> {
        self.lock().scan.ambiguous()
    }

    /// Writes `408 Request Timeout` and closes (TLS close_notify), then reads what the
    /// device still sends for a moment so that closing does not reset the connection
    /// before the answer is read. Whether the answer went out.
    async fn answer_timeout(&self, id: &str, waited: Duration) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body = format!(
            "408 Request Timeout\nreason: header_timeout\nthe request head did not arrive within {} ms\nrequest id: {id}\n",
            waited.as_millis()
        );
        let head = format!(
            "HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nx-request-id: {id}\r\n\r\n",
            body.len()
        );
        let mut me = self.clone();
        let sent = tokio::time::timeout(Duration::from_secs(2), async {
            me.write_all(head.as_bytes()).await?;
            me.write_all(body.as_bytes()).await?;
            me.shutdown().await
        })
        .await
        .is_ok_and(|r| r.is_ok());
        if sent {
            let mut sink = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let mut left = 64 * 1024usize;
                while left > 0 {
                    match me.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => left = left.saturating_sub(n),
                    }
                }
            })
            .await;
        }
        sent
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for HeadWatch<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let mut g = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = buf.filled().len();
        let r = Pin::new(&mut g.io).poll_read(cx, buf);
        let new = &buf.filled()[before..];
        g.read_since_write += new.len() as u64;
        g.scan.feed(new);
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for HeadWatch<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let mut g = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let r = Pin::new(&mut g.io).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            g.read_since_write = 0;
        }
        r
    }
    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        let mut g = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let r = Pin::new(&mut g.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            g.read_since_write = 0;
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).io.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut g = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Pin::new(&mut g.io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut g = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Pin::new(&mut g.io).poll_shutdown(cx)
    }
}

/// No complete head within limits.header_read_timeout_ms: answered 408 (like a body that
/// stalls) and said in an event.
fn header_timeout(app: &App, v: &Verdict, peer: SocketAddr, id: &str, sent: bool, waited: Duration) {
    let reason = Reason::HeaderTimeout;
    app.metrics.request("refused", reason.label());
    let mut g = Gateway::new(KcdStep::Request, "refused");
    g.status = sent.then_some(408);
    g.reason = Some(reason.label().into());
    g.request_id = Some(id.to_string().into());
    g.detail = Some(
        format!(
            "the request head did not arrive within {} ms (limits.header_read_timeout_ms); {}",
            waited.as_millis(),
            if sent { "answered 408 and closed" } else { "408 could not be sent (the device stopped reading); closed" }
        )
        .into(),
    );
    g.certificate = cert_object(v, None);
    g.device = Some(Box::new(GatewayDevice { address: Some(peer.to_string()), ..Default::default() }));
    app.emit(g, Some(peer));
}

/// A request hyper refused before our service saw it: a head it cannot parse (hyper answers
/// 400, 414 or 431 itself). Said in an event, like every other refusal; a device that
/// merely went away is not.
fn connection_error(app: &App, v: &Verdict, peer: SocketAddr, e: &hyper::Error) {
    let msg = e.to_string();
    let (reason, status) = if e.is_parse_too_large() {
        if msg.contains("URI") {
            (Reason::UriTooLong, Some(414))
        } else {
            (Reason::HeaderTooLarge, Some(431))
        }
    } else if e.is_parse() {
        // hyper answers nothing to an HTTP/2 preface (h2 prior knowledge).
        (Reason::BadRequest, (!msg.contains("HTTP2")).then_some(400))
    } else {
        return;
    };
    app.metrics.request("refused", reason.label());
    let mut g = Gateway::new(KcdStep::Request, "refused");
    g.status = status;
    g.reason = Some(reason.label().into());
    g.detail = Some(
        match status {
            Some(s) => format!("the request head cannot be read ({msg}); answered {s} and closed"),
            None => format!("the request head cannot be read ({msg}); closed without an answer"),
        }
        .into(),
    );
    g.certificate = cert_object(v, None);
    g.device = Some(Box::new(GatewayDevice { address: Some(peer.to_string()), ..Default::default() }));
    app.emit(g, Some(peer));
}

/// A connection over `listen.max_connections`: closed at once, before TLS, and said so.
fn connection_refused(app: &App, peer: SocketAddr) {
    app.metrics.handshake_refused("connection_cap");
    app.metrics.request("refused", "connection_cap");
    let mut g = Gateway::new(KcdStep::Request, "tls_refused");
    g.reason = Some("connection_cap".into());
    g.detail = Some(format!("{} connections open: listen.max_connections reached", app.gen.load().cfg.limits.max_connections).into());
    g.device = Some(Box::new(GatewayDevice { address: Some(peer.to_string()), ..Default::default() }));
    tracing::info!(%peer, "connection refused: listen.max_connections reached");
    app.emit(g, Some(peer));
}

fn handshake_refused(app: &App, slot: &Mutex<Verdict>, peer: SocketAddr, label: &str, finding: Option<&str>, detail: String) {
    app.metrics.handshake_refused(label);
    app.metrics.request("refused", label);
    let v = slot.lock().map(|v| v.clone()).unwrap_or_default();
    let mut g = Gateway::new(KcdStep::Request, "tls_refused");
    g.reason = Some(label.to_string().into());
    g.detail = Some(detail.into());
    g.finding = finding.map(Into::into);
    g.certificate = cert_object(&v, None);
    g.device = Some(Box::new(GatewayDevice { address: Some(peer.to_string()), ..Default::default() }));
    tracing::info!(%peer, reason = label, "TLS handshake refused");
    app.emit(g, Some(peer));
}

/// How much of a body is read before Exchange is contacted. A body that ends within it (every
/// ActiveSync command but large attachments: Sync, Ping, FolderSync bodies are a few KB of
/// WBXML) goes out whole with its exact Content-Length, so a body that stalls or grows over
/// the limit is refused (408, 413) before Exchange sees anything. A longer body is streamed
/// (it is never buffered whole); if it then stalls or crosses the limit, the upstream
/// request is aborted mid-body, which Exchange (or Apache) sees as a truncated request that
/// it cannot complete.
pub const READ_AHEAD: u64 = 64 * 1024;

/// What the read-ahead got: the whole body, or its start and the rest still to stream.
enum ReadAhead {
    Whole(Bytes),
    Started(std::collections::VecDeque<Bytes>, u64, Incoming),
    Refused(Reason, u16, String),
}

/// Reads up to `min(READ_AHEAD, limit)` bytes of the body (each frame within `idle`).
async fn read_ahead(mut body: Incoming, limit: u64, idle: Duration) -> ReadAhead {
    let ahead = READ_AHEAD.min(limit);
    let mut parts: std::collections::VecDeque<Bytes> = std::collections::VecDeque::new();
    let mut seen = 0u64;
    while seen <= ahead {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return ReadAhead::Refused(Reason::BodyTimeout, 408, format!("the device stopped sending its body after {seen} bytes; nothing was forwarded")),
            Ok(None) => {
                let mut whole = Vec::with_capacity(seen as usize);
                for p in parts {
                    whole.extend_from_slice(&p);
                }
                return ReadAhead::Whole(Bytes::from(whole));
            }
            Ok(Some(Err(e))) => return ReadAhead::Refused(Reason::BadBody, 400, format!("the device's body cannot be read after {seen} bytes: {}", error_chain(&e))),
            Ok(Some(Ok(f))) => {
                if let Ok(d) = f.into_data() {
                    seen += d.len() as u64;
                    if seen > limit {
                        return ReadAhead::Refused(Reason::BodyTooLarge, 413, format!("the body went over limits.body_bytes ({limit}); nothing was forwarded"));
                    }
                    parts.push_back(d);
                }
            }
        }
    }
    ReadAhead::Started(parts, seen, body)
}

/// The body of the device's request on its way to Exchange, past the read-ahead: its start
/// first, then the rest counted against the limit and timed between frames (hyper has no
/// body timeout); trailers are dropped.
struct Guarded {
    prefix: std::collections::VecDeque<Bytes>,
    /// The Content-Length the device declared, kept so that the upstream request has it too.
    declared: Option<u64>,
    inner: Incoming,
    limit: u64,
    seen: u64,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    flag: Arc<AtomicU8>,
    /// The device-side error behind FLAG_DEVICE_BODY.
    why: Arc<Mutex<String>>,
}

const FLAG_TOO_LARGE: u8 = 1;
const FLAG_IDLE: u8 = 2;
/// The device's body broke (framing, early end): the device's fault, not Exchange's.
const FLAG_DEVICE_BODY: u8 = 3;

impl Body for Guarded {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(d) = this.prefix.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(f))) => {
                    let deadline = tokio::time::Instant::now() + this.idle;
                    this.timer.as_mut().reset(deadline);
                    match f.into_data() {
                        Ok(d) => {
                            this.seen += d.len() as u64;
                            if this.seen > this.limit {
                                this.flag.store(FLAG_TOO_LARGE, Ordering::SeqCst);
                                return Poll::Ready(Some(Err("request body over the limit".into())));
                            }
                            return Poll::Ready(Some(Ok(Frame::data(d))));
                        }
                        Err(_trailers) => continue,
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    if this.flag.compare_exchange(0, FLAG_DEVICE_BODY, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                        if let Ok(mut d) = this.why.lock() {
                            *d = error_chain(&e);
                        }
                    }
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {
                    if this.timer.as_mut().poll(cx).is_ready() {
                        this.flag.store(FLAG_IDLE, Ordering::SeqCst);
                        return Poll::Ready(Some(Err("request body idle".into())));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty() && self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        match self.declared {
            Some(n) => SizeHint::with_exact(n.saturating_sub(self.seen) + self.prefix.iter().map(|b| b.len() as u64).sum::<u64>()),
            None => self.inner.size_hint(),
        }
    }
}

fn answer(status: u16, reason: &str, id: &str) -> Response<ProxyBody> {
    let body = format!("{status} {}\nreason: {reason}\nrequest id: {id}\n", StatusCode::from_u16(status).map(|s| s.canonical_reason().unwrap_or("")).unwrap_or(""));
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(id) {
        r.headers_mut().insert(HeaderName::from_static("x-request-id"), v);
    }
    r
}

struct LongPoll(Arc<Metrics>);
impl Drop for LongPoll {
    fn drop(&mut self) {
        self.0.long_polls.dec();
    }
}

fn now_s() -> i64 {
    crate::tls::now()
}

async fn handle(app: Arc<App>, verdict: Arc<Verdict>, peer: SocketAddr, req: Request<Incoming>, ambiguous: bool) -> Response<ProxyBody> {
    let t0 = Instant::now();
    let id = app.request_id();
    let gen = app.gen.load_full();
    let q = crate::eas::parse(req.uri().query().unwrap_or(""));
    let mut g = Gateway::new(KcdStep::Request, "refused");
    g.request_id = Some(id.clone().into());
    g.device = Some(Box::new(GatewayDevice {
        address: Some(peer.to_string()),
        device_id: q.device_id.clone(),
        device_type: q.device_type.clone(),
        cmd: q.cmd.clone(),
        user_mismatch: None,
    }));
    let refuse = |mut g: Gateway<'static>, r: Refusal, v: &Verdict, status: u16| {
        app.metrics.request("refused", r.reason.label());
        g.status = Some(status);
        g.reason = Some(r.reason.label().into());
        g.detail = Some(r.detail.into());
        if g.finding.is_none() {
            g.finding = r.reason.finding().map(Into::into);
        }
        if g.certificate.is_none() {
            g.certificate = cert_object(v, None);
        }
        app.emit(g, Some(peer));
        answer(status, r.reason.label(), &id)
    };
    if ambiguous {
        // RFC 9112 6.1: refused, and the connection closed after the answer (hyper closes
        // it after such a request in any case); its body is never read.
        let detail = "the request has both Content-Length and Transfer-Encoding (RFC 9112 6.1): readers may frame it differently (request smuggling); answered 400 and closed";
        let mut resp = refuse(g, Refusal::new(Reason::AmbiguousLength, detail), &verdict, 400);
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    if app.draining.load(Ordering::Relaxed) {
        return refuse(g, Refusal::new(Reason::Draining, "the gateway is shutting down"), &verdict, 503);
    }
    let Some(leaf) = verdict.leaf.clone() else {
        return refuse(g, Refusal::new(Reason::NoCert, "no verified certificate on this connection"), &verdict, 403);
    };
    // Revocation again, now: a device on a keep-alive connection or holding a Ping may have
    // been revoked since its handshake.
    let mut v = Verdict::clone(&verdict);
    match gen.verifier.revocation(&leaf, &verdict.intermediates) {
        Ok((checked, soft)) => {
            v.revocation = checked;
            v.soft_fail = soft;
        }
        Err(r) => {
            v.refusal = Some(r.clone());
            return refuse(g, r, &v, 403);
        }
    }
    let user = match crate::identity::map_user(&leaf, &gen.cfg.mapping, &gen.realms) {
        Ok(u) => u,
        Err(r) => return refuse(g, r, &v, 403),
    };
    g.user = Some(user.upn.clone().into());
    g.certificate = cert_object(&v, Some(user.certificate_name.clone()));
    if let Some(s) = &v.soft_fail {
        g.detail = Some(format!("revocation unknown, let through by crl.fail = \"open\": {}", s.detail).into());
    }
    if let (Some(qu), Some(d)) = (&q.user, g.device.as_mut()) {
        let local = user.upn.split('@').next().unwrap_or("");
        if !qu.eq_ignore_ascii_case(&user.upn) && !qu.eq_ignore_ascii_case(local) && !qu.eq_ignore_ascii_case(&user.certificate_name) {
            d.user_mismatch = Some(qu.clone());
        }
    }

    let (mut parts, body) = req.into_parts();
    let declared: Option<u64> = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|s| s.parse().ok());
    if declared.is_some_and(|n| n > gen.cfg.limits.body_bytes) {
        return refuse(g, Refusal::new(Reason::BodyTooLarge, format!("Content-Length over limits.body_bytes ({})", gen.cfg.limits.body_bytes)), &v, 413);
    }
    if let Err(r) = crate::normalize::check_target(&parts.method, &parts.uri) {
        let detail = format!("{} {} is not forwarded (only {} of ActiveSync)", parts.method, parts.uri.path(), crate::normalize::EAS_PATHS[0]);
        return refuse(g, Refusal::new(r, detail), &v, r.http_status());
    }
    if let Err(r) = crate::normalize::normalize(&parts.method, parts.version, &mut parts.headers, body.size_hint().exact(), peer.ip(), &gen.cfg.exchange.host_header) {
        return refuse(g, Refusal::new(r, "the request cannot be forwarded"), &v, r.http_status());
    }

    let tk = Instant::now();
    let token = gen.kcd.token(&user.upn).await;
    let kdc_latency = tk.elapsed();
    app.metrics.kdc_seconds.observe(kdc_latency.as_secs_f64());
    let token = match token {
        Ok(t) => {
            if t.cached {
                app.metrics.cache_hits.inc();
            } else {
                app.metrics.cache_misses.inc();
                app.kdc_ok.store(now_s(), Ordering::Relaxed);
            }
            app.metrics.ticket_cache.set(gen.kcd.held() as i64);
            g.kcd = Some(Box::new(GatewayKcd { cache_hit: t.cached, latency_us: kdc_latency.as_micros() as i64, ..Default::default() }));
            t
        }
        Err(e) => {
            if matches!(e, KcdError::Unreachable { .. }) {
                app.kdc_failed.store(now_s(), Ordering::Relaxed);
            }
            let ntstatus = match &e {
                KcdError::Kdc { ntstatus, .. } => ntstatus.map(NtStatusInfo),
                _ => None,
            };
            let kdc = match &e {
                KcdError::Kdc { kdc, .. } | KcdError::BadReply { kdc, .. } => Some(kdc.clone()),
                _ => None,
            };
            g.kcd = Some(Box::new(GatewayKcd {
                cache_hit: false,
                step: e.step(),
                error: e.krb_error(),
                ntstatus,
                kdc,
                latency_us: kdc_latency.as_micros() as i64,
            }));
            g.finding = Some(e.finding_id().into());
            let status = e.http_status();
            let reason = match status {
                504 => Reason::KdcUnreachable,
                403 if e.krb_error().is_some_and(|c| c.0 == 6) => Reason::UpnNotMapped,
                403 => Reason::Kerberos,
                _ => Reason::Kerberos,
            };
            return refuse(g, Refusal::new(reason, e.to_string()), &v, status);
        }
    };

    // Origin form: the connection is to Exchange's authority, and Host was set by normalize.
    let target = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    if target.parse::<hyper::Uri>().is_err() {
        return refuse(g, Refusal::new(Reason::BadRequest, "the request target cannot be forwarded"), &v, 400);
    }
    match HeaderValue::from_str(&token.header_value()) {
        Ok(mut h) => {
            // Debug of the headers (anyone's, later) prints "Sensitive", not the ticket.
            h.set_sensitive(true);
            parts.headers.insert(header::AUTHORIZATION, h);
        }
        Err(_) => return refuse(g, Refusal::new(Reason::Kerberos, "the token is not a header value"), &v, 502),
    }
    drop(token);
    let flag = Arc::new(AtomicU8::new(0));
    let why = Arc::new(Mutex::new(String::new()));
    let declared = body.size_hint().exact();
    let limits = &gen.cfg.limits;
    let outgoing = match read_ahead(body, limits.body_bytes, limits.body_idle_timeout).await {
        ReadAhead::Refused(reason, status, detail) => return refuse(g, Refusal::new(reason, detail), &v, status),
        ReadAhead::Whole(b) => Outgoing::Whole(b),
        ReadAhead::Started(prefix, seen, rest) => Outgoing::Stream(
            Guarded {
                prefix,
                declared,
                inner: rest,
                limit: limits.body_bytes,
                seen,
                idle: limits.body_idle_timeout,
                timer: Box::pin(tokio::time::sleep(limits.body_idle_timeout)),
                flag: flag.clone(),
                why: why.clone(),
            }
            .boxed(),
        ),
    };
    let _poll = q.is_long_poll().then(|| {
        app.metrics.long_polls.inc();
        LongPoll(app.metrics.clone())
    });
    let te = Instant::now();
    let r = tokio::time::timeout(gen.cfg.exchange.response_timeout, gen.upstream.request(&parts.method, target, &parts.headers, outgoing)).await;
    let ex_latency = te.elapsed();
    app.metrics.exchange_seconds.observe(ex_latency.as_secs_f64());
    let mut backend = GatewayBackend { latency_us: ex_latency.as_micros() as i64, ..Default::default() };
    let resp = match r {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            g.backend = Some(Box::new(backend));
            let (reason, status, detail) = match (flag.load(Ordering::SeqCst), e) {
                (FLAG_TOO_LARGE, _) => (Reason::BodyTooLarge, 413, "the body went over limits.body_bytes".to_string()),
                (FLAG_IDLE, _) => (Reason::BodyTimeout, 408, "the device stopped sending its body".to_string()),
                (FLAG_DEVICE_BODY, _) | (_, UpstreamError::DeviceBody(_)) => {
                    let d = why.lock().map(|w| w.clone()).unwrap_or_default();
                    (Reason::BadBody, 400, format!("the device's body cannot be read: {d}"))
                }
                // Exchange answered, but not readably: reachable, so /readyz is left alone.
                (_, UpstreamError::HeadTooLarge) => (
                    Reason::ExchangeBadResponse,
                    502,
                    format!(
                        "Exchange at {}: its response head is larger than exchange.response_head_bytes ({})",
                        gen.cfg.exchange.authority, gen.cfg.exchange.response_head_bytes,
                    ),
                ),
                (_, e @ UpstreamError::BadResponse(_)) => (Reason::ExchangeBadResponse, 502, format!("Exchange at {}: {e}", gen.cfg.exchange.authority)),
                // Its keep-alive timeout met the request: /readyz is left alone.
                (_, e @ UpstreamError::ClosedKeptAlive) => (Reason::ExchangeUnreachable, 502, format!("Exchange at {}: {e}", gen.cfg.exchange.authority)),
                (_, e) => {
                    app.exchange_failed.store(now_s(), Ordering::Relaxed);
                    (Reason::ExchangeUnreachable, 502, format!("Exchange at {}: {e}", gen.cfg.exchange.authority))
                }
            };
            return refuse(g, Refusal::new(reason, detail), &v, status);
        }
        Err(_) => {
            app.exchange_failed.store(now_s(), Ordering::Relaxed);
            g.backend = Some(Box::new(backend));
            return refuse(g, Refusal::new(Reason::ExchangeTimeout, "Exchange did not answer within exchange.response_timeout_seconds"), &v, 504);
        }
    };
    app.exchange_ok.store(now_s(), Ordering::Relaxed);
    backend.status = Some(resp.status().as_u16());
    if resp.status() == StatusCode::UNAUTHORIZED {
        backend.www_authenticate = resp
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|s| s.split_whitespace().next().unwrap_or("").chars().take(32).collect())
            .take(8)
            .collect();
        g.backend = Some(Box::new(backend));
        // A fresh ticket refused: reported once per request, never retried blindly.
        return refuse(
            g,
            Refusal::new(Reason::ExchangeRefusedTicket, format!("Exchange answered 401 to the ticket for {}", user.upn)),
            &v,
            502,
        );
    }
    g.backend = Some(Box::new(backend));
    app.metrics.request("forwarded", "");
    app.metrics.request_seconds.observe(t0.elapsed().as_secs_f64());
    g.outcome = "forwarded".into();
    g.status = Some(resp.status().as_u16());
    app.emit(g, Some(peer));
    let (mut rp, rb) = resp.into_parts();
    for n in ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authenticate"] {
        rp.headers.remove(n);
    }
    if let Ok(h) = HeaderValue::from_str(&id) {
        rp.headers.insert(HeaderName::from_static("x-request-id"), h);
    }
    Response::from_parts(rp, rb.map_err(|e| Box::new(e) as BoxError).boxed())
}

/// hyper's parse error under the pool's, when what Exchange sent was not a response hyper
/// could read (as opposed to no answer at all).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    let mut n = 0;
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
        n += 1;
        if n > 4 {
            break;
        }
    }
    s.chars().take(300).collect()
}

async fn admin_loop(app: Arc<App>, l: TcpListener) {
    loop {
        let Ok((tcp, _)) = l.accept().await else { continue };
        let app = app.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(admin(&app, req.uri().path())) }
            });
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10));
            let _ = b.serve_connection(TokioIo::new(tcp), svc).await;
        });
    }
}

fn admin(app: &App, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/healthz" => (200, "ok\n".to_string()),
        "/metrics" => {
            let kcd = &app.gen.load().kcd;
            app.metrics.ticket_cache.set(kcd.held() as i64);
            app.metrics.ticket_cache_evicted.set(i64::try_from(kcd.evicted()).unwrap_or(i64::MAX));
            (200, app.metrics.encode())
        }
        "/readyz" => {
            let mut problems = Vec::new();
            if app.draining.load(Ordering::Relaxed) {
                problems.push("draining".to_string());
            }
            if app.kdc_failed.load(Ordering::Relaxed) > app.kdc_ok.load(Ordering::Relaxed) {
                problems.push("the last KDC exchange found no KDC answering".into());
            }
            if app.exchange_failed.load(Ordering::Relaxed) > app.exchange_ok.load(Ordering::Relaxed) {
                problems.push("Exchange did not answer the last request".into());
            }
            let snap = app.fetcher.snapshot.load();
            let t = now_s();
            for (u, st) in &snap.urls {
                match &st.good {
                    Some(c) if c.next_update.is_none_or(|n| n >= t) => {}
                    Some(_) => problems.push(format!("CRL {u} expired")),
                    None => problems.push(format!("CRL {u} not loaded")),
                }
            }
            if problems.is_empty() {
                (200, "ready\n".to_string())
            } else {
                (503, problems.join("\n") + "\n")
            }
        }
        _ => (404, "not found\n".to_string()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r
}

/// Events as NDJSON into a file, one line each, written as they happen.
pub struct NdjsonFile<W = std::io::BufWriter<std::fs::File>>(pub Mutex<W>);

impl<W: std::io::Write + Send> EventSink for NdjsonFile<W> {
    fn event(&self, e: &Event<'_>) {
        let mut line = Vec::with_capacity(512);
        e.write_json(&mut line);
        line.push(b'\n');
        if let Ok(mut f) = self.0.lock() {
            let _ = f.write_all(&line);
        }
    }
    fn flush(&self) -> std::io::Result<()> {
        match self.0.lock() {
            Ok(mut f) => f.flush(),
            Err(_) => Ok(()),
        }
    }
}

/// Events to several sinks.
pub struct FanOut(pub Vec<Arc<dyn EventSink>>);

impl EventSink for FanOut {
    fn event(&self, e: &Event<'_>) {
        for s in &self.0 {
            s.event(e);
        }
    }
    fn flush(&self) -> std::io::Result<()> {
        for s in &self.0 {
            s.flush()?;
        }
        Ok(())
    }
}

/// Events as NDJSON lines to a Unix stream socket (the agent's, to join them with what it
/// sees on the wire). Connected on first use and again after the reader went away, at most
/// once a second; a reader slower than 100 ms per line loses lines rather than stalling
/// requests.
pub struct NdjsonSocket {
    path: PathBuf,
    conn: Mutex<(Option<std::os::unix::net::UnixStream>, Option<Instant>)>,
}

impl NdjsonSocket {
    pub fn new(path: PathBuf) -> Self {
        Self { path, conn: Mutex::new((None, None)) }
    }
}

impl EventSink for NdjsonSocket {
    fn event(&self, e: &Event<'_>) {
        use std::io::Write;
        let Ok(mut g) = self.conn.lock() else { return };
        if g.0.is_none() && g.1.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            g.1 = Some(Instant::now());
            if let Ok(s) = std::os::unix::net::UnixStream::connect(&self.path) {
                let _ = s.set_write_timeout(Some(Duration::from_millis(100)));
                g.0 = Some(s);
            }
        }
        let Some(s) = g.0.as_mut() else { return };
        let mut line = Vec::with_capacity(512);
        e.write_json(&mut line);
        line.push(b'\n');
        if s.write_all(&line).is_err() {
            g.0 = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::same_kerberos;
    use std::path::Path;

    fn kcd(password: &'static str, spn: &str, dcs: &str) -> kcd_client::Config {
        let text = format!(
            "[service_account]\nuser = \"svc_awseg\"\npassword_file = \"pw\"\n[kcd]\ntarget_spn = \"{spn}\"\n[[domain]]\nrealm = \"LAB.TEST\"\ndomain_controllers = [{dcs}]\n"
        );
        let read = move |_: &Path| Ok(password.as_bytes().to_vec());
        match kcd_client::Config::parse(&text, Path::new("."), &read, &|_| None) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_reload_keeps_the_tickets_only_when_kerberos_is_unchanged() {
        let base = kcd("pw-1", "HTTP/exchange.lab.test", "\"10.0.0.2\"");
        assert!(same_kerberos(&base, &kcd("pw-1", "HTTP/exchange.lab.test", "\"10.0.0.2\"")));
        // the password (redacted in Debug) still counts
        assert!(!same_kerberos(&base, &kcd("pw-2", "HTTP/exchange.lab.test", "\"10.0.0.2\"")));
        assert!(!same_kerberos(&base, &kcd("pw-1", "HTTP/mail.lab.test", "\"10.0.0.2\"")));
        assert!(!same_kerberos(&base, &kcd("pw-1", "HTTP/exchange.lab.test", "\"10.0.0.2\", \"10.0.0.3\"")));
    }
}
