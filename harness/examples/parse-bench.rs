//! Parser throughput over the syzkaller corpus, in MB/s of console log.
//!
//! `cargo run --release -p dangle --example parse-bench [-- ROUNDS]`
//!
//! The corpus is read from `$DANGLE_SYZ_CORPUS`, by default
//! `../shared/corpora/syzkaller-linux-reports` beside the workspace. Each
//! round parses every log once with `dangle::report::parse` and once fed
//! through a `Stream` in 4 KiB chunks (the way the harness reads a
//! console); the best round is reported.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

fn corpus_dir() -> PathBuf {
    std::env::var_os("DANGLE_SYZ_CORPUS").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/corpora/syzkaller-linux-reports")
        },
        PathBuf::from,
    )
}

/// The console part of a corpus file (after the header block).
fn console(data: &[u8]) -> &[u8] {
    memchr::memmem::find(data, b"\n\n").map_or(data, |p| &data[p + 2..])
}

fn best_of(rounds: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut reports = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        reports = std::hint::black_box(f());
        best = best.min(t.elapsed());
    }
    (best, reports)
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()
        .context("ROUNDS must be a number")?
        .unwrap_or(5);
    let dir = corpus_dir();
    let mut logs = Vec::new();
    for e in std::fs::read_dir(&dir).with_context(|| {
        format!(
            "corpus not found at {} (set DANGLE_SYZ_CORPUS)",
            dir.display()
        )
    })? {
        let e = e?;
        if e.file_type()?.is_file() && !e.file_name().to_string_lossy().contains('.') {
            let data = std::fs::read(e.path())?;
            logs.push(console(&data).to_vec());
        }
    }
    if logs.is_empty() {
        bail!("no logs in {}", dir.display());
    }
    let bytes: usize = logs.iter().map(Vec::len).sum();
    let mb = bytes as f64 / 1e6;

    let (t, n) = best_of(rounds, || {
        logs.iter().map(|l| dangle::report::parse(l).len()).sum()
    });
    println!(
        "parse:  {} logs, {mb:.2} MB, {n} reports, best of {rounds}: {:.1} ms = {:.1} MB/s",
        logs.len(),
        t.as_secs_f64() * 1e3,
        mb / t.as_secs_f64()
    );
    let (t, n) = best_of(rounds, || {
        logs.iter()
            .map(|l| {
                let mut s = dangle::report::Stream::new();
                let mut n = 0;
                for chunk in l.chunks(4096) {
                    n += s.push(chunk).len();
                }
                n + s.finish().len()
            })
            .sum()
    });
    println!(
        "stream: {} logs, {mb:.2} MB, {n} reports, best of {rounds}: {:.1} ms = {:.1} MB/s (4 KiB chunks)",
        logs.len(),
        t.as_secs_f64() * 1e3,
        mb / t.as_secs_f64()
    );
    Ok(())
}
