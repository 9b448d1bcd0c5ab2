//! What hardware SEV support this host has: the `/dev/sev` device, the
//! kvm_amd module parameters, CPUID, and whether KVM accepts
//! `KVM_MEMORY_ENCRYPT_OP` on a VM.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::abi::{vm_type, KVM_CAP_VM_TYPES, KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES};
use crate::cpuid::{cpuid_8000_001f, SevCpuid};
use crate::device::{PlatformStatus, SevDevice};
use crate::error::Result;
use crate::ioctl::{
    KVM_CHECK_EXTENSION, KVM_CREATE_VM, KVM_GET_DEVICE_ATTR, KVM_MEMORY_ENCRYPT_OP,
};
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
    let kvm = open_kvm(kvm_path)?;
    create_vm_of_type(kvm.as_fd(), vm_type::DEFAULT)
}

/// Open the KVM device at `kvm_path` read-write.
///
/// # Errors
/// [`HostError::Open`] naming the path.
pub fn open_kvm(kvm_path: &Path) -> Result<OwnedFd> {
    let kvm = OpenOptions::new()
        .read(true)
        .write(true)
        .open(kvm_path)
        .map_err(|source| HostError::Open {
            path: kvm_path.to_path_buf(),
            source,
        })?;
    Ok(kvm.into())
}

/// KVM_CREATE_VM with machine type `vm_type` ([`vm_type`]; an SNP guest
/// needs [`vm_type::SNP`]) on an open KVM device.
///
/// # Errors
/// [`HostError::Ioctl`] (EINVAL for a type this KVM does not support; see
/// [`supported_vm_types`]).
pub fn create_vm_of_type(kvm: BorrowedFd<'_>, vm_type: u64) -> Result<OwnedFd> {
    let machine_type = libc::c_ulong::try_from(vm_type).map_err(|_| HostError::Ioctl {
        cmd: "KVM_CREATE_VM",
        errno: io::Error::from_raw_os_error(libc::EINVAL),
    })?;
    // SAFETY: KVM_CREATE_VM takes an integer machine type by value; no memory
    // is passed.
    let fd = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_CREATE_VM as libc::Ioctl, machine_type) };
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

/// KVM_CHECK_EXTENSION on `fd` (`/dev/kvm` or a VM fd): the capability's
/// value, 0 when KVM does not have it.
///
/// # Errors
/// [`HostError::Ioctl`] if the ioctl itself fails (e.g. `fd` is not KVM).
pub fn check_extension(fd: BorrowedFd<'_>, cap: u32) -> Result<i32> {
    // SAFETY: KVM_CHECK_EXTENSION takes the capability number by value; no
    // memory is passed.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            KVM_CHECK_EXTENSION as libc::Ioctl,
            libc::c_ulong::from(cap),
        )
    };
    if rc < 0 {
        return Err(HostError::Ioctl {
            cmd: "KVM_CHECK_EXTENSION",
            errno: io::Error::last_os_error(),
        });
    }
    Ok(rc)
}

/// The machine types a KVM offers (`KVM_CAP_VM_TYPES`: bit *n* set when type
/// *n* can be created).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmTypes(u32);

impl VmTypes {
    /// From the capability's raw bit mask.
    #[must_use]
    pub const fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    /// The raw bit mask.
    #[must_use]
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether `vm_type` ([`vm_type`]) can be created.
    #[must_use]
    pub fn supports(self, vm_type: u64) -> bool {
        vm_type < 32 && self.0 & (1 << vm_type) != 0
    }
}

/// KVM_CHECK_EXTENSION(KVM_CAP_VM_TYPES) on `/dev/kvm`. A kernel without the
/// capability (before 6.8) only has the default type, reported as such.
///
/// # Errors
/// [`HostError::Ioctl`] if the ioctl fails.
pub fn supported_vm_types(kvm: BorrowedFd<'_>) -> Result<VmTypes> {
    let bits = check_extension(kvm, KVM_CAP_VM_TYPES)?;
    Ok(match u32::try_from(bits) {
        Ok(0) | Err(_) => VmTypes(1 << vm_type::DEFAULT),
        Ok(bits) => VmTypes(bits),
    })
}

