//! The demo guest (crate `sevm-demo`) run on sevm's machine: greeting,
//! secret tables, memtest and dirty logging. Needs /dev/kvm (skips
//! otherwise).

use sev_proto::Guid;
use sevm_demo::*;

use crate::devices::serial::{CaptureBuffer, SerialOutput};
use crate::machine::testutil::kvm_available;
use crate::machine::{Machine, MachineConfig, MachineExit};
use crate::memory::{Gpa, GuestRam};

/// The demo guest's idea of the machine is sevm's.
#[test]
fn the_guests_ports_and_ram_limit_are_sevms() {
    assert_eq!(ports::COM1_BASE, crate::devices::serial::COM1_BASE);
    assert_eq!(
        ports::DEBUG_EXIT_PORT,
        crate::devices::debug_exit::DEBUG_EXIT_PORT
    );
    assert_eq!(ports::CONTROL_PORT, crate::devices::control::CONTROL_PORT);
    assert_eq!(MAX_RAM_SIZE, crate::memory::MAX_RAM_SIZE);
}

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

// ---------------------------------------------------------------------------
// SEV, SEV-ES and SNP modes on the machine alone (no SEV platform): the
// guest sees its mode through CPUID and the SEV status MSR and, in ES and
// SNP modes, talks to the host only through the GHCB.

mod sev_modes {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::ghcb::msr::PageState;
    use crate::ghcb::page::GHCB_LEN;
    use crate::ghcb::{GhcbPlatform, PlatformError, SevMode, SharedGhcbPage};
    use crate::vcpu::SevCpuid;

    fn machine(mode: SevMode) -> (Machine, CaptureBuffer) {
        machine_with(mode, build(&DemoOptions::default()).unwrap())
    }

    fn machine_with(mode: SevMode, image: Vec<u8>) -> (Machine, CaptureBuffer) {
        let out = CaptureBuffer::new();
        let mut config = MachineConfig::new(TEST_RAM, image);
        config.serial = SerialOutput::Capture(out.clone());
        config.emulated_sev = Some(SevCpuid {
            mode,
            c_bit: 51,
            reduced_phys_bits: 1,
        });
        (Machine::new(config).unwrap(), out)
    }

    const NO_SECRET: &str = "secret area: 0x00810000, size 0x00000c00\nno secret injected\n";
    const ES_LINES: &str = "ghcb: protocol 1-2, c-bit 51, all i/o through the ghcb at 0x00061000\n";

    #[test]
    fn plain_sev_mode_prints_exactly_what_a_plain_guest_prints() {
        if !kvm_available("plain_sev_mode_prints_exactly_what_a_plain_guest_prints") {
            return;
        }
        let (m, out) = machine(SevMode::Sev);
        let exit = m.run_until_exit().unwrap();
        let text = out.text();
        assert_eq!(exit, MachineExit::GuestExit(EXIT_OK), "output:\n{text}");
        assert_eq!(text, format!("{GREETING}\n{NO_SECRET}"));
        assert_eq!(m.ghcb_host().unwrap().page_exits(), 0);
        assert_eq!(m.ghcb_host().unwrap().port_writes(), 0);
    }

    #[test]
    fn es_mode_does_all_its_io_through_the_ghcb() {
        if !kvm_available("es_mode_does_all_its_io_through_the_ghcb") {
            return;
        }
        let (m, out) = machine(SevMode::SevEs);
        let exit = m.run_until_exit().unwrap();
        let text = out.text();
        assert_eq!(exit, MachineExit::GuestExit(EXIT_OK), "output:\n{text}");
        assert_eq!(
            text,
            format!(
                "{GREETING}\nmode: sev-es\n{ES_LINES}\
                 cpuid 0x8000001f via ghcb msr protocol: eax 0x0000000a, ebx 0x00000073\n\
                 {NO_SECRET}"
            )
        );
        // Every character and the exit byte were port writes through the
        // GHCB; strings go out 16 bytes per exit (after one line-status
        // IN), single characters one per exit.
        let chars = text.len() as u64;
        let ghcb = m.ghcb_host().unwrap();
        assert_eq!(ghcb.port_writes(), chars + 1);
        assert!(ghcb.page_exits() < chars, "{} exits", ghcb.page_exits());
    }

    /// An SNP platform stand-in: the GHCB in plain memory, page-state
    /// changes recorded.
    #[derive(Debug)]
    struct Psc {
        ram: SharedGhcbPage,
        changes: Mutex<Vec<(u64, PageState)>>,
    }

    impl GhcbPlatform for Psc {
        fn read_ghcb(&self, gpa: u64, page: &mut [u8; GHCB_LEN]) -> Result<(), PlatformError> {
            self.ram.read_ghcb(gpa, page)
        }
        fn write_ghcb(&self, gpa: u64, page: &[u8; GHCB_LEN]) -> Result<(), PlatformError> {
            self.ram.write_ghcb(gpa, page)
        }
        fn page_state_change(&self, gpa: u64, to: PageState) -> Result<(), PlatformError> {
            self.changes.lock().unwrap().push((gpa, to));
            Ok(())
        }
    }

