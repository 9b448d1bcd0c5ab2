//! The QMP server's per-connection protocol (`sevm_qmp::server::serve_connection`)
//! under sequences of requests: greeting, capabilities negotiation, then
//! commands, read in arbitrary chunks, against a fake VM.
//!
//! The input chooses the capabilities offered, whether the VM waits for an
//! incoming migration, a sequence of well-formed requests (command, id,
//! `execute`/`exec-oob`, layout) mixed with raw bytes, how the stream is cut
//! into reads (with `Interrupted` errors and possibly a failed read that ends
//! the connection), and when the client stops accepting replies.
//!
//! The fake VM (`FakeVm`) models a run state (prelaunch, running, paused,
//! postmigrate, shutdown, inmigrate) and a migration status, and completes
//! `migrate`, `quit` and `system_powerdown` in `after_reply`, as the VMM does.
//!
//! Properties: no panic; the greeting comes first; the server's output is
//! exactly what a model of the protocol predicts for the JSON texts read
//! (one reply per text, in order, with the request's `id`; nothing reaches
//! the VM before `qmp_capabilities` succeeds, and `qmp_capabilities`,
//! `query-version` and `query-commands` never do; `after_reply` follows
//! each successful command's reply and nothing else); every generated
//! request gets its own `id` back; the connection ends at the first reply
//! the client does not take; each message is one line of JSON that frames
//! as one message; the fake VM never reaches a forbidden state (running, or
//! taking an incoming migration, after its outgoing migration completed).
#![no_main]

use std::io::{ErrorKind, Read};
use std::sync::{Mutex, MutexGuard, PoisonError};

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use sevm_fuzz::Cursor;
use sevm_qmp::command::{QmpCapability, COMMAND_NAMES};
use sevm_qmp::framing::{Frame, JsonFramer};
use sevm_qmp::response::{self, to_wire, VersionInfo};
use sevm_qmp::server::serve_connection;
use sevm_qmp::{parse_request_in, QmpCommand, QmpError, QmpHandler, Stage};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What happened, in order: the server's output and the VM's calls.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    /// A message handed to `send` (whether or not the client took it).
    Sent(Value),
    /// The `on_negotiated` hook.
    Negotiated,
    /// `QmpHandler::handle` and what it returned.
    Handled(QmpCommand, Result<Value, QmpError>),
    /// `QmpHandler::after_reply`.
    After(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    Prelaunch,
    Running,
    Paused,
    Postmigrate,
    Shutdown,
    Inmigrate,
}

impl Run {
    fn name(self) -> &'static str {
        match self {
            Run::Prelaunch => "prelaunch",
            Run::Running => "running",
            Run::Paused => "paused",
            Run::Postmigrate => "postmigrate",
            Run::Shutdown => "shutdown",
            Run::Inmigrate => "inmigrate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Migration {
    None,
    Active,
    Completed,
    Failed,
    Cancelled,
}

impl Migration {
    fn name(self) -> &'static str {
        match self {
            Migration::None => "none",
            Migration::Active => "active",
            Migration::Completed => "completed",
            Migration::Failed => "failed",
            Migration::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug)]
struct Vm {
    run: Run,
    /// Outgoing migration.
    migration: Migration,
    /// How the active migration ends at `after_reply("migrate")`.
    migration_outcome: Migration,
    /// `after_reply` owed for the last successful command.
    owed_after: Option<&'static str>,
    violations: Vec<String>,
}

/// A fake VM behind the QMP handler. Records every call in the event log
/// and any rule the server or the VM broke in `violations` (a panic in the
/// handler would be caught by the server, so nothing here panics).
struct FakeVm<'a> {
    vm: Mutex<Vm>,
    log: &'a Mutex<Vec<Event>>,
}

fn generic(desc: &str) -> QmpError {
    QmpError::generic(desc)
}

