//! Network outputs that ship the spool (the NDJSON file output) to HTTP receivers
//! (Elasticsearch/OpenSearch `_bulk`, Splunk HEC), to Kafka (`kafka`) and to a syslog
//! collector (`syslog`).
//!
//! Each output reads the spool from its own checkpoint, sends batches in spool order (so
//! the order of each flow is kept), and saves the checkpoint after the receiver has
//! answered for every event before it: at-least-once delivery. An event the receiver did
//! not store (429, 5xx, no connection) is sent again after a capped, jittered backoff,
//! before anything after it; one it refused for good (a bulk item's 400) is counted and
//! logged, not sent forever. The pure rules are in `policy`, `wire` and `spool`; this is the
//! loop around them, the same for every output (`drive`); what differs is one attempt at
//! delivering events (`Deliver`).

#[cfg(feature = "kafka")]
pub mod kafka;
pub mod policy;
pub mod spool;
pub mod syslog;
pub mod wire;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use policy::{Backoff, BatchLimits, ItemOutcome, Jitter};
use spool::{Checkpoint, SpoolReader};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Elasticsearch / OpenSearch `POST /INDEX/_bulk`.
    Bulk,
    /// Splunk HTTP Event Collector, `POST /services/collector/event`.
    Hec,
    /// A Kafka topic (`ShipConfig::kafka`).
    Kafka,
    /// A syslog collector (`ShipConfig::syslog`).
    Syslog,
}

/// Where the Kafka output writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaTarget {
    /// Bootstrap brokers, `HOST:PORT`.
    pub brokers: Vec<String>,
    pub topic: String,
}

/// A secret sent in the Authorization header: never shown.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(hidden)")
    }
}

#[derive(Clone, Debug)]
pub struct ShipConfig {
    pub kind: Kind,
    /// The request URL: `http(s)://HOST:PORT/INDEX/_bulk` or `.../services/collector/event`.
    pub url: hyper::Uri,
    /// The brokers and topic of `Kind::Kafka`.
    pub kafka: Option<KafkaTarget>,
    /// The collector of `Kind::Syslog`.
    pub syslog: Option<crate::outputs::syslog::SyslogTarget>,
    /// The Authorization header's value (`Splunk TOKEN`, `ApiKey KEY`, `Basic ...`).
    pub authorization: Option<Secret>,
    /// CA certificates for https:// (and for Kafka and syslog over TLS).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub spool: PathBuf,
    pub checkpoint: PathBuf,
    pub batch: BatchLimits,
    pub backoff: Backoff,
    pub timeout: Duration,
    pub sourcetype: String,
    /// A name for messages ("bulk", "hec").
    pub name: String,
}

impl ShipConfig {
    pub fn new(kind: Kind, url: hyper::Uri, spool: &Path, checkpoint: PathBuf) -> Self {
        Self {
            kind,
            url,
            kafka: None,
            syslog: None,
            authorization: None,
            tls: None,
            spool: spool.to_path_buf(),
            checkpoint,
            batch: BatchLimits::default(),
            backoff: Backoff::default(),
            timeout: Duration::from_secs(30),
            sourcetype: "kcdscope".into(),
            name: match kind {
                Kind::Bulk => "bulk".into(),
                Kind::Hec => "hec".into(),
                Kind::Kafka => "kafka".into(),
                Kind::Syslog => "syslog".into(),
            },
        }
    }
}

/// The counters of one output, shared with whoever shows them (summary, metrics).
#[derive(Debug, Default)]
pub struct ShipCounters {
    /// Events the receiver stored (or had: a bulk 409).
    pub sent: AtomicU64,
    /// Of `sent`, the bulk 409s: stored by an earlier attempt.
    pub duplicates: AtomicU64,
    /// Events sent again after a failed attempt.
    pub retried: AtomicU64,
    /// Events the receiver refused for good (counted, logged, not sent again).
    pub rejected: AtomicU64,
    /// Requests that failed as a whole (no connection, timeout, 429/5xx).
    pub failed_requests: AtomicU64,
    /// Times the checkpoint's file was gone (deleted from a full spool): events lost here.
    pub gaps: AtomicU64,
    /// Checkpoint saves.
    pub checkpoints: AtomicU64,
}

