//! The Kafka output: the spool's events as records of one topic, through rskafka (a pure-Rust
//! client without buffering of its own: a produce that returned is on the brokers, with
//! `acks=all`, so the spool and its checkpoint stay the only buffer).
//!
//! Each record's key is the event's flow (Community ID: `flow_id`, or ECS
//! `network.community_id`) and its partition is chosen from the key as Kafka's own default
//! partitioner does (murmur2 of the key, positive, modulo the partitions), so a flow's events
//! land in one partition, in spool order, and consumers that partition by key themselves
//! agree with us. Events without a flow (findings, the capture's anomalies) have no key and
//! go to the partition of their event type, so those keep their order too. The record's
//! value is the NDJSON line as written to the spool, its timestamp the event's own time.
//!
//! Within a partition, a request that failed is sent again before anything after it; a
//! record the brokers refuse for good (larger than their message limit) is counted and
//! logged. Delivery is at-least-once: an acknowledgement lost on the way makes the same
//! records go again, and Kafka then holds them twice (consumers deduplicate by the event's
//! content, as they would for any at-least-once producer).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use rskafka::chrono::{DateTime, Utc};
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use serde::Deserialize;

use super::policy::ItemOutcome;
use super::wire::Outcomes;
use super::{Deliver, KafkaTarget, ShipConfig};

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), as its default
/// partitioner hashes record keys.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `key` among `partitions`, as Kafka's default partitioner computes it
/// (`toPositive(murmur2(key)) % partitions`).
pub fn partition_of(key: &[u8], partitions: usize) -> usize {
    ((murmur2(key) & 0x7fff_ffff) as usize) % partitions.max(1)
}

#[derive(Deserialize, Default)]
struct Network<'a> {
    #[serde(borrow, default)]
    community_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct Event<'a> {
    #[serde(borrow, default)]
    flow_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    network: Option<Network<'a>>,
    #[serde(borrow, default)]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event: Option<EcsEvent<'a>>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "@timestamp")]
    at_timestamp: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct EcsEvent<'a> {
    #[serde(borrow, default)]
    dataset: Option<Cow<'a, str>>,
}

/// Where one event goes: its key (the flow), what picks its partition, its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub key: Option<Vec<u8>>,
    /// The bytes hashed for the partition: the key, or the event type without a flow.
    pub hashed: Vec<u8>,
    pub time: Option<DateTime<Utc>>,
}

/// Pure: the route of the event written as `line` (EVE or ECS layout).
pub fn route(line: &[u8]) -> Route {
    let e: Event<'_> = serde_json::from_slice(line).unwrap_or_default();
    let flow = e.flow_id.or_else(|| e.network.and_then(|n| n.community_id));
    let time = e
        .timestamp
        .or(e.at_timestamp)
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        // Whole milliseconds, Kafka's precision: rskafka computes each record's offset from
        // the batch's first timestamp on the exact times, truncating the difference, which
        // puts a record 1 ms early when the first has more sub-millisecond digits.
        .and_then(|t| DateTime::from_timestamp_millis(t.timestamp_millis()));
    match flow {
        Some(f) => Route { key: Some(f.as_bytes().to_vec()), hashed: f.as_bytes().to_vec(), time },
        None => {
            let kind = e.event_type.or_else(|| e.event.and_then(|v| v.dataset)).unwrap_or_default();
            Route { key: None, hashed: kind.as_bytes().to_vec(), time }
        }
    }
}

/// Bytes of record values in one produce request: under the brokers' default
/// `message.max.bytes` (1 MB), which bounds a whole uncompressed record batch.
const MAX_REQUEST_BYTES: usize = 900_000;

/// How long rskafka retries a request itself (reconnecting, waiting for a leader) before it
/// hands the error back to the shipping loop, which counts it and backs off on its own.
const CLIENT_RETRY_DEADLINE: Duration = Duration::from_secs(2);

/// How old the partition count may be when a batch is routed: a topic given more
/// partitions (or recreated by a restarted broker) is seen within this long, as Kafka's own
/// producers see it on their metadata refresh. A flow's partition changes with the count,
/// for us as for them.
const METADATA_MAX_AGE: Duration = Duration::from_secs(1);

struct Conn {
    client: Client,
    partitions: Vec<Option<PartitionClient>>,
    checked: std::time::Instant,
}

/// The number of partitions of `topic` (numbered 0 to N-1, as Kafka numbers them).
async fn partitions(client: &Client, topic: &str) -> Result<usize, String> {
    let topics = client.list_topics().await.map_err(|e| format!("listing the topics: {e}"))?;
    let Some(t) = topics.iter().find(|x| x.name == topic) else {
        return Err(format!("topic {topic:?} does not exist on the brokers"));
    };
    let n = t.partitions.len();
    if n == 0 || !t.partitions.iter().copied().eq(0..n as i32) {
        return Err(format!("topic {topic:?} has partitions {:?}, expected 0 to N-1", t.partitions));
    }
    Ok(n)
}

