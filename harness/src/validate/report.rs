//! What `dangle validate` shows and writes, built from a [`Validation`]
//! only: the side-by-side tables, the JSON document and the JUnit XML.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::stats::Class;
use super::{ExpectationCounts, Row, ScenarioSummary, Validation};
use crate::kernel::KernelIdentity;

/// What a class means for one row, in words.
fn verdict_text(r: &Row) -> String {
    let p = r
        .verdict
        .p_value
        .map_or(String::new(), |p| format!(" (p={p:.3})"));
    match r.verdict.class {
        Class::Inconclusive => match r.verdict.more_runs {
            Some(m) => format!("inconclusive{p}: ~{m} more run(s) a side would settle it"),
            None => format!("inconclusive{p}: too rare to settle by repeating"),
        },
        c => format!("{}{p}", c.word()),
    }
}

fn expectation_cell(c: &ExpectationCounts) -> String {
    let runs = c.met + c.not_met;
    let mut s = format!("met {}/{runs}", c.met);
    if c.infrastructure > 0 {
        s.push_str(&format!(", {} infra", c.infrastructure));
    }
    s
}

/// A note on a scenario whose expectation changed between the kernels.
/// Missing a `reproduces`/`hangs-in` expectation with the patch is what a
/// fix looks like, so it is said as such and never counted as a failure.
fn expectation_note(s: &ScenarioSummary) -> &'static str {
    let clean = s.expectation == "clean";
    match (s.base.met > 0, s.candidate.met > 0) {
        (true, false) if !clean && s.candidate.not_met > 0 => "no longer reproduces with the patch",
        (false, true) if !clean => "reproduces only with the patch",
        (true, false) if clean && s.candidate.not_met > 0 => "no longer clean with the patch",
        (false, true) if clean => "clean only with the patch",
        _ => "",
    }
}

fn widths<'a>(cells: impl Iterator<Item = &'a str>, min: usize, max: usize) -> usize {
    cells.map(str::len).max().unwrap_or(min).clamp(min, max)
}

/// The tables printed at the end: findings side by side, then each
/// scenario's expectation on both kernels, then infrastructure failures.
pub fn table(v: &Validation) -> String {
    let mut s = String::new();
    s.push_str(&format!("\nbase:      {}\n", kernels(&v.base)));
    s.push_str(&format!("candidate: {}\n", kernels(&v.candidate)));
    s.push_str(&format!(
        "{} run(s) a side, seeds {}..={}, alpha {}\n\n",
        v.runs,
        v.seed,
        v.seed.wrapping_add(u64::from(v.runs.saturating_sub(1))),
        v.alpha
    ));
    let ws = widths(v.scenarios.iter().map(|r| r.scenario.as_str()), 8, 32);
    if v.findings.is_empty() {
        s.push_str("no findings on either kernel\n");
    } else {
        let wt = widths(v.findings.iter().map(|r| r.title.as_str()), 7, 64);
        s.push_str(&format!(
            "{:<ws$}  {:<wt$}  {:>6}  {:>9}  verdict\n",
            "scenario", "finding", "base", "candidate"
        ));
        s.push_str(&format!("{}\n", "-".repeat(ws + wt + 32)));
        for r in &v.findings {
            s.push_str(&format!(
                "{:<ws$}  {:<wt$}  {:>6}  {:>9}  {}\n",
                r.scenario,
                r.title,
                r.base.to_string(),
                r.candidate.to_string(),
                verdict_text(r)
            ));
        }
    }
    let we = widths(v.scenarios.iter().map(|r| r.expectation.as_str()), 11, 48);
    s.push_str(&format!(
        "\n{:<ws$}  {:<we$}  {:<14}  candidate\n",
        "scenario", "expectation", "base"
    ));
    s.push_str(&format!("{}\n", "-".repeat(ws + we + 34)));
    for sc in &v.scenarios {
        let line = format!(
            "{:<ws$}  {:<we$}  {:<14}  {:<14}  {}",
            sc.scenario,
            sc.expectation,
            expectation_cell(&sc.base),
            expectation_cell(&sc.candidate),
            expectation_note(sc)
        );
        s.push_str(line.trim_end());
        s.push('\n');
    }
    if !v.infrastructure.is_empty() {
        s.push_str("\ninfrastructure failures (these runs say nothing about either kernel):\n");
        for f in &v.infrastructure {
            s.push_str(&format!(
                "  {} {} seed {}: {}\n",
                f.side.word(),
                f.scenario,
                f.seed,
                f.error
            ));
        }
    }
    let count = |c: Class| v.of_class(c).count();
    s.push_str(&format!(
        "\n{} fixed, {} regression(s), {} unchanged, {} inconclusive{}\n",
        count(Class::Fixed),
        count(Class::Regression),
        count(Class::Unchanged),
        count(Class::Inconclusive),
        if v.interrupted { " (interrupted)" } else { "" }
    ));
    s
}

