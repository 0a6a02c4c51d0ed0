//! What the unplug engine and `dangle ctl` need from a running VM, as a
//! trait: [`super::fixture::Vm`] is the real one, and the engine's unit
//! tests drive a simulated machine (`suite::sim`) with no QEMU.

use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use dangle_backends::control;

use super::fixture::{Vm, VmError};

/// A running VM with its backends.
pub trait Machine: Send {
    /// Time since QEMU was spawned.
    fn uptime(&self) -> Duration;
    /// The accelerator in use (`tcg`, `kvm`).
    fn accel(&self) -> String;
    /// The agent's unix socket on the host.
    fn agent_socket(&self) -> &Path;
    /// QMP unplug: `device_del`, wait up to `timeout` for `DEVICE_DELETED`,
    /// `chardev-remove`. A timeout is [`VmError::Qmp`] with
    /// [`super::qmp::QmpError::EventTimeout`].
    fn unplug(&mut self, id: &str, timeout: Duration) -> Result<(), VmError>;
    /// QMP replug after [`Machine::unplug`]: a new chardev, `device_add`.
    fn replug(&mut self, id: &str) -> Result<(), VmError>;
    /// SIGKILLs the backend of `id`.
    fn kill_backend(&mut self, id: &str) -> Result<(), VmError>;
    /// Starts the backend of `id` again.
    fn restart_backend(&mut self, id: &str) -> Result<(), VmError>;
    /// One request on the control socket of `id`'s backend; the reply is
    /// returned as is (`ok` may be false).
    fn control(&mut self, id: &str, req: &control::Request) -> Result<control::Response, VmError>;
    /// `Some(status)` once QEMU has exited.
    fn qemu_exited(&mut self) -> Option<ExitStatus>;
    /// Backends that have exited, with their status.
    fn dead_backends(&mut self) -> Vec<(String, ExitStatus)>;
    /// Waits up to `timeout` for QEMU to exit on its own.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus>;
    /// Asks QEMU to quit; whether it exited.
    fn quit(&mut self) -> bool;
    /// Console, QEMU and backend logs for failure messages.
    fn postmortem(&self) -> String;
}

/// Sends `req` and turns a refusal into [`VmError::ControlRefused`].
pub fn control_checked(
    m: &mut dyn Machine,
    id: &str,
    req: &control::Request,
) -> Result<control::Response, VmError> {
    let r = m.control(id, req)?;
    if r.ok {
        Ok(r)
    } else {
        Err(VmError::ControlRefused {
            id: id.to_owned(),
            reason: r.error.unwrap_or_default(),
        })
    }
}

impl Machine for Vm {
    fn uptime(&self) -> Duration {
        Vm::uptime(self)
    }

    fn accel(&self) -> String {
        Vm::accel(self).0.to_string()
    }

    fn agent_socket(&self) -> &Path {
        Vm::agent_socket_path(self)
    }

    fn unplug(&mut self, id: &str, timeout: Duration) -> Result<(), VmError> {
        Vm::unplug(self, id, timeout)
    }

    fn replug(&mut self, id: &str) -> Result<(), VmError> {
        Vm::replug(self, id)
    }

    fn kill_backend(&mut self, id: &str) -> Result<(), VmError> {
        Vm::kill_backend(self, id)
    }

    fn restart_backend(&mut self, id: &str) -> Result<(), VmError> {
        Vm::restart_backend(self, id)
    }

    fn control(&mut self, id: &str, req: &control::Request) -> Result<control::Response, VmError> {
        let socket = self.backend(id)?.control.clone();
        let wrap = |source| VmError::Control {
            id: id.to_owned(),
            socket: socket.clone(),
            source,
        };
        control::Client::connect(&socket)
            .and_then(|mut c| c.request(req))
            .map_err(wrap)
    }

    fn qemu_exited(&mut self) -> Option<ExitStatus> {
        Vm::qemu_exited(self)
    }

    fn dead_backends(&mut self) -> Vec<(String, ExitStatus)> {
        Vm::dead_backends(self)
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        Vm::wait_exit(self, timeout)
    }

    fn quit(&mut self) -> bool {
        Vm::quit(self)
    }

    fn postmortem(&self) -> String {
        Vm::postmortem(self)
    }
}
