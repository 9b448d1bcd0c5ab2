//! The KVM_RUN exits an SNP VMM must handle (docs/protocol/linux.md#snp-exits),
//! decoded from the `kvm_run` fields a VMM already has (e.g. kvm-ioctls'
//! `VcpuExit::MemoryFault` and `VcpuExit::Hypercall`).
//!
//! * `KVM_EXIT_MEMORY_FAULT` ([`MemoryFault`]): the guest touched a page
//!   whose private/shared attribute does not match the access (KVM_RUN fails
//!   with EFAULT and fills `memory_fault`). The VMM converts the range to
//!   what the access wants ([`SnpVm::resolve_memory_fault`](crate::snp::SnpVm::resolve_memory_fault)),
//!   discards the now-unused backing, and runs the vCPU again.
//! * `KVM_EXIT_HYPERCALL` with `KVM_HC_MAP_GPA_RANGE` ([`PageStateChange`]):
//!   the guest asked for a page-state change (GHCB MSR protocol or the PSC
//!   NAE event; KVM turns both into this exit once
//!   [`SnpVm::enable_page_state_exits`](crate::snp::SnpVm::enable_page_state_exits)
//!   was called). The VMM converts the range
//!   ([`SnpVm::apply_page_state_change`](crate::snp::SnpVm::apply_page_state_change)),
//!   releases the unused backing, writes 0 (or an error) to
//!   `hypercall.ret`, and runs the vCPU again; KVM hands the result to the
//!   guest.

use crate::abi::{
    KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE_ENCRYPTED, KVM_MAP_GPA_RANGE_PAGE_SZ_MASK,
    KVM_MEMORY_EXIT_FLAG_PRIVATE,
};
use crate::snp::SNP_PAGE_SIZE;

/// A `KVM_EXIT_MEMORY_FAULT`: an access to `gpa..gpa + size` that wanted the
/// range private (`private`) or shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryFault {
    /// First guest-physical address.
    pub gpa: u64,
    /// Size in bytes.
    pub size: u64,
    /// The access was private (`KVM_MEMORY_EXIT_FLAG_PRIVATE`).
    pub private: bool,
}

impl MemoryFault {
    /// From `kvm_run.memory_fault` (`flags`, `gpa`, `size`).
    #[must_use]
    pub fn from_kvm(flags: u64, gpa: u64, size: u64) -> Self {
        Self {
            gpa,
            size,
            private: flags & u64::from(KVM_MEMORY_EXIT_FLAG_PRIVATE) != 0,
        }
    }

    /// The attribute conversion that satisfies the access: (gpa, size, make
    /// private).
    #[must_use]
    pub fn conversion(&self) -> (u64, u64, bool) {
        (self.gpa, self.size, self.private)
    }
}

/// A guest page-state change, from a `KVM_EXIT_HYPERCALL` whose `nr` is
/// `KVM_HC_MAP_GPA_RANGE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageStateChange {
    /// First guest-physical address (page aligned).
    pub gpa: u64,
    /// Number of 4 KiB pages.
    pub pages: u64,
    /// Make the range private (`KVM_MAP_GPA_RANGE_ENCRYPTED`); shared
    /// otherwise.
    pub private: bool,
    /// The guest's page-size hint (0 4 KiB, 1 2 MiB, 2 1 GiB); the range is
    /// counted in 4 KiB pages either way.
    pub page_size_hint: u8,
}

/// Why a hypercall exit is not a page-state change the VMM can carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PageStateChangeError {
    /// `nr` is another hypercall.
    #[error("hypercall {0} is not KVM_HC_MAP_GPA_RANGE")]
    OtherHypercall(u64),
    /// The range is empty, unaligned or wraps.
    #[error("page-state change of {pages} pages at {gpa:#x} is not a valid range")]
    BadRange {
        /// The GPA asked for.
        gpa: u64,
        /// The page count asked for.
        pages: u64,
    },
}

impl PageStateChange {
    /// From `kvm_run.hypercall` (`nr`, `args`).
    ///
    /// # Errors
    /// [`PageStateChangeError::OtherHypercall`] for any other `nr`;
    /// [`PageStateChangeError::BadRange`] for an empty, unaligned or
    /// wrapping range (the VMM answers the guest with an error then).
    pub fn from_hypercall(nr: u64, args: &[u64; 6]) -> Result<Self, PageStateChangeError> {
        if nr != KVM_HC_MAP_GPA_RANGE {
            return Err(PageStateChangeError::OtherHypercall(nr));
        }
        let (gpa, pages, attrs) = (args[0], args[1], args[2]);
        let bad = PageStateChangeError::BadRange { gpa, pages };
        let size = pages.checked_mul(SNP_PAGE_SIZE).ok_or(bad)?;
        if pages == 0 || gpa % SNP_PAGE_SIZE != 0 || gpa.checked_add(size).is_none() {
            return Err(bad);
        }
        Ok(Self {
            gpa,
            pages,
            private: attrs & KVM_MAP_GPA_RANGE_ENCRYPTED != 0,
            // The mask keeps 4 bits, so the value fits.
            page_size_hint: u8::try_from(attrs & KVM_MAP_GPA_RANGE_PAGE_SZ_MASK).unwrap_or(0),
        })
    }

    /// The range in bytes.
    #[must_use]
    pub fn size(&self) -> u64 {
        // Checked in `from_hypercall`.
        self.pages.saturating_mul(SNP_PAGE_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_fault_flags() {
        let private = MemoryFault::from_kvm(1 << 3, 0x10_0000, 0x1000);
        assert!(private.private);
        assert_eq!(private.conversion(), (0x10_0000, 0x1000, true));
        let shared = MemoryFault::from_kvm(0, 0x20_0000, 0x1000);
        assert!(!shared.private);
    }

    #[test]
    fn page_state_change_decoding() {
        // Linux guests: KVM_MAP_GPA_RANGE_ENCRYPTED | KVM_MAP_GPA_RANGE_PAGE_SZ_4K.
        let psc = PageStateChange::from_hypercall(12, &[0x10_0000, 4, 0x10, 0, 0, 0]).unwrap();
        assert_eq!(
            psc,
            PageStateChange {
                gpa: 0x10_0000,
                pages: 4,
                private: true,
                page_size_hint: 0
            }
        );
        assert_eq!(psc.size(), 0x4000);
        let shared = PageStateChange::from_hypercall(12, &[0x20_0000, 512, 0x1, 0, 0, 0]).unwrap();
        assert!(!shared.private);
        assert_eq!(shared.page_size_hint, 1);
        assert_eq!(
            PageStateChange::from_hypercall(11, &[0; 6]),
            Err(PageStateChangeError::OtherHypercall(11))
        );
        for args in [
            [0x1000, 0, 0x10, 0, 0, 0],
            [0x1001, 1, 0x10, 0, 0, 0],
            [!0xFFF_u64, 2, 0x10, 0, 0, 0],
            [0, u64::MAX, 0x10, 0, 0, 0],
        ] {
            assert!(matches!(
                PageStateChange::from_hypercall(12, &args),
                Err(PageStateChangeError::BadRange { .. })
            ));
        }
    }
}
