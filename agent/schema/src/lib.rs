//! kcdscope's events. One JSON object per line (NDJSON), shaped like Suricata's EVE: a
//! top-level `event_type` and one object named after it (`krb5`, `anomaly`, ...), plus the
//! packet's time, place in the capture and addresses. Protocol numbers are typed (an
//! `ErrorCode`, a list of `EncryptionType`s) and written as their standard names; strings
//! borrow from the packet, so producing an event allocates little.
//!
//! Field names and meanings are documented in the README ("Event schema").

#![deny(unsafe_code)]

use std::borrow::Cow;
use std::net::IpAddr;

pub use kcd_names::flags::{kdc_options, pac_options, s4u_options, Flags32};
use kcd_names::serde_impls::{deserialize_flags, serialize_flags};
pub use kcd_names::{
    EDataFormat, EncryptionType, ErrorCode, MessageType, NameType, NtStatus, PaDataType,
};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
pub use smallvec::{smallvec, SmallVec};

mod app;
mod batch;
mod json;
mod json_schema;
mod text;
mod time;
pub use app::{
    ApReqSummary, AuthKind, Authorization, CertProblem, Crl, CrlProblem, DecryptedTicket, Eas, PacFacts, EasQueryForm, Http,
    Side, Tls, TlsAlert, TlsOutcome, X509,
};
pub use batch::EventBatch;
pub use json::write_str as write_json_str;
pub use json_schema::event_json_schema;
pub use text::text_from_bytes;
pub use time::Timestamp;

/// Bumped when a field changes meaning or disappears; adding fields does not bump it.
pub const SCHEMA_VERSION: u32 = 1;

pub type Str<'a> = Cow<'a, str>;

/// The `schema_version` field: always [`SCHEMA_VERSION`] when written. It takes no space in
/// the event; reading accepts a line without it (written before versions existed) and
/// refuses another version, whose fields may mean something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchemaVersion;

impl Serialize for SchemaVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(SCHEMA_VERSION)
    }
}

impl JsonSchema for SchemaVersion {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("SchemaVersion")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The layout's version: bumped when a field changes meaning or disappears (adding fields does not bump it).",
            "type": "integer",
            "const": SCHEMA_VERSION
        })
    }
}

