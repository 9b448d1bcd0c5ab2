//! sevm's bundled demo guest: a small firmware image generated in Rust with
//! the iced-x86 code assembler (no external assembler). sevm writes it
//! (`sevm -write-demo-guest FILE`) and its tests and examples boot it; the
//! crate knows nothing of the VMM beyond the guest-visible [`ports`].
//!
//! The image is mapped to end at 4 GiB like an OVMF `-bios`. From the reset
//! vector it loads a flat GDT, enters 32-bit protected mode without paging
//! (under SEV every access is then private) and, in [`DemoMode::Normal`]:
//!
//! 1. prints [`asm::GREETING`] on the serial port,
//! 2. reads the secret area advertised in its footer table
//!    ([`SECRET_AREA_BASE`], [`SECRET_AREA_SIZE`]) and parses the efi_secret
//!    table found there (docs/protocol/secret.md#secret-table): `no secret injected` if the header
//!    GUID is absent; otherwise one line `secret <guid>: <data>` per entry
//!    (data as text when all bytes are printable ASCII, else `hex <digits>`,
//!    `(empty)` if there is none), then `secret table: <n> entries`,
//! 3. exits through the debug-exit port with [`EXIT_OK`], or with
//!    [`EXIT_BAD_SECRET_TABLE`] after a `secret table error: ...` line when the
//!    table's lengths do not fit the area.
//!
//! [`DemoMode::Memtest`] is described at [`MemtestOptions`].
//!
//! Before the greeting the guest finds its SEV mode (CPUID 0x8000001F, then
//! the SEV status MSR). Without SEV and as a plain SEV guest its output is
//! the above; as an SEV-ES or SNP guest it talks to the host only through
//! the GHCB (the MSR protocol and GHCB IOIO exits at [`GHCB_GPA`]) and
//! prints its mode, the GHCB protocol and a CPUID value obtained through
//! the GHCB; in SNP mode it also makes its GHCB shared, registers it, and
//! reports its secrets page and CPUID page, found through the image's SEV
//! metadata ([`sev_metadata`]); docs/guide/demo-guest.md#modes. With report
//! data in the image ([`set_report_data`]) an SNP guest then asks the
//! firmware for an attestation report and prints it, its guest messages
//! sealed with its own AES-256-GCM ([`DemoMode::AesSelfTest`] proves that);
//! docs/guide/demo-guest.md#the-report-request.
//!
//! The image carries an OVMF-style footer GUID table (docs/protocol/ovmf.md#footer-table)
//! with a SEV secret block entry, a kernel-hashes area entry, the SEV-ES
//! reset block and the SEV metadata, so the launch code finds the secret
//! and hashes areas and the SNP pages exactly as for OVMF.
//!
//! RAM needed: [`min_ram_size`] (9 MiB for the normal mode: the secret and
//! hashes areas end at 0x811000; the stack lives below 512 KiB).

#![forbid(unsafe_code)]

pub mod asm;

use sev_proto::Guid;

/// The I/O ports the guest uses: what sevm's devices decode (sevm's tests
/// check that the two agree).
pub mod ports {
    /// COM1, the 16550 UART the guest prints on.
    pub const COM1_BASE: u16 = 0x3F8;
    /// The debug-exit port: a byte written here ends the VM with that exit
    /// code.
    pub const DEBUG_EXIT_PORT: u16 = 0x501;
    /// The guest control port: reads 1 once the host asks the guest to
    /// finish (memtest mode).
    pub const CONTROL_PORT: u16 = 0x502;
}

/// The largest guest RAM sevm gives a guest (3 GiB, below the PCI hole):
/// a memtest range must end below it.
pub const MAX_RAM_SIZE: u64 = 3 << 30;

pub use asm::{EXIT_BAD_SECRET_TABLE, EXIT_MEMTEST_MISMATCH, EXIT_OK, GREETING};