/// One Kafka output's connection and its state between attempts.
pub(super) struct Kafka<'a> {
    cfg: &'a ShipConfig,
    target: &'a KafkaTarget,
    conn: Option<Conn>,
    /// Lowered when the brokers answer "too large" for a request of several records.
    request_bytes: usize,
}

/// How a failed produce is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The request was larger than the brokers take: smaller requests.
    TooLarge,
    /// The records are refused for good.
    Refused,
    /// Anything else (no connection, no leader, a timeout): again later, on a new connection.
    Retry,
}

/// Pure: what to do after `protocol_error` (None: not an answer of the brokers).
pub fn classify(protocol_error: Option<&ProtocolError>) -> Failure {
    match protocol_error {
        Some(ProtocolError::MessageTooLarge | ProtocolError::RecordListTooLarge) => Failure::TooLarge,
        Some(ProtocolError::InvalidRecord | ProtocolError::CorruptMessage | ProtocolError::InvalidTopicException | ProtocolError::TopicAuthorizationFailed) => {
            Failure::Refused
        }
        _ => Failure::Retry,
    }
}

fn protocol_error(e: &KafkaError) -> Option<&ProtocolError> {
    match e {
        KafkaError::ServerError { protocol_error, .. } => Some(protocol_error),
        _ => None,
    }
}

impl<'a> Kafka<'a> {
    pub(super) fn new(cfg: &'a ShipConfig) -> std::io::Result<Self> {
        let target = cfg.kafka.as_ref().ok_or_else(|| std::io::Error::other("the kafka output has no brokers and topic"))?;
        Ok(Self { cfg, target, conn: None, request_bytes: MAX_REQUEST_BYTES })
    }

    async fn connect(&self) -> Result<Conn, String> {
        let t = self.target;
        let mut b = ClientBuilder::new(t.brokers.clone()).client_id("kcdscope").backoff_config(rskafka::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
            deadline: Some(CLIENT_RETRY_DEADLINE),
        });
        if let Some(tls) = &self.cfg.tls {
            b = b.tls_config(tls.clone());
        }
        let client = b.build().await.map_err(|e| format!("cannot reach the brokers {}: {e}", t.brokers.join(",")))?;
        let n = partitions(&client, &t.topic).await?;
        Ok(Conn { client, partitions: (0..n).map(|_| None).collect(), checked: std::time::Instant::now() })
    }
}

fn fill(out: &mut [(ItemOutcome, Option<String>)], idx: &[usize], o: ItemOutcome, why: &str) {
    for i in idx {
        out[*i] = (o, (o != ItemOutcome::Stored).then(|| why.to_string()));
    }
}

