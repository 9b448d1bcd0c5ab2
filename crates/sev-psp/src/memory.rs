//! The memory-encryption model (docs/architecture.md#memory-encryption-model,
//! docs/protocol/memory.md#private-and-shared, docs/protocol/memory.md#cipher).
//!
//! On SEV hardware a guest's private pages are stored in DRAM as ciphertext
//! under the guest's VM encryption key (VEK) with an address tweak: the guest
//! reads plaintext, the hypervisor reads ciphertext, and whatever the
//! hypervisor writes into a private page decrypts to garbage in the guest.
//!
//! The emulator turns this around. The backing that KVM maps for the guest
//! ([`GuestBacking`]) holds the guest's **plaintext**, so the guest runs
//! unmodified. The VMM never reads that mapping itself; it goes through the
//! *host view* ([`host_read`], [`host_write`]), which shows what a hypervisor
//! on hardware would see:
//!
//! * a **shared** page reads and writes as it is;
//! * a **private** page reads as its encryption under the VEK with an address
//!   tweak (see "Cipher" below): deterministic per key/address/plaintext,
//!   different for equal plaintext at two addresses or under two keys, and
//!   ciphertext moved to another page or another 16-byte block decrypts to
//!   garbage there;
//! * bytes written into a private page are taken as ciphertext, so the guest
//!   finds their decryption (a partial 16-byte block is read-modify-written on
//!   its ciphertext, as the hardware's 16-byte granularity implies).
//!
//! Pages start shared. They turn private when a firmware command writes them
//! (LAUNCH_UPDATE_DATA, LAUNCH_SECRET, RECEIVE_UPDATE_DATA, DBG_ENCRYPT call
//! [`MemoryState::mark_private`]) and all guest RAM is private once the guest
//! runs ([`MemoryState::mark_all_private`]). An SEV-SNP guest's state
//! ([`MemoryState::new_snp`]) models the RMP as well: its private pages are
//! the pages assigned to the guest, host writes into them fail with
//! [`MemoryError::RmpFault`], and they change only through LAUNCH_UPDATE and
//! page-state changes ([`MemoryState::convert_pages`],
//! docs/protocol/snp.md#rmp-model). The firmware itself accesses
//! plaintext through [`firmware_read`]/[`firmware_write`];
//! [`decrypt_from_guest`]/[`encrypt_for_guest`] give DBG_DECRYPT/DBG_ENCRYPT
//! semantics.
//!
//! **This models the hardware's observable behaviour, not its
//! confidentiality.** The plaintext lives in this process's memory and in the
//! guest mapping; anyone who can read the VMM process (the host) can read the
//! guest. The model exists so that VMM code, tools and tests see exactly the
//! data flows they would see on SEV hardware (and fail where they would fail
//! there), not to protect the guest.
//!
//! A known simplification: privacy is tracked per page and turning a page
//! private does not re-encode its contents. On hardware, bytes the hypervisor
//! wrote in the clear before the guest runs decrypt to garbage when the guest
//! reads them as private memory; in the model the guest sees them in the clear
//! (only bytes written through the host view *after* a page is private come out
//! as garbage).
//!
//! # Cipher
//!
//! AES-128-XTS (IEEE 1619) with one 4 KiB page as the data unit and the
//! guest-physical page frame number as the data-unit number. For block `j`
//! (0..256) of the page with frame number `pfn = gpa >> 12`:
//!
//! ```text
//! T_0 = AES-128(K2, le128(pfn))          T_j = T_0 · α^j  in GF(2^128)
//! C_j = AES-128(K1, P_j ⊕ T_j) ⊕ T_j
//! K1  = VEK                              K2  = HMAC-SHA-256(VEK, "sevm memory-encryption tweak key")[0..16]
//! ```
//!
//! UNCERTAIN (docs/protocol/choices.md#u13): the hardware's tweak function is not
//! public; standard XTS was chosen because it has the required properties, is
//! pinned by the IEEE 1619 vectors, and runs a whole page through the AES-NI
//! pipeline per tweak encryption. The tweak uses the guest-physical address
//! (the hardware uses the system-physical one), which is what the VMM can
//! observe.

