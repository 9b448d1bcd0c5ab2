//! The KVM machine: guest memory, memory slots, vCPUs (one thread each),
//! port-I/O devices, and the run/pause/resume/exit life cycle.
//!
//! Life cycle: [`Machine::new`] builds everything with the vCPUs stopped
//! ([`MachineState::Created`]); the SEV launch happens in between; [`Machine::start`]
//! spawns one thread per vCPU; [`Machine::pause`] / [`Machine::resume`] stop and
//! restart them at a safe point (outside `KVM_RUN`, vCPU fds released so their
//! state can be read or written); the first of a debug-exit write, a shutdown,
//! an unrecoverable error or [`Machine::request_quit`] ends the machine
//! ([`MachineState::Exited`], a [`MachineExit`]).
//!
//! Only the bootstrap processor (vCPU 0) runs from the reset vector. The
//! application processors are created (so their state exists for snapshots)
//! but wait for a start-up IPI, which this machine does not emulate (no
//! interrupt controller), so they stay parked unless a restored state marks
//! them runnable. For the same reason a vCPU that executes `hlt` with
//! interrupts enabled stays halted: its thread parks like a paused one (an
//! idle guest costs no host CPU), and its state says so
//! ([`VcpuState::halted`]), so a snapshot or migration keeps it halted.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use kvm_bindings::{kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_MEM_LOG_DIRTY_PAGES};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vmm_sys_util::signal::Killable;

use crate::devices::control::{ControlHandle, GuestControl, CONTROL_PORT};
use crate::devices::debug_exit::{DebugExit, DEBUG_EXIT_PORT};
use crate::devices::serial::{Serial, SerialOutput, COM1_BASE, PORT_COUNT};
use crate::devices::{BusError, IoBus};
use crate::ghcb::{GhcbHost, SharedGhcbPage, VcpuGhcb};
use crate::memory::{GuestRam, MemoryError, MemoryView, PlainView, RegionKind};
use crate::vcpu::{self, ExitLog, GhcbExits, RunGuard, SevCpuid, Step, VcpuError, VcpuState};

/// Guest-physical address of the page KVM uses for its real-mode identity
/// map on Intel hosts, as QEMU places it: just below the 16 MiB firmware
/// window, so it never overlaps RAM (< 3 GiB) or the firmware.
pub const IDENTITY_MAP_ADDR: u64 = 0xFEFF_C000;
/// Guest-physical address of the three pages KVM needs for its TSS.
pub const TSS_ADDR: u64 = 0xFEFF_D000;

/// Largest number of vCPUs accepted.
pub const MAX_VCPUS: u32 = 64;

/// A hook run after the VM and its memory slots exist but before any vCPU is
/// created: where the hardware SEV backend issues `KVM_SEV_INIT` (which KVM
/// refuses once vCPUs exist) and registers encrypted regions.
pub type PreVcpuHook = Box<
    dyn FnOnce(&VmFd, &GuestRam) -> Result<(), Box<dyn std::error::Error + Send + Sync>> + Send,
>;

/// What to build.
pub struct MachineConfig {
    /// RAM size in bytes (from GPA 0; a multiple of 4 KiB, at most 3 GiB).
    pub ram_size: u64,
    /// Number of vCPUs (`-smp`), 1..=[`MAX_VCPUS`].
    pub vcpus: u32,
    /// The firmware image; mapped to end at 4 GiB.
    pub firmware: Vec<u8>,
    /// Where the serial port writes.
    pub serial: SerialOutput,
    /// Register memory slots with `KVM_MEM_LOG_DIRTY_PAGES` (live migration).
    pub dirty_logging: bool,
    /// KVM VM type (0 for the default; SEV hardware may need another).
    pub vm_type: u64,
    /// Name the vCPU threads as QEMU's `-name debug-threads=on` does
    /// (`CPU 0/KVM`, ...) instead of `vcpu0`, ...
    pub qemu_thread_names: bool,
    /// Runs between memory-slot registration and vCPU creation.
    pub pre_vcpu_hook: Option<PreVcpuHook>,
    /// An SEV guest on the emulated platform: its CPUID leaf 0x8000001F,
    /// and the SEV MSRs trapped to sevm's GHCB host
    /// (docs/sev-es.md#the-ghcb-path).
    pub emulated_sev: Option<SevCpuid>,
}

impl std::fmt::Debug for MachineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineConfig")
            .field("ram_size", &self.ram_size)
            .field("vcpus", &self.vcpus)
            .field("firmware_len", &self.firmware.len())
            .field("serial", &self.serial)
            .field("dirty_logging", &self.dirty_logging)
            .field("vm_type", &self.vm_type)
            .field("qemu_thread_names", &self.qemu_thread_names)
            .field("pre_vcpu_hook", &self.pre_vcpu_hook.is_some())
            .field("emulated_sev", &self.emulated_sev)
            .finish()
    }
}

impl MachineConfig {
    /// One vCPU, serial to stdout, no dirty logging, default VM type.
    pub fn new(ram_size: u64, firmware: Vec<u8>) -> Self {
        MachineConfig {
            ram_size,
            vcpus: 1,
            firmware,
            serial: SerialOutput::Stdout,
            dirty_logging: false,
            vm_type: 0,
            qemu_thread_names: false,
            pre_vcpu_hook: None,
            emulated_sev: None,
        }
    }
}

/// How the machine ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineExit {
    /// The guest wrote this status to the debug-exit port.
    GuestExit(u8),
    /// Triple fault or guest-requested shutdown/reset.
    Shutdown,
    /// The host asked the machine to quit ([`Machine::request_quit`]).
    Quit,
    /// A condition the machine cannot continue from (`hlt` with interrupts
    /// disabled, KVM internal/emulation error, failed `KVM_RUN`).
    Error(String),
}

impl std::fmt::Display for MachineExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MachineExit::GuestExit(v) => write!(f, "guest exited with status {v}"),
            MachineExit::Shutdown => {
                f.write_str("guest shut down (triple fault or shutdown request)")
            }
            MachineExit::Quit => f.write_str("quit requested by the host"),
            MachineExit::Error(e) => write!(f, "machine error: {e}"),
        }
    }
}

/// Where the machine is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineState {
    /// Built, vCPUs never started.
    Created,
    /// vCPU threads running.
    Running,
    /// vCPU threads stopped at a safe point.
    Paused,
    /// Ended; see [`Machine::exit`].
    Exited,
}

