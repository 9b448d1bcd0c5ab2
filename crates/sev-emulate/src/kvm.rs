//! KVM's SEV ioctls on a VM file descriptor, served the way Linux's KVM
//! serves them (`arch/x86/kvm/svm/sev.c`), over the emulated firmware
//! (docs/guide/sev-emulate.md#kvm).
//!
//! [`KvmSev::ioctl`] takes one of the three requests
//! ([`KVM_MEMORY_ENCRYPT_OP`], [`KVM_MEMORY_ENCRYPT_REG_REGION`],
//! [`KVM_MEMORY_ENCRYPT_UNREG_REGION`]) with its argument and a [`Caller`]
//! (the program's memory, its file descriptors and its pinning limit) and
//! returns what the `ioctl` returns. Each VM's state (INIT done, firmware
//! handle, registered regions, pinned-page count) lives in a [`SevVm`],
//! kept per VM file descriptor.
//!
//! Guest memory is given by user address, as to KVM. KVM pins the pages and
//! hands the firmware their system-physical addresses; here every user page
//! a command touches gets a stable frame in a synthetic physical address
//! space ([`PHYS_SPACE`] bytes), and the firmware's guest backing translates
//! those frames back to the program's pages (docs/protocol/choices.md#u83).
//! LAUNCH_UPDATE_DATA "encrypts in place": the real KVM runs the guest
//! unencrypted, so the plaintext stays in the program's mapping and the
//! measurement is over that plaintext, as in sevm's emulated mode.
//!
//! What is not offered: SEV-ES (`KVM_SEV_ES_INIT` answers ENOTTY, as a KVM
//! with `sev_es=0` does, docs/protocol/choices.md#u84), `KVM_SEV_INIT2` and
//! the SNP commands (the answers of a KVM whose VM is of the default type,
//! the only type this host's KVM reports).
//!
//! Nothing here is seccomp-specific: the unit tests serve a byte array.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use sev_proto::abi::Policy;
use sev_psp::memory::{GuestBacking, OutOfRange, Region};
use sev_psp::{FwError, Platform};

use crate::devsev::{efault, u32_at, u64_at, Errno, Fault, UserMemory, SEV_FW_BLOB_MAX_SIZE};
use crate::supervisor::{Answer, Call, Handler};
use crate::sys;

/// The three requests (their numbers live with the filter that routes them).
pub use crate::filter::{
    KVM_MEMORY_ENCRYPT_OP, KVM_MEMORY_ENCRYPT_REG_REGION, KVM_MEMORY_ENCRYPT_UNREG_REGION,
};

/// `enum sev_cmd_id` (include/uapi/linux/kvm.h): sev-host's table.
pub use sev_host::abi::kvm_cmd as cmd;

/// Page size.
pub const PAGE_SIZE: u64 = 4096;
const PAGE_MASK: u64 = !(PAGE_SIZE - 1);
/// Size of the synthetic physical address space the firmware sees for one
/// guest: 128 GiB of distinct user pages per VM (its private-page map costs
/// 4 MiB). A VM that pins more gets ENOMEM, as when pinning fails.
pub const PHYS_SPACE: u64 = 128 << 30;
/// Most runs of frames one VM may hold (each a few dozen bytes): a program
/// scattering one-page commands cannot grow the map without bound.
const MAX_RUNS: usize = 1 << 20;
/// The largest buffer KVM's `kzalloc` gives (`KMALLOC_MAX_SIZE` on x86-64: 4 MiB).
const KMALLOC_MAX: u32 = 4 << 20;
/// Length of `struct kvm_sev_cmd`.
const SEV_CMD_LEN: usize = 24;
/// Length of the LAUNCH_MEASURE blob.
const MEASURE_LEN: u32 = 48;
/// Largest single copy from or to the program for the firmware.
const COPY_CHUNK: usize = 64 << 10;

/// What KVM learns about the calling process besides its memory.
pub trait Caller: UserMemory + Sync {
    /// Whether pages `[addr, addr + len)` (page aligned) can be pinned:
    /// all mapped, and writable when `write` (`pin_user_pages` with
    /// `FOLL_WRITE`).
    fn pinnable(&self, addr: u64, len: u64, write: bool) -> bool;
    /// Whether file descriptor `fd` of the caller is a `/dev/sev` (the
    /// driver's `f_op == &sev_fops` check).
    fn is_dev_sev(&self, fd: u32) -> bool;
    /// Whether the VM already has vCPUs (INIT is refused then).
    fn vcpus_created(&self) -> bool;
    /// The caller's `RLIMIT_MEMLOCK` in pages, `None` when it may lock
    /// without limit (`CAP_IPC_LOCK`).
    fn lock_limit_pages(&self) -> Option<u64>;
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// One run of user pages with consecutive frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    pages: u64,
    pa: u64,
}

/// A piece of a user range whose pages have consecutive frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    hva: u64,
    pa: u64,
    pages: u64,
}

/// The frames of a VM's user pages (docs/protocol/choices.md#u83): a page
/// keeps the frame it first got for the VM's life; pages met together in
/// one command get consecutive frames.
#[derive(Debug, Default)]
struct FrameMap {
    /// First page of each run → the run.
    by_hva: BTreeMap<u64, Run>,
    /// First frame of each run → (first page, pages).
    by_pa: BTreeMap<u64, (u64, u64)>,
    next_pa: u64,
}

