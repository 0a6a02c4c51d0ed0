//! The command line of `dangle bisect`: arguments and their checks, one
//! line per tested commit, the final table, the JSON file and the exit
//! code. The only place bisect prints from.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::exit::{Status, chain, status_of};
use crate::prepare::KernelSelect;
use crate::suite::catalog::load_plans;
use crate::suite::events::{Event, Reporter};
use crate::suite::reporters::ArtifactsReporter;
use crate::vm::accel::AccelChoice;

use super::{
    BisectEvent, BisectOptions, Bisection, BuildOutcome, Conclusion, Direction, Mark, Observer,
    QemuSteps, Role, Step, StepRunner, bisect,
};

/// Suites searched by `--title` when no `--suite` is given.
pub const DEFAULT_SUITES: [&str; 2] = ["smoke", "known-bugs"];

/// Exit codes of bisect, printed at the end of `--help`.
pub const BISECT_EXIT_CODES: &str = "Exit codes:
  0  the first bad (with --fix: first fixed) commit was found
  1  no single commit: skipped commits hide it, or an endpoint is wrong
     (GOOD shows the finding or BAD does not; reversed with --fix)
  2  bad input: not a clean git tree, unknown revision, flags, suite
  3  infrastructure failure (QEMU, a run that could not tell, git)";

/// Find the commit of a kernel git tree where a finding appears, or with
/// --fix where it disappears.
///
/// Drives `git bisect` in the tree one step at a time: each commit is
/// built with the kernel cache (one object tree for the tree, so a step is
/// an incremental build, and ccache shared across steps), the scenarios
/// run N times with seeds SEED..SEED+N-1, and the commit is marked bad when
/// the finding shows in any run, good when it never does, skip when the
/// build fails. Both endpoints are checked first. The tree must be clean;
/// it is left at its original HEAD with `git bisect reset`.
///
/// With --fix, --good is an older revision that still shows the finding
/// and --bad a newer one where it is gone: the answer is the first commit
/// without it.
#[derive(Debug, clap::Args)]
pub struct BisectArgs {
    /// The kernel git tree to bisect (must be clean).
    #[arg(long, value_name = "GIT_TREE")]
    pub kernel_src: PathBuf,
    /// The older revision (without the finding; with --fix, with it).
    #[arg(long, value_name = "REV")]
    pub good: String,
    /// The newer revision (with the finding; with --fix, without it).
    #[arg(long, value_name = "REV")]
    pub bad: String,
    /// The scenario to run, as SUITE:NAME.
    #[arg(
        long,
        value_name = "SUITE:NAME",
        required_unless_present = "title",
        conflicts_with = "suites"
    )]
    pub scenario: Option<String>,
    /// Only findings whose title matches REGEX count (default with
    /// --scenario: any finding).
    #[arg(long, value_name = "REGEX")]
    pub title: Option<regex::Regex>,
    /// Suites whose every scenario runs with --title (default: smoke,
    /// known-bugs).
    #[arg(long = "suite", value_name = "SUITE")]
    pub suites: Vec<String>,
    /// Runs per commit.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub runs: u32,
    /// Seed of run 0; run i uses SEED + i at every commit.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Fix bisection: look for the first commit where the finding is gone.
    #[arg(long)]
    pub fix: bool,
    /// A config fragment or SYMBOL=value for every build; repeatable.
    #[arg(long = "config-add", value_name = "FRAGMENT|SYMBOL=VAL")]
    pub config_add: Vec<String>,
    /// Where consoles and logs go (default: ./dangle-artifacts/bisect-TIME).
    #[arg(long, value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
    /// Write the steps and the answer as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Accelerator: auto uses KVM only if a probe VM boots.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
}

/// Arguments that point at nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// `--scenario` without a colon.
    #[error("--scenario {0}: expected SUITE:NAME, e.g. smoke:gpio-unplug-qmp")]
    Scenario(String),
    /// `--runs 0`.
    #[error("--runs must be at least 1")]
    ZeroRuns,
}

/// Checked arguments: what [`execute`] needs.
#[derive(Debug)]
pub struct Config {
    /// The tree.
    pub tree: PathBuf,
    /// Suites to load.
    pub suites: Vec<String>,
    /// Scenario names to keep (empty: all).
    pub only: Vec<String>,
    /// Endpoints, direction, runs, seed, title.
    pub options: BisectOptions,
    /// The kernel flags of every build.
    pub kernel: KernelSelect,
    /// Artifacts root.
    pub artifacts: PathBuf,
    /// `--json`.
    pub json: Option<PathBuf>,
    /// Accelerator.
    pub accel: AccelChoice,
}

