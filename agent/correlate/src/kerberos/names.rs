//! Principal names: written once per distinct name and shared, and one key per user.

use kcd_schema::{NameType, Principal};

use crate::{Correlator, Name};

/// One key per user however the name was written: Active Directory compares account names
/// without regard to case, and a UPN asked for as an enterprise name ("alice@lab.test",
/// or "alice@lab.test@LAB.TEST" with its realm) is the account the KDC names
/// "alice@LAB.TEST" when the suffix is the realm's.
pub fn user_key(name: &str) -> std::borrow::Cow<'_, str> {
    // An enterprise name with the realm appended: the realm adds nothing.
    let n = match name.rsplit_once('@') {
        Some((inner, _realm)) if inner.contains('@') && !inner.contains('/') => inner,
        _ => name,
    };
    if n.chars().any(char::is_uppercase) {
        std::borrow::Cow::Owned(n.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(n)
    }
}

/// Distinct names kept for sharing; past it the set starts over (names in use live on).
const MAX_INTERNED: usize = 1 << 16;

impl Correlator {
    /// The principal's full name ("alice@R", "HTTP/host@R", "alice@upn.example"), shared:
    /// once a name has been seen, finding it again builds no string.
    pub(crate) fn name(&mut self, p: &Principal<'_>, realm: Option<&str>) -> Name {
        let realm = realm.filter(|r| !r.is_empty() && !is_enterprise(p));
        let h = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = self.name_hasher.build_hasher();
            for part in &p.parts {
                h.write(part.as_bytes());
                h.write_u8(0xff);
            }
            if let Some(r) = realm {
                h.write(r.as_bytes());
            }
            h.finish()
        };
        if let Some(n) = self.name_cache.get(&h) {
            if name_is(n, p, realm) {
                return n.clone();
            }
        }
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        write_full_name(&mut buf, p, realm);
        let n: Name = buf.as_str().into();
        self.scratch = buf;
        if self.name_cache.len() >= MAX_INTERNED {
            self.name_cache.clear();
        }
        self.name_cache.insert(h, n.clone());
        n
    }
}

/// "alice@LAB.TEST", "HTTP/web.lab.test@LAB.TEST"; an enterprise name ("alice@lab.test")
/// already names its domain.
pub fn full_name(p: &Principal<'_>, realm: Option<&str>) -> String {
    let mut s = String::new();
    write_full_name(&mut s, p, realm.filter(|r| !r.is_empty() && !is_enterprise(p)));
    s
}

fn is_enterprise(p: &Principal<'_>) -> bool {
    p.name_type == NameType::NT_ENTERPRISE || (p.parts.len() == 1 && p.parts[0].contains('@'))
}

/// `n` is what write_full_name writes for these parts and (already decided) realm.
fn name_is(n: &str, p: &Principal<'_>, realm: Option<&str>) -> bool {
    let mut rest = n;
    for (i, part) in p.parts.iter().enumerate() {
        if i > 0 {
            match rest.strip_prefix('/') {
                Some(r) => rest = r,
                None => return false,
            }
        }
        match rest.strip_prefix(&**part) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    match realm {
        Some(r) => rest.strip_prefix('@').is_some_and(|x| x == r),
        None => rest.is_empty(),
    }
}

/// Parts joined by '/', then "@realm" when `realm` is given (the caller decides).
fn write_full_name(s: &mut String, p: &Principal<'_>, realm: Option<&str>) {
    for (i, part) in p.parts.iter().enumerate() {
        if i > 0 {
            s.push('/');
        }
        s.push_str(part);
    }
    if let Some(r) = realm {
        s.push('@');
        s.push_str(r);
    }
}
