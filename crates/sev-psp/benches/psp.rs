//! `cargo bench -p sev-psp`: the emulated PSP's hot paths, each next to a
//! baseline measured in the same run over the same bytes (raw SHA-256 for
//! what the firmware hashes, raw AES-128-CTR for what it encrypts, both for
//! the migration packets, which are encrypted and MACed on each side, a raw
//! P-384 ECDH for LAUNCH_START).
//!
//! Every row alternates runs of its operation with runs of its baseline, so
//! a machine shared with other work slows both alike; the table shows the
//! median of the operation and the median of the per-pair ratios. Not a
//! test: nothing here fails on a slow machine.
//!
//! Targets on this machine class: LAUNCH_UPDATE_DATA at >= 85 % of raw
//! SHA-256 (the implementation the firmware's launch digest uses,
//! `sev_proto::hash`), host-view reads >= 2 GB/s, LAUNCH_START < 3 ms,
//! SNP_LAUNCH_UPDATE of NORMAL pages (the ranged entry point, as KVM issues
//! it) at >= 85 % of raw SHA-384 over the same bytes, SNP_GUEST_REQUEST
//! reports at >= 80 % of the rate of raw ECDSA P-384 signing.

// A benchmark is a program that stops on the first surprise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use aes::cipher::{KeyIvInit, StreamCipher};
use p384::ecdsa::signature::hazmat::PrehashSigner;
use sev_proto::abi::Policy;
use sev_proto::cert::sev::Certificate;
use sev_proto::session::{shared_secret, OwnerSession};
use sev_proto::snp::guest_msg::{self, MessageHeader, MessageType, ReportRequest};
use sev_proto::snp::PageType;
use sev_psp::memory::GuestBacking;
use sev_psp::memory::{
    firmware_write, host_read, host_write, MemoryState, Region, VecBacking, Vek,
};
use sev_psp::rng::seeded_rng;
use sev_psp::snp::{SnpLaunchFinish, SnpLaunchStart, SnpLaunchUpdate};
use sev_psp::{CreateOptions, Platform};
use sha2::{Digest, Sha256};

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

const MIB: usize = 1 << 20;
/// Size of the guest region every memory row works on.
const REGION_LEN: usize = 16 * MIB;
/// Timed runs per row (after one warm-up run), each paired with a baseline run.
const RUNS: usize = 11;
/// Pages per run of the migration row.
const MIGRATION_PAGES: usize = 256;

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Seconds one call of `f` takes.
fn seconds(f: &mut impl FnMut()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64()
}

#[derive(Clone, Copy)]
enum Unit {
    /// GB/s over the row's bytes.
    Throughput(usize),
    /// Milliseconds per call.
    Latency,
    /// Microseconds per 4 KiB page, over this many pages.
    PerPage(usize),
}

impl Unit {
    fn value(self, secs: f64) -> f64 {
        match self {
            Unit::Throughput(bytes) => bytes as f64 / secs / 1e9,
            Unit::Latency => secs * 1e3,
            Unit::PerPage(pages) => secs * 1e6 / pages as f64,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Throughput(_) => "GB/s",
            Unit::Latency => "ms",
            Unit::PerPage(_) => "us/page",
        }
    }
}

/// Runs `op` and `baseline` alternately; prints the medians and the median
/// ratio op/baseline of throughput (or baseline/op of time: > 1 means the
/// operation is faster than the baseline).
fn row(
    name: &str,
    unit: Unit,
    mut op: impl FnMut(),
    baseline_name: &str,
    mut baseline: impl FnMut(),
) {
    op();
    baseline();
    let (mut ops, mut bases, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let b = seconds(&mut baseline);
        let o = seconds(&mut op);
        ops.push(unit.value(o));
        bases.push(unit.value(b));
        ratios.push(b / o);
    }
    println!(
        "{name:<40} {:>9.3} {:<7} | {baseline_name:<28} {:>9.3} {:<7} | {:>6.1} %",
        median(ops),
        unit.name(),
        median(bases),
        unit.name(),
        median(ratios) * 100.0
    );
}

fn ctr_in_place(buf: &mut [u8]) {
    let mut c = Aes128Ctr::new(&[0x42; 16].into(), &[0; 16].into());
    c.apply_keystream(black_box(buf));
}

