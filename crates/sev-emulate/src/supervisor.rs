//! The supervisor: starts the program under the [filter](crate::filter) and
//! answers its notifications until it exits
//! (docs/guide/sev-emulate.md#how-it-works).
//!
//! * `open`/`openat` of `/dev/sev` get a placeholder descriptor (a memfd
//!   named `sev`, one per open, installed with `SECCOMP_IOCTL_NOTIF_ADDFD`);
//!   the supervisor remembers its inode with the open's access mode. Other
//!   paths run in the kernel (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`).
//! * `ioctl` on a descriptor whose inode is a placeholder is served by
//!   [`devsev::issue_cmd`]; on any other descriptor each [`Handler`] is asked
//!   in turn, and when none takes it the kernel answers.
//!
//! Notifications are served one at a time (the driver serialises its
//! commands too). A caller that goes away mid-call (killed thread or
//! process) only makes the answer fail with ENOENT, which is ignored.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sev_psp::Platform;

use crate::devsev::{self, Errno, Fault, UserMemory};
use crate::devsevguest::{SevGuestDevice, DEV_SEV_GUEST};
use crate::filter::{self, SEV_ISSUE_CMD};
use crate::sys;

/// The device node the supervisor emulates.
pub const DEV_SEV: &str = "/dev/sev";

/// Most `/dev/sev` opens the supervisor tracks in one launch; further opens
/// fail with ENFILE (docs/guide/sev-emulate.md#limits).
pub const MAX_OPEN_DEVICES: usize = 65_536;

/// Longest copy from or to the program for one buffer (the largest the
/// served commands use is far smaller).
pub const MAX_COPY: usize = 1 << 20;

/// `sizeof(struct open_how)` (`OPEN_HOW_SIZE_VER0`).
const OPEN_HOW_LEN: u64 = 24;

/// Largest `struct open_how` the kernel accepts.
const PAGE_LEN: u64 = 4096;

/// `PATH_MAX`, terminating NUL included.
const PATH_MAX: usize = 4096;

/// How long one poll of the supervisor's loop waits at most.
const POLL_MS: i32 = 500;

/// How long the supervisor waits for the started program to hand over its
/// seccomp listener.
const LISTENER_TIMEOUT_MS: i32 = 10_000;

/// How long a killed program may take to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// Signals the launcher forwards to the program.
const FORWARDED: [i32; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// What a notified system call gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Let the kernel run the call as if it had not been intercepted.
    Continue,
    /// The call returns this (non-negative) value.
    Value(i64),
    /// The call fails with this (positive) errno.
    Errno(Errno),
}

impl From<Result<(), Errno>> for Answer {
    fn from(r: Result<(), Errno>) -> Self {
        match r {
            Ok(()) => Answer::Value(0),
            Err(e) => Answer::Errno(e),
        }
    }
}

/// An emulated `/dev/sev` open, as the driver sees its `struct file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SevOpen {
    /// Opened for writing (`FMODE_WRITE`): the state-changing commands need it.
    pub writable: bool,
    /// Opened with `O_PATH`: every ioctl fails with EBADF.
    pub path_only: bool,
}

/// The system call being served: who made it, and its memory.
#[derive(Debug)]
pub struct Call<'a> {
    tid: u32,
    mem: ProcessMemory<'a>,
    devices: &'a Devices,
}

impl Call<'_> {
    /// The calling thread's id (as `/proc` names it).
    pub fn tid(&self) -> u32 {
        self.tid
    }

    /// The caller's memory, copied as the kernel's `copy_from_user` /
    /// `copy_to_user` do.
    pub fn mem(&self) -> &dyn UserMemory {
        &self.mem
    }

    /// The emulated `/dev/sev` behind the caller's descriptor `fd`, if it is
    /// one (e.g. the `sev_fd` of `KVM_SEV_INIT`).
    pub fn sev_device(&self, fd: i32) -> Option<SevOpen> {
        self.devices.lookup(self.tid, fd)
    }

    /// What the caller's descriptor `fd` refers to (the `/proc/TID/fd/FD`
    /// link, e.g. `anon_inode:kvm-vm`), if it is open.
    pub fn fd_target(&self, fd: i32) -> Option<PathBuf> {
        if fd < 0 {
            return None;
        }
        std::fs::read_link(format!("/proc/{}/fd/{fd}", self.tid)).ok()
    }
}

