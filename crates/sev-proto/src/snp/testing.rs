//! A throwaway certificate issuer for tests (feature `testing`): an ARK
//! and an ASK of small RSA keys, VCEKs with AMD's extensions, CRLs, and
//! reports signed by those VCEKs. Its root is nobody's: it verifies only
//! when a test trusts it explicitly. Never use it outside tests.

use std::str::FromStr as _;
use std::time::{Duration, SystemTime};

use p384::ecdsa::SigningKey as EcSigningKey;
use rand_core::OsRng;
use rsa::pkcs8::EncodePublicKey as _;
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};
use rsa::RsaPrivateKey;
use sha2::Sha384;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::der::asn1::{BitString, Ia5StringRef, OctetString};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};

use super::cert::Certificate;
use super::chain::Chain;
use super::kds::hwid_hex;
use super::report::{AttestationReport, Cpuid, FirmwareVersion, ReportSignature, ReportSigner};
use super::{GuestPolicy, Product, TcbVersion};

/// Why the test issuer could not make an object (a bug in a test, or in
/// this module).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("test issuer: {what}: {why}")]
pub struct IssueError {
    /// What was being made.
    pub what: &'static str,
    /// The underlying error.
    pub why: String,
}

fn fail<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> IssueError {
    move |e| IssueError {
        what,
        why: e.to_string(),
    }
}

/// The RSA key size of the test ARK and ASK (AMD's are 4096 bits; the
/// verifiers do not care, and small keys keep tests fast).
pub const TEST_RSA_BITS: usize = 2048;

const LOCATION: &str = "OU=Engineering,C=US,L=Santa Clara,ST=CA,O=Advanced Micro Devices";

fn name(cn: &str) -> Result<Name, IssueError> {
    // RFC 4514 order is the reverse of the DER order: CN comes first.
    Name::from_str(&format!("CN={cn},{LOCATION}")).map_err(fail("a valid test name"))
}

fn time(t: SystemTime) -> Result<Time, IssueError> {
    Time::try_from(t).map_err(fail("a time between 1950 and 9999"))
}

fn pss() -> Result<AlgorithmIdentifierOwned, IssueError> {
    rsa::pss::get_default_pss_signature_algo_id::<Sha384>().map_err(fail("PSS parameters"))
}

fn sign(key: &RsaPrivateKey, tbs: &[u8]) -> Result<BitString, IssueError> {
    let signer = rsa::pss::SigningKey::<Sha384>::new(key.clone());
    let signature = signer.sign_with_rng(&mut OsRng, tbs).to_vec();
    BitString::from_bytes(&signature).map_err(fail("a signature bit string"))
}

fn rsa_spki(key: &RsaPrivateKey) -> Result<SubjectPublicKeyInfoOwned, IssueError> {
    let der = key
        .to_public_key()
        .to_public_key_der()
        .map_err(fail("an RSA public key"))?;
    SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).map_err(fail("an RSA SPKI"))
}

fn ec_spki(key: &EcSigningKey) -> Result<SubjectPublicKeyInfoOwned, IssueError> {
    let point = key.verifying_key().to_encoded_point(false);
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::new_unwrap("1.2.840.10045.2.1"),
            parameters: Some(ObjectIdentifier::new_unwrap("1.3.132.0.34").into()),
        },
        subject_public_key: BitString::from_bytes(point.as_bytes()).map_err(fail("an EC point"))?,
    })
}

fn amd_ext(arc: &str, value: Vec<u8>) -> Result<Extension, IssueError> {
    Ok(Extension {
        extn_id: ObjectIdentifier::new(&format!("1.3.6.1.4.1.3704.1.{arc}"))
            .map_err(fail("an AMD extension OID"))?,
        critical: false,
        extn_value: OctetString::new(value).map_err(fail("an extension value"))?,
    })
}

/// What a certificate is made of.
struct Spec<'a> {
    serial: u64,
    subject: Name,
    issuer: Name,
    spki: SubjectPublicKeyInfoOwned,
    extensions: Vec<Extension>,
    signer: &'a RsaPrivateKey,
}

