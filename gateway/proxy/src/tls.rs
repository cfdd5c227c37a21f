//! The device side's TLS: a `WebPkiClientVerifier` built without CRLs (chain, validity,
//! Client Authentication EKU when present) wrapped in our own verifier, which then applies
//! the EKU policy and checks revocation in our CRL index. The wrapper reports to the slot of
//! the connection being handshaken, so that the reason for a refusal (and the verified
//! certificate) reaches the event of that connection; resumption off, so that every
//! connection is verified afresh.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use kcd_cert::CertInfo;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};

use crate::config::{FailMode, GatewayConfig};
use crate::crl::{is_http, Checked, Refusal, Snapshot};
use crate::reason::Reason;

/// What a generation of the configuration verifies with.
pub struct Verifier {
    inner: Arc<dyn ClientCertVerifier>,
    pub anchors: Vec<CertInfo>,
    allow_no_eku: bool,
    fail: FailMode,
    revocation: Arc<ArcSwap<Snapshot>>,
    /// CDP URLs seen in certificates, for the fetcher.
    learn: Arc<dyn Fn(&str) + Send + Sync>,
    /// How long a handshake waits for the first fetch of the CDPs it brings.
    first_wait: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verifier({} anchors)", self.anchors.len())
    }
}

/// The verdict on one connection's certificate.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub leaf: Option<Arc<CertInfo>>,
    pub intermediates: Vec<CertInfo>,
    pub refusal: Option<Refusal>,
    pub revocation: Option<Checked>,
    /// A CRL problem let through because `crl.fail = "open"`.
    pub soft_fail: Option<Refusal>,
}

impl Verifier {
    pub fn new(
        cfg: &GatewayConfig,
        revocation: Arc<ArcSwap<Snapshot>>,
        learn: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> Result<Verifier, String> {
        let mut roots = RootCertStore::empty();
        for a in &cfg.anchors {
            roots.add(a.clone()).map_err(|e| format!("client_certificates.chain: {e}"))?;
        }
        let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(crate::provider()))
            .build()
            .map_err(|e| format!("client_certificates.chain: {e}"))?;
        for a in &cfg.anchor_info {
            for u in a.crl_urls.iter().chain(&a.delta_urls).filter(|u| is_http(u)) {
                learn(u);
            }
        }
        for u in &cfg.crl.preload {
            learn(u);
        }
        Ok(Verifier {
            inner,
            anchors: cfg.anchor_info.clone(),
            allow_no_eku: cfg.mapping.allow_no_eku,
            fail: cfg.crl.fail,
            revocation,
            learn,
            first_wait: cfg.crl.first_fetch_wait.min(cfg.limits.handshake_timeout),
        })
    }

    /// The first device of an issuer whose CDP was never fetched: wait (bounded) for that
    /// fetch instead of refusing it with crl_missing. The verifier is called synchronously
    /// inside the handshake, so the wait blocks this worker thread; `block_in_place` hands the
    /// worker's other tasks (the fetcher among them) on first. On a current-thread runtime a
    /// blocking wait would stall the fetch it waits for: there it does not wait.
    fn await_first_fetch<'a>(&self, certs: impl Iterator<Item = &'a CertInfo>) {
        if self.first_wait.is_zero() {
            return;
        }
        let urls: Vec<&String> = certs.flat_map(|c| c.crl_urls.iter().chain(&c.delta_urls)).filter(|u| is_http(u)).collect();
        let missing = || {
            let snap = self.revocation.load();
            urls.iter().any(|u| !snap.urls.contains_key(u.as_str()))
        };
        if !missing() {
            return;
        }
        let multi = tokio::runtime::Handle::try_current().is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if !multi {
            return;
        }
        let deadline = Instant::now() + self.first_wait;
        tokio::task::block_in_place(|| {
            while missing() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    }

    /// Revocation of a verified chain, now: at the handshake and again on every request.
    pub fn revocation(&self, leaf: &CertInfo, intermediates: &[CertInfo]) -> Result<(Option<Checked>, Option<Refusal>), Refusal> {
        let others: Vec<&CertInfo> = intermediates.iter().chain(&self.anchors).collect();
        let snap = self.revocation.load();
        match snap.check_chain(leaf, &others, now()) {
            Ok(c) => Ok((Some(c), None)),
            Err(r) if r.reason != Reason::Revoked && self.fail == FailMode::Open => Ok((None, Some(r))),
            Err(r) => Err(r),
        }
    }

    /// The server configuration of every connection of this generation. Its verifier
    /// reports each verdict to the slot of the connection whose handshake is being driven
    /// (see [`Reporting`]): a configuration per connection would cost each held connection
    /// its own copy (and every handshake the 256-entry session cache that rustls's builder
    /// makes and ours replaces).
    pub fn server_config(self: &Arc<Self>, certs: Arc<dyn rustls::server::ResolvesServerCert>) -> Result<Arc<ServerConfig>, rustls::Error> {
        let v = ConnVerifier { shared: self.clone() };
        let mut c = ServerConfig::builder_with_provider(Arc::new(crate::provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_client_cert_verifier(Arc::new(v))
            .with_cert_resolver(certs);
        // A resumed session skips certificate verification: none are kept or issued.
        c.session_storage = Arc::new(NoServerSessionStorage {});
        c.send_tls13_tickets = 0;
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(c))
    }
}

thread_local! {
    /// The slot of the connection whose handshake this thread is polling, if any.
    static SLOT: RefCell<Option<Arc<Mutex<Verdict>>>> = const { RefCell::new(None) };
}

/// A handshake whose certificate verdict goes to `slot`. rustls calls the verifier inside
/// the handshake future's poll, on the polling thread, so the slot is made that thread's
/// for the length of each poll. A verifier called outside one records nothing, and the
/// connection then has no verified certificate: every request on it is refused (403).
pub struct Reporting<F> {
    slot: Arc<Mutex<Verdict>>,
    inner: F,
}

impl<F> Reporting<F> {
    pub fn new(slot: Arc<Mutex<Verdict>>, inner: F) -> Self {
        Self { slot, inner }
    }
}

impl<F: Future + Unpin> Future for Reporting<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        /// Puts the previous slot back even if the poll unwinds.
        struct Restore(Option<Arc<Mutex<Verdict>>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let prev = self.0.take();
                SLOT.with(|s| *s.borrow_mut() = prev);
            }
        }
        let this = self.get_mut();
        let _restore = Restore(SLOT.with(|s| s.replace(Some(this.slot.clone()))));
        Pin::new(&mut this.inner).poll(cx)
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Debug)]
struct ConnVerifier {
    shared: Arc<Verifier>,
}

