//! Generators for codec values and the field-by-field comparison of the typed decode (rasn)
//! with the borrowed view.

#![allow(dead_code)]

use kcd_krb5::asn1::*;
use kcd_krb5::flags::Flags32;
use kcd_krb5::view::{BodyView, EncView, MessageView, NameView, TicketView};
use kcd_krb5::KrbMessage;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use rasn::types::OctetString;

pub fn kstring() -> impl Strategy<Value = KerberosString> {
    vec(any::<u8>(), 0..12).prop_map(|b| KerberosString(OctetString::from(b)))
}

pub fn ktime() -> impl Strategy<Value = KerberosTime> {
    (0i64..253_402_300_799).prop_map(|s| KerberosTime::from_unix(s).expect("in range"))
}

pub fn name() -> impl Strategy<Value = PrincipalName> {
    (any::<i32>(), vec(kstring(), 0..4)).prop_map(|(name_type, name_string)| PrincipalName {
        name_type,
        name_string,
    })
}

pub fn uint32ish() -> impl Strategy<Value = i64> {
    prop_oneof![Just(-1i64), 0..=i64::from(u32::MAX)]
}

pub fn enc() -> impl Strategy<Value = EncryptedData> {
    (
        any::<i32>(),
        option::of(uint32ish()),
        vec(any::<u8>(), 0..64),
    )
        .prop_map(|(etype, kvno, c)| EncryptedData {
            etype,
            kvno,
            cipher: OctetString::from(c),
        })
}

pub fn ticket() -> impl Strategy<Value = Ticket> {
    (kstring(), name(), enc()).prop_map(|(realm, sname, enc_part)| Ticket {
        tkt_vno: 5,
        realm,
        sname,
        enc_part,
    })
}

pub fn padata() -> impl Strategy<Value = PaData> {
    (any::<i32>(), vec(any::<u8>(), 0..40)).prop_map(|(t, v)| PaData {
        r#type: t,
        value: OctetString::from(v),
    })
}

pub fn flags() -> impl Strategy<Value = KerberosFlags> {
    any::<u32>().prop_map(|f| kcd_krb5::flags::to_bits(Flags32(f)))
}

pub fn kdc_req() -> impl Strategy<Value = KdcReq> {
    let body = (
        (flags(), option::of(name()), kstring(), option::of(name())),
        (
            option::of(ktime()),
            ktime(),
            option::of(ktime()),
            uint32ish(),
        ),
        (
            vec(any::<i32>(), 0..6),
            any::<bool>(),
            option::of(enc()),
            option::of(vec(ticket(), 0..3)),
        ),
    )
        .prop_map(
            |(
                (kdc_options, cname, realm, sname),
                (from, till, rtime, nonce),
                (etype, addr, ead, at),
            )| KdcReqBody {
                kdc_options,
                cname,
                realm,
                sname,
                from,
                till,
                rtime,
                nonce,
                etype,
                addresses: addr.then(|| {
                    vec![HostAddress {
                        addr_type: 2,
                        address: OctetString::from_static(&[127, 0, 0, 1]),
                    }]
                }),
                enc_authorization_data: ead,
                additional_tickets: at,
            },
        );
    (
        prop_oneof![Just(10), Just(12)],
        option::of(vec(padata(), 0..12)),
        body,
    )
        .prop_map(|(msg_type, padata, req_body)| KdcReq {
            pvno: 5,
            msg_type,
            padata,
            req_body,
        })
}

pub fn kdc_rep() -> impl Strategy<Value = KdcRep> {
    (
        prop_oneof![Just(11), Just(13)],
        option::of(vec(padata(), 0..12)),
        kstring(),
        name(),
        ticket(),
        enc(),
    )
        .prop_map(
            |(msg_type, padata, crealm, cname, ticket, enc_part)| KdcRep {
                pvno: 5,
                msg_type,
                padata,
                crealm,
                cname,
                ticket,
                enc_part,
            },
        )
}

