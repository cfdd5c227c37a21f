//! Kerberos V5 message types, derived with rasn from the ASN.1 of RFC 4120 section 5,
//! MS-SFU 2.2 (S4U), MS-KILE 2.2 and RFC 6113 (FAST).
//!
//! rasn-kerberos 0.30 supplies the types it gets right. Where it is wrong for a monitor
//! that must read whatever real KDCs send, the type is defined here instead:
//! - `KerberosString` is GeneralString on the wire, and real KDCs put UTF-8 in it; rasn's
//!   GeneralString rejects bytes 0x80..=0xA0, so names such as "łukasz" would not decode.
//!   Ours keeps the raw bytes.
//! - `KerberosTime`: rasn writes fractional seconds when the value has them, which RFC 4120
//!   forbids; ours keeps the 15 raw characters and is built only from whole seconds.
//! - UInt32 fields (kvno, nonce, seq-number): some implementations send -1; they are i64
//!   here, which also holds 0..=u32::MAX.
//! - `KdcOptions`/`TicketFlags`: rasn-kerberos's helpers set the wrong bits; see `flags.rs`.

use rasn::prelude::*;

pub use rasn_kerberos::{
    AuthorizationDataValue, Checksum, EncryptionKey, EtypeInfoEntry, HostAddress, PaData,
    TransitedEncoding, TypedDataItem,
};

pub type AuthorizationData = SequenceOf<AuthorizationDataValue>;
pub type HostAddresses = SequenceOf<HostAddress>;
/// METHOD-DATA ::= SEQUENCE OF PA-DATA
pub type MethodData = SequenceOf<PaData>;
/// TYPED-DATA ::= SEQUENCE SIZE (1..MAX) OF SEQUENCE { data-type [0] Int32, data-value [1] OCTET STRING OPTIONAL }
pub type TypedData = SequenceOf<TypedDataItem>;
pub type Realm = KerberosString;
/// ETYPE-INFO2 ::= SEQUENCE SIZE (1..MAX) OF ETYPE-INFO2-ENTRY
pub type EtypeInfo2 = SequenceOf<EtypeInfo2Entry>;
pub type EtypeInfo = SequenceOf<EtypeInfoEntry>;

/// KerberosString ::= GeneralString (IA5String), holding raw bytes (UTF-8 in practice).
#[derive(AsnType, Clone, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[rasn(tag(universal, 27), delegate)]
pub struct KerberosString(pub OctetString);

impl KerberosString {
    pub fn new(s: &str) -> Self {
        Self(OctetString::from_slice(s.as_bytes()))
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl std::fmt::Debug for KerberosString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl From<&str> for KerberosString {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

/// KerberosTime ::= GeneralizedTime -- with no fractional seconds, "YYYYMMDDHHMMSSZ".
/// The raw characters are kept; `unix_seconds` interprets them.
#[derive(AsnType, Clone, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[rasn(tag(universal, 24), delegate)]
pub struct KerberosTime(pub OctetString);

impl std::fmt::Debug for KerberosTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(&self.0))
    }
}

/// PrincipalName ::= SEQUENCE { name-type [0] Int32, name-string [1] SEQUENCE OF KerberosString }
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PrincipalName {
    #[rasn(tag(explicit(0)))]
    pub name_type: i32,
    #[rasn(tag(explicit(1)))]
    pub name_string: SequenceOf<KerberosString>,
}

impl PrincipalName {
    pub fn new(name_type: i32, components: &[&str]) -> Self {
        Self {
            name_type,
            name_string: components.iter().map(|c| KerberosString::new(c)).collect(),
        }
    }

    /// Components joined with '/', the usual display form ("HTTP/exchange.lab.test").
    pub fn display(&self) -> String {
        let parts: Vec<String> = self
            .name_string
            .iter()
            .map(KerberosString::to_string_lossy)
            .collect();
        parts.join("/")
    }
}

/// EncryptedData ::= SEQUENCE { etype [0] Int32, kvno [1] UInt32 OPTIONAL, cipher [2] OCTET STRING }
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EncryptedData {
    #[rasn(tag(explicit(0)))]
    pub etype: i32,
    #[rasn(tag(explicit(1)))]
    pub kvno: Option<i64>,
    #[rasn(tag(explicit(2)))]
    pub cipher: OctetString,
}

/// KerberosFlags ::= BIT STRING (SIZE (32..MAX)); named bits in `flags.rs`.
pub type KerberosFlags = BitString;

