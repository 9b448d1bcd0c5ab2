//! SEV-SNP (docs/protocol/snp.md): the 64-bit guest policy, TCB versions,
//! the SHA-384 launch digest, the launch digest of an OVMF guest, and the ID
//! block and ID authentication. Byte layouts and their checks only; the
//! firmware that enforces them is sev-psp's, the VMM that drives them is
//! sevm.

pub mod cert;
pub mod cert_table;
pub mod chain;
pub mod command;
pub mod crl;
pub mod guest_msg;
pub mod id_block;
pub mod kds;
pub mod launch;
pub mod measure;
pub mod policy;
pub mod report;
pub mod tcb;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use command::SnpCommand;
pub use id_block::{IdAuth, IdBlock, IdBlockError};
pub use launch::{
    uniform_page_digest, BadRegion, LaunchDigest, PageInfo, PageType, INITIAL_VMSA_GPA,
};
pub use measure::{snp_launch_digest, SnpLaunch, SnpMeasureError};
pub use policy::{GuestPolicy, GuestPolicyError};
pub use report::{AttestationReport, ReportError};
pub use tcb::{Product, TcbVersion};