/// Why a machine operation failed.
/// One CPUID function as a vCPU reports it ([`Machine::vcpu_cpuid`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuidEntry {
    /// EAX in.
    pub function: u32,
    /// ECX in, when it selects a subleaf.
    pub index: Option<u32>,
    /// EAX, EBX, ECX, EDX out.
    pub regs: [u32; 4],
}

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// `/dev/kvm` could not be opened.
    #[error("cannot open /dev/kvm")]
    OpenKvm(#[source] kvm_ioctls::Error),
    /// A VM-level KVM ioctl failed.
    #[error("KVM {op} failed")]
    Kvm {
        /// Which operation.
        op: &'static str,
        /// The kernel's error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Guest memory could not be set up.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// A vCPU operation failed.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// Bad vCPU count.
    #[error("invalid vCPU count {count}: must be 1..={max}")]
    VcpuCount {
        /// Requested count.
        count: u32,
        /// Largest accepted count.
        max: u32,
    },
    /// No such vCPU.
    #[error("no vCPU {index} (the machine has {count})")]
    NoSuchVcpu {
        /// Requested index.
        index: usize,
        /// vCPU count.
        count: usize,
    },
    /// No such memory slot.
    #[error("no memory slot {0}")]
    NoSuchSlot(u32),
    /// A device state blob could not be restored.
    #[error("bad device state: {0}")]
    DeviceState(String),
    /// Dirty logging was not enabled in the config.
    #[error("dirty page logging was not enabled for this machine")]
    DirtyLogDisabled,
    /// The operation needs another run state.
    #[error("cannot {op} while the machine is {state:?}")]
    WrongState {
        /// What was attempted.
        op: &'static str,
        /// The state the machine was in.
        state: MachineState,
    },
    /// A device could not be placed on the I/O bus.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The pre-vCPU hook failed.
    #[error("VM set-up hook failed")]
    Hook(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A vCPU thread could not be spawned.
    #[error("cannot spawn the thread for vCPU {vcpu}")]
    Spawn {
        /// Which vCPU.
        vcpu: u32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The guest's register state is encrypted (SEV-ES, after
    /// LAUNCH_UPDATE_VMSA): the host can neither read nor set it.
    #[error(
        "cannot {op}: the guest's register state is protected (SEV-ES encrypts vCPU {index}'s \
         registers; the host cannot read or set them)"
    )]
    RegistersProtected {
        /// What was attempted.
        op: &'static str,
        /// The vCPU.
        index: usize,
    },
}

/// Length of [`Machine::device_state`].
pub const DEVICE_STATE_LEN: usize = 9;

/// A KVM memory slot of this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySlot {
    /// KVM slot number.
    pub slot: u32,
    /// First guest-physical address.
    pub gpa: u64,
    /// Size in bytes.
    pub len: u64,
    /// RAM or firmware.
    pub kind: RegionKind,
}

// ---------------------------------------------------------------------------
// The run control state shared by the machine and its vCPU threads.

const REQ_RUN: u8 = 0;
const REQ_PAUSE: u8 = 1;
const REQ_STOP: u8 = 2;

#[derive(Debug)]
struct Inner {
    state: MachineState,
    /// Threads inside the park wait (paused, or APs waiting) plus finished.
    parked: usize,
    /// Threads that have returned.
    finished: usize,
    /// Threads spawned.
    threads: usize,
    exit: Option<MachineExit>,
    /// pthread ids of the vCPU threads, for kicks. Valid until joined, which
    /// happens only after every thread has reported `finished`.
    kick_targets: Vec<libc::pthread_t>,
    /// The first guest-debug trap (vCPU id, pc) since it was last taken:
    /// the vCPUs park, and the debugger pauses the machine.
    debug_stop: Option<(u32, u64)>,
}

#[derive(Debug)]
struct RunControl {
    /// REQ_* mirror of what the threads should do, checked without the lock.
    request: AtomicU8,
    inner: Mutex<Inner>,
    cond: Condvar,
    /// Told when the machine exits (flushes and closes the serial output).
    bus: Arc<IoBus>,
    /// Where single-stepping vCPUs stop (see [`Machine::set_debug`]).
    debug: std::sync::RwLock<DebugConfig>,
    /// The GHCB host of an SEV guest on the emulated platform.
    ghcb: Option<Arc<GhcbHost>>,
}

/// What a debugger asked for: which vCPU stops after one instruction, and
/// the linear addresses every vCPU stops at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct DebugConfig {
    step: Option<u32>,
    breakpoints: Vec<u64>,
}

impl DebugConfig {
    fn stops(&self, vcpu: u32, pc: u64) -> bool {
        self.step == Some(vcpu) || self.breakpoints.contains(&pc)
    }
}

impl RunControl {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, g: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        self.cond.wait(g).unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends the kick signal to every vCPU thread. Called with the lock held
    /// and only while no thread has finished (so every pthread id is live).
    fn kick_all(&self, g: &Inner) {
        for &t in &g.kick_targets {
            // SAFETY: `t` is the id of a vCPU thread that has not been joined
            // (joining waits for all threads to report `finished` under this
            // lock, and callers hold the lock with `exit` unset or just set).
            let rc = unsafe { libc::pthread_kill(t, vcpu::kick_signal()) };
            if rc != 0 {
                log::debug!("kicking a vCPU thread failed: errno {rc}");
            }
        }
    }

    /// Records the machine's exit (first one wins) and stops every thread.
    fn finish(&self, g: &mut Inner, exit: MachineExit) {
        if g.exit.is_none() {
            log::debug!("machine exit: {exit}");
            g.exit = Some(exit);
            g.state = MachineState::Exited;
            self.request.store(REQ_STOP, Ordering::SeqCst);
            self.kick_all(g);
            // Lock order: shared, then a device (vCPU threads never take
            // the shared lock while holding a device).
            self.bus.machine_exited();
            self.cond.notify_all();
        }
    }
}

/// A handle to wait for the machine's exit from another thread.
#[derive(Debug, Clone)]
pub struct ExitHandle(Arc<RunControl>);

impl ExitHandle {
    /// Blocks until the machine has exited; returns how.
    pub fn wait(&self) -> MachineExit {
        let mut g = self.0.lock();
        loop {
            if let Some(e) = &g.exit {
                return e.clone();
            }
            g = self.0.wait(g);
        }
    }

    /// How the machine exited, if it has.
    pub fn try_exit(&self) -> Option<MachineExit> {
        self.0.lock().exit.clone()
    }

    /// The current run state.
    pub fn run_state(&self) -> MachineState {
        self.0.lock().state
    }
}

struct VcpuSlot {
    id: u32,
    fd: Mutex<VcpuFd>,
    /// False for an AP waiting for its start-up IPI.
    runnable: AtomicBool,
    /// Halted waiting for an interrupt (see [`VcpuState::halted`]).
    halted: AtomicBool,
    /// The vCPU's GHCB MSR and registered GHCB (SEV-ES and SNP guests).
    ghcb: Mutex<VcpuGhcb>,
}

impl VcpuSlot {
    fn lock(&self) -> MutexGuard<'_, VcpuFd> {
        self.fd.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The machine.
pub struct Machine {
    // Field order is drop order: vCPU fds and the VM fd close before the
    // guest memory they reference is unmapped.
    vcpus: Vec<Arc<VcpuSlot>>,
    vm: VmFd,
    _kvm: Kvm,
    ram: Arc<GuestRam>,
    view: Arc<dyn MemoryView>,
    bus: Arc<IoBus>,
    serial: Arc<Mutex<Serial>>,
    control: ControlHandle,
    slots: Vec<MemorySlot>,
    dirty_logging: bool,
    qemu_thread_names: bool,
    msr_indices: Vec<u32>,
    /// Set once an SEV-ES guest's VMSAs are encrypted: from then on the
    /// vCPUs' registers cannot be read or set by the host.
    registers_protected: AtomicBool,
    shared: Arc<RunControl>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("vcpus", &self.vcpus.len())
            .field("ram", &self.ram)
            .field("slots", &self.slots)
            .field("state", &self.run_state())
            .finish_non_exhaustive()
    }
}

