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
    },
    /// Devices against a proxy.
    Run(RunArgs),
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
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Pki { dir, devices, crl_entries, cdp, prefix, suffix, server_name } => {
            pki(&dir, devices, crl_entries, &cdp, &prefix, &suffix, &server_name)
        }
        Cmd::Backend { listen, threads } => {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build()?;
            rt.block_on(backend(listen))
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

async fn backend(listen: SocketAddr) -> Result<()> {
    let l = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let body = Bytes::from(vec![b'x'; 1024]);
    loop {
        let (tcp, _) = match l.accept().await {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move {
                    let hold = req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("hold="))).and_then(|s| s.parse::<u64>().ok());
                    // Read the request body whole before answering, as Exchange does.
                    let _ = req.into_body().collect().await;
                    if let Some(s) = hold {
                        tokio::time::sleep(Duration::from_secs(s)).await;
                    }
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(body)))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
        });
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
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
}

impl Tally {
    fn new() -> Result<Tally> {
        Ok(Tally { hist: Histogram::new_with_bounds(1, 600_000_000, 3)?, ok: 0, non_200: 0, errors: 0, handshakes: 0, first_error: None })
    }
    fn add(&mut self, o: Tally) -> Result<()> {
        self.hist.add(&o.hist).map_err(|e| anyhow!("{e:?}"))?;
        self.ok += o.ok;
        self.non_200 += o.non_200;
        self.errors += o.errors;
        self.handshakes += o.handshakes;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        Ok(())
    }
}

/// One connection slot: requests one after the other, each to be sent at `interval` after
/// the previous plan (open loop) or as soon as the previous one is answered (closed loop).
async fn slot(a: Arc<RunArgs>, cfgs: Arc<Vec<Arc<rustls::ClientConfig>>>, idx: usize, measure_from: Instant, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) -> Result<Tally> {
    let mut t = Tally::new()?;
    let n = cfgs.len();
    let mut user = idx % n;
    let mut conn: Option<Sender> = None;
    let mut on_conn = 0u64;
    let interval = a.rate.map(|r| Duration::from_secs_f64(a.connections as f64 / r.max(0.001)));
    // Open loop: the slots start spread over one interval.
    let mut planned = Instant::now() + interval.map(|i| i.mul_f64(idx as f64 / a.connections.max(1) as f64)).unwrap_or_default();
    while !stop.load(Ordering::Relaxed) {
        if interval.is_some() {
            tokio::time::sleep_until(planned.into()).await;
        }
        let start = if interval.is_some() { planned } else { Instant::now() };
        if a.handshake_per_request || on_conn >= a.per_connection {
            conn = None;
        }
        if conn.is_none() {
            if on_conn > 0 || a.handshake_per_request {
                user = (user + a.connections) % n;
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
    let t0 = Instant::now();
    let measure_from = t0 + Duration::from_secs_f64(a.warmup_seconds);
    let tasks: Vec<_> = (0..a.connections.max(1))
        .map(|i| tokio::spawn(slot(a.clone(), cfgs.clone(), i, measure_from, stop.clone(), sent.clone())))
        .collect();
    tokio::time::sleep_until((measure_from + Duration::from_secs_f64(a.seconds)).into()).await;
    stop.store(true, Ordering::Relaxed);
    let wall = measure_from.elapsed().as_secs_f64();
    let mut total = Tally::new()?;
    for t in tasks {
        total.add(t.await??)?;
    }
    let h = &total.hist;
    let mode = match (a.handshake_per_request, a.rate) {
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
