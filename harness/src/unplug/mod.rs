//! Unplug methods: how a device is pulled out from under the guest and put
//! back. One method is one file here plus one arm in [`method`]; the engine
//! (`suite::engine`) and `dangle ctl` both go through this module.
//!
//! A method acts on a [`Rig`]: the machine (QMP, backends) and the guest
//! (sysfs writes), plus a way to let time pass, which the engine uses to
//! watch the console while a method waits. When the kernel never lets go
//! of a device, or never takes it back, the method returns
//! [`Completion::Never`]: that is a finding for the caller to report, not an
//! error.

mod backend_kill;
mod backend_stall;
mod pci_remove;
mod qmp;
mod unbind;

use std::time::Duration;

use dangle_proto::Request;

use crate::suite::guest::{Guest, GuestError};
pub use crate::suite::schema::Method;
use crate::suite::translate::GuestName;
use crate::vm::fixture::VmError;
use crate::vm::machine::Machine;

/// What an unplug method acts on.
pub trait Rig {
    /// The VM and its backends.
    fn machine(&mut self) -> &mut dyn Machine;
    /// The guest agent.
    fn guest(&mut self) -> &mut dyn Guest;
    /// What the guest calls device `id` (from before the unplug).
    fn guest_name(&self, id: &str) -> Option<GuestName>;
    /// Writes a guest file; `Ok(false)` when the write had not returned
    /// within `timeout` (the agent keeps it running in its own thread).
    fn guest_write(
        &mut self,
        path: &str,
        data: &str,
        timeout: Duration,
    ) -> Result<bool, GuestError> {
        let req = Request::WriteFile {
            path: path.to_owned(),
            data: data.to_owned(),
        };
        match self.guest().call(req, timeout) {
            Ok(_) => Ok(true),
            Err(GuestError::Timeout { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
    /// Lets `d` pass; the engine watches the guest meanwhile.
    fn pause(&mut self, d: Duration) -> Result<(), UnplugError>;
    /// The backend of `id` is dead on purpose (`true`) or running again
    /// (`false`): its death is not a crash.
    fn backend_killed(&mut self, id: &str, killed: bool) {
        let _ = (id, killed);
    }
}

/// Parameters of one unplug or replug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// How long the guest may take to let go of the device (or take it back).
    pub timeout: Duration,
    /// How long a killed backend stays dead before it is restarted.
    pub dead_time: Duration,
}

/// How an unplug or replug ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Done.
    Done,
    /// The guest never completed it: a finding.
    Never(Stuck),
}

/// An unplug or replug that never completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// Finding title, e.g. `unplug never completed: i2c0 (qmp)`.
    pub title: String,
    /// What was waited for, and how long.
    pub detail: String,
}

/// Errors that stop an unplug for reasons other than the guest.
#[derive(Debug, thiserror::Error)]
pub enum UnplugError {
    /// The VM or a backend failed.
    #[error("vm")]
    Vm(#[from] VmError),
    /// The agent failed.
    #[error("guest agent")]
    Guest(#[from] GuestError),
    /// The guest does not show the device, so it cannot be unplugged from
    /// inside.
    #[error("{target} is not visible in the guest, cannot unplug it")]
    NotVisible {
        /// Device id.
        target: String,
    },
    /// The guest shows the device but not the part this method needs.
    #[error("no {what} known for {target} in the guest")]
    Unknown {
        /// What is missing (`virtio device`, `PCI endpoint`).
        what: &'static str,
        /// Device id.
        target: String,
    },
    /// Waiting in between failed (the caller's own error).
    #[error("while waiting")]
    Pause(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// One way of pulling a device out and putting it back.
pub trait UnplugMethod: Sync {
    /// Pulls `target` out.
    fn unplug(&self, rig: &mut dyn Rig, target: &str, p: Params)
    -> Result<Completion, UnplugError>;
    /// Puts `target` back after [`UnplugMethod::unplug`].
    fn replug(&self, rig: &mut dyn Rig, target: &str, p: Params)
    -> Result<Completion, UnplugError>;
    /// Whether the guest loses the device (and must probe it again after
    /// the replug). A stalled backend keeps its device.
    fn removes_device(&self) -> bool {
        true
    }
}

/// The implementation of `m`.
pub fn method(m: Method) -> &'static dyn UnplugMethod {
    match m {
        Method::Qmp => &qmp::Qmp,
        Method::Unbind => &unbind::Unbind,
        Method::PciRemove => &pci_remove::PciRemove,
        Method::BackendKill => &backend_kill::BackendKill,
        Method::BackendStall => &backend_stall::BackendStall,
    }
}

/// `unplug never completed: TARGET (METHOD…)`.
fn never_unplugged(target: &str, how: &str, detail: String) -> Completion {
    Completion::Never(Stuck {
        title: format!("unplug never completed: {target} ({how})"),
        detail,
    })
}

/// `replug never completed: TARGET (METHOD)`.
fn never_replugged(target: &str, how: &str, detail: String) -> Completion {
    Completion::Never(Stuck {
        title: format!("replug never completed: {target} ({how})"),
        detail,
    })
}

/// A guest file write that must return within the timeout.
fn guest_write(
    rig: &mut dyn Rig,
    path: &str,
    data: &str,
    timeout: Duration,
    stuck: impl FnOnce(String) -> Completion,
) -> Result<Completion, UnplugError> {
    if rig.guest_write(path, data, timeout)? {
        Ok(Completion::Done)
    } else {
        Ok(stuck(format!(
            "write {data:?} to {path} did not return within {timeout:?}"
        )))
    }
}

/// The guest's name of `target`, or [`UnplugError::NotVisible`].
fn visible(rig: &dyn Rig, target: &str) -> Result<GuestName, UnplugError> {
    rig.guest_name(target)
        .ok_or_else(|| UnplugError::NotVisible {
            target: target.to_owned(),
        })
}

/// QMP `device_del` that must see `DEVICE_DELETED` within the timeout.
fn device_del(
    rig: &mut dyn Rig,
    target: &str,
    timeout: Duration,
    stuck: impl FnOnce(String) -> Completion,
) -> Result<Completion, UnplugError> {
    match rig.machine().unplug(target, timeout) {
        Ok(()) => Ok(Completion::Done),
        Err(VmError::Qmp(crate::vm::qmp::QmpError::EventTimeout { .. })) => Ok(stuck(format!(
            "device_del {target}: no DEVICE_DELETED within {timeout:?}; the guest never released the device"
        ))),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
pub(crate) mod tests;
