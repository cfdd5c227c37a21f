//! The gateway's Kerberos constrained delegation client: the service account logs in (AS
//! exchange, TGT kept and replaced before it expires), then for each user S4U2Self and
//! S4U2Proxy give a service ticket to the target SPN, from which each request gets a fresh
//! AP-REQ wrapped for `Authorization: Negotiate`.
//!
//! Messages are built and read by `proto` (pure); `transport` moves them; this file holds
//! the state: the TGT, the ticket cache with one S4U exchange per (user, SPN) at a time,
//! the clock offset adopted from a KDC, and the events every exchange produces.

#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub use kcd_crypto::keytab;
pub use kcd_krb5::pac;
pub mod proto;
pub mod transport;

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use kcd_crypto::{Etype, Key};
use kcd_krb5::asn1::{EtypeInfo2Entry, KdcRep, KrbError, PrincipalName};
use kcd_krb5::KrbMessage;
use kcd_schema::{
    Direction, ErrorCode, Event, EventType, Gateway, KcdStep, Krb5, MessageType, RequestRef,
    Timestamp, Transport,
};
use tokio::sync::OnceCell;

pub use config::{Config, Secret, TokenFormat, TransportMode};
pub use error::{Attempt, KcdError};
use proto::{Creds, Now, ProtoError};
use transport::{Kdcs, Wire};

/// Where the client's events go (the gateway's event stream, a file, a test's list).
pub trait EventSink: Send + Sync {
    fn event(&self, e: &Event<'_>);
    /// Pushes buffered events out (the default has none).
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Drops every event.
pub struct NoEvents;
impl EventSink for NoEvents {
    fn event(&self, _: &Event<'_>) {}
}

/// Keeps events as JSON lines, for tests and for the command's `--events`.
#[derive(Default)]
pub struct JsonLines(pub Mutex<Vec<String>>);
impl EventSink for JsonLines {
    fn event(&self, e: &Event<'_>) {
        let mut b = Vec::new();
        e.write_json(&mut b);
        if let Ok(mut v) = self.0.lock() {
            v.push(String::from_utf8_lossy(&b).into_owned());
        }
    }
}

/// A token for the target service.
#[derive(Clone)]
pub struct Token {
    /// The GSS token (SPNEGO or raw krb5, as configured).
    pub bytes: Vec<u8>,
    /// The user as the KDC named it in the ticket ("alice@LAB.TEST").
    pub client: String,
    pub spn: String,
    /// The service ticket came from the cache (no KDC exchange for this token).
    pub cached: bool,
    /// The ticket's end time (Unix seconds).
    pub endtime: i64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(for {} to {}, {} bytes, redacted)", self.client, self.spn, self.bytes.len())
    }
}

impl Token {
    /// The value of the `Authorization` header.
    pub fn header_value(&self) -> String {
        format!("Negotiate {}", base64::engine::general_purpose::STANDARD.encode(&self.bytes))
    }
}

type CacheKey = (String, String);
/// A key from the password: (etype, salt, s2kparams) it was derived with, and the key;
/// string-to-key is 4096 rounds of PBKDF2, worth doing once per login.
type DerivedKey = (i32, Vec<u8>, Option<Vec<u8>>, Key);
type Flight = Arc<OnceCell<Result<Arc<Creds>, KcdError>>>;

/// Service tickets per (user, SPN), bounded: when full, the oldest entry goes.
struct Cache<V> {
    map: HashMap<CacheKey, V>,
    order: VecDeque<CacheKey>,
    cap: usize,
    /// Entries pushed out by newer ones: a cache too small for the devices shows here first.
    evicted: u64,
}

impl<V> Cache<V> {
    fn new(cap: usize) -> Self {
        Self { map: HashMap::new(), order: VecDeque::new(), cap, evicted: 0 }
    }

    /// A rare event (an account renamed): the linear scan keeps `order` free of stale keys.
    fn remove(&mut self, k: &CacheKey) {
        if self.map.remove(k).is_some() {
            self.order.retain(|o| o != k);
        }
    }

    fn insert(&mut self, k: CacheKey, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
        }
        while self.map.len() > self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    if self.map.remove(&old).is_some() {
                        self.evicted += 1;
                    }
                }
                None => break,
            }
        }
    }
}

pub struct KcdClient {
    cfg: Config,
    sink: Arc<dyn EventSink>,
    tgt: tokio::sync::Mutex<Option<Arc<Creds>>>,
    long_term: Mutex<Option<DerivedKey>>,
    /// The salt the KDC gave at login: the service account's other keys use it too.
    login_salt: Mutex<Option<EtypeInfo2Entry>>,
    cache: Mutex<Cache<Arc<Creds>>>,
    flights: Mutex<HashMap<CacheKey, Flight>>,
    /// KDC clock minus ours, seconds, adopted after KRB_AP_ERR_SKEW.
    offset: AtomicI64,
    /// The KDC whose clock was adopted, and its offset: a target that then refuses the
    /// token for skew is explained by it.
    adopted: Mutex<Option<(String, i64)>>,
    /// Per SPN, a user for whom S4U2Proxy succeeded: when it then fails for another user
    /// with a non-forwardable S4U2Self ticket, the service account's settings are right and
    /// the user is the cause. Bounded by MAX_DELEGATED_SPNS.
    delegated: Mutex<HashMap<String, String>>,
    /// The last authenticator time handed out, in microseconds: each token gets a later one.
    last_us: AtomicI64,
    frame: AtomicU64,
    /// Per realm, the KDC that answered last and since when (or since the first KDC was
    /// last tried again): asked first next time, so that a dead first domain controller
    /// costs one timeout per `retry_first`, not one per request.
    preferred: Mutex<HashMap<String, (String, std::time::Instant)>>,
    /// Per user realm, the cross-realm TGT (krbtgt/USER-REALM@SERVICE-REALM) of the service
    /// account: one per realm, not one per user.
    cross: Mutex<HashMap<String, Arc<Creds>>>,
    /// What the service realm's KDC does with an enterprise name in S4U2Self: ENTERPRISE_*.
    enterprise: AtomicU8,
    /// UPN -> account name, from the PACs of earlier S4U2Self tickets, for a KDC that keeps
    /// enterprise names: the next ticket of that user is asked for under the account name
    /// at once. Bounded like the ticket cache.
    accounts: Mutex<Cache<String>>,
    /// The KDC's PACs carry no UPN (MIT's KDC without a PAC-issuing database module), so a
    /// ticket asked for under an account name can never be confirmed as the user's: every
    /// user is asked for under the enterprise name at once, not twice. Set from each
    /// enterprise-name ticket that can be read, so that one with a UPN clears it.
    no_pac_upn: AtomicBool,
    /// Held by the user whose S4U2Self is to teach `enterprise`; others asked meanwhile wait
    /// for that answer (a bounded time) instead of each paying the second S4U2Self.
    learning: tokio::sync::Mutex<()>,
}

/// Not yet seen: the enterprise name is sent first.
const ENTERPRISE_UNKNOWN: u8 = 0;
/// The KDC answers S4U2Self for an enterprise name with the account's own name (MIT).
const ENTERPRISE_CANONICALISED: u8 = 1;
/// The KDC keeps the enterprise name in the ticket (Samba's Heimdal KDC copies the
/// requested name for a TGS-REQ whatever the canonicalize option says), so the target
/// would see "alice\@lab.test@LAB.TEST": users are asked for under their account name.
const ENTERPRISE_KEPT: u8 = 2;