impl<'de> Deserialize<'de> for SchemaVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u32::deserialize(d)? {
            SCHEMA_VERSION => Ok(SchemaVersion),
            v => Err(serde::de::Error::custom(format!(
                "schema_version {v}: this kcdscope reads version {SCHEMA_VERSION}"
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Krb5,
    Anomaly,
    Finding,
    /// The gateway's own account of a delegation: a token issued (or served from its
    /// cache) or refused. Its KDC exchanges are `krb5` events carrying a `gateway` object.
    Kcd,
    /// One request the gateway served or refused: device, certificate, user, delegation,
    /// backend, outcome (`gateway.step` is `request`; reloads too).
    Gateway,
    /// One TLS handshake (`tls`), written when its outcome is known.
    Tls,
    /// One HTTP/1.x transaction (`http`), with `eas` for an ActiveSync request and `crl`
    /// for a CRL fetch.
    Http,
}

impl EventType {
    /// Every event type.
    pub const ALL: [EventType; 7] = [Self::Krb5, Self::Anomaly, Self::Finding, Self::Kcd, Self::Gateway, Self::Tls, Self::Http];

    /// Its name in the events (`event_type`), the one serde writes and reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Krb5 => "krb5",
            Self::Anomaly => "anomaly",
            Self::Finding => "finding",
            Self::Kcd => "kcd",
            Self::Gateway => "gateway",
            Self::Tls => "tls",
            Self::Http => "http",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Transport {
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "TCP")]
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client to KDC (the destination port is a Kerberos port).
    ToKdc,
    FromKdc,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event<'a> {
    /// [`SCHEMA_VERSION`], on every event so that a consumer can tell layouts apart.
    #[serde(default)]
    pub schema_version: SchemaVersion,
    pub timestamp: Timestamp,
    pub event_type: EventType,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub pcap_file: Option<Str<'a>>,
    /// Frame number in the capture (1-based); for live capture, the packet counter.
    pub frame: u64,
    /// Community ID v1 of the flow (https://github.com/corelight/community-id-spec), the
    /// same value Zeek, Suricata and Wireshark compute, so events can be joined with theirs.
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub flow_id: Option<Str<'a>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub src_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub src_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dest_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dest_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub proto: Option<Transport>,
    /// The device the event is about, where the event itself names it: the ActiveSync
    /// DeviceId, else `cert:` and the first 16 hex digits of the client certificate's
    /// SHA-256 (the key the report's DEVICES section uses). See [`Event::device_key`].
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub device: Option<Str<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub krb5: Option<Krb5<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub anomaly: Option<Anomaly<'a>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub finding: Option<Finding>,
    /// Present on events the gateway writes about its own exchanges (as opposed to what
    /// the agent saw on the wire).
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub gateway: Option<Gateway<'a>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tls: Option<Box<Tls>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub http: Option<Box<Http>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub eas: Option<Box<Eas>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crl: Option<Box<Crl>>,
}

/// The step of a constrained-delegation exchange (DOMAIN.md section 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KcdStep {
    /// The service account's AS exchange (its TGT).
    Login,
    S4u2self,
    S4u2proxy,
    /// The token for the target service (AP-REQ), from a fresh or cached ticket.
    Token,    /// A device's request through the gateway (or its refused TLS handshake), as a whole:
    /// carried by a `kcd` event whose `gateway` object has the device, the certificate, the
    /// user, the delegation and Exchange's answer.
    Request,
}

impl<'a> Gateway<'a> {
    /// A step's outcome with nothing else known yet; fill in the rest with `..`.
    pub fn new(step: KcdStep, outcome: &'static str) -> Self {
        Gateway {
            step,
            user: None,
            spn: None,
            kdc: None,
            attempt: None,
            outcome: Cow::Borrowed(outcome),
            latency_us: None,
            detail: None,
            clock_offset_seconds: None,
            forwardable: None,
            finding: None,
            request_id: None,
            status: None,
            reason: None,
            device: None,
            certificate: None,
            kcd: None,
            backend: None,
        }
    }
}

impl std::fmt::Display for KcdStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KcdStep::Login => "login",
            KcdStep::S4u2self => "S4U2Self",
            KcdStep::S4u2proxy => "S4U2Proxy",
            KcdStep::Token => "token",
            KcdStep::Request => "request",
        })
    }
}

/// The gateway's view of one exchange step. Never carries a key, a password or a token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Gateway<'a> {
    pub step: KcdStep,
    /// The user the gateway acts for (the device certificate's UPN).
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub user: Option<Str<'a>>,
    /// The target service principal.
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub spn: Option<Str<'a>>,
    /// The KDC asked, as configured ("dc1.lab.test:88") with the address used.
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub kdc: Option<Str<'a>>,
    /// 1 for the first KDC tried for this message, 2 for the next...
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub attempt: Option<u32>,
    /// request, reply, krb_error, timeout, unreachable, bad_reply, tcp_retry, issued,
    /// cache_hit, failed.
    pub outcome: Str<'a>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub latency_us: Option<i64>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<Str<'a>>,
    /// The KDC's clock minus the gateway's, adopted after KRB_AP_ERR_SKEW.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub clock_offset_seconds: Option<i64>,
    /// Whether the S4U2Self ticket came back forwardable (needed for S4U2Proxy).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub forwardable: Option<bool>,
    /// On failure, the finding id that explains it (as the agent would report it).
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub finding: Option<Str<'a>>,    /// Step `request`: the gateway's id for the request, also in its answer to the device.
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<Str<'a>>,
    /// Step `request`: the HTTP status answered to the device (none: the handshake failed).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<u16>,
    /// Step `request`: why the device was refused (no_cert, revoked, crl_unreachable...).
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<Str<'a>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub device: Option<Box<GatewayDevice>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub certificate: Option<Box<GatewayCertificate>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kcd: Option<Box<GatewayKcd>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub backend: Option<Box<GatewayBackend>>,
}

/// A principal: its name components (joined with '/' when shown or exported, as
/// "HTTP/exchange.lab.test") and its name type. Components are kept apart so that a name
/// read from a packet borrows its bytes instead of being joined into a new string.
#[derive(Debug, Clone)]
pub struct Principal<'a> {
    pub parts: SmallVec<[Str<'a>; 2]>,
    pub name_type: NameType,
}

