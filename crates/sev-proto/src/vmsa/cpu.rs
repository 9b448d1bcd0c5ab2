//! vCPU models and their CPU signatures: the CPUID leaf 1 EAX value a vCPU
//! reports, which QEMU also loads into RDX at reset and KVM copies into the
//! initial VMSA (docs/protocol/vmsa.md#cpu-signature).

use std::fmt;

/// The largest family the signature can encode: 0xF in the base family
/// field plus 0xFF in the extended family field.
pub const MAX_FAMILY: u16 = 0xF + 0xFF;

/// A family, model or stepping that the signature cannot encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Family above 0x10E.
    #[error("CPU family {0} is out of range (0 to {MAX_FAMILY})")]
    Family(u16),
    /// Model above 0xFF.
    #[error("CPU model {0} is out of range (0 to 255)")]
    Model(u16),
    /// Stepping above 0xF.
    #[error("CPU stepping {0} is out of range (0 to 15)")]
    Stepping(u16),
}

/// A vCPU's CPUID leaf 1 EAX: stepping, model and family in the layout of
/// AMD's CPUID specification, with the reserved and processor-type bits
/// zero (QEMU builds it from family, model and stepping alone).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpuSignature(u32);

impl CpuSignature {
    /// Encodes family, model and stepping. Families above 0xF are split
    /// into 0xF in the base field and the rest in the extended field; the
    /// model's high nibble goes to the extended model field.
    pub const fn from_fms(family: u16, model: u16, stepping: u16) -> Result<Self, SignatureError> {
        if family > MAX_FAMILY {
            return Err(SignatureError::Family(family));
        }
        if model > 0xFF {
            return Err(SignatureError::Model(model));
        }
        if stepping > 0xF {
            return Err(SignatureError::Stepping(stepping));
        }
        let (family_low, family_high) = if family > 0xF {
            (0xF, family - 0xF)
        } else {
            (family, 0)
        };
        Ok(CpuSignature(
            (family_high as u32) << 20
                | ((model as u32) >> 4) << 16
                | (family_low as u32) << 8
                | ((model as u32) & 0xF) << 4
                | stepping as u32,
        ))
    }

    /// The signature QEMU gives a `-cpu host` vCPU on a host whose CPUID
    /// leaf 1 returned `eax`: its family, model and stepping re-encoded,
    /// which drops the processor-type and reserved bits.
    pub const fn from_host_leaf1_eax(eax: u32) -> Self {
        let base_family = (eax >> 8) & 0xF;
        let family = if base_family == 0xF {
            base_family + ((eax >> 20) & 0xFF)
        } else {
            base_family
        };
        let model = ((eax >> 4) & 0xF) | ((eax >> 12) & 0xF0);
        let stepping = eax & 0xF;
        match Self::from_fms(family as u16, model as u16, stepping as u16) {
            Ok(sig) => sig,
            // Unreachable: every decoded field is within range.
            Err(_) => CpuSignature(eax & 0x0FFF_3FFF),
        }
    }

    /// A signature given as a number (sev-snp-measure's `--vcpu-sig`),
    /// taken as it is.
    pub const fn from_raw(value: u32) -> Self {
        CpuSignature(value)
    }

    /// The 32-bit value.
    pub const fn value(self) -> u32 {
        self.0
    }

    /// The family (base plus extended).
    pub const fn family(self) -> u16 {
        let base = (self.0 >> 8) & 0xF;
        let ext = if base == 0xF {
            (self.0 >> 20) & 0xFF
        } else {
            0
        };
        (base + ext) as u16
    }

    /// The model (extended model in the high nibble).
    pub const fn model(self) -> u16 {
        (((self.0 >> 4) & 0xF) | ((self.0 >> 12) & 0xF0)) as u16
    }

    /// The stepping.
    pub const fn stepping(self) -> u16 {
        (self.0 & 0xF) as u16
    }
}

impl fmt::Debug for CpuSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuSignature({:#010x})", self.0)
    }
}

impl fmt::Display for CpuSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// A named QEMU vCPU model with its family, model and stepping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VcpuModel {
    /// QEMU's `-cpu` name, e.g. `EPYC-Milan-v2`.
    pub name: &'static str,
    /// CPU family.
    pub family: u16,
    /// CPU model.
    pub model: u16,
    /// CPU stepping.
    pub stepping: u16,
}

impl VcpuModel {
    /// The model's signature.
    pub const fn signature(&self) -> CpuSignature {
        match CpuSignature::from_fms(self.family, self.model, self.stepping) {
            Ok(sig) => sig,
            // Unreachable: the table's values are in range (tested).
            Err(_) => CpuSignature(0),
        }
    }

