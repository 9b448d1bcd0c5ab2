//! Snapshot/restore and live migration of an SEV-ES guest through the real
//! binaries on emulated platform directories: the vCPUs' registers travel
//! only as SEND_UPDATE_VMSA packets (stream version 3), the target resumes
//! its vCPUs from the VMSAs it received, the demo guest's memtest verifies
//! its memory afterwards, and the policy refuses as for a plain SEV guest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;

use common::*;
use serde_json::{json, Value};

const PAGES: u32 = 64;
const MEM_MIB: u32 = 24;
/// Policy NODBG | ES.
const ES: u32 = 0x5;
/// Policy NODBG | ES | NOSEND.
const ES_NOSEND: u32 = 0xD;

fn args(fw: &Path, platform: &Path, policy: u32, qmp: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = migration_args(fw, platform, policy, MEM_MIB, qmp, extra);
    a.extend(["-smp", "2", "-cpu", "EPYC-Milan"].map(String::from));
    a
}

/// Another platform with the same owner and roots but its own PDH, UNINIT.
fn es_sibling_platform(d: &Path, name: &str) -> PathBuf {
    let p = sibling_platform(d, name);
    uninit(&p);
    p
}

/// The target platform's chains for the source, the target left UNINIT.
fn set_es_target_chain(q: &mut Qmp, target: &Path) {
    set_target_chain(q, target);
    uninit(target);
}

/// After the move: the registers stay protected on the target, and the
/// guest verifies its whole range and exits 0.
fn finish_and_verify_es(vm: &mut Sevm, out: &Receiver<String>, qmp: &Path) {
    finish_and_verify(vm, out, qmp, PAGES, |q| {
        let x = q.ok(
            "human-monitor-command",
            json!({"command-line": "x /4xb 0xfffffff0"}),
        );
        let text = x.as_str().unwrap();
        assert!(text.contains("register state is protected"), "{text}");
    });
}

#[test]
fn es_snapshot_restores_from_the_vmsas_it_carries() {
    const TEST: &str = "es_snapshot_restores_from_the_vmsas_it_carries";
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let a = fresh_platform(d, "a");
    let fw = memtest_image(d, PAGES, 0);
    let snap = d.join("guest.snap");
    let qa = d.join("a.sock");

    let mut src = Sevm::spawn(args(&fw, &a, ES, &qa, &[]));
    let out = serial(&mut src);
    let mut q = src.qmp(&qa);
    q.ok("qmp_capabilities", Value::Null);
    wait_line(&out, "memtest: filled");
    q.ok(
        "migrate",
        json!({"uri": format!("file:{}", snap.display())}),
    );
    let info = migration_result(&mut q);
    assert_eq!(info["status"], "completed", "{info}");
    assert_eq!(q.ok("query-status", Value::Null)["status"], "postmigrate");
    q.ok("quit", Value::Null);
    assert_exit(src.wait(), 0, &src.stderr_text());

    // Stream version 3 (SEV-ES), and no guest plaintext in the file.
    let bytes = std::fs::read(&snap).unwrap();
    assert_eq!(&bytes[..8], b"SEVMMIG\0");
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 3);
    assert!(!bytes.windows(9).any(|w| w == b"memtest: "));

    let mut dst = Sevm::spawn(args(
        &fw,
        &a,
        ES,
        &qa,
        &["-incoming", &format!("file:{}", snap.display())],
    ));
    let out = serial(&mut dst);
    assert!(
        dst.wait_for_stderr("incoming migration complete"),
        "{}",
        dst.stderr_text()
    );
    finish_and_verify_es(&mut dst, &out, &qa);
}

#[test]
fn es_live_migration_moves_a_writing_guest() {
    const TEST: &str = "es_live_migration_moves_a_writing_guest";
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let a = fresh_platform(d, "a");
    let b = es_sibling_platform(d, "b");
    let fw = memtest_image(d, PAGES, 0);
    let (qa, qb) = (d.join("a.sock"), d.join("b.sock"));
    let inb = d.join("in-b.sock");

    let mut src = Sevm::spawn(args(&fw, &a, ES, &qa, &[]));
    let out_a = serial(&mut src);
    let mut q = src.qmp(&qa);
    q.ok("qmp_capabilities", Value::Null);
    wait_line(&out_a, "memtest: filled");
    set_es_target_chain(&mut q, &b);

    let incoming = format!("unix:{}", inb.display());
    let mut dst = Sevm::spawn(args(&fw, &b, ES, &qb, &["-incoming", &incoming]));
    assert!(
        dst.wait_for_stderr("incoming migration: waiting on"),
        "{}",
        dst.stderr_text()
    );
    let out_b = serial(&mut dst);
    q.ok("migrate", json!({ "uri": incoming }));
    let info = migration_result(&mut q);
    assert_eq!(info["status"], "completed", "{info}");
    assert!(
        dst.wait_for_stderr("incoming migration complete"),
        "{}",
        dst.stderr_text()
    );
    finish_and_verify_es(&mut dst, &out_b, &qb);
    q.ok("quit", Value::Null);
    assert_exit(src.wait(), 0, &src.stderr_text());
}

#[test]
fn es_nosend_refuses_migration_and_the_guest_keeps_running() {
    const TEST: &str = "es_nosend_refuses_migration_and_the_guest_keeps_running";
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let a = fresh_platform(d, "a");
    let b = es_sibling_platform(d, "b");
    let fw = memtest_image(d, PAGES, 0);
    let qa = d.join("a.sock");
    let snap = d.join("guest.snap");

    let mut vm = Sevm::spawn(args(&fw, &a, ES_NOSEND, &qa, &[]));
    let mut q = vm.qmp(&qa);
    q.ok("qmp_capabilities", Value::Null);
    set_es_target_chain(&mut q, &b);
    q.ok(
        "migrate",
        json!({"uri": format!("file:{}", snap.display())}),
    );
    let info = migration_result(&mut q);
    assert_eq!(info["status"], "failed", "{info}");
    let e = info["error-desc"].as_str().unwrap();
    assert!(e.contains("SEND_START failed: POLICY_FAILURE"), "{e}");
    assert!(e.contains("NOSEND"), "{e}");
    assert!(!snap.exists());
    assert_eq!(q.ok("query-status", Value::Null)["status"], "running");
    q.ok("quit", Value::Null);
    assert_exit(vm.wait(), 0, &vm.stderr_text());
}