impl<'a> Principal<'a> {
    pub fn new(name: impl Into<Str<'a>>, name_type: NameType) -> Self {
        Self {
            parts: smallvec![name.into()],
            name_type,
        }
    }

    /// The joined name; borrowed when there is one component.
    pub fn name(&self) -> Cow<'_, str> {
        match self.parts.as_slice() {
            [one] => Cow::Borrowed(one.as_ref()),
            parts => Cow::Owned(parts.join("/")),
        }
    }
}

impl PartialEq for Principal<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.name_type == other.name_type && self.name() == other.name()
    }
}

impl Eq for Principal<'_> {}

impl std::fmt::Display for Principal<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(p)?;
        }
        Ok(())
    }
}

/// A principal name, its components joined with '/' ("HTTP/exchange.lab.test").
#[derive(Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Principal")]
struct PrincipalRepr<'a> {
    #[serde(borrow)]
    name: Str<'a>,
    name_type: NameType,
}

impl JsonSchema for Principal<'_> {
    fn schema_name() -> Cow<'static, str> {
        PrincipalRepr::schema_name()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        PrincipalRepr::json_schema(g)
    }
}

impl Serialize for Principal<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PrincipalRepr {
            name: self.name(),
            name_type: self.name_type,
        }
        .serialize(s)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Principal<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = PrincipalRepr::deserialize(d)?;
        Ok(Self {
            parts: smallvec![r.name],
            name_type: r.name_type,
        })
    }
}

/// The parts of an encrypted blob that are visible on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EncInfo {
    pub etype: EncryptionType,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kvno: Option<i64>,
}

/// A ticket's identity on the wire: the first 8 bytes of its ciphertext, written as hex.
/// Encryption makes them unique to the ticket, and the same ticket shows the same id in the
/// reply that issued it and in every request that presents it (S4U2Proxy's additional
/// ticket is the S4U2Self ticket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TicketId(pub [u8; 8]);

impl TicketId {
    /// None when the ciphertext is shorter than 8 bytes.
    pub fn of(cipher: &[u8]) -> Option<Self> {
        cipher.get(..8).and_then(|b| b.try_into().ok()).map(Self)
    }

    pub fn write_hex(&self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in self.0 {
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 15)]);
        }
    }
}

impl std::fmt::Display for TicketId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut v = Vec::with_capacity(16);
        self.write_hex(&mut v);
        f.write_str(&String::from_utf8_lossy(&v))
    }
}

impl JsonSchema for TicketId {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("TicketId")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The first 8 bytes of the ticket's ciphertext in hex: the same ticket has the same id in the reply that issued it and in every request presenting it.",
            "type": "string",
            "pattern": "^[0-9a-f]{16}$"
        })
    }
}

impl Serialize for TicketId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TicketId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <Cow<'de, str>>::deserialize(d)?;
        let bytes: Option<Vec<u8>> = (0..s.len())
            .step_by(2)
            .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect();
        bytes
            .and_then(|b| b.try_into().ok())
            .map(TicketId)
            .ok_or_else(|| serde::de::Error::custom(format!("bad ticket id {s}")))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TicketInfo<'a> {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id: Option<TicketId>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub realm: Option<Str<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub sname: Option<Principal<'a>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub enc_part: Option<EncInfo>,
}

/// PA-FOR-USER (MS-SFU): the user a service asks a ticket for (S4U2Self).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ForUser<'a> {
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub user: Option<Principal<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub realm: Option<Str<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub auth_package: Option<Str<'a>>,
}

/// Flags written as the list of their names from one table (MS/RFC bit names).
macro_rules! flag_set {
    ($(#[$m:meta])* $name:ident, $table:path) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name(pub Flags32);

        impl $name {
            pub const TABLE: &'static [(u8, &'static str)] = $table;
            pub fn is_empty(&self) -> bool {
                self.0 .0 == 0
            }
            pub fn has(&self, bit: u8) -> bool {
                self.0.has(bit)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serialize_flags(self.0, $table, s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                deserialize_flags($table, d).map(Self)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                kcd_names::schema::flags_schema($table, stringify!($name))
            }
        }
    };
}

flag_set!(
    /// KDC-REQ kdc-options (RFC 4120 5.4.1, cname-in-addl-tkt from MS-SFU).
    KdcOptions, kdc_options::NAMES
);
flag_set!(
    /// PA-PAC-OPTIONS (MS-KILE 2.2.10).
    PacOptions, pac_options::NAMES
);
flag_set!(
    /// S4UUserID options (MS-SFU 2.2.2).
    S4uOptions, s4u_options::NAMES
);

