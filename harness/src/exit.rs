//! Exit codes of the `dangle` command, and how errors reach the user: one
//! table for every subcommand ([`status_of`]) and one way to print an
//! error with its causes ([`chain`], [`print_error`]).
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success: every scenario met its expectation / no crash report |
//! | 1 | findings: a scenario missed its expectation / reports were found |
//! | 2 | bad input: unreadable or malformed file, bad CLI value |
//! | 3 | infrastructure failure: QEMU missing, kernel build failed, ... |
//!
//! Library errors do not know their exit code: the CLI asks [`status_of`],
//! which walks the error's cause chain and stops at the first error the
//! table classifies. Anything it does not know is an infrastructure
//! failure.

use std::error::Error;
use std::fmt;
use std::process::ExitCode;

use crate::bisect::BisectError;
use crate::bisect::cli::ArgsError as BisectArgsError;
use crate::boot::DeviceArgError;
use crate::boot::ctl::FindError;
use crate::image::ImageError;
use crate::kernel::{KernelError, PatchError};
use crate::prepare::PrepareError;
use crate::report::cli::ParseCmdError;
use crate::repro::InputError as ReproInputError;
use crate::repro::cli::ArgsError as ReproArgsError;
use crate::suite::catalog::LoadError;
use crate::suite::load::SuiteError;
use crate::suite::runner::ReplayError;
use crate::validate::cli::ArgsError as ValidateArgsError;

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

/// The exit status of a failed command: the first error in `err`'s cause
/// chain (outermost first) that the table below classifies decides;
/// [`Status::Infrastructure`] when none does.
pub fn status_of(err: &(dyn Error + 'static)) -> Status {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(status) = classify(e) {
            return status;
        }
        cur = e.source();
    }
    Status::Infrastructure
}

/// The table. `None` defers to the error's cause.
fn classify(e: &(dyn Error + 'static)) -> Option<Status> {
    use Status::{BadInput, Infrastructure};
    if e.is::<SuiteError>()
        || e.is::<ParseCmdError>()
        || e.is::<LoadError>()
        || e.is::<ReplayError>()
        || e.is::<DeviceArgError>()
        || e.is::<ValidateArgsError>()
        || e.is::<ReproInputError>()
        || e.is::<ReproArgsError>()
        || e.is::<BisectArgsError>()
    {
        return Some(BadInput);
    }
    if let Some(b) = e.downcast_ref::<BisectError>() {
        return match b {
            BisectError::NotGit { .. }
            | BisectError::Dirty { .. }
            | BisectError::InProgress { .. }
            | BisectError::UnknownRevision { .. }
            | BisectError::NotAncestor { .. }
            | BisectError::ZeroRuns => Some(BadInput),
            // A kernel or runner error decides by its own cause.
            BisectError::Prepare { .. } | BisectError::Run(_) => None,
            _ => Some(Infrastructure),
        };
    }
    if let Some(f) = e.downcast_ref::<FindError>() {
        // A boot that no longer answers is gone, not a mistake.
        return Some(match f {
            FindError::NotAnswering { .. } => Infrastructure,
            _ => BadInput,
        });
    }
    if let Some(p) = e.downcast_ref::<PrepareError>() {
        return match p {
            PrepareError::Kernel(_) | PrepareError::Image(_) => None,
            PrepareError::InstallSpawn(_) | PrepareError::InstallFailed(_) => Some(Infrastructure),
        };
    }
    if let Some(k) = e.downcast_ref::<KernelError>() {
        return Some(match k {
            KernelError::BadInput { .. } | KernelError::Config(_) | KernelError::Dropped { .. } => {
                BadInput
            }
            KernelError::Patch(p) => match p {
                PatchError::Tool(_) | PatchError::Io { .. } | PatchError::Manifest { .. } => {
                    Infrastructure
                }
                _ => BadInput,
            },
            _ => Infrastructure,
        });
    }
    if let Some(i) = e.downcast_ref::<ImageError>() {
        return Some(match i {
            // The user's DANGLE_AGENT / --agent; one dangle built itself
            // and that came out dynamic is the machinery's fault.
            ImageError::AgentNotStatic { prebuilt: true, .. } => BadInput,
            _ => Infrastructure,
        });
    }
    None
}

/// An error with its causes, for display: `{}` puts them on one line
/// joined by `": "`, `{:#}` puts each cause on its own line after
/// `"  caused by: "`.
#[derive(Clone, Copy)]
pub struct Chain<'a>(&'a (dyn Error + 'static));

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        while let Some(cause) = cur {
            if f.alternate() {
                write!(f, "\n  caused by: {cause}")?;
            } else {
                write!(f, ": {cause}")?;
            }
            cur = cause.source();
        }
        Ok(())
    }
}

