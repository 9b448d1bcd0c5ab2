//! The AMD SEV protocol, exact to docs/protocol/README.md: ABI types, certificates
//! and chain verification, the guest owner's key agreement and wrapping, the
//! measurement, secret and transport packets, attestation reports and OVMF
//! metadata, and SEV-SNP's policy, TCB versions and launch digest. No I/O
//! and no unsafe code: every function takes and returns bytes.
#![forbid(unsafe_code)]

pub mod abi;
pub mod attestation;
pub mod cert;
pub mod guid;
pub mod hash;
pub mod kdf;
pub mod measurement;
pub mod ovmf;
pub mod secret;
pub mod secret_table;
pub mod session;
pub mod snp;
pub mod vmsa;

pub use guid::Guid;
