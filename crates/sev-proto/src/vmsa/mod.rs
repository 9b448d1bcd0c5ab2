//! The initial VMSA of a vCPU: the 4096-byte SEV-ES save area that the VMM
//! hands to LAUNCH_UPDATE_VMSA (SEV-ES) or measures as a VMSA page
//! (SEV-SNP), built exactly as QEMU and KVM build it for OVMF, and as
//! sev-snp-measure's VMM types model other hypervisors
//! (docs/protocol/vmsa.md#initial-vmsa).
//!
//! ```
//! use sev_proto::vmsa::{VcpuModel, VcpuRole, VmsaConfig, VmmType, SevFeatures};
//!
//! let sig = VcpuModel::by_name("EPYC-Milan").unwrap().signature();
//! let config = VmsaConfig::new(VmmType::Qemu, sig, SevFeatures::SNP_ACTIVE);
//! let bsp = config.page(VcpuRole::Bsp);
//! assert_eq!(bsp.len(), 4096);
//! ```

mod cpu;

use std::fmt;
use std::str::FromStr;

pub use cpu::{CpuSignature, SignatureError, VcpuModel, MAX_FAMILY, VCPU_MODELS};

use crate::ovmf::ResetVector;

/// The size of a VMSA page.
pub const VMSA_LEN: usize = 4096;

/// The EIP every BSP starts at: the architectural reset vector.
pub const BSP_RESET_EIP: u32 = 0xFFFF_FFF0;

/// Byte offsets of the save-area fields the initial state sets
/// (docs/protocol/vmsa.md#layout).
pub mod offset {
    /// ES; the ten segment records (ES, CS, SS, DS, FS, GS, GDTR, LDTR,
    /// IDTR, TR) follow each other, 16 bytes apart.
    pub const ES: usize = 0x000;
    /// CS.
    pub const CS: usize = 0x010;
    /// SS.
    pub const SS: usize = 0x020;
    /// DS.
    pub const DS: usize = 0x030;
    /// FS.
    pub const FS: usize = 0x040;
    /// GS.
    pub const GS: usize = 0x050;
    /// GDTR.
    pub const GDTR: usize = 0x060;
    /// LDTR.
    pub const LDTR: usize = 0x070;
    /// IDTR.
    pub const IDTR: usize = 0x080;
    /// TR.
    pub const TR: usize = 0x090;
    /// VMPL (u8).
    pub const VMPL: usize = 0x0CA;
    /// CPL (u8).
    pub const CPL: usize = 0x0CB;
    /// EFER.
    pub const EFER: usize = 0x0D0;
    /// CR4.
    pub const CR4: usize = 0x148;
    /// CR3.
    pub const CR3: usize = 0x150;
    /// CR0.
    pub const CR0: usize = 0x158;
    /// DR7.
    pub const DR7: usize = 0x160;
    /// DR6.
    pub const DR6: usize = 0x168;
    /// RFLAGS.
    pub const RFLAGS: usize = 0x170;
    /// RIP.
    pub const RIP: usize = 0x178;
    /// RSP.
    pub const RSP: usize = 0x1D8;
    /// RAX.
    pub const RAX: usize = 0x1F8;
    /// The guest PAT MSR.
    pub const G_PAT: usize = 0x268;
    /// RCX.
    pub const RCX: usize = 0x308;
    /// RDX.
    pub const RDX: usize = 0x310;
    /// RBX.
    pub const RBX: usize = 0x318;
    /// SEV_FEATURES.
    pub const SEV_FEATURES: usize = 0x3B0;
    /// XCR0.
    pub const XCR0: usize = 0x3E8;
    /// MXCSR (u32).
    pub const MXCSR: usize = 0x408;
    /// The x87 control word (u16).
    pub const X87_FCW: usize = 0x410;
}

/// The hypervisor whose initial register state is modelled, as
/// sev-snp-measure's `--vmm-type` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VmmType {
    /// QEMU with KVM (sevm's own launches).
    #[default]
    Qemu,
    /// Amazon EC2, as sev-snp-measure models it.
    Ec2,
    /// Google Compute Engine, as sev-snp-measure models it.
    Gce,
}

