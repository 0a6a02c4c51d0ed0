//! The command line of `dangle repro`: arguments, the ranking and progress
//! on the terminal, the bundle, the JSON file and the exit code. The only
//! place repro prints from.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::exit::{Status, chain, status_of};
use crate::prepare::KernelSelect;
use crate::suite::catalog::{load_plans, suites_dir};
use crate::suite::events::{Event, Reporter};
use crate::suite::outcome::Outcome;
use crate::suite::reporters::ArtifactsReporter;
use crate::vm::accel::AccelChoice;

use super::{Observer, Repro, ReproEvent, ReproOptions, Target, bundle, rank, read_report, repro};

/// Exit codes of repro, printed at the end of `--help`.
pub const REPRO_EXIT_CODES: &str = "Exit codes:
  0  reproduced (same title, or same guilty frame)
  1  not reproduced within the budget, or no scenario covers the report
  2  bad input: a report with no crash in it, suite, flags
  3  infrastructure failure (build, QEMU, boot) in every attempt";

/// Make a reported crash happen here: rank the scenarios of the suites
/// against the report, run the best ones with fresh seeds until the same
/// title (or the same guilty frame) appears, and write a bundle that
/// replays it.
///
/// REPORT is a console excerpt, a syzbot-style email (a `Subject:` title,
/// then the log), or a dangle JSON finding (or a `result.json`); `-` reads
/// stdin.
#[derive(Debug, clap::Args)]
pub struct ReproArgs {
    /// The report file, or `-` for stdin.
    #[arg(value_name = "REPORT")]
    pub report: String,
    /// Wall-clock budget for the attempts (e.g. 10m, 1h).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub budget: Duration,
    /// Suite files or names of shipped suites (default: every suite in
    /// suites/).
    #[arg(long = "suite", value_name = "SUITE")]
    pub suites: Vec<String>,
    /// How many of the best-ranked scenarios to run, round robin.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub candidates: usize,
    /// Seed of the first round; round i uses SEED + i.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where attempts and the bundle go (default: ./dangle-artifacts/repro-TIME).
    #[arg(long, value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
    /// Write what repro did as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub kernel: KernelSelect,
    /// Accelerator: auto uses KVM only if a probe VM boots.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
}

/// Bad arguments.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// `--candidates 0`.
    #[error("--candidates must be at least 1")]
    ZeroCandidates,
    /// No suite can be listed.
    #[error("cannot list the shipped suites in {path}")]
    Suites {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Checked arguments.
#[derive(Debug)]
pub struct Config {
    /// The REPORT argument.
    pub report: String,
    /// Suites to rank.
    pub suites: Vec<String>,
    /// The kernel flags.
    pub kernel: KernelSelect,
    /// Accelerator.
    pub accel: AccelChoice,
    /// Candidates, seed, budget, artifacts.
    pub options: ReproOptions,
    /// `--json`.
    pub json: Option<PathBuf>,
}

/// Every shipped suite, by file, in name order.
pub fn shipped_suites() -> Result<Vec<String>, ArgsError> {
    let dir = suites_dir();
    let entries = std::fs::read_dir(&dir).map_err(|source| ArgsError::Suites {
        path: dir.clone(),
        source,
    })?;
    let mut out: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    out.sort();
    Ok(out)
}

impl TryFrom<ReproArgs> for Config {
    type Error = ArgsError;

    fn try_from(a: ReproArgs) -> Result<Self, ArgsError> {
        if a.candidates == 0 {
            return Err(ArgsError::ZeroCandidates);
        }
        let seed = a.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(1)
        });
        let artifacts = a
            .artifacts
            .unwrap_or_else(|| PathBuf::from("dangle-artifacts").join(format!("repro-{seed}")));
        let mut options = ReproOptions::new(seed, artifacts);
        options.candidates = a.candidates;
        options.budget = a.budget;
        Ok(Config {
            report: a.report,
            suites: if a.suites.is_empty() {
                shipped_suites()?
            } else {
                a.suites
            },
            kernel: a.kernel,
            accel: a.accel,
            options,
            json: a.json,
        })
    }
}

