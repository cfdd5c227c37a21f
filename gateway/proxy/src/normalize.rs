//! The device's request made fit for Exchange: hop-by-hop headers and everything the
//! device could use to speak for someone else removed (RFC 9110 7.6.1), our own
//! X-Forwarded-For and Host set. The Authorization header is added later, from the ticket.
//!
//! hyper as a client frames the body from the headers it is given when they are present,
//! so Content-Length and Transfer-Encoding go too: the forwarded body is framed from the
//! body's own length (hyper's parser already refused conflicting framings).

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Uri, Version};

use crate::reason::Reason;

/// Headers never forwarded, whatever the Connection header says.
const STRIPPED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "forwarded",
    // Client-address headers other proxies set: only our X-Forwarded-For says who connected.
    "x-real-ip",
    "true-client-ip",
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

/// The one path forwarded (MS-ASHTTP 2.2.1), compared without case as IIS does, and the
/// handler name IIS maps it to. Nothing else on Exchange (OWA, EWS, ECP, PowerShell) is
/// reachable with the device's delegated ticket.
pub const EAS_PATHS: &[&str] = &["/Microsoft-Server-ActiveSync", "/Microsoft-Server-ActiveSync/default.eas"];

/// Longer request targets get 414: IIS's own default (maxQueryString 2048, maxUrl 4096)
/// refuses them anyway, and a device has no business sending more.
pub const MAX_TARGET: usize = 8192;

/// The method and the target, before anything is asked of the KDC: ActiveSync uses OPTIONS
/// and POST (GET and HEAD are let through for the probes of monitoring tools); a path is
/// compared as sent, so that percent-encoding, dot segments, backslashes or a doubled slash
/// cannot reach another application on the same host through a decoding the gateway does
/// not share with IIS.
pub fn check_target(method: &Method, uri: &Uri) -> Result<(), Reason> {
    match *method {
        Method::POST | Method::OPTIONS | Method::GET | Method::HEAD => {}
        Method::PUT | Method::DELETE | Method::PATCH | Method::TRACE | Method::CONNECT => return Err(Reason::MethodNotAllowed),
        _ => return Err(Reason::MethodUnknown),
    }
    if uri.path_and_query().map_or(0, |p| p.as_str().len()) > MAX_TARGET {
        return Err(Reason::UriTooLong);
    }
    let path = uri.path();
    if EAS_PATHS.iter().any(|p| p.eq_ignore_ascii_case(path)) {
        Ok(())
    } else {
        Err(Reason::PathRefused)
    }
}

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
    // RFC 9112 3.2: a request with two Host lines, or an HTTP/1.1 one without, is refused
    // (the value is replaced by Exchange's either way, but a device sending either is not a
    // device speaking HTTP).
    let hosts = headers.get_all(header::HOST).iter().count();
    if hosts > 1 || (hosts == 0 && version == Version::HTTP_11) {
        return Err(Reason::BadRequest);
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
        let mut m = h(&[("Upgrade", "h2c"), ("Connection", "Upgrade"), ("Host", "gw")]);
        assert_eq!(normalize(&Method::POST, Version::HTTP_11, &mut m, None, ip, &host), Err(Reason::UpgradeRefused));
        let mut m = h(&[("Content-Length", "3"), ("Host", "gw")]);
        assert_eq!(normalize(&Method::GET, Version::HTTP_11, &mut m, Some(3), ip, &host), Err(Reason::BodyOnGet));
        let mut m = h(&[("Transfer-Encoding", "chunked"), ("Host", "gw")]);
        assert_eq!(normalize(&Method::HEAD, Version::HTTP_11, &mut m, None, ip, &host), Err(Reason::BodyOnGet));
        let mut m = h(&[("Connection", "bad header name"), ("Host", "gw")]);
        assert_eq!(normalize(&Method::POST, Version::HTTP_11, &mut m, None, ip, &host), Err(Reason::BadRequest));
        let mut m = h(&[("Host", "a"), ("Host", "b")]);
        assert_eq!(normalize(&Method::POST, Version::HTTP_11, &mut m, None, ip, &host), Err(Reason::BadRequest));
        let mut m = h(&[]);
        assert_eq!(normalize(&Method::POST, Version::HTTP_11, &mut m, None, ip, &host), Err(Reason::BadRequest));
        let mut m = h(&[]);
        assert_eq!(normalize(&Method::POST, Version::HTTP_10, &mut m, None, ip, &host), Ok(()));
        let mut m = h(&[("Host", "gw")]);
        assert_eq!(normalize(&Method::OPTIONS, Version::HTTP_11, &mut m, Some(0), ip, &host), Ok(()));
    }

    #[test]
    fn targets() {
        let ok = |m: Method, u: &str| check_target(&m, &u.parse().expect("uri"));
        assert_eq!(ok(Method::POST, "/Microsoft-Server-ActiveSync?Cmd=Sync"), Ok(()));
        assert_eq!(ok(Method::OPTIONS, "/microsoft-server-activesync"), Ok(()));
        assert_eq!(ok(Method::POST, "/Microsoft-Server-ActiveSync/default.eas?Cmd=Ping"), Ok(()));
        // absolute-form: the path counts, the authority is replaced by Exchange's
        assert_eq!(ok(Method::POST, "http://evil.example/Microsoft-Server-ActiveSync"), Ok(()));
        for p in [
            "/Microsoft-Server-ActiveSync/../owa/",
            "/Microsoft-Server-ActiveSync/%2e%2e/ecp",
            "/Microsoft-Server-ActiveSync%2F..%2Fews",
            "/Microsoft-Server-ActiveSync\\..\\owa",
            "//Microsoft-Server-ActiveSync",
            "/Microsoft-Server-ActiveSync/",
            "/Microsoft-Server-ActiveSyn%63",
            "/owa/",
            "/",
            "*",
        ] {
            let Ok(u) = p.parse::<Uri>() else { continue };
            assert_eq!(check_target(&Method::POST, &u), Err(Reason::PathRefused), "{p}");
        }
        assert_eq!(ok(Method::CONNECT, "exchange.lab.test:443"), Err(Reason::MethodNotAllowed));
        assert_eq!(ok(Method::TRACE, "/Microsoft-Server-ActiveSync"), Err(Reason::MethodNotAllowed));
        let propfind = Method::from_bytes(b"PROPFIND").expect("method");
        assert_eq!(check_target(&propfind, &"/Microsoft-Server-ActiveSync".parse().expect("uri")), Err(Reason::MethodUnknown));
    }
}
