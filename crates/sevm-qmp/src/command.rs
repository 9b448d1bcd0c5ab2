//! QMP requests parsed into typed commands.
//!
//! The parser knows nothing of the VM: it turns one JSON text into a
//! [`Request`] (or the error reply QEMU would give) and the server hands
//! the [`QmpCommand`] to the VMM. Checks and messages follow QEMU's
//! `qmp_dispatch` (qapi/qmp-dispatch.c) and its QObject input visitor
//! (qapi/qobject-input-visitor.c), in the same order:
//!
//! 1. JSON syntax → `GenericError` "JSON parse error, ...";
//! 2. not an object → "QMP input must be a JSON object";
//! 3. members: `execute` (or `exec-oob` once OOB is enabled) must be a
//!    string, `arguments` an object, `id` anything; others → "QMP input
//!    member 'X' is unexpected"; no `execute` → "QMP input lacks member
//!    'execute'";
//! 4. before `qmp_capabilities`: any other command → `CommandNotFound`
//!    "Expecting capabilities negotiation with 'qmp_capabilities'";
//! 5. unknown command → `CommandNotFound` "The command X has not been
//!    found"; `exec-oob` of a command without OOB support → "The command X
//!    does not support OOB" (none of sevm's commands allow OOB);
//! 6. arguments in schema order: "Parameter 'X' is missing", "Invalid
//!    parameter type for 'X', expected: string|integer|boolean|array",
//!    "Parameter 'X' expects uint64" (QAPI `uint64`/`size`), then "Parameter
//!    'X' is unexpected" for leftovers.
//!
//! Arguments that carry bytes as base64 are decoded here, by the one rule
//! of [`crate::base64`], so handlers receive bytes ([`Base64Bytes`]); text
//! that is not base64 is a `GenericError` naming the argument.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::base64::{Base64Bytes, DecodeError};
use crate::error::{ErrorClass, QmpError};

/// A QMP capability (QAPI `QMPCapability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QmpCapability {
    /// Out-of-band command execution (`exec-oob`).
    Oob,
}

impl QmpCapability {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            QmpCapability::Oob => "oob",
        }
    }
}

/// Settable migration parameters as they travel (QAPI
/// `MigrateSetParameters`, the subset sevm implements); also the reply
/// shape of `query-migrate-parameters` (QAPI `MigrationParameters`). Only
/// the wire shape: the VMM checks ranges and keeps its own state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrateSetParameters {
    /// `max-bandwidth` in bytes per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bandwidth: Option<u64>,
    /// `downtime-limit` in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime_limit: Option<u64>,
    /// `avail-switchover-bandwidth` in bytes per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avail_switchover_bandwidth: Option<u64>,
    /// `sev-pdh`: the target platform's PDH certificate, base64 on the
    /// wire (QEMU's SEV migration patches); empty means unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sev_pdh: Option<Base64Bytes>,
    /// `sev-plat-cert`: the target's PEK ‖ OCA ‖ CEK, base64 on the wire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sev_plat_cert: Option<Base64Bytes>,
    /// `sev-amd-cert`: the target's ASK ‖ ARK, base64 on the wire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sev_amd_cert: Option<Base64Bytes>,
    /// `x-peer-timeout` (sevm's own, hence QEMU's `x-` prefix), in
    /// milliseconds: the longest any single wait on the migration peer may
    /// take (connect, a blocked write, the acknowledgement, a silent
    /// incoming connection). The VMM checks its range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x_peer_timeout: Option<u64>,
}

/// QEMU `MigrateSetParameters` members sevm does not implement: named in
/// the error instead of "unexpected".
const UNSUPPORTED_MIGRATION_PARAMETERS: &[&str] = &[
    "announce-initial",
    "announce-max",
    "announce-rounds",
    "announce-step",
    "throttle-trigger-threshold",
    "cpu-throttle-initial",
    "cpu-throttle-increment",
    "cpu-throttle-tailslow",
    "tls-creds",
    "tls-hostname",
    "tls-authz",
    "x-checkpoint-delay",
    "multifd-channels",
    "xbzrle-cache-size",
    "max-postcopy-bandwidth",
    "max-cpu-throttle",
    "multifd-compression",
    "multifd-zlib-level",
    "multifd-zstd-level",
    "multifd-qatzip-level",
    "block-bitmap-mapping",
    "x-vcpu-dirty-limit-period",
    "vcpu-dirty-limit",
    "mode",
    "zero-page-detection",
    "direct-io",
];

