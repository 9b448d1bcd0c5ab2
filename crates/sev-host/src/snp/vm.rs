//! An SNP guest through KVM (docs/protocol/linux.md#kvm-snp): KVM_SEV_INIT2
//! on a `KVM_X86_SNP_VM`, guest memory backed by guest_memfd, private
//! memory attributes, and KVM_SEV_SNP_LAUNCH_START / _UPDATE / _FINISH.
//!
//! A VMM calls [`SnpVm`] in QEMU's order (docs/protocol/linux.md#snp-launch-sequence):
//!
//! 1. create the VM with type [`vm_type::SNP`](crate::abi::vm_type::SNP)
//!    ([`create_vm_of_type`](crate::probe::create_vm_of_type)), then
//!    [`SnpVm::init2`];
//! 2. [`SnpVm::enable_page_state_exits`], so that the guest's page-state
//!    changes reach the VMM (docs/protocol/linux.md#snp-exits);
//! 3. for every RAM block: [`SnpVm::create_guest_memfd`] and
//!    [`SnpVm::set_memory_region`] (shared mapping + guest_memfd);
//! 4. [`SnpVm::launch_start`] with the 64-bit policy;
//! 5. for every range the firmware's metadata names: fill the shared
//!    mapping, [`SnpVm::set_memory_private`], then [`SnpVm::launch_update`]
//!    with its page type;
//! 6. create the vCPUs and set their registers, then
//!    [`SnpVm::launch_finish`] (KVM measures every vCPU's VMSA there).
//!
//! On an SNP VM, KVM refuses the legacy launch commands (EPERM): the only
//! `KVM_MEMORY_ENCRYPT_OP` sub-commands are INIT2 and the three here.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::abi::{
    kvm_create_guest_memfd, kvm_enable_cap, kvm_memory_attributes, kvm_userspace_memory_region2,
    snp_page_type, KvmSevCommand, KvmSevInit, KvmSevSnpLaunchFinish, KvmSevSnpLaunchStart,
    KvmSevSnpLaunchUpdate, KVM_CAP_EXIT_HYPERCALL, KVM_HC_MAP_GPA_RANGE,
    KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEM_GUEST_MEMFD, SNP_HOST_DATA_SIZE, SNP_ID_AUTH_SIZE,
    SNP_ID_BLOCK_SIZE,
};
use crate::error::{check_aligned, check_blob, check_range, Result};
use crate::ioctl::{
    KVM_CREATE_GUEST_MEMFD, KVM_ENABLE_CAP, KVM_SET_MEMORY_ATTRIBUTES, KVM_SET_USER_MEMORY_REGION2,
};
use crate::snp::{MemoryFault, PageStateChange, SNP_PAGE_SIZE};
use crate::vm::SevVm;
use crate::HostError;

/// Consecutive KVM_SEV_SNP_LAUNCH_UPDATE calls that may end without progress
/// (EAGAIN/EINTR, e.g. a signal) before [`SnpVm::launch_update`] gives up.
pub const LAUNCH_UPDATE_MAX_STALLS: u32 = 16;

/// The page type of one KVM_SEV_SNP_LAUNCH_UPDATE range. The VMSA type is
/// not among them: KVM adds the VMSAs itself at LAUNCH_FINISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnpPageType {
    /// Measured data, copied from the source and encrypted.
    Normal,
    /// Zero pages (the source is not read); measured as ZERO.
    Zero,
    /// Copied and encrypted; only the addresses are measured.
    Unmeasured,
    /// The secrets page, filled by the firmware (one page).
    Secrets,
    /// The CPUID page, checked against the platform's CPUID policy (one
    /// page).
    Cpuid,
}

impl SnpPageType {
    /// The `type` value of `struct kvm_sev_snp_launch_update`.
    #[must_use]
    pub const fn kvm_type(self) -> u8 {
        match self {
            Self::Normal => snp_page_type::NORMAL,
            Self::Zero => snp_page_type::ZERO,
            Self::Unmeasured => snp_page_type::UNMEASURED,
            Self::Secrets => snp_page_type::SECRETS,
            Self::Cpuid => snp_page_type::CPUID,
        }
    }
}

/// The KVM_SEV_SNP_LAUNCH_START input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnpLaunchStart {
    /// The 64-bit guest policy (bit 17 must be set; KVM refuses bits it does
    /// not know with EINVAL, the firmware refuses a policy the platform
    /// cannot honour with POLICY_FAILURE).
    pub policy: u64,
    /// Guest OS-visible workarounds (QEMU's `guest-visible-workarounds`).
    pub gosvw: [u8; 16],
}

