//! Loading suite files: parse (pass one), then check values that only make
//! sense together (pass two) and resolve defaults into a [`Plan`] per
//! scenario. Every error names the file, line and column the YAML parser
//! gave the offending value.
//!
//! Pass one is serde_yaml_ng with `singleton_map_recursive`, so the enum
//! maps people write (`- gpio-hold: { ... }`, `expect: { reproduces: ... }`)
//! deserialize straight from the parser's events: an unknown key or a bad
//! value inside one is located like any other. Pass two names the node it
//! rejects by its path ([`NodePath`]) and [`locate`] asks the parser where
//! that node is.
//!
//! Pass two rejects, each at the value at fault:
//! - a duplicate scenario name, a duplicate or malformed device id;
//! - a chip or a fault plan the backend would refuse (parsed by the
//!   backend's own [`ChipSpec`] and [`FaultSpec`] parsers), or two chips
//!   answering the same address;
//! - a reference to a device the scenario does not have, or of the wrong
//!   kind;
//! - a GPIO line at or past its device's `lines` (consumers, `drive-line`,
//!   `gpio-aggregator` line lists) or past an expander's lines;
//! - an I2C consumer at an address where no chip of that adapter answers,
//!   or where the chip is of the wrong kind (`nvmem-*` need an at24,
//!   `expander-hold` a PCA953x). `i2c-client-churn` is exempt: it
//!   instantiates clients at empty addresses on purpose;
//! - a bad regex, delay, empty command, or an interrupt of a consumer that
//!   does not exist.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dangle_backends::fault::{FaultParseError, FaultSpec};
use dangle_backends::i2c::pca953x::Pca953xModel;
use dangle_backends::i2c::spec::{ChipModel, ChipSpec, SpecError};

use super::locate::{NodePath, locate};
use super::schema::{Consumer, Defaults, Expectation, Method, Scenario, Step, SuiteFile, Unplug};
use crate::vm::devices::DeviceSpec;
use crate::vm::qemu::DeviceKind;

/// Default unplug cycles.
pub const DEFAULT_CYCLES: u32 = 1;
/// Default wait for an unplug to complete before it is a finding.
pub const DEFAULT_UNPLUG_TIMEOUT: Duration = Duration::from_secs(30);
/// Default consumer syscall deadline.
pub const DEFAULT_CONSUMER_DEADLINE: Duration = Duration::from_secs(10);
/// Default quiet time after the last cycle.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(3);
/// Default agent silence that counts as a dead guest.
pub const DEFAULT_WATCHDOG: Duration = Duration::from_secs(60);

/// A place in a suite file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
}

impl Location {
    /// Where the node at `node` of `text` is, in `file`.
    fn of(text: &str, file: &Path, node: &NodePath) -> Self {
        let (line, column) = locate(text, node).unwrap_or((0, 0));
        Location {
            file: file.to_owned(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
        }
    }
}

/// Errors loading a suite: all are bad input (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// The file cannot be read.
    #[error("cannot read suite {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// YAML syntax, unknown key or bad value (pass one): the parser's
    /// message, with its location moved to the front.
    #[error("{at}: {message}")]
    Parse {
        /// Where.
        at: Location,
        /// The parser's message.
        message: String,
    },
    /// The file has no scenario.
    #[error("{0}: the suite has no scenarios")]
    NoScenarios(PathBuf),
    /// A problem found in pass two.
    #[error("{at}: scenario {scenario}")]
    Invalid {
        /// The value at fault.
        at: Location,
        /// The scenario it is in.
        scenario: String,
        /// What is wrong with it.
        #[source]
        problem: Box<Problem>,
    },
}

impl SuiteError {
    /// Where in the file, when known.
    pub fn location(&self) -> Option<&Location> {
        match self {
            SuiteError::Parse { at, .. } | SuiteError::Invalid { at, .. } => Some(at),
            SuiteError::Read { .. } | SuiteError::NoScenarios(_) => None,
        }
    }
}