impl FrameMap {
    /// The frames of `npages` pages from page `first`, allocating the
    /// missing ones; physically contiguous pieces merged.
    fn frames(&mut self, first: u64, npages: u64) -> Result<Vec<Chunk>, Errno> {
        let end = npages
            .checked_mul(PAGE_SIZE)
            .and_then(|n| first.checked_add(n))
            .ok_or(libc::EINVAL)?;
        let mut out: Vec<Chunk> = Vec::new();
        let mut page = first;
        while page < end {
            let found = self
                .by_hva
                .range(..=page)
                .next_back()
                .map(|(&s, &r)| (s, r))
                .filter(|(s, r)| page < s + r.pages * PAGE_SIZE);
            let chunk = match found {
                Some((start, run)) => {
                    let run_end = start + run.pages * PAGE_SIZE;
                    let stop = run_end.min(end);
                    Chunk {
                        hva: page,
                        pa: run.pa + (page - start),
                        pages: (stop - page) / PAGE_SIZE,
                    }
                }
                None => {
                    let next = self
                        .by_hva
                        .range(page..)
                        .next()
                        .map_or(end, |(&s, _)| s)
                        .min(end);
                    let pages = (next - page) / PAGE_SIZE;
                    if self.by_hva.len() >= MAX_RUNS {
                        return Err(libc::ENOMEM);
                    }
                    let pa = self.next_pa;
                    let pa_end = pa
                        .checked_add(pages * PAGE_SIZE)
                        .filter(|&e| e <= PHYS_SPACE)
                        .ok_or(libc::ENOMEM)?;
                    self.by_hva.insert(page, Run { pages, pa });
                    self.by_pa.insert(pa, (page, pages));
                    self.next_pa = pa_end;
                    Chunk {
                        hva: page,
                        pa,
                        pages,
                    }
                }
            };
            page += chunk.pages * PAGE_SIZE;
            match out.last_mut() {
                Some(last) if last.pa + last.pages * PAGE_SIZE == chunk.pa => {
                    last.pages += chunk.pages;
                }
                _ => out.push(chunk),
            }
        }
        Ok(out)
    }

    /// The user pieces `(address, length)` behind `len` bytes at frame
    /// address `pa`.
    fn translate(&self, pa: u64, len: u64) -> Result<Vec<(u64, usize)>, OutOfRange> {
        let err = OutOfRange { gpa: pa, len };
        let mut out = Vec::new();
        let mut at = pa;
        let end = pa.checked_add(len).ok_or(err)?;
        while at < end {
            let (&start, &(hva, pages)) = self.by_pa.range(..=at).next_back().ok_or(err)?;
            let run_end = start + pages * PAGE_SIZE;
            if at >= run_end {
                return Err(err);
            }
            let stop = run_end.min(end).min(at.saturating_add(COPY_CHUNK as u64));
            let n = usize::try_from(stop - at).map_err(|_| err)?;
            out.push((hva + (at - start), n));
            at = stop;
        }
        Ok(out)
    }
}

/// The whole frame address space, as one region.
fn phys_space() -> Vec<Region> {
    vec![Region {
        gpa: 0,
        len: PHYS_SPACE,
    }]
}

/// The firmware's view of a VM's memory: frame addresses translated to
/// the caller's pages, read and written in place.
struct Phys<'a> {
    caller: &'a dyn Caller,
    frames: &'a FrameMap,
}

impl GuestBacking for Phys<'_> {
    fn regions(&self) -> Vec<Region> {
        phys_space()
    }

    fn read_plain(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let err = OutOfRange {
            gpa,
            len: buf.len() as u64,
        };
        let mut off = 0usize;
        for (hva, n) in self.frames.translate(gpa, buf.len() as u64)? {
            let data = self.caller.read(hva, n).map_err(|_| err)?;
            buf.get_mut(off..off + n)
                .ok_or(err)?
                .copy_from_slice(data.get(..n).ok_or(err)?);
            off += n;
        }
        Ok(())
    }

    fn write_plain(&self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        let err = OutOfRange {
            gpa,
            len: data.len() as u64,
        };
        let mut off = 0usize;
        for (hva, n) in self.frames.translate(gpa, data.len() as u64)? {
            self.caller
                .write(hva, data.get(off..off + n).ok_or(err)?)
                .map_err(|_| err)?;
            off += n;
        }
        Ok(())
    }
}

/// Most bytes one firmware LAUNCH_UPDATE_DATA measures from a copy.
const SNAPSHOT_MAX: u64 = 16 << 20;

/// The bytes of pinned pages at frame address `pa`, copied in before a
/// command that only reads them.
struct Snapshot {
    pa: u64,
    data: Vec<u8>,
}

impl GuestBacking for Snapshot {
    fn regions(&self) -> Vec<Region> {
        phys_space()
    }

    fn read_plain(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let err = OutOfRange {
            gpa,
            len: buf.len() as u64,
        };
        let off = gpa
            .checked_sub(self.pa)
            .and_then(|o| usize::try_from(o).ok())
            .ok_or(err)?;
        let src = self.data.get(off..off + buf.len()).ok_or(err)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_plain(&self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        Err(OutOfRange {
            gpa,
            len: data.len() as u64,
        })
    }
}

/// A region registered with `KVM_MEMORY_ENCRYPT_REG_REGION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EncRegion {
    uaddr: u64,
    size: u64,
    npages: u64,
}

/// One VM's SEV state (KVM's `struct kvm_sev_info`).
#[derive(Debug, Default)]
pub struct SevVm {
    active: bool,
    handle: u32,
    asid: u32,
    /// The `/dev/sev` descriptor number LAUNCH_START (or RECEIVE_START)
    /// was given; KVM issues the later commands through it.
    fd: u32,
    regions: Vec<EncRegion>,
    pages_locked: u64,
    frames: FrameMap,
}

/// Pages pinned for one command: their frames.
struct Pinned {
    chunks: Vec<Chunk>,
    npages: u64,
}

impl SevVm {
    /// Whether KVM_SEV_INIT succeeded (`sev_guest(kvm)`).
    pub fn active(&self) -> bool {
        self.active
    }

    /// The firmware handle of the guest (0 before LAUNCH_START).
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// Pages pinned by registered regions.
    pub fn pages_locked(&self) -> u64 {
        self.pages_locked
    }

    /// `sev_pin_memory`: the range's pages, `extra` more pages counted as
    /// already pinned by the same command.
    fn pin(
        &mut self,
        caller: &dyn Caller,
        uaddr: u64,
        ulen: u64,
        write: bool,
        extra: u64,
    ) -> Result<Pinned, Errno> {
        let end = uaddr.checked_add(ulen).ok_or(libc::EINVAL)?;
        if ulen == 0 {
            return Err(libc::EINVAL);
        }
        let first = uaddr & PAGE_MASK;
        let last = (end - 1) & PAGE_MASK;
        let npages = (last - first) / PAGE_SIZE + 1;
        let locked = self
            .pages_locked
            .saturating_add(extra)
            .saturating_add(npages);
        if let Some(limit) = caller.lock_limit_pages() {
            if locked > limit {
                log::debug!("SEV: {locked} locked pages exceed the lock limit of {limit}");
                return Err(libc::ENOMEM);
            }
        }
        if npages > i32::MAX as u64 {
            return Err(libc::EINVAL);
        }
        if !caller.pinnable(first, npages * PAGE_SIZE, write) {
            log::debug!("SEV: failure locking {npages} pages at {first:#x}");
            return Err(libc::ENOMEM);
        }
        let chunks = self.frames.frames(first, npages)?;
        Ok(Pinned { chunks, npages })
    }
}

