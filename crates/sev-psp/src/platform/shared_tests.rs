//! One firmware per platform directory: two [`Platform`] objects on one
//! directory stand for two processes (their guests' records are locked
//! through different open files, exactly as between processes), and one
//! test kills a real child process.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sev_proto::abi::{GuestState, PlatformState, Policy, Status};

use super::tests::fresh;
use super::*;
use crate::memory::{firmware_write, Region, VecBacking};
use crate::rng::seeded_rng;

fn status_of(r: Result<impl Sized, FwError>) -> Status {
    match r {
        Ok(_) => Status::Success,
        Err(e) => e.status,
    }
}

fn mem() -> VecBacking {
    VecBacking::new(&[Region {
        gpa: 0,
        len: 0x10_0000,
    }])
    .unwrap()
}

fn count(p: &Platform) -> u32 {
    p.platform_status().unwrap().guest_count
}

fn run_dir(f: &super::tests::Fresh) -> std::path::PathBuf {
    f.path.join("run")
}

#[test]
fn two_processes_see_one_platform_and_unique_handles() {
    let f = fresh(40);
    let other = Platform::open(&f.path, seeded_rng(41)).unwrap();
    assert_eq!(
        other.platform_status().unwrap().state,
        PlatformState::Uninit
    );
    f.p.init(true).unwrap();
    let st = other.platform_status().unwrap();
    assert_eq!((st.state, st.es_enabled), (PlatformState::Init, true));
    assert_eq!(status_of(other.init(false)), Status::InvalidPlatformState);

    let a =
        f.p.launch_start(0, Policy::from_bits(0), None, None)
            .unwrap();
    let b = other
        .launch_start(0, Policy::from_bits(Policy::NODBG), None, None)
        .unwrap();
    let c =
        f.p.launch_start(0, Policy::from_bits(0), None, None)
            .unwrap();
    assert!(a != b && b != c && a != c, "{a} {b} {c}");
    for p in [&f.p, &other] {
        let st = p.platform_status().unwrap();
        assert_eq!((st.state, st.guest_count), (PlatformState::Working, 3));
    }
    // GUEST_STATUS reaches another process's guest, and sees its state
    // changes.
    let seen = f.p.guest_status(b).unwrap();
    assert_eq!(
        (seen.handle, seen.policy.bits(), seen.state, seen.asid),
        (b, Policy::NODBG, GuestState::LaunchUpdate, 0)
    );
    other.activate(b, 5).unwrap();
    other.launch_measure(b, &mut [0; 48]).unwrap();
    let seen = f.p.guest_status(b).unwrap();
    assert_eq!((seen.state, seen.asid), (GuestState::LaunchSecret, 5));
    // Other commands act on this process's guests only.
    let e = f.p.launch_finish(b).unwrap_err();
    assert_eq!(e.status, Status::InvalidGuest);
    assert!(e.detail.contains("another process"), "{e}");
    assert_eq!(status_of(f.p.decommission(b)), Status::InvalidGuest);
    // The platform-wide state decides the platform commands.
    assert_eq!(status_of(other.pek_gen()), Status::InvalidPlatformState);
    assert_eq!(
        status_of(other.platform_reset()),
        Status::InvalidPlatformState
    );
    other.pdh_gen().unwrap();
    // The last guest gone (whoever's) moves the platform back to INIT.
    f.p.decommission(a).unwrap();
    f.p.decommission(c).unwrap();
    assert_eq!(
        other.platform_status().unwrap().state,
        PlatformState::Working
    );
    other.deactivate(b).unwrap();
    other.decommission(b).unwrap();
    let st = f.p.platform_status().unwrap();
    assert_eq!((st.state, st.guest_count), (PlatformState::Init, 0));
    other.pek_gen().unwrap();
}