impl VmmType {
    /// sev-snp-measure's spelling: `QEMU`, `ec2`, `gce`.
    pub const fn name(self) -> &'static str {
        match self {
            VmmType::Qemu => "QEMU",
            VmmType::Ec2 => "ec2",
            VmmType::Gce => "gce",
        }
    }
}

impl fmt::Display for VmmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A VMM type name that is not `QEMU`, `ec2` or `gce`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown VMM type {0:?} (expected QEMU, ec2 or gce)")]
pub struct UnknownVmmType(pub String);

impl FromStr for VmmType {
    type Err = UnknownVmmType;

    /// Accepts sev-snp-measure's names in any ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [VmmType::Qemu, VmmType::Ec2, VmmType::Gce]
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownVmmType(s.to_owned()))
    }
}

/// The VMSA's SEV_FEATURES (offset 0x3B0): what the firmware enables for
/// the vCPU (docs/protocol/vmsa.md#sev-features). Every bit is accepted;
/// the firmware decides which it supports.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SevFeatures(u64);

impl SevFeatures {
    /// No features: every SEV-ES launch QEMU makes with KVM_SEV_INIT2.
    pub const NONE: SevFeatures = SevFeatures(0);
    /// Bit 0, SNPActive: set by KVM for every SNP guest.
    pub const SNP_ACTIVE: SevFeatures = SevFeatures(1 << 0);
    /// Bit 5, DebugSwap: set by older kernels unasked (`kvm_amd.debug_swap`).
    pub const DEBUG_SWAP: SevFeatures = SevFeatures(1 << 5);

    /// The features with these bits.
    pub const fn from_bits(bits: u64) -> Self {
        SevFeatures(bits)
    }

    /// The 64-bit value.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Both sets of bits.
    pub const fn union(self, other: SevFeatures) -> Self {
        SevFeatures(self.0 | other.0)
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: SevFeatures) -> bool {
        self.0 & other.0 == other.0
    }
}

impl fmt::Debug for SevFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SevFeatures({:#x})", self.0)
    }
}

/// How KVM created the VM, which decides whether it copies the vCPU's
/// reset FPU state into the VMSA (docs/protocol/vmsa.md#fpu-state,
/// docs/protocol/choices.md#u9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KvmInit {
    /// KVM_SEV_INIT2 (every SNP VM; QEMU's SEV-ES VMs on current kernels):
    /// MXCSR and the x87 control word hold their reset values (QEMU type).
    #[default]
    Init2,
    /// The legacy KVM_SEV_ES_INIT: the FPU area stays zero (sevctl's
    /// convention).
    LegacyEsInit,
}

/// Which vCPU a VMSA is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VcpuRole {
    /// vCPU 0, starting at the reset vector 0xFFFFFFF0.
    Bsp,
    /// Any other vCPU, starting at the firmware's SEV-ES AP reset address.
    Ap(ResetVector),
}

impl VcpuRole {
    /// The vCPU's first EIP.
    pub const fn eip(self) -> u32 {
        match self {
            VcpuRole::Bsp => BSP_RESET_EIP,
            VcpuRole::Ap(v) => v.addr,
        }
    }
}

/// One segment register record of the save area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Segment {
    /// Selector.
    pub selector: u16,
    /// Attributes in the VMCB's packed form.
    pub attrib: u16,
    /// Limit.
    pub limit: u32,
    /// Base.
    pub base: u64,
}

impl Segment {
    const fn new(selector: u16, attrib: u16, limit: u32, base: u64) -> Self {
        Segment {
            selector,
            attrib,
            limit,
            base,
        }
    }

    fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[0..2].copy_from_slice(&self.selector.to_le_bytes());
        out[2..4].copy_from_slice(&self.attrib.to_le_bytes());
        out[4..8].copy_from_slice(&self.limit.to_le_bytes());
        out[8..16].copy_from_slice(&self.base.to_le_bytes());
        out
    }
}