pub use crate::suite::runner::{Platforms, Qemu};

struct Progress<'w> {
    err: &'w mut dyn Write,
    files: ArtifactsReporter,
}

impl Observer for Progress<'_> {
    fn event(&mut self, e: &ReproEvent<'_>) {
        let line = match e {
            ReproEvent::AttemptStarted {
                number,
                candidate,
                seed,
                elapsed,
            } => Some(format!(
                "[attempt {number}, {}s] {}:{} seed {seed}",
                elapsed.as_secs(),
                candidate.suite,
                candidate.scenario
            )),
            ReproEvent::Runner { event } => {
                self.files.event(event);
                match event {
                    Event::Preparing { what } => Some(format!("  preparing {what}")),
                    Event::Finding { finding, .. } => Some(format!("  finding: {}", finding.title)),
                    Event::ScenarioFinished { result, .. } => match &result.outcome {
                        Outcome::Infrastructure { error } => {
                            Some(format!("  infrastructure failure: {error}"))
                        }
                        _ => None,
                    },
                    _ => None,
                }
            }
            ReproEvent::AttemptFinished { attempt } => Some(if attempt.titles.is_empty() {
                "  not reproduced: no finding".to_owned()
            } else {
                format!("  not reproduced: saw {}", attempt.titles.join("; "))
            }),
            ReproEvent::BudgetSpent { elapsed } => {
                Some(format!("budget spent after {}s", elapsed.as_secs()))
            }
        };
        if let Some(l) = line {
            let _ = writeln!(self.err, "{l}");
        }
    }
}

fn error(err: &mut dyn Write, e: &(dyn std::error::Error + 'static)) -> Status {
    let _ = writeln!(err, "dangle: error: {:#}", chain(e));
    status_of(e)
}

fn print_target(out: &mut dyn Write, t: &Target) {
    let _ = writeln!(out, "report: {}", t.title);
    if !t.kind.is_empty() {
        let _ = writeln!(out, "  type: {}", t.kind);
    }
    if !t.frame.is_empty() {
        let _ = writeln!(out, "  guilty frame: {}", t.frame);
    }
    if !t.functions.is_empty() {
        let n = t.functions.len().min(8);
        let _ = writeln!(out, "  stack: {}", t.functions[..n].join(" <- "));
    }
    let subs: Vec<String> = t.subsystems.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        out,
        "  subsystems: {}",
        if subs.is_empty() {
            "none dangle knows".to_owned()
        } else {
            subs.join(", ")
        }
    );
}

/// Reads the REPORT argument (`-` is `input`).
fn read_input(report: &str, input: &mut dyn Read) -> Result<Target, super::InputError> {
    let mut bytes = Vec::new();
    let r = if report == "-" {
        input.read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::read(report).map(|b| bytes = b)
    };
    r.map_err(|source| super::InputError::Read {
        name: report.to_owned(),
        source,
    })?;
    read_report(&bytes, report)
}

