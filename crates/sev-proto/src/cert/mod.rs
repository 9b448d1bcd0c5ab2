//! Certificates of the SEV chain of trust (docs/protocol/certificates.md).
//!
//! * [`sev`]: the 0x824-byte SEV certificate (OCA, CEK, PEK, PDH, GODH);
//! * [`ca`]: the AMD CA certificate (ARK, ASK);
//! * [`chain`]: blob layouts and chain verification to a pinned ARK;
//! * [`ecc`]: SEV encodings of P-384 keys and ECDSA signatures;
//! * [`AmdGeneration`]: the published AMD roots, identified by KEY_ID.
//!
//! The codes shared by all of them ([`Usage`], [`Algorithm`]) are defined here.

pub mod ca;
pub mod chain;
pub mod ecc;
mod roots;
pub mod sev;

#[cfg(test)]
pub(crate) mod testutil;

pub use roots::{AmdGeneration, RootError};

use std::fmt;

use sha2::{Digest as _, Sha256, Sha384};

/// An unknown usage or algorithm code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The key usage code is not one of table 4.2.
    #[error("unknown key usage code {0:#x}")]
    UnknownUsage(u32),
    /// The algorithm code is not one of table 4.2.
    #[error("unknown algorithm code {0:#x}")]
    UnknownAlgorithm(u32),
}

/// Key usage codes (docs/protocol/certificates.md#usage-and-algorithms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Usage {
    /// AMD Root Key (AMD CA format only).
    Ark,
    /// AMD SEV Signing Key (AMD CA format only).
    Ask,
    /// No usage: marks an empty signature slot.
    None,
    /// Owner Certificate Authority.
    Oca,
    /// Platform Endorsement Key.
    Pek,
    /// Platform Diffie-Hellman key (also the guest owner's GODH).
    Pdh,
    /// Chip Endorsement Key.
    Cek,
}

impl Usage {
    /// Every usage, in code order.
    pub const ALL: [Usage; 7] = [
        Usage::Ark,
        Usage::Ask,
        Usage::None,
        Usage::Oca,
        Usage::Pek,
        Usage::Pdh,
        Usage::Cek,
    ];

    /// The 32-bit code stored in certificates.
    pub const fn code(self) -> u32 {
        match self {
            Usage::Ark => 0x0000,
            Usage::Ask => 0x0013,
            Usage::None => 0x1000,
            Usage::Oca => 0x1001,
            Usage::Pek => 0x1002,
            Usage::Pdh => 0x1003,
            Usage::Cek => 0x1004,
        }
    }

    /// The usage for a code; unknown codes are an error.
    pub const fn from_code(code: u32) -> Result<Self, Error> {
        Ok(match code {
            0x0000 => Usage::Ark,
            0x0013 => Usage::Ask,
            0x1000 => Usage::None,
            0x1001 => Usage::Oca,
            0x1002 => Usage::Pek,
            0x1003 => Usage::Pdh,
            0x1004 => Usage::Cek,
            other => return Err(Error::UnknownUsage(other)),
        })
    }

    /// The short name used by the AMD tools ("ARK", "PEK", ...).
    pub const fn name(self) -> &'static str {
        match self {
            Usage::Ark => "ARK",
            Usage::Ask => "ASK",
            Usage::None => "NONE",
            Usage::Oca => "OCA",
            Usage::Pek => "PEK",
            Usage::Pdh => "PDH",
            Usage::Cek => "CEK",
        }
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<u32> for Usage {
    type Error = Error;
    fn try_from(code: u32) -> Result<Self, Error> {
        Usage::from_code(code)
    }
}

impl From<Usage> for u32 {
    fn from(usage: Usage) -> u32 {
        usage.code()
    }
}

/// Algorithm codes (docs/protocol/certificates.md#usage-and-algorithms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// No algorithm: marks an empty signature slot.
    None,
    /// RSASSA-PSS with SHA-256.
    RsaSha256,
    /// ECDSA with SHA-256.
    EcdsaSha256,
    /// ECDH key, SHA-256 family.
    EcdhSha256,
    /// RSASSA-PSS with SHA-384.
    RsaSha384,
    /// ECDSA with SHA-384.
    EcdsaSha384,
    /// ECDH key, SHA-384 family.
    EcdhSha384,
}