/// A QMP command with its typed arguments.
///
/// `qmp_capabilities`, `query-version` and `query-commands` are answered by
/// the server itself; a [`QmpHandler`](crate::server::QmpHandler) sees every
/// other variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QmpCommand {
    /// `qmp_capabilities {enable?: [QMPCapability]}`.
    QmpCapabilities {
        /// Capabilities to enable.
        enable: Vec<QmpCapability>,
    },
    /// `query-version`.
    QueryVersion,
    /// `query-commands`.
    QueryCommands,
    /// `query-name`.
    QueryName,
    /// `query-status`.
    QueryStatus,
    /// `query-kvm`.
    QueryKvm,
    /// `query-cpus-fast`.
    QueryCpusFast,
    /// `stop`.
    Stop,
    /// `cont` (SEV: LAUNCH_FINISH first).
    Cont,
    /// `system_reset`.
    SystemReset,
    /// `system_powerdown`.
    SystemPowerdown,
    /// `quit`.
    Quit,
    /// `query-sev`.
    QuerySev,
    /// `query-sev-launch-measure`.
    QuerySevLaunchMeasure,
    /// `query-sev-capabilities`.
    QuerySevCapabilities,
    /// `x-sevm-query-snp-launch-digest`: sevm's extension giving the host
    /// operator an SNP guest's launch digest (on the emulated platform).
    XSevmQuerySnpLaunchDigest,
    /// `sev-inject-launch-secret {packet-header, secret, gpa?}`.
    SevInjectLaunchSecret {
        /// The packet header (base64 on the wire; 52 bytes for SEV).
        packet_header: Base64Bytes,
        /// The encrypted secret (base64 on the wire).
        secret: Base64Bytes,
        /// Guest physical address; default: the firmware's secret area.
        gpa: Option<u64>,
    },
    /// `query-sev-attestation-report {mnonce}`.
    QuerySevAttestationReport {
        /// The 16-byte nonce (base64 on the wire).
        mnonce: Base64Bytes,
    },
    /// `sev-dbg-decrypt {gpa, size, filename?}` (sevm): guest-physical
    /// memory through DBG_DECRYPT, returned as base64 `data` or written to
    /// `filename`.
    SevDbgDecrypt {
        /// First guest-physical address.
        gpa: u64,
        /// Byte count.
        size: u64,
        /// Output file instead of the reply.
        filename: Option<String>,
    },
    /// `sev-dbg-encrypt {gpa, data | filename}` (sevm): base64 `data`, or
    /// the contents of `filename`, written to guest-physical memory through
    /// DBG_ENCRYPT.
    SevDbgEncrypt {
        /// First guest-physical address.
        gpa: u64,
        /// The bytes (base64 on the wire).
        data: Option<Base64Bytes>,
        /// A host file to write instead.
        filename: Option<String>,
    },
    /// `human-monitor-command {command-line, cpu-index?}`.
    HumanMonitorCommand {
        /// The HMP command line.
        command_line: String,
        /// The CPU to use as current.
        cpu_index: Option<i64>,
    },
    /// `pmemsave {val, size, filename}`: guest-physical memory to a file.
    Pmemsave {
        /// Start address.
        val: i64,
        /// Byte count.
        size: i64,
        /// Output file.
        filename: String,
    },
    /// `memsave {val, size, filename, cpu-index?}`: guest-virtual memory.
    Memsave {
        /// Start address.
        val: i64,
        /// Byte count.
        size: i64,
        /// Output file.
        filename: String,
        /// The CPU whose address space to use.
        cpu_index: Option<i64>,
    },
    /// `migrate {uri, detach?, resume?}`.
    Migrate {
        /// Destination URI.
        uri: String,
        /// Ignored by QEMU (always detached).
        detach: Option<bool>,
        /// Resume a paused postcopy migration.
        resume: Option<bool>,
    },
    /// `migrate-incoming {uri, exit-on-error?}` (after `-incoming defer`).
    MigrateIncoming {
        /// Source URI.
        uri: String,
        /// Exit on failure (QEMU default true).
        exit_on_error: Option<bool>,
    },
    /// `migrate_cancel`.
    MigrateCancel,
    /// `query-migrate`.
    QueryMigrate,
    /// `migrate-set-parameters`.
    MigrateSetParameters(MigrateSetParameters),
    /// `query-migrate-parameters`.
    QueryMigrateParameters,
}

