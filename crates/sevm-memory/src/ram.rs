//! [`GuestRam`]: the guest-physical layout on `vm-memory`'s mmap backend.

use std::fmt;
use std::io;

use vm_memory::{
    Bytes, GuestAddress, GuestMemory as _, GuestMemoryMmap, GuestMemoryRegion as _,
    GuestRegionMmap, MemoryRegionAddress, MmapRegion,
};

use crate::{Gpa, FOUR_GIB, MAX_FIRMWARE_SIZE, MAX_RAM_SIZE, PAGE_SIZE};

/// An access that does not fall entirely inside one guest memory region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("guest physical range {gpa:#x}+{len:#x} is not inside guest memory")]
pub struct OutOfRange {
    /// First byte of the refused access.
    pub gpa: u64,
    /// Length of the refused access.
    pub len: u64,
}

/// Why guest memory could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// RAM size 0.
    #[error("guest RAM size must not be zero")]
    RamEmpty,
    /// RAM size above [`MAX_RAM_SIZE`].
    #[error("guest RAM size {requested:#x} bytes is too large: at most {max:#x} bytes (3 GiB) are supported, all below 4 GiB")]
    RamTooLarge {
        /// Requested size in bytes.
        requested: u64,
        /// Largest accepted size.
        max: u64,
    },
    /// RAM size not a multiple of the page size.
    #[error("guest RAM size {requested:#x} is not a multiple of {PAGE_SIZE:#x} bytes")]
    RamUnaligned {
        /// Requested size in bytes.
        requested: u64,
    },
    /// Empty firmware image.
    #[error("the firmware image is empty")]
    FirmwareEmpty,
    /// Firmware image above [`MAX_FIRMWARE_SIZE`].
    #[error("firmware image of {size:#x} bytes is too large: at most {max:#x} bytes can be mapped below 4 GiB")]
    FirmwareTooLarge {
        /// Image size in bytes.
        size: u64,
        /// Largest accepted size.
        max: u64,
    },
    /// Firmware image larger than the firmware region it is loaded into.
    #[error("firmware image of {size:#x} bytes does not fit the {region:#x}-byte firmware region")]
    FirmwareDoesNotFit {
        /// Image size in bytes.
        size: u64,
        /// Region size in bytes.
        region: u64,
    },
    /// The host could not allocate the pages of a mapping.
    #[error("cannot allocate {size:#x} bytes of guest memory: {source}")]
    Populate {
        /// Size of the mapping.
        size: u64,
        /// The host error.
        source: io::Error,
    },
    /// The host refused the anonymous mapping.
    #[error("cannot map {size:#x} bytes of guest memory")]
    Mmap {
        /// Size of the refused mapping.
        size: u64,
        /// The host error.
        #[source]
        source: io::Error,
    },
}

/// Which part of the guest address space a region is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    /// RAM from GPA 0.
    Ram,
    /// The firmware image mapped to end at 4 GiB.
    Firmware,
}

/// A region of guest memory as seen from outside: where it is and how large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionInfo {
    /// First guest-physical address.
    pub gpa: Gpa,
    /// Size in bytes.
    pub len: u64,
    /// RAM or firmware.
    pub kind: RegionKind,
    /// Host virtual address of the backing (for KVM memory slots).
    pub host_addr: u64,
}

/// Guest physical memory: RAM at GPA 0 and a firmware region ending at 4 GiB.
///
/// The regions are anonymous private mappings made by `vm-memory`
/// ([`MmapRegion::new`]), unmapped when this value is dropped. KVM memory
/// slots take their host addresses from [`GuestRam::region_info`]; the VM fd
/// that holds those slots is closed before this memory is dropped (see
/// sevm's `machine`).
pub struct GuestRam {
    mem: GuestMemoryMmap,
    ram_size: u64,
    firmware_size: u64,
}

impl fmt::Debug for GuestRam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for r in self.region_info() {
            list.entry(&format_args!(
                "{:?} {:#x}..{:#x}",
                r.kind,
                r.gpa.raw(),
                r.gpa.raw() + r.len
            ));
        }
        list.finish()
    }
}

