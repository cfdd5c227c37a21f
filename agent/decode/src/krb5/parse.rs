//! One Kerberos message (view) to its event body.

use std::borrow::Cow;

use kcd_krb5::edata::{parse_e_data, EDataInfo};
use kcd_krb5::flags::{kdc_options, pac_options, s4u_options, Flags32};
use kcd_krb5::view::{
    parse_pac_options, BodyView, EncView, ForUserView, KdcRepView, KdcReqView, KrbErrorView,
    MessageView, NameView, S4uX509UserView, TicketView,
};
use kcd_krb5::{EncryptionType, ErrorCode, MessageType, NameType, PaDataType};
use kcd_schema::{
    EData, EncInfo, ForUser, Krb5, KrbErrorInfo, NtStatusInfo, Principal, S4uX509User, SaltInfo,
    SmallVec, Str, TicketInfo, Timestamp,
};

pub fn text(b: &[u8]) -> Str<'_> {
    // from_utf8 validates in bulk; the lossy path is only for names that are not UTF-8.
    match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(String::from_utf8_lossy(b).into_owned()),
    }
}

fn numbered(prefix: &str, n: i64) -> Str<'static> {
    Cow::Owned(format!("{prefix}-{n}"))
}

pub fn msg_type_name(t: MessageType) -> Str<'static> {
    t.name()
        .map(Cow::Borrowed)
        .unwrap_or_else(|| numbered("msg-type", i64::from(t.0)))
}

pub fn etype_name(e: i32) -> Str<'static> {
    EncryptionType(e)
        .name()
        .map(Cow::Borrowed)
        .unwrap_or_else(|| numbered("etype", i64::from(e)))
}

pub fn padata_name(t: i32) -> Str<'static> {
    PaDataType(t)
        .name()
        .map(Cow::Borrowed)
        .unwrap_or_else(|| numbered("padata", i64::from(t)))
}

pub fn error_name(code: i32) -> Str<'static> {
    ErrorCode(code)
        .name()
        .map(Cow::Borrowed)
        .unwrap_or_else(|| numbered("error", i64::from(code)))
}

fn name_type(t: i32) -> Str<'static> {
    NameType(t)
        .name()
        .map(Cow::Borrowed)
        .unwrap_or_else(|| numbered("name-type", i64::from(t)))
}

fn flag_names<'x, const N: usize>(
    v: u32,
    table: &'static [(u8, &'static str)],
) -> SmallVec<[Str<'x>; N]> {
    let f = Flags32(v);
    let mut out = SmallVec::new();
    f.for_each_name(table, |n| out.push(Cow::Borrowed(n)));
    out.extend(
        f.unnamed_bits(table)
            .into_iter()
            .map(|b| numbered("bit", i64::from(b))),
    );
    out
}

pub fn principal(n: NameView<'_>) -> Principal<'_> {
    Principal {
        parts: n.components().map(text).collect(),
        name_type: name_type(n.name_type),
    }
}

fn enc_info(e: EncView<'_>) -> EncInfo<'static> {
    EncInfo {
        etype: etype_name(e.etype),
        kvno: e.kvno,
    }
}

fn ticket_info(t: TicketView<'_>) -> TicketInfo<'_> {
    TicketInfo {
        realm: t.realm.map(text),
        sname: t.sname.map(principal),
        enc_part: t.enc_part.map(enc_info),
    }
}

fn kdc_req<'a>(k: &mut Krb5<'a>, r: &KdcReqView<'a>) {
    k.realm = r.realm.map(text);
    k.cname = r.cname.map(principal);
    k.sname = r.sname.map(principal);
    k.kdc_options = r
        .kdc_options
        .map(|o| flag_names(o, kdc_options::NAMES))
        .unwrap_or_default();
    k.etypes
        .extend(r.etypes().map(|e| -> Str<'a> { etype_name(e) }));
    k.nonce = r.nonce;
    for pa in r.padata.iter() {
        k.padata.push(padata_name(pa.padata_type));
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
                    options: v
                        .options
                        .map(|o| flag_names(o, s4u_options::NAMES))
                        .unwrap_or_default(),
                });
                if k.malformed.is_none() {
                    k.malformed = v.malformed.map(|m| Cow::Owned(m.to_string()));
                }
            }
            PaDataType::PA_PAC_OPTIONS => {
                k.pac_options = parse_pac_options(pa.value)
                    .map(|o| flag_names(o, pac_options::NAMES))
                    .unwrap_or_default();
            }
            PaDataType::PA_FX_FAST => k.armored = true,
            _ => {}
        }
    }
    k.additional_tickets = r.additional_tickets().map(ticket_info).collect();
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
    k.padata = r
        .padata
        .iter()
        .map(|p| padata_name(p.padata_type))
        .collect();
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
        format: Cow::Borrowed(info.format.name()),
        padata: info.padata_types.iter().map(|t| padata_name(*t)).collect(),
        ntstatus: info.ntstatus.map(|x| NtStatusInfo {
            code: Cow::Owned(x.status.hex()),
            name: x.status.name().map(Cow::Borrowed),
        }),
        etype_info2: info
            .etype_info2
            .iter()
            .map(|s| SaltInfo {
                etype: etype_name(s.etype),
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
    let code = e.error_code.unwrap_or(-1);
    k.error = Some(KrbErrorInfo {
        code,
        name: error_name(code),
        stime,
        ctime: kdc_time(e.ctime, e.cusec),
        e_text: e.e_text.map(text),
        e_data: info.as_ref().map(e_data),
        skew_seconds: stime.map(|s| ((s.0 - captured.0) / 1000) as f64 / 1e6),
    });
}

/// The event body for one message. `captured` is the packet's capture time (for skew).
/// Fills `k` (a fresh `Krb5::default()`) in place: the event is large, and moving it
/// costs more than building it.
pub fn krb5_event<'a>(v: &MessageView<'a>, captured: Timestamp, k: &mut Krb5<'a>) {
    k.msg_type = msg_type_name(v.kind);
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
