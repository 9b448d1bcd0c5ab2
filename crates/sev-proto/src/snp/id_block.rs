//! The SNP ID block and ID authentication structure
//! (docs/protocol/snp.md#id-block-and-id-authentication): what a guest owner
//! signs to name the launch digest and policy it expects, and what the
//! firmware checks at SNP_LAUNCH_FINISH before it lets the guest run.
//!
//! * [`IdBlock`]: the 0x60-byte ID block (expected launch digest, family and
//!   image id, version, guest SVN, policy).
//! * [`IdAuth`]: the 0x1000-byte ID authentication structure (the ID block's
//!   signature by the ID key, the ID key, and optionally the ID key's
//!   signature by the author key and the author key).
//! * [`IdBlock::sign`] creates the second from the first (the owner's side);
//!   [`verify`] checks both as the firmware does (the firmware's side) and
//!   returns what goes into the guest's attestation reports.
//!
//! Keys are P-384 in the SEV public key encoding (curve 2, coordinates as
//! 72-byte little-endian fields) inside a 0x404-byte structure; signatures
//! are ECDSA P-384 over SHA-384 with R and S as 72-byte little-endian fields
//! inside a 0x200-byte structure. Every byte is checked when decoding: the
//! error says which check failed, and [`IdBlockError::status`] is the
//! firmware status code it becomes (docs/protocol/snp.md#what-launch_finish-checks).

use std::fmt;

use p384::ecdsa::{Signature, SigningKey, VerifyingKey};
use p384::PublicKey;

use super::policy::{GuestPolicy, GuestPolicyError};
use crate::abi::status::Status;
use crate::cert::ecc::{self, COORD_LEN};
use crate::cert::Algorithm;
use crate::hash::{sha384, SHA384_LEN};

/// Length of the ID block.
pub const ID_BLOCK_LEN: usize = 0x60;
/// Length of the ID authentication structure.
pub const ID_AUTH_LEN: usize = 0x1000;
/// Length of a public key structure (curve, QX, QY, reserved).
pub const PUBLIC_KEY_LEN: usize = 0x404;
/// Length of a signature structure (R, S, reserved).
pub const SIGNATURE_LEN: usize = 0x200;
/// The only key algorithm code: ECDSA P-384 with SHA-384.
pub const ALGO_ECDSA_P384_SHA384: u32 = 1;
/// The only ID block version (docs/protocol/choices.md#u25).
pub const ID_BLOCK_VERSION: u32 = 1;
/// The curve code of P-384 in a public key structure.
const CURVE_P384: u32 = 2;

// Offsets inside the ID authentication structure.
const AUTH_ID_KEY_ALGO: usize = 0x000;
const AUTH_AUTHOR_KEY_ALGO: usize = 0x004;
const AUTH_ID_BLOCK_SIG: usize = 0x040;
const AUTH_ID_KEY: usize = 0x240;
const AUTH_ID_KEY_SIG: usize = 0x680;
const AUTH_AUTHOR_KEY: usize = 0x880;
/// The reserved ranges of the ID authentication structure.
const AUTH_RESERVED: [std::ops::Range<usize>; 3] = [
    0x008..AUTH_ID_BLOCK_SIG,
    AUTH_ID_KEY + PUBLIC_KEY_LEN..AUTH_ID_KEY_SIG,
    AUTH_AUTHOR_KEY + PUBLIC_KEY_LEN..ID_AUTH_LEN,
];

/// Which of the two keys a problem concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRole {
    /// The ID key, which signs the ID block.
    Id,
    /// The author key, which signs the ID key.
    Author,
}

impl fmt::Display for KeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyRole::Id => "ID key",
            KeyRole::Author => "author key",
        })
    }
}

/// Which of the two signatures a problem concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureRole {
    /// ID_BLOCK_SIG: the ID key's signature of the ID block.
    IdBlock,
    /// ID_KEY_SIG: the author key's signature of the ID key structure.
    IdKey,
}

impl fmt::Display for SignatureRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureRole::IdBlock => "the ID block's signature (ID_BLOCK_SIG)",
            SignatureRole::IdKey => "the ID key's signature by the author key (ID_KEY_SIG)",
        })
    }
}

