//! The emulated AMD Secure Processor.
//!
//! * [`platform`]: the SEV firmware itself ([`Platform`]): persistent
//!   identity, platform and guest commands with their state machines and
//!   checks, the host view of each guest's memory.
//!
//! Its foundations:
//!
//! * [`memory`]: the memory-encryption model (the hypervisor's view of
//!   private guest memory as address-tweaked AES-128 ciphertext);
//! * [`store`]: the persistent platform state directory (locking, atomic
//!   writes, sealed state files, the platform identity record);
//! * [`rng`]: injectable randomness.

pub mod memory;
pub mod platform;
pub mod rng;
pub mod store;

pub use platform::{
    CreateOptions, FwError, GuestStatusInfo, Op, Platform, PlatformConfig, PlatformError,
    PlatformStatusInfo, RequiredLen,
};
