//! Flags on the wire: rasn's BIT STRING to and from `Flags32`. rasn-kerberos 0.30's helpers
//! build flags from a byte value (`from_element(1)` sets bit 7, not bit 1) and lack
//! cname-in-addl-tkt and canonicalize, so flags are a u32 with RFC bit numbers
//! (`kcd_names::flags`), converted here.

use rasn::types::BitString;

pub use kcd_names::flags::*;

/// Reads the first 32 bits; a shorter string is padded with zeros, a longer one cut.
pub fn from_bits(bits: &BitString) -> Flags32 {
    let mut v = 0u32;
    for (i, bit) in bits.iter().take(32).enumerate() {
        if *bit {
            v |= 1 << (31 - i);
        }
    }
    Flags32(v)
}

/// Exactly 32 bits, as RFC 4120 requires of KDCOptions and friends.
pub fn to_bits(f: Flags32) -> BitString {
    BitString::from_slice(&f.0.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_string_round_trip() {
        assert_eq!(
            from_bits(&to_bits(Flags32(0x4081_0010))),
            Flags32(0x4081_0010)
        );
    }
}
