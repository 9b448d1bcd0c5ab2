//! The X.509 objects of the emulated issuer: ARK, ASK, VCEK, CRL
//! (docs/protocol/snp.md#vcek-chain).

use std::time::Duration;

use hmac::{Hmac, Mac};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rsa::pss::{BlindedSigningKey, Signature, VerifyingKey};
use rsa::signature::{Keypair, RandomizedSigner, SignatureEncoding, Signer};
use rsa::{BigUint, RsaPrivateKey};
use sev_proto::snp::{Product, TcbVersion};
use sha2::{Digest, Sha384};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::der::asn1::{BitString, Ia5String, Ia5StringRef, SetOfVec, UtcTime};
use x509_cert::der::oid::{AssociatedOid, ObjectIdentifier};
use x509_cert::der::referenced::OwnedToRef;
use x509_cert::der::{Any, DateTime, Decode, Encode, Length, Tag, Writer};
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, CrlDistributionPoints, KeyUsage, KeyUsages,
    SubjectKeyIdentifier,
};
use x509_cert::ext::AsExtension;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, SubjectPublicKeyInfoOwned,
};
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, Version};
use zeroize::Zeroizing;

use crate::store::RsaKeyBytes;

/// RSASSA-PSS (RFC 4055), the AlgorithmIdentifier parameters AMD writes:
/// SHA-384, MGF1 with SHA-384, salt 48, trailer field 1 given explicitly.
const PSS_SHA384_PARAMS: [u8; 59] = [
    0x30, 0x39, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
    0x02, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
    0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0xa2, 0x03, 0x02, 0x01, 0x30, 0xa3, 0x03, 0x02, 0x01, 0x01,
];
const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");

const OID_OU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.11");
const OID_C: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.6");
const OID_L: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.7");
const OID_ST: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.8");
const OID_O: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// Years a VCEK is valid from its issue (as AMD's).
const VCEK_YEARS: u16 = 7;
/// Years the ARK and ASK are valid (as AMD's).
const ROOT_YEARS: u16 = 25;

type X509Result<T> = Result<T, String>;

fn err(what: &'static str) -> impl Fn(x509_cert::der::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// An RSASSA-PSS SHA-384 signer whose salt (and blinding) come from a
/// ChaCha20 stream keyed by HMAC-SHA-384(key secret, message): the same
/// message gives the same signature (docs/protocol/choices.md#u66).
struct PssSigner {
    key: BlindedSigningKey<Sha384>,
    /// SHA-384 of a label and the private exponent.
    salt_key: Zeroizing<[u8; 48]>,
}

impl PssSigner {
    fn new(bytes: &RsaKeyBytes) -> X509Result<Self> {
        let int = |b: &[u8]| BigUint::from_bytes_be(b);
        let key = RsaPrivateKey::from_components(
            int(&bytes.n),
            int(&bytes.e),
            int(&bytes.d),
            vec![int(&bytes.p), int(&bytes.q)],
        )
        .map_err(|e| format!("stored RSA key: {e}"))?;
        let mut hash = Sha384::new();
        hash.update(b"sevm emulated KDS: RSASSA-PSS salt key");
        hash.update(bytes.d.as_slice());
        let mut salt_key = Zeroizing::new([0u8; 48]);
        salt_key.copy_from_slice(&hash.finalize());
        Ok(PssSigner {
            key: BlindedSigningKey::new(key),
            salt_key,
        })
    }

    fn spki(&self) -> X509Result<SubjectPublicKeyInfoOwned> {
        SubjectPublicKeyInfoOwned::from_key(self.key.verifying_key()).map_err(|e| e.to_string())
    }
}

impl Keypair for PssSigner {
    type VerifyingKey = VerifyingKey<Sha384>;

    fn verifying_key(&self) -> Self::VerifyingKey {
        self.key.verifying_key()
    }
}

fn pss_sha384() -> x509_cert::spki::Result<AlgorithmIdentifierOwned> {
    Ok(AlgorithmIdentifierOwned {
        oid: OID_RSASSA_PSS,
        parameters: Some(Any::from_der(&PSS_SHA384_PARAMS)?),
    })
}

impl DynSignatureAlgorithmIdentifier for PssSigner {
    fn signature_algorithm_identifier(&self) -> x509_cert::spki::Result<AlgorithmIdentifierOwned> {
        pss_sha384()
    }
}

impl Signer<Signature> for PssSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Signature, rsa::signature::Error> {
        let mut mac = <Hmac<Sha384> as Mac>::new_from_slice(self.salt_key.as_slice())
            .map_err(rsa::signature::Error::from_source)?;
        mac.update(msg);
        let digest = mac.finalize().into_bytes();
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&digest[..32]);
        let mut rng = ChaCha20Rng::from_seed(*seed);
        self.key.try_sign_with_rng(&mut rng, msg)
    }
}

