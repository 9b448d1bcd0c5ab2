//! The SNP launch digest of an OVMF guest, page by page as QEMU launches
//! it (docs/protocol/snp.md#ovmf-launch-order): the firmware image, then
//! each SEV metadata range in table order as its page type, then one VMSA
//! per vCPU. `sev-owner measure` computes it from files; the VMM follows
//! the same [`metadata_updates`] plan when it launches.

use crate::ovmf::{
    FooterTable, KernelHashes, OvmfError, SectionType, SevMetadata, PADDED_HASH_TABLE_LEN,
};
use crate::vmsa::{MissingApResetVector, VmmType, VmsaConfig};

use super::launch::{LaunchDigest, PageType, INITIAL_VMSA_GPA, PAGE_LEN};

/// The firmware image ends at 4 GiB.
pub const FIRMWARE_END: u64 = 1 << 32;

/// Why a launch digest cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnpMeasureError {
    /// The footer table, metadata or hashes area is malformed or missing.
    #[error(transparent)]
    Ovmf(#[from] OvmfError),
    /// The image is empty, larger than 4 GiB, or not whole pages.
    #[error(
        "OVMF image of {len} bytes is not a whole number of 4 KiB pages between 4 KiB and 4 GiB"
    )]
    FirmwareSize {
        /// Its length.
        len: usize,
    },
    /// The image has no SEV metadata, so it cannot start an SNP guest.
    #[error("OVMF has no SEV metadata (footer entry dc886566-984a-4798-a75e-5585a7bf67cc): it does not support SEV-SNP")]
    NoMetadata,
    /// A kernel was given but no range receives its hashes (sev-snp-measure's message).
    #[error("Kernel specified but OVMF metadata doesn't include SNP_KERNEL_HASHES section")]
    NoKernelHashesSection,
    /// The hashes table would not fit in its page.
    #[error("the kernel-hashes table at GPA {gpa:#x} does not fit in its 4 KiB page")]
    HashesTableCrossesPage {
        /// The table's GPA from the firmware.
        gpa: u32,
    },
    /// More than one vCPU and no AP reset address.
    #[error(transparent)]
    Vmsa(#[from] MissingApResetVector),
}

/// One metadata range and how the launch measures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataUpdate {
    /// The range.
    pub section: crate::ovmf::MetadataSection,
    /// The SNP_LAUNCH_UPDATE page type of each of its pages.
    pub page_type: PageType,
}

/// The metadata ranges in the order the launch processes them, with their
/// page types (docs/protocol/snp.md#ovmf-sev-metadata): SNP_SEC_MEM and
/// SVSM_CAA as ZERO (SNP_SEC_MEM UNMEASURED for gce), the secrets and
/// CPUID pages as SECRETS and CPUID (CPUID last for ec2), the
/// kernel-hashes page as NORMAL when a kernel is measured and ZERO when
/// not. A kernel without a kernel-hashes range is an error.
pub fn metadata_updates(
    metadata: &SevMetadata,
    kernel: bool,
    vmm: VmmType,
) -> Result<Vec<MetadataUpdate>, SnpMeasureError> {
    if kernel && !metadata.has(SectionType::KernelHashes) {
        return Err(SnpMeasureError::NoKernelHashesSection);
    }
    let page_type = |t: SectionType| match t {
        SectionType::SnpSecMem if vmm == VmmType::Gce => PageType::Unmeasured,
        SectionType::SnpSecMem | SectionType::SvsmCaa => PageType::Zero,
        SectionType::SnpSecrets => PageType::Secrets,
        SectionType::Cpuid => PageType::Cpuid,
        SectionType::KernelHashes if kernel => PageType::Normal,
        SectionType::KernelHashes => PageType::Zero,
    };
    let cpuid_last = vmm == VmmType::Ec2;
    let (late, early): (Vec<_>, Vec<_>) = metadata
        .sections
        .iter()
        .partition(|s| cpuid_last && s.section_type == SectionType::Cpuid);
    Ok(early
        .into_iter()
        .chain(late)
        .map(|&section| MetadataUpdate {
            section,
            page_type: page_type(section.section_type),
        })
        .collect())
}

