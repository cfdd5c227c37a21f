//! The device's request made fit for Exchange: hop-by-hop headers and everything the
//! device could use to speak for someone else removed (RFC 9110 7.6.1), our own
//! X-Forwarded-For and Host set. The Authorization header is added later, from the ticket.
//!
//! hyper as a client frames the body from the headers it is given when they are present,
//! so Content-Length and Transfer-Encoding go too: the forwarded body is framed from the
//! body's own length (hyper's parser already refused conflicting framings).

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Version};

use crate::reason::Reason;

/// Headers never forwarded, whatever the Connection header says.
const STRIPPED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "forwarded",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
    "host",
];

/// Rewrites the request head in place; `Err` is a refusal answered to the device.
pub fn normalize(
    method: &Method,
    version: Version,
    headers: &mut HeaderMap,
    body_len: Option<u64>,
    peer: std::net::IpAddr,
    host: &HeaderValue,
) -> Result<(), Reason> {
    if version != Version::HTTP_11 && version != Version::HTTP_10 {
        return Err(Reason::BadRequest);
    }
    if headers.contains_key(header::UPGRADE) {
        return Err(Reason::UpgradeRefused);
    }
    let has_body = headers.contains_key(header::TRANSFER_ENCODING) || body_len.is_some_and(|n| n > 0);
    if (method == Method::GET || method == Method::HEAD) && has_body {
        return Err(Reason::BodyOnGet);
    }
    let mut named: Vec<HeaderName> = Vec::new();
    for v in headers.get_all(header::CONNECTION) {
        let Ok(s) = v.to_str() else { return Err(Reason::BadRequest) };
        for token in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            match HeaderName::from_bytes(token.as_bytes()) {
                Ok(n) => named.push(n),
                Err(_) => return Err(Reason::BadRequest),
            }
        }
    }
    for n in named {
        headers.remove(n);
    }
    for n in STRIPPED {
        headers.remove(*n);
    }
    let forwarded: Vec<HeaderName> =
        headers.keys().filter(|k| k.as_str().starts_with("x-forwarded-")).cloned().collect();
    for n in forwarded {
        headers.remove(n);
    }
    if let Ok(v) = HeaderValue::from_str(&peer.to_string()) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    headers.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static("https"));
    headers.insert(header::HOST, host.clone());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(HeaderName::from_bytes(k.as_bytes()).expect("name"), HeaderValue::from_str(v).expect("value"));
        }
        m
    }

    #[test]
    fn what_a_device_cannot_pass_on() {
        let mut m = h(&[
            ("Authorization", "Basic YWxpY2U6c2VjcmV0"),
            ("Proxy-Authorization", "Basic eA=="),
            ("X-Forwarded-For", "1.2.3.4"),
            ("X-Forwarded-Host", "evil"),
            ("Forwarded", "for=1.2.3.4"),
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("X-Secret-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X-T"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "5"),
            ("Host", "gateway.lab.test"),
            ("MS-ASProtocolVersion", "14.1"),
            ("Content-Type", "application/vnd.ms-sync.wbxml"),
        ]);
        let host = HeaderValue::from_static("exchange.lab.test");
        normalize(&Method::POST, Version::HTTP_11, &mut m, None, "10.0.0.7".parse().expect("ip"), &host).expect("ok");
        let mut names: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["content-type", "host", "ms-asprotocolversion", "x-forwarded-for", "x-forwarded-proto"]);
        assert_eq!(m["x-forwarded-for"], "10.0.0.7");
        assert_eq!(m["host"], "exchange.lab.test");
        assert_eq!(m.get_all("x-forwarded-for").iter().count(), 1);
    }

    #[test]
    fn refused_requests() {
        let host = HeaderValue::from_static("x");
        let ip = "127.0.0.1".parse().expect("ip");
        let mut m = h(&[("Upgrade", "h2c"), ("Connection", "Upgrade")]);
        assert_eq!(normalize(&Method::POST, Version::HTTP_11, &mut m, None, ip, &host), Err(Reason::UpgradeRefused));
        let mut m = h(&[("Content-Length", "3")]);
        assert_eq!(normalize(&Method::GET, Version::HTTP_11, &mut m, Some(3), ip, &host), Err(Reason::BodyOnGet));
        let mut m = h(&[("Transfer-Encoding", "chunked")]);
        assert_eq!(normalize(&Method::HEAD, Version::HTTP_11, &mut m, None, ip, &host), Err(Reason::BodyOnGet));
        let mut m = h(&[("Connection", "bad header name")]);
        assert_eq!(normalize(&Method::POST, Version::HTTP_11, &mut m, None, ip, &host), Err(Reason::BadRequest));
        let mut m = h(&[]);
        assert_eq!(normalize(&Method::OPTIONS, Version::HTTP_11, &mut m, Some(0), ip, &host), Ok(()));
    }
}
