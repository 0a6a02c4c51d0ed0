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
#[command(name = "dangle", version, about, long_about = None)]
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
    /// Split kernel console logs into crash reports with syzkaller titles.
    Parse(crate::report::cli::ParseArgs),
}

/// Runs the chosen subcommand and turns its outcome into an exit code.
pub fn dispatch(cli: Cli) -> ExitCode {
    let status = match cli.command {
        Command::Parse(args) => crate::report::cli::run(args),
    };
    status.into()
}

/// Helper for subcommands: print an error chain, return its status.
pub fn fail(err: &(dyn std::error::Error + 'static), status: Status) -> Status {
    crate::exit::print_error(err);
    status
}
