//! The Linux ABI of SEV: `/dev/sev` user structures (docs/protocol/linux.md#dev-sev) and
//! the KVM `KVM_MEMORY_ENCRYPT_OP` sub-command structures (3.2).
//!
//! The KVM structures come from `kvm-bindings` where it has them (generated
//! from arch/x86/include/uapi/asm/kvm.h and include/uapi/linux/kvm.h, among
//! them the guest_memfd, memory-region-2 and memory-attribute structures);
//! `struct kvm_sev_init` (KVM_SEV_INIT2), the three SNP launch structures
//! (newer than kvm-bindings 0.10) and every `/dev/sev` structure
//! (include/uapi/linux/psp-sev.h, `__packed`) are declared here. The SNP
//! facts are in docs/protocol/linux.md#dev-sev-snp and
//! docs/protocol/linux.md#kvm-snp.
//!
//! Each sub-command id is bound to its payload type through
//! [`SevPlatformCommand`] and [`KvmSevCommand`], so that the only way to send,
//! say, `KVM_SEV_LAUNCH_MEASURE` is with a `kvm_sev_launch_measure` behind it.

pub use kvm_bindings::{
    kvm_enc_region, kvm_sev_attestation_report, kvm_sev_cmd, kvm_sev_dbg, kvm_sev_guest_status,
    kvm_sev_launch_measure, kvm_sev_launch_secret, kvm_sev_launch_start,
    kvm_sev_launch_update_data, kvm_sev_receive_start, kvm_sev_receive_update_data,
    kvm_sev_send_start, kvm_sev_send_update_data,
};

/// Largest blob the kernel copies in or out for one buffer
/// (`SEV_FW_BLOB_MAX_SIZE`, drivers/crypto/ccp/sev-dev.h / include/linux/psp-sev.h).
pub const SEV_FW_BLOB_MAX_SIZE: usize = 0x4000;

/// Page size the KVM SEV code works in (SEND/RECEIVE_UPDATE_DATA must not
/// cross one).
pub const PAGE_SIZE: u64 = 4096;

/// Firmware status `SEV_RET_INVALID_LEN`: a buffer is too small; the firmware
/// wrote the required length back. The answer of a length query.
pub const SEV_RET_INVALID_LEN: u32 = 0x04;
/// Linux pseudo status `SEV_RET_NO_FW_CALL` (-1 as u32): the firmware was
/// never called, so the `error` field carries no firmware status.
pub const SEV_RET_NO_FW_CALL: u32 = u32::MAX;

/// `SEV_STATUS_FLAGS_CONFIG_ES`: bit of `sev_user_data_status.flags` set when
/// SEV-ES was enabled at INIT.
pub const SEV_STATUS_FLAGS_CONFIG_ES: u32 = 0x0100;
/// Bit 0 of `sev_user_data_status.flags`: platform is externally owned.
pub const SEV_STATUS_FLAGS_OWNER: u32 = 0x0001;

/// `/dev/sev` sub-command ids (`cmd` of `struct sev_issue_cmd`,
/// include/uapi/linux/psp-sev.h).
pub mod sev_cmd {
    /// SEV_FACTORY_RESET (firmware PLATFORM_RESET).
    pub const FACTORY_RESET: u32 = 0;
    /// SEV_PLATFORM_STATUS.
    pub const PLATFORM_STATUS: u32 = 1;
    /// SEV_PEK_GEN.
    pub const PEK_GEN: u32 = 2;
    /// SEV_PEK_CSR.
    pub const PEK_CSR: u32 = 3;
    /// SEV_PDH_GEN.
    pub const PDH_GEN: u32 = 4;
    /// SEV_PDH_CERT_EXPORT.
    pub const PDH_CERT_EXPORT: u32 = 5;
    /// SEV_PEK_CERT_IMPORT.
    pub const PEK_CERT_IMPORT: u32 = 6;
    /// SEV_GET_ID (deprecated, fixed 2 x 64-byte output).
    pub const GET_ID: u32 = 7;
    /// SEV_GET_ID2 (address + length, length query supported).
    pub const GET_ID2: u32 = 8;
    /// SNP_PLATFORM_STATUS (`sev_user_data_snp_status`, out).
    pub const SNP_PLATFORM_STATUS: u32 = 9;
    /// SNP_COMMIT (no data: the driver builds the firmware buffer).
    pub const SNP_COMMIT: u32 = 10;
    /// SNP_SET_CONFIG (`sev_user_data_snp_config`, in; firmware SNP_CONFIG).
    pub const SNP_SET_CONFIG: u32 = 11;
    /// SNP_VLEK_LOAD (`sev_user_data_snp_vlek_load`, in).
    pub const SNP_VLEK_LOAD: u32 = 12;
}

/// KVM SEV sub-command ids (`enum sev_cmd_id`, arch/x86/include/uapi/asm/kvm.h).
pub mod kvm_cmd {
    /// KVM_SEV_INIT.
    pub const INIT: u32 = 0;
    /// KVM_SEV_ES_INIT.
    pub const ES_INIT: u32 = 1;
    /// KVM_SEV_LAUNCH_START.
    pub const LAUNCH_START: u32 = 2;
    /// KVM_SEV_LAUNCH_UPDATE_DATA.
    pub const LAUNCH_UPDATE_DATA: u32 = 3;
    /// KVM_SEV_LAUNCH_UPDATE_VMSA.
    pub const LAUNCH_UPDATE_VMSA: u32 = 4;
    /// KVM_SEV_LAUNCH_SECRET.
    pub const LAUNCH_SECRET: u32 = 5;
    /// KVM_SEV_LAUNCH_MEASURE.
    pub const LAUNCH_MEASURE: u32 = 6;
    /// KVM_SEV_LAUNCH_FINISH.
    pub const LAUNCH_FINISH: u32 = 7;
    /// KVM_SEV_SEND_START.
    pub const SEND_START: u32 = 8;
    /// KVM_SEV_SEND_UPDATE_DATA.
    pub const SEND_UPDATE_DATA: u32 = 9;
    /// KVM_SEV_SEND_UPDATE_VMSA (not implemented by KVM).
    pub const SEND_UPDATE_VMSA: u32 = 10;
    /// KVM_SEV_SEND_FINISH.
    pub const SEND_FINISH: u32 = 11;
    /// KVM_SEV_RECEIVE_START.
    pub const RECEIVE_START: u32 = 12;
    /// KVM_SEV_RECEIVE_UPDATE_DATA.
    pub const RECEIVE_UPDATE_DATA: u32 = 13;
    /// KVM_SEV_RECEIVE_UPDATE_VMSA (not implemented by KVM).
    pub const RECEIVE_UPDATE_VMSA: u32 = 14;
    /// KVM_SEV_RECEIVE_FINISH.
    pub const RECEIVE_FINISH: u32 = 15;
    /// KVM_SEV_GUEST_STATUS.
    pub const GUEST_STATUS: u32 = 16;
    /// KVM_SEV_DBG_DECRYPT.
    pub const DBG_DECRYPT: u32 = 17;
    /// KVM_SEV_DBG_ENCRYPT.
    pub const DBG_ENCRYPT: u32 = 18;
    /// KVM_SEV_CERT_EXPORT (reserved, unused).
    pub const CERT_EXPORT: u32 = 19;
    /// KVM_SEV_GET_ATTESTATION_REPORT.
    pub const GET_ATTESTATION_REPORT: u32 = 20;
    /// KVM_SEV_SEND_CANCEL.
    pub const SEND_CANCEL: u32 = 21;
    /// KVM_SEV_INIT2 (22; one third-party binding says 23, which is wrong:
    /// docs/protocol/choices.md#u18).
    pub const INIT2: u32 = 22;
    /// KVM_SEV_SNP_LAUNCH_START (the SNP ids start at 100).
    pub const SNP_LAUNCH_START: u32 = 100;
    /// KVM_SEV_SNP_LAUNCH_UPDATE.
    pub const SNP_LAUNCH_UPDATE: u32 = 101;
    /// KVM_SEV_SNP_LAUNCH_FINISH.
    pub const SNP_LAUNCH_FINISH: u32 = 102;
}

