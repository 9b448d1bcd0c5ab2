//! What the server writes: the greeting, replies, events, and the typed
//! reply bodies of the commands (QEMU's QAPI shapes, member names in
//! kebab-case).
//!
//! Output is one JSON text per line, formatted as QEMU's non-pretty
//! `qobject_to_json` (`{"return": {}}`: a space after `:` and `,`).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::command::QmpCapability;
use crate::error::QmpError;

/// The QEMU version sevm's QMP interface corresponds to: `query-sev`
/// carries `sev-type` (9.1+) and `migrate` has no `blk`/`inc` (9.1+).
pub const QEMU_VERSION: VersionTriple = VersionTriple {
    major: 9,
    minor: 2,
    micro: 0,
};

/// `{"major", "minor", "micro"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VersionTriple {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Micro version.
    pub micro: u32,
}

/// `query-version`'s reply (and the greeting's `version`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    /// The QEMU version implemented.
    pub qemu: VersionTriple,
    /// `sevm-<version>` (sevm and this crate share the workspace's
    /// version).
    pub package: String,
}

impl VersionInfo {
    /// This build's version information.
    pub fn current() -> Self {
        VersionInfo {
            qemu: QEMU_VERSION,
            package: format!("sevm-{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// The greeting sent on connect: `{"QMP": {"version": ..., "capabilities":
/// [...]}}`. QEMU offers `oob` on monitors that run in its I/O thread,
/// which includes every socket monitor (`-qmp unix:...`).
pub fn greeting(capabilities: &[QmpCapability]) -> Value {
    let caps: Vec<&str> = capabilities.iter().map(|c| c.as_str()).collect();
    json!({ "QMP": { "version": VersionInfo::current(), "capabilities": caps } })
}

/// `{"return": ret, "id": id}` (no `id` member when the request had none).
pub fn success(ret: Value, id: Option<Value>) -> Value {
    reply("return", ret, id)
}

/// `{"error": {"class", "desc"}, "id": id}`.
pub fn error(err: &QmpError, id: Option<Value>) -> Value {
    reply("error", err.to_json(), id)
}

/// `{key: value, "id": id}`, without `id` when the request had none.
fn reply(key: &str, value: Value, id: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert(key.into(), value);
    if let Some(id) = id {
        m.insert("id".into(), id);
    }
    Value::Object(m)
}

/// QEMU's compact JSON style: `": "` after keys and `", "` between items.
struct QemuFormatter;

/// `", "` before every array item or object member but the first.
fn item_separator<W: ?Sized + std::io::Write>(writer: &mut W, first: bool) -> std::io::Result<()> {
    if first {
        Ok(())
    } else {
        writer.write_all(b", ")
    }
}

impl serde_json::ser::Formatter for QemuFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        item_separator(writer, first)
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        item_separator(writer, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

/// One message as written to the socket: QEMU-style JSON and `\n`.
pub fn to_wire(message: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, QemuFormatter);
    // Serialising a `Value` into a Vec cannot fail (no I/O errors, string
    // keys only); fall back to the default formatter if it ever did.
    if message.serialize(&mut ser).is_err() {
        out = message.to_string().into_bytes();
    }
    out.push(b'\n');
    out
}

/// An event timestamp (`g_get_real_time` split as QEMU does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub seconds: u64,
    /// Microseconds within the second.
    pub microseconds: u32,
}

impl Timestamp {
    /// Now (the epoch if the clock is before it).
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            seconds: d.as_secs(),
            microseconds: d.subsec_micros(),
        }
    }
}

/// QAPI `ShutdownCause`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShutdownCause {
    /// No shutdown/reset requested.
    None,
    /// An error in the host.
    HostError,
    /// QMP `quit`.
    HostQmpQuit,
    /// QMP `system_reset`.
    HostQmpSystemReset,
    /// A signal (e.g. SIGTERM).
    HostSignal,
    /// A UI request.
    HostUi,
    /// The guest powered off.
    GuestShutdown,
    /// The guest reset (turned into a shutdown by `-no-reboot`).
    GuestReset,
    /// The guest panicked.
    GuestPanic,
    /// A device reset.
    SubsystemReset,
    /// Loading a snapshot.
    SnapshotLoad,
}

