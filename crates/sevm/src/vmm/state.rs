//! The VM's state shared by the main thread, the QMP handler, the GDB stub,
//! migration and the signal thread, and the one [`VmControl`] interface
//! they control it through: the run-state rules of `cont`, `stop` and
//! `quit` (docs/architecture.md#run-states), guest memory and vCPU access,
//! events.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sev_proto::abi::Policy;
use sev_proto::ovmf::OvmfArea;
use sevm_qmp::response::RunState;
use sevm_qmp::{EventSender, QmpEvent};

use crate::control::VmControl;
use crate::machine::{Machine, MachineState};
use crate::sev::launch::Failed;
use crate::sev::snp::{FinishInputs, Finished, SnpLaunch, Updating};
use crate::sev::{
    EncryptionParams, GuestContext, Launch, PlatformStatus, Running, Secret, SevError, SevPlatform,
    SnpGuestContext,
};

/// Where the SEV launch is (the typestate of [`crate::sev::launch`], held at
/// run time so QMP can move it forward).
pub(super) enum LaunchPhase {
    Secret(Launch<Secret>),
    Running(Launch<Running>),
    /// Waiting for (or receiving) an incoming migration.
    Incoming,
    /// Received through RECEIVE_* (`-incoming`): no launch measurement.
    Received,
    /// Only while a transition is in progress.
    Moving,
}

/// The SEV side of the VM.
pub(super) struct SevContext {
    pub(super) platform: Arc<dyn SevPlatform>,
    pub(super) backend: Arc<dyn GuestContext>,
    pub(super) info: PlatformStatus,
    pub(super) params: EncryptionParams,
    pub(super) policy: Policy,
    /// The firmware's guest handle (set when an incoming guest arrives).
    pub(super) handle: AtomicU32,
    /// The firmware's secret area (default `gpa` of
    /// `sev-inject-launch-secret`).
    pub(super) secret_area: Option<OvmfArea>,
    pub(super) launch: Mutex<LaunchPhase>,
}

