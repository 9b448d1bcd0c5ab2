//! `cert::ca::Certificate::decode` (AMD ARK/ASK format).
//!
//! Properties: no panic; `encoded_len` of the header agrees with the length
//! of a certificate that decodes; decoding is strict, so a certificate that
//! decodes re-encodes to exactly the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_proto::cert::ca::Certificate;

fuzz_target!(|data: &[u8]| {
    let len = Certificate::encoded_len(data);
    let Ok(cert) = Certificate::decode(data) else {
        return;
    };
    assert_eq!(len, Ok(data.len()), "encoded_len disagrees with decode");
    let encoded = cert.encode();
    assert_eq!(encoded, data, "encode(decode(x)) != x");
    assert_eq!(Certificate::decode(&encoded).as_ref(), Ok(&cert));
    let body = cert.body();
    assert_eq!(&data[..body.len()], &body[..]);
    assert_eq!(
        cert.signature_le().len() * 8,
        cert.modulus_bits() as usize,
        "signature is not modulus-sized"
    );
    let _ = (cert.key_id(), cert.certifying_id(), cert.usage());
    let _ = (
        cert.exponent_bits(),
        cert.hash_algorithm(),
        cert.public_key(),
    );
    // RSA-PSS verification of a hostile certificate must not panic.
    let _ = cert.verify_signed_by(&cert);
});
