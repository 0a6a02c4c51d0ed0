//! `dangle run`.

use crate::exit::Status;

/// Arguments of `dangle run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {}

/// Runs `dangle run`.
pub fn run(_args: RunArgs) -> Status {
    eprintln!("dangle run: not implemented yet");
    Status::Infrastructure
}
