//! `vcpu::VcpuState::from_bytes` (vCPU state in snapshots and the migration
//! stream).
//!
//! Properties: no panic; trailing bytes are refused and every field is
//! encoded, so a state that decodes re-encodes to exactly the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sevm::vcpu::VcpuState;

fuzz_target!(|data: &[u8]| {
    let Ok(state) = VcpuState::from_bytes(data) else {
        return;
    };
    let encoded = state.to_bytes();
    assert_eq!(encoded, data, "to_bytes(from_bytes(x)) != x");
    assert_eq!(VcpuState::from_bytes(&encoded).as_ref().ok(), Some(&state));
    let _ = format!("{state:?}");
});
