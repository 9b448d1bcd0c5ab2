//! The server with a dummy handler, through real unix sockets.
//!
//! No sleeps: every step waits for a reply the server must send. A read
//! timeout on the test client only turns a server bug into a failure
//! instead of a hang.

use super::*;
use crate::framing::MAX_MESSAGE_SIZE;
use crate::response::{RunState, ShutdownCause, StatusInfo};
use std::io::{BufRead, BufReader};

/// Records commands; `stop` emits STOP; `query-sev` fails; HMP "panic"
/// panics.
#[derive(Default)]
struct Dummy {
    seen: Mutex<Vec<QmpCommand>>,
    events: OnceLock<EventSender>,
}

impl QmpHandler for Dummy {
    fn handle(&self, command: QmpCommand) -> Result<Value, QmpError> {
        lock(&self.seen).push(command.clone());
        match command {
            QmpCommand::QueryStatus => response::to_value(&StatusInfo::new(RunState::Prelaunch)),
            QmpCommand::Stop => {
                if let Some(ev) = self.events.get() {
                    ev.emit(&QmpEvent::Stop);
                }
                Ok(json!({}))
            }
            QmpCommand::QuerySev => Err(QmpError::generic("SEV is not enabled")),
            QmpCommand::HumanMonitorCommand { command_line, .. } if command_line == "panic" => {
                panic!("dummy handler panics on request")
            }
            QmpCommand::HumanMonitorCommand { command_line, .. } => {
                Ok(Value::String(format!("ran {command_line}")))
            }
            _ => Ok(json!({})),
        }
    }
}

struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    fn connect(path: &Path) -> Client {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client {
            writer: s.try_clone().unwrap(),
            reader: BufReader::new(s),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// One line, parsed; `None` at EOF.
    fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        if n == 0 {
            return None;
        }
        assert!(line.ends_with('\n'), "unterminated line {line:?}");
        Some(serde_json::from_str(&line).unwrap())
    }

    fn cmd(&mut self, v: Value) -> Value {
        self.send(v.to_string().as_bytes());
        self.recv().expect("reply")
    }

    fn greet_and_negotiate(&mut self) {
        let g = self.recv().expect("greeting");
        assert!(g["QMP"]["version"]["qemu"]["major"].is_u64(), "{g}");
        assert_eq!(
            self.cmd(json!({"execute": "qmp_capabilities"})),
            json!({"return": {}})
        );
    }
}

fn start() -> (tempfile::TempDir, Arc<Dummy>, QmpServer) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let dummy = Arc::new(Dummy::default());
    let server = QmpServer::bind(&path, dummy.clone()).unwrap();
    let _ = dummy.events.set(server.events());
    (dir, dummy, server)
}

fn error_of(v: &Value) -> (&str, &str) {
    (
        v["error"]["class"].as_str().unwrap_or_default(),
        v["error"]["desc"].as_str().unwrap_or_default(),
    )
}

