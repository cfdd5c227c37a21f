//! The CRL fetcher: every CDP URL learnt from the chain, the preload list and the devices'
//! certificates is fetched over HTTP (timeout, size cap, conditional GET), verified once,
//! and published in a new immutable snapshot. Refetched ahead of the CRL's next update (or
//! Microsoft's Next CRL Publish), at least every `crl.refresh_seconds`, and after a failure
//! every `crl.retry_seconds`; the last good CRL stays in use until it expires.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kcd_cert::CertInfo;

use crate::config::CrlPolicy;
use crate::crl::{accept_newer, verify_crl, Refusal, Snapshot, UrlState};
use crate::metrics::Metrics;
use crate::reason::Reason;
use crate::tls::now;

/// CDP URLs tracked at most: a device cannot make the gateway fetch without bound.
pub const MAX_URLS: usize = 256;

#[derive(Default, Clone)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
    next_attempt: i64,
}

pub struct Fetcher {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    wanted: Mutex<BTreeSet<String>>,
    wake: tokio::sync::Notify,
    cas: ArcSwap<Vec<CertInfo>>,
    policy: ArcSwap<CrlPolicy>,
    validators: Mutex<HashMap<String, Validators>>,
    client: Client<HttpConnector, Empty<Bytes>>,
    metrics: Arc<Metrics>,
}

