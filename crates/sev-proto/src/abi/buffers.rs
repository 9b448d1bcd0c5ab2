//! The byte-packed firmware command buffers (SEV-REFERENCE.md section 2.3;
//! sources: linux include/linux/psp-sev.h `struct sev_data_*`, sev-tool
//! src/sevapi.h `*_cmd_buf`).
//!
//! Each buffer is a plain struct with public fields, a `SIZE`, `to_bytes`
//! and a length-checked `from_bytes`. Fields are encoded little-endian at
//! fixed offsets (checked against the buffer size at compile time); reserved
//! fields are not represented: they are written as zero and ignored when
//! decoding.
//!
//! [`CommandBuffer`] binds a command id to the one type that may carry its
//! buffer. Buffers shared by several commands (`HandleOnly`, `LaunchUpdate`,
//! `LaunchSecret`, `Dbg`) are wrapped in one newtype per command
//! (e.g. [`LaunchMeasure`]`(LaunchUpdate)`), and commands without a buffer
//! have a unit type (e.g. [`Shutdown`]), so a typed "issue command" function
//! `fn issue<B: CommandBuffer>(&mut self, buf: &mut B)` can never pair an id
//! with the wrong layout.

use super::command::CommandId;
use super::policy::{ApiVersion, Policy};
use super::state::{GuestState, Owner, PlatformState};

/// A command buffer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BufferError {
    /// The byte slice does not have the buffer's size.
    #[error("{buffer} command buffer must be {expected} bytes, got {actual}")]
    Length {
        /// The command (or buffer) name.
        buffer: &'static str,
        /// The buffer's size.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// A field holds a value with no meaning (e.g. a state byte out of range).
    #[error("{buffer} field {field} has invalid value {value:#x}")]
    InvalidField {
        /// The command (or buffer) name.
        buffer: &'static str,
        /// The field name as in the reference.
        field: &'static str,
        /// The value found.
        value: u64,
    },
}

/// Whether a field of `len` bytes at `off` lies inside a buffer of `size`.
const fn fits(off: usize, len: usize, size: usize) -> bool {
    off + len <= size
}

/// Encoding of one field type at a compile-time offset.
trait Field: Sized {
    fn put<const OFF: usize, const N: usize>(self, b: &mut [u8; N]);
    fn get<const OFF: usize, const N: usize>(b: &[u8; N]) -> Self;
}

macro_rules! le_field {
    ($t:ty, $len:literal) => {
        impl Field for $t {
            fn put<const OFF: usize, const N: usize>(self, b: &mut [u8; N]) {
                const { assert!(fits(OFF, $len, N), "field lies outside its buffer") };
                b[OFF..OFF + $len].copy_from_slice(&self.to_le_bytes());
            }
            fn get<const OFF: usize, const N: usize>(b: &[u8; N]) -> Self {
                const { assert!(fits(OFF, $len, N), "field lies outside its buffer") };
                let mut a = [0u8; $len];
                a.copy_from_slice(&b[OFF..OFF + $len]);
                <$t>::from_le_bytes(a)
            }
        }
    };
}

le_field!(u8, 1);
le_field!(u16, 2);
le_field!(u32, 4);
le_field!(u64, 8);
le_field!(Policy, 4);

impl Field for [u8; 16] {
    fn put<const OFF: usize, const N: usize>(self, b: &mut [u8; N]) {
        const { assert!(fits(OFF, 16, N), "field lies outside its buffer") };
        b[OFF..OFF + 16].copy_from_slice(&self);
    }
    fn get<const OFF: usize, const N: usize>(b: &[u8; N]) -> Self {
        const { assert!(fits(OFF, 16, N), "field lies outside its buffer") };
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[OFF..OFF + 16]);
        a
    }
}

/// Binds a command id to the type of its command buffer.
pub trait CommandBuffer: Sized {
    /// The command this buffer is sent with.
    const ID: CommandId;
    /// Size of the packed buffer in bytes (0 for commands without one).
    const SIZE: usize;
    /// The packed bytes (`SIZE` of them).
    fn encode(&self) -> Vec<u8>;
    /// Decodes exactly `SIZE` bytes.
    fn decode(bytes: &[u8]) -> Result<Self, BufferError>;
}

