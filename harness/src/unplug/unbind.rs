//! The guest's own driver unbind: the virtio device's name written to
//! `/sys/bus/virtio/drivers/DRIVER/unbind`, then to `bind`. The PCI device
//! and the vhost-user connection stay.

use super::{
    Completion, Params, Rig, UnplugError, UnplugMethod, guest_write, never_replugged,
    never_unplugged, visible,
};
use crate::suite::translate::GuestName;

/// See the module docs.
#[derive(Debug)]
pub struct Unbind;

/// The Linux virtio driver of a device (`drivers/gpio/gpio-virtio.c` is
/// registered as its module name, `drivers/i2c/busses/i2c-virtio.c` names
/// itself `i2c_virtio`).
pub fn virtio_driver(n: &GuestName) -> &'static str {
    match n {
        GuestName::GpioChip { .. } => "gpio_virtio",
        GuestName::I2cBus { .. } => "i2c_virtio",
    }
}

fn driver_file(rig: &dyn Rig, target: &str, file: &str) -> Result<(String, String), UnplugError> {
    let name = visible(rig, target)?;
    let virtio = name
        .place()
        .virtio
        .clone()
        .ok_or_else(|| UnplugError::Unknown {
            what: "virtio device",
            target: target.to_owned(),
        })?;
    Ok((
        format!("/sys/bus/virtio/drivers/{}/{file}", virtio_driver(&name)),
        virtio,
    ))
}

impl UnplugMethod for Unbind {
    fn unplug(
        &self,
        rig: &mut dyn Rig,
        target: &str,
        p: Params,
    ) -> Result<Completion, UnplugError> {
        let (path, data) = driver_file(rig, target, "unbind")?;
        guest_write(rig, &path, &data, p.timeout, |d| {
            never_unplugged(target, "unbind", d)
        })
    }

    fn replug(
        &self,
        rig: &mut dyn Rig,
        target: &str,
        p: Params,
    ) -> Result<Completion, UnplugError> {
        // The names from before the unbind still hold: the virtio device
        // itself stays.
        let (path, data) = driver_file(rig, target, "bind")?;
        guest_write(rig, &path, &data, p.timeout, |d| {
            never_replugged(target, "unbind", d)
        })
    }
}
