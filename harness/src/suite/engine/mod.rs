//! The unplug engine: runs one scenario in a fresh VM and turns everything
//! it sees into findings.
//!
//! Per scenario: boot (backends + QEMU + agent, through a [`Launcher`]),
//! run the setup steps, start the consumers, then for each cycle of the
//! seeded schedule wait the jitter, pull the target with the scenario's
//! [unplug method](crate::unplug), put it back, wait until the guest sees
//! it again, redo the setup, restart consumers that died with it.
//! Throughout, the console goes through the streaming crash parser; agent
//! events (stuck syscalls), agent silence, QEMU exits and backend deaths
//! become findings too. Everything the engine learns leaves it as an
//! [`Event`]; it writes only the artifacts that replay needs
//! (`schedule.json`, `kmemleak.txt`).
//!
//! Where things live: the cycle loop is here; [`steps`] runs setup steps
//! and consumers; [`watch`] collects findings while time passes; [`rig`]
//! lends the running scenario to the unplug methods; [`findings`] builds
//! findings.

mod findings;
mod rig;
mod steps;
mod watch;

#[cfg(test)]
mod tests;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dangle_proto::{Request, Response};

use super::events::{Event, Reporter};
use super::guest::{Guest, GuestError};
use super::load::Plan;
use super::outcome::{self, Finding, Outcome, ScenarioResult, secs};
use super::schedule::{Schedule, Scheduler};
use super::schema::{Method, Step};
use super::translate::{self, GuestMap, TranslateError};
use crate::report::Symbolizer;
use crate::unplug::{self, Completion, Params, UnplugError};
use crate::vm::console::ConsoleSink;
use crate::vm::fixture::VmError;
use crate::vm::machine::Machine;

pub use findings::{describe_status, finding_from_report};
use watch::ConsoleParse;

/// Boot to agent ready, TCG with a KASAN kernel included.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// One agent request (they are all quick unless the guest is wedged).
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(20);
/// After a replug, how long the guest may take to show the device again.
pub const REPROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new I2C client may take to get its driver bound.
pub const BIND_TIMEOUT: Duration = Duration::from_secs(15);
/// kmemleak reports only objects older than this (MSECS_MIN_AGE).
const KMEMLEAK_AGE: Duration = Duration::from_secs(6);
/// A report still open after this much console silence is complete.
const CONSOLE_QUIET: Duration = Duration::from_secs(2);
/// Poll period while waiting.
const POLL: Duration = Duration::from_millis(100);