/// OVMF footer table GUID (docs/protocol/ovmf.md#footer-table), at EOF−48.
pub const FOOTER_GUID: Guid = Guid::from_str_const("96b582de-1fb2-45f7-baea-a366c55a082d");
/// SEV secret block entry: `u32 base, u32 size` (docs/protocol/ovmf.md#footer-table,
/// docs/protocol/secret.md#secret-area).
pub const SECRET_BLOCK_GUID: Guid = Guid::from_str_const("4c2eb361-7d9b-4cc3-8081-127c90d3d294");
/// SEV kernel-hashes area entry: `u32 base, u32 size` (docs/protocol/ovmf.md#footer-table).
pub const HASHES_BLOCK_GUID: Guid = Guid::from_str_const("7255371f-3a3b-4b04-927b-1da6efa8d454");
/// SEV-ES reset block entry: `u32` AP reset address (docs/protocol/ovmf.md#footer-table).
pub const SEV_ES_RESET_BLOCK_GUID: Guid =
    Guid::from_str_const("00f771de-1a7e-4fcb-890e-68c77e2fb44e");
/// Where an SEV-ES guest's APs start (CS base 0xFFFF0000, IP 0xFF00): the
/// demo never starts its APs, so they only park there (`cli; hlt`).
pub const AP_RESET_ADDR: u32 = 0xFFFF_FF00;
/// The AP parking code at [`AP_RESET_ADDR`]: `cli; hlt; jmp short -3`.
pub const AP_PARK_CODE: [u8; 4] = [0xFA, 0xF4, 0xEB, 0xFD];
/// SEV metadata entry: `u32` distance from the end of the image to the
/// "ASEV" metadata header (docs/protocol/snp.md#ovmf-sev-metadata).
pub const SEV_METADATA_GUID: Guid = sev_proto::ovmf::SEV_METADATA_GUID;
/// Where the SEV metadata lives in the boot block.
pub const METADATA_GPA: u32 = 0xFFFF_F800;
/// SNP_SEC_MEM: the variables page, the GHCB page and the stack, which an
/// SNP launch hands over as zero pages.
pub const SEC_MEM_BASE: u32 = asm::VARS_BASE;
/// Size of the SNP_SEC_MEM range (up to [`asm::STACK_TOP`]).
pub const SEC_MEM_SIZE: u32 = asm::STACK_TOP - asm::VARS_BASE;
/// The page the SNP kernel-hashes section names: the one holding the
/// hashes area.
pub const KERNEL_HASHES_PAGE: u32 = HASHES_AREA_BASE & !0xFFF;

pub use asm::{GHCB_GPA, SNP_CPUID_GPA, SNP_SECRETS_GPA, VARS_BASE};

/// efi_secret table header GUID (docs/protocol/secret.md#secret-table).
pub const SECRET_TABLE_HEADER_GUID: Guid =
    Guid::from_str_const("1e74f542-71dd-4d66-963e-ef4287ff173b");

/// Where the guest expects the launch secret (same as OVMF AmdSev).
pub const SECRET_AREA_BASE: u32 = 0x0081_0000;
/// Size of the secret area (same as OVMF AmdSev).
pub const SECRET_AREA_SIZE: u32 = 0xC00;
/// Where the kernel-hashes table may be placed (same as OVMF AmdSev).
pub const HASHES_AREA_BASE: u32 = 0x0081_0C00;
/// Size of the kernel-hashes area (≥ 176, the padded table size).
pub const HASHES_AREA_SIZE: u32 = 0x400;

/// Where the image carries the report data of the SNP report request
/// (docs/guide/demo-guest.md#the-report-request): [`REPORT_DATA_MAGIC`],
/// the request kind (byte 4: 0 extended, 1 plain, [`set_plain_report_request`]),
/// 11 zero bytes, then the 64 bytes of report data. All zero (no request)
/// unless [`set_report_data`] filled it.
pub const REPORT_BLOCK_GPA: u32 = 0xFFFF_F700;
/// Size of the report-data block.
pub const REPORT_BLOCK_LEN: usize = 16 + 64;
/// Offset in the report-data block of the request kind byte.
pub const REPORT_KIND_OFFSET: u32 = 4;
/// The request kind byte of a plain guest request (exit 0x8000_0011).
pub const REPORT_KIND_PLAIN: u8 = 1;
/// The first four bytes of a filled report-data block.
pub const REPORT_DATA_MAGIC: [u8; 4] = *b"RDAT";

/// Image sizes are multiples of this.
pub const IMAGE_ALIGN: usize = 64 << 10;
/// Default image size.
pub const DEFAULT_IMAGE_SIZE: usize = 2 << 20;
/// Largest image (the firmware window below 4 GiB).
pub const MAX_IMAGE_SIZE: usize = 16 << 20;

