//! The SNP platform commands (docs/protocol/snp.md#snp-platform-commands) on
//! [`Platform`]. The SNP types are in [`crate::snp`].
//!
//! Every command checks, in this order: its buffer (decoded by the caller
//! with [`crate::snp::buffers`]: INVALID_PARAM), whether the firmware has
//! SNP at all (UNSUPPORTED), the features it asks for (INVALID_PARAM), the
//! SNP and SEV platform states (INVALID_PLATFORM_STATE), pending flushes
//! (DFFLUSH_REQUIRED), values checked against the platform (INVALID_PARAM);
//! only then does it change anything (docs/protocol/emulator.md#snp-check-order).

use p384::ecdsa::VerifyingKey;
use sev_proto::abi::{PlatformState, Status};
use sev_proto::snp::TcbVersion;

use super::shared::Snapshot;
use super::{store_err, FwError, Inner, Op, Platform};
use crate::snp::buffers::{init_flags, status_flags, SnpPlatformState};
use crate::snp::identity::SNP_IDENTITY_FILE;
use crate::snp::state::{SnpRuntime, SnpShared};
use crate::snp::vcek;
use crate::snp::{
    SnpCommand, SnpCommit, SnpConfig, SnpIdentity, SnpInitEx, SnpOptions, SnpPlatformStatus,
    SnpShutdownEx, MIN_SNP_API,
};

/// The SNP_INIT_EX flags this emulated firmware implements; the others
/// (ciphertext hiding, SEV-TIO) are refused as a firmware without them
/// refuses a reserved bit (docs/protocol/choices.md#u28).
const SUPPORTED_INIT_FLAGS: u32 =
    init_flags::INIT_RMP | init_flags::LIST_PADDR_EN | init_flags::RAPL_DIS;

fn snp_op(c: SnpCommand) -> Op {
    Op::Snp(c)
}

impl Platform {
    /// The SNP identity, read under the directory lock the caller's
    /// `_held` snapshot holds. A platform directory made before SNP existed
    /// gets one on first use: the default [`SnpOptions`] (Genoa), its
    /// chip id unchanged (docs/protocol/snp.md#snp-identity).
    pub(super) fn load_snp_identity(
        &self,
        inner: &mut Inner,
        _held: &Snapshot,
        op: Op,
    ) -> Result<SnpIdentity, FwError> {
        if inner.identity.api < MIN_SNP_API {
            return Err(FwError::new(
                op,
                Status::Unsupported,
                format!(
                    "this firmware (API {}) has no SNP: it needs API {MIN_SNP_API} or later",
                    inner.identity.api
                ),
            ));
        }
        if let Some(payload) = self
            .dir
            .read_sealed(SNP_IDENTITY_FILE)
            .map_err(store_err(op))?
        {
            return SnpIdentity::decode(&payload).map_err(|e| {
                FwError::new(
                    op,
                    Status::SecureDataInvalid,
                    format!("the SNP identity is damaged: {e}"),
                )
            });
        }
        let version = (inner.identity.api, inner.identity.build);
        let id = SnpIdentity::generate(&mut *inner.rng, &SnpOptions::default(), version)
            .map_err(|e| FwError::new(op, Status::HwErrorPlatform, e))?;
        self.write_snp_identity(&id, op)?;
        log::info!(
            "created the SNP identity of {} ({}; it predates SNP)",
            self.dir.path().display(),
            id.product
        );
        Ok(id)
    }

    fn write_snp_identity(&self, id: &SnpIdentity, op: Op) -> Result<(), FwError> {
        let payload = id
            .encode()
            .map_err(|e| FwError::new(op, Status::HwErrorPlatform, e))?;
        self.dir
            .write_sealed(SNP_IDENTITY_FILE, &payload)
            .map_err(store_err(op))
    }

    /// The chip's SNP identity: product, current and committed TCB and
    /// firmware version, SMT, sockets (its VCEK seed is not readable
    /// outside this crate). Created on first use for an older directory.
    pub fn snp_identity(&self) -> Result<SnpIdentity, FwError> {
        let op = snp_op(SnpCommand::PlatformStatus);
        let mut inner = self.lock();
        let shared = Snapshot::load(&inner, op)?;
        self.load_snp_identity(&mut inner, &shared, op)
    }

