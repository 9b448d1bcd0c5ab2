//! The SEV firmware ABI (docs/protocol/abi.md, docs/protocol/commands.md): status codes,
//! command identifiers, platform and guest states, the guest policy, and the
//! lengths of the buffers the commands exchange.
//!
//! Everything here is plain data with explicit little-endian encoding; the
//! crate forbids `unsafe`, so no buffer is ever transmuted.

pub mod command;
pub mod policy;
pub mod state;
pub mod status;

pub use command::CommandId;
pub use policy::{ApiVersion, Policy, PolicyError};
pub use state::{GuestState, Owner, PlatformState, PlatformStatusInfo};
pub use status::{Status, StatusCode};

/// Length of one SEV-format certificate (OCA, CEK, PEK, PDH, GODH):
/// 0x824 bytes (docs/protocol/certificates.md#sev-certificate).
pub const SEV_CERT_LEN: usize = 0x824;

/// Length of the platform chain PEK ‖ OCA ‖ CEK written by PDH_CERT_EXPORT
/// and read by SEND_START: 3 × 0x824 = 0x186C bytes (docs/protocol/commands.md#buffers).
pub const PLATFORM_CHAIN_LEN: usize = 0x186C;

/// Length of the session buffer of LAUNCH_START / SEND_START /
/// RECEIVE_START: 0x80 bytes (docs/protocol/session.md#session-buffer).
pub const SESSION_LEN: usize = 0x80;

/// Length of the packet header of LAUNCH_SECRET and SEND/RECEIVE_UPDATE_*:
/// 0x34 bytes (docs/protocol/secret.md#packet-header).
pub const PACKET_HEADER_LEN: usize = 0x34;

/// Length of the LAUNCH_MEASURE output (MEASUREMENT ‖ MNONCE): 0x30 bytes
/// (docs/protocol/measurement.md#launch-measure).
pub const MEASURE_LEN: usize = 0x30;

/// Length of the ATTESTATION report: 0xD0 bytes (docs/protocol/measurement.md#attestation-report).
pub const ATTESTATION_REPORT_LEN: usize = 0xD0;

/// Length of the GET_ID output for one socket: 64 bytes (docs/protocol/commands.md#buffers).
pub const GET_ID_LEN: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_reference() {
        assert_eq!(SEV_CERT_LEN, 2084);
        assert_eq!(PLATFORM_CHAIN_LEN, 3 * SEV_CERT_LEN);
        assert_eq!(SESSION_LEN, 128);
        assert_eq!(PACKET_HEADER_LEN, 52);
        assert_eq!(MEASURE_LEN, 48);
        assert_eq!(ATTESTATION_REPORT_LEN, 208);
        assert_eq!(GET_ID_LEN, 64);
    }
}
