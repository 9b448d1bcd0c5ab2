use super::*;
use crate::vmsa::{CpuSignature, SevFeatures, VcpuRole};

const AMDSEV: &str = "ovmf/ovmf_AmdSev_suffix.bin";
const OVMFX64: &str = "ovmf/ovmf_OvmfX64_suffix.bin";
const EPYC_V4: CpuSignature = CpuSignature::from_raw(0x0080_0F12);

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn fixture(test: &str, rel: &str) -> Option<Vec<u8>> {
    sevm_testutil::fixture(&format!("snp::measure::tests::{test}"), rel)
}

fn empty_kernel(append: Option<&str>) -> KernelHashes {
    KernelHashes::new(append.map(str::as_bytes), Some(b""), b"")
}

fn digest(
    firmware: &[u8],
    hashes: Option<&KernelHashes>,
    vcpus: u32,
    vmm: VmmType,
    features: u64,
) -> Result<String, SnpMeasureError> {
    let launch = SnpLaunch {
        ovmf_hash: None,
        kernel_hashes: hashes,
        vcpus,
        vmsa: VmsaConfig::new(vmm, EPYC_V4, SevFeatures::from_bits(features)),
    };
    snp_launch_digest(firmware, &launch).map(|ld| hex(ld.bytes()))
}

/// Row number, firmware, kernel hashes, vCPUs, VMM type, guest features, digest.
type Row<'a> = (
    u8,
    &'a [u8],
    Option<&'a KernelHashes>,
    u32,
    VmmType,
    u64,
    &'a str,
);

/// docs/protocol/test-vectors.md#snp-launch-digests, rows 1–14 and 17–18
/// (sev-snp-measure's and virtee/sev's published digests).
#[test]
fn published_snp_launch_digests() {
    let (Some(amdsev), Some(x64)) = (
        fixture("published_snp_launch_digests", AMDSEV),
        fixture("published_snp_launch_digests", OVMFX64),
    ) else {
        return;
    };
    assert_eq!(
        hex(ovmf_hash(&amdsev).unwrap().bytes()),
        "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74"
    );
    let append = empty_kernel(Some("console=ttyS0 loglevel=7"));
    let no_append = empty_kernel(None);
    let q = VmmType::Qemu;
    let rows: [Row<'_>; 15] = [
        (2, &amdsev, Some(&append), 1, q, 0x21, "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977"),
        (3, &amdsev, Some(&append), 1, q, 0x1, "6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa"),
        (4, &amdsev, Some(&no_append), 1, q, 0x21, "329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683632b9b50e4e1d7fa41179ef98a7ef198"),
        (5, &amdsev, Some(&no_append), 1, q, 0x1, "ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5"),
        (6, &amdsev, None, 1, q, 0x21, "e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b"),
        (7, &amdsev, None, 1, q, 0x1, "19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d"),
        (8, &amdsev, Some(&no_append), 4, q, 0x21, "4953b1fb416fa874980e8442b3706d345926d5f38879134e00813c5d7abcbe78eafe7b422907be0b4698e2414a631942"),
        (9, &amdsev, Some(&no_append), 4, q, 0x1, "5061fffb019493a903613d56d54b94912a1a2f9e4502385f5c194616753720a92441310ba6c4933de877c36e23046ad5"),
        (10, &x64, None, 1, q, 0x21, "28797ae0afaba4005a81e629acebfb59e6687949d6be44007cd5506823b0dd66f146aaae26ff291eed7b493d8a64c385"),
        (11, &x64, None, 1, q, 0x1, "da0296de8193586a5512078dcd719eccecbd87e2b825ad4148c44f665dc87df21e5b49e21523a9ad993afdb6a30b4005"),
        (13, &amdsev, Some(&no_append), 1, VmmType::Ec2, 0x21, "0ce9ccc06bab55eebe8abc234f3df6514883977a68a591b71052498ab52b2f1aa415db338033946ef93aa8278c0d67fb"),
        (14, &amdsev, Some(&no_append), 1, VmmType::Ec2, 0x1, "0883bd0eeb716e65b7b977a321c278d1e51b33b5c655fab985443bbcc65c086b9c15e8a0bd8811050dec7e24964e5056"),
        (17, &amdsev, Some(&no_append), 1, VmmType::Gce, 0x1, "5da7106cf14cf46b1725ebab123eb9e53bd46a1e9f400cd0c08e7827b04b688ea8b4e403c8404efed4397ea5d5d0722e"),
        (18, &amdsev, Some(&no_append), 4, VmmType::Gce, 0x1, "5c5debf100fc339f90276e761ee1f1658d08922c3b20e2a2e6c7a6c3370b2452a15a00eae11886a93d6fd1e7ab81e29d"),
        // Row 7 again from the saved firmware digest (row 1).
        (1, &amdsev, None, 1, q, 0x1, "19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d"),
    ];
    for (row, fw, hashes, vcpus, vmm, features, want) in rows {
        let got = if row == 1 {
            let launch = SnpLaunch {
                ovmf_hash: Some(ovmf_hash(fw).unwrap()),
                kernel_hashes: hashes,
                vcpus,
                vmsa: VmsaConfig::new(vmm, EPYC_V4, SevFeatures::from_bits(features)),
            };
            hex(snp_launch_digest(fw, &launch).unwrap().bytes())
        } else {
            digest(fw, hashes, vcpus, vmm, features).unwrap()
        };
        assert_eq!(got, want, "row {row}");
    }
    // Row 12: no kernel-hashes range.
    assert_eq!(
        digest(&x64, Some(&no_append), 1, q, 0x1),
        Err(SnpMeasureError::NoKernelHashesSection)
    );
}

