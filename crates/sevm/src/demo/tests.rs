use super::*;
use crate::devices::serial::{CaptureBuffer, SerialOutput};
use crate::machine::testutil::{kvm_available, testdata};
use crate::machine::{Machine, MachineConfig, MachineExit};
use crate::memory::{Gpa, GuestRam};

/// A footer-table parser written from SEV-REFERENCE 10.1, independent of the
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
/// (SEV-REFERENCE 10.1 worked example; fixture from virtee/sev-snp-measure).
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
    // table_len = 2 entries of 26 bytes + the 18-byte footer header.
    assert_eq!(u16::from_le_bytes([image[n - 50], image[n - 49]]), 70);
    let entries = parse_footer(&image).unwrap();
    assert_eq!(entries.len(), 2);
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
            2,
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
    // SEV-REFERENCE 7.3: header GUID bytes 42f5741e dd71 664d 963e ef4287ff173b.
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

// ---------------------------------------------------------------------------
// Running the guest (needs /dev/kvm).

const TEST_RAM: u64 = 32 << 20;

fn run_image(image: Vec<u8>, prepare: impl FnOnce(&GuestRam)) -> (MachineExit, String) {
    let out = CaptureBuffer::new();
    let mut config = MachineConfig::new(TEST_RAM, image);
    config.serial = SerialOutput::Capture(out.clone());
    let m = Machine::new(config).unwrap();
    prepare(m.guest_memory());
    let exit = m.run_until_exit().unwrap();
    (exit, out.text())
}

fn run_normal(prepare: impl FnOnce(&GuestRam)) -> (MachineExit, String) {
    run_image(build(&DemoOptions::default()).unwrap(), prepare)
}

fn write_secret(ram: &GuestRam, bytes: &[u8]) {
    ram.write_plain(Gpa(u64::from(SECRET_AREA_BASE)), bytes)
        .unwrap();
}

#[test]
fn demo_guest_greets_and_reports_no_secret() {
    if !kvm_available("demo_guest_greets_and_reports_no_secret") {
        return;
    }
    let (exit, text) = run_normal(|_| {});
    assert_eq!(exit, MachineExit::GuestExit(EXIT_OK), "output:\n{text}");
    assert_eq!(
        text,
        format!("{GREETING}\nsecret area: 0x00810000, size 0x00000c00\nno secret injected\n")
    );
}

#[test]
fn demo_guest_prints_injected_secrets() {
    if !kvm_available("demo_guest_prints_injected_secrets") {
        return;
    }
    let g1: Guid = "736869e5-84f0-4973-92ec-06879ce3da0b".parse().unwrap();
    let g2: Guid = "e6f5a162-d67f-4750-a67c-5d065f2a9910".parse().unwrap();
    let g3: Guid = "adf956ad-e98c-484c-ae11-b51c7d336447".parse().unwrap();
    let table = secret_table(&[
        (g1, b"correct horse battery staple"),
        (g2, &[0x00, 0xFF, 0x10, 0x7F, 0x41]),
        (g3, b""),
    ]);
    let (exit, text) = run_normal(|ram| write_secret(ram, &table));
    assert_eq!(exit, MachineExit::GuestExit(EXIT_OK), "output:\n{text}");
    let expected = format!(
        "{GREETING}\nsecret area: 0x00810000, size 0x00000c00\n\
         secret table: {} bytes\n\
         secret 736869e5-84f0-4973-92ec-06879ce3da0b: correct horse battery staple\n\
         secret e6f5a162-d67f-4750-a67c-5d065f2a9910: hex 00ff107f41\n\
         secret adf956ad-e98c-484c-ae11-b51c7d336447: (empty)\n\
         secret table: 3 entries\n",
        20 + 48 + 25 + 20
    );
    assert_eq!(text, expected);
}

#[test]
fn demo_guest_accepts_a_table_filling_the_whole_area() {
    if !kvm_available("demo_guest_accepts_a_table_filling_the_whole_area") {
        return;
    }
    let g: Guid = "736869e5-84f0-4973-92ec-06879ce3da0b".parse().unwrap();
    let data = vec![b'x'; SECRET_AREA_SIZE as usize - 40];
    let table = secret_table(&[(g, &data)]);
    assert_eq!(table.len(), SECRET_AREA_SIZE as usize);
    let (exit, text) = run_normal(|ram| write_secret(ram, &table));
    assert_eq!(exit, MachineExit::GuestExit(EXIT_OK), "output:\n{text}");
    assert!(text.contains(&format!("secret {g}: {}\n", "x".repeat(data.len()))));
    assert!(text.ends_with("secret table: 1 entries\n"));
}

