//! The GHCB MSR protocol (docs/protocol/snp.md#ghcb-msr-protocol): the
//! value the guest writes to the GHCB MSR decoded into a [`Request`], and
//! the responses encoded as the value it reads back. Plain functions, no
//! I/O.

/// The GHCB MSR (`MSR_AMD64_SEV_ES_GHCB`).
pub const GHCB_MSR: u32 = 0xC001_0130;
/// The SEV status MSR (`MSR_AMD64_SEV`), read-only.
pub const SEV_STATUS_MSR: u32 = 0xC001_0131;

/// The low 12 bits of the MSR value: the function code.
pub const INFO_MASK: u64 = 0xFFF;

/// SEV information request.
pub const SEV_INFO_REQ: u64 = 0x002;
/// SEV information response.
pub const SEV_INFO_RESP: u64 = 0x001;
/// CPUID request.
pub const CPUID_REQ: u64 = 0x004;
/// CPUID response.
pub const CPUID_RESP: u64 = 0x005;
/// GHCB GPA registration request (SNP).
pub const REG_GPA_REQ: u64 = 0x012;
/// GHCB GPA registration response.
pub const REG_GPA_RESP: u64 = 0x013;
/// Page-state change request (SNP).
pub const PSC_REQ: u64 = 0x014;
/// Page-state change response.
pub const PSC_RESP: u64 = 0x015;
/// Hypervisor features request.
pub const HV_FT_REQ: u64 = 0x080;
/// Hypervisor features response.
pub const HV_FT_RESP: u64 = 0x081;
/// Termination request.
pub const TERM_REQ: u64 = 0x100;

/// The lowest GHCB protocol version the host speaks.
pub const GHCB_VERSION_MIN: u64 = 1;
/// The highest GHCB protocol version the host speaks (KVM's default).
pub const GHCB_VERSION_MAX: u64 = 2;

/// Hypervisor feature: SEV-SNP.
pub const HV_FT_SNP: u64 = 1 << 0;
/// Hypervisor feature: SNP AP creation.
pub const HV_FT_SNP_AP_CREATION: u64 = 1 << 1;

/// The page-state change error KVM answers for an operation other than
/// private or shared (response bits 63:32).
pub const PSC_ERROR_GENERIC: u32 = 1;

/// Page states a page-state change asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageState {
    /// Operation 1: assign the page to the guest.
    Private,
    /// Operation 2: hand the page back to the host.
    Shared,
}

/// A CPUID register, as the MSR protocol numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuidReg {
    /// 0.
    Eax,
    /// 1.
    Ebx,
    /// 2.
    Ecx,
    /// 3.
    Edx,
}

impl CpuidReg {
    fn from_bits(v: u64) -> CpuidReg {
        match v & 3 {
            0 => CpuidReg::Eax,
            1 => CpuidReg::Ebx,
            2 => CpuidReg::Ecx,
            _ => CpuidReg::Edx,
        }
    }

    fn bits(self) -> u64 {
        match self {
            CpuidReg::Eax => 0,
            CpuidReg::Ebx => 1,
            CpuidReg::Ecx => 2,
            CpuidReg::Edx => 3,
        }
    }

    /// This register's value among `[eax, ebx, ecx, edx]`.
    pub fn pick(self, regs: [u32; 4]) -> u32 {
        regs[self.bits() as usize]
    }
}

/// What a value written to the GHCB MSR asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A page-aligned GPA: the guest's GHCB page, whose exit is handled now
    /// (docs/protocol/choices.md#u46).
    GhcbPage(u64),
    /// SEV information (0x002).
    SevInfo,
    /// One CPUID register of a leaf, sub-leaf 0 (0x004).
    Cpuid {
        /// The leaf.
        leaf: u32,
        /// Which register.
        reg: CpuidReg,
    },
    /// Register the GHCB at this GFN (0x012).
    RegisterGpa {
        /// Guest frame number.
        gfn: u64,
    },
    /// Change one page's state (0x014).
    PageStateChange {
        /// Guest frame number (40 bits).
        gfn: u64,
        /// The operation bits (55:52); 1 private, 2 shared, anything else is
        /// refused ([`Request::page_state`]).
        op: u8,
    },
    /// Hypervisor features (0x080).
    HvFeatures,
    /// Terminate the guest (0x100).
    Terminate {
        /// Reason set (bits 15:12).
        set: u8,
        /// Reason code (bits 23:16).
        code: u8,
    },
    /// A function code this host does not implement; KVM leaves the MSR as
    /// it is, so the guest sees its own request back.
    Unknown(u64),
}

impl Request {
    /// The page state a [`Request::PageStateChange`] operation asks for.
    pub fn page_state(op: u8) -> Option<PageState> {
        match op {
            1 => Some(PageState::Private),
            2 => Some(PageState::Shared),
            _ => None,
        }
    }
}

