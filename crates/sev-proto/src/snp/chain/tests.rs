use std::time::{Duration, SystemTime};

use super::*;
use crate::snp::report::tests::{go_sev_guest_report, virtee_milan_report};

/// 2027-01-01: inside every fixture certificate's validity period.
fn when() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_798_761_600)
}

fn fixture(test: &str, rel: &str) -> Option<Vec<u8>> {
    sevm_testutil::fixture(test, &format!("snp/{rel}"))
}

fn pem(test: &str, rel: &str) -> Option<Certificate> {
    Some(Certificate::from_der_or_pem(&fixture(test, rel)?).unwrap())
}

/// A KDS cert_chain (ASK then ARK) and a VCEK.
fn chain(test: &str, cert_chain: &str, vcek: &str) -> Option<Chain> {
    let mut certs = Certificate::from_pem_chain(&fixture(test, cert_chain)?).unwrap();
    assert_eq!(certs.len(), 2);
    let ark = certs.pop().unwrap();
    let ask = certs.pop().unwrap();
    let vek = Certificate::from_der_or_pem(&fixture(test, vcek)?).unwrap();
    Some(Chain { ark, ask, vek })
}

fn virtee_milan(test: &str) -> Option<(Chain, AttestationReport)> {
    let chain = Chain {
        ark: pem(test, "virtee-sev/builtin/milan/ark.pem")?,
        ask: pem(test, "virtee-sev/builtin/milan/ask.pem")?,
        vek: pem(test, "virtee-sev/certs_data/vcek_milan.der")?,
    };
    let report = AttestationReport::decode(&virtee_milan_report(test)?).unwrap();
    Some((chain, report))
}

#[test]
fn virtee_milan_report_verifies_to_the_pinned_milan_ark() {
    let Some((chain, report)) =
        virtee_milan("virtee_milan_report_verifies_to_the_pinned_milan_ark")
    else {
        return;
    };
    let verified = chain
        .verify(Trust::AmdPinned, Some(Product::Milan), when())
        .unwrap();
    assert_eq!(verified.product, Product::Milan);
    assert_eq!(verified.kind, VekKind::Vcek);
    assert_eq!(verified.ark_sha256, pinned_ark_sha256(Product::Milan));
    let e = &verified.extensions;
    assert_eq!(e.struct_version, Some(0));
    assert_eq!(e.product_name.as_deref(), Some("Milan-B0"));
    assert_eq!(
        (e.bl_spl, e.tee_spl, e.snp_spl, e.ucode_spl, e.fmc_spl),
        (Some(3), Some(0), Some(8), Some(0x73), None)
    );
    assert_eq!(e.hw_id.as_deref(), Some(&report.chip_id[..]));
    verified.verify_report(&report).unwrap();
    // The product need not be given: the pinned ARK says it.
    chain.verify(Trust::AmdPinned, None, when()).unwrap();
}

#[test]
fn go_sev_guest_report_verifies_with_its_vcek_and_kds_chain() {
    let test = "go_sev_guest_report_verifies_with_its_vcek_and_kds_chain";
    let Some(chain) = chain(
        test,
        "go-sev-guest/trust/ask_ark_milan.pem",
        "go-sev-guest/testdata/vcek.testcer",
    ) else {
        return;
    };
    let Some(bytes) = go_sev_guest_report(test) else {
        return;
    };
    let report = AttestationReport::decode(&bytes).unwrap();
    let verified = chain
        .verify(Trust::AmdPinned, Some(Product::Milan), when())
        .unwrap();
    verified.verify_report(&report).unwrap();
    // An ARK trusted explicitly works the same when it is the chain's.
    let ark = chain.ark.clone();
    chain
        .verify(Trust::Explicit(&ark), None, when())
        .unwrap()
        .verify_report(&report)
        .unwrap();
}

