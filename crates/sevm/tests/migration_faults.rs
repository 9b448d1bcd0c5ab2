//! Migration and snapshot control under faults, through the real binary:
//! every QMP run-state command in every migration phase, against peers that
//! stall, stay silent, send garbage or vanish; the hand-over's commit
//! protocol; the incoming side held by strangers; snapshot files in hostile
//! directories. Every case must end within a bound with the source either
//! running as before or cleanly handed over — never both, never hung.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use sevm::demo::{DemoMode, DemoOptions, MemtestOptions, DEFAULT_IMAGE_SIZE};
use sevm::migration::handover;
use sevm::migration::stream::{Reader, Record};

const MEM_MIB: u32 = 24;
/// `x-peer-timeout` of these tests: every wait on a peer ends this fast.
const PEER_TIMEOUT_MS: u64 = 1500;
/// The most any single case may take (timeouts included).
const CASE_BOUND: Duration = Duration::from_secs(20);

fn memtest_image(dir: &Path) -> PathBuf {
    let image = sevm::demo::build(&DemoOptions {
        size: DEFAULT_IMAGE_SIZE,
        mode: DemoMode::Memtest(MemtestOptions {
            base: 16 << 20,
            pages: 64,
            max_passes: 0,
            progress_every: 8,
        }),
    })
    .unwrap();
    let p = dir.join("memtest.fd");
    std::fs::write(&p, image).unwrap();
    p
}

fn args(fw: &Path, platform: &Path, qmp: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = sev_args(fw, MEM_MIB, &sev_object(platform, 0x1, None, ""), None);
    a.extend([
        "-qmp".to_string(),
        format!("unix:{},server=on,wait=off", qmp.display()),
        "-serial".into(),
        "stdio".into(),
    ]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn serial(vm: &mut Sevm) -> Receiver<String> {
    let out = vm.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a serial line containing `needle`.
fn wait_line(rx: &Receiver<String>, needle: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return,
            Ok(_) => {}
            Err(e) => panic!("no serial line {needle:?} ({e})"),
        }
    }
}

/// The guest runs: it prints a new progress line.
fn assert_guest_runs(rx: &Receiver<String>) {
    while rx.try_recv().is_ok() {}
    wait_line(rx, "memtest: pass");
}

/// A source VM with the memtest guest running and the target chain set.
struct Source {
    vm: Sevm,
    q: Qmp,
    out: Receiver<String>,
}

fn start_source(d: &Path, fw: &Path, a: &Path, b: &Path, name: &str) -> Source {
    let qa = d.join(format!("{name}.qmp"));
    let mut vm = Sevm::spawn(args(fw, a, &qa, &[]));
    let out = serial(&mut vm);
    let mut q = vm.qmp(&qa);
    q.ok("qmp_capabilities", Value::Null);
    wait_line(&out, "memtest: filled");
    let (pdh, chain) = export_pdh(b);
    let (ask, ark) = amd_chain(b);
    q.ok(
        "migrate-set-parameters",
        json!({"sev-pdh": b64(&pdh), "sev-plat-cert": b64(&chain),
               "sev-amd-cert": b64(&[ask, ark].concat()),
               "x-peer-timeout": PEER_TIMEOUT_MS}),
    );
    Source { vm, q, out }
}

/// How a fake migration target behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// Accepts and never reads.
    Stalled,
    /// Reads the whole stream, then never answers.
    Silent,
    /// Answers garbage at once, then reads everything.
    Garbage,
    /// Reads 4 MiB, then closes.
    Vanishing,
    /// Reads the stream, READY, reads COMMIT, CONFIRM: a clean hand-over.
    Confirming,
    /// Reads the stream, READY, reads COMMIT, then never confirms.
    Unconfirming,
}

/// A fake target on a unix socket; reports whether it read COMMIT.
struct Fake {
    path: PathBuf,
    committed: Receiver<bool>,
}

/// Reads a sevm stream up to its end record; false if it broke off.
fn read_stream(s: &UnixStream) -> bool {
    let Ok((mut r, _)) = Reader::new(BufReader::new(s)) else {
        return false;
    };
    loop {
        match r.next_record() {
            Ok(Record::End { .. }) => return true,
            Ok(rec) => r.recycle(rec),
            Err(_) => return false,
        }
    }
}

fn fake_target(path: &Path, peer: Peer) -> Fake {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        let mut commit = false;
        match peer {
            Peer::Stalled => std::thread::sleep(CASE_BOUND),
            Peer::Silent => {
                read_stream(&s);
                std::thread::sleep(CASE_BOUND);
            }
            Peer::Garbage => {
                let _ = s.write_all(b"\x7fnot an acknowledgement");
                let _ = std::io::copy(&mut s, &mut std::io::sink());
            }
            Peer::Vanishing => {
                let _ = std::io::copy(&mut (&s).take(4 << 20), &mut std::io::sink());
            }
            Peer::Confirming | Peer::Unconfirming => {
                if read_stream(&s) {
                    s.write_all(&[handover::READY]).unwrap();
                    let mut b = [0u8; 1];
                    s.set_read_timeout(Some(CASE_BOUND)).unwrap();
                    commit = s.read_exact(&mut b).is_ok() && b[0] == handover::COMMIT;
                    if commit && peer == Peer::Confirming {
                        let _ = s.write_all(&[handover::CONFIRM]);
                    } else {
                        std::thread::sleep(Duration::from_millis(
                            PEER_TIMEOUT_MS * 2,
                        ));
                    }
                }
            }
        }
        let _ = tx.send(commit);
    });
    Fake {
        path: path.to_path_buf(),
        committed: rx,
    }
}