impl Deliver for Kafka<'_> {
    async fn deliver(&mut self, lines: &[&[u8]]) -> Outcomes {
        let timeout = self.cfg.timeout;
        let mut out: Outcomes = vec![(ItemOutcome::Retry, Some("not sent: an earlier request of this batch failed".into())); lines.len()];
        if let Some(c) = self.conn.as_mut().filter(|c| c.checked.elapsed() >= METADATA_MAX_AGE) {
            match tokio::time::timeout(timeout, partitions(&c.client, &self.target.topic)).await {
                Ok(Ok(n)) if n == c.partitions.len() => c.checked = std::time::Instant::now(),
                // Another count, an error, no answer: all afresh.
                _ => self.conn = None,
            }
        }
        if self.conn.is_none() {
            match tokio::time::timeout(timeout, self.connect()).await {
                Ok(Ok(c)) => self.conn = Some(c),
                Ok(Err(e)) => return vec![(ItemOutcome::Retry, Some(e)); lines.len()],
                Err(_) => return vec![(ItemOutcome::Retry, Some(format!("no answer from the brokers in {} s", timeout.as_secs()))); lines.len()],
            }
        }
        let Some(conn) = self.conn.as_mut() else { return out };
        let n = conn.partitions.len();
        let routes: Vec<Route> = lines.iter().map(|l| route(l)).collect();
        let mut by_partition: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, r) in routes.iter().enumerate() {
            by_partition[partition_of(&r.hashed, n)].push(i);
        }
        let mut reconnect = false;
        let mut request_bytes = self.request_bytes;
        'partitions: for (p, idx) in by_partition.iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            if conn.partitions[p].is_none() {
                let pc = conn.client.partition_client(self.target.topic.clone(), p as i32, UnknownTopicHandling::Retry);
                match tokio::time::timeout(timeout, pc).await {
                    Ok(Ok(pc)) => conn.partitions[p] = Some(pc),
                    Ok(Err(e)) => {
                        fill(&mut out, idx, ItemOutcome::Retry, &format!("partition {p}: {e}"));
                        reconnect = true;
                        break 'partitions;
                    }
                    Err(_) => {
                        fill(&mut out, idx, ItemOutcome::Retry, &format!("partition {p}: no leader found in {} s", timeout.as_secs()));
                        reconnect = true;
                        break 'partitions;
                    }
                }
            }
            let Some(pc) = conn.partitions[p].as_ref() else { break };
            let mut start = 0;
            while start < idx.len() {
                // As many records as fit in one request; at least one.
                let mut end = start;
                let mut bytes = 0usize;
                while end < idx.len() && (end == start || bytes + lines[idx[end]].len() <= request_bytes) {
                    bytes += lines[idx[end]].len();
                    end += 1;
                }
                let records: Vec<Record> = idx[start..end]
                    .iter()
                    .map(|i| Record {
                        key: routes[*i].key.clone(),
                        value: Some(lines[*i].to_vec()),
                        headers: BTreeMap::new(),
                        timestamp: routes[*i].time.unwrap_or_else(|| DateTime::<Utc>::from(std::time::SystemTime::now())),
                    })
                    .collect();
                match tokio::time::timeout(timeout, pc.produce(records, Compression::NoCompression)).await {
                    Ok(Ok(_offsets)) => fill(&mut out, &idx[start..end], ItemOutcome::Stored, ""),
                    Ok(Err(e)) => match classify(protocol_error(&e)) {
                        Failure::TooLarge if end - start > 1 => {
                            request_bytes = (bytes / 2).max(1);
                            fill(&mut out, &idx[start..], ItemOutcome::Retry, &format!("partition {p}: {e}; smaller requests from now on"));
                            continue 'partitions;
                        }
                        Failure::TooLarge | Failure::Refused => fill(&mut out, &idx[start..end], ItemOutcome::Rejected, &format!("partition {p}: {e}")),
                        Failure::Retry => {
                            // The rest of this partition waits: its order is kept.
                            fill(&mut out, &idx[start..], ItemOutcome::Retry, &format!("partition {p}: {e}"));
                            reconnect = true;
                            break 'partitions;
                        }
                    },
                    Err(_) => {
                        fill(&mut out, &idx[start..], ItemOutcome::Retry, &format!("partition {p}: no answer in {} s", timeout.as_secs()));
                        reconnect = true;
                        break 'partitions;
                    }
                }
                start = end;
            }
        }
        self.request_bytes = request_bytes;
        if reconnect {
            // A fresh connection and fresh metadata next time (a broker restarted, a leader moved).
            self.conn = None;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_own_test_vectors() {
        // org.apache.kafka.common.utils.UtilsTest#testMurmur2 (checked against kafka-python's
        // murmur2 too, in tests/tests/ship_kafka.rs).
        for (s, want) in [
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
            ("abc", 479470107),
        ] {
            assert_eq!(murmur2(s.as_bytes()), want, "{s}");
        }
        assert!(partition_of(b"foobar", 7) < 7);
        assert_eq!(partition_of(b"x", 0), 0, "no division by zero");
    }

    #[test]
    fn events_are_keyed_by_their_flow_in_both_layouts() {
        let eve = route(br#"{"timestamp":"2024-03-01T10:00:00.250000+00:00","event_type":"krb5","flow_id":"1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0="}"#);
        assert_eq!(eve.key.as_deref(), Some(&b"1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0="[..]));
        assert_eq!(eve.hashed, eve.key.clone().unwrap_or_default());
        assert_eq!(eve.time.map(|t| t.timestamp_millis()), Some(1709287200250));
        let sub_ms = route(br#"{"timestamp":"2024-03-01T10:00:00.250999+00:00"}"#);
        assert_eq!(sub_ms.time.map(|t| t.timestamp_subsec_nanos()), Some(250_000_000), "whole milliseconds");
        let ecs = route(br#"{"@timestamp":"2024-03-01T10:00:01Z","network":{"community_id":"1:abc="},"event":{"dataset":"kcdscope.krb5"}}"#);
        assert_eq!(ecs.key.as_deref(), Some(&b"1:abc="[..]));
        let finding = route(br#"{"timestamp":"2024-03-01T10:00:02Z","event_type":"finding"}"#);
        assert_eq!((finding.key, finding.hashed.as_slice()), (None, &b"finding"[..]));
        let junk = route(b"not json");
        assert_eq!((junk.key, junk.hashed.len(), junk.time), (None, 0, None));
    }

    #[test]
    fn too_large_shrinks_requests_refusals_are_final_the_rest_is_retried() {
        assert_eq!(classify(Some(&ProtocolError::MessageTooLarge)), Failure::TooLarge);
        assert_eq!(classify(Some(&ProtocolError::RecordListTooLarge)), Failure::TooLarge);
        assert_eq!(classify(Some(&ProtocolError::InvalidRecord)), Failure::Refused);
        assert_eq!(classify(Some(&ProtocolError::NotLeaderOrFollower)), Failure::Retry);
        assert_eq!(classify(Some(&ProtocolError::RequestTimedOut)), Failure::Retry);
        assert_eq!(classify(None), Failure::Retry);
    }
}