mod cipher;
mod pagemap;

use std::fmt;
use std::sync::{PoisonError, RwLock};

pub use cipher::{Vek, BLOCK_LEN, VEK_LEN};

use cipher::MemoryCipher;
use pagemap::PageMap;

/// Page size of the private-page map and of the cipher's data unit.
pub const PAGE_SIZE: u64 = 4096;
const PAGE_SHIFT: u32 = 12;
const PAGE_OFFSET_MASK: u64 = PAGE_SIZE - 1;
const PAGE_BYTES: usize = 4096;

/// A guest-physical region backed by host memory, page aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region {
    /// First guest-physical address.
    pub gpa: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Region {
    /// One past the last address, `None` if that overflows.
    pub fn end(&self) -> Option<u64> {
        self.gpa.checked_add(self.len)
    }

    /// Whether `gpa` lies inside the region.
    pub fn contains(&self, gpa: u64) -> bool {
        gpa >= self.gpa && self.end().is_none_or(|end| gpa < end)
    }
}

/// An access to guest-physical memory outside the backing (or across a gap
/// between two regions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("guest-physical access of {len:#x} bytes at {gpa:#x} is outside guest memory")]
pub struct OutOfRange {
    /// First address of the refused access.
    pub gpa: u64,
    /// Its length in bytes.
    pub len: u64,
}

/// Errors of the memory-encryption model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    /// The access is not inside guest memory.
    #[error(transparent)]
    OutOfRange(#[from] OutOfRange),
    /// A region is empty, not 4 KiB aligned (start or length), or runs past the
    /// end of the address space.
    #[error("invalid guest memory region: {len:#x} bytes at {gpa:#x} (must be non-empty and 4 KiB aligned)")]
    InvalidRegion {
        /// Start of the region.
        gpa: u64,
        /// Length of the region.
        len: u64,
    },
    /// Two regions overlap or are not sorted by address.
    #[error("guest memory regions at {first:#x} and {second:#x} overlap or are out of order")]
    OverlappingRegions {
        /// Start of the earlier region in the list.
        first: u64,
        /// Start of the region that follows it.
        second: u64,
    },
    /// A region is too large for host memory (or its page map).
    #[error("guest memory region of {len:#x} bytes at {gpa:#x} is too large for this host")]
    RegionTooLarge {
        /// Start of the region.
        gpa: u64,
        /// Length of the region.
        len: u64,
    },
    /// An operation with the firmware's 16-byte granularity got an address or
    /// length that is not a multiple of 16.
    #[error("access of {len:#x} bytes at {gpa:#x} is not 16-byte aligned")]
    Misaligned {
        /// Address of the access.
        gpa: u64,
        /// Length of the access.
        len: u64,
    },
    /// A host-view write into a page the RMP assigns to an SEV-SNP guest
    /// (docs/protocol/snp.md#rmp-model): on hardware the hypervisor's write
    /// faults (#PF with the RMP bit); nothing was written.
    #[error("RMP fault: the page at {gpa:#x} is assigned to the SNP guest (private)")]
    RmpFault {
        /// The first faulting page.
        gpa: u64,
    },
}

