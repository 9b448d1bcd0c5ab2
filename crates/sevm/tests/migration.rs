//! Snapshot/restore and live migration through the real binaries on
//! emulated platform directories: the demo guest's memtest keeps rewriting
//! memory while it moves and verifies all of it afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver};
use std::time::Instant;

use common::*;
use serde_json::{json, Value};

const PAGES: u32 = 64;
const MEM_MIB: u32 = 24;

fn memtest_image(dir: &Path) -> PathBuf {
    common::memtest_image(dir, PAGES, 0)
}

fn args(fw: &Path, platform: &Path, policy: u32, qmp: &Path, extra: &[&str]) -> Vec<String> {
    migration_args(fw, platform, policy, MEM_MIB, qmp, extra)
}

/// After the move: the guest verifies its whole range and exits 0.
fn finish_and_verify_guest(vm: &mut Sevm, out: &Receiver<String>, qmp: &Path) {
    finish_and_verify(vm, out, qmp, PAGES, |_| {});
}

fn start_target(fw: &Path, platform: &Path, qmp: &Path, incoming: &str) -> Sevm {
    let vm = Sevm::spawn(args(fw, platform, 0x1, qmp, &["-incoming", incoming]));
    assert!(
        vm.wait_for_stderr("incoming migration: waiting on"),
        "{}",
        vm.stderr_text()
    );
    vm
}

both_backends!(
    snapshot_restore => snapshot_restores_on_its_platform_only_and_hides_plaintext,
    snapshot_restores_on_its_platform_only_and_hides_plaintext_hardware_under_launcher
);

fn snapshot_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let a = fresh_platform(d, "a");
    let fw = memtest_image(d);
    let snap = d.join("guest.snap");
    let qa = d.join("a.sock");

    let mut src = Sevm::spawn(args(&fw, &a, 0x1, &qa, &[]));
    let out = serial(&mut src);
    let mut q = src.qmp(&qa);
    q.ok("qmp_capabilities", Value::Null);
    wait_line(&out, "memtest: filled");
    snapshot_amd_chain(&mut q, &a);
    q.ok(
        "migrate",
        json!({"uri": format!("file:{}", snap.display())}),
    );
    let info = migration_result(&mut q);
    assert_eq!(info["status"], "completed", "{info}");
    assert!(info["ram"]["transferred"].as_u64().unwrap() > (MEM_MIB as u64) << 20);
    assert!(info["downtime"].as_u64().is_some(), "{info}");
    // The guest was sent: this copy stays paused (postmigrate) and cannot run again.
    assert_eq!(q.ok("query-status", Value::Null)["status"], "postmigrate");
    let e = q.err("cont", Value::Null);
    assert!(e.contains("migrated away"), "{e}");
    q.ok("quit", Value::Null);
    assert_exit(src.wait(), 0, &src.stderr_text());
    assert!(!d.read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("sevm-tmp")));

    // No guest plaintext in the file: the firmware's strings and code.
    let bytes = std::fs::read(&snap).unwrap();
    let image = std::fs::read(&fw).unwrap();
    for needle in [
        sevm_demo::GREETING.as_bytes(),
        b"memtest: ",
        &image[image.len() - 64..],
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "plaintext {needle:?} found in the snapshot"
        );
    }

    // Another platform (different PDH) cannot restore it.
    let b = sibling_platform(d, "b");
    let qb = d.join("b.sock");
    let mut other = Sevm::spawn(args(
        &fw,
        &b,
        0x1,
        &qb,
        &["-incoming", &format!("file:{}", snap.display())],
    ));
    let st = other.wait();
    let err = other.stderr_text();
    assert_exit(st, 1, &err);
    assert!(err.contains("RECEIVE_START failed"), "{err}");
    assert!(!other.stdout_text().contains("memtest"));

    // Its own platform restores it and the guest continues.
    let mut dst = Sevm::spawn(args(
        &fw,
        &a,
        0x1,
        &qa,
        &["-incoming", &format!("file:{}", snap.display())],
    ));
    let out = serial(&mut dst);
    assert!(dst.wait_for_stderr("incoming migration complete"));
    finish_and_verify_guest(&mut dst, &out, &qa);
}

/// A unix-socket man in the middle the test controls.
struct Proxy {
    path: PathBuf,
    done: Receiver<Vec<u8>>,
}