/// Ticket ::= [APPLICATION 1] SEQUENCE { tkt-vno [0] INTEGER (5), realm [1] Realm,
///     sname [2] PrincipalName, enc-part [3] EncryptedData }
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[rasn(tag(explicit(application, 1)))]
pub struct Ticket {
    #[rasn(tag(explicit(0)))]
    pub tkt_vno: i32,
    #[rasn(tag(explicit(1)))]
    pub realm: Realm,
    #[rasn(tag(explicit(2)))]
    pub sname: PrincipalName,
    #[rasn(tag(explicit(3)))]
    pub enc_part: EncryptedData,
}

/// EncTicketPart ::= [APPLICATION 3] SEQUENCE { ... }
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[rasn(tag(explicit(application, 3)))]
pub struct EncTicketPart {
    #[rasn(tag(explicit(0)))]
    pub flags: KerberosFlags,
    #[rasn(tag(explicit(1)))]
    pub key: EncryptionKey,
    #[rasn(tag(explicit(2)))]
    pub crealm: Realm,
    #[rasn(tag(explicit(3)))]
    pub cname: PrincipalName,
    #[rasn(tag(explicit(4)))]
    pub transited: TransitedEncoding,
    #[rasn(tag(explicit(5)))]
    pub authtime: KerberosTime,
    #[rasn(tag(explicit(6)))]
    pub starttime: Option<KerberosTime>,
    #[rasn(tag(explicit(7)))]
    pub endtime: KerberosTime,
    #[rasn(tag(explicit(8)))]
    pub renew_till: Option<KerberosTime>,
    #[rasn(tag(explicit(9)))]
    pub caddr: Option<HostAddresses>,
    #[rasn(tag(explicit(10)))]
    pub authorization_data: Option<AuthorizationData>,
}

/// KDC-REQ ::= SEQUENCE { pvno [1] INTEGER (5), msg-type [2] INTEGER (10 -- AS -- | 12 -- TGS --),
///     padata [3] SEQUENCE OF PA-DATA OPTIONAL, req-body [4] KDC-REQ-BODY }
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KdcReq {
    #[rasn(tag(explicit(1)))]
    pub pvno: i32,
    #[rasn(tag(explicit(2)))]
    pub msg_type: i32,
    #[rasn(tag(explicit(3)))]
    pub padata: Option<SequenceOf<PaData>>,
    #[rasn(tag(explicit(4)))]
    pub req_body: KdcReqBody,
}

#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KdcReqBody {
    #[rasn(tag(explicit(0)))]
    pub kdc_options: KerberosFlags,
    #[rasn(tag(explicit(1)))]
    pub cname: Option<PrincipalName>,
    #[rasn(tag(explicit(2)))]
    pub realm: Realm,
    #[rasn(tag(explicit(3)))]
    pub sname: Option<PrincipalName>,
    #[rasn(tag(explicit(4)))]
    pub from: Option<KerberosTime>,
    #[rasn(tag(explicit(5)))]
    pub till: KerberosTime,
    #[rasn(tag(explicit(6)))]
    pub rtime: Option<KerberosTime>,
    #[rasn(tag(explicit(7)))]
    pub nonce: i64,
    #[rasn(tag(explicit(8)))]
    pub etype: SequenceOf<i32>,
    #[rasn(tag(explicit(9)))]
    pub addresses: Option<HostAddresses>,
    #[rasn(tag(explicit(10)))]
    pub enc_authorization_data: Option<EncryptedData>,
    #[rasn(tag(explicit(11)))]
    pub additional_tickets: Option<SequenceOf<Ticket>>,
}

/// AS-REQ ::= [APPLICATION 10] KDC-REQ
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[rasn(tag(explicit(application, 10)), delegate)]
pub struct AsReq(pub KdcReq);

/// TGS-REQ ::= [APPLICATION 12] KDC-REQ
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[rasn(tag(explicit(application, 12)), delegate)]
pub struct TgsReq(pub KdcReq);

/// KDC-REP ::= SEQUENCE { pvno [0], msg-type [1], padata [2] OPTIONAL, crealm [3], cname [4],
///     ticket [5], enc-part [6] }
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KdcRep {
    #[rasn(tag(explicit(0)))]
    pub pvno: i32,
    #[rasn(tag(explicit(1)))]
    pub msg_type: i32,
    #[rasn(tag(explicit(2)))]
    pub padata: Option<SequenceOf<PaData>>,
    #[rasn(tag(explicit(3)))]
    pub crealm: Realm,
    #[rasn(tag(explicit(4)))]
    pub cname: PrincipalName,
    #[rasn(tag(explicit(5)))]
    pub ticket: Ticket,
    #[rasn(tag(explicit(6)))]
    pub enc_part: EncryptedData,
}

