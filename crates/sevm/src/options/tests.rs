//! Every option, well-formed and malformed.

use super::*;
use crate::config::{Firmware, OptionsWarning, DEFAULT_POLICY};

fn run(args: &[&str]) -> Result<VmConfig, OptionsError> {
    match parse_args(args.iter().copied())? {
        Invocation::Run(cfg) => Ok(*cfg),
        other => panic!("expected a VM config, got {other:?}"),
    }
}

fn err(args: &[&str]) -> String {
    match parse_args(args.iter().copied()) {
        Ok(inv) => panic!("{args:?} accepted: {inv:?}"),
        Err(e) => e.to_string(),
    }
}

fn assert_err(args: &[&str], expected: &str) {
    let e = err(args);
    assert!(
        e.contains(expected),
        "{args:?}: error {e:?} does not contain {expected:?}"
    );
}

#[test]
fn empty_command_line_gives_qemu_defaults() {
    let cfg = run(&[]).unwrap();
    assert_eq!(cfg, VmConfig::default());
    assert_eq!(cfg.memory, 128 << 20);
    assert_eq!(cfg.cpus, 1);
    assert_eq!(cfg.machine.machine_type, MachineType::Pc);
    assert_eq!(cfg.effective_serial(), SerialConfig::Stdio);
    assert!(cfg.sev_guest().is_none());
    assert!(cfg.firmware().is_none());
    assert_eq!(cfg.validate().unwrap(), vec![]);
}

#[test]
fn the_design_documents_full_sev_command_line() {
    let cfg = run(&[
        "-machine",
        "q35,accel=kvm,memory-encryption=sev0",
        "-object",
        "sev-guest,id=sev0,policy=0x1,dh-cert-file=godh.b64,session-file=session.b64,cbitpos=47,reduced-phys-bits=1,kernel-hashes=on",
        "-m",
        "2G",
        "-smp",
        "2",
        "-drive",
        "if=pflash,format=raw,unit=0,file=OVMF.fd,readonly=on",
        "-kernel",
        "vmlinuz",
        "-initrd",
        "initrd.img",
        "-append",
        "console=ttyS0 root=/dev/vda",
        "-S",
        "-qmp",
        "unix:/tmp/qmp.sock,server=on,wait=off",
        "-nographic",
        "-enable-kvm",
        "-cpu",
        "EPYC-v4",
    ])
    .unwrap();
    assert_eq!(cfg.machine.machine_type, MachineType::Q35);
    assert!(cfg.enable_kvm);
    let sev = cfg.sev_guest().unwrap();
    assert_eq!(sev.id, "sev0");
    assert_eq!(sev.policy, 1);
    assert_eq!(sev.dh_cert_file, Some(PathBuf::from("godh.b64")));
    assert_eq!(sev.session_file, Some(PathBuf::from("session.b64")));
    assert_eq!(sev.cbitpos, Some(47));
    assert_eq!(sev.reduced_phys_bits, Some(1));
    assert!(sev.kernel_hashes);
    assert_eq!(sev.sev_device, SevDevice::Hardware("/dev/sev".into()));
    assert_eq!(cfg.memory, 2 << 30);
    assert_eq!(cfg.cpus, 2);
    assert_eq!(
        cfg.firmware(),
        Some(Firmware::Pflash {
            code: PflashDrive {
                unit: 0,
                file: "OVMF.fd".into(),
                readonly: true
            },
            vars: None
        })
    );
    assert_eq!(cfg.kernel, Some("vmlinuz".into()));
    assert_eq!(cfg.initrd, Some("initrd.img".into()));
    assert_eq!(cfg.append.as_deref(), Some("console=ttyS0 root=/dev/vda"));
    assert!(cfg.start_paused);
    assert_eq!(
        cfg.qmp,
        vec![QmpSocketConfig {
            path: "/tmp/qmp.sock".into(),
            wait: false
        }]
    );
    assert!(cfg.nographic);
    assert_eq!(cfg.cpu.as_ref().unwrap().model, "EPYC-v4");
    assert_eq!(cfg.validate().unwrap(), vec![]);
}

#[test]
fn double_dash_spelling() {
    let cfg = run(&["--m", "256", "--S", "--machine", "q35"]).unwrap();
    assert_eq!(cfg.memory, 256 << 20);
    assert!(cfg.start_paused);
    assert_eq!(cfg.machine.machine_type, MachineType::Q35);
}

#[test]
fn unknown_unsupported_stray_and_missing_arguments() {
    assert_eq!(err(&["-frobnicate"]), "unknown option -frobnicate");
    assert_eq!(err(&["--frobnicate"]), "unknown option --frobnicate");
    // QEMU has no `-opt=value` spelling.
    assert_eq!(err(&["-m=512"]), "unknown option -m=512");
    for opt in [
        "-device", "-netdev", "-vnc", "-monitor", "-hda", "-cdrom", "-usb", "-chardev", "-boot",
        "--device",
    ] {
        let bare = opt.trim_start_matches('-');
        assert_eq!(
            err(&[opt, "x"]),
            format!("QEMU option -{bare} is not supported by sevm")
        );
    }
    assert_eq!(
        err(&["disk.img"]),
        "unexpected argument \"disk.img\" (QEMU's implicit -hda disk image is not supported by sevm)"
    );
    assert!(err(&["-"]).starts_with("unexpected argument"));
    assert!(err(&["---m", "1"]).starts_with("unexpected argument"));
    for opt in [
        "-m",
        "-machine",
        "-object",
        "-smp",
        "-bios",
        "-drive",
        "-kernel",
        "-initrd",
        "-append",
        "-qmp",
        "-serial",
        "-name",
        "-gdb",
        "-incoming",
        "-display",
        "-cpu",
        "-accel",
        "-M",
    ] {
        assert_eq!(err(&[opt]), format!("{opt}: requires an argument"));
    }
}

