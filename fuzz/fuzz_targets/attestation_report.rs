//! `attestation::Report::decode`.
//!
//! Properties: no panic; every byte of a report is signed, fixed or part of
//! R/S, so a report that decodes re-encodes to exactly the input;
//! verification of a hostile report never panics; a report signed with a
//! fixed key verifies, and stops verifying when any byte of it changes.
//!
//! ECDSA P-384 is slow under the sanitizer, so the genuine report is signed
//! once and each run spends one verification on a tampered copy.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use p384::ecdsa::VerifyingKey;
use sev_proto::attestation::{Report, REPORT_LEN};
use sevm_fuzz::{flip, signing_key, Cursor};

struct Fixed {
    key: VerifyingKey,
    report: [u8; REPORT_LEN],
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let key = signing_key();
        let report =
            Report::sign([0x11; 16], [0x22; 32], 0x0005_0001, &key).expect("signing works");
        let verifying = VerifyingKey::from(&key);
        report
            .verify_with(&verifying)
            .expect("a signed report verifies");
        let bytes = report.encode();
        assert_eq!(Report::decode(&bytes).as_ref(), Ok(&report));
        Fixed {
            key: verifying,
            report: bytes,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixed = fixed();

    if let Ok(report) = Report::decode(data) {
        assert_eq!(&report.encode()[..], data, "encode(decode(x)) != x");
        assert_eq!(
            &report.signed_bytes()[..],
            &data[..report.signed_bytes().len()]
        );
        let _ = (report.mnonce(), report.launch_digest(), report.policy());
        let _ = (
            report.sig_usage(),
            report.sig_algorithm(),
            report.signature(),
        );
        let _ = report.verify_with(&fixed.key);
        return;
    }

    let mut c = Cursor::new(data);
    let flip_at = usize::from(c.u8());
    let mask = c.u8();
    let mut bytes = fixed.report;
    flip(&mut bytes, flip_at, mask);
    if let Ok(tampered) = Report::decode(&bytes) {
        assert!(
            tampered.verify_with(&fixed.key).is_err(),
            "a tampered report verifies"
        );
    }
});
