//! The hardware platform: `/dev/sev` for platform commands and KVM's
//! `KVM_MEMORY_ENCRYPT_OP` on the VM fd for guest commands (through
//! `sev-host`).
//!
//! Guest ranges are translated from guest-physical addresses to the host
//! virtual addresses of the VMM's mapping ([`GuestMemory::host_regions`]),
//! which KVM pins and hands to the firmware. The host view of guest memory
//! is that raw mapping: on SEV hardware the memory controller stores private
//! pages as ciphertext, so reading the mapping *is* the hypervisor's view.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use sev_host::{cpuid_8000_001f, HostError, SevDevice, SevVm};
use sev_proto::abi::{GuestState, Owner, Policy, StatusCode};
use sev_proto::cert::chain::{CaChain, PlatformChain};
use sev_proto::cert::sev::Certificate;
use sev_proto::secret::PacketHeader;
use sev_proto::session::SessionBuffer;

use crate::guest::{DebugCommands, GuestContext, LaunchCommands, MigrationCommands};
use crate::memory::{GuestMemory, HostRegion, HostView, ViewError};
use crate::platform::{PlatformManagement, SevPlatform};
use crate::types::{
    EncryptionParams, GuestKind, GuestStatus, LaunchMeasurement, LaunchSession, MigrationTarget,
    PlatformCerts, PlatformKind, PlatformStatus,
};
use crate::vmsa_window::VmsaPage;
use crate::{error_chain, OpenError, SevError};

pub use snp::HardwareSnpGuest;

mod snp;

/// Maps a `sev-host` error of firmware command `command` to a [`SevError`]:
/// firmware statuses stay data.
pub fn host_error(command: &'static str, e: HostError) -> SevError {
    match e {
        HostError::Firmware { cmd, code } => SevError::Firmware {
            command,
            status: StatusCode(code),
            detail: cmd.to_string(),
        },
        other => SevError::Host {
            command,
            detail: error_chain(&other),
        },
    }
}

/// A SEV device node (`/dev/sev`, or another path).
#[derive(Debug)]
pub struct HardwarePlatform {
    device: Arc<SevDevice>,
    kind: PlatformKind,
}

impl HardwarePlatform {
    /// Opens the SEV device.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let device = SevDevice::open_path(path)?;
        Ok(HardwarePlatform {
            kind: PlatformKind::Hardware(device.path().to_path_buf()),
            device: Arc::new(device),
        })
    }

    fn path(&self) -> &Path {
        self.device.path()
    }
}

impl PlatformManagement for HardwarePlatform {
    fn kind(&self) -> &PlatformKind {
        &self.kind
    }

    fn describe(&self) -> String {
        format!("SEV hardware through {}", self.path().display())
    }

    fn status(&self) -> Result<PlatformStatus, SevError> {
        let s = self
            .device
            .platform_status()
            .map_err(|e| host_error("PLATFORM_STATUS", e))?;
        Ok(PlatformStatus {
            api: sev_proto::abi::ApiVersion::new(s.api_major, s.api_minor),
            build: s.build,
            state_code: s.state,
            owner: if s.externally_owned() {
                Owner::External
            } else {
                Owner::SelfOwned
            },
            es_enabled: s.es_enabled(),
            guest_count: s.guest_count,
        })
    }

    fn pdh_cert_export(&self) -> Result<PlatformCerts, SevError> {
        const CMD: &str = "PDH_CERT_EXPORT";
        let (pdh, chain) = self
            .device
            .pdh_cert_export()
            .map_err(|e| host_error(CMD, e))?;
        Ok(PlatformCerts {
            pdh: SevError::decoded(CMD, "PDH certificate", Certificate::decode(&pdh))?,
            chain: SevError::decoded(CMD, "PEK/OCA/CEK chain", PlatformChain::decode(&chain))?,
        })
    }

    fn pek_csr(&self) -> Result<Certificate, SevError> {
        const CMD: &str = "PEK_CSR";
        let csr = self.device.pek_csr().map_err(|e| host_error(CMD, e))?;
        SevError::decoded(CMD, "PEK CSR", Certificate::decode(&csr))
    }

