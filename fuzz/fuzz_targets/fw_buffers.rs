//! Every firmware command buffer decoder in `abi::buffers` (`from_bytes` of
//! each buffer, through `CommandBuffer::decode` for the per-command types),
//! plus the id/status/state decoders a buffer's fields go through.
//!
//! Every decoder is run on every input (they are cheap and each refuses any
//! other length). Properties: no panic; a decoder accepts exactly its
//! `SIZE`; `decode(encode(b)) == b`; the encoding agrees with the input on
//! every byte except reserved ones, i.e. `encode(decode(x))` is a fixed point;
//! the command id bound to the type reports that buffer size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_proto::abi::buffers::*;
use sev_proto::abi::{CommandBuffer, CommandId, GuestState, PlatformState, Status, StatusCode};

fn check<B: CommandBuffer + PartialEq + std::fmt::Debug>(data: &[u8]) -> Option<B> {
    assert_eq!(B::ID.buffer_len(), Some(B::SIZE), "{} buffer size", B::ID);
    assert_eq!(B::ID.has_buffer(), B::SIZE != 0, "{} has_buffer", B::ID);
    let decoded = B::decode(data);
    assert_eq!(
        decoded.is_ok(),
        data.len() == B::SIZE,
        "{} length check",
        B::ID
    );
    let b = decoded.ok()?;
    let encoded = b.encode();
    assert_eq!(encoded.len(), B::SIZE);
    let again = B::decode(&encoded).expect("an encoding decodes");
    assert_eq!(again, b, "{} round trip", B::ID);
    assert_eq!(again.encode(), encoded, "{} encoding is not stable", B::ID);
    // Only reserved bytes may differ, and they encode as zero.
    for (i, (&x, &y)) in data.iter().zip(&encoded).enumerate() {
        assert!(x == y || y == 0, "{} byte {i:#x} changed", B::ID);
    }
    Some(b)
}

macro_rules! check_all {
    ($data:expr; $($ty:ty),* $(,)?) => {
        $( let _ = check::<$ty>($data); )*
    };
}

fuzz_target!(|data: &[u8]| {
    check_all!(data;
        Init, InitEx, PekCsr, PekCertImport, PdhCertExport, DownloadFirmware, GetId,
        Activate, LaunchStart, LaunchSecret, Attestation, SendStart, ReceiveStart,
        Decommission, Deactivate, LaunchFinish, SendFinish, SendCancel, ReceiveFinish,
        LaunchUpdateData, LaunchUpdateVmsa, LaunchMeasure,
        SendUpdateData, SendUpdateVmsa, ReceiveUpdateData, ReceiveUpdateVmsa,
        DbgDecrypt, DbgEncrypt,
        Shutdown, PlatformReset, PekGen, PdhGen, DfFlush, Nop,
    );

    // The shared buffers through their own `from_bytes`.
    if let Ok(b) = HandleOnly::from_bytes(data) {
        assert_eq!(HandleOnly::from_bytes(&b.to_bytes()), Ok(b));
    }
    if let Ok(b) = LaunchUpdate::from_bytes(data) {
        assert_eq!(LaunchUpdate::from_bytes(&b.to_bytes()), Ok(b));
    }
    if let Ok(b) = Dbg::from_bytes(data) {
        assert_eq!(Dbg::from_bytes(&b.to_bytes()), Ok(b));
    }

    // Buffers the firmware fills in: their decoded views.
    if let Some(s) = check::<PlatformStatus>(data) {
        let _ = s.linux_flags();
        match s.info() {
            // The decoded view keeps bit 0 of OWNER and of CONFIG only.
            Ok(info) => {
                let expected = PlatformStatus {
                    owner: s.owner & PlatformStatus::OWNER_EXTERNAL,
                    config: s.config & PlatformStatus::CONFIG_ES,
                    ..s
                };
                assert_eq!(
                    PlatformStatus::from(info),
                    expected,
                    "status info round trip"
                );
            }
            Err(_) => assert!(PlatformState::from_u8(s.state).is_none()),
        }
    }
    if let Some(s) = check::<GuestStatus>(data) {
        assert_eq!(s.guest_state().ok(), GuestState::from_u8(s.state));
    }

    // Codes read from the firmware / kernel.
    for word in data.chunks_exact(4) {
        let v = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        if let Some(id) = CommandId::from_id(v) {
            assert_eq!(id.id(), v);
            let _ = (id.name(), id.is_platform_command(), id.buffer_len());
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
