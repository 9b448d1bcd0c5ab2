//! `snp::report::AttestationReport::decode`: the SNP attestation report
//! (versions 2, 3 and 5).
//!
//! Input: a flags byte (bit 0: also run the tamper check), the 1184-byte
//! report (zero-padded when the input is short), then a 16-bit index and a
//! bit mask.
//!
//! Properties: no panic; a report that decodes re-encodes to exactly the
//! input (every byte is a field, checked zero, or part of R and S);
//! verification of a hostile report with a fixed key never panics; a report
//! signed with that key verifies, and stops verifying (or decoding) when any
//! bit of it changes.
//!
//! ECDSA P-384 is slow under the sanitizer, so the genuine report is signed
//! once and only inputs with bit 0 spend a verification on a tampered copy.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use p384::ecdsa::VerifyingKey;
use sev_proto::snp::report::{AttestationReport, REPORT_LEN};
use sevm_fuzz::{flip, signing_key, Cursor};

struct Genuine {
    key: VerifyingKey,
    bytes: [u8; REPORT_LEN],
}

fn genuine() -> &'static Genuine {
    static GENUINE: OnceLock<Genuine> = OnceLock::new();
    GENUINE.get_or_init(|| {
        let key = signing_key();
        let mut report = sevm_fuzz::snp_report();
        report.sign(&key).expect("signing works");
        let key = VerifyingKey::from(&key);
        report
            .verify_signature(&key)
            .expect("a signed report verifies");
        Genuine {
            key,
            bytes: report.encode(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let flags = c.u8();
    let bytes: [u8; REPORT_LEN] = c.array();
    match AttestationReport::decode(&bytes) {
        Ok(report) => {
            assert_eq!(report.encode(), bytes, "encode(decode(report)) != report");
            assert_eq!(report.signed_bytes()[..], bytes[..0x2A0]);
            let _ = report.verify_signature(&genuine().key);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if flags & 1 != 0 {
        let genuine = genuine();
        let at = usize::from(c.u16());
        let mask = c.u8();
        let mut tampered = genuine.bytes;
        flip(&mut tampered, at, mask);
        if let Ok(report) = AttestationReport::decode(&tampered) {
            assert!(
                report.verify_signature(&genuine.key).is_err(),
                "a tampered report verifies (byte {})",
                at % REPORT_LEN
            );
        }
    }
});
