//! The emulated issuer: the chain verifies to the emulated ARK (explicitly
//! trusted), the certificates have AMD's shape, the answers are
//! deterministic, other chips and VLEK paths are not found, the CRL lists
//! the ASK once revoked.

use std::time::SystemTime;

use rsa::signature::Verifier;
use sev_proto::cert::ca;
use sev_proto::snp::cert::Certificate;
use sev_proto::snp::chain::{Chain, Trust, VekKind};
use sev_proto::snp::kds::KdsRequest;
use sev_proto::snp::{Product, TcbVersion};
use x509_cert::crl::CertificateList;
use x509_cert::der::{Decode, Encode};

use super::{ContentType, KdsError};
use crate::platform::tests::{fresh, Fresh};
use crate::rng::seeded_rng;
use crate::snp::SnpOptions;
use crate::{CreateOptions, Platform};

fn chain_of(p: &Platform, product: Product) -> (Certificate, Certificate) {
    let obj = p
        .kds_object(&KdsRequest::CertChain {
            product,
            kind: VekKind::Vcek,
        })
        .unwrap();
    assert_eq!(obj.content_type, ContentType::PemFile);
    let certs = Certificate::from_pem_chain(&obj.bytes).unwrap();
    assert_eq!(certs.len(), 2);
    (certs[0].clone(), certs[1].clone())
}

fn vcek_of(p: &Platform, tcb: Option<TcbVersion>) -> (KdsRequest, Certificate) {
    let req = p.kds_vcek_request(tcb).unwrap();
    let obj = p.kds_object(&req).unwrap();
    assert_eq!(obj.content_type, ContentType::PkixCert);
    (req, Certificate::from_der(&obj.bytes).unwrap())
}

fn chip_id(p: &Platform) -> [u8; 64] {
    let mut id = [0u8; 64];
    p.get_id(&mut id).unwrap();
    id
}

#[test]
fn the_chain_verifies_to_the_explicitly_trusted_emulated_ark() {
    let f = fresh(31);
    let (ask, ark) = chain_of(&f.p, Product::Genoa);
    assert_eq!(ark.subject_cn(), "ARK-Genoa");
    assert_eq!(ask.subject_cn(), "SEV-Genoa");
    let (req, vcek) = vcek_of(&f.p, None);
    let KdsRequest::Vcek { tcb, .. } = req else {
        panic!("not a VCEK request: {req:?}");
    };
    let chain = Chain {
        ark: ark.clone(),
        ask,
        vek: vcek,
    };
    let verified = chain
        .verify(
            Trust::Explicit(&ark),
            Some(Product::Genoa),
            SystemTime::now(),
        )
        .unwrap();
    assert_eq!(verified.product, Product::Genoa);
    assert_eq!(verified.key, f.p.snp_vcek_public(None).unwrap());
    let ext = verified.extensions;
    assert_eq!(ext.product_name.as_deref(), Some("Genoa-B1"));
    assert_eq!(
        (ext.bl_spl, ext.tee_spl, ext.snp_spl, ext.ucode_spl),
        (
            Some(tcb.bootloader),
            Some(tcb.tee),
            Some(tcb.snp),
            Some(tcb.microcode)
        )
    );
    assert_eq!(ext.hw_id.as_deref(), Some(&chip_id(&f.p)[..]));
    // Not AMD's: the pinned roots refuse it.
    assert!(chain
        .verify(Trust::AmdPinned, None, SystemTime::now())
        .is_err());
}

#[test]
fn the_x509_roots_use_the_keys_of_the_amd_format_roots() {
    let f = fresh(32);
    let (ask, ark) = chain_of(&f.p, Product::Genoa);
    let (ca_ask, ca_ark) = f.p.amd_chain();
    let ca_ark = ca::Certificate::decode(&ca_ark).unwrap();
    let ca_ask = ca::Certificate::decode(&ca_ask).unwrap();
    assert_eq!(&ark.rsa_public_key().unwrap(), ca_ark.public_key());
    assert_eq!(&ask.rsa_public_key().unwrap(), ca_ask.public_key());
}

