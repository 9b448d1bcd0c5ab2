//! Guest physical memory: the RAM below 4 GiB and the firmware region that
//! ends at 4 GiB, backed by anonymous host mappings.
//!
//! Two ways in:
//! * [`GuestRam::read_plain`] / [`GuestRam::write_plain`] touch the backing
//!   directly. Only the pre-launch loader (placing the firmware image before
//!   LAUNCH_UPDATE_DATA encrypts it) and the emulated firmware's backing use
//!   them.
//! * Everything else in the VMM goes through a [`MemoryView`], the *host view*
//!   of guest memory. For an SEV guest that view returns ciphertext for private
//!   pages; [`PlainView`] is the pass-through used for guests without SEV.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::ptr::NonNull;
use std::sync::Arc;

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
/// the KVM TSS and identity map pages sit just below it (see `machine`).
pub const MAX_FIRMWARE_SIZE: u64 = 16 << 20;

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

/// One anonymous host mapping backing a guest-physical range.
struct Mapping {
    gpa: u64,
    len: u64,
    host: NonNull<u8>,
    kind: RegionKind,
}

impl Mapping {
    fn new(gpa: u64, len: u64, kind: RegionKind) -> Result<Self, MemoryError> {
        let size = usize::try_from(len).map_err(|_| MemoryError::Mmap {
            size: len,
            source: io::Error::from(io::ErrorKind::OutOfMemory),
        })?;
        // SAFETY: an anonymous private mapping at an address of the kernel's
        // choosing: no existing memory is affected. The result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(MemoryError::Mmap {
                size: len,
                source: io::Error::last_os_error(),
            });
        }
        let host = NonNull::new(ptr.cast::<u8>()).ok_or(MemoryError::Mmap {
            size: len,
            source: io::Error::from(io::ErrorKind::OutOfMemory),
        })?;
        Ok(Mapping {
            gpa,
            len,
            host,
            kind,
        })
    }

    /// Allocates every page of the mapping now (`MADV_POPULATE_WRITE`, Linux
    /// 5.14+). Returns `Ok(false)` when the kernel does not know the advice
    /// (the pages are then allocated on first touch, as before).
    fn populate(&self) -> Result<bool, MemoryError> {
        let size = usize::try_from(self.len).unwrap_or(0);
        // SAFETY: `host`/`size` describe exactly the live mapping created in
        // `Mapping::new`; MADV_POPULATE_WRITE only faults its pages in (as
        // writing a zero to each would, without changing the contents).
        let rc =
            unsafe { libc::madvise(self.host.as_ptr().cast(), size, libc::MADV_POPULATE_WRITE) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINVAL) {
            return Ok(false);
        }
        Err(MemoryError::Populate {
            size: self.len,
            source: err,
        })
    }

    /// Host pointer for `gpa..gpa+len` if the range lies inside this mapping.
    fn host_range(&self, gpa: u64, len: u64) -> Option<*mut u8> {
        let offset = gpa.checked_sub(self.gpa)?;
        let end = offset.checked_add(len)?;
        if end > self.len {
            return None;
        }
        let offset = usize::try_from(offset).ok()?;
        // SAFETY: `offset + len <= self.len`, the size of the mapping, so the
        // resulting pointer stays inside (or one past the end of) the mapping.
        Some(unsafe { self.host.as_ptr().add(offset) })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // The length was accepted by mmap, so it fits in usize.
        let size = usize::try_from(self.len).unwrap_or(0);
        // SAFETY: `host`/`size` describe exactly the mapping created in
        // `Mapping::new`, which nothing references after `GuestRam` is dropped
        // (KVM slots are removed when the VM fd, owned by the machine that
        // also owns this `GuestRam`, is closed first; see `machine`).
        unsafe {
            libc::munmap(self.host.as_ptr().cast(), size);
        }
    }
}

/// Guest physical memory: RAM at GPA 0 and a firmware region ending at 4 GiB.
pub struct GuestRam {
    regions: Vec<Mapping>,
}

// SAFETY: the mappings are plain memory owned by this struct for its whole
// life; all access goes through bounds-checked byte copies (no references to
// guest memory are ever handed out), so sharing between threads is as safe as
// the guest's own concurrent access to the same memory.
unsafe impl Send for GuestRam {}
// SAFETY: see `Send` above; `&self` methods only copy bytes in or out.
unsafe impl Sync for GuestRam {}

impl fmt::Debug for GuestRam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for m in &self.regions {
            list.entry(&format_args!(
                "{:?} {:#x}..{:#x}",
                m.kind,
                m.gpa,
                m.gpa + m.len
            ));
        }
        list.finish()
    }
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

