//! The gateway's load benchmark tools, one binary:
//!
//! - `kcd-load pki`: a CA, a server certificate for the proxies under test, N device
//!   certificates each with its own UPN (SAN otherName 1.3.6.1.4.1.311.20.2.3) and a CRL
//!   distribution point, and a CRL of that CA listing many serials (none of the devices').
//! - `kcd-load backend`: the origin behind the proxies: 200 with 1 KiB, or the request held
//!   `hold=SECONDS` like a Ping.
//! - `kcd-load run`: devices over TLS 1.3 with their certificates, HTTP/1.1; keep-alive (a
//!   connection moves on to the next user every `--per-connection` requests) or a new
//!   handshake per request; closed loop (`--connections` in flight) or open loop (`--rate`
//!   requests per second, latency counted from the planned send time so that a slow proxy
//!   is not hidden by the client waiting for it); p50/p99/p99.9 from an HDR histogram.
//!
//! No Debian load tool presents many client certificates (wrk and h2load none, ab and siege
//! one), hence this one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

#[derive(Parser)]
#[command(name = "kcd-load", about = "Load client and backend for the gateway benchmark")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Writes ca.pem, server.pem/server.key, devices.pem (certificate then key, per device), crl.pem and crl.der.
    Pki {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1000)]
        devices: u32,
        /// Revoked serials in the CRL (none of them a device's).
        #[arg(long, default_value_t = 100_000)]
        crl_entries: u32,
        /// The devices' CRL distribution point.
        #[arg(long)]
        cdp: String,
        /// Device i's UPN is PREFIX{i}@SUFFIX.
        #[arg(long, default_value = "loaduser")]
        prefix: String,
        #[arg(long, default_value = "lab.test")]
        suffix: String,
        /// The name in the proxies' server certificate.
        #[arg(long, default_value = "gw.lab.test")]
        server_name: String,
    },
    /// The origin: 200 with 1 KiB; a query with hold=SECONDS is answered that much later.
    Backend {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Also over TLS on this address (Exchange over https://), with --cert and --key; the
        /// release (GET /release) reaches the held requests of both listeners.
        #[arg(long, requires_all = ["cert", "key"])]
        tls_listen: Option<SocketAddr>,
        #[arg(long)]
        cert: Option<PathBuf>,
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Devices against a proxy.
    Run(RunArgs),
    /// Held Pings: every connection one request the backend holds (`hold=release`); says
    /// `held N` when all are sent, keeps them `--seconds`, then asks the backend to answer
    /// them all and counts the answers.
    Hold(HoldArgs),
}

#[derive(clap::Args, Clone)]
struct HoldArgs {
    #[arg(long)]
    target: SocketAddr,
    #[arg(long, default_value = "gw.lab.test")]
    server_name: String,
    #[arg(long)]
    ca: PathBuf,
    #[arg(long)]
    devices: PathBuf,
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Held connections, one Ping each.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Handshakes in flight while the connections are opened.
    #[arg(long, default_value_t = 64)]
    parallel: usize,
    /// How long all of them are held once sent.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// The backend's release address (`kcd-load backend`), asked to answer the held requests.
    #[arg(long)]
    release: SocketAddr,
    /// Seconds to wait for every held request's answer after the release.
    #[arg(long, default_value_t = 60.0)]
    answer_seconds: f64,
    #[arg(long, default_value = "/Microsoft-Server-ActiveSync?hold=release&Cmd=Ping&DeviceType=Load&DeviceId=LOAD")]
    path: String,
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    #[arg(long)]
    target: SocketAddr,
    #[arg(long, default_value = "gw.lab.test")]
    server_name: String,
    /// The CA of the proxy's certificate (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// From `kcd-load pki`.
    #[arg(long)]
    devices: PathBuf,
    /// Distinct users (device certificates) used, at most as many as in --devices.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Requests sent before measuring (tickets, CRLs and pools warmed).
    #[arg(long, default_value_t = 0.0)]
    warmup_seconds: f64,
    /// A new TLS handshake for every request.
    #[arg(long)]
    handshake_per_request: bool,
    /// Every user once: one request each, on its own handshake, users taken in order by
    /// whichever connection is free; the run ends after the last user (--seconds is then a
    /// time limit). For runs whose judges count per user (the KDC's log, the backend's).
    #[arg(long)]
    each_user_once: bool,
    /// Keep-alive: requests on a connection before it moves on to the next user.
    #[arg(long, default_value_t = 100)]
    per_connection: u64,
    /// Open loop at this many requests per second in total (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value = "/Microsoft-Server-ActiveSync?Cmd=Sync&DeviceType=Load&DeviceId=LOAD")]
    path: String,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Plain HTTP, no TLS and no certificate: the backend itself, the baseline that the
    /// proxies' added latency is measured against.
    #[arg(long)]
    plain: bool,
    /// Requests slower than this many milliseconds are reported on standard error, counted
    /// per 100 ms of the run: whether a tail is one stall or spread out, and when.
    #[arg(long)]
    slow_ms: Option<u64>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Pki { dir, devices, crl_entries, cdp, prefix, suffix, server_name } => {
            pki(&dir, devices, crl_entries, &cdp, &prefix, &suffix, &server_name)
        }
        Cmd::Backend { listen, threads, tls_listen, cert, key } => {
            let tls = match (tls_listen, cert, key) {
                (Some(addr), Some(cert), Some(key)) => Some((addr, tls_acceptor(&cert, &key)?)),
                _ => None,
            };
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build()?;
            rt.block_on(backend(listen, tls))
        }
        Cmd::Hold(a) => {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(a.threads.max(1)).enable_all().build()?;
            rt.block_on(hold(a))
        }
        Cmd::Run(a) => {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(a.threads.max(1)).enable_all().build()?;
            rt.block_on(run(a))
        }
    }
}

