//! Bad input for every subcommand: missing files, wrong sizes, wrong
//! base64, bad GUIDs, secrets over the firmware's size limit. Each must
//! end with one `tool: error: ...` line naming the problem, a non-zero
//! exit, no panic and no output file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::*;
use sevm_testutil::fixture_path;

const GUID: &str = "736869e5-84f0-4973-92ec-06879ce3da0b";

/// `base` followed by the extra arguments.
macro_rules! cat {
    ($base:expr, [$($a:expr),* $(,)?]) => {
        [&$base[..], &[$($a),*][..]].concat()
    };
}

fn b64(bytes: &[u8]) -> String {
    sev_tools::io::b64_encode(bytes)
}

fn no_files(dir: &Path, names: &[&str]) {
    for n in names {
        assert!(!dir.join(n).exists(), "{n} was written");
    }
    // No temporaries left behind either.
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name();
        assert!(
            !name.to_string_lossy().contains(".tmp"),
            "{name:?} left behind"
        );
    }
}

#[test]
fn verify_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (full, ca, ark) = export(&platform_a(), d);
    let missing = d.join("missing.cert");
    fails(
        OWNER,
        &["verify", "--chain", p(&missing), "--trust-ark", p(&ark)],
        "missing.cert",
    );
    let short = write(d, "short.cert", &[0u8; 1000]);
    fails(
        OWNER,
        &["verify", "--chain", p(&short), "--trust-ark", p(&ark)],
        "short.cert is 1000 bytes",
    );
    let bytes = std::fs::read(&full).unwrap();
    let cut = write(d, "cut.cert", &bytes[..bytes.len() - 10]);
    fails(
        OWNER,
        &["verify", "--chain", p(&cut), "--trust-ark", p(&ark)],
        "ASK ‖ ARK after the SEV certificates",
    );
    fails(
        OWNER,
        &["verify", "--chain", p(&full)],
        "no root to verify to",
    );
    fails(
        OWNER,
        &["verify", "--chain", p(&full), "--generation", "zen5"],
        "unknown AMD generation",
    );
    fails(
        OWNER,
        &[
            "verify",
            "--chain",
            p(&full),
            "--generation",
            "rome",
            "--trust-ark",
            p(&ark),
        ],
        "cannot be used with",
    );
    fails(
        OWNER,
        &["verify", "--chain", p(&full), "--trust-ark", p(&short)],
        "short.cert",
    );
    fails(
        OWNER,
        &[
            "verify",
            "--chain",
            p(&full),
            "--trust-ark",
            p(&ark),
            "--ca",
            p(&short),
        ],
        "short.cert",
    );
    fails(
        OWNER,
        &[
            "verify",
            "--chain",
            p(&full),
            "--chain-dir",
            p(d),
            "--trust-ark",
            p(&ark),
        ],
        "cannot be used with",
    );
    fails(
        OWNER,
        &["verify", "--chain-dir", p(d), "--trust-ark", p(&ark)],
        "pdh.cert",
    );
    let caps = write(
        d,
        "caps.json",
        br#"{"return": {"pdh": "not base64!", "cert-chain": ""}}"#,
    );
    fails(
        OWNER,
        &["verify", "--capabilities", p(&caps), "--trust-ark", p(&ark)],
        "pdh",
    );
    let caps = write(d, "caps2.json", b"{not json");
    fails(
        OWNER,
        &["verify", "--capabilities", p(&caps), "--trust-ark", p(&ark)],
        "is not JSON",
    );
    fails(
        OWNER,
        &[
            "verify",
            "--qmp",
            p(&d.join("no.sock")),
            "--trust-ark",
            p(&ark),
        ],
        "no.sock",
    );
    // A CA file instead of a chain, and a chain instead of a root.
    fails(
        OWNER,
        &["verify", "--chain", p(&ca), "--trust-ark", p(&ark)],
        "ca.cert",
    );
    fails(
        OWNER,
        &["verify", "--chain", p(&full), "--trust-ark", p(&full)],
        "chain.full",
    );
}

