use std::collections::HashMap;
use std::sync::Mutex;

use super::msr::{self, CpuidReg};
use super::page::{self, Ghcb};
use super::*;
use crate::devices::debug_exit::{DebugExit, DEBUG_EXIT_PORT};
use crate::devices::serial::{CaptureBuffer, Serial, SerialOutput, COM1_BASE, PORT_COUNT};

/// GHCB pages in a map; page-state changes recorded.
#[derive(Debug, Default)]
struct FakePlatform {
    pages: Mutex<HashMap<u64, Box<[u8; GHCB_LEN]>>>,
    changes: Mutex<Vec<(u64, PageState)>>,
    refuse_psc: bool,
}

impl GhcbPlatform for FakePlatform {
    fn read_ghcb(&self, gpa: u64, page: &mut [u8; GHCB_LEN]) -> Result<(), PlatformError> {
        let pages = self.pages.lock().unwrap();
        let p = pages
            .get(&gpa)
            .ok_or_else(|| PlatformError(format!("no page at {gpa:#x}")))?;
        page.copy_from_slice(&p[..]);
        Ok(())
    }
    fn write_ghcb(&self, gpa: u64, page: &[u8; GHCB_LEN]) -> Result<(), PlatformError> {
        self.pages.lock().unwrap().insert(gpa, Box::new(*page));
        Ok(())
    }
    fn page_state_change(&self, gpa: u64, to: PageState) -> Result<(), PlatformError> {
        if self.refuse_psc {
            return Err(PlatformError("refused".into()));
        }
        self.changes.lock().unwrap().push((gpa, to));
        Ok(())
    }
}

const GHCB_GPA: u64 = 0x9000;

struct Rig {
    host: GhcbHost,
    platform: Arc<FakePlatform>,
    vcpu: VcpuGhcb,
    bus: IoBus,
    out: CaptureBuffer,
}

fn rig_with(mode: SevMode, platform: FakePlatform) -> Rig {
    let platform = Arc::new(platform);
    let out = CaptureBuffer::new();
    let mut bus = IoBus::new();
    bus.register(
        COM1_BASE,
        PORT_COUNT,
        Arc::new(Mutex::new(Serial::new(SerialOutput::Capture(out.clone())))),
    )
    .unwrap();
    bus.register(DEBUG_EXIT_PORT, 1, Arc::new(Mutex::new(DebugExit)))
        .unwrap();
    let cpuid = vec![
        CpuidLeaf {
            leaf: 0,
            regs: [0x10, 0x6874_7541, 0x444D_4163, 0x6974_6E65],
        },
        CpuidLeaf {
            leaf: 0x8000_001F,
            regs: [mode.cpuid_eax(), 51 | (1 << 6), 0, 0],
        },
    ];
    Rig {
        host: GhcbHost::new(mode, 51, platform.clone()),
        platform,
        vcpu: VcpuGhcb::new(cpuid),
        bus,
        out,
    }
}

fn rig(mode: SevMode) -> Rig {
    rig_with(mode, FakePlatform::default())
}

impl Rig {
    fn wr(&mut self, value: u64) -> Outcome {
        self.host
            .write_msr(&mut self.vcpu, msr::GHCB_MSR, value, &self.bus)
    }
    fn rd(&self) -> u64 {
        self.host.read_msr(&self.vcpu, msr::GHCB_MSR).unwrap()
    }
    fn put(&self, g: &Ghcb) {
        self.platform
            .pages
            .lock()
            .unwrap()
            .insert(GHCB_GPA, g.0.clone());
    }
    fn get(&self) -> Ghcb {
        Ghcb(self.platform.pages.lock().unwrap()[&GHCB_GPA].clone())
    }
    fn exit(&mut self, g: &Ghcb) -> (Outcome, Ghcb) {
        self.put(g);
        let o = self.wr(GHCB_GPA);
        (o, self.get())
    }
}

fn ioio_out(port: u16, byte: u8) -> Ghcb {
    let mut g = Ghcb::default();
    g.set(page::SW_EXIT_CODE, page::EXIT_IOIO);
    g.set(page::SW_EXIT_INFO_1, page::encode_ioio(port, false, 1));
    g.set(page::SW_EXIT_INFO_2, 0);
    g.set(page::RAX, u64::from(byte));
    g
}

