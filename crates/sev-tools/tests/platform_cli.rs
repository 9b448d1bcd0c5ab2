//! `sev-platform` on an emulated platform, the way an operator uses it:
//! status, export, taking ownership with an OCA, PDH/PEK rotation, reset,
//! chip id — each checked through `sev-owner verify` or the exported bytes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn json(args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&stdout(&ok(PLATFORM, &a))).unwrap()
}

fn exported(plat: &Path, dir: &Path) -> Vec<u8> {
    let f = dir.join("chain");
    ok(PLATFORM, &[&emu(plat), "export", p(&f)]);
    std::fs::read(f).unwrap()
}

#[test]
fn status_export_and_id() {
    let tmp = tempfile::tempdir().unwrap();
    let plat = platform_copy(&platform_a(), tmp.path());
    let em = emu(&plat);
    let e = [em.as_str()];
    let text = stdout(&ok(PLATFORM, &[e[0], "status"]));
    assert!(text.contains("emulated"), "{text}");
    assert!(text.contains("API 1.55 build 21"), "{text}");
    let v = json(&[e[0], "status"]);
    assert_eq!(v["platform"]["kind"], "emulated");
    assert_eq!(v["status"]["api_minor"], 55);
    assert_eq!(v["status"]["externally_owned"], false);

    let id = json(&[e[0], "id"]);
    assert_eq!(id["id"].as_str().unwrap().len(), 128);
    assert_eq!(json(&[e[0], "id"]), id, "chip id is stable");

    let out = tmp.path().join("x");
    let v = json(&[
        e[0],
        "export",
        "--dir",
        p(&out),
        "--pdh",
        p(&tmp.path().join("pdh")),
    ]);
    assert_eq!(v["written"].as_array().unwrap().len(), 7);
    for n in ["pdh", "pek", "oca", "cek"] {
        assert_eq!(
            std::fs::metadata(out.join(format!("{n}.cert")))
                .unwrap()
                .len(),
            0x824
        );
    }
    assert_eq!(
        std::fs::read(out.join("pdh.cert")).unwrap(),
        std::fs::read(tmp.path().join("pdh")).unwrap()
    );
    ok(
        OWNER,
        &[
            "verify",
            "--chain-dir",
            p(&out),
            "--trust-ark",
            p(&out.join("ark.cert")),
        ],
    );
    let chain = exported(&plat, tmp.path());
    assert_eq!(
        chain.len(),
        4 * 0x824,
        "sevctl export layout: PDH, PEK, OCA, CEK"
    );
    assert_eq!(
        &chain[..0x824],
        &std::fs::read(out.join("pdh.cert")).unwrap()[..]
    );
}

/// pek-csr → oca-gen → sign-csr → pek-cert-import: the platform is then
/// owned by that OCA (its exported chain carries it and still verifies);
/// importing again is refused (ALREADY_OWNED); pek-gen returns to
/// self-owned with a new PEK; pdh-gen rotates only the PDH; reset makes a
/// new OCA/PEK/PDH and keeps the chip.
#[test]
fn ownership_rotation_and_reset() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let plat = platform_copy(&platform_a(), d);
    let em = emu(&plat);
    let e = |extra: &[&str]| {
        let mut v = vec![em.as_str()];
        v.extend_from_slice(extra);
        ok(PLATFORM, &v)
    };
    let ark = d.join("ark");
    e(&["export", "--ark", p(&ark)]);
    let before = exported(&plat, d);

    let (csr, cert, key, signed) = (
        d.join("csr"),
        d.join("oca.cert"),
        d.join("oca.key"),
        d.join("pek.signed"),
    );
    e(&["pek-csr", p(&csr)]);
    ok(PLATFORM, &["oca-gen", "--cert", p(&cert), "--key", p(&key)]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    ok(
        PLATFORM,
        &[
            "sign-csr",
            p(&csr),
            "--oca-cert",
            p(&cert),
            "--oca-key",
            p(&key),
            "-o",
            p(&signed),
        ],
    );
    e(&["pek-cert-import", "--pek", p(&signed), "--oca", p(&cert)]);
    let owned = exported(&plat, d);
    assert_eq!(
        &owned[2 * 0x824..3 * 0x824],
        &std::fs::read(&cert).unwrap()[..],
        "OCA is ours"
    );
    assert_eq!(&owned[..0x824], &before[..0x824], "PDH kept");
    let v = json(&[&emu(&plat), "status"]);
    assert_eq!(v["status"]["externally_owned"], true);
    let full = d.join("full");
    e(&["export", "--full", p(&full)]);
    ok(
        OWNER,
        &["verify", "--chain", p(&full), "--trust-ark", p(&ark)],
    );
    fails(
        PLATFORM,
        &[
            &emu(&plat),
            "pek-cert-import",
            "--pek",
            p(&signed),
            "--oca",
            p(&cert),
        ],
        "ALREADY_OWNED",
    );

    e(&["pdh-gen"]);
    let rotated = exported(&plat, d);
    assert_ne!(&rotated[..0x824], &owned[..0x824], "new PDH");
    assert_eq!(&rotated[0x824..], &owned[0x824..], "PEK, OCA, CEK kept");

    e(&["pek-gen"]);
    let regen = exported(&plat, d);
    assert_ne!(
        &regen[0x824..2 * 0x824],
        &rotated[0x824..2 * 0x824],
        "new PEK"
    );
    assert_eq!(&regen[3 * 0x824..], &rotated[3 * 0x824..], "CEK kept");
    let v = json(&[&emu(&plat), "status"]);
    assert_eq!(v["status"]["externally_owned"], false);

    let id = json(&[&emu(&plat), "id"]);
    e(&["reset"]);
    let reset = exported(&plat, d);
    assert_ne!(&reset[..3 * 0x824], &regen[..3 * 0x824]);
    assert_eq!(&reset[3 * 0x824..], &regen[3 * 0x824..], "CEK kept");
    assert_eq!(json(&[&emu(&plat), "id"]), id);
    e(&["export", "--full", p(&full)]);
    ok(
        OWNER,
        &["verify", "--chain", p(&full), "--trust-ark", p(&ark)],
    );
}

#[test]
fn init_creates_once_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let v = json(&[
        &emu(&dir),
        "init",
        "--ark-bits",
        "2048",
        "--api",
        "1.51",
        "--build",
        "3",
    ]);
    assert_eq!(v["created"], true);
    assert_eq!(v["status"]["api_minor"], 51);
    let v = json(&[&emu(&dir), "init"]);
    assert_eq!(v["created"], false);
    // The default directory comes from XDG_STATE_HOME.
    let o = std::process::Command::new(PLATFORM)
        .args(["--emulated", "status"]) // `--emulated` alone: the default directory
        .env("XDG_STATE_HOME", tmp.path().join("state"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("state/sevm/platform"), "{}", stderr(&o));
}

/// On AMD hardware only (skipped elsewhere, never a failure): status and
/// the exported chain's structure through /dev/sev.
#[test]
fn hardware_status_and_export() {
    if !sevm_testutil::sev_device("hardware_status_and_export") {
        return;
    }
    let v = json(&["status"]);
    assert_eq!(v["platform"]["kind"], "hardware");
    let tmp = tempfile::tempdir().unwrap();
    let chain = tmp.path().join("chain");
    ok(PLATFORM, &["export", p(&chain)]);
    assert_eq!(std::fs::metadata(&chain).unwrap().len(), 4 * 0x824);
}
