//! sevm's QEMU-compatible command line: argv → a typed [`VmConfig`].
//!
//! Parsing has no side effects and reads no files: paths are stored, not
//! opened. Every error names the option (and property) and what is wrong,
//! e.g. `-object sev-guest: policy: invalid number "0xzz"`.
//!
//! The options, their arguments and help text are one table
//! ([`table`]); the `-help` usage ([`usage`]) and the options reference
//! `docs/sevm-options.md` ([`markdown`]) are generated from it.

mod table;

use std::ffi::OsString;
use std::path::PathBuf;

use sev_proto::snp::id_block::{ID_AUTH_LEN, ID_BLOCK_LEN};
use sev_proto::snp::GuestPolicy;

use crate::keyval::{
    flag_or_bool, parse_bool, parse_props, parse_size, parse_u32, parse_u64, Prop,
};
pub use table::{markdown, usage};

use crate::config::{
    CpuConfig, GdbConfig, IncomingConfig, MachineType, OnOffAuto, OptionsError, PflashDrive,
    QmpSocketConfig, SerialConfig, SevDevice, SevGuestConfig, SnpCertSource, SnpGuestOptions,
    VmConfig, EMULATED_PREFIX, MAX_CPUS,
};

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Run a VM.
    Run(Box<VmConfig>),
    /// `-h`/`-help`: print [`usage`] and exit.
    Help,
    /// `-version`: print the version and exit.
    Version,
    /// `-write-demo-guest FILE` (sevm's own): write the bundled demo guest
    /// firmware image (2 MiB, OVMF-style footer table) to FILE and exit.
    WriteDemoGuest(PathBuf),
}

/// QEMU (x86) options that sevm recognises but does not implement.
const UNSUPPORTED: &[&str] = &[
    "device",
    "netdev",
    "net",
    "nic",
    "vnc",
    "spice",
    "monitor",
    "mon",
    "chardev",
    "hda",
    "hdb",
    "hdc",
    "hdd",
    "cdrom",
    "fda",
    "fdb",
    "usb",
    "usbdevice",
    "vga",
    "boot",
    "k",
    "audiodev",
    "audio",
    "soundhw",
    "rtc",
    "icount",
    "watchdog-action",
    "balloon",
    "smbios",
    "fw_cfg",
    "global",
    "readconfig",
    "writeconfig",
    "mem-path",
    "mem-prealloc",
    "numa",
    "add-fd",
    "set",
    "sandbox",
    "d",
    "D",
    "L",
    "trace",
    "plugin",
    "option-rom",
    "pidfile",
    "daemonize",
    "runas",
    "run-with",
    "chroot",
    "sdl",
    "full-screen",
    "g",
    "no-quit",
    "no-acpi",
    "no-hpet",
    "acpitable",
    "semihosting",
    "semihosting-config",
    "tpmdev",
    "overcommit",
    "msg",
    "dump-vmstate",
    "preconfig",
    "loadvm",
    "snapshot",
    "fsdev",
    "virtfs",
    "virtfs_synth",
    "iscsi",
    "blockdev",
    "mtdblock",
    "sd",
    "pflash",
    "parallel",
    "virtioconsole",
    "debugcon",
    "qmp-pretty",
    "action",
    "async-teardown",
    "seed",
    "compat",
    "no-shutdown",
    "no-user-config",
    "nouserconfig",
    "uuid",
    "rtc-td-hack",
    "localtime",
    "xen-domid",
    "xen-attach",
    "xen-domid-restrict",
    "enable-fips",
    "old-param",
    "bt",
    "portrait",
    "rotate",
    "alt-grab",
    "ctrl-grab",
    "show-cursor",
    "win2k-hack",
    "no-fd-bootchk",
    "singlestep",
    "one-insn-per-tb",
    "echr",
    "prom-env",
    "incoming-channel",
    "only-migratable",
    "no-frame",
    "tb-size",
    "qtest",
    "qtest-log",
    "machine-help",
    "vga-help",
    "device-help",
    "watchdog",
    "kvm-shadow-memory",
    "smp-help",
];

