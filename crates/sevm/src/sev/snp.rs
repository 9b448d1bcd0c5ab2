//! The SEV-SNP launch on the caller's side, as a typestate
//! (docs/snp.md#the-launch-in-sevm):
//!
//! ```text
//! SnpLaunch::start ─▶ SnpLaunch<Updating> ─finish─▶ SnpLaunch<Finished>
//!                     update, update_cpuid,
//!                     update_vmsas
//! ```
//!
//! [`SnpLaunch::start`] is KVM_SEV_SNP_LAUNCH_START (the firmware's
//! SNP_GCTX_CREATE, SNP_LAUNCH_START and SNP_ACTIVATE); the pages go in
//! with their page types as [`launch_firmware`] plans them from the
//! firmware's SEV metadata (the same plan `sev-owner measure --mode snp`
//! measures, `sev_proto::snp::measure::metadata_updates`), then the VMSAs;
//! SNP_LAUNCH_FINISH comes with the first `cont`. A failed finish hands the
//! launch back unchanged ([`Failed`]).

use std::fmt;
use std::sync::Arc;

use sev_firmware::{LaunchUpdateError, SnpFinish, SnpGuestContext};
use sev_proto::snp::measure::{MetadataUpdate, FIRMWARE_END};
use sev_proto::snp::{GuestPolicy, IdAuth, IdBlock, PageType};

use super::{SevError, VmsaPage};
pub use crate::machine::CpuidEntry;
use crate::memory::{Gpa, GuestRam};

/// SNP LAUNCH: pages and VMSAs may be added to the launch digest.
#[derive(Debug)]
pub struct Updating;

/// RUNNING: SNP_LAUNCH_FINISH done.
#[derive(Debug)]
pub struct Finished {
    host_data: [u8; 32],
}

/// What SNP_LAUNCH_FINISH is given (`id-block`, `id-auth`,
/// `author-key-enabled`, `host-data`), decoded.
#[derive(Debug, Clone, Default)]
pub struct FinishInputs {
    /// The owner's ID block and its authentication structure.
    pub id: Option<(IdBlock, IdAuth)>,
    /// AUTH_KEY_EN.
    pub author_key_en: bool,
    /// HOST_DATA.
    pub host_data: [u8; 32],
}

/// An SNP guest being launched, in state `S`.
pub struct SnpLaunch<S> {
    backend: Arc<dyn SnpGuestContext>,
    handle: u32,
    policy: GuestPolicy,
    state: S,
}

impl<S: fmt::Debug> fmt::Debug for SnpLaunch<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnpLaunch")
            .field("handle", &self.handle)
            .field("policy", &self.policy)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// A transition that failed: the launch as it was, and why.
pub struct Failed<S> {
    /// The launch, unchanged.
    pub launch: SnpLaunch<S>,
    /// The firmware's (or host's) error.
    pub error: SevError,
}

impl<S: fmt::Debug> fmt::Debug for Failed<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failed")
            .field("launch", &self.launch)
            .field("error", &self.error)
            .finish()
    }
}

impl<S> SnpLaunch<S> {
    /// The firmware guest handle (0 on hardware, where KVM keeps it).
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// The guest policy.
    pub fn policy(&self) -> GuestPolicy {
        self.policy
    }

    /// The guest's SNP commands.
    pub fn backend(&self) -> &Arc<dyn SnpGuestContext> {
        &self.backend
    }
}

impl SnpLaunch<Updating> {
    /// SNP_LAUNCH_START with `policy` and the guest-visible workarounds.
    pub fn start(
        backend: Arc<dyn SnpGuestContext>,
        policy: GuestPolicy,
        gosvw: [u8; 16],
    ) -> Result<Self, SevError> {
        let handle = backend.snp_launch_start(policy, gosvw)?;
        log::info!("SEV-SNP: SNP_LAUNCH_START: handle {handle}, policy {policy}");
        Ok(SnpLaunch {
            backend,
            handle,
            policy,
            state: Updating,
        })
    }

    /// SNP_LAUNCH_UPDATE of `len` bytes at `gpa` as `page_type`.
    pub fn update(&mut self, gpa: Gpa, len: u64, page_type: PageType) -> Result<(), SevError> {
        log::debug!("SEV-SNP: SNP_LAUNCH_UPDATE {gpa}+{len:#x} {page_type:?}");
        self.backend
            .snp_launch_update(gpa.raw(), len, page_type)
            .map_err(|e| match e {
                LaunchUpdateError::Sev(e) | LaunchUpdateError::CpuidRefused { error: e, .. } => e,
            })
    }