/// Every command name sevm accepts, as `query-commands` lists them.
pub const COMMAND_NAMES: &[&str] = &[
    "qmp_capabilities",
    "query-version",
    "query-commands",
    "query-name",
    "query-status",
    "query-kvm",
    "query-cpus-fast",
    "stop",
    "cont",
    "system_reset",
    "system_powerdown",
    "quit",
    "query-sev",
    "query-sev-launch-measure",
    "query-sev-capabilities",
    "x-sevm-query-snp-launch-digest",
    "sev-inject-launch-secret",
    "query-sev-attestation-report",
    "sev-dbg-decrypt",
    "sev-dbg-encrypt",
    "human-monitor-command",
    "pmemsave",
    "memsave",
    "migrate",
    "migrate-incoming",
    "migrate_cancel",
    "query-migrate",
    "migrate-set-parameters",
    "query-migrate-parameters",
];

impl QmpCommand {
    /// The command's wire name.
    pub fn name(&self) -> &'static str {
        match self {
            QmpCommand::QmpCapabilities { .. } => "qmp_capabilities",
            QmpCommand::QueryVersion => "query-version",
            QmpCommand::QueryCommands => "query-commands",
            QmpCommand::QueryName => "query-name",
            QmpCommand::QueryStatus => "query-status",
            QmpCommand::QueryKvm => "query-kvm",
            QmpCommand::QueryCpusFast => "query-cpus-fast",
            QmpCommand::Stop => "stop",
            QmpCommand::Cont => "cont",
            QmpCommand::SystemReset => "system_reset",
            QmpCommand::SystemPowerdown => "system_powerdown",
            QmpCommand::Quit => "quit",
            QmpCommand::QuerySev => "query-sev",
            QmpCommand::QuerySevLaunchMeasure => "query-sev-launch-measure",
            QmpCommand::QuerySevCapabilities => "query-sev-capabilities",
            QmpCommand::XSevmQuerySnpLaunchDigest => "x-sevm-query-snp-launch-digest",
            QmpCommand::SevInjectLaunchSecret { .. } => "sev-inject-launch-secret",
            QmpCommand::QuerySevAttestationReport { .. } => "query-sev-attestation-report",
            QmpCommand::SevDbgDecrypt { .. } => "sev-dbg-decrypt",
            QmpCommand::SevDbgEncrypt { .. } => "sev-dbg-encrypt",
            QmpCommand::HumanMonitorCommand { .. } => "human-monitor-command",
            QmpCommand::Pmemsave { .. } => "pmemsave",
            QmpCommand::Memsave { .. } => "memsave",
            QmpCommand::Migrate { .. } => "migrate",
            QmpCommand::MigrateIncoming { .. } => "migrate-incoming",
            QmpCommand::MigrateCancel => "migrate_cancel",
            QmpCommand::QueryMigrate => "query-migrate",
            QmpCommand::MigrateSetParameters(_) => "migrate-set-parameters",
            QmpCommand::QueryMigrateParameters => "query-migrate-parameters",
        }
    }
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The client's `id`, echoed in the reply.
    pub id: Option<Value>,
    /// Sent as `exec-oob` rather than `execute`.
    pub oob: bool,
    /// The command.
    pub command: QmpCommand,
}

/// A request that cannot be executed: the error to reply with, and the
/// `id` to echo (when the request was an object with one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct RequestError {
    /// The request's `id`, if it could be read.
    pub id: Option<Value>,
    /// The error reply.
    pub error: QmpError,
}

/// Where a connection is in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// After the greeting: only `qmp_capabilities` is accepted.
    Negotiation,
    /// After `qmp_capabilities`.
    Command {
        /// OOB was enabled during negotiation (`exec-oob` is recognised).
        oob: bool,
    },
}

