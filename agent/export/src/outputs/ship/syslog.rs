//! The syslog output: the spool's events as RFC 5424 messages (`outputs::syslog`) to a
//! collector over UDP (one datagram each), TCP or TLS (octet-counted, RFC 6587 / RFC 5425).
//!
//! Syslog over TCP has no acknowledgement: a message is delivered, as far as the sender can
//! know, once the connection took it. So that the spool's checkpoint does not pass events a
//! dead connection swallowed, the connection is checked before and after each batch (a
//! collector that closed it, or reset it, is seen as soon as its FIN or RST is in): a batch
//! written to a connection found closed, or whose write failed, is sent again whole on a
//! new connection after the loop's backoff (at-least-once: the collector may get some of it
//! twice). What remains is the window plain syslog cannot close: messages the collector's
//! kernel had accepted when the collector died unread. UDP (RFC 5426) is fire and forget:
//! what the collector's socket drops is lost; a send that fails (the collector's port
//! closed, ICMP refused) is sent again; a message larger than a datagram is refused for good.
//!
//! Blocking sockets: this output's thread has its runtime to itself, and every operation
//! has a deadline (connect 5 s, writes `ShipConfig::timeout`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use super::policy::ItemOutcome;
use super::wire::Outcomes;
use super::{Deliver, ShipConfig};
use crate::outputs::syslog::{format_message, frame, header_of_line, SyslogTarget, Transport, UDP_MAX};

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    /// Whether the collector still holds the connection: nothing readable (a syslog
    /// collector sends nothing) or TLS records that are not a close. Never blocks.
    fn alive(&mut self) -> bool {
        match self {
            Conn::Udp(_) => true,
            Conn::Tcp(s) => {
                if s.set_nonblocking(true).is_err() {
                    return false;
                }
                let r = s.peek(&mut [0u8; 1]);
                let ok = s.set_nonblocking(false).is_ok();
                ok && match r {
                    Ok(n) => n > 0,
                    Err(e) => e.kind() == io::ErrorKind::WouldBlock,
                }
            }
            Conn::Tls(t) => {
                if t.sock.set_nonblocking(true).is_err() {
                    return false;
                }
                let alive = loop {
                    match t.conn.read_tls(&mut t.sock) {
                        Ok(0) => break false,
                        Ok(_) => match t.conn.process_new_packets() {
                            Ok(st) if st.peer_has_closed() => break false,
                            // TLS 1.3 session tickets and the like: read and dropped.
                            Ok(st) => {
                                let mut sink = vec![0u8; st.plaintext_bytes_to_read()];
                                if t.conn.reader().read_exact(&mut sink).is_err() {
                                    break false;
                                }
                            }
                            Err(_) => break false,
                        },
                        Err(e) => break e.kind() == io::ErrorKind::WouldBlock,
                    }
                };
                t.sock.set_nonblocking(false).is_ok() && alive
            }
        }
    }

    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Conn::Udp(_) => Err(io::Error::other("not a stream")),
            Conn::Tcp(s) => s.write_all(b),
            Conn::Tls(s) => s.write_all(b).and_then(|_| s.flush()),
        }
    }
}

pub(super) struct Syslog<'a> {
    cfg: &'a ShipConfig,
    target: &'a SyslogTarget,
    conn: Option<Conn>,
    pid: u32,
    msg: Vec<u8>,
    frames: Vec<u8>,
}

impl<'a> Syslog<'a> {
    pub(super) fn new(cfg: &'a ShipConfig) -> io::Result<Self> {
        let target = cfg.syslog.as_ref().ok_or_else(|| io::Error::other("the syslog output has no collector"))?;
        if target.transport == Transport::Tls && cfg.tls.is_none() {
            return Err(io::Error::other("syslog over TLS needs a CA file"));
        }
        Ok(Self { cfg, target, conn: None, pid: std::process::id(), msg: Vec::with_capacity(4096), frames: Vec::new() })
    }

    fn addr(&self) -> io::Result<SocketAddr> {
        (self.target.host.as_str(), self.target.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other(format!("{} has no address", self.target.host)))
    }

