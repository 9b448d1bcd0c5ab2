//! Unmodified snpguest (crates.io) under `sev-emulate --snp-guest`: its
//! report, derived key, extended report's certificates and the verification
//! of that report against the emulated chain as `sev-platform snp certs`
//! writes it (docs/guide/sev-emulate.md#dev-sev-guest). The report's
//! measurement is the owner's (`sev-owner measure --mode snp`, and
//! sev-snp-measure when installed) for the launch inputs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sev_firmware::emulated::EmulatedPlatform;
use sev_proto::snp::AttestationReport;
use sev_proto::vmsa::{SevFeatures, VcpuModel, VmmType, VmsaConfig};
use sev_psp::{CreateOptions, Platform};
use sev_tools::kds::{export_certs, CertFormat, TcbChoice};
use sev_tools::measure::{snp_launch_digest, SnpInputs};

const LAUNCHER: &str = env!("CARGO_BIN_EXE_sev-emulate");
const HINT: &str = "CI installs it (.ci/run); locally: PATH=/root/.cache/sevm-ci/cargo/bin:/root/.cache/sevm-ci/venv/bin:$PATH";
/// The longest one launcher run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs `cmd` to its end within [`RUN_TIMEOUT`] (killed after it).
fn run(mut cmd: Command) -> Output {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let mut child = cmd
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |mut f: std::fs::File| {
        use std::io::{Read, Seek};
        f.rewind().unwrap();
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        v
    };
    Output {
        status,
        stdout: read(out),
        stderr: read(err),
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    platform: PathBuf,
    firmware: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let platform = dir.join("platform");
    let opts = CreateOptions {
        ark_bits: 2048,
        ..Default::default()
    };
    Platform::create(&platform, opts, sev_psp::rng::os_rng()).unwrap();
    let firmware = dir.join("demo.fd");
    std::fs::write(
        &firmware,
        sevm_demo::build(&sevm_demo::DemoOptions::default()).unwrap(),
    )
    .unwrap();
    Setup {
        _tmp: tmp,
        dir,
        platform,
        firmware,
    }
}

const HOST_DATA: [u8; 32] = [0x42; 32];

fn spec(s: &Setup, vcpus: u32) -> String {
    format!(
        "firmware={},policy=0x30000,host-data={},vcpus={vcpus},vcpu-type=EPYC-v4",
        p(&s.firmware),
        hex::encode(HOST_DATA)
    )
}

/// `sh -c script` under the launcher, in `s.dir`, with snpguest's
/// directory on PATH.
fn under_launcher(s: &Setup, vcpus: u32, snpguest: &Path, script: &str) -> Output {
    let mut cmd = Command::new(LAUNCHER);
    cmd.args(["--platform", p(&s.platform), "--snp-guest", &spec(s, vcpus)])
        .args(["--", "sh", "-c", script])
        .current_dir(&s.dir)
        .env("SNPGUEST", snpguest);
    run(cmd)
}

fn owner_measurement(s: &Setup, vcpus: u32) -> [u8; 48] {
    let model = VcpuModel::by_name("EPYC-v4").unwrap();
    snp_launch_digest(&SnpInputs {
        firmware: s.firmware.clone(),
        kernel: None,
        initrd: None,
        cmdline: None,
        ovmf_hash: None,
        vcpus,
        vmsa: VmsaConfig::new(VmmType::Qemu, model.signature(), SevFeatures::SNP_ACTIVE),
    })
    .unwrap()
    .launch_digest
}

#[test]
fn snpguest_reports_keys_certificates_and_verifies_under_the_launcher() {
    const TEST: &str = "snpguest_reports_keys_certificates_and_verifies_under_the_launcher";
    let Some(snpguest) = sevm_testutil::peer_tool(TEST, "snpguest", "--help", HINT) else {
        return;
    };
    let s = setup();
    // The chain as `sev-platform snp certs` writes it.
    let chain = s.dir.join("chain");
    {
        let plat = EmulatedPlatform::open(&s.platform).unwrap();
        export_certs(&plat, &chain, TcbChoice::Reported, CertFormat::Pem).unwrap();
    }
    let script = r#"set -e
"$SNPGUEST" report report.bin request.bin --random
"$SNPGUEST" key key.bin vcek
"$SNPGUEST" key key2.bin vcek
"$SNPGUEST" key key3.bin vcek --guest_field_select 8
"$SNPGUEST" certificates pem certs
"$SNPGUEST" verify certs chain
"$SNPGUEST" verify attestation chain report.bin
"$SNPGUEST" verify attestation certs report.bin
"#;
    let o = under_launcher(&s, 1, &snpguest, script);
    let t = text(&o);
    assert!(o.status.success(), "snpguest under sev-emulate failed:\n{t}");
    assert!(t.contains("VEK signed the Attestation Report!"), "{t}");
    assert!(t.contains("Reported TCB Boot Loader from certificate matches the attestation report"), "{t}");

    // The report: the launch's measurement (the owner's for these inputs),
    // host data, the request data snpguest drew.
    let report = AttestationReport::decode(&std::fs::read(s.dir.join("report.bin")).unwrap()).unwrap();
    let expected = owner_measurement(&s, 1);
    assert_eq!(report.measurement, expected);
    assert_eq!(report.host_data, HOST_DATA);
    let request = std::fs::read(s.dir.join("request.bin")).unwrap();
    assert_eq!(&report.report_data[..], &request[..]);
    assert_eq!(report.vmpl, 1);
    assert_eq!(report.policy, 0x30000);

    // sev-snp-measure agrees, when installed.
    if let Some(measure) = sevm_testutil::peer_tool(TEST, "sev-snp-measure", "--help", HINT) {
        let mut cmd = Command::new(measure);
        cmd.args(["--mode", "snp", "--vcpus", "1", "--vcpu-type", "EPYC-v4", "--ovmf"])
            .arg(&s.firmware);
        let o = run(cmd);
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), hex::encode(expected));
    }

    // Keys: 32 bytes (bincode: an 8-byte length is not written for arrays),
    // the same for the same request, another when the measurement is mixed in.
    let key = |n: &str| std::fs::read(s.dir.join(n)).unwrap();
    assert_eq!(key("key.bin").len(), 32);
    assert_ne!(key("key.bin"), vec![0u8; 32]);
    assert_eq!(key("key.bin"), key("key2.bin"));
    assert_ne!(key("key.bin"), key("key3.bin"));

    // The extended report's certificates are the exported chain.
    for name in ["vcek.pem", "ask.pem", "ark.pem"] {
        let got = std::fs::read_to_string(s.dir.join("certs").join(name)).unwrap();
        let want = std::fs::read_to_string(chain.join(name)).unwrap();
        assert_eq!(got.trim(), want.trim(), "{name}");
    }
}

