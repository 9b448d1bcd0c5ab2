//! Shared helpers of sevm's integration tests: run the real binary, talk
//! QMP to it, wait for its log lines (event driven: no sleeps).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sevm_qmp::QmpClient;

mod peers;
#[allow(unused_imports)] // not every test uses the peers
pub use peers::*;
mod procs;
#[allow(unused_imports)] // not every test reports process states
pub use procs::*;

/// Upper bound for any single wait (a guard against hangs, not a timing).
pub const WAIT: Duration = Duration::from_secs(60);

/// The sevm binary under test: this build's, or the one `SEVM_TEST_BINARY`
/// names (to show that a regression test fails against an older build).
pub fn sevm_bin() -> std::ffi::OsString {
    std::env::var_os("SEVM_TEST_BINARY").unwrap_or_else(|| env!("CARGO_BIN_EXE_sevm").into())
}

// ----- the backend a test runs on -------------------------------------------

/// The SEV backend sevm's plain-SEV tests run on: each such test runs once
/// per backend ([`both_backends!`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sev-device=emulated:DIR`: sevm's emulated backend.
    Emulated,
    /// `sev-device=/dev/sev` under `sev-emulate --platform DIR`: sevm's
    /// hardware backend (SEV_ISSUE_CMD, KVM's SEV ioctls) served by the
    /// launcher from the same platform directory.
    HardwareUnderLauncher,
}

thread_local! {
    static BACKEND: std::cell::Cell<Backend> = const { std::cell::Cell::new(Backend::Emulated) };
}

/// The backend of the test running on this thread.
pub fn backend() -> Backend {
    BACKEND.with(|b| b.get())
}

/// Whether this test runs sevm's hardware backend under the launcher.
pub fn hardware() -> bool {
    backend() == Backend::HardwareUnderLauncher
}

/// Runs `body` as test `name` on `backend`. Both need /dev/kvm unless
/// `emulated_without_kvm` (the body then asks for it where it needs it);
/// the hardware variant always does (the launcher serves KVM's SEV ioctls
/// on a real KVM VM). Without it the test is skipped the usual way.
pub fn run_on(backend: Backend, name: &str, emulated_without_kvm: bool, body: fn()) {
    let needs_kvm = backend == Backend::HardwareUnderLauncher || !emulated_without_kvm;
    if needs_kvm && !sevm_testutil::kvm(name) {
        return;
    }
    BACKEND.with(|b| b.set(backend));
    body();
}

/// `both_backends!(body => NAME, NAME_hardware_under_launcher)`: test
/// `NAME` runs `body` on the emulated backend, the second name runs it on
/// the hardware backend under the launcher (same assertions; where the
/// hardware differs the body asks [`hardware()`]). Both skip without
/// /dev/kvm; with a trailing `, emulated_without_kvm` the emulated variant
/// runs anyway (its body checks for /dev/kvm where it needs it).
#[macro_export]
macro_rules! both_backends {
    ($body:ident => $emulated:ident, $hardware:ident) => {
        $crate::both_backends!(@tests $body, $emulated, $hardware, false);
    };
    ($body:ident => $emulated:ident, $hardware:ident, emulated_without_kvm) => {
        $crate::both_backends!(@tests $body, $emulated, $hardware, true);
    };
    (@tests $body:ident, $emulated:ident, $hardware:ident, $without:expr) => {
        #[test]
        fn $emulated() {
            $crate::common::run_on(
                $crate::common::Backend::Emulated,
                stringify!($emulated),
                $without,
                $body,
            );
        }
        #[test]
        fn $hardware() {
            $crate::common::run_on(
                $crate::common::Backend::HardwareUnderLauncher,
                stringify!($hardware),
                $without,
                $body,
            );
        }
    };
}

/// The C-bit position sevm reports: the emulated platform's 47; on the
/// hardware backend the host CPU's (CPUID 0x8000001F, as QEMU reads it: the
/// launcher serves ioctls, not CPUID, so on a host without SEV it is 0).
pub fn expected_cbitpos() -> u64 {
    if hardware() {
        use std::arch::x86_64::__cpuid;
        if __cpuid(0x8000_0000).eax < 0x8000_001F {
            return 0;
        }
        u64::from(__cpuid(0x8000_001F).ebx & 0x3F)
    } else {
        47
    }
}

