//! SEV-ES: every vCPU's initial VMSA, built as QEMU builds it for OVMF
//! (`sev_proto::vmsa`), and the KVM vCPUs set from the same values
//! (docs/sev-es.md#the-initial-vmsas).
//!
//! The BSP starts at the reset vector, the APs at the firmware's SEV-ES AP
//! reset address (its footer table's SEV-ES reset block); RDX holds the CPU
//! signature of the `-cpu` model. LAUNCH_UPDATE_VMSA then measures the
//! pages in vCPU order, and from then on the host cannot read or set the
//! registers ([`crate::machine::Machine::protect_registers`]).

use kvm_bindings::kvm_segment;
use sev_proto::ovmf::ResetVector;
use sev_proto::vmsa::{
    CpuSignature, InitialState, KvmInit, Segment, SevFeatures, VcpuModel, VcpuRole, VmmType,
    VmsaConfig,
};

use super::VmsaPage;
use crate::config::CpuConfig;
use crate::machine::{Machine, MachineError};

/// QEMU's default x86-64 model (`qemu64`): family 15, model 107,
/// stepping 1.
const QEMU64: (u16, u16, u16) = (15, 107, 1);

/// EFER.SVME: set by the hypervisor in every SVM save area, not a guest
/// value; a KVM vCPU without nested SVM refuses it.
const EFER_SVME: u64 = 1 << 12;

/// Why the VMSAs cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum EsError {
    /// The `-cpu` model has no known signature.
    #[error("CPU model \"{0}\" has no known CPU signature for SEV-ES")]
    UnknownModel(String),
    /// The model's signature is out of range.
    #[error("CPU model \"{model}\": {reason}")]
    BadSignature {
        /// The model.
        model: String,
        /// What is wrong.
        reason: String,
    },
}

/// The CPU signature (CPUID leaf 1 EAX) that a `-cpu` model gives the
/// vCPUs' RDX at reset: the model table's family/model/stepping, the host's
/// own for `host` and `max` (KVM), QEMU's `qemu64` when no `-cpu` is given.
pub fn cpu_signature(cpu: Option<&CpuConfig>) -> Result<CpuSignature, EsError> {
    let model = cpu.map_or("qemu64", |c| c.model.as_str());
    let fms = |(f, m, s): (u16, u16, u16)| {
        CpuSignature::from_fms(f, m, s).map_err(|e| EsError::BadSignature {
            model: model.to_owned(),
            reason: e.to_string(),
        })
    };
    match model {
        "host" | "max" => Ok(CpuSignature::from_host_leaf1_eax(host_leaf1_eax())),
        "qemu64" => fms(QEMU64),
        name => VcpuModel::by_name(name)
            .map(VcpuModel::signature)
            .ok_or_else(|| EsError::UnknownModel(name.to_owned())),
    }
}

fn host_leaf1_eax() -> u32 {
    std::arch::x86_64::__cpuid(1).eax
}

/// The initial register state of every vCPU of an SEV-ES guest and its VMSA
/// pages, in vCPU order.
#[derive(Debug, Clone)]
pub struct InitialVmsas {
    states: Vec<InitialState>,
    pages: Vec<VmsaPage>,
}

impl InitialVmsas {
    /// The VMSAs of `vcpus` vCPUs of model `signature`: vCPU 0 is the BSP,
    /// the others start at `ap_reset`. `init` is how the VM was initialised:
    /// KVM_SEV_ES_INIT (QEMU's legacy VM type, sevm's default) leaves the
    /// VMSAs' FPU fields zero, KVM_SEV_INIT2 (`legacy-vm-type=off`) fills
    /// them with the reset values.
    pub fn new(signature: CpuSignature, vcpus: u32, ap_reset: ResetVector, init: KvmInit) -> Self {
        let config =
            VmsaConfig::new(VmmType::Qemu, signature, SevFeatures::NONE).with_kvm_init(init);
        Self::from_config(&config, vcpus, ap_reset)
    }

    /// The VMSAs of an SEV-SNP guest's `vcpus` vCPUs of model `signature`:
    /// as for SEV-ES on a VM made with KVM_SEV_INIT2 (every SNP VM is), with
    /// the SEV feature SNPActive that KVM sets (the VMSAs
    /// `sev-owner measure --mode snp` builds by default).
    pub fn snp(signature: CpuSignature, vcpus: u32, ap_reset: ResetVector) -> Self {
        let config = VmsaConfig::new(VmmType::Qemu, signature, SevFeatures::SNP_ACTIVE)
            .with_kvm_init(KvmInit::Init2);
        Self::from_config(&config, vcpus, ap_reset)
    }

    fn from_config(config: &VmsaConfig, vcpus: u32, ap_reset: ResetVector) -> Self {
        let states: Vec<InitialState> = (0..vcpus)
            .map(|i| {
                config.state(if i == 0 {
                    VcpuRole::Bsp
                } else {
                    VcpuRole::Ap(ap_reset)
                })
            })
            .collect();
        let pages = states.iter().map(InitialState::to_page).collect();
        InitialVmsas { states, pages }
    }