#[cfg(unix)]
#[test]
fn non_utf8_argument_is_an_error() {
    use std::os::unix::ffi::OsStringExt;
    let bad = OsString::from_vec(vec![b'-', b'k', 0xff]);
    let e = parse_args([bad]).unwrap_err();
    assert!(matches!(e, OptionsError::NotUtf8 { .. }), "{e}");
}

#[test]
fn help_and_version() {
    assert_eq!(parse_args(["-h"]).unwrap(), Invocation::Help);
    assert_eq!(parse_args(["--help"]).unwrap(), Invocation::Help);
    assert_eq!(parse_args(["-version"]).unwrap(), Invocation::Version);
    assert_eq!(
        parse_args(["-m", "1G", "--version"]).unwrap(),
        Invocation::Version
    );
    assert!(usage().contains("-object sev-guest"));
}

#[test]
fn machine_well_formed() {
    for (arg, ty) in [
        ("q35", MachineType::Q35),
        ("pc", MachineType::Pc),
        ("type=q35", MachineType::Q35),
        ("pc-q35-8.2", MachineType::Q35),
        ("pc-i440fx-7.2", MachineType::Pc),
    ] {
        let cfg = run(&["-machine", arg]).unwrap();
        assert_eq!(cfg.machine.machine_type, ty, "{arg}");
    }
    let cfg = run(&["-M", "q35,accel=kvm"]).unwrap();
    assert!(cfg.enable_kvm);
    assert_eq!(cfg.machine.type_name.as_deref(), Some("q35"));
    // memory-encryption without a type, and its newer alias.
    let cfg = run(&["-machine", "memory-encryption=sev0"]).unwrap();
    assert_eq!(cfg.machine.memory_encryption.as_deref(), Some("sev0"));
    let cfg = run(&["-machine", "q35,confidential-guest-support=s"]).unwrap();
    assert_eq!(cfg.machine.memory_encryption.as_deref(), Some("s"));
    let cfg = run(&[
        "-machine",
        "q35,memory-encryption=a,confidential-guest-support=a",
    ])
    .unwrap();
    assert_eq!(cfg.machine.memory_encryption.as_deref(), Some("a"));
    // Last -machine wins per property, as QEMU merges -machine options.
    let cfg = run(&["-machine", "pc", "-machine", "q35"]).unwrap();
    assert_eq!(cfg.machine.machine_type, MachineType::Q35);
}

#[test]
fn machine_malformed() {
    assert_err(
        &["-machine", "microvm"],
        "-machine: type: machine type \"microvm\" is not supported",
    );
    assert_err(
        &["-machine", "q35,accel=tcg"],
        "-machine: accel: accelerator \"tcg\" is not supported",
    );
    assert_eq!(
        err(&["-machine", "q35,vmport=off"]),
        "-machine: unknown property 'vmport'"
    );
    assert_err(
        &["-machine", "q35,memory-encryption="],
        "memory-encryption: must not be empty",
    );
    assert_err(
        &["-machine", "q35,memory-encryption"],
        "memory-encryption: needs a value",
    );
    assert_err(
        &[
            "-machine",
            "memory-encryption=a,confidential-guest-support=b",
        ],
        "must name the same object",
    );
    assert_err(&["-machine", "q35,q35"], "unknown property 'q35'");
    assert_err(
        &["-machine", "q35,accel=kvm,accel=kvm"],
        "property 'accel' is given more than once",
    );
    assert_err(&["-machine", ""], "-machine: empty item");
}

#[test]
fn sev_guest_object_well_formed() {
    let cfg = run(&["-object", "sev-guest,id=s0"]).unwrap();
    let g = &cfg.sev_guests[0];
    assert_eq!(g.id, "s0");
    assert_eq!(g.policy, DEFAULT_POLICY);
    assert_eq!(g.handle, 0);
    assert_eq!(g.cbitpos, None);
    assert_eq!(g.reduced_phys_bits, None);
    assert!(!g.kernel_hashes);
    assert_eq!(g.sev_device, SevDevice::Hardware("/dev/sev".into()));
    assert_eq!(g.legacy_vm_type, None);

    let cfg = run(&[
        "-object",
        "qom-type=sev-guest,id=s1,policy=5,handle=0x10,cbitpos=51,reduced-phys-bits=010,kernel-hashes=yes,sev-device=/dev/sev2,legacy-vm-type=auto",
    ])
    .unwrap();
    let g = &cfg.sev_guests[0];
    assert_eq!(g.policy, 5);
    assert_eq!(g.handle, 16);
    assert_eq!(g.cbitpos, Some(51));
    assert_eq!(g.reduced_phys_bits, Some(8)); // octal, as strtoull base 0
    assert!(g.kernel_hashes);
    assert_eq!(g.sev_device, SevDevice::Hardware("/dev/sev2".into()));
    assert_eq!(g.legacy_vm_type, Some(OnOffAuto::Auto));

    // The emulated platform, explicitly.
    let cfg = run(&[
        "-object",
        "sev-guest,id=e,sev-device=emulated:/var/lib/sevm/host-a",
    ])
    .unwrap();
    assert_eq!(
        cfg.sev_guests[0].sev_device,
        SevDevice::Emulated {
            state_dir: "/var/lib/sevm/host-a".into()
        }
    );

    // ",," escapes a comma inside a file name.
    let cfg = run(&["-object", "sev-guest,id=c,dh-cert-file=a,,b.b64"]).unwrap();
    assert_eq!(cfg.sev_guests[0].dh_cert_file, Some("a,b.b64".into()));

    // Every boolean spelling.
    for (v, b) in [
        ("on", true),
        ("off", false),
        ("true", true),
        ("false", false),
        ("no", false),
    ] {
        let arg = format!("sev-guest,id=k,kernel-hashes={v}");
        assert_eq!(
            run(&["-object", &arg]).unwrap().sev_guests[0].kernel_hashes,
            b
        );
    }

    // Two objects with different ids.
    let cfg = run(&["-object", "sev-guest,id=a", "-object", "sev-guest,id=b"]).unwrap();
    assert_eq!(cfg.sev_guests.len(), 2);
}

