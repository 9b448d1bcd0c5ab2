//! Guest commands through KVM: `KVM_MEMORY_ENCRYPT_OP` and the encrypted-
//! region ioctls on a VM fd (docs/protocol/linux.md#kvm, docs/protocol/linux.md#launch-sequence,
//! docs/protocol/memory.md#debug-commands).
//!
//! Addresses given as `u64` ("host addresses") are virtual addresses in this
//! process: KVM pins the pages behind them and hands their physical addresses
//! to the firmware. Methods through which the firmware *writes* at such an
//! address (encrypting in place, injecting a secret, receiving a page,
//! debug-encrypting) are `unsafe`: the caller promises that the range is guest
//! memory it owns and never accesses through Rust references.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::abi::{
    kvm_enc_region, kvm_sev_attestation_report, kvm_sev_cmd, kvm_sev_dbg, kvm_sev_guest_status,
    kvm_sev_launch_measure, kvm_sev_launch_secret, kvm_sev_launch_start,
    kvm_sev_launch_update_data, kvm_sev_receive_start, kvm_sev_receive_update_data,
    kvm_sev_send_start, kvm_sev_send_update_data, DbgDecrypt, DbgEncrypt, KvmSevCommand,
    KvmSevInit, LaunchFinish, LaunchUpdateVmsa, ReceiveFinish, SendCancel, SendFinish, SevEsInit,
    SevInit, PAGE_SIZE, SEV_FW_BLOB_MAX_SIZE,
};
use crate::error::{
    accept_length_query, check_aligned, check_blob, check_len, check_range, ioctl_failure,
    reported_len, Result,
};
use crate::ioctl::{
    KVM_MEMORY_ENCRYPT_OP, KVM_MEMORY_ENCRYPT_REG_REGION, KVM_MEMORY_ENCRYPT_UNREG_REGION,
};
use crate::HostError;

/// Size of the LAUNCH_MEASURE output: 32-byte MAC ‖ 16-byte MNONCE
/// (docs/protocol/measurement.md#launch-measure).
pub const MEASUREMENT_LEN: usize = 48;

/// Acceptable firmware-reported blob lengths, in words.
const BLOB_RANGE: &str = "1..=16384";
/// Acceptable length reported after a fetch, in words.
const FETCHED: &str = "1..=the buffer size from the length query";

/// Largest length a `u32` length field can carry.
const U32_MAX_LEN: usize = u32::MAX as usize;

/// What GUEST_STATUS returns (`struct kvm_sev_guest_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestStatus {
    /// Firmware guest handle.
    pub handle: u32,
    /// Guest policy.
    pub policy: u32,
    /// Raw guest state (docs/protocol/abi.md#guest-states: 0 UNINIT, 1 LUPDATE, 2 LSECRET,
    /// 3 RUNNING, 4 SUPDATE, 5 RUPDATE, 6 SENT). A `u32` in the uapi header
    /// (docs/protocol/choices.md#u4).
    pub state: u32,
}

/// The SEV context of one KVM VM: the VM fd and a `/dev/sev` fd, both
/// borrowed for `'fd`.
#[derive(Debug)]
pub struct SevVm<'fd> {
    vm: BorrowedFd<'fd>,
    sev: BorrowedFd<'fd>,
    /// SEND_UPDATE_DATA header length learnt from the first length query
    /// (0 = not yet known). QEMU caches it the same way.
    send_hdr_len: AtomicU32,
}

impl<'fd> SevVm<'fd> {
    /// Wrap a KVM VM fd and an open `/dev/sev` fd (e.g.
    /// `SevDevice::as_fd()`). The kernel needs the `/dev/sev` fd for
    /// LAUNCH_START/RECEIVE_START and remembers it for later commands; it is
    /// sent with every command.
    #[must_use]
    pub fn new(vm: BorrowedFd<'fd>, sev: BorrowedFd<'fd>) -> Self {
        Self {
            vm,
            sev,
            send_hdr_len: AtomicU32::new(0),
        }
    }

