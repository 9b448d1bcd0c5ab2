//! The emulated AMD Secure Processor's SEV firmware: one firmware per
//! platform directory, shared by every process that opens it (each holds a
//! [`Platform`]), modelled at the level of KVM's ioctls (host buffers are
//! slices, guest addresses are guest-physical addresses into a
//! [`GuestBacking`]). The design is in
//! `docs/architecture-platform-state.md`.
//!
//! # Persistent state
//!
//! A platform directory ([`crate::store::StateDir`]) holds what real firmware
//! keeps in its non-volatile storage (INIT_EX's NV file): the identity (chip
//! id, CEK, OCA, PEK, PDH, the emulated ARK/ASK and every certificate; file
//! `identity`), the platform's fixed configuration (file `config`) and the
//! roots this platform trusts for the SEV policy bit besides its own ARK
//! (file `trusted-arks`).
//!
//! Commands that change persistent state (PLATFORM_RESET, PEK_GEN, PDH_GEN,
//! PEK_CERT_IMPORT) take the directory lock, check the platform-wide state,
//! re-read the identity, check it, modify it and write it atomically
//! (`modify_identity`): every decision that depends on the stored state
//! (PEK_CERT_IMPORT's ALREADY_OWNED and PEK checks, the keys PDH_GEN signs
//! with) is made on the identity read under the lock, never on a copy read
//! before it. A process notices another one's PDH/PEK/ownership change at
//! its next command that uses the identity (INIT, PLATFORM_STATUS, PEK_CSR,
//! PEK_CERT_IMPORT, PDH_CERT_EXPORT, GET_ID, LAUNCH_START, RECEIVE_START,
//! SEND_START, ATTESTATION): each of them re-reads the identity file (a few
//! KiB, its checksum verified; writers replace it by an atomic rename) and
//! reloads the keys when its contents changed. A damaged or vanished
//! identity is reported as SECURE_DATA_INVALID and never replaced.
//!
//! # Volatile, platform-wide state
//!
//! What a PSP keeps in its RAM — the platform state machine, the SEV-ES flag
//! of INIT, the guests with their handles, policies, states, ASIDs and
//! memory keys, the ASIDs waiting for DF_FLUSH — is one per platform, not
//! one per process: it lives in the directory's runtime area `run/`
//! (`shared`, [`crate::store::run`]), read and changed under the directory
//! lock (taken with a bound). So PLATFORM_STATUS reports every process's
//! guests, handles are unique on the platform, INIT/SHUTDOWN/PEK_GEN/... see
//! the platform-wide state, GUEST_STATUS and key sharing (`share_handle` of
//! LAUNCH_START/RECEIVE_START, refused with POLICY_FAILURE under NOKS) reach
//! another process's guest, and ACTIVATE checks ASIDs against every guest.
//!
//! What only the guest's process uses stays in the [`Platform`] object: the
//! launch digest, transport keys and migration sessions, the host-view
//! state. Commands other than GUEST_STATUS act on this process's guests only
//! (another process's handle: INVALID_GUEST, saying so). The hot paths
//! (LAUNCH_UPDATE_DATA, SEND/RECEIVE_UPDATE_*, DBG_*, the host view) make
//! no system call for the shared state: a guest command compares the
//! platform's SHUTDOWN counter, mapped shared by every process, with the
//! value its guest was created under, and looks at the guest's record only
//! when it changed.
//!
//! Each guest's record is locked (`flock`) by its process for the guest's
//! life: DECOMMISSION removes it; a dropped [`Platform`] or a dead process
//! (SIGKILL included) leaves it unlocked, and the next reader reaps it as
//! KVM tears a VM down (its ASID then needs DF_FLUSH; the last guest gone
//! moves the platform WORKING → INIT). SHUTDOWN destroys every guest on the
//! platform, other processes' included, as the firmware does; their owner
//! gets INVALID_PLATFORM_STATE (or INVALID_GUEST after a new INIT) at its
//! next command for them.
//!
//! # Check order
//!
//! Every command checks, in this order (docs/protocol/emulator.md): buffer lengths
//! and addresses (INVALID_LEN with the required length written back,
//! INVALID_ADDRESS), platform state (INVALID_PLATFORM_STATE), the handle
//! (INVALID_GUEST), the guest state (INVALID_GUEST_STATE, per the table of
//! docs/protocol/abi.md#guest-states), activation (INACTIVE), the policy (POLICY_FAILURE),
//! cryptographic checks (INVALID_CERTIFICATE / BAD_SIGNATURE /
//! BAD_MEASUREMENT); only then does it change anything.
//!
//! # Emulated, not hardware
//!
//! [`Platform::config`] reports `emulated: true`; the certificate chain is
//! rooted in this platform's own ARK ([`Platform::amd_chain`]), which a guest
//! owner must trust explicitly. Logs never contain keys.

mod guest;
mod identity;
mod issuer;
mod migrate;
mod shared;
mod snp;
mod snp_guest;
mod snp_request;
mod vcpu;

#[cfg(test)]
mod shared_tests;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use sev_proto::abi::{ApiVersion, CommandId, GuestState, Owner, PlatformState, Status};
use sev_proto::abi::{GET_ID_LEN, PLATFORM_CHAIN_LEN, SEV_CERT_LEN};
use sev_proto::cert::{ca, sev as sevcert};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub(crate) use crate::error::store_err;
pub use crate::error::{FwError, Op, PlatformError, RequiredLen};
pub use crate::snp::SnpLaunchIdentity;
pub use guest::GuestStatusInfo;
pub use sev_proto::abi::PlatformStatusInfo;

use crate::memory::{GuestBacking, MemoryState};
use crate::rng::PspRng;
use crate::snp::identity::SNP_IDENTITY_FILE;
use crate::snp::{SnpIdentity, SnpOptions};
use crate::store::record::{RecordReader, RecordWriter};
use crate::store::run::{HeldRecord, SharedCounter};
use crate::store::{LockFile, PersistentIdentity, StateDir, StoreError};
use guest::Guest;
use identity::Identity;
use sev_proto::snp::Product;
use shared::{RunArea, Snapshot};

