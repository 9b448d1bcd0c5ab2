//! The host side of the GHCB protocol for SEV-ES and SEV-SNP guests
//! (docs/sev-es.md#the-ghcb-path, docs/protocol/snp.md#ghcb-msr-protocol).
//!
//! On hardware a guest talks to the hypervisor by writing the GHCB MSR
//! (a request of the MSR protocol, or the GPA of its GHCB page) and
//! executing VMGEXIT. The KVM this emulator runs on executes VMGEXIT as
//! VMMCALL, inside the kernel, invisible to the VMM. So sevm traps the two
//! SEV MSRs to user space (an MSR filter) and takes **the write of the GHCB
//! MSR as the doorbell** that stands for the VMGEXIT following it
//! (docs/protocol/choices.md#u46): the request is handled at that exit,
//! and the guest reads the response with RDMSR.
//!
//! [`msr`] and [`page`] are the protocol's encodings as plain functions;
//! [`GhcbHost`] decides what to answer; [`GhcbPlatform`] is what it needs
//! from the guest's platform (the shared GHCB page, page-state changes,
//! the firmware's guest requests, [`guest_request`]).

pub mod guest_request;
pub mod msr;
pub mod page;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use sevm_memory::{Gpa, GuestRam};

use crate::devices::{IoAction, IoBus};
use guest_request::{
    CertTableProvider, GuestRequestHost, NoCertificates, RateLimiter, EXIT_EXT_GUEST_REQUEST,
    EXIT_GUEST_REQUEST,
};
use msr::{CpuidReg, PageState, Request};
use page::{Ghcb, GHCB_LEN};
use sev_firmware::snp::SnpGuestContext;
use sev_firmware::GuestKind;

/// Which SEV mode a guest runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SevMode {
    /// SEV: encrypted memory only; no GHCB.
    Sev,
    /// SEV-ES: encrypted register state too; the GHCB protocol.
    SevEs,
    /// SEV-SNP: the RMP too; GHCB registration and page-state changes.
    Snp,
}

impl SevMode {
    /// The mode of a guest of `kind`.
    pub fn of_kind(kind: GuestKind) -> SevMode {
        if kind == GuestKind::Snp {
            SevMode::Snp
        } else if kind.encrypts_registers() {
            SevMode::SevEs
        } else {
            SevMode::Sev
        }
    }

    /// The SEV status MSR value of a guest in this mode.
    pub fn status(self) -> u64 {
        use msr::sev_status::{ES, SEV, SNP};
        match self {
            SevMode::Sev => SEV,
            SevMode::SevEs => SEV | ES,
            SevMode::Snp => SEV | ES | SNP,
        }
    }

    /// CPUID 0x8000001F EAX as the hypervisor reports it for this mode:
    /// bit 1 SEV, bit 3 SEV-ES, bit 4 SEV-SNP.
    pub fn cpuid_eax(self) -> u32 {
        match self {
            SevMode::Sev => 1 << 1,
            SevMode::SevEs => (1 << 1) | (1 << 3),
            SevMode::Snp => (1 << 1) | (1 << 3) | (1 << 4),
        }
    }

    fn has_ghcb(self) -> bool {
        self != SevMode::Sev
    }
}

/// A guest platform refused a GHCB access or a page-state change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlatformError(pub String);

/// What the GHCB handler needs from the guest's platform.
pub trait GhcbPlatform: Send + Sync + fmt::Debug {
    /// Reads the shared GHCB page at `gpa` (page aligned).
    fn read_ghcb(&self, gpa: u64, page: &mut [u8; GHCB_LEN]) -> Result<(), PlatformError>;
    /// Writes the shared GHCB page at `gpa` back.
    fn write_ghcb(&self, gpa: u64, page: &[u8; GHCB_LEN]) -> Result<(), PlatformError>;
    /// Changes the state of the page at `gpa` as the guest asked (SNP).
    fn page_state_change(&self, gpa: u64, to: PageState) -> Result<(), PlatformError>;
    /// Runs the firmware's SNP_GUEST_REQUEST on the guest's `request` page
    /// (docs/snp.md#guest-requests): `Ok(0)` with the `response` page
    /// filled, `Ok(status)` for a firmware error status (no response), or
    /// an error when the command could not be issued. Platforms without
    /// SNP firmware refuse.
    fn guest_request(
        &self,
        request: &[u8; GHCB_LEN],
        response: &mut [u8; GHCB_LEN],
    ) -> Result<u32, PlatformError> {
        let _ = (request, response);
        Err(PlatformError(
            "this platform has no SNP firmware for guest requests".into(),
        ))
    }
}

