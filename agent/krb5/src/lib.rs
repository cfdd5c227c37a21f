//! The Kerberos V5 codec shared by the agent (which decodes what it sees on the wire) and
//! the gateway (which encodes its own S4U requests): RFC 4120 messages plus the MS-SFU,
//! MS-KILE and FAST types, derived with rasn; the TCP record marking; and a lenient reader
//! that salvages fields from messages the typed decoder rejects.
//!
//! ```
//! let bytes = include_bytes!("../assets/krb-error-preauth-required.bin");
//! let msg = kcd_krb5::decode_message(bytes).unwrap();
//! assert_eq!(msg.message_type(), kcd_krb5::MessageType::KRB_ERROR);
//! ```

#![forbid(unsafe_code)]

pub mod asn1;
pub mod ber;
pub mod edata;
pub mod flags;
pub mod frame;
pub mod gss;
pub mod pac;
mod message;
mod time;
pub mod view;

pub use time::unix_seconds as kerberos_time_to_unix;

pub use kcd_names::{
    ChecksumType, EDataFormat, EncryptionType, ErrorCode, MessageType, NameType, NtStatus,
    PaDataType,
};
pub use message::{decode, decode_message, encode, CodecError, KrbMessage};

/// The protocol numbers, as `kcd_krb5::numbers::*` for those who spell them so.
pub mod numbers {
    pub use kcd_names::*;
}
