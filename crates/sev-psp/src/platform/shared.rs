//! The platform-wide volatile state, shared by every process that opens the
//! platform directory (`docs/architecture-platform-state.md`).
//!
//! A real host has one PSP: its state machine, guest table, handles, ASIDs
//! and memory keys are the same whichever process asks. Here that state
//! lives in the directory's runtime area ([`crate::store::run`]):
//!
//! * the platform record: state, the SEV-ES flag of INIT, the INIT
//!   generation (incremented by SHUTDOWN), the next handle and key group to
//!   hand out and the ASIDs waiting for DF_FLUSH;
//! * one guest record per live guest: handle, policy, state, ASID, key
//!   group, the INIT generation it was created in and its memory key (VEK,
//!   so that a guest of another process can share it: LAUNCH_START or
//!   RECEIVE_START with its handle). Records are sealed like every state
//!   file (0600 in a 0700 directory, as the identity's private keys);
//! * the SHUTDOWN counter `run/epoch`, mapped shared by every process (see
//!   `Inner::guest`): how a guest command knows without a system call that
//!   no SHUTDOWN destroyed its guest.
//!
//! [`Snapshot::load`] takes the directory lock and reads everything, reaping
//! the records of dead guests on the way: a record whose owner no longer
//! holds its lock (the process let the guest go or died, SIGKILL included),
//! or one of an earlier INIT generation. A reaped guest is torn down as KVM
//! tears down a VM: its ASID needs DF_FLUSH before reuse (unless another
//! live guest still holds it), and the last guest gone moves the platform
//! WORKING → INIT.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sev_proto::abi::{GuestState, PlatformState, Policy, Status};
use zeroize::Zeroizing;

use super::{store_err, FwError, Inner, Op};
use crate::memory::{Vek, VEK_LEN};
use crate::store::record::{decode_fixed, RecordReader, RecordWriter};
use crate::store::run::{HeldRecord, Holder, InPlaceRecord, RunDir, SharedCounter};
use crate::store::{StateDir, StateLock, StoreError};

/// The platform record's file name.
const PLATFORM_RECORD: &str = "platform";
/// The guest records' change counter (see [`RunArea`]).
const CHANGES_COUNTER: &str = "records";
/// Guest records are `guest-<handle>` (decimal).
const GUEST_PREFIX: &str = "guest-";
/// A process's spare record (a decommissioned guest's, kept for its next
/// guest) is `spare-<pid>-<n>`.
const SPARE_PREFIX: &str = "spare-";
/// The `<n>` of the next spare record's name in this process.
static NEXT_SPARE: AtomicU64 = AtomicU64::new(0);

mod tag {
    pub const STATE: u16 = 0x0001;
    pub const ES: u16 = 0x0002;
    pub const GENERATION: u16 = 0x0003;
    pub const NEXT_HANDLE: u16 = 0x0004;
    pub const NEXT_KEY_GROUP: u16 = 0x0005;
    pub const FLUSH: u16 = 0x0006;

    pub const HANDLE: u16 = 0x0101;
    pub const POLICY: u16 = 0x0102;
    pub const GUEST_STATE: u16 = 0x0103;
    pub const ASID: u16 = 0x0104;
    pub const KEY_GROUP: u16 = 0x0105;
    pub const VEK: u16 = 0x0106;
}

/// The name of guest `handle`'s record.
pub(crate) fn guest_record_name(handle: u32) -> String {
    format!("{GUEST_PREFIX}{handle}")
}

/// The platform record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlatformRecord {
    pub(crate) state: PlatformState,
    pub(crate) es_enabled: bool,
    /// Incremented by every SHUTDOWN: records of older generations are dead.
    pub(crate) generation: u64,
    pub(crate) next_handle: u32,
    pub(crate) next_key_group: u64,
    /// ASIDs released (by DEACTIVATE or a guest's teardown) since the last
    /// DF_FLUSH.
    pub(crate) needs_flush: BTreeSet<u32>,
}

