use p384::ecdsa::{SigningKey, VerifyingKey};

use super::*;

/// virtee/sev's `report_milan.hex` (hex text, any whitespace) as bytes.
pub(crate) fn virtee_milan_report(test: &str) -> Option<Vec<u8>> {
    let text = sevm_testutil::fixture(test, "snp/virtee-sev/certs_data/report_milan.hex")?;
    let hex_text: String = String::from_utf8(text)
        .unwrap()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    Some(hex::decode(hex_text).unwrap())
}

pub(crate) fn go_sev_guest_report(test: &str) -> Option<Vec<u8>> {
    sevm_testutil::fixture(test, "snp/go-sev-guest/testdata/attestation.bin")
}

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn test_key() -> SigningKey {
    SigningKey::from_slice(&[0x42; 48]).unwrap()
}

/// [`AttestationReport::sample`] of `version`, signed by [`test_key`].
fn synthetic(version: u32) -> AttestationReport {
    let mut r = AttestationReport::sample(version);
    r.sign(&test_key()).unwrap();
    r
}

#[test]
fn virtee_milan_report_decodes_field_by_field_and_re_encodes() {
    let Some(bytes) =
        virtee_milan_report("virtee_milan_report_decodes_field_by_field_and_re_encodes")
    else {
        return;
    };
    let r = AttestationReport::decode(&bytes).unwrap();
    assert_eq!(r.version, 2);
    assert_eq!(r.guest_svn, 0);
    assert_eq!(r.policy.bits(), 0x3_0000);
    assert_eq!(r.vmpl, 0);
    assert_eq!(r.signature_algo, 1);
    assert_eq!(r.signing_key, ReportSigner::Vcek);
    assert!(!r.author_key_en && !r.mask_chip_key);
    assert_eq!(r.platform_info, 1);
    let tcb = u64::from_le_bytes([3, 0, 0, 0, 0, 0, 8, 0x73]);
    assert_eq!(
        [r.current_tcb, r.reported_tcb, r.committed_tcb, r.launch_tcb],
        [tcb; 4]
    );
    assert_eq!(
        r.reported_tcb(Product::Milan).unwrap(),
        TcbVersion {
            fmc: 0,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 0x73
        }
    );
    assert_eq!(&r.report_data[..4], &[0xd4, 0x47, 0xb5, 0x5d]);
    assert_eq!(&r.report_data[60..], &[0x6a, 0x93, 0xeb, 0xfd]);
    assert_eq!(
        r.measurement,
        unhex::<48>("7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f")
    );
    assert_eq!(r.host_data, [0; 32]);
    assert_eq!(r.id_key_digest, [0; 48]);
    assert_eq!(r.author_key_digest, [0; 48]);
    assert_eq!(
        r.report_id,
        unhex::<32>("92b3b47d59f0a2a10a74c5678868a80238cf593c01a82f3cffb878e904c28d5b")
    );
    assert_eq!(r.report_id_ma, [0xFF; 32]);
    assert_eq!(&r.chip_id[..4], &[0xd4, 0x95, 0x54, 0xec]);
    assert_eq!(&r.chip_id[60..], &[0x4d, 0x54, 0x1e, 0xb6]);
    let fw = FirmwareVersion {
        major: 1,
        minor: 52,
        build: 4,
    };
    assert_eq!((r.current_version, r.committed_version), (fw, fw));
    assert_eq!(
        (r.cpuid, r.mitigation_vectors, r.product()),
        (None, None, None)
    );
    // R and S as the reference prints them, big-endian.
    let r_be: Vec<u8> = r.signature.r.iter().rev().copied().collect();
    let s_be: Vec<u8> = r.signature.s.iter().rev().copied().collect();
    assert_eq!(&r_be[..4], &[0x72, 0x82, 0x7f, 0xd0]);
    assert_eq!(&r_be[44..], &[0x11, 0x4f, 0xab, 0x61]);
    assert_eq!(&s_be[..4], &[0x49, 0xbf, 0x90, 0x3b]);
    assert_eq!(&s_be[44..], &[0xb9, 0x7e, 0x9d, 0x20]);
    assert!(r.signature.to_p384().is_ok());
    assert_eq!(r.encode().to_vec(), bytes);
    assert_eq!(&r.signed_bytes()[..], &bytes[..SIGNED_LEN]);
}

#[test]
fn go_sev_guest_report_decodes_and_re_encodes() {
    let Some(bytes) = go_sev_guest_report("go_sev_guest_report_decodes_and_re_encodes") else {
        return;
    };
    let r = AttestationReport::decode(&bytes).unwrap();
    assert_eq!(r.version, 2);
    assert_eq!(r.policy.bits(), 0xB_0000);
    let tcb = u64::from_le_bytes([2, 0, 0, 0, 0, 0, 5, 0x44]);
    assert_eq!(r.reported_tcb, tcb);
    assert_eq!(
        r.current_version,
        FirmwareVersion {
            major: 1,
            minor: 49,
            build: 3
        }
    );
    assert_eq!(&r.report_data[..6], &[1, 2, 3, 4, 5, 0]);
    assert_eq!(r.report_data[5..], [0; 59]);
    assert_eq!(
        r.measurement,
        unhex::<48>("b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01")
    );
    assert_eq!(&r.report_id[..4], &[0x8e, 0xdc, 0x63, 0x8e]);
    assert_eq!(&r.chip_id[..4], &[0x3a, 0xc3, 0xfe, 0x21]);
    assert_eq!(&r.chip_id[60..], &[0x8b, 0x00, 0x6b, 0x5d]);
    assert_eq!(r.encode().to_vec(), bytes);
}