const UPN_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 311, 20, 2, 3];

fn pki(dir: &Path, devices: u32, crl_entries: u32, cdp: &str, prefix: &str, suffix: &str, server_name: &str) -> Result<()> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, OtherNameValue, RevokedCertParams, SanType, SerialNumber,
        PKCS_ECDSA_P256_SHA256,
    };
    std::fs::create_dir_all(dir)?;
    let not_before = rcgen::date_time_ymd(2025, 1, 1);
    let not_after = rcgen::date_time_ymd(2035, 1, 1);
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, "kcdscope load CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key)?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
    let issuer = Issuer::new(ca, &ca_key);

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut p = CertificateParams::new(vec![server_name.to_string()])?;
    p.distinguished_name.push(DnType::CommonName, server_name);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    p.not_before = not_before;
    p.not_after = not_after;
    let server = p.signed_by(&key, &issuer)?;
    std::fs::write(dir.join("server.pem"), server.pem())?;
    std::fs::write(dir.join("server.key"), key.serialize_pem())?;

    // Serials 1..=crl_entries are revoked; devices get serials above them.
    let mut out = String::new();
    for i in 0..devices {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        let upn = format!("{prefix}{i}@{suffix}");
        p.distinguished_name.push(DnType::CommonName, format!("{prefix}{i}"));
        p.subject_alt_names = vec![SanType::OtherName((UPN_OID.to_vec(), OtherNameValue::Utf8String(upn)))];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.crl_distribution_points = vec![CrlDistributionPoint { uris: vec![cdp.to_string()] }];
        p.serial_number = Some(SerialNumber::from(u64::from(crl_entries) + 1 + u64::from(i)));
        p.use_authority_key_identifier_extension = true;
        p.not_before = not_before;
        p.not_after = not_after;
        let c = p.signed_by(&key, &issuer)?;
        out.push_str(&c.pem());
        out.push_str(&key.serialize_pem());
    }
    std::fs::write(dir.join("devices.pem"), out)?;

    let crl = CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2026, 1, 1),
        next_update: rcgen::date_time_ymd(2034, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: (1..=u64::from(crl_entries))
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(s),
                revocation_time: rcgen::date_time_ymd(2026, 1, 1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)?;
    std::fs::write(dir.join("crl.der"), crl.der().as_ref())?;
    std::fs::write(dir.join("crl.pem"), crl.pem()?)?;
    println!("{}: CA, server certificate for {server_name}, {devices} devices, CRL of {crl_entries} entries", dir.display());
    Ok(())
}

