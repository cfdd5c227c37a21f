//! The gateway's configuration: one TOML file in the administrator's words (DOMAIN.md
//! section 2). The delegation sections (`service_account`, `kcd`, `kdc`, `[[domain]]`)
//! are kcd-client's and checked by it; the rest is the gateway's. Checked whole before
//! anything starts or is swapped in: a bad setting is refused with its key and its line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::header::HeaderValue;
use kcd_cert::CertInfo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::identity::{MapFrom, Mapping};

pub const EXAMPLE: &str = r#"# kcdscope gateway: devices with client certificates -> Kerberos constrained delegation -> Exchange ActiveSync

[listen]
address = "0.0.0.0:443"
certificate = "/etc/kcdscope/gateway.pem"     # the gateway's certificate chain (PEM), leaf first
key = "/etc/kcdscope/gateway.key"             # its private key (PEM)
max_connections = 10000                       # devices connected at once (each Ping holds one)
handshake_timeout_ms = 10000

[client_certificates]
chain = "/etc/kcdscope/device-ca-chain.pem"   # issuing + root CA (PEM bundle): the trust anchors
required = true                               # "require client certificate" (off is not supported)
allow_no_eku = false                          # accept certificates without any EKU (default: refuse)

[mapping]
from = "upn"                                  # "upn" (SAN otherName), "email" (SAN rfc822Name) or "subject_cn"
# rewrite = [{ from = "corp.example", to = "lab.test" }]   # alternate UPN suffixes

[exchange]
url = "https://exchange.lab.test"             # the email server host (http:// or https://)
ca = "/etc/kcdscope/exchange-ca.pem"          # https: the CA bundle that issued Exchange's certificate
# server_name = "exchange.lab.test"           # https: the name its certificate must carry (default: the URL's host)
connect_timeout_ms = 5000
response_timeout_seconds = 3660               # above Exchange's maximum Ping heartbeat (3540 s)
response_head_bytes = 4096                    # the largest response head Exchange may send (larger: 502)

[crl]
fail = "closed"                               # "closed": no valid CRL, no access; "open": let through, with an event
fetch_timeout_ms = 5000
max_bytes = 20971520
refresh_seconds = 3600                        # fetched again (If-None-Match) at least this often
# preload = ["http://pki.lab.test/pki/issuing.crl"]   # CDPs fetched at start (others are learnt from certificates)
# first_fetch_wait_ms = 6000                  # a handshake bringing a CDP never fetched waits this long for it (default: fetch_timeout_ms + 1000; 0: no wait)

[limits]
body_bytes = 10485760                         # larger requests get 413 (IIS: uploadReadAheadSize)
header_read_timeout_ms = 30000
body_idle_timeout_ms = 60000
max_headers = 100                             # more get 431
drain_seconds = 30                            # on SIGTERM, how long open requests may finish

[admin]
address = "127.0.0.1:9443"                    # /healthz, /readyz, /metrics (plain HTTP: keep it on loopback)

# The delegation client (kcdscope kcd): as in `kcdscope kcd example-config`.
[service_account]
user = "svc_awseg"
password_file = "/etc/kcdscope/svc_awseg.password"

[kcd]
target_spn = "HTTP/exchange.lab.test"

[[domain]]
realm = "LAB.TEST"
domain_controllers = ["dc1.lab.test"]
"#;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {key}: {problem}{}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
    pub line: Option<usize>,
}

