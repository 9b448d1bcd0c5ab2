//! QMP against the real binary with a guest without SEV: the protocol,
//! run-state changes, events, garbage, and the guest's exit status.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_exit, demo_image, Sevm};
use serde_json::json;

#[test]
fn prelaunch_cont_guest_exit_and_garbage_keep_the_vmm_running() {
    if !sevm_testutil::kvm("prelaunch_cont_guest_exit_and_garbage_keep_the_vmm_running") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fw = demo_image(dir.path());
    let sock = dir.path().join("qmp.sock");
    let mut vm = Sevm::spawn([
        "-bios".as_ref(),
        fw.as_os_str(),
        "-m".as_ref(),
        "16".as_ref(),
        "-S".as_ref(),
        "-name".as_ref(),
        "plain".as_ref(),
        "-qmp".as_ref(),
        format!("unix:{},server=on,wait=off", sock.display()).as_ref(),
    ]);
    let mut q = vm.qmp(&sock);
    assert_eq!(q.greeting["QMP"]["version"]["qemu"]["major"], 9);
    // Before negotiation.
    let r = q.cmd("query-status", serde_json::Value::Null);
    assert_eq!(r["error"]["class"], "CommandNotFound", "{r}");
    q.ok("qmp_capabilities", serde_json::Value::Null);
    assert_eq!(
        q.ok("query-status", serde_json::Value::Null),
        json!({"running": false, "singlestep": false, "status": "prelaunch"})
    );
    assert_eq!(
        q.ok("query-name", serde_json::Value::Null),
        json!({"name": "plain"})
    );
    // Garbage of every kind: errors, and the VMM keeps going.
    q.send_raw(b"{\"execute\": \n");
    q.send_raw(b"}\n");
    let r = q.reply();
    assert_eq!(r["error"]["class"], "GenericError", "{r}");
    q.send_raw(b"[1, 2]\n");
    assert!(q.reply()["error"]["desc"]
        .as_str()
        .unwrap()
        .contains("must be a JSON object"));
    let r = q.cmd("no-such-command", serde_json::Value::Null);
    assert_eq!(r["error"]["class"], "CommandNotFound");
    let r = q.cmd(
        "sev-inject-launch-secret",
        json!({"packet-header": 1, "secret": "x"}),
    );
    assert!(
        r["error"]["desc"]
            .as_str()
            .unwrap()
            .contains("'packet-header'"),
        "{r}"
    );
    // No SEV on this guest.
    let e = q.err("query-sev", serde_json::Value::Null);
    assert!(e.contains("SEV feature is not available"), "{e}");
    let e = q.err("query-sev-launch-measure", serde_json::Value::Null);
    assert!(e.contains("not available"), "{e}");
    // stop in prelaunch is a no-op, as in QEMU.
    q.ok("stop", serde_json::Value::Null);
    assert_eq!(
        q.ok("query-status", serde_json::Value::Null)["status"],
        "prelaunch"
    );
    q.ok("cont", serde_json::Value::Null);
    q.event("RESUME");
    let shutdown = q.event("SHUTDOWN");
    assert_eq!(
        shutdown["data"],
        json!({"guest": true, "reason": "guest-shutdown"})
    );
    let st = vm.wait();
    let out = vm.stdout_text();
    assert_exit(st, 0, &vm.stderr_text());
    assert!(out.contains("sevm demo guest: hello"), "{out}");
    assert!(out.contains("no secret injected"), "{out}");
    assert!(!sock.exists(), "socket removed at exit");
}