/// Whether the hypervisor's view of private guest memory (`xp`, `pmemsave`,
/// `memsave`) is ciphertext: on the emulated backend; under the launcher
/// the real KVM runs the guest unencrypted, so sevm's hardware backend sees
/// plaintext there (docs/guide/sev-emulate.md#kvm, "What differs from
/// hardware").
pub fn host_view_is_ciphertext() -> bool {
    !hardware()
}

/// Asserts the hypervisor's view `host` of private memory against its
/// plaintext `plain`: different ([`host_view_is_ciphertext`]), or the same
/// under the launcher.
#[track_caller]
pub fn assert_host_view<T: PartialEq + std::fmt::Debug>(host: T, plain: T) {
    if host_view_is_ciphertext() {
        assert_ne!(host, plain, "the hypervisor must see ciphertext");
    } else {
        assert_eq!(host, plain, "the launcher runs the guest unencrypted");
    }
}

/// The launcher binary, beside sevm in the target directory; built (`cargo
/// build -p sev-emulate --bin sev-emulate`) when missing or older than
/// sevm. Not a dev-dependency: sev-emulate depends on sevm.
pub fn launcher_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_launcher).clone()
}

fn build_launcher() -> PathBuf {
    let sevm = PathBuf::from(env!("CARGO_BIN_EXE_sevm"));
    let dir = sevm.parent().unwrap();
    let bin = dir.join("sev-emulate");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let stale = match (mtime(&bin), mtime(&sevm)) {
        (Some(l), Some(s)) => l < s,
        _ => true,
    };
    if stale {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "sev-emulate", "--bin", "sev-emulate"]);
        // Not this test's environment (cargo's variables for the test):
        // with it the build sees another environment and rebuilds.
        cmd.env_clear();
        for k in [
            "PATH",
            "HOME",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "RUSTUP_HOME",
            "RUSTUP_TOOLCHAIN",
            "RUSTFLAGS",
            "RUSTC",
            "RUSTC_WRAPPER",
        ] {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let mut child = cmd.stdin(Stdio::null()).spawn().unwrap();
        // A bound on the build, not a timing.
        let deadline = Instant::now() + Duration::from_secs(30 * 60);
        let st = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("building sev-emulate took over 30 minutes");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(st.success(), "building sev-emulate failed");
    }
    assert!(bin.exists(), "{} not built", bin.display());
    bin
}

/// The command running sevm with `args` on this test's backend: on the
/// hardware backend every `sev-device=emulated:DIR` becomes
/// `sev-device=/dev/sev` and sevm runs under `sev-emulate --platform DIR`.
pub fn sevm_command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().into()).collect();
    if !hardware() {
        let mut c = Command::new(sevm_bin());
        c.args(args);
        return c;
    }
    let (args, platform) = to_hardware_args(&args);
    let Some(platform) = platform else {
        let mut c = Command::new(sevm_bin());
        c.args(args);
        return c;
    };
    let mut c = Command::new(launcher_bin());
    c.arg("--platform")
        .arg(platform)
        .arg("--")
        .arg(sevm_bin())
        .args(args);
    c
}

/// `args` with `sev-device=emulated:DIR` replaced by `sev-device=/dev/sev`,
/// and DIR (one platform per sevm process).
pub fn to_hardware_args(args: &[std::ffi::OsString]) -> (Vec<std::ffi::OsString>, Option<PathBuf>) {
    const KEY: &str = "sev-device=emulated:";
    let mut platform: Option<PathBuf> = None;
    let mut out = Vec::new();
    for a in args {
        let Some(text) = a.to_str().filter(|t| t.contains(KEY)) else {
            out.push(a.clone());
            continue;
        };
        let at = text.find(KEY).unwrap();
        let rest = &text[at + KEY.len()..];
        let end = rest.find(',').unwrap_or(rest.len());
        let dir = PathBuf::from(&rest[..end]);
        if let Some(p) = &platform {
            assert_eq!(p, &dir, "one platform per sevm process");
        }
        platform = Some(dir);
        out.push(format!("{}sev-device=/dev/sev{}", &text[..at], &rest[end..]).into());
    }
    (out, platform)
}

/// Writes the demo guest image into `dir` and returns its path.
pub fn demo_image(dir: &Path) -> PathBuf {
    let path = dir.join("demo.fd");
    let st = Command::new(sevm_bin())
        .arg("-write-demo-guest")
        .arg(&path)
        .status()
        .unwrap();
    assert!(st.success());
    path
}

