//! The cost of `sev-emulate` (docs/guide/sev-emulate.md#benchmark): the
//! added cost per intercepted ioctl, and for a whole launch, against the
//! same operations on sevm's own emulated backend, measured in the same run.
//!
//! 1. Per ioctl: SEV_PLATFORM_STATUS and SEV_GET_ID2 issued `CALLS` times
//!    with `libc::ioctl` by this binary re-run under the launcher, against
//!    the same commands called in-process on `sev_psp::Platform` (the
//!    emulated backend) on the same platform directory; `ROUNDS` rounds,
//!    alternating, medians.
//! 2. Whole launch: `sev-emulate -- sev-owner launch --device /dev/sev`
//!    (sevm's hardware backend under the launcher) against `sev-owner
//!    launch --emulated DIR`, process start to guest exit, alternating,
//!    medians; and QEMU's launch under the launcher (`-S` start to
//!    `query-sev-launch-measure`, and to the guest's exit after the owner's
//!    measurement check, the secret and `cont`) when QEMU is installed.
//!
//! `cargo bench -p sev-emulate --bench emulate` (needs /dev/kvm for part 2;
//! builds the release `sev-tools` binaries and `sevm` when missing).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/qemu.rs"]
mod qemu;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::raw::{self, issue};
use common::{
    emu, ok, output_polled, output_within, p, platform_copy, platform_tool, tool, workspace_bin,
    DEADLINE, LAUNCHER,
};
use qemu::GUID;

/// Set in the re-run of this binary under the launcher: its ioctl loops.
const CHILD: &str = "SEV_EMULATE_BENCH_CHILD";
const CALLS: u32 = 2000;
const ROUNDS: usize = 11;
const LAUNCHES: usize = 9;
const PLATFORM_STATUS: u32 = 1;
const GET_ID2: u32 = 8;
const SECRET: &str = "emulate benchmark secret";

fn us(d: Duration, n: u32) -> f64 {
    d.as_secs_f64() * 1e6 / f64::from(n)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `min–max` of `v`.
fn spread(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.1}–{max:.1}")
}

/// `{u64 address, u32 length}` of GET_ID2.
#[repr(C, packed)]
struct AddrLen {
    address: u64,
    length: u32,
}

/// The child half: the ioctl loops under the launcher; prints µs per call.
fn child() {
    let fd = raw::open("/dev/sev", libc::O_RDWR | libc::O_CLOEXEC).expect("open /dev/sev");
    let mut st = [0u8; 12];
    assert_eq!(issue(fd, PLATFORM_STATUS, st.as_mut_ptr() as u64), (0, 0));
    let t = Instant::now();
    for _ in 0..CALLS {
        assert_eq!(issue(fd, PLATFORM_STATUS, st.as_mut_ptr() as u64).0, 0);
    }
    let status = t.elapsed();
    let mut id = [0u8; 64];
    let mut q = AddrLen {
        address: id.as_mut_ptr() as u64,
        length: 64,
    };
    let qp = std::ptr::addr_of_mut!(q) as u64;
    assert_eq!(issue(fd, GET_ID2, qp), (0, 0));
    let t = Instant::now();
    for _ in 0..CALLS {
        assert_eq!(issue(fd, GET_ID2, qp).0, 0);
    }
    let get_id = t.elapsed();
    assert_ne!(id, [0u8; 64], "GET_ID2 wrote no id");
    println!(
        "status {:.3} get_id {:.3}",
        us(status, CALLS),
        us(get_id, CALLS)
    );
}

/// The in-process baseline: the same commands on `sev_psp::Platform`.
fn in_process(platform: &sev_psp::Platform) -> (f64, f64) {
    platform.platform_status().unwrap();
    let t = Instant::now();
    for _ in 0..CALLS {
        std::hint::black_box(platform.platform_status().unwrap());
    }
    let status = t.elapsed();
    let mut id = [0u8; 64];
    let t = Instant::now();
    for _ in 0..CALLS {
        std::hint::black_box(platform.get_id(&mut id).unwrap());
    }
    (us(status, CALLS), us(t.elapsed(), CALLS))
}

fn per_ioctl(plat: &Path) {
    let platform = sev_psp::Platform::open(plat, sev_psp::rng::os_rng()).unwrap();
    let (mut e_st, mut e_id, mut l_st, mut l_id) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let (s, i) = in_process(&platform);
        e_st.push(s);
        e_id.push(i);
        let out = ok(
            output_within(
                Command::new(LAUNCHER)
                    .arg("--platform")
                    .arg(plat)
                    .arg("--")
                    .arg(std::env::current_exe().unwrap())
                    .env(CHILD, "1"),
                DEADLINE,
            ),
            "the ioctl loops under sev-emulate",
        );
        let f: Vec<f64> = out
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert_eq!(f.len(), 2, "child output: {out}");
        l_st.push(f[0]);
        l_id.push(f[1]);
    }
    println!(
        "\nper ioctl: {CALLS} calls per round, {ROUNDS} rounds alternating, median µs per call"
    );
    println!(
        "{:<22} {:>14} {:>14} {:>12} {:>8}",
        "command", "sev-emulate", "in-process", "added", "ratio"
    );
    for (name, l, e) in [
        ("SEV_PLATFORM_STATUS", l_st, e_st),
        ("SEV_GET_ID2", l_id, e_id),
    ] {
        let (l, e) = (median(l), median(e));
        println!(
            "{name:<22} {l:>14.2} {e:>14.2} {:>12.2} {:>7.1}x",
            l - e,
            l / e
        );
    }
}

