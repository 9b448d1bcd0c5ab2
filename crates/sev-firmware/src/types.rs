//! The decoded protocol values that cross the boundary.
//!
//! Bytes are decoded once, where they enter (a file, a QMP argument, a
//! firmware answer), and their lengths are checked there; the
//! implementations encode them again for the ioctl or the emulated firmware.

use std::fmt;
use std::path::PathBuf;

use sev_proto::abi::{ApiVersion, GuestState, Owner, PlatformState, Policy};
use sev_proto::cert::chain::{CaChain, PlatformChain};
use sev_proto::cert::sev::Certificate;
use sev_proto::session::SessionBuffer;

/// Which platform an implementation talks to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PlatformKind {
    /// AMD hardware through a SEV device node (`/dev/sev`).
    Hardware(PathBuf),
    /// The emulated AMD Secure Processor of a platform state directory.
    Emulated(PathBuf),
}

impl fmt::Display for PlatformKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformKind::Hardware(p) => write!(f, "hardware ({})", p.display()),
            PlatformKind::Emulated(p) => write!(f, "emulated ({})", p.display()),
        }
    }
}

/// PLATFORM_STATUS, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformStatus {
    /// The running firmware's API version.
    pub api: ApiVersion,
    /// The firmware build id.
    pub build: u8,
    /// The platform state as the firmware reports it (see
    /// [`PlatformStatus::state`]).
    pub state_code: u8,
    /// Who owns the platform.
    pub owner: Owner,
    /// SEV-ES was enabled at INIT.
    pub es_enabled: bool,
    /// The number of guests.
    pub guest_count: u32,
}

impl PlatformStatus {
    /// The platform state, `None` for a value the API does not assign.
    pub fn state(&self) -> Option<PlatformState> {
        PlatformState::from_u8(self.state_code)
    }
}

/// The memory-encryption parameters a guest must use on this platform
/// (CPUID 0x8000001F on hardware, the emulated platform's values otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptionParams {
    /// The C-bit position.
    pub cbitpos: u32,
    /// The host's physical address bit reduction (QEMU reports 1 to guests,
    /// docs/protocol/memory.md#cbitpos).
    pub reduced_phys_bits: u32,
}

/// The kind of guest a VM runs, which decides how the platform prepares
/// the VM and which ASIDs its guest takes. SEV-SNP adds a kind here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GuestKind {
    /// SEV: encrypted memory.
    Sev,
    /// SEV-ES: encrypted memory and register state.
    SevEs,
    /// SEV-SNP: SEV-ES with integrity (the RMP) and its own guest context
    /// ([`crate::SevPlatform::attach_snp`]).
    Snp,
}

impl GuestKind {
    /// The kind a guest policy asks for (the ES bit).
    pub fn of_policy(policy: Policy) -> Self {
        if policy.es() {
            GuestKind::SevEs
        } else {
            GuestKind::Sev
        }
    }

    /// Whether the guest has encrypted register state (SEV-ES or later).
    pub fn encrypts_registers(self) -> bool {
        matches!(self, GuestKind::SevEs | GuestKind::Snp)
    }
}

/// What GUEST_STATUS returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestStatus {
    /// The firmware handle.
    pub handle: u32,
    /// The policy.
    pub policy: Policy,
    /// The guest state (`None` for a value the API does not assign).
    pub state: Option<GuestState>,
}

/// What LAUNCH_MEASURE returns: MEASUREMENT ‖ MNONCE.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LaunchMeasurement([u8; LaunchMeasurement::LEN]);

impl LaunchMeasurement {
    /// Encoded size: the 32-byte HMAC and the 16-byte nonce.
    pub const LEN: usize = 48;

    /// From the firmware's 48 bytes.
    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        LaunchMeasurement(bytes)
    }

    /// MEASUREMENT ‖ MNONCE, as QMP's `query-sev-launch-measure` reports it.
    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    /// The 32-byte MEASUREMENT (the HMAC under the TIK).
    pub fn measurement(&self) -> [u8; 32] {
        let mut m = [0u8; 32];
        m.copy_from_slice(&self.0[..32]);
        m
    }

    /// The 16-byte MNONCE.
    pub fn mnonce(&self) -> [u8; 16] {
        let mut n = [0u8; 16];
        n.copy_from_slice(&self.0[32..]);
        n
    }
}

impl fmt::Debug for LaunchMeasurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LaunchMeasurement")
            .field(&HexBytes(&self.0))
            .finish()
    }
}

struct HexBytes<'a>(&'a [u8]);

impl fmt::Debug for HexBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What PDH_CERT_EXPORT returns: the PDH certificate and PEK ‖ OCA ‖ CEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformCerts {
    /// The Platform Diffie-Hellman key's certificate.
    pub pdh: Certificate,
    /// PEK ‖ OCA ‖ CEK.
    pub chain: PlatformChain,
}

/// The SNP certificates of a VCEK: the ARK, the ASK and the VCEK, each one
/// DER X.509 certificate (what AMD's key distribution service serves, and
/// what a host hands guests in the extended request's certificate table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcekChain {
    /// The AMD root key's certificate (self-signed).
    pub ark: Vec<u8>,
    /// The AMD SEV key's certificate (signed by the ARK).
    pub ask: Vec<u8>,
    /// The VCEK's certificate (signed by the ASK).
    pub vcek: Vec<u8>,
}

/// The guest owner's side of an attested LAUNCH_START: the GODH
/// certificate and the session buffer made for this platform's PDH (QEMU's
/// `dh-cert-file` and `session-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSession {
    /// The owner's Diffie-Hellman certificate.
    pub godh: Certificate,
    /// The wrapped transport keys and the policy MAC.
    pub session: SessionBuffer,
}

/// The platform a guest is sent to (SEND_START): its PDH and PEK ‖ OCA ‖
/// CEK, and the AMD ASK ‖ ARK when the sender has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationTarget {
    /// The target's PDH certificate.
    pub pdh: Certificate,
    /// The target's PEK ‖ OCA ‖ CEK.
    pub chain: PlatformChain,
    /// ASK ‖ ARK, when known (without them the firmware checks the chain up
    /// to the CEK only).
    pub amd: Option<CaChain>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurement_splits_into_hmac_and_nonce() {
        let mut b = [0u8; 48];
        b[..32].fill(1);
        b[32..].fill(2);
        let m = LaunchMeasurement::from_bytes(b);
        assert_eq!(m.measurement(), [1; 32]);
        assert_eq!(m.mnonce(), [2; 16]);
        assert_eq!(m.as_bytes(), &b);
        assert!(format!("{m:?}").contains("0101"));
    }

    #[test]
    fn status_state_decodes_or_is_none() {
        let mut s = PlatformStatus {
            api: ApiVersion::new(1, 55),
            build: 21,
            state_code: 1,
            owner: Owner::SelfOwned,
            es_enabled: false,
            guest_count: 0,
        };
        assert_eq!(s.state(), Some(PlatformState::Init));
        s.state_code = 9;
        assert_eq!(s.state(), None);
        assert_eq!(
            PlatformKind::Emulated("/x".into()).to_string(),
            "emulated (/x)"
        );
        assert_eq!(
            GuestKind::of_policy(Policy::from_bits(0x5)),
            GuestKind::SevEs
        );
        assert_eq!(GuestKind::of_policy(Policy::from_bits(0x1)), GuestKind::Sev);
        assert!(GuestKind::SevEs.encrypts_registers());
    }
}
