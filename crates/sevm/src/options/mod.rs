//! sevm's QEMU-compatible command line: argv → a typed [`VmConfig`].
//!
//! Parsing has no side effects and reads no files: paths are stored, not
//! opened. Every error names the option (and property) and what is wrong,
//! e.g. `-object sev-guest: policy: invalid number "0xzz"`.
//!
//! # Accepted options (QEMU spelling and meaning; `-opt` and `--opt` alike)
//!
//! | option | meaning |
//! |---|---|
//! | `-machine`/`-M [type=]q35\|pc[,accel=kvm][,memory-encryption=ID][,confidential-guest-support=ID]` | machine; `pc-q35-*`/`pc-i440fx-*` versions accepted |
//! | `-object sev-guest,id=ID[,policy=N][,handle=N][,dh-cert-file=F][,session-file=F][,cbitpos=N][,reduced-phys-bits=N][,kernel-hashes=on\|off][,sev-device=PATH\|emulated:DIR][,legacy-vm-type=on\|off\|auto]` | SEV guest (also QEMU's JSON form `-object '{"qom-type":"sev-guest",...}'`) |
//! | `-m [size=]SIZE` | RAM; plain number = MiB, suffixes B/K/M/G/T |
//! | `-smp [cpus=]N[,maxcpus=N][,sockets=N][,cores=N][,threads=N]` | vCPUs |
//! | `-bios FILE`, `-drive if=pflash,format=raw,unit=0\|1,file=F[,readonly=on]` | firmware |
//! | `-kernel F`, `-initrd F`, `-append CMDLINE` | direct kernel boot (measured with `kernel-hashes=on`) |
//! | `-S` | start paused (SEV: wait in launch-secret state) |
//! | `-qmp unix:PATH,server=on,wait=off` (also `server,nowait`) | QMP socket |
//! | `-serial stdio\|file:PATH\|null\|none` | COM1 |
//! | `-nographic`, `-display none` | no display (sevm never has one) |
//! | `-name [guest=]NAME[,debug-threads=on\|off]` | VM name |
//! | `-no-reboot` | guest reset ends the VM |
//! | `-gdb tcp::PORT`/`tcp:HOST:PORT`, `-s` | GDB stub (`gdb` module) |
//! | `-incoming file:PATH[,offset=N]\|tcp:HOST:PORT\|unix:PATH\|defer` | migration target (`defer`: wait for QMP `migrate-incoming`) |
//! | `-enable-kvm`, `-accel kvm` | KVM (the only accelerator) |
//! | `-cpu host\|EPYC*[,features]` | CPU model |
//! | `-nodefaults` | no default devices (no default serial port) |
//! | `-h`/`-help`, `-version` | usage, version |
//!
//! Known QEMU options that sevm does not implement (`-device`, `-netdev`,
//! `-vnc`, `-monitor`, `-hda`, `-cdrom`, ...) are rejected with
//! "QEMU option -X is not supported by sevm"; anything else with
//! "unknown option".
//!
//! As in QEMU, a repeated single-valued option (`-m`, `-kernel`, `-name`,
//! ...) takes its last value; `-object`, `-drive` and `-qmp` accumulate.
//!
//! # The emulated platform
//!
//! `sev-device=emulated:<state-dir>` selects sevm's emulated AMD Secure
//! Processor with its persistent identity in `<state-dir>`. It is never
//! chosen implicitly: without it, `sev-device` is a device path (QEMU's
//! default `/dev/sev`), and a missing device is an error at launch, not a
//! reason to fall back to the emulator.

mod keyval;

use std::ffi::OsString;
use std::path::PathBuf;

use keyval::{flag_or_bool, parse_bool, parse_props, parse_size, parse_u32, parse_u64, Prop};

