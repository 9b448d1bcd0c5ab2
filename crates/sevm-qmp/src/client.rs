//! A QMP client over a unix socket: the greeting, `qmp_capabilities`, then
//! one request at a time. Asynchronous events that arrive between replies
//! are kept for [`QmpClient::events`] and [`QmpClient::wait_event`].
//!
//! Every wait is bounded: connecting, and each exchange as a whole, by the
//! timeout given at connect time ([`QmpClient::set_timeout`] changes it);
//! a line from the server by [`MAX_LINE`] bytes. A server that stops
//! answering is a [`ClientError::Timeout`], not a hang.
//!
//! Besides the typed use ([`QmpClient::execute`]), the client can send raw
//! bytes and read whole reply objects, for tests of a server's error
//! replies.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

/// The longest line accepted from the server (1 MiB). sevm's largest reply
/// (a `sev-dbg-decrypt` of the inline maximum, base64) is far smaller.
pub const MAX_LINE: usize = 1 << 20;

/// Why a QMP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be connected.
    #[error("cannot connect to QMP socket {}", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("QMP socket I/O")]
    Io(#[source] std::io::Error),
    /// The server did not answer in time.
    #[error("QMP server did not answer within {} ms", timeout.as_millis())]
    Timeout {
        /// The bound that passed.
        timeout: Duration,
    },
    /// The server closed the connection.
    #[error("QMP server closed the connection")]
    Closed,
    /// The server sent something that is not QMP.
    #[error("QMP protocol error: {0}")]
    Protocol(String),
    /// A command failed (QMP `error` reply).
    #[error("QMP {command} failed: {class}: {desc}")]
    Command {
        /// The command.
        command: String,
        /// The error class (e.g. `GenericError`).
        class: String,
        /// The description.
        desc: String,
    },
}

/// A connected QMP session.
#[derive(Debug)]
pub struct QmpClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    greeting: Value,
    events: Vec<Value>,
    next_id: u64,
    timeout: Duration,
}

/// Connects to `path` within `timeout`. A unix `connect` fails at once
/// when nobody listens, but blocks while the listener's backlog is full;
/// the attempt runs on a helper thread so that case is bounded too.
fn connect_bounded(path: &Path, timeout: Duration) -> Result<UnixStream, ClientError> {
    let (tx, rx) = mpsc::channel();
    let target = path.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("qmp-connect".into())
        .spawn(move || {
            let _ = tx.send(UnixStream::connect(&target));
        });
    let result = match spawned {
        Ok(_) => match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(_) => return Err(ClientError::Timeout { timeout }),
        },
        // No thread to spare: connect directly.
        Err(_) => UnixStream::connect(path),
    };
    result.map_err(|source| ClientError::Connect {
        path: path.to_path_buf(),
        source,
    })
}

fn io_error(e: std::io::Error, timeout: Duration) -> ClientError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            ClientError::Timeout { timeout }
        }
        _ => ClientError::Io(e),
    }
}

