//! The ActiveSync query parser is shared with the agent's HTTP decoder (one parser for
//! both sides of the wire): see kcd_decode::eas.
pub use kcd_decode::eas::*;
