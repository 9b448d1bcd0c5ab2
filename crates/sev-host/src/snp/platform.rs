//! The SNP platform commands of `/dev/sev` (docs/protocol/linux.md#dev-sev-snp):
//! SNP_PLATFORM_STATUS, SNP_COMMIT, SNP_SET_CONFIG and SNP_VLEK_LOAD.
//!
//! The driver answers all four with EINVAL while it has not initialised SNP
//! (no `snp_initialized`), and SNP_SET_CONFIG / SNP_VLEK_LOAD with EPERM on
//! a read-only fd ([`SevDevice::open`] opens read-write). A firmware failure
//! comes back as [`HostError::Firmware`](crate::HostError::Firmware) with
//! the SNP status code, as for the legacy commands.

use crate::abi::{
    SevUserDataSnpConfig, SevUserDataSnpStatus, SevUserDataSnpVlekLoad, SnpCommit,
    SNP_WRAPPED_VLEK_SIZE,
};
use crate::device::SevDevice;
use crate::error::Result;

/// SNP_PLATFORM_STATUS flag bit: CHIP_ID is zeroed in reports.
pub const SNP_STATUS_MASK_CHIP_ID: u32 = 1 << 0;
/// SNP_PLATFORM_STATUS flag bit: reports are not signed (no VCEK use).
pub const SNP_STATUS_MASK_CHIP_KEY: u32 = 1 << 1;
/// SNP_PLATFORM_STATUS flag bit: a VLEK is loaded.
pub const SNP_STATUS_VLEK_EN: u32 = 1 << 2;
/// SNP_PLATFORM_STATUS flag bit: the firmware answers SNP_FEATURE_INFO.
pub const SNP_STATUS_FEATURE_INFO: u32 = 1 << 3;

/// SNP_SET_CONFIG flag bit: mask the chip id in reports.
pub const SNP_CONFIG_MASK_CHIP_ID: u32 = 1 << 0;
/// SNP_SET_CONFIG flag bit: mask the chip key (reports unsigned).
pub const SNP_CONFIG_MASK_CHIP_KEY: u32 = 1 << 1;

/// What SNP_PLATFORM_STATUS returns (`struct sev_user_data_snp_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnpPlatformStatus {
    /// API major version.
    pub api_major: u8,
    /// API minor version.
    pub api_minor: u8,
    /// Raw SNP platform state (0 UNINIT, 1 INIT).
    pub state: u8,
    /// The RMP is initialised (byte 3, bit 0).
    pub rmp_initialized: bool,
    /// Firmware build id.
    pub build_id: u32,
    /// Raw flags word ([`SNP_STATUS_MASK_CHIP_ID`] and the other
    /// `SNP_STATUS_*` bits; newer firmware sets more, kept here as is:
    /// docs/protocol/choices.md#u37).
    pub flags: u32,
    /// Number of guest contexts.
    pub guest_count: u32,
    /// CURRENT_TCB, the raw TCB_VERSION of the running firmware.
    pub current_tcb: u64,
    /// REPORTED_TCB, the raw TCB_VERSION put in reports.
    pub reported_tcb: u64,
}

impl SnpPlatformStatus {
    /// Whether reports carry a zero chip id.
    #[must_use]
    pub fn chip_id_masked(&self) -> bool {
        self.flags & SNP_STATUS_MASK_CHIP_ID != 0
    }

    /// Whether reports are left unsigned (VCEK use disabled).
    #[must_use]
    pub fn chip_key_masked(&self) -> bool {
        self.flags & SNP_STATUS_MASK_CHIP_KEY != 0
    }

    /// Whether a VLEK is loaded.
    #[must_use]
    pub fn vlek_loaded(&self) -> bool {
        self.flags & SNP_STATUS_VLEK_EN != 0
    }
}