/// Rows 15–16: virtee/sev's ec2 model (RDX 0 instead of 0x600), built from
/// the same metadata plan with the VMSA's RDX changed.
#[test]
fn virtee_ec2_digests_from_the_plan() {
    let Some(fw) = fixture("virtee_ec2_digests_from_the_plan", AMDSEV) else {
        return;
    };
    let table = FooterTable::parse(&fw).unwrap();
    let hashes = empty_kernel(None);
    let page = kernel_hashes_page(&table, &hashes).unwrap();
    let metadata = table.sev_metadata().unwrap().unwrap();
    let plan = metadata_updates(&metadata, true, VmmType::Ec2).unwrap();
    assert_eq!(plan.last().unwrap().page_type, PageType::Cpuid);
    for (features, want) in [
        (0x21, "6ae80856486b1396af8c82a40351d6ed76a20c785e9c7fa4ffa27c22d5d6313b4b3b458cd3c9968e6f89fb5d8450d7a6"),
        (0x1, "7d3756157c805bf6adf617064c8552e8c1688fa1c8756f11cbf56ba5d25c9270fb69c0505c1cbe1c5c66c0e34c6ed3be"),
    ] {
        let mut ld = ovmf_hash(&fw).unwrap();
        for u in &plan {
            let contents = if u.page_type == PageType::Normal {
                page
            } else {
                [0; PAGE_LEN]
            };
            for gpa in u.section.pages() {
                ld.add_page(u.page_type, gpa, &contents);
            }
        }
        let config = VmsaConfig::new(VmmType::Ec2, EPYC_V4, SevFeatures::from_bits(features));
        let mut bsp = config.state(VcpuRole::Bsp);
        bsp.rdx = 0;
        ld.add_page(PageType::Vmsa, INITIAL_VMSA_GPA, &bsp.to_page());
        assert_eq!(hex(ld.bytes()), want, "{features:#x}");
    }
}

