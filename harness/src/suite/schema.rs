//! The suite file format (YAML), pass one: what the user wrote.
//!
//! Every struct denies unknown keys, so a typo is an error with its file,
//! line and column rather than a silently ignored setting. Enums are
//! written the way people write them in YAML: a bare name for a variant
//! without fields (`clean`, `kmemleak`), a one-key map otherwise
//! (`{ reproduces: REGEX }`, `- gpio-hold: { device: gpio0, line: 3 }`);
//! [`super::load`] reads the file with serde_yaml_ng's
//! `singleton_map_recursive` for that. Defaults and per-scenario overrides
//! are resolved in a second pass ([`super::load`]). The reference for
//! users is `docs/suites.md`.
//!
//! ```yaml
//! name: smoke
//! defaults: { cycles: 1, unplug-timeout: 20s }
//! scenarios:
//!   - name: gpio-hold-qmp
//!     devices: [{ kind: gpio, id: gpio0, lines: 8 }]
//!     consumers: [{ gpio-hold: { device: gpio0, line: 3 } }]
//!     unplug: { method: qmp, targets: [gpio0] }
//!     expect: clean
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::vm::devices::DeviceSpec;

/// A whole suite file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SuiteFile {
    /// Suite name (defaults to the file stem).
    #[serde(default)]
    pub name: Option<String>,
    /// What the suite is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Settings every scenario inherits unless it overrides them.
    #[serde(default)]
    pub defaults: Defaults,
    /// The scenarios, run in order.
    pub scenarios: Vec<Scenario>,
}

/// Inheritable settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Defaults {
    /// Unplug cycles per scenario.
    #[serde(default)]
    pub cycles: Option<u32>,
    /// How long an unplug may take before it is a finding.
    #[serde(default, with = "humantime_serde::option")]
    pub unplug_timeout: Option<Duration>,
    /// How long a consumer syscall may block before it is a finding.
    #[serde(default, with = "humantime_serde::option")]
    pub consumer_deadline: Option<Duration>,
    /// Quiet time after the last cycle, for late reports (hung tasks).
    #[serde(default, with = "humantime_serde::option")]
    pub settle: Option<Duration>,
    /// Agent silence that counts as a dead guest.
    #[serde(default, with = "humantime_serde::option")]
    pub watchdog: Option<Duration>,
    /// Extra kernel command line words.
    #[serde(default)]
    pub cmdline: Vec<String>,
}

/// One scenario: devices + consumers + unplug method + faults + expectation.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Scenario {
    /// Unique name within the suite (`--only` selects by it).
    pub name: String,
    /// What it exercises.
    #[serde(default)]
    pub description: Option<String>,
    /// The devices (default: one GPIO controller, one I2C adapter with
    /// `at24:0x50:24c02` and `pca9555:0x20`).
    #[serde(default)]
    pub devices: Option<Vec<DeviceSpec>>,
    /// Kernel requirements beyond the default fragments.
    #[serde(default)]
    pub kernel: KernelReq,
    /// Guest steps before consumers start, run again after each replug
    /// (a replugged adapter needs its clients instantiated again).
    #[serde(default)]
    pub setup: Vec<Step>,
    /// Guest workloads running while devices are pulled.
    #[serde(default)]
    pub consumers: Vec<Consumer>,
    /// How devices are pulled.
    #[serde(default)]
    pub unplug: Option<Unplug>,
    /// Steps run after the unplug cycles (e.g. kill a holder, then read).
    #[serde(default)]
    pub after: Vec<Step>,
    /// What a correct run looks like on the kernel under test.
    pub expect: Expectation,
    /// Why the expectation is what it is (hypothesis confirmed/refuted...).
    #[serde(default)]
    pub notes: Option<String>,
    /// Overrides the suite's `unplug-timeout`.
    #[serde(default, with = "humantime_serde::option")]
    pub unplug_timeout: Option<Duration>,
    /// Overrides the suite's `consumer-deadline`.
    #[serde(default, with = "humantime_serde::option")]
    pub consumer_deadline: Option<Duration>,
    /// Overrides the suite's `settle`.
    #[serde(default, with = "humantime_serde::option")]
    pub settle: Option<Duration>,
    /// Overrides the suite's `watchdog`.
    #[serde(default, with = "humantime_serde::option")]
    pub watchdog: Option<Duration>,
    /// Extra kernel command line words (added to the suite's).
    #[serde(default)]
    pub cmdline: Vec<String>,
}

/// Kernel requirements of a scenario.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KernelReq {
    /// `SYMBOL=val` or fragment paths, merged after the default fragments.
    #[serde(default)]
    pub config: Vec<String>,
    /// Patch files (relative to the suite file).
    #[serde(default)]
    pub patches: Vec<String>,
}