pub fn krb_error() -> impl Strategy<Value = KrbError> {
    (
        (
            option::of(ktime()),
            option::of(0i32..1_000_000),
            ktime(),
            0i32..1_000_000,
            any::<i32>(),
        ),
        (option::of(kstring()), option::of(name()), kstring(), name()),
        (option::of(kstring()), option::of(vec(any::<u8>(), 0..40))),
    )
        .prop_map(
            |(
                (ctime, cusec, stime, susec, error_code),
                (crealm, cname, realm, sname),
                (e_text, e_data),
            )| KrbError {
                pvno: 5,
                msg_type: 30,
                ctime,
                cusec,
                stime,
                susec,
                error_code,
                crealm,
                cname,
                realm,
                sname,
                e_text,
                e_data: e_data.map(OctetString::from),
            },
        )
}

pub fn message() -> impl Strategy<Value = KrbMessage> {
    prop_oneof![
        kdc_req().prop_map(|r| if r.msg_type == 10 {
            KrbMessage::AsReq(r)
        } else {
            KrbMessage::TgsReq(r)
        }),
        kdc_rep().prop_map(|r| if r.msg_type == 11 {
            KrbMessage::AsRep(r)
        } else {
            KrbMessage::TgsRep(r)
        }),
        krb_error().prop_map(KrbMessage::Error),
    ]
}

fn same_name(label: &str, typed: &PrincipalName, view: Option<NameView<'_>>) {
    let v = view.unwrap_or_else(|| panic!("{label}: view lost the name"));
    assert_eq!(v.name_type, typed.name_type, "{label}: name-type");
    let comps: Vec<&[u8]> = v.components().collect();
    let want: Vec<&[u8]> = typed.name_string.iter().map(|s| s.as_bytes()).collect();
    assert_eq!(comps, want, "{label}: name-string");
}

fn same_opt_name(label: &str, typed: &Option<PrincipalName>, view: Option<NameView<'_>>) {
    match typed {
        Some(t) => same_name(label, t, view),
        None => assert!(view.is_none(), "{label}: view invented a name"),
    }
}

fn same_enc(label: &str, typed: &EncryptedData, view: Option<EncView<'_>>) {
    let v = view.unwrap_or_else(|| panic!("{label}: view lost EncryptedData"));
    assert_eq!(
        (v.etype, v.kvno, v.cipher),
        (typed.etype, typed.kvno, &typed.cipher[..]),
        "{label}"
    );
}

fn same_ticket(label: &str, typed: &Ticket, view: Option<TicketView<'_>>) {
    let v = view.unwrap_or_else(|| panic!("{label}: view lost the ticket"));
    assert_eq!(
        v.tkt_vno,
        Some(i64::from(typed.tkt_vno)),
        "{label}: tkt-vno"
    );
    assert_eq!(v.realm, Some(typed.realm.as_bytes()), "{label}: realm");
    same_name(label, &typed.sname, v.sname);
    same_enc(label, &typed.enc_part, v.enc_part);
}

fn same_time(label: &str, typed: &Option<KerberosTime>, view: Option<&[u8]>) {
    assert_eq!(typed.as_ref().map(|t| &t.0[..]), view, "{label}");
}