    fn connect(&self) -> io::Result<Conn> {
        let addr = self.addr()?;
        if self.target.transport == Transport::Udp {
            let bind: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
            let s = UdpSocket::bind(bind)?;
            s.connect(addr)?;
            return Ok(Conn::Udp(s));
        }
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        s.set_write_timeout(Some(self.cfg.timeout))?;
        s.set_read_timeout(Some(self.cfg.timeout))?;
        if self.target.transport == Transport::Tcp {
            return Ok(Conn::Tcp(s));
        }
        let Some(tls) = &self.cfg.tls else { return Err(io::Error::other("syslog over TLS needs a CA file")) };
        let name = rustls_pki_types::ServerName::try_from(self.target.host.clone()).map_err(io::Error::other)?;
        let conn = rustls::ClientConnection::new(Arc::clone(tls), name).map_err(io::Error::other)?;
        let mut t = rustls::StreamOwned::new(conn, s);
        // The handshake now, so that a refused certificate is an error of the connection.
        while t.conn.is_handshaking() {
            t.conn.complete_io(&mut t.sock)?;
        }
        Ok(Conn::Tls(Box::new(t)))
    }

    fn message(&mut self, line: &[u8]) {
        self.msg.clear();
        format_message(&mut self.msg, self.target, self.pid, &header_of_line(line), line);
    }
}

impl Drop for Syslog<'_> {
    /// The end of the stream, so that the collector sees it (TLS: close_notify).
    fn drop(&mut self) {
        match self.conn.take() {
            Some(Conn::Tcp(s)) => {
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
            Some(Conn::Tls(mut t)) => {
                t.conn.send_close_notify();
                let _ = t.flush();
                let _ = t.sock.shutdown(std::net::Shutdown::Write);
            }
            _ => {}
        }
    }
}

impl Deliver for Syslog<'_> {
    async fn deliver(&mut self, lines: &[&[u8]]) -> Outcomes {
        // A connection the collector closed while we were idle is not written to.
        if self.conn.as_mut().is_some_and(|c| !c.alive()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            match self.connect() {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    let why = format!("cannot connect to {}:{}: {e}", self.target.host, self.target.port);
                    return vec![(ItemOutcome::Retry, Some(why)); lines.len()];
                }
            }
        }
        if self.target.transport == Transport::Udp {
            let mut out: Outcomes = Vec::with_capacity(lines.len());
            for (i, l) in lines.iter().enumerate() {
                self.message(l);
                if self.msg.len() > UDP_MAX {
                    out.push((ItemOutcome::Rejected, Some(format!("{} bytes: too large for a datagram ({UDP_MAX})", self.msg.len()))));
                    continue;
                }
                let r = match &self.conn {
                    Some(Conn::Udp(s)) => s.send(&self.msg).map(|_| ()),
                    _ => Err(io::Error::other("no socket")),
                };
                if let Err(e) = r {
                    // The rest again, in order, on a new socket.
                    self.conn = None;
                    out.resize(lines.len(), (ItemOutcome::Retry, None));
                    out[i].1 = Some(format!("sending to {}:{}: {e}", self.target.host, self.target.port));
                    return out;
                }
                out.push((ItemOutcome::Stored, None));
            }
            return out;
        }
        let mut frames = std::mem::take(&mut self.frames);
        frames.clear();
        for l in lines {
            self.message(l);
            frame(&mut frames, &self.msg);
        }
        let r = match self.conn.as_mut() {
            Some(c) => c.write_all(&frames).and_then(|_| if c.alive() { Ok(()) } else { Err(io::Error::other("the collector closed the connection")) }),
            None => Err(io::Error::other("not connected")),
        };
        self.frames = frames;
        match r {
            Ok(()) => vec![(ItemOutcome::Stored, None); lines.len()],
            Err(e) => {
                self.conn = None;
                vec![(ItemOutcome::Retry, Some(format!("writing to {}:{}: {e}", self.target.host, self.target.port))); lines.len()]
            }
        }
    }
}
