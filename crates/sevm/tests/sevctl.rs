//! The attested launch with the guest owner's files made by `sevctl`
//! (`sevctl session`, `sevctl measurement build`, `sevctl secret build`), as a
//! QEMU user would make them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

both_backends!(
    sevctl_launch => sevctl_session_and_secret_build_drive_the_launch,
    sevctl_session_and_secret_build_drive_the_launch_hardware_under_launcher,
    emulated_without_kvm
);

fn sevctl_launch() {
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
    let session = sevctl_session(&sevctl, d, &unb64(caps["pdh"].as_str().unwrap()), 1);

    let obj = sev_object(&platform, 1, None, &session);
    let mut vm = Sevm::spawn(sev_args(&fw, 16, &obj, Some(&sock)));
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", Value::Null);
    let info = q.ok("query-sev", Value::Null);
    let blob_b64 = q.ok("query-sev-launch-measure", Value::Null)["data"]
        .as_str()
        .unwrap()
        .to_string();

    // `sevctl measurement build` recomputes the blob from the firmware.
    let expected = sevctl_measurement_build(
        &sevctl,
        d,
        &info,
        &blob_b64,
        &["--firmware".into(), fw.display().to_string()],
    );
    assert_eq!(expected, blob_b64, "the measurement verifies");

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
