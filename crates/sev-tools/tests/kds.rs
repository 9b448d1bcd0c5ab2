//! The emulated key distribution service, through the real binary:
//! `sev-platform snp certs` and `sev-platform kds serve` (every object,
//! byte for byte against the issuer in-process; bad URLs, oversize heads,
//! concurrent clients, the connection cap, the rate limit, SIGTERM), and
//! the peers: snpguest and virtee's `sev` crate verify the chain.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::*;
use sev_proto::snp::cert::Certificate;
use sev_proto::snp::chain::{Chain, Trust, VekKind};
use sev_proto::snp::kds::KdsRequest;
use sev_proto::snp::Product;

/// One HTTP exchange: status, headers (lower-case names), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn exchange(addr: &str, raw: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The server may answer (and close) before reading all of an oversize request.
    let _ = s.write_all(raw);
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&all)));
    let head = String::from_utf8(all[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    Reply {
        status,
        headers,
        body: all[end + 4..].to_vec(),
    }
}

fn get(addr: &str, target: &str) -> Reply {
    exchange(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
}

/// The platform's issuer in this process.
fn issuer(platform: &Path) -> sev_psp::Platform {
    sev_psp::Platform::open(platform, sev_psp::rng::os_rng()).unwrap()
}

#[test]
fn every_object_is_served_byte_for_byte_as_issued() {
    let plat = platform_a();
    let fw = issuer(&plat);
    let mut server = KdsServer::start(&plat, &[]);
    let vcek = fw.kds_vcek_request(None).unwrap();
    let mut chip_id = [0u8; 64];
    fw.get_id(&mut chip_id).unwrap();
    let requests = [
        vcek.clone(),
        KdsRequest::CertChain {
            product: Product::Genoa,
            kind: VekKind::Vcek,
        },
        KdsRequest::Crl {
            product: Product::Genoa,
            kind: VekKind::Vcek,
        },
        KdsRequest::Cek { chip_id },
    ];
    for req in &requests {
        let want = fw.kds_object(req).unwrap();
        let got = get(&server.addr, &req.path_and_query());
        assert_eq!(got.status, 200, "{req}");
        assert_eq!(got.body, want.bytes, "{req}");
        assert_eq!(got.header("content-type"), Some(want.content_type.mime()));
        assert_eq!(
            got.header("content-length"),
            Some(want.bytes.len().to_string().as_str())
        );
        // HEAD: the same head, no body.
        let head = exchange(
            &server.addr,
            format!("HEAD {} HTTP/1.1\r\n\r\n", req.path_and_query()).as_bytes(),
        );
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
    }
    // snpguest pads SPLs to two digits: the same VCEK.
    let KdsRequest::Vcek { tcb, .. } = vcek else {
        panic!("not a VCEK request");
    };
    let padded = format!(
        "/vcek/v1/Genoa/{}?blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
        hex::encode(chip_id),
        tcb.bootloader,
        tcb.tee,
        tcb.snp,
        tcb.microcode
    );
    assert_eq!(
        get(&server.addr, &padded).body,
        fw.kds_object(&fw.kds_vcek_request(None).unwrap())
            .unwrap()
            .bytes
    );
    let status = server.stop().expect("the server stops on SIGTERM");
    assert!(status.success(), "{status}");
}

#[test]
fn bad_requests_get_kds_statuses_naming_the_problem() {
    let plat = platform_a();
    let server = KdsServer::start(&plat, &["--quiet"]);
    let id = "00".repeat(64);
    let cases: Vec<(String, u16, &str)> = vec![
        ("/".into(), 404, "unknown path"),
        ("/vcek/v1/Rome/cert_chain".into(), 404, "unknown product"),
        ("/vcek/v1/Milan/cert_chain".into(), 404, "not a Milan"),
        ("/vlek/v1/Genoa/cert_chain".into(), 404, "no VLEK"),
        (
            format!("/vcek/v1/Genoa/{id}?blSPL=1&teeSPL=0&snpSPL=1&ucodeSPL=1"),
            404,
            "hwID",
        ),
        (format!("/cek/id/{id}"), 404, "chip id"),
        (
            format!("/vcek/v1/Genoa/{id}?blSPL=1&teeSPL=0"),
            400,
            "snpSPL is missing",
        ),
        ("/vcek/v1/Genoa/abc".into(), 400, "hwID"),
        ("/vcek/v1/Genoa/crl?x=1".into(), 400, "takes no query"),
        (format!("/{}", "a".repeat(600)), 414, "bytes"),
    ];
    for (target, status, want) in cases {
        let r = get(&server.addr, &target);
        let body = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status, status, "{target}: {body}");
        assert!(body.contains(want), "{target}: {body} (wanted {want:?})");
    }
    let r = exchange(&server.addr, b"POST /vcek/v1/Genoa/crl HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(4096));
    assert_eq!(exchange(&server.addr, long.as_bytes()).status, 414);
    let big = format!(
        "GET / HTTP/1.1\r\n{}\r\n",
        format!("X-Filler: {}\r\n", "b".repeat(100)).repeat(100)
    );
    assert_eq!(exchange(&server.addr, big.as_bytes()).status, 431);
    assert_eq!(exchange(&server.addr, b"nonsense\r\n\r\n").status, 400);
    assert_eq!(
        exchange(&server.addr, b"GET / HTTP/2.0\r\n\r\n").status,
        505
    );
}

#[test]
fn concurrent_clients_all_get_their_objects() {
    let plat = platform_a();
    let fw = issuer(&plat);
    let server = KdsServer::start(&plat, &["--quiet"]);
    let vcek = fw.kds_vcek_request(None).unwrap();
    let chain = KdsRequest::CertChain {
        product: Product::Genoa,
        kind: VekKind::Vcek,
    };
    let want_vcek = fw.kds_object(&vcek).unwrap().bytes;
    let want_chain = fw.kds_object(&chain).unwrap().bytes;
    std::thread::scope(|s| {
        for t in 0..8 {
            let (addr, vcek, chain) = (&server.addr, &vcek, &chain);
            let (want_vcek, want_chain) = (&want_vcek, &want_chain);
            s.spawn(move || {
                for i in 0..6 {
                    let (req, want) = if (t + i) % 2 == 0 {
                        (vcek, want_vcek)
                    } else {
                        (chain, want_chain)
                    };
                    let r = get(addr, &req.path_and_query());
                    assert_eq!(r.status, 200);
                    assert_eq!(&r.body, want);
                }
            });
        }
    });
}

#[test]
fn the_rate_limit_answers_429_with_retry_after() {
    let plat = platform_a();
    let server = KdsServer::start(&plat, &["--quiet", "--rate-limit", "2/s"]);
    let mut statuses = Vec::new();
    let mut retry = None;
    for _ in 0..6 {
        let r = get(&server.addr, "/vcek/v1/Genoa/cert_chain");
        if r.status == 429 {
            retry = r.header("retry-after").map(str::to_string);
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses[0], 200);
    assert!(statuses.contains(&429), "{statuses:?}");
    let secs: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&secs), "Retry-After {secs}");
    std::thread::sleep(Duration::from_secs(secs));
    assert_eq!(get(&server.addr, "/vcek/v1/Genoa/cert_chain").status, 200);
}

#[test]
fn connections_beyond_the_cap_get_503_and_slow_heads_time_out() {
    let plat = platform_a();
    let server = KdsServer::start(
        &plat,
        &["--quiet", "--max-connections", "1", "--timeout", "2"],
    );
    // A client that connects and sends half a head holds the only slot.
    let mut idle = TcpStream::connect(&server.addr).unwrap();
    idle.write_all(b"GET /vcek/v1/Genoa/cert").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let r = get(&server.addr, "/vcek/v1/Genoa/cert_chain");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    // The slow client is cut off with 408 within the timeout, and the slot frees.
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = idle.read_to_end(&mut answer);
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(get(&server.addr, "/vcek/v1/Genoa/cert_chain").status, 200);
}

#[test]
fn the_crl_lists_the_ask_once_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let plat = platform_copy(&platform_a(), tmp.path());
    let em = emu(&plat);
    let crl = KdsRequest::Crl {
        product: Product::Genoa,
        kind: VekKind::Vcek,
    };
    let server = KdsServer::start(&plat, &["--quiet"]);
    let before = get(&server.addr, &crl.path_and_query()).body;
    ok(PLATFORM, &[&em, "kds", "revoke-ask"]);
    let revoked = get(&server.addr, &crl.path_and_query()).body;
    assert_ne!(before, revoked);
    assert_eq!(revoked, issuer(&plat).kds_object(&crl).unwrap().bytes);
    assert_eq!(issuer(&plat).kds_revoked().unwrap().len(), 1);
    ok(PLATFORM, &[&em, "kds", "revoke-ask", "--undo"]);
    assert_eq!(get(&server.addr, &crl.path_and_query()).body, before);
}

