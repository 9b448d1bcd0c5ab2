//! `sev-platform`: see [`sev_tools::cli::platform`].

fn main() -> std::process::ExitCode {
    sev_tools::cli::platform::main(std::env::args_os())
}
