//! The gateway's KCD settings, in the administrator's words (DOMAIN.md section 2): the
//! target SPN, the service account and where its password comes from, the domain and
//! domain-controller pairs, how to reach the KDCs. Checked whole at start: a bad setting is
//! refused with its key and what is wrong.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::KcdError;
use crate::keytab::{self, KeytabEntry};

/// An example that `kcdscope kcd token --help` points at, and the tests parse.
pub const EXAMPLE: &str = r#"# kcdscope gateway: Kerberos constrained delegation
[service_account]
user = "svc_awseg"                  # the delegating account (or svc_awseg@LAB.TEST)
password_file = "/etc/kcdscope/svc_awseg.password"
# password_env = "KCDSCOPE_SVC_PASSWORD"     # or: the password in this environment variable
# keytab = "/etc/kcdscope/svc_awseg.keytab"  # or: its keys in a keytab

[kcd]
target_spn = "HTTP/exchange.lab.test"  # Exchange's HTTP SPN (or the ASA's with a CAS array)
token = "spnego"                       # "spnego" (as browsers send) or "krb5" (raw GSS token)
allow_rc4 = false                      # rc4-hmac only if the directory still needs it
cache_size = 10000                     # service tickets kept, one per (user, SPN)

[kdc]
transport = "udp"                      # "udp": TCP when a reply is too big; "tcp": TCP only
timeout_ms = 3000                      # per KDC, before the next one is tried
retry_first_seconds = 60               # after a fail-over, the first KDC is tried again this often

