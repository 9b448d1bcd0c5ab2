//! `sev-platform` without a state directory — its hardware backend, which
//! issues `SEV_ISSUE_CMD` on `/dev/sev` — run under the launcher: every
//! command gives what the same command gives on the emulated backend of the
//! same platform directory, and changes that platform the same way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

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

/// A new OCA `NAME.cert`/`NAME.key` in `dir` (`sev-platform oca-gen`) and
/// the PEK of `csr` signed with it, `NAME.pek` (`sign-csr`): the pair
/// `pek-cert-import` takes, as (OCA, signed PEK).
fn oca_signed(dir: &Path, csr: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key, signed) = (
        dir.join(format!("{name}.cert")),
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pek")),
    );
    ok(
        platform_tool(&["oca-gen", "--cert", p(&cert), "--key", p(&key)]),
        "oca-gen",
    );
    ok(
        platform_tool(&[
            "sign-csr",
            p(csr),
            "--oca-cert",
            p(&cert),
            "--oca-key",
            p(&key),
            "-o",
            p(&signed),
        ]),
        "sign-csr",
    );
    (cert, signed)
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

    let csr = d.join("csr");
    hw(&plat, &["pek-csr", p(&csr)]);
    assert_eq!(std::fs::metadata(&csr).unwrap().len(), CERT as u64);
    let (cert, signed) = oca_signed(d, &csr, "oca");
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

/// `sev-platform ARGS` through the launcher, expected to fail: its stderr.
fn hw_fails(plat: &Path, args: &[&str]) -> String {
    let o = emulate(plat, &tool("sev-platform"), args);
    assert!(
        !o.status.success(),
        "sev-emulate -- sev-platform {args:?} succeeded: {}",
        text(&o.stdout)
    );
    text(&o.stderr)
}

/// sev-tools' `concurrent_imports_have_one_winner` on /dev/sev: six
/// launchers import six differently signed PEKs at once into one platform;
/// exactly one wins, every other gets the firmware's ALREADY_OWNED through
/// EIO and `error`, and the platform holds the winner's OCA. Three rounds,
/// reset in between.
#[test]
fn concurrent_imports_through_dev_sev_have_one_winner() {
    const OWNERS: usize = 6;
    const ROUNDS: usize = 3;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let plat = platform_copy(d);
    for round in 0..ROUNDS {
        let csr = d.join(format!("csr{round}"));
        hw(&plat, &["pek-csr", p(&csr)]);
        let mut owners = Vec::new();
        for i in 0..OWNERS {
            owners.push(oca_signed(d, &csr, &format!("oca{round}-{i}")));
        }
        let outputs: Vec<_> = std::thread::scope(|s| {
            let runs: Vec<_> = owners
                .iter()
                .map(|(cert, signed)| {
                    let plat = &plat;
                    s.spawn(move || {
                        emulate(
                            plat,
                            &tool("sev-platform"),
                            &["pek-cert-import", "--pek", p(signed), "--oca", p(cert)],
                        )
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
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
                .map(|o| format!("{}{}", text(&o.stdout), text(&o.stderr)))
                .collect::<String>()
        );
        for (i, o) in outputs.iter().enumerate() {
            if i != winners[0] {
                assert!(
                    text(&o.stderr).contains("ALREADY_OWNED"),
                    "round {round}, owner {i}: {}",
                    text(&o.stderr)
                );
            }
        }
        let chain = chain(&plat, d, true);
        assert_eq!(
            &chain[2 * CERT..3 * CERT],
            &std::fs::read(&owners[winners[0]].0).unwrap()[..],
            "round {round}: the platform holds the winner's OCA"
        );
        hw(&plat, &["reset"]);
    }
}

/// sev-tools' `commands_follow_the_guests_of_other_processes` on /dev/sev:
/// the launcher's PLATFORM_STATUS counts the guests another process (this
/// test, as a VMM would) runs on the same platform, and the driver's rules
/// follow that state: PEK_GEN refused by the firmware while a guest runs,
/// FACTORY_RESET refused by the driver (EBUSY) while the platform is
/// WORKING (said as the emulated backend says it), and shut down first
/// from INIT.
#[test]
fn dev_sev_commands_follow_the_guests_of_other_processes() {
    use sev_proto::abi::Policy;
    let tmp = tempfile::tempdir().unwrap();
    let plat = platform_copy(tmp.path());
    let status = || {
        let v = json(&hw(&plat, &["--json", "status"]));
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
    let e = hw_fails(&plat, &["pek-gen"]);
    assert!(e.contains("INVALID_PLATFORM_STATE"), "{e}");
    hw(&plat, &["pdh-gen"]);
    let e = hw_fails(&plat, &["reset"]);
    assert!(e.contains("guests are running"), "{e}");
    assert!(e.contains("busy"), "the driver's EBUSY is kept: {e}");
    assert_eq!(status(), ("WORKING".to_string(), 1));
    vmm.decommission(h).unwrap();
    assert_eq!(status(), ("INIT".to_string(), 0));
    hw(&plat, &["pek-gen"]);
    assert_eq!(status(), ("INIT".to_string(), 0));
    hw(&plat, &["reset"]);
    assert_eq!(status(), ("UNINIT".to_string(), 0));
    // A guest whose process went away is gone for the launcher too.
    vmm.init(false).unwrap();
    vmm.launch_start(0, Policy::from_bits(0), None, None)
        .unwrap();
    assert_eq!(status().1, 1);
    drop(vmm);
    assert_eq!(status(), ("INIT".to_string(), 0));
}