/// QAPI `MigrationStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationStatus {
    /// No migration yet.
    None,
    /// Setting up.
    Setup,
    /// Being cancelled.
    Cancelling,
    /// Cancelled.
    Cancelled,
    /// Transferring.
    Active,
    /// Postcopy running.
    PostcopyActive,
    /// Postcopy paused.
    PostcopyPaused,
    /// Postcopy recovery setup.
    PostcopyRecoverSetup,
    /// Postcopy recovering.
    PostcopyRecover,
    /// Done.
    Completed,
    /// Failed.
    Failed,
    /// COLO.
    Colo,
    /// Paused before switchover.
    PreSwitchover,
    /// Migrating device state.
    Device,
    /// Waiting for unplug.
    WaitUnplug,
}

impl MigrationStatus {
    /// The QAPI name (`active`, `cancelling`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationStatus::None => "none",
            MigrationStatus::Setup => "setup",
            MigrationStatus::Cancelling => "cancelling",
            MigrationStatus::Cancelled => "cancelled",
            MigrationStatus::Active => "active",
            MigrationStatus::PostcopyActive => "postcopy-active",
            MigrationStatus::PostcopyPaused => "postcopy-paused",
            MigrationStatus::PostcopyRecoverSetup => "postcopy-recover-setup",
            MigrationStatus::PostcopyRecover => "postcopy-recover",
            MigrationStatus::Completed => "completed",
            MigrationStatus::Failed => "failed",
            MigrationStatus::Colo => "colo",
            MigrationStatus::PreSwitchover => "pre-switchover",
            MigrationStatus::Device => "device",
            MigrationStatus::WaitUnplug => "wait-unplug",
        }
    }
}

/// An asynchronous event.
#[derive(Debug, Clone, PartialEq)]
pub enum QmpEvent {
    /// `STOP`: the VM stopped (no data).
    Stop,
    /// `RESUME`: the VM runs (no data).
    Resume,
    /// `SHUTDOWN {guest, reason}`.
    Shutdown {
        /// The guest initiated it.
        guest: bool,
        /// Why.
        reason: ShutdownCause,
    },
    /// `RESET {guest, reason}`.
    Reset {
        /// The guest initiated it.
        guest: bool,
        /// Why.
        reason: ShutdownCause,
    },
    /// `POWERDOWN` (no data).
    Powerdown,
    /// `MIGRATION {status}`.
    Migration {
        /// The new status.
        status: MigrationStatus,
    },
    /// `MIGRATION_PASS {pass}`.
    MigrationPass {
        /// The RAM pass number.
        pass: u64,
    },
    /// Any other event.
    Other {
        /// Event name.
        name: String,
        /// Its data, if it has any.
        data: Option<Value>,
    },
}

impl QmpEvent {
    /// The event name.
    pub fn name(&self) -> &str {
        match self {
            QmpEvent::Stop => "STOP",
            QmpEvent::Resume => "RESUME",
            QmpEvent::Shutdown { .. } => "SHUTDOWN",
            QmpEvent::Reset { .. } => "RESET",
            QmpEvent::Powerdown => "POWERDOWN",
            QmpEvent::Migration { .. } => "MIGRATION",
            QmpEvent::MigrationPass { .. } => "MIGRATION_PASS",
            QmpEvent::Other { name, .. } => name,
        }
    }

    /// The `data` member; `None` for events without data (QEMU then omits
    /// the member entirely).
    pub fn data(&self) -> Option<Value> {
        match self {
            QmpEvent::Stop | QmpEvent::Resume | QmpEvent::Powerdown => None,
            QmpEvent::Shutdown { guest, reason } | QmpEvent::Reset { guest, reason } => {
                Some(json!({ "guest": guest, "reason": reason }))
            }
            QmpEvent::Migration { status } => Some(json!({ "status": status })),
            QmpEvent::MigrationPass { pass } => Some(json!({ "pass": pass })),
            QmpEvent::Other { data, .. } => data.clone(),
        }
    }

