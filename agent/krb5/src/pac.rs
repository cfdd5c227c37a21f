//! The account name inside a ticket's PAC (MS-PAC 2.10, UPN_DNS_INFO with the SAM name
//! extension). Samba's KDC answers S4U2Self for an enterprise name ("alice@lab.test")
//! without canonicalising it, so the target would see "alice@lab.test@LAB.TEST"; the
//! S4U2Self ticket is encrypted for the service account, whose key the gateway holds, and
//! its PAC names the account ("alice", domain "LAB.TEST"). Untrusted bytes: every offset is
//! checked.

use crate::asn1::{AuthorizationData, EncTicketPart};

const AD_IF_RELEVANT: i32 = 1;
const AD_WIN2K_PAC: i32 = 128;
const PAC_LOGON_INFO: u32 = 1;
const PAC_UPN_DNS_INFO: u32 = 12;
const PAC_CLIENT_INFO: u32 = 10;
/// GroupCount in KERB_VALIDATION_INFO: the headers and referent (20), six FILETIMEs (48),
/// six RPC_UNICODE_STRINGs (48), LogonCount and BadPasswordCount (4), UserId and
/// PrimaryGroupId (8).
const LOGON_INFO_GROUP_COUNT_OFFSET: usize = 16 + 4 + 48 + 48 + 4 + 8;
/// MS-SAMR 2.2.1.12 USER_ACCOUNT codes: "sensitive and cannot be delegated".
const USER_NOT_DELEGATED: u32 = 0x0000_4000;
/// KERB_VALIDATION_INFO (MS-PAC 2.5) in NDR: common and private type headers (16 bytes),
/// the top-level referent (4), then six FILETIMEs (48), six RPC_UNICODE_STRINGs (48),
/// LogonCount and BadPasswordCount (4), UserId, PrimaryGroupId, GroupCount, the GroupIds
/// pointer and UserFlags (20), UserSessionKey (16), LogonServer and LogonDomainName (16),
/// the LogonDomainId pointer (4) and Reserved1 (8): UserAccountControl is next.
const LOGON_INFO_UAC_OFFSET: usize = 16 + 4 + 48 + 48 + 4 + 20 + 16 + 16 + 4 + 8;
const UPN_DNS_FLAG_SAM_NAME_AND_SID: u32 = 2;
/// MS-PAC 2.10: the account has no userPrincipalName; the KDC made one of name@dns-domain.
const UPN_DNS_FLAG_CONSTRUCTED: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacNames {
    pub upn: String,
    pub dns_domain: String,
    /// Present when the KDC writes the extended UPN_DNS_INFO (Windows 2022, Samba 4.15+).
    pub sam_name: Option<String>,
    /// The account has no UPN of its own: `upn` is the KDC's sam-name@dns-domain, which
    /// another account's own UPN may equal.
    pub upn_constructed: bool,
}

/// The PAC's bytes in authorization data, looked for inside AD-IF-RELEVANT.
pub fn pac_bytes(ad: &AuthorizationData) -> Option<Vec<u8>> {
    for e in ad {
        match e.r#type {
            AD_WIN2K_PAC => return Some(e.data.to_vec()),
            AD_IF_RELEVANT => {
                if let Ok(inner) = crate::decode::<AuthorizationData>(&e.data) {
                    if let Some(p) = pac_bytes(&inner) {
                        return Some(p);
                    }
                }
            }
            _ => {}
        }
    }
    None
}

fn u16le(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}
fn u32le(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes([*b.get(at)?, *b.get(at + 1)?, *b.get(at + 2)?, *b.get(at + 3)?]))
}

fn utf16(b: &[u8], off: u16, len: u16) -> Option<String> {
    let s = b.get(off as usize..off as usize + len as usize)?;
    if s.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = s.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    String::from_utf16(&units).ok()
}

/// The buffer of one type in a PAC (PACTYPE: count, version, then 16-byte buffer headers).
fn pac_buffer(pac: &[u8], kind: u32) -> Option<&[u8]> {
    let count = u32le(pac, 0)? as usize;
    if count > 64 {
        return None;
    }
    for i in 0..count {
        let h = 8 + i * 16;
        if u32le(pac, h)? != kind {
            continue;
        }
        let size = u32le(pac, h + 4)? as usize;
        let off = usize::try_from(u64::from(u32le(pac, h + 8)?) | (u64::from(u32le(pac, h + 12)?) << 32)).ok()?;
        return pac.get(off..off.checked_add(size)?);
    }
    None
}