/// The C-bit position the emulated platform reports (CPUID 0x8000001F
/// EBX bits 5:0 on the EPYC parts of every example).
pub const CBITPOS: u32 = 47;
/// The guest-visible physical-address reduction (docs/protocol/memory.md#cbitpos).
pub const REDUCED_PHYS_BITS: u32 = 1;

const IDENTITY_FILE: &str = "identity";
const CONFIG_FILE: &str = "config";
const TRUSTED_ARKS_FILE: &str = "trusted-arks";
/// The runtime area's SHUTDOWN counter.
const EPOCH_FILE: &str = "epoch";
/// Significant bytes of a Turin chip id (the rest are zero).
const TURIN_CHIP_ID_LEN: usize = 8;
/// The states in which guests can exist.
const INIT_OR_WORKING: &[PlatformState] = &[PlatformState::Init, PlatformState::Working];
/// Most guests that may exist at once (RESOURCE_LIMIT beyond).
const MAX_GUESTS: usize = 4096;

/// How to make a new platform identity ([`Platform::create`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateOptions {
    /// Firmware API version reported everywhere (PLATFORM_STATUS, the
    /// certificates, the measurement).
    pub api: ApiVersion,
    /// Firmware build id.
    pub build: u8,
    /// Size of the emulated ARK and ASK RSA keys: 4096 (default, as AMD's
    /// roots since Rome) or 2048 (fast, for tests).
    pub ark_bits: u32,
    /// Whether the platform supports SEV-ES (INIT with the ES flag).
    pub es_capable: bool,
    /// Largest ASID (CPUID 0x8000001F ECX).
    pub max_asid: u32,
    /// First ASID for plain SEV guests (CPUID 0x8000001F EDX); ASIDs
    /// `1..min_sev_asid` are for SEV-ES guests.
    pub min_sev_asid: u32,
    /// The SNP identity: product, TCB, SMT, sockets
    /// (docs/protocol/snp.md#snp-identity).
    pub snp: SnpOptions,
    /// Export the CEK without the ASK's signature, as real firmware does
    /// (PDH_CERT_EXPORT; docs/protocol/choices.md#u74): the owner then
    /// needs the signed CEK from a key server.
    pub unsigned_cek: bool,
}

impl Default for CreateOptions {
    /// API 1.55 build 21 (a current Milan-class firmware), 4096-bit roots,
    /// SEV-ES capable, ES ASIDs 1..=99, SEV ASIDs 100..=509, SNP as
    /// [`SnpOptions::default`] (Genoa).
    fn default() -> Self {
        CreateOptions {
            api: ApiVersion::new(1, 55),
            build: 21,
            ark_bits: 4096,
            es_capable: true,
            max_asid: 509,
            min_sev_asid: 100,
            snp: SnpOptions::default(),
            unsigned_cek: false,
        }
    }
}

/// The platform's fixed configuration ([`Platform::config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformConfig {
    /// Always true: this is the emulated platform, not AMD hardware.
    pub emulated: bool,
    /// Firmware API version.
    pub api: ApiVersion,
    /// Firmware build id.
    pub build: u8,
    /// C-bit position ([`CBITPOS`]).
    pub cbitpos: u32,
    /// Reduced physical-address bits ([`REDUCED_PHYS_BITS`]).
    pub reduced_phys_bits: u32,
    /// Largest ASID.
    pub max_asid: u32,
    /// First plain-SEV ASID; `1..min_sev_asid` are SEV-ES ASIDs.
    pub min_sev_asid: u32,
    /// Whether INIT accepts the SEV-ES flag.
    pub es_capable: bool,
    /// KEY_ID of the emulated ARK (the root a guest owner must trust).
    pub ark_key_id: [u8; 16],
    /// Whether PDH_CERT_EXPORT leaves the CEK unsigned (as real firmware).
    pub unsigned_cek: bool,
}

/// The fixed configuration as stored in the `config` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StoredConfig {
    es_capable: bool,
    max_asid: u32,
    min_sev_asid: u32,
    /// Stored only when set: a default platform's file is as before.
    unsigned_cek: bool,
}

mod config_tag {
    pub const ES_CAPABLE: u16 = 0x0001;
    pub const ASIDS: u16 = 0x0002;
    pub const UNSIGNED_CEK: u16 = 0x0003;
    pub const TRUSTED_ARK: u16 = 0x0001;
}

impl StoredConfig {
    fn encode(&self) -> Result<Vec<u8>, crate::store::RecordError> {
        let mut w = RecordWriter::new();
        w.put(config_tag::ES_CAPABLE, &[u8::from(self.es_capable)])?;
        let mut asids = [0u8; 8];
        asids[..4].copy_from_slice(&self.max_asid.to_le_bytes());
        asids[4..].copy_from_slice(&self.min_sev_asid.to_le_bytes());
        w.put(config_tag::ASIDS, &asids)?;
        if self.unsigned_cek {
            w.put(config_tag::UNSIGNED_CEK, &[1])?;
        }
        Ok(w.finish().to_vec())
    }

    fn decode(payload: &[u8]) -> Result<Self, String> {
        let (mut es, mut asids, mut unsigned_cek) = (None, None, None);
        for record in RecordReader::new(payload) {
            let (tag, value) = record.map_err(|e| e.to_string())?;
            match (tag, value) {
                (config_tag::ES_CAPABLE, [b @ (0 | 1)]) if es.is_none() => es = Some(*b == 1),
                (config_tag::ASIDS, v) if asids.is_none() && v.len() == 8 => {
                    let word = |i: usize| -> Option<u32> {
                        Some(u32::from_le_bytes(v.get(i..i + 4)?.try_into().ok()?))
                    };
                    asids = word(0).zip(word(4));
                }
                (config_tag::UNSIGNED_CEK, [1]) if unsigned_cek.is_none() => {
                    unsigned_cek = Some(true);
                }
                (tag, _) => return Err(format!("unexpected or malformed record {tag:#06x}")),
            }
        }
        let (Some(es_capable), Some((max_asid, min_sev_asid))) = (es, asids) else {
            return Err("missing record".into());
        };
        let conf = StoredConfig {
            es_capable,
            max_asid,
            min_sev_asid,
            unsigned_cek: unsigned_cek.unwrap_or(false),
        };
        conf.validate().map_err(|e| e.to_string())?;
        Ok(conf)
    }