#[test]
fn session_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (full, _, ark) = export(&platform_a(), d);
    let out = d.join("out");
    std::fs::create_dir(&out).unwrap();
    let files = ["vm_godh.b64", "vm_session.b64", "vm_tek.bin", "vm_tik.bin"];
    let base = [
        "session",
        "--chain",
        p(&full),
        "--trust-ark",
        p(&ark),
        "--out-dir",
        p(&out),
    ];
    fails(OWNER, &cat!(base, []), "--policy");
    fails(OWNER, &cat!(base, ["--policy", "0x40"]), "reserved bit");
    fails(
        OWNER,
        &cat!(base, ["--policy", "banana"]),
        "invalid guest policy",
    );
    fails(
        OWNER,
        &cat!(base, ["--policy", "0x1ffffffff"]),
        "out of range",
    );
    fails(
        OWNER,
        &cat!(base, ["--policy", "1", "--name", "../x"]),
        "plain file-name prefix",
    );
    // Another platform's root: the PDH is not trusted, nothing is written.
    let other = tempfile::tempdir().unwrap();
    let (_, _, other_ark) = export(&platform_b(), other.path());
    fails(
        OWNER,
        &[
            "session",
            "--chain",
            p(&full),
            "--trust-ark",
            p(&other_ark),
            "--out-dir",
            p(&out),
            "--policy",
            "1",
        ],
        "refusing to create a session for an unverified PDH",
    );
    fails(
        OWNER,
        &[
            "session",
            "--chain",
            p(&full),
            "--trust-ark",
            p(&ark),
            "--policy",
            "1",
            "--out-dir",
            p(&d.join("nodir")),
        ],
        "nodir",
    );
    no_files(&out, &files);
    ok(OWNER, &cat!(base, ["--policy", "1"]));
    for f in files {
        assert!(out.join(f).exists());
    }
}

#[test]
fn measure_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let fw = write(d, "fw.fd", &[0x90; 4096]);
    let tik = write(d, "tik.bin", &[7; 16]);
    let tik15 = write(d, "tik15.bin", &[7; 15]);
    let nonce = b64(&[1; 16]);
    let blob = write(d, "blob.bin", &[2; 48]);
    let base = [
        "measure",
        "--firmware",
        p(&fw),
        "--policy",
        "1",
        "--api-major",
        "1",
        "--api-minor",
        "55",
        "--build-id",
        "21",
    ];
    fails(
        OWNER,
        &cat!(base, ["--tik", p(&tik15), "--nonce", &nonce]),
        "tik15.bin is 15 bytes, expected 16",
    );
    fails(
        OWNER,
        &cat!(base, ["--tik", "!!notbase64", "--nonce", &nonce]),
        "--tik: \"!!notbase64\" is not an existing file and not valid base64",
    );
    fails(
        OWNER,
        &cat!(base, ["--tik", p(&tik), "--nonce", &b64(&[1; 15])]),
        "--nonce: the base64 value is 15 bytes, expected 16",
    );
    fails(
        OWNER,
        &cat!(
            base,
            ["--tik", p(&tik), "--launch-measure-blob", &b64(&[1; 47])]
        ),
        "47 bytes, expected 48",
    );
    fails(
        OWNER,
        &cat!(base, ["--tik", p(&tik), "--verify", "@@@"]),
        "--verify",
    );
    fails(
        OWNER,
        &cat!(base, ["--tik", p(&tik)]),
        "one of --nonce, --launch-measure-blob or --verify",
    );
    fails(
        OWNER,
        &cat!(
            base,
            [
                "--tik",
                p(&tik),
                "--nonce",
                &nonce,
                "--launch-measure-blob",
                p(&blob),
            ]
        ),
        "cannot be used with",
    );
    fails(
        OWNER,
        &["measure", "--firmware", p(&d.join("nofw.fd"))],
        "cannot read firmware",
    );
    fails(
        OWNER,
        &[
            "measure",
            "--firmware",
            p(&fw),
            "--kernel",
            p(&d.join("nokernel")),
        ],
        "cannot read kernel",
    );
    fails(
        OWNER,
        &["measure", "--firmware", p(&fw), "--kernel", p(&fw)],
        "firmware",
    );
    fails(
        OWNER,
        &["measure", "--launch-digest", &b64(&[1; 31])],
        "launch digest is 31 bytes",
    );
    fails(
        OWNER,
        &["measure", "--launch-digest", "%%%"],
        "launch digest",
    );
    fails(OWNER, &["measure"], "give the measured inputs");
    fails(OWNER, &["measure", "--initrd", p(&fw)], "--kernel");
    let no_api = [
        "measure",
        "--firmware",
        p(&fw),
        "--tik",
        p(&tik),
        "--nonce",
        &nonce,
        "--policy",
        "1",
    ];
    fails(
        OWNER,
        &cat!(
            no_api,
            ["--api-major", "300", "--api-minor", "1", "--build-id", "1"]
        ),
        "does not fit in one byte",
    );
    fails(OWNER, &no_api, "--api-major is needed");
    let out = d.join("out.bin");
    fails(
        OWNER,
        &cat!(
            base,
            ["--tik", p(&tik), "--verify", p(&blob), "--outfile", p(&out)]
        ),
        "measurement does not match",
    );
    // A failed verification still wrote the expected blob atomically;
    // a missing output directory writes nothing.
    assert_eq!(std::fs::read(&out).unwrap().len(), 48);
    fails(
        OWNER,
        &cat!(
            base,
            [
                "--tik",
                p(&tik),
                "--nonce",
                &nonce,
                "--outfile",
                p(&d.join("no/out.bin")),
            ]
        ),
        "no/out.bin",
    );
    let vmsa = write(d, "vmsa", &[0; 100]);
    fails(
        OWNER,
        &[
            "measure",
            "--firmware",
            p(&fw),
            "--num-cpus",
            "1",
            "--vmsa-cpu0",
            p(&vmsa),
        ],
        "100 bytes, expected 4096",
    );
}

