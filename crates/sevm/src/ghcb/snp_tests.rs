//! The SNP paths of the GHCB host (GHCB registration, page-state changes,
//! page exits through a converted page) against sev-psp's emulated SNP
//! firmware and its RMP model, as sevm's SNP guest context will drive them.

use sev_proto::snp::PageType;
use sev_psp::memory::{GuestBacking, Region, VecBacking};
use sev_psp::snp::{SnpLaunchFinish, SnpLaunchStart, SnpLaunchUpdate, SnpPageState};
use sev_psp::{CreateOptions, Platform};

use super::msr;
use super::page::{self, Ghcb};
use super::*;

/// QEMU's default SNP policy (SMT allowed, bit 17 reserved-one).
const POLICY: u64 = 0x30000;
const GHCB_GPA: u64 = 0x6_1000;

/// The emulated SNP firmware behind the GHCB host: host accesses through
/// its host view (RMP checked), page-state changes through the firmware.
#[derive(Debug)]
struct PspSnp {
    p: Platform,
    handle: u32,
    mem: VecBacking,
}

impl GhcbPlatform for PspSnp {
    fn read_ghcb(&self, gpa: u64, page: &mut [u8; GHCB_LEN]) -> Result<(), PlatformError> {
        self.p
            .snp_host_read(self.handle, &self.mem, gpa, page)
            .map_err(|e| PlatformError(e.to_string()))
    }
    fn write_ghcb(&self, gpa: u64, page: &[u8; GHCB_LEN]) -> Result<(), PlatformError> {
        self.p
            .snp_host_write(self.handle, &self.mem, gpa, page)
            .map_err(|e| PlatformError(e.to_string()))
    }
    fn page_state_change(&self, gpa: u64, to: PageState) -> Result<(), PlatformError> {
        let to = match to {
            PageState::Private => SnpPageState::Private,
            PageState::Shared => SnpPageState::Shared,
        };
        self.p
            .snp_page_state_change(self.handle, &self.mem, gpa, 1, to)
            .map_err(|e| PlatformError(e.to_string()))
    }
}

/// A running SNP guest whose GHCB page was launched as a measured (so
/// private, guest-assigned) page, as an SNP_SEC_MEM page is.
fn running_guest() -> (tempfile::TempDir, Arc<PspSnp>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("platform");
    let opts = CreateOptions {
        ark_bits: 2048,
        ..Default::default()
    };
    Platform::create(&dir, opts, sev_psp::rng::seeded_rng(0x6cb)).unwrap();
    let p = Platform::open(&dir, sev_psp::rng::seeded_rng(0x6cc)).unwrap();
    p.snp_init().unwrap();
    let handle = p.snp_gctx_create().unwrap();
    p.snp_launch_start(handle, &SnpLaunchStart::with_policy(POLICY))
        .unwrap();
    p.snp_activate(handle, 1).unwrap();
    let mem = VecBacking::new(&[Region {
        gpa: 0,
        len: 1 << 20,
    }])
    .unwrap();
    p.snp_launch_update(
        handle,
        &mem,
        &SnpLaunchUpdate::page(PageType::Zero, GHCB_GPA),
    )
    .unwrap();
    p.snp_launch_finish(handle, &SnpLaunchFinish::default())
        .unwrap();
    (tmp, Arc::new(PspSnp { p, handle, mem }))
}

fn ioio_out(byte: u8) -> Ghcb {
    let mut g = Ghcb::default();
    g.set(page::SW_EXIT_CODE, page::EXIT_IOIO);
    g.set(page::SW_EXIT_INFO_1, page::encode_ioio(0x80, false, 1));
    g.set(page::SW_EXIT_INFO_2, 0);
    g.set(page::RAX, u64::from(byte));
    g
}

#[test]
fn an_snp_guest_converts_registers_and_uses_its_ghcb_through_the_rmp_model() {
    let (_tmp, snp) = running_guest();
    let host = GhcbHost::new(SevMode::Snp, 51, snp.clone());
    let mut vcpu = VcpuGhcb::default();
    let bus = IoBus::new();
    let gfn = GHCB_GPA >> 12;
    let wr = |vcpu: &mut VcpuGhcb, v| host.write_msr(vcpu, msr::GHCB_MSR, v, &bus);

    // Registered but still private: the host cannot write its answer into
    // a guest-assigned page (an RMP fault), and KVM would stop the VM.
    assert_eq!(
        wr(&mut vcpu, (gfn << 12) | msr::REG_GPA_REQ),
        Outcome::Continue
    );
    assert_eq!(vcpu.msr(), msr::register_gpa(gfn));
    snp.mem
        .write_plain(GHCB_GPA, &ioio_out(b'a').0[..])
        .unwrap();
    let Outcome::Terminate(msg) = wr(&mut vcpu, GHCB_GPA) else {
        panic!("the host wrote into a private page");
    };
    assert!(msg.contains("cannot write the guest's GHCB"), "{msg}");
    assert!(msg.contains("RMP"), "{msg}");

    // The page-state change to shared goes through the firmware.
    assert_eq!(wr(&mut vcpu, msr::psc_request(gfn, 2)), Outcome::Continue);
    assert_eq!(vcpu.msr(), msr::page_state_change(0));
    // The guest (C-bit clear) writes its request; the host answers in the
    // clear.
    snp.mem
        .write_plain(GHCB_GPA, &ioio_out(b'b').0[..])
        .unwrap();
    assert_eq!(wr(&mut vcpu, GHCB_GPA), Outcome::Continue);
    let mut back = Ghcb::default();
    snp.mem.read_plain(GHCB_GPA, &mut back.0[..]).unwrap();
    assert_eq!(back.valid(page::SW_EXIT_INFO_1), Some(0));
    assert_eq!(host.page_exits(), 2);

    // A page outside guest memory: the firmware refuses, the guest gets
    // the error code; converting back to private works.
    assert_eq!(
        wr(&mut vcpu, msr::psc_request(0x10_0000, 2)),
        Outcome::Continue
    );
    assert_eq!(vcpu.msr(), msr::page_state_change(msr::PSC_ERROR_GENERIC));
    assert_eq!(wr(&mut vcpu, msr::psc_request(gfn, 1)), Outcome::Continue);
    assert_eq!(vcpu.msr(), msr::page_state_change(0));
    let Outcome::Terminate(_) = wr(&mut vcpu, GHCB_GPA) else {
        panic!("the host wrote into a page made private again");
    };
}
