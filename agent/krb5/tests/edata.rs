//! e-data in its three shapes. Expected values come from tshark's decode of the same
//! captured bytes, and for the Windows and Samba shapes from the encoders' source
//! (Samba source4/kdc/hdb-samba4.c and wdc-samba4.c: NTSTATUS, 0, flags, little endian).

use kcd_krb5::edata::{parse_e_data, EDataFormat};
use kcd_krb5::view::{BodyView, MessageView};
use kcd_krb5::{NtStatus, PaDataType};

fn e_data_of(msg: &[u8]) -> Vec<u8> {
    let v = MessageView::parse(msg).expect("a Kerberos message");
    let BodyView::Error(e) = v.body else {
        panic!("not a KRB-ERROR")
    };
    e.e_data.expect("has e-data").to_vec()
}

#[test]
fn mit_preauth_required_lists_methods_and_the_aes_salt() {
    // tshark: padata 136, 19 (ETYPE-INFO2: etype 18, salt "LAB.TESTalice"), 2, 133
    let e = e_data_of(include_bytes!("../assets/krb-error-preauth-required.bin"));
    let info = parse_e_data(&e);
    assert_eq!(info.format, EDataFormat::MethodData);
    assert_eq!(info.padata_types, [136, 19, 2, 133]);
    assert_eq!(info.etype_info2.len(), 1);
    assert_eq!(info.etype_info2[0].etype, 18);
    assert_eq!(info.etype_info2[0].salt, Some(&b"LAB.TESTalice"[..]));
    // An empty PA-FX-FAST in PREAUTH_REQUIRED only advertises FAST; nothing is encrypted.
    assert!(!info.fast_armored);
    assert_eq!(info.ntstatus, None);
}

#[test]
fn fast_armored_error_is_flagged_not_misread() {
    // The S4U2Proxy BADOPTION answering a FAST-armored TGS-REQ: e-data holds PA-FX-FAST with
    // the encrypted KrbFastResponse (tshark 4.0 reports "BER Error: Wrong field in SEQUENCE").
    let e = e_data_of(include_bytes!("../assets/krb-error-badoption-fast.bin"));
    let info = parse_e_data(&e);
    assert_eq!(info.format, EDataFormat::MethodData);
    assert_eq!(info.padata_types, [PaDataType::PA_FX_FAST.0]);
    assert!(info.fast_armored);
}

#[test]
fn windows_kerb_error_data_carries_the_ntstatus() {
    let e = [
        0x30, 0x15, 0xA1, 0x03, 0x02, 0x01, 0x03, 0xA2, 0x0E, 0x04, 0x0C, 0xBB, 0x00, 0x00, 0xC0,
        0, 0, 0, 0, 0x03, 0, 0, 0,
    ];
    let info = parse_e_data(&e);
    assert_eq!(info.format, EDataFormat::KerbErrorData);
    let ext = info.ntstatus.expect("NTSTATUS");
    assert_eq!(ext.status, NtStatus::STATUS_NOT_SUPPORTED);
    assert_eq!(ext.flags, 3, "flags 3 = answer to a TGS-REQ");
    assert_eq!(ext.status.hex(), "0xC00000BB");
    // Skew recovery: data-type 2, no value.
    let info = parse_e_data(&[0x30, 0x05, 0xA1, 0x03, 0x02, 0x01, 0x02]);
    assert_eq!(
        (info.format, info.data_type, info.ntstatus),
        (EDataFormat::KerbErrorData, Some(2), None)
    );
}

#[test]
fn samba_method_data_pw_salt_carries_the_ntstatus_but_a_real_salt_does_not() {
    let e = [
        0x30, 0x17, 0x30, 0x15, 0xA1, 0x03, 0x02, 0x01, 0x03, 0xA2, 0x0E, 0x04, 0x0C, 0x72, 0x00,
        0x00, 0xC0, 0, 0, 0, 0, 0x01, 0, 0, 0,
    ];
    let info = parse_e_data(&e);
    assert_eq!(info.format, EDataFormat::MethodData);
    assert_eq!(
        info.ntstatus.map(|x| x.status),
        Some(NtStatus::STATUS_ACCOUNT_DISABLED)
    );
    let mut salt = e;
    salt[13..25].copy_from_slice(b"LAB.TESTalic");
    assert_eq!(parse_e_data(&salt).ntstatus, None);
}

#[test]
fn garbage_is_unknown_not_an_error() {
    for e in [
        &[][..],
        &[0x04, 0x00],
        &[0x30, 0x80],
        &[0x30, 0x03, 0x02, 0x01],
    ] {
        assert_eq!(parse_e_data(e).format, EDataFormat::Unknown, "{e:02x?}");
    }
}