/// AS-REP ::= [APPLICATION 11] KDC-REP
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[rasn(tag(explicit(application, 11)), delegate)]
pub struct AsRep(pub KdcRep);

/// TGS-REP ::= [APPLICATION 13] KDC-REP
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[rasn(tag(explicit(application, 13)), delegate)]
pub struct TgsRep(pub KdcRep);

/// EncKDCRepPart ::= SEQUENCE { key [0], last-req [1], nonce [2], key-expiration [3] OPTIONAL,
///     flags [4], authtime [5], starttime [6] OPTIONAL, endtime [7], renew-till [8] OPTIONAL,
///     srealm [9], sname [10], caddr [11] OPTIONAL, encrypted-pa-data [12] OPTIONAL }
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EncKdcRepPart {
    #[rasn(tag(explicit(0)))]
    pub key: EncryptionKey,
    #[rasn(tag(explicit(1)))]
    pub last_req: SequenceOf<LastReqEntry>,
    #[rasn(tag(explicit(2)))]
    pub nonce: i64,
    #[rasn(tag(explicit(3)))]
    pub key_expiration: Option<KerberosTime>,
    #[rasn(tag(explicit(4)))]
    pub flags: KerberosFlags,
    #[rasn(tag(explicit(5)))]
    pub authtime: KerberosTime,
    #[rasn(tag(explicit(6)))]
    pub starttime: Option<KerberosTime>,
    #[rasn(tag(explicit(7)))]
    pub endtime: KerberosTime,
    #[rasn(tag(explicit(8)))]
    pub renew_till: Option<KerberosTime>,
    #[rasn(tag(explicit(9)))]
    pub srealm: Realm,
    #[rasn(tag(explicit(10)))]
    pub sname: PrincipalName,
    #[rasn(tag(explicit(11)))]
    pub caddr: Option<HostAddresses>,
    #[rasn(tag(explicit(12)))]
    pub encrypted_pa_data: Option<SequenceOf<PaData>>,
}

#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LastReqEntry {
    #[rasn(tag(explicit(0)))]
    pub lr_type: i32,
    #[rasn(tag(explicit(1)))]
    pub lr_value: KerberosTime,
}

/// EncASRepPart ::= [APPLICATION 25] EncKDCRepPart
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[rasn(tag(explicit(application, 25)), delegate)]
pub struct EncAsRepPart(pub EncKdcRepPart);

/// EncTGSRepPart ::= [APPLICATION 26] EncKDCRepPart
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[rasn(tag(explicit(application, 26)), delegate)]
pub struct EncTgsRepPart(pub EncKdcRepPart);

/// AP-REQ ::= [APPLICATION 14] SEQUENCE { pvno [0], msg-type [1], ap-options [2] APOptions,
///     ticket [3] Ticket, authenticator [4] EncryptedData }
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[rasn(tag(explicit(application, 14)))]
pub struct ApReq {
    #[rasn(tag(explicit(0)))]
    pub pvno: i32,
    #[rasn(tag(explicit(1)))]
    pub msg_type: i32,
    #[rasn(tag(explicit(2)))]
    pub ap_options: KerberosFlags,
    #[rasn(tag(explicit(3)))]
    pub ticket: Ticket,
    #[rasn(tag(explicit(4)))]
    pub authenticator: EncryptedData,
}

/// Authenticator ::= [APPLICATION 2] SEQUENCE { authenticator-vno [0], crealm [1], cname [2],
///     cksum [3] OPTIONAL, cusec [4], ctime [5], subkey [6] OPTIONAL, seq-number [7] OPTIONAL,
///     authorization-data [8] OPTIONAL }
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[rasn(tag(explicit(application, 2)))]
pub struct Authenticator {
    #[rasn(tag(explicit(0)))]
    pub authenticator_vno: i32,
    #[rasn(tag(explicit(1)))]
    pub crealm: Realm,
    #[rasn(tag(explicit(2)))]
    pub cname: PrincipalName,
    #[rasn(tag(explicit(3)))]
    pub cksum: Option<Checksum>,
    #[rasn(tag(explicit(4)))]
    pub cusec: i32,
    #[rasn(tag(explicit(5)))]
    pub ctime: KerberosTime,
    #[rasn(tag(explicit(6)))]
    pub subkey: Option<EncryptionKey>,
    #[rasn(tag(explicit(7)))]
    pub seq_number: Option<i64>,
    #[rasn(tag(explicit(8)))]
    pub authorization_data: Option<AuthorizationData>,
}

