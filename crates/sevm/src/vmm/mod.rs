//! The VMM: a validated [`VmConfig`] in, a running guest out.
//!
//! [`Vmm::build`] reads every input file, opens the SEV platform, checks
//! the SEV options against it (as QEMU's `sev_kvm_init` does), creates the
//! KVM machine and runs the launch flow of docs/architecture.md#launch up to LAUNCH_MEASURE:
//! LAUNCH_START with the owner's GODH and session (or neither),
//! LAUNCH_UPDATE_DATA over the firmware image, the kernel-hashes table
//! when `-kernel` and `kernel-hashes=on` are given (placed where the
//! firmware's footer table says, measured after the firmware),
//! LAUNCH_UPDATE_VMSA for SEV-ES, LAUNCH_MEASURE. [`Vmm::run`] starts the
//! QMP servers and, unless `-S`, issues LAUNCH_FINISH and starts the vCPUs;
//! with `-S` the guest waits in launch-secret state for QMP `cont`.
//!
//! Every VMM access to guest memory after LAUNCH_START goes through the SEV
//! host view the backend provides.

mod files;
mod qmp;
mod signals;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sev_proto::abi::Policy;
use sev_proto::ovmf::{FooterTable, KernelHashes, OvmfArea, PADDED_HASH_TABLE_LEN};
use sevm_qmp::response::ShutdownCause;
use sevm_qmp::{EventSender, QmpEvent, QmpServer, ServerError};

use crate::config::{IncomingConfig, SerialConfig, SevGuestConfig, VmConfig};
use crate::devices::serial::SerialOutput;
use crate::machine::{Machine, MachineConfig, MachineError, MachineExit, MachineState};
use crate::memory::{Gpa, FOUR_GIB, MAX_FIRMWARE_SIZE};
use crate::sev::launch::Failed;
use crate::sev::{
    self, error_chain, EncryptionParams, GuestContext, GuestKind, Launch, LaunchCommands,
    LaunchSession, PlatformManagement, PlatformStatus, Running, Secret, SevError, SevPlatform,
};

pub use files::FileError;

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

/// Where the SEV launch is (the typestate of [`crate::sev::launch`], held at
/// run time so QMP can move it forward).
enum LaunchPhase {
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
struct SevContext {
    platform: Arc<dyn SevPlatform>,
    backend: Arc<dyn GuestContext>,
    info: PlatformStatus,
    params: EncryptionParams,
    policy: Policy,
    /// The firmware's guest handle (set when an incoming guest arrives).
    handle: AtomicU32,
    /// The firmware's secret area (default `gpa` of
    /// `sev-inject-launch-secret`).
    secret_area: Option<OvmfArea>,
    launch: Mutex<LaunchPhase>,
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

/// State shared between the main thread and the QMP handler.
#[derive(Debug)]
pub(crate) struct VmmState {
    // Field order is drop order: the SEV backend (on hardware a duplicate of
    // the VM fd) goes before the machine.
    sev: Option<SevContext>,
    machine: Arc<Machine>,
    name: Option<String>,
    /// Serialises run-state changes (cont, stop, quit).
    control: Mutex<()>,
    events: Mutex<Vec<EventSender>>,
    quit_requested: AtomicBool,
    /// Set when a termination signal ended the VM.
    signal: Mutex<Option<i32>>,
    /// Outgoing migrations and snapshots.
    migration: Arc<crate::migration::Migrations>,
    /// Where an incoming migration (`-incoming`) is.
    incoming: Mutex<IncomingPhase>,
    /// Whether the guest starts by itself once received (no `-S`; `cont`
    /// and `stop` change it while waiting, as in QEMU).
    autostart: AtomicBool,
    /// Why the VMM must end with an error (an incoming migration failed).
    fatal: Mutex<Option<String>>,
}

/// The incoming side's life cycle (QEMU's `inmigrate` run state lasts
/// while it is `Deferred` or `Receiving`, and after a failure that did not
/// end the process).
#[derive(Debug, Clone, PartialEq, Eq)]
enum IncomingPhase {
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
    fn waiting(&self) -> bool {
        matches!(
            self,
            IncomingPhase::Deferred | IncomingPhase::Receiving | IncomingPhase::Failed
        )
    }
}

impl crate::control::VmControl for VmmState {
    fn machine(&self) -> &Arc<Machine> {
        &self.machine
    }

