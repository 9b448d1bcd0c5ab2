//! What hardware SEV support this host has: the `/dev/sev` device, the
//! kvm_amd module parameters, CPUID, and whether KVM accepts
//! `KVM_MEMORY_ENCRYPT_OP` on a VM.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::cpuid::{cpuid_8000_001f, SevCpuid};
use crate::device::{PlatformStatus, SevDevice};
use crate::error::Result;
use crate::ioctl::{KVM_CREATE_VM, KVM_MEMORY_ENCRYPT_OP};
use crate::HostError;

/// The usual KVM device node.
pub const KVM_PATH: &str = "/dev/kvm";
/// Where kvm_amd publishes its parameters.
pub const KVM_AMD_PARAMS_DIR: &str = "/sys/module/kvm_amd/parameters";

/// kvm_amd module parameters (`None`: not readable, e.g. module not loaded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvmAmdParams {
    /// `sev`.
    pub sev: Option<bool>,
    /// `sev_es`.
    pub sev_es: Option<bool>,
    /// `sev_snp`.
    pub sev_snp: Option<bool>,
}

/// Read the kvm_amd parameters from [`KVM_AMD_PARAMS_DIR`].
#[must_use]
pub fn kvm_amd_params() -> KvmAmdParams {
    kvm_amd_params_in(Path::new(KVM_AMD_PARAMS_DIR))
}

/// Read the kvm_amd parameters from `dir`.
#[must_use]
pub fn kvm_amd_params_in(dir: &Path) -> KvmAmdParams {
    let read = |name: &str| {
        fs::read_to_string(dir.join(name))
            .ok()
            .and_then(|s| parse_bool_param(&s))
    };
    KvmAmdParams {
        sev: read("sev"),
        sev_es: read("sev_es"),
        sev_snp: read("sev_snp"),
    }
}