impl ShipCounters {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub fn summary(&self, name: &str) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{name}: {} events sent ({} already there), {} resent, {} rejected, {} failed requests, {} spool gaps",
            g(&self.sent),
            g(&self.duplicates),
            g(&self.retried),
            g(&self.rejected),
            g(&self.failed_requests),
            g(&self.gaps)
        )
    }
}

/// The counters of every output as Prometheus counters (`..._ship_events_sent_total{output="bulk"}`
/// and so on), read at each scrape.
#[derive(Debug, Clone, Default)]
pub struct ShipMetrics(pub Vec<(String, Arc<ShipCounters>)>);

impl prometheus_client::collector::Collector for ShipMetrics {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        type Pick = fn(&ShipCounters) -> &AtomicU64;
        let all: [(&str, &str, Pick); 6] = [
            ("ship_events_sent", "Events the receiver stored (or already had)", |c| &c.sent),
            ("ship_events_duplicate", "Events the receiver already had (bulk 409)", |c| &c.duplicates),
            ("ship_events_retried", "Events sent again after a failed attempt", |c| &c.retried),
            ("ship_events_rejected", "Events the receiver refused for good", |c| &c.rejected),
            ("ship_requests_failed", "Requests that failed as a whole", |c| &c.failed_requests),
            ("ship_spool_gaps", "Checkpoints whose spool file was gone (events lost)", |c| &c.gaps),
        ];
        for (name, help, pick) in all {
            let mut m = encoder.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Counter)?;
            for (output, c) in &self.0 {
                let labels = [("output", output.as_str())];
                ConstCounter::new(pick(c).load(Ordering::Relaxed)).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

fn add(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, Ordering::Relaxed);
}

/// When a shipper stops.
#[derive(Clone, Debug)]
pub struct StopWhen {
    /// Set by the caller: stop now (SIGTERM), keeping the checkpoint.
    pub stop: Arc<AtomicBool>,
    /// Set by the caller when the writer has finished: ship what is left, then stop.
    pub drain: Arc<AtomicBool>,
    /// With `drain` set, give up after this long (the rest stays in the spool for the next run).
    pub drain_timeout: Duration,
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

fn client(cfg: &ShipConfig) -> std::io::Result<HttpClient> {
    let tls = match &cfg.tls {
        Some(t) => (**t).clone(),
        None => rustls::ClientConfig::builder_with_provider(Arc::new(crate::outputs::provider()))
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https))
}

async fn post(client: &HttpClient, cfg: &ShipConfig, body: Vec<u8>) -> Result<(u16, Bytes), String> {
    let mut req = hyper::Request::post(cfg.url.clone()).header(
        hyper::header::CONTENT_TYPE,
        match cfg.kind {
            Kind::Bulk => "application/x-ndjson",
            _ => "application/json",
        },
    );
    if let Some(a) = &cfg.authorization {
        req = req.header(hyper::header::AUTHORIZATION, a.0.as_str());
    }
    let req = req.body(Full::new(Bytes::from(body))).map_err(|e| format!("building the request: {e}"))?;
    let call = async {
        let resp = client.request(req).await.map_err(|e| format!("{e} ({})", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()))?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), 64 << 20).collect().await.map_err(|e| format!("reading the answer: {e}"))?.to_bytes();
        Ok((status, body))
    };
    match tokio::time::timeout(cfg.timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer in {} s", cfg.timeout.as_secs())),
    }
}

