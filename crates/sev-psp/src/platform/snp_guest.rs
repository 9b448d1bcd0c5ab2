//! The SNP guest commands (docs/protocol/snp.md#snp-guest-commands) on
//! [`Platform`]: guest contexts, the launch, guest status, decommission.
//!
//! A guest context is named by a handle unique on the platform; the
//! platform-wide part (which handles exist, their ASIDs) is in the runtime
//! area's `snp` record, the rest (policy, keys, launch digest, which pages
//! were launched) in the process that created it, as for SEV guests.
//! Checks run in the order of docs/protocol/emulator.md#snp-check-order.

use std::collections::BTreeSet;
use std::sync::Arc;

use sev_proto::abi::Status;
use sev_proto::hash::SHA384_LEN;
use sev_proto::snp::{
    id_block, uniform_page_digest, GuestPolicy, LaunchDigest, PageInfo, PageType, TcbVersion,
};
use zeroize::Zeroizing;

use super::shared::Snapshot;
use super::snp::{load_snp_shared, require_snp_init};
use super::{FwError, Inner, Op, Platform, MAX_GUESTS};
use crate::memory::{firmware_read, firmware_write, GuestBacking, MemoryState, Region, Vek};
use crate::snp::guest::{
    check_cpuid_page, fms, secrets_page, CpuidRejection, LARGE_PAGE_LEN, PAGE_LEN,
};
use crate::snp::state::{SnpRuntime, SnpShared};
use crate::snp::{
    Pvalidate, SnpCommand, SnpGuestState, SnpGuestStatus, SnpIdentity, SnpLaunchFinish,
    SnpLaunchIdentity, SnpLaunchStart, SnpLaunchUpdate, SnpPageState, SnpRmpEntry,
};
use crate::store::run::HeldRecord;

/// One SNP guest context, in the process that created it.
pub(crate) struct SnpGuest {
    pub(super) state: SnpGuestState,
    pub(super) policy: Option<GuestPolicy>,
    pub(super) asid: u32,
    pub(super) vek: Vek,
    pub(super) vmpcks: Zeroizing<[[u8; 32]; 4]>,
    pub(super) gosvw: [u8; 16],
    pub(super) digest: LaunchDigest,
    pub(super) host_data: [u8; 32],
    pub(super) vcek_disabled: bool,
    /// What a verified ID block gave the guest (None without one).
    pub(super) identity: Option<id_block::Identity>,
    pub(super) auth_key_en: bool,
    pub(super) memory: Option<Arc<MemoryState>>,
    /// The 4 KiB units the RMP model assigns to the guest (private):
    /// launched by LAUNCH_UPDATE or made private by a page-state change
    /// (docs/protocol/snp.md#rmp-model).
    pub(super) assigned: BTreeSet<u64>,
    /// The units that are VMSAs.
    pub(super) vmsas: BTreeSet<u64>,
    /// The assigned units whose RMP Validated bit is set: launched, or
    /// validated by the guest's PVALIDATE.
    pub(super) validated: BTreeSet<u64>,
    /// The first units of the assigned 2 MiB RMP entries (the other units of
    /// such an entry are in `assigned` too).
    pub(super) large: BTreeSet<u64>,
    /// The message sequence counter of each VMPCK: the last sequence
    /// number used (a response's), 0 from LAUNCH_START
    /// (docs/protocol/snp.md#sequence-numbers).
    pub(super) seqnos: [u64; 4],
    /// REPORT_ID, random per guest, drawn at LAUNCH_START.
    pub(super) report_id: [u8; 32],
    /// The VM root key of MSG_KEY_REQ, random per guest, drawn at
    /// LAUNCH_START.
    pub(super) vmrk: Zeroizing<[u8; 32]>,
    /// LAUNCH_TCB: the committed TCB when the context was created.
    pub(super) launch_tcb: TcbVersion,
    /// The context's liveness record, held while the context exists in
    /// this process (docs/architecture-platform-state.md#snp-guest-contexts).
    _liveness: HeldRecord,
}

fn op_of(c: SnpCommand) -> Op {
    Op::Snp(c)
}

fn fail(op: Op, status: Status, detail: impl Into<String>) -> FwError {
    FwError::new(op, status, detail)
}

fn policy_failure(op: Op, detail: impl Into<String>) -> FwError {
    fail(op, Status::PolicyFailure, detail)
}

impl SnpGuest {
    fn memory(&mut self, op: Op, mem: &dyn GuestBacking) -> Result<Arc<MemoryState>, FwError> {
        self.memory_with(op, &mem.regions())
    }

    /// [`SnpGuest::memory`] over guest memory of `regions`.
    fn memory_with(&mut self, op: Op, regions: &[Region]) -> Result<Arc<MemoryState>, FwError> {
        if let Some(state) = &self.memory {
            if state.regions() != regions {
                return Err(fail(
                    op,
                    Status::InvalidAddress,
                    "the guest was first used with another guest-memory layout",
                ));
            }
            return Ok(Arc::clone(state));
        }
        let state = Arc::new(
            MemoryState::new_snp(&self.vek, regions)
                .map_err(|e| fail(op, Status::InvalidAddress, e.to_string()))?,
        );
        self.memory = Some(Arc::clone(&state));
        Ok(state)
    }

    pub(super) fn require_state(&self, op: Op, allowed: &[SnpGuestState]) -> Result<(), FwError> {
        if allowed.contains(&self.state) {
            return Ok(());
        }
        let names: Vec<&str> = allowed.iter().map(|s| s.name()).collect();
        Err(fail(
            op,
            Status::InvalidGuestState,
            format!(
                "guest is {}; the command needs {}",
                self.state.name(),
                names.join(" or ")
            ),
        ))
    }

    fn require_active(&self, op: Op) -> Result<(), FwError> {
        if self.asid == 0 {
            return Err(fail(op, Status::Inactive, "guest is not activated"));
        }
        Ok(())
    }
}

impl SnpGuest {
    /// One SNP_LAUNCH_UPDATE page of this guest (LAUNCH and active,
    /// checked by the caller), `update` already checked by
    /// [`check_update`]: the rest of the command's checks in its order,
    /// then the page is encrypted and measured. Nothing changes on error
    /// but a CPUID page's corrected table, written back. The page is
    /// measured with the GPA of its RMP entry, `rmp_gpa` (the page's own
    /// GPA but for VMSAs: [`Platform::snp_launch_update_vmsa`]).
    #[allow(clippy::too_many_arguments)]
    fn launch_page(
        &mut self,
        op: Op,
        id: &SnpIdentity,
        mem: &dyn GuestBacking,
        regions: &[Region],
        update: &SnpLaunchUpdate,
        rmp_gpa: u64,
        page: &mut [u8; PAGE_LEN],
    ) -> Result<(), FwError> {
        let mut digest = self.digest;
        let state = self.measure_page(
            op,
            id,
            mem,
            regions,
            update,
            rmp_gpa,
            page,
            &mut digest,
            None,
        )?;
        self.commit_pages(op, &state, update, update_len(update), digest)
    }

