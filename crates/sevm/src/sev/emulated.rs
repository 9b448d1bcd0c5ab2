//! The emulated SEV platform: sevm's software AMD Secure Processor
//! (`sev-psp`) with the VMM's [`GuestRam`] as its guest backing.
//!
//! The emulator keeps the guest's plaintext in the mapping KVM runs the
//! guest from; the VMM's host view goes through the emulator's
//! memory-encryption model ([`EmulatedView`]): private pages read as
//! ciphertext under the guest's key, and writes to them decrypt to garbage
//! in the guest, as on hardware.
//!
//! Opening the platform plays the part of the Linux driver and KVM: the
//! platform is INITed unless another process did already (with SEV-ES when
//! it is capable, as Linux does), and LAUNCH_START / RECEIVE_START are
//! followed by ACTIVATE with a free ASID of the right range, as
//! `KVM_SEV_LAUNCH_START` does. The platform is one per state directory:
//! every sevm and tool on it sees the same guests, handles and ASIDs. DBG_DECRYPT/DBG_ENCRYPT get
//! KVM's bouncing: any alignment is accepted here and turned into the
//! firmware's 16-byte aligned accesses.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use sev_proto::abi::{Policy, StatusCode, ATTESTATION_REPORT_LEN, PACKET_HEADER_LEN, SESSION_LEN};
use sev_psp::memory::{GuestBacking, MemoryState, OutOfRange as PspOutOfRange, Region};
use sev_psp::{FwError, Platform};

use super::{EncryptionParams, GuestInfo, PlatformInfo, SevBackend, SevError, SevPlatform};
use crate::machine::{Machine, PreVcpuHook};
use crate::memory::{AccessError, Gpa, GuestRam, MemoryView};

/// Maps an emulated-firmware error of `command` to a [`SevError`].
fn fw_error(command: &'static str, e: FwError) -> SevError {
    let mut detail = e.detail;
    if let Some(r) = e.required_len {
        detail.push_str(&format!("; required length {r}"));
    }
    SevError::Firmware {
        command,
        status: StatusCode(e.status.code()),
        detail,
    }
}

fn u32_len(command: &'static str, gpa: Gpa, len: u64) -> Result<u32, SevError> {
    u32::try_from(len).map_err(|_| SevError::OutOfRange {
        command,
        gpa: gpa.raw(),
        len,
    })
}

/// The VMM's guest memory as the emulated firmware's backing.
#[derive(Debug, Clone)]
pub struct RamBacking(Arc<GuestRam>);

impl RamBacking {
    /// Adapts `ram`.
    pub fn new(ram: Arc<GuestRam>) -> Self {
        RamBacking(ram)
    }
}

impl GuestBacking for RamBacking {
    fn regions(&self) -> Vec<Region> {
        // `GuestRam` lists RAM (at 0) before the firmware (ending at 4 GiB):
        // sorted and disjoint, as the trait requires.
        self.0
            .regions()
            .into_iter()
            .map(|(gpa, len)| Region {
                gpa: gpa.raw(),
                len,
            })
            .collect()
    }

    fn read_plain(&self, gpa: u64, buf: &mut [u8]) -> Result<(), PspOutOfRange> {
        self.0.read_plain(Gpa(gpa), buf).map_err(|e| PspOutOfRange {
            gpa: e.gpa,
            len: e.len,
        })
    }

    fn write_plain(&self, gpa: u64, data: &[u8]) -> Result<(), PspOutOfRange> {
        self.0
            .write_plain(Gpa(gpa), data)
            .map_err(|e| PspOutOfRange {
                gpa: e.gpa,
                len: e.len,
            })
    }
}

/// The emulated AMD Secure Processor of one platform directory.
#[derive(Debug)]
pub struct EmulatedPlatform {
    platform: Arc<Platform>,
    dir: PathBuf,
}

impl EmulatedPlatform {
    /// Opens the platform state directory (it must exist: `sev-platform
    /// init DIR`) and INITs the platform unless it is INIT or WORKING
    /// already (another VM or tool on the same platform), as the Linux
    /// driver does.
    pub fn open(dir: &Path) -> Result<Self, SevError> {
        let platform = Platform::open(dir, sev_psp::rng::os_rng()).map_err(|e| {
            SevError::Platform(format!(
                "cannot open the emulated SEV platform: {}",
                super::hardware::error_chain(&e)
            ))
        })?;
        let es = platform.config().es_capable;
        let uninit = |p: &Platform| {
            p.platform_status()
                .map(|s| s.state == sev_proto::abi::PlatformState::Uninit)
                .map_err(|e| fw_error("PLATFORM_STATUS", e))
        };
        if uninit(&platform)? {
            if let Err(e) = platform.init(es) {
                // Another process may have INITed it in between.
                if uninit(&platform)? {
                    return Err(fw_error("INIT", e));
                }
            }
        }
        Ok(EmulatedPlatform {
            platform: Arc::new(platform),
            dir: dir.to_path_buf(),
        })
    }