    /// SNP_INIT: SNP_INIT_EX with INIT_RMP and no range list.
    pub fn snp_init(&self) -> Result<(), FwError> {
        self.snp_init_as(SnpCommand::Init, &SnpInitEx::legacy_init())
    }

    /// SNP_INIT_EX: SNP UNINIT → INIT, while the SEV platform is UNINIT.
    ///
    /// Errors: CIPHERTEXT_HIDING_EN or TIO_EN (not implemented) →
    /// INVALID_PARAM; SNP already INIT, or SEV not UNINIT →
    /// INVALID_PLATFORM_STATE; INIT_RMP clear → RMP_INIT_REQUIRED (the
    /// emulated RMP exists only from an INIT_RMP on). The range list is
    /// recorded.
    pub fn snp_init_ex(&self, params: &SnpInitEx) -> Result<(), FwError> {
        self.snp_init_as(SnpCommand::InitEx, params)
    }

    fn snp_init_as(&self, cmd: SnpCommand, params: &SnpInitEx) -> Result<(), FwError> {
        let op = snp_op(cmd);
        let unsupported = params.flags & !SUPPORTED_INIT_FLAGS;
        if unsupported != 0 {
            return Err(FwError::new(
                op,
                Status::InvalidParam,
                format!(
                    "flags {unsupported:#x} ask for features this firmware does not have \
                     (ciphertext hiding, SEV-TIO)"
                ),
            ));
        }
        let mut inner = self.lock();
        let shared = Snapshot::load(&inner, op)?;
        self.load_snp_identity(&mut inner, &shared, op)?;
        let mut snp = load_snp_shared(&inner, &shared, op)?;
        if snp.snp.state != SnpPlatformState::Uninit {
            return Err(FwError::new(
                op,
                Status::InvalidPlatformState,
                "SNP is already INIT",
            ));
        }
        if shared.platform.state != PlatformState::Uninit {
            return Err(FwError::new(
                op,
                Status::InvalidPlatformState,
                format!(
                    "the SEV platform is {}: SNP must be initialised before SEV (SHUTDOWN first)",
                    shared.platform.state
                ),
            ));
        }
        if !params.has(init_flags::INIT_RMP) {
            // UNCERTAIN (docs/protocol/choices.md#u28): chose
            // RMP_INIT_REQUIRED, because the emulated RMP is only ever set up
            // by INIT_RMP (SNP_SHUTDOWN discards it).
            return Err(FwError::new(
                op,
                Status::RmpInitRequired,
                "INIT_RMP is clear and the RMP has not been initialised",
            ));
        }
        let s = &mut snp.snp;
        s.state = SnpPlatformState::Init;
        s.init_flags = params.flags;
        s.max_snp_asid = params.max_snp_asid;
        s.ranges = params.ranges.clone().unwrap_or_default();
        snp.save()?;
        log::debug!(
            "{cmd}: SNP INIT (flags {:#x}, {} hypervisor-fixed ranges)",
            params.flags,
            snp.snp.ranges.len()
        );
        Ok(())
    }

    /// SNP_SHUTDOWN: SNP_SHUTDOWN_EX without teardown flags.
    pub fn snp_shutdown(&self) -> Result<(), FwError> {
        self.snp_shutdown_as(SnpCommand::Shutdown, &SnpShutdownEx::default())
    }

    /// SNP_SHUTDOWN_EX: SNP INIT → UNINIT (already UNINIT: success, nothing
    /// changes). The SEV platform must be UNINIT (INVALID_PLATFORM_STATE);
    /// ASIDs of decommissioned guests not yet flushed → DFFLUSH_REQUIRED.
    /// The init flags, range list and SNP_CONFIG settings are discarded, and
    /// every SNP guest context on the platform is destroyed.
    pub fn snp_shutdown_ex(&self, params: &SnpShutdownEx) -> Result<(), FwError> {
        self.snp_shutdown_as(SnpCommand::ShutdownEx, params)
    }

