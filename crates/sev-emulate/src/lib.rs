//! `sev-emulate`: runs an unmodified program with its SEV system calls
//! served by the emulated AMD Secure Processor (docs/guide/sev-emulate.md).
//!
//! * [`devsev`]: `SEV_ISSUE_CMD` on `/dev/sev`;
//! * [`kvm`]: KVM's SEV ioctls on a VM file descriptor;
//! * [`filter`], [`sys`]: the seccomp filter and the system calls behind
//!   the supervisor.

pub mod devsev;
pub mod filter;
pub mod kvm;
pub mod sys;
