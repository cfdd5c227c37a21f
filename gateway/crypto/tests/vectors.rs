//! Known answers from the RFCs and from MIT krb5's own crypto tests (src/lib/crypto/
//! crypto_tests/t_nfold.c, t_str2key.c, t_derive.c, t_decrypt.c, t_cksums.c): none of the
//! expected values comes from this crate.

use kcd_crypto::{hmac_md5_checksum, nfold, CryptoError, Etype, Key};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex")
}

#[test]
fn rfc3961_nfold() {
    let cases: &[(&str, usize, &str)] = &[
        ("012345", 64, "be072631276b1955"),
        ("password", 56, "78a07b6caf85fa"),
        ("Rough Consensus, and Running Code", 64, "bb6ed30870b7f0e0"),
        ("password", 168, "59e4a8ca7c0385c3c37b3f6d2000247cb6e6bd5b3e"),
        ("MASSACHVSETTS INSTITVTE OF TECHNOLOGY", 192, "db3b0d8f0b061e603282b308a50841229ad798fab9540c1b"),
        ("Q", 168, "518a54a215a8452a518a54a215a8452a518a54a215"),
        ("ba", 168, "fb25d531ae8974499f52fd92ea9857c4ba24cf297e"),
        ("kerberos", 64, "6b65726265726f73"),
        ("kerberos", 128, "6b65726265726f737b9b5b2b93132b93"),
        ("kerberos", 168, "8372c236344e5f1550cd0747e15d62ca7a5a3bcea4"),
        ("kerberos", 256, "6b65726265726f737b9b5b2b93132b935c9bdcdad95c9899c4cae4dee6d6cae4"),
    ];
    for (input, bits, want) in cases {
        assert_eq!(hex::encode(nfold(input.as_bytes(), bits / 8)), *want, "{input} {bits}");
    }
}

#[test]
fn rfc3962_string_to_key() {
    // (iterations, password, salt, aes128 key, aes256 key): RFC 3962 appendix B.
    type Case<'a> = (u32, &'a [u8], &'a [u8], &'a str, &'a str);
    let cases: &[Case] = &[
        (1, b"password", b"ATHENA.MIT.EDUraeburn", "42263c6e89f4fc28b8df68ee09799f15",
         "fe697b52bc0d3ce14432ba036a92e65bbb52280990a2fa27883998d72af30161"),
        (2, b"password", b"ATHENA.MIT.EDUraeburn", "c651bf29e2300ac27fa469d693bdda13",
         "a2e16d16b36069c135d5e9d2e25f896102685618b95914b467c67622225824ff"),
        (1200, b"password", b"ATHENA.MIT.EDUraeburn", "4c01cd46d632d01e6dbe230a01ed642a",
         "55a6ac740ad17b4846941051e1e8b0a7548d93b0ab30a8bc3ff16280382b8c2a"),
        (5, b"password", &[0x12, 0x34, 0x56, 0x78, 0x78, 0x56, 0x34, 0x12], "e9b23d52273747dd5c35cb55be619d8e",
         "97a4e786be20d81a382d5ebc96d5909cabcdadc87ca48f574504159f16c36e31"),
        (1200, &[b'X'; 64], b"pass phrase equals block size", "59d1bb789a828b1aa54ef9c2883f69ed",
         "89adee3608db8bc71f1bfbfe459486b05618b70cbae22092534e56c553ba4b34"),
        (1200, &[b'X'; 65], b"pass phrase exceeds block size", "cb8005dc5f90179a7f02104c0018751d",
         "d78c5c9cb872a8c9dad4697f0bb5b2d21496c82beb2caeda2112fceea057401b"),
        (50, "\u{1D11E}".as_bytes(), b"EXAMPLE.COMpianist", "f149c1f2e154a73452d43e7fe62a56e5",
         "4b6d9839f84406df1f09cc166db4b83c571848b784a3d6bdc346589a3e393f9e"),
    ];
    for (iter, pw, salt, k128, k256) in cases {
        let pw = std::str::from_utf8(pw).expect("utf-8");
        let params = iter.to_be_bytes();
        let a = Key::from_password(Etype::Aes128CtsHmacSha196, pw, salt, Some(&params)).expect("s2k");
        let b = Key::from_password(Etype::Aes256CtsHmacSha196, pw, salt, Some(&params)).expect("s2k");
        assert_eq!(hex::encode(a.bytes()), *k128, "aes128 {iter}");
        assert_eq!(hex::encode(b.bytes()), *k256, "aes256 {iter}");
    }
}

