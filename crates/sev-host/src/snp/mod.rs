//! SEV-SNP on Linux: the `/dev/sev` SNP platform commands
//! ([`SnpPlatformStatus`], [`SnpConfig`] and the `snp_*` methods of
//! [`SevDevice`](crate::SevDevice)), the KVM launch of an SNP guest
//! ([`SnpVm`]) and the exits its VMM handles ([`MemoryFault`],
//! [`PageStateChange`]). docs/protocol/linux.md#dev-sev-snp,
//! docs/protocol/linux.md#kvm-snp.

/// The page size of every SNP range: GPAs, lengths, guest_memfd offsets and
/// source addresses are multiples of it.
pub const SNP_PAGE_SIZE: u64 = 4096;

mod exit;
mod platform;
mod vm;

pub use exit::{MemoryFault, PageStateChange, PageStateChangeError};
pub use platform::{
    SnpConfig, SnpPlatformStatus, SNP_CONFIG_MASK_CHIP_ID, SNP_CONFIG_MASK_CHIP_KEY,
    SNP_STATUS_FEATURE_INFO, SNP_STATUS_MASK_CHIP_ID, SNP_STATUS_MASK_CHIP_KEY, SNP_STATUS_VLEK_EN,
};
pub use vm::{
    PrivateMemoryRegion, SnpIdentity, SnpLaunchFinish, SnpLaunchStart, SnpPageType, SnpVm,
    LAUNCH_UPDATE_MAX_STALLS,
};
