//! What goes on the wire to the HTTP receivers and what comes back, as pure functions over
//! bytes: the Elasticsearch/OpenSearch `_bulk` body and response, the Splunk HEC body and
//! response.
//!
//! Bulk: every event is a `create` action with `_id` = the event's id (below), so that an
//! event sent twice (a retry after a lost answer, a restart from the checkpoint) is stored
//! once: the second `create` gets 409, which counts as delivered. The index is in the URL
//! (`POST /INDEX/_bulk`); `create` also works on data streams.
//!
//! The event's id: the first 128 bits of the SHA-256 of its NDJSON line, in hex. Two events
//! never share a line (each carries its frame, or the gateway's event counter, and its
//! timestamp to the microsecond), and the same event replayed again gets the same id.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::policy::ItemOutcome;

/// The id of the event written as `line` (without its newline).
pub fn event_id(line: &[u8]) -> String {
    let d = Sha256::digest(line);
    let mut s = String::with_capacity(32);
    for b in &d[..16] {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

/// Appends the `_bulk` lines of one event to `body`.
pub fn bulk_item(body: &mut Vec<u8>, line: &[u8]) {
    body.extend_from_slice(b"{\"create\":{\"_id\":\"");
    body.extend_from_slice(event_id(line).as_bytes());
    body.extend_from_slice(b"\"}}\n");
    body.extend_from_slice(line);
    body.push(b'\n');
}

#[derive(Deserialize)]
struct BulkResponse {
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// One item's outcome and, for a refusal, the receiver's reason.
pub type Outcomes = Vec<(ItemOutcome, Option<String>)>;

/// The outcome of each of the `sent` events of a `_bulk` request answered `status` with
/// `body`. An answer that cannot be matched item by item (not JSON, a different count)
/// retries the whole batch: with `create` and ids, that never duplicates.
pub fn bulk_outcomes(status: u16, body: &[u8], sent: usize) -> Outcomes {
    if !(200..300).contains(&status) {
        return vec![(ItemOutcome::Retry, Some(format!("HTTP {status}"))); sent];
    }
    let parsed: Result<BulkResponse, _> = serde_json::from_slice(body);
    match parsed {
        Ok(r) if r.items.len() == sent => r
            .items
            .into_iter()
            .map(|m| match m.into_values().next() {
                Some(it) => {
                    let o = ItemOutcome::of_status(it.status);
                    let why = it.error.map(|e| match (&e["type"], &e["reason"]) {
                        (serde_json::Value::String(t), serde_json::Value::String(r)) => format!("{} {t}: {r}", it.status),
                        _ => format!("{} {e}", it.status),
                    });
                    (o, why)
                }
                None => (ItemOutcome::Retry, Some("empty item in the bulk answer".into())),
            })
            .collect(),
        Ok(r) => vec![(ItemOutcome::Retry, Some(format!("bulk answer has {} items for {sent} sent", r.items.len()))); sent],
        Err(e) => vec![(ItemOutcome::Retry, Some(format!("bulk answer is not understood: {e}"))); sent],
    }
}

#[derive(Deserialize)]
struct TimeOnly<'a> {
    #[serde(borrow, default)]
    timestamp: Option<&'a str>,
    #[serde(borrow, default, rename = "@timestamp")]
    at_timestamp: Option<&'a str>,
}

/// Appends the HEC event of `line` to `body`: the event's own time (EVE `timestamp` or ECS
/// `@timestamp`, as epoch seconds) so that Splunk indexes it at the time it happened.
pub fn hec_item(body: &mut Vec<u8>, line: &[u8], sourcetype: &str) {
    let time = serde_json::from_slice::<TimeOnly<'_>>(line)
        .ok()
        .and_then(|t| t.timestamp.or(t.at_timestamp).and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()))
        .map(|t| format!("{}.{:06}", t.timestamp(), t.timestamp_subsec_micros()));
    body.extend_from_slice(b"{");
    if let Some(t) = time {
        body.extend_from_slice(b"\"time\":");
        body.extend_from_slice(t.as_bytes());
        body.push(b',');
    }
    body.extend_from_slice(b"\"source\":\"kcdscope\",\"sourcetype\":");
    let _ = serde_json::to_writer(&mut *body, sourcetype);
    body.extend_from_slice(b",\"event\":");
    body.extend_from_slice(line);
    body.extend_from_slice(b"}\n");
}

#[derive(Deserialize)]
struct HecResponse {
    #[serde(default)]
    text: String,
    #[serde(default)]
    code: i64,
    #[serde(default, rename = "invalid-event-number")]
    invalid_event_number: Option<usize>,
}

/// The outcome of each of the `sent` events of a HEC request. HEC answers for the request
/// as a whole: 200 all stored; 400 with `invalid-event-number` N: the events before N were
/// indexed, N is refused, the rest was not read (sent again); 400 without it: the data is
/// refused. Anything else (401/403: a token problem; 429, 5xx, 503 "server busy") is sent
/// again after a pause: refusing events because of a wrong token would lose them.
pub fn hec_outcomes(status: u16, body: &[u8], sent: usize) -> Outcomes {
    let r: Option<HecResponse> = serde_json::from_slice(body).ok();
    let why = r.as_ref().map_or_else(|| format!("HTTP {status}"), |r| format!("HTTP {status}: {} (code {})", r.text, r.code));
    match status {
        200..=299 => vec![(ItemOutcome::Stored, None); sent],
        400 => match r.and_then(|r| r.invalid_event_number) {
            Some(n) if n < sent => (0..sent)
                .map(|i| match i.cmp(&n) {
                    std::cmp::Ordering::Less => (ItemOutcome::Stored, None),
                    std::cmp::Ordering::Equal => (ItemOutcome::Rejected, Some(why.clone())),
                    std::cmp::Ordering::Greater => (ItemOutcome::Retry, None),
                })
                .collect(),
            _ => vec![(ItemOutcome::Rejected, Some(why)); sent],
        },
        _ => vec![(ItemOutcome::Retry, Some(why)); sent],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bulk_body_is_create_with_the_event_id_then_the_event() {
        let mut b = Vec::new();
        bulk_item(&mut b, br#"{"a":1}"#);
        bulk_item(&mut b, br#"{"a":2}"#);
        let text = String::from_utf8(b).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(text.ends_with('\n'), "the bulk API needs the last newline");
        // The id is independent of us: sha256 of the line, as `sha256sum` computes it.
        assert_eq!(event_id(br#"{"a":1}"#), "015abd7f5cc57a2dd94b7590f04ad808");
        assert_eq!(lines[0], r#"{"create":{"_id":"015abd7f5cc57a2dd94b7590f04ad808"}}"#);
        assert_eq!(lines[1], r#"{"a":1}"#);
        assert_ne!(lines[0], lines[2]);
    }

    #[test]
    fn a_bulk_answer_with_partial_failures_is_read_item_by_item() {
        // The shape of an OpenSearch 2.x answer (errors: true, one item per action, in order).
        let answer = br#"{"took":3,"errors":true,"items":[
            {"create":{"_index":"k","_id":"a","_version":1,"result":"created","status":201}},
            {"create":{"_index":"k","_id":"b","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[b]: version conflict, document already exists"}}},
            {"create":{"_index":"k","_id":"c","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [x]"}}},
            {"create":{"_index":"k","_id":"d","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected"}}}]}"#;
        let o = bulk_outcomes(200, answer, 4);
        let kinds: Vec<ItemOutcome> = o.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [ItemOutcome::Stored, ItemOutcome::AlreadyThere, ItemOutcome::Rejected, ItemOutcome::Retry]);
        assert_eq!(o[2].1.as_deref(), Some("400 mapper_parsing_exception: failed to parse field [x]"));
        assert_eq!(bulk_outcomes(200, answer, 5)[0].0, ItemOutcome::Retry, "count mismatch: all again");
        assert_eq!(bulk_outcomes(200, b"<html>", 2)[1].0, ItemOutcome::Retry);
        assert_eq!(bulk_outcomes(503, b"", 2), vec![(ItemOutcome::Retry, Some("HTTP 503".into())); 2]);
    }

    #[test]
    fn the_hec_body_carries_the_event_time_and_the_event_as_json() {
        let mut b = Vec::new();
        hec_item(&mut b, br#"{"timestamp":"2024-03-01T10:00:00.250000+00:00","event_type":"krb5"}"#, "kcdscope");
        hec_item(&mut b, br#"{"@timestamp":"2024-03-01T10:00:01Z"}"#, "kcdscope");
        hec_item(&mut b, br#"{"x":1}"#, "kcdscope");
        let text = String::from_utf8(b).expect("utf8");
        let v: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
        assert_eq!(v[0]["time"].as_f64(), Some(1709287200.25));
        assert_eq!(v[0]["event"]["event_type"], "krb5");
        assert_eq!(v[0]["sourcetype"], "kcdscope");
        assert_eq!(v[1]["time"].as_f64(), Some(1709287201.0));
        assert!(v[2].get("time").is_none(), "no time: HEC uses its own");
    }

    #[test]
    fn a_hec_400_with_an_invalid_event_number_splits_the_batch() {
        let o = hec_outcomes(400, br#"{"text":"Invalid data format","code":6,"invalid-event-number":2}"#, 4);
        let kinds: Vec<ItemOutcome> = o.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [ItemOutcome::Stored, ItemOutcome::Stored, ItemOutcome::Rejected, ItemOutcome::Retry]);
        assert_eq!(o[2].1.as_deref(), Some("HTTP 400: Invalid data format (code 6)"));
        assert_eq!(hec_outcomes(200, br#"{"text":"Success","code":0}"#, 3), vec![(ItemOutcome::Stored, None); 3]);
        assert!(hec_outcomes(403, br#"{"text":"Invalid token","code":4}"#, 2).iter().all(|(k, _)| *k == ItemOutcome::Retry));
        assert!(hec_outcomes(503, br#"{"text":"Server is busy","code":9}"#, 2).iter().all(|(k, _)| *k == ItemOutcome::Retry));
        assert!(hec_outcomes(400, br#"{"text":"No data","code":5}"#, 2).iter().all(|(k, _)| *k == ItemOutcome::Rejected));
    }
}
