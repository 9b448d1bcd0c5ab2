//! Guest contexts and the launch, status, activation and debug commands.

use std::fmt;
use std::sync::Arc;

use sev_proto::abi::{
    CommandId, GuestState, PlatformState, Policy, Status, ATTESTATION_REPORT_LEN, MEASURE_LEN,
    PACKET_HEADER_LEN, SESSION_LEN, SEV_CERT_LEN,
};
use sev_proto::attestation::Report;
use sev_proto::cert::sev::Certificate;
use sev_proto::hash::Sha256;
use sev_proto::measurement::{
    api_has_measurement_context, launch_measurement_for_api, MeasureBlob,
};
use sev_proto::secret::{open_launch_secret, PacketError, PacketHeader, TransportCipher};
use sev_proto::session::{self, SessionBuffer, TransportKeys};
use zeroize::Zeroizing;

use super::shared::{self, GuestRecord, Snapshot};
use super::{cmd, guest_command_allowed, store_err, FwError, Inner, Op, Platform};
use super::{INIT_OR_WORKING, MAX_GUESTS};
use crate::memory::{self, GuestBacking, MemoryState, Region, Vek, PAGE_SIZE};
use crate::snp::state::SnpShared;
use crate::store::run::HeldRecord;
use crate::store::StateDir;

/// What GUEST_STATUS reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestStatusInfo {
    /// The guest's handle.
    pub handle: u32,
    /// Its policy.
    pub policy: Policy,
    /// Its ASID, 0 when inactive.
    pub asid: u32,
    /// Its state.
    pub state: GuestState,
}

/// Whose certificate a session is agreed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// The guest owner's GODH (LAUNCH_START).
    Godh,
    /// The source platform's PDH (RECEIVE_START).
    SourcePdh,
}

/// A migration session's keys and packet counter.
pub(crate) struct Transport {
    pub(crate) cipher: TransportCipher,
    /// Sequence number of the next packet (bound into its MAC).
    pub(crate) seq: u64,
    /// RECEIVE_UPDATE_*'s plaintext buffer, reused for every packet of the
    /// session (one page of capacity, reserved up front so it never moves)
    /// and wiped, whole capacity, when the session ends.
    pub(crate) scratch: Zeroizing<Vec<u8>>,
    /// SEND_UPDATE_*'s IVs drawn ahead from the firmware's generator
    /// ([`IV_BATCH`] per draw: one `getrandom` per batch instead of per
    /// packet), in reverse order so `pop` yields them in generator order.
    /// IVs are public (they travel in the packet header).
    pub(crate) ivs: Vec<[u8; 16]>,
}

/// IVs drawn at once for SEND_UPDATE_*.
pub(crate) const IV_BATCH: usize = 64;

impl Transport {
    pub(crate) fn new(cipher: TransportCipher) -> Self {
        Transport {
            cipher,
            seq: 0,
            scratch: Zeroizing::new(Vec::with_capacity(crate::memory::PAGE_SIZE as usize)),
            ivs: Vec::new(),
        }
    }
}

/// One guest context (docs/protocol/emulator.md#guest-context).
pub(crate) struct Guest {
    pub(crate) handle: u32,
    pub(crate) policy: Policy,
    pub(crate) state: GuestState,
    /// 0 = inactive.
    pub(crate) asid: u32,
    pub(crate) vek: Vek,
    /// Guests launched sharing a key have the same group.
    pub(crate) key_group: u64,
    /// TEK/TIK of the launch (owner's or firmware-chosen).
    pub(crate) keys: TransportKeys,
    /// The running launch digest (until LAUNCH_MEASURE), with the fastest
    /// SHA-256 for this CPU.
    pub(crate) digest: Option<Sha256>,
    /// The final launch digest (LAUNCH_MEASURE on).
    pub(crate) ld: Option<[u8; 32]>,
    /// The launch measurement (needed to check LAUNCH_SECRET MACs).
    pub(crate) measurement: Option<[u8; 32]>,
    /// Created on first access to guest memory.
    pub(crate) memory: Option<Arc<MemoryState>>,
    /// All memory is private (the guest runs): applied to `memory` when it is
    /// created later.
    pub(crate) all_private: bool,
    pub(crate) send: Option<Transport>,
    pub(crate) recv: Option<Transport>,
    /// The INIT generation the guest was created in.
    pub(crate) generation: u64,
    /// The guest's platform-wide record, locked while the guest lives.
    pub(crate) record: HeldRecord,
    /// The platform's SHUTDOWN counter when the guest was created: while it
    /// is unchanged, the guest exists.
    pub(crate) epoch: u64,
}