impl TryFrom<BisectArgs> for Config {
    type Error = ArgsError;

    fn try_from(a: BisectArgs) -> Result<Self, ArgsError> {
        if a.runs == 0 {
            return Err(ArgsError::ZeroRuns);
        }
        let (suites, only) = match &a.scenario {
            Some(s) => match s.split_once(':') {
                Some((suite, name)) if !suite.is_empty() && !name.is_empty() => {
                    (vec![suite.to_owned()], vec![name.to_owned()])
                }
                _ => return Err(ArgsError::Scenario(s.clone())),
            },
            None if a.suites.is_empty() => (DEFAULT_SUITES.map(String::from).to_vec(), Vec::new()),
            None => (a.suites.clone(), Vec::new()),
        };
        let artifacts = a
            .artifacts
            .unwrap_or_else(|| crate::paths::default_artifacts("bisect"));
        Ok(Config {
            kernel: KernelSelect {
                kernel_src: Some(a.kernel_src.clone()),
                config_add: a.config_add,
                ..KernelSelect::default()
            },
            tree: a.kernel_src,
            suites,
            only,
            options: BisectOptions {
                good: a.good,
                bad: a.bad,
                direction: if a.fix {
                    Direction::Fix
                } else {
                    Direction::Cause
                },
                runs: a.runs,
                seed: a.seed,
                title: a.title,
                cancel: Arc::default(),
            },
            artifacts,
            json: a.json,
            accel: a.accel,
        })
    }
}

/// The word for a mark in a direction: git's term.
fn mark_word(d: Direction, m: Mark) -> &'static str {
    let (old, new) = d.terms();
    match m {
        Mark::Old => old,
        Mark::New => new,
        Mark::Skip => "skip",
    }
}

fn role_word(r: Role) -> &'static str {
    match r {
        Role::Good => "--good",
        Role::Bad => "--bad",
        Role::Step => "step",
    }
}

/// One step as one line (without the role).
pub fn step_line(d: Direction, s: &Step) -> String {
    let build = match &s.build {
        BuildOutcome::Built { cached: true, .. } => {
            format!("build {:.0}s (kernel cache)", s.build_secs)
        }
        BuildOutcome::Built {
            ccache: Some(c), ..
        } => format!(
            "build {:.0}s (ccache {} hits, {} misses)",
            s.build_secs, c.hits, c.misses
        ),
        BuildOutcome::Built { .. } => format!("build {:.0}s", s.build_secs),
        BuildOutcome::Failed { reason } => {
            format!("build FAILED after {:.0}s: {reason}", s.build_secs)
        }
    };
    let mut line = format!("{} {}: {build}", s.commit.short, s.commit.subject);
    if matches!(s.build, BuildOutcome::Built { .. }) {
        line.push_str(&format!(", seen {}/{}", s.seen, s.runs));
        if !s.titles.is_empty() {
            line.push_str(&format!(" ({})", s.titles.join("; ")));
        }
    }
    if let Some(m) = s.mark {
        line.push_str(&format!(" -> {}", mark_word(d, m)));
    }
    line
}

/// The final table and answer.
pub fn table(b: &Bisection) -> String {
    let mut out = String::new();
    let what = match b.direction {
        Direction::Cause => "cause bisection (first commit with the finding)",
        Direction::Fix => "fix bisection (first commit without the finding)",
    };
    out.push_str(&format!(
        "{what}, {} run(s) per commit, {}..{}\n",
        b.runs, b.good.short, b.bad.short
    ));
    out.push_str(&format!(
        "{:<6} {:<12} {:>8} {:>6} {:<8} subject / titles\n",
        "role", "commit", "build s", "seen", "mark"
    ));
    for s in &b.steps {
        let built = matches!(s.build, BuildOutcome::Built { .. });
        out.push_str(&format!(
            "{:<6} {:<12} {:>8.0} {:>6} {:<8} {}\n",
            role_word(s.role),
            s.commit.short,
            s.build_secs,
            if built {
                format!("{}/{}", s.seen, s.runs)
            } else {
                "build-".to_owned()
            },
            s.mark.map_or("-", |m| mark_word(b.direction, m)),
            s.commit.subject
        ));
        if !s.titles.is_empty() {
            out.push_str(&format!("{:>44}{}\n", "", s.titles.join("; ")));
        }
    }
    let (_, new) = b.direction.terms();
    match &b.conclusion {
        Conclusion::Found { commit } => out.push_str(&format!(
            "first {new} commit: {} {}\n",
            commit.hash, commit.subject
        )),
        Conclusion::Ambiguous { candidates } => {
            out.push_str(&format!(
                "no single first {new} commit: skipped commits leave {} candidates:\n",
                candidates.len()
            ));
            for c in candidates {
                out.push_str(&format!("  {} {}\n", c.short, c.subject));
            }
        }
        Conclusion::WrongEndpoint(w) => out.push_str(&format!(
            "cannot bisect: {} {}: {}\n",
            role_word(w.which),
            match w.which {
                Role::Good => &b.good.short,
                _ => &b.bad.short,
            },
            w.reason
        )),
    }
    out
}