    /// The CPUID page `page` at `gpa`: written into guest memory and
    /// updated as CPUID. When the firmware refuses it and hands back the
    /// table it accepts, the differences are logged and the corrected page
    /// is tried once more, as QEMU does.
    pub fn update_cpuid(
        &mut self,
        ram: &GuestRam,
        gpa: Gpa,
        page: &[u8; CPUID_PAGE_LEN],
    ) -> Result<(), SevError> {
        let write = |bytes: &[u8]| {
            ram.write_plain(gpa, bytes)
                .map_err(|e| SevError::OutOfRange {
                    command: "SNP_LAUNCH_UPDATE",
                    gpa: e.gpa,
                    len: e.len,
                })
        };
        write(page)?;
        let len = CPUID_PAGE_LEN as u64;
        match self
            .backend
            .snp_launch_update(gpa.raw(), len, PageType::Cpuid)
        {
            Ok(()) => Ok(()),
            Err(LaunchUpdateError::Sev(e)) => Err(e),
            Err(LaunchUpdateError::CpuidRefused { error, corrected }) => {
                log::warn!("SEV-SNP: the firmware refused the CPUID page ({error})");
                for line in cpuid_differences(page, &corrected) {
                    log::warn!("SEV-SNP: CPUID {line}");
                }
                write(&corrected[..])?;
                self.update(gpa, len, PageType::Cpuid)
            }
        }
    }

    /// The VMSA of every vCPU, in vCPU order.
    pub fn update_vmsas(&mut self, vmsas: &[VmsaPage]) -> Result<(), SevError> {
        log::debug!("SEV-SNP: SNP_LAUNCH_UPDATE of {} VMSAs", vmsas.len());
        self.backend.snp_launch_update_vmsas(vmsas)
    }

    /// SNP_LAUNCH_FINISH: LAUNCH → RUNNING.
    pub fn finish(self, inputs: &FinishInputs) -> Result<SnpLaunch<Finished>, Failed<Updating>> {
        let finish = SnpFinish {
            id: inputs.id.as_ref().map(|(b, a)| (b, a)),
            author_key_en: inputs.author_key_en,
            host_data: inputs.host_data,
        };
        match self.backend.snp_launch_finish(&finish) {
            Ok(()) => {
                log::info!("SEV-SNP: SNP_LAUNCH_FINISH: guest {} running", self.handle);
                Ok(SnpLaunch {
                    backend: self.backend,
                    handle: self.handle,
                    policy: self.policy,
                    state: Finished {
                        host_data: inputs.host_data,
                    },
                })
            }
            Err(error) => Err(Failed {
                launch: self,
                error,
            }),
        }
    }
}

impl SnpLaunch<Finished> {
    /// The HOST_DATA the guest was finished with.
    pub fn host_data(&self) -> [u8; 32] {
        self.state.host_data
    }
}

/// What [`launch_firmware`] measures besides the firmware bytes already in
/// guest memory.
#[derive(Debug, Clone)]
pub struct FirmwarePlan {
    /// The firmware's size (mapped to end at 4 GiB).
    pub firmware_size: u64,
    /// The metadata ranges in launch order with their page types.
    pub updates: Vec<MetadataUpdate>,
    /// The kernel-hashes page (`-kernel` with `kernel-hashes=on`).
    pub hashes_page: Option<Box<[u8; CPUID_PAGE_LEN]>>,
    /// The CPUID page built from the vCPUs' CPUID.
    pub cpuid_page: Box<[u8; CPUID_PAGE_LEN]>,
}