use crate::config::{
    CpuConfig, GdbConfig, IncomingConfig, MachineType, OnOffAuto, OptionsError, PflashDrive,
    QmpSocketConfig, SerialConfig, SevDevice, SevGuestConfig, VmConfig, DEFAULT_GDB_PORT,
    EMULATED_PREFIX, MAX_CPUS,
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

/// The usage text for `-help`.
pub fn usage() -> &'static str {
    "usage: sevm [options]\n\
     \n\
     QEMU-compatible options:\n\
     \x20 -machine [type=]q35|pc[,accel=kvm][,memory-encryption=ID]\n\
     \x20 -object sev-guest,id=ID[,policy=N][,handle=N][,dh-cert-file=F][,session-file=F]\n\
     \x20         [,cbitpos=N][,reduced-phys-bits=N][,kernel-hashes=on|off]\n\
     \x20         [,sev-device=/dev/sev|emulated:STATE-DIR]\n\
     \x20 -m SIZE            RAM (MiB, or with suffix K/M/G)\n\
     \x20 -smp N             vCPUs\n\
     \x20 -bios FILE | -drive if=pflash,format=raw,unit=0,file=FILE[,readonly=on]\n\
     \x20 -kernel FILE [-initrd FILE] [-append CMDLINE]\n\
     \x20 -S                 start paused (inject secrets over QMP, then 'cont')\n\
     \x20 -qmp unix:PATH,server=on,wait=off\n\
     \x20 -serial stdio|file:PATH|null|none\n\
     \x20 -nographic | -display none\n\
     \x20 -name NAME  -no-reboot  -nodefaults  -enable-kvm  -cpu host|EPYC*\n\
     \x20 -gdb tcp::PORT | -s\n\
     \x20 -incoming file:PATH|tcp:HOST:PORT|unix:PATH|defer\n\
     \x20 -h | -help  -version\n\
     \n\
     sevm's own:\n\
     \x20 -write-demo-guest FILE   write the bundled demo guest firmware (2 MiB) and exit\n"
}

/// How an option is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Supported, takes an argument.
    Arg,
    /// Supported, takes no argument.
    Flag,
}

/// sevm's options (QEMU names without the dash).
fn lookup(name: &str) -> Option<Kind> {
    Some(match name {
        "machine" | "M" | "object" | "m" | "smp" | "bios" | "drive" | "kernel" | "initrd"
        | "append" | "qmp" | "serial" | "name" | "gdb" | "incoming" | "display" | "accel"
        | "cpu" | "write-demo-guest" => Kind::Arg,
        "S" | "nographic" | "no-reboot" | "s" | "enable-kvm" | "nodefaults" | "h" | "help"
        | "version" => Kind::Flag,
        _ => return None,
    })
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
        let kind = match lookup(name) {
            Some(k) => k,
            None if UNSUPPORTED.contains(&name) => {
                return Err(OptionsError::Unsupported { option })
            }
            None => return Err(OptionsError::UnknownOption { option: arg }),
        };
        let value = match kind {
            Kind::Flag => String::new(),
            Kind::Arg => match args.next() {
                Some(v) => v?,
                None => return Err(OptionsError::MissingArgument { option }),
            },
        };
        match name {
            "h" | "help" => return Ok(Invocation::Help),
            "version" => return Ok(Invocation::Version),
            "write-demo-guest" => {
                return Ok(Invocation::WriteDemoGuest(non_empty_path(&option, &value)?))
            }
            "machine" | "M" => parse_machine(&mut cfg, &option, &value)?,
            "object" => parse_object(&mut cfg, &value)?,
            "m" => cfg.memory = parse_memory(&option, &value)?,
            "smp" => cfg.cpus = parse_smp(&option, &value)?,
            "bios" => cfg.bios = Some(non_empty_path(&option, &value)?),
            "drive" => parse_drive(&mut cfg, &value)?,
            "kernel" => cfg.kernel = Some(non_empty_path(&option, &value)?),
            "initrd" => cfg.initrd = Some(non_empty_path(&option, &value)?),
            "append" => cfg.append = Some(value),
            "S" => cfg.start_paused = true,
            "qmp" => cfg.qmp.push(parse_qmp(&option, &value)?),
            "serial" => {
                if cfg.serial.is_some() {
                    return Err(OptionsError::Invalid {
                        option,
                        problem: "sevm has one serial port; -serial may be given once".into(),
                    });
                }
                cfg.serial = Some(parse_serial(&option, &value)?);
            }
            "nographic" => cfg.nographic = true,
            "display" => {
                if value != "none" {
                    return Err(OptionsError::Invalid {
                        option,
                        problem: format!(
                            "display \"{value}\" is not supported by sevm (only \"none\")"
                        ),
                    });
                }
                cfg.display_none = true;
            }
            "name" => parse_name(&mut cfg, &option, &value)?,
            "no-reboot" => cfg.no_reboot = true,
            "gdb" => cfg.gdb = parse_gdb(&option, &value)?,
            "s" => {
                cfg.gdb = Some(GdbConfig {
                    host: None,
                    port: DEFAULT_GDB_PORT,
                })
            }
            "incoming" => cfg.incoming = Some(parse_incoming(&option, &value)?),
            "enable-kvm" => cfg.enable_kvm = true,
            "accel" => {
                let props = props_of(&option, &value, Some("accel"))?;
                for p in &props {
                    match (p.key.as_str(), p.value.as_deref()) {
                        ("accel", Some("kvm")) => cfg.enable_kvm = true,
                        ("accel", Some(other)) => {
                            return Err(prop_err(
                                &option,
                                "accel",
                                format!(
                                    "accelerator \"{other}\" is not supported by sevm (only kvm)"
                                ),
                            ))
                        }
                        _ => {
                            return Err(OptionsError::UnknownProperty {
                                option,
                                property: p.key.clone(),
                            })
                        }
                    }
                }
            }
            "cpu" => cfg.cpu = Some(parse_cpu(&option, &value)?),
            "nodefaults" => cfg.nodefaults = true,
            _ => return Err(OptionsError::UnknownOption { option: arg }),
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
    match qom_type.as_str() {
        "sev-guest" => {}
        "sev-snp-guest" => {
            return Err(OptionsError::Invalid {
                option,
                problem: "SEV-SNP is not supported by sevm (use sev-guest)".into(),
            })
        }
        _ => {
            return Err(OptionsError::Invalid {
                option,
                problem: "unsupported object type (sevm supports only sev-guest)".into(),
            })
        }
    }
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
    for &(key, raw) in &items {
        let o = option.as_str();
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
    cfg.sev_guests.push(guest);
    Ok(())
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

fn parse_port(option: &str, s: &str) -> Result<u16, OptionsError> {
    let invalid = || OptionsError::Invalid {
        option: option.into(),
        problem: format!("invalid port \"{s}\""),
    };
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
        return Err(invalid());
    }
    s.parse::<u16>().map_err(|_| invalid())
}

/// Splits `HOST:PORT` where HOST may be empty or a bracketed IPv6 address.
fn split_host_port<'a>(option: &str, s: &'a str) -> Result<(&'a str, u16), OptionsError> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| OptionsError::Invalid {
            option: option.into(),
            problem: format!("unterminated '[' in \"{s}\""),
        })?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| OptionsError::Invalid {
                option: option.into(),
                problem: format!("missing port in \"{s}\""),
            })?;
        (h, port)
    } else {
        s.rsplit_once(':').ok_or_else(|| OptionsError::Invalid {
            option: option.into(),
            problem: format!("expected HOST:PORT, got \"{s}\""),
        })?
    };
    Ok((host, parse_port(option, port)?))
}