fn certs_dir(plat: &Path, out: &Path, format: &str) -> Vec<PathBuf> {
    let o = ok(
        PLATFORM,
        &[
            &emu(plat),
            "snp",
            "certs",
            "--out",
            p(out),
            "--format",
            format,
        ],
    );
    let text = stdout(&o);
    assert!(text.contains("emulated root, not AMD's"), "{text}");
    ["ark", "ask", "vcek"]
        .iter()
        .map(|n| out.join(format!("{n}.{format}")))
        .collect()
}

#[test]
fn snp_certs_writes_a_verifying_chain_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let plat = platform_a();
    for format in ["pem", "der"] {
        let out = tmp.path().join(format);
        let files = certs_dir(&plat, &out, format);
        let certs: Vec<Certificate> = files
            .iter()
            .map(|f| {
                let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o644, "{}", f.display());
                Certificate::from_der_or_pem(&std::fs::read(f).unwrap()).unwrap()
            })
            .collect();
        let chain = Chain {
            ark: certs[0].clone(),
            ask: certs[1].clone(),
            vek: certs[2].clone(),
        };
        chain
            .verify(
                Trust::Explicit(&certs[0]),
                Some(Product::Genoa),
                SystemTime::now(),
            )
            .unwrap();
        assert!(chain
            .verify(Trust::AmdPinned, None, SystemTime::now())
            .is_err());
        let vcek = issuer(&plat)
            .kds_object(&issuer(&plat).kds_vcek_request(None).unwrap())
            .unwrap();
        assert_eq!(certs[2].der(), vcek.bytes.as_slice());
        let err = fails(
            PLATFORM,
            &[
                &emu(&plat),
                "snp",
                "certs",
                "--out",
                p(&out),
                "--format",
                format,
            ],
            "exists already",
        );
        assert!(err.contains("nothing was written"), "{err}");
    }
    // Another TCB: the current one, or a raw TCB_VERSION.
    let out = tmp.path().join("current");
    ok(
        PLATFORM,
        &[
            &emu(&plat),
            "snp",
            "certs",
            "--out",
            p(&out),
            "--tcb",
            "current",
        ],
    );
    fails(
        PLATFORM,
        &[
            &emu(&plat),
            "snp",
            "certs",
            "--out",
            p(&tmp.path().join("x")),
            "--tcb",
            "newest",
        ],
        "expected reported, current, committed",
    );
}