/// Why an image could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DemoError {
    /// Bad image size.
    #[error("demo image size {size:#x} must be a multiple of 64 KiB between 64 KiB and 16 MiB")]
    Size {
        /// The requested size.
        size: usize,
    },
    /// The assembler refused the program (a bug in this module).
    #[error("assembling the demo guest failed: {0}")]
    Assemble(String),
    /// A part of the program outgrew its slot in the boot block.
    #[error("demo guest {what} is too large ({len} bytes)")]
    CodeTooLarge {
        /// Which part.
        what: &'static str,
        /// Its size.
        len: usize,
    },
    /// The image has no report data to make a request with.
    #[error("the demo image has no report data: set_report_data first")]
    NoReportData,
    /// The image is not a demo guest image of a usable size.
    #[error("not a demo guest image ({len} bytes)")]
    NotAnImage {
        /// The image's length.
        len: usize,
    },
    /// The memtest range is unusable.
    #[error("memtest range base {base:#x}, {pages} pages: {reason}")]
    MemtestRange {
        /// Requested base.
        base: u32,
        /// Requested page count.
        pages: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Options of the memory-test mode, used to test dirty tracking and live
/// migration.
///
/// The guest fills `pages` 4 KiB pages from `base`, then keeps rewriting them
/// one page at a time in address order, pass after pass. In pass `g` (from 1)
/// every dword of the page at GPA `a` is `a ^ (g * 0x9E3779B9)` (wrapping),
/// so a stale page (older pass), a torn page or a page copied to the wrong
/// address never verifies. Output: `memtest: base 0x..., pages N`, `memtest: filled` after
/// the first pass, `memtest: pass <g>` every `progress_every` passes.
///
/// Control protocol: after the first pass, every 16 pages the guest reads
/// port 0x502 (`devices::control`); when it reads 1 (the host called
/// `ControlHandle::request_finish`), or after `max_passes` passes if that is
/// non-zero, it prints `memtest: checking`, verifies the whole range (pages
/// already rewritten in the current pass against the current generation, the
/// rest against the previous one) and prints `memtest: ok <N> pages` and exits
/// 0, or prints `memtest: mismatch at 0x<gpa>: expected 0x<v>, found 0x<w>`
/// and exits 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemtestOptions {
    /// First GPA of the range (4 KiB aligned, at least 1 MiB).
    pub base: u32,
    /// Number of pages (≥ 1).
    pub pages: u32,
    /// Verify after this many passes; 0 = only when the host asks.
    pub max_passes: u32,
    /// Print a progress line every this many passes; 0 = never.
    pub progress_every: u32,
}

impl Default for MemtestOptions {
    /// 4 MiB at 16 MiB, until the host asks, progress every 64 passes.
    fn default() -> Self {
        MemtestOptions {
            base: 16 << 20,
            pages: 1024,
            max_passes: 0,
            progress_every: 64,
        }
    }
}

/// What the demo guest does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DemoMode {
    /// Greeting, secret table, exit.
    #[default]
    Normal,
    /// Memory test for dirty tracking / migration.
    Memtest(MemtestOptions),
    /// Proves the guest's AES-256-GCM (the cipher of its SNP guest
    /// messages) on [`aes_gcm_self_test_vectors`]. For vector `i` it prints
    ///
    /// ```text
    /// aes-gcm <i> seal: <ciphertext hex> tag <tag hex>
    /// aes-gcm <i> open: ok <plaintext hex>
    /// aes-gcm <i> open with a tampered tag: refused
    /// aes-gcm <i> open with a tampered ciphertext: refused
    /// ```
    ///
    /// (the open lines say `ok` or `refused`, whatever the guest found),
    /// then `aes-gcm self-test: done` and exits [`EXIT_OK`].
    AesSelfTest,
}

/// One AES-256-GCM test vector of [`DemoMode::AesSelfTest`]. The guest's
/// implementation takes whole 16-byte blocks of AAD and text only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AesGcmVector {
    /// The 256-bit key.
    pub key: [u8; 32],
    /// The 96-bit IV.
    pub iv: [u8; 12],
    /// Additional authenticated data (a multiple of 16 bytes).
    pub aad: Vec<u8>,
    /// The plaintext (a multiple of 16 bytes).
    pub plaintext: Vec<u8>,
}