    fn pek_cert_import(&self, pek: &Certificate, oca: &Certificate) -> Result<(), SevError> {
        self.device
            .pek_cert_import(&pek.encode(), &oca.encode())
            .map_err(|e| host_error("PEK_CERT_IMPORT", e))
    }

    fn pdh_gen(&self) -> Result<(), SevError> {
        self.device.pdh_gen().map_err(|e| host_error("PDH_GEN", e))
    }

    fn pek_gen(&self) -> Result<(), SevError> {
        self.device.pek_gen().map_err(|e| host_error("PEK_GEN", e))
    }

    /// Linux's driver refuses SEV_FACTORY_RESET with EBUSY while the
    /// platform is WORKING, i.e. while guests run; said in those words, as
    /// the emulated backend says it.
    fn platform_reset(&self) -> Result<(), SevError> {
        self.device.factory_reset().map_err(|e| match e {
            HostError::Ioctl { ref errno, .. }
                if errno.kind() == std::io::ErrorKind::ResourceBusy =>
            {
                SevError::Platform(format!(
                    "PLATFORM_RESET: guests are running on the platform (WORKING): \
                     stop them before a reset ({})",
                    error_chain(&e)
                ))
            }
            other => host_error("PLATFORM_RESET", other),
        })
    }

    fn get_id(&self) -> Result<Vec<u8>, SevError> {
        self.device.get_id().map_err(|e| host_error("GET_ID", e))
    }

    /// The host's CPUID 0x8000001F values, read as QEMU reads them: without
    /// a check of the SEV bit (zero when the leaf is absent). The SEV device
    /// itself is the sign of SEV support (Linux's PSP driver creates
    /// `/dev/sev` only on a CPU with SEV); a VMM then compares a requested
    /// `cbitpos` with the host's (docs/guide/sev-emulate.md#sevm).
    fn encryption_params(&self) -> Result<EncryptionParams, SevError> {
        let c = cpuid_8000_001f();
        Ok(EncryptionParams {
            cbitpos: u32::from(c.cbitpos),
            reduced_phys_bits: u32::from(c.reduced_phys_bits),
        })
    }

    fn amd_chain(&self) -> Result<Option<CaChain>, SevError> {
        Ok(None)
    }
}

impl SevPlatform for HardwarePlatform {
    fn prepare_vm(
        &self,
        vm: BorrowedFd<'_>,
        regions: &[HostRegion],
        kind: GuestKind,
    ) -> Result<(), SevError> {
        if kind == GuestKind::Snp {
            // guest_memfd backs the private pages: no regions to register.
            return sev_host::SnpVm::new(vm, self.device.as_fd())
                .init2(0)
                .map_err(|e| host_error("KVM_SEV_INIT2", e));
        }
        let es = kind.encrypts_registers();
        let sev = SevVm::new(vm, self.device.as_fd());
        sev.init(es).map_err(|e| {
            host_error(
                if es {
                    "KVM_SEV_ES_INIT"
                } else {
                    "KVM_SEV_INIT"
                },
                e,
            )
        })?;
        for region in regions {
            sev.register_region(region.host_addr, region.len)
                .map_err(|e| host_error("KVM_MEMORY_ENCRYPT_REG_REGION", e))?;
        }
        Ok(())
    }

    fn attach(
        &self,
        vm: BorrowedFd<'_>,
        memory: Arc<dyn GuestMemory>,
        _kind: GuestKind,
    ) -> Result<Arc<dyn GuestContext>, SevError> {
        let kvm = KvmGuest::attach(vm, Arc::clone(&self.device), memory)?;
        Ok(Arc::new(HardwareGuest { kvm }))
    }

    fn attach_snp(
        &self,
        vm: BorrowedFd<'_>,
        memory: Arc<dyn GuestMemory>,
    ) -> Result<Arc<dyn crate::snp::SnpGuestContext>, SevError> {
        Ok(Arc::new(HardwareSnpGuest::new(
            vm,
            Arc::clone(&self.device),
            memory,
        )?))
    }
}