/// The VMSA features KVM_SEV_INIT2 accepts (KVM_GET_DEVICE_ATTR group
/// `KVM_X86_GRP_SEV`, attribute `KVM_X86_SEV_VMSA_FEATURES`, on `/dev/kvm`);
/// `None` when this KVM has no such attribute (no SEV, or older than 6.10).
///
/// # Errors
/// [`HostError::Ioctl`] for a failure other than "no such attribute".
pub fn sev_vmsa_features(kvm: BorrowedFd<'_>) -> Result<Option<u64>> {
    let mut features: u64 = 0;
    let attr = kvm_bindings::kvm_device_attr {
        flags: 0,
        group: KVM_X86_GRP_SEV,
        attr: KVM_X86_SEV_VMSA_FEATURES,
        addr: std::ptr::from_mut(&mut features) as u64,
    };
    // SAFETY: `attr` is a live `struct kvm_device_attr` (size encoded in the
    // request); the kernel writes one u64 at `addr`, which points to
    // `features`, live and untouched for the duration of the call.
    let rc = unsafe {
        libc::ioctl(
            kvm.as_raw_fd(),
            KVM_GET_DEVICE_ATTR as libc::Ioctl,
            std::ptr::from_ref(&attr),
        )
    };
    if rc < 0 {
        let errno = io::Error::last_os_error();
        return match errno.raw_os_error() {
            Some(libc::ENXIO | libc::EINVAL | libc::ENOTTY) => Ok(None),
            _ => Err(HostError::Ioctl {
                cmd: "KVM_GET_DEVICE_ATTR",
                errno,
            }),
        };
    }
    Ok(Some(features))
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
    fn vm_types_bits() {
        let t = VmTypes::from_bits(0b1_1101);
        assert!(t.supports(vm_type::DEFAULT));
        assert!(!t.supports(1));
        assert!(t.supports(vm_type::SEV));
        assert!(t.supports(vm_type::SEV_ES));
        assert!(t.supports(vm_type::SNP));
        assert!(!t.supports(64));
        assert_eq!(t.bits(), 0b1_1101);
    }

    #[test]
    fn kvm_vm_types_and_features() {
        if !Path::new(KVM_PATH).exists() {
            eprintln!("SKIPPED: kvm_vm_types_and_features: {KVM_PATH} not available");
            return;
        }
        let kvm = open_kvm(Path::new(KVM_PATH)).unwrap();
        let types = supported_vm_types(kvm.as_fd()).unwrap();
        // Every KVM can create the default type.
        assert!(types.supports(vm_type::DEFAULT), "{types:?}");
        if !types.supports(vm_type::SNP) {
            // The kernel refuses an unsupported type with EINVAL.
            assert!(matches!(
                create_vm_of_type(kvm.as_fd(), vm_type::SNP),
                Err(HostError::Ioctl { errno, .. }) if errno.raw_os_error() == Some(libc::EINVAL)
            ));
        }
        // Answers with the features or "no such attribute", never an error.
        let features = sev_vmsa_features(kvm.as_fd()).unwrap();
        eprintln!("kvm_vm_types_and_features: types {types:?}, VMSA features {features:?}");
    }

    #[test]
    fn check_extension_on_a_non_kvm_fd_fails() {
        let null = std::fs::File::open("/dev/null").unwrap();
        assert!(matches!(
            check_extension(null.as_fd(), KVM_CAP_VM_TYPES),
            Err(HostError::Ioctl {
                cmd: "KVM_CHECK_EXTENSION",
                ..
            })
        ));
    }

    #[test]
    fn kvm_missing_device_is_open_error() {
        let err = kvm_sev_supported(Path::new("/nonexistent/sevm-test/kvm")).unwrap_err();
        assert!(
            matches!(err, HostError::Open { ref path, .. } if path == Path::new("/nonexistent/sevm-test/kvm"))
        );
    }
}
