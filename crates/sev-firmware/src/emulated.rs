//! The emulated platform: the software AMD Secure Processor of `sev-psp` on
//! a platform state directory.
//!
//! The emulator keeps a guest's plaintext in the VMM's memory (the
//! [`GuestMemory`] given to [`SevPlatform::attach`]); the host view goes
//! through the emulator's memory-encryption model ([`EmulatedView`]):
//! private pages read as ciphertext under the guest's key, and writes to
//! them decrypt to garbage in the guest, as on hardware.
//!
//! This implementation also plays the part of the Linux driver and KVM:
//!
//! * the platform is one per state directory, shared by every process on
//!   it (the sevm VMs, `sev-platform`): its state, guests, handles and
//!   ASIDs are platform-wide, as on a host with one firmware
//!   (docs/architecture-platform-state.md);
//! * platform commands that need INIT (PEK_GEN, PDH_GEN, PEK_CSR,
//!   PEK_CERT_IMPORT, PDH_CERT_EXPORT) INIT an UNINIT platform for the
//!   command and SHUT it DOWN afterwards (unless guests appeared
//!   meanwhile); on an INIT or WORKING platform they run as they are
//!   (PEK_GEN and PEK_CERT_IMPORT then fail with INVALID_PLATFORM_STATE
//!   while guests run, as the firmware's state table says).
//!   PLATFORM_RESET SHUTs an INIT platform DOWN first and is refused while
//!   guests run, as Linux does;
//! * [`EmulatedPlatform::init_for_guests`] INITs an UNINIT platform with
//!   SEV-ES when it is capable, as Linux does before KVM runs guests;
//! * LAUNCH_START / RECEIVE_START are followed by ACTIVATE with a free ASID
//!   of the guest's range, as `KVM_SEV_LAUNCH_START` does;
//! * DBG_DECRYPT/DBG_ENCRYPT get KVM's bouncing: any alignment is accepted
//!   and turned into the firmware's 16-byte aligned accesses.

use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use sev_proto::abi::{
    PlatformState, Policy, StatusCode, ATTESTATION_REPORT_LEN, GET_ID_LEN, PACKET_HEADER_LEN,
    PLATFORM_CHAIN_LEN, SESSION_LEN, SEV_CERT_LEN,
};
use sev_proto::cert::chain::{CaChain, PlatformChain};
use sev_proto::cert::sev::Certificate;
use sev_proto::secret::PacketHeader;
use sev_proto::session::SessionBuffer;
use sev_psp::memory::MemoryState;
use sev_psp::{FwError, Platform};

pub use sev_psp::snp::SnpOptions;
pub use snp::EmulatedSnpGuest;

mod snp;
/// The emulated key server's objects ([`sev_psp::Platform::kds_object`]).
pub use sev_psp::issuer::{ContentType, KdsError, KdsObject};
pub use sev_psp::CreateOptions;

use crate::guest::{DebugCommands, GuestContext, LaunchCommands, MigrationCommands};
use crate::memory::{GuestBacking, GuestMemory, HostRegion, HostView, ViewError};
use crate::platform::{PlatformManagement, SevPlatform};
use crate::types::{
    EncryptionParams, GuestKind, GuestStatus, LaunchMeasurement, LaunchSession, MigrationTarget,
    PlatformCerts, PlatformKind, PlatformStatus, VcekChain,
};
use crate::vmsa_window::{vmsa_gpa, VmsaPage, WithVmsaWindow, VMSA_PAGE_LEN, VMSA_WINDOW_GPA};
use crate::{OpenError, SevError};

/// Guest memory as the emulated firmware reads it (RAM, or RAM and the
/// VMSA window).
trait GuestBackingDebug: GuestBacking + std::fmt::Debug {}
impl<T: GuestBacking + std::fmt::Debug + ?Sized> GuestBackingDebug for T {}

/// Guest RAM alone (a plain SEV guest).
#[derive(Debug)]
struct Ram(Arc<dyn GuestMemory>);

impl GuestBacking for Ram {
    fn regions(&self) -> Vec<crate::memory::Region> {
        self.0.regions()
    }
    fn read_plain(&self, gpa: u64, buf: &mut [u8]) -> Result<(), crate::memory::OutOfRange> {
        self.0.read_plain(gpa, buf)
    }
    fn write_plain(&self, gpa: u64, data: &[u8]) -> Result<(), crate::memory::OutOfRange> {
        self.0.write_plain(gpa, data)
    }
}

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

fn u32_len(command: &'static str, gpa: u64, len: u64) -> Result<u32, SevError> {
    u32::try_from(len).map_err(|_| SevError::OutOfRange { command, gpa, len })
}

