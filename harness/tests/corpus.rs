//! Conformance of `dangle::report` against syzkaller's Linux report corpus.
//!
//! The corpus (real consoles with syzkaller's expected TITLE, TYPE, ALT,
//! CORRUPTED) is read from `$DANGLE_SYZ_CORPUS`, by default
//! `../shared/corpora/syzkaller-linux-reports` beside the workspace. The
//! test fails when the corpus is missing, when a no-crash log yields a
//! report, when the title match rate drops below [`MIN_TITLE_RATE`], when a
//! file not in `corpus-known-mismatches.txt` is titled wrong or gets the
//! wrong corrupted flag, or when a file in that list now comes out right
//! (the list must stay honest).
//!
//! `DANGLE_CORPUS_BLESS=1` rewrites the list from the current results,
//! keeping the reasons already written.
//!
//! Run: `cargo test -p dangle --test corpus -- --nocapture`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Exact-title match rate over the whole corpus (crash and no-crash logs)
/// below which the test fails: the rate reached when it was last raised
/// (498/498 with the corpus of Aug 2026).
const MIN_TITLE_RATE: f64 = 1.0;

const MISMATCHES: &str = "corpus-known-mismatches.txt";

#[derive(Debug, Default)]
struct Case {
    title: Option<String>,
    kind: Option<String>,
    corrupted: bool,
    log: Vec<u8>,
}

fn corpus_dir() -> PathBuf {
    std::env::var_os("DANGLE_SYZ_CORPUS").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/corpora/syzkaller-linux-reports")
        },
        PathBuf::from,
    )
}

fn parse_case(name: &str, data: &[u8]) -> Case {
    let mut case = Case::default();
    let mut pos = 0;
    loop {
        let eol = data[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |e| pos + e);
        let line = &data[pos..eol];
        pos = (eol + 1).min(data.len());
        if line.is_empty() || eol >= data.len() {
            break;
        }
        if line.starts_with(b"#") {
            continue;
        }
        let line = String::from_utf8_lossy(line);
        let Some((key, value)) = line.split_once(':') else {
            panic!("{name}: header line {line:?} is not KEY: value");
        };
        let value = value.trim().to_owned();
        match key {
            "TITLE" if !value.is_empty() => case.title = Some(value),
            "TYPE" => case.kind = Some(value),
            "CORRUPTED" => case.corrupted = value == "Y",
            _ => {}
        }
    }
    let mut log = &data[pos..];
    // An optional expected-report section follows the log.
    if let Some(p) = memchr::memmem::find(log, b"\n\nREPORT:\n") {
        log = &log[..p + 1];
    }
    case.log = log.to_vec();
    case
}

fn load_known(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (f, reason) = l.split_once(' ').unwrap_or((l, ""));
            (f.to_owned(), reason.trim().to_owned())
        })
        .collect()
}