/// Why an ID block or ID authentication structure is refused, or could not
/// be made. [`IdBlockError::status`] maps each to the firmware's status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdBlockError {
    /// The input has the wrong length (only byte-slice callers can get this:
    /// the firmware always reads the fixed sizes).
    #[error("{what} is {actual} bytes, expected {expected}")]
    Length {
        /// What was being decoded.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Given length.
        actual: usize,
    },
    /// The ID block's launch digest is not the guest's.
    #[error(
        "the ID block names launch digest {}, the guest's is {}",
        hex(id_block),
        hex(guest)
    )]
    LaunchDigestMismatch {
        /// The digest in the ID block.
        id_block: [u8; SHA384_LEN],
        /// The guest's launch digest.
        guest: [u8; SHA384_LEN],
    },
    /// The ID block's policy is not the guest's.
    #[error("the ID block names policy 0x{id_block:x}, the guest's is 0x{guest:x}")]
    PolicyMismatch {
        /// The policy in the ID block.
        id_block: u64,
        /// The guest's policy.
        guest: u64,
    },
    /// The ID block's policy is not a valid SNP policy.
    #[error("the ID block's policy: {0}")]
    Policy(#[source] GuestPolicyError),
    /// The ID block's version is not 1 (choice U25).
    #[error("ID block version {0} is not supported (only version 1 is defined)")]
    Version(u32),
    /// A key algorithm code is not 1 (ECDSA P-384 with SHA-384).
    #[error("{key} algorithm {code} is not 1 (ECDSA P-384 with SHA-384)")]
    Algorithm {
        /// Whose algorithm.
        key: KeyRole,
        /// The code found.
        code: u32,
    },
    /// A reserved byte of the ID authentication structure is not zero
    /// (choice U26).
    #[error("the ID authentication structure has a non-zero reserved byte at offset 0x{offset:x}")]
    Reserved {
        /// Offset inside the structure.
        offset: usize,
    },
    /// A public key structure is not a P-384 point in the SEV encoding.
    #[error("the {key} is not a valid P-384 public key: {source}")]
    Key {
        /// Which key.
        key: KeyRole,
        /// What is wrong with it.
        #[source]
        source: ecc::Error,
    },
    /// A reserved byte of a public key structure is not zero (choice U26).
    #[error("the {key} structure has a non-zero reserved byte at offset 0x{offset:x}")]
    KeyReserved {
        /// Which key.
        key: KeyRole,
        /// Offset inside the 0x404-byte structure.
        offset: usize,
    },
    /// A signature structure does not hold an ECDSA P-384 signature.
    #[error("{signature} is malformed: {source}")]
    SignatureFormat {
        /// Which signature.
        signature: SignatureRole,
        /// What is wrong with it.
        #[source]
        source: ecc::Error,
    },
    /// A reserved byte of a signature structure is not zero (choice U26).
    #[error("{signature} has a non-zero reserved byte at offset 0x{offset:x}")]
    SignatureReserved {
        /// Which signature.
        signature: SignatureRole,
        /// Offset inside the 0x200-byte structure.
        offset: usize,
    },
    /// A signature does not verify.
    #[error("{0} does not verify")]
    BadSignature(SignatureRole),
    /// Signing failed (creation only).
    #[error("signing the ID block failed: {0}")]
    Signing(#[source] ecc::Error),
}

impl IdBlockError {
    /// The status SNP_LAUNCH_FINISH returns for this error
    /// (docs/protocol/snp.md#what-launch_finish-checks).
    pub fn status(&self) -> Status {
        match self {
            IdBlockError::LaunchDigestMismatch { .. } => Status::BadMeasurement,
            IdBlockError::PolicyMismatch { .. } | IdBlockError::Policy(_) => Status::PolicyFailure,
            IdBlockError::Length { .. }
            | IdBlockError::Version(_)
            | IdBlockError::Algorithm { .. }
            | IdBlockError::Reserved { .. }
            | IdBlockError::Signing(_) => Status::InvalidParam,
            IdBlockError::Key { .. }
            | IdBlockError::KeyReserved { .. }
            | IdBlockError::SignatureFormat { .. }
            | IdBlockError::SignatureReserved { .. }
            | IdBlockError::BadSignature(_) => Status::BadSignature,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_len(what: &'static str, bytes: &[u8], expected: usize) -> Result<(), IdBlockError> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(IdBlockError::Length {
            what,
            expected,
            actual: bytes.len(),
        })
    }
}

fn array<const N: usize>(bytes: &[u8], off: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = bytes.get(off..off + N) {
        out.copy_from_slice(src);
    }
    out
}

fn le32(bytes: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(array(bytes, off))
}

fn le64(bytes: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(array(bytes, off))
}

fn first_nonzero(bytes: &[u8], base: usize) -> Option<usize> {
    bytes.iter().position(|&b| b != 0).map(|i| base + i)
}

/// The 0x60-byte ID block: the launch digest and policy the owner expects,
/// and the identity it gives the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdBlock {
    /// LD, the expected launch digest.
    pub launch_digest: [u8; SHA384_LEN],
    /// FAMILY_ID, chosen by the owner; copied into every report.
    pub family_id: [u8; 16],
    /// IMAGE_ID, chosen by the owner; copied into every report.
    pub image_id: [u8; 16],
    /// VERSION, [`ID_BLOCK_VERSION`].
    pub version: u32,
    /// GUEST_SVN, the guest's security version number; copied into every
    /// report.
    pub guest_svn: u32,
    /// POLICY, which must be the policy the guest was launched with.
    pub policy: GuestPolicy,
}