    fn validate(&self) -> Result<(), &'static str> {
        if self.max_asid == 0 || self.max_asid > 0x10000 {
            return Err("max_asid must be in 1..=65536");
        }
        if self.min_sev_asid == 0 || self.min_sev_asid > self.max_asid {
            return Err("min_sev_asid must be in 1..=max_asid");
        }
        Ok(())
    }
}

/// This process's part of the PSP, behind the platform's mutex (the
/// platform-wide part is in the directory's runtime area: [`shared`]).
struct Inner {
    dir: StateDir,
    rng: PspRng,
    conf: StoredConfig,
    identity: Identity,
    /// The identity file's payload `identity` was loaded from.
    identity_payload: Zeroizing<Vec<u8>>,
    /// The guests this process created (each holds its record's lock).
    guests: BTreeMap<u32, Guest>,
    /// The SNP guest contexts this process created.
    snp_guests: BTreeMap<u32, snp_guest::SnpGuest>,
    /// The platform's shared SHUTDOWN counter, mapped on first use.
    epoch: Option<SharedCounter>,
    /// The directory's lock file, kept open.
    lock_file: LockFile,
    /// The runtime area, once made or checked.
    run: OnceLock<Arc<RunArea>>,
    /// A decommissioned guest's record, kept (locked) for the next guest.
    spare: Option<HeldRecord>,
    /// The last VCEK derived for a report.
    vcek_cache: Option<snp_request::VcekCache>,
}

impl Inner {
    /// The platform's shared SHUTDOWN counter (mapped under the directory
    /// lock `shared` holds).
    fn epoch(&mut self, shared: &Snapshot, op: Op) -> Result<&SharedCounter, FwError> {
        if self.epoch.is_none() {
            self.epoch = Some(shared.run().counter(EPOCH_FILE).map_err(store_err(op))?);
        }
        self.epoch
            .as_ref()
            .ok_or_else(|| FwError::new(op, Status::HwErrorPlatform, "epoch counter"))
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("guests", &self.guests.len())
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// The emulated AMD Secure Processor (SEV firmware) of one platform
/// directory. `Send + Sync`: every method takes `&self` and serialises on an
/// internal mutex, except that the host view ([`Platform::host_read`],
/// [`Platform::host_write`]) only holds it to look the guest up.
pub struct Platform {
    dir: StateDir,
    inner: Mutex<Inner>,
}

impl fmt::Debug for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Platform");
        d.field("dir", &self.dir.path());
        match self.inner.try_lock() {
            Ok(inner) => d.field("inner", &*inner),
            Err(_) => d.field("inner", &"<locked>"),
        };
        d.finish()
    }
}

fn cmd(c: CommandId) -> Op {
    Op::Command(c)
}

fn damaged_identity(op: Op, detail: impl fmt::Display) -> FwError {
    FwError::new(
        op,
        Status::SecureDataInvalid,
        format!("platform identity is damaged: {detail}"),
    )
}

/// Reads and decodes the identity record (the caller holds the lock when it
/// will write it back).
fn read_identity(dir: &StateDir, op: Op) -> Result<PersistentIdentity, FwError> {
    let payload = dir
        .read_sealed(IDENTITY_FILE)
        .map_err(store_err(op))?
        .ok_or_else(|| damaged_identity(op, "the identity file has disappeared"))?;
    PersistentIdentity::decode(&payload).map_err(|e| damaged_identity(op, e))
}

impl Platform {
    /// Creates a new platform identity in `dir` (created 0700 if missing):
    /// chip id, CEK, OCA, PEK, PDH and the emulated ARK/ASK with their own
    /// random KEY_IDs. RSA key generation takes seconds for 4096-bit roots:
    /// create once per directory. Refuses a directory that already holds an
    /// identity. The platform starts UNINIT.
    pub fn create(
        dir: impl AsRef<Path>,
        options: CreateOptions,
        mut rng: PspRng,
    ) -> Result<Platform, PlatformError> {
        if !matches!(options.ark_bits, 2048 | 4096) {
            return Err(PlatformError::InvalidOptions(format!(
                "ark_bits must be 2048 or 4096, not {}",
                options.ark_bits
            )));
        }
        let conf = StoredConfig {
            es_capable: options.es_capable,
            max_asid: options.max_asid,
            min_sev_asid: options.min_sev_asid,
            unsigned_cek: options.unsigned_cek,
        };
        conf.validate()
            .map_err(|e| PlatformError::InvalidOptions(e.into()))?;
        let dir = StateDir::open(dir.as_ref(), true).map_err(PlatformError::Store)?;
        let path = dir.path().to_path_buf();
        // Cheap check before seconds of key generation (repeated under the
        // lock before writing).
        if dir.read(IDENTITY_FILE)?.is_some() {
            return Err(PlatformError::AlreadyExists { path });
        }
        let mut id = identity::generate(&mut *rng, options.api, options.build, options.ark_bits)
            .map_err(|e| PlatformError::Generate(e.to_string()))?;
        if options.snp.product == Product::Turin {
            // Turin's chip id has 8 significant bytes
            // (docs/protocol/snp.md#snp-identity).
            id.chip_id[TURIN_CHIP_ID_LEN..].fill(0);
        }
        let snp_payload =
            SnpIdentity::generate(&mut *rng, &options.snp, (options.api, options.build))
                .and_then(|snp| snp.encode())
                .map_err(PlatformError::InvalidOptions)?;
        let payload = id
            .encode()
            .map_err(|e| PlatformError::Generate(e.to_string()))?;
        let conf_payload = conf
            .encode()
            .map_err(|e| PlatformError::Generate(e.to_string()))?;
        dir.locked(|d| {
            if d.read(IDENTITY_FILE)?.is_some() {
                return Err(PlatformError::AlreadyExists { path: path.clone() });
            }
            // The identity last: a directory without it is "not initialised".
            d.write_sealed(CONFIG_FILE, &conf_payload)?;
            d.write_sealed(SNP_IDENTITY_FILE, &snp_payload)?;
            d.write_sealed(IDENTITY_FILE, &payload)?;
            Ok(())
        })?;
        log::info!(
            "created emulated SEV platform in {} (API {} build {}, {}-bit roots)",
            path.display(),
            options.api,
            options.build,
            options.ark_bits
        );
        Self::open(&path, rng)
    }