/// Parses one request in command mode without OOB (the common case; for
/// a connection's real state use [`parse_request_in`]).
pub fn parse_request(input: &[u8]) -> Result<Request, RequestError> {
    parse_request_in(input, Stage::Command { oob: false })
}

/// Parses one JSON text as a request at the given protocol stage.
pub fn parse_request_in(input: &[u8], stage: Stage) -> Result<Request, RequestError> {
    let value: Value = serde_json::from_slice(input).map_err(|e| RequestError {
        id: None,
        error: QmpError::generic(format!("JSON parse error, {e}")),
    })?;
    let Value::Object(dict) = value else {
        return Err(RequestError {
            id: None,
            error: QmpError::generic("QMP input must be a JSON object"),
        });
    };
    let id = dict.get("id").cloned();
    let fail = |error: QmpError| RequestError {
        id: id.clone(),
        error,
    };
    let allow_oob = matches!(stage, Stage::Command { oob: true });

    let mut exec_key: Option<&str> = None;
    for (key, value) in &dict {
        match key.as_str() {
            k @ "execute" | k @ "exec-oob" if k == "execute" || allow_oob => {
                if !value.is_string() {
                    return Err(fail(QmpError::generic(format!(
                        "QMP input member '{k}' must be a string"
                    ))));
                }
                if let Some(prev) = exec_key {
                    return Err(fail(QmpError::generic(format!(
                        "QMP input member '{k}' clashes with '{prev}'"
                    ))));
                }
                exec_key = Some(k);
            }
            "arguments" => {
                if !value.is_object() {
                    return Err(fail(QmpError::generic(
                        "QMP input member 'arguments' must be an object",
                    )));
                }
            }
            "id" => {}
            other => {
                return Err(fail(QmpError::generic(format!(
                    "QMP input member '{other}' is unexpected"
                ))))
            }
        }
    }
    let Some(exec_key) = exec_key else {
        return Err(fail(QmpError::generic("QMP input lacks member 'execute'")));
    };
    let oob = exec_key == "exec-oob";
    let name = dict
        .get(exec_key)
        .and_then(Value::as_str)
        .unwrap_or_default();

    if stage == Stage::Negotiation && name != "qmp_capabilities" {
        return Err(fail(QmpError::command_not_found(
            "Expecting capabilities negotiation with 'qmp_capabilities'",
        )));
    }
    if !COMMAND_NAMES.contains(&name) {
        return Err(fail(QmpError::command_not_found(format!(
            "The command {name} has not been found"
        ))));
    }
    if oob {
        return Err(fail(QmpError::generic(format!(
            "The command {name} does not support OOB"
        ))));
    }
    let args = dict.get("arguments").and_then(Value::as_object);
    let command = parse_command(name, Args::new(args)).map_err(fail)?;
    Ok(Request { id, oob, command })
}

/// The arguments object, tracking which members were consumed.
struct Args<'a> {
    map: Option<&'a Map<String, Value>>,
    used: Vec<&'a str>,
}

fn missing(name: &str) -> QmpError {
    QmpError::generic(format!("Parameter '{name}' is missing"))
}

fn wrong_type(name: &str, expected: &str) -> QmpError {
    QmpError::generic(format!(
        "Invalid parameter type for '{name}', expected: {expected}"
    ))
}

impl<'a> Args<'a> {
    fn new(map: Option<&'a Map<String, Value>>) -> Self {
        Args {
            map,
            used: Vec::new(),
        }
    }

