//! The Authorization header: the kind of credential (Basic, NTLM, Negotiate) and, for
//! Kerberos, what its AP-REQ shows, opened with a keytab when one is given.

use base64::Engine as _;
use kcd_krb5::gss::{classify, GssToken, Inner};
use kcd_krb5::view::{BodyView, MessageView};
use kcd_schema::{ApReqSummary, AuthKind, Authorization, EncryptionType, TicketId, Timestamp};

use super::clip;
use crate::keytab::{ApReqUse, Keytab, KeytabStats};

/// The kind of an Authorization credential and, for Kerberos, what its AP-REQ shows. The
/// credential itself goes nowhere.
pub fn authorization(v: &str) -> Authorization {
    authorization_with(v, None)
}

/// As `authorization`, opening a Kerberos ticket and authenticator with the keytab.
pub fn authorization_with(v: &str, keytab: Option<(&Keytab, Timestamp, &mut KeytabStats)>) -> Authorization {
    let (scheme, token) = v.split_once(' ').map_or((v, ""), |(a, b)| (a, b.trim()));
    let mut a = Authorization { kind: AuthKind::Other, scheme: clip(scheme), token_bytes: None, ntlm_message: None, kerberos: None };
    let bytes = base64::engine::general_purpose::STANDARD.decode(token.as_bytes()).ok();
    a.token_bytes = bytes.as_ref().map(|b| u32::try_from(b.len()).unwrap_or(u32::MAX));
    if scheme.eq_ignore_ascii_case("basic") {
        a.kind = AuthKind::Basic;
        return a;
    }
    if !(scheme.eq_ignore_ascii_case("negotiate") || scheme.eq_ignore_ascii_case("ntlm") || scheme.eq_ignore_ascii_case("kerberos")) {
        return a;
    }
    let Some(b) = bytes else { return a };
    match classify(&b) {
        GssToken::Krb5 { ap_req } => {
            a.kind = AuthKind::Kerberos;
            a.kerberos = ap_req_summary(ap_req, keytab);
        }
        GssToken::Spnego { inner } => {
            a.kind = AuthKind::Spnego;
            match inner {
                Some(Inner::Krb5 { ap_req }) => a.kerberos = ap_req_summary(ap_req, keytab),
                Some(Inner::Ntlm { message }) => {
                    a.kind = AuthKind::Ntlm;
                    a.ntlm_message = message;
                }
                _ => {}
            }
        }
        GssToken::Ntlm { message } => {
            a.kind = AuthKind::Ntlm;
            a.ntlm_message = message;
        }
        GssToken::Other => {}
    }
    a
}

fn ap_req_summary(ap: &[u8], keytab: Option<(&Keytab, Timestamp, &mut KeytabStats)>) -> Option<ApReqSummary> {
    let v = MessageView::parse(ap).ok()?;
    let BodyView::ApReq(r) = v.body else { return None };
    let t = r.ticket;
    let decrypted = keytab.map(|(k, ts, stats)| k.ap_req(&r, ApReqUse::Service, ts, stats));
    Some(ApReqSummary {
        key_in_keytab: decrypted.as_ref().map(|d| d.key_in_keytab),
        authenticator_id: r.authenticator.and_then(|a| TicketId::of(a.cipher)).map(|i| i.to_string()),
        decrypted,
        ticket_server: t.and_then(|t| t.sname).map(|n| n.display()),
        realm: t.and_then(|t| t.realm).map(|r| String::from_utf8_lossy(r).into_owned()),
        etype: t.and_then(|t| t.enc_part).map(|e| EncryptionType(e.etype)),
        kvno: t.and_then(|t| t.enc_part).and_then(|e| e.kvno),
        size: u32::try_from(ap.len()).unwrap_or(u32::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_kinds_without_the_credential() {
        let a = authorization("Basic YWxpY2U6c2VjcmV0");
        assert_eq!((a.kind, a.token_bytes), (AuthKind::Basic, Some(12)));
        let a = authorization("NTLM TlRMTVNTUAADAAAA");
        assert_eq!((a.kind, a.ntlm_message), (AuthKind::Ntlm, Some(3)));
        assert_eq!(authorization("Bearer abc.def").kind, AuthKind::Other);
        assert_eq!(authorization("Negotiate !!!").kind, AuthKind::Other);
        let shown = format!("{:?}", authorization("Basic YWxpY2U6c2VjcmV0"));
        assert!(!shown.contains("YWxpY2U6c2VjcmV0") && !shown.contains("secret"));
    }
}