    /// Opens the platform identity in `dir`. A missing directory or identity
    /// is [`PlatformError::NotInitialized`]; a damaged state file is
    /// [`PlatformError::Damaged`] (SECURE_DATA_INVALID). The platform is in
    /// the state the processes using it left it in (UNINIT in a directory
    /// nobody INITed, and after SHUTDOWN); this process has no guests yet.
    pub fn open(dir: impl AsRef<Path>, rng: PspRng) -> Result<Platform, PlatformError> {
        let path = dir.as_ref().to_path_buf();
        let dir = match StateDir::open(&path, false) {
            Ok(d) => d,
            Err(StoreError::Missing { path }) => {
                return Err(PlatformError::NotInitialized { path })
            }
            Err(e) => return Err(PlatformError::Store(e)),
        };
        let damaged = |detail: String| PlatformError::Damaged {
            path: path.clone(),
            detail,
        };
        let read = |name: &str| match dir.read_sealed(name) {
            Ok(v) => Ok(v),
            Err(e) if e.is_damaged() => Err(damaged(e.to_string())),
            Err(e) => Err(PlatformError::Store(e)),
        };
        let lock_file = dir.lock_file().map_err(PlatformError::Store)?;
        let (payload, conf_payload) = {
            let _lock = lock_file.lock().map_err(PlatformError::Store)?;
            let Some(payload) = read(IDENTITY_FILE)? else {
                return Err(PlatformError::NotInitialized { path });
            };
            let conf =
                read(CONFIG_FILE)?.ok_or_else(|| damaged("the config file is missing".into()))?;
            (payload, conf)
        };
        let record =
            PersistentIdentity::decode(&payload).map_err(|e| damaged(format!("identity: {e}")))?;
        let identity = Identity::load(&record).map_err(|e| damaged(e.to_string()))?;
        let conf =
            StoredConfig::decode(&conf_payload).map_err(|e| damaged(format!("config: {e}")))?;
        Ok(Platform {
            dir: dir.clone(),
            inner: Mutex::new(Inner {
                dir,
                rng,
                conf,
                identity,
                identity_payload: payload,
                guests: BTreeMap::new(),
                snp_guests: BTreeMap::new(),
                epoch: None,
                lock_file,
                run: OnceLock::new(),
                spare: None,
                vcek_cache: None,
            }),
        })
    }

    /// The platform state directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the state half-updated
        // in a way that matters more than losing the platform: keep going.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fixed configuration: API version, build, C-bit position, ASID
    /// ranges, SEV-ES capability, `emulated: true`.
    pub fn config(&self) -> PlatformConfig {
        let inner = self.lock();
        PlatformConfig {
            emulated: true,
            api: inner.identity.api,
            build: inner.identity.build,
            cbitpos: CBITPOS,
            reduced_phys_bits: REDUCED_PHYS_BITS,
            max_asid: inner.conf.max_asid,
            min_sev_asid: inner.conf.min_sev_asid,
            es_capable: inner.conf.es_capable,
            ark_key_id: *inner.identity.ark.key_id(),
            unsigned_cek: inner.conf.unsigned_cek,
        }
    }

    /// The emulated AMD CA certificates `(ASK, ARK)` in AMD CA format (what
    /// users of real hardware download from AMD's key server).
    pub fn amd_chain(&self) -> (Vec<u8>, Vec<u8>) {
        let inner = self.lock();
        (
            inner.identity.ask_cert_bytes.clone(),
            inner.identity.ark_cert_bytes.clone(),
        )
    }

    /// The platform's CEK signed by its ASK (0x824 bytes): what a key
    /// server serves for this chip at `/cek/id/<chip id>`
    /// (docs/protocol/snp.md#key-distribution-service), whether or not
    /// PDH_CERT_EXPORT leaves the signature out. Not a firmware command.
    pub fn signed_cek(&self) -> [u8; SEV_CERT_LEN] {
        self.lock().identity.cek_cert_bytes
    }

    /// Adds `ark` (an AMD CA format ARK, e.g. another emulated platform's)
    /// to the roots this platform accepts for the SEV policy bit in
    /// SEND_START (besides its own ARK). Stored in the directory's
    /// `trusted-arks` file. Not a firmware command: the host's
    /// administrator's decision.
    pub fn trust_ark(&self, ark: &[u8]) -> Result<(), FwError> {
        let op = Op::TrustArk;
        let cert = ca::Certificate::decode(ark).map_err(|e| {
            FwError::new(
                op,
                Status::InvalidCertificate,
                format!("ARK does not decode: {e}"),
            )
        })?;
        if cert.usage() != sev_proto::cert::Usage::Ark || cert.verify_signed_by(&cert).is_err() {
            return Err(FwError::new(
                op,
                Status::InvalidCertificate,
                "not a self-signed ARK",
            ));
        }
        let _lock = self.dir.lock().map_err(store_err(op))?;
        let mut roots = read_trusted(&self.dir).map_err(store_err(op))?;
        if !roots.iter().any(|r| r.as_slice() == ark) {
            roots.push(ark.to_vec());
        }
        let mut w = RecordWriter::new();
        for r in &roots {
            w.put(config_tag::TRUSTED_ARK, r)
                .map_err(|e| FwError::new(op, Status::ResourceLimit, e.to_string()))?;
        }
        self.dir
            .write_sealed(TRUSTED_ARKS_FILE, &w.finish())
            .map_err(store_err(op))?;
        log::info!("trusting an additional ARK for the SEV policy bit");
        Ok(())
    }

