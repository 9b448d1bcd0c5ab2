//! Test helpers: devices to run against, and the skip rule for hardware
//! tests. Hardware tests need `/dev/sev` and print
//! `SKIPPED: <test>: /dev/sev not available` when it is missing; that skip is
//! allowed even under `SEVM_REQUIRE_ALL=1` (no CI machine has SEV hardware).
//! This crate reads no fixture files.

use std::path::Path;

use crate::device::SevDevice;

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