/// Forwards one connection from `listen` to `target`; `tamper` sees each
/// chunk with its stream offset and may change it or cut the stream
/// (returning false). Sends the bytes it forwarded when done; the target's
/// replies are passed back.
fn proxy(
    listen: &Path,
    target: PathBuf,
    mut tamper: impl FnMut(u64, &mut [u8]) -> bool + Send + 'static,
) -> Proxy {
    let l = UnixListener::bind(listen).unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let (mut from, _) = l.accept().unwrap();
        let mut to = UnixStream::connect(&target).unwrap();
        let (mut back_from, mut back_to) = (to.try_clone().unwrap(), from.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut back_from, &mut back_to);
            let _ = back_to.shutdown(std::net::Shutdown::Both);
        });
        let mut all = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &mut buf[..n];
            if !tamper(all.len() as u64, chunk) {
                break;
            }
            all.extend_from_slice(chunk);
            if to.write_all(chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
        let _ = tx.send(all);
    });
    Proxy {
        path: listen.to_path_buf(),
        done: rx,
    }
}

both_backends!(
    live_migration => live_migration_moves_a_writing_guest_and_replay_elsewhere_is_refused,
    live_migration_moves_a_writing_guest_and_replay_elsewhere_is_refused_hardware_under_launcher
);

fn live_migration() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let a = fresh_platform(d, "a");
    let b = sibling_platform(d, "b");
    let fw = memtest_image(d);
    let (qa, qb) = (d.join("a.sock"), d.join("b.sock"));
    let inb = d.join("in-b.sock");

    let mut src = Sevm::spawn(args(&fw, &a, 0x1, &qa, &[]));
    let out_a = serial(&mut src);
    let mut q = src.qmp(&qa);
    q.ok("qmp_capabilities", Value::Null);
    wait_line(&out_a, "memtest: filled");
    set_target_chain(&mut q, &b);

    let mut dst = start_target(&fw, &b, &qb, &format!("unix:{}", inb.display()));
    let out_b = serial(&mut dst);
    let p = proxy(&d.join("proxy.sock"), inb.clone(), |_, _| true);
    q.ok(
        "migrate",
        json!({"uri": format!("unix:{}", p.path.display())}),
    );
    let info = migration_result(&mut q);
    assert_eq!(info["status"], "completed", "{info}");
    assert!(
        info["ram"]["dirty-sync-count"].as_u64().unwrap() >= 1,
        "{info}"
    );
    assert!(info["ram"]["remaining"] == 0, "{info}");
    let stream = p.done.recv_timeout(WAIT).unwrap();
    // Pre-copy with dirty logging ran (pass 1 while the guest wrote).
    let log = src.stderr_text();
    assert!(log.contains("migration pass 1 done"), "{log}");
    assert!(!log.contains("stop-and-copy only"), "{log}");
    assert!(dst.wait_for_stderr("incoming migration complete"));
    finish_and_verify_guest(&mut dst, &out_b, &qb);
    q.ok("quit", Value::Null);
    assert_exit(src.wait(), 0, &src.stderr_text());

    // The recorded stream replayed into a third platform: refused before
    // anything runs (the session is wrapped for B's PDH). Replayed into B
    // again it would restore a clone (documented in the README, "Replay").
    let c = sibling_platform(d, "c");
    let replay = d.join("replay.bin");
    std::fs::write(&replay, &stream).unwrap();
    let mut third = Sevm::spawn(args(
        &fw,
        &c,
        0x1,
        &d.join("c.sock"),
        &["-incoming", &format!("file:{}", replay.display())],
    ));
    let st = third.wait();
    let err = third.stderr_text();
    assert_exit(st, 1, &err);
    assert!(err.contains("RECEIVE_START failed"), "{err}");
}

both_backends!(
    failed_migrations_and_retry => failed_migrations_leave_the_source_running_and_a_retry_succeeds,
    failed_migrations_leave_the_source_running_and_a_retry_succeeds_hardware_under_launcher
);

