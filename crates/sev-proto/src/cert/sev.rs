//! The SEV certificate (docs/protocol/certificates.md#sev-certificate): 0x824 bytes, used for the
//! OCA, CEK, PEK, PDH and the guest owner's GODH.
//!
//! Decoding is strict, so that every byte of a certificate matters: a
//! certificate either fails to decode, or re-encodes to exactly the same
//! bytes (so a change to any byte changes either the signed body or a
//! signature).
//!
//! * VERSION must be 1; every usage, algorithm and curve code must be known.
//! * The reserved bytes of the signed body (0x006-0x007, and the 880 bytes
//!   after an EC key, 0x0A4-0x413) are kept as received, zero or not
//!   ([`Certificate::reserved_nonzero`] counts the non-zero ones), and the
//!   signatures are verified over them. Real platforms hold such
//!   certificates: an owner tool made the OCA of a real Genoa host with 335
//!   non-zero bytes in its key area's reserved part, self-signed over them;
//!   the firmware accepted it at PEK_CERT_IMPORT and exports it unchanged
//!   (tested in `crates/sev-tools/tests/real_hosts.rs`).
//!   Certificates this crate makes ([`Certificate::new_ec`],
//!   [`Certificate::new_rsa`], [`Certificate::godh`]) have them zero.
//! * An empty signature slot is usage 0x1000, algorithm 0 and 512 zero bytes;
//!   a slot with only one of the two markers, or with data, is refused.
//! * ECDSA slots: R and S with zero padding beyond 48 bytes, in `[1, n-1]`,
//!   and the 368 bytes after them zero.
//! * RSA slots are stored raw at decode time, because how many bytes a
//!   signature uses depends on the signer's modulus, which is only known when
//!   verifying. Verification then requires every byte beyond the signer's
//!   modulus width to be zero ([`super::ca::rsa_pss_verify`]).

use std::fmt;

use p384::ecdsa::{Signature as EcdsaSignature, SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};

use super::ecc::{self, Curve, EcPublicKey};
use super::{ca, le32, Algorithm, KeyKind, Usage};

/// Length of a SEV certificate.
pub const CERT_LEN: usize = 0x824;
/// Length of the signed part (VERSION through PUB_KEY).
pub const BODY_LEN: usize = 0x414;
/// Length of the PUB_KEY field.
pub const PUB_KEY_LEN: usize = 0x404;
/// Length of a signature slot's data.
pub const SIG_LEN: usize = 0x200;

const OFF_PUB_KEY: usize = 0x010;
const OFF_SIG: [usize; 2] = [0x414, 0x61C];
const RSA_FIELD: usize = 512;

/// One of the two signature slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// SIG1 at 0x414.
    Sig1,
    /// SIG2 at 0x61C.
    Sig2,
}

impl Slot {
    /// Both slots, in order.
    pub const BOTH: [Slot; 2] = [Slot::Sig1, Slot::Sig2];

    const fn index(self) -> usize {
        match self {
            Slot::Sig1 => 0,
            Slot::Sig2 => 1,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::Sig1 => "SIG1",
            Slot::Sig2 => "SIG2",
        })
    }
}

/// Errors of SEV certificates.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input is not 0x824 bytes.
    #[error("SEV certificate is {0} bytes, expected 2084 (0x824)")]
    Length(usize),
    /// VERSION is not 1.
    #[error("SEV certificate version {0}, only version 1 is supported")]
    Version(u32),
    /// A byte of the zero padding after an RSA key's modulus is non-zero
    /// (the reserved bytes of the body are kept as received instead).
    #[error("SEV certificate reserved byte at offset {offset:#x} is non-zero")]
    Reserved {
        /// Offset inside the certificate.
        offset: usize,
    },
    /// A usage or algorithm code is unknown.
    #[error("SEV certificate field {field}")]
    Code {
        /// Which field.
        field: &'static str,
        /// The unknown code.
        #[source]
        source: super::Error,
    },
    /// The key usage cannot appear on a SEV certificate's key.
    #[error("SEV certificate key usage {0} is not valid for a SEV certificate")]
    KeyUsage(Usage),
    /// The key algorithm is NONE.
    #[error("SEV certificate has no key algorithm")]
    NoKeyAlgorithm,
    /// The EC public key is invalid.
    #[error("SEV certificate EC public key")]
    EcKey(#[source] ecc::Error),
    /// The RSA public key is invalid.
    #[error("SEV certificate RSA public key: {reason}")]
    RsaKey {
        /// What is wrong.
        reason: String,
    },
    /// A signature slot has only one of the empty markers (usage 0x1000,
    /// algorithm 0), or is empty but has data.
    #[error("{slot}: malformed empty slot (usage {usage}, algorithm {algorithm}, data {data})")]
    EmptySlot {
        /// The slot.
        slot: Slot,
        /// Its usage.
        usage: Usage,
        /// Its algorithm.
        algorithm: Algorithm,
        /// "zero" or "non-zero".
        data: &'static str,
    },
    /// The slot's algorithm is not a signature algorithm.
    #[error("{slot}: algorithm {algorithm} is not a signature algorithm")]
    SlotAlgorithm {
        /// The slot.
        slot: Slot,
        /// Its algorithm.
        algorithm: Algorithm,
    },
    /// The slot's ECDSA signature is malformed.
    #[error("{slot}: ECDSA signature")]
    SlotEcdsa {
        /// The slot.
        slot: Slot,
        /// Why.
        #[source]
        source: ecc::Error,
    },
    /// Bytes after an ECDSA signature's R and S are non-zero.
    #[error("{slot}: non-zero byte at offset {offset:#x} after the ECDSA signature")]
    SlotReserved {
        /// The slot.
        slot: Slot,
        /// Offset inside the certificate.
        offset: usize,
    },
    /// An RSA signature to store is longer than the slot.
    #[error("{slot}: RSA signature of {len} bytes does not fit the 512-byte slot")]
    SlotRsaLength {
        /// The slot.
        slot: Slot,
        /// Its length.
        len: usize,
    },
    /// Usage NONE cannot sign.
    #[error("usage {0} cannot sign a certificate")]
    SignerUsage(Usage),
    /// The algorithm given for a signature is of the wrong kind.
    #[error("algorithm {algorithm} cannot be used to {what}")]
    Algorithm {
        /// The algorithm.
        algorithm: Algorithm,
        /// What was attempted.
        what: &'static str,
    },
    /// ECDSA signing failed.
    #[error("ECDSA signing")]
    Sign(#[source] ecc::Error),
    /// RSA signing failed.
    #[error("RSA-PSS signing")]
    RsaSign(#[source] ca::Error),
    /// The would-be signer's key is not an ECDSA P-384 signing key.
    #[error("the {usage} certificate (algorithm {algorithm}) cannot verify signatures")]
    SignerNotSigningKey {
        /// The signer's usage.
        usage: Usage,
        /// The signer's key algorithm.
        algorithm: Algorithm,
    },
    /// The signer's key is unusable (e.g. not P-384).
    #[error("the {usage} certificate's key")]
    SignerKey {
        /// The signer's usage.
        usage: Usage,
        /// Why.
        #[source]
        source: ecc::Error,
    },
    /// No slot names the signer's usage.
    #[error("no signature slot carries the signer's usage {0}")]
    NoSlotForSigner(Usage),
    /// The slot with the signer's usage holds a signature of another kind.
    #[error("{slot}: signed by {signer} with algorithm {algorithm}, which does not match the signer's key type")]
    SlotKindMismatch {
        /// The slot.
        slot: Slot,
        /// The signer's usage.
        signer: Usage,
        /// The slot's algorithm.
        algorithm: Algorithm,
    },
    /// The ECDSA signature in the slot does not verify.
    #[error("{slot}: the {signer} signature does not verify")]
    BadSignature {
        /// The slot.
        slot: Slot,
        /// The signer's usage.
        signer: Usage,
    },
    /// The RSA signature in the slot does not verify.
    #[error("{slot}: the {signer} RSA-PSS signature")]
    BadRsaSignature {
        /// The slot.
        slot: Slot,
        /// The signer's usage.
        signer: Usage,
        /// Why.
        #[source]
        source: ca::Error,
    },
    /// A certificate expected to be of one usage has another.
    #[error("certificate usage is {found}, expected {expected}")]
    WrongUsage {
        /// Expected usage.
        expected: Usage,
        /// Found usage.
        found: Usage,
    },
    /// A certificate has an algorithm of the wrong kind.
    #[error("certificate algorithm is {found}, expected {expected}")]
    WrongAlgorithm {
        /// Expected algorithm family.
        expected: &'static str,
        /// Found algorithm.
        found: Algorithm,
    },
    /// The certificate's key is RSA where an EC key is needed.
    #[error("certificate has an RSA key, expected an EC P-384 key")]
    NotEcKey,
}

/// The public key of a SEV certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// EC key (ECDSA or ECDH algorithms).
    Ec(EcPublicKey),
    /// RSA key (RSA algorithms). Never seen on real hardware; supported for
    /// decoding and encoding.
    Rsa {
        /// MODULUS_SIZE in bits (2048 or 4096).
        modulus_bits: u32,
        /// The key.
        key: RsaPublicKey,
    },
}

/// The content of a signature slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureSlot {
    /// Usage NONE, algorithm NONE, no data.
    Empty,
    /// An ECDSA signature.
    Ecdsa {
        /// The signer's usage.
        usage: Usage,
        /// `EcdsaSha256` or `EcdsaSha384`.
        algorithm: Algorithm,
        /// R and S.
        signature: EcdsaSignature,
    },
    /// An RSA-PSS signature, kept as stored (little-endian, zero-padded).
    Rsa {
        /// The signer's usage.
        usage: Usage,
        /// `RsaSha256` or `RsaSha384`.
        algorithm: Algorithm,
        /// The 512-byte field.
        signature: Box<[u8; SIG_LEN]>,
    },
}

