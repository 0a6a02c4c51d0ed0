//! Exit codes of the `dangle` command, one table for every subcommand.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success: every scenario met its expectation / no crash report |
//! | 1 | findings: a scenario missed its expectation / reports were found |
//! | 2 | bad input: unreadable or malformed file, bad CLI value |
//! | 3 | infrastructure failure: QEMU missing, kernel build failed, ... |

use std::process::ExitCode;

/// The exit code table as printed at the end of `--help`.
pub const EXIT_CODES_HELP: &str = "Exit codes:
  0  every scenario met its expectation (parse: no crash report)
  1  findings: a scenario did not meet its expectation (parse: reports found)
  2  bad input: suite file (with file:line:column), flags, unreadable file
  3  infrastructure failure: QEMU missing, kernel build failed, VM did not boot";

/// The outcome classes that the CLI maps to process exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Nothing found; every expectation met.
    Ok = 0,
    /// Bugs found, or an expectation not met.
    Findings = 1,
    /// The user gave something we cannot use.
    BadInput = 2,
    /// The machinery failed (QEMU, kernel build, backends).
    Infrastructure = 3,
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> Self {
        ExitCode::from(s as u8)
    }
}

/// Prints an error with its whole `source()` chain to stderr, `dangle: ` first.
pub fn print_error(err: &(dyn std::error::Error + 'static)) {
    eprintln!("dangle: error: {err}");
    let mut cur = err.source();
    while let Some(cause) = cur {
        eprintln!("  caused by: {cause}");
        cur = cause.source();
    }
}
