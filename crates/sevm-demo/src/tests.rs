//! The image builder's output, byte by byte; running the image is tested
//! in sevm (`demo_guest_tests`), which owns the machine.

use super::*;

fn testdata(test: &str, rel: &str) -> Option<Vec<u8>> {
    sevm_testutil::fixture(test, rel)
}

/// A footer-table parser written from docs/protocol/ovmf.md#footer-table, independent of the
/// builder: walks the entries backwards from EOF−50.
fn parse_footer(image: &[u8]) -> Result<Vec<(Guid, Vec<u8>)>, String> {
    let n = image.len();
    if n < 50 {
        return Err("image too short".into());
    }
    if image[n - 48..n - 32] != FOOTER_GUID.to_bytes() {
        return Err("no footer GUID at EOF-48".into());
    }
    let table_len = u16::from_le_bytes([image[n - 50], image[n - 49]]) as usize;
    if table_len < 18 || table_len > n - 32 {
        return Err(format!("bad table_len {table_len}"));
    }
    let mut remaining = table_len - 18;
    let mut end = n - 50;
    let mut out = Vec::new();
    while remaining > 0 {
        if remaining < 18 {
            return Err("entry shorter than 18 bytes".into());
        }
        let guid = Guid::from_bytes(image[end - 16..end].try_into().unwrap());
        let len = u16::from_le_bytes([image[end - 18], image[end - 17]]) as usize;
        if len < 18 || len > remaining {
            return Err(format!("bad entry length {len}"));
        }
        out.push((guid, image[end - len..end - 18].to_vec()));
        end -= len;
        remaining -= len;
    }
    Ok(out)
}

fn base_size(data: &[u8]) -> (u32, u32) {
    assert_eq!(data.len(), 8);
    (
        u32::from_le_bytes(data[0..4].try_into().unwrap()),
        u32::from_le_bytes(data[4..8].try_into().unwrap()),
    )
}

/// Checks the test parser itself on OVMF AmdSev's real footer table
/// (docs/protocol/ovmf.md#footer-table worked example; fixture from virtee/sev-snp-measure).
#[test]
fn footer_parser_reads_the_ovmf_amdsev_fixture() {
    let Some(suffix) = testdata(
        "footer_parser_reads_the_ovmf_amdsev_fixture",
        "ovmf/ovmf_AmdSev_suffix.bin",
    ) else {
        return;
    };
    let entries = parse_footer(&suffix).unwrap();
    assert_eq!(entries.len(), 5);
    let find = |g: Guid| entries.iter().find(|(e, _)| *e == g).unwrap().1.clone();
    assert_eq!(base_size(&find(SECRET_BLOCK_GUID)), (0x0081_0000, 0xC00));
    assert_eq!(base_size(&find(HASHES_BLOCK_GUID)), (0x0081_0C00, 0x400));
}

#[test]
fn default_image_size_and_footer_table() {
    let image = build(&DemoOptions::default()).unwrap();
    assert_eq!(image.len(), 2 << 20);
    let n = image.len();
    assert_eq!(&image[n - 48..n - 32], FOOTER_GUID.as_bytes());
    // table_len = 2 entries of 26 bytes + the 22-byte SEV-ES reset block
    // + the 22-byte SEV metadata entry + the 18-byte footer header.
    assert_eq!(u16::from_le_bytes([image[n - 50], image[n - 49]]), 92 + 22);
    let entries = parse_footer(&image).unwrap();
    assert_eq!(entries.len(), 4);
    let (g3, d3) = &entries[3];
    assert_eq!(*g3, SEV_METADATA_GUID, "last entry walking backwards");
    assert_eq!(d3.as_slice(), 0x800u32.to_le_bytes());
    let (g2, d2) = &entries[2];
    assert_eq!(*g2, SEV_ES_RESET_BLOCK_GUID);
    assert_eq!(d2.as_slice(), AP_RESET_ADDR.to_le_bytes());
    let park = AP_RESET_ADDR as usize - ((1usize << 32) - n);
    assert_eq!(image[park..park + 4], AP_PARK_CODE);
    let (g0, d0) = &entries[0];
    assert_eq!(*g0, SECRET_BLOCK_GUID, "first entry walking backwards");
    assert_eq!(base_size(d0), (SECRET_AREA_BASE, SECRET_AREA_SIZE));
    let (g1, d1) = &entries[1];
    assert_eq!(*g1, HASHES_BLOCK_GUID);
    let (hb, hs) = base_size(d1);
    assert_eq!((hb, hs), (0x0081_0C00, 0x400));
    assert!(hs >= 176, "hashes area holds the 176-byte padded table");
    // The areas do not overlap and fit the advertised minimum RAM.
    assert!(SECRET_AREA_BASE + SECRET_AREA_SIZE <= hb);
    assert!(u64::from(hb + hs) <= min_ram_size(&DemoOptions::default()));
    assert_eq!(min_ram_size(&DemoOptions::default()), 9 << 20);
    // The bytes EOF-32..EOF-16 are unused (zero), as the layout promises.
    assert!(image[n - 32..n - 16].iter().all(|&b| b == 0));
}

