//! Flow keys and the Community ID v1 flow hash.

use std::net::IpAddr;

use base64::Engine;
use sha1::{Digest, Sha1};

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// One endpoint of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
}

/// A flow key independent of direction: the smaller endpoint first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowKey {
    pub proto: u8,
    pub a: Endpoint,
    pub b: Endpoint,
}

/// Three wide words instead of the derived dozen small writes (address kinds, octets,
/// ports): the flow table is looked up for every packet.
impl std::hash::Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        fn bits(ip: IpAddr) -> u128 {
            match ip {
                // Tagged so that an IPv4 address and its IPv4-mapped IPv6 form differ.
                IpAddr::V4(v) => u128::from(v.to_bits()) | 1 << 127,
                IpAddr::V6(v) => v.to_bits(),
            }
        }
        h.write_u128(bits(self.a.ip));
        h.write_u128(bits(self.b.ip));
        h.write_u64(u64::from(self.a.port) << 24 | u64::from(self.b.port) << 8 | u64::from(self.proto));
    }
}

impl FlowKey {
    /// Returns the key and whether (src, dst) was swapped to build it.
    pub fn new(proto: u8, src: Endpoint, dst: Endpoint) -> (Self, bool) {
        if order_key(&src) <= order_key(&dst) {
            (
                Self {
                    proto,
                    a: src,
                    b: dst,
                },
                false,
            )
        } else {
            (
                Self {
                    proto,
                    a: dst,
                    b: src,
                },
                true,
            )
        }
    }

    /// Community ID v1 with seed 0 (https://github.com/corelight/community-id-spec):
    /// "1:" + base64(sha1(seed16 . addr_lo . addr_hi . proto . 0 . port_lo . port_hi)),
    /// endpoints ordered by (address bytes, port).
    pub fn community_id(&self) -> FlowId {
        let mut h = Sha1::new();
        h.update(0u16.to_be_bytes());
        for e in [&self.a, &self.b] {
            match e.ip {
                IpAddr::V4(v) => h.update(v.octets()),
                IpAddr::V6(v) => h.update(v.octets()),
            }
        }
        h.update([self.proto, 0]);
        h.update(self.a.port.to_be_bytes());
        h.update(self.b.port.to_be_bytes());
        let mut out = [0u8; 30];
        out[..2].copy_from_slice(b"1:");
        // 20 bytes of SHA-1 are always 28 characters of padded base64.
        let _ = base64::engine::general_purpose::STANDARD.encode_slice(h.finalize(), &mut out[2..]);
        FlowId(out)
    }
}

/// A Community ID v1 string ("1:" + 28 base64 characters), kept inline so that events and
/// flows can carry it without allocating.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowId([u8; 30]);

impl FlowId {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("1:")
    }
}

impl std::fmt::Debug for FlowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Community ID orders by the address as network-order bytes, then the port; IPv4 and IPv6
/// never meet in one flow. Comparing the addresses' integer forms is that order.
fn order_key(e: &Endpoint) -> (u128, u16) {
    let a = match e.ip {
        IpAddr::V4(v) => u128::from(u32::from(v)) << 96,
        IpAddr::V6(v) => u128::from(v),
    };
    (a, e.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str, port: u16) -> Endpoint {
        Endpoint {
            ip: s.parse().expect("address"),
            port,
        }
    }

    // Vectors from community-id-spec baseline/README.md (seed 0).
    #[test]
    fn published_vectors() {
        let (k, _) = FlowKey::new(PROTO_TCP, ep("1.2.3.4", 1122), ep("5.6.7.8", 3344));
        assert_eq!(k.community_id().as_str(), "1:wCb3OG7yAFWelaUydu0D+125CLM=");
        let (k, swapped) = FlowKey::new(PROTO_TCP, ep("5.6.7.8", 3344), ep("1.2.3.4", 1122));
        assert!(swapped);
        assert_eq!(k.community_id().as_str(), "1:wCb3OG7yAFWelaUydu0D+125CLM=");
        let (k, _) = FlowKey::new(PROTO_UDP, ep("1.2.3.4", 1122), ep("5.6.7.8", 3344));
        assert_eq!(k.community_id().as_str(), "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=");
    }

    // tshark --enable-protocol communityid on captures/krb5/mit/f_s4u2proxy_db2.pcap: equal
    // addresses, so the port decides the order.
    #[test]
    fn agrees_with_tshark_on_loopback() {
        let (k, _) = FlowKey::new(PROTO_UDP, ep("127.0.0.1", 37951), ep("127.0.0.1", 88));
        assert_eq!(k.community_id().as_str(), "1:BSQcJp78ay1FvlTlAKRtaJKKGP0=");
        let (k, _) = FlowKey::new(PROTO_TCP, ep("127.0.0.1", 42742), ep("127.0.0.1", 88));
        assert_eq!(k.community_id().as_str(), "1:/tIZI4NVFZ6G/1Y1SGy5V8pf3vY=");
    }
}