/// Guest physical memory as the emulated firmware sees it: the plaintext
/// backing (implemented by the VMM over its mmap, and by [`VecBacking`] for
/// tests). Out-of-range accesses return an error, never panic.
///
/// An access may span adjacent regions only if they are contiguous; otherwise
/// it fails with [`OutOfRange`] naming the whole access. [`pieces`] does that
/// splitting for implementations.
pub trait GuestBacking: Send + Sync {
    /// The regions, sorted by address and non-overlapping.
    fn regions(&self) -> Vec<Region>;
    /// Reads `buf.len()` plaintext bytes at `gpa`.
    fn read_plain(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange>;
    /// Writes `data` as plaintext at `gpa`.
    fn write_plain(&self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange>;
}

/// Checks that `regions` are non-empty, 4 KiB aligned, inside the address
/// space, sorted and non-overlapping (adjacent is fine).
pub fn validate_regions(regions: &[Region]) -> Result<(), MemoryError> {
    for r in regions {
        let aligned = r.gpa & PAGE_OFFSET_MASK == 0 && r.len & PAGE_OFFSET_MASK == 0;
        if r.len == 0 || !aligned || r.end().is_none() {
            return Err(MemoryError::InvalidRegion {
                gpa: r.gpa,
                len: r.len,
            });
        }
    }
    for pair in regions.windows(2) {
        if let [a, b] = pair {
            if a.end().is_none_or(|end| end > b.gpa) {
                return Err(MemoryError::OverlappingRegions {
                    first: a.gpa,
                    second: b.gpa,
                });
            }
        }
    }
    Ok(())
}

/// The part of an access that falls into one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Index of the region in the list.
    pub index: usize,
    /// Offset of the piece inside that region.
    pub offset: u64,
    /// Length of the piece (never 0).
    pub len: u64,
    /// Offset of the piece inside the access (the caller's buffer).
    pub buf_offset: u64,
}

/// Iterator over the [`Piece`]s of an access validated by [`pieces`].
#[derive(Debug, Clone)]
pub struct Pieces<'a> {
    regions: &'a [Region],
    index: usize,
    gpa: u64,
    remaining: u64,
    done: u64,
}

impl Iterator for Pieces<'_> {
    type Item = Piece;

    fn next(&mut self) -> Option<Piece> {
        if self.remaining == 0 {
            return None;
        }
        let region = self.regions.get(self.index)?;
        let offset = self.gpa.checked_sub(region.gpa)?;
        let len = self.remaining.min(region.len.checked_sub(offset)?);
        if len == 0 {
            return None;
        }
        let piece = Piece {
            index: self.index,
            offset,
            len,
            buf_offset: self.done,
        };
        self.index += 1;
        self.gpa = self.gpa.checked_add(len)?;
        self.remaining -= len;
        self.done += len;
        Some(piece)
    }
}

/// Splits the access `[gpa, gpa + len)` over `regions` (sorted,
/// non-overlapping), checking first that all of it is covered by contiguous
/// regions. A zero-length access is always valid and yields nothing.
pub fn pieces(regions: &[Region], gpa: u64, len: u64) -> Result<Pieces<'_>, OutOfRange> {
    let err = OutOfRange { gpa, len };
    let pieces = Pieces {
        regions,
        index: 0,
        gpa,
        remaining: len,
        done: 0,
    };
    if len == 0 {
        return Ok(pieces);
    }
    let end = gpa.checked_add(len).ok_or(err)?;
    let first = regions
        .partition_point(|r| r.gpa <= gpa)
        .checked_sub(1)
        .ok_or(err)?;
    let mut cur = gpa;
    let mut index = first;
    loop {
        let region = regions.get(index).ok_or(err)?;
        let region_end = region.end().ok_or(err)?;
        if cur < region.gpa || cur >= region_end {
            return Err(err);
        }
        if end <= region_end {
            break;
        }
        cur = region_end;
        index += 1;
    }
    Ok(Pieces {
        index: first,
        ..pieces
    })
}

/// Guest memory in plain `Vec<u8>`s (one per region, each behind a lock), for
/// tests and benchmarks.
pub struct VecBacking {
    regions: Vec<Region>,
    mem: Vec<RwLock<Vec<u8>>>,
}

impl fmt::Debug for VecBacking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VecBacking")
            .field("regions", &self.regions)
            .finish_non_exhaustive()
    }
}

impl VecBacking {
    /// Zero-filled memory for `regions` (validated by [`validate_regions`]).
    pub fn new(regions: &[Region]) -> Result<Self, MemoryError> {
        validate_regions(regions)?;
        let mut mem = Vec::with_capacity(regions.len());
        for r in regions {
            let len = usize::try_from(r.len).map_err(|_| MemoryError::RegionTooLarge {
                gpa: r.gpa,
                len: r.len,
            })?;
            mem.push(RwLock::new(vec![0u8; len]));
        }
        Ok(Self {
            regions: regions.to_vec(),
            mem,
        })
    }

