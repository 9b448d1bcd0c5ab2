//! The LAUNCH_MEASURE measurement and its 48-byte output blob
//! (docs/protocol/measurement.md#launch-measure).
//!
//! ```text
//! API >= 0.17: MEASUREMENT = HMAC-SHA256(TIK, 0x04 || API_MAJOR || API_MINOR || BUILD
//!                                             || LE32(POLICY) || LD || MNONCE)
//! API <  0.17: MEASUREMENT = HMAC-SHA256(TIK, LE32(POLICY) || LD || MNONCE)
//! ```
//!
//! API_MAJOR, API_MINOR and BUILD are the platform's running firmware
//! version, not the policy's minimum. LD is the SHA-256 launch digest
//! (docs/protocol/measurement.md#launch-digest, computed elsewhere).

use hmac::Mac;
use subtle::ConstantTimeEq;

use crate::kdf::hmac_sha256;
use crate::session::Tik;

/// The one-byte context constant that starts the measurement MAC input.
pub const MEASUREMENT_CONTEXT: u8 = 0x04;

/// Why a measurement blob was refused or a measurement did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeasurementError {
    /// The measurement the firmware returned is not the one expected for the
    /// given TIK, firmware version, policy and launch digest.
    #[error(
        "launch measurement does not match the expected launch digest, policy and firmware version"
    )]
    Mismatch,
    /// A launch-measure blob of the wrong size.
    #[error("launch-measure blob is {actual} bytes, expected {expected}")]
    BlobLength {
        /// Required size (48).
        expected: usize,
        /// Size given.
        actual: usize,
    },
}

/// Whether firmware of API version `major.minor` uses the measurement form
/// with the context byte and version/build (API >= 0.17). The same cut-off
/// decides whether the LAUNCH_SECRET MAC covers the measurement
/// (docs/protocol/secret.md#launch-secret).
pub const fn api_has_measurement_context(api_major: u8, api_minor: u8) -> bool {
    api_major > 0 || api_minor >= 17
}

/// MEASUREMENT for API >= 0.17 (docs/protocol/measurement.md#launch-measure).
pub fn launch_measurement(
    tik: &Tik,
    api_major: u8,
    api_minor: u8,
    build: u8,
    policy: u32,
    ld: &[u8; 32],
    mnonce: &[u8; 16],
) -> [u8; 32] {
    let mut mac = hmac_sha256(tik.as_bytes());
    mac.update(&[MEASUREMENT_CONTEXT, api_major, api_minor, build]);
    mac.update(&policy.to_le_bytes());
    mac.update(ld);
    mac.update(mnonce);
    mac.finalize().into_bytes().into()
}

/// MEASUREMENT for API < 0.17: no context byte, version or build
/// (docs/protocol/measurement.md#launch-measure, docs/protocol/choices.md#u19, from sev-tool
/// `calculate_measurement`).
// UNCERTAIN (docs/protocol/choices.md#u19): chose sev-tool's legacy formula
// HMAC(TIK, LE32(POLICY) || LD || MNONCE) because it is the only source; no
// known-answer vector exists for firmware older than API 0.17.
pub fn launch_measurement_legacy(
    tik: &Tik,
    policy: u32,
    ld: &[u8; 32],
    mnonce: &[u8; 16],
) -> [u8; 32] {
    let mut mac = hmac_sha256(tik.as_bytes());
    mac.update(&policy.to_le_bytes());
    mac.update(ld);
    mac.update(mnonce);
    mac.finalize().into_bytes().into()
}

/// MEASUREMENT in the form firmware of API `major.minor` computes it.
pub fn launch_measurement_for_api(
    tik: &Tik,
    api_major: u8,
    api_minor: u8,
    build: u8,
    policy: u32,
    ld: &[u8; 32],
    mnonce: &[u8; 16],
) -> [u8; 32] {
    if api_has_measurement_context(api_major, api_minor) {
        launch_measurement(tik, api_major, api_minor, build, policy, ld, mnonce)
    } else {
        launch_measurement_legacy(tik, policy, ld, mnonce)
    }
}

/// The LAUNCH_MEASURE output (docs/protocol/measurement.md#launch-measure): MEASUREMENT ‖ MNONCE,
/// the 48 bytes QEMU's `query-sev-launch-measure` returns (base64 is the
/// caller's business).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeasureBlob {
    /// 0x00: the measurement.
    pub measurement: [u8; 32],
    /// 0x20: the firmware's fresh nonce.
    pub mnonce: [u8; 16],
}

impl MeasureBlob {
    /// Encoded size (0x30).
    pub const SIZE: usize = 48;

    /// The 48 bytes, measurement first.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        let (m, n) = out.split_at_mut(32);
        m.copy_from_slice(&self.measurement);
        n.copy_from_slice(&self.mnonce);
        out
    }

    /// Decodes the 48 bytes.
    pub fn from_bytes(bytes: &[u8; Self::SIZE]) -> Self {
        let mut blob = MeasureBlob {
            measurement: [0; 32],
            mnonce: [0; 16],
        };
        let (m, n) = bytes.split_at(32);
        blob.measurement.copy_from_slice(m);
        blob.mnonce.copy_from_slice(n);
        blob
    }

    /// Decodes a slice that must be exactly 48 bytes long.
    pub fn decode(bytes: &[u8]) -> Result<Self, MeasurementError> {
        let array: &[u8; Self::SIZE] =
            bytes.try_into().map_err(|_| MeasurementError::BlobLength {
                expected: Self::SIZE,
                actual: bytes.len(),
            })?;
        Ok(Self::from_bytes(array))
    }
}