/// A name in AMD's attribute order and string types:
/// OU=Engineering, C=US, L=Santa Clara, ST=CA, O=Advanced Micro Devices, CN=`cn`.
fn amd_name(cn: &str) -> X509Result<Name> {
    let attrs: [(ObjectIdentifier, Tag, &str); 6] = [
        (OID_OU, Tag::Utf8String, "Engineering"),
        (OID_C, Tag::PrintableString, "US"),
        (OID_L, Tag::Utf8String, "Santa Clara"),
        (OID_ST, Tag::Utf8String, "CA"),
        (OID_O, Tag::Utf8String, "Advanced Micro Devices"),
        (OID_CN, Tag::Utf8String, cn),
    ];
    let mut rdns = Vec::with_capacity(attrs.len());
    for (oid, tag, value) in attrs {
        let atv = x509_cert::attr::AttributeTypeAndValue {
            oid,
            value: Any::new(tag, value.as_bytes()).map_err(err("name"))?,
        };
        let set = SetOfVec::try_from(vec![atv]).map_err(err("name"))?;
        rdns.push(RelativeDistinguishedName(set));
    }
    Ok(RdnSequence(rdns))
}

fn utc(dt: DateTime) -> X509Result<Time> {
    Ok(Time::UtcTime(
        UtcTime::from_date_time(dt).map_err(err("time"))?,
    ))
}

fn datetime(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8) -> X509Result<DateTime> {
    DateTime::new(y, mo, d, h, mi, s).map_err(err("time"))
}

/// `start` and the same instant `years` later.
fn validity_years(start: DateTime, years: u16) -> X509Result<Validity> {
    let end = datetime(
        start.year() + years,
        start.month(),
        start.day(),
        start.hour(),
        start.minutes(),
        start.seconds(),
    )?;
    Ok(Validity {
        not_before: utc(start)?,
        not_after: utc(end)?,
    })
}

/// Issue dates and serial numbers of AMD's ARK and ASK per product
/// (docs/protocol/snp.md#vcek-chain): `(ARK serial, ARK issued, ASK serial,
/// ASK issued)`.
fn root_facts(product: Product) -> X509Result<(u32, DateTime, u32, DateTime)> {
    Ok(match product {
        Product::Milan => (
            0x1_0000,
            datetime(2020, 10, 22, 17, 23, 5)?,
            0x1_0001,
            datetime(2020, 10, 22, 18, 24, 20)?,
        ),
        Product::Genoa => (
            0x2_0000,
            datetime(2022, 1, 26, 15, 34, 37)?,
            0x2_0002,
            datetime(2022, 10, 31, 13, 33, 48)?,
        ),
        Product::Turin => (
            0x3_0000,
            datetime(2023, 5, 15, 20, 3, 12)?,
            0x3_0001,
            datetime(2023, 5, 15, 20, 25, 21)?,
        ),
    })
}

fn serial(n: u32) -> X509Result<SerialNumber> {
    let bytes = n.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(3);
    SerialNumber::new(&bytes[first..]).map_err(err("serial"))
}