#[test]
fn quit_in_prelaunch_replies_then_shuts_down() {
    if !sevm_testutil::kvm("quit_in_prelaunch_replies_then_shuts_down") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fw = demo_image(dir.path());
    let sock = dir.path().join("q.sock");
    let mut vm = Sevm::spawn([
        "-bios".as_ref(),
        fw.as_os_str(),
        "-m".as_ref(),
        "16".as_ref(),
        "-S".as_ref(),
        "-qmp".as_ref(),
        format!("unix:{},server=on,wait=off", sock.display()).as_ref(),
    ]);
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", serde_json::Value::Null);
    let r = q.cmd("quit", serde_json::Value::Null);
    assert_eq!(r, json!({"return": {}}));
    let ev = q.event("SHUTDOWN");
    assert_eq!(
        ev["data"],
        json!({"guest": false, "reason": "host-qmp-quit"})
    );
    let st = vm.wait();
    assert_exit(st, 0, &vm.stderr_text());
    assert!(!vm.stdout_text().contains("hello"), "the guest never ran");
}

#[test]
fn sigterm_shuts_down_like_qemu() {
    if !sevm_testutil::kvm("sigterm_shuts_down_like_qemu") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fw = demo_image(dir.path());
    let sock = dir.path().join("t.sock");
    let mut vm = Sevm::spawn([
        "-bios".as_ref(),
        fw.as_os_str(),
        "-m".as_ref(),
        "16".as_ref(),
        "-S".as_ref(),
        "-qmp".as_ref(),
        format!("unix:{},server=on,wait=off", sock.display()).as_ref(),
    ]);
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", serde_json::Value::Null);
    let st = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(vm.child.id().to_string())
        .status()
        .unwrap();
    assert!(st.success());
    let ev = q.event("SHUTDOWN");
    assert_eq!(ev["data"], json!({"guest": false, "reason": "host-signal"}));
    let st = vm.wait();
    let err = vm.stderr_text();
    assert_exit(st, 0, &err);
    assert!(err.contains("sevm: terminating on signal 15"), "{err}");
    assert!(!sock.exists(), "socket removed");
}

/// `-name ...,debug-threads=on` names the vCPU threads as QEMU does.
#[test]
fn debug_threads_name_the_vcpu_threads_like_qemu() {
    if !sevm_testutil::kvm("debug_threads_name_the_vcpu_threads_like_qemu") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A firmware that halts with interrupts enabled: it runs until quit.
    let mut image = vec![0xF4u8; 0x10000];
    image[0xFFF0..0xFFF2].copy_from_slice(&[0xFB, 0xF4]); // sti; hlt
    let fw = dir.path().join("idle.fd");
    std::fs::write(&fw, image).unwrap();
    for (debug_threads, expected) in [
        ("on", ["CPU 0/KVM", "CPU 1/KVM"]),
        ("off", ["vcpu0", "vcpu1"]),
    ] {
        let sock = dir.path().join(format!("t{debug_threads}.sock"));
        let mut vm = Sevm::spawn([
            "-bios".as_ref(),
            fw.as_os_str(),
            "-m".as_ref(),
            "16".as_ref(),
            "-smp".as_ref(),
            "2".as_ref(),
            "-S".as_ref(),
            "-name".as_ref(),
            format!("guest=t,debug-threads={debug_threads}").as_ref(),
            "-qmp".as_ref(),
            format!("unix:{},server=on,wait=off", sock.display()).as_ref(),
        ]);
        let mut q = vm.qmp(&sock);
        q.ok("qmp_capabilities", serde_json::Value::Null);
        q.ok("cont", serde_json::Value::Null);
        let tasks = format!("/proc/{}/task", vm.child.id());
        let thread_names = || -> Vec<String> {
            std::fs::read_dir(&tasks)
                .unwrap()
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|n| n.trim_end().to_string())
                .collect()
        };
        // Each vCPU thread names itself as it starts.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let names = loop {
            let names = thread_names();
            if expected.iter().all(|e| names.iter().any(|n| n == e))
                || std::time::Instant::now() > deadline
            {
                break names;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        q.ok("quit", serde_json::Value::Null);
        let st = vm.wait();
        assert_exit(st, 0, &vm.stderr_text());
        for name in expected {
            assert!(
                names.iter().any(|n| n == name),
                "{debug_threads}: {names:?}"
            );
        }
    }
}
