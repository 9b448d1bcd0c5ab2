//! The guest policy (docs/protocol/abi.md#policy) and firmware API versions.

use std::fmt;

/// A firmware API version `major.minor` (PLATFORM_STATUS bytes 0 and 1, or
/// the minimum encoded in a policy). Ordered by major, then minor.
///
/// `Display` prints `major.minor` in decimal, e.g. `1.40`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ApiVersion {
    /// API_MAJOR.
    pub major: u8,
    /// API_MINOR.
    pub minor: u8,
}

impl ApiVersion {
    /// A version from its two bytes.
    pub const fn new(major: u8, minor: u8) -> Self {
        ApiVersion { major, minor }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Why a policy string was refused by [`Policy::parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Nothing but whitespace was given.
    #[error("empty guest policy: expected a 32-bit number such as 0x1 or 3")]
    Empty,
    /// The text is not a `0x` hexadecimal or decimal number.
    #[error(
        "invalid guest policy {text:?}: expected a 32-bit number in hexadecimal (0x...) or decimal"
    )]
    NotANumber {
        /// The refused text (truncated to 64 characters).
        text: String,
    },
    /// The number does not fit in 32 bits.
    #[error(
        "guest policy {text:?} is out of range: a policy is a 32-bit value (at most 0xffffffff)"
    )]
    OutOfRange {
        /// The refused text (truncated to 64 characters).
        text: String,
    },
    /// One or more of the reserved bits 15:6 are set.
    #[error(
        "guest policy 0x{value:08x} sets reserved bit(s) {} (mask 0x{mask:04x}); bits 15:6 must be 0",
        list_bits(.mask)
    )]
    ReservedBits {
        /// The whole policy value.
        value: u32,
        /// The reserved bits that are set (`value & Policy::RESERVED_MASK`).
        mask: u32,
    },
}

fn list_bits(mask: &u32) -> String {
    let mask = *mask;
    (0..32)
        .filter(|b| mask & (1 << b) != 0)
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A 32-bit SEV guest policy (docs/protocol/abi.md#policy): flag bits 5:0, reserved
/// bits 15:6, minimum API major in bits 23:16 and minor in bits 31:24.
///
/// Any `u32` can be held (a policy reported by firmware is shown as it is);
/// [`Policy::parse`] refuses reserved bits, as user input must.
///
/// `Display` prints e.g. `0x00000003 (NODBG|NOKS, api >= 0.0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Policy(u32);

impl Policy {
    /// Bit 0: debugging (DBG_DECRYPT/DBG_ENCRYPT) is refused.
    pub const NODBG: u32 = 1 << 0;
    /// Bit 1: the memory encryption key must not be shared with another guest.
    pub const NOKS: u32 = 1 << 1;
    /// Bit 2: the guest must run as SEV-ES.
    pub const ES: u32 = 1 << 2;
    /// Bit 3: SEND_START is refused.
    pub const NOSEND: u32 = 1 << 3;
    /// Bit 4: the guest may only be sent within its domain (same OCA).
    pub const DOMAIN: u32 = 1 << 4;
    /// Bit 5: the guest may only be sent to a genuine SEV platform.
    pub const SEV: u32 = 1 << 5;
    /// All flag bits (5:0).
    pub const FLAGS_MASK: u32 = 0x3F;
    /// Reserved bits 15:6, which must be zero.
    pub const RESERVED_MASK: u32 = 0xFFC0;
    /// Bit position of API_MAJOR.
    pub const API_MAJOR_SHIFT: u32 = 16;
    /// Bit position of API_MINOR.
    pub const API_MINOR_SHIFT: u32 = 24;

    /// QEMU's default policy, NODBG (0x1).
    pub const QEMU_DEFAULT: Policy = Policy(Self::NODBG);

    const FLAG_NAMES: [(u32, &'static str); 6] = [
        (Self::NODBG, "NODBG"),
        (Self::NOKS, "NOKS"),
        (Self::ES, "ES"),
        (Self::NOSEND, "NOSEND"),
        (Self::DOMAIN, "DOMAIN"),
        (Self::SEV, "SEV"),
    ];

    /// A policy from its raw value (not checked).
    pub const fn from_bits(bits: u32) -> Self {
        Policy(bits)
    }

    /// A policy from flag bits (masked to 5:0) and a minimum API version.
    pub const fn new(flags: u32, min_api: ApiVersion) -> Self {
        Policy(
            (flags & Self::FLAGS_MASK)
                | ((min_api.major as u32) << Self::API_MAJOR_SHIFT)
                | ((min_api.minor as u32) << Self::API_MINOR_SHIFT),
        )
    }

    /// The raw value.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `flag` is set.
    pub const fn has(self, flag: u32) -> bool {
        self.0 & flag == flag
    }

    /// NODBG (bit 0).
    pub const fn nodbg(self) -> bool {
        self.has(Self::NODBG)
    }

    /// NOKS (bit 1).
    pub const fn noks(self) -> bool {
        self.has(Self::NOKS)
    }

    /// ES (bit 2).
    pub const fn es(self) -> bool {
        self.has(Self::ES)
    }

    /// NOSEND (bit 3).
    pub const fn nosend(self) -> bool {
        self.has(Self::NOSEND)
    }

    /// DOMAIN (bit 4).
    pub const fn domain(self) -> bool {
        self.has(Self::DOMAIN)
    }

    /// SEV (bit 5).
    pub const fn sev(self) -> bool {
        self.has(Self::SEV)
    }

    /// Minimum API major version (bits 23:16).
    pub const fn api_major(self) -> u8 {
        (self.0 >> Self::API_MAJOR_SHIFT) as u8
    }

    /// Minimum API minor version (bits 31:24).
    pub const fn api_minor(self) -> u8 {
        (self.0 >> Self::API_MINOR_SHIFT) as u8
    }

    /// The minimum firmware API version the guest may run on / be sent to.
    pub const fn min_api(self) -> ApiVersion {
        ApiVersion::new(self.api_major(), self.api_minor())
    }

    /// The reserved bits 15:6 that are set (0 for a valid policy).
    pub const fn reserved_bits(self) -> u32 {
        self.0 & Self::RESERVED_MASK
    }

    /// The in-memory layout: byte 0 = flags 7:0, byte 1 = flags 15:8,
    /// byte 2 = API_MAJOR, byte 3 = API_MINOR.
    pub const fn to_le_bytes(self) -> [u8; 4] {
        self.0.to_le_bytes()
    }

    /// The policy stored in 4 little-endian bytes.
    pub const fn from_le_bytes(bytes: [u8; 4]) -> Self {
        Policy(u32::from_le_bytes(bytes))
    }

    /// Parses user input (QEMU's `policy=` property, CLI options):
    /// `0x`/`0X` followed by hexadecimal digits, or decimal digits;
    /// surrounding whitespace is ignored. Refuses anything else, values
    /// above 32 bits, and values with reserved bits 15:6 set.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(PolicyError::Empty);
        }
        let shown = || t.chars().take(64).collect::<String>();
        let (digits, radix) = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            Some(hex) => (hex, 16),
            None => (t, 10),
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return Err(PolicyError::NotANumber { text: shown() });
        }
        // Only digits remain, so the one possible failure is overflow.
        let value = u32::from_str_radix(digits, radix)
            .map_err(|_| PolicyError::OutOfRange { text: shown() })?;
        let policy = Policy(value);
        if policy.reserved_bits() != 0 {
            return Err(PolicyError::ReservedBits {
                value,
                mask: policy.reserved_bits(),
            });
        }
        Ok(policy)
    }
}

impl std::str::FromStr for Policy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Policy::parse(s)
    }
}