impl FakeVm<'_> {
    fn execute(vm: &mut Vm, command: &QmpCommand) -> Result<Value, QmpError> {
        use QmpCommand as C;
        let ok = Ok(json!({}));
        match command {
            C::QueryStatus => Ok(json!({
                "status": vm.run.name(),
                "running": vm.run == Run::Running,
                "singlestep": false,
            })),
            C::QueryMigrate => Ok(json!({ "status": vm.migration.name() })),
            C::Stop => {
                if matches!(vm.run, Run::Running | Run::Prelaunch) {
                    vm.run = Run::Paused;
                }
                ok
            }
            C::Cont => match vm.run {
                _ if vm.migration == Migration::Completed => {
                    Err(generic("the guest now runs on the migration target"))
                }
                Run::Shutdown => Err(generic("Resetting the Virtual Machine is required")),
                Run::Inmigrate => Err(generic("waiting for an incoming migration")),
                _ => {
                    vm.run = Run::Running;
                    ok
                }
            },
            C::SystemReset => {
                if vm.run == Run::Shutdown {
                    vm.run = Run::Paused;
                }
                ok
            }
            C::SystemPowerdown | C::Quit => ok,
            C::Migrate { uri, .. } => {
                if vm.migration == Migration::Active {
                    return Err(generic("There's a migration process in progress"));
                }
                if vm.run == Run::Inmigrate || vm.migration == Migration::Completed {
                    return Err(generic("the guest cannot migrate now"));
                }
                vm.migration_outcome = if uri.contains("fail") {
                    Migration::Failed
                } else if uri.contains("slow") {
                    Migration::Active
                } else {
                    Migration::Completed
                };
                vm.migration = Migration::Active;
                ok
            }
            C::MigrateCancel => {
                if vm.migration == Migration::Active {
                    vm.migration = Migration::Cancelled;
                }
                ok
            }
            C::MigrateIncoming { uri, .. } => {
                if vm.run != Run::Inmigrate {
                    return Err(generic("'-incoming' was not specified on the command line"));
                }
                if uri.contains("fail") {
                    return Err(generic("incoming migration failed"));
                }
                vm.run = Run::Paused;
                ok
            }
            C::QuerySev => Err(generic("SEV is not enabled")),
            C::QmpCapabilities { .. } | C::QueryVersion | C::QueryCommands => {
                vm.violations
                    .push(format!("the server passed {} on", command.name()));
                ok
            }
            _ => ok,
        }
    }

    fn check(vm: &mut Vm, when: &str) {
        // The guest runs on the target once the outgoing migration
        // completed: the source must never run again, nor take an incoming
        // migration.
        let completed = vm.migration == Migration::Completed;
        if completed && matches!(vm.run, Run::Running | Run::Inmigrate) {
            vm.violations
                .push(format!("{when}: {:?} after a completed migration", vm.run));
        }
        if vm.run == Run::Postmigrate && !completed {
            vm.violations.push(format!(
                "{when}: {:?} with migration {:?}",
                vm.run, vm.migration
            ));
        }
    }
}

impl QmpHandler for FakeVm<'_> {
    fn handle(&self, command: QmpCommand) -> Result<Value, QmpError> {
        let mut vm = lock(&self.vm);
        if let Some(name) = vm.owed_after.take() {
            vm.violations.push(format!(
                "{} called before after_reply({name})",
                command.name()
            ));
        }
        let result = Self::execute(&mut vm, &command);
        if result.is_ok() {
            vm.owed_after = Some(command.name());
        }
        Self::check(&mut vm, command.name());
        lock(self.log).push(Event::Handled(command, result.clone()));
        result
    }

    fn after_reply(&self, command: &'static str) {
        let mut vm = lock(&self.vm);
        if vm.owed_after.take() != Some(command) {
            vm.violations
                .push(format!("after_reply({command}) not owed"));
        }
        if !matches!(lock(self.log).last(), Some(Event::Sent(_))) {
            vm.violations
                .push(format!("after_reply({command}) before the reply was sent"));
        }
        match command {
            "quit" | "system_powerdown" => vm.run = Run::Shutdown,
            "migrate" => {
                vm.migration = vm.migration_outcome;
                if vm.migration == Migration::Completed {
                    vm.run = Run::Postmigrate;
                }
            }
            _ => {}
        }
        Self::check(&mut vm, command);
        lock(self.log).push(Event::After(command));
    }
}