impl Fetcher {
    pub fn new(policy: CrlPolicy, cas: Vec<CertInfo>, metrics: Arc<Metrics>) -> Arc<Fetcher> {
        let client = http_client(policy.fetch_timeout);
        Arc::new(Fetcher {
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot::default())),
            wanted: Mutex::new(BTreeSet::new()),
            wake: tokio::sync::Notify::new(),
            cas: ArcSwap::from_pointee(cas),
            policy: ArcSwap::from_pointee(policy),
            validators: Mutex::new(HashMap::new()),
            client,
            metrics,
        })
    }

    /// A new configuration: new trust anchors and policy; every CRL is fetched again
    /// (conditionally) so that one signed by a new anchor is verified with it.
    pub fn reconfigure(&self, policy: CrlPolicy, cas: Vec<CertInfo>) {
        self.policy.store(Arc::new(policy));
        self.cas.store(Arc::new(cas));
        if let Ok(mut v) = self.validators.lock() {
            for x in v.values_mut() {
                x.next_attempt = 0;
            }
        }
        self.wake.notify_one();
    }

    /// A CDP URL to keep fetched.
    pub fn want(&self, url: &str) {
        let Ok(mut w) = self.wanted.lock() else { return };
        if w.contains(url) || w.len() >= MAX_URLS {
            return;
        }
        w.insert(url.to_string());
        drop(w);
        self.wake.notify_one();
    }

    /// Fetches what is due, forever.
    pub async fn run(self: Arc<Self>) {
        loop {
            let urls: Vec<String> = self.wanted.lock().map(|w| w.iter().cloned().collect()).unwrap_or_default();
            let t = now();
            let mut next = t + 3600;
            for u in urls {
                let due = self.validators.lock().ok().and_then(|v| v.get(&u).map(|x| x.next_attempt)).unwrap_or(0);
                if due <= t {
                    self.fetch_one(&u).await;
                }
                let due = self.validators.lock().ok().and_then(|v| v.get(&u).map(|x| x.next_attempt)).unwrap_or(t + 1);
                next = next.min(due);
            }
            self.publish_metrics();
            let wait = Duration::from_secs((next - now()).clamp(1, 3600) as u64);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    fn publish_metrics(&self) {
        let snap = self.snapshot.load();
        let t = now();
        for (u, st) in &snap.urls {
            if let Some(g) = &st.good {
                self.metrics.crl_age(u, t - g.this_update, g.size);
            }
        }
    }

    async fn fetch_one(&self, url: &str) {
        let policy = self.policy.load_full();
        let prev = self.snapshot.load().urls.get(url).cloned().unwrap_or_default();
        let vals = self.validators.lock().ok().and_then(|v| v.get(url).cloned()).unwrap_or_default();
        let result = tokio::time::timeout(policy.fetch_timeout, self.get(url, &vals, policy.max_bytes)).await;
        let t = now();
        let refresh = policy.refresh.as_secs() as i64;
        let mut new_state = UrlState { good: prev.good.clone(), error: None, failures: prev.failures };
        let mut new_vals = vals.clone();
        match result {
            Ok(Ok(Got::NotModified)) => {
                tracing::debug!(url, "CRL not modified");
            }
            Ok(Ok(Got::Body { der, etag, last_modified })) => {
                let cas = self.cas.load();
                match verify_crl(&der, url, &cas, crate::provider().signature_verification_algorithms.all, t)
                    .and_then(|c| accept_newer(prev.good.as_deref(), c))
                {
                    Ok(c) => {
                        tracing::info!(url, number = ?c.number, entries = c.revoked.len(), "CRL loaded");
                        new_state.good = Some(Arc::new(c));
                        new_vals.etag = etag;
                        new_vals.last_modified = last_modified;
                    }
                    Err(r) => new_state.error = Some(r),
                }
            }
            Ok(Err(r)) => new_state.error = Some(r),
            Err(_) => {
                new_state.error =
                    Some(Refusal::new(Reason::CrlUnreachable, format!("{url}: no answer within {} ms", policy.fetch_timeout.as_millis())))
            }
        }
        if let Some(e) = &new_state.error {
            new_state.failures += 1;
            self.metrics.crl_fetch_error(url);
            tracing::warn!(url, reason = e.reason.label(), detail = %e.detail, "CRL fetch failed");
            new_vals.next_attempt = t + policy.retry.as_secs() as i64;
        } else {
            let ahead = new_state.good.as_ref().and_then(|g| g.refresh_at()).unwrap_or(t + refresh);
            new_vals.next_attempt = ahead.min(t + refresh).max(t + 1);
        }
        if let Ok(mut v) = self.validators.lock() {
            v.insert(url.to_string(), new_vals);
        }
        let mut snap = Snapshot::clone(&self.snapshot.load());
        snap.urls.insert(url.to_string(), Arc::new(new_state));
        self.snapshot.store(Arc::new(snap));
    }

    async fn get(&self, url: &str, vals: &Validators, max: usize) -> Result<Got, Refusal> {
        let unreachable = |d: String| Refusal::new(Reason::CrlUnreachable, format!("{url}: {d}"));
        let mut headers = Vec::new();
        if let Some(e) = &vals.etag {
            headers.push((hyper::header::IF_NONE_MATCH, e.as_str()));
        }
        if let Some(m) = &vals.last_modified {
            headers.push((hyper::header::IF_MODIFIED_SINCE, m.as_str()));
        }
        let (status, head, body) = http_get(&self.client, url, &headers, max).await.map_err(unreachable)?;
        if status == hyper::StatusCode::NOT_MODIFIED {
            return Ok(Got::NotModified);
        }
        if status == hyper::StatusCode::NOT_FOUND && url.contains('+') {
            return Err(Refusal::new(
                Reason::CrlDeltaBlocked,
                format!("{url}: HTTP 404 for a name with '+' (IIS refuses it unless allowDoubleEscaping is on)"),
            ));
        }
        if !status.is_success() {
            return Err(unreachable(format!("HTTP {status}")));
        }
        let header = |n| head.get(n).and_then(|v: &hyper::header::HeaderValue| v.to_str().ok()).map(str::to_string);
        let etag = header(hyper::header::ETAG);
        let last_modified = header(hyper::header::LAST_MODIFIED);
        Ok(Got::Body { der: kcd_cert::crl_der(&body), etag, last_modified })
    }
}

/// A plain-HTTP client for [`http_get`] (http:// only; connect timeout as given).
pub fn http_client(connect_timeout: Duration) -> Client<HttpConnector, Empty<Bytes>> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.enforce_http(true);
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(2).build(http)
}

