//! SNP attestation end to end (docs/guide/sev-owner.md#exporting-the-snp-demos-evidence):
//! `sev-owner demo --snp --export DIR` launches the demo guest under sevm
//! with the emulated platform's certificates for its extended request, and
//! writes the report the guest received and the platform's chain; then the
//! verifiers, unmodified: `snpguest verify certs` and `snpguest verify
//! attestation`, virtee's `sev` crate, `sev-snp-measure --mode snp` for the
//! measurement, and `sev-owner snp verify` with the emulated ARK trusted
//! explicitly. A report with one flipped byte is refused by each.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::*;

/// One `sev-owner demo --snp --export` run, shared by the tests.
struct Exported {
    /// The export directory.
    dir: PathBuf,
    /// The platform directory.
    platform: PathBuf,
    /// The sevm binary.
    sevm: PathBuf,
    /// What the demo printed.
    out: String,
}

impl Exported {
    /// The `sev-owner snp verify` command line the demo prints for the
    /// operator.
    fn verify_hint(&self) -> Vec<&str> {
        let line = self
            .out
            .lines()
            .find_map(|l| l.strip_prefix("or: sev-owner "))
            .unwrap_or_else(|| panic!("no sev-owner snp verify hint in:\n{}", self.out));
        line.split_whitespace().collect()
    }
}

/// Runs the demo once per test process (`None` after reporting the skip:
/// no /dev/kvm or no sevm).
fn exported(test: &str) -> Option<&'static Exported> {
    static RUN: OnceLock<Option<Exported>> = OnceLock::new();
    if !sevm_testutil::kvm(test) {
        return None;
    }
    let sevm = sevm(test)?;
    RUN.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Earlier runs' directories (their process gone) are removed.
        for entry in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("snp_e2e-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let base = tmp.join(format!("snp_e2e-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let platform = platform_copy(&platform_a(), &base);
        let dir = base.join("export");
        let o = ok(
            OWNER,
            &[
                "demo",
                "--snp",
                "--platform",
                p(&platform),
                "--sevm",
                p(&sevm),
                "--export",
                p(&dir),
            ],
        );
        Some(Exported {
            dir,
            platform,
            sevm,
            out: stdout(&o),
        })
    })
    .as_ref()
}