const KCD_SECTIONS: &[&str] = &["service_account", "kcd", "kdc", "domain"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct File {
    service_account: Option<toml::Value>,
    kcd: Option<toml::Value>,
    kdc: Option<toml::Value>,
    domain: Option<toml::Value>,
    listen: ListenFile,
    client_certificates: ClientFile,
    #[serde(default)]
    mapping: MappingFile,
    exchange: ExchangeFile,
    #[serde(default)]
    crl: CrlFile,
    #[serde(default)]
    limits: LimitsFile,
    admin: Option<AdminFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenFile {
    address: String,
    certificate: PathBuf,
    key: PathBuf,
    #[serde(default = "d_conns")]
    max_connections: usize,
    #[serde(default = "d_handshake")]
    handshake_timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    chain: PathBuf,
    #[serde(default = "yes")]
    required: bool,
    #[serde(default)]
    allow_no_eku: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    #[serde(default)]
    from: MapFrom,
    #[serde(default)]
    rewrite: Vec<RewriteFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RewriteFile {
    from: String,
    to: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExchangeFile {
    url: String,
    ca: Option<PathBuf>,
    server_name: Option<String>,
    #[serde(default = "d_connect")]
    connect_timeout_ms: u64,
    #[serde(default = "d_response")]
    response_timeout_seconds: u64,
    #[serde(default = "d_response_head")]
    response_head_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    #[default]
    Closed,
    Open,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CrlFile {
    #[serde(default)]
    fail: FailMode,
    #[serde(default = "d_connect")]
    fetch_timeout_ms: u64,
    #[serde(default = "d_crl_bytes")]
    max_bytes: usize,
    #[serde(default)]
    preload: Vec<String>,
    #[serde(default = "d_retry")]
    retry_seconds: u64,
    #[serde(default = "d_refresh")]
    refresh_seconds: u64,
    first_fetch_wait_ms: Option<u64>,
}
impl Default for CrlFile {
    fn default() -> Self {
        Self {
            fail: FailMode::Closed,
            fetch_timeout_ms: d_connect(),
            max_bytes: d_crl_bytes(),
            preload: Vec::new(),
            retry_seconds: d_retry(),
            refresh_seconds: d_refresh(),
            first_fetch_wait_ms: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    #[serde(default = "d_body")]
    body_bytes: u64,
    #[serde(default = "d_header")]
    header_read_timeout_ms: u64,
    #[serde(default = "d_body_idle")]
    body_idle_timeout_ms: u64,
    #[serde(default = "d_headers")]
    max_headers: usize,
    #[serde(default = "d_drain")]
    drain_seconds: u64,
}
impl Default for LimitsFile {
    fn default() -> Self {
        Self {
            body_bytes: d_body(),
            header_read_timeout_ms: d_header(),
            body_idle_timeout_ms: d_body_idle(),
            max_headers: d_headers(),
            drain_seconds: d_drain(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    address: String,
}

fn yes() -> bool {
    true
}
fn d_conns() -> usize {
    10_000
}
fn d_handshake() -> u64 {
    10_000
}
fn d_connect() -> u64 {
    5_000
}
fn d_response() -> u64 {
    3_660
}
/// One page, what nginx reads an upstream's head into by default (proxy_buffer_size).
fn d_response_head() -> usize {
    4096
}
fn d_crl_bytes() -> usize {
    20 << 20
}
fn d_retry() -> u64 {
    30
}
fn d_refresh() -> u64 {
    3600
}
fn d_body() -> u64 {
    10 << 20
}
fn d_header() -> u64 {
    30_000
}
fn d_body_idle() -> u64 {
    60_000
}
fn d_headers() -> usize {
    100
}
fn d_drain() -> u64 {
    30
}

/// The server's private key; never printed.
pub struct ServerKey(pub PrivateKeyDer<'static>);
impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(redacted)")
    }
}
impl Clone for ServerKey {
    fn clone(&self) -> Self {
        Self(self.0.clone_key())
    }
}

#[derive(Debug, Clone)]
pub struct Exchange {
    pub https: bool,
    /// host[:port] to connect to.
    pub authority: String,
    pub host_header: HeaderValue,
    pub ca: Vec<CertificateDer<'static>>,
    pub server_name: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// The largest response head read from Exchange (a larger one is a 502 naming this
    /// setting); the buffer is made when the answer arrives, not while a Ping is held.
    /// ActiveSync's response heads are well under one page.
    pub response_head_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct CrlPolicy {
    pub fail: FailMode,
    pub fetch_timeout: Duration,
    pub max_bytes: usize,
    pub preload: Vec<String>,
    pub retry: Duration,
    /// Fetched again (conditionally) at least this often.
    pub refresh: Duration,
    /// How long a handshake waits for the first fetch of a CDP it brings (zero: no wait).
    pub first_fetch_wait: Duration,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub body_bytes: u64,
    pub header_read_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub max_headers: usize,
    pub max_connections: usize,
    pub drain: Duration,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub kcd: kcd_client::Config,
    pub listen: SocketAddr,
    pub server_chain: Vec<CertificateDer<'static>>,
    pub server_key: ServerKey,
    pub anchors: Vec<CertificateDer<'static>>,
    pub anchor_info: Vec<CertInfo>,
    pub mapping: Mapping,
    pub exchange: Exchange,
    pub crl: CrlPolicy,
    pub limits: Limits,
    pub admin: Option<SocketAddr>,
}

/// The line of `key` ("listen.address", "domain[1].realm", "exchange") in `text`: found by
/// walking table headers, since the TOML values the checks see carry no positions.
pub fn key_line(text: &str, key: &str) -> Option<usize> {
    let mut parts = key.split('.');
    let head = parts.next()?;
    let field = parts.next();
    let (table, index) = match head.split_once('[') {
        Some((t, i)) => (t, i.trim_end_matches(']').parse::<usize>().ok()),
        None => (head, None),
    };
    let mut current: Option<(String, usize)> = None;
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let name = name.trim().to_string();
            let c = seen.entry(name.clone()).or_insert(0);
            current = Some((name, *c));
            *c += 1;
            if field.is_none() && current.as_ref().is_some_and(|(t, i)| t == table && index.is_none_or(|x| x == *i)) {
                return Some(n + 1);
            }
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            current = Some((name.trim().to_string(), 0));
            if field.is_none() && name.trim() == table {
                return Some(n + 1);
            }
            continue;
        }
        let Some(field) = field else { continue };
        let in_table = current.as_ref().is_some_and(|(t, i)| t == table && index.is_none_or(|x| x == *i));
        if in_table {
            if let Some((k, _)) = line.split_once('=') {
                if k.trim().trim_matches('"') == field {
                    return Some(n + 1);
                }
            }
        }
    }
    None
}

/// The text with every line outside the delegation sections blanked: line numbers stay
/// those of the file, for kcd-client's own messages.
fn kcd_part(text: &str) -> String {
    let mut keep = true;
    let mut out = String::with_capacity(text.len());
    for raw in text.lines() {
        let line = raw.trim();
        if line.starts_with('[') {
            let name = line.trim_start_matches('[').split(']').next().unwrap_or("").trim();
            let top = name.split('.').next().unwrap_or("");
            keep = KCD_SECTIONS.contains(&top);
        }
        if keep {
            out.push_str(raw);
        }
        out.push('\n');
    }
    out
}

type Reader<'a> = &'a dyn Fn(&Path) -> std::io::Result<Vec<u8>>;

impl GatewayConfig {
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError { key: path.display().to_string(), problem: format!("cannot read: {e}"), line: None })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base, &|p| std::fs::read(p), &|k| std::env::var(k).ok())
    }

    pub fn parse(
        text: &str,
        base: &Path,
        read: Reader<'_>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<GatewayConfig, ConfigError> {
        let bad = |key: &str, problem: String| ConfigError { key: key.to_string(), line: key_line(text, key), problem };
        let f: File = toml::from_str(text).map_err(|e| {
            let line = e.span().and_then(|s| text.get(..s.start)).map(|h| h.lines().count().max(1));
            let msg = e.message().trim().to_string();
            // An unknown field's span is its table: name the table and the field's own line.
            if let (Some(l), Some(field)) = (line, msg.strip_prefix("unknown field `").and_then(|m| m.split('`').next())) {
                let header = text.lines().nth(l - 1).unwrap_or("").trim();
                let table = header.trim_matches(|c| c == '[' || c == ']').trim();
                let at = text.lines().enumerate().skip(l).find(|(_, t)| {
                    t.split_once('=').is_some_and(|(k, _)| k.trim().trim_matches('"') == field)
                });
                if header.starts_with('[') {
                    return ConfigError { key: format!("{table}.{field}"), problem: msg, line: at.map(|(n, _)| n + 1).or(line) };
                }
            }
            ConfigError { key: "config".into(), problem: msg, line }
        })?;
        let kcd = kcd_client::Config::parse(&kcd_part(text), base, read, env).map_err(|e| match e {
            kcd_client::KcdError::Config { key, problem } => {
                let line = if problem.contains("(line ") { None } else { key_line(text, &key) };
                ConfigError { key, problem, line }
            }
            other => ConfigError { key: "kcd".into(), problem: other.to_string(), line: None },
        })?;

        let l = &f.listen;
        let listen: SocketAddr =
            l.address.parse().map_err(|_| bad("listen.address", format!("{:?} is not address:port", l.address)))?;
        let server_chain = certs(read, base, &l.certificate).map_err(|p| bad("listen.certificate", p))?;
        if server_chain.is_empty() {
            return Err(bad("listen.certificate", format!("{}: no CERTIFICATE block", l.certificate.display())));
        }
        let key_path = base.join(&l.key);
        let key_pem = read(&key_path).map_err(|e| bad("listen.key", format!("{}: {e}", key_path.display())))?;
        let server_key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| bad("listen.key", format!("{}: no usable private key ({e})", key_path.display())))?;
        if !(1..=1_000_000).contains(&l.max_connections) {
            return Err(bad("listen.max_connections", "must be within 1..=1000000".into()));
        }
        if !(100..=600_000).contains(&l.handshake_timeout_ms) {
            return Err(bad("listen.handshake_timeout_ms", "must be within 100..=600000".into()));
        }

        let c = &f.client_certificates;
        if !c.required {
            return Err(bad(
                "client_certificates.required",
                "false is not supported in this version: every device must present a client certificate".into(),
            ));
        }
        let anchors = certs(read, base, &c.chain).map_err(|p| bad("client_certificates.chain", p))?;
        if anchors.is_empty() {
            return Err(bad("client_certificates.chain", format!("{}: no CERTIFICATE block", c.chain.display())));
        }
        let mut anchor_info = Vec::new();
        for (i, a) in anchors.iter().enumerate() {
            let info = CertInfo::parse(a).map_err(|e| bad("client_certificates.chain", format!("certificate {}: {e}", i + 1)))?;
            anchor_info.push(info);
        }

        let mut rewrites = Vec::new();
        for (i, r) in f.mapping.rewrite.iter().enumerate() {
            let (from, to) = (r.from.trim().to_lowercase(), r.to.trim().to_lowercase());
            if from.is_empty() || to.is_empty() || from.contains('@') || to.contains('@') {
                return Err(bad("mapping.rewrite", format!("entry {}: from and to are UPN suffixes such as \"lab.test\"", i + 1)));
            }
            rewrites.push((from, to));
        }
        let mapping = Mapping { from: f.mapping.from, rewrites, allow_no_eku: c.allow_no_eku };

        let x = &f.exchange;
        let uri: hyper::Uri = x.url.parse().map_err(|_| bad("exchange.url", format!("{:?} is not a URL", x.url)))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("exchange.url", format!("{:?}: http:// or https://", x.url))),
        };
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(bad("exchange.url", "give the host only; the device's path is forwarded as it is".into()));
        }
        let host = uri.host().ok_or_else(|| bad("exchange.url", "no host".into()))?.to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host_header = HeaderValue::from_str(uri.authority().map(|a| a.as_str()).unwrap_or(&host))
            .map_err(|_| bad("exchange.url", "host is not a valid Host header".into()))?;
        let ca = match (&x.ca, https) {
            (Some(p), true) => {
                let v = certs(read, base, p).map_err(|e| bad("exchange.ca", e))?;
                if v.is_empty() {
                    return Err(bad("exchange.ca", format!("{}: no CERTIFICATE block", p.display())));
                }
                v
            }
            (None, true) => return Err(bad("exchange.ca", "https needs the CA bundle that issued Exchange's certificate".into())),
            (Some(_), false) => return Err(bad("exchange.ca", "only for an https:// url".into())),
            (None, false) => Vec::new(),
        };
        let server_name = x.server_name.clone().unwrap_or_else(|| host.trim_matches(['[', ']']).to_string());
        if rustls::pki_types::ServerName::try_from(server_name.clone()).is_err() {
            return Err(bad("exchange.server_name", format!("{server_name:?} is not a DNS name or address")));
        }
        if !(100..=120_000).contains(&x.connect_timeout_ms) {
            return Err(bad("exchange.connect_timeout_ms", "must be within 100..=120000".into()));
        }
        if x.response_timeout_seconds < 3600 || x.response_timeout_seconds > 86_400 {
            return Err(bad(
                "exchange.response_timeout_seconds",
                "must be within 3600..=86400: Exchange holds a Ping up to 3540 s".into(),
            ));
        }
        if !(1024..=65_536).contains(&x.response_head_bytes) {
            return Err(bad("exchange.response_head_bytes", "must be within 1024..=65536".into()));
        }
        let exchange = Exchange {
            https,
            authority: format!("{host}:{port}"),
            host_header,
            ca,
            server_name,
            connect_timeout: Duration::from_millis(x.connect_timeout_ms),
            response_timeout: Duration::from_secs(x.response_timeout_seconds),
            response_head_bytes: x.response_head_bytes,
        };

        let r = &f.crl;
        for (i, u) in r.preload.iter().enumerate() {
            if !crate::crl::is_http(u) || u.parse::<hyper::Uri>().is_err() {
                return Err(bad("crl.preload", format!("entry {}: {u:?} is not an http:// URL", i + 1)));
            }
        }
        if !(100..=120_000).contains(&r.fetch_timeout_ms) {
            return Err(bad("crl.fetch_timeout_ms", "must be within 100..=120000".into()));
        }
        if !(1024..=(512 << 20)).contains(&r.max_bytes) {
            return Err(bad("crl.max_bytes", "must be within 1024..=536870912".into()));
        }
        if !(1..=86_400).contains(&r.retry_seconds) {
            return Err(bad("crl.retry_seconds", "must be within 1..=86400".into()));
        }
        if !(1..=604_800).contains(&r.refresh_seconds) {
            return Err(bad("crl.refresh_seconds", "must be within 1..=604800".into()));
        }
        // Default: one fetch's timeout and a second, so that the fetch's own failure
        // (crl_unreachable) is what the device is refused with, not "not fetched yet".
        let first_wait = r.first_fetch_wait_ms.unwrap_or(r.fetch_timeout_ms + 1000);
        if first_wait > 60_000 {
            return Err(bad("crl.first_fetch_wait_ms", "must be within 0..=60000".into()));
        }
        let crl = CrlPolicy {
            fail: r.fail,
            fetch_timeout: Duration::from_millis(r.fetch_timeout_ms),
            max_bytes: r.max_bytes,
            preload: r.preload.clone(),
            retry: Duration::from_secs(r.retry_seconds),
            refresh: Duration::from_secs(r.refresh_seconds),
            first_fetch_wait: Duration::from_millis(first_wait),
        };

        let m = &f.limits;
        if !(1024..=(1 << 34)).contains(&m.body_bytes) {
            return Err(bad("limits.body_bytes", "must be within 1024..=17179869184".into()));
        }
        if !(100..=600_000).contains(&m.header_read_timeout_ms) {
            return Err(bad("limits.header_read_timeout_ms", "must be within 100..=600000".into()));
        }
        if !(100..=3_600_000).contains(&m.body_idle_timeout_ms) {
            return Err(bad("limits.body_idle_timeout_ms", "must be within 100..=3600000".into()));
        }
        if !(8..=1000).contains(&m.max_headers) {
            return Err(bad("limits.max_headers", "must be within 8..=1000".into()));
        }
        if m.drain_seconds > 3600 {
            return Err(bad("limits.drain_seconds", "must be at most 3600".into()));
        }
        let limits = Limits {
            body_bytes: m.body_bytes,
            header_read_timeout: Duration::from_millis(m.header_read_timeout_ms),
            body_idle_timeout: Duration::from_millis(m.body_idle_timeout_ms),
            handshake_timeout: Duration::from_millis(l.handshake_timeout_ms),
            max_headers: m.max_headers,
            max_connections: l.max_connections,
            drain: Duration::from_secs(m.drain_seconds),
        };
        let admin = match &f.admin {
            Some(a) => Some(a.address.parse().map_err(|_| bad("admin.address", format!("{:?} is not address:port", a.address)))?),
            None => None,
        };
        Ok(GatewayConfig {
            kcd,
            listen,
            server_chain,
            server_key: ServerKey(server_key),
            anchors,
            anchor_info,
            mapping,
            exchange,
            crl,
            limits,
            admin,
        })
    }

    /// The realms of the domain/DC pairs, the service account's first.
    pub fn realms(&self) -> Vec<String> {
        let mut v: Vec<String> = vec![self.kcd.service_realm.clone()];
        for d in &self.kcd.domains {
            if !v.contains(&d.realm) {
                v.push(d.realm.clone());
            }
        }
        v
    }
}

fn certs(read: Reader<'_>, base: &Path, p: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let path = base.join(p);
    let pem = read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for c in CertificateDer::pem_slice_iter(&pem) {
        out.push(c.map_err(|e| format!("{}: {e}", path.display()))?);
    }
    Ok(out)
}
