//! The VMM: a validated [`VmConfig`] in, a running guest out.
//!
//! Two builders produce the same [`Vmm`], on a machine `setup` prepares
//! for both (every input file read, the SEV platform opened and checked
//! against the options as QEMU's `sev_kvm_init` does, the KVM machine and
//! its devices created):
//!
//! * `boot`: a VM that boots its firmware, the SEV launch run up to
//!   LAUNCH_MEASURE (docs/architecture.md#launch);
//! * `incoming`: a VM whose guest arrives by migration (`-incoming`),
//!   received through RECEIVE_* on a thread while QMP serves.
//!
//! [`Vmm::run`] starts what both share -- the QMP servers, the GDB stub --
//! and, for a booting VM unless `-S`, issues LAUNCH_FINISH and starts the
//! vCPUs; with `-S` the guest waits in launch-secret state for QMP `cont`.
//! QMP, the GDB stub and migration control the VM through
//! [`crate::control::VmControl`].
//!
//! Every VMM access to guest memory after LAUNCH_START goes through the SEV
//! host view the backend provides.

mod boot;
mod certs;
mod files;
mod incoming;
mod qmp;
mod setup;
mod signals;
mod state;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sevm_qmp::response::ShutdownCause;
use sevm_qmp::{QmpEvent, QmpServer, ServerError};

use crate::config::{IncomingConfig, VmConfig};
use crate::machine::{Machine, MachineError, MachineExit};
use crate::sev::{error_chain, SevError};

pub use files::FileError;
use state::{lock, IncomingPhase, LaunchPhase, SevContext, SnpContext, VmmState};

/// Why the VMM could not start or run the guest.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// An option is inconsistent with the host, the platform or the files it
    /// names (QEMU's style: the option, then the problem).
    #[error("{option}: {problem}")]
    Config {
        /// The option, e.g. `-object sev-guest,id=sev0`.
        option: String,
        /// What is wrong.
        problem: String,
    },
    /// An input file could not be used.
    #[error(transparent)]
    File(#[from] FileError),
    /// The SEV platform or firmware failed.
    #[error(transparent)]
    Sev(#[from] SevError),
    /// The KVM machine failed.
    #[error("{0}")]
    Machine(String),
    /// A QMP socket could not be set up.
    #[error(transparent)]
    Qmp(#[from] ServerError),
    /// The machine stopped on an error it cannot continue from.
    #[error("{0}")]
    Guest(String),
}

impl VmmError {
    /// Whether this is a validation error (printed QEMU-style, without the
    /// `error:` prefix).
    pub fn is_validation(&self) -> bool {
        matches!(self, VmmError::Config { .. } | VmmError::File(_))
    }
}

fn machine_err(e: MachineError) -> VmmError {
    VmmError::Machine(error_chain(&e))
}

/// How the guest ended (VMM errors are [`VmmError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The guest wrote this status to the debug-exit port.
    GuestExit(u8),
    /// The guest shut down or reset (triple fault).
    Shutdown,
    /// QMP `quit`.
    Quit,
}

impl Outcome {
    /// The process exit code: the guest's status for a debug-port exit,
    /// 0 otherwise.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::GuestExit(v) => v,
            Outcome::Shutdown | Outcome::Quit => 0,
        }
    }
}

/// Starts the GDB stub of `-gdb`/`-s` on `shared`'s VM.
fn start_gdb(
    shared: &Arc<VmmState>,
    config: &crate::config::GdbConfig,
) -> Result<crate::gdb::GdbServer, VmmError> {
    let target = crate::gdb::Target::new(Arc::clone(shared) as _);
    crate::gdb::GdbServer::start(config, target).map_err(|e| VmmError::Config {
        option: "-gdb".into(),
        problem: error_chain(&e),
    })
}

/// A built VM, ready to run.
#[derive(Debug)]
pub struct Vmm {
    shared: Arc<VmmState>,
    config: VmConfig,
}

impl Vmm {
    /// Builds the VM `config` describes: one that boots (the SEV launch up
    /// to LAUNCH_MEASURE, `vmm/boot.rs`) or, with `-incoming`, one that waits for
    /// its guest to arrive by migration (`vmm/incoming.rs`).
    pub fn build(config: &VmConfig) -> Result<Vmm, VmmError> {
        match config.incoming {
            None => boot::build(config),
            Some(_) => incoming::build(config),
        }
    }

    /// The VM both builders produce: `machine` with its SEV side, ready to
    /// run.
    fn new(
        config: &VmConfig,
        machine: Machine,
        sev: Option<SevContext>,
        snp: Option<SnpContext>,
        incoming: IncomingPhase,
    ) -> Vmm {
        Vmm {
            shared: Arc::new(VmmState {
                sev,
                snp,
                machine: Arc::new(machine),
                name: config.name.clone(),
                control: Mutex::new(()),
                events: Mutex::new(Vec::new()),
                quit_requested: AtomicBool::new(false),
                signal: Mutex::new(None),
                migration: Arc::default(),
                incoming: Mutex::new(incoming),
                autostart: AtomicBool::new(!config.start_paused),
                fatal: Mutex::new(None),
            }),
            config: config.clone(),
        }
    }

