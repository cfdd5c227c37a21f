//! MIT's FILE keytab, version 0x0502 (doc/formats/keytab_file_format.rst), as ktutil,
//! kadmin ktadd and `samba-tool domain exportkeytab` write it. The file is untrusted input:
//! every length is checked against what remains. (The keytab crates found are AGPL.)

use zeroize::Zeroizing;

#[derive(Clone)]
pub struct KeytabEntry {
    pub realm: String,
    pub components: Vec<String>,
    pub name_type: u32,
    pub kvno: u32,
    pub etype: i32,
    pub key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for KeytabEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KeytabEntry({}@{}, kvno {}, etype {}, key redacted)",
            self.components.join("/"),
            self.realm,
            self.kvno,
            self.etype
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeytabError {
    #[error("not a keytab (version {0:#06x}; only 0x0502 is read)")]
    Version(u16),
    #[error("record at byte {0} is truncated")]
    Truncated(usize),
    #[error("record at byte {0}: a name is not UTF-8")]
    Utf8(usize),
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn data(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
}

pub fn parse(file: &[u8]) -> Result<Vec<KeytabEntry>, KeytabError> {
    let mut r = Reader { b: file, at: 0 };
    let version = r.u16().ok_or(KeytabError::Version(0))?;
    if version != 0x0502 {
        return Err(KeytabError::Version(version));
    }
    let mut out = Vec::new();
    while r.at < file.len() {
        let start = r.at;
        let Some(len) = r.u32().map(|v| v as i32) else { break };
        if len == 0 {
            break;
        }
        if len < 0 {
            // A hole left by a deleted entry.
            r.take(len.unsigned_abs() as usize).ok_or(KeytabError::Truncated(start))?;
            continue;
        }
        let rec = r.take(len as usize).ok_or(KeytabError::Truncated(start))?;
        out.push(record(rec, start)?);
    }
    Ok(out)
}

fn record(rec: &[u8], start: usize) -> Result<KeytabEntry, KeytabError> {
    let t = KeytabError::Truncated(start);
    let utf8 = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| KeytabError::Utf8(start));
    let mut r = Reader { b: rec, at: 0 };
    let n = r.u16().ok_or(t.clone())?;
    let realm = utf8(r.data().ok_or(t.clone())?)?;
    let mut components = Vec::with_capacity(n.min(8) as usize);
    for _ in 0..n {
        components.push(utf8(r.data().ok_or(t.clone())?)?);
    }
    let name_type = r.u32().ok_or(t.clone())?;
    let _timestamp = r.u32().ok_or(t.clone())?;
    let kvno8 = r.u8().ok_or(t.clone())?;
    let etype = i32::from(r.u16().ok_or(t.clone())?);
    let key = Zeroizing::new(r.data().ok_or(t.clone())?.to_vec());
    // The 32-bit kvno follows when at least 4 bytes remain; zero means "use kvno8".
    let kvno = match r.u32() {
        Some(k) if k != 0 => k,
        _ => u32::from(kvno8),
    };
    Ok(KeytabEntry { realm, components, name_type, kvno, etype, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MIT 1.20 `kadmin ktadd` of svc@EXAMPLE.COM (password "svcpass", a throwaway realm).
    const REAL: &str = "0502000000450001000b4558414d504c452e434f4d0003737663000000016b0391ab010012002063e50388bf42a04fd73d5538ecc155b2b3f2ae634f83479f5954cd175a1b0da100000001000000350001000b4558414d504c452e434f4d0003737663000000016b0391ab0100110010f84743423517ebd379b10763f1c688ae00000001000000350001000b4558414d504c452e434f4d0003737663000000016b0391ab01001700107463d44ac3a5213e61b7b0422ac474b000000001";

    #[test]
    fn reads_a_real_keytab_whose_keys_match_string_to_key() {
        let b = hex::decode(REAL).expect("hex");
        let e = parse(&b).expect("parses");
        assert_eq!(e.len(), 3);
        assert!(e.iter().all(|x| x.realm == "EXAMPLE.COM" && x.components == ["svc"] && x.kvno == 1 && x.name_type == 1));
        assert_eq!(e.iter().map(|x| x.etype).collect::<Vec<_>>(), [18, 17, 23]);
        // Independent check: the keys are what string-to-key makes of the password.
        use crate::{Etype, Key};
        for x in &e {
            let et = Etype::from_number(x.etype).expect("known etype");
            let salt: &[u8] = if x.etype == 23 { b"" } else { b"EXAMPLE.COMsvc" };
            let k = Key::from_password(et, "svcpass", salt, None).expect("s2k");
            assert_eq!(k.bytes(), x.key.as_slice(), "etype {}", x.etype);
        }
        assert!(!format!("{:?}", e[0]).contains("63e5"));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let b = hex::decode(REAL).expect("hex");
        for n in 0..b.len() {
            let r = parse(&b[..n]);
            if n < 2 {
                assert!(r.is_err());
            }
        }
        assert_eq!(parse(&[5, 1, 0, 0]).err(), Some(KeytabError::Version(0x0501)));
        // A record length far beyond the file.
        assert_eq!(parse(&[5, 2, 0x7f, 0, 0, 0, 1]).err(), Some(KeytabError::Truncated(2)));
    }
}
