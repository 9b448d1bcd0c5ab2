//! `sev-platform kds serve`: an HTTP/1.1 server with AMD's KDS URL grammar
//! over an emulated platform's issuer (docs/guide/kds.md).
//!
//! One thread per connection, at most `max_connections` at once (503 beyond);
//! every read and write has a timeout and the whole request head must
//! arrive within one; one request per connection (`Connection: close`);
//! optional global rate limit (429 with `Retry-After`). Answers are cached
//! for a minute (the issuer's answers are deterministic, see
//! docs/protocol/choices.md#u66), except the CRL, which the administrator
//! may change.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sev_firmware::emulated::{EmulatedPlatform, KdsError, KdsObject};
use sev_proto::snp::kds::{KdsRequest, KdsUrlError};

use super::http::{self, Method};

/// What the server answers from: the emulated platform's issuer, or
/// anything else that issues KDS objects (tests, benchmarks).
pub trait KdsSource: Send + Sync {
    /// The object for `req`.
    fn object(&self, req: &KdsRequest) -> Result<KdsObject, KdsError>;
}

impl KdsSource for EmulatedPlatform {
    fn object(&self, req: &KdsRequest) -> Result<KdsObject, KdsError> {
        self.firmware().kds_object(req)
    }
}

/// The server's limits.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Most connections served at once (503 beyond).
    pub max_connections: usize,
    /// Requests per second over all clients (429 beyond); `None`: no limit.
    pub rate_limit: Option<f64>,
    /// Read and write timeout, and the time the request head may take.
    pub timeout: Duration,
    /// Print one line per request on stderr.
    pub log: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_connections: 64,
            rate_limit: None,
            timeout: Duration::from_secs(10),
            log: true,
        }
    }
}

/// How long an answer stays in the cache.
const CACHE_TTL: Duration = Duration::from_secs(60);
/// Most cached answers (the cache is emptied when full).
const CACHE_MAX: usize = 1024;
/// How often a stopping server looks whether its requests are done, and
/// how long it waits after a failed accept.
const POLL: Duration = Duration::from_millis(20);
/// How long a stopping server waits for the requests in flight.
const DRAIN: Duration = Duration::from_secs(5);

/// A token bucket: `rate` tokens a second, at most `burst` saved.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Self {
        let burst = rate.ceil().max(1.0);
        Bucket {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes a token, or says in how many whole seconds one will be there.
    fn take(&mut self) -> Result<(), u64> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - self.tokens) / self.rate).ceil();
        // A float in [1, 2^53): the cast cannot truncate a meaningful value.
        Err(if wait.is_finite() && wait >= 1.0 {
            wait.min(3600.0) as u64
        } else {
            1
        })
    }
}

/// Counters of a server's life.
#[derive(Debug, Default)]
pub struct ServeStats {
    /// Requests answered (any status).
    pub requests: AtomicU64,
    /// Connections refused with 503.
    pub refused: AtomicU64,
    /// Requests refused with 429.
    pub limited: AtomicU64,
}

struct Shared {
    source: Arc<dyn KdsSource>,
    options: ServeOptions,
    cache: Mutex<HashMap<String, (Instant, Arc<KdsObject>)>>,
    bucket: Option<Mutex<Bucket>>,
    stats: Arc<ServeStats>,
}

/// Stops a running [`KdsServer`]: sets its flag and wakes its blocking
/// `accept` with a connection of its own.
#[derive(Debug, Clone)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl StopHandle {
    /// Asks the server to stop; it finishes the requests in flight (a
    /// bounded time) and [`KdsServer::run`] returns.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::Release);
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            let loopback: std::net::IpAddr = if wake.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            wake.set_ip(loopback);
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
    }
}

/// A bound server, not yet running.
pub struct KdsServer {
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for KdsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KdsServer")
            .field("addr", &self.listener.local_addr().ok())
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

/// One answer.
struct Response {
    status: u16,
    content_type: &'static str,
    body: Arc<Vec<u8>>,
    retry_after: Option<u64>,
    allow: bool,
}

impl Response {
    fn object(obj: &KdsObject) -> Self {
        Response {
            status: 200,
            content_type: obj.content_type.mime(),
            body: Arc::new(obj.bytes.clone()),
            retry_after: None,
            allow: false,
        }
    }