/// The SEV state of every VM file descriptor the supervisor has seen,
/// keyed by (thread-group id, descriptor number: the first one seen for
/// the VM, [`KvmHandler`] maps its duplicates to it).
#[derive(Debug, Default)]
pub struct KvmSev {
    vms: HashMap<(u32, i32), SevVm>,
}

impl KvmSev {
    /// No VMs yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state of VM descriptor `fd` of process `tgid`, if it has any.
    pub fn vm(&self, tgid: u32, fd: i32) -> Option<&SevVm> {
        self.vms.get(&(tgid, fd))
    }

    /// Serves `ioctl(fd, request, arg)` on VM descriptor `fd` of process
    /// `tgid`; `Ok` is the ioctl's return value.
    pub fn ioctl(
        &mut self,
        platform: &Platform,
        caller: &dyn Caller,
        tgid: u32,
        fd: i32,
        request: u32,
        arg: u64,
    ) -> Result<i64, Errno> {
        let vm = self.vms.entry((tgid, fd)).or_default();
        match request {
            KVM_MEMORY_ENCRYPT_OP => mem_enc_op(vm, platform, caller, arg).map(|()| 0),
            KVM_MEMORY_ENCRYPT_REG_REGION | KVM_MEMORY_ENCRYPT_UNREG_REGION => {
                let raw = caller.read(arg, 16).map_err(efault)?;
                let (addr, size) = (u64_at(&raw, 0), u64_at(&raw, 8));
                if request == KVM_MEMORY_ENCRYPT_REG_REGION {
                    register_region(vm, caller, addr, size)
                } else {
                    unregister_region(vm, addr, size)
                }
                .map(|()| 0)
            }
            _ => Err(libc::ENOTTY),
        }
    }

    /// VM descriptor `fd` of `tgid` was closed (or the process is gone):
    /// KVM's `sev_vm_destroy` (DEACTIVATE, DECOMMISSION, unpin).
    pub fn release(&mut self, platform: &Platform, tgid: u32, fd: i32) {
        if let Some(vm) = self.vms.remove(&(tgid, fd)) {
            destroy(platform, &vm);
        }
    }

    /// Every VM of process `tgid` is released (the process exited).
    pub fn release_process(&mut self, platform: &Platform, tgid: u32) {
        let keys: Vec<_> = self.vms.keys().filter(|k| k.0 == tgid).copied().collect();
        for (t, fd) in keys {
            self.release(platform, t, fd);
        }
    }
}

fn destroy(platform: &Platform, vm: &SevVm) {
    if !vm.active || vm.handle == 0 {
        return;
    }
    if let Err(e) = platform.deactivate(vm.handle) {
        log::debug!("SEV: DEACTIVATE of guest {}: {e}", vm.handle);
    }
    if let Err(e) = platform.decommission(vm.handle) {
        log::debug!("SEV: DECOMMISSION of guest {}: {e}", vm.handle);
    }
}

fn register_region(vm: &mut SevVm, caller: &dyn Caller, addr: u64, size: u64) -> Result<(), Errno> {
    if !vm.active {
        return Err(libc::ENOTTY);
    }
    let pinned = vm.pin(caller, addr, size, true, 0)?;
    log::debug!("KVM_MEMORY_ENCRYPT_REG_REGION {addr:#x}+{size:#x}");
    vm.pages_locked += pinned.npages;
    vm.regions.push(EncRegion {
        uaddr: addr,
        size,
        npages: pinned.npages,
    });
    Ok(())
}

fn unregister_region(vm: &mut SevVm, addr: u64, size: u64) -> Result<(), Errno> {
    if !vm.active {
        return Err(libc::ENOTTY);
    }
    let i = vm
        .regions
        .iter()
        .position(|r| r.uaddr == addr && r.size == size)
        .ok_or(libc::EINVAL)?;
    let r = vm.regions.remove(i);
    vm.pages_locked = vm.pages_locked.saturating_sub(r.npages);
    Ok(())
}

/// `sev_mem_enc_ioctl`.
fn mem_enc_op(
    vm: &mut SevVm,
    platform: &Platform,
    caller: &dyn Caller,
    argp: u64,
) -> Result<(), Errno> {
    if argp == 0 {
        return Ok(());
    }
    let mut raw = caller.read(argp, SEV_CMD_LEN).map_err(efault)?;
    let id = u32_at(&raw, 0);
    let mut op = Op {
        vm,
        platform,
        caller,
        data: u64_at(&raw, 8),
        sev_fd: u32_at(&raw, 20),
        // Written back as it came unless a firmware command runs.
        error: u32_at(&raw, 16),
    };
    let served = match id {
        cmd::INIT => op.init(),
        // SEV-ES is not offered (docs/protocol/choices.md#u84).
        cmd::ES_INIT => Err(libc::ENOTTY),
        cmd::INIT2 => Err(libc::EINVAL),
        cmd::LAUNCH_START => op.launch_start(),
        cmd::LAUNCH_UPDATE_DATA => op.launch_update_data(),
        cmd::LAUNCH_UPDATE_VMSA => Err(libc::ENOTTY),
        cmd::LAUNCH_MEASURE => op.launch_measure(),
        cmd::LAUNCH_FINISH => op.simple(Platform::launch_finish),
        cmd::GUEST_STATUS => op.guest_status(),
        cmd::DBG_DECRYPT => op.dbg_crypt(true),
        cmd::DBG_ENCRYPT => op.dbg_crypt(false),
        cmd::LAUNCH_SECRET => op.launch_secret(),
        cmd::GET_ATTESTATION_REPORT => op.attestation_report(),
        cmd::SEND_START => op.send_start(),
        cmd::SEND_UPDATE_DATA => op.send_update_data(),
        cmd::SEND_FINISH => op.simple(Platform::send_finish),
        cmd::SEND_CANCEL => op.simple(Platform::send_cancel),
        cmd::RECEIVE_START => op.receive_start(),
        cmd::RECEIVE_UPDATE_DATA => op.receive_update_data(),
        cmd::RECEIVE_FINISH => op.simple(Platform::receive_finish),
        // On a VM of the default type: not an SNP guest.
        cmd::SNP_LAUNCH_START | cmd::SNP_LAUNCH_FINISH => Err(libc::ENOTTY),
        cmd::SNP_LAUNCH_UPDATE => Err(libc::EINVAL),
        // Unknown (SEND/RECEIVE_UPDATE_VMSA, CERT_EXPORT included): EINVAL,
        // and the structure is not copied back.
        _ => return Err(libc::EINVAL),
    };
    log::debug!(
        "KVM_MEMORY_ENCRYPT_OP id {id} data {:#x}: {served:?}",
        op.data
    );
    let error = op.error;
    put_u32(&mut raw, 16, error);
    caller.write(argp, &raw).map_err(efault)?;
    served
}