    /// The roots this platform trusts for the SEV policy bit: its own ARK
    /// first, then those added with [`Platform::trust_ark`] (AMD CA format).
    pub fn trusted_arks(&self) -> Result<Vec<Vec<u8>>, FwError> {
        let inner = self.lock();
        self.trusted_roots(&inner, Op::TrustArk)
    }

    fn trusted_roots(&self, inner: &Inner, op: Op) -> Result<Vec<Vec<u8>>, FwError> {
        let own = &inner.identity.ark_cert_bytes;
        let mut roots = read_trusted(&self.dir).map_err(store_err(op))?;
        roots.retain(|r| r != own);
        roots.insert(0, own.clone());
        Ok(roots)
    }

    // ----- platform commands -------------------------------------------------

    /// Re-reads the identity file (atomic renames make a lock unnecessary;
    /// its checksum is verified on every read) and reloads the keys when its
    /// contents changed, e.g. by another process's PDH_GEN.
    fn refresh(&self, inner: &mut Inner, op: Op) -> Result<(), FwError> {
        let payload = self
            .dir
            .read_sealed(IDENTITY_FILE)
            .map_err(store_err(op))?
            .ok_or_else(|| damaged_identity(op, "the identity file has disappeared"))?;
        if payload.as_slice() == inner.identity_payload.as_slice() {
            return Ok(());
        }
        let record = PersistentIdentity::decode(&payload).map_err(|e| damaged_identity(op, e))?;
        inner.identity = Identity::load(&record).map_err(|e| damaged_identity(op, e))?;
        inner.identity_payload = payload;
        log::debug!("reloaded the platform identity (changed by another process)");
        Ok(())
    }

    /// Read-modify-write of the identity; the caller holds the directory
    /// lock (`_held`, the snapshot its state check was made on).
    fn modify_identity(
        &self,
        inner: &mut Inner,
        _held: &Snapshot,
        op: Op,
        f: impl FnOnce(
            &mut PersistentIdentity,
            &mut dyn rand_core::CryptoRngCore,
        ) -> Result<(), FwError>,
    ) -> Result<(), FwError> {
        let mut record = read_identity(&self.dir, op)?;
        f(&mut record, &mut *inner.rng)?;
        let payload = record
            .encode()
            .map_err(|e| FwError::new(op, Status::HwErrorPlatform, e.to_string()))?;
        let identity = Identity::load(&record)
            .map_err(|e| FwError::new(op, Status::HwErrorPlatform, e.to_string()))?;
        self.dir
            .write_sealed(IDENTITY_FILE, &payload)
            .map_err(store_err(op))?;
        inner.identity = identity;
        inner.identity_payload = payload;
        Ok(())
    }

    /// The platform-wide state under the directory lock ([`Snapshot::load`]),
    /// required to be one of `allowed` (else INVALID_PLATFORM_STATE).
    fn snapshot_in(inner: &Inner, op: Op, allowed: &[PlatformState]) -> Result<Snapshot, FwError> {
        let shared = Snapshot::load(inner, op)?;
        Self::require_state(shared.platform.state, op, allowed)?;
        Ok(shared)
    }

    fn require_state(
        state: PlatformState,
        op: Op,
        allowed: &[PlatformState],
    ) -> Result<(), FwError> {
        if allowed.contains(&state) {
            return Ok(());
        }
        let names: Vec<&str> = allowed.iter().map(|s| s.name()).collect();
        Err(FwError::new(
            op,
            Status::InvalidPlatformState,
            format!(
                "platform is {}; the command needs {}",
                state,
                names.join(" or ")
            ),
        ))
    }

    /// INIT: UNINIT → INIT. `es` enables SEV-ES (the platform must be
    /// SEV-ES capable).
    pub fn init(&self, es: bool) -> Result<(), FwError> {
        let op = cmd(CommandId::Init);
        let mut inner = self.lock();
        let mut shared = Self::snapshot_in(&inner, op, &[PlatformState::Uninit])?;
        if es && !inner.conf.es_capable {
            // UNCERTAIN (no reference): chose UNSUPPORTED ("feature not
            // supported") for INIT with the SEV-ES flag on a platform without
            // SEV-ES, because that is literally the situation.
            return Err(FwError::new(
                op,
                Status::Unsupported,
                "SEV-ES requested but this platform is not SEV-ES capable",
            ));
        }
        // INIT loads the persistent state: a damaged identity fails here with
        // SECURE_DATA_INVALID, as on hardware.
        self.refresh(&mut inner, op)?;
        shared.platform.state = PlatformState::Init;
        shared.platform.es_enabled = es;
        shared.save()?;
        log::debug!("INIT (SEV-ES {})", if es { "on" } else { "off" });
        Ok(())
    }