fn round_up_page(n: u64) -> Option<u64> {
    n.checked_add(PAGE_SIZE - 1).map(|v| v & !(PAGE_SIZE - 1))
}

/// One anonymous mapping of `len` bytes placed at `gpa`.
fn region(gpa: u64, len: u64) -> Result<GuestRegionMmap, MemoryError> {
    let mmap_error = |source: io::Error| MemoryError::Mmap { size: len, source };
    let size = usize::try_from(len)
        .map_err(|_| mmap_error(io::Error::from(io::ErrorKind::OutOfMemory)))?;
    let mapping = MmapRegion::new(size).map_err(|e| match e {
        vm_memory::mmap::MmapRegionError::Mmap(source) => mmap_error(source),
        other => mmap_error(io::Error::other(other)),
    })?;
    GuestRegionMmap::new(mapping, GuestAddress(gpa)).map_err(|e| mmap_error(io::Error::other(e)))
}

impl GuestRam {
    /// Maps `ram_size` bytes of RAM at GPA 0 and a firmware region of
    /// `firmware_size` bytes (rounded up to 4 KiB) that ends at 4 GiB.
    pub fn new(ram_size: u64, firmware_size: u64) -> Result<Self, MemoryError> {
        if ram_size == 0 {
            return Err(MemoryError::RamEmpty);
        }
        if ram_size > MAX_RAM_SIZE {
            return Err(MemoryError::RamTooLarge {
                requested: ram_size,
                max: MAX_RAM_SIZE,
            });
        }
        if !ram_size.is_multiple_of(PAGE_SIZE) {
            return Err(MemoryError::RamUnaligned {
                requested: ram_size,
            });
        }
        if firmware_size == 0 {
            return Err(MemoryError::FirmwareEmpty);
        }
        let fw_len = round_up_page(firmware_size)
            .filter(|&l| l <= MAX_FIRMWARE_SIZE)
            .ok_or(MemoryError::FirmwareTooLarge {
                size: firmware_size,
                max: MAX_FIRMWARE_SIZE,
            })?;
        let ram = region(0, ram_size)?;
        let fw = region(FOUR_GIB - fw_len, fw_len)?;
        // RAM ends at most at 3 GiB, the firmware starts at least at
        // 4 GiB - 16 MiB: sorted and disjoint, as `from_regions` requires.
        let mem = GuestMemoryMmap::from_regions(vec![ram, fw]).map_err(|e| MemoryError::Mmap {
            size: ram_size + fw_len,
            source: io::Error::other(e),
        })?;
        Ok(GuestRam {
            mem,
            ram_size,
            firmware_size: fw_len,
        })
    }

    /// Maps memory for `ram_size` bytes of RAM and the given firmware image,
    /// and writes the image so that it ends at 4 GiB (as QEMU's loader does
    /// before the SEV launch encrypts it).
    pub fn with_firmware(ram_size: u64, image: &[u8]) -> Result<Self, MemoryError> {
        let mem = GuestRam::new(ram_size, image.len() as u64)?;
        mem.load_firmware(image)?;
        Ok(mem)
    }

    /// Writes a firmware image so that its last byte is at GPA 0xFFFF_FFFF.
    pub fn load_firmware(&self, image: &[u8]) -> Result<(), MemoryError> {
        let region = self.firmware_size();
        let size = image.len() as u64;
        if size > region {
            return Err(MemoryError::FirmwareDoesNotFit { size, region });
        }
        self.write_plain(Gpa(FOUR_GIB - size), image)
            .map_err(|_| MemoryError::FirmwareDoesNotFit { size, region })
    }

