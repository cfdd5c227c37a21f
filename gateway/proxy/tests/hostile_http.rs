//! Hostile HTTP from a device that holds a valid certificate: request smuggling, malformed
//! heads, hop-by-hop and spoofed headers, its own Authorization, other paths, slowness and
//! pipelining. The gateway runs in-process on loopback with its real TLS, certificate
//! verification and CRL fetching (a CRL served over HTTP by the test); what stands in is
//! the ticket: a fixed token instead of S4U2Self + S4U2Proxy, so that no KDC is needed (the
//! Kerberos part is proven against Samba AD in tests/tests/gateway_lab.rs).
//!
//! The judge is the backend: a raw TCP server that records every byte the gateway sends
//! and splits it into requests with its own strict HTTP/1.1 reader (CRLF only, one framing,
//! origin-form), so that "the backend received exactly this" is not hyper's opinion of
//! what hyper wrote. For every case: the device's answer, the gateway's event, and the
//! requests (complete, incomplete, malformed) the backend read.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcd_client::{JsonLines, KcdError, Token};
use kcd_gateway::config::GatewayConfig;
use kcd_gateway::server::{Control, Tickets};
use rcgen::{
    BasicConstraints, CustomExtension, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint, DnType, ExtendedKeyUsagePurpose,
    IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, OtherNameValue, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const UPN_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 311, 20, 2, 3];
const TOKEN: &[u8] = b"fixed-test-token: not a Kerberos AP-REQ";
const EXCHANGE_HOST: &str = "exchange.lab.test";

/// The stand-in for the delegation client.
struct FixedTicket;
impl Tickets for FixedTicket {
    fn token<'a>(&'a self, user: &'a str) -> Pin<Box<dyn Future<Output = Result<Token, KcdError>> + Send + 'a>> {
        Box::pin(async move {
            Ok(Token { bytes: TOKEN.to_vec(), client: user.to_string(), spn: format!("HTTP/{EXCHANGE_HOST}"), cached: true, endtime: i64::MAX })
        })
    }
    fn held(&self) -> usize {
        1
    }
}

fn negotiate() -> String {
    use base64::Engine;
    format!("Negotiate {}", base64::engine::general_purpose::STANDARD.encode(TOKEN))
}

// ---------------------------------------------------------------------------------------
// The backend's own reader.

#[derive(Debug, Clone)]
struct Req {
    conn: usize,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
}

#[derive(Default)]
struct Record {
    raw: Vec<Vec<u8>>,
    complete: Vec<Req>,
    /// Bytes a connection ended with that were not a whole request.
    incomplete: Vec<(usize, Vec<u8>)>,
    malformed: Vec<(usize, String)>,
}

fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// One request from the front of `buf`: Ok(None) when more bytes are needed.
fn strict_request(buf: &[u8]) -> Result<Option<(Req, usize)>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > 1 << 20 {
            return Err("head over 1 MiB".into());
        }
        return Ok(None);
    };
    let head = &buf[..end];
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' && (i == 0 || head[i - 1] != b'\r') {
            return Err("bare LF in the head".into());
        }
        if b == b'\r' && head.get(i + 1) != Some(&b'\n') {
            return Err("bare CR in the head".into());
        }
        if b == 0 {
            return Err("NUL in the head".into());
        }
    }
    let text = std::str::from_utf8(head).map_err(|_| "head not UTF-8")?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or("");
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts.as_slice() else { return Err(format!("request line {line:?}")) };
    if method.is_empty() || !method.bytes().all(token_char) || !target.starts_with('/') || *version != "HTTP/1.1" {
        return Err(format!("request line {line:?}"));
    }
    let mut headers = Vec::new();
    for l in lines {
        if l.starts_with(' ') || l.starts_with('\t') {
            return Err("obs-fold".into());
        }
        let (k, v) = l.split_once(':').ok_or_else(|| format!("header line {l:?}"))?;
        if k.is_empty() || !k.bytes().all(token_char) {
            return Err(format!("header name {k:?}"));
        }
        if v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(format!("control character in {k}"));
        }
        headers.push((k.to_string(), v.trim_matches([' ', '\t']).to_string()));
    }
    let mut req = Req { conn: 0, target: target.to_string(), headers, body: Vec::new() };
    let cl = req.all("content-length");
    let te = req.all("transfer-encoding");
    let mut at = end + 4;
    match (cl.as_slice(), te.as_slice()) {
        ([], []) => {}
        ([n], []) => {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("Content-Length {n:?}"));
            }
            let n: usize = n.parse().map_err(|_| "Content-Length overflows")?;
            if buf.len() < at + n {
                return Ok(None);
            }
            req.body = buf[at..at + n].to_vec();
            at += n;
        }
        ([], ["chunked"]) => loop {
            let Some(le) = buf[at..].windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
            let size_text = std::str::from_utf8(&buf[at..at + le]).map_err(|_| "chunk size not text")?;
            if size_text.is_empty() || size_text.len() > 15 || !size_text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("chunk size {size_text:?}"));
            }
            let n = usize::from_str_radix(size_text, 16).map_err(|_| "chunk size")?;
            at += le + 2;
            if n == 0 {
                if buf.len() < at + 2 {
                    return Ok(None);
                }
                if &buf[at..at + 2] != b"\r\n" {
                    return Err("trailers or garbage after the last chunk".into());
                }
                at += 2;
                break;
            }
            if buf.len() < at + n + 2 {
                return Ok(None);
            }
            req.body.extend_from_slice(&buf[at..at + n]);
            if &buf[at + n..at + n + 2] != b"\r\n" {
                return Err("chunk not followed by CRLF".into());
            }
            at += n + 2;
        },
        _ => return Err(format!("framing: Content-Length {cl:?}, Transfer-Encoding {te:?}")),
    }
    Ok(Some((req, at)))
}

/// Exchange: plain TCP, or TLS when an acceptor is given (the gateway's https:// client).
async fn backend(l: TcpListener, rec: Arc<Mutex<Record>>, tls: Option<tokio_rustls::TlsAcceptor>) {
    loop {
        let Ok((tcp, _)) = l.accept().await else { continue };
        let conn = {
            let mut r = rec.lock().expect("record");
            r.raw.push(Vec::new());
            r.raw.len() - 1
        };
        let rec = rec.clone();
        match tls.clone() {
            None => {
                tokio::spawn(exchange_conn(tcp, conn, rec));
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    if let Ok(s) = acceptor.accept(tcp).await {
                        exchange_conn(s, conn, rec).await;
                    }
                });
            }
        }
    }
}

/// One connection of Exchange: every byte recorded, split into requests by the strict reader.
async fn exchange_conn<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut tcp: S, conn: usize, rec: Arc<Mutex<Record>>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        let n = match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        if n == 0 {
            if !buf.is_empty() {
                rec.lock().expect("record").incomplete.push((conn, buf));
            }
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        rec.lock().expect("record").raw[conn].extend_from_slice(&chunk[..n]);
        // "early=1": answered as soon as the head is in, the body left unread (as IIS
        // refuses an upload over its limit), the connection kept open a while.
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if String::from_utf8_lossy(&buf[..end]).lines().next().is_some_and(|l| l.contains("early=1")) {
                let _ = tcp.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 7\r\nConnection: close\r\n\r\ntoo big").await;
                tokio::time::sleep(Duration::from_secs(5)).await;
                return;
            }
        }
        loop {
            match strict_request(&buf) {
                Ok(Some((mut req, used))) => {
                    buf.drain(..used);
                    req.conn = conn;
                    let hold = req.target.contains("hold=1");
                    let req_bye = req.target.contains("bye=1");
                    let pad = req.target.split("pad=").nth(1).and_then(|v| v.split('&').next()).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
                    let canned = req.target.split("resp=").nth(1).and_then(|v| v.split('&').next()).map(str::to_string);
                    rec.lock().expect("record").complete.push(req);
                    // "resp=NAME": Exchange's answer as raw bytes, to try the
                    // gateway's reading of responses.
                    if let Some(raw) = canned.as_deref().and_then(canned_response) {
                        if tcp.write_all(raw.as_bytes()).await.is_err() || canned.as_deref() == Some("close") {
                            return;
                        }
                        continue;
                    }
                    if hold {
                        tokio::time::sleep(Duration::from_millis(1500)).await;
                    }
                    let body = b"backend ok\n";
                    // "pad=N": a response head N bytes longer (Exchange's heads are
                    // read into 4 KiB)
                    let pad = if pad > 0 { format!("X-Pad: {}\r\n", "p".repeat(pad)) } else { String::new() };
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n{pad}Content-Length: {}\r\n\r\n", body.len());
                    if tcp.write_all(head.as_bytes()).await.is_err() || tcp.write_all(body).await.is_err() {
                        return;
                    }
                    // "bye=1": a keep-alive answer, then the connection closed while
                    // idle in the gateway's pool (as Exchange's idle timeout does).
                    if req_bye {
                        let _ = tcp.flush().await;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let _ = tcp.shutdown().await;
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    rec.lock().expect("record").malformed.push((conn, e));
                    return;
                }
            }
        }
    }
}