/// The guest owner's identity for LAUNCH_FINISH: an ID block and its
/// signature structure.
#[derive(Debug, Clone, Copy)]
pub struct SnpIdentity<'a> {
    /// The 96-byte ID block.
    pub id_block: &'a [u8; SNP_ID_BLOCK_SIZE],
    /// The ID authentication structure, 1..=4096 bytes; KVM always reads
    /// 4096, so a shorter one is zero-padded (as QEMU pads `id-auth`).
    pub id_auth: &'a [u8],
    /// The ID auth carries an author key (AUTH_KEY_EN).
    pub author_key: bool,
}

/// The KVM_SEV_SNP_LAUNCH_FINISH input.
#[derive(Debug, Clone, Copy, Default)]
pub struct SnpLaunchFinish<'a> {
    /// ID block and ID auth, if the guest owner supplied them.
    pub identity: Option<SnpIdentity<'a>>,
    /// Forbid VCEK-signed reports (VCEK_DISABLED).
    pub vcek_disabled: bool,
    /// HOST_DATA, reported as is.
    pub host_data: [u8; SNP_HOST_DATA_SIZE],
}

/// One KVM memory slot of an SNP guest: the shared pages at
/// `userspace_addr` and the private pages in `guest_memfd` at
/// `guest_memfd_offset`, both `size` bytes.
#[derive(Debug, Clone, Copy)]
pub struct PrivateMemoryRegion<'a> {
    /// Slot number (address-space id in bits 16..32, as for
    /// KVM_SET_USER_MEMORY_REGION).
    pub slot: u32,
    /// First guest-physical address.
    pub guest_phys_addr: u64,
    /// Size in bytes (a non-zero multiple of 4 KiB).
    pub size: u64,
    /// The VMM's shared mapping of the range.
    pub userspace_addr: u64,
    /// The guest_memfd holding the private pages.
    pub guest_memfd: BorrowedFd<'a>,
    /// Where the range starts in the guest_memfd.
    pub guest_memfd_offset: u64,
}

/// The SNP context of one KVM VM of type `KVM_X86_SNP_VM`: the VM fd and an
/// open `/dev/sev` fd, both borrowed for `'fd`.
#[derive(Debug)]
pub struct SnpVm<'fd> {
    inner: SevVm<'fd>,
}

impl<'fd> SnpVm<'fd> {
    /// Wrap a KVM VM fd (created with type
    /// [`vm_type::SNP`](crate::abi::vm_type::SNP)) and an open `/dev/sev`
    /// fd, which KVM needs for the launch commands.
    #[must_use]
    pub fn new(vm: BorrowedFd<'fd>, sev: BorrowedFd<'fd>) -> Self {
        Self {
            inner: SevVm::new(vm, sev),
        }
    }

    /// KVM_SEV_INIT2 on the SNP VM: SNP_INIT on the platform if needed, the
    /// guest context and ASID. `vmsa_features` are the SEV_FEATURES every
    /// VMSA gets besides SNP_ACTIVE (which KVM adds); they must be within
    /// what KVM reports ([`sev_vmsa_features`](crate::probe::sev_vmsa_features)).
    /// GHCB version 0 lets KVM choose its default (2), as QEMU does.
    ///
    /// # Errors
    /// [`HostError::Ioctl`] (EINVAL on another VM type, with vCPUs, or with
    /// unsupported features) or [`HostError::Firmware`].
    pub fn init2(&self, vmsa_features: u64) -> Result<()> {
        let mut init = KvmSevInit {
            vmsa_features,
            ..KvmSevInit::default()
        };
        // SAFETY: the payload holds no addresses.
        unsafe { self.inner.issue(&mut init) }
    }

    /// KVM_ENABLE_CAP(KVM_CAP_EXIT_HYPERCALL) with the KVM_HC_MAP_GPA_RANGE
    /// bit: the guest's page-state changes leave KVM_RUN as
    /// `KVM_EXIT_HYPERCALL` for the VMM to carry out
    /// ([`PageStateChange`](crate::snp::PageStateChange)). Without it KVM
    /// fails those requests back to the guest.
    ///
    /// # Errors
    /// [`HostError::Ioctl`] (EINVAL on kernels without the capability).
    pub fn enable_page_state_exits(&self) -> Result<()> {
        let mut cap = kvm_enable_cap {
            cap: KVM_CAP_EXIT_HYPERCALL,
            ..Default::default()
        };
        cap.args[0] = 1 << KVM_HC_MAP_GPA_RANGE;
        // SAFETY: `cap` is a live `struct kvm_enable_cap` (size encoded in
        // the request) that the kernel only reads; it holds no addresses.
        unsafe { self.vm_ioctl(KVM_ENABLE_CAP, "KVM_ENABLE_CAP", &cap) }.map(drop)
    }

