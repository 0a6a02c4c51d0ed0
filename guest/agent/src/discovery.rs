//! Finding devices: GPIO chips through their character devices, I2C
//! adapters and nvmem devices through sysfs.
//!
//! Sysfs lookups go through [`Sysfs`], whose root is `/` in the guest and a
//! temporary tree in tests. Facts used (Linux 6.12):
//! - virtio-gpio labels its chip with its virtio device name (`virtio0`,
//!   `gc.label = dev_name(dev)` in `drivers/gpio/gpio-virtio.c`);
//! - i2c-virtio names its adapter `i2c_virtio at virtio bus N`
//!   (`drivers/i2c/busses/i2c-virtio.c`);
//! - adapters are `/sys/bus/i2c/devices/i2c-N` with a `name` file; clients
//!   are `N-00AA` with, for at24, an `eeprom` file;
//! - nvmem devices are `/sys/bus/nvmem/devices/<name>/nvmem`.

use std::path::{Path, PathBuf};

use dangle_proto::{
    AdapterSelector, ChipSelector, GpioChipInfo, I2cAdapterInfo, NvmemInfo, NvmemSelector,
};

/// Why a device could not be found.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// Reading a sysfs directory failed.
    #[error("cannot list {path}")]
    List {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Nothing matched.
    #[error("no {what} matches {selector}")]
    NotFound {
        /// `GPIO chip`, `I2C adapter`, `nvmem device`.
        what: &'static str,
        /// The selector, as written.
        selector: String,
    },
}

/// A sysfs tree rooted at `root` (`/` in the guest).
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Self::new("/")
    }
}

impl Sysfs {
    /// A tree rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `root` + an absolute guest path.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    fn list(&self, abs: &str) -> Result<Vec<String>, DiscoveryError> {
        let dir = self.path(abs);
        let rd = std::fs::read_dir(&dir).map_err(|source| DiscoveryError::List {
            path: dir.clone(),
            source,
        })?;
        let mut names: Vec<String> = rd
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Every I2C adapter, by bus number.
    ///
    /// # Errors
    /// If `/sys/bus/i2c/devices` cannot be read.
    pub fn i2c_adapters(&self) -> Result<Vec<I2cAdapterInfo>, DiscoveryError> {
        let mut out = Vec::new();
        for name in self.list("/sys/bus/i2c/devices")? {
            let Some(bus) = name
                .strip_prefix("i2c-")
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let adapter_name =
                std::fs::read_to_string(self.path(&format!("/sys/bus/i2c/devices/{name}/name")))
                    .map(|s| s.trim_end().to_owned())
                    .unwrap_or_default();
            let device_path =
                std::fs::canonicalize(self.path(&format!("/sys/bus/i2c/devices/{name}")))
                    .ok()
                    .map(|p| p.to_string_lossy().into_owned());
            out.push(I2cAdapterInfo {
                bus,
                name: adapter_name,
                device_path,
            });
        }
        out.sort_by_key(|a| a.bus);
        Ok(out)
    }

    /// The bus number of the adapter `sel` picks.
    ///
    /// # Errors
    /// [`DiscoveryError::NotFound`] if none matches.
    pub fn find_adapter(&self, sel: &AdapterSelector) -> Result<u32, DiscoveryError> {
        let adapters = self.i2c_adapters()?;
        let found = match sel {
            AdapterSelector::Bus(n) => adapters.iter().find(|a| a.bus == *n),
            AdapterSelector::NamePrefix(p) => adapters.iter().find(|a| a.name.starts_with(p)),
        };
        found
            .map(|a| a.bus)
            .ok_or_else(|| DiscoveryError::NotFound {
                what: "I2C adapter",
                selector: format!("{sel:?}"),
            })
    }

    /// Every nvmem device.
    ///
    /// # Errors
    /// If `/sys/bus/nvmem/devices` cannot be read.
    pub fn nvmem_devices(&self) -> Result<Vec<NvmemInfo>, DiscoveryError> {
        Ok(self
            .list("/sys/bus/nvmem/devices")?
            .into_iter()
            .map(|name| {
                let size =
                    std::fs::metadata(self.path(&format!("/sys/bus/nvmem/devices/{name}/nvmem")))
                        .ok()
                        .map(|m| m.len());
                NvmemInfo { name, size }
            })
            .collect())
    }

