//! Kerberos protocol numbers (message types, error codes, PA-DATA types, encryption and
//! checksum types, name types, NTSTATUS) and flag bits, each with its standard name. An
//! unknown number is a value like any other: it prints as its number.

#![forbid(unsafe_code)]

pub mod flags;
mod numbers;
#[cfg(feature = "serde")]
pub mod serde_impls;
#[cfg(feature = "schemars")]
pub mod schema;

pub use numbers::*;