/// Errors that end a scenario as an infrastructure failure.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The VM fixture failed.
    #[error("vm")]
    Vm(#[from] VmError),
    /// The agent failed.
    #[error("guest agent")]
    Guest(#[from] GuestError),
    /// An unplug method failed for a reason other than the guest.
    #[error("unplug")]
    Unplug(#[from] UnplugError),
    /// A scenario names a device the guest does not show (as it should).
    #[error("scenario")]
    Translate(#[from] TranslateError),
    /// The guest does not show these devices.
    #[error("the guest does not show {devices} after {timeout:?}")]
    DevicesMissing {
        /// Comma-separated ids.
        devices: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// A `new-device` client got no driver.
    #[error("new-device {chip} at {client}: no driver bound within {timeout:?}")]
    NotBound {
        /// Driver name.
        chip: String,
        /// I2C client, e.g. `1-0050`.
        client: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// A setup `exec` step failed.
    #[error("setup command {argv:?} failed ({code:?}): {stderr}")]
    SetupCommand {
        /// The command.
        argv: Vec<String>,
        /// Its exit code.
        code: Option<i32>,
        /// Its standard error.
        stderr: String,
    },
    /// A consumer failed before the first unplug, so the scenario tests
    /// nothing.
    #[error("consumer {consumer} failed before the first unplug: {error}")]
    ConsumerFailed {
        /// Consumer name.
        consumer: String,
        /// What the agent said.
        error: String,
    },
    /// A step names a consumer that does not exist.
    #[error("no consumer {0} to interrupt")]
    NoConsumer(usize),
    /// A step names a line past what the wire can carry.
    #[error("line {0} out of range")]
    LineOutOfRange(u32),
    /// An artifact could not be written.
    #[error("cannot write {path}")]
    Artifact {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The launcher failed before the VM existed.
    #[error("cannot start the vm")]
    Launch(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Finds the recorded schedule of a scenario (`--replay`).
pub type ReplayLookup<'a> = dyn Fn(&str) -> Option<Schedule> + 'a;

/// Starts machines and connects to their agents: QEMU in real runs
/// (`suite::runner::QemuLauncher`), a simulation in the engine's tests.
pub trait Launcher {
    /// Starts the machine of `plan`, logging into `artifacts`; console
    /// bytes go to `console` as they arrive.
    fn start(
        &self,
        plan: &Plan,
        artifacts: &Path,
        console: ConsoleSink,
    ) -> Result<Box<dyn Machine>, EngineError>;
    /// Connects to the agent of a started machine, waiting up to
    /// `timeout` for the guest to boot that far.
    fn connect(&self, m: &dyn Machine, timeout: Duration) -> Result<Box<dyn Guest>, GuestError>;
}

/// Timeouts of the engine itself (the scenario's own are in its plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Boot to agent ready.
    pub boot: Duration,
    /// Replug to the device visible again.
    pub reprobe: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            boot: BOOT_TIMEOUT,
            reprobe: REPROBE_TIMEOUT,
        }
    }
}

/// Inputs shared by every scenario of a run.
pub struct RunContext<'a> {
    /// Starts machines.
    pub launcher: &'a dyn Launcher,
    /// vmlinux for symbolization, if known.
    pub symbolizer: Option<&'a Symbolizer>,
    /// Seed of the run.
    pub seed: u64,
    /// Cycle count override (`--cycles`).
    pub cycles: Option<u32>,
    /// Duration override (`--duration`).
    pub duration: Option<Duration>,
    /// Artifacts root; each scenario gets a subdirectory.
    pub artifacts: PathBuf,
    /// Recorded schedules to replay, by scenario.
    pub replay: Option<&'a ReplayLookup<'a>>,
    /// Engine timeouts.
    pub timing: Timing,
}

impl std::fmt::Debug for RunContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("seed", &self.seed)
            .field("artifacts", &self.artifacts)
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

/// The artifacts directory of a scenario under the run's.
pub fn scenario_dir(artifacts: &Path, scenario: &str) -> PathBuf {
    artifacts.join(sanitize(scenario))
}

struct Run<'a> {
    plan: &'a Plan,
    ctx: &'a RunContext<'a>,
    vm: Box<dyn Machine>,
    guest: Box<dyn Guest>,
    map: GuestMap,
    /// Console reports arrive here from the console thread.
    console_reports: Arc<Mutex<ConsoleParse>>,
    findings: Vec<Finding>,
    cycle: Option<u32>,
    /// Consumers that should be running, by name.
    consumers: Vec<(String, super::schema::Consumer)>,
    /// Backends killed on purpose (not crashes).
    killed: Vec<String>,
    reporters: &'a mut dyn Reporter,
    /// Set once the guest stopped answering or QEMU died: stop cycling.
    dead: bool,
    /// Set when we power the guest off ourselves: QEMU exiting is expected.
    stopping: bool,
}

/// Runs one scenario; never panics on guest behaviour, and always returns
/// a result (infrastructure failures included). The result also leaves as
/// [`Event::ScenarioFinished`], with the raw findings.
pub fn run_scenario(
    plan: &Plan,
    ctx: &RunContext<'_>,
    reporters: &mut dyn Reporter,
) -> ScenarioResult {
    let started = Instant::now();
    let artifacts = scenario_dir(&ctx.artifacts, plan.name());
    let mut result = ScenarioResult {
        suite: plan.suite.clone(),
        scenario: plan.name().to_owned(),
        expectation: outcome::describe(&plan.scenario.expect),
        outcome: Outcome::Met,
        findings: Vec::new(),
        method: plan.scenario.unplug.as_ref().map(|u| u.method.to_string()),
        cycles: 0,
        cycle_secs: Vec::new(),
        duration_secs: 0.0,
        boot_secs: None,
        seed: ctx.seed,
        artifacts: artifacts.clone(),
        kernel: None,
        notes: plan.scenario.notes.clone(),
    };
    let mut findings = Vec::new();
    let outcome = match run_inner(plan, ctx, &artifacts, reporters, &mut result, &mut findings) {
        Ok(()) => outcome::judge(&plan.scenario.expect, &findings),
        Err(e) => Outcome::Infrastructure {
            error: crate::exit::chain(&e).to_string(),
        },
    };
    result.outcome = outcome;
    result.findings = outcome::dedup(&findings);
    result.duration_secs = secs(started.elapsed());
    reporters.event(&Event::ScenarioFinished {
        result: Box::new(result.clone()),
        findings,
    });
    result
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn run_inner(
    plan: &Plan,
    ctx: &RunContext<'_>,
    artifacts: &Path,
    reporters: &mut dyn Reporter,
    result: &mut ScenarioResult,
    out: &mut Vec<Finding>,
) -> Result<(), EngineError> {
    let console_reports: Arc<Mutex<ConsoleParse>> = Arc::default();
    let sink = ConsoleParse::sink(&console_reports);
    let vm = ctx.launcher.start(plan, artifacts, sink)?;
    let guest = match ctx.launcher.connect(vm.as_ref(), ctx.timing.boot) {
        Ok(g) => g,
        Err(e) => {
            reporters.event(&Event::Postmortem {
                scenario: plan.name().to_owned(),
                text: vm.postmortem(),
            });
            return Err(e.into());
        }
    };
    let boot = vm.uptime();
    result.boot_secs = Some(secs(boot));
    reporters.event(&Event::VmReady {
        scenario: plan.name().to_owned(),
        boot_secs: secs(boot),
        accel: vm.accel(),
    });
    let mut run = Run {
        plan,
        ctx,
        vm,
        guest,
        map: GuestMap::new(),
        console_reports,
        findings: Vec::new(),
        cycle: None,
        consumers: Vec::new(),
        killed: Vec::new(),
        reporters,
        dead: false,
        stopping: false,
    };
    let r = run.body(result);
    run.finish(r.is_ok());
    out.append(&mut run.findings);
    if r.is_err() {
        let text = run.vm.postmortem();
        run.reporters.event(&Event::Postmortem {
            scenario: plan.name().to_owned(),
            text,
        });
    }
    r
}

impl Run<'_> {
    fn body(&mut self, result: &mut ScenarioResult) -> Result<(), EngineError> {
        self.map = self.wait_devices(None, self.ctx.timing.reprobe)?;
        // Forget boot-time kmemleak suspects: a scenario answers for its own.
        if self
            .plan
            .scenario
            .after
            .iter()
            .any(|s| matches!(s, Step::Kmemleak))
        {
            let _ = self.guest.call(
                Request::WriteFile {
                    path: "/sys/kernel/debug/kmemleak".into(),
                    data: "clear".into(),
                },
                AGENT_TIMEOUT,
            );
        }
        let setup = self.plan.scenario.setup.clone();
        self.steps(&setup)?;
        for (i, c) in self.plan.scenario.consumers.iter().enumerate() {
            self.consumers
                .push((translate::consumer_name(i, c), c.clone()));
        }
        self.start_consumers(None)?;

        let targets = match &self.plan.scenario.unplug {
            Some(u) if u.targets.is_empty() => self
                .plan
                .devices
                .iter()
                .map(|d| d.id().to_owned())
                .collect(),
            Some(u) => u.targets.clone(),
            None => Vec::new(),
        };
        let mut sched = match self.ctx.replay.and_then(|f| f(self.plan.name())) {
            Some(s) => Scheduler::replay(&s, targets, self.plan.delay),
            None => Scheduler::new(self.ctx.seed, self.plan.name(), targets, self.plan.delay),
        };
        let duration = self.ctx.duration.or(self.plan.duration);
        let cycles = self.ctx.cycles.unwrap_or(self.plan.cycles);
        let unplug = self.plan.scenario.unplug.clone();
        let began = Instant::now();
        if let Some(u) = &unplug {
            loop {
                let more = match duration {
                    Some(d) => began.elapsed() < d,
                    None => result.cycles < cycles,
                };
                if !more || self.dead {
                    break;
                }
                let Some(c) = sched.next_cycle() else { break };
                self.cycle = Some(c.index);
                self.watch(Duration::from_millis(c.delay_ms))?;
                if c.index == 0 {
                    self.check_consumers_alive()?;
                }
                let t0 = Instant::now();
                let last = duration.is_none() && result.cycles + 1 == cycles;
                let replug = !(last && u.no_replug);
                let ok = self.cycle_once(u.method, &c.target, replug)?;
                let dt = t0.elapsed();
                result.cycles += 1;
                result.cycle_secs.push(secs(dt));
                self.reporters.event(&Event::Cycle {
                    scenario: self.plan.name().to_owned(),
                    index: c.index,
                    of: duration.is_none().then_some(cycles),
                    method: u.method,
                    target: c.target.clone(),
                    secs: secs(dt),
                });
                if !ok {
                    break;
                }
            }
        }
        let path = scenario_dir(&self.ctx.artifacts, self.plan.name()).join("schedule.json");
        let json = serde_json::to_vec_pretty(sched.realised()).unwrap_or_default();
        fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
            .and_then(|()| fs::write(&path, json))
            .map_err(|source| EngineError::Artifact { path, source })?;
        self.cycle = None;
        if !self.dead {
            let after = self.plan.scenario.after.clone();
            self.steps(&after)?;
        }
        self.watch(self.plan.settle)?;
        Ok(())
    }

    /// One unplug + replug. Returns false when cycling should stop (the
    /// device never went away, or never came back).
    fn cycle_once(
        &mut self,
        method: Method,
        target: &str,
        replug: bool,
    ) -> Result<bool, EngineError> {
        let m = unplug::method(method);
        let params = Params {
            timeout: self.plan.unplug_timeout,
            dead_time: self.plan.delay.1.max(Duration::from_secs(1)),
        };
        let scenario = self.plan.name().to_owned();
        self.reporters.event(&Event::UnplugStarted {
            scenario: scenario.clone(),
            method,
            target: target.to_owned(),
        });
        let t0 = Instant::now();
        let done = m.unplug(self, target, params)?;
        self.reporters.event(&Event::UnplugFinished {
            scenario: scenario.clone(),
            method,
            target: target.to_owned(),
            secs: secs(t0.elapsed()),
            completed: done == Completion::Done,
        });
        if let Completion::Never(stuck) = done {
            self.stuck(stuck);
            return Ok(false);
        }
        if !replug {
            return Ok(true);
        }
        if let Completion::Never(stuck) = m.replug(self, target, params)? {
            self.stuck(stuck);
            return Ok(false);
        }
        if !m.removes_device() {
            return Ok(true);
        }
        match self.wait_devices(Some(target), self.ctx.timing.reprobe) {
            Ok(map) => self.map = map,
            Err(EngineError::DevicesMissing { devices, timeout }) => {
                self.add_synthetic(
                    format!("device never came back: {target} ({method})"),
                    outcome::FindingSource::UnplugTimeout,
                    format!("the guest does not show {devices} {timeout:?} after the replug"),
                );
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        let setup = self.plan.scenario.setup.clone();
        self.steps(&setup)?;
        self.start_consumers(Some(target))?;
        Ok(true)
    }

    fn stuck(&mut self, s: unplug::Stuck) {
        self.add_synthetic(s.title, outcome::FindingSource::UnplugTimeout, s.detail);
    }

    /// The reply to a request, with findings collected around it.
    fn call(&mut self, req: Request) -> Result<Response, EngineError> {
        let r = self.guest.call(req, AGENT_TIMEOUT);
        self.pump();
        Ok(r?)
    }
}