impl From<Policy> for u32 {
    fn from(p: Policy) -> u32 {
        p.0
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08x} (", self.0)?;
        let mut first = true;
        for (bit, name) in Self::FLAG_NAMES {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if self.reserved_bits() != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "RESERVED=0x{:04x}", self.reserved_bits())?;
            first = false;
        }
        if first {
            f.write_str("no flags")?;
        }
        write!(f, ", api >= {})", self.min_api())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/protocol/abi.md#policy: bit positions and byte layout.
    #[test]
    fn flag_bits_and_layout() {
        assert_eq!(Policy::NODBG, 0x01);
        assert_eq!(Policy::NOKS, 0x02);
        assert_eq!(Policy::ES, 0x04);
        assert_eq!(Policy::NOSEND, 0x08);
        assert_eq!(Policy::DOMAIN, 0x10);
        assert_eq!(Policy::SEV, 0x20);
        let p = Policy::from_bits(0x2817_0037);
        assert!(p.nodbg() && p.noks() && p.es() && !p.nosend() && p.domain() && p.sev());
        assert_eq!(p.api_major(), 0x17);
        assert_eq!(p.api_minor(), 0x28);
        assert_eq!(p.min_api(), ApiVersion::new(0x17, 0x28));
        assert_eq!(p.to_le_bytes(), [0x37, 0x00, 0x17, 0x28]);
        assert_eq!(Policy::from_le_bytes([0x37, 0x00, 0x17, 0x28]), p);
        assert_eq!(p.reserved_bits(), 0);
        assert_eq!(Policy::new(0x37, ApiVersion::new(0x17, 0x28)), p);
        assert_eq!(Policy::new(0xFFFF, ApiVersion::default()).bits(), 0x3F);
        assert_eq!(Policy::from_bits(0x0000_ffc0).reserved_bits(), 0xffc0);
        for (flag, get) in [
            (Policy::NODBG, Policy::nodbg as fn(Policy) -> bool),
            (Policy::NOKS, Policy::noks),
            (Policy::ES, Policy::es),
            (Policy::NOSEND, Policy::nosend),
            (Policy::DOMAIN, Policy::domain),
            (Policy::SEV, Policy::sev),
        ] {
            assert!(get(Policy::from_bits(flag)));
            assert!(!get(Policy::from_bits(Policy::FLAGS_MASK & !flag)));
        }
    }

