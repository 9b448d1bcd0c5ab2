//! The launcher as a process: exit statuses, signals, its death, its help
//! text, and descendants of the program served too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn code(plat: &Path, program: &str, args: &[&str]) -> (Option<i32>, String) {
    let o = emulate(plat, Path::new(program), args);
    (o.status.code(), text(&o.stderr))
}

#[test]
fn exits_with_the_programs_status() {
    let tmp = tempfile::tempdir().unwrap();
    let plat = platform_copy(tmp.path());
    assert_eq!(code(&plat, "sh", &["-c", "exit 0"]).0, Some(0));
    assert_eq!(code(&plat, "sh", &["-c", "exit 7"]).0, Some(7));
    // Killed by a signal: 128 + its number, as shells report it.
    assert_eq!(code(&plat, "sh", &["-c", "kill -TERM $$"]).0, Some(143));
    // Cannot be found / run; the launcher's own failure.
    let (c, err) = code(&plat, "/nonexistent/program", &[]);
    assert_eq!(c, Some(127));
    assert!(err.contains("/nonexistent/program"), "{err}");
    let not_exec = tmp.path().join("not-exec");
    std::fs::write(&not_exec, "data").unwrap();
    assert_eq!(code(&plat, p(&not_exec), &[]).0, Some(126));
    let (c, err) = code(&tmp.path().join("none"), "true", &[]);
    assert_eq!(c, Some(125));
    assert!(
        err.contains("sev-emulate: error: cannot open the emulated platform"),
        "{err}"
    );
    assert!(err.contains("init"), "{err}");
}

#[test]
fn help_says_the_platform_is_emulated() {
    let o = output_within(Command::new(LAUNCHER).arg("--help"), DEADLINE);
    let h = ok(o, "--help");
    assert!(h.contains("EMULATED AMD Secure Processor"), "{h}");
    assert!(h.contains("--platform"), "{h}");
    let o = output_within(&mut Command::new(LAUNCHER), DEADLINE);
    assert_eq!(o.status.code(), Some(2), "no command is a usage error");
}

#[test]
fn descendants_of_the_program_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let plat = platform_copy(tmp.path());
    let tool = tool("sev-platform");
    // sh → sev-platform: the filter is inherited.
    let o = emulate(
        &plat,
        Path::new("sh"),
        &["-c", &format!("'{}' --json status && echo done", p(&tool))],
    );
    let out = ok(o, "sh -c sev-platform status");
    assert!(out.contains("\"hardware\""), "{out}");
    assert!(out.contains("done"), "{out}");
}

/// The launcher's children (from /proc), waiting up to `limit`.
fn child_of(pid: u32, limit: Duration) -> u32 {
    let start = Instant::now();
    loop {
        let c =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(c) = c.split_whitespace().next() {
            return c.parse().unwrap();
        }
        assert!(start.elapsed() < limit, "the launcher started no program");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is gone (or a zombie nobody reaped yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
    }
}

fn kill(pid: u32, sig: &str) {
    let s = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(s.success());
}

#[test]
fn signals_are_forwarded_and_the_program_dies_with_the_launcher() {
    let tmp = tempfile::tempdir().unwrap();
    let plat = platform_copy(tmp.path());
    let spawn = || {
        launcher(&plat)
            .args(["--", "sleep", "60"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    };
    let wait = |c: &mut std::process::Child| {
        let start = Instant::now();
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "no exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // SIGTERM to the launcher ends the program, whose status it reports.
    let mut l = spawn();
    let prog = child_of(l.id(), Duration::from_secs(30));
    kill(l.id(), "-TERM");
    assert_eq!(wait(&mut l).code(), Some(143));
    assert!(gone(prog));

    // The launcher killed: the program does not run on unserved.
    let mut l = spawn();
    let prog = child_of(l.id(), Duration::from_secs(30));
    assert!(!gone(prog));
    kill(l.id(), "-KILL");
    wait(&mut l);
    let start = Instant::now();
    while !gone(prog) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the program survived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn default_platform_is_sev_platforms_default() {
    let tmp = tempfile::tempdir().unwrap();
    // $XDG_STATE_HOME/sevm/platform, as `sev-platform --emulated`.
    let state = tmp.path().join("state");
    let dir = state.join("sevm");
    std::fs::create_dir_all(&dir).unwrap();
    let plat = platform_copy(&dir);
    assert_eq!(plat, dir.join("platform"));
    let o = output_within(
        Command::new(LAUNCHER).env("XDG_STATE_HOME", &state).args([
            "--",
            p(&tool("sev-platform")),
            "--json",
            "id",
        ]),
        DEADLINE,
    );
    let hw = ok(o, "sev-emulate without --platform");
    let em = ok(platform_tool(&[&emu(&plat), "--json", "id"]), "id");
    let id = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap()["id"].clone();
    assert_eq!(id(&hw), id(&em));
    // Neither XDG_STATE_HOME nor HOME: a clear error.
    let o = output_within(
        Command::new(LAUNCHER)
            .env_remove("XDG_STATE_HOME")
            .env_remove("HOME")
            .args(["--", "true"]),
        DEADLINE,
    );
    assert_eq!(o.status.code(), Some(125));
    assert!(
        text(&o.stderr).contains("neither XDG_STATE_HOME nor HOME"),
        "{}",
        text(&o.stderr)
    );
}
