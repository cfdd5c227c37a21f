//! Kerberos encryption profiles for the gateway's constrained-delegation client.
//!
//! - aes128-cts-hmac-sha1-96 (17) and aes256-cts-hmac-sha1-96 (18): RFC 3961's simplified
//!   profile with RFC 3962's parameters;
//! - rc4-hmac (23): RFC 4757, only when the configuration allows it;
//! - the HMAC-MD5 checksum (-138), which MS-SFU's PA-FOR-USER uses whatever the session
//!   key's type.
//!
//! The primitives (AES, CBC-CS3, HMAC, SHA-1, MD4, MD5, RC4, PBKDF2) are RustCrypto's; this
//! crate only assembles them the way the RFCs say. picky-krb's crypto module was the rival:
//! it has the AES profile but neither RC4-HMAC nor the HMAC-MD5 checksum, and ignores the
//! iteration count of s2kparams. Keys are zeroed on drop and never printed.

pub mod keytab;

use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit, KeyIvInit};
use aes::{Aes128, Aes256};
use cts::{Decrypt, Encrypt};
use hmac::{Hmac, Mac};
use md4::Md4;
use md5::{Digest, Md5};
use rc4::{Rc4, StreamCipher};
use sha1::Sha1;
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Etype {
    Aes128CtsHmacSha196,
    Aes256CtsHmacSha196,
    Rc4Hmac,
}

impl Etype {
    pub fn from_number(n: i32) -> Option<Etype> {
        match n {
            17 => Some(Etype::Aes128CtsHmacSha196),
            18 => Some(Etype::Aes256CtsHmacSha196),
            23 => Some(Etype::Rc4Hmac),
            _ => None,
        }
    }

    pub fn number(self) -> i32 {
        match self {
            Etype::Aes128CtsHmacSha196 => 17,
            Etype::Aes256CtsHmacSha196 => 18,
            Etype::Rc4Hmac => 23,
        }
    }

    pub fn key_len(self) -> usize {
        match self {
            Etype::Aes128CtsHmacSha196 | Etype::Rc4Hmac => 16,
            Etype::Aes256CtsHmacSha196 => 32,
        }
    }

    /// The keyed checksum that goes with the etype (RFC 3962 section 7, RFC 4757 section 5).
    pub fn checksum_type(self) -> i32 {
        match self {
            Etype::Aes128CtsHmacSha196 => CKSUM_HMAC_SHA1_96_AES128,
            Etype::Aes256CtsHmacSha196 => CKSUM_HMAC_SHA1_96_AES256,
            Etype::Rc4Hmac => CKSUM_HMAC_MD5,
        }
    }
}

pub const CKSUM_HMAC_SHA1_96_AES128: i32 = 15;
pub const CKSUM_HMAC_SHA1_96_AES256: i32 = 16;
pub const CKSUM_HMAC_MD5: i32 = -138;

/// RFC 3962: without s2kparams, 4096 iterations. Far larger counts are a KDC (or someone
/// in the middle) making the gateway burn CPU: refused above this.
pub const DEFAULT_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 1_000_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("ciphertext too short for {0:?}")]
    TooShort(Etype),
    #[error("integrity check failed (wrong key, or the data was changed)")]
    Integrity,
    #[error("a {etype:?} key has {expected} bytes, not {got}")]
    KeyLength { etype: Etype, expected: usize, got: usize },
    #[error("string-to-key parameters must be 4 bytes (an iteration count), got {0}")]
    BadS2kParams(usize),
    #[error("string-to-key iteration count {0} is above the limit of {MAX_ITERATIONS}")]
    TooManyIterations(u64),
    #[error("rc4-hmac string-to-key takes no salt parameters")]
    Rc4Params,
    #[error("the system's random number generator failed")]
    Random,
}