    fn for_each_piece(
        &self,
        gpa: u64,
        len: usize,
        mut f: impl FnMut(&RwLock<Vec<u8>>, usize, usize, usize) -> Option<()>,
    ) -> Result<(), OutOfRange> {
        let err = OutOfRange {
            gpa,
            len: len as u64,
        };
        for piece in pieces(&self.regions, gpa, len as u64)? {
            let mem = self.mem.get(piece.index).ok_or(err)?;
            let offset = usize::try_from(piece.offset).map_err(|_| err)?;
            let n = usize::try_from(piece.len).map_err(|_| err)?;
            let buf_offset = usize::try_from(piece.buf_offset).map_err(|_| err)?;
            f(mem, offset, n, buf_offset).ok_or(err)?;
        }
        Ok(())
    }
}

impl GuestBacking for VecBacking {
    fn regions(&self) -> Vec<Region> {
        self.regions.clone()
    }

    fn read_plain(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        self.for_each_piece(gpa, buf.len(), |mem, offset, n, buf_offset| {
            let mem = mem.read().unwrap_or_else(PoisonError::into_inner);
            let src = mem.get(offset..offset.checked_add(n)?)?;
            buf.get_mut(buf_offset..buf_offset.checked_add(n)?)?
                .copy_from_slice(src);
            Some(())
        })
    }

    fn write_plain(&self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        self.for_each_piece(gpa, data.len(), |mem, offset, n, buf_offset| {
            let mut mem = mem.write().unwrap_or_else(PoisonError::into_inner);
            let src = data.get(buf_offset..buf_offset.checked_add(n)?)?;
            mem.get_mut(offset..offset.checked_add(n)?)?
                .copy_from_slice(src);
            Some(())
        })
    }
}

/// Per-guest memory-encryption state: the XTS keys derived from the VEK and
/// the private-page map over the guest's regions. `Send + Sync`: share it
/// (e.g. in an `Arc`) between the firmware and the VMM's threads.
pub struct MemoryState {
    cipher: MemoryCipher,
    pages: PageMap,
    /// SEV-SNP: private pages are guest-assigned in the RMP, and host writes
    /// into them fault instead of landing.
    rmp: bool,
}

impl fmt::Debug for MemoryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryState")
            .field("key", &"<redacted>")
            .field("regions", &self.pages.regions())
            .field("private_pages", &self.pages.count_private())
            .field("rmp", &self.rmp)
            .finish()
    }
}

impl MemoryState {
    /// State for a guest with key `vek` over `regions` (normally the
    /// backing's [`GuestBacking::regions`]), every page shared.
    pub fn new(vek: &Vek, regions: &[Region]) -> Result<Self, MemoryError> {
        Ok(Self {
            cipher: MemoryCipher::new(vek),
            pages: PageMap::new(regions)?,
            rmp: false,
        })
    }

    /// State for an SEV-SNP guest (docs/protocol/snp.md#rmp-model): as
    /// [`Self::new`], but its private pages are the pages the RMP assigns
    /// to the guest, so [`host_write`] into them fails with
    /// [`MemoryError::RmpFault`] (reads still give ciphertext).
    pub fn new_snp(vek: &Vek, regions: &[Region]) -> Result<Self, MemoryError> {
        Ok(Self {
            rmp: true,
            ..Self::new(vek, regions)?
        })
    }

    /// Whether this is an SEV-SNP guest's state (host writes into private
    /// pages fault).
    pub fn is_snp(&self) -> bool {
        self.rmp
    }

