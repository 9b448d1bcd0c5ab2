//! The peer tools the cross-checks compare sevm with, run as a QEMU user
//! runs them: `sev-snp-measure` (launch digests) and `sevctl` (sessions and
//! measurements). Each is found through `sevm_testutil::peer_tool`: a test
//! whose peer is missing is skipped with a message, and fails instead
//! under `SEVM_REQUIRE_ALL=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Debian's OVMF (package ovmf), the firmware a distribution ships.
pub const DEBIAN_OVMF: &str = "/usr/share/OVMF/OVMF_CODE.fd";

/// [`DEBIAN_OVMF`], or None once test `test` said it is skipped.
pub fn debian_ovmf(test: &str) -> Option<&'static Path> {
    let fw = Path::new(DEBIAN_OVMF);
    if fw.exists() {
        return Some(fw);
    }
    sevm_testutil::skip(
        test,
        "Debian's OVMF (/usr/share/OVMF/OVMF_CODE.fd, package ovmf) is not installed",
    );
    None
}

/// A kernel, initrd and command line for `-kernel/-initrd/-append` with
/// `kernel-hashes=on`.
pub struct Kernel {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub append: String,
}

impl Kernel {
    /// Writes `kernel` and `initrd` as files `name`-kernel and `name`-initrd
    /// in `dir`.
    pub fn write(dir: &Path, name: &str, kernel: &[u8], initrd: &[u8], append: &str) -> Kernel {
        let k = Kernel {
            kernel: dir.join(format!("{name}-kernel")),
            initrd: dir.join(format!("{name}-initrd")),
            append: append.to_string(),
        };
        std::fs::write(&k.kernel, kernel).unwrap();
        std::fs::write(&k.initrd, initrd).unwrap();
        k
    }

    /// sevm's (QEMU's) options for them.
    pub fn sevm_args(&self) -> Vec<String> {
        vec![
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-initrd".into(),
            self.initrd.display().to_string(),
            "-append".into(),
            self.append.clone(),
        ]
    }
}

/// Runs `cmd`, which must succeed, and returns its standard output.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One `sev-snp-measure` run: `--mode MODE --output-format hex`, the vCPUs
/// when given, `--ovmf`, the kernel when given.
pub struct SnpMeasure<'a> {
    pub mode: &'a str,
    pub fw: &'a Path,
    /// `--vcpus N --vcpu-type MODEL`.
    pub vcpus: Option<(u32, &'a str)>,
    pub kernel: Option<&'a Kernel>,
    /// `--dump-vmsa`, run in this directory (it writes `vmsa<N>.bin` there).
    pub dump_vmsa_in: Option<&'a Path>,
}

impl<'a> SnpMeasure<'a> {
    /// `sev-snp-measure --mode MODE` on `fw`, nothing else.
    pub fn new(mode: &'a str, fw: &'a Path) -> Self {
        SnpMeasure {
            mode,
            fw,
            vcpus: None,
            kernel: None,
            dump_vmsa_in: None,
        }
    }

    /// The same with `vcpus` vCPUs of `model`.
    pub fn vcpus(self, vcpus: u32, model: &'a str) -> Self {
        SnpMeasure {
            vcpus: Some((vcpus, model)),
            ..self
        }
    }

    /// The same with the kernel, initrd and command line of `kernel`, if any.
    pub fn kernel(self, kernel: Option<&'a Kernel>) -> Self {
        SnpMeasure { kernel, ..self }
    }

    /// The same with `--dump-vmsa`, run in `dir`.
    pub fn dump_vmsa_in(self, dir: &'a Path) -> Self {
        SnpMeasure {
            dump_vmsa_in: Some(dir),
            ..self
        }
    }

    /// The digest it prints, when the tool is installed (see the module
    /// documentation); the run must succeed.
    pub fn digest<const N: usize>(&self, test: &str) -> Option<[u8; N]> {
        let tool = sev_snp_measure(test)?;
        let text = run_ok(&mut self.command(tool));
        Some(hex::decode(text.trim()).unwrap().try_into().unwrap())
    }

