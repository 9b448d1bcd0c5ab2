//! The SEV attestation report (command ATTESTATION 0x036,
//! KVM_SEV_GET_ATTESTATION_REPORT; docs/protocol/measurement.md#attestation-report): 0xD0 bytes.
//!
//! | Off  | Size | Field |
//! |------|------|-------|
//! | 0x00 | 16   | MNONCE |
//! | 0x10 | 32   | LAUNCH_DIGEST |
//! | 0x30 | 4    | POLICY |
//! | 0x34 | 4    | SIG_USAGE (PEK) |
//! | 0x38 | 4    | SIG_ALGO (ECDSA_SHA256) |
//! | 0x3C | 4    | reserved (zero) |
//! | 0x40 | 144  | SIGNATURE: R (72, LE) ‖ S (72, LE) |
//!
//! The signature is ECDSA with the platform's PEK (P-384) over SHA-256 of
//! bytes 0x00..0x34. Decoding requires usage PEK, algorithm ECDSA_SHA256,
//! the reserved word zero and R/S padding zero (so every byte of a report
//! is either signed, fixed, or part of R/S).

use p384::ecdsa::{Signature, SigningKey, VerifyingKey};

use crate::cert::{ecc, le32, sev, Algorithm, Usage};

/// Length of a report.
pub const REPORT_LEN: usize = 0xD0;
/// Length of the signed prefix (MNONCE ‖ LAUNCH_DIGEST ‖ POLICY).
pub const SIGNED_LEN: usize = 0x34;

const OFF_SIG: usize = 0x40;
/// The only signature algorithm of a report.
const ALGORITHM: Algorithm = Algorithm::EcdsaSha256;

