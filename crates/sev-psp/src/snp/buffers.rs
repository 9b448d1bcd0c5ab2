//! The SNP platform commands' buffers (docs/protocol/snp.md#snp-platform-commands),
//! little-endian and byte-packed. Each input is decoded once, here, with
//! every reserved field checked (INVALID_PARAM); the firmware works on the
//! decoded value. `to_bytes` makes the buffer a host sends.

use sev_proto::abi::{ApiVersion, Status};

use super::SnpCommand;
use crate::error::{FwError, Op};

/// Length of the SNP_INIT_EX buffer.
pub const INIT_EX_LEN: usize = 0x40;
/// Length of the SNP_SHUTDOWN_EX buffer.
pub const SHUTDOWN_EX_LEN: usize = 8;
/// Length of the SNP_CONFIG buffer.
pub const CONFIG_LEN: usize = 0x40;
/// Length of the SNP_COMMIT buffer.
pub const COMMIT_LEN: usize = 4;
/// Length of the SNP_PLATFORM_STATUS output.
pub const PLATFORM_STATUS_LEN: usize = 0x20;
/// The range list is one 4 KiB page.
pub const RANGE_LIST_LEN: usize = 4096;
/// Most entries a range list page holds.
pub const MAX_RANGES: usize = (RANGE_LIST_LEN - 8) / 16;

const PAGE: u64 = 4096;

fn param(cmd: SnpCommand, detail: impl Into<String>) -> FwError {
    FwError::new(Op::Snp(cmd), Status::InvalidParam, detail)
}

fn exact<const N: usize>(cmd: SnpCommand, buf: &[u8]) -> Result<&[u8; N], FwError> {
    buf.try_into().map_err(|_| {
        param(
            cmd,
            format!("command buffer is {} bytes, must be {N}", buf.len()),
        )
    })
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut w = [0u8; 2];
    w.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(w)
}

/// The little-endian field at `at` of a command buffer whose length was
/// checked.
pub(super) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

pub(super) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn zero(cmd: SnpCommand, b: &[u8], what: &str) -> Result<(), FwError> {
    match b.iter().position(|x| *x != 0) {
        None => Ok(()),
        Some(i) => Err(param(cmd, format!("reserved {what} byte {i} is not zero"))),
    }
}

/// SNP_INIT_EX flag bits.
pub mod init_flags {
    /// The firmware initialises the RMP.
    pub const INIT_RMP: u32 = 1 << 0;
    /// LIST_PADDR names a range list.
    pub const LIST_PADDR_EN: u32 = 1 << 1;
    /// Disable RAPL.
    pub const RAPL_DIS: u32 = 1 << 2;
    /// Enable ciphertext hiding.
    pub const CIPHERTEXT_HIDING_EN: u32 = 1 << 3;
    /// Enable SEV-TIO.
    pub const TIO_EN: u32 = 1 << 4;
    /// Every defined bit.
    pub const DEFINED: u32 = 0x1f;
}

/// One hypervisor-fixed range of the SNP_INIT_EX range list: memory the
/// firmware must never hand to a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HvFixedRange {
    /// First byte (4 KiB aligned).
    pub base: u64,
    /// Number of 4 KiB pages.
    pub pages: u32,
}

/// SNP_INIT_EX's input (SNP_INIT is SNP_INIT_EX with INIT_RMP and nothing
/// else).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnpInitEx {
    /// The flags (bits of [`init_flags`]; LIST_PADDR_EN follows `ranges`).
    pub flags: u32,
    /// MAX_SNP_ASID (with ciphertext hiding).
    pub max_snp_asid: u16,
    /// The range list, when LIST_PADDR_EN is set.
    pub ranges: Option<Vec<HvFixedRange>>,
}

impl SnpInitEx {
    /// What SNP_INIT does: INIT_RMP, no range list.
    pub fn legacy_init() -> Self {
        SnpInitEx {
            flags: init_flags::INIT_RMP,
            ..SnpInitEx::default()
        }
    }

