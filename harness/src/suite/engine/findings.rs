//! Findings as the engine collects them: console reports turned into
//! findings, and the ones the kernel cannot print (synthetic).

use std::time::Duration;

use super::super::outcome::{Finding, FindingKind, FindingSource, secs};
use crate::report::Report;

/// Converts a parsed console report into a finding.
pub fn finding_from_report(r: &Report, at: Duration, cycle: Option<u32>) -> Finding {
    Finding {
        title: r.title.clone(),
        source: FindingSource::Console,
        kind: FindingKind::from(r.kind.as_str()),
        corrupted: r.corrupted,
        at_secs: secs(at),
        cycle,
        report: String::from_utf8_lossy(&r.report).into_owned(),
        functions: r.frames.iter().map(|f| f.function.clone()).collect(),
        details: serde_json::to_value(r).ok(),
    }
}

/// A finding of dangle's own: an unplug that never completed, a stuck
/// consumer, a silent guest, QEMU or a backend gone.
pub fn synthetic(
    title: String,
    source: FindingSource,
    report: String,
    at: Duration,
    cycle: Option<u32>,
) -> Finding {
    Finding {
        title,
        kind: source.kind(),
        source,
        corrupted: false,
        at_secs: secs(at),
        cycle,
        report,
        functions: Vec::new(),
        details: None,
    }
}

/// `exit code N` or `signal SIGKILL`.
pub fn describe_status(st: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!(
            "signal {}",
            nix::sys::signal::Signal::try_from(s)
                .map_or_else(|_| s.to_string(), |sig| sig.as_str().to_owned())
        ),
        _ => st.to_string(),
    }
}