/// The CRL distribution point every AMD ARK and ASK names (go-sev-guest
/// requires exactly this URL).
fn crl_dp(product: Product) -> X509Result<CrlDistributionPoints> {
    let url = format!(
        "{}/vcek/v1/{}/crl",
        sev_proto::snp::kds::AMD_KDS_BASE,
        product.name()
    );
    let uri = Ia5String::new(&url).map_err(err("CRL distribution point"))?;
    Ok(CrlDistributionPoints(vec![DistributionPoint {
        distribution_point: Some(DistributionPointName::FullName(vec![
            GeneralName::UniformResourceIdentifier(uri),
        ])),
        reasons: None,
        crl_issuer: None,
    }]))
}

/// AMD's private extensions: the value is given as its encoded bytes
/// (DER of the inner type, or the raw hwID), never critical.
macro_rules! amd_extensions {
    ($($name:ident = $oid:literal;)*) => {$(
        struct $name(Vec<u8>);

        impl AssociatedOid for $name {
            const OID: ObjectIdentifier = ObjectIdentifier::new_unwrap($oid);
        }

        impl Encode for $name {
            fn encoded_len(&self) -> x509_cert::der::Result<Length> {
                Length::try_from(self.0.len())
            }

            fn encode(&self, writer: &mut impl Writer) -> x509_cert::der::Result<()> {
                writer.write(&self.0)
            }
        }

        impl AsExtension for $name {
            fn critical(&self, _: &Name, _: &[x509_cert::ext::Extension]) -> bool {
                false
            }
        }
    )*};
}

amd_extensions! {
    StructVersion = "1.3.6.1.4.1.3704.1.1";
    ProductName = "1.3.6.1.4.1.3704.1.2";
    BlSpl = "1.3.6.1.4.1.3704.1.3.1";
    TeeSpl = "1.3.6.1.4.1.3704.1.3.2";
    SnpSpl = "1.3.6.1.4.1.3704.1.3.3";
    Spl4 = "1.3.6.1.4.1.3704.1.3.4";
    Spl5 = "1.3.6.1.4.1.3704.1.3.5";
    Spl6 = "1.3.6.1.4.1.3704.1.3.6";
    Spl7 = "1.3.6.1.4.1.3704.1.3.7";
    UcodeSpl = "1.3.6.1.4.1.3704.1.3.8";
    FmcSpl = "1.3.6.1.4.1.3704.1.3.9";
    HwId = "1.3.6.1.4.1.3704.1.4";
}

fn int(v: u8) -> X509Result<Vec<u8>> {
    v.to_der().map_err(err("INTEGER"))
}

/// The productName of a VCEK: the product and the stepping of the emulated
/// processor, as AMD writes it (docs/protocol/choices.md#u67).
pub(crate) fn vcek_product_name(product: Product) -> String {
    match product {
        // AMD's Turin VCEKs carry the bare product name.
        Product::Turin => product.name().to_string(),
        Product::Milan | Product::Genoa => {
            let stepping = crate::snp::guest::fms(product) & 0xF;
            let letter = match stepping {
                0..=9 => 'B',
                _ => 'C',
            };
            format!("{}-{letter}{}", product.name(), stepping % 10)
        }
    }
}

/// The certificates of one platform, over its ARK and ASK keys.
pub(crate) struct Issuer {
    product: Product,
    ark: PssSigner,
    ask: PssSigner,
}

impl Issuer {
    /// The issuer of `product` over the stored ARK and ASK keys.
    pub(crate) fn new(product: Product, ark: &RsaKeyBytes, ask: &RsaKeyBytes) -> X509Result<Self> {
        Ok(Issuer {
            product,
            ark: PssSigner::new(ark)?,
            ask: PssSigner::new(ask)?,
        })
    }

    fn ark_name(&self) -> X509Result<Name> {
        amd_name(&format!("ARK-{}", self.product.name()))
    }

    fn ask_name(&self) -> X509Result<Name> {
        amd_name(&format!("SEV-{}", self.product.name()))
    }