fn same_padata(label: &str, typed: &Option<Vec<PaData>>, view: &kcd_krb5::view::PaList<'_>) {
    let got: Vec<(i32, &[u8])> = view.iter().map(|p| (p.padata_type, p.value)).collect();
    let want: Vec<(i32, &[u8])> = typed
        .iter()
        .flatten()
        .map(|p| (p.r#type, &p.value[..]))
        .collect();
    assert_eq!(got, want, "{label}: padata");
}

/// Every field the view reports must equal the typed decode's.
pub fn assert_view_matches(label: &str, typed: &KrbMessage, view: &MessageView<'_>) {
    assert_eq!(
        view.malformed, None,
        "{label}: view found a problem in a message rasn accepts"
    );
    assert_eq!(view.kind, typed.message_type(), "{label}: kind");
    let (pvno, mt) = typed.header_fields();
    assert_eq!(
        (view.pvno, view.msg_type),
        (Some(i64::from(pvno)), Some(i64::from(mt))),
        "{label}: pvno/msg-type"
    );
    match (typed, &view.body) {
        (KrbMessage::AsReq(r) | KrbMessage::TgsReq(r), BodyView::KdcReq(v)) => {
            same_padata(label, &r.padata, &v.padata);
            let b = &r.req_body;
            assert_eq!(
                v.kdc_options,
                Some(kcd_krb5::flags::from_bits(&b.kdc_options).0),
                "{label}: kdc-options"
            );
            same_opt_name(&format!("{label} cname"), &b.cname, v.cname);
            assert_eq!(v.realm, Some(b.realm.as_bytes()), "{label}: realm");
            same_opt_name(&format!("{label} sname"), &b.sname, v.sname);
            same_time(&format!("{label} from"), &b.from, v.from);
            same_time(&format!("{label} till"), &Some(b.till.clone()), v.till);
            same_time(&format!("{label} rtime"), &b.rtime, v.rtime);
            assert_eq!(v.nonce, Some(b.nonce), "{label}: nonce");
            assert_eq!(v.etypes().collect::<Vec<_>>(), b.etype, "{label}: etypes");
            assert_eq!(v.has_addresses, b.addresses.is_some(), "{label}: addresses");
            assert_eq!(
                v.has_enc_authorization_data,
                b.enc_authorization_data.is_some(),
                "{label}: enc-authorization-data"
            );
            let tickets: Vec<_> = v.additional_tickets().collect();
            let want = b.additional_tickets.clone().unwrap_or_default();
            assert_eq!(tickets.len(), want.len(), "{label}: additional tickets");
            for (t, w) in tickets.into_iter().zip(&want) {
                same_ticket(&format!("{label} additional ticket"), w, Some(t));
            }
        }
        (KrbMessage::AsRep(r) | KrbMessage::TgsRep(r), BodyView::KdcRep(v)) => {
            same_padata(label, &r.padata, &v.padata);
            assert_eq!(v.crealm, Some(r.crealm.as_bytes()), "{label}: crealm");
            same_name(&format!("{label} cname"), &r.cname, v.cname);
            same_ticket(&format!("{label} ticket"), &r.ticket, v.ticket);
            same_enc(&format!("{label} enc-part"), &r.enc_part, v.enc_part);
        }
        (KrbMessage::Error(e), BodyView::Error(v)) => {
            same_time(&format!("{label} ctime"), &e.ctime, v.ctime);
            assert_eq!(v.cusec, e.cusec.map(i64::from), "{label}: cusec");
            same_time(&format!("{label} stime"), &Some(e.stime.clone()), v.stime);
            assert_eq!(v.susec, Some(i64::from(e.susec)), "{label}: susec");
            assert_eq!(v.error_code, Some(e.error_code), "{label}: error-code");
            assert_eq!(
                v.crealm,
                e.crealm.as_ref().map(|r| r.as_bytes()),
                "{label}: crealm"
            );
            same_opt_name(&format!("{label} cname"), &e.cname, v.cname);
            assert_eq!(v.realm, Some(e.realm.as_bytes()), "{label}: realm");
            same_name(&format!("{label} sname"), &e.sname, v.sname);
            assert_eq!(
                v.e_text,
                e.e_text.as_ref().map(|t| t.as_bytes()),
                "{label}: e-text"
            );
            assert_eq!(v.e_data, e.e_data.as_deref(), "{label}: e-data");
        }
        (t, v) => panic!("{label}: typed {:?} but view {v:?}", t.message_type()),
    }
}
