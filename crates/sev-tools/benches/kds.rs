//! The emulated key server under a bounded loopback load, against same-run
//! baselines:
//!
//! - `kds serve` in-process (the server of `sev-platform kds serve`, no
//!   request log): C client threads × R requests each, alternating a VCEK
//!   and the cert_chain, one connection per request (the server answers
//!   `Connection: close`, as clients of AMD's KDS use it);
//! - a raw loopback server with the same connection pattern that reads the
//!   request head and writes a fixed answer of a VCEK's size: the ceiling
//!   of this machine's TCP connect/accept/close;
//! - the issuer called in-process without the server's cache (what a cache
//!   miss costs: an RSA-PSS signature by the ASK).
//!
//! Prints requests/s and p50/p99 latency of each (the best of three
//! alternating rounds for the two servers).
//!
//! `cargo bench -p sev-tools --bench kds` (`KDS_BENCH_CLIENTS`,
//! `KDS_BENCH_REQUESTS` per client, `KDS_BENCH_ARK_BITS` 4096 or 2048).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sev_firmware::emulated::EmulatedPlatform;
use sev_proto::snp::chain::VekKind;
use sev_proto::snp::kds::KdsRequest;
use sev_psp::{CreateOptions, Platform};
use sev_tools::kds::server::{KdsServer, ServeOptions};

/// Load rounds per server.
const ROUNDS: usize = 3;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One GET on a new connection; the whole answer read.
fn get(addr: &str, target: &str) -> usize {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET {target} HTTP/1.1\r\nHost: kds\r\n\r\n").as_bytes())
        .unwrap();
    let mut buf = Vec::with_capacity(4096);
    s.read_to_end(&mut buf).unwrap();
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..40.min(buf.len())])
    );
    buf.len()
}

struct Load {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn load(addr: &str, targets: &[String], clients: usize, requests: usize) -> Load {
    let start = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    let mut lat = Vec::with_capacity(requests);
                    for i in 0..requests {
                        let t = Instant::now();
                        get(addr, &targets[(c + i) % targets.len()]);
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let wall = start.elapsed();
    latencies.sort();
    Load {
        rps: latencies.len() as f64 / wall.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    }
}

/// A loopback server answering every request with `answer` (blocking
/// accept, thread per connection, like the KDS server), until `stop` (seen
/// at the next connection; the bench exits anyway).
fn raw_server(answer: Vec<u8>, stop: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            let Ok((mut s, _)) = listener.accept() else {
                continue;
            };
            let answer = Arc::clone(&answer);
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s.write_all(&answer);
            });
        }
    });
    addr
}

fn row(name: &str, l: &Load) {
    println!(
        "{name:<44} {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
        l.rps,
        l.p50.as_secs_f64() * 1e3,
        l.p99.as_secs_f64() * 1e3
    );
}

fn main() {
    let clients = env_usize("KDS_BENCH_CLIENTS", 4);
    let requests = env_usize("KDS_BENCH_REQUESTS", 250);
    let ark_bits = u32::try_from(env_usize("KDS_BENCH_ARK_BITS", 4096)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let options = CreateOptions {
        ark_bits,
        ..CreateOptions::default()
    };
    let created = Instant::now();
    let fw = Platform::create(tmp.path().join("p"), options, sev_psp::rng::os_rng()).unwrap();
    println!(
        "platform: Genoa, {ark_bits}-bit ARK/ASK (created in {:.1} s); load: {clients} clients x {requests} requests, one connection each",
        created.elapsed().as_secs_f64()
    );
    let vcek = fw.kds_vcek_request(None).unwrap();
    let chain = KdsRequest::CertChain {
        product: sev_proto::snp::Product::Genoa,
        kind: VekKind::Vcek,
    };
    let vcek_len = fw.kds_object(&vcek).unwrap().bytes.len();

    // The issuer in-process, uncached.
    let mut issue = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        std::hint::black_box(fw.kds_object(&vcek).unwrap());
        issue.push(t.elapsed());
    }
    issue.sort();
    let total: Duration = issue.iter().sum();
    let issuer = Load {
        rps: issue.len() as f64 / total.as_secs_f64(),
        p50: percentile(&issue, 0.5),
        p99: percentile(&issue, 0.99),
    };

    let server = KdsServer::bind(
        "127.0.0.1:0",
        Arc::new(EmulatedPlatform::from_firmware(fw)),
        ServeOptions {
            max_connections: 256,
            log: false,
            ..ServeOptions::default()
        },
    )
    .unwrap();
    let addr = server.local_addr().unwrap().to_string();
    let stop = server.stop_handle().unwrap();
    let running = std::thread::spawn(move || server.run());
    let targets = vec![vcek.path_and_query(), chain.path_and_query()];
    let raw_stop = Arc::new(AtomicBool::new(false));
    let mut answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/pkix-cert\r\nContent-Length: {vcek_len}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    answer.resize(answer.len() + vcek_len, 0x5a);
    let raw_addr = raw_server(answer, Arc::clone(&raw_stop));
    // Warm the cache and the connections.
    load(&addr, &targets, 1, 10);
    load(&raw_addr, &targets, 1, 10);
    // Rounds alternate between the two servers; the best round of each
    // counts (the machine may be shared).
    let best = |a: Load, b: Load| if b.rps > a.rps { b } else { a };
    let mut kds = load(&addr, &targets, clients, requests);
    let mut raw = load(&raw_addr, &targets, clients, requests);
    for _ in 1..ROUNDS {
        kds = best(kds, load(&addr, &targets, clients, requests));
        raw = best(raw, load(&raw_addr, &targets, clients, requests));
    }

    println!();
    row("kds serve (VCEK + cert_chain, cached)", &kds);
    row("baseline: raw loopback HTTP answer", &raw);
    row("baseline: issuer in-process, uncached VCEK", &issuer);
    println!();
    println!(
        "kds serve / raw loopback: {:.2} of the requests/s",
        kds.rps / raw.rps
    );

    stop.stop();
    raw_stop.store(true, Ordering::Release);
    running.join().unwrap().unwrap();
}