    fn error(status: u16, message: &str) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Arc::new(format!("{status} {}: {message}\n", reason(status)).into_bytes()),
            retry_after: None,
            allow: status == 405,
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// The status a KDS URL error is answered with.
pub fn url_error_status(e: &KdsUrlError) -> u16 {
    match e {
        KdsUrlError::TooLong(_) => 414,
        KdsUrlError::UnknownPath(_) | KdsUrlError::UnknownProduct(_) => 404,
        KdsUrlError::BadHwid { .. }
        | KdsUrlError::BadQuery(_)
        | KdsUrlError::UnexpectedQuery(_) => 400,
    }
}

fn write_response(stream: &mut TcpStream, r: &Response, head_only: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nServer: sevm-kds\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    if let Some(secs) = r.retry_after {
        head.push_str(&format!("Retry-After: {secs}\r\n"));
    }
    if r.allow {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(&r.body)?;
    }
    stream.flush()
}

/// Reads the request head within `timeout` in all.
fn read_head(stream: &mut TcpStream, timeout: Duration) -> Result<Vec<u8>, Response> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = http::head_end(&buf) {
            buf.truncate(end);
            return Ok(buf);
        }
        if let Err(e) = http::check_partial(&buf) {
            return Err(Response::error(e.status(), &e.to_string()));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(Response::error(
                408,
                "the request head did not arrive in time",
            ));
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(Response::error(400, "the connection closed mid-request")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                return Err(Response::error(
                    408,
                    "the request head did not arrive in time",
                ))
            }
        }
    }
}

impl Shared {
    fn answer(&self, req: &KdsRequest) -> Response {
        let key = req.to_string();
        let cacheable = !matches!(req, KdsRequest::Crl { .. });
        if cacheable {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((at, obj)) = cache.get(&key) {
                if at.elapsed() < CACHE_TTL {
                    return Response::object(obj);
                }
            }
        }
        match self.source.object(req) {
            Ok(obj) => {
                let response = Response::object(&obj);
                if cacheable {
                    let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
                    if cache.len() >= CACHE_MAX {
                        cache.clear();
                    }
                    cache.insert(key, (Instant::now(), Arc::new(obj)));
                }
                response
            }
            Err(KdsError::NotFound(why)) => Response::error(404, &why),
            Err(KdsError::Failed(why)) => Response::error(500, &why),
        }
    }

    fn handle(&self, stream: &mut TcpStream) -> (String, Response, bool) {
        let head = match read_head(stream, self.options.timeout) {
            Ok(h) => h,
            Err(r) => return ("-".into(), r, false),
        };
        let head = match http::parse_head(&head) {
            Ok(h) => h,
            Err(e) => {
                return (
                    "-".into(),
                    Response::error(e.status(), &e.to_string()),
                    false,
                )
            }
        };
        let line = format!("{} {}", head.method_name, head.target);
        let head_only = head.method == Method::Head;
        if head.method == Method::Other {
            let r = Response::error(405, "only GET and HEAD");
            return (line, r, false);
        }
        if let Some(bucket) = &self.bucket {
            let taken = bucket.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Err(secs) = taken {
                self.stats.limited.fetch_add(1, Ordering::Relaxed);
                let mut r = Response::error(429, "rate limit exceeded, retry later");
                r.retry_after = Some(secs);
                return (line, r, head_only);
            }
        }
        let r = match KdsRequest::parse(&head.target) {
            Ok(req) => self.answer(&req),
            Err(e) => Response::error(url_error_status(&e), &e.to_string()),
        };
        (line, r, head_only)
    }