/// The self-test vectors: the guest-message example of
/// docs/protocol/snp.md#guest-messages (a MSG_REPORT_REQ of zeros under
/// the key 00..1f, sequence number 1), a 64-byte text without AAD, and a
/// report-response-sized text (0x4C0 bytes) with a 48-byte AAD.
pub fn aes_gcm_self_test_vectors() -> Vec<AesGcmVector> {
    let mut report_aad = vec![0u8; 48];
    report_aad[..8].copy_from_slice(&[1, 1, 0x60, 0, 5, 1, 0x60, 0]);
    let mut iv1 = [0u8; 12];
    iv1[0] = 1;
    let pattern = |n: usize, mul: usize, add: usize| -> Vec<u8> {
        (0..n).map(|i| (i * mul + add + (i >> 8)) as u8).collect()
    };
    let key_from =
        |mul: usize, add: usize| -> [u8; 32] { std::array::from_fn(|i| (i * mul + add) as u8) };
    vec![
        AesGcmVector {
            key: key_from(1, 0),
            iv: iv1,
            aad: report_aad,
            plaintext: vec![0; 96],
        },
        AesGcmVector {
            key: key_from(37, 11),
            iv: std::array::from_fn(|i| 0xC0 + i as u8),
            aad: Vec::new(),
            plaintext: pattern(64, 13, 1),
        },
        AesGcmVector {
            key: key_from(91, 200),
            iv: std::array::from_fn(|i| (i * 29 + 3) as u8),
            aad: pattern(48, 7, 5),
            plaintext: pattern(0x4C0, 1, 0),
        },
    ]
}

/// How to build the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoOptions {
    /// Image size in bytes: a multiple of 64 KiB, 64 KiB..=16 MiB.
    pub size: usize,
    /// What the guest does.
    pub mode: DemoMode,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            size: DEFAULT_IMAGE_SIZE,
            mode: DemoMode::Normal,
        }
    }
}

const MIB: u64 = 1 << 20;

fn round_up_mib(v: u64) -> u64 {
    v.div_ceil(MIB) * MIB
}

/// The least RAM (a whole number of MiB) the guest needs for `opts`.
pub fn min_ram_size(opts: &DemoOptions) -> u64 {
    let areas = u64::from(HASHES_AREA_BASE) + u64::from(HASHES_AREA_SIZE);
    let need = match opts.mode {
        DemoMode::Normal | DemoMode::AesSelfTest => areas,
        DemoMode::Memtest(m) => areas.max(u64::from(m.base) + u64::from(m.pages) * 4096),
    };
    round_up_mib(need)
}

fn check_memtest(m: &MemtestOptions) -> Result<(), DemoError> {
    let err = |reason| DemoError::MemtestRange {
        base: m.base,
        pages: m.pages,
        reason,
    };
    if m.pages == 0 {
        return Err(err("no pages"));
    }
    if !m.base.is_multiple_of(4096) {
        return Err(err("base is not 4 KiB aligned"));
    }
    if m.base < (1 << 20) {
        return Err(err("base below 1 MiB (the guest's stack lives there)"));
    }
    let end = u64::from(m.base) + u64::from(m.pages) * 4096;
    if end > MAX_RAM_SIZE {
        return Err(err("range ends above 3 GiB, beyond the largest RAM"));
    }
    let areas = (
        u64::from(SECRET_AREA_BASE),
        u64::from(HASHES_AREA_BASE) + u64::from(HASHES_AREA_SIZE),
    );
    if u64::from(m.base) < areas.1 && areas.0 < end {
        return Err(err("range overlaps the secret/hashes areas"));
    }
    Ok(())
}

/// The SEV metadata (docs/protocol/snp.md#ovmf-sev-metadata): the "ASEV"
/// header and four descriptors — SNP_SEC_MEM ([`SEC_MEM_BASE`]), the SNP
/// secrets page, the CPUID page and the kernel-hashes page.
pub fn sev_metadata() -> Vec<u8> {
    let sections: [(u32, u32, u32); 4] = [
        (SEC_MEM_BASE, SEC_MEM_SIZE, 1),
        (SNP_SECRETS_GPA, 0x1000, 2),
        (SNP_CPUID_GPA, 0x1000, 3),
        (KERNEL_HASHES_PAGE, 0x1000, 0x10),
    ];
    let mut m = b"ASEV".to_vec();
    let size = 16 + 12 * sections.len() as u32;
    for v in [size, 1, sections.len() as u32] {
        m.extend_from_slice(&v.to_le_bytes());
    }
    for (gpa, len, kind) in sections {
        for v in [gpa, len, kind] {
            m.extend_from_slice(&v.to_le_bytes());
        }
    }
    m
}

