//! From suite consumers (which name dangle devices) to agent workloads
//! (which name guest objects), once the guest has told us what it sees.

use std::collections::BTreeMap;

use dangle_proto::{AdapterSelector, ChipSelector, ConsumerSpec, EdgeWait, I2cOp, NvmemSelector};

use super::schema::{Consumer, I2cOpName};

/// Pause between operations of looping consumers: busy, yet leaving the
/// TCG guest enough time to run the unplug itself.
pub const LOOP_PERIOD_US: u64 = 2_000;

/// Pause between create/delete and bind/unbind writes.
pub const CHURN_PERIOD_US: u64 = 20_000;

/// What a dangle device is called inside the guest right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestName {
    /// A gpiochip, by label (e.g. `virtio1`).
    GpioChip {
        /// Chip label.
        label: String,
        /// Where it sits.
        at: GuestPlace,
    },
    /// An I2C adapter, by bus number.
    I2cBus {
        /// N of `i2c-N`.
        bus: u32,
        /// Where it sits.
        at: GuestPlace,
    },
}

impl GuestName {
    /// Where the device sits.
    pub fn place(&self) -> &GuestPlace {
        match self {
            GuestName::GpioChip { at, .. } | GuestName::I2cBus { at, .. } => at,
        }
    }
}

/// The device's PCI endpoint and virtio device, from its sysfs path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestPlace {
    /// PCI address of the virtio-pci endpoint, e.g. `0000:01:00.0`.
    pub pci: Option<String>,
    /// The virtio device, e.g. `virtio1`.
    pub virtio: Option<String>,
}