#[test]
fn corpus_titles_match_syzkaller() {
    let dir = corpus_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "syzkaller corpus not found at {} ({e}): check out the shared corpora beside the \
             workspace or set DANGLE_SYZ_CORPUS to the syzkaller-linux-reports directory",
            dir.display()
        )
    });
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.contains('.'))
        .collect();
    names.sort_by_key(|n| (n.parse::<u64>().unwrap_or(u64::MAX), n.clone()));
    assert!(
        names.len() > 100,
        "only {} cases in {}: wrong DANGLE_SYZ_CORPUS?",
        names.len(),
        dir.display()
    );

    let mut total = 0usize;
    let mut title_ok = 0usize;
    let mut crash_files = 0usize;
    let mut crash_title_ok = 0usize;
    let mut type_ok = 0usize;
    let (mut tp, mut fneg, mut fpos, mut tn) = (0usize, 0usize, 0usize, 0usize);
    let (mut corr_agree, mut corr_total) = (0usize, 0usize);
    let mut mismatches: BTreeMap<String, String> = BTreeMap::new();
    let mut false_reports = Vec::new();

    for name in &names {
        let data = std::fs::read(dir.join(name))
            .unwrap_or_else(|e| panic!("cannot read corpus file {name}: {e}"));
        let case = parse_case(name, &data);
        let reports = dangle::report::parse(&case.log);
        let got = reports.first();
        total += 1;
        match (&case.title, got) {
            (None, None) => {
                tn += 1;
                title_ok += 1;
            }
            (None, Some(r)) => {
                fpos += 1;
                false_reports.push(format!("{name}: {}", r.title));
                mismatches.insert(name.clone(), format!("false report {:?}", r.title));
            }
            (Some(want), None) => {
                fneg += 1;
                crash_files += 1;
                mismatches.insert(name.clone(), format!("no report, want {want:?}"));
            }
            (Some(want), Some(r)) => {
                tp += 1;
                crash_files += 1;
                corr_total += 1;
                if r.corrupted == case.corrupted {
                    corr_agree += 1;
                } else {
                    let yn = |b: bool| if b { "Y" } else { "N" };
                    mismatches.insert(
                        name.clone(),
                        format!(
                            "corrupted {} ({}), want {}",
                            yn(r.corrupted),
                            r.corrupted_reason.as_deref().unwrap_or("-"),
                            yn(case.corrupted)
                        ),
                    );
                }
                if case.kind.as_deref().unwrap_or("") == r.kind {
                    type_ok += 1;
                }
                if *want == r.title {
                    title_ok += 1;
                    crash_title_ok += 1;
                } else {
                    mismatches.insert(name.clone(), format!("got {:?}, want {want:?}", r.title));
                }
            }
        }
    }

    let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
    let rate = title_ok as f64 / total.max(1) as f64;
    let mut summary = String::new();
    let _ = writeln!(summary, "corpus: {} ({total} logs)", dir.display());
    let _ = writeln!(
        summary,
        "exact title match: {title_ok}/{total} = {:.1}% (crash logs: {crash_title_ok}/{crash_files} = {:.1}%)",
        pct(title_ok, total),
        pct(crash_title_ok, crash_files)
    );
    let _ = writeln!(
        summary,
        "type match on detected crashes: {type_ok}/{tp} = {:.1}%",
        pct(type_ok, tp)
    );
    let _ = writeln!(
        summary,
        "confusion (expected \\ got): crash->crash {tp}, crash->none {fneg}, none->crash {fpos}, none->none {tn}"
    );
    let _ = writeln!(
        summary,
        "corrupted flag agreement: {corr_agree}/{corr_total} = {:.1}%",
        pct(corr_agree, corr_total)
    );
    println!("{summary}");
    for (f, why) in &mismatches {
        println!("mismatch {f}: {why}");
    }

    let list_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(MISMATCHES);
    let known = load_known(&list_path);
    if std::env::var_os("DANGLE_CORPUS_BLESS").is_some() {
        let mut text = String::from(
            "# Corpus files (syzkaller-linux-reports) that dangle still titles differently\n\
             # from syzkaller, with the reason. Kept in sync by tests/corpus.rs.\n",
        );
        for (f, why) in &mismatches {
            let reason = known.get(f).filter(|r| !r.is_empty()).unwrap_or(why);
            let _ = writeln!(text, "{f} {reason}");
        }
        std::fs::write(&list_path, text).expect("write mismatch list");
    }

    assert!(
        false_reports.is_empty(),
        "reports on no-crash logs:\n{}",
        false_reports.join("\n")
    );
    let unexpected: Vec<_> = mismatches
        .iter()
        .filter(|(f, _)| !known.contains_key(*f))
        .map(|(f, w)| format!("{f}: {w}"))
        .collect();
    let stale: Vec<_> = known
        .keys()
        .filter(|f| !mismatches.contains_key(*f))
        .cloned()
        .collect();
    assert!(
        unexpected.is_empty(),
        "files titled wrong that are not in tests/{MISMATCHES}:\n{}",
        unexpected.join("\n")
    );
    assert!(
        stale.is_empty(),
        "files listed in tests/{MISMATCHES} now come out right; remove them: {stale:?}"
    );
    assert!(
        rate >= MIN_TITLE_RATE,
        "title match rate {:.1}% fell below {:.1}%",
        rate * 100.0,
        MIN_TITLE_RATE * 100.0
    );
}
