//! Guest memory for this crate's unit tests.

use sev_psp::memory::VecBacking;

use crate::memory::{GuestBacking, GuestMemory, HostRegion, OutOfRange, Region};

/// Plain vectors as guest memory (the emulated firmware never uses host
/// addresses: no regions are listed).
#[derive(Debug)]
pub(crate) struct TestMemory(pub(crate) VecBacking);

impl GuestBacking for TestMemory {
    fn regions(&self) -> Vec<Region> {
        self.0.regions()
    }
    fn read_plain(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        self.0.read_plain(gpa, buf)
    }
    fn write_plain(&self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        self.0.write_plain(gpa, data)
    }
}

// SAFETY: no host regions are listed, so nothing is handed to a kernel.
unsafe impl GuestMemory for TestMemory {
    fn host_regions(&self) -> Vec<HostRegion> {
        Vec::new()
    }
}