/// One `-object` property value: from the keyval syntax or from JSON.
#[derive(Debug, Clone, Copy)]
enum Raw<'a> {
    /// `key` without `=`.
    Flag,
    /// `key=text`.
    Text(&'a str),
    /// A JSON member value.
    Json(&'a serde_json::Value),
}

fn prop_err(option: &str, property: &str, problem: impl Into<String>) -> OptionsError {
    OptionsError::InvalidProperty {
        option: option.into(),
        property: property.into(),
        problem: problem.into(),
    }
}

impl Raw<'_> {
    fn string(self, option: &str, key: &str) -> Result<String, OptionsError> {
        match self {
            Raw::Text(t) => Ok(t.to_string()),
            Raw::Json(serde_json::Value::String(s)) => Ok(s.clone()),
            Raw::Flag => Err(prop_err(option, key, "needs a value")),
            Raw::Json(_) => Err(prop_err(option, key, "expected a string")),
        }
    }

    fn non_empty(self, option: &str, key: &str) -> Result<String, OptionsError> {
        let s = self.string(option, key)?;
        if s.is_empty() {
            return Err(prop_err(option, key, "must not be empty"));
        }
        Ok(s)
    }

    fn u32(self, option: &str, key: &str) -> Result<u32, OptionsError> {
        match self {
            Raw::Text(t) => parse_u32(t).map_err(|p| prop_err(option, key, p)),
            Raw::Json(v) => v
                .as_u64()
                .ok_or_else(|| prop_err(option, key, format!("expected an integer, got {v}")))
                .and_then(|n| {
                    u32::try_from(n).map_err(|_| {
                        prop_err(
                            option,
                            key,
                            format!("{n} is out of range for a 32-bit value"),
                        )
                    })
                }),
            Raw::Flag => Err(prop_err(option, key, "needs a value")),
        }
    }

    fn u64(self, option: &str, key: &str) -> Result<u64, OptionsError> {
        match self {
            Raw::Text(t) => parse_u64(t).map_err(|p| prop_err(option, key, p)),
            Raw::Json(v) => v
                .as_u64()
                .ok_or_else(|| prop_err(option, key, format!("expected an integer, got {v}"))),
            Raw::Flag => Err(prop_err(option, key, "needs a value")),
        }
    }

    /// A base64 string property, decoded.
    fn base64(self, option: &str, key: &str) -> Result<Vec<u8>, OptionsError> {
        let text = self.string(option, key)?;
        sevm_qmp::base64::decode(text.as_bytes())
            .map_err(|e| prop_err(option, key, format!("invalid base64: {e}")))
    }

    fn bool(self, option: &str, key: &str) -> Result<bool, OptionsError> {
        match self {
            Raw::Text(t) => parse_bool(t).map_err(|p| prop_err(option, key, p)),
            Raw::Json(serde_json::Value::Bool(b)) => Ok(*b),
            Raw::Json(v) => Err(prop_err(
                option,
                key,
                format!("expected a boolean, got {v}"),
            )),
            Raw::Flag => Err(prop_err(option, key, "needs a value (on or off)")),
        }
    }
}

/// Collects `key[=value]` props into a checked list: duplicates are errors.
fn unique_props(option: &str, props: &[Prop]) -> Result<(), OptionsError> {
    for (i, p) in props.iter().enumerate() {
        if props.iter().take(i).any(|q| q.key == p.key) {
            return Err(OptionsError::DuplicateProperty {
                option: option.into(),
                property: p.key.clone(),
            });
        }
    }
    Ok(())
}

fn props_of(option: &str, arg: &str, implied: Option<&str>) -> Result<Vec<Prop>, OptionsError> {
    let props = parse_props(arg, implied).map_err(|problem| OptionsError::Invalid {
        option: option.into(),
        problem,
    })?;
    unique_props(option, &props)?;
    Ok(props)
}

fn value_of<'a>(option: &str, p: &'a Prop) -> Result<&'a str, OptionsError> {
    p.value
        .as_deref()
        .ok_or_else(|| prop_err(option, &p.key, "needs a value"))
}

