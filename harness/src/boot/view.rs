//! What the guest calls each attached device, and the banner printed
//! before the shell: the devices with their `/dev` and sysfs paths, the
//! tools in the guest, how to reach the hardware from the host, how to
//! leave.

use std::fmt::Write as _;

use dangle_backends::i2c::spec::ChipSpec;
use dangle_proto::DeviceList;

use crate::suite::guest::guest_map;
use crate::suite::translate::{GuestName, client_name};
use crate::vm::devices::DeviceSpec;

/// One device as the guest shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceView {
    /// dangle id (`gpio0`).
    pub id: String,
    /// What it is (`virtio-gpio, 32 lines`).
    pub what: String,
    /// Where the guest shows it (`/dev/gpiochip0 (label virtio1)`), or why
    /// not.
    pub guest: String,
    /// Chips on an adapter.
    pub chips: Vec<ChipView>,
}

/// One I2C chip as the guest shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipView {
    /// `at24 24c02 at 0x50`.
    pub what: String,
    /// `/sys/bus/nvmem/devices/0-00500/nvmem`, `/dev/gpiochip1`, or
    /// `not bound`.
    pub guest: String,
}

/// The devices of `specs` in the guest's `list`.
pub fn devices(specs: &[DeviceSpec], list: &DeviceList) -> Vec<DeviceView> {
    let map = guest_map(specs, list);
    specs
        .iter()
        .map(|d| {
            let name = map.get(d.id());
            match d {
                DeviceSpec::Gpio { id, lines, .. } => DeviceView {
                    id: id.clone(),
                    what: format!("virtio-gpio, {lines} lines"),
                    guest: match name {
                        Some(GuestName::GpioChip { label, .. }) => list
                            .gpiochips
                            .iter()
                            .find(|c| &c.label == label)
                            .map_or_else(
                                || format!("label {label}"),
                                |c| format!("{} (label {label})", c.path),
                            ),
                        _ => "not visible in the guest".to_owned(),
                    },
                    chips: Vec::new(),
                },
                DeviceSpec::I2c { id, chips, .. } => {
                    let bus = match name {
                        Some(GuestName::I2cBus { bus, .. }) => Some(*bus),
                        _ => None,
                    };
                    DeviceView {
                        id: id.clone(),
                        what: "virtio-i2c adapter".to_owned(),
                        guest: bus.map_or_else(
                            || "not visible in the guest".to_owned(),
                            |b| format!("/dev/i2c-{b}"),
                        ),
                        chips: chips.iter().map(|c| chip(c, bus, list)).collect(),
                    }
                }
            }
        })
        .collect()
}

fn chip(spec: &str, bus: Option<u32>, list: &DeviceList) -> ChipView {
    let Ok(c) = spec.parse::<ChipSpec>() else {
        return ChipView {
            what: spec.to_owned(),
            guest: "unknown chip".to_owned(),
        };
    };
    let what = format!("{} at {:#04x}", c.model_name(), c.addr());
    let Some(bus) = bus else {
        return ChipView {
            what,
            guest: "adapter not visible".to_owned(),
        };
    };
    let client = client_name(bus, c.addr());
    let guest = match c.family() {
        "at24" => list
            .nvmem
            .iter()
            .find(|n| n.name.starts_with(&client))
            .map(|n| format!("/sys/bus/nvmem/devices/{}/nvmem", n.name)),
        "pca953x" => {
            let needle = format!("/{client}/");
            list.gpiochips
                .iter()
                .find(|g| {
                    g.device_path
                        .as_deref()
                        .is_some_and(|p| p.contains(&needle))
                })
                .map(|g| format!("{} (label {})", g.path, g.label))
        }
        _ => None,
    };
    ChipView {
        what,
        guest: guest.unwrap_or_else(|| format!("not bound (client {client})")),
    }
}

/// The banner printed before the shell prompt.
pub fn banner(
    kernel: &str,
    accel: &str,
    artifacts: &str,
    devices: &[DeviceView],
    tools: &[String],
    ctl_hint: Option<&str>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "dangle boot: kernel {kernel} ({accel}); artifacts {artifacts}"
    );
    for d in devices {
        let _ = writeln!(s, "  {:<6} {:<28} {}", d.id, d.what, d.guest);
        for c in &d.chips {
            let _ = writeln!(s, "  {:<6}   {:<26} {}", "", c.what, c.guest);
        }
    }
    if devices.is_empty() {
        let _ = writeln!(s, "  (no devices)");
    }
    let _ = writeln!(
        s,
        "  tools: {}",
        if tools.is_empty() {
            "none beyond the agent".to_owned()
        } else {
            tools.join(", ")
        }
    );
    if let Some(hint) = ctl_hint {
        let _ = writeln!(s, "  from another terminal: {hint}");
    }
    let _ = writeln!(s, "  leave: poweroff (or Ctrl-A X)");
    s
}

