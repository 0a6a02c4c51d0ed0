//! Reporters: the terminal (progress, findings as they happen, the final
//! table), JSON, JUnit XML and the per-scenario artifacts (`result.json`,
//! `postmortem.txt`). Each builds its output from events only, and writes
//! its files when the run finishes, interrupted or not.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::engine::scenario_dir;
use super::events::{Event, Reporter, ReporterError};
use super::outcome::{Outcome, ScenarioResult};

/// Progress and findings on stderr; the summary table on stdout.
#[derive(Debug)]
pub struct TerminalReporter {
    bar: Option<ProgressBar>,
    seen: std::collections::HashSet<(String, String)>,
    results: Vec<ScenarioResult>,
    artifacts: Option<PathBuf>,
}

impl TerminalReporter {
    /// A spinner on a terminal (not under `CI`), plain lines otherwise.
    pub fn new() -> Self {
        let fancy = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        let bar = fancy.then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Self {
            bar,
            seen: Default::default(),
            results: Vec::new(),
            artifacts: None,
        }
    }

    fn line(&self, s: &str) {
        match &self.bar {
            Some(b) => b.println(s),
            None => eprintln!("{s}"),
        }
    }

    fn status(&self, s: String) {
        match &self.bar {
            Some(b) => b.set_message(s),
            None => eprintln!("{s}"),
        }
    }
}

impl Default for TerminalReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for TerminalReporter {
    fn event(&mut self, event: &Event) {
        match event {
            Event::RunStarted {
                scenarios,
                seed,
                artifacts,
            } => {
                self.artifacts = Some(artifacts.clone());
                self.line(&format!(
                    "dangle run: {scenarios} scenario(s), seed {seed}, artifacts {}",
                    artifacts.display()
                ));
            }
            Event::Preparing { what } => self.status(format!("preparing: {what}")),
            Event::ScenarioStarted { index, total, name } => {
                self.status(format!("[{}/{total}] {name}: booting", index + 1));
            }
            Event::VmReady {
                scenario,
                boot_secs,
                accel,
            } => {
                self.status(format!(
                    "{scenario}: guest ready after {boot_secs:.1}s ({accel})"
                ));
            }
            Event::Cycle {
                scenario,
                index,
                of,
                target,
                secs,
                ..
            } => {
                let of = of.map_or(String::new(), |n| format!("/{n}"));
                self.status(format!(
                    "{scenario}: cycle {}{of} ({target}) in {secs:.2}s",
                    index + 1
                ));
            }
            Event::Finding { scenario, finding } => {
                // Repeats (a report storm) are counted in the table, not printed.
                if self.seen.insert((scenario.clone(), finding.title.clone())) {
                    self.line(&format!("  {scenario}: finding: {}", finding.title));
                }
            }
            Event::UnplugStarted {
                scenario,
                method,
                target,
            } => self.status(format!("{scenario}: unplugging {target} ({method})")),
            Event::UnplugFinished { .. } | Event::ConsumerStuck { .. } => {}
            Event::Postmortem { scenario, text } => {
                self.line(&format!("{scenario}: the vm failed; its logs:\n{text}"));
            }
            Event::Interrupted { reason } => {
                self.line(&format!("dangle: run interrupted: {reason}"))
            }
            Event::ScenarioFinished { result: r, .. } => {
                let extra = match &r.outcome {
                    Outcome::Met => String::new(),
                    Outcome::NotMet { reason } => format!(": {reason}"),
                    Outcome::Infrastructure { error } => format!(": {error}"),
                };
                self.line(&format!("{} {}{extra}", r.outcome.word(), r.scenario));
                self.results.push((**r).clone());
            }
            Event::RunFinished => {
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
                let mut out = std::io::stdout().lock();
                let _ = out
                    .write_all(summary_table(&self.results, self.artifacts.as_deref()).as_bytes());
            }
        }
    }
}