    /// The underlying emulated firmware.
    pub fn firmware(&self) -> &Arc<Platform> {
        &self.platform
    }
}

impl SevPlatform for EmulatedPlatform {
    fn is_emulated(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("the EMULATED SEV platform in {}", self.dir.display())
    }

    fn status(&self) -> Result<PlatformInfo, SevError> {
        let s = self
            .platform
            .platform_status()
            .map_err(|e| fw_error("PLATFORM_STATUS", e))?;
        Ok(PlatformInfo {
            api_major: s.api.major,
            api_minor: s.api.minor,
            build: s.build,
            es_capable: s.es_enabled,
        })
    }

    fn pdh_cert_export(&self) -> Result<(Vec<u8>, Vec<u8>), SevError> {
        let mut pdh = vec![0u8; sev_proto::abi::SEV_CERT_LEN];
        let mut chain = vec![0u8; sev_proto::abi::PLATFORM_CHAIN_LEN];
        let (p, c) = self
            .platform
            .pdh_cert_export(&mut pdh, &mut chain)
            .map_err(|e| fw_error("PDH_CERT_EXPORT", e))?;
        pdh.truncate(p);
        chain.truncate(c);
        Ok((pdh, chain))
    }

    fn get_id(&self) -> Result<Vec<u8>, SevError> {
        let mut id = vec![0u8; sev_proto::abi::GET_ID_LEN];
        let n = self
            .platform
            .get_id(&mut id)
            .map_err(|e| fw_error("GET_ID", e))?;
        id.truncate(n);
        Ok(id)
    }

    fn encryption_params(&self) -> Result<EncryptionParams, SevError> {
        let c = self.platform.config();
        Ok(EncryptionParams {
            cbitpos: c.cbitpos,
            reduced_phys_bits: c.reduced_phys_bits,
        })
    }

    fn amd_chain(&self) -> Option<Vec<u8>> {
        let (ask, ark) = self.platform.amd_chain();
        Some([ask, ark].concat())
    }

    fn pre_vcpu_hook(&self, _es: bool) -> Option<PreVcpuHook> {
        None
    }

    /// `_es` needs no handling here: the guest's policy picks its ASID
    /// range at ACTIVATE.
    fn attach(&self, machine: &Machine, _es: bool) -> Result<Arc<dyn SevBackend>, SevError> {
        let mem = Arc::new(RamBacking::new(Arc::clone(machine.guest_memory())));
        let shared = Arc::new(ViewState {
            mem: Arc::clone(&mem),
            memory: OnceLock::new(),
        });
        Ok(Arc::new(EmulatedBackend {
            platform: Arc::clone(&self.platform),
            mem,
            handle: AtomicU32::new(0),
            view: shared,
        }))
    }
}

/// What the host view needs: the guest's memory-encryption state once the
/// guest exists.
#[derive(Debug)]
struct ViewState {
    mem: Arc<RamBacking>,
    memory: OnceLock<Arc<MemoryState>>,
}

/// The host view of an emulated SEV guest's memory. Before LAUNCH_START
/// there is no guest key and every page is shared (plain).
#[derive(Debug, Clone)]
pub struct EmulatedView(Arc<ViewState>);

fn view_error(gpa: Gpa, e: impl std::error::Error + Send + Sync + 'static) -> AccessError {
    AccessError::Backend {
        gpa: gpa.raw(),
        source: Box::new(e),
    }
}

impl MemoryView for EmulatedView {
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), AccessError> {
        match self.0.memory.get() {
            Some(state) => sev_psp::memory::host_read(self.0.mem.as_ref(), state, gpa.raw(), buf)
                .map_err(|e| view_error(gpa, e)),
            None => Ok(self.0.mem.0.read_plain(gpa, buf)?),
        }
    }

    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), AccessError> {
        match self.0.memory.get() {
            Some(state) => sev_psp::memory::host_write(self.0.mem.as_ref(), state, gpa.raw(), data)
                .map_err(|e| view_error(gpa, e)),
            None => Ok(self.0.mem.0.write_plain(gpa, data)?),
        }
    }
}

