//! The guest owner's whole attested launch against a `sevm` VMM:
//!
//! 1. the platform's chain (a file, a saved `query-sev-capabilities`, or the
//!    capabilities of a probe `sevm` started just to ask), verified to the
//!    owner's root;
//! 2. the policy's API minimum against the PDH's firmware version;
//! 3. the launch session for the verified PDH (files as `sevctl session`);
//! 4. `sevm -S` started with those files (or one already started, attached
//!    to over QMP);
//! 5. `query-sev`: SEV enabled, the policy is ours, the firmware API is not
//!    below the policy's minimum, hardware/emulated as expected;
//! 6. the expected launch digest of the firmware (and kernel hashes);
//! 7. `query-sev-launch-measure` checked against it (constant time; a
//!    mismatch says whether the digest, the policy or the firmware version
//!    differs);
//! 8. the secret packet, injected with `sev-inject-launch-secret`;
//! 9. `cont` (LAUNCH_FINISH), then the guest runs to its exit.
//!
//! Every step is timed and reported as it ends. Any failed check stops the
//! launch before anything is injected: the VMM is told to quit and the
//! error names the check ([`LaunchError::Refused`]).

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sev_proto::abi::{ApiVersion, Policy};
use sev_proto::cert::chain::VerifiedChain;
use sev_proto::measurement::MeasureBlob;

use crate::chain::{self, CaOptions, ChainError, ChainSource, Trust, Verification};
use crate::io::{self, IoError};
use crate::measure::{self, DigestInputs, FirmwareVersion, MeasureError};
use crate::secret::{self, SecretError, SecretSpec};
use crate::session::{self, SessionError, SessionPaths};
use sevm_qmp::client::{self as qmp, ClientError, QmpClient};

/// How long a QMP reply may take.
const QMP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the VMM may take to open its QMP socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a launch failed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A check failed: nothing was injected.
    #[error("launch refused at step '{step}': {reason}")]
    Refused {
        /// The step whose check failed.
        step: &'static str,
        /// Why.
        reason: String,
    },
    /// The chain could not be loaded.
    #[error("certificate chain")]
    Chain(#[source] ChainError),
    /// The session could not be written or read.
    #[error("launch session")]
    Session(#[source] SessionError),
    /// The expected digest could not be computed.
    #[error("expected launch digest")]
    Measure(#[source] MeasureError),
    /// The secret could not be built.
    #[error("secret")]
    Secret(#[source] SecretError),
    /// Talking to the VMM failed.
    #[error("QMP")]
    Qmp(#[source] ClientError),
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The VMM could not be started or stopped early.
    #[error("VMM {what}{}", if .stderr.is_empty() { String::new() } else { format!(": {}", .stderr) })]
    Vmm {
        /// What happened.
        what: String,
        /// The VMM's last stderr lines.
        stderr: String,
    },
}

/// Which platform the VMM uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// AMD hardware (`sev-device=PATH`, default `/dev/sev`).
    Hardware(PathBuf),
    /// The emulated platform in a directory (`sev-device=emulated:DIR`).
    Emulated(PathBuf),
}

impl Device {
    fn property(&self) -> String {
        match self {
            Device::Hardware(p) => p.display().to_string(),
            Device::Emulated(d) => format!("emulated:{}", d.display()),
        }
    }
}

/// Where the chain comes from.
#[derive(Debug, Clone)]
pub enum ChainInput {
    /// A file, a directory or saved capabilities.
    Source(ChainSource),
    /// `query-sev-capabilities` of a probe `sevm -S` (an unattested launch
    /// that is quit right after).
    Probe,
    /// `query-sev-capabilities` of the attached VMM (which was started
    /// with its session already: the chain is only checked).
    Attached,
}

/// An already started VMM to attach to.
#[derive(Debug, Clone)]
pub struct Attach {
    /// Its QMP socket.
    pub qmp: PathBuf,
    /// The session it was started with (the TEK/TIK files are read).
    pub session: SessionPaths,
}

/// Everything the launch needs.
#[derive(Debug)]
pub struct Plan {
    /// The `sevm` binary.
    pub sevm: PathBuf,
    /// The platform.
    pub device: Device,
    /// The chain.
    pub chain: ChainInput,
    /// Where the ASK/ARK come from.
    pub ca: CaOptions,
    /// The root to verify to.
    pub trust: Trust,
    /// The guest policy.
    pub policy: Policy,
    /// What the launch digest covers (the firmware the VMM is given).
    pub digest: DigestInputs,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// The secrets to inject (none: no LAUNCH_SECRET).
    pub secrets: Vec<SecretSpec>,
    /// The secret area size limit.
    pub secret_limit: usize,
    /// Session files, QMP socket and logs go here.
    pub work_dir: PathBuf,
    /// Attach to this VMM instead of starting one.
    pub attach: Option<Attach>,
    /// Extra `sevm` arguments.
    pub extra_args: Vec<String>,
    /// After injecting, read the secret page through the VMM's host view
    /// (`human-monitor-command xp`) to show what the host sees.
    pub host_view: bool,
    /// Wait for the guest to exit after `cont` (else leave it running).
    pub wait_for_guest: bool,
    /// How long the guest may run after `cont` when waiting for it.
    pub guest_timeout: Duration,
}

/// One finished step.
#[derive(Debug, Clone)]
pub struct Step {
    /// Short name.
    pub name: &'static str,
    /// What was done or found.
    pub detail: String,
    /// How long it took.
    pub elapsed: Duration,
}

/// The launch's outcome.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// The verified chain report.
    pub chain_report: Option<String>,
    /// What the guest printed (the VMM's stdout: the serial console).
    pub guest_output: String,
    /// The VMM's exit status when it ended.
    pub exit_code: Option<i32>,
    /// The secret page as the host sees it, when available.
    pub host_view: Option<Result<String, String>>,
    /// The launch digest that was verified.
    pub launch_digest: Option<[u8; 32]>,
    /// The secret packet's payload as handed to the VMM (ciphertext under
    /// the TEK: all the host ever sees of the secret in transit).
    pub secret_payload: Option<Vec<u8>>,
    /// Total time.
    pub total: Duration,
}

/// A started `sevm` process with its stdout (the guest's serial console)
/// and stderr collected.
#[derive(Debug)]
pub struct VmmProcess {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    socket: PathBuf,
}

fn collect(mut r: impl Read + Send + 'static, buf: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Ok(mut b) = buf.lock() {
                        b.extend_from_slice(chunk.get(..n).unwrap_or_default());
                    }
                }
            }
        }
    })
}