    /// SHUTDOWN: INIT/WORKING → UNINIT. Every guest on the platform is
    /// destroyed, other processes' guests included (as the firmware does:
    /// SHUTDOWN is a platform command), and every ASID released. A process
    /// whose guest was destroyed gets INVALID_PLATFORM_STATE (or, after a
    /// new INIT, INVALID_GUEST) at its next command for it.
    pub fn shutdown(&self) -> Result<(), FwError> {
        let op = cmd(CommandId::Shutdown);
        let mut inner = self.lock();
        let mut shared = Self::snapshot_in(&inner, op, INIT_OR_WORKING)?;
        let others = shared
            .guests
            .keys()
            .filter(|h| !inner.guests.contains_key(h))
            .count();
        shared.remove_all_guests()?;
        inner.guests.clear();
        inner.epoch(&shared, op)?.increment();
        let p = &mut shared.platform;
        p.state = PlatformState::Uninit;
        p.es_enabled = false;
        p.generation = p.generation.wrapping_add(1);
        p.needs_flush.clear();
        shared.save()?;
        if others > 0 {
            log::warn!("SHUTDOWN destroyed {others} guest(s) of other processes");
        }
        log::debug!("SHUTDOWN");
        Ok(())
    }

    /// PLATFORM_RESET (FACTORY_RESET), UNINIT only: new OCA, PEK and PDH;
    /// the platform becomes self-owned. The CEK and the chip id are kept.
    pub fn platform_reset(&self) -> Result<(), FwError> {
        let op = cmd(CommandId::PlatformReset);
        let mut inner = self.lock();
        let shared = Self::snapshot_in(&inner, op, &[PlatformState::Uninit])?;
        self.modify_identity(&mut inner, &shared, op, |id, rng| {
            identity::regenerate_owner_keys(rng, id)
                .map_err(|e| FwError::new(op, Status::SecureDataInvalid, e.to_string()))
        })?;
        log::info!("PLATFORM_RESET: new OCA, PEK and PDH");
        Ok(())
    }

    /// PLATFORM_STATUS (any state): the platform-wide state, and the number
    /// of guests of every process using the platform.
    pub fn platform_status(&self) -> Result<PlatformStatusInfo, FwError> {
        let op = cmd(CommandId::PlatformStatus);
        let mut inner = self.lock();
        let shared = Snapshot::load(&inner, op)?;
        self.refresh(&mut inner, op)?;
        Ok(PlatformStatusInfo {
            api: inner.identity.api,
            state: shared.platform.state,
            owner: if inner.identity.externally_owned {
                Owner::External
            } else {
                Owner::SelfOwned
            },
            es_enabled: shared.platform.es_enabled,
            build: inner.identity.build,
            guest_count: u32::try_from(shared.guests.len()).unwrap_or(u32::MAX),
        })
    }

    /// PEK_GEN, INIT only: a new self-signed OCA, a new PEK (signed by it
    /// and the CEK) and a new PDH; the platform becomes self-owned.
    pub fn pek_gen(&self) -> Result<(), FwError> {
        let op = cmd(CommandId::PekGen);
        let mut inner = self.lock();
        let shared = Self::snapshot_in(&inner, op, &[PlatformState::Init])?;
        self.modify_identity(&mut inner, &shared, op, |id, rng| {
            identity::regenerate_owner_keys(rng, id)
                .map_err(|e| FwError::new(op, Status::SecureDataInvalid, e.to_string()))
        })?;
        log::info!("PEK_GEN: new OCA, PEK and PDH");
        Ok(())
    }

    /// PEK_CSR, INIT only: writes the certificate signing request (the PEK
    /// certificate with both signature slots empty, 0x824 bytes) into `out`
    /// and returns its length; `out` shorter than 0x824 → INVALID_LEN with
    /// the required length.
    // UNCERTAIN (docs/protocol/choices.md#u12): chose to allow PEK_CSR on an
    // externally owned platform too, because it only reads the PEK;
    // PEK_CERT_IMPORT is the command that answers ALREADY_OWNED.
    pub fn pek_csr(&self, out: &mut [u8]) -> Result<usize, FwError> {
        let op = cmd(CommandId::PekCsr);
        let out_len = out.len();
        let dst = out.get_mut(..SEV_CERT_LEN).ok_or_else(|| {
            FwError::invalid_len(op, SEV_CERT_LEN, format!("CSR buffer is {out_len} bytes"))
        })?;
        let mut inner = self.lock();
        Self::snapshot_in(&inner, op, &[PlatformState::Init])?;
        self.refresh(&mut inner, op)?;
        dst.copy_from_slice(&identity::pek_csr(&inner.identity.pek_cert));
        Ok(SEV_CERT_LEN)
    }

    /// PEK_CERT_IMPORT, INIT only: takes ownership with the owner's OCA
    /// certificate `oca` (self-signed, version 1, API 0.0, ECDSA P-384) and
    /// the PEK certificate `pek` the OCA signed (the CSR's key); the
    /// firmware adds the CEK's signature. The PDH is kept (its PEK signature
    /// stays valid: the PEK key does not change).
    ///
    /// Errors: wrong lengths → INVALID_LEN; externally owned → ALREADY_OWNED;
    /// malformed certificates, wrong usages, an OCA API version other than
    /// 0.0 or a PEK key that is not this platform's → INVALID_CERTIFICATE; a
    /// signature that does not verify → BAD_SIGNATURE.
    // UNCERTAIN (docs/protocol/choices.md#u12): chose ALREADY_OWNED for an import on
    // an externally owned platform, because silently replacing one owner's
    // OCA by another's is what the code exists to prevent; the owner returns
    // the platform to self-owned with PEK_GEN or PLATFORM_RESET first.
    pub fn pek_cert_import(&self, pek: &[u8], oca: &[u8]) -> Result<(), FwError> {
        let op = cmd(CommandId::PekCertImport);
        for (what, buf) in [("PEK", pek), ("OCA", oca)] {
            if buf.len() != SEV_CERT_LEN {
                return Err(FwError::invalid_len(
                    op,
                    SEV_CERT_LEN,
                    format!("{what} certificate is {} bytes", buf.len()),
                ));
            }
        }
        let mut inner = self.lock();
        let shared = Self::snapshot_in(&inner, op, &[PlatformState::Init])?;
        // Every check that depends on the persistent state (ownership, the
        // platform's PEK) runs on the identity read under the directory lock,
        // in the same critical section as the write: another process's
        // import between a check and the write would otherwise make two
        // owners.
        self.modify_identity(&mut inner, &shared, op, |id, _| {
            let (pek_cert, oca_cert) = check_import(op, id, pek, oca)?;
            identity::import_signed_pek(id, &pek_cert, &oca_cert)
                .map_err(|e| FwError::new(op, Status::InvalidCertificate, e.to_string()))
        })?;
        log::info!("PEK_CERT_IMPORT: platform is now externally owned");
        Ok(())
    }