/// Runs a checked repro: the report from `input` when REPORT is `-`,
/// ranking and reproducer to `out`, progress to `err`. Returns the status
/// and, when it got that far, what repro did.
pub fn execute(
    config: &Config,
    platforms: &dyn Platforms,
    input: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> (Status, Option<Repro>) {
    let target = match read_input(&config.report, input) {
        Ok(t) => t,
        Err(e) => return (error(err, &e), None),
    };
    let plans = match load_plans(&config.suites, &[]) {
        Ok(p) => p,
        Err(e) => return (error(err, &e), None),
    };
    print_target(out, &target);
    let ranking = rank::rank(&target, &plans);
    if ranking.is_empty() {
        let _ = writeln!(
            out,
            "no scenario of {} covers this report (subsystems: {}): nothing to run",
            config.suites.join(", "),
            if target.subsystems.is_empty() {
                "none dangle knows".to_owned()
            } else {
                target
                    .subsystems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        let r = Repro {
            target,
            ranking,
            attempts: Vec::new(),
            reproduced: None,
            interrupted: false,
        };
        let status = write_json(config, &r, err).unwrap_or(Status::Findings);
        return (status, Some(r));
    }
    let _ = writeln!(out, "ranking:");
    for (i, c) in ranking.iter().enumerate() {
        let mark = if i < config.options.candidates {
            "*"
        } else {
            " "
        };
        let _ = writeln!(
            out,
            "{mark} {}. {}:{} (score {})",
            i + 1,
            c.suite,
            c.scenario,
            c.score
        );
        for r in &c.reasons {
            let _ = writeln!(out, "       {r}");
        }
    }
    let mut platform = platforms.platform(&config.kernel);
    let mut progress = Progress {
        err,
        files: ArtifactsReporter::default(),
    };
    let r = repro(
        &target,
        &plans,
        &ranking,
        platform.as_mut(),
        &config.options,
        &mut progress,
    );
    let unwritten = progress.files.errors();
    let err = progress.err;
    let r = match r {
        Ok(r) => r,
        Err(e) => return (error(err, &e), None),
    };
    let mut status = match &r.reproduced {
        Some(rep) => {
            let plan = plans
                .iter()
                .find(|p| p.suite == rep.attempt.suite && p.name() == rep.attempt.scenario)
                .expect("the reproducing plan is one of the plans");
            let dir = config.options.artifacts.join("bundle");
            let _ = writeln!(out, "{}", rep.how);
            let _ = writeln!(out, "reproducer:");
            let _ = writeln!(
                out,
                "  suite:    {} ({})",
                rep.attempt.suite,
                rep.attempt.suite_file.display()
            );
            let _ = writeln!(out, "  scenario: {}", rep.attempt.scenario);
            let _ = writeln!(out, "  seed:     {}", rep.attempt.seed);
            let _ = writeln!(out, "  kernel:   {}", rep.kernel.describe());
            match &rep.schedule {
                Some(s) => {
                    let _ = writeln!(out, "  schedule: {}", s.display());
                }
                None => {
                    let _ = writeln!(out, "  schedule: none (the scenario never reached a cycle)");
                }
            }
            let _ = writeln!(
                out,
                "  replay:   dangle run {} --only {} --replay {}",
                rep.attempt.suite_file.display(),
                rep.attempt.scenario,
                rep.attempt.dir.display()
            );
            match bundle::write(&dir, plan, rep) {
                Ok(()) => {
                    let _ = writeln!(
                        out,
                        "  bundle:   {} ({})",
                        dir.display(),
                        bundle::command(&dir)
                    );
                    Status::Ok
                }
                Err(e) => error(err, &e),
            }
        }
        None => {
            let _ = writeln!(
                out,
                "not reproduced: {} attempt(s) within the budget of {}s",
                r.attempts.len(),
                config.options.budget.as_secs()
            );
            if r.interrupted
                || (!r.attempts.is_empty() && r.attempts.iter().all(|a| a.infrastructure.is_some()))
            {
                Status::Infrastructure
            } else {
                Status::Findings
            }
        }
    };
    if let Some(s) = write_json(config, &r, err) {
        status = s;
    }
    for e in &unwritten {
        error(err, e);
        status = Status::Infrastructure;
    }
    (status, Some(r))
}

/// Writes `--json`; `Some(Infrastructure)` when that fails.
fn write_json(config: &Config, r: &Repro, err: &mut dyn Write) -> Option<Status> {
    let path = config.json.as_ref()?;
    let text = serde_json::to_string_pretty(r).unwrap_or_default();
    match std::fs::write(path, text) {
        Ok(()) => None,
        Err(source) => {
            let e = crate::suite::events::ReporterError {
                path: path.clone(),
                source,
            };
            Some(error(err, &e))
        }
    }
}

/// Runs `dangle repro`.
pub fn run(args: ReproArgs) -> Status {
    let config = match Config::try_from(args) {
        Ok(c) => c,
        Err(e) => return crate::exit::fail(&e),
    };
    let (status, _) = execute(
        &config,
        &Qemu(config.accel),
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr(),
    );
    status
}
