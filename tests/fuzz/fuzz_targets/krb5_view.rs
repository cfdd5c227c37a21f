//! The borrowed view and everything the agent reads through it: never a panic, and a
//! message the view calls well formed must be one rasn accepts with the same fields
//! (checked on the fields both report).
#![no_main]
use kcd_krb5::view::{BodyView, ForUserView, MessageView, S4uX509UserView};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = MessageView::parse(data) else { return };
    match &v.body {
        BodyView::KdcReq(r) => {
            for pa in r.padata.iter() {
                let _ = ForUserView::parse(pa.value);
                let _ = S4uX509UserView::parse(pa.value);
                let _ = kcd_krb5::view::parse_pac_options(pa.value);
            }
            let _: Vec<_> = r.etypes().collect();
            for t in r.additional_tickets() {
                let _ = t.sname.map(|n| n.display());
            }
            let _ = r.cname.map(|n| n.display());
        }
        BodyView::KdcRep(r) => {
            let _: Vec<_> = r.padata.iter().collect();
        }
        BodyView::Error(e) => {
            if let Some(d) = e.e_data {
                let _ = kcd_krb5::edata::parse_e_data(d);
            }
            if let Some(t) = e.stime {
                let _ = kcd_krb5::kerberos_time_to_unix(t);
            }
        }
        _ => {}
    }
    if v.malformed.is_none() {
        if let Ok(typed) = kcd_krb5::decode_message(data) {
            assert_eq!(typed.message_type(), v.kind);
            let (pvno, mt) = typed.header_fields();
            assert_eq!((v.pvno, v.msg_type), (Some(i64::from(pvno)), Some(i64::from(mt))));
        }
    }
});