    /// PDH_GEN, INIT or WORKING: a new PDH signed by the PEK.
    pub fn pdh_gen(&self) -> Result<(), FwError> {
        let op = cmd(CommandId::PdhGen);
        let mut inner = self.lock();
        let shared = Self::snapshot_in(&inner, op, INIT_OR_WORKING)?;
        self.modify_identity(&mut inner, &shared, op, |id, rng| {
            identity::regenerate_pdh(rng, id)
                .map_err(|e| FwError::new(op, Status::SecureDataInvalid, e.to_string()))
        })?;
        log::info!("PDH_GEN: new PDH");
        Ok(())
    }

    /// PDH_CERT_EXPORT, INIT or WORKING: the PDH certificate (0x824 bytes)
    /// into `pdh_out` and PEK ‖ OCA ‖ CEK (0x186C bytes) into `chain_out`;
    /// returns both lengths. Either buffer too small → INVALID_LEN with both
    /// required lengths (pass empty slices to query them).
    pub fn pdh_cert_export(
        &self,
        pdh_out: &mut [u8],
        chain_out: &mut [u8],
    ) -> Result<(usize, usize), FwError> {
        let op = cmd(CommandId::PdhCertExport);
        if pdh_out.len() < SEV_CERT_LEN || chain_out.len() < PLATFORM_CHAIN_LEN {
            return Err(FwError::invalid_len2(
                op,
                SEV_CERT_LEN,
                Some(PLATFORM_CHAIN_LEN),
                format!(
                    "PDH buffer is {} bytes, chain buffer {} bytes",
                    pdh_out.len(),
                    chain_out.len()
                ),
            ));
        }
        let mut inner = self.lock();
        Self::snapshot_in(&inner, op, INIT_OR_WORKING)?;
        self.refresh(&mut inner, op)?;
        let mut chain = inner.identity.platform_chain();
        if inner.conf.unsigned_cek {
            // Real firmware exports the CEK with both signature slots
            // empty (docs/protocol/choices.md#u74).
            let cek = chain
                .get_mut(2 * SEV_CERT_LEN..3 * SEV_CERT_LEN)
                .ok_or_else(|| FwError::new(op, Status::HwErrorPlatform, "platform chain"))?;
            cek.copy_from_slice(&inner.identity.cek_unsigned_bytes);
        }
        if let (Some(p), Some(c)) = (
            pdh_out.get_mut(..SEV_CERT_LEN),
            chain_out.get_mut(..PLATFORM_CHAIN_LEN),
        ) {
            p.copy_from_slice(&inner.identity.pdh_cert_bytes);
            c.copy_from_slice(&chain);
        }
        Ok((SEV_CERT_LEN, PLATFORM_CHAIN_LEN))
    }

    /// GET_ID (any state): the 64-byte chip id into `out`; returns 64.
    pub fn get_id(&self, out: &mut [u8]) -> Result<usize, FwError> {
        let op = cmd(CommandId::GetId);
        let out_len = out.len();
        let dst = out.get_mut(..GET_ID_LEN).ok_or_else(|| {
            FwError::invalid_len(op, GET_ID_LEN, format!("ID buffer is {out_len} bytes"))
        })?;
        let mut inner = self.lock();
        self.refresh(&mut inner, op)?;
        dst.copy_from_slice(&inner.identity.chip_id);
        Ok(GET_ID_LEN)
    }

    /// DF_FLUSH, INIT or WORKING: makes the ASIDs released by DEACTIVATE
    /// reusable, and those of decommissioned SNP guest contexts (one ASID
    /// table, docs/protocol/choices.md#u50). (WBINVD is not modelled:
    /// WBINVD_REQUIRED never occurs.)
    pub fn df_flush(&self) -> Result<(), FwError> {
        let op = cmd(CommandId::DfFlush);
        let inner = self.lock();
        let mut shared = Self::snapshot_in(&inner, op, INIT_OR_WORKING)?;
        if !shared.platform.needs_flush.is_empty() {
            shared.platform.needs_flush.clear();
            shared.save()?;
        }
        let mut snp = snp::load_snp_shared(&inner, &shared, op)?;
        if !snp.snp.needs_flush.is_empty() {
            snp.snp.needs_flush.clear();
            snp.save()?;
        }
        Ok(())
    }

    // ----- host view ---------------------------------------------------------

    /// The memory-encryption state of guest `handle` over `mem` (created on
    /// first use; the guest's key and private-page map). The VMM may keep the
    /// `Arc` and call [`crate::memory::host_read`] directly on hot paths.
    pub fn memory_state(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
    ) -> Result<Arc<MemoryState>, FwError> {
        let mut inner = self.lock();
        let guest = inner.guests.get_mut(&handle).ok_or_else(|| {
            FwError::new(
                Op::HostRead,
                Status::InvalidGuest,
                format!("no guest with handle {handle}"),
            )
        })?;
        guest.memory(Op::HostRead, mem)
    }

    /// What the hypervisor reads at `gpa` of guest `handle`: shared pages as
    /// they are, private pages as ciphertext under the guest's key with the
    /// address tweak. Any alignment. Unknown handle → INVALID_GUEST; outside
    /// guest memory → INVALID_ADDRESS.
    pub fn host_read(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        gpa: u64,
        buf: &mut [u8],
    ) -> Result<(), FwError> {
        let state = self.memory_state(handle, mem)?;
        crate::memory::host_read(mem, &state, gpa, buf)
            .map_err(|e| FwError::new(Op::HostRead, Status::InvalidAddress, e.to_string()))
    }

