//! ioctl request numbers and the Linux `_IOC` encoding they come from.
//!
//! The numbers are written out as the literals of docs/protocol/linux.md#dev-sev,
//! docs/protocol/linux.md#kvm (linux include/uapi/linux/psp-sev.h, include/uapi/linux/kvm.h); the
//! tests recompute each one with the `_IOWR`/`_IOR`/`_IO` formulas from the size of
//! the struct the kernel declares for it.

/// `_IOC_NONE`: no data transfer.
pub const IOC_NONE: u32 = 0;
/// `_IOC_WRITE`: userspace writes (the kernel reads the argument).
pub const IOC_WRITE: u32 = 1;
/// `_IOC_READ`: userspace reads (the kernel writes the argument).
pub const IOC_READ: u32 = 2;

/// The Linux generic `_IOC(dir, type, nr, size)` encoding (asm-generic/ioctl.h):
/// nr in bits 0..8, type in 8..16, size in 16..30, direction in 30..32.
#[must_use]
pub const fn ioc(dir: u32, ty: u32, nr: u32, size: u32) -> u32 {
    (dir << 30) | ((size & 0x3FFF) << 16) | ((ty & 0xFF) << 8) | (nr & 0xFF)
}

/// `_IO(type, nr)`.
#[must_use]
pub const fn io(ty: u32, nr: u32) -> u32 {
    ioc(IOC_NONE, ty, nr, 0)
}

/// `_IOW(type, nr, size)`.
#[must_use]
pub const fn iow(ty: u32, nr: u32, size: u32) -> u32 {
    ioc(IOC_WRITE, ty, nr, size)
}

/// `_IOR(type, nr, size)`.
#[must_use]
pub const fn ior(ty: u32, nr: u32, size: u32) -> u32 {
    ioc(IOC_READ, ty, nr, size)
}

/// `_IOWR(type, nr, size)`.
#[must_use]
pub const fn iowr(ty: u32, nr: u32, size: u32) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, size)
}

/// ioctl type of `/dev/sev` (`SEV_IOC_TYPE`, `'S'`).
pub const SEV_IOC_TYPE: u32 = b'S' as u32;
/// ioctl type of KVM (`KVMIO`).
pub const KVMIO: u32 = 0xAE;

