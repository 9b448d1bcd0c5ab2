//! `measurement::MeasureBlob::decode` and `verify_measurement` with a fixed
//! TIK.
//!
//! Properties: no panic; a blob that decodes re-encodes to the input; only
//! 48-byte inputs decode; a blob made from the launch measurement verifies,
//! and not after any single-byte change.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_proto::measurement::{launch_measurement_for_api, verify_measurement, MeasureBlob};
use sevm_fuzz::{flip, transport_keys, Cursor};

fuzz_target!(|data: &[u8]| {
    let tik = transport_keys().tik;
    let mut c = Cursor::new(data);
    let [major, minor, build, flip_at, mask] = c.array();
    let policy = c.u32();
    let ld: [u8; 32] = c.array();

    match MeasureBlob::decode(data) {
        Ok(blob) => {
            assert_eq!(&blob.to_bytes()[..], data, "blob round trip");
            let _ = verify_measurement(&tik, major, minor, build, policy, &ld, &blob);
        }
        Err(_) => assert_ne!(data.len(), MeasureBlob::SIZE),
    }

    let mnonce: [u8; 16] = c.array();
    let measurement = launch_measurement_for_api(&tik, major, minor, build, policy, &ld, &mnonce);
    let blob = MeasureBlob {
        measurement,
        mnonce,
    };
    verify_measurement(&tik, major, minor, build, policy, &ld, &blob)
        .expect("the launch measurement verifies");
    let mut bytes = blob.to_bytes();
    flip(&mut bytes, usize::from(flip_at), mask);
    let tampered = MeasureBlob::decode(&bytes).expect("48 bytes decode");
    assert!(verify_measurement(&tik, major, minor, build, policy, &ld, &tampered).is_err());
});