/// Launches the firmware as QEMU does for OVMF
/// (docs/protocol/snp.md#ovmf-launch-order): the whole image as NORMAL
/// pages, then each metadata range as its page type, the kernel-hashes
/// page and the CPUID page written first.
pub fn launch_firmware(
    launch: &mut SnpLaunch<Updating>,
    ram: &GuestRam,
    plan: &FirmwarePlan,
) -> Result<(), SevError> {
    let base = FIRMWARE_END - plan.firmware_size;
    launch.update(Gpa(base), plan.firmware_size, PageType::Normal)?;
    for u in &plan.updates {
        let gpa = Gpa(u64::from(u.section.gpa));
        let len = u64::from(u.section.size);
        match (u.page_type, &plan.hashes_page) {
            (PageType::Cpuid, _) => {
                for page in u.section.pages() {
                    launch.update_cpuid(ram, Gpa(page), &plan.cpuid_page)?;
                }
            }
            (PageType::Normal, Some(hashes)) => {
                for page in u.section.pages() {
                    ram.write_plain(Gpa(page), &hashes[..])
                        .map_err(|e| SevError::OutOfRange {
                            command: "SNP_LAUNCH_UPDATE",
                            gpa: e.gpa,
                            len: e.len,
                        })?;
                }
                launch.update(gpa, len, PageType::Normal)?;
            }
            (page_type, _) => launch.update(gpa, len, page_type)?,
        }
    }
    Ok(())
}

/// The size of the CPUID page.
pub const CPUID_PAGE_LEN: usize = 4096;
/// Most entries of the CPUID page.
const MAX_CPUID_ENTRIES: usize = 64;
const CPUID_HEADER_LEN: usize = 16;
const CPUID_ENTRY_LEN: usize = 48;

/// Why the CPUID page cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("the vCPU has {count} non-zero CPUID entries, the SNP CPUID page holds at most 64")]
pub struct TooManyCpuidEntries {
    /// How many there are.
    pub count: usize,
}

/// Whether the CPUID page carries `e`: every entry but those whose four
/// registers are zero (a guest reads a leaf in range that the page lacks
/// as zeros, [U59](docs/protocol/choices.md#u59)); leaf 0xD subleaves 0 and
/// 1 are always carried, since they get XCR0_IN and EBX.
fn carried(e: &CpuidEntry) -> bool {
    e.regs != [0; 4] || (e.function == 0xD && matches!(e.index.unwrap_or(0), 0 | 1))
}

/// The SNP CPUID page as QEMU fills it from the first vCPU's CPUID
/// (docs/snp.md#the-cpuid-page): COUNT, then one entry per function (EAX
/// in, ECX in when the index is significant, the four registers); leaf 0xD
/// subleaves 0 and 1 get XCR0_IN 1 and EBX 0x240, the XSAVE size of x87
/// and SSE state, since the guest computes the rest from its XCR0.
/// All-zero entries are left out ([`carried`]).
pub fn cpuid_page(
    entries: &[CpuidEntry],
) -> Result<Box<[u8; CPUID_PAGE_LEN]>, TooManyCpuidEntries> {
    let entries: Vec<&CpuidEntry> = entries.iter().filter(|e| carried(e)).collect();
    if entries.len() > MAX_CPUID_ENTRIES {
        return Err(TooManyCpuidEntries {
            count: entries.len(),
        });
    }
    let mut page = Box::new([0u8; CPUID_PAGE_LEN]);
    page[0..4].copy_from_slice(&(entries.len() as u32).to_le_bytes());
    for (i, e) in entries.iter().enumerate() {
        let at = CPUID_HEADER_LEN + i * CPUID_ENTRY_LEN;
        let index = e.index.unwrap_or(0);
        let mut regs = e.regs;
        let mut xcr0_in = 0u64;
        if e.function == 0xD && (index == 0 || index == 1) {
            regs[1] = 0x240;
            xcr0_in = 1;
        }
        let entry = &mut page[at..at + CPUID_ENTRY_LEN];
        entry[0..4].copy_from_slice(&e.function.to_le_bytes());
        entry[4..8].copy_from_slice(&index.to_le_bytes());
        entry[8..16].copy_from_slice(&xcr0_in.to_le_bytes());
        for (r, v) in regs.iter().enumerate() {
            entry[0x18 + 4 * r..0x1c + 4 * r].copy_from_slice(&v.to_le_bytes());
        }
    }
    Ok(page)
}

