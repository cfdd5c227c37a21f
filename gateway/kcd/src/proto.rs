//! The messages of constrained delegation, built and read with the shared codec and
//! kcd-crypto, free of I/O: time and nonces come in as arguments so that every function can
//! be checked on bytes.
//!
//! Recipes: RFC 4120 (AS and TGS exchanges), MS-SFU 2.2 and 3.1.5 (S4U2Self, S4U2Proxy),
//! MS-KILE, RFC 4121 and RFC 4178 (the Negotiate token). Every choice below that differs
//! from the obvious one was checked against the MIT and Samba KDCs.

use kcd_crypto::{hmac_md5_checksum, Etype, Key, UsageKey, CKSUM_HMAC_MD5};
use kcd_krb5::asn1::{
    ApReq, Authenticator, Checksum, EncKdcRepPart, EncryptedData, EtypeInfo2, EtypeInfo2Entry,
    KdcRep, KdcReq, KdcReqBody, KerberosString, KerberosTime, KrbError, MethodData, PaData,
    PaEncTsEnc, PaForUser, PaPacOptions, PaPacRequest, PaS4uX509User, PrincipalName,
    S4uUserId, Ticket, TgsReq,
};
use kcd_krb5::asn1::{AsReq, EncAsRepPart, EncTgsRepPart};
use kcd_krb5::flags::{from_bits, kdc_options as ko, to_bits, ticket_flags as tf, Flags32};
use kcd_krb5::{decode, encode, CodecError};
use rasn::types::OctetString;

pub const PA_TGS_REQ: i32 = 1;
pub const PA_ENC_TIMESTAMP: i32 = 2;
pub const PA_ETYPE_INFO2: i32 = 19;
pub const PA_PAC_REQUEST: i32 = 128;
pub const PA_FOR_USER: i32 = 129;
pub const PA_S4U_X509_USER: i32 = 130;
pub const PA_FX_COOKIE: i32 = 133;
pub const PA_PAC_OPTIONS: i32 = 167;

pub const NT_PRINCIPAL: i32 = 1;
pub const NT_SRV_INST: i32 = 2;
pub const NT_ENTERPRISE: i32 = 10;

/// Key usages, RFC 4120 7.5.1 and MS-SFU.
pub mod usage {
    pub const PA_ENC_TIMESTAMP: u32 = 1;
    pub const AS_REP_ENC_PART: u32 = 3;
    pub const TGS_REQ_AUTH_CKSUM: u32 = 6;
    pub const TGS_REQ_AUTH: u32 = 7;
    pub const TGS_REP_ENC_PART: u32 = 8;
    pub const AP_REQ_AUTH: u32 = 11;
    pub const PA_FOR_USER: u32 = 17;
    pub const PA_S4U_X509_USER: u32 = 26;
}

/// RFC 4121 4.1.1: the "checksum" type that carries the GSS context flags.
const GSS_CHECKSUM: i32 = 0x8003;

/// The time the gateway states to KDCs and services: its clock plus any offset adopted
/// after KRB_AP_ERR_SKEW.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub secs: i64,
    pub usec: i32,
}

