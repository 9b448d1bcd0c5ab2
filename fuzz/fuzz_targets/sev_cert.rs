//! `cert::sev::Certificate::decode` and `validate_godh_bytes`.
//!
//! Properties: no panic; a certificate that decodes re-encodes to exactly the
//! input (the module promises strict decoding, every byte significant); the
//! raw-bytes GODH check agrees with the check on the decoded certificate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_proto::cert::sev::{Certificate, Slot};

fuzz_target!(|data: &[u8]| {
    let godh = Certificate::validate_godh_bytes(data);
    let Ok(cert) = Certificate::decode(data) else {
        return;
    };
    assert_eq!(&cert.encode()[..], data, "encode(decode(x)) != x");
    assert_eq!(Certificate::decode(&cert.encode()).as_ref(), Ok(&cert));
    assert_eq!(&cert.body()[..], &data[..cert.body().len()]);

    // decode is stricter than the firmware's GODH checks: whatever it
    // accepts, the two GODH checks must judge alike (and find the same key).
    assert_eq!(
        cert.validate_godh().ok(),
        godh.as_ref().ok().copied(),
        "validate_godh and validate_godh_bytes disagree"
    );

    // Accessors and verification on hostile certificates must not panic.
    let _ = (cert.api_version(), cert.usage(), cert.algorithm());
    let _ = cert.ec_public_key();
    let _ = cert.verifying_key();
    for slot in Slot::BOTH {
        let s = cert.signature(slot);
        let _ = (s.usage(), s.algorithm(), s.is_empty());
    }
    let _ = cert.verify_signed_by_sev(&cert);
});