/// The GHCB platform of an SEV or SEV-ES guest on the emulated platform:
/// the page the guest names in the GHCB MSR is accessed as shared, its
/// bytes as the guest wrote them (docs/protocol/choices.md#u47); there is
/// no RMP, so page-state changes are refused.
#[derive(Debug, Clone)]
pub struct SharedGhcbPage {
    ram: Arc<GuestRam>,
}

impl SharedGhcbPage {
    /// Over the guest's memory.
    pub fn new(ram: Arc<GuestRam>) -> Self {
        SharedGhcbPage { ram }
    }
}

impl GhcbPlatform for SharedGhcbPage {
    fn read_ghcb(&self, gpa: u64, page: &mut [u8; GHCB_LEN]) -> Result<(), PlatformError> {
        self.ram
            .read_plain(Gpa(gpa), page)
            .map_err(|e| PlatformError(e.to_string()))
    }

    fn write_ghcb(&self, gpa: u64, page: &[u8; GHCB_LEN]) -> Result<(), PlatformError> {
        self.ram
            .write_plain(Gpa(gpa), page)
            .map_err(|e| PlatformError(e.to_string()))
    }

    fn page_state_change(&self, gpa: u64, _to: PageState) -> Result<(), PlatformError> {
        Err(PlatformError(format!(
            "page-state change of {gpa:#x}: an SEV-ES guest has no RMP"
        )))
    }
}

/// The GHCB platform of an SNP guest: the GHCB page read and written
/// through the guest context's host view, so the RMP decides (a page the
/// guest has not made shared faults like an RMP fault), and page-state
/// changes made by the firmware (docs/protocol/snp.md#rmp-model).
#[derive(Debug)]
pub struct SnpGhcbPlatform {
    guest: Arc<dyn SnpGuestContext>,
}

impl SnpGhcbPlatform {
    /// Over the SNP guest context `guest`.
    pub fn new(guest: Arc<dyn SnpGuestContext>) -> Self {
        SnpGhcbPlatform { guest }
    }
}

impl GhcbPlatform for SnpGhcbPlatform {
    fn read_ghcb(&self, gpa: u64, page: &mut [u8; GHCB_LEN]) -> Result<(), PlatformError> {
        self.guest
            .host_view()
            .read(gpa, page)
            .map_err(|e| PlatformError(sev_firmware::error_chain(&e)))
    }

    fn write_ghcb(&self, gpa: u64, page: &[u8; GHCB_LEN]) -> Result<(), PlatformError> {
        self.guest
            .host_view()
            .write(gpa, page)
            .map_err(|e| PlatformError(sev_firmware::error_chain(&e)))
    }

    fn page_state_change(&self, gpa: u64, to: PageState) -> Result<(), PlatformError> {
        self.guest
            .snp_page_state_change(gpa, 1, to == PageState::Private)
            .map_err(|e| PlatformError(sev_firmware::error_chain(&e)))
    }

    fn guest_request(
        &self,
        request: &[u8; GHCB_LEN],
        response: &mut [u8; GHCB_LEN],
    ) -> Result<u32, PlatformError> {
        match self.guest.snp_guest_request(request) {
            Ok(page) => {
                response.copy_from_slice(&page[..]);
                Ok(0)
            }
            Err(e) => match e.status() {
                // The firmware's refusal goes to the guest as FW_ERROR.
                Some(status) if status.code() != 0 => Ok(status.code()),
                _ => Err(PlatformError(sev_firmware::error_chain(&e))),
            },
        }
    }
}

/// One CPUID leaf (sub-leaf 0) as the vCPU sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuidLeaf {
    /// The leaf.
    pub leaf: u32,
    /// EAX, EBX, ECX, EDX.
    pub regs: [u32; 4],
}

/// A vCPU's GHCB state: the GHCB MSR and the registered GHCB.
#[derive(Debug, Default)]
pub struct VcpuGhcb {
    msr: u64,
    registered: Option<u64>,
    cpuid: Vec<CpuidLeaf>,
}

impl VcpuGhcb {
    /// A vCPU whose CPUID (sub-leaf 0 of each leaf) is `cpuid`.
    pub fn new(cpuid: Vec<CpuidLeaf>) -> Self {
        VcpuGhcb {
            cpuid,
            ..Default::default()
        }
    }

    /// The GHCB MSR's current value.
    pub fn msr(&self) -> u64 {
        self.msr
    }