/// GET `url` over plain HTTP/1.1 with `headers`: the status, the response headers and at
/// most `max` bytes of body (more is an error, not a cut). Errors are short sentences.
/// The one GET of the project: the CRL fetcher's and `kcdscope kcd test`'s.
pub async fn http_get(
    client: &Client<HttpConnector, Empty<Bytes>>,
    url: &str,
    headers: &[(hyper::header::HeaderName, &str)],
    max: usize,
) -> Result<(hyper::StatusCode, hyper::HeaderMap, Bytes), String> {
    let mut req = hyper::Request::get(url);
    for (n, v) in headers {
        req = req.header(n, *v);
    }
    let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| request_failure(&e))?;
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, max).collect().await.map_err(|e| format!("reading the body: {e} (limit {max} bytes)"))?.to_bytes();
    Ok((status, parts.headers, body))
}

/// Why a request got no answer, in words an administrator acts on ("connection refused",
/// "no route to host"): the innermost cause that says it, not hyper's Debug text.
pub fn request_failure(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut texts: Vec<String> = Vec::new();
    while let Some(x) = cur {
        if let Some(io) = x.downcast_ref::<std::io::Error>() {
            return io_words(io);
        }
        if let Some(h) = x.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() {
                return "the server closed the connection before answering".into();
            }
            if h.is_parse() || h.is_parse_status() {
                return "the server's answer is not HTTP/1.1".into();
            }
            if h.is_timeout() {
                return "no answer in time".into();
            }
        }
        let t = x.to_string();
        if !t.is_empty() && !texts.iter().any(|p| p.contains(&t)) {
            texts.push(t);
        }
        cur = x.source();
    }
    let joined = texts.join(": ");
    joined.chars().take(200).collect()
}

fn io_words(io: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    let w = match io.kind() {
        K::ConnectionRefused => "connection refused (nothing listens on that port)",
        K::TimedOut => "connection timed out",
        K::ConnectionReset => "connection reset by the server",
        K::ConnectionAborted => "connection aborted",
        K::HostUnreachable => "no route to host",
        K::NetworkUnreachable => "network unreachable",
        K::AddrNotAvailable => "address not available",
        K::UnexpectedEof => "the server closed the connection before answering",
        _ => {
            // The OS's own sentence, without the "(os error N)" tail.
            let t = io.to_string();
            return match t.rfind(" (os error") {
                Some(i) => t[..i].to_string(),
                None => t,
            };
        }
    };
    w.to_string()
}

enum Got {
    NotModified,
    Body { der: Vec<u8>, etag: Option<String>, last_modified: Option<String> },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let c = http_client(Duration::from_secs(2));
            match http_get(&c, url, &[], 1000).await {
                Ok((s, _, _)) => format!("answered {s}"),
                Err(e) => e,
            }
        })
    }

    #[test]
    fn a_closed_port_is_connection_refused_in_words() {
        // A port just bound and released: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port");
        let e = get(&format!("http://127.0.0.1:{port}/x.crl"));
        assert!(e.starts_with("connection refused"), "{e}");
        assert!(!e.contains("ConnectError") && !e.contains("Kind(") && !e.contains("Custom"), "{e}");
    }

    #[test]
    fn a_server_that_hangs_up_or_speaks_no_http_is_named() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let t = std::thread::spawn(move || {
            use std::io::{Read, Write};
            for answer in [&b""[..], b"SSH-2.0-OpenSSH\r\n\r\n"] {
                if let Ok((mut s, _)) = l.accept() {
                    let mut b = [0u8; 1024];
                    let _ = s.read(&mut b);
                    let _ = s.write_all(answer);
                }
            }
        });
        let closed = get(&format!("http://127.0.0.1:{port}/a.crl"));
        let garbage = get(&format!("http://127.0.0.1:{port}/b.crl"));
        let _ = t.join();
        assert_eq!(closed, "the server closed the connection before answering");
        assert_eq!(garbage, "the server's answer is not HTTP/1.1");
    }
}