#[test]
fn measure_without_kernel_hashes_support() {
    let test = "measure_without_kernel_hashes_support";
    let Some(x64) = fixture_path(test, "ovmf/ovmf_OvmfX64_suffix.bin") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let k = write(tmp.path(), "k", b"kernel");
    fails(
        OWNER,
        &["measure", "--firmware", p(&x64), "--kernel", p(&k)],
        "ovmf_OvmfX64_suffix.bin",
    );
}

#[test]
fn secret_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let tik = write(d, "tik.bin", &[7; 16]);
    let tek = write(d, "tek.bin", &[8; 16]);
    let blob = write(d, "blob.bin", &[2; 48]);
    let (hdr, pay) = (d.join("hdr.bin"), d.join("pay.bin"));
    let keys = [
        "secret",
        "--tik",
        p(&tik),
        "--tek",
        p(&tek),
        "--launch-measure-blob",
        p(&blob),
    ];
    let run_with = |extra: &[&str], want: &str| {
        let mut v = keys.to_vec();
        v.extend_from_slice(extra);
        v.extend([p(&hdr), p(&pay)]);
        fails(OWNER, &v, want);
        no_files(d, &["hdr.bin", "pay.bin"]);
    };
    let ok_spec = format!("{GUID}:=hello");
    run_with(&["--secret", "736869e5-84f0-4973-92ec:=x"], "is not a GUID");
    run_with(
        &["--secret", "no-colon-here"],
        "expected GUID:FILE or GUID:=string",
    );
    run_with(
        &["--secret", &format!("{GUID}:{}", p(&d.join("absent.txt")))],
        "absent.txt",
    );
    run_with(
        &["--secret", &format!("{GUID}:={}", "x".repeat(3033))],
        "needs 3088 bytes (padded to 16) but the guest's secret area holds 3072",
    );
    run_with(&["--secret", &ok_spec, "--area-size", "32"], "holds 32");
    run_with(
        &[
            "--secret",
            &ok_spec,
            "--secret",
            &format!("{}:=b", GUID.to_uppercase()),
        ],
        "more than once",
    );
    run_with(&[], "no secrets given");
    run_with(
        &["--secret", &ok_spec, "--iv", &b64(&[0; 15])],
        "--iv is 15 bytes, expected 16",
    );
    run_with(&["--secret", &ok_spec, "--iv", "%%"], "--iv");
    run_with(
        &["--secret", &ok_spec, "--firmware", p(&d.join("nofw"))],
        "nofw",
    );
    let fw = write(d, "fw-without-table.fd", &[0; 4096]);
    run_with(
        &["--secret", &ok_spec, "--firmware", p(&fw)],
        "has no SEV secret area",
    );

    let tik17 = write(d, "tik17.bin", &[7; 17]);
    let mut v = vec![
        "secret",
        "--tik",
        p(&tik17),
        "--tek",
        p(&tek),
        "--launch-measure-blob",
        p(&blob),
    ];
    v.extend(["--secret", &ok_spec, p(&hdr), p(&pay)]);
    fails(OWNER, &v, "tik17.bin is 17 bytes, expected 16");
    let mut v = vec![
        "secret",
        "--tik",
        p(&tik),
        "--tek",
        "AAAA",
        "--launch-measure-blob",
        p(&blob),
    ];
    v.extend(["--secret", &ok_spec, p(&hdr), p(&pay)]);
    fails(OWNER, &v, "--tek: the base64 value is 3 bytes, expected 16");
    let blob32 = b64(&[0; 32]);
    let mut v = vec![
        "secret",
        "--tik",
        p(&tik),
        "--tek",
        p(&tek),
        "--launch-measure-blob",
        &blob32,
    ];
    v.extend(["--secret", &ok_spec, p(&hdr), p(&pay)]);
    fails(OWNER, &v, "32 bytes, expected 48");
    // The payload's directory is missing: the header is not left behind.
    let mut v = keys.to_vec();
    let nodir = d.join("nodir/pay.bin");
    v.extend(["--secret", &ok_spec, p(&hdr), p(&nodir)]);
    fails(OWNER, &v, "nodir/pay.bin");
    no_files(d, &["hdr.bin"]);
    // The largest secret that fits works.
    let mut v = keys.to_vec();
    let fits = format!("{GUID}:={}", "x".repeat(3032));
    v.extend(["--secret", &fits, p(&hdr), p(&pay)]);
    ok(OWNER, &v);
    assert_eq!(std::fs::read(&pay).unwrap().len(), 3072);
}