    fn snp_shutdown_as(&self, cmd: SnpCommand, params: &SnpShutdownEx) -> Result<(), FwError> {
        let op = snp_op(cmd);
        let mut inner = self.lock();
        let shared = Snapshot::load(&inner, op)?;
        self.load_snp_identity(&mut inner, &shared, op)?;
        let mut snp = load_snp_shared(&inner, &shared, op)?;
        if snp.snp.state == SnpPlatformState::Uninit {
            return Ok(());
        }
        if shared.platform.state != PlatformState::Uninit {
            return Err(FwError::new(
                op,
                Status::InvalidPlatformState,
                format!(
                    "the SEV platform is {}: SHUTDOWN it before SNP",
                    shared.platform.state
                ),
            ));
        }
        if !snp.snp.needs_flush.is_empty() {
            return Err(FwError::new(
                op,
                Status::DfFlushRequired,
                format!(
                    "ASIDs {:?} of decommissioned guests need SNP_DF_FLUSH",
                    snp.snp.needs_flush
                ),
            ));
        }
        let destroyed = snp.snp.guests.len();
        for handle in snp.snp.guests.keys() {
            snp.release_guest(*handle)?;
        }
        snp.snp = SnpRuntime {
            next_handle: snp.snp.next_handle,
            ..SnpRuntime::default()
        };
        snp.save()?;
        inner.snp_guests.clear();
        if destroyed > 0 {
            log::warn!("{cmd} destroyed {destroyed} SNP guest context(s)");
        }
        log::debug!(
            "{cmd}: SNP UNINIT (IOMMU teardown {}, x86 teardown {})",
            params.iommu_snp_shutdown,
            params.x86_snp_shutdown
        );
        Ok(())
    }

    /// SNP_PLATFORM_STATUS (any state).
    pub fn snp_platform_status(&self) -> Result<SnpPlatformStatus, FwError> {
        let op = snp_op(SnpCommand::PlatformStatus);
        let mut inner = self.lock();
        let shared = Snapshot::load(&inner, op)?;
        let id = self.load_snp_identity(&mut inner, &shared, op)?;
        let snp = load_snp_shared(&inner, &shared, op)?.snp;
        let current = id
            .current_tcb
            .encode(id.product)
            .map_err(|e| FwError::new(op, Status::SecureDataInvalid, e.to_string()))?;
        let mut flags = 0;
        if snp.mask_chip_id {
            flags |= status_flags::MASK_CHIP_ID;
        }
        if snp.mask_chip_key {
            flags |= status_flags::MASK_CHIP_KEY;
        }
        if snp.init_flags & init_flags::RAPL_DIS != 0 {
            flags |= status_flags::RAPL_DIS;
        }
        let init = snp.state == SnpPlatformState::Init;
        Ok(SnpPlatformStatus {
            api: inner.identity.api,
            state: snp.state,
            rmp_initialized: init && snp.init_flags & init_flags::INIT_RMP != 0,
            build_id: u32::from(inner.identity.build),
            flags,
            guest_count: u32::try_from(snp.guests.len()).unwrap_or(u32::MAX),
            current_tcb: current,
            reported_tcb: if snp.reported_tcb == 0 {
                current
            } else {
                snp.reported_tcb
            },
        })
    }

    /// The public VCEK of this chip for `tcb` (the reported TCB when
    /// `None`): what AMD's key server certifies for the chip, here for the
    /// emulated certificate issuer (docs/protocol/choices.md#u58). The
    /// private key never leaves this crate.
    pub fn snp_vcek_public(&self, tcb: Option<TcbVersion>) -> Result<VerifyingKey, FwError> {
        let op = snp_op(SnpCommand::PlatformStatus);
        let mut inner = self.lock();
        let shared = Snapshot::load(&inner, op)?;
        let id = self.load_snp_identity(&mut inner, &shared, op)?;
        let tcb = match tcb {
            Some(tcb) => tcb,
            None => {
                let snp = load_snp_shared(&inner, &shared, op)?.snp;
                reported_tcb(&id, &snp, op)?
            }
        };
        tcb.encode(id.product)
            .map_err(|e| FwError::new(op, Status::InvalidParam, e.to_string()))?;
        vcek::vcek_public(&id.vcek_seed, id.product, &tcb).ok_or_else(|| {
            FwError::new(
                op,
                Status::HwErrorPlatform,
                "no VCEK scalar could be derived",
            )
        })
    }

