//! Prometheus metrics (prometheus-client, text format on the admin listener): requests by
//! outcome and reason, latencies (total, KDC, Exchange), handshake refusals, ticket cache,
//! CRL age/size/fetch errors per CDP, open connections, held long polls.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UrlLabels {
    pub url: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    pub requests: Family<OutcomeLabels, Counter>,
    pub handshake_refusals: Family<ReasonLabels, Counter>,
    pub request_seconds: Histogram,
    pub kdc_seconds: Histogram,
    pub exchange_seconds: Histogram,
    pub open_connections: Gauge,
    pub long_polls: Gauge,
    pub ticket_cache: Gauge,
    /// Evictions by the current delegation client (it starts again at 0 when a reload changes
    /// the Kerberos settings), read when /metrics is asked.
    pub ticket_cache_evicted: Gauge,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub crl_age: Family<UrlLabels, Gauge<i64, AtomicI64>>,
    pub crl_bytes: Family<UrlLabels, Gauge<i64, AtomicI64>>,
    pub crl_errors: Family<UrlLabels, Counter<u64, AtomicU64>>,
    pub reloads: Family<OutcomeLabels, Counter>,
}

fn buckets() -> impl Iterator<Item = f64> {
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0].into_iter()
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Mutex::new(Registry::with_prefix("kcdscope_gateway")),
            requests: Family::default(),
            handshake_refusals: Family::default(),
            request_seconds: Histogram::new(buckets()),
            kdc_seconds: Histogram::new(buckets()),
            exchange_seconds: Histogram::new(buckets()),
            open_connections: Gauge::default(),
            long_polls: Gauge::default(),
            ticket_cache: Gauge::default(),
            ticket_cache_evicted: Gauge::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            crl_age: Family::default(),
            crl_bytes: Family::default(),
            crl_errors: Family::default(),
            reloads: Family::default(),
        };
        if let Ok(mut r) = m.registry.lock() {
            r.register("requests", "Device requests by outcome and reason", m.requests.clone());
            r.register("handshake_refusals", "TLS handshakes refused, by reason", m.handshake_refusals.clone());
            r.register("request_seconds", "Time from request to Exchange's answer headers", m.request_seconds.clone());
            r.register("kdc_seconds", "Time to obtain the Kerberos token", m.kdc_seconds.clone());
            r.register("exchange_seconds", "Time Exchange took to answer", m.exchange_seconds.clone());
            r.register("open_connections", "Device connections open", m.open_connections.clone());
            r.register("long_polls", "Ping and Sync requests held by Exchange now", m.long_polls.clone());
            r.register("ticket_cache_size", "Service tickets held", m.ticket_cache.clone());
            r.register("ticket_cache_evicted", "Service tickets pushed out of the full cache by newer ones", m.ticket_cache_evicted.clone());
            r.register("ticket_cache_hits", "Tokens made from a cached ticket", m.cache_hits.clone());
            r.register("ticket_cache_misses", "Tokens that needed S4U exchanges", m.cache_misses.clone());
            r.register("crl_age_seconds", "Age of the CRL held, since its thisUpdate", m.crl_age.clone());
            r.register("crl_bytes", "Size of the CRL held", m.crl_bytes.clone());
            r.register("crl_fetch_errors", "Failed CRL fetches", m.crl_errors.clone());
            r.register("reloads", "Configuration reloads by outcome", m.reloads.clone());
        }
        m
    }

    pub fn request(&self, outcome: &str, reason: &str) {
        self.requests.get_or_create(&OutcomeLabels { outcome: outcome.into(), reason: reason.into() }).inc();
    }

    pub fn handshake_refused(&self, reason: &str) {
        self.handshake_refusals.get_or_create(&ReasonLabels { reason: reason.into() }).inc();
    }

    pub fn crl_age(&self, url: &str, age: i64, size: usize) {
        let l = UrlLabels { url: url.into() };
        self.crl_age.get_or_create(&l).set(age);
        self.crl_bytes.get_or_create(&l).set(size as i64);
    }

    pub fn crl_fetch_error(&self, url: &str) {
        self.crl_errors.get_or_create(&UrlLabels { url: url.into() }).inc();
    }

    pub fn register_collector(&self, c: Box<dyn prometheus_client::collector::Collector>) {
        if let Ok(mut r) = self.registry.lock() {
            r.register_collector(c);
        }
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut s, &r);
        }
        s
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