impl IdBlock {
    /// An ID block for `launch_digest` and `policy` with zero family and
    /// image ids and guest SVN 0 (what `snp-create-id-block` writes).
    pub fn new(launch_digest: [u8; SHA384_LEN], policy: GuestPolicy) -> Self {
        IdBlock {
            launch_digest,
            family_id: [0; 16],
            image_id: [0; 16],
            version: ID_BLOCK_VERSION,
            guest_svn: 0,
            policy,
        }
    }

    /// The 0x60 bytes.
    pub fn encode(&self) -> [u8; ID_BLOCK_LEN] {
        let mut out = [0u8; ID_BLOCK_LEN];
        out[0x00..0x30].copy_from_slice(&self.launch_digest);
        out[0x30..0x40].copy_from_slice(&self.family_id);
        out[0x40..0x50].copy_from_slice(&self.image_id);
        out[0x50..0x54].copy_from_slice(&self.version.to_le_bytes());
        out[0x54..0x58].copy_from_slice(&self.guest_svn.to_le_bytes());
        out[0x58..0x60].copy_from_slice(&self.policy.bits().to_le_bytes());
        out
    }

    /// Decodes exactly [`ID_BLOCK_LEN`] bytes; the version must be 1 and
    /// the policy a valid SNP policy. Every byte is a field, so a decoded
    /// block encodes back to the input.
    pub fn decode(bytes: &[u8]) -> Result<Self, IdBlockError> {
        check_len("ID block", bytes, ID_BLOCK_LEN)?;
        let version = le32(bytes, 0x50);
        // UNCERTAIN (docs/protocol/choices.md#u25): other versions refused.
        if version != ID_BLOCK_VERSION {
            return Err(IdBlockError::Version(version));
        }
        let policy = GuestPolicy::new(le64(bytes, 0x58)).map_err(IdBlockError::Policy)?;
        Ok(IdBlock {
            launch_digest: array(bytes, 0x00),
            family_id: array(bytes, 0x30),
            image_id: array(bytes, 0x40),
            version,
            guest_svn: le32(bytes, 0x54),
            policy,
        })
    }

    /// Signs the block with the ID key and, when given, the ID key with the
    /// author key: the ID authentication structure QEMU's `id-auth` takes
    /// (with `author-key-enabled=on` exactly when `author_key` is given).
    /// The nonces are deterministic (RFC 6979), so the same keys and block
    /// give the same bytes.
    pub fn sign(
        &self,
        id_key: &SigningKey,
        author_key: Option<&SigningKey>,
    ) -> Result<IdAuth, IdBlockError> {
        let sign = |key: &SigningKey, msg: &[u8]| {
            ecc::sign(key, Algorithm::EcdsaSha384, msg).map_err(IdBlockError::Signing)
        };
        let id_public = PublicKey::from(id_key.verifying_key());
        let id_block_signature = sign(id_key, &self.encode())?;
        let author = match author_key {
            Some(author_key) => Some(AuthorEndorsement {
                id_key_signature: sign(author_key, &encode_public_key(&id_public))?,
                author_key: PublicKey::from(author_key.verifying_key()),
            }),
            None => None,
        };
        Ok(IdAuth {
            id_block_signature,
            id_key: id_public,
            author,
        })
    }
}