    /// `{"event": NAME, "data": {...}, "timestamp": {...}}`.
    pub fn to_message(&self, timestamp: Timestamp) -> Value {
        let mut m = Map::new();
        m.insert("event".into(), Value::String(self.name().to_string()));
        if let Some(data) = self.data() {
            m.insert("data".into(), data);
        }
        m.insert("timestamp".into(), json!(timestamp));
        Value::Object(m)
    }
}

/// QAPI `RunState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// Stopped by a debugger.
    Debug,
    /// Waiting for an incoming migration.
    Inmigrate,
    /// An internal error stopped the VM.
    InternalError,
    /// An I/O error stopped the VM.
    IoError,
    /// Paused by `stop`.
    Paused,
    /// Paused after an outgoing migration completed.
    Postmigrate,
    /// Not started yet (`-S`).
    Prelaunch,
    /// Stopped to finish an outgoing migration.
    FinishMigrate,
    /// Restoring a snapshot.
    RestoreVm,
    /// Running.
    Running,
    /// Saving a snapshot.
    SaveVm,
    /// Shut down (with `-no-shutdown`).
    Shutdown,
    /// Suspended (ACPI S3).
    Suspended,
    /// Stopped by the watchdog.
    Watchdog,
    /// The guest panicked.
    GuestPanicked,
    /// COLO.
    Colo,
}

/// `query-status`'s reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatusInfo {
    /// The vCPUs run.
    pub running: bool,
    /// Always false (deprecated QEMU member kept for old clients).
    pub singlestep: bool,
    /// The run state.
    pub status: RunState,
}

impl StatusInfo {
    /// The reply for a run state (`running` derived as QEMU does).
    pub fn new(status: RunState) -> Self {
        StatusInfo {
            running: status == RunState::Running,
            singlestep: false,
            status,
        }
    }
}

/// QAPI `SevState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SevState {
    /// Not initialised.
    Uninit,
    /// LAUNCH_UPDATE.
    LaunchUpdate,
    /// LAUNCH_SECRET (measured, secrets may be injected).
    LaunchSecret,
    /// Running.
    Running,
    /// Being migrated out.
    SendUpdate,
    /// Being migrated in.
    ReceiveUpdate,
}

/// QAPI `SevGuestType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SevGuestType {
    /// SEV or SEV-ES.
    Sev,
    /// SEV-SNP.
    SevSnp,
}

/// `query-sev`'s reply: QEMU 9.1's `SevInfo` union with the `sev` branch
/// (policy, handle) flattened in, plus sevm's `emulated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SevInfo {
    /// SEV is active for this VM.
    pub enabled: bool,
    /// Firmware API major version.
    pub api_major: u8,
    /// Firmware API minor version.
    pub api_minor: u8,
    /// Firmware build id.
    pub build_id: u8,
    /// The guest state.
    pub state: SevState,
    /// Always `sev`.
    pub sev_type: SevGuestType,
    /// The guest policy.
    pub policy: u32,
    /// The firmware guest handle.
    pub handle: u32,
    /// sevm extension: the platform is the emulated Secure Processor.
    pub emulated: bool,
}

/// `query-sev`'s reply for an SEV-SNP guest: QEMU 9.1's `SevInfo` union
/// with the `sev-snp` branch (`snp-policy`) flattened in, plus sevm's
/// `emulated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SevSnpInfo {
    /// SEV is active for this VM.
    pub enabled: bool,
    /// Firmware API major version.
    pub api_major: u8,
    /// Firmware API minor version.
    pub api_minor: u8,
    /// Firmware build id.
    pub build_id: u8,
    /// The guest state (QEMU's SevState: launch-update during the launch,
    /// running after SNP_LAUNCH_FINISH).
    pub state: SevState,
    /// Always `sev-snp`.
    pub sev_type: SevGuestType,
    /// The 64-bit SNP guest policy.
    pub snp_policy: u64,
    /// sevm extension: the platform is the emulated Secure Processor.
    pub emulated: bool,
}

