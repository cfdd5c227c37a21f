//! Our event in Elastic Common Schema names (`--format ecs`): a pure function from one
//! event to one JSON object, no I/O. ECS fields where ECS has them (event.*, source/
//! destination, network.*, user.*, tls.*.x509.*, url/http.*, rule.*); everything
//! Kerberos-, CRL-, ActiveSync- and gateway-specific under one custom namespace,
//! `kcdscope.*`, as ECS asks of custom fields (and as Elastic's Zeek and Suricata
//! integrations do with `zeek.*` and `suricata.eve.*`).
//!
//! Kerberos `event.action` values are those Elastic's Windows security-log integrations
//! (Winlogbeat security module, the `system`/`windows` integrations) give events 4768,
//! 4769, 4770 and 4771, so that detection rules written for domain controllers' logs
//! match what kcdscope saw on the wire. The README's "ECS mapping" table lists it all.
//!
//! Secrets: the events themselves never carry keys, passwords, tokens or PEM (the
//! schema keeps sizes, kinds, fingerprints and names), and this mapping adds nothing.

use kcd_schema::{
    Event, EventType, Finding, Gateway, Http, Krb5, MessageType, Severity, Tls, TlsOutcome,
    Transport, X509, SCHEMA_VERSION,
};
use serde_json::{json, Map, Value};

/// The ECS version whose field names and allowed values this mapping follows.
pub const ECS_VERSION: &str = "8.11.0";

/// Windows security-log vocabulary (event.action of events 4768/4769/4770/4771).
pub const ACTION_TGT: &str = "kerberos-authentication-ticket-requested";
pub const ACTION_SERVICE_TICKET: &str = "kerberos-service-ticket-requested";
pub const ACTION_RENEW: &str = "kerberos-service-ticket-renewed";
pub const ACTION_PREAUTH_FAILED: &str = "kerberos-preauth-failed";

/// Sets `path` ("a.b.c") in `root`, creating the objects on the way.
fn set(root: &mut Map<String, Value>, path: &str, v: impl Into<Value>) {
    let mut parts = path.split('.').peekable();
    let mut cur = root;
    while let Some(p) = parts.next() {
        if parts.peek().is_none() {
            cur.insert(p.to_string(), v.into());
            return;
        }
        let next = cur
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        match next.as_object_mut() {
            Some(m) => cur = m,
            None => return,
        }
    }
}

fn opt<T: Into<Value>>(root: &mut Map<String, Value>, path: &str, v: Option<T>) {
    if let Some(v) = v {
        set(root, path, v);
    }
}

/// A serialisable part of the event as JSON (our schema's own layout).
fn as_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// "user@REALM" (or "REALM\\user") as (name, domain).
fn split_user(s: &str) -> (String, Option<String>) {
    if let Some((n, d)) = s.rsplit_once('@') {
        return (n.to_string(), Some(d.to_string()));
    }
    if let Some((d, n)) = s.split_once('\\') {
        return (n.to_string(), Some(d.to_string()));
    }
    (s.to_string(), None)
}

/// Elastic's numeric severities (as its detection rules use them: low 21, medium 47,
/// high 73).
fn severity_number(s: Severity) -> u8 {
    match s {
        Severity::Info => 21,
        Severity::Warning => 47,
        Severity::Error => 73,
    }
}