/// A running sevm process with its stderr captured line by line.
pub struct Sevm {
    pub child: Child,
    lines: Receiver<String>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub stdout: Option<std::process::ChildStdout>,
    /// Whether `child` is the launcher running sevm.
    under_launcher: bool,
}

impl Sevm {
    /// Starts sevm with `args` and `RUST_LOG=sevm=info` (so the QMP server
    /// announces when it listens).
    pub fn spawn<I, S>(args: I) -> Sevm
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = sevm_command(args);
        let under_launcher = cmd.get_program() != sevm_bin().as_os_str();
        let mut child = cmd
            .env("RUST_LOG", "sevm=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = channel();
        let all = Arc::new(Mutex::new(Vec::new()));
        let all2 = all.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                all2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let stdout = child.stdout.take();
        Sevm {
            child,
            lines: rx,
            stderr: all,
            stdout,
            under_launcher,
        }
    }

    /// The sevm process's pid: the child's, or under the launcher the
    /// launcher's only child (`/proc/PID/task/*/children`).
    pub fn sevm_pid(&self) -> u32 {
        let pid = self.child.id();
        if !self.under_launcher {
            return pid;
        }
        let mut kids = Vec::new();
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
            let path = task.unwrap().path().join("children");
            let text = std::fs::read_to_string(path).unwrap_or_default();
            kids.extend(text.split_whitespace().map(|k| k.parse::<u32>().unwrap()));
        }
        assert_eq!(kids.len(), 1, "the launcher's children: {kids:?}");
        kids[0]
    }

    /// Waits for a stderr line containing `needle`; false if sevm closed
    /// stderr (exited) first.
    pub fn wait_for_stderr(&self, needle: &str) -> bool {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return true,
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => return false,
                Err(RecvTimeoutError::Timeout) => {
                    let why = format!("no stderr line with {needle:?} within {WAIT:?}");
                    panic!("{}", self.diagnose(&why));
                }
            }
        }
    }

    /// A failure message for `what` while the process still runs: the
    /// state of the process and its descendants (under the launcher: the
    /// launcher and sevm; [`process_report`]) and everything written to
    /// stderr so far (which sevm shares with the launcher).
    pub fn diagnose(&self, what: &str) -> String {
        self.diagnose_counted(what).0
    }

    /// [`Sevm::diagnose`] and the number of stderr lines it shows.
    fn diagnose_counted(&self, what: &str) -> (String, usize) {
        let report = process_report(self.child.id());
        let lines = self.stderr.lock().unwrap().clone();
        let text = format!(
            "{what}\n{report}=== stderr so far (the launcher's and sevm's)\n{}",
            lines.join("\n")
        );
        (text, lines.len())
    }

    /// Fails for `what` with [`Sevm::diagnose`], then kills the process
    /// (sevm under the launcher dies with it) and adds what it wrote to
    /// stderr after the report (the stderr reader is given a bounded time
    /// to see the end).
    fn fail_with_state(&mut self, what: &str) -> ! {
        let (report, shown) = self.diagnose_counted(what);
        self.kill_tree();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
        {}
        let after = self.stderr.lock().unwrap()[shown..].join("\n");
        panic!("{report}\n=== stderr after the report, until the kill\n{after}");
    }

    /// Kills the process (SIGKILL) and reaps it; under the launcher, also
    /// waits (bounded) until sevm, which dies with the launcher, is gone:
    /// a sevm started next on the same QMP socket would otherwise find it
    /// still in use.
    fn kill_tree(&mut self) {
        let descendants = if self.under_launcher {
            process_tree(self.child.id()).split_off(1)
        } else {
            Vec::new()
        };
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !all_gone(&descendants, WAIT) {
            eprintln!("processes {descendants:?} outlived their launcher by {WAIT:?}");
        }
    }

    /// Waits at most `bound` for the process to exit by itself; otherwise
    /// fails with the state of the process tree and its stderr
    /// ([`Sevm::diagnose`]) and kills it.
    pub fn exits_within(&mut self, bound: Duration, what: &str) -> ExitStatus {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // Let the stderr thread read everything the process wrote.
                let _ = self.wait_for_stderr("\u{0}no such line");
                return st;
            }
            if Instant::now() >= deadline {
                self.fail_with_state(&format!(
                    "{what}: the process did not exit within {bound:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the QMP socket to listen, then connects.
    pub fn qmp(&self, sock: &Path) -> Qmp {
        assert!(
            self.wait_for_stderr("QMP listening on"),
            "sevm exited before listening: {:?}",
            self.stderr.lock().unwrap()
        );
        Qmp::connect(sock)
    }

    /// Waits for the process to exit (bounded by [`WAIT`]): first for its
    /// stderr to close, then reaps it. Fails as [`Sevm::exits_within`]
    /// does.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    self.fail_with_state(&format!("sevm did not exit within {WAIT:?}"))
                }
            }
        }
        // Stderr closed; the exit follows (bounded all the same).
        self.exits_within(WAIT, "after closing stderr")
    }

    /// Everything sevm wrote to stdout (after it exited).
    pub fn stdout_text(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut out) = self.stdout.take() {
            use std::io::Read;
            out.read_to_string(&mut s).unwrap();
        }
        s
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

