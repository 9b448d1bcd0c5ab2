//! The host view over `vm-memory` against the raw copies it replaced.
//!
//! ```text
//! cargo bench -p sevm-memory --bench hostview
//! ```
//!
//! Each row runs the emulated platform's host view (`sev_psp::memory::
//! host_read`/`host_write`, shared and private pages) and the plain copies
//! over 16 MiB of guest RAM twice, alternately: over [`RamBacking`]
//! (`GuestRam` on `vm-memory`, volatile `Bytes` copies) and over the
//! previous implementation's backing (an anonymous mapping read and written
//! with `ptr::copy_nonoverlapping`, as sevm's own `GuestRam` did), and
//! prints the medians and their ratio.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use sev_psp::memory::{
    firmware_write, host_read, host_write, GuestBacking, MemoryState, OutOfRange, Region, Vek,
};
use sevm_memory::{GuestRam, RamBacking};

const MIB: usize = 1 << 20;
const LEN: usize = 16 * MIB;
const RUNS: usize = 15;

/// The previous backing: one anonymous mapping, raw copies.
struct RawBacking {
    host: *mut u8,
    len: usize,
}

// SAFETY: plain memory owned by the struct; only copied in and out.
unsafe impl Send for RawBacking {}
// SAFETY: as above.
unsafe impl Sync for RawBacking {}

impl RawBacking {
    fn new(len: usize) -> Self {
        // SAFETY: a fresh anonymous private mapping; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        RawBacking {
            host: p.cast(),
            len,
        }
    }

    fn range(&self, gpa: u64, len: usize) -> Result<*mut u8, OutOfRange> {
        let refused = OutOfRange {
            gpa,
            len: len as u64,
        };
        let off = usize::try_from(gpa).map_err(|_| refused)?;
        if off.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(refused);
        }
        // SAFETY: `off + len <= self.len`.
        Ok(unsafe { self.host.add(off) })
    }
}

impl Drop for RawBacking {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `new`.
        unsafe { libc::munmap(self.host.cast(), self.len) };
    }
}

impl GuestBacking for RawBacking {
    fn regions(&self) -> Vec<Region> {
        vec![Region {
            gpa: 0,
            len: self.len as u64,
        }]
    }

    fn read_plain(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let src = self.range(gpa, buf.len())?;
        // SAFETY: checked range inside the mapping; `buf` is distinct.
        unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    fn write_plain(&self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        let dst = self.range(gpa, data.len())?;
        // SAFETY: as in `read_plain`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Ok(())
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `new` and `old` alternately and prints GB/s of both and new/old
/// time.
fn row(name: &str, mut new: impl FnMut(), mut old: impl FnMut()) {
    new();
    old();
    let (mut tn, mut to) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let t = Instant::now();
        new();
        tn.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        old();
        to.push(t.elapsed().as_secs_f64());
    }
    let (n, o) = (median(tn), median(to));
    let gbs = |s: f64| LEN as f64 / s / 1e9;
    println!(
        "{name:<40} vm-memory {:>6.2} GB/s | raw copies {:>6.2} GB/s | time new/old {:>5.2}",
        gbs(n),
        gbs(o),
        n / o
    );
}

fn main() {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "host view over 16 MiB, median of {RUNS} alternating runs; load average {}",
        load.split_whitespace().next().unwrap_or("?")
    );
    let ram = Arc::new(GuestRam::new(LEN as u64, 4096).unwrap());
    let new = RamBacking::new(Arc::clone(&ram));
    let old = RawBacking::new(LEN);
    let region = Region {
        gpa: 0,
        len: LEN as u64,
    };
    let plaintext: Vec<u8> = (0..LEN).map(|i| (i * 31 + 7) as u8).collect();
    firmware_write(&new, 0, &plaintext).unwrap();
    firmware_write(&old, 0, &plaintext).unwrap();
    let state_new = MemoryState::new(&Vek::from_bytes([0x42; 16]), &[region]).unwrap();
    let state_old = MemoryState::new(&Vek::from_bytes([0x42; 16]), &[region]).unwrap();
    let mut buf_n = vec![0u8; LEN];
    let mut buf_o = vec![0u8; LEN];

    row(
        "plain read (copy out)",
        || new.read_plain(0, black_box(&mut buf_n)).unwrap(),
        || old.read_plain(0, black_box(&mut buf_o)).unwrap(),
    );
    row(
        "plain write (copy in)",
        || new.write_plain(0, black_box(&plaintext)).unwrap(),
        || old.write_plain(0, black_box(&plaintext)).unwrap(),
    );
    row(
        "host_read, shared pages (copy)",
        || host_read(&new, &state_new, 0, black_box(&mut buf_n)).unwrap(),
        || host_read(&old, &state_old, 0, black_box(&mut buf_o)).unwrap(),
    );
    state_new.mark_all_private();
    state_old.mark_all_private();
    row(
        "host_read, private pages (xts view)",
        || host_read(&new, &state_new, 0, black_box(&mut buf_n)).unwrap(),
        || host_read(&old, &state_old, 0, black_box(&mut buf_o)).unwrap(),
    );
    let ct = buf_n.clone();
    row(
        "host_write, private pages (xts store)",
        || host_write(&new, &state_new, 0, black_box(&ct)).unwrap(),
        || host_write(&old, &state_old, 0, black_box(&ct)).unwrap(),
    );
    // 4 KiB pages one by one, as migration sends and receives them.
    let (mut page_n, mut page_o) = ([0u8; 4096], [0u8; 4096]);
    row(
        "host_read, private, page by page",
        || {
            for gpa in (0..LEN as u64).step_by(4096) {
                host_read(&new, &state_new, gpa, black_box(&mut page_n)).unwrap();
            }
        },
        || {
            for gpa in (0..LEN as u64).step_by(4096) {
                host_read(&old, &state_old, gpa, black_box(&mut page_o)).unwrap();
            }
        },
    );
}