/// One VM's guest context on the emulated platform.
#[derive(Debug)]
pub struct EmulatedBackend {
    platform: Arc<Platform>,
    mem: Arc<RamBacking>,
    /// 0 until LAUNCH_START/RECEIVE_START.
    handle: AtomicU32,
    view: Arc<ViewState>,
}

impl EmulatedBackend {
    fn handle(&self) -> u32 {
        self.handle.load(Ordering::SeqCst)
    }

    /// KVM's part after LAUNCH_START/RECEIVE_START: ACTIVATE on a free ASID
    /// of the guest's range (SEV-ES guests take ASIDs 1..min_sev_asid, SEV
    /// guests min_sev_asid..=max_asid), and the host view starts using the
    /// guest's key.
    fn activate(&self, command: &'static str, handle: u32) -> Result<(), SevError> {
        if let Err(e) = self.platform.activate_free_asid(handle) {
            // As KVM: a guest that cannot be activated is decommissioned.
            let _ = self.platform.decommission(handle);
            return Err(fw_error(command, e));
        }
        self.handle.store(handle, Ordering::SeqCst);
        let state = self
            .platform
            .memory_state(handle, self.mem.as_ref())
            .map_err(|e| fw_error(command, e))?;
        let _ = self.view.memory.set(state);
        Ok(())
    }

    /// The 16-byte aligned span covering `gpa..gpa+len` (KVM's bounce
    /// window for DBG_*).
    fn aligned_span(command: &'static str, gpa: Gpa, len: usize) -> Result<(u64, usize), SevError> {
        let start = gpa.raw() & !15;
        let end = gpa
            .raw()
            .checked_add(len as u64)
            .and_then(|e| e.checked_add(15))
            .map(|e| e & !15)
            .ok_or(SevError::OutOfRange {
                command,
                gpa: gpa.raw(),
                len: len as u64,
            })?;
        let span = usize::try_from(end - start).map_err(|_| SevError::OutOfRange {
            command,
            gpa: gpa.raw(),
            len: len as u64,
        })?;
        Ok((start, span))
    }
}

impl SevBackend for EmulatedBackend {
    fn launch_start(
        &self,
        share_handle: u32,
        policy: Policy,
        godh: Option<&[u8]>,
        session: Option<&[u8]>,
    ) -> Result<u32, SevError> {
        const CMD: &str = "LAUNCH_START";
        // The platform is shared: `share_handle` may be another sevm's guest
        // on the same platform directory.
        let handle = self
            .platform
            .launch_start(share_handle, policy, godh, session)
            .map_err(|e| fw_error(CMD, e))?;
        self.activate(CMD, handle)?;
        Ok(handle)
    }

    fn launch_update_data(&self, gpa: Gpa, len: u64) -> Result<(), SevError> {
        const CMD: &str = "LAUNCH_UPDATE_DATA";
        let len = u32_len(CMD, gpa, len)?;
        self.platform
            .launch_update_data(self.handle(), self.mem.as_ref(), gpa.raw(), len)
            .map_err(|e| fw_error(CMD, e))
    }

    fn launch_update_vmsa(&self) -> Result<(), SevError> {
        Err(SevError::Unsupported {
            command: "LAUNCH_UPDATE_VMSA",
            reason: "SEV-ES register state is not modelled for KVM-emulated vCPUs on the \
                     emulated platform"
                .into(),
        })
    }

    fn launch_measure(&self) -> Result<[u8; 48], SevError> {
        let mut out = [0u8; 48];
        self.platform
            .launch_measure(self.handle(), &mut out)
            .map_err(|e| fw_error("LAUNCH_MEASURE", e))?;
        Ok(out)
    }

    fn launch_secret(&self, header: &[u8], gpa: Gpa, secret: &[u8]) -> Result<(), SevError> {
        const CMD: &str = "LAUNCH_SECRET";
        let len = u32_len(CMD, gpa, secret.len() as u64)?;
        // UNCERTAIN (SEV-REFERENCE 12 #14): GUEST_LEN = TRANS_LEN, as QEMU
        // sends it.
        self.platform
            .launch_secret(
                self.handle(),
                self.mem.as_ref(),
                header,
                gpa.raw(),
                len,
                secret,
            )
            .map_err(|e| fw_error(CMD, e))
    }

    fn launch_finish(&self) -> Result<(), SevError> {
        self.platform
            .launch_finish(self.handle())
            .map_err(|e| fw_error("LAUNCH_FINISH", e))
    }

