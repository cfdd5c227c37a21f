//! The ActiveSync query: Cmd, User, DeviceId, DeviceType, in the plain form
//! (`?Cmd=Sync&User=alice&DeviceId=..&DeviceType=..`) or the base64-encoded binary form of
//! MS-ASHTTP 2.2.1.1.1.1. DeviceId is the device's key in events.

use base64::Engine as _;
use kcd_schema::{Eas, EasQueryForm};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EasQuery {
    pub cmd: Option<String>,
    pub user: Option<String>,
    pub device_id: Option<String>,
    pub device_type: Option<String>,
    /// The query was the base64 form.
    pub encoded: bool,
}

/// Longest value kept from a query field: events stay small whatever a device sends.
const MAX_FIELD: usize = 128;

impl EasQuery {
    /// Long polls: Exchange holds these up to its maximum heartbeat (3540 s).
    pub fn is_long_poll(&self) -> bool {
        matches!(self.cmd.as_deref(), Some(c) if c.eq_ignore_ascii_case("Ping") || c.eq_ignore_ascii_case("Sync"))
    }
}

/// The `eas` part of an HTTP request's event when the path is ActiveSync's
/// (`/Microsoft-Server-ActiveSync`), with the MS-ASProtocolVersion header's value.
pub(super) fn request(path: &str, query: &str, protocol_version: Option<String>) -> Option<Eas> {
    super::ends_with_ignore_case(path, "/microsoft-server-activesync").then(|| {
        let q = parse(query);
        Eas {
            cmd: q.cmd,
            user: q.user,
            device_id: q.device_id,
            device_type: q.device_type,
            protocol_version,
            query_form: if q.encoded { EasQueryForm::Base64 } else { EasQueryForm::Plain },
        }
    })
}

pub fn parse(query: &str) -> EasQuery {
    // The base64 form has no key=value pairs; it may end in '=' padding.
    let body = query.trim_end_matches('=').trim_end_matches("%3D").trim_end_matches("%3d");
    if !body.is_empty() && !body.contains('=') && !body.contains('&') {
        if let Some(q) = parse_base64(query) {
            return q;
        }
    }
    let mut q = EasQuery::default();
    for pair in query.split('&').take(64) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = Some(clip(&percent_decode(v, true)));
        match k {
            _ if k.eq_ignore_ascii_case("Cmd") => q.cmd = v,
            _ if k.eq_ignore_ascii_case("User") => q.user = v,
            _ if k.eq_ignore_ascii_case("DeviceId") => q.device_id = v,
            _ if k.eq_ignore_ascii_case("DeviceType") => q.device_type = v,
            _ => {}
        }
    }
    q
}

fn clip(s: &str) -> String {
    let mut end = s.len().min(MAX_FIELD);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(x) => {
                        out.push(x);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

const COMMANDS: &[(u8, &str)] = &[
    (0, "Sync"),
    (1, "SendMail"),
    (2, "SmartForward"),
    (3, "SmartReply"),
    (4, "GetAttachment"),
    (9, "FolderSync"),
    (10, "FolderCreate"),
    (11, "FolderDelete"),
    (12, "FolderUpdate"),
    (13, "MoveItems"),
    (14, "GetItemEstimate"),
    (15, "MeetingResponse"),
    (16, "Search"),
    (17, "Settings"),
    (18, "Ping"),
    (19, "ItemOperations"),
    (20, "Provision"),
    (21, "ResolveRecipients"),
    (22, "ValidateCert"),
];

/// The command parameter tag of User (MS-ASHTTP 2.2.1.1.1.1.3).
const PARAM_USER: u8 = 8;

/// Protocol version, command code, locale (2), DeviceId (length-prefixed), PolicyKey
/// (length-prefixed), DeviceType (length-prefixed), then tag-length-value parameters.
fn parse_base64(query: &str) -> Option<EasQuery> {
    let decoded = percent_decode(query, false);
    let raw = base64::engine::general_purpose::STANDARD.decode(decoded.trim()).ok()?;
    let mut r = Reader(&raw);
    let _version = r.u8()?;
    let cmd = r.u8()?;
    r.take(2)?;
    let device_id = r.lv()?;
    r.lv()?;
    let device_type = r.lv()?;
    let mut q = EasQuery {
        cmd: Some(COMMANDS.iter().find(|(c, _)| *c == cmd).map(|(_, n)| n.to_string()).unwrap_or_else(|| format!("cmd-{cmd}"))),
        device_id: Some(printable(device_id)),
        device_type: Some(clip(&String::from_utf8_lossy(device_type))),
        encoded: true,
        ..Default::default()
    };
    while !r.0.is_empty() {
        let tag = r.u8()?;
        let v = r.lv()?;
        if tag == PARAM_USER {
            q.user = Some(clip(&String::from_utf8_lossy(v)));
        }
    }
    Some(q)
}

/// DeviceIds of the base64 form are bytes; printable ones read as text, others as hex.
fn printable(b: &[u8]) -> String {
    if !b.is_empty() && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c)) {
        clip(&String::from_utf8_lossy(b))
    } else {
        clip(&kcd_cert::hex_upper(b))
    }
}

