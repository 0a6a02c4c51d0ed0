//! The `dangle-backend` binary as a process: socket mode, refusal of unsafe
//! socket directories, clean exit on SIGTERM, bad arguments.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on unexpected errors"
)]

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long to wait for the backend to create its socket or exit.
const TIMEOUT: Duration = Duration::from_secs(10);

fn backend(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dangle-backend"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_socket(path: &Path, child: &mut Child) {
    let start = Instant::now();
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("backend exited early: {status}");
        }
        assert!(start.elapsed() < TIMEOUT, "no socket at {}", path.display());
        thread::sleep(Duration::from_millis(10));
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            panic!("backend did not exit");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigterm_exits_cleanly_and_removes_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gpio.sock");
    let ctl = dir.path().join("gpio.ctl");
    let mut child = backend(&[
        "gpio",
        "--socket",
        sock.to_str().unwrap(),
        "--control",
        ctl.to_str().unwrap(),
    ]);
    wait_socket(&sock, &mut child);
    wait_socket(&ctl, &mut child);
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let mut client = dangle_backends::control::Client::connect(&ctl).unwrap();
    assert_eq!(client.ping().unwrap(), "gpio");
    kill(
        Pid::from_raw(i32::try_from(child.id()).unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status}");
    assert!(!sock.exists() && !ctl.exists());
}

#[test]
fn world_writable_socket_dir_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let sock = dir.path().join("gpio.sock");
    let child = backend(&["gpio", "--socket", sock.to_str().unwrap()]);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing socket directory") && err.contains("writable"),
        "{err}"
    );
    assert!(!sock.exists());
}

#[test]
fn existing_regular_file_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("precious");
    std::fs::write(&sock, b"data").unwrap();
    let out = backend(&["gpio", "--socket", sock.to_str().unwrap()])
        .wait_with_output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a socket"));
    assert_eq!(std::fs::read(&sock).unwrap(), b"data");
}

/// Runs `dangle-backend i2c` with `args` after the socket, expects it to
/// fail, and returns its stderr.
fn i2c_refused(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("i2c.sock");
    let mut argv = vec!["i2c", "--socket", sock.to_str().unwrap()];
    argv.extend_from_slice(args);
    let out = backend(&argv).wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_fault_spec_rejected_with_message() {
    let err = i2c_refused(&["--chip", "at24:0x50:24c02", "--fault", "delay:ms=soon"]);
    assert!(
        err.contains("--fault") && err.contains("bad value \"soon\" for ms"),
        "{err}"
    );
}

#[test]
fn bad_chip_spec_rejected_with_message() {
    let err = i2c_refused(&["--chip", "flux:0x50"]);
    assert!(err.contains("--chip \"flux:0x50\""), "{err}");
    assert!(err.contains("unknown chip `flux`"), "{err}");
}