    /// Decodes the 0x40-byte buffer and, when LIST_PADDR_EN is set, the
    /// range list page `range_list` (what LIST_PADDR points to).
    ///
    /// INVALID_PARAM: wrong length, a reserved bit or byte set, a range
    /// list given without LIST_PADDR_EN, more entries than the page holds,
    /// a range that wraps; INVALID_ADDRESS: LIST_PADDR_EN without a list, a
    /// range base not 4 KiB aligned.
    pub fn decode(buf: &[u8], range_list: Option<&[u8]>) -> Result<Self, FwError> {
        let cmd = SnpCommand::InitEx;
        let b = exact::<INIT_EX_LEN>(cmd, buf)?;
        let flags = u32_at(b, 0);
        if flags & !init_flags::DEFINED != 0 {
            return Err(param(
                cmd,
                format!(
                    "reserved flag bits set: {:#x}",
                    flags & !init_flags::DEFINED
                ),
            ));
        }
        zero(cmd, &b[4..8], "header")?;
        zero(cmd, &b[0x12..], "trailing")?;
        let ranges = match (flags & init_flags::LIST_PADDR_EN != 0, range_list) {
            (true, Some(page)) => Some(decode_ranges(page)?),
            (true, None) => {
                return Err(FwError::new(
                    Op::Snp(cmd),
                    Status::InvalidAddress,
                    "LIST_PADDR_EN is set but no range list was given",
                ))
            }
            (false, Some(_)) => {
                return Err(param(
                    cmd,
                    "a range list was given but LIST_PADDR_EN is clear",
                ))
            }
            (false, None) => None,
        };
        Ok(SnpInitEx {
            flags,
            max_snp_asid: u16_at(b, 0x10),
            ranges,
        })
    }

    /// The 0x40-byte buffer (LIST_PADDR 0: the emulator takes the list as
    /// a separate page) and, with ranges, the range list page.
    pub fn to_bytes(&self) -> ([u8; INIT_EX_LEN], Option<Vec<u8>>) {
        let mut b = [0u8; INIT_EX_LEN];
        let mut flags = self.flags & !init_flags::LIST_PADDR_EN;
        if self.ranges.is_some() {
            flags |= init_flags::LIST_PADDR_EN;
        }
        b[0..4].copy_from_slice(&flags.to_le_bytes());
        b[0x10..0x12].copy_from_slice(&self.max_snp_asid.to_le_bytes());
        let list = self.ranges.as_ref().map(|ranges| {
            let mut page = vec![0u8; RANGE_LIST_LEN];
            let n = u32::try_from(ranges.len()).unwrap_or(u32::MAX);
            page[0..4].copy_from_slice(&n.to_le_bytes());
            for (r, slot) in ranges.iter().zip(page[8..].chunks_exact_mut(16)) {
                slot[0..8].copy_from_slice(&r.base.to_le_bytes());
                slot[8..12].copy_from_slice(&r.pages.to_le_bytes());
            }
            page
        });
        (b, list)
    }

    /// Whether `flag` (of [`init_flags`]) is set.
    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }
}

fn decode_ranges(page: &[u8]) -> Result<Vec<HvFixedRange>, FwError> {
    let cmd = SnpCommand::InitEx;
    if page.len() < 8 || page.len() > RANGE_LIST_LEN {
        return Err(param(
            cmd,
            format!(
                "range list is {} bytes, must be 8..={RANGE_LIST_LEN}",
                page.len()
            ),
        ));
    }
    let n = u32_at(page, 0) as usize;
    zero(cmd, &page[4..8], "range list header")?;
    if n > MAX_RANGES || 8 + n * 16 > page.len() {
        return Err(param(
            cmd,
            format!("range list claims {n} entries; the page holds fewer"),
        ));
    }
    let mut ranges = Vec::with_capacity(n);
    for (i, e) in page[8..8 + n * 16].chunks_exact(16).enumerate() {
        let base = u64_at(e, 0);
        let pages = u32_at(e, 8);
        zero(cmd, &e[12..16], "range entry")?;
        if !base.is_multiple_of(PAGE) {
            return Err(FwError::new(
                Op::Snp(cmd),
                Status::InvalidAddress,
                format!("range {i} base {base:#x} is not 4 KiB aligned"),
            ));
        }
        if base.checked_add(u64::from(pages) * PAGE).is_none() {
            return Err(param(cmd, format!("range {i} wraps the address space")));
        }
        ranges.push(HvFixedRange { base, pages });
    }
    Ok(ranges)
}