#[test]
fn every_version_round_trips_and_verifies() {
    let key = VerifyingKey::from(&test_key());
    for version in KNOWN_VERSIONS {
        let r = synthetic(version);
        let bytes = r.encode();
        let back = AttestationReport::decode(&bytes).unwrap();
        assert_eq!(back, r, "version {version}");
        back.verify_signature(&key).unwrap();
        assert_eq!(back.cpuid.is_some(), version >= 3);
        assert_eq!(back.mitigation_vectors.is_some(), version >= 5);
    }
    assert_eq!(synthetic(3).product(), Some(Product::Genoa));
}

#[test]
fn every_signed_bit_is_covered_by_the_signature() {
    let key = VerifyingKey::from(&test_key());
    let bytes = synthetic(5).encode();
    for i in 0..SIGNED_LEN {
        let mut t = bytes;
        t[i] ^= 1;
        // Decoding may already refuse the change (a reserved byte, the
        // policy, the key info); if it does not, the signature must.
        if let Ok(r) = AttestationReport::decode(&t) {
            assert!(r.verify_signature(&key).is_err(), "byte 0x{i:03x}");
        }
    }
}

#[test]
fn a_report_verifies_only_with_its_key() {
    let r = synthetic(2);
    let other = VerifyingKey::from(&SigningKey::from_slice(&[0x43; 48]).unwrap());
    assert_eq!(
        r.verify_signature(&other),
        Err(ReportError::BadSignature("VCEK"))
    );
    let mut unsigned = r.clone();
    unsigned.signing_key = ReportSigner::None;
    assert_eq!(
        unsigned.verify_signature(&VerifyingKey::from(&test_key())),
        Err(ReportError::Unsigned)
    );
    let mut algo = r;
    algo.signature_algo = 2;
    assert_eq!(
        algo.verify_signature(&VerifyingKey::from(&test_key())),
        Err(ReportError::SignatureAlgorithm(2))
    );
}

#[test]
fn reserved_ranges_are_checked_per_version() {
    // (offset, refused in versions 2, 3, 5)
    let cases = [
        (0x04C, [true, true, true]),
        (0x188, [true, false, false]),
        (0x18A, [true, false, false]),
        (0x18B, [true, true, true]),
        (0x19F, [true, true, true]),
        (0x1EB, [true, true, true]),
        (0x1EF, [true, true, true]),
        (0x1F8, [true, true, false]),
        (0x207, [true, true, false]),
        (0x208, [true, true, true]),
        (0x29F, [true, true, true]),
        (0x2D0, [true, true, true]),
        (0x318, [true, true, true]),
        (0x330, [true, true, true]),
        (0x49F, [true, true, true]),
    ];
    for (offset, refused) in cases {
        for (version, refused) in KNOWN_VERSIONS.into_iter().zip(refused) {
            let mut bytes = synthetic(version).encode();
            bytes[offset] ^= 0x80;
            let result = AttestationReport::decode(&bytes);
            match result {
                Err(ReportError::Reserved { offset: o, .. }) => {
                    assert!(refused, "v{version} 0x{offset:03x} refused");
                    assert_eq!(o, offset);
                }
                Ok(_) => assert!(!refused, "v{version} 0x{offset:03x} accepted"),
                Err(e) => panic!("v{version} 0x{offset:03x}: {e}"),
            }
        }
    }
}

#[test]
fn bad_inputs_are_refused_with_a_reason() {
    let good = synthetic(2).encode();
    assert_eq!(
        AttestationReport::decode(&good[..100]),
        Err(ReportError::Length(100))
    );
    for version in [0, 1, 4, 6, u32::MAX] {
        let mut b = good;
        b[..4].copy_from_slice(&version.to_le_bytes());
        assert_eq!(
            AttestationReport::decode(&b),
            Err(ReportError::Version(version))
        );
    }
    let mut b = good;
    b[0x00A] &= !2; // policy bit 17
    assert!(matches!(
        AttestationReport::decode(&b),
        Err(ReportError::Policy(GuestPolicyError::MustBeOneClear(_)))
    ));
    for code in 2..7u8 {
        let mut b = good;
        b[0x048] = code << 2;
        assert_eq!(
            AttestationReport::decode(&b),
            Err(ReportError::SigningKey(u32::from(code)))
        );
    }
    let mut b = good;
    b[0x049] = 1;
    let e = AttestationReport::decode(&b).unwrap_err();
    assert!(
        matches!(
            e,
            ReportError::Reserved {
                offset: 0x049,
                value: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("bits 31:5 of 0x048"), "{e}");
}