impl From<SevUserDataSnpStatus> for SnpPlatformStatus {
    fn from(raw: SevUserDataSnpStatus) -> Self {
        Self {
            api_major: raw.api_major,
            api_minor: raw.api_minor,
            state: raw.state,
            rmp_initialized: raw.rmp_flags & 1 != 0,
            build_id: raw.build_id,
            flags: raw.flags,
            guest_count: raw.guest_count,
            current_tcb: raw.current_tcb_version,
            reported_tcb: raw.reported_tcb_version,
        }
    }
}

/// The SNP_SET_CONFIG input (firmware SNP_CONFIG).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnpConfig {
    /// Raw TCB_VERSION to report; 0 means "the current TCB". The firmware
    /// refuses a TCB above the installed one (INVALID_PARAM).
    pub reported_tcb: u64,
    /// Zero the chip id in reports.
    pub mask_chip_id: bool,
    /// Do not sign reports with the VCEK.
    pub mask_chip_key: bool,
}

impl SnpConfig {
    fn to_raw(self) -> SevUserDataSnpConfig {
        let mut flags = 0;
        if self.mask_chip_id {
            flags |= SNP_CONFIG_MASK_CHIP_ID;
        }
        if self.mask_chip_key {
            flags |= SNP_CONFIG_MASK_CHIP_KEY;
        }
        SevUserDataSnpConfig {
            reported_tcb: self.reported_tcb,
            flags,
            ..SevUserDataSnpConfig::default()
        }
    }
}

impl SevDevice {
    /// SNP_PLATFORM_STATUS.
    ///
    /// # Errors
    /// [`HostError::Ioctl`](crate::HostError::Ioctl) (EINVAL when the
    /// driver has not initialised SNP) or
    /// [`HostError::Firmware`](crate::HostError::Firmware).
    pub fn snp_platform_status(&self) -> Result<SnpPlatformStatus> {
        let mut status = SevUserDataSnpStatus::default();
        // SAFETY: the payload holds no addresses; the kernel writes the 32
        // bytes of `status` (copy_to_user of the status page's prefix).
        unsafe { self.issue(&mut status) }?;
        Ok(status.into())
    }

    /// SNP_COMMIT: make the running firmware and its TCB the committed ones
    /// (older firmware can no longer be loaded).
    ///
    /// # Errors
    /// [`HostError::Ioctl`](crate::HostError::Ioctl) or
    /// [`HostError::Firmware`](crate::HostError::Firmware).
    pub fn snp_commit(&self) -> Result<()> {
        // SAFETY: no payload is sent; the driver builds the firmware buffer.
        unsafe { self.issue(&mut SnpCommit) }
    }

    /// SNP_SET_CONFIG: the reported TCB and the chip-id / chip-key masks.
    ///
    /// # Errors
    /// [`HostError::Ioctl`](crate::HostError::Ioctl) (EPERM on a read-only
    /// fd) or [`HostError::Firmware`](crate::HostError::Firmware)
    /// (INVALID_PARAM for a TCB above the installed one).
    pub fn snp_set_config(&self, config: SnpConfig) -> Result<()> {
        let mut raw = config.to_raw();
        // SAFETY: the payload holds no addresses; the kernel only reads it.
        unsafe { self.issue(&mut raw) }
    }

    /// SNP_VLEK_LOAD: load a VLEK wrapped for this chip by AMD's key
    /// server (the opaque 432-byte "hashstick", wrapped version 0).
    ///
    /// # Errors
    /// [`HostError::Ioctl`](crate::HostError::Ioctl) (EPERM on a read-only
    /// fd, EINVAL before SNP is initialised) or
    /// [`HostError::Firmware`](crate::HostError::Firmware).
    pub fn snp_vlek_load(&self, wrapped: &[u8; SNP_WRAPPED_VLEK_SIZE]) -> Result<()> {
        let mut load = SevUserDataSnpVlekLoad {
            // The driver requires the structure's own size here.
            len: VLEK_LOAD_LEN,
            vlek_wrapped_version: 0,
            rsvd: [0; 3],
            vlek_wrapped_address: wrapped.as_ptr() as u64,
        };
        // SAFETY: `vlek_wrapped_address` points to `wrapped`, a live
        // 432-byte buffer (the size the driver copies), only read.
        unsafe { self.issue(&mut load) }
    }
}