/// SNP_SHUTDOWN_EX's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnpShutdownEx {
    /// IOMMU_SNP_SHUTDOWN: tear down SNP in the IOMMU.
    pub iommu_snp_shutdown: bool,
    /// X86_SNP_SHUTDOWN: tear down SNP enablement in the CPUs.
    pub x86_snp_shutdown: bool,
}

impl SnpShutdownEx {
    /// Decodes the 8-byte buffer: LEN must be 8, bits 31:2 of the flags
    /// zero (else INVALID_PARAM).
    pub fn decode(buf: &[u8]) -> Result<Self, FwError> {
        let cmd = SnpCommand::ShutdownEx;
        let b = exact::<SHUTDOWN_EX_LEN>(cmd, buf)?;
        let len = u32_at(b, 0);
        if len as usize != SHUTDOWN_EX_LEN {
            return Err(param(cmd, format!("LEN is {len}, must be 8")));
        }
        let flags = u32_at(b, 4);
        if flags & !3 != 0 {
            return Err(param(
                cmd,
                format!("reserved flag bits set: {:#x}", flags & !3),
            ));
        }
        Ok(SnpShutdownEx {
            iommu_snp_shutdown: flags & 1 != 0,
            x86_snp_shutdown: flags & 2 != 0,
        })
    }

    /// The 8-byte buffer.
    pub fn to_bytes(&self) -> [u8; SHUTDOWN_EX_LEN] {
        let mut b = [0u8; SHUTDOWN_EX_LEN];
        b[0..4].copy_from_slice(&(SHUTDOWN_EX_LEN as u32).to_le_bytes());
        let flags = u32::from(self.iommu_snp_shutdown) | u32::from(self.x86_snp_shutdown) << 1;
        b[4..8].copy_from_slice(&flags.to_le_bytes());
        b
    }
}

/// SNP_CONFIG's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnpConfig {
    /// REPORTED_TCB in the product's layout; 0 = the current TCB. Checked
    /// against the product's layout by the command.
    pub reported_tcb: u64,
    /// MASK_CHIP_ID: reports carry an all-zero chip id.
    pub mask_chip_id: bool,
    /// MASK_CHIP_KEY: the VCEK is not used (unsigned reports).
    pub mask_chip_key: bool,
}

impl SnpConfig {
    /// Decodes the 0x40-byte buffer: bits 31:2 of the mask word and bytes
    /// 0x0C..0x40 must be zero (else INVALID_PARAM).
    pub fn decode(buf: &[u8]) -> Result<Self, FwError> {
        let cmd = SnpCommand::Config;
        let b = exact::<CONFIG_LEN>(cmd, buf)?;
        let mask = u32_at(b, 8);
        if mask & !3 != 0 {
            return Err(param(
                cmd,
                format!("reserved mask bits set: {:#x}", mask & !3),
            ));
        }
        zero(cmd, &b[0x0c..], "trailing")?;
        Ok(SnpConfig {
            reported_tcb: u64_at(b, 0),
            mask_chip_id: mask & 1 != 0,
            mask_chip_key: mask & 2 != 0,
        })
    }

    /// The 0x40-byte buffer.
    pub fn to_bytes(&self) -> [u8; CONFIG_LEN] {
        let mut b = [0u8; CONFIG_LEN];
        b[0..8].copy_from_slice(&self.reported_tcb.to_le_bytes());
        let mask = u32::from(self.mask_chip_id) | u32::from(self.mask_chip_key) << 1;
        b[8..12].copy_from_slice(&mask.to_le_bytes());
        b
    }
}

/// SNP_COMMIT's input: only its LEN field (4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnpCommit;

impl SnpCommit {
    /// Decodes the 4-byte buffer: LEN must be 4 (else INVALID_PARAM).
    pub fn decode(buf: &[u8]) -> Result<Self, FwError> {
        let cmd = SnpCommand::Commit;
        let b = exact::<COMMIT_LEN>(cmd, buf)?;
        match u32_at(b, 0) {
            4 => Ok(SnpCommit),
            len => Err(param(cmd, format!("LEN is {len}, must be 4"))),
        }
    }

