//! The SNP guest commands' inputs and outputs (docs/protocol/snp.md#snp-guest-commands),
//! the CPUID page check (docs/protocol/snp.md#cpuid-page) and the secrets
//! page (docs/protocol/snp.md#secrets-page).
//!
//! In the emulator a guest context is named by a handle (what GCTX_PADDR
//! names on hardware) and guest pages by their guest-physical address; the
//! GCTX_PADDR field of a buffer is not decoded.

use sev_proto::abi::Status;
use sev_proto::snp::{id_block, PageType, Product};

use super::buffers::{u32_at, u64_at};
use super::SnpCommand;
use crate::error::{FwError, Op};

/// What SNP_LAUNCH_FINISH recorded about a guest's identity
/// ([`crate::Platform::snp_launch_identity`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnpLaunchIdentity {
    /// What the verified ID block gave the guest; `None` without one.
    pub id_block: Option<id_block::Identity>,
    /// AUTH_KEY_EN as given (accepted without an ID block, as the 1.55
    /// firmware does).
    pub author_key_en: bool,
}

/// Length of the SNP_LAUNCH_START buffer.
pub const LAUNCH_START_LEN: usize = 0x30;
/// Length of the SNP_LAUNCH_UPDATE buffer.
pub const LAUNCH_UPDATE_LEN: usize = 0x20;
/// Length of the SNP_GUEST_STATUS output.
pub const GUEST_STATUS_LEN: usize = 0x20;
/// A 4 KiB page.
pub const PAGE_LEN: usize = 4096;
/// A 2 MiB page.
pub const LARGE_PAGE_LEN: u64 = 2 << 20;

fn param(cmd: SnpCommand, detail: impl Into<String>) -> FwError {
    FwError::new(Op::Snp(cmd), Status::InvalidParam, detail)
}

/// SNP_LAUNCH_START's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnpLaunchStart {
    /// The 64-bit guest policy, checked by the command.
    pub policy: u64,
    /// MA_EN: the guest is bound to a migration agent.
    pub ma_en: bool,
    /// IMI_EN: the guest will import pages as a migration target.
    pub imi_en: bool,
    /// DESIRED_TSC_FREQ (kHz for Linux; used only with SecureTSC).
    pub desired_tsc_khz: u32,
    /// GOSVW: guest-OS-visible workarounds, copied into the secrets page.
    pub gosvw: [u8; 16],
}

impl SnpLaunchStart {
    /// A launch with `policy` and nothing else.
    pub fn with_policy(policy: u64) -> Self {
        SnpLaunchStart {
            policy,
            ..SnpLaunchStart::default()
        }
    }

    /// Decodes the 0x30-byte buffer: bits 31:2 of the flags must be zero
    /// (INVALID_PARAM). MA_GCTX_PADDR (0x10) is read only with MA_EN.
    pub fn decode(buf: &[u8]) -> Result<Self, FwError> {
        let cmd = SnpCommand::LaunchStart;
        if buf.len() != LAUNCH_START_LEN {
            return Err(param(
                cmd,
                format!("command buffer is {} bytes, must be 0x30", buf.len()),
            ));
        }
        let flags = u32_at(buf, 0x18);
        if flags & !3 != 0 {
            return Err(param(
                cmd,
                format!("reserved flag bits set: {:#x}", flags & !3),
            ));
        }
        let mut gosvw = [0u8; 16];
        gosvw.copy_from_slice(&buf[0x20..0x30]);
        Ok(SnpLaunchStart {
            policy: u64_at(buf, 0x08),
            ma_en: flags & 1 != 0,
            imi_en: flags & 2 != 0,
            desired_tsc_khz: u32_at(buf, 0x1c),
            gosvw,
        })
    }
}

/// SNP_LAUNCH_UPDATE's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnpLaunchUpdate {
    /// The page's guest-physical address (4 KiB aligned; 2 MiB aligned for
    /// a 2 MiB page).
    pub gpa: u64,
    /// PAGE_SIZE: a 2 MiB page (512 units of 4 KiB).
    pub large: bool,
    /// PAGE_TYPE.
    pub page_type: PageType,
    /// IMI_PAGE.
    pub imi: bool,
    /// VMPL1, VMPL2, VMPL3 permission masks (measured).
    pub vmpl_perms: [u8; 3],
}

impl SnpLaunchUpdate {
    /// A 4 KiB page of `page_type` at `gpa`.
    pub fn page(page_type: PageType, gpa: u64) -> Self {
        SnpLaunchUpdate {
            gpa,
            large: false,
            page_type,
            imi: false,
            vmpl_perms: [0; 3],
        }
    }