/// `sizeof(struct sev_user_data_snp_vlek_load)`, the `len` the driver wants.
const VLEK_LOAD_LEN: u32 = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{not_a_sev_device, sev_device_or_skip};
    use crate::HostError;

    #[test]
    fn vlek_load_len_is_the_struct_size() {
        assert_eq!(
            usize::try_from(VLEK_LOAD_LEN).unwrap(),
            core::mem::size_of::<SevUserDataSnpVlekLoad>()
        );
    }

    #[test]
    fn status_from_raw() {
        let raw = SevUserDataSnpStatus {
            api_major: 1,
            api_minor: 55,
            state: 1,
            rmp_flags: 1,
            build_id: 21,
            flags: SNP_STATUS_MASK_CHIP_ID | SNP_STATUS_VLEK_EN,
            guest_count: 2,
            current_tcb_version: 0xDB18_0000_0000_0004,
            reported_tcb_version: 0x1234,
        };
        let status = SnpPlatformStatus::from(raw);
        assert_eq!((status.api_major, status.api_minor), (1, 55));
        assert_eq!(status.state, 1);
        assert!(status.rmp_initialized);
        assert_eq!(status.build_id, 21);
        assert_eq!(status.guest_count, 2);
        assert_eq!(status.current_tcb, 0xDB18_0000_0000_0004);
        assert_eq!(status.reported_tcb, 0x1234);
        assert!(status.chip_id_masked());
        assert!(!status.chip_key_masked());
        assert!(status.vlek_loaded());
        let none = SnpPlatformStatus::from(SevUserDataSnpStatus::default());
        assert!(!none.rmp_initialized && !none.chip_id_masked() && !none.vlek_loaded());
    }

    #[test]
    fn config_to_raw() {
        let raw = SnpConfig {
            reported_tcb: 0x0300_0000_0000_0002,
            mask_chip_id: true,
            mask_chip_key: false,
        }
        .to_raw();
        let (tcb, flags, rsvd) = (raw.reported_tcb, raw.flags, raw.rsvd1);
        assert_eq!(tcb, 0x0300_0000_0000_0002);
        assert_eq!(flags, SNP_CONFIG_MASK_CHIP_ID);
        assert_eq!(rsvd, [0; 52]);
        let both = SnpConfig {
            mask_chip_id: true,
            mask_chip_key: true,
            ..SnpConfig::default()
        }
        .to_raw();
        let flags = both.flags;
        assert_eq!(flags, 0b11);
    }

    #[test]
    fn snp_commands_reach_the_ioctl() {
        let dev = not_a_sev_device();
        let issued = |r: Result<()>, name: &str| match r {
            Err(HostError::Ioctl { cmd, errno }) => {
                assert_eq!(cmd, name);
                assert_eq!(errno.raw_os_error(), Some(libc::ENOTTY));
            }
            other => panic!("expected {name} to reach the ioctl, got {other:?}"),
        };
        issued(dev.snp_platform_status().map(|_| ()), "SNP_PLATFORM_STATUS");
        issued(dev.snp_commit(), "SNP_COMMIT");
        issued(dev.snp_set_config(SnpConfig::default()), "SNP_SET_CONFIG");
        issued(
            dev.snp_vlek_load(&[0; SNP_WRAPPED_VLEK_SIZE]),
            "SNP_VLEK_LOAD",
        );
    }

    #[test]
    fn hw_snp_platform_status() {
        let Some(dev) = sev_device_or_skip("hw_snp_platform_status") else {
            return;
        };
        match dev.snp_platform_status() {
            Ok(status) => assert!(status.state <= 1, "SNP state {}", status.state),
            // A host without SNP (or with SNP not initialised by the driver).
            Err(HostError::Ioctl { errno, .. }) if errno.raw_os_error() == Some(libc::EINVAL) => {
                eprintln!("SKIPPED: hw_snp_platform_status: SNP not initialised on this host");
            }
            Err(e) => panic!("SNP_PLATFORM_STATUS: {e}"),
        }
    }
}