    /// KVM_CREATE_GUEST_MEMFD: a new guest_memfd of `size` bytes (a non-zero
    /// multiple of 4 KiB) for this VM's private memory.
    ///
    /// # Errors
    /// [`HostError::Empty`] / [`HostError::Misaligned`] before the ioctl;
    /// then [`HostError::Ioctl`] (e.g. EINVAL without guest_memfd support).
    pub fn create_guest_memfd(&self, size: u64) -> Result<OwnedFd> {
        const NAME: &str = "KVM_CREATE_GUEST_MEMFD";
        if size == 0 {
            return Err(HostError::Empty {
                what: "guest_memfd size",
            });
        }
        check_aligned("guest_memfd size", size, SNP_PAGE_SIZE)?;
        let create = kvm_create_guest_memfd {
            size,
            ..Default::default()
        };
        // SAFETY: `create` is a live `struct kvm_create_guest_memfd` that the
        // kernel only reads; it holds no addresses.
        let fd = unsafe { self.vm_ioctl(KVM_CREATE_GUEST_MEMFD, NAME, &create) }?;
        // SAFETY: a non-negative return of KVM_CREATE_GUEST_MEMFD is a new fd
        // that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// KVM_SET_USER_MEMORY_REGION2 with KVM_MEM_GUEST_MEMFD: create or
    /// replace a slot backed by a shared mapping and a guest_memfd.
    ///
    /// # Errors
    /// Before the ioctl: [`HostError::Empty`], [`HostError::NullAddress`],
    /// [`HostError::AddressOverflow`], [`HostError::Misaligned`] (anything
    /// not 4 KiB aligned). Then [`HostError::Ioctl`].
    ///
    /// # Safety
    ///
    /// `userspace_addr..userspace_addr + size` must be a mapping owned by
    /// the caller that stays mapped until the slot is deleted or the VM is
    /// destroyed; the guest reads and writes its shared pages through it.
    pub unsafe fn set_memory_region(&self, region: &PrivateMemoryRegion<'_>) -> Result<()> {
        check_gpa_range("memory region", region.guest_phys_addr, region.size)?;
        check_page_range("memory region mapping", region.userspace_addr, region.size)?;
        check_aligned(
            "guest_memfd offset",
            region.guest_memfd_offset,
            SNP_PAGE_SIZE,
        )?;
        if region.guest_memfd_offset.checked_add(region.size).is_none() {
            return Err(HostError::AddressOverflow {
                what: "guest_memfd offset",
                addr: region.guest_memfd_offset,
                len: region.size,
            });
        }
        let raw = kvm_userspace_memory_region2 {
            slot: region.slot,
            flags: KVM_MEM_GUEST_MEMFD,
            guest_phys_addr: region.guest_phys_addr,
            memory_size: region.size,
            userspace_addr: region.userspace_addr,
            guest_memfd_offset: region.guest_memfd_offset,
            // An fd is non-negative; the kernel reads it as __u32.
            guest_memfd: region.guest_memfd.as_raw_fd().unsigned_abs(),
            ..Default::default()
        };
        // SAFETY: `raw` is a live `struct kvm_userspace_memory_region2` the
        // kernel only reads; the mapping it names is valid per this
        // function's contract.
        unsafe {
            self.vm_ioctl(
                KVM_SET_USER_MEMORY_REGION2,
                "KVM_SET_USER_MEMORY_REGION2",
                &raw,
            )
        }
        .map(drop)
    }

    /// Delete memory slot `slot` (KVM_SET_USER_MEMORY_REGION2 with size 0).
    ///
    /// # Errors
    /// [`HostError::Ioctl`].
    pub fn delete_memory_region(&self, slot: u32) -> Result<()> {
        let raw = kvm_userspace_memory_region2 {
            slot,
            ..Default::default()
        };
        // SAFETY: a zero-sized region deletes the slot; no memory is named.
        unsafe {
            self.vm_ioctl(
                KVM_SET_USER_MEMORY_REGION2,
                "KVM_SET_USER_MEMORY_REGION2",
                &raw,
            )
        }
        .map(drop)
    }

    /// KVM_SET_MEMORY_ATTRIBUTES: make `gpa..gpa + size` private (backed by
    /// the guest_memfd) or shared (backed by the mapping). Ranges must be
    /// private before LAUNCH_UPDATE; at run time this carries out the
    /// guest's page-state changes and implicit conversions
    /// (docs/protocol/linux.md#snp-exits).
    ///
    /// # Errors
    /// [`HostError::Empty`], [`HostError::AddressOverflow`],
    /// [`HostError::Misaligned`] before the ioctl; then [`HostError::Ioctl`]
    /// (EINVAL without KVM_CAP_MEMORY_ATTRIBUTES, ENOMEM, EAGAIN).
    pub fn set_memory_private(&self, gpa: u64, size: u64, private: bool) -> Result<()> {
        check_gpa_range("memory attributes range", gpa, size)?;
        let attributes = kvm_memory_attributes {
            address: gpa,
            size,
            attributes: if private {
                u64::from(KVM_MEMORY_ATTRIBUTE_PRIVATE)
            } else {
                0
            },
            flags: 0,
        };
        // SAFETY: `attributes` is a live `struct kvm_memory_attributes` the
        // kernel only reads; it names guest-physical addresses, not memory of
        // this process.
        unsafe {
            self.vm_ioctl(
                KVM_SET_MEMORY_ATTRIBUTES,
                "KVM_SET_MEMORY_ATTRIBUTES",
                &attributes,
            )
        }
        .map(drop)
    }

    /// KVM_SEV_SNP_LAUNCH_START: SNP_GCTX_CREATE, SNP_LAUNCH_START and
    /// SNP_ACTIVATE in the kernel.
    ///
    /// # Errors
    /// [`HostError::Ioctl`] (EINVAL for policy bits KVM does not accept) or
    /// [`HostError::Firmware`] (e.g. POLICY_FAILURE).
    pub fn launch_start(&self, start: &SnpLaunchStart) -> Result<()> {
        let mut raw = KvmSevSnpLaunchStart {
            policy: start.policy,
            gosvw: start.gosvw,
            ..KvmSevSnpLaunchStart::default()
        };
        // SAFETY: the payload holds no addresses.
        unsafe { self.inner.issue(&mut raw) }
    }

    /// KVM_SEV_SNP_LAUNCH_UPDATE over `len` bytes at guest-physical `gpa`
    /// from the source at `host_addr` (ignored for [`SnpPageType::Zero`],
    /// which may pass 0). The range must already be private
    /// ([`set_memory_private`](Self::set_memory_private)) and inside a
    /// guest_memfd slot. KVM may stop early and report the rest; the call is
    /// repeated from where KVM left off until the range is done
    /// (docs/protocol/choices.md#u36).
    ///
    /// # Errors
    /// Before any ioctl: [`HostError::Empty`], [`HostError::NullAddress`],
    /// [`HostError::AddressOverflow`], [`HostError::Misaligned`] (anything
    /// not 4 KiB aligned). Then [`HostError::Ioctl`],
    /// [`HostError::Firmware`] (INVALID_PARAM for a CPUID page the
    /// platform refuses: KVM has then copied the firmware's corrected page
    /// back to the source), or [`HostError::Stalled`].
    ///
    /// # Safety
    ///
    /// Unless the type is ZERO, `host_addr..host_addr + len` must be memory
    /// owned by the caller that no Rust reference points into: the kernel
    /// reads it, and writes the corrected CPUID page back into it.
    pub unsafe fn launch_update(
        &self,
        gpa: u64,
        host_addr: u64,
        len: u64,
        page_type: SnpPageType,
    ) -> Result<()> {
        const NAME: &str = <KvmSevSnpLaunchUpdate as KvmSevCommand>::NAME;
        check_gpa_range("LAUNCH_UPDATE range", gpa, len)?;
        if page_type != SnpPageType::Zero || host_addr != 0 {
            check_page_range("LAUNCH_UPDATE source", host_addr, len)?;
        }
        let mut update = KvmSevSnpLaunchUpdate {
            gfn_start: gpa / SNP_PAGE_SIZE,
            uaddr: host_addr,
            len,
            page_type: page_type.kvm_type(),
            ..KvmSevSnpLaunchUpdate::default()
        };
        let mut attempts: u32 = 0;
        let mut stalls: u32 = 0;
        loop {
            let before = update.len;
            attempts = attempts.saturating_add(1);
            // SAFETY: `update` names the caller's source range (valid per
            // this function's contract) or, after a partial call, the part
            // of it KVM reported as left.
            match unsafe { self.inner.issue(&mut update) } {
                Ok(()) => {}
                Err(HostError::Ioctl { errno, .. })
                    if matches!(errno.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) =>
                {
                    // QEMU retries EAGAIN; KVM wrote nothing back, so this
                    // counts as a call without progress below.
                }
                Err(e) => return Err(e),
            }
            if update.len == 0 {
                return Ok(());
            }
            let stalled = || HostError::Stalled {
                cmd: NAME,
                left: update.len,
                attempts,
            };
            if update.len > before || !update.len.is_multiple_of(SNP_PAGE_SIZE) {
                return Err(stalled());
            }
            if update.len == before {
                stalls += 1;
                if stalls >= LAUNCH_UPDATE_MAX_STALLS {
                    return Err(stalled());
                }
            } else {
                stalls = 0;
            }
        }
    }

    /// KVM_SEV_SNP_LAUNCH_FINISH: KVM first measures every vCPU's VMSA (from
    /// the registers set on the vCPUs, which must all exist by now), then
    /// SNP_LAUNCH_FINISH with the ID block, ID auth and host data.
    ///
    /// # Errors
    /// [`HostError::Empty`] / [`HostError::TooLarge`] for the ID auth before
    /// the ioctl; then [`HostError::Ioctl`] or [`HostError::Firmware`]
    /// (BAD_SIGNATURE, BAD_MEASUREMENT, POLICY_FAILURE… for the identity).
    pub fn launch_finish(&self, finish: &SnpLaunchFinish<'_>) -> Result<()> {
        let mut raw = KvmSevSnpLaunchFinish {
            vcek_disabled: u8::from(finish.vcek_disabled),
            host_data: finish.host_data,
            ..KvmSevSnpLaunchFinish::default()
        };
        // KVM copies exactly SNP_ID_AUTH_SIZE bytes: pad the caller's.
        let padded_auth = finish
            .identity
            .map(|identity| pad_id_auth(identity.id_auth))
            .transpose()?;
        if let (Some(identity), Some(auth)) = (finish.identity, padded_auth.as_deref()) {
            raw.id_block_uaddr = identity.id_block.as_ptr() as u64;
            raw.id_auth_uaddr = auth.as_ptr() as u64;
            raw.id_block_en = 1;
            raw.auth_key_en = u8::from(identity.author_key);
        }
        // SAFETY: the addresses are 0 or point to the caller's 96-byte ID
        // block and to `padded_auth`, a live 4096-byte buffer; the kernel only
        // reads them (copying exactly those sizes).
        unsafe { self.inner.issue(&mut raw) }
    }

    /// Carry out a guest's page-state change: set the range's attribute
    /// (docs/protocol/linux.md#snp-exits). Releasing the backing that is no
    /// longer used (a hole in the guest_memfd, or the mapping's pages) is
    /// left to the VMM, which owns both. On success the VMM stores 0 in
    /// `run.hypercall.ret`.
    ///
    /// # Errors
    /// As [`set_memory_private`](Self::set_memory_private).
    pub fn apply_page_state_change(&self, change: &PageStateChange) -> Result<()> {
        self.set_memory_private(change.gpa, change.size(), change.private)
    }

    /// Resolve a `KVM_EXIT_MEMORY_FAULT`: give the range the attribute the
    /// guest's access wanted (docs/protocol/linux.md#snp-exits).
    ///
    /// # Errors
    /// As [`set_memory_private`](Self::set_memory_private).
    pub fn resolve_memory_fault(&self, fault: &MemoryFault) -> Result<()> {
        self.set_memory_private(fault.gpa, fault.size, fault.private)
    }

    /// Issue an ioctl whose argument is a pointer to `arg` on the VM fd;
    /// returns the ioctl's non-negative result.
    ///
    /// # Safety
    ///
    /// `request` must encode a structure of type `T` that the kernel only
    /// reads, and every address inside `arg` must be valid for what the
    /// kernel does with it.
    unsafe fn vm_ioctl<T>(&self, request: u32, name: &'static str, arg: &T) -> Result<i32> {
        log::debug!("{name}: issuing");
        // SAFETY: the VM fd is live for `'fd`; `arg` is a live `T` as the
        // request encodes it, per this function's contract.
        let rc = unsafe {
            libc::ioctl(
                self.inner.vm_fd().as_raw_fd(),
                request as libc::Ioctl,
                std::ptr::from_ref(arg),
            )
        };
        if rc < 0 {
            let errno = io::Error::last_os_error();
            log::debug!("{name}: failed: {errno}");
            return Err(HostError::Ioctl { cmd: name, errno });
        }
        Ok(rc)
    }
}

/// The ID auth zero-padded to the 4096 bytes KVM copies.
fn pad_id_auth(id_auth: &[u8]) -> Result<Vec<u8>> {
    check_blob("ID auth", id_auth, SNP_ID_AUTH_SIZE)?;
    let mut padded = vec![0u8; SNP_ID_AUTH_SIZE];
    // At most SNP_ID_AUTH_SIZE bytes, checked above.
    padded[..id_auth.len()].copy_from_slice(id_auth);
    Ok(padded)
}

/// A page-aligned, non-empty, non-wrapping range at a non-null address.
fn check_page_range(what: &'static str, addr: u64, len: u64) -> Result<()> {
    check_range(what, addr, len)?;
    check_aligned(what, addr, SNP_PAGE_SIZE)?;
    check_aligned(what, len, SNP_PAGE_SIZE)
}

/// A page-aligned, non-empty, non-wrapping guest-physical range (GPA 0 is
/// valid).
fn check_gpa_range(what: &'static str, gpa: u64, len: u64) -> Result<()> {
    if len == 0 {
        return Err(HostError::Empty { what });
    }
    if gpa.checked_add(len).is_none() {
        return Err(HostError::AddressOverflow {
            what,
            addr: gpa,
            len,
        });
    }
    check_aligned(what, gpa, SNP_PAGE_SIZE)?;
    check_aligned(what, len, SNP_PAGE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{vm_type, KVM_CAP_GUEST_MEMFD};
    use crate::probe::{check_extension, create_vm_of_type, open_kvm, KVM_PATH};
    use crate::testutil::{not_a_sev_device, Fixture, Mapping};
    use std::fs::File;
    use std::os::fd::AsFd;
    use std::path::Path;

    fn assert_issued<T: std::fmt::Debug>(result: Result<T>, name: &str) {
        match result {
            Err(HostError::Ioctl { cmd, errno }) => {
                assert_eq!(cmd, name);
                assert_eq!(errno.raw_os_error(), Some(libc::ENOTTY));
            }
            other => panic!("expected {name} to reach the ioctl, got {other:?}"),
        }
    }

    #[test]
    fn page_types_are_the_kvm_numbers() {
        assert_eq!(SnpPageType::Normal.kvm_type(), 1);
        assert_eq!(SnpPageType::Zero.kvm_type(), 3);
        assert_eq!(SnpPageType::Unmeasured.kvm_type(), 4);
        assert_eq!(SnpPageType::Secrets.kvm_type(), 5);
        assert_eq!(SnpPageType::Cpuid.kvm_type(), 6);
    }

    #[test]
    fn commands_reach_the_ioctl() {
        let f = Fixture::new();
        let vm = f.snp_vm();
        assert_issued(vm.init2(0), "KVM_SEV_INIT2");
        assert_issued(vm.enable_page_state_exits(), "KVM_ENABLE_CAP");
        assert_issued(
            vm.launch_start(&SnpLaunchStart {
                policy: 0x3_0000,
                gosvw: [0; 16],
            }),
            "KVM_SEV_SNP_LAUNCH_START",
        );
        assert_issued(
            vm.launch_finish(&SnpLaunchFinish::default()),
            "KVM_SEV_SNP_LAUNCH_FINISH",
        );
        assert_issued(vm.create_guest_memfd(0x20_0000), "KVM_CREATE_GUEST_MEMFD");
        assert_issued(
            vm.set_memory_private(0, 0x1000, true),
            "KVM_SET_MEMORY_ATTRIBUTES",
        );
        assert_issued(vm.delete_memory_region(3), "KVM_SET_USER_MEMORY_REGION2");
        let change = PageStateChange::from_hypercall(12, &[0x1000, 2, 0, 0, 0, 0]).unwrap();
        assert_issued(
            vm.apply_page_state_change(&change),
            "KVM_SET_MEMORY_ATTRIBUTES",
        );
        let fault = MemoryFault::from_kvm(1 << 3, 0x2000, 0x1000);
        assert_issued(vm.resolve_memory_fault(&fault), "KVM_SET_MEMORY_ATTRIBUTES");
        // A fault KVM reports with an unaligned range is refused before the
        // ioctl.
        assert!(matches!(
            vm.resolve_memory_fault(&MemoryFault::from_kvm(0, 0x2010, 0x1000)),
            Err(HostError::Misaligned { .. })
        ));
    }

    #[test]
    fn guest_memfd_size_is_checked() {
        let f = Fixture::new();
        let vm = f.snp_vm();
        assert!(matches!(
            vm.create_guest_memfd(0),
            Err(HostError::Empty { .. })
        ));
        assert!(matches!(
            vm.create_guest_memfd(0x1800),
            Err(HostError::Misaligned { align: 4096, .. })
        ));
    }

    #[test]
    fn memory_attributes_range_is_checked() {
        let f = Fixture::new();
        let vm = f.snp_vm();
        assert!(matches!(
            vm.set_memory_private(0x1000, 0, true),
            Err(HostError::Empty { .. })
        ));
        assert!(matches!(
            vm.set_memory_private(0x1800, 0x1000, false),
            Err(HostError::Misaligned { value: 0x1800, .. })
        ));
        assert!(matches!(
            vm.set_memory_private(0x1000, 0x800, true),
            Err(HostError::Misaligned { value: 0x800, .. })
        ));
        assert!(matches!(
            vm.set_memory_private(!0xFFF_u64, 0x2000, true),
            Err(HostError::AddressOverflow { .. })
        ));
    }

    #[test]
    fn memory_region_is_checked() {
        let f = Fixture::new();
        let vm = f.snp_vm();
        let gmem = File::open("/dev/null").unwrap();
        let region = PrivateMemoryRegion {
            slot: 0,
            guest_phys_addr: 0,
            size: 0x10_0000,
            userspace_addr: 0x7f00_0000_0000,
            guest_memfd: gmem.as_fd(),
            guest_memfd_offset: 0,
        };
        // SAFETY: every call below fails its argument checks or hits
        // /dev/null, so no memory is registered.
        unsafe {
            assert!(matches!(
                vm.set_memory_region(&PrivateMemoryRegion { size: 0, ..region }),
                Err(HostError::Empty { .. })
            ));
            assert!(matches!(
                vm.set_memory_region(&PrivateMemoryRegion {
                    userspace_addr: 0,
                    ..region
                }),
                Err(HostError::NullAddress { .. })
            ));
            assert!(matches!(
                vm.set_memory_region(&PrivateMemoryRegion {
                    userspace_addr: 0x7f00_0000_0010,
                    ..region
                }),
                Err(HostError::Misaligned { .. })
            ));
            assert!(matches!(
                vm.set_memory_region(&PrivateMemoryRegion {
                    guest_memfd_offset: 0x10,
                    ..region
                }),
                Err(HostError::Misaligned {
                    what: "guest_memfd offset",
                    ..
                })
            ));
            assert!(matches!(
                vm.set_memory_region(&PrivateMemoryRegion {
                    guest_memfd_offset: !0xFFF_u64,
                    ..region
                }),
                Err(HostError::AddressOverflow { .. })
            ));
            assert_issued(vm.set_memory_region(&region), "KVM_SET_USER_MEMORY_REGION2");
        }
    }

    #[test]
    fn launch_update_is_checked() {
        let f = Fixture::new();
        let vm = f.snp_vm();
        // SAFETY: every call below fails its argument checks or hits
        // /dev/null, so no memory is read or written.
        unsafe {
            assert!(matches!(
                vm.launch_update(0x10_0000, 0x7f00_0000_0000, 0, SnpPageType::Normal),
                Err(HostError::Empty { .. })
            ));
            assert!(matches!(
                vm.launch_update(0x10_0800, 0x7f00_0000_0000, 0x1000, SnpPageType::Normal),
                Err(HostError::Misaligned {
                    value: 0x10_0800,
                    ..
                })
            ));
            assert!(matches!(
                vm.launch_update(0x10_0000, 0x7f00_0000_0000, 0x1800, SnpPageType::Normal),
                Err(HostError::Misaligned { .. })
            ));
            assert!(matches!(
                vm.launch_update(0x10_0000, 0, 0x1000, SnpPageType::Cpuid),
                Err(HostError::NullAddress { .. })
            ));
            assert!(matches!(
                vm.launch_update(0x10_0000, 0x7f00_0000_0010, 0x1000, SnpPageType::Secrets),
                Err(HostError::Misaligned { .. })
            ));
            // ZERO pages need no source.
            assert_issued(
                vm.launch_update(0x10_0000, 0, 0x2000, SnpPageType::Zero),
                "KVM_SEV_SNP_LAUNCH_UPDATE",
            );
            assert_issued(
                vm.launch_update(0x10_0000, 0x7f00_0000_0000, 0x2000, SnpPageType::Normal),
                "KVM_SEV_SNP_LAUNCH_UPDATE",
            );
        }
    }

    #[test]
    fn launch_finish_checks_and_pads_the_id_auth() {
        let f = Fixture::new();
        let vm = f.snp_vm();
        let block = [0u8; SNP_ID_BLOCK_SIZE];
        let finish = |id_auth| SnpLaunchFinish {
            identity: Some(SnpIdentity {
                id_block: &block,
                id_auth,
                author_key: true,
            }),
            vcek_disabled: false,
            host_data: [7; 32],
        };
        assert!(matches!(
            vm.launch_finish(&finish(&[])),
            Err(HostError::Empty { what: "ID auth" })
        ));
        assert!(matches!(
            vm.launch_finish(&finish(&[0; SNP_ID_AUTH_SIZE + 1])),
            Err(HostError::TooLarge { max: 4096, .. })
        ));
        assert_issued(
            vm.launch_finish(&finish(&[1; 0x2A0])),
            "KVM_SEV_SNP_LAUNCH_FINISH",
        );
        let padded = pad_id_auth(&[1; 0x2A0]).unwrap();
        assert_eq!(padded.len(), SNP_ID_AUTH_SIZE);
        assert!(padded[..0x2A0].iter().all(|&b| b == 1));
        assert!(padded[0x2A0..].iter().all(|&b| b == 0));
    }

    /// The guest_memfd and memory-region-2 structures and numbers against a
    /// real KVM: a default-type VM accepts guest_memfd slots on kernels that
    /// offer KVM_CAP_GUEST_MEMFD for it, which exercises the same ioctls an
    /// SNP VM uses.
    #[test]
    fn kvm_guest_memfd_slot() {
        if !Path::new(KVM_PATH).exists() {
            eprintln!("SKIPPED: kvm_guest_memfd_slot: {KVM_PATH} not available");
            return;
        }
        let kvm = open_kvm(Path::new(KVM_PATH)).unwrap();
        let vm_fd = create_vm_of_type(kvm.as_fd(), vm_type::DEFAULT).unwrap();
        if check_extension(vm_fd.as_fd(), KVM_CAP_GUEST_MEMFD).unwrap() == 0 {
            eprintln!("SKIPPED: kvm_guest_memfd_slot: no guest_memfd for default VMs here");
            return;
        }
        let sev = not_a_sev_device();
        let vm = SnpVm::new(vm_fd.as_fd(), sev.as_fd());
        const SIZE: u64 = 0x20_0000;
        let gmem = vm.create_guest_memfd(SIZE).unwrap();
        // The guest_memfd has the requested size.
        let meta = File::from(gmem.try_clone().unwrap()).metadata().unwrap();
        assert_eq!(meta.len(), SIZE);
        let shared = Mapping::new(usize::try_from(SIZE).unwrap(), libc::MAP_SHARED);
        let region = PrivateMemoryRegion {
            slot: 0,
            guest_phys_addr: 0x1_0000_0000,
            size: SIZE,
            userspace_addr: shared.host_addr(),
            guest_memfd: gmem.as_fd(),
            guest_memfd_offset: 0,
        };
        // SAFETY: `shared` outlives the slot, deleted below before it is
        // unmapped.
        unsafe { vm.set_memory_region(&region) }.unwrap();
        // A second slot over the same guest_memfd range is refused (EEXIST
        // from the guest_memfd binding, or EINVAL).
        // SAFETY: as above; the call fails.
        let again = unsafe {
            vm.set_memory_region(&PrivateMemoryRegion {
                slot: 1,
                guest_phys_addr: 0x2_0000_0000,
                ..region
            })
        };
        assert!(matches!(again, Err(HostError::Ioctl { .. })), "{again:?}");
        // Private attributes exist only for VM types with private memory.
        let attrs = vm.set_memory_private(0x1_0000_0000, 0x1000, true);
        if attrs.is_err() {
            eprintln!("kvm_guest_memfd_slot: memory attributes refused: {attrs:?}");
        }
        vm.delete_memory_region(0).unwrap();
    }

    /// A whole SNP launch on hardware: one 2 MiB guest_memfd slot, a zero
    /// page and a measured page, one vCPU, LAUNCH_FINISH without an ID block.
    #[test]
    fn hw_snp_launch_small_vm() {
        use crate::abi::vm_type;
        use crate::probe::supported_vm_types;
        use crate::testutil::sev_device_or_skip;
        let Some(sev) = sev_device_or_skip("hw_snp_launch_small_vm") else {
            return;
        };
        let kvm = open_kvm(Path::new(KVM_PATH)).unwrap();
        if !supported_vm_types(kvm.as_fd())
            .unwrap()
            .supports(vm_type::SNP)
        {
            eprintln!("SKIPPED: hw_snp_launch_small_vm: KVM cannot create SNP VMs here");
            return;
        }
        const SIZE: u64 = 0x20_0000;
        // Declared before the VM, so that it is unmapped after the VM is gone.
        let shared = Mapping::new(usize::try_from(SIZE).unwrap(), libc::MAP_SHARED);
        let vm_fd = create_vm_of_type(kvm.as_fd(), vm_type::SNP).unwrap();
        let vm = SnpVm::new(vm_fd.as_fd(), sev.as_fd());
        vm.init2(0).unwrap();
        vm.enable_page_state_exits().unwrap();
        let gmem = vm.create_guest_memfd(SIZE).unwrap();
        let region = PrivateMemoryRegion {
            slot: 0,
            guest_phys_addr: 0,
            size: SIZE,
            userspace_addr: shared.host_addr(),
            guest_memfd: gmem.as_fd(),
            guest_memfd_offset: 0,
        };
        // SAFETY: `shared` outlives the VM (declared before `vm_fd`).
        unsafe { vm.set_memory_region(&region) }.unwrap();
        // Policy: bit 17 (reserved, must be one) and SMT allowed.
        vm.launch_start(&SnpLaunchStart {
            policy: 0x3_0000,
            gosvw: [0; 16],
        })
        .unwrap();
        vm.set_memory_private(0, 0x2000, true).unwrap();
        // SAFETY: `shared` is an anonymous mapping owned by this test, never
        // accessed through Rust references.
        unsafe {
            vm.launch_update(0, 0, 0x1000, SnpPageType::Zero).unwrap();
            vm.launch_update(
                0x1000,
                shared.host_addr() + 0x1000,
                0x1000,
                SnpPageType::Normal,
            )
            .unwrap();
        }
        // SAFETY: KVM_CREATE_VCPU takes the vCPU id by value.
        let vcpu = unsafe {
            libc::ioctl(
                vm_fd.as_raw_fd(),
                crate::ioctl::io(crate::ioctl::KVMIO, 0x41) as libc::Ioctl,
                0 as libc::c_ulong,
            )
        };
        assert!(vcpu >= 0, "KVM_CREATE_VCPU: {}", io::Error::last_os_error());
        // SAFETY: a non-negative KVM_CREATE_VCPU result is a new fd.
        let _vcpu = unsafe { OwnedFd::from_raw_fd(vcpu) };
        vm.launch_finish(&SnpLaunchFinish::default()).unwrap();
    }
}
