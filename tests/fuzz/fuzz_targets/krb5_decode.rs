//! The typed codec (rasn): any bytes decode or fail cleanly, and whatever decodes
//! re-encodes to something that decodes to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = kcd_krb5::decode_message(data) {
        if let Ok(der) = msg.encode() {
            let again = kcd_krb5::decode_message(&der).expect("re-encoded message decodes");
            assert_eq!(again, msg);
        }
    }
    let _ = kcd_krb5::edata::parse_e_data(data);
});
