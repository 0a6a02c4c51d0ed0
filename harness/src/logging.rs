//! One logging facade: `tracing`, also receiving the `log` records that the
//! rust-vmm crates emit. `DANGLE_LOG` overrides the level (env-filter syntax).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `verbose` counts `-v` flags.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn,dangle=info",
        1 => "info,dangle=debug",
        _ => "debug,dangle=trace",
    };
    let filter = EnvFilter::try_from_env("DANGLE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // A second init (tests) is harmless: ignore the error.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