impl SignatureSlot {
    /// The signer's usage ([`Usage::None`] when empty).
    pub fn usage(&self) -> Usage {
        match self {
            SignatureSlot::Empty => Usage::None,
            SignatureSlot::Ecdsa { usage, .. } | SignatureSlot::Rsa { usage, .. } => *usage,
        }
    }

    /// The slot's algorithm ([`Algorithm::None`] when empty).
    pub fn algorithm(&self) -> Algorithm {
        match self {
            SignatureSlot::Empty => Algorithm::None,
            SignatureSlot::Ecdsa { algorithm, .. } | SignatureSlot::Rsa { algorithm, .. } => {
                *algorithm
            }
        }
    }

    /// Whether the slot is empty.
    pub fn is_empty(&self) -> bool {
        matches!(self, SignatureSlot::Empty)
    }

    fn decode(slot: Slot, bytes: &[u8], base: usize) -> Result<Self, Error> {
        let code = |off: usize| le32(bytes, off).unwrap_or(u32::MAX);
        let usage = Usage::from_code(code(0)).map_err(|source| Error::Code {
            field: "SIG_USAGE",
            source,
        })?;
        let algorithm = Algorithm::from_code(code(4)).map_err(|source| Error::Code {
            field: "SIG_ALGO",
            source,
        })?;
        let data = bytes
            .get(8..8 + SIG_LEN)
            .ok_or(Error::Length(bytes.len()))?;
        if usage == Usage::None || algorithm == Algorithm::None {
            let nonzero = data.iter().any(|&b| b != 0);
            if usage == Usage::None && algorithm == Algorithm::None && !nonzero {
                return Ok(SignatureSlot::Empty);
            }
            return Err(Error::EmptySlot {
                slot,
                usage,
                algorithm,
                data: if nonzero { "non-zero" } else { "zero" },
            });
        }
        match algorithm.kind() {
            KeyKind::Ecdsa => {
                let (rs, rest) = data.split_at(ecc::SIGNATURE_LEN);
                let signature = ecc::decode_signature(rs)
                    .map_err(|source| Error::SlotEcdsa { slot, source })?;
                if let Some(offset) = super::first_nonzero(rest, base + 8 + ecc::SIGNATURE_LEN) {
                    return Err(Error::SlotReserved { slot, offset });
                }
                Ok(SignatureSlot::Ecdsa {
                    usage,
                    algorithm,
                    signature,
                })
            }
            KeyKind::Rsa => {
                let mut signature = Box::new([0u8; SIG_LEN]);
                signature.copy_from_slice(data);
                Ok(SignatureSlot::Rsa {
                    usage,
                    algorithm,
                    signature,
                })
            }
            KeyKind::None | KeyKind::Ecdh => Err(Error::SlotAlgorithm { slot, algorithm }),
        }
    }

    fn encode_into(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.usage().code().to_le_bytes());
        out[4..8].copy_from_slice(&self.algorithm().code().to_le_bytes());
        let data = &mut out[8..8 + SIG_LEN];
        data.fill(0);
        match self {
            SignatureSlot::Empty => {}
            SignatureSlot::Ecdsa { signature, .. } => {
                data[..ecc::SIGNATURE_LEN].copy_from_slice(&ecc::encode_signature(signature));
            }
            SignatureSlot::Rsa { signature, .. } => data.copy_from_slice(&signature[..]),
        }
    }
}

/// Length of the reserved part of an EC key's PUB_KEY field (0x0A4-0x413).
const EC_RESERVED_LEN: usize = PUB_KEY_LEN - ecc::PUBLIC_KEY_LEN;

/// The reserved bytes of a certificate's signed body, as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Reserved {
    /// Bytes 0x006-0x007.
    header: [u8; 2],
    /// Bytes 0x0A4-0x413 after an EC key; `None` when all zero (always for
    /// an RSA key, whose padding is checked to be zero instead).
    ec_tail: Option<Box<[u8; EC_RESERVED_LEN]>>,
}

impl Reserved {
    fn nonzero(&self) -> usize {
        let tail = self.ec_tail.as_deref().map_or(&[][..], |t| &t[..]);
        self.header.iter().chain(tail).filter(|b| **b != 0).count()
    }
}

/// A SEV certificate (always VERSION 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    api_major: u8,
    api_minor: u8,
    usage: Usage,
    algorithm: Algorithm,
    key: PublicKey,
    sigs: [SignatureSlot; 2],
    reserved: Reserved,
}