/// KVM machine types for `KVM_CREATE_VM` (arch/x86/include/uapi/asm/kvm.h).
pub mod vm_type {
    /// KVM_X86_DEFAULT_VM: legacy KVM_SEV_INIT / KVM_SEV_ES_INIT.
    pub const DEFAULT: u64 = 0;
    /// KVM_X86_SEV_VM: needs KVM_SEV_INIT2.
    pub const SEV: u64 = 2;
    /// KVM_X86_SEV_ES_VM: needs KVM_SEV_INIT2.
    pub const SEV_ES: u64 = 3;
    /// KVM_X86_SNP_VM: needs KVM_SEV_INIT2, guest_memfd for private memory,
    /// and only accepts the SNP launch commands (docs/protocol/linux.md#kvm-snp).
    pub const SNP: u64 = 4;
}

/// SNP page types of `kvm_sev_snp_launch_update.type`
/// (`KVM_SEV_SNP_PAGE_TYPE_*`, arch/x86/include/uapi/asm/kvm.h). They are the
/// firmware's page types; VMSA (2) is missing because KVM measures the VMSAs
/// itself at LAUNCH_FINISH.
pub mod snp_page_type {
    /// KVM_SEV_SNP_PAGE_TYPE_NORMAL: measured and encrypted data.
    pub const NORMAL: u8 = 0x1;
    /// KVM_SEV_SNP_PAGE_TYPE_ZERO: a zero page (the source is not read).
    pub const ZERO: u8 = 0x3;
    /// KVM_SEV_SNP_PAGE_TYPE_UNMEASURED: encrypted, only its address measured.
    pub const UNMEASURED: u8 = 0x4;
    /// KVM_SEV_SNP_PAGE_TYPE_SECRETS: filled by the firmware.
    pub const SECRETS: u8 = 0x5;
    /// KVM_SEV_SNP_PAGE_TYPE_CPUID: checked against the platform's CPUID
    /// policy; on failure the kernel copies the corrected page back to the
    /// source.
    pub const CPUID: u8 = 0x6;
}

/// `KVM_SEV_SNP_ID_BLOCK_SIZE`: the ID block KVM copies for LAUNCH_FINISH.
pub const SNP_ID_BLOCK_SIZE: usize = 96;
/// `KVM_SEV_SNP_ID_AUTH_SIZE`: the ID authentication structure KVM copies
/// (always the whole 4 KiB; shorter ones are zero-padded by the caller).
pub const SNP_ID_AUTH_SIZE: usize = 4096;
/// `KVM_SEV_SNP_FINISH_DATA_SIZE`: HOST_DATA.
pub const SNP_HOST_DATA_SIZE: usize = 32;
/// Size of the wrapped VLEK ("hashstick") SNP_VLEK_LOAD reads
/// (`struct sev_user_data_snp_wrapped_vlek_hashstick`).
pub const SNP_WRAPPED_VLEK_SIZE: usize = 432;

/// KVM device-attribute group of SEV on `/dev/kvm` (`KVM_X86_GRP_SEV`).
pub const KVM_X86_GRP_SEV: u32 = 1;
/// Attribute of [`KVM_X86_GRP_SEV`]: the VMSA features KVM_SEV_INIT2
/// accepts (`KVM_X86_SEV_VMSA_FEATURES`, a u64).
pub const KVM_X86_SEV_VMSA_FEATURES: u64 = 0;

/// `KVM_HC_MAP_GPA_RANGE` (include/uapi/linux/kvm_para.h): the hypercall
/// number KVM reports in a `KVM_EXIT_HYPERCALL` for an SNP guest's
/// page-state change (docs/protocol/linux.md#snp-exits).
pub const KVM_HC_MAP_GPA_RANGE: u64 = 12;
/// `KVM_MAP_GPA_RANGE_ENCRYPTED` (arch/x86/include/uapi/asm/kvm_para.h):
/// bit 4 of the hypercall's third argument, set for "make private".
pub const KVM_MAP_GPA_RANGE_ENCRYPTED: u64 = 1 << 4;
/// Page-size field of the third argument (bits 0..4): 0 4 KiB, 1 2 MiB,
/// 2 1 GiB.
pub const KVM_MAP_GPA_RANGE_PAGE_SZ_MASK: u64 = 0xF;

pub use kvm_bindings::{
    kvm_create_guest_memfd, kvm_enable_cap, kvm_memory_attributes, kvm_userspace_memory_region2,
    KVM_CAP_EXIT_HYPERCALL, KVM_CAP_GUEST_MEMFD, KVM_CAP_MEMORY_ATTRIBUTES, KVM_CAP_USER_MEMORY2,
    KVM_CAP_VM_TYPES, KVM_EXIT_HYPERCALL, KVM_EXIT_MEMORY_FAULT, KVM_MEMORY_ATTRIBUTE_PRIVATE,
    KVM_MEMORY_EXIT_FLAG_PRIVATE, KVM_MEM_GUEST_MEMFD,
};

/// `struct sev_issue_cmd` (`__packed`, 16 bytes): the argument of
/// `SEV_ISSUE_CMD`. docs/protocol/linux.md#dev-sev.
#[repr(C, packed)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SevIssueCmd {
    /// Sub-command id ([`sev_cmd`]).
    pub cmd: u32,
    /// User pointer to the sub-command structure (0 for none).
    pub data: u64,
    /// Out: firmware status when the ioctl failed with EIO.
    pub error: u32,
}

/// `struct sev_user_data_status` (`__packed`, 12 bytes): PLATFORM_STATUS
/// output, the firmware layout of docs/protocol/commands.md#buffers with bytes 3..7 read
/// as one `flags` word.
#[repr(C, packed)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SevUserDataStatus {
    /// API major version.
    pub api_major: u8,
    /// API minor version.
    pub api_minor: u8,
    /// Platform state (0 UNINIT, 1 INIT, 2 WORKING).
    pub state: u8,
    /// Bit 0 owner (1 = externally owned), bit 8 SEV-ES configured.
    pub flags: u32,
    /// Firmware build id.
    pub build: u8,
    /// Number of guests.
    pub guest_count: u32,
}

/// `struct sev_user_data_pek_csr` (`__packed`, 12 bytes).
#[repr(C, packed)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SevUserDataPekCsr {
    /// User address of the CSR buffer (0 to query the length).
    pub address: u64,
    /// In/out: buffer length / required length.
    pub length: u32,
}

/// `struct sev_user_data_pek_cert_import` (`__packed`, 24 bytes; no reserved
/// words, unlike the firmware buffer).
#[repr(C, packed)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SevUserDataPekCertImport {
    /// User address of the OCA-signed PEK certificate.
    pub pek_cert_address: u64,
    /// Its length.
    pub pek_cert_len: u32,
    /// User address of the OCA certificate.
    pub oca_cert_address: u64,
    /// Its length.
    pub oca_cert_len: u32,
}