impl Default for PlatformRecord {
    /// A platform nobody has INITed since the directory was made.
    fn default() -> Self {
        PlatformRecord {
            state: PlatformState::Uninit,
            es_enabled: false,
            generation: 0,
            next_handle: 1,
            next_key_group: 1,
            needs_flush: BTreeSet::new(),
        }
    }
}

fn word<const N: usize>(v: &[u8]) -> Option<[u8; N]> {
    v.try_into().ok()
}

impl PlatformRecord {
    fn encode(&self) -> Result<Zeroizing<Vec<u8>>, String> {
        let mut w = RecordWriter::new();
        let flush: Vec<u8> = self
            .needs_flush
            .iter()
            .flat_map(|a| a.to_le_bytes())
            .collect();
        w.put(tag::STATE, &[self.state.to_u8()])
            .and_then(|()| w.put(tag::ES, &[u8::from(self.es_enabled)]))
            .and_then(|()| w.put(tag::GENERATION, &self.generation.to_le_bytes()))
            .and_then(|()| w.put(tag::NEXT_HANDLE, &self.next_handle.to_le_bytes()))
            .and_then(|()| w.put(tag::NEXT_KEY_GROUP, &self.next_key_group.to_le_bytes()))
            .and_then(|()| w.put(tag::FLUSH, &flush))
            .map_err(|e| e.to_string())?;
        Ok(w.finish())
    }

    fn decode(payload: &[u8]) -> Result<Self, String> {
        let mut r = PlatformRecord::default();
        decode_fixed(payload, 6, |t, v| match (t, v) {
            (tag::STATE, [b]) => PlatformState::from_u8(*b).map(|s| r.state = s).is_some(),
            (tag::ES, [b @ (0 | 1)]) => {
                r.es_enabled = *b == 1;
                true
            }
            (tag::GENERATION, v) => word(v)
                .map(|b| r.generation = u64::from_le_bytes(b))
                .is_some(),
            (tag::NEXT_HANDLE, v) => word(v)
                .map(|b| r.next_handle = u32::from_le_bytes(b))
                .is_some(),
            (tag::NEXT_KEY_GROUP, v) => word(v)
                .map(|b| r.next_key_group = u64::from_le_bytes(b))
                .is_some(),
            (tag::FLUSH, v) if v.len() % 4 == 0 => {
                r.needs_flush = v
                    .chunks_exact(4)
                    .filter_map(|c| word(c).map(u32::from_le_bytes))
                    .collect();
                true
            }
            _ => false,
        })?;
        Ok(r)
    }
}

/// One live guest as every process sees it.
#[derive(Debug, Clone)]
pub(crate) struct GuestRecord {
    pub(crate) handle: u32,
    pub(crate) policy: Policy,
    pub(crate) state: GuestState,
    /// 0 = inactive.
    pub(crate) asid: u32,
    pub(crate) key_group: u64,
    /// The INIT generation the guest was created in.
    pub(crate) generation: u64,
    pub(crate) vek: Vek,
}

impl GuestRecord {
    pub(crate) fn encode(&self) -> Result<Zeroizing<Vec<u8>>, String> {
        let mut w = RecordWriter::new();
        w.put(tag::HANDLE, &self.handle.to_le_bytes())
            .and_then(|()| w.put(tag::POLICY, &self.policy.bits().to_le_bytes()))
            .and_then(|()| w.put(tag::GUEST_STATE, &[self.state.to_u8()]))
            .and_then(|()| w.put(tag::ASID, &self.asid.to_le_bytes()))
            .and_then(|()| w.put(tag::KEY_GROUP, &self.key_group.to_le_bytes()))
            .and_then(|()| w.put(tag::GENERATION, &self.generation.to_le_bytes()))
            .and_then(|()| w.put(tag::VEK, self.vek.as_bytes()))
            .map_err(|e| e.to_string())?;
        Ok(w.finish())
    }

