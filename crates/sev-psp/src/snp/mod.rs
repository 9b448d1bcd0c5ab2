//! SEV-SNP in the emulated AMD Secure Processor (docs/protocol/snp.md).
//!
//! The SNP firmware shares the chip with the SEV firmware of
//! [`crate::platform`]: the same platform directory, the same chip id and
//! directory lock, but its own platform state machine
//! (docs/protocol/snp.md#snp-platform-state). This module holds the SNP
//! types; the commands are methods of [`crate::Platform`] (`snp_*`).
//!
//! * [`SnpCommand`]: the SNP command identifiers;
//! * [`identity`]: the chip's persistent SNP identity (product, TCB
//!   versions, the sealed seed the VCEKs derive from, SMT and sockets);
//! * [`buffers`]: the command buffers, decoded once with their reserved
//!   fields checked, and the PLATFORM_STATUS output;
//! * [`guest`]: the guest commands' inputs and outputs, the CPUID page
//!   check and the secrets page;
//! * `state`: the platform-wide volatile SNP state (runtime area);
//! * `vcek`: the VCEKs, derived from the chip's seed and a TCB.

pub mod buffers;
pub mod guest;
pub mod identity;
pub(crate) mod state;
pub(crate) mod vcek;

#[cfg(test)]
mod guest_tests;
#[cfg(test)]
mod request_tests;
#[cfg(test)]
mod rmp_tests;
#[cfg(test)]
mod tests;

pub use buffers::{
    HvFixedRange, SnpCommit, SnpConfig, SnpInitEx, SnpPlatformStatus, SnpShutdownEx,
};
pub use guest::{
    IdBlockInput, Pvalidate, SnpGuestState, SnpGuestStatus, SnpLaunchFinish, SnpLaunchIdentity,
    SnpLaunchStart, SnpLaunchUpdate, SnpPageState, SnpRmpEntry,
};
pub use identity::{SnpIdentity, SnpOptions};
pub use sev_proto::snp::{Product, SnpCommand, TcbVersion};

/// The lowest firmware API version with SNP as Linux uses it (it refuses
/// SNP below 1.51): a platform created with an older `api` has no SNP.
pub const MIN_SNP_API: sev_proto::abi::ApiVersion = sev_proto::abi::ApiVersion::new(1, 51);
