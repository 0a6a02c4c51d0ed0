//! The `dangle` command line. All logic lives in the library; this file only
//! parses arguments, sets up logging and maps errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = dangle::cli::Cli::parse();
    dangle::logging::init(cli.verbose);
    dangle::cli::dispatch(cli)
}
