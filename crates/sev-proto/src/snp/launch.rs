//! The SNP launch digest: a chain of SHA-384 over PAGE_INFO records, one
//! per 4 KiB unit that SNP_LAUNCH_UPDATE processes
//! (docs/protocol/snp.md#launch-digest). The emulated firmware extends it as
//! it measures; `sev-owner measure` recomputes it from the same pages.

use std::fmt;
use std::sync::OnceLock;

use crate::hash::{sha384, Sha384, SHA384_LEN};

/// The size of the unit that is measured.
pub const PAGE_LEN: usize = 4096;

/// The GPA KVM gives every initial VMSA page, which the digest records.
pub const INITIAL_VMSA_GPA: u64 = 0xFFFF_FFFF_F000;

/// The length of a PAGE_INFO record.
pub const PAGE_INFO_LEN: usize = 0x70;

/// The VMSA bytes read as zero when a VMSA page is measured: the guest TSC
/// scale (0x2F0) and offset (0x2F8).
const VMSA_TSC_FIELDS: std::ops::Range<usize> = 0x2F0..0x300;

/// What SNP_LAUNCH_UPDATE does with a page, and how it is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PageType {
    /// Encrypted and measured.
    Normal = 1,
    /// A vCPU's initial save area; measured without its TSC fields.
    Vmsa = 2,
    /// Zeroed; only its PAGE_INFO is measured.
    Zero = 3,
    /// Encrypted as given; only its PAGE_INFO is measured.
    Unmeasured = 4,
    /// The firmware's secrets page; only its PAGE_INFO is measured.
    Secrets = 5,
    /// The CPUID table, checked by the firmware; only its PAGE_INFO is measured.
    Cpuid = 6,
}

/// A page type number outside 1..=6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("SNP page type {0} is not one of 1 (normal) to 6 (CPUID)")]
pub struct BadPageType(pub u8);

impl TryFrom<u8> for PageType {
    type Error = BadPageType;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Ok(match value {
            1 => PageType::Normal,
            2 => PageType::Vmsa,
            3 => PageType::Zero,
            4 => PageType::Unmeasured,
            5 => PageType::Secrets,
            6 => PageType::Cpuid,
            other => return Err(BadPageType(other)),
        })
    }
}

impl PageType {
    /// The SHA-384 this page type contributes as PAGE_INFO.CONTENTS: of the
    /// page for NORMAL, of the page with its TSC fields zeroed for VMSA,
    /// zero for the others.
    ///
    /// A NORMAL page whose bytes are all equal (a firmware image's zero or
    /// erased-flash padding) is hashed once per byte value and remembered.
    pub fn contents_digest(self, page: &[u8; PAGE_LEN]) -> [u8; SHA384_LEN] {
        match self {
            PageType::Normal => uniform_page_digest(page).unwrap_or_else(|| sha384(page)),
            PageType::Vmsa => {
                let mut h = Sha384::new();
                h.update(&page[..VMSA_TSC_FIELDS.start]);
                h.update(&[0u8; VMSA_TSC_FIELDS.end - VMSA_TSC_FIELDS.start]);
                h.update(&page[VMSA_TSC_FIELDS.end..]);
                h.finish()
            }
            PageType::Zero | PageType::Unmeasured | PageType::Secrets | PageType::Cpuid => {
                [0; SHA384_LEN]
            }
        }
    }
}

/// The byte every byte of `page` equals, if there is one.
fn uniform_byte(page: &[u8; PAGE_LEN]) -> Option<u8> {
    let first = page[0];
    let pattern = [first; 64];
    page.chunks_exact(pattern.len())
        .all(|chunk| chunk == pattern)
        .then_some(first)
}

