//! `dangle kernel`.

use crate::exit::Status;

/// Arguments of `dangle kernel`.
#[derive(Debug, clap::Args)]
pub struct KernelArgs {}

/// Runs `dangle kernel`.
pub fn run(_args: KernelArgs) -> Status {
    eprintln!("dangle kernel: not implemented yet");
    Status::Infrastructure
}