/// `x-sevm-query-snp-launch-digest`'s reply (a sevm extension).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnpLaunchDigestInfo {
    /// base64 of the 48-byte SHA-384 launch digest (the attestation
    /// report's MEASUREMENT).
    pub digest: String,
    /// The 64-bit guest policy the guest was launched with.
    pub snp_policy: u64,
    /// base64 of the 32-byte HOST_DATA given at SNP_LAUNCH_FINISH (zeros
    /// before it).
    pub host_data: String,
    /// Whether the launch is finished (SNP_LAUNCH_FINISH done): only then is
    /// the digest final.
    pub finished: bool,
}

/// `query-sev-launch-measure`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SevLaunchMeasureInfo {
    /// base64(MEASUREMENT ‖ MNONCE), 48 bytes decoded.
    pub data: String,
}

/// `query-sev-capabilities`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SevCapability {
    /// base64 PDH certificate.
    pub pdh: String,
    /// base64 PEK ‖ OCA ‖ CEK.
    pub cert_chain: String,
    /// base64 GET_ID output (QEMU 7.1+).
    pub cpu0_id: String,
    /// C-bit position.
    pub cbitpos: i64,
    /// Guest physical address bit reduction (QEMU reports 1).
    pub reduced_phys_bits: i64,
}

/// `query-sev-attestation-report`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SevAttestationReport {
    /// base64 attestation report.
    pub data: String,
}

/// QAPI `MigrationStats` (the `ram` member of `query-migrate`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationStats {
    /// Bytes transferred.
    pub transferred: u64,
    /// Bytes remaining.
    pub remaining: u64,
    /// Total RAM bytes.
    pub total: u64,
    /// Zero pages.
    pub duplicate: u64,
    /// Full pages sent.
    pub normal: u64,
    /// Bytes of full pages.
    pub normal_bytes: u64,
    /// Pages dirtied per second.
    pub dirty_pages_rate: u64,
    /// Throughput in Mbit/s.
    pub mbps: f64,
    /// Dirty bitmap syncs.
    pub dirty_sync_count: u64,
    /// Postcopy page requests.
    pub postcopy_requests: u64,
    /// Target page size.
    pub page_size: u64,
    /// Bytes over multifd channels.
    pub multifd_bytes: u64,
    /// Pages per second.
    pub pages_per_second: u64,
    /// Bytes in precopy.
    pub precopy_bytes: u64,
    /// Bytes while stopped.
    pub downtime_bytes: u64,
    /// Bytes in postcopy.
    pub postcopy_bytes: u64,
    /// Zero-copy syncs missed.
    pub dirty_sync_missed_zero_copy: u64,
}

/// `query-migrate`'s reply (QAPI `MigrationInfo`, the members sevm fills).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationInfo {
    /// Status; absent before any migration (QEMU returns `{}` then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<MigrationStatus>,
    /// RAM statistics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ram: Option<MigrationStats>,
    /// Milliseconds since the start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_time: Option<i64>,
    /// Expected downtime in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_downtime: Option<i64>,
    /// Actual downtime in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime: Option<i64>,
    /// Setup time in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup_time: Option<i64>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_desc: Option<String>,
}

/// `query-name`'s reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NameInfo {
    /// `-name`, absent if none was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `query-kvm`'s reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KvmInfo {
    /// KVM is in use.
    pub enabled: bool,
    /// KVM is available.
    pub present: bool,
}

/// One `query-commands` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandInfo {
    /// The command name.
    pub name: String,
}

/// One `query-cpus-fast` entry (QAPI `CpuInfoFast`, x86).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CpuInfoFast {
    /// vCPU index.
    pub cpu_index: i64,
    /// QOM path (`/machine/unattached/device[N]`).
    pub qom_path: String,
    /// Host thread id.
    pub thread_id: i64,
    /// Always `x86_64`.
    pub target: String,
}