#[test]
fn greeting_negotiation_commands_errors_events() {
    let (_dir, dummy, server) = start();
    let mut c = Client::connect(server.path());

    // Greeting as QEMU: version and the oob capability.
    let g = c.recv().unwrap();
    assert_eq!(g["QMP"]["capabilities"], json!(["oob"]));
    assert_eq!(
        g["QMP"]["version"],
        serde_json::to_value(VersionInfo::current()).unwrap()
    );

    // Before negotiation: QEMU's message, the id echoed; the handler never
    // sees the command.
    let r = c.cmd(json!({"execute": "query-status", "id": "early"}));
    assert_eq!(
        error_of(&r),
        (
            "CommandNotFound",
            "Expecting capabilities negotiation with 'qmp_capabilities'"
        )
    );
    assert_eq!(r["id"], "early");
    // An event emitted now is not delivered (QEMU sends none before
    // negotiation); the next line is the capabilities reply.
    server.events().emit(&QmpEvent::Resume);
    let r =
        c.cmd(json!({"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}, "id": 1}));
    assert_eq!(r, json!({"return": {}, "id": 1}));
    // A second negotiation is refused as in QEMU.
    let r = c.cmd(json!({"execute": "qmp_capabilities"}));
    assert_eq!(
        error_of(&r),
        (
            "CommandNotFound",
            "Capabilities negotiation is already complete, command ignored"
        )
    );

    // A command through the handler.
    let r = c.cmd(json!({"execute": "query-status", "id": {"n": 2}}));
    assert_eq!(
        r,
        json!({"return": {"running": false, "singlestep": false, "status": "prelaunch"}, "id": {"n": 2}})
    );
    // Server-answered commands.
    let r = c.cmd(json!({"execute": "query-version"}));
    assert_eq!(
        r["return"]["package"],
        format!("sevm-{}", env!("CARGO_PKG_VERSION"))
    );
    let r = c.cmd(json!({"execute": "query-commands"}));
    let names: Vec<&str> = r["return"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, COMMAND_NAMES);

    // Handler errors, parse errors, unknown commands.
    let r = c.cmd(json!({"execute": "query-sev", "id": 5}));
    assert_eq!(
        r,
        json!({"error": {"class": "GenericError", "desc": "SEV is not enabled"}, "id": 5})
    );
    let r = c.cmd(json!({"execute": "sev-inject-launch-secret", "arguments": {"secret": "s"}}));
    assert_eq!(
        error_of(&r),
        ("GenericError", "Parameter 'packet-header' is missing")
    );
    let r = c.cmd(json!({"execute": "nope"}));
    assert_eq!(
        error_of(&r),
        ("CommandNotFound", "The command nope has not been found")
    );
    // exec-oob with oob enabled: recognised, but no command allows it.
    let r = c.cmd(json!({"exec-oob": "query-status", "id": "o"}));
    assert_eq!(
        error_of(&r),
        (
            "GenericError",
            "The command query-status does not support OOB"
        )
    );
    assert_eq!(r["id"], "o");

    // An event emitted by the handler during `stop` precedes the reply.
    c.send(br#"{"execute": "stop"}"#);
    let ev = c.recv().unwrap();
    assert_eq!(ev["event"], "STOP");
    assert!(ev.get("data").is_none());
    assert!(ev["timestamp"]["seconds"].is_u64());
    assert!(ev["timestamp"]["microseconds"].is_u64());
    assert_eq!(c.recv().unwrap(), json!({"return": {}}));
    // An event from another thread.
    let events = server.events();
    thread::spawn(move || {
        events.emit(&QmpEvent::Shutdown {
            guest: false,
            reason: ShutdownCause::HostQmpQuit,
        })
    })
    .join()
    .unwrap();
    let ev = c.recv().unwrap();
    assert_eq!(ev["event"], "SHUTDOWN");
    assert_eq!(
        ev["data"],
        json!({"guest": false, "reason": "host-qmp-quit"})
    );

    // A string return value.
    let r = c.cmd(
        json!({"execute": "human-monitor-command", "arguments": {"command-line": "info status"}}),
    );
    assert_eq!(r, json!({"return": "ran info status"}));

    let seen = lock(&dummy.seen).clone();
    assert_eq!(
        seen.iter().map(QmpCommand::name).collect::<Vec<_>>(),
        vec!["query-status", "query-sev", "stop", "human-monitor-command"]
    );
}

#[test]
fn requests_without_newlines_split_and_batched() {
    let (_dir, _dummy, server) = start();
    let mut c = Client::connect(server.path());
    c.greet_and_negotiate();
    // Two requests in one write, no separators.
    c.send(br#"{"execute":"query-status","id":1}{"execute":"cont","id":2}"#);
    assert_eq!(c.recv().unwrap()["id"], 1);
    assert_eq!(c.recv().unwrap()["id"], 2);
    // One request in byte-sized writes.
    for b in br#"{"execute": "cont", "id": "slow"}"#.iter() {
        c.send(&[*b]);
    }
    assert_eq!(c.recv().unwrap(), json!({"return": {}, "id": "slow"}));
}

#[test]
fn garbage_and_oversized_input_do_not_bring_the_server_down() {
    let (_dir, dummy, server) = start();
    let mut c = Client::connect(server.path());
    c.greet_and_negotiate();

    c.send(b"@");
    assert_eq!(
        error_of(&c.recv().unwrap()),
        ("GenericError", "JSON parse error, stray '@'")
    );
    c.send(b"{\"execute\": }");
    let r = c.recv().unwrap();
    let (class, desc) = error_of(&r);
    assert_eq!(class, "GenericError");
    assert!(desc.starts_with("JSON parse error, "), "{desc}");
    c.send(b"[1, 2]");
    assert_eq!(
        error_of(&c.recv().unwrap()).1,
        "QMP input must be a JSON object"
    );
    c.send(b"\x00\x01\xfe");
    for _ in 0..3 {
        assert_eq!(error_of(&c.recv().unwrap()).0, "GenericError");
    }

    // An oversized request: one error, then the connection still works.
    let mut big =
        br#"{"execute": "human-monitor-command", "arguments": {"command-line": ""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', MAX_MESSAGE_SIZE + 1));
    big.extend(br#""}}"#);
    c.send(&big);
    let r = c.recv().unwrap();
    let (_, desc) = error_of(&r);
    assert!(desc.contains("exceeds the limit"), "{desc}");
    assert_eq!(
        c.cmd(json!({"execute": "query-status"}))["return"]["status"],
        "prelaunch"
    );
    // The handler never saw the oversized command.
    assert!(!lock(&dummy.seen)
        .iter()
        .any(|cmd| matches!(cmd, QmpCommand::HumanMonitorCommand { .. })));
}

#[test]
fn handler_panic_is_an_error_reply_and_the_connection_survives() {
    let (_dir, _dummy, server) = start();
    let mut c = Client::connect(server.path());
    c.greet_and_negotiate();
    let r = c.cmd(json!({"execute": "human-monitor-command", "arguments": {"command-line": "panic"}, "id": 9}));
    assert_eq!(
        r,
        json!({"error": {"class": "GenericError", "desc": "internal error while executing human-monitor-command"}, "id": 9})
    );
    assert_eq!(c.cmd(json!({"execute": "cont"})), json!({"return": {}}));
}

#[test]
fn disconnect_and_reconnect_renegotiates() {
    let (_dir, _dummy, server) = start();
    let mut c = Client::connect(server.path());
    c.greet_and_negotiate();
    // Disconnect in the middle of a request.
    c.send(br#"{"execute": "query-st"#);
    drop(c);

    let mut c = Client::connect(server.path());
    // A fresh greeting and negotiation state.
    assert!(c.recv().unwrap().get("QMP").is_some());
    let r = c.cmd(json!({"execute": "cont"}));
    assert_eq!(error_of(&r).0, "CommandNotFound");
    assert_eq!(
        c.cmd(json!({"execute": "qmp_capabilities"})),
        json!({"return": {}})
    );
    assert_eq!(c.cmd(json!({"execute": "cont"})), json!({"return": {}}));
    server.wait_for_client(); // already true: returns at once
}

#[test]
fn one_client_at_a_time() {
    let (_dir, _dummy, server) = start();
    let mut first = Client::connect(server.path());
    first.greet_and_negotiate();
    let mut second = Client::connect(server.path());
    // The first is fully served while the second waits in the backlog...
    assert_eq!(first.cmd(json!({"execute": "cont"})), json!({"return": {}}));
    second.reader.get_ref().set_nonblocking(true).unwrap();
    let mut probe = [0u8; 1];
    let pending = second.reader.get_ref().read(&mut probe);
    assert_eq!(
        pending.unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "second client greeted while the first is connected"
    );
    second.reader.get_ref().set_nonblocking(false).unwrap();
    // ...and is greeted once the first leaves.
    drop(first);
    second.greet_and_negotiate();
    assert_eq!(
        second.cmd(json!({"execute": "cont"})),
        json!({"return": {}})
    );
}

#[test]
fn events_keep_their_order_under_load() {
    let (_dir, _dummy, server) = start();
    let events = server.events();
    // No client: a no-op.
    events.emit(&QmpEvent::Stop);
    let mut c = Client::connect(server.path());
    c.greet_and_negotiate();
    events.emit(&QmpEvent::Resume);
    assert_eq!(c.recv().unwrap()["event"], "RESUME");
    // Many more events than the queue holds, while the client reads
    // nothing: emit never blocks; what arrives is in order.
    for i in 0..(QUEUE_DEPTH as u64 * 4) {
        events.emit(&QmpEvent::MigrationPass { pass: i });
    }
    c.send(br#"{"execute": "cont", "id": "end"}"#);
    let mut last_pass = None;
    loop {
        let v = c.recv().unwrap();
        if v.get("id").is_some() {
            assert_eq!(v, json!({"return": {}, "id": "end"}));
            break;
        }
        assert_eq!(v["event"], "MIGRATION_PASS");
        let pass = v["data"]["pass"].as_u64().unwrap();
        if let Some(prev) = last_pass {
            assert!(pass > prev, "events out of order");
        }
        last_pass = Some(pass);
    }
    assert!(last_pass.is_some());
}

#[test]
fn shutdown_closes_the_client_and_removes_the_socket() {
    let (dir, _dummy, mut server) = start();
    let path = dir.path().join("qmp.sock");
    let mut c = Client::connect(&path);
    c.greet_and_negotiate();
    assert!(path.exists());
    server.shutdown();
    assert!(!path.exists(), "socket file left behind");
    assert_eq!(c.recv(), None, "client not disconnected");
    // Idempotent, and events after shutdown are no-ops.
    server.shutdown();
    server.events().emit(&QmpEvent::Stop);
    server.wait_for_client();
    drop(server);
    assert!(UnixStream::connect(&path).is_err());
}

#[test]
fn shutdown_without_clients_and_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    {
        let _server = QmpServer::bind(&path, Arc::new(Dummy::default())).unwrap();
        assert!(path.exists());
    }
    assert!(!path.exists());
}

#[test]
fn stale_socket_replaced_live_socket_and_plain_file_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    // A stale socket: bound, then its listener closed.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let mut server = QmpServer::bind(&path, Arc::new(Dummy::default())).unwrap();
    let mut c = Client::connect(&path);
    c.greet_and_negotiate();
    drop(c);

    // A live one is not stolen.
    let e = QmpServer::bind(&path, Arc::new(Dummy::default())).unwrap_err();
    assert!(matches!(e, ServerError::InUse { .. }), "{e}");
    server.shutdown();

    // A regular file is never deleted.
    std::fs::write(&path, b"precious").unwrap();
    let e = QmpServer::bind(&path, Arc::new(Dummy::default())).unwrap_err();
    assert!(matches!(e, ServerError::NotASocket { .. }), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");

    // An unbindable path.
    let e =
        QmpServer::bind(dir.path().join("missing/dir/q"), Arc::new(Dummy::default())).unwrap_err();
    assert!(matches!(e, ServerError::Bind { .. }), "{e}");
}

#[test]
fn wait_for_client_returns_after_a_connection() {
    let (_dir, _dummy, server) = start();
    let path = server.path().to_path_buf();
    let t = thread::spawn(move || {
        let mut c = Client::connect(&path);
        c.recv().unwrap()
    });
    server.wait_for_client();
    assert!(t.join().unwrap().get("QMP").is_some());
}

#[test]
fn handler_may_shut_the_server_down_from_its_own_thread() {
    struct Quitter {
        server: Mutex<Option<QmpServer>>,
    }
    impl QmpHandler for Quitter {
        fn handle(&self, command: QmpCommand) -> Result<Value, QmpError> {
            if command == QmpCommand::Quit {
                if let Some(mut s) = lock(&self.server).take() {
                    s.shutdown();
                }
            }
            Ok(json!({}))
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    let quitter = Arc::new(Quitter {
        server: Mutex::new(None),
    });
    let server = QmpServer::bind(&path, quitter.clone()).unwrap();
    *lock(&quitter.server) = Some(server);
    let mut c = Client::connect(&path);
    c.greet_and_negotiate();
    // The reply to quit is still delivered, then the connection closes.
    assert_eq!(c.cmd(json!({"execute": "quit"})), json!({"return": {}}));
    assert_eq!(c.recv(), None);
    assert!(!path.exists());
}

#[test]
fn a_full_queue_drops_events_instead_of_blocking() {
    let (ours, _theirs) = UnixStream::pair().unwrap();
    let (tx, rx) = sync_channel::<Value>(QUEUE_DEPTH);
    let shared = Arc::new(Shared {
        handler: Arc::new(Dummy::default()),
        capabilities: vec![],
        shutdown: AtomicBool::new(false),
        current: Mutex::new(Some(super::Client {
            stream: ours,
            tx,
            negotiated: false,
            dropped_events: 0,
        })),
        client_seen: Mutex::new(true),
        client_seen_cv: Condvar::new(),
        thread_id: OnceLock::new(),
    });
    let events = EventSender {
        shared: Arc::clone(&shared),
    };
    // Not negotiated: nothing is queued.
    events.emit(&QmpEvent::Stop);
    assert!(rx.try_recv().is_err());
    lock(&shared.current).as_mut().unwrap().negotiated = true;
    for _ in 0..QUEUE_DEPTH + 5 {
        events.emit(&QmpEvent::Stop);
    }
    assert_eq!(lock(&shared.current).as_ref().unwrap().dropped_events, 5);
    assert_eq!(rx.try_iter().count(), QUEUE_DEPTH);
    // A vanished writer is not an error either.
    drop(rx);
    events.emit(&QmpEvent::Stop);
    assert_eq!(format!("{events:?}"), "EventSender { .. }");
}

/// Reads one byte at a time, with an `Interrupted` error before each byte.
struct Trickle<'a> {
    rest: &'a [u8],
    interrupted: bool,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.interrupted = !self.interrupted;
        if self.interrupted && !self.rest.is_empty() {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        let Some((first, rest)) = self.rest.split_first() else {
            return Ok(0);
        };
        let Some(slot) = buf.first_mut() else {
            return Ok(0);
        };
        *slot = *first;
        self.rest = rest;
        Ok(1)
    }
}

#[test]
fn serve_connection_without_a_socket() {
    let dummy = Dummy::default();
    let input = br#"{"execute": "stop", "id": 1}{"execute": "qmp_capabilities", "id": 2}
{"execute": "stop", "id": 3} [] {"execute": "query-sev", "id": 4}{"execute": "query-version", "id": 5} 42"#;
    // Output, with "negotiated" marking the hook's call.
    let out = Mutex::new(Vec::new());
    serve_connection(
        &dummy,
        &[QmpCapability::Oob],
        Trickle {
            rest: input,
            interrupted: false,
        },
        |message| {
            lock(&out).push(message);
            true
        },
        || lock(&out).push(json!("negotiated")),
    );
    let out = out.into_inner().unwrap();
    assert_eq!(out.len(), 9, "{out:?}");
    assert_eq!(out[0]["QMP"]["capabilities"], json!(["oob"]));
    assert_eq!(out[1]["id"], json!(1));
    assert_eq!(error_of(&out[1]).0, "CommandNotFound");
    assert_eq!(out[2], json!("negotiated"));
    assert_eq!(out[3], json!({"return": {}, "id": 2}));
    assert_eq!(out[4], json!({"return": {}, "id": 3}));
    assert_eq!(
        error_of(&out[5]),
        ("GenericError", "QMP input must be a JSON object")
    );
    assert_eq!(out[6]["id"], json!(4));
    assert_eq!(error_of(&out[6]), ("GenericError", "SEV is not enabled"));
    assert_eq!(out[7]["id"], json!(5));
    assert_eq!(
        out[7]["return"],
        serde_json::to_value(VersionInfo::current()).unwrap()
    );
    // A trailing scalar is only complete at end of input.
    assert_eq!(
        out[8],
        response::error(&QmpError::generic("QMP input must be a JSON object"), None)
    );
    assert_eq!(
        *lock(&dummy.seen),
        vec![QmpCommand::Stop, QmpCommand::QuerySev]
    );
}

#[test]
fn serve_connection_ends_when_the_client_is_gone() {
    let dummy = Dummy::default();
    let input = br#"{"execute": "qmp_capabilities"}{"execute": "stop"}{"execute": "stop"}"#;
    let mut sent = 0;
    // The greeting and the capabilities reply go through, then the client
    // is gone: the first `stop` runs (its reply fails), the second never.
    serve_connection(
        &dummy,
        &[],
        &input[..],
        |_| {
            sent += 1;
            sent <= 2
        },
        || {},
    );
    assert_eq!(sent, 3);
    assert_eq!(*lock(&dummy.seen), vec![QmpCommand::Stop]);
}
