//! One virtual CPU: its x86 reset state, its CPUID, the serialisable register
//! state used by snapshots, and one step of the run loop (enter the guest,
//! handle the exit).
//!
//! Kicking: a vCPU thread sitting in `KVM_RUN` is forced out by sending it
//! [`kick_signal`]. The handler sets `immediate_exit` in that thread's
//! `kvm_run` page, so a kick that lands just before `KVM_RUN` is entered is
//! not lost either: the next `KVM_RUN` returns `EINTR` at once.

use std::cell::Cell;
use std::fmt;
use std::sync::OnceLock;

use kvm_bindings::{
    kvm_dtable, kvm_msr_entry, kvm_regs, kvm_run, kvm_segment, kvm_sregs, CpuId, Msrs,
    KVM_EXIT_INTERNAL_ERROR,
};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};
use libc::{c_int, c_void, siginfo_t};

use crate::devices::{IoAction, IoBus, RateLimiter};
use crate::ghcb::msr::GHCB_MSR;
use crate::ghcb::{CpuidLeaf, GhcbHost, Outcome, SevMode, VcpuGhcb};

/// Why a vCPU operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// A KVM vCPU ioctl failed.
    #[error("KVM {op} failed on vCPU {vcpu}")]
    Kvm {
        /// Which operation.
        op: &'static str,
        /// Which vCPU.
        vcpu: u32,
        /// The kernel's error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Building an MSR list failed.
    #[error("cannot build the MSR list for vCPU {vcpu}: {reason}")]
    MsrList {
        /// Which vCPU.
        vcpu: u32,
        /// What went wrong.
        reason: String,
    },
    /// The vCPU's CPUID table could not be built.
    #[error("cannot build the CPUID table of vCPU {vcpu}: {reason}")]
    Cpuid {
        /// Which vCPU.
        vcpu: u32,
        /// What went wrong.
        reason: String,
    },
    /// The kick signal handler could not be installed.
    #[error("cannot install the vCPU kick signal handler")]
    Signal(#[source] kvm_ioctls::Error),
    /// The SEV MSRs could not be trapped to sevm ([`trap_sev_msrs`]).
    #[error("cannot trap the SEV MSRs to sevm: {op} failed")]
    MsrTrap {
        /// Which KVM operation.
        op: &'static str,
        /// The kernel's error.
        #[source]
        source: kvm_ioctls::Error,
    },
}

/// Why a serialised [`VcpuState`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateDecodeError {
    /// The buffer ended early.
    #[error("vCPU state truncated: needed {needed} more bytes at offset {offset}")]
    Truncated {
        /// Where the read started.
        offset: usize,
        /// How many bytes were missing.
        needed: usize,
    },
    /// Wrong magic.
    #[error("not a sevm vCPU state (bad magic)")]
    BadMagic,
    /// Unknown format version.
    #[error("unsupported vCPU state version {0}")]
    Version(u32),
    /// Too many MSRs.
    #[error("vCPU state lists {count} MSRs, at most {max} are allowed")]
    TooManyMsrs {
        /// Count found.
        count: u32,
        /// Largest accepted count.
        max: u32,
    },
    /// Unknown flag bits.
    #[error("vCPU state has unknown flags {0:#x}")]
    Flags(u32),
    /// Bytes after the end of the state.
    #[error("vCPU state has {0} trailing bytes")]
    Trailing(usize),
}

/// MSRs saved and restored with a vCPU (only those KVM also supports).
/// Enough for flat 32-bit and 64-bit guests that use `sysenter`/`syscall`.
pub const STATE_MSRS: [u32; 10] = [
    0x0000_0010, // IA32_TIME_STAMP_COUNTER
    0x0000_0174, // IA32_SYSENTER_CS
    0x0000_0175, // IA32_SYSENTER_ESP
    0x0000_0176, // IA32_SYSENTER_EIP
    0x0000_0277, // IA32_PAT
    0xC000_0081, // STAR
    0xC000_0082, // LSTAR
    0xC000_0083, // CSTAR
    0xC000_0084, // SFMASK
    0xC000_0102, // KERNEL_GS_BASE
];

/// Largest MSR count [`VcpuState::from_bytes`] accepts.
pub const MAX_STATE_MSRS: u32 = 64;

const STATE_MAGIC: &[u8; 8] = b"SEVMVCPU";
const STATE_VERSION: u32 = 1;
const FLAG_RUNNABLE: u32 = 1;
/// State flag: [`VcpuState::halted`].
const FLAG_HALTED: u32 = 2;