/// A TLS server configuration from PEM files (the backend as an https:// Exchange).
fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    // ring, as everywhere in the workspace (its deprecation is about post-quantum key exchange).
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// What the backend's connections share: the answer's body, the release of held requests and
/// their count.
#[derive(Clone)]
struct Origin {
    body: Bytes,
    release_tx: tokio::sync::broadcast::Sender<()>,
    held: Arc<AtomicU64>,
}

async fn backend(listen: SocketAddr, tls: Option<(SocketAddr, tokio_rustls::TlsAcceptor)>) -> Result<()> {
    let l = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    // `hold=release` requests wait for the next GET /release (or an hour, Exchange's longest Ping).
    let origin = Origin { body: Bytes::from(vec![b'x'; 1024]), release_tx: tokio::sync::broadcast::channel::<()>(1).0, held: Arc::new(AtomicU64::new(0)) };
    if let Some((addr, acceptor)) = tls {
        let tl = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        let origin = origin.clone();
        tokio::spawn(async move {
            loop {
                let Some(tcp) = accept(&tl).await else { continue };
                let (acceptor, origin) = (acceptor.clone(), origin.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        origin.serve(tls).await;
                    }
                });
            }
        });
    }
    loop {
        let Some(tcp) = accept(&l).await else { continue };
        tokio::spawn(origin.clone().serve(tcp));
    }
}

async fn accept(l: &tokio::net::TcpListener) -> Option<tokio::net::TcpStream> {
    match l.accept().await {
        Ok((tcp, _)) => {
            let _ = tcp.set_nodelay(true);
            Some(tcp)
        }
        Err(_) => {
            tokio::time::sleep(Duration::from_millis(10)).await;
            None
        }
    }
}

impl Origin {
    async fn serve<I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static>(self, io: I) {
        let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let Origin { body, release_tx, held } = self.clone();
            async move {
                if req.uri().path() == "/release" {
                    let n = held.load(Ordering::Relaxed);
                    let _ = release_tx.send(());
                    return Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(format!("released {n}\n")))));
                }
                let hold = req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("hold="))).map(str::to_string);
                // Subscribed before the body is read: a release sent after the request
                // arrived reaches it.
                let mut rx = release_tx.subscribe();
                // Read the request body whole before answering, as Exchange does.
                let _ = req.into_body().collect().await;
                match hold.as_deref() {
                    Some("release") => {
                        held.fetch_add(1, Ordering::Relaxed);
                        let _ = tokio::time::timeout(Duration::from_secs(3600), rx.recv()).await;
                        held.fetch_sub(1, Ordering::Relaxed);
                    }
                    Some(s) => {
                        if let Ok(s) = s.parse::<u64>() {
                            tokio::time::sleep(Duration::from_secs(s)).await;
                        }
                    }
                    None => {}
                }
                Ok(hyper::Response::new(Full::new(body)))
            }
        });
        let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc).await;
    }
}

