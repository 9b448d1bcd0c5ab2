//! `abi::Policy::parse` (QEMU's `policy=` property, CLI options), as text.
//!
//! Properties: no panic; an accepted policy has no reserved bit set and
//! parses back from its hexadecimal and decimal forms; `Display` never
//! panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_proto::abi::Policy;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(policy) = Policy::parse(&text) else {
        return;
    };
    assert_eq!(policy.reserved_bits(), 0, "accepted reserved bits");
    assert_eq!(text.parse::<Policy>(), Ok(policy));
    let bits = policy.bits();
    assert_eq!(Policy::parse(&format!("{bits:#x}")), Ok(policy));
    assert_eq!(Policy::parse(&format!(" {bits}\n")), Ok(policy));
    assert_eq!(Policy::from_le_bytes(policy.to_le_bytes()), policy);
    let _ = (policy.min_api(), policy.nodbg(), policy.es(), policy.sev());
    let _ = policy.to_string();
});