    /// [`SnpGuest::launch_page`] without its commit: the checks, the page's
    /// encryption and its measurement into `digest`. Changes nothing of the
    /// guest, so consecutive pages of one range can be measured first and
    /// committed together ([`SnpGuest::commit_pages`]); returns the memory
    /// state to commit to. Each 4 KiB unit is measured with the GPA its
    /// RMP entry names, `rmp_gpa` onwards.
    #[allow(clippy::too_many_arguments)]
    fn measure_page(
        &mut self,
        op: Op,
        id: &SnpIdentity,
        mem: &dyn GuestBacking,
        regions: &[Region],
        update: &SnpLaunchUpdate,
        rmp_gpa: u64,
        page: &mut [u8; PAGE_LEN],
        digest: &mut LaunchDigest,
        contents: Option<&[u8; SHA384_LEN]>,
    ) -> Result<Arc<MemoryState>, FwError> {
        let len = update_len(update);
        let end = update.gpa.checked_add(len).ok_or_else(|| {
            fail(
                op,
                Status::InvalidAddress,
                "the page wraps the address space",
            )
        })?;
        if !regions
            .iter()
            .any(|r| r.gpa <= update.gpa && r.end().is_some_and(|e| end <= e))
        {
            return Err(fail(
                op,
                Status::InvalidAddress,
                format!("{:#x}..{end:#x} is not guest memory", update.gpa),
            ));
        }
        if let Some(u) = self.assigned.range(update.gpa..end).next() {
            return Err(fail(
                op,
                Status::InvalidPageState,
                format!("the page at {u:#x} was already launched (not Pre-Guest)"),
            ));
        }
        let state = self.memory_with(op, regions)?;
        let mem_err =
            |e: crate::memory::MemoryError| fail(op, Status::InvalidAddress, e.to_string());
        let mut measured = *digest;
        for unit in (update.gpa..end).step_by(PAGE_LEN) {
            if let (Some(contents), false) = (contents, update.large) {
                // A 4 KiB NORMAL page whose contents were hashed ahead
                // ([`page_digests`]).
                measured.extend(&PageInfo {
                    contents: *contents,
                    page_type: update.page_type,
                    imi: false,
                    vmpl_perms: update.vmpl_perms,
                    gpa: rmp_gpa.wrapping_add(unit - update.gpa),
                });
                continue;
            }
            match update.page_type {
                PageType::Normal | PageType::Vmsa | PageType::Unmeasured => {
                    firmware_read(mem, unit, &mut page[..]).map_err(mem_err)?;
                }
                PageType::Zero => {
                    page.fill(0);
                    firmware_write(mem, unit, &page[..]).map_err(mem_err)?;
                }
                PageType::Secrets => {
                    let built = secrets_page(fms(id.product), false, &self.gosvw, &self.vmpcks);
                    firmware_write(mem, unit, &built[..]).map_err(mem_err)?;
                    page.fill(0);
                }
                PageType::Cpuid => {
                    firmware_read(mem, unit, &mut page[..]).map_err(mem_err)?;
                    match check_cpuid_page(page, fms(id.product)) {
                        Ok(()) => {}
                        Err(CpuidRejection::Malformed(why)) => {
                            return Err(fail(
                                op,
                                Status::InvalidParam,
                                format!("CPUID page: {why}"),
                            ));
                        }
                        Err(CpuidRejection::Corrected(fixed, why)) => {
                            firmware_write(mem, unit, &fixed[..]).map_err(mem_err)?;
                            return Err(fail(
                                op,
                                Status::InvalidParam,
                                format!("CPUID page refused, corrected table written back: {why}"),
                            ));
                        }
                    }
                }
            }
            measured.extend(&PageInfo {
                contents: update.page_type.contents_digest(page),
                page_type: update.page_type,
                imi: false,
                vmpl_perms: update.vmpl_perms,
                gpa: rmp_gpa.wrapping_add(unit - update.gpa),
            });
        }
        *digest = measured;
        Ok(state)
    }

    /// Commits the `len` bytes of pages of `update`'s type from
    /// `update.gpa` on, measured into `digest` by [`SnpGuest::measure_page`]:
    /// assigned to the guest, validated (launched pages start validated, as
    /// on hardware), private in `state`, one 2 MiB entry for a 2 MiB page.
    fn commit_pages(
        &mut self,
        op: Op,
        state: &MemoryState,
        update: &SnpLaunchUpdate,
        len: u64,
        digest: LaunchDigest,
    ) -> Result<(), FwError> {
        state
            .mark_private(update.gpa, len)
            .map_err(|e| fail(op, Status::InvalidAddress, e.to_string()))?;
        self.digest = digest;
        let units = (update.gpa..update.gpa.saturating_add(len)).step_by(PAGE_LEN);
        self.assigned.extend(units.clone());
        self.validated.extend(units.clone());
        if update.large {
            self.large.insert(update.gpa);
        }
        if update.page_type == PageType::Vmsa {
            self.vmsas.extend(units);
        }
        Ok(())
    }
}

/// Ranges whose pages to hash come to this size or more are hashed on
/// several threads.
const PARALLEL_HASH_MIN: u64 = 64 * 1024;

