//! `dangle parse LOG... [--vmlinux FILE] [--format text|json]`.
//!
//! Exit status: 0 no report, 1 reports found, 2 bad input (unreadable log,
//! unusable vmlinux), the message naming the file.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::exit::Status;

use super::{Report, Symbolizer};

/// Output formats of `dangle parse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One block per report, title first.
    Text,
    /// A JSON array of reports.
    Json,
}

/// Arguments of `dangle parse`.
#[derive(Debug, clap::Args)]
pub struct ParseArgs {
    /// Console logs to parse.
    #[arg(required = true)]
    pub logs: Vec<PathBuf>,
    /// vmlinux with DWARF, to turn frames into file:line.
    #[arg(long)]
    pub vmlinux: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Errors of `dangle parse`.
#[derive(Debug, thiserror::Error)]
pub enum ParseCmdError {
    /// A log cannot be read.
    #[error("cannot read console log {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The vmlinux cannot be used.
    #[error("cannot use --vmlinux")]
    Vmlinux(#[source] super::SymbolizeError),
}

/// The reports of one log.
#[derive(Debug, serde::Serialize)]
struct LogReport<'a> {
    log: &'a Path,
    #[serde(flatten)]
    report: Report,
}

/// Runs `dangle parse`.
///
/// # Errors
/// [`ParseCmdError`] (bad input: the message names the file).
pub fn run(args: ParseArgs) -> Result<Status, ParseCmdError> {
    Ok(match execute(&args, &mut std::io::stdout().lock())? {
        0 => Status::Ok,
        _ => Status::Findings,
    })
}

/// Parses every log and writes the reports; returns how many were found.
pub fn execute(args: &ParseArgs, out: &mut dyn Write) -> Result<usize, ParseCmdError> {
    let sym = args
        .vmlinux
        .as_deref()
        .map(Symbolizer::open)
        .transpose()
        .map_err(ParseCmdError::Vmlinux)?;
    let mut all = Vec::new();
    for path in &args.logs {
        let bytes = std::fs::read(path).map_err(|source| ParseCmdError::Read {
            path: path.clone(),
            source,
        })?;
        for mut r in super::parse(&bytes) {
            if let Some(s) = &sym {
                r.symbolize(s);
            }
            all.push(LogReport {
                log: path,
                report: r,
            });
        }
    }
    // Output errors (a closed pipe) are not the input's fault: ignore them.
    let _ = match args.format {
        Format::Json => serde_json::to_writer_pretty(&mut *out, &all)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out)),
        Format::Text => write_text(out, &all),
    };
    Ok(all.len())
}

fn write_text(out: &mut dyn Write, all: &[LogReport<'_>]) -> std::io::Result<()> {
    for (i, lr) in all.iter().enumerate() {
        let r = &lr.report;
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(out, "{}", r.title)?;
        let kind = if r.kind.is_empty() { "-" } else { &r.kind };
        writeln!(
            out,
            "  type: {kind}  log: {}  bytes: {}..{}",
            lr.log.display(),
            r.start,
            r.end
        )?;
        if let Some(reason) = &r.corrupted_reason {
            writeln!(out, "  corrupted: {reason}")?;
        }
        if !r.alt_titles.is_empty() {
            writeln!(out, "  also: {}", r.alt_titles.join(" | "))?;
        }
        writeln!(out, "  ----")?;
        for l in String::from_utf8_lossy(&r.report).lines() {
            writeln!(out, "  {l}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(logs: Vec<PathBuf>, format: Format) -> ParseArgs {
        ParseArgs {
            logs,
            vmlinux: None,
            format,
        }
    }

    #[test]
    fn execute_missing_log_error_names_file() {
        let err = execute(
            &args(vec!["no/such.log".into()], Format::Text),
            &mut Vec::new(),
        )
        .expect_err("missing file");
        assert!(err.to_string().contains("no/such.log"), "{err}");
    }

    #[test]
    fn execute_clean_log_prints_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("clean.log");
        std::fs::write(&p, b"[    1.0] all good\n").expect("write");
        let mut out = Vec::new();
        assert_eq!(
            execute(&args(vec![p], Format::Text), &mut out).expect("ok"),
            0
        );
        assert!(out.is_empty());
    }

    #[test]
    fn execute_json_has_required_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("warn.log");
        std::fs::write(
            &p,
            b"[    1.0] WARNING: CPU: 0 PID: 1 at drivers/gpio/gpiolib.c:100 gpiod_free+0x1/0x2\n\
[    1.0] RIP: 0010:gpiod_free+0x1/0x2\n[    1.0] Call Trace:\n[    1.0]  gpiod_free+0x1/0x2\n\
[    1.0]  gpio_aggregator_remove+0x1/0x2\n[    1.0]  driver_remove+0x1/0x2\n[    1.0] ---[ end trace 0 ]---\n",
        )
        .expect("write");
        let mut out = Vec::new();
        assert_eq!(
            execute(&args(vec![p], Format::Json), &mut out).expect("ok"),
            1
        );
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        let r = &v[0];
        assert_eq!(r["title"], "WARNING in gpiod_free");
        for key in [
            "alt_titles",
            "type",
            "frame",
            "corrupted",
            "start",
            "end",
            "report",
        ] {
            assert!(r.get(key).is_some(), "missing {key}");
        }
        let f = &r["frames"][0];
        for key in ["function", "offset", "file", "line", "inlined"] {
            assert!(f.get(key).is_some(), "missing frame {key}");
        }
    }

    #[test]
    fn execute_bad_vmlinux_error_names_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let v = dir.path().join("vmlinux-broken");
        std::fs::write(&v, b"garbage").expect("write");
        let mut a = args(vec![], Format::Text);
        a.vmlinux = Some(v);
        let err = execute(&a, &mut Vec::new()).expect_err("bad vmlinux");
        let chain = crate::exit::chain(&err).to_string();
        assert!(chain.contains("vmlinux-broken"), "{chain}");
    }
}
