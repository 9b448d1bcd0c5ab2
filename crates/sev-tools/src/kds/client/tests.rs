//! The client against a tiny scripted HTTP server on 127.0.0.1.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use sev_proto::snp::chain::VekKind;
use sev_proto::snp::{Product, TcbVersion};

use super::*;

/// One scripted answer.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Declared Content-Length larger than the body, then a long pause
    /// (a server that stalls mid-body).
    stall: bool,
}

fn answer(status: u16, body: &[u8]) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body: body.to_vec(),
        stall: false,
    }
}

/// Serves `script` (one connection per answer) and reports each request
/// line's path; returns the base URL.
fn serve(script: Vec<Answer>) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for a in script {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let _ = tx.send(path);
            let mut out = stream;
            let len = if a.stall {
                a.body.len() + 100
            } else {
                a.body.len()
            };
            let mut head = format!(
                "HTTP/1.1 {} X\r\nContent-Length: {len}\r\nConnection: close\r\n",
                a.status
            );
            for (k, v) in &a.headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = out.write_all(head.as_bytes());
            let _ = out.write_all(&a.body);
            let _ = out.flush();
            if a.stall {
                thread::sleep(Duration::from_secs(3));
            }
        }
    });
    (base, rx)
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_total_wait: Duration::from_secs(5),
    }
}

fn milan_vcek() -> KdsRequest {
    KdsRequest::Vcek {
        product: Product::Milan,
        chip_id: [0xab; 64],
        tcb: TcbVersion {
            fmc: 0,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
        },
    }
}

#[test]
fn throttling_is_retried_honouring_retry_after() {
    let mut throttled = answer(429, b"slow down");
    throttled.headers.push(("Retry-After", "1".into()));
    let (base, paths) = serve(vec![throttled, answer(503, b""), answer(200, b"vcek")]);
    let client = KdsClient::new(&base).unwrap().with_retry(fast());
    let start = Instant::now();
    assert_eq!(client.fetch(&milan_vcek()).unwrap(), b"vcek");
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "Retry-After ignored"
    );
    let want = milan_vcek().path_and_query();
    assert_eq!(
        paths.try_iter().collect::<Vec<_>>(),
        [want.clone(), want.clone(), want]
    );
}

#[test]
fn throttling_gives_up_after_the_attempts_or_the_wait_budget() {
    let (base, _) = serve(vec![answer(503, b""); 3]);
    let client = KdsClient::new(&base).unwrap().with_retry(fast());
    let e = client.fetch(&milan_vcek()).unwrap_err();
    assert!(
        matches!(
            e,
            KdsError::Throttled {
                status: 503,
                attempts: 3,
                ..
            }
        ),
        "{e}"
    );

    let mut long = answer(429, b"");
    long.headers.push(("Retry-After", "3600".into()));
    let (base, _) = serve(vec![long]);
    let client = KdsClient::new(&base).unwrap().with_retry(fast());
    let start = Instant::now();
    let e = client.fetch(&milan_vcek()).unwrap_err().to_string();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "waited for 3600 s?"
    );
    assert!(e.contains("HTTP 429 after 1 attempt(s)"), "{e}");
    assert!(e.contains("Retry-After") && e.contains("exceeds"), "{e}");
}

#[test]
fn not_found_names_the_url_and_other_statuses_fail() {
    let (base, _) = serve(vec![answer(404, b"no"), answer(500, b"oops")]);
    let client = KdsClient::new(&format!("{base}/"))
        .unwrap()
        .with_retry(fast());
    let request = KdsRequest::Cek { chip_id: [1; 64] };
    let e = client.fetch(&request).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("{base}/cek/id/{}: not found (HTTP 404)", "01".repeat(64))
    );
    let e = client.fetch(&request).unwrap_err();
    assert!(matches!(e, KdsError::Status { status: 500, .. }), "{e}");
}

#[test]
fn oversize_and_stalled_bodies_are_refused_in_bounded_time() {
    let big = vec![b'x'; 17 << 10];
    let mut stalled = answer(200, b"part of a VCEK");
    stalled.stall = true;
    let (base, _) = serve(vec![answer(200, &big), stalled]);
    let client = KdsClient::new(&base)
        .unwrap()
        .with_retry(fast())
        .with_timeouts(Duration::from_secs(2), Duration::from_millis(500));
    let e = client.fetch(&milan_vcek()).unwrap_err();
    assert!(matches!(e, KdsError::TooLarge { max: 16384, .. }), "{e}");
    let start = Instant::now();
    let e = client.fetch(&milan_vcek()).unwrap_err();
    assert!(matches!(e, KdsError::Transport { .. }), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the total timeout did not apply"
    );
}