impl Drop for Sevm {
    fn drop(&mut self) {
        self.kill_tree();
    }
}

/// The QMP client of these tests: `sevm_qmp`'s client, panicking instead
/// of returning errors. Each read is bounded by [`WAIT`].
pub struct Qmp {
    client: QmpClient,
    pub greeting: Value,
    pub events: Vec<Value>,
}

impl Qmp {
    /// Connects and reads the greeting (capabilities are the test's job).
    pub fn connect(sock: &Path) -> Qmp {
        let client = QmpClient::connect_without_negotiation(sock, WAIT)
            .unwrap_or_else(|e| panic!("QMP connect to {}: {e}", sock.display()));
        let greeting = client.greeting().clone();
        Qmp {
            client,
            greeting,
            events: Vec::new(),
        }
    }

    fn read(&mut self) -> Value {
        self.client
            .read_message()
            .unwrap_or_else(|e| panic!("QMP read: {e}"))
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.client
            .send_raw(bytes)
            .unwrap_or_else(|e| panic!("QMP write: {e}"));
    }

    /// Reads the next reply (not event), stashing events.
    pub fn reply(&mut self) -> Value {
        loop {
            let v = self.read();
            if v.get("event").is_some() {
                self.events.push(v);
            } else {
                return v;
            }
        }
    }

    /// Executes a command; returns the whole reply object.
    pub fn cmd(&mut self, name: &str, args: Value) -> Value {
        let args = (!args.is_null()).then_some(args);
        let reply = self
            .client
            .request(name, args)
            .unwrap_or_else(|e| panic!("QMP {name}: {e}"));
        self.events.extend(self.client.events());
        reply
    }

    /// Executes a command that must succeed; returns `return`.
    pub fn ok(&mut self, name: &str, args: Value) -> Value {
        let r = self.cmd(name, args);
        match r.get("return") {
            Some(v) => v.clone(),
            None => panic!("{name} failed: {r}"),
        }
    }

    /// Executes a command that must fail; returns the error `desc`.
    pub fn err(&mut self, name: &str, args: Value) -> String {
        let r = self.cmd(name, args);
        match r.get("error") {
            Some(e) => e["desc"].as_str().unwrap().to_string(),
            None => panic!("{name} unexpectedly succeeded: {r}"),
        }
    }

    /// After garbage: sends a tagged `query-status` and reads replies until
    /// its answer; returns the replies before it (the garbage's errors).
    pub fn sync(&mut self) -> Vec<Value> {
        self.send_raw(b"{\"execute\": \"query-status\", \"id\": \"sync\"}\n");
        let mut before = Vec::new();
        loop {
            let r = self.reply();
            if r["id"] == "sync" {
                assert!(r.get("return").is_some(), "{r}");
                return before;
            }
            before.push(r);
        }
    }

    /// Waits for event `name` (or returns it if already seen).
    pub fn event(&mut self, name: &str) -> Value {
        if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
            return self.events.remove(i);
        }
        loop {
            let v = self.read();
            if v["event"] == name {
                return v;
            }
            if v.get("event").is_some() {
                self.events.push(v);
            }
        }
    }
}

/// Runs `f` (a wait on the processes `vms`); if it fails, fails with its
/// message followed by the state and stderr of each of `vms`
/// ([`Sevm::diagnose`]): which one hangs, and where.
pub fn diagnosed<T>(vms: &[(&str, &Sevm)], f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            let mut text = msg.to_string();
            for (name, vm) in vms {
                text.push_str(&format!("\n\n##### {name}\n{}", vm.diagnose(name)));
            }
            panic!("{text}");
        }
    }
}

