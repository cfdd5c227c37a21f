//! Tickets and authenticators opened with a keytab (`--keytab`): keytab bytes in, facts out.
//!
//! The decisive fact is whether any key of the keytab decrypts the ticket: a ticket for
//! Exchange in a key Exchange lacks is a duplicate SPN or an undeployed Alternate Service
//! Account credential, which no other 401 looks like. The keys are tried by etype (and kvno
//! when the ticket names one), whatever principal they belong to: the SPN
//! `HTTP/exchange.lab.test` is an alias of the account `EXCHANGE$` whose keys the keytab
//! holds. The cryptography is kcd-crypto's; keys, session keys and plaintexts are zeroed on
//! drop and never shown.

use kcd_crypto::keytab::{self, KeytabEntry, KeytabError};
use kcd_crypto::{Etype, Key};
use kcd_krb5::asn1::{Authenticator, EncTicketPart, PrincipalName};
use kcd_krb5::view::{ApReqView, EncView, TicketView};
use kcd_schema::{DecryptedTicket, PacFacts, Timestamp};
use zeroize::Zeroizing;

/// RFC 4120 7.5.1 key usages.
const USAGE_TICKET: u32 = 2;
const USAGE_TGS_REQ_AUTHENTICATOR: u32 = 7;
const USAGE_AP_REQ_AUTHENTICATOR: u32 = 11;

/// Which authenticator key usage an AP-REQ's context calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApReqUse {
    /// In a TGS-REQ's PA-TGS-REQ.
    TgsReq,
    /// To a service (HTTP Negotiate, or an AP-REQ of its own).
    Service,
}

/// The keys of a keytab file. Debug names principals, kvnos and etypes only.
pub struct Keytab {
    entries: Vec<KeytabEntry>,
}

impl std::fmt::Debug for Keytab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keytab({} keys, redacted)", self.entries.len())
    }
}

/// Counts of what the keytab did, for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeytabStats {
    pub tickets_decrypted: u64,
    /// Tickets no key of the keytab opens (none of its etype and kvno, or integrity
    /// failures with every candidate).
    pub tickets_not_in_keytab: u64,
    /// Decrypted but not an EncTicketPart / Authenticator, or an authenticator that does
    /// not open with the ticket's session key.
    pub decode_failures: u64,
}