/// Responses as an Exchange (or something in its place) might send them.
fn canned_response(name: &str) -> Option<&'static str> {
    Some(match name {
        "chunked" => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        "continue" => "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nafter1",
        "close" => "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-close",
        "clte" => "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "twocl" => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        "switch" => "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        // A transfer coding the gateway does not decode (the body stands for gzip's bytes).
        "gzip" => "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\ncompressed abc",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------
// PKI, CRL server, the gateway.

struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    server_pem: String,
    server_key: String,
    server_der: CertificateDer<'static>,
    server_key_der: Vec<u8>,
    crl: Vec<u8>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.distinguished_name.push(DnType::CommonName, "hostile suite CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.not_before = rcgen::date_time_ymd(2025, 1, 1);
    ca.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut p = CertificateParams::new(vec!["gw.lab.test".to_string()]).expect("params");
    p.distinguished_name.push(DnType::CommonName, "gw.lab.test");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    let server = p.signed_by(&key, &issuer).expect("server");
    let crl = CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2026, 1, 1),
        next_update: rcgen::date_time_ymd(2034, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .expect("CRL");
    Pki {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().clone(),
        issuer,
        server_pem: server.pem(),
        server_key: key.serialize_pem(),
        server_der: server.der().clone(),
        server_key_der: key.serialize_der(),
        crl: crl.der().to_vec(),
    }
}

/// A device certificate of `upn`, issued by the suite's CA, with the CRL's CDP.
fn device(p: &Pki, upn: &str, cdp: &str, serial: u64) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    device_with(p, upn, cdp, serial, |_| {})
}

fn device_with(
    p: &Pki,
    upn: &str,
    cdp: &str,
    serial: u64,
    tweak: impl FnOnce(&mut CertificateParams),
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut c = CertificateParams::new(Vec::<String>::new()).expect("params");
    c.distinguished_name.push(DnType::CommonName, upn.split('@').next().unwrap_or(upn));
    c.subject_alt_names = vec![SanType::OtherName((UPN_OID.to_vec(), OtherNameValue::Utf8String(upn.to_string())))];
    c.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    c.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    c.crl_distribution_points = vec![CrlDistributionPoint { uris: vec![cdp.to_string()] }];
    c.serial_number = Some(SerialNumber::from(serial));
    c.use_authority_key_identifier_extension = true;
    c.not_before = rcgen::date_time_ymd(2025, 1, 1);
    c.not_after = rcgen::date_time_ymd(2035, 1, 1);
    tweak(&mut c);
    let cert = c.signed_by(&key, &p.issuer).expect("device");
    (vec![cert.der().clone()], PrivateKeyDer::try_from(key.serialize_der()).expect("key der"))
}

async fn crl_server(l: TcpListener, der: Vec<u8>) {
    loop {
        let Ok((mut tcp, _)) = l.accept().await else { continue };
        let der = der.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut b = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match tcp.read(&mut b).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&b[..n]),
                }
            }
            let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", der.len());
            let _ = tcp.write_all(head.as_bytes()).await;
            let _ = tcp.write_all(&der).await;
        });
    }
}

struct Gw {
    pki: Pki,
    addr: SocketAddr,
    backend: SocketAddr,
    rec: Arc<Mutex<Record>>,
    events: Arc<JsonLines>,
    cdp: String,
    alice: Arc<rustls::ClientConfig>,
    _stop: tokio::sync::mpsc::Sender<Control>,
    dir: std::path::PathBuf,
}

impl Drop for Gw {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn client_config(p: &Pki, chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(p.ca_der.clone()).expect("root");
    let signer = kcd_gateway::provider().key_provider.load_private_key(key).expect("key");
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(kcd_gateway::provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_cert_resolver(Arc::new(AlwaysSend(Arc::new(rustls::sign::CertifiedKey::new(chain, signer))))),
    )
}

/// The device's certificate sent as it is: rustls's own client would refuse to present a
/// certificate it cannot parse (an unknown critical extension), a hostile device does not.
#[derive(Debug)]
struct AlwaysSend(Arc<rustls::sign::CertifiedKey>);
impl rustls::client::ResolvesClientCert for AlwaysSend {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Gw {
    async fn start(limits: &str) -> Gw {
        Gw::start_with(limits, false).await
    }

