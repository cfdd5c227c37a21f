//! The pure message layer, held to independent references: a token made by curl with MIT
//! GSSAPI, a PA-FOR-USER from MIT's kvno -U (both with known keys), and the codec's own
//! decoding of what we build.

use kcd_client::proto::{self, Creds, Now};
use kcd_crypto::{hmac_md5_checksum, Etype, Key};
use kcd_krb5::asn1::{Authenticator, PrincipalName};
use kcd_krb5::flags::Flags32;
use kcd_krb5::{decode, decode_message, encode, KrbMessage};

const SESSION_KEY: &str = "7a734c1a248922c839bf5068ae63d44c8386501090aac41f320fe2336da2864f";

fn curl_token() -> Vec<u8> {
    let hex = include_str!("data/curl-negotiate-token.hex");
    hex::decode(hex.trim()).expect("hex")
}

/// The krb5 token inside curl's SPNEGO wrapper, found by its header.
fn inner(full: &[u8]) -> &[u8] {
    let at = full.windows(4).position(|w| w == [0x60, 0x82, 0x02, 0xdd]).expect("inner token");
    &full[at..]
}

fn ap_req_of(krb5_token: &[u8]) -> kcd_krb5::asn1::ApReq {
    // 60 len, 06 09 <oid>, 01 00, then the AP-REQ.
    let (_, rest) = kcd_krb5::ber::read_tlv(krb5_token).expect("tlv");
    assert!(rest.is_empty());
    let hdr = if krb5_token[1] & 0x80 != 0 { 2 + (krb5_token[1] & 0x7f) as usize } else { 2 };
    let body = &krb5_token[hdr..];
    assert_eq!(&body[..13], &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x01, 0x00]);
    match decode_message(&body[13..]).expect("AP-REQ decodes") {
        KrbMessage::ApReq(a) => a,
        other => panic!("not an AP-REQ: {:?}", other.message_type()),
    }
}

#[test]
fn spnego_wrapper_is_byte_for_byte_what_mit_sends() {
    let full = curl_token();
    assert_eq!(proto::spnego_token(inner(&full)), full);
}

fn curl_creds() -> Creds {
    let full = curl_token();
    let ap = ap_req_of(inner(&full));
    let key = Key::from_bytes(Etype::Aes256CtsHmacSha196, &hex::decode(SESSION_KEY).expect("hex")).expect("key");
    Creds {
        client: PrincipalName::new(1, &["alice"]),
        crealm: "EXAMPLE.COM".into(),
        server: ap.ticket.sname.clone(),
        srealm: "EXAMPLE.COM".into(),
        ticket_der: encode(&ap.ticket).expect("ticket encodes"),
        ticket: ap.ticket,
        auth_key: key.usage_key(11),
        key,
        flags: Flags32(0),
        authtime: 0,
        endtime: 0,
        renew_till: None,
    }
}