/// `struct sev_user_data_pdh_cert_export` (`__packed`, 24 bytes).
#[repr(C, packed)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SevUserDataPdhCertExport {
    /// User address of the PDH certificate buffer.
    pub pdh_cert_address: u64,
    /// In/out: buffer length / required length.
    pub pdh_cert_len: u32,
    /// User address of the PEK ‖ OCA ‖ CEK buffer.
    pub cert_chain_address: u64,
    /// In/out: buffer length / required length.
    pub cert_chain_len: u32,
}

/// `struct sev_user_data_get_id` (`__packed`, 128 bytes; deprecated GET_ID).
#[repr(C, packed)]
#[derive(Debug, Clone, Copy)]
pub struct SevUserDataGetId {
    /// Out: chip id of socket 1.
    pub socket1: [u8; 64],
    /// Out: chip id of socket 2 (zero on a one-socket system).
    pub socket2: [u8; 64],
}

impl Default for SevUserDataGetId {
    fn default() -> Self {
        Self {
            socket1: [0; 64],
            socket2: [0; 64],
        }
    }
}

/// `struct sev_user_data_get_id2` (`__packed`, 12 bytes).
#[repr(C, packed)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SevUserDataGetId2 {
    /// User address of the id buffer (0 to query the length).
    pub address: u64,
    /// In/out: buffer length / required length.
    pub length: u32,
}

/// `struct kvm_sev_init` (48 bytes, natural alignment): KVM_SEV_INIT2 payload.
/// Not in kvm-bindings 0.10.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KvmSevInit {
    /// Initial SEV_FEATURES of the VMSAs (0 for plain SEV; only bit 5
    /// DEBUG_SWAP is accepted for SEV-ES).
    pub vmsa_features: u64,
    /// Must be 0.
    pub flags: u32,
    /// Maximum GHCB protocol version (0 = default; must be 0 for SEV).
    pub ghcb_version: u16,
    /// Padding.
    pub pad1: u16,
    /// Padding.
    pub pad2: [u32; 8],
}

/// `struct sev_user_data_snp_status` (`__packed`, 32 bytes): SNP_PLATFORM_STATUS
/// output, the firmware's status page as is (docs/protocol/linux.md#dev-sev-snp).
/// The header declares bytes 3 and 8..12 as bit fields; they are read here as
/// whole words.
#[repr(C, packed)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SevUserDataSnpStatus {
    /// API major version.
    pub api_major: u8,
    /// API minor version.
    pub api_minor: u8,
    /// Platform state (0 UNINIT, 1 INIT).
    pub state: u8,
    /// Bit 0 IS_RMP_INITIALIZED; the rest reserved.
    pub rmp_flags: u8,
    /// Firmware build id.
    pub build_id: u32,
    /// Bit 0 MASK_CHIP_ID, bit 1 MASK_CHIP_KEY, bit 2 VLEK_EN, bit 3
    /// FEATURE_INFO, bit 4 RAPL_DIS, bit 5 CIPHERTEXT_HIDING_CAP, bit 6
    /// CIPHERTEXT_HIDING_EN (newer headers name more bits than older ones).
    pub flags: u32,
    /// Number of guest contexts.
    pub guest_count: u32,
    /// CURRENT_TCB (TCB_VERSION).
    pub current_tcb_version: u64,
    /// REPORTED_TCB (TCB_VERSION).
    pub reported_tcb_version: u64,
}

/// `struct sev_user_data_snp_config` (`__packed`, 64 bytes): the SNP_SET_CONFIG
/// argument, the firmware's SNP_CONFIG buffer as is.
#[repr(C, packed)]
#[derive(Debug, Clone, Copy)]
pub struct SevUserDataSnpConfig {
    /// TCB_VERSION to put in reports (0: the current TCB).
    pub reported_tcb: u64,
    /// Bit 0 MASK_CHIP_ID, bit 1 MASK_CHIP_KEY; bits 31:2 reserved (0).
    pub flags: u32,
    /// Reserved (0).
    pub rsvd1: [u8; 52],
}

impl Default for SevUserDataSnpConfig {
    fn default() -> Self {
        Self {
            reported_tcb: 0,
            flags: 0,
            rsvd1: [0; 52],
        }
    }
}

/// `struct sev_user_data_snp_vlek_load` (`__packed`, 16 bytes): the
/// SNP_VLEK_LOAD argument.
#[repr(C, packed)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SevUserDataSnpVlekLoad {
    /// Must be 16 (`sizeof` the structure); the driver refuses anything else.
    pub len: u32,
    /// Version of the wrapped VLEK; must be 0.
    pub vlek_wrapped_version: u8,
    /// Reserved (0).
    pub rsvd: [u8; 3],
    /// User address of the 432-byte wrapped VLEK.
    pub vlek_wrapped_address: u64,
}

/// `struct kvm_sev_snp_launch_start` (64 bytes, natural alignment): the
/// KVM_SEV_SNP_LAUNCH_START payload.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KvmSevSnpLaunchStart {
    /// The 64-bit guest policy.
    pub policy: u64,
    /// Guest OS-visible workarounds (GOSVW), opaque to KVM.
    pub gosvw: [u8; 16],
    /// Must be 0.
    pub flags: u16,
    /// Padding (0).
    pub pad0: [u8; 6],
    /// Padding (0).
    pub pad1: [u64; 4],
}

/// `struct kvm_sev_snp_launch_update` (64 bytes, natural alignment): the
/// KVM_SEV_SNP_LAUNCH_UPDATE payload. On success KVM writes back what is
/// left to do (`gfn_start`, `uaddr` and `len` advanced past the pages done).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KvmSevSnpLaunchUpdate {
    /// First guest frame number (GPA / 4096).
    pub gfn_start: u64,
    /// Page-aligned user address of the source (not read for ZERO pages).
    pub uaddr: u64,
    /// Length in bytes, a non-zero multiple of 4096.
    pub len: u64,
    /// Page type ([`snp_page_type`]).
    pub page_type: u8,
    /// Padding (0).
    pub pad0: u8,
    /// Must be 0.
    pub flags: u16,
    /// Padding (0).
    pub pad1: u32,
    /// Padding (0).
    pub pad2: [u64; 4],
}

/// `struct kvm_sev_snp_launch_finish` (88 bytes, natural alignment): the
/// KVM_SEV_SNP_LAUNCH_FINISH payload.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KvmSevSnpLaunchFinish {
    /// User address of the 96-byte ID block (read when `id_block_en`).
    pub id_block_uaddr: u64,
    /// User address of the 4096-byte ID authentication structure (read
    /// when `id_block_en`).
    pub id_auth_uaddr: u64,
    /// 1: an ID block is given.
    pub id_block_en: u8,
    /// 1: the ID auth carries an author key.
    pub auth_key_en: u8,
    /// 1: reports may not be signed with the VCEK.
    pub vcek_disabled: u8,
    /// HOST_DATA, reported as is.
    pub host_data: [u8; SNP_HOST_DATA_SIZE],
    /// Padding (0).
    pub pad0: [u8; 3],
    /// Must be 0.
    pub flags: u16,
    /// Padding (0).
    pub pad1: [u64; 4],
}

/// Binds a `/dev/sev` sub-command id to the structure `data` points to.
///
/// # Safety
///
/// `ID` must be the `/dev/sev` sub-command whose `data` the kernel reads and
/// writes as exactly `Self` (same size and layout), or, when `HAS_DATA` is
/// false, a sub-command that ignores `data` (it is then sent as 0).
pub unsafe trait SevPlatformCommand {
    /// `cmd` value of `struct sev_issue_cmd`.
    const ID: u32;
    /// Kernel name of the sub-command, for errors and logs.
    const NAME: &'static str;
    /// Whether `data` points to `Self` (false: `data` = 0).
    const HAS_DATA: bool = true;
}