    /// The command line for `tool`.
    fn command(&self, tool: PathBuf) -> Command {
        let mut cmd = Command::new(tool);
        cmd.args(["--mode", self.mode, "--output-format", "hex"]);
        if let Some((vcpus, model)) = self.vcpus {
            cmd.arg("--vcpus")
                .arg(vcpus.to_string())
                .args(["--vcpu-type", model]);
        }
        cmd.arg("--ovmf").arg(self.fw);
        if let Some(k) = self.kernel {
            cmd.arg("--kernel")
                .arg(&k.kernel)
                .arg("--initrd")
                .arg(&k.initrd)
                .arg("--append")
                .arg(&k.append);
        }
        if let Some(dir) = self.dump_vmsa_in {
            cmd.arg("--dump-vmsa").current_dir(dir);
        }
        cmd
    }

    /// What the tool says when it refuses these inputs (its run must
    /// fail), when it is installed.
    pub fn refusal(&self, test: &str) -> Option<String> {
        let tool = sev_snp_measure(test)?;
        let out = self.command(tool).output().unwrap();
        assert!(
            !out.status.success(),
            "sev-snp-measure accepted {:?}",
            self.fw
        );
        Some(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `sev-snp-measure`, when installed (see the module documentation).
fn sev_snp_measure(test: &str) -> Option<PathBuf> {
    sevm_testutil::peer_tool(
        test,
        "sev-snp-measure",
        "--version",
        "install it with `pip install sev-snp-measure`",
    )
}

/// `sevctl`, when installed (see the module documentation).
pub fn sevctl(test: &str) -> Option<PathBuf> {
    sevm_testutil::peer_tool(
        test,
        "sevctl",
        "--version",
        "install it with `cargo install sevctl`",
    )
}

/// The argv prefix that runs `sevctl <words>` (newer sevctl moved some
/// commands under `sevctl sev ...`).
pub fn sevctl_words(sevctl: &Path, words: &[&str]) -> Vec<String> {
    for prefix in [&[][..], &["sev"][..]] {
        let mut argv: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        argv.extend(words.iter().map(|s| s.to_string()));
        let ok = Command::new(sevctl)
            .args(&argv)
            .arg("--help")
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return argv;
        }
    }
    panic!("sevctl has no {words:?} command");
}

/// `sevctl session --name vm pdh.cert POLICY` in `dir`, for the platform
/// whose PDH is `pdh` (written there as `pdh.cert`): the guest owner's
/// files `vm_godh.b64`, `vm_session.b64`, `vm_tek.bin` and `vm_tik.bin`.
/// Returns the `sev-guest` properties that name the first two.
pub fn sevctl_session(sevctl: &Path, dir: &Path, pdh: &[u8], policy: u32) -> String {
    std::fs::write(dir.join("pdh.cert"), pdh).unwrap();
    run_ok(
        Command::new(sevctl)
            .current_dir(dir)
            .args(sevctl_words(sevctl, &["session"]))
            .args(["--name", "vm", "pdh.cert", &policy.to_string()]),
    );
    for f in ["vm_godh.b64", "vm_session.b64", "vm_tek.bin", "vm_tik.bin"] {
        assert!(dir.join(f).exists(), "sevctl session wrote no {f}");
    }
    format!(
        ",dh-cert-file={},session-file={}",
        dir.join("vm_godh.b64").display(),
        dir.join("vm_session.b64").display()
    )
}

/// `sevctl measurement build` in the [`sevctl_session`] directory `dir`
/// for the launch `query_sev` describes and its measurement blob (base64,
/// the nonce comes from it), with `inputs` (`--launch-digest`, or the
/// firmware and what else it measures): the blob sevctl computes (base64).
pub fn sevctl_measurement_build(
    sevctl: &Path,
    dir: &Path,
    query_sev: &Value,
    blob: &str,
    inputs: &[String],
) -> String {
    run_ok(
        Command::new(sevctl)
            .current_dir(dir)
            .args(sevctl_words(sevctl, &["measurement", "build"]))
            .args(["--api-major", &query_sev["api-major"].to_string()])
            .args(["--api-minor", &query_sev["api-minor"].to_string()])
            .args(["--build-id", &query_sev["build-id"].to_string()])
            .args(["--policy", &query_sev["policy"].to_string()])
            .args(["--tik", "vm_tik.bin", "--launch-measure-blob", blob])
            .args(inputs),
    )
    .trim()
    .to_string()
}