impl QmpClient {
    /// Connects to `path`, reads the greeting and negotiates capabilities
    /// (none enabled). `timeout` bounds the connect and every exchange.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, ClientError> {
        let mut client = Self::connect_without_negotiation(path, timeout)?;
        client.negotiate()?;
        Ok(client)
    }

    /// Connects to `path` and reads the greeting, leaving capabilities
    /// negotiation to the caller (to test a server's negotiation stage).
    pub fn connect_without_negotiation(
        path: &Path,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let stream = connect_bounded(path, timeout)?;
        Self::from_stream_without_negotiation(stream, timeout)
    }

    /// [`QmpClient::connect`] on an already connected stream.
    pub fn from_stream(stream: UnixStream, timeout: Duration) -> Result<Self, ClientError> {
        let mut client = Self::from_stream_without_negotiation(stream, timeout)?;
        client.negotiate()?;
        Ok(client)
    }

    /// [`QmpClient::connect_without_negotiation`] on an already connected
    /// stream.
    pub fn from_stream_without_negotiation(
        stream: UnixStream,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        stream
            .set_write_timeout(Some(timeout))
            .map_err(ClientError::Io)?;
        let writer = stream.try_clone().map_err(ClientError::Io)?;
        let mut client = QmpClient {
            reader: BufReader::new(stream),
            writer,
            greeting: Value::Null,
            events: Vec::new(),
            next_id: 1,
            timeout,
        };
        let greeting = client.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(ClientError::Protocol(format!(
                "expected the QMP greeting, got {greeting}"
            )));
        }
        client.greeting = greeting;
        Ok(client)
    }

    /// Sends `qmp_capabilities` (no capabilities enabled).
    pub fn negotiate(&mut self) -> Result<(), ClientError> {
        self.execute("qmp_capabilities", None).map(drop)
    }

    /// The server's greeting (`{"QMP": {...}}`).
    pub fn greeting(&self) -> &Value {
        &self.greeting
    }

    /// The bound of each exchange.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes the bound of each exchange (and of writes).
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), ClientError> {
        self.writer
            .set_write_timeout(Some(timeout))
            .map_err(ClientError::Io)?;
        self.timeout = timeout;
        Ok(())
    }

    /// Events received so far, oldest first (drained).
    pub fn events(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.events)
    }

    /// Sends raw bytes (a request, or anything else to test a server).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.writer
            .write_all(bytes)
            .map_err(|e| io_error(e, self.timeout))
    }

    /// The next message of any kind (reply or event), within the timeout.
    pub fn read_message(&mut self) -> Result<Value, ClientError> {
        self.read_message_by(Instant::now() + self.timeout)
    }

    fn read_message_by(&mut self, deadline: Instant) -> Result<Value, ClientError> {
        let timeout = self.timeout;
        let mut line = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout { timeout });
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(left))
                .map_err(ClientError::Io)?;
            line.clear();
            let n = Read::by_ref(&mut self.reader)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut line)
                .map_err(|e| io_error(e, timeout))?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            if line.last() != Some(&b'\n') && n >= MAX_LINE {
                return Err(ClientError::Protocol(format!(
                    "line longer than {MAX_LINE} bytes"
                )));
            }
            let text = String::from_utf8_lossy(&line);
            if text.trim().is_empty() {
                continue;
            }
            return serde_json::from_str(text.trim())
                .map_err(|e| ClientError::Protocol(format!("invalid JSON from the server: {e}")));
        }
    }

    /// The next message that is not an event (events are kept for
    /// [`QmpClient::events`]), within the timeout.
    pub fn next_reply(&mut self) -> Result<Value, ClientError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let message = self.read_message_by(deadline)?;
            if message.get("event").is_some() {
                self.events.push(message);
            } else {
                return Ok(message);
            }
        }
    }

    /// Sends `{"execute": command, "arguments": arguments}` (no `id`) and
    /// returns the whole reply object, `return` or `error`.
    pub fn request(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, ClientError> {
        let mut text = request_text(command, arguments, None);
        text.push('\n');
        self.send_raw(text.as_bytes())?;
        self.next_reply()
    }

    /// Runs `command` with `arguments` and returns its `return` value; an
    /// `error` reply is [`ClientError::Command`]. The request carries an
    /// `id`; replies to other ids are skipped.
    pub fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut text = request_text(command, arguments, Some(id));
        text.push('\n');
        self.send_raw(text.as_bytes())?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let msg = self.read_message_by(deadline)?;
            if msg.get("event").is_some() {
                self.events.push(msg);
                continue;
            }
            if msg.get("id").is_some_and(|v| v != &json!(id)) {
                continue;
            }
            if let Some(ret) = msg.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = msg.get("error") {
                let s = |k: &str| {
                    err.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_string()
                };
                return Err(ClientError::Command {
                    command: command.to_string(),
                    class: s("class"),
                    desc: s("desc"),
                });
            }
            return Err(ClientError::Protocol(format!("unexpected message {msg}")));
        }
    }

    /// Waits for the event `name` (returning it at once if it already
    /// arrived); other events are kept. Bounded by the timeout.
    pub fn wait_event(&mut self, name: &str) -> Result<Value, ClientError> {
        if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
            return Ok(self.events.remove(i));
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            let message = self.read_message_by(deadline)?;
            if message["event"] == name {
                return Ok(message);
            }
            if message.get("event").is_some() {
                self.events.push(message);
            }
        }
    }
}

fn request_text(command: &str, arguments: Option<Value>, id: Option<u64>) -> String {
    let mut req = Map::new();
    req.insert("execute".into(), json!(command));
    if let Some(args) = arguments {
        req.insert("arguments".into(), args);
    }
    if let Some(id) = id {
        req.insert("id".into(), json!(id));
    }
    Value::Object(req).to_string()
}

/// A string member of a QMP return object.
pub fn str_member<'a>(v: &'a Value, name: &str) -> Result<&'a str, ClientError> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ClientError::Protocol(format!("reply lacks string member {name:?}: {v}")))
}

/// An unsigned integer member of a QMP return object.
pub fn u64_member(v: &Value, name: &str) -> Result<u64, ClientError> {
    v.get(name)
        .and_then(Value::as_u64)
        .ok_or_else(|| ClientError::Protocol(format!("reply lacks integer member {name:?}: {v}")))
}

#[cfg(test)]
mod tests;