/// The SHA-384 of each 4 KiB page of the `len` bytes at `gpa` (a NORMAL
/// page's contents digest), computed ahead of the ranged launch update:
/// uniform pages (padding) take their remembered digest
/// ([`uniform_page_digest`]), and the others, when they come to
/// [`PARALLEL_HASH_MIN`] or more, are hashed on up to
/// [`std::thread::available_parallelism`] threads (the page digests are
/// independent, only the PAGE_INFO chain is sequential; spawning threads
/// for a few pages costs more than hashing them). `None` for a page that
/// could not be read or is left to the update (which measures it itself,
/// and fails there if it cannot read it); empty for a short range, a range
/// not inside one region of guest memory (so its size is bounded by
/// memory's), or a single thread.
fn page_digests(
    mem: &dyn GuestBacking,
    regions: &[Region],
    gpa: u64,
    len: u64,
) -> Vec<Option<[u8; SHA384_LEN]>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let inside = gpa.checked_add(len).is_some_and(|end| {
        regions
            .iter()
            .any(|r| r.gpa <= gpa && r.end().is_some_and(|e| end <= e))
    });
    if len < PARALLEL_HASH_MIN || threads < 2 || !inside {
        return Vec::new();
    }
    let page_gpa = |index: usize| {
        (index as u64)
            .checked_mul(PAGE_LEN as u64)
            .and_then(|o| gpa.checked_add(o))
    };
    let pages = (len / PAGE_LEN as u64) as usize;
    let mut out = vec![None; pages];
    let mut page = Zeroizing::new([0u8; PAGE_LEN]);
    let mut to_hash = Vec::new();
    for (index, slot) in out.iter_mut().enumerate() {
        let Some(at) = page_gpa(index) else {
            break;
        };
        if firmware_read(mem, at, &mut page[..]).is_err() {
            continue;
        }
        match uniform_page_digest(&page) {
            Some(digest) => *slot = Some(digest),
            None => to_hash.push(index),
        }
    }
    if ((to_hash.len() * PAGE_LEN) as u64) < PARALLEL_HASH_MIN {
        // Left to the update, which hashes them as it measures them.
        return out;
    }
    let hash = |indices: &[usize]| -> Vec<(usize, [u8; SHA384_LEN])> {
        let mut page = Zeroizing::new([0u8; PAGE_LEN]);
        indices
            .iter()
            .filter_map(|&index| {
                firmware_read(mem, page_gpa(index)?, &mut page[..]).ok()?;
                Some((index, PageType::Normal.contents_digest(&page)))
            })
            .collect()
    };
    let hash = &hash;
    let per_thread = to_hash.len().div_ceil(threads);
    let hashed: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = to_hash
            .chunks(per_thread)
            .map(|chunk| scope.spawn(move || hash(chunk)))
            .collect();
        // A worker that panicked leaves its pages to the update.
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    for (index, digest) in hashed {
        if let Some(slot) = out.get_mut(index) {
            *slot = Some(digest);
        }
    }
    out
}

/// The bytes one SNP_LAUNCH_UPDATE covers: 4 KiB or 2 MiB.
fn update_len(update: &SnpLaunchUpdate) -> u64 {
    if update.large {
        LARGE_PAGE_LEN
    } else {
        PAGE_LEN as u64
    }
}

/// SNP_LAUNCH_UPDATE's checks of its input alone, before any state is
/// read: misaligned GPA → INVALID_ADDRESS; VMSA, SECRETS or CPUID as a
/// 2 MiB page → INVALID_PAGE_SIZE; IMI_PAGE → INVALID_PARAM.
fn check_update(op: Op, update: &SnpLaunchUpdate) -> Result<(), FwError> {
    let len = if update.large {
        LARGE_PAGE_LEN
    } else {
        PAGE_LEN as u64
    };
    if !update.gpa.is_multiple_of(len) {
        return Err(fail(
            op,
            Status::InvalidAddress,
            format!(
                "GPA {:#x} is not aligned to the page size {len:#x}",
                update.gpa
            ),
        ));
    }
    let single_page = matches!(
        update.page_type,
        PageType::Vmsa | PageType::Secrets | PageType::Cpuid
    );
    if update.large && single_page {
        return Err(fail(
            op,
            Status::InvalidPageSize,
            format!("a {:?} page must be 4 KiB", update.page_type),
        ));
    }
    if update.imi {
        return Err(fail(
            op,
            Status::InvalidParam,
            "IMI_PAGE for a guest without IMI_EN",
        ));
    }
    Ok(())
}

/// The platform-wide state a guest command works on, read under the
/// directory lock (held until dropped).
pub(super) struct GuestCtx {
    pub(super) shared: Snapshot,
    pub(super) snp: SnpShared,
    pub(super) id: SnpIdentity,
}

impl Platform {
    /// Loads the platform-wide state for a guest command: SNP INIT
    /// (INVALID_PLATFORM_STATE).
    ///
    /// The runtime area is listed only when its guest records changed
    /// ([`Snapshot::load_cached`]), as for SEV guest commands: the SNP
    /// commands work on this process's own guest contexts.
    pub(super) fn snp_guest_ctx(&self, inner: &mut Inner, op: Op) -> Result<GuestCtx, FwError> {
        let shared = Snapshot::load_cached(inner, op)?;
        let id = self.load_snp_identity(inner, &shared, op)?;
        let snp = load_snp_shared(inner, &shared, op)?;
        require_snp_init(op, snp.snp.state)?;
        Ok(GuestCtx { shared, snp, id })
    }

    /// SNP_GCTX_CREATE, SNP INIT: a new guest context in state INIT, with
    /// a fresh memory key; returns its handle. RESOURCE_LIMIT beyond 4096
    /// contexts.
    pub fn snp_gctx_create(&self) -> Result<u32, FwError> {
        let op = op_of(SnpCommand::GctxCreate);
        let mut inner = self.lock();
        let mut ctx = self.snp_guest_ctx(&mut inner, op)?;
        let s = &mut ctx.snp.snp;
        if s.guests.len() >= MAX_GUESTS {
            return Err(fail(op, Status::ResourceLimit, "too many guest contexts"));
        }
        let mut handle = ctx.snp.snp.next_handle.max(1);
        let mut liveness = None;
        // Bounded: at most MAX_GUESTS handles are taken, plus stray files.
        for _ in 0..=MAX_GUESTS * 2 {
            if !ctx.snp.snp.guests.contains_key(&handle) {
                liveness = ctx.snp.hold_guest(handle)?;
                if liveness.is_none() && ctx.snp.remove_stale(handle)? {
                    liveness = ctx.snp.hold_guest(handle)?;
                }
                if liveness.is_some() {
                    break;
                }
            }
            handle = handle.wrapping_add(1).max(1);
        }
        let liveness =
            liveness.ok_or_else(|| fail(op, Status::ResourceLimit, "no free guest handle"))?;
        let s = &mut ctx.snp.snp;
        s.guests.insert(handle, 0);
        s.next_handle = handle.wrapping_add(1).max(1);
        if let Err(e) = ctx.snp.save() {
            let _ = ctx.snp.release_guest(handle);
            return Err(e);
        }
        let vek = Vek::generate(&mut *inner.rng);
        inner.snp_guests.insert(
            handle,
            SnpGuest {
                state: SnpGuestState::Init,
                policy: None,
                asid: 0,
                vek,
                vmpcks: Zeroizing::new([[0; 32]; 4]),
                gosvw: [0; 16],
                digest: LaunchDigest::new(),
                host_data: [0; 32],
                vcek_disabled: false,
                identity: None,
                auth_key_en: false,
                memory: None,
                assigned: BTreeSet::new(),
                vmsas: BTreeSet::new(),
                validated: BTreeSet::new(),
                large: BTreeSet::new(),
                seqnos: [0; 4],
                report_id: [0; 32],
                vmrk: Zeroizing::new([0; 32]),
                launch_tcb: ctx.id.committed_tcb,
                _liveness: liveness,
            },
        );
        log::debug!("SNP_GCTX_CREATE: guest context {handle}");
        Ok(handle)
    }

