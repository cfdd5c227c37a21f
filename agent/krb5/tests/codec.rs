//! The codec on real messages (assets/ were cut from captures/ with tshark), round trips,
//! and the cases where rasn-kerberos 0.30 is wrong for us.

mod common;

use kcd_krb5::asn1::*;
use kcd_krb5::flags::{kdc_options, to_bits, Flags32};
use kcd_krb5::view::MessageView;
use kcd_krb5::{decode_message, KrbMessage};
use rasn::types::OctetString;

pub const ASSETS: &[(&str, &[u8])] = &[
    ("as-req", include_bytes!("../assets/as-req.bin")),
    (
        "as-req-enc-timestamp",
        include_bytes!("../assets/as-req-enc-timestamp.bin"),
    ),
    (
        "as-req-enterprise",
        include_bytes!("../assets/as-req-enterprise.bin"),
    ),
    ("as-rep", include_bytes!("../assets/as-rep.bin")),
    ("tgs-req-fast", include_bytes!("../assets/tgs-req-fast.bin")),
    (
        "tgs-req-s4u2self",
        include_bytes!("../assets/tgs-req-s4u2self.bin"),
    ),
    (
        "tgs-req-s4u2proxy",
        include_bytes!("../assets/tgs-req-s4u2proxy.bin"),
    ),
    ("tgs-rep", include_bytes!("../assets/tgs-rep.bin")),
    (
        "tgs-rep-s4u2self",
        include_bytes!("../assets/tgs-rep-s4u2self.bin"),
    ),
    (
        "tgs-rep-s4u2proxy",
        include_bytes!("../assets/tgs-rep-s4u2proxy.bin"),
    ),
    (
        "krb-error-preauth-required",
        include_bytes!("../assets/krb-error-preauth-required.bin"),
    ),
    (
        "krb-error-preauth-failed",
        include_bytes!("../assets/krb-error-preauth-failed.bin"),
    ),
    (
        "krb-error-c-principal-unknown",
        include_bytes!("../assets/krb-error-c-principal-unknown.bin"),
    ),
    (
        "krb-error-s-principal-unknown",
        include_bytes!("../assets/krb-error-s-principal-unknown.bin"),
    ),
    (
        "krb-error-response-too-big",
        include_bytes!("../assets/krb-error-response-too-big.bin"),
    ),
    (
        "krb-error-skew",
        include_bytes!("../assets/krb-error-skew.bin"),
    ),
    (
        "krb-error-badoption-fast",
        include_bytes!("../assets/krb-error-badoption-fast.bin"),
    ),
    (
        "krb-error-generic-no-preauth",
        include_bytes!("../assets/krb-error-generic-no-preauth.bin"),
    ),
];

#[test]
fn every_asset_decodes_and_reencodes_to_the_same_bytes() {
    for (name, bytes) in ASSETS {
        let msg = decode_message(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let again = msg.encode().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            &again[..],
            *bytes,
            "{name}: DER re-encoding differs from the wire bytes"
        );
    }
}

#[test]
fn the_view_reads_every_asset_as_rasn_does() {
    for (name, bytes) in ASSETS {
        let typed = decode_message(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let view = MessageView::parse(bytes).unwrap_or_else(|_| panic!("{name}: view refused it"));
        common::assert_view_matches(name, &typed, &view);
    }
}

// rasn-kerberos 0.30 rejects GeneralString bytes 0x80..=0xA0, i.e. much of UTF-8 ("ł" is C5 82).
#[test]
fn non_ascii_names_decode() {
    let pn = PrincipalName::new(1, &["łukasz", "zoë"]);
    let der = rasn::der::encode(&pn).expect("encodes");
    assert!(
        rasn::der::decode::<rasn_kerberos::PrincipalName>(&der).is_err(),
        "rasn-kerberos now accepts it: revisit asn1.rs"
    );
    let back: PrincipalName = rasn::der::decode(&der).expect("ours decodes");
    assert_eq!(back.display(), "łukasz/zoë");
}

// rasn-kerberos decodes kvno as u32; Windows and others send -1 in some places.
#[test]
fn negative_kvno_decodes() {
    let e = EncryptedData {
        etype: 18,
        kvno: Some(-1),
        cipher: OctetString::from_static(b"x"),
    };
    let der = rasn::der::encode(&e).expect("encodes");
    assert_eq!(
        &der[..],
        &[
            0x30, 0x0f, 0xa0, 0x03, 0x02, 0x01, 0x12, 0xa1, 0x03, 0x02, 0x01, 0xff, 0xa2, 0x03,
            0x04, 0x01, b'x'
        ][..]
    );
    assert!(
        rasn::der::decode::<rasn_kerberos::EncryptedData>(&der).is_err(),
        "rasn-kerberos now accepts it: revisit asn1.rs"
    );
    assert_eq!(rasn::der::decode::<EncryptedData>(&der).expect("ours"), e);
    let max = EncryptedData {
        kvno: Some(i64::from(u32::MAX)),
        ..e
    };
    let der = rasn::der::encode(&max).expect("encodes");
    assert_eq!(rasn::der::decode::<EncryptedData>(&der).expect("ours"), max);
}

// RFC 4120 5.4.1: forwardable is bit 1, renewable 8, canonicalize 15, cname-in-addl-tkt 14
// (MS-SFU 2.2.3); bit 0 is the most significant bit of the first octet.
#[test]
fn kdc_options_bits_are_those_of_the_rfc() {
    let f = Flags32::empty()
        .with(kdc_options::FORWARDABLE)
        .with(kdc_options::RENEWABLE)
        .with(kdc_options::CNAME_IN_ADDL_TKT)
        .with(kdc_options::CANONICALIZE);
    let der = rasn::der::encode(&to_bits(f)).expect("encodes");
    assert_eq!(der, [0x03, 0x05, 0x00, 0x40, 0x83, 0x00, 0x00]);
    // rasn-kerberos's helper puts "forwardable" into bit 7 of a one-octet string.
    let theirs = rasn::der::encode(&rasn_kerberos::KdcOptions::forwardable()).expect("encodes");
    assert_ne!(
        theirs,
        rasn::der::encode(&to_bits(Flags32::empty().with(kdc_options::FORWARDABLE)))
            .expect("encodes")
    );
    // MIT's real S4U2Proxy request sets cname-in-addl-tkt and forwardable.
    let proxy = include_bytes!("../assets/tgs-req-s4u2proxy.bin");
    let KrbMessage::TgsReq(req) = decode_message(proxy).expect("decodes") else {
        panic!("not a TGS-REQ")
    };
    let opts = kcd_krb5::flags::from_bits(&req.req_body.kdc_options);
    assert!(
        opts.has(kdc_options::CNAME_IN_ADDL_TKT) && opts.has(kdc_options::FORWARDABLE),
        "{opts:?}"
    );
}

// RFC 4120 5.2.3: KerberosTime has no fractional seconds; rasn's GeneralizedTime writes them.
#[test]
fn kerberos_time_never_has_fractions() {
    let t = KerberosTime::from_unix(1_795_395_432).expect("in range");
    let der = rasn::der::encode(&t).expect("encodes");
    assert_eq!(&der[..], b"\x18\x0f20261123005712Z");
    let with_nanos = rasn::types::GeneralizedTime::from(
        chrono::DateTime::from_timestamp(1_795_395_432, 500_000_000)
            .expect("valid")
            .fixed_offset(),
    );
    let theirs = rasn::der::encode(&rasn_kerberos::KerberosTime(with_nanos)).expect("encodes");
    assert_ne!(
        theirs.len(),
        der.len(),
        "rasn now drops fractions: revisit asn1.rs"
    );
}