/// `err` with its whole `source()` chain (see [`Chain`]).
pub fn chain<'a>(err: &'a (dyn Error + 'static)) -> Chain<'a> {
    Chain(err)
}

/// Prints an error with its whole `source()` chain to stderr, `dangle: `
/// first, one cause a line.
pub fn print_error(err: &(dyn Error + 'static)) {
    eprintln!("dangle: error: {:#}", chain(err));
}

/// Prints `err` with its causes and returns its exit status: the end of
/// every failed subcommand.
pub fn fail(err: &(dyn Error + 'static)) -> Status {
    print_error(err);
    status_of(err)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_plain_is_one_line_alternate_is_one_cause_a_line() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(chain(&e).to_string(), "outer: inner");
        assert_eq!(format!("{:#}", chain(&e)), "outer\n  caused by: inner");
    }

    #[test]
    fn status_of_unknown_error_is_infrastructure() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(status_of(&e), Status::Infrastructure);
    }

    #[test]
    fn status_of_agent_not_static_depends_on_who_built_it() {
        let theirs = ImageError::AgentNotStatic {
            path: PathBuf::from("agent"),
            prebuilt: true,
        };
        let ours = ImageError::AgentNotStatic {
            path: PathBuf::from("agent"),
            prebuilt: false,
        };
        assert_eq!(status_of(&theirs), Status::BadInput);
        assert_eq!(status_of(&ours), Status::Infrastructure);
        // The same through `dangle run`/`boot`, which wrap it.
        assert_eq!(status_of(&PrepareError::Image(theirs)), Status::BadInput);
        assert_eq!(
            status_of(&PrepareError::Image(ours)),
            Status::Infrastructure
        );
    }

    #[test]
    fn status_of_kernel_errors_split_bad_input_from_infrastructure() {
        let bad = KernelError::BadInput {
            what: "--kernel x".into(),
            reason: "missing".into(),
            source: None,
        };
        assert_eq!(status_of(&bad), Status::BadInput);
        assert_eq!(status_of(&PrepareError::Kernel(bad)), Status::BadInput);
        let patch = KernelError::Patch(PatchError::DoesNotApply {
            path: "p".into(),
            report: "Hunk #1 FAILED".into(),
        });
        assert_eq!(status_of(&patch), Status::BadInput);
        let tool = KernelError::Patch(PatchError::Tool(std::io::Error::other("no patch(1)")));
        assert_eq!(status_of(&tool), Status::Infrastructure);
        let build = KernelError::Build {
            targets: "bzImage".into(),
            log: "l".into(),
            tail: "error".into(),
        };
        assert_eq!(status_of(&build), Status::Infrastructure);
        let missing = KernelError::MissingSource {
            what: "tarball".into(),
            command: "apt-get install -y linux-source-6.12".into(),
        };
        assert_eq!(status_of(&missing), Status::Infrastructure);
    }

    #[test]
    fn status_of_suite_error_is_bad_input() {
        let e = crate::suite::load::load_str("scenarios: []\n", "t.yaml".as_ref()).unwrap_err();
        assert_eq!(status_of(&e), Status::BadInput);
    }
}
