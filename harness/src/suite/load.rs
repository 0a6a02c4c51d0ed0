//! Loading suite files: parse (pass one) with file:line:column errors, then
//! check cross-references and values (pass two) and resolve defaults into
//! a [`Plan`] per scenario.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// YAML syntax, unknown key or bad value.
    #[error("{at}: {message}")]
    Parse { at: Location, message: String },
    /// A semantic problem found in pass two.
    #[error("{at}: scenario {scenario}: {message}")]
    Invalid {
        at: Location,
        scenario: String,
        message: String,
    },
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
    let file: SuiteFile = serde_yaml_ng::from_str(text).map_err(|e| {
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
    })?;
    let suite = file.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "suite".into())
    });
    let mut seen = BTreeSet::new();
    let mut plans = Vec::new();
    for (i, sc) in file.scenarios.iter().enumerate() {
        let nth = file.scenarios[..i]
            .iter()
            .filter(|o| o.name == sc.name)
            .count();
        let locate = |needle: &str| locate(text, path, &sc.name, nth, needle);
        let invalid = |needle: &str, message: String| SuiteError::Invalid {
            at: locate(needle),
            scenario: sc.name.clone(),
            message,
        };
        if !seen.insert(sc.name.clone()) {
            return Err(invalid("", "duplicate scenario name".into()));
        }
        plans.push(resolve(&suite, path, &file.defaults, sc, &invalid)?);
    }
    if plans.is_empty() {
        return Err(SuiteError::Parse {
            at: Location {
                file: path.to_owned(),
                line: 0,
                column: 0,
            },
            message: "the suite has no scenarios".into(),
        });
    }
    Ok(plans)
}

/// serde_yaml_ng appends "at line X column Y" to messages; we print the
/// location in front instead.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Finds `needle` in the `nth` scenario named `scenario` (its `name:` line,
/// then the first line after it containing `needle`), for pass-two errors.
fn locate(text: &str, path: &Path, scenario: &str, nth: usize, needle: &str) -> Location {
    let mut start = None;
    let mut skip = nth;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start().trim_start_matches("- ").trim_start();
        if start.is_none() {
            if let Some(rest) = t.strip_prefix("name:") {
                if rest.trim().trim_matches(['"', '\'']) == scenario {
                    if skip > 0 {
                        skip -= 1;
                        continue;
                    }
                    start = Some(i);
                    if needle.is_empty() {
                        return Location {
                            file: path.to_owned(),
                            line: i + 1,
                            column: line.find("name:").map_or(1, |c| c + 1),
                        };
                    }
                }
            }
            continue;
        }
        if i > 0 && t.starts_with("name:") && line.trim_start().starts_with("- name:") {
            break; // next scenario
        }
        if let Some(col) = line.find(needle) {
            return Location {
                file: path.to_owned(),
                line: i + 1,
                column: col + 1,
            };
        }
    }
    Location {
        file: path.to_owned(),
        line: start.map_or(0, |s| s + 1),
        column: usize::from(start.is_some()),
    }
}

/// Checks a chip spec the way the backend will parse it.
fn check_chip(spec: &str) -> Result<(), String> {
    // Replaced by the backend's own parser once it is exported.
    let mut parts = spec.split(':');
    let _model = parts
        .next()
        .filter(|m| !m.is_empty())
        .ok_or("missing model")?;
    let addr = parts.next().ok_or("missing address")?;
    let v = match addr.strip_prefix("0x") {
        Some(h) => u16::from_str_radix(h, 16),
        None => addr.parse(),
    }
    .map_err(|_| format!("bad address `{addr}`"))?;
    if !(0x08..=0x77).contains(&v) {
        return Err(format!("address {v:#04x} is outside 0x08..=0x77"));
    }
    Ok(())
}

