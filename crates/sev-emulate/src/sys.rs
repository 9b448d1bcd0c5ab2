#![allow(unsafe_code)]

//! The system calls the launcher needs that `std` does not offer: seccomp
//! with a user-notification listener, passing a file descriptor over a
//! socket, the listener's ioctls, cross-process memory copies, pidfds and
//! signalfds. Every `unsafe` block of the crate is here.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::filter::Insn;

/// The filter program in the kernel's layout; built before `fork`, so that
/// the child only passes a pointer.
#[derive(Debug)]
pub struct Program(Vec<libc::sock_filter>);

impl Program {
    /// Converts `insns`.
    pub fn new(insns: &[Insn]) -> Self {
        Program(
            insns
                .iter()
                .map(|i| libc::sock_filter {
                    code: i.code,
                    jt: i.jt,
                    jf: i.jf,
                    k: i.k,
                })
                .collect(),
        )
    }
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// In the child, between `fork` and `exec`: asks for SIGKILL when the
/// launcher dies (the program must not run on unserved), sets `no_new_privs`, installs
/// `prog` with a new listener and sends the listener over `sock`, then
/// closes the child's copy. Async-signal-safe: system calls only, no
/// allocation.
pub fn install_filter_and_send(prog: &Program, sock: RawFd) -> io::Result<()> {
    // The launcher blocks the signals it forwards: the program starts with
    // none blocked.
    let empty = sigset(&[]);
    // SAFETY: `empty` is an initialised set; the old mask is not needed.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) }.into())?;
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.into())?;
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.0.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        filter: prog.0.as_ptr().cast_mut(),
    };
    // Once the supervisor has received a notification, only a fatal signal
    // may interrupt the waiting call (WAIT_KILLABLE_RECV, Linux 5.19):
    // otherwise a signal restarts the call while the supervisor serves it,
    // and a command with effects (LAUNCH_UPDATE_DATA extends the launch
    // digest) would be served twice. Older kernels: without the flag.
    let install = |flags: libc::c_ulong| {
        // SAFETY: `fprog` points at `prog`'s instructions, alive for the
        // call; the kernel copies them.
        check(unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                &fprog as *const libc::sock_fprog,
            )
        })
    };
    let listener = match install(
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
    ) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            install(libc::SECCOMP_FILTER_FLAG_NEW_LISTENER)
        }
        r => r,
    }?;
    let listener =
        RawFd::try_from(listener).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    let sent = send_fd(sock, listener);
    // SAFETY: `listener` is the descriptor seccomp just returned, owned here.
    unsafe { libc::close(listener) };
    sent
}

/// Room for one `SCM_RIGHTS` control message carrying one descriptor.
#[repr(C)]
union CmsgBuf {
    buf: [u8; 64],
    _align: libc::cmsghdr,
}

fn send_fd(sock: RawFd, fd: RawFd) -> io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = CmsgBuf { buf: [0; 64] };
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive
    // the sendmsg call, and the control message is written inside `cbuf`
    // (CMSG_SPACE(4) = 24 ≤ 64) through the CMSG_* helpers.
    unsafe {
        let mut msg: libc::msghdr = zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.buf.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        check(libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) as libc::c_long)?;
    }
    Ok(())
}

/// Receives one descriptor sent with `SCM_RIGHTS` (made close-on-exec).
pub fn recv_fd(sock: RawFd) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = CmsgBuf { buf: [0; 64] };
    // SAFETY: as in `send_fd`; the kernel writes at most `msg_controllen`
    // bytes into `cbuf`, and the descriptor read out of a well-formed
    // SCM_RIGHTS message is a new one owned by this process.
    unsafe {
        let mut msg: libc::msghdr = zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.buf.as_mut_ptr().cast();
        msg.msg_controllen = 64;
        let n = check(libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) as libc::c_long)?;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if n == 0
            || cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the child sent no seccomp listener",
            ));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// A connected `AF_UNIX` stream pair, both ends close-on-exec.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    check(r.into())?;
    // SAFETY: both are new descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Waits up to `timeout_ms` for events on `fds`; returns how many are ready
/// (EINTR counts as none).
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a valid array of `fds.len()` pollfds.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// One seccomp notification (`struct seccomp_notif`).
pub type Notif = libc::seccomp_notif;

/// `SECCOMP_IOCTL_NOTIF_RECV`. ENOENT means the caller went away before the
/// notification could be read.
pub fn notif_recv(listener: &OwnedFd) -> io::Result<Notif> {
    // SAFETY: an all-zero seccomp_notif is valid (and required by the
    // kernel); the ioctl writes one into it.
    unsafe {
        let mut n: Notif = zeroed();
        check(libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut n).into())?;
        Ok(n)
    }
}

/// `SECCOMP_IOCTL_NOTIF_SEND`: the system call's result (`error` negative
/// errno or 0 with `val`), or with `cont` the instruction to run the call.
pub fn notif_send(listener: &OwnedFd, id: u64, val: i64, error: i32, cont: bool) -> io::Result<()> {
    let resp = libc::seccomp_notif_resp {
        id,
        val,
        error,
        flags: if cont {
            libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32
        } else {
            0
        },
    };
    // SAFETY: `resp` is a valid response structure the kernel reads.
    let r = unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) };
    check(r.into())?;
    Ok(())
}

/// `SECCOMP_IOCTL_NOTIF_ID_VALID`: whether the caller of notification `id`
/// is still waiting (so what was read from it belongs to that call).
pub fn notif_id_valid(listener: &OwnedFd, id: u64) -> bool {
    // SAFETY: the ioctl reads the u64 behind the pointer.
    unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &id,
        ) == 0
    }
}

