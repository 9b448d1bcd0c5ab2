//! `sev-owner launch` of the demo guest on an emulated platform, end to
//! end (process start to guest exit: chain verified, session created, sevm
//! started, measurement verified, secret injected, guest run), repeated;
//! prints the median and the spread.
//!
//! `cargo bench -p sev-tools --bench launch` (builds the release `sevm` if
//! it is missing; needs /dev/kvm).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const OWNER: &str = env!("CARGO_BIN_EXE_sev-owner");
const PLATFORM: &str = env!("CARGO_BIN_EXE_sev-platform");
const RUNS: usize = 15;

fn run(bin: &Path, args: &[&str]) -> String {
    let o = Command::new(bin).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{} {args:?}: {}",
        bin.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sevm() -> PathBuf {
    if let Some(p) = std::env::var_os("SEVM_BIN") {
        return PathBuf::from(p);
    }
    let bin = Path::new(OWNER).parent().unwrap().join("sevm");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "--release", "-p", "sevm", "--bin", "sevm"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "building sevm failed");
    }
    bin
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    if std::fs::metadata("/dev/kvm").is_err() {
        println!("launch benchmark skipped: no /dev/kvm");
        return;
    }
    let sevm = sevm();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let platform = d.join("platform");
    run(Path::new(PLATFORM), &["init", &s(&platform)]);
    let (chain, ark) = (d.join("chain.cert"), d.join("ark.cert"));
    run(
        Path::new(PLATFORM),
        &[
            &format!("--emulated={}", s(&platform)),
            "export",
            "--full",
            &s(&chain),
            "--ark",
            &s(&ark),
        ],
    );
    let fw = d.join("demo.fd");
    run(&sevm, &["-write-demo-guest", &s(&fw)]);
    let args = |work: &Path| -> Vec<String> {
        [
            "launch",
            "--sevm",
            &s(&sevm),
            "--emulated",
            &s(&platform),
            "--firmware",
            &s(&fw),
            "--chain",
            &s(&chain),
            "--trust-ark",
            &s(&ark),
            "--policy",
            "0x3",
            "--secret",
            "f4d5a2c1-6b3e-4c8f-9a1d-2e7b5c3f8a90:=benchmark secret",
            "--work-dir",
            &s(work),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    let mut wall = Vec::new();
    let mut steps: Vec<Vec<(String, f64)>> = Vec::new();
    for i in 0..=RUNS {
        let work = d.join(format!("w{i}"));
        let a = args(&work);
        let t = Instant::now();
        let out = run(
            Path::new(OWNER),
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let el = t.elapsed();
        assert!(out.contains("benchmark secret"), "{out}");
        if i == 0 {
            continue; // warm-up (page cache, first KVM VM)
        }
        wall.push(el);
        steps.push(
            out.lines()
                .filter_map(|l| {
                    let l = l.strip_prefix('[')?;
                    let (ms, rest) = l.split_once(" ms]")?;
                    // `{:<18}` after one space: the step name's column.
                    let name = rest.get(1..19)?.trim().to_string();
                    Some((name, ms.trim().parse().ok()?))
                })
                .collect(),
        );
        let _ = std::fs::remove_dir_all(&work);
    }
    wall.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "sev-owner launch of the demo guest (emulated platform, RSA-4096 roots, 16 MiB guest, 2 MiB firmware), {RUNS} runs, {} CPUs",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "end to end (process start to guest exit): median {:.1} ms, min {:.1} ms, max {:.1} ms — target < 150 ms: {}",
        ms(wall[wall.len() / 2]),
        ms(wall[0]),
        ms(wall[wall.len() - 1]),
        if ms(wall[wall.len() / 2]) < 150.0 { "met" } else { "NOT met" }
    );
    if let Some(first) = steps.first() {
        println!("{:<20} {:>12}", "step", "median ms");
        for (i, (name, _)) in first.iter().enumerate() {
            let mut v: Vec<f64> = steps.iter().filter_map(|s| s.get(i).map(|x| x.1)).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            println!("{:<20} {:>12.2}", name, v[v.len() / 2]);
        }
    }
}