/// `SEV_ISSUE_CMD = _IOWR('S', 0x0, struct sev_issue_cmd)` on `/dev/sev`.
pub const SEV_ISSUE_CMD: u32 = 0xC010_5300;
/// `KVM_CREATE_VM = _IO(KVMIO, 0x01)` on `/dev/kvm` (argument: machine type).
pub const KVM_CREATE_VM: u32 = 0xAE01;
/// `KVM_MEMORY_ENCRYPT_OP = _IOWR(KVMIO, 0xba, unsigned long)` on a VM fd.
/// The kernel declares the size as `unsigned long` although the argument is a
/// pointer to `struct kvm_sev_cmd`.
pub const KVM_MEMORY_ENCRYPT_OP: u32 = 0xC008_AEBA;
/// `KVM_CHECK_EXTENSION = _IO(KVMIO, 0x03)` on `/dev/kvm` or a VM fd
/// (argument: capability number; returns its value, 0 when absent).
pub const KVM_CHECK_EXTENSION: u32 = 0xAE03;
/// `KVM_SET_USER_MEMORY_REGION2 = _IOW(KVMIO, 0x49, struct
/// kvm_userspace_memory_region2)` on a VM fd.
pub const KVM_SET_USER_MEMORY_REGION2: u32 = 0x40A0_AE49;
/// `KVM_ENABLE_CAP = _IOW(KVMIO, 0xa3, struct kvm_enable_cap)` on a VM fd.
pub const KVM_ENABLE_CAP: u32 = 0x4068_AEA3;
/// `KVM_SET_MEMORY_ATTRIBUTES = _IOW(KVMIO, 0xd2, struct
/// kvm_memory_attributes)` on a VM fd.
pub const KVM_SET_MEMORY_ATTRIBUTES: u32 = 0x4020_AED2;
/// `KVM_CREATE_GUEST_MEMFD = _IOWR(KVMIO, 0xd4, struct
/// kvm_create_guest_memfd)` on a VM fd (returns the new fd).
pub const KVM_CREATE_GUEST_MEMFD: u32 = 0xC040_AED4;
/// `KVM_GET_DEVICE_ATTR = _IOW(KVMIO, 0xe2, struct kvm_device_attr)` (on
/// `/dev/kvm` for the system attributes such as the SEV VMSA features).
pub const KVM_GET_DEVICE_ATTR: u32 = 0x4018_AEE2;
/// `KVM_MEMORY_ENCRYPT_REG_REGION = _IOR(KVMIO, 0xbb, struct kvm_enc_region)`.
pub const KVM_MEMORY_ENCRYPT_REG_REGION: u32 = 0x8010_AEBB;
/// `KVM_MEMORY_ENCRYPT_UNREG_REGION = _IOR(KVMIO, 0xbc, struct kvm_enc_region)`.
pub const KVM_MEMORY_ENCRYPT_UNREG_REGION: u32 = 0x8010_AEBC;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::SevIssueCmd;
    use crate::abi::{
        kvm_create_guest_memfd, kvm_enable_cap, kvm_memory_attributes, kvm_userspace_memory_region2,
    };
    use core::mem::size_of;
    use kvm_bindings::{kvm_device_attr, kvm_enc_region};

    fn size32<T>() -> u32 {
        u32::try_from(size_of::<T>()).unwrap()
    }

    #[test]
    fn sev_issue_cmd_number_matches_formula() {
        assert_eq!(
            iowr(SEV_IOC_TYPE, 0x0, size32::<SevIssueCmd>()),
            SEV_ISSUE_CMD
        );
        assert_eq!(SEV_ISSUE_CMD, 0xC010_5300);
    }

    #[test]
    fn kvm_numbers_match_formula() {
        assert_eq!(io(KVMIO, 0x01), KVM_CREATE_VM);
        assert_eq!(
            iowr(KVMIO, 0xBA, size32::<core::ffi::c_ulong>()),
            KVM_MEMORY_ENCRYPT_OP
        );
        assert_eq!(
            ior(KVMIO, 0xBB, size32::<kvm_enc_region>()),
            KVM_MEMORY_ENCRYPT_REG_REGION
        );
        assert_eq!(
            ior(KVMIO, 0xBC, size32::<kvm_enc_region>()),
            KVM_MEMORY_ENCRYPT_UNREG_REGION
        );
        assert_eq!(KVM_MEMORY_ENCRYPT_OP, 0xC008_AEBA);
        assert_eq!(KVM_MEMORY_ENCRYPT_REG_REGION, 0x8010_AEBB);
        assert_eq!(KVM_MEMORY_ENCRYPT_UNREG_REGION, 0x8010_AEBC);
    }

    #[test]
    fn snp_kvm_numbers_match_formula() {
        // include/uapi/linux/kvm.h: the request numbers from the sizes of the
        // structures they carry.
        assert_eq!(io(KVMIO, 0x03), KVM_CHECK_EXTENSION);
        assert_eq!(
            iow(KVMIO, 0x49, size32::<kvm_userspace_memory_region2>()),
            KVM_SET_USER_MEMORY_REGION2
        );
        assert_eq!(iow(KVMIO, 0xA3, size32::<kvm_enable_cap>()), KVM_ENABLE_CAP);
        assert_eq!(
            iow(KVMIO, 0xD2, size32::<kvm_memory_attributes>()),
            KVM_SET_MEMORY_ATTRIBUTES
        );
        assert_eq!(
            iowr(KVMIO, 0xD4, size32::<kvm_create_guest_memfd>()),
            KVM_CREATE_GUEST_MEMFD
        );
        assert_eq!(
            iow(KVMIO, 0xE2, size32::<kvm_device_attr>()),
            KVM_GET_DEVICE_ATTR
        );
        // Known values (as strace and QEMU's traces print them).
        assert_eq!(KVM_CHECK_EXTENSION, 0xAE03);
        assert_eq!(KVM_SET_USER_MEMORY_REGION2, 0x40A0_AE49);
        assert_eq!(KVM_ENABLE_CAP, 0x4068_AEA3);
        assert_eq!(KVM_SET_MEMORY_ATTRIBUTES, 0x4020_AED2);
        assert_eq!(KVM_CREATE_GUEST_MEMFD, 0xC040_AED4);
        assert_eq!(KVM_GET_DEVICE_ATTR, 0x4018_AEE2);
    }

    #[test]
    fn ioc_field_placement() {
        // Every field lands in its own bits and the direction in the top two.
        assert_eq!(ioc(IOC_NONE, 0, 0, 0), 0);
        assert_eq!(ioc(IOC_READ, 0, 0, 0), 0x8000_0000);
        assert_eq!(ioc(IOC_WRITE, 0, 0, 0), 0x4000_0000);
        assert_eq!(ioc(IOC_NONE, 0x12, 0x34, 0), 0x1234);
        assert_eq!(ioc(IOC_NONE, 0, 0, 0x3FFF), 0x3FFF_0000);
    }
}