#[test]
fn answers_are_deterministic_and_vceks_differ_per_tcb() {
    let f = fresh(33);
    let req = f.p.kds_vcek_request(None).unwrap();
    let chain = KdsRequest::CertChain {
        product: Product::Genoa,
        kind: VekKind::Vcek,
    };
    let crl = KdsRequest::Crl {
        product: Product::Genoa,
        kind: VekKind::Vcek,
    };
    for r in [&req, &chain, &crl] {
        assert_eq!(f.p.kds_object(r).unwrap(), f.p.kds_object(r).unwrap());
    }
    // Another process on the same directory gives the same bytes.
    let other = Platform::open(&f.path, seeded_rng(99)).unwrap();
    assert_eq!(
        other.kds_object(&req).unwrap(),
        f.p.kds_object(&req).unwrap()
    );

    let KdsRequest::Vcek { tcb, .. } = req else {
        panic!("not a VCEK request");
    };
    let older = TcbVersion {
        snp: tcb.snp.saturating_sub(1),
        ..tcb
    };
    let (_, old) = vcek_of(&f.p, Some(older));
    let (_, cur) = vcek_of(&f.p, Some(tcb));
    assert_ne!(old.der(), cur.der());
    assert_eq!(old.amd_extensions().unwrap().snp_spl, Some(older.snp));
    assert_eq!(
        old.p384_public_key().unwrap(),
        f.p.snp_vcek_public(Some(older)).unwrap()
    );
}

fn not_found(f: &Fresh, req: &KdsRequest) -> String {
    match f.p.kds_object(req) {
        Err(KdsError::NotFound(why)) => why,
        other => panic!("{req}: expected not found, got {other:?}"),
    }
}

#[test]
fn other_chips_products_and_vlek_paths_are_not_found() {
    let f = fresh(34);
    let KdsRequest::Vcek {
        tcb, mut chip_id, ..
    } = f.p.kds_vcek_request(None).unwrap()
    else {
        panic!("not a VCEK request");
    };
    chip_id[63] ^= 1;
    assert!(not_found(
        &f,
        &KdsRequest::Vcek {
            product: Product::Genoa,
            chip_id,
            tcb,
        }
    )
    .contains("hwID"));
    assert!(not_found(
        &f,
        &KdsRequest::Vcek {
            product: Product::Milan,
            chip_id,
            tcb,
        }
    )
    .contains("not a Milan"));
    for req in [
        KdsRequest::CertChain {
            product: Product::Genoa,
            kind: VekKind::Vlek,
        },
        KdsRequest::Crl {
            product: Product::Genoa,
            kind: VekKind::Vlek,
        },
    ] {
        assert!(not_found(&f, &req).contains("no VLEK"));
    }
    // An FMC SPL does not exist on Genoa.
    let mut req = f.p.kds_vcek_request(None).unwrap();
    if let KdsRequest::Vcek { tcb, .. } = &mut req {
        tcb.fmc = 1;
    }
    assert!(not_found(&f, &req).contains("TCB"));
    assert!(not_found(&f, &KdsRequest::Cek { chip_id }).contains("chip id"));
}

#[test]
fn the_cek_is_the_identitys_ask_signed_cek() {
    let f = fresh(35);
    let obj =
        f.p.kds_object(&KdsRequest::Cek {
            chip_id: chip_id(&f.p),
        })
        .unwrap();
    assert_eq!(obj.content_type, ContentType::OctetStream);
    let cek = sev_proto::cert::sev::Certificate::decode(&obj.bytes).unwrap();
    assert_eq!(cek.usage(), sev_proto::cert::Usage::Cek);
    let (ca_ask, _) = f.p.amd_chain();
    let ask = ca::Certificate::decode(&ca_ask).unwrap();
    cek.verify_signed_by_ca(&ask).unwrap();
}

fn crl_serials(f: &Fresh, ark: &Certificate) -> Vec<Vec<u8>> {
    let obj =
        f.p.kds_object(&KdsRequest::Crl {
            product: Product::Genoa,
            kind: VekKind::Vcek,
        })
        .unwrap();
    assert_eq!(obj.content_type, ContentType::PkixCrl);
    let crl = CertificateList::from_der(&obj.bytes).unwrap();
    let key = rsa::pss::VerifyingKey::<sha2::Sha384>::new(ark.rsa_public_key().unwrap());
    let signature = rsa::pss::Signature::try_from(crl.signature.raw_bytes()).expect("a signature");
    key.verify(&crl.tbs_cert_list.to_der().unwrap(), &signature)
        .expect("the CRL is signed by the ARK");
    assert_eq!(
        crl.tbs_cert_list.issuer.to_der().unwrap(),
        x509_cert::Certificate::from_der(ark.der())
            .unwrap()
            .tbs_certificate
            .subject
            .to_der()
            .unwrap()
    );
    crl.tbs_cert_list
        .revoked_certificates
        .unwrap_or_default()
        .iter()
        .map(|r| r.serial_number.as_bytes().to_vec())
        .collect()
}