    #[test]
    fn snp_mode_registers_its_ghcb_and_reads_its_secrets_and_cpuid_pages() {
        if !kvm_available("snp_mode_registers_its_ghcb_and_reads_its_secrets_and_cpuid_pages") {
            return;
        }
        let (m, out) = machine(SevMode::Snp);
        let psc = Arc::new(Psc {
            ram: SharedGhcbPage::new(m.guest_memory().clone()),
            changes: Mutex::new(Vec::new()),
        });
        m.ghcb_host().unwrap().set_platform(psc.clone());
        // A secrets page as the firmware fills it (VMPCK3 left zero to see
        // it reported) and a CPUID page of 5 entries.
        let mut secrets = vec![0u8; 4096];
        secrets[0] = 3;
        secrets[0x20..0x80].fill(0x5A);
        let ram = m.guest_memory();
        ram.write_plain(Gpa(u64::from(SNP_SECRETS_GPA)), &secrets)
            .unwrap();
        ram.write_plain(Gpa(u64::from(SNP_CPUID_GPA)), &5u32.to_le_bytes())
            .unwrap();
        let exit = m.run_until_exit().unwrap();
        let text = out.text();
        assert_eq!(exit, MachineExit::GuestExit(EXIT_OK), "output:\n{text}");
        assert_eq!(
            text,
            format!(
                "{GREETING}\nmode: sev-snp\n{ES_LINES}\
                 ghcb: page made shared by page-state change and registered\n\
                 cpuid 0x8000001f via ghcb msr protocol: eax 0x0000001a, ebx 0x00000073\n\
                 snp secrets page at 0x0080d000: version 3, vmpck0 present, vmpck1 present, \
                 vmpck2 present, vmpck3 zero\n\
                 snp cpuid page at 0x0080e000: 5 entries\n{NO_SECRET}"
            )
        );
        assert!(!text.contains("5a5a"), "a key value leaked: {text}");
        assert_eq!(
            *psc.changes.lock().unwrap(),
            vec![(u64::from(GHCB_GPA), PageState::Shared)]
        );
    }

    #[test]
    fn a_refused_page_state_change_terminates_the_guest_with_its_reason() {
        if !kvm_available("a_refused_page_state_change_terminates_the_guest_with_its_reason") {
            return;
        }
        // The ES platform has no RMP: the SNP guest's GHCB conversion fails.
        let (m, out) = machine(SevMode::Snp);
        let exit = m.run_until_exit().unwrap();
        let MachineExit::Error(msg) = exit else {
            panic!("not an error: {exit:?}, output:\n{}", out.text());
        };
        assert!(
            msg.contains("requested termination: reason set 1, code 1 (page-state change failed)"),
            "{msg}"
        );
        assert_eq!(out.text(), "", "nothing printed before the GHCB works");
    }