    fn take(&mut self, name: &str) -> Option<&'a Value> {
        let (key, value) = self.map?.get_key_value(name)?;
        self.used.push(key.as_str());
        Some(value)
    }

    fn opt_str(&mut self, name: &str) -> Result<Option<String>, QmpError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(wrong_type(name, "string")),
        }
    }

    fn str(&mut self, name: &str) -> Result<String, QmpError> {
        self.opt_str(name)?.ok_or_else(|| missing(name))
    }

    /// QAPI `int`: a JSON integer in i64 range.
    fn opt_int(&mut self, name: &str) -> Result<Option<i64>, QmpError> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| wrong_type(name, "integer")),
        }
    }

    fn int(&mut self, name: &str) -> Result<i64, QmpError> {
        self.opt_int(name)?.ok_or_else(|| missing(name))
    }

    /// QAPI `uint64`/`size`: a JSON integer; negative values are accepted
    /// and wrap "for backward compatibility", as QEMU does.
    fn opt_u64(&mut self, name: &str) -> Result<Option<u64>, QmpError> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_i64().map(|i| i as u64))
                .map(Some)
                .ok_or_else(|| QmpError::generic(format!("Parameter '{name}' expects uint64"))),
        }
    }

    fn u64(&mut self, name: &str) -> Result<u64, QmpError> {
        self.opt_u64(name)?.ok_or_else(|| missing(name))
    }

    /// A string argument that carries base64: decoded here, and an error
    /// from `bad` (which names the argument) when it is not base64.
    fn opt_base64(
        &mut self,
        name: &str,
        bad: fn(&str, &DecodeError) -> QmpError,
    ) -> Result<Option<Base64Bytes>, QmpError> {
        self.opt_str(name)?
            .map(|text| Base64Bytes::decode(&text).map_err(|e| bad(name, &e)))
            .transpose()
    }

    fn base64(
        &mut self,
        name: &str,
        bad: fn(&str, &DecodeError) -> QmpError,
    ) -> Result<Base64Bytes, QmpError> {
        self.opt_base64(name, bad)?.ok_or_else(|| missing(name))
    }

    fn opt_bool(&mut self, name: &str) -> Result<Option<bool>, QmpError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(wrong_type(name, "boolean")),
        }
    }

    /// Members nobody asked for (QEMU's `check_struct`).
    fn finish(self) -> Result<(), QmpError> {
        if let Some(map) = self.map {
            if let Some(key) = map.keys().find(|k| !self.used.contains(&k.as_str())) {
                return Err(QmpError::generic(format!(
                    "Parameter '{key}' is unexpected"
                )));
            }
        }
        Ok(())
    }
}

fn parse_capabilities(args: &mut Args<'_>) -> Result<Vec<QmpCapability>, QmpError> {
    let Some(value) = args.take("enable") else {
        return Ok(Vec::new());
    };
    let list = value
        .as_array()
        .ok_or_else(|| wrong_type("enable", "array"))?;
    let mut caps = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let s = item
            .as_str()
            .ok_or_else(|| wrong_type(&format!("enable[{i}]"), "string"))?;
        match s {
            "oob" => caps.push(QmpCapability::Oob),
            // QEMU's input_type_enum names list elements "null".
            other => {
                return Err(QmpError::generic(format!(
                    "Parameter 'null' does not accept value '{other}'"
                )))
            }
        }
    }
    Ok(caps)
}

/// `migrate`/`migrate-incoming`: `uri` is optional in the schema (the
/// alternative is `channels`, which sevm does not implement).
fn migration_uri(args: &mut Args<'_>) -> Result<String, QmpError> {
    if args.take("channels").is_some() {
        return Err(QmpError::generic(
            "Parameter 'channels' is not supported by sevm; use 'uri'",
        ));
    }
    args.opt_str("uri")?
        .ok_or_else(|| QmpError::generic("Need either 'uri' or 'channels' argument"))
}

/// Bad base64 in an SEV command's argument (the text sevm has always
/// given).
fn sev_base64(name: &str, e: &DecodeError) -> QmpError {
    QmpError::generic(format!("SEV: {name} is not valid base64: {e}"))
}

/// Bad base64 in a migration parameter (the text sevm has always given).
fn migration_base64(name: &str, e: &DecodeError) -> QmpError {
    QmpError::generic(format!("migration parameter {name}: not valid base64: {e}"))
}

fn parse_migration_parameters(args: &mut Args<'_>) -> Result<MigrateSetParameters, QmpError> {
    let params = MigrateSetParameters {
        max_bandwidth: args.opt_u64("max-bandwidth")?,
        downtime_limit: args.opt_u64("downtime-limit")?,
        avail_switchover_bandwidth: args.opt_u64("avail-switchover-bandwidth")?,
        sev_pdh: args.opt_base64("sev-pdh", migration_base64)?,
        sev_plat_cert: args.opt_base64("sev-plat-cert", migration_base64)?,
        sev_amd_cert: args.opt_base64("sev-amd-cert", migration_base64)?,
        x_peer_timeout: args.opt_u64("x-peer-timeout")?,
    };
    if let Some(map) = args.map {
        if let Some(key) = map
            .keys()
            .find(|k| UNSUPPORTED_MIGRATION_PARAMETERS.contains(&k.as_str()))
        {
            return Err(QmpError::generic(format!(
                "Parameter '{key}' is not supported by sevm"
            )));
        }
    }
    Ok(params)
}

