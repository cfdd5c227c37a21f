//! Talking to KDCs: UDP for small messages, TCP (RFC 4120 7.2.2 record marking) for large
//! ones and when a KDC answers KRB_ERR_RESPONSE_TOO_BIG, a timeout per KDC, and the
//! realm's KDCs tried in the configured order. Every send, reply and failure is reported
//! to the caller, which turns them into events.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kcd_krb5::frame::encode_record;
use kcd_krb5::KrbMessage;
use kcd_schema::{Timestamp, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::config::TransportMode;
use crate::error::Attempt;

/// MIT's udp_preference_limit default: larger requests go over TCP from the start.
pub const UDP_LIMIT: usize = 1465;
/// A reply larger than this is refused (AD's largest tickets are tens of KiB).
pub const MAX_TCP_REPLY: usize = 1 << 20;
const KRB_ERR_RESPONSE_TOO_BIG: i32 = 52;

/// "dc1.lab.test", "dc1.lab.test:88", "10.0.0.3", "[fd00::3]:88" -> (host, port).
pub fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty".into());
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok((a.ip().to_string(), a.port()));
    }
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Ok((s.to_string(), 88));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("port {p:?} is not a number"))?),
        None => (s, 88),
    };
    if host.is_empty() || port == 0 || host.contains(|c: char| c.is_whitespace() || c == '/' || c == '[' || c == ']') {
        return Err("not a host name, an address or host:port".into());
    }
    Ok((host.to_string(), port))
}

pub fn now_timestamp() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_parts(d.as_secs() as i64, d.subsec_nanos())
}

