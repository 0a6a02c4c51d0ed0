//! `dangle run`: run hot-unplug suites and report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::agent_guest::AgentGuest;
use super::engine::{self, EngineError, RunContext};
use super::events::{Event, Reporter};
use super::guest::Guest;
use super::load::{self, Plan};
use super::outcome::{Outcome, ScenarioResult};
use super::reporters::{JsonReporter, JunitReporter, TerminalReporter};
use super::schedule::Schedule;
use crate::exit::Status;
use crate::prepare::{self, Bootable, KernelSelect};
use crate::report::Symbolizer;
use crate::vm::accel::AccelChoice;
use crate::vm::fixture::VmSpec;

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

/// Loads suites and applies `--only`.
pub fn load_plans(suites: &[String], only: &[String]) -> Result<Vec<Plan>, String> {
    let names: Vec<String> = if suites.is_empty() {
        vec!["smoke".into()]
    } else {
        suites.to_vec()
    };
    let mut plans = Vec::new();
    for s in &names {
        let path = suite_path(s);
        plans.extend(load::load_file(&path).map_err(|e| engine::error_chain(&e))?);
    }
    if !only.is_empty() {
        for o in only {
            if !plans.iter().any(|p| p.name() == o) {
                let known: Vec<&str> = plans.iter().map(Plan::name).collect();
                return Err(format!(
                    "--only {o}: no such scenario (known: {})",
                    known.join(", ")
                ));
            }
        }
        plans.retain(|p| only.iter().any(|o| o == p.name()));
    }
    Ok(plans)
}

fn default_artifacts() -> PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("dangle-artifacts").join(format!("run-{t}"))
}

/// A scenario's own kernel requirements (patches, config items): one
/// kernel is prepared per distinct key.
type KernelKey = (Vec<PathBuf>, Vec<String>);

/// Everything recorded for `--replay`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RunRecord {
    seed: u64,
    suites: Vec<String>,
    scenarios: Vec<String>,
}

