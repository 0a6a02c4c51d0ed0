//! Logging setup of `dangle-backend`: `tracing` to stderr, filtered by
//! `RUST_LOG` (default `info`), with the `log` records of the rust-vmm
//! crates bridged in.

/// Installs the subscriber; does nothing if one is already installed (for
/// example when the harness runs the backend in its own process).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