/// The user buffer of a command that returns a blob ([`Op::out_blob`]):
/// where its address and length are in the command's data, and the buffer
/// the firmware fills (empty when there is none or only the length is
/// asked for).
struct OutBlob {
    at: usize,
    uaddr: u64,
    query: bool,
    buf: Vec<u8>,
}

/// One `KVM_MEMORY_ENCRYPT_OP` in progress: the `struct kvm_sev_cmd` fields.
struct Op<'a> {
    vm: &'a mut SevVm,
    platform: &'a Platform,
    caller: &'a dyn Caller,
    data: u64,
    sev_fd: u32,
    error: u32,
}

impl Op<'_> {
    /// A firmware command's outcome: its status into `error` (0 on
    /// success, as the driver writes it back), a failure as EIO.
    fn fw<T>(&mut self, r: Result<T, FwError>) -> Result<T, Errno> {
        match r {
            Ok(v) => {
                self.error = 0;
                Ok(v)
            }
            Err(e) => {
                log::debug!("firmware: {e}");
                self.error = e.status.code();
                Err(libc::EIO)
            }
        }
    }

    /// A firmware failure with the lengths it writes back.
    fn fw_len(&mut self, e: FwError) -> (Errno, u32, u32) {
        let (a, b) = e
            .required_len
            .map_or((0, 0), |r| (r.first, r.second.unwrap_or(0)));
        let errno = self.fw::<()>(Err(e)).err().unwrap_or(libc::EIO);
        (errno, a, b)
    }

    fn require_active(&self) -> Result<(), Errno> {
        if self.vm.active {
            Ok(())
        } else {
            Err(libc::ENOTTY)
        }
    }

    /// `sev_issue_cmd`: the firmware is reached through the descriptor
    /// LAUNCH_START saved, which must (still) be a `/dev/sev`.
    fn require_sev_fd(&self, fd: u32) -> Result<(), Errno> {
        if self.caller.is_dev_sev(fd) {
            Ok(())
        } else {
            Err(libc::EBADF)
        }
    }

    fn read_data(&self, len: usize) -> Result<Vec<u8>, Errno> {
        self.caller.read(self.data, len).map_err(efault)
    }

    fn write_data(&self, bytes: &[u8]) -> Result<(), Errno> {
        self.caller.write(self.data, bytes).map_err(efault)
    }

    /// `psp_copy_user_blob`: a null address or a length above the blob
    /// limit is EINVAL.
    fn user_blob(&self, addr: u64, len: u32) -> Result<Vec<u8>, Errno> {
        if addr == 0 || len > SEV_FW_BLOB_MAX_SIZE {
            return Err(libc::EINVAL);
        }
        self.caller.read(addr, len as usize).map_err(efault)
    }

    fn phys(&self) -> Phys<'_> {
        Phys {
            caller: self.caller,
            frames: &self.vm.frames,
        }
    }

    /// `sev_guest_init`: the platform initialised if it is not (the
    /// driver's `sev_platform_init`).
    fn init(&mut self) -> Result<(), Errno> {
        if self.caller.vcpus_created() {
            return Err(libc::EINVAL);
        }
        if self.vm.active {
            return Err(libc::EINVAL);
        }
        // The driver's own state, not a firmware command.
        let state = self.platform.platform_status().map_err(|e| {
            log::debug!("firmware: {e}");
            libc::EIO
        })?;
        if state.state == sev_proto::abi::PlatformState::Uninit {
            let es = self.platform.config().es_capable;
            let r = self.platform.init(es);
            self.fw(r)?;
        }
        self.vm.active = true;
        Ok(())
    }

    /// Binds `handle` to the VM's ASID (the first bind chooses it,
    /// docs/protocol/choices.md#u85); on failure the guest is decommissioned.
    fn bind_asid(&mut self, handle: u32) -> Result<(), Errno> {
        let r = if self.vm.asid == 0 {
            self.platform.activate_free_asid(handle).map(|asid| {
                self.vm.asid = asid;
            })
        } else {
            self.platform.activate(handle, self.vm.asid)
        };
        let r = self.fw(r);
        if r.is_err() {
            let _ = self.platform.decommission(handle);
        }
        r
    }

    fn launch_start(&mut self) -> Result<(), Errno> {
        self.require_active()?;
        let mut params = self.read_data(40)?;
        let (share, policy) = (u32_at(&params, 0), u32_at(&params, 4));
        let (dh_uaddr, dh_len) = (u64_at(&params, 8), u32_at(&params, 16));
        let (session_uaddr, session_len) = (u64_at(&params, 24), u32_at(&params, 32));
        let dh = if dh_uaddr != 0 {
            Some(self.user_blob(dh_uaddr, dh_len)?)
        } else {
            None
        };
        let session = if session_uaddr != 0 {
            Some(self.user_blob(session_uaddr, session_len)?)
        } else {
            None
        };
        self.require_sev_fd(self.sev_fd)?;
        let r = self.platform.launch_start(
            share,
            Policy::from_bits(policy),
            dh.as_deref(),
            session.as_deref(),
        );
        let handle = self.fw(r)?;
        self.bind_guest(handle, &mut params)
    }

    /// After LAUNCH_START or RECEIVE_START made guest `handle`: binds its
    /// ASID, writes the handle back into `params` (the command's structure)
    /// and makes it this VM's guest; a failed copy-out undoes the guest, as
    /// KVM does.
    fn bind_guest(&mut self, handle: u32, params: &mut [u8]) -> Result<(), Errno> {
        self.bind_asid(handle)?;
        put_u32(params, 0, handle);
        if self.write_data(params).is_err() {
            let _ = self.platform.deactivate(handle);
            let _ = self.platform.decommission(handle);
            return Err(libc::EFAULT);
        }
        self.vm.handle = handle;
        self.vm.fd = self.sev_fd;
        Ok(())
    }

    fn launch_update_data(&mut self) -> Result<(), Errno> {
        self.require_active()?;
        let params = self.read_data(16)?;
        let (vaddr, size) = (u64_at(&params, 0), u32_at(&params, 8));
        let pinned = self.vm.pin(self.caller, vaddr, u64::from(size), true, 0)?;
        self.require_sev_fd(self.vm.fd)?;
        let offset = vaddr & !PAGE_MASK;
        let mut left = u64::from(size);
        let mut skip = offset;
        for chunk in &pinned.chunks {
            if left == 0 {
                break;
            }
            let len = (chunk.pages * PAGE_SIZE - skip).min(left);
            // Pinned pages cannot change under the firmware: their bytes are
            // taken first, then measured (a copy that fails measures
            // nothing), in slices of at most SNAPSHOT_MAX.
            let mut done = 0u64;
            while done < len {
                let n = (len - done).min(SNAPSHOT_MAX);
                let hva = chunk.hva + skip + done;
                let pa = chunk.pa + skip + done;
                let snapshot = Snapshot {
                    pa,
                    data: self.copy_in(hva, n)?,
                };
                let n32 = u32::try_from(n).map_err(|_| libc::EINVAL)?;
                log::debug!("LAUNCH_UPDATE_DATA {hva:#x}+{n:#x} at frame {pa:#x}");
                let r = self
                    .platform
                    .launch_update_data(self.vm.handle, &snapshot, pa, n32);
                self.fw(r)?;
                done += n;
            }
            left -= len;
            skip = 0;
        }
        Ok(())
    }

    /// Copies `len` bytes at `hva` in, in pieces of at most [`COPY_CHUNK`].
    fn copy_in(&self, hva: u64, len: u64) -> Result<Vec<u8>, Errno> {
        let mut data = Vec::with_capacity(usize::try_from(len).map_err(|_| libc::EINVAL)?);
        let mut at = 0u64;
        while at < len {
            let n = (len - at).min(COPY_CHUNK as u64) as usize;
            data.extend_from_slice(&self.caller.read(hva + at, n).map_err(efault)?);
            at += n as u64;
        }
        Ok(data)
    }

    /// The blob a command returns whose address and length are at `at` of
    /// its `params` (a zero length asks for the length only).
    fn out_blob(params: &[u8], at: usize) -> Result<OutBlob, Errno> {
        let (uaddr, len) = (u64_at(params, at), u32_at(params, at + 8));
        let query = len == 0;
        let mut buf = Vec::new();
        if !query && uaddr != 0 {
            if len > SEV_FW_BLOB_MAX_SIZE {
                return Err(libc::EINVAL);
            }
            buf = vec![0u8; len as usize];
        }
        Ok(OutBlob {
            at,
            uaddr,
            query,
            buf,
        })
    }

    /// Ends a command returning `blob`: the firmware's outcome `r` (the
    /// blob's length, `fallback` when it is no u32; or the length it
    /// needs), the blob copied out unless the caller asked for the length
    /// only, the length written back into `params`.
    fn blob_out(
        &mut self,
        r: Result<usize, FwError>,
        fallback: u32,
        blob: OutBlob,
        mut params: Vec<u8>,
    ) -> Result<(), Errno> {
        let (result, out_len) = match r {
            Ok(n) => (self.fw(Ok(())), u32::try_from(n).unwrap_or(fallback)),
            Err(e) => {
                let (errno, required, _) = self.fw_len(e);
                (Err(errno), required)
            }
        };
        if !blob.query {
            result?;
            if !blob.buf.is_empty() {
                self.caller.write(blob.uaddr, &blob.buf).map_err(efault)?;
            }
        }
        put_u32(&mut params, blob.at + 8, out_len);
        self.write_data(&params)?;
        result
    }

    fn launch_measure(&mut self) -> Result<(), Errno> {
        self.require_active()?;
        let params = self.read_data(16)?;
        let mut blob = Self::out_blob(&params, 0)?;
        self.require_sev_fd(self.vm.fd)?;
        let r = self.platform.launch_measure(self.vm.handle, &mut blob.buf);
        self.blob_out(r, MEASURE_LEN, blob, params)
    }

    /// A command on the guest's handle alone (LAUNCH_FINISH, SEND_FINISH,
    /// SEND_CANCEL, RECEIVE_FINISH).
    fn simple(&mut self, f: fn(&Platform, u32) -> Result<(), FwError>) -> Result<(), Errno> {
        self.require_active()?;
        self.require_sev_fd(self.vm.fd)?;
        let r = f(self.platform, self.vm.handle);
        self.fw(r)
    }

    fn guest_status(&mut self) -> Result<(), Errno> {
        self.require_active()?;
        self.require_sev_fd(self.vm.fd)?;
        let r = self.platform.guest_status(self.vm.handle);
        let s = self.fw(r)?;
        let mut out = [0u8; 12];
        put_u32(&mut out, 0, s.handle);
        put_u32(&mut out, 4, s.policy.bits());
        put_u32(&mut out, 8, s.state as u32);
        self.write_data(&out)
    }

    /// The frame address of user address `uaddr` (pinning its page).
    fn frame_of(&mut self, uaddr: u64, write: bool, extra: u64) -> Result<u64, Errno> {
        let pinned = self
            .vm
            .pin(self.caller, uaddr & PAGE_MASK, PAGE_SIZE, write, extra)?;
        let chunk = pinned.chunks.first().ok_or(libc::EINVAL)?;
        Ok(chunk.pa + (uaddr & !PAGE_MASK))
    }

    /// `sev_dbg_crypt`: page by page of the source; misaligned pieces go
    /// through a bounce buffer as in KVM (for DBG_ENCRYPT, a
    /// read-modify-write of the destination's 16-byte blocks).
    fn dbg_crypt(&mut self, dec: bool) -> Result<(), Errno> {
        self.require_active()?;
        let params = self.read_data(24)?;
        let (src, dst, size) = (u64_at(&params, 0), u64_at(&params, 8), u32_at(&params, 16));
        if size == 0 || src.checked_add(u64::from(size)).is_none() {
            return Err(libc::EINVAL);
        }
        if dst == 0 {
            return Err(libc::EINVAL);
        }
        let (mut vaddr, mut dst_vaddr, mut left) = (src, dst, u64::from(size));
        while left > 0 {
            let src_pa = self.frame_of(vaddr, false, 0)?;
            let dst_pa = self.frame_of(dst_vaddr, true, 1)?;
            let s_off = vaddr & !PAGE_MASK;
            let len = (PAGE_SIZE - s_off).min(left);
            self.require_sev_fd(self.vm.fd)?;
            if dec {
                self.dbg_decrypt_user(src_pa, dst_vaddr, len)?;
            } else {
                self.dbg_encrypt_user(vaddr, dst_pa, len)?;
            }
            vaddr += len;
            dst_vaddr += len;
            left -= len;
        }
        Ok(())
    }

    /// `__sev_dbg_decrypt`: the 16-byte blocks around `len` bytes at `pa`.
    fn dbg_decrypt_blocks(&mut self, pa: u64, len: u64) -> Result<Vec<u8>, Errno> {
        let offset = pa & 15;
        let start = pa - offset;
        let sz = (len + offset).div_ceil(16) * 16;
        let mut buf = vec![0u8; usize::try_from(sz).map_err(|_| libc::EINVAL)?];
        let r = self
            .platform
            .dbg_decrypt(self.vm.handle, &self.phys(), start, &mut buf);
        self.fw(r)?;
        Ok(buf)
    }

    fn dbg_decrypt_user(&mut self, src_pa: u64, dst_vaddr: u64, len: u64) -> Result<(), Errno> {
        let buf = self.dbg_decrypt_blocks(src_pa, len)?;
        let offset = usize::try_from(src_pa & 15).unwrap_or(0);
        let n = usize::try_from(len).map_err(|_| libc::EINVAL)?;
        let out = buf.get(offset..offset + n).ok_or(libc::EINVAL)?;
        self.caller.write(dst_vaddr, out).map_err(efault)
    }

    fn dbg_encrypt_user(&mut self, src_vaddr: u64, dst_pa: u64, len: u64) -> Result<(), Errno> {
        let n = usize::try_from(len).map_err(|_| libc::EINVAL)?;
        let src = self.caller.read(src_vaddr, n).map_err(efault)?;
        let (data, pa) = if dst_pa & 15 != 0 || len & 15 != 0 {
            // Read-modify-write; KVM encrypts round_up(len, 16) bytes from
            // the rounded-down address (so a tail past that is dropped).
            let mut buf = self.dbg_decrypt_blocks(dst_pa, len)?;
            let off = usize::try_from(dst_pa & 15).unwrap_or(0);
            buf.get_mut(off..off + n)
                .ok_or(libc::EINVAL)?
                .copy_from_slice(&src);
            buf.truncate(n.div_ceil(16) * 16);
            (buf, dst_pa & !15)
        } else {
            (src, dst_pa)
        };
        let r = self
            .platform
            .dbg_encrypt(self.vm.handle, &self.phys(), &data, pa);
        self.fw(r)
    }

    fn launch_secret(&mut self) -> Result<(), Errno> {
        self.require_active()?;
        let params = self.read_data(48)?;
        let (hdr_uaddr, hdr_len) = (u64_at(&params, 0), u32_at(&params, 8));
        let (guest_uaddr, guest_len) = (u64_at(&params, 16), u32_at(&params, 24));
        let (trans_uaddr, trans_len) = (u64_at(&params, 32), u32_at(&params, 40));
        let pinned = self
            .vm
            .pin(self.caller, guest_uaddr, u64::from(guest_len), true, 0)?;
        // The secret must land in contiguous memory.
        let [chunk] = pinned.chunks.as_slice() else {
            return Err(libc::EINVAL);
        };
        let pa = chunk.pa + (guest_uaddr & !PAGE_MASK);
        let trans = self.user_blob(trans_uaddr, trans_len)?;
        let hdr = self.user_blob(hdr_uaddr, hdr_len)?;
        self.require_sev_fd(self.vm.fd)?;
        let r =
            self.platform
                .launch_secret(self.vm.handle, &self.phys(), &hdr, pa, guest_len, &trans);
        self.fw(r)
    }

    fn attestation_report(&mut self) -> Result<(), Errno> {
        self.require_active()?;
        let params = self.read_data(32)?;
        let mut mnonce = [0u8; 16];
        mnonce.copy_from_slice(params.get(..16).ok_or(libc::EFAULT)?);
        let mut blob = Self::out_blob(&params, 16)?;
        if blob.buf.is_empty() {
            // The firmware gets a zero MNONCE with no buffer.
            mnonce = [0u8; 16];
        }
        self.require_sev_fd(self.vm.fd)?;
        let r = self
            .platform
            .attestation(self.vm.handle, &mnonce, &mut blob.buf);
        self.blob_out(r, 0, blob, params)
    }

    fn send_start(&mut self) -> Result<(), Errno> {
        self.require_active()?;
        let mut params = self.read_data(72)?;
        let session_len = u32_at(&params, 64);
        if session_len == 0 {
            // Length query: the firmware answers INVALID_LEN with the
            // session's length.
            self.require_sev_fd(self.vm.fd)?;
            let r = self
                .platform
                .send_start(self.vm.handle, &[], &[], &[], &mut []);
            let (result, len) = match r {
                Ok(_) => (self.fw(Ok(())), 0),
                Err(e) => {
                    let (errno, required, _) = self.fw_len(e);
                    (Err(errno), required)
                }
            };
            put_u32(&mut params, 64, len);
            self.write_data(&params)?;
            return result;
        }
        let (pdh_uaddr, pdh_len) = (u64_at(&params, 8), u32_at(&params, 16));
        let session_uaddr = u64_at(&params, 56);
        if pdh_uaddr == 0
            || pdh_len == 0
            || session_uaddr == 0
            || session_len > SEV_FW_BLOB_MAX_SIZE
        {
            return Err(libc::EINVAL);
        }
        let pdh = self.user_blob(pdh_uaddr, pdh_len)?;
        let plat = self.user_blob(u64_at(&params, 24), u32_at(&params, 32))?;
        let amd = self.user_blob(u64_at(&params, 40), u32_at(&params, 48))?;
        let mut session = vec![0u8; session_len as usize];
        self.require_sev_fd(self.vm.fd)?;
        let r = self
            .platform
            .send_start(self.vm.handle, &pdh, &plat, &amd, &mut session);
        let (result, policy, len) = match r {
            Ok(policy) => (self.fw(Ok(())), policy.bits(), 0x80u32),
            Err(e) => {
                let (errno, required, _) = self.fw_len(e);
                (
                    Err(errno),
                    0,
                    if required == 0 { session_len } else { required },
                )
            }
        };
        if result.is_ok() {
            self.caller.write(session_uaddr, &session).map_err(efault)?;
        }
        put_u32(&mut params, 0, policy);
        put_u32(&mut params, 64, len);
        self.write_data(&params)?;
        result
    }

    fn send_update_data(&mut self) -> Result<(), Errno> {
        self.require_active()?;
        let mut params = self.read_data(48)?;
        let (hdr_uaddr, hdr_len) = (u64_at(&params, 0), u32_at(&params, 8));
        let (guest_uaddr, guest_len) = (u64_at(&params, 16), u32_at(&params, 24));
        let (trans_uaddr, trans_len) = (u64_at(&params, 32), u32_at(&params, 40));
        if trans_len == 0 || hdr_len == 0 {
            self.require_sev_fd(self.vm.fd)?;
            let r = self.platform.send_update_data(
                self.vm.handle,
                &self.phys(),
                0,
                0,
                &mut [],
                &mut [],
            );
            let (result, lens) = match r {
                Ok(()) => (self.fw(Ok(())), (0, 0)),
                Err(e) => {
                    let (errno, a, b) = self.fw_len(e);
                    (Err(errno), (a, b))
                }
            };
            put_u32(&mut params, 8, lens.0);
            put_u32(&mut params, 40, lens.1);
            self.write_data(&params)?;
            return result;
        }
        if trans_uaddr == 0 || guest_uaddr == 0 || guest_len == 0 || hdr_uaddr == 0 {
            return Err(libc::EINVAL);
        }
        let offset = guest_uaddr & !PAGE_MASK;
        if u64::from(guest_len) > PAGE_SIZE || u64::from(guest_len) + offset > PAGE_SIZE {
            return Err(libc::EINVAL);
        }
        let pa = self.frame_of(guest_uaddr, false, 0)?;
        // KVM's kzalloc of either buffer fails above its largest size.
        if hdr_len > KMALLOC_MAX || trans_len > KMALLOC_MAX {
            return Err(libc::ENOMEM);
        }
        let mut hdr = vec![0u8; hdr_len as usize];
        let mut trans = vec![0u8; trans_len as usize];
        self.require_sev_fd(self.vm.fd)?;
        let r = self.platform.send_update_data(
            self.vm.handle,
            &self.phys(),
            pa,
            guest_len,
            &mut hdr,
            &mut trans,
        );
        self.fw(r)?;
        self.caller.write(trans_uaddr, &trans).map_err(efault)?;
        self.caller.write(hdr_uaddr, &hdr).map_err(efault)
    }

    fn receive_start(&mut self) -> Result<(), Errno> {
        self.require_active()?;
        let mut params = self.read_data(40)?;
        let (share, policy) = (u32_at(&params, 0), u32_at(&params, 4));
        let (pdh_uaddr, pdh_len) = (u64_at(&params, 8), u32_at(&params, 16));
        let (session_uaddr, session_len) = (u64_at(&params, 24), u32_at(&params, 32));
        if pdh_uaddr == 0 || pdh_len == 0 || session_uaddr == 0 || session_len == 0 {
            return Err(libc::EINVAL);
        }
        let pdh = self.user_blob(pdh_uaddr, pdh_len)?;
        let session = self.user_blob(session_uaddr, session_len)?;
        self.require_sev_fd(self.sev_fd)?;
        let r = self
            .platform
            .receive_start(share, Policy::from_bits(policy), &pdh, &session);
        let handle = self.fw(r)?;
        self.bind_guest(handle, &mut params)
    }

    fn receive_update_data(&mut self) -> Result<(), Errno> {
        if !self.vm.active {
            return Err(libc::EINVAL);
        }
        let params = self.read_data(48)?;
        let (hdr_uaddr, hdr_len) = (u64_at(&params, 0), u32_at(&params, 8));
        let (guest_uaddr, guest_len) = (u64_at(&params, 16), u32_at(&params, 24));
        let (trans_uaddr, trans_len) = (u64_at(&params, 32), u32_at(&params, 40));
        if hdr_uaddr == 0
            || hdr_len == 0
            || guest_uaddr == 0
            || guest_len == 0
            || trans_uaddr == 0
            || trans_len == 0
        {
            return Err(libc::EINVAL);
        }
        let offset = guest_uaddr & !PAGE_MASK;
        if u64::from(guest_len) > PAGE_SIZE || u64::from(guest_len) + offset > PAGE_SIZE {
            return Err(libc::EINVAL);
        }
        let hdr = self.user_blob(hdr_uaddr, hdr_len)?;
        let trans = self.user_blob(trans_uaddr, trans_len)?;
        let pa = self.frame_of(guest_uaddr, true, 0)?;
        self.require_sev_fd(self.vm.fd)?;
        let r = self.platform.receive_update_data(
            self.vm.handle,
            &self.phys(),
            &hdr,
            pa,
            guest_len,
            &trans,
        );
        self.fw(r)
    }
}

