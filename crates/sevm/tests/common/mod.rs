//! Shared helpers of sevm's integration tests: run the real binary, talk
//! QMP to it, wait for its log lines (event driven: no sleeps).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Upper bound for any single wait (a guard against hangs, not a timing).
pub const WAIT: Duration = Duration::from_secs(60);

pub const SEVM: &str = env!("CARGO_BIN_EXE_sevm");

/// Writes the demo guest image into `dir` and returns its path.
pub fn demo_image(dir: &Path) -> PathBuf {
    let path = dir.join("demo.fd");
    let st = Command::new(SEVM)
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
}

impl Sevm {
    /// Starts sevm with `args` and `RUST_LOG=sevm=info` (so the QMP server
    /// announces when it listens).
    pub fn spawn<I, S>(args: I) -> Sevm
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut child = Command::new(SEVM)
            .args(args)
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
        }
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
                Err(RecvTimeoutError::Timeout) => panic!("no stderr line with {needle:?} in time"),
            }
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

    /// Waits for the process to exit (bounded): first for its stderr to
    /// close, then reaps it.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("sevm did not exit in time"),
            }
        }
        self.child.wait().unwrap()
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal QMP client.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    pub greeting: Value,
    pub events: Vec<Value>,
}

impl Qmp {
    pub fn connect(sock: &Path) -> Qmp {
        let s = UnixStream::connect(sock).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let writer = s.try_clone().unwrap();
        let mut q = Qmp {
            reader: BufReader::new(s),
            writer,
            greeting: Value::Null,
            events: Vec::new(),
        };
        q.greeting = q.read();
        assert!(q.greeting.get("QMP").is_some(), "{}", q.greeting);
        q
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        assert!(n > 0, "QMP connection closed");
        serde_json::from_str(&line).unwrap()
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
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
        let mut req = json!({ "execute": name });
        if !args.is_null() {
            req["arguments"] = args;
        }
        self.send_raw(format!("{req}\n").as_bytes());
        self.reply()
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

/// Asserts a process ended with exit code `code` and did not panic.
pub fn assert_exit(st: ExitStatus, code: i32, stderr: &str) {
    assert!(!stderr.contains("panicked"), "sevm panicked: {stderr}");
    assert_eq!(st.code(), Some(code), "stderr: {stderr}");
}