fn parse_command(name: &str, mut args: Args<'_>) -> Result<QmpCommand, QmpError> {
    let a = &mut args;
    let command = match name {
        "qmp_capabilities" => QmpCommand::QmpCapabilities {
            enable: parse_capabilities(a)?,
        },
        "query-version" => QmpCommand::QueryVersion,
        "query-commands" => QmpCommand::QueryCommands,
        "query-name" => QmpCommand::QueryName,
        "query-status" => QmpCommand::QueryStatus,
        "query-kvm" => QmpCommand::QueryKvm,
        "query-cpus-fast" => QmpCommand::QueryCpusFast,
        "stop" => QmpCommand::Stop,
        "cont" => QmpCommand::Cont,
        "system_reset" => QmpCommand::SystemReset,
        "system_powerdown" => QmpCommand::SystemPowerdown,
        "quit" => QmpCommand::Quit,
        "query-sev" => QmpCommand::QuerySev,
        "query-sev-launch-measure" => QmpCommand::QuerySevLaunchMeasure,
        "query-sev-capabilities" => QmpCommand::QuerySevCapabilities,
        "x-sevm-query-snp-launch-digest" => QmpCommand::XSevmQuerySnpLaunchDigest,
        "sev-inject-launch-secret" => QmpCommand::SevInjectLaunchSecret {
            packet_header: a.base64("packet-header", sev_base64)?,
            secret: a.base64("secret", sev_base64)?,
            gpa: a.opt_u64("gpa")?,
        },
        "query-sev-attestation-report" => QmpCommand::QuerySevAttestationReport {
            mnonce: a.base64("mnonce", sev_base64)?,
        },
        "sev-dbg-decrypt" => QmpCommand::SevDbgDecrypt {
            gpa: a.u64("gpa")?,
            size: a.u64("size")?,
            filename: a.opt_str("filename")?,
        },
        "sev-dbg-encrypt" => QmpCommand::SevDbgEncrypt {
            gpa: a.u64("gpa")?,
            data: a.opt_base64("data", sev_base64)?,
            filename: a.opt_str("filename")?,
        },
        "human-monitor-command" => QmpCommand::HumanMonitorCommand {
            command_line: a.str("command-line")?,
            cpu_index: a.opt_int("cpu-index")?,
        },
        "pmemsave" => QmpCommand::Pmemsave {
            val: a.int("val")?,
            size: a.int("size")?,
            filename: a.str("filename")?,
        },
        "memsave" => QmpCommand::Memsave {
            val: a.int("val")?,
            size: a.int("size")?,
            filename: a.str("filename")?,
            cpu_index: a.opt_int("cpu-index")?,
        },
        "migrate" => {
            let uri = migration_uri(a)?;
            QmpCommand::Migrate {
                uri,
                detach: a.opt_bool("detach")?,
                resume: a.opt_bool("resume")?,
            }
        }
        "migrate-incoming" => {
            let uri = migration_uri(a)?;
            QmpCommand::MigrateIncoming {
                uri,
                exit_on_error: a.opt_bool("exit-on-error")?,
            }
        }
        "migrate_cancel" => QmpCommand::MigrateCancel,
        "query-migrate" => QmpCommand::QueryMigrate,
        "migrate-set-parameters" => {
            QmpCommand::MigrateSetParameters(parse_migration_parameters(a)?)
        }
        "query-migrate-parameters" => QmpCommand::QueryMigrateParameters,
        other => {
            return Err(QmpError::new(
                ErrorClass::CommandNotFound,
                format!("The command {other} has not been found"),
            ))
        }
    };
    args.finish()?;
    Ok(command)
}

#[cfg(test)]
mod tests;