macro_rules! fw_buffer {
    (
        $(#[$meta:meta])*
        pub struct $name:ident [$size:literal, $label:literal] {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $off:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $name {
            /// Size of the packed buffer in bytes.
            pub const SIZE: usize = $size;

            /// The packed little-endian bytes; reserved fields are zero.
            pub fn to_bytes(&self) -> [u8; $size] {
                let mut b = [0u8; $size];
                $( <$ty as Field>::put::<$off, $size>(self.$field, &mut b); )*
                b
            }

            /// Decodes a buffer of exactly `SIZE` bytes (reserved fields
            /// are ignored).
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, BufferError> {
                let b: &[u8; $size] = bytes.try_into().map_err(|_| BufferError::Length {
                    buffer: $label,
                    expected: $size,
                    actual: bytes.len(),
                })?;
                Ok(Self { $( $field: <$ty as Field>::get::<$off, $size>(b), )* })
            }
        }
    };
}

/// Implements [`CommandBuffer`] for a buffer type used by one command.
macro_rules! bind {
    ($ty:ident => $id:ident) => {
        impl CommandBuffer for $ty {
            const ID: CommandId = CommandId::$id;
            const SIZE: usize = $ty::SIZE;
            fn encode(&self) -> Vec<u8> {
                self.to_bytes().to_vec()
            }
            fn decode(bytes: &[u8]) -> Result<Self, BufferError> {
                $ty::from_bytes(bytes)
            }
        }
    };
}

/// A per-command newtype around a shared buffer, bound to its command.
macro_rules! per_command {
    ($( $(#[$doc:meta])* $name:ident($inner:ident) => $id:ident; )*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name(pub $inner);

        impl std::ops::Deref for $name {
            type Target = $inner;
            fn deref(&self) -> &$inner {
                &self.0
            }
        }

        impl std::ops::DerefMut for $name {
            fn deref_mut(&mut self) -> &mut $inner {
                &mut self.0
            }
        }

        impl From<$inner> for $name {
            fn from(b: $inner) -> Self {
                $name(b)
            }
        }

        impl CommandBuffer for $name {
            const ID: CommandId = CommandId::$id;
            const SIZE: usize = $inner::SIZE;
            fn encode(&self) -> Vec<u8> {
                self.0.to_bytes().to_vec()
            }
            fn decode(bytes: &[u8]) -> Result<Self, BufferError> {
                $inner::from_bytes(bytes).map($name)
            }
        }
    )*};
}

/// A command without a buffer (issued with address 0).
macro_rules! no_buffer {
    ($( $(#[$doc:meta])* $name:ident => $id:ident; )*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name;

        impl CommandBuffer for $name {
            const ID: CommandId = CommandId::$id;
            const SIZE: usize = 0;
            fn encode(&self) -> Vec<u8> {
                Vec::new()
            }
            fn decode(bytes: &[u8]) -> Result<Self, BufferError> {
                if bytes.is_empty() {
                    Ok($name)
                } else {
                    Err(BufferError::Length {
                        buffer: CommandId::$id.name(),
                        expected: 0,
                        actual: bytes.len(),
                    })
                }
            }
        }
    )*};
}

fw_buffer! {
    /// INIT (0x001) — 20 bytes.
    pub struct Init[20, "INIT"] {
        /// Bit 0 ([`Init::FLAG_SEV_ES`]): enable SEV-ES (requires a TMR).
        flags: u32 = 0x00,
        /// Trusted Memory Region for SEV-ES (1 MiB, 1 MiB aligned).
        tmr_paddr: u64 = 0x08,
        /// TMR length.
        tmr_len: u32 = 0x10,
    }
}
bind!(Init => Init);

impl Init {
    /// FLAGS bit 0: SEV-ES enable.
    pub const FLAG_SEV_ES: u32 = 1;
}

fw_buffer! {
    /// INIT_EX (0x00D) — 36 bytes.
    pub struct InitEx[36, "INIT_EX"] {
        /// Must be [`InitEx::LENGTH`] (0x24).
        length: u32 = 0x00,
        /// Bit 0: SEV-ES enable.
        flags: u32 = 0x04,
        /// Trusted Memory Region for SEV-ES.
        tmr_paddr: u64 = 0x08,
        /// TMR length.
        tmr_len: u32 = 0x10,
        /// Host-provided 32 KiB, 4 KiB-aligned non-volatile storage buffer.
        nv_paddr: u64 = 0x18,
        /// Must be [`InitEx::NV_LEN`] (0x8000).
        nv_len: u32 = 0x20,
    }
}
bind!(InitEx => InitEx);

impl InitEx {
    /// The LENGTH field's value: the buffer's own size.
    pub const LENGTH: u32 = 0x24;
    /// The NV buffer length (32 KiB).
    pub const NV_LEN: u32 = 0x8000;

    /// A buffer with LENGTH and NV_LEN filled in.
    pub const fn new(flags: u32, tmr_paddr: u64, tmr_len: u32, nv_paddr: u64) -> Self {
        InitEx {
            length: Self::LENGTH,
            flags,
            tmr_paddr,
            tmr_len,
            nv_paddr,
            nv_len: Self::NV_LEN,
        }
    }
}

fw_buffer! {
    /// PLATFORM_STATUS (0x004) — the 12-byte output is the buffer itself.
    /// [`PlatformStatus::info`] decodes it.
    pub struct PlatformStatus[12, "PLATFORM_STATUS"] {
        /// API_MAJOR.
        api_major: u8 = 0x00,
        /// API_MINOR.
        api_minor: u8 = 0x01,
        /// STATE (0/1/2, [`PlatformState`]).
        state: u8 = 0x02,
        /// OWNER: bit 0 set = externally owned.
        owner: u8 = 0x03,
        /// CONFIG: bit 0 = SEV-ES was enabled at INIT.
        config: u16 = 0x04,
        /// BUILD.
        build: u8 = 0x07,
        /// GUEST_COUNT.
        guest_count: u32 = 0x08,
    }
}
bind!(PlatformStatus => PlatformStatus);

/// PLATFORM_STATUS decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformStatusInfo {
    /// Running firmware API version.
    pub api: ApiVersion,
    /// Platform state.
    pub state: PlatformState,
    /// Ownership.
    pub owner: Owner,
    /// SEV-ES was enabled at INIT.
    pub es_enabled: bool,
    /// Firmware build id.
    pub build: u8,
    /// Number of guests.
    pub guest_count: u32,
}

impl PlatformStatus {
    /// OWNER bit 0: externally owned.
    pub const OWNER_EXTERNAL: u8 = 1;
    /// CONFIG bit 0: SEV-ES enabled.
    pub const CONFIG_ES: u16 = 1;
    /// Linux `flags` view (bytes 3..7 as one u32): owner bit.
    pub const LINUX_FLAGS_OWNER: u32 = 1 << 0;
    /// Linux `flags` view: `SEV_STATUS_FLAGS_CONFIG_ES`.
    pub const LINUX_FLAGS_CONFIG_ES: u32 = 1 << 8;

    /// Decodes the fields; fails only on a STATE byte above 2.
    pub fn info(&self) -> Result<PlatformStatusInfo, BufferError> {
        let state = PlatformState::from_u8(self.state).ok_or(BufferError::InvalidField {
            buffer: "PLATFORM_STATUS",
            field: "STATE",
            value: u64::from(self.state),
        })?;
        Ok(PlatformStatusInfo {
            api: ApiVersion::new(self.api_major, self.api_minor),
            state,
            owner: if self.owner & Self::OWNER_EXTERNAL != 0 {
                Owner::External
            } else {
                Owner::SelfOwned
            },
            es_enabled: self.config & Self::CONFIG_ES != 0,
            build: self.build,
            guest_count: self.guest_count,
        })
    }

    /// Bytes 3..7 as Linux's `sev_user_data_status.flags` u32 (owner in
    /// bit 0, SEV-ES in bit 8).
    pub fn linux_flags(&self) -> u32 {
        u32::from(self.owner) | (u32::from(self.config) << 8)
    }
}

impl From<PlatformStatusInfo> for PlatformStatus {
    fn from(i: PlatformStatusInfo) -> Self {
        PlatformStatus {
            api_major: i.api.major,
            api_minor: i.api.minor,
            state: i.state.to_u8(),
            owner: match i.owner {
                Owner::External => Self::OWNER_EXTERNAL,
                Owner::SelfOwned => 0,
            },
            config: if i.es_enabled { Self::CONFIG_ES } else { 0 },
            build: i.build,
            guest_count: i.guest_count,
        }
    }
}

fw_buffer! {
    /// PEK_CSR (0x006) — 12 bytes.
    pub struct PekCsr[12, "PEK_CSR"] {
        /// Where the CSR (one SEV certificate, 0x824 bytes) is written.
        csr_paddr: u64 = 0x00,
        /// In/out: buffer length; required length on INVALID_LEN.
        csr_len: u32 = 0x08,
    }
}
bind!(PekCsr => PekCsr);

fw_buffer! {
    /// PEK_CERT_IMPORT (0x007) — 28 bytes.
    pub struct PekCertImport[28, "PEK_CERT_IMPORT"] {
        /// The OCA-signed PEK certificate.
        pek_cert_paddr: u64 = 0x00,
        /// Its length.
        pek_cert_len: u32 = 0x08,
        /// The OCA certificate.
        oca_cert_paddr: u64 = 0x10,
        /// Its length.
        oca_cert_len: u32 = 0x18,
    }
}
bind!(PekCertImport => PekCertImport);

fw_buffer! {
    /// PDH_CERT_EXPORT (0x008) — 28 bytes.
    pub struct PdhCertExport[28, "PDH_CERT_EXPORT"] {
        /// Where the PDH certificate (0x824 bytes) is written.
        pdh_cert_paddr: u64 = 0x00,
        /// In/out: its buffer length.
        pdh_cert_len: u32 = 0x08,
        /// Where the platform chain PEK ‖ OCA ‖ CEK (0x186C bytes) is written.
        certs_paddr: u64 = 0x10,
        /// In/out: its buffer length.
        certs_len: u32 = 0x18,
    }
}
bind!(PdhCertExport => PdhCertExport);

fw_buffer! {
    /// DOWNLOAD_FIRMWARE (0x00B) — 12 bytes.
    pub struct DownloadFirmware[12, "DOWNLOAD_FIRMWARE"] {
        /// Firmware image (32-byte aligned).
        fw_paddr: u64 = 0x00,
        /// Image length.
        fw_len: u32 = 0x08,
    }
}
bind!(DownloadFirmware => DownloadFirmware);

fw_buffer! {
    /// GET_ID (0x00C) — 12 bytes.
    pub struct GetId[12, "GET_ID"] {
        /// Where the 64-byte chip id(s) are written (8-byte aligned).
        id_paddr: u64 = 0x00,
        /// In/out: buffer length; required length on INVALID_LEN.
        id_len: u32 = 0x08,
    }
}
bind!(GetId => GetId);

fw_buffer! {
    /// The 4-byte buffer of DECOMMISSION, DEACTIVATE, LAUNCH_FINISH,
    /// SEND_FINISH, SEND_CANCEL and RECEIVE_FINISH; sent through the
    /// per-command wrappers ([`Decommission`], ...).
    pub struct HandleOnly[4, "HANDLE"] {
        /// Guest handle.
        handle: u32 = 0x00,
    }
}

fw_buffer! {
    /// ACTIVATE (0x021) — 8 bytes.
    pub struct Activate[8, "ACTIVATE"] {
        /// Guest handle.
        handle: u32 = 0x00,
        /// ASID to bind the guest's key to.
        asid: u32 = 0x04,
    }
}
bind!(Activate => Activate);

fw_buffer! {
    /// GUEST_STATUS (0x023) — 13 bytes.
    pub struct GuestStatus[13, "GUEST_STATUS"] {
        /// In: guest handle.
        handle: u32 = 0x00,
        /// Out: the guest's policy.
        policy: Policy = 0x04,
        /// Out: ASID (0 if inactive).
        asid: u32 = 0x08,
        /// Out: guest state ([`GuestState`]).
        state: u8 = 0x0C,
    }
}
bind!(GuestStatus => GuestStatus);

impl GuestStatus {
    /// The STATE byte decoded.
    pub fn guest_state(&self) -> Result<GuestState, BufferError> {
        GuestState::from_u8(self.state).ok_or(BufferError::InvalidField {
            buffer: "GUEST_STATUS",
            field: "STATE",
            value: u64::from(self.state),
        })
    }
}

fw_buffer! {
    /// LAUNCH_START (0x030) — 36 bytes.
    pub struct LaunchStart[36, "LAUNCH_START"] {
        /// In: 0 for a new key, or the guest whose key is shared; out: the
        /// new guest's handle.
        handle: u32 = 0x00,
        /// Guest policy.
        policy: Policy = 0x04,
        /// The guest owner's DH certificate (0x824 bytes), or 0.
        godh_cert_paddr: u64 = 0x08,
        /// Its length, or 0.
        godh_cert_len: u32 = 0x10,
        /// The session buffer (0x80 bytes), or 0.
        session_paddr: u64 = 0x18,
        /// Its length, or 0.
        session_len: u32 = 0x20,
    }
}
bind!(LaunchStart => LaunchStart);

fw_buffer! {
    /// The 20-byte buffer of LAUNCH_UPDATE_DATA, LAUNCH_UPDATE_VMSA and
    /// LAUNCH_MEASURE; sent through [`LaunchUpdateData`],
    /// [`LaunchUpdateVmsa`] and [`LaunchMeasure`].
    pub struct LaunchUpdate[20, "LAUNCH_UPDATE"] {
        /// Guest handle.
        handle: u32 = 0x00,
        /// Data region / VMSA page / measurement output buffer.
        paddr: u64 = 0x08,
        /// Length (in/out for LAUNCH_MEASURE).
        len: u32 = 0x10,
    }
}

fw_buffer! {
    /// LAUNCH_SECRET (0x034) — 52 bytes. The same layout is used by
    /// SEND_UPDATE_DATA/VMSA (header and transport buffer are outputs) and
    /// RECEIVE_UPDATE_DATA/VMSA, through their wrappers. (Linux's
    /// `sev_data_send_update_vmsa` lacks the reserved word after HANDLE; the
    /// sev-tool layout is used, SEV-REFERENCE 12 #5.)
    pub struct LaunchSecret[52, "LAUNCH_SECRET"] {
        /// Guest handle.
        handle: u32 = 0x00,
        /// Packet header (0x34 bytes).
        hdr_paddr: u64 = 0x08,
        /// Header length.
        hdr_len: u32 = 0x10,
        /// Guest destination / source.
        guest_paddr: u64 = 0x18,
        /// Guest length.
        guest_len: u32 = 0x20,
        /// Transport buffer.
        trans_paddr: u64 = 0x28,
        /// Transport length.
        trans_len: u32 = 0x30,
    }
}
bind!(LaunchSecret => LaunchSecret);

fw_buffer! {
    /// ATTESTATION (0x036) — 36 bytes.
    pub struct Attestation[36, "ATTESTATION"] {
        /// Guest handle.
        handle: u32 = 0x00,
        /// Where the 0xD0-byte report is written.
        paddr: u64 = 0x08,
        /// The caller's nonce.
        mnonce: [u8; 16] = 0x10,
        /// In/out: buffer length; required length on INVALID_LEN.
        len: u32 = 0x20,
    }
}
bind!(Attestation => Attestation);

fw_buffer! {
    /// SEND_START (0x040) — 68 bytes.
    pub struct SendStart[68, "SEND_START"] {
        /// Guest handle.
        handle: u32 = 0x00,
        /// Out: the guest's policy.
        policy: Policy = 0x04,
        /// Target platform's PDH certificate.
        pdh_cert_paddr: u64 = 0x08,
        /// Its length.
        pdh_cert_len: u32 = 0x10,
        /// Target's PEK ‖ OCA ‖ CEK.
        plat_certs_paddr: u64 = 0x18,
        /// Its length.
        plat_certs_len: u32 = 0x20,
        /// ASK ‖ ARK in AMD CA format.
        amd_certs_paddr: u64 = 0x28,
        /// Its length.
        amd_certs_len: u32 = 0x30,
        /// Out: the 0x80-byte session buffer.
        session_paddr: u64 = 0x38,
        /// In/out: its length.
        session_len: u32 = 0x40,
    }
}
bind!(SendStart => SendStart);

fw_buffer! {
    /// RECEIVE_START (0x050) — 36 bytes.
    pub struct ReceiveStart[36, "RECEIVE_START"] {
        /// In: 0 = new guest (or a guest to share the key with); out: handle.
        handle: u32 = 0x00,
        /// The policy as received from the source.
        policy: Policy = 0x04,
        /// The source platform's PDH certificate.
        pdh_cert_paddr: u64 = 0x08,
        /// Its length.
        pdh_cert_len: u32 = 0x10,
        /// The session buffer.
        session_paddr: u64 = 0x18,
        /// Its length.
        session_len: u32 = 0x20,
    }
}
bind!(ReceiveStart => ReceiveStart);

fw_buffer! {
    /// The 28-byte buffer of DBG_DECRYPT and DBG_ENCRYPT; sent through
    /// [`DbgDecrypt`] and [`DbgEncrypt`].
    pub struct Dbg[28, "DBG"] {
        /// Guest handle.
        handle: u32 = 0x00,
        /// Source address.
        src_paddr: u64 = 0x08,
        /// Destination address.
        dst_paddr: u64 = 0x10,
        /// Length.
        len: u32 = 0x18,
    }
}

per_command! {
    /// DECOMMISSION (0x020).
    Decommission(HandleOnly) => Decommission;
    /// DEACTIVATE (0x022).
    Deactivate(HandleOnly) => Deactivate;
    /// LAUNCH_FINISH (0x035).
    LaunchFinish(HandleOnly) => LaunchFinish;
    /// SEND_FINISH (0x043).
    SendFinish(HandleOnly) => SendFinish;
    /// SEND_CANCEL (0x044).
    SendCancel(HandleOnly) => SendCancel;
    /// RECEIVE_FINISH (0x053).
    ReceiveFinish(HandleOnly) => ReceiveFinish;
    /// LAUNCH_UPDATE_DATA (0x031).
    LaunchUpdateData(LaunchUpdate) => LaunchUpdateData;
    /// LAUNCH_UPDATE_VMSA (0x032).
    LaunchUpdateVmsa(LaunchUpdate) => LaunchUpdateVmsa;
    /// LAUNCH_MEASURE (0x033).
    LaunchMeasure(LaunchUpdate) => LaunchMeasure;
    /// SEND_UPDATE_DATA (0x041).
    SendUpdateData(LaunchSecret) => SendUpdateData;
    /// SEND_UPDATE_VMSA (0x042).
    SendUpdateVmsa(LaunchSecret) => SendUpdateVmsa;
    /// RECEIVE_UPDATE_DATA (0x051).
    ReceiveUpdateData(LaunchSecret) => ReceiveUpdateData;
    /// RECEIVE_UPDATE_VMSA (0x052).
    ReceiveUpdateVmsa(LaunchSecret) => ReceiveUpdateVmsa;
    /// DBG_DECRYPT (0x060).
    DbgDecrypt(Dbg) => DbgDecrypt;
    /// DBG_ENCRYPT (0x061).
    DbgEncrypt(Dbg) => DbgEncrypt;
}

no_buffer! {
    /// SHUTDOWN (0x002), no buffer.
    Shutdown => Shutdown;
    /// PLATFORM_RESET (0x003), no buffer.
    PlatformReset => PlatformReset;
    /// PEK_GEN (0x005), no buffer.
    PekGen => PekGen;
    /// PDH_GEN (0x009), no buffer.
    PdhGen => PdhGen;
    /// DF_FLUSH (0x00A), no buffer.
    DfFlush => DfFlush;
    /// NOP (0x00E, sev-tool only), no buffer.
    Nop => Nop;
}

impl CommandId {
    /// Size of the command's buffer: `Some(0)` for commands without one,
    /// `None` for the sev-tool-only commands whose layout the reference does
    /// not give (RING_BUFFER, COPY, ACTIVATE_EX, SWAP_OUT, SWAP_IN).
    pub const fn buffer_len(self) -> Option<usize> {
        Some(match self {
            CommandId::Init => Init::SIZE,
            CommandId::InitEx => InitEx::SIZE,
            CommandId::PlatformStatus => PlatformStatus::SIZE,
            CommandId::PekCsr => PekCsr::SIZE,
            CommandId::PekCertImport => PekCertImport::SIZE,
            CommandId::PdhCertExport => PdhCertExport::SIZE,
            CommandId::DownloadFirmware => DownloadFirmware::SIZE,
            CommandId::GetId => GetId::SIZE,
            CommandId::Decommission
            | CommandId::Deactivate
            | CommandId::LaunchFinish
            | CommandId::SendFinish
            | CommandId::SendCancel
            | CommandId::ReceiveFinish => HandleOnly::SIZE,
            CommandId::Activate => Activate::SIZE,
            CommandId::GuestStatus => GuestStatus::SIZE,
            CommandId::LaunchStart => LaunchStart::SIZE,
            CommandId::LaunchUpdateData
            | CommandId::LaunchUpdateVmsa
            | CommandId::LaunchMeasure => LaunchUpdate::SIZE,
            CommandId::LaunchSecret
            | CommandId::SendUpdateData
            | CommandId::SendUpdateVmsa
            | CommandId::ReceiveUpdateData
            | CommandId::ReceiveUpdateVmsa => LaunchSecret::SIZE,
            CommandId::Attestation => Attestation::SIZE,
            CommandId::SendStart => SendStart::SIZE,
            CommandId::ReceiveStart => ReceiveStart::SIZE,
            CommandId::DbgDecrypt | CommandId::DbgEncrypt => Dbg::SIZE,
            CommandId::Shutdown
            | CommandId::PlatformReset
            | CommandId::PekGen
            | CommandId::PdhGen
            | CommandId::DfFlush
            | CommandId::Nop => 0,
            CommandId::RingBuffer
            | CommandId::Copy
            | CommandId::ActivateEx
            | CommandId::SwapOut
            | CommandId::SwapIn => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks an encoded buffer against the documented layout: each
    /// `(offset, bytes)` must be found at its offset, the listed fields must
    /// not overlap, and every byte they do not cover (reserved) must be 0.
    fn check_layout(bytes: &[u8], size: usize, fields: &[(usize, &[u8])]) {
        assert_eq!(bytes.len(), size, "size");
        let mut covered = vec![false; size];
        for &(off, want) in fields {
            assert_eq!(&bytes[off..off + want.len()], want, "field at {off:#x}");
            for c in &mut covered[off..off + want.len()] {
                assert!(!*c, "fields overlap at {off:#x}");
                *c = true;
            }
        }
        for (i, c) in covered.iter().enumerate() {
            if !c {
                assert_eq!(bytes[i], 0, "reserved byte {i:#x} not zero");
            }
        }
    }

    // Distinct values for every field so that a swapped or shifted field is
    // detected.
    const A32: u32 = 0x1112_1314;
    const B32: u32 = 0x2122_2324;
    const C32: u32 = 0x3132_3334;
    const D32: u32 = 0x4142_4344;
    const E32: u32 = 0x5152_5354;
    const P64: u64 = 0x6162_6364_6566_6768;
    const Q64: u64 = 0x7172_7374_7576_7778;
    const R64: u64 = 0x8182_8384_8586_8788;
    const S64: u64 = 0x9192_9394_9596_9798;

    fn round_trip<B: CommandBuffer + PartialEq + std::fmt::Debug>(b: &B) -> Vec<u8> {
        let bytes = b.encode();
        assert_eq!(bytes.len(), B::SIZE);
        assert_eq!(B::ID.buffer_len(), Some(B::SIZE), "{}", B::ID);
        assert_eq!(B::ID.has_buffer(), B::SIZE != 0, "{}", B::ID);
        assert_eq!(&B::decode(&bytes).unwrap(), b);
        // Any other length is refused.
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            B::decode(&longer),
            Err(BufferError::Length { expected, actual, .. }) if expected == B::SIZE && actual == B::SIZE + 1
        ));
        if B::SIZE > 0 {
            assert!(B::decode(&bytes[..B::SIZE - 1]).is_err());
            assert!(B::decode(&[]).is_err());
        }
        bytes
    }

    /// SEV-REFERENCE 2.3 INIT.
    #[test]
    fn init_layout() {
        let b = Init {
            flags: A32,
            tmr_paddr: P64,
            tmr_len: B32,
        };
        let bytes = round_trip(&b);
        check_layout(
            &bytes,
            20,
            &[
                (0x00, &A32.to_le_bytes()),
                (0x08, &P64.to_le_bytes()),
                (0x10, &B32.to_le_bytes()),
            ],
        );
        assert_eq!(Init::SIZE, 20);
        assert_eq!(Init::FLAG_SEV_ES, 1);
    }

    /// SEV-REFERENCE 2.3 INIT_EX.
    #[test]
    fn init_ex_layout() {
        let b = InitEx {
            length: A32,
            flags: B32,
            tmr_paddr: P64,
            tmr_len: C32,
            nv_paddr: Q64,
            nv_len: D32,
        };
        let bytes = round_trip(&b);
        check_layout(
            &bytes,
            0x24,
            &[
                (0x00, &A32.to_le_bytes()),
                (0x04, &B32.to_le_bytes()),
                (0x08, &P64.to_le_bytes()),
                (0x10, &C32.to_le_bytes()),
                (0x18, &Q64.to_le_bytes()),
                (0x20, &D32.to_le_bytes()),
            ],
        );
        let n = InitEx::new(1, 0x100000, 0x100000, 0x2000);
        assert_eq!(n.length, 0x24);
        assert_eq!(n.nv_len, 0x8000);
        assert_eq!(n.length as usize, InitEx::SIZE);
    }

    /// SEV-REFERENCE 2.3 PLATFORM_STATUS, and the decoded view.
    #[test]
    fn platform_status_layout_and_view() {
        let b = PlatformStatus {
            api_major: 0x01,
            api_minor: 0x02,
            state: 0x03,
            owner: 0x04,
            config: 0x0605,
            build: 0x07,
            guest_count: A32,
        };
        let bytes = round_trip(&b);
        check_layout(
            &bytes,
            12,
            &[
                (0x00, &[0x01]),
                (0x01, &[0x02]),
                (0x02, &[0x03]),
                (0x03, &[0x04]),
                (0x04, &[0x05, 0x06]),
                (0x07, &[0x07]),
                (0x08, &A32.to_le_bytes()),
            ],
        );
        // The invalid state byte 3 is reported, naming the field.
        assert_eq!(
            b.info(),
            Err(BufferError::InvalidField {
                buffer: "PLATFORM_STATUS",
                field: "STATE",
                value: 3
            })
        );

        // API 1.40 build 40, WORKING, externally owned, ES, 2 guests.
        let raw = [0x01, 0x28, 0x02, 0x01, 0x01, 0x00, 0x00, 0x28, 2, 0, 0, 0];
        let s = PlatformStatus::from_bytes(&raw).unwrap();
        let info = s.info().unwrap();
        assert_eq!(
            info,
            PlatformStatusInfo {
                api: ApiVersion::new(1, 40),
                state: PlatformState::Working,
                owner: Owner::External,
                es_enabled: true,
                build: 40,
                guest_count: 2,
            }
        );
        assert_eq!(s.linux_flags(), 0x101);
        assert_eq!(
            s.linux_flags(),
            PlatformStatus::LINUX_FLAGS_OWNER | PlatformStatus::LINUX_FLAGS_CONFIG_ES
        );
        assert_eq!(PlatformStatus::from(info).to_bytes(), raw);

        let self_owned = PlatformStatus::from_bytes(&[0, 17, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0])
            .unwrap()
            .info()
            .unwrap();
        assert_eq!(self_owned.owner, Owner::SelfOwned);
        assert!(!self_owned.es_enabled);
        assert_eq!(self_owned.state, PlatformState::Uninit);
    }

    /// SEV-REFERENCE 2.3 PEK_CSR, DOWNLOAD_FIRMWARE, GET_ID (12 bytes each).
    #[test]
    fn addr_len_layouts() {
        let want = |bytes: &[u8]| {
            check_layout(
                bytes,
                12,
                &[(0x00, &P64.to_le_bytes()), (0x08, &A32.to_le_bytes())],
            )
        };
        want(&round_trip(&PekCsr {
            csr_paddr: P64,
            csr_len: A32,
        }));
        want(&round_trip(&DownloadFirmware {
            fw_paddr: P64,
            fw_len: A32,
        }));
        want(&round_trip(&GetId {
            id_paddr: P64,
            id_len: A32,
        }));
    }

    /// SEV-REFERENCE 2.3 PEK_CERT_IMPORT and PDH_CERT_EXPORT (28 bytes).
    #[test]
    fn two_blob_layouts() {
        let want = |bytes: &[u8]| {
            check_layout(
                bytes,
                28,
                &[
                    (0x00, &P64.to_le_bytes()),
                    (0x08, &A32.to_le_bytes()),
                    (0x10, &Q64.to_le_bytes()),
                    (0x18, &B32.to_le_bytes()),
                ],
            )
        };
        want(&round_trip(&PekCertImport {
            pek_cert_paddr: P64,
            pek_cert_len: A32,
            oca_cert_paddr: Q64,
            oca_cert_len: B32,
        }));
        want(&round_trip(&PdhCertExport {
            pdh_cert_paddr: P64,
            pdh_cert_len: A32,
            certs_paddr: Q64,
            certs_len: B32,
        }));
    }

    /// SEV-REFERENCE 2.3: the six HANDLE-only commands share 4 bytes.
    #[test]
    fn handle_only_layout_and_bindings() {
        let h = HandleOnly { handle: A32 };
        check_layout(&h.to_bytes(), 4, &[(0x00, &A32.to_le_bytes())]);
        let ids = [
            round_trip(&Decommission(h)),
            round_trip(&Deactivate(h)),
            round_trip(&LaunchFinish(h)),
            round_trip(&SendFinish(h)),
            round_trip(&SendCancel(h)),
            round_trip(&ReceiveFinish(h)),
        ];
        for bytes in ids {
            assert_eq!(bytes, A32.to_le_bytes());
        }
        assert_eq!(Decommission::ID, CommandId::Decommission);
        assert_eq!(Deactivate::ID, CommandId::Deactivate);
        assert_eq!(LaunchFinish::ID, CommandId::LaunchFinish);
        assert_eq!(SendFinish::ID, CommandId::SendFinish);
        assert_eq!(SendCancel::ID, CommandId::SendCancel);
        assert_eq!(ReceiveFinish::ID, CommandId::ReceiveFinish);
        // Deref reaches the shared fields.
        let mut d = Deactivate::from(h);
        d.handle = 5;
        assert_eq!(d.0.handle, 5);
    }

    /// SEV-REFERENCE 2.3 ACTIVATE.
    #[test]
    fn activate_layout() {
        let bytes = round_trip(&Activate {
            handle: A32,
            asid: B32,
        });
        check_layout(
            &bytes,
            8,
            &[(0x00, &A32.to_le_bytes()), (0x04, &B32.to_le_bytes())],
        );
    }

    /// SEV-REFERENCE 2.3 GUEST_STATUS (13 bytes).
    #[test]
    fn guest_status_layout() {
        let b = GuestStatus {
            handle: A32,
            policy: Policy::from_bits(B32),
            asid: C32,
            state: 0x06,
        };
        let bytes = round_trip(&b);
        check_layout(
            &bytes,
            13,
            &[
                (0x00, &A32.to_le_bytes()),
                (0x04, &B32.to_le_bytes()),
                (0x08, &C32.to_le_bytes()),
                (0x0C, &[0x06]),
            ],
        );
        assert_eq!(b.guest_state(), Ok(GuestState::Sent));
        let bad = GuestStatus { state: 7, ..b };
        assert!(matches!(
            bad.guest_state(),
            Err(BufferError::InvalidField {
                field: "STATE",
                value: 7,
                ..
            })
        ));
    }

    /// SEV-REFERENCE 2.3 LAUNCH_START and RECEIVE_START (36 bytes, same shape).
    #[test]
    fn launch_and_receive_start_layouts() {
        let want = |bytes: &[u8]| {
            check_layout(
                bytes,
                36,
                &[
                    (0x00, &A32.to_le_bytes()),
                    (0x04, &B32.to_le_bytes()),
                    (0x08, &P64.to_le_bytes()),
                    (0x10, &C32.to_le_bytes()),
                    (0x18, &Q64.to_le_bytes()),
                    (0x20, &D32.to_le_bytes()),
                ],
            )
        };
        want(&round_trip(&LaunchStart {
            handle: A32,
            policy: Policy::from_bits(B32),
            godh_cert_paddr: P64,
            godh_cert_len: C32,
            session_paddr: Q64,
            session_len: D32,
        }));
        want(&round_trip(&ReceiveStart {
            handle: A32,
            policy: Policy::from_bits(B32),
            pdh_cert_paddr: P64,
            pdh_cert_len: C32,
            session_paddr: Q64,
            session_len: D32,
        }));
    }

    /// SEV-REFERENCE 2.3 LAUNCH_UPDATE_DATA / _VMSA / LAUNCH_MEASURE.
    #[test]
    fn launch_update_layout_and_bindings() {
        let b = LaunchUpdate {
            handle: A32,
            paddr: P64,
            len: B32,
        };
        for bytes in [
            round_trip(&LaunchUpdateData(b)),
            round_trip(&LaunchUpdateVmsa(b)),
            round_trip(&LaunchMeasure(b)),
        ] {
            check_layout(
                &bytes,
                20,
                &[
                    (0x00, &A32.to_le_bytes()),
                    (0x08, &P64.to_le_bytes()),
                    (0x10, &B32.to_le_bytes()),
                ],
            );
        }
        assert_eq!(LaunchUpdateData::ID, CommandId::LaunchUpdateData);
        assert_eq!(LaunchUpdateVmsa::ID, CommandId::LaunchUpdateVmsa);
        assert_eq!(LaunchMeasure::ID, CommandId::LaunchMeasure);
    }

    /// SEV-REFERENCE 2.3 LAUNCH_SECRET (52 bytes) and the SEND/RECEIVE
    /// update commands that share it.
    #[test]
    fn launch_secret_layout_and_bindings() {
        let b = LaunchSecret {
            handle: A32,
            hdr_paddr: P64,
            hdr_len: B32,
            guest_paddr: Q64,
            guest_len: C32,
            trans_paddr: R64,
            trans_len: D32,
        };
        for bytes in [
            round_trip(&b),
            round_trip(&SendUpdateData(b)),
            round_trip(&SendUpdateVmsa(b)),
            round_trip(&ReceiveUpdateData(b)),
            round_trip(&ReceiveUpdateVmsa(b)),
        ] {
            check_layout(
                &bytes,
                0x34,
                &[
                    (0x00, &A32.to_le_bytes()),
                    (0x08, &P64.to_le_bytes()),
                    (0x10, &B32.to_le_bytes()),
                    (0x18, &Q64.to_le_bytes()),
                    (0x20, &C32.to_le_bytes()),
                    (0x28, &R64.to_le_bytes()),
                    (0x30, &D32.to_le_bytes()),
                ],
            );
        }
        assert_eq!(LaunchSecret::ID, CommandId::LaunchSecret);
        assert_eq!(SendUpdateData::ID, CommandId::SendUpdateData);
        assert_eq!(SendUpdateVmsa::ID, CommandId::SendUpdateVmsa);
        assert_eq!(ReceiveUpdateData::ID, CommandId::ReceiveUpdateData);
        assert_eq!(ReceiveUpdateVmsa::ID, CommandId::ReceiveUpdateVmsa);
    }

    /// SEV-REFERENCE 2.3 ATTESTATION (36 bytes).
    #[test]
    fn attestation_layout() {
        let mnonce: [u8; 16] = core::array::from_fn(|i| 0xA0 + i as u8);
        let bytes = round_trip(&Attestation {
            handle: A32,
            paddr: P64,
            mnonce,
            len: B32,
        });
        check_layout(
            &bytes,
            36,
            &[
                (0x00, &A32.to_le_bytes()),
                (0x08, &P64.to_le_bytes()),
                (0x10, &mnonce),
                (0x20, &B32.to_le_bytes()),
            ],
        );
    }

    /// SEV-REFERENCE 2.3 SEND_START (68 bytes).
    #[test]
    fn send_start_layout() {
        let bytes = round_trip(&SendStart {
            handle: A32,
            policy: Policy::from_bits(B32),
            pdh_cert_paddr: P64,
            pdh_cert_len: C32,
            plat_certs_paddr: Q64,
            plat_certs_len: D32,
            amd_certs_paddr: R64,
            amd_certs_len: E32,
            session_paddr: S64,
            session_len: 0x0102_0304,
        });
        check_layout(
            &bytes,
            0x44,
            &[
                (0x00, &A32.to_le_bytes()),
                (0x04, &B32.to_le_bytes()),
                (0x08, &P64.to_le_bytes()),
                (0x10, &C32.to_le_bytes()),
                (0x18, &Q64.to_le_bytes()),
                (0x20, &D32.to_le_bytes()),
                (0x28, &R64.to_le_bytes()),
                (0x30, &E32.to_le_bytes()),
                (0x38, &S64.to_le_bytes()),
                (0x40, &[0x04, 0x03, 0x02, 0x01]),
            ],
        );
    }

    /// SEV-REFERENCE 2.3 DBG_DECRYPT / DBG_ENCRYPT (28 bytes).
    #[test]
    fn dbg_layout_and_bindings() {
        let b = Dbg {
            handle: A32,
            src_paddr: P64,
            dst_paddr: Q64,
            len: B32,
        };
        for bytes in [round_trip(&DbgDecrypt(b)), round_trip(&DbgEncrypt(b))] {
            check_layout(
                &bytes,
                28,
                &[
                    (0x00, &A32.to_le_bytes()),
                    (0x08, &P64.to_le_bytes()),
                    (0x10, &Q64.to_le_bytes()),
                    (0x18, &B32.to_le_bytes()),
                ],
            );
        }
        assert_eq!(DbgDecrypt::ID, CommandId::DbgDecrypt);
        assert_eq!(DbgEncrypt::ID, CommandId::DbgEncrypt);
    }

    #[test]
    fn commands_without_buffer() {
        round_trip(&Shutdown);
        round_trip(&PlatformReset);
        round_trip(&PekGen);
        round_trip(&PdhGen);
        round_trip(&DfFlush);
        round_trip(&Nop);
        assert!(matches!(
            Shutdown::decode(&[0]),
            Err(BufferError::Length {
                buffer: "SHUTDOWN",
                expected: 0,
                actual: 1
            })
        ));
    }

    /// Every command either has a bound type (checked by `round_trip` in the
    /// tests above) or is one of the layout-less sev-tool commands.
    #[test]
    fn every_command_has_a_buffer_length_or_is_sev_tool_only() {
        let mut unknown = Vec::new();
        for &c in CommandId::ALL {
            match c.buffer_len() {
                Some(0) => assert!(!c.has_buffer(), "{c}"),
                Some(_) => assert!(c.has_buffer(), "{c}"),
                None => unknown.push(c),
            }
        }
        assert_eq!(
            unknown,
            [
                CommandId::RingBuffer,
                CommandId::Copy,
                CommandId::ActivateEx,
                CommandId::SwapOut,
                CommandId::SwapIn
            ]
        );
    }

    #[test]
    fn length_error_names_buffer() {
        let e = LaunchStart::from_bytes(&[0; 35]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "LAUNCH_START command buffer must be 36 bytes, got 35"
        );
    }
}