    /// Decodes the 0x20-byte buffer, PAGE_PADDR (0x10) taken as the GPA:
    /// reserved bits (31:5 of 0x08, 0x0C, byte 0x18, 0x1C) and page types 0
    /// and 7 are INVALID_PARAM.
    pub fn decode(buf: &[u8]) -> Result<Self, FwError> {
        let cmd = SnpCommand::LaunchUpdate;
        if buf.len() != LAUNCH_UPDATE_LEN {
            return Err(param(
                cmd,
                format!("command buffer is {} bytes, must be 0x20", buf.len()),
            ));
        }
        let word = u32_at(buf, 0x08);
        if word & !0x1f != 0 || u32_at(buf, 0x0c) != 0 || buf[0x18] != 0 {
            return Err(param(cmd, "reserved bits set"));
        }
        if u32_at(buf, 0x1c) != 0 {
            return Err(param(cmd, "reserved bytes 0x1C..0x20 are not zero"));
        }
        let raw_type = ((word >> 1) & 7) as u8;
        let page_type = PageType::try_from(raw_type).map_err(|e| param(cmd, e.to_string()))?;
        Ok(SnpLaunchUpdate {
            gpa: u64_at(buf, 0x10),
            large: word & 1 != 0,
            page_type,
            imi: word & 0x10 != 0,
            vmpl_perms: [buf[0x19], buf[0x1a], buf[0x1b]],
        })
    }

    /// The 0x20-byte buffer (GCTX_PADDR 0).
    pub fn to_bytes(&self) -> [u8; LAUNCH_UPDATE_LEN] {
        let mut b = [0u8; LAUNCH_UPDATE_LEN];
        let word =
            u32::from(self.large) | u32::from(self.page_type as u8) << 1 | u32::from(self.imi) << 4;
        b[0x08..0x0c].copy_from_slice(&word.to_le_bytes());
        b[0x10..0x18].copy_from_slice(&self.gpa.to_le_bytes());
        b[0x19..0x1c].copy_from_slice(&self.vmpl_perms);
        b
    }
}

/// SNP_LAUNCH_FINISH's input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnpLaunchFinish {
    /// ID_BLOCK_EN: the ID block (0x60 bytes) and the ID authentication
    /// structure (0x1000 bytes) the firmware checks.
    pub id: Option<IdBlockInput>,
    /// AUTH_KEY_EN: the ID key is signed by an author key.
    pub auth_key_en: bool,
    /// VCEK_DISABLED: no VCEK-signed reports for this guest.
    pub vcek_disabled: bool,
    /// HOST_DATA, copied into every report.
    pub host_data: [u8; 32],
}

/// The ID block and ID authentication structure of SNP_LAUNCH_FINISH, as
/// the host gives them (checked by the command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdBlockInput {
    /// The ID block.
    pub id_block: Vec<u8>,
    /// The ID authentication structure.
    pub id_auth: Vec<u8>,
}

/// The SNP guest states (docs/protocol/snp.md#snp-guest-states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnpGuestState {
    /// Created, not launched.
    Init = 0,
    /// LAUNCH_START done, pages being added.
    Launch = 1,
    /// LAUNCH_FINISH done.
    Running = 2,
}

impl SnpGuestState {
    /// `INIT`, `LAUNCH` or `RUNNING`.
    pub const fn name(self) -> &'static str {
        match self {
            SnpGuestState::Init => "INIT",
            SnpGuestState::Launch => "LAUNCH",
            SnpGuestState::Running => "RUNNING",
        }
    }
}

/// The state a page-state change asks for
/// ([`crate::Platform::snp_page_state_change`],
/// docs/protocol/snp.md#page-state-changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnpPageState {
    /// Assigned to the guest: encrypted, not writable by the host.
    Private,
    /// Hypervisor-owned: stored in the clear, writable by the host.
    Shared,
}

/// What the guest's PVALIDATE returns ([`crate::Platform::snp_pvalidate`],
/// docs/protocol/snp.md#pvalidate): the instruction's result, not a firmware
/// status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pvalidate {
    /// The page's Validated bit was set or cleared as asked.
    Success,
    /// The address is not aligned to the page size asked for.
    FailInput,
    /// The page size asked for is not the size of the page's RMP entry.
    FailSizeMismatch,
    /// The Validated bit already had the value asked for (the instruction
    /// sets rFLAGS.CF; Linux reports it as 255).
    FailNoUpdate,
}

impl Pvalidate {
    /// The value Linux's `pvalidate()` returns for it: EAX, or 255 for
    /// FAIL_NOUPDATE.
    pub fn code(self) -> u32 {
        match self {
            Pvalidate::Success => 0,
            Pvalidate::FailInput => 1,
            Pvalidate::FailSizeMismatch => 6,
            Pvalidate::FailNoUpdate => 255,
        }
    }
}

/// One 4 KiB page's entry in the RMP model of an SNP guest
/// ([`crate::Platform::snp_rmp_entry`], docs/protocol/snp.md#rmp-model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnpRmpEntry {
    /// Assigned to the guest (private).
    pub assigned: bool,
    /// The guest validated it (PVALIDATE, or launched by LAUNCH_UPDATE): the
    /// guest can use it as private memory.
    pub validated: bool,
    /// Part of a 2 MiB RMP entry.
    pub large: bool,
    /// A VMSA page.
    pub vmsa: bool,
}