fn main() {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "sev-psp benchmarks: median of {RUNS} runs, each paired with its baseline; load average {}",
        load.split_whitespace().next().unwrap_or("?")
    );
    println!(
        "launch digest SHA-256: {} (CPU features: {})",
        sev_proto::hash::active(),
        sev_proto::hash::cpu_features().join(" ")
    );
    println!(
        "{:<40} {:>17} | {:<28} {:>17} | {:>8}",
        "operation", "", "baseline (same run)", "", "op/base"
    );
    println!("{}", "-".repeat(112));
    // `cargo bench -p sev-psp -- snp` runs only the SNP rows.
    if std::env::args().skip(1).any(|a| a == "snp") {
        snp_rows();
        return;
    }

    // ----- the memory-encryption model ----------------------------------
    let region = Region {
        gpa: 0x10_0000,
        len: REGION_LEN as u64,
    };
    let backing = VecBacking::new(&[region]).unwrap();
    let plaintext: Vec<u8> = (0..REGION_LEN).map(|i| (i * 31 + 7) as u8).collect();
    firmware_write(&backing, region.gpa, &plaintext).unwrap();
    let state = MemoryState::new(&Vek::from_bytes([0x42; 16]), &[region]).unwrap();
    let mut buf = vec![0u8; REGION_LEN];
    let mut ctr_buf = plaintext.clone();
    let mut xts_buf = plaintext.clone();
    let bytes = Unit::Throughput(REGION_LEN);
    let ctr_name = "AES-128-CTR, 16 MiB";

    row(
        "xts encrypt in place (cipher only)",
        bytes,
        || {
            state
                .encrypt_at(region.gpa, black_box(&mut xts_buf))
                .unwrap()
        },
        ctr_name,
        || ctr_in_place(&mut ctr_buf),
    );
    row(
        "host_read, shared pages (copy)",
        bytes,
        || host_read(&backing, &state, region.gpa, black_box(&mut buf)).unwrap(),
        ctr_name,
        || ctr_in_place(&mut ctr_buf),
    );
    state.mark_all_private();
    row(
        "host_read, private pages (xts view)",
        bytes,
        || host_read(&backing, &state, region.gpa, black_box(&mut buf)).unwrap(),
        ctr_name,
        || ctr_in_place(&mut ctr_buf),
    );
    host_read(&backing, &state, region.gpa, &mut buf).unwrap();
    row(
        "host_write, private pages (xts store)",
        bytes,
        || host_write(&backing, &state, region.gpa, black_box(&buf)).unwrap(),
        ctr_name,
        || ctr_in_place(&mut ctr_buf),
    );

    // ----- the firmware ---------------------------------------------------
    let tmp = tempfile::tempdir().unwrap();
    let options = CreateOptions {
        ark_bits: 2048,
        ..CreateOptions::default()
    };
    let p = Platform::create(tmp.path().join("platform"), options, seeded_rng(1)).unwrap();
    p.init(false).unwrap();
    let mem = VecBacking::new(&[Region {
        gpa: 0,
        len: 2 * REGION_LEN as u64,
    }])
    .unwrap();
    firmware_write(&mem, 0, &plaintext).unwrap();

    let guest = p.launch_start(0, Policy::from_bits(0), None, None).unwrap();
    p.activate(guest, 100).unwrap();
    let platform_view =
        |p: &Platform, h: u32, buf: &mut [u8]| p.host_read(h, &mem, 0, buf).unwrap();
    row(
        "LAUNCH_UPDATE_DATA, 16 MiB",
        bytes,
        || {
            p.launch_update_data(guest, &mem, 0, REGION_LEN as u32)
                .unwrap()
        },
        "SHA-256 (sev_proto::hash), 16 MiB",
        || {
            black_box(sev_proto::hash::sha256(black_box(&plaintext)));
        },
    );
    row(
        "Platform::host_read, private, 16 MiB",
        bytes,
        || platform_view(&p, guest, black_box(&mut buf)),
        ctr_name,
        || ctr_in_place(&mut ctr_buf),
    );

    // LAUNCH_START with an owner session (ECDH, KDF, unwrap, MACs), then
    // DECOMMISSION so guests do not accumulate.
    let mut pdh = vec![0u8; 0x824];
    let mut chain = vec![0u8; 0x186c];
    p.pdh_cert_export(&mut pdh, &mut chain).unwrap();
    let pdh_key = *Certificate::decode(&pdh).unwrap().ec_public_key().unwrap();
    let owner = OwnerSession::new(&pdh_key, 1, &mut seeded_rng(2));
    let godh = Certificate::godh(&owner.godh_public()).encode();
    let session = owner.session_buffer().to_bytes();
    let godh_secret = p384::SecretKey::random(&mut seeded_rng(3));
    row(
        "LAUNCH_START with owner session",
        Unit::Latency,
        || {
            let h = p
                .launch_start(0, Policy::from_bits(1), Some(&godh), Some(&session))
                .unwrap();
            p.decommission(h).unwrap();
        },
        "raw P-384 ECDH",
        || {
            black_box(shared_secret(&godh_secret, &pdh_key));
        },
    );

    // SEND_UPDATE_DATA + RECEIVE_UPDATE_DATA per page, the guest sent to
    // this same platform.
    p.launch_measure(guest, &mut [0; 48]).unwrap();
    p.launch_finish(guest).unwrap();
    let mut sess = [0u8; 0x80];
    p.send_start(guest, &pdh, &chain, &[], &mut sess).unwrap();
    let target = p.launch_start(0, Policy::from_bits(0), None, None).unwrap();
    p.decommission(target).unwrap();
    let received = p
        .receive_start(0, Policy::from_bits(0), &pdh, &sess)
        .unwrap();
    p.activate(received, 101).unwrap();
    // The target's guest memory (same addresses: the MAC binds them).
    let target_mem = VecBacking::new(&[Region {
        gpa: 0,
        len: REGION_LEN as u64,
    }])
    .unwrap();
    let mut hdr = [0u8; 0x34];
    let mut trans = vec![0u8; 4096];
    let mut page_buf = vec![0u8; 4096 * MIGRATION_PAGES];
    row(
        "SEND+RECEIVE_UPDATE_DATA, 4 KiB pages",
        Unit::PerPage(MIGRATION_PAGES),
        || {
            for page in 0..MIGRATION_PAGES as u64 {
                let gpa = page * 4096;
                p.send_update_data(guest, &mem, gpa, 4096, &mut hdr, &mut trans)
                    .unwrap();
                p.receive_update_data(received, &target_mem, &hdr, gpa, 4096, &trans)
                    .unwrap();
            }
        },
        "2x(SHA-256 + AES-CTR), same pages",
        || {
            // What any MAC'd, encrypted transfer costs at least: each side
            // hashes and en/decrypts every byte once.
            for _ in 0..2 {
                ctr_in_place(&mut page_buf);
                for page in page_buf.chunks(4096) {
                    black_box(Sha256::digest(page));
                }
            }
        },
    );
    snp_rows();
    println!(
        "\nop/base: throughput ratio (op GB/s / baseline GB/s), or baseline time / op time for the \
         latency rows. Roots: 2048-bit (creation time only)."
    );
}

