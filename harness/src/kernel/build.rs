//! Running kbuild: `make O=obj` config targets and the `bzImage` build, with
//! every line of output appended to the build log and `CC` lines fed to
//! [`Progress`].

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::KernelError;
use super::progress::{Progress, cc_target};

/// How many trailing log lines a build failure shows.
pub const FAILURE_TAIL_LINES: usize = 40;

/// One kbuild invocation context: source tree, object tree, log, ccache.
#[derive(Debug)]
pub struct Make<'a> {
    /// The (patched) source tree.
    pub src: &'a Path,
    /// The `O=` object tree.
    pub obj: &'a Path,
    /// The build log every invocation appends to.
    pub log: &'a Path,
    /// `CCACHE_DIR`.
    pub ccache_dir: &'a Path,
    /// `-j`.
    pub jobs: usize,
}

impl Make<'_> {
    /// `CCACHE_BASEDIR`: the directory holding both the source and the
    /// object tree (the cache's tree directory), else the source.
    fn basedir(&self) -> &Path {
        match (self.src.parent(), self.obj.parent()) {
            (Some(a), Some(b)) if a == b => a,
            _ => self.src,
        }
    }

    fn command(&self, targets: &[&str]) -> Command {
        let mut cmd = Command::new("make");
        cmd.arg("-C")
            .arg(self.src)
            .arg(format!("O={}", self.obj.display()))
            .arg(format!("-j{}", self.jobs))
            .arg("CC=ccache gcc")
            .args(targets)
            .env("CCACHE_DIR", self.ccache_dir)
            // Paths under the tree directory (src/ and obj/) are hashed
            // relative to it, so a tree's objects hit the cache however the
            // tree is found; a tree is rebuilt in the same place anyway
            // (one per source), which is what bisect steps rely on.
            .env("CCACHE_BASEDIR", self.basedir())
            // A stable build identity: nothing but the sources decides
            // whether init/version.o changes.
            .env("KBUILD_BUILD_USER", "dangle")
            .env("KBUILD_BUILD_HOST", "dangle")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `make TARGETS`; output goes to the log, `CC` lines to
    /// `progress` when it is given.
    pub fn run(&self, targets: &[&str], progress: Option<&Progress>) -> Result<(), KernelError> {
        let mut log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log)
            .map_err(|source| KernelError::io(self.log, source))?;
        let mut cmd = self.command(targets);
        let _ = writeln!(log, "$ {cmd:?}");
        tracing::debug!("running {cmd:?}");
        // stderr and stdout share one pipe so the log keeps their order.
        let (reader, writer) =
            nix::unistd::pipe().map_err(|e| KernelError::io(self.log, e.into()))?;
        let writer2 = writer
            .try_clone()
            .map_err(|source| KernelError::io(self.log, source))?;
        let reader = std::fs::File::from(reader);
        cmd.stdout(writer).stderr(writer2);
        let mut child = cmd.spawn().map_err(|source| KernelError::Tool {
            tool: "make".to_owned(),
            source,
        })?;
        drop(cmd);
        for line in BufReader::new(reader).split(b'\n') {
            let line = line.map_err(|source| KernelError::io(self.log, source))?;
            let _ = log.write_all(&line);
            let _ = log.write_all(b"\n");
            if let Some(p) = progress {
                let text = String::from_utf8_lossy(&line);
                if let Some(obj) = cc_target(&text) {
                    p.compiled(obj);
                }
            }
        }
        let status = child.wait().map_err(|source| KernelError::Tool {
            tool: "make".to_owned(),
            source,
        })?;
        let _ = writeln!(log, "# exit: {status}");
        if status.success() {
            return Ok(());
        }
        Err(KernelError::Build {
            targets: targets.join(" "),
            log: self.log.to_owned(),
            tail: tail(self.log, FAILURE_TAIL_LINES),
        })
    }

    /// `make -s kernelrelease`.
    pub fn kernelrelease(&self) -> Result<String, KernelError> {
        let out = self
            .command(&["-s", "kernelrelease"])
            .output()
            .map_err(|source| KernelError::Tool {
                tool: "make".to_owned(),
                source,
            })?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// The last `n` lines of a file (empty if unreadable).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The first line of `gcc --version`: part of the cache key, since a new
/// compiler means new objects.
pub fn toolchain_identity() -> Result<String, KernelError> {
    let out = super::source::capture(Command::new("gcc").arg("--version"), "gcc")?;
    Ok(out.lines().next().unwrap_or("").trim().to_owned())
}

/// Checks that a vmlinux carries DWARF line info (`.debug_line`).
pub fn has_dwarf(vmlinux: &Path) -> Result<bool, KernelError> {
    use object::{Object, ObjectSection};
    let file = std::fs::File::open(vmlinux).map_err(|source| KernelError::io(vmlinux, source))?;
    // ReadCache reads only the headers it needs, not the whole file.
    let cache = object::ReadCache::new(file);
    let obj = object::File::parse(&cache).map_err(|e| KernelError::BadInput {
        what: vmlinux.display().to_string(),
        reason: format!("not a readable ELF file: {e}"),
        source: None,
    })?;
    Ok(obj
        .section_by_name(".debug_line")
        .is_some_and(|s| s.size() > 0))
}

/// Copies `src` to `dst` through a temporary name, so readers never see a
/// half-written file.
pub fn install_file(src: &Path, dst: &Path) -> Result<PathBuf, KernelError> {
    let tmp = dst.with_extension("tmp");
    std::fs::copy(src, &tmp).map_err(|source| KernelError::io(&tmp, source))?;
    std::fs::rename(&tmp, dst).map_err(|source| KernelError::io(dst, source))?;
    Ok(dst.to_owned())
}