    /// How the SNP firmware stand-in answers a guest request.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Answer {
        Report,
        TamperedReport,
        Status(u32),
    }

    /// An SNP firmware stand-in for guest requests, written from
    /// docs/protocol/snp.md#guest-messages with the `aes-gcm` crate: it
    /// checks the request header, opens the request under VMPCK0, records
    /// the report data and answers `report` in a sealed MSG_REPORT_RSP.
    #[derive(Debug)]
    struct ReportFirmware {
        ram: SharedGhcbPage,
        vmpck0: [u8; 32],
        report: Vec<u8>,
        answer: Answer,
        report_data: Mutex<Vec<Vec<u8>>>,
    }

    impl GhcbPlatform for ReportFirmware {
        fn read_ghcb(&self, gpa: u64, page: &mut [u8; GHCB_LEN]) -> Result<(), PlatformError> {
            self.ram.read_ghcb(gpa, page)
        }
        fn write_ghcb(&self, gpa: u64, page: &[u8; GHCB_LEN]) -> Result<(), PlatformError> {
            self.ram.write_ghcb(gpa, page)
        }
        fn page_state_change(&self, _: u64, _: PageState) -> Result<(), PlatformError> {
            Ok(())
        }
        fn guest_request(
            &self,
            req: &[u8; GHCB_LEN],
            rsp: &mut [u8; GHCB_LEN],
        ) -> Result<u32, PlatformError> {
            use aes_gcm::aead::{AeadInPlace, KeyInit};
            use aes_gcm::{Aes256Gcm, Nonce, Tag};
            // seqno 1; algo 1, header version 1, size 0x60; MSG_REPORT_REQ
            // version 1 of 0x60 bytes; VMPCK0; reserved zero.
            assert_eq!(req[0x10..0x20], [0; 16]);
            assert_eq!(
                req[0x20..0x30],
                [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
            );
            assert_eq!(req[0x30..0x38], [1, 1, 0x60, 0, 5, 1, 0x60, 0]);
            assert_eq!(req[0x38..0x60], [0; 0x28]);
            let cipher = Aes256Gcm::new_from_slice(&self.vmpck0).unwrap();
            let mut iv = [0u8; 12];
            iv[0] = 1;
            let mut payload = req[0x60..0xC0].to_vec();
            if cipher
                .decrypt_in_place_detached(
                    Nonce::from_slice(&iv),
                    &req[0x30..0x60],
                    &mut payload,
                    Tag::from_slice(&req[..16]),
                )
                .is_err()
            {
                return Ok(0x0B);
            }
            assert_eq!(payload[0x40..], [0; 0x20], "VMPL 0, KEY_SEL 0");
            self.report_data
                .lock()
                .unwrap()
                .push(payload[..64].to_vec());
            if let Answer::Status(s) = self.answer {
                return Ok(s);
            }
            let mut body = vec![0u8; 0x4C0];
            body[4..8].copy_from_slice(&0x4A0u32.to_le_bytes());
            body[0x20..].copy_from_slice(&self.report);
            rsp.fill(0);
            rsp[0x20] = 2;
            rsp[0x30..0x38].copy_from_slice(&[1, 1, 0x60, 0, 6, 1, 0xC0, 4]);
            iv[0] = 2;
            let tag = cipher
                .encrypt_in_place_detached(Nonce::from_slice(&iv), &rsp[0x30..0x60], &mut body)
                .unwrap();
            rsp[..16].copy_from_slice(&tag);
            if self.answer == Answer::TamperedReport {
                body[100] ^= 1;
            }
            rsp[0x60..0x60 + 0x4C0].copy_from_slice(&body);
            Ok(0)
        }
    }

    /// Runs an SNP demo guest with report data against the stand-in;
    /// returns its output, the firmware and VMPCK0 as the guest left it.
    fn run_report_request(answer: Answer) -> (String, Arc<ReportFirmware>, Vec<u8>) {
        run_report_request_with(answer, None, false)
    }

    /// [`run_report_request`] with `certs` as the certificate table, the
    /// request `plain` (0x8000_0011) or extended.
    fn run_report_request_with(
        answer: Answer,
        certs: Option<Vec<u8>>,
        plain: bool,
    ) -> (String, Arc<ReportFirmware>, Vec<u8>) {
        let mut image = build(&DemoOptions::default()).unwrap();
        let data: [u8; 64] = std::array::from_fn(|i| 0xC0 ^ i as u8);
        set_report_data(&mut image, &data).unwrap();
        if plain {
            set_plain_report_request(&mut image).unwrap();
        }
        let (m, out) = machine_with(SevMode::Snp, image);
        let vmpck0: [u8; 32] = std::array::from_fn(|i| (i * i * 11 + 0x3C) as u8);
        let fw = Arc::new(ReportFirmware {
            ram: SharedGhcbPage::new(m.guest_memory().clone()),
            vmpck0,
            report: (0..0x4A0).map(|i| (i * 7 + (i >> 8)) as u8).collect(),
            answer,
            report_data: Mutex::new(Vec::new()),
        });
        m.ghcb_host().unwrap().set_platform(fw.clone());
        if let Some(table) = certs {
            m.ghcb_host()
                .unwrap()
                .set_cert_provider(Arc::new(crate::ghcb::guest_request::StaticCertTable(table)));
        }
        let mut secrets = vec![0u8; 4096];
        secrets[0] = 3;
        secrets[0x20..0x40].copy_from_slice(&vmpck0);
        let ram = m.guest_memory();
        ram.write_plain(Gpa(u64::from(SNP_SECRETS_GPA)), &secrets)
            .unwrap();
        let exit = m.run_until_exit().unwrap();
        let text = out.text();
        assert_eq!(exit, MachineExit::GuestExit(EXIT_OK), "output:\n{text}");
        assert!(
            !text.contains(&hex::encode(&vmpck0[..8])),
            "the key leaked: {text}"
        );
        let mut left = vec![0u8; 32];
        ram.read_plain(Gpa(u64::from(SNP_SECRETS_GPA) + 0x20), &mut left)
            .unwrap();
        assert_eq!(*fw.report_data.lock().unwrap(), vec![data.to_vec()]);
        (text, fw, left)
    }

    #[test]
    fn snp_mode_requests_a_report_with_the_images_report_data() {
        if !kvm_available("snp_mode_requests_a_report_with_the_images_report_data") {
            return;
        }
        let (text, fw, vmpck0) = run_report_request(Answer::Report);
        let mut want = String::from(
            "snp report: requesting a report with the image's report data\n\
             snp report: certificate table entries: 0\n\
             snp cert: end\n",
        );
        for line in fw.report.chunks(32) {
            want.push_str(&format!("snp report: {}\n", hex::encode(line)));
        }
        want.push_str("snp report: end\n");
        assert!(text.contains(&want), "want\n{want}\nin\n{text}");
        assert!(text.ends_with(NO_SECRET), "{text}");
        assert_eq!(vmpck0, fw.vmpck0, "VMPCK0 kept after a good exchange");
    }

    #[test]
    fn a_forged_response_is_refused_and_vmpck0_erased() {
        if !kvm_available("a_forged_response_is_refused_and_vmpck0_erased") {
            return;
        }
        let (text, _, vmpck0) = run_report_request(Answer::TamperedReport);
        assert!(
            text.contains(
                "snp report error: the response failed authentication\n\
                 snp report: vmpck0 erased, no further requests\n"
            ),
            "{text}"
        );
        assert!(!text.contains("snp report: end"), "{text}");
        assert_eq!(vmpck0, vec![0; 32]);
    }

    #[test]
    fn a_firmware_error_is_printed_and_vmpck0_erased() {
        if !kvm_available("a_firmware_error_is_printed_and_vmpck0_erased") {
            return;
        }
        let (text, _, vmpck0) = run_report_request(Answer::Status(0x1D));
        assert!(
            text.contains(
                "snp report error: vmm error 0x00000000, firmware error 0x0000001d\n\
                 snp report: vmpck0 erased, no further requests\n"
            ),
            "{text}"
        );
        assert_eq!(vmpck0, vec![0; 32]);
    }

    #[test]
    fn snp_mode_prints_the_certificate_table_it_is_given() {
        use sev_proto::snp::cert_table::{encode, guid, CertEntry};
        if !kvm_available("snp_mode_prints_the_certificate_table_it_is_given") {
            return;
        }
        let vcek: Vec<u8> = (0..70u8).collect();
        let ark = vec![0xA5; 3];
        let mut table = encode(&[
            CertEntry {
                guid: guid::VCEK,
                data: vcek.clone(),
            },
            CertEntry {
                guid: guid::ARK,
                data: ark.clone(),
            },
        ])
        .unwrap();
        let (text, _, _) = run_report_request_with(Answer::Report, Some(table.clone()), false);
        let want = format!(
            "snp report: certificate table entries: 2\n\
             snp cert: {} 00000048 00000046\n\
             snp cert data: {}\n\
             snp cert data: {}\n\
             snp cert data: {}\n\
             snp cert: {} 0000008e 00000003\n\
             snp cert data: a5a5a5\n\
             snp cert: end\n",
            hex::encode(guid::VCEK),
            hex::encode(&vcek[..32]),
            hex::encode(&vcek[32..64]),
            hex::encode(&vcek[64..]),
            hex::encode(guid::ARK),
        );
        assert!(text.contains(&want), "want\n{want}\nin\n{text}");
        assert!(text.contains("snp report: end\n"), "{text}");

        // An entry whose bytes lie past the guest's 16 KiB buffer is named,
        // not read.
        table[16..20].copy_from_slice(&0x3FF0u32.to_le_bytes());
        let (text, _, _) = run_report_request_with(Answer::Report, Some(table), false);
        assert!(
            text.contains(&format!(
                "snp cert: {} 00003ff0 00000046\nsnp cert: outside the buffer\n",
                hex::encode(guid::VCEK)
            )),
            "{text}"
        );
        assert!(text.contains("snp report: end\n"), "{text}");
    }

    #[test]
    fn snp_mode_can_make_a_plain_request_without_certificates() {
        use sev_proto::snp::cert_table::{encode, guid, CertEntry};
        if !kvm_available("snp_mode_can_make_a_plain_request_without_certificates") {
            return;
        }
        // A provider is set, but a plain request has no buffer to fill.
        let table = encode(&[CertEntry {
            guid: guid::VCEK,
            data: vec![7; 40],
        }])
        .unwrap();
        let (text, fw, vmpck0) = run_report_request_with(Answer::Report, Some(table), true);
        let mut want = String::from(
            "snp report: requesting a report with the image's report data\n\
             snp report: plain guest request, no certificate table\n",
        );
        for line in fw.report.chunks(32) {
            want.push_str(&format!("snp report: {}\n", hex::encode(line)));
        }
        want.push_str("snp report: end\n");
        assert!(text.contains(&want), "want\n{want}\nin\n{text}");
        assert!(!text.contains("snp cert"), "{text}");
        assert_eq!(vmpck0, fw.vmpck0);
        // Without report data there is nothing to make plain.
        let mut image = build(&DemoOptions::default()).unwrap();
        assert!(matches!(
            set_plain_report_request(&mut image),
            Err(DemoError::NoReportData)
        ));
    }
}