fn kernels(ks: &[KernelIdentity]) -> String {
    ks.iter()
        .map(KernelIdentity::describe)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The `--json` document: the validation plus dangle's version and the
/// rule, with both kernels identified.
pub fn json(v: &Validation, expect_fixed: Option<&regex::Regex>) -> serde_json::Value {
    let mut doc = serde_json::to_value(v).unwrap_or_default();
    if let Some(o) = doc.as_object_mut() {
        o.insert("dangle".into(), env!("CARGO_PKG_VERSION").into());
        o.insert("rule".into(), "fisher-exact-one-sided".into());
        o.insert(
            "expect_fixed".into(),
            expect_fixed.map(|r| r.as_str().to_owned()).into(),
        );
        o.insert("status".into(), (v.status(expect_fixed) as u8).into());
    }
    doc
}

fn add_kernel_properties(suite: &mut TestSuite, side: &str, ks: &[KernelIdentity]) {
    for (i, k) in ks.iter().enumerate() {
        let p = |what: &str| format!("{side}.{i}.{what}");
        suite.add_property((p("version").as_str(), k.version.as_str()));
        suite.add_property((p("source").as_str(), k.source.as_str()));
        let patches = k
            .patches
            .iter()
            .map(|p| format!("{}@{}", p.name, &p.sha256[..p.sha256.len().min(12)]))
            .collect::<Vec<_>>()
            .join(",");
        suite.add_property((p("patches").as_str(), patches.as_str()));
        suite.add_property((
            p("config_hash").as_str(),
            k.config_hash.as_deref().unwrap_or("-"),
        ));
        suite.add_property((p("cache_key").as_str(), k.cache_key.as_str()));
    }
}

/// The `--junit` document: one testcase per (scenario, title), a failure
/// for each regression; infrastructure failures as errors; a failure when
/// `--expect-fixed` found nothing fixed. Kernel identities are properties
/// of the testsuite.
pub fn junit(
    v: &Validation,
    expect_fixed: Option<&regex::Regex>,
) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new("dangle validate");
    let mut suite = TestSuite::new("validate");
    add_kernel_properties(&mut suite, "base", &v.base);
    add_kernel_properties(&mut suite, "candidate", &v.candidate);
    suite.add_property(("seed", v.seed.to_string().as_str()));
    suite.add_property(("runs", v.runs.to_string().as_str()));
    for r in &v.findings {
        let status = if r.verdict.class == Class::Regression {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
            st.set_type("regression");
            st.set_message(format!(
                "seen in {} candidate run(s), never in {} base run(s)",
                r.candidate, r.base.runs
            ));
            st
        } else {
            TestCaseStatus::success()
        };
        let mut tc = TestCase::new(format!("{}: {}", r.scenario, r.title), status);
        tc.set_classname(format!("dangle.validate.{}", r.scenario));
        tc.add_property(("class", r.verdict.class.word()));
        tc.add_property(("base", r.base.to_string().as_str()));
        tc.add_property(("candidate", r.candidate.to_string().as_str()));
        tc.set_system_out(verdict_text(r));
        suite.add_test_case(tc);
    }
    for f in &v.infrastructure {
        let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
        st.set_type("infrastructure");
        st.set_message(f.error.clone());
        let mut tc = TestCase::new(
            format!(
                "{}: infrastructure ({} seed {})",
                f.scenario,
                f.side.word(),
                f.seed
            ),
            st,
        );
        tc.set_classname(format!("dangle.validate.{}", f.scenario));
        suite.add_test_case(tc);
    }
    if let Some(re) = expect_fixed {
        let status = if v.fixed_matches(re) {
            TestCaseStatus::success()
        } else {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
            st.set_type("not fixed");
            st.set_message(format!("no finding matching /{re}/ is fixed"));
            st
        };
        let mut tc = TestCase::new(format!("expect-fixed /{re}/"), status);
        tc.set_classname("dangle.validate");
        tc.set_time(Duration::ZERO);
        suite.add_test_case(tc);
    }
    report.add_test_suite(suite);
    report.to_string()
}