fn text(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    buf.lock()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines
        .get(lines.len().saturating_sub(n)..)
        .unwrap_or_default()
        .join(" | ")
}

impl VmmProcess {
    /// Starts `sevm` with `args`; `socket` is the QMP socket those args name.
    pub fn start(sevm: &Path, args: &[String], socket: PathBuf) -> Result<Self, LaunchError> {
        let _ = std::fs::remove_file(&socket);
        let mut child = Command::new(sevm)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| LaunchError::Vmm {
                what: format!("{} could not be started: {e}", sevm.display()),
                stderr: String::new(),
            })?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(o) = child.stdout.take() {
            readers.push(collect(o, stdout.clone()));
        }
        if let Some(e) = child.stderr.take() {
            readers.push(collect(e, stderr.clone()));
        }
        Ok(VmmProcess {
            child,
            stdout,
            stderr,
            readers,
            socket,
        })
    }

    /// Connects to the QMP socket once the VMM has opened it (or reports
    /// the VMM's exit and its stderr).
    pub fn connect(&mut self) -> Result<QmpClient, LaunchError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut backoff = Duration::from_micros(200);
        loop {
            if let Ok(stream) = UnixStream::connect(&self.socket) {
                return QmpClient::from_stream(stream, QMP_TIMEOUT).map_err(LaunchError::Qmp);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let err = self.finish_output();
                return Err(LaunchError::Vmm {
                    what: format!("exited ({status}) before opening its QMP socket"),
                    stderr: last_lines(&err, 3),
                });
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(LaunchError::Vmm {
                    what: format!(
                        "did not open {} within {START_TIMEOUT:?}",
                        self.socket.display()
                    ),
                    stderr: last_lines(&text(&self.stderr), 3),
                });
            }
            // Polling the socket: the VMM has no other readiness signal.
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(5));
        }
    }

    /// What the VMM printed on stdout so far (the serial console).
    pub fn stdout(&self) -> String {
        text(&self.stdout)
    }

    /// What the VMM printed on stderr so far.
    pub fn stderr(&self) -> String {
        text(&self.stderr)
    }

    fn finish_output(&mut self) -> String {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        text(&self.stderr)
    }

    /// Waits for the VMM to exit (killing it after `timeout`).
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus, LaunchError> {
        let deadline = Instant::now() + timeout;
        let mut backoff = Duration::from_micros(200);
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => {
                    self.finish_output();
                    return Ok(s);
                }
                Ok(None) if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    self.finish_output();
                    return Err(LaunchError::Vmm {
                        what: format!("guest still running after {timeout:?}: killed"),
                        stderr: String::new(),
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(LaunchError::Vmm {
                        what: format!("wait failed: {e}"),
                        stderr: String::new(),
                    })
                }
            }
            // No child-exit notification without a signal handler: poll.
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(2));
        }
    }

    /// Asks the VMM to quit (or kills it) and reaps it.
    pub fn stop(&mut self, qmp: Option<&mut QmpClient>) {
        if let Some(q) = qmp {
            let _ = q.execute("quit", None);
        }
        if self.wait(Duration::from_secs(5)).is_err() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for VmmProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct Timer<'a> {
    report: &'a mut Report,
    on_step: &'a mut dyn FnMut(&Step),
    last: Instant,
}

