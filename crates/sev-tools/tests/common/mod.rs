//! Helpers shared by the integration tests: the binaries, emulated platform
//! directories (created once per machine and copied, since RSA key
//! generation is slow), and peers.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const OWNER: &str = env!("CARGO_BIN_EXE_sev-owner");
pub const PLATFORM: &str = env!("CARGO_BIN_EXE_sev-platform");

/// Runs a binary and returns its output.
pub fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("SEV_OWNER_AMD_ROOTS")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and requires success.
pub fn ok(bin: &str, args: &[&str]) -> Output {
    let o = run(bin, args);
    assert!(
        o.status.success(),
        "{bin} {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    o
}

/// Runs and requires failure with exactly one `tool: error: ...` line on
/// stderr containing `want`; returns that line.
pub fn fails(bin: &str, args: &[&str], want: &str) -> String {
    let o = run(bin, args);
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "{bin} {args:?} succeeded:\nstdout: {}\nstderr: {err}",
        stdout(&o)
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{bin} {args:?}: expected one error line, got:\n{err}"
    );
    let tool = Path::new(bin).file_name().unwrap().to_str().unwrap();
    assert!(
        lines[0].starts_with(&format!("{tool}: error: ")),
        "{args:?}: {}",
        lines[0]
    );
    assert!(
        lines[0].contains(want),
        "{args:?}: {:?} lacks {want:?}",
        lines[0]
    );
    assert!(!err.contains("panicked"), "{err}");
    lines[0].to_string()
}

/// `--emulated=DIR`.
pub fn emu(dir: &Path) -> String {
    format!("--emulated={}", p(dir))
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn shared_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sev-tools-tests");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An emulated platform (2048-bit roots) created once per `name` on this
/// machine and reused; never modify it (copy it with [`platform_copy`]).
pub fn template(name: &str, api: &str) -> PathBuf {
    static LOCK: OnceLock<std::sync::Mutex<()>> = OnceLock::new();
    let _g = LOCK.get_or_init(Default::default).lock().unwrap();
    let dir = shared_dir().join(format!("platform-{name}"));
    let em = emu(&dir);
    let init = [em.as_str(), "init", "--ark-bits", "2048", "--api", api];
    ok(PLATFORM, &init);
    // A template left by an older build may no longer open: make it anew.
    if !run(PLATFORM, &[em.as_str(), "status"]).status.success() {
        std::fs::remove_dir_all(&dir).unwrap();
        ok(PLATFORM, &init);
    }
    dir
}

/// A private copy of a template platform in `dest` (same identity: the
/// same "host").
pub fn platform_copy(template: &Path, dest: &Path) -> PathBuf {
    let d = dest.join("platform");
    sevm_testutil::copy_platform(template, &d);
    d
}

/// The default test platform (API 1.55).
pub fn platform_a() -> PathBuf {
    template("a", "1.55")
}

/// A second, different platform ("another host").
pub fn platform_b() -> PathBuf {
    template("b", "1.55")
}

/// Exports `platform`'s full chain, CA chain and ARK into `dir`; returns
/// (full chain, ca, ark).
pub fn export(platform: &Path, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (full, ca, ark) = (
        dir.join("chain.full"),
        dir.join("ca.cert"),
        dir.join("ark.cert"),
    );
    ok(
        PLATFORM,
        &[
            &emu(platform),
            "export",
            "--full",
            p(&full),
            "--ca",
            p(&ca),
            "--ark",
            p(&ark),
        ],
    );
    (full, ca, ark)
}

/// A peer on PATH, or `None` after reporting the skip.
pub fn peer(test: &str, program: &str) -> Option<PathBuf> {
    sevm_testutil::peer_tool(
        test,
        program,
        "--help",
        "CI installs it (.ci/run); locally: PATH=/root/.cache/sevm-ci/cargo/bin:/root/.cache/sevm-ci/venv/bin:$PATH",
    )
}

/// AMD's ASK ‖ ARK of `generation` from the fixtures, written to `dir`;
/// None once test `test` said a fixture is missing.
pub fn amd_ca(test: &str, generation: &str, dir: &Path) -> Option<PathBuf> {
    let ask = sevm_testutil::fixture(test, &format!("amd-roots/{generation}-ask.cert"))?;
    let ark = sevm_testutil::fixture(test, &format!("amd-roots/{generation}-ark.cert"))?;
    let mut ca = ask;
    ca.extend(ark);
    Some(write(dir, &format!("{generation}-ca.cert"), &ca))
}

/// The real `generation` chain of the fixtures (PDH ‖ PEK ‖ OCA ‖ CEK),
/// written to `dir`; None once test `test` said a fixture is missing.
pub fn fixture_chain(test: &str, generation: &str, dir: &Path) -> Option<PathBuf> {
    let mut chain = Vec::new();
    for n in ["pdh", "pek", "oca", "cek"] {
        chain.extend(sevm_testutil::fixture(
            test,
            &format!("certs/{generation}/{n}.cert"),
        )?);
    }
    Some(write(dir, &format!("{generation}.chain"), &chain))
}

/// Writes `bytes` to `dir/name`.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let f = dir.join(name);
    std::fs::write(&f, bytes).unwrap();
    f
}

/// The `sevm` binary: `$SEVM_BIN`, else beside the tools in the target
/// directory (built with `cargo build -p sevm --bin sevm` if missing), or
/// `None` after reporting the skip.
pub fn sevm(test: &str) -> Option<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    if let Some(p) = std::env::var_os("SEVM_BIN") {
        return Some(PathBuf::from(p));
    }
    let found = BUILT.get_or_init(|| {
        let dir = Path::new(OWNER).parent().ok_or("no target directory")?;
        let bin = dir.join("sevm");
        if !bin.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-p", "sevm", "--bin", "sevm"]);
            if dir.ends_with("release") {
                cmd.arg("--release");
            }
            let out = cmd.output().map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "cargo build -p sevm failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                ));
            }
        }
        if bin.exists() {
            Ok(bin)
        } else {
            Err(format!("{} not built", bin.display()))
        }
    });
    match found {
        Ok(p) => Some(p.clone()),
        Err(e) => {
            sevm_testutil::skip(test, &format!("the sevm binary ({e}); or set SEVM_BIN"));
            None
        }
    }
}

/// A running `sev-platform kds serve`, stopped (SIGTERM, bounded wait) on drop.
pub struct KdsServer {
    pub child: Child,
    pub addr: String,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl KdsServer {
    pub fn start(platform: &Path, extra: &[&str]) -> KdsServer {
        let mut child = Command::new(PLATFORM)
            .args([&emu(platform), "kds", "serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut first).unwrap();
        let addr = first
            .split("http://")
            .nth(1)
            .unwrap_or_else(|| panic!("no URL in {first:?}"))
            .trim()
            .to_string();
        KdsServer {
            child,
            addr,
            _stdout: stdout,
        }
    }

    /// Sends SIGTERM and waits (at most 10 s) for a clean exit.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid with a valid signal.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for KdsServer {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() && self.stop().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
