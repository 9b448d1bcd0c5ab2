//! `sev-emulate --emulated-kds` (docs/guide/sev-emulate.md#kds): the
//! program's HTTPS requests to AMD's key server, `https://kdsintf.amd.com/`,
//! reach the platform's emulated key server instead.
//!
//! The launcher starts three things that live as long as the program:
//!
//! * the emulated key server, sev-tools' KDS server over this platform's
//!   issuer, on a loopback port (plain HTTP, as `sev-platform kds serve`);
//! * a loopback CONNECT proxy ([`proxy`]) that accepts only
//!   `CONNECT kdsintf.amd.com:443` and is itself the TLS end of that
//!   tunnel, with a certificate from a per-run emulated CA ([`ca`]);
//! * a private directory (0700, removed at exit) holding that CA
//!   (`kds-tls-ca.pem`) and a bundle of it followed by the system's roots.
//!
//! and sets the program's `HTTPS_PROXY`/`https_proxy` to the proxy,
//! `SSL_CERT_FILE` to the bundle and `SEV_EMULATE_KDS_CA` to the CA, and
//! removes `NO_PROXY`/`no_proxy` (docs/protocol/choices.md#u94).

pub mod ca;
pub mod proxy;

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sev_firmware::emulated::{KdsError, KdsObject};
use sev_proto::snp::kds::KdsRequest;
use sev_psp::Platform;
use sev_tools::kds::server::{KdsServer, KdsSource, ServeOptions, StopHandle};
use zeroize::Zeroize;

/// The host of AMD's key server, as programs have it built in.
pub const KDS_HOST: &str = "kdsintf.amd.com";
/// The environment variable naming the emulated CA alone (PEM).
pub const CA_ENV: &str = "SEV_EMULATE_KDS_CA";
/// The system bundles appended to the emulated CA, the first found (or the
/// launcher's own `SSL_CERT_FILE`).
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];
/// The largest system bundle copied.
const MAX_SYSTEM_BUNDLE: u64 = 8 << 20;
/// How long stopping waits for the servers' threads (the key server
/// drains its requests for up to 5 s).
const STOP_WAIT: Duration = Duration::from_secs(7);
/// The key server's read/write timeout.
const KDS_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the route could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KdsRouteError {
    /// The certificates or the TLS configuration.
    #[error("--emulated-kds: TLS: {0}")]
    Tls(String),
    /// A file, a socket or a thread.
    #[error("--emulated-kds: {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> KdsRouteError {
    let what = what.into();
    move |source| KdsRouteError::Io { what, source }
}

/// The emulated platform's issuer as the key server's source.
struct Issuer(Arc<Platform>);

impl KdsSource for Issuer {
    fn object(&self, req: &KdsRequest) -> Result<KdsObject, KdsError> {
        self.0.kds_object(req)
    }
}

/// The server's one certificate, whatever the client asks for.
#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// The running route; dropping it stops the servers and removes the
/// directory.
#[derive(Debug)]
pub struct KdsRoute {
    dir: tempfile::TempDir,
    proxy: SocketAddr,
    stop: Arc<AtomicBool>,
    kds_stop: StopHandle,
    threads: Vec<JoinHandle<()>>,
    /// Each thread sends once when it ends (so that stopping waits a
    /// bounded time).
    done: (mpsc::Sender<()>, mpsc::Receiver<()>),
}

/// Writes `bytes` to a new file `path` (exclusive, not following links).
fn create(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KdsRouteError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(io_err(format!("writing {}", path.display())))
}

/// The system's roots to append, if any are found (capped).
fn system_bundle() -> Option<Vec<u8>> {
    let own = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    own.into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
        .find_map(|p| {
            let f = std::fs::File::open(&p).ok()?;
            let mut v = Vec::new();
            f.take(MAX_SYSTEM_BUNDLE).read_to_end(&mut v).ok()?;
            (!v.is_empty()).then_some(v)
        })
}