    /// Re-encodes the whole pages of `[gpa, gpa + len)` in `backing` for a
    /// page-state change (docs/protocol/choices.md#u39): to shared, the
    /// backing receives the page's ciphertext (what the host and a C-bit-clear
    /// guest access find there); to private, the decryption of its current
    /// bytes. Then marks the pages. `gpa` and `len` must be page aligned and
    /// inside both the regions and the backing; nothing changes otherwise.
    pub fn convert_pages<B: GuestBacking + ?Sized>(
        &self,
        backing: &B,
        gpa: u64,
        len: u64,
        private: bool,
    ) -> Result<(), MemoryError> {
        if !gpa.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(MemoryError::Misaligned { gpa, len });
        }
        pieces(self.regions(), gpa, len)?;
        pieces(&backing.regions(), gpa, len)?;
        let mut page = zeroize::Zeroizing::new([0u8; PAGE_BYTES]);
        for at in (gpa..gpa + len).step_by(PAGE_BYTES) {
            if self.is_private(at) == private {
                continue;
            }
            backing.read_plain(at, &mut page[..])?;
            // Private → shared: the stored ciphertext appears; shared →
            // private: the guest now reads the decryption of what is there.
            self.transform_blocks(at, 0, &mut page[..], !private);
            backing.write_plain(at, &page[..])?;
            self.pages.set_range(at, PAGE_SIZE, private)?;
        }
        Ok(())
    }

    /// The regions the page map covers.
    pub fn regions(&self) -> &[Region] {
        self.pages.regions()
    }

    /// Marks every page overlapping `[gpa, gpa + len)` private (the range must
    /// be inside the regions; nothing changes otherwise).
    pub fn mark_private(&self, gpa: u64, len: u64) -> Result<(), MemoryError> {
        self.pages.set_range(gpa, len, true)
    }

    /// Marks every page overlapping `[gpa, gpa + len)` shared.
    pub fn mark_shared(&self, gpa: u64, len: u64) -> Result<(), MemoryError> {
        self.pages.set_range(gpa, len, false)
    }

    /// Marks all guest memory private (the guest runs: under SEV every access
    /// of early boot code is private, docs/protocol/memory.md#private-and-shared).
    pub fn mark_all_private(&self) {
        self.pages.set_all(true);
    }

    /// Whether the page containing `gpa` is private. Addresses outside the
    /// regions are reported shared.
    pub fn is_private(&self, gpa: u64) -> bool {
        self.pages.is_private(gpa)
    }

    /// Number of private pages.
    pub fn private_pages(&self) -> u64 {
        self.pages.count_private()
    }

    /// Encrypts `data` in place as the memory controller would store it at
    /// `gpa` (pure computation, no memory access). `gpa` and the length must be
    /// multiples of 16.
    pub fn encrypt_at(&self, gpa: u64, data: &mut [u8]) -> Result<(), MemoryError> {
        self.transform_at(gpa, data, true)
    }

    /// Inverse of [`Self::encrypt_at`].
    pub fn decrypt_at(&self, gpa: u64, data: &mut [u8]) -> Result<(), MemoryError> {
        self.transform_at(gpa, data, false)
    }

    fn transform_at(&self, gpa: u64, data: &mut [u8], encrypt: bool) -> Result<(), MemoryError> {
        check_aligned(gpa, data.len())?;
        for_each_page_chunk_mut(gpa, data, |page, offset, chunk| {
            self.transform_blocks(page, offset / BLOCK_LEN, chunk, encrypt);
            Ok(())
        })
    }

    /// Encrypts or decrypts the whole blocks of `blocks` as blocks `first..`
    /// of `page`.
    fn transform_blocks(&self, page: u64, first: usize, blocks: &mut [u8], encrypt: bool) {
        let pfn = page >> PAGE_SHIFT;
        if encrypt {
            self.cipher.encrypt_blocks(pfn, first, blocks);
        } else {
            self.cipher.decrypt_blocks(pfn, first, blocks);
        }
    }
}

fn check_aligned(gpa: u64, len: usize) -> Result<(), MemoryError> {
    let len64 = len as u64;
    let block = BLOCK_LEN as u64;
    if !gpa.is_multiple_of(block) || !len64.is_multiple_of(block) {
        return Err(MemoryError::Misaligned { gpa, len: len64 });
    }
    gpa.checked_add(len64)
        .ok_or(OutOfRange { gpa, len: len64 })?;
    Ok(())
}

/// Calls `f(page_gpa, offset_in_page, chunk)` for the parts of `buf` (placed at
/// `gpa`) that fall into each 4 KiB page, in order.
fn for_each_page_chunk_mut(
    gpa: u64,
    buf: &mut [u8],
    mut f: impl FnMut(u64, usize, &mut [u8]) -> Result<(), MemoryError>,
) -> Result<(), MemoryError> {
    let len = buf.len() as u64;
    gpa.checked_add(len).ok_or(OutOfRange { gpa, len })?;
    let mut cur = gpa;
    let mut rest = buf;
    while !rest.is_empty() {
        let offset = (cur & PAGE_OFFSET_MASK) as usize;
        let n = (PAGE_BYTES - offset).min(rest.len());
        let (chunk, tail) = rest.split_at_mut(n);
        f(cur - offset as u64, offset, chunk)?;
        cur += n as u64;
        rest = tail;
    }
    Ok(())
}