    /// This process's guest `handle`, which must still exist on the
    /// platform (INVALID_GUEST).
    pub(super) fn snp_guest<'a>(
        inner: &'a mut Inner,
        snp: &SnpRuntime,
        op: Op,
        handle: u32,
    ) -> Result<&'a mut SnpGuest, FwError> {
        if !snp.guests.contains_key(&handle) {
            // Destroyed by an SNP_SHUTDOWN, or never existed.
            inner.snp_guests.remove(&handle);
        }
        inner.snp_guests.get_mut(&handle).ok_or_else(|| {
            fail(
                op,
                Status::InvalidGuest,
                format!("no SNP guest context {handle} in this process"),
            )
        })
    }

    /// SNP_LAUNCH_START, guest INIT → LAUNCH: checks the policy against the
    /// platform (docs/protocol/snp.md#launch-start-policy-checks, all
    /// POLICY_FAILURE), draws VMPCK0–3, resets the launch digest. MA_EN and
    /// IMI_EN (migration) are UNSUPPORTED.
    pub fn snp_launch_start(&self, handle: u32, start: &SnpLaunchStart) -> Result<(), FwError> {
        let op = op_of(SnpCommand::LaunchStart);
        let mut inner = self.lock();
        let ctx = self.snp_guest_ctx(&mut inner, op)?;
        let api = inner.identity.api;
        let guest = Self::snp_guest(&mut inner, &ctx.snp.snp, op, handle)?;
        guest.require_state(op, &[SnpGuestState::Init])?;
        let policy = check_policy(op, start, api, &ctx.id, &ctx.snp.snp)?;
        if start.ma_en || start.imi_en {
            return Err(fail(
                op,
                Status::Unsupported,
                "migration agents and page import (MA_EN, IMI_EN) are not emulated",
            ));
        }
        let mut vmpcks = Zeroizing::new([[0u8; 32]; 4]);
        for key in vmpcks.iter_mut() {
            inner.rng.fill_bytes(key);
        }
        let mut report_id = [0u8; 32];
        inner.rng.fill_bytes(&mut report_id);
        let mut vmrk = Zeroizing::new([0u8; 32]);
        inner.rng.fill_bytes(&mut vmrk[..]);
        let guest = Self::snp_guest(&mut inner, &ctx.snp.snp, op, handle)?;
        guest.policy = Some(policy);
        guest.vmpcks = vmpcks;
        guest.gosvw = start.gosvw;
        guest.digest = LaunchDigest::new();
        guest.seqnos = [0; 4];
        guest.report_id = report_id;
        guest.vmrk = vmrk;
        guest.state = SnpGuestState::Launch;
        log::debug!("SNP_LAUNCH_START: guest {handle}, policy {policy}");
        Ok(())
    }

    /// SNP_ACTIVATE, guest LAUNCH or RUNNING: binds `asid`. SINGLE_SOCKET
    /// on a multi-socket platform → POLICY_FAILURE; an ASID outside the
    /// SEV-ES/SNP range 1..min_sev_asid → INVALID_ASID; the guest already
    /// bound to another ASID → ACTIVE; the ASID bound to another guest (SNP
    /// or SEV) → ASID_OWNED; awaiting a flush → DFFLUSH_REQUIRED.
    pub fn snp_activate(&self, handle: u32, asid: u32) -> Result<(), FwError> {
        self.snp_activate_on(handle, Some(asid)).map(drop)
    }

    /// SNP_ACTIVATE on the lowest SEV-ES/SNP ASID that no guest holds, as
    /// KVM picks one, in one command: when only ASIDs awaiting a flush are
    /// left, the flush SNP_DF_FLUSH would do is done first (KVM issues it).
    /// An already active guest keeps its ASID. Returns the ASID; every ASID
    /// held → RESOURCE_LIMIT; otherwise errors as [`Platform::snp_activate`].
    pub fn snp_activate_free_asid(&self, handle: u32) -> Result<u32, FwError> {
        self.snp_activate_on(handle, None)
    }

    fn snp_activate_on(&self, handle: u32, asid: Option<u32>) -> Result<u32, FwError> {
        let op = op_of(SnpCommand::Activate);
        let mut inner = self.lock();
        let mut ctx = self.snp_guest_ctx(&mut inner, op)?;
        let min_sev_asid = inner.conf.min_sev_asid;
        let guest = Self::snp_guest(&mut inner, &ctx.snp.snp, op, handle)?;
        guest.require_state(op, &[SnpGuestState::Launch, SnpGuestState::Running])?;
        let single = guest
            .policy
            .is_some_and(|p| p.has(GuestPolicy::SINGLE_SOCKET));
        if single && ctx.id.sockets > 1 {
            return Err(policy_failure(
                op,
                format!(
                    "policy SINGLE_SOCKET, but the platform has {} sockets",
                    ctx.id.sockets
                ),
            ));
        }
        let asid = match asid {
            Some(asid) => asid,
            None if guest.asid != 0 => return Ok(guest.asid),
            None => {
                let held: BTreeSet<u32> = ctx
                    .shared
                    .guests
                    .values()
                    .map(|g| g.asid)
                    .chain(ctx.snp.snp.guests.values().copied())
                    .collect();
                let free = |ctx: &GuestCtx| {
                    (1..min_sev_asid).find(|a| {
                        !held.contains(a)
                            && !ctx.snp.snp.needs_flush.contains(a)
                            && !ctx.shared.platform.needs_flush.contains(a)
                    })
                };
                match free(&ctx) {
                    Some(asid) => asid,
                    None => {
                        if !(1..min_sev_asid).any(|a| !held.contains(&a)) {
                            return Err(fail(
                                op,
                                Status::ResourceLimit,
                                "every SEV-ES/SNP ASID is in use",
                            ));
                        }
                        ctx.shared.platform.needs_flush.clear();
                        ctx.shared.save()?;
                        ctx.snp.snp.needs_flush.clear();
                        ctx.snp.save()?;
                        log::debug!("SNP_ACTIVATE: released ASIDs flushed for reuse");
                        free(&ctx).ok_or_else(|| {
                            fail(op, Status::ResourceLimit, "no ASID free after the flush")
                        })?
                    }
                }
            }
        };
        if asid == 0 || asid >= min_sev_asid {
            return Err(fail(
                op,
                Status::InvalidAsid,
                format!("ASID {asid} is not an SEV-ES/SNP ASID (1..{min_sev_asid})"),
            ));
        }
        if guest.asid != 0 && guest.asid != asid {
            return Err(fail(
                op,
                Status::Active,
                format!("guest is already active on ASID {}", guest.asid),
            ));
        }
        let s = &ctx.snp.snp;
        let snp_owner = s.guests.iter().any(|(h, a)| *h != handle && *a == asid);
        let sev_owner = ctx.shared.guests.values().any(|g| g.asid == asid);
        if snp_owner || sev_owner {
            return Err(fail(
                op,
                Status::AsidOwned,
                format!("ASID {asid} belongs to another guest"),
            ));
        }
        if s.needs_flush.contains(&asid) || ctx.shared.platform.needs_flush.contains(&asid) {
            return Err(fail(
                op,
                Status::DfFlushRequired,
                format!("ASID {asid} needs SNP_DF_FLUSH first"),
            ));
        }
        guest.asid = asid;
        ctx.snp.snp.guests.insert(handle, asid);
        ctx.snp.save()?;
        Ok(asid)
    }

    /// SNP_LAUNCH_UPDATE, guest LAUNCH and active: encrypts and measures
    /// one 4 KiB or 2 MiB page at `update.gpa` of `mem` as its page type
    /// (docs/protocol/snp.md#launch-update), chaining one PAGE_INFO per
    /// 4 KiB unit into the launch digest.
    ///
    /// Errors, in order: misaligned GPA → INVALID_ADDRESS; VMSA, SECRETS or
    /// CPUID as a 2 MiB page → INVALID_PAGE_SIZE; IMI_PAGE → INVALID_PARAM;
    /// the platform and guest checks; outside guest memory →
    /// INVALID_ADDRESS; a unit already launched → INVALID_PAGE_STATE; a
    /// CPUID page that breaks the platform's CPUID policy → INVALID_PARAM
    /// with the corrected table written back unencrypted and the digest
    /// unchanged.
    pub fn snp_launch_update(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        update: &SnpLaunchUpdate,
    ) -> Result<(), FwError> {
        let op = op_of(SnpCommand::LaunchUpdate);
        check_update(op, update)?;
        let mut inner = self.lock();
        let ctx = self.snp_guest_ctx(&mut inner, op)?;
        let guest = Self::snp_guest(&mut inner, &ctx.snp.snp, op, handle)?;
        guest.require_state(op, &[SnpGuestState::Launch])?;
        guest.require_active(op)?;
        let mut page = Zeroizing::new([0u8; PAGE_LEN]);
        guest.launch_page(
            op,
            &ctx.id,
            mem,
            &mem.regions(),
            update,
            update.gpa,
            &mut page,
        )
    }

    /// SNP_LAUNCH_UPDATE of a VMSA page kept at `page_gpa` of `mem`,
    /// outside guest RAM (as KVM keeps VMSA pages in its own memory), whose
    /// RMP entry names the guest-physical address `rmp_gpa`: KVM assigns
    /// every VMSA page at `INITIAL_VMSA_GPA`, and the firmware measures a
    /// page with the GPA of its RMP entry (docs/protocol/snp.md#launch-update).
    /// `rmp_gpa` not 4 KiB aligned → INVALID_ADDRESS; otherwise errors as
    /// [`Platform::snp_launch_update`].
    pub fn snp_launch_update_vmsa(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        page_gpa: u64,
        rmp_gpa: u64,
    ) -> Result<(), FwError> {
        let op = op_of(SnpCommand::LaunchUpdate);
        if !rmp_gpa.is_multiple_of(PAGE_LEN as u64) {
            return Err(fail(
                op,
                Status::InvalidAddress,
                format!("RMP GPA {rmp_gpa:#x} is not 4 KiB aligned"),
            ));
        }
        let update = SnpLaunchUpdate::page(PageType::Vmsa, page_gpa);
        check_update(op, &update)?;
        let mut inner = self.lock();
        let ctx = self.snp_guest_ctx(&mut inner, op)?;
        let guest = Self::snp_guest(&mut inner, &ctx.snp.snp, op, handle)?;
        guest.require_state(op, &[SnpGuestState::Launch])?;
        guest.require_active(op)?;
        let mut page = Zeroizing::new([0u8; PAGE_LEN]);
        guest.launch_page(
            op,
            &ctx.id,
            mem,
            &mem.regions(),
            &update,
            rmp_gpa,
            &mut page,
        )
    }

    /// SNP_LAUNCH_UPDATE over a range, as KVM's KVM_SEV_SNP_LAUNCH_UPDATE
    /// issues it: the `len` bytes at `gpa` as consecutive 4 KiB pages of
    /// `page_type` (no VMPL permissions), each launched exactly as
    /// [`Platform::snp_launch_update`] launches it, but with the platform
    /// state loaded once for the whole range.
    ///
    /// `gpa` not 4 KiB aligned, or `len` zero or not a multiple of 4 KiB →
    /// INVALID_ADDRESS. Otherwise the pages are launched in order; at the
    /// first page the per-page command would refuse, the range stops with
    /// that command's error (its detail names the page): the pages before
    /// it stay launched and measured, it and those after it are unchanged.
    pub fn snp_launch_update_range(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        gpa: u64,
        len: u64,
        page_type: PageType,
    ) -> Result<(), FwError> {
        let op = op_of(SnpCommand::LaunchUpdate);
        let unit = PAGE_LEN as u64;
        if len == 0 || !len.is_multiple_of(unit) {
            return Err(fail(
                op,
                Status::InvalidAddress,
                format!("a range of {len:#x} bytes is not a whole number of 4 KiB pages"),
            ));
        }
        let first = SnpLaunchUpdate::page(page_type, gpa);
        check_update(op, &first)?;
        let mut inner = self.lock();
        let ctx = self.snp_guest_ctx(&mut inner, op)?;
        let guest = Self::snp_guest(&mut inner, &ctx.snp.snp, op, handle)?;
        guest.require_state(op, &[SnpGuestState::Launch])?;
        guest.require_active(op)?;
        let regions = mem.regions();
        let mut page = Zeroizing::new([0u8; PAGE_LEN]);
        // The pages are measured one by one, then the ones measured are
        // committed at once: the same as launching each in turn, since no
        // page's checks depend on the others of the range (they are
        // distinct, and the private marks are not read while launching).
        let mut digest = guest.digest;
        let contents = if page_type == PageType::Normal {
            page_digests(mem, &regions, gpa, len)
        } else {
            Vec::new()
        };
        let mut state = None;
        let mut done = 0;
        let mut failure = None;
        while done < len {
            // A GPA past 2^64 is refused by the page's own wrap check.
            let update = SnpLaunchUpdate {
                gpa: gpa.wrapping_add(done),
                ..first
            };
            let measured = if update.gpa < gpa {
                Err(fail(
                    op,
                    Status::InvalidAddress,
                    "the range wraps the address space",
                ))
            } else {
                guest.measure_page(
                    op,
                    &ctx.id,
                    mem,
                    &regions,
                    &update,
                    update.gpa,
                    &mut page,
                    &mut digest,
                    contents
                        .get((done / unit) as usize)
                        .and_then(Option::as_ref),
                )
            };
            match measured {
                Ok(s) => state = Some(s),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            done += unit;
        }
        if let Some(state) = state {
            guest.commit_pages(op, &state, &first, done, digest)?;
        }
        failure.map_or(Ok(()), Err)
    }

    /// SNP_LAUNCH_FINISH, guest LAUNCH and active → RUNNING: with an ID
    /// block, checks it and its ID authentication structure against the
    /// guest (docs/protocol/snp.md#what-launch_finish-checks: a launch
    /// digest that differs → BAD_MEASUREMENT, a policy that differs →
    /// POLICY_FAILURE, malformed structures → INVALID_PARAM, keys or
    /// signatures that do not verify → BAD_SIGNATURE) and keeps the
    /// identity it gives; stores HOST_DATA and VCEK_DISABLED. Nothing
    /// changes on an error.
    pub fn snp_launch_finish(&self, handle: u32, finish: &SnpLaunchFinish) -> Result<(), FwError> {
        let op = op_of(SnpCommand::LaunchFinish);
        let mut inner = self.lock();
        let ctx = self.snp_guest_ctx(&mut inner, op)?;
        let guest = Self::snp_guest(&mut inner, &ctx.snp.snp, op, handle)?;
        guest.require_state(op, &[SnpGuestState::Launch])?;
        guest.require_active(op)?;
        let identity = match &finish.id {
            None => None,
            Some(id) => {
                let policy = guest.policy.ok_or_else(|| {
                    fail(op, Status::InvalidGuestState, "the guest has no policy")
                })?;
                let expected = id_block::Expected {
                    launch_digest: *guest.digest.bytes(),
                    policy,
                };
                let identity =
                    id_block::verify(&id.id_block, &id.id_auth, finish.auth_key_en, &expected)
                        .map_err(|e| fail(op, e.status(), format!("ID block: {e}")))?;
                Some(identity)
            }
        };
        guest.identity = identity;
        guest.auth_key_en = finish.auth_key_en;
        guest.host_data = finish.host_data;
        guest.vcek_disabled = finish.vcek_disabled;
        guest.state = SnpGuestState::Running;
        log::debug!(
            "SNP_LAUNCH_FINISH: guest {handle} runs ({})",
            if guest.identity.is_some() {
                "ID block verified"
            } else {
                "no ID block"
            }
        );
        Ok(())
    }

    /// What SNP_LAUNCH_FINISH recorded for guest `handle` about its
    /// identity: what a verified ID block gave it, and AUTH_KEY_EN as given
    /// (both go into its attestation reports).
    pub fn snp_launch_identity(&self, handle: u32) -> Result<SnpLaunchIdentity, FwError> {
        let op = op_of(SnpCommand::GuestStatus);
        let mut inner = self.lock();
        let ctx = self.snp_guest_ctx(&mut inner, op)?;
        let guest = Self::snp_guest(&mut inner, &ctx.snp.snp, op, handle)?;
        Ok(SnpLaunchIdentity {
            id_block: guest.identity,
            author_key_en: guest.auth_key_en,
        })
    }

    /// SNP_GUEST_STATUS (any guest state).
    pub fn snp_guest_status(&self, handle: u32) -> Result<SnpGuestStatus, FwError> {
        let op = op_of(SnpCommand::GuestStatus);
        let mut inner = self.lock();
        let ctx = self.snp_guest_ctx(&mut inner, op)?;
        let guest = Self::snp_guest(&mut inner, &ctx.snp.snp, op, handle)?;
        Ok(SnpGuestStatus {
            policy: guest.policy.map_or(0, GuestPolicy::bits),
            asid: guest.asid,
            state: guest.state,
            vcek_disabled: guest.vcek_disabled,
        })
    }

    /// The guest's launch digest so far (what its attestation reports carry
    /// as MEASUREMENT): the emulator's host-side view, for tests and for an
    /// operator checking a launch (docs/protocol/snp.md#launch-digest).
    pub fn snp_launch_digest(&self, handle: u32) -> Result<[u8; SHA384_LEN], FwError> {
        let op = op_of(SnpCommand::GuestStatus);
        let mut inner = self.lock();
        let ctx = self.snp_guest_ctx(&mut inner, op)?;
        let guest = Self::snp_guest(&mut inner, &ctx.snp.snp, op, handle)?;
        Ok(*guest.digest.bytes())
    }

    /// The checks SNP_DBG_DECRYPT and SNP_DBG_ENCRYPT share
    /// (docs/protocol/snp.md#snp-debug-commands), in order: a GPA not 4 KiB
    /// aligned → INVALID_ADDRESS; the platform and guest checks; the guest
    /// not active → INACTIVE; no DEBUG in the policy (or no policy yet) →
    /// POLICY_FAILURE; the page not assigned to the guest →
    /// INVALID_PAGE_STATE. Returns the guest's memory state.
    fn snp_dbg_checks(
        &self,
        op: Op,
        handle: u32,
        mem: &dyn GuestBacking,
        gpa: u64,
    ) -> Result<Arc<MemoryState>, FwError> {
        if !gpa.is_multiple_of(PAGE_LEN as u64) {
            return Err(fail(
                op,
                Status::InvalidAddress,
                format!("GPA {gpa:#x} is not 4 KiB aligned"),
            ));
        }
        let mut inner = self.lock();
        let ctx = self.snp_guest_ctx(&mut inner, op)?;
        let guest = Self::snp_guest(&mut inner, &ctx.snp.snp, op, handle)?;
        guest.require_active(op)?;
        if !guest.policy.is_some_and(|p| p.has(GuestPolicy::DEBUG)) {
            return Err(policy_failure(op, "guest policy does not allow DEBUG"));
        }
        if !guest.assigned.contains(&gpa) {
            return Err(fail(
                op,
                Status::InvalidPageState,
                format!("the page at {gpa:#x} is not assigned to the guest"),
            ));
        }
        guest.memory(op, mem)
    }

    /// SNP_DBG_DECRYPT (any guest state): the plaintext of the guest's 4 KiB
    /// page at `gpa` (a VMSA page as it was measured: the emulator applies
    /// no VMSA register-protection tweak). Errors: see
    /// docs/protocol/snp.md#snp-debug-commands.
    pub fn snp_dbg_decrypt(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        gpa: u64,
        dst: &mut [u8; PAGE_LEN],
    ) -> Result<(), FwError> {
        let op = op_of(SnpCommand::DbgDecrypt);
        let state = self.snp_dbg_checks(op, handle, mem, gpa)?;
        crate::memory::decrypt_from_guest(mem, &state, gpa, &mut dst[..])
            .map_err(|e| fail(op, Status::InvalidAddress, e.to_string()))
    }

    /// SNP_DBG_ENCRYPT (any guest state): writes `src` into the guest's
    /// 4 KiB page at `gpa`, encrypted with its key (the guest reads `src`).
    /// The page must already be assigned to the guest; the launch digest is
    /// unchanged. Errors as for [`Platform::snp_dbg_decrypt`].
    pub fn snp_dbg_encrypt(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        src: &[u8; PAGE_LEN],
        gpa: u64,
    ) -> Result<(), FwError> {
        let op = op_of(SnpCommand::DbgEncrypt);
        let state = self.snp_dbg_checks(op, handle, mem, gpa)?;
        crate::memory::encrypt_for_guest(mem, &state, gpa, &src[..])
            .map_err(|e| fail(op, Status::InvalidAddress, e.to_string()))
    }

    /// The memory-encryption state of SNP guest `handle` over `mem` (created
    /// on first use): the host view of an SNP guest, where writes into
    /// assigned pages fail with an RMP fault
    /// (docs/protocol/snp.md#rmp-model). Keep the `Arc` and call
    /// [`crate::memory::host_read`]/[`crate::memory::host_write`] on hot
    /// paths.
    pub fn snp_memory_state(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
    ) -> Result<Arc<MemoryState>, FwError> {
        let op = Op::HostRead;
        let mut inner = self.lock();
        let ctx = self.snp_guest_ctx(&mut inner, op)?;
        let guest = Self::snp_guest(&mut inner, &ctx.snp.snp, op, handle)?;
        guest.memory(op, mem)
    }

    /// What the hypervisor reads at `gpa` of SNP guest `handle`: shared
    /// pages as they are, assigned (private) pages as ciphertext.
    pub fn snp_host_read(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        gpa: u64,
        buf: &mut [u8],
    ) -> Result<(), FwError> {
        let state = self.snp_memory_state(handle, mem)?;
        crate::memory::host_read(mem, &state, gpa, buf)
            .map_err(|e| fail(Op::HostRead, Status::InvalidAddress, e.to_string()))
    }

    /// A hypervisor write of `data` at `gpa` of SNP guest `handle`: shared
    /// pages store it; a write touching a page assigned to the guest is an
    /// RMP fault (INVALID_PAGE_OWNER with an "RMP fault" detail,
    /// docs/protocol/choices.md#u38) and writes nothing.
    pub fn snp_host_write(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        gpa: u64,
        data: &[u8],
    ) -> Result<(), FwError> {
        let state = self.snp_memory_state(handle, mem).map_err(|mut e| {
            e.op = Op::HostWrite;
            e
        })?;
        crate::memory::host_write(mem, &state, gpa, data).map_err(|e| {
            let status = match e {
                crate::memory::MemoryError::RmpFault { .. } => Status::InvalidPageOwner,
                _ => Status::InvalidAddress,
            };
            fail(Op::HostWrite, status, e.to_string())
        })
    }

    /// A page-state change on behalf of the guest (the GHCB page-state
    /// change request the VMM forwards; docs/protocol/snp.md#page-state-changes):
    /// makes the `pages` 4 KiB pages at `gpa` private (assigned to the guest,
    /// no longer host-writable, not validated until the guest's PVALIDATE)
    /// or shared (no longer validated). The only way, besides LAUNCH_UPDATE,
    /// that pages change state. A 4 KiB change inside a 2 MiB RMP entry
    /// splits the entry first (the hypervisor's PSMASH).
    ///
    /// Errors, in order (nothing changes on error): `gpa` not 4 KiB aligned
    /// or the range outside guest memory → INVALID_ADDRESS; the platform and
    /// guest checks; the guest not RUNNING → INVALID_GUEST_STATE; not active
    /// → INACTIVE; a VMSA page made shared → INVALID_PAGE_STATE.
    pub fn snp_page_state_change(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        gpa: u64,
        pages: u64,
        to: SnpPageState,
    ) -> Result<(), FwError> {
        self.page_state_change(handle, mem, gpa, pages, false, to)
    }

    /// A page-state change of one 2 MiB entry (the GHCB request's page-size
    /// bit) at `gpa`, 2 MiB aligned: as [`Platform::snp_page_state_change`]
    /// of its 512 pages, but made private it becomes one 2 MiB RMP entry,
    /// not validated, which the guest validates with a 2 MiB PVALIDATE
    /// (docs/protocol/choices.md#u51). `gpa` not 2 MiB aligned →
    /// INVALID_ADDRESS.
    pub fn snp_page_state_change_large(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        gpa: u64,
        to: SnpPageState,
    ) -> Result<(), FwError> {
        let units = LARGE_PAGE_LEN / PAGE_LEN as u64;
        self.page_state_change(handle, mem, gpa, units, true, to)
    }

    fn page_state_change(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        gpa: u64,
        pages: u64,
        large: bool,
        to: SnpPageState,
    ) -> Result<(), FwError> {
        let op = Op::PageStateChange;
        let addr = |detail: String| fail(op, Status::InvalidAddress, detail);
        let align = if large {
            LARGE_PAGE_LEN
        } else {
            PAGE_LEN as u64
        };
        if !gpa.is_multiple_of(align) {
            return Err(addr(format!("GPA {gpa:#x} is not aligned to {align:#x}")));
        }
        let len = pages
            .checked_mul(PAGE_LEN as u64)
            .and_then(|l| gpa.checked_add(l).map(|_| l))
            .ok_or_else(|| addr(format!("{pages} pages at {gpa:#x} wrap the address space")))?;
        let mut inner = self.lock();
        let ctx = self.snp_guest_ctx(&mut inner, op)?;
        let guest = Self::snp_guest(&mut inner, &ctx.snp.snp, op, handle)?;
        guest.require_state(op, &[SnpGuestState::Running])?;
        guest.require_active(op)?;
        let end = gpa + len;
        if to == SnpPageState::Shared {
            if let Some(v) = guest.vmsas.range(gpa..end).next() {
                return Err(fail(
                    op,
                    Status::InvalidPageState,
                    format!("the page at {v:#x} is a VMSA"),
                ));
            }
        }
        let state = guest.memory(op, mem)?;
        let private = to == SnpPageState::Private;
        // Already this one 2 MiB private entry: nothing to change.
        let unchanged = large && private && guest.large.contains(&gpa);
        state
            .convert_pages(mem, gpa, len, private)
            .map_err(|e| addr(e.to_string()))?;
        if unchanged {
            return Ok(());
        }
        // Split (PSMASH) the 2 MiB entries the range touches.
        let first_large = gpa - gpa % LARGE_PAGE_LEN;
        let touched: Vec<u64> = guest.large.range(first_large..end).copied().collect();
        for base in touched {
            guest.large.remove(&base);
        }
        for unit in (gpa..end).step_by(PAGE_LEN) {
            if private {
                // A newly assigned page is not validated; one already
                // private keeps its Validated bit (choices.md#u52), except in
                // a new 2 MiB entry.
                if guest.assigned.insert(unit) || large {
                    guest.validated.remove(&unit);
                }
            } else {
                guest.assigned.remove(&unit);
                guest.validated.remove(&unit);
            }
        }
        if large && private {
            guest.large.insert(gpa);
        }
        Ok(())
    }

    /// The guest's PVALIDATE of the 4 KiB page, or with `large` the 2 MiB
    /// page, at `gpa`: sets (`validate`) or clears the Validated bit of its
    /// RMP entry (docs/protocol/snp.md#pvalidate). The guest can use a
    /// private page only once it is validated.
    ///
    /// The instruction's results: `gpa` not aligned to the page size →
    /// FAIL_INPUT; the size not that of the page's RMP entry →
    /// FAIL_SIZEMISMATCH; the bit already as asked → FAIL_NOUPDATE;
    /// nothing changes on any. Errors: the platform and guest checks; the
    /// guest not RUNNING → INVALID_GUEST_STATE; not active → INACTIVE; a
    /// page not assigned to the guest (a nested page fault on hardware) →
    /// INVALID_PAGE_STATE (docs/protocol/choices.md#u53).
    pub fn snp_pvalidate(
        &self,
        handle: u32,
        gpa: u64,
        large: bool,
        validate: bool,
    ) -> Result<Pvalidate, FwError> {
        let op = Op::Pvalidate;
        let mut inner = self.lock();
        let ctx = self.snp_guest_ctx(&mut inner, op)?;
        let guest = Self::snp_guest(&mut inner, &ctx.snp.snp, op, handle)?;
        guest.require_state(op, &[SnpGuestState::Running])?;
        guest.require_active(op)?;
        let len = if large {
            LARGE_PAGE_LEN
        } else {
            PAGE_LEN as u64
        };
        if !gpa.is_multiple_of(len) {
            return Ok(Pvalidate::FailInput);
        }
        let end = gpa.saturating_add(len);
        let units = (gpa..end).step_by(PAGE_LEN);
        if let Some(u) = units.clone().find(|u| !guest.assigned.contains(u)) {
            return Err(fail(
                op,
                Status::InvalidPageState,
                format!("the page at {u:#x} is not assigned to the guest (RMP fault)"),
            ));
        }
        let in_large = guest.large.contains(&(gpa - gpa % LARGE_PAGE_LEN));
        if in_large != large {
            return Ok(Pvalidate::FailSizeMismatch);
        }
        if units
            .clone()
            .all(|u| guest.validated.contains(&u) == validate)
        {
            return Ok(Pvalidate::FailNoUpdate);
        }
        for unit in units {
            if validate {
                guest.validated.insert(unit);
            } else {
                guest.validated.remove(&unit);
            }
        }
        Ok(Pvalidate::Success)
    }

    /// The RMP model's entry of the 4 KiB page at `gpa` of SNP guest
    /// `handle` (any guest state): assigned, validated, in a 2 MiB entry, a
    /// VMSA (docs/protocol/snp.md#rmp-model). What a guest access checks:
    /// private accesses need an assigned, validated page.
    pub fn snp_rmp_entry(&self, handle: u32, gpa: u64) -> Result<SnpRmpEntry, FwError> {
        let op = Op::Pvalidate;
        let mut inner = self.lock();
        let ctx = self.snp_guest_ctx(&mut inner, op)?;
        let guest = Self::snp_guest(&mut inner, &ctx.snp.snp, op, handle)?;
        let unit = gpa - gpa % PAGE_LEN as u64;
        let assigned = guest.assigned.contains(&unit);
        Ok(SnpRmpEntry {
            assigned,
            validated: guest.validated.contains(&unit),
            large: assigned && guest.large.contains(&(unit - unit % LARGE_PAGE_LEN)),
            vmsa: guest.vmsas.contains(&unit),
        })
    }

    /// SNP_DECOMMISSION (any guest state): destroys the context; its ASID
    /// needs SNP_DF_FLUSH before reuse.
    pub fn snp_decommission(&self, handle: u32) -> Result<(), FwError> {
        let op = op_of(SnpCommand::Decommission);
        let mut inner = self.lock();
        let mut ctx = self.snp_guest_ctx(&mut inner, op)?;
        let guest = Self::snp_guest(&mut inner, &ctx.snp.snp, op, handle)?;
        let asid = guest.asid;
        let s = &mut ctx.snp.snp;
        s.guests.remove(&handle);
        if asid != 0 {
            s.needs_flush.insert(asid);
        }
        ctx.snp.save()?;
        ctx.snp.release_guest(handle)?;
        inner.snp_guests.remove(&handle);
        Ok(())
    }
}

