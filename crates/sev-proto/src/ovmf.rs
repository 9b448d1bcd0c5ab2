//! OVMF metadata, the SEV kernel-hashes table and the launch digest
//! (docs/protocol/ovmf.md).
//!
//! * [`FooterTable`] parses the GUIDed table at the end of an OVMF image
//!   (10.1) and answers the lookups QEMU makes: the launch-secret area, the
//!   kernel-hashes area and the SEV-ES AP reset vector (with QEMU's fallback
//!   for older images that carry only the SEV-ES block).
//! * [`KernelHashes`] builds and parses the 176-byte padded hashes table that
//!   QEMU measures after the firmware with `kernel-hashes=on` (10.2).
//! * [`FooterTable::sev_metadata`] parses the SEV metadata an SNP launch
//!   follows ([`metadata`]).
//! * [`sev_launch_digest`], [`seves_launch_digest`] and the streaming
//!   [`LaunchDigest`] compute GCTX.LD the way sev-snp-measure does (10.3,
//!   10.4).
//!
//! Everything here parses untrusted bytes: every offset and length is
//! checked, and a malformed table is an [`OvmfError`] naming the file offset
//! and the problem — never a panic.

pub mod metadata;

pub use metadata::{MetadataError, MetadataSection, SectionType, SevMetadata};

use std::fmt;

use sha2::{Digest, Sha256};

use crate::guid::Guid;

/// The footer GUID at EOF−48 that marks a table.
pub const FOOTER_GUID: Guid = Guid::from_str_const("96b582de-1fb2-45f7-baea-a366c55a082d");
/// SEV-ES AP reset block: u32 reset address.
pub const SEV_ES_RESET_BLOCK_GUID: Guid =
    Guid::from_str_const("00f771de-1a7e-4fcb-890e-68c77e2fb44e");
/// SEV launch-secret area: u32 base, u32 size.
pub const SEV_SECRET_BLOCK_GUID: Guid =
    Guid::from_str_const("4c2eb361-7d9b-4cc3-8081-127c90d3d294");
/// SEV kernel-hashes table area: u32 base, u32 size.
pub const SEV_HASH_TABLE_RV_GUID: Guid =
    Guid::from_str_const("7255371f-3a3b-4b04-927b-1da6efa8d454");
/// SNP metadata ("ASEV") offset; not used for SEV / SEV-ES.
pub const SEV_METADATA_GUID: Guid = Guid::from_str_const("dc886566-984a-4798-a75e-5585a7bf67cc");
/// Intel TDX metadata offset; ignored here.
pub const TDX_METADATA_GUID: Guid = Guid::from_str_const("e47a6535-984a-4798-865e-4685a7bf8ec2");
/// SNP boot block; SNP only.
pub const SNP_BOOT_BLOCK_GUID: Guid = Guid::from_str_const("bd39c0c2-2f8e-4243-83e8-1b74cebcb7d9");

/// Kernel-hashes table header GUID.
pub const SEV_HASH_TABLE_HEADER_GUID: Guid =
    Guid::from_str_const("9438d606-4f22-4cc9-b479-a793d411fd21");
/// Kernel-hashes table entry: command line.
pub const SEV_CMDLINE_ENTRY_GUID: Guid =
    Guid::from_str_const("97d02dd8-bd20-4c94-aa78-e7714d36ab2a");
/// Kernel-hashes table entry: initrd.
pub const SEV_INITRD_ENTRY_GUID: Guid =
    Guid::from_str_const("44baf731-3a2f-4bd7-9af1-41e29169781d");
/// Kernel-hashes table entry: kernel.
pub const SEV_KERNEL_ENTRY_GUID: Guid =
    Guid::from_str_const("4de79437-abd2-427f-b835-d5b172d2045b");

/// Distance from EOF to the footer GUID.
pub const FOOTER_GUID_FROM_END: usize = 48;
/// Distance from EOF to the u16 `table_len`.
pub const TABLE_LEN_FROM_END: usize = 50;
/// Distance from EOF to the end of the table (the footer GUID's end).
pub const TABLE_END_FROM_END: usize = 32;
/// Size of an entry's trailer (u16 length + GUID), also the table header.
pub const ENTRY_HEADER_LEN: usize = 18;

/// Length of the kernel-hashes table without padding (0xA8).
pub const HASH_TABLE_LEN: usize = 168;
/// Length of the padded kernel-hashes table that is measured (0xB0).
pub const PADDED_HASH_TABLE_LEN: usize = 176;
/// Length of one hashes-table entry: GUID + u16 + SHA-256 (0x32).
const HASH_ENTRY_LEN: usize = 50;
/// Size of one SEV-ES VMSA page.
pub const VMSA_PAGE_LEN: usize = 4096;

/// SHA-256 of the empty string: the initrd digest when there is no initrd.
pub const EMPTY_SHA256: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Why the firmware cannot take a kernel-hashes table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashesAreaProblem {
    /// The footer table has no 7255371f… entry (or there is no table).
    NoEntry,
    /// The entry's base is 0 ("not supported").
    BaseZero,
    /// The area is smaller than the 176-byte padded table.
    TooSmall {
        /// The area base.
        base: u32,
        /// The area size.
        size: u32,
    },
}

impl fmt::Display for HashesAreaProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoEntry => write!(
                f,
                "the OVMF footer table has no SEV hashes table entry ({SEV_HASH_TABLE_RV_GUID})"
            ),
            Self::BaseZero => f.write_str("the SEV hashes table area has base 0"),
            Self::TooSmall { base, size } => write!(
                f,
                "the SEV hashes table area (base=0x{base:x} size=0x{size:x}) is smaller than \
                 {PADDED_HASH_TABLE_LEN} bytes"
            ),
        }
    }
}

/// A malformed OVMF footer table, hashes table, or launch-digest input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OvmfError {
    /// The footer GUID is present but the image is too short for `table_len`.
    #[error("OVMF footer table: image of {image_len} bytes is too short to hold table_len before the footer GUID")]
    ImageTooShort {
        /// Length of the image (or suffix) given.
        image_len: usize,
    },
    /// `table_len` is smaller than the table's own 18-byte header.
    #[error("OVMF footer table: table_len {table_len} at file offset {offset:#x} is smaller than the {ENTRY_HEADER_LEN}-byte footer header")]
    TableLenTooSmall {
        /// File offset of `table_len`.
        offset: usize,
        /// Its value.
        table_len: u16,
    },
    /// `table_len` reaches before the start of the image.
    #[error("OVMF footer table: table_len {table_len} at file offset {offset:#x} extends before the start of the {image_len}-byte image")]
    TableLenBeyondImage {
        /// File offset of `table_len`.
        offset: usize,
        /// Its value.
        table_len: u16,
        /// Length of the image (or suffix) given.
        image_len: usize,
    },
    /// Fewer than 18 bytes of the table are left for the next entry.
    #[error("OVMF footer table: {remaining} byte(s) left before file offset {end:#x}, too few for an entry's {ENTRY_HEADER_LEN}-byte length and GUID")]
    TruncatedEntry {
        /// File offset just past the incomplete entry.
        end: usize,
        /// Bytes of the table left.
        remaining: usize,
    },
    /// An entry's length is smaller than its own length field and GUID.
    #[error("OVMF footer table: entry {guid} with length field at file offset {offset:#x} has length {length}, less than {ENTRY_HEADER_LEN}")]
    EntryTooShort {
        /// File offset of the entry's u16 length.
        offset: usize,
        /// The entry's GUID.
        guid: Guid,
        /// Its length.
        length: u16,
    },
    /// An entry's length runs past the start of the table.
    #[error("OVMF footer table: entry {guid} with length field at file offset {offset:#x} has length {length}, but only {remaining} byte(s) of the table remain")]
    EntryBeyondTable {
        /// File offset of the entry's u16 length.
        offset: usize,
        /// The entry's GUID.
        guid: Guid,
        /// Its length.
        length: u16,
        /// Bytes of the table left.
        remaining: usize,
    },
    /// A known entry's data is too short for its layout.
    #[error("OVMF footer entry {guid} ({what}) at file offset {offset:#x}: {actual} data byte(s), expected at least {expected}")]
    EntryData {
        /// The entry's GUID.
        guid: Guid,
        /// What the entry is.
        what: &'static str,
        /// File offset of its data.
        offset: usize,
        /// Bytes needed.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },
    /// The image is an old one with only an SEV-ES block at EOF−48 and that
    /// block's length is out of bounds.
    #[error("OVMF legacy SEV-ES reset block: length {length} at file offset {offset:#x} is out of bounds for a {image_len}-byte image")]
    LegacyResetBlock {
        /// File offset of the u16 length.
        offset: usize,
        /// Its value.
        length: u16,
        /// Length of the image.
        image_len: usize,
    },
    /// A kernel was given but the firmware cannot take a hashes table
    /// (same message as sev-snp-measure, with the reason appended).
    #[error("Kernel specified but OVMF doesn't support kernel/initrd/cmdline measurement: {0}")]
    KernelHashesUnsupported(HashesAreaProblem),
    /// A kernel-hashes table is malformed.
    #[error("SEV kernel hashes table: {problem} (at offset {offset:#x})")]
    HashTable {
        /// Offset within the bytes given.
        offset: usize,
        /// What is wrong.
        problem: String,
    },
    /// The SEV metadata is malformed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// A VMSA page given to the SEV-ES digest is not 4096 bytes.
    #[error("VMSA {index} is {actual} bytes, expected {VMSA_PAGE_LEN}")]
    VmsaLength {
        /// Position in the list (0 = BSP).
        index: usize,
        /// Its length.
        actual: usize,
    },
}