impl Keytab {
    pub fn parse(file: &[u8]) -> Result<Self, KeytabError> {
        Ok(Self { entries: keytab::parse(file)? })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Opens a ticket: the facts, the session key (for the authenticator) and whether it
    /// was opened at all.
    fn open_ticket(&self, t: &TicketView<'_>, captured: Timestamp, out: &mut DecryptedTicket) -> Option<(EncTicketPart, Key)> {
        let Some(enc) = t.enc_part else {
            out.error = Some("the ticket has no enc-part".into());
            return None;
        };
        let Some(etype) = Etype::from_number(enc.etype) else {
            out.error = Some(format!("etype {} is not one kcdscope decrypts (17, 18, 23)", enc.etype));
            return None;
        };
        let mut tried = Vec::new();
        for e in self.candidates(enc, etype) {
            let Ok(key) = Key::from_bytes(etype, &e.key) else { continue };
            tried.push(name_of(e));
            let Ok(plain) = key.decrypt(USAGE_TICKET, enc.cipher).map(Zeroizing::new) else { continue };
            out.key_in_keytab = true;
            out.key_principal = Some(format!("{} (kvno {}, etype {})", name_of(e), e.kvno, e.etype));
            let Some(part) = outer(&plain).and_then(|b| kcd_krb5::decode::<EncTicketPart>(b).ok()) else {
                out.error = Some("the ticket decrypts but is not an EncTicketPart".into());
                return None;
            };
            ticket_facts(&part, captured, out);
            let session = Etype::from_number(part.key.r#type).and_then(|et| Key::from_bytes(et, &part.key.value).ok());
            let Some(session) = session else {
                out.error = Some(format!("the ticket's session key is etype {}", part.key.r#type));
                return None;
            };
            return Some((part, session));
        }
        out.error = Some(if tried.is_empty() {
            match enc.kvno {
                Some(k) => format!("the keytab holds no key of etype {} and kvno {k}", enc.etype),
                None => format!("the keytab holds no key of etype {}", enc.etype),
            }
        } else {
            tried.dedup();
            format!("no key of etype {} decrypts the ticket (tried {})", enc.etype, tried.join(", "))
        });
        None
    }

    /// Keys of the ticket's etype and (when it says) kvno, those of the ticket's own
    /// principal first.
    fn candidates<'s>(&'s self, enc: EncView<'_>, etype: Etype) -> impl Iterator<Item = &'s KeytabEntry> + 's {
        let kvno = enc.kvno.and_then(|k| u32::try_from(k).ok());
        let n = etype.number();
        self.entries.iter().filter(move |e| e.etype == n && kvno.is_none_or(|k| e.kvno == k || e.kvno % 256 == k % 256))
    }

    /// A ticket alone (a TGS-REP's, an additional ticket).
    pub fn ticket(&self, t: &TicketView<'_>, captured: Timestamp, stats: &mut KeytabStats) -> DecryptedTicket {
        let mut out = DecryptedTicket::default();
        match self.open_ticket(t, captured, &mut out) {
            Some(_) => stats.tickets_decrypted += 1,
            None if out.key_in_keytab => stats.decode_failures += 1,
            None => stats.tickets_not_in_keytab += 1,
        }
        out
    }

    /// An AP-REQ: its ticket, then its authenticator with the ticket's session key.
    pub fn ap_req(&self, ap: &ApReqView<'_>, use_: ApReqUse, captured: Timestamp, stats: &mut KeytabStats) -> DecryptedTicket {
        let mut out = DecryptedTicket::default();
        let Some(t) = ap.ticket else {
            out.error = Some("the AP-REQ has no ticket".into());
            stats.decode_failures += 1;
            return out;
        };
        let Some((_, session)) = self.open_ticket(&t, captured, &mut out) else {
            if out.key_in_keytab {
                stats.decode_failures += 1;
            } else {
                stats.tickets_not_in_keytab += 1;
            }
            return out;
        };
        stats.tickets_decrypted += 1;
        let usage = match use_ {
            ApReqUse::TgsReq => USAGE_TGS_REQ_AUTHENTICATOR,
            ApReqUse::Service => USAGE_AP_REQ_AUTHENTICATOR,
        };
        let auth = ap
            .authenticator
            .and_then(|a| session.decrypt(usage, a.cipher).ok().map(Zeroizing::new))
            .and_then(|p| outer(&p).and_then(|b| kcd_krb5::decode::<Authenticator>(b).ok()));
        let Some(a) = auth else {
            out.error = Some("the authenticator does not decrypt with the ticket's session key".into());
            stats.decode_failures += 1;
            return out;
        };
        out.authenticator_client = Some(principal(&a.cname, a.crealm.as_bytes()));
        let usec = i64::from(a.cusec).clamp(0, 999_999);
        if let Some(s) = kcd_krb5::kerberos_time_to_unix(&a.ctime.0) {
            let t = Timestamp::from_parts(s, (usec * 1000) as u32);
            out.authenticator_time = Some(t);
            out.clock_skew_seconds = Some(t.micros_since(captured) / 1_000_000);
        }
        out
    }
}

fn name_of(e: &KeytabEntry) -> String {
    format!("{}@{}", e.components.join("/"), e.realm)
}

/// The plaintext's outer DER value: some implementations pad after it.
fn outer(plain: &[u8]) -> Option<&[u8]> {
    let (_, rest) = kcd_krb5::ber::read_tlv(plain).ok()?;
    plain.get(..plain.len() - rest.len())
}

/// A principal as MIT's krb5_unparse_name writes it (what klist and mod_auth_gssapi's
/// REMOTE_USER show): '/', '@' and '\' inside a component escaped.
pub fn principal(n: &PrincipalName, realm: &[u8]) -> String {
    let mut s = String::new();
    for (i, c) in n.name_string.iter().enumerate() {
        if i > 0 {
            s.push('/');
        }
        for ch in String::from_utf8_lossy(c.as_bytes()).chars() {
            if matches!(ch, '/' | '@' | '\\') {
                s.push('\\');
            }
            s.push(ch);
        }
    }
    s.push('@');
    s.push_str(&String::from_utf8_lossy(realm));
    s
}

fn ticket_facts(p: &EncTicketPart, captured: Timestamp, out: &mut DecryptedTicket) {
    out.client = Some(principal(&p.cname, p.crealm.as_bytes()));
    let time = |t: &kcd_krb5::asn1::KerberosTime| kcd_krb5::kerberos_time_to_unix(&t.0).map(|s| Timestamp::from_parts(s, 0));
    out.authtime = time(&p.authtime);
    out.endtime = time(&p.endtime);
    out.expired = out.endtime.map(|e| e < captured);
    let pac = p.authorization_data.as_ref().and_then(kcd_krb5::pac::pac_bytes);
    out.pac = pac.map(|b| {
        let names = kcd_krb5::pac::upn_dns_info(&b);
        PacFacts {
            size: u32::try_from(b.len()).unwrap_or(u32::MAX),
            logon_name: kcd_krb5::pac::client_info_name(&b),
            upn: names.as_ref().map(|n| n.upn.clone()),
            dns_domain: names.as_ref().map(|n| n.dns_domain.clone()),
            sam_name: names.and_then(|n| n.sam_name),
            group_count: kcd_krb5::pac::group_count(&b),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use kcd_krb5::view::{BodyView, MessageView};

    const KEYTAB: &[u8] = include_bytes!("../../../captures/krb5/samba-lab/domain.keytab");

    /// The AP-REQ of ok_http_krb5_http.pcap's request (a raw krb5 GSS token), as tshark
    /// extracted the header (`-T fields -e http.authorization`).
    fn ap_req() -> Vec<u8> {
        use base64::Engine as _;
        let b64 = include_str!("../assets/ok_http_krb5_authorization.b64").trim();
        let tok = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
        let start = tok.iter().position(|&b| b == 0x6e).expect("AP-REQ");
        tok[start..].to_vec()
    }

    #[test]
    fn debug_shows_no_key() {
        let k = Keytab::parse(KEYTAB).expect("keytab");
        let shown = format!("{k:?}");
        assert!(!shown.is_empty() && shown.contains("redacted"));
        for e in &k.entries {
            let hex: String = e.key.iter().take(6).map(|b| format!("{b:02x}")).collect();
            assert!(!shown.contains(&hex) && !format!("{e:?}").contains(&hex));
        }
    }

    /// Every byte of the AP-REQ changed in turn, and every truncation: counted, never a
    /// panic, and a changed ciphertext never opens (the integrity check).
    #[test]
    fn damaged_ap_reqs_are_counted_not_fatal() {
        let k = Keytab::parse(KEYTAB).expect("keytab");
        let ap = ap_req();
        let open = |b: &[u8], stats: &mut KeytabStats| {
            let v = MessageView::parse(b).ok()?;
            let BodyView::ApReq(a) = v.body else { return None };
            Some(k.ap_req(&a, ApReqUse::Service, Timestamp(0), stats))
        };
        let mut stats = KeytabStats::default();
        let good = open(&ap, &mut stats).expect("opens");
        assert_eq!(good.client.as_deref(), Some("alice@LAB.TEST"));
        assert!(good.error.is_none());
        let mut stats = KeytabStats::default();
        let mut opened = 0;
        for i in 0..ap.len() {
            let mut b = ap.clone();
            b[i] ^= 0x41;
            if let Some(d) = open(&b, &mut stats) {
                if d.client.is_some() && d.authenticator_client.is_some() {
                    opened += 1;
                }
            }
            let _ = open(&ap[..i], &mut stats);
        }
        // Only changes outside the two ciphertexts (tags of fields nobody checks, the
        // sname) can leave both readable.
        assert!(opened < ap.len() / 4, "{opened} of {}", ap.len());
        assert!(stats.tickets_not_in_keytab + stats.decode_failures > 0);
    }
}
