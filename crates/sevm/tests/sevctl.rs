//! The attested launch with the guest owner's files made by `sevctl`
//! (`sevctl session`, `sevctl measurement build`, `sevctl secret build`), as a
//! QEMU user would make them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

#[test]
fn sevctl_session_and_secret_build_drive_the_launch() {
    const TEST: &str = "sevctl_session_and_secret_build_drive_the_launch";
    let Some(sevctl) = sevctl(TEST) else {
        return;
    };
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    let fw = demo_image(d);
    let sock = d.join("qmp.sock");

    // The host exports the PDH over QMP; the owner runs `sevctl session`.
    let mut vm = Sevm::spawn(sev_args(
        &fw,
        16,
        &sev_object(&platform, 1, None, ""),
        Some(&sock),
    ));
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", Value::Null);
    let caps = q.ok("query-sev-capabilities", Value::Null);
    q.ok("quit", Value::Null);
    assert_exit(vm.wait(), 0, &vm.stderr_text());
    std::fs::write(d.join("pdh.cert"), unb64(caps["pdh"].as_str().unwrap())).unwrap();
    let session = sevctl_words(&sevctl, &["session"]);
    run_ok(
        Command::new(&sevctl)
            .current_dir(d)
            .args(&session)
            .args(["--name", "vm", "pdh.cert", "1"]),
    );
    for f in ["vm_godh.b64", "vm_session.b64", "vm_tek.bin", "vm_tik.bin"] {
        assert!(d.join(f).exists(), "sevctl session wrote no {f}");
    }

    let obj = format!(
        "sev-guest,id=sev0,policy=0x1,sev-device=emulated:{},dh-cert-file={},session-file={}",
        platform.display(),
        d.join("vm_godh.b64").display(),
        d.join("vm_session.b64").display()
    );
    let mut vm = Sevm::spawn(sev_args(&fw, 16, &obj, Some(&sock)));
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", Value::Null);
    let info = q.ok("query-sev", Value::Null);
    let blob_b64 = q.ok("query-sev-launch-measure", Value::Null)["data"]
        .as_str()
        .unwrap()
        .to_string();

    // `sevctl measurement build` recomputes the blob from the firmware.
    let measurement = sevctl_words(&sevctl, &["measurement", "build"]);
    let expected = run_ok(
        Command::new(&sevctl)
            .current_dir(d)
            .args(&measurement)
            .args(["--api-major", &info["api-major"].to_string()])
            .args(["--api-minor", &info["api-minor"].to_string()])
            .args(["--build-id", &info["build-id"].to_string()])
            .args(["--policy", &info["policy"].to_string()])
            .args(["--tik", "vm_tik.bin", "--launch-measure-blob", &blob_b64])
            .arg("--firmware")
            .arg(&fw),
    );
    assert_eq!(expected.trim(), blob_b64, "the measurement verifies");

    // `sevctl secret build` makes the packet.
    let guid = "736869e5-84f0-4973-92ec-06879ce3da0b";
    std::fs::write(d.join("secret.txt"), "made by sevctl").unwrap();
    let secret = sevctl_words(&sevctl, &["secret", "build"]);
    run_ok(
        Command::new(&sevctl)
            .current_dir(d)
            .args(&secret)
            .args(["--tik", "vm_tik.bin", "--tek", "vm_tek.bin"])
            .args(["--launch-measure-blob", &blob_b64])
            .args(["--secret", &format!("{guid}:secret.txt")])
            .args(["header.bin", "payload.bin"]),
    );
    let hdr = std::fs::read(d.join("header.bin")).unwrap();
    let payload = std::fs::read(d.join("payload.bin")).unwrap();
    assert_eq!(hdr.len(), 52);
    q.ok(
        "sev-inject-launch-secret",
        json!({"packet-header": b64(&hdr), "secret": b64(&payload)}),
    );
    q.ok("cont", Value::Null);
    q.event("SHUTDOWN");
    let st = vm.wait();
    let out = vm.stdout_text();
    assert_exit(st, 0, &vm.stderr_text());
    assert!(
        out.contains(&format!("secret {guid}: made by sevctl")),
        "{out}"
    );
}
