//! The guest removes the PCI endpoint (`/sys/bus/pci/devices/ADDR/remove`)
//! and finds it again with a bus rescan (`/sys/bus/pci/rescan`): the
//! surprise-removal path of PCI drivers.

use super::{
    Completion, Params, Rig, UnplugError, UnplugMethod, guest_write, never_replugged,
    never_unplugged, visible,
};

/// See the module docs.
#[derive(Debug)]
pub struct PciRemove;

impl UnplugMethod for PciRemove {
    fn unplug(
        &self,
        rig: &mut dyn Rig,
        target: &str,
        p: Params,
    ) -> Result<Completion, UnplugError> {
        let name = visible(rig, target)?;
        let pci = name
            .place()
            .pci
            .clone()
            .ok_or_else(|| UnplugError::Unknown {
                what: "PCI endpoint",
                target: target.to_owned(),
            })?;
        let path = format!("/sys/bus/pci/devices/{pci}/remove");
        guest_write(rig, &path, "1", p.timeout, |d| {
            never_unplugged(target, "pci-remove", d)
        })
    }

    fn replug(
        &self,
        rig: &mut dyn Rig,
        target: &str,
        p: Params,
    ) -> Result<Completion, UnplugError> {
        guest_write(rig, "/sys/bus/pci/rescan", "1", p.timeout, |d| {
            never_replugged(target, "pci-remove", d)
        })
    }
}