/// The register state of one vCPU, for snapshots and migration.
#[derive(Clone, PartialEq)]
pub struct VcpuState {
    /// General-purpose registers, RIP, RFLAGS.
    pub regs: kvm_regs,
    /// Segment, descriptor-table and control registers.
    pub sregs: kvm_sregs,
    /// `(index, value)` of the saved MSRs.
    pub msrs: Vec<(u32, u64)>,
    /// Whether the vCPU runs (false: an application processor still waiting
    /// for its start-up IPI).
    pub runnable: bool,
    /// The vCPU executed `hlt` with interrupts enabled and waits for an
    /// interrupt. This machine has no interrupt source, so a halted vCPU
    /// stays halted (an idle guest): its thread sleeps instead of entering
    /// the guest, and a snapshot or migration carries the halt along.
    pub halted: bool,
}

impl fmt::Debug for VcpuState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VcpuState")
            .field("rip", &format_args!("{:#x}", self.regs.rip))
            .field("cs", &format_args!("{:#x}", self.sregs.cs.selector))
            .field("cr0", &format_args!("{:#x}", self.sregs.cr0))
            .field("msrs", &self.msrs.len())
            .field("runnable", &self.runnable)
            .field("halted", &self.halted)
            .finish_non_exhaustive()
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn segment(&mut self, s: &kvm_segment) {
        self.u64(s.base);
        self.u32(s.limit);
        self.u16(s.selector);
        for b in [
            s.type_, s.present, s.dpl, s.db, s.s, s.l, s.g, s.avl, s.unusable,
        ] {
            self.u8(b);
        }
    }
    fn dtable(&mut self, d: &kvm_dtable) {
        self.u64(d.base);
        self.u16(d.limit);
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], StateDecodeError> {
        let bytes = self
            .pos
            .checked_add(N)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or(StateDecodeError::Truncated {
                offset: self.pos,
                needed: N.saturating_sub(self.buf.len().saturating_sub(self.pos)),
            })?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        self.pos += N;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, StateDecodeError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, StateDecodeError> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, StateDecodeError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, StateDecodeError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn segment(&mut self) -> Result<kvm_segment, StateDecodeError> {
        Ok(kvm_segment {
            base: self.u64()?,
            limit: self.u32()?,
            selector: self.u16()?,
            type_: self.u8()?,
            present: self.u8()?,
            dpl: self.u8()?,
            db: self.u8()?,
            s: self.u8()?,
            l: self.u8()?,
            g: self.u8()?,
            avl: self.u8()?,
            unusable: self.u8()?,
            padding: 0,
        })
    }
    fn dtable(&mut self) -> Result<kvm_dtable, StateDecodeError> {
        Ok(kvm_dtable {
            base: self.u64()?,
            limit: self.u16()?,
            padding: [0; 3],
        })
    }
}

fn regs_fields(r: &kvm_regs) -> [u64; 18] {
    [
        r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15, r.rip, r.rflags,
    ]
}

