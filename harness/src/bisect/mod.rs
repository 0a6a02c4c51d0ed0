//! `dangle bisect`: find the commit of a kernel git tree where a finding
//! appears (cause bisection) or disappears (`--fix`, fix bisection).
//!
//! [`bisect`] drives `git bisect` itself, one step at a time, so that every
//! step's figures are ours:
//! 1. The tree must be a clean git work tree with no bisection in progress;
//!    GOOD must be an ancestor of BAD.
//! 2. `git bisect start` (with `--term-old=unfixed --term-new=fixed` for a
//!    fix bisection) records the original HEAD; a [`BisectGuard`] runs
//!    `git bisect reset` when the bisection ends, however it ends.
//! 3. Both endpoints are checked first: in a cause bisection GOOD must not
//!    show the finding and BAD must; in a fix bisection GOOD must show it
//!    and BAD must not. A wrong endpoint ends the bisection with
//!    [`Conclusion::WrongEndpoint`] before any bisection step.
//! 4. Each step builds the checked-out commit and runs the scenario N
//!    times through a [`StepRunner`] (the real one, [`QemuSteps`], uses
//!    [`prepare::bootable`] and [`runner::run`]), then marks the commit:
//!    the finding seen in any run marks it bad (cause) or unfixed (fix),
//!    never seen good (cause) or fixed (fix); a failed build marks it
//!    `skip`.
//! 5. git says when it is done: the first bad (or fixed) commit, or, when
//!    skipped commits hide it, the list of candidates.
//!
//! Nothing here prints: progress goes to an [`Observer`].

pub mod cli;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::exit::Status;
use crate::kernel::{KernelError, PatchError};
use crate::prepare::{KernelSelect, PrepareError};
use crate::suite::events::Reporter;
use crate::suite::load::Plan;
use crate::suite::outcome::Outcome;
use crate::suite::runner::{
    self, KernelReq, Platform, Prepared, QemuPlatform, RunError, RunOptions,
};
use crate::vm::accel::AccelChoice;

/// Which change is looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The first commit where the finding appears.
    Cause,
    /// The first commit where the finding is gone.
    Fix,
}

impl Direction {
    /// git's terms (old, new) for this direction.
    pub fn terms(self) -> (&'static str, &'static str) {
        match self {
            Direction::Cause => ("good", "bad"),
            Direction::Fix => ("unfixed", "fixed"),
        }
    }

    /// Whether a commit where the finding was (or was not) seen is "new".
    fn is_new(self, seen: bool) -> bool {
        match self {
            Direction::Cause => seen,
            Direction::Fix => !seen,
        }
    }
}

/// A commit as shown in tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Commit {
    /// Full hash.
    pub hash: String,
    /// Abbreviated hash.
    pub short: String,
    /// First line of the message.
    pub subject: String,
}

/// How a step marked its commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mark {
    /// Like GOOD: no finding (cause), the finding (fix).
    Old,
    /// Like BAD: the finding (cause), no finding (fix).
    New,
    /// The build failed; git picks a neighbour.
    Skip,
}

/// Which endpoint a step checked, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `--good`.
    Good,
    /// `--bad`.
    Bad,
    /// A commit git chose.
    Step,
}

/// ccache counters of one build (from `ccache --print-stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CcacheStats {
    /// Compilations served from the cache.
    pub hits: u64,
    /// Compilations that ran the compiler.
    pub misses: u64,
}

/// What building one commit gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "build", rename_all = "lowercase")]
pub enum BuildOutcome {
    /// A kernel to run.
    Built {
        /// Whether it came from the kernel cache without building.
        cached: bool,
        /// ccache counters of this build, when they could be read.
        ccache: Option<CcacheStats>,
    },
    /// The commit does not build (a `skip`).
    Failed {
        /// Why, one line.
        reason: String,
    },
}

