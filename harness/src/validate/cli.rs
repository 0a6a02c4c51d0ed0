//! The command line of `dangle validate`: arguments, their checks
//! ([`Config`]), progress and tables on the terminal, the JSON and JUnit
//! files, and the exit code. The only place validate prints from.

use std::io::Write;
use std::path::PathBuf;

use crate::exit::{Status, chain, status_of};
use crate::kernel::PatchError;
use crate::kernel::patch::resolve_series;
use crate::prepare::KernelSelect;
use crate::suite::catalog::load_plans;
use crate::suite::events::{Event, Reporter};
use crate::suite::outcome::Outcome;
use crate::suite::reporters::ArtifactsReporter;
use crate::vm::accel::AccelChoice;

use super::{Observer, Runs, ValidateEvent, ValidateOptions, Validation, report, validate};

/// The suites validate runs when none is given.
pub const DEFAULT_SUITES: [&str; 2] = ["smoke", "known-bugs"];

/// The seed when none is given. Fixed rather than time-based, so that a
/// second candidate runs the same schedules as the first and the base
/// results of the first come from the cache; pass `--seed` for others.
pub const DEFAULT_SEED: u64 = 1;

/// Exit codes of validate, printed at the end of `--help`.
pub const VALIDATE_EXIT_CODES: &str = "Exit codes:
  0  no regression (and with --expect-fixed, a matching finding is fixed)
  1  a regression, or --expect-fixed matched no fixed finding
  2  bad input: patch, suite, flags
  3  infrastructure failure on either kernel (build, QEMU, boot)";

/// Check a patch: run scenarios on the base kernel and on the base plus
/// PATCHes, with the same seeds, and classify every finding as fixed,
/// regression, unchanged or inconclusive.
///
/// The base is the kernel the usual flags select (the default, --kernel-src,
/// with its own --patch and --config-add); the candidate is the same with
/// the PATCHes applied after its own. A finding seen on one side only is
/// fixed or a regression when Fisher's exact test (one-sided, alpha 0.05)
/// says "never" on the other side is unlikely by chance: 3/3 against 0/3
/// is enough, 1/3 against 0/3 is not. Base results are cached, so a second
/// candidate against the same base runs only the candidate.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The change under test: patch files or `git format-patch` directories.
    #[arg(value_name = "PATCH", required = true)]
    pub change: Vec<PathBuf>,
    /// Suite files or names of shipped suites (default: smoke, known-bugs).
    #[arg(long = "suite", value_name = "SUITE")]
    pub suites: Vec<String>,
    /// Only run the scenarios with these names (repeatable).
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
    /// Runs on each kernel, or `auto`: add runs while any verdict is
    /// inconclusive, up to --max-runs.
    #[arg(long, value_name = "N|auto", default_value = "3", value_parser = parse_runs)]
    pub runs: RunsArg,
    /// The cap of --runs auto.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_runs: u32,
    /// Exit 1 unless a finding whose title matches REGEX is fixed.
    #[arg(long, value_name = "REGEX")]
    pub expect_fixed: Option<regex::Regex>,
    /// Seed of run 0; run i uses SEED + i on both kernels.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Write the comparison as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the comparison as JUnit XML here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Where consoles and logs go (default: ./dangle-artifacts/validate-TIME).
    #[arg(long, value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
    #[command(flatten)]
    pub kernel: KernelSelect,
    /// Accelerator: auto uses KVM only if a probe VM boots.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
}

/// `--runs`: a count or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunsArg {
    /// This many.
    Count(u32),
    /// Until settled.
    Auto,
}

/// `--runs` is neither a positive count nor `auto`.
#[derive(Debug, thiserror::Error)]
#[error("expected a number of runs (1 or more) or `auto`")]
pub struct RunsParseError;

fn parse_runs(s: &str) -> Result<RunsArg, RunsParseError> {
    match s {
        "auto" => Ok(RunsArg::Auto),
        n => match n.parse::<u32>() {
            Ok(n) if n > 0 => Ok(RunsArg::Count(n)),
            _ => Err(RunsParseError),
        },
    }
}