#[test]
fn sev_guest_object_json_form() {
    let cfg = run(&[
        "-object",
        r#"{"qom-type":"sev-guest","id":"sev0","policy":7,"cbitpos":47,"reduced-phys-bits":1,"kernel-hashes":true,"session-file":"s.b64","sev-device":"emulated:/tmp/p"}"#,
    ])
    .unwrap();
    let g = &cfg.sev_guests[0];
    assert_eq!(g.policy, 7);
    assert_eq!(g.cbitpos, Some(47));
    assert!(g.kernel_hashes);
    assert_eq!(g.session_file, Some("s.b64".into()));
    assert_eq!(
        g.sev_device,
        SevDevice::Emulated {
            state_dir: "/tmp/p".into()
        }
    );

    assert_err(&["-object", "{"], "-object: invalid JSON");
    assert_err(
        &["-object", r#"{"id":"x"}"#],
        "-object: property 'qom-type' is required",
    );
    assert_err(
        &[
            "-object",
            r#"{"qom-type":"sev-guest","id":"x","policy":"0x1"}"#,
        ],
        "-object sev-guest: policy: expected an integer",
    );
    assert_err(
        &[
            "-object",
            r#"{"qom-type":"sev-guest","id":"x","policy":-1}"#,
        ],
        "policy: expected an integer",
    );
    assert_err(
        &[
            "-object",
            r#"{"qom-type":"sev-guest","id":"x","policy":4294967296}"#,
        ],
        "policy: 4294967296 is out of range",
    );
    assert_err(
        &[
            "-object",
            r#"{"qom-type":"sev-guest","id":"x","kernel-hashes":"on"}"#,
        ],
        "kernel-hashes: expected a boolean",
    );
    assert_err(
        &["-object", r#"{"qom-type":"sev-guest","id":7}"#],
        "-object sev-guest: id: expected a string",
    );
}

#[test]
fn sev_guest_object_malformed() {
    assert_eq!(
        err(&["-object", "sev-guest,id=s,policy=0xzz"]),
        "-object sev-guest: policy: invalid number \"0xzz\""
    );
    assert_err(
        &["-object", "sev-guest,id=s,policy=-1"],
        "policy: invalid number",
    );
    assert_err(
        &["-object", "sev-guest,id=s,policy=0x100000000"],
        "policy: number \"0x100000000\" is out of range",
    );
    assert_err(
        &["-object", "sev-guest,id=s,handle=x"],
        "handle: invalid number",
    );
    assert_err(
        &["-object", "sev-guest,id=s,cbitpos="],
        "cbitpos: invalid number \"\"",
    );
    assert_err(
        &["-object", "sev-guest,id=s,reduced-phys-bits=one"],
        "reduced-phys-bits: invalid number",
    );
    assert_err(
        &["-object", "sev-guest,id=s,kernel-hashes=maybe"],
        "kernel-hashes: invalid boolean \"maybe\"",
    );
    assert_err(
        &["-object", "sev-guest,id=s,kernel-hashes"],
        "kernel-hashes: needs a value",
    );
    assert_err(
        &["-object", "sev-guest,id=s,dh-cert-file="],
        "dh-cert-file: must not be empty",
    );
    assert_err(
        &["-object", "sev-guest,id=s,session-file"],
        "session-file: needs a value",
    );
    assert_err(
        &["-object", "sev-guest,id=s,sev-device=emulated:"],
        "needs a platform state directory",
    );
    assert_err(
        &["-object", "sev-guest,id=s,sev-device=emulated"],
        "spelled emulated:DIR",
    );
    assert_err(
        &["-object", "sev-guest,id=s,legacy-vm-type=maybe"],
        "legacy-vm-type: invalid value",
    );
    // `off` is parsed; the hardware platform refuses it at start-up (see
    // vmm::setup's tests).
    assert_eq!(
        run(&["-object", "sev-guest,id=s,legacy-vm-type=off"])
            .unwrap()
            .sev_guests[0]
            .legacy_vm_type,
        Some(OnOffAuto::Off)
    );
    assert_eq!(
        run(&["-object", "sev-guest,id=s,legacy-vm-type=on"])
            .unwrap()
            .sev_guests[0]
            .legacy_vm_type,
        Some(OnOffAuto::On)
    );
    assert_eq!(
        err(&["-object", "sev-guest,id=s,foo=1"]),
        "-object sev-guest: unknown property 'foo'"
    );
    assert_eq!(
        err(&["-object", "sev-guest,policy=1"]),
        "-object sev-guest: property 'id' is required"
    );
    assert_err(&["-object", "sev-guest,id="], "id: must not be empty");
    assert_err(
        &["-object", "sev-guest,id=a,policy=1,policy=2"],
        "property 'policy' is given more than once",
    );
    assert_err(
        &["-object", "sev-guest,id=a", "-object", "sev-guest,id=a"],
        "duplicate id 'a'",
    );
    assert_eq!(
        err(&["-object", "memory-backend-ram,id=m,size=1G"]),
        "-object memory-backend-ram: unsupported object type (sevm supports sev-guest and \
         sev-snp-guest)"
    );
    assert_err(
        &["-object", "id=x"],
        "-object: property 'qom-type' is required",
    );
}

#[test]
fn memory() {
    const M: u64 = 1 << 20;
    for (arg, bytes) in [
        ("512", 512 * M),
        ("512M", 512 * M),
        ("512m", 512 * M),
        ("1G", 1 << 30),
        ("1g", 1 << 30),
        ("65536k", 64 * M),
        ("65536K", 64 * M),
        ("size=256M", 256 * M),
        ("1.5G", 3 << 29),
        ("100000B", 106_496), // rounded up to 8 KiB as QEMU does
    ] {
        assert_eq!(run(&["-m", arg]).unwrap().memory, bytes, "{arg}");
    }
    // Last -m wins.
    assert_eq!(run(&["-m", "1G", "-m", "2G"]).unwrap().memory, 2 << 30);
    assert_eq!(err(&["-m", "12X"]), "-m: size: invalid size \"12X\"");
    assert_err(&["-m", "0"], "RAM size must not be zero");
    assert_err(
        &["-m", "1G,maxmem=4G"],
        "maxmem: memory hotplug is not supported",
    );
    assert_err(
        &["-m", "1G,slots=2"],
        "slots: memory hotplug is not supported",
    );
    assert_err(&["-m", "1G,foo=1"], "-m: unknown property 'foo'");
    assert_err(&["-m", "16E"], "too large");
    assert_err(&["-m", "-1"], "invalid size");
}

#[test]
fn smp() {
    assert_eq!(run(&["-smp", "4"]).unwrap().cpus, 4);
    assert_eq!(run(&["-smp", "cpus=2"]).unwrap().cpus, 2);
    assert_eq!(
        run(&["-smp", "4,sockets=1,cores=4,threads=1"])
            .unwrap()
            .cpus,
        4
    );
    assert_eq!(run(&["-smp", "sockets=2,cores=2"]).unwrap().cpus, 4);
    assert_eq!(run(&["-smp", "2,maxcpus=2"]).unwrap().cpus, 2);
    assert_eq!(run(&["-smp", "2,dies=1"]).unwrap().cpus, 2);
    assert_eq!(
        err(&["-smp", "0"]),
        "-smp: cpus: 0 is out of range (1..=255)"
    );
    assert_err(&["-smp", "256"], "256 is out of range");
    assert_err(&["-smp", "two"], "-smp: cpus: invalid number \"two\"");
    assert_err(
        &["-smp", "4,maxcpus=8"],
        "maxcpus: CPU hotplug is not supported",
    );
    assert_err(&["-smp", "4,sockets=3"], "does not match the topology");
    assert_err(&["-smp", "sockets=0"], "sockets: must be at least 1");
    assert_err(&["-smp", "2,dies=2"], "dies: sevm supports only 1");
    assert_err(&["-smp", "2,foo=1"], "-smp: unknown property 'foo'");
    assert_err(&["-smp", "maxcpus=2"], "-smp: property 'cpus' is required");
}

#[test]
fn firmware_options() {
    let cfg = run(&["-bios", "fw.bin"]).unwrap();
    assert_eq!(cfg.firmware(), Some(Firmware::Bios("fw.bin".into())));
    assert_err(&["-bios", ""], "-bios: the file name is empty");

    let cfg = run(&[
        "-drive",
        "if=pflash,format=raw,unit=0,file=CODE.fd,readonly=on",
        "-drive",
        "if=pflash,format=raw,unit=1,file=VARS.fd",
    ])
    .unwrap();
    assert_eq!(
        cfg.firmware(),
        Some(Firmware::Pflash {
            code: PflashDrive {
                unit: 0,
                file: "CODE.fd".into(),
                readonly: true
            },
            vars: Some(PflashDrive {
                unit: 1,
                file: "VARS.fd".into(),
                readonly: false
            }),
        })
    );
    // Without unit=, the next free unit; without format=, raw; bare readonly.
    let cfg = run(&[
        "-drive",
        "if=pflash,file=a,readonly",
        "-drive",
        "if=pflash,file=b",
    ])
    .unwrap();
    assert_eq!(cfg.pflash[0].unit, 0);
    assert!(cfg.pflash[0].readonly);
    assert_eq!(cfg.pflash[1].unit, 1);

    assert_err(
        &["-drive", "file=disk.img"],
        "-drive: property 'if' is required",
    );
    assert_err(
        &["-drive", "if=virtio,file=d"],
        "-drive: if: interface \"virtio\" is not supported",
    );
    assert_err(
        &["-drive", "if=pflash,format=qcow2,file=a"],
        "format: format \"qcow2\" is not supported",
    );
    assert_err(
        &["-drive", "if=pflash,unit=2,file=a"],
        "unit: pflash unit 2 does not exist",
    );
    assert_err(
        &["-drive", "if=pflash,unit=x,file=a"],
        "unit: invalid number",
    );
    assert_err(
        &["-drive", "if=pflash,unit=0"],
        "-drive: property 'file' is required",
    );
    assert_err(
        &["-drive", "if=pflash,file="],
        "file: the file name is empty",
    );
    assert_err(
        &["-drive", "if=pflash,file=a,readonly=perhaps"],
        "readonly: invalid boolean",
    );
    assert_err(
        &["-drive", "if=pflash,file=a,cache=none"],
        "-drive: unknown property 'cache'",
    );
    assert_err(
        &[
            "-drive",
            "if=pflash,unit=0,file=a",
            "-drive",
            "if=pflash,unit=0,file=b",
        ],
        "pflash unit 0 is given more than once",
    );
    assert_err(
        &[
            "-drive",
            "if=pflash,file=a",
            "-drive",
            "if=pflash,file=b",
            "-drive",
            "if=pflash,file=c",
        ],
        "both pflash units",
    );
}

#[test]
fn kernel_initrd_append() {
    let cfg = run(&["-kernel", "k", "-initrd", "i", "-append", ""]).unwrap();
    assert_eq!(cfg.kernel, Some("k".into()));
    assert_eq!(cfg.initrd, Some("i".into()));
    assert_eq!(cfg.append.as_deref(), Some(""));
    assert_err(&["-kernel", ""], "-kernel: the file name is empty");
    assert_err(&["-initrd", ""], "-initrd: the file name is empty");
    // Last one wins.
    assert_eq!(
        run(&["-kernel", "a", "-kernel", "b"]).unwrap().kernel,
        Some("b".into())
    );
}

#[test]
fn qmp_sockets() {
    for (arg, wait) in [
        ("unix:/tmp/q,server=on,wait=off", false),
        ("unix:/tmp/q,server,nowait", false),
        ("unix:/tmp/q,server=on", true),
        ("unix:/tmp/q,server", true),
        ("unix:/tmp/q,server=yes,wait=no", false),
        ("unix:/tmp/q,wait=on,server=on", true),
    ] {
        let cfg = run(&["-qmp", arg]).unwrap();
        assert_eq!(
            cfg.qmp,
            vec![QmpSocketConfig {
                path: "/tmp/q".into(),
                wait
            }],
            "{arg}"
        );
    }
    let cfg = run(&[
        "-qmp",
        "unix:/a,server,nowait",
        "-qmp",
        "unix:/b,server=on,wait=off",
    ])
    .unwrap();
    assert_eq!(cfg.qmp.len(), 2);
    let cfg = run(&["-qmp", "unix:/tmp/a,,b,server,nowait"]).unwrap();
    assert_eq!(cfg.qmp[0].path, PathBuf::from("/tmp/a,b"));

    assert_err(
        &["-qmp", "tcp:localhost:4444,server,nowait"],
        "-qmp: TCP sockets are not supported",
    );
    assert_err(
        &["-qmp", "stdio"],
        "character device \"stdio\" is not supported",
    );
    assert_err(&["-qmp", "unix:/tmp/q"], "client mode is not supported");
    assert_err(
        &["-qmp", "unix:/tmp/q,server=off"],
        "client mode is not supported",
    );
    assert_err(
        &["-qmp", "unix:,server,nowait"],
        "unix: needs a socket path",
    );
    assert_err(
        &["-qmp", "unix:/q,server=maybe"],
        "-qmp: server: invalid boolean",
    );
    assert_err(
        &["-qmp", "unix:/q,server,wait=perhaps"],
        "-qmp: wait: invalid boolean",
    );
    assert_err(
        &["-qmp", "unix:/q,server,telnet"],
        "-qmp: unknown property 'telnet'",
    );
    assert_err(&["-qmp", "unix:/q,server,server"], "given more than once");
}

#[test]
fn serial() {
    for (arg, s) in [
        ("stdio", SerialConfig::Stdio),
        ("none", SerialConfig::None),
        ("null", SerialConfig::Null),
        (
            "file:/tmp/serial.log",
            SerialConfig::File("/tmp/serial.log".into()),
        ),
    ] {
        let cfg = run(&["-serial", arg]).unwrap();
        assert_eq!(cfg.effective_serial(), s, "{arg}");
    }
    assert_eq!(
        run(&["-nodefaults"]).unwrap().effective_serial(),
        SerialConfig::None
    );
    assert_eq!(
        run(&["-nodefaults", "-serial", "stdio"])
            .unwrap()
            .effective_serial(),
        SerialConfig::Stdio
    );
    assert_err(&["-serial", "file:"], "file: needs a path");
    assert_err(&["-serial", "mon:stdio"], "\"mon:stdio\" is not supported");
    assert_err(&["-serial", "pty"], "\"pty\" is not supported");
    assert_err(&["-serial", "stdio", "-serial", "null"], "one serial port");
}

#[test]
fn display_nographic_name_reboot_defaults_kvm() {
    let cfg = run(&[
        "-nographic",
        "-display",
        "none",
        "-no-reboot",
        "-nodefaults",
        "-enable-kvm",
    ])
    .unwrap();
    assert!(cfg.nographic && cfg.display_none && cfg.no_reboot && cfg.nodefaults && cfg.enable_kvm);
    assert_err(
        &["-display", "gtk"],
        "-display: display \"gtk\" is not supported",
    );
    assert_err(&["-display", "none,gl=on"], "is not supported");

    let cfg = run(&["-name", "vm1"]).unwrap();
    assert_eq!(cfg.name.as_deref(), Some("vm1"));
    let cfg = run(&["-name", "guest=vm2,debug-threads=on"]).unwrap();
    assert_eq!(cfg.name.as_deref(), Some("vm2"));
    assert!(cfg.debug_threads);
    assert_err(
        &["-name", "vm,process=x"],
        "-name: unknown property 'process'",
    );
    assert_err(
        &["-name", "vm,debug-threads=sure"],
        "debug-threads: invalid boolean",
    );

    assert!(run(&["-accel", "kvm"]).unwrap().enable_kvm);
    assert!(run(&["-accel", "accel=kvm"]).unwrap().enable_kvm);
    assert_err(
        &["-accel", "tcg"],
        "-accel: accel: accelerator \"tcg\" is not supported",
    );
    assert_err(
        &["-accel", "kvm,kernel-irqchip=on"],
        "-accel: unknown property 'kernel-irqchip'",
    );
}

#[test]
fn gdb() {
    let cfg = run(&["-s"]).unwrap();
    assert_eq!(
        cfg.gdb,
        Some(GdbConfig {
            host: None,
            port: 1234
        })
    );
    let cfg = run(&["-gdb", "tcp::4321"]).unwrap();
    assert_eq!(
        cfg.gdb,
        Some(GdbConfig {
            host: None,
            port: 4321
        })
    );
    let cfg = run(&["-gdb", "tcp:127.0.0.1:9"]).unwrap();
    assert_eq!(
        cfg.gdb,
        Some(GdbConfig {
            host: Some("127.0.0.1".into()),
            port: 9
        })
    );
    let cfg = run(&["-gdb", "tcp:[::1]:9"]).unwrap();
    assert_eq!(
        cfg.gdb,
        Some(GdbConfig {
            host: Some("::1".into()),
            port: 9
        })
    );
    let cfg = run(&["-gdb", "5555"]).unwrap();
    assert_eq!(
        cfg.gdb,
        Some(GdbConfig {
            host: None,
            port: 5555
        })
    );
    assert_eq!(run(&["-s", "-gdb", "none"]).unwrap().gdb, None);
    assert_err(&["-gdb", "tcp::99999"], "-gdb: invalid port \"99999\"");
    assert_err(&["-gdb", "tcp::"], "invalid port \"\"");
    assert_err(&["-gdb", "tcp:host"], "expected HOST:PORT");
    assert_err(&["-gdb", "tcp:[::1"], "unterminated '['");
    assert_err(&["-gdb", "tcp:[::1]9"], "missing port");
    assert_err(&["-gdb", "unix:/tmp/gdb"], "is not supported by sevm");
}

#[test]
fn incoming() {
    for (arg, inc) in [
        ("defer", IncomingConfig::Defer),
        (
            "file:/tmp/mig",
            IncomingConfig::File {
                path: "/tmp/mig".into(),
                offset: 0,
            },
        ),
        (
            "file:/tmp/mig,offset=0x1000",
            IncomingConfig::File {
                path: "/tmp/mig".into(),
                offset: 4096,
            },
        ),
        (
            "tcp:0:4444",
            IncomingConfig::Tcp {
                host: "0".into(),
                port: 4444,
            },
        ),
        (
            "tcp::4444",
            IncomingConfig::Tcp {
                host: String::new(),
                port: 4444,
            },
        ),
        (
            "tcp:[::]:4444",
            IncomingConfig::Tcp {
                host: "::".into(),
                port: 4444,
            },
        ),
        (
            "unix:/tmp/mig.sock",
            IncomingConfig::Unix("/tmp/mig.sock".into()),
        ),
    ] {
        assert_eq!(
            run(&["-incoming", arg]).unwrap().incoming,
            Some(inc),
            "{arg}"
        );
    }
    assert_err(
        &["-incoming", "exec:cat /tmp/x"],
        "migration transport \"exec:\" is not supported",
    );
    assert_err(&["-incoming", "rdma:host:1"], "\"rdma:\" is not supported");
    assert_err(&["-incoming", "later"], "is not a migration URI");
    assert_err(&["-incoming", "file:"], "file: needs a path");
    assert_err(
        &["-incoming", "file:/x,offset=zz"],
        "offset: invalid number",
    );
    assert_err(&["-incoming", "unix:"], "unix: needs a path");
    assert_err(&["-incoming", "tcp:host"], "expected HOST:PORT");
    assert_err(&["-incoming", "tcp:host:port"], "invalid port \"port\"");
}

#[test]
fn cpu() {
    let cfg = run(&["-cpu", "host"]).unwrap();
    assert_eq!(
        cfg.cpu,
        Some(CpuConfig {
            model: "host".into(),
            features: vec![]
        })
    );
    let cfg = run(&["-cpu", "EPYC-Milan,+invtsc,-svm"]).unwrap();
    assert_eq!(
        cfg.cpu,
        Some(CpuConfig {
            model: "EPYC-Milan".into(),
            features: vec!["+invtsc".into(), "-svm".into()]
        })
    );
    for model in [
        "EPYC",
        "EPYC-v1",
        "EPYC-v4",
        "EPYC-Rome",
        "EPYC-Rome-v4",
        "EPYC-Milan-v2",
        "EPYC-Genoa",
        "EPYC-Genoa-v1",
        "EPYC-Turin",
        "host",
        "qemu64",
        "max",
    ] {
        assert_eq!(run(&["-cpu", model]).unwrap().cpu.unwrap().model, model);
    }
    // QEMU's other models, and EPYC names QEMU does not have, are refused
    // with the list.
    assert_err(&["-cpu", "qemu32"], "CPU model \"qemu32\" is not supported");
    assert_err(&["-cpu", "Skylake-Server"], "is not supported");
    for model in [
        "EPYC-v5",
        "EPYC-Foo",
        "EPYC-Rome-v",
        "EPYC-Milan-v0",
        "EPYC-Genoa-2",
        "epyc",
    ] {
        assert_err(
            &["-cpu", model],
            "use one of: host, max, qemu64, EPYC, EPYC-v1..EPYC-v4, EPYC-Rome",
        );
    }
    assert_err(&["-cpu", "host,,"], "");
    assert_err(&["-cpu", "host,"], "empty CPU feature");
}

#[test]
fn validate_cross_option_rules() {
    // QEMU's messages for -initrd/-append without -kernel.
    let cfg = run(&["-initrd", "i"]).unwrap();
    assert_eq!(
        cfg.validate().unwrap_err().to_string(),
        "-initrd only allowed with -kernel option"
    );
    let cfg = run(&["-append", "quiet"]).unwrap();
    assert_eq!(
        cfg.validate().unwrap_err().to_string(),
        "-append only allowed with -kernel option"
    );

    // memory-encryption must name an existing sev-guest.
    let cfg = run(&[
        "-machine",
        "q35,memory-encryption=sev1",
        "-object",
        "sev-guest,id=sev0",
    ])
    .unwrap();
    assert_eq!(
        cfg.validate().unwrap_err(),
        OptionsError::NoSuchSevGuest { id: "sev1".into() }
    );
    assert!(cfg.sev_guest().is_none());

    // -bios and pflash unit 0 conflict; unit 1 needs unit 0.
    let cfg = run(&["-bios", "a", "-drive", "if=pflash,unit=0,file=b"]).unwrap();
    assert!(cfg
        .validate()
        .unwrap_err()
        .to_string()
        .contains("both give the firmware image"));
    let cfg = run(&["-bios", "a", "-drive", "if=pflash,unit=1,file=v"]).unwrap();
    assert!(cfg
        .validate()
        .unwrap_err()
        .to_string()
        .contains("needs a firmware image in pflash unit 0"));

    // Range checks.
    let cfg = run(&["-object", "sev-guest,id=s,reduced-phys-bits=0"]).unwrap();
    assert_eq!(
        cfg.validate().unwrap_err().to_string(),
        "-object sev-guest: reduced-phys-bits: 0 is out of range (1..=63)"
    );
    let cfg = run(&["-object", "sev-guest,id=s,cbitpos=64"]).unwrap();
    assert!(cfg
        .validate()
        .unwrap_err()
        .to_string()
        .contains("cbitpos: 64 is out of range"));

    // Warnings.
    let cfg = run(&[
        "-machine",
        "q35,memory-encryption=s",
        "-object",
        "sev-guest,id=s,kernel-hashes=on",
    ])
    .unwrap();
    assert_eq!(
        cfg.validate().unwrap(),
        vec![OptionsWarning::KernelHashesWithoutKernel { id: "s".into() }]
    );
    let cfg = run(&["-object", "sev-guest,id=s"]).unwrap();
    assert_eq!(
        cfg.validate().unwrap(),
        vec![OptionsWarning::UnusedSevGuest { id: "s".into() }]
    );
    let cfg = run(&[
        "-machine",
        "q35,memory-encryption=s",
        "-object",
        "sev-guest,id=s",
        "-kernel",
        "k",
    ])
    .unwrap();
    assert_eq!(
        cfg.validate().unwrap(),
        vec![OptionsWarning::KernelNotMeasured]
    );
    let cfg = run(&[
        "-machine",
        "q35,memory-encryption=s",
        "-object",
        "sev-guest,id=s,kernel-hashes=on",
        "-kernel",
        "k",
        "-initrd",
        "i",
        "-append",
        "x",
    ])
    .unwrap();
    assert_eq!(cfg.validate().unwrap(), vec![]);
}

#[test]
fn sev_snp_guest_object_with_qemus_defaults_and_checks() {
    use sevm_qmp::base64::encode;
    let cfg = run(&["-object", "sev-snp-guest,id=snp0"]).unwrap();
    let g = &cfg.sev_guests[0];
    assert_eq!(g.qom_type(), "sev-snp-guest");
    let snp = g.snp.as_ref().unwrap();
    assert_eq!(snp.policy.bits(), crate::config::DEFAULT_SNP_POLICY);
    assert_eq!(snp, &crate::config::SnpGuestOptions::default());

    let block = encode(&[1u8; 96]);
    let auth = encode(&[2u8; 100]);
    let gosvw = encode(&[3u8; 16]);
    let host = encode(&[4u8; 32]);
    let arg = format!(
        "sev-snp-guest,id=s,policy=0x70000,guest-visible-workarounds={gosvw},id-block={block},\
         id-auth={auth},author-key-enabled=on,host-data={host},kernel-hashes=on,cbitpos=51,\
         reduced-phys-bits=1,sev-device=emulated:/tmp/p"
    );
    let cfg = run(&["-object", &arg]).unwrap();
    let g = &cfg.sev_guests[0];
    let snp = g.snp.as_ref().unwrap();
    assert_eq!(snp.policy.bits(), 0x70000);
    assert_eq!(snp.gosvw, [3; 16]);
    assert_eq!(snp.id_block.as_deref(), Some(&[1u8; 96][..]));
    assert_eq!(snp.id_auth.as_deref(), Some(&[2u8; 100][..]));
    assert!(snp.author_key_enabled);
    assert_eq!(snp.host_data, [4; 32]);
    assert!(g.kernel_hashes);
    assert_eq!(g.cbitpos, Some(51));
    // The JSON form.
    let json = format!(
        r#"{{"qom-type":"sev-snp-guest","id":"j","policy":196608,"host-data":"{host}","author-key-enabled":true}}"#
    );
    let cfg = run(&["-object", &json]).unwrap();
    let snp = cfg.sev_guests[0].snp.clone().unwrap();
    assert_eq!(snp.policy.bits(), 0x30000);
    assert!(snp.author_key_enabled);

    // QEMU's length checks and messages.
    let cases = [
        (
            format!("guest-visible-workarounds={}", encode(&[0; 15])),
            "-object sev-snp-guest: guest-visible-workarounds: parameter length of 15 exceeds max of 16",
        ),
        (
            format!("id-block={}", encode(&[0; 95])),
            "-object sev-snp-guest: id-block: parameter length of 95 not equal to 96",
        ),
        (
            format!("id-auth={}", encode(&[0; 4097])),
            "-object sev-snp-guest: id-auth: parameter length:ID_AUTH 4097 exceeds max of 4096",
        ),
        (
            format!("host-data={}", encode(&[0; 33])),
            "-object sev-snp-guest: host-data: parameter length of 33 not equal to 32",
        ),
    ];
    for (prop, expected) in cases {
        assert_eq!(
            err(&["-object", &format!("sev-snp-guest,id=x,{prop}")]),
            expected
        );
    }
    for (prop, expected) in [
        ("host-data=!!!", "host-data: invalid base64"),
        (
            "policy=0x10000",
            "policy: 0x10000 is not an SNP guest policy",
        ),
        ("policy=0x1", "policy: 0x1 is not an SNP guest policy"),
        ("policy=zz", "policy: invalid number"),
        (
            "author-key-enabled=maybe",
            "author-key-enabled: invalid boolean",
        ),
        // sev-guest's own properties are not sev-snp-guest's.
        ("handle=1", "unknown property 'handle'"),
        ("dh-cert-file=a", "unknown property 'dh-cert-file'"),
        ("session-file=a", "unknown property 'session-file'"),
        ("legacy-vm-type=on", "unknown property 'legacy-vm-type'"),
        ("vcek-disabled=on", "unknown property 'vcek-disabled'"),
    ] {
        assert_err(
            &["-object", &format!("sev-snp-guest,id=x,{prop}")],
            expected,
        );
    }
    // And the SNP properties are not sev-guest's.
    assert_err(
        &["-object", &format!("sev-guest,id=x,host-data={host}")],
        "-object sev-guest: unknown property 'host-data'",
    );
    // Shared checks name the SNP object.
    let cfg = run(&["-object", "sev-snp-guest,id=x,cbitpos=64"]).unwrap();
    assert_eq!(
        cfg.validate().unwrap_err().to_string(),
        "-object sev-snp-guest: cbitpos: 64 is out of range (1..=63)"
    );
}

#[test]
fn x_sevm_certs_names_the_certificate_table_source() {
    use crate::config::SnpCertSource;
    let certs = |arg: &str| {
        run(&["-object", arg]).unwrap().sev_guests[0]
            .snp
            .clone()
            .unwrap()
            .certs
    };
    assert_eq!(certs("sev-snp-guest,id=x"), SnpCertSource::None);
    assert_eq!(
        certs("sev-snp-guest,id=x,x-sevm-certs=none"),
        SnpCertSource::None
    );
    assert_eq!(
        certs("sev-snp-guest,id=x,x-sevm-certs=platform"),
        SnpCertSource::Platform
    );
    assert_eq!(
        certs("sev-snp-guest,id=x,x-sevm-certs=./platform"),
        SnpCertSource::Path(PathBuf::from("./platform"))
    );
    assert_eq!(
        certs(r#"{"qom-type":"sev-snp-guest","id":"j","x-sevm-certs":"/etc/certs"}"#),
        SnpCertSource::Path(PathBuf::from("/etc/certs"))
    );
    assert_err(
        &["-object", "sev-snp-guest,id=x,x-sevm-certs="],
        "x-sevm-certs: must not be empty",
    );
    // An SNP property: sev-guest has no certificate table.
    assert_err(
        &["-object", "sev-guest,id=x,x-sevm-certs=platform"],
        "-object sev-guest: unknown property 'x-sevm-certs'",
    );
}
