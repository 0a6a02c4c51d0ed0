//! Running commands for `Exec`, and reaping every child as PID 1 must.
//!
//! The [`Reaper`] owns `waitpid(-1)`: orphans re-parented to PID 1 are
//! reaped and forgotten, the agent's own children have their status kept
//! for [`Reaper::wait`]. It polls with `WNOHANG` under a lock that
//! [`Reaper::spawn`] also holds, so no child is reaped before it is
//! registered, and std's own `waitpid` inside a failed spawn never races
//! with the reaper.

use dangle_proto::Deadline;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dangle_proto::{ExecOutput, ExecRequest};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// How often the reaper looks for exited children.
pub const REAP_PERIOD: Duration = Duration::from_millis(20);
/// After killing a timed-out command, how long to wait for it to die.
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// Most bytes of stdout (and of stderr) kept per command.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;
/// `PATH` of commands the agent runs.
pub const DEFAULT_PATH: &str = "/bin:/sbin:/usr/bin:/usr/sbin";

/// Why a command could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// `argv` was empty.
    #[error("argv is empty")]
    EmptyArgv,
    /// The program is not in `PATH`.
    #[error("{0:?} not found in {DEFAULT_PATH}")]
    NotFound(String),
    /// spawn failed.
    #[error("cannot start {program}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct ReapState {
    watched: HashSet<i32>,
    exited: HashMap<i32, WaitStatus>,
}

/// The single owner of `waitpid(-1)` in the agent.
#[derive(Debug, Default)]
pub struct Reaper {
    state: Mutex<ReapState>,
    cv: Condvar,
}

impl Reaper {
    /// A reaper; call [`Reaper::spawn_thread`] to start reaping.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Starts the reaping thread.
    ///
    /// # Errors
    /// If the thread cannot be created.
    pub fn spawn_thread(self: &Arc<Self>) -> std::io::Result<()> {
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("reaper".to_owned())
            .spawn(move || {
                loop {
                    me.reap_once();
                    std::thread::sleep(REAP_PERIOD);
                }
            })
            .map(|_| ())
    }

    /// Reaps every child that has exited so far.
    pub fn reap_once(&self) {
        let mut st = lock(&self.state);
        let mut any = false;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        let raw = pid.as_raw();
                        if st.watched.remove(&raw) {
                            st.exited.insert(raw, status);
                            any = true;
                        }
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!("waitpid: {e}");
                    break;
                }
            }
        }
        if any {
            self.cv.notify_all();
        }
    }

    /// Spawns `cmd`, registering the child before the reaper can see it.
    ///
    /// # Errors
    /// Whatever spawn returns.
    pub fn spawn(&self, cmd: &mut Command) -> std::io::Result<std::process::Child> {
        let mut st = lock(&self.state);
        let child = cmd.spawn()?;
        if let Ok(pid) = i32::try_from(child.id()) {
            st.watched.insert(pid);
        }
        Ok(child)
    }

    /// Waits up to `timeout` for child `pid` (spawned through
    /// [`Reaper::spawn`]) to be reaped.
    pub fn wait(&self, pid: i32, timeout: Duration) -> Option<WaitStatus> {
        let end = Deadline::after(timeout);
        let mut st = lock(&self.state);
        loop {
            if let Some(s) = st.exited.remove(&pid) {
                return Some(s);
            }
            if end.expired() {
                return None;
            }
            st = match end.remaining() {
                Some(left) => self
                    .cv
                    .wait_timeout(st, left)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0),
                None => self.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// Finds `program` in [`DEFAULT_PATH`] unless it has a slash. Resolving it
/// here lets std use `posix_spawn`, whose failed `exec` cannot race with
/// the reaper.
pub fn resolve(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    DEFAULT_PATH
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let room = MAX_OUTPUT_BYTES.saturating_sub(out.len());
                    out.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        out
    })
}

/// Runs a command to completion (or its timeout, after which its whole
/// process group is killed).
///
/// # Errors
/// [`ExecError`] if it cannot be started.
pub fn run(reaper: &Reaper, req: &ExecRequest) -> Result<ExecOutput, ExecError> {
    let program = req.argv.first().ok_or(ExecError::EmptyArgv)?;
    let path = resolve(program).ok_or_else(|| ExecError::NotFound(program.clone()))?;
    let mut cmd = Command::new(&path);
    cmd.args(&req.argv[1..])
        .envs(&req.env)
        .stdin(if req.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if !req.env.contains_key("PATH") {
        cmd.env("PATH", DEFAULT_PATH);
    }
    tracing::info!("exec {:?}", req.argv);
    let mut child = reaper.spawn(&mut cmd).map_err(|source| ExecError::Spawn {
        program: program.clone(),
        source,
    })?;
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    let stdin_thread = match (child.stdin.take(), req.stdin.clone()) {
        (Some(mut w), Some(data)) => Some(std::thread::spawn(move || {
            let _ = w.write_all(data.as_bytes());
        })),
        _ => None,
    };
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let timeout = Duration::from_millis(req.timeout_ms);
    let mut timed_out = false;
    let status = match reaper.wait(pid, timeout) {
        Some(s) => Some(s),
        None => {
            timed_out = true;
            let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
            reaper.wait(pid, KILL_GRACE)
        }
    };
    // After a timeout the pipes close with the killed process group; a
    // child stuck in D state keeps them open, so do not wait for it then.
    let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| match h {
        Some(h) if status.is_some() || h.is_finished() => h.join().unwrap_or_default(),
        _ => Vec::new(),
    };
    let stdout = join(out);
    let stderr = join(err);
    if let Some(t) = stdin_thread {
        if t.is_finished() {
            let _ = t.join();
        }
    }
    let (code, signal) = match status {
        Some(WaitStatus::Exited(_, c)) => (Some(c), None),
        Some(WaitStatus::Signaled(_, s, _)) => (None, Some(s as i32)),
        _ => (None, None),
    };
    Ok(ExecOutput {
        code,
        signal,
        timed_out,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(argv: &[&str], timeout_ms: u64, stdin: Option<&str>) -> ExecRequest {
        ExecRequest {
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            env: [("DANGLE_X".to_owned(), "42".to_owned())]
                .into_iter()
                .collect(),
            timeout_ms,
            stdin: stdin.map(str::to_owned),
        }
    }

    fn reaper() -> Arc<Reaper> {
        let r = Reaper::new();
        r.spawn_thread().expect("thread");
        r
    }

    #[test]
    fn run_shell_output_env_stdin_and_status_are_returned() {
        let r = reaper();
        let out = run(
            &r,
            &req(
                &[
                    "sh",
                    "-c",
                    "read x; echo out $x $DANGLE_X; echo err >&2; exit 3",
                ],
                10_000,
                Some("in\n"),
            ),
        )
        .expect("run");
        assert_eq!(out.stdout, "out in 42\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.code, Some(3));
        assert!(!out.timed_out);
    }

    #[test]
    fn run_past_timeout_kills_the_process_group() {
        let r = reaper();
        let t0 = std::time::Instant::now();
        let out = run(&r, &req(&["sh", "-c", "sleep 30 & sleep 30"], 300, None)).expect("run");
        assert!(out.timed_out);
        assert_eq!(out.signal, Some(libc::SIGKILL));
        assert!(t0.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn run_unknown_program_is_an_error() {
        let r = reaper();
        let e = run(&r, &req(&["no-such-program-dangle"], 1000, None)).expect_err("missing");
        assert!(e.to_string().contains("no-such-program-dangle"), "{e}");
        assert!(matches!(
            run(&r, &req(&[], 1000, None)),
            Err(ExecError::EmptyArgv)
        ));
    }
}