#[test]
fn turin_vcek_and_genoa_roots_verify_and_decode() {
    let test = "turin_vcek_and_genoa_roots_verify_and_decode";
    let Some(turin) = chain(
        test,
        "virtee-sev/certs_data/cert_chain_turin",
        "virtee-sev/certs_data/vcek_turin.der",
    ) else {
        return;
    };
    let verified = turin
        .verify(Trust::AmdPinned, Some(Product::Turin), when())
        .unwrap();
    let e = &verified.extensions;
    assert_eq!(e.struct_version, Some(1));
    assert_eq!(e.product_name.as_deref(), Some("Turin"));
    assert_eq!(
        (e.fmc_spl, e.bl_spl, e.tee_spl, e.snp_spl, e.ucode_spl),
        (Some(0), Some(0), Some(0), Some(0), Some(9))
    );
    assert_eq!(
        e.hw_id.as_deref(),
        Some(&[0x1e, 0x55, 0x0a, 0x8e, 0xe5, 0xcf, 0x9f, 0x4d][..])
    );
    let Some(ark) = pem(test, "virtee-sev/builtin/genoa/ark.pem") else {
        return;
    };
    let Some(ask) = pem(test, "virtee-sev/builtin/genoa/ask.pem") else {
        return;
    };
    assert_eq!(pinned_product(&ark), Some(Product::Genoa));
    ark.verify_signed_by(&ark).unwrap();
    ask.verify_signed_by(&ark).unwrap();
    // A Genoa ASK does not issue a Milan or Turin VCEK.
    let e = Chain {
        ark,
        ask,
        vek: turin.vek,
    }
    .verify(Trust::AmdPinned, None, when())
    .unwrap_err();
    assert!(matches!(e, ChainError::Issuer { which: "VCEK", .. }), "{e}");
}

#[test]
fn a_flipped_bit_in_the_report_is_refused() {
    let Some((chain, report)) = virtee_milan("a_flipped_bit_in_the_report_is_refused") else {
        return;
    };
    let verified = chain.verify(Trust::AmdPinned, None, when()).unwrap();
    let mut bytes = report.encode();
    bytes[0x090] ^= 1; // MEASUREMENT
    let tampered = AttestationReport::decode(&bytes).unwrap();
    let e = verified.verify_report(&tampered).unwrap_err();
    assert_eq!(
        e,
        BindingError::Signature(ReportError::BadSignature("VCEK"))
    );
    assert!(
        crate_error_chain(&e).contains("does not verify with the VCEK"),
        "{e}"
    );
}

#[test]
fn the_wrong_ark_is_refused() {
    let test = "the_wrong_ark_is_refused";
    let Some((chain, _)) = virtee_milan(test) else {
        return;
    };
    let Some(genoa_ark) = pem(test, "virtee-sev/builtin/genoa/ark.pem") else {
        return;
    };
    // The genuine Milan ARK, but Genoa asked for.
    let e = chain
        .verify(Trust::AmdPinned, Some(Product::Genoa), when())
        .unwrap_err();
    assert_eq!(
        e,
        ChainError::ArkProduct {
            found: Product::Milan,
            expected: Product::Genoa
        }
    );
    // Another product's ARK in a Milan chain.
    let swapped = Chain {
        ark: genoa_ark.clone(),
        ..chain.clone()
    };
    let e = swapped
        .verify(Trust::AmdPinned, Some(Product::Milan), when())
        .unwrap_err();
    assert!(matches!(e, ChainError::ArkProduct { .. }), "{e}");
    // A root that is not pinned: the chain's ARK trusted explicitly but the
    // chain carries another one.
    let e = swapped
        .verify(Trust::Explicit(&chain.ark), None, when())
        .unwrap_err();
    assert!(matches!(e, ChainError::ArkNotTrusted { .. }), "{e}");
    assert!(e.to_string().starts_with("ARK"), "{e}");
    // A self-signed ARK that is not AMD's: the ASK in the ARK's place.
    let fake = Chain {
        ark: chain.ask.clone(),
        ..chain
    };
    let e = fake.verify(Trust::AmdPinned, None, when()).unwrap_err();
    assert!(matches!(e, ChainError::ArkNotPinned { .. }), "{e}");
}