/// Ships `cfg.spool` until `when` says stop; returns the last error met, if any.
pub fn run(cfg: &ShipConfig, counters: &ShipCounters, when: &StopWhen) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match cfg.kind {
        Kind::Bulk | Kind::Hec => rt.block_on(drive(cfg, counters, when, &mut Http { client: client(cfg)?, cfg })),
        #[cfg(feature = "kafka")]
        Kind::Kafka => rt.block_on(drive(cfg, counters, when, &mut kafka::Kafka::new(cfg)?)),
        #[cfg(not(feature = "kafka"))]
        Kind::Kafka => Err(std::io::Error::other("this kcdscope was built without the kafka feature")),
        Kind::Syslog => rt.block_on(drive(cfg, counters, when, &mut syslog::Syslog::new(cfg)?)),
    }
}

/// One attempt at storing events at a receiver.
trait Deliver {
    /// Sends `lines` (in spool order) and tells, for each, how the receiver answered.
    async fn deliver(&mut self, lines: &[&[u8]]) -> wire::Outcomes;
}

struct Http<'a> {
    client: HttpClient,
    cfg: &'a ShipConfig,
}

impl Deliver for Http<'_> {
    async fn deliver(&mut self, lines: &[&[u8]]) -> wire::Outcomes {
        let cfg = self.cfg;
        let mut body = Vec::with_capacity(lines.iter().map(|l| l.len() + 64).sum());
        for l in lines {
            match cfg.kind {
                Kind::Hec => wire::hec_item(&mut body, l, &cfg.sourcetype),
                _ => wire::bulk_item(&mut body, l),
            }
        }
        match post(&self.client, cfg, body).await {
            Ok((status, answer)) => match cfg.kind {
                Kind::Hec => wire::hec_outcomes(status, &answer, lines.len()),
                _ => wire::bulk_outcomes(status, &answer, lines.len()),
            },
            Err(e) => vec![(ItemOutcome::Retry, Some(e)); lines.len()],
        }
    }
}