fn check_key_usage(usage: Usage) -> Result<(), Error> {
    match usage {
        Usage::Oca | Usage::Pek | Usage::Pdh | Usage::Cek => Ok(()),
        other => Err(Error::KeyUsage(other)),
    }
}

fn rsa_reason(e: impl fmt::Display) -> Error {
    Error::RsaKey {
        reason: e.to_string(),
    }
}

impl Certificate {
    /// Decodes a certificate (exactly 0x824 bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != CERT_LEN {
            return Err(Error::Length(bytes.len()));
        }
        let code = |off: usize| le32(bytes, off).unwrap_or(u32::MAX);
        let version = code(0);
        if version != 1 {
            return Err(Error::Version(version));
        }
        let mut reserved = Reserved {
            header: [bytes[6], bytes[7]],
            ec_tail: None,
        };
        let usage = Usage::from_code(code(8)).map_err(|source| Error::Code {
            field: "PUB_KEY_USAGE",
            source,
        })?;
        check_key_usage(usage)?;
        let algorithm = Algorithm::from_code(code(0xC)).map_err(|source| Error::Code {
            field: "PUB_KEY_ALGO",
            source,
        })?;
        let mut pub_key = [0u8; PUB_KEY_LEN];
        pub_key.copy_from_slice(&bytes[OFF_PUB_KEY..BODY_LEN]);
        let key = match algorithm.kind() {
            KeyKind::None => return Err(Error::NoKeyAlgorithm),
            KeyKind::Ecdsa | KeyKind::Ecdh => {
                let (ec, tail) = pub_key.split_at(ecc::PUBLIC_KEY_LEN);
                let key = EcPublicKey::decode(ec).map_err(Error::EcKey)?;
                if tail.iter().any(|b| *b != 0) {
                    let mut kept = Box::new([0u8; EC_RESERVED_LEN]);
                    kept.copy_from_slice(tail);
                    reserved.ec_tail = Some(kept);
                }
                PublicKey::Ec(key)
            }
            KeyKind::Rsa => decode_rsa_key(&pub_key)?,
        };
        let sig1 = SignatureSlot::decode(Slot::Sig1, &bytes[OFF_SIG[0]..OFF_SIG[1]], OFF_SIG[0])?;
        let sig2 = SignatureSlot::decode(Slot::Sig2, &bytes[OFF_SIG[1]..], OFF_SIG[1])?;
        Ok(Certificate {
            api_major: bytes[4],
            api_minor: bytes[5],
            usage,
            algorithm,
            key,
            sigs: [sig1, sig2],
            reserved,
        })
    }

    /// Encodes the certificate.
    pub fn encode(&self) -> [u8; CERT_LEN] {
        let mut out = [0u8; CERT_LEN];
        out[..BODY_LEN].copy_from_slice(&self.body());
        for slot in Slot::BOTH {
            let off = OFF_SIG[slot.index()];
            self.sigs[slot.index()].encode_into(&mut out[off..off + 8 + SIG_LEN]);
        }
        out
    }

    /// The signed part: the first 0x414 bytes (VERSION through PUB_KEY).
    pub fn body(&self) -> [u8; BODY_LEN] {
        let mut out = [0u8; BODY_LEN];
        out[..4].copy_from_slice(&1u32.to_le_bytes());
        out[4] = self.api_major;
        out[5] = self.api_minor;
        out[6..8].copy_from_slice(&self.reserved.header);
        out[8..12].copy_from_slice(&self.usage.code().to_le_bytes());
        out[12..16].copy_from_slice(&self.algorithm.code().to_le_bytes());
        let pk = &mut out[OFF_PUB_KEY..];
        match &self.key {
            PublicKey::Ec(key) => {
                pk[..ecc::PUBLIC_KEY_LEN].copy_from_slice(&key.encode());
                if let Some(tail) = &self.reserved.ec_tail {
                    pk[ecc::PUBLIC_KEY_LEN..].copy_from_slice(&tail[..]);
                }
            }
            PublicKey::Rsa { modulus_bits, key } => {
                pk[..4].copy_from_slice(&modulus_bits.to_le_bytes());
                // Both values fit: checked at decode / construction.
                for (dst, src) in pk[4..4 + RSA_FIELD].iter_mut().zip(key.e().to_bytes_le()) {
                    *dst = src;
                }
                for (dst, src) in pk[4 + RSA_FIELD..].iter_mut().zip(key.n().to_bytes_le()) {
                    *dst = src;
                }
            }
        }
        out
    }

    /// A new certificate for a P-384 key with both slots empty.
    /// `algorithm` must be ECDSA_* or ECDH_*; `usage` OCA, PEK, PDH or CEK.
    pub fn new_ec(
        usage: Usage,
        algorithm: Algorithm,
        api_major: u8,
        api_minor: u8,
        key: &p384::PublicKey,
    ) -> Result<Self, Error> {
        check_key_usage(usage)?;
        if !matches!(algorithm.kind(), KeyKind::Ecdsa | KeyKind::Ecdh) {
            return Err(Error::Algorithm {
                algorithm,
                what: "certify an EC key",
            });
        }
        Ok(Certificate {
            api_major,
            api_minor,
            usage,
            algorithm,
            key: PublicKey::Ec(EcPublicKey::P384(*key)),
            sigs: [SignatureSlot::Empty, SignatureSlot::Empty],
            reserved: Reserved::default(),
        })
    }

    /// A new certificate for an RSA key (2048 or 4096 bits) with both slots
    /// empty. `algorithm` must be RSA_*.
    pub fn new_rsa(
        usage: Usage,
        algorithm: Algorithm,
        api_major: u8,
        api_minor: u8,
        key: &RsaPublicKey,
    ) -> Result<Self, Error> {
        check_key_usage(usage)?;
        if algorithm.kind() != KeyKind::Rsa {
            return Err(Error::Algorithm {
                algorithm,
                what: "certify an RSA key",
            });
        }
        let bits = key.n().bits();
        if !(bits == 2048 || bits == 4096) || key.e().bits() > RSA_FIELD * 8 {
            return Err(rsa_reason(format_args!(
                "modulus of {bits} bits, expected 2048 or 4096"
            )));
        }
        Ok(Certificate {
            api_major,
            api_minor,
            usage,
            algorithm,
            key: PublicKey::Rsa {
                modulus_bits: bits as u32,
                key: key.clone(),
            },
            sigs: [SignatureSlot::Empty, SignatureSlot::Empty],
            reserved: Reserved::default(),
        })
    }

    /// The guest owner's GODH certificate for LAUNCH_START: version 1, usage
    /// PDH, algorithm ECDH_SHA256, curve P-384, API 0.0, both slots empty
    /// (as virtee/sev and sevctl make it; the firmware ignores the slots).
    pub fn godh(key: &p384::PublicKey) -> Self {
        Certificate {
            api_major: 0,
            api_minor: 0,
            usage: Usage::Pdh,
            algorithm: Algorithm::EcdhSha256,
            key: PublicKey::Ec(EcPublicKey::P384(*key)),
            sigs: [SignatureSlot::Empty, SignatureSlot::Empty],
            reserved: Reserved::default(),
        }
    }

    /// The firmware's GODH checks (docs/protocol/certificates.md#usage-and-algorithms) on a decoded
    /// certificate: usage PDH, algorithm ECDH_*, a P-384 key (version 1 and the
    /// point being on the curve were checked by [`Certificate::decode`]).
    /// Signatures are not checked. Returns the owner's public key.
    pub fn validate_godh(&self) -> Result<p384::PublicKey, Error> {
        if self.usage != Usage::Pdh {
            return Err(Error::WrongUsage {
                expected: Usage::Pdh,
                found: self.usage,
            });
        }
        if self.algorithm.kind() != KeyKind::Ecdh {
            return Err(Error::WrongAlgorithm {
                expected: "ECDH_SHA256 or ECDH_SHA384",
                found: self.algorithm,
            });
        }
        self.ec_public_key().copied()
    }

    /// Exactly the firmware's GODH checks (docs/protocol/certificates.md#usage-and-algorithms) on
    /// raw bytes, without the rest of [`Certificate::decode`]'s strictness: length
    /// 0x824, VERSION 1, usage PDH, algorithm ECDH_*, curve P-384, a valid
    /// point (coordinates below p with zero padding, on the curve, not the
    /// identity). Reserved bytes and signature slots are ignored, as the
    /// firmware ignores them.
    pub fn validate_godh_bytes(bytes: &[u8]) -> Result<p384::PublicKey, Error> {
        if bytes.len() != CERT_LEN {
            return Err(Error::Length(bytes.len()));
        }
        let code = |off: usize| le32(bytes, off).unwrap_or(u32::MAX);
        if code(0) != 1 {
            return Err(Error::Version(code(0)));
        }
        let usage = Usage::from_code(code(8)).map_err(|source| Error::Code {
            field: "PUB_KEY_USAGE",
            source,
        })?;
        let algorithm = Algorithm::from_code(code(0xC)).map_err(|source| Error::Code {
            field: "PUB_KEY_ALGO",
            source,
        })?;
        if usage != Usage::Pdh {
            return Err(Error::WrongUsage {
                expected: Usage::Pdh,
                found: usage,
            });
        }
        if algorithm.kind() != KeyKind::Ecdh {
            return Err(Error::WrongAlgorithm {
                expected: "ECDH_SHA256 or ECDH_SHA384",
                found: algorithm,
            });
        }
        let curve = Curve::from_code(code(OFF_PUB_KEY)).map_err(Error::EcKey)?;
        if curve != Curve::P384 {
            return Err(Error::EcKey(ecc::Error::UnsupportedCurve(curve)));
        }
        let ec = &bytes[OFF_PUB_KEY..OFF_PUB_KEY + ecc::PUBLIC_KEY_LEN];
        match EcPublicKey::decode(ec).map_err(Error::EcKey)? {
            EcPublicKey::P384(key) => Ok(key),
            EcPublicKey::P256 { .. } => {
                Err(Error::EcKey(ecc::Error::UnsupportedCurve(Curve::P256)))
            }
        }
    }

    /// How many reserved bytes of the signed body (0x006-0x007, 0x0A4-0x413
    /// after an EC key) are non-zero. They are kept and signed as received;
    /// a certificate from outside (an owner tool's OCA) may have some.
    pub fn reserved_nonzero(&self) -> usize {
        self.reserved.nonzero()
    }

    /// API_MAJOR and API_MINOR of the firmware that made the certificate.
    pub fn api_version(&self) -> (u8, u8) {
        (self.api_major, self.api_minor)
    }

    /// PUB_KEY_USAGE.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// PUB_KEY_ALGO.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// The P-384 public key, or an error for RSA and P-256 keys.
    pub fn ec_public_key(&self) -> Result<&p384::PublicKey, Error> {
        match &self.key {
            PublicKey::Ec(ec) => ec.p384().map_err(Error::EcKey),
            PublicKey::Rsa { .. } => Err(Error::NotEcKey),
        }
    }

    /// The ECDSA verifying key of an ECDSA_* certificate.
    pub fn verifying_key(&self) -> Result<VerifyingKey, Error> {
        if self.algorithm.kind() != KeyKind::Ecdsa {
            return Err(Error::SignerNotSigningKey {
                usage: self.usage,
                algorithm: self.algorithm,
            });
        }
        match &self.key {
            PublicKey::Ec(ec) => {
                ec.p384()
                    .map(VerifyingKey::from)
                    .map_err(|source| Error::SignerKey {
                        usage: self.usage,
                        source,
                    })
            }
            PublicKey::Rsa { .. } => Err(Error::SignerNotSigningKey {
                usage: self.usage,
                algorithm: self.algorithm,
            }),
        }
    }

    /// The content of a signature slot.
    pub fn signature(&self, slot: Slot) -> &SignatureSlot {
        &self.sigs[slot.index()]
    }

    /// Empties a signature slot.
    pub fn clear_signature(&mut self, slot: Slot) {
        self.sigs[slot.index()] = SignatureSlot::Empty;
    }

    /// Signs the body with an ECDSA P-384 key into `slot`, recording
    /// `signer_usage` and `algorithm` (ECDSA_SHA256 or ECDSA_SHA384).
    pub fn sign(
        &mut self,
        slot: Slot,
        signer_usage: Usage,
        key: &SigningKey,
        algorithm: Algorithm,
    ) -> Result<(), Error> {
        if signer_usage == Usage::None {
            return Err(Error::SignerUsage(signer_usage));
        }
        if algorithm.kind() != KeyKind::Ecdsa {
            return Err(Error::Algorithm {
                algorithm,
                what: "sign with an EC key",
            });
        }
        let signature = ecc::sign(key, algorithm, &self.body()).map_err(Error::Sign)?;
        self.sigs[slot.index()] = SignatureSlot::Ecdsa {
            usage: signer_usage,
            algorithm,
            signature,
        };
        Ok(())
    }

    /// Signs the body with RSASSA-PSS (as the ASK signs a CEK) into `slot`,
    /// recording `signer_usage` and `algorithm` (RSA_SHA256 or RSA_SHA384;
    /// the hash follows the algorithm).
    pub fn sign_rsa<R: CryptoRngCore>(
        &mut self,
        rng: &mut R,
        slot: Slot,
        signer_usage: Usage,
        key: &RsaPrivateKey,
        algorithm: Algorithm,
    ) -> Result<(), Error> {
        let hash = match (algorithm.kind(), algorithm.hash()) {
            (KeyKind::Rsa, Some(hash)) => hash,
            _ => {
                return Err(Error::Algorithm {
                    algorithm,
                    what: "sign with an RSA key",
                })
            }
        };
        let sig = ca::rsa_pss_sign(rng, key, hash, &self.body()).map_err(Error::RsaSign)?;
        self.set_rsa_signature(slot, signer_usage, algorithm, &sig)
    }

    /// Stores an RSA signature (little-endian, at most 512 bytes; zero-padded)
    /// made elsewhere into `slot`.
    pub fn set_rsa_signature(
        &mut self,
        slot: Slot,
        signer_usage: Usage,
        algorithm: Algorithm,
        signature_le: &[u8],
    ) -> Result<(), Error> {
        if signer_usage == Usage::None {
            return Err(Error::SignerUsage(signer_usage));
        }
        if algorithm.kind() != KeyKind::Rsa {
            return Err(Error::Algorithm {
                algorithm,
                what: "store an RSA signature",
            });
        }
        let mut field = Box::new([0u8; SIG_LEN]);
        field
            .get_mut(..signature_le.len())
            .ok_or(Error::SlotRsaLength {
                slot,
                len: signature_le.len(),
            })?
            .copy_from_slice(signature_le);
        self.sigs[slot.index()] = SignatureSlot::Rsa {
            usage: signer_usage,
            algorithm,
            signature: field,
        };
        Ok(())
    }

    fn slots_for(&self, signer: Usage) -> Result<Vec<Slot>, Error> {
        let slots: Vec<Slot> = Slot::BOTH
            .into_iter()
            .filter(|s| self.sigs[s.index()].usage() == signer)
            .collect();
        if slots.is_empty() {
            return Err(Error::NoSlotForSigner(signer));
        }
        Ok(slots)
    }

    /// Verifies that the SEV certificate `signer` signed this one: a slot
    /// must carry the signer's usage and an ECDSA signature that verifies with
    /// the signer's P-384 key over the body (hash per the slot's algorithm).
    /// Both slots are tried. The signer must be an ECDSA_* certificate (an
    /// ECDH key such as the PDH cannot sign).
    pub fn verify_signed_by_sev(&self, signer: &Certificate) -> Result<(), Error> {
        let key = signer.verifying_key()?;
        let body = self.body();
        let mut last = Error::NoSlotForSigner(signer.usage);
        for slot in self.slots_for(signer.usage)? {
            match &self.sigs[slot.index()] {
                SignatureSlot::Ecdsa {
                    algorithm,
                    signature,
                    ..
                } => match ecc::verify(&key, *algorithm, &body, signature) {
                    Ok(()) => return Ok(()),
                    Err(_) => {
                        last = Error::BadSignature {
                            slot,
                            signer: signer.usage,
                        }
                    }
                },
                other => {
                    last = Error::SlotKindMismatch {
                        slot,
                        signer: signer.usage,
                        algorithm: other.algorithm(),
                    }
                }
            }
        }
        Err(last)
    }

    /// Verifies that the AMD CA certificate `ca` (in practice the ASK) signed
    /// this one: a slot must carry the CA's usage and an RSA-PSS signature
    /// (MGF1 same hash, salt = hash length, hash per the slot's algorithm)
    /// stored little-endian in the first modulus/8 bytes, the rest zero.
    pub fn verify_signed_by_ca(&self, ca: &ca::Certificate) -> Result<(), Error> {
        let body = self.body();
        let signer = ca.usage();
        let mut last = Error::NoSlotForSigner(signer);
        for slot in self.slots_for(signer)? {
            match &self.sigs[slot.index()] {
                SignatureSlot::Rsa {
                    algorithm,
                    signature,
                    ..
                } => {
                    let hash = algorithm.hash().ok_or(Error::SlotAlgorithm {
                        slot,
                        algorithm: *algorithm,
                    })?;
                    match ca::rsa_pss_verify(ca.public_key(), hash, &body, &signature[..]) {
                        Ok(()) => return Ok(()),
                        Err(source) => {
                            last = Error::BadRsaSignature {
                                slot,
                                signer,
                                source,
                            }
                        }
                    }
                }
                other => {
                    last = Error::SlotKindMismatch {
                        slot,
                        signer,
                        algorithm: other.algorithm(),
                    }
                }
            }
        }
        Err(last)
    }
}