/// A boolean module parameter as sysfs prints it: `Y`/`N` (bool params) or
/// `1`/`0` (older kernels declared `sev` as an int).
#[must_use]
pub fn parse_bool_param(text: &str) -> Option<bool> {
    match text.trim() {
        "Y" | "y" | "1" => Some(true),
        "N" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// Create a VM of the default machine type on the KVM device at `kvm_path`.
pub(crate) fn create_vm(kvm_path: &Path) -> Result<OwnedFd> {
    let kvm = OpenOptions::new()
        .read(true)
        .write(true)
        .open(kvm_path)
        .map_err(|source| HostError::Open {
            path: kvm_path.to_path_buf(),
            source,
        })?;
    // SAFETY: KVM_CREATE_VM takes an integer machine type (0, the default)
    // by value; no memory is passed.
    let fd = unsafe {
        libc::ioctl(
            kvm.as_raw_fd(),
            KVM_CREATE_VM as libc::Ioctl,
            0 as libc::c_ulong,
        )
    };
    if fd < 0 {
        return Err(HostError::Ioctl {
            cmd: "KVM_CREATE_VM",
            errno: io::Error::last_os_error(),
        });
    }
    // SAFETY: a non-negative return of KVM_CREATE_VM is a new fd that nothing
    // else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether KVM accepts `KVM_MEMORY_ENCRYPT_OP` on `vm`: the kernel answers a
/// NULL argument with 0 when SEV is enabled and ENOTTY when it is not.
///
/// # Errors
/// [`HostError::Ioctl`] for any other errno.
pub fn kvm_memory_encrypt_op_supported(vm: BorrowedFd<'_>) -> Result<bool> {
    // SAFETY: a NULL argument is the documented probe; the kernel reads and
    // writes nothing.
    let rc = unsafe {
        libc::ioctl(
            vm.as_raw_fd(),
            KVM_MEMORY_ENCRYPT_OP as libc::Ioctl,
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let errno = io::Error::last_os_error();
    if errno.raw_os_error() == Some(libc::ENOTTY) {
        Ok(false)
    } else {
        Err(HostError::Ioctl {
            cmd: "KVM_MEMORY_ENCRYPT_OP",
            errno,
        })
    }
}

/// Create a throw-away VM on `kvm_path` and probe it with
/// [`kvm_memory_encrypt_op_supported`].
///
/// # Errors
/// [`HostError::Open`] if the KVM device cannot be opened,
/// [`HostError::Ioctl`] if the VM cannot be created or the probe fails oddly.
pub fn kvm_sev_supported(kvm_path: &Path) -> Result<bool> {
    let vm = create_vm(kvm_path)?;
    kvm_memory_encrypt_op_supported(vm.as_fd())
}

/// What a host offers for hardware SEV.
#[derive(Debug)]
pub struct Probe {
    /// The `/dev/sev` node exists.
    pub sev_device: bool,
    /// PLATFORM_STATUS through `/dev/sev`, or why it could not be had
    /// (`None` when the node does not exist).
    pub platform: Option<std::result::Result<PlatformStatus, HostError>>,
    /// The KVM node exists.
    pub kvm_device: bool,
    /// KVM accepts `KVM_MEMORY_ENCRYPT_OP` (None: could not check).
    pub kvm_sev: Option<bool>,
    /// kvm_amd module parameters.
    pub kvm_amd: KvmAmdParams,
    /// CPUID Fn8000_001F.
    pub cpuid: SevCpuid,
}

impl Probe {
    /// Everything needed to launch an SEV guest on hardware is there: the
    /// device answers PLATFORM_STATUS, KVM accepts SEV commands, and the CPU
    /// reports SEV.
    #[must_use]
    pub fn hardware_sev_usable(&self) -> bool {
        matches!(self.platform, Some(Ok(_))) && self.kvm_sev == Some(true) && self.cpuid.sev
    }
}

/// Probe the default paths ([`SevDevice::DEFAULT_PATH`], [`KVM_PATH`]).
#[must_use]
pub fn probe() -> Probe {
    probe_paths(Path::new(SevDevice::DEFAULT_PATH), Path::new(KVM_PATH))
}

/// Probe with explicit device paths. Never fails: each part records what it
/// found.
#[must_use]
pub fn probe_paths(sev_path: &Path, kvm_path: &Path) -> Probe {
    let sev_device = sev_path.exists();
    let platform =
        sev_device.then(|| SevDevice::open_path(sev_path).and_then(|dev| dev.platform_status()));
    let kvm_device = kvm_path.exists();
    let kvm_sev = if kvm_device {
        match kvm_sev_supported(kvm_path) {
            Ok(supported) => Some(supported),
            Err(e) => {
                log::debug!("KVM SEV probe failed: {e}");
                None
            }
        }
    } else {
        None
    };
    Probe {
        sev_device,
        platform,
        kvm_device,
        kvm_sev,
        kvm_amd: kvm_amd_params(),
        cpuid: cpuid_8000_001f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bool_params() {
        assert_eq!(parse_bool_param("Y\n"), Some(true));
        assert_eq!(parse_bool_param("1\n"), Some(true));
        assert_eq!(parse_bool_param("N"), Some(false));
        assert_eq!(parse_bool_param("0"), Some(false));
        assert_eq!(parse_bool_param(""), None);
        assert_eq!(parse_bool_param("maybe"), None);
    }

    #[test]
    fn params_from_a_missing_dir_are_unknown() {
        let p = kvm_amd_params_in(Path::new("/nonexistent/sevm-test/parameters"));
        assert_eq!(p, KvmAmdParams::default());
    }

    #[test]
    fn probe_with_missing_devices() {
        let p = probe_paths(
            Path::new("/nonexistent/sevm-test/sev"),
            Path::new("/nonexistent/sevm-test/kvm"),
        );
        assert!(!p.sev_device && !p.kvm_device);
        assert!(p.platform.is_none());
        assert_eq!(p.kvm_sev, None);
        assert!(!p.hardware_sev_usable());
    }

    #[test]
    fn probe_with_a_non_sev_device() {
        // /dev/null stands in for /dev/sev: it opens, PLATFORM_STATUS fails
        // with ENOTTY, and the probe records that instead of failing.
        let p = probe_paths(
            Path::new("/dev/null"),
            Path::new("/nonexistent/sevm-test/kvm"),
        );
        assert!(p.sev_device);
        assert!(matches!(
            p.platform,
            Some(Err(HostError::Ioctl {
                cmd: "SEV_PLATFORM_STATUS",
                ..
            }))
        ));
        assert!(!p.hardware_sev_usable());
    }

    #[test]
    fn kvm_null_probe() {
        if !Path::new(KVM_PATH).exists() {
            eprintln!("SKIPPED: kvm_null_probe: {KVM_PATH} not available");
            return;
        }
        // Whatever this KVM is, the NULL probe answers yes or no, not an error.
        let supported = kvm_sev_supported(Path::new(KVM_PATH)).unwrap();
        if supported {
            eprintln!("kvm_null_probe: KVM accepts KVM_MEMORY_ENCRYPT_OP");
        }
    }

    #[test]
    fn kvm_missing_device_is_open_error() {
        let err = kvm_sev_supported(Path::new("/nonexistent/sevm-test/kvm")).unwrap_err();
        assert!(
            matches!(err, HostError::Open { ref path, .. } if path == Path::new("/nonexistent/sevm-test/kvm"))
        );
    }
}