/// The pass-through host view: the raw mapping.
#[derive(Debug)]
struct PlainView(Arc<dyn GuestMemory>);

impl HostView for PlainView {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), ViewError> {
        Ok(self.0.read_plain(gpa, buf)?)
    }

    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), ViewError> {
        Ok(self.0.write_plain(gpa, data)?)
    }
}

/// A KVM VM's guest memory on hardware, as the SEV and the SNP guest
/// contexts keep it.
struct KvmGuest {
    vm: OwnedFd,
    device: Arc<SevDevice>,
    /// Keeps the mappings of `regions` alive.
    memory: Arc<dyn GuestMemory>,
    regions: Vec<HostRegion>,
    view: Arc<PlainView>,
}

impl std::fmt::Debug for KvmGuest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvmGuest")
            .field("vm", &self.vm)
            .field("memory", &self.memory)
            .finish_non_exhaustive()
    }
}

impl KvmGuest {
    /// The KVM VM `vm` (duplicated) over `memory`.
    fn attach(
        vm: BorrowedFd<'_>,
        device: Arc<SevDevice>,
        memory: Arc<dyn GuestMemory>,
    ) -> Result<Self, SevError> {
        let vm = vm.try_clone_to_owned().map_err(|e| SevError::Host {
            command: "attach",
            detail: format!("cannot duplicate the KVM VM fd: {e}"),
        })?;
        Ok(KvmGuest {
            vm,
            device,
            regions: memory.host_regions(),
            view: Arc::new(PlainView(Arc::clone(&memory))),
            memory,
        })
    }

    /// The host address of `gpa..gpa+len`, which must lie in one region.
    fn host_addr(&self, command: &'static str, gpa: u64, len: u64) -> Result<u64, SevError> {
        self.regions
            .iter()
            .find_map(|r| r.host_address(gpa, len))
            .ok_or(SevError::OutOfRange { command, gpa, len })
    }
}

/// One VM's SEV context on hardware.
#[derive(Debug)]
pub struct HardwareGuest {
    kvm: KvmGuest,
}

impl HardwareGuest {
    fn sev(&self) -> SevVm<'_> {
        SevVm::new(self.kvm.vm.as_fd(), self.kvm.device.as_fd())
    }

    /// Runs KVM command `command` (`f`) on this guest.
    fn run<T>(
        &self,
        command: &'static str,
        f: impl FnOnce(&SevVm<'_>) -> Result<T, HostError>,
    ) -> Result<T, SevError> {
        f(&self.sev()).map_err(|e| host_error(command, e))
    }
}

fn usize_len(command: &'static str, gpa: u64, len: u64) -> Result<usize, SevError> {
    usize::try_from(len).map_err(|_| SevError::OutOfRange { command, gpa, len })
}

impl LaunchCommands for HardwareGuest {
    fn launch_start(
        &self,
        share_handle: u32,
        policy: Policy,
        session: Option<&LaunchSession>,
    ) -> Result<u32, SevError> {
        let encoded = session.map(|s| (s.godh.encode(), s.session.to_bytes()));
        let (godh, session) = match &encoded {
            Some((g, s)) => (Some(&g[..]), Some(&s[..])),
            None => (None, None),
        };
        self.run("LAUNCH_START", |sev| {
            sev.launch_start_sharing(share_handle, policy.bits(), godh, session)
        })
    }

    fn launch_update_data(&self, gpa: u64, len: u64) -> Result<(), SevError> {
        const CMD: &str = "LAUNCH_UPDATE_DATA";
        let addr = self.kvm.host_addr(CMD, gpa, len)?;
        let len = usize_len(CMD, gpa, len)?;
        // SAFETY: `addr..addr+len` lies inside one of the regions of
        // `self.kvm.memory`, which this context keeps alive and whose contract
        // (`GuestMemory`) rules out Rust references into it, so in-place
        // encryption invalidates nothing.
        self.run(CMD, |sev| unsafe { sev.launch_update_data(addr, len) })
    }