/// Asserts a process ended with exit code `code` and did not panic.
pub fn assert_exit(st: ExitStatus, code: i32, stderr: &str) {
    assert!(!stderr.contains("panicked"), "sevm panicked: {stderr}");
    assert_eq!(st.code(), Some(code), "stderr: {stderr}");
}

// ----- the emulated platform and the guest owner ----------------------------

use std::sync::OnceLock;

use base64::Engine;
use sev_proto::cert::chain::{CaChain, FullChain, PlatformChain};
use sev_proto::cert::{ca, sev as sevcert};
use sev_proto::session::OwnerSession;

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// One emulated platform identity per test process (2048-bit roots), made
/// once and copied for each test.
fn platform_template() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("platform");
        let opts = sev_psp::CreateOptions {
            ark_bits: 2048,
            ..Default::default()
        };
        sev_psp::Platform::create(&path, opts, sev_psp::rng::seeded_rng(0x5e7)).unwrap();
        (tmp, path)
    });
    path
}

/// A copy of the prepared platform directory at `dir/name`.
pub fn fresh_platform(dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    sevm_testutil::copy_platform(platform_template(), &to);
    to
}

/// The platform's emulated ARK, which the owner pins (trusting the
/// emulated root explicitly), and its ASK.
pub fn amd_chain(platform: &Path) -> (Vec<u8>, Vec<u8>) {
    let p = sev_psp::Platform::open(platform, sev_psp::rng::os_rng()).unwrap();
    p.amd_chain()
}

/// Rotates the platform's PDH (PDH_GEN): afterwards it is "another
/// platform" for sessions made with the old PDH.
pub fn rotate_pdh(platform: &Path) {
    let p = sev_psp::Platform::open(platform, sev_psp::rng::os_rng()).unwrap();
    // The platform is one per directory: a VM on it may have INITed it.
    if p.platform_status().unwrap().state == sev_proto::abi::PlatformState::Uninit {
        p.init(false).unwrap();
    }
    p.pdh_gen().unwrap();
}

/// Leaves `platform` UNINIT: helpers that INIT it (`export_pdh`,
/// `rotate_pdh`) do so without SEV-ES, and a platform INITed so refuses
/// SEV-ES guests (sevm INITs an UNINIT platform with SEV-ES, as Linux
/// does).
pub fn uninit(platform: &Path) {
    let p = sev_psp::Platform::open(platform, sev_psp::rng::os_rng()).unwrap();
    p.shutdown().unwrap();
}

/// Another platform at `dir/name` with the same owner (OCA) and roots as
/// the prepared one but its own PDH (left INITed).
pub fn sibling_platform(dir: &Path, name: &str) -> PathBuf {
    let p = fresh_platform(dir, name);
    rotate_pdh(&p);
    p
}

/// Exports the PDH and chain directly from the platform directory.
pub fn export_pdh(platform: &Path) -> (Vec<u8>, Vec<u8>) {
    let p = sev_psp::Platform::open(platform, sev_psp::rng::os_rng()).unwrap();
    // The platform is one per directory: a VM on it may have INITed it.
    if p.platform_status().unwrap().state == sev_proto::abi::PlatformState::Uninit {
        p.init(false).unwrap();
    }
    let mut pdh = vec![0u8; 0x824];
    let mut chain = vec![0u8; 0x186c];
    p.pdh_cert_export(&mut pdh, &mut chain).unwrap();
    (pdh, chain)
}

/// The guest owner: verifies the chain to the pinned (emulated) ARK, makes
/// a launch session for `policy` and writes QEMU's `dh-cert-file` and
/// `session-file` (base64) into `dir`.
pub struct Owner {
    pub session: OwnerSession,
    pub godh_file: PathBuf,
    pub session_file: PathBuf,
}

