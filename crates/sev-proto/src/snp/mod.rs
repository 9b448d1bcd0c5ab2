//! SEV-SNP (docs/protocol/snp.md): the 64-bit guest policy, TCB versions and
//! the SHA-384 launch digest. Byte layouts only; the firmware that enforces
//! them is sev-psp's, the VMM that drives them is sevm.

pub mod launch;
pub mod policy;
pub mod tcb;

pub use launch::{LaunchDigest, PageInfo, PageType, INITIAL_VMSA_GPA};
pub use policy::{GuestPolicy, GuestPolicyError};
pub use tcb::{Product, TcbVersion};
