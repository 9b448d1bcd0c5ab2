//! Migration and snapshot throughput of an idle 1 GiB SEV guest on the
//! emulated platform, through the real binary.
//!
//! ```text
//! cargo bench -p sevm --bench migrate [-- MIB] [idle|busy|stopped|snapshot]
//! SEVM_BENCH_BASELINE=/path/to/old/sevm SEVM_BENCH_ROUNDS=3 cargo bench ...
//! ```
//!
//! With a baseline binary every case runs alternately with it and with this
//! build (same machine, same moment) and the medians and ratios are printed.
//!
//! Rows (guest RAM MB/s = guest RAM + firmware bytes / wall time; the
//! target's numbers are what it prints when the restore is complete):
//! * live migration over tcp loopback of a running idle guest (`sti; hlt` at
//!   its reset vector: halted, no memory writes, no host CPU — what an idle
//!   OS does between interrupts), of a running busy-looping guest (`jmp $`:
//!   no memory writes, but its vCPU takes a whole host core, which on this
//!   machine's paravirtualised KVM means emulating every instruction), and
//!   with the guest stopped before `migrate`;
//! * snapshot of the running idle guest to `file:` and the restore from it
//!   (`-incoming file:`).
//!
//! Both sevm processes share this machine's cores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sevm_qmp::QmpClient;

const SEVM: &str = env!("CARGO_BIN_EXE_sevm");

struct Vm {
    child: Child,
    lines: Receiver<String>,
}