    /// The `vm-memory` guest memory behind this layout, for code that uses
    /// its [`Bytes`] access directly.
    pub fn guest_memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Allocates all guest memory now instead of on first touch. The
    /// migration target does this before it accepts a stream: a host that
    /// cannot hold the guest fails before the source sends anything (not
    /// half-way through), and the pages are not faulted in one by one while
    /// the stream arrives. Returns whether the kernel supports it.
    pub fn preallocate(&self) -> Result<bool, MemoryError> {
        let mut all = true;
        for r in self.mem.iter() {
            all &= populate(r)?;
        }
        Ok(all)
    }

    /// Size of RAM (the region at GPA 0).
    pub fn ram_size(&self) -> u64 {
        self.ram_size
    }

    /// Size of the firmware region (ends at 4 GiB).
    pub fn firmware_size(&self) -> u64 {
        self.firmware_size
    }

    /// First GPA of the firmware region.
    pub fn firmware_base(&self) -> Gpa {
        Gpa(FOUR_GIB - self.firmware_size())
    }

    /// The guest-physical ranges backed by memory, as `(start, length)`,
    /// sorted by address.
    pub fn regions(&self) -> Vec<(Gpa, u64)> {
        self.mem
            .iter()
            .map(|r| (Gpa(r.start_addr().0), r.len()))
            .collect()
    }

    /// The regions with their kind and host address (for KVM memory slots).
    pub fn region_info(&self) -> Vec<RegionInfo> {
        self.mem
            .iter()
            .map(|r| RegionInfo {
                gpa: Gpa(r.start_addr().0),
                len: r.len(),
                kind: if r.start_addr().0 == 0 {
                    RegionKind::Ram
                } else {
                    RegionKind::Firmware
                },
                host_addr: r.as_ptr() as u64,
            })
            .collect()
    }

    /// The host virtual address of `gpa..gpa+len` (which must lie inside one
    /// region), for ioctls that take user addresses (the hardware SEV
    /// backend's `KVM_MEMORY_ENCRYPT_OP` commands).
    pub fn host_address(&self, gpa: Gpa, len: u64) -> Result<u64, OutOfRange> {
        self.region_info()
            .iter()
            .find_map(|r| {
                let off = gpa.0.checked_sub(r.gpa.0)?;
                let end = off.checked_add(len)?;
                (end <= r.len).then(|| r.host_addr + off)
            })
            .ok_or(OutOfRange { gpa: gpa.0, len })
    }

    /// Bytes of guest memory (RAM and firmware) currently resident in host
    /// memory (`mincore`), i.e. the guest memory touched so far. For
    /// measuring the VMM's own memory overhead.
    pub fn resident_bytes(&self) -> u64 {
        self.mem.iter().map(resident).sum()
    }

    /// The region holding all of `gpa..gpa+len` and the offset of `gpa` in
    /// it. Checked here, before any copy: `vm-memory` would copy the part of
    /// a range that fits and then fail.
    fn locate(&self, gpa: Gpa, len: usize) -> Option<(&GuestRegionMmap, MemoryRegionAddress)> {
        let region = self.mem.find_region(GuestAddress(gpa.0))?;
        let offset = gpa.0.checked_sub(region.start_addr().0)?;
        let end = offset.checked_add(u64::try_from(len).ok()?)?;
        (end <= region.len()).then_some((region, MemoryRegionAddress(offset)))
    }

    /// Whether `gpa..gpa+len` lies inside one region.
    pub fn contains(&self, gpa: Gpa, len: u64) -> bool {
        let Some(region) = self.mem.find_region(GuestAddress(gpa.0)) else {
            return false;
        };
        let offset = gpa.0 - region.start_addr().0;
        offset
            .checked_add(len)
            .is_some_and(|end| end <= region.len())
    }

    /// Copies guest memory at `gpa` into `buf` (a volatile copy through
    /// `vm-memory`). The whole range must lie in one region; nothing is
    /// copied otherwise.
    pub fn read_plain(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let refused = OutOfRange {
            gpa: gpa.0,
            len: buf.len() as u64,
        };
        let (region, offset) = self.locate(gpa, buf.len()).ok_or(refused)?;
        region.read_slice(buf, offset).map_err(|_| refused)
    }