/// The UserAccountControl of the PAC's logon information, when it has one (Windows and
/// Samba KDCs write it; MIT's PACs carry none).
pub fn user_account_control(pac: &[u8]) -> Option<u32> {
    let b = pac_buffer(pac, PAC_LOGON_INFO)?;
    // NDR common header: version 1, little-endian, header length 8.
    if b.get(..4)? != [1, 0x10, 8, 0] {
        return None;
    }
    u32le(b, LOGON_INFO_UAC_OFFSET)
}

/// Whether the ticket's user is marked "sensitive and cannot be delegated", when its PAC
/// says.
pub fn ticket_not_delegated(t: &EncTicketPart) -> Option<bool> {
    let uac = user_account_control(&pac_bytes(t.authorization_data.as_ref()?)?)?;
    Some(uac & USER_NOT_DELEGATED != 0)
}

/// The number of groups (GroupCount) in the PAC's logon information.
pub fn group_count(pac: &[u8]) -> Option<u32> {
    let b = pac_buffer(pac, PAC_LOGON_INFO)?;
    if b.get(..4)? != [1, 0x10, 8, 0] {
        return None;
    }
    u32le(b, LOGON_INFO_GROUP_COUNT_OFFSET)
}

/// The client name of PAC_CLIENT_INFO (MS-PAC 2.7): the logon name the KDC put in the PAC.
pub fn client_info_name(pac: &[u8]) -> Option<String> {
    let b = pac_buffer(pac, PAC_CLIENT_INFO)?;
    utf16(b, 10, u16le(b, 8)?)
}

/// Reads UPN_DNS_INFO from a PAC.
pub fn upn_dns_info(pac: &[u8]) -> Option<PacNames> {
    let b = pac_buffer(pac, PAC_UPN_DNS_INFO)?;
    let upn = utf16(b, u16le(b, 2)?, u16le(b, 0)?)?;
    let dns_domain = utf16(b, u16le(b, 6)?, u16le(b, 4)?)?;
    let flags = u32le(b, 8)?;
    let sam_name = if flags & UPN_DNS_FLAG_SAM_NAME_AND_SID != 0 {
        utf16(b, u16le(b, 14)?, u16le(b, 12)?)
    } else {
        None
    };
    Some(PacNames { upn, dns_domain, sam_name, upn_constructed: flags & UPN_DNS_FLAG_CONSTRUCTED != 0 })
}

/// The names in a decrypted ticket's PAC, if it carries one.
pub fn ticket_names(t: &EncTicketPart) -> Option<PacNames> {
    upn_dns_info(&pac_bytes(t.authorization_data.as_ref()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16le(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
    }

    /// A PAC laid out as MS-PAC 2.4 and 2.10 describe it (one buffer).
    fn pac(flags: u32, sam: &str) -> Vec<u8> {
        let (upn, dom, sam16) = (utf16le("alice@lab.test"), utf16le("LAB.TEST"), utf16le(sam));
        let mut info = vec![0u8; 24];
        let mut tail = Vec::new();
        let mut put = |info: &mut Vec<u8>, at: usize, s: &[u8]| {
            let off = 24 + tail.len();
            info[at..at + 2].copy_from_slice(&(s.len() as u16).to_le_bytes());
            info[at + 2..at + 4].copy_from_slice(&(off as u16).to_le_bytes());
            tail.extend_from_slice(s);
        };
        put(&mut info, 0, &upn);
        put(&mut info, 4, &dom);
        info[8..12].copy_from_slice(&flags.to_le_bytes());
        put(&mut info, 12, &sam16);
        info.extend(tail);
        let mut p = Vec::new();
        p.extend(1u32.to_le_bytes());
        p.extend(0u32.to_le_bytes());
        p.extend(PAC_UPN_DNS_INFO.to_le_bytes());
        p.extend((info.len() as u32).to_le_bytes());
        p.extend(24u64.to_le_bytes());
        p.extend(info);
        p
    }

    #[test]
    fn reads_the_sam_name_when_flagged() {
        let n = upn_dns_info(&pac(2, "alice")).expect("names");
        assert_eq!(n, PacNames { upn: "alice@lab.test".into(), dns_domain: "LAB.TEST".into(), sam_name: Some("alice".into()), upn_constructed: false });
        assert_eq!(upn_dns_info(&pac(0, "alice")).and_then(|n| n.sam_name), None);
        assert_eq!(upn_dns_info(&pac(3, "alice")).map(|n| (n.upn_constructed, n.sam_name)), Some((true, Some("alice".into()))));
    }

    #[test]
    fn truncated_pacs_give_nothing() {
        let p = pac(2, "alice");
        for n in 0..p.len() {
            let _ = upn_dns_info(&p[..n]);
        }
        assert_eq!(upn_dns_info(&p[..40]), None);
    }
}
