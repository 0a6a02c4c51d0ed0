//! `dangle parse`.

use std::path::PathBuf;

use crate::exit::Status;

/// Arguments of `dangle parse`.
#[derive(Debug, clap::Args)]
pub struct ParseArgs {
    /// Console logs to parse.
    #[arg(required = true)]
    pub logs: Vec<PathBuf>,
}

/// Runs `dangle parse`.
pub fn run(_args: ParseArgs) -> Status {
    eprintln!("dangle parse: not implemented yet");
    Status::Infrastructure
}