    fn decode(payload: &[u8]) -> Result<Self, String> {
        let (mut handle, mut policy, mut state, mut asid) = (None, None, None, None);
        let (mut key_group, mut generation, mut vek) = (None, None, None);
        for record in RecordReader::new(payload) {
            let (t, v) = record.map_err(|e| e.to_string())?;
            let ok = match t {
                tag::HANDLE if handle.is_none() => {
                    word(v).map(|b| handle = Some(u32::from_le_bytes(b)))
                }
                tag::POLICY if policy.is_none() => {
                    word(v).map(|b| policy = Some(Policy::from_bits(u32::from_le_bytes(b))))
                }
                tag::GUEST_STATE if state.is_none() => v
                    .first()
                    .and_then(|b| GuestState::from_u8(*b))
                    .filter(|_| v.len() == 1)
                    .map(|s| state = Some(s)),
                tag::ASID if asid.is_none() => word(v).map(|b| asid = Some(u32::from_le_bytes(b))),
                tag::KEY_GROUP if key_group.is_none() => {
                    word(v).map(|b| key_group = Some(u64::from_le_bytes(b)))
                }
                tag::GENERATION if generation.is_none() => {
                    word(v).map(|b| generation = Some(u64::from_le_bytes(b)))
                }
                tag::VEK if vek.is_none() => word::<VEK_LEN>(v).map(|mut b| {
                    vek = Some(Vek::from_bytes(b));
                    zeroize::Zeroize::zeroize(&mut b);
                }),
                _ => None,
            };
            if ok.is_none() {
                return Err(format!("unexpected or malformed record {t:#06x}"));
            }
        }
        match (handle, policy, state, asid, key_group, generation, vek) {
            (
                Some(handle),
                Some(policy),
                Some(state),
                Some(asid),
                Some(key_group),
                Some(generation),
                Some(vek),
            ) => Ok(GuestRecord {
                handle,
                policy,
                state,
                asid,
                key_group,
                generation,
                vek,
            }),
            _ => Err("missing record".into()),
        }
    }
}

fn damaged(op: Op, what: &str, detail: impl std::fmt::Display) -> FwError {
    FwError::new(
        op,
        Status::SecureDataInvalid,
        format!("platform runtime state ({what}) is damaged: {detail}"),
    )
}

/// The runtime area as one process keeps it: checked (or made) once, the
/// platform record kept open (opening it for every snapshot cost a path
/// lookup per command; see `docs/architecture-platform-state.md#cost-measured`).
/// `run/` is only removed by hand while no process uses the platform, so
/// the open record stays the one every process uses.
///
/// It also keeps the list of guest records it last read from the directory,
/// with the value then of `run/records`, a counter (mapped shared, as
/// `run/epoch`) that every process increments before it creates or removes
/// a guest record, under the directory lock. While the counter has not
/// moved, the list is still the directory's, and a [`Listing::Cached`]
/// snapshot skips listing the directory again (a directory listing cost
/// about a tenth of a LAUNCH_START).
#[derive(Debug)]
pub(crate) struct RunArea {
    run: RunDir,
    platform: InPlaceRecord,
    changes: SharedCounter,
    /// The guest records' names as last listed, and `changes` then.
    listed: Mutex<Option<(u64, Vec<String>)>>,
}

impl RunArea {
    /// Checks or makes the runtime area and opens the platform record and
    /// the change counter (the caller holds the directory lock).
    pub(crate) fn open(dir: &StateDir) -> Result<RunArea, StoreError> {
        let run = dir.run_dir()?;
        let platform = run.open_in_place(PLATFORM_RECORD)?;
        let changes = run.counter(CHANGES_COUNTER)?;
        Ok(RunArea {
            run,
            platform,
            changes,
            listed: Mutex::new(None),
        })
    }

    fn listed(&self) -> MutexGuard<'_, Option<(u64, Vec<String>)>> {
        // The list is only a cache: a panic while it was held loses nothing.
        self.listed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The names of the guest records (the caller holds the directory lock).
    fn guest_names(&self, listing: Listing) -> Result<Vec<String>, StoreError> {
        let now = self.changes.get();
        if listing == Listing::Cached {
            if let Some((at, names)) = self.listed().as_ref() {
                if *at == now {
                    return Ok(names.clone());
                }
            }
        }
        let names = self.run.names(GUEST_PREFIX)?;
        *self.listed() = Some((now, names.clone()));
        Ok(names)
    }

