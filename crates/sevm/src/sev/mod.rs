//! The SEV interface of the VMM: one per-VM interface ([`SevBackend`]) and
//! one platform-wide interface ([`SevPlatform`]), each with two
//! implementations chosen at run time:
//!
//! * [`hardware`]: `/dev/sev` and KVM's `KVM_MEMORY_ENCRYPT_OP` through
//!   `sev-host`. The host view of guest memory is the raw mapping, which on
//!   SEV hardware *is* ciphertext for private pages.
//! * [`emulated`]: the emulated AMD Secure Processor of `sev-psp`, with the
//!   VMM's [`GuestRam`](crate::memory::GuestRam) as its guest backing. The
//!   host view goes through the emulator's memory-encryption model.
//!
//! [`launch`] drives a guest through the launch with a typestate
//! (`Launch<Update>` → measure → `Launch<Secret>` → finish →
//! `Launch<Running>`), so a guest in LUPDATE cannot be finished at compile
//! time; the firmware (real or emulated) still checks the state at run time.
//!
//! Firmware status codes are data: every firmware failure is a
//! [`SevError::Firmware`] with its [`StatusCode`], and its `Display` is what
//! QMP errors and CLI messages show, e.g.
//! `SEV: LAUNCH_SECRET failed: BAD_MEASUREMENT (0x0B): measurement or MAC check failed`.

pub mod emulated;
pub mod hardware;
pub mod launch;

use std::sync::Arc;

use sev_proto::abi::{GuestState, Policy, StatusCode};

use crate::machine::{Machine, PreVcpuHook};
use crate::memory::{Gpa, MemoryView};

pub use launch::{Launch, Running, Secret, Update};

