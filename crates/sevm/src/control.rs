//! The one interface through which the VM's users outside the VMM -- the
//! GDB stub and migration -- read it and change its run state, instead of
//! reaching into the VMM. The VMM implements it; QMP's `cont`, `stop` and
//! `quit` are the same operations.

use std::sync::Arc;

use crate::debug::GuestDebug;
use crate::machine::Machine;
use sevm_qmp::QmpEvent;

/// Run-state control and guest access of one VM.
pub trait VmControl: Send + Sync {
    /// The machine.
    fn machine(&self) -> &Arc<Machine>;
    /// Guest memory and vCPU access through the host view (the firmware's
    /// debug commands for an SEV guest).
    fn debug(&self) -> GuestDebug;
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