impl fmt::Debug for Guest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guest")
            .field("handle", &self.handle)
            .field("policy", &self.policy)
            .field("state", &self.state)
            .field("asid", &self.asid)
            .field("keys", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Guest {
    fn new(record: GuestRecord, keys: TransportKeys, held: HeldRecord, epoch: u64) -> Self {
        let GuestRecord {
            handle,
            policy,
            state,
            key_group,
            generation,
            vek,
            ..
        } = record;
        Guest {
            handle,
            policy,
            state,
            asid: 0,
            vek,
            key_group,
            keys,
            digest: Some(Sha256::new()),
            ld: None,
            measurement: None,
            memory: None,
            all_private: false,
            send: None,
            recv: None,
            generation,
            record: held,
            epoch,
        }
    }

    /// What other processes see of this guest.
    pub(crate) fn to_record(&self) -> GuestRecord {
        GuestRecord {
            handle: self.handle,
            policy: self.policy,
            state: self.state,
            asid: self.asid,
            key_group: self.key_group,
            generation: self.generation,
            vek: self.vek.clone(),
        }
    }

    /// Publishes the guest as it will be in `state` (before the caller
    /// changes it, so a failure leaves both sides unchanged).
    pub(crate) fn publish_state(
        &self,
        dir: &StateDir,
        op: Op,
        state: GuestState,
    ) -> Result<(), FwError> {
        let mut record = self.to_record();
        record.state = state;
        shared::publish(dir, op, &self.record, &record)
    }

    /// The memory-encryption state over `mem`, created on first use. A
    /// different memory layout than the first one → INVALID_ADDRESS.
    pub(crate) fn memory(
        &mut self,
        op: Op,
        mem: &dyn GuestBacking,
    ) -> Result<Arc<MemoryState>, FwError> {
        let regions = mem.regions();
        if let Some(state) = &self.memory {
            if state.regions() != regions.as_slice() {
                return Err(FwError::new(
                    op,
                    Status::InvalidAddress,
                    format!(
                        "guest {} was first used with another guest-memory layout",
                        self.handle
                    ),
                ));
            }
            return Ok(Arc::clone(state));
        }
        let state = MemoryState::new(&self.vek, &regions)
            .map_err(|e| FwError::new(op, Status::InvalidAddress, e.to_string()))?;
        if self.all_private {
            state.mark_all_private();
        }
        let state = Arc::new(state);
        self.memory = Some(Arc::clone(&state));
        Ok(state)
    }

    /// Marks all guest memory private (LAUNCH_FINISH, RECEIVE_FINISH).
    pub(crate) fn mark_all_private(&mut self) {
        self.all_private = true;
        if let Some(state) = &self.memory {
            state.mark_all_private();
        }
    }
}

/// Step 2: `[gpa, gpa + len)` lies in guest memory → else INVALID_ADDRESS.
pub(crate) fn check_range(
    op: Op,
    mem: &dyn GuestBacking,
    gpa: u64,
    len: u64,
) -> Result<(), FwError> {
    let regions: Vec<Region> = mem.regions();
    memory::pieces(&regions, gpa, len)
        .map(|_| ())
        .map_err(|e| FwError::new(op, Status::InvalidAddress, e.to_string()))
}

/// Step 2: 16-byte alignment of an address → else INVALID_ADDRESS.
pub(crate) fn check_aligned16(op: Op, what: &str, gpa: u64) -> Result<(), FwError> {
    if gpa.is_multiple_of(16) {
        Ok(())
    } else {
        Err(FwError::new(
            op,
            Status::InvalidAddress,
            format!("{what} {gpa:#x} is not 16-byte aligned"),
        ))
    }
}

/// Step 2: a non-zero multiple of 16 → else INVALID_LEN.
pub(crate) fn check_len16(op: Op, what: &str, len: u64) -> Result<(), FwError> {
    if len != 0 && len.is_multiple_of(16) {
        Ok(())
    } else {
        Err(FwError::new(
            op,
            Status::InvalidLen,
            format!("{what} {len:#x} is not a non-zero multiple of 16"),
        ))
    }
}

fn policy_failure(op: Op, detail: impl Into<String>) -> FwError {
    FwError::new(op, Status::PolicyFailure, detail)
}

impl Inner {
    /// Steps 3–6 of the check order: platform state, handle, guest state,
    /// activation.
    pub(crate) fn guest(
        &mut self,
        op: Op,
        command: CommandId,
        handle: u32,
        needs_active: bool,
    ) -> Result<&mut Guest, FwError> {
        // A guest of this process exists, so the platform is WORKING: no
        // need to read the platform's state. Only a SHUTDOWN (of any
        // process) destroys it; while the shared SHUTDOWN counter is
        // unchanged that costs no system call, else its record tells.
        let live = match self.guests.get(&handle) {
            Some(g) => match &self.epoch {
                Some(counter) if counter.get() == g.epoch => true,
                _ => g.record.is_linked().map_err(store_err(op))?,
            },
            None => false,
        };
        if !live {
            if self.guests.remove(&handle).is_some() {
                log::info!("guest {handle} was destroyed by another process's SHUTDOWN");
            }
            return Err(self.absent_guest(op, handle));
        }
        let guest = self.guests.get_mut(&handle).ok_or_else(|| {
            FwError::new(
                op,
                Status::InvalidGuest,
                format!("no guest with handle {handle}"),
            )
        })?;
        if !guest_command_allowed(command, guest.state) {
            return Err(FwError::new(
                op,
                Status::InvalidGuestState,
                format!("guest {handle} is in state {}", guest.state.fw_name()),
            ));
        }
        if needs_active && guest.asid == 0 {
            return Err(FwError::new(
                op,
                Status::Inactive,
                format!("guest {handle} is not activated (no ASID)"),
            ));
        }
        Ok(guest)
    }

    /// The error for a command on `handle`, not a guest of this process:
    /// INVALID_PLATFORM_STATE unless the platform is INIT or WORKING, else
    /// INVALID_GUEST (naming another process's guest as such).
    fn absent_guest(&self, op: Op, handle: u32) -> FwError {
        let shared = match Platform::snapshot_in(self, op, INIT_OR_WORKING) {
            Ok(s) => s,
            Err(e) => return e,
        };
        let detail = if shared.guests.contains_key(&handle) {
            format!(
                "guest {handle} belongs to another process (only GUEST_STATUS and key sharing \
                 reach another process's guest)"
            )
        } else {
            format!("no guest with handle {handle}")
        };
        FwError::new(op, Status::InvalidGuest, detail)
    }

    /// Policy checks shared by LAUNCH_START and RECEIVE_START (step 7),
    /// against the platform-wide state `shared`.
    pub(crate) fn check_new_guest_policy(
        &self,
        shared: &Snapshot,
        op: Op,
        policy: Policy,
        share_handle: u32,
    ) -> Result<(), FwError> {
        // UNCERTAIN (docs/protocol/abi.md#policy, no code given): chose POLICY_FAILURE
        // for reserved policy bits 15:6 because the refusal is about the
        // policy, and a policy this firmware cannot interpret cannot be
        // honoured.
        if policy.reserved_bits() != 0 {
            return Err(policy_failure(
                op,
                format!(
                    "policy {policy} sets reserved bits {:#x}",
                    policy.reserved_bits()
                ),
            ));
        }
        if policy.es() && !shared.platform.es_enabled {
            return Err(policy_failure(
                op,
                "policy requires SEV-ES but the platform was INIT without SEV-ES",
            ));
        }
        // UNCERTAIN (docs/protocol/abi.md#policy, docs/protocol/choices.md#u10): chose to enforce
        // the policy's API minimum at LAUNCH_START and RECEIVE_START too, because
        // the reference recommends it and a guest must never run on firmware
        // older than its owner allowed.
        if policy.min_api() > self.identity.api {
            return Err(policy_failure(
                op,
                format!(
                    "policy requires firmware API {} but this platform runs {}",
                    policy.min_api(),
                    self.identity.api
                ),
            ));
        }
        if share_handle != 0 {
            // UNCERTAIN (docs/protocol/choices.md#u11): chose to refuse key sharing
            // when either guest's policy has NOKS, because either owner's
            // NOKS forbids its key to be shared, whichever side asks.
            let other = shared.guests.get(&share_handle).map(|g| g.policy);
            if policy.noks() || other.is_some_and(|p| p.noks()) {
                return Err(policy_failure(
                    op,
                    format!("key sharing with guest {share_handle} refused: NOKS"),
                ));
            }
        }
        Ok(())
    }

    /// Creates a guest after every check passed (step 9): a handle unique
    /// on the platform, a new VEK or the shared guest's (of any process),
    /// platform INIT → WORKING.
    pub(crate) fn create_guest(
        &mut self,
        shared: &mut Snapshot,
        op: Op,
        share_handle: u32,
        policy: Policy,
        state: GuestState,
        keys: TransportKeys,
    ) -> Result<u32, FwError> {
        if shared.guests.len() >= MAX_GUESTS {
            return Err(FwError::new(
                op,
                Status::ResourceLimit,
                format!("{MAX_GUESTS} guests exist already"),
            ));
        }
        let (vek, key_group) = match shared.guests.get(&share_handle) {
            Some(g) if share_handle != 0 => (g.vek.clone(), g.key_group),
            _ => {
                let group = shared.platform.next_key_group;
                shared.platform.next_key_group = group.wrapping_add(1);
                (Vek::generate(&mut self.rng), group)
            }
        };
        let record = GuestRecord {
            handle: 0,
            policy,
            state,
            asid: 0,
            key_group,
            generation: shared.platform.generation,
            vek,
        };
        let epoch = self.epoch(shared, op)?.get();
        let (handle, held) = shared.create_guest_record(record.clone(), &mut self.spare)?;
        shared.platform.state = PlatformState::Working;
        shared.save()?;
        let record = GuestRecord { handle, ..record };
        self.guests
            .insert(handle, Guest::new(record, keys, held, epoch));
        Ok(handle)
    }

    /// Binds guest `handle` (of this process, inactive, key group `group`)
    /// to `asid` after ACTIVATE's ASID checks against every live guest.
    fn bind_asid(
        &mut self,
        shared: &mut Snapshot,
        op: Op,
        handle: u32,
        asid: u32,
        group: u64,
    ) -> Result<(), FwError> {
        let owners: Vec<u64> = shared
            .asid_owners(asid, handle)
            .map(|g| g.key_group)
            .collect();
        // One ASID table for SEV and SNP guests
        // (docs/protocol/choices.md#u50): an SNP context's ASID is owned, a
        // decommissioned one's needs a flush.
        let snp = super::snp::load_snp_shared(self, shared, op)?.snp;
        if snp.guests.values().any(|a| *a == asid) {
            return Err(FwError::new(
                op,
                Status::AsidOwned,
                format!("ASID {asid} is bound to an SNP guest context"),
            ));
        }
        let released =
            shared.platform.needs_flush.contains(&asid) || snp.needs_flush.contains(&asid);
        if owners.is_empty() && released {
            return Err(FwError::new(
                op,
                Status::DfFlushRequired,
                format!("ASID {asid} was released; DF_FLUSH first"),
            ));
        }
        if owners.iter().any(|g| *g != group) {
            return Err(FwError::new(
                op,
                Status::AsidOwned,
                format!("ASID {asid} is bound to another guest"),
            ));
        }
        let guest = self.guests.get_mut(&handle).ok_or_else(|| {
            FwError::new(
                op,
                Status::InvalidGuest,
                format!("no guest with handle {handle}"),
            )
        })?;
        let mut record = guest.to_record();
        record.asid = asid;
        shared::rewrite(op, &guest.record, &record)?;
        guest.asid = asid;
        shared.guests.insert(handle, record);
        Ok(())
    }

    /// ECDH with this platform's PDH and the unwrap of a session buffer
    /// (LAUNCH_START with a session, RECEIVE_START): step 8.
    ///
    /// The peer's certificate (the owner's GODH, or the source platform's
    /// PDH) must decode strictly — VERSION 1, known codes, reserved bytes and
    /// key padding zero, well-formed signature slots — and hold a P-384 ECDH
    /// key with usage PDH; a GODH must also carry API version 0.0.
    // UNCERTAIN (docs/protocol/certificates.md#usage-and-algorithms): real firmware is only known
    // to check version, usage, algorithm, curve and the point. The emulator is
    // stricter so that no byte of the GODH can be changed unnoticed (the
    // session MACs cover only the key): a well-formed encoding and API 0.0,
    // the version of user-made certificates (docs/protocol/certificates.md#sev-certificate).
    // Signatures in the slots are still not verified (sev-tool self-signs its GODH).
    pub(crate) fn unwrap_session(
        &self,
        op: Op,
        peer_cert: &[u8],
        session_bytes: &[u8],
        policy: Policy,
        peer: Peer,
    ) -> Result<TransportKeys, FwError> {
        let what = match peer {
            Peer::Godh => "GODH",
            Peer::SourcePdh => "source PDH",
        };
        let bad = |d: String| {
            FwError::new(
                op,
                Status::InvalidCertificate,
                format!("{what} certificate: {d}"),
            )
        };
        let cert = Certificate::decode(peer_cert).map_err(|e| bad(e.to_string()))?;
        // Decoding keeps non-zero reserved bytes (an owner's OCA may have
        // them, and PEK_CERT_IMPORT accepts it). A GODH or a peer's PDH with
        // them is still refused here, as the emulator always did: no owner
        // tool or firmware makes one, and these certificates carry no
        // signature that would cover them.
        if cert.reserved_nonzero() != 0 {
            return Err(bad(format!(
                "{} reserved byte(s) are non-zero",
                cert.reserved_nonzero()
            )));
        }
        let peer_key = cert.validate_godh().map_err(|e| bad(e.to_string()))?;
        if peer == Peer::Godh && cert.api_version() != (0, 0) {
            let (major, minor) = cert.api_version();
            return Err(bad(format!("API version {major}.{minor}, must be 0.0")));
        }
        let session = SessionBuffer::decode(session_bytes)
            .map_err(|e| FwError::invalid_len(op, SESSION_LEN, e.to_string()))?;
        let z = session::shared_secret(&self.identity.pdh, &peer_key);
        // UNCERTAIN (docs/protocol/session.md#firmware-checks, docs/protocol/choices.md#u2): chose
        // BAD_MEASUREMENT for both WRAP_MAC and POLICY_MAC failures because the reference
        // recommends it ("measurement or MAC check failed").
        session::unwrap(z.as_slice(), &session, policy.bits())
            .map_err(|e| FwError::new(op, Status::BadMeasurement, e.to_string()))
    }
}

impl Platform {
    /// LAUNCH_START: creates a guest in LUPDATE and returns its handle.
    ///
    /// * `share_handle` 0: a fresh VEK; otherwise the VEK of that guest is
    ///   shared (POLICY_FAILURE if either policy has NOKS).
    /// * `godh` and `session` both given (0x824 and 0x80 bytes): the owner's
    ///   session is unwrapped (GODH → INVALID_CERTIFICATE, WRAP_MAC and
    ///   POLICY_MAC → BAD_MEASUREMENT). Both absent: the firmware chooses
    ///   TEK/TIK itself (an unattestable launch, QEMU's default). One without
    ///   the other → INVALID_PARAM.
    /// * Policy: reserved bits, ES without SEV-ES INIT, an API minimum above
    ///   this firmware → POLICY_FAILURE.
    pub fn launch_start(
        &self,
        share_handle: u32,
        policy: Policy,
        godh: Option<&[u8]>,
        session: Option<&[u8]>,
    ) -> Result<u32, FwError> {
        let op = cmd(CommandId::LaunchStart);
        if let Some(g) = godh {
            if g.len() != SEV_CERT_LEN {
                return Err(FwError::invalid_len(
                    op,
                    SEV_CERT_LEN,
                    format!("GODH certificate is {} bytes", g.len()),
                ));
            }
        }
        if let Some(s) = session {
            if s.len() != SESSION_LEN {
                return Err(FwError::invalid_len(
                    op,
                    SESSION_LEN,
                    format!("session buffer is {} bytes", s.len()),
                ));
            }
        }
        if godh.is_some() != session.is_some() {
            return Err(FwError::new(
                op,
                Status::InvalidParam,
                "GODH certificate and session must be given together",
            ));
        }
        let mut inner = self.lock();
        let mut shared = Self::snapshot_for_new_guest(&inner, op, share_handle)?;
        self.refresh(&mut inner, op)?;
        inner.check_new_guest_policy(&shared, op, policy, share_handle)?;
        let keys = match (godh, session) {
            (Some(g), Some(s)) => inner.unwrap_session(op, g, s, policy, Peer::Godh)?,
            _ => TransportKeys::random(&mut inner.rng),
        };
        let handle = inner.create_guest(
            &mut shared,
            op,
            share_handle,
            policy,
            GuestState::LaunchUpdate,
            keys,
        )?;
        log::debug!("LAUNCH_START: guest {handle}, policy {policy}");
        Ok(handle)
    }

    /// The preamble of LAUNCH_START and RECEIVE_START: the platform-wide
    /// state ([`Snapshot::load_cached`]), INIT or WORKING, with
    /// `share_handle` (unless 0) a live guest of any process (else
    /// INVALID_GUEST).
    pub(super) fn snapshot_for_new_guest(
        inner: &Inner,
        op: Op,
        share_handle: u32,
    ) -> Result<Snapshot, FwError> {
        let shared = Snapshot::load_cached(inner, op)?;
        Self::require_state(shared.platform.state, op, INIT_OR_WORKING)?;
        if share_handle != 0 && !shared.guests.contains_key(&share_handle) {
            return Err(FwError::new(
                op,
                Status::InvalidGuest,
                format!("no guest with handle {share_handle} to share a key with"),
            ));
        }
        Ok(shared)
    }

    /// ACTIVATE: binds the guest's key to `asid`. SEV-ES guests need an
    /// ASID in `1..min_sev_asid`, others `min_sev_asid..=max_asid`
    /// (INVALID_ASID); an ASID bound to a guest with another key →
    /// ASID_OWNED; an ASID released without DF_FLUSH since →
    /// DFFLUSH_REQUIRED. Re-activating on the same ASID is a no-op.
    // UNCERTAIN (docs/protocol/commands.md#buffers ACTIVATE): chose to refuse ES guests on
    // non-ES ASIDs (and the reverse) with INVALID_ASID because the ASID
    // ranges exist to separate them (KVM never mixes them); and to refuse
    // activating an active guest on a different ASID with ACTIVE because its
    // key is already loaded elsewhere.
    pub fn activate(&self, handle: u32, asid: u32) -> Result<(), FwError> {
        let op = cmd(CommandId::Activate);
        let mut inner = self.lock();
        let (max, min_sev) = (inner.conf.max_asid, inner.conf.min_sev_asid);
        let guest = inner.guest(op, CommandId::Activate, handle, false)?;
        let (es, current, group) = (guest.policy.es(), guest.asid, guest.key_group);
        let range_ok = if es {
            asid >= 1 && asid < min_sev
        } else {
            asid >= min_sev && asid <= max
        };
        if !range_ok {
            return Err(FwError::new(
                op,
                Status::InvalidAsid,
                format!(
                    "ASID {asid} is outside the {} range {}",
                    if es { "SEV-ES" } else { "SEV" },
                    if es {
                        format!("1..={}", min_sev.saturating_sub(1))
                    } else {
                        format!("{min_sev}..={max}")
                    }
                ),
            ));
        }
        if current == asid {
            return Ok(());
        }
        if current != 0 {
            return Err(FwError::new(
                op,
                Status::Active,
                format!("guest {handle} is already active on ASID {current}"),
            ));
        }
        // The ASID table is platform-wide: checked against every process's
        // guests.
        let mut shared = Snapshot::load_cached(&inner, op)?;
        inner.bind_asid(&mut shared, op, handle, asid, group)
    }

    /// ACTIVATE on a free ASID: what KVM does when a VM starts, not a
    /// firmware command. Binds guest `handle` to the lowest ASID of its
    /// range (SEV-ES or SEV, as [`Platform::activate`]) that no guest on the
    /// platform holds, issuing DF_FLUSH first when only ASIDs released
    /// since the last DF_FLUSH are left (as KVM does when its ASIDs run
    /// out); none left → RESOURCE_LIMIT. Returns the ASID; an active guest
    /// keeps the one it has.
    pub fn activate_free_asid(&self, handle: u32) -> Result<u32, FwError> {
        let op = cmd(CommandId::Activate);
        let mut inner = self.lock();
        let (max, min_sev) = (inner.conf.max_asid, inner.conf.min_sev_asid);
        let guest = inner.guest(op, CommandId::Activate, handle, false)?;
        let (es, current, group) = (guest.policy.es(), guest.asid, guest.key_group);
        if current != 0 {
            return Ok(current);
        }
        let range = if es {
            1..min_sev
        } else {
            min_sev..max.saturating_add(1)
        };
        let mut shared = Snapshot::load_cached(&inner, op)?;
        // SNP guest contexts hold ASIDs of the SEV-ES range too.
        let mut snp = super::snp::load_snp_shared(&inner, &shared, op)?;
        let held: std::collections::BTreeSet<u32> = shared
            .guests
            .values()
            .map(|g| g.asid)
            .chain(snp.snp.guests.values().copied())
            .collect();
        let free = |shared: &Snapshot, snp: &SnpShared| {
            range.clone().find(|a| {
                !held.contains(a)
                    && !shared.platform.needs_flush.contains(a)
                    && !snp.snp.needs_flush.contains(a)
            })
        };
        let asid = match free(&shared, &snp) {
            Some(asid) => asid,
            None => {
                if !range.clone().any(|a| !held.contains(&a)) {
                    return Err(FwError::new(
                        op,
                        Status::ResourceLimit,
                        format!("every {} ASID is in use", if es { "SEV-ES" } else { "SEV" }),
                    ));
                }
                shared.platform.needs_flush.clear();
                shared.save()?;
                if !snp.snp.needs_flush.is_empty() {
                    snp.snp.needs_flush.clear();
                    snp.save()?;
                }
                log::debug!("DF_FLUSH: released ASIDs made reusable");
                free(&shared, &snp).ok_or_else(|| {
                    FwError::new(op, Status::ResourceLimit, "no ASID free after DF_FLUSH")
                })?
            }
        };
        inner.bind_asid(&mut shared, op, handle, asid, group)?;
        Ok(asid)
    }

    /// DEACTIVATE: unbinds the guest from its ASID (a no-op when inactive);
    /// the ASID needs DF_FLUSH before reuse once no guest holds it.
    pub fn deactivate(&self, handle: u32) -> Result<(), FwError> {
        let op = cmd(CommandId::Deactivate);
        let mut inner = self.lock();
        let asid = inner.guest(op, CommandId::Deactivate, handle, false)?.asid;
        if asid == 0 {
            return Ok(());
        }
        let mut shared = Snapshot::load_cached(&inner, op)?;
        // Not `inner.guest` again: it may take the directory lock `shared`
        // holds.
        let guest = inner.guests.get_mut(&handle).ok_or_else(|| {
            FwError::new(
                op,
                Status::InvalidGuest,
                format!("no guest with handle {handle}"),
            )
        })?;
        let mut record = guest.to_record();
        record.asid = 0;
        shared::rewrite(op, &guest.record, &record)?;
        guest.asid = 0;
        shared.guests.insert(handle, record);
        if shared.asid_owners(asid, handle).next().is_none()
            && shared.platform.needs_flush.insert(asid)
        {
            shared.save()?;
        }
        Ok(())
    }

    /// DECOMMISSION: deletes the guest context (ACTIVE if still active);
    /// the last guest gone moves the platform WORKING → INIT.
    pub fn decommission(&self, handle: u32) -> Result<(), FwError> {
        let op = cmd(CommandId::Decommission);
        let mut inner = self.lock();
        let guest = inner.guest(op, CommandId::Decommission, handle, false)?;
        if guest.asid != 0 {
            return Err(FwError::new(
                op,
                Status::Active,
                format!(
                    "guest {handle} is active on ASID {}; DEACTIVATE first",
                    guest.asid
                ),
            ));
        }
        let mut shared = Snapshot::load_cached(&inner, op)?;
        if let Some(guest) = inner.guests.remove(&handle) {
            // Kept as this process's spare record, or removed (and its lock
            // released).
            let inner = &mut *inner;
            shared.retire_guest_record(handle, guest.record, &mut inner.spare)?;
        }
        shared.guests.remove(&handle);
        if shared.guests.is_empty() {
            shared.platform.state = PlatformState::Init;
            shared.save()?;
        }
        log::debug!("DECOMMISSION: guest {handle}");
        Ok(())
    }

    /// GUEST_STATUS: policy, ASID and state of the guest, of this process
    /// or of another one using the platform.
    pub fn guest_status(&self, handle: u32) -> Result<GuestStatusInfo, FwError> {
        let op = cmd(CommandId::GuestStatus);
        let mut inner = self.lock();
        if !inner.guests.contains_key(&handle) {
            let shared = Self::snapshot_in(&inner, op, INIT_OR_WORKING)?;
            if let Some(g) = shared.guests.get(&handle) {
                return Ok(GuestStatusInfo {
                    handle,
                    policy: g.policy,
                    asid: g.asid,
                    state: g.state,
                });
            }
        }
        let g = inner.guest(op, CommandId::GuestStatus, handle, false)?;
        Ok(GuestStatusInfo {
            handle,
            policy: g.policy,
            asid: g.asid,
            state: g.state,
        })
    }

    /// LAUNCH_UPDATE_DATA: measures `len` plaintext bytes at `gpa` (appends
    /// them to the launch digest) and encrypts them in place (the pages turn
    /// private). `gpa` 16-byte aligned (INVALID_ADDRESS), `len` a non-zero
    /// multiple of 16 (INVALID_LEN), inside guest memory (INVALID_ADDRESS);
    /// LUPDATE; active.
    ///
    /// Like every command it holds the platform's lock while it runs (the PSP
    /// executes one command at a time), here while hashing the region; a VMM
    /// that reads the host view from other threads meanwhile should keep the
    /// guest's [`Platform::memory_state`] and call [`memory::host_read`].
    pub fn launch_update_data(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        gpa: u64,
        len: u32,
    ) -> Result<(), FwError> {
        let op = cmd(CommandId::LaunchUpdateData);
        check_aligned16(op, "PADDR", gpa)?;
        check_len16(op, "LEN", u64::from(len))?;
        check_range(op, mem, gpa, u64::from(len))?;
        let mut inner = self.lock();
        let guest = inner.guest(op, CommandId::LaunchUpdateData, handle, true)?;
        let state = guest.memory(op, mem)?;
        let digest = guest.digest.as_mut().ok_or_else(|| {
            FwError::new(op, Status::InvalidGuestState, "launch digest already final")
        })?;
        measure_region(op, mem, digest, gpa, u64::from(len))?;
        state
            .mark_private(gpa, u64::from(len))
            .map_err(|e| FwError::new(op, Status::InvalidAddress, e.to_string()))
    }

    /// LAUNCH_UPDATE_VMSA: measures and encrypts one 4 KiB VMSA page at `gpa`
    /// (page aligned → else INVALID_ADDRESS; `len` 4096 → else INVALID_LEN).
    /// The guest's policy must have ES.
    // UNCERTAIN (docs/protocol/commands.md#buffers, "SEV-ES only"): chose POLICY_FAILURE for
    // LAUNCH_UPDATE_VMSA on a guest whose policy lacks ES, because it is the
    // policy that makes the guest an SEV-ES guest.
    pub fn launch_update_vmsa(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        gpa: u64,
        len: u32,
    ) -> Result<(), FwError> {
        let op = cmd(CommandId::LaunchUpdateVmsa);
        check_vmsa_args(op, mem, gpa, len)?;
        let mut inner = self.lock();
        let guest = inner.guest(op, CommandId::LaunchUpdateVmsa, handle, true)?;
        if !guest.policy.es() {
            return Err(policy_failure(op, "LAUNCH_UPDATE_VMSA needs policy ES"));
        }
        let state = guest.memory(op, mem)?;
        let digest = guest.digest.as_mut().ok_or_else(|| {
            FwError::new(op, Status::InvalidGuestState, "launch digest already final")
        })?;
        measure_region(op, mem, digest, gpa, PAGE_SIZE)?;
        state
            .mark_private(gpa, PAGE_SIZE)
            .map_err(|e| FwError::new(op, Status::InvalidAddress, e.to_string()))
    }

    /// LAUNCH_MEASURE: finalises the launch digest, draws a fresh MNONCE and
    /// writes MEASUREMENT ‖ MNONCE (48 bytes) into `out`; LUPDATE → LSECRET.
    /// `out` shorter than 48 → INVALID_LEN with 48.
    pub fn launch_measure(&self, handle: u32, out: &mut [u8]) -> Result<usize, FwError> {
        let op = cmd(CommandId::LaunchMeasure);
        let out_len = out.len();
        let dst = out.get_mut(..MEASURE_LEN).ok_or_else(|| {
            FwError::invalid_len(op, MEASURE_LEN, format!("buffer is {out_len} bytes"))
        })?;
        let mut inner = self.lock();
        let (api, build) = (inner.identity.api, inner.identity.build);
        let mut mnonce = [0u8; 16];
        inner.rng.fill_bytes(&mut mnonce);
        let guest = inner.guest(op, CommandId::LaunchMeasure, handle, false)?;
        guest.publish_state(&self.dir, op, GuestState::LaunchSecret)?;
        let ld: [u8; 32] = guest.digest.take().map(Sha256::finish).unwrap_or_default();
        let measurement = launch_measurement_for_api(
            &guest.keys.tik,
            api.major,
            api.minor,
            build,
            guest.policy.bits(),
            &ld,
            &mnonce,
        );
        guest.ld = Some(ld);
        guest.measurement = Some(measurement);
        guest.state = GuestState::LaunchSecret;
        dst.copy_from_slice(
            &MeasureBlob {
                measurement,
                mnonce,
            }
            .to_bytes(),
        );
        Ok(MEASURE_LEN)
    }

    /// LAUNCH_SECRET: checks the owner's packet (header `hdr`, ciphertext
    /// `trans`) against the TIK and the launch measurement and writes the
    /// decrypted secret at `guest_gpa` (the pages turn private). Nothing is
    /// written unless every check passed.
    ///
    /// Step 2: header 0x34 bytes (INVALID_LEN); `guest_gpa` 16-byte aligned
    /// (INVALID_ADDRESS); `trans` a non-zero multiple of 16 and equal to
    /// `guest_len` (INVALID_LEN); the destination inside guest memory
    /// (INVALID_ADDRESS). Then LSECRET, active; FLAGS.COMPRESSED →
    /// UNSUPPORTED, other FLAGS bits → INVALID_PARAM, MAC → BAD_MEASUREMENT.
    // UNCERTAIN (docs/protocol/secret.md#launch-secret, docs/protocol/choices.md#u2,
    // docs/protocol/choices.md#u14): chose the codes above and to require equal lengths and 16-byte
    // multiples, because every tool sends exactly that and the reference recommends these codes.
    pub fn launch_secret(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        hdr: &[u8],
        guest_gpa: u64,
        guest_len: u32,
        trans: &[u8],
    ) -> Result<(), FwError> {
        let op = cmd(CommandId::LaunchSecret);
        let header = PacketHeader::decode(hdr)
            .map_err(|e| FwError::invalid_len(op, PACKET_HEADER_LEN, e.to_string()))?;
        check_aligned16(op, "GUEST_PADDR", guest_gpa)?;
        check_len16(op, "TRANS_LEN", trans.len() as u64)?;
        if u64::from(guest_len) != trans.len() as u64 {
            return Err(FwError::new(
                op,
                Status::InvalidLen,
                format!(
                    "GUEST_LEN {guest_len:#x} differs from TRANS_LEN {:#x}",
                    trans.len()
                ),
            ));
        }
        check_range(op, mem, guest_gpa, u64::from(guest_len))?;
        let mut inner = self.lock();
        let (api_major, api_minor) = (inner.identity.api.major, inner.identity.api.minor);
        let guest = inner.guest(op, CommandId::LaunchSecret, handle, true)?;
        let measurement = guest.measurement.unwrap_or_default();
        let trailer = api_has_measurement_context(api_major, api_minor).then_some(&measurement);
        let plain = open_launch_secret(&guest.keys, &header, guest_len, trans, trailer)
            .map_err(|e| packet_error(op, e))?;
        let state = guest.memory(op, mem)?;
        memory::firmware_write(mem, guest_gpa, &plain)
            .map_err(|e| FwError::new(op, Status::InvalidAddress, e.to_string()))?;
        state
            .mark_private(guest_gpa, u64::from(guest_len))
            .map_err(|e| FwError::new(op, Status::InvalidAddress, e.to_string()))?;
        log::debug!("LAUNCH_SECRET: guest {handle}, {guest_len} bytes at {guest_gpa:#x}");
        Ok(())
    }

    /// LAUNCH_FINISH: LSECRET → RUNNING; all guest memory turns private.
    pub fn launch_finish(&self, handle: u32) -> Result<(), FwError> {
        let op = cmd(CommandId::LaunchFinish);
        let mut inner = self.lock();
        let guest = inner.guest(op, CommandId::LaunchFinish, handle, false)?;
        guest.publish_state(&self.dir, op, GuestState::Running)?;
        guest.state = GuestState::Running;
        guest.mark_all_private();
        log::debug!("LAUNCH_FINISH: guest {handle} running");
        Ok(())
    }

    /// ATTESTATION: the 0xD0-byte report (MNONCE ‖ launch digest ‖ policy,
    /// signed with the PEK) into `out`; returns 0xD0. `out` too small →
    /// INVALID_LEN with 0xD0. LSECRET or RUNNING.
    // UNCERTAIN (no reference): chose 32 zero bytes as the launch digest of
    // a guest that reached RUNNING by RECEIVE_*, because no launch happened
    // on this platform and the migration carries no digest; a verifier
    // expecting a real digest rejects it.
    pub fn attestation(
        &self,
        handle: u32,
        mnonce: &[u8; 16],
        out: &mut [u8],
    ) -> Result<usize, FwError> {
        let op = cmd(CommandId::Attestation);
        let out_len = out.len();
        let dst = out.get_mut(..ATTESTATION_REPORT_LEN).ok_or_else(|| {
            FwError::invalid_len(
                op,
                ATTESTATION_REPORT_LEN,
                format!("buffer is {out_len} bytes"),
            )
        })?;
        let mut inner = self.lock();
        inner.guest(op, CommandId::Attestation, handle, false)?;
        self.refresh(&mut inner, op)?;
        let guest = inner.guest(op, CommandId::Attestation, handle, false)?;
        let (ld, policy) = (guest.ld.unwrap_or_default(), guest.policy.bits());
        let report = Report::sign(*mnonce, ld, policy, &inner.identity.pek)
            .map_err(|e| FwError::new(op, Status::HwErrorPlatform, e.to_string()))?;
        dst.copy_from_slice(&report.encode());
        Ok(ATTESTATION_REPORT_LEN)
    }

    /// DBG_DECRYPT: reads `dst.len()` bytes at `src_gpa` decrypted with the
    /// guest's key (private pages yield their plaintext, shared pages
    /// garbage, as on hardware). 16-byte alignment and length enforced as the
    /// firmware does (the VMM bounces like KVM). NODBG → POLICY_FAILURE.
    pub fn dbg_decrypt(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        src_gpa: u64,
        dst: &mut [u8],
    ) -> Result<(), FwError> {
        let len = dst.len() as u64;
        self.dbg(CommandId::DbgDecrypt, handle, mem, src_gpa, len, |state| {
            memory::decrypt_from_guest(mem, state, src_gpa, dst)
        })
    }

    /// DBG_ENCRYPT: writes `src` at `dst_gpa` encrypted with the guest's key
    /// (the guest reads `src`; the pages turn private). Alignment, length
    /// and NODBG as for [`Platform::dbg_decrypt`].
    pub fn dbg_encrypt(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        src: &[u8],
        dst_gpa: u64,
    ) -> Result<(), FwError> {
        let len = src.len() as u64;
        self.dbg(CommandId::DbgEncrypt, handle, mem, dst_gpa, len, |state| {
            memory::encrypt_for_guest(mem, state, dst_gpa, src)
        })
    }

    /// DBG_DECRYPT or DBG_ENCRYPT (`id`) of `len` bytes at `gpa` of guest
    /// `handle`: the address, length and policy checks, then `f` on the
    /// guest's memory state under the platform lock.
    fn dbg(
        &self,
        id: CommandId,
        handle: u32,
        mem: &dyn GuestBacking,
        gpa: u64,
        len: u64,
        f: impl FnOnce(&MemoryState) -> Result<(), memory::MemoryError>,
    ) -> Result<(), FwError> {
        let op = cmd(id);
        let field = if id == CommandId::DbgDecrypt {
            "SRC_PADDR"
        } else {
            "DST_PADDR"
        };
        check_aligned16(op, field, gpa)?;
        check_len16(op, "LEN", len)?;
        check_range(op, mem, gpa, len)?;
        let mut inner = self.lock();
        let guest = inner.guest(op, id, handle, true)?;
        if guest.policy.nodbg() {
            return Err(policy_failure(op, "guest policy has NODBG"));
        }
        let state = guest.memory(op, mem)?;
        f(&state).map_err(|e| FwError::new(op, Status::InvalidAddress, e.to_string()))
    }
}

/// Step 2 of the VMSA commands: a page-aligned 4 KiB page in guest memory.
pub(crate) fn check_vmsa_args(
    op: Op,
    mem: &dyn GuestBacking,
    gpa: u64,
    len: u32,
) -> Result<(), FwError> {
    if !gpa.is_multiple_of(PAGE_SIZE) {
        return Err(FwError::new(
            op,
            Status::InvalidAddress,
            format!("VMSA address {gpa:#x} is not 4 KiB aligned"),
        ));
    }
    if u64::from(len) != PAGE_SIZE {
        return Err(FwError::new(
            op,
            Status::InvalidLen,
            format!("VMSA length {len:#x} is not 0x1000"),
        ));
    }
    check_range(op, mem, gpa, PAGE_SIZE)
}

/// Appends the plaintext of `[gpa, gpa + len)` to `digest`, in chunks
/// through a scratch buffer that stays in cache.
fn measure_region(
    op: Op,
    mem: &dyn GuestBacking,
    digest: &mut Sha256,
    gpa: u64,
    len: u64,
) -> Result<(), FwError> {
    const CHUNK: u64 = 64 * 1024;
    let mut scratch = vec![0u8; usize::try_from(len.min(CHUNK)).unwrap_or(0)];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK);
        let buf = scratch
            .get_mut(..usize::try_from(n).unwrap_or(usize::MAX))
            .ok_or_else(|| FwError::new(op, Status::InvalidLen, "chunk"))?;
        memory::firmware_read(mem, gpa + done, buf)
            .map_err(|e| FwError::new(op, Status::InvalidAddress, e.to_string()))?;
        digest.update(&*buf);
        done += n;
    }
    Ok(())
}

/// Maps a packet check failure to its status code.
pub(crate) fn packet_error(op: Op, e: PacketError) -> FwError {
    let status = match e {
        PacketError::Mac => Status::BadMeasurement,
        PacketError::Compressed => Status::Unsupported,
        PacketError::ReservedFlags { .. } => Status::InvalidParam,
        PacketError::HeaderLength { .. }
        | PacketError::LengthMismatch { .. }
        | PacketError::NotBlockMultiple { .. }
        | PacketError::Empty
        | PacketError::TooLong { .. } => Status::InvalidLen,
    };
    FwError::new(op, status, e.to_string())
}
