//! One firmware per platform, through the real binaries: several sevm VMs
//! and `sev-platform status` on one emulated platform directory see the
//! same platform — both guests counted, distinct handles, a third VM's
//! `handle=` sharing a NOKS-free guest's key, and a NOKS guest's handle
//! refused with the firmware's POLICY_FAILURE.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{json, Value};

const TEST: &str = "vms_and_sev_platform_share_one_emulated_platform";

/// `sev-platform` (from sev-tools): `$SEV_PLATFORM_BIN`, or the one built
/// beside this build's sevm (`cargo test --workspace` builds both).
fn sev_platform_bin() -> Option<PathBuf> {
    let path = std::env::var_os("SEV_PLATFORM_BIN").map_or_else(
        || Path::new(env!("CARGO_BIN_EXE_sevm")).with_file_name("sev-platform"),
        PathBuf::from,
    );
    if path.is_file() {
        return Some(path);
    }
    sevm_testutil::skip(
        TEST,
        &format!(
            "{} not built (cargo build -p sev-tools, or set SEV_PLATFORM_BIN)",
            path.display()
        ),
    );
    None
}

/// `sev-platform status` of the emulated platform in `dir`: (state, guests).
fn platform_status(bin: &Path, dir: &Path) -> (String, u64) {
    let out = Command::new(bin)
        .arg(format!("--emulated={}", dir.display()))
        .args(["--json", "status"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["status"];
    (
        s["state"].as_str().unwrap_or_default().to_string(),
        s["guests"].as_u64().unwrap(),
    )
}

/// A VM on `platform` stopped before its first instruction (-S), with its
/// QMP connection, its handle and the host view of its firmware's first
/// page (encrypted by LAUNCH_UPDATE_DATA under the guest's key).
struct Vm {
    _vm: Sevm,
    q: Qmp,
    handle: u64,
}

fn start(d: &Path, name: &str, platform: &Path, fw: &Path, policy: u32, extra: &str) -> Vm {
    let sock = d.join(format!("{name}.sock"));
    let obj = sev_object(platform, policy, None, extra);
    let vm = Sevm::spawn(sev_args(fw, 16, &obj, Some(&sock)));
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", Value::Null);
    let info = q.ok("query-sev", Value::Null);
    assert_eq!(info["state"], "launch-secret", "{info}");
    assert_eq!(info["policy"], policy, "{info}");
    let handle = info["handle"].as_u64().unwrap();
    Vm { _vm: vm, q, handle }
}

fn firmware_page(vm: &mut Vm, d: &Path, fw: &Path, name: &str) -> Vec<u8> {
    let fw_len = std::fs::metadata(fw).unwrap().len();
    let out = d.join(format!("{name}.page"));
    vm.q.ok(
        "pmemsave",
        json!({"val": (1u64 << 32) - fw_len, "size": 4096, "filename": out}),
    );
    std::fs::read(out).unwrap()
}

both_backends!(
    shared_platform => vms_and_sev_platform_share_one_emulated_platform,
    vms_and_sev_platform_share_one_emulated_platform_hardware_under_launcher
);

fn shared_platform() {
    let Some(tool) = sev_platform_bin() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    let fw = demo_image(d);

    let mut a = start(d, "a", &platform, &fw, 0x0, "");
    let mut b = start(d, "b", &platform, &fw, 0x2 /* NOKS */, "");
    assert_ne!(a.handle, b.handle, "handles are unique on the platform");
    assert_eq!(
        platform_status(&tool, &platform),
        ("WORKING".to_string(), 2)
    );

    // `handle=` of a NOKS-free guest of another sevm shares its key: the
    // same firmware at the same address reads as the same ciphertext.
    let mut c = start(
        d,
        "c",
        &platform,
        &fw,
        0x0,
        &format!(",handle={}", a.handle),
    );
    assert!(c.handle != a.handle && c.handle != b.handle);
    assert_eq!(platform_status(&tool, &platform).1, 3);
    let page_a = firmware_page(&mut a, d, &fw, "a");
    assert_eq!(page_a, firmware_page(&mut c, d, &fw, "c"));
    let page_b = firmware_page(&mut b, d, &fw, "b");
    if host_view_is_ciphertext() {
        assert_ne!(page_a, page_b);
    } else {
        // Under the launcher every guest runs unencrypted: the host sees
        // the image; the sharing shows in the firmware's answers (the
        // guest count above, the NOKS refusal below).
        let image = std::fs::read(&fw).unwrap();
        assert_eq!(page_a, image[..4096]);
        assert_eq!(page_b, image[..4096]);
    }

    // The NOKS guest's handle is refused with the firmware's status.
    let sock = d.join("e.sock");
    let obj = sev_object(&platform, 0x0, None, &format!(",handle={}", b.handle));
    let mut e = Sevm::spawn(sev_args(&fw, 16, &obj, Some(&sock)));
    let st = e.wait();
    let err = e.stderr_text();
    assert!(!st.success(), "{err}");
    assert!(err.contains("POLICY_FAILURE"), "{err}");
    assert_eq!(platform_status(&tool, &platform).1, 3);

    // A VM that quits takes its guest with it.
    for vm in [&mut a, &mut b, &mut c] {
        vm.q.ok("quit", Value::Null);
    }
    drop((a, b, c));
    assert_eq!(platform_status(&tool, &platform), ("INIT".to_string(), 0));
}
