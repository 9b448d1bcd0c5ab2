//! `sev-owner snp verify` taking the VCEK, the cert_chain and the CRL from
//! a key distribution service (an in-test server on 127.0.0.1) and its
//! cache, with chains made by the test issuer: where each object came from,
//! the offline mode, throttling, and the tamper matrix (a VCEK for other
//! SPLs, a wrong ASK or ARK, a revoked ASK, a CRL of another key).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::*;
use sev_proto::snp::kds::KdsRequest;
use sev_proto::snp::testing::TestIssuer;
use sev_proto::snp::{Product, TcbVersion};

const CHIP: [u8; 64] = [0x42; 64];

fn tcb() -> TcbVersion {
    TcbVersion {
        fmc: 0,
        bootloader: 3,
        tee: 0,
        snp: 8,
        microcode: 115,
    }
}

/// What the server answers for a request: status, headers, body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);
type Handler = dyn Fn(&KdsRequest, usize) -> Answer + Send + Sync;

/// A KDS on 127.0.0.1: every request is parsed with the KDS grammar and
/// handed to `handler` with the number of earlier requests; unknown paths
/// get 404. Returns the base URL and the paths asked for.
fn kds(handler: Box<Handler>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let n = {
                let mut seen = log.lock().unwrap();
                seen.push(path.clone());
                seen.len() - 1
            };
            let (status, headers, body) = match KdsRequest::parse(&path) {
                Ok(request) => handler(&request, n),
                Err(e) => (400, Vec::new(), e.to_string().into_bytes()),
            };
            let mut head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (base, seen)
}

/// The objects a server serves.
#[derive(Clone)]
struct Objects {
    vcek: Vec<u8>,
    chain: Vec<u8>,
    crl: Vec<u8>,
}

fn serving(o: Objects) -> Box<Handler> {
    Box::new(move |request, _| match request {
        KdsRequest::Vcek { .. } => (200, Vec::new(), o.vcek.clone()),
        KdsRequest::CertChain { .. } => (200, Vec::new(), o.chain.clone()),
        KdsRequest::Crl { .. } => (200, Vec::new(), o.crl.clone()),
        KdsRequest::Cek { .. } => (404, Vec::new(), Vec::new()),
    })
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    issuer: TestIssuer,
    report: PathBuf,
    ark: PathBuf,
    good: Objects,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let issuer = TestIssuer::new(Product::Milan, 0x1_0001).unwrap();
    let (vcek, key) = issuer.vcek(&CHIP, tcb()).unwrap();
    let report = issuer.report(&key, CHIP, tcb()).unwrap();
    let report = write(&dir, "report.bin", &report.encode());
    let ark = write(&dir, "ark.der", issuer.ark.der());
    let good = Objects {
        vcek: vcek.der().to_vec(),
        chain: issuer.cert_chain_pem().unwrap().into_bytes(),
        crl: issuer.crl(&[&[0x99]]).unwrap(),
    };
    Setup {
        _tmp: tmp,
        dir,
        issuer,
        report,
        ark,
        good,
    }
}