    /// The pages LAUNCH_UPDATE_VMSA measures, in vCPU order.
    pub fn pages(&self) -> &[VmsaPage] {
        &self.pages
    }

    /// The register states, in vCPU order.
    pub fn states(&self) -> &[InitialState] {
        &self.states
    }

    /// Sets every KVM vCPU of `machine` from its VMSA: general, segment,
    /// descriptor-table and control registers. DR6, DR7, XCR0, PAT and the
    /// FPU control words of the VMSA are the architectural reset values the
    /// vCPUs already hold; EFER.SVME is left out (the hypervisor's bit).
    /// The APs stay waiting for their start-up as they were.
    pub fn apply(&self, machine: &Machine) -> Result<(), MachineError> {
        for (index, s) in self.states.iter().enumerate() {
            let mut state = machine.vcpu_state(index)?;
            let (r, sr) = (&mut state.regs, &mut state.sregs);
            r.rip = s.rip;
            r.rflags = s.rflags;
            r.rdx = s.rdx;
            sr.cs = segment(&s.cs);
            sr.ss = segment(&s.ss);
            sr.ds = segment(&s.ds);
            sr.es = segment(&s.es);
            sr.fs = segment(&s.fs);
            sr.gs = segment(&s.gs);
            sr.ldt = segment(&s.ldtr);
            sr.tr = segment(&s.tr);
            sr.gdt.base = s.gdtr.base;
            sr.gdt.limit = s.gdtr.limit as u16;
            sr.idt.base = s.idtr.base;
            sr.idt.limit = s.idtr.limit as u16;
            sr.cr0 = s.cr0;
            sr.cr4 = s.cr4;
            sr.efer = s.efer & !EFER_SVME;
            machine.set_vcpu_state(index, &state)?;
        }
        Ok(())
    }
}

/// A VMSA segment (attributes in the VMCB's packed form: type, S, DPL, P in
/// bits 0–7, AVL, L, D/B, G in bits 8–11) as KVM's segment.
pub(super) fn segment(s: &Segment) -> kvm_segment {
    let a = s.attrib;
    let bit = |n: u16| ((a >> n) & 1) as u8;
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: (a & 0xF) as u8,
        s: bit(4),
        dpl: ((a >> 5) & 3) as u8,
        present: bit(7),
        avl: bit(8),
        l: bit(9),
        db: bit(10),
        g: bit(11),
        unusable: u8::from(bit(7) == 0),
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(model: &str) -> CpuConfig {
        CpuConfig {
            model: model.into(),
            features: vec![],
        }
    }

    #[test]
    fn signatures_of_the_cpu_models() {
        // qemu64: family 15, model 107 (extended model 6), stepping 1.
        assert_eq!(cpu_signature(None).unwrap().value(), 0x0006_0FB1);
        assert_eq!(
            cpu_signature(Some(&cpu("EPYC-v4"))).unwrap().value(),
            0x0080_0F12
        );
        assert_eq!(
            cpu_signature(Some(&cpu("EPYC-Milan-v2"))).unwrap(),
            VcpuModel::by_name("EPYC-Milan").unwrap().signature()
        );
        let host = cpu_signature(Some(&cpu("host"))).unwrap();
        assert_eq!(host, cpu_signature(Some(&cpu("max"))).unwrap());
        assert!(matches!(
            cpu_signature(Some(&cpu("EPYC-Rome-v99"))),
            Err(EsError::UnknownModel(_))
        ));
    }

    #[test]
    fn bsp_and_aps_start_where_qemu_starts_them() {
        let sig = VcpuModel::by_name("EPYC-Genoa").unwrap().signature();
        let v = InitialVmsas::new(
            sig,
            3,
            ResetVector { addr: 0x0080_B004 },
            KvmInit::LegacyEsInit,
        );
        assert_eq!(v.pages().len(), 3);
        let (bsp, ap) = (&v.states()[0], &v.states()[1]);
        assert_eq!((bsp.cs.base, bsp.rip), (0xFFFF_0000, 0xFFF0));
        assert_eq!((ap.cs.base, ap.rip), (0x0080_0000, 0xB004));
        assert_eq!(bsp.rdx, u64::from(sig.value()));
        assert_eq!(v.pages()[1], v.pages()[2]);
        assert_ne!(v.pages()[0], v.pages()[1]);
        // The code segment as KVM takes it: present, readable code, S=1.
        let cs = segment(&bsp.cs);
        assert_eq!(
            (cs.type_, cs.s, cs.present, cs.dpl, cs.unusable),
            (0xB, 1, 1, 0, 0)
        );
        let ldt = segment(&bsp.ldtr);
        assert_eq!((ldt.type_, ldt.s, ldt.present), (2, 0, 1));
    }
}