/// What kind of key an [`Algorithm`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// No key (empty slot).
    None,
    /// RSA (signatures are RSASSA-PSS).
    Rsa,
    /// ECDSA signing key.
    Ecdsa,
    /// ECDH key-agreement key (cannot sign).
    Ecdh,
}

/// The digest named by an algorithm code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-256 (32-byte digest).
    Sha256,
    /// SHA-384 (48-byte digest).
    Sha384,
}

impl HashAlgorithm {
    /// Digest length in bytes (also the RSA-PSS salt length used by SEV).
    pub const fn output_len(self) -> usize {
        match self {
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha384 => 48,
        }
    }

    /// Hashes `msg`.
    pub fn digest(self, msg: &[u8]) -> Vec<u8> {
        match self {
            HashAlgorithm::Sha256 => Sha256::digest(msg).to_vec(),
            HashAlgorithm::Sha384 => Sha384::digest(msg).to_vec(),
        }
    }
}

impl Algorithm {
    /// Every algorithm, in code order.
    pub const ALL: [Algorithm; 7] = [
        Algorithm::None,
        Algorithm::RsaSha256,
        Algorithm::EcdsaSha256,
        Algorithm::EcdhSha256,
        Algorithm::RsaSha384,
        Algorithm::EcdsaSha384,
        Algorithm::EcdhSha384,
    ];

    /// The 32-bit code stored in certificates.
    pub const fn code(self) -> u32 {
        match self {
            Algorithm::None => 0x000,
            Algorithm::RsaSha256 => 0x001,
            Algorithm::EcdsaSha256 => 0x002,
            Algorithm::EcdhSha256 => 0x003,
            Algorithm::RsaSha384 => 0x101,
            Algorithm::EcdsaSha384 => 0x102,
            Algorithm::EcdhSha384 => 0x103,
        }
    }

    /// The algorithm for a code; unknown codes are an error.
    pub const fn from_code(code: u32) -> Result<Self, Error> {
        Ok(match code {
            0x000 => Algorithm::None,
            0x001 => Algorithm::RsaSha256,
            0x002 => Algorithm::EcdsaSha256,
            0x003 => Algorithm::EcdhSha256,
            0x101 => Algorithm::RsaSha384,
            0x102 => Algorithm::EcdsaSha384,
            0x103 => Algorithm::EcdhSha384,
            other => return Err(Error::UnknownAlgorithm(other)),
        })
    }

