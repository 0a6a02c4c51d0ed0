//! `dangle validate` end to end on the simulated platform (`crate::sim`):
//! the real argument parsing, [`cli::execute`], the runner and the engine,
//! with kernels whose patches decide what the console shows. No QEMU.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use super::cli::{self, Config, Platforms};
use super::*;
use crate::sim::{SimCounters, SimEffect, SimKernel, SimPlatform, SimRule};

/// Two scenarios on one GPIO controller: `s1` expects a clean run, `bug`
/// expects `WARNING in sim_bug` (a known bug the patch should fix).
const SUITE: &str = "name: sim
defaults:
  settle: 0s
scenarios:
  - name: s1
    devices:
      - { kind: gpio, id: gpio0, lines: 8 }
    consumers:
      - gpio-edge-blocking: { device: gpio0, line: 1 }
    unplug: { method: qmp, delay: 0ms }
    expect: clean
  - name: bug
    devices:
      - { kind: gpio, id: gpio0, lines: 8 }
    unplug: { method: qmp, delay: 0ms }
    expect: { reproduces: \"^WARNING in sim_bug$\" }
";

struct Fixture {
    dir: tempfile::TempDir,
    counters: Arc<SimCounters>,
}

struct Sim {
    rule: Arc<SimRule>,
    counters: Arc<SimCounters>,
}

impl Platforms for Sim {
    fn platform<'k>(&self, sel: &'k crate::prepare::KernelSelect) -> Box<dyn Platform + 'k> {
        Box::new(SimPlatform::new(sel, &self.rule, &self.counters))
    }
}

