//! `sev-emulate`: runs an unmodified program with its AMD SEV device system
//! calls served by the **emulated** AMD Secure Processor of `sev-psp`, through
//! seccomp user notification (docs/guide/sev-emulate.md).
//!
//! * [`filter`]: the classic-BPF program that sends the supervisor `open`,
//!   `openat` and the SEV `ioctl`s, and lets everything else run.
//! * [`supervisor`]: starts the program under the filter and answers the
//!   notifications; other modules plug in through [`supervisor::Handler`].
//! * [`devsev`]: `SEV_ISSUE_CMD` on `/dev/sev`, as Linux's driver serves it.
//! * [`kvm`]: KVM's SEV ioctls on a VM file descriptor
//!   (`KVM_MEMORY_ENCRYPT_OP`, `KVM_MEMORY_ENCRYPT_REG_REGION`/`UNREG_REGION`),
//!   as Linux's KVM serves them.
//! * [`devsevguest`]: `/dev/sev-guest`'s report and key requests, as Linux's
//!   SEV guest driver serves them, for an emulated SNP guest that
//!   [`guestlaunch`] launches on the emulated platform.
//! * [`kdsroute`]: `--emulated-kds`, the program's requests to AMD's key
//!   server answered over TLS by the platform's emulated key server.
//!
//! All `unsafe` code is in the private `sys` module.

#![deny(unsafe_code)]

pub mod devsev;
pub mod devsevguest;
pub mod filter;
pub mod guestlaunch;
pub mod kdsroute;
pub mod kvm;
pub mod supervisor;
mod sys;