#[test]
fn key_sharing_reaches_another_process_unless_noks() {
    let f = fresh(42);
    let other = Platform::open(&f.path, seeded_rng(43)).unwrap();
    f.p.init(false).unwrap();
    let (mem_a, mem_b) = (mem(), mem());
    let page: Vec<u8> = (0..0x1000).map(|i| (i * 7 + 1) as u8).collect();
    firmware_write(&mem_a, 0x3000, &page).unwrap();
    firmware_write(&mem_b, 0x3000, &page).unwrap();

    let a =
        f.p.launch_start(0, Policy::from_bits(0), None, None)
            .unwrap();
    f.p.activate(a, 5).unwrap();
    let shared = other
        .launch_start(a, Policy::from_bits(0), None, None)
        .unwrap();
    let own = other
        .launch_start(0, Policy::from_bits(0), None, None)
        .unwrap();
    // ASIDs are platform-wide: a guest with another key cannot take a's;
    // one sharing its key may.
    assert_eq!(status_of(other.activate(own, 5)), Status::AsidOwned);
    assert_eq!(other.activate_free_asid(own).unwrap(), 6);
    other.activate(shared, 5).unwrap();
    f.p.launch_update_data(a, &mem_a, 0x3000, 0x1000).unwrap();
    other
        .launch_update_data(shared, &mem_b, 0x3000, 0x1000)
        .unwrap();
    other.launch_update_data(own, &mem_b, 0, 0x1000).unwrap();
    let view = |p: &Platform, h: u32, m: &VecBacking, gpa: u64| {
        let mut buf = [0u8; 64];
        p.host_read(h, m, gpa, &mut buf).unwrap();
        buf
    };
    // The same plaintext at the same address reads as the same ciphertext
    // under the shared key, as on hardware.
    assert_eq!(
        view(&f.p, a, &mem_a, 0x3000),
        view(&other, shared, &mem_b, 0x3000)
    );
    firmware_write(&mem_b, 0x3000, &page).unwrap();
    assert_ne!(
        view(&f.p, a, &mem_a, 0x3000),
        view(&other, own, &mem_b, 0x3000)
    );

    // NOKS on either side refuses sharing, whichever process asks.
    let noks =
        f.p.launch_start(0, Policy::from_bits(Policy::NOKS), None, None)
            .unwrap();
    assert_eq!(
        status_of(other.launch_start(noks, Policy::from_bits(0), None, None)),
        Status::PolicyFailure
    );
    assert_eq!(
        status_of(other.launch_start(a, Policy::from_bits(Policy::NOKS), None, None)),
        Status::PolicyFailure
    );
    assert_eq!(
        status_of(other.launch_start(999, Policy::from_bits(0), None, None)),
        Status::InvalidGuest
    );
}

#[test]
fn released_asids_need_df_flush_across_processes() {
    let f = fresh(44);
    let other = Platform::open(&f.path, seeded_rng(45)).unwrap();
    f.p.init(false).unwrap();
    let a =
        f.p.launch_start(0, Policy::from_bits(0), None, None)
            .unwrap();
    assert_eq!(f.p.activate_free_asid(a).unwrap(), 5);
    assert_eq!(f.p.activate_free_asid(a).unwrap(), 5, "keeps its ASID");
    f.p.deactivate(a).unwrap();
    let b = other
        .launch_start(0, Policy::from_bits(0), None, None)
        .unwrap();
    assert_eq!(status_of(other.activate(b, 5)), Status::DfFlushRequired);
    // KVM's allocation skips released ASIDs ...
    assert_eq!(other.activate_free_asid(b).unwrap(), 6);
    other.deactivate(b).unwrap();
    // ... and DF_FLUSHes when only released ones are left (ASIDs 5..=16).
    let mut held = Vec::new();
    for _ in 7..=16 {
        let h = other
            .launch_start(0, Policy::from_bits(0), None, None)
            .unwrap();
        held.push((h, other.activate_free_asid(h).unwrap()));
    }
    assert_eq!(held.last().map(|x| x.1), Some(16));
    let c =
        f.p.launch_start(0, Policy::from_bits(0), None, None)
            .unwrap();
    assert_eq!(f.p.activate_free_asid(c).unwrap(), 5);
    let d =
        f.p.launch_start(0, Policy::from_bits(0), None, None)
            .unwrap();
    assert_eq!(f.p.activate_free_asid(d).unwrap(), 6);
    let e =
        f.p.launch_start(0, Policy::from_bits(0), None, None)
            .unwrap();
    assert_eq!(status_of(f.p.activate_free_asid(e)), Status::ResourceLimit);
    // DF_FLUSH by one process clears what another released.
    f.p.deactivate(d).unwrap();
    assert_eq!(status_of(f.p.activate(e, 6)), Status::DfFlushRequired);
    other.df_flush().unwrap();
    f.p.activate(e, 6).unwrap();
}

