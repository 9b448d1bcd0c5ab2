//! Cold start of `sevm` launching the demo guest, from process start to the
//! guest's exit, next to the time of just creating a KVM VM measured in the
//! same run; and the VMM's memory overhead (peak RSS minus the guest memory
//! touched).
//!
//! ```text
//! cargo bench -p sevm --bench coldstart [-- RUNS]
//! SEVM_BENCH_BASELINE=/path/to/old/sevm cargo bench -p sevm --bench coldstart
//! ```
//!
//! With a baseline binary, every sevm row runs alternately with it and with
//! this build (same machine, same moment) and prints both, with the ratio of
//! the medians (this build / baseline).
//!
//! Rows: the demo guest (2 MiB firmware) on the emulated SEV platform (a
//! fresh platform directory with 2048-bit roots, made once), the same
//! guest without SEV, the guest with 8 vCPUs as a plain SEV and as an
//! SEV-ES guest (run alternately, with the difference of their medians),
//! the guest with one vCPU as a plain SEV and as an SNP guest (alternately,
//! with the ratio of their medians),
//! `KVM_CREATE_VM` alone (in this process), and spawning
//! `/bin/true` (process start cost).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SEVM: &str = env!("CARGO_BIN_EXE_sevm");

struct Run {
    wall: Duration,
    maxrss_kib: u64,
    guest_kib: Option<u64>,
    code: i32,
}

