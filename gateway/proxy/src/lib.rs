//! The certificate-to-Kerberos gateway (DOMAIN.md sections 1-4): devices open TLS with a
//! client certificate; the gateway verifies it (chain, validity, EKU, revocation by CRLs
//! over HTTP), maps it to a user, obtains a ticket for that user with the delegation client
//! (S4U2Self + S4U2Proxy) and forwards the ActiveSync request to Exchange with
//! `Authorization: Negotiate`.
//!
//! Decisions are plain functions over bytes and values (`config`, `identity`, `crl`,
//! `normalize`, `framing`, `eas`, `reason`); sockets, timers and files are in the thin shells
//! (`tls`, `fetch`, `proxy`, `server`).

#![forbid(unsafe_code)]

pub mod config;
pub mod crl;
pub mod eas;
pub mod framing;
pub mod identity;
pub mod normalize;
pub mod reason;
pub mod wire;

/// rustls's crypto provider on *ring*: aws-lc-rs, rustls's default, needs cmake and a C
/// toolchain at build time. (rustls 0.23.48 deprecates this constructor because *ring*
/// offers no post-quantum key exchange; devices speaking ActiveSync do not offer it either.)
///
/// Key exchange X25519 first: rustls 0.23.48 moved P-384 to the front of *ring*'s list, and
/// *ring* computes P-384 with generic bignum code, which was half the gateway's CPU per
/// handshake (perf, a handshake per request). Phones offer X25519 first; the order here
/// decides when a device offers shares for several groups.
#[allow(deprecated)]
pub fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::kx_group;
    let mut p = rustls::crypto::ring::default_provider();
    p.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    p
}

pub mod fetch;
pub mod metrics;
pub mod server;
pub mod tls;
pub mod upstream;
