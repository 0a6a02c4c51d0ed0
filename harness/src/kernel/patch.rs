//! Kernel patches: resolving `--patch` arguments into an ordered series and
//! applying a series onto the persistent work tree without disturbing the
//! files it does not change.
//!
//! Applying is done in two steps so that make's mtime-based rebuild stays
//! minimal and a failed patch never leaves the tree half-patched:
//! 1. *Staging*: copy the **base** version (pristine: never patched) of every
//!    file the series names into a temporary directory, and run
//!    `patch -p1 --force` there for each patch in order. A failure stops
//!    here with the patch's file name and `patch`'s own report (the hunk that
//!    failed), and the work tree is untouched.
//! 2. *Reconcile*: for every file touched by this series or by the previous
//!    one (from the manifest `patched.json` beside the tree), the desired
//!    content is the staged result, or the base content if only the previous
//!    series touched it. A file is written only when its bytes differ from
//!    what is in the tree, so untouched files — and touched files whose
//!    content is the same as last time — keep their mtimes and make does not
//!    rebuild them. Before a file is overwritten the first time, its pristine
//!    bytes are saved under `patch-orig/` (for the Debian tree, which has no
//!    other pristine copy); a user's tree is its own pristine copy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// Errors of resolving and applying patches.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// A `--patch` argument cannot be read.
    #[error("cannot read patch {path}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A patch directory holds no `*.patch`/`*.diff` files.
    #[error("patch directory {0} holds no *.patch or *.diff files")]
    EmptyDir(PathBuf),
    /// A patch names no file at all.
    #[error("{0} is not a patch: it names no file (no '--- a/...' / '+++ b/...' lines)")]
    NotAPatch(PathBuf),
    /// `patch` refused the patch.
    #[error("patch {path} does not apply:\n{report}")]
    DoesNotApply {
        /// The patch file.
        path: PathBuf,
        /// What `patch` said: the file and the failing hunk.
        report: String,
    },
    /// The `patch` program could not be run.
    #[error("cannot run `patch` (apt-get install patch)")]
    Tool(#[source] std::io::Error),
    /// Reading or writing the work tree or the staging area failed.
    #[error("cannot update {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The manifest beside the tree is corrupt.
    #[error("corrupt patch manifest {path}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PatchError + '_ {
    move |source| PatchError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Expands `--patch` arguments: a file stays as is; a directory becomes its
/// quilt `series` order when it has one, else its `*.patch`/`*.diff` files
/// sorted by name (the `git format-patch` numbering).
pub fn resolve_series(args: &[PathBuf]) -> Result<Vec<PathBuf>, PatchError> {
    let mut out = Vec::new();
    for a in args {
        let meta = std::fs::metadata(a).map_err(|source| PatchError::Read {
            path: a.clone(),
            source,
        })?;
        if !meta.is_dir() {
            out.push(a.clone());
            continue;
        }
        let series = a.join("series");
        if series.is_file() {
            let text = std::fs::read_to_string(&series).map_err(|source| PatchError::Read {
                path: series.clone(),
                source,
            })?;
            let before = out.len();
            out.extend(
                text.lines()
                    .map(|l| l.split('#').next().unwrap_or("").trim())
                    .filter(|l| !l.is_empty())
                    .map(|l| a.join(l.split_whitespace().next().unwrap_or(l))),
            );
            if out.len() == before {
                return Err(PatchError::EmptyDir(a.clone()));
            }
            continue;
        }
        let rd = std::fs::read_dir(a).map_err(|source| PatchError::Read {
            path: a.clone(),
            source,
        })?;
        let mut files: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "patch" || e == "diff"))
            .collect();
        if files.is_empty() {
            return Err(PatchError::EmptyDir(a.clone()));
        }
        files.sort();
        out.extend(files);
    }
    Ok(out)
}

/// The tree-relative paths a unified diff touches (`-p1` stripped), both
/// the old and new names, without `/dev/null`.
pub fn touched_files(patch_text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in patch_text.lines() {
        let rest = match line
            .strip_prefix("--- ")
            .or_else(|| line.strip_prefix("+++ "))
        {
            Some(r) => r,
            None => continue,
        };
        let name = rest.split('\t').next().unwrap_or("").trim();
        if name == "/dev/null" || name.is_empty() {
            continue;
        }
        let stripped = match name.split_once('/') {
            Some((_, r)) => r,
            None => continue,
        };
        if !stripped.is_empty() && !stripped.split('/').any(|c| c == "..") {
            out.insert(stripped.to_owned());
        }
    }
    out
}