/// Runs `program args` (reaped with `wait4` for its rusage), returning its wall time, peak RSS and exit code
/// (and the guest memory sevm reports at exit).
#[allow(clippy::zombie_processes)] // reaped by wait4 below
fn run(program: &str, args: &[&str]) -> Run {
    let start = Instant::now();
    let child = Command::new(program)
        .args(args)
        .env("RUST_LOG", "sevm::vmm=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stderr = child.stderr.unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet reaped (std's Child is never
    // waited on here); `status` and `usage` are live out-parameters.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(rc, pid, "wait4 failed");
    let guest_kib = err
        .lines()
        .find_map(|l| l.split("guest memory resident at exit: ").nth(1))
        .and_then(|v| v.trim_end_matches(" KiB").trim().parse().ok());
    Run {
        wall,
        maxrss_kib: usage.ru_maxrss as u64,
        guest_kib,
        code: libc::WEXITSTATUS(status),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn stats(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    (ms(v[0]), ms(v[v.len() / 2]), ms(v[v.len() - 1]))
}

fn row(name: &str, v: Vec<Duration>) {
    let (min, med, max) = stats(v);
    println!("{name:<44} {min:>9.2} {med:>9.2} {max:>9.2}");
}

fn sevm_rows(name: &str, args: &[&str], runs: usize, baseline: Option<&str>) {
    let mut walls = Vec::new();
    let mut base_walls = Vec::new();
    let mut overhead = Vec::new();
    for _ in 0..runs {
        let r = run(SEVM, args);
        assert_eq!(r.code, 0, "sevm {args:?} failed");
        walls.push(r.wall);
        if let Some(g) = r.guest_kib {
            overhead.push((r.maxrss_kib, g));
        }
        if let Some(old) = baseline {
            let r = run(old, args);
            assert_eq!(r.code, 0, "baseline {old} {args:?} failed");
            base_walls.push(r.wall);
        }
    }
    if baseline.is_some() {
        let (_, new_med, _) = stats(walls.clone());
        let (_, old_med, _) = stats(base_walls.clone());
        row(&format!("{name} (baseline)"), base_walls);
        row(&format!("{name} (this build)"), walls);
        println!(
            "    this build / baseline (medians): {:.2}",
            new_med / old_med
        );
    } else {
        row(name, walls);
    }
    overhead.sort();
    if let Some(&(rss, guest)) = overhead.get(overhead.len() / 2) {
        println!(
            "    memory: peak RSS {:.1} MiB, guest memory touched {:.1} MiB, VMM overhead {:.1} MiB",
            rss as f64 / 1024.0,
            guest as f64 / 1024.0,
            rss.saturating_sub(guest) as f64 / 1024.0
        );
    }
}

/// Two configurations run alternately (same machine, same moment): their
/// rows and the difference of the medians (`b` − `a`).
fn paired_rows(a: (&str, &[&str]), b: (&str, &[&str]), runs: usize) {
    let (mut wa, mut wb) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        for ((_, args), walls) in [(a, &mut wa), (b, &mut wb)] {
            let r = run(SEVM, args);
            assert_eq!(r.code, 0, "sevm {args:?} failed");
            walls.push(r.wall);
        }
    }
    let (_, med_a, _) = stats(wa.clone());
    let (_, med_b, _) = stats(wb.clone());
    row(a.0, wa);
    row(b.0, wb);
    println!(
        "    difference of the medians: {:+.2} ms, ratio {:.2}",
        med_b - med_a,
        med_b / med_a
    );
}

/// A new emulated platform (2048-bit roots: key generation is not what is
/// measured).
fn platform_dir(dir: &Path) -> Option<std::path::PathBuf> {
    let path = dir.join("platform");
    let opts = sev_psp::CreateOptions {
        ark_bits: 2048,
        ..Default::default()
    };
    match sev_psp::Platform::create(&path, opts, sev_psp::rng::os_rng()) {
        Ok(_) => Some(path),
        Err(e) => {
            println!("cannot create an emulated platform: {e}");
            None
        }
    }
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(30);
    let baseline = std::env::var("SEVM_BENCH_BASELINE").ok();
    let baseline = baseline.as_deref();
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        println!("SKIPPED: coldstart: /dev/kvm not available");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fw = dir.path().join("demo.fd");
    assert!(Command::new(SEVM)
        .arg("-write-demo-guest")
        .arg(&fw)
        .status()
        .unwrap()
        .success());
    let fw = fw.to_str().unwrap().to_string();

    println!("sevm cold start, {runs} runs each (ms)");
    println!("{:<44} {:>9} {:>9} {:>9}", "", "min", "median", "max");
    if let Some(pdir) = platform_dir(dir.path()) {
        let sev = format!(
            "sev-guest,id=sev0,policy=0x1,sev-device=emulated:{}",
            pdir.display()
        );
        sevm_rows(
            "demo guest, emulated SEV, 2 MiB firmware",
            &[
                "-bios",
                &fw,
                "-m",
                "16",
                "-serial",
                "null",
                "-machine",
                "q35,memory-encryption=sev0",
                "-object",
                &sev,
            ],
            runs,
            baseline,
        );
        // SEV-ES against plain SEV, 8 vCPUs each, interleaved.
        let es = format!(
            "sev-guest,id=sev0,policy=0x5,sev-device=emulated:{}",
            pdir.display()
        );
        let args = |object: &str, vcpus: &str| -> Vec<String> {
            [
                "-bios",
                &fw,
                "-m",
                "16",
                "-serial",
                "null",
                "-smp",
                vcpus,
                "-cpu",
                "EPYC-Milan",
                "-machine",
                "q35,memory-encryption=sev0",
                "-object",
                object,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let (sev8, es8) = (args(&sev, "8"), args(&es, "8"));
        let sev8: Vec<&str> = sev8.iter().map(String::as_str).collect();
        let es8: Vec<&str> = es8.iter().map(String::as_str).collect();
        paired_rows(
            ("demo guest, emulated SEV, 8 vCPUs", &sev8),
            ("demo guest, emulated SEV-ES, 8 vCPUs", &es8),
            runs,
        );
        // SNP against plain SEV, one vCPU each, interleaved (target: the
        // SNP cold start at most 1.5 times the plain-SEV one).
        let snp = format!(
            "sev-snp-guest,id=sev0,sev-device=emulated:{}",
            pdir.display()
        );
        let (sev1, snp1) = (args(&sev, "1"), args(&snp, "1"));
        let sev1: Vec<&str> = sev1.iter().map(String::as_str).collect();
        let snp1: Vec<&str> = snp1.iter().map(String::as_str).collect();
        paired_rows(
            ("demo guest, emulated SEV, 1 vCPU", &sev1),
            ("demo guest, emulated SNP, 1 vCPU", &snp1),
            runs,
        );
    } else {
        println!("(emulated SEV row skipped: no emulated platform available)");
    }
    sevm_rows(
        "demo guest, no SEV, 2 MiB firmware",
        &["-bios", &fw, "-m", "16", "-serial", "null"],
        runs,
        baseline,
    );
    let kvm = kvm_ioctls::Kvm::new().unwrap();
    let mut creates = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let vm = kvm.create_vm().unwrap();
        creates.push(t.elapsed());
        drop(vm);
    }
    row("KVM_CREATE_VM alone (in process)", creates);
    let mut spawns = Vec::new();
    for _ in 0..runs {
        spawns.push(run("/bin/true", &[]).wall);
    }
    row("spawn /bin/true (process start)", spawns);
}