/// The SHA-384 of `page` if its bytes are all equal (a firmware image's
/// zero or erased-flash padding): computed once per byte value and
/// remembered, so it costs a comparison of the page. `None` for any other
/// page.
pub fn uniform_page_digest(page: &[u8; PAGE_LEN]) -> Option<[u8; SHA384_LEN]> {
    static DIGESTS: [OnceLock<[u8; SHA384_LEN]>; 256] = [const { OnceLock::new() }; 256];
    let byte = uniform_byte(page)?;
    Some(*DIGESTS[usize::from(byte)].get_or_init(|| sha384(&[byte; PAGE_LEN])))
}

/// One PAGE_INFO record, without the running digest it is chained to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageInfo {
    /// PAGE_INFO.CONTENTS (see [`PageType::contents_digest`]).
    pub contents: [u8; SHA384_LEN],
    /// The page type.
    pub page_type: PageType,
    /// The page is imported by a migration (IMI).
    pub imi: bool,
    /// The VMPL1, VMPL2 and VMPL3 permission masks (zero in every launch
    /// QEMU or KVM makes).
    pub vmpl_perms: [u8; 3],
    /// The unit's guest physical address.
    pub gpa: u64,
}

impl PageInfo {
    /// The record of measuring `page` at `gpa` as `page_type`, no IMI, no
    /// VMPL permissions.
    pub fn for_page(page_type: PageType, gpa: u64, page: &[u8; PAGE_LEN]) -> Self {
        PageInfo {
            contents: page_type.contents_digest(page),
            page_type,
            imi: false,
            vmpl_perms: [0; 3],
            gpa,
        }
    }

    /// The 0x70 bytes chained after `current` (choice U21 for the permission
    /// bytes: a reserved byte, then VMPL1, VMPL2, VMPL3).
    pub fn encode(&self, current: &[u8; SHA384_LEN]) -> [u8; PAGE_INFO_LEN] {
        let mut out = [0u8; PAGE_INFO_LEN];
        out[..0x30].copy_from_slice(current);
        out[0x30..0x60].copy_from_slice(&self.contents);
        out[0x60..0x62].copy_from_slice(&(PAGE_INFO_LEN as u16).to_le_bytes());
        out[0x62] = self.page_type as u8;
        out[0x63] = u8::from(self.imi);
        out[0x65..0x68].copy_from_slice(&self.vmpl_perms);
        out[0x68..0x70].copy_from_slice(&self.gpa.to_le_bytes());
        out
    }
}

/// A region [`LaunchDigest::add_region`] cannot measure: its GPA is not
/// page-aligned, or its pages run past the top of the 64-bit address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("SNP region of {len} bytes at GPA {gpa:#x} is not page-aligned or runs past 2^64")]
pub struct BadRegion {
    /// The region's first GPA.
    pub gpa: u64,
    /// Its length in bytes.
    pub len: usize,
}

/// A guest's running launch digest, zero when the launch starts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LaunchDigest([u8; SHA384_LEN]);

impl LaunchDigest {
    /// The digest at SNP_LAUNCH_START: 48 zero bytes.
    pub fn new() -> Self {
        LaunchDigest([0; SHA384_LEN])
    }

    /// A digest carried over (e.g. from a saved guest context).
    pub fn from_bytes(bytes: [u8; SHA384_LEN]) -> Self {
        LaunchDigest(bytes)
    }

    /// The 48 bytes.
    pub fn bytes(&self) -> &[u8; SHA384_LEN] {
        &self.0
    }

    /// Chains one record.
    pub fn extend(&mut self, info: &PageInfo) {
        self.0 = sha384(&info.encode(&self.0));
    }

    /// Measures `page` at `gpa` as `page_type` (no IMI, no VMPL permissions).
    pub fn add_page(&mut self, page_type: PageType, gpa: u64, page: &[u8; PAGE_LEN]) {
        self.extend(&PageInfo::for_page(page_type, gpa, page));
    }