/// A one-shot guest step.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum Step {
    /// Write `data` to a guest file.
    Write {
        /// Absolute guest path.
        path: String,
        /// Contents.
        data: String,
    },
    /// Instantiate an I2C client on the adapter of device `adapter`.
    NewDevice {
        /// dangle device id of the adapter, e.g. `i2c0`.
        adapter: String,
        /// Driver name, e.g. `24c02`, `pca9555`.
        chip: String,
        /// 7-bit address.
        addr: u16,
    },
    /// Run a command in the guest; a non-zero exit is an infrastructure error.
    Exec(Vec<String>),
    /// Sleep on the host.
    #[serde(with = "humantime_serde")]
    Sleep(Duration),
    /// Interrupt the syscall in flight of a consumer (its position in
    /// `consumers`, from 0) with a signal, without stopping it.
    Interrupt {
        /// Position in `consumers`.
        consumer: usize,
    },
    /// Scan for leaks with kmemleak and report what it finds (since the
    /// scenario started; earlier suspects are cleared after boot).
    Kmemleak,
    /// Drive a GPIO input line of a device from the host (backend control).
    DriveLine {
        /// dangle device id.
        device: String,
        /// Line offset.
        line: u32,
        /// Level.
        value: bool,
    },
}

/// A guest workload, naming devices by their dangle id.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum Consumer {
    /// Hold a line as output.
    GpioHold(GpioLine),
    /// Toggle an output line in a loop.
    GpioToggle(GpioLine),
    /// Edge events read with a blocking `read()` (no poll).
    GpioEdgeBlocking(GpioLine),
    /// Edge events read after `poll()`.
    GpioEdgePoll(GpioLine),
    /// Line-info watch on the chip fd, blocking read.
    GpioInfoWatch(GpioLine),
    /// v1 line event fd, blocking read.
    GpioV1Event(GpioLine),
    /// Request with edge detection and close, in a loop.
    GpioRequestLoop(GpioLine),
    /// gpio-aggregator over lines of the chip, toggled.
    GpioAggregator {
        /// dangle device id of the GPIO controller.
        device: String,
        /// Lines, gpio-aggregator syntax (`0-3`).
        lines: String,
    },
    /// Lines of a PCA953x expander on an I2C device, held as output.
    ExpanderHold {
        /// dangle device id of the I2C adapter.
        device: String,
        /// Expander address.
        addr: u16,
        /// Line offset.
        line: u32,
    },
    /// `/dev/i2c-N` held open.
    I2cHold {
        /// dangle device id.
        device: String,
    },
    /// I2C transfers in a loop (`rdwr`, `smbus-byte`, `smbus-word`).
    I2cTransfer {
        /// dangle device id.
        device: String,
        /// Target address.
        addr: u16,
        /// Operation.
        #[serde(default)]
        op: I2cOpName,
    },
    /// nvmem sysfs reads (optionally writes) of the EEPROM at `addr`.
    NvmemIo {
        /// dangle device id of the adapter.
        device: String,
        /// EEPROM address.
        addr: u16,
        /// Bytes per read.
        #[serde(default = "default_nvmem_len")]
        len: u32,
        /// Also write each round.
        #[serde(default)]
        write: bool,
    },
    /// `new_device`/`delete_device` churn on the adapter.
    I2cClientChurn {
        /// dangle device id of the adapter.
        device: String,
        /// Driver name.
        chip: String,
        /// Address.
        addr: u16,
    },
    /// In-kernel nvmem consumer (dangle's test module) holding the EEPROM at `addr`.
    NvmemKernelConsumer {
        /// dangle device id of the adapter.
        device: String,
        /// EEPROM address.
        addr: u16,
    },
}

fn default_nvmem_len() -> u32 {
    64
}

/// A GPIO line of a device.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GpioLine {
    /// dangle device id.
    pub device: String,
    /// Line offset.
    pub line: u32,
}

/// I2C operation names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum I2cOpName {
    /// Write a register byte then read.
    #[default]
    Rdwr,
    /// SMBus read byte data.
    SmbusByte,
    /// SMBus read word data.
    SmbusWord,
}

/// How devices are pulled.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Unplug {
    /// The method.
    pub method: Method,
    /// Device ids; when several, the seed picks one per cycle.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Cycles (overrides defaults).
    #[serde(default)]
    pub cycles: Option<u32>,
    /// Run cycles for this long instead of a count.
    #[serde(default, with = "humantime_serde::option")]
    pub duration: Option<Duration>,
    /// Jitter between consumers starting and the unplug, `min..max`
    /// (e.g. `100ms..2s`); the seed picks within it.
    #[serde(default)]
    pub delay: Option<String>,
    /// Leave the device out after the last cycle (no final replug).
    #[serde(default)]
    pub no_replug: bool,
}

/// Unplug methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// QMP `device_del` / `device_add`.
    Qmp,
    /// Guest virtio driver unbind / bind.
    Unbind,
    /// Guest PCI remove / rescan.
    PciRemove,
    /// SIGKILL the backend, then restart it.
    BackendKill,
    /// The backend stops replying (fault plan), then resumes.
    BackendStall,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Qmp => "qmp",
            Method::Unbind => "unbind",
            Method::PciRemove => "pci-remove",
            Method::BackendKill => "backend-kill",
            Method::BackendStall => "backend-stall",
        })
    }
}

/// What a correct run looks like.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum Expectation {
    /// No finding at all.
    Clean,
    /// Some finding's title matches this regex.
    Reproduces(String),
    /// A hang whose stack (or title) names this function.
    HangsIn(String),
}