/// One tested commit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Endpoint or bisection step.
    pub role: Role,
    /// The commit.
    pub commit: Commit,
    /// Wall time of the build.
    pub build_secs: f64,
    /// Build result.
    #[serde(flatten)]
    pub build: BuildOutcome,
    /// Runs done (0 when the build failed).
    pub runs: u32,
    /// Runs in which the finding was seen.
    pub seen: u32,
    /// Matching titles seen, deduplicated, in order of appearance.
    pub titles: Vec<String>,
    /// The mark given (`None` for endpoints: their marks are the user's).
    pub mark: Option<Mark>,
}

/// Which endpoint is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WrongEndpoint {
    /// `good` or `bad`.
    pub which: Role,
    /// What is wrong with it.
    pub reason: String,
}

/// How a bisection ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "conclusion", rename_all = "snake_case")]
pub enum Conclusion {
    /// The first bad (cause) or first fixed (fix) commit.
    Found {
        /// The commit.
        commit: Commit,
    },
    /// Skipped commits hide the answer: it is one of these.
    Ambiguous {
        /// The candidates, as git lists them.
        candidates: Vec<Commit>,
    },
    /// An endpoint does not behave as its flag says.
    WrongEndpoint(WrongEndpoint),
}

/// A finished bisection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bisection {
    /// Cause or fix.
    pub direction: Direction,
    /// `--good`, resolved.
    pub good: Commit,
    /// `--bad`, resolved.
    pub bad: Commit,
    /// Runs per step.
    pub runs: u32,
    /// Every tested commit in order, endpoints first.
    pub steps: Vec<Step>,
    /// The answer.
    #[serde(flatten)]
    pub conclusion: Conclusion,
}

impl Bisection {
    /// 0 when a commit was found, 1 otherwise.
    pub fn status(&self) -> Status {
        match self.conclusion {
            Conclusion::Found { .. } => Status::Ok,
            _ => Status::Findings,
        }
    }
}

/// What a bisection needs besides the tree and the step runner.
#[derive(Debug, Clone)]
pub struct BisectOptions {
    /// `--good`.
    pub good: String,
    /// `--bad`.
    pub bad: String,
    /// Cause or fix.
    pub direction: Direction,
    /// Runs per commit.
    pub runs: u32,
    /// Seed of run 0; run `i` uses `seed + i`.
    pub seed: u64,
    /// Only titles matching this count; `None`: any finding.
    pub title: Option<regex::Regex>,
    /// Set from a signal handler: stop after the current build or run.
    pub cancel: Arc<AtomicBool>,
}

