//! The firmware's SEV metadata ("ASEV"): the guest memory ranges an SNP
//! launch must prepare before the firmware runs, each with the way it is
//! measured (docs/protocol/snp.md#ovmf-sev-metadata).
//!
//! The footer entry dc886566… holds the distance from the end of the image
//! to a 16-byte header, which the descriptors follow. Every offset, count
//! and range is checked; a malformed header or descriptor is a
//! [`MetadataError`], never a panic.

use std::fmt;

use super::{le_u32_at, FooterTable, OvmfError, SEV_METADATA_GUID};

/// The header's signature.
pub const METADATA_SIGNATURE: [u8; 4] = *b"ASEV";
/// The only metadata version the tools and QEMU accept.
pub const METADATA_VERSION: u32 = 1;
/// The length of the header.
pub const METADATA_HEADER_LEN: usize = 16;
/// The length of one descriptor.
pub const METADATA_DESC_LEN: usize = 12;
/// The granularity of every range.
pub const PAGE_LEN: u32 = 4096;

/// What a metadata range holds, which decides how it is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum SectionType {
    /// Memory the firmware's SEC phase uses before it can validate pages
    /// itself (page tables, GHCB, stacks): zero pages.
    SnpSecMem = 1,
    /// The SNP secrets page.
    SnpSecrets = 2,
    /// The SNP CPUID page.
    Cpuid = 3,
    /// The calling area of an SVSM: zero pages.
    SvsmCaa = 4,
    /// The page that receives the kernel-hashes table.
    KernelHashes = 0x10,
}

impl SectionType {
    /// The type with this number, if it is one.
    pub const fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            1 => SectionType::SnpSecMem,
            2 => SectionType::SnpSecrets,
            3 => SectionType::Cpuid,
            4 => SectionType::SvsmCaa,
            0x10 => SectionType::KernelHashes,
            _ => return None,
        })
    }

    /// Whether the range must be exactly one page.
    pub const fn is_single_page(self) -> bool {
        matches!(
            self,
            SectionType::SnpSecrets | SectionType::Cpuid | SectionType::KernelHashes
        )
    }
}

impl fmt::Display for SectionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SectionType::SnpSecMem => "SNP_SEC_MEM",
            SectionType::SnpSecrets => "SNP_SECRETS",
            SectionType::Cpuid => "CPUID",
            SectionType::SvsmCaa => "SVSM_CAA",
            SectionType::KernelHashes => "SNP_KERNEL_HASHES",
        })
    }
}

/// One metadata descriptor: a page-aligned guest-physical range below 4 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetadataSection {
    /// Guest-physical base (page-aligned).
    pub gpa: u32,
    /// Length in bytes (a non-zero multiple of 4096).
    pub size: u32,
    /// What the range holds.
    pub section_type: SectionType,
}

impl MetadataSection {
    /// The GPA of each 4 KiB page of the range, ascending.
    pub fn pages(&self) -> impl Iterator<Item = u64> + '_ {
        let base = u64::from(self.gpa);
        (0..u64::from(self.size / PAGE_LEN)).map(move |i| base + i * u64::from(PAGE_LEN))
    }
}

