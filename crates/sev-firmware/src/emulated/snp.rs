//! SNP guests on the emulated platform: `sev-psp`'s SNP firmware, with this
//! module playing KVM's part as [`crate::emulated`] does for SEV guests:
//!
//! * the platform is SNP_INITed before the first SNP guest, in the order
//!   Linux uses (SNP_INIT while SEV is UNINIT, then SEV INIT again);
//! * SNP_GCTX_CREATE, SNP_LAUNCH_START, then SNP_ACTIVATE on a free SEV-ES/SNP
//!   ASID, as KVM_SEV_SNP_LAUNCH_START does;
//! * the VMSAs live in the VMSA window outside guest RAM
//!   ([`crate::vmsa_window`]) and are measured at `INITIAL_VMSA_GPA`, the
//!   address KVM gives every VMSA page's RMP entry.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use sev_proto::abi::{PlatformState, Status};
use sev_proto::hash::SHA384_LEN;
use sev_proto::snp::{GuestPolicy, PageType, INITIAL_VMSA_GPA};
use sev_psp::snp::{
    buffers::SnpPlatformState, IdBlockInput, SnpLaunchFinish, SnpLaunchStart, SnpLaunchUpdate,
    SnpPageState,
};
use sev_psp::{FwError, Platform};

use super::{fw_error, EmulatedPlatform, EmulatedView, GuestBackingDebug, ViewState};
use crate::memory::{GuestMemory, HostView};
use crate::snp::{
    check_pages, LaunchUpdateError, SnpFinish, SnpGuestContext, SnpGuestState, SnpGuestStatus,
    SnpLaunchCommands, SNP_PAGE_LEN,
};
use crate::vmsa_window::{vmsa_gpa, VmsaPage, WithVmsaWindow, VMSA_PAGE_LEN, VMSA_WINDOW_GPA};
use crate::SevError;

impl EmulatedPlatform {
    /// SNP_INITs the platform for SNP guests unless SNP is INIT already.
    /// SNP_INIT needs SEV UNINIT: an INIT platform without guests is shut
    /// down first and INITed again afterwards (Linux's order); while SEV
    /// guests run it is refused.
    pub fn init_for_snp_guests(&self) -> Result<(), SevError> {
        let p = self.firmware();
        let snp_init = || -> Result<bool, SevError> {
            let s = p
                .snp_platform_status()
                .map_err(|e| fw_error("SNP_PLATFORM_STATUS", e))?;
            Ok(s.state == SnpPlatformState::Init)
        };
        if snp_init()? {
            return Ok(());
        }
        let sev_state = self.state()?;
        match sev_state {
            PlatformState::Working => {
                return Err(SevError::Platform(format!(
                    "{}: SEV guests are running, so SNP cannot be initialised \
                     (SNP_INIT needs the SEV platform UNINIT): stop them first",
                    self.describe_dir()
                )))
            }
            PlatformState::Init => p.shutdown().map_err(|e| fw_error("SHUTDOWN", e))?,
            PlatformState::Uninit => {}
        }
        if let Err(e) = p.snp_init() {
            // Another process may have done it in between.
            if !snp_init()? {
                return Err(fw_error("SNP_INIT", e));
            }
        }
        if sev_state == PlatformState::Init && self.state()? == PlatformState::Uninit {
            p.init(p.config().es_capable)
                .map_err(|e| fw_error("INIT", e))?;
        }
        Ok(())
    }

    fn describe_dir(&self) -> String {
        format!(
            "the emulated platform in {}",
            self.firmware().dir().display()
        )
    }
}

/// One VM's SNP guest context on the emulated platform.
#[derive(Debug)]
pub struct EmulatedSnpGuest {
    platform: Arc<Platform>,
    /// Guest RAM and the VMSA window after it.
    mem: Arc<dyn GuestBackingDebug>,
    /// 0 until SNP_GCTX_CREATE.
    handle: AtomicU32,
    view: Arc<ViewState>,
}