impl VcpuState {
    /// Serialises the state: magic `SEVMVCPU`, u32 version, u32 flags, the
    /// registers, the special registers, u32 MSR count and `(u32, u64)`
    /// pairs; all little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(512));
        w.0.extend_from_slice(STATE_MAGIC);
        w.u32(STATE_VERSION);
        let mut flags = 0;
        if self.runnable {
            flags |= FLAG_RUNNABLE;
        }
        if self.halted {
            flags |= FLAG_HALTED;
        }
        w.u32(flags);
        for v in regs_fields(&self.regs) {
            w.u64(v);
        }
        let s = &self.sregs;
        for seg in [&s.cs, &s.ds, &s.es, &s.fs, &s.gs, &s.ss, &s.tr, &s.ldt] {
            w.segment(seg);
        }
        w.dtable(&s.gdt);
        w.dtable(&s.idt);
        for v in [s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer, s.apic_base] {
            w.u64(v);
        }
        for v in s.interrupt_bitmap {
            w.u64(v);
        }
        // The MSR list is built by `get_state` from a fixed short list.
        let count = u32::try_from(self.msrs.len()).unwrap_or(u32::MAX);
        w.u32(count);
        for &(index, value) in &self.msrs {
            w.u32(index);
            w.u64(value);
        }
        w.0
    }

    /// Parses what [`VcpuState::to_bytes`] wrote; every length is checked and
    /// trailing bytes are refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateDecodeError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        if &r.take::<8>()? != STATE_MAGIC {
            return Err(StateDecodeError::BadMagic);
        }
        let version = r.u32()?;
        if version != STATE_VERSION {
            return Err(StateDecodeError::Version(version));
        }
        let flags = r.u32()?;
        if flags & !(FLAG_RUNNABLE | FLAG_HALTED) != 0 {
            return Err(StateDecodeError::Flags(flags));
        }
        let mut g = [0u64; 18];
        for v in &mut g {
            *v = r.u64()?;
        }
        let regs = kvm_regs {
            rax: g[0],
            rbx: g[1],
            rcx: g[2],
            rdx: g[3],
            rsi: g[4],
            rdi: g[5],
            rsp: g[6],
            rbp: g[7],
            r8: g[8],
            r9: g[9],
            r10: g[10],
            r11: g[11],
            r12: g[12],
            r13: g[13],
            r14: g[14],
            r15: g[15],
            rip: g[16],
            rflags: g[17],
        };
        let cs = r.segment()?;
        let ds = r.segment()?;
        let es = r.segment()?;
        let fs = r.segment()?;
        let gs = r.segment()?;
        let ss = r.segment()?;
        let tr = r.segment()?;
        let ldt = r.segment()?;
        let gdt = r.dtable()?;
        let idt = r.dtable()?;
        let mut c = [0u64; 7];
        for v in &mut c {
            *v = r.u64()?;
        }
        let mut interrupt_bitmap = [0u64; 4];
        for v in &mut interrupt_bitmap {
            *v = r.u64()?;
        }
        let sregs = kvm_sregs {
            cs,
            ds,
            es,
            fs,
            gs,
            ss,
            tr,
            ldt,
            gdt,
            idt,
            cr0: c[0],
            cr2: c[1],
            cr3: c[2],
            cr4: c[3],
            cr8: c[4],
            efer: c[5],
            apic_base: c[6],
            interrupt_bitmap,
        };
        let count = r.u32()?;
        if count > MAX_STATE_MSRS {
            return Err(StateDecodeError::TooManyMsrs {
                count,
                max: MAX_STATE_MSRS,
            });
        }
        let mut msrs = Vec::with_capacity(count as usize);
        for _ in 0..count {
            msrs.push((r.u32()?, r.u64()?));
        }
        let rest = bytes.len() - r.pos;
        if rest != 0 {
            return Err(StateDecodeError::Trailing(rest));
        }
        Ok(VcpuState {
            regs,
            sregs,
            msrs,
            runnable: flags & FLAG_RUNNABLE != 0,
            halted: flags & FLAG_HALTED != 0,
        })
    }
}

// ---------------------------------------------------------------------------
// Kicking a vCPU out of KVM_RUN.

thread_local! {
    /// The `kvm_run` page of the vCPU this thread is running, or null.
    static KVM_RUN_PTR: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn kick_handler(_num: c_int, _info: *mut siginfo_t, _ctx: *mut c_void) {
    // Only async-signal-safe work here: a thread-local read (const-initialised,
    // no lazy allocation) and a volatile byte store.
    let ptr = KVM_RUN_PTR.with(Cell::get);
    if !ptr.is_null() {
        // SAFETY: the pointer is set by `RunGuard::new` on this very thread to
        // the `kvm_run` mapping of the vCPU fd it holds locked, and cleared by
        // the guard's drop before that lock is released; the mapping lives as
        // long as the fd. `immediate_exit` is a plain u8 the kernel reads at
        // KVM_RUN entry.
        unsafe { std::ptr::addr_of_mut!((*ptr).immediate_exit).write_volatile(1) };
    }
}

/// The real-time signal used to kick vCPU threads out of `KVM_RUN`.
pub fn kick_signal() -> c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

static INSTALL: OnceLock<Option<i32>> = OnceLock::new();

/// Installs the process-wide kick handler (idempotent).
pub fn install_kick_handler() -> Result<(), VcpuError> {
    let failed = INSTALL.get_or_init(|| {
        vmm_sys_util::signal::register_signal_handler(kick_signal(), kick_handler)
            .err()
            .map(|e| e.errno())
    });
    match *failed {
        Some(errno) => Err(VcpuError::Signal(kvm_ioctls::Error::new(errno))),
        None => Ok(()),
    }
}

/// While alive, lets the kick handler on this thread reach `fd`'s `kvm_run`.
pub(crate) struct RunGuard;

impl RunGuard {
    pub(crate) fn new(fd: &mut VcpuFd) -> RunGuard {
        let ptr: *mut kvm_run = fd.get_kvm_run();
        KVM_RUN_PTR.with(|c| c.set(ptr));
        RunGuard
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        KVM_RUN_PTR.with(|c| c.set(std::ptr::null_mut()));
    }
}

// ---------------------------------------------------------------------------
// Set-up and state.

/// x86 reset values: CS selector 0xF000 with base 0xFFFF0000 and RIP 0xFFF0,
/// so the first instruction is fetched from 0xFFFFFFF0.
pub const RESET_CS_SELECTOR: u16 = 0xF000;
/// CS base at reset.
pub const RESET_CS_BASE: u64 = 0xFFFF_0000;
/// RIP at reset.
pub const RESET_RIP: u64 = 0xFFF0;

/// Puts `fd` in the x86 power-on state (real mode at the reset vector).
pub fn set_reset_state(fd: &VcpuFd, vcpu: u32) -> Result<(), VcpuError> {
    let kvm = |op| move |source| VcpuError::Kvm { op, vcpu, source };
    let mut sregs = fd.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    sregs.cs.selector = RESET_CS_SELECTOR;
    sregs.cs.base = RESET_CS_BASE;
    sregs.cs.limit = 0xFFFF;
    for seg in [
        &mut sregs.ds,
        &mut sregs.es,
        &mut sregs.fs,
        &mut sregs.gs,
        &mut sregs.ss,
    ] {
        seg.selector = 0;
        seg.base = 0;
        seg.limit = 0xFFFF;
    }
    // CD | NW | ET, as after RESET.
    sregs.cr0 = 0x6000_0010;
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    fd.set_sregs(&sregs).map_err(kvm("KVM_SET_SREGS"))?;
    let regs = kvm_regs {
        rip: RESET_RIP,
        rflags: 0x2,
        // EDX at reset holds the processor signature; a family-6 value.
        rdx: 0x600,
        ..Default::default()
    };
    fd.set_regs(&regs).map_err(kvm("KVM_SET_REGS"))?;
    Ok(())
}

/// What CPUID leaf 0x8000001F tells an SEV guest: its mode, the C-bit
/// position and the physical address bit reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SevCpuid {
    /// The guest's SEV mode.
    pub mode: SevMode,
    /// The C-bit position (EBX bits 5:0).
    pub c_bit: u8,
    /// The physical address bit reduction (EBX bits 11:6).
    pub reduced_phys_bits: u8,
}