fn le_u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s: [u8; 2] = b.get(off..off.checked_add(2)?)?.try_into().ok()?;
    Some(u16::from_le_bytes(s))
}

fn le_u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(s))
}

fn guid_at(b: &[u8], off: usize) -> Option<Guid> {
    let s: [u8; 16] = b.get(off..off.checked_add(16)?)?.try_into().ok()?;
    Some(Guid::from_bytes(s))
}

/// One entry of the footer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FooterEntry<'a> {
    /// The entry's GUID.
    pub guid: Guid,
    /// The entry's data (length − 18 bytes).
    pub data: &'a [u8],
    /// File offset of `data` within the bytes given to [`FooterTable::parse`].
    pub offset: usize,
}

/// A guest-physical area published by the firmware (`u32 base, u32 size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OvmfArea {
    /// Guest-physical base address.
    pub base: u32,
    /// Size in bytes.
    pub size: u32,
}

/// The SEV-ES AP reset address published by the firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResetVector {
    /// The raw address (e.g. 0x0080B004).
    pub addr: u32,
}

impl ResetVector {
    /// CS base for the APs: `addr & 0xFFFF0000`.
    pub const fn cs_base(self) -> u32 {
        self.addr & 0xFFFF_0000
    }

    /// IP for the APs: `addr & 0xFFFF`.
    pub const fn ip(self) -> u16 {
        (self.addr & 0xFFFF) as u16
    }
}

/// The OVMF footer GUID table (docs/protocol/ovmf.md#footer-table; qemu
/// hw/i386/pc_sysfw_ovmf.c).
///
/// Works on a whole image or on any suffix of it that contains the table
/// (offsets are then relative to the suffix).
#[derive(Clone)]
pub struct FooterTable<'a> {
    image: &'a [u8],
    entries: Vec<FooterEntry<'a>>,
}

impl fmt::Debug for FooterTable<'_> {
    // The image itself (megabytes) is left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FooterTable")
            .field("image_len", &self.image.len())
            .field("entries", &self.entries)
            .finish()
    }
}

impl<'a> FooterTable<'a> {
    /// Parses the table at the end of `image`. An image without the footer
    /// GUID at EOF−48 (or shorter than 48 bytes) has no table:
    /// `Ok` with no entries. Entries are returned in the order they are
    /// walked, backwards from the footer (the last entry in the file first).
    pub fn parse(image: &'a [u8]) -> Result<Self, OvmfError> {
        let mut entries = Vec::new();
        let len = image.len();
        let has_footer = len
            .checked_sub(FOOTER_GUID_FROM_END)
            .and_then(|off| guid_at(image, off))
            == Some(FOOTER_GUID);
        if !has_footer {
            return Ok(FooterTable { image, entries });
        }
        let len_off = len
            .checked_sub(TABLE_LEN_FROM_END)
            .ok_or(OvmfError::ImageTooShort { image_len: len })?;
        let table_len =
            le_u16_at(image, len_off).ok_or(OvmfError::ImageTooShort { image_len: len })?;
        if usize::from(table_len) < ENTRY_HEADER_LEN {
            return Err(OvmfError::TableLenTooSmall {
                offset: len_off,
                table_len,
            });
        }
        // The table (header included) ends at EOF−32; it must start inside
        // the image.
        if usize::from(table_len) > len - TABLE_END_FROM_END {
            return Err(OvmfError::TableLenBeyondImage {
                offset: len_off,
                table_len,
                image_len: len,
            });
        }
        let mut remaining = usize::from(table_len) - ENTRY_HEADER_LEN;
        let mut end = len_off; // one past the last byte of the next entry
        while remaining > 0 {
            if remaining < ENTRY_HEADER_LEN {
                return Err(OvmfError::TruncatedEntry { end, remaining });
            }
            // end >= remaining >= 18 here, because the table lies inside the
            // image; the `get`s below cannot fail, but are checked anyway.
            let trunc = OvmfError::TruncatedEntry { end, remaining };
            let guid_off = end.checked_sub(16).ok_or(trunc.clone())?;
            let length_off = end.checked_sub(ENTRY_HEADER_LEN).ok_or(trunc.clone())?;
            let guid = guid_at(image, guid_off).ok_or(trunc.clone())?;
            let length = le_u16_at(image, length_off).ok_or(trunc.clone())?;
            let length_us = usize::from(length);
            if length_us < ENTRY_HEADER_LEN {
                return Err(OvmfError::EntryTooShort {
                    offset: length_off,
                    guid,
                    length,
                });
            }
            if length_us > remaining {
                return Err(OvmfError::EntryBeyondTable {
                    offset: length_off,
                    guid,
                    length,
                    remaining,
                });
            }
            let start = end - length_us;
            let data = image.get(start..length_off).ok_or(trunc)?;
            entries.push(FooterEntry {
                guid,
                data,
                offset: start,
            });
            end = start;
            remaining -= length_us;
        }
        Ok(FooterTable { image, entries })
    }

    /// The entries, in walk order (last in the file first).
    pub fn entries(&self) -> &[FooterEntry<'a>] {
        &self.entries
    }