/// The link `/proc/TID/fd/FD` of a KVM VM descriptor.
pub const KVM_VM_LINK: &str = "anon_inode:kvm-vm";

/// The supervisor's [`Handler`] for KVM's SEV ioctls: the three requests on
/// a descriptor that is a KVM VM (`/proc/TID/fd/FD` reads
/// [`KVM_VM_LINK`]) are served here; on any other descriptor the kernel
/// answers.
///
/// A VM is one open file description, as in KVM: a descriptor `dup`ed from
/// a VM's descriptor (a VMM that keeps a copy of it) is the same VM, and a
/// descriptor number closed and reused for another VM is another VM. The
/// handler keeps a duplicate of each VM's file (`pidfd_getfd`) and finds a
/// call's VM by comparing files (`kcmp`); VMs are keyed in [`KvmSev`] by
/// the first descriptor number seen ([U85](docs/protocol/choices.md#u85)).
#[derive(Debug)]
pub struct KvmHandler {
    platform: Arc<Platform>,
    vms: KvmSev,
    /// (process, first descriptor number, our duplicate of the VM's file).
    files: Vec<(u32, i32, OwnedFd)>,
}

impl KvmHandler {
    /// A handler serving from `platform`.
    pub fn new(platform: Arc<Platform>) -> Self {
        KvmHandler {
            platform,
            vms: KvmSev::new(),
            files: Vec::new(),
        }
    }

