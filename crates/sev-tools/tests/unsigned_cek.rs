//! The legacy SEV path over a key server: an emulated platform made with
//! `--unsigned-cek` exports its CEK without the ASK's signature, as real
//! firmware does. `sev-owner verify` then fails, saying the CEK is unsigned
//! and how to fetch it, until `--fetch-cek` gets the signed CEK from a key
//! server (`/cek/id/<chip id>`; here an in-test server that serves what the
//! emulated platform's key server serves, `Platform::signed_cek`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use sev_proto::snp::kds::KdsRequest;

/// Serves `cek` for `chip` at `/cek/id/<chip>` (404 otherwise); counts requests.
fn key_server(chip: [u8; 64], cek: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
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
            let (status, body) = match KdsRequest::parse(&path) {
                Ok(KdsRequest::Cek { chip_id }) if chip_id == chip => (200, cek.clone()),
                _ => (404, Vec::new()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    (base, count)
}

fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(extra).copied().collect()
}

#[test]
fn an_unsigned_cek_is_replaced_by_the_one_the_key_server_signs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("platform");
    let em = emu(&dir);
    ok(
        PLATFORM,
        &[&em, "init", "--ark-bits", "2048", "--unsigned-cek"],
    );
    let (full, _, ark) = export(&dir, tmp.path());
    let chip_hex = stdout(&ok(PLATFORM, &[&em, "id"]))
        .split_whitespace()
        .find(|w| w.len() == 128)
        .unwrap()
        .to_string();
    let chip: [u8; 64] = hex::decode(&chip_hex).unwrap().try_into().unwrap();
    let signed = {
        let p = sev_psp::Platform::open(&dir, sev_psp::rng::os_rng()).unwrap();
        p.signed_cek().to_vec()
    };
    let (url, count) = key_server(chip, signed.clone());
    let cache = tmp.path().join("cek-cache");
    let base = ["verify", "--chain", p(&full), "--trust-ark", p(&ark)];

    // Unsigned, and nothing says which chip: ask for the chip id.
    let line = fails(
        OWNER,
        &with(&base, &["--cek-cache", p(&cache)]),
        "--chip-id",
    );
    assert!(line.contains("carries no ASK signature"), "{line}");
    // With the chip id but no fetching: say how to fetch it.
    let line = fails(
        OWNER,
        &with(&base, &["--cek-cache", p(&cache), "--chip-id", &chip_hex]),
        "--fetch-cek",
    );
    assert!(line.contains(&format!("/cek/id/{chip_hex}")), "{line}");
    assert_eq!(count.load(Ordering::SeqCst), 0);

    // Fetched from the key server, verified, cached.
    let o = ok(
        OWNER,
        &with(
            &base,
            &[
                "--cek-cache",
                p(&cache),
                "--chip-id",
                &chip_hex,
                "--fetch-cek",
                "--kds-url",
                &url,
            ],
        ),
    );
    let out = stdout(&o);
    assert!(out.contains(&format!("{url}/cek/id/{chip_hex}")), "{out}");
    assert!(out.contains("ok    CEK signed by the ASK"), "{out}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert_eq!(
        std::fs::read(cache.join(format!("{chip_hex}.cert"))).unwrap(),
        signed
    );
    // Then from the cache alone.
    ok(
        OWNER,
        &with(&base, &["--cek-cache", p(&cache), "--chip-id", &chip_hex]),
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);

    // Another chip's id: the server does not know it.
    let other = "0".repeat(128);
    let line = fails(
        OWNER,
        &with(
            &base,
            &[
                "--cek-cache",
                p(&tmp.path().join("empty")),
                "--chip-id",
                &other,
                "--fetch-cek",
                "--kds-url",
                &url,
            ],
        ),
        "HTTP 404",
    );
    assert!(line.contains(&format!("{url}/cek/id/{other}")), "{line}");
}

/// The whole legacy path over the real binaries: a sevm guest on a platform
/// that exports its CEK unsigned; `sev-owner verify --qmp` reads the chain
/// and the chip id (`cpu0-id`) from query-sev-capabilities, fetches the
/// signed CEK from `sev-platform kds serve` and verifies the chain; without
/// `--fetch-cek` it refuses, naming the CEK's URL on that server.
#[test]
fn verify_over_qmp_fetches_the_cek_from_the_emulated_key_server() {
    let test = "verify_over_qmp_fetches_the_cek_from_the_emulated_key_server";
    if !sevm_testutil::kvm(test) {
        return;
    }
    let Some(sevm) = sevm(test) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("platform");
    let em = emu(&dir);
    ok(
        PLATFORM,
        &[&em, "init", "--ark-bits", "2048", "--unsigned-cek"],
    );
    let (_, ca, ark) = export(&dir, tmp.path());
    let server = KdsServer::start(&dir, &["--quiet"]);
    let url = format!("http://{}", server.addr);

    let firmware = tmp.path().join("demo.fd");
    let o = std::process::Command::new(&sevm)
        .arg("-write-demo-guest")
        .arg(&firmware)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let socket = tmp.path().join("vm.sock");
    let args: Vec<String> = vec![
        "-machine".into(),
        "q35,memory-encryption=sev0".into(),
        "-object".into(),
        format!(
            "sev-guest,id=sev0,policy=0x1,sev-device=emulated:{}",
            p(&dir)
        ),
        "-bios".into(),
        p(&firmware).into(),
        "-m".into(),
        "16".into(),
        "-nographic".into(),
        "-S".into(),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", p(&socket)),
    ];
    let mut vmm = sev_tools::launch::VmmProcess::start(&sevm, &args, socket.clone()).unwrap();
    drop(vmm.connect().unwrap());

    let cache = tmp.path().join("cek-cache");
    let base = [
        "verify",
        "--qmp",
        p(&socket),
        "--ca",
        p(&ca),
        "--trust-ark",
        p(&ark),
        "--cek-cache",
        p(&cache),
    ];
    let line = fails(OWNER, &base, "--fetch-cek");
    assert!(line.contains("/cek/id/"), "{line}");
    let o = ok(OWNER, &with(&base, &["--fetch-cek", "--kds-url", &url]));
    let out = stdout(&o);
    assert!(out.contains(&format!("{url}/cek/id/")), "{out}");
    assert!(out.contains("ok    CEK signed by the ASK"), "{out}");
    assert!(out.contains("chain verified"), "{out}");
    let mut q = vmm.connect().unwrap();
    let _ = q.execute("quit", None);
    drop(q);
    let _ = vmm.wait(std::time::Duration::from_secs(30));
}