/// A copy of the export in a fresh directory under `tmp`, its report's
/// byte at `flip` (if any) inverted.
fn copy_export(e: &Exported, tmp: &Path, flip: Option<usize>) -> PathBuf {
    let to = tmp.join(if flip.is_some() { "flipped" } else { "copy" });
    std::fs::create_dir_all(&to).unwrap();
    for name in ["ark.pem", "ask.pem", "vcek.pem", "crl.der", "report.bin"] {
        std::fs::copy(e.dir.join(name), to.join(name)).unwrap();
    }
    if let Some(at) = flip {
        let mut report = std::fs::read(to.join("report.bin")).unwrap();
        report[at] ^= 0xFF;
        std::fs::write(to.join("report.bin"), report).unwrap();
    }
    to
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// MEASUREMENT's offset in the report (a signed field).
const MEASUREMENT: usize = 0x90;

#[test]
fn the_export_holds_the_report_the_guest_printed_and_is_never_overwritten() {
    let test = "the_export_holds_the_report_the_guest_printed_and_is_never_overwritten";
    let Some(e) = exported(test) else { return };
    assert!(
        e.out.contains("snp report: certificate table entries: 3\n"),
        "{}",
        e.out
    );
    assert!(e.out.contains("verdict: OK"), "{}", e.out);
    // report.bin is the 1184 bytes the guest printed, as it printed them.
    let printed: String = e
        .out
        .lines()
        .filter_map(|l| l.strip_prefix("snp report: "))
        .filter(|l| l.len() == 64)
        .collect();
    let report = std::fs::read(e.dir.join("report.bin")).unwrap();
    assert_eq!(report.len(), 1184);
    assert_eq!(hex::encode(&report), printed);
    // The firmware is the measured image, the certificates the platform's
    // for the reported TCB: the same bytes the guest received.
    for name in [
        "report.bin",
        "ark.pem",
        "ask.pem",
        "vcek.pem",
        "firmware.fd",
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(e.dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o644, "{name}");
    }
    let vcek = sev_proto::snp::cert::Certificate::from_der_or_pem(
        &std::fs::read(e.dir.join("vcek.pem")).unwrap(),
    )
    .unwrap();
    let guest_vcek: String = e
        .out
        .split(&format!(
            "snp cert: {} ",
            hex::encode(sev_proto::snp::cert_table::guid::VCEK)
        ))
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .map_while(|l| l.strip_prefix("snp cert data: "))
        .collect();
    assert_eq!(hex::encode(vcek.der()), guest_vcek);

    // Again into the same directory: refused before anything runs.
    let err = fails(
        OWNER,
        &[
            "demo",
            "--snp",
            "--platform",
            p(&e.platform),
            "--sevm",
            p(&e.sevm),
            "--export",
            p(&e.dir),
        ],
        "exists already",
    );
    assert!(err.contains("nothing was run"), "{err}");
    assert_eq!(std::fs::read(e.dir.join("report.bin")).unwrap(), report);
}

/// snpguest (crates.io, unmodified): `verify certs` and `verify
/// attestation` accept the export, and refuse a report with a flipped byte.
#[test]
fn snpguest_verifies_the_exported_certificates_and_report() {
    let test = "snpguest_verifies_the_exported_certificates_and_report";
    let Some(snpguest) = peer(test, "snpguest") else {
        return;
    };
    let Some(e) = exported(test) else { return };
    let o = Command::new(&snpguest)
        .args(["verify", "certs", p(&e.dir)])
        .output()
        .unwrap();
    assert!(o.status.success(), "snpguest verify certs: {}", text(&o));
    assert!(
        text(&o).contains("VCEK was signed by the AMD ASK"),
        "{}",
        text(&o)
    );
    let o = Command::new(&snpguest)
        .args([
            "verify",
            "attestation",
            p(&e.dir),
            p(&e.dir.join("report.bin")),
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "snpguest verify attestation: {}",
        text(&o)
    );
    assert!(
        text(&o).contains("VEK signed the Attestation Report"),
        "{}",
        text(&o)
    );

    let tmp = tempfile::tempdir().unwrap();
    let flipped = copy_export(e, tmp.path(), Some(MEASUREMENT));
    let o = Command::new(&snpguest)
        .args([
            "verify",
            "attestation",
            p(&flipped),
            p(&flipped.join("report.bin")),
        ])
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "snpguest accepted a report with a flipped byte: {}",
        text(&o)
    );
}

/// virtee's `sev` crate verifies the exported chain (ARK → ASK → VCEK) and
/// the report's signature with it, and refuses a report with a flipped byte.
#[test]
fn virtee_sev_verifies_the_exported_chain_and_report() {
    use sev::certs::snp::{Chain, Verifiable};
    use sev::firmware::guest::AttestationReport;
    use sev::parser::ByteParser;
    let test = "virtee_sev_verifies_the_exported_chain_and_report";
    let Some(e) = exported(test) else { return };
    let read = |name: &str| std::fs::read(e.dir.join(name)).unwrap();
    let chain = Chain::from_pem(&read("ark.pem"), &read("ask.pem"), &read("vcek.pem")).unwrap();
    (&chain)
        .verify()
        .expect("virtee/sev verifies the exported chain");
    let bytes = read("report.bin");
    let report = AttestationReport::from_bytes(&bytes).unwrap();
    (&chain, &report)
        .verify()
        .expect("virtee/sev verifies the report with the exported VCEK");
    let mut flipped = bytes.clone();
    flipped[MEASUREMENT] ^= 0xFF;
    let flipped = AttestationReport::from_bytes(&flipped).unwrap();
    assert!((&chain, &flipped).verify().is_err());
}

/// The report's MEASUREMENT is what the real sev-snp-measure computes for
/// the launch: the exported firmware, one EPYC-Milan vCPU, no kernel
/// hashes (the policy is not part of the digest).
#[test]
fn the_reported_measurement_is_sev_snp_measures_digest() {
    let test = "the_reported_measurement_is_sev_snp_measures_digest";
    let Some(measure) = peer(test, "sev-snp-measure") else {
        return;
    };
    let Some(e) = exported(test) else { return };
    let o = Command::new(&measure)
        .args([
            "--mode",
            "snp",
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC-Milan",
            "--ovmf",
            p(&e.dir.join("firmware.fd")),
            "--output-format",
            "hex",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "sev-snp-measure: {}", text(&o));
    let digest = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(digest.len(), 96, "{digest}");
    let report = std::fs::read(e.dir.join("report.bin")).unwrap();
    assert_eq!(hex::encode(&report[MEASUREMENT..MEASUREMENT + 48]), digest);
}

/// `sev-owner snp verify` as the demo tells the operator to run it (the
/// emulated ARK trusted explicitly, the launch's measurement, nonce and
/// host data): verified; the same without trusting the emulated ARK, or
/// with a flipped byte, refused.
#[test]
fn sev_owner_snp_verify_accepts_the_export_with_the_emulated_ark() {
    let test = "sev_owner_snp_verify_accepts_the_export_with_the_emulated_ark";
    let Some(e) = exported(test) else { return };
    let args = e.verify_hint();
    assert_eq!(&args[..2], ["snp", "verify"]);
    assert!(args.contains(&"--crl"), "{args:?}");
    let o = ok(OWNER, &args);
    let out = stdout(&o);
    for line in [
        "trusted explicitly, NOT AMD's pinned root",
        "check measurement: ok",
        "revocation: ok, not listed in the ARK's CRL",
        "check report-data: ok",
        "check host-data: ok",
        "verdict: verified",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }

    // Without --trust-ark-explicitly the emulated root is not AMD's.
    let untrusted: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| *a != "--trust-ark-explicitly")
        .collect();
    let o = run(OWNER, &untrusted);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));

    let tmp = tempfile::tempdir().unwrap();
    let flipped = copy_export(e, tmp.path(), Some(MEASUREMENT));
    let report = p(&e.dir.join("report.bin")).to_string();
    let flipped_report = p(&flipped.join("report.bin")).to_string();
    let forged: Vec<&str> = args
        .iter()
        .map(|a| {
            if *a == report {
                flipped_report.as_str()
            } else {
                a
            }
        })
        .collect();
    assert!(forged.contains(&flipped_report.as_str()), "{forged:?}");
    let o = run(OWNER, &forged);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).to_lowercase().contains("signature"),
        "{}",
        text(&o)
    );
}