/// A malformed SEV metadata header or descriptor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The footer entry's offset reaches before the start of the image, or
    /// leaves no room for the header.
    #[error("OVMF SEV metadata: offset {offset:#x} from the end does not leave a {METADATA_HEADER_LEN}-byte header inside the {image_len}-byte image")]
    Offset {
        /// The offset from the end of the image.
        offset: u32,
        /// The image length.
        image_len: usize,
    },
    /// The header does not start with "ASEV".
    #[error("OVMF SEV metadata at file offset {at:#x}: signature {found:02x?} is not \"ASEV\"")]
    Signature {
        /// File offset of the header.
        at: usize,
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The header's version is not 1.
    #[error("OVMF SEV metadata at file offset {at:#x}: version {version}, only version {METADATA_VERSION} is known")]
    Version {
        /// File offset of the header.
        at: usize,
        /// The version found.
        version: u32,
    },
    /// The header's size does not hold its descriptors, or runs past the
    /// end of the image.
    #[error("OVMF SEV metadata at file offset {at:#x}: size {size} does not hold the header and {count} descriptor(s) inside the {image_len}-byte image")]
    Size {
        /// File offset of the header.
        at: usize,
        /// The header's size field.
        size: u32,
        /// The descriptor count.
        count: u32,
        /// The image length.
        image_len: usize,
    },
    /// A descriptor's type is not one of 1–4 or 0x10.
    #[error("OVMF SEV metadata descriptor {index}: unknown section type {value:#x}")]
    SectionType {
        /// Position in the table.
        index: usize,
        /// The type found.
        value: u32,
    },
    /// A descriptor's range is empty, not page-aligned, crosses 4 GiB, or is
    /// not a single page for a type that must be one.
    #[error(
        "OVMF SEV metadata descriptor {index} ({section_type}): range {gpa:#x}+{size:#x} {problem}"
    )]
    Range {
        /// Position in the table.
        index: usize,
        /// The section's type.
        section_type: SectionType,
        /// Its GPA.
        gpa: u32,
        /// Its size.
        size: u32,
        /// What is wrong.
        problem: &'static str,
    },
}

/// The parsed metadata: its descriptors in table order (the order a launch
/// processes them in; never sorted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SevMetadata {
    /// File offset of the header (relative to the bytes given).
    pub offset: usize,
    /// The descriptors in table order.
    pub sections: Vec<MetadataSection>,
}

impl SevMetadata {
    /// Whether some descriptor has this type.
    pub fn has(&self, section_type: SectionType) -> bool {
        self.sections.iter().any(|s| s.section_type == section_type)
    }

    /// Parses the header at `offset_from_end` bytes before the end of
    /// `image`.
    pub fn parse(image: &[u8], offset_from_end: u32) -> Result<Self, MetadataError> {
        let image_len = image.len();
        let bad_offset = MetadataError::Offset {
            offset: offset_from_end,
            image_len,
        };
        let at = usize::try_from(offset_from_end)
            .ok()
            .and_then(|o| image_len.checked_sub(o))
            .ok_or(bad_offset.clone())?;
        let header = image
            .get(at..)
            .and_then(|h| h.get(..METADATA_HEADER_LEN))
            .ok_or(bad_offset)?;
        let mut found = [0u8; 4];
        found.copy_from_slice(&header[..4]);
        if found != METADATA_SIGNATURE {
            return Err(MetadataError::Signature { at, found });
        }
        let field = |i: usize| le_u32_at(header, 4 * i).unwrap_or(0);
        let (size, version, count) = (field(1), field(2), field(3));
        if version != METADATA_VERSION {
            return Err(MetadataError::Version { at, version });
        }
        let bad_size = MetadataError::Size {
            at,
            size,
            count,
            image_len,
        };
        let needed = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(METADATA_DESC_LEN))
            .and_then(|n| n.checked_add(METADATA_HEADER_LEN))
            .ok_or(bad_size.clone())?;
        let size_usize = usize::try_from(size).map_err(|_| bad_size.clone())?;
        if size_usize < needed || at.checked_add(size_usize).is_none_or(|end| end > image_len) {
            return Err(bad_size);
        }
        let descs = image
            .get(at + METADATA_HEADER_LEN..at + needed)
            .ok_or(bad_size)?;
        let sections = descs
            .chunks_exact(METADATA_DESC_LEN)
            .enumerate()
            .map(|(index, d)| parse_desc(index, d))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SevMetadata {
            offset: at,
            sections,
        })
    }
}