    fn cpuid(&self, leaf: u32) -> [u32; 4] {
        // AMD: a leaf the vCPU does not have reads as zeros.
        self.cpuid
            .iter()
            .find(|l| l.leaf == leaf)
            .map_or([0; 4], |l| l.regs)
    }
}

/// What the vCPU loop does after an MSR exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Resume the guest.
    Continue,
    /// Resume the guest with a #GP (the access is refused).
    Fault,
    /// The guest wrote the debug-exit port through the GHCB.
    Exit(u8),
    /// The guest asked to terminate, or did what KVM terminates it for.
    Terminate(String),
}

/// The host side of the GHCB protocol of one VM.
#[derive(Debug)]
pub struct GhcbHost {
    mode: SevMode,
    c_bit: u8,
    platform: RwLock<Arc<dyn GhcbPlatform>>,
    certs: RwLock<Arc<dyn CertTableProvider>>,
    limiter: RateLimiter,
    page_exits: AtomicU64,
    port_writes: AtomicU64,
}

/// Meaning of a termination reason (set 0 from the GHCB specification,
/// set 1 Linux's own codes).
fn reason_text(set: u8, code: u8) -> &'static str {
    match (set, code) {
        (0, 0) => "general termination",
        (0, 1) => "GHCB protocol version not supported",
        (0, 2) => "SEV-SNP features not supported",
        (1, 0) => "GHCB registration failed",
        (1, 1) => "page-state change failed",
        (1, 2) => "PVALIDATE failed",
        (1, 3) => "not running at VMPL0",
        (1, 4) => "CPUID table problem",
        (1, 5) => "CPUID from the hypervisor inconsistent",
        _ => "unknown reason",
    }
}

fn terminated(set: u8, code: u8) -> Outcome {
    Outcome::Terminate(format!(
        "the guest requested termination: reason set {set}, code {code} ({})",
        reason_text(set, code)
    ))
}

impl GhcbHost {
    /// The GHCB host of a guest in `mode` whose C-bit is at `c_bit`, over
    /// `platform`.
    pub fn new(mode: SevMode, c_bit: u8, platform: Arc<dyn GhcbPlatform>) -> Self {
        GhcbHost {
            mode,
            c_bit,
            platform: RwLock::new(platform),
            certs: RwLock::new(Arc::new(NoCertificates)),
            limiter: RateLimiter::default(),
            page_exits: AtomicU64::new(0),
            port_writes: AtomicU64::new(0),
        }
    }

    /// The guest's mode.
    pub fn mode(&self) -> SevMode {
        self.mode
    }

    /// How many GHCB page exits the guest has made so far.
    pub fn page_exits(&self) -> u64 {
        self.page_exits.load(Ordering::Relaxed)
    }

    /// How many port writes (elements of string output included) the
    /// guest's GHCB exits have made so far.
    pub fn port_writes(&self) -> u64 {
        self.port_writes.load(Ordering::Relaxed)
    }

    /// Replaces the platform (an SNP guest context, once attached).
    pub fn set_platform(&self, platform: Arc<dyn GhcbPlatform>) {
        *self
            .platform
            .write()
            .unwrap_or_else(PoisonError::into_inner) = platform;
    }

    /// Sets where extended guest requests take their certificate table
    /// from (by default none: the empty table).
    pub fn set_cert_provider(&self, certs: Arc<dyn CertTableProvider>) {
        *self.certs.write().unwrap_or_else(PoisonError::into_inner) = certs;
    }

    /// Replaces the guest-request rate limit (the default is
    /// [`RateLimiter::default`]).
    pub fn with_rate_limit(mut self, limiter: RateLimiter) -> Self {
        self.limiter = limiter;
        self
    }

