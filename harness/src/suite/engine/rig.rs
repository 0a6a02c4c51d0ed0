//! A running scenario is the [`Rig`] its unplug method acts on: waiting
//! means watching the guest, and killed backends are not crashes.

use std::time::Duration;

use super::Run;
use crate::suite::guest::Guest;
use crate::suite::translate::GuestName;
use crate::unplug::{Rig, UnplugError};
use crate::vm::machine::Machine;

impl Rig for Run<'_> {
    fn machine(&mut self) -> &mut dyn Machine {
        self.vm.as_mut()
    }

    fn guest(&mut self) -> &mut dyn Guest {
        self.guest.as_mut()
    }

    fn guest_name(&self, id: &str) -> Option<GuestName> {
        self.map.get(id).cloned()
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
