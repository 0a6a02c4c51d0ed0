//! Which scenarios are likely to reproduce a report, and why.
//!
//! The score of a scenario is a sum of weighted matches, each with a
//! sentence saying what matched:
//!
//! | weight | match |
//! |---|---|
//! | [`STRONG`] | the scenario's `reproduces` regex matches the title; or, for a hang, the stack names its `hangs-in` function |
//! | [`MEDIUM`] | a stack function is named in its notes or description, belongs to one of its consumers or to its unplug method; a non-hang report whose stack names its `hangs-in` function |
//! | [`WEAK`] | a subsystem of the report is one its devices, consumers or unplug method exercise |
//!
//! Only stack functions that belong to a subsystem of [`SUBSYSTEMS`] (or
//! are the guilty frame) count, and never the common ones of
//! [`COMMON_FUNCTIONS`]: a `wait_for_completion` in an ext4 hang says
//! nothing about I2C. Ties go to scenarios of the `known-bugs` suite (each
//! is a confirmed reproducer), then to suite order. A scenario with score
//! 0 is no candidate.

use serde::Serialize;

use crate::suite::load::Plan;
use crate::suite::schema::{Consumer, Expectation, Method};
use crate::vm::devices::DeviceSpec;

use super::Target;

/// Weight of an expectation match.
pub const STRONG: u32 = 100;
/// Weight of a stack function match.
pub const MEDIUM: u32 = 10;
/// Weight of a subsystem match.
pub const WEAK: u32 = 1;

/// A kernel subsystem dangle's scenarios exercise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Subsystem {
    /// gpiolib and the virtio-gpio driver, the PCA953x expander.
    #[serde(rename = "GPIO")]
    Gpio,
    /// The I2C core, i2c-dev and the virtio-i2c driver.
    #[serde(rename = "I2C")]
    I2c,
    /// The nvmem core and the at24 EEPROM driver.
    #[serde(rename = "nvmem")]
    Nvmem,
    /// The virtio core and transports.
    #[serde(rename = "virtio")]
    Virtio,
    /// PCI and its hotplug drivers.
    #[serde(rename = "PCI hotplug")]
    PciHotplug,
}

impl std::fmt::Display for Subsystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Subsystem::Gpio => "GPIO",
            Subsystem::I2c => "I2C",
            Subsystem::Nvmem => "nvmem",
            Subsystem::Virtio => "virtio",
            Subsystem::PciHotplug => "PCI hotplug",
        })
    }
}

/// How a subsystem is recognised: function name prefixes (or substrings
/// when starting with `*`) and source path fragments.
#[derive(Debug)]
pub struct SubsystemRule {
    /// The subsystem.
    pub subsystem: Subsystem,
    /// Function prefixes; `*x` means "contains x".
    pub functions: &'static [&'static str],
    /// Fragments of a `file:line` path.
    pub paths: &'static [&'static str],
}

/// The table. Order matters only for display.
pub const SUBSYSTEMS: &[SubsystemRule] = &[
    SubsystemRule {
        subsystem: Subsystem::Gpio,
        functions: &[
            "gpiolib",
            "gpiochip_",
            "gpiod_",
            "gpio_",
            "linereq_",
            "lineevent_",
            "lineinfo_",
            "edge_irq",
            "*virtio_gpio",
            "pca953x",
        ],
        paths: &["drivers/gpio/", "gpiolib", "gpio-virtio", "pca953x"],
    },
    SubsystemRule {
        subsystem: Subsystem::I2c,
        functions: &["i2c_", "__i2c_", "i2cdev_", "virtio_i2c_"],
        paths: &["drivers/i2c/", "i2c-dev", "i2c-virtio", "i2c-core"],
    },
    SubsystemRule {
        subsystem: Subsystem::Nvmem,
        functions: &["nvmem_", "__nvmem_", "bin_attr_nvmem", "at24_"],
        paths: &["drivers/nvmem/", "eeprom/at24"],
    },
    SubsystemRule {
        subsystem: Subsystem::Virtio,
        functions: &["virtio_", "virtqueue_", "vring_", "vp_", "virtio_dev_"],
        paths: &["drivers/virtio/"],
    },
    SubsystemRule {
        subsystem: Subsystem::PciHotplug,
        functions: &["pciehp", "acpiphp", "pci_", "__pci_"],
        paths: &["drivers/pci/"],
    },
];