/// What pass two found wrong with a value.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// Two scenarios share a name.
    #[error("duplicate scenario name")]
    DuplicateScenario,
    /// Two devices of a scenario share an id.
    #[error("device id `{0}` is used twice")]
    DuplicateDevice(String),
    /// A device id QEMU and file names cannot carry.
    #[error("device id `{0}` must be letters, digits, `-` or `_`")]
    BadDeviceId(String),
    /// A chip the backend refuses.
    #[error("bad chip")]
    BadChip(#[source] SpecError),
    /// A fault plan the backend refuses.
    #[error("bad fault plan")]
    BadFault(#[source] FaultParseError),
    /// Two chips of an adapter answer the same address.
    #[error("chips `{first}` and `{second}` both answer address {addr:#04x}")]
    AddressTaken {
        /// The address.
        addr: u16,
        /// The chip written first.
        first: String,
        /// The chip written second.
        second: String,
    },
    /// A reference to a device the scenario does not have.
    #[error("{what} names device `{id}`, which is not among its devices ({known})")]
    UnknownDevice {
        /// What refers to it.
        what: String,
        /// The id.
        id: String,
        /// The scenario's device ids.
        known: String,
    },
    /// A reference to a device of the wrong kind.
    #[error("{what} needs a {want:?} device but `{id}` is {got:?}")]
    WrongKind {
        /// What refers to it.
        what: String,
        /// The id.
        id: String,
        /// The kind it needs.
        want: DeviceKind,
        /// The device's kind.
        got: DeviceKind,
    },
    /// A GPIO line the device does not have.
    #[error("{what} uses line {line}, but {device} has {lines} lines (0 to {})", lines.saturating_sub(1))]
    LineOutOfRange {
        /// What uses it.
        what: String,
        /// The line.
        line: u32,
        /// The device (or expander).
        device: String,
        /// Its line count.
        lines: u32,
    },
    /// A gpio-aggregator line list that does not parse.
    #[error("{what}: bad line list `{list}` (expected offsets and ranges like `0-3,5`)")]
    BadLineList {
        /// What uses it.
        what: String,
        /// The list.
        list: String,
    },
    /// An I2C consumer at an address where no chip answers.
    #[error(
        "{what} talks to address {addr:#04x} on `{device}`, where no chip answers (chips: {chips})"
    )]
    NoChip {
        /// The consumer.
        what: String,
        /// The address.
        addr: u16,
        /// The adapter.
        device: String,
        /// The adapter's chips.
        chips: String,
    },
    /// An I2C consumer at a chip of the wrong kind.
    #[error(
        "{what} needs {want} at address {addr:#04x} on `{device}`, but the chip there is `{chip}`"
    )]
    WrongChip {
        /// The consumer.
        what: String,
        /// The address.
        addr: u16,
        /// The adapter.
        device: String,
        /// The kind of chip it needs.
        want: &'static str,
        /// The chip there.
        chip: String,
    },
    /// An interrupt step names a consumer that does not exist.
    #[error("interrupt names consumer {consumer}, but there are {count} (counted from 0)")]
    NoSuchConsumer {
        /// The position given.
        consumer: usize,
        /// How many consumers there are.
        count: usize,
    },
    /// An exec step without a command.
    #[error("exec needs a command")]
    EmptyExec,
    /// An unplug target the scenario does not have.
    #[error("unplug target `{id}` is not among its devices ({known})")]
    UnknownTarget {
        /// The id.
        id: String,
        /// The scenario's device ids.
        known: String,
    },
    /// A bad `delay`.
    #[error(transparent)]
    Delay(#[from] DelayError),
    /// A bad `reproduces` regex.
    #[error("bad regex in reproduces")]
    Regex(#[source] regex::Error),
    /// `hangs-in` without a function.
    #[error("hangs-in needs a function name")]
    EmptyHangsIn,
}

/// Why a `delay` (`min..max` of durations) is unusable.
#[derive(Debug, thiserror::Error)]
pub enum DelayError {
    /// One end is not a duration.
    #[error("bad duration `{part}` in delay `{delay}`")]
    Duration {
        /// The part at fault.
        part: String,
        /// The whole delay.
        delay: String,
        /// The parser's reason.
        #[source]
        source: humantime::DurationError,
    },
    /// The minimum is above the maximum.
    #[error("delay `{0}`: the minimum is above the maximum")]
    Reversed(String),
}

/// A scenario with every default resolved: what the engine runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Plan {
    /// Suite name.
    pub suite: String,
    /// The suite file.
    pub file: PathBuf,
    /// The scenario as written (devices resolved).
    pub scenario: Scenario,
    /// Devices.
    pub devices: Vec<DeviceSpec>,
    /// Cycles (ignored when `duration` is set).
    pub cycles: u32,
    /// Run cycles for this long instead.
    pub duration: Option<Duration>,
    /// Jitter range between consumers starting and each unplug.
    pub delay: (Duration, Duration),
    /// Unplug completion timeout.
    pub unplug_timeout: Duration,
    /// Consumer deadline.
    pub consumer_deadline: Duration,
    /// Settle time.
    pub settle: Duration,
    /// Watchdog.
    pub watchdog: Duration,
    /// Kernel command line extras.
    pub cmdline: Vec<String>,
    /// Patch files, resolved relative to the suite file.
    pub patches: Vec<PathBuf>,
}

impl Plan {
    /// The scenario name.
    pub fn name(&self) -> &str {
        &self.scenario.name
    }
}

/// Reads and checks one suite file.
pub fn load_file(path: &Path) -> Result<Vec<Plan>, SuiteError> {
    let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Read {
        path: path.to_owned(),
        source,
    })?;
    load_str(&text, path)
}