fn failed_migrations_and_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let a = fresh_platform(d, "a");
    let b = sibling_platform(d, "b");
    let fw = memtest_image(d);
    let (qa, qb) = (d.join("a.sock"), d.join("b.sock"));

    let mut src = Sevm::spawn(args(&fw, &a, 0x1, &qa, &[]));
    let out_a = serial(&mut src);
    let mut q = src.qmp(&qa);
    q.ok("qmp_capabilities", Value::Null);
    wait_line(&out_a, "memtest: filled");
    set_target_chain(&mut q, &b);

    // 1. A corrupted byte inside a page's transport bytes: the target's
    //    firmware refuses the packet, the target exits without running.
    let inb = d.join("in1.sock");
    let mut t1 = start_target(&fw, &b, &qb, &format!("unix:{}", inb.display()));
    const FLIP: u64 = 600_000;
    let p = proxy(&d.join("p1.sock"), inb, |off, chunk| {
        if (off..off + chunk.len() as u64).contains(&FLIP) {
            chunk[(FLIP - off) as usize] ^= 0x40;
        }
        true
    });
    q.ok(
        "migrate",
        json!({"uri": format!("unix:{}", p.path.display())}),
    );
    let info = migration_result(&mut q);
    assert_eq!(info["status"], "failed", "{info}");
    let st = t1.wait();
    let err = t1.stderr_text();
    assert_exit(st, 1, &err);
    assert!(
        err.contains("BAD_MEASUREMENT") || err.contains("malformed"),
        "{err}"
    );
    assert!(!t1.stdout_text().contains("memtest"));
    assert_eq!(q.ok("query-status", Value::Null)["status"], "running");
    assert_eq!(q.ok("query-sev", Value::Null)["state"], "running");

    // 2. The target dies mid-stream.
    let inb = d.join("in2.sock");
    let mut t2 = Some(start_target(
        &fw,
        &b,
        &qb,
        &format!("unix:{}", inb.display()),
    ));
    let p = proxy(&d.join("p2.sock"), inb, move |off, _| {
        if off > (2 << 20) {
            // Dropping the handle kills the target (SIGKILL) and reaps it.
            drop(t2.take());
            return false;
        }
        true
    });
    q.ok(
        "migrate",
        json!({"uri": format!("unix:{}", p.path.display())}),
    );
    let info = migration_result(&mut q);
    assert_eq!(info["status"], "failed", "{info}");
    assert!(info["error-desc"].as_str().is_some(), "{info}");
    assert_eq!(q.ok("query-status", Value::Null)["status"], "running");

    // 3. migrate_cancel while throttled.
    let inb = d.join("in3.sock");
    let mut t3 = start_target(&fw, &b, &qb, &format!("unix:{}", inb.display()));
    q.ok("migrate-set-parameters", json!({"max-bandwidth": 1 << 20}));
    q.ok("migrate", json!({"uri": format!("unix:{}", inb.display())}));
    // Pages are on their way (the target has the header: a connection
    // that never sent one would not be the migration, and the target would
    // keep waiting for its source).
    let deadline = Instant::now() + WAIT;
    while q.ok("query-migrate", Value::Null)["ram"]["transferred"]
        .as_u64()
        .unwrap_or(0)
        < 64 << 10
    {
        assert!(Instant::now() < deadline, "no pages were sent");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    q.ok("migrate_cancel", Value::Null);
    let info = migration_result(&mut q);
    assert_eq!(info["status"], "cancelled", "{info}");
    assert_exit(t3.wait(), 1, &t3.stderr_text());
    q.ok("migrate-set-parameters", json!({"max-bandwidth": 0}));

    // 4. A working target (over tcp this time): the retry succeeds and the
    //    guest verifies.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut t4 = start_target(&fw, &b, &qb, &format!("tcp:127.0.0.1:{port}"));
    let out4 = serial(&mut t4);
    q.ok("migrate", json!({"uri": format!("tcp:127.0.0.1:{port}")}));
    let info = migration_result(&mut q);
    assert_eq!(info["status"], "completed", "{info}");
    assert!(t4.wait_for_stderr("incoming migration complete"));
    finish_and_verify_guest(&mut t4, &out4, &qb);
    q.ok("quit", Value::Null);
    assert_exit(src.wait(), 0, &src.stderr_text());
}

both_backends!(
    send_start_policy => the_source_firmware_enforces_the_policy_on_the_target_chain,
    the_source_firmware_enforces_the_policy_on_the_target_chain_hardware_under_launcher
);

