//! The state of a test's child processes, for failure messages: enough to
//! tell a hang (threads asleep in the same place, no CPU time) from
//! slowness (threads running or runnable, CPU time growing) after the fact.

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long [`process_report`] watches the CPU time of each thread.
const SAMPLE: Duration = Duration::from_millis(500);
/// A bound on the debugger's backtraces.
const GDB_BOUND: Duration = Duration::from_secs(20);
/// At most this much of the debugger's output per process.
const GDB_MAX: usize = 24 << 10;

/// `pid` and its descendants (through `/proc/PID/task/*/children`),
/// parents first.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() && all.len() < 64 {
        all.extend(children(all[i]));
        i += 1;
    }
    all
}

/// Waits at most `bound` until none of `pids` is a live process (gone, or
/// a zombie, which has closed its files and sockets already); true when
/// none is. Used after killing the launcher: its sevm dies with it
/// (PR_SET_PDEATHSIG) but a moment later, still holding its QMP socket.
pub fn all_gone(pids: &[u32], bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        let live = pids.iter().any(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|t| {
                    let close = t.rfind(')')?;
                    t[close + 1..].split_whitespace().next().map(str::to_string)
                })
                .is_some_and(|state| state != "Z" && state != "X")
        });
        if !live {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut kids = Vec::new();
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        kids.extend(
            text.split_whitespace()
                .filter_map(|k| k.parse::<u32>().ok()),
        );
    }
    kids
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|e| format!("({e})"))
}

/// A thread's name, state and CPU time (utime + stime, clock ticks).
type ThreadStat = (String, char, u64);

/// One thread's `/proc/PID/task/TID/stat`.
fn thread_stat(pid: u32, tid: u32) -> Option<ThreadStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    // After the comm: state is field 3, utime and stime fields 14 and 15.
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let state = rest.first()?.chars().next()?;
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, state, utime + stime))
}

fn threads(pid: u32) -> Vec<u32> {
    let mut tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    tids.sort_unstable();
    tids
}

/// The name of the common blocking syscalls of x86-64, and whether their
/// first argument is a file descriptor.
fn syscall_name(nr: u64) -> Option<(&'static str, bool)> {
    Some(match nr {
        0 => ("read", true),
        1 => ("write", true),
        7 => ("poll", false),
        16 => ("ioctl", true),
        17 => ("pread64", true),
        18 => ("pwrite64", true),
        23 => ("select", false),
        35 => ("nanosleep", false),
        43 => ("accept", true),
        44 => ("sendto", true),
        45 => ("recvfrom", true),
        46 => ("sendmsg", true),
        47 => ("recvmsg", true),
        61 => ("wait4", false),
        202 => ("futex", false),
        230 => ("clock_nanosleep", false),
        232 => ("epoll_wait", true),
        247 => ("waitid", false),
        270 => ("pselect6", false),
        271 => ("ppoll", false),
        281 => ("epoll_pwait", true),
        288 => ("accept4", true),
        _ => return None,
    })
}

/// `/proc/PID/task/TID/syscall` made readable: the syscall's name and, for
/// one on a file descriptor, what the descriptor is.
fn syscall(pid: u32, tid: u32) -> String {
    let text = read(&format!("/proc/{pid}/task/{tid}/syscall"));
    let mut f = text.split_whitespace();
    let Some(nr) = f.next().and_then(|n| n.parse::<u64>().ok()) else {
        // "running", or an error.
        return text;
    };
    let Some((name, on_fd)) = syscall_name(nr) else {
        return format!("syscall {nr}");
    };
    if !on_fd {
        return name.to_string();
    }
    let fd = f
        .next()
        .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .unwrap_or(u64::MAX);
    let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "?".into());
    format!("{name}(fd {fd} = {target})")
}

/// A report of `pid` and its descendants: per process its command line and
/// `/proc/PID/status` (Name, State, PPid, Threads, Seccomp, context
/// switches); per thread its name, state, CPU ticks used during a
/// half-second sample (non-zero: it runs, i.e. slow rather than hung),
/// `wchan`, current syscall and kernel stack; then each process's user
/// stacks from gdb where gdb is installed (bounded).
pub fn process_report(pid: u32) -> String {
    let pids = process_tree(pid);
    let before: Vec<Vec<(u32, Option<ThreadStat>)>> = pids
        .iter()
        .map(|&p| {
            threads(p)
                .into_iter()
                .map(|t| (t, thread_stat(p, t)))
                .collect()
        })
        .collect();
    std::thread::sleep(SAMPLE);
    let mut out = String::new();
    let uptime = read("/proc/loadavg");
    let _ = writeln!(out, "=== processes under {pid} (loadavg {uptime})");
    for (p, first) in pids.iter().zip(&before) {
        let cmdline = read(&format!("/proc/{p}/cmdline")).replace('\0', " ");
        let _ = writeln!(out, "--- pid {p}: {cmdline}");
        let status = read(&format!("/proc/{p}/status"));
        for line in status.lines() {
            let keep = [
                "Name:",
                "State:",
                "PPid:",
                "Threads:",
                "Seccomp:",
                "SigPnd:",
                "ShdPnd:",
                "voluntary_ctxt_switches:",
                "nonvoluntary_ctxt_switches:",
            ];
            if keep.iter().any(|k| line.starts_with(k)) {
                let _ = writeln!(out, "  {line}");
            }
        }
        for (tid, stat) in first {
            let now = thread_stat(*p, *tid);
            let (comm, state, ticks) = match (&now, stat) {
                (Some((c, s, t1)), Some((_, _, t0))) => (c.clone(), *s, format!("+{}", t1 - t0)),
                (Some((c, s, _)), None) => (c.clone(), *s, "new".into()),
                (None, _) => ("(gone)".into(), '-', "-".into()),
            };
            let wchan = read(&format!("/proc/{p}/task/{tid}/wchan"));
            let _ = writeln!(
                out,
                "  tid {tid} {comm:?} state {state} cpu {ticks} ticks/{SAMPLE:?} wchan {wchan} \
                 in {}",
                syscall(*p, *tid)
            );
            let stack = read(&format!("/proc/{p}/task/{tid}/stack"));
            for frame in stack.lines().take(12) {
                let _ = writeln!(out, "      {frame}");
            }
        }
    }
    for p in &pids {
        if let Some(bt) = gdb_backtraces(*p) {
            let _ = writeln!(out, "--- gdb backtraces of pid {p}\n{bt}");
        }
    }
    out
}

/// `thread apply all bt` of `pid` from gdb (None when gdb is not
/// installed); bounded by [`GDB_BOUND`] and [`GDB_MAX`].
fn gdb_backtraces(pid: u32) -> Option<String> {
    let mut child = Command::new("gdb")
        .args(["-nx", "-batch", "-p", &pid.to_string()])
        .args(["-ex", "set pagination off", "-ex", "thread apply all bt 10"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut text = Vec::new();
        let _ = (&mut stdout).take(4 << 20).read_to_end(&mut text);
        text
    });
    let deadline = Instant::now() + GDB_BOUND;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Some(format!("(gdb did not finish within {GDB_BOUND:?})"));
            }
        }
    }
    let text = reader.join().unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    // Only the threads and frames, not gdb's chatter.
    let mut bt = String::new();
    for line in text.lines() {
        if line.starts_with("Thread ") || line.starts_with('#') {
            bt.push_str(line);
            bt.push('\n');
        }
        if bt.len() > GDB_MAX {
            bt.push_str("(cut)\n");
            break;
        }
    }
    Some(bt)
}
