//! The one table of sevm's command-line options: each option's names, its
//! argument, its help text and what it does. The parser looks options up
//! here, and the `-help` usage and `docs/sevm-options.md` are generated
//! from it.

use super::{
    non_empty_path, parse_accel, parse_cpu, parse_drive, parse_gdb, parse_incoming, parse_machine,
    parse_memory, parse_name, parse_object, parse_qmp, parse_serial, parse_smp, Invocation,
};
use crate::config::{GdbConfig, OptionsError, VmConfig, DEFAULT_GDB_PORT};

/// What an option does with its argument (empty for a flag): it updates the
/// configuration, or ends parsing with another [`Invocation`].
pub(super) type Apply = fn(&mut VmConfig, &str, String) -> Result<Option<Invocation>, OptionsError>;

/// Where an option comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// A QEMU option, with QEMU's spelling and meaning.
    Qemu,
    /// sevm's own.
    Sevm,
}

/// One command-line option.
pub(super) struct OptionSpec {
    /// Its names without the dash; the first is the one the help shows first.
    pub names: &'static [&'static str],
    /// The argument's syntax, or `None` for a flag.
    pub arg: Option<&'static str>,
    /// What it does (Markdown: `code` spans).
    pub help: &'static str,
    /// QEMU's or sevm's own.
    pub origin: Origin,
    /// Its effect.
    pub apply: Apply,
}