struct Ran {
    status: Status,
    v: Validation,
    out: String,
    err: String,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sim.yaml"), SUITE).unwrap();
        for p in ["fix.patch", "bad.patch", "other.patch", "extra.patch"] {
            std::fs::write(
                dir.path().join(p),
                format!("--- a/{p}.c\n+++ b/{p}.c\n@@ -1 +1 @@\n-a\n+b\n"),
            )
            .unwrap();
        }
        Self {
            dir,
            counters: Arc::default(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// The config of `dangle validate ARGS --suite sim.yaml`, cached and
    /// with artifacts in the fixture's directory.
    fn config(&self, args: &[&str]) -> Config {
        let suite = self.path("sim.yaml");
        let artifacts = self.path("artifacts");
        let mut argv = vec![
            "dangle",
            "validate",
            "--suite",
            &suite,
            "--artifacts",
            &artifacts,
        ];
        argv.extend(args);
        let crate::cli::Command::Validate(a) =
            crate::cli::Cli::try_parse_from(argv).unwrap().command
        else {
            panic!("not validate")
        };
        let mut c = Config::try_from(a).unwrap();
        c.options.cache = Some(self.dir.path().join("cache"));
        c.options.timing = Timing {
            boot: Duration::from_secs(1),
            reprobe: Duration::from_millis(400),
        };
        c
    }

    fn run(
        &self,
        args: &[&str],
        rule: impl Fn(&SimKernel, &str, u64) -> Vec<SimEffect> + Send + Sync + 'static,
    ) -> Ran {
        let config = self.config(args);
        let sim = Sim {
            rule: Arc::new(rule),
            counters: Arc::clone(&self.counters),
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (status, v) = cli::execute(&config, &sim, &mut out, &mut err);
        let err = String::from_utf8(err).unwrap();
        Ran {
            status,
            v: v.unwrap_or_else(|| panic!("no validation: {err}")),
            out: String::from_utf8(out).unwrap(),
            err,
        }
    }
}

fn warning(f: &str) -> Vec<SimEffect> {
    vec![SimEffect::Warning(f.to_owned())]
}

/// The known bug shows on every kernel without `fix.patch`.
fn bug_unless_fixed(k: &SimKernel, scenario: &str, _: u64) -> Vec<SimEffect> {
    if scenario == "bug" && !k.has("fix.patch") {
        warning("sim_bug")
    } else {
        Vec::new()
    }
}

fn row<'a>(v: &'a Validation, scenario: &str, title: &str) -> &'a Row {
    v.findings
        .iter()
        .find(|r| r.scenario == scenario && r.title == title)
        .unwrap_or_else(|| panic!("no row {scenario}/{title} in {:?}", v.findings))
}

#[test]
fn validate_base_only_warning_is_fixed_and_expect_fixed_exits_0() {
    let f = Fixture::new();
    let fix = f.path("fix.patch");
    let r = f.run(&[&fix, "--expect-fixed", "sim_bug"], bug_unless_fixed);
    let bug = row(&r.v, "bug", "WARNING in sim_bug");
    assert_eq!(
        (bug.base, bug.candidate),
        (Counts::new(3, 3), Counts::new(0, 3))
    );
    assert_eq!(bug.verdict.class, Class::Fixed);
    assert_eq!(r.v.findings.len(), 1, "s1 stays clean: {:?}", r.v.findings);
    assert_eq!(r.status, Status::Ok, "{}\n{}", r.out, r.err);
    assert!(r.out.contains("WARNING in sim_bug"), "{}", r.out);
    assert!(
        r.out.contains("3/3") && r.out.contains("0/3") && r.out.contains("fixed"),
        "{}",
        r.out
    );
    // Each run of a scenario used the same seed on both kernels.
    for i in 0..3 {
        let seeds: Vec<u64> =
            r.v.runs_detail
                .iter()
                .filter(|x| x.index == i)
                .map(|x| x.seed)
                .collect();
        assert_eq!(seeds, [u64::from(i) + 1; 4], "run {i}");
    }
}

#[test]
fn validate_missed_known_bug_on_the_candidate_is_the_desired_outcome() {
    let f = Fixture::new();
    let fix = f.path("fix.patch");
    let r = f.run(&[&fix, "--only", "bug"], bug_unless_fixed);
    let s = &r.v.scenarios[0];
    assert_eq!((s.base.met, s.base.not_met), (3, 0));
    assert_eq!((s.candidate.met, s.candidate.not_met), (0, 3));
    assert_eq!(
        r.status,
        Status::Ok,
        "not meeting `reproduces` with the fix is not a failure"
    );
    assert!(
        r.out.contains("no longer reproduces with the patch"),
        "{}",
        r.out
    );
}

#[test]
fn validate_expect_fixed_without_a_matching_fix_exits_1() {
    let f = Fixture::new();
    let other = f.path("other.patch");
    let r = f.run(
        &[&other, "--only", "bug", "--expect-fixed", "sim_bug"],
        bug_unless_fixed,
    );
    assert_eq!(
        row(&r.v, "bug", "WARNING in sim_bug").verdict.class,
        Class::Unchanged
    );
    assert_eq!(r.status, Status::Findings);
    assert!(r.out.contains("no matching finding is fixed"), "{}", r.out);
}

#[test]
fn validate_candidate_only_warning_is_a_regression_and_exits_1() {
    let f = Fixture::new();
    let bad = f.path("bad.patch");
    let r = f.run(&[&bad, "--only", "s1"], |k, _, _| {
        if k.has("bad.patch") {
            warning("sim_new")
        } else {
            Vec::new()
        }
    });
    let reg = row(&r.v, "s1", "WARNING in sim_new");
    assert_eq!(
        (reg.base, reg.candidate),
        (Counts::new(0, 3), Counts::new(3, 3))
    );
    assert_eq!(reg.verdict.class, Class::Regression);
    assert_eq!(r.status, Status::Findings);
}

#[test]
fn validate_warning_on_both_kernels_is_unchanged_and_exits_0() {
    let f = Fixture::new();
    let other = f.path("other.patch");
    let r = f.run(&[&other, "--only", "s1"], |_, _, _| {
        vec![SimEffect::StuckConsumers]
    });
    let row = row(&r.v, "s1", "consumer stuck: gpio-edge-blocking in read");
    assert_eq!(row.verdict.class, Class::Unchanged);
    assert_eq!(r.status, Status::Ok);
}

/// Seen on the base only in runs whose seed satisfies `pred`.
fn base_when(
    pred: impl Fn(u64) -> bool + Send + Sync + 'static,
) -> impl Fn(&SimKernel, &str, u64) -> Vec<SimEffect> + Send + Sync + 'static {
    move |k, _, seed| {
        if !k.has("fix.patch") && pred(seed) {
            warning("sim_race")
        } else {
            Vec::new()
        }
    }
}

