//! SEV encodings of elliptic-curve keys and ECDSA signatures
//! (docs/protocol/certificates.md#sev-certificate, docs/protocol/measurement.md#attestation-report)
//! and their conversion to and from RustCrypto's P-384 types.
//!
//! * Public key: CURVE (u32 LE: 1 = P-256, 2 = P-384), QX (72 bytes), QY
//!   (72 bytes), coordinates little-endian and zero-padded.
//! * ECDSA signature: R (72 bytes LE) ‖ S (72 bytes LE).
//!
//! Decoding is strict so that every stored byte is significant: padding
//! bytes beyond the curve's width must be zero, coordinates must be below the
//! field prime, the point must be on the curve and not the identity, and R/S
//! must lie in `[1, n-1]`.
//!
//! Signing and verification hash the message with the digest the algorithm
//! code names and use the prehash form of ECDSA. A P-384 key with SHA-256
//! (`ECDSA_SHA256`) is normal on real hardware (docs/protocol/choices.md#u20): the
//! 32-byte digest is used as the ECDSA input as-is (it is shorter than the
//! group order, so no truncation happens).

use std::fmt;

use p384::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p384::ecdsa::{Signature, SigningKey, VerifyingKey};
use p384::elliptic_curve::sec1::{EncodedPoint, FromEncodedPoint, ToEncodedPoint};
use p384::PublicKey;

use super::{le32, Algorithm, HashAlgorithm, KeyKind};

/// Width of one coordinate / scalar field in SEV structures.
pub const COORD_LEN: usize = 72;
/// Significant bytes of a P-384 coordinate or scalar.
pub const P384_LEN: usize = 48;
/// Significant bytes of a P-256 coordinate.
pub const P256_LEN: usize = 32;
/// Length of the encoded public key: CURVE ‖ QX ‖ QY.
pub const PUBLIC_KEY_LEN: usize = 4 + 2 * COORD_LEN;
/// Length of the encoded signature: R ‖ S.
pub const SIGNATURE_LEN: usize = 2 * COORD_LEN;

/// The P-384 field prime p, big-endian.
const P384_P: [u8; P384_LEN] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff,
];

/// Which coordinate or scalar a problem was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// Public key x coordinate.
    X,
    /// Public key y coordinate.
    Y,
    /// Signature R.
    R,
    /// Signature S.
    S,
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Component::X => "QX",
            Component::Y => "QY",
            Component::R => "R",
            Component::S => "S",
        })
    }
}

/// Errors of the EC encodings and of ECDSA.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input has the wrong length.
    #[error("{what} is {actual} bytes, expected {expected}")]
    Length {
        /// What was being decoded.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Given length.
        actual: usize,
    },
    /// The curve code is not 1 (P-256) or 2 (P-384).
    #[error("unknown curve code {0:#x}")]
    UnknownCurve(u32),
    /// The curve is known but this implementation has no arithmetic for it.
    #[error("curve {0} is not supported for cryptography (only P-384 is)")]
    UnsupportedCurve(Curve),
    /// A padding byte beyond the curve's width is non-zero.
    #[error("{component} has a non-zero byte at offset {offset} beyond its {width}-byte width")]
    NonZeroPadding {
        /// The coordinate or scalar.
        component: Component,
        /// Offset of the byte inside the 72-byte field.
        offset: usize,
        /// Significant width in bytes.
        width: usize,
    },
    /// A coordinate is not below the field prime.
    #[error("{0} is not below the P-384 field prime")]
    CoordinateOutOfRange(Component),
    /// Both coordinates are zero (the identity has no affine encoding).
    #[error("the public key is the point at infinity")]
    Identity,
    /// The coordinates are not a point of P-384.
    #[error("the public key is not a point on P-384")]
    NotOnCurve,
    /// R or S is zero or not below the group order.
    #[error("signature R or S is zero or not below the P-384 group order")]
    ScalarOutOfRange,
    /// The algorithm code does not name an ECDSA signature.
    #[error("algorithm {0} is not an ECDSA signature algorithm")]
    NotEcdsa(Algorithm),
    /// Signing failed inside the ECDSA implementation.
    #[error("ECDSA signing failed")]
    Signing,
    /// The signature does not verify.
    #[error("ECDSA signature does not verify")]
    BadSignature,
}