    /// SNP_CONFIG, SNP INIT only: the reported TCB (0: the current one) and
    /// the chip id / chip key masks. A reported TCB that sets a byte the
    /// product's layout reserves, or with a component above the current
    /// TCB's → INVALID_PARAM.
    pub fn snp_config(&self, config: &SnpConfig) -> Result<(), FwError> {
        let op = snp_op(SnpCommand::Config);
        let mut inner = self.lock();
        let shared = Snapshot::load(&inner, op)?;
        let id = self.load_snp_identity(&mut inner, &shared, op)?;
        let mut snp = load_snp_shared(&inner, &shared, op)?;
        require_snp_init(op, snp.snp.state)?;
        if config.reported_tcb != 0 {
            let tcb = TcbVersion::decode(config.reported_tcb, id.product)
                .map_err(|e| FwError::new(op, Status::InvalidParam, e.to_string()))?;
            if !tcb.le(&id.current_tcb) {
                return Err(FwError::new(
                    op,
                    Status::InvalidParam,
                    format!(
                        "reported TCB ({tcb}) exceeds the installed firmware's ({})",
                        id.current_tcb
                    ),
                ));
            }
        }
        snp.snp.reported_tcb = config.reported_tcb;
        snp.snp.mask_chip_id = config.mask_chip_id;
        snp.snp.mask_chip_key = config.mask_chip_key;
        snp.save()?;
        log::info!(
            "SNP_CONFIG: reported TCB {:#018x}, mask chip id {}, mask chip key {}",
            config.reported_tcb,
            config.mask_chip_id,
            config.mask_chip_key
        );
        Ok(())
    }

    /// SNP_COMMIT, SNP INIT only: the running firmware's version and TCB
    /// become the committed ones (stored in the SNP identity).
    pub fn snp_commit(&self, _params: &SnpCommit) -> Result<(), FwError> {
        let op = snp_op(SnpCommand::Commit);
        let mut inner = self.lock();
        let shared = Snapshot::load(&inner, op)?;
        let mut id = self.load_snp_identity(&mut inner, &shared, op)?;
        require_snp_init(op, load_snp_shared(&inner, &shared, op)?.snp.state)?;
        id.committed_tcb = id.current_tcb;
        id.committed_version = (inner.identity.api, inner.identity.build);
        self.write_snp_identity(&id, op)?;
        log::info!(
            "SNP_COMMIT: committed firmware {} build {}, TCB {}",
            inner.identity.api,
            inner.identity.build,
            id.committed_tcb
        );
        Ok(())
    }

    /// SNP_DF_FLUSH, SNP INIT only: the ASIDs of decommissioned SNP guests
    /// become reusable, and those SEV guests released (one ASID table,
    /// docs/protocol/choices.md#u50).
    pub fn snp_df_flush(&self) -> Result<(), FwError> {
        let op = snp_op(SnpCommand::DfFlush);
        let mut inner = self.lock();
        let mut shared = Snapshot::load(&inner, op)?;
        self.load_snp_identity(&mut inner, &shared, op)?;
        let mut snp = load_snp_shared(&inner, &shared, op)?;
        require_snp_init(op, snp.snp.state)?;
        if !snp.snp.needs_flush.is_empty() {
            snp.snp.needs_flush.clear();
            snp.save()?;
        }
        if !shared.platform.needs_flush.is_empty() {
            shared.platform.needs_flush.clear();
            shared.save()?;
        }
        Ok(())
    }
}

/// The SNP runtime record, with the guest contexts of processes that are
/// gone reaped ([`SnpShared::reap`]); `shared` holds the directory lock.
pub(super) fn load_snp_shared(
    inner: &Inner,
    shared: &Snapshot,
    op: Op,
) -> Result<SnpShared, FwError> {
    let mut snp = SnpShared::load(shared.run(), op)?;
    snp.reap(|h| inner.snp_guests.contains_key(&h))?;
    Ok(snp)
}

pub(super) fn require_snp_init(op: Op, state: SnpPlatformState) -> Result<(), FwError> {
    if state == SnpPlatformState::Init {
        return Ok(());
    }
    Err(FwError::new(
        op,
        Status::InvalidPlatformState,
        format!("SNP is {}; the command needs INIT", state.name()),
    ))
}

/// The TCB the platform reports (SNP_CONFIG's REPORTED_TCB, or the current
/// one when that is 0), decoded.
pub(crate) fn reported_tcb(
    id: &SnpIdentity,
    snp: &SnpRuntime,
    op: Op,
) -> Result<TcbVersion, FwError> {
    if snp.reported_tcb == 0 {
        return Ok(id.current_tcb);
    }
    TcbVersion::decode(snp.reported_tcb, id.product)
        .map_err(|e| FwError::new(op, Status::SecureDataInvalid, e.to_string()))
}