impl EmulatedSnpGuest {
    /// An SNP guest context of `platform` over `mem` (and the VMSA window
    /// after it); the platform must be SNP INIT
    /// ([`EmulatedPlatform::init_for_snp_guests`]). Fails if `mem` reaches
    /// into the VMSA window.
    pub fn new(platform: Arc<Platform>, mem: Arc<dyn GuestMemory>) -> Result<Self, SevError> {
        let mem: Arc<dyn GuestBackingDebug> =
            Arc::new(WithVmsaWindow::new(mem).map_err(|e| {
                SevError::Platform(format!("guest memory and the VMSA window: {e}"))
            })?);
        let view = Arc::new(ViewState {
            mem: Arc::clone(&mem),
            memory: OnceLock::new(),
        });
        Ok(EmulatedSnpGuest {
            platform,
            mem,
            handle: AtomicU32::new(0),
            view,
        })
    }

    fn handle(&self) -> u32 {
        self.handle.load(Ordering::SeqCst)
    }

    fn on_guest<T>(
        &self,
        command: &'static str,
        f: impl FnOnce(&Platform, u32) -> Result<T, FwError>,
    ) -> Result<T, SevError> {
        f(&self.platform, self.handle()).map_err(|e| fw_error(command, e))
    }

    /// KVM's SNP_ACTIVATE: the lowest SEV-ES/SNP ASID no guest holds, with
    /// the flush first when only ASIDs awaiting one are left (one command).
    fn activate(&self, handle: u32) -> Result<u32, FwError> {
        self.platform.snp_activate_free_asid(handle)
    }
}

impl SnpLaunchCommands for EmulatedSnpGuest {
    fn snp_launch_start(&self, policy: GuestPolicy, gosvw: [u8; 16]) -> Result<u32, SevError> {
        const CMD: &str = "SNP_LAUNCH_START";
        let p = &self.platform;
        let handle = p
            .snp_gctx_create()
            .map_err(|e| fw_error("SNP_GCTX_CREATE", e))?;
        let start = SnpLaunchStart {
            gosvw,
            ..SnpLaunchStart::with_policy(policy.bits())
        };
        let started = p
            .snp_launch_start(handle, &start)
            .map_err(|e| fw_error(CMD, e))
            .and_then(|()| {
                self.activate(handle)
                    .map_err(|e| fw_error("SNP_ACTIVATE", e))
            });
        if let Err(e) = started {
            // As KVM: a guest that does not start is decommissioned.
            let _ = p.snp_decommission(handle);
            return Err(e);
        }
        self.handle.store(handle, Ordering::SeqCst);
        let state = p
            .snp_memory_state(handle, self.mem.as_ref())
            .map_err(|e| fw_error(CMD, e))?;
        let _ = self.view.memory.set(state);
        Ok(handle)
    }

    fn snp_launch_update(
        &self,
        gpa: u64,
        len: u64,
        page_type: PageType,
    ) -> Result<(), LaunchUpdateError> {
        const CMD: &str = "SNP_LAUNCH_UPDATE";
        check_pages(CMD, gpa, len)?;
        let out_of_range = || SevError::OutOfRange {
            command: CMD,
            gpa,
            len,
        };
        if page_type != PageType::Cpuid {
            // One command over the range, as KVM issues it: the platform
            // state is read once, not per page.
            return self
                .platform
                .snp_launch_update_range(self.handle(), self.mem.as_ref(), gpa, len, page_type)
                .map_err(|e| fw_error(CMD, e).into());
        }
        for page in (gpa..gpa + len).step_by(SNP_PAGE_LEN) {
            let mut before = Box::new([0u8; SNP_PAGE_LEN]);
            if page_type == PageType::Cpuid {
                self.mem
                    .read_plain(page, &mut before[..])
                    .map_err(|_| out_of_range())?;
            }
            let update = SnpLaunchUpdate::page(page_type, page);
            let Err(e) = self
                .platform
                .snp_launch_update(self.handle(), self.mem.as_ref(), &update)
            else {
                continue;
            };
            let error = fw_error(CMD, e);
            if page_type == PageType::Cpuid
                && error.status().map(|s| s.0) == Some(Status::InvalidParam.code())
            {
                // The firmware writes the corrected table back, unencrypted.
                let mut corrected = Box::new([0u8; SNP_PAGE_LEN]);
                self.mem
                    .read_plain(page, &mut corrected[..])
                    .map_err(|_| out_of_range())?;
                if corrected != before {
                    return Err(LaunchUpdateError::CpuidRefused { error, corrected });
                }
            }
            return Err(error.into());
        }
        Ok(())
    }

