//! The backend stops answering (the `hold` fault: requests are kept, not
//! answered) for the unplug timeout, then answers everything it held with
//! an error status and carries on. The device never leaves the guest.

use dangle_backends::control::Request;

use super::{Completion, Params, Rig, UnplugError, UnplugMethod};
use crate::vm::machine::control_checked;

/// See the module docs.
#[derive(Debug)]
pub struct BackendStall;

impl UnplugMethod for BackendStall {
    fn unplug(
        &self,
        rig: &mut dyn Rig,
        target: &str,
        p: Params,
    ) -> Result<Completion, UnplugError> {
        control_checked(
            rig.machine(),
            target,
            &Request::SetFaults {
                faults: vec!["hold".to_owned()],
            },
        )?;
        rig.pause(p.timeout)?;
        control_checked(rig.machine(), target, &Request::ClearFaults)?;
        control_checked(rig.machine(), target, &Request::ReleaseHeld)?;
        Ok(Completion::Done)
    }

    fn replug(&self, _: &mut dyn Rig, _: &str, _: Params) -> Result<Completion, UnplugError> {
        Ok(Completion::Done)
    }

    fn removes_device(&self) -> bool {
        false
    }
}