#[test]
fn reset_vector_and_real_mode_entry_bytes() {
    let image = build(&DemoOptions {
        size: 64 << 10,
        mode: DemoMode::Normal,
    })
    .unwrap();
    let n = image.len();
    let off = |gpa: u32| (gpa as usize) - ((1usize << 32) - n);
    // 0xFFFFFFF0 (CS base 0xFFFF0000, IP 0xFFF0): jmp near 0xF020
    // (E9 rel16, rel16 = 0xF020 - 0xFFF3 = 0xF02D).
    assert_eq!(&image[n - 16..n - 13], &[0xE9, 0x2D, 0xF0]);
    assert!(image[n - 13..].iter().all(|&b| b == 0));
    // 16-bit entry at 0xFFFFF020:
    //   FA                    cli
    //   FC                    cld
    //   2E 66 0F 01 16 18 F0  o32 lgdt cs:[0xF018]
    //   0F 20 C0              mov eax, cr0
    //   0C 01                 or al, 1
    //   0F 22 C0              mov cr0, eax
    //   66 EA 00 00 FF FF 08 00   jmp dword 0x0008:0xFFFF0000
    let entry: &[u8] = &[
        0xFA, 0xFC, 0x2E, 0x66, 0x0F, 0x01, 0x16, 0x18, 0xF0, 0x0F, 0x20, 0xC0, 0x0C, 0x01, 0x0F,
        0x22, 0xC0, 0x66, 0xEA, 0x00, 0x00, 0xFF, 0xFF, 0x08, 0x00,
    ];
    let e = off(asm::ENTRY16);
    assert_eq!(&image[e..e + entry.len()], entry);
    // GDT: null, flat code, flat data; descriptor: limit 23, base 0xFFFFF000.
    let g = off(asm::GDT_BASE);
    assert_eq!(&image[g..g + 8], &[0; 8]);
    assert_eq!(&image[g + 8..g + 16], &[0xFF, 0xFF, 0, 0, 0, 0x9B, 0xCF, 0]);
    assert_eq!(
        &image[g + 16..g + 24],
        &[0xFF, 0xFF, 0, 0, 0, 0x93, 0xCF, 0]
    );
    let d = off(asm::GDT_DESCRIPTOR);
    assert_eq!(&image[d..d + 6], &[23, 0, 0x00, 0xF0, 0xFF, 0xFF]);
    // The 32-bit code starts by loading the flat data selector:
    // 66 B8 10 00  mov ax, 0x10 ; 66 8E D8  mov ds, ax (iced keeps the o16 prefix)
    let c = off(asm::CODE32_BASE);
    assert_eq!(
        &image[c..c + 7],
        &[0x66, 0xB8, 0x10, 0x00, 0x66, 0x8E, 0xD8]
    );
    // The greeting is in the data area.
    let data = &image[off(asm::DATA_BASE)..off(asm::GDT_BASE)];
    assert!(data
        .windows(GREETING.len())
        .any(|w| w == GREETING.as_bytes()));
}

#[test]
fn image_sizes_are_validated() {
    for size in [
        0,
        4096,
        (64 << 10) + 4096,
        17 << 20,
        (16 << 20) + (64 << 10),
    ] {
        assert_eq!(
            build(&DemoOptions {
                size,
                mode: DemoMode::Normal
            }),
            Err(DemoError::Size { size })
        );
    }
    for size in [64 << 10, 1 << 20, 16 << 20] {
        let image = build(&DemoOptions {
            size,
            mode: DemoMode::Normal,
        })
        .unwrap();
        assert_eq!(image.len(), size);
        // The same boot block whatever the size.
        assert_eq!(
            parse_footer(&image).unwrap().len(),
            4,
            "footer table present at size {size:#x}"
        );
    }
}

#[test]
fn memtest_ranges_are_validated() {
    let bad = [
        MemtestOptions {
            pages: 0,
            ..Default::default()
        },
        MemtestOptions {
            base: (16 << 20) + 1,
            ..Default::default()
        },
        MemtestOptions {
            base: 0x7_0000,
            ..Default::default()
        },
        MemtestOptions {
            base: 0x0080_0000,
            pages: 32,
            ..Default::default()
        },
        MemtestOptions {
            base: 0xBFFF_F000,
            pages: 2,
            ..Default::default()
        },
    ];
    for m in bad {
        let r = build(&DemoOptions {
            size: DEFAULT_IMAGE_SIZE,
            mode: DemoMode::Memtest(m),
        });
        assert!(
            matches!(r, Err(DemoError::MemtestRange { .. })),
            "{m:?} accepted"
        );
    }
    let m = MemtestOptions::default();
    let opts = DemoOptions {
        size: DEFAULT_IMAGE_SIZE,
        mode: DemoMode::Memtest(m),
    };
    build(&opts).unwrap();
    assert_eq!(min_ram_size(&opts), 20 << 20);
}