    /// The ASK's serial number (what revoking it lists in the CRL).
    pub(crate) fn ask_serial(&self) -> X509Result<u32> {
        Ok(root_facts(self.product)?.2)
    }

    fn ark_ski(&self) -> X509Result<SubjectKeyIdentifier> {
        let spki = self.ark.spki()?;
        SubjectKeyIdentifier::try_from(spki.owned_to_ref()).map_err(|e| e.to_string())
    }

    /// The self-signed ARK.
    pub(crate) fn ark_cert(&self) -> X509Result<Certificate> {
        let (ark_serial, issued, _, _) = root_facts(self.product)?;
        let spki = self.ark.spki()?;
        let mut b = CertificateBuilder::new(
            Profile::Manual { issuer: None },
            serial(ark_serial)?,
            validity_years(issued, ROOT_YEARS)?,
            self.ark_name()?,
            spki,
            &self.ark,
        )
        .map_err(|e| format!("ARK: {e}"))?;
        let build = |e: x509_cert::builder::Error| format!("ARK: {e}");
        b.add_extension(&KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign))
            .map_err(build)?;
        b.add_extension(&self.ark_ski()?).map_err(build)?;
        b.add_extension(&BasicConstraints {
            ca: true,
            path_len_constraint: None,
        })
        .map_err(build)?;
        b.add_extension(&crl_dp(self.product)?).map_err(build)?;
        b.build::<Signature>().map_err(build)
    }

    /// The ASK, signed by the ARK.
    pub(crate) fn ask_cert(&self) -> X509Result<Certificate> {
        let (_, _, ask_serial, issued) = root_facts(self.product)?;
        let spki = self.ask.spki()?;
        let ski = SubjectKeyIdentifier::try_from(spki.owned_to_ref()).map_err(|e| e.to_string())?;
        let mut b = CertificateBuilder::new(
            Profile::Manual {
                issuer: Some(self.ark_name()?),
            },
            serial(ask_serial)?,
            validity_years(issued, ROOT_YEARS)?,
            self.ask_name()?,
            spki,
            &self.ark,
        )
        .map_err(|e| format!("ASK: {e}"))?;
        let build = |e: x509_cert::builder::Error| format!("ASK: {e}");
        b.add_extension(&ski).map_err(build)?;
        b.add_extension(&AuthorityKeyIdentifier {
            key_identifier: Some(self.ark_ski()?.0),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        })
        .map_err(build)?;
        b.add_extension(&BasicConstraints {
            ca: true,
            path_len_constraint: Some(0),
        })
        .map_err(build)?;
        b.add_extension(&KeyUsage(KeyUsages::KeyCertSign.into()))
            .map_err(build)?;
        b.add_extension(&crl_dp(self.product)?).map_err(build)?;
        b.build::<Signature>().map_err(build)
    }

    /// The VCEK certificate of `chip_id` at `tcb` for `key`, issued at
    /// `issued`, signed by the ASK. The hwID is the whole chip id, or its
    /// first 8 bytes on Turin.
    pub(crate) fn vcek_cert(
        &self,
        chip_id: &[u8; 64],
        tcb: &TcbVersion,
        key: &p384::ecdsa::VerifyingKey,
        issued: DateTime,
    ) -> X509Result<Certificate> {
        let spki = SubjectPublicKeyInfoOwned::from_key(*key).map_err(|e| e.to_string())?;
        let mut b = CertificateBuilder::new(
            Profile::Manual {
                issuer: Some(self.ask_name()?),
            },
            serial(0)?,
            validity_years(issued, VCEK_YEARS)?,
            amd_name("SEV-VCEK")?,
            spki,
            &self.ask,
        )
        .map_err(|e| format!("VCEK: {e}"))?;
        let build = |e: x509_cert::builder::Error| format!("VCEK: {e}");
        let name = Ia5StringRef::new(&vcek_product_name(self.product))
            .and_then(|s| s.to_der())
            .map_err(err("productName"))?;
        let turin = self.product == Product::Turin;
        b.add_extension(&StructVersion(int(u8::from(turin))?))
            .map_err(build)?;
        b.add_extension(&ProductName(name)).map_err(build)?;
        // AMD's order of the SPL extensions differs per generation.
        if turin {
            b.add_extension(&FmcSpl(int(tcb.fmc)?)).map_err(build)?;
            b.add_extension(&BlSpl(int(tcb.bootloader)?))
                .map_err(build)?;
            b.add_extension(&TeeSpl(int(tcb.tee)?)).map_err(build)?;
            b.add_extension(&SnpSpl(int(tcb.snp)?)).map_err(build)?;
            b.add_extension(&Spl5(int(0)?)).map_err(build)?;
            b.add_extension(&Spl6(int(0)?)).map_err(build)?;
            b.add_extension(&Spl7(int(0)?)).map_err(build)?;
            b.add_extension(&UcodeSpl(int(tcb.microcode)?))
                .map_err(build)?;
            b.add_extension(&HwId(chip_id[..8].to_vec()))
                .map_err(build)?;
        } else {
            b.add_extension(&BlSpl(int(tcb.bootloader)?))
                .map_err(build)?;
            b.add_extension(&TeeSpl(int(tcb.tee)?)).map_err(build)?;
            b.add_extension(&Spl4(int(0)?)).map_err(build)?;
            b.add_extension(&Spl5(int(0)?)).map_err(build)?;
            b.add_extension(&Spl6(int(0)?)).map_err(build)?;
            b.add_extension(&Spl7(int(0)?)).map_err(build)?;
            b.add_extension(&SnpSpl(int(tcb.snp)?)).map_err(build)?;
            b.add_extension(&UcodeSpl(int(tcb.microcode)?))
                .map_err(build)?;
            b.add_extension(&HwId(chip_id.to_vec())).map_err(build)?;
        }
        b.build::<Signature>().map_err(build)
    }

    /// The ARK's CRL (X.509 v2, DER) issued at `issued`, valid for a year,
    /// listing `revoked` serial numbers (revoked at `issued`).
    pub(crate) fn crl(&self, revoked: &[u32], issued: DateTime) -> X509Result<Vec<u8>> {
        let this_update = utc(issued)?;
        let next_update = utc(DateTime::from_unix_duration(
            issued.unix_duration() + Duration::from_secs(365 * 24 * 3600),
        )
        .map_err(err("time"))?)?;
        let mut list = Vec::with_capacity(revoked.len());
        for s in revoked {
            list.push(RevokedCert {
                serial_number: serial(*s)?,
                revocation_date: this_update,
                crl_entry_extensions: None,
            });
        }
        let ark_name = self.ark_name()?;
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(self.ark_ski()?.0),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        }
        .to_extension(&ark_name, &[])
        .map_err(err("CRL"))?;
        let tbs = TbsCertList {
            version: Version::V2,
            signature: pss_sha384().map_err(|e| e.to_string())?,
            issuer: ark_name,
            this_update,
            next_update: Some(next_update),
            revoked_certificates: (!list.is_empty()).then_some(list),
            crl_extensions: Some(vec![aki]),
        };
        let tbs_der = tbs.to_der().map_err(err("CRL"))?;
        let signature = self
            .ark
            .try_sign(&tbs_der)
            .map_err(|e| format!("CRL signature: {e}"))?;
        let crl = CertificateList {
            tbs_cert_list: tbs,
            signature_algorithm: pss_sha384().map_err(|e| e.to_string())?,
            signature: BitString::from_bytes(&signature.to_bytes()).map_err(err("CRL"))?,
        };
        crl.to_der().map_err(err("CRL"))
    }
}

/// 00:00:00 UTC on 1 January of `now`'s year: the issue time of the VCEKs
/// and CRLs made in that year (docs/protocol/choices.md#u66).
pub(crate) fn start_of_year(now: std::time::SystemTime) -> X509Result<DateTime> {
    let now = DateTime::from_system_time(now).map_err(err("time"))?;
    datetime(now.year(), 1, 1, 0, 0, 0)
}