#[test]
fn a_dropped_platforms_guests_vanish_and_stale_records_are_reaped() {
    let f = fresh(46);
    let other = Platform::open(&f.path, seeded_rng(47)).unwrap();
    f.p.init(false).unwrap();
    let a = other
        .launch_start(0, Policy::from_bits(0), None, None)
        .unwrap();
    let b = other
        .launch_start(0, Policy::from_bits(0), None, None)
        .unwrap();
    other.activate(a, 5).unwrap();
    assert_eq!(count(&f.p), 2);
    let record = run_dir(&f).join(format!("guest-{b}"));
    assert!(record.exists());
    // The process goes away without DECOMMISSION: its records stay on disk,
    // but nobody holds their locks any more.
    drop(other);
    assert!(record.exists(), "reaped by the next reader, not by drop");
    let st = f.p.platform_status().unwrap();
    assert_eq!((st.state, st.guest_count), (PlatformState::Init, 0));
    assert!(!record.exists(), "the stale record was reaped");
    assert_eq!(status_of(f.p.guest_status(a)), Status::InvalidGuest);
    // Torn down as KVM does: the ASID needs DF_FLUSH before reuse.
    let c =
        f.p.launch_start(0, Policy::from_bits(0), None, None)
            .unwrap();
    assert_eq!(status_of(f.p.activate(c, 5)), Status::DfFlushRequired);
    // A record left from before a SHUTDOWN (an older INIT generation) is
    // stale too.
    let stale = run_dir(&f).join(format!("guest-{c}"));
    let kept = std::fs::read(&stale).unwrap();
    let third = Platform::open(&f.path, seeded_rng(48)).unwrap();
    third.shutdown().unwrap();
    third.init(false).unwrap();
    std::fs::write(&stale, kept).unwrap();
    assert_eq!(count(&third), 0);
    assert!(!stale.exists());
}

#[test]
fn commands_on_own_guests_see_other_processes_guests_come_and_go() {
    // ACTIVATE lists run/ only when a process created or removed a guest
    // record since this process last listed it (run/records): it must still
    // see a guest another process made after that, and its end.
    let f = fresh(55);
    let other = Platform::open(&f.path, seeded_rng(56)).unwrap();
    f.p.init(false).unwrap();
    let a =
        f.p.launch_start(0, Policy::from_bits(0), None, None)
            .unwrap();
    let b = other
        .launch_start(0, Policy::from_bits(0), None, None)
        .unwrap();
    other.activate(b, 5).unwrap();
    assert_eq!(status_of(f.p.activate(a, 5)), Status::AsidOwned);
    drop(other);
    // b's record is abandoned: reaped by this process's next command, which
    // releases ASID 5 (DF_FLUSH needed before reuse).
    assert_eq!(status_of(f.p.activate(a, 5)), Status::DfFlushRequired);
    assert_eq!(count(&f.p), 1);
    f.p.df_flush().unwrap();
    f.p.activate(a, 5).unwrap();
}

#[test]
fn a_decommissioned_guests_record_is_reused_and_a_dead_processes_spare_reaped() {
    let f = fresh(57);
    let other = Platform::open(&f.path, seeded_rng(58)).unwrap();
    f.p.init(false).unwrap();
    let spares = || {
        std::fs::read_dir(run_dir(&f))
            .unwrap()
            .filter(|e| {
                let e = e.as_ref().unwrap();
                e.file_name().to_string_lossy().starts_with("spare-")
            })
            .count()
    };
    let a = other
        .launch_start(0, Policy::from_bits(0), None, None)
        .unwrap();
    other.decommission(a).unwrap();
    assert_eq!(spares(), 1, "kept for the next guest");
    assert!(!run_dir(&f).join(format!("guest-{a}")).exists());
    assert_eq!(count(&f.p), 0);
    let b = other
        .launch_start(0, Policy::from_bits(Policy::NODBG), None, None)
        .unwrap();
    assert_ne!(a, b);
    assert_eq!(spares(), 0, "reused");
    let seen = f.p.guest_status(b).unwrap();
    assert_eq!(
        (seen.policy.bits(), seen.state),
        (Policy::NODBG, GuestState::LaunchUpdate)
    );
    other.decommission(b).unwrap();
    assert_eq!(spares(), 1);
    // A spare nobody holds any more is reaped by the next full listing.
    drop(other);
    assert_eq!(count(&f.p), 0);
    assert_eq!(spares(), 0);
}