/// EC curve codes of SEV public keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// NIST P-256 (code 1): parsed, but unsupported for cryptography.
    P256,
    /// NIST P-384 (code 2): used by every real SEV key.
    P384,
}

impl Curve {
    /// The 32-bit code stored in certificates.
    pub const fn code(self) -> u32 {
        match self {
            Curve::P256 => 1,
            Curve::P384 => 2,
        }
    }

    /// The curve for a code.
    pub const fn from_code(code: u32) -> Result<Self, Error> {
        match code {
            1 => Ok(Curve::P256),
            2 => Ok(Curve::P384),
            other => Err(Error::UnknownCurve(other)),
        }
    }

    /// Significant bytes of a coordinate.
    pub const fn width(self) -> usize {
        match self {
            Curve::P256 => P256_LEN,
            Curve::P384 => P384_LEN,
        }
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        })
    }
}

/// An EC public key as found in a SEV certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EcPublicKey {
    /// A validated P-384 point.
    P384(PublicKey),
    /// A P-256 key, kept as stored (little-endian coordinates); no arithmetic
    /// is available for it, so it is not checked to be on the curve.
    P256 {
        /// x, little-endian.
        qx: [u8; P256_LEN],
        /// y, little-endian.
        qy: [u8; P256_LEN],
    },
}

impl EcPublicKey {
    /// Decodes CURVE ‖ QX ‖ QY (exactly [`PUBLIC_KEY_LEN`] bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != PUBLIC_KEY_LEN {
            return Err(Error::Length {
                what: "EC public key",
                expected: PUBLIC_KEY_LEN,
                actual: bytes.len(),
            });
        }
        let curve = Curve::from_code(le32(bytes, 0).unwrap_or(u32::MAX))?;
        let (qx, qy) = bytes[4..].split_at(COORD_LEN);
        match curve {
            Curve::P384 => p384_from_le(qx, qy).map(EcPublicKey::P384),
            Curve::P256 => {
                let x = significant(qx, P256_LEN, Component::X)?;
                let y = significant(qy, P256_LEN, Component::Y)?;
                let mut out_x = [0u8; P256_LEN];
                let mut out_y = [0u8; P256_LEN];
                out_x.copy_from_slice(x);
                out_y.copy_from_slice(y);
                if out_x == [0; P256_LEN] && out_y == [0; P256_LEN] {
                    return Err(Error::Identity);
                }
                Ok(EcPublicKey::P256 {
                    qx: out_x,
                    qy: out_y,
                })
            }
        }
    }

    /// Encodes CURVE ‖ QX ‖ QY.
    pub fn encode(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut out = [0u8; PUBLIC_KEY_LEN];
        out[..4].copy_from_slice(&self.curve().code().to_le_bytes());
        match self {
            EcPublicKey::P384(key) => {
                let (qx, qy) = p384_to_le(key);
                out[4..4 + COORD_LEN].copy_from_slice(&qx);
                out[4 + COORD_LEN..].copy_from_slice(&qy);
            }
            EcPublicKey::P256 { qx, qy } => {
                out[4..4 + P256_LEN].copy_from_slice(qx);
                out[4 + COORD_LEN..4 + COORD_LEN + P256_LEN].copy_from_slice(qy);
            }
        }
        out
    }

    /// The key's curve.
    pub fn curve(&self) -> Curve {
        match self {
            EcPublicKey::P384(_) => Curve::P384,
            EcPublicKey::P256 { .. } => Curve::P256,
        }
    }

    /// The P-384 key, or [`Error::UnsupportedCurve`].
    pub fn p384(&self) -> Result<&PublicKey, Error> {
        match self {
            EcPublicKey::P384(key) => Ok(key),
            EcPublicKey::P256 { .. } => Err(Error::UnsupportedCurve(Curve::P256)),
        }
    }
}

/// The first `width` bytes of a 72-byte little-endian field, after checking
/// that the rest is zero.
fn significant(field: &[u8], width: usize, component: Component) -> Result<&[u8], Error> {
    if field.len() != COORD_LEN {
        return Err(Error::Length {
            what: "EC field",
            expected: COORD_LEN,
            actual: field.len(),
        });
    }
    let (value, pad) = field.split_at(width);
    if let Some(offset) = super::first_nonzero(pad, width) {
        return Err(Error::NonZeroPadding {
            component,
            offset,
            width,
        });
    }
    Ok(value)
}