impl Now {
    fn kerberos_time(self) -> Result<KerberosTime, ProtoError> {
        KerberosTime::from_unix(self.secs).ok_or(ProtoError::Time)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("{0}")]
    Codec(#[from] CodecError),
    #[error("the clock is outside the years Kerberos can write")]
    Time,
    #[error("the system's random number generator failed")]
    Random,
    #[error("{0}")]
    Reply(String),
}

fn reply(s: impl Into<String>) -> ProtoError {
    ProtoError::Reply(s.into())
}

/// A ticket with its session key, from an AS or TGS reply.
#[derive(Clone)]
pub struct Creds {
    pub client: PrincipalName,
    pub crealm: String,
    pub server: PrincipalName,
    pub srealm: String,
    pub ticket: Ticket,
    /// The ticket's DER, kept so that each AP-REQ copies it instead of re-encoding it.
    pub ticket_der: Vec<u8>,
    pub key: Key,
    /// The session key's derived keys for AP-REQ authenticators (usage 11), derived once
    /// per ticket rather than once per token.
    pub auth_key: UsageKey,
    pub flags: Flags32,
    pub authtime: i64,
    pub endtime: i64,
    pub renew_till: Option<i64>,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Creds({}@{} -> {}@{}, flags {:#010x}, ends {}, {:?})",
            self.client.display(),
            self.crealm,
            self.server.display(),
            self.srealm,
            self.flags.0,
            self.endtime,
            self.key
        )
    }
}

impl Creds {
    pub fn forwardable(&self) -> bool {
        self.flags.has(tf::FORWARDABLE)
    }
}

fn pa(r#type: i32, value: Vec<u8>) -> PaData {
    PaData { r#type, value: OctetString::from(value) }
}

fn body(
    options: Flags32,
    cname: Option<PrincipalName>,
    realm: &str,
    sname: PrincipalName,
    till: i64,
    nonce: u32,
    etypes: &[i32],
) -> Result<KdcReqBody, ProtoError> {
    Ok(KdcReqBody {
        kdc_options: to_bits(options),
        cname,
        realm: KerberosString::new(realm),
        sname: Some(sname),
        from: None,
        till: KerberosTime::from_unix(till).ok_or(ProtoError::Time)?,
        rtime: None,
        nonce: i64::from(nonce),
        etype: etypes.to_vec(),
        addresses: None,
        enc_authorization_data: None,
        additional_tickets: None,
    })
}

/// Forwardable, renewable, canonicalize: what MIT and Windows ask for.
fn base_options() -> Flags32 {
    Flags32::empty().with(ko::FORWARDABLE).with(ko::RENEWABLE).with(ko::CANONICALIZE)
}

/// The service account's AS-REQ for a TGT, with `padata` (none at first, then
/// PA-ENC-TIMESTAMP). PA-PAC-REQUEST asks AD for the PAC that S4U needs.
pub fn as_req(
    client: &PrincipalName,
    realm: &str,
    nonce: u32,
    now: Now,
    etypes: &[i32],
    mut padata: Vec<PaData>,
) -> Result<Vec<u8>, ProtoError> {
    padata.push(pa(PA_PAC_REQUEST, encode(&PaPacRequest { include_pac: true })?));
    let krbtgt = PrincipalName::new(NT_SRV_INST, &["krbtgt", realm]);
    let req = KdcReq {
        pvno: 5,
        msg_type: 10,
        padata: Some(padata),
        req_body: body(
            base_options().with(ko::RENEWABLE_OK),
            Some(client.clone()),
            realm,
            krbtgt,
            now.secs + 86_400,
            nonce,
            etypes,
        )?,
    };
    Ok(encode(&AsReq(req))?)
}

/// What a PREAUTH_REQUIRED error offers: ETYPE-INFO2 entries (best first, as the KDC
/// ranks them) and the FAST cookie to echo, if any.
pub fn preauth_hints(err: &KrbError) -> (Vec<EtypeInfo2Entry>, Option<Vec<u8>>) {
    let Some(e_data) = &err.e_data else { return (Vec::new(), None) };
    let Ok(methods) = decode::<MethodData>(e_data) else { return (Vec::new(), None) };
    hints(&methods)
}

fn hints(methods: &[PaData]) -> (Vec<EtypeInfo2Entry>, Option<Vec<u8>>) {
    let mut info = Vec::new();
    let mut cookie = None;
    for m in methods {
        match m.r#type {
            PA_ETYPE_INFO2 => {
                if let Ok(v) = decode::<EtypeInfo2>(&m.value) {
                    info.extend(v);
                }
            }
            PA_FX_COOKIE => cookie = Some(m.value.to_vec()),
            _ => {}
        }
    }
    (info, cookie)
}

/// PA-ENC-TIMESTAMP: the current time, encrypted in the account's long-term key.
pub fn pa_enc_timestamp(key: &Key, now: Now) -> Result<PaData, ProtoError> {
    let ts = encode(&PaEncTsEnc { patimestamp: now.kerberos_time()?, pausec: Some(now.usec) })?;
    let cipher = key.encrypt(usage::PA_ENC_TIMESTAMP, &ts).map_err(|_| ProtoError::Random)?;
    let ed = EncryptedData { etype: key.etype().number(), kvno: None, cipher: OctetString::from(cipher) };
    Ok(pa(PA_ENC_TIMESTAMP, encode(&ed)?))
}

/// The salt RFC 4120 section 4 defines when the KDC names none: realm then components.
pub fn default_salt(realm: &str, name: &PrincipalName) -> Vec<u8> {
    let mut s = realm.as_bytes().to_vec();
    for c in &name.name_string {
        s.extend_from_slice(c.as_bytes());
    }
    s
}

/// The ETYPE-INFO2 an AS-REP carries (RFC 4120 3.1.5: it overrides the earlier one).
pub fn as_rep_hints(rep: &KdcRep) -> Vec<EtypeInfo2Entry> {
    rep.padata.as_deref().map(|p| hints(p).0).unwrap_or_default()
}

/// The bytes the first TLV of a decrypted plaintext covers: RC4 and some KDCs pad it.
pub fn outer_tlv(plain: &[u8]) -> Option<&[u8]> {
    let (_, rest) = kcd_krb5::ber::read_tlv(plain).ok()?;
    plain.get(..plain.len() - rest.len())
}

/// Decrypts and checks a KDC reply's enc-part. Both AS and TGS replies may be tagged
/// [APPLICATION 25] or [APPLICATION 26]: MIT sends 26 in AS-REPs too.
fn enc_rep_part(rep: &KdcRep, key: &Key, usage: u32) -> Result<EncKdcRepPart, ProtoError> {
    if rep.enc_part.etype != key.etype().number() {
        return Err(reply(format!(
            "enc-part is etype {}, the reply key is {}",
            rep.enc_part.etype,
            key.etype().number()
        )));
    }
    let plain = zeroize::Zeroizing::new(
        key.decrypt(usage, &rep.enc_part.cipher)
            .map_err(|e| reply(format!("enc-part does not decrypt: {e}")))?,
    );
    let body = outer_tlv(&plain).ok_or_else(|| reply("enc-part plaintext is not DER"))?;
    match body.first() {
        Some(0x79) => Ok(decode::<EncAsRepPart>(body)?.0),
        Some(0x7a) => Ok(decode::<EncTgsRepPart>(body)?.0),
        other => Err(reply(format!("enc-part plaintext starts {other:02x?}, not [APPLICATION 25/26]"))),
    }
}

fn creds_from(rep: &KdcRep, part: EncKdcRepPart, nonce: u32) -> Result<Creds, ProtoError> {
    if part.nonce != i64::from(nonce) {
        return Err(reply(format!("nonce {} does not match the request's {nonce}", part.nonce)));
    }
    let etype = Etype::from_number(part.key.r#type)
        .ok_or_else(|| reply(format!("session key etype {} is not one the gateway asked for", part.key.r#type)))?;
    let key = Key::from_bytes(etype, &part.key.value).map_err(|e| reply(format!("session key: {e}")))?;
    let t = |k: &KerberosTime| k.unix_seconds().ok_or_else(|| reply(format!("bad time {:?}", k.as_str())));
    Ok(Creds {
        client: rep.cname.clone(),
        crealm: rep.crealm.to_string_lossy(),
        server: part.sname.clone(),
        srealm: part.srealm.to_string_lossy(),
        ticket_der: encode(&rep.ticket)?,
        ticket: rep.ticket.clone(),
        auth_key: key.usage_key(usage::AP_REQ_AUTH),
        key,
        flags: from_bits(&part.flags),
        authtime: t(&part.authtime)?,
        endtime: t(&part.endtime)?,
        renew_till: part.renew_till.as_ref().and_then(KerberosTime::unix_seconds),
    })
}

/// Reads the AS-REP that answers our AS-REQ: decrypted with the long-term key.
pub fn read_as_rep(rep: &KdcRep, key: &Key, nonce: u32) -> Result<Creds, ProtoError> {
    let part = enc_rep_part(rep, key, usage::AS_REP_ENC_PART)?;
    creds_from(rep, part, nonce)
}

/// Reads a TGS-REP: decrypted with the TGT session key (no subkey is ever sent).
pub fn read_tgs_rep(rep: &KdcRep, tgt: &Creds, nonce: u32) -> Result<Creds, ProtoError> {
    let part = enc_rep_part(rep, &tgt.key, usage::TGS_REP_ENC_PART)?;
    creds_from(rep, part, nonce)
}

/// A TGS-REQ presenting `tgt`: the authenticator carries a keyed checksum of the
/// req-body (usage 6), which the MIT KDC requires (KRB5KRB_AP_ERR_INAPP_CKSUM without it)
/// and no subkey, so that every S4U checksum and the reply use the TGT session key.
fn tgs_req(tgt: &Creds, req_body: KdcReqBody, extra: Vec<PaData>, now: Now) -> Result<Vec<u8>, ProtoError> {
    let body_der = encode(&req_body)?;
    let (ctype, sum) = tgt.key.checksum(usage::TGS_REQ_AUTH_CKSUM, &body_der);
    let auth = Authenticator {
        authenticator_vno: 5,
        crealm: KerberosString::new(&tgt.crealm),
        cname: tgt.client.clone(),
        cksum: Some(Checksum { r#type: ctype, checksum: OctetString::from(sum) }),
        cusec: now.usec,
        ctime: now.kerberos_time()?,
        subkey: None,
        seq_number: None,
        authorization_data: None,
    };
    let enc = tgt.key.encrypt(usage::TGS_REQ_AUTH, &encode(&auth)?).map_err(|_| ProtoError::Random)?;
    let ap = ApReq {
        pvno: 5,
        msg_type: 14,
        ap_options: to_bits(Flags32::empty()),
        ticket: tgt.ticket.clone(),
        authenticator: EncryptedData { etype: tgt.key.etype().number(), kvno: None, cipher: OctetString::from(enc) },
    };
    let mut padata = vec![pa(PA_TGS_REQ, encode(&ap)?)];
    padata.extend(extra);
    Ok(encode(&TgsReq(KdcReq { pvno: 5, msg_type: 12, padata: Some(padata), req_body }))?)
}

/// The user S4U2Self asks for: a UPN is sent as an enterprise name (NT-ENTERPRISE, the
/// whole "alice@lab.test" as one component) for the KDC to resolve.
pub fn user_principal(user: &str) -> PrincipalName {
    if user.contains('@') {
        PrincipalName::new(NT_ENTERPRISE, &[user])
    } else {
        PrincipalName::new(NT_PRINCIPAL, &[user])
    }
}

/// MS-SFU 2.2.1: the bytes PA-FOR-USER's checksum covers.
pub fn s4u_byte_array(user: &PrincipalName, realm: &str, auth_package: &str) -> Vec<u8> {
    let mut b = user.name_type.to_le_bytes().to_vec();
    for c in &user.name_string {
        b.extend_from_slice(c.as_bytes());
    }
    b.extend_from_slice(realm.as_bytes());
    b.extend_from_slice(auth_package.as_bytes());
    b
}

/// S4U2Self (MS-SFU 3.1.5.1.1): a ticket to ourselves in the user's name. Both
/// PA-S4U-X509-USER (which MIT reads) and PA-FOR-USER (which Samba's Heimdal KDC reads)
/// are sent, as MIT's client does.
pub fn s4u2self_req(tgt: &Creds, user: &PrincipalName, user_realm: &str, nonce: u32, now: Now, etypes: &[i32]) -> Result<Vec<u8>, ProtoError> {
    s4u2self_req_to(tgt, &tgt.client, &tgt.crealm, user, user_realm, nonce, now, etypes)
}

/// S4U2Self sent to the KDC of `realm` for the ticket to `server`: our own name in our own
/// realm, or (MS-SFU 3.1.5.1.1.1, MIT's krb5_get_self_cred_from_kdc) our name as an
/// enterprise name when a user realm's KDC is asked and must refer us back home.
#[allow(clippy::too_many_arguments)]
pub fn s4u2self_req_to(
    tgt: &Creds,
    server: &PrincipalName,
    realm: &str,
    user: &PrincipalName,
    user_realm: &str,
    nonce: u32,
    now: Now,
    etypes: &[i32],
) -> Result<Vec<u8>, ProtoError> {
    let id = S4uUserId::new(i64::from(nonce), Some(user.clone()), KerberosString::new(user_realm), None);
    let id_der = encode(&id)?;
    let (ctype, sum) = tgt.key.checksum(usage::PA_S4U_X509_USER, &id_der);
    let x509 = PaS4uX509User { user_id: id, checksum: Checksum { r#type: ctype, checksum: OctetString::from(sum) } };
    let for_user = PaForUser {
        user_name: user.clone(),
        user_realm: KerberosString::new(user_realm),
        cksum: Checksum {
            r#type: CKSUM_HMAC_MD5,
            checksum: OctetString::from(
                hmac_md5_checksum(tgt.key.bytes(), usage::PA_FOR_USER, &s4u_byte_array(user, user_realm, "Kerberos")).to_vec(),
            ),
        },
        auth_package: KerberosString::new("Kerberos"),
    };
    let b = body(base_options(), None, realm, server.clone(), now.secs + 86_400, nonce, etypes)?;
    tgs_req(tgt, b, vec![pa(PA_S4U_X509_USER, encode(&x509)?), pa(PA_FOR_USER, encode(&for_user)?)], now)
}

/// The service account's own name as one enterprise-name component ("svc@LAB.TEST"), the
/// way a foreign realm's KDC can look it up and refer the request to its realm.
pub fn enterprise_self(name: &PrincipalName, realm: &str) -> PrincipalName {
    let joined = format!("{}@{realm}", name.display());
    PrincipalName::new(NT_ENTERPRISE, &[joined.as_str()])
}

/// krbtgt/`to`@`from`: the cross-realm TGT a KDC of `from` issues for a realm it trusts.
pub fn krbtgt(to: &str) -> PrincipalName {
    PrincipalName::new(NT_SRV_INST, &["krbtgt", to])
}

/// The realm a ticket-granting ticket is for: "OTHER.TEST" in krbtgt/OTHER.TEST; None
/// for any other ticket.
pub fn tgt_realm(server: &PrincipalName) -> Option<String> {
    match server.name_string.as_slice() {
        [k, r] if k.to_string_lossy() == "krbtgt" => Some(r.to_string_lossy()),
        _ => None,
    }
}

/// A plain TGS-REQ with `tgt` for `server` in `realm` (the cross-realm TGT of a
/// cross-realm S4U2Self).
pub fn tgs_req_for(tgt: &Creds, server: &PrincipalName, realm: &str, nonce: u32, now: Now, etypes: &[i32]) -> Result<Vec<u8>, ProtoError> {
    let b = body(base_options(), None, realm, server.clone(), now.secs + 86_400, nonce, etypes)?;
    tgs_req(tgt, b, Vec::new(), now)
}

/// Whether `spn` has the form service/host[/...]: no empty part, no space, control
/// character or realm.
pub fn is_spn(spn: &str) -> bool {
    let parts: Vec<&str> = spn.split('/').collect();
    parts.len() >= 2 && parts.iter().all(|p| !p.is_empty() && !p.contains(|c: char| c.is_whitespace() || c.is_control() || c == '@'))
}

/// The service principal of an SPN string ("HTTP/exchange.lab.test").
pub fn spn_principal(spn: &str) -> PrincipalName {
    let parts: Vec<&str> = spn.split('/').collect();
    PrincipalName::new(NT_SRV_INST, &parts)
}

/// S4U2Proxy (MS-SFU 3.1.5.2.1): the S4U2Self ticket as additional ticket,
/// cname-in-addl-tkt, and PA-PAC-OPTIONS with the resource-based delegation bit so that a
/// Windows KDC also tries RBCD.
pub fn s4u2proxy_req(tgt: &Creds, evidence: &Creds, target: &PrincipalName, realm: &str, nonce: u32, now: Now, etypes: &[i32]) -> Result<Vec<u8>, ProtoError> {
    let mut b = body(
        base_options().with(ko::CNAME_IN_ADDL_TKT),
        None,
        realm,
        target.clone(),
        now.secs + 86_400,
        nonce,
        etypes,
    )?;
    b.additional_tickets = Some(vec![evidence.ticket.clone()]);
    let pac_options = PaPacOptions { flags: to_bits(Flags32::empty().with(kcd_krb5::flags::pac_options::RESOURCE_BASED_CONSTRAINED_DELEGATION)) };
    tgs_req(tgt, b, vec![pa(PA_PAC_OPTIONS, encode(&pac_options)?)], now)
}

/// Checks that a S4U reply names the user and not someone else: the ticket's client is
/// the user (canonicalised by the KDC), never the service account itself.
pub fn check_s4u_client(got: &Creds, service: &PrincipalName) -> Result<(), ProtoError> {
    if got.client == *service {
        return Err(reply(format!(
            "the KDC issued the ticket to the service account {} instead of the user",
            service.display()
        )));
    }
    Ok(())
}

fn der_len(out: &mut Vec<u8>, n: usize) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = (n as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// One DER TLV around `parts`.
fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let n: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(n + 6);
    out.push(tag);
    der_len(&mut out, n);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// krb5 mechanism OID 1.2.840.113554.1.2.2, DER.
const KRB5_OID: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];
/// SPNEGO OID 1.3.6.1.5.5.2, DER.
const SPNEGO_OID: &[u8] = &[0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];

/// The GSS flags the token asks for: mutual, confidentiality, integrity (RFC 4121 4.1.1.1).
/// ap-options stay 0: the acceptor may answer with an AP-REP, which HTTP ignores.
pub const GSS_FLAGS: u32 = 0x02 | 0x10 | 0x20;

/// The AP-REQ for the target service, as an RFC 4121 initial context token. Each call
/// makes a fresh authenticator: the caller passes a (ctime, cusec) never used before and
/// a random sequence number, so no replay cache can refuse it.
pub fn krb5_token(svc: &Creds, now: Now, seq: u32) -> Result<Vec<u8>, ProtoError> {
    let mut gss = [0u8; 24];
    gss[0] = 16; // Lgth: the 16-byte channel-binding hash, zero when there are none
    gss[20..24].copy_from_slice(&GSS_FLAGS.to_le_bytes());
    let auth = Authenticator {
        authenticator_vno: 5,
        crealm: KerberosString::new(&svc.crealm),
        cname: svc.client.clone(),
        cksum: Some(Checksum { r#type: GSS_CHECKSUM, checksum: OctetString::from(gss.to_vec()) }),
        cusec: now.usec,
        ctime: now.kerberos_time()?,
        subkey: None,
        seq_number: Some(i64::from(seq)),
        authorization_data: None,
    };
    let enc = svc.auth_key.encrypt(&encode(&auth)?).map_err(|_| ProtoError::Random)?;
    let ed = encode(&EncryptedData { etype: svc.auth_key.etype().number(), kvno: None, cipher: OctetString::from(enc) })?;
    // AP-REQ ::= [APPLICATION 14] SEQUENCE { [0] pvno, [1] msg-type, [2] ap-options,
    // [3] ticket, [4] authenticator }, assembled around the ticket's kept DER.
    const HEAD: &[u8] = &[0xa0, 0x03, 0x02, 0x01, 0x05, 0xa1, 0x03, 0x02, 0x01, 0x0e, 0xa2, 0x07, 0x03, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00];
    let t3 = tlv(0xa3, &[&svc.ticket_der]);
    let t4 = tlv(0xa4, &[&ed]);
    let seq_ = tlv(0x30, &[HEAD, &t3, &t4]);
    let ap = tlv(0x6e, &[&seq_]);
    Ok(tlv(0x60, &[KRB5_OID, &[0x01, 0x00], &ap]))
}

/// RFC 4178 NegTokenInit around a krb5 token, the krb5 OID first in mechTypes: with any
/// other first, MIT's acceptor asks for a mechListMIC and the single HTTP round trip fails.
pub fn spnego_token(krb5_token: &[u8]) -> Vec<u8> {
    let mech_types = tlv(0xa0, &[&tlv(0x30, &[KRB5_OID])]);
    let mech_token = tlv(0xa2, &[&tlv(0x04, &[krb5_token])]);
    let init = tlv(0xa0, &[&tlv(0x30, &[&mech_types, &mech_token])]);
    tlv(0x60, &[SPNEGO_OID, &init])
}

/// The PA-S4U-X509-USER a reply carries, checked (MS-SFU 3.1.5.1.2): same nonce, and a
/// checksum over its S4UUserID in the TGT session key (usage 26, as no reply-key usage
/// was asked). KDCs that do not implement it (Heimdal, old Windows) send none: fine.
pub fn check_s4u_reply_padata(rep: &KdcRep, tgt: &Creds, nonce: u32) -> Result<(), ProtoError> {
    let Some(p) = rep.padata.as_deref().and_then(|p| p.iter().find(|p| p.r#type == PA_S4U_X509_USER)) else {
        return Ok(());
    };
    let x: PaS4uX509User = decode(&p.value)?;
    if x.user_id.nonce != i64::from(nonce) {
        return Err(reply("PA-S4U-X509-USER in the reply has another nonce"));
    }
    let id_der = encode(&x.user_id)?;
    if !tgt.key.verify_checksum(usage::PA_S4U_X509_USER, &id_der, x.checksum.r#type, &x.checksum.checksum) {
        return Err(reply("PA-S4U-X509-USER in the reply fails its checksum"));
    }
    Ok(())
}