/// SNP_LAUNCH_UPDATE of NORMAL pages against raw SHA-384 over the same
/// bytes: the ranged entry point over 2 and 16 MiB, and the per-page command
/// (the platform state loaded for every 4 KiB page) over 2 MiB. Pages are
/// launched once, so every run takes a guest context of its own, launched
/// and activated before the row starts.
fn snp_rows() {
    let plaintext: Vec<u8> = (0..REGION_LEN).map(|i| (i * 31 + 7) as u8).collect();
    let tmp = tempfile::tempdir().unwrap();
    let options = CreateOptions {
        ark_bits: 2048,
        ..CreateOptions::default()
    };
    let p = Platform::create(tmp.path().join("platform"), options, seeded_rng(4)).unwrap();
    p.snp_init().unwrap();
    let mem = VecBacking::new(&[Region {
        gpa: 0,
        len: REGION_LEN as u64,
    }])
    .unwrap();
    firmware_write(&mem, 0, &plaintext[..REGION_LEN]).unwrap();
    let mut next_asid = 1;
    let mut guests = |n: usize| -> Vec<u32> {
        (0..n)
            .map(|_| {
                let h = p.snp_gctx_create().unwrap();
                p.snp_launch_start(h, &SnpLaunchStart::with_policy(0x30000))
                    .unwrap();
                p.snp_activate(h, next_asid).unwrap();
                next_asid += 1;
                h
            })
            .collect()
    };
    // 2 MiB calls, four per run (each on a guest of its own), so that a run
    // is long enough for a shared machine's scheduling not to decide the
    // ratio; then one 16 MiB call per run.
    for (len, calls) in [(2 * MIB, 4), (REGION_LEN, 1)] {
        let mut ready = guests((RUNS + 1) * calls);
        let bytes = &plaintext[..len];
        row(
            &format!("SNP_LAUNCH_UPDATE range, {calls}x {} MiB", len / MIB),
            Unit::Throughput(len * calls),
            || {
                for _ in 0..calls {
                    let h = ready.pop().unwrap();
                    p.snp_launch_update_range(h, &mem, 0, len as u64, PageType::Normal)
                        .unwrap();
                }
            },
            &format!("SHA-384, {calls}x {} MiB", len / MIB),
            || {
                for _ in 0..calls {
                    black_box(sev_proto::hash::sha384(black_box(bytes)));
                }
            },
        );
    }
    let len = 2 * MIB;
    let mut ready = guests(RUNS + 1);
    let bytes = &plaintext[..len];
    row(
        "SNP_LAUNCH_UPDATE per page, 2 MiB",
        Unit::Throughput(len),
        || {
            let h = ready.pop().unwrap();
            for gpa in (0..len as u64).step_by(4096) {
                p.snp_launch_update(h, &mem, &SnpLaunchUpdate::page(PageType::Normal, gpa))
                    .unwrap();
            }
        },
        "SHA-384, 2 MiB",
        || {
            black_box(sev_proto::hash::sha384(black_box(bytes)));
        },
    );
    guest_request_row(&p, &mem, guests(1)[0]);
}