#[test]
fn sev_status_reports_the_mode_and_is_read_only() {
    for (mode, bits) in [(SevMode::Sev, 1), (SevMode::SevEs, 3), (SevMode::Snp, 7)] {
        let mut r = rig(mode);
        assert_eq!(r.host.read_msr(&r.vcpu, msr::SEV_STATUS_MSR), Some(bits));
        let o = r
            .host
            .write_msr(&mut r.vcpu, msr::SEV_STATUS_MSR, 0, &r.bus);
        assert_eq!(o, Outcome::Fault);
        assert_eq!(r.host.read_msr(&r.vcpu, 0x10), None);
    }
    // A plain SEV guest has no GHCB MSR.
    let mut r = rig(SevMode::Sev);
    assert_eq!(r.host.read_msr(&r.vcpu, msr::GHCB_MSR), None);
    assert_eq!(r.wr(msr::SEV_INFO_REQ), Outcome::Fault);
}

#[test]
fn sev_info_cpuid_and_hv_features_are_answered() {
    let mut r = rig(SevMode::SevEs);
    assert_eq!(r.wr(msr::SEV_INFO_REQ), Outcome::Continue);
    assert_eq!(r.rd(), msr::sev_info(51));
    assert_eq!(r.rd() >> 48, 2);
    assert_eq!((r.rd() >> 24) & 0xFF, 51);
    r.wr(msr::cpuid_request(0, CpuidReg::Ebx));
    assert_eq!(r.rd(), msr::cpuid(CpuidReg::Ebx, 0x6874_7541));
    r.wr(msr::cpuid_request(0x8000_001F, CpuidReg::Eax));
    assert_eq!(r.rd() >> 32, 0xA);
    // An unknown leaf reads as zeros.
    r.wr(msr::cpuid_request(0x4000_0100, CpuidReg::Edx));
    assert_eq!(r.rd(), msr::cpuid(CpuidReg::Edx, 0));
    r.wr(msr::HV_FT_REQ);
    assert_eq!(r.rd(), msr::HV_FT_RESP);
    let mut s = rig(SevMode::Snp);
    s.wr(msr::HV_FT_REQ);
    assert_eq!(s.rd(), 0x3081);
}

#[test]
fn unknown_requests_leave_the_msr_as_written() {
    let mut r = rig(SevMode::SevEs);
    for v in [0x003, 0x006, 0x010, 0xFFF, 0xABCD_0000_0000_0777] {
        assert_eq!(r.wr(v), Outcome::Continue);
        assert_eq!(r.rd(), v);
    }
}

#[test]
fn termination_names_the_reason() {
    let mut r = rig(SevMode::SevEs);
    let Outcome::Terminate(msg) = r.wr(msr::terminate(1, 4)) else {
        panic!("not terminated");
    };
    assert!(msg.contains("reason set 1, code 4"), "{msg}");
    assert!(msg.contains("CPUID table"), "{msg}");
    let Outcome::Terminate(msg) = r.wr(msr::terminate(7, 200)) else {
        panic!("not terminated");
    };
    assert!(
        msg.contains("reason set 7, code 200 (unknown reason)"),
        "{msg}"
    );
}

#[test]
fn snp_only_requests_terminate_an_es_guest() {
    let mut r = rig(SevMode::SevEs);
    for v in [(0x9 << 12) | msr::REG_GPA_REQ, msr::psc_request(9, 2)] {
        let Outcome::Terminate(msg) = r.wr(v) else {
            panic!("{v:#x} not refused");
        };
        assert!(msg.contains("SNP-only"), "{msg}");
    }
    assert!(r.platform.changes.lock().unwrap().is_empty());
}

#[test]
fn snp_registration_and_page_state_changes() {
    let mut r = rig(SevMode::Snp);
    r.wr((9 << 12) | msr::REG_GPA_REQ);
    assert_eq!(r.rd(), 0x9013);
    r.wr(msr::psc_request(9, 2));
    assert_eq!(r.rd(), msr::page_state_change(0));
    r.wr(msr::psc_request(0x10, 1));
    assert_eq!(r.rd(), 0x15);
    assert_eq!(
        *r.platform.changes.lock().unwrap(),
        vec![(0x9000, PageState::Shared), (0x10000, PageState::Private)]
    );
    // Operations other than private/shared, and platform refusals.
    for op in [0, 3, 4, 15] {
        r.wr(msr::psc_request(9, op));
        assert_eq!(r.rd(), msr::page_state_change(msr::PSC_ERROR_GENERIC));
    }
    assert_eq!(r.platform.changes.lock().unwrap().len(), 2);
    let mut refusing = rig_with(
        SevMode::Snp,
        FakePlatform {
            refuse_psc: true,
            ..Default::default()
        },
    );
    refusing.wr(msr::psc_request(9, 2));
    assert_eq!(refusing.rd(), 0x1_0000_0015);
}