/// The author key's endorsement of the ID key (present with AUTH_KEY_EN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthorEndorsement {
    /// ID_KEY_SIG: the author key's signature of the ID key structure.
    pub id_key_signature: Signature,
    /// AUTHOR_KEY.
    pub author_key: PublicKey,
}

/// The 0x1000-byte ID authentication structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdAuth {
    /// ID_BLOCK_SIG: the ID key's signature of the 0x60 ID block bytes.
    pub id_block_signature: Signature,
    /// ID_KEY.
    pub id_key: PublicKey,
    /// The author key and its signature of the ID key, if any.
    pub author: Option<AuthorEndorsement>,
}

impl IdAuth {
    /// The 0x1000 bytes. Without an author endorsement, AUTHOR_KEY_ALGO,
    /// ID_KEY_SIG and AUTHOR_KEY are zero.
    pub fn encode(&self) -> [u8; ID_AUTH_LEN] {
        let mut out = [0u8; ID_AUTH_LEN];
        out[AUTH_ID_KEY_ALGO..AUTH_ID_KEY_ALGO + 4]
            .copy_from_slice(&ALGO_ECDSA_P384_SHA384.to_le_bytes());
        out[AUTH_ID_BLOCK_SIG..AUTH_ID_BLOCK_SIG + SIGNATURE_LEN]
            .copy_from_slice(&encode_signature(&self.id_block_signature));
        out[AUTH_ID_KEY..AUTH_ID_KEY + PUBLIC_KEY_LEN]
            .copy_from_slice(&encode_public_key(&self.id_key));
        if let Some(author) = &self.author {
            out[AUTH_AUTHOR_KEY_ALGO..AUTH_AUTHOR_KEY_ALGO + 4]
                .copy_from_slice(&ALGO_ECDSA_P384_SHA384.to_le_bytes());
            out[AUTH_ID_KEY_SIG..AUTH_ID_KEY_SIG + SIGNATURE_LEN]
                .copy_from_slice(&encode_signature(&author.id_key_signature));
            out[AUTH_AUTHOR_KEY..AUTH_AUTHOR_KEY + PUBLIC_KEY_LEN]
                .copy_from_slice(&encode_public_key(&author.author_key));
        }
        out
    }

    /// Decodes exactly [`ID_AUTH_LEN`] bytes in the firmware's order:
    /// the algorithm codes, the reserved areas, the ID key and its
    /// signature of the block, then (only when `author_key_en`, AUTH_KEY_EN
    /// of SNP_LAUNCH_FINISH) the author key and its signature of the ID
    /// key. Without `author_key_en` the author fields are not read at all,
    /// as the firmware does not read them. Signatures are not verified here
    /// (see [`verify`]).
    pub fn decode(bytes: &[u8], author_key_en: bool) -> Result<Self, IdBlockError> {
        check_len("ID authentication structure", bytes, ID_AUTH_LEN)?;
        let id_algo = le32(bytes, AUTH_ID_KEY_ALGO);
        if id_algo != ALGO_ECDSA_P384_SHA384 {
            return Err(IdBlockError::Algorithm {
                key: KeyRole::Id,
                code: id_algo,
            });
        }
        if author_key_en {
            let author_algo = le32(bytes, AUTH_AUTHOR_KEY_ALGO);
            if author_algo != ALGO_ECDSA_P384_SHA384 {
                return Err(IdBlockError::Algorithm {
                    key: KeyRole::Author,
                    code: author_algo,
                });
            }
        }
        // UNCERTAIN (docs/protocol/choices.md#u26): reserved bytes must be zero.
        for range in AUTH_RESERVED {
            if let Some(offset) = first_nonzero(&bytes[range.clone()], range.start) {
                return Err(IdBlockError::Reserved { offset });
            }
        }
        let id_key = decode_public_key(
            KeyRole::Id,
            &bytes[AUTH_ID_KEY..AUTH_ID_KEY + PUBLIC_KEY_LEN],
        )?;
        let id_block_signature = decode_signature(
            SignatureRole::IdBlock,
            &bytes[AUTH_ID_BLOCK_SIG..AUTH_ID_BLOCK_SIG + SIGNATURE_LEN],
        )?;
        let author = if author_key_en {
            Some(AuthorEndorsement {
                author_key: decode_public_key(
                    KeyRole::Author,
                    &bytes[AUTH_AUTHOR_KEY..AUTH_AUTHOR_KEY + PUBLIC_KEY_LEN],
                )?,
                id_key_signature: decode_signature(
                    SignatureRole::IdKey,
                    &bytes[AUTH_ID_KEY_SIG..AUTH_ID_KEY_SIG + SIGNATURE_LEN],
                )?,
            })
        } else {
            None
        };
        Ok(IdAuth {
            id_block_signature,
            id_key,
            author,
        })
    }

