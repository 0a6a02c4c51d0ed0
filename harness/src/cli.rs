//! Argument definitions (clap derive) and dispatch to the library.
//!
//! Each subcommand's arguments live beside the code that runs it; this module
//! only assembles them and maps results to [`crate::exit::Status`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::exit::Status;

/// Pull virtual hardware out from under a running Linux kernel and catch
/// what breaks.
///
/// Exit codes: 0 ok, 1 findings (bugs or unmet expectations), 2 bad input,
/// 3 infrastructure failure.
#[derive(Debug, Parser)]
#[command(name = "dangle", version, about, long_about = None, after_help = crate::exit::EXIT_CODES_HELP)]
pub struct Cli {
    /// More log output (-v, -vv). DANGLE_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run hot-unplug suites (default: the smoke suite on the default kernel).
    #[command(after_help = crate::exit::EXIT_CODES_HELP)]
    Run(crate::run::RunArgs),
    /// Check a patch: fixed, regression, unchanged or inconclusive, per finding.
    #[command(after_help = crate::validate::cli::VALIDATE_EXIT_CODES)]
    Validate(crate::validate::cli::ValidateArgs),
    /// Reproduce a reported crash: rank scenarios, run the best, write a bundle.
    #[command(after_help = crate::repro::cli::REPRO_EXIT_CODES)]
    Repro(crate::repro::cli::ReproArgs),
    /// Find the kernel commit where a finding appears (or with --fix, goes).
    #[command(after_help = crate::bisect::cli::BISECT_EXIT_CODES)]
    Bisect(crate::bisect::cli::BisectArgs),
    /// Boot a test VM with the virtual hardware attached (a shell, or --exec).
    Boot(crate::boot::BootArgs),
    /// Act on the hardware of a running `dangle boot` from another terminal.
    Ctl(crate::boot::ctl::CtlArgs),
    /// Build (or fetch from cache) the test kernel.
    Kernel(crate::kernel::cli::KernelArgs),
    /// Split kernel console logs into crash reports with syzkaller titles.
    #[command(after_help = crate::exit::EXIT_CODES_HELP)]
    Parse(crate::report::cli::ParseArgs),
    /// Build the guest initramfs (static agent as /init).
    Image(crate::image::cli::ImageArgs),
    /// Print performance figures (boot time, unplug cycle time).
    Bench(crate::bench::BenchArgs),
    /// Run a vhost-user device backend (what `dangle` spawns per device).
    #[command(hide = true)]
    Backend(dangle_backends::cli::BackendArgs),
}

/// Runs the chosen subcommand and turns its outcome into an exit code.
pub fn dispatch(cli: Cli) -> ExitCode {
    let status = match cli.command {
        Command::Run(args) => crate::run::run(args),
        Command::Validate(args) => crate::validate::cli::run(args),
        Command::Repro(args) => crate::repro::cli::run(args),
        Command::Bisect(args) => crate::bisect::cli::run(args),
        Command::Boot(args) => return crate::boot::run(args),
        Command::Ctl(args) => crate::boot::ctl::run(args),
        Command::Kernel(args) => finish(crate::kernel::cli::run(args).map(|()| Status::Ok)),
        Command::Parse(args) => finish(crate::report::cli::run(args)),
        Command::Image(args) => finish(crate::image::cli::run(args).map(|()| Status::Ok)),
        Command::Bench(args) => crate::bench::run(args),
        Command::Backend(args) => match dangle_backends::cli::run(args) {
            Ok(()) => Status::Ok,
            Err(e) => crate::exit::fail(e.as_ref()),
        },
    };
    status.into()
}

/// A subcommand's result as a status: on error, the error is printed with
/// its causes and the exit table decides.
fn finish<E: std::error::Error + 'static>(result: Result<Status, E>) -> Status {
    result.unwrap_or_else(|e| crate::exit::fail(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_help_documents_exit_codes() {
        let mut cmd = Cli::command();
        let run = cmd.find_subcommand_mut("run").expect("run subcommand");
        let help = run.render_long_help().to_string();
        for code in [
            "0  every scenario",
            "1  findings",
            "2  bad input",
            "3  infrastructure",
        ] {
            assert!(help.contains(code), "missing {code:?} in:\n{help}");
        }
    }
}
