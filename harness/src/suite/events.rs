//! Typed events from the runner. Reporters consume these and never reach
//! into runner state.

use super::outcome::{Finding, ScenarioResult};

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
        artifacts: std::path::PathBuf,
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
    /// An unplug cycle finished.
    Cycle {
        /// Scenario.
        scenario: String,
        /// 0-based cycle.
        index: u32,
        /// Cycles planned (None for duration runs).
        of: Option<u32>,
        /// Device.
        target: String,
        /// Seconds for unplug + replug.
        secs: f64,
    },
    /// A finding, as soon as it is seen.
    Finding {
        /// Scenario.
        scenario: String,
        /// The finding.
        finding: Finding,
    },
    /// A scenario ended.
    ScenarioFinished(Box<ScenarioResult>),
    /// Every scenario ended.
    RunFinished,
}

/// A consumer of events.
pub trait Reporter {
    /// Called for each event, in order.
    fn event(&mut self, event: &Event);
}
