//! A running scenario is the [`Rig`] its unplug method acts on: waiting
//! means watching the guest, and killed backends are not crashes.

use std::time::Duration;

use dangle_proto::Request;

use super::Run;
use crate::suite::guest::GuestError;
use crate::suite::translate::GuestName;
use crate::unplug::{Rig, UnplugError};
use crate::vm::machine::Machine;

impl Rig for Run<'_> {
    fn machine(&mut self) -> &mut dyn Machine {
        self.vm.as_mut()
    }

    fn guest_name(&self, id: &str) -> Option<GuestName> {
        self.map.get(id).cloned()
    }

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
        match self.guest.call(req, timeout) {
            Ok(_) => Ok(true),
            Err(GuestError::Timeout { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn pause(&mut self, d: Duration) -> Result<(), UnplugError> {
        self.watch(d).map_err(|e| UnplugError::Pause(Box::new(e)))
    }

    fn backend_killed(&mut self, id: &str, killed: bool) {
        if killed {
            self.killed.push(id.to_owned());
        } else {
            self.killed.retain(|k| k != id);
        }
    }
}
