//! kcdscope's events. One JSON object per line (NDJSON), shaped like Suricata's EVE: a
//! top-level `event_type` and one object named after it (`krb5`, `anomaly`, ...), plus the
//! packet's time, place in the capture and addresses. Strings borrow from the packet where
//! they can, so producing an event costs few allocations; deserializing owns them.
//!
//! Field names and meanings are documented in the README ("Event schema").

#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
pub use smallvec::{smallvec, SmallVec};

mod json;
mod time;
pub use json::write_str as write_json_str;
pub use time::Timestamp;

/// Bumped when a field changes meaning or disappears; adding fields does not bump it.
pub const SCHEMA_VERSION: u32 = 1;

pub type Str<'a> = Cow<'a, str>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Krb5,
    Anomaly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Transport {
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "TCP")]
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client to KDC (the destination port is a Kerberos port).
    ToKdc,
    FromKdc,
}

/// Where a packet sits in its capture: the file (as given on the command line) and the
/// frame number within it, counted from 1 as Wireshark does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketRef<'a> {
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub pcap_file: Option<Str<'a>>,
    pub frame: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event<'a> {
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
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub krb5: Option<Krb5<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub anomaly: Option<Anomaly<'a>>,
}

/// A principal: its name components (joined with '/' when shown or exported, as
/// "HTTP/exchange.lab.test") and its name type. Components are kept apart so that a name
/// read from a packet borrows its bytes instead of being joined into a new string.
#[derive(Debug, Clone)]
pub struct Principal<'a> {
    pub parts: SmallVec<[Str<'a>; 2]>,
    pub name_type: Str<'a>,
}

impl<'a> Principal<'a> {
    pub fn new(name: impl Into<Str<'a>>, name_type: impl Into<Str<'a>>) -> Self {
        Self {
            parts: smallvec![name.into()],
            name_type: name_type.into(),
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

#[derive(Serialize, Deserialize)]
struct PrincipalRepr<'a> {
    #[serde(borrow)]
    name: Str<'a>,
    #[serde(borrow)]
    name_type: Str<'a>,
}

impl Serialize for Principal<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PrincipalRepr {
            name: self.name(),
            name_type: Cow::Borrowed(&self.name_type),
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncInfo<'a> {
    #[serde(borrow)]
    pub etype: Str<'a>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kvno: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketInfo<'a> {
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub realm: Option<Str<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub sname: Option<Principal<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub enc_part: Option<EncInfo<'a>>,
}

/// PA-FOR-USER (MS-SFU): the user a service asks a ticket for (S4U2Self).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForUser<'a> {
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub user: Option<Principal<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub realm: Option<Str<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub auth_package: Option<Str<'a>>,
}

/// PA-S4U-X509-USER (MS-SFU): the user by name or certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S4uX509User<'a> {
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub user: Option<Principal<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub realm: Option<Str<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub has_certificate: bool,
    #[serde(borrow, skip_serializing_if = "SmallVec::is_empty", default)]
    pub options: SmallVec<[Str<'a>; 2]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NtStatusInfo<'a> {
    /// "0xC0000072"
    #[serde(borrow)]
    pub code: Str<'a>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub name: Option<Str<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaltInfo<'a> {
    #[serde(borrow)]
    pub etype: Str<'a>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub salt: Option<Str<'a>>,
}

/// What a KRB-ERROR's e-data says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EData<'a> {
    /// "METHOD-DATA", "KERB-ERROR-DATA", "TYPED-DATA" or "unknown".
    #[serde(borrow)]
    pub format: Str<'a>,
    #[serde(borrow, skip_serializing_if = "SmallVec::is_empty", default)]
    pub padata: SmallVec<[Str<'a>; 8]>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub ntstatus: Option<NtStatusInfo<'a>>,
    #[serde(borrow, skip_serializing_if = "SmallVec::is_empty", default)]
    pub etype_info2: SmallVec<[SaltInfo<'a>; 2]>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub data_type: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KrbErrorInfo<'a> {
    pub code: i32,
    #[serde(borrow)]
    pub name: Str<'a>,
    /// The KDC's clock when it answered.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stime: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ctime: Option<Timestamp>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub e_text: Option<Str<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub e_data: Option<EData<'a>>,
    /// KDC clock (stime + susec) minus the packet's capture time, in seconds: positive
    /// when the KDC is ahead of the capturing host.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub skew_seconds: Option<f64>,
}

/// The request a reply or error answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRef<'a> {
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub pcap_file: Option<Str<'a>>,
    pub frame: u64,
    #[serde(borrow)]
    pub msg_type: Str<'a>,
    pub latency_us: i64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Krb5<'a> {
    #[serde(borrow)]
    pub msg_type: Str<'a>,
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
    #[serde(borrow, skip_serializing_if = "SmallVec::is_empty", default)]
    pub kdc_options: SmallVec<[Str<'a>; 8]>,
    #[serde(borrow, skip_serializing_if = "SmallVec::is_empty", default)]
    pub etypes: SmallVec<[Str<'a>; 12]>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nonce: Option<i64>,
    #[serde(borrow, skip_serializing_if = "SmallVec::is_empty", default)]
    pub padata: SmallVec<[Str<'a>; 6]>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub for_user: Option<ForUser<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub s4u_x509_user: Option<S4uX509User<'a>>,
    #[serde(borrow, skip_serializing_if = "SmallVec::is_empty", default)]
    pub pac_options: SmallVec<[Str<'a>; 4]>,
    #[serde(borrow, skip_serializing_if = "SmallVec::is_empty", default)]
    pub additional_tickets: SmallVec<[TicketInfo<'a>; 1]>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub ticket: Option<TicketInfo<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub enc_part: Option<EncInfo<'a>>,
    /// FAST (RFC 6113) is in use: a request carrying PA-FX-FAST, or an error whose real
    /// content is inside FAST's encrypted reply.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub armored: bool,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub error: Option<KrbErrorInfo<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub request: Option<RequestRef<'a>>,
    /// Why the message is malformed; the fields above are what could still be read.
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    pub malformed: Option<Str<'a>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyLayer {
    Pcap,
    Link,
    Ip,
    Tcp,
    Udp,
    Krb5,
}

/// Something wrong with the input that is not one message: a TCP gap, a bad record
/// mark, an unfinished fragment set, a truncated capture file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly<'a> {
    pub layer: AnomalyLayer,
    /// Stable identifier, e.g. "tcp_gap", "krb5_record_oversize"; counted in the summary.
    #[serde(borrow)]
    pub kind: Str<'a>,
    #[serde(borrow)]
    pub detail: Str<'a>,
}