impl std::fmt::Debug for OptionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptionSpec")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// Every option sevm accepts, in the order the help lists them.
pub(super) static OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        names: &["machine", "M"],
        arg: Some(
            "[type=]q35|pc[,accel=kvm][,memory-encryption=ID][,confidential-guest-support=ID]",
        ),
        help: "machine; `pc-q35-*`/`pc-i440fx-*` versions accepted",
        origin: Origin::Qemu,
        apply: |cfg, option, value| parse_machine(cfg, option, &value).map(|()| None),
    },
    OptionSpec {
        names: &["object"],
        arg: Some(
            "sev-guest,id=ID[,policy=N][,handle=N][,dh-cert-file=F][,session-file=F][,cbitpos=N]\
             [,reduced-phys-bits=N][,kernel-hashes=on|off][,sev-device=PATH|emulated:DIR]\
             [,legacy-vm-type=on|off|auto] | sev-snp-guest,id=ID[,policy=N]\
             [,guest-visible-workarounds=B64][,id-block=B64][,id-auth=B64]\
             [,author-key-enabled=on|off][,host-data=B64][,cbitpos=N][,reduced-phys-bits=N]\
             [,kernel-hashes=on|off][,sev-device=PATH|emulated:DIR]\
             [,x-sevm-certs=none|platform|PATH]",
        ),
        help: "SEV guest (also QEMU's JSON form `-object '{\"qom-type\":\"sev-guest\",...}'`); \
               `legacy-vm-type=off` (KVM_SEV_INIT2: SEV-ES VMSAs with the reset FPU state) \
               only on the emulated platform: on hardware sevm has the legacy KVM_SEV_INIT \
               path only. SEV-SNP guest: `sev-snp-guest` (policy default 0x30000; \
               guest-visible-workarounds 16 bytes, id-block 96 bytes, id-auth at most 4096 \
               bytes, host-data 32 bytes, all base64), launched from the firmware's SEV \
               metadata; sevm's `x-sevm-certs` (emulated device only) gives extended guest \
               requests a certificate table: `platform` (the emulated ARK, ASK and VCEK), a \
               table file or a directory of ark/ask/vcek .der/.pem, default `none` (empty)",
        origin: Origin::Qemu,
        apply: |cfg, _, value| parse_object(cfg, &value).map(|()| None),
    },
    OptionSpec {
        names: &["m"],
        arg: Some("[size=]SIZE"),
        help: "RAM; plain number = MiB, suffixes B/K/M/G/T",
        origin: Origin::Qemu,
        apply: |cfg, option, value| {
            cfg.memory = parse_memory(option, &value)?;
            Ok(None)
        },
    },
    OptionSpec {
        names: &["smp"],
        arg: Some("[cpus=]N[,maxcpus=N][,sockets=N][,cores=N][,threads=N]"),
        help: "vCPUs",
        origin: Origin::Qemu,
        apply: |cfg, option, value| {
            cfg.cpus = parse_smp(option, &value)?;
            Ok(None)
        },
    },
    OptionSpec {
        names: &["bios"],
        arg: Some("FILE"),
        help: "firmware image",
        origin: Origin::Qemu,
        apply: |cfg, option, value| {
            cfg.bios = Some(non_empty_path(option, &value)?);
            Ok(None)
        },
    },
    OptionSpec {
        names: &["drive"],
        arg: Some("if=pflash,format=raw,unit=0|1,file=F[,readonly=on]"),
        help: "firmware image (unit 0) and variable store (unit 1)",
        origin: Origin::Qemu,
        apply: |cfg, _, value| parse_drive(cfg, &value).map(|()| None),
    },
    OptionSpec {
        names: &["kernel"],
        arg: Some("FILE"),
        help: "kernel, measured with `kernel-hashes=on` (sevm does not boot it)",
        origin: Origin::Qemu,
        apply: |cfg, option, value| {
            cfg.kernel = Some(non_empty_path(option, &value)?);
            Ok(None)
        },
    },
    OptionSpec {
        names: &["initrd"],
        arg: Some("FILE"),
        help: "initrd (with `-kernel`)",
        origin: Origin::Qemu,
        apply: |cfg, option, value| {
            cfg.initrd = Some(non_empty_path(option, &value)?);
            Ok(None)
        },
    },
    OptionSpec {
        names: &["append"],
        arg: Some("CMDLINE"),
        help: "kernel command line (with `-kernel`)",
        origin: Origin::Qemu,
        apply: |cfg, _, value| {
            cfg.append = Some(value);
            Ok(None)
        },
    },
    OptionSpec {
        names: &["S"],
        arg: None,
        help: "start paused (SEV: inject secrets over QMP, then `cont`)",
        origin: Origin::Qemu,
        apply: |cfg, _, _| {
            cfg.start_paused = true;
            Ok(None)
        },
    },
    OptionSpec {
        names: &["qmp"],
        arg: Some("unix:PATH,server=on,wait=off"),
        help: "QMP socket (also `server,nowait`)",
        origin: Origin::Qemu,
        apply: |cfg, option, value| {
            cfg.qmp.push(parse_qmp(option, &value)?);
            Ok(None)
        },
    },
    OptionSpec {
        names: &["serial"],
        arg: Some("stdio|file:PATH|null|none"),
        help: "COM1 (given once)",
        origin: Origin::Qemu,
        apply: |cfg, option, value| {
            if cfg.serial.is_some() {
                return Err(OptionsError::Invalid {
                    option: option.into(),
                    problem: "sevm has one serial port; -serial may be given once".into(),
                });
            }
            cfg.serial = Some(parse_serial(option, &value)?);
            Ok(None)
        },
    },
    OptionSpec {
        names: &["nographic"],
        arg: None,
        help: "no display (sevm never has one)",
        origin: Origin::Qemu,
        apply: |cfg, _, _| {
            cfg.nographic = true;
            Ok(None)
        },
    },
    OptionSpec {
        names: &["display"],
        arg: Some("none"),
        help: "no display (the only kind sevm has)",
        origin: Origin::Qemu,
        apply: |cfg, option, value| {
            if value != "none" {
                return Err(OptionsError::Invalid {
                    option: option.into(),
                    problem: format!(
                        "display \"{value}\" is not supported by sevm (only \"none\")"
                    ),
                });
            }
            cfg.display_none = true;
            Ok(None)
        },
    },
    OptionSpec {
        names: &["name"],
        arg: Some("[guest=]NAME[,debug-threads=on|off]"),
        help: "VM name; `debug-threads=on` names the vCPU threads `CPU n/KVM` as QEMU does",
        origin: Origin::Qemu,
        apply: |cfg, option, value| parse_name(cfg, option, &value).map(|()| None),
    },
    OptionSpec {
        names: &["no-reboot"],
        arg: None,
        help: "exit instead of rebooting: what sevm always does (a guest reset ends the VM)",
        origin: Origin::Qemu,
        apply: |cfg, _, _| {
            cfg.no_reboot = true;
            Ok(None)
        },
    },
    OptionSpec {
        names: &["gdb"],
        arg: Some("tcp::PORT|tcp:HOST:PORT|PORT|none"),
        help: "GDB stub",
        origin: Origin::Qemu,
        apply: |cfg, option, value| {
            cfg.gdb = parse_gdb(option, &value)?;
            Ok(None)
        },
    },
    OptionSpec {
        names: &["s"],
        arg: None,
        help: "GDB stub on TCP port 1234 (`-gdb tcp::1234`)",
        origin: Origin::Qemu,
        apply: |cfg, _, _| {
            cfg.gdb = Some(GdbConfig {
                host: None,
                port: DEFAULT_GDB_PORT,
            });
            Ok(None)
        },
    },
    OptionSpec {
        names: &["incoming"],
        arg: Some("file:PATH[,offset=N]|tcp:HOST:PORT|unix:PATH|defer"),
        help: "migration target (`defer`: wait for QMP `migrate-incoming`)",
        origin: Origin::Qemu,
        apply: |cfg, option, value| {
            cfg.incoming = Some(parse_incoming(option, &value)?);
            Ok(None)
        },
    },
    OptionSpec {
        names: &["enable-kvm"],
        arg: None,
        help: "KVM (the only accelerator)",
        origin: Origin::Qemu,
        apply: |cfg, _, _| {
            cfg.enable_kvm = true;
            Ok(None)
        },
    },
    OptionSpec {
        names: &["accel"],
        arg: Some("kvm"),
        help: "KVM (the only accelerator)",
        origin: Origin::Qemu,
        apply: |cfg, option, value| parse_accel(cfg, option, &value).map(|()| None),
    },
    OptionSpec {
        names: &["cpu"],
        arg: Some("MODEL[,FEATURES]"),
        help: "CPU model: `host`, `max`, `qemu64`, `EPYC`, `EPYC-v1`..`EPYC-v4`, `EPYC-IBPB`, \
               `EPYC-Rome[-v1..v5]`, `EPYC-Milan[-v1..v3]`, `EPYC-Genoa[-v1..v2]`, \
               `EPYC-Turin[-v1]`; gives an SEV-ES guest's initial VMSAs their CPU signature \
               (`host`, `max`: the host's; no `-cpu`: `qemu64`'s); the vCPUs see KVM's \
               supported CPUID whatever the model",
        origin: Origin::Qemu,
        apply: |cfg, option, value| {
            cfg.cpu = Some(parse_cpu(option, &value)?);
            Ok(None)
        },
    },
    OptionSpec {
        names: &["nodefaults"],
        arg: None,
        help: "no default devices (no default serial port)",
        origin: Origin::Qemu,
        apply: |cfg, _, _| {
            cfg.nodefaults = true;
            Ok(None)
        },
    },
    OptionSpec {
        names: &["h", "help"],
        arg: None,
        help: "print this help and exit",
        origin: Origin::Qemu,
        apply: |_, _, _| Ok(Some(Invocation::Help)),
    },
    OptionSpec {
        names: &["version"],
        arg: None,
        help: "print the version and exit",
        origin: Origin::Qemu,
        apply: |_, _, _| Ok(Some(Invocation::Version)),
    },
    OptionSpec {
        names: &["write-demo-guest"],
        arg: Some("FILE"),
        help: "write the bundled demo guest firmware (2 MiB) and exit",
        origin: Origin::Sevm,
        apply: |_, option, value| {
            Ok(Some(Invocation::WriteDemoGuest(non_empty_path(
                option, &value,
            )?)))
        },
    },
];