#[test]
fn validate_intermittent_warning_is_inconclusive_with_runs_to_settle() {
    let f = Fixture::new();
    let fix = f.path("fix.patch");
    // Seeds 1, 2, 3: only seed 3 shows it.
    let r = f.run(
        &[&fix, "--only", "s1", "--expect-fixed", "sim_race"],
        base_when(|s| s % 3 == 0),
    );
    let row = row(&r.v, "s1", "WARNING in sim_race");
    assert_eq!(
        (row.base, row.candidate),
        (Counts::new(1, 3), Counts::new(0, 3))
    );
    assert_eq!(row.verdict.class, Class::Inconclusive);
    assert_eq!(row.verdict.more_runs, Some(8));
    assert!(
        r.out.contains("~8 more run(s) a side would settle it"),
        "{}",
        r.out
    );
    assert_eq!(
        r.status,
        Status::Findings,
        "an inconclusive fix is not the expected fix"
    );
}

#[test]
fn validate_runs_auto_adds_runs_until_settled() {
    let f = Fixture::new();
    let fix = f.path("fix.patch");
    // Odd seeds: 2/3, 2/4, 3/5, 3/6, then 4/7 vs 0/7 (p = 0.035).
    let r = f.run(
        &[&fix, "--only", "s1", "--runs", "auto"],
        base_when(|s| s % 2 == 1),
    );
    assert_eq!(r.v.runs, 7, "{}", r.err);
    let row = row(&r.v, "s1", "WARNING in sim_race");
    assert_eq!(
        (row.base, row.candidate),
        (Counts::new(4, 7), Counts::new(0, 7))
    );
    assert_eq!(row.verdict.class, Class::Fixed);
    assert!(r.err.contains("running again"), "{}", r.err);
    assert!(
        r.err
            .contains("after 7 run(s) a side: every verdict settled"),
        "{}",
        r.err
    );
    assert_eq!(f.counters.launches("fix.patch"), 7);
}

#[test]
fn validate_runs_auto_stops_at_the_cap() {
    let f = Fixture::new();
    let fix = f.path("fix.patch");
    let r = f.run(
        &[&fix, "--only", "s1", "--runs", "auto", "--max-runs", "4"],
        base_when(|s| s % 5 == 1),
    );
    assert_eq!(r.v.runs, 4);
    assert_eq!(
        row(&r.v, "s1", "WARNING in sim_race").verdict.class,
        Class::Inconclusive
    );
    assert!(r.err.contains("stopping at --max-runs"), "{}", r.err);
    assert_eq!(f.counters.launches("base"), 4);
}

#[test]
fn validate_second_candidate_reuses_the_cached_base() {
    let f = Fixture::new();
    let (fix, other) = (f.path("fix.patch"), f.path("other.patch"));
    let first = f.run(&[&fix], bug_unless_fixed);
    assert_eq!(f.counters.launches("base"), 6, "3 runs of 2 scenarios");
    let second = f.run(&[&other], bug_unless_fixed);
    assert_eq!(
        f.counters.launches("base"),
        6,
        "the base ran again: {}",
        second.err
    );
    assert_eq!(f.counters.launches("other.patch"), 6);
    // Preparing still happens (it is how the identity is known), once per run.
    assert_eq!(f.counters.prepares("base"), 2);
    assert!(
        second
            .v
            .runs_detail
            .iter()
            .filter(|r| r.side == Side::Base)
            .all(|r| r.cached)
    );
    assert!(
        second.err.contains("2 from the base cache"),
        "{}",
        second.err
    );
    // The same base results as the first time.
    let titles = |v: &Validation| -> Vec<Vec<String>> {
        v.runs_detail
            .iter()
            .filter(|r| r.side == Side::Base)
            .map(|r| r.titles.clone())
            .collect()
    };
    assert_eq!(titles(&first.v), titles(&second.v));
    assert_eq!(
        row(&second.v, "bug", "WARNING in sim_bug").verdict.class,
        Class::Unchanged
    );
}

