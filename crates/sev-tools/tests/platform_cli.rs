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
fn init_product_turin_makes_an_eight_byte_chip_id() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let v = json(&[
        &emu(&dir),
        "init",
        "--ark-bits",
        "2048",
        "--product",
        "turin",
    ]);
    assert_eq!(v["created"], true);
    let v = json(&[&emu(&dir), "id"]);
    let id = v["id"].as_str().unwrap();
    assert_eq!(id.len(), 128);
    assert_ne!(&id[..16], "0000000000000000");
    assert_eq!(&id[16..], "0".repeat(112));
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

/// Issue 9, item 7: concurrent `pek-cert-import` runs with different OCAs
/// on one platform. The ALREADY_OWNED check and the write happen under the
/// platform directory's lock, so exactly one import wins, every other one
/// fails with the firmware's ALREADY_OWNED, and the platform holds the
/// winner's OCA. Several rounds (reset in between) to give a race a chance.
#[test]
fn concurrent_imports_have_one_winner() {
    const OWNERS: usize = 6;
    const ROUNDS: usize = 3;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let plat = platform_copy(&platform_a(), d);
    let em = emu(&plat);
    for round in 0..ROUNDS {
        let csr = d.join(format!("csr{round}"));
        ok(PLATFORM, &[&em, "pek-csr", p(&csr)]);
        let mut owners = Vec::new();
        for i in 0..OWNERS {
            let (cert, key, signed) = (
                d.join(format!("oca{round}-{i}.cert")),
                d.join(format!("oca{round}-{i}.key")),
                d.join(format!("pek{round}-{i}.signed")),
            );
            ok(PLATFORM, &["oca-gen", "--cert", p(&cert), "--key", p(&key)]);
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
            owners.push((cert, signed));
        }
        let children: Vec<_> = owners
            .iter()
            .map(|(cert, signed)| {
                std::process::Command::new(PLATFORM)
                    .args([
                        em.as_str(),
                        "pek-cert-import",
                        "--pek",
                        p(signed),
                        "--oca",
                        p(cert),
                    ])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outputs: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let winners: Vec<usize> = (0..OWNERS)
            .filter(|i| outputs[*i].status.success())
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {} imports succeeded:\n{}",
            winners.len(),
            outputs
                .iter()
                .map(|o| format!("{}{}", stdout(o), stderr(o)))
                .collect::<String>()
        );
        for (i, o) in outputs.iter().enumerate() {
            if i != winners[0] {
                assert!(
                    stderr(o).contains("ALREADY_OWNED"),
                    "round {round}, owner {i}: {}",
                    stderr(o)
                );
            }
        }
        let chain = exported(&plat, d);
        assert_eq!(
            &chain[2 * 0x824..3 * 0x824],
            &std::fs::read(&owners[winners[0]].0).unwrap()[..],
            "round {round}: the platform holds the winner's OCA"
        );
        ok(PLATFORM, &[&em, "reset"]);
    }
}

/// Issue 9, item 9: an existing platform directory that others may write
/// (world- or group-writable) is refused by `init` and by every command
/// that opens it, with the directory, its mode and the fix in the message;
/// nothing is created in it.
#[test]
fn insecure_platform_directory_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("open");
    std::fs::create_dir(&dir).unwrap();
    for mode in [0o777, 0o770, 0o1777] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        let line = fails(PLATFORM, &["init", p(&dir), "--ark-bits", "2048"], p(&dir));
        assert!(line.contains(&format!("mode {mode:o}")), "{line}");
        assert!(line.contains("chmod 700"), "{line}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "{line}");
    }
    // An existing platform whose directory became group-writable: every
    // command that opens it refuses.
    let plat = platform_copy(&platform_a(), tmp.path());
    std::fs::set_permissions(&plat, std::fs::Permissions::from_mode(0o770)).unwrap();
    for cmd in ["status", "id", "pdh-gen"] {
        let line = fails(PLATFORM, &[&emu(&plat), cmd], "writable by its group");
        assert!(line.contains(p(&plat)), "{line}");
    }
    std::fs::set_permissions(&plat, std::fs::Permissions::from_mode(0o700)).unwrap();
    ok(PLATFORM, &[&emu(&plat), "status"]);
    // A private directory that belongs to another user (only root can make
    // one here).
    if std::os::unix::fs::chown(&plat, Some(4242), None).is_ok() {
        let line = fails(PLATFORM, &[&emu(&plat), "status"], "owned by uid 4242");
        assert!(line.contains("chown"), "{line}");
    } else {
        eprintln!("insecure_platform_directory_is_refused: not root, the owner check is covered by sev-psp's unit test");
    }
}

/// One firmware per platform: `sev-platform` sees the guests another
/// process (here this test, as a VMM would) runs on the same directory,
/// and the commands follow the platform-wide state as Linux does.
#[test]
fn commands_follow_the_guests_of_other_processes() {
    use sev_proto::abi::Policy;
    let tmp = tempfile::tempdir().unwrap();
    let plat = platform_copy(&platform_a(), tmp.path());
    let em = emu(&plat);
    let status = || {
        let v = json(&[&em, "status"]);
        (
            v["status"]["state"].as_str().unwrap().to_string(),
            v["status"]["guests"].as_u64().unwrap(),
        )
    };
    assert_eq!(status(), ("UNINIT".to_string(), 0));
    let vmm = sev_psp::Platform::open(&plat, sev_psp::rng::os_rng()).unwrap();
    vmm.init(false).unwrap();
    let h = vmm
        .launch_start(0, Policy::from_bits(0), None, None)
        .unwrap();
    assert_eq!(status(), ("WORKING".to_string(), 1));
    // PEK_GEN needs INIT: refused while a guest runs, by the firmware.
    fails(PLATFORM, &[&em, "pek-gen"], "INVALID_PLATFORM_STATE");
    ok(PLATFORM, &[&em, "pdh-gen"]);
    fails(PLATFORM, &[&em, "reset"], "guests are running");
    assert_eq!(status(), ("WORKING".to_string(), 1));
    vmm.decommission(h).unwrap();
    assert_eq!(status(), ("INIT".to_string(), 0));
    // An INIT platform stays INIT after a command that needs INIT; reset
    // shuts it down first.
    ok(PLATFORM, &[&em, "pek-gen"]);
    assert_eq!(status(), ("INIT".to_string(), 0));
    ok(PLATFORM, &[&em, "reset"]);
    assert_eq!(status(), ("UNINIT".to_string(), 0));
    // A guest whose process went away is gone for everybody.
    vmm.init(false).unwrap();
    vmm.launch_start(0, Policy::from_bits(0), None, None)
        .unwrap();
    assert_eq!(status().1, 1);
    drop(vmm);
    assert_eq!(status(), ("INIT".to_string(), 0));
}
