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

pub struct Decoded<'a> {
    pub krb5: Krb5<'a>,
    pub role: Role,
    pub kind: MessageType,
    pub error_code: Option<i32>,
}

/// Decodes one message (a UDP payload or one TCP record).
pub fn decode(bytes: &[u8], captured: Timestamp) -> Result<Decoded<'_>, NotKerberos> {
    let view = MessageView::parse(bytes)?;
    let krb5 = parse::krb5_event(&view, captured);
    let role = if view.kind.is_kdc_request() {
        Role::Request
    } else if view.kind.is_kdc_reply() {
        Role::Reply
    } else {
        Role::Other
    };
    let error_code = krb5.error.as_ref().map(|e| e.code);
    Ok(Decoded { krb5, role, kind: view.kind, error_code })
}

/// Requests waiting on one UDP 4-tuple or one TCP connection. Bounded: a client that
/// keeps retransmitting without answers cannot grow it.
#[derive(Debug, Default)]
pub struct PendingQueue(std::collections::VecDeque<Pending>);

pub const MAX_PENDING_PER_FLOW: usize = 8;

impl PendingQueue {
    pub fn push(&mut self, p: Pending) {
        if self.0.len() == MAX_PENDING_PER_FLOW {
            self.0.pop_front();
        }
        self.0.push_back(p);
    }
    pub fn pop(&mut self) -> Option<Pending> {
        self.0.pop_front()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn newest(&self) -> Option<Timestamp> {
        self.0.back().map(|p| p.ts)
    }
}
