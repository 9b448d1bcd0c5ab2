//! The sealed container every platform state file is wrapped in: the payload
//! framed by a magic, a format version and its length, followed by a SHA-256
//! over everything before it.
//!
//! ```text
//! 0x00  8   magic  "sevm-psp"
//! 0x08  4   format version, little-endian (1)
//! 0x0C  4   payload length n, little-endian
//! 0x10  n   payload
//! 0x10+n 32 SHA-256 of bytes 0x00..0x10+n
//! ```
//!
//! The checksum detects accidental damage (truncation, bit rot, a partial copy
//! by hand), not tampering: anyone who can write the file can recompute it.
//! [`open_sealed`] reports every kind of damage as its own variant and never
//! repairs anything; the firmware maps all of them to SECURE_DATA_INVALID.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// First eight bytes of every sealed file.
pub const MAGIC: [u8; 8] = *b"sevm-psp";
/// The container format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest payload accepted (state files are a few KiB).
pub const MAX_PAYLOAD_LEN: usize = 1 << 20;

const HEADER_LEN: usize = 16;
const CHECKSUM_LEN: usize = 32;
/// Size of the container around the payload.
pub const OVERHEAD: usize = HEADER_LEN + CHECKSUM_LEN;

/// Why sealed bytes cannot be made or opened. Every variant except
/// [`SealError::PayloadTooLarge`] means the bytes are damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Sealing: the payload is larger than [`MAX_PAYLOAD_LEN`].
    #[error("payload of {len} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Fewer bytes than the header, or than the header's length field needs.
    #[error("truncated: {len} bytes, the container needs {need}")]
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes the container needs.
        need: usize,
    },
    /// The file does not start with [`MAGIC`].
    #[error("not a sevm platform state file (bad magic)")]
    BadMagic,
    /// The length field exceeds [`MAX_PAYLOAD_LEN`].
    #[error("length field of {declared} bytes exceeds the limit of {max} bytes")]
    BadLength {
        /// The length field's value.
        declared: u64,
        /// The limit.
        max: usize,
    },
    /// Bytes follow the checksum.
    #[error("{extra} unexpected bytes after the checksum")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// The SHA-256 does not match the contents.
    #[error("checksum mismatch")]
    ChecksumMismatch,
    /// Intact, but written in a format version this build does not read.
    #[error("format version {found}, this build reads version {supported}")]
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
}

/// Wraps `payload` in the container. The result holds the payload, so it is
/// zeroed on drop.
pub fn seal(payload: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let too_large = SealError::PayloadTooLarge {
        len: payload.len(),
        max: MAX_PAYLOAD_LEN,
    };
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(too_large);
    }
    let len = u32::try_from(payload.len()).map_err(|_| too_large)?;
    let mut out = Zeroizing::new(Vec::with_capacity(payload.len() + OVERHEAD));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
    let checksum = Sha256::digest(out.as_slice());
    out.extend_from_slice(&checksum);
    Ok(out)
}

fn le32(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

/// Checks the container and returns the payload inside `bytes`.
pub fn open_sealed(bytes: &[u8]) -> Result<&[u8], SealError> {
    let truncated = |need: usize| SealError::Truncated {
        len: bytes.len(),
        need,
    };
    let (Some(magic), Some(version), Some(declared)) =
        (bytes.get(..MAGIC.len()), le32(bytes, 8), le32(bytes, 12))
    else {
        return Err(truncated(OVERHEAD));
    };
    if bytes.len() < OVERHEAD {
        return Err(truncated(OVERHEAD));
    }
    if magic != MAGIC {
        return Err(SealError::BadMagic);
    }
    let payload_len = usize::try_from(declared)
        .ok()
        .filter(|&n| n <= MAX_PAYLOAD_LEN)
        .ok_or(SealError::BadLength {
            declared: u64::from(declared),
            max: MAX_PAYLOAD_LEN,
        })?;
    let body_len = HEADER_LEN + payload_len;
    let need = body_len + CHECKSUM_LEN;
    if bytes.len() < need {
        return Err(truncated(need));
    }
    if bytes.len() > need {
        return Err(SealError::TrailingBytes {
            extra: bytes.len() - need,
        });
    }
    let (Some(body), Some(stored)) = (bytes.get(..body_len), bytes.get(body_len..)) else {
        return Err(truncated(need));
    };
    let computed = Sha256::digest(body);
    if !bool::from(computed.as_slice().ct_eq(stored)) {
        return Err(SealError::ChecksumMismatch);
    }
    if version != FORMAT_VERSION {
        return Err(SealError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    body.get(HEADER_LEN..).ok_or(truncated(need))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_round_trip() {
        let sealed = seal(b"payload").unwrap();
        assert_eq!(sealed.len(), 7 + OVERHEAD);
        assert_eq!(&sealed[..8], b"sevm-psp");
        assert_eq!(&sealed[8..16], &[1, 0, 0, 0, 7, 0, 0, 0]);
        assert_eq!(&sealed[16..23], b"payload");
        assert_eq!(&sealed[23..], Sha256::digest(&sealed[..23]).as_slice());
        assert_eq!(open_sealed(&sealed).unwrap(), b"payload");
        assert_eq!(open_sealed(&seal(b"").unwrap()).unwrap(), b"");
    }

    #[test]
    fn each_kind_of_damage_is_named() {
        let sealed = seal(b"0123456789").unwrap();
        let mut bad_magic = sealed.to_vec();
        bad_magic[0] ^= 0x20;
        assert_eq!(open_sealed(&bad_magic), Err(SealError::BadMagic));
        let mut trailing = sealed.to_vec();
        trailing.push(0);
        assert_eq!(
            open_sealed(&trailing),
            Err(SealError::TrailingBytes { extra: 1 })
        );
        assert_eq!(
            open_sealed(&sealed[..sealed.len() - 1]),
            Err(SealError::Truncated {
                len: sealed.len() - 1,
                need: sealed.len()
            })
        );
        assert_eq!(
            open_sealed(&sealed[..3]),
            Err(SealError::Truncated {
                len: 3,
                need: OVERHEAD
            })
        );
        let mut flipped = sealed.to_vec();
        flipped[20] ^= 1;
        assert_eq!(open_sealed(&flipped), Err(SealError::ChecksumMismatch));
        let mut huge = sealed.to_vec();
        huge[15] = 0xff;
        assert!(matches!(
            open_sealed(&huge),
            Err(SealError::BadLength { .. })
        ));
    }

    #[test]
    fn a_newer_intact_version_is_reported_as_such() {
        let mut body = seal(b"x").unwrap()[..17].to_vec();
        body[8] = 2;
        let checksum = Sha256::digest(&body);
        body.extend_from_slice(&checksum);
        assert_eq!(
            open_sealed(&body),
            Err(SealError::UnsupportedVersion {
                found: 2,
                supported: 1
            })
        );
    }

    #[test]
    fn oversized_payload_is_refused() {
        let big = vec![0u8; MAX_PAYLOAD_LEN + 1];
        assert_eq!(
            seal(&big).unwrap_err(),
            SealError::PayloadTooLarge {
                len: MAX_PAYLOAD_LEN + 1,
                max: MAX_PAYLOAD_LEN
            }
        );
    }
}
