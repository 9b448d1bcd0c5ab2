//! AMD CA certificates: the ARK and the ASK (docs/protocol/certificates.md#amd-ca-certificate), and
//! the RSASSA-PSS scheme every RSA signature of the SEV chain uses.
//!
//! Layout: VERSION (=1) | KEY_ID (16) | CERTIFYING_ID (16) | KEY_USAGE |
//! reserved (16, zero) | PUB_EXP_SIZE (bits) | MODULUS_SIZE (bits) | PUB_EXP
//! (PUB_EXP_SIZE/8, LE) | MODULUS (MODULUS_SIZE/8, LE) | SIGNATURE
//! (MODULUS_SIZE/8, LE). The signature covers everything before it.
//!
//! Decoding is strict so that any change to the bytes is either refused here
//! or breaks a signature: sizes only 2048 or 4096 bits and the total length
//! exact, usage ARK or ASK, reserved bytes zero, the modulus exactly as wide
//! as declared (top bit set), the key acceptable to the `rsa` crate.

use rand_core::CryptoRngCore;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Pss, RsaPrivateKey, RsaPublicKey};
use sha2::{Sha256, Sha384};

use super::{le32, HashAlgorithm, Usage};

/// Length of the fixed header before the exponent.
pub const HEADER_LEN: usize = 0x40;
/// Length of a KEY_ID / CERTIFYING_ID.
pub const KEY_ID_LEN: usize = 16;
/// Total length of a certificate with 2048-bit exponent and modulus fields.
pub const LEN_2048: usize = HEADER_LEN + 3 * 256;
/// Total length of a certificate with 4096-bit exponent and modulus fields.
pub const LEN_4096: usize = HEADER_LEN + 3 * 512;

const OFF_KEY_ID: usize = 0x04;
const OFF_CERTIFYING_ID: usize = 0x14;
const OFF_USAGE: usize = 0x24;
const OFF_RESERVED: usize = 0x28;
const OFF_EXP_SIZE: usize = 0x38;
const OFF_MOD_SIZE: usize = 0x3C;

/// Errors of AMD CA certificates and of RSA-PSS signatures.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Input shorter than the header or not of the length the header implies.
    #[error("AMD CA certificate is {actual} bytes, expected {expected}")]
    Length {
        /// Required length.
        expected: usize,
        /// Given length.
        actual: usize,
    },
    /// VERSION is not 1.
    #[error("AMD CA certificate version {0}, only version 1 is supported")]
    Version(u32),
    /// KEY_USAGE is not a known code.
    #[error("AMD CA certificate key usage")]
    UsageCode(#[source] super::Error),
    /// KEY_USAGE is known but not ARK or ASK.
    #[error("AMD CA certificate has key usage {0}, expected ARK or ASK")]
    Usage(Usage),
    /// A reserved byte is non-zero.
    #[error("AMD CA certificate reserved byte at offset {offset:#x} is non-zero")]
    Reserved {
        /// Offset inside the certificate.
        offset: usize,
    },
    /// PUB_EXP_SIZE or MODULUS_SIZE is not 2048 or 4096.
    #[error("AMD CA certificate {field} is {bits} bits, expected 2048 or 4096")]
    KeySize {
        /// "PUB_EXP_SIZE" or "MODULUS_SIZE".
        field: &'static str,
        /// The declared size.
        bits: u32,
    },
    /// The modulus does not have exactly the declared bit length.
    #[error("RSA modulus is {actual} bits wide, MODULUS_SIZE says {declared}")]
    ModulusWidth {
        /// MODULUS_SIZE.
        declared: u32,
        /// Bit length of the stored modulus.
        actual: usize,
    },
    /// The RSA key is unusable (even modulus, bad exponent, ...).
    #[error("invalid RSA public key")]
    Key(#[source] rsa::Error),
    /// A private key of an unsupported size was given for signing.
    #[error("RSA key of {bits} bits, only 2048 and 4096 are supported")]
    SigningKeySize {
        /// Modulus bits of the given key.
        bits: usize,
    },
    /// The private key given to sign with does not belong to the issuer's certificate.
    #[error("the signing key does not match the issuer certificate's public key")]
    KeyMismatch,
    /// An ASK can only be issued by an ARK.
    #[error("an ASK must be signed by an ARK, not by a certificate with usage {0}")]
    IssuerNotArk(Usage),
    /// CERTIFYING_ID is not the signer's KEY_ID.
    #[error("certifying id {certifying_id} does not match the signer's key id {signer_key_id}")]
    CertifyingId {
        /// CERTIFYING_ID of the verified certificate (hex).
        certifying_id: String,
        /// KEY_ID of the signer (hex).
        signer_key_id: String,
    },
    /// The signature field is too short for the signer's key.
    #[error("RSA signature field is {actual} bytes, the signer's modulus needs {needed}")]
    SignatureLength {
        /// Bytes needed (modulus size).
        needed: usize,
        /// Bytes available.
        actual: usize,
    },
    /// The signature field has non-zero bytes beyond the signer's modulus width.
    #[error(
        "RSA signature has a non-zero byte at offset {offset:#x} beyond the signer's modulus width"
    )]
    SignaturePadding {
        /// Offset inside the signature field.
        offset: usize,
    },
    /// The signature integer is not below the signer's modulus.
    #[error("RSA signature is not below the signer's modulus")]
    SignatureRange,
    /// RSASSA-PSS verification failed.
    #[error("RSA-PSS signature does not verify")]
    BadSignature,
    /// RSASSA-PSS signing failed.
    #[error("RSA-PSS signing failed")]
    Signing(#[source] rsa::Error),
}

