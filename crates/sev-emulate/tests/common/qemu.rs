//! QEMU's SEV flow under the launcher, as the QEMU test (tests/qemu_sev.rs)
//! and the benchmark (benches/emulate.rs) both run it
//! (docs/guide/sev-emulate.md#qemu): the capabilities, `sev-owner session`,
//! the guest stopped with `-S`, its launch measurement checked by
//! `sev-owner measure`, the secret injected, `cont` and the guest's output.
//! Loaded beside `common` (`#[path = "common/qemu.rs"] mod qemu;`): it uses
//! `crate::common`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sevm_qmp::client::QmpClient;

use crate::common::{ok, output_within, p, tool, DEADLINE, LAUNCHER};

pub const QEMU: &str = "qemu-system-x86_64";
/// Upper bound of any single wait (a guard against hangs, not a timing).
pub const WAIT: Duration = Duration::from_secs(60);
/// How often the waits look: fine enough for the benchmark's timings.
const POLL: Duration = Duration::from_millis(1);
pub const GUID: &str = "736869e5-84f0-4973-92ec-06879ce3da0b";
pub const POLICY: &str = "0x1";

/// Whether QEMU is installed (else `SKIPPED` is printed for `test`).
pub fn installed(test: &str) -> bool {
    sevm_testutil::peer_tool(
        test,
        QEMU,
        "--version",
        "apt-get install -y qemu-system-x86",
    )
    .is_some()
}

/// Runs `cmd` within [`DEADLINE`], requiring success: its stdout.
pub fn run(cmd: &mut Command) -> String {
    ok(output_within(cmd, DEADLINE), &format!("{cmd:?}"))
}

/// QEMU under the launcher, killed when dropped.
pub struct Vm {
    child: Child,
    qmp: QmpClient,
    pub stderr: PathBuf,
}

impl Vm {
    /// `sev-emulate --platform PLATFORM -- qemu ARGS -S` with its QMP
    /// socket and stderr in `dir` under `name`, connected.
    pub fn start(dir: &Path, platform: &Path, name: &str, qemu_args: &[&str]) -> Vm {
        let sock = dir.join(format!("{name}.qmp"));
        let _ = std::fs::remove_file(&sock);
        let stderr = dir.join(format!("{name}.stderr"));
        let mut child = Command::new(LAUNCHER)
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
        let deadline = Instant::now() + WAIT;
        let qmp = loop {
            if sock.exists() {
                if let Ok(c) = QmpClient::connect(&sock, WAIT) {
                    break c;
                }
            }
            if let Some(st) = child.try_wait().unwrap() {
                panic!(
                    "QEMU exited ({st}) before its QMP socket was up:\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no QMP socket at {}", sock.display());
            }
            std::thread::sleep(POLL);
        };
        Vm { child, qmp, stderr }
    }

    pub fn exec(&mut self, command: &str, args: Option<Value>) -> Value {
        match self.qmp.execute(command, args) {
            Ok(v) => v,
            Err(e) => panic!(
                "{command}: {e}\nQEMU stderr:\n{}",
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            ),
        }
    }

    /// Waits (bounded) for QEMU to exit after `quit` or the guest's exit.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "QEMU did not exit");
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `v[key]`, base64-decoded.
pub fn b64(v: &Value, key: &str) -> Vec<u8> {
    sevm_qmp::base64::decode(v[key].as_str().unwrap().as_bytes()).unwrap()
}

/// `query-sev-capabilities` of QEMU without a machine, written to
/// `dir/caps.json` as well.
pub fn capabilities(dir: &Path, platform: &Path) -> Value {
    let mut q = Vm::start(
        dir,
        platform,
        "caps",
        &["-machine", "none", "-accel", "kvm"],
    );
    let caps = q.exec("query-sev-capabilities", None);
    q.exec("quit", None);
    assert!(q.wait().success());
    std::fs::write(dir.join("caps.json"), caps.to_string()).unwrap();
    caps
}

/// The guest owner's session from `dir/caps.json` by `sev-owner session`,
/// the chain verified to the root `ark` given explicitly (with the `ca`,
/// which QEMU does not carry): `vm_godh.b64`, `vm_session.b64`,
/// `vm_tik.bin`, `vm_tek.bin` in `dir`.
pub fn owner_session(dir: &Path, ca: &Path, ark: &Path) {
    run(Command::new(tool("sev-owner")).args([
        "session",
        "--capabilities",
        p(&dir.join("caps.json")),
        "--ca",
        p(ca),
        "--trust-ark",
        p(ark),
        "--policy",
        POLICY,
        "--out-dir",
        p(dir),
    ]));
}

/// The SEV guest of `firmware` (the session's files in `dir`, the
/// capabilities' `cbitpos`), its serial port into `serial`, stopped before
/// it runs.
pub fn start_guest(
    dir: &Path,
    platform: &Path,
    firmware: &Path,
    caps: &Value,
    serial: &Path,
) -> Vm {
    let cbitpos = caps["cbitpos"].as_u64().unwrap();
    let sev_guest = format!(
        "sev-guest,id=sev0,cbitpos={cbitpos},reduced-phys-bits=1,policy={POLICY},dh-cert-file={},session-file={}",
        p(&dir.join("vm_godh.b64")),
        p(&dir.join("vm_session.b64"))
    );
    Vm::start(
        dir,
        platform,
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
            p(firmware),
            "-object",
            &sev_guest,
            "-serial",
            &format!("file:{}", p(serial)),
            "-device",
            "isa-debug-exit,iobase=0x501,iosize=1",
            "-no-reboot",
        ],
    )
}

