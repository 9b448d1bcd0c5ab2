//! Bad input through the real binary: every option malformed in turn gives
//! a clear one-line error and exit code 1, never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{assert_exit, demo_image, sevm_bin};

fn run(args: &[&str]) -> (std::process::ExitStatus, String) {
    let out = Command::new(sevm_bin()).args(args).output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_option_malformed_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let fw = demo_image(dir.path());
    let fw = fw.to_str().unwrap();
    let sev = "-machine";
    let me = "q35,memory-encryption=s0";
    // (args, expected fragment of the message)
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-m", "abc"], "-m"),
        (vec!["-m", "0"], "-m"),
        (vec!["-m"], "-m: requires an argument"),
        (vec!["-smp", "0"], "-smp"),
        (vec!["-smp", "cpus=x"], "-smp"),
        (vec!["-smp", "2,maxcpus=4"], "maxcpus"),
        (vec!["-machine", "type=isapc"], "isapc"),
        (
            vec!["-machine", "q35,memory-encryption=nope"],
            "no -object sev-guest with id 'nope'",
        ),
        (vec!["-object", "sev-guest"], "'id' is required"),
        (vec!["-object", "sev-guest,id=s0,policy=0xzz"], "policy"),
        (vec!["-object", "sev-guest,id=s0,cbitpos=x"], "cbitpos"),
        (vec!["-object", "sev-guest,id=s0,bogus=1"], "bogus"),
        (
            vec!["-object", "sev-guest,id=s0,kernel-hashes=maybe"],
            "kernel-hashes",
        ),
        (vec!["-object", "memory-backend-ram,id=m"], "-object"),
        (
            vec![sev, me, "-object", "sev-guest,id=s0,reduced-phys-bits=0"],
            "reduced-phys-bits",
        ),
        (
            vec![sev, me, "-object", "sev-guest,id=s0,cbitpos=99"],
            "cbitpos",
        ),
        (vec!["-bios", ""], "-bios"),
        (vec!["-drive", "if=ide,file=x"], "pflash"),
        (vec!["-drive", "if=pflash,format=qcow2,file=x"], "qcow2"),
        (
            vec!["-append", "console=ttyS0"],
            "-append only allowed with -kernel",
        ),
        (vec!["-initrd", "x"], "-initrd only allowed with -kernel"),
        (vec!["-qmp", "tcp:localhost:4444"], "TCP"),
        (vec!["-qmp", "unix:/tmp/x"], "client mode"),
        (vec!["-serial", "pty"], "pty"),
        (vec!["-display", "gtk"], "gtk"),
        (vec!["-gdb", "udp::1"], "-gdb"),
        (vec!["-incoming", "exec:cat"], "exec"),
        // qemu64 is accepted (QEMU's default model); qemu32 is not.
        (vec!["-cpu", "qemu32"], "qemu32"),
        (vec!["-name", "x,debug-threads=perhaps"], "debug-threads"),
        (vec!["-accel", "tcg"], "tcg"),
        (vec!["-device", "virtio-net"], "not supported by sevm"),
        (vec!["-no-such-option"], "unknown option"),
        (vec!["disk.img"], "unexpected argument"),
    ];
    for (args, fragment) in cases {
        let mut argv = vec!["-bios", fw];
        argv.extend(&args);
        let (st, err) = run(&argv);
        assert_exit(st, 1, &err);
        assert!(err.starts_with("sevm: "), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line: {err}"
        );
        assert!(
            err.contains(fragment),
            "{args:?}: expected {fragment:?} in {err}"
        );
    }
}

#[test]
fn missing_and_wrong_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fw = demo_image(d);
    let fw = fw.to_str().unwrap();
    let missing = d.join("missing.fd");
    let (st, err) = run(&["-bios", missing.to_str().unwrap()]);
    assert_exit(st, 1, &err);
    assert!(
        err.contains("firmware image") && err.contains("missing.fd"),
        "{err}"
    );
    let empty = d.join("empty.fd");
    std::fs::write(&empty, b"").unwrap();
    let (st, err) = run(&["-bios", empty.to_str().unwrap()]);
    assert_exit(st, 1, &err);
    assert!(err.contains("is empty"), "{err}");
    let (st, err) = run(&[]);
    assert_exit(st, 1, &err);
    assert!(err.contains("no firmware given"), "{err}");
    // SEV on the default device of a host without SEV: an error naming the
    // device and the explicit emulated alternative, never a silent fallback.
    let (st, err) = run(&[
        "-bios",
        fw,
        "-machine",
        "q35,memory-encryption=s0",
        "-object",
        "sev-guest,id=s0,sev-device=/nonexistent/sev",
    ]);
    assert_exit(st, 1, &err);
    assert!(err.starts_with("sevm: -object sev-guest,id=s0: "), "{err}");
    assert!(
        err.contains("/nonexistent/sev") && err.contains("emulated:"),
        "{err}"
    );
    assert!(!err.contains("EMULATED"), "{err}");
}

#[test]
fn help_version_and_demo_image() {
    let out = Command::new(sevm_bin()).arg("-version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("QEMU 9.2.0"));
    let out = Command::new(sevm_bin()).arg("-help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("sev-guest"));
    let (st, err) = run(&["-write-demo-guest", "/nonexistent/dir/x.fd"]);
    assert_exit(st, 1, &err);
    assert!(err.contains("cannot write the demo guest image"), "{err}");
}