/// The loop common to every output: batches from the spool, sent until each event has an
/// answer, then the checkpoint.
async fn drive(cfg: &ShipConfig, counters: &ShipCounters, when: &StopWhen, out: &mut impl Deliver) -> std::io::Result<()> {
    let mut reader = SpoolReader::new(&cfg.spool);
    let ck = spool::load_checkpoint(&cfg.checkpoint)?;
    reader.seek(ck.as_ref())?;
    let mut jitter = Jitter::new();
    // The batch: lines in spool order and the position after each.
    let mut batch: Vec<(Vec<u8>, Checkpoint)> = Vec::new();
    let mut bytes = 0usize;
    let mut first_at = Instant::now();
    let mut drain_since: Option<Instant> = None;
    let mut carry: Option<spool::Line> = None;
    loop {
        counters.gaps.store(reader.gaps, Ordering::Relaxed);
        if when.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let draining = when.drain.load(Ordering::Relaxed);
        if draining && drain_since.is_none() {
            drain_since = Some(Instant::now());
        }
        // Fill the batch with what the spool has now.
        let mut at_end = false;
        loop {
            let line = match carry.take() {
                Some(l) => l,
                None => match reader.next_line()? {
                    Some(l) => l,
                    None => {
                        at_end = true;
                        break;
                    }
                },
            };
            if !cfg.batch.fits(batch.len(), bytes, line.bytes.len()) {
                carry = Some(line);
                break;
            }
            if batch.is_empty() {
                first_at = Instant::now();
            }
            bytes += line.bytes.len();
            batch.push((line.bytes, line.end));
        }
        let due = cfg.batch.due(batch.len(), bytes, first_at.elapsed()) || carry.is_some() || (draining && at_end);
        if batch.is_empty() || !due {
            if draining && at_end && batch.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20).min(cfg.batch.linger)).await;
            continue;
        }
        // Send until every event of the batch has an answer.
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        let mut attempt = 0u32;
        while !pending.is_empty() {
            let lines: Vec<&[u8]> = pending.iter().map(|i| batch[*i].0.as_slice()).collect();
            let mut outcomes = out.deliver(&lines).await;
            // An output that answered for fewer events: the rest is sent again.
            outcomes.resize(pending.len(), (ItemOutcome::Retry, Some("no answer for this event".into())));
            let mut again = Vec::new();
            let mut why_retry = None;
            for (i, (o, why)) in pending.iter().zip(outcomes) {
                match o {
                    ItemOutcome::Stored => add(&counters.sent, 1),
                    ItemOutcome::AlreadyThere => {
                        add(&counters.sent, 1);
                        add(&counters.duplicates, 1);
                    }
                    ItemOutcome::Rejected => {
                        add(&counters.rejected, 1);
                        tracing::warn!(output = %cfg.name, "event refused by the receiver, not sent again: {}", why.unwrap_or_default());
                    }
                    ItemOutcome::Retry => {
                        again.push(*i);
                        if why_retry.is_none() {
                            why_retry = why;
                        }
                    }
                }
            }
            if again.is_empty() {
                break;
            }
            if again.len() == pending.len() {
                add(&counters.failed_requests, 1);
            }
            add(&counters.retried, again.len());
            attempt += 1;
            let delay = cfg.backoff.delay(attempt, jitter.unit());
            tracing::warn!(output = %cfg.name, "{} events not stored ({}); again in {} ms (attempt {attempt})", again.len(), why_retry.unwrap_or_default(), delay.as_millis());
            pending = again;
            // Sleep in small steps so that a stop is seen; a drain that timed out gives up,
            // leaving the batch unacknowledged (the checkpoint stays before it).
            let until = Instant::now() + delay;
            while Instant::now() < until {
                if when.stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                if when.drain.load(Ordering::Relaxed) {
                    let since = *drain_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= when.drain_timeout {
                        return Err(std::io::Error::other(format!(
                            "{}: gave up after {} s of draining; {} events not yet shipped stay in the spool for the next run",
                            cfg.name,
                            when.drain_timeout.as_secs(),
                            pending.len()
                        )));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20).min(until.saturating_duration_since(Instant::now()))).await;
            }
        }
        if let Some((_, end)) = batch.last() {
            spool::save_checkpoint(&cfg.checkpoint, end)?;
            add(&counters.checkpoints, 1);
        }
        batch.clear();
        bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counters_are_prometheus_counters_labelled_by_output() {
        let bulk = Arc::new(ShipCounters::default());
        bulk.sent.store(5, Ordering::Relaxed);
        bulk.rejected.store(2, Ordering::Relaxed);
        let hec = Arc::new(ShipCounters::default());
        hec.retried.store(7, Ordering::Relaxed);
        let mut r = prometheus_client::registry::Registry::with_prefix("kcdscope_gateway");
        r.register_collector(Box::new(ShipMetrics(vec![("bulk".into(), bulk), ("hec".into(), hec)])));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).expect("encodes");
        for want in [
            "# TYPE kcdscope_gateway_ship_events_sent counter",
            "kcdscope_gateway_ship_events_sent_total{output=\"bulk\"} 5",
            "kcdscope_gateway_ship_events_sent_total{output=\"hec\"} 0",
            "kcdscope_gateway_ship_events_rejected_total{output=\"bulk\"} 2",
            "kcdscope_gateway_ship_events_retried_total{output=\"hec\"} 7",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }

    #[test]
    fn the_token_is_not_in_debug_output() {
        let mut c = ShipConfig::new(Kind::Hec, hyper::Uri::from_static("http://h:8088/services/collector/event"), Path::new("s"), PathBuf::from("c"));
        c.authorization = Some(Secret::new("Splunk 1234-secret-token".into()));
        let d = format!("{c:?}");
        assert!(!d.contains("1234-secret-token") && d.contains("Secret(hidden)"), "{d}");
    }
}