impl Machine {
    /// Opens `/dev/kvm`, creates the VM, its memory (with the firmware loaded
    /// to end at 4 GiB), the memory slots, the devices and the vCPUs in their
    /// reset state. The vCPUs stay stopped until [`Machine::start`].
    pub fn new(config: MachineConfig) -> Result<Machine, MachineError> {
        let MachineConfig {
            ram_size,
            vcpus,
            firmware,
            serial,
            dirty_logging,
            vm_type,
            qemu_thread_names,
            pre_vcpu_hook,
            emulated_sev,
        } = config;
        if vcpus == 0 || vcpus > MAX_VCPUS {
            return Err(MachineError::VcpuCount {
                count: vcpus,
                max: MAX_VCPUS,
            });
        }
        vcpu::install_kick_handler()?;
        let ram = Arc::new(GuestRam::with_firmware(ram_size, &firmware)?);

        let kvm = Kvm::new().map_err(MachineError::OpenKvm)?;
        let vm_err = |op| move |source| MachineError::Kvm { op, source };
        let vm = kvm
            .create_vm_with_type(vm_type)
            .map_err(vm_err("KVM_CREATE_VM"))?;
        vm.set_identity_map_address(IDENTITY_MAP_ADDR)
            .map_err(vm_err("KVM_SET_IDENTITY_MAP_ADDR"))?;
        vm.set_tss_address(TSS_ADDR as usize)
            .map_err(vm_err("KVM_SET_TSS_ADDR"))?;

        let mut slots = Vec::new();
        for (slot, region) in (0u32..).zip(ram.region_info()) {
            let flags = if dirty_logging {
                KVM_MEM_LOG_DIRTY_PAGES
            } else {
                0
            };
            let mem_region = kvm_userspace_memory_region {
                slot,
                flags,
                guest_phys_addr: region.gpa.raw(),
                memory_size: region.len,
                userspace_addr: region.host_addr,
            };
            // SAFETY: the host range is a live anonymous `vm-memory` mapping of exactly
            // `region.len` bytes owned by `ram`, which this machine keeps
            // alive (and declares after `vm`, so it is unmapped only after the
            // VM fd is closed).
            unsafe { vm.set_user_memory_region(mem_region) }
                .map_err(vm_err("KVM_SET_USER_MEMORY_REGION"))?;
            slots.push(MemorySlot {
                slot,
                gpa: region.gpa.raw(),
                len: region.len,
                kind: region.kind,
            });
        }

        if let Some(hook) = pre_vcpu_hook {
            hook(&vm, &ram).map_err(MachineError::Hook)?;
        }

        let supported = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(vm_err("KVM_GET_SUPPORTED_CPUID"))?;
        let msr_indices: Vec<u32> = match kvm.get_msr_index_list() {
            Ok(list) => vcpu::STATE_MSRS
                .iter()
                .copied()
                .filter(|m| list.as_slice().contains(m))
                .collect(),
            Err(e) => {
                log::warn!("KVM_GET_MSR_INDEX_LIST failed ({e}); vCPU state will carry no MSRs");
                Vec::new()
            }
        };
        let mut vcpu_slots = Vec::with_capacity(vcpus as usize);
        for id in 0..vcpus {
            let fd = vm
                .create_vcpu(u64::from(id))
                .map_err(vm_err("KVM_CREATE_VCPU"))?;
            let cpuid = vcpu::vcpu_cpuid(&supported, id, emulated_sev)?;
            fd.set_cpuid2(&cpuid)
                .map_err(|source| vcpu::VcpuError::Kvm {
                    op: "KVM_SET_CPUID2",
                    vcpu: id,
                    source,
                })?;
            vcpu::set_reset_state(&fd, id)?;
            vcpu_slots.push(Arc::new(VcpuSlot {
                id,
                fd: Mutex::new(fd),
                ghcb: Mutex::new(VcpuGhcb::new(vcpu::cpuid_leaves(&cpuid))),
                runnable: AtomicBool::new(id == 0),
                halted: AtomicBool::new(false),
            }));
        }

        let serial = Arc::new(Mutex::new(Serial::new(serial)));
        let control = ControlHandle::new();
        let mut bus = IoBus::new();
        bus.register(COM1_BASE, PORT_COUNT, serial.clone())?;
        bus.register(DEBUG_EXIT_PORT, 1, Arc::new(Mutex::new(DebugExit)))?;
        bus.register(
            CONTROL_PORT,
            1,
            Arc::new(Mutex::new(GuestControl::new(control.clone()))),
        )?;

        let ghcb = match emulated_sev {
            Some(sev) => {
                vcpu::trap_sev_msrs(&vm)?;
                let page = Arc::new(SharedGhcbPage::new(ram.clone()));
                Some(Arc::new(GhcbHost::new(sev.mode, sev.c_bit, page)))
            }
            None => None,
        };
        let view: Arc<dyn MemoryView> = Arc::new(PlainView::new(ram.clone()));
        let bus = Arc::new(bus);
        Ok(Machine {
            vcpus: vcpu_slots,
            vm,
            _kvm: kvm,
            ram,
            view,
            bus: bus.clone(),
            serial,
            control,
            slots,
            dirty_logging,
            qemu_thread_names,
            msr_indices,
            registers_protected: AtomicBool::new(false),
            shared: Arc::new(RunControl {
                request: AtomicU8::new(REQ_RUN),
                inner: Mutex::new(Inner {
                    state: MachineState::Created,
                    parked: 0,
                    debug_stop: None,
                    finished: 0,
                    threads: 0,
                    exit: None,
                    kick_targets: Vec::new(),
                }),
                cond: Condvar::new(),
                debug: std::sync::RwLock::new(DebugConfig::default()),
                bus,
                ghcb,
            }),
            threads: Mutex::new(Vec::new()),
        })
    }

    /// The guest memory backing. Only the pre-launch loader and the emulated
    /// firmware's backing may use it directly; everything else uses
    /// [`Machine::memory_view`].
    pub fn guest_memory(&self) -> &Arc<GuestRam> {
        &self.ram
    }

    /// The GHCB host of an SEV guest on the emulated platform
    /// ([`MachineConfig::emulated_sev`]); an SNP guest context replaces its
    /// platform ([`GhcbHost::set_platform`]).
    pub fn ghcb_host(&self) -> Option<&Arc<GhcbHost>> {
        self.shared.ghcb.as_ref()
    }

    /// The host view of guest memory.
    pub fn memory_view(&self) -> Arc<dyn MemoryView> {
        self.view.clone()
    }

    /// Replaces the host view (the SEV launch installs the encrypted view).
    pub fn set_memory_view(&mut self, view: Arc<dyn MemoryView>) {
        self.view = view;
    }

    /// The KVM VM fd (for the hardware SEV backend's `KVM_MEMORY_ENCRYPT_OP`).
    pub fn vm_fd(&self) -> &VmFd {
        &self.vm
    }

    /// Host side of the guest control port (memtest "finish now").
    pub fn control(&self) -> ControlHandle {
        self.control.clone()
    }