#[test]
fn another_vcpu_count_is_another_measurement() {
    const TEST: &str = "another_vcpu_count_is_another_measurement";
    let Some(snpguest) = sevm_testutil::peer_tool(TEST, "snpguest", "--help", HINT) else {
        return;
    };
    let s = setup();
    let o = under_launcher(
        &s,
        4,
        &snpguest,
        r#""$SNPGUEST" report report.bin request.bin --random -v 0"#,
    );
    assert!(o.status.success(), "{}", text(&o));
    let report = AttestationReport::decode(&std::fs::read(s.dir.join("report.bin")).unwrap()).unwrap();
    assert_eq!(report.measurement, owner_measurement(&s, 4));
    assert_ne!(report.measurement, owner_measurement(&s, 1));
    assert_eq!(report.vmpl, 0);
}

#[test]
fn without_snp_guest_the_device_is_the_kernels() {
    let s = setup();
    let mut cmd = Command::new(LAUNCHER);
    cmd.args(["--platform", p(&s.platform), "--", "sh", "-c", "test ! -e /dev/sev-guest && exec 3</dev/sev-guest"])
        .current_dir(&s.dir);
    let o = run(cmd);
    // The shell's redirection fails as the kernel answers (no such file).
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("sev-guest"), "{}", text(&o));
}

#[test]
fn a_bad_snp_guest_spec_is_refused_before_the_program_runs() {
    let s = setup();
    for (bad, want) in [
        ("policy=0x30000".to_owned(), "firmware=FILE is required"),
        (format!("firmware={},vcpus=0", p(&s.firmware)), "vcpus=0"),
        (format!("firmware={},host-data=12", p(&s.firmware)), "host-data"),
        ("firmware=/nonexistent/ovmf.fd".to_owned(), "/nonexistent/ovmf.fd"),
        (format!("firmware={},colour=blue", p(&s.firmware)), "colour"),
    ] {
        let mut cmd = Command::new(LAUNCHER);
        cmd.args(["--platform", p(&s.platform), "--snp-guest", &bad, "--", "touch", "ran"])
            .current_dir(&s.dir);
        let o = run(cmd);
        assert_eq!(o.status.code(), Some(125), "{bad}: {}", text(&o));
        assert!(text(&o).contains(want), "{bad}: {}", text(&o));
        assert!(!s.dir.join("ran").exists(), "{bad}");
    }
}