/// The digest after each metadata range (its first six and last two bytes) and the
/// hashes page digests (docs/protocol/test-vectors.md#snp-launch-digests).
#[test]
fn intermediates_of_the_metadata_walk() {
    let Some(fw) = fixture("intermediates_of_the_metadata_walk", AMDSEV) else {
        return;
    };
    let table = FooterTable::parse(&fw).unwrap();
    let hashes = empty_kernel(None);
    let page = kernel_hashes_page(&table, &hashes).unwrap();
    assert_eq!(
        hex(&crate::hash::sha384(&page)),
        "7b581a6e6bc2ae2e8a0e875bd21d19d8b0cc96f035a9c8fb1d127d3ec75e21edbb830e1f1b5c47bf7644d7f3561bece3"
    );
    let with_append = kernel_hashes_page(&table, &empty_kernel(Some("console=ttyS0 loglevel=7")));
    assert_eq!(
        hex(&crate::hash::sha384(&with_append.unwrap())),
        "adbef9bc7385f7a6dcb8774523cf024b403f193a47962309b277c4109aa70b4ba0355d1657b50e9625d5bd1129e7fd27"
    );
    let metadata = table.sev_metadata().unwrap().unwrap();
    let plan = metadata_updates(&metadata, true, VmmType::Qemu).unwrap();
    let mut ld = ovmf_hash(&fw).unwrap();
    let mut after = Vec::new();
    for u in &plan {
        let contents = if u.page_type == PageType::Normal {
            page
        } else {
            [0; PAGE_LEN]
        };
        for gpa in u.section.pages() {
            ld.add_page(u.page_type, gpa, &contents);
        }
        let h = hex(ld.bytes());
        after.push(format!("{}…{}", &h[..12], &h[92..]));
    }
    assert_eq!(
        after,
        [
            "411a1360ae40…881a",
            "e0b2ff7ad806…8477",
            "230c05427474…46d8",
            "17af371be37e…5574",
            "1de7f0d81360…e4e9",
            "af02d935c664…aa87",
            "09048f370bff…c158",
        ]
    );
}

#[test]
fn metadata_plan_page_types() {
    use crate::ovmf::MetadataSection;
    let s = |gpa, t| MetadataSection {
        gpa,
        size: 0x1000,
        section_type: t,
    };
    let metadata = SevMetadata {
        offset: 0,
        sections: vec![
            s(0x1000, SectionType::SnpSecMem),
            s(0x2000, SectionType::Cpuid),
            s(0x3000, SectionType::SnpSecrets),
            s(0x4000, SectionType::SvsmCaa),
            s(0x5000, SectionType::KernelHashes),
        ],
    };
    let types = |kernel, vmm| -> Vec<(u32, PageType)> {
        metadata_updates(&metadata, kernel, vmm)
            .unwrap()
            .iter()
            .map(|u| (u.section.gpa, u.page_type))
            .collect()
    };
    use PageType::*;
    assert_eq!(
        types(false, VmmType::Qemu),
        [
            (0x1000, Zero),
            (0x2000, Cpuid),
            (0x3000, Secrets),
            (0x4000, Zero),
            (0x5000, Zero)
        ]
    );
    assert_eq!(
        types(true, VmmType::Qemu),
        [
            (0x1000, Zero),
            (0x2000, Cpuid),
            (0x3000, Secrets),
            (0x4000, Zero),
            (0x5000, Normal)
        ]
    );
    assert_eq!(
        types(false, VmmType::Gce),
        [
            (0x1000, Unmeasured),
            (0x2000, Cpuid),
            (0x3000, Secrets),
            (0x4000, Zero),
            (0x5000, Zero)
        ]
    );
    assert_eq!(
        types(false, VmmType::Ec2),
        [
            (0x1000, Zero),
            (0x3000, Secrets),
            (0x4000, Zero),
            (0x5000, Zero),
            (0x2000, Cpuid)
        ]
    );
}

#[test]
fn bad_inputs_are_errors() {
    let Some(fw) = fixture("bad_inputs_are_errors", AMDSEV) else {
        return;
    };
    // Not whole pages, or empty.
    for len in [0, 4095] {
        let mut short = fw.clone();
        short.truncate(len);
        assert_eq!(
            ovmf_hash(&short).unwrap_err(),
            SnpMeasureError::FirmwareSize { len }
        );
    }
    let mut odd = vec![0u8; 100];
    odd.extend_from_slice(&fw);
    assert_eq!(
        digest(&odd, None, 1, VmmType::Qemu, 1),
        Err(SnpMeasureError::FirmwareSize { len: 4196 })
    );
    // No footer table, so no metadata.
    let no_table = vec![0u8; PAGE_LEN];
    assert_eq!(
        digest(&no_table, None, 1, VmmType::Qemu, 1),
        Err(SnpMeasureError::NoMetadata)
    );
    // Zero vCPUs measure no VMSA at all (the library allows it).
    assert!(digest(&fw, None, 0, VmmType::Qemu, 1).is_ok());
}
