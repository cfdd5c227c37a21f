//! Named bits of the Kerberos BIT STRING flags. Bit 0 is the most significant bit of the
//! first octet (RFC 4120 5.2.8); flags are held as a u32 with bit numbers from the RFCs.

/// A 32-bit Kerberos flags value; bit n of the ASN.1 BIT STRING is `1 << (31 - n)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Flags32(pub u32);

impl Flags32 {
    pub const fn empty() -> Self {
        Self(0)
    }
    pub const fn with(self, bit: u8) -> Self {
        Self(self.0 | (1u32 << (31 - bit)))
    }
    pub const fn has(self, bit: u8) -> bool {
        bit < 32 && self.0 & (1u32 << (31 - bit)) != 0
    }

    /// Names of the set bits, in bit order; bits without a name read "bit-N".
    pub fn names(self, table: &[(u8, &'static str)]) -> Vec<&'static str> {
        let mut out = Vec::new();
        self.for_each_name(table, |n| out.push(n));
        out
    }

    /// Calls `f` with the name of every set bit (unnamed bits are skipped; see `unnamed_bits`).
    pub fn for_each_name(self, table: &[(u8, &'static str)], mut f: impl FnMut(&'static str)) {
        // Tables are in bit order, so names come out in bit order.
        for (bit, name) in table {
            if self.has(*bit) {
                f(name);
            }
        }
    }

    /// The inverse of listing names: each must be in `table` or read "bit-N".
    pub fn from_names<'n>(
        names: impl IntoIterator<Item = &'n str>,
        table: &[(u8, &'static str)],
    ) -> Option<Self> {
        let mut f = Self::empty();
        for n in names {
            let bit = match table.iter().find(|(_, t)| *t == n) {
                Some((b, _)) => *b,
                None => n.strip_prefix("bit-")?.parse().ok().filter(|b| *b < 32)?,
            };
            f = f.with(bit);
        }
        Some(f)
    }

    /// Set bits that the table does not name.
    pub fn unnamed_bits(self, table: &[(u8, &'static str)]) -> Vec<u8> {
        let named = table
            .iter()
            .fold(0u32, |m, (b, _)| m | Flags32::empty().with(*b).0);
        if self.0 & !named == 0 {
            return Vec::new();
        }
        (0..32u8)
            .filter(|b| self.has(*b) && !table.iter().any(|(t, _)| t == b))
            .collect()
    }
}

impl std::fmt::Debug for Flags32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Flags32({:#010x})", self.0)
    }
}

/// KDCOptions (RFC 4120 5.4.1; cname-in-addl-tkt from MS-SFU 2.2.3; canonicalize RFC 6806;
/// request-anonymous RFC 8062).
pub mod kdc_options {
    pub const FORWARDABLE: u8 = 1;
    pub const FORWARDED: u8 = 2;
    pub const PROXIABLE: u8 = 3;
    pub const PROXY: u8 = 4;
    pub const ALLOW_POSTDATE: u8 = 5;
    pub const POSTDATED: u8 = 6;
    pub const RENEWABLE: u8 = 8;
    pub const OPT_HARDWARE_AUTH: u8 = 11;
    pub const CNAME_IN_ADDL_TKT: u8 = 14;
    pub const CANONICALIZE: u8 = 15;
    pub const REQUEST_ANONYMOUS: u8 = 16;
    pub const DISABLE_TRANSITED_CHECK: u8 = 26;
    pub const RENEWABLE_OK: u8 = 27;
    pub const ENC_TKT_IN_SKEY: u8 = 28;
    pub const RENEW: u8 = 30;
    pub const VALIDATE: u8 = 31;

    pub const NAMES: &[(u8, &str)] = &[
        (0, "reserved"),
        (FORWARDABLE, "forwardable"),
        (FORWARDED, "forwarded"),
        (PROXIABLE, "proxiable"),
        (PROXY, "proxy"),
        (ALLOW_POSTDATE, "allow-postdate"),
        (POSTDATED, "postdated"),
        (RENEWABLE, "renewable"),
        (OPT_HARDWARE_AUTH, "opt-hardware-auth"),
        (CNAME_IN_ADDL_TKT, "cname-in-addl-tkt"),
        (CANONICALIZE, "canonicalize"),
        (REQUEST_ANONYMOUS, "request-anonymous"),
        (DISABLE_TRANSITED_CHECK, "disable-transited-check"),
        (RENEWABLE_OK, "renewable-ok"),
        (ENC_TKT_IN_SKEY, "enc-tkt-in-skey"),
        (RENEW, "renew"),
        (VALIDATE, "validate"),
    ];
}

/// TicketFlags (RFC 4120 5.3; anonymous RFC 6112; enc-pa-rep RFC 6806).
pub mod ticket_flags {
    pub const FORWARDABLE: u8 = 1;
    pub const FORWARDED: u8 = 2;
    pub const PROXIABLE: u8 = 3;
    pub const PROXY: u8 = 4;
    pub const MAY_POSTDATE: u8 = 5;
    pub const POSTDATED: u8 = 6;
    pub const INVALID: u8 = 7;
    pub const RENEWABLE: u8 = 8;
    pub const INITIAL: u8 = 9;
    pub const PRE_AUTHENT: u8 = 10;
    pub const HW_AUTHENT: u8 = 11;
    pub const TRANSITED_POLICY_CHECKED: u8 = 12;
    pub const OK_AS_DELEGATE: u8 = 13;
    pub const ANONYMOUS: u8 = 14;
    pub const ENC_PA_REP: u8 = 15;

    pub const NAMES: &[(u8, &str)] = &[
        (0, "reserved"),
        (FORWARDABLE, "forwardable"),
        (FORWARDED, "forwarded"),
        (PROXIABLE, "proxiable"),
        (PROXY, "proxy"),
        (MAY_POSTDATE, "may-postdate"),
        (POSTDATED, "postdated"),
        (INVALID, "invalid"),
        (RENEWABLE, "renewable"),
        (INITIAL, "initial"),
        (PRE_AUTHENT, "pre-authent"),
        (HW_AUTHENT, "hw-authent"),
        (TRANSITED_POLICY_CHECKED, "transited-policy-checked"),
        (OK_AS_DELEGATE, "ok-as-delegate"),
        (ANONYMOUS, "anonymous"),
        (ENC_PA_REP, "enc-pa-rep"),
    ];
}

/// APOptions (RFC 4120 5.5.1).
pub mod ap_options {
    pub const USE_SESSION_KEY: u8 = 1;
    pub const MUTUAL_REQUIRED: u8 = 2;
    pub const NAMES: &[(u8, &str)] = &[
        (0, "reserved"),
        (USE_SESSION_KEY, "use-session-key"),
        (MUTUAL_REQUIRED, "mutual-required"),
    ];
}

/// PA-PAC-OPTIONS flags (MS-KILE 2.2.10).
pub mod pac_options {
    pub const CLAIMS: u8 = 0;
    pub const BRANCH_AWARE: u8 = 1;
    pub const FORWARD_TO_FULL_DC: u8 = 2;
    pub const RESOURCE_BASED_CONSTRAINED_DELEGATION: u8 = 3;
    pub const NAMES: &[(u8, &str)] = &[
        (CLAIMS, "claims"),
        (BRANCH_AWARE, "branch-aware"),
        (FORWARD_TO_FULL_DC, "forward-to-full-dc"),
        (
            RESOURCE_BASED_CONSTRAINED_DELEGATION,
            "resource-based-constrained-delegation",
        ),
    ];
}

/// S4UUserID options (MS-SFU 2.2.2; MIT's KRB5_S4U_OPTS_CHECK_LOGON_HOURS = 0x40000000 and
/// KRB5_S4U_OPTS_USE_REPLY_KEY_USAGE = 0x20000000, i.e. bits 1 and 2).
pub mod s4u_options {
    pub const CHECK_LOGON_HOURS: u8 = 1;
    pub const USE_REPLY_KEY_USAGE: u8 = 2;
    pub const NAMES: &[(u8, &str)] = &[
        (CHECK_LOGON_HOURS, "check-logon-hours"),
        (USE_REPLY_KEY_USAGE, "use-reply-key-usage"),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_in_bit_order_and_names_come_out_in_it() {
        for t in [
            kdc_options::NAMES,
            ticket_flags::NAMES,
            ap_options::NAMES,
            pac_options::NAMES,
            s4u_options::NAMES,
        ] {
            assert!(t.windows(2).all(|w| w[0].0 < w[1].0), "{t:?}");
        }
        let f = Flags32::empty()
            .with(kdc_options::CANONICALIZE)
            .with(kdc_options::FORWARDABLE)
            .with(20);
        assert_eq!(f.names(kdc_options::NAMES), ["forwardable", "canonicalize"]);
        assert_eq!(f.unnamed_bits(kdc_options::NAMES), [20]);
    }
}
