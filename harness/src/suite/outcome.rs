//! Findings, scenario results and the verdict against an expectation.
//!
//! A finding is anything a developer must look at: a kernel report from the
//! console, or one the kernel cannot print (an unplug that never
//! completed, a consumer stuck past its deadline, a silent guest, QEMU or a
//! backend dying). None of them is reduced to a bare "timeout".

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::schema::Expectation;

/// The class of a finding: the report type syzkaller's parser gives a
/// console report (`KASAN`, `WARNING`, `HANG`, ...), or dangle's own class
/// for what the kernel cannot print. Serialized as the type name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum FindingKind {
    /// Something never finished: hung task, stall, unplug never completed,
    /// stuck consumer, silent guest.
    Hang,
    /// QEMU exited or aborted.
    Qemu,
    /// A backend process died.
    Backend,
    /// Another console report type, as the parser names it.
    Report(String),
}

impl FindingKind {
    /// The type name (`HANG`, `QEMU`, `BACKEND`, or the parser's).
    pub fn as_str(&self) -> &str {
        match self {
            FindingKind::Hang => "HANG",
            FindingKind::Qemu => "QEMU",
            FindingKind::Backend => "BACKEND",
            FindingKind::Report(s) => s,
        }
    }
}

impl From<&str> for FindingKind {
    fn from(s: &str) -> Self {
        match s {
            "HANG" => FindingKind::Hang,
            "QEMU" => FindingKind::Qemu,
            "BACKEND" => FindingKind::Backend,
            other => FindingKind::Report(other.to_owned()),
        }
    }
}