/// The registers an initial VMSA sets; every other byte of the page is
/// zero. The VMM can also load these into a vCPU it runs itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InitialState {
    /// ES.
    pub es: Segment,
    /// CS.
    pub cs: Segment,
    /// SS.
    pub ss: Segment,
    /// DS.
    pub ds: Segment,
    /// FS.
    pub fs: Segment,
    /// GS.
    pub gs: Segment,
    /// GDTR.
    pub gdtr: Segment,
    /// LDTR.
    pub ldtr: Segment,
    /// IDTR.
    pub idtr: Segment,
    /// TR.
    pub tr: Segment,
    /// EFER (SVME, set by KVM).
    pub efer: u64,
    /// CR4 (MCE, set by KVM).
    pub cr4: u64,
    /// CR0 (ET).
    pub cr0: u64,
    /// DR7.
    pub dr7: u64,
    /// DR6.
    pub dr6: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// RIP (the low 16 bits of the first EIP; CS holds the rest).
    pub rip: u64,
    /// The guest PAT MSR.
    pub g_pat: u64,
    /// RDX: the CPU signature for QEMU.
    pub rdx: u64,
    /// SEV_FEATURES.
    pub sev_features: SevFeatures,
    /// XCR0.
    pub xcr0: u64,
    /// MXCSR.
    pub mxcsr: u32,
    /// The x87 control word.
    pub x87_fcw: u16,
}

/// The PAT value every x86 CPU resets to.
const RESET_PAT: u64 = 0x0007_0406_0007_0406;

impl InitialState {
    /// The page: the fields at their offsets, zero elsewhere.
    pub fn to_page(&self) -> [u8; VMSA_LEN] {
        let mut page = [0u8; VMSA_LEN];
        let segments = [
            (offset::ES, self.es),
            (offset::CS, self.cs),
            (offset::SS, self.ss),
            (offset::DS, self.ds),
            (offset::FS, self.fs),
            (offset::GS, self.gs),
            (offset::GDTR, self.gdtr),
            (offset::LDTR, self.ldtr),
            (offset::IDTR, self.idtr),
            (offset::TR, self.tr),
        ];
        for (at, seg) in segments {
            page[at..at + 16].copy_from_slice(&seg.encode());
        }
        let quads = [
            (offset::EFER, self.efer),
            (offset::CR4, self.cr4),
            (offset::CR0, self.cr0),
            (offset::DR7, self.dr7),
            (offset::DR6, self.dr6),
            (offset::RFLAGS, self.rflags),
            (offset::RIP, self.rip),
            (offset::G_PAT, self.g_pat),
            (offset::RDX, self.rdx),
            (offset::SEV_FEATURES, self.sev_features.bits()),
            (offset::XCR0, self.xcr0),
        ];
        for (at, v) in quads {
            page[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        page[offset::MXCSR..offset::MXCSR + 4].copy_from_slice(&self.mxcsr.to_le_bytes());
        page[offset::X87_FCW..offset::X87_FCW + 2].copy_from_slice(&self.x87_fcw.to_le_bytes());
        page
    }
}

/// Everything an initial VMSA depends on besides the vCPU's role: the same
/// for every vCPU of a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VmsaConfig {
    /// The hypervisor modelled.
    pub vmm: VmmType,
    /// The vCPU model's signature (RDX for QEMU; ec2 and gce ignore it).
    pub signature: CpuSignature,
    /// SEV_FEATURES: zero for SEV-ES, the guest features for SNP.
    pub sev_features: SevFeatures,
    /// How KVM created the VM.
    pub kvm_init: KvmInit,
}

/// More than one vCPU, but no AP reset address in the firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{vcpus} vCPUs need the firmware's SEV-ES AP reset address, and the firmware has none")]
pub struct MissingApResetVector {
    /// The vCPU count asked for.
    pub vcpus: u32,
}

impl VmsaConfig {
    /// A configuration with KVM_SEV_INIT2's FPU state.
    pub const fn new(vmm: VmmType, signature: CpuSignature, sev_features: SevFeatures) -> Self {
        VmsaConfig {
            vmm,
            signature,
            sev_features,
            kvm_init: KvmInit::Init2,
        }
    }

