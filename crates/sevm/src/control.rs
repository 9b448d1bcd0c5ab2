//! The one interface through which the VM's users -- the QMP handler, the
//! GDB stub and migration -- read it and change its run state, instead of
//! reaching into the VMM. The VMM implements it.

use std::sync::Arc;

use crate::debug::{DebugError, GuestDebug};
use crate::machine::Machine;
use crate::vcpu::VcpuState;
use sevm_qmp::response::RunState;
use sevm_qmp::QmpEvent;

/// Run-state control and guest access of one VM.
pub trait VmControl: Send + Sync {
    /// The machine.
    fn machine(&self) -> &Arc<Machine>;
    /// Guest memory and vCPU access through the host view (the firmware's
    /// debug commands for an SEV guest).
    fn debug(&self) -> GuestDebug;
    /// vCPU `index`'s registers, the VM paused for the moment the read
    /// takes when it runs (no STOP/RESUME events), serialised with the
    /// run-state changes.
    fn vcpu_state(&self, index: usize) -> Result<VcpuState, DebugError>;
    /// The run state as QMP's `query-status` reports it (`inmigrate` while
    /// an incoming guest has not arrived, `postmigrate` once the guest was
    /// handed over, ...).
    fn run_state(&self) -> RunState;
    /// QMP `cont`: starts or resumes the VM (RESUME event), under the same
    /// rules as QMP (refused while a migration owns the run state).
    fn cont(&self) -> Result<(), String>;
    /// QMP `stop`: pauses the VM (STOP event).
    fn stop(&self) -> Result<(), String>;
    /// QMP `quit`: ends the VM.
    fn quit(&self);
    /// Pauses the vCPUs for a migration (STOP event); returns whether they
    /// were running.
    fn pause_vm(&self) -> Result<bool, String>;
    /// Resumes the vCPUs a migration paused (RESUME event).
    fn resume_vm(&self) -> Result<(), String>;
    /// Emits a QMP event.
    fn emit_event(&self, event: &QmpEvent);
}