    /// The VM fd.
    pub(crate) fn vm_fd(&self) -> BorrowedFd<'fd> {
        self.vm
    }

    /// Issue one `KVM_MEMORY_ENCRYPT_OP`.
    ///
    /// # Safety
    ///
    /// Every user address inside `payload` must be null or point to memory
    /// that is valid for the accesses the kernel and firmware make for `C`
    /// over the length given next to it, for the duration of the call: caller
    /// buffers the kernel writes must be owned by the caller and not otherwise
    /// accessed; guest memory the firmware writes must not be referenced by
    /// Rust references.
    pub(crate) unsafe fn issue<C: KvmSevCommand>(&self, payload: &mut C) -> Result<()> {
        let data = if C::HAS_DATA {
            std::ptr::from_mut(payload) as u64
        } else {
            0
        };
        let mut cmd = kvm_sev_cmd {
            id: C::ID,
            pad0: 0,
            data,
            error: 0,
            // An fd is non-negative; the kernel reads it as __u32.
            sev_fd: self.sev.as_raw_fd().unsigned_abs(),
        };
        log::debug!("{}: issuing", C::NAME);
        // SAFETY: `self.vm` is a live fd for `'fd`; `cmd` is a live
        // `struct kvm_sev_cmd` (24 bytes, layout tested in `abi`); `cmd.data`
        // is 0 or points to `*payload`, which the `KvmSevCommand` impl
        // guarantees is the structure the kernel expects for `C::ID`; the
        // buffers it references are valid per this function's contract.
        let rc = unsafe {
            libc::ioctl(
                self.vm.as_raw_fd(),
                KVM_MEMORY_ENCRYPT_OP as libc::Ioctl,
                std::ptr::from_mut(&mut cmd),
            )
        };
        if rc < 0 {
            let errno = io::Error::last_os_error();
            let fw_error = cmd.error;
            log::debug!(
                "{}: failed: {errno}, firmware status {fw_error:#x}",
                C::NAME
            );
            return Err(ioctl_failure(C::NAME, errno, fw_error));
        }
        Ok(())
    }

    /// KVM_SEV_INIT (`es` false) or KVM_SEV_ES_INIT (`es` true), on a VM
    /// created with the default machine type.
    ///
    /// # Errors
    /// [`HostError::Ioctl`] or [`HostError::Firmware`].
    pub fn init(&self, es: bool) -> Result<()> {
        // SAFETY: no payload is sent.
        unsafe {
            if es {
                self.issue(&mut SevEsInit)
            } else {
                self.issue(&mut SevInit)
            }
        }
    }

    /// KVM_SEV_INIT2 on a VM created with type KVM_X86_SEV_VM /
    /// KVM_X86_SEV_ES_VM (see [`crate::abi::vm_type`]); `ghcb_version` 0
    /// (the kernel's default), `flags` 0. `vmsa_features` must be 0 for SEV;
    /// for SEV-ES only bit 5 (DEBUG_SWAP) is accepted — virtee/sev's
    /// `init_default_es()` value 0x1 is rejected by the kernel
    /// (docs/protocol/choices.md#u8). The VMSA features change the SEV-ES launch
    /// measurement (docs/protocol/choices.md#u9).
    ///
    /// # Errors
    /// [`HostError::Ioctl`] (EINVAL for unsupported `vmsa_features`, or on a
    /// default-type VM) or [`HostError::Firmware`].
    pub fn init2(&self, vmsa_features: u64) -> Result<()> {
        let mut init = KvmSevInit {
            vmsa_features,
            ..KvmSevInit::default()
        };
        // SAFETY: the payload holds no addresses.
        unsafe { self.issue(&mut init) }
    }

    /// KVM_SEV_LAUNCH_START, then (in the kernel) ACTIVATE. `godh` is the
    /// guest owner's DH certificate and `session` the session buffer; both
    /// absent for an unattested launch. Returns the firmware guest handle.
    ///
    /// # Errors
    /// [`HostError::Empty`] / [`HostError::TooLarge`] (over 16 KiB) before
    /// any ioctl; then [`HostError::Ioctl`] or [`HostError::Firmware`].
    pub fn launch_start(
        &self,
        policy: u32,
        godh: Option<&[u8]>,
        session: Option<&[u8]>,
    ) -> Result<u32> {
        self.launch_start_sharing(0, policy, godh, session)
    }

    /// KVM_SEV_LAUNCH_START with a non-zero `share_handle`: the new guest
    /// shares the memory-encryption key of that running guest (QEMU's
    /// `sev-guest,handle=`; the firmware refuses it when either policy has
    /// NOKS). `share_handle` 0 is [`launch_start`](Self::launch_start).
    ///
    /// # Errors
    /// As [`launch_start`](Self::launch_start).
    pub fn launch_start_sharing(
        &self,
        share_handle: u32,
        policy: u32,
        godh: Option<&[u8]>,
        session: Option<&[u8]>,
    ) -> Result<u32> {
        let (dh_uaddr, dh_len) = optional_blob("GODH certificate", godh)?;
        let (session_uaddr, session_len) = optional_blob("session", session)?;
        let mut start = kvm_sev_launch_start {
            handle: share_handle,
            policy,
            dh_uaddr,
            dh_len,
            session_uaddr,
            session_len,
            ..Default::default()
        };
        // SAFETY: the addresses are 0 or point to caller slices of exactly the
        // lengths given; the kernel only reads them.
        unsafe { self.issue(&mut start) }?;
        Ok(start.handle)
    }

    /// KVM_SEV_LAUNCH_UPDATE_DATA over `len` bytes at `host_addr`: measured,
    /// then encrypted in place with the guest key.
    ///
    /// # Errors
    /// Before any ioctl: [`HostError::NullAddress`], [`HostError::Empty`],
    /// [`HostError::AddressOverflow`], [`HostError::TooLarge`] (over
    /// `u32::MAX`), [`HostError::Misaligned`] (address or length not a
    /// multiple of 16, as the firmware requires). Then [`HostError::Ioctl`]
    /// or [`HostError::Firmware`].
    ///
    /// # Safety
    ///
    /// `host_addr..host_addr + len` must be guest memory owned by the caller
    /// (e.g. an anonymous mapping registered with
    /// [`register_region`](Self::register_region)) that no Rust reference
    /// points into: on hardware its contents are replaced by ciphertext.
    pub unsafe fn launch_update_data(&self, host_addr: u64, len: usize) -> Result<()> {
        let len32 = check_len("LAUNCH_UPDATE_DATA region", len, U32_MAX_LEN)?;
        check_range("LAUNCH_UPDATE_DATA region", host_addr, u64::from(len32))?;
        // The firmware wants PADDR 16-byte aligned and LEN a multiple of 16
        // (docs/protocol/commands.md#buffers). KVM splits the range only at page boundaries,
        // so checking the user range here catches it with the argument named.
        check_aligned("LAUNCH_UPDATE_DATA address", host_addr, 16)?;
        check_aligned("LAUNCH_UPDATE_DATA length", u64::from(len32), 16)?;
        let mut update = kvm_sev_launch_update_data {
            uaddr: host_addr,
            len: len32,
            ..Default::default()
        };
        // SAFETY: the range is valid guest memory per this function's
        // contract; the kernel pins it and the firmware encrypts it in place.
        unsafe { self.issue(&mut update) }
    }

    /// KVM_SEV_LAUNCH_UPDATE_VMSA: measure and encrypt every vCPU's VMSA
    /// (SEV-ES), in vCPU-index order.
    ///
    /// # Errors
    /// [`HostError::Ioctl`] or [`HostError::Firmware`].
    pub fn launch_update_vmsa(&self) -> Result<()> {
        // SAFETY: no payload is sent; the VMSA pages belong to the kernel.
        unsafe { self.issue(&mut LaunchUpdateVmsa) }
    }

    /// KVM_SEV_LAUNCH_MEASURE: the 48-byte measurement blob (MAC ‖ MNONCE).
    /// Queries the length first and checks it is 48.
    ///
    /// # Errors
    /// [`HostError::Ioctl`], [`HostError::Firmware`], or
    /// [`HostError::BadReportedLength`] if the firmware reports another size.
    pub fn launch_measure(&self) -> Result<[u8; MEASUREMENT_LEN]> {
        let mut query = kvm_sev_launch_measure::default();
        // SAFETY: `len` is 0: the kernel calls the firmware with a null buffer
        // and only writes the length back.
        accept_length_query(unsafe { self.issue(&mut query) })?;
        check_measurement_len(query.len)?;

        let mut measurement = [0u8; MEASUREMENT_LEN];
        let mut fetch = kvm_sev_launch_measure {
            uaddr: measurement.as_mut_ptr() as u64,
            len: query.len,
            ..Default::default()
        };
        // SAFETY: `uaddr` points to `measurement`, a live 48-byte buffer that
        // nothing else touches during the call.
        unsafe { self.issue(&mut fetch) }?;
        check_measurement_len(fetch.len)?;
        Ok(measurement)
    }

    /// KVM_SEV_LAUNCH_SECRET: inject the guest owner's packet (`hdr`, the
    /// 52-byte header; `trans`, the encrypted payload) at `guest_host_addr`.
    /// GUEST_LEN is `trans.len()`, as QEMU sends it.
    ///
    /// # Errors
    /// Before any ioctl: [`HostError::Empty`] / [`HostError::TooLarge`] for
    /// `hdr`/`trans` (16 KiB limit), [`HostError::NullAddress`],
    /// [`HostError::AddressOverflow`], [`HostError::Misaligned`] (destination
    /// not 16-byte aligned). Then [`HostError::Ioctl`] or
    /// [`HostError::Firmware`].
    ///
    /// # Safety
    ///
    /// `guest_host_addr..guest_host_addr + trans.len()` must be guest memory
    /// owned by the caller that no Rust reference points into: the firmware
    /// writes the decrypted secret there (encrypted with the guest key).
    pub unsafe fn launch_secret(
        &self,
        hdr: &[u8],
        guest_host_addr: u64,
        trans: &[u8],
    ) -> Result<()> {
        // UNCERTAIN (docs/protocol/choices.md#u14): chose GUEST_LEN = TRANS_LEN and
        // require a 16-byte aligned destination, because QEMU and every tool
        // send equal lengths and the firmware's behaviour otherwise is unknown.
        let hdr_len = check_blob("secret header", hdr, SEV_FW_BLOB_MAX_SIZE)?;
        let trans_len = check_blob("secret payload", trans, SEV_FW_BLOB_MAX_SIZE)?;
        check_range("secret destination", guest_host_addr, u64::from(trans_len))?;
        check_aligned("secret destination", guest_host_addr, 16)?;
        let mut secret = kvm_sev_launch_secret {
            hdr_uaddr: hdr.as_ptr() as u64,
            hdr_len,
            guest_uaddr: guest_host_addr,
            guest_len: trans_len,
            trans_uaddr: trans.as_ptr() as u64,
            trans_len,
            ..Default::default()
        };
        // SAFETY: `hdr` and `trans` are caller slices of exactly the lengths
        // given, only read; the guest range is valid per this function's
        // contract.
        unsafe { self.issue(&mut secret) }
    }

    /// KVM_SEV_LAUNCH_FINISH.
    ///
    /// # Errors
    /// [`HostError::Ioctl`] or [`HostError::Firmware`].
    pub fn launch_finish(&self) -> Result<()> {
        // SAFETY: no payload is sent.
        unsafe { self.issue(&mut LaunchFinish) }
    }

    /// KVM_SEV_GUEST_STATUS.
    ///
    /// # Errors
    /// [`HostError::Ioctl`] or [`HostError::Firmware`].
    pub fn guest_status(&self) -> Result<GuestStatus> {
        let mut status = kvm_sev_guest_status::default();
        // SAFETY: the payload holds no addresses; the kernel writes `status`.
        unsafe { self.issue(&mut status) }?;
        Ok(GuestStatus {
            handle: status.handle,
            policy: status.policy,
            state: status.state,
        })
    }

    /// KVM_SEV_GET_ATTESTATION_REPORT with the caller's `mnonce`. Queries
    /// the length first, then fetches.
    ///
    /// # Errors
    /// [`HostError::Ioctl`], [`HostError::Firmware`], or
    /// [`HostError::BadReportedLength`].
    pub fn attestation_report(&self, mnonce: [u8; 16]) -> Result<Vec<u8>> {
        const NAME: &str = <kvm_sev_attestation_report as KvmSevCommand>::NAME;
        let mut query = kvm_sev_attestation_report {
            mnonce,
            ..Default::default()
        };
        // SAFETY: `len` is 0: the kernel only writes the length back.
        accept_length_query(unsafe { self.issue(&mut query) })?;
        let len = reported_len(NAME, "report", query.len, SEV_FW_BLOB_MAX_SIZE, BLOB_RANGE)?;

        let mut report = vec![0u8; len];
        let mut fetch = kvm_sev_attestation_report {
            mnonce,
            uaddr: report.as_mut_ptr() as u64,
            len: query.len,
            ..Default::default()
        };
        // SAFETY: `uaddr` points to `report`, a live buffer of exactly `len`
        // bytes that nothing else touches during the call.
        unsafe { self.issue(&mut fetch) }?;
        let got = reported_len(NAME, "report", fetch.len, len, FETCHED)?;
        report.truncate(got);
        Ok(report)
    }

    /// KVM_SEV_DBG_DECRYPT: read `dst.len()` bytes of guest memory at
    /// `src_host_addr`, decrypted with the guest key, into `dst`. KVM cuts
    /// the call at the source's pages only and bounces unaligned spans; keep
    /// `dst` inside one page and whole 16-byte blocks to be safe, as
    /// sev-firmware's hardware guest does (docs/protocol/choices.md#u91).
    /// Fails with the firmware's POLICY_FAILURE when the policy has NODBG.
    ///
    /// # Errors
    /// Before any ioctl: [`HostError::Empty`], [`HostError::TooLarge`],
    /// [`HostError::NullAddress`], [`HostError::AddressOverflow`]. Then
    /// [`HostError::Ioctl`] or [`HostError::Firmware`].
    pub fn dbg_decrypt(&self, src_host_addr: u64, dst: &mut [u8]) -> Result<()> {
        if dst.is_empty() {
            return Err(HostError::Empty {
                what: "DBG_DECRYPT destination",
            });
        }
        let len = check_len("DBG_DECRYPT destination", dst.len(), U32_MAX_LEN)?;
        check_range("DBG_DECRYPT source", src_host_addr, u64::from(len))?;
        let mut dbg = DbgDecrypt(kvm_sev_dbg {
            src_uaddr: src_host_addr,
            dst_uaddr: dst.as_mut_ptr() as u64,
            len,
            ..Default::default()
        });
        // SAFETY: `dst_uaddr` points to `dst`, a live exclusive buffer of
        // exactly `len` bytes; the source is only read (pinned read-only by
        // the kernel), which cannot invalidate any Rust value.
        unsafe { self.issue(&mut dbg) }
    }

    /// KVM_SEV_DBG_ENCRYPT: write `src` into guest memory at
    /// `dst_host_addr`, encrypted with the guest key. KVM's read-modify-write
    /// of an unaligned span drops its tail when the destination is not
    /// 16-byte aligned: pass whole blocks inside one page
    /// (docs/protocol/choices.md#u91).
    ///
    /// # Errors
    /// As [`dbg_decrypt`](Self::dbg_decrypt).
    ///
    /// # Safety
    ///
    /// `dst_host_addr..dst_host_addr + src.len()` must be guest memory owned
    /// by the caller that no Rust reference points into.
    pub unsafe fn dbg_encrypt(&self, src: &[u8], dst_host_addr: u64) -> Result<()> {
        let len = check_blob("DBG_ENCRYPT source", src, U32_MAX_LEN)?;
        check_range("DBG_ENCRYPT destination", dst_host_addr, u64::from(len))?;
        let mut dbg = DbgEncrypt(kvm_sev_dbg {
            src_uaddr: src.as_ptr() as u64,
            dst_uaddr: dst_host_addr,
            len,
            ..Default::default()
        });
        // SAFETY: `src` is a caller slice of exactly `len` bytes, only read;
        // the destination is valid guest memory per this function's contract.
        unsafe { self.issue(&mut dbg) }
    }

    /// KVM_SEV_SEND_START towards a target platform: its PDH certificate, its
    /// PEK ‖ OCA ‖ CEK chain and the AMD ASK ‖ ARK. Returns the guest policy
    /// and the session buffer (length queried first).
    ///
    /// # Errors
    /// Before any ioctl: [`HostError::Empty`] / [`HostError::TooLarge`] for
    /// any blob. Then [`HostError::Ioctl`], [`HostError::Firmware`], or
    /// [`HostError::BadReportedLength`].
    pub fn send_start(
        &self,
        pdh: &[u8],
        plat_certs: &[u8],
        amd_certs: &[u8],
    ) -> Result<(u32, Vec<u8>)> {
        const NAME: &str = <kvm_sev_send_start as KvmSevCommand>::NAME;
        let pdh_len = check_blob("target PDH certificate", pdh, SEV_FW_BLOB_MAX_SIZE)?;
        let plat_len = check_blob("target platform chain", plat_certs, SEV_FW_BLOB_MAX_SIZE)?;
        let amd_len = check_blob("AMD chain", amd_certs, SEV_FW_BLOB_MAX_SIZE)?;

        let mut query = kvm_sev_send_start::default();
        // SAFETY: `session_len` is 0: the kernel only queries the session
        // length and writes it back; no address is used.
        accept_length_query(unsafe { self.issue(&mut query) })?;
        let len = reported_len(
            NAME,
            "session",
            query.session_len,
            SEV_FW_BLOB_MAX_SIZE,
            BLOB_RANGE,
        )?;

        let mut session = vec![0u8; len];
        let mut start = kvm_sev_send_start {
            pdh_cert_uaddr: pdh.as_ptr() as u64,
            pdh_cert_len: pdh_len,
            plat_certs_uaddr: plat_certs.as_ptr() as u64,
            plat_certs_len: plat_len,
            amd_certs_uaddr: amd_certs.as_ptr() as u64,
            amd_certs_len: amd_len,
            session_uaddr: session.as_mut_ptr() as u64,
            session_len: query.session_len,
            ..Default::default()
        };
        // SAFETY: the three certificate addresses are caller slices of exactly
        // the lengths given, only read; `session_uaddr` points to `session`, a
        // live buffer of exactly `session_len` bytes nothing else touches.
        unsafe { self.issue(&mut start) }?;
        let got = reported_len(NAME, "session", start.session_len, len, FETCHED)?;
        session.truncate(got);
        Ok((start.policy, session))
    }

    /// KVM_SEV_SEND_UPDATE_DATA for `len` bytes of guest memory at
    /// `guest_host_addr` (within one 4 KiB page). Returns the packet header
    /// and the transport-encrypted data (`len` bytes). The header length is
    /// queried once and remembered.
    ///
    /// # Errors
    /// Before any ioctl: [`HostError::NullAddress`], [`HostError::Empty`],
    /// [`HostError::TooLarge`] (over 4096), [`HostError::CrossesPage`].
    /// Then [`HostError::Ioctl`], [`HostError::Firmware`] or
    /// [`HostError::BadReportedLength`].
    pub fn send_update_data(&self, guest_host_addr: u64, len: usize) -> Result<(Vec<u8>, Vec<u8>)> {
        let len32 = check_page_range("SEND_UPDATE_DATA source", guest_host_addr, len)?;
        let hdr_len = self.send_header_len()?;
        let hdr_len_usize = reported_len(
            <kvm_sev_send_update_data as KvmSevCommand>::NAME,
            "packet header",
            hdr_len,
            SEV_FW_BLOB_MAX_SIZE,
            BLOB_RANGE,
        )?;
        let mut hdr = vec![0u8; hdr_len_usize];
        // TRANS_LEN = GUEST_LEN: the firmware needs TRANS_LEN >= GUEST_LEN
        // (docs/protocol/migration.md#transport-packets); QEMU sizes the transport buffer the same
        // way.
        let mut trans = vec![0u8; len];
        let mut update = kvm_sev_send_update_data {
            hdr_uaddr: hdr.as_mut_ptr() as u64,
            hdr_len,
            guest_uaddr: guest_host_addr,
            guest_len: len32,
            trans_uaddr: trans.as_mut_ptr() as u64,
            trans_len: len32,
            ..Default::default()
        };
        // SAFETY: `hdr_uaddr` and `trans_uaddr` point to `hdr` and `trans`,
        // live buffers of exactly the lengths given that nothing else touches;
        // the guest page is only read (pinned read-only by the kernel).
        unsafe { self.issue(&mut update) }?;
        Ok((hdr, trans))
    }

    /// The SEND_UPDATE_DATA header length, from the cache or a length query.
    fn send_header_len(&self) -> Result<u32> {
        let cached = self.send_hdr_len.load(Ordering::Relaxed);
        if cached != 0 {
            return Ok(cached);
        }
        let mut query = kvm_sev_send_update_data::default();
        // SAFETY: `hdr_len`/`trans_len` are 0: the kernel only queries the
        // lengths and writes them back; no address is used.
        accept_length_query(unsafe { self.issue(&mut query) })?;
        reported_len(
            <kvm_sev_send_update_data as KvmSevCommand>::NAME,
            "packet header",
            query.hdr_len,
            SEV_FW_BLOB_MAX_SIZE,
            BLOB_RANGE,
        )?;
        self.send_hdr_len.store(query.hdr_len, Ordering::Relaxed);
        Ok(query.hdr_len)
    }

    /// KVM_SEV_SEND_FINISH.
    ///
    /// # Errors
    /// [`HostError::Ioctl`] or [`HostError::Firmware`].
    pub fn send_finish(&self) -> Result<()> {
        // SAFETY: no payload is sent.
        unsafe { self.issue(&mut SendFinish) }
    }

    /// KVM_SEV_SEND_CANCEL: back to RUNNING, the source keeps going.
    ///
    /// # Errors
    /// [`HostError::Ioctl`] or [`HostError::Firmware`].
    pub fn send_cancel(&self) -> Result<()> {
        // SAFETY: no payload is sent.
        unsafe { self.issue(&mut SendCancel) }
    }

    /// KVM_SEV_RECEIVE_START with the policy received from the source, the
    /// *source* platform's PDH and the session buffer. Returns the new
    /// firmware handle.
    ///
    /// # Errors
    /// Before any ioctl: [`HostError::Empty`] / [`HostError::TooLarge`].
    /// Then [`HostError::Ioctl`] or [`HostError::Firmware`].
    pub fn receive_start(&self, policy: u32, pdh: &[u8], session: &[u8]) -> Result<u32> {
        let pdh_len = check_blob("source PDH certificate", pdh, SEV_FW_BLOB_MAX_SIZE)?;
        let session_len = check_blob("session", session, SEV_FW_BLOB_MAX_SIZE)?;
        let mut start = kvm_sev_receive_start {
            handle: 0,
            policy,
            pdh_uaddr: pdh.as_ptr() as u64,
            pdh_len,
            session_uaddr: session.as_ptr() as u64,
            session_len,
            ..Default::default()
        };
        // SAFETY: both addresses are caller slices of exactly the lengths
        // given; the kernel only reads them.
        unsafe { self.issue(&mut start) }?;
        Ok(start.handle)
    }

    /// KVM_SEV_RECEIVE_UPDATE_DATA: decrypt a packet from the source into
    /// guest memory at `guest_host_addr` (GUEST_LEN = `trans.len()`, within
    /// one 4 KiB page).
    ///
    /// # Errors
    /// Before any ioctl: [`HostError::Empty`] / [`HostError::TooLarge`],
    /// [`HostError::NullAddress`], [`HostError::CrossesPage`]. Then
    /// [`HostError::Ioctl`] or [`HostError::Firmware`].
    ///
    /// # Safety
    ///
    /// `guest_host_addr..guest_host_addr + trans.len()` must be guest memory
    /// owned by the caller that no Rust reference points into.
    pub unsafe fn receive_update_data(
        &self,
        hdr: &[u8],
        guest_host_addr: u64,
        trans: &[u8],
    ) -> Result<()> {
        let hdr_len = check_blob("packet header", hdr, SEV_FW_BLOB_MAX_SIZE)?;
        if trans.is_empty() {
            return Err(HostError::Empty {
                what: "packet payload",
            });
        }
        let trans_len = check_page_range(
            "RECEIVE_UPDATE_DATA destination",
            guest_host_addr,
            trans.len(),
        )?;
        let mut update = kvm_sev_receive_update_data {
            hdr_uaddr: hdr.as_ptr() as u64,
            hdr_len,
            guest_uaddr: guest_host_addr,
            guest_len: trans_len,
            trans_uaddr: trans.as_ptr() as u64,
            trans_len,
            ..Default::default()
        };
        // SAFETY: `hdr` and `trans` are caller slices of exactly the lengths
        // given, only read; the guest range is valid per this function's
        // contract.
        unsafe { self.issue(&mut update) }
    }

    /// KVM_SEV_RECEIVE_FINISH.
    ///
    /// # Errors
    /// [`HostError::Ioctl`] or [`HostError::Firmware`].
    pub fn receive_finish(&self) -> Result<()> {
        // SAFETY: no payload is sent.
        unsafe { self.issue(&mut ReceiveFinish) }
    }

    /// KVM_MEMORY_ENCRYPT_REG_REGION: pin `size` bytes of guest RAM at
    /// `host_addr` (needed for every RAM block of an SEV guest).
    ///
    /// # Errors
    /// [`HostError::NullAddress`], [`HostError::Empty`],
    /// [`HostError::AddressOverflow`] before the ioctl; then
    /// [`HostError::Ioctl`] (e.g. ENOMEM past RLIMIT_MEMLOCK).
    pub fn register_region(&self, host_addr: u64, size: u64) -> Result<()> {
        self.region_ioctl(
            KVM_MEMORY_ENCRYPT_REG_REGION,
            "KVM_MEMORY_ENCRYPT_REG_REGION",
            host_addr,
            size,
        )
    }

    /// KVM_MEMORY_ENCRYPT_UNREG_REGION: unpin a range registered with
    /// [`register_region`](Self::register_region) (it must match exactly).
    ///
    /// # Errors
    /// As [`register_region`](Self::register_region).
    pub fn unregister_region(&self, host_addr: u64, size: u64) -> Result<()> {
        self.region_ioctl(
            KVM_MEMORY_ENCRYPT_UNREG_REGION,
            "KVM_MEMORY_ENCRYPT_UNREG_REGION",
            host_addr,
            size,
        )
    }

    fn region_ioctl(&self, request: u32, name: &'static str, addr: u64, size: u64) -> Result<()> {
        check_range(name, addr, size)?;
        let region = kvm_enc_region { addr, size };
        log::debug!("{name}: {addr:#x} + {size:#x}");
        // SAFETY: `self.vm` is a live fd for `'fd`; `region` is a live
        // `struct kvm_enc_region` (16 bytes, as encoded in `request`) that the
        // kernel only reads. Pinning or unpinning pages does not change their
        // contents.
        let rc = unsafe {
            libc::ioctl(
                self.vm.as_raw_fd(),
                request as libc::Ioctl,
                std::ptr::from_ref(&region),
            )
        };
        if rc < 0 {
            return Err(HostError::Ioctl {
                cmd: name,
                errno: io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

/// An optional blob: `(address, length)`, `(0, 0)` when absent.
fn optional_blob(what: &'static str, blob: Option<&[u8]>) -> Result<(u64, u32)> {
    match blob {
        None => Ok((0, 0)),
        Some(b) => {
            let len = check_blob(what, b, SEV_FW_BLOB_MAX_SIZE)?;
            Ok((b.as_ptr() as u64, len))
        }
    }
}

/// The firmware-reported LAUNCH_MEASURE length, which must be 48.
fn check_measurement_len(len: u32) -> Result<()> {
    if usize::try_from(len).ok() == Some(MEASUREMENT_LEN) {
        Ok(())
    } else {
        Err(HostError::BadReportedLength {
            cmd: <kvm_sev_launch_measure as KvmSevCommand>::NAME,
            what: "measurement",
            len,
            expected: "48",
        })
    }
}

/// A guest range for SEND/RECEIVE_UPDATE_DATA: non-null, 1..=4096 bytes, not
/// crossing a 4 KiB page (the kernel's own check, done here first).
fn check_page_range(what: &'static str, addr: u64, len: usize) -> Result<u32> {
    let page = usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX);
    let len32 = check_len(what, len, page)?;
    check_range(what, addr, u64::from(len32))?;
    let offset = addr % PAGE_SIZE;
    if offset + u64::from(len32) > PAGE_SIZE {
        return Err(HostError::CrossesPage {
            what,
            addr,
            len: u64::from(len32),
        });
    }
    Ok(len32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{sev_device_or_skip, Fixture, Mapping};
    use std::os::fd::AsFd;

    fn assert_issued(result: Result<impl std::fmt::Debug>, name: &str) {
        match result {
            Err(HostError::Ioctl { cmd, errno }) => {
                assert_eq!(cmd, name);
                assert_eq!(errno.raw_os_error(), Some(libc::ENOTTY));
            }
            other => panic!("expected {name} to reach the ioctl, got {other:?}"),
        }
    }

    const BIG: usize = SEV_FW_BLOB_MAX_SIZE + 1;

    #[test]
    fn no_data_commands_reach_the_ioctl() {
        let f = Fixture::new();
        let vm = f.vm();
        assert_issued(vm.init(false), "KVM_SEV_INIT");
        assert_issued(vm.init(true), "KVM_SEV_ES_INIT");
        assert_issued(vm.init2(0), "KVM_SEV_INIT2");
        assert_issued(vm.launch_update_vmsa(), "KVM_SEV_LAUNCH_UPDATE_VMSA");
        assert_issued(vm.launch_finish(), "KVM_SEV_LAUNCH_FINISH");
        assert_issued(vm.guest_status(), "KVM_SEV_GUEST_STATUS");
        assert_issued(vm.launch_measure(), "KVM_SEV_LAUNCH_MEASURE");
        assert_issued(
            vm.attestation_report([0; 16]),
            "KVM_SEV_GET_ATTESTATION_REPORT",
        );
        assert_issued(vm.send_finish(), "KVM_SEV_SEND_FINISH");
        assert_issued(vm.send_cancel(), "KVM_SEV_SEND_CANCEL");
        assert_issued(vm.receive_finish(), "KVM_SEV_RECEIVE_FINISH");
    }

    #[test]
    fn launch_start_checks_blobs() {
        let f = Fixture::new();
        let vm = f.vm();
        let godh = [0u8; 0x824];
        let session = [0u8; 0x80];
        assert!(matches!(
            vm.launch_start(1, Some(&[]), Some(&session)),
            Err(HostError::Empty {
                what: "GODH certificate"
            })
        ));
        assert!(matches!(
            vm.launch_start(1, Some(&godh), Some(&[])),
            Err(HostError::Empty { what: "session" })
        ));
        assert!(matches!(
            vm.launch_start(1, Some(&vec![0; BIG]), None),
            Err(HostError::TooLarge {
                what: "GODH certificate",
                len: 16385,
                max: 16384
            })
        ));
        assert!(matches!(
            vm.launch_start(1, None, Some(&vec![0; BIG])),
            Err(HostError::TooLarge {
                what: "session",
                ..
            })
        ));
        assert_issued(vm.launch_start(1, None, None), "KVM_SEV_LAUNCH_START");
        assert_issued(
            vm.launch_start(1, Some(&godh), Some(&session)),
            "KVM_SEV_LAUNCH_START",
        );
    }

    #[test]
    fn launch_update_data_checks_range_and_alignment() {
        let f = Fixture::new();
        let vm = f.vm();
        // SAFETY: every call below fails its argument checks or
        // hits /dev/null, so no memory is touched.
        unsafe {
            assert!(matches!(
                vm.launch_update_data(0, 4096),
                Err(HostError::NullAddress { .. })
            ));
            assert!(matches!(
                vm.launch_update_data(0x10_0000, 0),
                Err(HostError::Empty { .. })
            ));
            assert!(matches!(
                vm.launch_update_data(0x10_0008, 4096),
                Err(HostError::Misaligned {
                    what: "LAUNCH_UPDATE_DATA address",
                    value: 0x10_0008,
                    align: 16
                })
            ));
            assert!(matches!(
                vm.launch_update_data(0x10_0000, 100),
                Err(HostError::Misaligned {
                    what: "LAUNCH_UPDATE_DATA length",
                    value: 100,
                    align: 16
                })
            ));
            assert!(matches!(
                vm.launch_update_data(u64::MAX - 15, 32),
                Err(HostError::AddressOverflow { .. })
            ));
            assert!(matches!(
                vm.launch_update_data(0x10_0000, U32_MAX_LEN + 1),
                Err(HostError::TooLarge { .. })
            ));
            assert_issued(
                vm.launch_update_data(0x10_0000, 0x1_0000),
                "KVM_SEV_LAUNCH_UPDATE_DATA",
            );
        }
    }

    #[test]
    fn launch_secret_checks_arguments() {
        let f = Fixture::new();
        let vm = f.vm();
        let hdr = [0u8; 0x34];
        let trans = [0u8; 64];
        // SAFETY: every call below fails its argument checks or
        // hits /dev/null, so no memory is touched.
        unsafe {
            assert!(matches!(
                vm.launch_secret(&[], 0x10_0000, &trans),
                Err(HostError::Empty {
                    what: "secret header"
                })
            ));
            assert!(matches!(
                vm.launch_secret(&hdr, 0x10_0000, &[]),
                Err(HostError::Empty {
                    what: "secret payload"
                })
            ));
            assert!(matches!(
                vm.launch_secret(&vec![0; BIG], 0x10_0000, &trans),
                Err(HostError::TooLarge {
                    what: "secret header",
                    ..
                })
            ));
            assert!(matches!(
                vm.launch_secret(&hdr, 0x10_0000, &vec![0; BIG]),
                Err(HostError::TooLarge {
                    what: "secret payload",
                    ..
                })
            ));
            assert!(matches!(
                vm.launch_secret(&hdr, 0, &trans),
                Err(HostError::NullAddress { .. })
            ));
            assert!(matches!(
                vm.launch_secret(&hdr, 0x10_0004, &trans),
                Err(HostError::Misaligned { align: 16, .. })
            ));
            assert_issued(
                vm.launch_secret(&hdr, 0x10_0000, &trans),
                "KVM_SEV_LAUNCH_SECRET",
            );
        }
    }

    #[test]
    fn dbg_checks_arguments() {
        let f = Fixture::new();
        let vm = f.vm();
        let mut buf = [0u8; 32];
        assert!(matches!(
            vm.dbg_decrypt(0x10_0000, &mut []),
            Err(HostError::Empty { .. })
        ));
        assert!(matches!(
            vm.dbg_decrypt(0, &mut buf),
            Err(HostError::NullAddress { .. })
        ));
        assert!(matches!(
            vm.dbg_decrypt(u64::MAX - 1, &mut buf),
            Err(HostError::AddressOverflow { .. })
        ));
        assert_issued(vm.dbg_decrypt(0x10_0000, &mut buf), "KVM_SEV_DBG_DECRYPT");
        // SAFETY: every call below fails its argument checks or
        // hits /dev/null, so no memory is touched.
        unsafe {
            assert!(matches!(
                vm.dbg_encrypt(&[], 0x10_0000),
                Err(HostError::Empty { .. })
            ));
            assert!(matches!(
                vm.dbg_encrypt(&buf, 0),
                Err(HostError::NullAddress { .. })
            ));
            assert_issued(vm.dbg_encrypt(&buf, 0x10_0000), "KVM_SEV_DBG_ENCRYPT");
        }
    }

    #[test]
    fn send_start_checks_blobs() {
        let f = Fixture::new();
        let vm = f.vm();
        let cert = [0u8; 0x824];
        let chain = [0u8; 3 * 0x824];
        let amd = [0u8; 0x800];
        assert!(matches!(
            vm.send_start(&[], &chain, &amd),
            Err(HostError::Empty {
                what: "target PDH certificate"
            })
        ));
        assert!(matches!(
            vm.send_start(&cert, &[], &amd),
            Err(HostError::Empty {
                what: "target platform chain"
            })
        ));
        assert!(matches!(
            vm.send_start(&cert, &chain, &[]),
            Err(HostError::Empty { what: "AMD chain" })
        ));
        assert!(matches!(
            vm.send_start(&cert, &chain, &vec![0; BIG]),
            Err(HostError::TooLarge {
                what: "AMD chain",
                ..
            })
        ));
        assert_issued(vm.send_start(&cert, &chain, &amd), "KVM_SEV_SEND_START");
    }

    #[test]
    fn send_update_data_checks_page_bounds() {
        let f = Fixture::new();
        let vm = f.vm();
        assert!(matches!(
            vm.send_update_data(0x10_0000, 0),
            Err(HostError::Empty { .. })
        ));
        assert!(matches!(
            vm.send_update_data(0, 4096),
            Err(HostError::NullAddress { .. })
        ));
        assert!(matches!(
            vm.send_update_data(0x10_0000, 4097),
            Err(HostError::TooLarge {
                len: 4097,
                max: 4096,
                ..
            })
        ));
        assert!(matches!(
            vm.send_update_data(0x10_0800, 0x900),
            Err(HostError::CrossesPage {
                addr: 0x10_0800,
                len: 0x900,
                ..
            })
        ));
        // Exactly up to the page end is fine and reaches the header query.
        assert_issued(
            vm.send_update_data(0x10_0800, 0x800),
            "KVM_SEV_SEND_UPDATE_DATA",
        );
    }

    #[test]
    fn receive_checks_arguments() {
        let f = Fixture::new();
        let vm = f.vm();
        let pdh = [0u8; 0x824];
        let session = [0u8; 0x80];
        assert!(matches!(
            vm.receive_start(1, &[], &session),
            Err(HostError::Empty {
                what: "source PDH certificate"
            })
        ));
        assert!(matches!(
            vm.receive_start(1, &pdh, &[]),
            Err(HostError::Empty { what: "session" })
        ));
        assert!(matches!(
            vm.receive_start(1, &vec![0; BIG], &session),
            Err(HostError::TooLarge { .. })
        ));
        assert_issued(vm.receive_start(1, &pdh, &session), "KVM_SEV_RECEIVE_START");

        let hdr = [0u8; 0x34];
        let page = [0u8; 4096];
        // SAFETY: every call below fails its argument checks or
        // hits /dev/null, so no memory is touched.
        unsafe {
            assert!(matches!(
                vm.receive_update_data(&[], 0x10_0000, &page),
                Err(HostError::Empty {
                    what: "packet header"
                })
            ));
            assert!(matches!(
                vm.receive_update_data(&hdr, 0x10_0000, &[]),
                Err(HostError::Empty {
                    what: "packet payload"
                })
            ));
            assert!(matches!(
                vm.receive_update_data(&hdr, 0x10_0010, &page),
                Err(HostError::CrossesPage { .. })
            ));
            assert!(matches!(
                vm.receive_update_data(&hdr, 0, &page),
                Err(HostError::NullAddress { .. })
            ));
            assert!(matches!(
                vm.receive_update_data(&hdr, 0x10_0000, &[0; 4097]),
                Err(HostError::TooLarge { .. })
            ));
            assert_issued(
                vm.receive_update_data(&hdr, 0x10_0000, &page),
                "KVM_SEV_RECEIVE_UPDATE_DATA",
            );
        }
    }

    #[test]
    fn regions_check_arguments() {
        let f = Fixture::new();
        let vm = f.vm();
        assert!(matches!(
            vm.register_region(0, 4096),
            Err(HostError::NullAddress { .. })
        ));
        assert!(matches!(
            vm.register_region(0x10_0000, 0),
            Err(HostError::Empty { .. })
        ));
        assert!(matches!(
            vm.unregister_region(u64::MAX, 2),
            Err(HostError::AddressOverflow { .. })
        ));
        assert_issued(
            vm.register_region(0x10_0000, 0x1000),
            "KVM_MEMORY_ENCRYPT_REG_REGION",
        );
        assert_issued(
            vm.unregister_region(0x10_0000, 0x1000),
            "KVM_MEMORY_ENCRYPT_UNREG_REGION",
        );
    }

    #[test]
    fn measurement_length_must_be_48() {
        assert!(check_measurement_len(48).is_ok());
        assert!(matches!(
            check_measurement_len(0x30 + 1),
            Err(HostError::BadReportedLength {
                cmd: "KVM_SEV_LAUNCH_MEASURE",
                len: 49,
                ..
            })
        ));
        assert!(check_measurement_len(0).is_err());
    }

    #[test]
    fn hw_launch_small_vm() {
        let Some(sev) = sev_device_or_skip("hw_launch_small_vm") else {
            return;
        };
        let kvm = std::path::Path::new(crate::probe::KVM_PATH);
        if !crate::probe::kvm_sev_supported(kvm).unwrap_or(false) {
            eprintln!("SKIPPED: hw_launch_small_vm: KVM does not accept SEV commands");
            return;
        }
        let vm_fd = crate::probe::create_vm(kvm).unwrap();
        let vm = SevVm::new(vm_fd.as_fd(), sev.as_fd());
        vm.init(false).unwrap();
        // Policy 0x1 (NODBG), unattested launch.
        let handle = vm.launch_start(0x1, None, None).unwrap();
        assert_ne!(handle, 0);

        let ram = Mapping::new(0x1_0000, libc::MAP_PRIVATE);
        vm.register_region(ram.host_addr(), 0x1_0000).unwrap();
        // SAFETY: `ram` is an anonymous mapping owned by this test, never
        // accessed through Rust references.
        unsafe { vm.launch_update_data(ram.host_addr(), 0x1_0000) }.unwrap();

        let status = vm.guest_status().unwrap();
        assert_eq!(status.handle, handle);
        assert_eq!(status.policy, 0x1);
        assert_eq!(status.state, 1, "LUPDATE");

        let measurement = vm.launch_measure().unwrap();
        assert_ne!(measurement, [0u8; MEASUREMENT_LEN]);
        assert_eq!(vm.guest_status().unwrap().state, 2, "LSECRET");

        // NODBG: the firmware refuses debug decryption with POLICY_FAILURE.
        let mut plain = [0u8; 16];
        assert!(matches!(
            vm.dbg_decrypt(ram.host_addr(), &mut plain),
            Err(HostError::Firmware { code: 0x07, .. })
        ));

        vm.launch_finish().unwrap();
        assert_eq!(vm.guest_status().unwrap().state, 3, "RUNNING");
        vm.unregister_region(ram.host_addr(), 0x1_0000).unwrap();
    }
}