    /// Counts a change of the guest records about to be made: `update`
    /// applies it to the cached list, which stays current only if it was
    /// current before.
    fn change(&self, update: impl FnOnce(&mut Vec<String>)) {
        let before = self.changes.get();
        let after = self.changes.increment();
        let mut listed = self.listed();
        match listed.as_mut() {
            Some((at, names)) if *at == before => {
                update(names);
                *at = after;
            }
            _ => *listed = None,
        }
    }

    /// Creates and holds guest record `name` (see [`RunDir::create_held`]).
    fn create_held(&self, name: &str, payload: &[u8]) -> Result<Option<HeldRecord>, StoreError> {
        self.change(|names| insert_sorted(names, name));
        // If the file exists already (`Ok(None)`), the cached list is still
        // right: it did not list a file it did not see, and counting the
        // attempt only costs other processes a listing.
        self.run.create_held(name, payload)
    }

    /// Makes `spare` guest record `name` with `payload`: written under the
    /// spare's name, then renamed, so no process reads it half written.
    /// `Ok(Err(spare))` when a file `name` exists.
    fn adopt(
        &self,
        mut spare: HeldRecord,
        name: &str,
        payload: &[u8],
    ) -> Result<Result<HeldRecord, HeldRecord>, StoreError> {
        spare.rewrite(payload)?;
        self.change(|names| insert_sorted(names, name));
        if spare.rename(&self.run, name)? {
            Ok(Ok(spare))
        } else {
            Ok(Err(spare))
        }
    }

    /// Removes guest record `name`; `false` if it did not exist.
    pub(crate) fn remove(&self, name: &str) -> Result<bool, StoreError> {
        self.change(|names| names.retain(|n| n != name));
        self.run.remove(name)
    }
}

fn insert_sorted(names: &mut Vec<String>, name: &str) {
    if let Err(at) = names.binary_search_by(|n| n.as_str().cmp(name)) {
        names.insert(at, name.to_owned());
    }
}

/// Whether a [`Snapshot`] lists the runtime area's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listing {
    /// Always: also finds (and reaps) records no process counted, a
    /// file left by hand or by a process that died between counting and
    /// creating it. The platform and status commands list.
    Full,
    /// Only when a process created or removed a guest record since this
    /// process last listed: the commands on this process's guests.
    Cached,
}

/// The platform-wide state read under the directory lock, which it keeps
/// until dropped: every decision made on it holds until then.
pub(crate) struct Snapshot {
    _lock: StateLock,
    area: Arc<RunArea>,
    pub(crate) platform: PlatformRecord,
    /// Every live guest, this process's included.
    pub(crate) guests: BTreeMap<u32, GuestRecord>,
    op: Op,
}

impl Snapshot {
    /// Takes the directory lock and reads the runtime area (created on
    /// demand), reaping dead guests. Saves the platform record when reaping
    /// changed it. The records of `inner`'s own guests are not read again:
    /// this process holds them and wrote them last. A full snapshot.
    pub(crate) fn load(inner: &Inner, op: Op) -> Result<Snapshot, FwError> {
        Snapshot::load_listing(inner, op, Listing::Full)
    }

    /// [`Snapshot::load`] for a command on this process's guests: lists the
    /// directory only when its guest records changed ([`Listing::Cached`]).
    pub(crate) fn load_cached(inner: &Inner, op: Op) -> Result<Snapshot, FwError> {
        Snapshot::load_listing(inner, op, Listing::Cached)
    }

