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
    workspace_bin("sev-tools", name, &["--bins"])
}

/// Binary `name` of the workspace's package `package`, beside the launcher
/// in the target directory (`cargo build -p PACKAGE TARGETS` in the
/// launcher's profile when missing).
pub fn workspace_bin(package: &str, name: &str, targets: &[&str]) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let dir = Path::new(LAUNCHER).parent().unwrap();
    let bin = dir.join(name);
    let _g = BUILD.lock().unwrap();
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", package]).args(targets);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let o = output_within(&mut cmd, DEADLINE * 4);
        assert!(
            o.status.success(),
            "building {package}: {}",
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
    output_polled(cmd, limit, Duration::from_millis(20)).0
}

/// Runs `cmd` (stdin closed), killing it after `limit`, looking for its
/// exit every `poll`: its output and its time from spawn to exit (within
/// `poll`).
pub fn output_polled(cmd: &mut Command, limit: Duration, poll: Duration) -> (Output, Duration) {
    let start = Instant::now();
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
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            child.kill().ok();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(poll);
    };
    let elapsed = start.elapsed();
    let out = Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    };
    (out, elapsed)
}

/// `sev-emulate --platform DIR` (its options, `--` and the program to
/// follow).
pub fn launcher(platform: &Path) -> Command {
    let mut cmd = Command::new(LAUNCHER);
    cmd.arg("--platform").arg(platform);
    cmd
}

/// `sev-emulate --platform DIR -- program args`.
pub fn emulate(platform: &Path, program: &Path, args: &[&str]) -> Output {
    output_within(
        launcher(platform).arg("--").arg(program).args(args),
        DEADLINE,
    )
}

/// Where the peer tools come from, for a test's skip notice.
pub const PEER_HINT: &str = "CI installs it (.ci/run); locally: \
     PATH=/root/.cache/sevm-ci/cargo/bin:/root/.cache/sevm-ci/venv/bin:$PATH";

/// Peer program `name` on PATH (answering `probe`), or None once test
/// `test` said it is skipped (`sevm_testutil::peer_tool`).
pub fn peer(test: &str, name: &str, probe: &str) -> Option<PathBuf> {
    sevm_testutil::peer_tool(test, name, probe, PEER_HINT)
}

/// A test's temporary directory (removed on drop) with a platform in it.
pub struct Scratch {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub platform: PathBuf,
}

impl Scratch {
    /// `make(dir)` puts a platform in the new directory and returns its
    /// path.
    pub fn new(make: impl FnOnce(&Path) -> PathBuf) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let platform = make(&dir);
        Self {
            _tmp: tmp,
            dir,
            platform,
        }
    }

    /// With a copy of the platform template ([`platform_copy`]).
    pub fn with_platform_copy() -> Self {
        Self::new(platform_copy)
    }
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
    sevm_testutil::copy_platform(template, &d);
    d
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `--emulated=DIR`.
pub fn emu(dir: &Path) -> String {
    format!("--emulated={}", p(dir))
}

/// Set in a test binary that a test re-runs under the launcher.
pub const CHILD_ENV: &str = "SEV_EMULATE_TEST_CHILD";

/// Whether this process is the re-run of a test under the launcher.
pub fn in_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Runs test `name` of this test binary again, alone, under the launcher
/// (where its child half runs: `in_child()`).
pub fn rerun_under_launcher(platform: &Path, name: &str) -> Output {
    output_within(
        launcher(platform)
            .arg("--")
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1"),
        DEADLINE,
    )
}

/// `ioctl(2)` and the `SEV_ISSUE_CMD` the way a C program makes them.
pub mod raw {
    use std::os::fd::RawFd;

    pub const SEV_ISSUE_CMD: u64 = 0xC010_5300;

    /// `ioctl(fd, request, arg)`: (return value, errno).
    pub fn ioctl(fd: RawFd, request: u64, arg: u64) -> (i32, i32) {
        // SAFETY: the request numbers the tests use take a pointer the
        // kernel (or the supervisor) only dereferences through its
        // user-copy routines: a bad one is EFAULT, never undefined
        // behaviour in this process; the buffers the tests pass are live
        // for the call.
        let rc = unsafe {
            libc::ioctl(
                fd,
                request as libc::Ioctl,
                arg as usize as *mut libc::c_void,
            )
        };
        let errno = if rc < 0 {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        } else {
            0
        };
        (rc, errno)
    }

    /// `struct sev_issue_cmd` with `error` preset to a marker.
    #[repr(C, packed)]
    #[derive(Debug, Clone, Copy)]
    pub struct IssueCmd {
        pub cmd: u32,
        pub data: u64,
        pub error: u32,
    }

    pub const MARK: u32 = 0xAAAA_AAAA;

    /// SEV_ISSUE_CMD `cmd` with `data`: (errno or 0, the `error` field).
    pub fn issue(fd: RawFd, cmd: u32, data: u64) -> (i32, u32) {
        let mut c = IssueCmd {
            cmd,
            data,
            error: MARK,
        };
        let (_, errno) = ioctl(fd, SEV_ISSUE_CMD, std::ptr::addr_of_mut!(c) as u64);
        (errno, c.error)
    }

    /// `open(path, flags)`: the descriptor or the errno.
    pub fn open(path: &str, flags: i32) -> Result<RawFd, i32> {
        let c = std::ffi::CString::new(path).unwrap();
        // SAFETY: `c` is a valid C string for the call.
        let fd = unsafe { libc::open(c.as_ptr(), flags) };
        if fd < 0 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(fd)
        }
    }

    /// `openat(dirfd, path, flags)`.
    pub fn openat(dirfd: RawFd, path: &str, flags: i32) -> Result<RawFd, i32> {
        let c = std::ffi::CString::new(path).unwrap();
        // SAFETY: `c` is a valid C string for the call.
        let fd = unsafe { libc::openat(dirfd, c.as_ptr(), flags) };
        if fd < 0 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(fd)
        }
    }

    /// `openat2(AT_FDCWD, path, {flags}, size)`.
    pub fn openat2(path: &str, flags: u64, size: usize) -> Result<RawFd, i32> {
        let c = std::ffi::CString::new(path).unwrap();
        let how = [flags, 0u64, 0u64, 0u64];
        // SAFETY: `c` is a valid C string and `how` 32 readable bytes, at
        // least `size` for the sizes the tests pass.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                libc::AT_FDCWD,
                c.as_ptr(),
                how.as_ptr(),
                size,
            )
        };
        if fd < 0 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(RawFd::try_from(fd).unwrap())
        }
    }

    /// `close(fd)`.
    pub fn close(fd: RawFd) {
        // SAFETY: closes a descriptor this test opened and no longer uses.
        unsafe { libc::close(fd) };
    }

    /// `dup(fd)`.
    pub fn dup(fd: RawFd) -> RawFd {
        // SAFETY: integer arguments only.
        unsafe { libc::dup(fd) }
    }

    /// Ends this process with SIGKILL at once.
    pub fn kill_self() -> ! {
        // SAFETY: integer arguments only.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        unreachable!("SIGKILL")
    }
}