/// Requests the generator knows how to write: (command, arguments).
fn template(choice: u8, c: &mut Cursor<'_>) -> (&'static str, Option<Value>) {
    match choice % 25 {
        0 => ("qmp_capabilities", None),
        1 => ("qmp_capabilities", Some(json!({ "enable": ["oob"] }))),
        2 => ("qmp_capabilities", Some(json!({ "enable": ["bogus"] }))),
        3 => ("query-status", None),
        4 => ("stop", None),
        5 => ("cont", None),
        6 => ("system_reset", None),
        7 => ("system_powerdown", None),
        8 => ("quit", None),
        9 => {
            let uri = ["unix:/x", "unix:/fail", "unix:/slow", "exec:cat"][usize::from(c.u8() % 4)];
            ("migrate", Some(json!({ "uri": uri })))
        }
        10 => ("migrate_cancel", None),
        11 => ("query-migrate", None),
        12 => {
            let uri = ["unix:/in", "unix:/fail"][usize::from(c.u8() % 2)];
            ("migrate-incoming", Some(json!({ "uri": uri })))
        }
        13 => ("query-version", None),
        14 => ("query-commands", None),
        15 => ("query-sev", None),
        16 => (
            "migrate-set-parameters",
            Some(json!({ "downtime-limit": c.u16() })),
        ),
        17 => (
            "human-monitor-command",
            Some(json!({ "command-line": "info status" })),
        ),
        18 => ("no-such-command", None),
        19 => ("stop", Some(json!({ "unexpected": 1 }))),
        20 => ("query-migrate-parameters", None),
        21 => ("cont", Some(json!([]))),
        22 => ("query-name", None),
        23 => (
            "migrate-set-parameters",
            Some(json!({ "x-peer-timeout": c.u16() })),
        ),
        _ => ("query-status", Some(json!({}))),
    }
}

/// A generated request: its text and the `id` the reply must carry.
struct Generated {
    text: Vec<u8>,
    id: Option<Value>,
}

/// Builds the client's byte stream from the input.
fn client_stream(c: &mut Cursor<'_>) -> (Vec<u8>, Vec<Generated>) {
    let mut stream = Vec::new();
    let mut generated = Vec::new();
    let mut serial = 0u32;
    while !c.is_empty() {
        let op = c.u8();
        if op >= 0xf0 {
            // Raw bytes, straight from the input.
            let len = usize::from(c.u8() % 32);
            stream.extend_from_slice(c.bytes(len));
            continue;
        }
        let (name, args) = template(op, c);
        let style = c.u8();
        serial += 1;
        let id = match style % 4 {
            0 => None,
            1 => Some(json!(serial)),
            2 => Some(json!(format!("req-{serial}"))),
            _ => Some(json!({ "n": serial, "tag": [serial] })),
        };
        let mut request = serde_json::Map::new();
        let exec = if style & 4 != 0 {
            "exec-oob"
        } else {
            "execute"
        };
        request.insert(exec.into(), json!(name));
        if let Some(args) = args {
            request.insert("arguments".into(), args);
        }
        if let Some(id) = &id {
            request.insert("id".into(), id.clone());
        }
        let request = Value::Object(request);
        let mut text = if style & 8 != 0 {
            to_wire(&request)
        } else {
            serde_json::to_vec(&request).unwrap_or_default()
        };
        while text.last().is_some_and(u8::is_ascii_whitespace) {
            text.pop();
        }
        stream.extend_from_slice(&text);
        match style >> 4 {
            0..=7 => {}
            8..=11 => stream.push(b'\n'),
            12..=13 => stream.extend_from_slice(b"\r\n"),
            _ => stream.extend_from_slice(b"  \t"),
        }
        generated.push(Generated { text, id });
    }
    (stream, generated)
}

