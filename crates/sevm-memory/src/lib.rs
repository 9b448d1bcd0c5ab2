//! Guest physical memory of the sevm VMM, on rust-vmm's `vm-memory`.
//!
//! * [`GuestRam`]: the layout (RAM from GPA 0, the firmware region ending at
//!   4 GiB) as a [`vm_memory::GuestMemoryMmap`] of anonymous mappings. Every
//!   byte copy in or out goes through `vm-memory`'s [`vm_memory::Bytes`]
//!   (volatile access: the guest writes the same memory concurrently).
//! * [`MemoryView`]: the *host view* of guest memory that everything in the
//!   VMM uses after launch; for an SEV guest it returns ciphertext for
//!   private pages ([`SevView`]), [`PlainView`] is the pass-through used for
//!   guests without SEV.
//! * [`RamBacking`]: the memory as the SEV platform boundary (`sev-firmware`)
//!   takes it: the emulated firmware's plaintext backing and the host
//!   mappings the hardware implementation hands to the kernel.
//!
//! The crate sits between `sev-firmware` and `sevm`: it needs the platform's
//! memory traits, and the platform boundary (shared with `sev-tools`, which
//! has no guest memory) does not need a VMM's memory layout.

mod backing;
mod ram;
mod view;

use std::fmt;

pub use backing::RamBacking;
pub use ram::{GuestRam, MemoryError, OutOfRange, RegionInfo, RegionKind};
pub use view::{AccessError, MemoryView, PlainView, SevView};

/// A guest physical address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Gpa(pub u64);

impl Gpa {
    /// The address as a number.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// `self + offset`, or `None` on overflow.
    pub fn checked_add(self, offset: u64) -> Option<Gpa> {
        self.0.checked_add(offset).map(Gpa)
    }
}

impl fmt::Debug for Gpa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gpa({:#x})", self.0)
    }
}

impl fmt::Display for Gpa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Host page size assumed for guest memory layout.
pub const PAGE_SIZE: u64 = 4096;
/// 4 GiB: the firmware region ends here.
pub const FOUR_GIB: u64 = 1 << 32;
/// Largest RAM size accepted for now (all RAM lives below 4 GiB, under the
/// firmware and the KVM TSS/identity-map pages).
pub const MAX_RAM_SIZE: u64 = 3 << 30;
/// Largest firmware image: the 16 MiB below 4 GiB (QEMU's pflash window);
/// the KVM TSS and identity map pages sit just below it (see sevm's
/// `machine`).
pub const MAX_FIRMWARE_SIZE: u64 = 16 << 20;