#[test]
fn snp_ghcb_exits_need_the_registered_page() {
    let mut r = rig(SevMode::Snp);
    r.put(&ioio_out(COM1_BASE, b'x'));
    let Outcome::Terminate(msg) = r.wr(GHCB_GPA) else {
        panic!("unregistered GHCB accepted");
    };
    assert!(msg.contains("did not register"), "{msg}");
    r.wr(((GHCB_GPA >> 12) << 12) | msr::REG_GPA_REQ);
    assert_eq!(r.wr(GHCB_GPA), Outcome::Continue);
    assert_eq!(r.get().valid(page::SW_EXIT_INFO_1), Some(0));
}

#[test]
fn ioio_reaches_the_serial_port_and_the_debug_exit() {
    let mut r = rig(SevMode::SevEs);
    for b in b"hi\n" {
        let (o, g) = r.exit(&ioio_out(COM1_BASE, *b));
        assert_eq!(o, Outcome::Continue);
        assert_eq!(g.valid(page::SW_EXIT_INFO_1), Some(0));
        assert_eq!(g.valid(page::RAX), None, "valid bitmap cleared");
    }
    assert_eq!(r.out.text(), "hi\n");
    // IN from the line status register: transmitter empty.
    let mut g = Ghcb::default();
    g.set(page::SW_EXIT_CODE, page::EXIT_IOIO);
    g.set(
        page::SW_EXIT_INFO_1,
        page::encode_ioio(COM1_BASE + 5, true, 1),
    );
    g.set(page::SW_EXIT_INFO_2, 0);
    let (o, g) = r.exit(&g);
    assert_eq!(o, Outcome::Continue);
    assert_eq!(g.valid(page::RAX).map(|v| v & 0x20), Some(0x20));
    let (o, _) = r.exit(&ioio_out(DEBUG_EXIT_PORT, 5));
    assert_eq!(o, Outcome::Exit(5));
    assert_eq!(r.rd(), GHCB_GPA);
}

#[test]
fn string_output_comes_from_the_shared_buffer() {
    let mut r = rig(SevMode::SevEs);
    let mut g = Ghcb::default();
    g.0[page::SHARED_BUFFER..page::SHARED_BUFFER + 6].copy_from_slice(b"hello\n");
    g.set(page::SW_EXIT_CODE, page::EXIT_IOIO);
    g.set(
        page::SW_EXIT_INFO_1,
        page::encode_ioio(COM1_BASE, false, 1) | page::IOIO_STRING | page::IOIO_REP,
    );
    g.set(page::SW_EXIT_INFO_2, 6);
    g.set(page::SW_SCRATCH, GHCB_GPA + page::SHARED_BUFFER as u64);
    let (o, g) = r.exit(&g);
    assert_eq!(o, Outcome::Continue);
    assert_eq!(g.valid(page::SW_EXIT_INFO_1), Some(0));
    assert_eq!(r.out.text(), "hello\n");
}

#[test]
fn cpuid_exit_fills_four_registers() {
    let mut r = rig(SevMode::SevEs);
    let mut g = Ghcb::default();
    g.set(page::SW_EXIT_CODE, page::EXIT_CPUID);
    g.set(page::SW_EXIT_INFO_1, 0);
    g.set(page::SW_EXIT_INFO_2, 0);
    g.set(page::RAX, 0x8000_001F);
    g.set(page::RCX, 0);
    let (_, g) = r.exit(&g);
    assert_eq!(g.valid(page::RAX), Some(0xA));
    assert_eq!(g.valid(page::RBX), Some(51 | 64));
    assert_eq!(g.valid(page::RDX), Some(0));
}

