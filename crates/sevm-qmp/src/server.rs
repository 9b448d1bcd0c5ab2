//! The QMP socket server (`-qmp unix:PATH,server=on,wait=off`).
//!
//! One thread accepts clients and serves them one at a time, as a QEMU
//! socket chardev does: a second client waits in the listen backlog until
//! the first disconnects, then gets its greeting. Per connection:
//! greeting, capabilities negotiation, then each request is parsed
//! ([`parse_request_in`]) and executed by the [`QmpHandler`], in order.
//! That per-connection protocol is [`serve_connection`], a function of the
//! bytes read, callable without a socket (the `qmp_session` fuzz target).
//! Replies and events go through a per-connection writer thread, so an
//! event emitted from a vCPU or VMM thread never blocks on the socket.
//!
//! The server answers `qmp_capabilities`, `query-version` and
//! `query-commands` itself; everything else goes to the handler.
//!
//! Garbage, oversized input, a client that vanishes mid-request, or a
//! panicking handler end at most that client's connection (with an error
//! reply where there is one to give), never the server. The socket file is
//! removed on shutdown; a stale one (nobody listening) is replaced at bind.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::Duration;

use serde_json::{json, Value};

use crate::command::{parse_request_in, QmpCapability, QmpCommand, Stage, COMMAND_NAMES};
use crate::error::QmpError;
use crate::framing::{Frame, JsonFramer};
use crate::response::{self, CommandInfo, QmpEvent, Timestamp, VersionInfo};

/// Executes commands; the VMM implements it.
///
/// Called on the server's thread, one command at a time, in the order the
/// client sent them. Never sees `qmp_capabilities`, `query-version` or
/// `query-commands`. Return the `return` value (`json!({})` for commands
/// without one) or the error reply. Must not call [`QmpServer::shutdown`]
/// and wait for it (shutdown from inside a handler is allowed; it does not
/// wait for the server thread then).
pub trait QmpHandler: Send + Sync {
    /// Executes one command.
    fn handle(&self, command: QmpCommand) -> Result<Value, QmpError>;