/// Reports per run of the guest-request row.
const REPORTS_PER_RUN: usize = 20;

/// SNP_GUEST_REQUEST for a report (open the request, fill and sign the
/// report, seal the response) against raw ECDSA P-384 signing of the same
/// 672 bytes: the firmware's overhead over its one signature. The requests
/// are sealed by the guest ahead of the timing.
fn guest_request_row(p: &Platform, mem: &VecBacking, h: u32) {
    const SECRETS_GPA: u64 = 0x1000;
    p.snp_launch_update(
        h,
        mem,
        &SnpLaunchUpdate::page(PageType::Secrets, SECRETS_GPA),
    )
    .unwrap();
    p.snp_launch_finish(h, &SnpLaunchFinish::default()).unwrap();
    let mut secrets = [0u8; 4096];
    mem.read_plain(SECRETS_GPA, &mut secrets).unwrap();
    let vmpck: [u8; 32] = secrets[0x20..0x40].try_into().unwrap();
    let payload = ReportRequest::new([0x33; 64], 0).encode();
    let mut pages: Vec<Box<[u8; 4096]>> = (0..(RUNS + 1) * REPORTS_PER_RUN)
        .map(|i| {
            let header = MessageHeader::new(MessageType::REPORT_REQ, 1, 0x60, 0, 2 * i as u64 + 1);
            let msg = guest_msg::seal(&vmpck, &header, &payload).unwrap();
            let mut page = Box::new([0u8; 4096]);
            page[..msg.len()].copy_from_slice(&msg);
            page
        })
        .collect();
    pages.reverse();
    let key = p384::ecdsa::SigningKey::from(p384::SecretKey::random(&mut seeded_rng(9)));
    let body = [0x5Au8; 0x2A0];
    row(
        &format!("SNP_GUEST_REQUEST report, {REPORTS_PER_RUN}x"),
        Unit::Latency,
        || {
            for _ in 0..REPORTS_PER_RUN {
                let page = pages.pop().unwrap();
                black_box(p.snp_guest_request(h, &page).unwrap());
            }
        },
        &format!("P-384 sign SHA-384, {REPORTS_PER_RUN}x"),
        || {
            for _ in 0..REPORTS_PER_RUN {
                let digest = sev_proto::hash::sha384(black_box(&body));
                let sig: p384::ecdsa::Signature = key.sign_prehash(&digest).unwrap();
                black_box(sig);
            }
        },
    );
}
