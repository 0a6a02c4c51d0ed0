//! `dangle validate`: does a patch fix a finding, and does it break
//! anything else?
//!
//! The base is the kernel the usual flags select; the candidate is the same
//! with the PATCHes appended to its patches. [`validate`] prepares both
//! (once per distinct scenario kernel requirement), then for run `i` runs
//! the selected scenarios on both with the same seed `seed + i`, through
//! the library runner ([`crate::suite::runner::run`]). Findings are matched
//! by title per scenario and counted per side; [`stats`] turns the counts
//! into fixed / regression / unchanged / inconclusive. With
//! [`Runs::Auto`] runs are added while any verdict is inconclusive, up to
//! a cap.
//!
//! Base results are cached on disk by (kernel identity, scenario, seed)
//! ([`cache`]): validating a second candidate against the same base runs
//! only the candidate. The command line is [`cli`]; the tables and the
//! JSON and JUnit documents are built in [`report`]. Nothing here prints:
//! progress leaves as [`ValidateEvent`]s.

pub mod cache;
pub mod cli;
pub mod report;
pub mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::exit::Status;
use crate::kernel::KernelIdentity;
use crate::prepare::PrepareError;
use crate::suite::engine::Timing;
use crate::suite::events::{Event, Reporter};
use crate::suite::load::Plan;
use crate::suite::outcome::Outcome;
use crate::suite::runner::{self, KernelReq, Platform, Prepared, RunError, RunOptions};

pub use cache::BaseCache;
pub use stats::{ALPHA, Class, Counts, Verdict};

/// Which kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    /// The kernel the flags select.
    Base,
    /// The base plus the PATCHes.
    Candidate,
}

impl Side {
    /// `base` or `candidate`.
    pub fn word(self) -> &'static str {
        match self {
            Side::Base => "base",
            Side::Candidate => "candidate",
        }
    }
}

/// How many runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    /// Exactly this many on each side.
    Fixed(u32),
    /// [`AUTO_FIRST_RUNS`] (or `max` if fewer), then one more at a time
    /// while any verdict is inconclusive, up to `max`.
    Auto {
        /// The cap.
        max: u32,
    },
}

/// Runs `--runs auto` starts with: the fewest after which a title seen in
/// every base run and never with the patch is significant (3/3 vs 0/3).
pub const AUTO_FIRST_RUNS: u32 = 3;

/// What a validation needs besides its plans and kernels.
#[derive(Debug, Clone)]
pub struct ValidateOptions {
    /// How many runs.
    pub runs: Runs,
    /// Run `i` uses seed `seed + i` (wrapping) on both kernels.
    pub seed: u64,
    /// Significance level of the verdicts.
    pub alpha: f64,
    /// Artifacts root: run `i` of a side goes to `run-<i>/<side>/`.
    pub artifacts: PathBuf,
    /// Base cache root; `None` runs the base every time.
    pub cache: Option<PathBuf>,
    /// Engine timeouts.
    pub timing: Timing,
    /// Set from elsewhere to stop after the current scenario.
    pub cancel: Arc<AtomicBool>,
}

impl ValidateOptions {
    /// Options with the defaults: 3 runs, alpha 0.05, no cache.
    pub fn new(seed: u64, artifacts: PathBuf) -> Self {
        Self {
            runs: Runs::Fixed(3),
            seed,
            alpha: ALPHA,
            artifacts,
            cache: None,
            timing: Timing::default(),
            cancel: Arc::default(),
        }
    }

    /// The seed of run `index`.
    pub fn seed_of(&self, index: u32) -> u64 {
        self.seed.wrapping_add(u64::from(index))
    }
}

/// One scenario run on one kernel, as validate keeps it (and caches it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideRun {
    /// Which kernel.
    pub side: Side,
    /// 0-based run index.
    pub index: u32,
    /// Suite name.
    pub suite: String,
    /// Scenario name.
    pub scenario: String,
    /// Expectation, human form.
    pub expectation: String,
    /// The seed.
    pub seed: u64,
    /// How the scenario ended against its expectation.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Distinct finding titles, in order of first appearance.
    pub titles: Vec<String>,
    /// [`KernelIdentity::key`] of the kernel it ran on.
    pub kernel: String,
    /// Where its artifacts are.
    pub artifacts: PathBuf,
    /// Whether it came from the base cache.
    #[serde(default)]
    pub cached: bool,
}

impl SideRun {
    fn is_infra(&self) -> bool {
        matches!(self.outcome, Outcome::Infrastructure { .. })
    }
}

/// A scenario's expectation on one side over the runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectationCounts {
    /// Runs that met it.
    pub met: u32,
    /// Runs that did not.
    pub not_met: u32,
    /// Runs that failed for infrastructure reasons.
    pub infrastructure: u32,
}

