//! The VMM's side of the SEV platform boundary (`sev-firmware`): opening the
//! platform `sev-device=` names, handing it the VM and its memory, and the
//! launch typestate ([`launch`]).
//!
//! The platform ([`SevPlatform`]) and the per-VM guest context
//! ([`GuestContext`]: launch, debug and migration commands, the host view)
//! are `sev-firmware`'s traits, with the hardware (`/dev/sev` and KVM) and
//! the emulated AMD Secure Processor behind them. This module adapts the
//! VMM's memory to them: [`RamBacking`] gives the platform the guest memory
//! ([`GuestRam`]), [`SevView`] gives the VMM the platform's host view as a
//! [`MemoryView`].
//!
//! Firmware status codes are data: every firmware failure is a
//! [`SevError::Firmware`] with its status code, and its `Display` is what
//! QMP errors and CLI messages show, e.g.
//! `SEV: LAUNCH_SECRET failed: BAD_MEASUREMENT (0x0B): measurement or MAC check failed`.

pub mod launch;

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;

use sev_firmware::emulated::EmulatedPlatform;
use sev_firmware::hardware::HardwarePlatform;
use sev_firmware::memory::{GuestBacking, OutOfRange as PspOutOfRange, Region};
use sev_firmware::{GuestMemory, HostRegion, HostView, ViewError};

pub use sev_firmware::{
    error_chain, DebugCommands, EncryptionParams, GuestContext, GuestKind, GuestStatus,
    LaunchCommands, LaunchMeasurement, LaunchSession, MigrationCommands, MigrationTarget,
    PlatformCerts, PlatformManagement, PlatformStatus, SevError, SevPlatform,
};

use crate::machine::{Machine, PreVcpuHook};
use crate::memory::{AccessError, Gpa, GuestRam, MemoryView, OutOfRange};

pub use launch::{Launch, Running, Secret, Update};

/// The VMM's guest memory as the platform's [`GuestMemory`].
#[derive(Debug, Clone)]
pub struct RamBacking(Arc<GuestRam>);

impl RamBacking {
    /// Adapts `ram`.
    pub fn new(ram: Arc<GuestRam>) -> Self {
        RamBacking(ram)
    }
}

impl GuestBacking for RamBacking {
    fn regions(&self) -> Vec<Region> {
        // `GuestRam` lists RAM (at 0) before the firmware (ending at 4 GiB):
        // sorted and disjoint, as the trait requires.
        self.0
            .regions()
            .into_iter()
            .map(|(gpa, len)| Region {
                gpa: gpa.raw(),
                len,
            })
            .collect()
    }

    fn read_plain(&self, gpa: u64, buf: &mut [u8]) -> Result<(), PspOutOfRange> {
        self.0.read_plain(Gpa(gpa), buf).map_err(|e| PspOutOfRange {
            gpa: e.gpa,
            len: e.len,
        })
    }

    fn write_plain(&self, gpa: u64, data: &[u8]) -> Result<(), PspOutOfRange> {
        self.0
            .write_plain(Gpa(gpa), data)
            .map_err(|e| PspOutOfRange {
                gpa: e.gpa,
                len: e.len,
            })
    }
}

/// The regions of `ram` with their host mappings.
fn host_regions(ram: &GuestRam) -> Vec<HostRegion> {
    ram.region_info()
        .into_iter()
        .map(|r| HostRegion {
            gpa: r.gpa.raw(),
            len: r.len,
            host_addr: r.host_addr,
        })
        .collect()
}

// SAFETY: `GuestRam`'s regions are mappings it owns for its whole life
// (kept alive by the `Arc`), made once at creation and never changed; the
// VMM only copies bytes in and out of them and never forms Rust references
// into guest memory.
unsafe impl GuestMemory for RamBacking {
    fn host_regions(&self) -> Vec<HostRegion> {
        host_regions(&self.0)
    }
}

/// The platform's host view of a guest as the VMM's [`MemoryView`].
#[derive(Debug, Clone)]
pub struct SevView(Arc<dyn HostView>);

impl SevView {
    /// Adapts `view`.
    pub fn new(view: Arc<dyn HostView>) -> Self {
        SevView(view)
    }
}

fn access_error(e: ViewError) -> AccessError {
    match e {
        ViewError::OutOfRange { gpa, len } => AccessError::OutOfRange(OutOfRange { gpa, len }),
        ViewError::Refused { gpa, source } => AccessError::Backend { gpa, source },
    }
}

impl MemoryView for SevView {
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), AccessError> {
        self.0.read(gpa.raw(), buf).map_err(access_error)
    }

    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), AccessError> {
        self.0.write(gpa.raw(), data).map_err(access_error)
    }
}

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
            .prepare_vm(vm_fd, &host_regions(ram), kind)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn backing_lists_ram_and_firmware_in_order() {
        let ram = Arc::new(GuestRam::new(2 << 20, 0x2_0000).unwrap());
        let b = RamBacking::new(ram);
        assert_eq!(
            b.regions(),
            vec![
                Region {
                    gpa: 0,
                    len: 2 << 20
                },
                Region {
                    gpa: (1 << 32) - 0x2_0000,
                    len: 0x2_0000
                }
            ]
        );
        let mut buf = [0u8; 4];
        assert!(b.read_plain(2 << 20, &mut buf).is_err());
        let hr = b.host_regions();
        assert_eq!(hr.len(), 2);
        assert_eq!((hr[1].gpa, hr[1].len), ((1 << 32) - 0x2_0000, 0x2_0000));
    }

    #[test]
    fn missing_device_says_how_to_get_the_emulator_and_never_falls_back() {
        let dev = crate::config::SevDevice::Hardware(PathBuf::from("/nonexistent/sev"));
        let e = open_platform(&dev).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("/nonexistent/sev"), "{msg}");
        assert!(msg.contains("sev-device=emulated:"), "{msg}");
    }

    #[test]
    fn the_host_view_keeps_out_of_range_errors_apart() {
        let e = access_error(ViewError::OutOfRange { gpa: 5, len: 6 });
        assert!(matches!(
            e,
            AccessError::OutOfRange(OutOfRange { gpa: 5, len: 6 })
        ));
    }
}