/// The page that carries the kernel-hashes table: the padded table at the
/// offset of the firmware's hashes area (footer entry 7255371f…) within
/// its page, zeros elsewhere.
pub fn kernel_hashes_page(
    table: &FooterTable<'_>,
    hashes: &KernelHashes,
) -> Result<[u8; PAGE_LEN], SnpMeasureError> {
    let area = table.check_hashes_area()?;
    let at = (area.base as usize) & (PAGE_LEN - 1);
    let mut page = [0u8; PAGE_LEN];
    page.get_mut(at..at + PADDED_HASH_TABLE_LEN)
        .ok_or(SnpMeasureError::HashesTableCrossesPage { gpa: area.base })?
        .copy_from_slice(&hashes.to_table());
    Ok(page)
}

fn firmware_gpa(firmware: &[u8]) -> Result<u64, SnpMeasureError> {
    let len = firmware.len();
    let bad = SnpMeasureError::FirmwareSize { len };
    let len64 = u64::try_from(len).map_err(|_| bad.clone())?;
    if len == 0 || !len.is_multiple_of(PAGE_LEN) || len64 > FIRMWARE_END {
        return Err(bad);
    }
    Ok(FIRMWARE_END - len64)
}

/// Extends `ld` with the firmware image as NORMAL pages at 4 GiB − its
/// size: sev-snp-measure's `snp:ovmf-hash` when `ld` starts at zero.
pub fn add_firmware_pages(ld: &mut LaunchDigest, firmware: &[u8]) -> Result<(), SnpMeasureError> {
    let gpa = firmware_gpa(firmware)?;
    ld.add_region(PageType::Normal, gpa, firmware)
        .map_err(|_| SnpMeasureError::FirmwareSize {
            len: firmware.len(),
        })
}

/// The digest of the firmware pages alone, from zero (`snp:ovmf-hash`).
pub fn ovmf_hash(firmware: &[u8]) -> Result<LaunchDigest, SnpMeasureError> {
    let mut ld = LaunchDigest::new();
    add_firmware_pages(&mut ld, firmware)?;
    Ok(ld)
}

/// What an SNP launch of an OVMF guest measures besides the firmware bytes.
#[derive(Debug, Clone, Copy)]
pub struct SnpLaunch<'a> {
    /// The digest after the firmware pages, computed earlier
    /// ([`ovmf_hash`]); `None` measures the firmware given.
    pub ovmf_hash: Option<LaunchDigest>,
    /// The kernel, initrd and command-line hashes (`-kernel` with
    /// `kernel-hashes=on`), or `None` without a kernel.
    pub kernel_hashes: Option<&'a KernelHashes>,
    /// The number of vCPUs.
    pub vcpus: u32,
    /// The VMSA parameters (SEV features = the guest features).
    pub vmsa: VmsaConfig,
}

/// The SNP launch digest of `firmware` launched as `launch` describes.
/// The firmware bytes are used for the footer table and metadata always,
/// and measured unless `launch.ovmf_hash` is given.
pub fn snp_launch_digest(
    firmware: &[u8],
    launch: &SnpLaunch<'_>,
) -> Result<LaunchDigest, SnpMeasureError> {
    firmware_gpa(firmware)?;
    let table = FooterTable::parse(firmware)?;
    let metadata = table.sev_metadata()?.ok_or(SnpMeasureError::NoMetadata)?;
    let updates = metadata_updates(&metadata, launch.kernel_hashes.is_some(), launch.vmsa.vmm)?;
    let hashes_page = launch
        .kernel_hashes
        .map(|h| kernel_hashes_page(&table, h))
        .transpose()?;
    let vmsas = launch
        .vmsa
        .pages(launch.vcpus, table.sev_es_reset_vector()?)?;

    let mut ld = match launch.ovmf_hash {
        Some(ld) => ld,
        None => ovmf_hash(firmware)?,
    };
    let zero = [0u8; PAGE_LEN];
    for u in &updates {
        let page = match (u.page_type, &hashes_page) {
            (PageType::Normal, Some(p)) => p,
            _ => &zero,
        };
        for gpa in u.section.pages() {
            ld.add_page(u.page_type, gpa, page);
        }
    }
    for vmsa in vmsas {
        ld.add_page(PageType::Vmsa, INITIAL_VMSA_GPA, &vmsa);
    }
    Ok(ld)
}

#[cfg(test)]
mod tests;
