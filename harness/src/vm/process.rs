//! Process hygiene for everything the harness spawns (QEMU, backends).
//!
//! Every child joins one process group owned by a [`ChildGroup`]; dropping
//! the group kills it, so a failed test or a Ctrl-C never leaves a QEMU
//! behind. Children also get `PR_SET_PDEATHSIG`, which covers the harness
//! itself being killed with SIGKILL. The exact command line of each spawn is
//! logged, and each child's stdout/stderr go to a log file in the run
//! directory so they survive for the post-mortem.

use dangle_proto::Deadline;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Errors spawning or supervising children.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started.
    #[error("cannot start {program}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    /// The log file for a child could not be created.
    #[error("cannot create log file {path}")]
    Log {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One supervised child.
#[derive(Debug)]
pub struct Supervised {
    /// Name used in logs, e.g. `qemu`, `backend-gpio0`.
    pub name: String,
    /// The child's combined stdout/stderr log.
    pub log: PathBuf,
    /// The command line as it was spawned (for reports).
    pub cmdline: String,
    child: Child,
}

impl Supervised {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Non-blocking: `Some(status)` once the child has exited.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Waits up to `timeout` for the child to exit; a timeout too large to
    /// represent waits as long as [`Supervised::wait`].
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Deadline::after(timeout);
        if deadline == Deadline::never() {
            return self.wait().map(Some);
        }
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(Some(st));
            }
            if deadline.expired() {
                return Ok(None);
            }
            std::thread::sleep(deadline.step(Duration::from_millis(20)));
        }
    }

    /// Waits for the child to exit, however long that takes.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait()
    }

    /// Sends a signal to this child only.
    pub fn signal(&self, sig: Signal) -> nix::Result<()> {
        nix::sys::signal::kill(Pid::from_raw(self.child.id() as i32), sig)
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A set of children sharing one process group, killed together on drop.
#[derive(Debug, Default)]
pub struct ChildGroup {
    pgid: Option<i32>,
    /// Other groups we had to create because the first one had emptied.
    extra_pgids: Vec<i32>,
    /// Children left in our own process group because they own the
    /// terminal (interactive QEMU); killed one by one.
    foreground: Vec<i32>,
}

/// Renders a command line for logs, quoting what needs it.
pub fn render_cmdline(cmd: &Command) -> String {
    let quote = |s: &OsStr| {
        let s = s.to_string_lossy();
        if !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=,:@+%".contains(c))
        {
            s.into_owned()
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    };
    std::iter::once(quote(cmd.get_program()))
        .chain(cmd.get_args().map(quote))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Logs the exact command line and sets the death signal; returns the
/// rendered command line for reports.
fn prepare(name: &str, cmd: &mut Command, how: &str) -> String {
    let cmdline = render_cmdline(cmd);
    tracing::info!("spawn {name}{how}: {cmdline}");
    set_pdeathsig(cmd);
    cmdline
}

fn spawn_error(cmd: &Command, source: io::Error) -> ProcessError {
    ProcessError::Spawn {
        program: cmd.get_program().to_string_lossy().into_owned(),
        source,
    }
}

/// Makes the child die with the harness even if the harness is SIGKILLed.
fn set_pdeathsig(cmd: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls prctl(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

impl ChildGroup {
    /// An empty group.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `cmd` into the group with stdout+stderr appended to `log`.
    /// stdin is `/dev/null` unless the caller configured it.
    pub fn spawn(
        &mut self,
        name: &str,
        mut cmd: Command,
        log: &Path,
    ) -> Result<Supervised, ProcessError> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| ProcessError::Log {
                path: log.to_owned(),
                source,
            })?;
        let err = out.try_clone().map_err(|source| ProcessError::Log {
            path: log.to_owned(),
            source,
        })?;
        cmd.stdout(out).stderr(err);
        self.spawn_with_stdio(name, cmd, log)
    }

    /// Spawns a child that keeps the terminal: it stays in our process
    /// group (a background group would be stopped by SIGTTIN on its first
    /// read) and is killed on drop like the others.
    pub fn spawn_foreground(
        &mut self,
        name: &str,
        mut cmd: Command,
        log: &Path,
    ) -> Result<Supervised, ProcessError> {
        let cmdline = prepare(name, &mut cmd, " (foreground)");
        let child = cmd.spawn().map_err(|source| spawn_error(&cmd, source))?;
        self.foreground.push(child.id() as i32);
        Ok(Supervised {
            name: name.to_owned(),
            log: log.to_owned(),
            cmdline,
            child,
        })
    }

    /// Spawns `cmd` into the group keeping the stdio the caller set up
    /// (interactive QEMU keeps the terminal). `log` is recorded for reports.
    pub fn spawn_with_stdio(
        &mut self,
        name: &str,
        mut cmd: Command,
        log: &Path,
    ) -> Result<Supervised, ProcessError> {
        let cmdline = prepare(name, &mut cmd, "");
        let spawn = |cmd: &mut Command, pgid: i32| {
            cmd.process_group(pgid);
            cmd.spawn()
        };
        let child = match self.pgid {
            None => spawn(&mut cmd, 0),
            Some(pgid) => match spawn(&mut cmd, pgid) {
                Ok(c) => Ok(c),
                // The group's members have all exited: start a new group.
                Err(e)
                    if e.raw_os_error() == Some(libc::EPERM)
                        || e.raw_os_error() == Some(libc::ESRCH) =>
                {
                    self.extra_pgids.push(pgid);
                    self.pgid = None;
                    spawn(&mut cmd, 0)
                }
                Err(e) => Err(e),
            },
        }
        .map_err(|source| spawn_error(&cmd, source))?;
        if self.pgid.is_none() {
            self.pgid = Some(child.id() as i32);
        }
        Ok(Supervised {
            name: name.to_owned(),
            log: log.to_owned(),
            cmdline,
            child,
        })
    }

    /// SIGKILLs every process in the group(s).
    pub fn kill_all(&mut self) {
        for pid in self.foreground.drain(..) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        for pgid in self
            .pgid
            .take()
            .into_iter()
            .chain(self.extra_pgids.drain(..))
        {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

impl Drop for ChildGroup {
    fn drop(&mut self) {
        self.kill_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_group_drop_kills_every_member() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = ChildGroup::new();
        let sleep = || {
            let mut c = Command::new("sleep");
            c.arg("30");
            c
        };
        let mut a = g.spawn("a", sleep(), &dir.path().join("a.log")).unwrap();
        let mut b = g.spawn("b", sleep(), &dir.path().join("b.log")).unwrap();
        drop(g);
        assert!(a.wait_timeout(Duration::from_secs(5)).unwrap().is_some());
        assert!(b.wait_timeout(Duration::from_secs(5)).unwrap().is_some());
    }

    #[test]
    fn wait_timeout_duration_max_waits_for_exit_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = ChildGroup::new();
        let mut c = Command::new("sh");
        c.args(["-c", "sleep 0.2; exit 3"]);
        let mut child = g.spawn("c", c, &dir.path().join("c.log")).unwrap();
        let st = child.wait_timeout(Duration::MAX).unwrap();
        assert_eq!(st.and_then(|s| s.code()), Some(3));
    }

    #[test]
    fn spawn_missing_program_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = ChildGroup::new();
        let err = g
            .spawn(
                "x",
                Command::new("dangle-no-such-program"),
                &dir.path().join("x.log"),
            )
            .unwrap_err();
        assert!(err.to_string().contains("dangle-no-such-program"), "{err}");
    }

    #[test]
    fn render_cmdline_quotes_spaces_and_quotes() {
        let mut c = Command::new("qemu-system-x86_64");
        c.args(["-append", "console=ttyS0 it's"]);
        assert_eq!(
            render_cmdline(&c),
            "qemu-system-x86_64 -append 'console=ttyS0 it'\\''s'"
        );
    }
}
