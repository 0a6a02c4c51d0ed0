//! The test kernel: resolve its source, patch it, configure it, build it
//! with ccache, and cache the result (`dangle kernel build`).
//!
//! # Pipeline
//! 1. **Source** ([`KernelSource`]): Debian's `linux-source-6.12` package
//!    (version from `dpkg-query`; installed with apt only when
//!    [`KernelRequest::install_deps`] is set, otherwise the error names the
//!    exact command), a user's tree, or a prebuilt bzImage + vmlinux (only
//!    validated).
//! 2. **Patches**: `images/kernel/patches/` (our own test consumers, unless
//!    [`KernelRequest::default_patches`] is off), then the user's `--patch`
//!    files and series directories, in order ([`patch`]).
//! 3. **Config**: `make tinyconfig`, then `images/kernel/*.config` sorted by
//!    name, then `--config-add` items, merged by our own code ([`config`]),
//!    then `make olddefconfig`. Every requested symbol is then checked in the
//!    final `.config`; a dropped one fails the build with its Kconfig
//!    location, `depends on` clauses and the values of the symbols they name.
//! 4. **Build**: `make O=obj CC="ccache gcc" bzImage` (which links vmlinux),
//!    log on disk, progress from the `CC` lines ([`progress`]).
//!
//! # Cache layout and why
//! The cache root is [`crate::paths::cache_dir`] (`$DANGLE_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/dangle`, else `~/.cache/dangle`) unless
//! [`KernelRequest::cache_dir`] says otherwise:
//! ```text
//! ccache/                      CCACHE_DIR shared by every tree
//! kernel/trees/<tree-id>/      one persistent tree per source identity
//!     src/                     extracted package / mirror of the user tree, patched
//!     obj/                     the O= object tree, kept between builds
//!     patched.json patch-orig/ which files the current series changed, and
//!                              their pristine bytes (see patch.rs)
//!     lock                     flock: one build per tree at a time
//!     cc-count                 CC lines of the last cold build (progress estimate)
//! kernel/builds/<key>/         one finished build per cache key
//!     bzImage vmlinux config build.log kernel.json (written last = complete)
//! ```
//! The **cache key** hashes the source identity (package version, or git
//! HEAD + a hash of the uncommitted diff and untracked files), the compiler
//! version, every fragment, every patch and every `--config-add` (names and
//! bytes). A second call with the same inputs finds `builds/<key>/kernel.json`
//! and returns at once, without locking or touching the tree.
//!
//! The **tree** is keyed more coarsely than the build: by package version,
//! or for a user tree by its path, so that a new commit, a changed config or
//! another patch set all rebuild in the same object tree. Make decides what
//! to rebuild from mtimes, so the tree must only see writes where bytes
//! really change: patches are applied in a staging area and reconciled into
//! the tree file by file, writing only files whose content differs (a
//! one-file patch rewrites one file; dropping it restores that file from
//! the saved original); a user's tree is mirrored rsync-style, copying
//! changed files with their own mtimes. Kconfig itself touches only the
//! `include/config/*` stamps of symbols whose value changed, so rewriting
//! `.config` from tinyconfig on every build recompiles only what the
//! changed symbols reach. ccache catches the rest (e.g. switching back to a
//! previous patch set).

pub mod bench;
pub mod build;
pub mod cache;
pub mod cli;
pub mod config;
mod error;
pub mod identity;
pub mod patch;
pub mod progress;
pub mod source;
mod steps;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use cache::{KeyInputs, Plan, cache_key, plan};
pub use config::{ConfigAdd, ConfigError, Dropped, Value};
pub use error::KernelError;
pub use identity::{KernelIdentity, PatchId};
pub use patch::PatchError;
pub use progress::{Progress, ProgressMode};
pub use source::KernelSource;

use cache::lookup;

/// What kernel to provide. `Default` is the default dangle kernel: the
/// Debian package, our patches and fragments, nothing added.
#[derive(Debug, Clone)]
pub struct KernelRequest {
    /// Where the source comes from.
    pub source: KernelSource,
    /// Extra patches (files or series directories), applied after ours.
    pub patches: Vec<PathBuf>,
    /// Apply `images/kernel/patches/` first.
    pub default_patches: bool,
    /// The directory with `*.config` fragments and `patches/`.
    pub images_dir: PathBuf,
    /// `--config-add` items, applied after the fragments.
    pub config_add: Vec<ConfigAdd>,
    /// Install a missing source package with apt.
    pub install_deps: bool,
    /// Cache root; `None` = [`crate::paths::cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// make `-j`; `None` = the number of CPUs.
    pub jobs: Option<usize>,
    /// Rebuild even when the cache has this key (the object tree is still
    /// reused).
    pub force: bool,
}