/// The highest extended CPUID leaf an SEV guest must be able to read.
const SEV_LEAF: u32 = 0x8000_001F;

/// The vCPU's CPUID: what KVM supports, with its APIC id filled in and the
/// hypervisor-present bit set (as QEMU does); for an SEV guest, leaf
/// 0x8000001F reports its mode as the hypervisor does on SEV hardware
/// (EAX bit 1 SEV, bit 3 SEV-ES, bit 4 SEV-SNP; EBX the C-bit position and
/// the address reduction). On a host whose KVM does not list that leaf (an
/// Intel host lists extended leaves up to 0x80000008), the leaf is added
/// and leaf 0x80000000 raised to reach it, so the guest finds its mode the
/// same way on every host (docs/guide/demo-guest.md#modes).
pub fn vcpu_cpuid(supported: &CpuId, vcpu: u32, sev: Option<SevCpuid>) -> Result<CpuId, VcpuError> {
    let mut cpuid = supported.clone();
    if sev.is_some()
        && !cpuid
            .as_slice()
            .iter()
            .any(|e| e.function == SEV_LEAF && e.index == 0)
    {
        cpuid
            .push(kvm_bindings::kvm_cpuid_entry2 {
                function: SEV_LEAF,
                ..Default::default()
            })
            .map_err(|e| VcpuError::Cpuid {
                vcpu,
                reason: format!("cannot add leaf {SEV_LEAF:#x}: {e:?}"),
            })?;
    }
    for e in cpuid.as_mut_slice() {
        match e.function {
            0x8000_0000 if sev.is_some() => e.eax = e.eax.max(SEV_LEAF),
            1 => {
                e.ebx = (e.ebx & 0x00FF_FFFF) | ((vcpu & 0xFF) << 24);
                e.ecx |= 1 << 31;
            }
            0xB | 0x1F => e.edx = vcpu,
            0x8000_001F => {
                if let Some(sev) = sev {
                    e.eax = sev.mode.cpuid_eax();
                    e.ebx = u32::from(sev.c_bit & 0x3F)
                        | (u32::from(sev.reduced_phys_bits & 0x3F) << 6);
                }
            }
            _ => {}
        }
    }
    Ok(cpuid)
}

/// Sets the vCPU's CPUID ([`vcpu_cpuid`]).
pub fn set_cpuid(
    fd: &VcpuFd,
    supported: &CpuId,
    vcpu: u32,
    sev: Option<SevCpuid>,
) -> Result<(), VcpuError> {
    let cpuid = vcpu_cpuid(supported, vcpu, sev)?;
    fd.set_cpuid2(&cpuid).map_err(|source| VcpuError::Kvm {
        op: "KVM_SET_CPUID2",
        vcpu,
        source,
    })
}