    /// With `exchange_tls`, Exchange speaks TLS (https:// in the gateway's configuration),
    /// with the gateway's own certificate (gw.lab.test, the suite's CA).
    async fn start_with(limits: &str, exchange_tls: bool) -> Gw {
        let backend_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let crl_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let gw_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let cdp = format!("http://{}/ca.crl", crl_l.local_addr().expect("addr"));
        let pki = pki();
        let rec = Arc::new(Mutex::new(Record::default()));
        let backend_addr = backend_l.local_addr().expect("addr");
        let acceptor = exchange_tls.then(|| {
            let key = PrivateKeyDer::Pkcs8(pki.server_key_der.clone().into());
            let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(kcd_gateway::provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(vec![pki.server_der.clone()], key)
                .expect("Exchange's certificate");
            tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
        });
        tokio::spawn(backend(backend_l, rec.clone(), acceptor));
        tokio::spawn(crl_server(crl_l, pki.crl.clone()));
        let dir = std::env::temp_dir().join(format!("kcd-hostile-{}-{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("server.pem"), &pki.server_pem).expect("write");
        std::fs::write(dir.join("server.key"), &pki.server_key).expect("write");
        std::fs::write(dir.join("ca.pem"), &pki.ca_pem).expect("write");
        std::fs::write(dir.join("svc.password"), "unused: tickets come from the test\n").expect("write");
        let (alice_chain, alice_key) = device(&pki, "alice@lab.test", &cdp, 1000);
        let alice = client_config(&pki, alice_chain, alice_key);
        Gw { pki, addr: gw_l.local_addr().expect("addr"), backend: backend_addr, rec, events: Arc::new(JsonLines(Mutex::new(Vec::new()))), cdp, alice, _stop: tokio::sync::mpsc::channel(1).0, dir }
            .run(gw_l, limits, exchange_tls)
            .await
    }

    async fn run(mut self, gw_l: TcpListener, limits: &str, exchange_tls: bool) -> Gw {
        let backend = self.backend;
        let exchange = if exchange_tls {
            format!("url = \"https://{backend}\"\nca = \"ca.pem\"\nserver_name = \"gw.lab.test\"")
        } else {
            format!("url = \"http://{backend}\"")
        };
        let toml = format!(
            r#"
[listen]
address = "{gw}"
certificate = "server.pem"
key = "server.key"
handshake_timeout_ms = 3000
[client_certificates]
chain = "ca.pem"
[exchange]
{exchange}
[crl]
preload = ["{cdp}"]
[limits]
{limits}
[service_account]
user = "svc_awseg"
password_file = "svc.password"
[kcd]
target_spn = "HTTP/{EXCHANGE_HOST}"
[[domain]]
realm = "LAB.TEST"
domain_controllers = ["127.0.0.1:1"]
"#,
            gw = self.addr,
            cdp = self.cdp,
        );
        let path = self.dir.join("gateway.toml");
        std::fs::write(&path, toml).expect("write");
        let cfg = GatewayConfig::load(&path).expect("config");
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        self._stop = tx;
        let events: Arc<dyn kcd_client::EventSink> = self.events.clone();
        tokio::spawn(kcd_gateway::server::serve(path, cfg, gw_l, events, Some(Arc::new(FixedTicket)), rx, Vec::new()));
        // Until the CRL is in: a plain request answered 200.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let a = self.send(&self.alice.clone(), &post("WARMUP", "")).await;
            if a.status() == Some(200) {
                break;
            }
            assert!(Instant::now() < deadline, "the gateway never answered 200: {}", a.text);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self
    }

    /// Bytes over TLS as alice; the answer read until the gateway closes or 3 s pass.
    async fn send(&self, cfg: &Arc<rustls::ClientConfig>, bytes: &[u8]) -> Answer {
        self.send_timed(cfg, &[(bytes.to_vec(), Duration::ZERO)], Duration::from_secs(3), 1).await
    }

    /// Pieces written with a pause before each, then read until `want` whole responses came,
    /// the gateway closed, or `wait` passed.
    async fn send_timed(&self, cfg: &Arc<rustls::ClientConfig>, pieces: &[(Vec<u8>, Duration)], wait: Duration, want: usize) -> Answer {
        let t0 = Instant::now();
        let tcp = TcpStream::connect(self.addr).await.expect("connect");
        let conn = tokio_rustls::TlsConnector::from(cfg.clone());
        let mut tls = match conn.connect(ServerName::try_from("gw.lab.test").expect("name"), tcp).await {
            Ok(t) => t,
            Err(e) => return Answer { text: format!("TLS: {e}"), closed: true, took: t0.elapsed() },
        };
        let mut write_failed = false;
        for (p, pause) in pieces {
            tokio::time::sleep(*pause).await;
            if tls.write_all(p).await.is_err() || tls.flush().await.is_err() {
                write_failed = true;
                break;
            }
        }
        let mut out = Vec::new();
        let mut b = vec![0u8; 65536];
        let deadline = tokio::time::Instant::now() + wait;
        let mut closed = write_failed;
        loop {
            match tokio::time::timeout_at(deadline, tls.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Ok(Ok(n)) => {
                    out.extend_from_slice(&b[..n]);
                    if responses_complete(&out) >= want {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        Answer { text: String::from_utf8_lossy(&out).into_owned(), closed, took: t0.elapsed() }
    }

    fn requests_since(&self, n: usize) -> Vec<Req> {
        self.rec.lock().expect("record").complete[n..].to_vec()
    }

    fn counts(&self) -> (usize, usize, usize) {
        let r = self.rec.lock().expect("record");
        (r.complete.len(), r.incomplete.len(), r.malformed.len())
    }

    fn events(&self) -> Vec<Value> {
        self.events.0.lock().expect("events").iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// The gateway's request events after the first `n`.
    fn request_events_since(&self, n: usize) -> Vec<Value> {
        self.request_events()[n..].to_vec()
    }

    fn request_events(&self) -> Vec<Value> {
        self.events().into_iter().filter(|e| e["event_type"] == "gateway" && e["gateway"]["step"] == "request").map(|e| e["gateway"].clone()).collect()
    }
}

/// Whole responses (with Content-Length bodies) at the front of `b`.
fn responses_complete(mut b: &[u8]) -> usize {
    let mut n = 0;
    while let Some(end) = b.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&b[..end]).to_lowercase();
        let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        if b.len() < end + 4 + len {
            break;
        }
        let interim = head.starts_with("http/1.1 1");
        b = &b[end + 4 + len..];
        if !interim {
            n += 1;
        }
    }
    n
}

struct Answer {
    text: String,
    closed: bool,
    took: Duration,
}

impl Answer {
    /// The status of the first final (not 1xx) response.
    fn status(&self) -> Option<u16> {
        self.statuses().into_iter().find(|s| *s >= 200)
    }
    /// The statuses of the responses read, in order (framed by Content-Length).
    fn statuses(&self) -> Vec<u16> {
        let mut out = Vec::new();
        let mut b = self.text.as_bytes();
        while let Some(end) = b.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&b[..end]).to_lowercase();
            if let Some(s) = head.split(' ').nth(1).and_then(|s| s.parse().ok()) {
                out.push(s);
            }
            let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            b = &b[(end + 4 + len).min(b.len())..];
        }
        out
    }
}

fn post(device: &str, extra: &str) -> Vec<u8> {
    format!("POST /Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId={device}&DeviceType=Test HTTP/1.1\r\nHost: gw.lab.test\r\n{extra}Content-Length: 0\r\n\r\n").into_bytes()
}

// ---------------------------------------------------------------------------------------
// The cases.

/// What the backend must have read for a case.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reached {
    /// No request at all (not even a partial one).
    Nothing,
    /// Exactly one complete, well-formed request, checked by `check`.
    One,
    /// No complete request; a partial one cut off by the gateway is allowed.
    NoComplete,
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    /// The first status the device reads; None: closed without an answer.
    status: Option<u16>,
    /// The reason in the gateway's event ("forwarded" for a forwarded request).
    reason: &'static str,
    reached: Reached,
    check: fn(&Req) -> Result<(), String>,
}

fn none(_: &Req) -> Result<(), String> {
    Ok(())
}

fn base(r: &Req) -> Result<(), String> {
    let auth = r.all("authorization");
    if auth != [negotiate().as_str()] {
        return Err(format!("Authorization {auth:?}"));
    }
    // Exchange's authority as configured (the backend's loopback address)
    if r.all("host").len() != 1 || !r.all("host")[0].starts_with("127.0.0.1:") {
        return Err(format!("Host {:?}", r.all("host")));
    }
    if r.all("x-forwarded-for") != ["127.0.0.1"] {
        return Err(format!("X-Forwarded-For {:?}", r.all("x-forwarded-for")));
    }
    if !r.target.starts_with("/Microsoft-Server-ActiveSync") {
        return Err(format!("target {}", r.target));
    }
    Ok(())
}

fn req(head: &str, body: &str) -> Vec<u8> {
    format!("{head}\r\n\r\n{body}").into_bytes()
}

const EAS: &str = "POST /Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=HOSTILE&DeviceType=Test HTTP/1.1\r\nHost: gw.lab.test";

fn cases() -> Vec<Case> {
    let smuggled = "POST /owa/smuggled HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n";
    let mut v = vec![
        // RFC 9112 6.1: a server may refuse a request with both, and must close after
        // answering; hyper alone would drop Content-Length and forward it chunked.
        Case {
            name: "CL.TE: refused 400 ambiguous_length and closed, nothing reaches the backend",
            bytes: req(&format!("{EAS}\r\nContent-Length: {}\r\nTransfer-Encoding: chunked", 5 + smuggled.len()), &format!("0\r\n\r\n{smuggled}")),
            status: Some(400),
            reason: "ambiguous_length",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "TE.CL: refused 400 ambiguous_length and closed, nothing reaches the backend",
            bytes: req(&format!("{EAS}\r\nTransfer-Encoding: chunked\r\nContent-Length: 4"), &format!("{:x}\r\n{smuggled}\r\n0\r\n\r\n", smuggled.len())),
            status: Some(400),
            reason: "ambiguous_length",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "CL.TE with Content-Length 0 and an empty chunked body: refused all the same",
            bytes: req(&format!("{EAS}\r\ncontent-length: 0\r\ntransfer-encoding: chunked"), "0\r\n\r\n"),
            status: Some(400),
            reason: "ambiguous_length",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "TE.TE: 'Transfer-Encoding : chunked' (space before the colon)",
            bytes: req(&format!("{EAS}\r\nTransfer-Encoding : chunked\r\nContent-Length: 5"), "0\r\n\r\n"),
            status: Some(400),
            reason: "bad_request",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "TE.TE: xchunked",
            bytes: req(&format!("{EAS}\r\nTransfer-Encoding: xchunked\r\nContent-Length: 5"), "0\r\n\r\n"),
            status: Some(400),
            reason: "bad_request",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "TE.TE: 'chunked, identity' (chunked not last)",
            bytes: req(&format!("{EAS}\r\nTransfer-Encoding: chunked, identity"), "0\r\n\r\n"),
            status: Some(400),
            reason: "bad_request",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "TE.TE: two Transfer-Encoding lines, chunked then identity",
            bytes: req(&format!("{EAS}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity"), "0\r\n\r\n"),
            status: Some(400),
            reason: "bad_request",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "TE on HTTP/1.0",
            bytes: req("POST /Microsoft-Server-ActiveSync?Cmd=Sync HTTP/1.0\r\nHost: gw\r\nTransfer-Encoding: chunked", "3\r\nabc\r\n0\r\n\r\n"),
            status: Some(400),
            reason: "bad_request",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "two differing Content-Lengths",
            bytes: req(&format!("{EAS}\r\nContent-Length: 3\r\nContent-Length: 5"), "abcde"),
            status: Some(400),
            reason: "bad_request",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "comma-listed Content-Length '3, 5'",
            bytes: req(&format!("{EAS}\r\nContent-Length: 3, 5"), "abcde"),
            status: Some(400),
            reason: "bad_request",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "Content-Length with a sign",
            bytes: req(&format!("{EAS}\r\nContent-Length: +5"), "abcde"),
            status: Some(400),
            reason: "bad_request",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "Content-Length over u64",
            bytes: req(&format!("{EAS}\r\nContent-Length: 184467440737095516160"), "abcde"),
            status: Some(400),
            reason: "bad_request",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "chunk size overflowing u64",
            bytes: req(&format!("{EAS}\r\nTransfer-Encoding: chunked"), "fffffffffffffffff1\r\nabc\r\n0\r\n\r\n"),
            status: Some(400),
            reason: "bad_body",
            reached: Reached::NoComplete,
            check: none,
        },
        Case {
            name: "chunk extensions dropped, data kept",
            bytes: req(&format!("{EAS}\r\nTransfer-Encoding: chunked"), "5;name=\"x\\\"y\"\r\nhello\r\n0;z\r\n\r\n"),
            status: Some(200),
            reason: "forwarded",
            reached: Reached::One,
            check: |r| {
                base(r)?;
                if r.body != b"hello" {
                    return Err(format!("body {:?}", String::from_utf8_lossy(&r.body)));
                }
                Ok(())
            },
        },
        Case {
            name: "obs-fold",
            bytes: req(&format!("{EAS}\r\nX-A: 1\r\n folded: 2\r\nContent-Length: 0"), ""),
            status: Some(400),
            reason: "bad_request",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "bare LF line ends: read, forwarded with CRLF",
            bytes: b"POST /Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=LF HTTP/1.1\nHost: gw\nX-Eas: a\nContent-Length: 3\n\nabc".to_vec(),
            status: Some(200),
            reason: "forwarded",
            reached: Reached::One,
            check: |r| {
                base(r)?;
                if r.body != b"abc" || r.all("x-eas") != ["a"] {
                    return Err(format!("body {:?} x-eas {:?}", r.body, r.all("x-eas")));
                }
                Ok(())
            },
        },
        Case {
            name: "bare CR inside a value (header injection)",
            bytes: req(&format!("{EAS}\r\nX-A: a\rTransfer-Encoding: chunked\r\nContent-Length: 0"), ""),
            status: Some(400),
            reason: "bad_request",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "NUL in a header value",
            bytes: req(&format!("{EAS}\r\nX-A: a\0b\r\nContent-Length: 0"), ""),
            status: Some(400),
            reason: "bad_request",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "NUL in a header name",
            bytes: req(&format!("{EAS}\r\nX-\0A: a\r\nContent-Length: 0"), ""),
            status: Some(400),
            reason: "bad_request",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "absolute-form target with another host: origin-form and Exchange's Host forwarded",
            bytes: req("POST http://evil.example/Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=ABS HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 0", ""),
            status: Some(200),
            reason: "forwarded",
            reached: Reached::One,
            check: |r| {
                base(r)?;
                if r.target != "/Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=ABS" || r.headers.iter().any(|(_, v)| v.contains("evil")) {
                    return Err(format!("target {} headers {:?}", r.target, r.headers));
                }
                Ok(())
            },
        },
        Case {
            name: "authority-form CONNECT",
            bytes: req("CONNECT exchange.lab.test:443 HTTP/1.1\r\nHost: exchange.lab.test:443", ""),
            status: Some(405),
            reason: "method_not_allowed",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "asterisk-form OPTIONS *",
            bytes: req("OPTIONS * HTTP/1.1\r\nHost: gw", ""),
            status: Some(404),
            reason: "path_refused",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "TRACE",
            bytes: req("TRACE /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: gw", ""),
            status: Some(405),
            reason: "method_not_allowed",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "an unknown method",
            bytes: req("PROPFIND /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: gw\r\nContent-Length: 0", ""),
            status: Some(501),
            reason: "method_unknown",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "the device's own Authorization and Proxy-Authorization",
            bytes: req(&format!("{EAS}\r\nAuthorization: Basic YWRtaW5pc3RyYXRvcjpzZWNyZXQ=\r\nProxy-Authorization: Basic eA==\r\nContent-Length: 0"), ""),
            status: Some(200),
            reason: "forwarded",
            reached: Reached::One,
            check: |r| {
                base(r)?;
                if !r.all("proxy-authorization").is_empty() {
                    return Err("Proxy-Authorization passed".into());
                }
                Ok(())
            },
        },
        Case {
            name: "'Connection: close, Authorization' with a device Authorization",
            bytes: req(&format!("{EAS}\r\nConnection: close, Authorization\r\nAuthorization: Negotiate ZGV2aWNl\r\nContent-Length: 0"), ""),
            status: Some(200),
            reason: "forwarded",
            reached: Reached::One,
            check: |r| {
                base(r)?;
                if !r.all("connection").is_empty() && r.all("connection") != ["keep-alive"] {
                    return Err(format!("Connection {:?}", r.all("connection")));
                }
                Ok(())
            },
        },
        Case {
            name: "spoofed X-Forwarded-*, Forwarded, X-Real-IP: the gateway's own",
            bytes: req(&format!("{EAS}\r\nX-Forwarded-For: 10.6.6.6\r\nX-Forwarded-For: 10.7.7.7\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: http\r\nForwarded: for=10.6.6.6\r\nX-Real-IP: 10.6.6.6\r\nTrue-Client-IP: 10.6.6.6\r\nContent-Length: 0"), ""),
            status: Some(200),
            reason: "forwarded",
            reached: Reached::One,
            check: |r| {
                base(r)?;
                let bad: Vec<_> = r.headers.iter().filter(|(_, v)| v.contains("10.6.6.6") || v.contains("10.7.7.7") || v == "evil").collect();
                if !bad.is_empty() || r.all("x-forwarded-proto") != ["https"] || !r.all("x-forwarded-host").is_empty() {
                    return Err(format!("{bad:?} proto {:?}", r.all("x-forwarded-proto")));
                }
                Ok(())
            },
        },
        Case {
            name: "hop-by-hop headers (named by Connection, Keep-Alive, TE, Trailer) removed",
            bytes: req(&format!("{EAS}\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=600\r\nTE: trailers\r\nTrailer: X-T\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\nContent-Length: 0"), ""),
            status: Some(200),
            reason: "forwarded",
            reached: Reached::One,
            check: |r| {
                base(r)?;
                for h in ["x-hop", "keep-alive", "te", "trailer", "proxy-connection"] {
                    if !r.all(h).is_empty() {
                        return Err(format!("{h} passed"));
                    }
                }
                if r.all("x-kept") != ["yes"] {
                    return Err("an end-to-end header was lost".into());
                }
                Ok(())
            },
        },
        Case {
            name: "Upgrade: h2c",
            bytes: req("GET /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA", ""),
            status: Some(400),
            reason: "upgrade_refused",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "Upgrade: websocket",
            bytes: req("GET /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13", ""),
            status: Some(400),
            reason: "upgrade_refused",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "HTTP/2 prior-knowledge preface",
            bytes: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00".to_vec(),
            status: None,
            reason: "bad_request",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "HTTP/1.0: forwarded as HTTP/1.1 with Exchange's Host",
            bytes: req("POST /Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=H10 HTTP/1.0\r\nContent-Length: 2", "ab"),
            status: Some(200),
            reason: "forwarded",
            reached: Reached::One,
            check: |r| {
                base(r)?;
                if r.body != b"ab" {
                    return Err(format!("body {:?}", r.body));
                }
                Ok(())
            },
        },
        Case {
            name: "HTTP/0.9 request line",
            bytes: b"GET /Microsoft-Server-ActiveSync\r\n\r\n".to_vec(),
            status: Some(400),
            reason: "bad_request",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "HTTP/1.2",
            bytes: req("POST /Microsoft-Server-ActiveSync HTTP/1.2\r\nHost: gw\r\nContent-Length: 0", ""),
            status: Some(400),
            reason: "bad_request",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "garbage bytes",
            bytes: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xff\xfe\r\n\r\n".to_vec(),
            status: Some(400),
            reason: "bad_request",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "no Host in HTTP/1.1",
            bytes: req("POST /Microsoft-Server-ActiveSync?Cmd=Sync HTTP/1.1\r\nContent-Length: 0", ""),
            status: Some(400),
            reason: "bad_request",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "two Host lines",
            bytes: req(&format!("{EAS}\r\nHost: exchange.lab.test\r\nContent-Length: 0"), ""),
            status: Some(400),
            reason: "bad_request",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "a body on GET",
            bytes: req("GET /Microsoft-Server-ActiveSync?Cmd=Sync HTTP/1.1\r\nHost: gw\r\nContent-Length: 5", "abcde"),
            status: Some(400),
            reason: "body_on_get",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "Expect: 100-continue with the body sent at once",
            bytes: req(&format!("{EAS}\r\nExpect: 100-continue\r\nContent-Length: 5"), "hello"),
            status: Some(200),
            reason: "forwarded",
            reached: Reached::One,
            check: |r| {
                base(r)?;
                if r.body != b"hello" || !r.all("expect").is_empty() {
                    return Err(format!("body {:?} expect {:?}", r.body, r.all("expect")));
                }
                Ok(())
            },
        },
        Case {
            name: "101 headers",
            bytes: req(&format!("{EAS}\r\n{}Content-Length: 0", (0..100).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()), ""),
            status: Some(431),
            reason: "header_too_large",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "a 70 KB header",
            bytes: req(&format!("{EAS}\r\nX-Big: {}\r\nContent-Length: 0", "a".repeat(70_000)), ""),
            status: Some(431),
            reason: "header_too_large",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "a 20 KB query",
            bytes: req(&format!("POST /Microsoft-Server-ActiveSync?Cmd=Sync&X={} HTTP/1.1\r\nHost: gw\r\nContent-Length: 0", "a".repeat(20_000)), ""),
            status: Some(414),
            reason: "uri_too_long",
            reached: Reached::Nothing,
            check: none,
        },
        Case {
            name: "Content-Length over limits.body_bytes",
            bytes: req(&format!("{EAS}\r\nContent-Length: {}", 11 << 20), ""),
            status: Some(413),
            reason: "body_too_large",
            reached: Reached::Nothing,
            check: none,
        },
    ];
    for (label, path) in [
        ("dot segments", "/Microsoft-Server-ActiveSync/../owa/"),
        ("percent-encoded dots", "/Microsoft-Server-ActiveSync/%2e%2e/ecp/"),
        ("percent-encoded slash", "/Microsoft-Server-ActiveSync%2f..%2fews/Exchange.asmx"),
        ("backslash", "/Microsoft-Server-ActiveSync\\..\\owa"),
        ("double slash", "//Microsoft-Server-ActiveSync"),
        ("percent-encoded letter", "/Microsoft-Server-ActiveSyn%63"),
        ("overlong UTF-8 dot", "/Microsoft-Server-ActiveSync/%c0%ae%c0%ae/owa"),
        ("another application", "/ews/Exchange.asmx"),
        ("a prefix", "/Microsoft-Server-ActiveSyncX"),
    ] {
        let name: &'static str = Box::leak(format!("path: {label} ({path})").into_boxed_str());
        v.push(Case {
            name,
            bytes: req(&format!("POST {path}?Cmd=Sync HTTP/1.1\r\nHost: gw\r\nContent-Length: {}", smuggled.len()), smuggled),
            status: Some(404),
            reason: "path_refused",
            reached: Reached::Nothing,
            check: none,
        });
    }
    v
}

fn lines(a: &Answer) -> String {
    a.text.lines().take(3).collect::<Vec<_>>().join(" | ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_one_connection_each() {
    let gw = Gw::start("header_read_timeout_ms = 2000\nbody_idle_timeout_ms = 1000").await;
    let mut failures = Vec::new();
    let all = cases();
    let total = all.len();
    for c in all {
        let (n, inc, bad) = gw.counts();
        let raw0: usize = gw.rec.lock().expect("r").raw.iter().map(Vec::len).sum();
        let ne = gw.request_events().len();
        // A refusal that closes: read on until the gateway closes (an idle connection
        // would be closed only at the header read timeout, 2 s).
        let a = if c.reason == "ambiguous_length" {
            gw.send_timed(&gw.alice, &[(c.bytes.clone(), Duration::ZERO)], Duration::from_secs(3), 2).await
        } else {
            gw.send(&gw.alice, &c.bytes).await
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        let got = gw.requests_since(n);
        let (_, inc2, bad2) = gw.counts();
        let evs = gw.request_events_since(ne);
        let mut why = Vec::new();
        if a.status() != c.status {
            why.push(format!("device read {:?} ({}), want {:?}", a.status(), lines(&a), c.status));
        }
        if c.status.is_none() && !a.closed {
            why.push("the connection was not closed".into());
        }
        if c.reason == "ambiguous_length" && !(a.closed && a.took < Duration::from_millis(1500) && a.text.to_lowercase().contains("\r\nconnection: close\r\n")) {
            why.push(format!("not answered with connection: close and closed at once (closed {} after {:?})", a.closed, a.took));
        }
        match evs.as_slice() {
            [e] => {
                let r = if e["outcome"] == "forwarded" { "forwarded" } else { e["reason"].as_str().unwrap_or("") };
                if r != c.reason || (c.reason != "forwarded" && e["status"].as_u64().map(|s| s as u16) != c.status) {
                    why.push(format!("event {e}, want reason {} status {:?}", c.reason, c.status));
                }
            }
            _ => why.push(format!("{} events, want 1: {evs:?}", evs.len())),
        }
        if bad2 != bad {
            why.push(format!("the backend read a MALFORMED request: {:?}", &gw.rec.lock().expect("r").malformed[bad..]));
        }
        match c.reached {
            Reached::Nothing if !got.is_empty() || inc2 != inc => why.push(format!("the backend read {} requests, {} partial", got.len(), inc2 - inc)),
            Reached::NoComplete if !got.is_empty() => why.push(format!("the backend read {} complete requests", got.len())),
            Reached::One if got.len() != 1 => why.push(format!("the backend read {} requests: {got:?}", got.len())),
            Reached::One => {
                if let Err(e) = (c.check)(&got[0]) {
                    why.push(format!("the backend's request: {e}: {:?}", got[0]));
                }
            }
            _ => {}
        }
        let all_raw: Vec<u8> = gw.rec.lock().expect("r").raw.concat();
        if String::from_utf8_lossy(&all_raw[raw0.min(all_raw.len())..]).contains("smuggled") && !c.name.starts_with("TE.CL") {
            why.push("the smuggled request's bytes reached the backend".into());
        }
        if why.is_empty() {
            eprintln!("PASS {}", c.name);
        } else {
            eprintln!("FAIL {}: {}", c.name, why.join("; "));
            failures.push(format!("{}: {}", c.name, why.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{} of {total} cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowness_and_pipelining() {
    let gw = Gw::start("header_read_timeout_ms = 1000\nbody_idle_timeout_ms = 1000").await;
    let mut checks = Checks::default();
    let mut check = |what: &str, ok: bool, detail: String| checks.check(what, ok, detail);

    // Header drip (slowloris): a header line every 300 ms; answered 408 and closed at the
    // header read timeout (1 s) whatever keeps arriving, and an event saying why.
    let (n, inc, _) = gw.counts();
    let ne = gw.request_events().len();
    let mut pieces = vec![(b"POST /Microsoft-Server-ActiveSync?Cmd=Sync HTTP/1.1\r\n".to_vec(), Duration::ZERO)];
    pieces.extend((0..20).map(|i| (format!("X-Drip-{i}: x\r\n").into_bytes(), Duration::from_millis(300))));
    let a = gw.send_timed(&gw.alice, &pieces, Duration::from_secs(8), 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let evs = gw.request_events_since(ne);
    check(
        "header drip: 408 at the header read timeout, closed, event header_timeout (408, why), backend read nothing",
        a.closed && a.took < Duration::from_secs(5) && a.status() == Some(408) && a.statuses().len() == 1
            && a.text.contains("reason: header_timeout") && gw.counts().0 == n && gw.counts().1 == inc
            && evs.len() == 1 && evs[0]["reason"] == "header_timeout" && evs[0]["status"] == 408
            && evs[0]["detail"].as_str().is_some_and(|d| d.contains("did not arrive within 1000 ms") && d.contains("answered 408")),
        format!("{:?} {:?} {evs:?}", a.took, a.text),
    );

    // A connection that sends nothing after TLS: the same timeout, 408 and event (read
    // until the gateway closes: no second answer).
    let ne = gw.request_events().len();
    let a = gw.send_timed(&gw.alice, &[], Duration::from_secs(5), 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let evs = gw.request_events_since(ne);
    check("silent after TLS: 408 at the header read timeout, event header_timeout", a.closed && a.took < Duration::from_secs(3) && a.statuses() == [408] && evs.len() == 1 && evs[0]["reason"] == "header_timeout" && evs[0]["status"] == 408, format!("{:?} {:?} {evs:?}", a.took, a.text));

    // An idle keep-alive connection after a request: closed at the header read timeout
    // without a 408 (no request was begun) and without a refusal event.
    let ne = gw.request_events().len();
    let a = gw.send_timed(&gw.alice, &[(post("IDLE1", ""), Duration::ZERO)], Duration::from_secs(5), 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let evs = gw.request_events_since(ne);
    check(
        "idle keep-alive: one answer, then closed at the header read timeout without 408 or refusal event",
        a.closed && a.statuses().len() == 1 && a.status() != Some(408) && evs.len() == 1 && evs[0]["outcome"] != "refused",
        format!("{:?} {:?} {evs:?}", a.statuses(), a.text),
    );

    // Header drip on a keep-alive connection: the first request answered, then a second
    // head begun and dripped. Answered 408 + close and said in an event, like a first head;
    // the backend reads the first request and nothing of the second.
    let (n, inc, _) = gw.counts();
    let ne = gw.request_events().len();
    let mut pieces = vec![
        (post("KADRIP1", ""), Duration::ZERO),
        (b"POST /Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=KADRIP2&DeviceType=Test HTTP/1.1\r\n".to_vec(), Duration::from_millis(300)),
    ];
    pieces.extend((0..12).map(|i| (format!("X-Drip-{i}: x\r\n").into_bytes(), Duration::from_millis(300))));
    let a = gw.send_timed(&gw.alice, &pieces, Duration::from_secs(8), 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let evs = gw.request_events_since(ne);
    let second_seen = gw.rec.lock().expect("record").raw.iter().any(|r| r.windows(7).any(|w| w == b"KADRIP2"));
    check(
        "header drip on keep-alive: 200, then 408 header_timeout and closed; backend read the first request only",
        a.closed && a.took < Duration::from_secs(5) && a.statuses() == [200, 408] && a.text.contains("reason: header_timeout")
            && gw.counts().0 == n + 1 && gw.counts().1 == inc && !second_seen
            && evs.len() == 2 && evs[0]["outcome"] != "refused" && evs[1]["reason"] == "header_timeout" && evs[1]["status"] == 408,
        format!("{:?} {:?} {:?} second at backend: {second_seen} {evs:?}", a.took, a.statuses(), a.text),
    );

    // The same, the second head begun in the very write of the first request (read with it,
    // before the first answer) and never finished: 200, then 408 at the header timeout.
    let (n, inc, _) = gw.counts();
    let ne = gw.request_events().len();
    let mut bytes = post("KAPART1", "");
    bytes.extend_from_slice(b"POST /Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=KAPART2&DeviceType=Test HTTP/1.1\r\nHost: gw");
    let a = gw.send_timed(&gw.alice, &[(bytes, Duration::ZERO)], Duration::from_secs(5), 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let evs = gw.request_events_since(ne);
    let second_seen = gw.rec.lock().expect("record").raw.iter().any(|r| r.windows(7).any(|w| w == b"KAPART2"));
    check(
        "second head begun with the first request, never finished: 200, then 408 header_timeout; backend read the first request only",
        a.statuses() == [200, 408] && gw.counts().0 == n + 1 && gw.counts().1 == inc && !second_seen
            && evs.len() == 2 && evs[1]["reason"] == "header_timeout" && evs[1]["status"] == 408,
        format!("{:?} {:?} second at backend: {second_seen} {evs:?}", a.statuses(), a.text),
    );

    // Body drip that stops: 408 after the body idle timeout (1 s); the backend completes
    // no request (the head had started on its way: bodies are streamed).
    let (n, _, bad) = gw.counts();
    let ne = gw.request_events().len();
    let pieces = vec![
        (format!("{EAS}\r\nContent-Length: 100\r\n\r\nabc").into_bytes(), Duration::ZERO),
        (b"def".to_vec(), Duration::from_millis(500)),
    ];
    let a = gw.send_timed(&gw.alice, &pieces, Duration::from_secs(6), 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let evs = gw.request_events_since(ne);
    check(
        "slow body: 408 body_timeout, the backend completed no request",
        a.status() == Some(408) && evs.len() == 1 && evs[0]["reason"] == "body_timeout" && gw.counts().0 == n && gw.counts().2 == bad,
        format!("{:?} {evs:?} {:?}", a.text, gw.requests_since(n)),
    );

    // A chunked body whose last chunk never comes, the device closing: 400 bad_body in the
    // event (not Exchange's fault), no complete request at the backend.
    let (n, _, bad) = gw.counts();
    let ne = gw.request_events().len();
    {
        let tcp = TcpStream::connect(gw.addr).await.expect("connect");
        let mut tls = tokio_rustls::TlsConnector::from(gw.alice.clone())
            .connect(ServerName::try_from("gw.lab.test").expect("name"), tcp)
            .await
            .expect("tls");
        let _ = tls.write_all(format!("{EAS}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n").as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = tls.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), tls.read_to_end(&mut sink)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let evs = gw.request_events_since(ne);
    check(
        "missing last chunk, device closes: event bad_body 400, the backend completed no request",
        evs.len() == 1 && evs[0]["reason"] == "bad_body" && evs[0]["status"] == 400 && gw.counts().0 == n && gw.counts().2 == bad,
        format!("{evs:?} {:?}", gw.requests_since(n)),
    );

    // Pipelining: three requests in one write; three answers in order, three requests at
    // the backend, each with its own body, none merged or split.
    let (n, _, bad) = gw.counts();
    let mut bytes = Vec::new();
    for (i, body) in ["one", "second", "3"].iter().enumerate() {
        bytes.extend_from_slice(format!("POST /Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=PIPE{i} HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    }
    let a = gw.send_timed(&gw.alice, &[(bytes, Duration::ZERO)], Duration::from_secs(3), 3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = gw.requests_since(n);
    let shape: Vec<(String, String)> = got.iter().map(|r| (r.target.clone(), String::from_utf8_lossy(&r.body).into_owned())).collect();
    let want: Vec<(String, String)> = ["one", "second", "3"]
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("/Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=PIPE{i}"), b.to_string()))
        .collect();
    check("pipelining: 200 200 200, the backend read the three requests as sent", a.statuses() == [200, 200, 200] && shape == want && gw.counts().2 == bad, format!("{:?} {shape:?}", a.statuses()));

    // Pipelined in one write: a chunked request (an extension, a trailer, a body that reads
    // like a head with both lengths), a sized one, then one with both Content-Length and
    // Transfer-Encoding: 200, 200, then 400 ambiguous_length and closed; the backend reads the
    // first two whole and nothing of the third.
    let (n, inc, bad) = gw.counts();
    let ne = gw.request_events().len();
    let inner = "POST /owa/inner HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut bytes = format!(
        "POST /Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=AMB0 HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n{:x};x=1\r\n{inner}\r\n0\r\nX-Trailer: t\r\n\r\n",
        inner.len()
    );
    bytes.push_str("POST /Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=AMB1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\nabc");
    bytes.push_str("POST /Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=AMB2 HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    // Read until the gateway closes (an idle connection would be closed only at the header
    // read timeout, 1 s).
    let a = gw.send_timed(&gw.alice, &[(bytes.into_bytes(), Duration::ZERO)], Duration::from_secs(3), 4).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got: Vec<String> = gw.requests_since(n).iter().map(|r| r.target.clone()).collect();
    let evs = gw.request_events_since(ne);
    let third_seen = gw.rec.lock().expect("record").raw.iter().any(|r| r.windows(4).any(|w| w == b"AMB2"));
    check(
        "pipelined chunked, sized, then both lengths: 200 200 400 ambiguous_length, closed; the backend read the first two only",
        a.statuses() == [200, 200, 400] && a.closed && a.took < Duration::from_millis(800) && got.len() == 2 && got[0].contains("AMB0") && got[1].contains("AMB1")
            && !third_seen && gw.counts().1 == inc && gw.counts().2 == bad
            && evs.len() == 3 && evs[2]["reason"] == "ambiguous_length" && evs[2]["status"] == 400,
        format!("{:?} closed {} after {:?} {got:?} third at backend {third_seen} {evs:?}", a.statuses(), a.closed, a.took),
    );

    // Pipelined, the middle one refused (another path) with a body that is itself a
    // request: the body is read as a body (or the connection closed), never forwarded.
    let (n, _, bad) = gw.counts();
    let inner = "POST /Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=INNER HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n";
    let bytes = format!(
        "POST /Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=P1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\nPOST /owa/ HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n{inner}POST /Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=P3 HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n",
        inner.len()
    );
    let a = gw.send_timed(&gw.alice, &[(bytes.into_bytes(), Duration::ZERO)], Duration::from_secs(3), 3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let targets: Vec<String> = gw.requests_since(n).iter().map(|r| r.target.clone()).collect();
    let st = a.statuses();
    check(
        "pipelined with a refused request whose body is a request: the body never becomes a request",
        st.len() >= 2 && st[0] == 200 && st[1] == 404 && !targets.iter().any(|t| t.contains("INNER") || t.contains("owa")) && targets.first().is_some_and(|t| t.ends_with("P1")) && gw.counts().2 == bad,
        format!("{st:?} {targets:?}"),
    );
    eprintln!("pipelined with a refused request: device read {st:?}, backend read {targets:?}");

    // Exchange's response head: one of 3.5 KiB is forwarded whole; one over the 4 KiB read
    // buffer is answered 502 and said in an event, not cut short.
    let send_pad = |pad: usize| {
        let bytes = format!("POST /Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=PAD&DeviceType=Test&pad={pad} HTTP/1.1\r\nHost: gw.lab.test\r\nContent-Length: 0\r\n\r\n");
        let gw = &gw;
        async move { gw.send(&gw.alice, bytes.as_bytes()).await }
    };
    let a = send_pad(3500).await;
    let padded = a.text.lines().find_map(|l| l.strip_prefix("x-pad: ").or_else(|| l.strip_prefix("X-Pad: "))).map(str::len);
    check("a 3.5 KiB response head from Exchange: 200, the header forwarded whole", a.status() == Some(200) && padded == Some(3500), format!("{padded:?} {}", &a.text[..a.text.len().min(200)]));
    let ne = gw.request_events().len();
    let a = send_pad(5000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let evs = gw.request_events_since(ne);
    check(
        "a 5 KiB response head from Exchange: 502 and an event naming the head",
        a.status() == Some(502)
            && evs.iter().any(|e| {
                e["status"] == 502
                    && e["reason"] == "exchange_bad_response"
                    && e["finding"] == "exchange.bad_response"
                    && e["detail"].as_str().is_some_and(|d| d.contains("response head is larger than") && d.contains("exchange.response_head_bytes (4096)"))
            }),
        format!("{:?} {evs:?}", a.text),
    );

    // Exchange's response framing as RFC 9112 has it: chunked (extensions, trailers),
    // an interim 100 before the response, a body until close; what is ambiguous (both
    // framings, two lengths) or a protocol switch is a 502, never passed on.
    let send_resp = |name: &'static str| {
        let bytes = format!("POST /Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=RESP&DeviceType=Test&resp={name} HTTP/1.1\r\nHost: gw.lab.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let gw = &gw;
        async move { gw.send(&gw.alice, bytes.as_bytes()).await }
    };
    for (name, want) in [("chunked", "hello world"), ("continue", "after1"), ("close", "until-close")] {
        let a = send_resp(name).await;
        check(
            &format!("Exchange's response {name}: 200 to the device with the body decoded"),
            a.status() == Some(200) && body_of(&a.text) == want,
            format!("{:?}", a.text),
        );
    }
    for name in ["clte", "twocl", "switch", "gzip"] {
        let ne = gw.request_events().len();
        let a = send_resp(name).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let evs = gw.request_events_since(ne);
        check(
            &format!("Exchange's response {name}: 502 exchange_bad_response, nothing of it passed on"),
            a.status() == Some(502) && !a.text.contains("abc") && evs.iter().any(|e| e["reason"] == "exchange_bad_response"),
            format!("{:?} {evs:?}", a.text),
        );
    }

    // Exchange answering before it has the whole body (a refusal of a large upload): the
    // answer reaches the device at once, while the device is still to send the rest, and
    // the rest is not sent on.
    let (ok, detail) = early_answer(&gw).await;
    check("Exchange's early answer (413 before the body's end): the device has it within 2 s, its body still unsent", ok, detail);

    // Connections held by a long-poll-like request do not stop other devices.
    let held = gw.send(&gw.alice, &post("HOLD", "")).await;
    check("sanity: the gateway still forwards", held.status() == Some(200), held.text.clone());
    checks.assert_all();
}

/// The body of the device's response, which the gateway frames again: chunked, or by length.
fn body_of(text: &str) -> String {
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or(("", ""));
    if !head.to_lowercase().contains("transfer-encoding: chunked") {
        return rest.to_string();
    }
    let mut out = String::new();
    let mut r = rest;
    while let Some((size, after)) = r.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        r = after[n..].strip_prefix("\r\n").unwrap_or("");
    }
    out
}

/// A POST of 300,000 bytes to which Exchange answers 413 as soon as it has the head: whether
/// the device, having sent 100,000 bytes of the body, has that answer within 2 s; what it read.
async fn early_answer(gw: &Gw) -> (bool, String) {
    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(gw.alice.clone()).connect(ServerName::try_from("gw.lab.test").expect("name"), tcp).await.expect("TLS");
    let (mut rd, mut wr) = tokio::io::split(tls);
    let head = "POST /Microsoft-Server-ActiveSync?Cmd=SendMail&DeviceId=EARLY&DeviceType=Test&early=1 HTTP/1.1\r\nHost: gw.lab.test\r\nContent-Length: 300000\r\n\r\n";
    let t0 = Instant::now();
    wr.write_all(head.as_bytes()).await.expect("head");
    wr.write_all(&vec![b'x'; 100_000]).await.expect("first part");
    wr.flush().await.expect("flush");
    let mut got = Vec::new();
    let mut b = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !String::from_utf8_lossy(&got).contains("too big") {
        match tokio::time::timeout_at(deadline, rd.read(&mut b)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&b[..n]),
            _ => break,
        }
    }
    let took = t0.elapsed();
    drop(wr);
    let text = String::from_utf8_lossy(&got).to_string();
    (text.starts_with("HTTP/1.1 413") && text.contains("too big") && took < Duration::from_secs(2), format!("{text:?} after {took:?}"))
}

/// Named checks of one test: each printed PASS or FAIL as it is made, all failures reported
/// together at the end.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, what: &str, ok: bool, detail: String) {
        if ok {
            eprintln!("PASS {what}");
        } else {
            eprintln!("FAIL {what}: {detail}");
            self.0.push(format!("{what}: {detail}"));
        }
    }

    fn assert_all(self) {
        assert!(self.0.is_empty(), "{}", self.0.join("\n"));
    }
}

/// Exchange over https://, where the gateway's client runs over rustls: a request through
/// with the ticket, the TLS connection kept and used again, Exchange closing it while it is
/// idle in the pool (close_notify) not costing the next device a 502, a held request (the
/// wait reads 64 bytes over TLS), Exchange's early answer while the body is still coming,
/// and its unreadable responses refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_over_https() {
    let gw = Gw::start_with("body_idle_timeout_ms = 5000", true).await;
    let mut checks = Checks::default();
    let mut check = |what: &str, ok: bool, detail: String| checks.check(what, ok, detail);
    let conns = || gw.rec.lock().expect("record").raw.len();

    let (n, _, _) = gw.counts();
    let c0 = conns();
    let a1 = gw.send(&gw.alice, &post("TLS1", "")).await;
    let a2 = gw.send(&gw.alice, &post("TLS2", "")).await;
    let got = gw.requests_since(n);
    check(
        "https: two devices' requests 200, Exchange read each whole with the ticket, both on the TLS connection kept from before",
        a1.status() == Some(200)
            && a2.status() == Some(200)
            && got.len() == 2
            && got.iter().all(|r| base(r).is_ok())
            && got[0].conn == got[1].conn
            && conns() == c0,
        format!("{:?} {:?} {got:?} connections {} -> {}", a1.status(), a2.status(), c0, conns()),
    );

    let c0 = conns();
    let bye = gw.send(&gw.alice, &post("BYE&bye=1", "")).await;
    // Exchange closes that connection 100 ms after its answer, while it is in the pool.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let ne = gw.request_events().len();
    let after = gw.send(&gw.alice, &post("AFTERBYE", "")).await;
    let evs = gw.request_events_since(ne);
    check(
        "https: Exchange closed the pooled connection (close_notify): the next request 200 on a new connection, no 502",
        bye.status() == Some(200) && after.status() == Some(200) && conns() == c0 + 1 && evs.len() == 1 && evs[0]["outcome"] == "forwarded",
        format!("{:?} {:?} connections {} -> {} {evs:?}", bye.status(), after.status(), c0, conns()),
    );

    let t = Instant::now();
    let held = gw.send(&gw.alice, &post("HELD&hold=1", "")).await;
    let took = t.elapsed();
    check(
        "https: a request Exchange holds 1.5 s: 200 with its body when Exchange answers",
        held.status() == Some(200) && body_of(&held.text) == "backend ok\n" && took >= Duration::from_millis(1500),
        format!("{:?} after {took:?}", held.text),
    );

    let (ok, detail) = early_answer(&gw).await;
    check("https: Exchange's early answer (413 before the body's end): the device has it within 2 s", ok, detail);

    let resp = |name: &str| format!("POST /Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=RESP&DeviceType=Test&resp={name} HTTP/1.1\r\nHost: gw.lab.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let a = gw.send(&gw.alice, resp("chunked").as_bytes()).await;
    check("https: Exchange's chunked response with extensions and trailers: 200, the body decoded", a.status() == Some(200) && body_of(&a.text) == "hello world", format!("{:?}", a.text));
    let ne = gw.request_events().len();
    let a = gw.send(&gw.alice, resp("clte").as_bytes()).await;
    let evs = gw.request_events_since(ne);
    check(
        "https: Exchange's response with Content-Length and chunked: 502 exchange_bad_response",
        a.status() == Some(502) && evs.iter().any(|e| e["reason"] == "exchange_bad_response"),
        format!("{:?} {evs:?}", a.text),
    );
    check("https: Exchange read no malformed request", gw.counts().2 == 0, format!("{:?}", gw.rec.lock().expect("record").malformed));
    checks.assert_all();
}

/// DER: tag, length, content.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    let n = content.len();
    if n < 128 {
        v.push(n as u8);
    } else if n < 256 {
        v.extend_from_slice(&[0x81, n as u8]);
    } else {
        v.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    }
    v.extend_from_slice(content);
    v
}

/// A SAN extension holding one otherName of the UPN type with `value` (DER) as its value.
fn upn_san(value: &[u8]) -> CustomExtension {
    let oid = [0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x14, 0x02, 0x03];
    let other = tlv(0xa0, &[oid.as_slice(), &tlv(0xa0, value)].concat());
    CustomExtension::from_oid_content(&[2, 5, 29, 17], tlv(0x30, &other))
}

/// What a device with this client configuration gets: the HTTP status, or the TLS alert.
async fn outcome(gw: &Gw, cfg: &Arc<rustls::ClientConfig>) -> String {
    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    let conn = tokio_rustls::TlsConnector::from(cfg.clone());
    let mut tls = match conn.connect(ServerName::try_from("gw.lab.test").expect("name"), tcp).await {
        Ok(t) => t,
        Err(e) => return format!("tls: {e}"),
    };
    // TLS 1.3: the server judges the certificate after the client's Finished; its alert
    // arrives on the first read.
    if let Err(e) = tls.write_all(&post("TLSCASE", "")).await {
        return format!("tls: {e}");
    }
    let mut b = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut b)).await {
        Ok(Ok(0)) => "closed".into(),
        Ok(Ok(n)) => String::from_utf8_lossy(&b[..n]).lines().next().unwrap_or("").to_string(),
        Ok(Err(e)) => format!("tls: {e}"),
        Err(_) => "no answer".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_certificates() {
    let gw = Gw::start("").await;
    let p = &gw.pki;
    let cdp = gw.cdp.clone();
    let cfg = |(chain, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)| client_config(p, chain, key);
    let mut failures = Vec::new();
    // (name, client config, what the device must see, the event's reason)
    let mut cases: Vec<(&str, Arc<rustls::ClientConfig>, &str, &str)> = vec![
        ("expired", cfg(device_with(p, "alice@lab.test", &cdp, 2001, |c| c.not_after = rcgen::date_time_ymd(2020, 1, 1))), "CertificateExpired", "expired"),
        ("not yet valid", cfg(device_with(p, "alice@lab.test", &cdp, 2002, |c| c.not_before = rcgen::date_time_ymd(2034, 1, 1))), "CertificateExpired", "not_yet_valid"),
        ("server EKU only", cfg(device_with(p, "alice@lab.test", &cdp, 2003, |c| c.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth])), "UnsupportedCertificate", "bad_eku"),
        (
            "an unknown critical extension",
            cfg(device_with(p, "alice@lab.test", &cdp, 2004, |c| {
                let mut e = CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![0x05, 0x00]);
                e.set_criticality(true);
                c.custom_extensions.push(e);
            })),
            "alert",
            "bad_certificate",
        ),
        (
            "a 40 KB non-critical extension (a certificate of absurd size)",
            cfg(device_with(p, "alice@lab.test", &cdp, 2005, |c| {
                c.custom_extensions.push(CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 2], tlv(0x04, &vec![0x41; 40_000])));
            })),
            "HTTP/1.1 200",
            "forwarded",
        ),
        (
            "a 70 KB certificate (over TLS's 64 KiB handshake message)",
            cfg(device_with(p, "alice@lab.test", &cdp, 2006, |c| {
                for i in 0..2 {
                    c.custom_extensions.push(CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 3 + i], tlv(0x04, &vec![0x42; 35_000])));
                }
            })),
            "alert",
            "tls_handshake",
        ),
        (
            "UPN otherName holding an INTEGER",
            cfg(device_with(p, "x", &cdp, 2007, |c| {
                c.subject_alt_names.clear();
                c.custom_extensions.push(upn_san(&tlv(0x02, &[0x01, 0x02])));
            })),
            "HTTP/1.1 403",
            "no_upn",
        ),
        (
            "UPN otherName with a broken length inside",
            cfg(device_with(p, "x", &cdp, 2008, |c| {
                c.subject_alt_names.clear();
                c.custom_extensions.push(upn_san(&[0x0c, 0x7f, b'a']));
            })),
            "BadCertificate",
            "bad_certificate",
        ),
        ("UPN with a NUL", cfg(device(p, "ali\0ce@lab.test", &cdp, 2009)), "HTTP/1.1 403", "no_upn"),
        ("UPN with a newline", cfg(device(p, "alice\n@lab.test", &cdp, 2010)), "HTTP/1.1 403", "no_upn"),
        // found by fuzzing gateway_cert_crl: the suffix was not checked
        ("UPN suffix with a TAB and a NUL", cfg(device(p, "alice@lab.\t\0st", &cdp, 2013)), "HTTP/1.1 403", "no_upn"),
        (
            "two different UPNs",
            cfg(device_with(p, "alice@lab.test", &cdp, 2011, |c| {
                c.subject_alt_names.push(SanType::OtherName((UPN_OID.to_vec(), OtherNameValue::Utf8String("administrator@lab.test".into()))));
            })),
            "HTTP/1.1 403",
            "two_upns",
        ),
        ("a 5,000-character UPN", cfg(device(p, &format!("{}@lab.test", "a".repeat(5000)), &cdp, 2012)), "HTTP/1.1 403", "no_upn"),
    ];
    // A chain of 8 intermediates below the trusted root (webpki allows fewer).
    {
        let mut chain: Vec<CertificateDer<'static>> = Vec::new();
        let mut parent: Option<Issuer<'static, KeyPair>> = None;
        for i in 0..8 {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
            let mut c = CertificateParams::new(Vec::<String>::new()).expect("params");
            c.distinguished_name.push(DnType::CommonName, format!("sub CA {i}"));
            c.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            c.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            c.use_authority_key_identifier_extension = true;
            let cert = match &parent {
                Some(pi) => c.signed_by(&key, pi),
                None => c.signed_by(&key, &p.issuer),
            }
            .expect("sub CA");
            chain.insert(0, cert.der().clone());
            parent = Some(Issuer::new(c, key));
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut c = CertificateParams::new(Vec::<String>::new()).expect("params");
        c.subject_alt_names = vec![SanType::OtherName((UPN_OID.to_vec(), OtherNameValue::Utf8String("alice@lab.test".into())))];
        c.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        c.use_authority_key_identifier_extension = true;
        let leaf = c.signed_by(&key, parent.as_ref().expect("parent")).expect("leaf");
        chain.insert(0, leaf.der().clone());
        cases.push(("a chain of 8 intermediates", client_config(p, chain, PrivateKeyDer::try_from(key.serialize_der()).expect("der")), "alert", "any"));
    }
    // A device of another CA bearing the trusted CA's name: the signature decides.
    {
        let other = pki();
        let (chain, key) = device(&other, "alice@lab.test", &cdp, 3000);
        cases.push(("issued by an impostor CA with the trusted CA's name", client_config(p, chain, key), "DecryptError", "bad_signature"));
    }
    for (name, c, want, reason) in cases {
        let ne = gw.events().len();
        let (n, _, _) = gw.counts();
        let got = outcome(&gw, &c).await;
        // A refusal's event is written after the alert went out: wait for it (3 s at most).
        let requests = |all: Vec<Value>| -> Vec<Value> {
            all[ne..].iter().filter(|e| e["event_type"] == "gateway" && e["gateway"]["step"] == "request").map(|e| e["gateway"].clone()).collect()
        };
        let t = Instant::now();
        let mut evs = requests(gw.events());
        while evs.is_empty() && t.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            evs = requests(gw.events());
        }
        let ev_reason = evs.last().map(|e| if e["outcome"] == "forwarded" { "forwarded".to_string() } else { e["reason"].as_str().unwrap_or("").to_string() }).unwrap_or_default();
        let reached = gw.counts().0 - n;
        let device_ok = match want {
            "any" => true,
            "alert" => got.starts_with("tls:"),
            w => got.contains(w),
        };
        let reason_ok = reason == "any" || reason.is_empty() || ev_reason == reason;
        let reach_ok = if reason == "forwarded" { reached == 1 } else { reached == 0 };
        let line = format!("{name}: device saw {got:?}, event reason {ev_reason:?}, backend read {reached}");
        if device_ok && reason_ok && reach_ok && !evs.is_empty() {
            eprintln!("PASS {line}");
        } else {
            eprintln!("FAIL {line} (want {want:?}, {reason:?})");
            failures.push(line);
        }
    }
    // The gateway still serves after all of it.
    let a = gw.send(&gw.alice, &post("AFTER", "")).await;
    assert_eq!(a.status(), Some(200), "{}", a.text);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// testssl.sh (Debian package) against the gateway's listener: TLS 1.2 and 1.3 only, no
/// cipher of the weak categories, no renegotiation, no session resumption (neither tickets
/// nor IDs). tests/run installs testssl.sh and runs this.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs testssl.sh (Debian package testssl.sh; tests/run installs it)"]
async fn testssl_scan() {
    let gw = Gw::start("").await;
    let json = gw.dir.join("testssl.json");
    let target = gw.addr.to_string();
    let j = json.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("testssl")
            .args(["--quiet", "--color", "0", "--warnings", "off", "--ip", "one", "-p", "-s", "-S", "-R", "--jsonfile"])
            .arg(&j)
            .arg(&target)
            .output()
    })
    .await
    .expect("join")
    .expect("testssl runs (apt-get install testssl.sh)");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|_| panic!("no JSON from testssl: {}", String::from_utf8_lossy(&out.stdout)));
    let findings: Vec<Value> = serde_json::from_str(&text).expect("testssl JSON");
    let get = |id: &str| findings.iter().find(|f| f["id"] == id).and_then(|f| f["finding"].as_str()).unwrap_or("(absent)").to_string();
    for f in &findings {
        eprintln!("testssl {}: {} [{}]", f["id"].as_str().unwrap_or(""), f["finding"].as_str().unwrap_or(""), f["severity"].as_str().unwrap_or(""));
    }
    let mut failures = Vec::new();
    let mut want = |id: &str, ok: fn(&str) -> bool| {
        let v = get(id);
        if !ok(&v) {
            failures.push(format!("{id}: {v}"));
        }
    };
    for id in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        want(id, |v| v.starts_with("not offered"));
    }
    want("TLS1_2", |v| v.starts_with("offered"));
    want("TLS1_3", |v| v.starts_with("offered"));
    for id in ["cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA", "cipherlist_AVERAGE"] {
        want(id, |v| v.starts_with("not offered"));
    }
    // testssl cannot start a handshake past a required client certificate, so it cannot try
    // a client-initiated renegotiation; rustls implements none (it only sends the empty
    // renegotiation_info of RFC 5746, which testssl reports as secure_renego "supported").
    want("secure_client_renego", |v| v.contains("not vulnerable") || v.contains("client x509-based authentication prevents"));
    want("sessionresumption_ticket", |v| v.to_lowercase().starts_with("no") || v.contains("not supported"));
    want("TLS_session_ticket", |v| v.to_lowercase().starts_with("no"));
    want("sessionresumption_ID", |v| v.to_lowercase().starts_with("no") || v.contains("not supported"));
    assert!(failures.is_empty(), "testssl findings:\n{}", failures.join("\n"));
}