impl Timer<'_> {
    fn done(&mut self, name: &'static str, detail: impl Into<String>) {
        let now = Instant::now();
        let step = Step {
            name,
            detail: detail.into(),
            elapsed: now - self.last,
        };
        self.last = now;
        (self.on_step)(&step);
        self.report.steps.push(step);
    }
}

fn sevm_args(plan: &Plan, socket: &Path, session: Option<&SessionPaths>) -> Vec<String> {
    let mut obj = format!(
        "sev-guest,id=sev0,policy={:#x},sev-device={}",
        plan.policy.bits(),
        plan.device.property()
    );
    if let Some(s) = session {
        obj.push_str(&format!(
            ",dh-cert-file={},session-file={}",
            s.godh.display(),
            s.session.display()
        ));
    }
    if plan.digest.kernel.is_some() {
        obj.push_str(",kernel-hashes=on");
    }
    let mut args = vec![
        "-machine".to_string(),
        "q35,memory-encryption=sev0".to_string(),
        "-object".to_string(),
        obj,
        "-bios".to_string(),
        plan.digest.firmware.display().to_string(),
        "-m".to_string(),
        plan.memory_mib.to_string(),
        "-nographic".to_string(),
        "-serial".to_string(),
        "stdio".to_string(),
        "-S".to_string(),
        "-qmp".to_string(),
        format!("unix:{},server=on,wait=off", socket.display()),
    ];
    if let Some(k) = &plan.digest.kernel {
        args.extend(["-kernel".to_string(), k.display().to_string()]);
    }
    if let Some(i) = &plan.digest.initrd {
        args.extend(["-initrd".to_string(), i.display().to_string()]);
    }
    if let Some(c) = &plan.digest.cmdline {
        args.extend(["-append".to_string(), c.clone()]);
    }
    args.extend(plan.extra_args.iter().cloned());
    args
}

fn refused(step: &'static str, reason: impl Into<String>) -> LaunchError {
    LaunchError::Refused {
        step,
        reason: reason.into(),
    }
}

fn capabilities(q: &mut QmpClient, origin: &str) -> Result<ChainSource, LaunchError> {
    let caps = q
        .execute("query-sev-capabilities", None)
        .map_err(LaunchError::Qmp)?;
    chain::capabilities_from_json(origin, &caps).map_err(LaunchError::Chain)
}

fn verify_chain(
    source: &ChainSource,
    plan: &Plan,
) -> Result<(VerifiedChain, Verification), LaunchError> {
    let loaded = source.load().map_err(LaunchError::Chain)?;
    let v = chain::verify(loaded, &plan.ca, &plan.trust).map_err(LaunchError::Chain)?;
    let rendered = v.render();
    v.into_result().map_err(|e| {
        refused(
            "verify chain",
            format!("{}\n{rendered}", crate::error::error_chain(&e)),
        )
    })
}

/// The firmware version and policy the VMM reports (`query-sev`).
#[derive(Debug, Clone)]
pub struct SevInfo {
    /// Running firmware version.
    pub fw: FirmwareVersion,
    /// The guest's policy.
    pub policy: u32,
    /// The guest state name.
    pub state: String,
    /// sevm's `emulated` flag.
    pub emulated: Option<bool>,
}