/// Parses the arguments after `argv[0]`.
///
/// Returns [`Invocation::Help`]/[`Invocation::Version`] as soon as `-help`
/// or `-version` is seen (as QEMU does). Does not run
/// [`VmConfig::validate`].
pub fn parse_args<I, S>(args: I) -> Result<Invocation, OptionsError>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut args = args.into_iter().map(|a| {
        let os: OsString = a.into();
        os.into_string().map_err(|bad| OptionsError::NotUtf8 {
            arg: bad.to_string_lossy().into_owned(),
        })
    });
    let mut cfg = VmConfig::default();
    while let Some(arg) = args.next() {
        let arg = arg?;
        let name = match arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) {
            Some(n) if !n.is_empty() && !arg.starts_with("---") => n,
            _ => return Err(OptionsError::StrayArgument { arg }),
        };
        let option = format!("-{name}");
        let Some(spec) = table::lookup(name) else {
            if UNSUPPORTED.contains(&name) {
                return Err(OptionsError::Unsupported { option });
            }
            return Err(OptionsError::UnknownOption { option: arg });
        };
        let value = match spec.arg {
            None => String::new(),
            Some(_) => match args.next() {
                Some(v) => v?,
                None => return Err(OptionsError::MissingArgument { option }),
            },
        };
        if let Some(done) = (spec.apply)(&mut cfg, &option, value)? {
            return Ok(done);
        }
    }
    Ok(Invocation::Run(Box::new(cfg)))
}

fn non_empty_path(option: &str, value: &str) -> Result<PathBuf, OptionsError> {
    if value.is_empty() {
        return Err(OptionsError::Invalid {
            option: option.into(),
            problem: "the file name is empty".into(),
        });
    }
    Ok(PathBuf::from(value))
}

fn parse_accel(cfg: &mut VmConfig, option: &str, arg: &str) -> Result<(), OptionsError> {
    let props = props_of(option, arg, Some("accel"))?;
    for p in &props {
        match (p.key.as_str(), p.value.as_deref()) {
            ("accel", Some("kvm")) => cfg.enable_kvm = true,
            ("accel", Some(other)) => {
                return Err(prop_err(
                    option,
                    "accel",
                    format!("accelerator \"{other}\" is not supported by sevm (only kvm)"),
                ))
            }
            _ => {
                return Err(OptionsError::UnknownProperty {
                    option: option.into(),
                    property: p.key.clone(),
                })
            }
        }
    }
    Ok(())
}

fn parse_machine(cfg: &mut VmConfig, option: &str, arg: &str) -> Result<(), OptionsError> {
    let props = props_of(option, arg, Some("type"))?;
    let mut encryption: Option<(String, String)> = None;
    for p in &props {
        let key = p.key.as_str();
        match key {
            "type" => {
                let t = value_of(option, p)?;
                cfg.machine.machine_type = match t {
                    "q35" => MachineType::Q35,
                    "pc" => MachineType::Pc,
                    t if t.starts_with("pc-q35-") => MachineType::Q35,
                    t if t.starts_with("pc-i440fx-") => MachineType::Pc,
                    other => {
                        return Err(prop_err(
                            option,
                            key,
                            format!(
                                "machine type \"{other}\" is not supported by sevm (use q35 or pc)"
                            ),
                        ))
                    }
                };
                cfg.machine.type_name = Some(t.to_string());
            }
            "accel" => match value_of(option, p)? {
                "kvm" => cfg.enable_kvm = true,
                other => {
                    return Err(prop_err(
                        option,
                        key,
                        format!("accelerator \"{other}\" is not supported by sevm (only kvm)"),
                    ))
                }
            },
            "memory-encryption" | "confidential-guest-support" => {
                let id = value_of(option, p)?;
                if id.is_empty() {
                    return Err(prop_err(option, key, "must not be empty"));
                }
                if let Some((other_key, other_id)) = &encryption {
                    if other_id != id {
                        return Err(OptionsError::Conflict {
                            first: format!("{option} {other_key}={other_id}"),
                            second: format!("{key}={id}"),
                            problem: "they are aliases and must name the same object".into(),
                        });
                    }
                }
                encryption = Some((key.to_string(), id.to_string()));
                cfg.machine.memory_encryption = Some(id.to_string());
            }
            _ => {
                return Err(OptionsError::UnknownProperty {
                    option: option.into(),
                    property: p.key.clone(),
                })
            }
        }
    }
    Ok(())
}