fn hex16(id: &[u8; KEY_ID_LEN]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash used with an RSA key of this size: SHA-256 for 2048 bits,
/// SHA-384 otherwise (docs/protocol/certificates.md#amd-ca-certificate).
pub fn hash_for_modulus_bits(bits: u32) -> HashAlgorithm {
    if bits <= 2048 {
        HashAlgorithm::Sha256
    } else {
        HashAlgorithm::Sha384
    }
}

fn pss(hash: HashAlgorithm) -> Pss {
    match hash {
        HashAlgorithm::Sha256 => Pss::new_with_salt::<Sha256>(hash.output_len()),
        HashAlgorithm::Sha384 => Pss::new_with_salt::<Sha384>(hash.output_len()),
    }
}

/// Verifies an RSASSA-PSS signature (MGF1 with the same hash, salt length =
/// hash length) stored little-endian in `sig_le`. The signature occupies the
/// first modulus-size bytes of `sig_le`; every byte after that must be zero,
/// and the integer must be below the modulus.
pub fn rsa_pss_verify(
    key: &RsaPublicKey,
    hash: HashAlgorithm,
    msg: &[u8],
    sig_le: &[u8],
) -> Result<(), Error> {
    let width = key.size();
    let (used, rest) = sig_le
        .split_at_checked(width)
        .ok_or(Error::SignatureLength {
            needed: width,
            actual: sig_le.len(),
        })?;
    if let Some(offset) = super::first_nonzero(rest, width) {
        return Err(Error::SignaturePadding { offset });
    }
    let be: Vec<u8> = used.iter().rev().copied().collect();
    if BigUint::from_bytes_be(&be) >= *key.n() {
        return Err(Error::SignatureRange);
    }
    let digest = hash.digest(msg);
    key.verify(pss(hash), &digest, &be)
        .map_err(|_| Error::BadSignature)
}

/// Signs `msg` with RSASSA-PSS (MGF1 same hash, salt = hash length); the
/// result is little-endian, exactly modulus-size bytes long.
pub fn rsa_pss_sign<R: CryptoRngCore>(
    rng: &mut R,
    key: &RsaPrivateKey,
    hash: HashAlgorithm,
    msg: &[u8],
) -> Result<Vec<u8>, Error> {
    let digest = hash.digest(msg);
    let mut sig = key
        .sign_with_rng(rng, pss(hash), &digest)
        .map_err(Error::Signing)?;
    sig.reverse();
    Ok(sig)
}

fn key_size_field(field: &'static str, bits: u32) -> Result<usize, Error> {
    match bits {
        2048 | 4096 => Ok(bits as usize / 8),
        _ => Err(Error::KeySize { field, bits }),
    }
}

/// An AMD CA certificate (ARK or ASK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    key_id: [u8; KEY_ID_LEN],
    certifying_id: [u8; KEY_ID_LEN],
    usage: Usage,
    exp_bits: u32,
    modulus_bits: u32,
    key: RsaPublicKey,
    /// Little-endian, `modulus_bits / 8` bytes.
    signature: Vec<u8>,
}