/// A module serving `ioctl`s on descriptors that are not emulated `/dev/sev`
/// opens (KVM's SEV ioctls on a VM descriptor, for one). The request must be
/// one the [filter](crate::filter::ROUTED_IOCTLS) routes.
pub trait Handler: std::fmt::Debug {
    /// `ioctl(fd, request, arg)` from `call`: [`Answer::Continue`] when this
    /// handler does not serve it.
    fn ioctl(&mut self, call: &Call<'_>, fd: i32, request: u32, arg: u64) -> Answer;
}

/// The placeholders handed out, by (device, inode). The supervisor keeps no
/// descriptor of its own: the memfd inode numbers come from the kernel's
/// increasing inode counter, so an inode handed out is not reused by
/// another memfd within a launch.
#[derive(Debug, Default)]
struct Devices {
    open: HashMap<(u64, u64), SevOpen>,
    /// `/dev/sev-guest` opens (whether with `O_PATH`), served by
    /// [`crate::devsevguest`].
    guest: HashMap<(u64, u64), bool>,
}

impl Devices {
    fn lookup(&self, tid: u32, fd: i32) -> Option<SevOpen> {
        let key = sys::fd_identity(tid, fd)?;
        self.open.get(&key).copied()
    }

    /// Whether `fd` is an emulated `/dev/sev-guest` (and opened `O_PATH`).
    fn lookup_guest(&self, tid: u32, fd: i32) -> Option<bool> {
        if self.guest.is_empty() {
            return None;
        }
        let key = sys::fd_identity(tid, fd)?;
        self.guest.get(&key).copied()
    }

    fn len(&self) -> usize {
        self.open.len() + self.guest.len()
    }
}

/// The memory of the thread behind one notification. Every copy is checked
/// against the notification's validity (so that a thread id reused by
/// another process is never read or written).
#[derive(Debug)]
struct ProcessMemory<'a> {
    listener: &'a OwnedFd,
    id: u64,
    tid: u32,
}

impl UserMemory for ProcessMemory<'_> {
    fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, Fault> {
        if len > MAX_COPY || addr.checked_add(len as u64).is_none() {
            return Err(Fault);
        }
        let mut buf = vec![0u8; len];
        if len > 0 {
            let n = sys::read_process(self.tid, addr, &mut buf).map_err(|_| Fault)?;
            if n != len {
                return Err(Fault);
            }
        }
        // What was read belongs to the caller only if it is still waiting.
        if !sys::notif_id_valid(self.listener, self.id) {
            return Err(Fault);
        }
        Ok(buf)
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Fault> {
        if data.len() > MAX_COPY || addr.checked_add(data.len() as u64).is_none() {
            return Err(Fault);
        }
        if data.is_empty() {
            return Ok(());
        }
        if !sys::notif_id_valid(self.listener, self.id) {
            return Err(Fault);
        }
        let n = sys::write_process(self.tid, addr, data).map_err(|_| Fault)?;
        if n == data.len() {
            Ok(())
        } else {
            Err(Fault)
        }
    }
}

/// Why the launcher could not run the program to its end.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The program could not be started (`program` names it).
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: io::Error,
    },
    /// The supervisor itself failed (the program was killed).
    #[error("supervisor: {what}: {source}")]
    Supervisor {
        /// What it was doing.
        what: &'static str,
        /// Why.
        source: io::Error,
    },
}

fn sup(what: &'static str) -> impl FnOnce(io::Error) -> LaunchError {
    move |source| LaunchError::Supervisor { what, source }
}