    /// The file `sel` names (an `nvmem` or at24 `eeprom` file), as a guest
    /// path under this root.
    ///
    /// # Errors
    /// [`DiscoveryError::NotFound`] if none matches.
    pub fn find_nvmem(&self, sel: &NvmemSelector) -> Result<PathBuf, DiscoveryError> {
        let not_found = || DiscoveryError::NotFound {
            what: "nvmem device",
            selector: format!("{sel:?}"),
        };
        let path = match sel {
            NvmemSelector::Device(name) => {
                self.path(&format!("/sys/bus/nvmem/devices/{name}/nvmem"))
            }
            NvmemSelector::DevicePrefix(prefix) => {
                let dev = self
                    .nvmem_devices()?
                    .into_iter()
                    .find(|d| d.name.starts_with(prefix.as_str()))
                    .ok_or_else(not_found)?;
                self.path(&format!("/sys/bus/nvmem/devices/{}/nvmem", dev.name))
            }
            NvmemSelector::Eeprom { adapter, addr } => {
                let bus = self.find_adapter(adapter)?;
                self.path(&format!("/sys/bus/i2c/devices/{bus}-{addr:04x}/eeprom"))
            }
        };
        if path.exists() {
            Ok(path)
        } else {
            Err(not_found())
        }
    }
}

/// Every GPIO chip: the `gpiochipN` entries of `/sys/bus/gpio/devices`,
/// each opened as `/dev/gpiochipN` (label and line count come from
/// `GPIO_GET_CHIPINFO_IOCTL`). Chips that vanish while listed are skipped.
///
/// This deliberately does not scan `/dev` (as `gpiocdev::chip::chips`
/// does, resolving every node): under TCG with KASAN that scan costs
/// seconds of CPU per call and starved every other consumer.
pub fn gpio_chips(sysfs: &Sysfs) -> Vec<GpioChipInfo> {
    let Ok(mut names) = sysfs.list("/sys/bus/gpio/devices") else {
        return Vec::new();
    };
    names.retain(|n| {
        n.strip_prefix("gpiochip")
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    });
    // Natural order: gpiochip2 before gpiochip10.
    names.sort_by_key(|n| (n.len(), n.clone()));
    names
        .into_iter()
        .filter_map(|name| {
            let p = sysfs.path(&format!("/dev/{name}"));
            let chip = gpiocdev::Chip::from_path(&p).ok()?;
            let info = chip.info().ok()?;
            let device_path =
                std::fs::canonicalize(sysfs.path(&format!("/sys/bus/gpio/devices/{name}")))
                    .ok()
                    .map(|p| p.to_string_lossy().into_owned());
            Some(GpioChipInfo {
                name: info.name,
                label: info.label,
                lines: info.num_lines,
                path: p.to_string_lossy().into_owned(),
                device_path,
            })
        })
        .collect()
}

/// The chip `sel` picks among `chips`.
pub fn select_chip<'a>(chips: &'a [GpioChipInfo], sel: &ChipSelector) -> Option<&'a GpioChipInfo> {
    chips.iter().find(|c| match sel {
        ChipSelector::Label(l) => &c.label == l,
        ChipSelector::Name(n) => &c.name == n,
        ChipSelector::Path(p) => Path::new(&c.path) == Path::new(p),
    })
}