/// `args` with the value after `flag` replaced by `value`.
fn replaced<'a>(args: &[&'a str], flag: &str, value: &'a str) -> Vec<&'a str> {
    let at = args
        .iter()
        .position(|a| *a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    let mut out = args.to_vec();
    out[at + 1] = value;
    out
}

/// The tamper matrix on the emulated platform's own certificates, through
/// `sev-owner snp verify` as the demo prints it: another chip's VCEK,
/// another platform's ASK, another platform's ARK trusted, a VCEK of this
/// chip for other SPLs than the report's REPORTED_TCB, and the ASK revoked
/// by `sev-platform kds revoke-ask` (the CRL fetched from `sev-platform kds
/// serve`): each exits 3 naming what is wrong.
#[test]
fn sev_owner_snp_verify_refuses_each_wrong_certificate_naming_it() {
    let test = "sev_owner_snp_verify_refuses_each_wrong_certificate_naming_it";
    let Some(e) = exported(test) else { return };
    let args = e.verify_hint();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();

    // Another platform: another chip, another ARK and ASK.
    let other_platform = platform_copy(&platform_b(), &d.join("b"));
    let other = d.join("other");
    ok(
        PLATFORM,
        &[&emu(&other_platform), "snp", "certs", "--out", p(&other)],
    );
    // This chip's VCEK for other SPLs: the report's TCB with SNP one lower.
    let report = sev_proto::snp::report::AttestationReport::decode(
        &std::fs::read(e.dir.join("report.bin")).unwrap(),
    )
    .unwrap();
    let product = report.product().unwrap();
    let mut tcb = report.reported_tcb(product).unwrap();
    assert!(tcb.snp > 0, "{tcb}");
    tcb.snp -= 1;
    let lower = d.join("lower");
    let raw = format!("{:#x}", tcb.encode(product).unwrap());
    ok(
        PLATFORM,
        &[
            &emu(&e.platform),
            "snp",
            "certs",
            "--out",
            p(&lower),
            "--tcb",
            &raw,
        ],
    );

    let other_vcek = other.join("vcek.pem");
    let other_ask = other.join("ask.pem");
    let other_ark = other.join("ark.pem");
    let lower_vcek = lower.join("vcek.pem");
    let cases = [
        (replaced(&args, "--vcek", p(&other_vcek)), "VCEK"),
        (replaced(&args, "--chain", p(&other_ask)), "ASK"),
        (replaced(&args, "--ark", p(&other_ark)), "ASK"),
        (
            replaced(&args, "--vcek", p(&lower_vcek)),
            "REPORTED_TCB SNP SVN",
        ),
    ];
    let mut seen = Vec::new();
    for (case, want) in &cases {
        let o = run(OWNER, case);
        assert_eq!(o.status.code(), Some(3), "{want}: {}", text(&o));
        let err = stderr(&o);
        assert!(err.contains(want), "{want}: {err}");
        assert!(
            stdout(&o).contains("verdict: NOT AUTHENTIC"),
            "{}",
            stdout(&o)
        );
        seen.push(err);
    }
    // The messages tell the cases apart.
    assert!(seen[0].contains("signature"), "{}", seen[0]);
    assert!(seen[1].contains("signature"), "{}", seen[1]);
    assert!(seen[3].contains("snpSPL"), "{}", seen[3]);

    // The ASK revoked by the platform's ARK, the CRL fetched from its key server.
    let revoking = platform_copy(&platform_a(), &d.join("revoking"));
    ok(PLATFORM, &[&emu(&revoking), "kds", "revoke-ask"]);
    let server = KdsServer::start(&revoking, &["--quiet"]);
    let url = format!("http://{}", server.addr);
    let cache = d.join("kds-cache");
    let crl_at = args.iter().position(|a| *a == "--crl").unwrap();
    let mut fetching: Vec<&str> = args[..crl_at]
        .iter()
        .chain(&args[crl_at + 2..])
        .copied()
        .collect();
    fetching.extend(["--fetch", "--kds-url", &url, "--kds-cache", p(&cache)]);
    let o = run(OWNER, &fetching);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        stderr(&o).contains("is revoked by the ARK's CRL"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("ASK (serial"), "{}", stderr(&o));
}