[[domain]]                             # one per domain; the first holds the service account
realm = "LAB.TEST"                     # in UPPERCASE
domain_controllers = ["dc1.lab.test", "10.88.0.3:88"]
# [[domain]]                           # a trusted realm: users whose UPN ends in @other.test
# realm = "OTHER.TEST"                 # get cross-realm S4U2Self through its KDCs
# domain_controllers = ["dc1.other.test"]
"#;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    service_account: ServiceAccountFile,
    kcd: KcdFile,
    #[serde(default)]
    kdc: KdcFile,
    #[serde(default)]
    domain: Vec<DomainFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceAccountFile {
    user: String,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    keytab: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KcdFile {
    #[serde(default = "yes")]
    enabled: bool,
    target_spn: String,
    #[serde(default)]
    token: TokenFormat,
    #[serde(default)]
    allow_rc4: bool,
    #[serde(default = "default_cache")]
    cache_size: usize,
    #[serde(default = "default_renew")]
    renew_before_seconds: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdcFile {
    #[serde(default)]
    transport: TransportMode,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    #[serde(default = "default_retry_first")]
    retry_first_seconds: u64,
}

impl Default for KdcFile {
    fn default() -> Self {
        Self { transport: TransportMode::default(), timeout_ms: default_timeout(), retry_first_seconds: default_retry_first() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainFile {
    realm: String,
    domain_controllers: Vec<String>,
}

fn yes() -> bool {
    true
}
fn default_cache() -> usize {
    10_000
}
fn default_renew() -> i64 {
    300
}
fn default_timeout() -> u64 {
    3000
}
fn default_retry_first() -> u64 {
    60
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenFormat {
    /// SPNEGO NegTokenInit with the krb5 mechanism first, as browsers and curl send.
    #[default]
    Spnego,
    /// The bare RFC 4121 krb5 initial context token.
    Krb5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportMode {
    /// UDP for small requests, TCP for large ones and when the KDC answers
    /// KRB_ERR_RESPONSE_TOO_BIG (what MIT and Windows clients do).
    #[default]
    Udp,
    /// TCP only (udp_preference_limit = 1, MaxPacketSize = 1).
    Tcp,
}

/// The service account's long-term secret. Never printed.
#[derive(Clone)]
pub enum Secret {
    Password(Zeroizing<String>),
    Keytab { path: PathBuf, entries: Vec<KeytabEntry> },
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Password(_) => f.write_str("Password(redacted)"),
            Secret::Keytab { path, entries } => {
                write!(f, "Keytab({}, {} keys, redacted)", path.display(), entries.len())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub realm: String,
    /// As configured: "dc1.lab.test", "dc1.lab.test:88", "10.0.0.3", "[fd00::3]:88".
    pub kdcs: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub enabled: bool,
    /// The service account's name components ("svc_awseg", or "HTTP", "gw.lab.test").
    pub service_name: Vec<String>,
    pub service_realm: String,
    pub secret: Secret,
    pub target_spn: String,
    pub token: TokenFormat,
    pub allow_rc4: bool,
    pub cache_size: usize,
    pub renew_before: Duration,
    pub transport: TransportMode,
    pub timeout: Duration,
    /// After a fail-over, how long the KDC that answered is asked first before the realm's
    /// first KDC is tried again (one request per period pays for it while it is still down).
    pub retry_first: Duration,
    pub domains: Vec<Domain>,
}

fn bad(key: &str, problem: impl Into<String>) -> KcdError {
    KcdError::Config { key: key.to_string(), problem: problem.into() }
}

impl Config {
    /// Reads and checks the file at `path`; relative paths inside it are taken from the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Config, KcdError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(&path.display().to_string(), format!("cannot read: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base, &|p| std::fs::read(p), &|k| std::env::var(k).ok())
    }

    /// The checks, on text; files and environment come through the two readers.
    pub fn parse(
        text: &str,
        base: &Path,
        read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, KcdError> {
        let f: File = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            let line = e
                .span()
                .and_then(|s| text.get(..s.start))
                // Newlines before the error, plus one: a span at the start of a line (an
                // unknown key) has no partial line for lines() to count.
                .map(|head| head.bytes().filter(|b| *b == b'\n').count() + 1)
                .map(|l| format!(" (line {l})"))
                .unwrap_or_default();
            bad("config", format!("{msg}{line}"))
        })?;

        if f.domain.is_empty() {
            return Err(bad("domain", "no [[domain]]: give at least one realm with its domain controllers"));
        }
        let mut domains = Vec::new();
        for (i, d) in f.domain.iter().enumerate() {
            let key = format!("domain[{i}].realm");
            if d.realm.is_empty() {
                return Err(bad(&key, "empty"));
            }
            if d.realm != d.realm.to_uppercase() {
                return Err(bad(&key, format!("{:?} must be in UPPERCASE: write {:?}", d.realm, d.realm.to_uppercase())));
            }
            if domains.iter().any(|x: &Domain| x.realm == d.realm) {
                return Err(bad(&key, format!("{} is listed twice", d.realm)));
            }
            let key = format!("domain[{i}].domain_controllers");
            if d.domain_controllers.is_empty() {
                return Err(bad(&key, "empty: list the domain controllers (FQDN or address)"));
            }
            for dc in &d.domain_controllers {
                crate::transport::split_host_port(dc).map_err(|p| bad(&key, format!("{dc:?}: {p}")))?;
            }
            domains.push(Domain { realm: d.realm.clone(), kdcs: d.domain_controllers.clone() });
        }

        let sa = &f.service_account;
        let (name, realm) = match sa.user.rsplit_once('@') {
            Some((n, r)) => (n.to_string(), r.to_string()),
            None => (sa.user.clone(), domains[0].realm.clone()),
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(bad("service_account.user", format!("{:?} is not an account name", sa.user)));
        }
        if !domains.iter().any(|d| d.realm == realm) {
            return Err(bad(
                "service_account.user",
                format!("realm {realm} has no [[domain]] entry (realms are in UPPERCASE)"),
            ));
        }
        let service_name: Vec<String> = name.split('/').map(str::to_string).collect();
        if service_name.iter().any(String::is_empty) {
            return Err(bad("service_account.user", format!("{:?} has an empty component", sa.user)));
        }

        let sources = [sa.password_file.is_some(), sa.password_env.is_some(), sa.keytab.is_some()];
        let secret = match sources.iter().filter(|x| **x).count() {
            0 => {
                return Err(bad(
                    "service_account",
                    "no secret: set password_file, password_env or keytab (never the password itself)",
                ))
            }
            1 => {
                if let Some(p) = &sa.password_file {
                    let path = base.join(p);
                    let raw = Zeroizing::new(read(&path).map_err(|e| {
                        bad("service_account.password_file", format!("{}: {e}", path.display()))
                    })?);
                    let text = std::str::from_utf8(&raw).map_err(|_| {
                        bad("service_account.password_file", format!("{}: not UTF-8", path.display()))
                    })?;
                    let pw = text.strip_suffix('\n').unwrap_or(text);
                    let pw = pw.strip_suffix('\r').unwrap_or(pw);
                    if pw.is_empty() {
                        return Err(bad("service_account.password_file", format!("{}: empty", path.display())));
                    }
                    Secret::Password(Zeroizing::new(pw.to_string()))
                } else if let Some(var) = &sa.password_env {
                    match env(var) {
                        Some(v) if !v.is_empty() => Secret::Password(Zeroizing::new(v)),
                        _ => {
                            return Err(bad(
                                "service_account.password_env",
                                format!("the environment variable {var} is not set or empty"),
                            ))
                        }
                    }
                } else if let Some(p) = &sa.keytab {
                    let path = base.join(p);
                    let raw = Zeroizing::new(read(&path).map_err(|e| {
                        bad("service_account.keytab", format!("{}: {e}", path.display()))
                    })?);
                    let entries = keytab::parse(&raw)
                        .map_err(|e| bad("service_account.keytab", format!("{}: {e}", path.display())))?;
                    let mine: Vec<KeytabEntry> = entries
                        .into_iter()
                        .filter(|e| e.realm == realm && e.components == service_name)
                        .collect();
                    if mine.is_empty() {
                        return Err(bad(
                            "service_account.keytab",
                            format!("{} holds no key for {}@{realm}", path.display(), service_name.join("/")),
                        ));
                    }
                    Secret::Keytab { path, entries: mine }
                } else {
                    return Err(bad("service_account", "no secret"));
                }
            }
            _ => {
                return Err(bad(
                    "service_account",
                    "password_file, password_env and keytab are alternatives: set only one",
                ))
            }
        };

        let k = &f.kcd;
        if !crate::proto::is_spn(&k.target_spn) {
            return Err(bad(
                "kcd.target_spn",
                format!("{:?} is not a service principal name such as HTTP/exchange.lab.test", k.target_spn),
            ));
        }
        if k.cache_size == 0 || k.cache_size > 10_000_000 {
            return Err(bad("kcd.cache_size", format!("{} is outside 1..=10000000", k.cache_size)));
        }
        if !(0..=86_400).contains(&k.renew_before_seconds) {
            return Err(bad("kcd.renew_before_seconds", "must be within 0..=86400"));
        }
        if !(1..=120_000).contains(&f.kdc.timeout_ms) {
            return Err(bad("kdc.timeout_ms", format!("{} is outside 1..=120000", f.kdc.timeout_ms)));
        }
        if !(1..=86_400).contains(&f.kdc.retry_first_seconds) {
            return Err(bad("kdc.retry_first_seconds", format!("{} is outside 1..=86400", f.kdc.retry_first_seconds)));
        }
        Ok(Config {
            enabled: k.enabled,
            service_name,
            service_realm: realm,
            secret,
            target_spn: k.target_spn.clone(),
            token: k.token,
            allow_rc4: k.allow_rc4,
            cache_size: k.cache_size,
            renew_before: Duration::from_secs(k.renew_before_seconds as u64),
            transport: f.kdc.transport,
            timeout: Duration::from_millis(f.kdc.timeout_ms),
            retry_first: Duration::from_secs(f.kdc.retry_first_seconds),
            domains,
        })
    }

    /// The realm that holds `user`: the configured realm its UPN suffix names ("bob@other.test"
    /// -> OTHER.TEST), else the service account's (a UPN suffix need not be a realm; the
    /// enterprise name lets that KDC find the account).
    pub fn user_realm(&self, user: &str) -> &str {
        if let Some((_, suffix)) = user.rsplit_once('@') {
            let up = suffix.to_uppercase();
            if let Some(d) = self.domains.iter().find(|d| d.realm == up) {
                return &d.realm;
            }
        }
        &self.service_realm
    }

    /// The KDCs of `realm`, in the configured order.
    pub fn kdcs(&self, realm: &str) -> Option<&[String]> {
        self.domains.iter().find(|d| d.realm == realm).map(|d| d.kdcs.as_slice())
    }

    /// The etypes the gateway asks for, best first.
    pub fn etypes(&self) -> Vec<i32> {
        let mut v = vec![18, 17];
        if self.allow_rc4 {
            v.push(23);
        }
        v
    }
}