#[test]
fn attestation_verify_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (full, _, ark) = export(&platform_a(), d);
    let fw = write(d, "fw.fd", &[0x90; 4096]);
    let report = write(d, "report.bin", &[0; 0xD0]);
    let base = [
        "attestation",
        "verify",
        "--chain",
        p(&full),
        "--trust-ark",
        p(&ark),
        "--firmware",
        p(&fw),
        "--policy",
        "1",
    ];
    fails(
        OWNER,
        &cat!(base, ["--report", &b64(&[0; 100])]),
        "100 bytes, expected 208",
    );
    fails(OWNER, &cat!(base, ["--report", "***"]), "--report");
    fails(
        OWNER,
        &cat!(base, ["--report", p(&report)]),
        "attestation report",
    );
    fails(
        OWNER,
        &cat!(base, ["--report", p(&report), "--mnonce", &b64(&[0; 8])]),
        "--mnonce",
    );
    fails(
        OWNER,
        &[
            "attestation",
            "verify",
            "--report",
            p(&report),
            "--chain",
            p(&full),
            "--trust-ark",
            p(&ark),
            "--policy",
            "1",
        ],
        "give the measured inputs",
    );
}

#[test]
fn usage_errors_are_one_line() {
    fails(OWNER, &["frobnicate"], "unrecognized subcommand");
    fails(
        OWNER,
        &["measure", "--bogus"],
        "unexpected argument '--bogus'",
    );
    fails(PLATFORM, &["status", "--bogus"], "unexpected argument");
    let o = run(OWNER, &["--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("verify"));
}

#[test]
fn platform_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fails(
        PLATFORM,
        &[&emu(&d.join("none")), "status"],
        "no emulated platform in",
    );
    if !Path::new("/dev/sev").exists() {
        fails(PLATFORM, &["status"], "no SEV hardware at /dev/sev");
    }
    fails(
        PLATFORM,
        &["--device", "/nonexistent/sev", "id"],
        "/nonexistent/sev",
    );
    let plat = platform_copy(&platform_a(), d);
    let em = emu(&plat);
    let e = [em.as_str()];
    fails(PLATFORM, &cat!(e, ["export"]), "nothing to export");
    fails(
        PLATFORM,
        &cat!(e, ["export", p(&d.join("no/chain"))]),
        "no/chain",
    );
    fails(
        PLATFORM,
        &cat!(
            e,
            [
                "pek-cert-import",
                "--pek",
                p(&d.join("pek")),
                "--oca",
                p(&d.join("oca")),
            ]
        ),
        "pek",
    );
    let short = write(d, "short", &[0; 10]);
    fails(
        PLATFORM,
        &cat!(
            e,
            ["pek-cert-import", "--pek", p(&short), "--oca", p(&short)]
        ),
        "PEK certificate",
    );
    fails(PLATFORM, &["init", "--api", "1"], "MAJOR.MINOR");
    fails(PLATFORM, &["init", "--ark-bits", "1024"], "1024");
    fails(PLATFORM, &["init", "--product", "Rome"], "Rome");
    // OCA work without a platform.
    let (cert, key) = (d.join("oca.cert"), d.join("oca.key"));
    ok(PLATFORM, &["oca-gen", "--cert", p(&cert), "--key", p(&key)]);
    let csr = d.join("csr");
    ok(PLATFORM, &cat!(e, ["pek-csr", p(&csr)]));
    let out = d.join("pek.signed");
    fails(
        PLATFORM,
        &[
            "sign-csr",
            p(&csr),
            "--oca-cert",
            p(&cert),
            "--oca-key",
            p(&short),
            "-o",
            p(&out),
        ],
        "is not an OCA private key",
    );
    fails(
        PLATFORM,
        &[
            "sign-csr",
            p(&short),
            "--oca-cert",
            p(&cert),
            "--oca-key",
            p(&key),
            "-o",
            p(&out),
        ],
        "short",
    );
    fails(
        PLATFORM,
        &[
            "sign-csr",
            p(&csr),
            "--oca-cert",
            p(&csr),
            "--oca-key",
            p(&key),
            "-o",
            p(&out),
        ],
        "is not self-signed",
    );
    assert!(!out.exists());
}