fn args<'a>(s: &'a Setup, cache: &'a Path, more: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "snp",
        "verify",
        "--report",
        p(&s.report),
        "--ark",
        p(&s.ark),
        "--trust-ark-explicitly",
        "--kds-cache",
        p(cache),
    ];
    v.extend_from_slice(more);
    v
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[test]
fn objects_are_fetched_once_then_read_from_the_cache() {
    let s = setup();
    let (url, seen) = kds(serving(s.good.clone()));
    let cache = s.dir.join("kds");
    // One directory per service, named by its host and port.
    let objects = cache.join(url.trim_start_matches("http://").replace(':', "_"));

    // Offline with an empty cache: what is missing and how to get it.
    let line = fails(OWNER, &args(&s, &cache, &["--kds-url", &url]), "--fetch");
    assert!(
        line.contains(&format!("{url}/vcek/v1/Milan/{}", "42".repeat(64))),
        "{line}"
    );
    assert!(line.contains("--vcek FILE"), "{line}");
    assert!(seen.lock().unwrap().is_empty(), "offline means no request");

    let o = ok(
        OWNER,
        &args(&s, &cache, &["--fetch", "--kds-url", &url, "--json"]),
    );
    let j = json(&o);
    assert_eq!(j["verdict"], "verified");
    assert_eq!(j["crl"]["checked"], true);
    for which in ["vek", "ask", "crl"] {
        assert_eq!(j["sources"][which]["from"], "kds", "{which}: {j}");
    }
    // The trusted ARK is the file given (the served one is compared to it).
    assert_eq!(j["sources"]["ark"]["from"], "file");
    assert_eq!(
        j["sources"]["vek"]["location"],
        format!(
            "{url}/vcek/v1/Milan/{}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115",
            "42".repeat(64)
        )
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
    let mut cached: Vec<String> = std::fs::read_dir(&objects)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    cached.sort();
    assert_eq!(
        cached,
        [
            format!("vcek-Milan-{}-bl3-tee0-snp8-ucode115.der", "42".repeat(64)),
            "vcek-Milan-cert_chain.pem".to_string(),
            "vcek-Milan.crl".to_string(),
        ]
    );

    // Again, offline: everything from the cache, no request.
    let o = ok(OWNER, &args(&s, &cache, &["--offline", "--kds-url", &url]));
    let out = stdout(&o);
    assert!(out.contains("SEV-VCEK from cache"), "{out}");
    assert!(
        out.contains("revocation: ok, not listed in the ARK's CRL from cache"),
        "{out}"
    );
    assert_eq!(seen.lock().unwrap().len(), 3);

    // --no-crl says the check was skipped; --fetch and --offline conflict.
    let o = ok(OWNER, &args(&s, &cache, &["--no-crl", "--kds-url", &url]));
    assert!(
        stdout(&o).contains("revocation: NOT CHECKED"),
        "{}",
        stdout(&o)
    );
    let o = run(OWNER, &args(&s, &cache, &["--fetch", "--offline"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn a_throttling_server_is_waited_for() {
    let s = setup();
    let good = s.good.clone();
    let (url, seen) = kds(Box::new(move |request, n| {
        if n == 0 {
            let after = vec![("Retry-After".to_string(), "1".to_string())];
            return (429, after, b"slow down".to_vec());
        }
        serving(good.clone())(request, n)
    }));
    let cache = s.dir.join("kds");
    let o = ok(OWNER, &args(&s, &cache, &["--fetch", "--kds-url", &url]));
    assert!(stdout(&o).contains("verdict: verified"), "{}", stdout(&o));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(seen[0], seen[1], "the throttled request is repeated");
}

/// Runs with the server serving `objects` (and a fresh cache); requires
/// exit 3 naming `want`, and nothing cached but what verified.
fn refused(s: &Setup, objects: Objects, want: &str) -> Vec<String> {
    let (url, _) = kds(serving(objects));
    let cache = tempfile::tempdir().unwrap();
    let o = run(
        OWNER,
        &args(s, cache.path(), &["--fetch", "--kds-url", &url]),
    );
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains(want), "{}", stderr(&o));
    let objects = cache
        .path()
        .join(url.trim_start_matches("http://").replace(':', "_"));
    let mut files: Vec<String> = std::fs::read_dir(objects)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn tampered_objects_from_the_server_are_refused_and_not_cached() {
    let s = setup();

    // A VCEK of this chip for other SPLs.
    let other_tcb = TcbVersion { snp: 9, ..tcb() };
    let (vcek, _) = s.issuer.vcek(&CHIP, other_tcb).unwrap();
    let files = refused(
        &s,
        Objects {
            vcek: vcek.der().to_vec(),
            ..s.good.clone()
        },
        "REPORTED_TCB SNP SVN is 8, the VCEK's snpSPL is 9",
    );
    assert!(!files.iter().any(|f| f.ends_with(".der")), "{files:?}");

    // An ASK (and its VCEK) of another root, under the trusted ARK.
    let other = TestIssuer::new(Product::Milan, 0x1_0001).unwrap();
    let (other_vcek, _) = other.vcek(&CHIP, tcb()).unwrap();
    let mixed = format!(
        "{}{}",
        sev_proto::snp::testing::pem(other.ask.der()).unwrap(),
        sev_proto::snp::testing::pem(s.issuer.ark.der()).unwrap()
    );
    let files = refused(
        &s,
        Objects {
            vcek: other_vcek.der().to_vec(),
            chain: mixed.into_bytes(),
            ..s.good.clone()
        },
        "ASK",
    );
    assert!(files.is_empty(), "{files:?}");

    // The ASK is revoked.
    let files = refused(
        &s,
        Objects {
            crl: s.issuer.crl(&[&[0x01, 0x00, 0x01]]).unwrap(),
            ..s.good.clone()
        },
        "CRL: ASK (serial 010001) is revoked by the ARK's CRL",
    );
    assert!(!files.iter().any(|f| f.ends_with(".crl")), "{files:?}");

    // A CRL signed by another key.
    refused(
        &s,
        Objects {
            crl: other.crl(&[]).unwrap(),
            ..s.good.clone()
        },
        "CRL: CRL signature does not verify with the public key of ARK-Milan",
    );
}

#[test]
fn a_chain_of_another_root_is_refused() {
    let s = setup();
    // The server's chain is another root's: it does not end in --ark.
    let other = TestIssuer::new(Product::Milan, 0x1_0001).unwrap();
    let (url, _) = kds(serving(Objects {
        chain: other.cert_chain_pem().unwrap().into_bytes(),
        ..s.good.clone()
    }));
    let cache = s.dir.join("kds");
    let line = fails(
        OWNER,
        &args(&s, &cache, &["--fetch", "--kds-url", &url]),
        "ends in an ARK (ARK-Milan) other than --ark",
    );
    assert!(
        line.contains(&format!("{url}/vcek/v1/Milan/cert_chain")),
        "{line}"
    );
    // Without --trust-ark-explicitly the test root is not AMD's.
    let (url, _) = kds(serving(s.good.clone()));
    let o = run(
        OWNER,
        &[
            "snp",
            "verify",
            "--report",
            p(&s.report),
            "--fetch",
            "--kds-url",
            &url,
            "--kds-cache",
            p(&cache),
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is not AMD's genuine ARK"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_damaged_cache_file_is_named_with_the_way_out() {
    let s = setup();
    let (url, _) = kds(serving(s.good.clone()));
    let cache = s.dir.join("kds");
    ok(OWNER, &args(&s, &cache, &["--fetch", "--kds-url", &url]));
    let objects = cache.join(url.trim_start_matches("http://").replace(':', "_"));
    std::fs::write(objects.join("vcek-Milan.crl"), b"not a CRL").unwrap();
    let line = fails(
        OWNER,
        &args(&s, &cache, &["--kds-url", &url]),
        "remove the file to fetch it again",
    );
    assert!(line.contains("vcek-Milan.crl"), "{line}");
}
