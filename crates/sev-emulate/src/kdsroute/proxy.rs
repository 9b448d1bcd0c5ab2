//! The loopback CONNECT proxy of `--emulated-kds` and the TLS front behind
//! it (docs/guide/sev-emulate.md#kds).
//!
//! A connection must open with `CONNECT kdsintf.amd.com:443`; any other
//! target is refused (403), any other method too (405). The tunnel is not
//! forwarded anywhere: the proxy itself completes the TLS handshake as
//! `kdsintf.amd.com` (the per-run emulated CA's certificate), reads one
//! request head and hands it to the emulated key server (sev-tools' KDS
//! server on a loopback port), whose answer goes back over TLS. One request
//! per connection; every read and write has a timeout under one deadline
//! per connection; the request heads are capped; at most
//! [`MAX_CONNECTIONS`] connections at once (503 beyond)
//! (docs/protocol/choices.md#u96).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use sev_tools::kds::http::{check_partial, head_end, MAX_HEAD};

use super::KDS_HOST;

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// The time a connection may take from accept to its last byte.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(20);
/// The longest answer taken from the key server (its objects are a few
/// KiB: certificates, a CRL).
const MAX_ANSWER: usize = 1 << 20;
/// How long to wait for the key server to accept.
const BACKEND_CONNECT: Duration = Duration::from_secs(5);
/// The wait after a failed accept (out of descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// What the accept loop needs.
#[derive(Debug)]
pub struct Front {
    pub listener: TcpListener,
    pub tls: Arc<ServerConfig>,
    /// The emulated key server (plain HTTP on loopback).
    pub backend: SocketAddr,
    pub stop: Arc<AtomicBool>,
}

/// Decrements the connection count when a connection's thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Front {
    /// Accepts until the stop flag is set (the launcher then wakes it with
    /// a connection of its own).
    pub fn run(self) {
        let active = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new((self.tls, self.backend));
        while !self.stop.load(Ordering::Acquire) {
            let mut stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    std::thread::sleep(ACCEPT_BACKOFF);
                    continue;
                }
            };
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            if active.load(Ordering::Acquire) >= MAX_CONNECTIONS {
                let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = reply(&mut stream, 503, "too many connections, retry later");
                continue;
            }
            active.fetch_add(1, Ordering::AcqRel);
            let slot = Slot(Arc::clone(&active));
            let shared = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name("kds-tunnel".into())
                .spawn(move || {
                    let _slot = slot;
                    let (tls, backend) = &*shared;
                    if let Err(e) = tunnel(stream, tls, *backend) {
                        log::info!("--emulated-kds: a connection ended: {e}");
                    }
                });
            if let Err(e) = spawned {
                log::warn!("--emulated-kds: cannot start a thread: {e}");
            }
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// An error answer from the proxy (or the front) itself.
fn reply(w: &mut impl Write, status: u16, message: &str) -> io::Result<()> {
    let body = format!(
        "{status} {}: sev-emulate --emulated-kds: {message}\n",
        reason(status)
    );
    let allow = if status == 405 {
        "Allow: CONNECT\r\n"
    } else {
        ""
    };
    write!(
        w,
        "HTTP/1.1 {status} {}\r\n{allow}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    )?;
    w.flush()
}

/// Sets `stream`'s timeouts to what is left before `deadline`.
fn bound(stream: &TcpStream, deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the connection's time is up",
        ));
    }
    stream.set_read_timeout(Some(left))?;
    stream.set_write_timeout(Some(left))
}

/// Why a request head could not be read.
enum HeadFail {
    /// Answer with this status and message.
    Answer(u16, String),
    /// The peer went away or the transport failed: nothing to answer.
    Gone(io::Error),
}

/// Reads a request head byte by byte (nothing after it is consumed: the
/// TLS handshake follows a CONNECT head) within the limits of the key
/// server's parser.
fn read_head(r: &mut impl Read, sock: &TcpStream, deadline: Instant) -> Result<Vec<u8>, HeadFail> {
    let mut buf = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    loop {
        if head_end(&buf).is_some() {
            return Ok(buf);
        }
        if let Err(e) = check_partial(&buf) {
            return Err(HeadFail::Answer(e.status(), e.to_string()));
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadFail::Answer(431, "the request head is too long".into()));
        }
        bound(sock, deadline).map_err(HeadFail::Gone)?;
        match r.read(&mut byte) {
            Ok(0) if buf.is_empty() => {
                return Err(HeadFail::Gone(io::ErrorKind::UnexpectedEof.into()))
            }
            Ok(0) => {
                return Err(HeadFail::Answer(
                    400,
                    "the connection closed mid-request".into(),
                ))
            }
            Ok(_) => buf.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HeadFail::Answer(
                    408,
                    "the request head did not arrive in time".into(),
                ))
            }
            Err(e) => return Err(HeadFail::Gone(e)),
        }
    }
}

/// What a proxy request asks for: `Ok(())` for the key server's CONNECT,
/// else the status and message to refuse it with.
pub fn check_connect(head: &[u8]) -> Result<(), (u16, String)> {
    let line = head
        .split(|b| *b == b'\n')
        .next()
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .unwrap_or_default();
    let line = std::str::from_utf8(line).map_err(|_| (400, "not UTF-8".to_string()))?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err((400, "the request line is not METHOD TARGET VERSION".into()));
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err((400, "bad HTTP version".into()));
    }
    if method != "CONNECT" {
        return Err((
            405,
            format!("this proxy only tunnels CONNECT {KDS_HOST}:443 (the emulated key server)"),
        ));
    }
    let shown: String = target.chars().take(300).collect();
    match target.rsplit_once(':') {
        Some((host, "443")) if host.eq_ignore_ascii_case(KDS_HOST) => Ok(()),
        _ => Err((
            403,
            format!(
                "refused {:?}: this proxy only reaches {KDS_HOST}:443 (the emulated key server)",
                shown
            ),
        )),
    }
}