impl Certificate {
    /// The total length of the certificate whose first bytes are `header`,
    /// from its size fields (at least [`HEADER_LEN`] bytes needed). Used to
    /// split concatenated blobs.
    pub fn encoded_len(header: &[u8]) -> Result<usize, Error> {
        let (Some(exp_bits), Some(mod_bits)) =
            (le32(header, OFF_EXP_SIZE), le32(header, OFF_MOD_SIZE))
        else {
            return Err(Error::Length {
                expected: HEADER_LEN,
                actual: header.len(),
            });
        };
        let exp_len = key_size_field("PUB_EXP_SIZE", exp_bits)?;
        let mod_len = key_size_field("MODULUS_SIZE", mod_bits)?;
        Ok(HEADER_LEN + exp_len + 2 * mod_len)
    }

    /// Decodes a certificate (exact length).
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let version = le32(bytes, 0).ok_or(Error::Length {
            expected: HEADER_LEN,
            actual: bytes.len(),
        })?;
        if version != 1 {
            return Err(Error::Version(version));
        }
        let total = Self::encoded_len(bytes)?;
        if bytes.len() != total {
            return Err(Error::Length {
                expected: total,
                actual: bytes.len(),
            });
        }
        let usage = Usage::from_code(le32(bytes, OFF_USAGE).unwrap_or(u32::MAX))
            .map_err(Error::UsageCode)?;
        if !matches!(usage, Usage::Ark | Usage::Ask) {
            return Err(Error::Usage(usage));
        }
        if let Some(offset) = super::first_nonzero(&bytes[OFF_RESERVED..OFF_EXP_SIZE], OFF_RESERVED)
        {
            return Err(Error::Reserved { offset });
        }
        let exp_bits = le32(bytes, OFF_EXP_SIZE).unwrap_or(0);
        let modulus_bits = le32(bytes, OFF_MOD_SIZE).unwrap_or(0);
        let exp_len = exp_bits as usize / 8;
        let mod_len = modulus_bits as usize / 8;
        let exp_end = HEADER_LEN + exp_len;
        let mod_end = exp_end + mod_len;
        let e = BigUint::from_bytes_le(&bytes[HEADER_LEN..exp_end]);
        let n = BigUint::from_bytes_le(&bytes[exp_end..mod_end]);
        if n.bits() != modulus_bits as usize {
            return Err(Error::ModulusWidth {
                declared: modulus_bits,
                actual: n.bits(),
            });
        }
        let key = RsaPublicKey::new(n, e).map_err(Error::Key)?;
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&bytes[OFF_KEY_ID..OFF_KEY_ID + KEY_ID_LEN]);
        let mut certifying_id = [0u8; KEY_ID_LEN];
        certifying_id.copy_from_slice(&bytes[OFF_CERTIFYING_ID..OFF_CERTIFYING_ID + KEY_ID_LEN]);
        Ok(Certificate {
            key_id,
            certifying_id,
            usage,
            exp_bits,
            modulus_bits,
            key,
            signature: bytes[mod_end..].to_vec(),
        })
    }

    /// The signed part: header, exponent and modulus.
    pub fn body(&self) -> Vec<u8> {
        let exp_len = self.exp_bits as usize / 8;
        let mod_len = self.modulus_bits as usize / 8;
        let mut out = vec![0u8; HEADER_LEN + exp_len + mod_len];
        out[..4].copy_from_slice(&1u32.to_le_bytes());
        out[OFF_KEY_ID..OFF_KEY_ID + KEY_ID_LEN].copy_from_slice(&self.key_id);
        out[OFF_CERTIFYING_ID..OFF_CERTIFYING_ID + KEY_ID_LEN].copy_from_slice(&self.certifying_id);
        out[OFF_USAGE..OFF_USAGE + 4].copy_from_slice(&self.usage.code().to_le_bytes());
        out[OFF_EXP_SIZE..OFF_EXP_SIZE + 4].copy_from_slice(&self.exp_bits.to_le_bytes());
        out[OFF_MOD_SIZE..OFF_MOD_SIZE + 4].copy_from_slice(&self.modulus_bits.to_le_bytes());
        // Both values fit their fields: checked at decode / construction.
        let e = self.key.e().to_bytes_le();
        let n = self.key.n().to_bytes_le();
        let exp_field = &mut out[HEADER_LEN..HEADER_LEN + exp_len];
        for (dst, src) in exp_field.iter_mut().zip(&e) {
            *dst = *src;
        }
        let mod_field = &mut out[HEADER_LEN + exp_len..];
        for (dst, src) in mod_field.iter_mut().zip(&n) {
            *dst = *src;
        }
        out
    }

    /// The full encoding (body ‖ signature).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.body();
        out.extend_from_slice(&self.signature);
        out
    }

    /// KEY_ID.
    pub fn key_id(&self) -> &[u8; KEY_ID_LEN] {
        &self.key_id
    }

    /// CERTIFYING_ID (the signer's KEY_ID).
    pub fn certifying_id(&self) -> &[u8; KEY_ID_LEN] {
        &self.certifying_id
    }

    /// KEY_USAGE: [`Usage::Ark`] or [`Usage::Ask`].
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The RSA public key.
    pub fn public_key(&self) -> &RsaPublicKey {
        &self.key
    }

    /// MODULUS_SIZE in bits.
    pub fn modulus_bits(&self) -> u32 {
        self.modulus_bits
    }

    /// PUB_EXP_SIZE in bits.
    pub fn exponent_bits(&self) -> u32 {
        self.exp_bits
    }

    /// The stored signature, little-endian.
    pub fn signature_le(&self) -> &[u8] {
        &self.signature
    }

    /// The hash this key signs with (SHA-256 for 2048 bits, SHA-384 for 4096).
    pub fn hash_algorithm(&self) -> HashAlgorithm {
        hash_for_modulus_bits(self.modulus_bits)
    }

    /// Verifies that `signer` issued this certificate: CERTIFYING_ID equals
    /// the signer's KEY_ID and the RSA-PSS signature verifies with the
    /// signer's key (hash by the signer's modulus size). For the ARK pass the
    /// certificate itself.
    pub fn verify_signed_by(&self, signer: &Certificate) -> Result<(), Error> {
        if self.certifying_id != signer.key_id {
            return Err(Error::CertifyingId {
                certifying_id: hex16(&self.certifying_id),
                signer_key_id: hex16(&signer.key_id),
            });
        }
        rsa_pss_verify(
            &signer.key,
            signer.hash_algorithm(),
            &self.body(),
            &self.signature,
        )
    }

    /// Creates a self-signed ARK for `ark_key` with a random KEY_ID (for the
    /// emulated platform; real ARKs come from AMD).
    pub fn sign_new_ark<R: CryptoRngCore>(
        rng: &mut R,
        ark_key: &RsaPrivateKey,
    ) -> Result<Self, Error> {
        let mut key_id = [0u8; KEY_ID_LEN];
        rng.fill_bytes(&mut key_id);
        let public = ark_key.to_public_key();
        let mut cert = Self::unsigned(Usage::Ark, key_id, key_id, &public)?;
        cert.signature = rsa_pss_sign(rng, ark_key, cert.hash_algorithm(), &cert.body())?;
        Ok(cert)
    }

    /// Creates an ASK for `ask_key` with a random KEY_ID, signed by the ARK
    /// `ark` whose private key is `ark_key`.
    pub fn sign_new_ask<R: CryptoRngCore>(
        rng: &mut R,
        ask_key: &RsaPublicKey,
        ark: &Certificate,
        ark_key: &RsaPrivateKey,
    ) -> Result<Self, Error> {
        if ark.usage != Usage::Ark {
            return Err(Error::IssuerNotArk(ark.usage));
        }
        if ark_key.to_public_key() != ark.key {
            return Err(Error::KeyMismatch);
        }
        let mut key_id = [0u8; KEY_ID_LEN];
        rng.fill_bytes(&mut key_id);
        let mut cert = Self::unsigned(Usage::Ask, key_id, ark.key_id, ask_key)?;
        cert.signature = rsa_pss_sign(rng, ark_key, ark.hash_algorithm(), &cert.body())?;
        Ok(cert)
    }

    fn unsigned(
        usage: Usage,
        key_id: [u8; KEY_ID_LEN],
        certifying_id: [u8; KEY_ID_LEN],
        key: &RsaPublicKey,
    ) -> Result<Self, Error> {
        let bits = key.n().bits();
        if !(bits == 2048 || bits == 4096) {
            return Err(Error::SigningKeySize { bits });
        }
        let bits32 = bits as u32;
        Ok(Certificate {
            key_id,
            certifying_id,
            usage,
            exp_bits: bits32,
            modulus_bits: bits32,
            key: key.clone(),
            signature: vec![0; bits / 8],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::testutil::{fixtures, rng, rsa_keys};

    const ROOTS: [&str; 10] = [
        "amd-roots/naples-ark.cert",
        "amd-roots/naples-ask.cert",
        "amd-roots/rome-ark.cert",
        "amd-roots/rome-ask.cert",
        "amd-roots/milan-ark.cert",
        "amd-roots/milan-ask.cert",
        "amd-roots/genoa-ark.cert",
        "amd-roots/genoa-ask.cert",
        "amd-roots/turin-ark.cert",
        "amd-roots/turin-ask.cert",
    ];

    #[test]
    fn fixtures_round_trip_and_verify() {
        let Some(files) = fixtures("ca::fixtures_round_trip_and_verify", ROOTS) else {
            return;
        };
        for (pair, names) in files.chunks(2).zip(ROOTS.chunks(2)) {
            let ark = Certificate::decode(&pair[0]).unwrap();
            let ask = Certificate::decode(&pair[1]).unwrap();
            assert_eq!(ark.encode(), pair[0], "{}", names[0]);
            assert_eq!(ask.encode(), pair[1], "{}", names[1]);
            assert_eq!(Certificate::encoded_len(&pair[1]), Ok(pair[1].len()));
            assert_eq!(ark.usage(), Usage::Ark);
            assert_eq!(ask.usage(), Usage::Ask);
            assert_eq!(ark.key_id(), ark.certifying_id());
            assert_eq!(ask.certifying_id(), ark.key_id());
            assert_eq!(ark.public_key().e(), &BigUint::from(65537u32));
            // docs/protocol/test-vectors.md#chain-checks: ARK self-signature and ASK by ARK.
            ark.verify_signed_by(&ark).unwrap();
            ask.verify_signed_by(&ark).unwrap();
            // Negative: the ARK is not signed by the ASK; the ASK not by itself.
            assert!(matches!(
                ark.verify_signed_by(&ask),
                Err(Error::CertifyingId { .. })
            ));
            assert!(ask.verify_signed_by(&ask).is_err());
        }
        let naples = Certificate::decode(&files[0]).unwrap();
        assert_eq!(naples.modulus_bits(), 2048);
        assert_eq!(naples.hash_algorithm(), HashAlgorithm::Sha256);
        assert_eq!(files[0].len(), LEN_2048);
        let rome = Certificate::decode(&files[2]).unwrap();
        assert_eq!(rome.modulus_bits(), 4096);
        assert_eq!(rome.hash_algorithm(), HashAlgorithm::Sha384);
        assert_eq!(files[2].len(), LEN_4096);
    }

    #[test]
    fn decode_rejects_malformed() {
        let Some([ark]) = fixtures(
            "ca::decode_rejects_malformed",
            ["amd-roots/naples-ark.cert"],
        ) else {
            return;
        };
        let set32 = |off: usize, v: u32| {
            let mut b = ark.clone();
            b[off..off + 4].copy_from_slice(&v.to_le_bytes());
            b
        };
        assert_eq!(Certificate::decode(&set32(0, 2)), Err(Error::Version(2)));
        assert_eq!(
            Certificate::decode(&set32(OFF_USAGE, 0x1002)),
            Err(Error::Usage(Usage::Pek))
        );
        assert!(matches!(
            Certificate::decode(&set32(OFF_USAGE, 7)),
            Err(Error::UsageCode(_))
        ));
        assert_eq!(
            Certificate::decode(&set32(OFF_EXP_SIZE, 1024)),
            Err(Error::KeySize {
                field: "PUB_EXP_SIZE",
                bits: 1024
            })
        );
        assert_eq!(
            Certificate::decode(&set32(OFF_MOD_SIZE, 4096)),
            Err(Error::Length {
                expected: LEN_2048 + 512,
                actual: LEN_2048
            })
        );
        let mut reserved = ark.clone();
        reserved[0x30] = 1;
        assert_eq!(
            Certificate::decode(&reserved),
            Err(Error::Reserved { offset: 0x30 })
        );
        assert!(matches!(
            Certificate::decode(&ark[..LEN_2048 - 1]),
            Err(Error::Length { .. })
        ));
        assert!(matches!(
            Certificate::decode(&ark[..3]),
            Err(Error::Length { .. })
        ));
        let mut long = ark.clone();
        long.push(0);
        assert!(matches!(
            Certificate::decode(&long),
            Err(Error::Length { .. })
        ));
        // Top modulus byte cleared: narrower than declared.
        let mut narrow = ark.clone();
        narrow[HEADER_LEN + 256 + 255] = 0;
        assert!(matches!(
            Certificate::decode(&narrow),
            Err(Error::ModulusWidth { declared: 2048, .. })
        ));
        // Even exponent.
        let mut even = ark.clone();
        even[HEADER_LEN] ^= 1;
        assert!(matches!(Certificate::decode(&even), Err(Error::Key(_))));
    }

    #[test]
    fn self_generated_ark_and_ask() {
        let [ark_key, ask_key] = rsa_keys();
        let mut r = rng(7);
        let ark = Certificate::sign_new_ark(&mut r, ark_key).unwrap();
        let ask =
            Certificate::sign_new_ask(&mut r, &ask_key.to_public_key(), &ark, ark_key).unwrap();
        assert_ne!(ark.key_id(), ask.key_id());
        ark.verify_signed_by(&ark).unwrap();
        ask.verify_signed_by(&ark).unwrap();
        let ark2 = Certificate::decode(&ark.encode()).unwrap();
        let ask2 = Certificate::decode(&ask.encode()).unwrap();
        assert_eq!(ark2, ark);
        assert_eq!(ask2, ask);
        assert_eq!(ark.encode().len(), LEN_2048);
        // Wrong issuer key, wrong issuer usage.
        assert_eq!(
            Certificate::sign_new_ask(&mut r, &ask_key.to_public_key(), &ark, ask_key),
            Err(Error::KeyMismatch)
        );
        assert_eq!(
            Certificate::sign_new_ask(&mut r, &ask_key.to_public_key(), &ask, ark_key),
            Err(Error::IssuerNotArk(Usage::Ask))
        );
        // A signature by another key with the right ids fails.
        let forged = Certificate::sign_new_ark(&mut r, ask_key).unwrap();
        let mut fake_ask = ask.clone();
        fake_ask.signature =
            rsa_pss_sign(&mut r, ask_key, HashAlgorithm::Sha256, &ask.body()).unwrap();
        assert_eq!(fake_ask.verify_signed_by(&ark), Err(Error::BadSignature));
        assert!(forged.verify_signed_by(&ark).is_err());
    }

    #[test]
    fn pss_signature_field_rules() {
        let [key, _] = rsa_keys();
        let public = key.to_public_key();
        let mut r = rng(8);
        let sig = rsa_pss_sign(&mut r, key, HashAlgorithm::Sha384, b"msg").unwrap();
        assert_eq!(sig.len(), 256);
        rsa_pss_verify(&public, HashAlgorithm::Sha384, b"msg", &sig).unwrap();
        assert_eq!(
            rsa_pss_verify(&public, HashAlgorithm::Sha256, b"msg", &sig),
            Err(Error::BadSignature)
        );
        // Zero padding beyond the modulus width is accepted, anything else not.
        let mut field = sig.clone();
        field.resize(512, 0);
        rsa_pss_verify(&public, HashAlgorithm::Sha384, b"msg", &field).unwrap();
        field[300] = 1;
        assert_eq!(
            rsa_pss_verify(&public, HashAlgorithm::Sha384, b"msg", &field),
            Err(Error::SignaturePadding { offset: 300 })
        );
        assert!(matches!(
            rsa_pss_verify(&public, HashAlgorithm::Sha384, b"msg", &sig[..255]),
            Err(Error::SignatureLength { .. })
        ));
        // s + n is rejected as out of range rather than reduced.
        let s = BigUint::from_bytes_le(&sig) + public.n();
        let mut too_big = s.to_bytes_le();
        too_big.resize(512, 0);
        let too_big = &too_big[..256];
        if BigUint::from_bytes_le(too_big) >= *public.n() {
            assert_eq!(
                rsa_pss_verify(&public, HashAlgorithm::Sha384, b"msg", too_big),
                Err(Error::SignatureRange)
            );
        }
        let all_ones = vec![0xffu8; 256];
        assert_eq!(
            rsa_pss_verify(&public, HashAlgorithm::Sha384, b"msg", &all_ones),
            Err(Error::SignatureRange)
        );
    }
}