    fn launch_update_vmsa(&self, _vmsas: &[VmsaPage]) -> Result<(), SevError> {
        // KVM encrypts the VMSAs it built from the vCPUs' registers, which
        // the VMM set from these pages.
        self.run("LAUNCH_UPDATE_VMSA", |sev| sev.launch_update_vmsa())
    }

    fn launch_measure(&self) -> Result<LaunchMeasurement, SevError> {
        self.run("LAUNCH_MEASURE", |sev| sev.launch_measure())
            .map(LaunchMeasurement::from_bytes)
    }

    fn launch_secret(
        &self,
        header: &PacketHeader,
        gpa: u64,
        secret: &[u8],
    ) -> Result<(), SevError> {
        const CMD: &str = "LAUNCH_SECRET";
        let addr = self.kvm.host_addr(CMD, gpa, secret.len() as u64)?;
        // SAFETY: as in `launch_update_data`: the destination lies inside
        // guest memory kept alive by `self.kvm.memory`, never referenced by Rust.
        self.run(CMD, |sev| unsafe {
            sev.launch_secret(&header.to_bytes(), addr, secret)
        })
    }

    fn launch_finish(&self) -> Result<(), SevError> {
        self.run("LAUNCH_FINISH", |sev| sev.launch_finish())
    }

    fn guest_status(&self) -> Result<GuestStatus, SevError> {
        let s = self.run("GUEST_STATUS", |sev| sev.guest_status())?;
        Ok(GuestStatus {
            handle: s.handle,
            policy: Policy::from_bits(s.policy),
            state: u8::try_from(s.state).ok().and_then(GuestState::from_u8),
        })
    }

    fn attestation_report(&self, mnonce: [u8; 16]) -> Result<Vec<u8>, SevError> {
        self.run("ATTESTATION", |sev| sev.attestation_report(mnonce))
    }
}

/// The guest page size: KVM's DBG commands pin one page of each side.
const DBG_PAGE: usize = 4096;

/// A page-aligned page: the bounce buffer of the DBG commands.
#[repr(C, align(4096))]
struct DbgPage([u8; DBG_PAGE]);

/// `gpa..gpa+len` cut at guest pages, each piece widened to 16-byte blocks:
/// (span start, offset of the piece in the span, piece length, span
/// length). A span never leaves its guest page (pages are 16-aligned).
fn dbg_pieces(
    command: &'static str,
    gpa: u64,
    len: usize,
) -> Result<Vec<(u64, usize, usize, usize)>, SevError> {
    let out_of_range = || SevError::OutOfRange {
        command,
        gpa,
        len: len as u64,
    };
    let end = gpa.checked_add(len as u64).ok_or_else(out_of_range)?;
    let page = DBG_PAGE as u64;
    let mut pieces = Vec::new();
    let mut at = gpa;
    while at < end {
        let piece_end = end.min((at | (page - 1)) + 1);
        let start = at & !15;
        let span_end = piece_end.checked_add(15).ok_or_else(out_of_range)? & !15;
        let off = usize::try_from(at - start).map_err(|_| out_of_range())?;
        let n = usize::try_from(piece_end - at).map_err(|_| out_of_range())?;
        let span = usize::try_from(span_end - start).map_err(|_| out_of_range())?;
        pieces.push((start, off, n, span));
        at = piece_end;
    }
    Ok(pieces)
}

/// One piece of a DBG call (see [`dbg_pieces`]): the host address of its
/// span, the span in the bounce page, and where the piece lies in the span
/// and in the caller's buffer.
struct DbgSpan<'a> {
    command: &'static str,
    /// The span's guest address.
    start: u64,
    addr: u64,
    bounce: &'a mut [u8],
    piece: std::ops::Range<usize>,
    buf: std::ops::Range<usize>,
}