/// The end-of-run table: scenario, expectation, outcome, findings with
/// counts, artifacts.
pub fn summary_table(results: &[ScenarioResult], artifacts: Option<&Path>) -> String {
    let w_name = results
        .iter()
        .map(|r| r.scenario.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let w_exp = results
        .iter()
        .map(|r| r.expectation.len())
        .max()
        .unwrap_or(11)
        .clamp(11, 48);
    let mut s = format!(
        "\n{:<w_name$}  {:<w_exp$}  {:<7} findings\n",
        "scenario", "expectation", "outcome"
    );
    s.push_str(&format!("{}\n", "-".repeat(w_name + w_exp + 28)));
    for r in results {
        let findings = if r.findings.is_empty() {
            "-".to_owned()
        } else {
            r.findings
                .iter()
                .map(|g| {
                    if g.count > 1 {
                        format!("{} (x{})", g.title, g.count)
                    } else {
                        g.title.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let mut lines = findings.lines();
        s.push_str(&format!(
            "{:<w_name$}  {:<w_exp$}  {:<7} {}\n",
            r.scenario,
            r.expectation,
            r.outcome.word(),
            lines.next().unwrap_or("-")
        ));
        for l in lines {
            s.push_str(&format!("{:<w$} {l}\n", "", w = w_name + w_exp + 11));
        }
        if let Outcome::Infrastructure { error } = &r.outcome {
            s.push_str(&format!(
                "{:<w$} infrastructure: {error}\n",
                "",
                w = w_name + w_exp + 11
            ));
        }
    }
    let met = results.iter().filter(|r| r.met()).count();
    s.push_str(&format!(
        "\n{met}/{} scenario(s) met their expectation",
        results.len()
    ));
    if let Some(a) = artifacts {
        s.push_str(&format!("; artifacts: {}", a.display()));
    }
    s.push('\n');
    s
}

/// Collects results for the JSON file, written at the end of the run when
/// a path is given.
#[derive(Debug, Default)]
pub struct JsonReporter {
    seed: u64,
    results: Vec<ScenarioResult>,
    interrupted: Option<String>,
    path: Option<PathBuf>,
    errors: Vec<ReporterError>,
}

impl Reporter for JsonReporter {
    fn event(&mut self, event: &Event) {
        match event {
            Event::RunStarted { seed, .. } => self.seed = *seed,
            Event::ScenarioFinished { result, .. } => self.results.push((**result).clone()),
            Event::Interrupted { reason } => self.interrupted = Some(reason.clone()),
            Event::RunFinished => {
                let text = serde_json::to_string_pretty(&self.to_json());
                let text = text.map_err(std::io::Error::other);
                write_output(self.path.as_deref(), text, &mut self.errors);
            }
            _ => {}
        }
    }

    fn errors(&mut self) -> Vec<ReporterError> {
        std::mem::take(&mut self.errors)
    }
}

impl JsonReporter {
    /// A reporter that writes its document to `path` when the run ends.
    pub fn to_file(path: PathBuf) -> Self {
        Self {
            path: Some(path),
            ..Self::default()
        }
    }

    /// The JSON document.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "dangle": env!("CARGO_PKG_VERSION"),
            "seed": self.seed,
            "scenarios": self.results,
            "met": self.results.iter().filter(|r| r.met()).count(),
            "total": self.results.len(),
            "interrupted": self.interrupted,
        })
    }
}

/// Collects results into JUnit XML: one testsuite per suite, one testcase
/// per scenario, each distinct finding of a failed scenario a failure.
#[derive(Debug, Default)]
pub struct JunitReporter {
    results: Vec<ScenarioResult>,
    path: Option<PathBuf>,
    errors: Vec<ReporterError>,
}

impl Reporter for JunitReporter {
    fn event(&mut self, event: &Event) {
        match event {
            Event::ScenarioFinished { result, .. } => self.results.push((**result).clone()),
            Event::RunFinished => {
                let xml = self.to_xml().map_err(std::io::Error::other);
                write_output(self.path.as_deref(), xml, &mut self.errors);
            }
            _ => {}
        }
    }

    fn errors(&mut self) -> Vec<ReporterError> {
        std::mem::take(&mut self.errors)
    }
}

impl JunitReporter {
    /// A reporter that writes its document to `path` when the run ends.
    pub fn to_file(path: PathBuf) -> Self {
        Self {
            path: Some(path),
            ..Self::default()
        }
    }

    /// The XML document.
    pub fn to_xml(&self) -> Result<String, quick_junit::SerializeError> {
        let mut report = Report::new("dangle");
        let mut suites: Vec<TestSuite> = Vec::new();
        for r in &self.results {
            let idx = match suites.iter().position(|s| s.name.as_str() == r.suite) {
                Some(i) => i,
                None => {
                    suites.push(TestSuite::new(r.suite.clone()));
                    suites.len() - 1
                }
            };
            let status = match &r.outcome {
                Outcome::Met => TestCaseStatus::success(),
                Outcome::NotMet { reason } => {
                    let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    st.set_message(reason.clone());
                    st.set_type("expectation not met");
                    let text = r
                        .findings
                        .iter()
                        .map(|g| format!("=== {} (x{})\n{}\n", g.title, g.count, g.first.report))
                        .collect::<String>();
                    st.set_description(text);
                    st
                }
                Outcome::Infrastructure { error } => {
                    let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
                    st.set_message(error.clone());
                    st.set_type("infrastructure");
                    st
                }
            };
            let mut tc = TestCase::new(r.scenario.clone(), status);
            tc.set_classname(format!("dangle.{}", r.suite));
            tc.set_time(Duration::from_secs_f64(r.duration_secs.max(0.0)));
            tc.add_property(("expectation", r.expectation.as_str()));
            tc.add_property(("artifacts", r.artifacts.display().to_string().as_str()));
            tc.add_property(("seed", r.seed.to_string().as_str()));
            if r.met() && !r.findings.is_empty() {
                tc.set_system_out(
                    r.findings
                        .iter()
                        .map(|g| format!("=== {} (x{})\n{}\n", g.title, g.count, g.first.report))
                        .collect::<String>(),
                );
            }
            suites[idx].add_test_case(tc);
        }
        report.add_test_suites(suites);
        report.to_string()
    }
}

/// Writes a reporter's document to `path` (when it has one), recording a
/// failure to render or write it.
fn write_output(
    path: Option<&Path>,
    text: std::io::Result<String>,
    errors: &mut Vec<ReporterError>,
) {
    let Some(path) = path else { return };
    if let Err(source) = text.and_then(|t| std::fs::write(path, t)) {
        errors.push(ReporterError {
            path: path.to_owned(),
            source,
        });
    }
}

/// Writes each scenario's `result.json` (the result and every finding) and,
/// when its VM failed, `postmortem.txt`, into the scenario's artifacts
/// directory.
#[derive(Debug, Default)]
pub struct ArtifactsReporter {
    root: PathBuf,
    errors: Vec<ReporterError>,
}

impl ArtifactsReporter {
    fn write(&mut self, path: PathBuf, bytes: &[u8]) {
        let r = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, bytes));
        if let Err(source) = r {
            self.errors.push(ReporterError { path, source });
        }
    }
}