/// Recomputes the measurement for `blob.mnonce` (in the form the firmware
/// version implies) and compares it with `blob.measurement` in constant time.
pub fn verify_measurement(
    tik: &Tik,
    api_major: u8,
    api_minor: u8,
    build: u8,
    policy: u32,
    ld: &[u8; 32],
    blob: &MeasureBlob,
) -> Result<(), MeasurementError> {
    let expected =
        launch_measurement_for_api(tik, api_major, api_minor, build, policy, ld, &blob.mnonce);
    if bool::from(expected.ct_eq(&blob.measurement)) {
        Ok(())
    } else {
        Err(MeasurementError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// docs/protocol/test-vectors.md#launch-measure (virtee/sev src/session/mod.rs, test `verify`):
    /// API 0.18 build 15, policy 0, LD = SHA-256("").
    #[test]
    fn measurement_known_answer_virtee() {
        let tik = Tik::from_bytes(unhex("66320db73158a35a255d051758e95ed4"));
        let ld: [u8; 32] = Sha256::digest(b"").into();
        assert_eq!(
            hex::encode(ld),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mnonce = unhex("4fbe0bedbad6c86ae8f68971d103e554");
        let expected = "6faab2daae389bcd3405a05d6cafe33c0414f7bedd0bae19ba5f38b7fd1664ea";
        let m = launch_measurement(&tik, 0, 18, 15, 0, &ld, &mnonce);
        assert_eq!(hex::encode(m), expected);
        let m = launch_measurement_for_api(&tik, 0, 18, 15, 0, &ld, &mnonce);
        assert_eq!(hex::encode(m), expected);
        let blob = MeasureBlob {
            measurement: m,
            mnonce,
        };
        assert_eq!(verify_measurement(&tik, 0, 18, 15, 0, &ld, &blob), Ok(()));
    }

    // docs/protocol/test-vectors.md#sevctl-measurement (virtee/sevctl tests/measurementbuild.rs)
    // common inputs: TIK tik1.bin, API 1.40 build 40, policy 0x03.
    const TIK_11_4: &str = "3569cf61a32a602b87185ac6e0f55913";
    const MNONCE_11_4: &str = "c313fab511c216b1505b1b2ea9903c40";

    fn check_11_4(policy: u32, ver: (u8, u8, u8), ld: &str, mnonce: &str, expected: &str) {
        let tik = Tik::from_bytes(unhex(TIK_11_4));
        let ld = unhex(ld);
        let mnonce = unhex(mnonce);
        let m = launch_measurement(&tik, ver.0, ver.1, ver.2, policy, &ld, &mnonce);
        assert_eq!(hex::encode(m), expected);
        let blob = MeasureBlob {
            measurement: m,
            mnonce,
        };
        // The 48-byte output is MEASUREMENT ‖ MNONCE.
        let bytes = blob.to_bytes();
        assert_eq!(
            hex::encode(bytes),
            format!("{expected}{}", hex::encode(mnonce))
        );
        assert_eq!(MeasureBlob::decode(&bytes).unwrap(), blob);
        assert_eq!(
            verify_measurement(&tik, ver.0, ver.1, ver.2, policy, &ld, &blob),
            Ok(())
        );
    }

    /// docs/protocol/test-vectors.md#sevctl-measurement a: LD supplied on the command line.
    #[test]
    fn sevctl_measurement_case_a_supplied_ld() {
        check_11_4(
            0x03,
            (1, 40, 40),
            "c64bd101fc9a4a2ce0a27c408d9200911f139a895469b04a40a6fa2890830d23",
            MNONCE_11_4,
            "96cc1bc56c48f60724c9ad7a250bdd16da5898d3b86fede29c03e9aac828048e",
        );
    }

    /// docs/protocol/test-vectors.md#sevctl-measurement b: LD of the trimmed sevctl OVMF fixture
    /// (taken from the reference table; the digest itself is computed elsewhere).
    #[test]
    fn sevctl_measurement_case_b_ovmf() {
        check_11_4(
            0x03,
            (1, 40, 40),
            "2f6fc6065f4abc131eb4fb2b5090a542636eae84a94c0db0fdd5f405cb372ff5",
            MNONCE_11_4,
            "a0c0dec08a2e252a5ba4d4478fb324de9d3c1f674f65076c64c535e2a2329819",
        );
    }

    /// docs/protocol/test-vectors.md#sevctl-measurement c: OVMF + kernel hashes table (LD from the
    /// table).
    #[test]
    fn sevctl_measurement_case_c_kernel_hashes() {
        check_11_4(
            0x03,
            (1, 40, 40),
            "4b47fec6f851487c33714c8a00a832a1b705ad0a7cac4a647388eccfa9f0c570",
            MNONCE_11_4,
            "8776ae61b5909d55bb1062d63781dff52374a0460c3d4dac2b86cb9de7d63f0b",
        );
    }

    /// docs/protocol/test-vectors.md#sevctl-measurement d: SEV-ES, policy 0x05, API 1.49 build 6,
    /// own MNONCE.
    #[test]
    fn sevctl_measurement_case_d_seves() {
        check_11_4(
            0x05,
            (1, 49, 6),
            "847b5ab6db136ea67dc5a95478ebe7e5ebbe93e9e74bdb1284165f9007a4e367",
            "2dbe959f5d3164db528c6480008509f2",
            "fe8d27cc3284e5782d56751958f85479afd6658ad328b13147b282c2e31d6c07",
        );
    }

    /// The legacy form (API < 0.17) is HMAC(TIK, LE32(POLICY) ‖ LD ‖ MNONCE),
    /// and the selector switches exactly at 0.17.
    #[test]
    fn legacy_form_and_selector() {
        let tik = Tik::from_bytes([0x11; 16]);
        let ld = [0x22; 32];
        let mnonce = [0x33; 16];
        let mut msg = 0x0102_0304u32.to_le_bytes().to_vec();
        msg.extend_from_slice(&ld);
        msg.extend_from_slice(&mnonce);
        let mut mac = <hmac::Hmac<Sha256> as Mac>::new_from_slice(&[0x11; 16]).unwrap();
        mac.update(&msg);
        let expected: [u8; 32] = mac.finalize().into_bytes().into();

        assert_eq!(
            launch_measurement_legacy(&tik, 0x0102_0304, &ld, &mnonce),
            expected
        );
        assert_eq!(
            launch_measurement_for_api(&tik, 0, 16, 3, 0x0102_0304, &ld, &mnonce),
            expected
        );
        assert_ne!(
            launch_measurement_for_api(&tik, 0, 17, 3, 0x0102_0304, &ld, &mnonce),
            expected
        );
        assert!(!api_has_measurement_context(0, 16));
        assert!(api_has_measurement_context(0, 17));
        assert!(api_has_measurement_context(1, 0));
        let blob = MeasureBlob {
            measurement: expected,
            mnonce,
        };
        assert_eq!(
            verify_measurement(&tik, 0, 16, 9, 0x0102_0304, &ld, &blob),
            Ok(())
        );
    }

    /// A wrong LD, policy, version, build, TIK, nonce or measurement byte
    /// all fail verification.
    #[test]
    fn wrong_inputs_fail_verification() {
        let tik = Tik::from_bytes(unhex(TIK_11_4));
        let ld: [u8; 32] =
            unhex("c64bd101fc9a4a2ce0a27c408d9200911f139a895469b04a40a6fa2890830d23");
        let mnonce = unhex(MNONCE_11_4);
        let blob = MeasureBlob {
            measurement: launch_measurement(&tik, 1, 40, 40, 3, &ld, &mnonce),
            mnonce,
        };
        let err = Err(MeasurementError::Mismatch);
        let mut bad_ld = ld;
        bad_ld[31] ^= 1;
        assert_eq!(verify_measurement(&tik, 1, 40, 40, 3, &bad_ld, &blob), err);
        assert_eq!(verify_measurement(&tik, 1, 40, 40, 1, &ld, &blob), err);
        assert_eq!(verify_measurement(&tik, 1, 41, 40, 3, &ld, &blob), err);
        assert_eq!(verify_measurement(&tik, 2, 40, 40, 3, &ld, &blob), err);
        assert_eq!(verify_measurement(&tik, 1, 40, 41, 3, &ld, &blob), err);
        let other_tik = Tik::from_bytes([0; 16]);
        assert_eq!(
            verify_measurement(&other_tik, 1, 40, 40, 3, &ld, &blob),
            err
        );
        for i in 0..MeasureBlob::SIZE {
            let mut bytes = blob.to_bytes();
            bytes[i] ^= 0x40;
            let tampered = MeasureBlob::from_bytes(&bytes);
            assert_eq!(
                verify_measurement(&tik, 1, 40, 40, 3, &ld, &tampered),
                err,
                "byte {i}"
            );
        }
    }

    #[test]
    fn blob_decode_checks_length() {
        assert_eq!(
            MeasureBlob::decode(&[0; 47]).unwrap_err(),
            MeasurementError::BlobLength {
                expected: 48,
                actual: 47
            }
        );
        assert_eq!(
            MeasureBlob::decode(&[0; 49]).unwrap_err(),
            MeasurementError::BlobLength {
                expected: 48,
                actual: 49
            }
        );
    }

    /// Field order of the 48-byte blob: measurement at 0x00, MNONCE at 0x20.
    #[test]
    fn blob_round_trip() {
        let bytes: [u8; 48] = core::array::from_fn(|i| i as u8);
        let blob = MeasureBlob::from_bytes(&bytes);
        assert_eq!(blob.measurement[..], bytes[..32]);
        assert_eq!(blob.mnonce[..], bytes[32..]);
        assert_eq!(blob.to_bytes(), bytes);
    }
}
