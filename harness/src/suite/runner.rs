//! The library entry point of a run: loaded plans in, events out.
//!
//! [`run`] prepares one kernel per distinct set of scenario kernel
//! requirements (through a [`Platform`]), runs every scenario with the
//! engine, and tells [`Reporter`]s everything as it happens. `dangle run`,
//! `dangle bench` and the commands built on them (validate, repro, bisect)
//! all drive this; none of them reads engine state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::agent_guest::AgentGuest;
use super::engine::{self, EngineError, Launcher, RunContext, Timing};
use super::events::{Event, Reporter};
use super::guest::{Guest, GuestError};
use super::load::Plan;
use super::outcome::{Outcome, ScenarioResult};
use super::schedule::Schedule;
use crate::exit::Status;
use crate::kernel::KernelIdentity;
use crate::prepare::{self, Bootable, KernelSelect, PrepareError};
use crate::report::Symbolizer;
use crate::vm::accel::AccelChoice;
use crate::vm::console::ConsoleSink;
use crate::vm::fixture::{Vm, VmSpec};
use crate::vm::machine::Machine;

/// What a run needs besides its plans.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Seed of every schedule.
    pub seed: u64,
    /// Cycle count override.
    pub cycles: Option<u32>,
    /// Duration override (instead of cycles).
    pub duration: Option<Duration>,
    /// Artifacts root.
    pub artifacts: PathBuf,
    /// Schedules recorded by an earlier run, by scenario.
    pub replay: Option<Replay>,
    /// Engine timeouts.
    pub timing: Timing,
    /// Set from elsewhere (a signal handler) to stop after the current
    /// scenario; the run then ends with [`Event::Interrupted`].
    pub cancel: Arc<AtomicBool>,
}

impl RunOptions {
    /// Options with defaults for everything but the seed and artifacts.
    pub fn new(seed: u64, artifacts: PathBuf) -> Self {
        Self {
            seed,
            cycles: None,
            duration: None,
            artifacts,
            replay: None,
            timing: Timing::default(),
            cancel: Arc::default(),
        }
    }
}

/// What `--replay DIR` reads: the seed and each scenario's realised
/// schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    /// The recorded seed.
    pub seed: u64,
    /// Recorded schedules by scenario.
    pub schedules: BTreeMap<String, Schedule>,
}

/// Why a replay directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A file is missing or unreadable.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file does not parse.
    #[error("{path} is not a dangle record")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Everything recorded for `--replay` in `run.json`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RunRecord {
    seed: u64,
    suites: Vec<String>,
    scenarios: Vec<String>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: PathBuf) -> Result<T, ReplayError> {
    let bytes = std::fs::read(&path).map_err(|source| ReplayError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| ReplayError::Parse { path, source })
}

impl Replay {
    /// Reads `DIR/run.json` and the `schedule.json` of every scenario it
    /// lists. A scenario that never reached its first cycle has none.
    pub fn read(dir: &Path) -> Result<Replay, ReplayError> {
        let run: RunRecord = read_json(dir.join("run.json"))?;
        let mut schedules = BTreeMap::new();
        for s in &run.scenarios {
            let p = engine::scenario_dir(dir, s).join("schedule.json");
            if p.exists() {
                schedules.insert(s.clone(), read_json(p)?);
            }
        }
        Ok(Replay {
            seed: run.seed,
            schedules,
        })
    }
}

/// The kernel requirements of a scenario; one kernel is prepared per
/// distinct value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelReq {
    /// The scenario's own patches.
    pub patches: Vec<PathBuf>,
    /// The scenario's own config items.
    pub config: Vec<String>,
}

impl KernelReq {
    /// The requirements of `plan`.
    pub fn of(plan: &Plan) -> Self {
        Self {
            patches: plan.patches.clone(),
            config: plan.scenario.kernel.config.clone(),
        }
    }
}

/// A prepared kernel: how to start machines with it. Cloning shares the
/// launcher and the symbols, so several runs can use one preparation.
#[derive(Clone)]
pub struct Prepared {
    /// Starts machines.
    pub launcher: Arc<dyn Launcher>,
    /// What kernel this is; its version is recorded in each result.
    pub kernel: KernelIdentity,
    /// vmlinux symbols, when readable.
    pub symbolizer: Option<Arc<Symbolizer>>,
    /// The kernel's `.config`, when dangle built it.
    pub config: Option<PathBuf>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("kernel", &self.kernel)
            .finish_non_exhaustive()
    }
}

/// Prepares kernels: builds them (QEMU runs) or pretends to (tests).
pub trait Platform {
    /// A kernel that meets `req`.
    fn prepare(&mut self, req: &KernelReq) -> Result<Prepared, PrepareError>;
}