fn parse_desc(index: usize, d: &[u8]) -> Result<MetadataSection, MetadataError> {
    let field = |i: usize| le_u32_at(d, 4 * i).unwrap_or(0);
    let (gpa, size, value) = (field(0), field(1), field(2));
    let section_type =
        SectionType::from_u32(value).ok_or(MetadataError::SectionType { index, value })?;
    let range = |problem| MetadataError::Range {
        index,
        section_type,
        gpa,
        size,
        problem,
    };
    if size == 0 {
        return Err(range("is empty"));
    }
    if gpa % PAGE_LEN != 0 || size % PAGE_LEN != 0 {
        return Err(range("is not 4 KiB-aligned"));
    }
    if gpa.checked_add(size).is_none() && u64::from(gpa) + u64::from(size) != 1 << 32 {
        return Err(range("crosses 4 GiB"));
    }
    if section_type.is_single_page() && size != PAGE_LEN {
        return Err(range("is not exactly one page"));
    }
    Ok(MetadataSection {
        gpa,
        size,
        section_type,
    })
}

impl FooterTable<'_> {
    /// The SEV metadata the footer entry dc886566… points to; `None` when
    /// the image has no such entry (a firmware without SNP support).
    pub fn sev_metadata(&self) -> Result<Option<SevMetadata>, OvmfError> {
        let Some([offset]) = self.u32s::<1>(SEV_METADATA_GUID, "SEV metadata offset")? else {
            return Ok(None);
        };
        Ok(Some(SevMetadata::parse(self.image, offset)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(size: u32, version: u32, count: u32) -> Vec<u8> {
        let mut v = METADATA_SIGNATURE.to_vec();
        for x in [size, version, count] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v
    }

    fn desc(gpa: u32, size: u32, t: u32) -> Vec<u8> {
        [gpa.to_le_bytes(), size.to_le_bytes(), t.to_le_bytes()].concat()
    }

    /// Metadata followed by `tail` bytes; returns (image, offset from end).
    fn image(descs: &[(u32, u32, u32)], tail: usize) -> (Vec<u8>, u32) {
        let mut v = header((16 + 12 * descs.len()) as u32, 1, descs.len() as u32);
        for &(g, s, t) in descs {
            v.extend(desc(g, s, t));
        }
        let off = (v.len() + tail) as u32;
        v.resize(v.len() + tail, 0xEE);
        (v, off)
    }

    /// docs/protocol/snp.md#ovmf-sev-metadata: the AmdSev fixture's seven
    /// descriptors.
    #[test]
    fn amdsev_fixture_metadata() {
        let Some(img) = sevm_testutil::fixture(
            "ovmf::metadata::tests::amdsev_fixture_metadata",
            "ovmf/ovmf_AmdSev_suffix.bin",
        ) else {
            return;
        };
        let m = FooterTable::parse(&img)
            .unwrap()
            .sev_metadata()
            .unwrap()
            .unwrap();
        assert_eq!(m.offset, 0xAAC);
        let got: Vec<_> = m
            .sections
            .iter()
            .map(|s| (s.gpa, s.size, s.section_type as u32))
            .collect();
        assert_eq!(
            got,
            [
                (0x0080_0000, 0x9000, 1),
                (0x0080_A000, 0x3000, 1),
                (0x0080_D000, 0x1000, 2),
                (0x0080_E000, 0x1000, 3),
                (0x0080_F000, 0x1000, 4),
                (0x0081_0000, 0x1000, 0x10),
                (0x0081_1000, 0xF000, 1),
            ]
        );
        assert!(m.has(SectionType::KernelHashes));
        assert_eq!(m.sections[0].pages().count(), 9);
        assert_eq!(m.sections[0].pages().last(), Some(0x0080_8000));
    }

    #[test]
    fn ovmfx64_fixture_has_no_kernel_hashes_section() {
        let Some(img) = sevm_testutil::fixture(
            "ovmf::metadata::tests::ovmfx64_fixture_has_no_kernel_hashes_section",
            "ovmf/ovmf_OvmfX64_suffix.bin",
        ) else {
            return;
        };
        let m = FooterTable::parse(&img)
            .unwrap()
            .sev_metadata()
            .unwrap()
            .unwrap();
        assert_eq!(m.offset, 0xAB8);
        assert_eq!(m.sections.len(), 6);
        assert_eq!(
            m.sections[5],
            MetadataSection {
                gpa: 0x0081_0000,
                size: 0x10000,
                section_type: SectionType::SnpSecMem
            }
        );
        assert!(!m.has(SectionType::KernelHashes));
    }

    #[test]
    fn well_formed_metadata_parses_in_table_order() {
        let (img, off) = image(&[(0x2000, 0x1000, 2), (0x1000, 0x1000, 1)], 7);
        let m = SevMetadata::parse(&img, off).unwrap();
        assert_eq!(m.offset, 0);
        assert_eq!(m.sections[0].section_type, SectionType::SnpSecrets);
        assert_eq!(m.sections[1].gpa, 0x1000);
        // The last page below 4 GiB is a valid range.
        let (img, off) = image(&[(0xFFFF_F000, 0x1000, 1)], 0);
        assert!(SevMetadata::parse(&img, off).is_ok());
        // No descriptors at all.
        let (img, off) = image(&[], 0);
        assert_eq!(SevMetadata::parse(&img, off).unwrap().sections, []);
    }

    #[test]
    fn malformed_metadata_is_refused() {
        let (img, off) = image(&[(0x1000, 0x1000, 1)], 0);
        let len = img.len();
        assert!(matches!(
            SevMetadata::parse(&img, off + 1),
            Err(MetadataError::Offset { .. })
        ));
        assert!(matches!(
            SevMetadata::parse(&img, u32::MAX),
            Err(MetadataError::Offset { .. })
        ));
        // Fewer than 16 bytes left for the header.
        assert!(matches!(
            SevMetadata::parse(&img[..len - 20], off - 20),
            Err(MetadataError::Offset { .. })
        ));
        let mut bad = img.clone();
        bad[0] = b'B';
        assert!(matches!(
            SevMetadata::parse(&bad, off),
            Err(MetadataError::Signature { at: 0, .. })
        ));
        let mut bad = img.clone();
        bad[8] = 2;
        assert_eq!(
            SevMetadata::parse(&bad, off),
            Err(MetadataError::Version { at: 0, version: 2 })
        );
        // Size too small for the count, past the end, and a huge count.
        for (size, count) in [(27u32, 1u32), (29, 1), (28, 2), (28, u32::MAX)] {
            let mut bad = img.clone();
            bad[4..8].copy_from_slice(&size.to_le_bytes());
            bad[12..16].copy_from_slice(&count.to_le_bytes());
            assert!(
                matches!(
                    SevMetadata::parse(&bad, off),
                    Err(MetadataError::Size { .. })
                ),
                "{size} {count}"
            );
        }
        for (d, want) in [
            ((0x1000, 0x1000, 5), "type"),
            ((0x1000, 0, 1), "is empty"),
            ((0x1800, 0x1000, 1), "is not 4 KiB-aligned"),
            ((0x1000, 0x1800, 1), "is not 4 KiB-aligned"),
            ((0xFFFF_F000, 0x2000, 1), "crosses 4 GiB"),
            ((0x1000, 0x2000, 2), "is not exactly one page"),
            ((0x1000, 0x2000, 3), "is not exactly one page"),
            ((0x1000, 0x2000, 0x10), "is not exactly one page"),
        ] {
            let (img, off) = image(&[d], 0);
            let err = SevMetadata::parse(&img, off).unwrap_err();
            match err {
                MetadataError::SectionType { index: 0, value: 5 } => assert_eq!(want, "type"),
                MetadataError::Range { problem, .. } => assert_eq!(problem, want),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_firmware_without_the_entry_has_no_metadata() {
        let Some(img) = sevm_testutil::fixture(
            "ovmf::metadata::tests::a_firmware_without_the_entry_has_no_metadata",
            "ovmf/sevctl_OVMF.amdsev_trimmed.bin",
        ) else {
            return;
        };
        // An SEV-ES era build: a footer table without the metadata entry.
        let t = FooterTable::parse(&img).unwrap();
        assert!(!t.is_empty());
        assert_eq!(t.sev_metadata(), Ok(None));
    }
}