struct Setup {
    dir: PathBuf,
    plat: PathBuf,
    firmware: PathBuf,
    ca: PathBuf,
    ark: PathBuf,
}

fn whole_launch(s: &Setup) {
    let sevm = workspace_bin("sevm", "sevm", &["--bin", "sevm"]);
    let owner = tool("sev-owner");
    let secret = format!("{GUID}:={SECRET}");
    let launch = |device: &[&str], work: &Path| -> Duration {
        let mut a = vec!["launch", "--sevm", p(&sevm)];
        a.extend_from_slice(device);
        a.extend([
            "--firmware",
            p(&s.firmware),
            "--ca",
            p(&s.ca),
            "--trust-ark",
            p(&s.ark),
            "--work-dir",
            p(work),
            "--secret",
            &secret,
        ]);
        let mut cmd = if device[0] == "--device" {
            let mut c = Command::new(LAUNCHER);
            c.arg("--platform").arg(&s.plat).arg("--").arg(&owner);
            c
        } else {
            Command::new(&owner)
        };
        let (o, el) = timed(cmd.args(&a));
        let out = ok(o, &format!("sev-owner launch {device:?}"));
        assert!(out.contains(&format!("secret {GUID}: {SECRET}")), "{out}");
        let _ = std::fs::remove_dir_all(work);
        el
    };
    let (mut hw, mut em) = (vec![], vec![]);
    for i in 0..=LAUNCHES {
        let h = launch(&["--device", "/dev/sev"], &s.dir.join(format!("hw{i}")));
        let e = launch(&["--emulated", p(&s.plat)], &s.dir.join(format!("em{i}")));
        if i > 0 {
            // Round 0 is the warm-up (page cache, first KVM VM).
            hw.push(ms(h));
            em.push(ms(e));
        }
    }
    let em_spread = spread(&em);
    let em_median = median(em);
    println!(
        "\nwhole launch of the demo guest (process start to guest exit), {LAUNCHES} rounds alternating after a warm-up, median ms"
    );
    println!(
        "{:<58} {:>10} {:>14} {:>10} {:>8}",
        "launch", "ms", "min–max", "added", "ratio"
    );
    println!(
        "{:<58} {:>10.1} {:>14} {:>10} {:>8}",
        "sev-owner launch --emulated DIR (baseline)", em_median, em_spread, "", ""
    );
    let hw_spread = spread(&hw);
    let hw = median(hw);
    println!(
        "{:<58} {hw:>10.1} {hw_spread:>14} {:>10.1} {:>7.2}x",
        "sev-emulate -- sev-owner launch --device /dev/sev",
        hw - em_median,
        hw / em_median
    );
    qemu_launch(s, em_median);
}

/// Runs `cmd` (stdin closed) to its exit, killed after `DEADLINE`: its
/// output and its time from spawn to exit, polled every millisecond (the
/// tests' `output_within` polls every 20 ms, too coarse for a timing).
fn timed(cmd: &mut Command) -> (Output, Duration) {
    output_polled(cmd, DEADLINE, Duration::from_millis(1))
}

/// QEMU's launch under the launcher, the session made once beforehand
/// (from QEMU's capabilities, by `sev-owner session`).
fn qemu_launch(s: &Setup, em_median: f64) {
    if !qemu::installed("emulate benchmark (QEMU rows)") {
        println!("QEMU rows skipped: {} is not installed", qemu::QEMU);
        return;
    }
    let caps = qemu::capabilities(&s.dir, &s.plat);
    qemu::owner_session(&s.dir, &s.ca, &s.ark);
    let (mut to_measure, mut to_exit) = (vec![], vec![]);
    for i in 0..=LAUNCHES {
        let serial = s.dir.join(format!("serial{i}.log"));
        let t = Instant::now();
        let mut vm = qemu::start_guest(&s.dir, &s.plat, &s.firmware, &caps, &serial);
        let launch = qemu::Launch::query(&mut vm);
        let measured = t.elapsed();
        launch.verify(&s.dir, &s.firmware);
        launch.inject_secret(&mut vm, &s.dir, &s.firmware, SECRET);
        qemu::run_to_exit(&mut vm, &serial, SECRET);
        let exited = t.elapsed();
        if i > 0 {
            to_measure.push(ms(measured));
            to_exit.push(ms(exited));
        }
    }
    for (name, v) in [
        (
            "sev-emulate -- qemu -S: start to query-sev-launch-measure",
            to_measure,
        ),
        (
            "sev-emulate -- qemu: start to guest exit (owner steps)",
            to_exit,
        ),
    ] {
        let sp = spread(&v);
        let m = median(v);
        println!(
            "{name:<58} {m:>10.1} {sp:>14} {:>10.1} {:>7.2}x",
            m - em_median,
            m / em_median
        );
    }
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let plat = platform_copy(&dir);
    println!(
        "sev-emulate benchmark: emulated platform (RSA-2048 roots), {} CPUs",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    per_ioctl(&plat);

    if !sevm_testutil::kvm("emulate benchmark (whole launch)") {
        println!("whole-launch rows skipped: no /dev/kvm");
        return;
    }
    let (ca, ark) = (dir.join("ca.cert"), dir.join("ark.cert"));
    let chain = dir.join("chain.full");
    let e = emu(&plat);
    ok(
        platform_tool(&[
            &e,
            "export",
            "--full",
            p(&chain),
            "--ca",
            p(&ca),
            "--ark",
            p(&ark),
        ]),
        "sev-platform export",
    );
    let firmware = dir.join("demo.fd");
    sevm_demo::write_image(&firmware).unwrap();
    whole_launch(&Setup {
        dir,
        plat,
        firmware,
        ca,
        ark,
    });
}