pub fn owner(
    dir: &Path,
    pdh: &[u8],
    chain: &[u8],
    ask_ark: &(Vec<u8>, Vec<u8>),
    policy: u32,
) -> Owner {
    let pdh_cert = sevcert::Certificate::decode(pdh).unwrap();
    let platform = PlatformChain::decode(chain).unwrap();
    let ask = ca::Certificate::decode(&ask_ark.0).unwrap();
    let ark = ca::Certificate::decode(&ask_ark.1).unwrap();
    let full = FullChain::from_parts(
        pdh_cert,
        platform,
        CaChain {
            ask,
            ark: ark.clone(),
        },
    );
    let verified = full.verify(&ark).unwrap();
    let session = OwnerSession::new(verified.pdh_public_key(), policy, &mut rand_core::OsRng);
    let godh = sevcert::Certificate::godh(&session.godh_public()).encode();
    let godh_file = dir.join("vm_godh.b64");
    let session_file = dir.join("vm_session.b64");
    std::fs::write(&godh_file, b64(&godh)).unwrap();
    std::fs::write(&session_file, b64(&session.session_buffer().to_bytes())).unwrap();
    Owner {
        session,
        godh_file,
        session_file,
    }
}

/// `-object sev-guest,...` on the emulated platform in `platform`, with the
/// owner's files when given.
pub fn sev_object(platform: &Path, policy: u32, owner: Option<&Owner>, extra: &str) -> String {
    let mut s = format!(
        "sev-guest,id=sev0,policy={policy:#x},sev-device=emulated:{}",
        platform.display()
    );
    if let Some(o) = owner {
        s.push_str(&format!(
            ",dh-cert-file={},session-file={}",
            o.godh_file.display(),
            o.session_file.display()
        ));
    }
    s.push_str(extra);
    s
}

/// Args for an SEV guest on the emulated platform.
pub fn sev_args(fw: &Path, mem_mib: u32, object: &str, sock: Option<&Path>) -> Vec<String> {
    let mut a = vec![
        "-bios".to_string(),
        fw.display().to_string(),
        "-m".into(),
        mem_mib.to_string(),
        "-machine".into(),
        "q35,memory-encryption=sev0".into(),
        "-object".into(),
        object.to_string(),
    ];
    if let Some(s) = sock {
        a.push("-S".into());
        a.push("-qmp".into());
        a.push(format!("unix:{},server=on,wait=off", s.display()));
    }
    a
}

/// `-smp VCPUS -cpu MODEL`.
pub fn smp_args(vcpus: u32, model: &str) -> [String; 4] {
    [
        "-smp".into(),
        vcpus.to_string(),
        "-cpu".into(),
        model.into(),
    ]
}

/// Checks the 48-byte launch-measure blob against the expected launch
/// digest with the owner's TIK, for the platform version `query-sev`
/// reported.
pub fn verify_measurement(
    owner: &Owner,
    query_sev: &Value,
    blob: &[u8],
    ld: &[u8; 32],
) -> Result<(), String> {
    let blob = sev_proto::measurement::MeasureBlob::decode(blob).map_err(|e| e.to_string())?;
    sev_proto::measurement::verify_measurement(
        &owner.session.keys().tik,
        query_sev["api-major"].as_u64().unwrap() as u8,
        query_sev["api-minor"].as_u64().unwrap() as u8,
        query_sev["build-id"].as_u64().unwrap() as u8,
        query_sev["policy"].as_u64().unwrap() as u32,
        ld,
        &blob,
    )
    .map_err(|e| e.to_string())
}

/// A secret packet for `table` (padded efi_secret table), bound to the
/// measurement, as base64 (packet-header, secret).
pub fn secret_packet(owner: &Owner, blob: &[u8], table: &[u8]) -> (String, String) {
    let measurement: [u8; 32] = blob[..32].try_into().unwrap();
    let mut iv = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut iv);
    let (hdr, trans) = sev_proto::secret::build_launch_secret(
        owner.session.keys(),
        &iv,
        table,
        Some(&measurement),
    );
    (b64(&hdr.to_bytes()), b64(&trans))
}

/// The demo guest in memtest mode (rewrites `pages` pages at 16 MiB until
/// the host asks it to verify; a progress line every `progress_every`
/// passes, 0 = never), written into `dir`.
pub fn memtest_image(dir: &Path, pages: u32, progress_every: u32) -> PathBuf {
    memtest_image_at(dir, 16 << 20, pages, progress_every)
}