/// Serialises a typed reply into the `return` value.
pub fn to_value<T: Serialize>(reply: &T) -> Result<Value, QmpError> {
    serde_json::to_value(reply)
        .map_err(|e| QmpError::generic(format!("internal error: cannot encode reply: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;

    #[test]
    fn greeting_shape() {
        let g = greeting(&[QmpCapability::Oob]);
        assert_eq!(
            g,
            json!({"QMP": {
                "version": {"qemu": {"major": 9, "minor": 2, "micro": 0},
                            "package": format!("sevm-{}", env!("CARGO_PKG_VERSION"))},
                "capabilities": ["oob"]}})
        );
        assert_eq!(greeting(&[])["QMP"]["capabilities"], json!([]));
    }

    #[test]
    fn replies_with_and_without_id() {
        assert_eq!(success(json!({}), None), json!({"return": {}}));
        assert_eq!(
            success(json!([1]), Some(json!("a"))),
            json!({"return": [1], "id": "a"})
        );
        let e = QmpError::new(ErrorClass::DeviceNotFound, "no");
        assert_eq!(
            error(&e, Some(json!({"x": 1}))),
            json!({"error": {"class": "DeviceNotFound", "desc": "no"}, "id": {"x": 1}})
        );
        assert_eq!(
            error(&e, None),
            json!({"error": {"class": "DeviceNotFound", "desc": "no"}})
        );
    }

    #[test]
    fn wire_format_is_qemus_compact_style() {
        assert_eq!(to_wire(&json!({"return": {}})), b"{\"return\": {}}\n");
        assert_eq!(
            to_wire(&json!({"a": [1, 2], "b": "x"})),
            b"{\"a\": [1, 2], \"b\": \"x\"}\n"
        );
        // Round trip through a standard JSON parser.
        let v = json!({"QMP": {"capabilities": ["oob"], "n": null, "s": "\"\n"}});
        let wire = to_wire(&v);
        assert_eq!(serde_json::from_slice::<Value>(&wire).unwrap(), v);
    }

    #[test]
    fn events() {
        let ts = Timestamp {
            seconds: 1267020223,
            microseconds: 435656,
        };
        assert_eq!(
            QmpEvent::Stop.to_message(ts),
            json!({"event": "STOP", "timestamp": {"seconds": 1267020223, "microseconds": 435656}})
        );
        assert_eq!(QmpEvent::Resume.to_message(ts)["event"], "RESUME");
        assert!(QmpEvent::Resume.to_message(ts).get("data").is_none());
        assert_eq!(
            QmpEvent::Shutdown {
                guest: false,
                reason: ShutdownCause::HostQmpQuit
            }
            .to_message(ts)["data"],
            json!({"guest": false, "reason": "host-qmp-quit"})
        );
        assert_eq!(
            QmpEvent::Reset {
                guest: true,
                reason: ShutdownCause::GuestReset
            }
            .data(),
            Some(json!({"guest": true, "reason": "guest-reset"}))
        );
        assert_eq!(
            QmpEvent::Migration {
                status: MigrationStatus::PostcopyActive
            }
            .data(),
            Some(json!({"status": "postcopy-active"}))
        );
        assert_eq!(
            QmpEvent::MigrationPass { pass: 3 }.data(),
            Some(json!({"pass": 3}))
        );
        let other = QmpEvent::Other {
            name: "X".into(),
            data: Some(json!({"k": 1})),
        };
        assert_eq!(other.name(), "X");
        assert_eq!(other.to_message(ts)["data"], json!({"k": 1}));
        assert_eq!(QmpEvent::Powerdown.name(), "POWERDOWN");
        let now = Timestamp::now();
        assert!(now.seconds > 1_600_000_000 && now.microseconds < 1_000_000);
    }

    #[test]
    fn typed_reply_shapes() {
        assert_eq!(
            to_value(&StatusInfo::new(RunState::Prelaunch)).unwrap(),
            json!({"running": false, "singlestep": false, "status": "prelaunch"})
        );
        assert_eq!(
            to_value(&StatusInfo::new(RunState::Running)).unwrap(),
            json!({"running": true, "singlestep": false, "status": "running"})
        );
        for (s, w) in [
            (RunState::Paused, "paused"),
            (RunState::Shutdown, "shutdown"),
            (RunState::Inmigrate, "inmigrate"),
            (RunState::Postmigrate, "postmigrate"),
            (RunState::FinishMigrate, "finish-migrate"),
            (RunState::GuestPanicked, "guest-panicked"),
            (RunState::InternalError, "internal-error"),
        ] {
            assert_eq!(to_value(&s).unwrap(), w);
        }
        let sev = SevInfo {
            enabled: true,
            api_major: 0,
            api_minor: 24,
            build_id: 15,
            state: SevState::LaunchSecret,
            sev_type: SevGuestType::Sev,
            policy: 1,
            handle: 1,
            emulated: true,
        };
        assert_eq!(
            to_value(&sev).unwrap(),
            json!({"enabled": true, "api-major": 0, "api-minor": 24, "build-id": 15,
                   "state": "launch-secret", "sev-type": "sev", "policy": 1, "handle": 1,
                   "emulated": true})
        );
        // QEMU 9.1's sev-snp branch: snp-policy, no handle.
        let snp = SevSnpInfo {
            enabled: true,
            api_major: 1,
            api_minor: 55,
            build_id: 21,
            state: SevState::LaunchUpdate,
            sev_type: SevGuestType::SevSnp,
            snp_policy: 0x30000,
            emulated: true,
        };
        assert_eq!(
            to_value(&snp).unwrap(),
            json!({"enabled": true, "api-major": 1, "api-minor": 55, "build-id": 21,
                   "state": "launch-update", "sev-type": "sev-snp", "snp-policy": 196608,
                   "emulated": true})
        );
        assert_eq!(
            to_value(&SnpLaunchDigestInfo {
                digest: "D".into(),
                snp_policy: 0x30000,
                host_data: "H".into(),
                finished: false,
            })
            .unwrap(),
            json!({"digest": "D", "snp-policy": 196608, "host-data": "H", "finished": false})
        );
        assert_eq!(
            to_value(&SevCapability {
                pdh: "P".into(),
                cert_chain: "C".into(),
                cpu0_id: "I".into(),
                cbitpos: 47,
                reduced_phys_bits: 1
            })
            .unwrap(),
            json!({"pdh": "P", "cert-chain": "C", "cpu0-id": "I", "cbitpos": 47,
                   "reduced-phys-bits": 1})
        );
        assert_eq!(
            to_value(&SevLaunchMeasureInfo { data: "m".into() }).unwrap(),
            json!({"data": "m"})
        );
        assert_eq!(
            to_value(&SevAttestationReport { data: "r".into() }).unwrap(),
            json!({"data": "r"})
        );
        assert_eq!(to_value(&MigrationInfo::default()).unwrap(), json!({}));
        let mi = MigrationInfo {
            status: Some(MigrationStatus::Active),
            ram: Some(MigrationStats {
                transferred: 10,
                total: 20,
                remaining: 10,
                page_size: 4096,
                ..Default::default()
            }),
            total_time: Some(5),
            ..Default::default()
        };
        let v = to_value(&mi).unwrap();
        assert_eq!(v["status"], "active");
        assert_eq!(v["ram"]["normal-bytes"], 0);
        assert_eq!(v["ram"]["page-size"], 4096);
        assert_eq!(v["total-time"], 5);
        assert!(v.get("error-desc").is_none());
        assert_eq!(to_value(&NameInfo::default()).unwrap(), json!({}));
        assert_eq!(
            to_value(&NameInfo {
                name: Some("vm".into())
            })
            .unwrap(),
            json!({"name": "vm"})
        );
        assert_eq!(
            to_value(&KvmInfo {
                enabled: true,
                present: true
            })
            .unwrap(),
            json!({"enabled": true, "present": true})
        );
        assert_eq!(
            to_value(&CpuInfoFast {
                cpu_index: 0,
                qom_path: "/machine/unattached/device[0]".into(),
                thread_id: 42,
                target: "x86_64".into()
            })
            .unwrap(),
            json!({"cpu-index": 0, "qom-path": "/machine/unattached/device[0]",
                   "thread-id": 42, "target": "x86_64"})
        );
        assert_eq!(
            to_value(&VersionInfo::current()).unwrap()["qemu"]["major"],
            9
        );
    }
}