/// What QEMU reports of the stopped guest's launch.
pub struct Launch {
    /// `query-sev`.
    pub info: Value,
    pub api_major: u64,
    pub api_minor: u64,
    pub build: u64,
    /// `query-sev-launch-measure`: the base64 measure blob.
    pub blob: String,
}

impl Launch {
    /// `query-sev`, then `query-sev-launch-measure`.
    pub fn query(vm: &mut Vm) -> Launch {
        let info = vm.exec("query-sev", None);
        let measure = vm.exec("query-sev-launch-measure", None);
        let field = |k: &str| info[k].as_u64().unwrap();
        let (api_major, api_minor, build) =
            (field("api-major"), field("api-minor"), field("build-id"));
        Launch {
            blob: measure["data"].as_str().unwrap().to_string(),
            info,
            api_major,
            api_minor,
            build,
        }
    }

    /// The owner's check of the measurement against `firmware`
    /// (`sev-owner measure --verify` with the session's TIK in `dir`).
    pub fn verify(&self, dir: &Path, firmware: &Path) {
        let text = run(Command::new(tool("sev-owner")).args([
            "measure",
            "--firmware",
            p(firmware),
            "--policy",
            POLICY,
            "--api-major",
            &self.api_major.to_string(),
            "--api-minor",
            &self.api_minor.to_string(),
            "--build-id",
            &self.build.to_string(),
            "--tik",
            p(&dir.join("vm_tik.bin")),
            "--verify",
            &self.blob,
        ]));
        assert!(text.contains("match"), "{text}");
    }

    /// The owner's packet of `GUID:=secret` for this measurement
    /// (`sev-owner secret`, the session's keys in `dir`), injected with
    /// `sev-inject-launch-secret`.
    pub fn inject_secret(&self, vm: &mut Vm, dir: &Path, firmware: &Path, secret: &str) {
        let (hdr, payload) = (dir.join("header.bin"), dir.join("payload.bin"));
        let _ = std::fs::remove_file(&hdr);
        let _ = std::fs::remove_file(&payload);
        run(Command::new(tool("sev-owner")).args([
            "secret",
            "--tik",
            p(&dir.join("vm_tik.bin")),
            "--tek",
            p(&dir.join("vm_tek.bin")),
            "--launch-measure-blob",
            &self.blob,
            "--secret",
            &format!("{GUID}:={secret}"),
            "--firmware",
            p(firmware),
            p(&hdr),
            p(&payload),
        ]));
        let enc = |f: &Path| sevm_qmp::base64::encode(&std::fs::read(f).unwrap());
        vm.exec(
            "sev-inject-launch-secret",
            Some(json!({"packet-header": enc(&hdr), "secret": enc(&payload)})),
        );
    }
}

/// `cont`: LAUNCH_FINISH, the guest runs, prints `secret` and leaves
/// through the debug-exit port; both checked. The guest's output.
pub fn run_to_exit(vm: &mut Vm, serial: &Path, secret: &str) -> String {
    vm.exec("cont", None);
    let status = vm.wait();
    let mut out = String::new();
    std::fs::File::open(serial)
        .unwrap()
        .take(1 << 20)
        .read_to_string(&mut out)
        .unwrap();
    let stderr = std::fs::read_to_string(&vm.stderr).unwrap_or_default();
    assert!(
        out.contains(&format!("secret {GUID}: {secret}")),
        "guest output:\n{out}\nQEMU ({status}):\n{stderr}"
    );
    // isa-debug-exit: the guest's code c ends QEMU with (c << 1) | 1.
    assert_eq!(
        status.code(),
        Some(i32::from(sevm_demo::EXIT_OK) << 1 | 1),
        "{out}\n{stderr}"
    );
    out
}