/// Arguments that cannot be used together or point at nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// A prebuilt kernel has no source to apply PATCHes to.
    #[error("--kernel selects a prebuilt kernel, which cannot be patched: use --kernel-src")]
    Prebuilt,
    /// A PATCH cannot be read.
    #[error("the change under test")]
    Patches(#[source] PatchError),
    /// `--max-runs 0`.
    #[error("--max-runs must be at least 1")]
    ZeroMaxRuns,
}

/// Checked arguments: what [`execute`] needs.
#[derive(Debug)]
pub struct Config {
    /// Suites to load.
    pub suites: Vec<String>,
    /// `--only`.
    pub only: Vec<String>,
    /// The base kernel's flags.
    pub base: KernelSelect,
    /// The same with the PATCHes appended.
    pub candidate: KernelSelect,
    /// Accelerator.
    pub accel: AccelChoice,
    /// Runs, seed, artifacts, cache.
    pub options: ValidateOptions,
    /// `--expect-fixed`.
    pub expect_fixed: Option<regex::Regex>,
    /// `--json`.
    pub json: Option<PathBuf>,
    /// `--junit`.
    pub junit: Option<PathBuf>,
}

impl TryFrom<ValidateArgs> for Config {
    type Error = ArgsError;

    fn try_from(a: ValidateArgs) -> Result<Self, ArgsError> {
        if a.kernel.kernel.is_some() {
            return Err(ArgsError::Prebuilt);
        }
        if a.max_runs == 0 {
            return Err(ArgsError::ZeroMaxRuns);
        }
        // Fail on an unreadable PATCH now, not after the base kernel built.
        resolve_series(&a.change).map_err(ArgsError::Patches)?;
        let mut candidate = a.kernel.clone();
        candidate.patches.extend(a.change.iter().cloned());
        let mut options = ValidateOptions::new(
            a.seed,
            a.artifacts
                .unwrap_or_else(|| crate::paths::default_artifacts("validate")),
        );
        options.runs = match a.runs {
            RunsArg::Count(n) => Runs::Fixed(n),
            RunsArg::Auto => Runs::Auto { max: a.max_runs },
        };
        options.cache = Some(crate::paths::cache_dir().join("validate"));
        Ok(Config {
            suites: if a.suites.is_empty() {
                DEFAULT_SUITES.map(String::from).to_vec()
            } else {
                a.suites
            },
            only: a.only,
            base: a.kernel,
            candidate,
            accel: a.accel,
            options,
            expect_fixed: a.expect_fixed,
            json: a.json,
            junit: a.junit,
        })
    }
}

pub use crate::suite::runner::{Platforms, Qemu};

/// Progress on the terminal, and each scenario's `result.json` in the
/// artifacts.
struct Progress<'w> {
    err: &'w mut dyn Write,
    files: ArtifactsReporter,
    runs: Runs,
}