/// A failed SEV operation.
#[derive(Debug, thiserror::Error)]
pub enum SevError {
    /// The firmware ran the command and refused it with a status code.
    #[error("SEV: {command} failed: {status}{}", detail_suffix(.detail))]
    Firmware {
        /// The firmware command (e.g. `LAUNCH_SECRET`).
        command: &'static str,
        /// The firmware status code.
        status: StatusCode,
        /// What the firmware (emulated) or the kernel said in addition.
        detail: String,
    },
    /// The host (kernel, ioctl, device) failed before or around the firmware.
    #[error("SEV: {command} failed: {detail}")]
    Host {
        /// The firmware command or host operation.
        command: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// A guest-physical range is not backed by guest memory.
    #[error("SEV: {command}: guest range {gpa:#x}+{len:#x} is outside guest memory")]
    OutOfRange {
        /// The command.
        command: &'static str,
        /// First address.
        gpa: u64,
        /// Length.
        len: u64,
    },
    /// The platform cannot be used (missing device or state directory, ...).
    #[error("{0}")]
    Platform(String),
    /// The operation is not available on this platform or in this build.
    #[error("SEV: {command} is not supported: {reason}")]
    Unsupported {
        /// The command.
        command: &'static str,
        /// Why.
        reason: String,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

impl SevError {
    /// The firmware status code, when the firmware refused the command.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            SevError::Firmware { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What PLATFORM_STATUS says, plus what the VMM needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformInfo {
    /// Firmware API major version.
    pub api_major: u8,
    /// Firmware API minor version.
    pub api_minor: u8,
    /// Firmware build id.
    pub build: u8,
    /// The platform can launch SEV-ES guests.
    pub es_capable: bool,
}

/// The memory-encryption parameters a guest must use on this platform
/// (CPUID 0x8000001F on hardware, the emulated platform's values otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptionParams {
    /// The C-bit position.
    pub cbitpos: u32,
    /// The host's physical address bit reduction (QEMU reports 1 to guests,
    /// SEV-REFERENCE 9.2).
    pub reduced_phys_bits: u32,
}

/// What GUEST_STATUS returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestInfo {
    /// The firmware handle.
    pub handle: u32,
    /// The policy.
    pub policy: Policy,
    /// The guest state (`None` for a value no source assigns).
    pub state: Option<GuestState>,
}

/// The platform-wide SEV interface (`/dev/sev` or the emulated platform).
pub trait SevPlatform: Send + Sync + std::fmt::Debug {
    /// `true` for the emulated AMD Secure Processor.
    fn is_emulated(&self) -> bool;
    /// Human-readable description (`/dev/sev`, `emulated platform in DIR`).
    fn describe(&self) -> String;
    /// PLATFORM_STATUS.
    fn status(&self) -> Result<PlatformInfo, SevError>;
    /// PDH_CERT_EXPORT: the PDH certificate and the PEK ‖ OCA ‖ CEK chain.
    fn pdh_cert_export(&self) -> Result<(Vec<u8>, Vec<u8>), SevError>;
    /// GET_ID: the chip id (64 bytes per socket).
    fn get_id(&self) -> Result<Vec<u8>, SevError>;
    /// The C-bit position and physical address reduction of this platform.
    fn encryption_params(&self) -> Result<EncryptionParams, SevError>;
    /// Work that must happen after the VM and its memory slots exist but
    /// before vCPUs are created (hardware: `KVM_SEV_INIT`/`KVM_SEV_ES_INIT`
    /// and `KVM_MEMORY_ENCRYPT_REG_REGION` for every region).
    fn pre_vcpu_hook(&self, es: bool) -> Option<PreVcpuHook>;
    /// This platform's AMD CA chain (ASK ‖ ARK) when the platform itself can
    /// give it (the emulated platform); `None` on hardware, where it comes
    /// from AMD's key distribution service out of band.
    fn amd_chain(&self) -> Option<Vec<u8>> {
        None
    }
    /// The per-VM interface for `machine`.
    fn attach(&self, machine: &Machine, es: bool) -> Result<Arc<dyn SevBackend>, SevError>;
}

/// The per-VM SEV interface: the guest commands of SEV-REFERENCE 2, at the
/// level of KVM's ioctls (guest ranges as guest-physical addresses, host
/// buffers as slices).
pub trait SevBackend: Send + Sync + std::fmt::Debug {
    /// LAUNCH_START (with the owner's GODH certificate and session, or
    /// neither for an unattested launch; `share_handle` non-zero shares that
    /// guest's key, QEMU's `handle=`); the kernel/emulator then ACTIVATEs
    /// the guest. Returns the firmware handle.
    fn launch_start(
        &self,
        share_handle: u32,
        policy: Policy,
        godh: Option<&[u8]>,
        session: Option<&[u8]>,
    ) -> Result<u32, SevError>;
    /// LAUNCH_UPDATE_DATA: measure `len` bytes at `gpa` and encrypt them in
    /// place.
    fn launch_update_data(&self, gpa: Gpa, len: u64) -> Result<(), SevError>;
    /// LAUNCH_UPDATE_VMSA for every vCPU (SEV-ES).
    fn launch_update_vmsa(&self) -> Result<(), SevError>;
    /// LAUNCH_MEASURE: MEASUREMENT ‖ MNONCE.
    fn launch_measure(&self) -> Result<[u8; 48], SevError>;
    /// LAUNCH_SECRET: the owner's packet header and encrypted payload, into
    /// guest memory at `gpa` (GUEST_LEN = TRANS_LEN = `secret.len()`).
    fn launch_secret(&self, header: &[u8], gpa: Gpa, secret: &[u8]) -> Result<(), SevError>;
    /// LAUNCH_FINISH.
    fn launch_finish(&self) -> Result<(), SevError>;
    /// GUEST_STATUS.
    fn guest_status(&self) -> Result<GuestInfo, SevError>;
    /// ATTESTATION with the caller's nonce: the 208-byte report.
    fn attestation_report(&self, mnonce: [u8; 16]) -> Result<Vec<u8>, SevError>;
    /// DBG_DECRYPT of `buf.len()` bytes at `gpa`.
    fn dbg_decrypt(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), SevError>;
    /// DBG_ENCRYPT of `data` to `gpa`.
    fn dbg_encrypt(&self, data: &[u8], gpa: Gpa) -> Result<(), SevError>;
    /// SEND_START towards a target (its PDH, PEK ‖ OCA ‖ CEK, ASK ‖ ARK):
    /// the policy and the session buffer.
    fn send_start(
        &self,
        pdh: &[u8],
        plat_certs: &[u8],
        amd_certs: &[u8],
    ) -> Result<(Policy, Vec<u8>), SevError>;
    /// SEND_UPDATE_DATA of `len` bytes at `gpa` (within one page): packet
    /// header and transport buffer.
    fn send_update_data(&self, gpa: Gpa, len: u64) -> Result<(Vec<u8>, Vec<u8>), SevError>;
    /// [`SevBackend::send_update_data`] into caller buffers (resized to the
    /// packet header and `len`), so a migration can reuse them page after
    /// page. The default calls `send_update_data`.
    fn send_update_data_into(
        &self,
        gpa: Gpa,
        len: u64,
        header: &mut Vec<u8>,
        trans: &mut Vec<u8>,
    ) -> Result<(), SevError> {
        let (h, t) = self.send_update_data(gpa, len)?;
        *header = h;
        *trans = t;
        Ok(())
    }
    /// SEND_FINISH.
    fn send_finish(&self) -> Result<(), SevError>;
    /// SEND_CANCEL.
    fn send_cancel(&self) -> Result<(), SevError>;
    /// RECEIVE_START with the source's policy, PDH and session; returns the
    /// new handle.
    fn receive_start(&self, policy: Policy, pdh: &[u8], session: &[u8]) -> Result<u32, SevError>;
    /// RECEIVE_UPDATE_DATA of one packet into `gpa`.
    fn receive_update_data(&self, header: &[u8], gpa: Gpa, trans: &[u8]) -> Result<(), SevError>;
    /// RECEIVE_FINISH.
    fn receive_finish(&self) -> Result<(), SevError>;
    /// The host view of this guest's memory (what a hypervisor sees).
    fn host_view(&self) -> Arc<dyn MemoryView>;
}

/// Opens the platform a `sev-device=` names: a device path (hardware) or
/// `emulated:<state-dir>`.
pub fn open_platform(device: &crate::config::SevDevice) -> Result<Arc<dyn SevPlatform>, SevError> {
    match device {
        crate::config::SevDevice::Hardware(path) => {
            Ok(Arc::new(hardware::HardwarePlatform::open(path)?))
        }
        crate::config::SevDevice::Emulated { state_dir } => {
            Ok(Arc::new(emulated::EmulatedPlatform::open(state_dir)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sev_proto::abi::Status;

    #[test]
    fn firmware_errors_carry_the_status_code_in_the_text() {
        let e = SevError::Firmware {
            command: "LAUNCH_SECRET",
            status: StatusCode(Status::BadMeasurement.code()),
            detail: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "SEV: LAUNCH_SECRET failed: BAD_MEASUREMENT (0x0B): measurement or MAC check failed"
        );
        assert_eq!(e.status(), Some(StatusCode(0x0B)));
        let e = SevError::Firmware {
            command: "LAUNCH_START",
            status: StatusCode(0x42),
            detail: "KVM_SEV_LAUNCH_START".into(),
        };
        assert_eq!(
            e.to_string(),
            "SEV: LAUNCH_START failed: UNKNOWN (0x42): status code not assigned (KVM_SEV_LAUNCH_START)"
        );
        let e = SevError::Host {
            command: "LAUNCH_MEASURE",
            detail: "ioctl failed".into(),
        };
        assert_eq!(e.status(), None);
    }
}
