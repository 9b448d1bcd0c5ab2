use super::*;
use crate::hash::{sha256, sha384};
use crate::ovmf::FooterTable;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const EPYC_V4: CpuSignature = CpuSignature::from_raw(0x0080_0F12);
const FIXTURE_AP: ResetVector = ResetVector { addr: 0x0080_B004 };

fn qemu(features: u64) -> VmsaConfig {
    VmsaConfig::new(VmmType::Qemu, EPYC_V4, SevFeatures::from_bits(features))
}

fn u64_at(page: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(page[at..at + 8].try_into().unwrap())
}

/// docs/protocol/test-vectors.md#launch-digests: the SHA-256 of the QEMU
/// pages with no SEV features (the 'seves' intermediates).
#[test]
fn qemu_pages_sha256_known_answers() {
    let c = qemu(0);
    assert_eq!(
        hex(&sha256(&c.page(VcpuRole::Bsp))),
        "8295cef559b57130391d59605890ef93297720b48bef9a8c3c985b9c3fb0788c"
    );
    assert_eq!(
        hex(&sha256(&c.page(VcpuRole::Ap(FIXTURE_AP)))),
        "7ff723da33f39dedbe8336bb697e0a2f76471690074d5902e1a8177cd5312c95"
    );
}

/// docs/protocol/test-vectors.md#snp-launch-digests: the SHA-384 of the
/// QEMU pages with the SNP guest features 0x1 and 0x21.
#[test]
fn qemu_pages_sha384_known_answers() {
    let want = [
        (0x1, VcpuRole::Bsp, "77920c4c629ff47e90c0e174fc1ad0eb6fa664f88cd4739488058a8c6cb1a77b3856f55378e9518d0da99452d51c553a"),
        (0x1, VcpuRole::Ap(FIXTURE_AP), "8413b852790765a310d95867a8b00bfca3a802b5a80830044b45e253fe96222657e11e53fcf63eb0e0afd722385bf7b4"),
        (0x21, VcpuRole::Bsp, "ae79efa6efbe1594a2717dfd42af495a0e4ed37b00e529a5fdf349bea04c3513962ffb0c74cf65b0d9a1857271833d6e"),
        (0x21, VcpuRole::Ap(FIXTURE_AP), "180ef2675dc01615d31b3e84ef27a0a69d08bfbbb58ea4f6a0188f08884ab6407591ada42f99749ce9a406fb4e5d8355"),
    ];
    for (features, role, digest) in want {
        assert_eq!(
            hex(&sha384(&qemu(features).page(role))),
            digest,
            "{features:#x} {role:?}"
        );
    }
}

/// sevctl's vmsa0.bin and vmsa1.bin: Milan signature, legacy ES init.
#[test]
fn sevctl_fixtures_are_legacy_es_init_pages() {
    let (Some(vmsa0), Some(vmsa1)) = (
        sevm_testutil::fixture(
            "vmsa::tests::sevctl_fixtures_are_legacy_es_init_pages",
            "vmsa/vmsa0.bin",
        ),
        sevm_testutil::fixture(
            "vmsa::tests::sevctl_fixtures_are_legacy_es_init_pages",
            "vmsa/vmsa1.bin",
        ),
    ) else {
        return;
    };
    let milan = VcpuModel::by_name("EPYC-Milan").unwrap().signature();
    let c = VmsaConfig::new(VmmType::Qemu, milan, SevFeatures::NONE)
        .with_kvm_init(KvmInit::LegacyEsInit);
    assert_eq!(c.page(VcpuRole::Bsp).as_slice(), vmsa0.as_slice());
    assert_eq!(
        c.page(VcpuRole::Ap(FIXTURE_AP)).as_slice(),
        vmsa1.as_slice()
    );
    // With KVM_SEV_INIT2 only the FPU fields differ.
    let init2 = VmsaConfig::new(VmmType::Qemu, milan, SevFeatures::NONE).page(VcpuRole::Bsp);
    let differ: Vec<usize> = (0..VMSA_LEN).filter(|&i| init2[i] != vmsa0[i]).collect();
    assert_eq!(differ, [0x408, 0x409, 0x410, 0x411]);
}

/// The AP reset address comes from the firmware's footer table.
#[test]
fn ap_reset_vector_of_the_ovmf_fixture() {
    let Some(image) = sevm_testutil::fixture(
        "vmsa::tests::ap_reset_vector_of_the_ovmf_fixture",
        "ovmf/ovmf_AmdSev_suffix.bin",
    ) else {
        return;
    };
    let v = FooterTable::parse(&image)
        .unwrap()
        .sev_es_reset_vector()
        .unwrap()
        .unwrap();
    assert_eq!(v, FIXTURE_AP);
    let ap = qemu(1).state(VcpuRole::Ap(v));
    assert_eq!(ap.cs.base, 0x0080_0000);
    assert_eq!(ap.rip, 0xB004);
}