/// The footer table bytes that end at EOF−32: the four entries (data ‖ u16
/// length ‖ GUID each: the SEV metadata offset, the SEV-ES reset block, the
/// hashes area, the secret block), then u16 table length and the footer
/// GUID.
pub fn footer_table() -> Vec<u8> {
    let mut t = Vec::new();
    let metadata_from_end = ((1u64 << 32) - u64::from(METADATA_GPA)) as u32;
    t.extend_from_slice(&metadata_from_end.to_le_bytes());
    t.extend_from_slice(&(4u16 + 2 + 16).to_le_bytes());
    t.extend_from_slice(SEV_METADATA_GUID.as_bytes());
    t.extend_from_slice(&AP_RESET_ADDR.to_le_bytes());
    t.extend_from_slice(&(4u16 + 2 + 16).to_le_bytes());
    t.extend_from_slice(SEV_ES_RESET_BLOCK_GUID.as_bytes());
    for (guid, base, size) in [
        (HASHES_BLOCK_GUID, HASHES_AREA_BASE, HASHES_AREA_SIZE),
        (SECRET_BLOCK_GUID, SECRET_AREA_BASE, SECRET_AREA_SIZE),
    ] {
        t.extend_from_slice(&base.to_le_bytes());
        t.extend_from_slice(&size.to_le_bytes());
        t.extend_from_slice(&(8u16 + 2 + 16).to_le_bytes());
        t.extend_from_slice(guid.as_bytes());
    }
    // table_len counts the entries plus this 18-byte footer header.
    let table_len = (t.len() + 2 + 16) as u16;
    t.extend_from_slice(&table_len.to_le_bytes());
    t.extend_from_slice(FOOTER_GUID.as_bytes());
    t
}

/// Builds the demo firmware image.
pub fn build(opts: &DemoOptions) -> Result<Vec<u8>, DemoError> {
    let size = opts.size;
    if !(IMAGE_ALIGN..=MAX_IMAGE_SIZE).contains(&size) || !size.is_multiple_of(IMAGE_ALIGN) {
        return Err(DemoError::Size { size });
    }
    let program = match opts.mode {
        DemoMode::Normal => asm::Program::Normal {
            secret_base: SECRET_AREA_BASE,
            secret_size: SECRET_AREA_SIZE,
        },
        DemoMode::Memtest(m) => {
            check_memtest(&m)?;
            asm::Program::Memtest(m)
        }
        DemoMode::AesSelfTest => asm::Program::AesSelfTest(aes_gcm_self_test_vectors()),
    };
    let blobs = asm::assemble(&program)?;
    let mut image = vec![0u8; size];
    let image_base = (1u64 << 32) - size as u64;
    let table = footer_table();
    let table_start = size - 32 - table.len();
    let park = usize::try_from(u64::from(AP_RESET_ADDR) - image_base).unwrap_or(usize::MAX);
    let metadata = sev_metadata();
    let meta = usize::try_from(u64::from(METADATA_GPA) - image_base).unwrap_or(usize::MAX);
    let report = usize::try_from(u64::from(REPORT_BLOCK_GPA) - image_base).unwrap_or(usize::MAX);
    let mut placed: Vec<(usize, usize)> = vec![
        (table_start, size - 32),
        (park, park + AP_PARK_CODE.len()),
        (meta, meta + metadata.len()),
        (report, report + REPORT_BLOCK_LEN),
    ];
    if meta + metadata.len() > table_start {
        return Err(DemoError::CodeTooLarge {
            what: "SEV metadata",
            len: metadata.len(),
        });
    }
    image[park..park + AP_PARK_CODE.len()].copy_from_slice(&AP_PARK_CODE);
    image[meta..meta + metadata.len()].copy_from_slice(&metadata);
    for (gpa, bytes) in &blobs.pieces {
        let too_large = DemoError::CodeTooLarge {
            what: "boot block piece",
            len: bytes.len(),
        };
        let start = u64::from(*gpa)
            .checked_sub(image_base)
            .and_then(|o| usize::try_from(o).ok())
            .ok_or_else(|| too_large.clone())?;
        let end = start + bytes.len();
        if end > size || placed.iter().any(|&(s, e)| start < e && s < end) {
            return Err(too_large);
        }
        image[start..end].copy_from_slice(bytes);
        placed.push((start, end));
    }
    image[table_start..size - 32].copy_from_slice(&table);
    Ok(image)
}