/// Sub-leaf 0 of every leaf of `cpuid`, as the GHCB CPUID requests see it.
pub fn cpuid_leaves(cpuid: &CpuId) -> Vec<CpuidLeaf> {
    cpuid
        .as_slice()
        .iter()
        .filter(|e| e.index == 0)
        .map(|e| CpuidLeaf {
            leaf: e.function,
            regs: [e.eax, e.ebx, e.ecx, e.edx],
        })
        .collect()
}

use vmm_sys_util::{ioctl_ioc_nr, ioctl_iow_nr};
ioctl_iow_nr!(
    KVM_X86_SET_MSR_FILTER,
    kvm_bindings::KVMIO,
    0xc6,
    kvm_bindings::kvm_msr_filter
);

/// Makes the guest's reads and writes of the SEV status MSR and the GHCB
/// MSR exit to user space (KVM_CAP_X86_USER_SPACE_MSR for filtered MSRs
/// and an MSR filter denying both to KVM), where [`GhcbHost`] answers them
/// (docs/protocol/choices.md#u46). Every other MSR stays KVM's.
pub fn trap_sev_msrs(vm: &VmFd) -> Result<(), VcpuError> {
    let cap = kvm_bindings::kvm_enable_cap {
        cap: kvm_bindings::KVM_CAP_X86_USER_SPACE_MSR,
        args: [u64::from(kvm_bindings::KVM_MSR_EXIT_REASON_FILTER), 0, 0, 0],
        ..Default::default()
    };
    vm.enable_cap(&cap).map_err(|source| VcpuError::MsrTrap {
        op: "KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)",
        source,
    })?;
    // One range from the GHCB MSR: both MSRs' bits clear = denied to KVM,
    // so the accesses exit to user space.
    let bitmap = [0u8; 1];
    let mut filter = kvm_bindings::kvm_msr_filter {
        flags: kvm_bindings::KVM_MSR_FILTER_DEFAULT_ALLOW,
        ..Default::default()
    };
    filter.ranges[0] = kvm_bindings::kvm_msr_filter_range {
        flags: kvm_bindings::KVM_MSR_FILTER_READ | kvm_bindings::KVM_MSR_FILTER_WRITE,
        nmsrs: 2,
        base: GHCB_MSR,
        bitmap: bitmap.as_ptr().cast_mut(),
    };
    // SAFETY: KVM_X86_SET_MSR_FILTER reads a `kvm_msr_filter` whose used
    // range points at `bitmap`, one byte covering its two MSRs; KVM copies
    // the bitmap during the call, and both outlive it.
    let ret = unsafe { vmm_sys_util::ioctl::ioctl_with_ref(vm, KVM_X86_SET_MSR_FILTER(), &filter) };
    if ret < 0 {
        return Err(VcpuError::MsrTrap {
            op: "KVM_X86_SET_MSR_FILTER",
            source: kvm_ioctls::Error::last(),
        });
    }
    Ok(())
}

/// Reads the vCPU's state. `msr_indices` are the [`STATE_MSRS`] that KVM
/// supports.
pub fn get_state(
    fd: &VcpuFd,
    vcpu: u32,
    msr_indices: &[u32],
    runnable: bool,
    halted: bool,
) -> Result<VcpuState, VcpuError> {
    let kvm = |op| move |source| VcpuError::Kvm { op, vcpu, source };
    let regs = fd.get_regs().map_err(kvm("KVM_GET_REGS"))?;
    let sregs = fd.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    let entries: Vec<kvm_msr_entry> = msr_indices
        .iter()
        .map(|&index| kvm_msr_entry {
            index,
            ..Default::default()
        })
        .collect();
    let mut msrs = Msrs::from_entries(&entries).map_err(|e| VcpuError::MsrList {
        vcpu,
        reason: format!("{e:?}"),
    })?;
    let read = fd.get_msrs(&mut msrs).map_err(kvm("KVM_GET_MSRS"))?;
    let msrs = msrs
        .as_slice()
        .iter()
        .take(read)
        .map(|e| (e.index, e.data))
        .collect();
    Ok(VcpuState {
        regs,
        sregs,
        msrs,
        runnable,
        halted,
    })
}

