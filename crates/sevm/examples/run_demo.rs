//! Builds the bundled demo guest, runs it on a plain (non-SEV) KVM machine,
//! prints its serial output and exits with the guest's exit status.
//!
//! ```text
//! cargo run --release --example run_demo -- [--ram MIB] [--smp N]
//!     [--secret GUID=TEXT]... [--memtest PASSES]
//! ```
//!
//! `--secret` writes an efi_secret table into the secret area before the
//! guest starts (what LAUNCH_SECRET does for an SEV guest). `--memtest`
//! runs the memory-test mode for the given number of passes. Timings go to
//! stderr.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use sev_proto::Guid;
use sevm::devices::serial::SerialOutput;
use sevm::machine::{Machine, MachineConfig, MachineExit};
use sevm::memory::Gpa;
use sevm_demo::{self as demo, DemoMode, DemoOptions, MemtestOptions};

struct Args {
    ram_mib: u64,
    smp: u32,
    secrets: Vec<(Guid, String)>,
    memtest_passes: Option<u32>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        ram_mib: 64,
        smp: 1,
        secrets: Vec::new(),
        memtest_passes: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--ram" => args.ram_mib = value()?.parse().context("--ram: MiB as a number")?,
            "--smp" => args.smp = value()?.parse().context("--smp: a number")?,
            "--secret" => {
                let v = value()?;
                let (g, text) = v.split_once('=').context("--secret: GUID=TEXT")?;
                args.secrets.push((g.parse()?, text.to_owned()));
            }
            "--memtest" => {
                args.memtest_passes = Some(value()?.parse().context("--memtest: passes")?)
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(args)
}

fn run() -> anyhow::Result<u8> {
    env_logger::init();
    let args = parse_args()?;
    let t0 = Instant::now();
    let mode = match args.memtest_passes {
        Some(max_passes) => DemoMode::Memtest(MemtestOptions {
            max_passes: max_passes.max(1),
            progress_every: 1,
            ..Default::default()
        }),
        None => DemoMode::Normal,
    };
    let opts = DemoOptions {
        mode,
        ..Default::default()
    };
    let image = demo::build(&opts).context("building the demo guest")?;
    let t_build = t0.elapsed();

    let ram = args.ram_mib << 20;
    if ram < demo::min_ram_size(&opts) {
        bail!(
            "the demo guest needs at least {} MiB of RAM",
            demo::min_ram_size(&opts) >> 20
        );
    }
    let t1 = Instant::now();
    let mut config = MachineConfig::new(ram, image);
    config.vcpus = args.smp;
    config.serial = SerialOutput::Stdout;
    let machine = Machine::new(config).context("creating the machine")?;
    let t_create = t1.elapsed();

    if !args.secrets.is_empty() {
        let entries: Vec<(Guid, &[u8])> = args
            .secrets
            .iter()
            .map(|(g, t)| (*g, t.as_bytes()))
            .collect();
        let table = demo::secret_table(&entries);
        machine
            .guest_memory()
            .write_plain(Gpa(u64::from(demo::SECRET_AREA_BASE)), &table)
            .context("writing the secret table")?;
    }

    let t2 = Instant::now();
    let exit = machine.run_until_exit().context("running the guest")?;
    let t_run = t2.elapsed();
    drop(machine);
    let t_total = t0.elapsed();
    eprintln!(
        "run_demo: build image {:.2} ms, create VM {:.2} ms, run guest {:.2} ms, total {:.2} ms; {exit}",
        t_build.as_secs_f64() * 1e3,
        t_create.as_secs_f64() * 1e3,
        t_run.as_secs_f64() * 1e3,
        t_total.as_secs_f64() * 1e3,
    );
    Ok(match exit {
        MachineExit::GuestExit(code) => code,
        MachineExit::Shutdown => 125,
        MachineExit::Quit => 124,
        MachineExit::Error(_) => 126,
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("run_demo: {e:#}");
            ExitCode::from(127)
        }
    }
}