/// Delivers the stream in chunks chosen by a small PRNG, with `Interrupted`
/// errors, and optionally a failed read at `fail_at` that ends it.
struct Chunks<'a> {
    rest: &'a [u8],
    rng: u32,
    fail_at: Option<usize>,
    delivered: usize,
}

impl Chunks<'_> {
    fn next(&mut self) -> u32 {
        // xorshift32 (never zero: seeded with a set bit).
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        self.rng
    }
}

impl Read for Chunks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let r = self.next();
        if r.is_multiple_of(7) {
            return Err(ErrorKind::Interrupted.into());
        }
        if self.fail_at.is_some_and(|at| self.delivered >= at) {
            return Err(ErrorKind::ConnectionReset.into());
        }
        let want = match r % 16 {
            0 => 5000,
            1..=7 => 1,
            _ => 1 + (r >> 8) as usize % 64,
        };
        let limit = self
            .fail_at
            .map_or(usize::MAX, |at| at.saturating_sub(self.delivered));
        let n = want.min(buf.len()).min(self.rest.len()).min(limit);
        let (head, tail) = self.rest.split_at(n);
        buf[..n].copy_from_slice(head);
        self.rest = tail;
        self.delivered += n;
        Ok(n)
    }
}

/// What the server must do for one JSON text (the protocol's model).
fn expect_frame(
    frame: Frame,
    negotiated: &mut bool,
    oob: &mut bool,
    offered: &[QmpCapability],
    handled: &mut dyn Iterator<Item = Event>,
) -> Vec<Event> {
    let bytes = match frame {
        Frame::Message(bytes) => bytes,
        Frame::Error(e) => return vec![Event::Sent(response::error(&e, None))],
    };
    let stage = if *negotiated {
        Stage::Command { oob: *oob }
    } else {
        Stage::Negotiation
    };
    let request = match parse_request_in(&bytes, stage) {
        Ok(r) => r,
        Err(e) => return vec![Event::Sent(response::error(&e.error, e.id))],
    };
    let id = request.id;
    let reply = |r: Result<Value, QmpError>| match r {
        Ok(v) => response::success(v, id.clone()),
        Err(e) => response::error(&e, id.clone()),
    };
    match request.command {
        QmpCommand::QmpCapabilities { enable } => {
            if *negotiated {
                vec![Event::Sent(reply(Err(QmpError::command_not_found(
                    "Capabilities negotiation is already complete, command ignored",
                ))))]
            } else if let Some(cap) = enable.iter().find(|c| !offered.contains(c)) {
                vec![Event::Sent(reply(Err(QmpError::generic(format!(
                    "Capability '{}' not available",
                    cap.as_str()
                )))))]
            } else {
                *negotiated = true;
                *oob = enable.contains(&QmpCapability::Oob);
                vec![Event::Negotiated, Event::Sent(reply(Ok(json!({}))))]
            }
        }
        QmpCommand::QueryVersion => {
            let version = serde_json::to_value(VersionInfo::current()).unwrap_or_default();
            vec![Event::Sent(reply(Ok(version)))]
        }
        QmpCommand::QueryCommands => {
            let names: Vec<Value> = COMMAND_NAMES.iter().map(|n| json!({ "name": n })).collect();
            vec![Event::Sent(reply(Ok(Value::Array(names))))]
        }
        command => {
            // The VM's answer is whatever it returned (checked against the
            // command here; the VM checks its own rules).
            let Some(Event::Handled(seen, result)) = handled.next() else {
                panic!("{} did not reach the VM", command.name());
            };
            assert_eq!(seen, command, "the VM got another command");
            let name = command.name();
            let mut events = vec![
                Event::Handled(seen, result.clone()),
                Event::Sent(reply(result.clone())),
            ];
            if result.is_ok() {
                events.push(Event::After(name));
            }
            events
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let [flags, gone_after] = c.array();
    let seed = c.u32() | 1;
    let fail_at = c.u16();
    let offered: &[QmpCapability] = if flags & 1 != 0 {
        &[QmpCapability::Oob]
    } else {
        &[]
    };
    let incoming = flags & 2 != 0;
    let gone_after = (flags & 4 != 0).then_some(usize::from(gone_after));
    let fail_at = (flags & 8 != 0).then_some(usize::from(fail_at));
    let (stream, generated) = client_stream(&mut c);

    let log = Mutex::new(Vec::new());
    let vm = FakeVm {
        vm: Mutex::new(Vm {
            run: if incoming {
                Run::Inmigrate
            } else {
                Run::Prelaunch
            },
            migration: Migration::None,
            migration_outcome: Migration::None,
            owed_after: None,
            violations: Vec::new(),
        }),
        log: &log,
    };
    let mut reader = Chunks {
        rest: &stream,
        rng: seed,
        fail_at,
        delivered: 0,
    };
    let mut sent = 0usize;
    serve_connection(
        &vm,
        offered,
        &mut reader,
        |message| {
            lock(&log).push(Event::Sent(message));
            sent += 1;
            gone_after.is_none_or(|n| sent <= n)
        },
        || lock(&log).push(Event::Negotiated),
    );
    let delivered = reader.delivered;
    let vm = vm.vm.into_inner().unwrap_or_else(PoisonError::into_inner);
    let log = log.into_inner().unwrap_or_else(PoisonError::into_inner);
    assert!(vm.violations.is_empty(), "{:?}", vm.violations);

    // Every message is one line of JSON that frames as one message.
    for event in &log {
        if let Event::Sent(message) = event {
            let wire = to_wire(message);
            assert_eq!(wire.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(wire.last(), Some(&b'\n'));
            let frames = JsonFramer::new().push(&wire);
            let [Frame::Message(text)] = &frames[..] else {
                panic!("a message does not frame as one: {frames:?}");
            };
            let back: Value = serde_json::from_slice(text).expect("a message is JSON");
            assert_eq!(&back, message);
        }
    }

    // Nothing reaches the VM before negotiation.
    let negotiated_at = log.iter().position(|e| *e == Event::Negotiated);
    if let Some(first) = log.iter().position(|e| matches!(e, Event::Handled(..))) {
        assert!(
            negotiated_at.is_some_and(|n| n < first),
            "a command before negotiation"
        );
    }

    // The model: greeting, then per JSON text read, its events.
    let mut expected = vec![Event::Sent(response::greeting(offered))];
    let mut framer = JsonFramer::new();
    let mut frames = framer.push(&stream[..delivered]);
    frames.extend(framer.finish());
    let mut handled = log
        .iter()
        .filter(|e| matches!(e, Event::Handled(..)))
        .cloned()
        .collect::<Vec<_>>()
        .into_iter();
    let (mut negotiated, mut oob) = (false, false);
    let mut texts = Vec::new();
    // A client that is gone ends the connection at the message it did not
    // take (the greeting is message 0).
    let cut = |expected: &mut Vec<Event>| -> bool {
        let Some(n) = gone_after else {
            return false;
        };
        let at = expected
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, Event::Sent(_)))
            .nth(n)
            .map(|(i, _)| i + 1);
        at.map(|at| expected.truncate(at)).is_some()
    };
    if !cut(&mut expected) {
        for frame in frames {
            if let Frame::Message(text) = &frame {
                texts.push((expected.len(), text.clone()));
            }
            expected.extend(expect_frame(
                frame,
                &mut negotiated,
                &mut oob,
                offered,
                &mut handled,
            ));
            if cut(&mut expected) {
                break;
            }
        }
    }
    assert_eq!(log, expected, "the server's output differs from the model");

    // Every generated request read whole gets its own id back.
    for (at, text) in texts {
        let Some(g) = generated.iter().find(|g| g.text == text) else {
            continue;
        };
        let Some(reply) = expected
            .get(at..)
            .unwrap_or_default()
            .iter()
            .find_map(|e| match e {
                Event::Sent(v) => Some(v),
                _ => None,
            })
        else {
            continue;
        };
        assert_eq!(
            reply.get("id"),
            g.id.as_ref(),
            "reply to {:?}",
            String::from_utf8_lossy(&text)
        );
    }
});