/// 48 little-endian bytes (after the padding check) as big-endian.
fn le_to_be48(field: &[u8], component: Component) -> Result<[u8; P384_LEN], Error> {
    let value = significant(field, P384_LEN, component)?;
    let mut be = [0u8; P384_LEN];
    for (dst, src) in be.iter_mut().zip(value.iter().rev()) {
        *dst = *src;
    }
    Ok(be)
}

/// 48 big-endian bytes as a 72-byte zero-padded little-endian field.
fn be48_to_le72(be: &[u8]) -> [u8; COORD_LEN] {
    let mut out = [0u8; COORD_LEN];
    for (dst, src) in out.iter_mut().zip(be.iter().rev()) {
        *dst = *src;
    }
    out
}

/// Converts little-endian 72-byte QX/QY fields to a P-384 public key,
/// rejecting non-zero padding, coordinates ≥ p, the identity and points not
/// on the curve.
pub fn p384_from_le(qx: &[u8], qy: &[u8]) -> Result<PublicKey, Error> {
    let x = le_to_be48(qx, Component::X)?;
    let y = le_to_be48(qy, Component::Y)?;
    // Big-endian byte strings of equal length compare like the integers.
    if x >= P384_P {
        return Err(Error::CoordinateOutOfRange(Component::X));
    }
    if y >= P384_P {
        return Err(Error::CoordinateOutOfRange(Component::Y));
    }
    if x == [0; P384_LEN] && y == [0; P384_LEN] {
        return Err(Error::Identity);
    }
    let point =
        EncodedPoint::<p384::NistP384>::from_affine_coordinates(&x.into(), &y.into(), false);
    Option::from(PublicKey::from_encoded_point(&point)).ok_or(Error::NotOnCurve)
}

/// Converts a P-384 public key to little-endian 72-byte QX/QY fields.
pub fn p384_to_le(key: &PublicKey) -> ([u8; COORD_LEN], [u8; COORD_LEN]) {
    let point = key.to_encoded_point(false);
    // An uncompressed encoding of a valid public key always has both
    // coordinates; the fallbacks are unreachable.
    let qx = point.x().map(|x| be48_to_le72(x)).unwrap_or([0; COORD_LEN]);
    let qy = point.y().map(|y| be48_to_le72(y)).unwrap_or([0; COORD_LEN]);
    (qx, qy)
}

/// Decodes R ‖ S (exactly [`SIGNATURE_LEN`] bytes, little-endian, padding
/// zero, both in `[1, n-1]`).
pub fn decode_signature(bytes: &[u8]) -> Result<Signature, Error> {
    if bytes.len() != SIGNATURE_LEN {
        return Err(Error::Length {
            what: "ECDSA signature",
            expected: SIGNATURE_LEN,
            actual: bytes.len(),
        });
    }
    let (r, s) = bytes.split_at(COORD_LEN);
    let r = le_to_be48(r, Component::R)?;
    let s = le_to_be48(s, Component::S)?;
    Signature::from_scalars(r, s).map_err(|_| Error::ScalarOutOfRange)
}

/// Encodes a signature as R ‖ S, little-endian, zero-padded.
pub fn encode_signature(sig: &Signature) -> [u8; SIGNATURE_LEN] {
    let (r, s) = sig.split_bytes();
    let mut out = [0u8; SIGNATURE_LEN];
    out[..COORD_LEN].copy_from_slice(&be48_to_le72(&r));
    out[COORD_LEN..].copy_from_slice(&be48_to_le72(&s));
    out
}

fn ecdsa_hash(algo: Algorithm) -> Result<HashAlgorithm, Error> {
    match (algo.kind(), algo.hash()) {
        (KeyKind::Ecdsa, Some(h)) => Ok(h),
        _ => Err(Error::NotEcdsa(algo)),
    }
}

/// Signs `msg` with a P-384 key: ECDSA over the digest `algo` names
/// (`EcdsaSha256` or `EcdsaSha384`), deterministic nonces (RFC 6979).
pub fn sign(key: &SigningKey, algo: Algorithm, msg: &[u8]) -> Result<Signature, Error> {
    let digest = ecdsa_hash(algo)?.digest(msg);
    key.sign_prehash(&digest).map_err(|_| Error::Signing)
}