/// SNP_LAUNCH_START's policy checks against the platform
/// (docs/protocol/snp.md#launch-start-policy-checks).
fn check_policy(
    op: Op,
    start: &SnpLaunchStart,
    api: sev_proto::abi::ApiVersion,
    id: &SnpIdentity,
    snp: &SnpRuntime,
) -> Result<GuestPolicy, FwError> {
    let policy = GuestPolicy::new(start.policy).map_err(|e| policy_failure(op, e.to_string()))?;
    if policy.abi_minimum() > api {
        return Err(policy_failure(
            op,
            format!(
                "policy needs firmware ABI {}, this firmware is {api}",
                policy.abi_minimum()
            ),
        ));
    }
    if !policy.has(GuestPolicy::SMT) && id.smt {
        return Err(policy_failure(
            op,
            "policy forbids SMT and SMT is enabled on this platform",
        ));
    }
    if start.ma_en && !policy.has(GuestPolicy::MIGRATE_MA) {
        return Err(policy_failure(op, "MA_EN without policy MIGRATE_MA"));
    }
    if policy.has(GuestPolicy::MEM_AES_256_XTS) {
        return Err(policy_failure(
            op,
            "policy requires AES-256-XTS memory encryption, which this platform lacks",
        ));
    }
    if policy.has(GuestPolicy::CIPHERTEXT_HIDING) {
        return Err(policy_failure(
            op,
            "policy requires ciphertext hiding, which this platform lacks",
        ));
    }
    if policy.has(GuestPolicy::RAPL_DIS)
        && snp.init_flags & crate::snp::buffers::init_flags::RAPL_DIS == 0
    {
        return Err(policy_failure(
            op,
            "policy requires RAPL disabled (SNP_INIT_EX RAPL_DIS)",
        ));
    }
    Ok(policy)
}