fn client_configs(a: &RunArgs) -> Result<Vec<Arc<rustls::ClientConfig>>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&a.ca).with_context(|| format!("reading {}", a.ca.display()))? {
        roots.add(c?)?;
    }
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&a.devices).with_context(|| format!("reading {}", a.devices.display()))?.collect::<Result<_, _>>()?;
    let keys: Vec<PrivateKeyDer<'static>> = PrivateKeyDer::pem_file_iter(&a.devices)?.collect::<Result<_, _>>()?;
    if certs.len() != keys.len() || certs.is_empty() {
        bail!("{}: {} certificates and {} keys", a.devices.display(), certs.len(), keys.len());
    }
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    // What phones offer first (rustls's own default now leads with P-384, which no phone does).
    {
        use rustls::crypto::ring::kx_group;
        provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    }
    let provider = Arc::new(provider);
    let roots = Arc::new(roots);
    certs
        .into_iter()
        .zip(keys)
        .take(a.users.max(1))
        .map(|(c, k)| {
            let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])?
                .with_root_certificates(roots.clone())
                .with_client_auth_cert(vec![c], k)?;
            // Every connection a full handshake, as the proxies are configured (no resumption).
            cfg.resumption = rustls::client::Resumption::disabled();
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Arc::new(cfg))
        })
        .collect()
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(a: &RunArgs, cfg: Arc<rustls::ClientConfig>) -> Result<Sender> {
    let tcp = tokio::net::TcpStream::connect(a.target).await?;
    let _ = tcp.set_nodelay(true);
    if a.plain {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        return Ok(sender);
    }
    let name = ServerName::try_from(a.server_name.clone())?;
    let tls = tokio_rustls::TlsConnector::from(cfg).connect(name, tcp).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn request(a: &RunArgs, s: &mut Sender, user: usize) -> Result<u16> {
    s.ready().await?;
    let req = hyper::Request::post(format!("{}{user}", a.path))
        .header(hyper::header::HOST, a.server_name.as_str())
        .body(Full::new(Bytes::from_static(b"<wbxml/>")))?;
    let resp = s.send_request(req).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

struct Tally {
    hist: Histogram<u64>,
    ok: u64,
    non_200: u64,
    errors: u64,
    handshakes: u64,
    first_error: Option<String>,
    /// --slow-ms: per 100 ms window since the measuring began, the slow requests and the
    /// worst latency (µs); as many entries as the run has windows
    slow: std::collections::BTreeMap<u64, (u64, u64)>,
}

impl Tally {
    fn new() -> Result<Tally> {
        Ok(Tally { hist: Histogram::new_with_bounds(1, 600_000_000, 3)?, ok: 0, non_200: 0, errors: 0, handshakes: 0, first_error: None, slow: Default::default() })
    }
    fn add(&mut self, o: Tally) -> Result<()> {
        self.hist.add(&o.hist).map_err(|e| anyhow!("{e:?}"))?;
        self.ok += o.ok;
        self.non_200 += o.non_200;
        self.errors += o.errors;
        self.handshakes += o.handshakes;
        for (win, (n, worst)) in o.slow {
            let e = self.slow.entry(win).or_default();
            e.0 += n;
            e.1 = e.1.max(worst);
        }
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        Ok(())
    }
}

/// One connection slot: requests one after the other, each to be sent at `interval` after
/// the previous plan (open loop) or as soon as the previous one is answered (closed loop).
async fn slot(a: Arc<RunArgs>, cfgs: Arc<Vec<Arc<rustls::ClientConfig>>>, idx: usize, measure_from: Instant, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>, next_user: Arc<AtomicU64>) -> Result<Tally> {
    let mut t = Tally::new()?;
    let n = cfgs.len();
    let mut user = idx % n;
    let mut conn: Option<Sender> = None;
    let mut on_conn = 0u64;
    // Slot i's first connection is cut short by i/connections of --per-connection, so that
    // the connections move on one after another, as independent devices would. Without it
    // an open loop sends every slot at the same rate and all of them handshake within one
    // interval: 64 handshakes in a burst, whose queue then dominated p99 and p99.9.
    let stagger = (u128::from(a.per_connection) * idx as u128 / a.connections.max(1) as u128) as u64;
    let mut budget = a.per_connection.saturating_sub(stagger).max(1);
    let interval = a.rate.map(|r| Duration::from_secs_f64(a.connections as f64 / r.max(0.001)));
    // Open loop: the slots start spread over one interval.
    let mut planned = Instant::now() + interval.map(|i| i.mul_f64(idx as f64 / a.connections.max(1) as f64)).unwrap_or_default();
    while !stop.load(Ordering::Relaxed) {
        if interval.is_some() {
            tokio::time::sleep_until(planned.into()).await;
        }
        let start = if interval.is_some() { planned } else { Instant::now() };
        if a.handshake_per_request || a.each_user_once || on_conn >= budget {
            conn = None;
        }
        if a.each_user_once {
            user = next_user.fetch_add(1, Ordering::Relaxed) as usize;
            if user >= n {
                break;
            }
        }
        if conn.is_none() {
            if !a.each_user_once && (on_conn > 0 || a.handshake_per_request) {
                user = (user + a.connections) % n;
            }
            if on_conn >= budget {
                budget = a.per_connection;
            }
            on_conn = 0;
            match connect(&a, cfgs[user].clone()).await {
                Ok(s) => {
                    conn = Some(s);
                    t.handshakes += 1;
                }
                Err(e) => {
                    if start >= measure_from {
                        t.errors += 1;
                        t.first_error.get_or_insert_with(|| format!("connect: {e:#}"));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    if let Some(i) = interval {
                        planned += i;
                    }
                    continue;
                }
            }
        }
        let Some(s) = conn.as_mut() else { continue };
        let r = request(&a, s, user).await;
        let done = Instant::now();
        on_conn += 1;
        sent.fetch_add(1, Ordering::Relaxed);
        if start >= measure_from {
            match r {
                Ok(200) => {
                    t.ok += 1;
                    let us = done.saturating_duration_since(start).as_micros().clamp(1, 600_000_000) as u64;
                    let _ = t.hist.record(us);
                    if a.slow_ms.is_some_and(|ms| us >= ms * 1000) {
                        let e = t.slow.entry((start - measure_from).as_millis() as u64 / 100).or_default();
                        e.0 += 1;
                        e.1 = e.1.max(us);
                    }
                }
                Ok(st) => {
                    t.non_200 += 1;
                    t.first_error.get_or_insert_with(|| format!("HTTP {st}"));
                }
                Err(e) => {
                    t.errors += 1;
                    t.first_error.get_or_insert_with(|| format!("request: {e:#}"));
                    conn = None;
                }
            }
        } else if r.is_err() {
            conn = None;
        }
        if let Some(i) = interval {
            planned += i;
        }
    }
    Ok(t)
}

async fn run(a: RunArgs) -> Result<()> {
    let cfgs = Arc::new(client_configs(&a)?);
    let a = Arc::new(a);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let next_user = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let measure_from = t0 + Duration::from_secs_f64(a.warmup_seconds);
    // (the system's uptime then: to find a slow moment in system-wide traces)
    let up0: f64 = std::fs::read_to_string("/proc/uptime").ok().and_then(|u| u.split_whitespace().next()?.parse().ok()).unwrap_or(0.0);
    let tasks: Vec<_> = (0..a.connections.max(1))
        .map(|i| tokio::spawn(slot(a.clone(), cfgs.clone(), i, measure_from, stop.clone(), sent.clone(), next_user.clone())))
        .collect();
    let deadline = measure_from + Duration::from_secs_f64(a.seconds);
    if a.each_user_once {
        while Instant::now() < deadline && !tasks.iter().all(|t| t.is_finished()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    } else {
        tokio::time::sleep_until(deadline.into()).await;
    }
    stop.store(true, Ordering::Relaxed);
    let wall = measure_from.elapsed().as_secs_f64();
    let mut total = Tally::new()?;
    for t in tasks {
        total.add(t.await??)?;
    }
    if a.slow_ms.is_some() {
        for (win, (n, worst)) in &total.slow {
            eprintln!("slow: {} t={:.1}s uptime={:.1}s n={n} worst_ms={:.1}", a.target, *win as f64 / 10.0, up0 + a.warmup_seconds + *win as f64 / 10.0, *worst as f64 / 1000.0);
        }
    }
    let h = &total.hist;
    let mode = match (a.handshake_per_request || a.each_user_once, a.rate) {
        (true, None) => "handshake-per-request closed-loop".to_string(),
        (false, None) => "keep-alive closed-loop".to_string(),
        (true, Some(r)) => format!("handshake-per-request open-loop {r}/s"),
        (false, Some(r)) => format!("keep-alive open-loop {r}/s"),
    };
    println!(
        "{{\"mode\":\"{mode}\",\"target\":\"{}\",\"connections\":{},\"users\":{},\"seconds\":{wall:.2},\"ok\":{},\"non_200\":{},\"errors\":{},\"handshakes\":{},\"rps\":{:.1},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"first_error\":{:?}}}",
        a.target,
        a.connections,
        cfgs.len(),
        total.ok,
        total.non_200,
        total.errors,
        total.handshakes,
        total.ok as f64 / wall,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        total.first_error.unwrap_or_default(),
    );
    Ok(())
}

/// Held Pings (see `Cmd::Hold`). Prints `held N ramp_s S` when every request is sent, then
/// one JSON line: how many were opened, refused, answered before the release (none should
/// be) and answered 200 after it.
async fn hold(h: HoldArgs) -> Result<()> {
    let ra = RunArgs {
        target: h.target,
        server_name: h.server_name.clone(),
        ca: h.ca.clone(),
        devices: h.devices.clone(),
        users: h.users,
        connections: h.connections,
        seconds: h.seconds,
        warmup_seconds: 0.0,
        handshake_per_request: false,
        each_user_once: false,
        per_connection: 1,
        rate: None,
        path: h.path.clone(),
        threads: h.threads,
        plain: false,
        slow_ms: None,
    };
    let cfgs = client_configs(&ra)?;
    let ra = Arc::new(ra);
    let released = Arc::new(AtomicBool::new(false));
    let early = Arc::new(AtomicU64::new(0));
    let sem = Arc::new(tokio::sync::Semaphore::new(h.parallel.max(1)));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::channel::<Result<(), String>>(h.connections.max(1));
    for i in 0..h.connections {
        let (ra, cfg, sem, released, early, sent_tx) = (ra.clone(), cfgs[i % cfgs.len()].clone(), sem.clone(), released.clone(), early.clone(), sent_tx.clone());
        let user = i % cfgs.len();
        tasks.spawn(async move {
            let permit = sem.acquire_owned().await;
            let mut s = match connect(&ra, cfg).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = sent_tx.send(Err(format!("connect: {e:#}"))).await;
                    return Err(format!("connect: {e:#}"));
                }
            };
            if let Err(e) = s.ready().await {
                let _ = sent_tx.send(Err(format!("ready: {e}"))).await;
                return Err(format!("ready: {e}"));
            }
            let req = hyper::Request::post(format!("{}{user}", ra.path))
                .header(hyper::header::HOST, ra.server_name.as_str())
                .body(Full::new(Bytes::from_static(b"<wbxml/>")))
                .map_err(|e| e.to_string())?;
            let resp = s.send_request(req);
            drop(permit);
            let _ = sent_tx.send(Ok(())).await;
            drop(sent_tx);
            let r = async {
                let resp = resp.await?;
                let st = resp.status().as_u16();
                resp.into_body().collect().await?;
                Ok::<u16, hyper::Error>(st)
            }
            .await;
            if !released.load(Ordering::SeqCst) {
                early.fetch_add(1, Ordering::Relaxed);
            }
            match r {
                Ok(200) => Ok(()),
                Ok(st) => Err(format!("HTTP {st}")),
                Err(e) => Err(format!("request: {e}")),
            }
        });
    }
    drop(sent_tx);
    let (mut sent, mut refused, mut first_error) = (0u64, 0u64, None);
    while let Some(r) = sent_rx.recv().await {
        match r {
            Ok(()) => sent += 1,
            Err(e) => {
                refused += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let ramp = t0.elapsed().as_secs_f64();
    println!("held {sent} ramp_s {ramp:.1}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    tokio::time::sleep(Duration::from_secs_f64(h.seconds)).await;
    let early_before_release = early.load(Ordering::SeqCst);
    released.store(true, Ordering::SeqCst);
    let backend_held = release(h.release).await.unwrap_or_else(|e| format!("release failed: {e:#}"));
    let (mut answered, mut failed) = (0u64, 0u64);
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(h.answer_seconds);
    while let Ok(Some(r)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
        match r {
            Ok(Ok(())) => answered += 1,
            Ok(Err(e)) => {
                failed += 1;
                if !e.starts_with("connect") && !e.starts_with("ready") {
                    first_error.get_or_insert(e);
                }
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let unanswered = tasks.len();
    println!(
        "{{\"connections\":{},\"held\":{sent},\"refused\":{refused},\"ramp_seconds\":{ramp:.1},\"answered_before_release\":{early_before_release},\"backend\":{:?},\"answered_200\":{answered},\"failed\":{failed},\"unanswered\":{unanswered},\"first_error\":{:?}}}",
        h.connections,
        backend_held.trim(),
        first_error.unwrap_or_default()
    );
    Ok(())
}

async fn release(addr: SocketAddr) -> Result<String> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (mut s, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let resp = s.send_request(hyper::Request::get("/release").header(hyper::header::HOST, "backend").body(Full::new(Bytes::new()))?).await?;
    let b = resp.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&b).into_owned())
}