fn decode_rsa_key(pub_key: &[u8; PUB_KEY_LEN]) -> Result<PublicKey, Error> {
    let (size, fields) = pub_key.split_at(4);
    let modulus_bits = le32(size, 0).unwrap_or(0);
    if !(modulus_bits == 2048 || modulus_bits == 4096) {
        return Err(rsa_reason(format_args!(
            "MODULUS_SIZE {modulus_bits} bits, expected 2048 or 4096"
        )));
    }
    let width = modulus_bits as usize / 8;
    let (exp_field, mod_field) = fields.split_at(RSA_FIELD);
    let (modulus, padding) = mod_field.split_at(width);
    if let Some(offset) = super::first_nonzero(padding, OFF_PUB_KEY + 4 + RSA_FIELD + width) {
        return Err(Error::Reserved { offset });
    }
    let e = BigUint::from_bytes_le(exp_field);
    let n = BigUint::from_bytes_le(modulus);
    if n.bits() != width * 8 {
        return Err(rsa_reason(format_args!(
            "modulus is {} bits wide, MODULUS_SIZE says {modulus_bits}",
            n.bits()
        )));
    }
    let key = RsaPublicKey::new(n, e).map_err(rsa_reason)?;
    Ok(PublicKey::Rsa { modulus_bits, key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::testutil::{ec_key, fixtures, rng, rsa_keys};

    const NAPLES: [&str; 4] = [
        "certs/naples/pdh.cert",
        "certs/naples/pek.cert",
        "certs/naples/oca.cert",
        "certs/naples/cek.cert",
    ];
    const ROME: [&str; 4] = [
        "certs/rome/pdh.cert",
        "certs/rome/pek.cert",
        "certs/rome/oca.cert",
        "certs/rome/cek.cert",
    ];

    fn decode_all(files: &[Vec<u8>; 4]) -> [Certificate; 4] {
        std::array::from_fn(|i| Certificate::decode(&files[i]).unwrap())
    }

    #[test]
    fn fixtures_round_trip_byte_exact() {
        for set in [NAPLES, ROME] {
            let Some(files) = fixtures("sev::fixtures_round_trip_byte_exact", set) else {
                return;
            };
            for (bytes, name) in files.iter().zip(set) {
                let cert = Certificate::decode(bytes).unwrap();
                assert_eq!(cert.encode().as_slice(), bytes.as_slice(), "{name}");
                assert_eq!(cert.body().as_slice(), &bytes[..BODY_LEN], "{name}");
            }
        }
    }

    #[test]
    fn fixture_fields_match_reference_table() {
        // docs/protocol/certificates.md#usage-and-algorithms "Observed on real hardware".
        let Some(files) = fixtures("sev::fixture_fields_match_reference_table", NAPLES) else {
            return;
        };
        let [pdh, pek, oca, cek] = decode_all(&files);
        assert_eq!(cek.api_version(), (0, 14));
        assert_eq!(
            (cek.usage(), cek.algorithm()),
            (Usage::Cek, Algorithm::EcdsaSha256)
        );
        assert_eq!(
            (
                cek.signature(Slot::Sig1).usage(),
                cek.signature(Slot::Sig1).algorithm()
            ),
            (Usage::Ask, Algorithm::RsaSha256)
        );
        assert!(cek.signature(Slot::Sig2).is_empty());
        assert_eq!(oca.api_version(), (0, 16));
        assert_eq!(oca.signature(Slot::Sig1).usage(), Usage::Oca);
        assert_eq!(pek.signature(Slot::Sig1).usage(), Usage::Oca);
        assert_eq!(pek.signature(Slot::Sig2).usage(), Usage::Cek);
        assert_eq!(
            (pdh.usage(), pdh.algorithm()),
            (Usage::Pdh, Algorithm::EcdhSha256)
        );
        assert_eq!(pdh.signature(Slot::Sig1).usage(), Usage::Pek);
        assert!(pdh.verifying_key().is_err());
        // The PDH is a valid GODH-shaped certificate too.
        assert_eq!(pdh.validate_godh().unwrap(), *pdh.ec_public_key().unwrap());
        assert_eq!(
            Certificate::validate_godh_bytes(&files[0]).unwrap(),
            *pdh.ec_public_key().unwrap()
        );
    }

    #[test]
    fn fixture_signatures_verify_and_negatives_fail() {
        // docs/protocol/test-vectors.md#chain-checks (virtee/sev tests/naples/*.rs,
        // tests/rome/*.rs).
        for (set, ask_name) in [
            (NAPLES, "amd-roots/naples-ask.cert"),
            (ROME, "amd-roots/rome-ask.cert"),
        ] {
            let Some(files) = fixtures("sev::fixture_signatures_verify", set) else {
                return;
            };
            let Some([ask]) = fixtures("sev::fixture_signatures_verify", [ask_name]) else {
                return;
            };
            let ask = ca::Certificate::decode(&ask).unwrap();
            let [pdh, pek, oca, cek] = decode_all(&files);
            cek.verify_signed_by_ca(&ask).unwrap();
            oca.verify_signed_by_sev(&oca).unwrap();
            pek.verify_signed_by_sev(&oca).unwrap();
            pek.verify_signed_by_sev(&cek).unwrap();
            pdh.verify_signed_by_sev(&pek).unwrap();
            // PDH must not verify the PEK (it is ECDH and not a signer of it).
            assert!(matches!(
                pek.verify_signed_by_sev(&pdh),
                Err(Error::SignerNotSigningKey { .. })
            ));
            // The PEK must not verify the OCA or the CEK.
            assert_eq!(
                oca.verify_signed_by_sev(&pek),
                Err(Error::NoSlotForSigner(Usage::Pek))
            );
            assert_eq!(
                cek.verify_signed_by_sev(&pek),
                Err(Error::NoSlotForSigner(Usage::Pek))
            );
            // A CEK cannot pass as the OCA: usage decides the slot.
            assert_eq!(
                oca.verify_signed_by_sev(&cek),
                Err(Error::NoSlotForSigner(Usage::Cek))
            );
        }
    }

    #[test]
    fn cross_platform_signatures_fail() {
        let (Some(n), Some(r)) = (
            fixtures("sev::cross_platform_signatures_fail", NAPLES),
            fixtures("sev::cross_platform_signatures_fail", ROME),
        ) else {
            return;
        };
        let [n_pdh, _, n_oca, _] = decode_all(&n);
        let [_, r_pek, _, _] = decode_all(&r);
        assert_eq!(
            n_pdh.verify_signed_by_sev(&r_pek),
            Err(Error::BadSignature {
                slot: Slot::Sig1,
                signer: Usage::Pek
            })
        );
        assert_eq!(
            r_pek.verify_signed_by_sev(&n_oca),
            Err(Error::BadSignature {
                slot: Slot::Sig1,
                signer: Usage::Oca
            })
        );
    }

    #[test]
    fn godh_certificate() {
        // docs/protocol/test-vectors.md#ecdh-session: the GODH key and its QX as stored at 0x014.
        let d = hex::decode("8fe744ddc6481f755c4ea0234fbfd45e44374c265107bf7b47de043007e469369e830f953ac8b691b136e3cddb269fae").unwrap();
        let sk = SigningKey::from_slice(&d).unwrap();
        let pk = p384::PublicKey::from(sk.verifying_key());
        let cert = Certificate::godh(&pk);
        let bytes = cert.encode();
        assert_eq!(
            &bytes[..16],
            &hex::decode("01000000000000000310000003000000").unwrap()[..]
        );
        assert_eq!(&bytes[0x10..0x14], &[2, 0, 0, 0]);
        assert_eq!(
            hex::encode(&bytes[0x14..0x14 + 72]),
            "8fe04bda8328200b8945b1301a4994cf205d8b7a1d41dc7ea14ce8855f381750ef3a7b76d18f68d915e569ea6bc84bf5"
                .to_owned()
                + &"00".repeat(24)
        );
        assert_eq!(&bytes[0x414..0x41C], &[0, 0x10, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[0x61C..0x624], &[0, 0x10, 0, 0, 0, 0, 0, 0]);
        assert!(bytes[0x41C..0x61C].iter().all(|&b| b == 0));
        let decoded = Certificate::decode(&bytes).unwrap();
        assert_eq!(decoded, cert);
        assert_eq!(decoded.validate_godh().unwrap(), pk);
        assert_eq!(Certificate::validate_godh_bytes(&bytes).unwrap(), pk);
    }

    #[test]
    fn godh_validation_failures() {
        let pk = p384::PublicKey::from(ec_key(10).verifying_key());
        let good = Certificate::godh(&pk).encode();
        let patch = |off: usize, v: u32| {
            let mut b = good;
            b[off..off + 4].copy_from_slice(&v.to_le_bytes());
            b
        };
        assert_eq!(
            Certificate::validate_godh_bytes(&patch(0, 2)),
            Err(Error::Version(2))
        );
        assert_eq!(
            Certificate::validate_godh_bytes(&patch(8, 0x1002)),
            Err(Error::WrongUsage {
                expected: Usage::Pdh,
                found: Usage::Pek
            })
        );
        assert!(matches!(
            Certificate::validate_godh_bytes(&patch(0xC, 2)),
            Err(Error::WrongAlgorithm {
                found: Algorithm::EcdsaSha256,
                ..
            })
        ));
        Certificate::validate_godh_bytes(&patch(0xC, 0x103)).unwrap();
        assert_eq!(
            Certificate::validate_godh_bytes(&patch(0x10, 1)),
            Err(Error::EcKey(ecc::Error::UnsupportedCurve(Curve::P256)))
        );
        assert_eq!(
            Certificate::validate_godh_bytes(&patch(0x10, 3)),
            Err(Error::EcKey(ecc::Error::UnknownCurve(3)))
        );
        let mut off_curve = good;
        off_curve[0x5C] ^= 1;
        assert_eq!(
            Certificate::validate_godh_bytes(&off_curve),
            Err(Error::EcKey(ecc::Error::NotOnCurve))
        );
        assert_eq!(
            Certificate::validate_godh_bytes(&good[..100]),
            Err(Error::Length(100))
        );
        // The firmware ignores the slots: a self-signed slot (sev-tool style) or
        // garbage in a reserved byte passes the raw check.
        let mut sev_tool = Certificate::godh(&pk);
        sev_tool
            .sign(Slot::Sig1, Usage::Pek, &ec_key(10), Algorithm::EcdsaSha256)
            .unwrap();
        Certificate::validate_godh_bytes(&sev_tool.encode()).unwrap();
        let mut junk = good;
        junk[0x500] = 0xAA;
        Certificate::validate_godh_bytes(&junk).unwrap();
        assert!(Certificate::decode(&junk).is_err());
        // A decoded PEK is not a GODH.
        let pek = Certificate::new_ec(Usage::Pek, Algorithm::EcdsaSha256, 0, 22, &pk).unwrap();
        assert!(matches!(pek.validate_godh(), Err(Error::WrongUsage { .. })));
        let ecdsa_pdh =
            Certificate::new_ec(Usage::Pdh, Algorithm::EcdsaSha256, 0, 22, &pk).unwrap();
        assert!(matches!(
            ecdsa_pdh.validate_godh(),
            Err(Error::WrongAlgorithm { .. })
        ));
    }

    #[test]
    fn ecdsa_sign_verify_round_trip() {
        let oca_key = ec_key(20);
        let cek_key = ec_key(21);
        let pek_key = ec_key(22);
        let pub_of = |k: &SigningKey| p384::PublicKey::from(k.verifying_key());
        let mut oca =
            Certificate::new_ec(Usage::Oca, Algorithm::EcdsaSha384, 1, 55, &pub_of(&oca_key))
                .unwrap();
        oca.sign(Slot::Sig1, Usage::Oca, &oca_key, Algorithm::EcdsaSha384)
            .unwrap();
        let cek = Certificate::new_ec(Usage::Cek, Algorithm::EcdsaSha256, 1, 55, &pub_of(&cek_key))
            .unwrap();
        let mut pek =
            Certificate::new_ec(Usage::Pek, Algorithm::EcdsaSha256, 1, 55, &pub_of(&pek_key))
                .unwrap();
        // CEK first, in SIG2 only: verification must find it in either slot.
        pek.sign(Slot::Sig2, Usage::Cek, &cek_key, Algorithm::EcdsaSha256)
            .unwrap();
        pek.verify_signed_by_sev(&cek).unwrap();
        assert_eq!(
            pek.verify_signed_by_sev(&oca),
            Err(Error::NoSlotForSigner(Usage::Oca))
        );
        pek.sign(Slot::Sig1, Usage::Oca, &oca_key, Algorithm::EcdsaSha256)
            .unwrap();
        let pek = Certificate::decode(&pek.encode()).unwrap();
        let oca = Certificate::decode(&oca.encode()).unwrap();
        oca.verify_signed_by_sev(&oca).unwrap();
        pek.verify_signed_by_sev(&oca).unwrap();
        pek.verify_signed_by_sev(&cek).unwrap();
        // A signature by the wrong key under the right usage fails.
        let mut forged = pek.clone();
        forged
            .sign(Slot::Sig1, Usage::Oca, &pek_key, Algorithm::EcdsaSha256)
            .unwrap();
        assert_eq!(
            forged.verify_signed_by_sev(&oca),
            Err(Error::BadSignature {
                slot: Slot::Sig1,
                signer: Usage::Oca
            })
        );
        // Changing the body after signing breaks both signatures.
        let mut bytes = pek.encode();
        bytes[4] ^= 1;
        let changed = Certificate::decode(&bytes).unwrap();
        assert!(changed.verify_signed_by_sev(&oca).is_err());
        assert!(changed.verify_signed_by_sev(&cek).is_err());
        // Parameter checks.
        let mut c = cek.clone();
        assert!(matches!(
            c.sign(Slot::Sig1, Usage::Cek, &cek_key, Algorithm::EcdhSha256),
            Err(Error::Algorithm { .. })
        ));
        assert_eq!(
            c.sign(Slot::Sig1, Usage::None, &cek_key, Algorithm::EcdsaSha256),
            Err(Error::SignerUsage(Usage::None))
        );
        c.sign(Slot::Sig1, Usage::Cek, &cek_key, Algorithm::EcdsaSha256)
            .unwrap();
        c.clear_signature(Slot::Sig1);
        assert!(c.signature(Slot::Sig1).is_empty());
        assert!(matches!(
            Certificate::new_ec(Usage::Ask, Algorithm::EcdsaSha256, 0, 0, &pub_of(&cek_key)),
            Err(Error::KeyUsage(Usage::Ask))
        ));
        assert!(matches!(
            Certificate::new_ec(Usage::Pek, Algorithm::RsaSha256, 0, 0, &pub_of(&cek_key)),
            Err(Error::Algorithm { .. })
        ));
    }

    #[test]
    fn rsa_cek_signed_by_self_generated_ask() {
        let [ark_key, ask_key] = rsa_keys();
        let mut r = rng(30);
        let ark = ca::Certificate::sign_new_ark(&mut r, ark_key).unwrap();
        let ask =
            ca::Certificate::sign_new_ask(&mut r, &ask_key.to_public_key(), &ark, ark_key).unwrap();
        let cek_key = ec_key(31);
        let mut cek = Certificate::new_ec(
            Usage::Cek,
            Algorithm::EcdsaSha256,
            0,
            14,
            &p384::PublicKey::from(cek_key.verifying_key()),
        )
        .unwrap();
        for algo in [Algorithm::RsaSha256, Algorithm::RsaSha384] {
            cek.sign_rsa(&mut r, Slot::Sig1, Usage::Ask, ask_key, algo)
                .unwrap();
            let decoded = Certificate::decode(&cek.encode()).unwrap();
            assert_eq!(decoded, cek);
            decoded.verify_signed_by_ca(&ask).unwrap();
            // The ARK did not sign it (no ARK slot).
            assert_eq!(
                decoded.verify_signed_by_ca(&ark),
                Err(Error::NoSlotForSigner(Usage::Ark))
            );
        }
        // Signed by the wrong RSA key under the ASK usage.
        let mut forged = cek.clone();
        forged
            .sign_rsa(
                &mut r,
                Slot::Sig1,
                Usage::Ask,
                ark_key,
                Algorithm::RsaSha256,
            )
            .unwrap();
        assert!(matches!(
            forged.verify_signed_by_ca(&ask),
            Err(Error::BadRsaSignature {
                source: ca::Error::BadSignature,
                ..
            })
        ));
        // Non-zero byte beyond the 2048-bit width.
        let mut sig = [0u8; SIG_LEN];
        if let SignatureSlot::Rsa { signature, .. } = cek.signature(Slot::Sig1) {
            sig.copy_from_slice(&signature[..]);
        }
        sig[400] = 1;
        let mut padded = cek.clone();
        padded
            .set_rsa_signature(Slot::Sig1, Usage::Ask, Algorithm::RsaSha384, &sig)
            .unwrap();
        assert!(matches!(
            padded.verify_signed_by_ca(&ask),
            Err(Error::BadRsaSignature {
                source: ca::Error::SignaturePadding { offset: 400 },
                ..
            })
        ));
        assert!(matches!(
            padded.set_rsa_signature(Slot::Sig1, Usage::Ask, Algorithm::RsaSha384, &[0; 513]),
            Err(Error::SlotRsaLength { len: 513, .. })
        ));
        assert!(matches!(
            padded.set_rsa_signature(Slot::Sig1, Usage::Ask, Algorithm::EcdsaSha384, &[0; 8]),
            Err(Error::Algorithm { .. })
        ));
        // An ECDSA slot with the ASK usage is a kind mismatch for the CA check.
        let mut wrong_kind = cek.clone();
        wrong_kind
            .sign(Slot::Sig1, Usage::Ask, &cek_key, Algorithm::EcdsaSha256)
            .unwrap();
        assert!(matches!(
            wrong_kind.verify_signed_by_ca(&ask),
            Err(Error::SlotKindMismatch { .. })
        ));
    }

    #[test]
    fn rsa_key_certificate_round_trip() {
        let [key, _] = rsa_keys();
        let cert =
            Certificate::new_rsa(Usage::Oca, Algorithm::RsaSha256, 0, 1, &key.to_public_key())
                .unwrap();
        let bytes = cert.encode();
        assert_eq!(&bytes[0x10..0x14], &2048u32.to_le_bytes());
        let decoded = Certificate::decode(&bytes).unwrap();
        assert_eq!(decoded, cert);
        assert_eq!(decoded.encode(), bytes);
        assert_eq!(decoded.ec_public_key(), Err(Error::NotEcKey));
        assert!(matches!(
            decoded.verifying_key(),
            Err(Error::SignerNotSigningKey { .. })
        ));
        let mut padded = bytes;
        padded[0x214 + 300] = 1;
        assert!(matches!(
            Certificate::decode(&padded),
            Err(Error::Reserved { .. })
        ));
        let mut bad_size = bytes;
        bad_size[0x10..0x14].copy_from_slice(&1024u32.to_le_bytes());
        assert!(matches!(
            Certificate::decode(&bad_size),
            Err(Error::RsaKey { .. })
        ));
    }

    /// The OCA of a real Genoa host (sev-testdata `realhost/`, from
    /// libvirt's recorded QEMU reply) has 335 non-zero bytes in the reserved
    /// part of its key area; its self-signature covers them. It decodes,
    /// re-encodes byte for byte, verifies, and fails once they are zeroed.
    #[test]
    fn real_oca_with_nonzero_reserved_bytes_verifies_as_received() {
        let Some([oca]) = fixtures(
            "sev::real_oca_with_nonzero_reserved_bytes_verifies_as_received",
            ["realhost/oca.cert"],
        ) else {
            return;
        };
        let cert = Certificate::decode(&oca).unwrap();
        assert_eq!(cert.reserved_nonzero(), 335);
        assert_eq!(&cert.encode()[..], &oca[..]);
        cert.verify_signed_by_sev(&cert).unwrap();
        let mut zeroed = oca.clone();
        zeroed[0xA4..BODY_LEN].fill(0);
        let zeroed = Certificate::decode(&zeroed).unwrap();
        assert_eq!(zeroed.reserved_nonzero(), 0);
        assert!(zeroed.verify_signed_by_sev(&zeroed).is_err());
    }

    /// Certificates made here have zero reserved bytes; signing covers
    /// whatever reserved bytes a decoded certificate carries.
    #[test]
    fn made_certificates_are_zeroed_and_signing_covers_reserved_bytes() {
        let key = ec_key(77);
        let pk = p384::PublicKey::from(key.verifying_key());
        let mut cert = Certificate::new_ec(Usage::Oca, Algorithm::EcdsaSha256, 0, 0, &pk).unwrap();
        cert.sign(Slot::Sig1, Usage::Oca, &key, Algorithm::EcdsaSha256)
            .unwrap();
        assert_eq!(cert.reserved_nonzero(), 0);
        let mut bytes = cert.encode();
        assert!(bytes[6..8]
            .iter()
            .chain(&bytes[0xA4..BODY_LEN])
            .all(|b| *b == 0));
        bytes[0x200] = 0x5A;
        let mut dirty = Certificate::decode(&bytes).unwrap();
        assert!(dirty.verify_signed_by_sev(&dirty).is_err());
        dirty
            .sign(Slot::Sig1, Usage::Oca, &key, Algorithm::EcdsaSha256)
            .unwrap();
        dirty.verify_signed_by_sev(&dirty).unwrap();
        assert_eq!(dirty.encode()[0x200], 0x5A);
        assert!(Certificate::godh(&pk).encode()[6..BODY_LEN]
            .iter()
            .skip(0xA4 - 6)
            .all(|b| *b == 0));
    }

    #[test]
    fn decode_rejects_malformed() {
        let Some([pek]) = fixtures("sev::decode_rejects_malformed", ["certs/naples/pek.cert"])
        else {
            return;
        };
        let patch = |off: usize, v: u32| {
            let mut b = pek.clone();
            b[off..off + 4].copy_from_slice(&v.to_le_bytes());
            b
        };
        assert_eq!(
            Certificate::decode(&pek[1..]),
            Err(Error::Length(CERT_LEN - 1))
        );
        assert_eq!(Certificate::decode(&patch(0, 0)), Err(Error::Version(0)));
        // Reserved bytes of the body are kept as received and signed: they
        // decode, re-encode unchanged, and break the signatures over them.
        let oca = Certificate::decode(&pek).unwrap();
        for off in [6, 7, 0xA4, 0x300, 0x413] {
            let mut res = pek.clone();
            res[off] = 1;
            let cert = Certificate::decode(&res).unwrap();
            assert_eq!(cert.encode()[..], res[..], "offset {off:#x}");
            assert_eq!(cert.reserved_nonzero(), 1);
            assert_eq!(cert.public_key(), oca.public_key());
            assert_ne!(cert.body(), oca.body());
        }
        assert!(matches!(
            Certificate::decode(&patch(8, 0x1005)),
            Err(Error::Code {
                field: "PUB_KEY_USAGE",
                ..
            })
        ));
        assert_eq!(
            Certificate::decode(&patch(8, 0x1000)),
            Err(Error::KeyUsage(Usage::None))
        );
        assert_eq!(
            Certificate::decode(&patch(8, 0x13)),
            Err(Error::KeyUsage(Usage::Ask))
        );
        assert_eq!(
            Certificate::decode(&patch(0xC, 0)),
            Err(Error::NoKeyAlgorithm)
        );
        assert!(matches!(
            Certificate::decode(&patch(0xC, 0x104)),
            Err(Error::Code {
                field: "PUB_KEY_ALGO",
                ..
            })
        ));
        // Slot markers must agree.
        assert!(matches!(
            Certificate::decode(&patch(0x61C, 0x1000)),
            Err(Error::EmptySlot {
                slot: Slot::Sig2,
                ..
            })
        ));
        assert!(matches!(
            Certificate::decode(&patch(0x620, 0)),
            Err(Error::EmptySlot {
                slot: Slot::Sig2,
                ..
            })
        ));
        assert_eq!(
            Certificate::decode(&patch(0x418, 3)),
            Err(Error::SlotAlgorithm {
                slot: Slot::Sig1,
                algorithm: Algorithm::EcdhSha256
            })
        );
        let mut tail = pek.clone();
        tail[0x41C + 144] = 1;
        assert_eq!(
            Certificate::decode(&tail),
            Err(Error::SlotReserved {
                slot: Slot::Sig1,
                offset: 0x41C + 144
            })
        );
        let mut r_pad = pek.clone();
        r_pad[0x624 + 50] = 1;
        assert!(matches!(
            Certificate::decode(&r_pad),
            Err(Error::SlotEcdsa {
                slot: Slot::Sig2,
                ..
            })
        ));
        // Data in an empty slot.
        let Some([pdh]) = fixtures("sev::decode_rejects_malformed", ["certs/naples/pdh.cert"])
        else {
            return;
        };
        let mut data = pdh.clone();
        data[0x700] = 1;
        assert!(matches!(
            Certificate::decode(&data),
            Err(Error::EmptySlot {
                slot: Slot::Sig2,
                data: "non-zero",
                ..
            })
        ));
    }
}