/// A key's derived keys for one usage: Ke and Ki for AES, K1 (in `ke`) for RC4. Zeroed on
/// drop, never shown.
#[derive(Clone)]
pub struct UsageKey {
    etype: Etype,
    ke: Zeroizing<Vec<u8>>,
    ki: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for UsageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UsageKey({:?}, redacted)", self.etype)
    }
}

impl UsageKey {
    pub fn etype(&self) -> Etype {
        self.etype
    }

    /// Encrypts with a fresh random confounder.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut conf = [0u8; 16];
        let n = match self.etype {
            Etype::Rc4Hmac => 8,
            _ => 16,
        };
        getrandom::fill(&mut conf[..n]).map_err(|_| CryptoError::Random)?;
        Ok(self.encrypt_with_confounder(&conf[..n], plaintext))
    }

    pub fn encrypt_with_confounder(&self, confounder: &[u8], plaintext: &[u8]) -> Vec<u8> {
        match self.etype {
            Etype::Rc4Hmac => {
                let k1 = &self.ke;
                let mut data = Vec::with_capacity(16 + confounder.len() + plaintext.len());
                data.extend_from_slice(confounder);
                data.extend_from_slice(plaintext);
                let ck = hmac_md5(k1, &[&data]);
                let k3 = Zeroizing::new(hmac_md5(k1, &[&ck]));
                if let Ok(mut rc4) = Rc4::new_from_slice(&*k3) {
                    rc4.apply_keystream(&mut data);
                }
                let mut out = ck.to_vec();
                out.extend_from_slice(&data);
                out
            }
            _ => {
                let mut p = Vec::with_capacity(confounder.len() + plaintext.len() + 12);
                p.extend_from_slice(confounder);
                p.extend_from_slice(plaintext);
                let mac = hmac_sha1(&self.ki, &[&p]);
                aes_cts(&self.ke, &mut p, true);
                p.extend_from_slice(&mac[..12]);
                p
            }
        }
    }
}

/// A protocol key. Its bytes are zeroed on drop and never shown by Debug.
#[derive(Clone)]
pub struct Key {
    etype: Etype,
    bytes: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:?}, {} bytes, redacted)", self.etype, self.bytes.len())
    }
}

type HmacSha1 = Hmac<Sha1>;
type HmacMd5 = Hmac<Md5>;

fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    // HMAC accepts keys of any length: the Err arm cannot happen.
    let Ok(mut m) = <HmacSha1 as KeyInit>::new_from_slice(key) else { return [0; 20] };
    parts.iter().for_each(|p| m.update(p));
    m.finalize().into_bytes().into()
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let Ok(mut m) = <HmacMd5 as KeyInit>::new_from_slice(key) else { return [0; 16] };
    parts.iter().for_each(|p| m.update(p));
    m.finalize().into_bytes().into()
}

/// Whether `tag` is HMAC-SHA1(key, data) cut to its length (96 bits here), compared in
/// constant time by the hmac crate, so that a forgery learns nothing from the timing.
fn hmac_sha1_verify(key: &[u8], data: &[u8], tag: &[u8]) -> bool {
    let Ok(mut m) = <HmacSha1 as KeyInit>::new_from_slice(key) else { return false };
    m.update(data);
    !tag.is_empty() && m.verify_truncated_left(tag).is_ok()
}

fn hmac_md5_verify(key: &[u8], data: &[u8], tag: &[u8]) -> bool {
    let Ok(mut m) = <HmacMd5 as KeyInit>::new_from_slice(key) else { return false };
    m.update(data);
    m.verify_slice(tag).is_ok()
}

/// The digest that checksum -138 signs: MD5 of the (RC4-numbered) usage and the data.
fn md5_usage(usage: u32, data: &[u8]) -> [u8; 16] {
    let mut md = Md5::new();
    md.update(rc4_usage(usage).to_le_bytes());
    md.update(data);
    md.finalize().into()
}

