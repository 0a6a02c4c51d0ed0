//! The kernel pipeline's error type.

use std::path::{Path, PathBuf};

use super::{ConfigError, Dropped, PatchError};

/// Errors of [`super::ensure_kernel`]. [`crate::exit::status_of`] maps
/// them to exit codes: bad input (2) or infrastructure failure (3).
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Something the user gave cannot be used.
    #[error("{what}: {reason}")]
    BadInput {
        /// The argument or file.
        what: String,
        /// Why.
        reason: String,
        /// The underlying I/O error, if any.
        #[source]
        source: Option<std::io::Error>,
    },
    /// A fragment or `--config-add` is malformed.
    #[error("bad kernel config input")]
    Config(#[from] ConfigError),
    /// A patch is unreadable or does not apply.
    #[error("cannot apply kernel patches")]
    Patch(#[from] PatchError),
    /// `olddefconfig` dropped requested symbols.
    #[error("olddefconfig dropped requested symbols (final config: {})\n{}", config.display(), list_dropped(dropped))]
    Dropped {
        /// Every dropped symbol with its dependencies.
        dropped: Vec<Dropped>,
        /// The final `.config`.
        config: PathBuf,
    },
    /// The source package is not installed.
    #[error("{what} is missing; install it with: {command}")]
    MissingSource {
        /// What is missing.
        what: String,
        /// The exact install command.
        command: String,
    },
    /// A host tool could not be run.
    #[error("cannot run {tool}")]
    Tool {
        /// The tool.
        tool: String,
        /// The spawn error.
        #[source]
        source: std::io::Error,
    },
    /// A host tool failed.
    #[error("{tool} failed: {output}")]
    ToolFailed {
        /// The tool (or command line).
        tool: String,
        /// Its error output.
        output: String,
    },
    /// `make` failed.
    #[error("kernel build (make {targets}) failed; full log: {}\n--- last lines ---\n{tail}", log.display())]
    Build {
        /// The make targets.
        targets: String,
        /// The full log.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// The build finished but an artefact is missing or wrong.
    #[error("kernel build produced no usable {what}: {path}")]
    Artefact {
        /// Which artefact.
        what: &'static str,
        /// Where it should be.
        path: PathBuf,
    },
    /// Filesystem trouble in the cache or a tree.
    #[error("i/o error on {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn list_dropped(d: &[Dropped]) -> String {
    d.iter()
        .map(|d| format!("  {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl KernelError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        KernelError::Io {
            path: path.to_owned(),
            source,
        }
    }
}