/// The shell command that lists which of the known tools the guest has.
pub const TOOLS_PROBE: &str = "for t in busybox i2cdetect i2cget i2cset i2ctransfer gpiodetect gpioinfo gpioget gpioset gpiomon; do command -v $t >/dev/null 2>&1 && echo $t; done; true";

/// Groups the probe's output by package for the banner.
pub fn tools(found: &str) -> Vec<String> {
    let have: Vec<&str> = found.lines().map(str::trim).collect();
    let mut out = Vec::new();
    if have.contains(&"busybox") {
        out.push("busybox".to_owned());
    }
    let i2c: Vec<&str> = have
        .iter()
        .copied()
        .filter(|t| t.starts_with("i2c"))
        .collect();
    if !i2c.is_empty() {
        out.push(format!("i2c-tools ({})", i2c.join(" ")));
    }
    let gpio: Vec<&str> = have
        .iter()
        .copied()
        .filter(|t| t.starts_with("gpio"))
        .collect();
    if !gpio.is_empty() {
        out.push(format!("gpiod ({})", gpio.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dangle_proto::{GpioChipInfo, I2cAdapterInfo, NvmemInfo};

    fn list() -> DeviceList {
        DeviceList {
            gpiochips: vec![
                GpioChipInfo {
                    name: "gpiochip0".into(),
                    label: "virtio0".into(),
                    lines: 32,
                    path: "/dev/gpiochip0".into(),
                    device_path: Some(
                        "/sys/devices/pci0000:00/0000:00:10.0/0000:01:00.0/virtio0/gpiochip0"
                            .into(),
                    ),
                },
                GpioChipInfo {
                    name: "gpiochip1".into(),
                    label: "0-0020".into(),
                    lines: 16,
                    path: "/dev/gpiochip1".into(),
                    device_path: Some(
                        "/sys/devices/pci0000:00/0000:00:11.0/0000:02:00.0/virtio1/i2c-0/0-0020/gpiochip1"
                            .into(),
                    ),
                },
            ],
            i2c_adapters: vec![I2cAdapterInfo {
                bus: 0,
                name: "i2c_virtio at virtio bus 1".into(),
                device_path: Some(
                    "/sys/devices/pci0000:00/0000:00:11.0/0000:02:00.0/virtio1/i2c-0".into(),
                ),
            }],
            nvmem: vec![NvmemInfo {
                name: "0-00500".into(),
                size: Some(256),
            }],
        }
    }

    #[test]
    fn devices_default_hardware_names_every_guest_path() {
        let v = devices(&DeviceSpec::defaults(), &list());
        assert_eq!(v[0].guest, "/dev/gpiochip0 (label virtio0)");
        assert_eq!(v[1].guest, "/dev/i2c-0");
        assert_eq!(v[1].chips[0].what, "24c02 at 0x50");
        assert_eq!(v[1].chips[0].guest, "/sys/bus/nvmem/devices/0-00500/nvmem");
        assert_eq!(v[1].chips[1].what, "pca9555 at 0x20");
        assert_eq!(v[1].chips[1].guest, "/dev/gpiochip1 (label 0-0020)");
    }

    #[test]
    fn devices_unbound_chips_and_missing_devices_say_so() {
        let mut l = list();
        l.nvmem.clear();
        l.gpiochips.remove(0);
        let v = devices(&DeviceSpec::defaults(), &l);
        assert_eq!(v[0].guest, "not visible in the guest");
        assert_eq!(v[1].chips[0].guest, "not bound (client 0-0050)");
    }

    #[test]
    fn banner_has_devices_tools_ctl_and_how_to_leave() {
        let v = devices(&DeviceSpec::defaults(), &list());
        let t = tools("busybox\ni2cdetect\ni2cget\ngpiomon\n");
        let b = banner("6.12.117", "tcg", "a/b", &v, &t, Some("dangle ctl status"));
        for needle in [
            "gpio0",
            "/dev/gpiochip0",
            "/dev/i2c-0",
            "0-00500/nvmem",
            "i2c-tools (i2cdetect i2cget)",
            "gpiod (gpiomon)",
            "dangle ctl status",
            "poweroff (or Ctrl-A X)",
        ] {
            assert!(b.contains(needle), "{needle:?} missing from\n{b}");
        }
    }
}
