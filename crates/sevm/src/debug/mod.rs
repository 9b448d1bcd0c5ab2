//! Debugging an SEV guest: the hypervisor's view and the firmware's
//! decrypted view of guest memory.
//!
//! Two paths, kept apart on purpose:
//!
//! * [`GuestDebug::host_read`]: what the hypervisor sees through the SEV host
//!   view (ciphertext for private pages). HMP `x`/`xp` and QMP
//!   `pmemsave`/`memsave` use it, as QEMU's do.
//! * [`GuestDebug::decrypt`] / [`GuestDebug::encrypt`]: DBG_DECRYPT /
//!   DBG_ENCRYPT through the VM's SEV backend (hardware: KVM, emulated:
//!   `sev-psp`), which enforce the guest policy: with NODBG the firmware
//!   answers POLICY_FAILURE and the error says so. Any address and length
//!   inside guest memory: the backend bounces unaligned ranges through
//!   16-byte aligned buffers (read-modify-write for writes) as KVM does,
//!   and this module splits ranges at 4 KiB page boundaries (KVM processes
//!   at most one page per firmware call). QMP `sev-dbg-decrypt`/
//!   `sev-dbg-encrypt` and the GDB stub use it.
//!
//! Guest-virtual addresses (HMP `x`, `memsave`, GDB) are translated with the
//! vCPU's page tables ([`translate`]); the walk reads the page tables
//! through the decrypted path for an SEV guest (they are private memory),
//! so with NODBG and paging enabled a virtual access fails with the
//! firmware's POLICY_FAILURE. With paging off (the demo guest's flat 32-bit
//! mode) virtual = physical and no table is read.

pub mod commands;
pub mod hmp;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::machine::Machine;
use crate::memory::{AccessError, Gpa};
use crate::sev::{DebugCommands, SevError};
use crate::vcpu::VcpuState;

/// 4 KiB: the unit of one DBG_* call (as KVM).
pub const PAGE_SIZE: u64 = 4096;

/// Largest range a QMP reply carries inline (base64 in JSON); bigger
/// ranges go to a file.
pub const MAX_INLINE: u64 = 16 << 20;

/// Chunk size of file dumps.
const FILE_CHUNK: u64 = 1 << 20;

/// A failed debug access.
#[derive(Debug, thiserror::Error)]
pub enum DebugError {
    /// The range is not inside guest memory (RAM or the firmware window).
    #[error("guest physical range {gpa:#x}+{len:#x} is not inside guest memory")]
    OutOfRange {
        /// First address.
        gpa: u64,
        /// Length.
        len: u64,
    },
    /// A request larger than this interface carries.
    #[error("{what} of {len} bytes is too large (at most {max} bytes)")]
    TooLarge {
        /// What was asked for.
        what: &'static str,
        /// Requested length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A negative or otherwise unusable argument.
    #[error("invalid parameter '{name}': {problem}")]
    Invalid {
        /// The parameter.
        name: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The firmware (or KVM) refused DBG_DECRYPT/DBG_ENCRYPT, e.g.
    /// POLICY_FAILURE for a NODBG guest.
    #[error(transparent)]
    Sev(#[from] SevError),
    /// The host view refused the access.
    #[error("cannot access guest memory at {gpa:#x}")]
    Access {
        /// First address.
        gpa: u64,
        /// Why.
        #[source]
        source: AccessError,
    },
    /// The virtual address has no mapping in the vCPU's page tables.
    #[error("virtual address {vaddr:#x} is not mapped ({reason})")]
    NotMapped {
        /// The virtual address.
        vaddr: u64,
        /// Where the walk stopped.
        reason: &'static str,
    },
    /// Reading the page tables failed.
    #[error("cannot walk the page tables for virtual address {vaddr:#x}")]
    PageWalk {
        /// The virtual address.
        vaddr: u64,
        /// Why.
        #[source]
        source: Box<DebugError>,
    },
    /// The vCPU state could not be read.
    #[error("cannot read the state of vCPU {index}: {reason}")]
    Vcpu {
        /// The vCPU index.
        index: usize,
        /// Why.
        reason: String,
    },
    /// Writing the output file failed.
    #[error("could not write '{}'", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Debug access to one VM's memory.
#[derive(Clone)]
pub struct GuestDebug {
    machine: Arc<Machine>,
    sev: Option<Arc<dyn DebugCommands>>,
    /// Mask that clears the C-bit (and bits above 51) from page-table
    /// addresses.
    cbit: Option<u32>,
}

impl std::fmt::Debug for GuestDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestDebug")
            .field("sev", &self.sev.is_some())
            .field("cbit", &self.cbit)
            .finish_non_exhaustive()
    }
}

/// Which view of memory a dump shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// What the hypervisor sees (ciphertext for private SEV memory).
    Host,
    /// DBG_DECRYPT (policy permitting).
    Decrypted,
}

/// Splits `gpa..gpa+len` at 4 KiB boundaries: `(gpa, offset in the range,
/// length)` per piece.
pub fn page_pieces(gpa: u64, len: u64) -> impl Iterator<Item = (u64, u64, u64)> {
    let mut off = 0u64;
    std::iter::from_fn(move || {
        if off >= len {
            return None;
        }
        let at = gpa.wrapping_add(off);
        let n = (PAGE_SIZE - at % PAGE_SIZE).min(len - off);
        let piece = (at, off, n);
        off += n;
        Some(piece)
    })
}

fn usize_range(off: u64, n: u64) -> std::ops::Range<usize> {
    // `off + n` never exceeds the length of a buffer that exists in memory.
    off as usize..(off + n) as usize
}

impl GuestDebug {
    /// Debug access to `machine`, with the SEV backend (and the C-bit
    /// position) of an SEV guest.
    pub fn new(
        machine: Arc<Machine>,
        sev: Option<Arc<dyn DebugCommands>>,
        cbitpos: Option<u32>,
    ) -> Self {
        GuestDebug {
            machine,
            sev,
            cbit: cbitpos,
        }
    }

