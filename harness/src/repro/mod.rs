//! `dangle repro`: make a reported crash happen here.
//!
//! 1. [`read_report`] turns what the user has (a console excerpt, a
//!    syzbot-style email with a `Subject:` title, a dangle JSON finding or
//!    `result.json`) into a [`Target`]: title, kind, guilty frame, stack
//!    functions and subsystems, through the crash parser
//!    ([`crate::report::parse`]).
//! 2. [`rank::rank`] scores every scenario against it, with reasons.
//! 3. [`repro`] runs the best candidates round robin, seed after seed,
//!    through the library runner ([`crate::suite::runner::run`]), one
//!    scenario per run with its own artifacts directory, until a finding
//!    has the same title or the same guilty frame, or the wall-clock budget
//!    is spent (checked between attempts: a started attempt finishes).
//! 4. [`bundle::write`] writes a directory that `dangle run
//!    bundle/scenario.yaml --replay bundle` replays.
//!
//! Nothing here prints: progress leaves as [`ReproEvent`]s. The command
//! line is [`cli`].

pub mod bundle;
pub mod cli;
pub mod rank;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::kernel::KernelIdentity;
use crate::prepare::PrepareError;
use crate::report;
use crate::suite::engine::Timing;
use crate::suite::events::{Event, Reporter};
use crate::suite::load::Plan;
use crate::suite::outcome::{Finding, Outcome};
use crate::suite::runner::{self, KernelReq, Platform, Prepared, RunError, RunOptions};

pub use rank::{Candidate, Subsystem};

/// What the report says happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    /// Normalised title.
    pub title: String,
    /// Report type (`KASAN-USE-AFTER-FREE-READ`, `HANG`, ...), may be empty.
    pub kind: String,
    /// Guilty function, may be empty.
    pub frame: String,
    /// Stack functions, innermost first.
    pub functions: Vec<String>,
    /// Source paths named by the report (`file:line`s).
    pub files: Vec<String>,
    /// Subsystems named by the functions and paths, in table order.
    pub subsystems: Vec<Subsystem>,
    /// The report text (or the title alone).
    pub excerpt: String,
}

/// Why a report cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file cannot be read.
    #[error("cannot read {name}")]
    Read {
        /// File name, or `-`.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A JSON report does not parse.
    #[error("{name} looks like JSON but is not a dangle finding")]
    Json {
        /// File name.
        name: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A JSON report lacks what a finding has.
    #[error("{name}: {reason}")]
    NotAFinding {
        /// File name.
        name: String,
        /// What is missing.
        reason: String,
    },
    /// Nothing in it is a crash report.
    #[error(
        "no crash report in {name}: no line matched a known report header (KASAN, BUG, WARNING, INFO: task hung, ...) and there is no title line or Subject:"
    )]
    NoReport {
        /// File name.
        name: String,
    },
}

/// The guilty function of a title: what follows the last ` in `.
pub fn frame_of_title(title: &str) -> String {
    title
        .rsplit_once(" in ")
        .map(|(_, f)| f.split_whitespace().next().unwrap_or("").to_owned())
        .unwrap_or_default()
}

fn strip_subject(s: &str) -> &str {
    let mut s = s.trim();
    loop {
        let before = s;
        for p in ["Re:", "RE:", "Fwd:", "[syzbot]", "[dangle]"] {
            if let Some(r) = s.strip_prefix(p) {
                s = r.trim_start();
            }
        }
        if s == before {
            return s;
        }
    }
}

/// Whether a line reads like a crash title (one the parser would type, or
/// one of dangle's own).
fn looks_like_title(line: &str) -> bool {
    !report::title_type(line).is_empty()
        || line.starts_with("consumer stuck")
        || line.starts_with("unplug never completed")
        || [
            "WARNING in ",
            "possible deadlock in ",
            "general protection fault in ",
            "kernel BUG in ",
            "BUG: ",
        ]
        .iter()
        .any(|p| line.starts_with(p))
}