    /// The name used by the AMD tools ("ECDSA_SHA256", ...).
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::None => "NONE",
            Algorithm::RsaSha256 => "RSA_SHA256",
            Algorithm::EcdsaSha256 => "ECDSA_SHA256",
            Algorithm::EcdhSha256 => "ECDH_SHA256",
            Algorithm::RsaSha384 => "RSA_SHA384",
            Algorithm::EcdsaSha384 => "ECDSA_SHA384",
            Algorithm::EcdhSha384 => "ECDH_SHA384",
        }
    }

    /// The kind of key this algorithm belongs to.
    pub const fn kind(self) -> KeyKind {
        match self {
            Algorithm::None => KeyKind::None,
            Algorithm::RsaSha256 | Algorithm::RsaSha384 => KeyKind::Rsa,
            Algorithm::EcdsaSha256 | Algorithm::EcdsaSha384 => KeyKind::Ecdsa,
            Algorithm::EcdhSha256 | Algorithm::EcdhSha384 => KeyKind::Ecdh,
        }
    }

    /// The digest this algorithm uses (`None` for [`Algorithm::None`]).
    pub const fn hash(self) -> Option<HashAlgorithm> {
        match self {
            Algorithm::None => None,
            Algorithm::RsaSha256 | Algorithm::EcdsaSha256 | Algorithm::EcdhSha256 => {
                Some(HashAlgorithm::Sha256)
            }
            Algorithm::RsaSha384 | Algorithm::EcdsaSha384 | Algorithm::EcdhSha384 => {
                Some(HashAlgorithm::Sha384)
            }
        }
    }

    /// Whether this algorithm makes signatures (RSA or ECDSA).
    pub const fn is_signature(self) -> bool {
        matches!(self.kind(), KeyKind::Rsa | KeyKind::Ecdsa)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<u32> for Algorithm {
    type Error = Error;
    fn try_from(code: u32) -> Result<Self, Error> {
        Algorithm::from_code(code)
    }
}

impl From<Algorithm> for u32 {
    fn from(algo: Algorithm) -> u32 {
        algo.code()
    }
}

/// Reads a little-endian u32 at `off`; `None` if out of bounds.
pub(crate) fn le32(bytes: &[u8], off: usize) -> Option<u32> {
    let b = bytes.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Offset (relative to `base`) of the first non-zero byte in `bytes`.
pub(crate) fn first_nonzero(bytes: &[u8], base: usize) -> Option<usize> {
    bytes.iter().position(|&b| b != 0).map(|i| base + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_codes_round_trip() {
        // docs/protocol/certificates.md#usage-and-algorithms table.
        let expect = [
            (Usage::Ark, 0x0, "ARK"),
            (Usage::Ask, 0x13, "ASK"),
            (Usage::None, 0x1000, "NONE"),
            (Usage::Oca, 0x1001, "OCA"),
            (Usage::Pek, 0x1002, "PEK"),
            (Usage::Pdh, 0x1003, "PDH"),
            (Usage::Cek, 0x1004, "CEK"),
        ];
        for (u, code, name) in expect {
            assert_eq!(u.code(), code);
            assert_eq!(u32::from(u), code);
            assert_eq!(Usage::try_from(code), Ok(u));
            assert_eq!(u.to_string(), name);
        }
        for bad in [1, 0x12, 0x14, 0xfff, 0x1005, 0x2000, u32::MAX] {
            assert_eq!(Usage::from_code(bad), Err(Error::UnknownUsage(bad)));
        }
    }

    #[test]
    fn algorithm_codes_round_trip() {
        let expect = [
            (Algorithm::None, 0x0, "NONE", KeyKind::None, None),
            (
                Algorithm::RsaSha256,
                0x1,
                "RSA_SHA256",
                KeyKind::Rsa,
                Some(HashAlgorithm::Sha256),
            ),
            (
                Algorithm::EcdsaSha256,
                0x2,
                "ECDSA_SHA256",
                KeyKind::Ecdsa,
                Some(HashAlgorithm::Sha256),
            ),
            (
                Algorithm::EcdhSha256,
                0x3,
                "ECDH_SHA256",
                KeyKind::Ecdh,
                Some(HashAlgorithm::Sha256),
            ),
            (
                Algorithm::RsaSha384,
                0x101,
                "RSA_SHA384",
                KeyKind::Rsa,
                Some(HashAlgorithm::Sha384),
            ),
            (
                Algorithm::EcdsaSha384,
                0x102,
                "ECDSA_SHA384",
                KeyKind::Ecdsa,
                Some(HashAlgorithm::Sha384),
            ),
            (
                Algorithm::EcdhSha384,
                0x103,
                "ECDH_SHA384",
                KeyKind::Ecdh,
                Some(HashAlgorithm::Sha384),
            ),
        ];
        for (a, code, name, kind, hash) in expect {
            assert_eq!(a.code(), code);
            assert_eq!(Algorithm::try_from(code), Ok(a));
            assert_eq!(u32::from(a), code);
            assert_eq!(a.to_string(), name);
            assert_eq!(a.kind(), kind);
            assert_eq!(a.hash(), hash);
        }
        for bad in [4, 0x100, 0x104, 0x201, u32::MAX] {
            assert_eq!(Algorithm::from_code(bad), Err(Error::UnknownAlgorithm(bad)));
        }
        assert_eq!(Algorithm::ALL.len(), 7);
        assert_eq!(Usage::ALL.len(), 7);
    }

    #[test]
    fn le32_bounds() {
        assert_eq!(le32(&[1, 2, 3, 4], 0), Some(0x04030201));
        assert_eq!(le32(&[1, 2, 3, 4], 1), None);
        assert_eq!(le32(&[], usize::MAX), None);
        assert_eq!(first_nonzero(&[0, 0, 5], 10), Some(12));
        assert_eq!(first_nonzero(&[0, 0], 10), None);
    }
}
