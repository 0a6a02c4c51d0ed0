//! `dangle kernel bench`: the kernel figures of docs/benchmarks.md from one
//! run — a cold build (fresh tree, object tree and ccache), a rebuild after
//! a one-file patch to `drivers/gpio/gpio-virtio.c`, and a cached call.
//!
//! The bench works in its own cache root (`<cache>/bench` unless
//! `--cache-dir`), so it neither reuses nor disturbs the user's builds.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use super::{KernelError, KernelRequest, Progress, ProgressMode, ensure_kernel, plan};

/// The file the one-file patch changes.
pub const PATCHED_FILE: &str = "drivers/gpio/gpio-virtio.c";

/// Arguments of `dangle kernel bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Cache root for the bench (default: `<cache>/bench`); wiped first
    /// unless --keep-tree.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Keep an existing bench tree and ccache (the "cold" figure is then a
    /// warm rebuild; useful to re-measure only the one-file rebuild).
    #[arg(long)]
    pub keep_tree: bool,
    /// make -j (default: number of CPUs).
    #[arg(short, long)]
    pub jobs: Option<usize>,
    /// Progress display.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
}

/// What one bench run measured.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// Cold build: extraction, patches, config, full compile, copy-out.
    pub cold: Duration,
    /// Rebuild after the one-file patch: patch, config, make, copy-out.
    pub one_file_rebuild: Duration,
    /// A second call with the same inputs.
    pub cached: Duration,
    /// make -j used.
    pub jobs: usize,
    /// Kernel version.
    pub version: String,
    /// Source identity.
    pub source: String,
}

/// A unified diff that appends a late_initcall printing `nonce` to the file
/// whose current text is `text` (at tree path [`PATCHED_FILE`]). The nonce
/// makes the object differ from any earlier one, so ccache cannot serve it.
pub fn one_file_patch(text: &str, nonce: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len();
    let ctx = &lines[n.saturating_sub(3)..];
    let start = n - ctx.len() + 1;
    let added = [
        String::new(),
        "static int __init dangle_bench_marker(void)".to_owned(),
        "{".to_owned(),
        format!("\tpr_info(\"dangle bench marker %s\\n\", \"{nonce}\");"),
        "\treturn 0;".to_owned(),
        "}".to_owned(),
        "late_initcall(dangle_bench_marker);".to_owned(),
    ];
    let mut out = format!(
        "dangle bench: one-file patch\n\n---\ndiff --git a/{PATCHED_FILE} b/{PATCHED_FILE}\n--- a/{PATCHED_FILE}\n+++ b/{PATCHED_FILE}\n@@ -{start},{} +{start},{} @@\n",
        ctx.len(),
        ctx.len() + added.len()
    );
    for l in ctx {
        out.push(' ');
        out.push_str(l);
        out.push('\n');
    }
    for l in &added {
        out.push('+');
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Runs the bench and prints its figures.
pub fn run(a: &BenchArgs) -> Result<(), KernelError> {
    let root = match &a.cache_dir {
        Some(d) => d.clone(),
        None => crate::paths::cache_dir().join("bench"),
    };
    let r = measure(&root, a.keep_tree, a.jobs, &Progress::new(a.progress))?;
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    println!(
        "dangle kernel bench ({}, {}, make -j{})",
        r.version, r.source, r.jobs
    );
    let first = if a.keep_tree {
        "forced rebuild, nothing changed (kept tree and ccache)"
    } else {
        "cold build (fresh tree, object tree, ccache)"
    };
    println!(
        "  {first}: {} ({:.1} min)",
        secs(r.cold),
        r.cold.as_secs_f64() / 60.0
    );
    println!(
        "  rebuild after a one-file patch ({PATCHED_FILE}): {}",
        secs(r.one_file_rebuild)
    );
    println!(
        "  cached call (same inputs): {:.3} s",
        r.cached.as_secs_f64()
    );
    Ok(())
}

/// Measures the three figures in `root`.
pub fn measure(
    root: &Path,
    keep_tree: bool,
    jobs: Option<usize>,
    progress: &Progress,
) -> Result<BenchResult, KernelError> {
    if !keep_tree && root.exists() {
        progress.message(&format!("wiping bench cache {}", root.display()));
        std::fs::remove_dir_all(root).map_err(|e| KernelError::io(root, e))?;
    }
    std::fs::create_dir_all(root).map_err(|e| KernelError::io(root, e))?;
    let base = KernelRequest {
        cache_dir: Some(root.to_owned()),
        jobs,
        force: keep_tree,
        ..KernelRequest::default()
    };

    progress.message("bench 1/3: cold build");
    let t = Instant::now();
    let cold_kernel = ensure_kernel(&base, progress)?;
    let cold = t.elapsed();

    let p = plan(&base)?;
    let pristine = p.tree_dir().join("src").join(PATCHED_FILE);
    let text = std::fs::read_to_string(&pristine).map_err(|e| KernelError::io(&pristine, e))?;
    let patch_dir =
        tempfile::tempdir().map_err(|e| KernelError::io(Path::new("temporary directory"), e))?;
    let patch_path = patch_dir.path().join("0001-bench-one-file.patch");
    let nonce = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    std::fs::write(&patch_path, one_file_patch(&text, &nonce))
        .map_err(|e| KernelError::io(&patch_path, e))?;
    let patched = KernelRequest {
        patches: vec![patch_path],
        force: false,
        ..base.clone()
    };

    progress.message("bench 2/3: rebuild after a one-file patch");
    let t = Instant::now();
    ensure_kernel(&patched, progress)?;
    let one_file_rebuild = t.elapsed();

    progress.message("bench 3/3: cached call");
    let t = Instant::now();
    let again = ensure_kernel(&patched, progress)?;
    let cached = t.elapsed();
    if !again.cached {
        return Err(KernelError::ToolFailed {
            tool: "dangle kernel bench".to_owned(),
            output: "the third call rebuilt instead of hitting the cache".to_owned(),
        });
    }
    Ok(BenchResult {
        cold,
        one_file_rebuild,
        cached,
        jobs: jobs.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        }),
        version: cold_kernel.version,
        source: cold_kernel.source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_patch_applies_with_patch() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join(PATCHED_FILE);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        let text = "#include <linux/module.h>\nint a;\nint b;\nMODULE_LICENSE(\"GPL\");\n";
        std::fs::write(&f, text).unwrap();
        let p = d.path().join("x.patch");
        std::fs::write(&p, one_file_patch(text, "42")).unwrap();
        let out = std::process::Command::new("patch")
            .args(["-p1", "--force", "-i"])
            .arg(&p)
            .current_dir(d.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let got = std::fs::read_to_string(&f).unwrap();
        assert!(got.starts_with(text), "{got}");
        assert!(got.contains("\"42\""), "{got}");
        assert!(
            got.ends_with("late_initcall(dangle_bench_marker);\n"),
            "{got}"
        );
    }
}
