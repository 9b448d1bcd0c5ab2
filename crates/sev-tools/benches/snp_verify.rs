//! `sev-owner snp verify` against `snpguest verify attestation` for the same
//! report and certificates, process to process, in the same run: each tool
//! is started `RUNS` times, alternating, and the wall time of each process
//! (start to exit) is measured; prints the median, the 90th percentile and
//! the ratio of the medians.
//!
//! The report, VCEK, ASK and ARK are made by the test issuer
//! (`sev_proto::snp::testing`, RSA-2048 roots) and written as files both
//! tools read: `sev-owner` checks the whole chain to the explicitly trusted
//! ARK, the report's binding and signature (CRL skipped: neither tool is
//! given one); `snpguest verify attestation` checks the report's TCB, chip
//! id and signature with the VCEK. `snpguest` is found on PATH (or
//! `$SNPGUEST`); without it the `sev-owner` row alone is printed.
//!
//! `cargo bench -p sev-tools --bench snp_verify`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sev_proto::snp::testing::{pem, TestIssuer};
use sev_proto::snp::{Product, TcbVersion};

const OWNER: &str = env!("CARGO_BIN_EXE_sev-owner");
const RUNS: usize = 40;

fn time_once(bin: &Path, args: &[String]) -> Duration {
    let start = Instant::now();
    let o = Command::new(bin).args(args).output().unwrap();
    let took = start.elapsed();
    assert!(
        o.status.success(),
        "{} {args:?}:\n{}{}",
        bin.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    took
}

fn snpguest() -> Option<PathBuf> {
    let bin = std::env::var_os("SNPGUEST").map_or_else(|| PathBuf::from("snpguest"), PathBuf::from);
    match Command::new(&bin).arg("--version").output() {
        Ok(o) if o.status.success() => Some(bin),
        _ => None,
    }
}

fn stats(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 9 / 10])
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let tcb = TcbVersion {
        fmc: 0,
        bootloader: 3,
        tee: 0,
        snp: 8,
        microcode: 115,
    };
    let chip = [0x42; 64];
    let issuer = TestIssuer::new(Product::Milan, 0x1_0001).unwrap();
    let (vcek, key) = issuer.vcek(&chip, tcb).unwrap();
    let report = issuer.report(&key, chip, tcb).unwrap();
    let certs = d.join("certs");
    std::fs::create_dir(&certs).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = certs.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let ark = write("ark.pem", pem(issuer.ark.der()).unwrap().as_bytes());
    write("ask.pem", pem(issuer.ask.der()).unwrap().as_bytes());
    let vcek = write("vcek.pem", pem(vcek.der()).unwrap().as_bytes());
    let chain = write(
        "cert_chain.pem",
        issuer.cert_chain_pem().unwrap().as_bytes(),
    );
    let report_path = d.join("report.bin");
    std::fs::write(&report_path, report.encode()).unwrap();
    let report_path = report_path.to_str().unwrap().to_string();

    let owner_args: Vec<String> = [
        "snp",
        "verify",
        "--report",
        &report_path,
        "--vcek",
        &vcek,
        "--chain",
        &chain,
        "--ark",
        &ark,
        "--trust-ark-explicitly",
        "--no-crl",
        "--offline",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let guest = snpguest();
    let guest_args: Vec<String> = [
        "verify",
        "attestation",
        certs.to_str().unwrap(),
        &report_path,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    // Warm up (page cache, dynamic loader) and check both accept the files.
    time_once(Path::new(OWNER), &owner_args);
    if let Some(g) = &guest {
        time_once(g, &guest_args);
    }
    let (mut owner_t, mut guest_t) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        owner_t.push(time_once(Path::new(OWNER), &owner_args));
        if let Some(g) = &guest {
            guest_t.push(time_once(g, &guest_args));
        }
    }
    let (om, o90) = stats(owner_t);
    println!("SNP report verification, process to process, {RUNS} runs each (alternating)");
    println!("| tool | median | p90 |");
    println!("|---|---|---|");
    println!(
        "| sev-owner snp verify (chain + report) | {} | {} |",
        ms(om),
        ms(o90)
    );
    match guest {
        Some(_) => {
            let (gm, g90) = stats(guest_t);
            println!(
                "| snpguest verify attestation (report) | {} | {} |",
                ms(gm),
                ms(g90)
            );
            println!(
                "sev-owner / snpguest median ratio: {:.2} (below 1: sev-owner is faster)",
                om.as_secs_f64() / gm.as_secs_f64()
            );
        }
        None => println!("snpguest not found (PATH or $SNPGUEST): its row is skipped"),
    }
}
