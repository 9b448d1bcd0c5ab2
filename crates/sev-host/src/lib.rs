//! Hardware SEV backend for Linux: platform commands through `/dev/sev`
//! ([`SevDevice`]), guest commands through KVM's `KVM_MEMORY_ENCRYPT_OP` on a
//! VM fd ([`SevVm`]; for SEV-SNP, [`SnpVm`] with guest_memfd and private
//! memory attributes, and the SNP platform commands in [`snp`]), the host's CPUID 0x8000_001F ([`cpuid_8000_001f`]) and a
//! capability [`probe()`].
//!
//! This is the only crate with ioctl `unsafe` for SEV. Every ioctl goes
//! through one private `issue` function per device, whose payload type is
//! bound to its sub-command id ([`abi::SevPlatformCommand`],
//! [`abi::KvmSevCommand`]); the public wrappers check every length and
//! address before anything reaches the kernel.
//!
//! Firmware failures come back as [`HostError::Firmware`] with the raw SEV
//! status code (docs/protocol/abi.md#status-codes).
//!
//! x86-64 Linux only (the KVM SEV structures come from kvm-bindings' x86-64
//! module).

pub mod abi;
pub mod cpuid;
pub mod device;
pub mod error;
pub mod ioctl;
pub mod probe;
pub mod snp;
pub mod vm;

#[cfg(test)]
mod testutil;

pub use cpuid::{cpuid_8000_001f, SevCpuid};
pub use device::{PlatformStatus, SevDevice};
pub use error::{HostError, Result};
pub use probe::{probe, probe_paths, KvmAmdParams, Probe};
pub use snp::{SnpPlatformStatus, SnpVm};
pub use vm::{GuestStatus, SevVm, MEASUREMENT_LEN};