impl Observer for Progress<'_> {
    fn event(&mut self, e: &ValidateEvent<'_>) {
        let line = match e {
            ValidateEvent::Prepared { side, kernel } => Some(format!(
                "validate: {} kernel {}",
                side.word(),
                kernel.describe()
            )),
            ValidateEvent::RunStarted {
                side,
                index,
                seed,
                cached,
                to_run,
            } => {
                let of = match self.runs {
                    Runs::Fixed(n) => n.to_string(),
                    Runs::Auto { max } => format!("auto, max {max}"),
                };
                let cached = if *cached > 0 {
                    format!(", {cached} from the base cache")
                } else {
                    String::new()
                };
                Some(format!(
                    "[run {}/{of}, {}, seed {seed}] {to_run} scenario(s) to run{cached}",
                    index + 1,
                    side.word()
                ))
            }
            ValidateEvent::Runner { side, event } => {
                self.files.event(event);
                match event {
                    Event::Finding { scenario, finding } => Some(format!(
                        "  {} {scenario}: finding: {}",
                        side.word(),
                        finding.title
                    )),
                    Event::ScenarioFinished { result, .. } => {
                        // Not "FAILED": a known bug that stops reproducing
                        // with the patch is what a fix looks like.
                        let what = match &result.outcome {
                            Outcome::Met => "expectation met".to_owned(),
                            Outcome::NotMet { reason } => format!("expectation not met: {reason}"),
                            Outcome::Infrastructure { error } => {
                                format!("infrastructure failure: {error}")
                            }
                        };
                        Some(format!("  {} {}: {what}", side.word(), result.scenario))
                    }
                    Event::Interrupted { reason } => {
                        Some(format!("  {}: interrupted: {reason}", side.word()))
                    }
                    _ => None,
                }
            }
            ValidateEvent::RoundFinished {
                runs,
                inconclusive,
                more,
            } => {
                let mut s = format!("after {runs} run(s) a side: ");
                if inconclusive.is_empty() {
                    s.push_str("every verdict settled");
                } else {
                    let list: Vec<String> = inconclusive
                        .iter()
                        .map(|r| {
                            let m = r
                                .verdict
                                .more_runs
                                .map_or("too rare".to_owned(), |m| format!("~{m} more"));
                            format!(
                                "{}: {} {} vs {} ({m})",
                                r.scenario, r.title, r.base, r.candidate
                            )
                        })
                        .collect();
                    s.push_str(&format!("{} inconclusive: {}", list.len(), list.join("; ")));
                }
                if *more {
                    s.push_str("; running again");
                } else if matches!(self.runs, Runs::Auto { .. }) && !inconclusive.is_empty() {
                    s.push_str("; stopping at --max-runs");
                }
                Some(s)
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

/// Runs a checked validation on `platforms`: progress to `err`, tables to
/// `out`, then the files. Returns the exit status and, when the
/// validation ran, what it found.
pub fn execute(
    config: &Config,
    platforms: &dyn Platforms,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> (Status, Option<Validation>) {
    let plans = match load_plans(&config.suites, &config.only) {
        Ok(p) => p,
        Err(e) => return (error(err, &e), None),
    };
    let mut base = platforms.platform(&config.base);
    let mut candidate = platforms.platform(&config.candidate);
    let mut progress = Progress {
        err,
        files: ArtifactsReporter::default(),
        runs: config.options.runs,
    };
    let v = validate(
        &plans,
        &config.suites,
        base.as_mut(),
        candidate.as_mut(),
        &config.options,
        &mut progress,
    );
    let unwritten = progress.files.errors();
    let err = progress.err;
    let v = match v {
        Ok(v) => v,
        Err(e) => return (error(err, &e), None),
    };
    let _ = out.write_all(report::table(&v).as_bytes());
    let re = config.expect_fixed.as_ref();
    if let Some(re) = re {
        let _ = writeln!(
            out,
            "--expect-fixed /{re}/: {}",
            if v.fixed_matches(re) {
                "a matching finding is fixed"
            } else {
                "no matching finding is fixed"
            }
        );
    }
    let mut status = v.status(re);
    let mut write = |path: &Option<PathBuf>, text: std::io::Result<String>| {
        let Some(path) = path else { return };
        let r = text.and_then(|t| std::fs::write(path, t));
        if let Err(source) = r {
            let e = crate::suite::events::ReporterError {
                path: path.clone(),
                source,
            };
            error(err, &e);
            status = Status::Infrastructure;
        }
    };
    write(
        &config.json,
        Ok(serde_json::to_string_pretty(&report::json(&v, re)).unwrap_or_default()),
    );
    write(
        &config.junit,
        report::junit(&v, re).map_err(std::io::Error::other),
    );
    for e in &unwritten {
        error(err, e);
        status = Status::Infrastructure;
    }
    (status, Some(v))
}

/// Runs `dangle validate`.
pub fn run(args: ValidateArgs) -> Status {
    let config = match Config::try_from(args) {
        Ok(c) => c,
        Err(e) => return crate::exit::fail(&e),
    };
    let (status, _) = execute(
        &config,
        &Qemu(config.accel),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr(),
    );
    status
}
