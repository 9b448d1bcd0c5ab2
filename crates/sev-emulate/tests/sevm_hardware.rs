//! sevm's hardware backend (`sev-device=/dev/sev`: SEV_ISSUE_CMD on
//! `/dev/sev`, KVM's SEV ioctls on its VM descriptor) run under the
//! launcher: the owner's whole attested launch (`sev-owner launch --device
//! /dev/sev`, a probe sevm for the chain, the session, LAUNCH_MEASURE
//! checked, the secret injected, `cont`) succeeds and the demo guest prints
//! the secret, as the same launch does on sevm's emulated backend.
//!
//! sevm's own integration tests run on the hardware backend under the
//! launcher too (`NAME_hardware_under_launcher` in crates/sevm/tests,
//! docs/guide/sev-emulate.md#sevm-tests); this test stays for what they do
//! not cover: `sev-owner launch --device /dev/sev`, the owner's tool
//! driving sevm (its probe and its launch) as one program under the launcher.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const GUID: &str = "736869e5-84f0-4973-92ec-06879ce3da0b";

/// The `sevm` binary beside the launcher (built if missing).
fn sevm() -> PathBuf {
    workspace_bin("sevm", "sevm", &["--bin", "sevm"])
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    plat: PathBuf,
    sevm: PathBuf,
    firmware: PathBuf,
    ca: PathBuf,
    ark: PathBuf,
}

fn setup(test: &str) -> Option<Setup> {
    if !sevm_testutil::kvm(test) {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let plat = platform_copy(&dir);
    let (ca, ark) = (dir.join("ca.cert"), dir.join("ark.cert"));
    let full = dir.join("chain.full");
    let e = emu(&plat);
    ok(
        platform_tool(&[
            &e,
            "export",
            "--full",
            p(&full),
            "--ca",
            p(&ca),
            "--ark",
            p(&ark),
        ]),
        "sev-platform export",
    );
    let sevm = sevm();
    let firmware = dir.join("demo.fd");
    ok(
        output_within(
            Command::new(&sevm).arg("-write-demo-guest").arg(&firmware),
            DEADLINE,
        ),
        "sevm -write-demo-guest",
    );
    Some(Setup {
        _tmp: tmp,
        dir,
        plat,
        sevm,
        firmware,
        ca,
        ark,
    })
}

impl Setup {
    /// `sev-owner launch` arguments for `device` (`--device /dev/sev` or
    /// `--emulated DIR`) and `firmware`.
    fn launch<'a>(
        &'a self,
        device: &[&'a str],
        firmware: &'a Path,
        work: &'a Path,
    ) -> Vec<&'a str> {
        let mut a = vec!["launch", "--sevm", p(&self.sevm)];
        a.extend_from_slice(device);
        a.extend([
            "--firmware",
            p(firmware),
            "--ca",
            p(&self.ca),
            "--trust-ark",
            p(&self.ark),
            "--work-dir",
            p(work),
        ]);
        a
    }
}

#[test]
fn the_attested_launch_runs_on_sevms_hardware_backend_under_the_launcher() {
    let test = "the_attested_launch_runs_on_sevms_hardware_backend_under_the_launcher";
    let Some(s) = setup(test) else { return };
    let secret = format!("{GUID}:=hardware-backend-secret");
    let owner = tool("sev-owner");

    let work = s.dir.join("hw");
    let mut args = s.launch(&["--device", "/dev/sev"], &s.firmware, &work);
    args.extend(["--secret", &secret]);
    let out = ok(
        emulate(&s.plat, &owner, &args),
        "sev-emulate -- sev-owner launch --device /dev/sev",
    );
    assert!(out.contains("verify measurement"), "{out}");
    assert!(out.contains("matches"), "{out}");
    assert!(
        out.contains(&format!("secret {GUID}: hardware-backend-secret")),
        "{out}"
    );

    // The same launch on the emulated backend of the same platform.
    let work = s.dir.join("em");
    let plat = s.plat.to_str().unwrap();
    let mut args = s.launch(&["--emulated", plat], &s.firmware, &work);
    args.extend(["--secret", &secret]);
    let out = ok(
        output_within(Command::new(&owner).args(&args), DEADLINE),
        "sev-owner launch --emulated",
    );
    assert!(
        out.contains(&format!("secret {GUID}: hardware-backend-secret")),
        "{out}"
    );
}
