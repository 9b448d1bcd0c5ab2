//! The launch-digest mode and the vCPU options of `sev-owner measure`, named
//! as sev-snp-measure names them (docs/guide/sev-owner.md#sev-es-and-snp-digests).

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use sev_proto::vmsa::{CpuSignature, KvmInit, VcpuModel, VmmType, VCPU_MODELS};

/// Which launch digest to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Plain SEV: SHA-256 of the firmware and the kernel-hashes table.
    Sev,
    /// SEV-ES: the SEV digest followed by one VMSA per vCPU.
    Seves,
    /// SEV-SNP: the SHA-384 PAGE_INFO chain (the report's MEASUREMENT).
    Snp,
    /// SEV-SNP, the firmware pages only (to resume with --snp-ovmf-hash).
    #[value(name = "snp:ovmf-hash")]
    SnpOvmfHash,
}

impl Mode {
    /// The name `--mode` takes.
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Sev => "sev",
            Mode::Seves => "seves",
            Mode::Snp => "snp",
            Mode::SnpOvmfHash => "snp:ovmf-hash",
        }
    }
}

/// Parses an unsigned number in decimal or `0x` hex.
pub fn parse_u64(text: &str) -> Result<u64, String> {
    let t = text.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse::<u64>(),
    }
    .map_err(|_| format!("{text:?} is not a number (decimal or 0x hex)"))
}

fn parse_u32(text: &str) -> Result<u32, String> {
    let v = parse_u64(text)?;
    u32::try_from(v).map_err(|_| format!("{text:?} does not fit in 32 bits"))
}

fn parse_u16(text: &str) -> Result<u16, String> {
    let v = parse_u64(text)?;
    u16::try_from(v).map_err(|_| format!("{text:?} does not fit in 16 bits"))
}

fn parse_vmm(text: &str) -> Result<VmmType, String> {
    text.parse::<VmmType>().map_err(|e| e.to_string())
}

/// The vCPUs of an SEV-ES or SNP guest.
#[derive(Debug, Clone, Args)]
pub struct VcpuArgs {
    /// SEV-ES/SNP: the number of vCPUs (one VMSA each).
    #[arg(long, value_name = "N")]
    pub vcpus: Option<u32>,
    /// SEV-ES/SNP: the vCPU model (QEMU -cpu NAME: EPYC, EPYC-v4, EPYC-Milan, EPYC-Genoa-v2,
    /// EPYC-Turin, ...; `host` takes this machine's CPUID).
    #[arg(long, value_name = "CPUTYPE", conflicts_with_all = ["vcpu_sig", "vcpu_family"])]
    pub vcpu_type: Option<String>,
    /// SEV-ES/SNP: the vCPU signature (CPUID leaf 1 EAX; decimal or 0x hex).
    #[arg(long, value_name = "VALUE", value_parser = parse_u32, conflicts_with = "vcpu_family")]
    pub vcpu_sig: Option<u32>,
    /// SEV-ES/SNP: the vCPU family (with --vcpu-model and --vcpu-stepping).
    #[arg(long, value_name = "FAMILY", value_parser = parse_u16,
          requires_all = ["vcpu_model", "vcpu_stepping"])]
    pub vcpu_family: Option<u16>,
    /// SEV-ES/SNP: the vCPU model number.
    #[arg(long, value_name = "MODEL", value_parser = parse_u16, requires = "vcpu_family")]
    pub vcpu_model: Option<u16>,
    /// SEV-ES/SNP: the vCPU stepping.
    #[arg(long, value_name = "STEPPING", value_parser = parse_u16, requires = "vcpu_family")]
    pub vcpu_stepping: Option<u16>,
    /// SEV-ES/SNP: whose initial register state to model: QEMU (sevm's), ec2 or gce.
    #[arg(long, value_name = "VMMTYPE", value_parser = parse_vmm, default_value = "QEMU")]
    pub vmm_type: VmmType,
    /// SEV-ES: the VMM set the guest up with the legacy KVM_SEV_ES_INIT (QEMU 7.2, sevctl, and
    /// sevm without `legacy-vm-type=off`), which leaves the VMSAs' FPU fields zero; without it the
    /// VMSAs are KVM_SEV_INIT2's, as sev-snp-measure computes them.
    #[arg(long)]
    pub legacy_es_init: bool,
}

impl VcpuArgs {
    /// Whether any vCPU option other than the VMM type was given.
    pub fn any(&self) -> bool {
        self.vcpus.is_some()
            || self.vcpu_type.is_some()
            || self.vcpu_sig.is_some()
            || self.vcpu_family.is_some()
            || self.legacy_es_init
    }

    /// How KVM set up the VMSAs' FPU fields: `--legacy-es-init` or KVM_SEV_INIT2.
    pub fn kvm_init(&self) -> KvmInit {
        if self.legacy_es_init {
            KvmInit::LegacyEsInit
        } else {
            KvmInit::Init2
        }
    }

    /// The vCPU count, which SEV-ES and SNP need.
    pub fn count(&self, mode: &str) -> Result<u32> {
        match self.vcpus {
            None => bail!("missing --vcpus N in guest mode '{mode}'"),
            Some(n @ 1..=512) => Ok(n),
            Some(n) => bail!("--vcpus {n}: expected 1..=512"),
        }
    }

    /// The vCPU signature: from the family/model/stepping, the value, or
    /// the model name. QEMU needs one; ec2 and gce do not use it.
    pub fn signature(&self, mode: &str) -> Result<CpuSignature> {
        if let (Some(f), Some(m), Some(s)) = (self.vcpu_family, self.vcpu_model, self.vcpu_stepping)
        {
            return Ok(CpuSignature::from_fms(f, m, s)?);
        }
        if let Some(sig) = self.vcpu_sig {
            return Ok(CpuSignature::from_raw(sig));
        }
        if let Some(name) = &self.vcpu_type {
            if name.eq_ignore_ascii_case("host") {
                return host_signature();
            }
            return match VcpuModel::by_name(name) {
                Some(m) => Ok(m.signature()),
                None => {
                    let known: Vec<&str> = VCPU_MODELS.iter().map(|m| m.name).collect();
                    bail!(
                        "unknown --vcpu-type {name:?} (known: {}, host)",
                        known.join(", ")
                    )
                }
            };
        }
        if self.vmm_type == VmmType::Qemu {
            bail!("missing --vcpu-type or --vcpu-sig or --vcpu-family in guest mode '{mode}'");
        }
        Ok(CpuSignature::from_raw(0))
    }
}

/// The signature QEMU gives `-cpu host` on this machine.
#[cfg(target_arch = "x86_64")]
fn host_signature() -> Result<CpuSignature> {
    let eax = core::arch::x86_64::__cpuid(1).eax;
    Ok(CpuSignature::from_host_leaf1_eax(eax))
}

/// The signature QEMU gives `-cpu host` on this machine.
#[cfg(not(target_arch = "x86_64"))]
fn host_signature() -> Result<CpuSignature> {
    bail!("--vcpu-type host needs an x86-64 machine; give --vcpu-sig or --vcpu-family instead")
}
