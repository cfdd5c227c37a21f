//! Kerberos on its ports: one event per message, each reply paired with its request.

pub mod parse;

use kcd_krb5::view::{MessageView, NotKerberos};
use kcd_krb5::MessageType;
use kcd_schema::{Krb5, Timestamp};

/// A request waiting for its reply.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    pub frame: u64,
    pub ts: Timestamp,
    pub msg_type: MessageType,
    /// Index of the capture file it came from.
    pub source: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Request,
    Reply,
    Other,
}

pub struct Decoded {
    pub role: Role,
    pub kind: MessageType,
    pub error_code: Option<i32>,
}

/// Decodes one message (a UDP payload or one TCP record) into `out`, a fresh
/// `Krb5::default()`.
pub fn decode<'a>(
    bytes: &'a [u8],
    captured: Timestamp,
    out: &mut Krb5<'a>,
) -> Result<Decoded, NotKerberos> {
    let view = MessageView::parse(bytes)?;
    parse::krb5_event(&view, captured, out);
    let role = if view.kind.is_kdc_request() {
        Role::Request
    } else if view.kind.is_kdc_reply() {
        Role::Reply
    } else {
        Role::Other
    };
    Ok(Decoded {
        role,
        kind: view.kind,
        error_code: out.error.as_ref().map(|e| e.code.0),
    })
}

/// Requests waiting on one UDP 4-tuple or one TCP connection. Bounded: a client that
/// keeps retransmitting without answers cannot grow it. The usual single request is held
/// inline, so a UDP exchange costs no allocation here.
#[derive(Debug, Default)]
pub struct PendingQueue {
    first: Option<Pending>,
    rest: std::collections::VecDeque<Pending>,
}

pub const MAX_PENDING_PER_FLOW: usize = 8;

impl PendingQueue {
    pub fn push(&mut self, p: Pending) {
        if self.first.is_none() {
            self.first = Some(p);
            return;
        }
        if self.rest.len() + 1 == MAX_PENDING_PER_FLOW {
            self.pop();
            if self.first.is_none() {
                self.first = Some(p);
                return;
            }
        }
        self.rest.push_back(p);
    }
    pub fn pop(&mut self) -> Option<Pending> {
        let out = self.first.take();
        self.first = self.rest.pop_front();
        out
    }
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }
    pub fn newest(&self) -> Option<Timestamp> {
        self.rest.back().or(self.first.as_ref()).map(|p| p.ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_bounded() {
        let p = |f| Pending {
            frame: f,
            ts: Timestamp(f as i64),
            msg_type: MessageType::AS_REQ,
            source: 0,
        };
        let mut q = PendingQueue::default();
        for f in 1..=20 {
            q.push(p(f));
        }
        let frames: Vec<u64> = std::iter::from_fn(|| q.pop().map(|x| x.frame)).collect();
        assert_eq!(frames, (13..=20).collect::<Vec<_>>());
        assert!(q.is_empty());
        q.push(p(1));
        q.push(p(2));
        assert_eq!(q.newest(), Some(Timestamp(2)));
        assert_eq!(q.pop().map(|x| x.frame), Some(1));
        assert_eq!(q.newest(), Some(Timestamp(2)));
    }
}
