//! `dangle-backend`: one vhost-user device per process.

use clap::Parser;

/// `dangle-backend`.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    args: dangle_backends::cli::BackendArgs,
}

fn main() -> std::process::ExitCode {
    dangle_backends::logging::init();
    let cli = Cli::parse();
    match dangle_backends::cli::run(cli.args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("dangle-backend: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("{msg}");
            std::process::ExitCode::FAILURE
        }
    }
}