/// Errors that end a bisection without an answer.
#[derive(Debug, thiserror::Error)]
pub enum BisectError {
    /// `--kernel-src` is not a git work tree.
    #[error("--kernel-src {}: not a git work tree", tree.display())]
    NotGit {
        /// The tree.
        tree: PathBuf,
    },
    /// The tree has changes git bisect would check out over.
    #[error("--kernel-src {}: the tree has uncommitted changes or untracked files, commit or stash them first: {}", tree.display(), files.join(", "))]
    Dirty {
        /// The tree.
        tree: PathBuf,
        /// The dirty paths.
        files: Vec<String>,
    },
    /// A bisection is already in progress.
    #[error("--kernel-src {}: a git bisect is already in progress (git bisect reset ends it)", tree.display())]
    InProgress {
        /// The tree.
        tree: PathBuf,
    },
    /// A revision does not name a commit.
    #[error("--{flag} {rev}: not a commit of the tree")]
    UnknownRevision {
        /// `good` or `bad`.
        flag: &'static str,
        /// What was given.
        rev: String,
    },
    /// GOOD is not an older ancestor of BAD.
    #[error("--good {good} is not an ancestor of --bad {bad}: nothing to bisect")]
    NotAncestor {
        /// `--good`.
        good: String,
        /// `--bad`.
        bad: String,
    },
    /// `--runs 0`.
    #[error("--runs must be at least 1")]
    ZeroRuns,
    /// A git command could not be started.
    #[error("cannot run git")]
    GitSpawn(#[source] std::io::Error),
    /// A git command failed.
    #[error("git {args} failed: {output}")]
    Git {
        /// The arguments.
        args: String,
        /// Its output.
        output: String,
    },
    /// `git bisect reset` did not bring the tree back to where it was.
    #[error("git bisect reset left HEAD at {now}, not at {was}")]
    NotRestored {
        /// HEAD before.
        was: String,
        /// HEAD after.
        now: String,
    },
    /// Preparing a kernel failed for a reason other than the commit not
    /// building.
    #[error("preparing the kernel of {commit}")]
    Prepare {
        /// The commit.
        commit: String,
        /// Why.
        #[source]
        source: PrepareError,
    },
    /// The runner could not run.
    #[error("running the scenarios")]
    Run(#[source] RunError),
    /// A run ended in an infrastructure failure: no mark can be given.
    #[error("a run could not tell: {0}")]
    Infrastructure(String),
    /// Interrupted (Ctrl-C).
    #[error("interrupted")]
    Interrupted,
}

/// The per-commit work of a bisection: build what is checked out, run it.
pub trait StepRunner {
    /// Builds the commit checked out in the tree (`commit` says which).
    fn build(&mut self, commit: &Commit) -> Result<BuildOutcome, BisectError>;
    /// Runs the scenarios `n` times on the last build, run `i` with seed
    /// `seed + i`; the titles of every finding, per run.
    fn runs(&mut self, n: u32, seed: u64) -> Result<Vec<Vec<String>>, BisectError>;
}

/// Progress of a bisection.
#[derive(Debug)]
pub enum BisectEvent<'a> {
    /// A commit is about to be built.
    Testing {
        /// Endpoint or step.
        role: Role,
        /// The commit.
        commit: &'a Commit,
    },
    /// A commit was tested (and marked, for steps).
    Tested(&'a Step),
}

/// Receives [`BisectEvent`]s.
pub trait Observer {
    /// Called for each event, in order.
    fn event(&mut self, event: &BisectEvent<'_>);
}

/// Ignores everything.
#[derive(Debug, Default)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn event(&mut self, _: &BisectEvent<'_>) {}
}

/// Runs git in `tree`; stdout and stderr together, and whether it
/// succeeded.
fn git_raw(tree: &Path, args: &[&str]) -> Result<(bool, String), BisectError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(tree)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(BisectError::GitSpawn)?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// Runs git in `tree`; its stdout, or an error with the output.
fn git(tree: &Path, args: &[&str]) -> Result<String, BisectError> {
    let (ok, text) = git_raw(tree, args)?;
    if ok {
        Ok(text)
    } else {
        Err(BisectError::Git {
            args: args.join(" "),
            output: text.trim().to_owned(),
        })
    }
}

fn commit_of(tree: &Path, rev: &str) -> Result<Commit, BisectError> {
    let out = git(tree, &["log", "-1", "--format=%H%n%h%n%s", rev, "--"])?;
    let mut lines = out.lines();
    let mut next = || lines.next().unwrap_or_default().to_owned();
    Ok(Commit {
        hash: next(),
        short: next(),
        subject: next(),
    })
}

fn resolve(tree: &Path, flag: &'static str, rev: &str) -> Result<String, BisectError> {
    let spec = format!("{rev}^{{commit}}");
    match git_raw(tree, &["rev-parse", "--verify", "--quiet", &spec])? {
        (true, out) => Ok(out.trim().to_owned()),
        (false, _) => Err(BisectError::UnknownRevision {
            flag,
            rev: rev.to_owned(),
        }),
    }
}

/// Checks the tree before a bisection: a git work tree, clean, not
/// bisecting. Returns its HEAD.
pub fn check_tree(tree: &Path) -> Result<String, BisectError> {
    match git_raw(tree, &["rev-parse", "--is-inside-work-tree"]) {
        Ok((true, out)) if out.trim() == "true" => {}
        _ => {
            return Err(BisectError::NotGit {
                tree: tree.to_owned(),
            });
        }
    }
    let status = git(
        tree,
        &["status", "--porcelain=v1", "-z", "--untracked-files=all"],
    )?;
    let files: Vec<String> = status
        .split('\0')
        .filter(|s| s.len() > 3)
        .map(|s| s[3..].to_owned())
        .collect();
    if !files.is_empty() {
        return Err(BisectError::Dirty {
            tree: tree.to_owned(),
            files,
        });
    }
    if git_raw(tree, &["bisect", "log"])?.0 {
        return Err(BisectError::InProgress {
            tree: tree.to_owned(),
        });
    }
    Ok(git(tree, &["rev-parse", "HEAD"])?.trim().to_owned())
}

/// Ends the bisection with `git bisect reset` when dropped (error paths,
/// panics); [`BisectGuard::finish`] does it on the normal path and checks
/// that HEAD is back.
#[derive(Debug)]
pub struct BisectGuard {
    tree: PathBuf,
    head: String,
    active: bool,
}

impl BisectGuard {
    /// Starts `git bisect` in `tree` (whose HEAD is `head`) with the terms
    /// of `direction`.
    pub fn start(tree: &Path, head: &str, direction: Direction) -> Result<Self, BisectError> {
        let (old, new) = direction.terms();
        let term_old = format!("--term-old={old}");
        let term_new = format!("--term-new={new}");
        let mut args = vec!["bisect", "start"];
        if direction == Direction::Fix {
            args.extend([term_old.as_str(), term_new.as_str()]);
        }
        git(tree, &args)?;
        Ok(Self {
            tree: tree.to_owned(),
            head: head.to_owned(),
            active: true,
        })
    }

    /// `git bisect reset`, then checks that HEAD is where it was.
    pub fn finish(mut self) -> Result<(), BisectError> {
        self.active = false;
        git(&self.tree, &["bisect", "reset"])?;
        let now = git(&self.tree, &["rev-parse", "HEAD"])?.trim().to_owned();
        if now == self.head {
            Ok(())
        } else {
            Err(BisectError::NotRestored {
                was: self.head.clone(),
                now,
            })
        }
    }
}

impl Drop for BisectGuard {
    fn drop(&mut self) {
        if self.active {
            if let Err(e) = git(&self.tree, &["bisect", "reset"]) {
                tracing::warn!("git bisect reset failed: {e}");
            }
        }
    }
}

/// What git said after a mark.
enum Next {
    /// Test HEAD.
    Test,
    /// Done.
    Done(Conclusion),
}

fn first_commit_line(out: &str) -> Option<&str> {
    out.lines().find_map(|l| {
        let (hash, rest) = l.split_once(' ')?;
        (hash.len() >= 40
            && hash.chars().all(|c| c.is_ascii_hexdigit())
            && rest.starts_with("is the first ")
            && rest.ends_with(" commit"))
        .then_some(hash)
    })
}

fn parse_next(tree: &Path, ok: bool, out: &str, args: &[&str]) -> Result<Next, BisectError> {
    if let Some(hash) = first_commit_line(out) {
        return Ok(Next::Done(Conclusion::Found {
            commit: commit_of(tree, hash)?,
        }));
    }
    if out.contains("only 'skip'ped commits left") {
        let mut candidates = Vec::new();
        for l in out.lines() {
            let hash = l.split_whitespace().next().unwrap_or_default();
            if hash.len() >= 40 && hash.chars().all(|c| c.is_ascii_hexdigit()) {
                candidates.push(commit_of(tree, hash)?);
            }
        }
        return Ok(Next::Done(Conclusion::Ambiguous { candidates }));
    }
    if ok {
        Ok(Next::Test)
    } else {
        Err(BisectError::Git {
            args: args.join(" "),
            output: out.trim().to_owned(),
        })
    }
}

fn cancelled(opts: &BisectOptions) -> Result<(), BisectError> {
    if opts.cancel.load(Ordering::SeqCst) {
        Err(BisectError::Interrupted)
    } else {
        Ok(())
    }
}

/// Builds and runs the checked-out commit; the step, without its mark.
fn test_commit(
    role: Role,
    commit: Commit,
    opts: &BisectOptions,
    steps: &mut dyn StepRunner,
    observer: &mut dyn Observer,
) -> Result<Step, BisectError> {
    cancelled(opts)?;
    observer.event(&BisectEvent::Testing {
        role,
        commit: &commit,
    });
    let t = Instant::now();
    let build = steps.build(&commit)?;
    let build_secs = t.elapsed().as_secs_f64();
    cancelled(opts)?;
    let mut step = Step {
        role,
        commit,
        build_secs,
        build,
        runs: 0,
        seen: 0,
        titles: Vec::new(),
        mark: None,
    };
    if matches!(step.build, BuildOutcome::Built { .. }) {
        let runs = steps.runs(opts.runs, opts.seed)?;
        cancelled(opts)?;
        step.runs = u32::try_from(runs.len()).unwrap_or(u32::MAX);
        for titles in &runs {
            let mut hit = false;
            for t in titles {
                if opts.title.as_ref().is_none_or(|re| re.is_match(t)) {
                    hit = true;
                    if !step.titles.contains(t) {
                        step.titles.push(t.clone());
                    }
                }
            }
            step.seen += u32::from(hit);
        }
    }
    Ok(step)
}

/// Bisects `tree` between `opts.good` and `opts.bad` (see the module
/// docs). The tree is back at its original HEAD with no bisection in
/// progress when this returns, whatever it returns.
pub fn bisect(
    tree: &Path,
    opts: &BisectOptions,
    steps: &mut dyn StepRunner,
    observer: &mut dyn Observer,
) -> Result<Bisection, BisectError> {
    if opts.runs == 0 {
        return Err(BisectError::ZeroRuns);
    }
    let head = check_tree(tree)?;
    let good = resolve(tree, "good", &opts.good)?;
    let bad = resolve(tree, "bad", &opts.bad)?;
    if good == bad || !git_raw(tree, &["merge-base", "--is-ancestor", &good, &bad])?.0 {
        return Err(BisectError::NotAncestor {
            good: opts.good.clone(),
            bad: opts.bad.clone(),
        });
    }
    let guard = BisectGuard::start(tree, &head, opts.direction)?;
    let result = bisect_started(tree, opts, &good, &bad, steps, observer);
    let restored = guard.finish();
    let b = result?;
    restored?;
    Ok(b)
}

fn bisect_started(
    tree: &Path,
    opts: &BisectOptions,
    good: &str,
    bad: &str,
    steps: &mut dyn StepRunner,
    observer: &mut dyn Observer,
) -> Result<Bisection, BisectError> {
    let dir = opts.direction;
    let (old, new) = dir.terms();
    let mut b = Bisection {
        direction: dir,
        good: commit_of(tree, good)?,
        bad: commit_of(tree, bad)?,
        runs: opts.runs,
        steps: Vec::new(),
        conclusion: Conclusion::Ambiguous {
            candidates: Vec::new(),
        },
    };
    // The endpoints, GOOD first.
    for (role, hash, want_new) in [(Role::Good, good, false), (Role::Bad, bad, true)] {
        git(tree, &["checkout", "--quiet", "--detach", hash])?;
        let commit = commit_of(tree, hash)?;
        let step = test_commit(role, commit, opts, steps, observer)?;
        observer.event(&BisectEvent::Tested(&step));
        let wrong = match &step.build {
            BuildOutcome::Failed { reason } => Some(format!("it does not build: {reason}")),
            BuildOutcome::Built { .. } if dir.is_new(step.seen > 0) != want_new => {
                Some(endpoint_reason(dir, role, &step))
            }
            BuildOutcome::Built { .. } => None,
        };
        b.steps.push(step);
        if let Some(reason) = wrong {
            b.conclusion = Conclusion::WrongEndpoint(WrongEndpoint {
                which: role,
                reason,
            });
            return Ok(b);
        }
    }
    git(tree, &["bisect", new, bad])?;
    let args = ["bisect", old, good];
    let (ok, out) = git_raw(tree, &args)?;
    let mut next = parse_next(tree, ok, &out, &args)?;
    loop {
        match next {
            Next::Done(c) => {
                b.conclusion = c;
                return Ok(b);
            }
            Next::Test => {
                let commit = commit_of(tree, "HEAD")?;
                let mut step = test_commit(Role::Step, commit, opts, steps, observer)?;
                let (mark, term) = match step.build {
                    BuildOutcome::Failed { .. } => (Mark::Skip, "skip"),
                    BuildOutcome::Built { .. } if dir.is_new(step.seen > 0) => (Mark::New, new),
                    BuildOutcome::Built { .. } => (Mark::Old, old),
                };
                step.mark = Some(mark);
                observer.event(&BisectEvent::Tested(&step));
                b.steps.push(step);
                let args = ["bisect", term];
                let (ok, out) = git_raw(tree, &args)?;
                next = parse_next(tree, ok, &out, &args)?;
            }
        }
    }
}

fn endpoint_reason(dir: Direction, role: Role, step: &Step) -> String {
    let seen = format!("{}/{}", step.seen, step.runs);
    match (dir, role) {
        (Direction::Cause, Role::Good) => format!(
            "--good already shows the finding ({seen} runs: {}): pick an older good revision",
            step.titles.join("; ")
        ),
        (Direction::Cause, _) => format!(
            "--bad does not show the finding (0/{} runs): pick a revision that reproduces it, or raise --runs",
            step.runs
        ),
        (Direction::Fix, Role::Good) => format!(
            "--good does not show the finding (0/{} runs); in a fix bisection --good is an older revision that still has it",
            step.runs
        ),
        (Direction::Fix, _) => format!(
            "--bad still shows the finding ({seen} runs: {}); in a fix bisection --bad is a newer revision where it is gone",
            step.titles.join("; ")
        ),
    }
}

/// Whether a preparation error means "this commit does not build" (a
/// `skip`) rather than a broken machine.
pub fn is_build_failure(e: &PrepareError) -> bool {
    match e {
        PrepareError::Kernel(k) => matches!(
            k,
            KernelError::Build { .. }
                | KernelError::Artefact { .. }
                | KernelError::Dropped { .. }
                | KernelError::Patch(PatchError::DoesNotApply { .. })
        ),
        _ => false,
    }
}

/// The real [`StepRunner`]: kernels from [`prepare::bootable`] on the tree
/// (one object tree per source, ccache shared), runs through
/// [`runner::run`] on QEMU.
pub struct QemuSteps<'a> {
    /// The kernel flags; `kernel_src` is the bisected tree.
    pub kernel: KernelSelect,
    /// Accelerator.
    pub accel: AccelChoice,
    /// The scenarios.
    pub plans: &'a [Plan],
    /// Their suites (recorded in `run.json`).
    pub suites: &'a [String],
    /// Artifacts root; each commit's runs go under `<short>/run-<i>`.
    pub artifacts: PathBuf,
    /// Stops runs between scenarios.
    pub cancel: Arc<AtomicBool>,
    /// Receives every runner event (artifacts, progress).
    pub reporter: &'a mut dyn Reporter,
    prepared: BTreeMap<KernelReq, Prepared>,
    current: String,
}

impl<'a> QemuSteps<'a> {
    /// A runner for `plans` on the tree `kernel` selects.
    pub fn new(
        kernel: KernelSelect,
        accel: AccelChoice,
        plans: &'a [Plan],
        suites: &'a [String],
        artifacts: PathBuf,
        reporter: &'a mut dyn Reporter,
    ) -> Self {
        Self {
            kernel,
            accel,
            plans,
            suites,
            artifacts,
            cancel: Arc::default(),
            reporter,
            prepared: BTreeMap::new(),
            current: String::new(),
        }
    }
}

impl std::fmt::Debug for QemuSteps<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QemuSteps")
            .field("kernel", &self.kernel)
            .field("artifacts", &self.artifacts)
            .finish_non_exhaustive()
    }
}