fn certificate(spec: Spec<'_>, from: SystemTime, years: u64) -> Result<Certificate, IssueError> {
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::from(spec.serial),
        signature: pss()?,
        issuer: spec.issuer,
        validity: Validity {
            not_before: time(from)?,
            not_after: time(from + Duration::from_secs(years * 365 * 86_400))?,
        },
        subject: spec.subject,
        subject_public_key_info: spec.spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: (!spec.extensions.is_empty()).then_some(spec.extensions),
    };
    let tbs_der = tbs.to_der().map_err(fail("a TBS certificate"))?;
    let cert = x509_cert::Certificate {
        signature: sign(spec.signer, &tbs_der)?,
        tbs_certificate: tbs,
        signature_algorithm: pss()?,
    };
    Certificate::from_der(&cert.to_der().map_err(fail("a certificate"))?).map_err(fail("decodes"))
}

/// A test ARK and ASK of one product.
pub struct TestIssuer {
    /// The product.
    pub product: Product,
    ark_key: RsaPrivateKey,
    ask_key: RsaPrivateKey,
    /// The self-signed root, `CN=ARK-<Product>`.
    pub ark: Certificate,
    /// The intermediate, `CN=SEV-<Product>`, signed by the ARK.
    pub ask: Certificate,
    /// When the certificates start being valid (a day ago).
    pub not_before: SystemTime,
}

impl std::fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIssuer")
            .field("product", &self.product)
            .finish_non_exhaustive()
    }
}

impl TestIssuer {
    /// New keys and certificates for `product`; the ASK has serial
    /// `ask_serial`.
    pub fn new(product: Product, ask_serial: u64) -> Result<Self, IssueError> {
        let key = || RsaPrivateKey::new(&mut OsRng, TEST_RSA_BITS).map_err(fail("an RSA key"));
        let (ark_key, ask_key) = (key()?, key()?);
        let not_before = SystemTime::now() - Duration::from_secs(86_400);
        let ark_name = name(&format!("ARK-{product}"))?;
        let ark = certificate(
            Spec {
                serial: 0x1_0000,
                subject: ark_name.clone(),
                issuer: ark_name.clone(),
                spki: rsa_spki(&ark_key)?,
                extensions: Vec::new(),
                signer: &ark_key,
            },
            not_before,
            25,
        )?;
        let ask = certificate(
            Spec {
                serial: ask_serial,
                subject: name(&format!("SEV-{product}"))?,
                issuer: ark_name,
                spki: rsa_spki(&ask_key)?,
                extensions: Vec::new(),
                signer: &ark_key,
            },
            not_before,
            25,
        )?;
        Ok(Self {
            product,
            ark_key,
            ask_key,
            ark,
            ask,
            not_before,
        })
    }

    /// The ASK then the ARK, PEM (a KDS `cert_chain`).
    pub fn cert_chain_pem(&self) -> Result<String, IssueError> {
        [&self.ask, &self.ark]
            .iter()
            .map(|c| pem(c.der()))
            .collect()
    }

    /// A VCEK for `chip_id` at `tcb`, and its private key.
    pub fn vcek(
        &self,
        chip_id: &[u8; 64],
        tcb: TcbVersion,
    ) -> Result<(Certificate, EcSigningKey), IssueError> {
        let key = EcSigningKey::random(&mut OsRng);
        let int = |v: u8| u32::from(v).to_der().map_err(fail("an INTEGER"));
        let product_name = Ia5StringRef::new(self.product.name())
            .and_then(|s| s.to_der())
            .map_err(fail("an IA5String"))?;
        let mut extensions = vec![
            amd_ext("1", int(u8::from(self.product == Product::Turin))?)?,
            amd_ext("2", product_name)?,
            amd_ext("3.1", int(tcb.bootloader)?)?,
            amd_ext("3.2", int(tcb.tee)?)?,
            amd_ext("3.3", int(tcb.snp)?)?,
            amd_ext("3.8", int(tcb.microcode)?)?,
        ];
        if self.product.has_fmc() {
            extensions.push(amd_ext("3.9", int(tcb.fmc)?)?);
        }
        let hwid = hex::decode(hwid_hex(self.product, chip_id)).map_err(fail("hex"))?;
        extensions.push(amd_ext("4", hwid)?);
        let cert = certificate(
            Spec {
                serial: 0,
                subject: name("SEV-VCEK")?,
                issuer: name(&format!("SEV-{}", self.product))?,
                spki: ec_spki(&key)?,
                extensions,
                signer: &self.ask_key,
            },
            self.not_before,
            7,
        )?;
        Ok((cert, key))
    }