    /// ID_KEY_DIGEST: SHA-384 of the ID key structure.
    pub fn id_key_digest(&self) -> [u8; SHA384_LEN] {
        key_digest(&self.id_key)
    }

    /// AUTHOR_KEY_DIGEST: SHA-384 of the author key structure, if there is
    /// an author key (the report holds zeros otherwise).
    pub fn author_key_digest(&self) -> Option<[u8; SHA384_LEN]> {
        self.author.as_ref().map(|a| key_digest(&a.author_key))
    }

    /// Checks both signatures: the ID key's over `id_block` (the 0x60 bytes
    /// as given) and, with an author endorsement, the author key's over the
    /// ID key structure.
    pub fn verify_signatures(&self, id_block: &[u8; ID_BLOCK_LEN]) -> Result<(), IdBlockError> {
        let verify = |key: &PublicKey, msg: &[u8], sig: &Signature, role| {
            ecc::verify(&VerifyingKey::from(key), Algorithm::EcdsaSha384, msg, sig)
                .map_err(|_| IdBlockError::BadSignature(role))
        };
        verify(
            &self.id_key,
            id_block,
            &self.id_block_signature,
            SignatureRole::IdBlock,
        )?;
        if let Some(author) = &self.author {
            verify(
                &author.author_key,
                &encode_public_key(&self.id_key),
                &author.id_key_signature,
                SignatureRole::IdKey,
            )?;
        }
        Ok(())
    }
}

/// Encodes a P-384 public key as the 0x404-byte structure: curve 2, QX and
/// QY as 72-byte little-endian fields, zero reserved bytes.
pub fn encode_public_key(key: &PublicKey) -> [u8; PUBLIC_KEY_LEN] {
    let mut out = [0u8; PUBLIC_KEY_LEN];
    let (qx, qy) = ecc::p384_to_le(key);
    out[0..4].copy_from_slice(&CURVE_P384.to_le_bytes());
    out[4..4 + COORD_LEN].copy_from_slice(&qx);
    out[4 + COORD_LEN..4 + 2 * COORD_LEN].copy_from_slice(&qy);
    out
}

/// Decodes a 0x404-byte public key structure: curve 2, a point on P-384
/// (coordinates below the field prime, zero padding, not the identity) and
/// zero reserved bytes.
pub fn decode_public_key(role: KeyRole, bytes: &[u8]) -> Result<PublicKey, IdBlockError> {
    check_len("public key structure", bytes, PUBLIC_KEY_LEN)?;
    let curve = le32(bytes, 0);
    if curve != CURVE_P384 {
        let source = match ecc::Curve::from_code(curve) {
            Ok(known) => ecc::Error::UnsupportedCurve(known),
            Err(unknown) => unknown,
        };
        return Err(IdBlockError::Key { key: role, source });
    }
    let end = 4 + 2 * COORD_LEN;
    if let Some(offset) = first_nonzero(&bytes[end..], end) {
        return Err(IdBlockError::KeyReserved { key: role, offset });
    }
    ecc::p384_from_le(&bytes[4..4 + COORD_LEN], &bytes[4 + COORD_LEN..end])
        .map_err(|source| IdBlockError::Key { key: role, source })
}

