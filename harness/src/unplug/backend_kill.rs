//! The backend process dies (SIGKILL) under a live device: consumers run
//! into it for [`Params::dead_time`], then the backend starts again and the
//! device is replaced with QMP (`device_del`, new chardev, `device_add`),
//! since the old vhost-user connection is gone for good.

use super::{Completion, Params, Rig, UnplugError, UnplugMethod, device_del, never_unplugged};

/// See the module docs.
#[derive(Debug)]
pub struct BackendKill;

impl UnplugMethod for BackendKill {
    fn unplug(
        &self,
        rig: &mut dyn Rig,
        target: &str,
        p: Params,
    ) -> Result<Completion, UnplugError> {
        rig.backend_killed(target, true);
        rig.machine().kill_backend(target)?;
        rig.pause(p.dead_time)?;
        rig.machine().restart_backend(target)?;
        rig.backend_killed(target, false);
        device_del(rig, target, p.timeout, |_| {
            never_unplugged(
                target,
                "backend-kill then device_del",
                format!(
                    "after the backend of {target} was killed, device_del got no DEVICE_DELETED within {:?}",
                    p.timeout
                ),
            )
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
