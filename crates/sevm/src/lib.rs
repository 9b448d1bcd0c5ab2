//! sevm: a VMM that launches AMD SEV guests the way QEMU does.
//!
//! * [`options`]: the QEMU-compatible command line, parsed into a typed
//!   configuration;
//! * [`vmm`]: the VMM that runs it: builds the machine, launches the SEV
//!   guest, serves QMP (the handler in `vmm/qmp.rs`; protocol, schema,
//!   server and client are the `sevm-qmp` crate);
//! * [`machine`], [`memory`], [`vcpu`], [`devices`]: the KVM machine;
//! * [`sev`]: the SEV platform and per-guest interfaces;
//! * [`migration`]: snapshot, restore and live migration;
//! * [`debug`], [`gdb`]: the debug views of guest memory and the GDB stub.
//!
//! The bundled demo guest (`sevm -write-demo-guest FILE`) is the
//! `sevm-demo` crate.

pub mod config;
pub mod control;
pub mod debug;
pub mod devices;
pub mod gdb;
pub mod ghcb;
pub(crate) mod keyval;
pub mod machine;
/// Guest physical memory and the host view of it (the `sevm-memory` crate).
pub use sevm_memory as memory;
pub mod migration;
pub mod options;
pub mod sev;
pub mod vcpu;
pub mod vmm;

#[cfg(test)]
mod demo_guest_tests;