/// PA-S4U-X509-USER (MS-SFU): the user by name or certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct S4uX509User<'a> {
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub user: Option<Principal<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub realm: Option<Str<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub has_certificate: bool,
    #[serde(skip_serializing_if = "S4uOptions::is_empty", default)]
    pub options: S4uOptions,
}

/// An NTSTATUS, written as {"code": "0xC0000072", "name": "STATUS_ACCOUNT_DISABLED"}.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NtStatusInfo(pub NtStatus);

/// An NTSTATUS: its code in hex ("0xC0000072") and its name where known.
#[derive(Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "NtStatus")]
struct NtStatusRepr<'a> {
    #[serde(borrow)]
    code: Str<'a>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    name: Option<&'static str>,
}

impl JsonSchema for NtStatusInfo {
    fn schema_name() -> Cow<'static, str> {
        NtStatusRepr::schema_name()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        NtStatusRepr::json_schema(g)
    }
}

impl Serialize for NtStatusInfo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        NtStatusRepr {
            code: Cow::Owned(self.0.hex()),
            name: self.0.name(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for NtStatusInfo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct R<'a> {
            #[serde(borrow)]
            code: Str<'a>,
        }
        let r = R::deserialize(d)?;
        let hex = r.code.trim_start_matches("0x").trim_start_matches("0X");
        u32::from_str_radix(hex, 16)
            .map(|v| NtStatusInfo(NtStatus(v)))
            .map_err(|_| serde::de::Error::custom(format!("bad NTSTATUS {}", r.code)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SaltInfo<'a> {
    pub etype: EncryptionType,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub salt: Option<Str<'a>>,
}

/// What a KRB-ERROR's e-data says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EData<'a> {
    pub format: EDataFormat,
    #[serde(skip_serializing_if = "SmallVec::is_empty", default)]
    pub padata: SmallVec<[PaDataType; 8]>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ntstatus: Option<NtStatusInfo>,
    #[serde(borrow, skip_serializing_if = "SmallVec::is_empty", default)]
    pub etype_info2: SmallVec<[SaltInfo<'a>; 2]>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub data_type: Option<i32>,
}

/// A KRB-ERROR, written with both its code and its name.
#[derive(Debug, Clone, PartialEq)]
pub struct KrbErrorInfo<'a> {
    pub code: ErrorCode,
    /// The KDC's clock when it answered (stime + susec).
    pub stime: Option<Timestamp>,
    pub ctime: Option<Timestamp>,
    pub e_text: Option<Str<'a>>,
    pub e_data: Option<EData<'a>>,
    /// KDC clock minus the packet's capture time, in seconds: positive when the KDC is
    /// ahead of the capturing host.
    pub skew_seconds: Option<f64>,
}

#[derive(Deserialize)]
struct KrbErrorRepr<'a> {
    code: i32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    stime: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    ctime: Option<Timestamp>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    e_text: Option<Str<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    e_data: Option<EData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    skew_seconds: Option<f64>,
}

/// What `KrbErrorInfo` writes (its schema; the serialiser below writes the same fields).
#[allow(dead_code)]
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "KrbError")]
struct KrbErrorSchema {
    /// The error code's number.
    code: i32,
    /// The error code's name (KDC_ERR_..., KRB_AP_ERR_...).
    name: ErrorCode,
    /// The KDC's clock when it answered (stime + susec).
    #[serde(skip_serializing_if = "Option::is_none")]
    stime: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ctime: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    e_text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    e_data: Option<EData<'static>>,
    /// KDC clock minus the packet's capture time, in seconds: positive when the KDC is
    /// ahead of the capturing host.
    #[serde(skip_serializing_if = "Option::is_none")]
    skew_seconds: Option<f64>,
}

impl JsonSchema for KrbErrorInfo<'_> {
    fn schema_name() -> Cow<'static, str> {
        KrbErrorSchema::schema_name()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        KrbErrorSchema::json_schema(g)
    }
}