/// AP-REP ::= [APPLICATION 15] SEQUENCE { pvno [0], msg-type [1], enc-part [2] EncryptedData }
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[rasn(tag(explicit(application, 15)))]
pub struct ApRep {
    #[rasn(tag(explicit(0)))]
    pub pvno: i32,
    #[rasn(tag(explicit(1)))]
    pub msg_type: i32,
    #[rasn(tag(explicit(2)))]
    pub enc_part: EncryptedData,
}

/// EncAPRepPart ::= [APPLICATION 27] SEQUENCE { ctime [0], cusec [1], subkey [2] OPTIONAL,
///     seq-number [3] OPTIONAL }
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[rasn(tag(explicit(application, 27)))]
pub struct EncApRepPart {
    #[rasn(tag(explicit(0)))]
    pub ctime: KerberosTime,
    #[rasn(tag(explicit(1)))]
    pub cusec: i32,
    #[rasn(tag(explicit(2)))]
    pub subkey: Option<EncryptionKey>,
    #[rasn(tag(explicit(3)))]
    pub seq_number: Option<i64>,
}

/// KRB-ERROR ::= [APPLICATION 30] SEQUENCE { pvno [0], msg-type [1], ctime [2] OPTIONAL,
///     cusec [3] OPTIONAL, stime [4], susec [5], error-code [6] Int32, crealm [7] OPTIONAL,
///     cname [8] OPTIONAL, realm [9] -- service realm --, sname [10], e-text [11] OPTIONAL,
///     e-data [12] OPTIONAL }
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[rasn(tag(explicit(application, 30)))]
pub struct KrbError {
    #[rasn(tag(explicit(0)))]
    pub pvno: i32,
    #[rasn(tag(explicit(1)))]
    pub msg_type: i32,
    #[rasn(tag(explicit(2)))]
    pub ctime: Option<KerberosTime>,
    #[rasn(tag(explicit(3)))]
    pub cusec: Option<i32>,
    #[rasn(tag(explicit(4)))]
    pub stime: KerberosTime,
    #[rasn(tag(explicit(5)))]
    pub susec: i32,
    #[rasn(tag(explicit(6)))]
    pub error_code: i32,
    #[rasn(tag(explicit(7)))]
    pub crealm: Option<Realm>,
    #[rasn(tag(explicit(8)))]
    pub cname: Option<PrincipalName>,
    #[rasn(tag(explicit(9)))]
    pub realm: Realm,
    #[rasn(tag(explicit(10)))]
    pub sname: PrincipalName,
    #[rasn(tag(explicit(11)))]
    pub e_text: Option<KerberosString>,
    #[rasn(tag(explicit(12)))]
    pub e_data: Option<OctetString>,
}

/// PA-ENC-TS-ENC ::= SEQUENCE { patimestamp [0] KerberosTime, pausec [1] Microseconds OPTIONAL }
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PaEncTsEnc {
    #[rasn(tag(explicit(0)))]
    pub patimestamp: KerberosTime,
    #[rasn(tag(explicit(1)))]
    pub pausec: Option<i32>,
}

/// ETYPE-INFO2-ENTRY ::= SEQUENCE { etype [0] Int32, salt [1] KerberosString OPTIONAL,
///     s2kparams [2] OCTET STRING OPTIONAL }
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EtypeInfo2Entry {
    #[rasn(tag(explicit(0)))]
    pub etype: i32,
    #[rasn(tag(explicit(1)))]
    pub salt: Option<KerberosString>,
    #[rasn(tag(explicit(2)))]
    pub s2kparams: Option<OctetString>,
}

/// KERB-PA-PAC-REQUEST ::= SEQUENCE { include-pac [0] BOOLEAN } (MS-KILE 2.2.3)
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PaPacRequest {
    #[rasn(tag(explicit(0)))]
    pub include_pac: bool,
}