/// Immutable twin of [`for_each_page_chunk_mut`].
fn for_each_page_chunk(
    gpa: u64,
    buf: &[u8],
    mut f: impl FnMut(u64, usize, &[u8]) -> Result<(), MemoryError>,
) -> Result<(), MemoryError> {
    let len = buf.len() as u64;
    gpa.checked_add(len).ok_or(OutOfRange { gpa, len })?;
    let mut cur = gpa;
    let mut rest = buf;
    while !rest.is_empty() {
        let offset = (cur & PAGE_OFFSET_MASK) as usize;
        let n = (PAGE_BYTES - offset).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        f(cur - offset as u64, offset, chunk)?;
        cur += n as u64;
        rest = tail;
    }
    Ok(())
}

/// The 16-byte-aligned span `[start, end)` of page offsets that covers the
/// `len` bytes at page offset `offset`.
fn block_span(offset: usize, len: usize) -> (usize, usize) {
    let start = offset / BLOCK_LEN * BLOCK_LEN;
    let end = (offset + len).next_multiple_of(BLOCK_LEN);
    (start, end)
}

/// The host view of guest memory: reads `buf.len()` bytes at `gpa` as the
/// hypervisor would see them. Shared pages come back as they are, private
/// pages encrypted under the guest's key with the address tweak. Any
/// alignment. On error (reported for the whole access) the contents of `buf`
/// are unspecified.
///
/// Works page by page: a private page is copied out of the backing into a
/// page-sized stack buffer and encrypted from there into `buf`, with one tweak
/// encryption per page and all its blocks through the AES pipeline; nothing is
/// allocated.
pub fn host_read<B: GuestBacking + ?Sized>(
    backing: &B,
    state: &MemoryState,
    gpa: u64,
    buf: &mut [u8],
) -> Result<(), MemoryError> {
    let whole = OutOfRange {
        gpa,
        len: buf.len() as u64,
    };
    let mut scratch = [0u8; PAGE_BYTES];
    for_each_page_chunk_mut(gpa, buf, |page, offset, chunk| {
        let at = page + offset as u64;
        if !state.is_private(page) {
            return Ok(backing.read_plain(at, chunk).map_err(|_| whole)?);
        }
        let (start, end) = block_span(offset, chunk.len());
        if start == offset && end == offset + chunk.len() {
            // Whole blocks: plaintext into the L1-resident scratch, ciphertext
            // straight into `buf`.
            let input = scratch.get_mut(..chunk.len()).ok_or(whole)?;
            backing.read_plain(at, input).map_err(|_| whole)?;
            state
                .cipher
                .encrypt_blocks_to(page >> PAGE_SHIFT, start / BLOCK_LEN, input, chunk);
            return Ok(());
        }
        // Partial blocks: encrypt the covering span, copy out the window.
        let span = scratch.get_mut(start..end).ok_or(whole)?;
        backing
            .read_plain(page + start as u64, span)
            .map_err(|_| whole)?;
        state.transform_blocks(page, start / BLOCK_LEN, span, true);
        let window = span
            .get(offset - start..offset - start + chunk.len())
            .ok_or(whole)?;
        chunk.copy_from_slice(window);
        Ok(())
    })
}

