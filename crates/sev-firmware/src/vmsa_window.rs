//! Where the emulated firmware keeps an SEV-ES guest's VMSA pages.
//!
//! On hardware a VMSA page is a host page that KVM owns, outside the guest's
//! RAM; LAUNCH_UPDATE_VMSA and SEND/RECEIVE_UPDATE_VMSA address it by its
//! (system) physical address. The emulated firmware addresses every page by
//! guest-physical address through a [`GuestBacking`], so an SEV-ES guest's
//! backing gets one more region, the **VMSA window**: one page per possible
//! vCPU at [`VMSA_WINDOW_GPA`], above any physical address a guest can have,
//! that the VMM never maps into the guest
//! (docs/sev-es.md#where-the-vmsa-pages-live).
// UNCERTAIN (docs/protocol/choices.md#u33): the VMSA window's address and
// size, where hardware uses KVM-owned system pages.

use std::fmt;
use std::sync::Arc;

use sev_psp::memory::{validate_regions, MemoryError, VecBacking};

use crate::memory::{GuestBacking, GuestMemory, OutOfRange, Region};

/// The size of one VMSA page.
pub const VMSA_PAGE_LEN: usize = 4096;

/// One vCPU's VMSA page, as the VMM built it.
pub type VmsaPage = [u8; VMSA_PAGE_LEN];

/// The first address of the VMSA window: 2^52, one past the largest
/// physical address an x86-64 guest can have (MAXPHYADDR is at most 52).
pub const VMSA_WINDOW_GPA: u64 = 1 << 52;

/// How many VMSA pages the window holds (one per vCPU; QEMU and sevm allow
/// at most 255 vCPUs).
pub const MAX_VMSAS: usize = 256;

/// The address of vCPU `index`'s VMSA page in the window, or `None` past
/// [`MAX_VMSAS`].
pub fn vmsa_gpa(index: usize) -> Option<u64> {
    (index < MAX_VMSAS).then(|| VMSA_WINDOW_GPA + (index * VMSA_PAGE_LEN) as u64)
}

/// A guest's RAM with the VMSA window after it.
pub(crate) struct WithVmsaWindow {
    ram: Arc<dyn GuestMemory>,
    window: VecBacking,
}

impl fmt::Debug for WithVmsaWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithVmsaWindow")
            .field("ram", &self.ram)
            .finish_non_exhaustive()
    }
}

fn window_region() -> Region {
    Region {
        gpa: VMSA_WINDOW_GPA,
        len: (MAX_VMSAS * VMSA_PAGE_LEN) as u64,
    }
}

impl WithVmsaWindow {
    /// `ram` and an empty (zeroed) window; fails if `ram` reaches into the
    /// window.
    pub(crate) fn new(ram: Arc<dyn GuestMemory>) -> Result<Self, MemoryError> {
        let window = VecBacking::new(&[window_region()])?;
        let m = WithVmsaWindow { ram, window };
        validate_regions(&m.regions())?;
        Ok(m)
    }

    fn in_window(gpa: u64) -> bool {
        gpa >= VMSA_WINDOW_GPA
    }
}

impl GuestBacking for WithVmsaWindow {
    fn regions(&self) -> Vec<Region> {
        let mut regions = self.ram.regions();
        regions.extend(self.window.regions());
        regions
    }

    fn read_plain(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        if Self::in_window(gpa) {
            self.window.read_plain(gpa, buf)
        } else {
            check_not_crossing(gpa, buf.len())?;
            self.ram.read_plain(gpa, buf)
        }
    }

    fn write_plain(&self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        if Self::in_window(gpa) {
            self.window.write_plain(gpa, data)
        } else {
            check_not_crossing(gpa, data.len())?;
            self.ram.write_plain(gpa, data)
        }
    }
}

/// An access that starts in RAM must not run into the window.
fn check_not_crossing(gpa: u64, len: usize) -> Result<(), OutOfRange> {
    let err = OutOfRange {
        gpa,
        len: len as u64,
    };
    match gpa.checked_add(len as u64) {
        Some(end) if end <= VMSA_WINDOW_GPA => Ok(()),
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_memory::TestMemory;

    #[test]
    fn the_window_follows_ram_and_holds_one_page_per_vcpu() {
        let ram = VecBacking::new(&[Region {
            gpa: 0,
            len: 0x10_000,
        }])
        .unwrap();
        let m = WithVmsaWindow::new(Arc::new(TestMemory(ram))).unwrap();
        let regions = m.regions();
        assert_eq!(regions.len(), 2);
        assert_eq!(regions[1], window_region());
        sev_psp::memory::validate_regions(&regions).unwrap();

        assert_eq!(vmsa_gpa(0), Some(VMSA_WINDOW_GPA));
        assert_eq!(vmsa_gpa(3), Some(VMSA_WINDOW_GPA + 3 * 4096));
        assert_eq!(vmsa_gpa(MAX_VMSAS), None);
        let last = vmsa_gpa(MAX_VMSAS - 1).unwrap();
        m.write_plain(last, &[7u8; VMSA_PAGE_LEN]).unwrap();
        let mut page = [0u8; VMSA_PAGE_LEN];
        m.read_plain(last, &mut page).unwrap();
        assert_eq!(page, [7u8; VMSA_PAGE_LEN]);
        // RAM is untouched and still reachable; nothing runs across.
        m.write_plain(0xff00, &[1u8; 0x100]).unwrap();
        assert!(m.write_plain(0xff00, &[1u8; 0x200]).is_err());
        assert!(m.read_plain(VMSA_WINDOW_GPA - 8, &mut [0u8; 16]).is_err());
        assert!(m.read_plain(last + 8, &mut [0u8; 4096]).is_err());
    }
}