/// The emulated devices and the handlers of one launch.
#[derive(Debug)]
pub struct Supervisor {
    platform: Arc<Platform>,
    handlers: Vec<Box<dyn Handler>>,
    devices: Devices,
    /// The emulated SNP guest's driver behind `/dev/sev-guest`, if any.
    sev_guest: Option<SevGuestDevice>,
    /// Notifications answered so far (for the log).
    served: u64,
    /// Changes to the program's environment: set (`Some`) or removed.
    env: Vec<(OsString, Option<OsString>)>,
}

impl Supervisor {
    /// A supervisor serving `/dev/sev` from `platform`.
    pub fn new(platform: Arc<Platform>) -> Self {
        Supervisor {
            platform,
            handlers: Vec::new(),
            devices: Devices::default(),
            sev_guest: None,
            served: 0,
            env: Vec::new(),
        }
    }

    /// The emulated platform.
    pub fn platform(&self) -> &Arc<Platform> {
        &self.platform
    }

    /// Serves `/dev/sev-guest` with `device` (docs/guide/sev-emulate.md#dev-sev-guest);
    /// without it, opens of that path go to the kernel.
    pub fn set_sev_guest(&mut self, device: SevGuestDevice) {
        self.sev_guest = Some(device);
    }

    /// Sets (`Some`) or removes (`None`) variables of the program's
    /// environment (`--emulated-kds`, docs/guide/sev-emulate.md#kds).
    pub fn set_env(&mut self, changes: Vec<(OsString, Option<OsString>)>) {
        self.env.extend(changes);
    }

    /// Adds a handler for ioctls on other descriptors (asked after the
    /// ones added before).
    pub fn add_handler(&mut self, handler: Box<dyn Handler>) {
        self.handlers.push(handler);
    }

    /// Runs `program` with `args` under the filter, serves it until it exits
    /// and returns its exit status. Signals the launcher receives (INT, TERM,
    /// HUP, QUIT, USR1, USR2) are forwarded to it; if the supervisor fails,
    /// the program is killed and the error returned.
    pub fn run(mut self, program: &OsString, args: &[OsString]) -> Result<ExitStatus, LaunchError> {
        // Blocked before the program starts (std resets the child's mask).
        let sigfd = sys::block_into_signalfd(&FORWARDED).map_err(sup("signalfd"))?;
        let (ours, theirs) = sys::socketpair().map_err(sup("socketpair"))?;
        let mut command = Command::new(program);
        command.args(args);
        for (name, value) in &self.env {
            match value {
                Some(v) => command.env(name, v),
                None => command.env_remove(name),
            };
        }
        sys::install_in_child(
            &mut command,
            sys::Program::new(&filter::program()),
            theirs.as_raw_fd(),
        );
        let mut child = command.spawn().map_err(|source| LaunchError::Spawn {
            program: program.to_string_lossy().into_owned(),
            source,
        })?;
        drop(theirs);
        let result = self.supervise(&mut child, &ours, &sigfd);
        if result.is_err() {
            kill_and_reap(&mut child);
        }
        result
    }

