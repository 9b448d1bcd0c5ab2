//! The emulated AMD Secure Processor.
//!
//! This phase provides the foundations the SEV firmware commands build on:
//!
//! * [`memory`]: the memory-encryption model (the hypervisor's view of
//!   private guest memory as address-tweaked AES-128 ciphertext);
//! * [`store`]: the persistent platform state directory (locking, atomic
//!   writes, sealed state files, the platform identity record);
//! * [`rng`]: injectable randomness.

pub mod memory;
pub mod rng;
pub mod store;
