//! Snapshot/restore and live migration of SEV guests through the firmware's
//! SEND_* / RECEIVE_* commands (docs/protocol/migration.md; docs/architecture.md#migration).
//!
//! * **Source** ([`source`]): QMP `migrate` to `file:PATH`, `tcp:HOST:PORT`
//!   or `unix:PATH`. SEND_START with the target platform's PDH and chain
//!   (migration parameters `sev-pdh`, `sev-plat-cert`, `sev-amd-cert`, base64,
//!   the names of QEMU's SEV migration patches; without them a `file:`
//!   snapshot targets this platform's own PDH and chain). The source
//!   firmware checks the chain per policy (NOSEND, DOMAIN, SEV, API minimum).
//!   Every guest page (RAM and the firmware image: all of it is private
//!   memory) goes out as a SEND_UPDATE_DATA packet; while the guest runs and
//!   KVM dirty logging is available this is pre-copy (pass 1 sends every
//!   page, later passes the pages the guest dirtied meanwhile) until the
//!   dirty set fits the downtime limit, then stop-and-copy of the last dirty
//!   pages, the vCPU registers and the device state. On any failure (target
//!   gone, connection dropped, target refused a packet, `migrate_cancel`)
//!   the source issues SEND_CANCEL and resumes the guest; a later migration
//!   can start afresh. On success SEND_FINISH; the source stays paused
//!   (QEMU's postmigrate) and refuses `cont` (its guest now lives elsewhere).
//! * **Target** ([`target`]): `sevm ... -incoming file:PATH | tcp:HOST:PORT |
//!   unix:PATH` reads the stream, RECEIVE_START with the source's PDH,
//!   session and policy, RECEIVE_UPDATE_DATA for every packet, and only after
//!   the whole stream verified RECEIVE_FINISH, restores the vCPU and device
//!   state and runs the guest. Any error ends the target process (exit 1)
//!   before the guest ever runs.
//!
//! # Stream authentication
//!
//! Page contents are protected by the firmware: AES-128-CTR under the
//! session's TEK and a MAC under its TIK, which (in the emulated firmware)
//! also binds the packet's sequence number and guest-physical address, so a
//! dropped, replayed, reordered or re-addressed packet fails RECEIVE with
//! BAD_MEASUREMENT. The **end of the stream** is authenticated by the
//! firmware as well: after the vCPU and device state the source seals one
//! last, 16-byte packet (SEND_UPDATE_DATA of guest bytes 0..16, which the
//! target writes back unchanged). Every other packet is a full 4 KiB page,
//! and GUEST_LENGTH/TRANS_LENGTH are inside the MAC, so nobody without the
//! TIK can make a 16-byte packet: a stream cut anywhere lacks it and the
//! target refuses to finish. The end record's packet count and SHA-256
//! digest (over everything except the MAC-protected transport bytes) catch
//! accidental corruption of the unauthenticated parts. The vCPU and device
//! state of a non-ES guest are not protected by the firmware (nor are they
//! on SEV hardware, where the hypervisor owns them).
//!
//! # Replay
//!
//! A stream (or snapshot file) replayed into a platform other than the one
//! its session was made for fails at RECEIVE_START (the session's keys are
//! wrapped for that platform's PDH). Replayed into the intended platform a
//! second time, it restores a second copy of the guest as of the snapshot:
//! SEV firmware keeps no record of consumed sessions, so this is a clone,
//! exactly like restoring the same snapshot file twice.

pub mod endpoint;
pub mod handover;
pub mod parameters;
pub mod source;
pub mod stream;
pub mod target;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sevm_qmp::response::{MigrationInfo, MigrationStats, MigrationStatus};
use sevm_qmp::QmpEvent;

use crate::sev::{MigrationCommands, PlatformManagement, SevError};

use crate::control::VmControl;
pub use endpoint::Endpoint;
pub use parameters::Parameters;
pub use stream::StreamError;

/// Guest page size of every packet but the end packet.
pub const PAGE: u64 = 4096;