    /// The chain ARK → ASK → `vcek`.
    pub fn chain(&self, vcek: Certificate) -> Chain {
        Chain {
            ark: self.ark.clone(),
            ask: self.ask.clone(),
            vek: vcek,
        }
    }

    /// A CRL (DER) issued by this ARK listing `revoked` serial numbers.
    pub fn crl(&self, revoked: &[&[u8]]) -> Result<Vec<u8>, IssueError> {
        let now = SystemTime::now();
        let revoked = revoked
            .iter()
            .map(|serial| {
                Ok(RevokedCert {
                    serial_number: SerialNumber::new(serial).map_err(fail("a serial number"))?,
                    revocation_date: time(now - Duration::from_secs(3600))?,
                    crl_entry_extensions: None,
                })
            })
            .collect::<Result<Vec<_>, IssueError>>()?;
        let tbs = TbsCertList {
            version: Version::V2,
            signature: pss()?,
            issuer: self.ark_subject()?,
            this_update: time(now - Duration::from_secs(3600))?,
            next_update: Some(time(now + Duration::from_secs(7 * 86_400))?),
            revoked_certificates: (!revoked.is_empty()).then_some(revoked),
            crl_extensions: None,
        };
        let tbs_der = tbs.to_der().map_err(fail("a TBS CRL"))?;
        CertificateList {
            signature: sign(&self.ark_key, &tbs_der)?,
            tbs_cert_list: tbs,
            signature_algorithm: pss()?,
        }
        .to_der()
        .map_err(fail("a CRL"))
    }

    fn ark_subject(&self) -> Result<Name, IssueError> {
        name(&format!("ARK-{}", self.product))
    }

    /// A version 3 report of a chip of this product, signed by `vcek_key`.
    pub fn report(
        &self,
        vcek_key: &EcSigningKey,
        chip_id: [u8; 64],
        tcb: TcbVersion,
    ) -> Result<AttestationReport, IssueError> {
        let (family, model) = match self.product {
            Product::Milan => (0x19, 0x01),
            Product::Genoa => (0x19, 0x11),
            Product::Turin => (0x1A, 0x02),
        };
        let tcb = tcb
            .encode(self.product)
            .map_err(fail("a TCB of the product"))?;
        let mut r = AttestationReport {
            version: 3,
            guest_svn: 1,
            policy: GuestPolicy::new(0x3_0000).map_err(fail("a valid policy"))?,
            family_id: [0; 16],
            image_id: [0; 16],
            vmpl: 0,
            signature_algo: 1,
            current_tcb: tcb,
            platform_info: 0,
            author_key_en: false,
            mask_chip_key: false,
            signing_key: ReportSigner::Vcek,
            report_data: [0x5a; 64],
            measurement: [0x4d; 48],
            host_data: [0; 32],
            id_key_digest: [0; 48],
            author_key_digest: [0; 48],
            report_id: [1; 32],
            report_id_ma: [0xFF; 32],
            reported_tcb: tcb,
            cpuid: Some(Cpuid {
                family,
                model,
                stepping: 1,
            }),
            chip_id,
            committed_tcb: tcb,
            current_version: FirmwareVersion {
                major: 1,
                minor: 55,
                build: 0,
            },
            committed_version: FirmwareVersion {
                major: 1,
                minor: 55,
                build: 0,
            },
            launch_tcb: tcb,
            mitigation_vectors: None,
            signature: ReportSignature::ZERO,
        };
        r.sign(vcek_key).map_err(fail("a report signature"))?;
        Ok(r)
    }
}

/// PEM text of one DER certificate.
pub fn pem(der: &[u8]) -> Result<String, IssueError> {
    x509_cert::der::pem::encode_string("CERTIFICATE", x509_cert::der::pem::LineEnding::LF, der)
        .map_err(fail("PEM"))
}