impl Vm {
    fn spawn(bin: &Path, args: &[String]) -> Vm {
        let mut child = Command::new(bin)
            .args(args)
            // `sevm::qmp` names the QMP server of a baseline binary built
            // before the server moved to the sevm-qmp crate.
            .env("RUST_LOG", "sevm_qmp=info,sevm::qmp=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Vm { child, lines: rx }
    }

    fn wait_for(&self, needle: &str) -> String {
        loop {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(600))
                .unwrap_or_else(|_| panic!("no line {needle:?}"));
            if l.contains(needle) {
                return l;
            }
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bound of one QMP exchange (a 1 GiB migration included).
const QMP_WAIT: Duration = Duration::from_secs(600);

fn qmp(p: &Path) -> QmpClient {
    QmpClient::connect(p, QMP_WAIT).unwrap()
}

/// Waits for the migration to end; it must complete. Returns
/// `query-migrate`'s reply.
fn migration_end(q: &mut QmpClient) -> Value {
    loop {
        let v = q.wait_event("MIGRATION").unwrap();
        let s = v["data"]["status"].as_str().unwrap_or("");
        if ["completed", "failed", "cancelled"].contains(&s) {
            assert_eq!(s, "completed");
            return q.execute("query-migrate", None).unwrap();
        }
    }
}

fn platform(dir: &Path, name: &str, seed: u64) -> PathBuf {
    let p = dir.join(name);
    let opts = sev_psp::CreateOptions {
        ark_bits: 2048,
        ..Default::default()
    };
    sev_psp::Platform::create(&p, opts, sev_psp::rng::seeded_rng(seed)).unwrap();
    p
}

fn args(fw: &Path, platform: &Path, mib: u64, qmp: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "-bios",
        &fw.display().to_string(),
        "-m",
        &mib.to_string(),
        "-machine",
        "q35,memory-encryption=sev0",
        "-object",
        &format!(
            "sev-guest,id=sev0,policy=0x1,sev-device=emulated:{}",
            platform.display()
        ),
        "-qmp",
        &format!("unix:{},server=on,wait=off", qmp.display()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn chain_params(target: &Path) -> Value {
    let b = sevm_qmp::base64::encode;
    let p = sev_psp::Platform::open(target, sev_psp::rng::os_rng()).unwrap();
    // The platform is one per directory: a VM on it may have INITed it.
    if p.platform_status().unwrap().state == sev_proto::abi::PlatformState::Uninit {
        p.init(false).unwrap();
    }
    let mut pdh = vec![0u8; 0x824];
    let mut chain = vec![0u8; 0x186c];
    p.pdh_cert_export(&mut pdh, &mut chain).unwrap();
    let (ask, ark) = p.amd_chain();
    json!({
        "sev-pdh": b(&pdh),
        "sev-plat-cert": b(&chain),
        "sev-amd-cert": b(&[ask, ark].concat()),
    })
}

fn row(name: &str, build: &str, bytes: u64, wall: Duration, downtime: Option<u64>) -> f64 {
    let mbs = bytes as f64 / wall.as_secs_f64() / 1e6;
    let dt = downtime.map_or("-".to_string(), |d| format!("{d}"));
    println!(
        "{name:<40} {build:>8} {:>8.0} {:>9.0} {mbs:>9.0} {dt:>9}",
        bytes as f64 / 1048576.0,
        wall.as_secs_f64() * 1e3
    );
    mbs
}

/// The in-run baseline: `bytes` over a loopback TCP connection between two
/// threads of this process, 256 KiB writes, no encryption, no VMM: what the
/// transport alone costs on this machine right now. MB/s.
fn raw_tcp(bytes: u64) -> f64 {
    use std::io::Read;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = Instant::now();
    let sender = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let chunk = vec![0x5au8; 256 << 10];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            s.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
    });
    let (mut r, _) = l.accept().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    while got < bytes {
        let n = r.read(&mut buf).unwrap();
        assert!(n > 0, "raw tcp baseline: connection closed early");
        got += n as u64;
    }
    sender.join().unwrap();
    bytes as f64 / t.elapsed().as_secs_f64() / 1e6
}

/// Which sevm binary a row measured.
#[derive(Clone, Copy)]
enum Build<'a> {
    This,
    Baseline(&'a Path),
}

impl Build<'_> {
    fn path(&self) -> PathBuf {
        match self {
            Build::This => PathBuf::from(SEVM),
            Build::Baseline(p) => p.to_path_buf(),
        }
    }
}

/// The measured cases, each as (wall time, downtime).
struct Setup {
    d: PathBuf,
    /// `sti; hlt` at the reset vector.
    idle_fw: PathBuf,
    /// `jmp $` at the reset vector.
    busy_fw: PathBuf,
    a: PathBuf,
    b: PathBuf,
    set_b: Value,
    mib: u64,
}

impl Setup {
    fn live(&self, bin: &Path, case: &str) -> (Duration, Option<u64>, String) {
        let d = &self.d;
        // The stopped case pauses a busy-looping guest (so that builds that
        // predate the idle `hlt` can be the baseline).
        let fwp = if case == "idle" {
            &self.idle_fw
        } else {
            &self.busy_fw
        };
        let stopped = case == "stopped";
        let (qa, qb) = (d.join("qa"), d.join("qb"));
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let src = Vm::spawn(bin, &args(fwp, &self.a, self.mib, &qa, &[]));
        src.wait_for("QMP listening");
        let incoming = format!("tcp:127.0.0.1:{port}");
        let dst = Vm::spawn(
            bin,
            &args(fwp, &self.b, self.mib, &qb, &["-incoming", &incoming]),
        );
        dst.wait_for("waiting on tcp");
        let mut q = qmp(&qa);
        q.execute("migrate-set-parameters", Some(self.set_b.clone()))
            .unwrap();
        if stopped {
            q.execute("stop", None).unwrap();
        }
        let t = Instant::now();
        q.execute(
            "migrate",
            Some(json!({"uri": format!("tcp:127.0.0.1:{port}")})),
        )
        .unwrap();
        let info = migration_end(&mut q);
        let wall = t.elapsed();
        let l = dst.wait_for("incoming migration complete");
        (
            wall,
            info["downtime"].as_u64(),
            l.trim_start_matches("sevm: ").to_string(),
        )
    }

    /// Snapshot write, then the restore from it.
    fn snapshot(&self, bin: &Path) -> [(Duration, Option<u64>); 2] {
        let d = &self.d;
        let qa = d.join("qa2");
        let snap = d.join("guest.snap");
        let src = Vm::spawn(bin, &args(&self.idle_fw, &self.a, self.mib, &qa, &[]));
        src.wait_for("QMP listening");
        let mut q = qmp(&qa);
        let t = Instant::now();
        q.execute(
            "migrate",
            Some(json!({"uri": format!("file:{}", snap.display())})),
        )
        .unwrap();
        let info = migration_end(&mut q);
        let write = (t.elapsed(), info["downtime"].as_u64());
        drop(src);
        let t = Instant::now();
        let incoming = format!("file:{}", snap.display());
        let dst = Vm::spawn(
            bin,
            &args(
                &self.idle_fw,
                &self.a,
                self.mib,
                &d.join("qa3"),
                &["-incoming", &incoming],
            ),
        );
        dst.wait_for("incoming migration complete");
        let restore = (t.elapsed(), None);
        drop(dst);
        let _ = std::fs::remove_file(&snap);
        [write, restore]
    }
}

fn main() {
    let mib: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1024);
    // Optional case filter: "idle", "busy", "stopped", "snapshot".
    let only: Option<String> = std::env::args()
        .skip(1)
        .find(|a| ["idle", "busy", "stopped", "snapshot"].contains(&a.as_str()));
    let want = |c: &str| only.as_deref().is_none_or(|o| o == c);
    // SEVM_BENCH_BASELINE=path/to/an/older/sevm: every case runs with that
    // binary and with this build, alternating, and the ratio is printed.
    let baseline = std::env::var_os("SEVM_BENCH_BASELINE").map(PathBuf::from);
    let rounds: usize = std::env::var("SEVM_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
        .max(1);
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let a = platform(d, "a", 1);
    let b = platform(d, "b", 2);
    // The emulated platforms trust each other's roots only when told; the
    // policy (0x1) has no SEV bit, so the platform part is what is checked.
    let firmware = |name: &str, code: &[u8]| {
        let mut fw = vec![0xF4u8; 0x10000];
        let at = fw.len() - 16;
        fw[at..at + code.len()].copy_from_slice(code);
        let p = d.join(name);
        std::fs::write(&p, fw).unwrap();
        p
    };
    let idle_fw = firmware("idle.fd", &[0xFB, 0xF4, 0xEB, 0xFD]); // 1: sti; hlt; jmp 1b
    let busy_fw = firmware("busy.fd", &[0xEB, 0xFE]); // jmp $
    let guest_bytes = (mib << 20) + 0x10000;
    let setup = Setup {
        d: d.to_path_buf(),
        idle_fw,
        busy_fw,
        set_b: chain_params(&b),
        a,
        b,
        mib,
    };
    println!(
        "sevm migration, idle {mib} MiB guest, emulated platform, this machine's cores shared"
    );
    let mut builds = Vec::new();
    if let Some(p) = &baseline {
        println!(
            "baseline: {} (rows alternate baseline / this build)",
            p.display()
        );
        builds.push(("baseline", Build::Baseline(p)));
    }
    builds.push(("this", Build::This));
    println!(
        "{:<40} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "case", "build", "MiB", "wall ms", "MB/s", "down ms"
    );
    // case name -> [per build: MB/s samples]
    let mut samples: Vec<(String, Vec<Vec<f64>>)> = Vec::new();
    let mut record = |name: &str, bi: usize, mbs: f64| {
        if !samples.iter().any(|(n, _)| n == name) {
            samples.push((name.to_string(), vec![Vec::new(); builds.len()]));
        }
        if let Some((_, v)) = samples.iter_mut().find(|(n, _)| n == name) {
            v[bi].push(mbs);
        }
    };
    let mut raw = Vec::new();
    for _ in 0..rounds {
        let mbs = raw_tcp(guest_bytes);
        println!(
            "{:<40} {:>8} {:>8.0} {:>9} {mbs:>9.0}",
            "baseline: raw loopback tcp, no crypto",
            "-",
            guest_bytes as f64 / 1048576.0,
            "-"
        );
        raw.push(mbs);
        for (case, name) in [
            ("idle", "live migration, tcp, idle guest"),
            ("busy", "live migration, tcp, busy-looping guest"),
            ("stopped", "live migration, tcp, guest stopped"),
        ] {
            if !want(case) {
                continue;
            }
            for (bi, (label, build)) in builds.iter().enumerate() {
                let (wall, down, target) = setup.live(&build.path(), case);
                record(name, bi, row(name, label, guest_bytes, wall, down));
                println!("    target: {target}");
            }
        }
        if want("snapshot") {
            for (bi, (label, build)) in builds.iter().enumerate() {
                let [w, r] = setup.snapshot(&build.path());
                let name = "snapshot write (file:), idle guest";
                record(name, bi, row(name, label, guest_bytes, w.0, w.1));
                let name = "restore (-incoming file:), incl. start";
                record(name, bi, row(name, label, guest_bytes, r.0, r.1));
            }
        }
    }
    let med = |x: &[f64]| {
        let mut x = x.to_vec();
        x.sort_by(|a, b| a.total_cmp(b));
        x[x.len() / 2]
    };
    let raw = med(&raw);
    println!(
        "\nmedian MB/s over {rounds} round(s), and as a share of the raw loopback tcp baseline \
         ({raw:.0} MB/s, same run)"
    );
    for (name, v) in &samples {
        let t = med(&v[builds.len() - 1]);
        println!("{name:<40} {t:>6.0}  ({:.0} % of raw tcp)", 100.0 * t / raw);
    }
    if builds.len() == 2 {
        println!("\nmedian MB/s over {rounds} round(s): baseline -> this build (ratio)");
        for (name, v) in &samples {
            let (b, t) = (med(&v[0]), med(&v[1]));
            println!("{name:<40} {b:>6.0} -> {t:>6.0}  ({:.2}x)", t / b);
        }
    }
}
