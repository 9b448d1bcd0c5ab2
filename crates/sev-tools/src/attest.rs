//! Checking an ATTESTATION report (docs/protocol/measurement.md#attestation-report), as QMP
//! `query-sev-attestation-report` returns it: the PEK signature (PEK from a
//! verified chain), then the launch digest, policy and MNONCE against what
//! the owner expects. Comparisons of the digest are constant-time.

use sev_proto::abi::Policy;
use sev_proto::attestation::{self, Report};
use sev_proto::cert::chain::VerifiedChain;
use subtle::ConstantTimeEq;

/// Why a report was refused.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The report does not decode.
    #[error("attestation report does not decode")]
    Decode(#[source] attestation::Error),
    /// The PEK signature does not verify.
    #[error("attestation report is not signed by the verified chain's PEK")]
    Signature(#[source] attestation::Error),
    /// The launch digest differs.
    #[error("attestation report launch digest {found} is not the expected {expected}")]
    Digest {
        /// Found (hex).
        found: String,
        /// Expected (hex).
        expected: String,
    },
    /// The policy differs.
    #[error("attestation report policy {found} is not the expected {expected}")]
    Policy {
        /// Found.
        found: Policy,
        /// Expected.
        expected: Policy,
    },
    /// The MNONCE is not the one the owner asked with.
    #[error("attestation report MNONCE {found} is not the one requested ({expected}): a replayed report")]
    Mnonce {
        /// Found (hex).
        found: String,
        /// Expected (hex).
        expected: String,
    },
}

/// What the owner expects of a report.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// The launch digest.
    pub launch_digest: Option<[u8; 32]>,
    /// The policy.
    pub policy: Option<u32>,
    /// The MNONCE sent with the request.
    pub mnonce: Option<[u8; 16]>,
}

/// Decodes and checks `bytes` (0xD0 bytes) against `chain` and `expected`,
/// signature first.
pub fn verify_report(
    bytes: &[u8],
    chain: &VerifiedChain,
    expected: &Expected,
) -> Result<Report, AttestError> {
    let report = Report::decode(bytes).map_err(AttestError::Decode)?;
    report
        .verify_with(chain.pek_verifying_key())
        .map_err(AttestError::Signature)?;
    if let Some(ld) = &expected.launch_digest {
        if !bool::from(report.launch_digest().ct_eq(ld)) {
            return Err(AttestError::Digest {
                found: hex::encode(report.launch_digest()),
                expected: hex::encode(ld),
            });
        }
    }
    if let Some(p) = expected.policy {
        if report.policy() != p {
            return Err(AttestError::Policy {
                found: Policy::from_bits(report.policy()),
                expected: Policy::from_bits(p),
            });
        }
    }
    if let Some(n) = &expected.mnonce {
        if !bool::from(report.mnonce().ct_eq(n)) {
            return Err(AttestError::Mnonce {
                found: hex::encode(report.mnonce()),
                expected: hex::encode(n),
            });
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p384::ecdsa::SigningKey;
    use sev_proto::cert::chain::verify_owner_chain;
    use sev_proto::cert::sev::{Certificate, Slot};
    use sev_proto::cert::{Algorithm, Usage};

    fn key(seed: u8) -> SigningKey {
        let mut b = [seed; 48];
        b[0] = 1;
        SigningKey::from_slice(&b).unwrap()
    }

    /// A minimal owner chain (OCA → PEK → PDH) made here, to get a
    /// VerifiedChain holding `pek`'s key.
    fn chain(pek: &SigningKey) -> VerifiedChain {
        let oca_key = key(3);
        let pdh_key = key(4);
        let mut oca = Certificate::new_ec(
            Usage::Oca,
            Algorithm::EcdsaSha256,
            0,
            0,
            &p384::PublicKey::from(oca_key.verifying_key()),
        )
        .unwrap();
        oca.sign(Slot::Sig1, Usage::Oca, &oca_key, Algorithm::EcdsaSha256)
            .unwrap();
        let mut pek_c = Certificate::new_ec(
            Usage::Pek,
            Algorithm::EcdsaSha256,
            1,
            55,
            &p384::PublicKey::from(pek.verifying_key()),
        )
        .unwrap();
        pek_c
            .sign(Slot::Sig1, Usage::Oca, &oca_key, Algorithm::EcdsaSha256)
            .unwrap();
        let mut pdh = Certificate::new_ec(
            Usage::Pdh,
            Algorithm::EcdhSha256,
            1,
            55,
            &p384::PublicKey::from(pdh_key.verifying_key()),
        )
        .unwrap();
        pdh.sign(Slot::Sig1, Usage::Pek, pek, Algorithm::EcdsaSha256)
            .unwrap();
        verify_owner_chain(&pdh, &pek_c, &oca).unwrap()
    }

    #[test]
    fn reports_are_checked_field_by_field() {
        let pek = key(1);
        let c = chain(&pek);
        let report = Report::sign([7; 16], [8; 32], 0x3, &pek).unwrap().encode();
        let good = Expected {
            launch_digest: Some([8; 32]),
            policy: Some(0x3),
            mnonce: Some([7; 16]),
        };
        verify_report(&report, &c, &good).unwrap();
        let e = verify_report(
            &report,
            &c,
            &Expected {
                launch_digest: Some([9; 32]),
                ..good.clone()
            },
        );
        assert!(matches!(e, Err(AttestError::Digest { .. })));
        let e = verify_report(
            &report,
            &c,
            &Expected {
                policy: Some(1),
                ..good.clone()
            },
        );
        assert!(matches!(e, Err(AttestError::Policy { .. })));
        let e = verify_report(
            &report,
            &c,
            &Expected {
                mnonce: Some([0; 16]),
                ..good.clone()
            },
        );
        assert!(matches!(e, Err(AttestError::Mnonce { .. })));
        // Signed by another key: refused before any field is looked at.
        let forged = Report::sign([7; 16], [8; 32], 0x3, &key(2))
            .unwrap()
            .encode();
        assert!(matches!(
            verify_report(&forged, &c, &good),
            Err(AttestError::Signature(_))
        ));
        let mut tampered = report;
        tampered[0x30] ^= 1;
        assert!(matches!(
            verify_report(&tampered, &c, &good),
            Err(AttestError::Signature(_))
        ));
        assert!(matches!(
            verify_report(&report[..100], &c, &good),
            Err(AttestError::Decode(_))
        ));
    }
}