/// Which files the previously applied series changed, and whether each
/// existed in the base tree.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    /// relative path -> existed before any patch.
    files: BTreeMap<String, bool>,
}

/// The files the currently applied series changed (from the manifest in
/// `state_dir`; empty when nothing was applied yet).
pub fn manifest_files(state_dir: &Path) -> Result<BTreeSet<String>, PatchError> {
    let path = state_dir.join("patched.json");
    match std::fs::read(&path) {
        Ok(b) => {
            let m: Manifest = serde_json::from_slice(&b)
                .map_err(|source| PatchError::Manifest { path, source })?;
            Ok(m.files.into_keys().collect())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(io(&path)(e)),
    }
}

/// Where the pristine version of a file comes from.
#[derive(Debug, Clone, Copy)]
pub enum Base<'a> {
    /// The work tree itself is pristine except for files recorded in the
    /// manifest, whose pristine bytes are saved in `patch-orig/`.
    SavedOriginals,
    /// A separate pristine tree (the user's source directory).
    Dir(&'a Path),
}

/// Outcome of [`apply_series`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Files whose content changed in the work tree (make rebuilds these).
    pub written: Vec<String>,
    /// Files the series touches now.
    pub touched: Vec<String>,
}

/// Applies `series` onto `tree` (see the module docs). `state_dir` holds the
/// manifest and saved originals.
pub fn apply_series(
    tree: &Path,
    state_dir: &Path,
    base: Base<'_>,
    series: &[PathBuf],
) -> Result<Applied, PatchError> {
    let manifest_path = state_dir.join("patched.json");
    let orig_dir = state_dir.join("patch-orig");
    let old: Manifest = match std::fs::read(&manifest_path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|source| PatchError::Manifest {
            path: manifest_path.clone(),
            source,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
        Err(e) => return Err(io(&manifest_path)(e)),
    };

    // The pristine bytes of a file (None: absent in the base).
    let base_content = |rel: &str| -> Result<Option<Vec<u8>>, PatchError> {
        let p = match base {
            Base::Dir(d) => d.join(rel),
            Base::SavedOriginals => match old.files.get(rel) {
                Some(false) => return Ok(None),
                Some(true) => orig_dir.join(rel),
                None => tree.join(rel),
            },
        };
        read_opt(&p)
    };

    // 1. staging
    let staging = tempfile::Builder::new()
        .prefix("dangle-patch-")
        .tempdir()
        .map_err(io(Path::new("temporary directory")))?;
    let mut new_set = BTreeSet::new();
    for p in series {
        let text = std::fs::read(p).map_err(|source| PatchError::Read {
            path: p.clone(),
            source,
        })?;
        let files = touched_files(&String::from_utf8_lossy(&text));
        if files.is_empty() {
            return Err(PatchError::NotAPatch(p.clone()));
        }
        for f in files {
            if new_set.insert(f.clone()) {
                if let Some(bytes) = base_content(&f)? {
                    let dst = staging.path().join(&f);
                    if let Some(parent) = dst.parent() {
                        std::fs::create_dir_all(parent).map_err(io(parent))?;
                    }
                    std::fs::write(&dst, bytes).map_err(io(&dst))?;
                }
            }
        }
        run_patch(staging.path(), p)?;
    }

    // 2. reconcile
    let mut all: BTreeSet<String> = old.files.keys().cloned().collect();
    all.extend(new_set.iter().cloned());
    // Record the union before touching anything: a crash half-way leaves a
    // manifest that still knows every file that may differ from the base.
    let mut during = Manifest::default();
    for f in &all {
        let existed = match old.files.get(f) {
            Some(e) => *e,
            None => tree.join(f).exists(),
        };
        during.files.insert(f.clone(), existed);
    }
    if matches!(base, Base::SavedOriginals) {
        for (f, existed) in &during.files {
            if *existed && !old.files.contains_key(f) {
                let src = tree.join(f);
                let dst = orig_dir.join(f);
                if let Some(parent) = dst.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent))?;
                }
                std::fs::copy(&src, &dst).map_err(io(&dst))?;
            }
        }
    }
    write_manifest(&manifest_path, &during)?;

    let mut applied = Applied::default();
    for f in &all {
        let desired = if new_set.contains(f) {
            read_opt(&staging.path().join(f))?
        } else if matches!(base, Base::SavedOriginals) {
            if during.files.get(f) == Some(&true) {
                read_opt(&orig_dir.join(f))?
            } else {
                None
            }
        } else {
            base_content(f)?
        };
        let target = tree.join(f);
        let current = read_opt(&target)?;
        if current == desired {
            continue;
        }
        match desired {
            Some(bytes) => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent))?;
                }
                // Replace, never write through: the tree may hard-link.
                let tmp = target.with_extension("dangle-tmp");
                std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
                std::fs::rename(&tmp, &target).map_err(io(&target))?;
            }
            None => std::fs::remove_file(&target).map_err(io(&target))?,
        }
        applied.written.push(f.clone());
    }

    let mut final_manifest = Manifest::default();
    for f in &new_set {
        final_manifest.files.insert(f.clone(), during.files[f]);
    }
    write_manifest(&manifest_path, &final_manifest)?;
    if matches!(base, Base::SavedOriginals) {
        for f in all.difference(&new_set) {
            let saved = orig_dir.join(f);
            if saved.exists() {
                std::fs::remove_file(&saved).map_err(io(&saved))?;
            }
        }
    }
    applied.touched = new_set.into_iter().collect();
    Ok(applied)
}