/// A scenario's expectation on both kernels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioSummary {
    /// Suite name.
    pub suite: String,
    /// Scenario name.
    pub scenario: String,
    /// Expectation, human form.
    pub expectation: String,
    /// On the base.
    pub base: ExpectationCounts,
    /// With the patch.
    pub candidate: ExpectationCounts,
}

/// One (scenario, title) row of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Scenario name.
    pub scenario: String,
    /// Finding title.
    pub title: String,
    /// Runs of the base that showed it.
    pub base: Counts,
    /// Runs of the candidate that showed it.
    pub candidate: Counts,
    /// The class and the figures behind it.
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// A run that says nothing about the kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InfraFailure {
    /// Which kernel.
    pub side: Side,
    /// Scenario name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// The error chain.
    pub error: String,
}

/// Everything a validation found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// Run `i` used `seed + i`.
    pub seed: u64,
    /// Runs done on each side.
    pub runs: u32,
    /// Significance level.
    pub alpha: f64,
    /// The base kernels (one per distinct scenario requirement).
    pub base: Vec<KernelIdentity>,
    /// The candidate kernels, in the same order.
    pub candidate: Vec<KernelIdentity>,
    /// Each scenario's expectation on both kernels.
    pub scenarios: Vec<ScenarioSummary>,
    /// Each (scenario, title) seen on either side, classified.
    pub findings: Vec<Row>,
    /// Runs that failed for infrastructure reasons.
    pub infrastructure: Vec<InfraFailure>,
    /// Every scenario run, both sides.
    pub runs_detail: Vec<SideRun>,
    /// Set when the validation stopped early.
    pub interrupted: bool,
}

impl Validation {
    /// Rows of `class`.
    pub fn of_class(&self, class: Class) -> impl Iterator<Item = &Row> {
        self.findings
            .iter()
            .filter(move |r| r.verdict.class == class)
    }

    /// Whether some finding matching `re` is fixed.
    pub fn fixed_matches(&self, re: &regex::Regex) -> bool {
        self.of_class(Class::Fixed).any(|r| re.is_match(&r.title))
    }

    /// The exit status: infrastructure (or an interruption) beats a
    /// regression or a missing expected fix, which beat success.
    pub fn status(&self, expect_fixed: Option<&regex::Regex>) -> Status {
        if !self.infrastructure.is_empty() || self.interrupted {
            Status::Infrastructure
        } else if self.of_class(Class::Regression).next().is_some()
            || expect_fixed.is_some_and(|re| !self.fixed_matches(re))
        {
            Status::Findings
        } else {
            Status::Ok
        }
    }
}

/// What a validation tells its observer as it goes.
#[derive(Debug)]
pub enum ValidateEvent<'a> {
    /// A kernel is ready.
    Prepared {
        /// Which side.
        side: Side,
        /// What it is.
        kernel: &'a KernelIdentity,
    },
    /// Run `index` of a side starts.
    RunStarted {
        /// Which side.
        side: Side,
        /// 0-based.
        index: u32,
        /// Its seed.
        seed: u64,
        /// Scenarios served from the base cache.
        cached: usize,
        /// Scenarios that will run.
        to_run: usize,
    },
    /// An event of the runner during a side's run.
    Runner {
        /// Which side.
        side: Side,
        /// The event.
        event: &'a Event,
    },
    /// All sides ran `runs` times; the verdicts so far.
    RoundFinished {
        /// Runs per side so far.
        runs: u32,
        /// The inconclusive rows.
        inconclusive: Vec<&'a Row>,
        /// Whether another run follows (`--runs auto`).
        more: bool,
    },
}

/// Receives [`ValidateEvent`]s (the command line prints them).
pub trait Observer {
    /// Called for each event, in order.
    fn event(&mut self, event: &ValidateEvent<'_>);
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Quiet;

impl Observer for Quiet {
    fn event(&mut self, _: &ValidateEvent<'_>) {}
}

/// Why a validation could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// A kernel could not be prepared.
    #[error("preparing the {} kernel", side.word())]
    Prepare {
        /// Which side.
        side: Side,
        /// Why.
        #[source]
        source: PrepareError,
    },
    /// The runner could not run (its artifacts directory).
    #[error("running on the {} kernel", side.word())]
    Run {
        /// Which side.
        side: Side,
        /// Why.
        #[source]
        source: RunError,
    },
}

/// Kernels prepared once and handed to every run of a side.
struct Kernels<'a> {
    inner: &'a mut dyn Platform,
    ready: BTreeMap<KernelReq, Prepared>,
}

impl Kernels<'_> {
    fn get(&mut self, req: &KernelReq) -> Result<&Prepared, PrepareError> {
        if !self.ready.contains_key(req) {
            let p = self.inner.prepare(req)?;
            self.ready.insert(req.clone(), p);
        }
        Ok(&self.ready[req])
    }
}

