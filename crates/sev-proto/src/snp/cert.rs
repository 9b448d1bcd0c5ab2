//! SNP's X.509 certificates (docs/protocol/snp.md#vcek-chain): the ARK and
//! ASK (RSA-4096, RSASSA-PSS with SHA-384) and the VCEK or VLEK (ECDSA
//! P-384), read from DER or PEM, with AMD's extensions decoded.
//!
//! This module reads certificates and checks one signature at a time; the
//! chain's rules (names, pinning, validity, the report) are in
//! [`super::chain`].

use std::fmt;
use std::time::{Duration, SystemTime};

use p384::ecdsa::VerifyingKey;
use rsa::pkcs1::{RsaPssParams, TrailerField};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use sha2::{Digest, Sha256, Sha384};
use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{Decode, Encode, Reader, SliceReader};

/// The largest certificate accepted (AMD's are under 2 KiB).
pub const MAX_CERT_LEN: usize = 64 << 10;

const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// AMD's extension arc, 1.3.6.1.4.1.3704.1.
mod amd_oid {
    use super::ObjectIdentifier;

    pub const STRUCT_VERSION: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.1");
    pub const PRODUCT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");
    pub const BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
    pub const TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
    pub const SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
    pub const UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
    pub const FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
    pub const HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");
    pub const CSP_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.5");
}

/// Why bytes are not a usable certificate, or a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Longer than [`MAX_CERT_LEN`].
    #[error("certificate is {0} bytes, more than the {MAX_CERT_LEN} accepted")]
    TooLarge(usize),
    /// Not DER X.509.
    #[error("not a DER X.509 certificate: {0}")]
    Der(String),
    /// Not PEM, or a PEM block that is not a certificate.
    #[error("not a PEM certificate: {0}")]
    Pem(String),
    /// A PEM file with no certificate in it.
    #[error("no certificate in the PEM text")]
    Empty,
    /// The signature algorithm is not RSASSA-PSS with SHA-384, MGF1-SHA-384,
    /// salt 48.
    #[error("{cert}: signature algorithm is not RSASSA-PSS with SHA-384 and salt 48 ({why})")]
    SignatureAlgorithm {
        /// The certificate's subject CN.
        cert: String,
        /// What differs.
        why: &'static str,
    },
    /// The key is not the kind needed (RSA for an issuer, P-384 for a VCEK).
    #[error("{cert}: public key is not {expected}")]
    KeyType {
        /// The certificate's subject CN.
        cert: String,
        /// RSA or EC P-384.
        expected: &'static str,
    },
    /// The signature does not verify with the issuer's key.
    #[error("{cert}: signature does not verify with the public key of {issuer}")]
    BadSignature {
        /// The certificate's subject CN.
        cert: String,
        /// The issuer certificate's subject CN.
        issuer: String,
    },
    /// One of AMD's extensions does not decode.
    #[error("{cert}: AMD extension {oid} ({name}) does not decode")]
    Extension {
        /// The certificate's subject CN.
        cert: String,
        /// The extension's OID.
        oid: ObjectIdentifier,
        /// Its name.
        name: &'static str,
    },
}

/// An X.509 certificate of SNP's chain, with its DER bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
    cert: x509_cert::Certificate,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.cert.tbs_certificate.subject.to_string())
            .field("issuer", &self.cert.tbs_certificate.issuer.to_string())
            .finish_non_exhaustive()
    }
}

/// The subject CN of a name, if it has one that is a string.
pub(crate) fn common_name(name: &x509_cert::name::Name) -> Option<String> {
    name.0.iter().flat_map(|rdn| rdn.0.iter()).find_map(|atv| {
        if atv.oid != OID_CN {
            return None;
        }
        let v = &atv.value;
        v.decode_as::<Utf8StringRef<'_>>()
            .map(|s| s.as_str().to_owned())
            .or_else(|_| {
                v.decode_as::<PrintableStringRef<'_>>()
                    .map(|s| s.as_str().to_owned())
            })
            .or_else(|_| {
                v.decode_as::<Ia5StringRef<'_>>()
                    .map(|s| s.as_str().to_owned())
            })
            .ok()
    })
}