/// One line per tested commit on the terminal; runner events to the
/// artifacts.
struct Progress<'w> {
    err: &'w mut dyn Write,
    direction: Direction,
}

impl Observer for Progress<'_> {
    fn event(&mut self, e: &BisectEvent<'_>) {
        let line = match e {
            BisectEvent::Testing { role, commit } => format!(
                "bisect: {} {} {}: building",
                role_word(*role),
                commit.short,
                commit.subject
            ),
            BisectEvent::Tested(s) => {
                format!(
                    "bisect: {} {}",
                    role_word(s.role),
                    step_line(self.direction, s)
                )
            }
        };
        let _ = writeln!(self.err, "{line}");
    }
}

/// Runner events: each scenario's files, and its findings on the terminal.
struct Files {
    files: ArtifactsReporter,
}

impl Reporter for Files {
    fn event(&mut self, event: &Event) {
        self.files.event(event);
        if let Event::Finding { scenario, finding } = event {
            eprintln!("  {scenario}: finding: {}", finding.title);
        }
    }

    fn errors(&mut self) -> Vec<crate::suite::events::ReporterError> {
        self.files.errors()
    }
}

fn error(err: &mut dyn Write, e: &(dyn std::error::Error + 'static)) -> Status {
    let _ = writeln!(err, "dangle: error: {:#}", chain(e));
    status_of(e)
}

/// Runs a checked bisection with `steps`: progress to `err`, the table to
/// `out`, then the JSON file. Returns the exit status and the bisection
/// when it ran.
pub fn execute(
    config: &Config,
    steps: &mut dyn StepRunner,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> (Status, Option<Bisection>) {
    let mut progress = Progress {
        err,
        direction: config.options.direction,
    };
    let b = match bisect(&config.tree, &config.options, steps, &mut progress) {
        Ok(b) => b,
        Err(e) => return (error(progress.err, &e), None),
    };
    let err = progress.err;
    let _ = out.write_all(table(&b).as_bytes());
    let mut status = b.status();
    if let Some(path) = &config.json {
        let text = serde_json::to_string_pretty(&b).unwrap_or_default();
        if let Err(source) = std::fs::write(path, text) {
            let e = crate::suite::events::ReporterError {
                path: path.clone(),
                source,
            };
            error(err, &e);
            status = Status::Infrastructure;
        }
    }
    (status, Some(b))
}

static SIGINT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    SIGINT.store(true, Ordering::SeqCst);
}

/// Ctrl-C sets `cancel` (through a flag a watcher thread copies), so the
/// bisection stops at the next check and still runs `git bisect reset`.
fn forward_sigint(cancel: Arc<AtomicBool>) {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(on_sigint),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe.
    if unsafe { sigaction(Signal::SIGINT, &action) }.is_err() {
        return;
    }
    std::thread::spawn(move || {
        while !SIGINT.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        cancel.store(true, Ordering::SeqCst);
    });
}

/// Runs `dangle bisect`.
pub fn run(args: BisectArgs) -> Status {
    let config = match Config::try_from(args) {
        Ok(c) => c,
        Err(e) => return crate::exit::fail(&e),
    };
    let plans = match load_plans(&config.suites, &config.only) {
        Ok(p) => p,
        Err(e) => return crate::exit::fail(&e),
    };
    forward_sigint(Arc::clone(&config.options.cancel));
    let mut files = Files {
        files: ArtifactsReporter::default(),
    };
    let mut steps = QemuSteps::new(
        config.kernel.clone(),
        config.accel,
        &plans,
        &config.suites,
        config.artifacts.clone(),
        &mut files,
    );
    steps.cancel = Arc::clone(&config.options.cancel);
    let (mut status, _) = execute(
        &config,
        &mut steps,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr(),
    );
    drop(steps);
    for e in &files.errors() {
        crate::exit::fail(e);
        status = Status::Infrastructure;
    }
    status
}