    /// The descriptor number under which VM descriptor `fd` of `tgid` is
    /// kept: that of the VM it is a duplicate of, else `fd` itself (a new
    /// VM, whose file is duplicated here; a VM kept under the same number
    /// whose file is another one is released first). `None` when the
    /// descriptor cannot be duplicated (it was closed meanwhile).
    fn canonical_fd(&mut self, tgid: u32, fd: i32) -> Option<i32> {
        for (t, first, file) in &self.files {
            if *t == tgid && sys::same_file(file, tgid, fd).unwrap_or(false) {
                return Some(*first);
            }
        }
        let pidfd = sys::pidfd_open(tgid).ok()?;
        let file = sys::pidfd_getfd(&pidfd, fd).ok()?;
        if let Some(i) = self
            .files
            .iter()
            .position(|(t, first, _)| *t == tgid && *first == fd)
        {
            self.files.swap_remove(i);
            self.vms.release(&self.platform, tgid, fd);
        }
        self.files.push((tgid, fd, file));
        Some(fd)
    }

    /// Releases the VMs of processes that are gone (their guests are
    /// decommissioned, as KVM does when the VM's last reference goes).
    fn reap(&mut self) {
        let gone: Vec<u32> = self
            .vms
            .vms
            .keys()
            .map(|k| k.0)
            .filter(|t| !Path::new(&format!("/proc/{t}")).exists())
            .collect();
        for t in gone {
            self.vms.release_process(&self.platform, t);
            self.files.retain(|(p, _, _)| *p != t);
        }
    }
}