    /// The same configuration with another KVM init path.
    pub const fn with_kvm_init(self, kvm_init: KvmInit) -> Self {
        VmsaConfig { kvm_init, ..self }
    }

    /// The registers of the vCPU in `role` (docs/protocol/vmsa.md#initial-vmsa,
    /// docs/protocol/vmsa.md#vmm-types).
    pub fn state(&self, role: VcpuRole) -> InitialState {
        let eip = role.eip();
        let (cs_attrib, ss_attrib, tr_attrib, rdx, fpu, g_pat) = match self.vmm {
            VmmType::Qemu => (
                0x9B,
                0x93,
                0x8B,
                u64::from(self.signature.value()),
                true,
                RESET_PAT,
            ),
            VmmType::Ec2 => {
                let cs = if eip == BSP_RESET_EIP { 0x9A } else { 0x9B };
                (cs, 0x92, 0x83, 0x600, false, RESET_PAT)
            }
            VmmType::Gce => (0x9B, 0x93, 0x8B, 0x600, false, 0x0007_0106),
        };
        let fpu = fpu && self.kvm_init == KvmInit::Init2;
        let data = Segment::new(0, 0x93, 0xFFFF, 0);
        InitialState {
            es: data,
            cs: Segment::new(0xF000, cs_attrib, 0xFFFF, u64::from(eip & 0xFFFF_0000)),
            ss: Segment::new(0, ss_attrib, 0xFFFF, 0),
            ds: data,
            fs: data,
            gs: data,
            gdtr: Segment::new(0, 0, 0xFFFF, 0),
            ldtr: Segment::new(0, 0x82, 0xFFFF, 0),
            idtr: Segment::new(0, 0, 0xFFFF, 0),
            tr: Segment::new(0, tr_attrib, 0xFFFF, 0),
            efer: 0x1000,
            cr4: 0x40,
            cr0: 0x10,
            dr7: 0x400,
            dr6: 0xFFFF_0FF0,
            rflags: 0x2,
            rip: u64::from(eip & 0xFFFF),
            g_pat,
            rdx,
            sev_features: self.sev_features,
            xcr0: 0x1,
            mxcsr: if fpu { 0x1F80 } else { 0 },
            x87_fcw: if fpu { 0x037F } else { 0 },
        }
    }

    /// The VMSA page of the vCPU in `role`.
    pub fn page(&self, role: VcpuRole) -> [u8; VMSA_LEN] {
        self.state(role).to_page()
    }

    /// The VMSA pages of `vcpus` vCPUs in vCPU index order (BSP first), the
    /// order LAUNCH_UPDATE_VMSA measures them in. The APs need the
    /// firmware's reset address; a single vCPU does not.
    pub fn pages(
        &self,
        vcpus: u32,
        ap_reset: Option<ResetVector>,
    ) -> Result<VmsaPages, MissingApResetVector> {
        let ap = match ap_reset {
            Some(v) => Some(self.page(VcpuRole::Ap(v))),
            None if vcpus > 1 => return Err(MissingApResetVector { vcpus }),
            None => None,
        };
        Ok(VmsaPages {
            bsp: self.page(VcpuRole::Bsp),
            ap,
            next: 0,
            count: vcpus,
        })
    }
}

/// The VMSA pages of a guest's vCPUs, BSP first (from [`VmsaConfig::pages`]).
#[derive(Clone)]
pub struct VmsaPages {
    bsp: [u8; VMSA_LEN],
    ap: Option<[u8; VMSA_LEN]>,
    next: u32,
    count: u32,
}

impl fmt::Debug for VmsaPages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmsaPages")
            .field("next", &self.next)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Iterator for VmsaPages {
    type Item = [u8; VMSA_LEN];

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.count {
            return None;
        }
        let page = if self.next == 0 { self.bsp } else { self.ap? };
        self.next += 1;
        Some(page)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.count - self.next) as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for VmsaPages {}

#[cfg(test)]
mod tests;