/// The character device path of the chip `sel` picks. A `Path` selector is
/// returned as is, without listing, so that a consumer can be pointed at a
/// chip that is about to appear.
///
/// # Errors
/// [`DiscoveryError::NotFound`] if no chip matches.
pub fn find_chip(sysfs: &Sysfs, sel: &ChipSelector) -> Result<PathBuf, DiscoveryError> {
    match sel {
        ChipSelector::Path(p) => return Ok(PathBuf::from(p)),
        ChipSelector::Name(n) if !n.contains('/') => {
            return Ok(sysfs.path(&format!("/dev/{n}")));
        }
        _ => {}
    }
    let chips = gpio_chips(sysfs);
    select_chip(&chips, sel)
        .map(|c| PathBuf::from(&c.path))
        .ok_or_else(|| DiscoveryError::NotFound {
            what: "GPIO chip",
            selector: format!("{sel:?}"),
        })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn fake_tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tempdir");
        let r = t.path();
        let w = |p: &str, data: &str| {
            let p = r.join(p);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, data).expect("write");
        };
        w(
            "sys/bus/i2c/devices/i2c-0/name",
            "SMBus I801 adapter at f000\n",
        );
        w(
            "sys/bus/i2c/devices/i2c-3/name",
            "i2c_virtio at virtio bus 1\n",
        );
        w("sys/bus/i2c/devices/3-0050/eeprom", &"\u{0}".repeat(256));
        w("sys/bus/i2c/devices/3-0050/name", "24c02\n");
        w("sys/bus/nvmem/devices/3-00500/nvmem", &"x".repeat(256));
        w("sys/bus/nvmem/devices/cmos_nvram0/nvmem", "y");
        t
    }

    #[test]
    fn i2c_adapters_fake_tree_lists_adapters_not_clients() {
        let t = fake_tree();
        let s = Sysfs::new(t.path());
        let a = s.i2c_adapters().expect("list");
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].bus, 3);
        assert_eq!(a[1].name, "i2c_virtio at virtio bus 1");
    }

    #[test]
    fn find_adapter_by_prefix_and_bus_resolves() {
        let t = fake_tree();
        let s = Sysfs::new(t.path());
        let sel = AdapterSelector::NamePrefix("i2c_virtio".to_owned());
        assert_eq!(s.find_adapter(&sel).expect("prefix"), 3);
        assert_eq!(s.find_adapter(&AdapterSelector::Bus(0)).expect("bus"), 0);
        let err = s
            .find_adapter(&AdapterSelector::Bus(7))
            .expect_err("missing");
        assert!(err.to_string().contains("Bus(7)"), "{err}");
    }

    #[test]
    fn find_nvmem_device_prefix_and_eeprom_resolve() {
        let t = fake_tree();
        let s = Sysfs::new(t.path());
        let devs = s.nvmem_devices().expect("list");
        assert_eq!(devs[0].name, "3-00500");
        assert_eq!(devs[0].size, Some(256));
        let p = s
            .find_nvmem(&NvmemSelector::DevicePrefix("3-0050".to_owned()))
            .expect("prefix");
        assert!(p.ends_with("sys/bus/nvmem/devices/3-00500/nvmem"));
        let p = s
            .find_nvmem(&NvmemSelector::Eeprom {
                adapter: AdapterSelector::NamePrefix("i2c_virtio".to_owned()),
                addr: 0x50,
            })
            .expect("eeprom");
        assert!(p.ends_with("sys/bus/i2c/devices/3-0050/eeprom"));
        assert!(
            s.find_nvmem(&NvmemSelector::Device("nope".to_owned()))
                .is_err()
        );
    }

    #[test]
    fn i2c_adapters_missing_tree_names_the_directory() {
        let t = tempfile::tempdir().expect("tempdir");
        let err = Sysfs::new(t.path()).i2c_adapters().expect_err("empty");
        assert!(err.to_string().contains("sys/bus/i2c/devices"), "{err}");
    }

    #[test]
    fn find_chip_by_name_or_path_needs_no_listing() {
        let t = tempfile::tempdir().expect("tempdir");
        let s = Sysfs::new(t.path());
        let p = find_chip(&s, &ChipSelector::Name("gpiochip3".into())).expect("name");
        assert_eq!(p, t.path().join("dev/gpiochip3"));
        let p = find_chip(&s, &ChipSelector::Path("/dev/gpiochip1".into())).expect("path");
        assert_eq!(p, PathBuf::from("/dev/gpiochip1"));
        // A label needs the chips; a tree without them has none.
        let e = find_chip(&s, &ChipSelector::Label("virtio0".into())).expect_err("label");
        assert!(e.to_string().contains("virtio0"), "{e}");
    }

    #[test]
    fn gpio_chips_fake_tree_without_chardevs_lists_nothing() {
        let t = fake_tree();
        for n in ["gpiochip0", "gpiochip10", "gpio-sim.0"] {
            fs::create_dir_all(t.path().join("sys/bus/gpio/devices").join(n)).expect("mkdir");
        }
        // Plain files are not GPIO character devices: skipped, no error.
        fs::create_dir_all(t.path().join("dev")).expect("mkdir");
        fs::write(t.path().join("dev/gpiochip0"), "").expect("write");
        assert!(gpio_chips(&Sysfs::new(t.path())).is_empty());
    }

    #[test]
    fn select_chip_by_label_name_and_path() {
        let chips = vec![
            GpioChipInfo {
                name: "gpiochip0".to_owned(),
                label: "virtio0".to_owned(),
                lines: 8,
                path: "/dev/gpiochip0".to_owned(),
                device_path: None,
            },
            GpioChipInfo {
                name: "gpiochip1".to_owned(),
                label: "pca9555".to_owned(),
                lines: 16,
                path: "/dev/gpiochip1".to_owned(),
                device_path: None,
            },
        ];
        let by = |s: ChipSelector| select_chip(&chips, &s).map(|c| c.name.clone());
        assert_eq!(
            by(ChipSelector::Label("pca9555".into())).as_deref(),
            Some("gpiochip1")
        );
        assert_eq!(
            by(ChipSelector::Name("gpiochip0".into())).as_deref(),
            Some("gpiochip0")
        );
        assert_eq!(
            by(ChipSelector::Path("/dev/gpiochip1".into())).as_deref(),
            Some("gpiochip1")
        );
        assert_eq!(by(ChipSelector::Label("virtio9".into())), None);
    }
}