fn paths_in(text: &str) -> Vec<String> {
    // `dir/file.c:123`, as in WARNING lines and symbolized frames.
    let re = regex::Regex::new(r"[A-Za-z0-9_./-]+/[A-Za-z0-9_.-]+\.[ch]:\d+").expect("valid regex");
    let mut out: Vec<String> = Vec::new();
    for m in re.find_iter(text) {
        let p = m.as_str().to_owned();
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Builds the target from a title (if the input gave one), the log text,
/// and functions listed by a JSON finding.
fn target_from(title: Option<String>, log: &str, functions: Vec<String>) -> Option<Target> {
    let reports = report::parse(log.as_bytes());
    let chosen = match &title {
        Some(t) => reports.iter().find(|r| r.title == *t).or(reports.first()),
        None => reports.first(),
    };
    let (title, kind, frame, mut funcs, excerpt, mut files) = match (title, chosen) {
        (None, None) => return None,
        (Some(t), None) => {
            let excerpt = if log.trim().is_empty() {
                t.clone()
            } else {
                log.to_owned()
            };
            (
                t.clone(),
                report::title_type(&t).to_owned(),
                frame_of_title(&t),
                Vec::new(),
                excerpt,
                paths_in(log),
            )
        }
        (t, Some(r)) => {
            let same = t.as_ref().is_none_or(|t| *t == r.title);
            let title = t.unwrap_or_else(|| r.title.clone());
            let frame = if same {
                r.frame.clone()
            } else {
                frame_of_title(&title)
            };
            let text = String::from_utf8_lossy(&r.report).into_owned();
            let mut files: Vec<String> = r
                .frames
                .iter()
                .filter_map(|f| {
                    f.file
                        .as_ref()
                        .map(|p| format!("{p}:{}", f.line.unwrap_or(0)))
                })
                .collect();
            files.extend(paths_in(&text));
            (
                title.clone(),
                if same {
                    r.kind.clone()
                } else {
                    report::title_type(&title).to_owned()
                },
                frame,
                r.frames.iter().map(|f| f.function.clone()).collect(),
                text,
                files,
            )
        }
    };
    if funcs.is_empty() {
        funcs = functions;
    }
    if !frame.is_empty() && !funcs.contains(&frame) {
        funcs.insert(0, frame.clone());
    }
    funcs.dedup();
    files.dedup();
    let mut subsystems: Vec<Subsystem> = funcs
        .iter()
        .filter_map(|f| rank::subsystem_of_function(f))
        .chain(files.iter().filter_map(|p| rank::subsystem_of_path(p)))
        .collect();
    subsystems.sort();
    subsystems.dedup();
    Some(Target {
        title,
        kind,
        frame,
        functions: funcs,
        files,
        subsystems,
        excerpt,
    })
}

fn from_json(v: &serde_json::Value, name: &str) -> Result<Target, InputError> {
    let bad = |reason: &str| InputError::NotAFinding {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    let mut f = v;
    if let Some(list) = v.get("findings") {
        f = list
            .as_array()
            .and_then(|a| a.first())
            .ok_or_else(|| bad("`findings` is empty"))?;
    }
    // result.json groups findings: `{title, count, first: {...}}`.
    if let Some(first) = f.get("first") {
        f = first;
    }
    let title = f
        .get("title")
        .and_then(|t| t.as_str())
        .ok_or_else(|| bad("a finding needs a `title` string"))?;
    let log = f.get("report").and_then(|t| t.as_str()).unwrap_or("");
    let functions = f
        .get("functions")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    target_from(Some(title.trim().to_owned()), log, functions)
        .ok_or_else(|| bad("the finding has no title"))
}

/// Reads a report: a dangle JSON finding (or `result.json`), a syzbot-style
/// email (`Subject:` title), or a console excerpt, whose first line may be
/// a title. `name` names the input in errors.
pub fn read_report(bytes: &[u8], name: &str) -> Result<Target, InputError> {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|source| InputError::Json {
                name: name.to_owned(),
                source,
            })?;
        return from_json(&v, name);
    }
    let no_report = || InputError::NoReport {
        name: name.to_owned(),
    };
    // An email: the Subject is the title; the log follows the headers.
    let subject = text
        .lines()
        .find_map(|l| l.strip_prefix("Subject:"))
        .map(strip_subject)
        .filter(|s| !s.is_empty());
    if let Some(title) = subject {
        return target_from(Some(title.to_owned()), &text, Vec::new()).ok_or_else(no_report);
    }
    if let Some(t) = target_from(None, &text, Vec::new()) {
        return Ok(t);
    }
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    match first {
        Some(l) if looks_like_title(l) => {
            target_from(Some(l.to_owned()), &text, Vec::new()).ok_or_else(no_report)
        }
        _ => Err(no_report()),
    }
}

/// How a finding matched the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "match", rename_all = "kebab-case")]
pub enum Match {
    /// The same title.
    SameTitle,
    /// The same guilty frame under another title.
    SameFrame {
        /// The frame.
        frame: String,
        /// The finding's title.
        title: String,
    },
}

impl std::fmt::Display for Match {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Match::SameTitle => f.write_str("reproduced: same title"),
            Match::SameFrame { frame, title } => write!(
                f,
                "reproduced: same guilty frame {frame}, title differs: {title}"
            ),
        }
    }
}