/// The event's id: the first 16 bytes of the SHA-256 of its line in kcdscope's own layout,
/// in hex. The same event gets the same id in every replay and on every retry, so a store
/// that keys documents by it (Elasticsearch `_bulk` `create` with `_id`) never holds one
/// twice; two events differ in file, frame, time or content, hence in id.
pub fn event_id(e: &Event<'_>) -> String {
    use sha2::{Digest, Sha256};
    let mut line = Vec::with_capacity(512);
    e.write_json(&mut line);
    let digest = Sha256::digest(&line);
    let mut id = String::with_capacity(32);
    for b in digest.iter().take(16) {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// `event` in ECS names.
pub fn to_ecs(e: &Event<'_>) -> Value {
    let mut m = Map::new();
    let ty = e.event_type.as_str();
    let mut ts = String::with_capacity(30);
    e.timestamp.write_rfc3339(&mut ts);
    set(&mut m, "@timestamp", ts);
    set(&mut m, "ecs.version", ECS_VERSION);
    set(&mut m, "event.module", "kcdscope");
    set(&mut m, "event.dataset", format!("kcdscope.{ty}"));
    set(&mut m, "event.kind", "event");
    set(&mut m, "event.id", event_id(e));
    set(&mut m, "kcdscope.schema_version", SCHEMA_VERSION);
    set(&mut m, "kcdscope.event_type", ty);
    opt(&mut m, "kcdscope.pcap_file", e.pcap_file.as_deref());
    set(&mut m, "kcdscope.frame", e.frame);
    opt(&mut m, "kcdscope.device", e.device.as_deref());

    opt(&mut m, "source.ip", e.src_ip.map(|a| a.to_string()));
    opt(&mut m, "source.port", e.src_port);
    opt(&mut m, "destination.ip", e.dest_ip.map(|a| a.to_string()));
    opt(&mut m, "destination.port", e.dest_port);
    opt(
        &mut m,
        "network.transport",
        e.proto.map(|p| match p {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }),
    );
    // flow_id is Community ID v1, which is what ECS's network.community_id holds.
    opt(&mut m, "network.community_id", e.flow_id.as_deref());

    let mut users: Vec<String> = Vec::new();
    if let Some(k) = &e.krb5 {
        krb5(&mut m, k, &mut users);
    }
    if let Some(a) = &e.anomaly {
        set(&mut m, "event.category", json!(["network"]));
        set(&mut m, "event.type", json!(["info"]));
        set(&mut m, "event.action", format!("anomaly-{}", a.kind));
        set(&mut m, "message", a.detail.as_ref());
        set(&mut m, "kcdscope.anomaly", as_value(a));
    }
    if let Some(f) = &e.finding {
        finding(&mut m, f);
    }
    if let Some(t) = &e.tls {
        tls(&mut m, t);
    }
    if let Some(h) = &e.http {
        http(&mut m, h);
    }
    if let Some(x) = &e.eas {
        set(&mut m, "kcdscope.eas", as_value(x));
        if let Some(u) = x.user.as_deref() {
            users.push(u.to_string());
        }
    }
    if let Some(c) = &e.crl {
        set(&mut m, "url.full", c.url.as_str());
        set(&mut m, "kcdscope.crl", as_value(c));
    }
    if let Some(g) = &e.gateway {
        gateway(&mut m, e.event_type, g, &mut users);
    }
    if let Some(u) = users.first() {
        if m.get("user").is_none_or(|u| u.get("name").is_none()) {
            let (name, domain) = split_user(u);
            set(&mut m, "user.name", name);
            opt(&mut m, "user.domain", domain);
        }
    }
    users.sort();
    users.dedup();
    if !users.is_empty() {
        set(&mut m, "related.user", users);
    }
    Value::Object(m)
}

fn krb5(m: &mut Map<String, Value>, k: &Krb5<'_>, users: &mut Vec<String>) {
    set(m, "network.protocol", "kerberos");
    set(m, "event.category", json!(["authentication", "network"]));
    let t = k.msg_type;
    let is_req = matches!(t, MessageType::AS_REQ | MessageType::TGS_REQ | MessageType::AP_REQ);
    set(m, "event.type", if is_req { json!(["start", "protocol"]) } else { json!(["info", "protocol"]) });
    // What the exchange is: a reply or error names the request it answers.
    let asked = match t {
        MessageType::AS_REQ | MessageType::AS_REP => Some(MessageType::AS_REQ),
        MessageType::TGS_REQ | MessageType::TGS_REP => Some(MessageType::TGS_REQ),
        _ => k.request.as_ref().map(|r| r.msg_type),
    };
    let renew = k.kdc_options.has(kcd_schema::kdc_options::RENEW);
    let preauth_failed = k.error.as_ref().is_some_and(|x| x.code == kcd_schema::ErrorCode::KDC_ERR_PREAUTH_FAILED);
    let action = match asked {
        _ if preauth_failed => ACTION_PREAUTH_FAILED.to_string(),
        Some(MessageType::AS_REQ) => ACTION_TGT.to_string(),
        Some(MessageType::TGS_REQ) if renew => ACTION_RENEW.to_string(),
        Some(MessageType::TGS_REQ) => ACTION_SERVICE_TICKET.to_string(),
        _ => format!("kerberos-{}", t.to_string().to_ascii_lowercase()),
    };
    set(m, "event.action", action);
    let outcome = match (&k.error, t) {
        (Some(x), _) if x.code == kcd_schema::ErrorCode::KDC_ERR_PREAUTH_REQUIRED => "unknown",
        (Some(_), _) => "failure",
        (None, MessageType::AS_REP | MessageType::TGS_REP | MessageType::AP_REP) => "success",
        _ => "unknown",
    };
    set(m, "event.outcome", outcome);
    if let Some(x) = &k.error {
        set(m, "error.code", x.code.to_string());
        opt(m, "error.message", x.e_text.as_deref());
        if outcome == "unknown" {
            set(m, "event.reason", "the KDC asks for pre-authentication (the normal first step of a password login)");
        }
    }
    if let Some(r) = &k.request {
        set(m, "event.duration", r.latency_us.saturating_mul(1000));
    }
    if let Some(c) = &k.cname {
        // An enterprise name ("alice@lab.test") carries its own domain.
        let (name, domain) = split_user(&c.name());
        let domain = domain.or_else(|| k.crealm.as_deref().or(k.realm.as_deref()).map(str::to_string));
        set(m, "user.name", name.clone());
        opt(m, "user.domain", domain.clone());
        users.push(match domain {
            Some(d) => format!("{name}@{d}"),
            None => name,
        });
    }
    // S4U2Self: the service (user.*) acts for someone else, the effective user.
    let s4u_user = k
        .for_user
        .as_ref()
        .and_then(|f| f.user.as_ref().map(|u| (u.name().into_owned(), f.realm.as_deref())))
        .or_else(|| {
            k.s4u_x509_user
                .as_ref()
                .and_then(|s| s.user.as_ref().map(|u| (u.name().into_owned(), s.realm.as_deref())))
        });
    if let Some((name, realm)) = s4u_user {
        let (n, d) = split_user(&name);
        let domain = d.or(realm.map(str::to_string));
        set(m, "user.effective.name", n.clone());
        opt(m, "user.effective.domain", domain.clone());
        users.push(match domain {
            Some(d) => format!("{n}@{d}"),
            None => n,
        });
    }
    set(m, "kcdscope.kerberos", as_value(k));
}

fn finding(m: &mut Map<String, Value>, f: &Finding) {
    set(m, "event.kind", "alert");
    let category = match f.id.split('.').next() {
        Some("krb") => json!(["authentication"]),
        Some("http") | Some("eas") | Some("exchange") => json!(["web"]),
        _ => json!(["authentication", "network"]),
    };
    set(m, "event.category", category);
    set(m, "event.type", json!(["info"]));
    set(m, "event.action", "finding");
    set(m, "event.severity", severity_number(f.severity));
    set(m, "event.start", f.first_seen.to_rfc3339());
    set(m, "event.end", f.last_seen.to_rfc3339());
    set(m, "rule.id", f.id.as_str());
    set(m, "rule.name", f.id.as_str());
    set(m, "rule.ruleset", "kcdscope");
    set(m, "message", f.explanation.as_str());
    set(m, "kcdscope.finding", as_value(f));
}

fn x509(m: &mut Map<String, Value>, at: &str, c: &X509) {
    set(m, &format!("{at}.x509.subject.distinguished_name"), c.subject.as_str());
    set(m, &format!("{at}.x509.issuer.distinguished_name"), c.issuer.as_str());
    set(m, &format!("{at}.x509.serial_number"), c.serial.as_str());
    set(m, &format!("{at}.x509.not_before"), c.not_before.as_str());
    set(m, &format!("{at}.x509.not_after"), c.not_after.as_str());
    let mut alt: Vec<&str> = Vec::new();
    alt.extend(c.san_dns.iter().map(String::as_str));
    alt.extend(c.san_email.iter().map(String::as_str));
    alt.extend(c.san_uri.iter().map(String::as_str));
    alt.extend(c.san_upn.iter().map(String::as_str));
    if !alt.is_empty() {
        set(m, &format!("{at}.x509.alternative_names"), alt);
    }
    set(m, &format!("{at}.hash.sha256"), c.sha256.to_ascii_uppercase());
    set(m, &format!("{at}.hash.sha1"), c.sha1.to_ascii_uppercase());
}

fn tls(m: &mut Map<String, Value>, t: &Tls) {
    set(m, "network.protocol", "tls");
    set(m, "event.category", json!(["network"]));
    set(m, "event.type", json!(["connection", "protocol"]));
    set(m, "event.action", "tls-handshake");
    let (established, outcome) = match t.outcome {
        TlsOutcome::Established | TlsOutcome::Encrypted => (true, "success"),
        TlsOutcome::Alert => (false, "failure"),
        TlsOutcome::Incomplete => (false, "unknown"),
    };
    set(m, "tls.established", established);
    set(m, "event.outcome", outcome);
    if let Some(v) = t.version.as_deref() {
        // "TLS 1.2" -> tls.version_protocol "tls", tls.version "1.2".
        match v.split_once(' ') {
            Some((p, n)) => {
                set(m, "tls.version_protocol", p.to_ascii_lowercase());
                set(m, "tls.version", n);
            }
            None => set(m, "tls.version", v),
        }
    }
    opt(m, "tls.cipher", t.cipher_suite.as_deref());
    opt(m, "tls.client.server_name", t.sni.as_deref());
    if !t.cipher_suites.is_empty() {
        set(m, "tls.client.supported_ciphers", t.cipher_suites.clone());
    }
    if let Some(c) = t.client_certificates.first() {
        x509(m, "tls.client", c);
        set(m, "tls.client.subject", c.subject.as_str());
        set(m, "tls.client.issuer", c.issuer.as_str());
    }
    if let Some(c) = t.server_certificates.first() {
        x509(m, "tls.server", c);
        set(m, "tls.server.subject", c.subject.as_str());
        set(m, "tls.server.issuer", c.issuer.as_str());
    }
    if let Some(a) = &t.alert {
        set(m, "error.code", a.description.as_str());
    }
    set(m, "kcdscope.tls", as_value(t));
}

fn http(m: &mut Map<String, Value>, h: &Http) {
    set(m, "network.protocol", "http");
    set(m, "event.category", json!(["web", "network"]));
    set(m, "event.type", json!(["access", "protocol"]));
    set(m, "event.action", "http-request");
    set(m, "http.request.method", h.http_method.as_str());
    opt(m, "http.version", h.protocol.as_deref().map(|p| p.trim_start_matches("HTTP/").to_string()));
    opt(m, "http.response.status_code", h.status);
    opt(m, "http.request.body.bytes", h.request_body_length);
    opt(m, "http.response.body.bytes", h.length);
    opt(m, "http.response.mime_type", h.http_content_type.as_deref());
    opt(m, "user_agent.original", h.http_user_agent.as_deref());
    opt(m, "url.domain", h.hostname.as_deref());
    let (path, query) = match h.url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (h.url.as_str(), None),
    };
    set(m, "url.original", h.url.as_str());
    set(m, "url.path", path);
    opt(m, "url.query", query);
    if let Some(l) = h.latency_us {
        set(m, "event.duration", l.saturating_mul(1000));
    }
    opt(
        m,
        "event.outcome",
        h.status.map(|s| if s < 400 { "success" } else { "failure" }),
    );
    set(m, "kcdscope.http", as_value(h));
}

fn gateway(m: &mut Map<String, Value>, ty: EventType, g: &Gateway<'_>, users: &mut Vec<String>) {
    if ty != EventType::Krb5 {
        set(m, "event.category", json!(["authentication", "web"]));
        set(m, "event.type", json!(["info"]));
        set(m, "event.action", format!("gateway-{}", g.step.to_string().to_ascii_lowercase()));
        let outcome = match g.outcome.as_ref() {
            "served" | "issued" | "cache_hit" | "reply" | "ok" => "success",
            "refused" | "failed" | "krb_error" | "timeout" | "unreachable" | "bad_reply" => "failure",
            _ => "unknown",
        };
        set(m, "event.outcome", outcome);
        opt(m, "event.reason", g.reason.as_deref());
        opt(m, "http.response.status_code", g.status);
        opt(m, "http.request.id", g.request_id.as_deref());
        opt(m, "rule.id", g.finding.as_deref());
        if let Some(l) = g.latency_us {
            set(m, "event.duration", l.saturating_mul(1000));
        }
    }
    if let Some(u) = g.user.as_deref() {
        users.push(u.to_string());
    }
    if let Some(c) = &g.certificate {
        set(m, "tls.client.x509.subject.distinguished_name", c.subject.as_str());
        set(m, "tls.client.x509.issuer.distinguished_name", c.issuer.as_str());
        set(m, "tls.client.x509.serial_number", c.serial.as_str());
        if let Some(t) = chrono::DateTime::from_timestamp(c.not_after, 0) {
            set(m, "tls.client.x509.not_after", t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        set(m, "tls.client.hash.sha256", c.sha256.to_ascii_uppercase());
        if let Some(u) = &c.upn {
            set(m, "tls.client.x509.alternative_names", json!([u]));
        }
    }
    if let Some(d) = g.device.as_ref().and_then(|d| d.address.as_deref()) {
        if !m.contains_key("source") {
            let ip = d.rsplit_once(':').map(|(h, _)| h).unwrap_or(d).trim_matches(['[', ']']);
            if ip.parse::<std::net::IpAddr>().is_ok() {
                set(m, "source.ip", ip);
            }
        }
    }
    set(m, "kcdscope.gateway", as_value(g));
}

#[cfg(test)]
mod tests {
    use super::*;
    use kcd_schema::{EventType, GatewayCertificate, KcdStep, Timestamp};
    use std::borrow::Cow;

    fn at<'v>(v: &'v Value, path: &str) -> &'v Value {
        path.split('.').fold(v, |v, k| &v[k])
    }

    #[test]
    fn tls_handshake_with_a_client_certificate() {
        let cert = X509 {
            subject: "CN=alice".into(),
            issuer: "CN=Lab CA".into(),
            serial: "0A1B".into(),
            not_before: "2026-01-01T00:00:00Z".into(),
            not_after: "2027-01-01T00:00:00Z".into(),
            sha256: "ab".repeat(32),
            sha1: "cd".repeat(20),
            san_upn: vec!["alice@lab.test".into()],
            ..Default::default()
        };
        let e = Event {
            tls: Some(Box::new(Tls {
                sni: Some("mail.lab.test".into()),
                version: Some("TLS 1.2".into()),
                client_certificates: vec![cert],
                outcome: TlsOutcome::Established,
                ..Default::default()
            })),
            ..Event::bare(Timestamp(0), EventType::Tls, None, 3)
        };
        let d = to_ecs(&e);
        assert_eq!(at(&d, "tls.version"), "1.2");
        assert_eq!(at(&d, "tls.version_protocol"), "tls");
        assert_eq!(at(&d, "tls.client.server_name"), "mail.lab.test");
        assert_eq!(at(&d, "tls.client.x509.subject.distinguished_name"), "CN=alice");
        assert_eq!(at(&d, "tls.client.x509.serial_number"), "0A1B");
        assert_eq!(at(&d, "tls.client.x509.alternative_names"), &json!(["alice@lab.test"]));
        assert_eq!(at(&d, "tls.client.hash.sha256"), &Value::from("AB".repeat(32)));
        assert_eq!(at(&d, "event.outcome"), "success");
        assert_eq!(at(&d, "tls.established"), true);
    }

    #[test]
    fn gateway_refusal() {
        let mut g = Gateway::new(KcdStep::Request, "refused");
        g.user = Some(Cow::Borrowed("alice@LAB.TEST"));
        g.reason = Some(Cow::Borrowed("revoked"));
        g.status = Some(403);
        g.certificate = Some(Box::new(GatewayCertificate {
            subject: "CN=alice".into(),
            issuer: "CN=Lab CA".into(),
            serial: "0A1B".into(),
            sha256: "ab".repeat(32),
            not_after: 0,
            ..Default::default()
        }));
        let e = Event { gateway: Some(g), ..Event::bare(Timestamp(0), EventType::Gateway, None, 1) };
        let d = to_ecs(&e);
        assert_eq!(at(&d, "event.action"), "gateway-request");
        assert_eq!(at(&d, "event.outcome"), "failure");
        assert_eq!(at(&d, "event.reason"), "revoked");
        assert_eq!(at(&d, "user.name"), "alice");
        assert_eq!(at(&d, "user.domain"), "LAB.TEST");
        assert_eq!(at(&d, "http.response.status_code"), 403);
        assert_eq!(at(&d, "tls.client.x509.not_after"), "1970-01-01T00:00:00Z");
        assert_eq!(at(&d, "kcdscope.gateway.reason"), "revoked");
    }

    #[test]
    fn http_request_splits_the_target() {
        let e = Event {
            http: Some(Box::new(Http {
                hostname: Some("mail.lab.test".into()),
                url: "/Microsoft-Server-ActiveSync?Cmd=Sync&User=alice".into(),
                http_method: "POST".into(),
                protocol: Some("HTTP/1.1".into()),
                status: Some(401),
                ..Default::default()
            })),
            ..Event::bare(Timestamp(0), EventType::Http, None, 9)
        };
        let d = to_ecs(&e);
        assert_eq!(at(&d, "url.path"), "/Microsoft-Server-ActiveSync");
        assert_eq!(at(&d, "url.query"), "Cmd=Sync&User=alice");
        assert_eq!(at(&d, "http.version"), "1.1");
        assert_eq!(at(&d, "http.response.status_code"), 401);
        assert_eq!(at(&d, "event.outcome"), "failure");
    }
}