    fn snp_launch_update_vmsas(&self, vmsas: &[VmsaPage]) -> Result<(), SevError> {
        const CMD: &str = "SNP_LAUNCH_UPDATE";
        let too_many = || SevError::OutOfRange {
            command: CMD,
            gpa: VMSA_WINDOW_GPA,
            len: (vmsas.len() * VMSA_PAGE_LEN) as u64,
        };
        for (index, page) in vmsas.iter().enumerate() {
            let gpa = vmsa_gpa(index).ok_or_else(too_many)?;
            self.mem.write_plain(gpa, page).map_err(|_| too_many())?;
            self.on_guest(CMD, |p, h| {
                p.snp_launch_update_vmsa(h, self.mem.as_ref(), gpa, INITIAL_VMSA_GPA)
            })?;
        }
        Ok(())
    }

    fn snp_launch_finish(&self, finish: &SnpFinish<'_>) -> Result<(), SevError> {
        let input = SnpLaunchFinish {
            id: finish.id.map(|(block, auth)| IdBlockInput {
                id_block: block.encode().to_vec(),
                id_auth: auth.encode().to_vec(),
            }),
            auth_key_en: finish.author_key_en,
            vcek_disabled: false,
            host_data: finish.host_data,
        };
        self.on_guest("SNP_LAUNCH_FINISH", |p, h| p.snp_launch_finish(h, &input))
    }

    fn snp_guest_status(&self) -> Result<SnpGuestStatus, SevError> {
        let s = self.on_guest("SNP_GUEST_STATUS", |p, h| p.snp_guest_status(h))?;
        Ok(SnpGuestStatus {
            handle: self.handle(),
            policy: GuestPolicy::new(s.policy).ok(),
            asid: s.asid,
            state: match s.state {
                sev_psp::snp::SnpGuestState::Init => SnpGuestState::Init,
                sev_psp::snp::SnpGuestState::Launch => SnpGuestState::Launch,
                sev_psp::snp::SnpGuestState::Running => SnpGuestState::Running,
            },
        })
    }

    fn snp_launch_digest(&self) -> Result<[u8; SHA384_LEN], SevError> {
        self.on_guest("SNP launch digest", |p, h| p.snp_launch_digest(h))
    }

    fn snp_page_state_change(&self, gpa: u64, pages: u64, private: bool) -> Result<(), SevError> {
        let to = if private {
            SnpPageState::Private
        } else {
            SnpPageState::Shared
        };
        self.on_guest("page-state change", |p, h| {
            p.snp_page_state_change(h, self.mem.as_ref(), gpa, pages, to)
        })
    }

    fn snp_guest_request(
        &self,
        request: &[u8; SNP_PAGE_LEN],
    ) -> Result<Box<[u8; SNP_PAGE_LEN]>, SevError> {
        self.on_guest("SNP_GUEST_REQUEST", |p, h| p.snp_guest_request(h, request))
    }
}