impl GuestPlace {
    /// Reads the endpoint (the component after the root port) and the
    /// virtio device out of a resolved sysfs path.
    pub fn from_sysfs_path(path: &str, root_port: &str) -> Self {
        let parts: Vec<&str> = path.split('/').collect();
        let pci = parts
            .iter()
            .position(|p| *p == root_port)
            .and_then(|i| parts.get(i + 1))
            .map(|s| (*s).to_owned());
        let virtio = parts
            .iter()
            .find(|p| {
                p.strip_prefix("virtio")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .map(|s| (*s).to_owned());
        Self { pci, virtio }
    }
}

/// dangle device id -> guest name.
pub type GuestMap = BTreeMap<String, GuestName>;

/// Why a consumer cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The guest does not (yet) show this device.
    #[error("device {0} is not visible in the guest")]
    NotVisible(String),
    /// The device is of the other kind.
    #[error("device {0} is not a {1}")]
    WrongKind(String, &'static str),
}

fn chip(map: &GuestMap, id: &str) -> Result<ChipSelector, TranslateError> {
    match map.get(id) {
        Some(GuestName::GpioChip { label, .. }) => Ok(ChipSelector::Label(label.clone())),
        Some(_) => Err(TranslateError::WrongKind(id.to_owned(), "gpio controller")),
        None => Err(TranslateError::NotVisible(id.to_owned())),
    }
}

/// The bus number of an I2C device.
pub fn bus(map: &GuestMap, id: &str) -> Result<u32, TranslateError> {
    match map.get(id) {
        Some(GuestName::I2cBus { bus, .. }) => Ok(*bus),
        Some(_) => Err(TranslateError::WrongKind(id.to_owned(), "i2c adapter")),
        None => Err(TranslateError::NotVisible(id.to_owned())),
    }
}

/// The Linux device name of the I2C client at `addr` on bus `bus`
/// (`0-0050`); at24 names its nvmem device after it with a `0` appended.
pub fn client_name(bus: u32, addr: u16) -> String {
    format!("{bus}-{addr:04x}")
}

/// The agent workload for a suite consumer.
pub fn consumer_spec(c: &Consumer, map: &GuestMap) -> Result<ConsumerSpec, TranslateError> {
    Ok(match c {
        Consumer::GpioHold(l) => ConsumerSpec::GpioHold {
            chip: chip(map, &l.device)?,
            line: l.line,
            value: true,
        },
        Consumer::GpioToggle(l) => ConsumerSpec::GpioToggle {
            chip: chip(map, &l.device)?,
            line: l.line,
            period_us: LOOP_PERIOD_US,
            iterations: None,
        },
        Consumer::GpioEdgeBlocking(l) => ConsumerSpec::GpioEdgeRead {
            chip: chip(map, &l.device)?,
            line: l.line,
            wait: EdgeWait::Blocking,
        },
        Consumer::GpioEdgePoll(l) => ConsumerSpec::GpioEdgeRead {
            chip: chip(map, &l.device)?,
            line: l.line,
            wait: EdgeWait::Poll,
        },
        Consumer::GpioInfoWatch(l) => ConsumerSpec::GpioInfoWatch {
            chip: chip(map, &l.device)?,
            line: l.line,
        },
        Consumer::GpioV1Event(l) => ConsumerSpec::GpioV1LineEvent {
            chip: chip(map, &l.device)?,
            line: l.line,
        },
        Consumer::GpioRequestLoop(l) => ConsumerSpec::GpioRequestLoop {
            chip: chip(map, &l.device)?,
            line: l.line,
            iterations: None,
        },
        Consumer::GpioAggregator { device, lines } => ConsumerSpec::GpioAggregator {
            chip: chip(map, device)?,
            lines: lines.clone(),
            period_us: LOOP_PERIOD_US,
            iterations: None,
        },
        Consumer::ExpanderHold { device, addr, line } => ConsumerSpec::GpioHold {
            // pca953x labels its gpiochip with the client's device name.
            chip: ChipSelector::Label(client_name(bus(map, device)?, *addr)),
            line: *line,
            value: true,
        },
        Consumer::I2cHold { device } => ConsumerSpec::I2cHold {
            adapter: AdapterSelector::Bus(bus(map, device)?),
        },
        Consumer::I2cTransfer { device, addr, op } => ConsumerSpec::I2cTransfer {
            adapter: AdapterSelector::Bus(bus(map, device)?),
            addr: *addr,
            op: match op {
                I2cOpName::Rdwr => I2cOp::Rdwr { reg: 0, len: 8 },
                I2cOpName::SmbusByte => I2cOp::SmbusByte { cmd: 0 },
                I2cOpName::SmbusWord => I2cOp::SmbusWord { cmd: 0 },
            },
            period_us: LOOP_PERIOD_US,
            iterations: None,
        },
        Consumer::NvmemIo {
            device,
            addr,
            len,
            write,
        } => ConsumerSpec::NvmemIo {
            source: NvmemSelector::Eeprom {
                adapter: AdapterSelector::Bus(bus(map, device)?),
                addr: *addr,
            },
            len: *len,
            write: write.then(|| b"dangle".to_vec()),
            period_us: LOOP_PERIOD_US,
            iterations: None,
        },
        Consumer::I2cClientChurn { device, chip, addr } => ConsumerSpec::I2cClientChurn {
            adapter: AdapterSelector::Bus(bus(map, device)?),
            device: chip.clone(),
            addr: *addr,
            period_us: CHURN_PERIOD_US,
            iterations: None,
        },
        Consumer::NvmemKernelConsumer { device, addr } => ConsumerSpec::NvmemKernelConsumer {
            device: format!("{}0", client_name(bus(map, device)?, *addr)),
            period_us: LOOP_PERIOD_US * 10,
            iterations: None,
        },
    })
}

/// A short stable name for the `i`-th consumer (`c0-gpio-hold`).
pub fn consumer_name(i: usize, c: &Consumer) -> String {
    let kind = serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_object().and_then(|o| o.keys().next().cloned()))
        .or_else(|| {
            serde_json::to_value(c)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| "consumer".into());
    format!("c{i}-{kind}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::schema::GpioLine;

    fn map() -> GuestMap {
        let mut m = GuestMap::new();
        m.insert(
            "gpio0".into(),
            GuestName::GpioChip {
                label: "virtio1".into(),
                at: GuestPlace::default(),
            },
        );
        m.insert(
            "i2c0".into(),
            GuestName::I2cBus {
                bus: 3,
                at: GuestPlace::default(),
            },
        );
        m
    }

    #[test]
    fn consumer_spec_gpio_uses_chip_label() {
        let c = Consumer::GpioEdgeBlocking(GpioLine {
            device: "gpio0".into(),
            line: 4,
        });
        assert_eq!(
            consumer_spec(&c, &map()).unwrap(),
            ConsumerSpec::GpioEdgeRead {
                chip: ChipSelector::Label("virtio1".into()),
                line: 4,
                wait: EdgeWait::Blocking
            }
        );
    }

    #[test]
    fn consumer_spec_i2c_side_uses_bus_and_client_names() {
        let m = map();
        let hold = consumer_spec(
            &Consumer::I2cHold {
                device: "i2c0".into(),
            },
            &m,
        )
        .unwrap();
        assert_eq!(
            hold,
            ConsumerSpec::I2cHold {
                adapter: AdapterSelector::Bus(3)
            }
        );
        let k = consumer_spec(
            &Consumer::NvmemKernelConsumer {
                device: "i2c0".into(),
                addr: 0x50,
            },
            &m,
        )
        .unwrap();
        assert!(
            matches!(k, ConsumerSpec::NvmemKernelConsumer { ref device, .. } if device == "3-00500"),
            "{k:?}"
        );
        let e = consumer_spec(
            &Consumer::ExpanderHold {
                device: "i2c0".into(),
                addr: 0x20,
                line: 1,
            },
            &m,
        )
        .unwrap();
        assert!(
            matches!(e, ConsumerSpec::GpioHold { chip: ChipSelector::Label(ref l), .. } if l == "3-0020"),
            "{e:?}"
        );
    }

    #[test]
    fn consumer_spec_missing_or_wrong_device_is_an_error() {
        let m = map();
        let c = Consumer::GpioHold(GpioLine {
            device: "gpio9".into(),
            line: 0,
        });
        assert_eq!(
            consumer_spec(&c, &m).unwrap_err(),
            TranslateError::NotVisible("gpio9".into())
        );
        let c = Consumer::I2cHold {
            device: "gpio0".into(),
        };
        assert!(matches!(
            consumer_spec(&c, &m).unwrap_err(),
            TranslateError::WrongKind(..)
        ));
    }

    #[test]
    fn guest_place_from_sysfs_path_finds_endpoint_and_virtio() {
        let p = GuestPlace::from_sysfs_path(
            "/sys/devices/pci0000:00/0000:00:11.0/0000:02:00.0/virtio3/i2c-1",
            "0000:00:11.0",
        );
        assert_eq!(p.pci.as_deref(), Some("0000:02:00.0"));
        assert_eq!(p.virtio.as_deref(), Some("virtio3"));
        assert_eq!(
            GuestPlace::from_sysfs_path("/sys/x", "0000:00:11.0"),
            GuestPlace::default()
        );
    }

    #[test]
    fn consumer_name_uses_kind() {
        let c = Consumer::I2cHold {
            device: "i2c0".into(),
        };
        assert_eq!(consumer_name(2, &c), "c2-i2c-hold");
    }
}
