//! `Guid`'s `FromStr` (secret GUIDs given on command lines and in files).
//!
//! Properties: no panic; an accepted GUID prints in the canonical form,
//! which parses back to the same GUID and matches the input up to case and
//! surrounding whitespace.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_proto::Guid;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(guid) = text.parse::<Guid>() else {
        return;
    };
    let shown = guid.to_string();
    assert_eq!(shown.parse::<Guid>(), Ok(guid));
    assert_eq!(
        shown,
        text.trim().to_ascii_lowercase(),
        "not the input's GUID"
    );
    assert_eq!(Guid::from_bytes(guid.to_bytes()), guid);
});