/// Real runs: kernels from [`prepare::bootable`], machines from QEMU.
#[derive(Debug)]
pub struct QemuPlatform<'a> {
    /// The kernel flags of the command line.
    pub kernel: &'a KernelSelect,
    /// Accelerator choice.
    pub accel: AccelChoice,
}

impl Platform for QemuPlatform<'_> {
    fn prepare(&mut self, req: &KernelReq) -> Result<Prepared, PrepareError> {
        let boot = prepare::bootable(self.kernel, &req.patches, &req.config)?;
        let patches: Vec<PathBuf> = self
            .kernel
            .patches
            .iter()
            .chain(&req.patches)
            .cloned()
            .collect();
        let kernel = KernelIdentity::of(&boot.kernel, &patches)?;
        let symbolizer = Symbolizer::open(&boot.kernel.vmlinux)
            .map_err(|e| tracing::warn!("no symbolization: {}", crate::exit::chain(&e).to_string()))
            .ok()
            .map(Arc::new);
        Ok(Prepared {
            kernel,
            config: boot.kernel.config.clone(),
            launcher: Arc::new(QemuLauncher {
                boot,
                accel: self.accel,
            }),
            symbolizer,
        })
    }
}

/// Makes the platform of a kernel selection: QEMU for real, simulated in
/// tests. Commands that prepare several kernels (validate, repro) take one.
pub trait Platforms {
    /// The platform that prepares the kernel `sel` selects.
    fn platform<'k>(&self, sel: &'k KernelSelect) -> Box<dyn Platform + 'k>;
}

/// Real kernels and QEMU, with this accelerator choice.
#[derive(Debug, Clone, Copy)]
pub struct Qemu(pub AccelChoice);

impl Platforms for Qemu {
    fn platform<'k>(&self, sel: &'k KernelSelect) -> Box<dyn Platform + 'k> {
        Box::new(QemuPlatform {
            kernel: sel,
            accel: self.0,
        })
    }
}

/// Starts a QEMU VM per scenario with the plan's devices.
#[derive(Debug)]
pub struct QemuLauncher {
    /// Kernel and initramfs.
    pub boot: Bootable,
    /// Accelerator choice.
    pub accel: AccelChoice,
}

impl Launcher for QemuLauncher {
    fn start(
        &self,
        plan: &Plan,
        artifacts: &Path,
        console: ConsoleSink,
    ) -> Result<Box<dyn Machine>, EngineError> {
        let mut s = VmSpec::new(
            self.boot.kernel.bzimage.clone(),
            self.boot.initrd.clone(),
            artifacts.to_owned(),
        );
        s.devices = plan.devices.clone();
        s.accel = self.accel;
        s.extra_cmdline = plan.cmdline.clone();
        Ok(Box::new(Vm::start(s, Some(console))?))
    }

    fn connect(&self, m: &dyn Machine, timeout: Duration) -> Result<Box<dyn Guest>, GuestError> {
        AgentGuest::connect_socket(m.agent_socket(), timeout).map(|g| Box::new(g) as Box<dyn Guest>)
    }
}