    fn supervise(
        &mut self,
        child: &mut Child,
        sock: &OwnedFd,
        sigfd: &OwnedFd,
    ) -> Result<ExitStatus, LaunchError> {
        let mut pfd = [libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if sys::poll(&mut pfd, LISTENER_TIMEOUT_MS).map_err(sup("waiting for the listener"))? == 0 {
            return Err(LaunchError::Supervisor {
                what: "waiting for the listener",
                source: io::Error::from(io::ErrorKind::TimedOut),
            });
        }
        let listener = sys::recv_fd(sock.as_raw_fd()).map_err(sup("receiving the listener"))?;
        let pidfd = sys::pidfd_open(child.id()).map_err(sup("pidfd_open"))?;
        let mut listening = true;
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: if listening { listener.as_raw_fd() } else { -1 },
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: pidfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: sigfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            sys::poll(&mut fds, POLL_MS).map_err(sup("poll"))?;
            if fds[2].revents & libc::POLLIN != 0 {
                while let Some(s) = sys::read_signal(sigfd) {
                    log::debug!("forwarding signal {s}");
                    sys::kill(child.id(), s);
                }
            }
            if fds[0].revents & libc::POLLIN != 0 {
                self.serve_one(&listener)?;
            } else if fds[0].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                // No task runs under the filter any more.
                listening = false;
            }
            if fds[1].revents & libc::POLLIN != 0 {
                if let Some(status) = child.try_wait().map_err(sup("wait"))? {
                    log::debug!("program exited ({status}); {} calls served", self.served);
                    return Ok(status);
                }
            }
        }
    }

    /// Receives and answers one notification.
    fn serve_one(&mut self, listener: &OwnedFd) -> Result<(), LaunchError> {
        let n = match sys::notif_recv(listener) {
            Ok(n) => n,
            // The caller went away (or a signal interrupted the wait).
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EINTR)) => return Ok(()),
            Err(e) => return Err(sup("SECCOMP_IOCTL_NOTIF_RECV")(e)),
        };
        self.served += 1;
        let call = Call {
            tid: n.pid,
            mem: ProcessMemory {
                listener,
                id: n.id,
                tid: n.pid,
            },
            devices: &self.devices,
        };
        let nr = libc::c_long::from(n.data.nr);
        let a = n.data.args;
        let answer = match nr {
            libc::SYS_open => {
                return self.on_open(listener, n.id, n.pid, None, a[0], a[1]);
            }
            libc::SYS_openat => {
                return self.on_open(listener, n.id, n.pid, Some(a[0] as i32), a[1], a[2]);
            }
            libc::SYS_openat2 => {
                // struct open_how: u64 flags, u64 mode, u64 resolve. A size
                // the kernel refuses, or an unreadable one: its answer.
                let how = (OPEN_HOW_LEN..=PAGE_LEN)
                    .contains(&a[3])
                    .then(|| call.mem.read(a[2], OPEN_HOW_LEN as usize).ok())
                    .flatten();
                match how {
                    Some(h) => {
                        let flags = h
                            .get(..8)
                            .and_then(|b| b.try_into().ok())
                            .map_or(0, u64::from_le_bytes);
                        return self.on_open(listener, n.id, n.pid, Some(a[0] as i32), a[1], flags);
                    }
                    None => Answer::Continue,
                }
            }
            // The kernel reads fd as an int and the request as an unsigned int.
            libc::SYS_ioctl => match (
                self.sev_guest.as_mut(),
                call.devices.lookup_guest(n.pid, a[0] as i32),
            ) {
                (_, Some(true)) => Answer::Errno(libc::EBADF),
                (Some(dev), Some(false)) => dev.ioctl(call.mem(), a[1] as u32, a[2]).into(),
                _ => on_ioctl(
                    &self.platform,
                    &mut self.handlers,
                    &call,
                    a[0] as i32,
                    a[1] as u32,
                    a[2],
                ),
            },
            _ => Answer::Continue,
        };
        respond(listener, n.id, answer)
    }

    /// `open(path, flags)` (`dirfd` None) or `openat(dirfd, path, flags)`
    /// (`openat2` with its `open_how.flags`).
    fn on_open(
        &mut self,
        listener: &OwnedFd,
        id: u64,
        tid: u32,
        dirfd: Option<i32>,
        path_addr: u64,
        flags: u64,
    ) -> Result<(), LaunchError> {
        let flags = flags as i32;
        let Some(path) = read_path(tid, path_addr) else {
            return respond(listener, id, Answer::Continue);
        };
        let Some(abs) = absolute(tid, dirfd, &path) else {
            return respond(listener, id, Answer::Continue);
        };
        // The path and the directories read belong to this call only if the
        // caller still waits.
        let guest = self.sev_guest.is_some() && abs == Path::new(DEV_SEV_GUEST);
        if !sys::notif_id_valid(listener, id) || (abs != Path::new(DEV_SEV) && !guest) {
            return respond(listener, id, Answer::Continue);
        }
        let refused = if flags & libc::O_CREAT != 0 && flags & libc::O_EXCL != 0 {
            Some(libc::EEXIST)
        } else if flags & libc::O_DIRECTORY != 0 {
            Some(libc::ENOTDIR)
        } else if self.devices.len() >= MAX_OPEN_DEVICES {
            Some(libc::ENFILE)
        } else {
            None
        };
        if let Some(e) = refused {
            return respond(listener, id, Answer::Errno(e));
        }
        let acc = flags & libc::O_ACCMODE;
        let dev = SevOpen {
            writable: acc == libc::O_WRONLY || acc == libc::O_RDWR,
            path_only: flags & libc::O_PATH != 0,
        };
        // A placeholder that cannot be made: the caller's open fails as
        // the kernel's would when out of file structures.
        let name = if guest { c"sev-guest" } else { c"sev" };
        let placeholder = sys::memfd(name).and_then(|fd| {
            let meta = File::from(fd.try_clone()?).metadata()?;
            Ok((fd, (meta.dev(), meta.ino())))
        });
        let (memfd, key) = match placeholder {
            Ok(p) => p,
            Err(e) => {
                log::warn!("cannot make a placeholder: {e}");
                return respond(listener, id, Answer::Errno(libc::ENFILE));
            }
        };
        let cloexec = if flags & libc::O_CLOEXEC != 0 {
            libc::O_CLOEXEC as u32
        } else {
            0
        };
        match sys::notif_addfd_send(listener, id, &memfd, cloexec) {
            Ok(fd) if guest => {
                log::debug!("thread {tid}: {DEV_SEV_GUEST} opened as fd {fd}");
                self.devices.guest.insert(key, dev.path_only);
                Ok(())
            }
            Ok(fd) => {
                log::debug!("thread {tid}: {DEV_SEV} opened as fd {fd} ({dev:?})");
                self.devices.open.insert(key, dev);
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            // The caller's table is full (EMFILE) or the like: its answer.
            Err(e) => respond(
                listener,
                id,
                Answer::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
            ),
        }
    }
}