/// The emulated AMD Secure Processor of one platform directory.
#[derive(Debug)]
pub struct EmulatedPlatform {
    platform: Arc<Platform>,
    kind: PlatformKind,
}

impl EmulatedPlatform {
    /// Creates a platform directory with `options`; `false` if it already
    /// held a platform (which is kept as it is).
    pub fn create(dir: &Path, options: CreateOptions) -> Result<bool, OpenError> {
        match Platform::create(dir, options, sev_psp::rng::os_rng()) {
            Ok(_) => Ok(true),
            Err(sev_psp::PlatformError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens an existing platform directory (`sev-platform init DIR` makes
    /// one). The platform starts UNINIT.
    pub fn open(dir: &Path) -> Result<Self, OpenError> {
        let platform = Platform::open(dir, sev_psp::rng::os_rng())?;
        Ok(EmulatedPlatform {
            kind: PlatformKind::Emulated(platform.dir().to_path_buf()),
            platform: Arc::new(platform),
        })
    }

    /// Wraps an emulated firmware (tests, benchmarks).
    pub fn from_firmware(platform: Platform) -> Self {
        EmulatedPlatform {
            kind: PlatformKind::Emulated(platform.dir().to_path_buf()),
            platform: Arc::new(platform),
        }
    }

    /// INITs the platform for running guests, with SEV-ES when it is
    /// capable (as Linux does), unless it is INITed already (another user
    /// of a platform whose state is shared did it).
    pub fn init_for_guests(&self) -> Result<(), SevError> {
        if self.state()? != PlatformState::Uninit {
            return Ok(());
        }
        let es = self.platform.config().es_capable;
        match self.platform.init(es) {
            Ok(()) => Ok(()),
            // Another process may have INITed it in between.
            Err(_) if self.state()? != PlatformState::Uninit => Ok(()),
            Err(e) => Err(fw_error("INIT", e)),
        }
    }

    fn state(&self) -> Result<PlatformState, SevError> {
        self.platform
            .platform_status()
            .map(|s| s.state)
            .map_err(|e| fw_error("PLATFORM_STATUS", e))
    }

    /// The underlying emulated firmware.
    pub fn firmware(&self) -> &Arc<Platform> {
        &self.platform
    }

    /// Runs `f`, with the platform INITed for it when it is UNINIT (as the
    /// Linux driver does for the commands that need INIT) and shut down
    /// again afterwards, unless another process created guests on it
    /// meanwhile.
    fn with_init<T>(
        &self,
        command: &'static str,
        f: impl FnOnce(&Platform) -> Result<T, FwError>,
    ) -> Result<T, SevError> {
        let p = &self.platform;
        if self.state()? != PlatformState::Uninit {
            return f(p).map_err(|e| fw_error(command, e));
        }
        if let Err(e) = p.init(p.config().es_capable) {
            // Another process may have INITed it in between.
            if self.state()? == PlatformState::Uninit {
                return Err(fw_error("INIT", e));
            }
            return f(p).map_err(|e| fw_error(command, e));
        }
        let result = f(p);
        let down = match self.state() {
            Ok(PlatformState::Init) => p.shutdown().map_err(|e| fw_error("SHUTDOWN", e)),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        let value = result.map_err(|e| fw_error(command, e))?;
        down?;
        Ok(value)
    }
}

impl PlatformManagement for EmulatedPlatform {
    fn kind(&self) -> &PlatformKind {
        &self.kind
    }

    fn describe(&self) -> String {
        format!(
            "the EMULATED SEV platform in {}",
            self.platform.dir().display()
        )
    }

    fn status(&self) -> Result<PlatformStatus, SevError> {
        let s = self
            .platform
            .platform_status()
            .map_err(|e| fw_error("PLATFORM_STATUS", e))?;
        Ok(PlatformStatus {
            api: s.api,
            build: s.build,
            state_code: s.state.to_u8(),
            owner: s.owner,
            es_enabled: s.es_enabled,
            guest_count: s.guest_count,
        })
    }

    fn pdh_cert_export(&self) -> Result<PlatformCerts, SevError> {
        const CMD: &str = "PDH_CERT_EXPORT";
        let (pdh, chain) = self.with_init(CMD, |p| {
            let mut pdh = vec![0u8; SEV_CERT_LEN];
            let mut chain = vec![0u8; PLATFORM_CHAIN_LEN];
            let (a, b) = p.pdh_cert_export(&mut pdh, &mut chain)?;
            pdh.truncate(a);
            chain.truncate(b);
            Ok((pdh, chain))
        })?;
        Ok(PlatformCerts {
            pdh: SevError::decoded(CMD, "PDH certificate", Certificate::decode(&pdh))?,
            chain: SevError::decoded(CMD, "PEK/OCA/CEK chain", PlatformChain::decode(&chain))?,
        })
    }

    fn pek_csr(&self) -> Result<Certificate, SevError> {
        const CMD: &str = "PEK_CSR";
        let csr = self.with_init(CMD, |p| {
            let mut csr = vec![0u8; SEV_CERT_LEN];
            let n = p.pek_csr(&mut csr)?;
            csr.truncate(n);
            Ok(csr)
        })?;
        SevError::decoded(CMD, "PEK CSR", Certificate::decode(&csr))
    }

    fn pek_cert_import(&self, pek: &Certificate, oca: &Certificate) -> Result<(), SevError> {
        let (pek, oca) = (pek.encode(), oca.encode());
        self.with_init("PEK_CERT_IMPORT", |p| p.pek_cert_import(&pek, &oca))
    }

    fn pdh_gen(&self) -> Result<(), SevError> {
        self.with_init("PDH_GEN", |p| p.pdh_gen())
    }

    fn pek_gen(&self) -> Result<(), SevError> {
        self.with_init("PEK_GEN", |p| p.pek_gen())
    }

    /// As the Linux driver: refused while guests run (WORKING), an INIT
    /// platform is SHUT DOWN first.
    fn platform_reset(&self) -> Result<(), SevError> {
        match self.state()? {
            PlatformState::Working => {
                return Err(SevError::Platform(
                    "PLATFORM_RESET: guests are running on the platform (WORKING): \
                     stop them before a reset"
                        .into(),
                ))
            }
            PlatformState::Init => self
                .platform
                .shutdown()
                .map_err(|e| fw_error("SHUTDOWN", e))?,
            PlatformState::Uninit => {}
        }
        self.platform
            .platform_reset()
            .map_err(|e| fw_error("PLATFORM_RESET", e))
    }

    fn get_id(&self) -> Result<Vec<u8>, SevError> {
        let mut id = vec![0u8; GET_ID_LEN];
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

    fn amd_chain(&self) -> Result<Option<CaChain>, SevError> {
        let (ask, ark) = self.platform.amd_chain();
        let bytes = [ask, ark].concat();
        SevError::decoded("AMD chain", "ASK/ARK", CaChain::decode(&bytes)).map(Some)
    }

    fn snp_vcek_chain(&self) -> Result<Option<VcekChain>, SevError> {
        use sev_proto::snp::chain::VekKind;
        use sev_proto::snp::kds::KdsRequest;
        const CMD: &str = "the emulated VCEK chain";
        let issuer_err = |e: KdsError| SevError::Host {
            command: CMD,
            detail: e.to_string(),
        };
        let req = self
            .platform
            .kds_vcek_request(None)
            .map_err(|e| fw_error("SNP_PLATFORM_STATUS", e))?;
        let KdsRequest::Vcek { product, .. } = &req else {
            return Err(SevError::Host {
                command: CMD,
                detail: format!("unexpected request {req}"),
            });
        };
        let vcek = self.platform.kds_object(&req).map_err(issuer_err)?.bytes;
        let pem = self
            .platform
            .kds_object(&KdsRequest::CertChain {
                product: *product,
                kind: VekKind::Vcek,
            })
            .map_err(issuer_err)?
            .bytes;
        let certs = sev_proto::snp::cert::Certificate::from_pem_chain(&pem).map_err(|e| {
            SevError::Host {
                command: CMD,
                detail: format!("the issued cert_chain: {e}"),
            }
        })?;
        let [ask, ark] = certs.as_slice() else {
            return Err(SevError::Host {
                command: CMD,
                detail: format!(
                    "the issued cert_chain holds {} certificates, not an ASK and an ARK",
                    certs.len()
                ),
            });
        };
        Ok(Some(VcekChain {
            ark: ark.der().to_vec(),
            ask: ask.der().to_vec(),
            vcek,
        }))
    }
}

impl SevPlatform for EmulatedPlatform {
    fn prepare_vm(
        &self,
        _: BorrowedFd<'_>,
        _: &[HostRegion],
        _: GuestKind,
    ) -> Result<(), SevError> {
        Ok(())
    }

    fn attach(
        &self,
        _vm: BorrowedFd<'_>,
        memory: Arc<dyn GuestMemory>,
        kind: GuestKind,
    ) -> Result<Arc<dyn GuestContext>, SevError> {
        Ok(Arc::new(EmulatedGuest::new(
            Arc::clone(&self.platform),
            memory,
            kind,
        )?))
    }

    fn attach_snp(
        &self,
        _vm: BorrowedFd<'_>,
        memory: Arc<dyn GuestMemory>,
    ) -> Result<Arc<dyn crate::snp::SnpGuestContext>, SevError> {
        self.init_for_snp_guests()?;
        Ok(Arc::new(EmulatedSnpGuest::new(
            Arc::clone(&self.platform),
            memory,
        )?))
    }
}

/// What the host view needs: the guest's memory-encryption state once the
/// guest exists.
#[derive(Debug)]
struct ViewState {
    mem: Arc<dyn GuestBackingDebug>,
    memory: OnceLock<Arc<MemoryState>>,
}

/// The host view of an emulated SEV guest's memory. Before LAUNCH_START
/// there is no guest key and every page is shared (plain).
#[derive(Debug, Clone)]
pub struct EmulatedView(Arc<ViewState>);

fn refused(gpa: u64, e: impl std::error::Error + Send + Sync + 'static) -> ViewError {
    ViewError::Refused {
        gpa,
        source: Box::new(e),
    }
}

impl HostView for EmulatedView {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), ViewError> {
        match self.0.memory.get() {
            Some(state) => sev_psp::memory::host_read(self.0.mem.as_ref(), state, gpa, buf)
                .map_err(|e| refused(gpa, e)),
            None => Ok(self.0.mem.read_plain(gpa, buf)?),
        }
    }

    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), ViewError> {
        match self.0.memory.get() {
            Some(state) => sev_psp::memory::host_write(self.0.mem.as_ref(), state, gpa, data)
                .map_err(|e| refused(gpa, e)),
            None => Ok(self.0.mem.write_plain(gpa, data)?),
        }
    }
}

/// One VM's guest context on the emulated platform.
#[derive(Debug)]
pub struct EmulatedGuest {
    platform: Arc<Platform>,
    /// Guest RAM, and for an SEV-ES guest its VMSA window after it.
    mem: Arc<dyn GuestBackingDebug>,
    /// Whether the guest is an SEV-ES guest (has a VMSA window).
    es: bool,
    /// 0 until LAUNCH_START/RECEIVE_START.
    handle: AtomicU32,
    view: Arc<ViewState>,
}

impl EmulatedGuest {
    /// A guest context of `platform` over `mem`. An SEV-ES guest's memory
    /// gets the VMSA window after its RAM ([`crate::vmsa_window`]); its
    /// policy picks its ASID range at ACTIVATE. Fails if `mem` reaches into
    /// the VMSA window.
    pub fn new(
        platform: Arc<Platform>,
        mem: Arc<dyn GuestMemory>,
        kind: GuestKind,
    ) -> Result<Self, SevError> {
        let es = kind.encrypts_registers();
        let mem: Arc<dyn GuestBackingDebug> = if es {
            Arc::new(WithVmsaWindow::new(mem).map_err(|e| {
                SevError::Platform(format!("guest memory and the VMSA window: {e}"))
            })?)
        } else {
            Arc::new(Ram(mem))
        };
        let view = Arc::new(ViewState {
            mem: Arc::clone(&mem),
            memory: OnceLock::new(),
        });
        Ok(EmulatedGuest {
            platform,
            mem,
            es,
            handle: AtomicU32::new(0),
            view,
        })
    }

    fn handle(&self) -> u32 {
        self.handle.load(Ordering::SeqCst)
    }

    /// Runs firmware command `command` (`f`) on this guest's handle.
    fn on_guest<T>(
        &self,
        command: &'static str,
        f: impl FnOnce(&Platform, u32) -> Result<T, FwError>,
    ) -> Result<T, SevError> {
        f(&self.platform, self.handle()).map_err(|e| fw_error(command, e))
    }

    /// vCPU `index`'s page of the VMSA window, for an SEV-ES guest.
    fn vmsa_page(&self, command: &'static str, index: usize) -> Result<u64, SevError> {
        if !self.es {
            return Err(SevError::Unsupported {
                command,
                reason: "the guest was not created as an SEV-ES guest".into(),
            });
        }
        vmsa_gpa(index).ok_or(SevError::OutOfRange {
            command,
            gpa: VMSA_WINDOW_GPA,
            len: ((index + 1) * VMSA_PAGE_LEN) as u64,
        })
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
    fn aligned_span(command: &'static str, gpa: u64, len: usize) -> Result<(u64, usize), SevError> {
        let out_of_range = || SevError::OutOfRange {
            command,
            gpa,
            len: len as u64,
        };
        let start = gpa & !15;
        let end = gpa
            .checked_add(len as u64)
            .and_then(|e| e.checked_add(15))
            .map(|e| e & !15)
            .ok_or_else(out_of_range)?;
        let span = usize::try_from(end - start).map_err(|_| out_of_range())?;
        Ok((start, span))
    }
}

impl LaunchCommands for EmulatedGuest {
    fn launch_start(
        &self,
        share_handle: u32,
        policy: Policy,
        session: Option<&LaunchSession>,
    ) -> Result<u32, SevError> {
        const CMD: &str = "LAUNCH_START";
        let encoded = session.map(|s| (s.godh.encode(), s.session.to_bytes()));
        let (godh, session) = match &encoded {
            Some((g, s)) => (Some(&g[..]), Some(&s[..])),
            None => (None, None),
        };
        let handle = self
            .platform
            .launch_start(share_handle, policy, godh, session)
            .map_err(|e| fw_error(CMD, e))?;
        self.activate(CMD, handle)?;
        Ok(handle)
    }

    fn launch_update_data(&self, gpa: u64, len: u64) -> Result<(), SevError> {
        const CMD: &str = "LAUNCH_UPDATE_DATA";
        let len = u32_len(CMD, gpa, len)?;
        self.on_guest(CMD, |p, h| {
            p.launch_update_data(h, self.mem.as_ref(), gpa, len)
        })
    }

    /// Writes each page into the guest's VMSA window (as KVM's VMSA pages,
    /// they are outside guest RAM) and measures it there, in vCPU order.
    fn launch_update_vmsa(&self, vmsas: &[VmsaPage]) -> Result<(), SevError> {
        const CMD: &str = "LAUNCH_UPDATE_VMSA";
        let too_many = || SevError::OutOfRange {
            command: CMD,
            gpa: VMSA_WINDOW_GPA,
            len: (vmsas.len() * VMSA_PAGE_LEN) as u64,
        };
        if !self.es {
            return Err(SevError::Unsupported {
                command: CMD,
                reason: "the guest was not created as an SEV-ES guest".into(),
            });
        }
        for (index, page) in vmsas.iter().enumerate() {
            let gpa = vmsa_gpa(index).ok_or_else(too_many)?;
            self.mem.write_plain(gpa, page).map_err(|_| too_many())?;
            self.platform
                .launch_update_vmsa(self.handle(), self.mem.as_ref(), gpa, VMSA_PAGE_LEN as u32)
                .map_err(|e| fw_error(CMD, e))?;
        }
        Ok(())
    }

    fn launch_measure(&self) -> Result<LaunchMeasurement, SevError> {
        let mut out = [0u8; LaunchMeasurement::LEN];
        self.on_guest("LAUNCH_MEASURE", |p, h| p.launch_measure(h, &mut out))?;
        Ok(LaunchMeasurement::from_bytes(out))
    }

    fn launch_secret(
        &self,
        header: &PacketHeader,
        gpa: u64,
        secret: &[u8],
    ) -> Result<(), SevError> {
        const CMD: &str = "LAUNCH_SECRET";
        let len = u32_len(CMD, gpa, secret.len() as u64)?;
        // UNCERTAIN (docs/protocol/choices.md#u14): GUEST_LEN = TRANS_LEN, as QEMU
        // sends it.
        self.platform
            .launch_secret(
                self.handle(),
                self.mem.as_ref(),
                &header.to_bytes(),
                gpa,
                len,
                secret,
            )
            .map_err(|e| fw_error(CMD, e))
    }

    fn launch_finish(&self) -> Result<(), SevError> {
        self.on_guest("LAUNCH_FINISH", |p, h| p.launch_finish(h))
    }

    fn guest_status(&self) -> Result<GuestStatus, SevError> {
        let s = self.on_guest("GUEST_STATUS", |p, h| p.guest_status(h))?;
        Ok(GuestStatus {
            handle: s.handle,
            policy: s.policy,
            state: Some(s.state),
        })
    }

    fn attestation_report(&self, mnonce: [u8; 16]) -> Result<Vec<u8>, SevError> {
        let mut out = vec![0u8; ATTESTATION_REPORT_LEN];
        let n = self.on_guest("ATTESTATION", |p, h| p.attestation(h, &mnonce, &mut out))?;
        out.truncate(n);
        Ok(out)
    }
}

impl DebugCommands for EmulatedGuest {
    fn dbg_decrypt(&self, gpa: u64, buf: &mut [u8]) -> Result<(), SevError> {
        const CMD: &str = "DBG_DECRYPT";
        let (start, span) = Self::aligned_span(CMD, gpa, buf.len())?;
        let mut bounce = vec![0u8; span];
        self.on_guest(CMD, |p, h| {
            p.dbg_decrypt(h, self.mem.as_ref(), start, &mut bounce)
        })?;
        let off = usize::try_from(gpa - start).unwrap_or(0);
        if let Some(src) = bounce.get(off..off + buf.len()) {
            buf.copy_from_slice(src);
        }
        Ok(())
    }

    fn dbg_encrypt(&self, data: &[u8], gpa: u64) -> Result<(), SevError> {
        const CMD: &str = "DBG_ENCRYPT";
        let (start, span) = Self::aligned_span(CMD, gpa, data.len())?;
        let mut bounce = vec![0u8; span];
        // KVM's read-modify-write: decrypt the aligned span, patch, encrypt.
        if start != gpa || span != data.len() {
            self.on_guest(CMD, |p, h| {
                p.dbg_decrypt(h, self.mem.as_ref(), start, &mut bounce)
            })?;
        }
        let off = usize::try_from(gpa - start).unwrap_or(0);
        if let Some(dst) = bounce.get_mut(off..off + data.len()) {
            dst.copy_from_slice(data);
        }
        self.on_guest(CMD, |p, h| {
            p.dbg_encrypt(h, self.mem.as_ref(), &bounce, start)
        })
    }
}

impl MigrationCommands for EmulatedGuest {
    fn send_start(&self, target: &MigrationTarget) -> Result<(Policy, SessionBuffer), SevError> {
        let pdh = target.pdh.encode();
        let chain = target.chain.encode();
        let amd = target.amd.as_ref().map(CaChain::encode).unwrap_or_default();
        let mut session = [0u8; SESSION_LEN];
        let policy = self.on_guest("SEND_START", |p, h| {
            p.send_start(h, &pdh, &chain, &amd, &mut session)
        })?;
        Ok((policy, SessionBuffer::from_bytes(&session)))
    }

    fn send_update_data_into(
        &self,
        gpa: u64,
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
        self.on_guest(CMD, |p, h| {
            p.send_update_data(h, self.mem.as_ref(), gpa, len32, hdr, trans)
        })
    }

    fn migrates_vmsas(&self) -> bool {
        self.es
    }

    /// Saves `state` into vCPU `index`'s page of the VMSA window (encrypted,
    /// as the processor does when the vCPU exits), then sends that page.
    fn send_update_vmsa(
        &self,
        index: usize,
        state: &VmsaPage,
    ) -> Result<(Vec<u8>, Vec<u8>), SevError> {
        const CMD: &str = "SEND_UPDATE_VMSA";
        let gpa = self.vmsa_page(CMD, index)?;
        let mut hdr = vec![0; PACKET_HEADER_LEN];
        let mut trans = vec![0; VMSA_PAGE_LEN];
        self.on_guest(CMD, |p, h| {
            p.vcpu_save_vmsa(h, self.mem.as_ref(), gpa, state)?;
            p.send_update_vmsa(
                h,
                self.mem.as_ref(),
                gpa,
                VMSA_PAGE_LEN as u32,
                &mut hdr,
                &mut trans,
            )
        })?;
        Ok((hdr, trans))
    }

    fn send_finish(&self) -> Result<(), SevError> {
        self.on_guest("SEND_FINISH", |p, h| p.send_finish(h))
    }

    fn send_cancel(&self) -> Result<(), SevError> {
        self.on_guest("SEND_CANCEL", |p, h| p.send_cancel(h))
    }

    fn receive_start(
        &self,
        policy: Policy,
        pdh: &Certificate,
        session: &SessionBuffer,
    ) -> Result<u32, SevError> {
        const CMD: &str = "RECEIVE_START";
        let handle = self
            .platform
            .receive_start(0, policy, &pdh.encode(), &session.to_bytes())
            .map_err(|e| fw_error(CMD, e))?;
        self.activate(CMD, handle)?;
        Ok(handle)
    }

    fn receive_update_data(&self, header: &[u8], gpa: u64, trans: &[u8]) -> Result<(), SevError> {
        const CMD: &str = "RECEIVE_UPDATE_DATA";
        let len = u32_len(CMD, gpa, trans.len() as u64)?;
        self.on_guest(CMD, |p, h| {
            p.receive_update_data(h, self.mem.as_ref(), header, gpa, len, trans)
        })
    }

    /// Receives the page into vCPU `index`'s page of the VMSA window, then
    /// reads it back as the processor loads it on VMRUN.
    fn receive_update_vmsa(
        &self,
        index: usize,
        header: &[u8],
        trans: &[u8],
    ) -> Result<Box<VmsaPage>, SevError> {
        const CMD: &str = "RECEIVE_UPDATE_VMSA";
        let gpa = self.vmsa_page(CMD, index)?;
        let len = u32_len(CMD, gpa, trans.len() as u64)?;
        let mut state = Box::new([0u8; VMSA_PAGE_LEN]);
        self.on_guest(CMD, |p, h| {
            p.receive_update_vmsa(h, self.mem.as_ref(), header, gpa, len, trans)?;
            p.vcpu_load_vmsa(h, self.mem.as_ref(), gpa, state.as_mut_slice())
        })?;
        Ok(state)
    }

    fn receive_finish(&self) -> Result<(), SevError> {
        self.on_guest("RECEIVE_FINISH", |p, h| p.receive_finish(h))
    }
}

impl GuestContext for EmulatedGuest {
    fn host_view(&self) -> Arc<dyn HostView> {
        Arc::new(EmulatedView(Arc::clone(&self.view)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{GuestBacking, Region};
    use sev_proto::abi::{GuestState, Status};
    use sev_psp::memory::VecBacking;

    use crate::test_memory::TestMemory;

    fn guest(dir: &Path) -> (Arc<TestMemory>, EmulatedGuest) {
        guest_of_kind(dir, GuestKind::Sev)
    }

    fn guest_of_kind(dir: &Path, kind: GuestKind) -> (Arc<TestMemory>, EmulatedGuest) {
        let opts = CreateOptions {
            ark_bits: 2048,
            ..Default::default()
        };
        let platform = Platform::create(dir, opts, sev_psp::rng::seeded_rng(3)).unwrap();
        platform.init(kind.encrypts_registers()).unwrap();
        let regions = [
            Region {
                gpa: 0,
                len: 1 << 20,
            },
            Region {
                gpa: (1 << 32) - 0x1_0000,
                len: 0x1_0000,
            },
        ];
        let mem = Arc::new(TestMemory(VecBacking::new(&regions).unwrap()));
        let g = EmulatedGuest::new(Arc::new(platform), mem.clone(), kind).unwrap();
        (mem, g)
    }

    #[test]
    fn launch_host_view_and_debug_bouncing() {
        let tmp = tempfile::tempdir().unwrap();
        let (ram, b) = guest(&tmp.path().join("p"));
        let view = b.host_view();
        // Before LAUNCH_START every page is shared.
        view.write(0x2000, b"plain text here!").unwrap();
        let mut buf = [0u8; 16];
        ram.read_plain(0x2000, &mut buf).unwrap();
        assert_eq!(&buf, b"plain text here!");

        // Policy 0: debugging allowed.
        let handle = b.launch_start(0, Policy::from_bits(0), None).unwrap();
        assert!(handle > 0);
        b.launch_update_data(0x2000, 0x1000).unwrap();
        // The host sees ciphertext of the (now private) page.
        view.read(0x2000, &mut buf).unwrap();
        assert_ne!(&buf, b"plain text here!");
        // DBG at any alignment (KVM's bouncing): write 5 bytes at 0x2003.
        b.dbg_encrypt(b"HELLO", 0x2003).unwrap();
        let mut got = [0u8; 9];
        b.dbg_decrypt(0x2001, &mut got).unwrap();
        assert_eq!(&got, b"laHELLOxt");
        ram.read_plain(0x2000, &mut buf).unwrap();
        // The guest (the backing) holds the plaintext.
        assert_eq!(&buf, b"plaHELLOxt here!");
        let s = b.guest_status().unwrap();
        assert_eq!(s.state, Some(GuestState::LaunchUpdate));
        // Wrong state: secrets need LSECRET.
        let e = b
            .launch_secret(&PacketHeader::from_bytes(&[0u8; 52]), 0x3000, &[0u8; 16])
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
        // A plain SEV guest has no VMSAs.
        assert!(matches!(
            b.launch_update_vmsa(&[]),
            Err(SevError::Unsupported { .. })
        ));
    }

    #[test]
    fn es_vmsas_are_measured_in_the_window_and_encrypted_there() {
        let tmp = tempfile::tempdir().unwrap();
        let (_ram, g) = guest_of_kind(&tmp.path().join("p"), GuestKind::SevEs);
        let view = g.host_view();
        // Policy ES (bit 2).
        g.launch_start(0, Policy::from_bits(0x4), None).unwrap();
        g.launch_update_data(0x2000, 0x1000).unwrap();
        let pages = [[0x11u8; VMSA_PAGE_LEN], [0x22u8; VMSA_PAGE_LEN]];
        g.launch_update_vmsa(&pages).unwrap();
        // The host sees the VMSA pages encrypted, the firmware holds them.
        let mut seen = [0u8; VMSA_PAGE_LEN];
        view.read(vmsa_gpa(1).unwrap(), &mut seen).unwrap();
        assert_ne!(seen, pages[1]);
        let mut plain = [0u8; VMSA_PAGE_LEN];
        g.mem.read_plain(vmsa_gpa(1).unwrap(), &mut plain).unwrap();
        assert_eq!(plain, pages[1]);
        // More vCPUs than the window holds.
        let many = vec![[0u8; VMSA_PAGE_LEN]; crate::vmsa_window::MAX_VMSAS + 1];
        assert!(matches!(
            g.launch_update_vmsa(&many),
            Err(SevError::OutOfRange { .. })
        ));
        g.launch_measure().unwrap();
        // After LAUNCH_MEASURE the firmware refuses more VMSAs.
        let e = g.launch_update_vmsa(&pages[..1]).unwrap_err();
        assert_eq!(
            e.status(),
            Some(StatusCode(Status::InvalidGuestState.code()))
        );
    }

    #[test]
    fn vmsa_migration_commands_need_an_es_guest_in_the_right_state() {
        let tmp = tempfile::tempdir().unwrap();
        let (_ram, g) = guest_of_kind(&tmp.path().join("p"), GuestKind::SevEs);
        assert!(g.migrates_vmsas());
        g.launch_start(0, Policy::from_bits(0x4), None).unwrap();
        let pages = [[0x11u8; VMSA_PAGE_LEN]];
        g.launch_update_vmsa(&pages).unwrap();
        g.launch_measure().unwrap();
        g.launch_finish().unwrap();
        // RUNNING, not SUPDATE: no SEND_START yet, and nothing is saved.
        let e = g.send_update_vmsa(0, &[0x33; VMSA_PAGE_LEN]).unwrap_err();
        assert_eq!(
            e.status(),
            Some(StatusCode(Status::InvalidGuestState.code()))
        );
        let mut plain = [0u8; VMSA_PAGE_LEN];
        g.mem.read_plain(vmsa_gpa(0).unwrap(), &mut plain).unwrap();
        assert_eq!(plain, pages[0]);
        // Nor is a packet received outside RUPDATE.
        let e = g
            .receive_update_vmsa(0, &[0; PACKET_HEADER_LEN], &[0; VMSA_PAGE_LEN])
            .unwrap_err();
        assert_eq!(
            e.status(),
            Some(StatusCode(Status::InvalidGuestState.code()))
        );
        // Past the window.
        assert!(matches!(
            g.send_update_vmsa(crate::vmsa_window::MAX_VMSAS, &pages[0]),
            Err(SevError::OutOfRange { .. })
        ));
        // A plain SEV guest has no VMSAs to send.
        let (_ram, b) = guest(&tmp.path().join("q"));
        assert!(!b.migrates_vmsas());
        assert!(matches!(
            b.send_update_vmsa(0, &pages[0]),
            Err(SevError::Unsupported { .. })
        ));
    }

    #[test]
    fn management_commands_init_an_uninit_platform_for_the_command_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        let opts = CreateOptions {
            ark_bits: 2048,
            ..Default::default()
        };
        assert!(EmulatedPlatform::create(&dir, opts).unwrap());
        assert!(!EmulatedPlatform::create(&dir, opts).unwrap());
        let p = EmulatedPlatform::open(&dir).unwrap();
        assert!(p.is_emulated());
        assert_eq!(p.kind(), &PlatformKind::Emulated(dir.clone()));
        let certs = p.pdh_cert_export().unwrap();
        assert_eq!(p.status().unwrap().state(), Some(PlatformState::Uninit));
        let ca = p.amd_chain().unwrap().unwrap();
        certs.chain.cek.verify_signed_by_ca(&ca.ask).unwrap();
        p.init_for_guests().unwrap();
        assert_eq!(p.status().unwrap().state(), Some(PlatformState::Init));
        // INITed already: nothing to do.
        p.init_for_guests().unwrap();
        // Already INIT: the command runs as it is and the platform stays INIT.
        assert_eq!(p.pdh_cert_export().unwrap(), certs);
        assert_eq!(p.status().unwrap().state(), Some(PlatformState::Init));
        assert!(matches!(
            EmulatedPlatform::open(&tmp.path().join("none")),
            Err(OpenError::Emulated(_))
        ));
    }
}
