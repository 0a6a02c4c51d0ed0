//! The virtual hardware of a VM: which vhost-user devices, and the backend
//! command line that serves each.

use std::ffi::OsString;
use std::path::Path;

use super::qemu::DeviceKind;

/// Default lines of a GPIO controller.
pub const DEFAULT_GPIO_LINES: u16 = 32;

/// Default chips on the default I2C adapter.
pub const DEFAULT_I2C_CHIPS: [&str; 2] = ["at24:0x50:24c02", "pca9555:0x20"];

/// One device to attach.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DeviceSpec {
    /// A virtio-gpio controller.
    Gpio {
        /// QEMU device id, e.g. `gpio0`.
        id: String,
        /// Number of lines.
        #[serde(default = "default_lines")]
        lines: u16,
        /// Optional line names.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        names: Vec<String>,
        /// Fault plans given to the backend at start (`--fault`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        faults: Vec<String>,
    },
    /// A virtio-i2c adapter with chips.
    I2c {
        /// QEMU device id, e.g. `i2c0`.
        id: String,
        /// Chip specs, e.g. `at24:0x50:24c02`.
        chips: Vec<String>,
        /// Fault plans given to the backend at start (`--fault`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        faults: Vec<String>,
    },
}

fn default_lines() -> u16 {
    DEFAULT_GPIO_LINES
}

impl DeviceSpec {
    /// The default hardware: one GPIO controller, one I2C adapter with an
    /// AT24 EEPROM and a PCA9555 expander.
    pub fn defaults() -> Vec<DeviceSpec> {
        vec![
            Self::gpio("gpio0", DEFAULT_GPIO_LINES),
            Self::i2c("i2c0", &DEFAULT_I2C_CHIPS),
        ]
    }

    /// A GPIO controller with `lines` lines.
    pub fn gpio(id: &str, lines: u16) -> Self {
        DeviceSpec::Gpio {
            id: id.to_owned(),
            lines,
            names: Vec::new(),
            faults: Vec::new(),
        }
    }

    /// An I2C adapter with the given chips.
    pub fn i2c(id: &str, chips: &[&str]) -> Self {
        DeviceSpec::I2c {
            id: id.to_owned(),
            chips: chips.iter().map(|c| (*c).to_owned()).collect(),
            faults: Vec::new(),
        }
    }

    /// The QEMU device id.
    pub fn id(&self) -> &str {
        match self {
            DeviceSpec::Gpio { id, .. } | DeviceSpec::I2c { id, .. } => id,
        }
    }

    /// The device kind.
    pub fn kind(&self) -> DeviceKind {
        match self {
            DeviceSpec::Gpio { .. } => DeviceKind::Gpio,
            DeviceSpec::I2c { .. } => DeviceKind::I2c,
        }
    }

    /// Arguments after the backend program (and its `backend` subcommand)
    /// that serve this device on `socket` with control socket `control`.
    pub fn backend_args(&self, socket: &Path, control: &Path) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let faults = match self {
            DeviceSpec::Gpio {
                lines,
                names,
                faults,
                ..
            } => {
                a.push("gpio".into());
                a.extend(["--socket".into(), socket.into()]);
                a.extend(["--lines".into(), lines.to_string().into()]);
                if !names.is_empty() {
                    a.extend(["--names".into(), names.join(",").into()]);
                }
                faults
            }
            DeviceSpec::I2c { chips, faults, .. } => {
                a.push("i2c".into());
                a.extend(["--socket".into(), socket.into()]);
                for c in chips {
                    a.extend(["--chip".into(), c.into()]);
                }
                faults
            }
        };
        a.extend(["--control".into(), control.into()]);
        for f in faults {
            a.extend(["--fault".into(), f.into()]);
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_args_i2c_lists_every_chip_and_fault() {
        let mut d = DeviceSpec::i2c("i2c0", &DEFAULT_I2C_CHIPS);
        if let DeviceSpec::I2c { faults, .. } = &mut d {
            faults.push("delay=100ms".into());
        }
        let a: Vec<String> = d
            .backend_args(Path::new("s/i2c0.sock"), Path::new("s/i2c0.ctl"))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            a,
            [
                "i2c",
                "--socket",
                "s/i2c0.sock",
                "--chip",
                "at24:0x50:24c02",
                "--chip",
                "pca9555:0x20",
                "--control",
                "s/i2c0.ctl",
                "--fault",
                "delay=100ms"
            ]
        );
    }

    #[test]
    fn backend_args_gpio_passes_lines_and_names() {
        let d = DeviceSpec::Gpio {
            id: "gpio0".into(),
            lines: 8,
            names: vec!["a".into(), "b".into()],
            faults: vec![],
        };
        let a: Vec<String> = d
            .backend_args(Path::new("g.sock"), Path::new("g.ctl"))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            a,
            [
                "gpio",
                "--socket",
                "g.sock",
                "--lines",
                "8",
                "--names",
                "a,b",
                "--control",
                "g.ctl"
            ]
        );
    }

    #[test]
    fn defaults_are_gpio_and_i2c_with_eeprom_and_expander() {
        let d = DeviceSpec::defaults();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].kind(), DeviceKind::Gpio);
        assert_eq!(
            d[1],
            DeviceSpec::i2c("i2c0", &["at24:0x50:24c02", "pca9555:0x20"])
        );
    }
}