/// Decodes a value written to the GHCB MSR.
pub fn decode(value: u64) -> Request {
    match value & INFO_MASK {
        0 => Request::GhcbPage(value),
        SEV_INFO_REQ => Request::SevInfo,
        CPUID_REQ => Request::Cpuid {
            leaf: (value >> 32) as u32,
            reg: CpuidReg::from_bits(value >> 30),
        },
        REG_GPA_REQ => Request::RegisterGpa { gfn: value >> 12 },
        PSC_REQ => Request::PageStateChange {
            gfn: (value >> 12) & ((1 << 40) - 1),
            op: ((value >> 52) & 0xF) as u8,
        },
        HV_FT_REQ => Request::HvFeatures,
        TERM_REQ => Request::Terminate {
            set: ((value >> 12) & 0xF) as u8,
            code: ((value >> 16) & 0xFF) as u8,
        },
        other => Request::Unknown(other),
    }
}

/// The SEV information response: protocol versions and the C-bit position.
pub fn sev_info(c_bit: u8) -> u64 {
    (GHCB_VERSION_MAX << 48) | (GHCB_VERSION_MIN << 32) | (u64::from(c_bit) << 24) | SEV_INFO_RESP
}

/// The CPUID response carrying `value` of register `reg`.
pub fn cpuid(reg: CpuidReg, value: u32) -> u64 {
    (u64::from(value) << 32) | (reg.bits() << 30) | CPUID_RESP
}

/// The GHCB registration response for `gfn`.
pub fn register_gpa(gfn: u64) -> u64 {
    (gfn << 12) | REG_GPA_RESP
}

/// The page-state change response: `error` 0 for success.
pub fn page_state_change(error: u32) -> u64 {
    (u64::from(error) << 32) | PSC_RESP
}

/// The hypervisor features response.
pub fn hv_features(features: u64) -> u64 {
    (features << 12) | HV_FT_RESP
}

/// Encodes a termination request (what a guest writes).
pub fn terminate(set: u8, code: u8) -> u64 {
    (u64::from(set & 0xF) << 12) | (u64::from(code) << 16) | TERM_REQ
}

/// Encodes a CPUID request (what a guest writes).
pub fn cpuid_request(leaf: u32, reg: CpuidReg) -> u64 {
    (u64::from(leaf) << 32) | (reg.bits() << 30) | CPUID_REQ
}

/// Encodes a page-state change request (what a guest writes).
pub fn psc_request(gfn: u64, op: u8) -> u64 {
    (u64::from(op & 0xF) << 52) | ((gfn & ((1 << 40) - 1)) << 12) | PSC_REQ
}

/// The bits of the SEV status MSR: bit 0 SEV, bit 1 SEV-ES, bit 2 SEV-SNP.
pub mod sev_status {
    /// SEV is active.
    pub const SEV: u64 = 1 << 0;
    /// SEV-ES is active.
    pub const ES: u64 = 1 << 1;
    /// SEV-SNP is active.
    pub const SNP: u64 = 1 << 2;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_decodes() {
        assert_eq!(decode(0x2), Request::SevInfo);
        assert_eq!(decode(0x80), Request::HvFeatures);
        assert_eq!(decode(0x0080_9000), Request::GhcbPage(0x0080_9000));
        assert_eq!(decode(0), Request::GhcbPage(0));
        assert_eq!(
            decode(cpuid_request(0x8000_001F, CpuidReg::Ebx)),
            Request::Cpuid {
                leaf: 0x8000_001F,
                reg: CpuidReg::Ebx
            }
        );
        assert_eq!(
            decode((0x809 << 12) | REG_GPA_REQ),
            Request::RegisterGpa { gfn: 0x809 }
        );
        assert_eq!(
            decode(psc_request(0x809, 2)),
            Request::PageStateChange { gfn: 0x809, op: 2 }
        );
        assert_eq!(
            decode(terminate(1, 4)),
            Request::Terminate { set: 1, code: 4 }
        );
    }

    #[test]
    fn malformed_requests_decode_without_panicking() {
        // Unknown function codes, reserved PSC bits and operations.
        assert_eq!(decode(0x3), Request::Unknown(3));
        assert_eq!(decode(0xFFF), Request::Unknown(0xFFF));
        assert_eq!(decode(0x006), Request::Unknown(6));
        assert_eq!(
            decode(!0xFFF | PSC_REQ),
            Request::PageStateChange {
                gfn: (1 << 40) - 1,
                op: 0xF
            }
        );
        assert_eq!(Request::page_state(0), None);
        assert_eq!(Request::page_state(3), None);
        assert_eq!(Request::page_state(1), Some(PageState::Private));
        assert_eq!(Request::page_state(2), Some(PageState::Shared));
        // Every value decodes.
        for v in (0..64u64).map(|i| (1u64 << i) | (i & 0xFFF)) {
            let _ = decode(v);
        }
    }

    #[test]
    fn responses_encode_as_the_guest_reads_them() {
        assert_eq!(sev_info(51), 0x0002_0001_3300_0001);
        assert_eq!(
            cpuid(CpuidReg::Edx, 0xDEAD_BEEF),
            0xDEAD_BEEF_0000_0000 | (3 << 30) | 5
        );
        assert_eq!(register_gpa(0x809), 0x0080_9013);
        assert_eq!(page_state_change(0), 0x15);
        assert_eq!(page_state_change(PSC_ERROR_GENERIC), 0x1_0000_0015);
        assert_eq!(hv_features(HV_FT_SNP | HV_FT_SNP_AP_CREATION), 0x3081);
        assert_eq!(CpuidReg::Ecx.pick([1, 2, 3, 4]), 3);
    }
}