/// `ccache --print-stats` counters with the dangle cache's `CCACHE_DIR`.
fn ccache_stats() -> Option<CcacheStats> {
    let out = Command::new("ccache")
        .arg("--print-stats")
        .env("CCACHE_DIR", crate::paths::cache_dir().join("ccache"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut s = CcacheStats::default();
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let (Some(k), Some(v)) = (f.next(), f.next()) else {
            continue;
        };
        let Ok(v) = v.parse::<u64>() else { continue };
        match k {
            "direct_cache_hit" | "preprocessed_cache_hit" => s.hits += v,
            "cache_miss" => s.misses += v,
            _ => {}
        }
    }
    Some(s)
}

/// Hands out the kernels [`QemuSteps::build`] prepared.
struct Built<'p>(&'p BTreeMap<KernelReq, Prepared>);

impl Platform for Built<'_> {
    fn prepare(&mut self, req: &KernelReq) -> Result<Prepared, PrepareError> {
        self.0.get(req).cloned().ok_or_else(|| {
            PrepareError::Kernel(KernelError::BadInput {
                what: "bisect".to_owned(),
                reason: "a scenario needs a kernel that was not built".to_owned(),
                source: None,
            })
        })
    }
}

impl StepRunner for QemuSteps<'_> {
    fn build(&mut self, commit: &Commit) -> Result<BuildOutcome, BisectError> {
        self.prepared.clear();
        self.current = commit.short.clone();
        let before = ccache_stats();
        let mut platform = QemuPlatform {
            kernel: &self.kernel,
            accel: self.accel,
        };
        for plan in self.plans {
            let req = KernelReq::of(plan);
            if self.prepared.contains_key(&req) {
                continue;
            }
            match platform.prepare(&req) {
                Ok(p) => {
                    self.prepared.insert(req, p);
                }
                Err(e) if is_build_failure(&e) => {
                    return Ok(BuildOutcome::Failed {
                        reason: crate::exit::chain(&e)
                            .to_string()
                            .lines()
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    });
                }
                Err(source) => {
                    return Err(BisectError::Prepare {
                        commit: commit.short.clone(),
                        source,
                    });
                }
            }
        }
        let ccache = match (before, ccache_stats()) {
            (Some(b), Some(a)) => Some(CcacheStats {
                hits: a.hits.saturating_sub(b.hits),
                misses: a.misses.saturating_sub(b.misses),
            }),
            _ => None,
        };
        // A build found in the kernel cache compiles nothing.
        let cached = ccache.is_some_and(|c| c.hits == 0 && c.misses == 0);
        Ok(BuildOutcome::Built { cached, ccache })
    }

    fn runs(&mut self, n: u32, seed: u64) -> Result<Vec<Vec<String>>, BisectError> {
        let mut all = Vec::new();
        for i in 0..n {
            let mut opts = RunOptions::new(
                seed.wrapping_add(u64::from(i)),
                self.artifacts
                    .join(&self.current)
                    .join(format!("run-{}", i + 1)),
            );
            opts.cancel = Arc::clone(&self.cancel);
            let summary = runner::run(
                self.plans,
                self.suites,
                &mut Built(&self.prepared),
                &opts,
                &mut *self.reporter,
            )
            .map_err(BisectError::Run)?;
            if summary.interrupted {
                return Err(BisectError::Interrupted);
            }
            let mut titles = Vec::new();
            for r in &summary.results {
                if let Outcome::Infrastructure { error } = &r.outcome {
                    return Err(BisectError::Infrastructure(format!(
                        "{} on {}: {error}",
                        r.scenario, self.current
                    )));
                }
                titles.extend(r.findings.iter().map(|f| f.title.clone()));
            }
            all.push(titles);
        }
        Ok(all)
    }
}