    /// Copies `data` into guest memory at `gpa` (a volatile copy through
    /// `vm-memory`). The whole range must lie in one region; nothing is
    /// written otherwise.
    pub fn write_plain(&self, gpa: Gpa, data: &[u8]) -> Result<(), OutOfRange> {
        let refused = OutOfRange {
            gpa: gpa.0,
            len: data.len() as u64,
        };
        let (region, offset) = self.locate(gpa, data.len()).ok_or(refused)?;
        region.write_slice(data, offset).map_err(|_| refused)
    }
}

/// Allocates every page of `region` now (`MADV_POPULATE_WRITE`, Linux
/// 5.14+). Returns `Ok(false)` when the kernel does not know the advice (the
/// pages are then allocated on first touch).
fn populate(region: &GuestRegionMmap) -> Result<bool, MemoryError> {
    let size = region.size();
    // SAFETY: `as_ptr()..as_ptr()+size()` is exactly the live anonymous
    // mapping `region` owns (borrowed here, so it cannot be unmapped during
    // the call); MADV_POPULATE_WRITE only faults its pages in (as writing a
    // zero to each would, without changing the contents).
    let rc = unsafe { libc::madvise(region.as_ptr().cast(), size, libc::MADV_POPULATE_WRITE) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EINVAL) {
        return Ok(false);
    }
    Err(MemoryError::Populate {
        size: region.len(),
        source: err,
    })
}