/// SHA-384 of a key's 0x404-byte structure: the ID_KEY_DIGEST or
/// AUTHOR_KEY_DIGEST of an attestation report.
pub fn key_digest(key: &PublicKey) -> [u8; SHA384_LEN] {
    sha384(&encode_public_key(key))
}

/// Encodes an ECDSA signature as the 0x200-byte structure: R and S as
/// 72-byte little-endian fields, zero reserved bytes.
pub fn encode_signature(sig: &Signature) -> [u8; SIGNATURE_LEN] {
    let mut out = [0u8; SIGNATURE_LEN];
    out[..ecc::SIGNATURE_LEN].copy_from_slice(&ecc::encode_signature(sig));
    out
}

/// Decodes a 0x200-byte signature structure: R and S in `[1, n-1]` with
/// zero padding, zero reserved bytes.
pub fn decode_signature(role: SignatureRole, bytes: &[u8]) -> Result<Signature, IdBlockError> {
    check_len("signature structure", bytes, SIGNATURE_LEN)?;
    let (rs, reserved) = bytes.split_at(ecc::SIGNATURE_LEN);
    if let Some(offset) = first_nonzero(reserved, ecc::SIGNATURE_LEN) {
        return Err(IdBlockError::SignatureReserved {
            signature: role,
            offset,
        });
    }
    ecc::decode_signature(rs).map_err(|source| IdBlockError::SignatureFormat {
        signature: role,
        source,
    })
}

/// What [`verify`] checks the ID block against: the guest's state at
/// SNP_LAUNCH_FINISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// The guest's launch digest.
    pub launch_digest: [u8; SHA384_LEN],
    /// The policy the guest was launched with.
    pub policy: GuestPolicy,
}

/// What a verified ID block gives the guest: the fields the firmware keeps
/// and copies into every attestation report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// FAMILY_ID.
    pub family_id: [u8; 16],
    /// IMAGE_ID.
    pub image_id: [u8; 16],
    /// GUEST_SVN.
    pub guest_svn: u32,
    /// ID_KEY_DIGEST.
    pub id_key_digest: [u8; SHA384_LEN],
    /// AUTHOR_KEY_DIGEST when AUTH_KEY_EN was set (the report holds zeros
    /// otherwise).
    pub author_key_digest: Option<[u8; SHA384_LEN]>,
}

/// Checks an ID block and ID authentication structure as SNP_LAUNCH_FINISH
/// does with ID_BLOCK_EN, in the firmware's order
/// (docs/protocol/snp.md#what-launch_finish-checks): the launch digest, the
/// policy, the version, the algorithms and reserved bytes, the keys, the
/// signatures. `author_key_en` is AUTH_KEY_EN: without it the author key
/// and its signature are ignored and the author digest is absent.
pub fn verify(
    id_block: &[u8],
    id_auth: &[u8],
    author_key_en: bool,
    expected: &Expected,
) -> Result<Identity, IdBlockError> {
    check_len("ID block", id_block, ID_BLOCK_LEN)?;
    check_len("ID authentication structure", id_auth, ID_AUTH_LEN)?;
    let block_bytes: [u8; ID_BLOCK_LEN] = array(id_block, 0);
    let launch_digest: [u8; SHA384_LEN] = array(id_block, 0);
    if launch_digest != expected.launch_digest {
        return Err(IdBlockError::LaunchDigestMismatch {
            id_block: launch_digest,
            guest: expected.launch_digest,
        });
    }
    let policy = le64(id_block, 0x58);
    if policy != expected.policy.bits() {
        return Err(IdBlockError::PolicyMismatch {
            id_block: policy,
            guest: expected.policy.bits(),
        });
    }
    let block = IdBlock::decode(id_block)?;
    let auth = IdAuth::decode(id_auth, author_key_en)?;
    auth.verify_signatures(&block_bytes)?;
    Ok(Identity {
        family_id: block.family_id,
        image_id: block.image_id,
        guest_svn: block.guest_svn,
        id_key_digest: sha384(&id_auth[AUTH_ID_KEY..AUTH_ID_KEY + PUBLIC_KEY_LEN]),
        author_key_digest: author_key_en
            .then(|| sha384(&id_auth[AUTH_AUTHOR_KEY..AUTH_AUTHOR_KEY + PUBLIC_KEY_LEN])),
    })
}

#[cfg(test)]
mod tests;
