//! Exchange's response as the gateway's own HTTP/1.1 client reads it (gateway/proxy/src/wire.rs):
//! the head and its framing from arbitrary bytes, then what follows the head decoded as a
//! chunked body, whole and in two pieces split where the input's first byte says.
//! Invariants: no panic; the head's length within the input; a body framed by exactly one
//! rule; the decoder never uses more than it was given, its data inside what it used, always
//! progresses, and decodes the same bytes to the same body however they are split (the
//! device's answer must not depend on how Exchange's bytes arrived).
#![no_main]
use kcd_gateway::wire::{response_head, BodyKind, Chunked};
use libfuzzer_sys::fuzz_target;

/// The body and whether it ended, or the decoder's refusal.
fn decode(pieces: &[&[u8]]) -> Result<(Vec<u8>, bool), String> {
    let mut c = Chunked::default();
    let mut out = Vec::new();
    for piece in pieces {
        let mut rest: &[u8] = piece;
        while !rest.is_empty() && !c.done() {
            let fed = c.feed(rest)?;
            assert!(fed.used <= rest.len(), "used {} of {}", fed.used, rest.len());
            assert!(fed.data.start <= fed.data.end && fed.data.end <= fed.used, "data {:?} used {}", fed.data, fed.used);
            assert!(fed.used > 0 || c.done(), "no progress on {} bytes", rest.len());
            out.extend_from_slice(&rest[fed.data.clone()]);
            rest = &rest[fed.used..];
        }
    }
    Ok((out, c.done()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else { return };
    let head_request = first & 1 == 1;
    let after = match response_head(data, head_request) {
        Ok(Some((h, n))) => {
            assert!(n <= data.len());
            if head_request || h.status.is_informational() {
                assert_eq!(h.body, BodyKind::Empty);
            }
            if h.body == BodyKind::Close {
                assert!(!h.reusable, "a body until close on a reusable connection");
            }
            &data[n..]
        }
        // Not a head (or not yet one): the bytes are still tried as a chunked body.
        Ok(None) | Err(_) => data,
    };
    let split = usize::from(first >> 1) % (after.len() + 1);
    let whole = decode(&[after]);
    let parts = decode(&[&after[..split], &after[split..]]);
    match (&whole, &parts) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "split at {split}"),
        (Err(_), Err(_)) => {}
        _ => panic!("split at {split}: whole {whole:?}, in two pieces {parts:?}"),
    }
});
