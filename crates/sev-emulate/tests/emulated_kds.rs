//! `sev-emulate --emulated-kds` as a program sees it
//! (docs/guide/sev-emulate.md#kds): the test re-runs itself under the
//! launcher and, from inside, talks to the proxy the launcher named in
//! `HTTPS_PROXY`: other hosts and other methods are refused; a tunnel to
//! the key server that does not speak TLS, or speaks bad HTTP inside TLS,
//! gets an error at once; TLS with the per-run CA the launcher named in
//! `SEV_EMULATE_KDS_CA` reaches the emulated key server, for the key
//! server's name only; connections beyond the limit are refused. The
//! launcher removes its directory at exit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const TEST: &str = "the_proxy_reaches_only_the_key_server_over_tls";
/// A client's patience: the launcher's bounds are shorter.
const PATIENCE: Duration = Duration::from_secs(30);

fn proxy() -> String {
    let url = std::env::var("HTTPS_PROXY").unwrap();
    assert_eq!(std::env::var("https_proxy").unwrap(), url);
    url.strip_prefix("http://")
        .unwrap()
        .trim_end_matches('/')
        .to_string()
}

fn connect() -> TcpStream {
    let s = TcpStream::connect(proxy()).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s
}

/// Everything the peer sends until it closes (a timeout fails the test).
fn read_all(r: &mut impl Read) -> Vec<u8> {
    let mut v = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match r.read(&mut chunk) {
            Ok(0) => return v,
            Ok(n) => v.extend_from_slice(&chunk[..n]),
            Err(e) => {
                assert!(
                    !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                    "no answer within {PATIENCE:?}"
                );
                return v;
            }
        }
    }
}

/// Sends a raw proxy request; the whole answer.
fn proxy_request(head: &str) -> String {
    let mut s = connect();
    s.write_all(head.as_bytes()).unwrap();
    String::from_utf8_lossy(&read_all(&mut s)).into_owned()
}

/// A tunnel to the key server: the proxy's 200 read.
fn tunnel() -> TcpStream {
    let mut s = connect();
    s.write_all(b"CONNECT kdsintf.amd.com:443 HTTP/1.1\r\nHost: kdsintf.amd.com:443\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "{head:?}");
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200 "), "{head:?}");
    s
}

fn tls_config(ca: &PathBuf) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// An HTTPS request through the tunnel, as `name`: the answer, or the
/// TLS error.
fn https(config: &Arc<rustls::ClientConfig>, name: &str, request: &str) -> Result<String, String> {
    let conn = rustls::ClientConnection::new(
        Arc::clone(config),
        ServerName::try_from(name.to_string()).unwrap(),
    )
    .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tunnel());
    tls.write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut v = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tls.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => v.extend_from_slice(&chunk[..n]),
            Err(e) if v.is_empty() => return Err(e.to_string()),
            Err(e) => panic!("after {} bytes: {e}", v.len()),
        }
    }
    Ok(String::from_utf8_lossy(&v).into_owned())
}

/// The half that runs under the launcher.
fn child() {
    assert!(std::env::var_os("NO_PROXY").is_none());
    assert!(std::env::var_os("no_proxy").is_none());
    let ca = PathBuf::from(std::env::var_os("SEV_EMULATE_KDS_CA").unwrap());
    let dir = ca.parent().unwrap().to_path_buf();
    println!("kds-dir: {}", dir.display());
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    let ca_text = std::fs::read_to_string(&ca).unwrap();
    assert!(ca_text.contains("EMULATED"), "{ca_text}");
    // The bundle programs trust: the emulated CA first.
    let bundle = PathBuf::from(std::env::var_os("SSL_CERT_FILE").unwrap());
    assert_eq!(bundle.parent(), Some(dir.as_path()));
    assert!(std::fs::read_to_string(&bundle)
        .unwrap()
        .starts_with(&ca_text));

    // Other hosts, other ports, other methods: refused by the proxy.
    let r = proxy_request("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 403 "), "{r}");
    assert!(r.contains("kdsintf.amd.com:443"), "{r}");
    let r = proxy_request("CONNECT kdsintf.amd.com:80 HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 403 "), "{r}");
    let r = proxy_request("GET http://kdsintf.amd.com/vcek/v1/Genoa/cert_chain HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
    let r = proxy_request("garbage\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");

    // Not TLS inside the tunnel: a TLS alert and the end, at once.
    let started = Instant::now();
    let mut t = tunnel();
    t.write_all(b"GET /vcek/v1/Genoa/cert_chain HTTP/1.1\r\n\r\n")
        .unwrap();
    let answer = read_all(&mut t);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(answer.first(), Some(&0x15), "a TLS alert: {answer:?}");

    let config = tls_config(&ca);
    // The key server's objects over TLS.
    let r = https(
        &config,
        "kdsintf.amd.com",
        "GET /vcek/v1/Genoa/cert_chain HTTP/1.1\r\nHost: kdsintf.amd.com\r\n\r\n",
    )
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
    assert_eq!(r.matches("BEGIN CERTIFICATE").count(), 2, "{r}");
    // Bad HTTP inside TLS: the key server's error.
    let r = https(&config, "kdsintf.amd.com", "NOT HTTP\r\n\r\n").unwrap();
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    let r = https(&config, "kdsintf.amd.com", "GET /nothing HTTP/1.1\r\n\r\n").unwrap();
    assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    // The certificate is for the key server's name only.
    let e = https(&config, "example.com", "GET / HTTP/1.1\r\n\r\n").unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    // Beyond 32 connections at once, the proxy answers 503 (idle ones
    // hold their place until they close or their time is up).
    let idle: Vec<TcpStream> = (0..40).map(|_| connect()).collect();
    let mut last = connect();
    let r = String::from_utf8_lossy(&read_all(&mut last)).into_owned();
    assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
    drop(idle);
    println!("child: done");
}

#[test]
fn the_proxy_reaches_only_the_key_server_over_tls() {
    if in_child() {
        child();
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let plat = platform_copy(tmp.path());
    let o = output_within(
        launcher(&plat)
            .arg("--emulated-kds")
            .arg("--")
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            // The caller's settings are replaced.
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("NO_PROXY", "*"),
        DEADLINE,
    );
    let out = text(&o.stdout);
    assert!(
        o.status.success() && out.contains("child: done"),
        "{out}{}",
        text(&o.stderr)
    );
    let dir = out
        .lines()
        .find_map(|l| l.split_once("kds-dir: ").map(|(_, d)| d.trim()))
        .unwrap();
    assert!(!std::path::Path::new(dir).exists(), "{dir} left behind");
}

#[test]
fn without_the_option_nothing_is_set() {
    let tmp = tempfile::tempdir().unwrap();
    let plat = platform_copy(tmp.path());
    let o = output_within(
        launcher(&plat)
            .args([
                "--",
                "sh",
                "-c",
                "echo \"[$HTTPS_PROXY|$SSL_CERT_FILE|$SEV_EMULATE_KDS_CA]\"",
            ])
            .env_remove("HTTPS_PROXY")
            .env_remove("SSL_CERT_FILE")
            .env_remove("SEV_EMULATE_KDS_CA"),
        DEADLINE,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "[||]");
}