/// The entries in which `corrected` differs from `sent`, for the log.
fn cpuid_differences(sent: &[u8; CPUID_PAGE_LEN], corrected: &[u8; CPUID_PAGE_LEN]) -> Vec<String> {
    let word = |p: &[u8; CPUID_PAGE_LEN], at: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&p[at..at + 4]);
        u32::from_le_bytes(w)
    };
    let count = (word(sent, 0) as usize).min(MAX_CPUID_ENTRIES);
    let mut out = Vec::new();
    for i in 0..count {
        let at = CPUID_HEADER_LEN + i * CPUID_ENTRY_LEN;
        let range = at..at + CPUID_ENTRY_LEN;
        if sent[range.clone()] == corrected[range] {
            continue;
        }
        let regs = |p: &[u8; CPUID_PAGE_LEN]| {
            format!(
                "eax {:#x} ebx {:#x} ecx {:#x} edx {:#x}",
                word(p, at + 0x18),
                word(p, at + 0x1c),
                word(p, at + 0x20),
                word(p, at + 0x24)
            )
        };
        out.push(format!(
            "function {:#x} index {:#x}: provided {}, expected {}",
            word(sent, at),
            word(sent, at + 4),
            regs(sent),
            regs(corrected)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuid_page_is_filled_as_qemu_fills_it() {
        let entries = [
            CpuidEntry {
                function: 0,
                index: None,
                regs: [0xd, 1, 2, 3],
            },
            CpuidEntry {
                function: 0xD,
                index: Some(1),
                regs: [4, 5, 6, 7],
            },
        ];
        let page = cpuid_page(&entries).unwrap();
        assert_eq!(page[0], 2);
        assert_eq!(&page[16..20], &0u32.to_le_bytes());
        assert_eq!(&page[16 + 0x18..16 + 0x1c], &0xdu32.to_le_bytes());
        let e = 16 + 48;
        assert_eq!(&page[e..e + 4], &0xdu32.to_le_bytes());
        assert_eq!(&page[e + 4..e + 8], &1u32.to_le_bytes());
        assert_eq!(&page[e + 8..e + 16], &1u64.to_le_bytes());
        assert_eq!(&page[e + 0x1c..e + 0x20], &0x240u32.to_le_bytes());
        let many = vec![entries[0]; 65];
        assert_eq!(cpuid_page(&many).unwrap_err().count, 65);

        let mut corrected = page.clone();
        corrected[e + 0x18] = 9;
        let diff = cpuid_differences(&page, &corrected);
        assert_eq!(diff.len(), 1);
        assert!(
            diff[0].starts_with("function 0xd index 0x1: provided eax 0x4"),
            "{}",
            diff[0]
        );
        assert!(diff[0].contains("expected eax 0x9"), "{}", diff[0]);
    }

    /// KVM lists every leaf up to its maximum, most of them zero (75
    /// entries on an AMD EPYC host): the zero ones are left out, so such a
    /// vCPU fits, except leaf 0xD subleaves 0 and 1, which QEMU always fills.
    #[test]
    fn zero_entries_are_left_out_of_the_cpuid_page() {
        let entry = |function: u32, index: Option<u32>, regs: [u32; 4]| CpuidEntry {
            function,
            index,
            regs,
        };
        let mut entries = vec![entry(0, None, [0x1c, 1, 2, 3])];
        entries.extend(
            (2..=0x1c)
                .filter(|f| *f != 0xD)
                .map(|f| entry(f, None, [0; 4])),
        );
        entries.extend((0x8000_0000..0x8000_0040).map(|f| entry(f, None, [0; 4])));
        entries.push(entry(0xD, Some(0), [0; 4]));
        entries.push(entry(0xD, Some(2), [0; 4]));
        entries.push(entry(0x8000_001F, None, [0x1b, 0x33, 0, 0]));
        assert!(entries.len() > MAX_CPUID_ENTRIES);
        let page = cpuid_page(&entries).unwrap();
        assert_eq!(page[0..4], 3u32.to_le_bytes());
        let function = |i: usize| {
            let at = CPUID_HEADER_LEN + i * CPUID_ENTRY_LEN;
            (page[at], page[at + 4], page[at + 0x1c])
        };
        assert_eq!(function(0), (0, 0, 1));
        assert_eq!(function(1), (0xD, 0, 0x40));
        assert_eq!(
            &page[CPUID_HEADER_LEN + 2 * CPUID_ENTRY_LEN..][..4],
            &0x8000_001Fu32.to_le_bytes()
        );

        let mut full: Vec<CpuidEntry> = (0..65)
            .map(|f| entry(0x4000_0000 + f, None, [1, 0, 0, 0]))
            .collect();
        full.push(entry(3, None, [0; 4]));
        assert_eq!(cpuid_page(&full).unwrap_err().count, 65);
    }
}