/// The guilty frame of a finding: the parser's, else from its title.
pub fn finding_frame(f: &Finding) -> String {
    f.details
        .as_ref()
        .and_then(|d| d.get("frame"))
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map_or_else(|| frame_of_title(&f.title), str::to_owned)
}

/// Whether `f` reproduces `t`.
pub fn matches(t: &Target, f: &Finding) -> Option<Match> {
    if f.title == t.title {
        return Some(Match::SameTitle);
    }
    let frame = finding_frame(f);
    (!t.frame.is_empty() && frame == t.frame).then(|| Match::SameFrame {
        frame,
        title: f.title.clone(),
    })
}

/// What a repro needs besides the target, plans and platform.
#[derive(Debug, Clone)]
pub struct ReproOptions {
    /// How many of the best candidates to run.
    pub candidates: usize,
    /// Attempt `i` of a candidate uses `seed + i`.
    pub seed: u64,
    /// Wall-clock budget, checked before each attempt.
    pub budget: Duration,
    /// Artifacts root: attempt `n` goes to `attempt-<n>-<scenario>/`.
    pub artifacts: PathBuf,
    /// Engine timeouts.
    pub timing: Timing,
    /// Set from elsewhere to stop after the current attempt.
    pub cancel: Arc<AtomicBool>,
}

impl ReproOptions {
    /// Defaults: 3 candidates, 10 minutes.
    pub fn new(seed: u64, artifacts: PathBuf) -> Self {
        Self {
            candidates: 3,
            seed,
            budget: Duration::from_secs(600),
            artifacts,
            timing: Timing::default(),
            cancel: Arc::default(),
        }
    }
}

/// One scenario run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    /// 1-based.
    pub number: u32,
    /// Suite name.
    pub suite: String,
    /// Scenario name.
    pub scenario: String,
    /// The suite file.
    pub suite_file: PathBuf,
    /// Its seed.
    pub seed: u64,
    /// Its run directory (what `--replay` takes).
    pub dir: PathBuf,
    /// Finding titles.
    pub titles: Vec<String>,
    /// Set when it failed for infrastructure reasons.
    pub infrastructure: Option<String>,
}

/// A reproduction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reproduction {
    /// The attempt that reproduced.
    pub attempt: Attempt,
    /// How.
    #[serde(flatten)]
    pub how: Match,
    /// The matching finding.
    pub finding: Finding,
    /// The kernel it ran on.
    pub kernel: KernelIdentity,
    /// That kernel's `.config`, when dangle built it.
    pub config: Option<PathBuf>,
    /// The recorded schedule, if the scenario reached its first cycle.
    pub schedule: Option<PathBuf>,
}

/// Everything a repro did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Repro {
    /// The target.
    pub target: Target,
    /// The ranking (every scenario with a score).
    pub ranking: Vec<Candidate>,
    /// The attempts, in order.
    pub attempts: Vec<Attempt>,
    /// The reproduction, if any.
    pub reproduced: Option<Reproduction>,
    /// Set when stopped from outside.
    pub interrupted: bool,
}

/// What a repro tells its observer.
#[derive(Debug)]
pub enum ReproEvent<'a> {
    /// An attempt starts.
    AttemptStarted {
        /// 1-based.
        number: u32,
        /// The candidate.
        candidate: &'a Candidate,
        /// Its seed.
        seed: u64,
        /// Time spent so far.
        elapsed: Duration,
    },
    /// An event of the runner during an attempt.
    Runner {
        /// The event.
        event: &'a Event,
    },
    /// An attempt ended without reproducing.
    AttemptFinished {
        /// It.
        attempt: &'a Attempt,
    },
    /// The budget is spent.
    BudgetSpent {
        /// Time spent.
        elapsed: Duration,
    },
}

/// Receives [`ReproEvent`]s.
pub trait Observer {
    /// Called for each event, in order.
    fn event(&mut self, event: &ReproEvent<'_>);
}

/// Why a repro could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ReproError {
    /// The runner could not run.
    #[error("running {scenario}")]
    Run {
        /// The scenario.
        scenario: String,
        /// Why.
        #[source]
        source: RunError,
    },
}

/// Kernels prepared once per requirement and kept for every attempt.
struct Kernels<'a> {
    inner: &'a mut dyn Platform,
    ready: BTreeMap<KernelReq, Prepared>,
}

