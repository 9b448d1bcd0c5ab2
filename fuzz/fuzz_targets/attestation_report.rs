//! `attestation::Report::decode`.
//!
//! Properties: no panic; every byte of a report is signed, fixed or part of
//! R/S, so a report that decodes re-encodes to exactly the input;
//! verification of a hostile report never panics; a report signed with a
//! fixed key over fields from the input verifies, decodes from its encoding,
//! and stops verifying when any byte of it changes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p384::ecdsa::VerifyingKey;
use sev_proto::attestation::{Report, REPORT_LEN};
use sevm_fuzz::{flip, signing_key, Cursor};

fuzz_target!(|data: &[u8]| {
    let key = signing_key();
    let verifying = VerifyingKey::from(&key);

    if let Ok(report) = Report::decode(data) {
        assert_eq!(&report.encode()[..], data, "encode(decode(x)) != x");
        assert_eq!(&report.signed_bytes()[..], &data[..report.signed_bytes().len()]);
        let _ = (report.mnonce(), report.launch_digest(), report.policy());
        let _ = (report.sig_usage(), report.sig_algorithm(), report.signature());
        let _ = report.verify_with(&verifying);
    }

    let mut c = Cursor::new(data);
    let mnonce = c.array();
    let digest = c.array();
    let policy = c.u32();
    let flip_at = usize::from(c.u8());
    let mask = c.u8();
    let report = Report::sign(mnonce, digest, policy, &key).expect("signing works");
    report.verify_with(&verifying).expect("a signed report verifies");
    let mut bytes = report.encode();
    assert_eq!(bytes.len(), REPORT_LEN);
    assert_eq!(Report::decode(&bytes).as_ref(), Ok(&report));
    flip(&mut bytes, flip_at, mask);
    if let Ok(tampered) = Report::decode(&bytes) {
        assert!(
            tampered.verify_with(&verifying).is_err(),
            "a tampered report verifies"
        );
    }
});