impl Platform for Kernels<'_> {
    fn prepare(&mut self, req: &KernelReq) -> Result<Prepared, PrepareError> {
        self.get(req).cloned()
    }
}

/// Sends runner events to the observer, tagged with the side.
struct Forward<'a, 'o> {
    side: Side,
    observer: &'a mut (dyn Observer + 'o),
}

impl Reporter for Forward<'_, '_> {
    fn event(&mut self, event: &Event) {
        self.observer.event(&ValidateEvent::Runner {
            side: self.side,
            event,
        });
    }
}

/// Validates the change between `base` and `candidate` on `plans` (see the
/// module docs). `suites` are the suite names, recorded in each run's
/// `run.json`.
pub fn validate(
    plans: &[Plan],
    suites: &[String],
    base: &mut dyn Platform,
    candidate: &mut dyn Platform,
    opts: &ValidateOptions,
    observer: &mut dyn Observer,
) -> Result<Validation, ValidateError> {
    let mut reqs: Vec<KernelReq> = plans.iter().map(KernelReq::of).collect();
    reqs.sort();
    reqs.dedup();
    let mut sides = [
        (
            Side::Base,
            Kernels {
                inner: base,
                ready: BTreeMap::new(),
            },
        ),
        (
            Side::Candidate,
            Kernels {
                inner: candidate,
                ready: BTreeMap::new(),
            },
        ),
    ];
    // Both kernels first: a candidate that does not build stops everything
    // before the base spends any time running.
    for (side, kernels) in &mut sides {
        for req in &reqs {
            let p = kernels.get(req).map_err(|source| ValidateError::Prepare {
                side: *side,
                source,
            })?;
            observer.event(&ValidateEvent::Prepared {
                side: *side,
                kernel: &p.kernel,
            });
        }
    }
    let identities = |k: &Kernels<'_>| -> Vec<KernelIdentity> {
        reqs.iter().map(|r| k.ready[r].kernel.clone()).collect()
    };
    let cache = opts.cache.as_deref().map(BaseCache::new);
    let (first, max) = match opts.runs {
        Runs::Fixed(n) => (n, n),
        Runs::Auto { max } => (AUTO_FIRST_RUNS.min(max), max),
    };
    let mut records: Vec<SideRun> = Vec::new();
    let mut target = first;
    let mut done = 0;
    let mut interrupted = false;
    let mut rows;
    loop {
        while done < target && !interrupted {
            for (side, kernels) in &mut sides {
                if opts.cancel.load(Ordering::SeqCst) {
                    interrupted = true;
                    break;
                }
                let cache = (*side == Side::Base).then_some(cache.as_ref()).flatten();
                let r = run_side(*side, done, plans, suites, kernels, cache, opts, observer)?;
                interrupted |= r.1;
                records.extend(r.0);
            }
            if !interrupted {
                done += 1;
            }
        }
        rows = compare_rows(plans, &records, opts.alpha);
        let inconclusive: Vec<&Row> = rows
            .iter()
            .filter(|r| r.verdict.class == Class::Inconclusive)
            .collect();
        let more = matches!(opts.runs, Runs::Auto { .. })
            && !interrupted
            && !inconclusive.is_empty()
            && done < max;
        observer.event(&ValidateEvent::RoundFinished {
            runs: done,
            inconclusive,
            more,
        });
        if !more {
            break;
        }
        target = done + 1;
    }
    let infrastructure = records
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Infrastructure { error } => Some(InfraFailure {
                side: r.side,
                scenario: r.scenario.clone(),
                seed: r.seed,
                error: error.clone(),
            }),
            _ => None,
        })
        .collect();
    Ok(Validation {
        seed: opts.seed,
        runs: done,
        alpha: opts.alpha,
        base: identities(&sides[0].1),
        candidate: identities(&sides[1].1),
        scenarios: summarize(plans, &records),
        findings: rows,
        infrastructure,
        runs_detail: records,
        interrupted,
    })
}

