//! Typed events from the runner and the engine. Reporters consume these and
//! never reach into runner state.

use std::path::PathBuf;

use super::outcome::{Finding, ScenarioResult};
use super::schema::Method;

/// Something that happened during a run.
#[derive(Debug, Clone)]
pub enum Event {
    /// The run starts.
    RunStarted {
        /// Scenarios to run.
        scenarios: usize,
        /// Seed.
        seed: u64,
        /// Artifacts root.
        artifacts: PathBuf,
    },
    /// A preparation step (kernel build, image) reports progress.
    Preparing {
        /// What is being prepared.
        what: String,
    },
    /// A scenario starts.
    ScenarioStarted {
        /// 0-based index.
        index: usize,
        /// Count.
        total: usize,
        /// Name.
        name: String,
    },
    /// The VM is up and the agent answers.
    VmReady {
        /// Scenario.
        scenario: String,
        /// Seconds from QEMU start to agent ready.
        boot_secs: f64,
        /// Accelerator.
        accel: String,
    },
    /// An unplug starts.
    UnplugStarted {
        /// Scenario.
        scenario: String,
        /// How.
        method: Method,
        /// Device.
        target: String,
    },
    /// An unplug returned (the replug follows).
    UnplugFinished {
        /// Scenario.
        scenario: String,
        /// How.
        method: Method,
        /// Device.
        target: String,
        /// Seconds the unplug took.
        secs: f64,
        /// False when the guest never let go (a finding follows).
        completed: bool,
    },
    /// An unplug cycle finished.
    Cycle {
        /// Scenario.
        scenario: String,
        /// 0-based cycle.
        index: u32,
        /// Cycles planned (None for duration runs).
        of: Option<u32>,
        /// How.
        method: Method,
        /// Device.
        target: String,
        /// Seconds for unplug + replug (and re-probe).
        secs: f64,
    },
    /// A consumer's syscall has been blocked past its deadline (a finding
    /// follows).
    ConsumerStuck {
        /// Scenario.
        scenario: String,
        /// Consumer name.
        consumer: String,
        /// The syscall.
        syscall: String,
        /// For how long.
        for_ms: u64,
    },
    /// A finding, as soon as it is seen.
    Finding {
        /// Scenario.
        scenario: String,
        /// The finding.
        finding: Finding,
    },
    /// The logs of a VM that failed: console, QEMU, backends.
    Postmortem {
        /// Scenario.
        scenario: String,
        /// The rendered post-mortem.
        text: String,
    },
    /// A scenario ended.
    ScenarioFinished {
        /// Its result.
        result: Box<ScenarioResult>,
        /// Every finding, before deduplication.
        findings: Vec<Finding>,
    },
    /// The run stopped early: what ran so far is all there is.
    Interrupted {
        /// Why (a signal, an infrastructure error that ends the run).
        reason: String,
    },
    /// The run ended (also after [`Event::Interrupted`]).
    RunFinished,
}

/// A consumer of events.
pub trait Reporter {
    /// Called for each event, in order.
    fn event(&mut self, event: &Event);
    /// Output that could not be written (a reporter writes its files when
    /// the run finishes); the CLI turns these into an exit code.
    fn errors(&mut self) -> Vec<ReporterError> {
        Vec::new()
    }
}

/// A reporter could not write its output.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}")]
pub struct ReporterError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Sends each event to several reporters.
#[derive(Default)]
pub struct Fanout<'a>(pub Vec<&'a mut dyn Reporter>);

impl std::fmt::Debug for Fanout<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fanout({} reporters)", self.0.len())
    }
}

impl Reporter for Fanout<'_> {
    fn event(&mut self, event: &Event) {
        for r in &mut self.0 {
            r.event(event);
        }
    }

    fn errors(&mut self) -> Vec<ReporterError> {
        self.0.iter_mut().flat_map(|r| r.errors()).collect()
    }
}