fn on_ioctl(
    platform: &Platform,
    handlers: &mut [Box<dyn Handler>],
    call: &Call<'_>,
    fd: i32,
    request: u32,
    arg: u64,
) -> Answer {
    if let Some(dev) = call.sev_device(fd) {
        if dev.path_only {
            return Answer::Errno(libc::EBADF);
        }
        if request != SEV_ISSUE_CMD {
            // sev_ioctl: any other request is EINVAL.
            return Answer::Errno(libc::EINVAL);
        }
        return devsev::issue_cmd(platform, call.mem(), arg, dev.writable).into();
    }
    for h in handlers.iter_mut() {
        match h.ioctl(call, fd, request, arg) {
            Answer::Continue => continue,
            a => return a,
        }
    }
    Answer::Continue
}

fn respond(listener: &OwnedFd, id: u64, answer: Answer) -> Result<(), LaunchError> {
    let r = match answer {
        Answer::Continue => sys::notif_send(listener, id, 0, 0, true),
        Answer::Value(v) => sys::notif_send(listener, id, v, 0, false),
        Answer::Errno(e) => sys::notif_send(listener, id, 0, -e, false),
    };
    match r {
        Ok(()) => Ok(()),
        // The caller went away while it was served.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(sup("SECCOMP_IOCTL_NOTIF_SEND")(e)),
    }
}

/// Reads the NUL-terminated path at `addr` of thread `tid`, page by page
/// (so that a string ending just before an unmapped page is read whole).
/// None when it cannot be read or is longer than `PATH_MAX`: the kernel
/// then gives its own answer.
fn read_path(tid: u32, addr: u64) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    const PAGE: u64 = 4096;
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < PATH_MAX {
        let chunk = usize::try_from(PAGE - at % PAGE)
            .ok()?
            .min(PATH_MAX - out.len());
        let mut buf = vec![0u8; chunk];
        let n = sys::read_process(tid, at, &mut buf).ok()?;
        if n == 0 {
            return None;
        }
        if let Some(end) = buf[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Some(PathBuf::from(OsString::from_vec(out)));
        }
        out.extend_from_slice(&buf[..n]);
        at = at.checked_add(n as u64)?;
    }
    None
}