#[test]
fn our_ap_req_carries_the_same_ticket_and_an_authenticator_the_session_key_opens() {
    let creds = curl_creds();
    // curl's authenticator opens with the same key: the key and ticket belong together.
    let theirs = ap_req_of(inner(&curl_token()));
    let plain = creds.key.decrypt(11, &theirs.authenticator.cipher).expect("curl's authenticator");
    assert_eq!(plain[0], 0x62);

    let now = Now { secs: 1_795_395_432, usec: 123_456 };
    let tok = proto::krb5_token(&creds, now, 0x1234_5678).expect("token");
    let ap = ap_req_of(&tok);
    assert_eq!(ap.ticket, theirs.ticket);
    assert_eq!((ap.pvno, ap.msg_type), (5, 14));
    assert_eq!(ap.authenticator.etype, 18);
    let plain = creds.key.decrypt(11, &ap.authenticator.cipher).expect("decrypts with usage 11");
    let auth: Authenticator = decode(&plain).expect("authenticator");
    assert_eq!(auth.cname, PrincipalName::new(1, &["alice"]));
    assert_eq!(auth.crealm.as_bytes(), b"EXAMPLE.COM");
    assert_eq!(auth.ctime.as_str(), "20261123005712Z");
    assert_eq!(auth.cusec, 123_456);
    assert_eq!(auth.seq_number, Some(0x1234_5678));
    assert!(auth.subkey.is_none());
    let ck = auth.cksum.expect("0x8003 checksum");
    assert_eq!(ck.r#type, 0x8003);
    // RFC 4121 4.1.1: Lgth 16, no channel bindings, flags mutual|conf|integ.
    let mut want = vec![16, 0, 0, 0];
    want.extend([0u8; 16]);
    want.extend(0x32u32.to_le_bytes());
    assert_eq!(ck.checksum.as_ref(), want.as_slice());

    // Two tokens differ even for the same time (fresh confounder).
    let again = proto::krb5_token(&creds, now, 0x1234_5678).expect("token");
    assert_ne!(again, tok);
}

#[test]
fn pa_for_user_checksum_matches_mit_kvno() {
    // MIT 1.20 `kvno -U alice svc`: the S4UByteArray and the checksum it sent.
    let user = PrincipalName::new(10, &["alice"]);
    let bytes = proto::s4u_byte_array(&user, "EXAMPLE.COM", "Kerberos");
    assert_eq!(hex::encode(&bytes), "0a000000616c6963654558414d504c452e434f4d4b65726265726f73");
    let key = hex::decode("a504fd3159ca72de4a8d64a7553adfe0b6f85a526248789382dff8a46d696d5c").expect("hex");
    assert_eq!(hex::encode(hmac_md5_checksum(&key, 17, &bytes)), "a53b52ffaaef34dae7aa792658232766");
}

#[test]
fn upns_become_enterprise_names() {
    assert_eq!(proto::user_principal("alice@lab.test"), PrincipalName::new(10, &["alice@lab.test"]));
    assert_eq!(proto::user_principal("alice"), PrincipalName::new(1, &["alice"]));
    assert_eq!(proto::spn_principal("HTTP/exchange.lab.test"), PrincipalName::new(2, &["HTTP", "exchange.lab.test"]));
}

#[test]
fn s4u2self_request_decodes_with_the_checksums_a_kdc_verifies() {
    let tgt = curl_creds();
    let user = proto::user_principal("bob@example.com");
    let now = Now { secs: 1_795_395_432, usec: 7 };
    let req = proto::s4u2self_req(&tgt, &user, "EXAMPLE.COM", 4242, now, &[18, 17]).expect("builds");
    let KrbMessage::TgsReq(r) = decode_message(&req).expect("decodes") else { panic!("not a TGS-REQ") };
    let pa = r.padata.expect("padata");
    assert_eq!(pa.iter().map(|p| p.r#type).collect::<Vec<_>>(), [1, 130, 129]);
    // PA-TGS-REQ: the authenticator's checksum covers the req-body as sent.
    let KrbMessage::ApReq(ap) = decode_message(&pa[0].value).expect("AP-REQ") else { panic!() };
    let auth: Authenticator = decode(&tgt.key.decrypt(7, &ap.authenticator.cipher).expect("usage 7")).expect("auth");
    let ck = auth.cksum.expect("req-body checksum");
    assert!(tgt.key.verify_checksum(6, &encode(&r.req_body).expect("body"), ck.r#type, &ck.checksum));
    // PA-S4U-X509-USER: nonce of the body, checksum usage 26 over S4UUserID.
    let x: kcd_krb5::asn1::PaS4uX509User = decode(&pa[1].value).expect("130");
    assert_eq!(x.user_id.nonce, 4242);
    assert_eq!(r.req_body.nonce, 4242);
    assert!(tgt.key.verify_checksum(26, &encode(&x.user_id).expect("id"), x.checksum.r#type, &x.checksum.checksum));
    // PA-FOR-USER: -138 over S4UByteArray, usage 17.
    let f: kcd_krb5::asn1::PaForUser = decode(&pa[2].value).expect("129");
    assert_eq!(f.cksum.r#type, -138);
    let want = hmac_md5_checksum(tgt.key.bytes(), 17, &proto::s4u_byte_array(&user, "EXAMPLE.COM", "Kerberos"));
    assert_eq!(f.cksum.checksum.as_ref(), want.as_slice());
    assert_eq!(r.req_body.sname, Some(tgt.client.clone()));
    assert_eq!(kcd_krb5::flags::from_bits(&r.req_body.kdc_options), Flags32(0x4081_0000));
}

#[test]
fn s4u2proxy_request_has_the_evidence_ticket_and_rbcd_bit() {
    let tgt = curl_creds();
    let target = proto::spn_principal("HTTP/exchange.lab.test");
    let req = proto::s4u2proxy_req(&tgt, &tgt, &target, "EXAMPLE.COM", 9, Now { secs: 1_795_395_432, usec: 0 }, &[18]).expect("builds");
    let KrbMessage::TgsReq(r) = decode_message(&req).expect("decodes") else { panic!("not a TGS-REQ") };
    assert_eq!(kcd_krb5::flags::from_bits(&r.req_body.kdc_options), Flags32(0x4083_0000));
    assert_eq!(r.req_body.additional_tickets.as_deref(), Some(std::slice::from_ref(&tgt.ticket)));
    let pa = r.padata.expect("padata");
    assert_eq!(pa[1].r#type, 167);
    assert_eq!(hex::encode(&pa[1].value), "3009a00703050010000000");
}