    /// The machine.
    pub fn machine(&self) -> &Arc<Machine> {
        &self.machine
    }

    /// Whether the guest is an SEV guest.
    pub fn is_sev(&self) -> bool {
        self.sev.is_some()
    }

    /// Checks that `gpa..gpa+len` lies inside guest memory.
    pub fn check_range(&self, gpa: u64, len: u64) -> Result<(), DebugError> {
        let inside = gpa.checked_add(len).is_some()
            && (len == 0 || self.machine.guest_memory().contains(Gpa(gpa), len));
        if inside {
            Ok(())
        } else {
            Err(DebugError::OutOfRange { gpa, len })
        }
    }

    /// Reads guest-physical memory as the hypervisor sees it.
    pub fn host_read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), DebugError> {
        self.check_range(gpa, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(());
        }
        self.machine
            .memory_view()
            .read(Gpa(gpa), buf)
            .map_err(|source| DebugError::Access { gpa, source })
    }

    /// DBG_DECRYPT of `buf.len()` bytes at `gpa` (a plain read for a guest
    /// without SEV, whose memory the hypervisor sees as it is).
    pub fn decrypt(&self, gpa: u64, buf: &mut [u8]) -> Result<(), DebugError> {
        self.check_range(gpa, buf.len() as u64)?;
        let Some(sev) = &self.sev else {
            return self.host_read(gpa, buf);
        };
        for (at, off, n) in page_pieces(gpa, buf.len() as u64) {
            let dst = buf
                .get_mut(usize_range(off, n))
                .ok_or(DebugError::OutOfRange { gpa: at, len: n })?;
            sev.dbg_decrypt(at, dst)?;
        }
        Ok(())
    }

    /// DBG_ENCRYPT of `data` to `gpa` (a plain write without SEV).
    pub fn encrypt(&self, gpa: u64, data: &[u8]) -> Result<(), DebugError> {
        self.check_range(gpa, data.len() as u64)?;
        let Some(sev) = &self.sev else {
            if data.is_empty() {
                return Ok(());
            }
            return self
                .machine
                .memory_view()
                .write(Gpa(gpa), data)
                .map_err(|source| DebugError::Access { gpa, source });
        };
        for (at, off, n) in page_pieces(gpa, data.len() as u64) {
            let src = data
                .get(usize_range(off, n))
                .ok_or(DebugError::OutOfRange { gpa: at, len: n })?;
            sev.dbg_encrypt(src, at)?;
        }
        Ok(())
    }