impl Default for KernelRequest {
    fn default() -> Self {
        Self {
            source: KernelSource::Debian,
            patches: Vec::new(),
            default_patches: true,
            images_dir: default_images_dir(),
            config_add: Vec::new(),
            install_deps: false,
            cache_dir: None,
            jobs: None,
            force: false,
        }
    }
}

/// `images/kernel` of this checkout.
pub fn default_images_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/kernel");
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

/// A kernel ready to boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltKernel {
    /// The bzImage.
    pub bzimage: PathBuf,
    /// The vmlinux (ELF with DWARF for dangle's own builds).
    pub vmlinux: PathBuf,
    /// The final `.config` (`None` for a prebuilt kernel).
    pub config: Option<PathBuf>,
    /// `make kernelrelease` (or the bzImage header of a prebuilt one).
    pub version: String,
    /// Identity of the source: Debian package version, git HEAD + dirty
    /// hash, or "prebuilt".
    pub source: String,
    /// The cache key (empty for a prebuilt kernel).
    pub cache_key: String,
    /// The build log (`None` for a prebuilt kernel).
    pub log: Option<PathBuf>,
    /// Whether this call found the build in the cache.
    #[serde(skip)]
    pub cached: bool,
}

/// Provides the requested kernel: from the cache when it has this key,
/// otherwise by building it (see the module docs).
pub fn ensure_kernel(req: &KernelRequest, progress: &Progress) -> Result<BuiltKernel, KernelError> {
    if let KernelSource::Prebuilt { bzimage, vmlinux } = &req.source {
        if !req.patches.is_empty() || !req.config_add.is_empty() {
            return Err(KernelError::BadInput {
                what: "--kernel".to_owned(),
                reason: "--patch and --config-add need a source to build, not a prebuilt kernel"
                    .to_owned(),
                source: None,
            });
        }
        let version = source::validate_prebuilt(bzimage, vmlinux)?;
        return Ok(BuiltKernel {
            bzimage: bzimage.clone(),
            vmlinux: vmlinux.clone(),
            config: None,
            version,
            source: "prebuilt".to_owned(),
            cache_key: String::new(),
            log: None,
            cached: true,
        });
    }
    let plan = plan(req)?;
    if !req.force {
        if let Some(k) = lookup(&plan.build_dir()) {
            progress.message(&format!("cached build {}", plan.key));
            return Ok(k);
        }
    }
    let tree_dir = plan.tree_dir();
    std::fs::create_dir_all(&tree_dir).map_err(|e| KernelError::io(&tree_dir, e))?;
    let lock_path = tree_dir.join("lock");
    let lock_file =
        std::fs::File::create(&lock_path).map_err(|e| KernelError::io(&lock_path, e))?;
    let _lock =
        match nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((f, _)) => {
                progress.message(&format!(
                    "waiting for another build of {}",
                    tree_dir.display()
                ));
                nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
                    .map_err(|(_, e)| KernelError::io(&lock_path, e.into()))?
            }
        };
    // Someone may have built it while we waited.
    if !req.force {
        if let Some(k) = lookup(&plan.build_dir()) {
            progress.message(&format!("cached build {}", plan.key));
            return Ok(k);
        }
    }
    steps::build_locked(req, &plan, progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_kernel_prebuilt_with_patch_rejected() {
        let req = KernelRequest {
            source: KernelSource::Prebuilt {
                bzimage: "b".into(),
                vmlinux: "v".into(),
            },
            patches: vec!["p.patch".into()],
            ..KernelRequest::default()
        };
        let e = ensure_kernel(&req, &Progress::quiet()).unwrap_err();
        assert_eq!(crate::exit::status_of(&e), crate::exit::Status::BadInput);
    }

    #[test]
    fn default_images_dir_holds_fragments_and_patches() {
        let files = config::fragment_files(&default_images_dir()).unwrap();
        assert!(files.len() >= 4, "{files:?}");
        let series = patch::resolve_series(&[default_images_dir().join("patches")]).unwrap();
        assert!(!series.is_empty());
        for p in &series {
            let text = std::fs::read_to_string(p).unwrap();
            assert!(!patch::touched_files(&text).is_empty(), "{}", p.display());
        }
    }

    #[test]
    fn default_fragments_parse_without_conflicts() {
        let mut all = Vec::new();
        for f in config::fragment_files(&default_images_dir()).unwrap() {
            all.extend(config::read_fragment(&f).unwrap());
        }
        let merged = config::merge(&all);
        assert_eq!(
            merged.len(),
            all.len(),
            "a symbol is set twice across fragments"
        );
        let get = |s: &str| {
            merged
                .iter()
                .find(|r| r.symbol == s)
                .map(|r| r.value.clone())
        };
        assert_eq!(get("KASAN"), Some(Value::Yes));
        assert_eq!(get("SLUB_TINY"), Some(Value::No));
        assert_eq!(get("MODULES"), Some(Value::No));
        assert_eq!(get("LKDTM"), Some(Value::Yes));
    }
}
