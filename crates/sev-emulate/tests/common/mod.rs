//! Helpers of the launcher's integration tests: the binaries (the launcher,
//! and `sev-platform`/`sev-owner` from the sev-tools crate), an emulated
//! platform template (made once, copied per test), runs with a deadline.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const LAUNCHER: &str = env!("CARGO_BIN_EXE_sev-emulate");

/// How long any launched program may run.
pub const DEADLINE: Duration = Duration::from_secs(180);

/// A binary of the sev-tools crate, beside the launcher in the target
/// directory (built with cargo when missing).
pub fn tool(name: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let dir = Path::new(LAUNCHER).parent().unwrap();
    let bin = dir.join(name);
    let _g = BUILD.lock().unwrap();
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "sev-tools", "--bins"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let o = output_within(&mut cmd, DEADLINE * 4);
        assert!(
            o.status.success(),
            "building sev-tools: {}",
            text(&o.stderr)
        );
    }
    assert!(bin.exists(), "{} not built", bin.display());
    bin
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `cmd` (stdin closed), killing it after `limit`.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    // Drain the pipes in threads so that a chatty program cannot block.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).ok();
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).ok();
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            child.kill().ok();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// `sev-emulate --platform DIR -- program args`.
pub fn emulate(platform: &Path, program: &Path, args: &[&str]) -> Output {
    output_within(
        Command::new(LAUNCHER)
            .arg("--platform")
            .arg(platform)
            .arg("--")
            .arg(program)
            .args(args),
        DEADLINE,
    )
}

/// Requires success; returns stdout.
pub fn ok(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// `sev-platform ARGS` run directly (its emulated backend when ARGS say so).
pub fn platform_tool(args: &[&str]) -> Output {
    output_within(Command::new(tool("sev-platform")).args(args), DEADLINE)
}

/// An emulated platform with 2048-bit roots made once on this machine
/// (`sev-platform init` keeps an existing one), copied for each test (same
/// identity).
pub fn platform_copy(dest: &Path) -> PathBuf {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    let template = TEMPLATE.get_or_init(|| {
        let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sev-emulate-tests");
        std::fs::create_dir_all(&d).unwrap();
        let dir = d.join("platform");
        let em = format!("--emulated={}", dir.display());
        let init = [em.as_str(), "init", "--ark-bits", "2048"];
        ok(platform_tool(&init), "sev-platform init");
        // A template left by an older build may no longer open: make it anew.
        if !platform_tool(&[&em, "status"]).status.success() {
            std::fs::remove_dir_all(&dir).unwrap();
            ok(platform_tool(&init), "sev-platform init");
        }
        dir
    });
    let d = dest.join("platform");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(template).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
        }
    }
    d
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `--emulated=DIR`.
pub fn emu(dir: &Path) -> String {
    format!("--emulated={}", p(dir))
}
