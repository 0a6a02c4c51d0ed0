//! What the engine needs from the guest agent, as a trait so that the
//! engine's bookkeeping can be unit-tested with a scripted double.

use std::time::Duration;

use dangle_proto::{DeviceList, ErrorReply, Event, Request, Response};

use super::translate::{GuestMap, GuestName, GuestPlace};
use crate::vm::devices::DeviceSpec;
use crate::vm::qemu;

/// Errors talking to the agent.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// No reply within the timeout.
    #[error("agent did not answer {what} within {timeout:?}")]
    Timeout { what: String, timeout: Duration },
    /// The channel closed (guest died or powered off).
    #[error("agent channel closed")]
    Closed,
    /// The agent refused the request.
    #[error("agent refused {what}: {reply:?}")]
    Refused { what: String, reply: ErrorReply },
    /// The reply did not fit the request.
    #[error("unexpected agent reply to {what}: {reply}")]
    Unexpected { what: String, reply: String },
    /// Anything else from the client.
    #[error("agent client")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A request/reply channel to the guest agent plus its pushed events.
pub trait Guest {
    /// Sends `req` and waits up to `timeout` for its reply.
    fn call(&mut self, req: Request, timeout: Duration) -> Result<Response, GuestError>;
    /// Events pushed since the last call.
    fn take_events(&mut self) -> Vec<Event>;
}

/// Maps dangle device ids to what the guest calls them, using the sysfs
/// paths of the gpiochips and adapters: a device on root port `i` has
/// `0000:00:{0x10+i}.0/` in its path (see [`qemu::root_port_pci_address`]).
/// Devices the guest does not show are absent from the map.
pub fn guest_map(devices: &[DeviceSpec], list: &DeviceList) -> GuestMap {
    let mut map = GuestMap::new();
    for (i, d) in devices.iter().enumerate() {
        let port_addr = qemu::root_port_pci_address(i);
        let port = format!("{port_addr}/");
        match d {
            DeviceSpec::Gpio { .. } => {
                // The virtio chip sits directly under the virtio device; a
                // pca953x chip under an I2C client has `i2c-` in its path.
                if let Some((c, p)) = list.gpiochips.iter().find_map(|c| {
                    let p = c.device_path.as_deref()?;
                    (p.contains(&port) && !p.contains("/i2c-")).then_some((c, p))
                }) {
                    map.insert(
                        d.id().to_owned(),
                        GuestName::GpioChip {
                            label: c.label.clone(),
                            at: GuestPlace::from_sysfs_path(p, &port_addr),
                        },
                    );
                }
            }
            DeviceSpec::I2c { .. } => {
                if let Some((a, p)) = list.i2c_adapters.iter().find_map(|a| {
                    let p = a.device_path.as_deref()?;
                    p.contains(&port).then_some((a, p))
                }) {
                    map.insert(
                        d.id().to_owned(),
                        GuestName::I2cBus {
                            bus: a.bus,
                            at: GuestPlace::from_sysfs_path(p, &port_addr),
                        },
                    );
                }
            }
        }
    }
    map
}

/// Asks the guest for its devices and maps them.
pub fn resolve(
    guest: &mut dyn Guest,
    devices: &[DeviceSpec],
    timeout: Duration,
) -> Result<GuestMap, GuestError> {
    match guest.call(Request::ListDevices {}, timeout)? {
        Response::Devices(list) => Ok(guest_map(devices, &list)),
        other => Err(GuestError::Unexpected {
            what: "list_devices".into(),
            reply: format!("{other:?}"),
        }),
    }
}

/// Instantiates an I2C client the way DT or ACPI would on real hardware:
/// `DRIVER ADDR` written to the adapter's `new_device`.
pub fn new_device(
    guest: &mut dyn Guest,
    bus: u32,
    driver: &str,
    addr: u16,
    timeout: Duration,
) -> Result<(), GuestError> {
    guest
        .call(
            Request::WriteFile {
                path: format!("/sys/bus/i2c/devices/i2c-{bus}/new_device"),
                data: format!("{driver} {addr:#04x}"),
            },
            timeout,
        )
        .map(drop)
}

/// Whether a driver is bound to I2C client `client` (e.g. `1-0050`): its
/// `uevent` shows `DRIVER=`. Drivers such as at24 may probe
/// asynchronously, so callers poll this after [`new_device`].
pub fn client_bound(
    guest: &mut dyn Guest,
    client: &str,
    timeout: Duration,
) -> Result<bool, GuestError> {
    let r = guest.call(
        Request::ReadFile {
            path: format!("/sys/bus/i2c/devices/{client}/uevent"),
            max_bytes: 4096,
        },
        timeout,
    );
    match r {
        Ok(Response::File { data, .. }) => Ok(data.lines().any(|l| l.starts_with("DRIVER="))),
        // Not there yet.
        Ok(_) | Err(GuestError::Refused { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dangle_proto::{GpioChipInfo, I2cAdapterInfo};

    #[test]
    fn guest_map_matches_devices_by_root_port_path() {
        let devices = vec![
            DeviceSpec::gpio("gpio0", 8),
            DeviceSpec::i2c("i2c0", &["pca9555:0x20"]),
            DeviceSpec::gpio("gpio1", 8),
        ];
        let list = DeviceList {
            gpiochips: vec![
                GpioChipInfo {
                    name: "gpiochip0".into(),
                    label: "virtio2".into(),
                    lines: 8,
                    path: "/dev/gpiochip0".into(),
                    device_path: Some("/sys/devices/pci0000:00/0000:00:12.0/0000:03:00.0/virtio2/gpiochip0".into()),
                },
                GpioChipInfo {
                    name: "gpiochip1".into(),
                    label: "1-0020".into(),
                    lines: 16,
                    path: "/dev/gpiochip1".into(),
                    device_path: Some(
                        "/sys/devices/pci0000:00/0000:00:11.0/0000:02:00.0/virtio1/i2c-1/1-0020/gpiochip1".into(),
                    ),
                },
            ],
            i2c_adapters: vec![I2cAdapterInfo {
                bus: 1,
                name: "i2c_virtio at virtio bus 1".into(),
                device_path: Some("/sys/devices/pci0000:00/0000:00:11.0/0000:02:00.0/virtio1/i2c-1".into()),
            }],
            nvmem: vec![],
        };
        let m = guest_map(&devices, &list);
        match m.get("gpio1") {
            Some(GuestName::GpioChip { label, at }) => {
                assert_eq!(label, "virtio2");
                assert_eq!(at.pci.as_deref(), Some("0000:03:00.0"));
                assert_eq!(at.virtio.as_deref(), Some("virtio2"));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(m.get("i2c0"), Some(GuestName::I2cBus { bus: 1, .. })),
            "{m:?}"
        );
        assert_eq!(m.get("gpio0"), None, "gpio0 is unplugged: not in the map");
    }
}