/// `path` made absolute against the caller's working directory or `dirfd`
/// and normalised lexically (`.`, `..`, repeated slashes).
fn absolute(tid: u32, dirfd: Option<i32>, path: &Path) -> Option<PathBuf> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        let base = match dirfd {
            None | Some(libc::AT_FDCWD) => std::fs::read_link(format!("/proc/{tid}/cwd")).ok()?,
            Some(fd) if fd >= 0 => std::fs::read_link(format!("/proc/{tid}/fd/{fd}")).ok()?,
            Some(_) => return None,
        };
        base.join(path)
    };
    Some(normalise(&joined))
}

fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Kills the program and reaps it, waiting a bounded time.
fn kill_and_reap(child: &mut Child) {
    sys::kill(child.id(), libc::SIGKILL);
    let deadline = Instant::now() + REAP_TIMEOUT;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    log::warn!("the program {} did not exit after SIGKILL", child.id());
}

/// The launcher's exit code for the program's `status`: its exit code, or
/// 128 + the signal that ended it, as shells report it
/// (docs/protocol/choices.md#u78).
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(1),
        (None, Some(s)) => u8::try_from((128 + s) & 0xff).unwrap_or(1),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_lexically() {
        assert_eq!(normalise(Path::new("/dev/sev")), Path::new(DEV_SEV));
        assert_eq!(
            normalise(Path::new("/dev/../dev//./sev")),
            Path::new(DEV_SEV)
        );
        assert_eq!(normalise(Path::new("/../../dev/sev")), Path::new(DEV_SEV));
        assert_ne!(normalise(Path::new("/dev/sev-guest")), Path::new(DEV_SEV));
        assert_ne!(normalise(Path::new("/dev/sev/..")), Path::new(DEV_SEV));
    }

    #[test]
    fn relative_paths_resolve_against_the_callers_directory() {
        let me = std::process::id();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            absolute(me, None, Path::new("a/../b")).unwrap(),
            normalise(&cwd.join("b"))
        );
        let dev = File::open("/dev").unwrap();
        let fd = dev.as_raw_fd();
        assert_eq!(
            absolute(me, Some(fd), Path::new("sev")).unwrap(),
            Path::new(DEV_SEV)
        );
        assert_eq!(absolute(me, Some(-5), Path::new("sev")), None);
        // Absolute paths ignore dirfd, as openat does.
        assert_eq!(
            absolute(me, Some(-5), Path::new("/dev/sev")).unwrap(),
            Path::new(DEV_SEV)
        );
    }

    #[test]
    fn paths_are_read_across_pages_and_bounded() {
        let me = std::process::id();
        // A path straddling a page boundary.
        let mut buf = vec![b'x'; 3 * 4096];
        let base = buf.as_ptr() as u64;
        let start = (base / 4096 + 1) * 4096 - 3;
        let off = (start - base) as usize;
        buf[off..off + 9].copy_from_slice(b"/dev/sev\0");
        assert_eq!(read_path(me, start).unwrap(), Path::new(DEV_SEV));
        // No NUL within PATH_MAX: not read.
        let long = vec![b'a'; 2 * PATH_MAX];
        assert_eq!(read_path(me, long.as_ptr() as u64), None);
        // Unmapped.
        assert_eq!(read_path(me, 8), None);
    }

    /// What `run` does to the program when the supervisor fails.
    #[test]
    fn a_failed_supervisor_kills_and_reaps_the_program() {
        let mut child = Command::new("sleep").arg("60").spawn().unwrap();
        let start = Instant::now();
        kill_and_reap(&mut child);
        assert!(start.elapsed() < REAP_TIMEOUT);
        let status = child.try_wait().unwrap().expect("reaped");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(exit_code(status), 137);
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGKILL)), 137);
    }
}
