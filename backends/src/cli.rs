//! Command-line arguments of `dangle-backend` (also reachable as the hidden
//! `dangle backend` subcommand, so the harness can spawn itself).

/// Arguments of `dangle-backend`.
#[derive(Debug, clap::Args)]
pub struct BackendArgs {}

/// Runs a backend until SIGTERM.
pub fn run(_args: BackendArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    Err("not implemented yet".into())
}