impl Handler for KvmHandler {
    fn ioctl(&mut self, call: &Call<'_>, fd: i32, request: u32, arg: u64) -> Answer {
        if !matches!(
            request,
            KVM_MEMORY_ENCRYPT_OP | KVM_MEMORY_ENCRYPT_REG_REGION | KVM_MEMORY_ENCRYPT_UNREG_REGION
        ) {
            return Answer::Continue;
        }
        if call.fd_target(fd).as_deref() != Some(Path::new(KVM_VM_LINK)) {
            return Answer::Continue;
        }
        let Some(tgid) = proc_tgid(call.tid()) else {
            return Answer::Continue;
        };
        self.reap();
        let Some(fd) = self.canonical_fd(tgid, fd) else {
            return Answer::Errno(libc::EBADF);
        };
        let caller = ProcessCaller { call };
        match self
            .vms
            .ioctl(&self.platform, &caller, tgid, fd, request, arg)
        {
            Ok(v) => Answer::Value(v),
            Err(e) => Answer::Errno(e),
        }
    }
}

/// `CAP_IPC_LOCK` (include/uapi/linux/capability.h).
const CAP_IPC_LOCK: u32 = 14;
/// Most bytes read from one `/proc` file.
const PROC_READ_MAX: u64 = 16 << 20;
/// Most descriptors looked at for vCPUs.
const FD_SCAN_MAX: usize = 1 << 16;