fn send_start_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let a = fresh_platform(d, "a");
    let sibling = sibling_platform(d, "sibling");
    // A platform of another owner, with other roots and an older firmware.
    let stranger = d.join("stranger");
    let opts = sev_psp::CreateOptions {
        ark_bits: 2048,
        api: sev_proto::abi::ApiVersion::new(1, 40),
        ..Default::default()
    };
    sev_psp::Platform::create(&stranger, opts, sev_psp::rng::seeded_rng(0x5742)).unwrap();
    let fw = spin_firmware(d);
    let qa = d.join("a.sock");
    let api_1_55: u32 = (1 << 16) | (55 << 24);

    // (policy, target, expected error text or None for success)
    let cases: [(u32, &Path, Option<&str>); 7] = [
        (0x8, &sibling, Some("NOSEND")),
        (0x10, &stranger, Some("DOMAIN")),
        (0x10, &sibling, None),
        (0x20, &stranger, Some("not a root this platform trusts")),
        (0x20, &sibling, None),
        (api_1_55, &stranger, Some("requires firmware API 1.55")),
        (api_1_55, &sibling, None),
    ];
    for (i, (policy, target, expect)) in cases.into_iter().enumerate() {
        let mut vm = Sevm::spawn(args(&fw, &a, policy, &qa, &[]));
        let mut q = vm.qmp(&qa);
        q.ok("qmp_capabilities", Value::Null);
        set_target_chain(&mut q, target);
        let snap = d.join(format!("snap{i}"));
        q.ok(
            "migrate",
            json!({"uri": format!("file:{}", snap.display())}),
        );
        let info = migration_result(&mut q);
        match expect {
            Some(text) => {
                assert_eq!(info["status"], "failed", "policy {policy:#x}: {info}");
                let e = info["error-desc"].as_str().unwrap();
                assert!(e.contains("SEND_START failed: POLICY_FAILURE"), "{e}");
                // KVM passes on the firmware's status code only: the
                // reason is the emulated backend's.
                assert_eq!(e.contains(text), !hardware(), "{e}");
                assert!(!snap.exists());
                assert_eq!(q.ok("query-status", Value::Null)["status"], "running");
            }
            None => {
                assert_eq!(info["status"], "completed", "policy {policy:#x}: {info}");
                assert!(snap.exists());
            }
        }
        q.ok("quit", Value::Null);
        assert_exit(vm.wait(), 0, &vm.stderr_text());
    }
}

/// Prints "I" and a newline, then `sti; hlt`; were it ever woken it would
/// exit through the debug-exit port with status 9.
fn idle_firmware(dir: &Path) -> PathBuf {
    let mut fw = vec![0xF4u8; 0x10000];
    let code = [
        0xBA, 0xF8, 0x03, // mov dx, 0x3f8
        0xB0, b'I', // mov al, 'I'
        0xEE, // out dx, al
        0xB0, b'\n', // mov al, '\n'
        0xEE,  // out dx, al
        0xFB,  // sti
        0xF4,  // hlt
        0xBA, 0x01, 0x05, // mov dx, 0x501
        0xB0, 9,    // mov al, 9
        0xEE, // out dx, al
    ];
    // Longer than the 16 bytes above the reset vector: the code sits 256
    // bytes lower and the reset vector jumps to it.
    let at = fw.len() - 0x100;
    fw[at..at + code.len()].copy_from_slice(&code);
    let vec = fw.len() - 16;
    // jmp near (rel16) from the reset vector back to `at`.
    let rel = (at as i64 - (vec as i64 + 3)) as i16;
    fw[vec] = 0xE9;
    fw[vec + 1..vec + 3].copy_from_slice(&rel.to_le_bytes());
    let p = dir.join("idle.fd");
    std::fs::write(&p, fw).unwrap();
    p
}

both_backends!(
    idle_guest_snapshot => an_idle_halted_guest_stays_halted_through_snapshot_and_restore,
    an_idle_halted_guest_stays_halted_through_snapshot_and_restore_hardware_under_launcher
);

fn idle_guest_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let a = fresh_platform(d, "a");
    let fw = idle_firmware(d);
    let snap = d.join("idle.snap");
    let qa = d.join("a.sock");

    let mut src = Sevm::spawn(args(&fw, &a, 0x1, &qa, &[]));
    let out = serial(&mut src);
    let mut q = src.qmp(&qa);
    q.ok("qmp_capabilities", Value::Null);
    wait_line(&out, "I");
    // Halted, not ended: the machine keeps running (idle).
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(q.ok("query-status", Value::Null)["status"], "running");
    snapshot_amd_chain(&mut q, &a);
    q.ok(
        "migrate",
        json!({"uri": format!("file:{}", snap.display())}),
    );
    let info = migration_result(&mut q);
    assert_eq!(info["status"], "completed", "{info}");
    q.ok("quit", Value::Null);
    assert_exit(src.wait(), 0, &src.stderr_text());

    // Restored, the vCPU is still halted: it neither re-runs the code
    // before the hlt (no second "I") nor goes past it (no exit 9).
    let qb = d.join("b.sock");
    let mut dst = Sevm::spawn(args(
        &fw,
        &a,
        0x1,
        &qb,
        &["-incoming", &format!("file:{}", snap.display())],
    ));
    let out = serial(&mut dst);
    assert!(dst.wait_for_stderr("incoming migration complete"));
    let mut q = Qmp::connect(&qb);
    q.ok("qmp_capabilities", Value::Null);
    if q.ok("query-status", Value::Null)["status"] != "running" {
        q.event("RESUME");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(q.ok("query-status", Value::Null)["status"], "running");
    assert!(out.try_recv().is_err(), "the restored guest printed again");
    q.ok("quit", Value::Null);
    assert_exit(dst.wait(), 0, &dst.stderr_text());
}