/// Parses and checks suite text; `path` names it in errors.
pub fn load_str(text: &str, path: &Path) -> Result<Vec<Plan>, SuiteError> {
    let file = parse(text, path)?;
    let suite = file.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "suite".into())
    });
    let mut seen = BTreeSet::new();
    let mut plans = Vec::new();
    for (i, sc) in file.scenarios.iter().enumerate() {
        let check = Check {
            text,
            file: path,
            scenario: sc,
            at: NodePath::root().key("scenarios").index(i),
        };
        if !seen.insert(sc.name.as_str()) {
            return Err(check.invalid(check.at.key("name"), Problem::DuplicateScenario));
        }
        plans.push(check.resolve(&suite, &file.defaults)?);
    }
    if plans.is_empty() {
        return Err(SuiteError::NoScenarios(path.to_owned()));
    }
    Ok(plans)
}

/// Pass one: YAML into [`SuiteFile`].
fn parse(text: &str, path: &Path) -> Result<SuiteFile, SuiteError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_yaml_ng::with::singleton_map_recursive::deserialize(de).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        SuiteError::Parse {
            at: Location {
                file: path.to_owned(),
                line,
                column,
            },
            message: strip_location(&e.to_string()),
        }
    })
}

/// serde_yaml_ng appends "at line X column Y" to messages; we print the
/// location in front instead.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Parses `a..b` of humantime durations (or one duration for both).
pub fn parse_delay(s: &str) -> Result<(Duration, Duration), DelayError> {
    let (a, b) = match s.split_once("..") {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (s.trim(), s.trim()),
    };
    let p = |x: &str| {
        humantime::parse_duration(x).map_err(|source| DelayError::Duration {
            part: x.to_owned(),
            delay: s.to_owned(),
            source,
        })
    };
    let (lo, hi) = (p(a)?, p(b)?);
    if lo > hi {
        return Err(DelayError::Reversed(s.to_owned()));
    }
    Ok((lo, hi))
}

/// Parses a gpio-aggregator line list (`0-3,5`) into its offsets' ranges.
fn parse_line_list(list: &str) -> Option<Vec<(u32, u32)>> {
    list.split(',')
        .map(|part| {
            let part = part.trim();
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (a <= b).then_some((a, b))
        })
        .collect()
}

/// The name a serde enum value is written with (`gpio-hold`, `exec`).
fn variant_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Object(m)) => m.keys().next().cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

fn consumer_devices(c: &Consumer) -> (&str, DeviceKind) {
    match c {
        Consumer::GpioHold(l)
        | Consumer::GpioToggle(l)
        | Consumer::GpioEdgeBlocking(l)
        | Consumer::GpioEdgePoll(l)
        | Consumer::GpioInfoWatch(l)
        | Consumer::GpioV1Event(l)
        | Consumer::GpioRequestLoop(l) => (&l.device, DeviceKind::Gpio),
        Consumer::GpioAggregator { device, .. } => (device, DeviceKind::Gpio),
        Consumer::ExpanderHold { device, .. }
        | Consumer::I2cHold { device }
        | Consumer::I2cTransfer { device, .. }
        | Consumer::NvmemIo { device, .. }
        | Consumer::I2cClientChurn { device, .. }
        | Consumer::NvmemKernelConsumer { device, .. } => (device, DeviceKind::I2c),
    }
}

/// The chip kinds an I2C consumer can need at its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChipNeed {
    /// Any chip that answers.
    Any,
    /// An AT24 EEPROM (an nvmem provider).
    Eeprom,
    /// A PCA953x expander (a gpiochip).
    Expander,
}

/// A device of the scenario, with its chips parsed.
struct Device<'a> {
    spec: &'a DeviceSpec,
    chips: Vec<ChipSpec>,
}

/// Pass two for one scenario.
struct Check<'a> {
    text: &'a str,
    file: &'a Path,
    scenario: &'a Scenario,
    /// The scenario's node.
    at: NodePath,
}