/// [`memtest_image`] with its pages at `base`.
pub fn memtest_image_at(dir: &Path, base: u32, pages: u32, progress_every: u32) -> PathBuf {
    use sevm_demo::{DemoMode, DemoOptions, MemtestOptions, DEFAULT_IMAGE_SIZE};
    let image = sevm_demo::build(&DemoOptions {
        size: DEFAULT_IMAGE_SIZE,
        mode: DemoMode::Memtest(MemtestOptions {
            base,
            pages,
            max_passes: 0,
            progress_every,
        }),
    })
    .unwrap();
    let p = dir.join("memtest.fd");
    std::fs::write(&p, image).unwrap();
    p
}

/// Arguments of an SEV guest with a QMP socket and its serial on stdout.
pub fn migration_args(
    fw: &Path,
    platform: &Path,
    policy: u32,
    mem_mib: u32,
    qmp: &Path,
    extra: &[&str],
) -> Vec<String> {
    let mut a = sev_args(fw, mem_mib, &sev_object(platform, policy, None, ""), None);
    a.extend([
        "-qmp".to_string(),
        format!("unix:{},server=on,wait=off", qmp.display()),
        "-serial".into(),
        "stdio".into(),
    ]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Gives the source VM behind `q` the target platform's PDH and chains
/// (`migrate-set-parameters`).
pub fn set_target_chain(q: &mut Qmp, target: &Path) {
    let (pdh, chain) = export_pdh(target);
    let (ask, ark) = amd_chain(target);
    q.ok(
        "migrate-set-parameters",
        json!({"sev-pdh": b64(&pdh), "sev-plat-cert": b64(&chain),
               "sev-amd-cert": b64(&[ask, ark].concat())}),
    );
}

/// Before a same-platform snapshot: on the hardware backend the AMD chain
/// must be set explicitly (there is no local ASK ‖ ARK on hardware:
/// docs/guide/sevm-migration.md#hardware); the emulated backend takes its
/// platform's own.
pub fn snapshot_amd_chain(q: &mut Qmp, platform: &Path) {
    if hardware() {
        let (ask, ark) = amd_chain(platform);
        q.ok(
            "migrate-set-parameters",
            json!({"sev-amd-cert": b64(&[ask, ark].concat())}),
        );
    }
}

/// After the move of a memtest guest of `pages` pages: the guest runs on
/// the target (QMP listens just before the restored guest is started),
/// `also` checks what the caller wants of the running target, then the
/// guest verifies its whole range and exits 0.
pub fn finish_and_verify(
    vm: &mut Sevm,
    out: &Receiver<String>,
    qmp: &Path,
    pages: u32,
    also: impl FnOnce(&mut Qmp),
) {
    let mut q = Qmp::connect(qmp);
    q.ok("qmp_capabilities", Value::Null);
    if q.ok("query-status", Value::Null)["status"] != "running" {
        q.event("RESUME");
    }
    assert_eq!(q.ok("query-status", Value::Null)["status"], "running");
    also(&mut q);
    q.ok("system_powerdown", Value::Null);
    wait_line(out, "memtest: checking");
    let line = out.recv_timeout(WAIT).unwrap();
    assert_eq!(line, format!("memtest: ok {pages} pages"));
    let st = vm.wait();
    assert_exit(st, 0, &vm.stderr_text());
}

/// A 64 KiB firmware that spins at the reset vector (`jmp $`), written
/// into `dir`.
pub fn spin_firmware(dir: &Path) -> PathBuf {
    let mut fw = vec![0xF4u8; 0x10000];
    let at = fw.len() - 16;
    fw[at] = 0xEB;
    fw[at + 1] = 0xFE;
    let p = dir.join("spin.fd");
    std::fs::write(&p, fw).unwrap();
    p
}

/// The guest's serial output (stdout), line by line.
pub fn serial(vm: &mut Sevm) -> Receiver<String> {
    let out = vm.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a serial line containing `needle`; returns the lines before it.
pub fn wait_line(rx: &Receiver<String>, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return seen,
            Ok(l) => seen.push(l),
            Err(e) => panic!("no serial line {needle:?} ({e}); saw {seen:?}"),
        }
    }
}

/// Waits for a MIGRATION event with a final status; returns `query-migrate`.
pub fn migration_result(q: &mut Qmp) -> Value {
    loop {
        let e = q.event("MIGRATION");
        let s = e["data"]["status"].as_str().unwrap().to_string();
        if ["completed", "failed", "cancelled"].contains(&s.as_str()) {
            let info = q.ok("query-migrate", Value::Null);
            assert_eq!(info["status"], s.as_str(), "{info}");
            return info;
        }
    }
}
