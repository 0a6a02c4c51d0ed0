//! QMP `device_del` (wait for `DEVICE_DELETED`, `chardev-remove`), then a
//! new chardev and `device_add` on the same root port: what a hot-unplug
//! button and a re-insert do on real hardware.

use super::{Completion, Params, Rig, UnplugError, UnplugMethod, device_del, never_unplugged};

/// See the module docs.
#[derive(Debug)]
pub struct Qmp;

impl UnplugMethod for Qmp {
    fn unplug(
        &self,
        rig: &mut dyn Rig,
        target: &str,
        p: Params,
    ) -> Result<Completion, UnplugError> {
        device_del(rig, target, p.timeout, |detail| {
            never_unplugged(target, "qmp", detail)
        })
    }

    fn replug(
        &self,
        rig: &mut dyn Rig,
        target: &str,
        _: Params,
    ) -> Result<Completion, UnplugError> {
        rig.machine().replug(target)?;
        Ok(Completion::Done)
    }
}
