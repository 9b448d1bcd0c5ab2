//! The SEV platform boundary shared by the VMM (`sevm`) and the tools
//! (`sev-platform`, `sev-owner`).
//!
//! The firmware's jobs are traits of their own:
//!
//! * [`PlatformManagement`]: status, PEK/PDH/CSR/import, GET_ID, reset,
//!   the platform's certificates and encryption parameters;
//! * [`SevPlatform`]: a platform that runs guests, giving each VM its
//!   [`GuestContext`];
//! * per guest: [`LaunchCommands`], [`DebugCommands`],
//!   [`MigrationCommands`], and the [`HostView`] of its memory.
//!
//! Two implementations sit behind them, chosen at run time: [`hardware`]
//! (`/dev/sev` and KVM through `sev-host`) and [`emulated`] (the emulated
//! AMD Secure Processor of `sev-psp`). SEV-ES and SEV-SNP add
//! implementations and job traits here, not parallel paths in the users.
//!
//! Decoded protocol values cross the boundary ([`LaunchSession`],
//! [`PlatformCerts`], [`MigrationTarget`], `Policy`, [`LaunchMeasurement`],
//! [`GuestStatus`]): a length is checked once, where bytes are decoded, and
//! each implementation encodes for its firmware. Firmware failures are
//! [`SevError::Firmware`] with the status code as data.

pub mod emulated;
mod error;
pub mod guest;
pub mod hardware;
pub mod memory;
pub mod platform;
pub mod snp;
#[cfg(test)]
mod test_memory;
pub mod types;
pub mod vmsa_window;

pub use error::{error_chain, OpenError, SevError};
pub use guest::{DebugCommands, GuestContext, LaunchCommands, MigrationCommands};
pub use memory::{GuestMemory, HostRegion, HostView, ViewError};
pub use platform::{PlatformManagement, SevPlatform};
pub use snp::{
    LaunchUpdateError, SnpFinish, SnpGuestContext, SnpGuestState, SnpGuestStatus, SnpLaunchCommands,
};
pub use types::{
    EncryptionParams, GuestKind, GuestStatus, LaunchMeasurement, LaunchSession, MigrationTarget,
    PlatformCerts, PlatformKind, PlatformStatus, VcekChain,
};
pub use vmsa_window::{VmsaPage, VMSA_PAGE_LEN};
