//! Unmodified QEMU under `sev-emulate`: the whole flow of QEMU's SEV
//! documentation with sevm's demo firmware (docs/guide/sev-emulate.md#qemu):
//! `query-sev-capabilities`, a session from it (`sev-owner session`, as
//! `sevctl session`), `-S`, `query-sev-launch-measure` checked by `sev-owner
//! measure` and by the measurement formula, `sev-inject-launch-secret`,
//! `cont`, and the guest prints the secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sevm_qmp::client::QmpClient;

use common::{p, platform_copy, tool};

/// Upper bound of any single wait (a guard against hangs, not a timing).
const WAIT: Duration = Duration::from_secs(60);
const QEMU: &str = "qemu-system-x86_64";
const GUID: &str = "736869e5-84f0-4973-92ec-06879ce3da0b";
const SECRET: &str = "the injected secret of the QEMU test";
const POLICY: &str = "0x1";

fn launcher() -> &'static str {
    common::LAUNCHER
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// QEMU under the launcher, killed when dropped.
struct Vm {
    child: Child,
    qmp: QmpClient,
    stderr: PathBuf,
}

impl Vm {
    fn start(dir: &Path, platform: &Path, name: &str, qemu_args: &[&str]) -> Vm {
        let sock = dir.join(format!("{name}.qmp"));
        let stderr = dir.join(format!("{name}.stderr"));
        let child = Command::new(launcher())
            .arg("--platform")
            .arg(platform)
            .arg("--")
            .arg(QEMU)
            .args(qemu_args)
            .args(["-nodefaults", "-display", "none", "-S", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", p(&sock)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut vm_child = Some(child);
        let deadline = Instant::now() + WAIT;
        let qmp = loop {
            if sock.exists() {
                if let Ok(c) = QmpClient::connect(&sock, WAIT) {
                    break c;
                }
            }
            let c = vm_child.as_mut().unwrap();
            if let Some(st) = c.try_wait().unwrap() {
                panic!(
                    "QEMU exited ({st}) before its QMP socket was up:\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no QMP socket at {}",
                sock.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Vm {
            child: vm_child.take().unwrap(),
            qmp,
            stderr,
        }
    }

    fn exec(&mut self, command: &str, args: Option<Value>) -> Value {
        match self.qmp.execute(command, args) {
            Ok(v) => v,
            Err(e) => panic!(
                "{command}: {e}\nQEMU stderr:\n{}",
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            ),
        }
    }

    /// Waits (bounded) for QEMU to exit after `quit` or the guest's exit.
    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "QEMU did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn b64(v: &Value, key: &str) -> Vec<u8> {
    sevm_qmp::base64::decode(v[key].as_str().unwrap().as_bytes()).unwrap()
}

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
    sevm_testutil::peer_tool(
        test,
        "sevctl",
        "--version",
        "cargo install sevctl (.ci/run does)",
    )
}

fn flow(test: &str, session: Session) {
    if !sevm_testutil::kvm(test) {
        return;
    }
    if sevm_testutil::peer_tool(
        test,
        QEMU,
        "--version",
        "apt-get install -y qemu-system-x86",
    )
    .is_none()
    {
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
    let mut q = Vm::start(
        dir,
        &platform,
        "caps",
        &["-machine", "none", "-accel", "kvm"],
    );
    let caps = q.exec("query-sev-capabilities", None);
    assert_eq!(caps["reduced-phys-bits"], 1, "{caps}");
    let cbitpos = caps["cbitpos"].as_u64().unwrap();
    assert_eq!(b64(&caps, "pdh").len(), 0x824);
    assert_eq!(b64(&caps, "cert-chain").len(), 3 * 0x824);
    q.exec("quit", None);
    assert!(q.wait().success());
    let caps_file = dir.join("caps.json");
    std::fs::write(&caps_file, caps.to_string()).unwrap();

    // 2. The guest owner's session from them: by sev-owner, verified (with
    // the ASK and ARK, which QEMU does not carry) to the platform's root,
    // given explicitly (the emulated platform's own); or by sevctl from the
    // PDH alone.
    match session {
        Session::SevOwner => {
            run(Command::new(tool("sev-owner")).args([
                "session",
                "--capabilities",
                p(&caps_file),
                "--ca",
                p(&ca),
                "--trust-ark",
                p(&ark),
                "--policy",
                POLICY,
                "--out-dir",
                p(dir),
            ]));
        }
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
    let sev_guest = format!(
        "sev-guest,id=sev0,cbitpos={cbitpos},reduced-phys-bits=1,policy={POLICY},dh-cert-file={},session-file={}",
        p(&dir.join("vm_godh.b64")),
        p(&dir.join("vm_session.b64"))
    );
    let mut vm = Vm::start(
        dir,
        &platform,
        "sev",
        &[
            "-machine",
            "q35,memory-encryption=sev0",
            "-accel",
            "kvm",
            "-m",
            "64",
            // The real KVM cannot serve the SEV status MSR a guest reads
            // once CPUID 0x8000001F reports SEV (docs/guide/sev-emulate.md#kvm):
            // the leaf is kept out of the guest's CPUID range.
            "-cpu",
            "qemu64,xlevel=0x8000000a",
            "-bios",
            p(&firmware),
            "-object",
            &sev_guest,
            "-serial",
            &format!("file:{}", p(&serial)),
            "-device",
            "isa-debug-exit,iobase=0x501,iosize=1",
            "-no-reboot",
        ],
    );
    let info = vm.exec("query-sev", None);
    assert_eq!(info["enabled"], true, "{info}");
    assert_eq!(info["state"], "launch-secret", "{info}");
    assert_eq!(info["policy"], 1, "{info}");
    let (api_major, api_minor, build) = (
        info["api-major"].as_u64().unwrap(),
        info["api-minor"].as_u64().unwrap(),
        info["build-id"].as_u64().unwrap(),
    );
    let measure = vm.exec("query-sev-launch-measure", None);
    let blob = measure["data"].as_str().unwrap().to_string();
    assert_eq!(sevm_qmp::base64::decode(blob.as_bytes()).unwrap().len(), 48);

    // 4. The owner checks the measurement against the firmware it expects
    // and builds the secret packet.
    let tik = dir.join("vm_tik.bin");
    let measured = run(Command::new(tool("sev-owner")).args([
        "measure",
        "--firmware",
        p(&firmware),
        "--policy",
        POLICY,
        "--api-major",
        &api_major.to_string(),
        "--api-minor",
        &api_minor.to_string(),
        "--build-id",
        &build.to_string(),
        "--tik",
        p(&tik),
        "--verify",
        &blob,
    ]));
    let text = String::from_utf8_lossy(&measured.stdout);
    assert!(text.contains("match"), "{text}");
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

    let (hdr, payload) = (dir.join("header.bin"), dir.join("payload.bin"));
    run(Command::new(tool("sev-owner")).args([
        "secret",
        "--tik",
        p(&tik),
        "--tek",
        p(&dir.join("vm_tek.bin")),
        "--launch-measure-blob",
        &blob,
        "--secret",
        &format!("{GUID}:={SECRET}"),
        "--firmware",
        p(&firmware),
        p(&hdr),
        p(&payload),
    ]));
    let enc = |f: &Path| sevm_qmp::base64::encode(&std::fs::read(f).unwrap());
    vm.exec(
        "sev-inject-launch-secret",
        Some(json!({"packet-header": enc(&hdr), "secret": enc(&payload)})),
    );

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
    vm.exec("cont", None);
    let status = vm.wait();
    let mut out = String::new();
    std::fs::File::open(&serial)
        .unwrap()
        .take(1 << 20)
        .read_to_string(&mut out)
        .unwrap();
    let stderr = std::fs::read_to_string(&vm.stderr).unwrap_or_default();
    assert!(
        out.contains(&format!("secret {GUID}: {SECRET}")),
        "guest output:\n{out}\nQEMU ({status}):\n{stderr}"
    );
    // isa-debug-exit: the guest's code c ends QEMU with (c << 1) | 1.
    assert_eq!(
        status.code(),
        Some(i32::from(sevm_demo::EXIT_OK) << 1 | 1),
        "{out}\n{stderr}"
    );
}
