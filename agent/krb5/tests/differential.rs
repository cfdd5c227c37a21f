//! Generated messages: rasn encodes them, then rasn and the borrowed view must both read
//! back exactly what was generated. This is what lets the agent use the view on its hot
//! path while the gateway encodes with rasn.

mod common;

use kcd_krb5::view::MessageView;
use kcd_krb5::{decode_message, KrbMessage};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encode_decode_roundtrip_and_view_agree(msg in common::message()) {
        let der = msg.encode().expect("generated messages encode");
        let back = decode_message(&der).expect("and decode");
        prop_assert_eq!(&back, &msg);
        let view = MessageView::parse(&der).expect("view accepts it");
        common::assert_view_matches("generated", &msg, &view);
    }

    // Damaged input: neither reader may panic, and whatever the view reads from a message
    // that rasn still accepts must agree with rasn.
    #[test]
    fn damaged_messages_never_panic(msg in common::message(), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()) {
        let der = msg.encode().expect("encodes");
        let truncated = &der[..cut.index(der.len())];
        let _ = decode_message(truncated);
        if let Ok(v) = MessageView::parse(truncated) {
            prop_assert!(v.malformed.is_some() || truncated.len() == der.len());
        }
        let mut flipped = der.clone();
        let i = flip.0.index(flipped.len());
        flipped[i] ^= flip.1 | 1;
        let typed = decode_message(&flipped);
        let view = MessageView::parse(&flipped);
        if let (Ok(t), Ok(v)) = (&typed, &view) {
            if v.malformed.is_none() {
                common::assert_view_matches("flipped", t, v);
            }
        }
        let _: Option<KrbMessage> = typed.ok();
    }
}