impl SnpGuestContext for EmulatedSnpGuest {
    fn host_view(&self) -> Arc<dyn HostView> {
        Arc::new(EmulatedView(Arc::clone(&self.view)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{GuestBacking, Region};
    use crate::test_memory::TestMemory;
    use crate::{PlatformManagement, SevPlatform};
    use sev_proto::abi::StatusCode;
    use sev_proto::snp::guest_msg::{
        self, MessageHeader, MessageType, ReportRequest, ReportResponse,
    };
    use sev_proto::snp::report::AttestationReport;
    use sev_proto::snp::LaunchDigest;
    use sev_psp::memory::VecBacking;
    use sev_psp::CreateOptions;

    const QEMU_POLICY: u64 = 0x30000;

    fn platform(dir: &std::path::Path) -> EmulatedPlatform {
        let opts = CreateOptions {
            ark_bits: 2048,
            ..Default::default()
        };
        let p = Platform::create(dir, opts, sev_psp::rng::seeded_rng(5)).unwrap();
        EmulatedPlatform::from_firmware(p)
    }

    fn memory() -> Arc<TestMemory> {
        Arc::new(TestMemory(
            VecBacking::new(&[Region {
                gpa: 0,
                len: 1 << 20,
            }])
            .unwrap(),
        ))
    }

    fn vm() -> std::fs::File {
        std::fs::File::open("/dev/null").unwrap()
    }

    fn cpuid_page(leaf1_eax: u32) -> [u8; SNP_PAGE_LEN] {
        let mut page = [0u8; SNP_PAGE_LEN];
        page[0] = 1;
        let e = 16;
        page[e..e + 4].copy_from_slice(&1u32.to_le_bytes());
        page[e + 0x18..e + 0x1c].copy_from_slice(&leaf1_eax.to_le_bytes());
        page
    }

    #[test]
    fn snp_launch_measures_pages_and_vmsas_as_kvm_launches_them() {
        use std::os::fd::AsFd;
        let tmp = tempfile::tempdir().unwrap();
        let p = platform(&tmp.path().join("p"));
        // An SEV-INIT platform is SNP_INITed and INITed again.
        p.init_for_guests().unwrap();
        let ram = memory();
        let file = vm();
        let g = p.attach_snp(file.as_fd(), ram.clone()).unwrap();
        assert_eq!(p.status().unwrap().state(), Some(PlatformState::Init));
        let policy = GuestPolicy::new(QEMU_POLICY).unwrap();
        let handle = g.snp_launch_start(policy, [7; 16]).unwrap();
        assert!(handle > 0);
        let mut expected = LaunchDigest::new();

        ram.write_plain(0x2000, &[0xab; 0x2000]).unwrap();
        g.snp_launch_update(0x2000, 0x2000, PageType::Normal)
            .unwrap();
        expected
            .add_region(PageType::Normal, 0x2000, &[0xab; 0x2000])
            .unwrap();
        g.snp_launch_update(0x8000, 0x1000, PageType::Zero).unwrap();
        expected.add_page(PageType::Zero, 0x8000, &[0; SNP_PAGE_LEN]);
        g.snp_launch_update(0x9000, 0x1000, PageType::Secrets)
            .unwrap();
        expected.add_page(PageType::Secrets, 0x9000, &[0; SNP_PAGE_LEN]);

        // A wrong CPUID entry: refused with the corrected table, digest
        // unchanged; the retry with it is accepted.
        ram.write_plain(0xa000, &cpuid_page(0x1234)).unwrap();
        let before = g.snp_launch_digest().unwrap();
        let corrected = match g.snp_launch_update(0xa000, 0x1000, PageType::Cpuid) {
            Err(LaunchUpdateError::CpuidRefused { error, corrected }) => {
                assert_eq!(
                    error.status(),
                    Some(StatusCode(Status::InvalidParam.code()))
                );
                corrected
            }
            other => panic!("{other:?}"),
        };
        assert_ne!(*corrected, cpuid_page(0x1234));
        assert_eq!(g.snp_launch_digest().unwrap(), before);
        ram.write_plain(0xa000, &corrected[..]).unwrap();
        g.snp_launch_update(0xa000, 0x1000, PageType::Cpuid)
            .unwrap();
        expected.add_page(PageType::Cpuid, 0xa000, &[0; SNP_PAGE_LEN]);

        // A page launched twice is the firmware's INVALID_PAGE_STATE.
        let e = g
            .snp_launch_update(0x2000, 0x1000, PageType::Normal)
            .unwrap_err();
        assert!(
            matches!(e, LaunchUpdateError::Sev(SevError::Firmware { .. })),
            "{e}"
        );
        // Not whole pages.
        assert!(g
            .snp_launch_update(0x2001, 0x1000, PageType::Normal)
            .is_err());

        // Two VMSAs, both measured at INITIAL_VMSA_GPA.
        let vmsas = [[0x11u8; VMSA_PAGE_LEN], [0x22u8; VMSA_PAGE_LEN]];
        g.snp_launch_update_vmsas(&vmsas).unwrap();
        for v in &vmsas {
            expected.add_page(PageType::Vmsa, INITIAL_VMSA_GPA, v);
        }
        assert_eq!(&g.snp_launch_digest().unwrap(), expected.bytes());

        // The host may not write a launched page.
        let view = g.host_view();
        assert!(view.write(0x2000, b"x").is_err());
        view.write(0x20000, b"shared").unwrap();

        let s = g.snp_guest_status().unwrap();
        assert_eq!(s.state, SnpGuestState::Launch);
        assert_eq!(s.policy, Some(policy));
        assert_eq!(s.handle, handle);
        assert!(s.asid > 0);
        g.snp_launch_finish(&SnpFinish {
            host_data: [9; 32],
            ..SnpFinish::default()
        })
        .unwrap();
        assert_eq!(g.snp_guest_status().unwrap().state, SnpGuestState::Running);

        // The guest asks for a report under VMPCK0 (read from its secrets
        // page); the answer carries the launch digest and host data.
        let mut secrets = [0u8; SNP_PAGE_LEN];
        ram.read_plain(0x9000, &mut secrets).unwrap();
        let vmpck: [u8; 32] = secrets[0x20..0x40].try_into().unwrap();
        let request = |seqno: u64| {
            let header = MessageHeader::new(MessageType::REPORT_REQ, 1, 0x60, 0, seqno);
            let msg =
                guest_msg::seal(&vmpck, &header, &ReportRequest::new([4; 64], 0).encode()).unwrap();
            let mut page = [0u8; SNP_PAGE_LEN];
            page[..msg.len()].copy_from_slice(&msg);
            page
        };
        let response = g.snp_guest_request(&request(1)).unwrap();
        let header = MessageHeader::decode(&response[..]).unwrap();
        assert_eq!(
            (header.msg_type, header.seqno),
            (MessageType::REPORT_RSP, 2)
        );
        let payload = guest_msg::open(&vmpck, &header, &response[..]).unwrap();
        let report = ReportResponse::decode(&payload).unwrap();
        assert_eq!(report.status, 0);
        let report = AttestationReport::decode(&report.report[..]).unwrap();
        assert_eq!(&report.measurement, expected.bytes());
        assert_eq!(report.host_data, [9; 32]);
        assert_eq!(report.report_data, [4; 64]);
        // A replay is the firmware's AEAD_OFLOW, which the VMM passes on.
        let e = g.snp_guest_request(&request(1)).unwrap_err();
        assert_eq!(e.status(), Some(StatusCode(Status::AeadOflow.code())));

        // Pages change state only at the guest's request.
        g.snp_page_state_change(0x20000, 1, true).unwrap();
        assert!(view.write(0x20000, b"x").is_err());
        g.snp_page_state_change(0x20000, 1, false).unwrap();
        view.write(0x20000, b"x").unwrap();
    }

    #[test]
    fn a_second_snp_guest_takes_another_asid_and_bad_policies_are_refused() {
        use std::os::fd::AsFd;
        let tmp = tempfile::tempdir().unwrap();
        let p = platform(&tmp.path().join("p"));
        let file = vm();
        let a = p.attach_snp(file.as_fd(), memory()).unwrap();
        let b = p.attach_snp(file.as_fd(), memory()).unwrap();
        let policy = GuestPolicy::new(QEMU_POLICY).unwrap();
        a.snp_launch_start(policy, [0; 16]).unwrap();
        b.snp_launch_start(policy, [0; 16]).unwrap();
        let (sa, sb) = (a.snp_guest_status().unwrap(), b.snp_guest_status().unwrap());
        assert_ne!(sa.asid, sb.asid);
        assert_ne!(sa.handle, sb.handle);
        // An ABI minimum the firmware does not meet: POLICY_FAILURE.
        let c = p.attach_snp(file.as_fd(), memory()).unwrap();
        let e = c
            .snp_launch_start(GuestPolicy::new(QEMU_POLICY | 0xff00).unwrap(), [0; 16])
            .unwrap_err();
        assert_eq!(e.status(), Some(StatusCode(Status::PolicyFailure.code())));
    }

    #[test]
    fn the_emulated_vcek_chain_verifies_and_its_vcek_signs_the_reports() {
        use sev_proto::snp::cert::Certificate;
        use sev_proto::snp::chain::{Chain, Trust};
        let tmp = tempfile::tempdir().unwrap();
        let p = platform(&tmp.path().join("p"));
        let chain = p.snp_vcek_chain().unwrap().unwrap();
        let chain = Chain {
            ark: Certificate::from_der(&chain.ark).unwrap(),
            ask: Certificate::from_der(&chain.ask).unwrap(),
            vek: Certificate::from_der(&chain.vcek).unwrap(),
        };
        let verified = chain
            .verify(
                Trust::Explicit(&chain.ark),
                None,
                std::time::SystemTime::now(),
            )
            .unwrap();
        // The VCEK is the one of the reported TCB, the key reports are signed with.
        let signer = p.firmware().snp_vcek_public(None).unwrap();
        assert_eq!(verified.key, signer);
    }
}
