//! `sev-owner measure` against `sevctl measurement build` on the same inputs
//! (firmware 4 MiB + kernel 12 MiB + initrd 34 MiB = 50 MiB), measured side
//! by side in one run: median wall time of whole command runs (interleaved),
//! input throughput, and the ratio. Also the library's digest in-process
//! (no process start, no output).
//!
//! `cargo bench -p sev-tools --bench measure` (sevctl from PATH;
//! `SEVCTL=/path/to/sevctl` to choose one).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sev_tools::measure::{launch_digest, DigestInputs};

const OWNER: &str = env!("CARGO_BIN_EXE_sev-owner");
const RUNS: usize = 15;
const MIB: usize = 1 << 20;

/// A firmware image of `len` bytes (pseudo-random) ending in an OVMF footer
/// table with a kernel-hashes area (SEV-REFERENCE 10.1), so that
/// kernel-hashes measurement is supported.
fn firmware(len: usize) -> Vec<u8> {
    let mut img = pseudo_random(len, 1);
    let guid = |s: &str| -> Vec<u8> {
        let g: sev_proto::Guid = s.parse().unwrap();
        g.to_bytes().to_vec()
    };
    let mut table = Vec::new();
    // Hashes area entry: base, size, u16 length (26), GUID.
    table.extend(0x0081_0C00u32.to_le_bytes());
    table.extend(0x400u32.to_le_bytes());
    table.extend(26u16.to_le_bytes());
    table.extend(guid("7255371f-3a3b-4b04-927b-1da6efa8d454"));
    // Footer: u16 table length including this 18-byte header, footer GUID.
    table.extend(((table.len() + 18) as u16).to_le_bytes());
    table.extend(guid("96b582de-1fb2-45f7-baea-a366c55a082d"));
    table.extend([0u8; 32]);
    let start = len - table.len();
    img[start..].copy_from_slice(&table);
    img
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn min(v: &[Duration]) -> Duration {
    v.iter().copied().min().unwrap_or_default()
}

fn time_cmd(program: &str, args: &[String]) -> Duration {
    let t = Instant::now();
    let out = Command::new(program).args(args).output().unwrap();
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

fn sevctl() -> Option<String> {
    let candidate = std::env::var("SEVCTL").unwrap_or_else(|_| "sevctl".to_string());
    match Command::new(&candidate).arg("--version").output() {
        Ok(o) if o.status.success() => Some(candidate),
        _ => None,
    }
}

fn rate(bytes: usize, d: Duration) -> String {
    format!("{:.2} GB/s", bytes as f64 / d.as_secs_f64() / 1e9)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would too: the
    // bench only runs under `cargo bench` (harness = false sees no --test).
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let write = |name: &str, bytes: &[u8]| -> PathBuf {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let fw = write("OVMF.fd", &firmware(4 * MIB));
    let kernel = write("vmlinuz", &pseudo_random(12 * MIB, 2));
    let initrd = write("initrd.img", &pseudo_random(34 * MIB, 3));
    let tik = write("tik.bin", &[0x35; 16]);
    let total = 50 * MIB;
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let common: Vec<String> = [
        "--api-major",
        "1",
        "--api-minor",
        "55",
        "--build-id",
        "21",
        "--policy",
        "0x1",
        "--tik",
        &s(&tik),
        "--nonce",
        "wxP6tRHCFrFQWxsuqZA8QA==",
        "--firmware",
        &s(&fw),
        "--kernel",
        &s(&kernel),
        "--initrd",
        &s(&initrd),
        "--cmdline",
        "console=ttyS0 root=/dev/vda1",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    let owner_out = d.join("owner.bin");
    let sevctl_out = d.join("sevctl.bin");
    let mut owner_args = vec!["measure".to_string()];
    owner_args.extend(common.iter().cloned());
    owner_args.extend(["--outfile".into(), s(&owner_out)]);
    let sevctl_bin = sevctl();
    let mut sevctl_args = vec!["measurement".to_string(), "build".to_string()];
    sevctl_args.extend(common.iter().cloned());
    sevctl_args.extend(["--outfile".into(), s(&sevctl_out)]);

    // Warm the page cache and check that both compute the same blob.
    time_cmd(OWNER, &owner_args);
    if let Some(sc) = &sevctl_bin {
        time_cmd(sc, &sevctl_args);
        assert_eq!(
            std::fs::read(&owner_out).unwrap(),
            std::fs::read(&sevctl_out).unwrap(),
            "sev-owner and sevctl disagree"
        );
    }

    let inputs = DigestInputs {
        firmware: fw.clone(),
        kernel: Some(kernel.clone()),
        initrd: Some(initrd.clone()),
        cmdline: Some("console=ttyS0 root=/dev/vda1".into()),
        vmsas: vec![],
    };
    let (mut t_owner, mut t_sevctl, mut t_lib) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..RUNS {
        // Alternate which tool goes first, so neither always follows the
        // other's cache and scheduler state.
        if i % 2 == 0 {
            t_owner.push(time_cmd(OWNER, &owner_args));
        }
        if let Some(sc) = &sevctl_bin {
            t_sevctl.push(time_cmd(sc, &sevctl_args));
        }
        if i % 2 == 1 {
            t_owner.push(time_cmd(OWNER, &owner_args));
        }
        let t = Instant::now();
        launch_digest(&inputs).unwrap();
        t_lib.push(t.elapsed());
    }
    let (min_o, min_l) = (min(&t_owner), min(&t_lib));
    let (mo, ml) = (median(t_owner), median(t_lib));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "measure benchmark: firmware 4 MiB + kernel 12 MiB + initrd 34 MiB = {} MiB, kernel-hashes on, {RUNS} runs, {} CPUs, load average {}",
        total / MIB,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "{:<34} {:>10} {:>12} {:>10} {:>12}",
        "", "median", "input rate", "min", "input rate"
    );
    let row = |name: &str, med: Duration, mn: Duration| {
        println!(
            "{:<34} {:>7.1} ms {:>12} {:>7.1} ms {:>12}",
            name,
            med.as_secs_f64() * 1e3,
            rate(total, med),
            mn.as_secs_f64() * 1e3,
            rate(total, mn)
        );
    };
    row("sev-owner measure (process)", mo, min_o);
    row("sev-owner library launch_digest", ml, min_l);
    if sevctl_bin.is_some() {
        let min_s = min(&t_sevctl);
        let ms = median(t_sevctl);
        row("sevctl measurement build", ms, min_s);
        println!(
            "sev-owner vs sevctl (same output bytes): {:.2}x faster by median, {:.2}x by best run",
            ms.as_secs_f64() / mo.as_secs_f64(),
            min_s.as_secs_f64() / min_o.as_secs_f64()
        );
    } else {
        println!("sevctl not found on PATH (or $SEVCTL): comparison skipped");
    }
    let target = 1.2e9;
    let got = total as f64 / mo.as_secs_f64();
    println!(
        "target >= 1.20 GB/s: {} ({})",
        if got >= target { "met" } else { "NOT met" },
        rate(total, mo)
    );
}