fn write_manifest(path: &Path, m: &Manifest) -> Result<(), PatchError> {
    let bytes = serde_json::to_vec_pretty(m).map_err(|source| PatchError::Manifest {
        path: path.to_owned(),
        source,
    })?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn read_opt(p: &Path) -> Result<Option<Vec<u8>>, PatchError> {
    match std::fs::read(p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(p)(e)),
    }
}

/// Runs `patch -p1` in `dir`. `--force` never guesses "reversed" (a patch
/// that is already applied fails instead of being undone) and asks nothing.
fn run_patch(dir: &Path, patch: &Path) -> Result<(), PatchError> {
    let abs = std::path::absolute(patch).map_err(io(patch))?;
    let out = Command::new("patch")
        .args([
            "-p1",
            "--force",
            "--no-backup-if-mismatch",
            "--reject-file=-",
            "-i",
        ])
        .arg(&abs)
        .current_dir(dir)
        .output()
        .map_err(PatchError::Tool)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    tracing::debug!("patch {}: {}", patch.display(), text.trim());
    if out.status.success() {
        return Ok(());
    }
    Err(PatchError::DoesNotApply {
        path: patch.to_owned(),
        report: summarize_patch_output(&text),
    })
}

/// Keeps the lines of `patch` output that say what failed, with the
/// `patching file` line that gives them context.
fn summarize_patch_output(text: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut last_file: Option<&str> = None;
    for line in text.lines().map(str::trim_end) {
        if line.starts_with("patching file") || line.starts_with("checking file") {
            last_file = Some(line);
            continue;
        }
        let interesting = line.contains("FAILED")
            || line.contains("can't find file")
            || line.contains("No file to patch")
            || line.contains("malformed")
            || line.contains("garbage")
            || line.contains("Reversed")
            || line.contains("hunk ignored")
            || line.contains("hunks ignored")
            || line.contains("unexpected");
        if interesting {
            if let Some(f) = last_file.take() {
                out.push(f);
            }
            out.push(line);
        }
    }
    if out.is_empty() {
        text.lines()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        out.iter()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    const PATCH_A: &str = "From 0 Mon Sep 17 00:00:00 2001\nSubject: [PATCH] a\n\n---\n a.c | 1 +\n\ndiff --git a/a.c b/a.c\n--- a/a.c\n+++ b/a.c\n@@ -1,3 +1,4 @@\n one\n+one and a half\n two\n three\n";
    const PATCH_NEW: &str = "diff --git a/sub/new.c b/sub/new.c\nnew file mode 100644\n--- /dev/null\n+++ b/sub/new.c\n@@ -0,0 +1 @@\n+fresh\n";
    const PATCH_BAD: &str =
        "--- a/a.c\n+++ b/a.c\n@@ -1,3 +1,3 @@\n one\n-not there\n+whatever\n three\n";

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("tree");
        let state = d.path().join("state");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(tree.join("a.c"), "one\ntwo\nthree\n").unwrap();
        std::fs::write(tree.join("b.c"), "bee\n").unwrap();
        (d, tree, state)
    }

    fn write_patch(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn age(p: &Path) {
        let old = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }

    fn mtime(p: &Path) -> SystemTime {
        std::fs::metadata(p).unwrap().modified().unwrap()
    }

    #[test]
    fn touched_files_git_and_plain_headers() {
        let t = touched_files(PATCH_A);
        assert_eq!(t.into_iter().collect::<Vec<_>>(), ["a.c"]);
        let t = touched_files(PATCH_NEW);
        assert_eq!(t.into_iter().collect::<Vec<_>>(), ["sub/new.c"]);
        let t = touched_files("--- linux.orig/x/y.c\t2024-01-01\n+++ linux/x/y.c\t2024-01-02\n");
        assert_eq!(t.into_iter().collect::<Vec<_>>(), ["x/y.c"]);
    }

    #[test]
    fn resolve_series_dir_sorted_then_files() {
        let d = tempfile::tempdir().unwrap();
        let series = d.path().join("s");
        std::fs::create_dir(&series).unwrap();
        write_patch(&series, "0002-b.patch", PATCH_A);
        write_patch(&series, "0001-a.patch", PATCH_A);
        write_patch(&series, "cover.txt", "");
        let single = write_patch(d.path(), "x.diff", PATCH_A);
        let got = resolve_series(&[series.clone(), single.clone()]).unwrap();
        assert_eq!(
            got,
            [
                series.join("0001-a.patch"),
                series.join("0002-b.patch"),
                single
            ]
        );
    }

    #[test]
    fn resolve_series_empty_dir_rejected() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            resolve_series(&[d.path().to_owned()]),
            Err(PatchError::EmptyDir(_))
        ));
    }

    #[test]
    fn apply_series_bad_patch_names_file_and_hunk_tree_untouched() {
        let (d, tree, state) = setup();
        let bad = write_patch(d.path(), "0001-bad.patch", PATCH_BAD);
        let err = apply_series(
            &tree,
            &state,
            Base::SavedOriginals,
            std::slice::from_ref(&bad),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("0001-bad.patch"), "{msg}");
        assert!(msg.contains("Hunk #1 FAILED"), "{msg}");
        assert!(msg.contains("patching file a.c"), "{msg}");
        assert_eq!(
            std::fs::read_to_string(tree.join("a.c")).unwrap(),
            "one\ntwo\nthree\n"
        );
    }

    #[test]
    fn apply_series_reapply_same_keeps_mtimes() {
        let (d, tree, state) = setup();
        let a = write_patch(d.path(), "a.patch", PATCH_A);
        let new = write_patch(d.path(), "new.patch", PATCH_NEW);
        let series = [a, new];
        let r = apply_series(&tree, &state, Base::SavedOriginals, &series).unwrap();
        assert_eq!(r.written, ["a.c", "sub/new.c"]);
        assert_eq!(
            std::fs::read_to_string(tree.join("a.c")).unwrap(),
            "one\none and a half\ntwo\nthree\n"
        );
        age(&tree.join("a.c"));
        age(&tree.join("b.c"));
        let (ma, mb) = (mtime(&tree.join("a.c")), mtime(&tree.join("b.c")));
        let r = apply_series(&tree, &state, Base::SavedOriginals, &series).unwrap();
        assert!(r.written.is_empty(), "{r:?}");
        assert_eq!(mtime(&tree.join("a.c")), ma);
        assert_eq!(mtime(&tree.join("b.c")), mb);
    }

    #[test]
    fn apply_series_dropped_patch_restores_pristine() {
        let (d, tree, state) = setup();
        let a = write_patch(d.path(), "a.patch", PATCH_A);
        let new = write_patch(d.path(), "new.patch", PATCH_NEW);
        apply_series(&tree, &state, Base::SavedOriginals, &[a.clone(), new]).unwrap();
        age(&tree.join("a.c"));
        let ma = mtime(&tree.join("a.c"));
        let r = apply_series(&tree, &state, Base::SavedOriginals, &[a]).unwrap();
        assert_eq!(r.written, ["sub/new.c"]);
        assert!(!tree.join("sub/new.c").exists());
        assert_eq!(mtime(&tree.join("a.c")), ma);
        let r = apply_series(&tree, &state, Base::SavedOriginals, &[]).unwrap();
        assert_eq!(r.written, ["a.c"]);
        assert_eq!(
            std::fs::read_to_string(tree.join("a.c")).unwrap(),
            "one\ntwo\nthree\n"
        );
        assert!(!state.join("patch-orig/a.c").exists());
    }

    #[test]
    fn apply_series_separate_base_dir_used() {
        let (d, tree, state) = setup();
        let base = d.path().join("base");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(base.join("a.c"), "one\ntwo\nthree\n").unwrap();
        std::fs::write(tree.join("a.c"), "stale mirror\n").unwrap();
        let a = write_patch(d.path(), "a.patch", PATCH_A);
        apply_series(&tree, &state, Base::Dir(&base), &[a]).unwrap();
        assert_eq!(
            std::fs::read_to_string(tree.join("a.c")).unwrap(),
            "one\none and a half\ntwo\nthree\n"
        );
        apply_series(&tree, &state, Base::Dir(&base), &[]).unwrap();
        assert_eq!(
            std::fs::read_to_string(tree.join("a.c")).unwrap(),
            "one\ntwo\nthree\n"
        );
    }
}