    /// Called after the successful reply to `command` (its wire name) has
    /// been queued to the client, so that what follows (e.g. `quit`'s
    /// SHUTDOWN event) reaches the client after the reply, as in QEMU.
    fn after_reply(&self, _command: &'static str) {}
}

/// A server error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Something already listens on the socket path.
    #[error("QMP socket {path} is in use by another process")]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// The path exists and is not a socket (sevm will not delete it).
    #[error("{path} exists and is not a socket")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Inspecting or removing a stale socket failed.
    #[error("cannot replace stale QMP socket {path}")]
    Stale {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `bind` failed.
    #[error("cannot listen on QMP socket {path}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The server thread could not be started.
    #[error("cannot start the QMP server thread")]
    Spawn {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Replies and events queued per connection before the server gives up on
/// a client that does not read (events beyond it are dropped and logged).
const QUEUE_DEPTH: usize = 256;
/// A client that accepts no bytes for this long is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connected client, as seen by event emitters and shutdown.
struct Client {
    /// For `shutdown(2)`.
    stream: UnixStream,
    tx: SyncSender<Value>,
    /// Events are sent only after `qmp_capabilities` (as QEMU).
    negotiated: bool,
    dropped_events: u64,
}

struct Shared {
    handler: Arc<dyn QmpHandler>,
    capabilities: Vec<QmpCapability>,
    shutdown: AtomicBool,
    current: Mutex<Option<Client>>,
    client_seen: Mutex<bool>,
    client_seen_cv: Condvar,
    thread_id: OnceLock<ThreadId>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave them inconsistent
    // (plain assignments), so poisoning is ignored.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Emits events to the connected, negotiated client. Cheap to clone; keeps
/// working (as a no-op) after the server shut down.
#[derive(Clone)]
pub struct EventSender {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EventSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSender").finish_non_exhaustive()
    }
}

impl EventSender {
    /// Sends `event` (timestamped now) to the client, if one is connected
    /// and has negotiated capabilities. Never blocks.
    pub fn emit(&self, event: &QmpEvent) {
        let message = event.to_message(Timestamp::now());
        let mut current = lock(&self.shared.current);
        let Some(client) = current.as_mut() else {
            return;
        };
        if !client.negotiated {
            return;
        }
        match client.tx.try_send(message) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                client.dropped_events += 1;
                // Rate-limited: the first drop and every 1000th.
                if client.dropped_events % 1000 == 1 {
                    log::warn!(
                        "QMP client is not reading; dropped event {} ({} dropped so far)",
                        event.name(),
                        client.dropped_events
                    );
                }
            }
        }
    }
}

/// A listening QMP server. Dropping it shuts it down.
pub struct QmpServer {
    shared: Arc<Shared>,
    path: PathBuf,
    /// (device, inode) of the socket we bound, to remove only our own.
    socket_id: Option<(u64, u64)>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for QmpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QmpServer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Removes a stale socket at `path`; refuses a live one or a non-socket.
pub fn clear_stale_socket(path: &Path) -> Result<(), ServerError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(ServerError::InUse {
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path).map_err(|source| ServerError::Stale {
                path: path.to_path_buf(),
                source,
            })
        }
        Ok(_) => Err(ServerError::NotASocket {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ServerError::Stale {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl QmpServer {
    /// Listens on `path` and starts serving, offering the `oob` capability
    /// as QEMU does on socket monitors.
    pub fn bind(path: impl AsRef<Path>, handler: Arc<dyn QmpHandler>) -> Result<Self, ServerError> {
        Self::bind_with_capabilities(path, handler, vec![QmpCapability::Oob])
    }

    /// [`QmpServer::bind`] with an explicit list of offered capabilities.
    pub fn bind_with_capabilities(
        path: impl AsRef<Path>,
        handler: Arc<dyn QmpHandler>,
        capabilities: Vec<QmpCapability>,
    ) -> Result<Self, ServerError> {
        let path = path.as_ref().to_path_buf();
        clear_stale_socket(&path)?;
        let listener = UnixListener::bind(&path).map_err(|source| ServerError::Bind {
            path: path.clone(),
            source,
        })?;
        let socket_id = std::fs::symlink_metadata(&path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let shared = Arc::new(Shared {
            handler,
            capabilities,
            shutdown: AtomicBool::new(false),
            current: Mutex::new(None),
            client_seen: Mutex::new(false),
            client_seen_cv: Condvar::new(),
            thread_id: OnceLock::new(),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("qmp".into())
            .spawn(move || accept_loop(&listener, &thread_shared))
            .map_err(|source| ServerError::Spawn { source })?;
        let _ = shared.thread_id.set(thread.thread().id());
        log::info!("QMP listening on {}", path.display());
        Ok(QmpServer {
            shared,
            path,
            socket_id,
            thread: Some(thread),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle for emitting events.
    pub fn events(&self) -> EventSender {
        EventSender {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Blocks until the first client has connected (QEMU's `wait=on`), or
    /// the server is shut down.
    pub fn wait_for_client(&self) {
        let mut seen = lock(&self.shared.client_seen);
        while !*seen && !self.shared.shutdown.load(Ordering::SeqCst) {
            seen = self
                .shared
                .client_seen_cv
                .wait(seen)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Stops accepting, lets the current client's queued replies and
    /// events drain, closes it, and removes the socket file. Idempotent.
    pub fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            // Ends the connection's read loop; its writer then flushes
            // what is queued and exits.
            let current = lock(&self.shared.current);
            if let Some(client) = current.as_ref() {
                let _ = client.stream.shutdown(std::net::Shutdown::Read);
            }
        }
        // Taking the lock orders the flag store before any waiter's check,
        // so `wait_for_client` cannot miss this wakeup.
        drop(lock(&self.shared.client_seen));
        self.shared.client_seen_cv.notify_all();
        // Wake the accept() call.
        let woke = UnixStream::connect(&self.path).is_ok();
        let on_server_thread = self.shared.thread_id.get() == Some(&thread::current().id());
        if woke && !on_server_thread {
            if thread.join().is_err() {
                log::error!("QMP server thread panicked");
            }
        } else if !woke {
            log::warn!(
                "could not wake the QMP server thread on {}; not waiting for it",
                self.path.display()
            );
        }
        self.remove_socket_file();
    }

    fn remove_socket_file(&self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if ours.is_some() && ours == self.socket_id {
            if let Err(e) = std::fs::remove_file(&self.path) {
                log::warn!("cannot remove QMP socket {}: {e}", self.path.display());
            }
        }
    }
}

impl Drop for QmpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: &UnixListener, shared: &Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.shutdown.load(Ordering::SeqCst) {
            break;
        }
        match conn {
            Ok(stream) => serve(shared, stream),
            Err(e) => {
                log::warn!("QMP accept failed: {e}");
                // Avoid spinning on persistent errors (e.g. EMFILE).
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn writer_loop(mut stream: UnixStream, rx: Receiver<Value>) {
    for message in &rx {
        if let Err(e) = stream.write_all(&response::to_wire(&message)) {
            log::info!("QMP client write failed: {e}");
            let _ = stream.shutdown(std::net::Shutdown::Both);
            // Keep draining so senders never block on a dead client.
            for _ in rx.iter() {}
            return;
        }
    }
}

/// Serves one connection's protocol over `input`, without the socket: the
/// greeting, then one reply per JSON text read, in order (capabilities
/// negotiation first, then commands for `handler`), until `input` ends or
/// fails. The server runs it for each client; the `qmp_session` fuzz target
/// drives it with arbitrary reads.
///
/// `send` queues one message for the client and returns `false` once the
/// client is gone, which ends the connection. `on_negotiated` is called
/// when `qmp_capabilities` succeeds, before its reply is sent (events may
/// be sent from then on). [`QmpHandler::after_reply`] follows each
/// successful handler command's reply; a panic in the handler is caught
/// (an error reply for [`QmpHandler::handle`], a log for `after_reply`).
pub fn serve_connection(
    handler: &dyn QmpHandler,
    capabilities: &[QmpCapability],
    mut input: impl Read,
    mut send: impl FnMut(Value) -> bool,
    mut on_negotiated: impl FnMut(),
) {
    if !send(response::greeting(capabilities)) {
        return;
    }
    let mut session = Session {
        handler,
        capabilities,
        negotiated: false,
        oob: false,
    };
    let mut framer = JsonFramer::new();
    let mut buf = [0u8; 4096];
    let mut reply_to = |session: &mut Session<'_>, frame: Frame| -> bool {
        let was_negotiated = session.negotiated;
        let (reply, done) = session.process(frame);
        if session.negotiated && !was_negotiated {
            on_negotiated();
        }
        if !send(reply) {
            return false;
        }
        session.after_reply(done);
        true
    };
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::info!("QMP client read failed: {e}");
                break;
            }
        };
        for frame in framer.push(buf.get(..n).unwrap_or_default()) {
            if !reply_to(&mut session, frame) {
                return;
            }
        }
    }
    if let Some(frame) = framer.finish() {
        reply_to(&mut session, frame);
    }
}

/// Per-connection protocol state.
struct Session<'a> {
    handler: &'a dyn QmpHandler,
    capabilities: &'a [QmpCapability],
    negotiated: bool,
    oob: bool,
}

impl Session<'_> {
    fn after_reply(&self, done: Option<&'static str>) {
        if let Some(name) = done {
            if catch_unwind(AssertUnwindSafe(|| self.handler.after_reply(name))).is_err() {
                log::error!("QMP handler panicked after replying to {name}");
            }
        }
    }

    /// One frame in, one reply out (and the name of the handler command
    /// that succeeded, for [`QmpHandler::after_reply`]).
    fn process(&mut self, frame: Frame) -> (Value, Option<&'static str>) {
        let bytes = match frame {
            Frame::Message(bytes) => bytes,
            Frame::Error(e) => return (response::error(&e, None), None),
        };
        let stage = if self.negotiated {
            Stage::Command { oob: self.oob }
        } else {
            Stage::Negotiation
        };
        let request = match parse_request_in(&bytes, stage) {
            Ok(r) => r,
            Err(e) => return (response::error(&e.error, e.id), None),
        };
        let id = request.id;
        let mut handled = None;
        let result = match request.command {
            QmpCommand::QmpCapabilities { enable } => self.negotiate(&enable),
            QmpCommand::QueryVersion => response::to_value(&VersionInfo::current()),
            QmpCommand::QueryCommands => {
                let list: Vec<CommandInfo> = COMMAND_NAMES
                    .iter()
                    .map(|n| CommandInfo {
                        name: (*n).to_string(),
                    })
                    .collect();
                response::to_value(&list)
            }
            command => {
                let name = command.name();
                match catch_unwind(AssertUnwindSafe(|| self.handler.handle(command))) {
                    Ok(r) => {
                        if r.is_ok() {
                            handled = Some(name);
                        }
                        r
                    }
                    Err(_) => {
                        log::error!("QMP handler panicked on {name}");
                        Err(QmpError::generic(format!(
                            "internal error while executing {name}"
                        )))
                    }
                }
            }
        };
        let reply = match result {
            Ok(ret) => response::success(ret, id),
            Err(e) => response::error(&e, id),
        };
        (reply, handled)
    }

    fn negotiate(&mut self, enable: &[QmpCapability]) -> Result<Value, QmpError> {
        if self.negotiated {
            return Err(QmpError::command_not_found(
                "Capabilities negotiation is already complete, command ignored",
            ));
        }
        if let Some(cap) = enable.iter().find(|c| !self.capabilities.contains(c)) {
            return Err(QmpError::generic(format!(
                "Capability '{}' not available",
                cap.as_str()
            )));
        }
        self.negotiated = true;
        self.oob = enable.contains(&QmpCapability::Oob);
        Ok(json!({}))
    }
}

fn serve(shared: &Arc<Shared>, stream: UnixStream) {
    let (Ok(writer_stream), Ok(control_stream)) = (stream.try_clone(), stream.try_clone()) else {
        log::warn!("QMP: cannot duplicate the client socket; dropping the client");
        return;
    };
    if let Err(e) = writer_stream.set_write_timeout(Some(WRITE_TIMEOUT)) {
        log::warn!("QMP: cannot set a write timeout: {e}");
    }
    let (tx, rx) = sync_channel::<Value>(QUEUE_DEPTH);
    let writer = match thread::Builder::new()
        .name("qmp-writer".into())
        .spawn(move || writer_loop(writer_stream, rx))
    {
        Ok(w) => w,
        Err(e) => {
            log::warn!("QMP: cannot start a writer thread: {e}");
            return;
        }
    };
    {
        let mut current = lock(&shared.current);
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        *current = Some(Client {
            stream: control_stream,
            tx: tx.clone(),
            negotiated: false,
            dropped_events: 0,
        });
    }
    *lock(&shared.client_seen) = true;
    shared.client_seen_cv.notify_all();
    log::info!("QMP client connected");

    serve_connection(
        &*shared.handler,
        &shared.capabilities,
        &stream,
        |message| tx.send(message).is_ok(),
        || {
            if let Some(client) = lock(&shared.current).as_mut() {
                client.negotiated = true;
            }
        },
    );

    *lock(&shared.current) = None;
    drop(tx);
    if writer.join().is_err() {
        log::error!("QMP writer thread panicked");
    }
    log::info!("QMP client disconnected");
}

#[cfg(test)]
mod tests;