    /// Measures consecutive pages from `gpa` on, as `page_type`. `bytes` is
    /// padded with zeros to a whole number of pages, as the VMM pads the
    /// last page it encrypts.
    ///
    /// `gpa` must be page-aligned and the padded range must end at or below
    /// 2^64; otherwise nothing is measured and the digest is unchanged.
    pub fn add_region(
        &mut self,
        page_type: PageType,
        gpa: u64,
        bytes: &[u8],
    ) -> Result<(), BadRegion> {
        let bad = BadRegion {
            gpa,
            len: bytes.len(),
        };
        if !gpa.is_multiple_of(PAGE_LEN as u64) {
            return Err(bad);
        }
        // The last page's GPA must be representable: the range may end at
        // exactly 2^64 but not past it.
        let pages = u64::try_from(bytes.len().div_ceil(PAGE_LEN)).map_err(|_| bad)?;
        if let Some(last) = pages.checked_sub(1) {
            last.checked_mul(PAGE_LEN as u64)
                .and_then(|off| gpa.checked_add(off))
                .ok_or(bad)?;
        }
        let mut page_gpa = gpa;
        for chunk in bytes.chunks(PAGE_LEN) {
            let mut page = [0u8; PAGE_LEN];
            page[..chunk.len()].copy_from_slice(chunk);
            self.add_page(page_type, page_gpa, &page);
            // Wraps to 0 only after the last page (checked above).
            page_gpa = page_gpa.wrapping_add(PAGE_LEN as u64);
        }
        Ok(())
    }
}