impl From<FindingKind> for String {
    fn from(k: FindingKind) -> Self {
        k.as_str().to_owned()
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a finding came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingSource {
    /// A report on the kernel console.
    Console,
    /// `device_del` (or unbind/remove) never completed.
    UnplugTimeout,
    /// A consumer's syscall blocked past its deadline.
    ConsumerStuck,
    /// The agent stopped answering.
    GuestSilent,
    /// QEMU exited or aborted.
    QemuExited,
    /// A backend process died without being told to.
    BackendCrashed,
}

impl FindingSource {
    /// The kind of finding a source gives, for those not from the console.
    pub fn kind(self) -> FindingKind {
        match self {
            FindingSource::QemuExited => FindingKind::Qemu,
            FindingSource::BackendCrashed => FindingKind::Backend,
            FindingSource::Console
            | FindingSource::UnplugTimeout
            | FindingSource::ConsumerStuck
            | FindingSource::GuestSilent => FindingKind::Hang,
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Syzkaller-style title, e.g. `INFO: task hung in i2c_del_adapter`.
    pub title: String,
    /// Origin.
    pub source: FindingSource,
    /// Report type (corpus TYPE names for console reports).
    #[serde(rename = "type")]
    pub kind: FindingKind,
    /// Whether the console report was cut or unusable.
    pub corrupted: bool,
    /// Seconds since the VM started.
    pub at_secs: f64,
    /// The cycle during which it appeared.
    pub cycle: Option<u32>,
    /// Report text (console excerpt, symbolized) or explanation.
    pub report: String,
    /// Functions of the stack, innermost first (for `hangs-in`).
    pub functions: Vec<String>,
    /// Full structured report from the parser, when from the console.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// Findings with the same title, deduplicated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingGroup {
    /// Title.
    pub title: String,
    /// How many times it was seen.
    pub count: usize,
    /// The first occurrence.
    pub first: Finding,
}

/// Groups findings by title, in order of first appearance.
pub fn dedup(findings: &[Finding]) -> Vec<FindingGroup> {
    let mut out: Vec<FindingGroup> = Vec::new();
    for f in findings {
        match out.iter_mut().find(|g| g.title == f.title) {
            Some(g) => g.count += 1,
            None => out.push(FindingGroup {
                title: f.title.clone(),
                count: 1,
                first: f.clone(),
            }),
        }
    }
    out
}

/// How a scenario ended.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// The expectation was met.
    Met,
    /// It was not; the reason says how.
    NotMet {
        /// e.g. "expected clean, found 2 distinct reports".
        reason: String,
    },
    /// The machinery failed; nothing can be said about the kernel.
    Infrastructure {
        /// The error chain.
        error: String,
    },
}

impl Outcome {
    /// Short word for tables.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Met => "ok",
            Outcome::NotMet { .. } => "FAILED",
            Outcome::Infrastructure { .. } => "INFRA",
        }
    }
}

/// Human form of an expectation.
pub fn describe(e: &Expectation) -> String {
    match e {
        Expectation::Clean => "clean".into(),
        Expectation::Reproduces(re) => format!("reproduces /{re}/"),
        Expectation::HangsIn(f) => format!("hangs in {f}"),
    }
}

fn is_hang(f: &Finding) -> bool {
    matches!(
        f.source,
        FindingSource::UnplugTimeout | FindingSource::ConsumerStuck | FindingSource::GuestSilent
    ) || f.kind == FindingKind::Hang
        || f.title.starts_with("INFO: task hung")
}

/// Judges findings against the expectation.
pub fn judge(expect: &Expectation, findings: &[Finding]) -> Outcome {
    let groups = dedup(findings);
    match expect {
        Expectation::Clean if groups.is_empty() => Outcome::Met,
        Expectation::Clean => Outcome::NotMet {
            reason: format!(
                "expected clean, found {}: {}",
                plural(groups.len(), "distinct finding"),
                groups
                    .iter()
                    .map(|g| g.title.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        },
        Expectation::Reproduces(re) => match regex::Regex::new(re) {
            Err(e) => Outcome::Infrastructure {
                error: format!("bad regex {re}: {e}"),
            },
            Ok(r) if findings.iter().any(|f| r.is_match(&f.title)) => Outcome::Met,
            Ok(_) => Outcome::NotMet {
                reason: format!("nothing matched /{re}/ ({})", seen(&groups)),
            },
        },
        Expectation::HangsIn(func) => {
            let hit = findings.iter().any(|f| {
                is_hang(f)
                    && (f.title.ends_with(&format!(" in {func}"))
                        || f.functions.iter().any(|g| g == func)
                        || f.report.contains(func.as_str()))
            });
            if hit {
                Outcome::Met
            } else {
                Outcome::NotMet {
                    reason: format!("no hang in {func} ({})", seen(&groups)),
                }
            }
        }
    }
}

fn seen(groups: &[FindingGroup]) -> String {
    if groups.is_empty() {
        "no findings at all".into()
    } else {
        format!(
            "found: {}",
            groups
                .iter()
                .map(|g| g.title.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        )
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The result of one scenario: what the reporters print.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioResult {
    /// Suite name.
    pub suite: String,
    /// Scenario name.
    pub scenario: String,
    /// Expectation, human form.
    pub expectation: String,
    /// Outcome.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Deduplicated findings.
    pub findings: Vec<FindingGroup>,
    /// Unplug method.
    pub method: Option<String>,
    /// Cycles completed.
    pub cycles: u32,
    /// Seconds per unplug+replug cycle.
    pub cycle_secs: Vec<f64>,
    /// Wall time of the scenario.
    pub duration_secs: f64,
    /// Seconds from QEMU start to agent ready.
    pub boot_secs: Option<f64>,
    /// The run seed.
    pub seed: u64,
    /// Where everything is kept.
    pub artifacts: PathBuf,
    /// Kernel release under test.
    pub kernel: Option<String>,
    /// The scenario's notes (hypothesis status).
    pub notes: Option<String>,
}

impl ScenarioResult {
    /// Whether the scenario passed.
    pub fn met(&self) -> bool {
        self.outcome == Outcome::Met
    }
}

/// Seconds as f64, rounded to ms for readable JSON.
pub fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(title: &str, source: FindingSource, functions: &[&str]) -> Finding {
        Finding {
            title: title.into(),
            source,
            kind: if title.starts_with("INFO: task hung") {
                FindingKind::Hang
            } else {
                FindingKind::from("KASAN")
            },
            corrupted: false,
            at_secs: 1.0,
            cycle: Some(0),
            report: String::new(),
            functions: functions.iter().map(|s| (*s).to_owned()).collect(),
            details: None,
        }
    }

    #[test]
    fn judge_clean_with_findings_is_not_met_and_lists_titles() {
        let f = [
            finding("WARNING in foo", FindingSource::Console, &[]),
            finding("WARNING in foo", FindingSource::Console, &[]),
            finding("BUG: memory leak", FindingSource::Console, &[]),
        ];
        assert_eq!(judge(&Expectation::Clean, &[]), Outcome::Met);
        match judge(&Expectation::Clean, &f) {
            Outcome::NotMet { reason } => {
                assert!(reason.contains("2 distinct findings"), "{reason}");
                assert!(
                    reason.contains("WARNING in foo; BUG: memory leak"),
                    "{reason}"
                );
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn judge_reproduces_matches_title_regex() {
        let f = [finding(
            "KASAN: slab-use-after-free Write in lkdtm_WRITE_AFTER_FREE",
            FindingSource::Console,
            &[],
        )];
        assert_eq!(
            judge(
                &Expectation::Reproduces("^KASAN: slab-use-after-free Write in lkdtm_".into()),
                &f
            ),
            Outcome::Met
        );
        assert!(matches!(
            judge(&Expectation::Reproduces("^KASAN: .* Read".into()), &f),
            Outcome::NotMet { .. }
        ));
        assert!(matches!(
            judge(&Expectation::Reproduces("x".into()), &[]),
            Outcome::NotMet { .. }
        ));
    }

    #[test]
    fn judge_hangs_in_needs_a_hang_naming_the_function() {
        let hung = finding(
            "INFO: task hung in i2c_del_adapter",
            FindingSource::Console,
            &["wait_for_completion", "i2c_del_adapter"],
        );
        let kasan = finding(
            "KASAN: use-after-free Read in i2c_del_adapter",
            FindingSource::Console,
            &["i2c_del_adapter"],
        );
        let stuck = finding(
            "unplug never completed: i2c0 (qmp)",
            FindingSource::UnplugTimeout,
            &[],
        );
        let e = Expectation::HangsIn("i2c_del_adapter".into());
        assert_eq!(judge(&e, &[stuck.clone(), hung]), Outcome::Met);
        assert!(
            matches!(judge(&e, &[kasan]), Outcome::NotMet { .. }),
            "a KASAN report is not a hang"
        );
        assert!(
            matches!(judge(&e, &[stuck]), Outcome::NotMet { .. }),
            "no stack names the function"
        );
    }

    #[test]
    fn dedup_counts_by_title_in_first_seen_order() {
        let f = [
            finding("B", FindingSource::Console, &[]),
            finding("A", FindingSource::Console, &[]),
            finding("B", FindingSource::Console, &[]),
        ];
        let g = dedup(&f);
        assert_eq!(
            g.iter()
                .map(|g| (g.title.as_str(), g.count))
                .collect::<Vec<_>>(),
            [("B", 2), ("A", 1)]
        );
    }
}
