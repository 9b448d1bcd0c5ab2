//! `sev-owner`: see [`sev_tools::cli::owner`].

fn main() -> std::process::ExitCode {
    sev_tools::cli::owner::main(std::env::args_os())
}