impl DbgSpan<'_> {
    fn out_of_range(&self) -> SevError {
        SevError::OutOfRange {
            command: self.command,
            gpa: self.start,
            len: self.bounce.len() as u64,
        }
    }

    /// The piece in the bounce span.
    fn piece(&self) -> Result<&[u8], SevError> {
        self.bounce
            .get(self.piece.clone())
            .ok_or_else(|| self.out_of_range())
    }

    fn piece_mut(&mut self) -> Result<&mut [u8], SevError> {
        let e = self.out_of_range();
        self.bounce.get_mut(self.piece.clone()).ok_or(e)
    }
}

/// Runs `f` on each piece of `gpa..gpa+len` in turn, in one page-aligned
/// bounce page; `host_addr(start, len)` is the host address of a span.
fn dbg_spans(
    command: &'static str,
    gpa: u64,
    len: usize,
    mut host_addr: impl FnMut(u64, u64) -> Result<u64, SevError>,
    mut f: impl FnMut(DbgSpan<'_>) -> Result<(), SevError>,
) -> Result<(), SevError> {
    let mut bounce = Box::new(DbgPage([0; DBG_PAGE]));
    let mut done = 0usize;
    for (start, off, n, span) in dbg_pieces(command, gpa, len)? {
        let out_of_range = || SevError::OutOfRange {
            command,
            gpa: start,
            len: span as u64,
        };
        let addr = host_addr(start, span as u64)?;
        let bounce = bounce.0.get_mut(..span).ok_or_else(out_of_range)?;
        f(DbgSpan {
            command,
            start,
            addr,
            bounce,
            piece: off..off + n,
            buf: done..done + n,
        })?;
        done += n;
    }
    Ok(())
}

// KVM's `sev_dbg_crypt` cuts a call at the *source's* pages only and pins
// one page of the destination, and its read-modify-write of an unaligned
// DBG_ENCRYPT encrypts round_up(len, 16) bytes from the rounded-down
// destination (dropping the tail when the destination is unaligned). So
// sevm hands KVM only whole 16-byte blocks inside one guest page, to or
// from a page-aligned bounce page, and does any read-modify-write itself
// (docs/guide/sev-emulate.md#sevm).
impl DebugCommands for HardwareGuest {
    fn dbg_decrypt(&self, gpa: u64, buf: &mut [u8]) -> Result<(), SevError> {
        const CMD: &str = "DBG_DECRYPT";
        let host_addr = |start, len| self.kvm.host_addr(CMD, start, len);
        dbg_spans(CMD, gpa, buf.len(), host_addr, |s| {
            self.run(CMD, |sev| sev.dbg_decrypt(s.addr, s.bounce))?;
            buf.get_mut(s.buf.clone())
                .ok_or_else(|| s.out_of_range())?
                .copy_from_slice(s.piece()?);
            Ok(())
        })
    }

    fn dbg_encrypt(&self, data: &[u8], gpa: u64) -> Result<(), SevError> {
        const CMD: &str = "DBG_ENCRYPT";
        let host_addr = |start, len| self.kvm.host_addr(CMD, start, len);
        dbg_spans(CMD, gpa, data.len(), host_addr, |mut s| {
            if s.piece.start != 0 || s.piece.len() != s.bounce.len() {
                self.run(CMD, |sev| sev.dbg_decrypt(s.addr, s.bounce))?;
            }
            let src = data.get(s.buf.clone()).ok_or_else(|| s.out_of_range())?;
            s.piece_mut()?.copy_from_slice(src);
            let b = &*s.bounce;
            // SAFETY: the destination lies inside guest memory kept alive by
            // `self.kvm.memory`, never referenced by Rust.
            self.run(CMD, |sev| unsafe { sev.dbg_encrypt(b, s.addr) })?;
            Ok(())
        })
    }
}

impl MigrationCommands for HardwareGuest {
    fn send_start(&self, target: &MigrationTarget) -> Result<(Policy, SessionBuffer), SevError> {
        const CMD: &str = "SEND_START";
        let amd = target.amd.as_ref().map(CaChain::encode).unwrap_or_default();
        let (policy, session) = self.run(CMD, |sev| {
            sev.send_start(&target.pdh.encode(), &target.chain.encode(), &amd)
        })?;
        let session = SevError::decoded(CMD, "session", SessionBuffer::decode(&session))?;
        Ok((Policy::from_bits(policy), session))
    }

    fn send_update_data_into(
        &self,
        gpa: u64,
        len: u64,
        header: &mut Vec<u8>,
        trans: &mut Vec<u8>,
    ) -> Result<(), SevError> {
        let (h, t) = self.send_update_data(gpa, len)?;
        *header = h;
        *trans = t;
        Ok(())
    }

    fn send_update_data(&self, gpa: u64, len: u64) -> Result<(Vec<u8>, Vec<u8>), SevError> {
        const CMD: &str = "SEND_UPDATE_DATA";
        let addr = self.kvm.host_addr(CMD, gpa, len)?;
        let len = usize_len(CMD, gpa, len)?;
        self.run(CMD, |sev| sev.send_update_data(addr, len))
    }

    fn send_finish(&self) -> Result<(), SevError> {
        self.run("SEND_FINISH", |sev| sev.send_finish())
    }

    fn send_cancel(&self) -> Result<(), SevError> {
        self.run("SEND_CANCEL", |sev| sev.send_cancel())
    }

    fn receive_start(
        &self,
        policy: Policy,
        pdh: &Certificate,
        session: &SessionBuffer,
    ) -> Result<u32, SevError> {
        self.run("RECEIVE_START", |sev| {
            sev.receive_start(policy.bits(), &pdh.encode(), &session.to_bytes())
        })
    }

    fn receive_update_data(&self, header: &[u8], gpa: u64, trans: &[u8]) -> Result<(), SevError> {
        const CMD: &str = "RECEIVE_UPDATE_DATA";
        let addr = self.kvm.host_addr(CMD, gpa, trans.len() as u64)?;
        // SAFETY: the destination lies inside guest memory kept alive by
        // `self.kvm.memory`, never referenced by Rust.
        self.run(CMD, |sev| unsafe {
            sev.receive_update_data(header, addr, trans)
        })
    }

    fn receive_finish(&self) -> Result<(), SevError> {
        self.run("RECEIVE_FINISH", |sev| sev.receive_finish())
    }
}

impl GuestContext for HardwareGuest {
    fn host_view(&self) -> Arc<dyn HostView> {
        Arc::clone(&self.kvm.view) as Arc<dyn HostView>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbg_pieces_are_whole_blocks_inside_one_page() {
        // 7 bytes into a page, three pages and a bit: four pieces.
        let p = dbg_pieces("DBG_ENCRYPT", 0x30_0007, 3 * 4096 + 5).unwrap();
        assert_eq!(
            p,
            vec![
                (0x30_0000, 7, 4089, 4096),
                (0x30_1000, 0, 4096, 4096),
                (0x30_2000, 0, 4096, 4096),
                (0x30_3000, 0, 12, 16),
            ]
        );
        // Inside one block, and a piece ending mid-block.
        assert_eq!(
            dbg_pieces("DBG_DECRYPT", 0x1003, 5).unwrap(),
            vec![(0x1000, 3, 5, 16)]
        );
        assert_eq!(
            dbg_pieces("DBG_DECRYPT", 0x0ff8, 0x10).unwrap(),
            vec![(0x0ff0, 8, 8, 16), (0x1000, 0, 8, 16)]
        );
        assert!(dbg_pieces("DBG_DECRYPT", 0, 0).unwrap().is_empty());
        assert!(dbg_pieces("DBG_DECRYPT", u64::MAX - 3, 8).is_err());
        let page = DbgPage([0; DBG_PAGE]);
        assert_eq!(std::ptr::addr_of!(page) as usize % DBG_PAGE, 0);
    }

    #[test]
    fn dbg_spans_hand_each_piece_its_span_and_place_in_the_buffer() {
        // 7 bytes into a page, two pages and a bit: host addresses asked per
        // span, the bounce span as long as the span, the piece's place in
        // it and in the caller's buffer, consecutive.
        let mut asked = Vec::new();
        let mut seen = Vec::new();
        let host_addr = |start: u64, len: u64| {
            asked.push((start, len));
            Ok(start + 0x7f00_0000_0000)
        };
        dbg_spans("DBG_DECRYPT", 0x30_0007, 2 * 4096 + 20, host_addr, |s| {
            assert_eq!(s.bounce.as_ptr() as usize % DBG_PAGE, 0);
            seen.push((s.addr, s.bounce.len(), s.piece, s.buf));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            asked,
            vec![(0x30_0000, 4096), (0x30_1000, 4096), (0x30_2000, 32)]
        );
        assert_eq!(
            seen,
            vec![
                (0x7f00_0030_0000, 4096, 7..4096, 0..4089),
                (0x7f00_0030_1000, 4096, 0..4096, 4089..8185),
                (0x7f00_0030_2000, 32, 0..27, 8185..8212),
            ]
        );
        // An error of the host address or of `f` ends the call there.
        let mut calls = 0;
        let first_page_only = |start: u64, len: u64| {
            if start < 0x2000 {
                Ok(start)
            } else {
                Err(SevError::Platform(format!(
                    "no page at {start:#x}+{len:#x}"
                )))
            }
        };
        let e = dbg_spans("DBG_ENCRYPT", 0x1ff0, 0x20, first_page_only, |_| {
            calls += 1;
            Ok(())
        })
        .unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(e.to_string(), "no page at 0x2000+0x10");
        let e = dbg_spans(
            "DBG_DECRYPT",
            0x1003,
            8,
            |a, _| Ok(a),
            |s| Err(s.out_of_range()),
        );
        assert!(
            matches!(
                e,
                Err(SevError::OutOfRange {
                    command: "DBG_DECRYPT",
                    gpa: 0x1000,
                    len: 16
                })
            ),
            "{e:?}"
        );
    }

    #[test]
    fn missing_device_is_an_open_error_naming_it() {
        let e = HardwarePlatform::open(Path::new("/nonexistent/sev")).unwrap_err();
        assert!(matches!(e, OpenError::Hardware(_)));
        assert!(error_chain(&e).contains("/nonexistent/sev"), "{e}");
    }

    #[test]
    fn firmware_status_from_the_kernel_stays_data() {
        let e = host_error(
            "LAUNCH_SECRET",
            HostError::Firmware {
                cmd: "KVM_SEV_LAUNCH_SECRET",
                code: 0x0B,
            },
        );
        assert_eq!(e.status(), Some(StatusCode(0x0B)));
        assert!(e
            .to_string()
            .starts_with("SEV: LAUNCH_SECRET failed: BAD_MEASUREMENT (0x0B)"));
        let e = host_error("LAUNCH_START", HostError::Empty { what: "session" });
        assert_eq!(e.status(), None);
        assert_eq!(e.to_string(), "SEV: LAUNCH_START failed: session is empty");
    }

    /// On a host with SEV hardware: the platform answers and exports its
    /// certificates (the full launch is exercised by sevm's integration
    /// tests).
    #[test]
    fn hardware_platform_status_and_pdh() {
        if !sevm_testutil::sev_device("hardware_platform_status_and_pdh") {
            return;
        }
        let p = HardwarePlatform::open(Path::new("/dev/sev")).unwrap();
        let s = p.status().unwrap();
        assert!(s.api.major > 0 || s.api.minor > 0);
        let certs = p.pdh_cert_export().unwrap();
        assert_eq!(certs.pdh.encode().len(), sev_proto::abi::SEV_CERT_LEN);
        assert_eq!(
            certs.chain.encode().len(),
            sev_proto::abi::PLATFORM_CHAIN_LEN
        );
        assert!(p.encryption_params().unwrap().cbitpos > 0);
    }
}