impl Certificate {
    /// Decodes a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        if der.len() > MAX_CERT_LEN {
            return Err(CertError::TooLarge(der.len()));
        }
        let cert =
            x509_cert::Certificate::from_der(der).map_err(|e| CertError::Der(e.to_string()))?;
        Ok(Certificate {
            der: der.to_vec(),
            cert,
        })
    }

    /// Decodes every certificate of a PEM text, in order (a KDS
    /// `cert_chain` holds the ASK, then the ARK). Text outside the
    /// `-----BEGIN`/`-----END` lines is ignored.
    pub fn from_pem_chain(pem: &[u8]) -> Result<Vec<Self>, CertError> {
        if pem.len() > 4 * MAX_CERT_LEN {
            return Err(CertError::TooLarge(pem.len()));
        }
        let text = std::str::from_utf8(pem).map_err(|_| CertError::Pem("not UTF-8 text".into()))?;
        let mut certs = Vec::new();
        let mut rest = text;
        while let Some(begin) = rest.find("-----BEGIN ") {
            let after = &rest[begin..];
            let end = after
                .find("-----END ")
                .and_then(|e| after[e + 9..].find("-----").map(|l| e + 9 + l + 5))
                .ok_or_else(|| CertError::Pem("a BEGIN line without its END line".into()))?;
            let (label, der) = x509_cert::der::pem::decode_vec(&after.as_bytes()[..end])
                .map_err(|e| CertError::Pem(e.to_string()))?;
            if label != "CERTIFICATE" {
                return Err(CertError::Pem(format!(
                    "a {label:?} block, not a CERTIFICATE"
                )));
            }
            certs.push(Self::from_der(&der)?);
            rest = &after[end..];
        }
        if certs.is_empty() {
            return Err(CertError::Empty);
        }
        Ok(certs)
    }

    /// Decodes one certificate from DER, or from PEM (the first of the
    /// text) when the bytes start with `-----BEGIN`, after any whitespace.
    pub fn from_der_or_pem(bytes: &[u8]) -> Result<Self, CertError> {
        if is_pem(bytes) {
            let mut certs = Self::from_pem_chain(bytes)?;
            Ok(certs.remove(0))
        } else {
            Self::from_der(bytes)
        }
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of the DER bytes (the fingerprint tools print).
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.der).into()
    }

    /// The subject's common name (`ARK-Milan`, `SEV-Milan`, `SEV-VCEK`, …),
    /// or an empty string.
    pub fn subject_cn(&self) -> String {
        common_name(&self.cert.tbs_certificate.subject).unwrap_or_default()
    }

    /// The issuer's common name, or an empty string.
    pub fn issuer_cn(&self) -> String {
        common_name(&self.cert.tbs_certificate.issuer).unwrap_or_default()
    }

    /// Whether this certificate's issuer name is `issuer`'s subject name.
    pub fn issued_by_name(&self, issuer: &Certificate) -> bool {
        self.cert.tbs_certificate.issuer == issuer.cert.tbs_certificate.subject
    }

    /// The validity period, as times since the Unix epoch.
    pub fn validity(&self) -> (SystemTime, SystemTime) {
        let v = &self.cert.tbs_certificate.validity;
        (
            SystemTime::UNIX_EPOCH + v.not_before.to_unix_duration(),
            SystemTime::UNIX_EPOCH + v.not_after.to_unix_duration(),
        )
    }

    /// Whether `at` is inside the validity period.
    pub fn valid_at(&self, at: SystemTime) -> bool {
        let (from, until) = self.validity();
        from <= at && at <= until
    }

    /// The RSA public key (an ARK, ASK or ASVK).
    pub fn rsa_public_key(&self) -> Result<RsaPublicKey, CertError> {
        let spki = self
            .cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| CertError::Der(e.to_string()))?;
        RsaPublicKey::from_public_key_der(&spki).map_err(|_| CertError::KeyType {
            cert: self.subject_cn(),
            expected: "RSA",
        })
    }

    /// The ECDSA P-384 public key (a VCEK or VLEK).
    pub fn p384_public_key(&self) -> Result<VerifyingKey, CertError> {
        let spki = &self.cert.tbs_certificate.subject_public_key_info;
        let wrong = || CertError::KeyType {
            cert: self.subject_cn(),
            expected: "EC P-384",
        };
        if spki.algorithm.oid != OID_EC_PUBLIC_KEY {
            return Err(wrong());
        }
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        if curve != Some(OID_SECP384R1) {
            return Err(wrong());
        }
        let point = spki.subject_public_key.as_bytes().ok_or_else(wrong)?;
        VerifyingKey::from_sec1_bytes(point).map_err(|_| wrong())
    }

    /// The raw bytes of the to-be-signed part, as they are in the DER.
    fn tbs_bytes(&self) -> Result<&[u8], CertError> {
        first_inner_tlv(&self.der).map_err(|e| CertError::Der(e.to_string()))
    }

    /// Checks that the signature algorithm is the one AMD uses:
    /// RSASSA-PSS, SHA-384, MGF1 with SHA-384, salt 48, trailer 1.
    fn check_pss_sha384(&self) -> Result<(), CertError> {
        check_pss_sha384(
            &self.cert.signature_algorithm,
            &self.cert.tbs_certificate.signature,
        )
        .map_err(|why| CertError::SignatureAlgorithm {
            cert: self.subject_cn(),
            why,
        })
    }

    /// Verifies this certificate's signature with `issuer`'s RSA key
    /// (RSASSA-PSS, SHA-384, salt 48). Names are not compared here.
    pub fn verify_signed_by(&self, issuer: &Certificate) -> Result<(), CertError> {
        self.check_pss_sha384()?;
        let key = issuer.rsa_public_key()?;
        let ok = verify_pss_sha384(key, self.tbs_bytes()?, self.cert.signature.as_bytes());
        if ok {
            Ok(())
        } else {
            Err(CertError::BadSignature {
                cert: self.subject_cn(),
                issuer: issuer.subject_cn(),
            })
        }
    }

    /// The serial number: the big-endian magnitude, without leading zero
    /// bytes (what a CRL entry is compared by).
    pub fn serial_number(&self) -> &[u8] {
        serial_magnitude(self.cert.tbs_certificate.serial_number.as_bytes())
    }

    /// The subject name.
    pub(crate) fn subject(&self) -> &x509_cert::name::Name {
        &self.cert.tbs_certificate.subject
    }

    /// AMD's extensions (a VCEK's or VLEK's).
    pub fn amd_extensions(&self) -> Result<AmdExtensions, CertError> {
        let mut out = AmdExtensions::default();
        let Some(extensions) = &self.cert.tbs_certificate.extensions else {
            return Ok(out);
        };
        for ext in extensions {
            let value = ext.extn_value.as_bytes();
            let fail = |name| CertError::Extension {
                cert: self.subject_cn(),
                oid: ext.extn_id,
                name,
            };
            let spl = |name| u8::from_der(value).map_err(|_| fail(name));
            match ext.extn_id {
                amd_oid::STRUCT_VERSION => {
                    out.struct_version =
                        Some(u32::from_der(value).map_err(|_| fail("structVersion"))?);
                }
                amd_oid::PRODUCT_NAME => {
                    let name = Ia5StringRef::from_der(value).map_err(|_| fail("productName"))?;
                    out.product_name = Some(name.as_str().to_owned());
                }
                amd_oid::BL_SPL => out.bl_spl = Some(spl("blSPL")?),
                amd_oid::TEE_SPL => out.tee_spl = Some(spl("teeSPL")?),
                amd_oid::SNP_SPL => out.snp_spl = Some(spl("snpSPL")?),
                amd_oid::UCODE_SPL => out.ucode_spl = Some(spl("ucodeSPL")?),
                amd_oid::FMC_SPL => out.fmc_spl = Some(spl("fmcSPL")?),
                amd_oid::HW_ID => out.hw_id = Some(hw_id(value).ok_or_else(|| fail("hwID"))?),
                amd_oid::CSP_ID => {
                    let id = Ia5StringRef::from_der(value).map_err(|_| fail("cspID"))?;
                    out.csp_id = Some(id.as_str().to_owned());
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// A hwID extension value: the raw chip id (64 bytes, or 8 on Turin), or
/// the same wrapped in an OCTET STRING (go-sev-guest's fake issuer).
fn hw_id(value: &[u8]) -> Option<Vec<u8>> {
    match value.len() {
        8 | 64 => Some(value.to_vec()),
        66 if value[..2] == [0x04, 0x40] => Some(value[2..].to_vec()),
        10 if value[..2] == [0x04, 0x08] => Some(value[2..].to_vec()),
        _ => None,
    }
}

/// The first element inside the outer SEQUENCE of `der` (the
/// to-be-signed part of a certificate or CRL), as it is in the DER.
pub(crate) fn first_inner_tlv(der: &[u8]) -> Result<&[u8], x509_cert::der::Error> {
    let mut reader = SliceReader::new(der)?;
    let _outer = x509_cert::der::Header::decode(&mut reader)?;
    reader.tlv_bytes()
}

/// Checks that `alg` (and the copy inside the signed part, `inner`) is
/// RSASSA-PSS, SHA-384, MGF1 with SHA-384, salt 48, trailer 1, as AMD signs.
pub(crate) fn check_pss_sha384(
    alg: &x509_cert::spki::AlgorithmIdentifierOwned,
    inner: &x509_cert::spki::AlgorithmIdentifierOwned,
) -> Result<(), &'static str> {
    if alg.oid != OID_RSASSA_PSS || inner != alg {
        return Err("not RSASSA-PSS");
    }
    let params_der = alg
        .parameters
        .as_ref()
        .ok_or("no PSS parameters")?
        .to_der()
        .map_err(|_| "PSS parameters do not encode")?;
    let params = RsaPssParams::from_der(&params_der).map_err(|_| "PSS parameters do not decode")?;
    if params.hash.oid != OID_SHA384 {
        return Err("hash is not SHA-384");
    }
    let mgf_hash = params.mask_gen.parameters.as_ref().map(|p| p.oid);
    if params.mask_gen.oid != OID_MGF1 || mgf_hash != Some(OID_SHA384) {
        return Err("mask generation is not MGF1 with SHA-384");
    }
    if params.salt_len != 48 {
        return Err("salt length is not 48");
    }
    if params.trailer_field != TrailerField::BC {
        return Err("trailer field is not 1");
    }
    Ok(())
}

/// Whether `signature` (absent: an unaligned BIT STRING) is `key`'s
/// RSASSA-PSS SHA-384 signature of `signed`.
pub(crate) fn verify_pss_sha384(
    key: RsaPublicKey,
    signed: &[u8],
    signature: Option<&[u8]>,
) -> bool {
    let Some(signature) = signature.and_then(|b| rsa::pss::Signature::try_from(b).ok()) else {
        return false;
    };
    rsa::pss::VerifyingKey::<Sha384>::new(key)
        .verify(signed, &signature)
        .is_ok()
}

/// A DER INTEGER's content without its leading zero bytes (one zero is
/// kept for the value 0).
pub(crate) fn serial_magnitude(bytes: &[u8]) -> &[u8] {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    &bytes[zeros.min(bytes.len().saturating_sub(1))..]
}

/// Whether `bytes` look like PEM text (start with `-----BEGIN` after
/// whitespace).
pub fn is_pem(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    bytes[start..].starts_with(b"-----BEGIN")
}

/// AMD's extensions of a VCEK or VLEK certificate (docs/protocol/snp.md#vcek-chain).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmdExtensions {
    /// structVersion (0 on Milan and Genoa, 1 on Turin).
    pub struct_version: Option<u32>,
    /// productName, e.g. `Milan-B0`, `Genoa`, `Turin`.
    pub product_name: Option<String>,
    /// blSPL: the boot loader's SVN.
    pub bl_spl: Option<u8>,
    /// teeSPL.
    pub tee_spl: Option<u8>,
    /// snpSPL.
    pub snp_spl: Option<u8>,
    /// ucodeSPL.
    pub ucode_spl: Option<u8>,
    /// fmcSPL (Turin).
    pub fmc_spl: Option<u8>,
    /// hwID: the chip id of a VCEK (64 bytes; 8 on Turin).
    pub hw_id: Option<Vec<u8>>,
    /// cspID: the cloud provider of a VLEK.
    pub csp_id: Option<String>,
}

impl AmdExtensions {
    /// The product named by productName (the part before any `-stepping`).
    pub fn product(&self) -> Option<super::Product> {
        let name = self.product_name.as_deref()?;
        name.split('-').next()?.parse().ok()
    }
}

/// Seconds since the Unix epoch, for messages.
pub(crate) fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}