/// Why a migration, snapshot or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The firmware (or the SEV host interface) refused a command.
    #[error(transparent)]
    Sev(#[from] SevError),
    /// The stream is malformed, truncated or unreadable.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The URI cannot be used.
    #[error("migration URI {uri:?}: {problem}")]
    Uri {
        /// The URI.
        uri: String,
        /// What is wrong.
        problem: String,
    },
    /// A parameter (e.g. `sev-pdh`) is unusable.
    #[error("migration parameter {name}: {problem}")]
    Parameter {
        /// The parameter.
        name: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// Opening, writing or renaming a file or socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The stream does not fit this VM (size, vCPUs, policy, records).
    #[error("incoming migration: {0}")]
    Mismatch(String),
    /// The target refused the stream.
    #[error("the migration target refused the stream: {0}")]
    TargetRefused(String),
    /// The machine could not be paused, read or restored.
    #[error("{0}")]
    Machine(String),
    /// `migrate_cancel`.
    #[error("migration cancelled")]
    Cancelled,
    /// A wait on the peer exceeded `x-peer-timeout`.
    #[error("the migration peer did not answer: {what} took longer than {ms} ms (x-peer-timeout)")]
    PeerTimeout {
        /// What was awaited.
        what: &'static str,
        /// The timeout.
        ms: u64,
    },
    /// COMMIT was sent but the target's confirmation did not arrive: the
    /// target may run the guest, so this copy must not (see [`handover`]).
    #[error(
        "the hand-over is unconfirmed: {0}; the target may be running the guest, so this copy \
         stays paused and will not run again"
    )]
    Unconfirmed(String),
}

impl MigrationError {
    /// Turns a socket timeout hidden in an I/O error into [`MigrationError::PeerTimeout`].
    fn with_timeout(self, what: &'static str, timeout: Duration) -> Self {
        let timed_out = match &self {
            MigrationError::Io { source, .. } => handover::is_timeout(source),
            MigrationError::Stream(StreamError::Io(source)) => handover::is_timeout(source),
            _ => false,
        };
        if timed_out {
            MigrationError::PeerTimeout {
                what,
                ms: timeout.as_millis() as u64,
            }
        } else {
            self
        }
    }
}

/// How one migration is stopped from outside: a flag checked between
/// pages, hooks that interrupt blocked I/O (they shut the socket down) and
/// sleeps (`max-bandwidth`) that end early. From the hand-over's point of no
/// return on ([`Cancel::begin_commit`]) only a forced cancel (quit) acts.
#[derive(Default)]
pub struct Cancel {
    flag: AtomicBool,
    inner: Mutex<CancelInner>,
    cv: Condvar,
}