/// Waits for a MIGRATION event with a final status; returns query-migrate.
fn migration_end(q: &mut Qmp) -> Value {
    loop {
        let e = q.event("MIGRATION");
        let s = e["data"]["status"].as_str().unwrap().to_string();
        if ["completed", "failed", "cancelled"].contains(&s.as_str()) {
            let info = q.ok("query-migrate", Value::Null);
            assert_eq!(info["status"], s.as_str(), "{info}");
            return info;
        }
    }
}

/// Polls query-migrate until `status` (the phase under test).
fn wait_status(q: &mut Qmp, status: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let info = q.ok("query-migrate", Value::Null);
        if info["status"] == status {
            return;
        }
        assert!(
            !["completed", "failed", "cancelled"].contains(&info["status"].as_str().unwrap_or("")),
            "the migration ended before reaching {status}: {info}"
        );
        assert!(Instant::now() < deadline, "never reached {status}: {info}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    /// Nothing: the peer timeout must end the migration.
    Nothing,
    Cont,
    Stop,
    Migrate,
    Snapshot,
    Cancel,
    Quit,
}

/// Drives one command in one phase against one peer, then checks the end.
fn case(d: &Path, src: &mut Source, peer: Peer, phase: &str, cmd: Cmd, n: usize) {
    let what = format!("{peer:?} peer, {phase} phase, {cmd:?}");
    let start = Instant::now();
    let q = &mut src.q;
    // Active: throttled so the phase lasts; device: full speed to the end
    // of the stream, then the wait for the target's answer.
    // With no command, nothing needs the phase to last.
    let bw = if phase == "active" && cmd != Cmd::Nothing {
        2 << 20
    } else {
        0
    };
    q.ok("migrate-set-parameters", json!({"max-bandwidth": bw}));
    let fake = fake_target(&d.join(format!("fake{n}.sock")), peer);
    q.ok("migrate", json!({"uri": format!("unix:{}", fake.path.display())}));
    if cmd != Cmd::Nothing {
        wait_status(q, phase);
    }
    if phase == "device" && cmd != Cmd::Nothing {
        assert_eq!(
            q.ok("query-status", Value::Null)["status"],
            "finish-migrate",
            "{what}"
        );
    }
    let snap = d.join(format!("snap{n}"));
    let mut stopped = false;
    match cmd {
        Cmd::Nothing => {}
        Cmd::Cont => {
            let r = q.cmd("cont", Value::Null);
            if phase == "device" {
                // The source is paused for the hand-over: refuse.
                let e = r["error"]["desc"].as_str().unwrap_or_default();
                assert!(e.contains("migration is in progress"), "{what}: {r}");
            } else {
                // Pre-copy of a running guest: it runs already.
                assert!(r.get("return").is_some(), "{what}: {r}");
            }
        }
        Cmd::Stop => {
            q.ok("stop", Value::Null);
            stopped = true;
        }
        Cmd::Migrate | Cmd::Snapshot => {
            let uri = if cmd == Cmd::Snapshot {
                format!("file:{}", snap.display())
            } else {
                format!("unix:{}", fake.path.display())
            };
            let e = q.err("migrate", json!({ "uri": uri }));
            assert!(e.contains("in progress"), "{what}: {e}");
        }
        Cmd::Cancel => {
            q.ok("migrate_cancel", Value::Null);
        }
        Cmd::Quit => {
            q.ok("quit", Value::Null);
            let st = src.vm.wait();
            assert_exit(st, 0, &src.vm.stderr_text());
            assert!(start.elapsed() < CASE_BOUND, "{what}: took {:?}", start.elapsed());
            // The process is gone: the fake never got COMMIT.
            assert_eq!(fake.committed.recv_timeout(CASE_BOUND).ok(), Some(false), "{what}");
            return;
        }
    }
    if cmd != Cmd::Nothing && cmd != Cmd::Cancel {
        // End it (the peer timeout may have ended it already).
        let r = q.cmd("migrate_cancel", Value::Null);
        assert!(r.get("return").is_some(), "{what}: {r}");
    }
    let info = migration_end(q);
    let status = info["status"].as_str().unwrap().to_string();
    match cmd {
        Cmd::Cancel => assert_eq!(status, "cancelled", "{what}: {info}"),
        Cmd::Nothing => {
            assert_eq!(status, "failed", "{what}: {info}");
            let e = info["error-desc"].as_str().unwrap();
            let expect = match peer {
                Peer::Stalled | Peer::Silent => "x-peer-timeout",
                Peer::Garbage => "not an acknowledgement",
                _ => "",
            };
            assert!(e.contains(expect), "{what}: {e}");
        }
        _ => assert!(status == "cancelled" || status == "failed", "{what}: {info}"),
    }
    assert!(start.elapsed() < CASE_BOUND, "{what}: took {:?}", start.elapsed());
    assert!(!snap.exists(), "{what}: a refused snapshot left a file");
    // Never both: the source runs it as before (paused if `stop` asked for it).
    let want = if stopped { "paused" } else { "running" };
    assert_eq!(q.ok("query-status", Value::Null)["status"], want, "{what}");
    assert_eq!(q.ok("query-sev", Value::Null)["state"], "running", "{what}");
    if stopped {
        q.ok("cont", Value::Null);
    }
    let t = Instant::now();
    assert_guest_runs(&src.out);
    eprintln!("case {what}: {:?} (guest check {:?})", start.elapsed(), t.elapsed());
}

/// The matrix: every run-state command in every reachable migration phase
/// against stalled, silent, garbage-sending and vanishing targets.
#[test]
fn every_run_state_command_in_every_phase_against_faulty_targets() {
    if !sevm_testutil::kvm("every_run_state_command_in_every_phase_against_faulty_targets") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let a = fresh_platform(d, "a");
    let b = fresh_platform(d, "b");
    let fw = memtest_image(d);
    let cmds = [
        Cmd::Nothing,
        Cmd::Cont,
        Cmd::Stop,
        Cmd::Migrate,
        Cmd::Snapshot,
        Cmd::Cancel,
        Cmd::Quit,
    ];
    let plans = [
        (Peer::Stalled, "active"),
        (Peer::Silent, "active"),
        (Peer::Silent, "device"),
        (Peer::Garbage, "active"),
        (Peer::Vanishing, "active"),
    ];
    let mut n = 0;
    for (peer, phase) in plans {
        let mut src = start_source(d, &fw, &a, &b, &format!("src{n}"));
        for cmd in cmds {
            if cmd == Cmd::Nothing && peer == Peer::Vanishing {
                // Ends by itself (connection lost) — covered below.
                continue;
            }
            n += 1;
            // Quit comes last: it ends this source.
            case(d, &mut src, peer, phase, cmd, n);
        }
    }
    // A vanishing target ends the migration by itself.
    let mut src = start_source(d, &fw, &a, &b, "vanish");
    src.q.ok("migrate-set-parameters", json!({"max-bandwidth": 0}));
    let fake = fake_target(&d.join("vanish.sock"), Peer::Vanishing);
    src.q.ok(
        "migrate",
        json!({"uri": format!("unix:{}", fake.path.display())}),
    );
    let info = migration_end(&mut src.q);
    assert_eq!(info["status"], "failed", "{info}");
    assert_eq!(src.q.ok("query-status", Value::Null)["status"], "running");
    assert_guest_runs(&src.out);
    src.q.ok("quit", Value::Null);
    assert_exit(src.vm.wait(), 0, &src.vm.stderr_text());
}

/// The hand-over: a target that confirms gets the guest (the source stays in
/// postmigrate and refuses to run it); one that reads COMMIT and never
/// confirms may run it, so the source refuses to run it too.
#[test]
fn the_hand_over_never_leaves_two_running_copies() {
    if !sevm_testutil::kvm("the_hand_over_never_leaves_two_running_copies") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let a = fresh_platform(d, "a");
    let b = fresh_platform(d, "b");
    let fw = memtest_image(d);
    for (i, peer) in [Peer::Confirming, Peer::Unconfirming].into_iter().enumerate() {
        let mut src = start_source(d, &fw, &a, &b, &format!("h{i}"));
        let fake = fake_target(&d.join(format!("h{i}.sock")), peer);
        let start = Instant::now();
        src.q.ok(
            "migrate",
            json!({"uri": format!("unix:{}", fake.path.display())}),
        );
        let info = migration_end(&mut src.q);
        assert!(start.elapsed() < CASE_BOUND);
        assert!(fake.committed.recv_timeout(CASE_BOUND).unwrap());
        if peer == Peer::Confirming {
            assert_eq!(info["status"], "completed", "{info}");
        } else {
            assert_eq!(info["status"], "failed", "{info}");
            let e = info["error-desc"].as_str().unwrap();
            assert!(e.contains("hand-over is unconfirmed"), "{e}");
        }
        assert_eq!(
            src.q.ok("query-status", Value::Null)["status"],
            "postmigrate"
        );
        let e = src.q.err("cont", Value::Null);
        assert!(e.contains("cannot run again"), "{e}");
        let e = src.q.err("migrate", json!({"uri": "file:/nonexistent/x"}));
        assert!(e.contains("already migrated"), "{e}");
        // The guest does not run here.
        while src.out.try_recv().is_ok() {}
        std::thread::sleep(Duration::from_millis(300));
        assert!(src.out.try_recv().is_err(), "the sent guest ran on");
        src.q.ok("quit", Value::Null);
        assert_exit(src.vm.wait(), 0, &src.vm.stderr_text());
    }
}