    /// The device state a snapshot or migration carries: version 1, the
    /// UART's seven registers, the control port's "finish" flag (9 bytes).
    pub fn device_state(&self) -> Vec<u8> {
        let regs = self
            .serial
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .registers();
        let mut v = Vec::with_capacity(DEVICE_STATE_LEN);
        v.push(1);
        v.extend_from_slice(&regs);
        v.push(u8::from(self.control.finish_requested()));
        v
    }

    /// Restores [`Machine::device_state`]'s bytes.
    pub fn set_device_state(&self, bytes: &[u8]) -> Result<(), MachineError> {
        let bad = |problem: &str| MachineError::DeviceState(problem.to_string());
        if bytes.len() != DEVICE_STATE_LEN {
            return Err(bad(&format!(
                "{} bytes, expected {DEVICE_STATE_LEN}",
                bytes.len()
            )));
        }
        if bytes.first() != Some(&1) {
            return Err(bad("unknown version"));
        }
        let mut regs = [0u8; 7];
        regs.copy_from_slice(bytes.get(1..8).unwrap_or(&[0; 7]));
        match bytes.get(8) {
            Some(0) => {}
            Some(1) => self.control.request_finish(),
            _ => return Err(bad("bad control flag")),
        }
        self.serial
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_registers(regs);
        Ok(())
    }

    /// The machine's KVM memory slots.
    pub fn slots(&self) -> &[MemorySlot] {
        &self.slots
    }

    /// Whether the slots log dirty pages.
    pub fn dirty_logging(&self) -> bool {
        self.dirty_logging
    }

    /// `KVM_GET_DIRTY_LOG` for `slot`: one bit per 4 KiB page, set when the
    /// page was written since the previous call.
    pub fn dirty_log(&self, slot: u32) -> Result<Vec<u64>, MachineError> {
        if !self.dirty_logging {
            return Err(MachineError::DirtyLogDisabled);
        }
        let s = self
            .slots
            .iter()
            .find(|s| s.slot == slot)
            .ok_or(MachineError::NoSuchSlot(slot))?;
        let len = usize::try_from(s.len).map_err(|_| MachineError::NoSuchSlot(slot))?;
        self.vm
            .get_dirty_log(slot, len)
            .map_err(|source| MachineError::Kvm {
                op: "KVM_GET_DIRTY_LOG",
                source,
            })
    }