#[test]
fn keys_from_a_real_mit_keytab() {
    // `kadmin.local ktadd` on MIT krb5 1.20 for svc@EXAMPLE.COM, password "svcpass",
    // default salt and 4096 iterations; and the RC4 key (the NT hash) of the same entry.
    let salt = b"EXAMPLE.COMsvc";
    let k = |e| Key::from_password(e, "svcpass", salt, None).expect("s2k");
    assert_eq!(hex::encode(k(Etype::Aes256CtsHmacSha196).bytes()), "63e50388bf42a04fd73d5538ecc155b2b3f2ae634f83479f5954cd175a1b0da1");
    assert_eq!(hex::encode(k(Etype::Aes128CtsHmacSha196).bytes()), "f84743423517ebd379b10763f1c688ae");
    assert_eq!(hex::encode(k(Etype::Rc4Hmac).bytes()), "7463d44ac3a5213e61b7b0422ac474b0");
}

#[test]
fn rfc4757_string_to_key() {
    let k = Key::from_password(Etype::Rc4Hmac, "foo", b"", None).expect("s2k");
    assert_eq!(hex::encode(k.bytes()), "ac8e657f83df82beea5d43bdaf7800cc");
    assert_eq!(
        Key::from_password(Etype::Rc4Hmac, "foo", b"", Some(&[0, 0, 16, 0])).err(),
        Some(CryptoError::Rc4Params)
    );
}

#[test]
fn s2k_parameters_are_checked() {
    let e = Etype::Aes128CtsHmacSha196;
    assert_eq!(Key::from_password(e, "p", b"s", Some(&[1, 2])).err(), Some(CryptoError::BadS2kParams(2)));
    // 0 means 2^32 iterations (RFC 3962): refused rather than spent.
    assert!(matches!(Key::from_password(e, "p", b"s", Some(&[0, 0, 0, 0])), Err(CryptoError::TooManyIterations(_))));
    assert!(Key::from_bytes(e, &[0; 32]).is_err());
}

#[test]
fn mit_known_ciphertexts_decrypt_and_re_encrypt_byte_for_byte() {
    // (etype, usage, key, plaintext, ciphertext): MIT t_decrypt.c. The empty plaintexts are
    // the 16-byte single-block CTS case.
    let cases: &[(i32, u32, &str, &str, &str)] = &[
        (17, 0, "5a5c0f0ba54f3828b2195e66ca24a289", "", "49ff8e11c173d9583a3254fbe7b1f1df36c538e8416784a1672e6676"),
        (17, 1, "98450e3f3baa13f5c99beb936981b06f", "1", "f86742f537b35dc2174a4dbaa920faf9042090b065e1ebb1cad9a65394"),
        (17, 2, "9062430c8cda3388922e6d6a509f5b7a", "9 bytesss", "68fb9679601f45c78857b2bf820fd6e53eca8d42fd4b1d7024a09205abb7cd2ec26c355d2f"),
        (17, 3, "033ee6502c54fd23e27791e987983827", "13 bytes byte", "ec366d0327a933bf49330e650e49bc6b974637fe80bf532fe51795b4809718e6194724db948d1fd637"),
        (17, 4, "dceeb70b3de76562e689226c76429148", "30 bytes bytes bytes bytes byt", "c96081032d5d8eeb7e32b4089f789d0faa481dea74c0f97cbf3146ddfcf8e800156ecb532fc203e30ff600b63b350939fece510f02d7ff1e7bac"),
        (18, 0, "17f275f2954f2ed1f90c377ba7f4d6a369aa0136e0bf0c927ad6133c693759a9", "", "e5094c55ee7b38262e2b044280b069379a95bf95bd8376fb3281b435"),
        (18, 1, "b9477e1ff0329c0050e20ce6c72d2dff27e8fe541ab0954429a9cb5b4f7b1e2a", "1", "406150b97aeb76d43b36b62cc1ecdfbe6f40e95755e0beb5c27825f3a4"),
        (18, 2, "b1ae4cd8462aff1677053cc9279aac30b796fb81ce21474dd3ddbcfea4ec76d7", "9 bytesss", "09957aa25fcaf88f7b39e4406e633012d5fea21853f6478da7065caef41fd454a40824eec5"),
        (18, 3, "e5a72be9b7926c1225bafef9c1872e7ba4cdb2b17893d84abd90acdd8764d966", "13 bytes byte", "d8f1aafeec84587cc3e700a774e56651a6d693e174ec4473b5e6d96f80297a653fb818ad893e719f96"),
        (18, 4, "f1c795e9248a09338d82c3f8d5b567040b0110736845041347235b1404231398", "30 bytes bytes bytes bytes byt", "d1137a4d634cfece924dbc3bf6790648bd5cff7de0e7b99460211d0daef3d79a295c688858f3b34b9cbd6eebae81daf6b734d4d498b6714f1c1d"),
        (23, 0, "f81fec39255f5784e850c4377c88bd85", "", "02c1eb15586144122ec717763dd348bf00434ddc6585954c"),
        (23, 1, "67d1300d281223867f9647ff48721273", "1", "6156e0cc04e0a0874f9fda008f498a7adbbc80b70b14dddbc0"),
        (23, 2, "3e40ab6093695281b3ac1a9304224d98", "9 bytesss", "0f9ad121d99d4a09448e4f1f718c4f5cbe6096262c66f29df232a87c9f98755d55"),
        (23, 3, "4ba2fbf0379faed87a254d3b353d5a7e", "13 bytes byte", "612c57568b17a70352bae8cf26fb9459a6f3353cd35fd439db3107cbec765d326dfc04c1dd"),
        (23, 4, "68f263db3fce15d031c9eab02d67107a", "30 bytes bytes bytes bytes byt", "95f9047c3ad75891c2e9b04b16566dc8b6eb9ce4231afb2542ef87a7b5a0f260a99f0460508de0cecc632d07c354124e46c5d2234eb8"),
    ];
    for (n, usage, key, plain, cipher) in cases {
        let etype = Etype::from_number(*n).expect("etype");
        let key = Key::from_bytes(etype, &h(key)).expect("key");
        let ct = h(cipher);
        let pt = key.decrypt(*usage, &ct).expect("decrypts");
        assert_eq!(pt, plain.as_bytes(), "etype {n} usage {usage}");
        // Encryption is deterministic given the confounder: with MIT's, ours gives MIT's bytes.
        let (conf, _) = key.decrypt_parts(*usage, &ct).expect("decrypts");
        assert_eq!(hex::encode(key.encrypt_with_confounder(*usage, &conf, plain.as_bytes())), *cipher);
        // Any change is caught by the integrity check.
        let mut bad = ct.clone();
        bad[ct.len() / 2] ^= 1;
        assert_eq!(key.decrypt(*usage, &bad), Err(kcd_crypto::CryptoError::Integrity), "etype {n} usage {usage}");
        // The wrong usage is the wrong key.
        assert!(key.decrypt(usage + 1, &ct).is_err());
    }
}

