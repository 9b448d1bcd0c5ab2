//! sevm: a VMM that launches AMD SEV guests the way QEMU does.

pub mod config;
pub mod control;
pub mod debug;
pub mod demo;
pub mod devices;
pub mod gdb;
pub(crate) mod keyval;
pub mod machine;
pub mod memory;
pub mod migration;
pub mod options;
pub mod qmp;
pub mod sev;
pub mod vcpu;
pub mod vmm;
