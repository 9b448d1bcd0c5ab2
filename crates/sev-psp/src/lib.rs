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
//! * [`rng`]: injectable randomness;
//! * [`snp`]: the SEV-SNP types (the SNP commands are `Platform::snp_*`).
//!
//! # A launch, end to end
//!
//! ```no_run
//! use sev_proto::abi::Policy;
//! use sev_proto::cert::sev::Certificate;
//! use sev_proto::session::OwnerSession;
//! use sev_psp::memory::{Region, VecBacking};
//! use sev_psp::rng::os_rng;
//! use sev_psp::{CreateOptions, Platform};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Once per platform directory (seconds: RSA key generation), then open.
//! let platform = Platform::create("/tmp/sevm-platform", CreateOptions::default(), os_rng())?;
//! platform.init(false)?;
//!
//! // The guest owner: the PDH (verify the chain first, see
//! // `sev_proto::cert::chain`), a session for it.
//! let (mut pdh, mut chain) = (vec![0; 0x824], vec![0; 0x186c]);
//! platform.pdh_cert_export(&mut pdh, &mut chain)?;
//! let pdh_key = *Certificate::decode(&pdh)?.ec_public_key()?;
//! let policy = Policy::from_bits(Policy::NODBG);
//! let owner = OwnerSession::new(&pdh_key, policy.bits(), &mut os_rng());
//! let godh = Certificate::godh(&owner.godh_public()).encode();
//!
//! // The VMM, over its guest memory.
//! let mem = VecBacking::new(&[Region { gpa: 0, len: 0x10_0000 }])?;
//! let handle = platform.launch_start(
//!     0,
//!     policy,
//!     Some(&godh),
//!     Some(&owner.session_buffer().to_bytes()),
//! )?;
//! platform.activate(handle, 100)?;
//! platform.launch_update_data(handle, &mem, 0, 0x1000)?;
//! let mut measure = [0u8; 48];
//! platform.launch_measure(handle, &mut measure)?;
//! // ... the owner verifies `measure` and may send a LAUNCH_SECRET packet ...
//! platform.launch_finish(handle)?;
//! let mut view = [0u8; 64];
//! platform.host_read(handle, &mem, 0, &mut view)?; // ciphertext
//! # Ok(())
//! # }
//! ```

mod error;
pub mod issuer;
pub mod memory;
pub mod platform;
pub mod rng;
pub mod snp;
pub mod store;

pub use platform::{
    CreateOptions, FwError, GuestStatusInfo, Op, Platform, PlatformConfig, PlatformError,
    PlatformStatusInfo, RequiredLen,
};
