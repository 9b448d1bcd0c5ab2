//! The SNP guest policy (docs/protocol/snp.md#guest-policy).

use std::fmt;

use crate::abi::policy::ApiVersion;

/// Why a 64-bit value is not an SNP guest policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GuestPolicyError {
    /// Bit 17 must be one in every SNP policy.
    #[error("SNP guest policy 0x{0:x} has bit 17 clear; it is reserved and must be one")]
    MustBeOneClear(u64),
    /// One or more of the reserved bits 63:26 are set.
    #[error("SNP guest policy 0x{value:x} sets reserved bits (mask 0x{mask:x}); bits 63:26 must be zero")]
    ReservedBits {
        /// The whole value.
        value: u64,
        /// The reserved bits that are set.
        mask: u64,
    },
}

/// A 64-bit SNP guest policy, checked when it is made: bit 17 is set and
/// bits 63:26 are clear. Whether a platform can run it is the firmware's
/// question (SNP_LAUNCH_START), not this type's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuestPolicy(u64);

impl GuestPolicy {
    /// Bits 7:0, the minimum ABI minor version.
    pub const ABI_MINOR_MASK: u64 = 0xff;
    /// Bits 15:8, the minimum ABI major version.
    pub const ABI_MAJOR_MASK: u64 = 0xff00;
    /// SMT may be enabled on the host.
    pub const SMT: u64 = 1 << 16;
    /// Reserved, must be one.
    pub const MUST_BE_ONE: u64 = 1 << 17;
    /// Migration through a migration agent is allowed.
    pub const MIGRATE_MA: u64 = 1 << 18;
    /// SNP_DBG_DECRYPT/ENCRYPT are allowed.
    pub const DEBUG: u64 = 1 << 19;
    /// Activation on one socket only.
    pub const SINGLE_SOCKET: u64 = 1 << 20;
    /// CXL-attached memory may back the guest.
    pub const CXL_ALLOW: u64 = 1 << 21;
    /// AES-256-XTS memory encryption is required.
    pub const MEM_AES_256_XTS: u64 = 1 << 22;
    /// RAPL must be disabled on the host.
    pub const RAPL_DIS: u64 = 1 << 23;
    /// Ciphertext hiding must be enabled.
    pub const CIPHERTEXT_HIDING: u64 = 1 << 24;
    /// Page swapping is forbidden.
    pub const PAGE_SWAP_DISABLE: u64 = 1 << 25;
    /// Bits 63:26, reserved.
    pub const RESERVED_MASK: u64 = !((1 << 26) - 1);
    /// QEMU's default `policy` of a `sev-snp-guest` object: SMT and the
    /// must-be-one bit, ABI 0.0.
    pub const QEMU_DEFAULT: GuestPolicy = GuestPolicy(Self::SMT | Self::MUST_BE_ONE);

    /// Checks `value` (see the type's documentation).
    pub fn new(value: u64) -> Result<Self, GuestPolicyError> {
        let mask = value & Self::RESERVED_MASK;
        if mask != 0 {
            return Err(GuestPolicyError::ReservedBits { value, mask });
        }
        if value & Self::MUST_BE_ONE == 0 {
            return Err(GuestPolicyError::MustBeOneClear(value));
        }
        Ok(GuestPolicy(value))
    }

    /// The 64-bit value.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether every bit of `flag` (one of the constants) is set.
    pub const fn has(self, flag: u64) -> bool {
        self.0 & flag == flag
    }

    /// The minimum firmware API version the guest accepts.
    pub const fn abi_minimum(self) -> ApiVersion {
        ApiVersion::new((self.0 >> 8) as u8, self.0 as u8)
    }
}

impl fmt::Display for GuestPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qemu_default_is_valid_and_reads_back() {
        let p = GuestPolicy::new(0x30000).unwrap();
        assert_eq!(p, GuestPolicy::QEMU_DEFAULT);
        assert!(p.has(GuestPolicy::SMT));
        assert!(!p.has(GuestPolicy::DEBUG));
        assert_eq!(p.abi_minimum(), ApiVersion::new(0, 0));
        assert_eq!(p.to_string(), "0x30000");
        let p = GuestPolicy::new(0x3_1f_0a | GuestPolicy::DEBUG).unwrap();
        assert_eq!(p.abi_minimum(), ApiVersion::new(0x1f, 0x0a));
        assert!(p.has(GuestPolicy::DEBUG | GuestPolicy::SMT));
    }

    #[test]
    fn bit_17_and_the_reserved_bits_are_checked() {
        assert_eq!(
            GuestPolicy::new(0x10000),
            Err(GuestPolicyError::MustBeOneClear(0x10000))
        );
        for bit in 26..64 {
            let value = 0x30000 | (1u64 << bit);
            assert_eq!(
                GuestPolicy::new(value),
                Err(GuestPolicyError::ReservedBits {
                    value,
                    mask: 1 << bit
                })
            );
        }
        // Bits 21..=25 are defined (newer firmware), not reserved.
        assert!(GuestPolicy::new(0x30000 | 0x3e0_0000).is_ok());
        let err = GuestPolicy::new(1 << 40).unwrap_err().to_string();
        assert!(err.contains("bits 63:26"), "{err}");
    }
}