impl KdsRoute {
    /// Starts the key server, the proxy and writes the CA.
    pub fn start(platform: Arc<Platform>) -> Result<KdsRoute, KdsRouteError> {
        let issued = ca::issue()?;
        let dir = tempfile::Builder::new()
            .prefix("sev-emulate-kds.")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(io_err("creating the temporary directory"))?;
        let label = format!(
            "# {}: trusted by this program only because it runs under\n\
             # `sev-emulate --emulated-kds`; it vouches for {KDS_HOST} alone.\n",
            ca::CA_NAME
        );
        let ca_pem = format!("{label}{}", issued.ca_pem);
        create(&dir.path().join("kds-tls-ca.pem"), ca_pem.as_bytes(), 0o644)?;
        let mut bundle = ca_pem.into_bytes();
        if let Some(system) = system_bundle() {
            bundle.extend_from_slice(b"\n# The system's roots:\n");
            bundle.extend_from_slice(&system);
        }
        create(&dir.path().join("bundle.pem"), &bundle, 0o644)?;

        let mut issued = issued;
        // ring's key is made from the PKCS#8, which is then wiped.
        let signing = rustls::crypto::ring::sign::any_ecdsa_type(&issued.key);
        issued.key.zeroize();
        let signing = signing.map_err(|e| KdsRouteError::Tls(e.to_string()))?;
        let certified = Arc::new(CertifiedKey::new(
            std::mem::take(&mut issued.chain),
            signing,
        ));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| KdsRouteError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(OneCert(certified)));

        let server = KdsServer::bind(
            "127.0.0.1:0",
            Arc::new(Issuer(platform)),
            ServeOptions {
                max_connections: proxy::MAX_CONNECTIONS,
                rate_limit: None,
                timeout: KDS_TIMEOUT,
                log: false,
            },
        )
        .map_err(io_err("binding the emulated key server"))?;
        let backend = server
            .local_addr()
            .map_err(io_err("the key server's address"))?;
        let kds_stop = server
            .stop_handle()
            .map_err(io_err("the key server's address"))?;
        let listener = TcpListener::bind("127.0.0.1:0").map_err(io_err("binding the proxy"))?;
        let proxy = listener
            .local_addr()
            .map_err(io_err("the proxy's address"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let front = proxy::Front {
            listener,
            tls: Arc::new(tls),
            backend,
            stop: Arc::clone(&stop),
        };
        let mut route = KdsRoute {
            dir,
            proxy,
            stop,
            kds_stop,
            threads: Vec::new(),
            done: mpsc::channel(),
        };
        let done = route.done.0.clone();
        let kds = std::thread::Builder::new()
            .name("kds-server".into())
            .spawn(move || {
                if let Err(e) = server.run() {
                    log::warn!("--emulated-kds: the key server stopped: {e}");
                }
                let _ = done.send(());
            })
            .map_err(io_err("starting the key server"))?;
        route.threads.push(kds);
        let done = route.done.0.clone();
        let front = std::thread::Builder::new()
            .name("kds-proxy".into())
            .spawn(move || {
                front.run();
                let _ = done.send(());
            })
            .map_err(io_err("starting the proxy"))?;
        route.threads.push(front);
        log::info!(
            "--emulated-kds: {KDS_HOST} answered by the emulated key server through proxy {proxy}, CA {}",
            route.ca_path().display()
        );
        Ok(route)
    }

    /// The proxy's URL.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy)
    }

    /// The emulated CA alone (PEM).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("kds-tls-ca.pem")
    }

    /// The emulated CA followed by the system's roots.
    pub fn bundle_path(&self) -> PathBuf {
        self.dir.path().join("bundle.pem")
    }

    /// The program's environment changes: `(name, Some(value))` to set,
    /// `(name, None)` to remove.
    pub fn env(&self) -> Vec<(OsString, Option<OsString>)> {
        let url = OsString::from(self.proxy_url());
        vec![
            ("HTTPS_PROXY".into(), Some(url.clone())),
            ("https_proxy".into(), Some(url)),
            ("SSL_CERT_FILE".into(), Some(self.bundle_path().into())),
            (CA_ENV.into(), Some(self.ca_path().into())),
            ("NO_PROXY".into(), None),
            ("no_proxy".into(), None),
        ]
    }
}

impl Drop for KdsRoute {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the proxy's accept.
        let _ = TcpStream::connect_timeout(&self.proxy, Duration::from_secs(1));
        self.kds_stop.stop();
        // Both accept loops end at once; the key server waits a bounded
        // time for requests in flight. A thread that was not woken (its
        // wake-up connection failed) is left behind: the process is
        // exiting.
        let deadline = Instant::now() + STOP_WAIT;
        let mut ended = 0;
        while ended < self.threads.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.done.1.recv_timeout(left).is_err() {
                log::warn!("--emulated-kds: a server did not stop within {STOP_WAIT:?}");
                return;
            }
            ended += 1;
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
