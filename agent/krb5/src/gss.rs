//! The GSS-API framing around a Kerberos AP-REQ in HTTP's `Authorization: Negotiate`
//! (RFC 4559): a raw krb5 initial context token (RFC 4121 4.1), or SPNEGO (RFC 4178)
//! carrying one, or NTLMSSP. Read only as far as telling which and finding the AP-REQ;
//! nothing secret is decoded here (the ticket and authenticator stay encrypted).

use crate::ber::{self, Class, Tlv};

/// krb5 mechanism OID 1.2.840.113554.1.2.2 (contents of the OID TLV).
const KRB5_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];
/// Microsoft's legacy krb5 OID 1.2.840.48018.1.2.2.
const MS_KRB5_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x82, 0xf7, 0x12, 0x01, 0x02, 0x02];
/// SPNEGO 1.3.6.1.5.5.2.
const SPNEGO_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
const NTLMSSP: &[u8] = b"NTLMSSP\0";

/// What a Negotiate token holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GssToken<'a> {
    /// A krb5 initial context token: its AP-REQ (token id 01 00).
    Krb5 { ap_req: &'a [u8] },
    /// SPNEGO, with the inner mechanism token's kind when it has one.
    Spnego { inner: Option<Inner<'a>> },
    /// NTLMSSP and its message type (1 negotiate, 2 challenge, 3 authenticate).
    Ntlm { message: Option<u8> },
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inner<'a> {
    Krb5 { ap_req: &'a [u8] },
    Ntlm { message: Option<u8> },
    Other,
}

fn ntlm_type(b: &[u8]) -> Option<u8> {
    b.get(8).copied()
}

/// The AP-REQ of an RFC 4121 initial context token ([APPLICATION 0] { OID krb5, 01 00, AP-REQ }).
fn krb5_initial(t: &[u8]) -> Option<&[u8]> {
    let (app, _) = ber::read_tlv(t).ok()?;
    if app.class != Class::Application || app.tag != 0 {
        return None;
    }
    let (oid, rest) = ber::read_tlv(app.value).ok()?;
    if !(oid.tag == 6 && (oid.value == KRB5_OID || oid.value == MS_KRB5_OID)) {
        return None;
    }
    match rest {
        [0x01, 0x00, ap @ ..] => Some(ap),
        _ => None,
    }
}

fn inner(mech: &[u8]) -> Inner<'_> {
    if mech.starts_with(NTLMSSP) {
        return Inner::Ntlm { message: ntlm_type(mech) };
    }
    match krb5_initial(mech) {
        Some(ap_req) => Inner::Krb5 { ap_req },
        // A bare AP-REQ ([APPLICATION 14]) also occurs.
        None if mech.first() == Some(&0x6e) => Inner::Krb5 { ap_req: mech },
        None => Inner::Other,
    }
}

/// The mechToken ([2]) of a NegTokenInit ([0]) or the responseToken ([2]) of a
/// NegTokenResp ([1]).
fn spnego_mech<'a>(choice: &Tlv<'a>) -> Option<&'a [u8]> {
    let (seq, _) = ber::read_tlv(choice.value).ok()?;
    ber::children(seq.value)
        .find(|f| f.class == Class::Context && f.tag == 2)
        .and_then(|f| ber::read_tlv(f.value).ok())
        .filter(|(o, _)| o.tag == 4)
        .map(|(o, _)| o.value)
}

pub fn classify(token: &[u8]) -> GssToken<'_> {
    if token.starts_with(NTLMSSP) {
        return GssToken::Ntlm { message: ntlm_type(token) };
    }
    if let Some(ap_req) = krb5_initial(token) {
        return GssToken::Krb5 { ap_req };
    }
    let Ok((outer, _)) = ber::read_tlv(token) else { return GssToken::Other };
    match (outer.class, outer.tag) {
        // InitialContextToken with the SPNEGO OID, then NegotiationToken.
        (Class::Application, 0) => {
            let Ok((oid, rest)) = ber::read_tlv(outer.value) else { return GssToken::Other };
            if oid.tag != 6 || oid.value != SPNEGO_OID {
                return GssToken::Other;
            }
            let inner_tok = ber::read_tlv(rest).ok().and_then(|(c, _)| spnego_mech(&c));
            GssToken::Spnego { inner: inner_tok.map(inner) }
        }
        // A bare NegTokenResp (later legs).
        (Class::Context, 1) => GssToken::Spnego { inner: spnego_mech(&outer).map(inner) },
        _ => GssToken::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_the_kinds_apart_and_never_panics() {
        let mut ap = vec![0x6e, 0x03, 0x30, 0x01, 0x00];
        // krb5 initial context token: 60 len 06 09 OID 01 00 AP-REQ
        let mut k = vec![0x06, 0x09];
        k.extend_from_slice(KRB5_OID);
        k.extend_from_slice(&[0x01, 0x00]);
        k.append(&mut ap.clone());
        let mut tok = vec![0x60, k.len() as u8];
        tok.extend_from_slice(&k);
        assert_eq!(classify(&tok), GssToken::Krb5 { ap_req: &ap });
        // SPNEGO NegTokenInit with that token as mechToken.
        let mut mt = vec![0x04, tok.len() as u8];
        mt.extend_from_slice(&tok);
        let mut f2 = vec![0xa2, mt.len() as u8];
        f2.extend_from_slice(&mt);
        let mut seq = vec![0x30, f2.len() as u8];
        seq.extend_from_slice(&f2);
        let mut ch = vec![0xa0, seq.len() as u8];
        ch.extend_from_slice(&seq);
        let mut body = vec![0x06, 0x06];
        body.extend_from_slice(SPNEGO_OID);
        body.extend_from_slice(&ch);
        let mut sp = vec![0x60, body.len() as u8];
        sp.extend_from_slice(&body);
        assert_eq!(classify(&sp), GssToken::Spnego { inner: Some(Inner::Krb5 { ap_req: &ap }) });
        assert_eq!(classify(b"NTLMSSP\0\x03\0\0\0"), GssToken::Ntlm { message: Some(3) });
        assert_eq!(classify(b""), GssToken::Other);
        for n in 0..sp.len() {
            let _ = classify(&sp[..n]);
        }
        ap.clear();
    }
}