impl Default for LaunchDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LaunchDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LaunchDigest(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn normal_page_digest_is_the_sha384_of_the_page_uniform_or_not() {
        use sha2::Digest;
        let reference =
            |page: &[u8; PAGE_LEN]| -> [u8; SHA384_LEN] { sha2::Sha384::digest(page).into() };
        for byte in [0x00, 0xFF, 0x5A] {
            let uniform = [byte; PAGE_LEN];
            // Twice: computed, then remembered.
            for _ in 0..2 {
                assert_eq!(
                    PageType::Normal.contents_digest(&uniform),
                    reference(&uniform)
                );
            }
            for at in [0, 63, 64, 2048, PAGE_LEN - 1] {
                let mut page = uniform;
                page[at] ^= 1;
                assert_eq!(uniform_page_digest(&page), None, "byte {at} differs");
                assert_eq!(PageType::Normal.contents_digest(&page), reference(&page));
            }
        }
        assert_eq!(
            PageType::Zero.contents_digest(&[0xFF; PAGE_LEN]),
            [0; SHA384_LEN]
        );
    }

    #[test]
    fn page_info_layout() {
        let info = PageInfo {
            contents: [0xcc; 48],
            page_type: PageType::Cpuid,
            imi: true,
            vmpl_perms: [1, 2, 3],
            gpa: 0x1122_3344_5566_7000,
        };
        let bytes = info.encode(&[0xaa; 48]);
        assert_eq!(&bytes[..48], &[0xaa; 48]);
        assert_eq!(&bytes[48..96], &[0xcc; 48]);
        assert_eq!(hex(&bytes[96..]), "70000601000102030070665544332211");
    }

    #[test]
    fn page_types_and_their_contents() {
        for n in 1..=6u8 {
            assert_eq!(PageType::try_from(n).unwrap() as u8, n);
        }
        assert_eq!(PageType::try_from(0), Err(BadPageType(0)));
        assert_eq!(PageType::try_from(7), Err(BadPageType(7)));
        let mut page = [0x5au8; PAGE_LEN];
        assert_eq!(PageType::Normal.contents_digest(&page), sha384(&page));
        for t in [
            PageType::Zero,
            PageType::Unmeasured,
            PageType::Secrets,
            PageType::Cpuid,
        ] {
            assert_eq!(t.contents_digest(&page), [0; 48]);
        }
        // The VMSA's TSC fields do not count; every other byte does.
        let vmsa = PageType::Vmsa.contents_digest(&page);
        page[0x2F0..0x300].fill(0);
        assert_eq!(vmsa, sha384(&page));
        page[0x2F0] = 1;
        page[0x2FF] = 9;
        assert_eq!(PageType::Vmsa.contents_digest(&page), vmsa);
        page[0x300] = 0;
        assert_ne!(PageType::Vmsa.contents_digest(&page), vmsa);
    }

    #[test]
    fn the_chain_depends_on_order_gpa_and_type() {
        let page = [7u8; PAGE_LEN];
        let mut a = LaunchDigest::new();
        a.add_page(PageType::Normal, 0x1000, &page);
        a.add_page(PageType::Zero, 0x2000, &page);
        let mut b = LaunchDigest::new();
        b.add_page(PageType::Zero, 0x2000, &page);
        b.add_page(PageType::Normal, 0x1000, &page);
        assert_ne!(a, b);
        let mut c = LaunchDigest::new();
        c.add_page(PageType::Normal, 0x1000, &page);
        c.add_page(PageType::Unmeasured, 0x2000, &page);
        assert_ne!(a, c);
        // add_region pads and advances the GPA page by page.
        let mut d = LaunchDigest::new();
        d.add_region(PageType::Normal, 0x1000, &[7u8; PAGE_LEN + 10])
            .unwrap();
        let mut e = LaunchDigest::new();
        e.add_page(PageType::Normal, 0x1000, &page);
        let mut tail = [0u8; PAGE_LEN];
        tail[..10].fill(7);
        e.add_page(PageType::Normal, 0x2000, &tail);
        assert_eq!(d, e);
        assert_eq!(LaunchDigest::from_bytes(*e.bytes()), e);
    }

    #[test]
    fn add_region_refuses_unaligned_and_wrapping_ranges() {
        let top = 0u64.wrapping_sub(PAGE_LEN as u64);
        let mut d = LaunchDigest::new();
        let before = d;
        // Past 2^64: two pages starting at the last page, or a partial
        // second page.
        for bytes in [&[1u8; 2 * PAGE_LEN][..], &[1u8; PAGE_LEN + 1][..]] {
            assert_eq!(
                d.add_region(PageType::Normal, top, bytes),
                Err(BadRegion {
                    gpa: top,
                    len: bytes.len()
                })
            );
            assert_eq!(d, before);
        }
        assert!(d.add_region(PageType::Normal, 0x1001, &[1; 16]).is_err());
        assert_eq!(d, before);
        // Ending exactly at 2^64 is fine, and so is nothing at all.
        d.add_region(PageType::Normal, top, &[1; PAGE_LEN]).unwrap();
        let mut e = LaunchDigest::new();
        let mut page = [0u8; PAGE_LEN];
        page.fill(1);
        e.add_page(PageType::Normal, top, &page);
        assert_eq!(d, e);
        d.add_region(PageType::Normal, top, &[]).unwrap();
        assert_eq!(d, e);
    }

    /// sev-snp-measure's 'snp:ovmf-hash' of its AmdSev OVMF fixture: the one
    /// page measured as NORMAL at GPA 0xFFFFF000 (docs/protocol/test-vectors.md#snp-launch-digests).
    #[test]
    fn ovmf_fixture_known_answer() {
        let Some(image) = sevm_testutil::fixture(
            "snp::launch::ovmf_fixture_known_answer",
            "ovmf/ovmf_AmdSev_suffix.bin",
        ) else {
            return;
        };
        let page: &[u8; PAGE_LEN] = image.as_slice().try_into().unwrap();
        assert_eq!(
            hex(&PageType::Normal.contents_digest(page)),
            "161ace084859674ded7322ad102eb33f49457e0f7845a8f9ad0e03a59eac3e3e\
             360f8b78345363feaeac956ebba2d894"
        );
        let mut ld = LaunchDigest::new();
        ld.add_page(PageType::Normal, 0xFFFF_F000, page);
        assert_eq!(
            hex(ld.bytes()),
            "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa\
             16aff8c374c2a55c467a50da6d466b74"
        );
    }
}