    /// Reads through `view`.
    pub fn read(&self, view: View, gpa: u64, buf: &mut [u8]) -> Result<(), DebugError> {
        match view {
            View::Host => self.host_read(gpa, buf),
            View::Decrypted => self.decrypt(gpa, buf),
        }
    }

    /// Page-table walker reading entries through the decrypted path.
    fn pte_reader(&self) -> impl Fn(u64, usize) -> Result<u64, DebugError> + '_ {
        move |gpa, size| {
            let mut b = [0u8; 8];
            let buf = b.get_mut(..size).ok_or(DebugError::Invalid {
                name: "entry size",
                problem: format!("{size}"),
            })?;
            self.decrypt(gpa, buf)?;
            Ok(u64::from_le_bytes(b))
        }
    }

    /// Translates a guest-virtual address with `state`'s paging mode.
    pub fn translate(&self, state: &VcpuState, vaddr: u64) -> Result<u64, DebugError> {
        translate(&Paging::of(state, self.cbit), vaddr, self.pte_reader())
    }

    /// Reads guest memory in `space` through `view`, page by page (each
    /// virtual page translated on its own). `state` is the vCPU state for
    /// virtual addresses.
    pub fn read_in(
        &self,
        view: View,
        state: Option<&VcpuState>,
        addr: u64,
        buf: &mut [u8],
    ) -> Result<(), DebugError> {
        let Some(state) = state else {
            return self.read(view, addr, buf);
        };
        let paging = Paging::of(state, self.cbit);
        for (at, off, n) in page_pieces(addr, buf.len() as u64) {
            let gpa = translate(&paging, at, self.pte_reader())?;
            let dst = buf
                .get_mut(usize_range(off, n))
                .ok_or(DebugError::OutOfRange { gpa: at, len: n })?;
            self.read(view, gpa, dst)?;
        }
        Ok(())
    }

    /// Writes guest memory through DBG_ENCRYPT, virtual addresses
    /// translated with `state` when given.
    pub fn write_in(
        &self,
        state: Option<&VcpuState>,
        addr: u64,
        data: &[u8],
    ) -> Result<(), DebugError> {
        let Some(state) = state else {
            return self.encrypt(addr, data);
        };
        let paging = Paging::of(state, self.cbit);
        for (at, off, n) in page_pieces(addr, data.len() as u64) {
            let gpa = translate(&paging, at, self.pte_reader())?;
            let src = data
                .get(usize_range(off, n))
                .ok_or(DebugError::OutOfRange { gpa: at, len: n })?;
            self.encrypt(gpa, src)?;
        }
        Ok(())
    }

    /// Writes `size` bytes at `addr` to `path` (QMP `pmemsave`/`memsave`
    /// with [`View::Host`], `sev-dbg-decrypt` with a file and
    /// [`View::Decrypted`]). The whole range is checked before the file is
    /// created (mode 0600 when new); the file is written in chunks.
    pub fn save(
        &self,
        view: View,
        state: Option<&VcpuState>,
        addr: u64,
        size: u64,
        path: &Path,
    ) -> Result<(), DebugError> {
        if state.is_none() {
            self.check_range(addr, size)?;
        } else if addr.checked_add(size).is_none() {
            return Err(DebugError::NotMapped {
                vaddr: addr,
                reason: "the range wraps around the address space",
            });
        }
        let file_err = |source| DebugError::File {
            path: path.to_path_buf(),
            source,
        };
        // 0600: a decrypted dump holds the guest's plaintext.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(file_err)?;
        let mut buf = vec![0u8; size.min(FILE_CHUNK) as usize];
        let mut done = 0u64;
        while done < size {
            let n = (size - done).min(FILE_CHUNK);
            let chunk = buf
                .get_mut(..n as usize)
                .ok_or(DebugError::OutOfRange { gpa: addr, len: n })?;
            self.read_in(view, state, addr + done, chunk)?;
            file.write_all(chunk).map_err(file_err)?;
            done += n;
        }
        file.sync_all().map_err(file_err)
    }
}