impl Serialize for KrbErrorInfo<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'r, 'a> {
            code: i32,
            name: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            stime: Option<Timestamp>,
            #[serde(skip_serializing_if = "Option::is_none")]
            ctime: Option<Timestamp>,
            #[serde(skip_serializing_if = "Option::is_none")]
            e_text: Option<&'r str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            e_data: Option<&'r EData<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            skew_seconds: Option<f64>,
        }
        Out {
            code: self.code.0,
            name: self.code.to_string(),
            stime: self.stime,
            ctime: self.ctime,
            e_text: self.e_text.as_deref(),
            e_data: self.e_data.as_ref(),
            skew_seconds: self.skew_seconds,
        }
        .serialize(s)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for KrbErrorInfo<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = KrbErrorRepr::deserialize(d)?;
        Ok(Self {
            code: ErrorCode(r.code),
            stime: r.stime,
            ctime: r.ctime,
            e_text: r.e_text,
            e_data: r.e_data,
            skew_seconds: r.skew_seconds,
        })
    }
}

/// The request a reply or error answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RequestRef<'a> {
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub pcap_file: Option<Str<'a>>,
    pub frame: u64,
    pub msg_type: MessageType,
    pub latency_us: i64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Krb5<'a> {
    pub msg_type: MessageType,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub direction: Option<Direction>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub realm: Option<Str<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub cname: Option<Principal<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub crealm: Option<Str<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub sname: Option<Principal<'a>>,
    #[serde(skip_serializing_if = "KdcOptions::is_empty", default)]
    pub kdc_options: KdcOptions,
    #[serde(skip_serializing_if = "SmallVec::is_empty", default)]
    pub etypes: SmallVec<[EncryptionType; 12]>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nonce: Option<i64>,
    /// A request's wished start time, end time and renewable end time (KDC-REQ-BODY
    /// from, till, rtime), as Zeek logs them.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub from: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub till: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rtime: Option<Timestamp>,
    #[serde(skip_serializing_if = "SmallVec::is_empty", default)]
    pub padata: SmallVec<[PaDataType; 6]>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub for_user: Option<ForUser<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub s4u_x509_user: Option<S4uX509User<'a>>,
    #[serde(skip_serializing_if = "PacOptions::is_empty", default)]
    pub pac_options: PacOptions,
    #[serde(borrow, skip_serializing_if = "SmallVec::is_empty", default)]
    pub additional_tickets: SmallVec<[TicketInfo<'a>; 1]>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub ticket: Option<TicketInfo<'a>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub enc_part: Option<EncInfo>,
    /// FAST (RFC 6113) is in use: a request carrying PA-FX-FAST, or an error whose real
    /// content is inside FAST's encrypted reply.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub armored: bool,
    /// With --keytab: the message's ticket (a TGS-REP's, or the one a TGS-REQ presents)
    /// opened with a keytab key.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub decrypted: Option<DecryptedTicket>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub error: Option<KrbErrorInfo<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub request: Option<RequestRef<'a>>,
    /// Why the message is malformed; the fields above are what could still be read.
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub malformed: Option<Str<'a>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyLayer {
    Pcap,
    Link,
    Ip,
    Tcp,
    Udp,
    Krb5,
    Tls,
    Http,
}

/// Something wrong with the input that is not one message: a TCP gap, a bad record
/// mark, an unfinished fragment set, a truncated capture file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Anomaly<'a> {
    pub layer: AnomalyLayer,
    /// Stable identifier, e.g. "tcp_gap", "krb5_record_oversize"; counted in the summary.
    #[serde(borrow)]
    pub kind: Str<'a>,
    #[serde(borrow)]
    pub detail: Str<'a>,
    /// The same anomaly repeated in one connection: how many times in all (this event
    /// stands for all of them after the first, which was reported on its own).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub count: Option<u64>,
    /// With `count`: the frame of the first repetition (the event's own is the last).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub first_frame: Option<u64>,
}