impl Check<'_> {
    fn invalid(&self, node: NodePath, problem: Problem) -> SuiteError {
        SuiteError::Invalid {
            at: Location::of(self.text, self.file, &node),
            scenario: self.scenario.name.clone(),
            problem: Box::new(problem),
        }
    }

    /// Checks the devices; their chips are parsed once here.
    fn devices<'d>(&self, devices: &'d [DeviceSpec]) -> Result<Vec<Device<'d>>, SuiteError> {
        let mut ids = BTreeSet::new();
        let mut out = Vec::new();
        for (j, spec) in devices.iter().enumerate() {
            let node = self.at.key("devices").index(j);
            let id = spec.id();
            if !ids.insert(id) {
                return Err(self.invalid(node.key("id"), Problem::DuplicateDevice(id.to_owned())));
            }
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(self.invalid(node.key("id"), Problem::BadDeviceId(id.to_owned())));
            }
            let (DeviceSpec::Gpio { faults, .. } | DeviceSpec::I2c { faults, .. }) = spec;
            for (k, f) in faults.iter().enumerate() {
                if let Err(e) = f.parse::<FaultSpec>() {
                    return Err(self.invalid(node.key("faults").index(k), Problem::BadFault(e)));
                }
            }
            let mut chips: Vec<ChipSpec> = Vec::new();
            if let DeviceSpec::I2c { chips: texts, .. } = spec {
                for (k, text) in texts.iter().enumerate() {
                    let chip_node = node.key("chips").index(k);
                    let chip: ChipSpec = text
                        .parse()
                        .map_err(|e| self.invalid(chip_node.clone(), Problem::BadChip(e)))?;
                    if let Some(first) = chips.iter().find(|c| overlaps(c, &chip)) {
                        return Err(self.invalid(
                            chip_node,
                            Problem::AddressTaken {
                                addr: chip.addr().max(first.addr()),
                                first: first.to_string(),
                                second: chip.to_string(),
                            },
                        ));
                    }
                    chips.push(chip);
                }
            }
            out.push(Device { spec, chips });
        }
        Ok(out)
    }

    fn resolve(&self, suite: &str, d: &Defaults) -> Result<Plan, SuiteError> {
        let sc = self.scenario;
        let specs = sc.devices.clone().unwrap_or_else(DeviceSpec::defaults);
        let devices = self.devices(&specs)?;
        let refs = Refs {
            check: self,
            devices: &devices,
        };
        for (k, c) in sc.consumers.iter().enumerate() {
            refs.consumer(self.at.key("consumers").index(k), c)?;
        }
        for (list, steps) in [("setup", &sc.setup), ("after", &sc.after)] {
            for (k, s) in steps.iter().enumerate() {
                refs.step(self.at.key(list).index(k), s)?;
            }
        }
        let unplug = sc.unplug.clone().unwrap_or(Unplug {
            method: Method::Qmp,
            targets: Vec::new(),
            cycles: Some(0),
            duration: None,
            delay: None,
            no_replug: false,
        });
        let unplug_node = self.at.key("unplug");
        for (k, t) in unplug.targets.iter().enumerate() {
            if refs.find(t).is_none() {
                return Err(self.invalid(
                    unplug_node.key("targets").index(k),
                    Problem::UnknownTarget {
                        id: t.clone(),
                        known: refs.known(),
                    },
                ));
            }
        }
        let delay = match &unplug.delay {
            Some(s) => parse_delay(s)
                .map_err(|e| self.invalid(unplug_node.key("delay"), Problem::Delay(e)))?,
            None => (Duration::from_millis(200), Duration::from_millis(200)),
        };
        let expect = self.at.key("expect");
        match &sc.expect {
            Expectation::Reproduces(re) => {
                if let Err(e) = regex::Regex::new(re) {
                    return Err(self.invalid(expect.key("reproduces"), Problem::Regex(e)));
                }
            }
            Expectation::HangsIn(f) if f.trim().is_empty() => {
                return Err(self.invalid(expect.key("hangs-in"), Problem::EmptyHangsIn));
            }
            _ => {}
        }
        let base = self.file.parent().unwrap_or(Path::new("."));
        Ok(Plan {
            suite: suite.to_owned(),
            file: self.file.to_owned(),
            scenario: sc.clone(),
            devices: specs.clone(),
            cycles: unplug.cycles.or(d.cycles).unwrap_or(DEFAULT_CYCLES),
            duration: unplug.duration,
            delay,
            unplug_timeout: sc
                .unplug_timeout
                .or(d.unplug_timeout)
                .unwrap_or(DEFAULT_UNPLUG_TIMEOUT),
            consumer_deadline: sc
                .consumer_deadline
                .or(d.consumer_deadline)
                .unwrap_or(DEFAULT_CONSUMER_DEADLINE),
            settle: sc.settle.or(d.settle).unwrap_or(DEFAULT_SETTLE),
            watchdog: sc.watchdog.or(d.watchdog).unwrap_or(DEFAULT_WATCHDOG),
            cmdline: d.cmdline.iter().chain(&sc.cmdline).cloned().collect(),
            patches: sc.kernel.patches.iter().map(|p| base.join(p)).collect(),
        })
    }
}

/// Whether two chips answer a common address.
fn overlaps(a: &ChipSpec, b: &ChipSpec) -> bool {
    a.addr() < b.addr() + b.address_span() && b.addr() < a.addr() + a.address_span()
}

/// References from consumers and steps to the scenario's devices.
struct Refs<'a, 'd> {
    check: &'a Check<'a>,
    devices: &'a [Device<'d>],
}