#[test]
fn mit_known_checksums() {
    // (checksum type, usage, key, data, checksum): MIT t_cksums.c.
    let k = Key::from_bytes(Etype::Aes128CtsHmacSha196, &h("9062430c8cda3388922e6d6a509f5b7a")).expect("key");
    assert_eq!(k.checksum(3, b"eight nine ten eleven twelve thirteen"), (15, h("01a4b088d45628f6946614e3")));
    let k = Key::from_bytes(Etype::Aes256CtsHmacSha196, &h("b1ae4cd8462aff1677053cc9279aac30b796fb81ce21474dd3ddbcfea4ec76d7")).expect("key");
    assert_eq!(k.checksum(4, b"fourteen"), (16, h("e08739e3279e2903ec8e3836")));
    assert!(k.verify_checksum(4, b"fourteen", 16, &h("e08739e3279e2903ec8e3836")));
    assert!(!k.verify_checksum(4, b"fifteen", 16, &h("e08739e3279e2903ec8e3836")));
    let rc4 = h("f7d3a155af5e238a0b7a871a96ba2ab2");
    assert_eq!(hmac_md5_checksum(&rc4, 6, b"seventeen eighteen nineteen twenty").to_vec(), h("eb38cc97e2230f59da4117dc5859d7ec"));
    let k = Key::from_bytes(Etype::Rc4Hmac, &rc4).expect("key");
    assert_eq!(k.checksum(6, b"seventeen eighteen nineteen twenty"), (-138, h("eb38cc97e2230f59da4117dc5859d7ec")));
}

#[test]
fn pa_for_user_checksum_from_a_real_mit_exchange() {
    // `kvno -U alice svc` against MIT krb5 1.20: the TGT session key (aes256), key usage 17,
    // the S4UByteArray (name type 10 LE, "alice", "EXAMPLE.COM", "Kerberos") and the
    // checksum the client sent in PA-FOR-USER, which the KDC accepted.
    let session = h("a504fd3159ca72de4a8d64a7553adfe0b6f85a526248789382dff8a46d696d5c");
    let bytes = h("0a000000616c6963654558414d504c452e434f4d4b65726265726f73");
    assert_eq!(hmac_md5_checksum(&session, 17, &bytes).to_vec(), h("a53b52ffaaef34dae7aa792658232766"));
}

#[test]
fn random_confounders_round_trip_and_differ() {
    for e in [Etype::Aes128CtsHmacSha196, Etype::Aes256CtsHmacSha196, Etype::Rc4Hmac] {
        let key = Key::from_password(e, "secret", b"LAB.TESTsvc", None).expect("s2k");
        for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 100] {
            let msg = vec![0x5a; len];
            let a = key.encrypt(11, &msg).expect("encrypt");
            let b = key.encrypt(11, &msg).expect("encrypt");
            assert_ne!(a, b, "{e:?} {len}: same ciphertext twice");
            assert_eq!(key.decrypt(11, &a).expect("decrypt"), msg, "{e:?} {len}");
        }
        assert_eq!(key.decrypt(11, &[0; 10]), Err(CryptoError::TooShort(e)));
        assert!(!format!("{key:?}").contains(&hex::encode(key.bytes())));
    }
}