/// The paging mode and root of a vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// CR0.PG.
    pub enabled: bool,
    /// CR3.
    pub cr3: u64,
    /// CR4.PAE.
    pub pae: bool,
    /// CR4.PSE (4 MiB pages in 32-bit paging).
    pub pse: bool,
    /// EFER.LMA (4-level paging).
    pub long_mode: bool,
    /// CR4.LA57 (5-level paging).
    pub la57: bool,
    /// Address mask for table entries (bits 12..=51 without the C-bit).
    pub addr_mask: u64,
}

const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;
const PTE_P: u64 = 1;
const PTE_PS: u64 = 1 << 7;

impl Paging {
    /// The paging mode `state` is in; `cbitpos` is cleared from entries.
    pub fn of(state: &VcpuState, cbitpos: Option<u32>) -> Self {
        let s = &state.sregs;
        let mut addr_mask = 0x000F_FFFF_FFFF_F000u64;
        if let Some(c) = cbitpos.filter(|c| *c < 64) {
            addr_mask &= !(1u64 << c);
        }
        Paging {
            enabled: s.cr0 & CR0_PG != 0,
            cr3: s.cr3,
            pae: s.cr4 & CR4_PAE != 0,
            pse: s.cr4 & CR4_PSE != 0,
            long_mode: s.efer & EFER_LMA != 0,
            la57: s.cr4 & CR4_LA57 != 0,
            addr_mask,
        }
    }
}

/// Walks the page tables of `paging` for `vaddr`, reading `size`-byte
/// entries with `read(gpa, size)`. Covers 32-bit (with 4 MiB pages), PAE,
/// 4-level and 5-level paging with large pages.
pub fn translate(
    paging: &Paging,
    vaddr: u64,
    read: impl Fn(u64, usize) -> Result<u64, DebugError>,
) -> Result<u64, DebugError> {
    if !paging.enabled {
        return Ok(vaddr);
    }
    let walk = |gpa: u64, size: usize| {
        read(gpa, size).map_err(|e| DebugError::PageWalk {
            vaddr,
            source: Box::new(e),
        })
    };
    let not_mapped = |reason| DebugError::NotMapped { vaddr, reason };
    if !paging.pae {
        // 32-bit paging: 10/10/12.
        let va = vaddr & 0xFFFF_FFFF;
        let pde = walk((paging.cr3 & 0xFFFF_F000) + ((va >> 22) & 0x3FF) * 4, 4)?;
        if pde & PTE_P == 0 {
            return Err(not_mapped("page directory entry not present"));
        }
        if paging.pse && pde & PTE_PS != 0 {
            return Ok((pde & 0xFFC0_0000) | (va & 0x3F_FFFF));
        }
        let pte = walk((pde & 0xFFFF_F000) + ((va >> 12) & 0x3FF) * 4, 4)?;
        if pte & PTE_P == 0 {
            return Err(not_mapped("page table entry not present"));
        }
        return Ok((pte & 0xFFFF_F000) | (va & 0xFFF));
    }
    let mask = paging.addr_mask;
    let (mut table, levels) = if paging.long_mode {
        (paging.cr3 & mask, if paging.la57 { 5 } else { 4 })
    } else {
        // PAE: the 4 PDPTEs at CR3 (32-byte aligned), then 2 levels.
        let va = vaddr & 0xFFFF_FFFF;
        let pdpte = walk((paging.cr3 & 0xFFFF_FFE0) + ((va >> 30) & 3) * 8, 8)?;
        if pdpte & PTE_P == 0 {
            return Err(not_mapped("PDPT entry not present"));
        }
        (pdpte & mask, 2)
    };
    let vaddr_bits = if paging.long_mode {
        vaddr
    } else {
        vaddr & 0xFFFF_FFFF
    };
    for level in (1..=levels).rev() {
        let shift = 12 + 9 * (level - 1);
        let index = (vaddr_bits >> shift) & 0x1FF;
        let entry = walk(table + index * 8, 8)?;
        if entry & PTE_P == 0 {
            return Err(not_mapped("page table entry not present"));
        }
        if level == 1 {
            return Ok((entry & mask) | (vaddr_bits & 0xFFF));
        }
        if entry & PTE_PS != 0 && (level == 2 || level == 3) {
            let page_mask = (1u64 << shift) - 1;
            return Ok((entry & mask & !page_mask) | (vaddr_bits & page_mask));
        }
        table = entry & mask;
    }
    Err(not_mapped("page walk ended without a page"))
}

#[cfg(test)]
mod tests;
