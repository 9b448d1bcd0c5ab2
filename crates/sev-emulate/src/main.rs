//! `sev-emulate`: runs a program with its `/dev/sev` served by an emulated
//! AMD Secure Processor (docs/guide/sev-emulate.md).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use sev_emulate::devsevguest::{SevGuestDevice, DEV_SEV_GUEST};
use sev_emulate::guestlaunch::{self, GuestSpec};
use sev_emulate::kdsroute::KdsRoute;
use sev_emulate::kvm::KvmHandler;
use sev_emulate::supervisor::{exit_code, LaunchError, Supervisor};
use sev_firmware::emulated::EmulatedPlatform;
use sev_psp::Platform;

/// Runs COMMAND with its AMD SEV device calls (`/dev/sev`) served by an EMULATED AMD Secure
/// Processor — software with its own emulated AMD roots, not AMD hardware — through seccomp user
/// notification. Every other system call runs untouched. Exits with COMMAND's status (128 + the
/// signal if one ended it); 125 if the launcher failed, 126 if COMMAND cannot be run, 127 if it
/// is not found.
#[derive(Debug, Parser)]
#[command(name = "sev-emulate", version)]
struct Cli {
    /// The emulated platform's state directory, as `sev-platform --emulated=DIR` uses it
    /// (create it with `sev-platform --emulated=DIR init`). Default: $XDG_STATE_HOME/sevm/platform
    /// or ~/.local/state/sevm/platform.
    #[arg(long, value_name = "DIR")]
    platform: Option<PathBuf>,
    /// Launch an emulated SEV-SNP guest on the platform before COMMAND starts and serve
    /// /dev/sev-guest (report, derived key, extended report) as that guest's kernel driver
    /// would: COMMAND plays the guest's software. SPEC is
    /// firmware=OVMF[,policy=0x30000][,host-data=HEX64][,vcpus=1][,vcpu-type=EPYC-v4]
    /// [,guest-features=0x1]; the reports' measurement is `sev-owner measure --mode snp` of
    /// the same inputs.
    #[arg(long, value_name = "SPEC")]
    snp_guest: Option<String>,
    /// Answer COMMAND's HTTPS requests to AMD's key server (https://kdsintf.amd.com/, as
    /// sevctl export and snpguest fetch make them) with the platform's EMULATED key server: a
    /// loopback proxy (HTTPS_PROXY) that reaches only that host and a per-run emulated TLS CA
    /// that COMMAND trusts (SSL_CERT_FILE) for this run only. Every other host through the
    /// proxy is refused.
    #[arg(long)]
    emulated_kds: bool,
    /// The program to run and its arguments (after `--`).
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// The launcher itself failed (as `env` and `timeout` report it).
const EXIT_LAUNCHER: u8 = 125;

fn default_platform_dir() -> Result<PathBuf> {
    match std::env::var_os("XDG_STATE_HOME") {
        Some(d) if !d.is_empty() => Ok(PathBuf::from(d).join("sevm/platform")),
        _ => {
            let home =
                std::env::var_os("HOME").context("neither XDG_STATE_HOME nor HOME is set")?;
            Ok(PathBuf::from(home).join(".local/state/sevm/platform"))
        }
    }
}

fn open_platform(cli: &Cli) -> Result<Platform> {
    let dir = match &cli.platform {
        Some(d) => d.clone(),
        None => default_platform_dir()?,
    };
    Platform::open(&dir, sev_psp::rng::os_rng()).with_context(|| {
        format!(
            "cannot open the emulated platform in {} (create it with `sev-platform --emulated={} init`)",
            dir.display(),
            dir.display()
        )
    })
}

/// Launches `--snp-guest`'s guest and returns its `/dev/sev-guest` driver.
fn snp_guest(platform: &EmulatedPlatform, spec: &str) -> Result<SevGuestDevice> {
    let spec = GuestSpec::parse(spec)?;
    let guest = guestlaunch::launch(platform, &spec)?;
    let table = guestlaunch::cert_table(platform)?;
    log::info!(
        "{DEV_SEV_GUEST}: emulated SNP guest, measurement {}",
        hex::encode(guest.measurement)
    );
    Ok(guest.device(table))
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let platform = match open_platform(&cli) {
        Ok(p) => EmulatedPlatform::from_firmware(p),
        Err(e) => {
            eprintln!("sev-emulate: error: {e:#}");
            return ExitCode::from(EXIT_LAUNCHER);
        }
    };
    let sev_guest = match cli.snp_guest.as_deref().map(|s| snp_guest(&platform, s)) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            eprintln!("sev-emulate: error: {e:#}");
            return ExitCode::from(EXIT_LAUNCHER);
        }
    };
    let Some((program, args)) = cli.command.split_first() else {
        eprintln!("sev-emulate: error: no command given");
        return ExitCode::from(2);
    };
    // Stopped, and its directory removed, when main returns.
    let kds = if cli.emulated_kds {
        match KdsRoute::start(Arc::clone(platform.firmware())) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("sev-emulate: error: {e}");
                return ExitCode::from(EXIT_LAUNCHER);
            }
        }
    } else {
        None
    };
    // Modules serving ioctls on other descriptors register here: KVM's SEV
    // ioctls on a VM descriptor; `/dev/sev-guest` is served when
    // `--snp-guest` launched a guest.
    let mut supervisor = Supervisor::new(Arc::clone(platform.firmware()));
    supervisor.add_handler(Box::new(KvmHandler::new(Arc::clone(platform.firmware()))));
    if let Some(d) = sev_guest {
        supervisor.set_sev_guest(d);
    }
    if let Some(route) = &kds {
        supervisor.set_env(route.env());
    }
    match supervisor.run(program, args) {
        Ok(status) => ExitCode::from(exit_code(status)),
        Err(e) => {
            eprintln!("sev-emulate: error: {e}");
            ExitCode::from(match &e {
                LaunchError::Spawn { source, .. } => match source.kind() {
                    std::io::ErrorKind::NotFound => 127,
                    std::io::ErrorKind::PermissionDenied => 126,
                    _ => EXIT_LAUNCHER,
                },
                LaunchError::Supervisor { .. } => EXIT_LAUNCHER,
            })
        }
    }
}