fn query_sev(q: &mut QmpClient) -> Result<SevInfo, LaunchError> {
    let v = q.execute("query-sev", None).map_err(LaunchError::Qmp)?;
    if v.get("enabled").and_then(Value::as_bool) != Some(true) {
        return Err(refused(
            "query-sev",
            format!("SEV is not enabled in the VMM: {v}"),
        ));
    }
    let byte = |name: &str| -> Result<u8, LaunchError> {
        let n = qmp::u64_member(&v, name).map_err(LaunchError::Qmp)?;
        u8::try_from(n).map_err(|_| refused("query-sev", format!("{name} {n} is not a byte")))
    };
    let policy = qmp::u64_member(&v, "policy").map_err(LaunchError::Qmp)?;
    Ok(SevInfo {
        fw: FirmwareVersion {
            api_major: byte("api-major")?,
            api_minor: byte("api-minor")?,
            build: byte("build-id")?,
        },
        policy: u32::try_from(policy)
            .map_err(|_| refused("query-sev", format!("policy {policy} is not 32-bit")))?,
        state: v
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string(),
        emulated: v.get("emulated").and_then(Value::as_bool),
    })
}

fn check_api(step: &'static str, have: ApiVersion, policy: Policy) -> Result<(), LaunchError> {
    if have < policy.min_api() {
        return Err(refused(
            step,
            format!(
                "the platform's firmware API {have} is below the policy's minimum {} (policy {policy})",
                policy.min_api()
            ),
        ));
    }
    Ok(())
}

/// Runs the launch; `on_step` is called as each step ends.
pub fn run(plan: &Plan, on_step: &mut dyn FnMut(&Step)) -> Result<Report, LaunchError> {
    let start = Instant::now();
    let mut report = Report::default();
    let result = {
        let mut t = Timer {
            report: &mut report,
            on_step,
            last: start,
        };
        run_steps(plan, &mut t)
    };
    report.total = start.elapsed();
    match result {
        Ok(out) => {
            report.guest_output = out.guest_output;
            report.exit_code = out.exit_code;
            report.host_view = out.host_view;
            report.chain_report = out.chain_report;
            report.launch_digest = out.launch_digest;
            report.secret_payload = out.secret_payload;
            Ok(report)
        }
        Err(e) => Err(e),
    }
}

#[derive(Default)]
struct Outcome {
    guest_output: String,
    exit_code: Option<i32>,
    host_view: Option<Result<String, String>>,
    chain_report: Option<String>,
    launch_digest: Option<[u8; 32]>,
    secret_payload: Option<Vec<u8>>,
}

