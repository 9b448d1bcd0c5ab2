//! `sev-owner snp verify` on real AMD reports and certificates: verified,
//! not authentic (exit 3), authentic but a check fails (exit 4), bad input
//! (exit 1), bad usage (exit 2); human and JSON output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use sevm_testutil::fixture_path;

const MILAN_MEASUREMENT: &str = "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";

/// The fixtures of virtee's Milan report: report (hex text), VCEK, KDS cert_chain.
struct Milan {
    report: PathBuf,
    vcek: PathBuf,
    chain: PathBuf,
}

fn milan(test: &str) -> Option<Milan> {
    Some(Milan {
        report: fixture_path(test, "snp/virtee-sev/certs_data/report_milan.hex")?,
        vcek: fixture_path(test, "snp/virtee-sev/certs_data/vcek_milan.der")?,
        chain: fixture_path(test, "snp/virtee-sev/certs_data/cert_chain_milan")?,
    })
}

fn base(m: &Milan) -> Vec<&str> {
    vec![
        "snp",
        "verify",
        "--report",
        p(&m.report),
        "--vcek",
        p(&m.vcek),
        "--chain",
        p(&m.chain),
        "--no-crl",
    ]
}

fn with<'a>(mut args: Vec<&'a str>, more: &[&'a str]) -> Vec<&'a str> {
    args.extend_from_slice(more);
    args
}

/// Runs and requires exit status `code`; returns the output.
fn exits(code: i32, args: &[&str]) -> Output {
    let o = run(OWNER, args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "{args:?}:\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    assert!(!stderr(&o).contains("panicked"));
    o
}

fn report_bytes(m: &Milan) -> Vec<u8> {
    let text = std::fs::read_to_string(&m.report).unwrap();
    hex::decode(text.split_whitespace().collect::<String>()).unwrap()
}

#[test]
fn a_real_milan_report_verifies_with_its_checks() {
    let Some(m) = milan("a_real_milan_report_verifies_with_its_checks") else {
        return;
    };
    let zero_host_data = "00".repeat(32);
    let args = with(
        base(&m),
        &[
            "--product",
            "milan",
            "--measurement",
            MILAN_MEASUREMENT,
            "--host-data",
            &zero_host_data,
            "--vmpl",
            "0",
            "--policy",
            "0x30000",
            "--policy-no-debug",
            "--policy-no-migrate-ma",
            "--min-tcb",
            "0x7308000000000003",
            "--min-launch-tcb",
            "0x7308000000000000",
            "--min-guest-svn",
            "0",
        ],
    );
    let o = ok(OWNER, &args);
    let out = stdout(&o);
    assert!(out.contains("verdict: verified"), "{out}");
    assert!(
        out.contains("ARK-Milan (AMD's genuine Milan root, sha256 69d063b4"),
        "{out}"
    );
    assert!(out.contains("check measurement: ok"), "{out}");
    assert!(out.contains("check min-tcb: ok"), "{out}");
    assert!(
        out.contains("reported TCB   bootloader 3, TEE 0, SNP 8, microcode 115"),
        "{out}"
    );
    assert_eq!(out.matches(": ok\n").count(), 9, "{out}");

    // The same as JSON.
    let o = ok(OWNER, &with(args, &["--json"]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "verified");
    assert_eq!(v["chain"]["root"], "amd-pinned");
    assert_eq!(v["chain"]["product"], "Milan");
    assert_eq!(v["report"]["measurement"], MILAN_MEASUREMENT);
    assert_eq!(v["checks"].as_array().unwrap().len(), 9);
    assert!(v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["ok"] == true));
}

#[test]
fn the_go_sev_guest_report_verifies_from_a_roots_directory() {
    let test = "the_go_sev_guest_report_verifies_from_a_roots_directory";
    let (Some(report), Some(vcek), Some(trust)) = (
        fixture_path(test, "snp/go-sev-guest/testdata/attestation.bin"),
        fixture_path(test, "snp/go-sev-guest/testdata/vcek.testcer"),
        fixture_path(test, "snp/go-sev-guest/trust"),
    ) else {
        return;
    };
    let base = [
        "snp",
        "verify",
        "--no-crl",
        "--report",
        p(&report),
        "--vcek",
        p(&vcek),
        "--product",
        "milan",
    ];
    let o = Command::new(OWNER)
        .args(base)
        .arg("--report-data")
        .arg(format!("0102030405{}", "00".repeat(59)))
        .env("SEV_OWNER_AMD_ROOTS", &trust)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("check report-data: ok"));
    // Its policy allows debugging: authentic, but the check fails (exit 4).
    let o = Command::new(OWNER)
        .args(base)
        .args(["--policy-no-debug", "--json"])
        .env("SEV_OWNER_AMD_ROOTS", &trust)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "check-failed");
    assert_eq!(v["reason"][0], "policy-no-debug");
    assert!(stderr(&o).contains("authentic but fails: policy-no-debug"));
    // Without the roots directory and --chain, the error says where to get the chain.
    fails(OWNER, &base, "no ask_ark_milan.pem in");
}