/// Verifies an ECDSA signature over `msg` with the digest `algo` names.
pub fn verify(
    key: &VerifyingKey,
    algo: Algorithm,
    msg: &[u8],
    sig: &Signature,
) -> Result<(), Error> {
    let digest = ecdsa_hash(algo)?.digest(msg);
    key.verify_prehash(&digest, sig)
        .map_err(|_| Error::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/protocol/test-vectors.md#ecdh-session: PDH coordinates of the Naples fixture,
    /// big-endian.
    const NAPLES_PDH_QX: &str = "36024908d6d5b6a134c1c9aff652c39eaec13f3afeb487ac6210f119199e08e677245f8f4fe9c63ad525245457205295";
    const NAPLES_PDH_QY: &str = "3ec89bb2111b4297695805b4111982f44540f44bc45e5c19719dd726a1e05bb450a41736f6d21d84e92aab209ff16f03";

    fn le72_from_be_hex(h: &str) -> [u8; COORD_LEN] {
        be48_to_le72(&hex::decode(h).unwrap())
    }

    fn encoded(curve: u32, qx: &[u8; COORD_LEN], qy: &[u8; COORD_LEN]) -> Vec<u8> {
        let mut v = curve.to_le_bytes().to_vec();
        v.extend_from_slice(qx);
        v.extend_from_slice(qy);
        v
    }

    #[test]
    fn naples_pdh_key_decodes_from_fixture() {
        let Some([pdh]) = super::super::testutil::fixtures(
            "naples_pdh_key_decodes_from_fixture",
            ["certs/naples/pdh.cert"],
        ) else {
            return;
        };
        let key = EcPublicKey::decode(&pdh[0x10..0x10 + PUBLIC_KEY_LEN]).unwrap();
        let point = key.p384().unwrap().to_encoded_point(false);
        assert_eq!(hex::encode(point.x().unwrap()), NAPLES_PDH_QX);
        assert_eq!(hex::encode(point.y().unwrap()), NAPLES_PDH_QY);
        assert_eq!(key.encode().as_slice(), &pdh[0x10..0x10 + PUBLIC_KEY_LEN]);
    }

    #[test]
    fn godh_key_encoding_matches_reference() {
        // docs/protocol/test-vectors.md#ecdh-session: GODH d = SHA-384("sev-reference-godh") mod n;
        // its QX as stored in the cert (LE).
        let d = hex::decode("8fe744ddc6481f755c4ea0234fbfd45e44374c265107bf7b47de043007e469369e830f953ac8b691b136e3cddb269fae").unwrap();
        let sk = SigningKey::from_slice(&d).unwrap();
        let (qx, _qy) = p384_to_le(&PublicKey::from(sk.verifying_key()));
        assert_eq!(
            hex::encode(qx),
            "8fe04bda8328200b8945b1301a4994cf205d8b7a1d41dc7ea14ce8855f381750ef3a7b76d18f68d915e569ea6bc84bf5"
                .to_owned()
                + &"00".repeat(24)
        );
    }

    #[test]
    fn rejects_bad_points() {
        let qx = le72_from_be_hex(NAPLES_PDH_QX);
        let qy = le72_from_be_hex(NAPLES_PDH_QY);
        assert!(EcPublicKey::decode(&encoded(2, &qx, &qy)).is_ok());

        // Not on the curve.
        let mut bad = qy;
        bad[0] ^= 1;
        assert_eq!(
            EcPublicKey::decode(&encoded(2, &qx, &bad)),
            Err(Error::NotOnCurve)
        );
        // Identity.
        let zero = [0u8; COORD_LEN];
        assert_eq!(
            EcPublicKey::decode(&encoded(2, &zero, &zero)),
            Err(Error::Identity)
        );
        // Coordinate >= p (p itself, and all-ones).
        let p_le = be48_to_le72(&P384_P);
        assert_eq!(
            EcPublicKey::decode(&encoded(2, &p_le, &qy)),
            Err(Error::CoordinateOutOfRange(Component::X))
        );
        let mut ones = [0u8; COORD_LEN];
        ones[..P384_LEN].fill(0xff);
        assert_eq!(
            EcPublicKey::decode(&encoded(2, &qx, &ones)),
            Err(Error::CoordinateOutOfRange(Component::Y))
        );
        // Non-zero beyond 48 bytes.
        let mut padded = qx;
        padded[60] = 1;
        assert_eq!(
            EcPublicKey::decode(&encoded(2, &padded, &qy)),
            Err(Error::NonZeroPadding {
                component: Component::X,
                offset: 60,
                width: 48
            })
        );
        // Unknown curve codes.
        for c in [0, 3, 0x102] {
            assert_eq!(
                EcPublicKey::decode(&encoded(c, &qx, &qy)),
                Err(Error::UnknownCurve(c))
            );
        }
        // Wrong length.
        assert!(matches!(
            EcPublicKey::decode(&encoded(2, &qx, &qy)[1..]),
            Err(Error::Length { .. })
        ));
    }

    #[test]
    fn p256_is_parsed_but_unsupported() {
        let mut qx = [0u8; COORD_LEN];
        let mut qy = [0u8; COORD_LEN];
        qx[..P256_LEN].fill(7);
        qy[..P256_LEN].fill(9);
        let bytes = encoded(1, &qx, &qy);
        let key = EcPublicKey::decode(&bytes).unwrap();
        assert_eq!(key.curve(), Curve::P256);
        assert_eq!(key.encode().as_slice(), bytes.as_slice());
        assert_eq!(key.p384(), Err(Error::UnsupportedCurve(Curve::P256)));
        // Beyond 32 bytes must be zero for P-256.
        qx[40] = 1;
        assert!(matches!(
            EcPublicKey::decode(&encoded(1, &qx, &qy)),
            Err(Error::NonZeroPadding { offset: 40, .. })
        ));
    }

    #[test]
    fn sign_verify_both_hashes() {
        let sk = crate::cert::testutil::ec_key(1);
        let vk = sk.verifying_key();
        for algo in [Algorithm::EcdsaSha256, Algorithm::EcdsaSha384] {
            let sig = sign(&sk, algo, b"message").unwrap();
            verify(vk, algo, b"message", &sig).unwrap();
            assert_eq!(verify(vk, algo, b"messagf", &sig), Err(Error::BadSignature));
            let other = if algo == Algorithm::EcdsaSha256 {
                Algorithm::EcdsaSha384
            } else {
                Algorithm::EcdsaSha256
            };
            assert_eq!(
                verify(vk, other, b"message", &sig),
                Err(Error::BadSignature)
            );
            let enc = encode_signature(&sig);
            assert_eq!(decode_signature(&enc).unwrap(), sig);
        }
        for bad in [Algorithm::None, Algorithm::EcdhSha256, Algorithm::RsaSha384] {
            assert_eq!(sign(&sk, bad, b"m"), Err(Error::NotEcdsa(bad)));
        }
    }

    #[test]
    fn sha256_prehash_is_plain_ecdsa_of_the_digest() {
        // A P-384 key over a SHA-256 digest (docs/protocol/choices.md#u20): the
        // signature must verify as ECDSA over the 32-byte digest interpreted as
        // an integer, i.e. the same as prehash verification with that digest.
        use sha2::Digest as _;
        let sk = crate::cert::testutil::ec_key(2);
        let sig = sign(&sk, Algorithm::EcdsaSha256, b"abc").unwrap();
        let digest = sha2::Sha256::digest(b"abc");
        sk.verifying_key().verify_prehash(&digest, &sig).unwrap();
    }

    #[test]
    fn signature_decoding_rejects_bad_scalars() {
        let sk = crate::cert::testutil::ec_key(3);
        let sig = sign(&sk, Algorithm::EcdsaSha256, b"x").unwrap();
        let enc = encode_signature(&sig);
        let mut padded = enc;
        padded[COORD_LEN + 50] = 1;
        assert!(matches!(
            decode_signature(&padded),
            Err(Error::NonZeroPadding {
                component: Component::S,
                offset: 50,
                ..
            })
        ));
        let mut zero_r = enc;
        zero_r[..COORD_LEN].fill(0);
        assert_eq!(decode_signature(&zero_r), Err(Error::ScalarOutOfRange));
        let mut big_r = enc;
        big_r[..P384_LEN].fill(0xff);
        assert_eq!(decode_signature(&big_r), Err(Error::ScalarOutOfRange));
        assert!(matches!(
            decode_signature(&enc[..100]),
            Err(Error::Length { .. })
        ));
    }
}