#[test]
fn every_set_field_is_at_its_offset() {
    let page = qemu(0x21).page(VcpuRole::Bsp);
    assert_eq!(
        hex(&page[offset::CS..offset::CS + 16]),
        "00f09b00ffff00000000ffff00000000"
    );
    assert_eq!(u64_at(&page, offset::RIP), 0xFFF0);
    assert_eq!(u64_at(&page, offset::RDX), 0x0080_0F12);
    assert_eq!(u64_at(&page, offset::SEV_FEATURES), 0x21);
    assert_eq!(u64_at(&page, offset::G_PAT), 0x0007_0406_0007_0406);
    assert_eq!(page[offset::VMPL], 0);
    assert_eq!(page[offset::CPL], 0);
    assert_eq!(u64_at(&page, offset::RSP), 0);
    assert_eq!(u64_at(&page, offset::RAX), 0);
    // Nothing past the x87 control word.
    assert!(page[offset::X87_FCW + 2..].iter().all(|&b| b == 0));
}

#[test]
fn vmm_types_differ_as_sev_snp_measure_models_them() {
    for vmm in [VmmType::Ec2, VmmType::Gce] {
        let c = VmsaConfig::new(vmm, EPYC_V4, SevFeatures::SNP_ACTIVE);
        let bsp = c.state(VcpuRole::Bsp);
        let ap = c.state(VcpuRole::Ap(FIXTURE_AP));
        assert_eq!((bsp.rdx, bsp.mxcsr, bsp.x87_fcw), (0x600, 0, 0), "{vmm}");
        assert_eq!(ap.cs.attrib, 0x9B);
        if vmm == VmmType::Ec2 {
            assert_eq!(bsp.cs.attrib, 0x9A);
            assert_eq!((bsp.ss.attrib, bsp.tr.attrib), (0x92, 0x83));
            assert_eq!(bsp.g_pat, 0x0007_0406_0007_0406);
        } else {
            assert_eq!(bsp.cs.attrib, 0x9B);
            assert_eq!((bsp.ss.attrib, bsp.tr.attrib), (0x93, 0x8B));
            assert_eq!(bsp.g_pat, 0x0007_0106);
        }
    }
    // The signature matters only to QEMU.
    let other = CpuSignature::from_raw(0x00A0_0F11);
    for vmm in [VmmType::Ec2, VmmType::Gce] {
        assert_eq!(
            VmsaConfig::new(vmm, EPYC_V4, SevFeatures::NONE).page(VcpuRole::Bsp),
            VmsaConfig::new(vmm, other, SevFeatures::NONE).page(VcpuRole::Bsp)
        );
    }
    assert_ne!(
        VmsaConfig::new(VmmType::Qemu, EPYC_V4, SevFeatures::NONE).page(VcpuRole::Bsp),
        VmsaConfig::new(VmmType::Qemu, other, SevFeatures::NONE).page(VcpuRole::Bsp)
    );
}

#[test]
fn vmm_type_names() {
    for (s, t) in [
        ("QEMU", VmmType::Qemu),
        ("qemu", VmmType::Qemu),
        ("ec2", VmmType::Ec2),
        ("EC2", VmmType::Ec2),
        ("gce", VmmType::Gce),
    ] {
        assert_eq!(s.parse::<VmmType>(), Ok(t));
    }
    assert_eq!(
        "kvm".parse::<VmmType>(),
        Err(UnknownVmmType("kvm".to_owned()))
    );
    assert_eq!(VmmType::Qemu.to_string(), "QEMU");
}

#[test]
fn pages_in_vcpu_order() {
    let c = qemu(1);
    let pages: Vec<_> = c.pages(3, Some(FIXTURE_AP)).unwrap().collect();
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[0], c.page(VcpuRole::Bsp));
    assert_eq!(pages[1], c.page(VcpuRole::Ap(FIXTURE_AP)));
    assert_eq!(pages[2], pages[1]);
    assert_eq!(c.pages(1, None).unwrap().count(), 1);
    assert_eq!(c.pages(0, None).unwrap().len(), 0);
    assert_eq!(
        c.pages(2, None).unwrap_err(),
        MissingApResetVector { vcpus: 2 }
    );
}

#[test]
fn sev_features_bits() {
    let f = SevFeatures::SNP_ACTIVE.union(SevFeatures::DEBUG_SWAP);
    assert_eq!(f.bits(), 0x21);
    assert!(f.contains(SevFeatures::DEBUG_SWAP));
    assert!(!SevFeatures::NONE.contains(SevFeatures::SNP_ACTIVE));
    assert_eq!(format!("{f:?}"), "SevFeatures(0x21)");
}