#[test]
fn validate_base_cache_never_serves_another_base_kernel() {
    let f = Fixture::new();
    let (fix, extra) = (f.path("fix.patch"), f.path("extra.patch"));
    f.run(&[&fix, "--only", "bug"], bug_unless_fixed);
    f.run(
        &[&fix, "--only", "bug", "--patch", &extra],
        bug_unless_fixed,
    );
    assert_eq!(f.counters.launches("base"), 3);
    assert_eq!(
        f.counters.launches("extra.patch"),
        3,
        "another base kernel runs"
    );
    // Another seed is another run too.
    f.run(&[&fix, "--only", "bug", "--seed", "100"], bug_unless_fixed);
    assert_eq!(f.counters.launches("base"), 6);
}

#[test]
fn validate_infrastructure_failure_exits_3_and_is_listed() {
    let f = Fixture::new();
    let bad = f.path("bad.patch");
    let r = f.run(&[&bad, "--only", "s1", "--runs", "1"], |k, _, _| {
        if k.has("bad.patch") {
            vec![SimEffect::NoBoot]
        } else {
            Vec::new()
        }
    });
    assert_eq!(r.status, Status::Infrastructure);
    assert_eq!(r.v.infrastructure.len(), 1);
    assert_eq!(r.v.infrastructure[0].side, Side::Candidate);
    assert!(r.out.contains("infrastructure failures"), "{}", r.out);
    assert_eq!(r.v.scenarios[0].candidate.infrastructure, 1);
}

#[test]
fn validate_infrastructure_runs_are_not_cached() {
    let f = Fixture::new();
    let fix = f.path("fix.patch");
    let down = |k: &SimKernel, _: &str, _: u64| {
        if k.patches.is_empty() {
            vec![SimEffect::NoBoot]
        } else {
            Vec::new()
        }
    };
    f.run(&[&fix, "--only", "s1", "--runs", "1"], down);
    let r = f.run(&[&fix, "--only", "s1", "--runs", "1"], |_, _, _| Vec::new());
    assert_eq!(f.counters.launches("base"), 2);
    assert_eq!(r.status, Status::Ok);
}

#[test]
fn validate_json_and_junit_identify_both_kernels_and_classes() {
    let f = Fixture::new();
    let bad = f.path("bad.patch");
    let (json, junit) = (f.path("v.json"), f.path("v.xml"));
    let r = f.run(
        &[
            &bad,
            "--json",
            &json,
            "--junit",
            &junit,
            "--expect-fixed",
            "nothing",
        ],
        |k, s, _| {
            if k.has("bad.patch") && s == "s1" {
                warning("sim_new")
            } else {
                Vec::new()
            }
        },
    );
    assert_eq!(r.status, Status::Findings);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["seed"], 1);
    assert_eq!(v["runs"], 3);
    assert_eq!(v["rule"], "fisher-exact-one-sided");
    assert_eq!(v["status"], 1);
    for side in ["base", "candidate"] {
        let k = &v[side][0];
        for key in ["version", "source", "patches", "config_hash", "cache_key"] {
            assert!(k.get(key).is_some(), "{side} lacks {key}: {k}");
        }
    }
    assert_eq!(v["candidate"][0]["patches"][0]["name"], "bad.patch");
    assert_eq!(v["base"][0]["patches"].as_array().map(Vec::len), Some(0));
    let row = &v["findings"][0];
    assert_eq!(row["scenario"], "s1");
    assert_eq!(row["title"], "WARNING in sim_new");
    assert_eq!(row["class"], "regression");
    assert_eq!(row["base"], serde_json::json!({ "seen": 0, "runs": 3 }));
    assert_eq!(
        row["candidate"],
        serde_json::json!({ "seen": 3, "runs": 3 })
    );
    assert!(row.get("p_value").is_some() && row.get("more_runs").is_some());
    assert_eq!(v["scenarios"][1]["base"]["met"], 0);
    assert_eq!(v["runs_detail"].as_array().map(Vec::len), Some(12));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(
        xml.matches("<testcase ").count(),
        2,
        "one per row, plus expect-fixed: {xml}"
    );
    assert_eq!(xml.matches("<failure ").count(), 2, "{xml}");
    assert!(
        xml.contains("base.0.config_hash") && xml.contains("candidate.0.patches"),
        "{xml}"
    );
}