impl Refs<'_, '_> {
    fn find(&self, id: &str) -> Option<&Device<'_>> {
        self.devices.iter().find(|d| d.spec.id() == id)
    }

    fn known(&self) -> String {
        let mut ids: Vec<&str> = self.devices.iter().map(|d| d.spec.id()).collect();
        ids.sort_unstable();
        ids.join(", ")
    }

    /// The device `id` at `node`, which must be of kind `want`.
    fn device(
        &self,
        node: NodePath,
        id: &str,
        want: DeviceKind,
        what: &str,
    ) -> Result<&Device<'_>, SuiteError> {
        let Some(dev) = self.find(id) else {
            return Err(self.check.invalid(
                node,
                Problem::UnknownDevice {
                    what: what.to_owned(),
                    id: id.to_owned(),
                    known: self.known(),
                },
            ));
        };
        let got = dev.spec.kind();
        if got != want {
            return Err(self.check.invalid(
                node,
                Problem::WrongKind {
                    what: what.to_owned(),
                    id: id.to_owned(),
                    want,
                    got,
                },
            ));
        }
        Ok(dev)
    }

    /// `line` (at `node`) must be a line of GPIO device `dev`.
    fn gpio_line(
        &self,
        node: NodePath,
        dev: &Device<'_>,
        line: u32,
        what: &str,
    ) -> Result<(), SuiteError> {
        let DeviceSpec::Gpio { id, lines, .. } = dev.spec else {
            return Ok(());
        };
        if line >= u32::from(*lines) {
            return Err(self.check.invalid(
                node,
                Problem::LineOutOfRange {
                    what: what.to_owned(),
                    line,
                    device: format!("`{id}`"),
                    lines: u32::from(*lines),
                },
            ));
        }
        Ok(())
    }

    /// The chip of I2C device `dev` that answers `addr` (at `node`).
    fn chip(
        &self,
        node: NodePath,
        dev: &Device<'_>,
        addr: u16,
        need: ChipNeed,
        what: &str,
    ) -> Result<ChipSpec, SuiteError> {
        let device = dev.spec.id().to_owned();
        let Some(chip) = dev
            .chips
            .iter()
            .find(|c| (c.addr()..c.addr() + c.address_span()).contains(&addr))
        else {
            let chips = dev
                .chips
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>();
            return Err(self.check.invalid(
                node,
                Problem::NoChip {
                    what: what.to_owned(),
                    addr,
                    device,
                    chips: if chips.is_empty() {
                        "none".to_owned()
                    } else {
                        chips.join(", ")
                    },
                },
            ));
        };
        let want = match (need, chip.family()) {
            (ChipNeed::Any, _) | (ChipNeed::Eeprom, "at24") | (ChipNeed::Expander, "pca953x") => {
                return Ok(chip.clone());
            }
            (ChipNeed::Eeprom, _) => "an at24 EEPROM",
            (ChipNeed::Expander, _) => "a PCA953x expander",
        };
        Err(self.check.invalid(
            node,
            Problem::WrongChip {
                what: what.to_owned(),
                addr,
                device,
                want,
                chip: chip.to_string(),
            },
        ))
    }

    fn consumer(&self, at: NodePath, c: &Consumer) -> Result<(), SuiteError> {
        let name = variant_name(c);
        let what = format!("consumer `{name}`");
        let node = at.key(&name);
        let (id, kind) = consumer_devices(c);
        let dev = self.device(node.key("device"), id, kind, &what)?;
        match c {
            Consumer::GpioHold(l)
            | Consumer::GpioToggle(l)
            | Consumer::GpioEdgeBlocking(l)
            | Consumer::GpioEdgePoll(l)
            | Consumer::GpioInfoWatch(l)
            | Consumer::GpioV1Event(l)
            | Consumer::GpioRequestLoop(l) => self.gpio_line(node.key("line"), dev, l.line, &what),
            Consumer::GpioAggregator { lines, .. } => {
                let Some(ranges) = parse_line_list(lines) else {
                    return Err(self.check.invalid(
                        node.key("lines"),
                        Problem::BadLineList {
                            what,
                            list: lines.clone(),
                        },
                    ));
                };
                for (_, last) in ranges {
                    self.gpio_line(node.key("lines"), dev, last, &what)?;
                }
                Ok(())
            }
            Consumer::ExpanderHold { addr, line, .. } => {
                let chip = self.chip(node.key("addr"), dev, *addr, ChipNeed::Expander, &what)?;
                let model = Pca953xModel::from_name(chip.model_name());
                if let Some(model) = model {
                    if *line >= model.ngpio() {
                        return Err(self.check.invalid(
                            node.key("line"),
                            Problem::LineOutOfRange {
                                what,
                                line: *line,
                                device: format!("the {model} at {addr:#04x} on `{id}`"),
                                lines: model.ngpio(),
                            },
                        ));
                    }
                }
                Ok(())
            }
            Consumer::I2cTransfer { addr, .. } => self
                .chip(node.key("addr"), dev, *addr, ChipNeed::Any, &what)
                .map(drop),
            Consumer::NvmemIo { addr, .. } | Consumer::NvmemKernelConsumer { addr, .. } => self
                .chip(node.key("addr"), dev, *addr, ChipNeed::Eeprom, &what)
                .map(drop),
            Consumer::I2cHold { .. } | Consumer::I2cClientChurn { .. } => Ok(()),
        }
    }

    fn step(&self, at: NodePath, s: &Step) -> Result<(), SuiteError> {
        let name = variant_name(s);
        let what = format!("step `{name}`");
        let node = at.key(&name);
        match s {
            Step::NewDevice { adapter, .. } => self
                .device(node.key("adapter"), adapter, DeviceKind::I2c, &what)
                .map(drop),
            Step::DriveLine { device, line, .. } => {
                let dev = self.device(node.key("device"), device, DeviceKind::Gpio, &what)?;
                self.gpio_line(node.key("line"), dev, *line, &what)
            }
            Step::Interrupt { consumer } => {
                let count = self.check.scenario.consumers.len();
                if *consumer >= count {
                    return Err(self.check.invalid(
                        node.key("consumer"),
                        Problem::NoSuchConsumer {
                            consumer: *consumer,
                            count,
                        },
                    ));
                }
                Ok(())
            }
            Step::Exec(argv) if argv.is_empty() => {
                Err(self.check.invalid(node, Problem::EmptyExec))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name: t
defaults:
  cycles: 2
  unplug-timeout: 5s
scenarios:
  - name: a
    devices:
      - { kind: gpio, id: gpio0, lines: 8 }
      - { kind: i2c, id: i2c0, chips: ["at24:0x50:24c02"] }
    consumers:
      - gpio-hold: { device: gpio0, line: 3 }
      - nvmem-io: { device: i2c0, addr: 0x50 }
    unplug: { method: qmp, targets: [gpio0, i2c0], delay: 100ms..1s }
    expect: clean
  - name: b
    unplug: { method: backend-kill, targets: [i2c0], cycles: 5 }
    settle: 40s
    expect: { hangs-in: i2c_del_adapter }
  - name: c
    expect: { reproduces: "KASAN: .* in lkdtm_" }
"#;

    fn load(text: &str) -> Result<Vec<Plan>, SuiteError> {
        load_str(text, Path::new("suites/t.yaml"))
    }

    #[test]
    fn load_str_good_file_resolves_defaults_and_overrides() {
        let p = load(GOOD).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].cycles, 2);
        assert_eq!(p[0].unplug_timeout, Duration::from_secs(5));
        assert_eq!(
            p[0].delay,
            (Duration::from_millis(100), Duration::from_secs(1))
        );
        assert_eq!(p[1].cycles, 5);
        assert_eq!(p[1].settle, Duration::from_secs(40));
        assert_eq!(p[1].devices, DeviceSpec::defaults());
        assert_eq!(p[2].cycles, 0, "no unplug section means no cycles");
        assert_eq!(
            p[2].scenario.expect,
            Expectation::Reproduces("KASAN: .* in lkdtm_".into())
        );
    }

    fn err(text: &str) -> String {
        crate::exit::chain(&load(text).unwrap_err()).to_string()
    }

    #[test]
    fn load_str_unknown_key_names_line_and_column() {
        let e = err("scenarios:\n  - name: a\n    expect: clean\n    cycels: 3\n");
        assert!(e.starts_with("suites/t.yaml:4:5: "), "{e}");
        assert!(e.contains("unknown field `cycels`"), "{e}");
    }

    #[test]
    fn load_str_bad_value_names_line() {
        let e = err("scenarios:\n  - name: a\n    expect: clean\n    unplug: { method: yank }\n");
        assert!(e.starts_with("suites/t.yaml:4:"), "{e}");
        assert!(e.contains("yank"), "{e}");
        let e = err("scenarios:\n  - name: a\n    expect: clean\n    settle: soon\n");
        assert!(e.starts_with("suites/t.yaml:4:"), "{e}");
    }

    #[test]
    fn load_str_syntax_error_is_located() {
        let e = err("scenarios:\n  - name: a\n   expect: [clean\n");
        assert!(e.starts_with("suites/t.yaml:"), "{e}");
    }

    #[test]
    fn load_str_missing_expect_is_an_error() {
        let e = err("scenarios:\n  - name: a\n");
        assert!(e.contains("missing field `expect`"), "{e}");
    }

    #[test]
    fn load_str_consumer_on_unknown_device_points_at_it() {
        let e = err(
            "scenarios:\n  - name: a\n    consumers:\n      - gpio-hold: { device: gpio9, line: 1 }\n    expect: clean\n",
        );
        assert!(e.starts_with("suites/t.yaml:4:"), "{e}");
        assert!(e.contains("gpio9") && e.contains("gpio0, i2c0"), "{e}");
    }

    #[test]
    fn load_str_consumer_on_wrong_kind_is_an_error() {
        let e = err(
            "scenarios:\n  - name: a\n    consumers:\n      - i2c-hold: { device: gpio0 }\n    expect: clean\n",
        );
        assert!(e.contains("needs a I2c device"), "{e}");
    }

    #[test]
    fn load_str_bad_regex_bad_delay_bad_chip_duplicates_are_errors() {
        assert!(
            err("scenarios:\n  - name: a\n    expect: { reproduces: \"(\" }\n")
                .contains("bad regex")
        );
        assert!(err("scenarios:\n  - name: a\n    unplug: { method: qmp, delay: 2s..1s }\n    expect: clean\n").contains("minimum is above"));
        assert!(err("scenarios:\n  - name: a\n    devices: [{ kind: i2c, id: i2c0, chips: [\"at24:0x90:24c02\"] }]\n    expect: clean\n").contains("bad chip"));
        assert!(err("scenarios: []\n").contains("no scenarios"));
    }

    /// `suites/t.yaml:LINE:COL` of the first `needle` on 1-based `line` of
    /// `text` (what the error must point at).
    fn pos(text: &str, line: usize, needle: &str) -> String {
        let l = text.lines().nth(line - 1).expect("line");
        let col = l.find(needle).expect("needle") + 1;
        format!("suites/t.yaml:{line}:{col}")
    }

    /// The error's location and its whole chain.
    fn located(text: &str) -> (String, String) {
        let e = load(text).unwrap_err();
        let at = e.location().map(ToString::to_string).unwrap_or_default();
        (at, crate::exit::chain(&e).to_string())
    }

    #[test]
    fn load_str_unknown_chip_points_at_the_chip() {
        let t = "scenarios:\n  - name: a\n    devices:\n      - { kind: i2c, id: i2c0, chips: [\"at24:0x50:24c02\", \"foo:0x20\"] }\n    expect: clean\n";
        let (at, e) = located(t);
        assert_eq!(at, pos(t, 4, "\"foo"), "{e}");
        assert!(
            e.contains("bad chip") && e.contains("unknown chip `foo`"),
            "{e}"
        );
    }

    #[test]
    fn load_str_bad_fault_plan_points_at_it() {
        let t = "scenarios:\n  - name: a\n    devices:\n      - kind: gpio\n        id: gpio0\n        faults: [\"delay:ms=5\", \"explode\"]\n    expect: clean\n";
        let (at, e) = located(t);
        assert_eq!(at, pos(t, 6, "\"explode"), "{e}");
        assert!(
            e.contains("bad fault plan") && e.contains("unknown kind"),
            "{e}"
        );
    }

    #[test]
    fn load_str_chips_on_one_address_point_at_the_second() {
        let t = "scenarios:\n  - name: a\n    devices:\n      - kind: i2c\n        id: i2c0\n        chips:\n          - at24:0x50:24c04\n          - pca9555:0x51\n    expect: clean\n";
        let (at, e) = located(t);
        assert_eq!(at, pos(t, 8, "pca9555"), "{e}");
        assert!(e.contains("both answer address 0x51"), "{e}");
    }

    #[test]
    fn load_str_gpio_line_at_lines_points_at_the_line() {
        let t = "scenarios:\n  - name: a\n    devices: [{ kind: gpio, id: gpio0, lines: 8 }]\n    consumers:\n      - gpio-hold: { device: gpio0, line: 7 }\n      - gpio-edge-poll: { device: gpio0, line: 8 }\n    expect: clean\n";
        let (at, e) = located(t);
        assert_eq!(at, pos(t, 6, "8 }"), "{e}");
        assert!(
            e.contains("uses line 8, but `gpio0` has 8 lines (0 to 7)"),
            "{e}"
        );
    }

    #[test]
    fn load_str_gpio_line_past_lines_in_steps_and_aggregator_is_located() {
        let t = "scenarios:\n  - name: a\n    devices: [{ kind: gpio, id: gpio0, lines: 16 }]\n    after:\n      - drive-line: { device: gpio0, line: 16, value: true }\n    expect: clean\n";
        let (at, e) = located(t);
        assert_eq!(at, pos(t, 5, "16,"), "{e}");
        assert!(e.contains("step `drive-line` uses line 16"), "{e}");
        let t = "scenarios:\n  - name: a\n    devices: [{ kind: gpio, id: gpio0, lines: 16 }]\n    consumers:\n      - gpio-aggregator: { device: gpio0, lines: \"8-16\" }\n    expect: clean\n";
        let (at, e) = located(t);
        assert_eq!(at, pos(t, 5, "\"8-16\""), "{e}");
        assert!(e.contains("uses line 16"), "{e}");
        let t = "scenarios:\n  - name: a\n    consumers:\n      - gpio-aggregator: { device: gpio0, lines: \"3-1\" }\n    expect: clean\n";
        assert!(located(t).1.contains("bad line list `3-1`"));
    }

    #[test]
    fn load_str_i2c_consumer_without_chip_points_at_the_address() {
        let t = "scenarios:\n  - name: a\n    devices: [{ kind: i2c, id: i2c0, chips: [\"at24:0x50:24c02\"] }]\n    consumers:\n      - i2c-transfer:\n          device: i2c0\n          addr: 0x51\n    expect: clean\n";
        let (at, e) = located(t);
        assert_eq!(at, pos(t, 7, "0x51"), "{e}");
        assert!(
            e.contains(
                "talks to address 0x51 on `i2c0`, where no chip answers (chips: at24:0x50:24c02)"
            ),
            "{e}"
        );
    }

    #[test]
    fn load_str_i2c_consumer_at_wrong_chip_or_expander_line_is_located() {
        // The default devices: at24 at 0x50, pca9555 (16 lines) at 0x20.
        let t = "scenarios:\n  - name: a\n    consumers:\n      - nvmem-io: { device: i2c0, addr: 0x20 }\n    expect: clean\n";
        let (at, e) = located(t);
        assert_eq!(at, pos(t, 4, "0x20"), "{e}");
        assert!(e.contains("needs an at24 EEPROM at address 0x20"), "{e}");
        let t = "scenarios:\n  - name: a\n    consumers:\n      - expander-hold: { device: i2c0, addr: 0x20, line: 16 }\n    expect: clean\n";
        let (at, e) = located(t);
        assert_eq!(at, pos(t, 4, "16 }"), "{e}");
        assert!(
            e.contains("the pca9555 at 0x20 on `i2c0` has 16 lines"),
            "{e}"
        );
    }

    #[test]
    fn load_str_client_churn_at_an_empty_address_is_allowed() {
        let t = "scenarios:\n  - name: a\n    consumers:\n      - i2c-client-churn: { device: i2c0, chip: 24c02, addr: 0x51 }\n    expect: clean\n";
        assert!(load(t).is_ok());
    }

    #[test]
    fn load_str_duplicate_device_id_points_at_the_second_id() {
        let t = "scenarios:\n  - name: a\n    devices:\n      - { kind: gpio, id: dev0 }\n      - { kind: i2c, id: dev0, chips: [] }\n    expect: clean\n";
        let (at, e) = located(t);
        assert_eq!(at, pos(t, 5, "dev0"), "{e}");
        assert!(e.contains("device id `dev0` is used twice"), "{e}");
    }

    #[test]
    fn load_str_duplicate_scenario_name_points_at_the_second_name() {
        let t = "scenarios:\n  - name: dup\n    expect: clean\n  - name: dup\n    expect: clean\n";
        let (at, e) = located(t);
        assert_eq!(at, pos(t, 4, "dup"), "{e}");
        assert!(e.contains("scenario dup: duplicate scenario name"), "{e}");
    }

    #[test]
    fn load_str_unknown_variant_in_a_list_is_located_by_the_parser() {
        let t = "scenarios:\n  - name: a\n    consumers:\n      - gpio-hld: { device: gpio0, line: 1 }\n    expect: clean\n";
        let (at, e) = located(t);
        assert_eq!(at, pos(t, 4, "gpio-hld"), "{e}");
        assert!(e.contains("unknown variant `gpio-hld`"), "{e}");
        let t = "scenarios:\n  - name: a\n    expect: { hangs-in: f, clean: ~ }\n";
        let (at, _) = located(t);
        assert!(at.starts_with("suites/t.yaml:3:"), "{at}");
    }

    #[test]
    fn load_str_interrupt_of_missing_consumer_is_an_error() {
        let e = err(
            "scenarios:\n  - name: a\n    after: [{ interrupt: { consumer: 1 } }]\n    consumers: [{ i2c-hold: { device: i2c0 } }]\n    expect: clean\n",
        );
        assert!(
            e.contains("interrupt names consumer 1, but there are 1"),
            "{e}"
        );
    }

    #[test]
    fn load_file_missing_names_path() {
        let e = load_file(Path::new("no/such/suite.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no/such/suite.yaml"), "{e}");
    }

    #[test]
    fn parse_delay_single_value_and_range() {
        assert_eq!(
            parse_delay("1s").unwrap(),
            (Duration::from_secs(1), Duration::from_secs(1))
        );
        assert_eq!(
            parse_delay("0ms..250ms").unwrap(),
            (Duration::ZERO, Duration::from_millis(250))
        );
        assert!(parse_delay("x..1s").is_err());
    }
}