    fn debug(&self) -> crate::debug::GuestDebug {
        VmmState::debug(self)
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl VmmState {
    fn emit(&self, event: &QmpEvent) {
        for e in lock(&self.events).iter() {
            e.emit(event);
        }
    }

    /// LAUNCH_FINISH (if SEV) and start the vCPUs; RESUME. From prelaunch
    /// or paused; a no-op when running.
    fn cont(&self) -> Result<(), String> {
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
                self.machine.start().map_err(|e| e.to_string())?;
                self.emit(&QmpEvent::Resume);
                Ok(())
            }
        }
    }

    /// Pauses running vCPUs; STOP. A no-op in prelaunch or when paused.
    fn stop(&self) -> Result<(), String> {
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

    fn request_quit(&self) {
        self.quit_requested.store(true, Ordering::SeqCst);
        self.machine.request_quit();
    }

    /// Starts receiving the guest (`-incoming URI`, or `migrate-incoming`
    /// after `-incoming defer`) on a thread; QMP keeps serving meanwhile.
    fn start_incoming(
        self: &Arc<Self>,
        cfg: IncomingConfig,
        exit_on_error: bool,
    ) -> Result<(), String> {
        {
            let mut phase = lock(&self.incoming);
            match *phase {
                IncomingPhase::Deferred => {}
                IncomingPhase::None => {
                    return Err("this VM was not started with -incoming defer".into())
                }
                _ => return Err("The incoming migration has already been started".into()),
            }
            if matches!(cfg, IncomingConfig::Defer) {
                return Err("migrate-incoming needs a URI (file:, tcp: or unix:)".into());
            }
            *phase = IncomingPhase::Receiving;
        }
        let me = Arc::clone(self);
        let vm: Arc<dyn crate::control::VmControl> = Arc::clone(self) as _;
        let started = self.migration.start_incoming(
            vm,
            Box::new(move |ctl| me.receive(&cfg, ctl, exit_on_error)),
        );
        started.map_err(|e| {
            *lock(&self.incoming) = IncomingPhase::Failed;
            e.to_string()
        })
    }

    /// The incoming migration thread's work; on success the guest starts
    /// if `autostart`.
    fn receive(
        &self,
        cfg: &IncomingConfig,
        ctl: &crate::migration::target::Control<'_>,
        exit_on_error: bool,
    ) -> Result<(), crate::migration::MigrationError> {
        let result = match &self.sev {
            Some(sev) => crate::migration::target::receive(
                &self.machine,
                sev.backend.as_ref(),
                cfg,
                sev.policy,
                ctl,
            )
            .map(|restored| {
                sev.handle.store(restored.handle, Ordering::SeqCst);
                *lock(&sev.launch) = LaunchPhase::Received;
            }),
            None => Err(crate::migration::MigrationError::Machine(
                "sevm migrates SEV guests only".into(),
            )),
        };
        let _g = lock(&self.control);
        match result {
            Ok(()) => {
                *lock(&self.incoming) = IncomingPhase::Done;
                if self.autostart.load(Ordering::SeqCst) {
                    self.machine
                        .start()
                        .map_err(|e| crate::migration::MigrationError::Machine(e.to_string()))?;
                    self.emit(&QmpEvent::Resume);
                }
                Ok(())
            }
            Err(e) => {
                *lock(&self.incoming) = IncomingPhase::Failed;
                if self.quit_requested.load(Ordering::SeqCst) {
                    // `quit` or a signal ended the wait: not a failure.
                    log::info!("incoming migration stopped: {e}");
                } else if exit_on_error {
                    *lock(&self.fatal) = Some(format!("incoming migration failed: {e}"));
                    self.machine.request_quit();
                } else {
                    eprintln!("sevm: incoming migration failed: {e}");
                }
                Err(e)
            }
        }
    }

    /// Debug access to guest memory (DBG_* for an SEV guest).
    fn debug(&self) -> crate::debug::GuestDebug {
        crate::debug::GuestDebug::new(
            Arc::clone(&self.machine),
            self.sev
                .as_ref()
                .map(|s| Arc::clone(&s.backend) as Arc<dyn crate::sev::DebugCommands>),
            self.sev.as_ref().map(|s| s.params.cbitpos),
        )
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

/// LSECRET → RUNNING. On failure the launch stays in LSECRET.
fn finish_launch(sev: &SevContext) -> Result<(), SevError> {
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

/// A built VM, ready to run.
#[derive(Debug)]
pub struct Vmm {
    shared: Arc<VmmState>,
    config: VmConfig,
}

/// The option text QEMU would name for the SEV object.
fn sev_option(g: &SevGuestConfig) -> String {
    format!("-object sev-guest,id={}", g.id)
}

fn serial_output(cfg: &VmConfig) -> Result<SerialOutput, VmmError> {
    Ok(match cfg.effective_serial() {
        SerialConfig::Stdio => SerialOutput::Stdout,
        SerialConfig::Null | SerialConfig::None => SerialOutput::Null,
        SerialConfig::File(path) => SerialOutput::File(std::fs::File::create(&path).map_err(
            |source| FileError::Io {
                what: "-serial file",
                path: path.clone(),
                source,
            },
        )?),
    })
}

/// Everything read from disk before the machine exists.
struct Inputs {
    firmware: Vec<u8>,
    firmware_path: PathBuf,
    /// The owner's GODH and session (`dh-cert-file`, `session-file`).
    launch_session: Option<LaunchSession>,
    hashes: Option<(OvmfArea, KernelHashes)>,
    secret_area: Option<OvmfArea>,
}

fn read_inputs(cfg: &VmConfig, sev: Option<&SevGuestConfig>) -> Result<Inputs, VmmError> {
    let firmware_path = match cfg.firmware() {
        Some(crate::config::Firmware::Bios(p)) => p,
        Some(crate::config::Firmware::Pflash { code, vars }) => {
            if let Some(v) = vars {
                log::warn!(
                    "pflash unit 1 ({}) is not mapped: sevm maps only the firmware image",
                    v.file.display()
                );
            }
            code.file
        }
        None => return Err(VmmError::Config {
            option: "-bios".into(),
            problem:
                "no firmware given: use -bios FILE or -drive if=pflash,format=raw,unit=0,file=FILE \
                          (sevm -write-demo-guest FILE writes the bundled demo guest)"
                    .into(),
        }),
    };
    // One byte more than can be mapped, so the size check below names it.
    let firmware = files::read("firmware image", &firmware_path, MAX_FIRMWARE_SIZE + 1)?;
    if firmware.is_empty() {
        return Err(FileError::Size {
            what: "firmware image",
            path: firmware_path,
            problem: "is empty".into(),
        }
        .into());
    }
    if firmware.len() as u64 > MAX_FIRMWARE_SIZE {
        return Err(FileError::Size {
            what: "firmware image",
            path: firmware_path,
            problem: format!(
                "is {} bytes; at most {MAX_FIRMWARE_SIZE} bytes (16 MiB) can be mapped below 4 GiB",
                firmware.len()
            ),
        }
        .into());
    }
    let mut inputs = Inputs {
        firmware,
        firmware_path,
        launch_session: None,
        hashes: None,
        secret_area: None,
    };
    let Some(g) = sev else {
        return Ok(inputs);
    };
    let option = sev_option(g);
    if !inputs.firmware.len().is_multiple_of(16) {
        return Err(FileError::Size {
            what: "firmware image",
            path: inputs.firmware_path,
            problem: format!(
                "is {} bytes; LAUNCH_UPDATE_DATA needs a multiple of 16 bytes",
                inputs.firmware.len()
            ),
        }
        .into());
    }
    match (&g.dh_cert_file, &g.session_file) {
        (Some(dh), Some(session)) => {
            inputs.launch_session = Some(LaunchSession {
                godh: files::read_godh(dh)?,
                session: files::read_session(session)?,
            });
        }
        (None, None) => {}
        (Some(_), None) | (None, Some(_)) => {
            return Err(VmmError::Config {
                option,
                problem: "dh-cert-file and session-file must be given together \
                          (the owner's GODH certificate and its launch session)"
                    .into(),
            })
        }
    }
    let table = FooterTable::parse(&inputs.firmware).map_err(|e| VmmError::Config {
        option: "-bios".into(),
        problem: format!(
            "{}: bad OVMF footer table: {e}",
            inputs.firmware_path.display()
        ),
    })?;
    inputs.secret_area = table.sev_secret_block().ok().flatten();
    if g.kernel_hashes {
        if let Some(kernel_path) = &cfg.kernel {
            let area = table.check_hashes_area().map_err(|e| VmmError::Config {
                option: option.clone(),
                problem: format!(
                    "kernel-hashes=on: the firmware {} cannot measure -kernel: {e}",
                    inputs.firmware_path.display()
                ),
            })?;
            let end = u64::from(area.base) + PADDED_HASH_TABLE_LEN as u64;
            if end > cfg.memory {
                return Err(VmmError::Config {
                    option: "-m".into(),
                    problem: format!(
                        "the firmware's kernel-hashes area at {:#x} lies outside the {} bytes of RAM",
                        area.base, cfg.memory
                    ),
                });
            }
            // Neither can be larger than the guest's RAM it is loaded into.
            let kernel = files::read("-kernel", kernel_path, cfg.memory)?;
            let initrd = match &cfg.initrd {
                Some(p) => Some(files::read("-initrd", p, cfg.memory)?),
                None => None,
            };
            let hashes = KernelHashes::new(
                cfg.append.as_deref().map(str::as_bytes),
                initrd.as_deref(),
                &kernel,
            );
            inputs.hashes = Some((area, hashes));
        }
    }
    Ok(inputs)
}

/// Checks the SEV options against the platform, as QEMU's `sev_kvm_init`.
fn check_platform(
    g: &SevGuestConfig,
    info: &PlatformStatus,
    params: &EncryptionParams,
    platform: &dyn PlatformManagement,
) -> Result<(), VmmError> {
    let option = sev_option(g);
    if let Some(c) = g.cbitpos {
        if c != params.cbitpos {
            return Err(VmmError::Config {
                option,
                problem: format!(
                    "cbitpos check failed, host '{}' requested '{c}'",
                    params.cbitpos
                ),
            });
        }
    }
    // UNCERTAIN (docs/protocol/memory.md#cbitpos): the guest-visible reduced-phys-bits is
    // checked as QEMU does (1..=63), once, by `VmConfig::validate`, not
    // against the host's EBX[11:6]: the architecturally correct guest value
    // is 1 whatever the host reduction is.
    let policy = Policy::from_bits(g.policy);
    if policy.es() && platform.is_emulated() {
        return Err(VmmError::Config {
            option,
            problem: format!(
                "guest policy {:#x} requires SEV-ES, which sevm supports on SEV hardware only \
                 (the emulated platform does not model encrypted register state)",
                g.policy
            ),
        });
    }
    if policy.es() && !info.es_enabled {
        return Err(VmmError::Config {
            option,
            problem: format!(
                "guest policy {:#x} requires SEV-ES, but {} does not support SEV-ES",
                g.policy,
                platform.describe()
            ),
        });
    }
    Ok(())
}

impl Vmm {
    /// Reads the inputs, opens the SEV platform, checks the options against
    /// it, creates the machine and runs the launch up to LAUNCH_MEASURE.
    pub fn build(config: &VmConfig) -> Result<Vmm, VmmError> {
        let sev_cfg = config.sev_guest();
        let inputs = read_inputs(config, sev_cfg)?;

        let mut sev_setup = None;
        if let Some(g) = sev_cfg {
            let platform = sev::open_platform(&g.sev_device).map_err(|e| match e {
                SevError::Platform(problem) => VmmError::Config {
                    option: sev_option(g),
                    problem,
                },
                other => other.into(),
            })?;
            if let crate::config::SevDevice::Emulated { state_dir } = &g.sev_device {
                eprintln!(
                    "sevm: using the EMULATED AMD SP in {} (not hardware)",
                    state_dir.display()
                );
            }
            let info = platform.status()?;
            let params = platform.encryption_params()?;
            check_platform(g, &info, &params, platform.as_ref())?;
            sev_setup = Some((g, platform, info, params));
        }

        let kind = sev_cfg.map_or(GuestKind::Sev, |g| {
            GuestKind::of_policy(Policy::from_bits(g.policy))
        });
        let firmware_size = inputs.firmware.len() as u64;
        let mut mc = MachineConfig::new(config.memory, inputs.firmware);
        mc.vcpus = config.cpus;
        mc.qemu_thread_names = config.debug_threads;
        // Pre-copy migration needs KVM's dirty page log.
        mc.dirty_logging = sev_setup.is_some();
        mc.serial = serial_output(config)?;
        mc.pre_vcpu_hook = sev_setup
            .as_ref()
            .and_then(|(_, p, _, _)| sev::pre_vcpu_hook(p, kind));
        let mut machine = Machine::new(mc).map_err(machine_err)?;

        let sev = match sev_setup {
            None if config.incoming.is_some() => {
                return Err(VmmError::Config {
                    option: "-incoming".into(),
                    problem: "sevm migrates SEV guests only (add -object sev-guest and \
                              -machine memory-encryption=)"
                        .into(),
                })
            }
            None => None,
            Some((g, platform, info, params)) if config.incoming.is_some() => {
                // The guest arrives later, on the incoming thread (run).
                let backend = sev::attach(platform.as_ref(), &mut machine, kind)?;
                Some(SevContext {
                    platform,
                    backend,
                    info,
                    params,
                    policy: Policy::from_bits(g.policy),
                    handle: AtomicU32::new(0),
                    secret_area: inputs.secret_area,
                    launch: Mutex::new(LaunchPhase::Incoming),
                })
            }
            Some((g, platform, info, params)) => {
                let backend = sev::attach(platform.as_ref(), &mut machine, kind)?;
                let policy = Policy::from_bits(g.policy);
                let mut launch = Launch::start(
                    Arc::clone(&backend) as Arc<dyn LaunchCommands>,
                    g.handle,
                    policy,
                    inputs.launch_session.as_ref(),
                )?;
                launch.update_data(Gpa(FOUR_GIB - firmware_size), firmware_size)?;
                if let Some((area, hashes)) = &inputs.hashes {
                    let gpa = Gpa(u64::from(area.base));
                    machine
                        .guest_memory()
                        .write_plain(gpa, &hashes.to_table())
                        .map_err(|e| SevError::OutOfRange {
                            command: "LAUNCH_UPDATE_DATA",
                            gpa: e.gpa,
                            len: e.len,
                        })?;
                    launch.update_data(gpa, PADDED_HASH_TABLE_LEN as u64)?;
                }
                if kind.encrypts_registers() {
                    launch.update_vmsa()?;
                }
                let handle = launch.handle();
                let secret = launch.measure().map_err(|f| f.error)?;
                Some(SevContext {
                    platform,
                    backend,
                    info,
                    params,
                    policy,
                    handle: AtomicU32::new(handle),
                    secret_area: inputs.secret_area,
                    launch: Mutex::new(LaunchPhase::Secret(secret)),
                })
            }
        };

        Ok(Vmm {
            shared: Arc::new(VmmState {
                sev,
                machine: Arc::new(machine),
                name: config.name.clone(),
                control: Mutex::new(()),
                events: Mutex::new(Vec::new()),
                quit_requested: AtomicBool::new(false),
                signal: Mutex::new(None),
                migration: Arc::default(),
                incoming: Mutex::new(if config.incoming.is_some() {
                    IncomingPhase::Deferred
                } else {
                    IncomingPhase::None
                }),
                autostart: AtomicBool::new(!config.start_paused),
                fatal: Mutex::new(None),
            }),
            config: config.clone(),
        })
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
            Arc::new(qmp::Handler(Arc::clone(&self.shared)));
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
    use crate::config::SevDevice;
    use sev_firmware::PlatformKind;
    use sev_proto::abi::{ApiVersion, Owner};

    #[derive(Debug)]
    struct Fake {
        kind: PlatformKind,
    }

    impl Fake {
        fn new(emulated: bool) -> Self {
            let path = "/fake".into();
            Fake {
                kind: if emulated {
                    PlatformKind::Emulated(path)
                } else {
                    PlatformKind::Hardware(path)
                },
            }
        }
    }

    impl PlatformManagement for Fake {
        fn kind(&self) -> &PlatformKind {
            &self.kind
        }
        fn describe(&self) -> String {
            "the fake platform".into()
        }
        fn status(&self) -> Result<PlatformStatus, SevError> {
            unimplemented!()
        }
        fn pdh_cert_export(&self) -> Result<sev_firmware::PlatformCerts, SevError> {
            unimplemented!()
        }
        fn pek_csr(&self) -> Result<sev_proto::cert::sev::Certificate, SevError> {
            unimplemented!()
        }
        fn pek_cert_import(
            &self,
            _: &sev_proto::cert::sev::Certificate,
            _: &sev_proto::cert::sev::Certificate,
        ) -> Result<(), SevError> {
            unimplemented!()
        }
        fn pdh_gen(&self) -> Result<(), SevError> {
            unimplemented!()
        }
        fn pek_gen(&self) -> Result<(), SevError> {
            unimplemented!()
        }
        fn platform_reset(&self) -> Result<(), SevError> {
            unimplemented!()
        }
        fn get_id(&self) -> Result<Vec<u8>, SevError> {
            unimplemented!()
        }
        fn encryption_params(&self) -> Result<EncryptionParams, SevError> {
            unimplemented!()
        }
        fn amd_chain(&self) -> Result<Option<sev_proto::cert::chain::CaChain>, SevError> {
            unimplemented!()
        }
    }

    fn guest(policy: u32, cbitpos: Option<u32>, rpb: Option<u32>) -> SevGuestConfig {
        let mut cfg = match crate::options::parse_args([
            "-object",
            "sev-guest,id=sev0",
            "-machine",
            "q35,memory-encryption=sev0",
        ])
        .unwrap()
        {
            crate::options::Invocation::Run(c) => c,
            other => panic!("{other:?}"),
        };
        let mut g = cfg.sev_guests.remove(0);
        g.policy = policy;
        g.cbitpos = cbitpos;
        g.reduced_phys_bits = rpb;
        g.sev_device = SevDevice::Emulated {
            state_dir: "/x".into(),
        };
        g
    }

    const INFO: PlatformStatus = PlatformStatus {
        api: ApiVersion::new(1, 55),
        build: 21,
        state_code: 1,
        owner: Owner::SelfOwned,
        es_enabled: false,
        guest_count: 0,
    };
    const PARAMS: EncryptionParams = EncryptionParams {
        cbitpos: 47,
        reduced_phys_bits: 1,
    };

    #[test]
    fn sev_options_are_checked_against_the_platform_as_qemu_does() {
        let hw = Fake::new(false);
        check_platform(&guest(1, None, None), &INFO, &PARAMS, &hw).unwrap();
        check_platform(&guest(1, Some(47), Some(5)), &INFO, &PARAMS, &hw).unwrap();
        let e = check_platform(&guest(1, Some(51), None), &INFO, &PARAMS, &hw).unwrap_err();
        assert_eq!(
            e.to_string(),
            "-object sev-guest,id=sev0: cbitpos check failed, host '47' requested '51'"
        );
        assert!(e.is_validation());
        // reduced-phys-bits is not the platform's business: 1..=63 is
        // checked by `VmConfig::validate` (see the options tests).
        check_platform(&guest(1, None, Some(63)), &INFO, &PARAMS, &hw).unwrap();
        let e = check_platform(&guest(0x5, None, None), &INFO, &PARAMS, &hw).unwrap_err();
        assert!(
            e.to_string()
                .contains("requires SEV-ES, but the fake platform does not support SEV-ES"),
            "{e}"
        );
        let es = PlatformStatus {
            es_enabled: true,
            ..INFO
        };
        check_platform(&guest(0x5, None, None), &es, &PARAMS, &hw).unwrap();
        let emu = Fake::new(true);
        let e = check_platform(&guest(0x5, None, None), &es, &PARAMS, &emu).unwrap_err();
        assert!(e.to_string().contains("SEV hardware only"), "{e}");
    }

    #[test]
    fn outcomes_map_to_exit_codes() {
        assert_eq!(Outcome::GuestExit(7).exit_code(), 7);
        assert_eq!(Outcome::Quit.exit_code(), 0);
        assert_eq!(Outcome::Shutdown.exit_code(), 0);
        assert!(!VmmError::Guest("x".into()).is_validation());
    }
}