fn run_steps(plan: &Plan, t: &mut Timer<'_>) -> Result<Outcome, LaunchError> {
    let mut out = Outcome::default();
    std::fs::create_dir_all(&plan.work_dir).map_err(|source| {
        LaunchError::Io(IoError::Write {
            path: plan.work_dir.clone(),
            source,
        })
    })?;

    // The expected digest does not depend on the platform: compute it on
    // another thread while the chain is fetched and verified.
    let digest_inputs = plan.digest.clone();
    let digest_thread = std::thread::spawn(move || measure::launch_digest(&digest_inputs));

    // 1. The chain (and, for an attached VMM, the connection).
    let (mut vmm, mut q, session_paths, verified) = match &plan.attach {
        Some(a) => {
            let mut q = QmpClient::connect(&a.qmp, QMP_TIMEOUT).map_err(LaunchError::Qmp)?;
            let source = match &plan.chain {
                ChainInput::Source(s) => s.clone(),
                ChainInput::Probe | ChainInput::Attached => capabilities(
                    &mut q,
                    &format!("query-sev-capabilities on {}", a.qmp.display()),
                )?,
            };
            t.done("get chain", format!("attached to {}", a.qmp.display()));
            let (verified, v) = verify_chain(&source, plan)?;
            out.chain_report = Some(v.render());
            t.done("verify chain", format!("{} → {}", v.origin, v.trust));
            (None, q, a.session.clone(), verified)
        }
        None => {
            let source = match &plan.chain {
                ChainInput::Source(s) => {
                    t.done("get chain", "from file");
                    s.clone()
                }
                ChainInput::Probe | ChainInput::Attached => {
                    let socket = plan.work_dir.join("probe.qmp");
                    let args = sevm_args(plan, &socket, None);
                    let mut probe = VmmProcess::start(&plan.sevm, &args, socket)?;
                    let mut pq = probe.connect()?;
                    let caps = capabilities(&mut pq, "query-sev-capabilities of a probe sevm");
                    probe.stop(Some(&mut pq));
                    t.done("get chain", "query-sev-capabilities of a probe sevm -S");
                    caps?
                }
            };
            let (verified, v) = verify_chain(&source, plan)?;
            out.chain_report = Some(v.render());
            t.done("verify chain", format!("{} → {}", v.origin, v.trust));
            let (maj, min) = verified.pdh_api_version();
            check_api("check policy", ApiVersion::new(maj, min), plan.policy)?;
            let paths = SessionPaths::new(&plan.work_dir, "vm").map_err(LaunchError::Session)?;
            let files = session::create(&verified, plan.policy.bits(), &mut rand_core::OsRng);
            files
                .write_to(&paths, io::OutputSet::scratch())
                .map_err(LaunchError::Session)?;
            t.done(
                "create session",
                format!(
                    "policy {}, GODH and session in {}",
                    plan.policy,
                    plan.work_dir.display()
                ),
            );
            let socket = plan.work_dir.join("qmp.sock");
            let args = sevm_args(plan, &socket, Some(&paths));
            let mut vmm = VmmProcess::start(&plan.sevm, &args, socket)?;
            let q = vmm.connect()?;
            t.done(
                "start VMM",
                format!("{} -S (LAUNCH_START … LAUNCH_MEASURE)", plan.sevm.display()),
            );
            (Some(vmm), q, paths, verified)
        }
    };
    let _ = &verified;

    // From here on, a refusal quits the VMM we started.
    let result = (|| -> Result<(), LaunchError> {
        let keys = session::read_keys(&session_paths).map_err(LaunchError::Session)?;
        let info = query_sev(&mut q)?;
        if info.policy != plan.policy.bits() {
            return Err(refused(
                "check VMM",
                format!(
                    "policy changed by the host: the VMM launched the guest with policy {}, the owner's is {}",
                    Policy::from_bits(info.policy),
                    plan.policy
                ),
            ));
        }
        check_api(
            "check VMM",
            ApiVersion::new(info.fw.api_major, info.fw.api_minor),
            plan.policy,
        )?;
        match (&plan.device, info.emulated) {
            (Device::Hardware(_), Some(true)) => {
                return Err(refused(
                    "check VMM",
                    "the VMM reports an EMULATED platform, expected hardware",
                ))
            }
            (Device::Emulated(_), Some(false)) => {
                return Err(refused(
                    "check VMM",
                    "the VMM reports hardware, expected the emulated platform",
                ))
            }
            _ => {}
        }
        if info.state != "launch-secret" {
            return Err(refused(
                "check VMM",
                format!("the guest is in state {}, not launch-secret", info.state),
            ));
        }
        t.done(
            "check VMM",
            format!(
                "query-sev: {}, policy {}, state {}{}",
                info.fw,
                Policy::from_bits(info.policy),
                info.state,
                if info.emulated == Some(true) {
                    ", EMULATED platform"
                } else {
                    ""
                }
            ),
        );

        let digest = digest_thread
            .join()
            .map_err(|_| LaunchError::Measure(MeasureError::Thread))?
            .map_err(LaunchError::Measure)?;
        out.launch_digest = Some(digest.launch_digest);
        t.done(
            "expected digest",
            format!(
                "{} ({} bytes of firmware{})",
                hex::encode(digest.launch_digest),
                digest.input_bytes,
                if digest.hashes.is_some() {
                    " + kernel hashes"
                } else {
                    ""
                }
            ),
        );

        let m = q
            .execute("query-sev-launch-measure", None)
            .map_err(LaunchError::Qmp)?;
        let data = qmp::str_member(&m, "data").map_err(LaunchError::Qmp)?;
        let blob = io::b64_decode("query-sev-launch-measure data", data)?;
        let blob =
            MeasureBlob::decode(&blob).map_err(|e| refused("verify measurement", e.to_string()))?;
        measure::verify_blob(
            &keys.tik,
            info.fw,
            plan.policy.bits(),
            &digest.launch_digest,
            &blob,
        )
        .map_err(|mismatch| refused("verify measurement", mismatch.to_string()))?;
        t.done(
            "verify measurement",
            format!(
                "{} matches (mnonce {})",
                hex::encode(blob.measurement),
                hex::encode(blob.mnonce)
            ),
        );

        if !plan.secrets.is_empty() {
            let mut iv = [0u8; 16];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut iv);
            let packet = secret::build(
                &plan.secrets,
                &keys,
                &blob.measurement,
                &iv,
                plan.secret_limit,
            )
            .map_err(LaunchError::Secret)?;
            q.execute(
                "sev-inject-launch-secret",
                Some(json!({
                    "packet-header": io::b64_encode(&packet.header),
                    "secret": io::b64_encode(&packet.payload),
                })),
            )
            .map_err(LaunchError::Qmp)?;
            out.secret_payload = Some(packet.payload.clone());
            t.done(
                "inject secret",
                format!(
                    "{} secret(s), {} bytes encrypted under the TEK (LAUNCH_SECRET)",
                    plan.secrets.len(),
                    packet.payload.len()
                ),
            );
            if plan.host_view {
                out.host_view = Some(host_view(&mut q));
                t.done("host view", "read the secret page as the host sees it");
            }
        }

        q.execute("cont", None).map_err(LaunchError::Qmp)?;
        t.done("cont", "LAUNCH_FINISH; the guest runs");
        Ok(())
    })();

    match (result, vmm.as_mut()) {
        (Err(e), Some(v)) => {
            v.stop(Some(&mut q));
            Err(e)
        }
        (Err(e), None) => Err(e),
        (Ok(()), Some(v)) if plan.wait_for_guest => {
            let status = v.wait(plan.guest_timeout)?;
            out.exit_code = status.code();
            out.guest_output = text(&v.stdout);
            t.done("guest exit", format!("the VMM exited with {status}"));
            Ok(out)
        }
        (Ok(()), _) => Ok(out),
    }
}