#[test]
fn failed_checks_exit_4_naming_each() {
    let Some(m) = milan("failed_checks_exit_4_naming_each") else {
        return;
    };
    let o = exits(
        4,
        &with(
            base(&m),
            &[
                "--measurement",
                &"11".repeat(48),
                "--min-tcb",
                "0x7309000000000003",
                "--vmpl",
                "1",
                "--policy-single-socket",
                "--id-key-digest",
                &"22".repeat(48),
                "--report-data",
                &"00".repeat(64),
            ],
        ),
    );
    let out = stdout(&o);
    for name in [
        "measurement",
        "min-tcb",
        "vmpl",
        "policy-single-socket",
        "id-key-digest",
        "report-data",
    ] {
        assert!(
            out.contains(&format!("check {name}: FAILED")),
            "{name}: {out}"
        );
    }
    assert!(
        out.contains("REPORTED_TCB bootloader 3, TEE 0, SNP 8, microcode 115"),
        "{out}"
    );
    assert!(
        out.contains(
            "verdict: authentic, CHECKS FAILED: measurement, report-data, id-key-digest, vmpl, \
             min-tcb, policy-single-socket"
        ),
        "{out}"
    );
}

#[test]
fn reports_that_are_not_authentic_exit_3_naming_the_failure() {
    let test = "reports_that_are_not_authentic_exit_3_naming_the_failure";
    let Some(m) = milan(test) else {
        return;
    };
    let (Some(other_vcek), Some(genoa_ark), Some(genoa_ask), Some(milan_ark)) = (
        fixture_path(test, "snp/go-sev-guest/testdata/vcek.testcer"),
        fixture_path(test, "snp/virtee-sev/builtin/genoa/ark.pem"),
        fixture_path(test, "snp/virtee-sev/builtin/genoa/ask.pem"),
        fixture_path(test, "snp/virtee-sev/builtin/milan/ark.pem"),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();

    // A flipped bit in the signed part.
    let mut bytes = report_bytes(&m);
    bytes[0x50] ^= 0x01; // REPORT_DATA
    let flipped = write(d, "flipped.bin", &bytes);
    // The wrong ARK: Genoa's in a Milan chain, and a Genoa chain for a Milan VCEK.
    let milan_ask = std::fs::read_to_string(&m.chain).unwrap();
    let milan_ask = &milan_ask[..milan_ask.find("-----END CERTIFICATE-----").unwrap() + 25];
    let genoa_ark_pem = std::fs::read_to_string(&genoa_ark).unwrap();
    let wrong_ark = write(
        d,
        "wrong-ark.pem",
        format!("{milan_ask}\n{genoa_ark_pem}").as_bytes(),
    );
    let genoa_chain = write(
        d,
        "genoa-chain.pem",
        format!(
            "{}\n{genoa_ark_pem}",
            std::fs::read_to_string(&genoa_ask).unwrap()
        )
        .as_bytes(),
    );
    // An ASK not signed by the ARK: the ASK's last signature byte changed.
    let ask_der = {
        let text = milan_ask
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>();
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap()
    };
    let mut bad_ask = ask_der;
    *bad_ask.last_mut().unwrap() ^= 1;
    let bad_ask = write(d, "bad-ask.der", &bad_ask);

    let replaced = |slot: usize, file: &Path, more: &[&str]| {
        let mut args: Vec<String> = base(&m).iter().map(|a| a.to_string()).collect();
        args[slot] = file.display().to_string();
        args.extend(more.iter().map(|a| a.to_string()));
        args
    };
    let cases = [
        (
            replaced(3, &flipped, &[]),
            "not authentic: report signature: SNP attestation report signature does not verify \
             with the VCEK public key",
        ),
        (replaced(5, &other_vcek, &[]), "(a VCEK of another chip)"),
        (
            replaced(7, &wrong_ark, &["--product", "milan"]),
            "ARK is AMD's Genoa root, not Milan's",
        ),
        (
            replaced(7, &genoa_chain, &[]),
            "VCEK: issuer \"SEV-Milan\" is not ASK \"SEV-Genoa\"",
        ),
        (
            replaced(7, &bad_ask, &["--ark", p(&milan_ark)]),
            "ASK: SEV-Milan: signature does not verify with the public key of ARK-Milan",
        ),
    ];
    for (args, want) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = exits(3, &args);
        assert!(stderr(&o).contains(want), "{want}: {}", stderr(&o));
        assert!(stdout(&o).contains("verdict: NOT AUTHENTIC"), "{want}");
    }

    // An ARK trusted explicitly must be the chain's (contradictory input: exit 1).
    let args = with(
        base(&m),
        &["--ark", p(&genoa_ark), "--trust-ark-explicitly"],
    );
    fails(
        OWNER,
        &args,
        "ends in an ARK (ARK-Milan) other than --ark (ARK-Genoa)",
    );
    assert_eq!(run(OWNER, &args).status.code(), Some(1));
}