/// Errors that stop a run before its scenarios can say anything.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A kernel could not be prepared because of the user's input (a patch
    /// that does not apply, a config symbol that does not exist).
    #[error("preparing the kernel")]
    Prepare(#[source] PrepareError),
    /// The artifacts directory is unusable.
    #[error("cannot write {path}")]
    Artifacts {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What a run produced.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// One result per scenario that ran.
    pub results: Vec<ScenarioResult>,
    /// Set when the run stopped early.
    pub interrupted: bool,
}

impl RunSummary {
    /// The exit status class: infrastructure beats findings beats success.
    pub fn status(&self) -> Status {
        if self
            .results
            .iter()
            .any(|r| matches!(r.outcome, Outcome::Infrastructure { .. }))
            || self.interrupted
        {
            Status::Infrastructure
        } else if self.results.iter().any(|r| !r.met()) {
            Status::Findings
        } else {
            Status::Ok
        }
    }
}

/// Runs `plans` in order and reports through `reporters`. Every path out
/// sends [`Event::RunFinished`], so reporters can write what they have.
pub fn run(
    plans: &[Plan],
    suites: &[String],
    platform: &mut dyn Platform,
    opts: &RunOptions,
    reporters: &mut dyn Reporter,
) -> Result<RunSummary, RunError> {
    let r = run_inner(plans, suites, platform, opts, reporters);
    if let Err(e) = &r {
        reporters.event(&Event::Interrupted {
            reason: crate::exit::chain(e).to_string(),
        });
    }
    reporters.event(&Event::RunFinished);
    r
}

fn run_inner(
    plans: &[Plan],
    suites: &[String],
    platform: &mut dyn Platform,
    opts: &RunOptions,
    reporters: &mut dyn Reporter,
) -> Result<RunSummary, RunError> {
    let artifacts = &opts.artifacts;
    let record = RunRecord {
        seed: opts.seed,
        suites: suites.to_vec(),
        scenarios: plans.iter().map(|p| p.name().to_owned()).collect(),
    };
    let run_json = artifacts.join("run.json");
    std::fs::create_dir_all(artifacts)
        .and_then(|()| {
            std::fs::write(
                &run_json,
                serde_json::to_vec_pretty(&record).unwrap_or_default(),
            )
        })
        .map_err(|source| RunError::Artifacts {
            path: run_json.clone(),
            source,
        })?;
    reporters.event(&Event::RunStarted {
        scenarios: plans.len(),
        seed: opts.seed,
        artifacts: artifacts.clone(),
    });
    let mut kernels: BTreeMap<KernelReq, Result<Prepared, String>> = BTreeMap::new();
    let mut summary = RunSummary::default();
    for (i, plan) in plans.iter().enumerate() {
        if opts.cancel.load(Ordering::SeqCst) {
            summary.interrupted = true;
            reporters.event(&Event::Interrupted {
                reason: format!("stopped before scenario {}", plan.name()),
            });
            break;
        }
        reporters.event(&Event::ScenarioStarted {
            index: i,
            total: plans.len(),
            name: plan.name().to_owned(),
        });
        let key = KernelReq::of(plan);
        if !kernels.contains_key(&key) {
            reporters.event(&Event::Preparing {
                what: "kernel and initramfs".into(),
            });
            let p = match platform.prepare(&key) {
                Ok(p) => Ok(p),
                Err(e) if crate::exit::status_of(&e) == Status::BadInput => {
                    return Err(RunError::Prepare(e));
                }
                Err(e) => Err(crate::exit::chain(&e).to_string()),
            };
            kernels.insert(key.clone(), p);
        }
        let result = match &kernels[&key] {
            Err(e) => {
                let r = infra_result(
                    plan,
                    opts.seed,
                    &engine::scenario_dir(artifacts, plan.name()),
                    format!("preparing the kernel failed: {e}"),
                );
                reporters.event(&Event::ScenarioFinished {
                    result: Box::new(r.clone()),
                    findings: Vec::new(),
                });
                r
            }
            Ok(prepared) => {
                let replay = opts.replay.as_ref();
                let lookup = |name: &str| replay.and_then(|r| r.schedules.get(name).cloned());
                let ctx = RunContext {
                    launcher: prepared.launcher.as_ref(),
                    symbolizer: prepared.symbolizer.as_deref(),
                    seed: opts.seed,
                    cycles: opts.cycles,
                    duration: opts.duration,
                    artifacts: artifacts.clone(),
                    replay: replay.is_some().then_some(&lookup as &engine::ReplayLookup),
                    timing: opts.timing,
                };
                let mut r = engine::run_scenario(
                    plan,
                    &ctx,
                    &mut KernelTag {
                        kernel: &prepared.kernel.version,
                        inner: reporters,
                    },
                );
                r.kernel = Some(prepared.kernel.version.clone());
                r
            }
        };
        summary.results.push(result);
    }
    Ok(summary)
}

/// Stamps the kernel version on results before the reporters see them.
struct KernelTag<'a> {
    kernel: &'a str,
    inner: &'a mut dyn Reporter,
}

impl Reporter for KernelTag<'_> {
    fn event(&mut self, event: &Event) {
        match event {
            Event::ScenarioFinished { result, findings } => {
                let mut result = result.clone();
                result.kernel = Some(self.kernel.to_owned());
                self.inner.event(&Event::ScenarioFinished {
                    result,
                    findings: findings.clone(),
                });
            }
            other => self.inner.event(other),
        }
    }
}

fn infra_result(plan: &Plan, seed: u64, artifacts: &Path, error: String) -> ScenarioResult {
    ScenarioResult {
        suite: plan.suite.clone(),
        scenario: plan.name().to_owned(),
        expectation: crate::suite::outcome::describe(&plan.scenario.expect),
        outcome: Outcome::Infrastructure { error },
        findings: Vec::new(),
        method: None,
        cycles: 0,
        cycle_secs: Vec::new(),
        duration_secs: 0.0,
        boot_secs: None,
        seed,
        artifacts: artifacts.to_owned(),
        kernel: None,
        notes: plan.scenario.notes.clone(),
    }
}