    /// The launch measurement blob (MEASUREMENT ‖ MNONCE) of an SEV guest.
    pub fn launch_measurement(&self) -> Option<[u8; 48]> {
        let sev = self.shared.sev.as_ref()?;
        match &*lock(&sev.launch) {
            LaunchPhase::Secret(l) => Some(*l.measurement().as_bytes()),
            LaunchPhase::Running(l) => Some(*l.measurement().as_bytes()),
            LaunchPhase::Incoming | LaunchPhase::Received | LaunchPhase::Moving => None,
        }
    }

    /// Makes SIGTERM, SIGINT and SIGHUP end the VM as QEMU does: a
    /// `SHUTDOWN` event with reason `host-signal`, the QMP sockets removed,
    /// exit status 0. For the binary (one VM per process).
    pub fn handle_termination_signals(&self) -> Result<(), VmmError> {
        signals::install(Arc::clone(&self.shared))
    }

    /// Serves QMP, starts the guest (now, or at `cont` with `-S`) and waits
    /// for it to end.
    pub fn run(self) -> Result<Outcome, VmmError> {
        let handler: Arc<dyn sevm_qmp::QmpHandler> =
            Arc::new(qmp::Handler::new(Arc::clone(&self.shared)));
        let mut servers = Vec::new();
        {
            // Held while binding: a client can connect and run `cont` as soon
            // as a server listens, and its events must not be emitted before
            // the server's sender is registered (they would be lost).
            let mut events = lock(&self.shared.events);
            for q in &self.config.qmp {
                let server = QmpServer::bind(&q.path, Arc::clone(&handler))?;
                events.push(server.events());
                servers.push(server);
            }
        }
        for (server, q) in servers.iter().zip(&self.config.qmp) {
            if q.wait {
                log::info!("waiting for a QMP client on {}", q.path.display());
                server.wait_for_client();
            }
        }
        let gdb = match &self.config.gdb {
            Some(g) => Some(start_gdb(&self.shared, g)?),
            None => None,
        };
        match &self.config.incoming {
            Some(IncomingConfig::Defer) => {
                eprintln!("sevm: incoming migration: waiting for migrate-incoming over QMP");
            }
            Some(cfg) => {
                if let Err(e) = self.shared.start_incoming(cfg.clone(), true) {
                    self.shared.machine.request_quit();
                    return Err(VmmError::Guest(format!("incoming migration failed: {e}")));
                }
            }
            None if !self.config.start_paused => {
                if let Err(e) = self.shared.cont() {
                    self.shared.machine.request_quit();
                    return Err(VmmError::Guest(e));
                }
            }
            None => {}
        }
        let exit = self.shared.machine.wait_for_exit();
        // A migration, snapshot or incoming stream still going is cancelled
        // (its socket shut down, a partial snapshot file removed) before
        // the process ends.
        if !self.shared.migration.shutdown(MIGRATION_SHUTDOWN_BOUND) {
            eprintln!(
                "sevm: the migration did not stop within {} s; exiting anyway",
                MIGRATION_SHUTDOWN_BOUND.as_secs()
            );
        }
        if let Some(g) = &gdb {
            g.vm_exited(&exit);
        }
        log::info!(
            "guest memory resident at exit: {} KiB",
            self.shared.machine.guest_memory().resident_bytes() / 1024
        );
        let (event, result) = match exit {
            MachineExit::GuestExit(v) => (
                QmpEvent::Shutdown {
                    guest: true,
                    reason: ShutdownCause::GuestShutdown,
                },
                Ok(Outcome::GuestExit(v)),
            ),
            MachineExit::Shutdown => (
                QmpEvent::Shutdown {
                    guest: true,
                    reason: ShutdownCause::GuestReset,
                },
                Ok(Outcome::Shutdown),
            ),
            MachineExit::Quit => {
                let signal = *lock(&self.shared.signal);
                if let Some(n) = signal {
                    eprintln!("sevm: terminating on signal {n}");
                }
                (
                    QmpEvent::Shutdown {
                        guest: false,
                        reason: if signal.is_some() {
                            ShutdownCause::HostSignal
                        } else {
                            ShutdownCause::HostQmpQuit
                        },
                    },
                    Ok(Outcome::Quit),
                )
            }
            MachineExit::Error(e) => (
                QmpEvent::Shutdown {
                    guest: false,
                    reason: ShutdownCause::HostError,
                },
                Err(VmmError::Guest(e)),
            ),
        };
        self.shared.emit(&event);
        for mut s in servers {
            s.shutdown();
        }
        if self.shared.quit_requested.load(Ordering::SeqCst) {
            log::info!("quit requested over QMP");
        }
        if let Some(e) = lock(&self.shared.fatal).take() {
            return Err(VmmError::Guest(e));
        }
        result
    }
}

/// How long the VMM waits, when it ends, for a cancelled migration thread.
const MIGRATION_SHUTDOWN_BOUND: Duration = Duration::from_secs(10);

/// Builds and runs the VM a validated configuration describes (what the
/// `sevm` binary does, including QEMU's handling of termination signals).
pub fn run(config: &VmConfig) -> Result<Outcome, VmmError> {
    let vmm = Vmm::build(config)?;
    vmm.handle_termination_signals()?;
    vmm.run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_exit_codes() {
        assert_eq!(Outcome::GuestExit(7).exit_code(), 7);
        assert_eq!(Outcome::Quit.exit_code(), 0);
        assert_eq!(Outcome::Shutdown.exit_code(), 0);
        assert!(!VmmError::Guest("x".into()).is_validation());
    }
}