/// Writes `state` into the vCPU.
pub fn set_state(fd: &VcpuFd, vcpu: u32, state: &VcpuState) -> Result<(), VcpuError> {
    let kvm = |op| move |source| VcpuError::Kvm { op, vcpu, source };
    fd.set_sregs(&state.sregs).map_err(kvm("KVM_SET_SREGS"))?;
    fd.set_regs(&state.regs).map_err(kvm("KVM_SET_REGS"))?;
    if !state.msrs.is_empty() {
        let entries: Vec<kvm_msr_entry> = state
            .msrs
            .iter()
            .map(|&(index, data)| kvm_msr_entry {
                index,
                data,
                ..Default::default()
            })
            .collect();
        let msrs = Msrs::from_entries(&entries).map_err(|e| VcpuError::MsrList {
            vcpu,
            reason: format!("{e:?}"),
        })?;
        let written = fd.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;
        if written != entries.len() {
            let index = entries.get(written).map_or(0, |e| e.index);
            return Err(VcpuError::MsrList {
                vcpu,
                reason: format!("KVM refused MSR {index:#x}"),
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The run step.

/// How one guest entry ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Keep running.
    Continue,
    /// `KVM_RUN` was interrupted by a kick (or a signal).
    Interrupted,
    /// The guest wrote the debug-exit port.
    GuestExit(u8),
    /// Triple fault or guest-requested shutdown.
    Shutdown,
    /// `hlt` with interrupts enabled: the vCPU waits for an interrupt
    /// ([`VcpuState::halted`]).
    Halted,
    /// Something the machine cannot continue from.
    Error(String),
    /// A single-step trap requested with [`set_guest_debug`]
    /// (`KVM_EXIT_DEBUG`); `pc` is the linear address of the next
    /// instruction.
    Debug {
        /// `cs.base + rip` of the next instruction.
        pc: u64,
    },
}

/// Per-vCPU counters for rate-limited logs.
#[derive(Debug)]
pub(crate) struct ExitLog {
    mmio: RateLimiter,
}

impl ExitLog {
    pub(crate) fn new() -> Self {
        ExitLog {
            mmio: RateLimiter::new(10, 1000),
        }
    }
}

enum Pending {
    Halt,
    Internal,
    Other(String),
}

fn where_is(fd: &VcpuFd) -> String {
    match (fd.get_regs(), fd.get_sregs()) {
        (Ok(r), Ok(s)) => format!(
            "cs={:#x} rip={:#x} (linear {:#x}), cr0={:#x}",
            s.cs.selector,
            r.rip,
            s.cs.base.wrapping_add(r.rip),
            s.cr0
        ),
        _ => "unknown location".to_owned(),
    }
}

/// `KVM_SET_GUEST_DEBUG`: trap to the VMM after every instruction
/// (`single_step`), or debugging off.
pub fn set_guest_debug(fd: &VcpuFd, vcpu: u32, single_step: bool) -> Result<(), VcpuError> {
    let control = if single_step {
        kvm_bindings::KVM_GUESTDBG_ENABLE | kvm_bindings::KVM_GUESTDBG_SINGLESTEP
    } else {
        0
    };
    let dbg = kvm_bindings::kvm_guest_debug {
        control,
        ..Default::default()
    };
    fd.set_guest_debug(&dbg).map_err(|source| VcpuError::Kvm {
        op: "KVM_SET_GUEST_DEBUG",
        vcpu,
        source,
    })
}

/// The GHCB side of a vCPU's run loop: the VM's [`GhcbHost`] and this
/// vCPU's GHCB state.
pub(crate) struct GhcbExits<'a> {
    pub(crate) host: &'a GhcbHost,
    pub(crate) vcpu: &'a mut VcpuGhcb,
}

/// Enters the guest once and handles the exit.
pub(crate) fn run_step(
    fd: &mut VcpuFd,
    vcpu: u32,
    bus: &IoBus,
    log: &mut ExitLog,
    ghcb: Option<GhcbExits<'_>>,
) -> Step {
    let pending = match fd.run() {
        Ok(VcpuExit::X86Rdmsr(exit)) => {
            match ghcb.and_then(|g| g.host.read_msr(g.vcpu, exit.index)) {
                Some(value) => *exit.data = value,
                None => *exit.error = 1,
            }
            return Step::Continue;
        }
        Ok(VcpuExit::X86Wrmsr(exit)) => {
            let Some(g) = ghcb else {
                *exit.error = 1;
                return Step::Continue;
            };
            return match g.host.write_msr(g.vcpu, exit.index, exit.data, bus) {
                Outcome::Continue => Step::Continue,
                Outcome::Fault => {
                    *exit.error = 1;
                    Step::Continue
                }
                Outcome::Exit(v) => Step::GuestExit(v),
                Outcome::Terminate(why) => Step::Error(format!("vCPU {vcpu}: {why}")),
            };
        }
        Ok(VcpuExit::IoOut(port, data)) => {
            return match bus.write(port, data) {
                IoAction::Continue => Step::Continue,
                IoAction::Exit(v) => Step::GuestExit(v),
            }
        }
        Ok(VcpuExit::IoIn(port, data)) => {
            bus.read(port, data);
            return Step::Continue;
        }
        Ok(VcpuExit::MmioRead(addr, data)) => {
            data.fill(0);
            if let Some(n) = log.mmio.hit() {
                log::debug!(
                    "vCPU {vcpu}: read of unbacked guest address {addr:#x} (access #{n})"
                );
            }
            return Step::Continue;
        }
        Ok(VcpuExit::MmioWrite(addr, _)) => {
            if let Some(n) = log.mmio.hit() {
                log::debug!(
                    "vCPU {vcpu}: write to unbacked guest address {addr:#x} (access #{n})"
                );
            }
            return Step::Continue;
        }
        Ok(VcpuExit::Intr) => return Step::Interrupted,
        Ok(VcpuExit::Debug(arch)) => return Step::Debug { pc: arch.pc },
        Ok(VcpuExit::Shutdown) => return Step::Shutdown,
        Ok(VcpuExit::Hlt) => Pending::Halt,
        Ok(VcpuExit::InternalError) => Pending::Internal,
        Ok(VcpuExit::SystemEvent(kind, _)) => match kind {
            kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN | kvm_bindings::KVM_SYSTEM_EVENT_RESET => {
                return Step::Shutdown
            }
            other => Pending::Other(format!("KVM system event {other}")),
        },
        Ok(VcpuExit::FailEntry(reason, cpu)) => Pending::Other(format!(
            "KVM could not enter the guest (hardware entry failure reason {reason:#x} on host CPU {cpu})"
        )),
        Ok(other) => Pending::Other(format!("unexpected KVM exit {other:?}")),
        Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
            fd.set_kvm_immediate_exit(0);
            return Step::Interrupted;
        }
        Err(e) => Pending::Other(format!("KVM_RUN failed: {e}")),
    };
    let at = where_is(fd);
    match pending {
        Pending::Halt => {
            let if_set = fd
                .get_regs()
                .map(|r| r.rflags & 0x200 != 0)
                .unwrap_or(false);
            if if_set {
                // UNCERTAIN (not in the protocol notes, docs/protocol/README.md): no interrupt
                // controller is emulated, so nothing can wake a halted vCPU: it stays halted
                // (an idle guest, as on hardware with no interrupt pending)
                // and its thread sleeps. Chose this over ending the machine so
                // that an idle guest can be paused, snapshotted, migrated and
                // quit like any other. `hlt` with interrupts disabled can
                // never resume on any machine and stays an error.
                log::info!(
                    "vCPU {vcpu} halted waiting for an interrupt; this machine has no interrupt \
                     source, so it stays halted (idle) ({at})"
                );
                Step::Halted
            } else {
                Step::Error(format!(
                    "vCPU {vcpu} halted with interrupts disabled ({at})"
                ))
            }
        }
        Pending::Internal => {
            let run = fd.get_kvm_run();
            let (suberror, ndata) = if run.exit_reason == KVM_EXIT_INTERNAL_ERROR {
                // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, so `internal`
                // is the union member the kernel filled in.
                let internal = unsafe { run.__bindgen_anon_1.internal };
                (internal.suberror, internal.ndata)
            } else {
                (0, 0)
            };
            let what = match suberror {
                kvm_bindings::KVM_INTERNAL_ERROR_EMULATION => {
                    "instruction emulation failed (x87/SSE and other instructions this KVM cannot emulate)"
                }
                kvm_bindings::KVM_INTERNAL_ERROR_SIMUL_EX => "simultaneous exceptions",
                kvm_bindings::KVM_INTERNAL_ERROR_DELIVERY_EV => "event delivery failed",
                _ => "internal error",
            };
            Step::Error(format!(
                "KVM internal error on vCPU {vcpu}: {what} (suberror {suberror}, {ndata} data words) ({at})"
            ))
        }
        Pending::Other(msg) => Step::Error(format!("vCPU {vcpu}: {msg} ({at})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(u32, u32)]) -> CpuId {
        let entries: Vec<_> = entries
            .iter()
            .map(|&(function, eax)| kvm_bindings::kvm_cpuid_entry2 {
                function,
                eax,
                ..Default::default()
            })
            .collect();
        CpuId::from_entries(&entries).unwrap()
    }

    fn leaf(cpuid: &CpuId, function: u32) -> Vec<(u32, u32)> {
        cpuid
            .as_slice()
            .iter()
            .filter(|e| e.function == function)
            .map(|e| (e.eax, e.ebx))
            .collect()
    }

    const ES: SevCpuid = SevCpuid {
        mode: SevMode::SevEs,
        c_bit: 51,
        reduced_phys_bits: 1,
    };

    /// An Intel host's KVM lists extended leaves up to 0x80000008: an SEV
    /// guest still finds leaf 0x8000001F, reachable from 0x80000000.
    #[test]
    fn the_sev_leaf_is_added_where_kvm_does_not_list_it() {
        let intel = table(&[(0, 0x1b), (0x8000_0000, 0x8000_0008), (0x8000_0008, 0x3027)]);
        let cpuid = vcpu_cpuid(&intel, 0, Some(ES)).unwrap();
        assert_eq!(leaf(&cpuid, 0x8000_0000), [(0x8000_001F, 0)]);
        assert_eq!(leaf(&cpuid, 0x8000_001F), [(0b1010, 51 | (1 << 6))]);
        assert_eq!(cpuid.as_slice().len(), 4);

        // Without SEV the table is KVM's.
        let plain = vcpu_cpuid(&intel, 0, None).unwrap();
        assert_eq!(leaf(&plain, 0x8000_0000), [(0x8000_0008, 0)]);
        assert!(leaf(&plain, 0x8000_001F).is_empty());
    }

    /// An AMD host lists the leaf and more: it is filled in, not repeated,
    /// and the maximum is not lowered.
    #[test]
    fn the_sev_leaf_kvm_lists_is_filled_in_once() {
        let amd = table(&[(0x8000_0000, 0x8000_0028), (0x8000_001F, 0x1_0000)]);
        let cpuid = vcpu_cpuid(&amd, 1, Some(ES)).unwrap();
        assert_eq!(leaf(&cpuid, 0x8000_0000), [(0x8000_0028, 0)]);
        assert_eq!(leaf(&cpuid, 0x8000_001F), [(0b1010, 51 | (1 << 6))]);
        assert_eq!(cpuid.as_slice().len(), 2);
    }

    fn sample() -> VcpuState {
        let regs = kvm_regs {
            rip: 0xFFF0,
            rax: 0x1122_3344_5566_7788,
            rflags: 0x202,
            r15: 42,
            ..Default::default()
        };
        let sregs = kvm_sregs {
            cs: kvm_segment {
                base: 0xFFFF_0000,
                limit: 0xFFFF,
                selector: 0xF000,
                type_: 0xB,
                present: 1,
                s: 1,
                ..Default::default()
            },
            gdt: kvm_dtable {
                base: 0xFFFF_F000,
                limit: 0x17,
                padding: [0; 3],
            },
            cr0: 0x11,
            apic_base: 0xFEE0_0900,
            interrupt_bitmap: [1, 2, 3, 4],
            ..Default::default()
        };
        VcpuState {
            regs,
            sregs,
            msrs: vec![(0x10, 12345), (0x174, 8)],
            runnable: true,
            halted: false,
        }
    }

    #[test]
    fn state_round_trips() {
        let s = sample();
        let bytes = s.to_bytes();
        assert_eq!(&bytes[..8], b"SEVMVCPU");
        let back = VcpuState::from_bytes(&bytes).unwrap();
        assert_eq!(back, s);
        let mut ap = s.clone();
        ap.runnable = false;
        ap.msrs.clear();
        assert_eq!(VcpuState::from_bytes(&ap.to_bytes()).unwrap(), ap);
        let mut idle = s.clone();
        idle.halted = true;
        let back = VcpuState::from_bytes(&idle.to_bytes()).unwrap();
        assert!(back.halted && back.runnable);
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = sample().to_bytes();
        for len in 0..bytes.len() {
            assert!(
                VcpuState::from_bytes(&bytes[..len]).is_err(),
                "accepted truncation to {len}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            VcpuState::from_bytes(&long),
            Err(StateDecodeError::Trailing(1))
        );
    }

    #[test]
    fn bad_headers_and_counts_are_refused() {
        let bytes = sample().to_bytes();
        let mut b = bytes.clone();
        b[0] ^= 1;
        assert_eq!(VcpuState::from_bytes(&b), Err(StateDecodeError::BadMagic));
        let mut b = bytes.clone();
        b[8] = 2;
        assert_eq!(VcpuState::from_bytes(&b), Err(StateDecodeError::Version(2)));
        let mut b = bytes.clone();
        b[12] = 0x81;
        assert_eq!(
            VcpuState::from_bytes(&b),
            Err(StateDecodeError::Flags(0x81))
        );
        // MSR count field sits before the two 12-byte pairs.
        let count_at = bytes.len() - 2 * 12 - 4;
        let mut b = bytes.clone();
        b[count_at..count_at + 4].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        assert!(matches!(
            VcpuState::from_bytes(&b),
            Err(StateDecodeError::TooManyMsrs { .. })
        ));
        let mut b = bytes;
        b[count_at..count_at + 4].copy_from_slice(&3u32.to_le_bytes());
        assert!(matches!(
            VcpuState::from_bytes(&b),
            Err(StateDecodeError::Truncated { .. })
        ));
    }
}
