//! `session::SessionBuffer::decode` and the firmware's `session::unwrap`.
//!
//! Properties: no panic; a buffer that decodes re-encodes to the input;
//! unwrapping a hostile buffer never panics; a buffer wrapped with keys and
//! values taken from the input unwraps to the same keys under the same
//! policy, and any single-byte change to it (or another policy) is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_proto::session::{unwrap, wrap, SessionBuffer, Tek, Tik, TransportKeys};
use sevm_fuzz::{flip, Cursor};

fn keys_eq(a: &TransportKeys, b: &TransportKeys) -> bool {
    a.tek.as_bytes() == b.tek.as_bytes() && a.tik.as_bytes() == b.tik.as_bytes()
}

fuzz_target!(|data: &[u8]| {
    // Z: any length is accepted by the KDF; take it from the input too.
    let mut c = Cursor::new(data);
    let z: [u8; 48] = c.array();
    let policy = c.u32();
    let flip_at = usize::from(c.u8());
    let flip_mask = c.u8();
    let nonce: [u8; 16] = c.array();
    let wrap_iv: [u8; 16] = c.array();
    let keys = TransportKeys {
        tek: Tek::from_bytes(c.array()),
        tik: Tik::from_bytes(c.array()),
    };

    // The raw input as a session buffer.
    if let Ok(session) = SessionBuffer::decode(data) {
        assert_eq!(&session.to_bytes()[..], data, "session round trip");
        let _ = unwrap(&z, &session, policy);
    }
    if let Some(tail) = data.get(data.len().saturating_sub(SessionBuffer::SIZE)..) {
        if let Ok(session) = SessionBuffer::decode(tail) {
            let _ = unwrap(&z, &session, policy);
        }
    }

    // A genuine buffer: unwraps, and every single-byte change is caught.
    let session = wrap(&z, &nonce, &wrap_iv, &keys, policy);
    let got = unwrap(&z, &session, policy).expect("a wrapped session must unwrap");
    assert!(keys_eq(&got, &keys), "unwrap returned other keys");
    assert!(
        unwrap(&z, &session, policy ^ 1).is_err(),
        "a session unwrapped under another policy"
    );
    let mut bytes = session.to_bytes();
    flip(&mut bytes, flip_at, flip_mask);
    let tampered = SessionBuffer::from_bytes(&bytes);
    assert!(
        unwrap(&z, &tampered, policy).is_err(),
        "a tampered session unwrapped"
    );
});