struct Reader<'a>(&'a [u8]);
impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn lv(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_query() {
        let q = parse("Cmd=Ping&User=alice%40lab.test&DeviceId=ApplDNQXYZ123&DeviceType=iPhone");
        assert_eq!(q.cmd.as_deref(), Some("Ping"));
        assert_eq!(q.user.as_deref(), Some("alice@lab.test"));
        assert_eq!(q.device_id.as_deref(), Some("ApplDNQXYZ123"));
        assert_eq!(q.device_type.as_deref(), Some("iPhone"));
        assert!(q.is_long_poll() && !q.encoded);
        assert_eq!(parse("cmd=FolderSync").cmd.as_deref(), Some("FolderSync"));
        assert!(!parse("Cmd=FolderSync").is_long_poll());
        assert_eq!(parse(""), EasQuery::default());
        // Broken escapes and long values stay harmless.
        let q = parse(&format!("User=%zz%4&DeviceId={}", "x".repeat(5000)));
        assert_eq!(q.user.as_deref(), Some("%zz%4"));
        assert_eq!(q.device_id.map(|d| d.len()), Some(MAX_FIELD));
    }

    #[test]
    fn base64_query_of_ms_ashttp() {
        // Version 14.1 (141), Sync (0), locale en-US (0x0409 little-endian), DeviceId of 16
        // bytes, a 4-byte policy key, DeviceType "SmartPhone", User parameter "alice".
        let mut b = vec![141u8, 0, 0x09, 0x04, 16];
        b.extend((0u8..16).map(|i| i * 17));
        b.extend([4, 1, 2, 3, 4]);
        b.push(10);
        b.extend(b"SmartPhone");
        b.extend([PARAM_USER, 5]);
        b.extend(b"alice");
        b.extend([7, 1, 0x08]); // Options: AcceptMultiPart
        let s = base64::engine::general_purpose::STANDARD.encode(&b);
        let q = parse(&s);
        assert!(q.encoded);
        assert_eq!(q.cmd.as_deref(), Some("Sync"));
        assert_eq!(q.user.as_deref(), Some("alice"));
        assert_eq!(q.device_type.as_deref(), Some("SmartPhone"));
        assert_eq!(q.device_id.as_deref(), Some("00112233445566778899AABBCCDDEEFF"));
        // Ping by code, percent-encoded base64 as some clients send it.
        let mut p = vec![141u8, 18, 0x09, 0x04, 3];
        p.extend(b"abc");
        p.extend([0, 3]);
        p.extend(b"iOS");
        let s = base64::engine::general_purpose::STANDARD.encode(&p).replace('=', "%3D").replace('+', "%2B");
        assert_eq!(parse(&s).cmd.as_deref(), Some("Ping"));
        // Truncated: read as a plain query, never a panic.
        for n in 0..b.len() {
            let s = base64::engine::general_purpose::STANDARD.encode(&b[..n]);
            let _ = parse(&s);
        }
    }
}
