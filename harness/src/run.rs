//! `dangle run`: the command line of the library runner ([`crate::suite::runner`])
//! and its reporters. The only place `dangle run` prints from.

use std::path::PathBuf;
use std::time::Duration;

use crate::exit::{Status, print_error};
use crate::prepare::KernelSelect;
use crate::suite::catalog::{load_plans, suite_names};
use crate::suite::events::{Fanout, Reporter};
use crate::suite::load::Plan;
use crate::suite::reporters::{ArtifactsReporter, JsonReporter, JunitReporter, TerminalReporter};
use crate::suite::runner::{self, QemuPlatform, Replay, RunOptions};
use crate::vm::accel::AccelChoice;

/// Run hot-unplug suites.
///
/// Without SUITE, runs the smoke suite on the default kernel (Debian's
/// linux-source-6.12 with dangle's config fragments), building what it
/// needs on first use.
///
/// Exit codes: 0 every scenario met its expectation; 1 some scenario did
/// not; 2 bad input (suite file, flags); 3 infrastructure failure (QEMU
/// missing, kernel build failed, VM did not boot).
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Suite files, or names of the suites shipped in suites/ (smoke,
    /// hotplug, known-bugs).
    #[arg(value_name = "SUITE")]
    pub suites: Vec<String>,
    /// Only run the scenarios with these names (repeatable).
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
    #[command(flatten)]
    pub kernel: KernelSelect,
    /// Seed of every schedule (default: time-based, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Unplug cycles per scenario, overriding the suite.
    #[arg(long, conflicts_with = "duration")]
    pub cycles: Option<u32>,
    /// Cycle for this long per scenario instead (e.g. 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Write results as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write results as JUnit XML here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Where consoles, logs and schedules go (default: ./dangle-artifacts/run-TIME).
    #[arg(long, value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
    /// Repeat the seed and schedules recorded in an earlier run's artifacts.
    #[arg(long, value_name = "DIR")]
    pub replay: Option<PathBuf>,
    /// Accelerator: auto uses KVM only if a probe VM boots.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
}

fn print_list(plans: &[Plan]) {
    for p in plans {
        println!(
            "{:<28} {:<14} {}",
            p.name(),
            p.scenario
                .unplug
                .as_ref()
                .map_or("-".into(), |u| u.method.to_string()),
            crate::suite::outcome::describe(&p.scenario.expect)
        );
    }
}

/// Runs `dangle run`: wires the arguments to the library runner and its
/// reporters.
pub fn run(args: RunArgs) -> Status {
    let plans = match load_plans(&args.suites, &args.only) {
        Ok(p) => p,
        Err(e) => return crate::exit::fail(&e),
    };
    if args.list {
        print_list(&plans);
        return Status::Ok;
    }
    let replay = match args.replay.as_deref().map(Replay::read).transpose() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dangle run: --replay is not a usable run directory");
            return crate::exit::fail(&e);
        }
    };
    let seed = replay
        .as_ref()
        .map(|r| r.seed)
        .or(args.seed)
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    let mut opts = RunOptions::new(
        seed,
        args.artifacts
            .clone()
            .unwrap_or_else(|| crate::paths::default_artifacts("run")),
    );
    opts.cycles = args.cycles;
    opts.duration = args.duration;
    opts.replay = replay;
    let mut platform = QemuPlatform {
        kernel: &args.kernel,
        accel: args.accel,
    };
    let mut term = TerminalReporter::new();
    let mut json = args.json.clone().map(JsonReporter::to_file);
    let mut junit = args.junit.clone().map(JunitReporter::to_file);
    let mut files = ArtifactsReporter::default();
    let mut all = Fanout(vec![&mut term, &mut files]);
    if let Some(j) = json.as_mut() {
        all.0.push(j);
    }
    if let Some(j) = junit.as_mut() {
        all.0.push(j);
    }
    let summary = runner::run(
        &plans,
        &suite_names(&args.suites),
        &mut platform,
        &opts,
        &mut all,
    );
    let unwritten = all.errors();
    for e in &unwritten {
        print_error(e);
    }
    match summary {
        Err(e) => crate::exit::fail(&e),
        Ok(_) if !unwritten.is_empty() => Status::Infrastructure,
        Ok(s) => s.status(),
    }
}