/// `SECCOMP_IOCTL_NOTIF_ADDFD` with `SECCOMP_ADDFD_FLAG_SEND`: installs a
/// copy of `src` in the caller (with `newfd_flags`, e.g. `O_CLOEXEC`) and
/// answers the notification with its number.
pub fn notif_addfd_send(
    listener: &OwnedFd,
    id: u64,
    src: &OwnedFd,
    newfd_flags: u32,
) -> io::Result<i32> {
    let addfd = libc::seccomp_notif_addfd {
        id,
        flags: libc::SECCOMP_ADDFD_FLAG_SEND as u32,
        srcfd: u32::try_from(src.as_raw_fd())
            .map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?,
        newfd: 0,
        newfd_flags,
    };
    // SAFETY: `addfd` is a valid structure the kernel reads.
    let n = check(
        unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_ADDFD,
                &addfd,
            )
        }
        .into(),
    )?;
    Ok(i32::try_from(n).unwrap_or(-1))
}

/// Copies up to `buf.len()` bytes at `addr` of process (thread) `pid` into
/// `buf`; returns how many were copied (short at an unmapped page).
pub fn read_process(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as usize as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`; the remote address is only
    // interpreted by the kernel, in the other process.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    Ok(usize::try_from(check(n as libc::c_long)?).unwrap_or(0))
}

/// Copies `data` to `addr` of process (thread) `pid`; returns how many
/// bytes were copied.
pub fn write_process(pid: u32, addr: u64, data: &[u8]) -> io::Result<usize> {
    let local = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as usize as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: `local` describes `data`, which the kernel only reads; the
    // remote address is interpreted in the other process.
    let n = unsafe { libc::process_vm_writev(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    Ok(usize::try_from(check(n as libc::c_long)?).unwrap_or(0))
}

/// `pidfd_open(pid)`: readable once the process has exited.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) })?;
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_getfd(pidfd, fd)`: a duplicate, in this process, of descriptor
/// `fd` of the process `pidfd` refers to (the same open file description).
pub fn pidfd_getfd(pidfd: &OwnedFd, fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only; the kernel checks that we may ptrace
    // the process (the launcher is its parent).
    let new = check(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) })?;
    let new = RawFd::try_from(new).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// `kcmp(getpid(), pid, KCMP_FILE, ours, theirs)`: whether our descriptor
/// `ours` and descriptor `theirs` of process `pid` are the same open file
/// description.
pub fn same_file(ours: &OwnedFd, pid: u32, theirs: i32) -> io::Result<bool> {
    /// `KCMP_FILE` (include/uapi/linux/kcmp.h).
    const KCMP_FILE: libc::c_long = 0;
    // SAFETY: integer arguments only.
    let r = check(unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            libc::getpid(),
            pid as libc::pid_t,
            KCMP_FILE,
            ours.as_raw_fd() as libc::c_long,
            theirs as libc::c_long,
        )
    })?;
    Ok(r == 0)
}

fn sigset(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set; sigaddset with valid numbers.
    unsafe {
        let mut set: libc::sigset_t = zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks `signals` in this thread and returns a signalfd that reads them.
/// (The child unblocks them in [`install_filter_and_send`].)
pub fn block_into_signalfd(signals: &[i32]) -> io::Result<OwnedFd> {
    let set = sigset(signals);
    // SAFETY: `set` is initialised; the old mask is not needed.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    // SAFETY: `set` is initialised.
    let fd =
        check(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) }.into())?;
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one pending signal number from a signalfd, if any.
pub fn read_signal(fd: &OwnedFd) -> Option<i32> {
    // SAFETY: an all-zero signalfd_siginfo is valid; read writes at most
    // its size into it.
    unsafe {
        let mut info: libc::signalfd_siginfo = zeroed();
        let n = libc::read(
            fd.as_raw_fd(),
            (&mut info as *mut libc::signalfd_siginfo).cast(),
            size_of::<libc::signalfd_siginfo>(),
        );
        (n == size_of::<libc::signalfd_siginfo>() as isize).then_some(info.ssi_signo as i32)
    }
}

/// Sends `signal` to process `pid`.
pub fn kill(pid: u32, signal: i32) {
    // SAFETY: integer arguments only.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

/// An anonymous memory file (close-on-exec): the placeholder behind every
/// `/dev/sev` descriptor the launcher installs.
pub fn memfd(name: &std::ffi::CStr) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid C string.
    let fd = check(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) }.into())?;
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes `command` install `prog` (with a new listener, sent over `sock`)
/// in the child between `fork` and `exec`.
pub fn install_in_child(command: &mut std::process::Command, prog: Program, sock: RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec; it only
    // makes system calls (prctl, seccomp, sendmsg, close) on memory owned
    // by the closure (`prog`, prepared before the fork), allocates nothing
    // and takes no lock, so it is async-signal-safe.
    unsafe {
        command.pre_exec(move || install_filter_and_send(&prog, sock));
    }
}

/// `fstat` of descriptor `fd` of thread `tid` (through `/proc`): its device
/// and inode, which identify a placeholder whatever its number.
pub fn fd_identity(tid: u32, fd: i32) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    if fd < 0 {
        return None;
    }
    let m = std::fs::metadata(format!("/proc/{tid}/fd/{fd}")).ok()?;
    Some((m.dev(), m.ino()))
}