impl ConnVerifier {
    fn refuse(&self, v: Verdict, r: Refusal) -> rustls::Error {
        let e = rustls::Error::InvalidCertificate(r.reason.certificate_error());
        self.store(Verdict { refusal: Some(r), ..v });
        e
    }
    fn store(&self, v: Verdict) {
        SLOT.with(|s| {
            if let Some(Ok(mut slot)) = s.borrow().as_ref().map(|m| m.lock()) {
                *slot = v;
            }
        });
    }
}

impl ClientCertVerifier for ConnVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        true
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.shared.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let leaf = CertInfo::parse(end_entity).ok().map(Arc::new);
        let inters: Vec<CertInfo> = intermediates.iter().take(8).filter_map(|c| CertInfo::parse(c).ok()).collect();
        let base = Verdict { leaf: leaf.clone(), intermediates: inters.clone(), ..Default::default() };
        if let Err(e) = self.shared.inner.verify_client_cert(end_entity, intermediates, now) {
            let reason = Reason::from_tls_error(&e);
            self.store(Verdict { refusal: Some(Refusal::new(reason, e.to_string())), ..base });
            return Err(e);
        }
        let Some(leaf) = leaf else {
            let r = Refusal::new(Reason::BadCertificate, "the certificate verified but cannot be read");
            return Err(self.refuse(base, r));
        };
        if let Err(r) = crate::identity::check_eku(&leaf, self.shared.allow_no_eku) {
            return Err(self.refuse(base, r));
        }
        for c in std::iter::once(leaf.as_ref()).chain(&inters) {
            for u in c.crl_urls.iter().chain(&c.delta_urls).filter(|u| is_http(u)) {
                (self.shared.learn)(u);
            }
        }
        self.shared.await_first_fetch(std::iter::once(leaf.as_ref()).chain(&inters).chain(&self.shared.anchors));
        match self.shared.revocation(&leaf, &inters) {
            Ok((checked, soft)) => {
                self.store(Verdict { revocation: checked, soft_fail: soft, ..base });
                Ok(ClientCertVerified::assertion())
            }
            Err(r) => Err(self.refuse(base, r)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.shared.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.shared.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.shared.inner.supported_verify_schemes()
    }
}

/// The reason a handshake failed: what our verifier recorded, else read from the error
/// tokio-rustls gives (a rustls::Error inside the io::Error), else a plain I/O failure.
pub fn handshake_reason(slot: &Mutex<Verdict>, e: &std::io::Error) -> (Reason, String) {
    if let Some(r) = slot.lock().ok().and_then(|v| v.refusal.clone()) {
        return (r.reason, r.detail);
    }
    if let Some(te) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        let r = Reason::from_tls_error(te);
        return (if r == Reason::BadCertificate { Reason::BadRequest } else { r }, te.to_string());
    }
    (Reason::BadRequest, e.to_string())
}