#[test]
fn shutdown_destroys_every_processes_guests() {
    // The firmware's SHUTDOWN is a platform command: it destroys all guests,
    // whichever process made them. Their owner finds out at its next
    // command.
    let f = fresh(49);
    let other = Platform::open(&f.path, seeded_rng(50)).unwrap();
    let mem = mem();
    f.p.init(false).unwrap();
    let a =
        f.p.launch_start(0, Policy::from_bits(0), None, None)
            .unwrap();
    f.p.activate(a, 5).unwrap();
    other.shutdown().unwrap();
    assert_eq!(
        status_of(f.p.launch_update_data(a, &mem, 0, 0x1000)),
        Status::InvalidPlatformState
    );
    let st = f.p.platform_status().unwrap();
    assert_eq!((st.state, st.guest_count), (PlatformState::Uninit, 0));
    other.init(false).unwrap();
    assert_eq!(status_of(f.p.guest_status(a)), Status::InvalidGuest);
    // Every ASID was released by SHUTDOWN: no DF_FLUSH needed.
    let b = other
        .launch_start(0, Policy::from_bits(0), None, None)
        .unwrap();
    other.activate(b, 5).unwrap();
}

#[test]
fn the_runtime_area_is_private_and_made_on_demand() {
    use std::os::unix::fs::PermissionsExt;
    let f = fresh(51);
    assert!(!run_dir(&f).exists(), "a directory of today's layout");
    f.p.init(false).unwrap();
    let h =
        f.p.launch_start(0, Policy::from_bits(0), None, None)
            .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&run_dir(&f)), 0o700);
    for name in ["platform".to_string(), format!("guest-{h}")] {
        assert_eq!(mode(&run_dir(&f).join(&name)), 0o600, "{name}");
    }
    // A symbolic link in place of the area is refused, never followed.
    let g = fresh(52);
    let elsewhere = g._tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, run_dir(&g)).unwrap();
    let e = g.p.init(false).unwrap_err();
    assert_eq!(e.status, Status::HwErrorPlatform, "{e}");
    assert!(e.detail.contains("not a directory"), "{e}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    // A damaged platform record is reported, never replaced.
    std::fs::write(run_dir(&f).join("platform"), b"junk").unwrap();
    assert_eq!(status_of(f.p.platform_status()), Status::SecureDataInvalid);
}

/// The environment variable that makes [`child_process_holding_a_guest`]
/// run (it is the child of [`a_killed_processes_guests_vanish`]).
const CHILD_DIR: &str = "SEV_PSP_TEST_CHILD_PLATFORM";

#[test]
#[ignore = "the child process of a_killed_processes_guests_vanish, run by it"]
fn child_process_holding_a_guest() {
    let dir = std::env::var(CHILD_DIR).expect("run by a_killed_processes_guests_vanish");
    let p = Platform::open(&dir, seeded_rng(53)).unwrap();
    let h = p.launch_start(0, Policy::from_bits(0), None, None).unwrap();
    p.activate(h, 5).unwrap();
    println!("child-ready {h}");
    // Killed by the parent long before this.
    std::thread::sleep(Duration::from_secs(60));
    panic!("the parent did not kill the child");
}

#[test]
fn a_killed_processes_guests_vanish() {
    let f = fresh(54);
    f.p.init(false).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "platform::shared_tests::child_process_holding_a_guest",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, &f.path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest may print the test's name on the same line first.
            if let Some((_, h)) = line.split_once("child-ready ") {
                let _ = tx.send(h.trim().parse::<u32>().unwrap());
            }
        }
    });
    let h = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    let seen = f.p.guest_status(h).unwrap();
    assert_eq!((seen.state, seen.asid), (GuestState::LaunchUpdate, 5));
    assert_eq!(count(&f.p), 1);
    child.kill().unwrap(); // SIGKILL: no destructor runs in the child
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    // The kernel releases the dead process's locks when it closes its
    // files, which `wait` has seen; loop only to bound a slow release.
    while count(&f.p) != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let st = f.p.platform_status().unwrap();
    assert_eq!((st.state, st.guest_count), (PlatformState::Init, 0));
    assert_eq!(status_of(f.p.guest_status(h)), Status::InvalidGuest);
    let g =
        f.p.launch_start(0, Policy::from_bits(0), None, None)
            .unwrap();
    assert_eq!(status_of(f.p.activate(g, 5)), Status::DfFlushRequired);
}