    /// Whether the image had no table (or an empty one).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first entry with this GUID in walk order (as QEMU's
    /// `pc_system_ovmf_table_find`).
    pub fn find(&self, guid: Guid) -> Option<&FooterEntry<'a>> {
        self.entries.iter().find(|e| e.guid == guid)
    }

    fn u32s<const N: usize>(
        &self,
        guid: Guid,
        what: &'static str,
    ) -> Result<Option<[u32; N]>, OvmfError> {
        let Some(e) = self.find(guid) else {
            return Ok(None);
        };
        let bad = || OvmfError::EntryData {
            guid,
            what,
            offset: e.offset,
            expected: 4 * N,
            actual: e.data.len(),
        };
        let mut out = [0u32; N];
        for (i, v) in out.iter_mut().enumerate() {
            *v = le_u32_at(e.data, 4 * i).ok_or_else(bad)?;
        }
        Ok(Some(out))
    }

    fn area(&self, guid: Guid, what: &'static str) -> Result<Option<OvmfArea>, OvmfError> {
        Ok(self
            .u32s::<2>(guid, what)?
            .map(|[base, size]| OvmfArea { base, size }))
    }

    /// The launch-secret area (4c2eb361…). `None` if there is no entry or
    /// its base is 0 (the "not supported" convention of plain OvmfX64
    /// builds); an entry shorter than 8 bytes is an error.
    pub fn sev_secret_block(&self) -> Result<Option<OvmfArea>, OvmfError> {
        Ok(self
            .area(SEV_SECRET_BLOCK_GUID, "SEV secret block")?
            .filter(|a| a.base != 0))
    }

    /// The kernel-hashes table area (7255371f…). `None` if there is no
    /// entry or its base is 0; an entry shorter than 8 bytes is an error.
    /// The size is not checked here (see [`FooterTable::check_hashes_area`]).
    pub fn sev_hashes_table_area(&self) -> Result<Option<OvmfArea>, OvmfError> {
        Ok(self
            .area(SEV_HASH_TABLE_RV_GUID, "SEV hashes table area")?
            .filter(|a| a.base != 0))
    }

    /// The area QEMU would write the kernel-hashes table to, or
    /// [`OvmfError::KernelHashesUnsupported`] if there is none or it is
    /// smaller than 176 bytes (qemu `sev_add_kernel_loader_hashes`).
    pub fn check_hashes_area(&self) -> Result<OvmfArea, OvmfError> {
        match self.area(SEV_HASH_TABLE_RV_GUID, "SEV hashes table area")? {
            None => Err(OvmfError::KernelHashesUnsupported(
                HashesAreaProblem::NoEntry,
            )),
            Some(a) if a.base == 0 => Err(OvmfError::KernelHashesUnsupported(
                HashesAreaProblem::BaseZero,
            )),
            Some(a) if (a.size as usize) < PADDED_HASH_TABLE_LEN => Err(
                OvmfError::KernelHashesUnsupported(HashesAreaProblem::TooSmall {
                    base: a.base,
                    size: a.size,
                }),
            ),
            Some(a) => Ok(a),
        }
    }

    /// The SEV-ES AP reset address: from the table's 00f771de… entry, or —
    /// for older images without a table — from an SEV-ES block placed
    /// directly at EOF−48 (qemu `sev_es_find_reset_vector`). `None` if
    /// neither exists or the address is 0.
    pub fn sev_es_reset_vector(&self) -> Result<Option<ResetVector>, OvmfError> {
        if let Some([addr]) = self.u32s::<1>(SEV_ES_RESET_BLOCK_GUID, "SEV-ES reset block")? {
            return Ok(Some(ResetVector { addr }).filter(|r| r.addr != 0));
        }
        self.legacy_reset_vector()
    }

    /// Old layout: `[u32 addr ...][u16 len][SEV-ES GUID]` ending at EOF−32,
    /// where `len` covers the block, the length and the GUID.
    fn legacy_reset_vector(&self) -> Result<Option<ResetVector>, OvmfError> {
        let image = self.image;
        let len = image.len();
        let Some(guid_off) = len.checked_sub(FOOTER_GUID_FROM_END) else {
            return Ok(None);
        };
        if guid_at(image, guid_off) != Some(SEV_ES_RESET_BLOCK_GUID) {
            return Ok(None);
        }
        let len_off = len
            .checked_sub(TABLE_LEN_FROM_END)
            .ok_or(OvmfError::ImageTooShort { image_len: len })?;
        let length =
            le_u16_at(image, len_off).ok_or(OvmfError::ImageTooShort { image_len: len })?;
        let bad = OvmfError::LegacyResetBlock {
            offset: len_off,
            length,
            image_len: len,
        };
        // The block starts `length` bytes before EOF−32 and needs 4 bytes
        // before the length field.
        let start = (len - TABLE_END_FROM_END)
            .checked_sub(usize::from(length))
            .ok_or(bad.clone())?;
        if usize::from(length) < ENTRY_HEADER_LEN + 4 {
            return Err(bad);
        }
        let addr = le_u32_at(image, start).ok_or(bad)?;
        Ok(Some(ResetVector { addr }).filter(|r| r.addr != 0))
    }
}

/// The three digests of the SEV kernel-hashes table (docs/protocol/ovmf.md#kernel-hashes;
/// qemu `SevHashTable`).
///
/// Build it from the raw inputs with [`KernelHashes::new`], or from
/// digests computed elsewhere (e.g. streamed from large files) with
/// [`KernelHashes::from_digests`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KernelHashes {
    /// SHA-256 of the command line followed by one NUL byte.
    pub cmdline: [u8; 32],
    /// SHA-256 of the initrd file (of the empty string if none).
    pub initrd: [u8; 32],
    /// SHA-256 of the kernel file (bzImage as-is).
    pub kernel: [u8; 32],
}

impl fmt::Debug for KernelHashes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Hex<'a>(&'a [u8]);
        impl fmt::Debug for Hex<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
        f.debug_struct("KernelHashes")
            .field("cmdline", &Hex(&self.cmdline))
            .field("initrd", &Hex(&self.initrd))
            .field("kernel", &Hex(&self.kernel))
            .finish()
    }
}

impl KernelHashes {
    /// Hashes the inputs as QEMU does: the command line (exactly as given,
    /// no trimming — docs/protocol/choices.md#u7) followed by one NUL byte, `None`
    /// meaning no `-append` (the single byte 0x00 is hashed, as for an empty
    /// command line); the initrd file (`None` = no initrd, hashed as empty);
    /// the kernel file as-is.
    pub fn new(cmdline: Option<&[u8]>, initrd: Option<&[u8]>, kernel: &[u8]) -> Self {
        KernelHashes {
            cmdline: Self::cmdline_digest(cmdline),
            initrd: initrd.map_or(EMPTY_SHA256, |i| Sha256::digest(i).into()),
            kernel: Sha256::digest(kernel).into(),
        }
    }

    /// From precomputed SHA-256 digests; `initrd: None` means no initrd.
    /// Use [`KernelHashes::cmdline_digest`] for the command line (it must
    /// include the terminating NUL).
    pub const fn from_digests(
        cmdline: [u8; 32],
        initrd: Option<[u8; 32]>,
        kernel: [u8; 32],
    ) -> Self {
        KernelHashes {
            cmdline,
            initrd: match initrd {
                Some(d) => d,
                None => EMPTY_SHA256,
            },
            kernel,
        }
    }

