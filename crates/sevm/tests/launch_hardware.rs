//! The launch on SEV hardware (`/dev/sev` and KVM_MEMORY_ENCRYPT_OP), run
//! only where `/dev/sev` exists (skipped, and said so, everywhere else).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};

#[test]
fn hardware_launch_measures_and_attests() {
    const TEST: &str = "hardware_launch_measures_and_attests";
    if !sevm_testutil::sev_device(TEST) || !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let fw = demo_image(d);
    let sock = d.join("qmp.sock");
    let mut vm = Sevm::spawn([
        "-bios".to_string(),
        fw.display().to_string(),
        "-m".into(),
        "16".into(),
        "-S".into(),
        "-machine".into(),
        "q35,memory-encryption=sev0".into(),
        "-object".into(),
        "sev-guest,id=sev0,policy=0x1".into(),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", sock.display()),
    ]);
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", Value::Null);
    let info = q.ok("query-sev", Value::Null);
    assert_eq!(info["emulated"], false);
    assert_eq!(info["state"], "launch-secret");
    let blob = unb64(
        q.ok("query-sev-launch-measure", Value::Null)["data"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(blob.len(), 48);
    let caps = q.ok("query-sev-capabilities", Value::Null);
    assert_eq!(unb64(caps["pdh"].as_str().unwrap()).len(), 0x824);
    q.ok("cont", Value::Null);
    let report = q.cmd(
        "query-sev-attestation-report",
        json!({"mnonce": b64(&[9u8; 16])}),
    );
    if let Some(r) = report.get("return") {
        let bytes = unb64(r["data"].as_str().unwrap());
        assert_eq!(&bytes[..16], &[9u8; 16]);
        let image = std::fs::read(&fw).unwrap();
        let ld = sev_proto::ovmf::sev_launch_digest(&image, None).unwrap();
        assert_eq!(&bytes[16..48], &ld);
    }
    q.ok("quit", Value::Null);
    vm.wait();
}