    /// Number of vCPUs.
    pub fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }

    /// The current run state.
    pub fn run_state(&self) -> MachineState {
        self.shared.lock().state
    }

    /// How the machine exited, if it has.
    pub fn exit(&self) -> Option<MachineExit> {
        self.shared.lock().exit.clone()
    }

    /// A handle to wait for the exit from another thread.
    pub fn exit_handle(&self) -> ExitHandle {
        ExitHandle(self.shared.clone())
    }

    /// Flushes the serial output.
    pub fn flush_serial(&self) {
        self.serial
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush();
    }

    fn slot(&self, index: usize) -> Result<&Arc<VcpuSlot>, MachineError> {
        self.vcpus.get(index).ok_or(MachineError::NoSuchVcpu {
            index,
            count: self.vcpus.len(),
        })
    }

    fn require_stopped(&self, op: &'static str) -> Result<(), MachineError> {
        match self.run_state() {
            MachineState::Created | MachineState::Paused => Ok(()),
            state => Err(MachineError::WrongState { op, state }),
        }
    }

    /// Marks the vCPUs' register state as protected (SEV-ES, once
    /// LAUNCH_UPDATE_VMSA encrypted the VMSAs, as KVM does): from then on
    /// [`Machine::vcpu_state`], [`Machine::set_vcpu_state`] and
    /// [`Machine::set_debug`] fail with [`MachineError::RegistersProtected`].
    pub fn protect_registers(&self) {
        self.registers_protected.store(true, Ordering::SeqCst);
    }

    /// Whether the vCPUs' register state is protected
    /// ([`Machine::protect_registers`]).
    pub fn registers_protected(&self) -> bool {
        self.registers_protected.load(Ordering::SeqCst)
    }

    fn require_unprotected(&self, op: &'static str, index: usize) -> Result<(), MachineError> {
        if self.registers_protected() {
            return Err(MachineError::RegistersProtected { op, index });
        }
        Ok(())
    }

    /// Reads vCPU `index`'s state. The machine must be created or paused,
    /// and its registers not protected.
    pub fn vcpu_state(&self, index: usize) -> Result<VcpuState, MachineError> {
        self.require_stopped("read vCPU state")?;
        let slot = self.slot(index)?;
        self.require_unprotected("read vCPU state", index)?;
        let fd = slot.lock();
        Ok(vcpu::get_state(
            &fd,
            slot.id,
            &self.msr_indices,
            slot.runnable.load(Ordering::SeqCst),
            slot.halted.load(Ordering::SeqCst),
        )?)
    }

    /// vCPU `index`'s CPUID as KVM holds it (what the guest sees), as
    /// function, significant index and EAX..EDX: QEMU fills an SNP guest's
    /// CPUID page from the first vCPU's.
    pub fn vcpu_cpuid(&self, index: usize) -> Result<Vec<CpuidEntry>, MachineError> {
        let slot = self.slot(index)?;
        let fd = slot.lock();
        let cpuid = fd
            .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
            .map_err(|source| MachineError::Kvm {
                op: "KVM_GET_CPUID2",
                source,
            })?;
        Ok(cpuid
            .as_slice()
            .iter()
            .map(|e| CpuidEntry {
                function: e.function,
                index: (e.flags & kvm_bindings::KVM_CPUID_FLAG_SIGNIFCANT_INDEX != 0)
                    .then_some(e.index),
                regs: [e.eax, e.ebx, e.ecx, e.edx],
            })
            .collect())
    }

    /// Reads vCPU `index`'s state for an SEV-ES migration, protected
    /// registers included: on hardware the processor saves them into the
    /// vCPU's VMSA when it stops, and the migration sends them only as that
    /// VMSA's SEND_UPDATE_VMSA packet (docs/sev-es.md#migration). The
    /// machine must be created or paused.
    pub(crate) fn vcpu_state_for_vmsa(&self, index: usize) -> Result<VcpuState, MachineError> {
        self.require_stopped("read vCPU state")?;
        let slot = self.slot(index)?;
        let fd = slot.lock();
        Ok(vcpu::get_state(
            &fd,
            slot.id,
            &self.msr_indices,
            slot.runnable.load(Ordering::SeqCst),
            slot.halted.load(Ordering::SeqCst),
        )?)
    }

    /// Writes vCPU `index`'s state. The machine must be created or paused,
    /// and its registers not protected.
    pub fn set_vcpu_state(&self, index: usize, state: &VcpuState) -> Result<(), MachineError> {
        self.require_stopped("write vCPU state")?;
        let slot = self.slot(index)?;
        self.require_unprotected("write vCPU state", index)?;
        let fd = slot.lock();
        vcpu::set_state(&fd, slot.id, state)?;
        slot.runnable.store(state.runnable, Ordering::SeqCst);
        slot.halted.store(state.halted, Ordering::SeqCst);
        Ok(())
    }

    /// Debugger control: vCPU `step` stops after its next instruction, and
    /// every vCPU stops before executing an instruction at one of the
    /// linear addresses in `breakpoints`. Both work by single-stepping
    /// (`KVM_SET_GUEST_DEBUG`) the vCPUs concerned and checking each
    /// trap's address, so no guest memory is modified (no `int3`, which an
    /// SEV guest's encrypted memory could only take through DBG_ENCRYPT):
    /// with breakpoints set the guest runs one instruction per KVM exit.
    /// The machine must be created or paused; with its registers protected
    /// (SEV-ES) only turning debugging off is accepted, as KVM refuses
    /// single-stepping such a guest.
    pub fn set_debug(&self, step: Option<usize>, breakpoints: &[u64]) -> Result<(), MachineError> {
        self.require_stopped("set guest debugging")?;
        if let Some(i) = step {
            self.slot(i)?;
        }
        if step.is_some() || !breakpoints.is_empty() {
            self.require_unprotected("single-step or set breakpoints", step.unwrap_or(0))?;
        }
        let config = DebugConfig {
            step: step.and_then(|i| self.vcpus.get(i)).map(|s| s.id),
            breakpoints: breakpoints.to_vec(),
        };
        for slot in &self.vcpus {
            let on = config.step == Some(slot.id) || !config.breakpoints.is_empty();
            let fd = slot.lock();
            vcpu::set_guest_debug(&fd, slot.id, on)?;
        }
        *self
            .shared
            .debug
            .write()
            .unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    /// Takes the guest-debug trap that stopped the vCPUs, if any: the vCPU
    /// index and the linear address of the next instruction. After a trap
    /// the vCPUs are parked but the machine still says
    /// [`MachineState::Running`] until [`Machine::pause`].
    pub fn take_debug_stop(&self) -> Option<(usize, u64)> {
        let mut g = self.shared.lock();
        g.debug_stop.take().map(|(id, pc)| (id as usize, pc))
    }

    /// Waits for a guest-debug trap and takes it; `None` if the machine
    /// exits first.
    pub fn wait_for_debug_stop(&self) -> Option<(usize, u64)> {
        let mut g = self.shared.lock();
        loop {
            if let Some((id, pc)) = g.debug_stop.take() {
                return Some((id as usize, pc));
            }
            if g.exit.is_some() {
                return None;
            }
            g = self.shared.wait(g);
        }
    }

    /// Whether a guest-debug trap is waiting to be taken.
    pub fn debug_stop_pending(&self) -> bool {
        self.shared.lock().debug_stop.is_some()
    }

    /// Starts the vCPU threads (once, from [`MachineState::Created`]).
    pub fn start(&self) -> Result<(), MachineError> {
        let mut threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
        let mut g = self.shared.lock();
        if g.state != MachineState::Created {
            return Err(MachineError::WrongState {
                op: "start",
                state: g.state,
            });
        }
        self.shared.request.store(REQ_RUN, Ordering::SeqCst);
        for slot in &self.vcpus {
            let slot = slot.clone();
            let shared = self.shared.clone();
            let bus = self.bus.clone();
            let id = slot.id;
            // QEMU's debug-threads=on names; Linux keeps the first 15 bytes.
            let name = if self.qemu_thread_names {
                format!("CPU {id}/KVM")
            } else {
                format!("vcpu{id}")
            };
            let spawned = std::thread::Builder::new()
                .name(name)
                .spawn(move || vcpu_thread(&slot, &shared, &bus));
            match spawned {
                Ok(handle) => {
                    g.kick_targets.push(handle.pthread_handle());
                    g.threads += 1;
                    threads.push(handle);
                }
                Err(source) => {
                    // Stop what was started; the machine is unusable.
                    self.shared.finish(
                        &mut g,
                        MachineExit::Error(format!("cannot spawn vCPU {id} thread: {source}")),
                    );
                    return Err(MachineError::Spawn { vcpu: id, source });
                }
            }
        }
        g.state = MachineState::Running;
        self.shared.cond.notify_all();
        Ok(())
    }

    /// Stops every vCPU at a safe point and returns once all are stopped.
    /// A no-op when already paused or never started.
    pub fn pause(&self) -> Result<(), MachineError> {
        let mut g = self.shared.lock();
        match g.state {
            MachineState::Created | MachineState::Paused => return Ok(()),
            MachineState::Exited => {
                return Err(MachineError::WrongState {
                    op: "pause",
                    state: MachineState::Exited,
                })
            }
            MachineState::Running => {}
        }
        self.shared.request.store(REQ_PAUSE, Ordering::SeqCst);
        self.shared.kick_all(&g);
        while g.parked < g.threads && g.exit.is_none() {
            g = self.shared.wait(g);
        }
        if g.exit.is_some() {
            return Err(MachineError::WrongState {
                op: "pause",
                state: MachineState::Exited,
            });
        }
        g.state = MachineState::Paused;
        Ok(())
    }

    /// Lets paused vCPUs run again.
    pub fn resume(&self) -> Result<(), MachineError> {
        let mut g = self.shared.lock();
        match g.state {
            MachineState::Paused => {}
            MachineState::Running => return Ok(()),
            state => {
                return Err(MachineError::WrongState {
                    op: "resume",
                    state,
                })
            }
        }
        self.shared.request.store(REQ_RUN, Ordering::SeqCst);
        g.state = MachineState::Running;
        self.shared.cond.notify_all();
        Ok(())
    }

    /// Ends the machine with [`MachineExit::Quit`] (no-op if it has exited).
    pub fn request_quit(&self) {
        let mut g = self.shared.lock();
        self.shared.finish(&mut g, MachineExit::Quit);
    }

    /// Waits for the machine to exit and its vCPU threads to finish; returns
    /// how it exited. Without a prior [`Machine::start`] this waits for
    /// [`Machine::request_quit`] from another thread.
    pub fn wait_for_exit(&self) -> MachineExit {
        let exit = self.exit_handle().wait();
        self.join_threads();
        self.flush_serial();
        exit
    }

    /// Starts the machine and waits for it to exit.
    pub fn run_until_exit(&self) -> Result<MachineExit, MachineError> {
        self.start()?;
        Ok(self.wait_for_exit())
    }

    fn join_threads(&self) {
        let mut threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
        {
            let mut g = self.shared.lock();
            while g.finished < g.threads {
                g = self.shared.wait(g);
            }
            // No more kicks may target these threads once they are joined.
            g.kick_targets.clear();
        }
        for t in threads.drain(..) {
            if t.join().is_err() {
                log::error!("a vCPU thread panicked");
            }
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.request_quit();
        self.join_threads();
    }
}

/// Parks until this vCPU may run; returns false when the machine stops.
fn park(slot: &VcpuSlot, shared: &RunControl) -> bool {
    let mut g = shared.lock();
    let mut counted = false;
    let run = loop {
        let req = shared.request.load(Ordering::SeqCst);
        if req == REQ_STOP {
            break false;
        }
        if req == REQ_RUN
            && slot.runnable.load(Ordering::SeqCst)
            && !slot.halted.load(Ordering::SeqCst)
        {
            break true;
        }
        if !counted {
            counted = true;
            g.parked += 1;
            shared.cond.notify_all();
        }
        g = shared.wait(g);
    };
    if counted {
        g.parked -= 1;
    }
    run
}

fn vcpu_thread(slot: &VcpuSlot, shared: &RunControl, bus: &IoBus) {
    // Threads inherit the spawner's signal mask; kicks must get through.
    if let Err(e) = vmm_sys_util::signal::unblock_signal(vcpu::kick_signal()) {
        log::warn!("vCPU {}: cannot unblock the kick signal: {e}", slot.id);
    }
    let mut log = ExitLog::new();
    while park(slot, shared) {
        let mut fd = slot.lock();
        let guard = RunGuard::new(&mut fd);
        let outcome = loop {
            if shared.request.load(Ordering::SeqCst) != REQ_RUN {
                break None;
            }
            let mut ghcb_state;
            let ghcb = match &shared.ghcb {
                Some(host) => {
                    ghcb_state = slot.ghcb.lock().unwrap_or_else(PoisonError::into_inner);
                    Some(GhcbExits {
                        host,
                        vcpu: &mut ghcb_state,
                    })
                }
                None => None,
            };
            match vcpu::run_step(&mut fd, slot.id, bus, &mut log, ghcb) {
                Step::Continue | Step::Interrupted => {}
                Step::Halted => {
                    // Parked until the machine stops: nothing can wake it.
                    slot.halted.store(true, Ordering::SeqCst);
                    break None;
                }
                Step::GuestExit(v) => break Some(MachineExit::GuestExit(v)),
                Step::Shutdown => break Some(MachineExit::Shutdown),
                Step::Error(e) => break Some(MachineExit::Error(e)),
                Step::Debug { pc } => {
                    let stop = shared
                        .debug
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .stops(slot.id, pc);
                    if !stop {
                        continue;
                    }
                    // Park every vCPU; the debugger (gdb stub) sees the
                    // trap and pauses the machine properly.
                    let mut g = shared.lock();
                    g.debug_stop.get_or_insert((slot.id, pc));
                    let _ = shared.request.compare_exchange(
                        REQ_RUN,
                        REQ_PAUSE,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                    shared.kick_all(&g);
                    shared.cond.notify_all();
                    break None;
                }
            }
        };
        drop(guard);
        // Clear a kick that arrived after the last KVM_RUN.
        fd.set_kvm_immediate_exit(0);
        drop(fd);
        if let Some(exit) = outcome {
            let mut g = shared.lock();
            shared.finish(&mut g, exit);
        }
    }
    let mut g = shared.lock();
    g.parked += 1;
    g.finished += 1;
    shared.cond.notify_all();
}

/// Test helpers shared by this crate's machine and demo-guest tests (the
/// skips go through `sevm-testutil`).
#[cfg(test)]
pub(crate) mod testutil {
    /// Whether `/dev/kvm` can be used. When it cannot, prints
    /// `SKIPPED: <test>: /dev/kvm not available` and returns false, unless
    /// `SEVM_REQUIRE_ALL=1`, in which case it panics.
    pub(crate) fn kvm_available(test: &str) -> bool {
        sevm_testutil::kvm(test)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::serial::CaptureBuffer;

    /// A 64 KiB firmware whose reset vector (16-bit) prints "A" on COM1 and
    /// writes `status` to the debug-exit port.
    fn tiny_firmware(status: u8) -> Vec<u8> {
        let mut fw = vec![0xF4u8; 0x10000];
        let code = [
            0xB0, b'A', // mov al, 'A'
            0xBA, 0xF8, 0x03, // mov dx, 0x3f8
            0xEE, // out dx, al
            0xBA, 0x01, 0x05, // mov dx, 0x501
            0xB0, status, // mov al, status
            0xEE,   // out dx, al
        ];
        let at = fw.len() - 16;
        fw[at..at + code.len()].copy_from_slice(&code);
        fw
    }

    fn config(fw: Vec<u8>, out: &CaptureBuffer) -> MachineConfig {
        let mut c = MachineConfig::new(1 << 20, fw);
        c.serial = SerialOutput::Capture(out.clone());
        c
    }

    #[test]
    fn reset_vector_runs_and_debug_exit_ends_the_machine() {
        if !testutil::kvm_available("reset_vector_runs_and_debug_exit_ends_the_machine") {
            return;
        }
        let out = CaptureBuffer::new();
        let m = Machine::new(config(tiny_firmware(7), &out)).unwrap();
        assert_eq!(m.run_state(), MachineState::Created);
        let s = m.vcpu_state(0).unwrap();
        assert_eq!(s.sregs.cs.selector, 0xF000);
        assert_eq!(s.sregs.cs.base, 0xFFFF_0000);
        assert_eq!(s.regs.rip, 0xFFF0);
        assert_eq!(m.run_until_exit().unwrap(), MachineExit::GuestExit(7));
        assert_eq!(out.text(), "A");
        assert_eq!(m.run_state(), MachineState::Exited);
        assert!(m.start().is_err());
    }

    /// The names of this process's threads.
    fn thread_names() -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|n| n.trim_end().to_string())
            .collect()
    }

    #[test]
    fn vcpu_threads_take_qemu_names_on_request() {
        if !testutil::kvm_available("vcpu_threads_take_qemu_names_on_request") {
            return;
        }
        // Two vCPUs that halt with interrupts enabled: they stay until quit.
        let mut fw = vec![0xF4u8; 0x10000];
        let at = fw.len() - 16;
        fw[at..at + 2].copy_from_slice(&[0xFB, 0xF4]); // sti; hlt
        let out = CaptureBuffer::new();
        let mut c = config(fw, &out);
        c.vcpus = 2;
        c.qemu_thread_names = true;
        let m = Machine::new(c).unwrap();
        m.start().unwrap();
        // Each thread names itself as it starts.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let names = loop {
            let names = thread_names();
            if names.iter().filter(|n| n.ends_with("/KVM")).count() == 2
                || std::time::Instant::now() > deadline
            {
                break names;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        m.request_quit();
        assert!(names.iter().any(|n| n == "CPU 0/KVM"), "{names:?}");
        assert!(names.iter().any(|n| n == "CPU 1/KVM"), "{names:?}");
        assert_eq!(m.wait_for_exit(), MachineExit::Quit);
    }

    #[test]
    fn hlt_with_interrupts_enabled_idles_until_quit_and_is_part_of_the_state() {
        if !testutil::kvm_available("hlt_with_interrupts_enabled_idles") {
            return;
        }
        let mut fw = vec![0xF4u8; 0x10000];
        let code = [
            0xB0, b'A', // mov al, 'A'
            0xBA, 0xF8, 0x03, // mov dx, 0x3f8
            0xEE, // out dx, al
            0xFB, // sti
            0xF4, // hlt (offset 7)
            0xBA, 0x01, 0x05, // mov dx, 0x501
            0xB0, 9,    // mov al, 9
            0xEE, // out dx, al
        ];
        let at = fw.len() - 16;
        fw[at..at + code.len()].copy_from_slice(&code);
        let out = CaptureBuffer::new();
        let m = Machine::new(config(fw, &out)).unwrap();
        m.start().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let state = loop {
            m.pause().unwrap();
            let s = m.vcpu_state(0).unwrap();
            if s.halted || std::time::Instant::now() > deadline {
                break s;
            }
            m.resume().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert!(state.halted, "the vCPU never halted");
        assert_eq!(state.regs.rip, 0xFFF8, "halted after the hlt");
        // Still halted, not exited, after running a while longer.
        m.resume().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(m.run_state(), MachineState::Running);
        m.pause().unwrap();
        assert!(m.vcpu_state(0).unwrap().halted);
        // A restored state that is not halted runs on after the hlt.
        let mut woken = state.clone();
        woken.halted = false;
        m.set_vcpu_state(0, &woken).unwrap();
        m.resume().unwrap();
        assert_eq!(m.wait_for_exit(), MachineExit::GuestExit(9));
        assert_eq!(out.text(), "A");
    }

    #[test]
    fn halted_guest_quits_on_request() {
        if !testutil::kvm_available("halted_guest_quits_on_request") {
            return;
        }
        let mut fw = vec![0xF4u8; 0x10000];
        let at = fw.len() - 16;
        fw[at] = 0xFB; // sti; hlt
        let out = CaptureBuffer::new();
        let m = Machine::new(config(fw, &out)).unwrap();
        m.start().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        m.request_quit();
        assert_eq!(m.wait_for_exit(), MachineExit::Quit);
    }

    #[test]
    fn single_steps_and_breakpoints_stop_the_vcpus() {
        if !testutil::kvm_available("single_steps_and_breakpoints_stop_the_vcpus") {
            return;
        }
        let out = CaptureBuffer::new();
        let m = Machine::new(config(tiny_firmware(7), &out)).unwrap();
        m.set_debug(Some(0), &[]).unwrap();
        assert!(m.set_debug(Some(1), &[]).is_err());
        m.start().unwrap();
        // One instruction: `mov al, 'A'` (2 bytes) at 0xFFFFFFF0.
        assert_eq!(m.wait_for_debug_stop(), Some((0, 0xFFFF_FFF2)));
        m.pause().unwrap();
        assert_eq!(m.vcpu_state(0).unwrap().regs.rip, 0xFFF2);
        // A breakpoint at the second `out` (offset 11): the first ran.
        m.set_debug(None, &[0xFFFF_FFFB]).unwrap();
        m.resume().unwrap();
        assert_eq!(m.wait_for_debug_stop(), Some((0, 0xFFFF_FFFB)));
        m.pause().unwrap();
        assert_eq!(m.vcpu_state(0).unwrap().regs.rip, 0xFFFB);
        assert_eq!(out.text(), "A");
        assert!(!m.debug_stop_pending());
        m.set_debug(None, &[]).unwrap();
        m.resume().unwrap();
        assert_eq!(m.wait_for_exit(), MachineExit::GuestExit(7));
        assert_eq!(m.wait_for_debug_stop(), None);
    }

    #[test]
    fn halt_with_interrupts_disabled_is_an_error_not_a_hang() {
        if !testutil::kvm_available("halt_with_interrupts_disabled_is_an_error_not_a_hang") {
            return;
        }
        let mut fw = vec![0u8; 0x10000];
        let at = fw.len() - 16;
        fw[at] = 0xFA; // cli
        fw[at + 1] = 0xF4; // hlt
        let out = CaptureBuffer::new();
        let m = Machine::new(config(fw, &out)).unwrap();
        match m.run_until_exit().unwrap() {
            MachineExit::Error(e) => assert!(e.contains("interrupts disabled"), "{e}"),
            other => panic!("unexpected exit {other:?}"),
        }
    }

    #[test]
    fn smp_aps_stay_parked_and_state_is_readable() {
        if !testutil::kvm_available("smp_aps_stay_parked_and_state_is_readable") {
            return;
        }
        let out = CaptureBuffer::new();
        let mut c = config(tiny_firmware(0), &out);
        c.vcpus = 3;
        let m = Machine::new(c).unwrap();
        assert_eq!(m.vcpu_count(), 3);
        assert!(!m.vcpu_state(2).unwrap().runnable);
        assert!(matches!(
            m.vcpu_state(3),
            Err(MachineError::NoSuchVcpu { index: 3, count: 3 })
        ));
        assert_eq!(m.run_until_exit().unwrap(), MachineExit::GuestExit(0));
        // Only the BSP ran the firmware.
        assert_eq!(out.text(), "A");
    }

    #[test]
    fn protected_registers_cannot_be_read_set_or_stepped() {
        if !testutil::kvm_available("protected_registers_cannot_be_read_set_or_stepped") {
            return;
        }
        let out = CaptureBuffer::new();
        let mut c = config(tiny_firmware(0), &out);
        c.vcpus = 2;
        let m = Machine::new(c).unwrap();
        let state = m.vcpu_state(1).unwrap();
        assert!(!m.registers_protected());
        m.protect_registers();
        assert!(m.registers_protected());
        let e = m.vcpu_state(1).unwrap_err();
        assert!(
            matches!(e, MachineError::RegistersProtected { index: 1, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("protected"), "{e}");
        assert!(matches!(
            m.set_vcpu_state(0, &state),
            Err(MachineError::RegistersProtected { index: 0, .. })
        ));
        assert!(matches!(
            m.set_debug(Some(0), &[]),
            Err(MachineError::RegistersProtected { .. })
        ));
        assert!(matches!(
            m.set_debug(None, &[0xFFFF_FFF0]),
            Err(MachineError::RegistersProtected { .. })
        ));
        // Turning debugging off stays possible; the guest still runs.
        m.set_debug(None, &[]).unwrap();
        assert_eq!(m.run_until_exit().unwrap(), MachineExit::GuestExit(0));
    }

    /// 16-bit code placed at the reset vector of a 64 KiB image.
    fn firmware_with_reset_code(code: &[u8]) -> Vec<u8> {
        assert!(code.len() <= 16);
        let mut fw = vec![0xF4u8; 0x10000];
        let at = fw.len() - 16;
        fw[at..at + code.len()].copy_from_slice(code);
        fw
    }

    #[test]
    fn pause_resume_and_state_access_while_paused() {
        if !testutil::kvm_available("pause_resume_and_state_access_while_paused") {
            return;
        }
        // 0xFFFFFFF0: jmp $ (spin forever)
        let fw = firmware_with_reset_code(&[0xEB, 0xFE]);
        let out = CaptureBuffer::new();
        let m = Machine::new(config(fw, &out)).unwrap();
        m.pause().unwrap(); // no-op before start
        assert!(matches!(
            m.resume(),
            Err(MachineError::WrongState {
                state: MachineState::Created,
                ..
            })
        ));
        m.start().unwrap();
        assert!(matches!(
            m.vcpu_state(0),
            Err(MachineError::WrongState {
                state: MachineState::Running,
                ..
            })
        ));
        for _ in 0..3 {
            m.pause().unwrap();
            assert_eq!(m.run_state(), MachineState::Paused);
            let s = m.vcpu_state(0).unwrap();
            assert_eq!(
                s.regs.rip, 0xFFF0,
                "spinning on the jmp at the reset vector"
            );
            m.set_vcpu_state(0, &s).unwrap();
            m.resume().unwrap();
            assert_eq!(m.run_state(), MachineState::Running);
        }
        let handle = m.exit_handle();
        assert_eq!(handle.try_exit(), None);
        m.request_quit();
        assert_eq!(handle.wait(), MachineExit::Quit);
        assert_eq!(m.wait_for_exit(), MachineExit::Quit);
        assert!(m.pause().is_err());
    }

    #[test]
    fn device_state_round_trips_and_bad_blobs_are_refused() {
        if !testutil::kvm_available("device_state_round_trips_and_bad_blobs_are_refused") {
            return;
        }
        let out = CaptureBuffer::new();
        let m = Machine::new(config(firmware_with_reset_code(&[0xF4]), &out)).unwrap();
        let fresh = m.device_state();
        assert_eq!(fresh, vec![1, 0, 0x03, 0, 0, 0x01, 0, 0, 0]);
        // Another machine's state: UART registers and the finish request.
        let moved = [1, 0x05, 0x83, 0x0B, 0x5A, 0x0C, 0x00, 0x01, 1];
        m.set_device_state(&moved).unwrap();
        assert_eq!(m.device_state(), moved.to_vec());
        assert!(m.control().finish_requested());
        for bad in [
            &[][..],
            &[2, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[1, 0, 0, 0, 0, 0, 0, 0, 7][..],
        ] {
            assert!(matches!(
                m.set_device_state(bad),
                Err(MachineError::DeviceState(_))
            ));
        }
    }

    #[test]
    fn dirty_log_reports_the_page_the_guest_wrote() {
        if !testutil::kvm_available("dirty_log_reports_the_page_the_guest_wrote") {
            return;
        }
        let fw = firmware_with_reset_code(&[
            0xC6, 0x06, 0x00, 0x50, 0x5A, // mov byte [0x5000], 0x5a
            0xBA, 0x01, 0x05, // mov dx, 0x501
            0xB0, 0x00, // mov al, 0
            0xEE, // out dx, al
        ]);
        let out = CaptureBuffer::new();
        let mut c = config(fw, &out);
        c.dirty_logging = true;
        let m = Machine::new(c).unwrap();
        assert_eq!(m.slots().len(), 2);
        assert_eq!(m.slots()[0].kind, RegionKind::Ram);
        assert_eq!(m.slots()[1].gpa, (1 << 32) - 0x10000);
        // Clear whatever set-up touched.
        m.dirty_log(0).unwrap();
        assert_eq!(m.run_until_exit().unwrap(), MachineExit::GuestExit(0));
        let bitmap = m.dirty_log(0).unwrap();
        let dirty: Vec<usize> = (0..bitmap.len() * 64)
            .filter(|&p| bitmap[p / 64] & (1 << (p % 64)) != 0)
            .collect();
        assert_eq!(dirty, vec![5]);
        let mut b = [0u8];
        m.memory_view()
            .read(crate::memory::Gpa(0x5000), &mut b)
            .unwrap();
        assert_eq!(b[0], 0x5A);
        assert!(matches!(m.dirty_log(9), Err(MachineError::NoSuchSlot(9))));
    }

    #[test]
    fn machine_types_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Machine>();
        assert_send_sync::<ExitHandle>();
        assert_send_sync::<GuestRam>();
    }

    #[test]
    fn triple_fault_ends_with_shutdown() {
        if !testutil::kvm_available("triple_fault_ends_with_shutdown") {
            return;
        }
        // The demo guest's boot block gets to 32-bit protected mode; replace
        // its 32-bit code with: mov ax, 0x10; mov ds, ax;
        // lidt [0xFFFFE800] (all zero: IDT limit 0); ud2
        // => #UD cannot be delivered -> #GP -> #DF -> triple fault. (In real
        // mode this KVM's emulator ignores the IDT limit, and it cannot
        // emulate int3, hence protected mode and ud2.)
        let mut fw = sevm_demo::build(&sevm_demo::DemoOptions {
            size: 0x10000,
            mode: sevm_demo::DemoMode::Normal,
        })
        .unwrap();
        let base = (1u64 << 32) - fw.len() as u64;
        let code_at = (u64::from(sevm_demo::asm::CODE32_BASE) - base) as usize;
        let code = [
            0x66, 0xB8, 0x10, 0x00, 0x8E, 0xD8, 0x0F, 0x01, 0x1D, 0x00, 0xE8, 0xFF, 0xFF, 0x0F,
            0x0B,
        ];
        fw[code_at..code_at + code.len()].copy_from_slice(&code);
        let desc_at = (0xFFFF_E800 - base) as usize;
        assert!(fw[desc_at..desc_at + 6].iter().all(|&b| b == 0));
        let out = CaptureBuffer::new();
        let m = Machine::new(config(fw, &out)).unwrap();
        assert_eq!(m.run_until_exit().unwrap(), MachineExit::Shutdown);
    }

    #[test]
    fn x87_instruction_is_an_error_or_runs_never_a_panic() {
        if !testutil::kvm_available("x87_instruction_is_an_error_or_runs_never_a_panic") {
            return;
        }
        // fninit; mov dx, 0x501; mov al, 9; out dx, al
        let fw = firmware_with_reset_code(&[0xDB, 0xE3, 0xBA, 0x01, 0x05, 0xB0, 0x09, 0xEE]);
        let out = CaptureBuffer::new();
        let m = Machine::new(config(fw, &out)).unwrap();
        // This machine's KVM cannot emulate x87 in this mode; hardware with
        // unrestricted guest support just runs it.
        match m.run_until_exit().unwrap() {
            MachineExit::GuestExit(9) => {}
            MachineExit::Error(e) => assert!(e.contains("KVM internal error on vCPU 0"), "{e}"),
            other => panic!("unexpected exit {other:?}"),
        }
    }

    #[test]
    fn quit_before_start_and_bad_configs() {
        if !testutil::kvm_available("quit_before_start_and_bad_configs") {
            return;
        }
        let out = CaptureBuffer::new();
        let mut c = config(tiny_firmware(0), &out);
        c.vcpus = 0;
        assert!(matches!(
            Machine::new(c),
            Err(MachineError::VcpuCount { count: 0, .. })
        ));
        let mut c = config(tiny_firmware(0), &out);
        c.ram_size = 4 << 30;
        assert!(matches!(
            Machine::new(c),
            Err(MachineError::Memory(MemoryError::RamTooLarge { .. }))
        ));
        let m = Machine::new(config(tiny_firmware(0), &out)).unwrap();
        assert!(matches!(
            m.dirty_log(0),
            Err(MachineError::DirtyLogDisabled)
        ));
        m.request_quit();
        assert_eq!(m.wait_for_exit(), MachineExit::Quit);
        assert!(m.start().is_err());
    }

    #[test]
    fn kvm_reserved_pages_do_not_overlap_memory() {
        use crate::memory::{FOUR_GIB, MAX_FIRMWARE_SIZE, MAX_RAM_SIZE};
        const { assert!(IDENTITY_MAP_ADDR >= MAX_RAM_SIZE) };
        const { assert!(TSS_ADDR + 3 * 4096 <= FOUR_GIB - MAX_FIRMWARE_SIZE) };
        assert_eq!(IDENTITY_MAP_ADDR + 4096, TSS_ADDR);
    }

    #[test]
    fn exit_messages_are_readable() {
        assert_eq!(
            MachineExit::GuestExit(3).to_string(),
            "guest exited with status 3"
        );
        assert!(MachineExit::Error("x".into()).to_string().contains('x'));
    }
}
