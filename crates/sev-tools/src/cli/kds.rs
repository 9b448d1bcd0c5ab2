//! `sev-platform snp certs` and `sev-platform kds ...`: the emulated
//! platform's VCEK chain as files and over HTTP (docs/guide/kds.md).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use sev_firmware::emulated::EmulatedPlatform;
use sev_proto::snp::cert::Certificate;
use sev_proto::snp::chain::VekKind;
use sev_proto::snp::kds::KdsRequest;

use crate::kds::server::{KdsServer, ServeOptions};
use crate::kds::{self, CertFormat, TcbChoice};
use crate::platform::PlatformError;

/// `sev-platform snp ...`.
#[derive(Debug, Subcommand)]
pub enum SnpPlatformCmd {
    /// Write the emulated platform's ARK, ASK and VCEK into DIR as ark.pem, ask.pem, vcek.pem
    /// (or .der), the layout `snpguest verify certs DIR` reads. Refuses to overwrite. The ARK is
    /// the platform's own emulated root, not AMD's.
    Certs(CertsArgs),
}

/// `sev-platform snp certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// The directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The VCEK's TCB: reported (what reports carry), current, committed, or a TCB_VERSION in
    /// hex (0x...).
    #[arg(long, value_name = "TCB", default_value = "reported")]
    tcb: TcbChoice,
    /// Certificate encoding.
    #[arg(long, value_enum, default_value = "pem")]
    format: CertFormat,
}

/// `sev-platform kds ...`.
#[derive(Debug, Subcommand)]
pub enum KdsCmd {
    /// Serve the emulated platform's certificates with AMD's KDS URL grammar over HTTP/1.1
    /// (VCEK by hwID and SPLs, cert_chain, crl, legacy CEK by chip id) until SIGINT/SIGTERM.
    /// Prints the base URL first (with port 0, the port chosen).
    Serve(ServeArgs),
    /// List the ASK in the emulated ARK's CRL (or, with --undo, no longer), to test verifiers'
    /// revocation checks.
    RevokeAsk {
        /// Remove the ASK from the CRL instead.
        #[arg(long)]
        undo: bool,
    },
}

/// `sev-platform kds serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: String,
    /// The emulated platform directory (default: --emulated's, else the default one).
    #[arg(long, value_name = "DIR")]
    platform: Option<PathBuf>,
    /// Most connections served at once; more are answered 503.
    #[arg(long, value_name = "N", default_value = "64")]
    max_connections: usize,
    /// Requests a second over all clients; more are answered 429 with Retry-After.
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    rate_limit: Option<f64>,
    /// Read/write timeout and the time a request head may take, in seconds.
    #[arg(long, value_name = "SECS", default_value = "10")]
    timeout: u64,
    /// Do not log requests on stderr.
    #[arg(long)]
    quiet: bool,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.strip_suffix("/s").unwrap_or(text);
    match number.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{text:?}: expected a positive number of requests a second, e.g. 5 or 0.5/s"
        )),
    }
}

/// Set by SIGINT or SIGTERM.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // An atomic store: async-signal-safe.
    SIGNALLED.store(true, Ordering::Release);
}

fn open(dir: &std::path::Path) -> Result<EmulatedPlatform> {
    Ok(EmulatedPlatform::open(dir).map_err(PlatformError::from)?)
}

fn ark_sha256(p: &EmulatedPlatform) -> Result<(String, sev_proto::snp::Product)> {
    let product = p
        .firmware()
        .snp_identity()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .product;
    let chain = p
        .firmware()
        .kds_object(&KdsRequest::CertChain {
            product,
            kind: VekKind::Vcek,
        })
        .context("issuing the cert_chain")?;
    let certs = Certificate::from_pem_chain(&chain.bytes)?;
    let ark = certs.last().context("the cert_chain has no ARK")?;
    Ok((hex::encode(ark.sha256()), product))
}

/// `sev-platform snp certs`.
pub fn snp_certs(json_out: bool, dir: &std::path::Path, a: &CertsArgs) -> Result<()> {
    let p = open(dir)?;
    let e = kds::export_certs(&p, &a.out, a.tcb, a.format)?;
    if json_out {
        println!(
            "{:#}",
            json!({
                "platform": dir,
                "emulated": true,
                "product": e.product.name(),
                "tcb": e.tcb.to_string(),
                "ark_sha256": e.ark_sha256,
                "written": e.written,
            })
        );
    } else {
        let mut text = format!(
            "{} VCEK chain for TCB {}\nthe ARK is this platform's own emulated root, not AMD's (SHA-256 {}): trust it only by name\n",
            e.product, e.tcb, e.ark_sha256
        );
        for w in &e.written {
            text.push_str(&format!("wrote {}\n", w.display()));
        }
        print!("{text}");
    }
    Ok(())
}

/// `sev-platform kds ...`.
pub fn kds(json_out: bool, default_dir: PathBuf, cmd: &KdsCmd) -> Result<()> {
    match cmd {
        KdsCmd::Serve(a) => serve(json_out, a.platform.clone().unwrap_or(default_dir), a),
        KdsCmd::RevokeAsk { undo } => {
            let p = open(&default_dir)?;
            p.firmware()
                .kds_revoke_ask(!undo)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let listed = !undo;
            if json_out {
                println!(
                    "{:#}",
                    json!({"platform": default_dir, "ask_revoked": listed})
                );
            } else if listed {
                println!("the emulated ARK's CRL now lists the ASK as revoked");
            } else {
                println!("the emulated ARK's CRL no longer lists the ASK");
            }
            Ok(())
        }
    }
}

fn serve(json_out: bool, dir: PathBuf, a: &ServeArgs) -> Result<()> {
    let p = open(&dir)?;
    let (sha, product) = ark_sha256(&p)?;
    let options = ServeOptions {
        max_connections: a.max_connections,
        rate_limit: a.rate_limit,
        timeout: Duration::from_secs(a.timeout.max(1)),
        log: !a.quiet,
    };
    let server = KdsServer::bind(&a.listen, Arc::new(p), options)
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let addr = server.local_addr()?;
    for s in [libc::SIGINT, libc::SIGTERM] {
        vmm_sys_util::signal::register_signal_handler(s, on_signal)
            .with_context(|| format!("cannot install the handler of signal {s}"))?;
    }
    let url = format!("http://{addr}");
    let banner = if json_out {
        format!(
            "{}\n",
            json!({"url": url, "platform": dir, "product": product.name(), "emulated": true, "ark_sha256": sha})
        )
    } else {
        format!(
            "serving the emulated KDS of {} ({product}) at {url}\n\
             the ARK is this platform's own emulated root, not AMD's (SHA-256 {sha}): clients must trust it by name\n",
            dir.display()
        )
    };
    // One write; a reader that went away after the URL does not stop the server.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(banner.as_bytes())
        .and_then(|()| stdout.flush());
    drop(stdout);
    let stop = server.stop_handle()?;
    std::thread::Builder::new()
        .name("kds-signals".into())
        .spawn(move || {
            while !SIGNALLED.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.stop();
        })?;
    server.run()?;
    eprintln!("kds: stopped");
    Ok(())
}