    fn guest_status(&self) -> Result<GuestInfo, SevError> {
        let s = self
            .platform
            .guest_status(self.handle())
            .map_err(|e| fw_error("GUEST_STATUS", e))?;
        Ok(GuestInfo {
            handle: s.handle,
            policy: s.policy,
            state: Some(s.state),
        })
    }

    fn attestation_report(&self, mnonce: [u8; 16]) -> Result<Vec<u8>, SevError> {
        let mut out = vec![0u8; ATTESTATION_REPORT_LEN];
        let n = self
            .platform
            .attestation(self.handle(), &mnonce, &mut out)
            .map_err(|e| fw_error("ATTESTATION", e))?;
        out.truncate(n);
        Ok(out)
    }

    fn dbg_decrypt(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), SevError> {
        const CMD: &str = "DBG_DECRYPT";
        let (start, span) = Self::aligned_span(CMD, gpa, buf.len())?;
        let mut bounce = vec![0u8; span];
        self.platform
            .dbg_decrypt(self.handle(), self.mem.as_ref(), start, &mut bounce)
            .map_err(|e| fw_error(CMD, e))?;
        let off = usize::try_from(gpa.raw() - start).unwrap_or(0);
        if let Some(src) = bounce.get(off..off + buf.len()) {
            buf.copy_from_slice(src);
        }
        Ok(())
    }

    fn dbg_encrypt(&self, data: &[u8], gpa: Gpa) -> Result<(), SevError> {
        const CMD: &str = "DBG_ENCRYPT";
        let (start, span) = Self::aligned_span(CMD, gpa, data.len())?;
        let mut bounce = vec![0u8; span];
        // KVM's read-modify-write: decrypt the aligned span, patch, encrypt.
        if start != gpa.raw() || span != data.len() {
            self.platform
                .dbg_decrypt(self.handle(), self.mem.as_ref(), start, &mut bounce)
                .map_err(|e| fw_error(CMD, e))?;
        }
        let off = usize::try_from(gpa.raw() - start).unwrap_or(0);
        if let Some(dst) = bounce.get_mut(off..off + data.len()) {
            dst.copy_from_slice(data);
        }
        self.platform
            .dbg_encrypt(self.handle(), self.mem.as_ref(), &bounce, start)
            .map_err(|e| fw_error(CMD, e))
    }

    fn send_start(
        &self,
        pdh: &[u8],
        plat_certs: &[u8],
        amd_certs: &[u8],
    ) -> Result<(Policy, Vec<u8>), SevError> {
        let mut session = vec![0u8; SESSION_LEN];
        let policy = self
            .platform
            .send_start(self.handle(), pdh, plat_certs, amd_certs, &mut session)
            .map_err(|e| fw_error("SEND_START", e))?;
        Ok((policy, session))
    }

    fn send_update_data(&self, gpa: Gpa, len: u64) -> Result<(Vec<u8>, Vec<u8>), SevError> {
        let (mut hdr, mut trans) = (Vec::new(), Vec::new());
        self.send_update_data_into(gpa, len, &mut hdr, &mut trans)?;
        Ok((hdr, trans))
    }

    fn send_update_data_into(
        &self,
        gpa: Gpa,
        len: u64,
        hdr: &mut Vec<u8>,
        trans: &mut Vec<u8>,
    ) -> Result<(), SevError> {
        const CMD: &str = "SEND_UPDATE_DATA";
        let len32 = u32_len(CMD, gpa, len)?;
        // Reused buffers of the right size are not touched before the
        // firmware overwrites them.
        hdr.resize(PACKET_HEADER_LEN, 0);
        trans.resize(len32 as usize, 0);
        self.platform
            .send_update_data(
                self.handle(),
                self.mem.as_ref(),
                gpa.raw(),
                len32,
                hdr,
                trans,
            )
            .map_err(|e| fw_error(CMD, e))
    }

    fn send_finish(&self) -> Result<(), SevError> {
        self.platform
            .send_finish(self.handle())
            .map_err(|e| fw_error("SEND_FINISH", e))
    }

    fn send_cancel(&self) -> Result<(), SevError> {
        self.platform
            .send_cancel(self.handle())
            .map_err(|e| fw_error("SEND_CANCEL", e))
    }

    fn receive_start(&self, policy: Policy, pdh: &[u8], session: &[u8]) -> Result<u32, SevError> {
        const CMD: &str = "RECEIVE_START";
        let handle = self
            .platform
            .receive_start(0, policy, pdh, session)
            .map_err(|e| fw_error(CMD, e))?;
        self.activate(CMD, handle)?;
        Ok(handle)
    }