    fn load_listing(inner: &Inner, op: Op, listing: Listing) -> Result<Snapshot, FwError> {
        let lock = inner.lock_file.lock().map_err(store_err(op))?;
        let area = match inner.run.get() {
            Some(area) => Arc::clone(area),
            None => {
                let area = Arc::new(RunArea::open(&inner.dir).map_err(store_err(op))?);
                Arc::clone(inner.run.get_or_init(|| area))
            }
        };
        let platform = match area.platform.read().map_err(store_err(op))? {
            Some(payload) => {
                PlatformRecord::decode(&payload).map_err(|e| damaged(op, "platform", e))?
            }
            None => PlatformRecord::default(),
        };
        let mut snap = Snapshot {
            _lock: lock,
            area,
            platform,
            guests: BTreeMap::new(),
            op,
        };
        if listing == Listing::Full {
            snap.reap_spares(inner)?;
        }
        let mut released = Vec::new();
        for name in snap.area.guest_names(listing).map_err(store_err(op))? {
            let own = name
                .strip_prefix(GUEST_PREFIX)
                .and_then(|h| h.parse::<u32>().ok())
                .and_then(|h| inner.guests.get(&h))
                .filter(|g| g.generation == snap.platform.generation);
            if let Some(g) = own {
                snap.guests.insert(g.handle, g.to_record());
                continue;
            }
            let holder = snap.area.run.probe(&name).map_err(store_err(op))?;
            if holder == Holder::Missing {
                continue;
            }
            let record = match snap.area.run.read(&name) {
                Ok(Some(payload)) => GuestRecord::decode(&payload).ok(),
                Ok(None) => continue,
                // The owner died while writing it, or it was damaged: a held
                // one is reported, an abandoned one reaped.
                Err(e) if e.is_damaged() && holder == Holder::Abandoned => None,
                Err(e) => return Err(store_err(op)(e)),
            };
            let alive = holder == Holder::Held
                && record.as_ref().is_some_and(|r| {
                    r.generation == snap.platform.generation && name == guest_record_name(r.handle)
                });
            match record {
                Some(r) if alive => {
                    snap.guests.insert(r.handle, r);
                }
                None if holder == Holder::Held => {
                    return Err(damaged(op, &name, "a live guest's record does not decode"));
                }
                r => {
                    // Abandoned, or left from before a SHUTDOWN.
                    snap.area.remove(&name).map_err(store_err(op))?;
                    // SHUTDOWN released the ASIDs of older generations.
                    if let Some(r) = r.filter(|r| r.generation == snap.platform.generation) {
                        log::debug!("reaped guest {} (its process is gone)", r.handle);
                        released.push(r.asid);
                    }
                }
            }
        }
        let mut changed = false;
        for asid in released.into_iter().filter(|a| *a != 0) {
            if !snap.guests.values().any(|g| g.asid == asid) {
                changed |= snap.platform.needs_flush.insert(asid);
            }
        }
        if snap.platform.state == PlatformState::Working && snap.guests.is_empty() {
            snap.platform.state = PlatformState::Init;
            changed = true;
        }
        if changed {
            snap.save()?;
        }
        Ok(snap)
    }

    /// Removes the spare records of processes that are gone (nobody holds
    /// them).
    fn reap_spares(&self, inner: &Inner) -> Result<(), FwError> {
        let run = &self.area.run;
        let own = inner.spare.as_ref().map(HeldRecord::path);
        for name in run.names(SPARE_PREFIX).map_err(store_err(self.op))? {
            if own.is_some_and(|p| p.ends_with(&name)) {
                continue;
            }
            if run.probe(&name).map_err(store_err(self.op))? == Holder::Abandoned {
                run.remove(&name).map_err(store_err(self.op))?;
            }
        }
        Ok(())
    }

    /// Writes the platform record.
    pub(crate) fn save(&self) -> Result<(), FwError> {
        let payload = self
            .platform
            .encode()
            .map_err(|e| FwError::new(self.op, Status::HwErrorPlatform, e))?;
        self.area
            .platform
            .write(&payload)
            .map_err(store_err(self.op))
    }

    /// The runtime area.
    pub(crate) fn run(&self) -> &RunDir {
        &self.area.run
    }