fn round_up_page(n: u64) -> Option<u64> {
    n.checked_add(PAGE_SIZE - 1).map(|v| v & !(PAGE_SIZE - 1))
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
        let ram = Mapping::new(0, ram_size, RegionKind::Ram)?;
        let fw = Mapping::new(FOUR_GIB - fw_len, fw_len, RegionKind::Firmware)?;
        Ok(GuestRam {
            regions: vec![ram, fw],
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

    /// Allocates all guest memory now instead of on first touch. The
    /// migration target does this before it accepts a stream: a host that
    /// cannot hold the guest fails before the source sends anything (not
    /// half-way through), and the pages are not faulted in one by one while
    /// the stream arrives. Returns whether the kernel supports it.
    pub fn preallocate(&self) -> Result<bool, MemoryError> {
        let mut all = true;
        for m in &self.regions {
            all &= m.populate()?;
        }
        Ok(all)
    }

    /// Size of RAM (the region at GPA 0).
    pub fn ram_size(&self) -> u64 {
        self.region_len(RegionKind::Ram)
    }

    /// Size of the firmware region (ends at 4 GiB).
    pub fn firmware_size(&self) -> u64 {
        self.region_len(RegionKind::Firmware)
    }

    /// First GPA of the firmware region.
    pub fn firmware_base(&self) -> Gpa {
        Gpa(FOUR_GIB - self.firmware_size())
    }

    fn region_len(&self, kind: RegionKind) -> u64 {
        self.regions
            .iter()
            .find(|m| m.kind == kind)
            .map_or(0, |m| m.len)
    }

    /// The guest-physical ranges backed by memory, as `(start, length)`.
    pub fn regions(&self) -> Vec<(Gpa, u64)> {
        self.regions.iter().map(|m| (Gpa(m.gpa), m.len)).collect()
    }

    /// The regions with their kind and host address (for KVM memory slots).
    pub fn region_info(&self) -> Vec<RegionInfo> {
        self.regions
            .iter()
            .map(|m| RegionInfo {
                gpa: Gpa(m.gpa),
                len: m.len,
                kind: m.kind,
                host_addr: m.host.as_ptr() as u64,
            })
            .collect()
    }

    fn host_range(&self, gpa: Gpa, len: usize) -> Result<*mut u8, OutOfRange> {
        let len64 = len as u64;
        self.regions
            .iter()
            .find_map(|m| m.host_range(gpa.0, len64))
            .ok_or(OutOfRange {
                gpa: gpa.0,
                len: len64,
            })
    }

    /// The host virtual address of `gpa..gpa+len` (which must lie inside one
    /// region), for ioctls that take user addresses (the hardware SEV
    /// backend's `KVM_MEMORY_ENCRYPT_OP` commands).
    pub fn host_address(&self, gpa: Gpa, len: u64) -> Result<u64, OutOfRange> {
        self.regions
            .iter()
            .find_map(|m| m.host_range(gpa.0, len))
            .map(|p| p as u64)
            .ok_or(OutOfRange { gpa: gpa.0, len })
    }

    /// Bytes of guest memory (RAM and firmware) currently resident in host
    /// memory (`mincore`), i.e. the guest memory touched so far. For
    /// measuring the VMM's own memory overhead.
    pub fn resident_bytes(&self) -> u64 {
        let page = PAGE_SIZE as usize;
        let mut total = 0u64;
        for m in &self.regions {
            let Ok(len) = usize::try_from(m.len) else {
                continue;
            };
            let mut vec = vec![0u8; len.div_ceil(page)];
            // SAFETY: `m.host..m.host+len` is a live mapping owned by `self`
            // (page aligned, as mmap returned it); `vec` has one byte per
            // page of it, as mincore requires.
            let rc = unsafe { libc::mincore(m.host.as_ptr().cast(), len, vec.as_mut_ptr()) };
            if rc == 0 {
                total += vec.iter().filter(|&&b| b & 1 != 0).count() as u64 * PAGE_SIZE;
            }
        }
        total
    }

    /// Whether `gpa..gpa+len` lies inside one region.
    pub fn contains(&self, gpa: Gpa, len: u64) -> bool {
        self.regions
            .iter()
            .any(|m| m.host_range(gpa.0, len).is_some())
    }

    /// Copies guest memory at `gpa` into `buf`. The whole range must lie in
    /// one region.
    pub fn read_plain(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let src = self.host_range(gpa, buf.len())?;
        // SAFETY: `host_range` checked that `src..src+buf.len()` lies inside a
        // live mapping owned by `self`; `buf` is a distinct Rust allocation, so
        // the ranges do not overlap. The guest may write the same bytes
        // concurrently; we only copy bytes and never form references into
        // guest memory.
        unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` into guest memory at `gpa`. The whole range must lie in
    /// one region.
    pub fn write_plain(&self, gpa: Gpa, data: &[u8]) -> Result<(), OutOfRange> {
        let dst = self.host_range(gpa, data.len())?;
        // SAFETY: as in `read_plain`: the destination range lies inside a live
        // mapping owned by `self` and cannot overlap `data`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Ok(())
    }
}

/// Why a [`MemoryView`] access failed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The range is not backed by guest memory.
    #[error(transparent)]
    OutOfRange(#[from] OutOfRange),
    /// The view's backend (e.g. the SEV memory-encryption model) refused.
    #[error("guest memory access at {gpa:#x} refused by the memory view")]
    Backend {
        /// First byte of the access.
        gpa: u64,
        /// What the backend reported.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

/// The host's view of guest memory. All VMM accesses to guest memory after
/// launch (devices, debug, snapshot, migration) go through this trait; for an
/// SEV guest the implementation returns ciphertext for private pages.
pub trait MemoryView: Send + Sync {
    /// Reads `buf.len()` bytes at `gpa` as the host sees them.
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), AccessError>;
    /// Writes `data` at `gpa` as the host would.
    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), AccessError>;
}

/// The pass-through host view of a guest without memory encryption.
#[derive(Debug, Clone)]
pub struct PlainView {
    ram: Arc<GuestRam>,
}

impl PlainView {
    /// A view that reads and writes `ram` unchanged.
    pub fn new(ram: Arc<GuestRam>) -> Self {
        PlainView { ram }
    }
}

impl MemoryView for PlainView {
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), AccessError> {
        Ok(self.ram.read_plain(gpa, buf)?)
    }

    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), AccessError> {
        Ok(self.ram.write_plain(gpa, data)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
