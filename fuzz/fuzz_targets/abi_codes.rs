//! The decoders of the values the firmware and the kernel hand back: command
//! ids, status codes, platform and guest state bytes.
//!
//! Properties: no panic; every decoded value encodes back to its input;
//! names and texts exist for every decoded value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_proto::abi::{CommandId, GuestState, PlatformState, Status, StatusCode};

fuzz_target!(|data: &[u8]| {
    // Codes read from the firmware / kernel.
    for word in data.chunks_exact(4) {
        let v = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        if let Some(id) = CommandId::from_id(v) {
            assert_eq!(id.id(), v);
            let _ = (id.name(), id.is_platform_command(), id.has_buffer());
        }
        let code = StatusCode::from(v);
        assert_eq!(code.code(), v);
        if let Some(s) = code.status() {
            assert_eq!(Status::from_code(v), Some(s));
            let _ = (s.name(), s.text(), code.to_string());
        }
    }
    for &b in data {
        if let Some(s) = PlatformState::from_u8(b) {
            assert_eq!(s.to_u8(), b);
        }
        if let Some(s) = GuestState::from_u8(b) {
            assert_eq!(s.to_u8(), b);
            let _ = (s.qmp_name(), s.fw_name());
        }
    }
});
