//! JSON Schema for the names exactly as `serde_impls` writes them: a number is one of its
//! table's names or "PREFIX-N" for a number the table does not know; flags are a list of
//! bit names or "bit-N".

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

use crate::*;

/// The schema of a name from `known`, or "`prefix`-N" (N may be negative).
pub fn named_schema(known: &[&str], prefix: &str, what: &str) -> Schema {
    let pattern = format!("^{}--?[0-9]+$", regex_escape(prefix));
    json_schema!({
        "description": format!("{what}: its standard name, or \"{prefix}-N\" for a number without one"),
        "anyOf": [
            { "type": "string", "enum": known },
            { "type": "string", "pattern": pattern }
        ]
    })
}

/// A list of flag names from `table`, or "bit-N" for an unnamed bit.
pub fn flags_schema(table: &[(u8, &str)], what: &str) -> Schema {
    let names: Vec<&str> = table.iter().map(|(_, n)| *n).collect();
    json_schema!({
        "description": format!("{what}: the names of the bits set (\"bit-N\" for a bit without a name)"),
        "type": "array",
        "items": {
            "anyOf": [
                { "type": "string", "enum": names },
                { "type": "string", "pattern": "^bit-[0-9]+$" }
            ]
        }
    })
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = !c.is_ascii_alphanumeric() && c != '_' && c != '-';
            special.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect()
}

macro_rules! by_name {
    ($($t:ident => $what:literal),*) => {$(
        impl JsonSchema for $t {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($t))
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                named_schema(<$t>::KNOWN, <$t>::PREFIX, $what)
            }
        }
    )*};
}

by_name!(
    MessageType => "Kerberos message type",
    ErrorCode => "Kerberos error code",
    PaDataType => "PA-DATA type",
    EncryptionType => "encryption type",
    NameType => "principal name type",
    ChecksumType => "checksum type"
);

impl JsonSchema for EDataFormat {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("EDataFormat")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = EDataFormat::ALL.iter().map(|f| f.name()).collect();
        json_schema!({ "description": "how a KRB-ERROR's e-data is laid out", "type": "string", "enum": names })
    }
}