#[test]
fn an_ark_trusted_explicitly_is_named_as_such() {
    let test = "an_ark_trusted_explicitly_is_named_as_such";
    let (Some(m), Some(ark)) = (
        milan(test),
        fixture_path(test, "snp/virtee-sev/builtin/milan/ark.pem"),
    ) else {
        return;
    };
    let o = ok(
        OWNER,
        &with(
            base(&m),
            &["--ark", p(&ark), "--trust-ark-explicitly", "--json"],
        ),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "verified");
    assert_eq!(v["chain"]["root"], "explicit");
    let o = ok(
        OWNER,
        &with(base(&m), &["--ark", p(&ark), "--trust-ark-explicitly"]),
    );
    assert!(
        stdout(&o).contains("trusted explicitly, NOT AMD's pinned root"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn bad_input_exits_1_naming_the_file_and_bad_usage_2() {
    let Some(m) = milan("bad_input_exits_1_naming_the_file_and_bad_usage_2") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let report = report_bytes(&m);
    let report_with = |at: usize, value: u8| {
        let mut bytes = report.clone();
        bytes[at] = value;
        bytes
    };
    // (argument replaced: 3 the report, 5 the VCEK, 7 the chain; the file
    // given instead; the error it must give, exit status 1.)
    let cases = [
        (3, d.join("missing.bin"), "missing.bin"),
        (
            3,
            write(d, "short.bin", &[0u8; 100]),
            "short.bin is 100 bytes: neither an SNP report",
        ),
        (
            3,
            write(d, "big.bin", &vec![b'0'; 20 << 10]),
            "big.bin is 20480 bytes, more than the 16384 bytes accepted",
        ),
        (
            3,
            write(d, "v4.bin", &report_with(0, 4)),
            "v4.bin: SNP attestation report version 4 is not supported",
        ),
        (
            3,
            write(d, "padding.bin", &report_with(0x400, 1)),
            "byte 0x400 is 0x01: signature padding 0x330..0x4A0 must be zero",
        ),
        (
            5,
            write(d, "junk.der", b"not a certificate"),
            "junk.der is not a DER or PEM X.509 certificate",
        ),
        (
            7,
            m.vcek.clone(),
            "holds 1 certificates: expected the ASK then the ARK",
        ),
    ];
    for (slot, file, want) in &cases {
        let mut args = base(&m);
        args[*slot] = p(file);
        fails(OWNER, &args, want);
        assert_eq!(run(OWNER, &args).status.code(), Some(1), "{want}");
    }

    // Usage errors: exit 2.
    for (extra, want) in [
        (["--measurement", "00"], "expected 48 (96 hex digits)"),
        (["--product", "naples"], "unknown SNP product"),
        (["--policy-min-abi", "1"], "is not MAJOR.MINOR"),
    ] {
        let args = with(base(&m), &extra);
        fails(OWNER, &args, want);
        assert_eq!(run(OWNER, &args).status.code(), Some(2));
    }
    fails(OWNER, &with(base(&m), &["--trust-ark-explicitly"]), "--ark");
}