/// snpguest (crates.io, unmodified) verifies the exported chain, and
/// refuses it with another platform's ARK.
#[test]
fn snpguest_verifies_the_exported_chain() {
    let Some(snpguest) = peer("snpguest_verifies_the_exported_chain", "snpguest") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("certs");
    certs_dir(&platform_a(), &out, "pem");
    let o = Command::new(&snpguest)
        .args(["verify", "certs", p(&out)])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "snpguest verify certs: {text}");
    assert!(text.contains("VCEK was signed by the AMD ASK"), "{text}");

    // Another platform's ARK in its place: refused.
    let other = tmp.path().join("other");
    certs_dir(&platform_b(), &other, "pem");
    std::fs::remove_file(out.join("ark.pem")).unwrap();
    std::fs::copy(other.join("ark.pem"), out.join("ark.pem")).unwrap();
    let o = Command::new(&snpguest)
        .args(["verify", "certs", p(&out)])
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "snpguest accepted another platform's ARK"
    );
}

/// virtee's `sev` crate (RustCrypto backend) verifies the emulated ARK →
/// ASK → VCEK chain as served, and refuses it with another platform's ARK.
#[test]
fn virtee_sev_verifies_the_served_chain() {
    use sev::certs::snp::{Chain as VirteeChain, Verifiable};

    let plat = platform_a();
    let server = KdsServer::start(&plat, &["--quiet"]);
    let fw = issuer(&plat);
    let pem = get(&server.addr, "/vcek/v1/Genoa/cert_chain").body;
    let certs = Certificate::from_pem_chain(&pem).unwrap();
    let (ask, ark) = (&certs[0], &certs[1]);
    let vcek = get(
        &server.addr,
        &fw.kds_vcek_request(None).unwrap().path_and_query(),
    )
    .body;
    let chain = VirteeChain::from_der(ark.der(), ask.der(), &vcek).unwrap();
    (&chain)
        .verify()
        .expect("virtee/sev verifies the emulated chain");

    let other = issuer(&platform_b());
    let other_pem = other
        .kds_object(&KdsRequest::CertChain {
            product: Product::Genoa,
            kind: VekKind::Vcek,
        })
        .unwrap()
        .bytes;
    let other_ark = Certificate::from_pem_chain(&other_pem).unwrap()[1].clone();
    let wrong = VirteeChain::from_der(other_ark.der(), ask.der(), &vcek).unwrap();
    assert!((&wrong).verify().is_err());
}
