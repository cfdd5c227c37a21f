//! One findings catalogue for the agent and the gateway: the replay explains what it saw on
//! the wire and the delegation client explains what it was told, and an administrator must
//! read the same finding id, fix and HTTP answer for the same failure from both.

#![forbid(unsafe_code)]

pub mod catalogue;
pub mod device;
pub mod s4u;