impl Platform for Kernels<'_> {
    fn prepare(&mut self, req: &KernelReq) -> Result<Prepared, PrepareError> {
        if let Some(p) = self.ready.get(req) {
            return Ok(p.clone());
        }
        let p = self.inner.prepare(req)?;
        self.ready.insert(req.clone(), p.clone());
        Ok(p)
    }
}

struct Collect<'a, 'o> {
    observer: &'a mut (dyn Observer + 'o),
    findings: Vec<Finding>,
    infrastructure: Option<String>,
}

impl Reporter for Collect<'_, '_> {
    fn event(&mut self, event: &Event) {
        if let Event::ScenarioFinished { result, findings } = event {
            self.findings.extend(findings.iter().cloned());
            if let Outcome::Infrastructure { error } = &result.outcome {
                self.infrastructure = Some(error.clone());
            }
        }
        self.observer.event(&ReproEvent::Runner { event });
    }
}

/// Runs the best `opts.candidates` of `ranking` round robin (see the module
/// docs). An empty ranking runs nothing.
pub fn repro(
    target: &Target,
    plans: &[Plan],
    ranking: &[Candidate],
    platform: &mut dyn Platform,
    opts: &ReproOptions,
    observer: &mut dyn Observer,
) -> Result<Repro, ReproError> {
    let start = Instant::now();
    let best: Vec<&Candidate> = ranking.iter().take(opts.candidates.max(1)).collect();
    let mut kernels = Kernels {
        inner: platform,
        ready: BTreeMap::new(),
    };
    let mut out = Repro {
        target: target.clone(),
        ranking: ranking.to_vec(),
        attempts: Vec::new(),
        reproduced: None,
        interrupted: false,
    };
    let mut number = 0u32;
    'rounds: for round in 0u64.. {
        if best.is_empty() {
            break;
        }
        for c in &best {
            if opts.cancel.load(Ordering::SeqCst) {
                out.interrupted = true;
                break 'rounds;
            }
            if start.elapsed() >= opts.budget {
                observer.event(&ReproEvent::BudgetSpent {
                    elapsed: start.elapsed(),
                });
                break 'rounds;
            }
            number += 1;
            let plan = &plans[c.index];
            let seed = opts.seed.wrapping_add(round);
            observer.event(&ReproEvent::AttemptStarted {
                number,
                candidate: c,
                seed,
                elapsed: start.elapsed(),
            });
            let dir = opts
                .artifacts
                .join(format!("attempt-{number}-{}", plan.name()));
            let mut run_opts = RunOptions::new(seed, dir.clone());
            run_opts.timing = opts.timing;
            run_opts.cancel = Arc::clone(&opts.cancel);
            let suite_file = plan.file.clone();
            let mut collect = Collect {
                observer,
                findings: Vec::new(),
                infrastructure: None,
            };
            let summary = runner::run(
                std::slice::from_ref(plan),
                &[suite_file.display().to_string()],
                &mut kernels,
                &run_opts,
                &mut collect,
            )
            .map_err(|source| ReproError::Run {
                scenario: plan.name().to_owned(),
                source,
            })?;
            let Collect {
                findings,
                infrastructure,
                ..
            } = collect;
            let mut titles: Vec<String> = Vec::new();
            for f in &findings {
                if !titles.contains(&f.title) {
                    titles.push(f.title.clone());
                }
            }
            let attempt = Attempt {
                number,
                suite: plan.suite.clone(),
                scenario: plan.name().to_owned(),
                suite_file,
                seed,
                dir: dir.clone(),
                titles,
                infrastructure,
            };
            out.attempts.push(attempt.clone());
            // The best match of the attempt: a same title beats a same frame.
            let hit = findings
                .iter()
                .filter_map(|f| matches(target, f).map(|m| (m, f)))
                .min_by_key(|(m, _)| !matches!(m, Match::SameTitle));
            if let Some((how, finding)) = hit {
                let prepared = &kernels.ready[&KernelReq::of(plan)];
                let kernel = prepared.kernel.clone();
                let config = prepared.config.clone();
                let schedule =
                    crate::suite::engine::scenario_dir(&dir, plan.name()).join("schedule.json");
                out.reproduced = Some(Reproduction {
                    attempt,
                    how,
                    finding: finding.clone(),
                    kernel,
                    config,
                    schedule: schedule.exists().then_some(schedule),
                });
                break 'rounds;
            }
            observer.event(&ReproEvent::AttemptFinished { attempt: &attempt });
            if summary.interrupted {
                out.interrupted = true;
                break 'rounds;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
