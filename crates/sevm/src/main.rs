//! `sevm`: parse QEMU-style options, set up logging, run the VM, map the
//! result to an exit code (the guest's status for a debug-port exit, 1 for
//! VMM errors).

use std::process::ExitCode;

use sevm::options::{self, Invocation};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp_micros()
        .init();
    let invocation = match options::parse_args(std::env::args_os().skip(1)) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("sevm: {e}");
            return ExitCode::from(1);
        }
    };
    let config = match invocation {
        Invocation::Help => {
            print!("{}", options::usage());
            return ExitCode::SUCCESS;
        }
        Invocation::Version => {
            let q = sevm_qmp::response::QEMU_VERSION;
            println!(
                "sevm {} (QEMU {}.{}.{} compatible options and QMP)",
                env!("CARGO_PKG_VERSION"),
                q.major,
                q.minor,
                q.micro
            );
            return ExitCode::SUCCESS;
        }
        Invocation::WriteDemoGuest(path) => {
            return match sevm_demo::write_image(&path) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sevm: error: {e}");
                    ExitCode::from(1)
                }
            };
        }
        Invocation::Run(config) => config,
    };
    match config.validate() {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("sevm: warning: {w}");
            }
        }
        Err(e) => {
            eprintln!("sevm: {e}");
            return ExitCode::from(1);
        }
    }
    match sevm::vmm::run(&config) {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(e) if e.is_validation() => {
            eprintln!("sevm: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("sevm: error: {e}");
            ExitCode::from(1)
        }
    }
}
