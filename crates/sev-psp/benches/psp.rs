//! `cargo bench -p sev-psp`: throughput of the emulated PSP's hot paths, each
//! next to a raw AES-128-CTR baseline over the same bytes in the same run.
//!
//! Every row alternates runs of its operation with runs of the baseline, so a
//! machine shared with other work slows both alike; the table shows the
//! median throughput of the operation and the median of the per-pair ratios.
//! Not a test: nothing here fails on a slow machine. Add rows with
//! [`Bench::row`].

use std::hint::black_box;
use std::time::Instant;

use aes::cipher::{KeyIvInit, StreamCipher};
use sev_psp::memory::{
    firmware_write, host_read, host_write, MemoryError, MemoryState, Region, VecBacking, Vek,
};

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

const MIB: usize = 1 << 20;
/// Size of the guest region every memory row works on.
const REGION_LEN: usize = 16 * MIB;
/// Timed runs per row (after one warm-up run), each paired with a baseline run.
const RUNS: usize = 11;

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

/// GB/s of one run of `f` over `bytes` bytes.
fn timed(
    bytes: usize,
    f: &mut impl FnMut() -> Result<(), MemoryError>,
) -> Result<f64, MemoryError> {
    let start = Instant::now();
    f()?;
    Ok(bytes as f64 / start.elapsed().as_secs_f64() / 1e9)
}

/// The AES-128-CTR baseline: the `ctr` crate in place over 16 MiB of the same
/// plaintext the memory rows use.
struct Bench {
    ctr_buf: Vec<u8>,
    baseline_samples: Vec<f64>,
}

impl Bench {
    fn baseline(&mut self) -> f64 {
        let start = Instant::now();
        let mut c = Aes128Ctr::new(&[0x42; 16].into(), &[0; 16].into());
        c.apply_keystream(black_box(&mut self.ctr_buf));
        let rate = self.ctr_buf.len() as f64 / start.elapsed().as_secs_f64() / 1e9;
        self.baseline_samples.push(rate);
        rate
    }

    fn row(
        &mut self,
        name: &str,
        bytes: usize,
        mut f: impl FnMut() -> Result<(), MemoryError>,
    ) -> Result<(), MemoryError> {
        f()?;
        self.baseline();
        let (mut rates, mut ratios) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let base = self.baseline();
            let rate = timed(bytes, &mut f)?;
            rates.push(rate);
            ratios.push(rate / base);
        }
        println!("{name:<46} {:>8.2} {:>8.2}", median(rates), median(ratios));
        Ok(())
    }
}

fn main() -> Result<(), MemoryError> {
    let region = Region {
        gpa: 0x10_0000,
        len: REGION_LEN as u64,
    };
    let backing = VecBacking::new(&[region])?;
    let plaintext: Vec<u8> = (0..REGION_LEN).map(|i| (i * 31 + 7) as u8).collect();
    firmware_write(&backing, region.gpa, &plaintext)?;
    let state = MemoryState::new(&Vek::from_bytes([0x42; 16]), &[region])?;
    let mut buf = vec![0u8; REGION_LEN];
    let mut bench = Bench {
        ctr_buf: plaintext.clone(),
        baseline_samples: Vec::new(),
    };

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "sev-psp benchmarks: {} MiB per run, median of {RUNS} runs, load average {}",
        REGION_LEN / MIB,
        load.split_whitespace().next().unwrap_or("?")
    );
    println!("{:<46} {:>8} {:>8}", "operation", "GB/s", "vs CTR");
    println!("{}", "-".repeat(64));

    // The cipher alone (no copy out of the backing), in place like the CTR row.
    let mut xts_buf = plaintext.clone();
    bench.row(
        "xts encrypt in place (MemoryState::encrypt_at)",
        REGION_LEN,
        || state.encrypt_at(region.gpa, black_box(&mut xts_buf)),
    )?;

    bench.row("host_read, shared pages (copy)", REGION_LEN, || {
        host_read(&backing, &state, region.gpa, black_box(&mut buf))
    })?;

    state.mark_all_private();
    bench.row("host_read, private pages (xts view)", REGION_LEN, || {
        host_read(&backing, &state, region.gpa, black_box(&mut buf))
    })?;

    // Writing back what was read leaves the plaintext unchanged, so every run
    // does the same work.
    host_read(&backing, &state, region.gpa, &mut buf)?;
    bench.row("host_write, private pages (xts store)", REGION_LEN, || {
        host_write(&backing, &state, region.gpa, black_box(&buf))
    })?;

    let mut unaligned = vec![0u8; REGION_LEN - 4096];
    bench.row(
        "host_read, private, unaligned (gpa+5)",
        REGION_LEN - 4096,
        || host_read(&backing, &state, region.gpa + 5, black_box(&mut unaligned)),
    )?;

    println!(
        "{:<46} {:>8.2} {:>8.2}",
        "aes-128-ctr baseline (ctr crate, in place)",
        median(bench.baseline_samples),
        1.0
    );
    Ok(())
}