#[test]
fn secret_table_builder_matches_the_efi_secret_layout() {
    // docs/protocol/secret.md#secret-table: header GUID bytes 42f5741e dd71 664d 963e ef4287ff173b.
    let g: Guid = "736869e5-84f0-4973-92ec-06879ce3da0b".parse().unwrap();
    let t = secret_table(&[(g, b"abc")]);
    assert_eq!(
        &t[..16],
        &[
            0x42, 0xf5, 0x74, 0x1e, 0xdd, 0x71, 0x66, 0x4d, 0x96, 0x3e, 0xef, 0x42, 0x87, 0xff,
            0x17, 0x3b
        ]
    );
    assert_eq!(u32::from_le_bytes(t[16..20].try_into().unwrap()), 20 + 23);
    assert_eq!(&t[20..36], g.as_bytes());
    assert_eq!(u32::from_le_bytes(t[36..40].try_into().unwrap()), 23);
    assert_eq!(&t[40..43], b"abc");
    assert_eq!(t.len(), 48);
    assert!(t[43..].iter().all(|&b| b == 0));
}

#[test]
fn sev_metadata_parses_and_gives_an_snp_launch_plan() {
    use sev_proto::ovmf::{FooterTable, SectionType};
    use sev_proto::snp::measure::{metadata_updates, snp_launch_digest, SnpLaunch};
    use sev_proto::snp::PageType;
    use sev_proto::vmsa::{CpuSignature, SevFeatures, VmmType, VmsaConfig};

    let image = build(&DemoOptions::default()).unwrap();
    let n = image.len();
    let meta = &image[n - 0x800..n - 0x800 + 64];
    assert_eq!(meta, sev_metadata().as_slice());
    let table = FooterTable::parse(&image).unwrap();
    let md = table.sev_metadata().unwrap().expect("metadata entry");
    let got: Vec<_> = md
        .sections
        .iter()
        .map(|s| (s.gpa, s.size, s.section_type))
        .collect();
    assert_eq!(
        got,
        vec![
            (VARS_BASE, 0x20000, SectionType::SnpSecMem),
            (SNP_SECRETS_GPA, 0x1000, SectionType::SnpSecrets),
            (SNP_CPUID_GPA, 0x1000, SectionType::Cpuid),
            (0x0081_0000, 0x1000, SectionType::KernelHashes),
        ]
    );
    // The GHCB page and the stack lie in SNP_SEC_MEM; no section overlaps
    // another or the secret/hashes areas' pages except the hashes page.
    const {
        assert!(GHCB_GPA >= SEC_MEM_BASE && GHCB_GPA + 0x1000 <= SEC_MEM_BASE + SEC_MEM_SIZE);
        assert!(SNP_CPUID_GPA + 0x1000 <= SECRET_AREA_BASE);
    }
    assert!(u64::from(SNP_CPUID_GPA) + 0x1000 <= min_ram_size(&DemoOptions::default()));
    let updates = metadata_updates(&md, false, VmmType::Qemu).unwrap();
    let types: Vec<_> = updates.iter().map(|u| u.page_type).collect();
    assert_eq!(
        types,
        vec![
            PageType::Zero,
            PageType::Secrets,
            PageType::Cpuid,
            PageType::Zero
        ]
    );
    // The whole launch plan measures: 1 and 4 vCPUs differ.
    let sig = CpuSignature::from_raw(0x00A0_0F11);
    let digest = |vcpus| {
        snp_launch_digest(
            &image,
            &SnpLaunch {
                ovmf_hash: None,
                kernel_hashes: None,
                vcpus,
                vmsa: VmsaConfig::new(VmmType::Qemu, sig, SevFeatures::from_bits(1)),
            },
        )
        .unwrap()
    };
    assert_ne!(digest(1).bytes(), digest(4).bytes());
}

#[test]
fn report_data_is_absent_by_default_and_round_trips() {
    let mut image = build(&DemoOptions::default()).unwrap();
    assert_eq!(report_data(&image), None);
    let block = image.len() - ((1usize << 32) - REPORT_BLOCK_GPA as usize);
    assert!(image[block..block + REPORT_BLOCK_LEN]
        .iter()
        .all(|&b| b == 0));
    let data: [u8; 64] = std::array::from_fn(|i| i as u8 ^ 0xA5);
    set_report_data(&mut image, &data).unwrap();
    assert_eq!(report_data(&image), Some(data));
    assert_eq!(image[block..block + 4], REPORT_DATA_MAGIC);
    // Only the block changed.
    let mut plain = build(&DemoOptions::default()).unwrap();
    plain[block..block + REPORT_BLOCK_LEN].copy_from_slice(&image[block..block + REPORT_BLOCK_LEN]);
    assert_eq!(plain, image);
    assert_eq!(
        set_report_data(&mut [0u8; 100], &data),
        Err(DemoError::NotAnImage { len: 100 })
    );
}