    /// What a hypervisor write of `data` at `gpa` does to guest `handle`:
    /// shared pages store it as is, private pages store its decryption (the
    /// guest reads garbage). Any alignment; nothing is written on error.
    pub fn host_write(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        gpa: u64,
        data: &[u8],
    ) -> Result<(), FwError> {
        let state = self.memory_state(handle, mem).map_err(|mut e| {
            e.op = Op::HostWrite;
            e
        })?;
        crate::memory::host_write(mem, &state, gpa, data)
            .map_err(|e| FwError::new(Op::HostWrite, Status::InvalidAddress, e.to_string()))
    }
}

/// PEK_CERT_IMPORT's checks against the identity `id` as stored (read under
/// the directory lock), in the firmware's order: ownership (ALREADY_OWNED),
/// the certificates (INVALID_CERTIFICATE), their signatures
/// (BAD_SIGNATURE). Returns the decoded PEK and OCA certificates.
///
/// The OCA is the owner's: its reserved bytes are taken as they are (the
/// signature covers them), as real firmware accepts an OCA whose reserved
/// area is not zero (`crates/sev-proto/src/cert/sev.rs`).
fn check_import(
    op: Op,
    id: &PersistentIdentity,
    pek: &[u8],
    oca: &[u8],
) -> Result<(sevcert::Certificate, sevcert::Certificate), FwError> {
    use sev_proto::cert::{KeyKind, Usage};
    if id.externally_owned {
        return Err(FwError::new(
            op,
            Status::AlreadyOwned,
            "platform is already externally owned (PEK_GEN or PLATFORM_RESET first)",
        ));
    }
    let platform_pek =
        sevcert::Certificate::decode(&id.pek_cert).map_err(|e| damaged_identity(op, e))?;
    let bad_cert = |d: String| FwError::new(op, Status::InvalidCertificate, d);
    let oca_cert =
        sevcert::Certificate::decode(oca).map_err(|e| bad_cert(format!("OCA certificate: {e}")))?;
    let pek_cert =
        sevcert::Certificate::decode(pek).map_err(|e| bad_cert(format!("PEK certificate: {e}")))?;
    if oca_cert.usage() != Usage::Oca || oca_cert.algorithm().kind() != KeyKind::Ecdsa {
        return Err(bad_cert(format!(
            "OCA certificate has usage {} and algorithm {}",
            oca_cert.usage(),
            oca_cert.algorithm()
        )));
    }
    if oca_cert.api_version() != (0, 0) {
        return Err(bad_cert(format!(
            "OCA certificate API version is {}.{}, must be 0.0",
            oca_cert.api_version().0,
            oca_cert.api_version().1
        )));
    }
    oca_cert
        .ec_public_key()
        .map_err(|e| bad_cert(format!("OCA key: {e}")))?;
    if pek_cert.usage() != Usage::Pek || pek_cert.body() != platform_pek.body() {
        return Err(bad_cert(
            "PEK certificate is not this platform's PEK (PEK_CSR)".into(),
        ));
    }
    let bad_sig = |d: String| FwError::new(op, Status::BadSignature, d);
    oca_cert
        .verify_signed_by_sev(&oca_cert)
        .map_err(|e| bad_sig(format!("OCA self-signature: {e}")))?;
    pek_cert
        .verify_signed_by_sev(&oca_cert)
        .map_err(|e| bad_sig(format!("OCA signature on the PEK: {e}")))?;
    Ok((pek_cert, oca_cert))
}

fn read_trusted(dir: &StateDir) -> Result<Vec<Vec<u8>>, StoreError> {
    let Some(payload) = dir.read_sealed(TRUSTED_ARKS_FILE)? else {
        return Ok(Vec::new());
    };
    let mut roots = Vec::new();
    for record in RecordReader::new(&payload) {
        // A malformed record list inside an intact container: report as
        // damage.
        let (_, value) = record.map_err(|_| StoreError::Damaged {
            path: dir.path().join(TRUSTED_ARKS_FILE),
            source: crate::store::SealError::ChecksumMismatch,
        })?;
        roots.push(value.to_vec());
    }
    Ok(roots)
}

/// Constant-time equality of two byte strings (lengths compared openly).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Whether `cmd` is legal for a guest in `state` (docs/protocol/abi.md#guest-states, with
/// the starred reconstructions: DBG_* in LUPDATE/LSECRET/RUNNING, ATTESTATION
/// in LSECRET/RUNNING, ACTIVATE everywhere but SENT).
pub fn guest_command_allowed(cmd: CommandId, state: GuestState) -> bool {
    use CommandId as C;
    use GuestState as S;
    match cmd {
        C::Deactivate | C::Decommission | C::GuestStatus => state != S::Uninit,
        C::Activate => !matches!(state, S::Uninit | S::Sent),
        C::LaunchStart | C::ReceiveStart => state == S::Uninit,
        C::LaunchUpdateData | C::LaunchUpdateVmsa | C::LaunchMeasure => state == S::LaunchUpdate,
        C::LaunchSecret | C::LaunchFinish => state == S::LaunchSecret,
        // UNCERTAIN (docs/protocol/choices.md#u16): chose to allow ATTESTATION in
        // LSECRET as well as RUNNING, because the launch digest is final from
        // LAUNCH_MEASURE on and the reference's table lists it (starred).
        C::Attestation => matches!(state, S::LaunchSecret | S::Running),
        C::DbgDecrypt | C::DbgEncrypt => {
            matches!(state, S::LaunchUpdate | S::LaunchSecret | S::Running)
        }
        C::SendStart => state == S::Running,
        C::SendUpdateData | C::SendUpdateVmsa | C::SendFinish | C::SendCancel => {
            state == S::SendUpdate
        }
        C::ReceiveUpdateData | C::ReceiveUpdateVmsa | C::ReceiveFinish => state == S::ReceiveUpdate,
        _ => false,
    }
}