/// Bytes of `region` resident in host memory (`mincore`); 0 if the kernel
/// refuses.
fn resident(region: &GuestRegionMmap) -> u64 {
    let len = region.size();
    let mut vec = vec![0u8; len.div_ceil(PAGE_SIZE as usize)];
    // SAFETY: `as_ptr()..as_ptr()+len` is a live mapping owned by `region`
    // (page aligned, as mmap returned it); `vec` has one byte per page of
    // it, as mincore requires.
    let rc = unsafe { libc::mincore(region.as_ptr().cast(), len, vec.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    vec.iter().filter(|&&b| b & 1 != 0).count() as u64 * PAGE_SIZE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccessError, MemoryView, PlainView};
    use std::sync::Arc;

    /// Resident set size of this process in bytes (`/proc/self/statm`).
    fn resident_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    /// Linux 5.14 or later (MADV_POPULATE_WRITE).
    fn kernel_has_populate() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release
            .trim()
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (major, minor) >= (5, 14)
    }

    #[test]
    fn preallocate_makes_all_memory_resident_and_keeps_its_contents() {
        const RAM: u64 = 256 << 20;
        let mem = GuestRam::new(RAM, 0x1000).unwrap();
        mem.write_plain(Gpa(0x12_3450), b"kept").unwrap();
        let before = resident_bytes();
        let supported = mem.preallocate().unwrap();
        assert_eq!(supported, kernel_has_populate());
        if supported {
            let grown = resident_bytes().saturating_sub(before);
            assert!(grown >= RAM * 3 / 4, "only {grown} bytes became resident");
        }
        let mut back = [0u8; 4];
        mem.read_plain(Gpa(0x12_3450), &mut back).unwrap();
        assert_eq!(&back, b"kept");
    }

    #[test]
    fn layout_ram_at_zero_firmware_ends_at_4g() {
        let mem = GuestRam::new(16 << 20, 0x1_0001).unwrap();
        assert_eq!(mem.ram_size(), 16 << 20);
        assert_eq!(mem.firmware_size(), 0x1_1000);
        assert_eq!(mem.firmware_base(), Gpa(FOUR_GIB - 0x1_1000));
        assert_eq!(
            mem.regions(),
            vec![(Gpa(0), 16 << 20), (Gpa(FOUR_GIB - 0x1_1000), 0x1_1000)]
        );
    }

    #[test]
    fn size_limits_are_enforced() {
        assert!(matches!(
            GuestRam::new(MAX_RAM_SIZE + PAGE_SIZE, 4096),
            Err(MemoryError::RamTooLarge { .. })
        ));
        assert!(matches!(GuestRam::new(0, 4096), Err(MemoryError::RamEmpty)));
        assert!(matches!(
            GuestRam::new(4097, 4096),
            Err(MemoryError::RamUnaligned { requested: 4097 })
        ));
        assert!(matches!(
            GuestRam::new(4096, 0),
            Err(MemoryError::FirmwareEmpty)
        ));
        assert!(matches!(
            GuestRam::new(4096, MAX_FIRMWARE_SIZE + 1),
            Err(MemoryError::FirmwareTooLarge { .. })
        ));
        let msg = GuestRam::new(4 << 30, 4096).unwrap_err().to_string();
        assert!(msg.contains("3 GiB"), "{msg}");
    }

    #[test]
    fn read_write_round_trip_and_bounds() {
        let mem = GuestRam::new(1 << 20, 4096).unwrap();
        mem.write_plain(Gpa(0x1234), b"hello").unwrap();
        let mut buf = [0u8; 5];
        mem.read_plain(Gpa(0x1234), &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        // last byte of RAM is fine, one past is not
        mem.write_plain(Gpa((1 << 20) - 1), &[7]).unwrap();
        assert_eq!(
            mem.write_plain(Gpa((1 << 20) - 1), &[7, 8]),
            Err(OutOfRange {
                gpa: (1 << 20) - 1,
                len: 2
            })
        );
        assert!(mem.read_plain(Gpa(1 << 20), &mut buf).is_err());
        assert!(mem.read_plain(Gpa(u64::MAX - 1), &mut buf).is_err());
        // the top of the firmware region
        mem.write_plain(Gpa(FOUR_GIB - 2), &[1, 2]).unwrap();
        assert!(mem.write_plain(Gpa(FOUR_GIB - 2), &[1, 2, 3]).is_err());
        // a refused write leaves the bytes that would have fitted unchanged
        assert!(mem.write_plain(Gpa(FOUR_GIB - 2), &[9, 9, 9]).is_err());
        let mut top = [0u8; 2];
        mem.read_plain(Gpa(FOUR_GIB - 2), &mut top).unwrap();
        assert_eq!(top, [1, 2]);
        // zero-length accesses inside a region are fine
        mem.read_plain(Gpa(0), &mut []).unwrap();
    }

    #[test]
    fn firmware_is_placed_to_end_at_4g() {
        let image: Vec<u8> = (0..6000u32).map(|i| i as u8).collect();
        let mem = GuestRam::with_firmware(1 << 20, &image).unwrap();
        assert_eq!(mem.firmware_size(), 8192);
        let mut last = [0u8; 16];
        mem.read_plain(Gpa(FOUR_GIB - 16), &mut last).unwrap();
        assert_eq!(&last, &image[image.len() - 16..]);
        let mut first = [0u8; 4];
        mem.read_plain(Gpa(FOUR_GIB - 6000), &mut first).unwrap();
        assert_eq!(&first, &image[..4]);
        assert!(matches!(
            mem.load_firmware(&vec![0u8; 8193]),
            Err(MemoryError::FirmwareDoesNotFit { .. })
        ));
    }

    #[test]
    fn resident_bytes_counts_touched_pages() {
        let mem = GuestRam::new(1 << 20, 4096).unwrap();
        let before = mem.resident_bytes();
        mem.write_plain(Gpa(0x8000), &[1; 3 * 4096]).unwrap();
        assert_eq!(mem.resident_bytes() - before, 3 * 4096);
    }

    #[test]
    fn plain_view_passes_through() {
        let ram = Arc::new(GuestRam::new(1 << 20, 4096).unwrap());
        let view = PlainView::new(ram.clone());
        view.write(Gpa(0x10), b"abc").unwrap();
        let mut buf = [0u8; 3];
        ram.read_plain(Gpa(0x10), &mut buf).unwrap();
        assert_eq!(&buf, b"abc");
        assert!(matches!(
            view.read(Gpa(2 << 20), &mut buf),
            Err(AccessError::OutOfRange(_))
        ));
    }
}