impl Reporter for ArtifactsReporter {
    fn event(&mut self, event: &Event) {
        match event {
            Event::RunStarted { artifacts, .. } => self.root = artifacts.clone(),
            Event::Postmortem { scenario, text } => {
                let path = scenario_dir(&self.root, scenario).join("postmortem.txt");
                self.write(path, text.as_bytes());
            }
            Event::ScenarioFinished { result, findings } => {
                let doc = serde_json::json!({ "result": result, "findings": findings });
                let bytes = serde_json::to_vec_pretty(&doc).unwrap_or_default();
                self.write(result.artifacts.join("result.json"), &bytes);
            }
            _ => {}
        }
    }

    fn errors(&mut self) -> Vec<ReporterError> {
        std::mem::take(&mut self.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::outcome::{Finding, FindingGroup, FindingSource};

    fn result(name: &str, outcome: Outcome, titles: &[(&str, usize)]) -> ScenarioResult {
        ScenarioResult {
            suite: "smoke".into(),
            scenario: name.into(),
            expectation: "clean".into(),
            outcome,
            findings: titles
                .iter()
                .map(|(t, n)| FindingGroup {
                    title: (*t).into(),
                    count: *n,
                    first: Finding {
                        title: (*t).into(),
                        source: FindingSource::Console,
                        kind: "WARNING".into(),
                        corrupted: false,
                        at_secs: 3.0,
                        cycle: Some(1),
                        report: format!("report text of {t} <&>"),
                        functions: vec![],
                        details: None,
                    },
                })
                .collect(),
            method: Some("qmp".into()),
            cycles: 2,
            cycle_secs: vec![0.5, 0.6],
            duration_secs: 12.5,
            boot_secs: Some(4.0),
            seed: 7,
            artifacts: "art/a".into(),
            kernel: None,
            notes: None,
        }
    }

    fn results() -> Vec<ScenarioResult> {
        vec![
            result("gpio-qmp", Outcome::Met, &[]),
            result(
                "i2c-open-fd",
                Outcome::NotMet {
                    reason: "expected clean, found 2 distinct findings".into(),
                },
                &[
                    ("INFO: task hung in i2c_del_adapter", 1),
                    ("unplug never completed: i2c0 (qmp)", 3),
                ],
            ),
            result(
                "boom",
                Outcome::Infrastructure {
                    error: "qemu exited".into(),
                },
                &[],
            ),
        ]
    }

    #[test]
    fn summary_table_lists_every_scenario_outcome_and_counts() {
        let t = summary_table(&results(), Some(Path::new("art")));
        assert!(t.contains("gpio-qmp"));
        assert!(t.contains("FAILED"));
        assert!(t.contains("unplug never completed: i2c0 (qmp) (x3)"), "{t}");
        assert!(t.contains("infrastructure: qemu exited"));
        assert!(
            t.contains("1/3 scenario(s) met their expectation; artifacts: art"),
            "{t}"
        );
    }

    #[test]
    fn junit_has_one_case_per_scenario_with_failures_and_errors() {
        let mut j = JunitReporter::default();
        for r in results() {
            j.event(&Event::ScenarioFinished {
                result: Box::new(r),
                findings: Vec::new(),
            });
        }
        let xml = j.to_xml().unwrap();
        assert_eq!(xml.matches("<testcase ").count(), 3, "{xml}");
        assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
        assert_eq!(xml.matches("<error ").count(), 1, "{xml}");
        assert!(
            xml.contains("report text of INFO: task hung in i2c_del_adapter &lt;&amp;&gt;"),
            "{xml}"
        );
    }

    #[test]
    fn json_counts_met_and_keeps_findings() {
        let mut j = JsonReporter::default();
        j.event(&Event::RunStarted {
            scenarios: 3,
            seed: 7,
            artifacts: "art".into(),
        });
        for r in results() {
            j.event(&Event::ScenarioFinished {
                result: Box::new(r),
                findings: Vec::new(),
            });
        }
        let v = j.to_json();
        assert_eq!(v["met"], 1);
        assert_eq!(v["total"], 3);
        assert_eq!(v["seed"], 7);
        assert_eq!(v["scenarios"][1]["outcome"], "not-met");
        assert_eq!(v["scenarios"][1]["findings"][1]["count"], 3);
    }
}