/// The offset of the report-data block in an image of `len` bytes.
fn report_block(len: usize) -> Result<std::ops::Range<usize>, DemoError> {
    let from_end = (1u64 << 32) - u64::from(REPORT_BLOCK_GPA);
    let start = u64::try_from(len)
        .ok()
        .filter(|&l| (IMAGE_ALIGN..=MAX_IMAGE_SIZE).contains(&(l as usize)))
        .and_then(|l| l.checked_sub(from_end))
        .and_then(|s| usize::try_from(s).ok())
        .ok_or(DemoError::NotAnImage { len })?;
    Ok(start..start + REPORT_BLOCK_LEN)
}

/// Fills the report-data block of a built `image`
/// (docs/guide/demo-guest.md#the-report-request): as an SNP guest it then
/// requests an attestation report carrying `report_data`. The block is
/// part of the image, so of its launch digest: fill it before measuring.
pub fn set_report_data(image: &mut [u8], report_data: &[u8; 64]) -> Result<(), DemoError> {
    let block = report_block(image.len())?;
    let b = &mut image[block];
    b.fill(0);
    b[..4].copy_from_slice(&REPORT_DATA_MAGIC);
    b[16..].copy_from_slice(report_data);
    Ok(())
}

/// Makes the report request of `image` (filled by [`set_report_data`]) a
/// plain guest request (exit 0x8000_0011, no certificate buffer) instead
/// of the extended one. Part of the image, so of the measurement.
pub fn set_plain_report_request(image: &mut [u8]) -> Result<(), DemoError> {
    let block = report_block(image.len())?;
    let b = &mut image[block];
    if b[..4] != REPORT_DATA_MAGIC {
        return Err(DemoError::NoReportData);
    }
    b[REPORT_KIND_OFFSET as usize] = REPORT_KIND_PLAIN;
    Ok(())
}

/// The report data [`set_report_data`] put into `image`, if any.
pub fn report_data(image: &[u8]) -> Option<[u8; 64]> {
    let block = report_block(image.len()).ok()?;
    let b = &image[block];
    (b[..4] == REPORT_DATA_MAGIC).then(|| {
        let mut data = [0u8; 64];
        data.copy_from_slice(&b[16..]);
        data
    })
}

/// Why [`write_image`] failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Building the image failed.
    #[error(transparent)]
    Build(#[from] DemoError),
    /// Writing the file failed.
    #[error("cannot write the demo guest image to {}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Writes the default demo guest image ([`DemoOptions::default`]: 2 MiB,
/// normal mode) to `path` (`sevm -write-demo-guest FILE`).
pub fn write_image(path: &std::path::Path) -> Result<(), WriteError> {
    let image = build(&DemoOptions::default())?;
    std::fs::write(path, image).map_err(|source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Builds an efi_secret table (docs/protocol/secret.md#secret-table) holding `entries`, padded
/// with zeros to a multiple of 16 bytes, as a guest owner's tool would
/// (sevctl `secret build`). For tests and demos.
pub fn secret_table(entries: &[(Guid, &[u8])]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(SECRET_TABLE_HEADER_GUID.as_bytes());
    t.extend_from_slice(&[0; 4]);
    for (guid, data) in entries {
        t.extend_from_slice(guid.as_bytes());
        t.extend_from_slice(&((16 + 4 + data.len()) as u32).to_le_bytes());
        t.extend_from_slice(data);
    }
    let total = t.len() as u32;
    t[16..20].copy_from_slice(&total.to_le_bytes());
    t.resize(t.len().div_ceil(16) * 16, 0);
    t
}

#[cfg(test)]
mod tests;
