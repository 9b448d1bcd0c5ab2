//! `store::sealed::open_sealed` (every platform state file), followed by the
//! identity decoder on its payload, as `StateDir::read_sealed` and the
//! firmware's restore do.
//!
//! The input is opened as is, and also sealed first (so the payload path is
//! reached every run) and then damaged at one byte chosen by the input.
//!
//! Properties: no panic; a container that opens is exactly `seal` of its
//! payload; sealing then opening returns the payload; a damaged container is
//! refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_psp::store::sealed::{open_sealed, seal, OVERHEAD};
use sev_psp::store::PersistentIdentity;
use sevm_fuzz::flip;

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = open_sealed(data) {
        let resealed = seal(payload).expect("an opened payload fits");
        assert_eq!(&resealed[..], data, "seal(open_sealed(x)) != x");
        let _ = PersistentIdentity::decode(payload);
    }

    let sealed = seal(data).expect("fuzz inputs are below the payload limit");
    assert_eq!(sealed.len(), data.len() + OVERHEAD);
    assert_eq!(
        open_sealed(&sealed),
        Ok(data),
        "sealed payload does not open"
    );
    let _ = PersistentIdentity::decode(data);

    let (at, mask) = match data {
        [a, b, ..] => (
            usize::from(u16::from_le_bytes([*a, *b])),
            data[data.len() - 1],
        ),
        _ => (0, 0x80),
    };
    let mut damaged = sealed.to_vec();
    flip(&mut damaged, at, mask);
    assert!(open_sealed(&damaged).is_err(), "a damaged container opened");
    let cut = damaged.len() - 1 - (at % damaged.len());
    assert!(
        open_sealed(&sealed[..cut]).is_err(),
        "a truncated container opened"
    );
});
