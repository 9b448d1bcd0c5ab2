//! [`RamBacking`]: guest memory as the SEV platform boundary takes it.

use std::sync::Arc;

use sev_firmware::memory::{GuestBacking, OutOfRange as PspOutOfRange, Region};
use sev_firmware::{GuestMemory, HostRegion};

use crate::{Gpa, GuestRam, OutOfRange};

/// The VMM's guest memory as the platform's [`GuestMemory`]: the emulated
/// firmware reads and writes the plaintext through it, the hardware
/// implementation gives the kernel its host addresses.
#[derive(Debug, Clone)]
pub struct RamBacking(Arc<GuestRam>);

impl RamBacking {
    /// Adapts `ram`.
    pub fn new(ram: Arc<GuestRam>) -> Self {
        RamBacking(ram)
    }
}

fn psp_out_of_range(e: OutOfRange) -> PspOutOfRange {
    PspOutOfRange {
        gpa: e.gpa,
        len: e.len,
    }
}

impl GuestBacking for RamBacking {
    fn regions(&self) -> Vec<Region> {
        // `GuestRam` lists RAM (at 0) before the firmware (ending at 4 GiB):
        // sorted and disjoint, as the trait requires.
        self.0
            .regions()
            .into_iter()
            .map(|(gpa, len)| Region {
                gpa: gpa.raw(),
                len,
            })
            .collect()
    }

    fn read_plain(&self, gpa: u64, buf: &mut [u8]) -> Result<(), PspOutOfRange> {
        self.0.read_plain(Gpa(gpa), buf).map_err(psp_out_of_range)
    }

    fn write_plain(&self, gpa: u64, data: &[u8]) -> Result<(), PspOutOfRange> {
        self.0.write_plain(Gpa(gpa), data).map_err(psp_out_of_range)
    }
}

impl GuestRam {
    /// The regions with their host mappings, as the SEV platform takes them.
    pub fn host_regions(&self) -> Vec<HostRegion> {
        self.region_info()
            .into_iter()
            .map(|r| HostRegion {
                gpa: r.gpa.raw(),
                len: r.len,
                host_addr: r.host_addr,
            })
            .collect()
    }
}

// SAFETY: `GuestRam`'s regions are `vm-memory` mappings it owns for its whole
// life (kept alive by the `Arc`), made once at creation and never changed;
// all access copies bytes in and out through `vm-memory`'s volatile `Bytes`
// and never forms Rust references into guest memory.
unsafe impl GuestMemory for RamBacking {
    fn host_regions(&self) -> Vec<HostRegion> {
        self.0.host_regions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backing_lists_ram_and_firmware_in_order() {
        let ram = Arc::new(GuestRam::new(2 << 20, 0x2_0000).unwrap());
        let b = RamBacking::new(ram);
        assert_eq!(
            b.regions(),
            vec![
                Region {
                    gpa: 0,
                    len: 2 << 20
                },
                Region {
                    gpa: (1 << 32) - 0x2_0000,
                    len: 0x2_0000
                }
            ]
        );
        let mut buf = [0u8; 4];
        assert!(b.read_plain(2 << 20, &mut buf).is_err());
        let hr = b.host_regions();
        assert_eq!(hr.len(), 2);
        assert_eq!((hr[1].gpa, hr[1].len), ((1 << 32) - 0x2_0000, 0x2_0000));
    }
}