#[test]
fn the_crl_is_signed_by_the_ark_and_lists_the_ask_once_revoked() {
    let f = fresh(36);
    let (ask, ark) = chain_of(&f.p, Product::Genoa);
    let ask_serial = x509_cert::Certificate::from_der(ask.der())
        .unwrap()
        .tbs_certificate
        .serial_number
        .as_bytes()
        .to_vec();
    assert!(crl_serials(&f, &ark).is_empty());
    f.p.kds_revoke_ask(true).unwrap();
    f.p.kds_revoke_ask(true).unwrap();
    assert_eq!(crl_serials(&f, &ark), vec![ask_serial]);
    assert_eq!(f.p.kds_revoked().unwrap().len(), 1);
    f.p.kds_revoke_ask(false).unwrap();
    assert!(crl_serials(&f, &ark).is_empty());
}

fn extension_oids(der: &[u8]) -> Vec<String> {
    x509_cert::Certificate::from_der(der)
        .unwrap()
        .tbs_certificate
        .extensions
        .unwrap_or_default()
        .iter()
        .map(|e| e.extn_id.to_string())
        .collect()
}

fn name_der(der: &[u8], subject: bool) -> Vec<u8> {
    let tbs = x509_cert::Certificate::from_der(der)
        .unwrap()
        .tbs_certificate;
    let name = if subject { tbs.subject } else { tbs.issuer };
    name.to_der().unwrap()
}

fn platform_of(product: Product) -> (tempfile::TempDir, Platform) {
    let tmp = tempfile::tempdir().unwrap();
    let options = CreateOptions {
        ark_bits: 2048,
        snp: SnpOptions {
            product,
            ..SnpOptions::default()
        },
        ..CreateOptions::default()
    };
    let p = Platform::create(tmp.path().join("p"), options, seeded_rng(7)).unwrap();
    (tmp, p)
}

/// The emulated certificates have the shape of AMD's: same extension OIDs
/// in the same order, same names (byte for byte), hwID of the product's
/// length.
#[test]
fn certificates_have_the_shape_of_amds() {
    const TEST: &str = "certificates_have_the_shape_of_amds";
    for (product, vcek_fixture, chain_fixture) in [
        (
            Product::Milan,
            "snp/virtee-sev/certs_data/vcek_milan.der",
            "snp/virtee-sev/certs_data/cert_chain_milan",
        ),
        (
            Product::Turin,
            "snp/virtee-sev/certs_data/vcek_turin.der",
            "snp/virtee-sev/certs_data/cert_chain_turin",
        ),
    ] {
        let (Some(real_vcek), Some(real_chain)) = (
            sevm_testutil::fixture(TEST, vcek_fixture),
            sevm_testutil::fixture(TEST, chain_fixture),
        ) else {
            return;
        };
        let real_chain = Certificate::from_pem_chain(&real_chain).unwrap();
        let (_tmp, p) = platform_of(product);
        let (ask, ark) = chain_of(&p, product);
        let (_, vcek) = vcek_of(&p, None);
        for (ours, theirs) in [
            (vcek.der(), real_vcek.as_slice()),
            (ask.der(), real_chain[0].der()),
            (ark.der(), real_chain[1].der()),
        ] {
            assert_eq!(extension_oids(ours), extension_oids(theirs), "{product}");
            assert_eq!(name_der(ours, true), name_der(theirs, true), "{product}");
            assert_eq!(name_der(ours, false), name_der(theirs, false), "{product}");
            let ours = x509_cert::Certificate::from_der(ours).unwrap();
            let theirs = x509_cert::Certificate::from_der(theirs).unwrap();
            assert_eq!(
                ours.tbs_certificate.serial_number,
                theirs.tbs_certificate.serial_number
            );
        }
        let ours = vcek.amd_extensions().unwrap();
        let theirs = Certificate::from_der(&real_vcek)
            .unwrap()
            .amd_extensions()
            .unwrap();
        assert_eq!(ours.struct_version, theirs.struct_version, "{product}");
        assert_eq!(
            ours.hw_id.as_ref().map(|h| h.len()),
            theirs.hw_id.as_ref().map(|h| h.len()),
            "{product}"
        );
        assert_eq!(ours.product(), Some(product));
        // AMD's ARK and ASK of the product carry the same extensions in
        // the same order: the whole extension of the CRL DP is equal.
        let dp = |c: &Certificate| {
            x509_cert::Certificate::from_der(c.der())
                .unwrap()
                .tbs_certificate
                .extensions
                .unwrap()
                .last()
                .unwrap()
                .to_der()
                .unwrap()
        };
        assert_eq!(dp(&ark), dp(&real_chain[1]));
    }
}