/// Run `index` of one side: cached base results first, the rest through
/// the runner. Returns the records and whether the runner was interrupted.
#[expect(clippy::too_many_arguments, reason = "one call site, all distinct")]
fn run_side(
    side: Side,
    index: u32,
    plans: &[Plan],
    suites: &[String],
    kernels: &mut Kernels<'_>,
    cache: Option<&BaseCache>,
    opts: &ValidateOptions,
    observer: &mut dyn Observer,
) -> Result<(Vec<SideRun>, bool), ValidateError> {
    let seed = opts.seed_of(index);
    let mut hits: BTreeMap<String, SideRun> = BTreeMap::new();
    if let Some(cache) = cache {
        for plan in plans {
            let kernel = &kernels.ready[&KernelReq::of(plan)].kernel;
            if let Some(mut r) = cache.lookup(kernel, plan, seed) {
                r.index = index;
                r.cached = true;
                hits.insert(plan.name().to_owned(), r);
            }
        }
    }
    let missing: Vec<Plan> = plans
        .iter()
        .filter(|p| !hits.contains_key(p.name()))
        .cloned()
        .collect();
    observer.event(&ValidateEvent::RunStarted {
        side,
        index,
        seed,
        cached: hits.len(),
        to_run: missing.len(),
    });
    let mut fresh: BTreeMap<String, SideRun> = BTreeMap::new();
    let mut interrupted = false;
    if !missing.is_empty() {
        let mut run_opts = RunOptions::new(
            seed,
            opts.artifacts
                .join(format!("run-{index}"))
                .join(side.word()),
        );
        run_opts.timing = opts.timing;
        run_opts.cancel = Arc::clone(&opts.cancel);
        let summary = runner::run(
            &missing,
            suites,
            kernels,
            &run_opts,
            &mut Forward { side, observer },
        )
        .map_err(|source| ValidateError::Run { side, source })?;
        interrupted = summary.interrupted;
        for (plan, result) in missing.iter().zip(summary.results) {
            let kernel = &kernels.ready[&KernelReq::of(plan)].kernel;
            let r = SideRun {
                side,
                index,
                suite: result.suite,
                scenario: result.scenario,
                expectation: result.expectation,
                seed,
                outcome: result.outcome,
                titles: result.findings.into_iter().map(|g| g.title).collect(),
                kernel: kernel.key(),
                artifacts: result.artifacts,
                cached: false,
            };
            if let Some(cache) = cache {
                if !r.is_infra() {
                    if let Err(e) = cache.store(kernel, plan, &r) {
                        tracing::warn!("base cache: {}", crate::exit::chain(&e).to_string());
                    }
                }
            }
            fresh.insert(plan.name().to_owned(), r);
        }
    }
    // In plan order, whichever way each came.
    let out = plans
        .iter()
        .filter_map(|p| hits.remove(p.name()).or_else(|| fresh.remove(p.name())))
        .collect();
    Ok((out, interrupted))
}

/// Per scenario and title, how many counted runs of each side showed it,
/// classified. Rows follow plan order, then first appearance.
pub fn compare_rows(plans: &[Plan], records: &[SideRun], alpha: f64) -> Vec<Row> {
    let mut rows = Vec::new();
    for plan in plans {
        let of = |side: Side| {
            records
                .iter()
                .filter(move |r| r.side == side && r.scenario == plan.name() && !r.is_infra())
        };
        let mut titles: Vec<&str> = Vec::new();
        for r in of(Side::Base).chain(of(Side::Candidate)) {
            for t in &r.titles {
                if !titles.contains(&t.as_str()) {
                    titles.push(t);
                }
            }
        }
        let count = |side: Side, title: &str| {
            let runs = of(side).count() as u32;
            let seen = of(side)
                .filter(|r| r.titles.iter().any(|t| t == title))
                .count() as u32;
            Counts::new(seen, runs)
        };
        for title in titles {
            let base = count(Side::Base, title);
            let candidate = count(Side::Candidate, title);
            rows.push(Row {
                scenario: plan.name().to_owned(),
                title: title.to_owned(),
                base,
                candidate,
                verdict: stats::classify(base, candidate, alpha),
            });
        }
    }
    rows
}

fn summarize(plans: &[Plan], records: &[SideRun]) -> Vec<ScenarioSummary> {
    plans
        .iter()
        .map(|plan| {
            let counts = |side: Side| {
                let mut c = ExpectationCounts::default();
                for r in records
                    .iter()
                    .filter(|r| r.side == side && r.scenario == plan.name())
                {
                    match r.outcome {
                        Outcome::Met => c.met += 1,
                        Outcome::NotMet { .. } => c.not_met += 1,
                        Outcome::Infrastructure { .. } => c.infrastructure += 1,
                    }
                }
                c
            };
            ScenarioSummary {
                suite: plan.suite.clone(),
                scenario: plan.name().to_owned(),
                expectation: crate::suite::outcome::describe(&plan.scenario.expect),
                base: counts(Side::Base),
                candidate: counts(Side::Candidate),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