fn parse_object(cfg: &mut VmConfig, arg: &str) -> Result<(), OptionsError> {
    let json: serde_json::Value;
    let props: Vec<Prop>;
    let mut items: Vec<(&str, Raw<'_>)> = Vec::new();
    if arg.trim_start().starts_with('{') {
        json = serde_json::from_str(arg).map_err(|e| OptionsError::Invalid {
            option: "-object".into(),
            problem: format!("invalid JSON: {e}"),
        })?;
        let map = json.as_object().ok_or_else(|| OptionsError::Invalid {
            option: "-object".into(),
            problem: "the JSON form must be an object".into(),
        })?;
        items.extend(map.iter().map(|(k, v)| (k.as_str(), Raw::Json(v))));
    } else {
        props = props_of("-object", arg, Some("qom-type"))?;
        items.extend(props.iter().map(|p| {
            (
                p.key.as_str(),
                p.value.as_deref().map_or(Raw::Flag, Raw::Text),
            )
        }));
    }
    let qom_type = match items.iter().find(|(k, _)| *k == "qom-type") {
        Some((_, raw)) => raw.non_empty("-object", "qom-type")?,
        None => {
            return Err(OptionsError::MissingProperty {
                option: "-object".into(),
                property: "qom-type".into(),
            })
        }
    };
    let option = format!("-object {qom_type}");
    let snp = match qom_type.as_str() {
        "sev-guest" => false,
        "sev-snp-guest" => true,
        _ => {
            return Err(OptionsError::Invalid {
                option,
                problem: "unsupported object type (sevm supports sev-guest and sev-snp-guest)"
                    .into(),
            })
        }
    };
    let id = match items.iter().find(|(k, _)| *k == "id") {
        Some((_, raw)) => raw.non_empty(&option, "id")?,
        None => {
            return Err(OptionsError::MissingProperty {
                option,
                property: "id".into(),
            })
        }
    };
    if cfg.sev_guests.iter().any(|g| g.id == id) {
        return Err(prop_err(&option, "id", format!("duplicate id '{id}'")));
    }
    let mut guest = SevGuestConfig::new(id);
    let mut snp_options = snp.then(SnpGuestOptions::default);
    for &(key, raw) in &items {
        let o = option.as_str();
        if let Some(snp) = snp_options.as_mut() {
            match key {
                "handle" | "dh-cert-file" | "session-file" | "legacy-vm-type" => {
                    return Err(OptionsError::UnknownProperty {
                        option,
                        property: key.to_string(),
                    })
                }
                _ if parse_snp_property(snp, o, key, raw)? => continue,
                _ => {}
            }
        }
        match key {
            "qom-type" | "id" => {}
            "policy" => guest.policy = raw.u32(o, key)?,
            "handle" => guest.handle = raw.u32(o, key)?,
            "cbitpos" => guest.cbitpos = Some(raw.u32(o, key)?),
            "reduced-phys-bits" => guest.reduced_phys_bits = Some(raw.u32(o, key)?),
            "kernel-hashes" => guest.kernel_hashes = raw.bool(o, key)?,
            "dh-cert-file" => guest.dh_cert_file = Some(PathBuf::from(raw.non_empty(o, key)?)),
            "session-file" => guest.session_file = Some(PathBuf::from(raw.non_empty(o, key)?)),
            "sev-device" => guest.sev_device = parse_sev_device(o, &raw.non_empty(o, key)?)?,
            "legacy-vm-type" => {
                guest.legacy_vm_type = Some(match raw.string(o, key)?.as_str() {
                    "on" => OnOffAuto::On,
                    // Checked against the platform at start-up (hardware
                    // refuses it).
                    "off" => OnOffAuto::Off,
                    "auto" => OnOffAuto::Auto,
                    other => {
                        return Err(prop_err(
                            o,
                            key,
                            format!("invalid value \"{other}\" (use on, off or auto)"),
                        ))
                    }
                })
            }
            _ => {
                return Err(OptionsError::UnknownProperty {
                    option,
                    property: key.to_string(),
                })
            }
        }
    }
    guest.snp = snp_options;
    cfg.sev_guests.push(guest);
    Ok(())
}

/// Applies one `sev-snp-guest` property of its own, with QEMU's checks and
/// messages; `false` for a property it shares with `sev-guest`.
fn parse_snp_property(
    snp: &mut SnpGuestOptions,
    option: &str,
    key: &str,
    raw: Raw<'_>,
) -> Result<bool, OptionsError> {
    match key {
        "policy" => {
            let bits = raw.u64(option, key)?;
            snp.policy = GuestPolicy::new(bits).map_err(|e| {
                prop_err(
                    option,
                    key,
                    format!("{bits:#x} is not an SNP guest policy: {e}"),
                )
            })?;
        }
        "guest-visible-workarounds" => {
            let bytes = raw.base64(option, key)?;
            snp.gosvw = bytes.as_slice().try_into().map_err(|_| {
                prop_err(
                    option,
                    key,
                    format!("parameter length of {} exceeds max of 16", bytes.len()),
                )
            })?;
        }
        "id-block" => {
            let bytes = raw.base64(option, key)?;
            if bytes.len() != ID_BLOCK_LEN {
                return Err(prop_err(
                    option,
                    key,
                    format!(
                        "parameter length of {} not equal to {ID_BLOCK_LEN}",
                        bytes.len()
                    ),
                ));
            }
            snp.id_block = Some(bytes);
        }
        "id-auth" => {
            let bytes = raw.base64(option, key)?;
            if bytes.len() > ID_AUTH_LEN {
                return Err(prop_err(
                    option,
                    key,
                    format!(
                        "parameter length:ID_AUTH {} exceeds max of {ID_AUTH_LEN}",
                        bytes.len()
                    ),
                ));
            }
            snp.id_auth = Some(bytes);
        }
        "author-key-enabled" => snp.author_key_enabled = raw.bool(option, key)?,
        // sevm's own (QEMU has none): docs/snp.md#certificates-for-extended-requests.
        "x-sevm-certs" => {
            snp.certs = match raw.non_empty(option, key)?.as_str() {
                "none" => SnpCertSource::None,
                "platform" => SnpCertSource::Platform,
                path => SnpCertSource::Path(PathBuf::from(path)),
            }
        }
        "host-data" => {
            let bytes = raw.base64(option, key)?;
            snp.host_data = bytes.as_slice().try_into().map_err(|_| {
                prop_err(
                    option,
                    key,
                    format!("parameter length of {} not equal to 32", bytes.len()),
                )
            })?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn parse_sev_device(option: &str, value: &str) -> Result<SevDevice, OptionsError> {
    match value.strip_prefix(EMULATED_PREFIX) {
        Some("") => Err(prop_err(
            option,
            "sev-device",
            "emulated: needs a platform state directory (sev-device=emulated:DIR)",
        )),
        Some(dir) => Ok(SevDevice::Emulated {
            state_dir: PathBuf::from(dir),
        }),
        None if value == "emulated" => Err(prop_err(
            option,
            "sev-device",
            "the emulated platform is spelled emulated:DIR (a platform state directory)",
        )),
        None => Ok(SevDevice::Hardware(PathBuf::from(value))),
    }
}

fn parse_memory(option: &str, arg: &str) -> Result<u64, OptionsError> {
    let props = props_of(option, arg, Some("size"))?;
    let mut size = None;
    for p in &props {
        match p.key.as_str() {
            "size" => {
                let v = value_of(option, p)?;
                size = Some(parse_size(v, 1 << 20).map_err(|e| prop_err(option, "size", e))?);
            }
            "slots" | "maxmem" => {
                return Err(prop_err(
                    option,
                    &p.key,
                    "memory hotplug is not supported by sevm",
                ))
            }
            _ => {
                return Err(OptionsError::UnknownProperty {
                    option: option.into(),
                    property: p.key.clone(),
                })
            }
        }
    }
    let size = size.ok_or_else(|| OptionsError::MissingProperty {
        option: option.into(),
        property: "size".into(),
    })?;
    if size == 0 {
        return Err(prop_err(option, "size", "RAM size must not be zero"));
    }
    // QEMU rounds the RAM size up to 8 KiB.
    size.checked_next_multiple_of(8192)
        .ok_or_else(|| prop_err(option, "size", "RAM size is too large"))
}

fn parse_smp(option: &str, arg: &str) -> Result<u32, OptionsError> {
    let props = props_of(option, arg, Some("cpus"))?;
    let mut cpus = None;
    let mut maxcpus = None;
    let mut topology: Option<u64> = None;
    for p in &props {
        let key = p.key.as_str();
        let n = || -> Result<u32, OptionsError> {
            parse_u32(value_of(option, p)?).map_err(|e| prop_err(option, key, e))
        };
        match key {
            "cpus" => cpus = Some(n()?),
            "maxcpus" => maxcpus = Some(n()?),
            "sockets" | "cores" | "threads" => {
                let v = n()?;
                if v == 0 {
                    return Err(prop_err(option, key, "must be at least 1"));
                }
                topology = Some(topology.unwrap_or(1).saturating_mul(u64::from(v)));
            }
            "dies" | "clusters" | "books" | "drawers" | "modules" => {
                if n()? != 1 {
                    return Err(prop_err(option, key, "sevm supports only 1"));
                }
            }
            _ => {
                return Err(OptionsError::UnknownProperty {
                    option: option.into(),
                    property: p.key.clone(),
                })
            }
        }
    }
    let cpus = match (cpus, topology) {
        (Some(c), None) => c,
        (Some(c), Some(t)) if u64::from(c) == t => c,
        (Some(c), Some(t)) => {
            return Err(OptionsError::Invalid {
                option: option.into(),
                problem: format!(
                    "cpus={c} does not match the topology (sockets*cores*threads = {t})"
                ),
            })
        }
        (None, Some(t)) => u32::try_from(t).map_err(|_| OptionsError::Invalid {
            option: option.into(),
            problem: format!("topology gives {t} CPUs, too many"),
        })?,
        (None, None) => {
            return Err(OptionsError::MissingProperty {
                option: option.into(),
                property: "cpus".into(),
            })
        }
    };
    if cpus == 0 || cpus > MAX_CPUS {
        return Err(prop_err(
            option,
            "cpus",
            format!("{cpus} is out of range (1..={MAX_CPUS})"),
        ));
    }
    if let Some(m) = maxcpus {
        if m != cpus {
            return Err(prop_err(
                option,
                "maxcpus",
                "CPU hotplug is not supported by sevm (maxcpus must equal cpus)",
            ));
        }
    }
    Ok(cpus)
}

fn parse_drive(cfg: &mut VmConfig, arg: &str) -> Result<(), OptionsError> {
    let option = "-drive";
    let props = props_of(option, arg, None)?;
    let mut interface = None;
    let mut unit = None;
    let mut file = None;
    let mut readonly = false;
    for p in &props {
        let key = p.key.as_str();
        match key {
            "if" => interface = Some(value_of(option, p)?),
            "format" => {
                let f = value_of(option, p)?;
                if f != "raw" {
                    return Err(prop_err(
                        option,
                        key,
                        format!("format \"{f}\" is not supported by sevm (only raw)"),
                    ));
                }
            }
            "unit" => {
                let u = parse_u32(value_of(option, p)?).map_err(|e| prop_err(option, key, e))?;
                if u > 1 {
                    return Err(prop_err(
                        option,
                        key,
                        format!("pflash unit {u} does not exist (0: code, 1: variables)"),
                    ));
                }
                unit = Some(u);
            }
            "file" => {
                let f = value_of(option, p)?;
                if f.is_empty() {
                    return Err(prop_err(option, key, "the file name is empty"));
                }
                file = Some(PathBuf::from(f));
            }
            "readonly" => {
                readonly = flag_or_bool(p.value.as_deref()).map_err(|e| prop_err(option, key, e))?
            }
            _ => {
                return Err(OptionsError::UnknownProperty {
                    option: option.into(),
                    property: p.key.clone(),
                })
            }
        }
    }
    match interface {
        Some("pflash") => {}
        Some(other) => {
            return Err(prop_err(
                option,
                "if",
                format!("interface \"{other}\" is not supported by sevm (only pflash)"),
            ))
        }
        None => {
            return Err(OptionsError::MissingProperty {
                option: option.into(),
                property: "if".into(),
            })
        }
    }
    let file = file.ok_or_else(|| OptionsError::MissingProperty {
        option: option.into(),
        property: "file".into(),
    })?;
    // As QEMU: without unit=, the next free unit of the interface.
    let unit = match unit {
        Some(u) => u,
        None => (0..=1)
            .find(|u| !cfg.pflash.iter().any(|d| d.unit == *u))
            .ok_or_else(|| OptionsError::Invalid {
                option: option.into(),
                problem: "both pflash units (0 and 1) are already in use".into(),
            })?,
    };
    if cfg.pflash.iter().any(|d| d.unit == unit) {
        return Err(prop_err(
            option,
            "unit",
            format!("pflash unit {unit} is given more than once"),
        ));
    }
    cfg.pflash.push(PflashDrive {
        unit,
        file,
        readonly,
    });
    Ok(())
}

fn parse_qmp(option: &str, arg: &str) -> Result<QmpSocketConfig, OptionsError> {
    let Some(rest) = arg.strip_prefix("unix:") else {
        let backend = arg.split([':', ',']).next().unwrap_or(arg);
        let problem = if backend == "tcp" {
            "TCP sockets are not supported by sevm (use unix:PATH,server=on,wait=off)".to_string()
        } else {
            format!(
                "character device \"{backend}\" is not supported by sevm (use unix:PATH,server=on,wait=off)"
            )
        };
        return Err(OptionsError::Invalid {
            option: option.into(),
            problem,
        });
    };
    if rest.is_empty() || (rest.starts_with(',') && !rest.starts_with(",,")) {
        return Err(OptionsError::Invalid {
            option: option.into(),
            problem: "unix: needs a socket path".into(),
        });
    }
    let props = parse_props(rest, Some("path")).map_err(|problem| OptionsError::Invalid {
        option: option.into(),
        problem,
    })?;
    unique_props(option, &props)?;
    let mut path = None;
    let mut server = false;
    let mut wait = None;
    for p in &props {
        let key = p.key.as_str();
        match key {
            "path" => path = p.value.clone(),
            "server" => {
                server = flag_or_bool(p.value.as_deref()).map_err(|e| prop_err(option, key, e))?
            }
            "wait" => {
                wait = Some(flag_or_bool(p.value.as_deref()).map_err(|e| prop_err(option, key, e))?)
            }
            "nowait" if p.value.is_none() => wait = Some(false),
            "noserver" if p.value.is_none() => server = false,
            _ => {
                return Err(OptionsError::UnknownProperty {
                    option: option.into(),
                    property: p.key.clone(),
                })
            }
        }
    }
    let path = match path {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            return Err(OptionsError::Invalid {
                option: option.into(),
                problem: "unix: needs a socket path".into(),
            })
        }
    };
    if !server {
        return Err(OptionsError::Invalid {
            option: option.into(),
            problem: "client mode is not supported by sevm (add server=on,wait=off)".into(),
        });
    }
    Ok(QmpSocketConfig {
        path,
        // QEMU: a listening socket waits for a client unless wait=off.
        wait: wait.unwrap_or(true),
    })
}

fn parse_serial(option: &str, arg: &str) -> Result<SerialConfig, OptionsError> {
    match arg {
        "stdio" => Ok(SerialConfig::Stdio),
        "none" => Ok(SerialConfig::None),
        "null" => Ok(SerialConfig::Null),
        _ => match arg.strip_prefix("file:") {
            Some("") => Err(OptionsError::Invalid {
                option: option.into(),
                problem: "file: needs a path".into(),
            }),
            Some(path) => Ok(SerialConfig::File(PathBuf::from(path))),
            None => Err(OptionsError::Invalid {
                option: option.into(),
                problem: format!(
                    "\"{arg}\" is not supported by sevm (use stdio, file:PATH, null or none)"
                ),
            }),
        },
    }
}

fn parse_name(cfg: &mut VmConfig, option: &str, arg: &str) -> Result<(), OptionsError> {
    let props = props_of(option, arg, Some("guest"))?;
    for p in &props {
        let key = p.key.as_str();
        match key {
            "guest" => cfg.name = Some(value_of(option, p)?.to_string()),
            "debug-threads" => {
                cfg.debug_threads =
                    flag_or_bool(p.value.as_deref()).map_err(|e| prop_err(option, key, e))?
            }
            _ => {
                return Err(OptionsError::UnknownProperty {
                    option: option.into(),
                    property: p.key.clone(),
                })
            }
        }
    }
    Ok(())
}

/// `HOST:PORT` of an option, the problem named with the option.
fn split_host_port<'a>(option: &str, s: &'a str) -> Result<(&'a str, u16), OptionsError> {
    crate::config::split_host_port(s).map_err(|problem| OptionsError::Invalid {
        option: option.into(),
        problem,
    })
}

fn parse_gdb(option: &str, arg: &str) -> Result<Option<GdbConfig>, OptionsError> {
    if arg == "none" {
        return Ok(None);
    }
    // QEMU: a bare port number means tcp::PORT.
    if !arg.is_empty() && arg.chars().all(|c| c.is_ascii_digit()) {
        return Ok(Some(GdbConfig {
            host: None,
            port: crate::config::parse_port(arg).map_err(|problem| OptionsError::Invalid {
                option: option.into(),
                problem,
            })?,
        }));
    }
    let Some(addr) = arg.strip_prefix("tcp:") else {
        return Err(OptionsError::Invalid {
            option: option.into(),
            problem: format!("\"{arg}\" is not supported by sevm (use tcp::PORT or tcp:HOST:PORT)"),
        });
    };
    let (host, port) = split_host_port(option, addr)?;
    Ok(Some(GdbConfig {
        host: (!host.is_empty()).then(|| host.to_string()),
        port,
    }))
}

/// `-incoming` (and QMP `migrate-incoming`, as `option`): the URI is the
/// migration's to parse; its problems are named with `option`.
pub(crate) fn parse_incoming(option: &str, arg: &str) -> Result<IncomingConfig, OptionsError> {
    crate::migration::endpoint::parse_incoming(arg).map_err(|e| match e.property {
        Some(property) => prop_err(option, property, e.problem),
        None => OptionsError::Invalid {
            option: option.into(),
            problem: e.problem,
        },
    })
}

/// The CPU models `-cpu` accepts: QEMU's EPYC family, `host`, `qemu64` and
/// `max`.
const CPU_MODELS: &str = "host, max, qemu64, EPYC, EPYC-v1..EPYC-v4, EPYC-Rome[-v1..v5], \
                          EPYC-Milan[-v1..v3], EPYC-Genoa[-v1..v2], EPYC-Turin[-v1], EPYC-IBPB";

/// Whether `model` is one of [`CPU_MODELS`]: `host`, `max`, `qemu64`, or
/// a name (exactly as QEMU spells it) of the vCPU-model table that gives
/// SEV-ES guests their CPU signature (`sev_proto::vmsa::VCPU_MODELS`).
fn known_cpu_model(model: &str) -> bool {
    matches!(model, "host" | "max" | "qemu64")
        || sev_proto::vmsa::VCPU_MODELS.iter().any(|m| m.name == model)
}

fn parse_cpu(option: &str, arg: &str) -> Result<CpuConfig, OptionsError> {
    let mut parts = arg.split(',');
    let model = parts.next().unwrap_or_default();
    if !known_cpu_model(model) {
        return Err(OptionsError::Invalid {
            option: option.into(),
            problem: format!(
                "CPU model \"{model}\" is not supported by sevm (use one of: {CPU_MODELS})"
            ),
        });
    }
    let features: Vec<String> = parts.map(str::to_string).collect();
    if features.iter().any(String::is_empty) {
        return Err(OptionsError::Invalid {
            option: option.into(),
            problem: "empty CPU feature".into(),
        });
    }
    Ok(CpuConfig {
        model: model.to_string(),
        features,
    })
}

#[cfg(test)]
mod tests;
