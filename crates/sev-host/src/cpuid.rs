//! CPUID Fn8000_001F: the memory-encryption capabilities of the host CPU
//! (docs/protocol/memory.md#cpuid).

use std::ops::RangeInclusive;

/// Decoded CPUID Fn8000_001F.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SevCpuid {
    /// Whether the CPU has leaf 0x8000_001F at all (max extended leaf ≥ it).
    /// When false every other field is zero/false.
    pub leaf_present: bool,
    /// EAX bit 0: SME supported.
    pub sme: bool,
    /// EAX bit 1: SEV supported.
    pub sev: bool,
    /// EAX bit 2: VM Page Flush MSR supported.
    pub vm_page_flush: bool,
    /// EAX bit 3: SEV-ES supported.
    pub sev_es: bool,
    /// EAX bit 4: SEV-SNP supported.
    pub sev_snp: bool,
    /// EBX bits 5:0: C-bit position in page-table entries.
    pub cbitpos: u8,
    /// EBX bits 11:6: physical address bit reduction with memory encryption.
    pub reduced_phys_bits: u8,
    /// ECX: number of encrypted guests supported = maximum SEV ASID.
    pub max_asid: u32,
    /// EDX: minimum ASID of a plain SEV guest; 1..EDX-1 are for SEV-ES/SNP.
    pub min_sev_asid: u32,
}

impl SevCpuid {
    /// The leaf number.
    pub const LEAF: u32 = 0x8000_001F;

    /// Decode the four registers of leaf 0x8000_001F.
    #[must_use]
    pub fn from_registers(eax: u32, ebx: u32, ecx: u32, edx: u32) -> Self {
        let bit = |n: u32| eax & (1 << n) != 0;
        Self {
            leaf_present: true,
            sme: bit(0),
            sev: bit(1),
            vm_page_flush: bit(2),
            sev_es: bit(3),
            sev_snp: bit(4),
            // Both masks keep 6 bits, so the narrowing is lossless.
            cbitpos: (ebx & 0x3F) as u8,
            reduced_phys_bits: ((ebx >> 6) & 0x3F) as u8,
            max_asid: ecx,
            min_sev_asid: edx,
        }
    }

    /// ASIDs KVM gives plain SEV guests: `[max(EDX, 1), ECX]`, or `None` when
    /// SEV is unsupported or the range is empty.
    #[must_use]
    pub fn sev_asids(&self) -> Option<RangeInclusive<u32>> {
        let first = self.min_sev_asid.max(1);
        (self.sev && first <= self.max_asid).then_some(first..=self.max_asid)
    }

    /// ASIDs KVM gives SEV-ES guests: `[1, EDX - 1]`, or `None` when SEV-ES is
    /// unsupported or EDX ≤ 1 (no room below the SEV range).
    #[must_use]
    pub fn es_asids(&self) -> Option<RangeInclusive<u32>> {
        let last = self.min_sev_asid.checked_sub(1)?.min(self.max_asid);
        (self.sev_es && last >= 1).then_some(1..=last)
    }
}

/// Read CPUID Fn8000_001F of the CPU this runs on. Under a hypervisor this is
/// what the hypervisor reports. A CPU without the leaf gives
/// `SevCpuid::default()` (`leaf_present` false).
#[cfg(target_arch = "x86_64")]
#[must_use]
pub fn cpuid_8000_001f() -> SevCpuid {
    use core::arch::x86_64::__cpuid;
    let max_extended = __cpuid(0x8000_0000).eax;
    if max_extended < SevCpuid::LEAF {
        return SevCpuid::default();
    }
    let r = __cpuid(SevCpuid::LEAF);
    SevCpuid::from_registers(r.eax, r.ebx, r.ecx, r.edx)
}

/// Not an x86-64 CPU: no SEV.
#[cfg(not(target_arch = "x86_64"))]
#[must_use]
pub fn cpuid_8000_001f() -> SevCpuid {
    SevCpuid::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_epyc_milan_like_values() {
        // A typical EPYC 7003 answer: SME|SEV|PageFlush|ES|SNP (+ higher
        // bits), C-bit 51, reduction 1, 509 ASIDs, SEV from ASID 100.
        let c = SevCpuid::from_registers(0x0001_b0ff, 0x0000_4073, 509, 100);
        assert!(c.leaf_present && c.sme && c.sev && c.vm_page_flush && c.sev_es && c.sev_snp);
        assert_eq!(c.cbitpos, 51);
        assert_eq!(c.reduced_phys_bits, 1);
        assert_eq!(c.max_asid, 509);
        assert_eq!(c.min_sev_asid, 100);
        assert_eq!(c.sev_asids(), Some(100..=509));
        assert_eq!(c.es_asids(), Some(1..=99));
    }

    #[test]
    fn decode_naples_like_values() {
        // EPYC 7001: SME|SEV only, C-bit 47, reduction 5, 15 ASIDs, min 1.
        let c = SevCpuid::from_registers(0x3, 47 | (5 << 6), 15, 1);
        assert!(c.sme && c.sev && !c.sev_es && !c.sev_snp && !c.vm_page_flush);
        assert_eq!(c.cbitpos, 47);
        assert_eq!(c.reduced_phys_bits, 5);
        assert_eq!(c.sev_asids(), Some(1..=15));
        assert_eq!(c.es_asids(), None);
    }

    #[test]
    fn no_sev_means_no_asids() {
        let c = SevCpuid::default();
        assert!(!c.leaf_present);
        assert_eq!(c.sev_asids(), None);
        assert_eq!(c.es_asids(), None);
        // SEV advertised but an empty range.
        let c = SevCpuid::from_registers(0x2, 47, 0, 1);
        assert_eq!(c.sev_asids(), None);
        // EDX = 0 (no split): SEV ASIDs from 1, no ES range.
        let c = SevCpuid::from_registers(0xA, 47, 10, 0);
        assert_eq!(c.sev_asids(), Some(1..=10));
        assert_eq!(c.es_asids(), None);
    }

    #[test]
    fn reading_this_cpu_is_consistent() {
        // Whatever this CPU (or hypervisor) reports, the decoded fields obey
        // the register masks, and an absent leaf decodes to all zero.
        let c = cpuid_8000_001f();
        assert!(c.cbitpos < 64 && c.reduced_phys_bits < 64);
        if !c.leaf_present {
            assert_eq!(c, SevCpuid::default());
        }
    }
}