    /// SHA-256 of `cmdline ‖ 0x00` (`None` hashes just the NUL).
    pub fn cmdline_digest(cmdline: Option<&[u8]>) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(cmdline.unwrap_or_default());
        h.update([0u8]);
        h.finalize().into()
    }

    /// The 176-byte padded table: header GUID, u16 168, then the cmdline,
    /// initrd and kernel entries (GUID, u16 50, digest), then 8 zero bytes.
    pub fn to_table(&self) -> [u8; PADDED_HASH_TABLE_LEN] {
        let mut t = [0u8; PADDED_HASH_TABLE_LEN];
        let mut w = Writer {
            buf: &mut t,
            pos: 0,
        };
        w.put(SEV_HASH_TABLE_HEADER_GUID.as_bytes());
        w.put(&(HASH_TABLE_LEN as u16).to_le_bytes());
        for (guid, digest) in [
            (SEV_CMDLINE_ENTRY_GUID, &self.cmdline),
            (SEV_INITRD_ENTRY_GUID, &self.initrd),
            (SEV_KERNEL_ENTRY_GUID, &self.kernel),
        ] {
            w.put(guid.as_bytes());
            w.put(&(HASH_ENTRY_LEN as u16).to_le_bytes());
            w.put(digest);
        }
        t
    }

    /// Decodes a table starting at offset 0 of `bytes` (which may extend
    /// past it, e.g. the padding or the rest of the hashes area).
    ///
    /// Checks the header GUID, that the table length fits in `bytes`, that
    /// every entry length is at least 18 and inside the table, that the
    /// three known entries carry exactly a 32-byte digest and appear exactly
    /// once. Entries with other GUIDs are skipped (as OVMF does); entries
    /// may come in any order.
    pub fn parse_table(bytes: &[u8]) -> Result<Self, OvmfError> {
        let err = |offset: usize, problem: String| OvmfError::HashTable { offset, problem };
        match guid_at(bytes, 0) {
            Some(g) if g == SEV_HASH_TABLE_HEADER_GUID => {}
            Some(g) => {
                return Err(err(
                    0,
                    format!("header GUID is {g}, expected {SEV_HASH_TABLE_HEADER_GUID}"),
                ))
            }
            None => {
                return Err(err(
                    0,
                    format!("{} byte(s) are too few for the table header", bytes.len()),
                ))
            }
        }
        let table_len = le_u16_at(bytes, 16)
            .map(usize::from)
            .ok_or_else(|| err(16, "truncated before the table length".into()))?;
        if table_len < ENTRY_HEADER_LEN {
            return Err(err(
                16,
                format!("table length {table_len} is less than {ENTRY_HEADER_LEN}"),
            ));
        }
        let table = bytes.get(..table_len).ok_or_else(|| {
            err(
                16,
                format!(
                    "table length {table_len} exceeds the {} byte(s) available",
                    bytes.len()
                ),
            )
        })?;
        let mut found: [Option<[u8; 32]>; 3] = [None; 3];
        let known = [
            (SEV_CMDLINE_ENTRY_GUID, "cmdline"),
            (SEV_INITRD_ENTRY_GUID, "initrd"),
            (SEV_KERNEL_ENTRY_GUID, "kernel"),
        ];
        let mut pos = ENTRY_HEADER_LEN;
        while pos < table_len {
            let (Some(guid), Some(len)) = (guid_at(table, pos), le_u16_at(table, pos + 16)) else {
                return Err(err(
                    pos,
                    format!(
                        "{} byte(s) left, too few for an entry header",
                        table_len - pos
                    ),
                ));
            };
            let len = usize::from(len);
            if len < ENTRY_HEADER_LEN {
                return Err(err(
                    pos,
                    format!("entry {guid} has length {len}, less than {ENTRY_HEADER_LEN}"),
                ));
            }
            let entry = table.get(pos..pos + len).ok_or_else(|| {
                err(
                    pos,
                    format!(
                        "entry {guid} has length {len}, but only {} byte(s) of the table remain",
                        table_len - pos
                    ),
                )
            })?;
            if let Some(((_, name), slot)) = known
                .iter()
                .zip(found.iter_mut())
                .find(|((g, _), _)| *g == guid)
            {
                let digest: [u8; 32] = entry
                    .get(ENTRY_HEADER_LEN..)
                    .and_then(|d| d.try_into().ok())
                    .ok_or_else(|| {
                        err(
                            pos,
                            format!("{name} entry has length {len}, expected {HASH_ENTRY_LEN}"),
                        )
                    })?;
                if slot.is_some() {
                    return Err(err(pos, format!("duplicate {name} entry")));
                }
                *slot = Some(digest);
            }
            pos += len;
        }
        match found {
            [Some(cmdline), Some(initrd), Some(kernel)] => Ok(KernelHashes {
                cmdline,
                initrd,
                kernel,
            }),
            _ => {
                let missing: Vec<&str> = known
                    .iter()
                    .zip(found.iter())
                    .filter(|(_, f)| f.is_none())
                    .map(|((_, n), _)| *n)
                    .collect();
                Err(err(0, format!("missing entries: {}", missing.join(", "))))
            }
        }
    }

    /// Finds the first table header GUID in `region` (e.g. the hashes area
    /// of guest memory, or an image) and decodes the table there. `Ok(None)`
    /// if the GUID does not occur; offsets in errors are relative to the
    /// table start. Returns the table's offset in `region`.
    pub fn locate(region: &[u8]) -> Result<Option<(usize, Self)>, OvmfError> {
        let needle = SEV_HASH_TABLE_HEADER_GUID.to_bytes();
        let Some(pos) = region.windows(needle.len()).position(|w| w == needle) else {
            return Ok(None);
        };
        let table = region.get(pos..).unwrap_or_default();
        Ok(Some((pos, Self::parse_table(table)?)))
    }
}

/// Sequential writer into a fixed buffer; used only with layouts whose
/// total size equals the buffer (checked by tests), and it never panics:
/// bytes that would not fit are dropped.
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if let Some(slot) = self.buf.get_mut(self.pos) {
                *slot = b;
            }
            self.pos += 1;
        }
    }
}

/// A running launch digest GCTX.LD (docs/protocol/measurement.md#launch-digest): SHA-256 over the
/// firmware image, then the padded hashes table (if any), then the VMSA
/// pages (SEV-ES) — in that order, nothing else.
///
/// Feed the firmware in any number of chunks with [`LaunchDigest::update`]
/// (or through `std::io::Write`, e.g. `std::io::copy(&mut file, &mut ld)`).
/// Check the firmware's hashes area yourself (parse its last pages with
/// [`FooterTable::parse`] and call [`FooterTable::check_hashes_area`]) before
/// adding a table; [`sev_launch_digest`] does this for whole images.
#[derive(Debug, Clone, Default)]
pub struct LaunchDigest {
    sha: Sha256,
}

impl LaunchDigest {
    /// An empty digest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends measured bytes (firmware image chunks, or any other region
    /// submitted with LAUNCH_UPDATE_DATA).
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
    }

    /// Appends the 176-byte padded kernel-hashes table.
    pub fn add_hashes_table(&mut self, hashes: &KernelHashes) {
        self.sha.update(hashes.to_table());
    }

    /// Appends one 4096-byte VMSA page (SEV-ES; BSP first, then each AP).
    pub fn add_vmsa(&mut self, page: &[u8; VMSA_PAGE_LEN]) {
        self.sha.update(page);
    }

    /// The 32-byte launch digest.
    pub fn finalize(self) -> [u8; 32] {
        self.sha.finalize().into()
    }
}