fn read_proc(path: &str) -> Option<String> {
    let mut s = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(PROC_READ_MAX)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

/// The thread group (process) of thread `tid`.
fn proc_tgid(tid: u32) -> Option<u32> {
    read_proc(&format!("/proc/{tid}/status"))?
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether `[addr, addr + len)` is covered by mappings of `maps` (the text
/// of `/proc/PID/maps`) that are readable, and writable when `write`.
fn maps_cover(maps: &str, addr: u64, len: u64, write: bool) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    let mut at = addr;
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some((lo, hi)) = range.split_once('-') else {
            continue;
        };
        let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16)) else {
            continue;
        };
        if hi <= at {
            continue;
        }
        if lo > at {
            return false;
        }
        let ok = perms.starts_with('r') && (!write || perms.get(1..2) == Some("w"));
        if !ok {
            return false;
        }
        at = hi;
        if at >= end {
            return true;
        }
    }
    false
}

/// The caller of a notification, as KVM sees it.
struct ProcessCaller<'a, 'b> {
    call: &'a Call<'b>,
}

impl UserMemory for ProcessCaller<'_, '_> {
    fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, Fault> {
        self.call.mem().read(addr, len)
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Fault> {
        self.call.mem().write(addr, data)
    }
}

impl Caller for ProcessCaller<'_, '_> {
    fn pinnable(&self, addr: u64, len: u64, write: bool) -> bool {
        read_proc(&format!("/proc/{}/maps", self.call.tid()))
            .is_some_and(|m| maps_cover(&m, addr, len, write))
    }

    fn is_dev_sev(&self, fd: u32) -> bool {
        i32::try_from(fd)
            .ok()
            .and_then(|fd| self.call.sev_device(fd))
            .is_some_and(|d| !d.path_only)
    }

    fn vcpus_created(&self) -> bool {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/fd", self.call.tid())) else {
            return false;
        };
        dir.take(FD_SCAN_MAX).flatten().any(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("anon_inode:kvm-vcpu"))
        })
    }

    fn lock_limit_pages(&self) -> Option<u64> {
        let tid = self.call.tid();
        let status = read_proc(&format!("/proc/{tid}/status"))?;
        let cap_eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())?;
        if cap_eff & (1 << CAP_IPC_LOCK) != 0 {
            return None;
        }
        let limits = read_proc(&format!("/proc/{tid}/limits"))?;
        let soft = limits
            .lines()
            .find_map(|l| l.strip_prefix("Max locked memory"))?
            .split_whitespace()
            .next()?;
        soft.parse::<u64>().ok().map(|b| b / PAGE_SIZE)
    }
}

#[cfg(test)]
mod tests;