/// PA-FOR-USER ::= SEQUENCE { userName [0] PrincipalName, userRealm [1] Realm,
///     cksum [2] Checksum, auth-package [3] KerberosString } (MS-SFU 2.2.1)
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PaForUser {
    #[rasn(tag(explicit(0)))]
    pub user_name: PrincipalName,
    #[rasn(tag(explicit(1)))]
    pub user_realm: Realm,
    #[rasn(tag(explicit(2)))]
    pub cksum: Checksum,
    #[rasn(tag(explicit(3)))]
    pub auth_package: KerberosString,
}

/// S4UUserID ::= SEQUENCE { nonce [0] UInt32, cname [1] PrincipalName OPTIONAL,
///     crealm [2] Realm, subject-certificate [3] OCTET STRING OPTIONAL,
///     options [4] BIT STRING (SIZE (32)) OPTIONAL, ... } (MS-SFU 2.2.2)
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub struct S4uUserId {
    #[rasn(tag(explicit(0)))]
    pub nonce: i64,
    #[rasn(tag(explicit(1)))]
    pub cname: Option<PrincipalName>,
    #[rasn(tag(explicit(2)))]
    pub crealm: Realm,
    #[rasn(tag(explicit(3)))]
    pub subject_certificate: Option<OctetString>,
    #[rasn(tag(explicit(4)))]
    pub options: Option<BitString>,
}

impl S4uUserId {
    pub fn new(
        nonce: i64,
        cname: Option<PrincipalName>,
        crealm: Realm,
        options: Option<BitString>,
    ) -> Self {
        Self {
            nonce,
            cname,
            crealm,
            subject_certificate: None,
            options,
        }
    }
}

/// PA-S4U-X509-USER ::= SEQUENCE { user-id [0] S4UUserID, checksum [1] Checksum } (MS-SFU 2.2.2)
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PaS4uX509User {
    #[rasn(tag(explicit(0)))]
    pub user_id: S4uUserId,
    #[rasn(tag(explicit(1)))]
    pub checksum: Checksum,
}

/// PA-PAC-OPTIONS ::= SEQUENCE { KerberosFlags -- claims(0), branch-aware(1),
///     forward-to-full-dc(2), resource-based-constrained-delegation(3) } (MS-KILE 2.2.10)
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PaPacOptions {
    #[rasn(tag(explicit(0)))]
    pub flags: KerberosFlags,
}

/// KERB-ERROR-DATA ::= SEQUENCE { data-type [1] INTEGER, data-value [2] OCTET STRING OPTIONAL }
/// (MS-KILE 2.2.1); data-type 3 (KERB_ERR_TYPE_EXTENDED) carries a KERB-EXT-ERROR.
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KerbErrorData {
    #[rasn(tag(explicit(1)))]
    pub data_type: i32,
    #[rasn(tag(explicit(2)))]
    pub data_value: Option<OctetString>,
}

/// PA-FX-FAST-REQUEST ::= CHOICE { armored-data [0] KrbFastArmoredReq, ... } (RFC 6113 5.4.2)
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[rasn(choice)]
pub enum PaFxFastRequest {
    #[rasn(tag(explicit(0)))]
    ArmoredData(KrbFastArmoredReq),
}

/// KrbFastArmoredReq ::= SEQUENCE { armor [0] KrbFastArmor OPTIONAL, req-checksum [1] Checksum,
///     enc-fast-req [2] EncryptedData }
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KrbFastArmoredReq {
    #[rasn(tag(explicit(0)))]
    pub armor: Option<KrbFastArmor>,
    #[rasn(tag(explicit(1)))]
    pub req_checksum: Checksum,
    #[rasn(tag(explicit(2)))]
    pub enc_fast_req: EncryptedData,
}

/// KrbFastArmor ::= SEQUENCE { armor-type [0] Int32, armor-value [1] OCTET STRING }
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KrbFastArmor {
    #[rasn(tag(explicit(0)))]
    pub armor_type: i32,
    #[rasn(tag(explicit(1)))]
    pub armor_value: OctetString,
}

/// PA-FX-FAST-REPLY ::= CHOICE { armored-data [0] KrbFastArmoredRep, ... }
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[rasn(choice)]
pub enum PaFxFastReply {
    #[rasn(tag(explicit(0)))]
    ArmoredData(KrbFastArmoredRep),
}

/// KrbFastArmoredRep ::= SEQUENCE { enc-fast-rep [0] EncryptedData }
#[derive(AsnType, Clone, Debug, Decode, Encode, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KrbFastArmoredRep {
    #[rasn(tag(explicit(0)))]
    pub enc_fast_rep: EncryptedData,
}
