//! `dangle image`.

use crate::exit::Status;

/// Arguments of `dangle image`.
#[derive(Debug, clap::Args)]
pub struct ImageArgs {}

/// Runs `dangle image`.
pub fn run(_args: ImageArgs) -> Status {
    eprintln!("dangle image: not implemented yet");
    Status::Infrastructure
}