/// The secret area as the host reads it through the VMM (QEMU's `xp`
/// monitor command): on an SEV guest, ciphertext.
fn host_view(q: &mut QmpClient) -> Result<String, String> {
    match q.execute(
        "human-monitor-command",
        Some(json!({"command-line": "xp /64xb 0x810000"})),
    ) {
        Ok(v) => v
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("unexpected reply {v}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Where the `sevm` binary is: `$SEVM_BIN`, else beside this executable,
/// else `sevm` on PATH.
pub fn find_sevm() -> PathBuf {
    if let Some(p) = std::env::var_os("SEVM_BIN") {
        return PathBuf::from(p);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            for candidate in [dir.join("sevm"), dir.join("../sevm")] {
                if candidate.is_file() {
                    return candidate;
                }
            }
        }
    }
    PathBuf::from("sevm")
}

/// A classic hex dump (16 bytes a line, offset from `base`).
pub fn hexdump(bytes: &[u8], base: u64) -> String {
    let mut out = String::new();
    for (i, line) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = line
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!(
            "{:08x}  {:<47}  |{ascii}|\n",
            base + 16 * i as u64,
            hex.join(" ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hexdump_layout() {
        let d = hexdump(b"ABCDEFGHIJKLMNOPqr\x00", 0x810000);
        let lines: Vec<&str> = d.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("00810000  41 42 43"), "{d}");
        assert!(lines[0].ends_with("|ABCDEFGHIJKLMNOP|"), "{d}");
        assert!(lines[1].starts_with("00810010  71 72 00"), "{d}");
        assert!(lines[1].ends_with("|qr.|"), "{d}");
    }

    #[test]
    fn sevm_arguments_follow_qemu() {
        let plan = Plan {
            sevm: "sevm".into(),
            device: Device::Emulated("/p".into()),
            chain: ChainInput::Probe,
            ca: CaOptions::default(),
            trust: Trust::Amd(sev_proto::cert::AmdGeneration::Milan),
            policy: Policy::from_bits(3),
            digest: DigestInputs {
                firmware: "fw.fd".into(),
                kernel: Some("k".into()),
                cmdline: Some("a b".into()),
                ..DigestInputs::default()
            },
            memory_mib: 16,
            secrets: vec![],
            secret_limit: 3072,
            work_dir: "/w".into(),
            attach: None,
            extra_args: vec!["-smp".into(), "1".into()],
            host_view: false,
            wait_for_guest: true,
            guest_timeout: Duration::from_secs(1),
        };
        let paths = SessionPaths::new(Path::new("/w"), "vm").unwrap();
        let a = sevm_args(&plan, Path::new("/w/q.sock"), Some(&paths)).join(" ");
        assert!(a.contains("-object sev-guest,id=sev0,policy=0x3,sev-device=emulated:/p,dh-cert-file=/w/vm_godh.b64,session-file=/w/vm_session.b64,kernel-hashes=on"), "{a}");
        assert!(a.contains("-bios fw.fd -m 16"), "{a}");
        assert!(
            a.contains("-S -qmp unix:/w/q.sock,server=on,wait=off"),
            "{a}"
        );
        assert!(a.contains("-kernel k -append a b -smp 1"), "{a}");
        let a = sevm_args(&plan, Path::new("/w/q.sock"), None).join(" ");
        assert!(!a.contains("dh-cert-file"), "{a}");
    }
}