/// RFC 3961 section 5.1 n-fold: the input repeated to lcm(in, out) bits, each repetition
/// rotated right by 13 bits more, summed in out-bit chunks with end-around carry.
pub fn nfold(input: &[u8], out_len: usize) -> Vec<u8> {
    let in_len = input.len();
    if in_len == 0 || out_len == 0 {
        return vec![0; out_len];
    }
    let gcd = {
        let (mut a, mut b) = (out_len, in_len);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let lcm = out_len / gcd * in_len;
    let in_bits = in_len * 8;
    let bit = |i: usize| -> u32 {
        // Bit i (from the most significant) of the rotated-and-repeated input.
        let rep = i / in_bits;
        let rot = (13 * rep) % in_bits;
        let j = (i % in_bits + in_bits - rot) % in_bits;
        u32::from((input[j / 8] >> (7 - j % 8)) & 1)
    };
    let mut acc = vec![0u32; out_len];
    for chunk in 0..lcm / out_len {
        for (k, a) in acc.iter_mut().enumerate() {
            let mut byte = 0u32;
            for b in 0..8 {
                byte = (byte << 1) | bit((chunk * out_len + k) * 8 + b);
            }
            *a += byte;
        }
    }
    // Carries ripple from the least significant byte, and around the end.
    loop {
        let mut carry = 0u32;
        for a in acc.iter_mut().rev() {
            *a += carry;
            carry = *a >> 8;
            *a &= 0xff;
        }
        if carry == 0 {
            break;
        }
        if let Some(last) = acc.last_mut() {
            *last += carry;
        }
    }
    acc.into_iter().map(|a| a as u8).collect()
}

fn aes_block(key: &[u8], block: &mut [u8; 16], encrypt: bool) {
    let b = block.into();
    match key.len() {
        16 => {
            if let Ok(c) = Aes128::new_from_slice(key) {
                if encrypt { c.encrypt_block(b) } else { c.decrypt_block(b) }
            }
        }
        _ => {
            if let Ok(c) = Aes256::new_from_slice(key) {
                if encrypt { c.encrypt_block(b) } else { c.decrypt_block(b) }
            }
        }
    }
}

/// AES in Kerberos's CTS mode with a zero IV (RFC 3962 section 5). More than one block is
/// CBC-CS3; exactly one block is a single AES block, where CbcCs3 would differ.
fn aes_cts(key: &[u8], data: &mut [u8], encrypt: bool) {
    if let Ok(block) = <&mut [u8; 16]>::try_from(&mut *data) {
        aes_block(key, block, encrypt);
        return;
    }
    let iv = [0u8; 16];
    // Lengths below one block never reach here: the confounder alone is 16 bytes.
    let _ = match (key.len(), encrypt) {
        (16, true) => cts::CbcCs3::<Aes128>::new_from_slices(key, &iv).map(|c| c.encrypt(data)),
        (16, false) => cts::CbcCs3::<Aes128>::new_from_slices(key, &iv).map(|c| c.decrypt(data)),
        (_, true) => cts::CbcCs3::<Aes256>::new_from_slices(key, &iv).map(|c| c.encrypt(data)),
        (_, false) => cts::CbcCs3::<Aes256>::new_from_slices(key, &iv).map(|c| c.decrypt(data)),
    };
}

/// RFC 3961 DK(base, constant) for AES: random-to-key is the identity. One key schedule
/// serves every block.
fn dk(base: &[u8], constant: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut block: [u8; 16] = [0; 16];
    block.copy_from_slice(&nfold(constant, 16));
    let mut out = Zeroizing::new(Vec::with_capacity(base.len()));
    match base.len() {
        16 => {
            if let Ok(c) = Aes128::new_from_slice(base) {
                while out.len() < 16 {
                    c.encrypt_block((&mut block).into());
                    out.extend_from_slice(&block);
                }
            }
        }
        n => {
            if let Ok(c) = Aes256::new_from_slice(base) {
                while out.len() < n {
                    c.encrypt_block((&mut block).into());
                    out.extend_from_slice(&block);
                }
            }
        }
    }
    out.truncate(base.len());
    out
}

fn usage_constant(usage: u32, kind: u8) -> [u8; 5] {
    let u = usage.to_be_bytes();
    [u[0], u[1], u[2], u[3], kind]
}

/// RFC 4757 section 4: the message types RC4-HMAC numbers differently.
fn rc4_usage(usage: u32) -> u32 {
    match usage {
        3 => 8,
        23 => 13,
        u => u,
    }
}

/// Checksum -138 (KERB_CHECKSUM_HMAC_MD5) keyed with any key: MS-SFU's PA-FOR-USER uses it
/// with the TGT session key even when that key is AES.
pub fn hmac_md5_checksum(key: &[u8], usage: u32, data: &[u8]) -> [u8; 16] {
    let ksign = Zeroizing::new(hmac_md5(key, &[b"signaturekey\0"]));
    hmac_md5(&*ksign, &[&md5_usage(usage, data)])
}

fn hmac_md5_checksum_verify(key: &[u8], usage: u32, data: &[u8], sum: &[u8]) -> bool {
    let ksign = Zeroizing::new(hmac_md5(key, &[b"signaturekey\0"]));
    hmac_md5_verify(&*ksign, &md5_usage(usage, data), sum)
}

impl Key {
    pub fn from_bytes(etype: Etype, bytes: &[u8]) -> Result<Key, CryptoError> {
        if bytes.len() != etype.key_len() {
            return Err(CryptoError::KeyLength { etype, expected: etype.key_len(), got: bytes.len() });
        }
        Ok(Key { etype, bytes: Zeroizing::new(bytes.to_vec()) })
    }

    /// string-to-key: PBKDF2-HMAC-SHA1 then DK(tkey, "kerberos") for AES (RFC 3962 section 4,
    /// `s2kparams` = the iteration count, 4 bytes big-endian, 0 meaning 2^32); MD4 of the
    /// UTF-16LE password for RC4 (RFC 4757 section 3, no salt).
    pub fn from_password(etype: Etype, password: &str, salt: &[u8], s2kparams: Option<&[u8]>) -> Result<Key, CryptoError> {
        match etype {
            Etype::Rc4Hmac => {
                if s2kparams.is_some_and(|p| !p.is_empty()) {
                    return Err(CryptoError::Rc4Params);
                }
                let utf16: Zeroizing<Vec<u8>> =
                    Zeroizing::new(password.encode_utf16().flat_map(|c| c.to_le_bytes()).collect());
                Ok(Key { etype, bytes: Zeroizing::new(Md4::digest(&*utf16).to_vec()) })
            }
            _ => {
                let iterations: u64 = match s2kparams {
                    None => u64::from(DEFAULT_ITERATIONS),
                    Some(p) => {
                        let b: [u8; 4] = p.try_into().map_err(|_| CryptoError::BadS2kParams(p.len()))?;
                        match u32::from_be_bytes(b) {
                            0 => 1 << 32,
                            n => u64::from(n),
                        }
                    }
                };
                if iterations > u64::from(MAX_ITERATIONS) {
                    return Err(CryptoError::TooManyIterations(iterations));
                }
                let mut tkey = Zeroizing::new(vec![0u8; etype.key_len()]);
                pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), salt, iterations as u32, &mut tkey);
                Ok(Key { etype, bytes: dk(&tkey, b"kerberos") })
            }
        }
    }

    pub fn etype(&self) -> Etype {
        self.etype
    }

    /// The key's bytes, for the few places that need them raw (a keytab entry, the -138
    /// checksum keyed with a session key).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Encrypts with a fresh random confounder.
    pub fn encrypt(&self, usage: u32, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.usage_key(usage).encrypt(plaintext)
    }

    /// Encryption with a given confounder (16 bytes for AES, 8 for RC4): deterministic, for
    /// known-answer tests. Everything else uses `encrypt`.
    pub fn encrypt_with_confounder(&self, usage: u32, confounder: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.usage_key(usage).encrypt_with_confounder(confounder, plaintext)
    }

    /// The keys derived for one usage, to encrypt many messages without deriving them again
    /// (an AP-REQ authenticator per HTTP request under one service ticket).
    pub fn usage_key(&self, usage: u32) -> UsageKey {
        let derived = match self.etype {
            Etype::Rc4Hmac => {
                let k1 = hmac_md5(&self.bytes, &[&rc4_usage(usage).to_le_bytes()]);
                (Zeroizing::new(k1.to_vec()), Zeroizing::new(Vec::new()))
            }
            _ => (dk(&self.bytes, &usage_constant(usage, 0xAA)), dk(&self.bytes, &usage_constant(usage, 0x55))),
        };
        UsageKey { etype: self.etype, ke: derived.0, ki: derived.1 }
    }

    pub fn decrypt(&self, usage: u32, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.decrypt_parts(usage, ciphertext).map(|(_, plain)| plain)
    }

    /// Decrypts and returns (confounder, plaintext).
    pub fn decrypt_parts(&self, usage: u32, ciphertext: &[u8]) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
        match self.etype {
            Etype::Rc4Hmac => {
                if ciphertext.len() < 24 {
                    return Err(CryptoError::TooShort(self.etype));
                }
                let k1 = Zeroizing::new(hmac_md5(&self.bytes, &[&rc4_usage(usage).to_le_bytes()]));
                let (ck, rest) = ciphertext.split_at(16);
                let k3 = Zeroizing::new(hmac_md5(&*k1, &[ck]));
                let mut data = rest.to_vec();
                if let Ok(mut rc4) = Rc4::new_from_slice(&*k3) {
                    rc4.apply_keystream(&mut data);
                }
                if !hmac_md5_verify(&*k1, &data, ck) {
                    return Err(CryptoError::Integrity);
                }
                let plain = data.split_off(8);
                Ok((data, plain))
            }
            _ => {
                if ciphertext.len() < 16 + 12 {
                    return Err(CryptoError::TooShort(self.etype));
                }
                let ke = dk(&self.bytes, &usage_constant(usage, 0xAA));
                let ki = dk(&self.bytes, &usage_constant(usage, 0x55));
                let (c, mac) = ciphertext.split_at(ciphertext.len() - 12);
                let mut p = c.to_vec();
                aes_cts(&ke, &mut p, false);
                if !hmac_sha1_verify(&ki, &p, mac) {
                    return Err(CryptoError::Integrity);
                }
                let plain = p.split_off(16);
                Ok((p, plain))
            }
        }
    }

    /// The etype's keyed checksum: HMAC-SHA1-96 with Kc (types 15, 16) or HMAC-MD5 (-138).
    pub fn checksum(&self, usage: u32, data: &[u8]) -> (i32, Vec<u8>) {
        let sum = match self.etype {
            Etype::Rc4Hmac => hmac_md5_checksum(&self.bytes, usage, data).to_vec(),
            _ => hmac_sha1(&dk(&self.bytes, &usage_constant(usage, 0x99)), &[data])[..12].to_vec(),
        };
        (self.etype.checksum_type(), sum)
    }

    pub fn verify_checksum(&self, usage: u32, data: &[u8], cksumtype: i32, sum: &[u8]) -> bool {
        match cksumtype {
            CKSUM_HMAC_MD5 => hmac_md5_checksum_verify(&self.bytes, usage, data, sum),
            t if t == self.etype.checksum_type() => {
                sum.len() == 12 && hmac_sha1_verify(&dk(&self.bytes, &usage_constant(usage, 0x99)), data, sum)
            }
            _ => false,
        }
    }
}