/// Functions of almost every stack: they never count as a match.
pub const COMMON_FUNCTIONS: &[&str] = &[
    "schedule",
    "__schedule",
    "schedule_timeout",
    "schedule_preempt_disabled",
    "wait_for_completion",
    "wait_for_common",
    "__wait_for_common",
    "do_wait_for_common",
    "kthread",
    "worker_thread",
    "process_one_work",
    "ret_from_fork",
    "ret_from_fork_asm",
    "do_syscall_64",
    "entry_SYSCALL_64_after_hwframe",
    "mutex_lock",
    "__mutex_lock",
    "synchronize_rcu",
    "synchronize_srcu",
    "device_del",
    "device_release_driver",
    "device_release_driver_internal",
    "driver_remove",
];

fn name_matches(function: &str, pattern: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(inner) => function.contains(inner),
        None => function.starts_with(pattern),
    }
}

/// The subsystem of a function, if the table knows it.
pub fn subsystem_of_function(function: &str) -> Option<Subsystem> {
    SUBSYSTEMS
        .iter()
        .find(|r| r.functions.iter().any(|p| name_matches(function, p)))
        .map(|r| r.subsystem)
}

/// The subsystem of a source path, if the table knows it.
pub fn subsystem_of_path(path: &str) -> Option<Subsystem> {
    SUBSYSTEMS
        .iter()
        .find(|r| r.paths.iter().any(|p| path.contains(p)))
        .map(|r| r.subsystem)
}

/// Function prefixes a consumer's syscalls run through.
fn consumer_functions(c: &Consumer) -> (&'static str, &'static [&'static str]) {
    match c {
        Consumer::GpioHold(_) => ("gpio-hold", &["linereq_", "gpio_v2_"]),
        Consumer::GpioToggle(_) => ("gpio-toggle", &["linereq_set", "gpiod_set"]),
        Consumer::GpioEdgeBlocking(_) => ("gpio-edge-blocking", &["linereq_read", "edge_irq"]),
        Consumer::GpioEdgePoll(_) => (
            "gpio-edge-poll",
            &["linereq_poll", "edge_irq", "*irq_enable"],
        ),
        Consumer::GpioInfoWatch(_) => ("gpio-info-watch", &["lineinfo_", "gpio_chrdev"]),
        Consumer::GpioV1Event(_) => ("gpio-v1-event", &["lineevent_"]),
        Consumer::GpioRequestLoop(_) => (
            "gpio-request-loop",
            &["linereq_", "free_irq", "edge_detector"],
        ),
        Consumer::GpioAggregator { .. } => ("gpio-aggregator", &["gpio_fwd", "gpio_aggregator"]),
        Consumer::ExpanderHold { .. } => ("expander-hold", &["pca953x"]),
        Consumer::I2cHold { .. } => (
            "i2c-hold",
            &["i2cdev_open", "i2cdev_release", "i2c_del_adapter"],
        ),
        Consumer::I2cTransfer { .. } => (
            "i2c-transfer",
            &[
                "i2cdev_",
                "i2c_transfer",
                "__i2c_transfer",
                "virtio_i2c_xfer",
            ],
        ),
        Consumer::NvmemIo { .. } => ("nvmem-io", &["bin_attr_nvmem", "nvmem_reg_", "at24_"]),
        Consumer::I2cClientChurn { .. } => (
            "i2c-client-churn",
            &[
                "new_device_store",
                "delete_device_store",
                "i2c_new_client",
                "i2c_unregister",
            ],
        ),
        Consumer::NvmemKernelConsumer { .. } => (
            "nvmem-kernel-consumer",
            &["nvmem_device_", "nvmem_reg_", "at24_"],
        ),
    }
}

fn consumer_subsystems(c: &Consumer) -> &'static [Subsystem] {
    match c {
        Consumer::GpioHold(_)
        | Consumer::GpioToggle(_)
        | Consumer::GpioEdgeBlocking(_)
        | Consumer::GpioEdgePoll(_)
        | Consumer::GpioInfoWatch(_)
        | Consumer::GpioV1Event(_)
        | Consumer::GpioRequestLoop(_)
        | Consumer::GpioAggregator { .. } => &[Subsystem::Gpio],
        Consumer::ExpanderHold { .. } => &[Subsystem::Gpio, Subsystem::I2c],
        Consumer::I2cHold { .. }
        | Consumer::I2cTransfer { .. }
        | Consumer::I2cClientChurn { .. } => &[Subsystem::I2c],
        Consumer::NvmemIo { .. } | Consumer::NvmemKernelConsumer { .. } => {
            &[Subsystem::Nvmem, Subsystem::I2c]
        }
    }
}