    fn receive_update_data(&self, header: &[u8], gpa: Gpa, trans: &[u8]) -> Result<(), SevError> {
        const CMD: &str = "RECEIVE_UPDATE_DATA";
        let len = u32_len(CMD, gpa, trans.len() as u64)?;
        self.platform
            .receive_update_data(
                self.handle(),
                self.mem.as_ref(),
                header,
                gpa.raw(),
                len,
                trans,
            )
            .map_err(|e| fw_error(CMD, e))
    }

    fn receive_finish(&self) -> Result<(), SevError> {
        self.platform
            .receive_finish(self.handle())
            .map_err(|e| fw_error("RECEIVE_FINISH", e))
    }

    fn host_view(&self) -> Arc<dyn MemoryView> {
        Arc::new(EmulatedView(Arc::clone(&self.view)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sev_proto::abi::{GuestState, Status};

    fn backend(dir: &Path) -> (Arc<GuestRam>, EmulatedBackend) {
        let opts = sev_psp::CreateOptions {
            ark_bits: 2048,
            ..Default::default()
        };
        let platform = Platform::create(dir, opts, sev_psp::rng::seeded_rng(3)).unwrap();
        platform.init(false).unwrap();
        let ram = Arc::new(GuestRam::new(1 << 20, 0x1_0000).unwrap());
        let mem = Arc::new(RamBacking::new(Arc::clone(&ram)));
        let view = Arc::new(ViewState {
            mem: Arc::clone(&mem),
            memory: OnceLock::new(),
        });
        let b = EmulatedBackend {
            platform: Arc::new(platform),
            mem,
            handle: AtomicU32::new(0),
            view,
        };
        (ram, b)
    }

    #[test]
    fn backing_lists_ram_and_firmware_in_order() {
        let ram = Arc::new(GuestRam::new(2 << 20, 0x2_0000).unwrap());
        let b = RamBacking::new(ram);
        assert_eq!(
            b.regions(),
            vec![
                Region {
                    gpa: 0,
                    len: 2 << 20
                },
                Region {
                    gpa: (1 << 32) - 0x2_0000,
                    len: 0x2_0000
                }
            ]
        );
        let mut buf = [0u8; 4];
        assert!(b.read_plain(2 << 20, &mut buf).is_err());
    }

    #[test]
    fn launch_host_view_and_debug_bouncing() {
        let tmp = tempfile::tempdir().unwrap();
        let (ram, b) = backend(&tmp.path().join("p"));
        let view = b.host_view();
        // Before LAUNCH_START every page is shared.
        view.write(Gpa(0x2000), b"plain text here!").unwrap();
        let mut buf = [0u8; 16];
        ram.read_plain(Gpa(0x2000), &mut buf).unwrap();
        assert_eq!(&buf, b"plain text here!");

        // Policy 0: debugging allowed.
        let handle = b.launch_start(0, Policy::from_bits(0), None, None).unwrap();
        assert!(handle > 0);
        b.launch_update_data(Gpa(0x2000), 0x1000).unwrap();
        // The host sees ciphertext of the (now private) page.
        view.read(Gpa(0x2000), &mut buf).unwrap();
        assert_ne!(&buf, b"plain text here!");
        // DBG at any alignment (KVM's bouncing): write 5 bytes at 0x2003.
        b.dbg_encrypt(b"HELLO", Gpa(0x2003)).unwrap();
        let mut got = [0u8; 9];
        b.dbg_decrypt(Gpa(0x2001), &mut got).unwrap();
        assert_eq!(&got, b"laHELLOxt");
        ram.read_plain(Gpa(0x2000), &mut buf).unwrap();
        // The guest (the backing) holds the plaintext.
        assert_eq!(&buf, b"plaHELLOxt here!");
        let s = b.guest_status().unwrap();
        assert_eq!(s.state, Some(GuestState::LaunchUpdate));
        // Wrong state: secrets need LSECRET.
        let e = b
            .launch_secret(&[0u8; 52], Gpa(0x3000), &[0u8; 16])
            .unwrap_err();
        assert_eq!(
            e.status(),
            Some(StatusCode(Status::InvalidGuestState.code()))
        );
        assert!(e
            .to_string()
            .starts_with("SEV: LAUNCH_SECRET failed: INVALID_GUEST_STATE (0x02)"));
        b.launch_measure().unwrap();
        b.launch_finish().unwrap();
        assert_eq!(b.guest_status().unwrap().state, Some(GuestState::Running));
        // ES register state is not modelled.
        assert!(matches!(
            b.launch_update_vmsa(),
            Err(SevError::Unsupported { .. })
        ));
    }
}