    fn serve_connection(&self, mut stream: TcpStream, peer: SocketAddr) {
        let started = Instant::now();
        let _ = stream.set_write_timeout(Some(self.options.timeout));
        let (line, response, head_only) = self.handle(&mut stream);
        let written = write_response(&mut stream, &response, head_only);
        let _ = stream.shutdown(Shutdown::Write);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        if self.options.log {
            eprintln!(
                "kds: {peer} \"{}\" {} {} {}ms{}",
                line.escape_debug(),
                response.status,
                response.body.len(),
                started.elapsed().as_millis(),
                match written {
                    Ok(()) => String::new(),
                    Err(e) => format!(" (write failed: {e})"),
                }
            );
        }
    }
}

/// Decrements the connection count when a connection's thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl KdsServer {
    /// Binds `addr` (port 0: any free port) to serve `source`.
    pub fn bind(
        addr: &str,
        source: Arc<dyn KdsSource>,
        options: ServeOptions,
    ) -> io::Result<KdsServer> {
        if options.max_connections == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "max_connections must be at least 1",
            ));
        }
        if let Some(r) = options.rate_limit {
            if !(r.is_finite() && r > 0.0) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the rate limit must be a positive number of requests a second",
                ));
            }
        }
        let listener = TcpListener::bind(addr)?;
        Ok(KdsServer {
            listener,
            shared: Arc::new(Shared {
                source,
                bucket: options.rate_limit.map(|r| Mutex::new(Bucket::new(r))),
                options,
                cache: Mutex::new(HashMap::new()),
                stats: Arc::new(ServeStats::default()),
            }),
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that stops [`KdsServer::run`] from another thread.
    pub fn stop_handle(&self) -> io::Result<StopHandle> {
        Ok(StopHandle {
            flag: Arc::clone(&self.stop),
            addr: self.listener.local_addr()?,
        })
    }

    /// The server's counters.
    pub fn stats(&self) -> Arc<ServeStats> {
        Arc::clone(&self.shared.stats)
    }

    /// Serves until the stop flag is set, then waits (a bounded time) for
    /// the requests in flight.
    pub fn run(self) -> io::Result<()> {
        let active = Arc::new(AtomicUsize::new(0));
        while !self.stop.load(Ordering::Acquire) {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Out of descriptors, a connection reset before accept: wait and go on.
                Err(_) => {
                    std::thread::sleep(POLL);
                    continue;
                }
            };
            if self.stop.load(Ordering::Acquire) {
                // The stop handle's wake-up (or a client as the server stops).
                break;
            }
            if active.load(Ordering::Acquire) >= self.shared.options.max_connections {
                self.shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                let mut r = Response::error(503, "too many connections, retry later");
                r.retry_after = Some(1);
                let _ = write_response(&mut stream, &r, false);
                let _ = stream.shutdown(Shutdown::Write);
                if self.shared.options.log {
                    eprintln!("kds: {peer} refused: 503 (too many connections)");
                }
                continue;
            }
            active.fetch_add(1, Ordering::AcqRel);
            let slot = Slot(Arc::clone(&active));
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new()
                .name("kds-conn".into())
                .spawn(move || {
                    let _slot = slot;
                    shared.serve_connection(stream, peer);
                });
            if let Err(e) = spawned {
                // The closure (with its slot) was dropped: the count is back.
                if self.shared.options.log {
                    eprintln!("kds: {peer} dropped: cannot start a thread: {e}");
                }
            }
        }
        let deadline = Instant::now() + DRAIN;
        while active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_refuses_beyond_its_rate_and_says_when_to_retry() {
        let mut b = Bucket::new(2.0);
        assert_eq!(b.take(), Ok(()));
        assert_eq!(b.take(), Ok(()));
        assert_eq!(b.take(), Err(1));
        let mut slow = Bucket::new(0.1);
        assert_eq!(slow.take(), Ok(()));
        assert!(matches!(slow.take(), Err(s) if (9..=10).contains(&s)));
    }

    #[test]
    fn url_errors_map_to_kds_statuses() {
        for (path, status) in [
            ("/vcek/v1/Rome/cert_chain", 404),
            ("/nothing", 404),
            ("/vcek/v1/Milan/cert_chain?x=1", 400),
            ("/vcek/v1/Milan/00", 400),
        ] {
            let e = KdsRequest::parse(path).expect_err(path);
            assert_eq!(url_error_status(&e), status, "{path}");
        }
    }
}
