//! `dangle bench`: figures users can expect, printed by commands (never
//! asserted by timed tests).
//!
//! - `boot`: QEMU start to agent ready, N boots, TCG and (when a probe VM
//!   boots under it) KVM, median and spread;
//! - `cycles`: seconds per unplug+replug cycle with consumers busy, for each
//!   unplug method, and cycles per minute over a duration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::exit::Status;
use crate::prepare::{self, KernelSelect};
use crate::suite::agent_guest::AgentGuest;
use crate::suite::engine::BOOT_TIMEOUT;
use crate::suite::events::{Event, Fanout, Reporter};
use crate::suite::load::{self, Plan};
use crate::suite::outcome::Outcome;
use crate::suite::reporters::{ArtifactsReporter, TerminalReporter};
use crate::suite::runner::{self, QemuPlatform, RunOptions};
use crate::suite::schema::{Consumer, Expectation, GpioLine, Method, Scenario, Unplug};
use crate::vm::accel::{self, AccelChoice};
use crate::vm::devices::DeviceSpec;
use crate::vm::fixture::{Vm, VmSpec, find_qemu};
use crate::vm::qemu::Accel;

/// Arguments of `dangle bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Debug, clap::Subcommand)]
enum BenchWhat {
    /// Boot to agent ready (default hardware), N boots per accelerator.
    Boot {
        /// Boots per accelerator.
        #[arg(short = 'n', long, default_value_t = 5)]
        runs: u32,
        #[command(flatten)]
        kernel: KernelSelect,
        /// Where consoles go (default: ./dangle-artifacts/bench-boot).
        #[arg(long)]
        artifacts: Option<PathBuf>,
    },
    /// Seconds per unplug+replug cycle with GPIO consumers busy, per method,
    /// and cycles per minute over --duration.
    Cycles {
        /// How long each method cycles.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
        duration: Duration,
        /// Methods (default: qmp, unbind, pci-remove, backend-kill).
        #[arg(long = "method", value_name = "METHOD")]
        methods: Vec<String>,
        #[command(flatten)]
        kernel: KernelSelect,
        /// Where the run's artifacts go (default: ./dangle-artifacts/bench-cycles).
        #[arg(long)]
        artifacts: Option<PathBuf>,
    },
}

/// Median, min and max of samples (seconds).
pub fn spread(samples: &[f64]) -> Option<(f64, f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Some((median, s[0], s[n - 1]))
}

/// Runs `dangle bench`.
pub fn run(args: BenchArgs) -> Status {
    match args.what {
        BenchWhat::Boot {
            runs,
            kernel,
            artifacts,
        } => boot(runs, &kernel, artifacts),
        BenchWhat::Cycles {
            duration,
            methods,
            kernel,
            artifacts,
        } => cycles(duration, methods, kernel, artifacts),
    }
}

fn boot(runs: u32, kernel: &KernelSelect, artifacts: Option<PathBuf>) -> Status {
    if find_qemu().is_none() {
        eprintln!("dangle bench: qemu-system-x86_64 not found: sudo bash ci/setup-host.sh");
        return Status::Infrastructure;
    }
    let b = match prepare::bootable(kernel, &[], &[]) {
        Ok(b) => b,
        Err(e) => {
            return crate::exit::fail(&e);
        }
    };
    let dir = artifacts.unwrap_or_else(|| PathBuf::from("dangle-artifacts/bench-boot"));
    let qemu = find_qemu().unwrap_or_else(|| "qemu-system-x86_64".into());
    let (kvm, why) = accel::resolve(
        AccelChoice::Auto,
        &qemu,
        &b.kernel.bzimage,
        &crate::paths::cache_dir(),
    );
    let mut accels = vec![(Accel::Tcg, AccelChoice::Tcg)];
    if kvm == Accel::Kvm {
        accels.push((Accel::Kvm, AccelChoice::Kvm));
    } else {
        println!("kvm: not measured ({why})");
    }
    println!(
        "kernel {} ({}), {runs} boot(s) per accelerator, default hardware",
        b.kernel.version, b.kernel.source
    );
    let mut status = Status::Ok;
    for (accel, choice) in accels {
        let mut samples = Vec::new();
        for i in 0..runs {
            let mut spec = VmSpec::new(
                b.kernel.bzimage.clone(),
                b.initrd.clone(),
                dir.join(format!("{accel}-{i}")),
            );
            spec.devices = DeviceSpec::defaults();
            spec.accel = choice;
            let t0 = Instant::now();
            let vm = match Vm::start(spec, None) {
                Ok(vm) => vm,
                Err(e) => {
                    eprintln!("boot {i}: {}", crate::exit::chain(&e));
                    status = Status::Infrastructure;
                    continue;
                }
            };
            match AgentGuest::connect(&vm, BOOT_TIMEOUT) {
                Ok(g) => {
                    let secs = t0.elapsed().as_secs_f64();
                    samples.push(secs);
                    eprintln!("{accel} boot {}: agent ready after {secs:.2} s", i + 1);
                    let _ = g.client().poweroff();
                }
                Err(e) => {
                    eprintln!("boot {i}: {}", crate::exit::chain(&e));
                    status = Status::Infrastructure;
                }
            }
            let mut vm = vm;
            if vm.wait_exit(Duration::from_secs(20)).is_none() {
                vm.quit();
            }
        }
        if let Some((med, min, max)) = spread(&samples) {
            println!(
                "{accel}: boot to agent ready: median {med:.2} s, min {min:.2} s, max {max:.2} s ({} boots)",
                samples.len()
            );
        }
    }
    status
}

