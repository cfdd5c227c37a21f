//! A CRL fetch: the CRL distribution point asked, and what came back (the list's issuer,
//! dates and number, or why it could not be read).

use kcd_schema::{Crl, CrlProblem, Timestamp};

use super::Tx;

pub(super) fn crl_event(tx: &Tx, parsed: Option<crate::x509::CrlFacts>, at: Timestamp) -> Crl {
    let h = &tx.http;
    let url = match &h.hostname {
        Some(host) if h.url.starts_with('/') => format!("http://{host}{}", h.url),
        _ => h.url.clone(),
    };
    let mut c = Crl { url, ..Crl::default() };
    let status = h.status.unwrap_or(0);
    if status >= 400 {
        let path = h.url.split('?').next().unwrap_or("");
        let name = path.rsplit('/').next().unwrap_or("");
        c.problems.push(if status == 404 && (name.contains('+') || name.to_ascii_lowercase().contains("%2b")) {
            CrlProblem::NotFoundPlusName
        } else {
            CrlProblem::HttpError
        });
        return c;
    }
    match parsed {
        Some(Some(p)) => {
            let now = at.secs();
            c.issuer = Some(p.issuer);
            c.this_update = Some(crate::x509::rfc3339(p.this_update));
            c.next_update = p.next_update.map(crate::x509::rfc3339);
            c.crl_number = p.number.map(|n| format!("{n:02X}"));
            c.delta = p.delta_base.is_some();
            c.base_crl_number = p.delta_base.map(|n| format!("{n:02X}"));
            c.revoked_count = Some(p.revoked);
            if p.next_update.is_some_and(|n| n < now) {
                c.problems.push(CrlProblem::ExpiredAtCapture);
            }
            if p.this_update > now {
                c.problems.push(CrlProblem::NotYetValidAtCapture);
            }
        }
        // No body to read: a HEAD, a 304, or no response at all.
        _ if status == 0 || h.length == Some(0) || h.http_method.eq_ignore_ascii_case("HEAD") => {}
        _ => c.problems.push(CrlProblem::Unparseable),
    }
    c
}
