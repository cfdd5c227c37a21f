//! Where NDJSON goes besides standard output: a rotated file (`file`), which is also the
//! spool the network outputs ship from (`ship`: HTTP bulk receivers, Kafka, syslog), and
//! the syslog messages' RFC 5424 layout (`syslog`).

pub mod file;
pub mod ship;
pub mod syslog;

/// rustls on *ring*, as the gateway (aws-lc-rs needs cmake; *ring*'s constructor is
/// deprecated for lacking post-quantum key exchange, which collectors do not need), key
/// exchange X25519 first as the gateway's: rustls 0.23.48 put P-384 first, which *ring*
/// computes with generic bignum code (half the gateway's CPU per handshake, measured).
#[allow(deprecated)]
pub(crate) fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::kx_group;
    let mut p = rustls::crypto::ring::default_provider();
    p.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    p
}