/// Parses `a..b` of humantime durations.
pub fn parse_delay(s: &str) -> Result<(Duration, Duration), String> {
    let (a, b) = match s.split_once("..") {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (s.trim(), s.trim()),
    };
    let p = |x: &str| {
        humantime::parse_duration(x).map_err(|e| format!("bad duration `{x}` in delay `{s}`: {e}"))
    };
    let (lo, hi) = (p(a)?, p(b)?);
    if lo > hi {
        return Err(format!("delay `{s}`: the minimum is above the maximum"));
    }
    Ok((lo, hi))
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

fn resolve(
    suite: &str,
    path: &Path,
    d: &Defaults,
    sc: &Scenario,
    invalid: &dyn Fn(&str, String) -> SuiteError,
) -> Result<Plan, SuiteError> {
    let devices = sc.devices.clone().unwrap_or_else(DeviceSpec::defaults);
    let mut ids = BTreeSet::new();
    for dev in &devices {
        if !ids.insert(dev.id().to_owned()) {
            return Err(invalid(
                dev.id(),
                format!("device id `{}` is used twice", dev.id()),
            ));
        }
        if dev.id().is_empty()
            || !dev
                .id()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                dev.id(),
                format!(
                    "device id `{}` must be letters, digits, `-` or `_`",
                    dev.id()
                ),
            ));
        }
        if let DeviceSpec::I2c { chips, .. } = dev {
            for c in chips {
                if let Err(e) = check_chip(c) {
                    return Err(invalid(c, format!("bad chip `{c}`: {e}")));
                }
            }
        }
    }
    let kind_of = |id: &str| devices.iter().find(|x| x.id() == id).map(DeviceSpec::kind);
    let list = || ids.iter().cloned().collect::<Vec<_>>().join(", ");
    let check_ref = |id: &str, want: DeviceKind, what: &str| -> Result<(), SuiteError> {
        match kind_of(id) {
            None => Err(invalid(
                id,
                format!(
                    "{what} names device `{id}`, which is not among its devices ({})",
                    list()
                ),
            )),
            Some(k) if k != want => Err(invalid(
                id,
                format!("{what} needs a {want:?} device but `{id}` is {k:?}"),
            )),
            Some(_) => Ok(()),
        }
    };
    for c in &sc.consumers {
        let (id, kind) = consumer_devices(c);
        check_ref(id, kind, "a consumer")?;
    }
    for s in sc.setup.iter().chain(&sc.after) {
        match s {
            Step::NewDevice { adapter, .. } => {
                check_ref(adapter, DeviceKind::I2c, "a new-device step")?
            }
            Step::DriveLine { device, .. } => {
                check_ref(device, DeviceKind::Gpio, "a drive-line step")?
            }
            Step::Interrupt { consumer } if *consumer >= sc.consumers.len() => {
                return Err(invalid(
                    "interrupt",
                    format!(
                        "interrupt names consumer {consumer}, but there are {} (counted from 0)",
                        sc.consumers.len()
                    ),
                ));
            }
            Step::Exec(argv) if argv.is_empty() => {
                return Err(invalid("exec", "exec needs a command".into()));
            }
            _ => {}
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
    for t in &unplug.targets {
        if kind_of(t).is_none() {
            return Err(invalid(
                t,
                format!("unplug target `{t}` is not among its devices ({})", list()),
            ));
        }
    }
    let delay = match &unplug.delay {
        Some(s) => parse_delay(s).map_err(|m| invalid(s, m))?,
        None => (Duration::from_millis(200), Duration::from_millis(200)),
    };
    match &sc.expect {
        Expectation::Reproduces(re) => {
            if let Err(e) = regex::Regex::new(re) {
                return Err(invalid(
                    "reproduces",
                    format!("bad regex in reproduces: {e}"),
                ));
            }
        }
        Expectation::HangsIn(f) if f.trim().is_empty() => {
            return Err(invalid("hangs-in", "hangs-in needs a function name".into()));
        }
        _ => {}
    }
    let base = path.parent().unwrap_or(Path::new("."));
    Ok(Plan {
        suite: suite.to_owned(),
        file: path.to_owned(),
        scenario: sc.clone(),
        devices,
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
        load(text).unwrap_err().to_string()
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
        let e = err("scenarios:\n  - name: a\n    expect: clean\n  - name: a\n    expect: clean\n");
        assert!(
            e.contains("duplicate scenario") && e.starts_with("suites/t.yaml:4:"),
            "{e}"
        );
        assert!(err("scenarios: []\n").contains("no scenarios"));
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