/// The option named `name` (without the dash).
pub(super) fn lookup(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.names.contains(&name))
}

/// `-machine`, `-M` (the names with their dashes).
fn spelled(o: &OptionSpec) -> String {
    o.names
        .iter()
        .map(|n| format!("-{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The usage text for `-help`.
pub fn usage() -> String {
    let mut out = String::from("usage: sevm [options]\n");
    for (origin, title) in [
        (Origin::Qemu, "QEMU-compatible options"),
        (Origin::Sevm, "sevm's own"),
    ] {
        out.push_str(&format!("\n{title}:\n"));
        for o in OPTIONS.iter().filter(|o| o.origin == origin) {
            let arg = o.arg.map(|a| format!(" {a}")).unwrap_or_default();
            out.push_str(&format!("  {}{arg}\n", spelled(o)));
            out.push_str(&format!("      {}\n", o.help.replace('`', "")));
        }
    }
    out
}

/// `docs/sevm-options.md`: the option table and the rules every option
/// follows, in Markdown.
pub fn markdown() -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out = String::from(
        "# sevm's command-line options\n\
         \n\
         Generated from the option table in `crates/sevm/src/options/table.rs` (a unit test \
         checks this file against it). QEMU's spelling and meaning; `-opt` and `--opt` alike.\n",
    );
    for (origin, title) in [
        (Origin::Qemu, "QEMU-compatible options"),
        (Origin::Sevm, "sevm's own options"),
    ] {
        out.push_str(&format!(
            "\n## {title}\n\n| option | meaning |\n|---|---|\n"
        ));
        for o in OPTIONS.iter().filter(|o| o.origin == origin) {
            let mut names = o
                .names
                .iter()
                .map(|n| format!("`-{n}`"))
                .collect::<Vec<_>>()
                .join("/");
            if let Some(a) = o.arg {
                names.push_str(&format!(" `{}`", cell(a)));
            }
            out.push_str(&format!("| {names} | {} |\n", cell(o.help)));
        }
    }
    out.push_str(
        "\n## Rules\n\
         \n\
         * Known QEMU options that sevm does not implement (`-device`, `-netdev`, `-vnc`, \
         `-monitor`, `-hda`, `-cdrom`, ...) are refused with \"QEMU option -X is not supported \
         by sevm\"; anything else with \"unknown option\".\n\
         * As in QEMU, a repeated single-valued option (`-m`, `-kernel`, `-name`, ...) takes \
         its last value; `-object`, `-drive` and `-qmp` accumulate.\n\
         * `sev-device=emulated:<state-dir>` selects sevm's emulated AMD Secure Processor with \
         its persistent identity in `<state-dir>`. It is never chosen implicitly: without it, \
         `sev-device` is a device path (QEMU's default `/dev/sev`), and a missing device is an \
         error at launch, not a reason to fall back to the emulator.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/sevm-options.md");

    /// `docs/sevm-options.md` is the table's Markdown. After changing the
    /// table, regenerate it with
    /// `cargo test -p sevm --lib write_options_doc -- --ignored`.
    #[test]
    fn options_doc_matches_the_table() {
        let doc = std::fs::read_to_string(DOC).unwrap();
        assert!(
            doc == markdown(),
            "{DOC} is out of date: run `cargo test -p sevm --lib write_options_doc -- --ignored`"
        );
    }

    #[test]
    #[ignore = "writes docs/sevm-options.md"]
    fn write_options_doc() {
        std::fs::write(DOC, markdown()).unwrap();
    }

    #[test]
    fn every_name_is_unique_and_every_option_is_documented() {
        let mut names: Vec<&str> = OPTIONS
            .iter()
            .flat_map(|o| o.names.iter().copied())
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all, "a name is listed twice");
        for o in OPTIONS {
            assert!(!o.help.is_empty(), "{:?}", o.names);
            for n in o.names {
                assert!(lookup(n).is_some());
                assert!(usage().contains(&format!("-{n}")), "{n} not in the usage");
                assert!(markdown().contains(&format!("`-{n}")), "{n} not in the doc");
            }
        }
    }
}