#[test]
fn malformed_ghcbs_are_answered_as_kvm_answers_them() {
    let mut r = rig(SevMode::SevEs);
    let error = |g: &Ghcb| (g.valid(page::SW_EXIT_INFO_1), g.valid(page::SW_EXIT_INFO_2));
    // Non-zero usage.
    let mut g = ioio_out(COM1_BASE, b'a');
    g.set_usage(1);
    assert_eq!(
        error(&r.exit(&g).1),
        (Some(2), Some(page::ERR_INVALID_USAGE))
    );
    // Missing exit code / exit info.
    for missing in [
        page::SW_EXIT_CODE,
        page::SW_EXIT_INFO_1,
        page::SW_EXIT_INFO_2,
    ] {
        let mut g = ioio_out(COM1_BASE, b'a');
        let bit = missing / 8;
        g.0[page::VALID_BITMAP + bit / 8] &= !(1 << (bit % 8));
        assert_eq!(
            error(&r.exit(&g).1),
            (Some(2), Some(page::ERR_MISSING_INPUT))
        );
    }
    // OUT without RAX.
    let mut g = ioio_out(COM1_BASE, b'a');
    let bit = page::RAX / 8;
    g.0[page::VALID_BITMAP + bit / 8] &= !(1 << (bit % 8));
    assert_eq!(
        error(&r.exit(&g).1),
        (Some(2), Some(page::ERR_MISSING_INPUT))
    );
    // A bad size.
    let mut g = ioio_out(COM1_BASE, b'a');
    g.set(page::SW_EXIT_INFO_1, 0x03F8_0000);
    assert_eq!(
        error(&r.exit(&g).1),
        (Some(2), Some(page::ERR_INVALID_INPUT))
    );
    // String IOIO without SW_SCRATCH, with a scratch area outside the
    // shared buffer, and string input.
    let mut g = ioio_out(COM1_BASE, b'a');
    g.set(page::SW_EXIT_INFO_1, 0x03F8_0014);
    assert_eq!(
        error(&r.exit(&g).1),
        (Some(2), Some(page::ERR_MISSING_INPUT))
    );
    for (info, scratch) in [
        (0x03F8_0014, GHCB_GPA + 0x100),
        (0x03F8_0014, GHCB_GPA + 0x1000),
        (0x03F8_0015, GHCB_GPA + 0x800),
    ] {
        let mut g = ioio_out(COM1_BASE, b'a');
        g.set(page::SW_EXIT_INFO_1, info);
        g.set(page::SW_SCRATCH, scratch);
        assert_eq!(
            error(&r.exit(&g).1),
            (Some(2), Some(page::ERR_INVALID_INPUT)),
            "{info:#x} at {scratch:#x}"
        );
    }
    // CPUID without RCX.
    let mut g = Ghcb::default();
    g.set(page::SW_EXIT_CODE, page::EXIT_CPUID);
    g.set(page::SW_EXIT_INFO_1, 0);
    g.set(page::SW_EXIT_INFO_2, 0);
    g.set(page::RAX, 0);
    assert_eq!(
        error(&r.exit(&g).1),
        (Some(2), Some(page::ERR_MISSING_INPUT))
    );
    // Unknown exit codes.
    for code in [0x81, 0x8000_0011, u64::MAX] {
        let mut g = ioio_out(COM1_BASE, b'a');
        g.set(page::SW_EXIT_CODE, code);
        assert_eq!(
            error(&r.exit(&g).1),
            (Some(2), Some(page::ERR_INVALID_EVENT))
        );
    }
    assert_eq!(r.out.text(), "", "nothing refused reached the port");
    // Termination through the GHCB page.
    let mut g = Ghcb::default();
    g.set(page::SW_EXIT_CODE, page::EXIT_TERMINATE);
    g.set(page::SW_EXIT_INFO_1, msr::terminate(0, 1));
    g.set(page::SW_EXIT_INFO_2, 0);
    let Outcome::Terminate(msg) = r.exit(&g).0 else {
        panic!("not terminated");
    };
    assert!(msg.contains("reason set 0, code 1"), "{msg}");
    // A GHCB the platform cannot read.
    let Outcome::Terminate(msg) = r.wr(0x7000) else {
        panic!("unreadable GHCB accepted");
    };
    assert!(msg.contains("0x7000"), "{msg}");
}

#[test]
fn shared_page_platform_reads_what_the_guest_wrote_and_refuses_psc() {
    let ram = Arc::new(GuestRam::new(1 << 20, 64 << 10).unwrap());
    ram.write_plain(Gpa(0x5000), b"ghcb").unwrap();
    let p = SharedGhcbPage::new(ram.clone());
    let mut page = [0u8; GHCB_LEN];
    p.read_ghcb(0x5000, &mut page).unwrap();
    assert_eq!(&page[..4], b"ghcb");
    page[0] = b'G';
    p.write_ghcb(0x5000, &page).unwrap();
    let mut back = [0u8; 4];
    ram.read_plain(Gpa(0x5000), &mut back).unwrap();
    assert_eq!(&back, b"Ghcb");
    assert!(p.read_ghcb(1 << 20, &mut page).is_err());
    assert!(p.page_state_change(0x5000, PageState::Shared).is_err());
}