fn args_error(f: &Fixture, args: &[&str]) -> Status {
    let suite = f.path("sim.yaml");
    let mut argv = vec!["dangle", "validate", "--suite", &suite];
    argv.extend(args);
    let crate::cli::Command::Validate(a) = crate::cli::Cli::try_parse_from(argv).unwrap().command
    else {
        panic!("not validate")
    };
    crate::exit::status_of(&Config::try_from(a).unwrap_err())
}

#[test]
fn validate_args_unusable_input_is_bad_input() {
    let f = Fixture::new();
    let fix = f.path("fix.patch");
    assert_eq!(
        args_error(&f, &[&f.path("missing.patch")]),
        Status::BadInput
    );
    assert_eq!(
        args_error(&f, &[&fix, "--kernel", "bz", "--vmlinux", "vm"]),
        Status::BadInput
    );
    assert_eq!(args_error(&f, &[&fix, "--max-runs", "0"]), Status::BadInput);
    let empty = f.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(args_error(&f, &[empty.to_str().unwrap()]), Status::BadInput);
    for bad in [
        vec!["validate"],
        vec!["validate", &fix, "--runs", "0"],
        vec!["validate", &fix, "--runs", "sometimes"],
        vec!["validate", &fix, "--expect-fixed", "("],
    ] {
        let e = crate::cli::Cli::try_parse_from(std::iter::once("dangle").chain(bad.clone()))
            .unwrap_err();
        assert_eq!(e.exit_code(), 2, "{bad:?}");
    }
}

#[test]
fn validate_args_candidate_is_the_base_plus_the_patches() {
    let f = Fixture::new();
    let fix = f.path("fix.patch");
    let mut argv = vec![
        "dangle",
        "validate",
        &fix,
        "--patch",
        "mine.patch",
        "--config-add",
        "CONFIG_X=y",
    ];
    argv.push("--runs");
    argv.push("auto");
    let crate::cli::Command::Validate(a) = crate::cli::Cli::try_parse_from(argv).unwrap().command
    else {
        panic!("not validate")
    };
    let c = Config::try_from(a).unwrap();
    assert_eq!(c.base.patches, [PathBuf::from("mine.patch")]);
    assert_eq!(
        c.candidate.patches,
        [PathBuf::from("mine.patch"), PathBuf::from(&fix)]
    );
    assert_eq!(c.candidate.config_add, ["CONFIG_X=y"]);
    assert_eq!(c.suites, ["smoke", "known-bugs"]);
    assert_eq!(c.options.runs, Runs::Auto { max: 10 });
    assert_eq!(c.options.seed, cli::DEFAULT_SEED);
    assert!(
        c.options
            .cache
            .as_deref()
            .is_some_and(|p| p.ends_with("validate"))
    );
}

#[test]
fn validate_default_suites_load() {
    let plans =
        crate::suite::catalog::load_plans(&cli::DEFAULT_SUITES.map(String::from), &[]).unwrap();
    assert!(plans.iter().any(|p| p.suite == "smoke"));
    assert!(plans.iter().any(|p| p.suite == "known-bugs"));
}

#[test]
fn validate_seeds_of_runs_are_consecutive_and_wrap() {
    let mut o = ValidateOptions::new(u64::MAX, Path::new("a").to_owned());
    assert_eq!(o.seed_of(0), u64::MAX);
    assert_eq!(o.seed_of(1), 0);
    o.seed = 5;
    assert_eq!(o.seed_of(2), 7);
}
