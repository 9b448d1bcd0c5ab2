//! SEV-SNP (docs/protocol/snp.md): the 64-bit guest policy, TCB versions,
//! the SHA-384 launch digest and the launch digest of an OVMF guest. Byte
//! layouts only; the firmware that enforces them is sev-psp's, the VMM that
//! drives them is sevm.

pub mod launch;
pub mod measure;
pub mod policy;
pub mod tcb;

pub use launch::{LaunchDigest, PageInfo, PageType, INITIAL_VMSA_GPA};
pub use measure::{snp_launch_digest, SnpLaunch, SnpMeasureError};
pub use policy::{GuestPolicy, GuestPolicyError};
pub use tcb::{Product, TcbVersion};
