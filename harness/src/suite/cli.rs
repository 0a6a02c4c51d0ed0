//! `dangle run`: run hot-unplug suites and report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::events::{Fanout, Reporter};
use super::load::{self, Plan};
use super::reporters::{ArtifactsReporter, JsonReporter, JunitReporter, TerminalReporter};
use super::runner::{self, QemuPlatform, Replay, RunOptions};
use crate::exit::{Status, print_error};
use crate::prepare::KernelSelect;
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

/// The directory with the shipped suites: `DANGLE_SUITES_DIR`, else the
/// `suites/` of this checkout.
pub fn suites_dir() -> PathBuf {
    std::env::var_os("DANGLE_SUITES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../suites"))
}

/// A suite argument: a file, or a shipped suite's name.
pub fn suite_path(arg: &str) -> PathBuf {
    let p = PathBuf::from(arg);
    if p.exists() || arg.contains('/') || arg.ends_with(".yaml") {
        p
    } else {
        suites_dir().join(format!("{arg}.yaml"))
    }
}

/// Why the suites of a command line cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A suite file is unreadable or invalid.
    #[error("suite")]
    Suite(#[from] load::SuiteError),
    /// `--only` names a scenario no suite has.
    #[error("--only {name}: no such scenario (known: {known})")]
    UnknownScenario {
        /// The name given.
        name: String,
        /// The names there are, comma-separated.
        known: String,
    },
}

/// Loads suites and applies `--only`.
pub fn load_plans(suites: &[String], only: &[String]) -> Result<Vec<Plan>, LoadError> {
    let mut plans = Vec::new();
    for s in &suite_names(suites) {
        plans.extend(load::load_file(&suite_path(s))?);
    }
    if !only.is_empty() {
        for o in only {
            if !plans.iter().any(|p| p.name() == o) {
                let known: Vec<&str> = plans.iter().map(Plan::name).collect();
                return Err(LoadError::UnknownScenario {
                    name: o.clone(),
                    known: known.join(", "),
                });
            }
        }
        plans.retain(|p| only.iter().any(|o| o == p.name()));
    }
    Ok(plans)
}

/// The suites asked for; `smoke` when none.
fn suite_names(suites: &[String]) -> Vec<String> {
    if suites.is_empty() {
        vec!["smoke".into()]
    } else {
        suites.to_vec()
    }
}

fn default_artifacts() -> PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("dangle-artifacts").join(format!("run-{t}"))
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
        args.artifacts.clone().unwrap_or_else(default_artifacts),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_plans_shipped_smoke_suite_loads() {
        let plans = load_plans(&[], &[]).unwrap();
        assert!(plans.iter().any(|p| p.name() == "lkdtm-use-after-free"));
    }

    #[test]
    fn load_plans_only_unknown_name_is_an_error() {
        let e = load_plans(&["smoke".into()], &["nope".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no such scenario") && e.contains("devices-work"),
            "{e}"
        );
    }

    #[test]
    fn load_plans_every_shipped_suite_is_valid() {
        for entry in std::fs::read_dir(suites_dir()).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "yaml") {
                load::load_file(&p)
                    .unwrap_or_else(|e| panic!("{}", crate::exit::chain(&e).to_string()));
            }
        }
    }
}
