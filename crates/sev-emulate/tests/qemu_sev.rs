//! Unmodified QEMU under `sev-emulate`: the whole flow of QEMU's SEV
//! documentation with sevm's demo firmware (docs/guide/sev-emulate.md#qemu):
//! `query-sev-capabilities`, a session from it (`sev-owner session`, as
//! `sevctl session`), `-S`, `query-sev-launch-measure` checked by `sev-owner
//! measure` and by the measurement formula, `sev-inject-launch-secret`,
//! `cont`, and the guest prints the secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/qemu.rs"]
mod qemu;

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;

use common::{p, peer, platform_copy, tool};
use qemu::{b64, run, Launch, POLICY};

const SECRET: &str = "the injected secret of the QEMU test";

/// Who makes the guest owner's session.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Session {
    /// `sev-owner session`, from the capabilities, the chain verified.
    SevOwner,
    /// `sevctl session`, from the PDH QEMU reported.
    Sevctl,
}

#[test]
fn qemu_runs_the_sev_flow_under_the_launcher_and_the_guest_prints_the_secret() {
    flow(
        "qemu_runs_the_sev_flow_under_the_launcher",
        Session::SevOwner,
    );
}

#[test]
fn qemu_runs_the_sev_flow_under_the_launcher_with_a_sevctl_session() {
    flow(
        "qemu_runs_the_sev_flow_under_the_launcher_with_a_sevctl_session",
        Session::Sevctl,
    );
}

fn sevctl(test: &str) -> Option<PathBuf> {
    peer(test, "sevctl", "--version")
}

fn flow(test: &str, session: Session) {
    if !sevm_testutil::kvm(test) || !qemu::installed(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let platform = platform_copy(dir);
    let (ark, ca) = (dir.join("ark.cert"), dir.join("ca.cert"));
    run(Command::new(tool("sev-platform"))
        .arg(format!("--emulated={}", p(&platform)))
        .args(["export", "--ark", p(&ark), "--ca", p(&ca)])
        .arg(dir.join("chain.cert")));
    let firmware = dir.join("demo.fd");
    sevm_demo::write_image(&firmware).unwrap();

    // 1. The platform's capabilities, from QEMU (no machine needed).
    let caps = qemu::capabilities(dir, &platform);
    assert_eq!(caps["reduced-phys-bits"], 1, "{caps}");
    assert!(caps["cbitpos"].is_u64(), "{caps}");
    assert_eq!(b64(&caps, "pdh").len(), 0x824);
    assert_eq!(b64(&caps, "cert-chain").len(), 3 * 0x824);

    // 2. The guest owner's session from them: by sev-owner, verified (with
    // the ASK and ARK, which QEMU does not carry) to the platform's root,
    // given explicitly (the emulated platform's own); or by sevctl from the
    // PDH alone.
    match session {
        Session::SevOwner => qemu::owner_session(dir, &ca, &ark),
        Session::Sevctl => {
            let Some(sevctl) = sevctl(test) else {
                return;
            };
            std::fs::write(dir.join("pdh.cert"), b64(&caps, "pdh")).unwrap();
            run(Command::new(sevctl).current_dir(dir).args([
                "session",
                "--name",
                "vm",
                "pdh.cert",
                &u32::from_str_radix(POLICY.trim_start_matches("0x"), 16)
                    .unwrap()
                    .to_string(),
            ]));
        }
    }

    // 3. The SEV guest, stopped before it runs.
    let serial = dir.join("serial.log");
    let mut vm = qemu::start_guest(dir, &platform, &firmware, &caps, &serial);
    let launch = Launch::query(&mut vm);
    let info = &launch.info;
    assert_eq!(info["enabled"], true, "{info}");
    assert_eq!(info["state"], "launch-secret", "{info}");
    assert_eq!(info["policy"], 1, "{info}");
    let (api_major, api_minor, build) = (launch.api_major, launch.api_minor, launch.build);
    let blob = &launch.blob;
    assert_eq!(sevm_qmp::base64::decode(blob.as_bytes()).unwrap().len(), 48);

    // 4. The owner checks the measurement against the firmware it expects
    // and builds the secret packet.
    launch.verify(dir, &firmware);
    let tik = dir.join("vm_tik.bin");
    // The same check by the formula, as sevm's own launch computes it.
    let tik_bytes: [u8; 16] = std::fs::read(&tik).unwrap().try_into().unwrap();
    let mb = sev_proto::measurement::MeasureBlob::decode(
        &sevm_qmp::base64::decode(blob.as_bytes()).unwrap(),
    )
    .unwrap();
    let ld = sev_proto::hash::sha256(&std::fs::read(&firmware).unwrap());
    let expected = sev_proto::measurement::launch_measurement_for_api(
        &sev_proto::session::Tik::from_bytes(tik_bytes),
        api_major as u8,
        api_minor as u8,
        build as u8,
        1,
        &ld,
        &mb.mnonce,
    );
    assert_eq!(expected, mb.measurement);

    // And by sevctl (the guest owner's tool of virtee), when installed:
    // `sevctl measurement build` from the firmware and QEMU's MNONCE gives
    // QEMU's blob byte for byte.
    if let Some(sevctl) = sevctl(test) {
        let out = dir.join("sevctl-measure.bin");
        run(Command::new(sevctl).args([
            "measurement",
            "build",
            "--api-major",
            &api_major.to_string(),
            "--api-minor",
            &api_minor.to_string(),
            "--build-id",
            &build.to_string(),
            "--policy",
            POLICY,
            "--tik",
            p(&tik),
            "--nonce",
            &sevm_qmp::base64::encode(&mb.mnonce),
            "--firmware",
            p(&firmware),
            "--outfile",
            p(&out),
        ]));
        let theirs = std::fs::read(&out).unwrap();
        let ours = sevm_qmp::base64::decode(blob.as_bytes()).unwrap();
        assert_eq!(
            theirs, ours,
            "sevctl measurement build differs from QEMU's blob"
        );
    }

    launch.inject_secret(&mut vm, dir, &firmware, SECRET);

    // What differs from hardware: the real KVM runs the guest unencrypted,
    // so QEMU's own view of the secret area shows the secret table in the
    // clear (its header GUID 1e74f542-…), where hardware shows ciphertext.
    let view = vm.exec(
        "human-monitor-command",
        Some(json!({"command-line": format!("xp /8xb {:#x}", sevm_demo::SECRET_AREA_BASE)})),
    );
    let view = view.as_str().unwrap();
    assert!(
        view.contains("0x42 0xf5 0x74 0x1e 0xdd 0x71 0x66 0x4d"),
        "{view}"
    );

    // The attestation report (GET_ATTESTATION_REPORT with QEMU's length
    // query), verified by the owner against the chain and the firmware.
    let mnonce = sevm_qmp::base64::encode(&[0x5a; 16]);
    let report = vm.exec(
        "query-sev-attestation-report",
        Some(json!({ "mnonce": mnonce })),
    );
    let report = report["data"].as_str().unwrap().to_string();
    run(Command::new(tool("sev-owner")).args([
        "attestation",
        "verify",
        "--report",
        &report,
        "--chain",
        p(&dir.join("chain.cert")),
        "--ca",
        p(&ca),
        "--trust-ark",
        p(&ark),
        "--firmware",
        p(&firmware),
        "--policy",
        POLICY,
        "--mnonce",
        &mnonce,
    ]));

    // 5. cont: LAUNCH_FINISH, the guest runs and prints the secret, then
    // leaves through the debug-exit port.
    qemu::run_to_exit(&mut vm, &serial, SECRET);
}