impl<'a> Anomaly<'a> {
    pub fn new(layer: AnomalyLayer, kind: Str<'a>, detail: Str<'a>) -> Self {
        Anomaly { layer, kind, detail, count: None, first_frame: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// A KDC, by address.
    Kdc,
    /// A user (or any principal that logs in or is impersonated).
    Principal,
    /// The account a gateway delegates with.
    ServiceAccount,
    /// A service principal name (the target of a ticket).
    Spn,
    /// A host that asks KDCs for tickets (on a gateway host: the gateway).
    Client,
    /// A mobile device (EAS DeviceId, certificate).
    Device,
    /// A certificate authority, by its name (the devices' issuer; its CRLs).
    Ca,
    /// A server the devices' requests go to (Exchange), by host name or address.
    Server,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Subject {
    pub kind: SubjectKind,
    pub name: String,
}

/// A packet that shows a finding: where to look in Wireshark.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Evidence {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pcap_file: Option<String>,
    pub frame: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub flow_id: Option<String>,
}

/// A diagnosis: what is wrong, about what, since when, shown by which packets, and what an
/// administrator must do. `id` is stable across versions (e.g.
/// "krb.s4u2proxy.target_not_allowed"); SIEM rules can key on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Finding {
    pub id: String,
    pub severity: Severity,
    pub subject: Subject,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub count: u64,
    /// One sentence, with this case's particulars.
    pub explanation: String,
    /// What to change, in the administrator's words.
    pub fix: String,
    /// Measured values: offsets, latencies, codes.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty", default)]
    pub facts: std::collections::BTreeMap<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub evidence: Vec<Evidence>,
}

impl Finding {
    /// A finding event: its time is when the finding was last seen, its file and frame
    /// those of the last packet in its evidence.
    pub fn into_event(self) -> Event<'static> {
        let (file, frame) = match self.evidence.last() {
            Some(e) => (e.pcap_file.clone().map(Cow::Owned), e.frame),
            None => (None, 0),
        };
        let ts = self.last_seen;
        Event { finding: Some(self), ..Event::bare(ts, EventType::Finding, file, frame) }
    }
}

impl<'a> Event<'a> {
    /// The device this event names, by the same rule as the correlator's device table:
    /// the DeviceId, else the client certificate's fingerprint.
    pub fn device_key(&self) -> Option<String> {
        let cert = |sha: &str| Some(format!("cert:{}", sha.chars().take(16).collect::<String>().to_ascii_lowercase()));
        if let Some(d) = self.eas.as_ref().and_then(|x| x.device_id.as_deref()).filter(|d| !d.is_empty()) {
            return Some(d.to_string());
        }
        if let Some(g) = &self.gateway {
            if let Some(d) = g.device.as_ref().and_then(|d| d.device_id.as_deref()).filter(|d| !d.is_empty()) {
                return Some(d.to_string());
            }
            if let Some(c) = g.certificate.as_ref().filter(|c| !c.sha256.is_empty()) {
                return cert(&c.sha256);
            }
        }
        self.tls.as_ref().and_then(|t| t.client_certificates.first()).filter(|c| !c.sha256.is_empty()).and_then(|c| cert(&c.sha256))
    }

    /// An event with no addresses and no body yet.
    pub fn bare(timestamp: Timestamp, event_type: EventType, pcap_file: Option<Str<'a>>, frame: u64) -> Self {
        Event {
            schema_version: SchemaVersion,
            timestamp,
            event_type,
            pcap_file,
            frame,
            flow_id: None,
            src_ip: None,
            src_port: None,
            dest_ip: None,
            dest_port: None,
            proto: None,
            krb5: None,
            anomaly: None,
            finding: None,
            gateway: None,
            tls: None,
            http: None,
            eas: None,
            crl: None,
            device: None,
        }
    }
}

/// The device behind a gateway request: its address and what its ActiveSync query says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GatewayDevice {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub device_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cmd: Option<String>,
    /// The query's User=, when it names someone else than the certificate's user.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user_mismatch: Option<String>,
}

/// The device's certificate as the gateway verified it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GatewayCertificate {
    pub subject: String,
    pub issuer: String,
    /// Uppercase hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub upn: Option<String>,
    /// Unix seconds.
    pub not_after: i64,
    /// good, revoked, unknown (refused), soft_fail (let through by configuration).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub revocation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crl_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crl_age_seconds: Option<i64>,
}

/// The delegation for one request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GatewayKcd {
    pub cache_hit: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub step: Option<KcdStep>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<ErrorCode>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ntstatus: Option<NtStatusInfo>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kdc: Option<String>,
    pub latency_us: i64,
}

/// Exchange's answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GatewayBackend {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<u16>,
    pub latency_us: i64,
    /// The WWW-Authenticate schemes Exchange offered with a 401.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub www_authenticate: Vec<String>,
}