impl std::io::Write for LaunchDigest {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The 'sev' mode launch digest (docs/protocol/ovmf.md#sev-digest; sev-snp-measure
/// `sev_calc_launch_digest`): SHA-256 of the whole firmware image followed
/// by the padded hashes table when `hashes` is given.
///
/// With `hashes`, the image must publish a usable hashes area (base ≠ 0,
/// size ≥ 176), else [`OvmfError::KernelHashesUnsupported`] (sev-snp-measure
/// checks only base ≠ 0; QEMU also refuses a smaller area, so such a launch
/// could never happen).
pub fn sev_launch_digest(
    firmware: &[u8],
    hashes: Option<&KernelHashes>,
) -> Result<[u8; 32], OvmfError> {
    seves_launch_digest(firmware, hashes, &[])
}

/// The 'seves' mode launch digest (docs/protocol/ovmf.md#seves-digest): as
/// [`sev_launch_digest`], then each caller-built VMSA page in vCPU order
/// (each must be exactly 4096 bytes). With no VMSAs this is the 'sev'
/// digest.
pub fn seves_launch_digest(
    firmware: &[u8],
    hashes: Option<&KernelHashes>,
    vmsas: &[&[u8]],
) -> Result<[u8; 32], OvmfError> {
    if hashes.is_some() {
        FooterTable::parse(firmware)?.check_hashes_area()?;
    }
    let pages = vmsas
        .iter()
        .enumerate()
        .map(|(index, v)| {
            <&[u8; VMSA_PAGE_LEN]>::try_from(*v).map_err(|_| OvmfError::VmsaLength {
                index,
                actual: v.len(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut ld = LaunchDigest::new();
    ld.update(firmware);
    if let Some(h) = hashes {
        ld.add_hashes_table(h);
    }
    for p in pages {
        ld.add_vmsa(p);
    }
    Ok(ld.finalize())
}

#[cfg(test)]
mod testutil {
    /// Reads a fixture from `shared/sev-testdata`. Missing: prints
    /// `SKIPPED: <test>: <what>` and returns `None`, or panics when
    /// `SEVM_REQUIRE_ALL=1`.
    pub(crate) fn testdata(test: &str, rel: &str) -> Option<Vec<u8>> {
        sevm_testutil::fixture(test, rel)
    }

    pub(crate) fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        hex::decode(s).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{testdata, unhex};
    use super::*;

    const AMDSEV: &str = "ovmf/ovmf_AmdSev_suffix.bin";
    const OVMFX64: &str = "ovmf/ovmf_OvmfX64_suffix.bin";
    const SEVCTL: &str = "ovmf/sevctl_OVMF.amdsev_trimmed.bin";

    fn sha256(b: &[u8]) -> [u8; 32] {
        Sha256::digest(b).into()
    }

    /// Builds an image: `prefix_len` filler bytes, the entries (in file
    /// order) each as data ‖ u16 len ‖ GUID, table_len, footer GUID, 32
    /// bytes of "reset vector".
    fn image_with_table(prefix_len: usize, entries: &[(Guid, Vec<u8>)]) -> Vec<u8> {
        let mut v = vec![0xAA; prefix_len];
        let mut table_len = ENTRY_HEADER_LEN;
        for (g, d) in entries {
            v.extend_from_slice(d);
            v.extend_from_slice(&((d.len() + 18) as u16).to_le_bytes());
            v.extend_from_slice(g.as_bytes());
            table_len += d.len() + 18;
        }
        v.extend_from_slice(&(table_len as u16).to_le_bytes());
        v.extend_from_slice(FOOTER_GUID.as_bytes());
        v.extend_from_slice(&[0x90; 32]);
        v
    }

    fn area(base: u32, size: u32) -> Vec<u8> {
        [base.to_le_bytes(), size.to_le_bytes()].concat()
    }

    /// docs/protocol/ovmf.md#footer-table worked example: every entry of the AmdSev fixture.
    #[test]
    fn amdsev_footer_table_matches_worked_example() {
        let Some(img) = testdata("amdsev_footer_table_matches_worked_example", AMDSEV) else {
            return;
        };
        let t = FooterTable::parse(&img).unwrap();
        let want: [(Guid, usize, &str); 5] = [
            (SEV_ES_RESET_BLOCK_GUID, 0xfb8, "04b08000"),
            (SEV_SECRET_BLOCK_GUID, 0xf9e, "00008100 000c0000"),
            (SEV_HASH_TABLE_RV_GUID, 0xf84, "000c8100 00040000"),
            (SEV_METADATA_GUID, 0xf6e, "54050000"),
            (TDX_METADATA_GUID, 0xf58, "d0090000"),
        ];
        assert_eq!(t.entries().len(), want.len());
        for (e, (guid, offset, data)) in t.entries().iter().zip(want) {
            assert_eq!(e.guid, guid);
            assert_eq!(e.offset, offset, "{guid}");
            assert_eq!(e.data, &unhex(data)[..], "{guid}");
        }
        assert_eq!(
            t.sev_secret_block().unwrap(),
            Some(OvmfArea {
                base: 0x0081_0000,
                size: 0xC00
            })
        );
        assert_eq!(
            t.sev_hashes_table_area().unwrap(),
            Some(OvmfArea {
                base: 0x0081_0C00,
                size: 0x400
            })
        );
        assert_eq!(t.check_hashes_area().unwrap().base, 0x0081_0C00);
        let rv = t.sev_es_reset_vector().unwrap().unwrap();
        assert_eq!(rv.addr, 0x0080_B004);
        assert_eq!(rv.cs_base(), 0x0080_0000);
        assert_eq!(rv.ip(), 0xB004);
        assert!(t.find(SNP_BOOT_BLOCK_GUID).is_none());
    }

    /// docs/protocol/ovmf.md#footer-table: the OvmfX64 entries exist but are zero
    /// ("not supported").
    #[test]
    fn ovmfx64_areas_are_unsupported() {
        let Some(img) = testdata("ovmfx64_areas_are_unsupported", OVMFX64) else {
            return;
        };
        let t = FooterTable::parse(&img).unwrap();
        assert_eq!(t.entries().len(), 5);
        assert!(t.find(SEV_SECRET_BLOCK_GUID).is_some());
        assert_eq!(t.sev_secret_block().unwrap(), None);
        assert_eq!(t.sev_hashes_table_area().unwrap(), None);
        assert_eq!(
            t.check_hashes_area(),
            Err(OvmfError::KernelHashesUnsupported(
                HashesAreaProblem::BaseZero
            ))
        );
        assert_eq!(t.sev_es_reset_vector().unwrap().unwrap().addr, 0x0080_B004);
    }

    #[test]
    fn sevctl_fixture_has_hashes_area() {
        let Some(img) = testdata("sevctl_fixture_has_hashes_area", SEVCTL) else {
            return;
        };
        let t = FooterTable::parse(&img).unwrap();
        assert_eq!(t.entries().len(), 4);
        assert_eq!(
            t.check_hashes_area().unwrap(),
            OvmfArea {
                base: 0x0080_CC00,
                size: 0x400
            }
        );
        assert_eq!(
            t.sev_secret_block().unwrap(),
            Some(OvmfArea {
                base: 0x0080_C000,
                size: 0xC00
            })
        );
    }

    /// docs/protocol/test-vectors.md#launch-digests intermediates: padded table for empty kernel,
    /// empty initrd, no cmdline; and the cmdline digest with an append.
    #[test]
    fn padded_hashes_table_known_answers() {
        let t = KernelHashes::new(None, Some(b""), b"").to_table();
        let want = unhex(
            "06d63894224fc94cb479a793d411fd21a800
             d82dd09720bd944caa78e7714d36ab2a3200
             6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d
             31f7ba442f3ad74b9af141e29169781d3200
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
             3794e74dd2ab7f42b835d5b172d2045b3200
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
             0000000000000000",
        );
        assert_eq!(t.len(), PADDED_HASH_TABLE_LEN);
        assert_eq!(&t[..], &want[..]);
        // No initrd hashes like an empty one; no cmdline like an empty one.
        assert_eq!(KernelHashes::new(None, None, b"").to_table(), t);
        assert_eq!(KernelHashes::new(Some(b""), None, b"").to_table(), t);

        let with = KernelHashes::new(Some(b"console=ttyS0 loglevel=7"), Some(b""), b"");
        assert_eq!(
            with.cmdline.to_vec(),
            unhex("321c8eec6a77bad179511397f913a083067ad8cb737bb260aacbfe8df70fc50a")
        );
        let wt = with.to_table();
        assert_eq!(&wt[0x24..0x44], &with.cmdline);
        assert_eq!(&wt[..0x24], &want[..0x24]);
        assert_eq!(&wt[0x44..], &want[0x44..]);
    }

    /// docs/protocol/ovmf.md#kernel-hashes: field offsets of the table.
    #[test]
    fn hashes_table_layout() {
        let h = KernelHashes {
            cmdline: [1; 32],
            initrd: [2; 32],
            kernel: [3; 32],
        };
        let t = h.to_table();
        assert_eq!(&t[0x00..0x10], SEV_HASH_TABLE_HEADER_GUID.as_bytes());
        assert_eq!(&t[0x10..0x12], &[0xA8, 0x00]);
        assert_eq!(&t[0x12..0x22], SEV_CMDLINE_ENTRY_GUID.as_bytes());
        assert_eq!(&t[0x22..0x24], &[0x32, 0x00]);
        assert_eq!(&t[0x24..0x44], &[1; 32]);
        assert_eq!(&t[0x44..0x54], SEV_INITRD_ENTRY_GUID.as_bytes());
        assert_eq!(&t[0x54..0x56], &[0x32, 0x00]);
        assert_eq!(&t[0x56..0x76], &[2; 32]);
        assert_eq!(&t[0x76..0x86], SEV_KERNEL_ENTRY_GUID.as_bytes());
        assert_eq!(&t[0x86..0x88], &[0x32, 0x00]);
        assert_eq!(&t[0x88..0xA8], &[3; 32]);
        assert_eq!(&t[0xA8..0xB0], &[0; 8]);
        assert_eq!(KernelHashes::parse_table(&t).unwrap(), h);
        assert_eq!(
            KernelHashes::from_digests([1; 32], Some([2; 32]), [3; 32]),
            h
        );
        assert_eq!(
            KernelHashes::from_digests([1; 32], None, [3; 32]).initrd,
            sha256(b"")
        );
        assert_eq!(KernelHashes::cmdline_digest(Some(b"ab")), sha256(b"ab\0"));
        assert!(format!("{h:?}").contains("0101"));
    }

    /// docs/protocol/test-vectors.md#launch-digests, 'sev' rows (sev-snp-measure
    /// tests/test_guest.py, virtee/sev tests/measurement.rs).
    #[test]
    fn sev_launch_digests_11_6() {
        let (Some(amd), Some(x64)) = (
            testdata("sev_launch_digests_11_6", AMDSEV),
            testdata("sev_launch_digests_11_6", OVMFX64),
        ) else {
            return;
        };
        let h1 = KernelHashes::new(Some(b"console=ttyS0 loglevel=7"), Some(b""), b"");
        assert_eq!(
            sev_launch_digest(&amd, Some(&h1)).unwrap().to_vec(),
            unhex("82a3ee5d537c3620628270c292ae30cb40c3c878666a7890ee7ef2a08fb535ff")
        );
        let h2 = KernelHashes::new(None, None, b"");
        assert_eq!(
            sev_launch_digest(&amd, Some(&h2)).unwrap().to_vec(),
            unhex("77f613d7bbcdf12a73782ea9e88b0172aeda50d1a54201cb903594ff52846898")
        );
        assert_eq!(
            sev_launch_digest(&x64, None).unwrap().to_vec(),
            unhex("b4c021e085fb83ceffe6571a3d357b4a98773c83c474e47f76c876708fe316da")
        );
        // OvmfX64 + any kernel: the sev-snp-measure error.
        let e = sev_launch_digest(&x64, Some(&h2)).unwrap_err();
        assert_eq!(
            e,
            OvmfError::KernelHashesUnsupported(HashesAreaProblem::BaseZero)
        );
        assert!(e.to_string().starts_with(
            "Kernel specified but OVMF doesn't support kernel/initrd/cmdline measurement"
        ));
        assert!(seves_launch_digest(&x64, Some(&h2), &[]).is_err());
    }

    /// docs/protocol/test-vectors.md#sevctl-measurement b and c (virtee/sevctl
    /// tests/measurementbuild.rs): launch digests, and the padded table of case c.
    #[test]
    fn sevctl_launch_digests_11_4() {
        let Some(fw) = testdata("sevctl_launch_digests_11_4", SEVCTL) else {
            return;
        };
        assert_eq!(
            sev_launch_digest(&fw, None).unwrap().to_vec(),
            unhex("2f6fc6065f4abc131eb4fb2b5090a542636eae84a94c0db0fdd5f405cb372ff5")
        );
        let h = KernelHashes::new(
            Some(b"foo bar baz fake kernel=cmdline"),
            Some(b"fake initrd\n"),
            b"fake vmlinuz\n",
        );
        let want_table = unhex(
            "06d63894224fc94cb479a793d411fd21a800
             d82dd09720bd944caa78e7714d36ab2a3200 3e8a0b8c83c8eb5a34c6d0b9db3f36ae619b384db601c643af6456106a43dffd
             31f7ba442f3ad74b9af141e29169781d3200 76fa1a19324945ce9b1ee17f211ca5b55cbb74d0368eecce53932a1fddc8e8cb
             3794e74dd2ab7f42b835d5b172d2045b3200 af609b31eca2942fc46ed7209c7704771cfc2c91750ff4cb899be39b371b4e48
             0000000000000000",
        );
        assert_eq!(&h.to_table()[..], &want_table[..]);
        assert_eq!(
            sev_launch_digest(&fw, Some(&h)).unwrap().to_vec(),
            unhex("4b47fec6f851487c33714c8a00a832a1b705ad0a7cac4a647388eccfa9f0c570")
        );

        // The streaming form gives the same digest, fed in odd chunks.
        let mut ld = LaunchDigest::new();
        for chunk in fw.chunks(1000) {
            ld.update(chunk);
        }
        ld.add_hashes_table(&h);
        assert_eq!(
            ld.finalize().to_vec(),
            unhex("4b47fec6f851487c33714c8a00a832a1b705ad0a7cac4a647388eccfa9f0c570")
        );
        let mut ld = LaunchDigest::new();
        std::io::copy(&mut &fw[..], &mut ld).unwrap();
        assert_eq!(ld.finalize(), sha256(&fw));
    }

    /// docs/protocol/test-vectors.md#sevctl-measurement d: SEV-ES, sevctl firmware + vmsa0 + 3 ×
    /// vmsa1.
    #[test]
    fn seves_launch_digest_11_4_d() {
        let (Some(fw), Some(v0), Some(v1)) = (
            testdata("seves_launch_digest_11_4_d", SEVCTL),
            testdata("seves_launch_digest_11_4_d", "vmsa/vmsa0.bin"),
            testdata("seves_launch_digest_11_4_d", "vmsa/vmsa1.bin"),
        ) else {
            return;
        };
        let want = unhex("847b5ab6db136ea67dc5a95478ebe7e5ebbe93e9e74bdb1284165f9007a4e367");
        assert_eq!(
            seves_launch_digest(&fw, None, &[&v0, &v1, &v1, &v1])
                .unwrap()
                .to_vec(),
            want
        );
        let mut ld = LaunchDigest::new();
        ld.update(&fw);
        for v in [&v0, &v1, &v1, &v1] {
            ld.add_vmsa(v[..].try_into().unwrap());
        }
        assert_eq!(ld.finalize().to_vec(), want);
        assert_eq!(
            seves_launch_digest(&fw, None, &[&v0, &v1[..4095]]),
            Err(OvmfError::VmsaLength {
                index: 1,
                actual: 4095
            })
        );
    }

    #[test]
    fn no_table_is_empty() {
        for img in [vec![], vec![0u8; 47], vec![0u8; 48], vec![0xFFu8; 4096]] {
            let t = FooterTable::parse(&img).unwrap();
            assert!(t.is_empty());
            assert_eq!(t.sev_secret_block().unwrap(), None);
            assert_eq!(t.sev_es_reset_vector().unwrap(), None);
            assert_eq!(
                t.check_hashes_area(),
                Err(OvmfError::KernelHashesUnsupported(
                    HashesAreaProblem::NoEntry
                ))
            );
        }
        // A kernel with a table-less firmware is refused.
        let h = KernelHashes::new(None, None, b"k");
        assert_eq!(
            sev_launch_digest(&[0u8; 4096], Some(&h)),
            Err(OvmfError::KernelHashesUnsupported(
                HashesAreaProblem::NoEntry
            ))
        );
        // An empty table (table_len 18) is fine too.
        let img = image_with_table(10, &[]);
        assert!(FooterTable::parse(&img).unwrap().is_empty());
    }

    #[test]
    fn synthetic_table_round_trips() {
        let img = image_with_table(
            100,
            &[
                (SEV_HASH_TABLE_RV_GUID, area(0x1000, 0xB0)),
                (SEV_SECRET_BLOCK_GUID, area(0x2000, 0x100)),
                (
                    SEV_ES_RESET_BLOCK_GUID,
                    0x0012_3456u32.to_le_bytes().to_vec(),
                ),
            ],
        );
        let t = FooterTable::parse(&img).unwrap();
        assert_eq!(t.entries().len(), 3);
        assert_eq!(t.entries()[0].guid, SEV_ES_RESET_BLOCK_GUID);
        assert_eq!(t.entries()[2].offset, 100);
        assert_eq!(
            t.check_hashes_area().unwrap(),
            OvmfArea {
                base: 0x1000,
                size: 0xB0
            }
        );
        assert_eq!(t.sev_es_reset_vector().unwrap().unwrap().ip(), 0x3456);
        let dbg = format!("{t:?}");
        assert!(dbg.contains(&format!("image_len: {}", img.len())), "{dbg}");
        assert!(!dbg.contains("170, 170, 170"), "{dbg}");

        // Size 175 is too small for the padded table.
        let small = image_with_table(0, &[(SEV_HASH_TABLE_RV_GUID, area(0x1000, 175))]);
        let e = FooterTable::parse(&small)
            .unwrap()
            .check_hashes_area()
            .unwrap_err();
        assert_eq!(
            e,
            OvmfError::KernelHashesUnsupported(HashesAreaProblem::TooSmall {
                base: 0x1000,
                size: 175
            })
        );
        assert!(e.to_string().contains("base=0x1000 size=0xaf"));
        assert!(sev_launch_digest(&small, Some(&KernelHashes::new(None, None, b""))).is_err());
    }

    #[test]
    fn malformed_tables_are_errors_naming_the_offset() {
        let good = image_with_table(
            64,
            &[
                (SEV_SECRET_BLOCK_GUID, area(0x2000, 0x100)),
                (SEV_ES_RESET_BLOCK_GUID, vec![4, 3, 2, 1]),
            ],
        );
        let n = good.len();
        let len_off = n - 50;
        assert!(FooterTable::parse(&good).is_ok());

        // table_len larger than the file.
        let mut bad = good.clone();
        bad[len_off..len_off + 2].copy_from_slice(&u16::MAX.to_le_bytes());
        let e = FooterTable::parse(&bad).unwrap_err();
        assert_eq!(
            e,
            OvmfError::TableLenBeyondImage {
                offset: len_off,
                table_len: u16::MAX,
                image_len: n
            }
        );
        assert!(e.to_string().contains(&format!("{len_off:#x}")));

        // Truncated image: the table no longer fits.
        let cut = &good[64 + 10..];
        assert!(matches!(
            FooterTable::parse(cut),
            Err(OvmfError::TableLenBeyondImage { .. })
        ));

        // table_len below 18.
        let mut bad = good.clone();
        bad[len_off..len_off + 2].copy_from_slice(&17u16.to_le_bytes());
        assert_eq!(
            FooterTable::parse(&bad).unwrap_err(),
            OvmfError::TableLenTooSmall {
                offset: len_off,
                table_len: 17
            }
        );

        // An entry length below 18 (the last entry's length field).
        let entry_len_off = len_off - 18;
        let mut bad = good.clone();
        bad[entry_len_off..entry_len_off + 2].copy_from_slice(&17u16.to_le_bytes());
        let e = FooterTable::parse(&bad).unwrap_err();
        assert_eq!(
            e,
            OvmfError::EntryTooShort {
                offset: entry_len_off,
                guid: SEV_ES_RESET_BLOCK_GUID,
                length: 17
            }
        );
        assert!(e
            .to_string()
            .contains("00f771de-1a7e-4fcb-890e-68c77e2fb44e"));

        // An entry length beyond the table.
        let mut bad = good.clone();
        bad[entry_len_off..entry_len_off + 2].copy_from_slice(&200u16.to_le_bytes());
        assert_eq!(
            FooterTable::parse(&bad).unwrap_err(),
            OvmfError::EntryBeyondTable {
                offset: entry_len_off,
                guid: SEV_ES_RESET_BLOCK_GUID,
                length: 200,
                remaining: 22 + 26
            }
        );

        // table_len leaves a few bytes that cannot hold an entry.
        let mut bad = good.clone();
        let tl = u16::from_le_bytes([bad[len_off], bad[len_off + 1]]);
        bad[len_off..len_off + 2].copy_from_slice(&(tl + 5).to_le_bytes());
        assert!(matches!(
            FooterTable::parse(&bad).unwrap_err(),
            OvmfError::TruncatedEntry { remaining: 5, .. }
        ));

        // Footer GUID present but no room for table_len.
        let mut tiny = vec![0u8; 48];
        tiny[..16].copy_from_slice(FOOTER_GUID.as_bytes());
        assert_eq!(
            FooterTable::parse(&tiny).unwrap_err(),
            OvmfError::ImageTooShort { image_len: 48 }
        );

        // A known entry with too little data.
        let short = image_with_table(0, &[(SEV_SECRET_BLOCK_GUID, vec![1, 2, 3, 4])]);
        let t = FooterTable::parse(&short).unwrap();
        assert_eq!(
            t.sev_secret_block().unwrap_err(),
            OvmfError::EntryData {
                guid: SEV_SECRET_BLOCK_GUID,
                what: "SEV secret block",
                offset: 0,
                expected: 8,
                actual: 4
            }
        );
        let empty_rv = image_with_table(0, &[(SEV_ES_RESET_BLOCK_GUID, vec![])]);
        assert!(FooterTable::parse(&empty_rv)
            .unwrap()
            .sev_es_reset_vector()
            .is_err());
    }

    /// Every suffix of the real table and many corrupted copies parse to a
    /// value or an error — never a panic.
    #[test]
    fn parser_never_panics_on_truncation_or_corruption() {
        use rand_chacha::rand_core::{RngCore, SeedableRng};
        let Some(img) = testdata("parser_never_panics_on_truncation_or_corruption", AMDSEV) else {
            return;
        };
        let table_total = 0x88 + 32;
        for start in 0..=img.len() {
            let suffix = &img[start..];
            let r = FooterTable::parse(suffix);
            if suffix.len() >= table_total {
                assert_eq!(r.unwrap().entries().len(), 5, "suffix {start}");
            } else if suffix.len() >= 50 {
                assert!(r.is_err(), "suffix {start}");
            } else {
                let _ = r;
            }
            // Cutting bytes off the end moves the footer: no table.
            let prefix = FooterTable::parse(&img[..img.len() - start]).unwrap();
            assert_eq!(prefix.is_empty(), start != 0, "prefix cut {start}");
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..5000 {
            let mut m = img.clone();
            for _ in 0..(rng.next_u32() % 4 + 1) {
                // Corrupt inside the table region (the last 0xB0 bytes).
                let i = img.len() - 1 - (rng.next_u32() as usize % 0xB0);
                m[i] = rng.next_u32() as u8;
            }
            if let Ok(t) = FooterTable::parse(&m) {
                let _ = t.sev_secret_block();
                let _ = t.sev_hashes_table_area();
                let _ = t.check_hashes_area();
                let _ = t.sev_es_reset_vector();
                for e in t.entries() {
                    assert_eq!(&m[e.offset..e.offset + e.data.len()], e.data);
                }
            }
            let _ = KernelHashes::locate(&m);
        }
    }

    /// Older images: only an SEV-ES block directly at EOF−48
    /// (qemu `sev_es_find_reset_vector` fallback).
    #[test]
    fn legacy_sev_es_reset_block() {
        let mut img = vec![0xAAu8; 64];
        img.extend_from_slice(&0x0080_B004u32.to_le_bytes());
        img.extend_from_slice(&22u16.to_le_bytes());
        img.extend_from_slice(SEV_ES_RESET_BLOCK_GUID.as_bytes());
        img.extend_from_slice(&[0x90; 32]);
        let t = FooterTable::parse(&img).unwrap();
        assert!(t.is_empty());
        assert_eq!(t.sev_es_reset_vector().unwrap().unwrap().addr, 0x0080_B004);

        // Length pointing before the image start, or too small for the u32.
        let len_off = img.len() - 50;
        for bad_len in [u16::MAX, 21] {
            let mut bad = img.clone();
            bad[len_off..len_off + 2].copy_from_slice(&bad_len.to_le_bytes());
            assert_eq!(
                FooterTable::parse(&bad).unwrap().sev_es_reset_vector(),
                Err(OvmfError::LegacyResetBlock {
                    offset: len_off,
                    length: bad_len,
                    image_len: img.len()
                })
            );
        }
        // A zero address means none.
        let mut zero = img.clone();
        zero[64..68].fill(0);
        assert_eq!(
            FooterTable::parse(&zero).unwrap().sev_es_reset_vector(),
            Ok(None)
        );
    }

    #[test]
    fn hashes_table_parser_checks_guids_and_lengths() {
        let h = KernelHashes::new(Some(b"x"), Some(b"i"), b"k");
        let t = h.to_table();
        assert_eq!(KernelHashes::parse_table(&t).unwrap(), h);
        assert_eq!(KernelHashes::parse_table(&t[..HASH_TABLE_LEN]).unwrap(), h);

        let problem = |bytes: &[u8]| match KernelHashes::parse_table(bytes) {
            Err(OvmfError::HashTable { offset, problem }) => (offset, problem),
            other => panic!("expected HashTable error, got {other:?}"),
        };
        // Truncated anywhere below the table length.
        for n in 0..HASH_TABLE_LEN {
            problem(&t[..n]);
        }
        // Wrong header GUID.
        let mut bad = t;
        bad[0] ^= 1;
        assert!(problem(&bad).1.contains("header GUID"));
        // Table length < 18.
        let mut bad = t;
        bad[0x10] = 17;
        assert!(problem(&bad).1.contains("less than 18"));
        // Entry length < 18.
        let mut bad = t;
        bad[0x22] = 2;
        let (off, p) = problem(&bad);
        assert_eq!(off, 0x12);
        assert!(p.contains("less than 18"), "{p}");
        // Entry length beyond the table.
        let mut bad = t;
        bad[0x86] = 0x40;
        let (off, p) = problem(&bad);
        assert_eq!(off, 0x76);
        assert!(p.contains("remain"), "{p}");
        // A known entry with the wrong length (table grown to match).
        let mut v = t[..0x76].to_vec();
        v.extend_from_slice(SEV_KERNEL_ENTRY_GUID.as_bytes());
        v.extend_from_slice(&51u16.to_le_bytes());
        v.extend_from_slice(&[0; 33]);
        let vlen = v.len() as u16;
        v[0x10..0x12].copy_from_slice(&vlen.to_le_bytes());
        assert!(problem(&v).1.contains("kernel entry has length 51"));
        // Duplicate and missing entries.
        let mut dup = t;
        dup[0x44..0x54].copy_from_slice(SEV_CMDLINE_ENTRY_GUID.as_bytes());
        assert!(problem(&dup).1.contains("duplicate cmdline"));
        let mut miss = t;
        miss[0x44..0x54].copy_from_slice(Guid::ZERO.as_bytes());
        assert_eq!(problem(&miss).1, "missing entries: initrd");

        // Order does not matter; unknown entries are skipped.
        let entry =
            |g: Guid, d: &[u8; 32]| [g.as_bytes().as_slice(), &50u16.to_le_bytes(), d].concat();
        let body = [
            entry(SEV_KERNEL_ENTRY_GUID, &h.kernel),
            entry(Guid::ZERO, &[9; 32]),
            entry(SEV_INITRD_ENTRY_GUID, &h.initrd),
            entry(SEV_CMDLINE_ENTRY_GUID, &h.cmdline),
        ]
        .concat();
        let mut v = SEV_HASH_TABLE_HEADER_GUID.to_bytes().to_vec();
        v.extend_from_slice(&((18 + body.len()) as u16).to_le_bytes());
        v.extend_from_slice(&body);
        assert_eq!(KernelHashes::parse_table(&v).unwrap(), h);
    }

    #[test]
    fn hashes_table_is_located_in_a_region() {
        let h = KernelHashes::new(None, None, b"kernel");
        let mut region = vec![0u8; 0x400];
        region[0x30..0x30 + PADDED_HASH_TABLE_LEN].copy_from_slice(&h.to_table());
        assert_eq!(KernelHashes::locate(&region).unwrap(), Some((0x30, h)));
        assert_eq!(KernelHashes::locate(&[0u8; 0x400]).unwrap(), None);
        // A header GUID with a broken table is an error, not a miss.
        let mut bad = region.clone();
        bad[0x30 + 0x10] = 0xFF;
        assert!(KernelHashes::locate(&bad).is_err());
        // Cut off right after the GUID.
        assert!(KernelHashes::locate(&region[..0x30 + 16]).is_err());
    }
}

/// Cross-check against the reference implementation, sev-snp-measure
/// (`pip install sev-snp-measure`), when it is installed.
#[cfg(test)]
mod sev_snp_measure_tests {
    use super::testutil::testdata;
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    const TOOL: &str = "sev-snp-measure";

    /// Whether the tool runs; otherwise prints SKIPPED (or panics under
    /// `SEVM_REQUIRE_ALL=1`).
    fn tool_available(test: &str) -> bool {
        sevm_testutil::peer_tool(test, TOOL, "--version", "pip install sev-snp-measure").is_some()
    }

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("sev-proto-{test}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Runs `sev-snp-measure --mode sev`; `Ok(digest)` or `Err(stderr)`.
    fn measure(
        ovmf: &Path,
        kernel: Option<&Path>,
        initrd: Option<&Path>,
        append: Option<&str>,
    ) -> Result<Vec<u8>, String> {
        let mut cmd = Command::new(TOOL);
        cmd.args(["--mode", "sev", "--output-format", "hex", "--ovmf"])
            .arg(ovmf);
        if let Some(k) = kernel {
            cmd.arg("--kernel").arg(k);
        }
        if let Some(i) = initrd {
            cmd.arg("--initrd").arg(i);
        }
        if let Some(a) = append {
            cmd.arg(format!("--append={a}"));
        }
        let out = cmd.output().unwrap();
        if out.status.success() {
            Ok(hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    #[test]
    fn sev_digests_match_sev_snp_measure() {
        const TEST: &str = "sev_digests_match_sev_snp_measure";
        if !tool_available(TEST) {
            return;
        }
        let dir = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/sev-testdata/ovmf"
        ));
        let scratch = Scratch::new(TEST);
        let kernel: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let initrd: Vec<u8> = (0..33_333u32).map(|i| (i ^ (i >> 3)) as u8).collect();
        let kpath = scratch.file("kernel", &kernel);
        let ipath = scratch.file("initrd", &initrd);
        let epath = scratch.file("empty", b"");
        type Input<'a> = Option<(&'a Path, &'a [u8])>;
        let cases: [(Input, Input, Option<&str>); 6] = [
            (None, None, None),
            (Some((&kpath, &kernel)), None, None),
            (Some((&kpath, &kernel)), Some((&ipath, &initrd)), None),
            (
                Some((&kpath, &kernel)),
                Some((&ipath, &initrd)),
                Some("console=ttyS0 root=/dev/vda1 ro"),
            ),
            // Not trimmed (docs/protocol/choices.md#u7).
            (Some((&epath, b"")), None, Some("  padded cmdline  ")),
            (Some((&epath, b"")), Some((&epath, b"")), Some("")),
        ];
        for name in [
            "ovmf_AmdSev_suffix.bin",
            "ovmf_OvmfX64_suffix.bin",
            "sevctl_OVMF.amdsev_trimmed.bin",
        ] {
            let Some(fw) = testdata(TEST, &format!("ovmf/{name}")) else {
                return;
            };
            for (k, i, a) in cases {
                let ours = sev_launch_digest(
                    &fw,
                    k.map(|(_, kb)| KernelHashes::new(a.map(str::as_bytes), i.map(|x| x.1), kb))
                        .as_ref(),
                );
                let theirs = measure(&dir.join(name), k.map(|x| x.0), i.map(|x| x.0), a);
                match (ours, theirs) {
                    (Ok(o), Ok(t)) => assert_eq!(o.to_vec(), t, "{name} {k:?} {a:?}"),
                    (Err(e), Err(msg)) => {
                        assert!(matches!(e, OvmfError::KernelHashesUnsupported(_)));
                        assert!(
                            msg.contains("Kernel specified but OVMF doesn't support"),
                            "{msg}"
                        );
                    }
                    (o, t) => panic!("{name}: ours {o:?}, sev-snp-measure {t:?}"),
                }
            }
        }
    }
}
