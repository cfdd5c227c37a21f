//! With the `serde` feature: numbers travel as their names ("aes256-cts-hmac-sha1-96",
//! "etype-99" for one without a name) and flags as lists of names.

use serde::de::{Error, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::flags::Flags32;
use crate::*;

macro_rules! by_name {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                <$t>::from_name(&s).ok_or_else(|| D::Error::custom(format!("unknown {}: {s}", stringify!($t))))
            }
        }
    )*};
}

by_name!(
    MessageType,
    ErrorCode,
    PaDataType,
    EncryptionType,
    NameType,
    ChecksumType
);

impl Serialize for EDataFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for EDataFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        EDataFormat::from_name(&s)
            .ok_or_else(|| D::Error::custom(format!("unknown e-data format: {s}")))
    }
}

/// Serialises flags as the list of their names from `table` ("bit-N" for unnamed bits).
pub fn serialize_flags<S: Serializer>(
    f: Flags32,
    table: &[(u8, &'static str)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let unnamed = f.unnamed_bits(table);
    let mut seq = s.serialize_seq(None)?;
    let mut err = None;
    f.for_each_name(table, |n| {
        if err.is_none() {
            err = seq.serialize_element(n).err();
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    for b in unnamed {
        seq.serialize_element(&format!("bit-{b}"))?;
    }
    seq.end()
}

/// Reads what `serialize_flags` wrote.
pub fn deserialize_flags<'de, D: Deserializer<'de>>(
    table: &'static [(u8, &'static str)],
    d: D,
) -> Result<Flags32, D::Error> {
    struct V(&'static [(u8, &'static str)]);
    impl<'de> Visitor<'de> for V {
        type Value = Flags32;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of flag names")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Flags32, A::Error> {
            let mut names: Vec<std::borrow::Cow<'de, str>> = Vec::new();
            while let Some(n) = a.next_element()? {
                names.push(n);
            }
            Flags32::from_names(names.iter().map(|n| n.as_ref()), self.0)
                .ok_or_else(|| A::Error::custom("unknown flag name"))
        }
    }
    d.deserialize_seq(V(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_on_the_wire() {
        let v =
            serde_json::to_string(&[EncryptionType::AES256_CTS_HMAC_SHA1_96, EncryptionType(99)])
                .unwrap_or_default();
        assert_eq!(v, r#"["aes256-cts-hmac-sha1-96","etype-99"]"#);
        let back: Vec<EncryptionType> = serde_json::from_str(&v).unwrap_or_default();
        assert_eq!(back, [EncryptionType(18), EncryptionType(99)]);
        assert!(serde_json::from_str::<EncryptionType>("\"rot13\"").is_err());
    }
}
