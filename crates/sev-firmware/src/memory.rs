//! Guest memory as the platform implementations need it, and the host's
//! view of it.
//!
//! The VMM owns guest memory; it hands it to [`crate::SevPlatform::attach`]
//! as a [`GuestMemory`]: the emulated firmware reads and writes the
//! plaintext through [`GuestBacking`], the hardware implementation gives the
//! kernel the host addresses of [`GuestMemory::host_regions`].

use std::fmt;

pub use sev_psp::memory::{GuestBacking, OutOfRange, Region};

/// One guest-physical region and where the VMM maps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRegion {
    /// First guest-physical address.
    pub gpa: u64,
    /// Length in bytes.
    pub len: u64,
    /// Host virtual address of the first byte.
    pub host_addr: u64,
}

impl HostRegion {
    /// The host address of `gpa..gpa+len` when the whole range lies in this
    /// region.
    pub fn host_address(&self, gpa: u64, len: u64) -> Option<u64> {
        let off = gpa.checked_sub(self.gpa)?;
        let end = off.checked_add(len)?;
        (end <= self.len).then(|| self.host_addr + off)
    }
}

/// Guest memory handed to a platform: the plaintext backing and the host
/// mappings behind it.
///
/// # Safety
///
/// The hardware implementation passes the addresses of
/// [`GuestMemory::host_regions`] to the kernel, which reads and writes them
/// (in-place encryption, LAUNCH_SECRET, DBG_ENCRYPT, RECEIVE_UPDATE_DATA).
/// An implementation guarantees that every region it lists is a live,
/// writable mapping of `len` bytes for as long as the object exists, that
/// the list does not change, and that no Rust reference into those bytes
/// exists (guest memory is only ever copied).
pub unsafe trait GuestMemory: GuestBacking + fmt::Debug {
    /// The regions with their host mappings, sorted by guest address.
    fn host_regions(&self) -> Vec<HostRegion>;
}

/// Why a [`HostView`] access failed.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The range is not backed by guest memory.
    #[error("guest physical range {gpa:#x}+{len:#x} is not inside guest memory")]
    OutOfRange {
        /// First address.
        gpa: u64,
        /// Length.
        len: u64,
    },
    /// The memory-encryption model refused the access.
    #[error("guest memory access at {gpa:#x} refused by the memory view")]
    Refused {
        /// First byte of the access.
        gpa: u64,
        /// What the model reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl From<OutOfRange> for ViewError {
    fn from(e: OutOfRange) -> Self {
        ViewError::OutOfRange {
            gpa: e.gpa,
            len: e.len,
        }
    }
}

/// What a hypervisor sees of a guest's memory: ciphertext for the guest's
/// private pages.
pub trait HostView: Send + Sync + fmt::Debug {
    /// Reads `buf.len()` bytes at `gpa` as the host sees them.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), ViewError>;
    /// Writes `data` at `gpa` as the host would.
    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), ViewError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_region_translates_ranges_inside_it_only() {
        let r = HostRegion {
            gpa: 0x1000,
            len: 0x2000,
            host_addr: 0x7000_0000,
        };
        assert_eq!(r.host_address(0x1000, 0x2000), Some(0x7000_0000));
        assert_eq!(r.host_address(0x1800, 0x10), Some(0x7000_0800));
        assert_eq!(r.host_address(0x2800, 0x1000), None);
        assert_eq!(r.host_address(0x800, 0x10), None);
        assert_eq!(r.host_address(0x1000, u64::MAX), None);
    }
}