    fn platform(&self) -> Arc<dyn GhcbPlatform> {
        Arc::clone(&self.platform.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The guest reads MSR `index`: `None` refuses it (#GP).
    pub fn read_msr(&self, vcpu: &VcpuGhcb, index: u32) -> Option<u64> {
        match index {
            msr::SEV_STATUS_MSR => Some(self.mode.status()),
            msr::GHCB_MSR if self.mode.has_ghcb() => Some(vcpu.msr),
            _ => None,
        }
    }

    /// The guest writes `value` to MSR `index`: for the GHCB MSR of an
    /// SEV-ES or SNP guest, the doorbell (docs/protocol/choices.md#u46).
    pub fn write_msr(&self, vcpu: &mut VcpuGhcb, index: u32, value: u64, bus: &IoBus) -> Outcome {
        if index != msr::GHCB_MSR || !self.mode.has_ghcb() {
            // SEV_STATUS is read-only; a plain SEV guest has no GHCB MSR.
            return Outcome::Fault;
        }
        vcpu.msr = value;
        let snp = self.mode == SevMode::Snp;
        let snp_only = |what: &str| {
            Outcome::Terminate(format!(
                "the SEV-ES guest sent the SNP-only GHCB request \"{what}\" ({value:#x}); \
                 terminated as KVM terminates it"
            ))
        };
        match msr::decode(value) {
            Request::GhcbPage(gpa) => return self.page_exit(vcpu, gpa, bus),
            Request::SevInfo => vcpu.msr = msr::sev_info(self.c_bit),
            Request::Cpuid { leaf, reg } => {
                vcpu.msr = msr::cpuid(reg, reg.pick(vcpu.cpuid(leaf)));
            }
            Request::HvFeatures => {
                let features = if snp {
                    msr::HV_FT_SNP | msr::HV_FT_SNP_AP_CREATION
                } else {
                    0
                };
                vcpu.msr = msr::hv_features(features);
            }
            Request::RegisterGpa { gfn } => {
                if !snp {
                    return snp_only("register GHCB GPA");
                }
                vcpu.registered = Some(gfn << 12);
                vcpu.msr = msr::register_gpa(gfn);
            }
            Request::PageStateChange { gfn, op } => {
                if !snp {
                    return snp_only("page-state change");
                }
                let error = match Request::page_state(op) {
                    None => msr::PSC_ERROR_GENERIC,
                    Some(to) => match self.platform().page_state_change(gfn << 12, to) {
                        Ok(()) => 0,
                        Err(e) => {
                            log::warn!("GHCB page-state change of GFN {gfn:#x} refused: {e}");
                            msr::PSC_ERROR_GENERIC
                        }
                    },
                };
                vcpu.msr = msr::page_state_change(error);
            }
            Request::Terminate { set, code } => return terminated(set, code),
            Request::Unknown(code) => {
                // KVM leaves the MSR as written: the guest reads its own
                // request back and sees no response code.
                log::debug!("unknown GHCB MSR protocol request {code:#x}");
            }
        }
        Outcome::Continue
    }

    /// A GHCB page exit: validate the page as KVM does, handle the exit,
    /// write the answer back.
    fn page_exit(&self, vcpu: &mut VcpuGhcb, gpa: u64, bus: &IoBus) -> Outcome {
        self.page_exits.fetch_add(1, Ordering::Relaxed);
        if self.mode == SevMode::Snp && vcpu.registered != Some(gpa) {
            return Outcome::Terminate(format!(
                "the SNP guest used the GHCB at {gpa:#x}, which it did not register \
                 (KVM refuses the exit and stops the VM)"
            ));
        }
        let platform = self.platform();
        let mut ghcb = Ghcb::default();
        if let Err(e) = platform.read_ghcb(gpa, &mut ghcb.0) {
            return Outcome::Terminate(format!("cannot read the guest's GHCB at {gpa:#x}: {e}"));
        }
        let code = ghcb.valid(page::SW_EXIT_CODE);
        let outcome = match code {
            Some(code @ (EXIT_GUEST_REQUEST | EXIT_EXT_GUEST_REQUEST))
                if self.mode == SevMode::Snp =>
            {
                let certs = Arc::clone(&self.certs.read().unwrap_or_else(PoisonError::into_inner));
                let host = GuestRequestHost {
                    platform: &*platform,
                    limiter: &self.limiter,
                    certs: &*certs,
                };
                guest_request::handle(&mut ghcb, code, &host)
            }
            _ => handle_exit(&mut ghcb, gpa, &vcpu.cpuid, bus, &self.port_writes),
        };
        if let Err(e) = platform.write_ghcb(gpa, &ghcb.0) {
            return Outcome::Terminate(format!("cannot write the guest's GHCB at {gpa:#x}: {e}"));
        }
        outcome
    }
}

/// Handles the exit a GHCB page describes and writes the response into it:
/// KVM's checks (usage 0; SW_EXITCODE, SW_EXITINFO1/2 valid; the inputs of
/// the exit valid), then IOIO through `bus` (string output from the GHCB's
/// shared buffer too), CPUID from `cpuid`, or termination; any other exit
/// code is answered "invalid event". `gpa` is where the GHCB page is;
/// `writes` counts the port writes made.
pub fn handle_exit(
    ghcb: &mut Ghcb,
    gpa: u64,
    cpuid: &[CpuidLeaf],
    bus: &IoBus,
    writes: &AtomicU64,
) -> Outcome {
    use page::*;
    let usage = ghcb.usage();
    let code = ghcb.valid(SW_EXIT_CODE);
    let info1 = ghcb.valid(SW_EXIT_INFO_1);
    let info2 = ghcb.valid(SW_EXIT_INFO_2);
    let rax = ghcb.valid(RAX);
    let rcx = ghcb.valid(RCX);
    let scratch = ghcb.valid(SW_SCRATCH);
    ghcb.clear_valid();
    if usage != 0 {
        ghcb.set_error(ERR_INVALID_USAGE);
        return Outcome::Continue;
    }
    let (Some(code), Some(info1), Some(info2)) = (code, info1, info2) else {
        ghcb.set_error(ERR_MISSING_INPUT);
        return Outcome::Continue;
    };
    match code {
        EXIT_IOIO if info1 & IOIO_STRING != 0 => {
            let Some(scratch) = scratch else {
                ghcb.set_error(ERR_MISSING_INPUT);
                return Outcome::Continue;
            };
            let out = match decode_string_out(info1, info2, scratch, gpa) {
                Ok(out) => out,
                Err(e) => {
                    log::debug!("GHCB string IOIO {info1:#x} refused: {e:?}");
                    ghcb.set_error(ERR_INVALID_INPUT);
                    return Outcome::Continue;
                }
            };
            let mut action = IoAction::Continue;
            for i in 0..out.count {
                let at = out.offset + i * out.io.size;
                let Some(element) = ghcb.0.get(at..at + out.io.size) else {
                    break;
                };
                action = bus.write(out.io.port, element);
                writes.fetch_add(1, Ordering::Relaxed);
                if action != IoAction::Continue {
                    break;
                }
            }
            ghcb.set(SW_EXIT_INFO_1, 0);
            ghcb.set(SW_EXIT_INFO_2, 0);
            match action {
                IoAction::Continue => Outcome::Continue,
                IoAction::Exit(v) => Outcome::Exit(v),
            }
        }
        EXIT_IOIO => {
            let io = match decode_ioio(info1) {
                Ok(io) => io,
                Err(e) => {
                    // String forms need the scratch area: not modelled.
                    log::debug!("GHCB IOIO {info1:#x} refused: {e:?}");
                    ghcb.set_error(ERR_INVALID_INPUT);
                    return Outcome::Continue;
                }
            };
            let mut action = IoAction::Continue;
            if io.is_in {
                let mut data = [0u8; 4];
                bus.read(io.port, &mut data[..io.size]);
                ghcb.set(RAX, u64::from(u32::from_le_bytes(data)));
            } else {
                let Some(rax) = rax else {
                    ghcb.set_error(ERR_MISSING_INPUT);
                    return Outcome::Continue;
                };
                action = bus.write(io.port, &rax.to_le_bytes()[..io.size]);
                writes.fetch_add(1, Ordering::Relaxed);
            }
            ghcb.set(SW_EXIT_INFO_1, 0);
            ghcb.set(SW_EXIT_INFO_2, 0);
            match action {
                IoAction::Continue => Outcome::Continue,
                IoAction::Exit(v) => Outcome::Exit(v),
            }
        }
        EXIT_CPUID => {
            let (Some(leaf), Some(_sub)) = (rax, rcx) else {
                ghcb.set_error(ERR_MISSING_INPUT);
                return Outcome::Continue;
            };
            let regs = cpuid
                .iter()
                .find(|l| u64::from(l.leaf) == leaf & 0xFFFF_FFFF)
                .map_or([0; 4], |l| l.regs);
            for (offset, reg) in [
                (RAX, CpuidReg::Eax),
                (RBX, CpuidReg::Ebx),
                (RCX, CpuidReg::Ecx),
                (RDX, CpuidReg::Edx),
            ] {
                ghcb.set(offset, u64::from(reg.pick(regs)));
            }
            ghcb.set(SW_EXIT_INFO_1, 0);
            ghcb.set(SW_EXIT_INFO_2, 0);
            Outcome::Continue
        }
        EXIT_TERMINATE => terminated(((info1 >> 12) & 0xF) as u8, ((info1 >> 16) & 0xFF) as u8),
        other => {
            log::debug!("GHCB exit code {other:#x} is not handled");
            ghcb.set_error(ERR_INVALID_EVENT);
            Outcome::Continue
        }
    }
}

#[cfg(test)]
mod snp_tests;
#[cfg(test)]
mod tests;
