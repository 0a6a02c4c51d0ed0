//! `dangle boot`.

use crate::exit::Status;

/// Arguments of `dangle boot`.
#[derive(Debug, clap::Args)]
pub struct BootArgs {}

/// Runs `dangle boot`.
pub fn run(_args: BootArgs) -> Status {
    eprintln!("dangle boot: not implemented yet");
    Status::Infrastructure
}
