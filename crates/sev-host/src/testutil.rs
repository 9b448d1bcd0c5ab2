//! Test helpers: devices to run against, and the skip rule for hardware
//! tests. Hardware tests need `/dev/sev` and print
//! `SKIPPED: <test>: /dev/sev not available` when it is missing; that skip is
//! allowed even under `SEVM_REQUIRE_ALL=1` (no CI machine has SEV hardware).
//! This crate reads no fixture files.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use crate::device::SevDevice;
use crate::{SevVm, SnpVm};

/// `/dev/sev` opened read-write, or `None` after printing the skip message.
/// A node that exists but cannot be opened is a test failure.
pub(crate) fn sev_device_or_skip(test: &str) -> Option<SevDevice> {
    if !Path::new(SevDevice::DEFAULT_PATH).exists() {
        eprintln!("SKIPPED: {test}: /dev/sev not available");
        return None;
    }
    Some(SevDevice::open().expect("/dev/sev exists but cannot be opened read-write"))
}

/// A `SevDevice` over `/dev/null`: every ioctl fails with ENOTTY, so a test
/// can tell an argument error (returned before any ioctl) from an issued
/// command.
pub(crate) fn not_a_sev_device() -> SevDevice {
    SevDevice::open_path("/dev/null").expect("/dev/null")
}

/// An anonymous read-write mapping (`MAP_SHARED` or `MAP_PRIVATE` in
/// `sharing`) standing in for guest RAM, unmapped on drop.
pub(crate) struct Mapping {
    addr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    pub(crate) fn new(len: usize, sharing: libc::c_int) -> Self {
        // SAFETY: anonymous mapping, no fd, no fixed address.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                sharing | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        Self { addr, len }
    }

    pub(crate) fn host_addr(&self) -> u64 {
        self.addr as u64
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `new`.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

/// A VM whose "VM fd" is /dev/null (and its device [`not_a_sev_device`]):
/// every issued ioctl fails with ENOTTY, so argument errors (returned
/// before any ioctl) are told apart from issued commands.
pub(crate) struct Fixture {
    vm: File,
    sev: SevDevice,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        Self {
            vm: File::open("/dev/null").unwrap(),
            sev: not_a_sev_device(),
        }
    }

    /// The VM's SEV commands.
    pub(crate) fn vm(&self) -> SevVm<'_> {
        SevVm::new(self.vm.as_fd(), self.sev.as_fd())
    }

    /// The VM's SEV-SNP commands.
    pub(crate) fn snp_vm(&self) -> SnpVm<'_> {
        SnpVm::new(self.vm.as_fd(), self.sev.as_fd())
    }
}