/// Binds a KVM SEV sub-command id to the structure `kvm_sev_cmd.data` points
/// to.
///
/// # Safety
///
/// `ID` must be the KVM sub-command whose `data` the kernel reads and writes
/// as exactly `Self` (same size and layout), or, when `HAS_DATA` is false, a
/// sub-command that ignores `data` (it is then sent as 0).
pub unsafe trait KvmSevCommand {
    /// `id` value of `struct kvm_sev_cmd`.
    const ID: u32;
    /// Kernel name of the sub-command, for errors and logs.
    const NAME: &'static str;
    /// Whether `data` points to `Self` (false: `data` = 0).
    const HAS_DATA: bool = true;
}

macro_rules! no_data_command {
    ($(#[$doc:meta])* $name:ident, $trait:ident, $id:expr, $cmd_name:literal) => {
        $(#[$doc])*
        #[derive(Debug, Default, Clone, Copy)]
        pub struct $name;

        // SAFETY: the kernel ignores `data` for this sub-command; HAS_DATA is
        // false so 0 is sent.
        unsafe impl $trait for $name {
            const ID: u32 = $id;
            const NAME: &'static str = $cmd_name;
            const HAS_DATA: bool = false;
        }
    };
}

macro_rules! data_command {
    ($ty:ty, $trait:ident, $id:expr, $cmd_name:literal) => {
        // SAFETY: `$ty` is the structure the kernel declares for this
        // sub-command; its size and every field offset are tested below
        // against docs/protocol/linux.md#dev-sev, docs/protocol/linux.md#kvm.
        unsafe impl $trait for $ty {
            const ID: u32 = $id;
            const NAME: &'static str = $cmd_name;
        }
    };
}

no_data_command!(
    /// SEV_FACTORY_RESET (no data).
    FactoryReset, SevPlatformCommand, sev_cmd::FACTORY_RESET, "SEV_FACTORY_RESET"
);
no_data_command!(
    /// SEV_PEK_GEN (no data).
    PekGen, SevPlatformCommand, sev_cmd::PEK_GEN, "SEV_PEK_GEN"
);
no_data_command!(
    /// SEV_PDH_GEN (no data).
    PdhGen, SevPlatformCommand, sev_cmd::PDH_GEN, "SEV_PDH_GEN"
);
no_data_command!(
    /// SNP_COMMIT (no data: the driver fills the firmware's `{len}` buffer).
    SnpCommit, SevPlatformCommand, sev_cmd::SNP_COMMIT, "SNP_COMMIT"
);
data_command!(
    SevUserDataStatus,
    SevPlatformCommand,
    sev_cmd::PLATFORM_STATUS,
    "SEV_PLATFORM_STATUS"
);
data_command!(
    SevUserDataPekCsr,
    SevPlatformCommand,
    sev_cmd::PEK_CSR,
    "SEV_PEK_CSR"
);
data_command!(
    SevUserDataPdhCertExport,
    SevPlatformCommand,
    sev_cmd::PDH_CERT_EXPORT,
    "SEV_PDH_CERT_EXPORT"
);
data_command!(
    SevUserDataPekCertImport,
    SevPlatformCommand,
    sev_cmd::PEK_CERT_IMPORT,
    "SEV_PEK_CERT_IMPORT"
);
data_command!(
    SevUserDataGetId,
    SevPlatformCommand,
    sev_cmd::GET_ID,
    "SEV_GET_ID"
);
data_command!(
    SevUserDataGetId2,
    SevPlatformCommand,
    sev_cmd::GET_ID2,
    "SEV_GET_ID2"
);

no_data_command!(
    /// KVM_SEV_INIT (no data).
    SevInit, KvmSevCommand, kvm_cmd::INIT, "KVM_SEV_INIT"
);
no_data_command!(
    /// KVM_SEV_ES_INIT (no data).
    SevEsInit, KvmSevCommand, kvm_cmd::ES_INIT, "KVM_SEV_ES_INIT"
);
no_data_command!(
    /// KVM_SEV_LAUNCH_UPDATE_VMSA (no data: every vCPU's VMSA, in index order).
    LaunchUpdateVmsa, KvmSevCommand, kvm_cmd::LAUNCH_UPDATE_VMSA, "KVM_SEV_LAUNCH_UPDATE_VMSA"
);
no_data_command!(
    /// KVM_SEV_LAUNCH_FINISH (no data).
    LaunchFinish, KvmSevCommand, kvm_cmd::LAUNCH_FINISH, "KVM_SEV_LAUNCH_FINISH"
);
no_data_command!(
    /// KVM_SEV_SEND_FINISH (no data).
    SendFinish, KvmSevCommand, kvm_cmd::SEND_FINISH, "KVM_SEV_SEND_FINISH"
);
no_data_command!(
    /// KVM_SEV_SEND_CANCEL (no data).
    SendCancel, KvmSevCommand, kvm_cmd::SEND_CANCEL, "KVM_SEV_SEND_CANCEL"
);
no_data_command!(
    /// KVM_SEV_RECEIVE_FINISH (no data).
    ReceiveFinish, KvmSevCommand, kvm_cmd::RECEIVE_FINISH, "KVM_SEV_RECEIVE_FINISH"
);

data_command!(KvmSevInit, KvmSevCommand, kvm_cmd::INIT2, "KVM_SEV_INIT2");
data_command!(
    KvmSevSnpLaunchStart,
    KvmSevCommand,
    kvm_cmd::SNP_LAUNCH_START,
    "KVM_SEV_SNP_LAUNCH_START"
);
data_command!(
    KvmSevSnpLaunchUpdate,
    KvmSevCommand,
    kvm_cmd::SNP_LAUNCH_UPDATE,
    "KVM_SEV_SNP_LAUNCH_UPDATE"
);
data_command!(
    KvmSevSnpLaunchFinish,
    KvmSevCommand,
    kvm_cmd::SNP_LAUNCH_FINISH,
    "KVM_SEV_SNP_LAUNCH_FINISH"
);
data_command!(
    SevUserDataSnpStatus,
    SevPlatformCommand,
    sev_cmd::SNP_PLATFORM_STATUS,
    "SNP_PLATFORM_STATUS"
);
data_command!(
    SevUserDataSnpConfig,
    SevPlatformCommand,
    sev_cmd::SNP_SET_CONFIG,
    "SNP_SET_CONFIG"
);
data_command!(
    SevUserDataSnpVlekLoad,
    SevPlatformCommand,
    sev_cmd::SNP_VLEK_LOAD,
    "SNP_VLEK_LOAD"
);
data_command!(
    kvm_sev_launch_start,
    KvmSevCommand,
    kvm_cmd::LAUNCH_START,
    "KVM_SEV_LAUNCH_START"
);
data_command!(
    kvm_sev_launch_update_data,
    KvmSevCommand,
    kvm_cmd::LAUNCH_UPDATE_DATA,
    "KVM_SEV_LAUNCH_UPDATE_DATA"
);
data_command!(
    kvm_sev_launch_secret,
    KvmSevCommand,
    kvm_cmd::LAUNCH_SECRET,
    "KVM_SEV_LAUNCH_SECRET"
);
data_command!(
    kvm_sev_launch_measure,
    KvmSevCommand,
    kvm_cmd::LAUNCH_MEASURE,
    "KVM_SEV_LAUNCH_MEASURE"
);
data_command!(
    kvm_sev_send_start,
    KvmSevCommand,
    kvm_cmd::SEND_START,
    "KVM_SEV_SEND_START"
);
data_command!(
    kvm_sev_send_update_data,
    KvmSevCommand,
    kvm_cmd::SEND_UPDATE_DATA,
    "KVM_SEV_SEND_UPDATE_DATA"
);
data_command!(
    kvm_sev_receive_start,
    KvmSevCommand,
    kvm_cmd::RECEIVE_START,
    "KVM_SEV_RECEIVE_START"
);
data_command!(
    kvm_sev_receive_update_data,
    KvmSevCommand,
    kvm_cmd::RECEIVE_UPDATE_DATA,
    "KVM_SEV_RECEIVE_UPDATE_DATA"
);
data_command!(
    kvm_sev_guest_status,
    KvmSevCommand,
    kvm_cmd::GUEST_STATUS,
    "KVM_SEV_GUEST_STATUS"
);
data_command!(
    kvm_sev_attestation_report,
    KvmSevCommand,
    kvm_cmd::GET_ATTESTATION_REPORT,
    "KVM_SEV_GET_ATTESTATION_REPORT"
);

/// KVM_SEV_DBG_DECRYPT payload: `struct kvm_sev_dbg` under its own type, so
/// that it cannot be confused with DBG_ENCRYPT (both share the C struct).
#[repr(transparent)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DbgDecrypt(pub kvm_sev_dbg);

/// KVM_SEV_DBG_ENCRYPT payload: `struct kvm_sev_dbg` under its own type.
#[repr(transparent)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DbgEncrypt(pub kvm_sev_dbg);

data_command!(
    DbgDecrypt,
    KvmSevCommand,
    kvm_cmd::DBG_DECRYPT,
    "KVM_SEV_DBG_DECRYPT"
);
data_command!(
    DbgEncrypt,
    KvmSevCommand,
    kvm_cmd::DBG_ENCRYPT,
    "KVM_SEV_DBG_ENCRYPT"
);

#[cfg(test)]
mod tests {
    //! Sizes and every field offset against docs/protocol/linux.md#dev-sev (the
    //! `__packed` structs of linux include/uapi/linux/psp-sev.h) and 3.2
    //! (arch/x86/include/uapi/asm/kvm.h, natural alignment).
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn sev_issue_cmd_layout() {
        assert_eq!(size_of::<SevIssueCmd>(), 16);
        assert_eq!(align_of::<SevIssueCmd>(), 1);
        assert_eq!(offset_of!(SevIssueCmd, cmd), 0x00);
        assert_eq!(offset_of!(SevIssueCmd, data), 0x04);
        assert_eq!(offset_of!(SevIssueCmd, error), 0x0C);
    }

    #[test]
    fn sev_user_data_status_layout() {
        assert_eq!(size_of::<SevUserDataStatus>(), 12);
        assert_eq!(offset_of!(SevUserDataStatus, api_major), 0x00);
        assert_eq!(offset_of!(SevUserDataStatus, api_minor), 0x01);
        assert_eq!(offset_of!(SevUserDataStatus, state), 0x02);
        assert_eq!(offset_of!(SevUserDataStatus, flags), 0x03);
        assert_eq!(offset_of!(SevUserDataStatus, build), 0x07);
        assert_eq!(offset_of!(SevUserDataStatus, guest_count), 0x08);
    }

    #[test]
    fn sev_user_data_pek_csr_layout() {
        assert_eq!(size_of::<SevUserDataPekCsr>(), 12);
        assert_eq!(offset_of!(SevUserDataPekCsr, address), 0x00);
        assert_eq!(offset_of!(SevUserDataPekCsr, length), 0x08);
    }

    #[test]
    fn sev_user_data_pek_cert_import_layout() {
        assert_eq!(size_of::<SevUserDataPekCertImport>(), 24);
        assert_eq!(offset_of!(SevUserDataPekCertImport, pek_cert_address), 0x00);
        assert_eq!(offset_of!(SevUserDataPekCertImport, pek_cert_len), 0x08);
        assert_eq!(offset_of!(SevUserDataPekCertImport, oca_cert_address), 0x0C);
        assert_eq!(offset_of!(SevUserDataPekCertImport, oca_cert_len), 0x14);
    }

    #[test]
    fn sev_user_data_pdh_cert_export_layout() {
        assert_eq!(size_of::<SevUserDataPdhCertExport>(), 24);
        assert_eq!(offset_of!(SevUserDataPdhCertExport, pdh_cert_address), 0x00);
        assert_eq!(offset_of!(SevUserDataPdhCertExport, pdh_cert_len), 0x08);
        assert_eq!(
            offset_of!(SevUserDataPdhCertExport, cert_chain_address),
            0x0C
        );
        assert_eq!(offset_of!(SevUserDataPdhCertExport, cert_chain_len), 0x14);
    }

    #[test]
    fn sev_user_data_get_id_layout() {
        assert_eq!(size_of::<SevUserDataGetId>(), 128);
        assert_eq!(offset_of!(SevUserDataGetId, socket1), 0x00);
        assert_eq!(offset_of!(SevUserDataGetId, socket2), 0x40);
        assert_eq!(size_of::<SevUserDataGetId2>(), 12);
        assert_eq!(offset_of!(SevUserDataGetId2, address), 0x00);
        assert_eq!(offset_of!(SevUserDataGetId2, length), 0x08);
    }

    #[test]
    fn kvm_sev_cmd_layout() {
        assert_eq!(size_of::<kvm_sev_cmd>(), 24);
        assert_eq!(offset_of!(kvm_sev_cmd, id), 0x00);
        assert_eq!(offset_of!(kvm_sev_cmd, pad0), 0x04);
        assert_eq!(offset_of!(kvm_sev_cmd, data), 0x08);
        assert_eq!(offset_of!(kvm_sev_cmd, error), 0x10);
        assert_eq!(offset_of!(kvm_sev_cmd, sev_fd), 0x14);
    }

    #[test]
    fn kvm_sev_init_layout() {
        assert_eq!(size_of::<KvmSevInit>(), 48);
        assert_eq!(offset_of!(KvmSevInit, vmsa_features), 0x00);
        assert_eq!(offset_of!(KvmSevInit, flags), 0x08);
        assert_eq!(offset_of!(KvmSevInit, ghcb_version), 0x0C);
        assert_eq!(offset_of!(KvmSevInit, pad1), 0x0E);
        assert_eq!(offset_of!(KvmSevInit, pad2), 0x10);
    }

    // include/uapi/linux/psp-sev.h (`__packed`).
    #[test]
    fn sev_user_data_snp_status_layout() {
        assert_eq!(size_of::<SevUserDataSnpStatus>(), 32);
        assert_eq!(align_of::<SevUserDataSnpStatus>(), 1);
        assert_eq!(offset_of!(SevUserDataSnpStatus, api_major), 0x00);
        assert_eq!(offset_of!(SevUserDataSnpStatus, api_minor), 0x01);
        assert_eq!(offset_of!(SevUserDataSnpStatus, state), 0x02);
        assert_eq!(offset_of!(SevUserDataSnpStatus, rmp_flags), 0x03);
        assert_eq!(offset_of!(SevUserDataSnpStatus, build_id), 0x04);
        assert_eq!(offset_of!(SevUserDataSnpStatus, flags), 0x08);
        assert_eq!(offset_of!(SevUserDataSnpStatus, guest_count), 0x0C);
        assert_eq!(offset_of!(SevUserDataSnpStatus, current_tcb_version), 0x10);
        assert_eq!(offset_of!(SevUserDataSnpStatus, reported_tcb_version), 0x18);
    }

    #[test]
    fn sev_user_data_snp_config_layout() {
        assert_eq!(size_of::<SevUserDataSnpConfig>(), 64);
        assert_eq!(align_of::<SevUserDataSnpConfig>(), 1);
        assert_eq!(offset_of!(SevUserDataSnpConfig, reported_tcb), 0x00);
        assert_eq!(offset_of!(SevUserDataSnpConfig, flags), 0x08);
        assert_eq!(offset_of!(SevUserDataSnpConfig, rsvd1), 0x0C);
    }

    #[test]
    fn sev_user_data_snp_vlek_load_layout() {
        assert_eq!(size_of::<SevUserDataSnpVlekLoad>(), 16);
        assert_eq!(align_of::<SevUserDataSnpVlekLoad>(), 1);
        assert_eq!(offset_of!(SevUserDataSnpVlekLoad, len), 0x00);
        assert_eq!(
            offset_of!(SevUserDataSnpVlekLoad, vlek_wrapped_version),
            0x04
        );
        assert_eq!(offset_of!(SevUserDataSnpVlekLoad, rsvd), 0x05);
        assert_eq!(
            offset_of!(SevUserDataSnpVlekLoad, vlek_wrapped_address),
            0x08
        );
        assert_eq!(SNP_WRAPPED_VLEK_SIZE, 432);
    }

    // arch/x86/include/uapi/asm/kvm.h (natural alignment).
    #[test]
    fn kvm_sev_snp_launch_start_layout() {
        assert_eq!(size_of::<KvmSevSnpLaunchStart>(), 64);
        assert_eq!(offset_of!(KvmSevSnpLaunchStart, policy), 0x00);
        assert_eq!(offset_of!(KvmSevSnpLaunchStart, gosvw), 0x08);
        assert_eq!(offset_of!(KvmSevSnpLaunchStart, flags), 0x18);
        assert_eq!(offset_of!(KvmSevSnpLaunchStart, pad0), 0x1A);
        assert_eq!(offset_of!(KvmSevSnpLaunchStart, pad1), 0x20);
    }

    #[test]
    fn kvm_sev_snp_launch_update_layout() {
        assert_eq!(size_of::<KvmSevSnpLaunchUpdate>(), 64);
        assert_eq!(offset_of!(KvmSevSnpLaunchUpdate, gfn_start), 0x00);
        assert_eq!(offset_of!(KvmSevSnpLaunchUpdate, uaddr), 0x08);
        assert_eq!(offset_of!(KvmSevSnpLaunchUpdate, len), 0x10);
        assert_eq!(offset_of!(KvmSevSnpLaunchUpdate, page_type), 0x18);
        assert_eq!(offset_of!(KvmSevSnpLaunchUpdate, pad0), 0x19);
        assert_eq!(offset_of!(KvmSevSnpLaunchUpdate, flags), 0x1A);
        assert_eq!(offset_of!(KvmSevSnpLaunchUpdate, pad1), 0x1C);
        assert_eq!(offset_of!(KvmSevSnpLaunchUpdate, pad2), 0x20);
    }

    #[test]
    fn kvm_sev_snp_launch_finish_layout() {
        assert_eq!(size_of::<KvmSevSnpLaunchFinish>(), 88);
        assert_eq!(offset_of!(KvmSevSnpLaunchFinish, id_block_uaddr), 0x00);
        assert_eq!(offset_of!(KvmSevSnpLaunchFinish, id_auth_uaddr), 0x08);
        assert_eq!(offset_of!(KvmSevSnpLaunchFinish, id_block_en), 0x10);
        assert_eq!(offset_of!(KvmSevSnpLaunchFinish, auth_key_en), 0x11);
        assert_eq!(offset_of!(KvmSevSnpLaunchFinish, vcek_disabled), 0x12);
        assert_eq!(offset_of!(KvmSevSnpLaunchFinish, host_data), 0x13);
        assert_eq!(offset_of!(KvmSevSnpLaunchFinish, pad0), 0x33);
        assert_eq!(offset_of!(KvmSevSnpLaunchFinish, flags), 0x36);
        assert_eq!(offset_of!(KvmSevSnpLaunchFinish, pad1), 0x38);
        assert_eq!(SNP_ID_BLOCK_SIZE, 96);
        assert_eq!(SNP_ID_AUTH_SIZE, 4096);
    }

    // include/uapi/linux/kvm.h (natural alignment), through kvm-bindings.
    #[test]
    fn kvm_userspace_memory_region2_layout() {
        type R = kvm_userspace_memory_region2;
        assert_eq!(size_of::<R>(), 160);
        assert_eq!(offset_of!(R, slot), 0x00);
        assert_eq!(offset_of!(R, flags), 0x04);
        assert_eq!(offset_of!(R, guest_phys_addr), 0x08);
        assert_eq!(offset_of!(R, memory_size), 0x10);
        assert_eq!(offset_of!(R, userspace_addr), 0x18);
        assert_eq!(offset_of!(R, guest_memfd_offset), 0x20);
        assert_eq!(offset_of!(R, guest_memfd), 0x28);
        assert_eq!(offset_of!(R, pad1), 0x2C);
        assert_eq!(offset_of!(R, pad2), 0x30);
    }

    #[test]
    fn kvm_memory_attributes_layout() {
        assert_eq!(size_of::<kvm_memory_attributes>(), 32);
        assert_eq!(offset_of!(kvm_memory_attributes, address), 0x00);
        assert_eq!(offset_of!(kvm_memory_attributes, size), 0x08);
        assert_eq!(offset_of!(kvm_memory_attributes, attributes), 0x10);
        assert_eq!(offset_of!(kvm_memory_attributes, flags), 0x18);
    }

    #[test]
    fn kvm_create_guest_memfd_layout() {
        assert_eq!(size_of::<kvm_create_guest_memfd>(), 64);
        assert_eq!(offset_of!(kvm_create_guest_memfd, size), 0x00);
        assert_eq!(offset_of!(kvm_create_guest_memfd, flags), 0x08);
        assert_eq!(offset_of!(kvm_create_guest_memfd, reserved), 0x10);
    }

    #[test]
    fn kvm_enable_cap_layout() {
        assert_eq!(size_of::<kvm_enable_cap>(), 104);
        assert_eq!(offset_of!(kvm_enable_cap, cap), 0x00);
        assert_eq!(offset_of!(kvm_enable_cap, flags), 0x04);
        assert_eq!(offset_of!(kvm_enable_cap, args), 0x08);
        assert_eq!(offset_of!(kvm_enable_cap, pad), 0x28);
    }

    #[test]
    fn snp_constants_match_the_headers() {
        assert_eq!(vm_type::SNP, 4);
        assert_eq!(
            u64::from(kvm_bindings::KVM_X86_DEFAULT_VM),
            vm_type::DEFAULT
        );
        assert_eq!(KVM_CAP_VM_TYPES, 235);
        assert_eq!(KVM_CAP_USER_MEMORY2, 231);
        assert_eq!(KVM_CAP_MEMORY_ATTRIBUTES, 233);
        assert_eq!(KVM_CAP_GUEST_MEMFD, 234);
        assert_eq!(KVM_CAP_EXIT_HYPERCALL, 201);
        assert_eq!(KVM_MEM_GUEST_MEMFD, 1 << 2);
        assert_eq!(KVM_MEMORY_ATTRIBUTE_PRIVATE, 1 << 3);
        assert_eq!(KVM_MEMORY_EXIT_FLAG_PRIVATE, 1 << 3);
        assert_eq!(KVM_EXIT_HYPERCALL, 3);
        assert_eq!(KVM_EXIT_MEMORY_FAULT, 39);
        assert_eq!(
            [
                snp_page_type::NORMAL,
                snp_page_type::ZERO,
                snp_page_type::UNMEASURED,
                snp_page_type::SECRETS,
                snp_page_type::CPUID
            ],
            [1, 3, 4, 5, 6]
        );
    }

    #[test]
    fn kvm_sev_launch_start_layout() {
        assert_eq!(size_of::<kvm_sev_launch_start>(), 40);
        assert_eq!(offset_of!(kvm_sev_launch_start, handle), 0x00);
        assert_eq!(offset_of!(kvm_sev_launch_start, policy), 0x04);
        assert_eq!(offset_of!(kvm_sev_launch_start, dh_uaddr), 0x08);
        assert_eq!(offset_of!(kvm_sev_launch_start, dh_len), 0x10);
        assert_eq!(offset_of!(kvm_sev_launch_start, session_uaddr), 0x18);
        assert_eq!(offset_of!(kvm_sev_launch_start, session_len), 0x20);
    }

    #[test]
    fn kvm_sev_launch_update_data_layout() {
        assert_eq!(size_of::<kvm_sev_launch_update_data>(), 16);
        assert_eq!(offset_of!(kvm_sev_launch_update_data, uaddr), 0x00);
        assert_eq!(offset_of!(kvm_sev_launch_update_data, len), 0x08);
    }

    #[test]
    fn kvm_sev_launch_secret_layout() {
        assert_eq!(size_of::<kvm_sev_launch_secret>(), 48);
        assert_eq!(offset_of!(kvm_sev_launch_secret, hdr_uaddr), 0x00);
        assert_eq!(offset_of!(kvm_sev_launch_secret, hdr_len), 0x08);
        assert_eq!(offset_of!(kvm_sev_launch_secret, guest_uaddr), 0x10);
        assert_eq!(offset_of!(kvm_sev_launch_secret, guest_len), 0x18);
        assert_eq!(offset_of!(kvm_sev_launch_secret, trans_uaddr), 0x20);
        assert_eq!(offset_of!(kvm_sev_launch_secret, trans_len), 0x28);
    }

    #[test]
    fn kvm_sev_launch_measure_layout() {
        assert_eq!(size_of::<kvm_sev_launch_measure>(), 16);
        assert_eq!(offset_of!(kvm_sev_launch_measure, uaddr), 0x00);
        assert_eq!(offset_of!(kvm_sev_launch_measure, len), 0x08);
    }

    #[test]
    fn kvm_sev_guest_status_layout() {
        // docs/protocol/choices.md#u4: the KVM doc says `__u8 state`, the uapi header
        // has `__u32 state`; the struct is 12 bytes.
        assert_eq!(size_of::<kvm_sev_guest_status>(), 12);
        assert_eq!(offset_of!(kvm_sev_guest_status, handle), 0x00);
        assert_eq!(offset_of!(kvm_sev_guest_status, policy), 0x04);
        assert_eq!(offset_of!(kvm_sev_guest_status, state), 0x08);
        let status = kvm_sev_guest_status::default();
        assert_eq!(core::mem::size_of_val(&status.state), 4);
    }

    #[test]
    fn kvm_sev_dbg_layout() {
        assert_eq!(size_of::<kvm_sev_dbg>(), 24);
        assert_eq!(offset_of!(kvm_sev_dbg, src_uaddr), 0x00);
        assert_eq!(offset_of!(kvm_sev_dbg, dst_uaddr), 0x08);
        assert_eq!(offset_of!(kvm_sev_dbg, len), 0x10);
        // The typed wrappers add nothing.
        assert_eq!(size_of::<DbgDecrypt>(), 24);
        assert_eq!(size_of::<DbgEncrypt>(), 24);
        assert_eq!(align_of::<DbgDecrypt>(), align_of::<kvm_sev_dbg>());
    }

    #[test]
    fn kvm_sev_attestation_report_layout() {
        assert_eq!(size_of::<kvm_sev_attestation_report>(), 32);
        assert_eq!(offset_of!(kvm_sev_attestation_report, mnonce), 0x00);
        assert_eq!(offset_of!(kvm_sev_attestation_report, uaddr), 0x10);
        assert_eq!(offset_of!(kvm_sev_attestation_report, len), 0x18);
    }

    #[test]
    fn kvm_sev_send_start_layout() {
        assert_eq!(size_of::<kvm_sev_send_start>(), 72);
        assert_eq!(offset_of!(kvm_sev_send_start, policy), 0x00);
        assert_eq!(offset_of!(kvm_sev_send_start, pdh_cert_uaddr), 0x08);
        assert_eq!(offset_of!(kvm_sev_send_start, pdh_cert_len), 0x10);
        assert_eq!(offset_of!(kvm_sev_send_start, plat_certs_uaddr), 0x18);
        assert_eq!(offset_of!(kvm_sev_send_start, plat_certs_len), 0x20);
        assert_eq!(offset_of!(kvm_sev_send_start, amd_certs_uaddr), 0x28);
        assert_eq!(offset_of!(kvm_sev_send_start, amd_certs_len), 0x30);
        assert_eq!(offset_of!(kvm_sev_send_start, session_uaddr), 0x38);
        assert_eq!(offset_of!(kvm_sev_send_start, session_len), 0x40);
    }

    #[test]
    fn kvm_sev_send_update_data_layout() {
        assert_eq!(size_of::<kvm_sev_send_update_data>(), 48);
        assert_eq!(offset_of!(kvm_sev_send_update_data, hdr_uaddr), 0x00);
        assert_eq!(offset_of!(kvm_sev_send_update_data, hdr_len), 0x08);
        assert_eq!(offset_of!(kvm_sev_send_update_data, guest_uaddr), 0x10);
        assert_eq!(offset_of!(kvm_sev_send_update_data, guest_len), 0x18);
        assert_eq!(offset_of!(kvm_sev_send_update_data, trans_uaddr), 0x20);
        assert_eq!(offset_of!(kvm_sev_send_update_data, trans_len), 0x28);
    }

    #[test]
    fn kvm_sev_receive_start_layout() {
        assert_eq!(size_of::<kvm_sev_receive_start>(), 40);
        assert_eq!(offset_of!(kvm_sev_receive_start, handle), 0x00);
        assert_eq!(offset_of!(kvm_sev_receive_start, policy), 0x04);
        assert_eq!(offset_of!(kvm_sev_receive_start, pdh_uaddr), 0x08);
        assert_eq!(offset_of!(kvm_sev_receive_start, pdh_len), 0x10);
        assert_eq!(offset_of!(kvm_sev_receive_start, session_uaddr), 0x18);
        assert_eq!(offset_of!(kvm_sev_receive_start, session_len), 0x20);
    }

    #[test]
    fn kvm_sev_receive_update_data_layout() {
        assert_eq!(size_of::<kvm_sev_receive_update_data>(), 48);
        assert_eq!(offset_of!(kvm_sev_receive_update_data, hdr_uaddr), 0x00);
        assert_eq!(offset_of!(kvm_sev_receive_update_data, hdr_len), 0x08);
        assert_eq!(offset_of!(kvm_sev_receive_update_data, guest_uaddr), 0x10);
        assert_eq!(offset_of!(kvm_sev_receive_update_data, guest_len), 0x18);
        assert_eq!(offset_of!(kvm_sev_receive_update_data, trans_uaddr), 0x20);
        assert_eq!(offset_of!(kvm_sev_receive_update_data, trans_len), 0x28);
    }

    #[test]
    fn kvm_enc_region_layout() {
        assert_eq!(size_of::<kvm_enc_region>(), 16);
        assert_eq!(offset_of!(kvm_enc_region, addr), 0x00);
        assert_eq!(offset_of!(kvm_enc_region, size), 0x08);
    }

    #[test]
    fn command_ids_match_reference() {
        // docs/protocol/linux.md#dev-sev, docs/protocol/linux.md#kvm tables.
        assert_eq!(<SevUserDataStatus as SevPlatformCommand>::ID, 1);
        assert_eq!(<SevUserDataPekCsr as SevPlatformCommand>::ID, 3);
        assert_eq!(<SevUserDataPdhCertExport as SevPlatformCommand>::ID, 5);
        assert_eq!(<SevUserDataPekCertImport as SevPlatformCommand>::ID, 6);
        assert_eq!(<SevUserDataGetId as SevPlatformCommand>::ID, 7);
        assert_eq!(<SevUserDataGetId2 as SevPlatformCommand>::ID, 8);
        assert_eq!(<FactoryReset as SevPlatformCommand>::ID, 0);
        assert_eq!(<PekGen as SevPlatformCommand>::ID, 2);
        assert_eq!(<PdhGen as SevPlatformCommand>::ID, 4);
        assert_eq!(<SevUserDataSnpStatus as SevPlatformCommand>::ID, 9);
        assert_eq!(<SnpCommit as SevPlatformCommand>::ID, 10);
        assert_eq!(<SevUserDataSnpConfig as SevPlatformCommand>::ID, 11);
        assert_eq!(<SevUserDataSnpVlekLoad as SevPlatformCommand>::ID, 12);
        const { assert!(!<SnpCommit as SevPlatformCommand>::HAS_DATA) };
        const { assert!(!<PdhGen as SevPlatformCommand>::HAS_DATA) };

        assert_eq!(<SevInit as KvmSevCommand>::ID, 0);
        assert_eq!(<SevEsInit as KvmSevCommand>::ID, 1);
        assert_eq!(<kvm_sev_launch_start as KvmSevCommand>::ID, 2);
        assert_eq!(<kvm_sev_launch_update_data as KvmSevCommand>::ID, 3);
        assert_eq!(<LaunchUpdateVmsa as KvmSevCommand>::ID, 4);
        assert_eq!(<kvm_sev_launch_secret as KvmSevCommand>::ID, 5);
        assert_eq!(<kvm_sev_launch_measure as KvmSevCommand>::ID, 6);
        assert_eq!(<LaunchFinish as KvmSevCommand>::ID, 7);
        assert_eq!(<kvm_sev_send_start as KvmSevCommand>::ID, 8);
        assert_eq!(<kvm_sev_send_update_data as KvmSevCommand>::ID, 9);
        assert_eq!(<SendFinish as KvmSevCommand>::ID, 11);
        assert_eq!(<kvm_sev_receive_start as KvmSevCommand>::ID, 12);
        assert_eq!(<kvm_sev_receive_update_data as KvmSevCommand>::ID, 13);
        assert_eq!(<ReceiveFinish as KvmSevCommand>::ID, 15);
        assert_eq!(<kvm_sev_guest_status as KvmSevCommand>::ID, 16);
        assert_eq!(<DbgDecrypt as KvmSevCommand>::ID, 17);
        assert_eq!(<DbgEncrypt as KvmSevCommand>::ID, 18);
        assert_eq!(<kvm_sev_attestation_report as KvmSevCommand>::ID, 20);
        assert_eq!(<SendCancel as KvmSevCommand>::ID, 21);
        assert_eq!(<KvmSevInit as KvmSevCommand>::ID, 22);
        assert_eq!(<KvmSevSnpLaunchStart as KvmSevCommand>::ID, 100);
        assert_eq!(<KvmSevSnpLaunchUpdate as KvmSevCommand>::ID, 101);
        assert_eq!(<KvmSevSnpLaunchFinish as KvmSevCommand>::ID, 102);
        const { assert!(!<LaunchFinish as KvmSevCommand>::HAS_DATA) };
        const { assert!(<kvm_sev_launch_start as KvmSevCommand>::HAS_DATA) };
    }

    #[test]
    fn kvm_bindings_ids_agree() {
        // Cross-check our ids with kvm-bindings' generated `enum sev_cmd_id`.
        use kvm_bindings as kb;
        assert_eq!(kvm_cmd::INIT, kb::sev_cmd_id_KVM_SEV_INIT);
        assert_eq!(kvm_cmd::ES_INIT, kb::sev_cmd_id_KVM_SEV_ES_INIT);
        assert_eq!(kvm_cmd::LAUNCH_START, kb::sev_cmd_id_KVM_SEV_LAUNCH_START);
        assert_eq!(
            kvm_cmd::LAUNCH_UPDATE_DATA,
            kb::sev_cmd_id_KVM_SEV_LAUNCH_UPDATE_DATA
        );
        assert_eq!(
            kvm_cmd::LAUNCH_UPDATE_VMSA,
            kb::sev_cmd_id_KVM_SEV_LAUNCH_UPDATE_VMSA
        );
        assert_eq!(kvm_cmd::LAUNCH_SECRET, kb::sev_cmd_id_KVM_SEV_LAUNCH_SECRET);
        assert_eq!(
            kvm_cmd::LAUNCH_MEASURE,
            kb::sev_cmd_id_KVM_SEV_LAUNCH_MEASURE
        );
        assert_eq!(kvm_cmd::LAUNCH_FINISH, kb::sev_cmd_id_KVM_SEV_LAUNCH_FINISH);
        assert_eq!(kvm_cmd::SEND_START, kb::sev_cmd_id_KVM_SEV_SEND_START);
        assert_eq!(
            kvm_cmd::SEND_UPDATE_DATA,
            kb::sev_cmd_id_KVM_SEV_SEND_UPDATE_DATA
        );
        assert_eq!(
            kvm_cmd::SEND_UPDATE_VMSA,
            kb::sev_cmd_id_KVM_SEV_SEND_UPDATE_VMSA
        );
        assert_eq!(kvm_cmd::SEND_FINISH, kb::sev_cmd_id_KVM_SEV_SEND_FINISH);
        assert_eq!(kvm_cmd::RECEIVE_START, kb::sev_cmd_id_KVM_SEV_RECEIVE_START);
        assert_eq!(
            kvm_cmd::RECEIVE_UPDATE_DATA,
            kb::sev_cmd_id_KVM_SEV_RECEIVE_UPDATE_DATA
        );
        assert_eq!(
            kvm_cmd::RECEIVE_UPDATE_VMSA,
            kb::sev_cmd_id_KVM_SEV_RECEIVE_UPDATE_VMSA
        );
        assert_eq!(
            kvm_cmd::RECEIVE_FINISH,
            kb::sev_cmd_id_KVM_SEV_RECEIVE_FINISH
        );
        assert_eq!(kvm_cmd::GUEST_STATUS, kb::sev_cmd_id_KVM_SEV_GUEST_STATUS);
        assert_eq!(kvm_cmd::DBG_DECRYPT, kb::sev_cmd_id_KVM_SEV_DBG_DECRYPT);
        assert_eq!(kvm_cmd::DBG_ENCRYPT, kb::sev_cmd_id_KVM_SEV_DBG_ENCRYPT);
        assert_eq!(kvm_cmd::CERT_EXPORT, kb::sev_cmd_id_KVM_SEV_CERT_EXPORT);
        assert_eq!(
            kvm_cmd::GET_ATTESTATION_REPORT,
            kb::sev_cmd_id_KVM_SEV_GET_ATTESTATION_REPORT
        );
        assert_eq!(kvm_cmd::SEND_CANCEL, kb::sev_cmd_id_KVM_SEV_SEND_CANCEL);
        // kvm-bindings 0.10 predates INIT2: its NR_MAX sits where INIT2 goes.
        assert_eq!(kvm_cmd::INIT2, kb::sev_cmd_id_KVM_SEV_NR_MAX);
    }
}