/// SNP_GUEST_STATUS's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnpGuestStatus {
    /// The policy (0 before LAUNCH_START).
    pub policy: u64,
    /// The ASID (0 = inactive).
    pub asid: u32,
    /// The state.
    pub state: SnpGuestState,
    /// VCEK_DISABLED of LAUNCH_FINISH.
    pub vcek_disabled: bool,
}

impl SnpGuestStatus {
    /// The 0x20 bytes the firmware writes.
    pub fn to_bytes(&self) -> [u8; GUEST_STATUS_LEN] {
        let mut b = [0u8; GUEST_STATUS_LEN];
        b[0..8].copy_from_slice(&self.policy.to_le_bytes());
        b[8..12].copy_from_slice(&self.asid.to_le_bytes());
        b[12] = self.state as u8;
        b[16] = u8::from(self.vcek_disabled);
        b
    }
}

/// CPUID Fn0000_0001 EAX (family, model, stepping) of the emulated
/// processor of `product` (docs/protocol/choices.md#u29).
pub const fn fms(product: Product) -> u32 {
    match product {
        Product::Milan => 0x00A0_0F11,
        Product::Genoa => 0x00A1_0F11,
        Product::Turin => 0x00B0_0F21,
    }
}

/// Most entries of a CPUID page.
pub const MAX_CPUID_ENTRIES: usize = 64;
const CPUID_ENTRY_LEN: usize = 48;
const CPUID_HEADER_LEN: usize = 16;

/// Why a CPUID page was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuidRejection {
    /// The header is malformed (COUNT > 64, reserved fields): nothing is
    /// written back.
    Malformed(String),
    /// Entries break the platform's CPUID policy: the corrected page, to be
    /// written back unencrypted, and what was corrected.
    Corrected(Box<[u8; PAGE_LEN]>, String),
}

/// Checks a CPUID page against the platform's CPUID policy
/// (docs/protocol/snp.md#cpuid-page): COUNT ≤ 64 and zero reserved header
/// fields; in each entry the reserved quadword is zero and leaf 1's EAX is
/// the processor's family/model/stepping `fms`.
pub fn check_cpuid_page(page: &[u8; PAGE_LEN], fms: u32) -> Result<(), CpuidRejection> {
    let count = u32_at(page, 0) as usize;
    if count > MAX_CPUID_ENTRIES {
        return Err(CpuidRejection::Malformed(format!(
            "COUNT is {count}, at most {MAX_CPUID_ENTRIES}"
        )));
    }
    if page[4..CPUID_HEADER_LEN].iter().any(|b| *b != 0) {
        return Err(CpuidRejection::Malformed(
            "reserved header fields are not zero".into(),
        ));
    }
    let mut fixed = Box::new(*page);
    let mut what = Vec::new();
    for i in 0..count {
        let e = CPUID_HEADER_LEN + i * CPUID_ENTRY_LEN;
        let leaf = u32_at(page, e);
        if u64_at(page, e + 0x28) != 0 {
            fixed[e + 0x28..e + 0x30].fill(0);
            what.push(format!("entry {i} (leaf {leaf:#x}): reserved field"));
        }
        if leaf == 1 && u32_at(page, e + 0x18) != fms {
            fixed[e + 0x18..e + 0x1c].copy_from_slice(&fms.to_le_bytes());
            what.push(format!(
                "entry {i} (leaf 0x1): EAX {:#x}, the processor's is {fms:#x}",
                u32_at(page, e + 0x18)
            ));
        }
    }
    if what.is_empty() {
        Ok(())
    } else {
        Err(CpuidRejection::Corrected(fixed, what.join("; ")))
    }
}

/// The secrets-page layout version the emulated firmware writes.
pub const SECRETS_VERSION: u32 = 3;

/// Builds the secrets page (docs/protocol/snp.md#secrets-page): VERSION,
/// IMI_EN, FMS, GOSVW, VMPCK0–3; the guest-OS area, the VMSA tweak bitmap
/// (no tweak), the SVSM fields and TSC_FACTOR (no SecureTSC) are zero.
pub fn secrets_page(
    fms: u32,
    imi_en: bool,
    gosvw: &[u8; 16],
    vmpcks: &[[u8; 32]; 4],
) -> zeroize::Zeroizing<[u8; PAGE_LEN]> {
    let mut page = zeroize::Zeroizing::new([0u8; PAGE_LEN]);
    page[0..4].copy_from_slice(&SECRETS_VERSION.to_le_bytes());
    page[4..8].copy_from_slice(&u32::from(imi_en).to_le_bytes());
    page[8..12].copy_from_slice(&fms.to_le_bytes());
    page[0x10..0x20].copy_from_slice(gosvw);
    for (i, key) in vmpcks.iter().enumerate() {
        let at = 0x20 + 32 * i;
        page[at..at + 32].copy_from_slice(key);
    }
    page
}