/// Serves one proxy connection.
fn tunnel(mut stream: TcpStream, tls: &Arc<ServerConfig>, backend: SocketAddr) -> io::Result<()> {
    let deadline = Instant::now() + CONNECTION_DEADLINE;
    let head = match read_head(&mut stream.try_clone()?, &stream, deadline) {
        Ok(h) => h,
        Err(HeadFail::Answer(status, msg)) => return reply(&mut stream, status, &msg),
        Err(HeadFail::Gone(e)) => return Err(e),
    };
    if let Err((status, msg)) = check_connect(&head) {
        return reply(&mut stream, status, &msg);
    }
    stream.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    let conn = ServerConnection::new(Arc::clone(tls))
        .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
    let sock = stream.try_clone()?;
    let mut tls = StreamOwned::new(conn, stream);
    let result = front(&mut tls, &sock, backend, deadline);
    // A TLS error leaves an alert queued: send it (best effort).
    let _ = bound(&sock, deadline);
    let _ = tls.conn.write_tls(&mut tls.sock);
    let _ = sock.shutdown(Shutdown::Both);
    result
}

/// Inside the tunnel: one request to the key server, its answer back.
fn front(
    tls: &mut StreamOwned<ServerConnection, TcpStream>,
    sock: &TcpStream,
    backend: SocketAddr,
    deadline: Instant,
) -> io::Result<()> {
    let head = match read_head(tls, sock, deadline) {
        Ok(h) => h,
        Err(HeadFail::Answer(status, msg)) => {
            bound(sock, deadline)?;
            reply(tls, status, &msg)?;
            tls.conn.send_close_notify();
            return tls.flush();
        }
        Err(HeadFail::Gone(e)) => return Err(e),
    };
    let answer = match ask(backend, &head, deadline) {
        Ok(a) => a,
        Err(e) => {
            bound(sock, deadline)?;
            reply(tls, 502, &format!("the emulated key server: {e}"))?;
            tls.conn.send_close_notify();
            return tls.flush();
        }
    };
    bound(sock, deadline)?;
    tls.write_all(&answer)?;
    tls.conn.send_close_notify();
    tls.flush()
}

/// Sends `head` to the key server and reads its whole answer (it closes
/// the connection after one).
fn ask(backend: SocketAddr, head: &[u8], deadline: Instant) -> io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&backend, BACKEND_CONNECT)?;
    bound(&s, deadline)?;
    s.write_all(head)?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        bound(&s, deadline)?;
        match s.read(&mut chunk) {
            Ok(0) => return Ok(answer),
            Ok(n) => {
                if answer.len() + n > MAX_ANSWER {
                    return Err(io::Error::other(format!(
                        "its answer is longer than {MAX_ANSWER} bytes"
                    )));
                }
                answer.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (c, l.accept().unwrap().0)
    }

    #[test]
    fn a_silent_or_endless_head_ends_in_an_answer_not_a_wait() {
        let (_client, server) = pair();
        let started = Instant::now();
        let deadline = started + Duration::from_millis(200);
        let r = read_head(&mut server.try_clone().unwrap(), &server, deadline);
        assert!(matches!(r, Err(HeadFail::Answer(408, _))));
        assert!(started.elapsed() < Duration::from_secs(5));

        let (mut client, server) = pair();
        client.write_all(&[b'a'; MAX_HEAD + 64]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let r = read_head(&mut server.try_clone().unwrap(), &server, deadline);
        assert!(matches!(r, Err(HeadFail::Answer(414 | 431, _))));

        let (mut client, server) = pair();
        client
            .write_all(b"CONNECT x:443 HTTP/1.1\r\n\r\nEXTRA")
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let r = read_head(&mut server.try_clone().unwrap(), &server, deadline);
        // The head only: what follows (the TLS handshake) stays unread.
        assert!(matches!(r, Ok(h) if h == b"CONNECT x:443 HTTP/1.1\r\n\r\n"));
    }

    #[test]
    fn only_the_key_servers_connect_is_tunnelled() {
        assert_eq!(
            check_connect(b"CONNECT kdsintf.amd.com:443 HTTP/1.1\r\n\r\n"),
            Ok(())
        );
        assert_eq!(
            check_connect(b"CONNECT KDSINTF.amd.com:443 HTTP/1.0\n\n"),
            Ok(())
        );
        for (head, status) in [
            (&b"CONNECT example.com:443 HTTP/1.1\r\n\r\n"[..], 403),
            (b"CONNECT kdsintf.amd.com:80 HTTP/1.1\r\n\r\n", 403),
            (b"CONNECT kdsintf.amd.com.evil:443 HTTP/1.1\r\n\r\n", 403),
            (b"CONNECT kdsintf.amd.com HTTP/1.1\r\n\r\n", 403),
            (b"GET https://kdsintf.amd.com/ HTTP/1.1\r\n\r\n", 405),
            (b"CONNECT kdsintf.amd.com:443 HTTP/2\r\n\r\n", 400),
            (b"CONNECT  kdsintf.amd.com:443 HTTP/1.1\r\n\r\n", 400),
            (b"\xff\r\n\r\n", 400),
        ] {
            assert_eq!(
                check_connect(head).map_err(|e| e.0),
                Err(status),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