#[test]
fn demo_guest_rejects_malformed_tables() {
    if !kvm_available("demo_guest_rejects_malformed_tables") {
        return;
    }
    let g: Guid = "736869e5-84f0-4973-92ec-06879ce3da0b".parse().unwrap();
    let valid = secret_table(&[(g, b"abcd")]);
    let with_total = |total: u32| {
        let mut t = valid.clone();
        t[16..20].copy_from_slice(&total.to_le_bytes());
        t
    };
    let with_entry_len = |len: u32| {
        let mut t = valid.clone();
        t[36..40].copy_from_slice(&len.to_le_bytes());
        t
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            with_total(0x2000),
            "secret table error: total length 0x00002000 outside 20..=area size 0x00000c00",
        ),
        (
            with_total(19),
            "secret table error: total length 0x00000013 outside",
        ),
        // total says 30: 10 bytes after the header cannot hold an entry header
        (
            with_total(30),
            "secret table error: truncated entry header at offset 0x00000014",
        ),
        (
            with_entry_len(5),
            "secret table error: entry at offset 0x00000014 has invalid length 0x00000005",
        ),
        (
            with_entry_len(25),
            "secret table error: entry at offset 0x00000014 has invalid length 0x00000019",
        ),
        (
            with_entry_len(0xFFFF_FFF0),
            "secret table error: entry at offset 0x00000014 has invalid length 0xfffffff0",
        ),
    ];
    for (table, expected) in cases {
        let (exit, text) = run_normal(|ram| write_secret(ram, &table));
        assert_eq!(
            exit,
            MachineExit::GuestExit(EXIT_BAD_SECRET_TABLE),
            "output:\n{text}"
        );
        assert!(text.contains(expected), "want {expected:?} in:\n{text}");
        assert!(text.starts_with(GREETING));
    }
}

#[test]
fn memtest_verifies_after_max_passes() {
    if !kvm_available("memtest_verifies_after_max_passes") {
        return;
    }
    let m = MemtestOptions {
        base: 16 << 20,
        pages: 64,
        max_passes: 3,
        progress_every: 1,
    };
    let image = build(&DemoOptions {
        size: DEFAULT_IMAGE_SIZE,
        mode: DemoMode::Memtest(m),
    })
    .unwrap();
    let (exit, text) = run_image(image, |_| {});
    assert_eq!(exit, MachineExit::GuestExit(EXIT_OK), "output:\n{text}");
    assert_eq!(
        text,
        format!(
            "{GREETING}\nmemtest: base 0x01000000, pages 64\nmemtest: filled\n\
             memtest: pass 1\nmemtest: pass 2\nmemtest: pass 3\n\
             memtest: checking\nmemtest: ok 64 pages\n"
        )
    );
}

fn memtest_machine(pages: u32, dirty_logging: bool) -> (Machine, CaptureBuffer) {
    let image = build(&DemoOptions {
        size: DEFAULT_IMAGE_SIZE,
        mode: DemoMode::Memtest(MemtestOptions {
            base: 16 << 20,
            pages,
            max_passes: 0,
            progress_every: 0,
        }),
    })
    .unwrap();
    let out = CaptureBuffer::new();
    let mut config = MachineConfig::new(TEST_RAM, image);
    config.serial = SerialOutput::Capture(out.clone());
    config.dirty_logging = dirty_logging;
    (Machine::new(config).unwrap(), out)
}

#[test]
fn memtest_finishes_on_host_request_and_pages_are_dirty_logged() {
    if !kvm_available("memtest_finishes_on_host_request_and_pages_are_dirty_logged") {
        return;
    }
    let (m, out) = memtest_machine(64, true);
    m.start().unwrap();
    assert!(out.wait_for(b"memtest: filled\n"), "{}", out.text());
    // Pausing and resuming does not disturb the test.
    m.pause().unwrap();
    m.resume().unwrap();
    m.control().request_finish();
    assert_eq!(m.wait_for_exit(), MachineExit::GuestExit(EXIT_OK));
    let text = out.text();
    assert!(text.contains("memtest: filled\n"), "{text}");
    assert!(
        text.ends_with("memtest: checking\nmemtest: ok 64 pages\n"),
        "{text}"
    );
    let bitmap = m.dirty_log(0).unwrap();
    let first = (16 << 20) / 4096;
    for p in first..first + 64 {
        assert!(bitmap[p / 64] & (1 << (p % 64)) != 0, "page {p} not dirty");
    }
}

#[test]
fn memtest_detects_a_corrupted_page() {
    if !kvm_available("memtest_detects_a_corrupted_page") {
        return;
    }
    let pages = 64;
    let (m, out) = memtest_machine(pages, false);
    m.start().unwrap();
    assert!(out.wait_for(b"memtest: filled\n"), "{}", out.text());
    m.pause().unwrap();
    // Past the first pass the guest polls the control port at least every
    // 16 pages, so with the finish request made now it rewrites at most 16
    // more pages: one 32 pages ahead of the next page (ebx) is verified
    // before it is rewritten.
    let next = m.vcpu_state(0).unwrap().regs.rbx as u32;
    assert!(next < pages);
    let victim = (next + 32) % pages;
    let gpa = (16u64 << 20) + u64::from(victim) * 4096 + 8;
    let ram = m.guest_memory();
    let mut word = [0u8; 4];
    ram.read_plain(Gpa(gpa), &mut word).unwrap();
    let good = u32::from_le_bytes(word);
    ram.write_plain(Gpa(gpa), &(good ^ 0x100).to_le_bytes())
        .unwrap();
    m.control().request_finish();
    m.resume().unwrap();
    assert_eq!(
        m.wait_for_exit(),
        MachineExit::GuestExit(EXIT_MEMTEST_MISMATCH)
    );
    let text = out.text();
    let expected = format!(
        "memtest: mismatch at 0x{gpa:08x}: expected 0x{good:08x}, found 0x{:08x}\n",
        good ^ 0x100
    );
    assert!(text.ends_with(&expected), "want {expected:?} in:\n{text}");
}