#[derive(Default)]
struct CancelInner {
    cancelled: bool,
    committing: bool,
    hooks: Vec<Box<dyn Fn() + Send>>,
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel")
            .field("cancelled", &self.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Cancel {
    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Requests cancellation and runs the hooks. Refused (false) once the
    /// hand-over is committing, unless `force`.
    pub fn cancel(&self, force: bool) -> bool {
        let hooks = {
            let mut g = lock(&self.inner);
            if g.committing && !force {
                return false;
            }
            g.cancelled = true;
            self.flag.store(true, Ordering::SeqCst);
            self.cv.notify_all();
            std::mem::take(&mut g.hooks)
        };
        for h in &hooks {
            h();
        }
        true
    }

    /// Registers `hook` to run on cancellation (at once if already
    /// cancelled).
    pub fn on_cancel(&self, hook: Box<dyn Fn() + Send>) {
        let mut g = lock(&self.inner);
        if g.cancelled {
            drop(g);
            hook();
        } else {
            g.hooks.push(hook);
        }
    }

    /// Sleeps `d` unless cancelled first; false when cancelled.
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut g = lock(&self.inner);
        while !g.cancelled {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            g = self
                .cv
                .wait_timeout(g, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        false
    }

    /// The hand-over's point of no return: false if cancellation came
    /// first; afterwards only a forced cancel acts.
    pub fn begin_commit(&self) -> bool {
        let mut g = lock(&self.inner);
        if g.cancelled {
            return false;
        }
        g.committing = true;
        true
    }
}

/// A connected stream socket of either family (the source's connection,
/// the target's accepted one).
pub(crate) trait StreamSocket:
    std::io::Read + std::io::Write + Send + Sync + Sized + 'static
{
    /// Blocking, every read and write bounded by `t` (`x-peer-timeout`).
    fn set_peer_timeout(&self, t: Duration) -> std::io::Result<()>;
    /// Another handle on the same socket.
    fn duplicate(&self) -> std::io::Result<Self>;
    /// `shutdown(2)`, which wakes a thread blocked on the socket.
    fn shut(&self, how: std::net::Shutdown);
}

macro_rules! stream_socket {
    ($($t:ty),*) => {$(
        impl StreamSocket for $t {
            fn set_peer_timeout(&self, t: Duration) -> std::io::Result<()> {
                self.set_nonblocking(false)?;
                self.set_read_timeout(Some(t))?;
                self.set_write_timeout(Some(t))
            }
            fn duplicate(&self) -> std::io::Result<Self> {
                self.try_clone()
            }
            fn shut(&self, how: std::net::Shutdown) {
                let _ = self.shutdown(how);
            }
        }
    )*};
}

stream_socket!(std::net::TcpStream, std::os::unix::net::UnixStream);

/// The SEV side of the VM being migrated.
#[derive(Clone, Debug)]
pub struct SevParts {
    /// The guest's migration commands.
    pub backend: Arc<dyn MigrationCommands>,
    /// The platform (for this platform's PDH and chain).
    pub platform: Arc<dyn PlatformManagement>,
}

/// Live counters of one migration (source or target).
#[derive(Debug, Default)]
pub struct Progress {
    /// Stream bytes written or read.
    pub transferred: AtomicU64,
    /// Page packets sent or received.
    pub pages: AtomicU64,
    /// Bytes of the current pass not yet sent.
    pub remaining: AtomicU64,
    /// Total guest memory bytes.
    pub total: AtomicU64,
    /// Dirty bitmap syncs (passes after the first).
    pub dirty_syncs: AtomicU64,
    /// Current pass.
    pub pass: AtomicU64,
    /// Bytes sent while the guest was stopped.
    pub downtime_bytes: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A progress line on stderr for a person watching (only when stderr is a
/// terminal), at most five times a second.
#[derive(Debug)]
pub struct ProgressDisplay {
    what: &'static str,
    tty: bool,
    start: Instant,
    last: Instant,
}

impl ProgressDisplay {
    /// A display for `what` ("migrate", "incoming").
    pub fn new(what: &'static str) -> Self {
        let tty = std::io::stderr().is_terminal();
        let now = Instant::now();
        ProgressDisplay {
            what,
            tty,
            start: now,
            last: now,
        }
    }

    /// Redraws the line if due.
    pub fn tick(&mut self, p: &Progress) {
        if !self.tty || self.last.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last = Instant::now();
        let sent = p.transferred.load(Ordering::Relaxed);
        let secs = self.start.elapsed().as_secs_f64().max(1e-6);
        eprint!(
            "\rsevm: {}: pass {}, {:.1} MiB transferred, {:.1} MiB remaining, {:.0} MB/s   ",
            self.what,
            p.pass.load(Ordering::Relaxed),
            sent as f64 / 1048576.0,
            p.remaining.load(Ordering::Relaxed) as f64 / 1048576.0,
            sent as f64 / secs / 1e6
        );
    }

    /// Ends the line.
    pub fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// Statistics of a finished source migration.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    /// Milliseconds from start to end.
    pub total_ms: u64,
    /// Milliseconds the guest was stopped (stop-and-copy until the target's
    /// acknowledgement or the snapshot's rename).
    pub downtime_ms: u64,
    /// Stream bytes.
    pub bytes: u64,
    /// Whether pre-copy with dirty logging was used.
    pub precopy: bool,
}

#[derive(Default)]
struct State {
    status: Option<MigrationStatus>,
    progress: Option<Arc<Progress>>,
    started: Option<Instant>,
    summary: Option<Summary>,
    error: Option<String>,
    sent: bool,
    cancel: Option<Arc<Cancel>>,
    /// Cleared by `stop` during a migration: a failed migration then leaves
    /// the guest paused instead of resuming it.
    resume: Option<Arc<AtomicBool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl State {
    /// A new migration starts (`setup`): fresh counters and cancellation.
    fn begin(&mut self, resume: Option<Arc<AtomicBool>>) -> (Arc<Progress>, Arc<Cancel>) {
        let progress = Arc::new(Progress::default());
        let cancel = Arc::new(Cancel::default());
        self.status = Some(MigrationStatus::Setup);
        self.progress = Some(Arc::clone(&progress));
        self.started = Some(Instant::now());
        self.summary = None;
        self.error = None;
        self.cancel = Some(Arc::clone(&cancel));
        self.resume = resume;
        (progress, cancel)
    }

    /// Keeps the started thread, or records that it could not start.
    fn spawned(
        &mut self,
        handle: std::io::Result<std::thread::JoinHandle<()>>,
        what: &str,
    ) -> Result<(), MigrationError> {
        match handle {
            Ok(h) => {
                self.thread = Some(h);
                Ok(())
            }
            Err(source) => {
                let e = MigrationError::Io {
                    what: what.into(),
                    source,
                };
                self.status = Some(MigrationStatus::Failed);
                self.error = Some(e.to_string());
                self.cancel = None;
                self.resume = None;
                Err(e)
            }
        }
    }
}

/// Whether a status belongs to a migration that has not ended.
fn in_progress(status: Option<MigrationStatus>) -> bool {
    matches!(
        status,
        Some(
            MigrationStatus::Setup
                | MigrationStatus::Active
                | MigrationStatus::Device
                | MigrationStatus::Cancelling
        )
    )
}

/// The work of an incoming migration thread.
pub type IncomingJob =
    Box<dyn FnOnce(&target::Control<'_>) -> Result<(), MigrationError> + Send + 'static>;

/// The source-side migration state of one VM (QMP `migrate`,
/// `migrate_cancel`, `query-migrate`, `migrate-set-parameters`) and the
/// run-state rules it imposes (README "Run-state rules during migration").
#[derive(Default)]
pub struct Migrations {
    state: Mutex<State>,
    params: Mutex<Parameters>,
}

impl std::fmt::Debug for Migrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migrations")
            .field("status", &lock(&self.state).status)
            .finish_non_exhaustive()
    }
}

/// Why a run-state command is refused while migrating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// A migration or snapshot is in progress and owns the run state.
    InProgress(MigrationStatus),
    /// The guest was handed over (or possibly handed over): it must never
    /// run here again.
    Sent,
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::InProgress(s) => write!(
                f,
                "a migration is in progress (status {}); the guest's run state belongs to it \
                 until it ends (migrate_cancel to stop it)",
                s.as_str()
            ),
            Hold::Sent => {
                f.write_str("the guest was migrated away (SEND_FINISH): this copy cannot run again")
            }
        }
    }
}

impl Migrations {
    /// `migrate-set-parameters`: checks, then merges the given members.
    pub fn set_parameters(&self, p: Parameters) -> Result<(), MigrationError> {
        p.check()?;
        lock(&self.params).merge(p);
        Ok(())
    }

    /// `query-migrate-parameters`.
    pub fn parameters(&self) -> Parameters {
        lock(&self.params).clone()
    }

    /// The bound of every wait on a migration peer (`x-peer-timeout`).
    pub fn peer_timeout(&self) -> Duration {
        lock(&self.params).peer_timeout()
    }

    /// Whether a completed migration sent the guest away (the source must
    /// not run it again).
    pub fn guest_was_sent(&self) -> bool {
        lock(&self.state).sent
    }

    /// Why the guest may not be resumed now (`cont`, a debugger's
    /// continue), or `None`.
    pub fn hold(&self) -> Option<Hold> {
        let st = lock(&self.state);
        if st.sent {
            Some(Hold::Sent)
        } else if in_progress(st.status) {
            st.status.map(Hold::InProgress)
        } else {
            None
        }
    }

    /// Whether the source is in stop-and-copy or the hand-over (QEMU's
    /// `finish-migrate` run state).
    pub fn finishing(&self) -> bool {
        lock(&self.state).status == Some(MigrationStatus::Device)
    }

    /// `stop` while a migration runs: if it fails, the guest stays paused.
    pub fn note_stop(&self) {
        if let Some(r) = &lock(&self.state).resume {
            r.store(false, Ordering::SeqCst);
        }
    }

    /// `migrate`: starts a migration thread; errors that are known before
    /// anything starts (bad URI, one already running) are returned.
    pub fn start(
        self: &Arc<Self>,
        uri: &str,
        vm: Arc<dyn VmControl>,
        sev: SevParts,
    ) -> Result<(), MigrationError> {
        let endpoint = Endpoint::parse(uri)?;
        let old = {
            let mut st = lock(&self.state);
            if in_progress(st.status) {
                return Err(MigrationError::Uri {
                    uri: uri.into(),
                    problem: "There's a migration process in progress".into(),
                });
            }
            if st.sent {
                return Err(MigrationError::Uri {
                    uri: uri.into(),
                    problem: "the guest was already migrated away from this VMM".into(),
                });
            }
            st.thread.take()
        };
        // The previous thread has reported its end (its status is final) and
        // is about to return; it is joined without holding the state lock,
        // which its last steps take.
        if let Some(t) = old {
            let _ = t.join();
        }
        let mut st = lock(&self.state);
        if in_progress(st.status) || st.sent {
            return Err(MigrationError::Uri {
                uri: uri.into(),
                problem: "There's a migration process in progress".into(),
            });
        }
        let params = self.parameters();
        let resume = Arc::new(AtomicBool::new(true));
        let (progress, cancel) = st.begin(Some(Arc::clone(&resume)));
        vm.emit_event(&QmpEvent::Migration {
            status: MigrationStatus::Setup,
        });
        let me = Arc::clone(self);
        let handle = std::thread::Builder::new()
            .name("migration".into())
            .spawn(move || {
                let job = source::Job {
                    vm: vm.as_ref(),
                    sev: &sev,
                    endpoint,
                    params: &params,
                    progress: &progress,
                    cancel: &cancel,
                    resume: &resume,
                    on_status: &|s| me.set_status(vm.as_ref(), s),
                };
                let result = source::run(&job);
                me.finish(vm.as_ref(), result, &cancel);
            });
        st.spawned(handle, "cannot start the migration thread")
    }

    /// Runs an incoming migration on its own thread (`-incoming`,
    /// `migrate-incoming`): `job` receives the guest; its outcome becomes
    /// the status `query-migrate` reports on the target.
    pub fn start_incoming(
        self: &Arc<Self>,
        vm: Arc<dyn VmControl>,
        job: IncomingJob,
    ) -> Result<(), MigrationError> {
        let mut st = lock(&self.state);
        if in_progress(st.status) {
            return Err(MigrationError::Machine(
                "a migration is already in progress".into(),
            ));
        }
        let (progress, cancel) = st.begin(None);
        vm.emit_event(&QmpEvent::Migration {
            status: MigrationStatus::Setup,
        });
        let timeout = self.peer_timeout();
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("incoming".into())
            .spawn(move || {
                let on_active = || me.set_status(vm.as_ref(), MigrationStatus::Active);
                let ctl = target::Control {
                    cancel: &cancel,
                    progress: &progress,
                    timeout,
                    on_active: &on_active,
                };
                let result = job(&ctl);
                let status = {
                    let mut st = lock(&me.state);
                    let status = match result {
                        Ok(()) => MigrationStatus::Completed,
                        Err(e) => {
                            st.error = Some(e.to_string());
                            if cancel.is_cancelled() {
                                MigrationStatus::Cancelled
                            } else {
                                MigrationStatus::Failed
                            }
                        }
                    };
                    st.status = Some(status);
                    st.cancel = None;
                    status
                };
                vm.emit_event(&QmpEvent::Migration { status });
            });
        st.spawned(spawned, "cannot start the incoming migration thread")
    }

    fn set_status(&self, vm: &dyn VmControl, status: MigrationStatus) {
        {
            let mut st = lock(&self.state);
            // A cancel request stays visible until the thread has unwound.
            if st.status == Some(MigrationStatus::Cancelling) {
                return;
            }
            st.status = Some(status);
        }
        vm.emit_event(&QmpEvent::Migration { status });
    }

    fn finish(&self, vm: &dyn VmControl, result: Result<Summary, MigrationError>, cancel: &Cancel) {
        let status = {
            let mut st = lock(&self.state);
            let status = match result {
                Ok(summary) => {
                    eprintln!(
                        "sevm: migration completed: {:.1} MiB in {} ms ({:.0} MB/s), downtime {} ms{}",
                        summary.bytes as f64 / 1048576.0,
                        summary.total_ms,
                        summary.bytes as f64 / (summary.total_ms.max(1) as f64 / 1000.0) / 1e6,
                        summary.downtime_ms,
                        if summary.precopy {
                            ""
                        } else {
                            " (stop-and-copy only)"
                        }
                    );
                    st.summary = Some(summary);
                    st.sent = true;
                    MigrationStatus::Completed
                }
                Err(e @ MigrationError::Unconfirmed(_)) => {
                    eprintln!("sevm: migration failed: {e}");
                    st.error = Some(e.to_string());
                    st.sent = true;
                    MigrationStatus::Failed
                }
                Err(_) if cancel.is_cancelled() => {
                    eprintln!("sevm: migration cancelled; the guest keeps running here");
                    MigrationStatus::Cancelled
                }
                Err(e) => {
                    eprintln!("sevm: migration failed: {e}; the guest keeps running here");
                    st.error = Some(e.to_string());
                    MigrationStatus::Failed
                }
            };
            st.status = Some(status);
            st.cancel = None;
            st.resume = None;
            status
        };
        vm.emit_event(&QmpEvent::Migration { status });
    }

    /// `migrate_cancel`: stops a running migration, interrupting blocked
    /// I/O (a no-op when none runs, as in QEMU). Refused once the hand-over
    /// has passed its point of no return.
    pub fn cancel(&self, vm: &dyn VmControl) -> Result<(), MigrationError> {
        let mut st = lock(&self.state);
        let Some(c) = st.cancel.clone() else {
            return Ok(());
        };
        if !c.cancel(false) {
            return Err(MigrationError::Machine(
                "the migration is handing the guest over to the target and can no longer be \
                 cancelled"
                    .into(),
            ));
        }
        if st.status == Some(MigrationStatus::Cancelling) {
            return Ok(());
        }
        st.status = Some(MigrationStatus::Cancelling);
        drop(st);
        vm.emit_event(&QmpEvent::Migration {
            status: MigrationStatus::Cancelling,
        });
        Ok(())
    }

    /// The VMM is ending (quit, a signal, the guest's exit): cancels any
    /// migration (even in its hand-over) and waits at most `bound` for its
    /// thread, which removes a partial snapshot file and closes the
    /// connection. Returns false if the thread did not end in time.
    pub fn shutdown(&self, bound: Duration) -> bool {
        let thread = {
            let mut st = lock(&self.state);
            if let Some(c) = &st.cancel {
                c.cancel(true);
            }
            st.thread.take()
        };
        let Some(t) = thread else { return true };
        let deadline = Instant::now() + bound;
        while !t.is_finished() {
            if Instant::now() >= deadline {
                log::error!("the migration thread did not end within {bound:?}");
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = t.join();
        true
    }

    /// `query-migrate`.
    pub fn info(&self) -> MigrationInfo {
        let st = lock(&self.state);
        let Some(status) = st.status else {
            return MigrationInfo::default();
        };
        let elapsed_ms = st
            .started
            .map(|s| s.elapsed().as_millis() as i64)
            .unwrap_or(0);
        let total_ms = st.summary.map_or(elapsed_ms, |s| s.total_ms as i64);
        let ram = st.progress.as_ref().map(|p| stats(p, total_ms));
        MigrationInfo {
            status: Some(status),
            ram,
            total_time: Some(total_ms),
            downtime: st.summary.map(|s| s.downtime_ms as i64),
            expected_downtime: None,
            setup_time: Some(0),
            error_desc: st.error.clone(),
        }
    }
}

/// `query-migrate`'s `ram` member from live counters.
pub(crate) fn stats(p: &Progress, total_ms: i64) -> MigrationStats {
    let transferred = p.transferred.load(Ordering::Relaxed);
    let pages = p.pages.load(Ordering::Relaxed);
    let secs = (total_ms.max(1) as f64) / 1000.0;
    let downtime_bytes = p.downtime_bytes.load(Ordering::Relaxed);
    MigrationStats {
        transferred,
        remaining: p.remaining.load(Ordering::Relaxed),
        total: p.total.load(Ordering::Relaxed),
        normal: pages,
        normal_bytes: pages * PAGE,
        mbps: transferred as f64 * 8.0 / secs / 1e6,
        dirty_sync_count: p.dirty_syncs.load(Ordering::Relaxed),
        page_size: PAGE,
        pages_per_second: (pages as f64 / secs) as u64,
        precopy_bytes: transferred.saturating_sub(downtime_bytes),
        downtime_bytes,
        ..MigrationStats::default()
    }
}

impl Drop for Migrations {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = &st.cancel {
            c.cancel(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The run-state rules of every status (README "Run-state rules during
    /// migration"): what holds the guest, what a second `migrate` and a
    /// `migrate_cancel` get.
    #[test]
    fn every_status_has_defined_rules() {
        use MigrationStatus as S;
        for status in [
            None,
            Some(S::Setup),
            Some(S::Active),
            Some(S::Device),
            Some(S::Cancelling),
            Some(S::Completed),
            Some(S::Failed),
            Some(S::Cancelled),
        ] {
            for sent in [false, true] {
                let m = Migrations::default();
                {
                    let mut st = lock(&m.state);
                    st.status = status;
                    st.sent = sent;
                }
                let running = in_progress(status);
                let hold = m.hold();
                match (sent, running) {
                    (true, _) => assert_eq!(hold, Some(Hold::Sent), "{status:?}"),
                    (false, true) => {
                        assert!(matches!(hold, Some(Hold::InProgress(_))), "{status:?}")
                    }
                    (false, false) => assert_eq!(hold, None, "{status:?}"),
                }
                assert_eq!(m.finishing(), status == Some(S::Device));
                // No thread runs here: nothing to cancel, nothing to wait for.
                assert!(m.shutdown(Duration::from_millis(1)));
            }
        }
        assert!(
            in_progress(Some(S::Cancelling)),
            "a second migrate must wait"
        );
    }

    #[test]
    fn cancel_interrupts_and_is_refused_after_the_point_of_no_return() {
        let c = Arc::new(Cancel::default());
        let hit = Arc::new(AtomicBool::new(false));
        let h = Arc::clone(&hit);
        c.on_cancel(Box::new(move || h.store(true, Ordering::SeqCst)));
        // A sleep ends as soon as the cancel comes.
        let c2 = Arc::clone(&c);
        let t = std::thread::spawn(move || c2.sleep(Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(20));
        assert!(c.cancel(false));
        assert!(!t.join().unwrap(), "the sleep was not interrupted");
        assert!(hit.load(Ordering::SeqCst), "the hook did not run");
        assert!(!c.begin_commit(), "committed after a cancel");
        // After the point of no return only a forced cancel acts.
        let c = Cancel::default();
        assert!(c.sleep(Duration::from_millis(1)));
        assert!(c.begin_commit());
        assert!(!c.cancel(false));
        assert!(!c.is_cancelled());
        assert!(c.cancel(true));
        assert!(c.is_cancelled());
        // A hook registered after the cancel runs at once.
        let ran = Arc::new(AtomicBool::new(false));
        let r = Arc::clone(&ran);
        c.on_cancel(Box::new(move || r.store(true, Ordering::SeqCst)));
        assert!(ran.load(Ordering::SeqCst));
    }

    #[test]
    fn parameters_merge_and_check_ranges() {
        let m = Migrations::default();
        m.set_parameters(Parameters {
            max_bandwidth: Some(5),
            ..Default::default()
        })
        .unwrap();
        m.set_parameters(Parameters {
            sev_pdh: Some(vec![0; 3]),
            ..Default::default()
        })
        .unwrap();
        let p = m.parameters();
        assert_eq!(p.max_bandwidth, Some(5));
        assert_eq!(p.sev_pdh.as_deref(), Some(&[0u8; 3][..]));
        for bad in [0, 99, 3_600_001] {
            let e = m
                .set_parameters(Parameters {
                    x_peer_timeout: Some(bad),
                    ..Default::default()
                })
                .unwrap_err();
            assert!(e.to_string().contains("x-peer-timeout"), "{e}");
        }
        m.set_parameters(Parameters {
            x_peer_timeout: Some(1500),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(m.peer_timeout(), Duration::from_millis(1500));
        assert_eq!(m.info(), MigrationInfo::default());
        assert!(!m.guest_was_sent());
    }
}