fn parse_gdb(option: &str, arg: &str) -> Result<Option<GdbConfig>, OptionsError> {
    if arg == "none" {
        return Ok(None);
    }
    // QEMU: a bare port number means tcp::PORT.
    if !arg.is_empty() && arg.chars().all(|c| c.is_ascii_digit()) {
        return Ok(Some(GdbConfig {
            host: None,
            port: parse_port(option, arg)?,
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

pub(crate) fn parse_incoming(option: &str, arg: &str) -> Result<IncomingConfig, OptionsError> {
    if arg == "defer" {
        return Ok(IncomingConfig::Defer);
    }
    let (scheme, rest) = arg.split_once(':').ok_or_else(|| OptionsError::Invalid {
        option: option.into(),
        problem: format!("\"{arg}\" is not a migration URI (file:, tcp:, unix: or defer)"),
    })?;
    match scheme {
        "file" => {
            let (path, offset) = match rest.rsplit_once(",offset=") {
                Some((path, off)) => (
                    path,
                    parse_u64(off).map_err(|e| prop_err(option, "offset", e))?,
                ),
                None => (rest, 0),
            };
            if path.is_empty() {
                return Err(OptionsError::Invalid {
                    option: option.into(),
                    problem: "file: needs a path".into(),
                });
            }
            Ok(IncomingConfig::File {
                path: PathBuf::from(path),
                offset,
            })
        }
        "tcp" => {
            let (host, port) = split_host_port(option, rest)?;
            Ok(IncomingConfig::Tcp {
                host: host.to_string(),
                port,
            })
        }
        "unix" => {
            if rest.is_empty() {
                return Err(OptionsError::Invalid {
                    option: option.into(),
                    problem: "unix: needs a path".into(),
                });
            }
            Ok(IncomingConfig::Unix(PathBuf::from(rest)))
        }
        other => Err(OptionsError::Invalid {
            option: option.into(),
            problem: format!(
                "migration transport \"{other}:\" is not supported by sevm (file:, tcp:, unix: or defer)"
            ),
        }),
    }
}

fn parse_cpu(option: &str, arg: &str) -> Result<CpuConfig, OptionsError> {
    let mut parts = arg.split(',');
    let model = parts.next().unwrap_or_default();
    if model != "host" && !model.starts_with("EPYC") {
        return Err(OptionsError::Invalid {
            option: option.into(),
            problem: format!(
                "CPU model \"{model}\" is not supported by sevm (use host or an EPYC model)"
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
