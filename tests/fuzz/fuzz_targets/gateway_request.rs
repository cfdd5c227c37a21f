//! The gateway's request normalisation from arbitrary request heads: whatever hyper's
//! parser (httparse) accepts is normalised, and the head forwarded never carries the
//! device's Authorization, a hop-by-hop or framing header, a second Host or a forwarding
//! header other than the gateway's own; only the ActiveSync path passes the target check.
//! The ActiveSync query parser (plain and base64 form) gets the target's query.
#![no_main]
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Uri, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(data) else {
        // Not a head: the query parser still takes the bytes as a query.
        let _ = kcd_gateway::eas::parse(&String::from_utf8_lossy(data));
        return;
    };
    let Some(method) = req.method.and_then(|m| Method::from_bytes(m.as_bytes()).ok()) else { return };
    let Some(uri) = req.path.and_then(|p| p.parse::<Uri>().ok()) else { return };
    let version = if req.version == Some(1) { Version::HTTP_11 } else { Version::HTTP_10 };
    let mut map = HeaderMap::new();
    for h in req.headers.iter() {
        let (Ok(n), Ok(v)) = (HeaderName::from_bytes(h.name.as_bytes()), HeaderValue::from_bytes(h.value)) else { return };
        map.append(n, v);
    }
    let _ = kcd_gateway::eas::parse(uri.query().unwrap_or(""));
    if kcd_gateway::normalize::check_target(&method, &uri).is_ok() {
        let p = uri.path();
        assert!(kcd_gateway::normalize::EAS_PATHS.iter().any(|e| e.eq_ignore_ascii_case(p)), "{p:?} passed");
        assert!(uri.path_and_query().map_or(0, |p| p.as_str().len()) <= kcd_gateway::normalize::MAX_TARGET);
    }
    let host = HeaderValue::from_static("exchange.lab.test");
    let peer: std::net::IpAddr = "192.0.2.7".parse().expect("ip");
    let body = map.get("content-length").and_then(|v| v.to_str().ok()).and_then(|s| s.parse().ok());
    if kcd_gateway::normalize::normalize(&method, version, &mut map, body, peer, &host).is_ok() {
        for n in ["authorization", "proxy-authorization", "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "content-length", "expect", "forwarded", "x-forwarded-host", "x-real-ip"] {
            assert!(!map.contains_key(n), "{n} forwarded");
        }
        assert_eq!(map.get_all("host").iter().collect::<Vec<_>>(), [&host]);
        assert_eq!(map.get_all("x-forwarded-for").iter().map(|v| v.as_bytes()).collect::<Vec<_>>(), [b"192.0.2.7".as_slice()]);
        assert!(map.keys().filter(|k| k.as_str().starts_with("x-forwarded-")).count() == 2);
    }
});
