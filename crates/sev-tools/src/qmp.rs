//! A small QMP client (QEMU Machine Protocol over a unix socket): greeting,
//! `qmp_capabilities`, then one command at a time. Asynchronous events that
//! arrive between replies are kept for [`Qmp::events`].

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Map, Value};

/// The longest line accepted from the server.
const MAX_LINE: usize = 1 << 20;

/// Why a QMP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
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

/// A connected, negotiated QMP session.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    greeting: Value,
    events: Vec<Value>,
    next_id: u64,
}

impl Qmp {
    /// Connects to `path`, reads the greeting and negotiates capabilities.
    /// `timeout` bounds every read (a VMM that stops answering is an error,
    /// not a hang).
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let stream = UnixStream::connect(path).map_err(|source| QmpError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_stream(stream, timeout)
    }

    /// Negotiates on an already connected stream.
    pub fn from_stream(stream: UnixStream, timeout: Duration) -> Result<Self, QmpError> {
        stream
            .set_read_timeout(Some(timeout))
            .map_err(QmpError::Io)?;
        let writer = stream.try_clone().map_err(QmpError::Io)?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
            greeting: Value::Null,
            events: Vec::new(),
            next_id: 1,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!(
                "expected the QMP greeting, got {greeting}"
            )));
        }
        qmp.greeting = greeting;
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// The server's greeting.
    pub fn greeting(&self) -> &Value {
        &self.greeting
    }

    /// Events received so far (drained).
    pub fn events(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.events)
    }

    fn read_message(&mut self) -> Result<Value, QmpError> {
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = std::io::Read::by_ref(&mut self.reader)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut line)
                .map_err(QmpError::Io)?;
            if n == 0 {
                return Err(QmpError::Closed);
            }
            if line.last() != Some(&b'\n') && n >= MAX_LINE {
                return Err(QmpError::Protocol(format!(
                    "line longer than {MAX_LINE} bytes"
                )));
            }
            let text = String::from_utf8_lossy(&line);
            if text.trim().is_empty() {
                continue;
            }
            return serde_json::from_str(text.trim())
                .map_err(|e| QmpError::Protocol(format!("invalid JSON from the server: {e}")));
        }
    }

    /// Runs `command` with `arguments` and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut req = Map::new();
        req.insert("execute".into(), json!(command));
        if let Some(args) = arguments {
            req.insert("arguments".into(), args);
        }
        req.insert("id".into(), json!(id));
        let mut text = Value::Object(req).to_string();
        text.push('\n');
        self.writer
            .write_all(text.as_bytes())
            .map_err(QmpError::Io)?;
        loop {
            let msg = self.read_message()?;
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
                return Err(QmpError::Command {
                    command: command.to_string(),
                    class: s("class"),
                    desc: s("desc"),
                });
            }
            return Err(QmpError::Protocol(format!("unexpected message {msg}")));
        }
    }
}

/// A string member of a QMP return object.
pub fn str_member<'a>(v: &'a Value, name: &str) -> Result<&'a str, QmpError> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| QmpError::Protocol(format!("reply lacks string member {name:?}: {v}")))
}

/// An unsigned integer member of a QMP return object.
pub fn u64_member(v: &Value, name: &str) -> Result<u64, QmpError> {
    v.get(name)
        .and_then(Value::as_u64)
        .ok_or_else(|| QmpError::Protocol(format!("reply lacks integer member {name:?}: {v}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    /// A scripted server: greeting, then answers each request with the next
    /// canned reply (an event first for the second request).
    #[test]
    fn negotiates_skips_events_and_maps_errors() {
        let (client, server) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            let mut w = server.try_clone().unwrap();
            let mut r = BufReader::new(server);
            writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            let mut line = String::new();
            let mut seen = Vec::new();
            for reply in [
                r#"{"return": {}, "id": 1}"#,
                "{\"event\": \"RESUME\"}\r\n{\"return\": {\"x\": 1}, \"id\": 2}",
                r#"{"error": {"class": "GenericError", "desc": "nope"}, "id": 3}"#,
            ] {
                line.clear();
                r.read_line(&mut line).unwrap();
                seen.push(line.clone());
                writeln!(w, "{reply}").unwrap();
            }
            seen
        });
        let mut q = Qmp::from_stream(client, Duration::from_secs(30)).unwrap();
        assert_eq!(q.execute("query-status", None).unwrap(), json!({"x": 1}));
        assert_eq!(q.events().len(), 1);
        let e = q.execute("cont", Some(json!({"a": 1}))).unwrap_err();
        assert_eq!(e.to_string(), "QMP cont failed: GenericError: nope");
        let seen = t.join().unwrap();
        assert!(seen[0].contains("qmp_capabilities"));
        assert!(seen[2].contains(r#""arguments":{"a":1}"#), "{}", seen[2]);
    }

    #[test]
    fn closed_and_garbage_servers_are_errors() {
        let (client, server) = UnixStream::pair().unwrap();
        drop(server);
        assert!(matches!(
            Qmp::from_stream(client, Duration::from_secs(30)),
            Err(QmpError::Closed)
        ));
        let (client, mut server) = UnixStream::pair().unwrap();
        writeln!(server, "not json").unwrap();
        assert!(matches!(
            Qmp::from_stream(client, Duration::from_secs(30)),
            Err(QmpError::Protocol(_))
        ));
    }
}