#[test]
fn bad_base_urls_are_refused() {
    for bad in [
        "kdsintf.amd.com",
        "ftp://x",
        "https://",
        "http://h/?q",
        "file:///tmp",
    ] {
        assert!(
            matches!(KdsClient::new(bad), Err(KdsError::BadBase(_))),
            "{bad}"
        );
    }
    assert_eq!(
        KdsClient::new("HTTPS://kds/").unwrap().base(),
        "HTTPS://kds"
    );
}

#[test]
fn the_cache_names_objects_by_request_and_the_offline_mode_says_what_is_missing() {
    assert_eq!(
        file_name(&milan_vcek()),
        format!("vcek-Milan-{}-bl3-tee0-snp8-ucode115.der", "ab".repeat(64))
    );
    let turin = KdsRequest::Vcek {
        product: Product::Turin,
        chip_id: [0xcd; 64],
        tcb: TcbVersion::default(),
    };
    assert_eq!(
        file_name(&turin),
        format!(
            "vcek-Turin-{}-fmc0-bl0-tee0-snp0-ucode0.der",
            "cd".repeat(8)
        )
    );
    let chain = KdsRequest::CertChain {
        product: Product::Genoa,
        kind: VekKind::Vlek,
    };
    assert_eq!(file_name(&chain), "vlek-Genoa-cert_chain.pem");
    let crl = KdsRequest::Crl {
        product: Product::Milan,
        kind: VekKind::Vcek,
    };
    assert_eq!(file_name(&crl), "vcek-Milan.crl");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kds");
    let source = KdsSource {
        cache: Some(Cache::new(&dir)),
        client: None,
        offline_base: String::new(),
    };
    let e = source.get(&crl).unwrap_err().to_string();
    assert!(e.contains("vcek-Milan.crl is not in the KDS cache"), "{e}");
    assert!(
        e.contains("https://kdsintf.amd.com/vcek/v1/Milan/crl"),
        "{e}"
    );

    let fetched = Obtained {
        bytes: b"crl".to_vec(),
        origin: Origin::Fetched("u".into()),
    };
    let path = source.remember(&crl, &fetched).unwrap().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&dir), mode(&path)), (0o700, 0o600));
    let got = source.get(&crl).unwrap();
    assert_eq!(
        (got.bytes.as_slice(), got.origin),
        (&b"crl"[..], Origin::Cache(path.clone()))
    );
    // What came from the cache is not written again.
    assert_eq!(
        source.remember(&crl, &source.get(&crl).unwrap()).unwrap(),
        None
    );

    // Reads are capped and never follow a link.
    std::fs::write(&path, vec![0u8; (256 << 10) + 1]).unwrap();
    assert!(matches!(
        source.get(&crl),
        Err(KdsError::Io(IoError::TooLarge { .. }))
    ));
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
    assert!(matches!(
        source.get(&crl),
        Err(KdsError::Io(IoError::Read { .. }))
    ));
}

#[test]
fn a_fetched_object_comes_from_the_server_when_not_cached() {
    let (base, paths) = serve(vec![answer(200, b"chain")]);
    let tmp = tempfile::tempdir().unwrap();
    let chain = KdsRequest::CertChain {
        product: Product::Milan,
        kind: VekKind::Vcek,
    };
    let source = KdsSource {
        cache: Some(Cache::new(tmp.path())),
        client: Some(KdsClient::new(&base).unwrap().with_retry(fast())),
        offline_base: String::new(),
    };
    let got = source.get(&chain).unwrap();
    assert_eq!(got.bytes, b"chain");
    assert_eq!(
        got.origin,
        Origin::Fetched(format!("{base}/vcek/v1/Milan/cert_chain"))
    );
    assert_eq!(paths.recv().unwrap(), "/vcek/v1/Milan/cert_chain");
    source.remember(&chain, &got).unwrap();
    assert_eq!(source.get(&chain).unwrap().origin.kind(), "cache");
}

#[test]
fn each_service_has_its_own_cache_directory() {
    assert_eq!(service_dir(AMD_KDS_BASE), "kdsintf.amd.com");
    assert_eq!(service_dir("https://KDSINTF.amd.com/"), "kdsintf.amd.com");
    assert_eq!(service_dir("http://127.0.0.1:8080"), "127.0.0.1_8080");
    assert_eq!(service_dir("http://[::1]:80/kds/"), "___1__80_kds");
    assert_eq!(service_dir("http://../.."), "_");
    assert_eq!(service_dir("http://.."), "_");
    assert_eq!(service_dir("https://"), "_");
}