/// Function prefixes of an unplug method's removal path.
fn method_functions(m: Method) -> &'static [&'static str] {
    match m {
        Method::Qmp => &["acpiphp", "pciehp", "acpi_device_hotplug"],
        Method::Unbind => &["unbind_store", "virtio_dev_remove"],
        Method::PciRemove => &[
            "remove_store",
            "pci_stop_and_remove",
            "pci_remove_bus_device",
        ],
        Method::BackendKill | Method::BackendStall => &[
            "virtqueue_",
            "vring_",
            "*virtio_gpio_req",
            "virtio_i2c_xfer",
        ],
    }
}

fn method_subsystems(m: Method) -> &'static [Subsystem] {
    match m {
        Method::Qmp | Method::PciRemove => &[Subsystem::PciHotplug],
        Method::Unbind | Method::BackendKill | Method::BackendStall => &[Subsystem::Virtio],
    }
}

fn device_subsystems(d: &DeviceSpec) -> (&str, Vec<Subsystem>) {
    match d {
        DeviceSpec::Gpio { id, .. } => (id, vec![Subsystem::Gpio, Subsystem::Virtio]),
        DeviceSpec::I2c { id, chips, .. } => {
            let mut s = vec![Subsystem::I2c, Subsystem::Virtio];
            if chips.iter().any(|c| c.starts_with("at24")) {
                s.push(Subsystem::Nvmem);
            }
            if chips.iter().any(|c| c.starts_with("pca")) {
                s.push(Subsystem::Gpio);
            }
            (id, s)
        }
    }
}

/// One ranked scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// Index into the plans given to [`rank`].
    #[serde(skip)]
    pub index: usize,
    /// Suite name.
    pub suite: String,
    /// Scenario name.
    pub scenario: String,
    /// Sum of the weights of [`Candidate::reasons`].
    pub score: u32,
    /// Why, one sentence per match.
    pub reasons: Vec<String>,
}

fn is_hang(t: &Target) -> bool {
    t.kind == "HANG"
        || t.title.contains("task hung")
        || t.title.starts_with("consumer stuck")
        || t.title.starts_with("unplug never completed")
}

/// The functions of the stack that may count as matches.
fn telling_functions(t: &Target) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for f in std::iter::once(&t.frame).chain(&t.functions) {
        let f = f.as_str();
        if f.is_empty() || COMMON_FUNCTIONS.contains(&f) || out.contains(&f) {
            continue;
        }
        if f == t.frame || subsystem_of_function(f).is_some() {
            out.push(f);
        }
    }
    out
}