    /// Looks a model up by its QEMU name (ASCII case-insensitive, as QEMU
    /// matches `-cpu` names). `host` is not in the table: its signature
    /// comes from the host's CPUID ([`CpuSignature::from_host_leaf1_eax`]).
    pub fn by_name(name: &str) -> Option<&'static VcpuModel> {
        VCPU_MODELS
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))
    }
}

const fn model(name: &'static str, family: u16, model: u16, stepping: u16) -> VcpuModel {
    VcpuModel {
        name,
        family,
        model,
        stepping,
    }
}

/// The AMD EPYC vCPU models of QEMU's x86 CPU table, every version. A
/// version changes features, never the signature.
pub const VCPU_MODELS: &[VcpuModel] = &[
    model("EPYC", 23, 1, 2),
    model("EPYC-v1", 23, 1, 2),
    model("EPYC-v2", 23, 1, 2),
    model("EPYC-IBPB", 23, 1, 2),
    model("EPYC-v3", 23, 1, 2),
    model("EPYC-v4", 23, 1, 2),
    model("EPYC-Rome", 23, 49, 0),
    model("EPYC-Rome-v1", 23, 49, 0),
    model("EPYC-Rome-v2", 23, 49, 0),
    model("EPYC-Rome-v3", 23, 49, 0),
    model("EPYC-Rome-v4", 23, 49, 0),
    model("EPYC-Rome-v5", 23, 49, 0),
    model("EPYC-Milan", 25, 1, 1),
    model("EPYC-Milan-v1", 25, 1, 1),
    model("EPYC-Milan-v2", 25, 1, 1),
    model("EPYC-Milan-v3", 25, 1, 1),
    model("EPYC-Genoa", 25, 17, 0),
    model("EPYC-Genoa-v1", 25, 17, 0),
    model("EPYC-Genoa-v2", 25, 17, 0),
    model("EPYC-Turin", 26, 0, 0),
    model("EPYC-Turin-v1", 26, 0, 0),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_of_the_known_models() {
        let want = [
            ("EPYC", 0x0080_0F12),
            ("EPYC-v4", 0x0080_0F12),
            ("EPYC-IBPB", 0x0080_0F12),
            ("EPYC-Rome", 0x0083_0F10),
            ("EPYC-Rome-v5", 0x0083_0F10),
            ("EPYC-Milan", 0x00A0_0F11),
            ("epyc-milan-v3", 0x00A0_0F11),
            ("EPYC-Genoa", 0x00A1_0F10),
            ("EPYC-Turin", 0x00B0_0F00),
        ];
        for (name, sig) in want {
            let m = VcpuModel::by_name(name).unwrap();
            assert_eq!(m.signature().value(), sig, "{name}");
        }
        assert_eq!(VcpuModel::by_name("host"), None);
        assert_eq!(VcpuModel::by_name("EPYC-v9"), None);
        for m in VCPU_MODELS {
            let sig = CpuSignature::from_fms(m.family, m.model, m.stepping).unwrap();
            assert_eq!(
                (sig.family(), sig.model(), sig.stepping()),
                (m.family, m.model, m.stepping)
            );
        }
    }

    #[test]
    fn encoding_limits_and_small_families() {
        assert_eq!(
            CpuSignature::from_fms(6, 0x55, 4).unwrap().value(),
            0x0005_0654
        );
        assert_eq!(CpuSignature::from_fms(0xF, 0, 0).unwrap().value(), 0x0F00);
        assert_eq!(
            CpuSignature::from_fms(MAX_FAMILY, 0xFF, 0xF)
                .unwrap()
                .value(),
            0x0FFF_0FFF
        );
        assert_eq!(
            CpuSignature::from_fms(MAX_FAMILY + 1, 0, 0),
            Err(SignatureError::Family(MAX_FAMILY + 1))
        );
        assert_eq!(
            CpuSignature::from_fms(23, 256, 0),
            Err(SignatureError::Model(256))
        );
        assert_eq!(
            CpuSignature::from_fms(23, 1, 16),
            Err(SignatureError::Stepping(16))
        );
    }

    #[test]
    fn host_signature_drops_type_and_reserved_bits() {
        // A Milan host: family 0x19, model 0x01, stepping 1, with processor
        // type and reserved bits set.
        let eax = 0xF000_3000 | 0x00A0_0F11;
        assert_eq!(CpuSignature::from_host_leaf1_eax(eax).value(), 0x00A0_0F11);
        // Below family 0xF the extended family does not count.
        let eax = 0x00F5_0654;
        let sig = CpuSignature::from_host_leaf1_eax(eax);
        assert_eq!((sig.family(), sig.model(), sig.stepping()), (6, 0x55, 4));
        assert_eq!(sig.value(), 0x0005_0654);
        assert_eq!(format!("{sig}"), "0x00050654");
    }
}