/// What the KDC said to one request.
enum Answer {
    Rep(KdcRep),
    Err(KrbError),
}

struct Exchanged {
    answer: Answer,
    kdc: String,
    nonce: u32,
}

fn random_u31() -> Result<u32, ()> {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).map_err(|_| ())?;
    Ok(u32::from_be_bytes(b) & 0x7fff_ffff)
}

fn local_micros() -> i64 {
    transport::now_timestamp().0 / 1000
}

impl KcdClient {
    pub fn new(cfg: Config, sink: Arc<dyn EventSink>) -> Self {
        let cap = cfg.cache_size;
        Self {
            cfg,
            sink,
            tgt: tokio::sync::Mutex::new(None),
            long_term: Mutex::new(None),
            login_salt: Mutex::new(None),
            cache: Mutex::new(Cache::new(cap)),
            flights: Mutex::new(HashMap::new()),
            offset: AtomicI64::new(0),
            adopted: Mutex::new(None),
            delegated: Mutex::new(HashMap::new()),
            last_us: AtomicI64::new(0),
            frame: AtomicU64::new(0),
            preferred: Mutex::new(HashMap::new()),
            cross: Mutex::new(HashMap::new()),
            enterprise: AtomicU8::new(ENTERPRISE_UNKNOWN),
            accounts: Mutex::new(Cache::new(cap)),
            no_pac_upn: AtomicBool::new(false),
            learning: tokio::sync::Mutex::new(()),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The KDC's clock minus ours, as adopted after a KRB_AP_ERR_SKEW (0 until then).
    pub fn clock_offset_seconds(&self) -> i64 {
        self.offset.load(Ordering::Relaxed)
    }

    /// The KDC whose clock this client adopted after KRB_AP_ERR_SKEW, with the offset
    /// (its clock minus ours, seconds); None while our own clock is used.
    pub fn adopted_clock(&self) -> Option<(String, i64)> {
        self.adopted.lock().ok()?.clone()
    }

    /// Service tickets held.
    pub fn cached_tickets(&self) -> usize {
        self.cache.lock().map(|c| c.map.len()).unwrap_or(0)
    }

    /// Service tickets pushed out of the full cache since this client started.
    pub fn evicted_tickets(&self) -> u64 {
        self.cache.lock().map(|c| c.evicted).unwrap_or(0)
    }

    /// UPNs whose account name is remembered (for a KDC that keeps enterprise names).
    pub fn known_account_names(&self) -> usize {
        self.accounts.lock().map(|c| c.map.len()).unwrap_or(0)
    }

    /// Account names pushed out of that full table since this client started.
    pub fn evicted_account_names(&self) -> u64 {
        self.accounts.lock().map(|c| c.evicted).unwrap_or(0)
    }

    /// Our clock as the KDC sees it: local time plus the adopted offset.
    fn now(&self) -> Now {
        let us = local_micros() + self.offset.load(Ordering::Relaxed) * 1_000_000;
        Now { secs: us.div_euclid(1_000_000), usec: us.rem_euclid(1_000_000) as i32 }
    }

    /// A time no earlier authenticator of this process has used, so that (ctime, cusec)
    /// alone tell tokens apart for any replay cache.
    fn unique_now(&self) -> Now {
        let want = local_micros() + self.offset.load(Ordering::Relaxed) * 1_000_000;
        let prev = self.last_us.fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| Some(want.max(last + 1)));
        let us = match prev {
            Ok(last) | Err(last) => want.max(last + 1),
        };
        Now { secs: us.div_euclid(1_000_000), usec: us.rem_euclid(1_000_000) as i32 }
    }

    fn next_frame(&self) -> u64 {
        self.frame.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A token for `user` (a UPN such as "alice@lab.test") to `spn` (the configured target
    /// SPN when None).
    pub async fn token(&self, user: &str, spn: Option<&str>) -> Result<Token, KcdError> {
        self.token_reported(user, spn, true).await
    }

    /// As `token`, for a caller whose own event tells each use (the gateway's request event
    /// carries `kcd.cache_hit`): a token from the cache writes no `token` event, one that
    /// cost a KDC exchange or failed does. (At 20,000 requests a second the cache hits were
    /// half the events written and a tenth of the gateway's CPU.)
    pub async fn token_for_request(&self, user: &str) -> Result<Token, KcdError> {
        self.token_reported(user, None, false).await
    }

    async fn token_reported(&self, user: &str, spn: Option<&str>, report_hits: bool) -> Result<Token, KcdError> {
        let spn = spn.unwrap_or(&self.cfg.target_spn).to_string();
        let r = self.token_inner(user, &spn).await;
        let (outcome, detail, finding) = match &r {
            Ok(t) if t.cached && !report_hits => return r,
            Ok(t) if t.cached => ("cache_hit", None, None),
            Ok(_) => ("issued", None, None),
            Err(e) => ("failed", Some(Cow::Owned(e.to_string())), Some(Cow::Borrowed(e.finding_id()))),
        };
        self.kcd_event(Gateway {
            user: Some(Cow::Borrowed(user)),
            spn: Some(Cow::Borrowed(&spn)),
            detail,
            finding,
            ..Gateway::new(KcdStep::Token, outcome)
        });
        r
    }

    async fn token_inner(&self, user: &str, spn: &str) -> Result<Token, KcdError> {
        check_user(user)?;
        check_spn(spn)?;
        let (creds, cached) = self.service_ticket(user, spn).await?;
        self.token_from(&creds, spn, cached)
    }

    /// Builds the AP-REQ token from a service ticket: the per-request cost once the ticket
    /// is cached.
    fn token_from(&self, creds: &Creds, spn: &str, cached: bool) -> Result<Token, KcdError> {
        let seq = random_u31().map_err(|_| KcdError::Random { step: KcdStep::Token })?;
        let raw = proto::krb5_token(creds, self.unique_now(), seq).map_err(|e| KcdError::BadReply {
            step: KcdStep::Token,
            kdc: String::new(),
            detail: e.to_string(),
        })?;
        let bytes = match self.cfg.token {
            TokenFormat::Krb5 => raw,
            TokenFormat::Spnego => proto::spnego_token(&raw),
        };
        Ok(Token {
            bytes,
            client: format!("{}@{}", creds.client.display(), creds.crealm),
            spn: spn.to_string(),
            cached,
            endtime: creds.endtime,
        })
    }

    fn fresh(&self, c: &Creds) -> bool {
        c.endtime - self.cfg.renew_before.as_secs() as i64 > self.now().secs
    }

    fn cached(&self, key: &CacheKey) -> Option<Arc<Creds>> {
        let c = self.cache.lock().ok()?;
        c.map.get(key).filter(|c| self.fresh(c)).cloned()
    }

    /// The service ticket for (user, SPN): from the cache, or from one S4U exchange shared
    /// by every caller asking for the same pair meanwhile.
    async fn service_ticket(&self, user: &str, spn: &str) -> Result<(Arc<Creds>, bool), KcdError> {
        let key = (user.to_lowercase(), spn.to_string());
        if let Some(c) = self.cached(&key) {
            return Ok((c, true));
        }
        let flight: Flight = match self.flights.lock() {
            Ok(mut m) => m.entry(key.clone()).or_default().clone(),
            Err(_) => Arc::new(OnceCell::new()),
        };
        let mut mine = false;
        let r = flight
            .get_or_init(|| {
                mine = true;
                async {
                    // A flight that just landed may have filled the cache.
                    if let Some(c) = self.cached(&key) {
                        return Ok(c);
                    }
                    let c = Arc::new(self.s4u(user, spn).await?);
                    if let Ok(mut cache) = self.cache.lock() {
                        cache.insert(key.clone(), c.clone());
                    }
                    Ok(c)
                }
            })
            .await
            .clone();
        if let Ok(mut m) = self.flights.lock() {
            if m.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                m.remove(&key);
            }
        }
        r.map(|c| (c, !mine))
    }

    /// The service account's TGT, logging in when there is none or it is about to end.
    async fn tgt(&self, force: bool) -> Result<Arc<Creds>, KcdError> {
        let mut g = self.tgt.lock().await;
        if let Some(t) = g.as_ref().filter(|t| !force && self.fresh(t)) {
            return Ok(t.clone());
        }
        let t = Arc::new(self.login().await?);
        *g = Some(t.clone());
        Ok(t)
    }

    fn service_principal(&self) -> PrincipalName {
        let parts: Vec<&str> = self.cfg.service_name.iter().map(String::as_str).collect();
        PrincipalName::new(proto::NT_PRINCIPAL, &parts)
    }

    /// The etypes usable for the service account: with a keytab, those it holds keys for.
    fn login_etypes(&self) -> Vec<i32> {
        let mut v = self.cfg.etypes();
        if let Secret::Keytab { entries, .. } = &self.cfg.secret {
            v.retain(|e| entries.iter().any(|k| k.etype == *e));
        }
        v
    }

    fn long_term_key(&self, info: &EtypeInfo2Entry) -> Result<Key, KcdError> {
        let etype = Etype::from_number(info.etype).ok_or_else(|| KcdError::NoCommonEtype {
            offered: vec![info.etype],
            usable: self.login_etypes(),
        })?;
        match &self.cfg.secret {
            Secret::Keytab { path, entries } => entries
                .iter()
                .filter(|k| k.etype == info.etype)
                .max_by_key(|k| k.kvno)
                .ok_or_else(|| KcdError::Keytab {
                    path: path.display().to_string(),
                    problem: format!("no key of etype {}", info.etype),
                })
                .and_then(|k| {
                    Key::from_bytes(etype, &k.key).map_err(|e| KcdError::Keytab {
                        path: path.display().to_string(),
                        problem: e.to_string(),
                    })
                }),
            Secret::Password(pw) => {
                let salt = match &info.salt {
                    Some(s) => s.as_bytes().to_vec(),
                    None if etype == Etype::Rc4Hmac => Vec::new(),
                    None => proto::default_salt(&self.cfg.service_realm, &self.service_principal()),
                };
                let params = info.s2kparams.as_ref().map(|p| p.to_vec());
                if let Ok(g) = self.long_term.lock() {
                    if let Some((e, s, p, k)) = g.as_ref() {
                        if *e == info.etype && *s == salt && *p == params {
                            return Ok(k.clone());
                        }
                    }
                }
                let k = Key::from_password(etype, pw, &salt, params.as_deref()).map_err(|e| KcdError::BadReply {
                    step: KcdStep::Login,
                    kdc: String::new(),
                    detail: format!("string-to-key with the KDC's parameters: {e}"),
                })?;
                if let Ok(mut g) = self.long_term.lock() {
                    *g = Some((info.etype, salt, params, k.clone()));
                }
                Ok(k)
            }
        }
    }

    /// AS exchange: first without pre-authentication to learn the salt (ETYPE-INFO2 in
    /// PREAUTH_REQUIRED), then with PA-ENC-TIMESTAMP.
    async fn login(&self) -> Result<Creds, KcdError> {
        let step = KcdStep::Login;
        let me = self.service_principal();
        let realm = self.cfg.service_realm.clone();
        let etypes = self.login_etypes();
        if etypes.is_empty() {
            return Err(KcdError::NoCommonEtype { offered: Vec::new(), usable: self.cfg.etypes() });
        }
        let first = self
            .exchange(step, None, None, &realm, |now, nonce| proto::as_req(&me, &realm, nonce, now, &etypes, Vec::new()))
            .await?;
        let (info, cookie) = match first.answer {
            Answer::Err(e) if e.error_code == 25 => proto::preauth_hints(&e),
            Answer::Err(e) => return Err(self.kdc_error(step, &first.kdc, &e)),
            Answer::Rep(rep) => {
                // No pre-authentication required for this account: the reply itself says
                // which key it is under.
                let info = proto::as_rep_hints(&rep)
                    .into_iter()
                    .find(|i| i.etype == rep.enc_part.etype)
                    .unwrap_or(EtypeInfo2Entry { etype: rep.enc_part.etype, salt: None, s2kparams: None });
                let key = self.long_term_key(&info)?;
                return self.as_creds(&rep, &key, first.nonce, &first.kdc);
            }
        };
        let Some(chosen) = info.iter().find(|i| etypes.contains(&i.etype)).cloned() else {
            return Err(KcdError::NoCommonEtype { offered: info.iter().map(|i| i.etype).collect(), usable: etypes });
        };
        let key = self.long_term_key(&chosen)?;
        if let Ok(mut g) = self.login_salt.lock() {
            *g = Some(chosen.clone());
        }
        let second = self
            .exchange(step, None, None, &realm, |now, nonce| {
                let mut pa = vec![proto::pa_enc_timestamp(&key, now)?];
                if let Some(c) = &cookie {
                    pa.push(kcd_krb5::asn1::PaData { r#type: proto::PA_FX_COOKIE, value: c.clone().into() });
                }
                proto::as_req(&me, &realm, nonce, now, &[chosen.etype], pa)
            })
            .await?;
        match second.answer {
            Answer::Err(e) if e.error_code == 24 => match &self.cfg.secret {
                // The key is the keytab's, not a password's: say which keytab is stale.
                Secret::Keytab { path, entries } => Err(KcdError::StaleKeytab {
                    kdc: second.kdc.clone(),
                    path: path.display().to_string(),
                    kvno: entries.iter().filter(|k| k.etype == chosen.etype).map(|k| k.kvno).max().unwrap_or(0),
                    etype: chosen.etype,
                }),
                Secret::Password(_) => Err(self.kdc_error(step, &second.kdc, &e)),
            },
            Answer::Err(e) => Err(self.kdc_error(step, &second.kdc, &e)),
            Answer::Rep(rep) => {
                // RFC 4120 3.1.5: ETYPE-INFO2 in the reply wins over the earlier one.
                let key = match proto::as_rep_hints(&rep).into_iter().find(|i| i.etype == rep.enc_part.etype) {
                    Some(i) if i != chosen => self.long_term_key(&i)?,
                    _ => key,
                };
                self.as_creds(&rep, &key, second.nonce, &second.kdc)
            }
        }
    }

    fn as_creds(&self, rep: &KdcRep, key: &Key, nonce: u32, kdc: &str) -> Result<Creds, KcdError> {
        proto::read_as_rep(rep, key, nonce).map_err(|e| KcdError::BadReply {
            step: KcdStep::Login,
            kdc: kdc.to_string(),
            detail: e.to_string(),
        })
    }

    /// Learns what the service realm's KDC does with an enterprise name in S4U2Self before
    /// any user asks, so that the first user too costs one S4U2Self: an S4U2Self for the
    /// service account itself under its enterprise name (`svc@REALM`), a name every KDC
    /// holds. Samba's KDC keeps it in the ticket, MIT's answers with the account's own name.
    /// Users who arrive meanwhile wait for the answer as they would for a user teaching it
    /// (at most LEARNING_WAIT). On failure (no KDC yet, a KDC that refuses it) the first
    /// user teaches it as before. The answer: whether the KDC keeps enterprise names; None
    /// when it was known already.
    pub async fn learn_enterprise_names(&self) -> Result<Option<bool>, KcdError> {
        let known = || self.enterprise.load(Ordering::Relaxed) != ENTERPRISE_UNKNOWN;
        if known() {
            return Ok(None);
        }
        let _gate = self.learning.lock().await;
        if known() {
            return Ok(None);
        }
        let mut tgt = self.tgt(false).await?;
        let realm = self.cfg.service_realm.clone();
        let me = proto::enterprise_self(&self.service_principal(), &realm);
        let name = format!("{}@{realm}", self.service_principal().display());
        let spn = self.cfg.target_spn.clone();
        let event = |outcome: &'static str, kdc: Option<&str>, detail: String| {
            self.kcd_event(Gateway {
                user: Some(Cow::Borrowed(&name)),
                spn: Some(Cow::Borrowed(&spn)),
                kdc: kdc.map(Cow::Borrowed),
                detail: Some(Cow::Owned(detail)),
                ..Gateway::new(KcdStep::S4u2self, outcome)
            })
        };
        let (ticket, kdc) = match self.s4u2self(&mut tgt, &name, &spn, &me).await {
            Ok(x) => x,
            Err(e) => {
                // MIT's KDC holds an enterprise name only as an alias in its database.
                let kdc = match &e {
                    KcdError::Kdc { kdc, .. } => Some(kdc.clone()),
                    _ => None,
                };
                event(
                    "enterprise_unknown",
                    kdc.as_deref(),
                    format!("asked for the service account as the enterprise name {name} to learn what the KDC does with enterprise names: {e}; the first user's S4U2Self will show it"),
                );
                return Err(e);
            }
        };
        let kept = ticket.client.name_type == proto::NT_ENTERPRISE;
        let no_upn = kept && self.note_pac_without_upn(&ticket) == Some(true);
        self.enterprise.store(if kept { ENTERPRISE_KEPT } else { ENTERPRISE_CANONICALISED }, Ordering::Release);
        let (outcome, does, then) = if no_upn {
            ("enterprise_kept", "keeps", "its PACs carry no UPN to confirm an account name by, so users are asked for under their enterprise names")
        } else if kept {
            ("enterprise_kept", "keeps", "users are asked for under their account names")
        } else {
            ("enterprise_canonicalised", "canonicalises", "users are asked for under their UPNs")
        };
        event(
            outcome,
            Some(&kdc),
            format!(
                "the KDC {does} enterprise names in S4U2Self tickets (asked for the service account as the enterprise name {name}, its ticket names {} of name-type {}): {then}",
                ticket.client.display(),
                ticket.client.name_type
            ),
        );
        Ok(Some(kept))
    }

    /// S4U2Self then S4U2Proxy.
    async fn s4u(&self, user: &str, spn: &str) -> Result<Creds, KcdError> {
        let mut tgt = self.tgt(false).await?;
        let realm = self.cfg.service_realm.clone();
        let etypes = self.cfg.etypes();
        let me = self.service_principal();

        let user_realm = self.cfg.user_realm(user).to_string();
        let (evidence, kdc) = if user_realm == realm {
            // Until the KDC's way with enterprise names is known, the first user's answer
            // teaches it while the others wait (at most LEARNING_WAIT, so that a KDC outage
            // does not queue every device behind one).
            let unknown = || self.enterprise.load(Ordering::Relaxed) == ENTERPRISE_UNKNOWN;
            let gate = if user.contains('@') && unknown() { tokio::time::timeout(LEARNING_WAIT, self.learning.lock()).await.ok() } else { None };
            let _gate = gate.filter(|_| unknown());
            match self.s4u2self_by_account(&mut tgt, user, spn, &realm).await? {
                Some(x) => x,
                None => self.s4u2self_enterprise(&mut tgt, user, spn, &realm).await?,
            }
        } else {
            self.s4u2self_cross(&mut tgt, user, spn, &proto::user_principal(user), &user_realm).await?
        };
        let forwardable = evidence.forwardable();
        self.kcd_event(Gateway {
            user: Some(Cow::Borrowed(user)),
            spn: Some(Cow::Borrowed(spn)),
            kdc: Some(Cow::Borrowed(&kdc)),
            forwardable: Some(forwardable),
            ..Gateway::new(KcdStep::S4u2self, if forwardable { "forwardable" } else { "not_forwardable" })
        });

        let target = proto::spn_principal(spn);
        let x = self
            .exchange(KcdStep::S4u2proxy, Some(user), Some(spn), &realm, |now, nonce| {
                proto::s4u2proxy_req(&tgt, &evidence, &target, &realm, nonce, now, &etypes)
            })
            .await?;
        match x.answer {
            Answer::Err(e) => {
                let mut err = self.kdc_error(KcdStep::S4u2proxy, &x.kdc, &e);
                if let KcdError::Kdc { evidence_forwardable, user_not_delegated, other_users_delegated, .. } = &mut err {
                    *evidence_forwardable = Some(forwardable);
                    if !forwardable {
                        *user_not_delegated = self.ticket_part(&evidence).and_then(|p| pac::ticket_not_delegated(&p));
                    }
                    *other_users_delegated = self
                        .delegated
                        .lock()
                        .ok()
                        .and_then(|m| m.get(spn).map(|u| !u.eq_ignore_ascii_case(user)))
                        .unwrap_or(false);
                }
                Err(err)
            }
            Answer::Rep(rep) => {
                let bad = |d: ProtoError| KcdError::BadReply { step: KcdStep::S4u2proxy, kdc: x.kdc.clone(), detail: d.to_string() };
                let c = proto::read_tgs_rep(&rep, &tgt, x.nonce).map_err(bad)?;
                proto::check_s4u_client(&c, &me).map_err(bad)?;
                if c.server != target {
                    return Err(bad(ProtoError::Reply(format!("the ticket is for {}, not {spn}", c.server.display()))));
                }
                if let Ok(mut m) = self.delegated.lock() {
                    if m.len() >= MAX_DELEGATED_SPNS && !m.contains_key(spn) {
                        m.clear();
                    }
                    m.insert(spn.to_string(), user.to_string());
                }
                Ok(c)
            }
        }
    }

    /// S4U2Self under the user's account name, for a KDC known to keep enterprise names:
    /// the name its PAC gave for this UPN before, else the UPN's name part when its suffix
    /// is the realm. The ticket is kept only when its PAC's own UPN (not one the KDC
    /// constructed) is the user's: then it is the account the enterprise name names. None:
    /// ask under the enterprise name.
    async fn s4u2self_by_account(&self, tgt: &mut Arc<Creds>, user: &str, spn: &str, realm: &str) -> Result<Option<(Creds, String)>, KcdError> {
        if self.enterprise.load(Ordering::Acquire) != ENTERPRISE_KEPT || self.no_pac_upn.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let key = (user.to_lowercase(), realm.to_string());
        let remembered = self.accounts.lock().ok().and_then(|c| c.map.get(&key).cloned());
        let (mut account, mut source) = match remembered {
            Some(a) => (a, "the PAC of an earlier ticket"),
            None => match user.rsplit_once('@') {
                Some((name, suffix)) if suffix.eq_ignore_ascii_case(realm) => (name.to_string(), "the UPN's name part"),
                _ => return Ok(None),
            },
        };
        let event = |outcome: &'static str, kdc: Option<&str>, detail: String| {
            self.kcd_event(Gateway {
                user: Some(Cow::Borrowed(user)),
                spn: Some(Cow::Borrowed(spn)),
                kdc: kdc.map(Cow::Borrowed),
                detail: Some(Cow::Owned(detail)),
                ..Gateway::new(KcdStep::S4u2self, outcome)
            })
        };
        let forget = || {
            if let Ok(mut c) = self.accounts.lock() {
                c.remove(&key);
            }
        };
        for round in 0..2 {
            let (evidence, kdc) = match self.s4u2self(tgt, user, spn, &PrincipalName::new(proto::NT_PRINCIPAL, &[account.as_str()])).await {
                Ok(x) => x,
                Err(KcdError::Kdc { kdc, code, .. }) => {
                    forget();
                    event(
                        "account_name_refused",
                        Some(&kdc),
                        format!("the KDC refused the account name {account}@{realm} (from {source}) with error {}: asking under the enterprise name", code.0),
                    );
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            let names = self.pac_names(&evidence);
            let said = match &names {
                Some(n) if n.upn_constructed => format!("has no UPN of its own (the KDC made {})", n.upn),
                Some(n) if !n.upn.eq_ignore_ascii_case(user) => format!("has the UPN {}", n.upn),
                Some(n) => match &n.sam_name {
                    // Found by its UPN under another account name (Samba looks a name up as
                    // a UPN first): the ticket names what was asked, not the account.
                    Some(sam) if !sam.eq_ignore_ascii_case(&account) => {
                        if round == 0 {
                            event(
                                "account_name_other",
                                Some(&kdc),
                                format!("{account}@{realm} (from {source}) found {user}'s account by its UPN, whose account name is {sam}: asking under {sam}"),
                            );
                            if let Ok(mut c) = self.accounts.lock() {
                                c.insert(key.clone(), sam.clone());
                            }
                            account = sam.clone();
                            source = "the PAC of the ticket just issued";
                            continue;
                        }
                        format!("is named {sam}")
                    }
                    _ => {
                        event(
                            "account_name",
                            Some(&kdc),
                            format!("asked for {user} under the account name {account}@{realm} (from {source}): this KDC keeps enterprise names in S4U2Self tickets; the PAC's UPN confirms the account"),
                        );
                        return Ok(Some((evidence, kdc)));
                    }
                },
                None => match self.note_pac_without_upn(&evidence) {
                    Some(true) => "has no UPN in its PAC (this KDC's PACs carry none, so no account name can be confirmed: users are asked for under their enterprise names from now on)".to_string(),
                    _ => "has no PAC that could be read".to_string(),
                },
            };
            forget();
            event("account_name_other", Some(&kdc), format!("the account {account}@{realm} (from {source}) {said}, not {user}: asking under the enterprise name"));
            return Ok(None);
        }
        Ok(None)
    }

    /// S4U2Self under the enterprise name; when the KDC keeps it, asked once more under the
    /// account name the PAC gives, so that the target sees "alice@LAB.TEST" as it would
    /// from a login, and that name is remembered for the next tickets.
    async fn s4u2self_enterprise(&self, tgt: &mut Arc<Creds>, user: &str, spn: &str, realm: &str) -> Result<(Creds, String), KcdError> {
        let (evidence, kdc) = self.s4u2self(tgt, user, spn, &proto::user_principal(user)).await?;
        if evidence.client.name_type != proto::NT_ENTERPRISE {
            if user.contains('@') {
                self.enterprise.store(ENTERPRISE_CANONICALISED, Ordering::Relaxed);
            }
            return Ok((evidence, kdc));
        }
        // (before KEPT is seen: the users waiting for this answer then go straight to
        // their enterprise names when no account name could be confirmed)
        self.note_pac_without_upn(&evidence);
        self.enterprise.store(ENTERPRISE_KEPT, Ordering::Release);
        let Some(name) = self.pac_account(&evidence).filter(|n| n.1 == realm) else {
            return Ok((evidence, kdc));
        };
        let detail = format!("the KDC did not canonicalise {user}; its PAC names {}@{}", name.0, name.1);
        self.kcd_event(Gateway {
            user: Some(Cow::Borrowed(user)),
            spn: Some(Cow::Borrowed(spn)),
            kdc: Some(Cow::Borrowed(&kdc)),
            detail: Some(Cow::Owned(detail)),
            ..Gateway::new(KcdStep::S4u2self, "canonicalised")
        });
        let r = self.s4u2self(tgt, user, spn, &PrincipalName::new(proto::NT_PRINCIPAL, &[name.0.as_str()])).await?;
        if let Ok(mut c) = self.accounts.lock() {
            c.insert((user.to_lowercase(), realm.to_string()), name.0);
        }
        Ok(r)
    }

    /// One S4U2Self exchange; a TGT the KDC no longer takes (expired, or the account's
    /// key changed) is replaced once.
    async fn s4u2self(&self, tgt: &mut Arc<Creds>, user: &str, spn: &str, user_name: &PrincipalName) -> Result<(Creds, String), KcdError> {
        let realm = self.cfg.service_realm.clone();
        let etypes = self.cfg.etypes();
        let me = self.service_principal();
        let mut renewed = false;
        loop {
            let t = tgt.clone();
            let x = self
                .exchange(KcdStep::S4u2self, Some(user), Some(spn), &realm, |now, nonce| {
                    proto::s4u2self_req(&t, user_name, &realm, nonce, now, &etypes)
                })
                .await?;
            match x.answer {
                Answer::Err(e) if !renewed && matches!(e.error_code, 31 | 32 | 41) => {
                    renewed = true;
                    *tgt = self.tgt(true).await?;
                }
                Answer::Err(e) => return Err(self.kdc_error(KcdStep::S4u2self, &x.kdc, &e)),
                Answer::Rep(rep) => {
                    let bad = |d: ProtoError| KcdError::BadReply { step: KcdStep::S4u2self, kdc: x.kdc.clone(), detail: d.to_string() };
                    proto::check_s4u_reply_padata(&rep, &t, x.nonce).map_err(bad)?;
                    let c = proto::read_tgs_rep(&rep, &t, x.nonce).map_err(bad)?;
                    proto::check_s4u_client(&c, &me).map_err(bad)?;
                    return Ok((c, x.kdc));
                }
            }
        }
    }

    /// The service account's cross-realm TGT for `user_realm` (krbtgt/USER-REALM@SERVICE-REALM),
    /// from its own KDC; kept until it is about to end.
    async fn cross_tgt(&self, tgt: &mut Arc<Creds>, user: &str, spn: &str, user_realm: &str) -> Result<Arc<Creds>, KcdError> {
        if let Some(c) = self.cross.lock().ok().and_then(|m| m.get(user_realm).cloned()).filter(|c| self.fresh(c)) {
            return Ok(c);
        }
        let realm = self.cfg.service_realm.clone();
        let etypes = self.cfg.etypes();
        let target = proto::krbtgt(user_realm);
        let mut renewed = false;
        loop {
            let t = tgt.clone();
            let x = self
                .exchange(KcdStep::S4u2self, Some(user), Some(spn), &realm, |now, nonce| {
                    proto::tgs_req_for(&t, &target, &realm, nonce, now, &etypes)
                })
                .await?;
            match x.answer {
                Answer::Err(e) if !renewed && matches!(e.error_code, 31 | 32 | 41) => {
                    renewed = true;
                    *tgt = self.tgt(true).await?;
                }
                // KDC_ERR_S_PRINCIPAL_UNKNOWN for krbtgt/USER-REALM: no trust (nor path) to it.
                Answer::Err(e) if e.error_code == 7 => {
                    return Err(KcdError::NoTrust {
                        kdc: x.kdc,
                        service_realm: realm,
                        user_realm: user_realm.to_string(),
                        code: ErrorCode(7),
                    })
                }
                Answer::Err(e) => return Err(self.kdc_error(KcdStep::S4u2self, &x.kdc, &e)),
                Answer::Rep(rep) => {
                    let bad = |d: String| KcdError::BadReply { step: KcdStep::S4u2self, kdc: x.kdc.clone(), detail: d };
                    let c = proto::read_tgs_rep(&rep, &t, x.nonce).map_err(|e| bad(e.to_string()))?;
                    if proto::tgt_realm(&c.server).as_deref() != Some(user_realm) {
                        // A TGT of an intermediate realm (a transitive path): not followed.
                        return Err(bad(format!(
                            "asked for krbtgt/{user_realm}, got {}@{}: a path through another realm, which the gateway does not follow; give {realm} a direct trust to {user_realm}",
                            c.server.display(),
                            c.srealm
                        )));
                    }
                    let c = Arc::new(c);
                    if let Ok(mut m) = self.cross.lock() {
                        if m.len() >= MAX_DELEGATED_SPNS {
                            m.clear();
                        }
                        m.insert(user_realm.to_string(), c.clone());
                    }
                    return Ok(c);
                }
            }
        }
    }

    /// Cross-realm S4U2Self (MS-SFU 3.1.5.1.1.1, as MIT's krb5_get_self_cred_from_kdc does
    /// it): with the cross-realm TGT, the user realm's KDC is asked for a ticket to us (our
    /// name as an enterprise name, which it does not hold); it answers with a referral TGT
    /// back to our realm carrying the user, which our own KDC then turns into the S4U2Self
    /// ticket.
    async fn s4u2self_cross(
        &self,
        tgt: &mut Arc<Creds>,
        user: &str,
        spn: &str,
        user_name: &PrincipalName,
        user_realm: &str,
    ) -> Result<(Creds, String), KcdError> {
        let realm = self.cfg.service_realm.clone();
        let etypes = self.cfg.etypes();
        let me = self.service_principal();
        let xt = self.cross_tgt(tgt, user, spn, user_realm).await?;
        let me_there = proto::enterprise_self(&me, &realm);
        let x = self
            .exchange(KcdStep::S4u2self, Some(user), Some(spn), user_realm, |now, nonce| {
                proto::s4u2self_req_to(&xt, &me_there, user_realm, user_name, user_realm, nonce, now, &etypes)
            })
            .await?;
        let referral = match x.answer {
            Answer::Err(e) => {
                if matches!(e.error_code, 31 | 32 | 41) {
                    // The cross-realm key changed or the TGT ended: fetch a new one next time.
                    if let Ok(mut m) = self.cross.lock() {
                        m.remove(user_realm);
                    }
                }
                return Err(self.kdc_error(KcdStep::S4u2self, &x.kdc, &e));
            }
            Answer::Rep(rep) => {
                let bad = |d: String| KcdError::BadReply { step: KcdStep::S4u2self, kdc: x.kdc.clone(), detail: d };
                proto::check_s4u_reply_padata(&rep, &xt, x.nonce).map_err(|e| bad(e.to_string()))?;
                let c = proto::read_tgs_rep(&rep, &xt, x.nonce).map_err(|e| bad(e.to_string()))?;
                if proto::tgt_realm(&c.server).as_deref() != Some(realm.as_str()) {
                    return Err(bad(format!(
                        "the KDC of {user_realm} answered with a ticket for {}@{}, not a referral back to {realm}",
                        c.server.display(),
                        c.srealm
                    )));
                }
                c
            }
        };
        self.kcd_event(Gateway {
            user: Some(Cow::Borrowed(user)),
            spn: Some(Cow::Borrowed(spn)),
            kdc: Some(Cow::Borrowed(&x.kdc)),
            detail: Some(Cow::Owned(format!("the KDC of {user_realm} referred the S4U2Self for {user} back to {realm}"))),
            ..Gateway::new(KcdStep::S4u2self, "referral")
        });
        let x = self
            .exchange(KcdStep::S4u2self, Some(user), Some(spn), &realm, |now, nonce| {
                proto::s4u2self_req_to(&referral, &me, &realm, user_name, user_realm, nonce, now, &etypes)
            })
            .await?;
        match x.answer {
            Answer::Err(e) => Err(self.kdc_error(KcdStep::S4u2self, &x.kdc, &e)),
            Answer::Rep(rep) => {
                let bad = |d: ProtoError| KcdError::BadReply { step: KcdStep::S4u2self, kdc: x.kdc.clone(), detail: d.to_string() };
                proto::check_s4u_reply_padata(&rep, &referral, x.nonce).map_err(bad)?;
                let c = proto::read_tgs_rep(&rep, &referral, x.nonce).map_err(bad)?;
                proto::check_s4u_client(&c, &me).map_err(bad)?;
                if c.server != me {
                    return Err(bad(ProtoError::Reply(format!("the S4U2Self ticket is for {}, not {}", c.server.display(), me.display()))));
                }
                Ok((c, x.kdc))
            }
        }
    }

    /// The decrypted part of a ticket made for the service account (an S4U2Self ticket).
    fn ticket_part(&self, t: &Creds) -> Option<kcd_krb5::asn1::EncTicketPart> {
        let etype = t.ticket.enc_part.etype;
        let mut info = self.login_salt.lock().ok()?.clone().unwrap_or(EtypeInfo2Entry { etype, salt: None, s2kparams: None });
        if info.etype != etype {
            info = EtypeInfo2Entry { etype, salt: info.salt, s2kparams: None };
        }
        let key = self.long_term_key(&info).ok()?;
        let plain = zeroize::Zeroizing::new(key.decrypt(2, &t.ticket.enc_part.cipher).ok()?);
        kcd_krb5::decode(proto::outer_tlv(&plain)?).ok()
    }

    fn pac_names(&self, t: &Creds) -> Option<pac::PacNames> {
        pac::ticket_names(&self.ticket_part(t)?)
    }

    /// Whether the KDC's S4U2Self tickets carry a UPN in their PAC, as this one shows:
    /// Some(true) when it has none. A ticket that cannot be decrypted (a keytab without its
    /// etype, a password changed under a live TGT) says nothing about the KDC and changes
    /// nothing; one with a UPN clears what an earlier one taught.
    fn note_pac_without_upn(&self, t: &Creds) -> Option<bool> {
        let none = pac::ticket_names(&self.ticket_part(t)?).is_none();
        self.no_pac_upn.store(none, Ordering::Relaxed);
        Some(none)
    }

    /// The account name and realm in the PAC of a ticket made for the service account.
    fn pac_account(&self, t: &Creds) -> Option<(String, String)> {
        let names = self.pac_names(t)?;
        Some((names.sam_name?, names.dns_domain.to_uppercase()))
    }

    fn kdc_error(&self, step: KcdStep, kdc: &str, e: &KrbError) -> KcdError {
        let ntstatus = e
            .e_data
            .as_deref()
            .map(kcd_krb5::edata::parse_e_data)
            .and_then(|i| i.ntstatus)
            .map(|x| x.status);
        KcdError::Kdc {
            step,
            kdc: kdc.to_string(),
            code: ErrorCode(e.error_code),
            e_text: e.e_text.as_ref().map(|t| t.to_string_lossy()),
            ntstatus,
            evidence_forwardable: None,
            user_not_delegated: None,
            other_users_delegated: false,
            clock_offset_seconds: (e.error_code == 37).then(|| self.kdc_offset(e)).flatten(),
        }
    }

    /// The KDC's stime minus our local clock.
    fn kdc_offset(&self, e: &KrbError) -> Option<i64> {
        let stime = e.stime.unix_seconds()?;
        Some(stime - local_micros().div_euclid(1_000_000))
    }

    /// An event of the gateway's own that is not a message on the wire.
    fn kcd_event(&self, g: Gateway<'_>) {
        let mut e = Event::bare(transport::now_timestamp(), EventType::Kcd, None, self.next_frame());
        e.gateway = Some(g);
        self.sink.event(&e);
    }

    /// One request to the realm's KDCs (built afresh for each try), reported as events.
    /// On KRB_AP_ERR_SKEW the KDC's time is adopted and the request made once more, as
    /// MIT's kdc_timesync does.
    async fn exchange(
        &self,
        step: KcdStep,
        user: Option<&str>,
        spn: Option<&str>,
        realm: &str,
        build: impl Fn(Now, u32) -> Result<Vec<u8>, ProtoError>,
    ) -> Result<Exchanged, KcdError> {
        let Some(names) = self.cfg.kdcs(realm) else {
            return Err(KcdError::Config { key: "domain".into(), problem: format!("no domain controllers for realm {realm}") });
        };
        let mut ordered: Vec<String> = names.to_vec();
        let preferred = match self.preferred.lock() {
            Ok(mut m) => match m.get_mut(realm) {
                // After a fail-over the configured order comes back now and then, so that
                // the first KDC is used again once it is back; the clock restarts here so
                // that one request, not all those in flight, pays if it is still down.
                Some((p, since)) if Some(&*p) != names.first() && since.elapsed() >= self.cfg.retry_first => {
                    *since = std::time::Instant::now();
                    None
                }
                Some((p, _)) => Some(p.clone()),
                None => None,
            },
            Err(_) => None,
        };
        if let Some(p) = preferred {
            if let Some(i) = ordered.iter().position(|n| *n == p) {
                let first = ordered.remove(i);
                ordered.insert(0, first);
            }
        }
        let kdcs = Kdcs { names: &ordered, mode: self.cfg.transport, timeout: self.cfg.timeout };
        let mut skew_retried = false;
        loop {
            let nonce = random_u31().map_err(|_| KcdError::Random { step })?;
            let req = build(self.now(), nonce).map_err(|e| KcdError::BadReply { step, kdc: String::new(), detail: format!("request: {e}") })?;
            let mut sent_frame = 0u64;
            let mut sent_type = MessageType(0);
            let r = kdcs
                .exchange(&req, &mut |w| self.wire_event(step, user, spn, w, &mut sent_frame, &mut sent_type))
                .await;
            let reply = r.map_err(|attempts| KcdError::Unreachable { step, attempts })?;
            if let Ok(mut m) = self.preferred.lock() {
                if m.get(realm).map(|p| &p.0) != Some(&reply.kdc) {
                    m.insert(realm.to_string(), (reply.kdc.clone(), std::time::Instant::now()));
                }
            }
            let answer = match kcd_krb5::decode_message(&reply.bytes) {
                Ok(KrbMessage::AsRep(r)) if step == KcdStep::Login => Answer::Rep(r),
                Ok(KrbMessage::TgsRep(r)) if step != KcdStep::Login => Answer::Rep(r),
                Ok(KrbMessage::Error(e)) => Answer::Err(e),
                Ok(m) => {
                    return Err(KcdError::BadReply { step, kdc: reply.kdc, detail: format!("unexpected {} in reply", m.message_type()) })
                }
                Err(e) => return Err(KcdError::BadReply { step, kdc: reply.kdc, detail: e.to_string() }),
            };
            if let Answer::Err(e) = &answer {
                if e.error_code == 37 && !skew_retried {
                    if let Some(off) = self.kdc_offset(e) {
                        skew_retried = true;
                        self.offset.store(off, Ordering::Relaxed);
                        if let Ok(mut a) = self.adopted.lock() {
                            *a = Some((reply.kdc.clone(), off));
                        }
                        self.kcd_event(Gateway {
                            user: user.map(Cow::Borrowed),
                            spn: spn.map(Cow::Borrowed),
                            kdc: Some(Cow::Borrowed(&reply.kdc)),
                            clock_offset_seconds: Some(off),
                            detail: Some(Cow::Owned(adopted_words(&reply.kdc, off))),
                            finding: Some(Cow::Borrowed(kcd_findings::catalogue::CLOCK_OFFSET.id)),
                            ..Gateway::new(step, "clock_adjusted")
                        });
                        continue;
                    }
                }
            }
            return Ok(Exchanged { answer, kdc: reply.kdc, nonce });
        }
    }

    fn wire_event(&self, step: KcdStep, user: Option<&str>, spn: Option<&str>, w: Wire<'_>, sent_frame: &mut u64, sent_type: &mut MessageType) {
        let frame = self.next_frame();
        let gw = |kdc, attempt, outcome| Gateway {
            user: user.map(Cow::Borrowed),
            spn: spn.map(Cow::Borrowed),
            kdc: Some(Cow::Borrowed(kdc)),
            attempt: Some(attempt),
            ..Gateway::new(step, outcome)
        };
        match w {
            Wire::Sent { kdc, attempt, proto, local, remote, bytes, at } => {
                let mut e = addressed(at, frame, proto, local, remote);
                let mut k = Krb5::default();
                if kcd_decode::krb5::decode(bytes, at, &mut k).is_ok() {
                    *sent_type = k.msg_type;
                    k.direction = Some(Direction::ToKdc);
                    e.krb5 = Some(k);
                }
                *sent_frame = frame;
                e.gateway = Some(gw(kdc, attempt, "request"));
                self.sink.event(&e);
            }
            Wire::Received { kdc, attempt, proto, local, remote, bytes, at, latency } => {
                let mut e = addressed(at, frame, proto, remote, local);
                let mut k = Krb5::default();
                let mut outcome = "bad_reply";
                if kcd_decode::krb5::decode(bytes, at, &mut k).is_ok() {
                    outcome = if k.error.is_some() { "krb_error" } else { "reply" };
                    k.direction = Some(Direction::FromKdc);
                    k.request = Some(RequestRef { pcap_file: None, frame: *sent_frame, msg_type: *sent_type, latency_us: latency.as_micros() as i64 });
                    e.krb5 = Some(k);
                }
                let mut g = gw(kdc, attempt, outcome);
                g.latency_us = Some(latency.as_micros() as i64);
                e.gateway = Some(g);
                self.sink.event(&e);
            }
            Wire::Failed { kdc, attempt, proto, remote, what, timed_out } => {
                let mut e = Event::bare(transport::now_timestamp(), EventType::Kcd, None, frame);
                e.proto = Some(proto);
                e.dest_ip = remote.map(|a| a.ip());
                e.dest_port = remote.map(|a| a.port());
                let mut g = gw(kdc, attempt, if timed_out { "timeout" } else { "unreachable" });
                g.detail = Some(Cow::Owned(what));
                e.gateway = Some(g);
                self.sink.event(&e);
            }
            Wire::Unresolved { kdc, what } => {
                let mut e = Event::bare(transport::now_timestamp(), EventType::Kcd, None, frame);
                let mut g = gw(kdc, 0, "unresolved");
                g.attempt = None;
                g.detail = Some(Cow::Owned(what));
                g.finding = Some(Cow::Borrowed(kcd_findings::catalogue::KDC_NAME_UNRESOLVED.id));
                e.gateway = Some(g);
                self.sink.event(&e);
            }
            Wire::TcpRetry { kdc, attempt } => {
                let mut e = Event::bare(transport::now_timestamp(), EventType::Kcd, None, frame);
                e.gateway = Some(gw(kdc, attempt, "tcp_retry"));
                self.sink.event(&e);
            }
        }
    }
}

/// The longest a user waits for the first user's S4U2Self to show what the KDC does with
/// enterprise names.
const LEARNING_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How many SPNs the delegation history remembers a user for.
const MAX_DELEGATED_SPNS: usize = 1024;

/// What adopting a KDC's clock means, for the event and the command's output.
pub fn adopted_words(kdc: &str, offset: i64) -> String {
    format!(
        "KDC {kdc} refused our time with KRB_AP_ERR_SKEW; its clock is {} s {} this host's, and its time is now used for Kerberos (as MIT's kdc_timesync does). If the target service's clock agrees with this host's, it will refuse the tokens: the KDC's clock is then the wrong one.",
        offset.abs(),
        if offset >= 0 { "ahead of" } else { "behind" }
    )
}

fn addressed<'a>(at: Timestamp, frame: u64, proto: Transport, src: std::net::SocketAddr, dst: std::net::SocketAddr) -> Event<'a> {
    let mut e = Event::bare(at, EventType::Krb5, None, frame);
    e.src_ip = Some(src.ip());
    e.src_port = Some(src.port());
    e.dest_ip = Some(dst.ip());
    e.dest_port = Some(dst.port());
    e.proto = Some(proto);
    e
}

/// A user the gateway will ask for: "alice@lab.test" (a UPN) or "alice".
fn check_user(user: &str) -> Result<(), KcdError> {
    let bad = |p: &str| Err(KcdError::BadUser { user: user.to_string(), problem: p.to_string() });
    if user.is_empty() {
        return bad("empty");
    }
    if user.len() > 256 {
        return bad("longer than 256 bytes");
    }
    if user.chars().any(|c| c.is_control() || c.is_whitespace() || c == '/') {
        return bad("contains a space, '/' or a control character");
    }
    if user.matches('@').count() > 1 || user.starts_with('@') || user.ends_with('@') {
        return bad("not a UPN (name@domain)");
    }
    Ok(())
}

fn check_spn(spn: &str) -> Result<(), KcdError> {
    if !proto::is_spn(spn) {
        return Err(KcdError::BadSpn { spn: spn.to_string(), problem: "not service/host (HTTP/exchange.lab.test)".into() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticket_cache_stays_within_its_size() {
        let mut c = Cache::new(100);
        for i in 0..10_000 {
            c.insert((format!("user{i}@lab.test"), "HTTP/x".into()), i);
            // A renewal of a ticket already held does not grow it either.
            c.insert((format!("user{i}@lab.test"), "HTTP/x".into()), i);
        }
        assert_eq!(c.map.len(), 100);
        assert!(c.order.len() <= 100);
        // The newest stay.
        assert_eq!(c.map.get(&("user9999@lab.test".to_string(), "HTTP/x".to_string())), Some(&9999));
        assert!(!c.map.contains_key(&("user0@lab.test".to_string(), "HTTP/x".to_string())));
        assert_eq!(c.evicted, 9_900);
    }

    /// 100,000 distinct users through a cache of the default size: it stays at its cap, every
    /// eviction is counted, and its memory is flat: the second 50,000 users allocate nothing
    /// more than the first did.
    #[test]
    fn a_hundred_thousand_users_keep_the_cache_at_its_cap() {
        // The table's allocation is its bucket count; `capacity()` is 7/8 of it less the
        // tombstones of removed entries, so the power of two above capacity * 8/7 is it.
        fn buckets(c: &Cache<u32>) -> usize {
            (c.map.capacity() * 8 / 7).next_power_of_two()
        }
        let cap = 10_000;
        let mut c = Cache::new(cap);
        let mut at_half = (0, 0);
        for i in 0..100_000u32 {
            c.insert((format!("user{i}@lab.test"), "HTTP/exchange.lab.test".into()), i);
            assert!(c.map.len() <= cap);
            if i == 49_999 {
                at_half = (buckets(&c), c.order.capacity());
            }
        }
        assert_eq!(c.map.len(), cap);
        assert_eq!(c.order.len(), cap);
        assert_eq!(c.evicted, 90_000);
        assert_eq!((buckets(&c), c.order.capacity()), at_half);
        // At most 4 buckets per entry: under churn a table more than half full doubles once
        // to reclaim its tombstones, and stays there.
        assert!(at_half.0 <= 4 * cap, "{at_half:?}");
    }

    #[test]
    fn a_forgotten_account_name_leaves_no_stale_order() {
        let mut c = Cache::new(3);
        for round in 0..1000 {
            let k = ("alice@lab.test".to_string(), "LAB.TEST".to_string());
            c.insert(k.clone(), format!("alice{round}"));
            c.remove(&k);
        }
        assert!(c.map.is_empty() && c.order.is_empty(), "{} {}", c.map.len(), c.order.len());
        for i in 0..5 {
            c.insert((format!("u{i}@lab.test"), "LAB.TEST".into()), format!("u{i}"));
        }
        assert_eq!((c.map.len(), c.order.len(), c.evicted), (3, 3, 2));
    }

    #[test]
    fn names_the_gateway_refuses_to_ask_for() {
        for bad in ["", "a b@lab.test", "@lab.test", "alice@", "a@b@c", "HTTP/x@lab.test", "a\u{0}b"] {
            assert!(matches!(check_user(bad), Err(KcdError::BadUser { .. })), "{bad:?}");
        }
        assert!(check_user(&"a".repeat(300)).is_err());
        for good in ["alice@lab.test", "alice", "j.smith@corp.example.com"] {
            assert!(check_user(good).is_ok(), "{good:?}");
        }
        for bad in ["HTTP", "HTTP/", "/x", "HTTP/x@REALM", "HTTP/a b"] {
            assert!(check_spn(bad).is_err(), "{bad:?}");
        }
    }
}