/// Whether `text` names `function` as a whole word.
fn names(text: &str, function: &str) -> bool {
    text.match_indices(function).any(|(i, _)| {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let before = text[..i].chars().next_back().is_none_or(|c| !word(c));
        let after = text[i + function.len()..]
            .chars()
            .next()
            .is_none_or(|c| !word(c));
        before && after
    })
}

/// Scores one scenario against the report.
pub fn score(t: &Target, plan: &Plan, index: usize) -> Candidate {
    let mut score = 0;
    let mut reasons = Vec::new();
    let mut add = |w: u32, r: String| {
        score += w;
        reasons.push(r);
    };
    let sc = &plan.scenario;
    let funcs = telling_functions(t);
    match &sc.expect {
        Expectation::Reproduces(re) => {
            if regex::Regex::new(re).is_ok_and(|re| re.is_match(&t.title)) {
                add(
                    STRONG,
                    format!("expectation regex /{re}/ matches the title"),
                );
            }
        }
        Expectation::HangsIn(f) => {
            let named = t.functions.iter().any(|x| x == f) || t.frame == *f;
            if named && is_hang(t) {
                add(
                    STRONG,
                    format!("stack names {f}, the scenario expects hangs-in {f}"),
                );
            } else if named {
                add(
                    MEDIUM,
                    format!(
                        "stack names {f}, the scenario expects a hang in it (the report is no hang)"
                    ),
                );
            }
        }
        Expectation::Clean => {}
    }
    let text = format!(
        "{}\n{}",
        sc.description.as_deref().unwrap_or(""),
        sc.notes.as_deref().unwrap_or("")
    );
    let hangs_in = match &sc.expect {
        Expectation::HangsIn(f) => Some(f.as_str()),
        _ => None,
    };
    for f in &funcs {
        if Some(*f) != hangs_in && names(&text, f) {
            add(
                MEDIUM,
                format!("stack names {f}, so do the scenario's notes"),
            );
        }
    }
    let mut seen_consumers = Vec::new();
    for c in &sc.consumers {
        let (kind, prefixes) = consumer_functions(c);
        if seen_consumers.contains(&kind) {
            continue;
        }
        seen_consumers.push(kind);
        if let Some(f) = funcs
            .iter()
            .find(|f| prefixes.iter().any(|p| name_matches(f, p)))
        {
            add(
                MEDIUM,
                format!("stack names {f}, on the path of consumer {kind}"),
            );
        }
    }
    if let Some(u) = &sc.unplug {
        if let Some(f) = t.functions.iter().find(|f| {
            method_functions(u.method)
                .iter()
                .any(|p| name_matches(f, p))
        }) {
            add(
                MEDIUM,
                format!("stack names {f}, on the path of unplug method {}", u.method),
            );
        }
    }
    for s in &t.subsystems {
        let by_device = plan.devices.iter().find_map(|d| {
            let (id, subs) = device_subsystems(d);
            subs.contains(s).then(|| format!("device {id}"))
        });
        let by_consumer = || {
            sc.consumers
                .iter()
                .find(|c| consumer_subsystems(c).contains(s))
                .map(|c| format!("consumer {}", consumer_functions(c).0))
        };
        let by_method = || {
            sc.unplug
                .as_ref()
                .filter(|u| method_subsystems(u.method).contains(s))
                .map(|u| format!("unplug method {}", u.method))
        };
        if let Some(what) = by_device.or_else(by_consumer).or_else(by_method) {
            add(WEAK, format!("subsystem {s} matches {what}"));
        }
    }
    Candidate {
        index,
        suite: plan.suite.clone(),
        scenario: plan.name().to_owned(),
        score,
        reasons,
    }
}

/// Every plan scored, best first; scenarios with score 0 are left out.
pub fn rank(t: &Target, plans: &[Plan]) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = plans
        .iter()
        .enumerate()
        .map(|(i, p)| score(t, p, i))
        .filter(|c| c.score > 0)
        .collect();
    out.sort_by_key(|c| (std::cmp::Reverse(c.score), c.suite != "known-bugs", c.index));
    out
}