/// Runs `dangle run`.
pub fn run(args: RunArgs) -> Status {
    let plans = match load_plans(&args.suites, &args.only) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("dangle run: {e}");
            return Status::BadInput;
        }
    };
    if args.list {
        for p in &plans {
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
        return Status::Ok;
    }
    let mut replayed: BTreeMap<String, Schedule> = BTreeMap::new();
    let mut seed = args.seed;
    if let Some(dir) = &args.replay {
        match read_replay(dir) {
            Ok((s, scheds)) => {
                seed = Some(s);
                replayed = scheds;
            }
            Err(e) => {
                eprintln!("dangle run: --replay {}: {e}", dir.display());
                return Status::BadInput;
            }
        }
    }
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let artifacts = args.artifacts.clone().unwrap_or_else(default_artifacts);
    if let Err(e) = std::fs::create_dir_all(&artifacts) {
        eprintln!("dangle run: cannot create {}: {e}", artifacts.display());
        return Status::BadInput;
    }
    let record = RunRecord {
        seed,
        suites: args.suites.clone(),
        scenarios: plans.iter().map(|p| p.name().to_owned()).collect(),
    };
    let _ = std::fs::write(
        artifacts.join("run.json"),
        serde_json::to_vec_pretty(&record).unwrap_or_default(),
    );

    let mut term = TerminalReporter::new();
    let mut json = JsonReporter::default();
    let mut junit = JunitReporter::default();
    let mut results: Vec<ScenarioResult> = Vec::new();
    {
        let mut all = Fanout(vec![&mut term, &mut json, &mut junit]);
        all.event(&Event::RunStarted {
            scenarios: plans.len(),
            seed,
            artifacts: artifacts.clone(),
        });
        // One kernel per distinct set of scenario requirements.
        let mut kernels: BTreeMap<KernelKey, Result<(Bootable, Option<Symbolizer>), String>> =
            BTreeMap::new();
        let mut bad_input = None;
        for (i, plan) in plans.iter().enumerate() {
            all.event(&Event::ScenarioStarted {
                index: i,
                total: plans.len(),
                name: plan.name().to_owned(),
            });
            let key = (plan.patches.clone(), plan.scenario.kernel.config.clone());
            if !kernels.contains_key(&key) {
                all.event(&Event::Preparing {
                    what: "kernel and initramfs".into(),
                });
                let b = prepare::bootable(&args.kernel, &key.0, &key.1).map_err(|e| {
                    if e.status() == Status::BadInput {
                        bad_input = Some(engine::error_chain(&e));
                    }
                    engine::error_chain(&e)
                });
                if let Some(e) = &bad_input {
                    eprintln!("dangle run: {e}");
                    all.event(&Event::RunFinished);
                    return Status::BadInput;
                }
                let b = b.map(|b| {
                    let sym = Symbolizer::open(&b.kernel.vmlinux)
                        .map_err(|e| {
                            tracing::warn!("no symbolization: {}", engine::error_chain(&e))
                        })
                        .ok();
                    (b, sym)
                });
                kernels.insert(key.clone(), b);
            }
            let result = match &kernels[&key] {
                Err(e) => infra_result(
                    plan,
                    seed,
                    &artifacts,
                    format!("preparing the kernel failed: {e}"),
                ),
                Ok((boot, sym)) => {
                    let vm_spec = |p: &Plan, dir: &Path| -> Result<VmSpec, EngineError> {
                        let mut s = VmSpec::new(
                            boot.kernel.bzimage.clone(),
                            boot.initrd.clone(),
                            dir.to_owned(),
                        );
                        s.devices = p.devices.clone();
                        s.accel = args.accel;
                        s.extra_cmdline = p.cmdline.clone();
                        Ok(s)
                    };
                    let connect = |vm: &crate::vm::fixture::Vm, t: Duration| {
                        AgentGuest::connect(vm, t).map(|g| Box::new(g) as Box<dyn Guest>)
                    };
                    let lookup = |name: &str| replayed.get(name).cloned();
                    let ctx = RunContext {
                        vm_spec: &vm_spec,
                        connect: &connect,
                        symbolizer: sym.as_ref(),
                        seed,
                        cycles: args.cycles,
                        duration: args.duration,
                        artifacts: artifacts.clone(),
                        replay: args
                            .replay
                            .is_some()
                            .then_some(&lookup as &engine::ReplayLookup),
                    };
                    let mut r = engine::run_scenario(plan, &ctx, &mut all);
                    r.kernel = Some(boot.kernel.version.clone());
                    r
                }
            };
            all.event(&Event::ScenarioFinished(Box::new(result.clone())));
            results.push(result);
        }
        all.event(&Event::RunFinished);
    }
    let mut status = Status::Ok;
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&json.to_json()).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("dangle run: cannot write {}: {e}", path.display());
            status = Status::Infrastructure;
        }
    }
    if let Some(path) = &args.junit {
        match junit.to_xml() {
            Ok(x) => {
                if let Err(e) = std::fs::write(path, x) {
                    eprintln!("dangle run: cannot write {}: {e}", path.display());
                    status = Status::Infrastructure;
                }
            }
            Err(e) => eprintln!("dangle run: junit: {e}"),
        }
    }
    if results
        .iter()
        .any(|r| matches!(r.outcome, Outcome::Infrastructure { .. }))
    {
        return Status::Infrastructure;
    }
    if results.iter().any(|r| !r.met()) {
        return Status::Findings;
    }
    status
}

fn infra_result(plan: &Plan, seed: u64, artifacts: &Path, error: String) -> ScenarioResult {
    ScenarioResult {
        suite: plan.suite.clone(),
        scenario: plan.name().to_owned(),
        expectation: crate::suite::outcome::describe(&plan.scenario.expect),
        outcome: Outcome::Infrastructure { error },
        findings: Vec::new(),
        method: None,
        cycles: 0,
        cycle_secs: Vec::new(),
        duration_secs: 0.0,
        boot_secs: None,
        seed,
        artifacts: artifacts.to_owned(),
        kernel: None,
        notes: plan.scenario.notes.clone(),
    }
}

fn read_replay(dir: &Path) -> Result<(u64, BTreeMap<String, Schedule>), String> {
    let run: RunRecord = serde_json::from_slice(
        &std::fs::read(dir.join("run.json")).map_err(|e| format!("cannot read run.json: {e}"))?,
    )
    .map_err(|e| format!("run.json: {e}"))?;
    let mut scheds = BTreeMap::new();
    for s in &run.scenarios {
        let p = dir.join(s).join("schedule.json");
        if let Ok(bytes) = std::fs::read(&p) {
            let sched: Schedule =
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", p.display()))?;
            scheds.insert(s.clone(), sched);
        }
    }
    Ok((run.seed, scheds))
}

/// Sends each event to several reporters.
struct Fanout<'a>(Vec<&'a mut dyn Reporter>);

impl Reporter for Fanout<'_> {
    fn event(&mut self, event: &Event) {
        for r in &mut self.0 {
            r.event(event);
        }
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
        let e = load_plans(&["smoke".into()], &["nope".into()]).unwrap_err();
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
                load::load_file(&p).unwrap_or_else(|e| panic!("{}", engine::error_chain(&e)));
            }
        }
    }
}
