//! The ARK's certificate revocation list (docs/protocol/snp.md#crl): a DER
//! X.509 v2 CRL, issued and signed by the ARK (RSASSA-PSS, SHA-384), that
//! lists revoked intermediate certificates (ASK, ASVK) by serial number.
//!
//! [`Crl::check_chain`] does what go-sev-guest's revocation check does:
//! the CRL must be the chain's ARK's (issuer name and signature), and the
//! chain's ASK must not be listed.

use std::time::SystemTime;

use x509_cert::crl::CertificateList;
use x509_cert::der::Decode;

use super::cert::{self, Certificate};
use super::chain::Chain;

/// The largest CRL accepted (AMD's are a few KiB).
pub const MAX_CRL_LEN: usize = 256 << 10;

/// Why a CRL is unusable, or refuses a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrlError {
    /// Longer than [`MAX_CRL_LEN`].
    #[error("CRL is {0} bytes, more than the {MAX_CRL_LEN} accepted")]
    TooLarge(usize),
    /// Not a DER X.509 CRL.
    #[error("not a DER X.509 CRL: {0}")]
    Der(String),
    /// The CRL's issuer is not the ARK.
    #[error("CRL issuer {found:?} is not the ARK {expected:?}")]
    Issuer {
        /// The CRL's issuer CN.
        found: String,
        /// The ARK's subject CN.
        expected: String,
    },
    /// The signature algorithm is not AMD's.
    #[error("CRL signature algorithm is not RSASSA-PSS with SHA-384 and salt 48 ({0})")]
    SignatureAlgorithm(&'static str),
    /// The ARK's key is not RSA.
    #[error("the ARK's public key is not RSA")]
    ArkKey,
    /// The signature does not verify with the ARK's key.
    #[error("CRL signature does not verify with the public key of {0} (a CRL of another root?)")]
    BadSignature(String),
    /// The chain's intermediate is listed.
    #[error("{which} (serial {serial}) is revoked by the ARK's CRL")]
    Revoked {
        /// ASK or ASVK.
        which: &'static str,
        /// Its serial number (hex).
        serial: String,
    },
}

/// A decoded CRL with its DER bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    der: Vec<u8>,
    list: CertificateList,
}

impl Crl {
    /// Decodes a DER CRL (as the KDS serves it).
    pub fn from_der(der: &[u8]) -> Result<Self, CrlError> {
        if der.len() > MAX_CRL_LEN {
            return Err(CrlError::TooLarge(der.len()));
        }
        let list = CertificateList::from_der(der).map_err(|e| CrlError::Der(e.to_string()))?;
        Ok(Self {
            der: der.to_vec(),
            list,
        })
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The issuer's common name, or an empty string.
    pub fn issuer_cn(&self) -> String {
        cert::common_name(&self.list.tbs_cert_list.issuer).unwrap_or_default()
    }

    /// thisUpdate.
    pub fn this_update(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + self.list.tbs_cert_list.this_update.to_unix_duration()
    }

    /// nextUpdate, when the CRL has one.
    pub fn next_update(&self) -> Option<SystemTime> {
        self.list
            .tbs_cert_list
            .next_update
            .map(|t| SystemTime::UNIX_EPOCH + t.to_unix_duration())
    }

    /// The revoked serial numbers (big-endian, no leading zero bytes).
    pub fn revoked_serials(&self) -> Vec<&[u8]> {
        self.list
            .tbs_cert_list
            .revoked_certificates
            .iter()
            .flatten()
            .map(|r| cert::serial_magnitude(r.serial_number.as_bytes()))
            .collect()
    }

    /// Whether `cert`'s serial number is listed.
    pub fn lists(&self, cert: &Certificate) -> bool {
        let serial = cert.serial_number();
        self.revoked_serials().contains(&serial)
    }

    /// Checks that `ark` issued this CRL: issuer name, algorithm, signature.
    pub fn verify_signed_by(&self, ark: &Certificate) -> Result<(), CrlError> {
        let tbs = &self.list.tbs_cert_list;
        if tbs.issuer != *ark.subject() {
            return Err(CrlError::Issuer {
                found: self.issuer_cn(),
                expected: ark.subject_cn(),
            });
        }
        cert::check_pss_sha384(&self.list.signature_algorithm, &tbs.signature)
            .map_err(CrlError::SignatureAlgorithm)?;
        let key = ark.rsa_public_key().map_err(|_| CrlError::ArkKey)?;
        let signed = cert::first_inner_tlv(&self.der).map_err(|e| CrlError::Der(e.to_string()))?;
        if cert::verify_pss_sha384(key, signed, self.list.signature.as_bytes()) {
            Ok(())
        } else {
            Err(CrlError::BadSignature(ark.subject_cn()))
        }
    }

    /// Checks `chain` against this CRL: the CRL is the chain's ARK's, and
    /// the chain's intermediate (ASK or ASVK) is not listed.
    pub fn check_chain(&self, chain: &Chain) -> Result<(), CrlError> {
        self.verify_signed_by(&chain.ark)?;
        if self.lists(&chain.ask) {
            let which = if chain.ask.subject_cn().starts_with("SEV-VLEK-") {
                "ASVK"
            } else {
                "ASK"
            };
            return Err(CrlError::Revoked {
                which,
                serial: hex::encode(chain.ask.serial_number()),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