    /// Creates the record of a new guest with the next free handle and
    /// holds it; returns the handle and the record. A `spare` record (a
    /// decommissioned guest's, see [`Snapshot::retire_guest_record`]) is
    /// reused when there is one.
    pub(crate) fn create_guest_record(
        &mut self,
        mut record: GuestRecord,
        spare: &mut Option<HeldRecord>,
    ) -> Result<(u32, HeldRecord), FwError> {
        let op = self.op;
        let mut handle = self.platform.next_handle;
        // Bounded: at most MAX_GUESTS handles are taken, plus stray files.
        for _ in 0..=super::MAX_GUESTS * 2 {
            if handle != 0 && !self.guests.contains_key(&handle) {
                record.handle = handle;
                let payload = record
                    .encode()
                    .map_err(|e| FwError::new(op, Status::HwErrorPlatform, e))?;
                let name = guest_record_name(handle);
                let made = match spare.take() {
                    Some(s) => match self.area.adopt(s, &name, &payload) {
                        Ok(Ok(held)) => Some(held),
                        Ok(Err(s)) => {
                            // The name is taken: keep the spare, next handle.
                            *spare = Some(s);
                            None
                        }
                        // No reuse on this file system: make records anew.
                        Err(_) => self
                            .area
                            .create_held(&name, &payload)
                            .map_err(store_err(op))?,
                    },
                    None => self
                        .area
                        .create_held(&name, &payload)
                        .map_err(store_err(op))?,
                };
                if let Some(held) = made {
                    self.platform.next_handle = handle.wrapping_add(1);
                    self.guests.insert(handle, record);
                    return Ok((handle, held));
                }
            }
            handle = handle.wrapping_add(1);
        }
        Err(FwError::new(
            op,
            Status::ResourceLimit,
            "no free guest handle",
        ))
    }

    /// Ends guest `handle`'s record (DECOMMISSION): kept, wiped and renamed,
    /// as this process's `spare` for its next guest when it has none, else
    /// removed. The lock stays with the spare, so another process sees a
    /// spare nobody holds only after this process is gone, and reaps it.
    pub(crate) fn retire_guest_record(
        &self,
        handle: u32,
        mut record: HeldRecord,
        spare: &mut Option<HeldRecord>,
    ) -> Result<(), FwError> {
        let name = guest_record_name(handle);
        if spare.is_none() {
            let spare_name = format!(
                "{SPARE_PREFIX}{}-{}",
                std::process::id(),
                NEXT_SPARE.fetch_add(1, Ordering::Relaxed)
            );
            self.area.change(|names| names.retain(|n| *n != name));
            let renamed = record
                .wipe()
                .and_then(|()| record.rename(&self.area.run, &spare_name));
            if let Ok(true) = renamed {
                *spare = Some(record);
                return Ok(());
            }
        }
        self.area.remove(&name).map_err(store_err(self.op))?;
        Ok(())
    }

    /// Removes every guest's record (SHUTDOWN).
    pub(crate) fn remove_all_guests(&mut self) -> Result<(), FwError> {
        for handle in std::mem::take(&mut self.guests).into_keys() {
            self.area
                .remove(&guest_record_name(handle))
                .map_err(store_err(self.op))?;
        }
        Ok(())
    }

    /// The live guests other than `except` bound to `asid`.
    pub(crate) fn asid_owners(&self, asid: u32, except: u32) -> impl Iterator<Item = &GuestRecord> {
        self.guests
            .values()
            .filter(move |g| g.asid == asid && g.handle != except)
    }
}

/// Rewrites a held guest record under the directory lock.
pub(crate) fn publish(
    dir: &StateDir,
    op: Op,
    held: &HeldRecord,
    record: &GuestRecord,
) -> Result<(), FwError> {
    let _lock = dir.lock().map_err(store_err(op))?;
    rewrite(op, held, record)
}

/// Rewrites a held guest record (the caller holds the directory lock).
pub(crate) fn rewrite(op: Op, held: &HeldRecord, record: &GuestRecord) -> Result<(), FwError> {
    let payload = record
        .encode()
        .map_err(|e| FwError::new(op, Status::HwErrorPlatform, e))?;
    held.rewrite(&payload).map_err(store_err(op))
}