#[test]
fn a_vcek_of_another_chip_or_tcb_is_refused() {
    let test = "a_vcek_of_another_chip_or_tcb_is_refused";
    let Some((chain, report)) = virtee_milan(test) else {
        return;
    };
    let Some(other) = pem(test, "go-sev-guest/testdata/vcek.testcer") else {
        return;
    };
    let verified = Chain {
        vek: other,
        ..chain.clone()
    }
    .verify(Trust::AmdPinned, None, when())
    .unwrap();
    let e = verified.verify_report(&report).unwrap_err();
    assert!(matches!(e, BindingError::ChipId { .. }), "{e}");
    assert!(e.to_string().contains("another chip"), "{e}");

    // The right chip, another TCB: checked before the signature.
    let verified = chain.verify(Trust::AmdPinned, None, when()).unwrap();
    let mut other_tcb = report.clone();
    other_tcb.reported_tcb = u64::from_le_bytes([3, 0, 0, 0, 0, 0, 9, 0x73]);
    let e = verified.verify_report(&other_tcb).unwrap_err();
    assert_eq!(
        e,
        BindingError::Spl {
            component: "SNP",
            extension: "snpSPL",
            which: "VCEK",
            report: 9,
            vek: "8".into()
        }
    );
    // A report that says a VLEK signed it.
    let mut vlek = report;
    vlek.signing_key = ReportSigner::Vlek;
    assert!(matches!(
        verified.verify_report(&vlek),
        Err(BindingError::Signer { .. })
    ));
}

#[test]
fn an_ask_not_signed_by_the_ark_is_refused() {
    let Some((chain, _)) = virtee_milan("an_ask_not_signed_by_the_ark_is_refused") else {
        return;
    };
    let mut der = chain.ask.der().to_vec();
    let last = der.len() - 1;
    der[last] ^= 1; // the last byte of the signature
    let ask = Certificate::from_der(&der).unwrap();
    let e = Chain {
        ask,
        ..chain.clone()
    }
    .verify(Trust::AmdPinned, None, when())
    .unwrap_err();
    assert!(
        matches!(
            &e,
            ChainError::Cert {
                which: "ASK",
                source: CertError::BadSignature { .. }
            }
        ),
        "{e}"
    );
    assert_eq!(
        crate_error_chain(&e),
        "ASK: SEV-Milan: signature does not verify with the public key of ARK-Milan"
    );
    // A VCEK not signed by the ASK: the ARK in the ASK's place.
    let e = Chain {
        ask: chain.ark.clone(),
        ..chain
    }
    .verify(Trust::AmdPinned, None, when())
    .unwrap_err();
    assert!(matches!(e, ChainError::Name { which: "ASK", .. }), "{e}");
}

#[test]
fn expired_certificates_and_vlek_chains_are_told_apart() {
    let test = "expired_certificates_and_vlek_chains_are_told_apart";
    let Some((chain, _)) = virtee_milan(test) else {
        return;
    };
    // The VCEK expires in 2030, the ARK in 2045.
    let later = SystemTime::UNIX_EPOCH + Duration::from_secs(1_956_528_000); // 2032
    let e = chain.verify(Trust::AmdPinned, None, later).unwrap_err();
    assert!(
        matches!(e, ChainError::Validity { which: "VCEK", .. }),
        "{e}"
    );
    // An ASVK chain wants a VLEK, not a VCEK.
    let Some(mut asvk_ark) = fixture(test, "go-sev-guest/trust/ask_ark_milan_vlek.pem")
        .map(|p| Certificate::from_pem_chain(&p).unwrap())
    else {
        return;
    };
    let vlek_chain = Chain {
        ark: asvk_ark.pop().unwrap(),
        ask: asvk_ark.pop().unwrap(),
        vek: chain.vek,
    };
    let e = vlek_chain
        .verify(Trust::AmdPinned, None, when())
        .unwrap_err();
    assert_eq!(
        e,
        ChainError::Name {
            which: "VLEK",
            found: "SEV-VCEK".into(),
            expected: "SEV-VLEK".into()
        }
    );
}

#[test]
fn bad_certificate_bytes_are_refused() {
    assert!(matches!(
        Certificate::from_der(b"junk"),
        Err(CertError::Der(_))
    ));
    assert!(matches!(
        Certificate::from_der_or_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n"),
        Err(CertError::Pem(_))
    ));
    assert_eq!(
        Certificate::from_pem_chain(b"no pem here"),
        Err(CertError::Empty)
    );
    assert!(matches!(
        Certificate::from_der(&vec![0x30; MAX_LEN_PLUS_ONE]),
        Err(CertError::TooLarge(_))
    ));
}

const MAX_LEN_PLUS_ONE: usize = crate::snp::cert::MAX_CERT_LEN + 1;

fn crate_error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}
