//! `sev-platform` without a state directory — its hardware backend, which
//! issues `SEV_ISSUE_CMD` on `/dev/sev` — run under the launcher: every
//! command gives what the same command gives on the emulated backend of the
//! same platform directory, and changes that platform the same way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// `sev-platform ARGS` through the launcher (hardware backend, /dev/sev).
fn hw(plat: &Path, args: &[&str]) -> String {
    ok(
        emulate(plat, &tool("sev-platform"), args),
        &format!("sev-emulate -- sev-platform {args:?}"),
    )
}

/// `sev-platform --emulated=DIR ARGS` (the emulated backend, directly).
fn em(plat: &Path, args: &[&str]) -> String {
    let e = emu(plat);
    let mut a = vec![e.as_str()];
    a.extend_from_slice(args);
    ok(platform_tool(&a), &format!("sev-platform {a:?}"))
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

const CERT: usize = 0x824;

fn chain(plat: &Path, dir: &Path, hardware: bool) -> Vec<u8> {
    let f = dir.join(if hardware { "hw.chain" } else { "em.chain" });
    if hardware {
        hw(plat, &["export", p(&f)]);
    } else {
        em(plat, &["export", p(&f)]);
    }
    std::fs::read(f).unwrap()
}

#[test]
fn status_id_and_export_match_the_emulated_backend() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let plat = platform_copy(d);

    let h = json(&hw(&plat, &["--json", "status"]));
    let e = json(&em(&plat, &["--json", "status"]));
    assert_eq!(h["platform"]["kind"], "hardware", "{h}");
    assert_eq!(h["status"], e["status"]);
    assert_eq!(h["status"]["api_minor"], 55);
    let status = hw(&plat, &["status"]);
    assert!(status.contains("API 1.55 build 21"), "{status}");

    let hid = json(&hw(&plat, &["--json", "id"]));
    assert_eq!(hid["id"].as_str().unwrap().len(), 128);
    assert_eq!(hid["id"], json(&em(&plat, &["--json", "id"]))["id"]);

    let hchain = chain(&plat, d, true);
    assert_eq!(hchain.len(), 4 * CERT);
    assert_eq!(hchain, chain(&plat, d, false));

    // The full chain: the hardware backend needs the AMD CA, here the
    // emulated one (exported by the emulated backend).
    let (ca, ark, full) = (d.join("ca"), d.join("ark"), d.join("full"));
    em(&plat, &["export", "--ca", p(&ca), "--ark", p(&ark)]);
    hw(&plat, &["export", "--full", p(&full), "--amd-ca", p(&ca)]);
    ok(
        output_within(
            std::process::Command::new(tool("sev-owner")).args([
                "verify",
                "--chain",
                p(&full),
                "--trust-ark",
                p(&ark),
            ]),
            DEADLINE,
        ),
        "sev-owner verify",
    );
    // Without it, the CEK's signer is not found (not AMD's).
    let o = emulate(
        &plat,
        &tool("sev-platform"),
        &["export", "--full", p(&full)],
    );
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("--amd-ca"), "{}", text(&o.stderr));
}

/// Ownership (PEK_CSR, PEK_CERT_IMPORT), rotation (PDH_GEN, PEK_GEN) and
/// FACTORY_RESET issued on /dev/sev change the emulated platform as the
/// emulated backend's commands do.
#[test]
fn ownership_rotation_and_reset_through_dev_sev() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let plat = platform_copy(d);
    let before = chain(&plat, d, false);

    let (csr, cert, key, signed) = (
        d.join("csr"),
        d.join("oca.cert"),
        d.join("oca.key"),
        d.join("pek.signed"),
    );
    hw(&plat, &["pek-csr", p(&csr)]);
    assert_eq!(std::fs::metadata(&csr).unwrap().len(), CERT as u64);
    ok(
        platform_tool(&["oca-gen", "--cert", p(&cert), "--key", p(&key)]),
        "oca-gen",
    );
    ok(
        platform_tool(&[
            "sign-csr",
            p(&csr),
            "--oca-cert",
            p(&cert),
            "--oca-key",
            p(&key),
            "-o",
            p(&signed),
        ]),
        "sign-csr",
    );
    hw(
        &plat,
        &["pek-cert-import", "--pek", p(&signed), "--oca", p(&cert)],
    );
    let owned = chain(&plat, d, false);
    assert_eq!(
        &owned[2 * CERT..3 * CERT],
        &std::fs::read(&cert).unwrap()[..]
    );
    assert_eq!(&owned[..CERT], &before[..CERT], "PDH kept");
    assert_eq!(
        json(&em(&plat, &["--json", "status"]))["status"]["externally_owned"],
        true
    );
    // Importing again: the firmware's ALREADY_OWNED through EIO + error.
    let o = emulate(
        &plat,
        &tool("sev-platform"),
        &["pek-cert-import", "--pek", p(&signed), "--oca", p(&cert)],
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("ALREADY_OWNED"),
        "{}",
        text(&o.stderr)
    );

    hw(&plat, &["pdh-gen"]);
    let rotated = chain(&plat, d, false);
    assert_ne!(&rotated[..CERT], &owned[..CERT], "new PDH");
    assert_eq!(&rotated[CERT..], &owned[CERT..], "PEK, OCA, CEK kept");

    hw(&plat, &["pek-gen"]);
    let regen = chain(&plat, d, false);
    assert_ne!(&regen[CERT..2 * CERT], &rotated[CERT..2 * CERT], "new PEK");
    assert_eq!(&regen[3 * CERT..], &rotated[3 * CERT..], "CEK kept");
    assert_eq!(
        json(&hw(&plat, &["--json", "status"]))["status"]["externally_owned"],
        false
    );

    let id = json(&em(&plat, &["--json", "id"]));
    hw(&plat, &["reset"]);
    let reset = chain(&plat, d, false);
    assert_ne!(&reset[..3 * CERT], &regen[..3 * CERT]);
    assert_eq!(&reset[3 * CERT..], &regen[3 * CERT..], "CEK kept");
    assert_eq!(json(&hw(&plat, &["--json", "id"]))["id"], id["id"]);
    assert_eq!(chain(&plat, d, true), reset);
}
