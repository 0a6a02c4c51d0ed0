//! The interactive shell of `dangle boot` on the console, and the signals
//! busybox's `poweroff`, `reboot` and `halt` send to init.
//!
//! The shell starts when the host asks ([`dangle_proto::Request::StartShell`])
//! so that the host can bind the I2C chips and print its banner first, or at
//! boot with `dangle.shell=1` on the kernel command line. It is respawned
//! when it exits, like a getty.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use crate::exec::Reaper;

/// busybox `poweroff` sends this to init.
pub const POWEROFF_SIGNAL: Signal = Signal::SIGUSR2;
/// busybox `reboot` sends this to init; the VM runs with `-no-reboot`, so a
/// reboot ends it too.
pub const REBOOT_SIGNAL: Signal = Signal::SIGTERM;

static POWEROFF_REQUESTED: AtomicBool = AtomicBool::new(false);
static SHELL_STARTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_poweroff_signal(_: libc::c_int) {
    POWEROFF_REQUESTED.store(true, Ordering::SeqCst);
}

/// Makes [`POWEROFF_SIGNAL`] and [`REBOOT_SIGNAL`] set a flag that
/// [`poweroff_requested`] reads. Handlers are reset on exec, so children
/// (the shell, consumers) keep the default dispositions.
///
/// # Errors
/// When `sigaction` fails.
pub fn install_poweroff_handler() -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_poweroff_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [POWEROFF_SIGNAL, REBOOT_SIGNAL] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}

/// Whether a `poweroff` or `reboot` signal has arrived.
pub fn poweroff_requested() -> bool {
    POWEROFF_REQUESTED.load(Ordering::SeqCst)
}

/// Starts the shell on the console once; later calls do nothing. Returns
/// false when the image has no shell.
pub fn start_once(reaper: &Arc<Reaper>) -> bool {
    if !Path::new("/bin/sh").exists() {
        tracing::warn!("a shell was asked for but the image has no /bin/sh");
        return false;
    }
    if SHELL_STARTED.swap(true, Ordering::SeqCst) {
        return true;
    }
    let reaper = Arc::clone(reaper);
    let r = std::thread::Builder::new()
        .name("shell".to_owned())
        .spawn(move || {
            loop {
                // setsid -c makes the console the shell's controlling tty,
                // so Ctrl-C reaches what runs in it.
                let mut cmd = Command::new("/bin/busybox");
                cmd.args(["setsid", "-c", "/bin/sh", "-l"])
                    .env("PATH", crate::exec::DEFAULT_PATH)
                    .env("HOME", "/")
                    .env("TERM", "linux")
                    .env("PS1", "dangle:\\w# ");
                match reaper.spawn(&mut cmd) {
                    Ok(child) => {
                        let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
                        while reaper.wait(pid, Duration::from_secs(3600)).is_none() {}
                    }
                    Err(e) => tracing::warn!("shell: {e}"),
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
    if let Err(e) = r {
        tracing::warn!("shell thread: {e}");
        SHELL_STARTED.store(false, Ordering::SeqCst);
        return false;
    }
    true
}