    /// The 4-byte buffer.
    pub fn to_bytes(&self) -> [u8; COMMIT_LEN] {
        (COMMIT_LEN as u32).to_le_bytes()
    }
}

/// The SNP platform state (docs/protocol/snp.md#snp-platform-state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnpPlatformState {
    /// SNP not initialised.
    #[default]
    Uninit = 0,
    /// SNP initialised: guests can be created.
    Init = 1,
}

impl SnpPlatformState {
    /// The state's byte.
    pub const fn to_u8(self) -> u8 {
        self as u8
    }

    /// The state for a byte.
    pub const fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(SnpPlatformState::Uninit),
            1 => Some(SnpPlatformState::Init),
            _ => None,
        }
    }

    /// `UNINIT` or `INIT`.
    pub const fn name(self) -> &'static str {
        match self {
            SnpPlatformState::Uninit => "UNINIT",
            SnpPlatformState::Init => "INIT",
        }
    }
}

/// SNP_PLATFORM_STATUS's output (0x20 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnpPlatformStatus {
    /// API_MAJOR.API_MINOR.
    pub api: ApiVersion,
    /// STATE.
    pub state: SnpPlatformState,
    /// IS_RMP_INITIALIZED.
    pub rmp_initialized: bool,
    /// BUILD_ID.
    pub build_id: u32,
    /// Config flags: bit 0 MASK_CHIP_ID, 1 MASK_CHIP_KEY, 2 VLEK_EN,
    /// 3 FEATURE_INFO, 4 RAPL_DIS, 5 CIPHERTEXT_HIDING_CAP,
    /// 6 CIPHERTEXT_HIDING_EN.
    pub flags: u32,
    /// GUEST_COUNT: live guest contexts.
    pub guest_count: u32,
    /// CURRENT_TCB (the product's layout).
    pub current_tcb: u64,
    /// REPORTED_TCB (the product's layout).
    pub reported_tcb: u64,
}

/// [`SnpPlatformStatus::flags`] bits.
pub mod status_flags {
    /// Reports carry a zero chip id.
    pub const MASK_CHIP_ID: u32 = 1 << 0;
    /// The VCEK is not used.
    pub const MASK_CHIP_KEY: u32 = 1 << 1;
    /// A VLEK is loaded.
    pub const VLEK_EN: u32 = 1 << 2;
    /// SNP_FEATURE_INFO is supported.
    pub const FEATURE_INFO: u32 = 1 << 3;
    /// RAPL is disabled.
    pub const RAPL_DIS: u32 = 1 << 4;
    /// Ciphertext hiding is supported.
    pub const CIPHERTEXT_HIDING_CAP: u32 = 1 << 5;
    /// Ciphertext hiding is enabled.
    pub const CIPHERTEXT_HIDING_EN: u32 = 1 << 6;
}

impl SnpPlatformStatus {
    /// The 0x20 bytes the firmware writes.
    pub fn to_bytes(&self) -> [u8; PLATFORM_STATUS_LEN] {
        let mut b = [0u8; PLATFORM_STATUS_LEN];
        b[0] = self.api.major;
        b[1] = self.api.minor;
        b[2] = self.state.to_u8();
        b[3] = u8::from(self.rmp_initialized);
        b[4..8].copy_from_slice(&self.build_id.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12..16].copy_from_slice(&self.guest_count.to_le_bytes());
        b[16..24].copy_from_slice(&self.current_tcb.to_le_bytes());
        b[24..32].copy_from_slice(&self.reported_tcb.to_le_bytes());
        b
    }

    /// Parses the 0x20 bytes (what a host reads back); `None` for an
    /// unknown STATE.
    pub fn from_bytes(b: &[u8; PLATFORM_STATUS_LEN]) -> Option<Self> {
        Some(SnpPlatformStatus {
            api: ApiVersion::new(b[0], b[1]),
            state: SnpPlatformState::from_u8(b[2])?,
            rmp_initialized: b[3] & 1 != 0,
            build_id: u32_at(b, 4),
            flags: u32_at(b, 8),
            guest_count: u32_at(b, 12),
            current_tcb: u64_at(b, 16),
            reported_tcb: u64_at(b, 24),
        })
    }
}