/// Collects figures from a run's events: boot seconds and seconds per
/// cycle by unplug method, and why a scenario produced none.
#[derive(Debug, Default)]
pub struct BenchReporter {
    /// Boot to agent ready, per scenario.
    pub boot_secs: Vec<f64>,
    /// Seconds per unplug+replug cycle, by method.
    pub cycle_secs: BTreeMap<Method, Vec<f64>>,
    /// Scenarios that did not meet their expectation, with the reason.
    pub failed: Vec<(String, String)>,
}

impl Reporter for BenchReporter {
    fn event(&mut self, event: &Event) {
        match event {
            Event::VmReady { boot_secs, .. } => self.boot_secs.push(*boot_secs),
            Event::Cycle { method, secs, .. } => {
                self.cycle_secs.entry(*method).or_default().push(*secs);
            }
            Event::ScenarioFinished { result, .. } => match &result.outcome {
                Outcome::Met => {}
                Outcome::NotMet { reason } => {
                    self.failed.push((result.scenario.clone(), reason.clone()));
                }
                Outcome::Infrastructure { error } => {
                    self.failed.push((result.scenario.clone(), error.clone()));
                }
            },
            _ => {}
        }
    }
}

/// The bench scenario of one method: a GPIO controller with a held line,
/// a polled edge watcher and a toggler, cycled for `duration`.
pub fn cycle_plan(method: Method, duration: Duration, artifacts: &Path) -> Plan {
    let line = |n| GpioLine {
        device: "gpio0".into(),
        line: n,
    };
    let devices = vec![DeviceSpec::gpio("gpio0", 8)];
    Plan {
        suite: "bench-cycles".into(),
        file: artifacts.join("bench-cycles"),
        scenario: Scenario {
            name: format!("cycles-{method}"),
            description: None,
            devices: Some(devices.clone()),
            kernel: Default::default(),
            setup: Vec::new(),
            consumers: vec![
                Consumer::GpioHold(line(1)),
                Consumer::GpioEdgePoll(line(2)),
                Consumer::GpioToggle(line(3)),
            ],
            unplug: Some(Unplug {
                method,
                targets: vec!["gpio0".into()],
                cycles: None,
                duration: Some(duration),
                delay: Some("200ms".into()),
                no_replug: false,
            }),
            after: Vec::new(),
            expect: Expectation::Clean,
            notes: None,
            unplug_timeout: Some(Duration::from_secs(60)),
            consumer_deadline: None,
            settle: Some(Duration::from_secs(1)),
            watchdog: None,
            cmdline: Vec::new(),
        },
        devices,
        cycles: 1,
        duration: Some(duration),
        delay: (Duration::from_millis(200), Duration::from_millis(200)),
        unplug_timeout: Duration::from_secs(60),
        consumer_deadline: load::DEFAULT_CONSUMER_DEADLINE,
        settle: Duration::from_secs(1),
        watchdog: load::DEFAULT_WATCHDOG,
        cmdline: Vec::new(),
        patches: Vec::new(),
    }
}

fn cycles(
    duration: Duration,
    methods: Vec<String>,
    kernel: KernelSelect,
    artifacts: Option<PathBuf>,
) -> Status {
    let mut parsed = Vec::new();
    for m in &methods {
        match serde_json::from_value::<Method>(serde_json::Value::String(m.clone())) {
            Ok(m) => parsed.push(m),
            Err(_) => {
                eprintln!(
                    "dangle bench: --method {m}: not a method (qmp, unbind, pci-remove, backend-kill, backend-stall)"
                );
                return Status::BadInput;
            }
        }
    }
    if parsed.is_empty() {
        parsed = vec![
            Method::Qmp,
            Method::Unbind,
            Method::PciRemove,
            Method::BackendKill,
        ];
    }
    let dir = artifacts.unwrap_or_else(|| PathBuf::from("dangle-artifacts/bench-cycles"));
    let plans: Vec<Plan> = parsed
        .iter()
        .map(|m| cycle_plan(*m, duration, &dir))
        .collect();
    let mut opts = RunOptions::new(1, dir.join("run"));
    opts.duration = Some(duration);
    let mut platform = QemuPlatform {
        kernel: &kernel,
        accel: AccelChoice::Auto,
    };
    let mut term = TerminalReporter::new();
    let mut files = ArtifactsReporter::default();
    let mut figures = BenchReporter::default();
    let summary = runner::run(
        &plans,
        &["bench-cycles".into()],
        &mut platform,
        &opts,
        &mut Fanout(vec![&mut term, &mut files, &mut figures]),
    );
    let status = match summary {
        Ok(s) => s.status(),
        Err(e) => {
            return crate::exit::fail(&e);
        }
    };
    println!(
        "\nunplug+replug cycle of a GPIO controller with 3 consumers busy, {duration:?} per method:"
    );
    println!(
        "{:<14} {:>8} {:>10} {:>10} {:>10} {:>12}",
        "method", "cycles", "median s", "min s", "max s", "cycles/min"
    );
    for m in &parsed {
        let secs = figures.cycle_secs.get(m).cloned().unwrap_or_default();
        match spread(&secs) {
            Some((med, min, max)) => println!(
                "{:<14} {:>8} {med:>10.2} {min:>10.2} {max:>10.2} {:>12.1}",
                m.to_string(),
                secs.len(),
                secs.len() as f64 / duration.as_secs_f64() * 60.0
            ),
            None => {
                let why = figures
                    .failed
                    .iter()
                    .find(|(s, _)| *s == format!("cycles-{m}"))
                    .map_or("", |(_, r)| r.as_str());
                println!("{:<14} {:>8} (no completed cycle: {why})", m.to_string(), 0);
            }
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_odd_even_and_empty() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(spread(&[4.0, 1.0, 2.0, 3.0]), Some((2.5, 1.0, 4.0)));
        assert_eq!(spread(&[]), None);
    }
}