    #[test]
    fn parse_accepts_hex_and_decimal() {
        assert_eq!(Policy::parse("0x1").unwrap().bits(), 1);
        assert_eq!(Policy::parse("0X37").unwrap().bits(), 0x37);
        assert_eq!(Policy::parse("3").unwrap().bits(), 3);
        assert_eq!(Policy::parse(" 5\n").unwrap().bits(), 5);
        assert_eq!(Policy::parse("0").unwrap().bits(), 0);
        assert_eq!(Policy::parse("0xffff003f").unwrap().bits(), 0xffff_003f);
        assert_eq!(Policy::parse("4294901823").unwrap().bits(), 0xffff_003f);
        assert_eq!("0x07".parse::<Policy>().unwrap().bits(), 7);
    }

    #[test]
    fn parse_refuses_garbage_with_clear_errors() {
        assert_eq!(Policy::parse("  "), Err(PolicyError::Empty));
        for bad in [
            "0x", "x1", "-1", "+1", "1.0", "0b11", "0x1g", "abc", "3 4", "0x 1",
        ] {
            assert!(
                matches!(Policy::parse(bad), Err(PolicyError::NotANumber { .. })),
                "{bad:?}"
            );
        }
        for big in ["0x100000000", "4294967296", "99999999999999999999999"] {
            let e = Policy::parse(big).unwrap_err();
            assert!(matches!(e, PolicyError::OutOfRange { .. }), "{big:?}");
            assert!(e.to_string().contains("out of range"));
        }
    }

    #[test]
    fn parse_refuses_reserved_bits_naming_them() {
        let e = Policy::parse("0x241").unwrap_err();
        assert_eq!(
            e,
            PolicyError::ReservedBits {
                value: 0x241,
                mask: 0x240
            }
        );
        assert_eq!(
            e.to_string(),
            "guest policy 0x00000241 sets reserved bit(s) 6, 9 (mask 0x0240); bits 15:6 must be 0"
        );
        assert!(Policy::parse("32768").is_err()); // bit 15
        assert!(Policy::parse("0x3f").is_ok());
    }

    #[test]
    fn display_lists_flags_and_minimum_api() {
        assert_eq!(
            Policy::from_bits(3).to_string(),
            "0x00000003 (NODBG|NOKS, api >= 0.0)"
        );
        assert_eq!(
            Policy::from_bits(0).to_string(),
            "0x00000000 (no flags, api >= 0.0)"
        );
        assert_eq!(
            Policy::from_bits(0x2801_0037).to_string(),
            "0x28010037 (NODBG|NOKS|ES|DOMAIN|SEV, api >= 1.40)"
        );
        assert_eq!(
            Policy::from_bits(0x0000_0048).to_string(),
            "0x00000048 (NOSEND|RESERVED=0x0040, api >= 0.0)"
        );
    }

    #[test]
    fn api_versions_order_by_major_then_minor() {
        assert!(ApiVersion::new(0, 17) > ApiVersion::new(0, 16));
        assert!(ApiVersion::new(1, 0) > ApiVersion::new(0, 255));
        assert!(ApiVersion::new(1, 49) > ApiVersion::new(1, 40));
        assert_eq!(ApiVersion::new(1, 40).to_string(), "1.40");
    }
}