/// Errors of attestation reports.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input is not 0xD0 bytes.
    #[error("attestation report is {0} bytes, expected 208 (0xD0)")]
    Length(usize),
    /// SIG_USAGE is not PEK.
    #[error("attestation report SIG_USAGE is {0:#x}, expected 0x1002 (PEK)")]
    Usage(u32),
    /// SIG_ALGO is not ECDSA_SHA256.
    #[error("attestation report SIG_ALGO is {0:#x}, expected 0x002 (ECDSA_SHA256)")]
    Algorithm(u32),
    /// The reserved word at 0x3C is non-zero.
    #[error("attestation report reserved word at 0x3C is {0:#x}, expected 0")]
    Reserved(u32),
    /// The signature field is malformed.
    #[error("attestation report signature")]
    SignatureEncoding(#[source] ecc::Error),
    /// Signing failed.
    #[error("signing the attestation report")]
    Signing(#[source] ecc::Error),
    /// The certificate given to verify with is not a usable PEK.
    #[error("the certificate cannot verify attestation reports")]
    Pek(#[source] sev::Error),
    /// The certificate given to verify with is not a PEK.
    #[error("attestation reports are signed by the PEK, not the {0}")]
    NotPek(Usage),
    /// The signature does not verify.
    #[error("attestation report signature does not verify")]
    BadSignature,
}

/// A decoded attestation report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    mnonce: [u8; 16],
    launch_digest: [u8; 32],
    policy: u32,
    signature: Signature,
}

fn signed_bytes(mnonce: &[u8; 16], launch_digest: &[u8; 32], policy: u32) -> [u8; SIGNED_LEN] {
    let mut out = [0u8; SIGNED_LEN];
    out[..0x10].copy_from_slice(mnonce);
    out[0x10..0x30].copy_from_slice(launch_digest);
    out[0x30..].copy_from_slice(&policy.to_le_bytes());
    out
}

impl Report {
    /// Signs a new report with the PEK's private key (what the firmware does).
    pub fn sign(
        mnonce: [u8; 16],
        launch_digest: [u8; 32],
        policy: u32,
        pek: &SigningKey,
    ) -> Result<Self, Error> {
        let signature = ecc::sign(
            pek,
            ALGORITHM,
            &signed_bytes(&mnonce, &launch_digest, policy),
        )
        .map_err(Error::Signing)?;
        Ok(Report {
            mnonce,
            launch_digest,
            policy,
            signature,
        })
    }

    /// Decodes a report (exactly 0xD0 bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != REPORT_LEN {
            return Err(Error::Length(bytes.len()));
        }
        let word = |off: usize| le32(bytes, off).unwrap_or(u32::MAX);
        if word(0x34) != Usage::Pek.code() {
            return Err(Error::Usage(word(0x34)));
        }
        if word(0x38) != ALGORITHM.code() {
            return Err(Error::Algorithm(word(0x38)));
        }
        if word(0x3C) != 0 {
            return Err(Error::Reserved(word(0x3C)));
        }
        let signature =
            ecc::decode_signature(&bytes[OFF_SIG..]).map_err(Error::SignatureEncoding)?;
        let mut mnonce = [0u8; 16];
        mnonce.copy_from_slice(&bytes[..0x10]);
        let mut launch_digest = [0u8; 32];
        launch_digest.copy_from_slice(&bytes[0x10..0x30]);
        Ok(Report {
            mnonce,
            launch_digest,
            policy: word(0x30),
            signature,
        })
    }

    /// Encodes the report.
    pub fn encode(&self) -> [u8; REPORT_LEN] {
        let mut out = [0u8; REPORT_LEN];
        out[..SIGNED_LEN].copy_from_slice(&self.signed_bytes());
        out[0x34..0x38].copy_from_slice(&Usage::Pek.code().to_le_bytes());
        out[0x38..0x3C].copy_from_slice(&ALGORITHM.code().to_le_bytes());
        out[OFF_SIG..].copy_from_slice(&ecc::encode_signature(&self.signature));
        out
    }

    /// The signed bytes 0x00..0x34.
    pub fn signed_bytes(&self) -> [u8; SIGNED_LEN] {
        signed_bytes(&self.mnonce, &self.launch_digest, self.policy)
    }

    /// MNONCE (chosen by the requester).
    pub fn mnonce(&self) -> &[u8; 16] {
        &self.mnonce
    }

    /// LAUNCH_DIGEST (GCTX.LD).
    pub fn launch_digest(&self) -> &[u8; 32] {
        &self.launch_digest
    }

    /// The guest policy.
    pub fn policy(&self) -> u32 {
        self.policy
    }

    /// SIG_USAGE (always PEK).
    pub fn sig_usage(&self) -> Usage {
        Usage::Pek
    }

    /// SIG_ALGO (always ECDSA_SHA256).
    pub fn sig_algorithm(&self) -> Algorithm {
        ALGORITHM
    }

    /// The ECDSA signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Verifies the signature with the PEK certificate (usage PEK, ECDSA,
    /// P-384). The certificate itself must have been verified to a pinned root
    /// beforehand (see [`crate::cert::chain`]).
    pub fn verify(&self, pek: &sev::Certificate) -> Result<(), Error> {
        if pek.usage() != Usage::Pek {
            return Err(Error::NotPek(pek.usage()));
        }
        let key = pek.verifying_key().map_err(Error::Pek)?;
        self.verify_with(&key)
    }

    /// Verifies the signature with the PEK's verifying key (e.g. from
    /// [`crate::cert::chain::VerifiedChain::pek_verifying_key`]).
    pub fn verify_with(&self, pek: &VerifyingKey) -> Result<(), Error> {
        ecc::verify(pek, ALGORITHM, &self.signed_bytes(), &self.signature)
            .map_err(|_| Error::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::testutil::ec_key;

    fn pek_cert(key: &SigningKey) -> sev::Certificate {
        sev::Certificate::new_ec(
            Usage::Pek,
            Algorithm::EcdsaSha256,
            0,
            22,
            &p384::PublicKey::from(key.verifying_key()),
        )
        .unwrap()
    }

    fn sample() -> (SigningKey, Report) {
        let key = ec_key(100);
        let report = Report::sign([0x11; 16], [0x22; 32], 0x0003_0005, &key).unwrap();
        (key, report)
    }

    #[test]
    fn layout_and_round_trip() {
        let (key, report) = sample();
        let bytes = report.encode();
        assert_eq!(&bytes[..16], &[0x11; 16]);
        assert_eq!(&bytes[0x10..0x30], &[0x22; 32]);
        assert_eq!(&bytes[0x30..0x34], &[5, 0, 3, 0]);
        assert_eq!(&bytes[0x34..0x40], &[2, 0x10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
        assert!(bytes[0x40 + 48..0x40 + 72].iter().all(|&b| b == 0));
        assert!(bytes[0x40 + 72 + 48..].iter().all(|&b| b == 0));
        let decoded = Report::decode(&bytes).unwrap();
        assert_eq!(decoded, report);
        assert_eq!(decoded.encode(), bytes);
        assert_eq!(decoded.policy(), 0x0003_0005);
        assert_eq!(decoded.sig_usage(), Usage::Pek);
        assert_eq!(decoded.sig_algorithm(), Algorithm::EcdsaSha256);
        decoded.verify(&pek_cert(&key)).unwrap();
        decoded.verify_with(key.verifying_key()).unwrap();
    }

    #[test]
    fn signature_is_ecdsa_sha256_over_first_0x34_bytes() {
        use p384::ecdsa::signature::hazmat::PrehashVerifier;
        use sha2::Digest as _;
        let (key, report) = sample();
        let bytes = report.encode();
        let digest = sha2::Sha256::digest(&bytes[..0x34]);
        key.verifying_key()
            .verify_prehash(&digest, report.signature())
            .unwrap();
    }

    #[test]
    fn every_byte_tamper_of_signed_region_or_signature_fails() {
        let (key, report) = sample();
        let pek = pek_cert(&key);
        let bytes = report.encode();
        for i in (0..SIGNED_LEN).chain(OFF_SIG..REPORT_LEN) {
            for mask in [0x01u8, 0x80] {
                let mut t = bytes;
                t[i] ^= mask;
                match Report::decode(&t) {
                    Err(_) => assert!(i >= OFF_SIG, "byte {i:#x} rejected at decode"),
                    Ok(r) => assert_eq!(r.verify(&pek), Err(Error::BadSignature), "byte {i:#x}"),
                }
            }
        }
    }

    #[test]
    fn decode_rejects_fixed_fields() {
        let (_, report) = sample();
        let bytes = report.encode();
        let patch = |off: usize, v: u32| {
            let mut b = bytes;
            b[off..off + 4].copy_from_slice(&v.to_le_bytes());
            b
        };
        assert_eq!(
            Report::decode(&patch(0x34, 0x1004)),
            Err(Error::Usage(0x1004))
        );
        assert_eq!(
            Report::decode(&patch(0x38, 0x102)),
            Err(Error::Algorithm(0x102))
        );
        assert_eq!(Report::decode(&patch(0x3C, 1)), Err(Error::Reserved(1)));
        assert_eq!(
            Report::decode(&bytes[1..]),
            Err(Error::Length(REPORT_LEN - 1))
        );
        let mut pad = bytes;
        pad[0x40 + 60] = 1;
        assert!(matches!(
            Report::decode(&pad),
            Err(Error::SignatureEncoding(_))
        ));
    }

    #[test]
    fn verify_requires_the_right_pek() {
        let (key, report) = sample();
        let other = ec_key(101);
        assert_eq!(report.verify(&pek_cert(&other)), Err(Error::BadSignature));
        let cek = sev::Certificate::new_ec(
            Usage::Cek,
            Algorithm::EcdsaSha256,
            0,
            22,
            &p384::PublicKey::from(key.verifying_key()),
        )
        .unwrap();
        assert_eq!(report.verify(&cek), Err(Error::NotPek(Usage::Cek)));
        let ecdh_pek = sev::Certificate::new_ec(
            Usage::Pek,
            Algorithm::EcdhSha256,
            0,
            22,
            &p384::PublicKey::from(key.verifying_key()),
        )
        .unwrap();
        assert!(matches!(report.verify(&ecdh_pek), Err(Error::Pek(_))));
    }
}