impl std::fmt::Debug for SevContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SevContext")
            .field("platform", &self.platform)
            .field("info", &self.info)
            .field("policy", &self.policy)
            .field("handle", &self.handle.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Where the SNP launch is (the typestate of [`crate::sev::snp`], held at
/// run time so `cont` can finish it).
pub(super) enum SnpPhase {
    /// SNP LAUNCH: measured, not finished.
    Updating(SnpLaunch<Updating>),
    /// SNP_LAUNCH_FINISH done.
    Finished(SnpLaunch<Finished>),
    /// Only while a transition is in progress.
    Moving,
}

/// The SEV-SNP side of the VM.
pub(super) struct SnpContext {
    pub(super) platform: Arc<dyn SevPlatform>,
    pub(super) backend: Arc<dyn SnpGuestContext>,
    pub(super) info: PlatformStatus,
    pub(super) params: EncryptionParams,
    /// What SNP_LAUNCH_FINISH is given at the first `cont`.
    pub(super) finish: FinishInputs,
    pub(super) launch: Mutex<SnpPhase>,
}

impl std::fmt::Debug for SnpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnpContext")
            .field("platform", &self.platform)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl SnpContext {
    /// The launch's policy and handle.
    pub(super) fn policy_and_handle(&self) -> Option<(sev_proto::snp::GuestPolicy, u32)> {
        match &*lock(&self.launch) {
            SnpPhase::Updating(l) => Some((l.policy(), l.handle())),
            SnpPhase::Finished(l) => Some((l.policy(), l.handle())),
            SnpPhase::Moving => None,
        }
    }

    /// Whether SNP_LAUNCH_FINISH is done.
    pub(super) fn finished(&self) -> bool {
        matches!(&*lock(&self.launch), SnpPhase::Finished(_))
    }
}

/// SNP LAUNCH → RUNNING (SNP_LAUNCH_FINISH with the ID block, ID auth and
/// host data). On failure the launch stays in LAUNCH.
pub(super) fn finish_snp_launch(snp: &SnpContext) -> Result<(), SevError> {
    let mut phase = lock(&snp.launch);
    match std::mem::replace(&mut *phase, SnpPhase::Moving) {
        SnpPhase::Updating(l) => match l.finish(&snp.finish) {
            Ok(r) => {
                *phase = SnpPhase::Finished(r);
                Ok(())
            }
            Err(crate::sev::snp::Failed { launch, error }) => {
                *phase = SnpPhase::Updating(launch);
                Err(error)
            }
        },
        other => {
            *phase = other;
            Ok(())
        }
    }
}

/// State shared between the main thread and the QMP handler.
#[derive(Debug)]
pub(crate) struct VmmState {
    // Field order is drop order: the SEV backend (on hardware a duplicate of
    // the VM fd) goes before the machine.
    pub(super) sev: Option<SevContext>,
    /// The SEV-SNP side, for an SNP guest (then `sev` is `None`).
    pub(super) snp: Option<SnpContext>,
    pub(super) machine: Arc<Machine>,
    pub(super) name: Option<String>,
    /// Serialises run-state changes (cont, stop, quit).
    pub(super) control: Mutex<()>,
    pub(super) events: Mutex<Vec<EventSender>>,
    pub(super) quit_requested: AtomicBool,
    /// Set when a termination signal ended the VM.
    pub(super) signal: Mutex<Option<i32>>,
    /// Outgoing migrations and snapshots.
    pub(super) migration: Arc<crate::migration::Migrations>,
    /// Where an incoming migration (`-incoming`) is.
    pub(super) incoming: Mutex<IncomingPhase>,
    /// Whether the guest starts by itself once received (no `-S`; `cont`
    /// and `stop` change it while waiting, as in QEMU).
    pub(super) autostart: AtomicBool,
    /// Why the VMM must end with an error (an incoming migration failed).
    pub(super) fatal: Mutex<Option<String>>,
}

/// The incoming side's life cycle (QEMU's `inmigrate` run state lasts
/// while it is `Deferred` or `Receiving`, and after a failure that did not
/// end the process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum IncomingPhase {
    /// Not a migration target.
    None,
    /// `-incoming defer`: waiting for `migrate-incoming`.
    Deferred,
    /// Listening for or reading a stream.
    Receiving,
    /// Failed (with `exit-on-error: false`): nothing to run.
    Failed,
    /// The guest arrived.
    Done,
}

impl IncomingPhase {
    pub(super) fn waiting(&self) -> bool {
        matches!(
            self,
            IncomingPhase::Deferred | IncomingPhase::Receiving | IncomingPhase::Failed
        )
    }
}

impl VmControl for VmmState {
    fn machine(&self) -> &Arc<Machine> {
        &self.machine
    }

    fn debug(&self) -> crate::debug::GuestDebug {
        VmmState::debug(self)
    }

    fn vcpu_state(&self, index: usize) -> Result<crate::vcpu::VcpuState, crate::debug::DebugError> {
        crate::debug::commands::vcpu_state(&VmmState::debug(self), &self.control, index)
    }

    fn run_state(&self) -> RunState {
        let incoming = lock(&self.incoming).clone();
        if incoming.waiting() {
            return RunState::Inmigrate;
        }
        match self.machine.run_state() {
            MachineState::Created if incoming == IncomingPhase::Done => RunState::Paused,
            MachineState::Created => RunState::Prelaunch,
            MachineState::Running => RunState::Running,
            MachineState::Paused if self.migration.guest_was_sent() => RunState::Postmigrate,
            MachineState::Paused if self.migration.finishing() => RunState::FinishMigrate,
            MachineState::Paused => RunState::Paused,
            MachineState::Exited => RunState::Shutdown,
        }
    }

    fn cont(&self) -> Result<(), String> {
        VmmState::cont(self)
    }

    fn stop(&self) -> Result<(), String> {
        VmmState::stop(self)
    }

    fn quit(&self) {
        self.request_quit();
    }

    fn pause_vm(&self) -> Result<bool, String> {
        let _g = lock(&self.control);
        match self.machine.run_state() {
            MachineState::Running => {
                self.machine.pause().map_err(|e| e.to_string())?;
                self.emit(&QmpEvent::Stop);
                Ok(true)
            }
            MachineState::Created | MachineState::Paused => Ok(false),
            MachineState::Exited => Err("the guest has shut down".into()),
        }
    }

    fn resume_vm(&self) -> Result<(), String> {
        let _g = lock(&self.control);
        if self.migration.guest_was_sent() {
            return Err("the guest was handed over: this copy must not run".into());
        }
        if self.machine.run_state() == MachineState::Paused {
            self.machine.resume().map_err(|e| e.to_string())?;
            self.emit(&QmpEvent::Resume);
        }
        Ok(())
    }

    fn emit_event(&self, event: &QmpEvent) {
        self.emit(event);
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl VmmState {
    pub(super) fn emit(&self, event: &QmpEvent) {
        for e in lock(&self.events).iter() {
            e.emit(event);
        }
    }

    /// LAUNCH_FINISH (if SEV) and start the vCPUs; RESUME. From prelaunch
    /// or paused; a no-op when running.
    pub(super) fn cont(&self) -> Result<(), String> {
        let _g = lock(&self.control);
        match &*lock(&self.incoming) {
            // As QEMU: `cont` before the guest arrived makes it start then.
            IncomingPhase::Deferred | IncomingPhase::Receiving => {
                self.autostart.store(true, Ordering::SeqCst);
                return Ok(());
            }
            IncomingPhase::Failed => {
                return Err("the incoming migration failed: there is no guest to run".into())
            }
            IncomingPhase::None | IncomingPhase::Done => {}
        }
        match self.migration.hold() {
            None => {}
            // Pre-copy of a running guest: it runs already.
            Some(crate::migration::Hold::InProgress(_))
                if self.machine.run_state() == MachineState::Running => {}
            Some(h) => return Err(h.to_string()),
        }
        match self.machine.run_state() {
            MachineState::Running => Ok(()),
            MachineState::Exited => Err("the guest has shut down; it cannot be continued".into()),
            MachineState::Paused => {
                self.machine.resume().map_err(|e| e.to_string())?;
                self.emit(&QmpEvent::Resume);
                Ok(())
            }
            MachineState::Created => {
                if let Some(sev) = &self.sev {
                    finish_launch(sev).map_err(|e| e.to_string())?;
                }
                if let Some(snp) = &self.snp {
                    finish_snp_launch(snp).map_err(|e| e.to_string())?;
                }
                self.machine.start().map_err(|e| e.to_string())?;
                self.emit(&QmpEvent::Resume);
                Ok(())
            }
        }
    }

    /// Pauses running vCPUs; STOP. A no-op in prelaunch or when paused.
    pub(super) fn stop(&self) -> Result<(), String> {
        let _g = lock(&self.control);
        if lock(&self.incoming).waiting() {
            // As QEMU: the guest will stay paused once it arrives.
            self.autostart.store(false, Ordering::SeqCst);
            return Ok(());
        }
        // A migration that fails now leaves the guest paused.
        self.migration.note_stop();
        match self.machine.run_state() {
            MachineState::Running => {
                self.machine.pause().map_err(|e| e.to_string())?;
                self.emit(&QmpEvent::Stop);
                Ok(())
            }
            MachineState::Created | MachineState::Paused => Ok(()),
            MachineState::Exited => Err("the guest has shut down".into()),
        }
    }

    pub(super) fn request_quit(&self) {
        self.quit_requested.store(true, Ordering::SeqCst);
        self.machine.request_quit();
    }

    /// Debug access to guest memory (DBG_* for an SEV guest).
    pub(super) fn debug(&self) -> crate::debug::GuestDebug {
        crate::debug::GuestDebug::new(
            Arc::clone(&self.machine),
            self.sev
                .as_ref()
                .map(|s| Arc::clone(&s.backend) as Arc<dyn crate::sev::DebugCommands>),
            self.sev.as_ref().map(|s| s.params.cbitpos),
        )
    }
}

/// LSECRET → RUNNING. On failure the launch stays in LSECRET.
pub(super) fn finish_launch(sev: &SevContext) -> Result<(), SevError> {
    let mut phase = lock(&sev.launch);
    match std::mem::replace(&mut *phase, LaunchPhase::Moving) {
        LaunchPhase::Secret(l) => match l.finish() {
            Ok(r) => {
                *phase = LaunchPhase::Running(r);
                Ok(())
            }
            Err(Failed { launch, error }) => {
                *phase = LaunchPhase::Secret(launch);
                Err(error)
            }
        },
        other => {
            *phase = other;
            Ok(())
        }
    }
}
