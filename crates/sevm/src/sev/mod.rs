//! The VMM's side of the SEV platform boundary (`sev-firmware`): opening the
//! platform `sev-device=` names, handing it the VM and its memory, and the
//! launch typestate ([`launch`]).
//!
//! The platform ([`SevPlatform`]) and the per-VM guest context
//! ([`GuestContext`]: launch, debug and migration commands, the host view)
//! are `sev-firmware`'s traits, with the hardware (`/dev/sev` and KVM) and
//! the emulated AMD Secure Processor behind them. The memory adapters live
//! in `sevm-memory` (re-exported here): [`RamBacking`] gives the platform the
//! guest memory, [`SevView`] gives the VMM the platform's host view.
//!
//! Firmware status codes are data: every firmware failure is a
//! [`SevError::Firmware`] with its status code, and its `Display` is what
//! QMP errors and CLI messages show, e.g.
//! `SEV: LAUNCH_SECRET failed: BAD_MEASUREMENT (0x0B): measurement or MAC check failed`.

pub mod es;
pub mod es_state;
pub mod launch;
pub mod snp;

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;

use sev_firmware::emulated::EmulatedPlatform;
use sev_firmware::hardware::HardwarePlatform;

pub use sev_firmware::{
    error_chain, DebugCommands, EncryptionParams, GuestContext, GuestKind, GuestStatus,
    LaunchCommands, LaunchMeasurement, LaunchSession, MigrationCommands, MigrationTarget,
    PlatformCerts, PlatformManagement, PlatformStatus, SevError, SevPlatform, SnpGuestContext,
    VmsaPage,
};

use crate::machine::{Machine, PreVcpuHook};
pub use crate::memory::{RamBacking, SevView};

pub use launch::{Launch, Running, Secret, Update};

/// Opens the platform a `sev-device=` names: a device path (hardware) or
/// `emulated:<state-dir>`, INITed for running guests. A missing device is an
/// error that says how to use the emulated platform instead; sevm never
/// falls back to it.
pub fn open_platform(device: &crate::config::SevDevice) -> Result<Arc<dyn SevPlatform>, SevError> {
    match device {
        crate::config::SevDevice::Hardware(path) => {
            let p = HardwarePlatform::open(path).map_err(|e| {
                SevError::Platform(format!(
                    "cannot use the SEV device {}: {} (this host has no usable SEV hardware; \
                     to use sevm's emulated AMD Secure Processor instead, pass \
                     sev-device=emulated:STATE-DIR explicitly)",
                    path.display(),
                    error_chain(&e)
                ))
            })?;
            Ok(Arc::new(p))
        }
        crate::config::SevDevice::Emulated { state_dir } => {
            let p = EmulatedPlatform::open(state_dir).map_err(|e| {
                SevError::Platform(format!(
                    "cannot open the emulated SEV platform: {}",
                    error_chain(&e)
                ))
            })?;
            p.init_for_guests()?;
            Ok(Arc::new(p))
        }
    }
}

/// The hook that prepares the KVM VM for `platform` before vCPUs exist
/// ([`SevPlatform::prepare_vm`]).
pub fn pre_vcpu_hook(platform: &Arc<dyn SevPlatform>, kind: GuestKind) -> Option<PreVcpuHook> {
    if platform.is_emulated() {
        return None;
    }
    let platform = Arc::clone(platform);
    Some(Box::new(move |vm, ram| {
        // SAFETY: `vm` is a live VM fd for the whole closure call; the
        // borrowed fd does not outlive it.
        let vm_fd = unsafe { BorrowedFd::borrow_raw(vm.as_raw_fd()) };
        platform
            .prepare_vm(vm_fd, &ram.host_regions(), kind)
            .map_err(Into::into)
    }))
}

/// The guest context of `machine` on `platform`; the machine's memory view
/// becomes the platform's host view.
pub fn attach(
    platform: &dyn SevPlatform,
    machine: &mut Machine,
    kind: GuestKind,
) -> Result<Arc<dyn GuestContext>, SevError> {
    // SAFETY: the machine's VM fd is open for as long as `machine` is
    // borrowed; `attach` duplicates it if it keeps it.
    let vm = unsafe { BorrowedFd::borrow_raw(machine.vm_fd().as_raw_fd()) };
    let memory = Arc::new(RamBacking::new(Arc::clone(machine.guest_memory())));
    let guest = platform.attach(vm, memory, kind)?;
    machine.set_memory_view(Arc::new(SevView::new(guest.host_view())));
    Ok(guest)
}

/// The SNP guest context of `machine` on `platform`; the machine's memory
/// view becomes the guest's host view (assigned pages are ciphertext and
/// not host-writable).
pub fn attach_snp(
    platform: &dyn SevPlatform,
    machine: &mut Machine,
) -> Result<Arc<dyn SnpGuestContext>, SevError> {
    // SAFETY: the machine's VM fd is open for as long as `machine` is
    // borrowed; `attach_snp` duplicates it if it keeps it.
    let vm = unsafe { BorrowedFd::borrow_raw(machine.vm_fd().as_raw_fd()) };
    let memory = Arc::new(RamBacking::new(Arc::clone(machine.guest_memory())));
    let guest = platform.attach_snp(vm, memory)?;
    machine.set_memory_view(Arc::new(SevView::new(guest.host_view())));
    Ok(guest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn missing_device_says_how_to_get_the_emulator_and_never_falls_back() {
        let dev = crate::config::SevDevice::Hardware(PathBuf::from("/nonexistent/sev"));
        let e = open_platform(&dev).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("/nonexistent/sev"), "{msg}");
        assert!(msg.contains("sev-device=emulated:"), "{msg}");
    }
}