/// One thing that happened on the wire, for the caller's events.
pub enum Wire<'a> {
    Sent { kdc: &'a str, attempt: u32, proto: Transport, local: SocketAddr, remote: SocketAddr, bytes: &'a [u8], at: Timestamp },
    Received { kdc: &'a str, attempt: u32, proto: Transport, local: SocketAddr, remote: SocketAddr, bytes: &'a [u8], at: Timestamp, latency: Duration },
    /// Nothing usable came back; `what` says why ("timeout after 3000 ms", "connection refused").
    Failed { kdc: &'a str, attempt: u32, proto: Transport, remote: Option<SocketAddr>, what: String, timed_out: bool },
    /// The domain controller's name did not resolve; nothing was sent to it.
    Unresolved { kdc: &'a str, what: String },
    /// The KDC answered RESPONSE_TOO_BIG over UDP: the same KDC is asked again over TCP.
    TcpRetry { kdc: &'a str, attempt: u32 },
}

/// A reply, and where it came from.
pub struct Reply {
    pub bytes: Vec<u8>,
    pub kdc: String,
    pub proto: Transport,
}

pub struct Kdcs<'a> {
    pub names: &'a [String],
    pub mode: TransportMode,
    pub timeout: Duration,
}

impl Kdcs<'_> {
    /// Sends `req` to the KDCs in order until one answers.
    pub async fn exchange(&self, req: &[u8], obs: &mut (dyn FnMut(Wire<'_>) + Send)) -> Result<Reply, Vec<Attempt>> {
        let mut failed = Vec::new();
        let mut attempt = 0u32;
        for name in self.names {
            let (host, port) = match split_host_port(name) {
                Ok(hp) => hp,
                Err(e) => {
                    failed.push(Attempt { kdc: name.clone(), what: e, unresolved: false });
                    continue;
                }
            };
            let addrs: Vec<SocketAddr> = match tokio::time::timeout(self.timeout, tokio::net::lookup_host((host.as_str(), port))).await {
                Ok(Ok(a)) => a.collect(),
                Ok(Err(e)) => {
                    let what = format!("name does not resolve: {e}");
                    obs(Wire::Unresolved { kdc: name, what: what.clone() });
                    failed.push(Attempt { kdc: name.clone(), what, unresolved: true });
                    continue;
                }
                Err(_) => {
                    let what = "name resolution timed out".to_string();
                    obs(Wire::Unresolved { kdc: name, what: what.clone() });
                    failed.push(Attempt { kdc: name.clone(), what, unresolved: true });
                    continue;
                }
            };
            for addr in addrs {
                attempt += 1;
                let mut proto = if self.mode == TransportMode::Tcp || req.len() > UDP_LIMIT { Transport::Tcp } else { Transport::Udp };
                let r = match proto {
                    Transport::Tcp => self.tcp(name, attempt, addr, req, obs).await,
                    Transport::Udp => match self.udp(name, attempt, addr, req, obs).await {
                        Ok(bytes) if too_big(&bytes) => {
                            obs(Wire::TcpRetry { kdc: name, attempt });
                            proto = Transport::Tcp;
                            self.tcp(name, attempt, addr, req, obs).await
                        }
                        other => other,
                    },
                };
                match r {
                    Ok(bytes) => return Ok(Reply { bytes, kdc: name.clone(), proto }),
                    Err(Failure { what, timed_out }) => {
                        obs(Wire::Failed { kdc: name, attempt, proto, remote: Some(addr), what: what.clone(), timed_out });
                        failed.push(Attempt { kdc: format!("{name} ({addr})"), what, unresolved: false });
                    }
                }
            }
        }
        Err(failed)
    }

    async fn udp(&self, name: &str, attempt: u32, addr: SocketAddr, req: &[u8], obs: &mut (dyn FnMut(Wire<'_>) + Send)) -> Result<Vec<u8>, Failure> {
        let bind: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let sock = UdpSocket::bind(bind).await.map_err(|e| format!("UDP socket: {e}"))?;
        sock.connect(addr).await.map_err(|e| format!("UDP connect: {e}"))?;
        let local = sock.local_addr().map_err(|e| e.to_string())?;
        let start = Instant::now();
        sock.send(req).await.map_err(|e| format!("UDP send: {e}"))?;
        obs(Wire::Sent { kdc: name, attempt, proto: Transport::Udp, local, remote: addr, bytes: req, at: now_timestamp() });
        let mut buf = vec![0u8; 65_536];
        let n = match tokio::time::timeout(self.timeout, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(format!("UDP: {e}").into()),
            Err(_) => return Err(Failure::timeout(format!("no answer over UDP within {} ms", self.timeout.as_millis()))),
        };
        buf.truncate(n);
        obs(Wire::Received { kdc: name, attempt, proto: Transport::Udp, local, remote: addr, bytes: &buf, at: now_timestamp(), latency: start.elapsed() });
        Ok(buf)
    }

    async fn tcp(&self, name: &str, attempt: u32, addr: SocketAddr, req: &[u8], obs: &mut (dyn FnMut(Wire<'_>) + Send)) -> Result<Vec<u8>, Failure> {
        let start = Instant::now();
        let deadline = self.timeout;
        let mut s = match tokio::time::timeout(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("TCP connect: {e}").into()),
            Err(_) => return Err(Failure::timeout(format!("TCP connect: no answer within {} ms", deadline.as_millis()))),
        };
        let local = s.local_addr().map_err(|e| e.to_string())?;
        let left = deadline.saturating_sub(start.elapsed());
        let work = async {
            s.write_all(&encode_record(req)).await.map_err(|e| format!("TCP send: {e}"))?;
            obs(Wire::Sent { kdc: name, attempt, proto: Transport::Tcp, local, remote: addr, bytes: req, at: now_timestamp() });
            let mut len = [0u8; 4];
            s.read_exact(&mut len).await.map_err(|e| format!("TCP: connection closed before a reply ({e})"))?;
            let n = u32::from_be_bytes(len);
            if n & 0x8000_0000 != 0 || n as usize > MAX_TCP_REPLY {
                return Err(format!("TCP reply length {n:#x} refused (reserved bit or over {MAX_TCP_REPLY} bytes)"));
            }
            let mut buf = vec![0u8; n as usize];
            s.read_exact(&mut buf).await.map_err(|e| format!("TCP: reply cut short ({e})"))?;
            Ok(buf)
        };
        let buf = match tokio::time::timeout(left, work).await {
            Ok(r) => r?,
            Err(_) => return Err(Failure::timeout(format!("no answer over TCP within {} ms", deadline.as_millis()))),
        };
        obs(Wire::Received { kdc: name, attempt, proto: Transport::Tcp, local, remote: addr, bytes: &buf, at: now_timestamp(), latency: start.elapsed() });
        Ok(buf)
    }
}

/// Why a KDC gave nothing usable; a timeout is told apart for the events.
pub struct Failure {
    pub what: String,
    pub timed_out: bool,
}

impl Failure {
    fn timeout(what: String) -> Self {
        Self { what, timed_out: true }
    }
}

impl From<String> for Failure {
    fn from(what: String) -> Self {
        Self { what, timed_out: false }
    }
}

fn too_big(reply: &[u8]) -> bool {
    matches!(kcd_krb5::decode_message(reply), Ok(KrbMessage::Error(e)) if e.error_code == KRB_ERR_RESPONSE_TOO_BIG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("dc1.lab.test"), Ok(("dc1.lab.test".into(), 88)));
        assert_eq!(split_host_port("dc1.lab.test:750"), Ok(("dc1.lab.test".into(), 750)));
        assert_eq!(split_host_port("10.0.0.3"), Ok(("10.0.0.3".into(), 88)));
        assert_eq!(split_host_port("[fd00::3]:89"), Ok(("fd00::3".into(), 89)));
        assert_eq!(split_host_port("fd00::3"), Ok(("fd00::3".into(), 88)));
        assert!(split_host_port("dc1:x").is_err());
        assert!(split_host_port("tcp/dc1").is_err());
        assert!(split_host_port("").is_err());
    }
}
