//! One Kerberos message (view) to its event body. Protocol numbers stay numbers (the event
//! is typed); only names, realms and texts are strings, borrowed from the packet.

use std::borrow::Cow;

use kcd_krb5::edata::{parse_e_data, EDataInfo};
use kcd_krb5::view::{
    parse_pac_options, BodyView, EncView, ForUserView, KdcRepView, KdcReqView, KrbErrorView,
    MessageView, NameView, S4uX509UserView, TicketView,
};
use kcd_krb5::{EncryptionType, ErrorCode, NameType, PaDataType};
use kcd_schema::{
    EData, EncInfo, Flags32, ForUser, KdcOptions, Krb5, KrbErrorInfo, NtStatusInfo, PacOptions,
    Principal, S4uOptions, S4uX509User, SaltInfo, TicketId, TicketInfo, Timestamp,
};

pub use kcd_schema::text_from_bytes as text;

pub fn principal(n: NameView<'_>) -> Principal<'_> {
    Principal {
        parts: n.components().map(text).collect(),
        name_type: NameType(n.name_type),
    }
}

fn enc_info(e: EncView<'_>) -> EncInfo {
    EncInfo {
        etype: EncryptionType(e.etype),
        kvno: e.kvno,
    }
}

fn ticket_info(t: TicketView<'_>) -> TicketInfo<'_> {
    TicketInfo {
        id: t.enc_part.and_then(|e| TicketId::of(e.cipher)),
        realm: t.realm.map(text),
        sname: t.sname.map(principal),
        enc_part: t.enc_part.map(enc_info),
    }
}

fn kdc_req<'a>(k: &mut Krb5<'a>, r: &KdcReqView<'a>) {
    k.realm = r.realm.map(text);
    k.cname = r.cname.map(principal);
    k.sname = r.sname.map(principal);
    k.kdc_options = KdcOptions(Flags32(r.kdc_options.unwrap_or(0)));
    k.etypes.extend(r.etypes().map(EncryptionType));
    k.nonce = r.nonce;
    k.from = kdc_time(r.from, None);
    k.till = kdc_time(r.till, None);
    k.rtime = kdc_time(r.rtime, None);
    for pa in r.padata.iter() {
        k.padata.push(PaDataType(pa.padata_type));
        match PaDataType(pa.padata_type) {
            PaDataType::PA_FOR_USER => {
                let v = ForUserView::parse(pa.value);
                k.for_user = Some(ForUser {
                    user: v.user_name.map(principal),
                    realm: v.user_realm.map(text),
                    auth_package: v.auth_package.map(text),
                });
                if k.malformed.is_none() {
                    k.malformed = v.malformed.map(|m| Cow::Owned(m.to_string()));
                }
            }
            PaDataType::PA_S4U_X509_USER => {
                let v = S4uX509UserView::parse(pa.value);
                k.s4u_x509_user = Some(S4uX509User {
                    user: v.cname.map(principal),
                    realm: v.crealm.map(text),
                    has_certificate: v.has_certificate,
                    options: S4uOptions(Flags32(v.options.unwrap_or(0))),
                });
                if k.malformed.is_none() {
                    k.malformed = v.malformed.map(|m| Cow::Owned(m.to_string()));
                }
            }
            PaDataType::PA_PAC_OPTIONS => {
                k.pac_options = PacOptions(Flags32(parse_pac_options(pa.value).unwrap_or(0)));
            }
            PaDataType::PA_FX_FAST => k.armored = true,
            _ => {}
        }
    }
    k.additional_tickets
        .extend(r.additional_tickets().map(ticket_info));
}

fn kdc_rep<'a>(k: &mut Krb5<'a>, r: &KdcRepView<'a>) {
    k.crealm = r.crealm.map(text);
    k.cname = r.cname.map(principal);
    if let Some(t) = r.ticket {
        k.realm = t.realm.map(text);
        k.sname = t.sname.map(principal);
        k.ticket = Some(ticket_info(t));
    }
    k.enc_part = r.enc_part.map(enc_info);
    k.padata
        .extend(r.padata.iter().map(|p| PaDataType(p.padata_type)));
}

/// KerberosTime + microseconds as a timestamp.
fn kdc_time(t: Option<&[u8]>, usec: Option<i64>) -> Option<Timestamp> {
    let raw = t?;
    let secs = kcd_krb5::kerberos_time_to_unix(raw)?;
    let usec = usec.filter(|u| (0..1_000_000).contains(u)).unwrap_or(0);
    Some(Timestamp::from_parts(secs, (usec * 1000) as u32))
}

fn e_data<'a>(info: &EDataInfo<'a>) -> EData<'a> {
    EData {
        format: info.format,
        padata: info.padata_types.iter().map(|t| PaDataType(*t)).collect(),
        ntstatus: info.ntstatus.map(|x| NtStatusInfo(x.status)),
        etype_info2: info
            .etype_info2
            .iter()
            .map(|s| SaltInfo {
                etype: EncryptionType(s.etype),
                salt: s.salt.map(text),
            })
            .collect(),
        data_type: info.data_type,
    }
}

fn krb_error<'a>(k: &mut Krb5<'a>, e: &KrbErrorView<'a>, captured: Timestamp) {
    k.realm = e.realm.map(text);
    k.sname = e.sname.map(principal);
    k.crealm = e.crealm.map(text);
    k.cname = e.cname.map(principal);
    let stime = kdc_time(e.stime, e.susec);
    let info = e.e_data.map(parse_e_data);
    if info.as_ref().is_some_and(|i| i.fast_armored) {
        k.armored = true;
    }
    k.error = Some(KrbErrorInfo {
        code: ErrorCode(e.error_code.unwrap_or(-1)),
        stime,
        ctime: kdc_time(e.ctime, e.cusec),
        e_text: e.e_text.map(text),
        e_data: info.as_ref().map(e_data),
        skew_seconds: stime.map(|s| ((s.0 - captured.0) / 1000) as f64 / 1e6),
    });
}

/// Fills `k` (a fresh `Krb5::default()`) in place: the event is large, and moving it
/// costs more than building it.
pub fn krb5_event<'a>(v: &MessageView<'a>, captured: Timestamp, k: &mut Krb5<'a>) {
    k.msg_type = v.kind;
    match &v.body {
        BodyView::KdcReq(r) => kdc_req(k, r),
        BodyView::KdcRep(r) => kdc_rep(k, r),
        BodyView::Error(e) => krb_error(k, e, captured),
        BodyView::ApReq(a) => {
            if let Some(t) = a.ticket {
                k.realm = t.realm.map(text);
                k.sname = t.sname.map(principal);
                k.ticket = Some(ticket_info(t));
            }
            k.enc_part = a.authenticator.map(enc_info);
        }
        BodyView::ApRep { enc_part } => k.enc_part = enc_part.map(enc_info),
        BodyView::None => {}
    }
    if let Some(m) = v.malformed {
        k.malformed = Some(Cow::Owned(m.to_string()));
    }
}
