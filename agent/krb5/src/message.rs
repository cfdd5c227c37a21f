//! Whole Kerberos messages: decode any of them from bytes, encode them back.

use rasn::prelude::*;

use crate::asn1::{ApRep, ApReq, AsRep, AsReq, KdcRep, KdcReq, KrbError, TgsRep, TgsReq};
use crate::ber;
use kcd_names::MessageType;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KrbMessage {
    AsReq(KdcReq),
    AsRep(KdcRep),
    TgsReq(KdcReq),
    TgsRep(KdcRep),
    ApReq(ApReq),
    ApRep(ApRep),
    Error(KrbError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("empty message")]
    Empty,
    #[error("not a Kerberos message (first octet {0:#04x})")]
    NotKerberos(u8),
    #[error("{kind} does not decode: {detail}")]
    Decode { kind: MessageType, detail: String },
    #[error("{kind} does not encode: {detail}")]
    Encode { kind: MessageType, detail: String },
    #[error("{0} bytes after the end of the message")]
    Trailing(usize),
}

impl KrbMessage {
    /// The message type given by the outer [APPLICATION n] tag.
    pub fn message_type(&self) -> MessageType {
        match self {
            Self::AsReq(_) => MessageType::AS_REQ,
            Self::AsRep(_) => MessageType::AS_REP,
            Self::TgsReq(_) => MessageType::TGS_REQ,
            Self::TgsRep(_) => MessageType::TGS_REP,
            Self::ApReq(_) => MessageType::AP_REQ,
            Self::ApRep(_) => MessageType::AP_REP,
            Self::Error(_) => MessageType::KRB_ERROR,
        }
    }

    /// The pvno and msg-type fields inside the message (which a bad peer may get wrong).
    pub fn header_fields(&self) -> (i32, i32) {
        match self {
            Self::AsReq(r) | Self::TgsReq(r) => (r.pvno, r.msg_type),
            Self::AsRep(r) | Self::TgsRep(r) => (r.pvno, r.msg_type),
            Self::ApReq(r) => (r.pvno, r.msg_type),
            Self::ApRep(r) => (r.pvno, r.msg_type),
            Self::Error(e) => (e.pvno, e.msg_type),
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let kind = self.message_type();
        let r = match self {
            Self::AsReq(r) => rasn::der::encode(&AsReq(r.clone())),
            Self::TgsReq(r) => rasn::der::encode(&TgsReq(r.clone())),
            Self::AsRep(r) => rasn::der::encode(&AsRep(r.clone())),
            Self::TgsRep(r) => rasn::der::encode(&TgsRep(r.clone())),
            Self::ApReq(r) => rasn::der::encode(r),
            Self::ApRep(r) => rasn::der::encode(r),
            Self::Error(e) => rasn::der::encode(e),
        };
        r.map_err(|e| CodecError::Encode {
            kind,
            detail: e.to_string(),
        })
    }
}

fn typed<T: Decode>(b: &[u8], kind: MessageType) -> Result<T, CodecError> {
    let (value, rest) =
        rasn::ber::decode_with_remainder::<T>(b).map_err(|e| CodecError::Decode {
            kind,
            detail: one_line(&e.to_string()),
        })?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(CodecError::Trailing(rest.len()))
    }
}

/// rasn's messages nest causes over several lines; events want one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Decodes one Kerberos message (the bytes of a UDP payload or of one TCP record).
pub fn decode_message(b: &[u8]) -> Result<KrbMessage, CodecError> {
    let first = *b.first().ok_or(CodecError::Empty)?;
    let tag = match ber::read_header(b) {
        Ok((ber::Class::Application, true, tag, _, _)) => tag,
        _ => return Err(CodecError::NotKerberos(first)),
    };
    let kind = MessageType(tag as i32);
    Ok(match tag {
        10 => KrbMessage::AsReq(typed::<AsReq>(b, kind)?.0),
        11 => KrbMessage::AsRep(typed::<AsRep>(b, kind)?.0),
        12 => KrbMessage::TgsReq(typed::<TgsReq>(b, kind)?.0),
        13 => KrbMessage::TgsRep(typed::<TgsRep>(b, kind)?.0),
        14 => KrbMessage::ApReq(typed::<ApReq>(b, kind)?),
        15 => KrbMessage::ApRep(typed::<ApRep>(b, kind)?),
        30 => KrbMessage::Error(typed::<KrbError>(b, kind)?),
        _ => return Err(CodecError::NotKerberos(first)),
    })
}

/// Decodes a value of any codec type from DER/BER, reporting trailing bytes as an error.
pub fn decode<T: Decode>(b: &[u8]) -> Result<T, CodecError> {
    typed::<T>(b, MessageType(0))
}

/// DER-encodes a value of any codec type.
pub fn encode<T: Encode>(v: &T) -> Result<Vec<u8>, CodecError> {
    rasn::der::encode(v).map_err(|e| CodecError::Encode {
        kind: MessageType(0),
        detail: one_line(&e.to_string()),
    })
}