/// The host view of guest memory, writing: `data` is stored at `gpa` as the
/// hypervisor's write would land. Shared pages store it as it is; in private
/// pages it is ciphertext, so the backing receives its decryption (partial
/// 16-byte blocks are patched into the blocks' current ciphertext first). The
/// whole range is checked before anything is written. Any alignment. For an
/// SEV-SNP guest's state ([`MemoryState::new_snp`]) a write touching a
/// private page fails with [`MemoryError::RmpFault`] and writes nothing.
pub fn host_write<B: GuestBacking + ?Sized>(
    backing: &B,
    state: &MemoryState,
    gpa: u64,
    data: &[u8],
) -> Result<(), MemoryError> {
    let whole = OutOfRange {
        gpa,
        len: data.len() as u64,
    };
    // Validate up front so an error never leaves a partial write behind.
    pieces(&backing.regions(), gpa, whole.len)?;
    if state.rmp && whole.len > 0 {
        let first = gpa & !PAGE_OFFSET_MASK;
        let last = gpa + (whole.len - 1);
        let mut page = first;
        while page <= last {
            if state.is_private(page) {
                return Err(MemoryError::RmpFault { gpa: page });
            }
            page = match page.checked_add(PAGE_SIZE) {
                Some(next) => next,
                None => break,
            };
        }
    }
    let mut scratch = [0u8; PAGE_BYTES];
    for_each_page_chunk(gpa, data, |page, offset, chunk| {
        if !state.is_private(page) {
            return Ok(backing.write_plain(page + offset as u64, chunk)?);
        }
        let (start, end) = block_span(offset, chunk.len());
        let first = start / BLOCK_LEN;
        let span = scratch.get_mut(start..end).ok_or(whole)?;
        if start != offset || end != offset + chunk.len() {
            // The write lands in the current ciphertext of the span.
            backing.read_plain(page + start as u64, span)?;
            state.transform_blocks(page, first, span, true);
        }
        span.get_mut(offset - start..offset - start + chunk.len())
            .ok_or(whole)?
            .copy_from_slice(chunk);
        state.transform_blocks(page, first, span, false);
        backing.write_plain(page + start as u64, span)?;
        Ok(())
    })
}

/// The firmware's own access: plaintext at `gpa`, bounds checked.
pub fn firmware_read<B: GuestBacking + ?Sized>(
    backing: &B,
    gpa: u64,
    buf: &mut [u8],
) -> Result<(), MemoryError> {
    Ok(backing.read_plain(gpa, buf)?)
}

/// The firmware's own access: stores plaintext at `gpa`, bounds checked. Does
/// not change which pages are private (see [`MemoryState::mark_private`]).
pub fn firmware_write<B: GuestBacking + ?Sized>(
    backing: &B,
    gpa: u64,
    data: &[u8],
) -> Result<(), MemoryError> {
    Ok(backing.write_plain(gpa, data)?)
}

/// DBG_DECRYPT semantics: the firmware reads memory at `gpa` and decrypts it
/// with the guest's key. Private pages yield their plaintext; shared pages
/// (stored in the clear) yield the decryption of their clear bytes, i.e.
/// garbage, as on hardware. `gpa` and the length must be multiples of 16
/// (docs/protocol/memory.md#debug-commands).
pub fn decrypt_from_guest<B: GuestBacking + ?Sized>(
    backing: &B,
    state: &MemoryState,
    gpa: u64,
    buf: &mut [u8],
) -> Result<(), MemoryError> {
    check_aligned(gpa, buf.len())?;
    backing.read_plain(gpa, buf)?;
    for_each_page_chunk_mut(gpa, buf, |page, offset, chunk| {
        if !state.is_private(page) {
            state.transform_blocks(page, offset / BLOCK_LEN, chunk, false);
        }
        Ok(())
    })
}

/// DBG_ENCRYPT semantics: the firmware encrypts `data` with the guest's key
/// into memory at `gpa`, so the guest reads `data`; the pages written become
/// private. `gpa` and the length must be multiples of 16 (docs/protocol/memory.md#debug-commands).
pub fn encrypt_for_guest<B: GuestBacking + ?Sized>(
    backing: &B,
    state: &MemoryState,
    gpa: u64,
    data: &[u8],
) -> Result<(), MemoryError> {
    check_aligned(gpa, data.len())?;
    // Both checks first, so a failure changes nothing.
    pieces(state.regions(), gpa, data.len() as u64)?;
    pieces(&backing.regions(), gpa, data.len() as u64)?;
    backing.write_plain(gpa, data)?;
    state.mark_private(gpa, data.len() as u64)
}

#[cfg(test)]
mod tests;
