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
//! The cache root is `$DANGLE_CACHE_DIR`, else `$XDG_CACHE_HOME/dangle`,
//! else `~/.cache/dangle`:
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
pub mod cli;
pub mod config;
pub mod patch;
pub mod progress;
pub mod source;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use config::{ConfigAdd, ConfigError, Dropped, Value};
pub use patch::PatchError;
pub use progress::{Progress, ProgressMode};
pub use source::KernelSource;

use crate::exit::Status;

/// Errors of [`ensure_kernel`]. [`KernelError::status`] maps them to exit
/// codes: bad input (2) or infrastructure failure (3).
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Something the user gave cannot be used.
    #[error("{what}: {reason}")]
    BadInput {
        /// The argument or file.
        what: String,
        /// Why.
        reason: String,
        /// The underlying I/O error, if any.
        #[source]
        source: Option<std::io::Error>,
    },
    /// A fragment or `--config-add` is malformed.
    #[error("bad kernel config input")]
    Config(#[from] ConfigError),
    /// A patch is unreadable or does not apply.
    #[error("cannot apply kernel patches")]
    Patch(#[from] PatchError),
    /// `olddefconfig` dropped requested symbols.
    #[error("olddefconfig dropped requested symbols (final config: {})\n{}", config.display(), list_dropped(dropped))]
    Dropped {
        /// Every dropped symbol with its dependencies.
        dropped: Vec<Dropped>,
        /// The final `.config`.
        config: PathBuf,
    },
    /// The source package is not installed.
    #[error("{what} is missing; install it with: {command}")]
    MissingSource {
        /// What is missing.
        what: String,
        /// The exact install command.
        command: String,
    },
    /// A host tool could not be run.
    #[error("cannot run {tool}")]
    Tool {
        /// The tool.
        tool: String,
        /// The spawn error.
        #[source]
        source: std::io::Error,
    },
    /// A host tool failed.
    #[error("{tool} failed: {output}")]
    ToolFailed {
        /// The tool (or command line).
        tool: String,
        /// Its error output.
        output: String,
    },
    /// `make` failed.
    #[error("kernel build (make {targets}) failed; full log: {}\n--- last lines ---\n{tail}", log.display())]
    Build {
        /// The make targets.
        targets: String,
        /// The full log.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// The build finished but an artefact is missing or wrong.
    #[error("kernel build produced no usable {what}: {path}")]
    Artefact {
        /// Which artefact.
        what: &'static str,
        /// Where it should be.
        path: PathBuf,
    },
    /// No cache directory can be determined.
    #[error("no cache directory: set DANGLE_CACHE_DIR, XDG_CACHE_HOME or HOME")]
    NoCacheDir,
    /// Filesystem trouble in the cache or a tree.
    #[error("i/o error on {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn list_dropped(d: &[Dropped]) -> String {
    d.iter()
        .map(|d| format!("  {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl KernelError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        KernelError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// Whether the user's input is at fault (exit 2) rather than the
    /// machinery (exit 3).
    pub fn is_bad_input(&self) -> bool {
        match self {
            KernelError::BadInput { .. } | KernelError::Config(_) | KernelError::Dropped { .. } => {
                true
            }
            KernelError::Patch(p) => !matches!(
                p,
                PatchError::Tool(_) | PatchError::Io { .. } | PatchError::Manifest { .. }
            ),
            _ => false,
        }
    }

    /// The exit status for this error.
    pub fn status(&self) -> Status {
        if self.is_bad_input() {
            Status::BadInput
        } else {
            Status::Infrastructure
        }
    }
}

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
    /// Cache root; `None` = [`cache_root`].
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

/// The cache root: `$DANGLE_CACHE_DIR`, else `$XDG_CACHE_HOME/dangle`, else
/// `$HOME/.cache/dangle`.
pub fn cache_root() -> Result<PathBuf, KernelError> {
    let nonempty = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = nonempty("DANGLE_CACHE_DIR") {
        return Ok(p);
    }
    if let Some(p) = nonempty("XDG_CACHE_HOME") {
        return Ok(p.join("dangle"));
    }
    nonempty("HOME")
        .map(|h| h.join(".cache/dangle"))
        .ok_or(KernelError::NoCacheDir)
}

/// Everything the cache key covers.
#[derive(Debug, Clone, Default)]
pub struct KeyInputs {
    /// Source identity.
    pub source: String,
    /// Compiler identity.
    pub toolchain: String,
    /// Fragment (file name, bytes) in order.
    pub fragments: Vec<(String, Vec<u8>)>,
    /// Patch (file name, bytes) in order.
    pub patches: Vec<(String, Vec<u8>)>,
    /// `--config-add` items rendered as text (fragments with their bytes).
    pub additions: Vec<String>,
}

/// Bump when the build recipe changes in a way that needs new artefacts.
const RECIPE_VERSION: &str = "dangle-kernel-v1 tinyconfig+fragments olddefconfig bzImage";

/// The cache key: 20 hex digits of a SHA-256 over [`KeyInputs`], each field
/// length-prefixed so no two input sets can collide by concatenation.
pub fn cache_key(k: &KeyInputs) -> String {
    let mut h = Sha256::new();
    let mut put = |tag: &str, bytes: &[u8]| {
        h.update(tag.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    put("recipe", RECIPE_VERSION.as_bytes());
    put("source", k.source.as_bytes());
    put("toolchain", k.toolchain.as_bytes());
    for (n, b) in &k.fragments {
        put("fragment-name", n.as_bytes());
        put("fragment", b);
    }
    for (n, b) in &k.patches {
        put("patch-name", n.as_bytes());
        put("patch", b);
    }
    for a in &k.additions {
        put("add", a.as_bytes());
    }
    source::hex(&h.finalize())[..20].to_owned()
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_bytes(p: &Path) -> Result<Vec<u8>, KernelError> {
    std::fs::read(p).map_err(|source| KernelError::BadInput {
        what: p.display().to_string(),
        reason: "cannot be read".to_owned(),
        source: Some(source),
    })
}

/// The inputs of one build, resolved but not yet built.
#[derive(Debug)]
pub struct Plan {
    /// Cache root.
    pub root: PathBuf,
    /// Source identity (also in the key).
    pub source_id: String,
    /// Directory name of the persistent tree.
    pub tree_id: String,
    /// The user tree to mirror (None for the Debian package).
    pub user_tree: Option<PathBuf>,
    /// Patch series in order.
    pub series: Vec<PathBuf>,
    /// Merged config requests.
    pub requests: Vec<config::Request>,
    /// The cache key.
    pub key: String,
}

impl Plan {
    /// `kernel/trees/<tree-id>`.
    pub fn tree_dir(&self) -> PathBuf {
        self.root.join("kernel/trees").join(&self.tree_id)
    }
    /// `kernel/builds/<key>`.
    pub fn build_dir(&self) -> PathBuf {
        self.root.join("kernel/builds").join(&self.key)
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Resolves a request's inputs and cache key without building. Fails for
/// prebuilt kernels (nothing to plan).
pub fn plan(req: &KernelRequest) -> Result<Plan, KernelError> {
    let root = match &req.cache_dir {
        Some(d) => d.clone(),
        None => cache_root()?,
    };
    let (source_id, tree_id, user_tree) = match &req.source {
        KernelSource::Debian => {
            let v = source::ensure_debian(req.install_deps)?;
            (
                format!("debian:{}:{v}", source::DEBIAN_PACKAGE),
                sanitize(&format!("debian-{}-{v}", source::DEBIAN_PACKAGE)),
                None,
            )
        }
        KernelSource::Tree(dir) => {
            let canon = source::validate_tree(dir)?;
            let id = source::tree_identity(&canon)?;
            let path_hash = source::hex(&Sha256::digest(canon.as_os_str().as_encoded_bytes()));
            (id, format!("tree-{}", &path_hash[..16]), Some(canon))
        }
        KernelSource::Prebuilt { .. } => {
            return Err(KernelError::BadInput {
                what: "--kernel".to_owned(),
                reason: "a prebuilt kernel has no build plan".to_owned(),
                source: None,
            });
        }
    };

    let mut patch_args = Vec::new();
    let ours = req.images_dir.join("patches");
    if req.default_patches && ours.is_dir() {
        patch_args.push(ours);
    }
    patch_args.extend(req.patches.iter().cloned());
    let series = patch::resolve_series(&patch_args)?;

    let fragment_paths = config::fragment_files(&req.images_dir)?;
    let mut all = Vec::new();
    for f in &fragment_paths {
        all.extend(config::read_fragment(f)?);
    }
    for a in &req.config_add {
        all.extend(a.requests()?);
    }
    let requests = config::merge(&all);

    let mut inputs = KeyInputs {
        source: source_id.clone(),
        toolchain: build::toolchain_identity()?,
        ..KeyInputs::default()
    };
    for f in &fragment_paths {
        inputs.fragments.push((file_name(f), read_bytes(f)?));
    }
    for p in &series {
        inputs.patches.push((file_name(p), read_bytes(p)?));
    }
    for a in &req.config_add {
        inputs.additions.push(match a {
            ConfigAdd::Symbol(s, v) => format!("{s}={v}"),
            ConfigAdd::Fragment(p) => format!(
                "fragment {}\n{}",
                file_name(p),
                String::from_utf8_lossy(&read_bytes(p)?)
            ),
        });
    }
    let key = cache_key(&inputs);
    Ok(Plan {
        root,
        source_id,
        tree_id,
        user_tree,
        series,
        requests,
        key,
    })
}

/// Reads a finished build from the cache, if complete.
fn lookup(build_dir: &Path) -> Option<BuiltKernel> {
    let bytes = std::fs::read(build_dir.join("kernel.json")).ok()?;
    let k: BuiltKernel = serde_json::from_slice(&bytes).ok()?;
    (k.bzimage.is_file() && k.vmlinux.is_file()).then_some(BuiltKernel { cached: true, ..k })
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
    build_locked(req, &plan, progress)
}

fn build_locked(
    req: &KernelRequest,
    plan: &Plan,
    progress: &Progress,
) -> Result<BuiltKernel, KernelError> {
    let tree_dir = plan.tree_dir();
    let src = tree_dir.join("src");
    let obj = tree_dir.join("obj");
    let out = plan.build_dir();
    std::fs::create_dir_all(&out).map_err(|e| KernelError::io(&out, e))?;
    let _ = std::fs::remove_file(out.join("kernel.json"));
    let log = out.join("build.log");
    std::fs::write(
        &log,
        format!(
            "# dangle kernel build {}\n# source {}\n",
            plan.key, plan.source_id
        ),
    )
    .map_err(|e| KernelError::io(&log, e))?;
    let started = Instant::now();

    // 1. source tree
    match &plan.user_tree {
        None => {
            let marker = tree_dir.join("extracted");
            if !marker.exists() {
                progress.message(&format!("extracting {}", source::DEBIAN_TARBALL));
                if src.exists() {
                    std::fs::remove_dir_all(&src).map_err(|e| KernelError::io(&src, e))?;
                }
                source::extract_tarball(Path::new(source::DEBIAN_TARBALL), &src)?;
                std::fs::write(&marker, &plan.source_id)
                    .map_err(|e| KernelError::io(&marker, e))?;
            }
        }
        Some(user) => {
            progress.message(&format!("syncing {} into the cache", user.display()));
            let mut skip = patch::manifest_files(&tree_dir)?;
            for p in &plan.series {
                skip.extend(patch::touched_files(&String::from_utf8_lossy(&read_bytes(
                    p,
                )?)));
            }
            let n = source::mirror(user, &src, &skip)?;
            tracing::info!("mirrored {n} changed files");
        }
    }

    // 2. patches
    let base = match &plan.user_tree {
        Some(u) => patch::Base::Dir(u),
        None => patch::Base::SavedOriginals,
    };
    let applied = patch::apply_series(&src, &tree_dir, base, &plan.series)?;
    progress.message(&format!(
        "{} patches, {} files touched, {} rewritten",
        plan.series.len(),
        applied.touched.len(),
        applied.written.len()
    ));

    // 3. config
    std::fs::create_dir_all(&obj).map_err(|e| KernelError::io(&obj, e))?;
    let jobs = req
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZero::get));
    let ccache_dir = plan.root.join("ccache");
    let make = build::Make {
        src: &src,
        obj: &obj,
        log: &log,
        ccache_dir: &ccache_dir,
        jobs,
    };
    progress.message("configuring: tinyconfig + fragments + olddefconfig");
    make.run(&["tinyconfig"], None)?;
    let dotconfig = obj.join(".config");
    let base_cfg =
        std::fs::read_to_string(&dotconfig).map_err(|e| KernelError::io(&dotconfig, e))?;
    std::fs::write(
        &dotconfig,
        config::apply_to_dotconfig(&base_cfg, &plan.requests),
    )
    .map_err(|e| KernelError::io(&dotconfig, e))?;
    make.run(&["olddefconfig"], None)?;
    let final_text =
        std::fs::read_to_string(&dotconfig).map_err(|e| KernelError::io(&dotconfig, e))?;
    let final_cfg = config::parse_dotconfig(&final_text);
    let dropped = config::check(&plan.requests, &final_cfg, &src);
    if !dropped.is_empty() {
        let kept = out.join("config");
        let _ = std::fs::write(&kept, &final_text);
        return Err(KernelError::Dropped {
            dropped,
            config: kept,
        });
    }

    // 4. compile
    let vmlinux_obj = obj.join("vmlinux");
    let cold = !vmlinux_obj.exists();
    let count_file = tree_dir.join("cc-count");
    let estimate = if cold {
        Some(
            std::fs::read_to_string(&count_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(DEFAULT_CC_ESTIMATE),
        )
    } else {
        None
    };
    progress.message(&format!(
        "building bzImage with -j{jobs} ({}); log: {}",
        if cold {
            "cold object tree"
        } else {
            "reusing the object tree"
        },
        log.display()
    ));
    progress.start_compile(estimate);
    let result = make.run(&["bzImage"], Some(progress));
    let compiled = progress.finish_compile();
    result?;
    if cold {
        let _ = std::fs::write(&count_file, compiled.to_string());
    }

    // 5. collect
    let bz_obj = obj.join("arch/x86/boot/bzImage");
    for (what, p) in [("bzImage", &bz_obj), ("vmlinux", &vmlinux_obj)] {
        if !p.is_file() {
            return Err(KernelError::Artefact {
                what,
                path: p.clone(),
            });
        }
    }
    let version = make.kernelrelease()?;
    let kernel = BuiltKernel {
        bzimage: build::install_file(&bz_obj, &out.join("bzImage"))?,
        vmlinux: build::install_file(&vmlinux_obj, &out.join("vmlinux"))?,
        config: Some(build::install_file(&dotconfig, &out.join("config"))?),
        version,
        source: plan.source_id.clone(),
        cache_key: plan.key.clone(),
        log: Some(log.clone()),
        cached: false,
    };
    let json = out.join("kernel.json");
    let bytes = serde_json::to_vec_pretty(&kernel)
        .map_err(|e| KernelError::io(&json, std::io::Error::other(e)))?;
    std::fs::write(&json, bytes).map_err(|e| KernelError::io(&json, e))?;
    progress.message(&format!(
        "built {} ({compiled} files compiled) in {:.0?}",
        kernel.version,
        started.elapsed()
    ));
    Ok(kernel)
}

/// `CC` lines expected from a cold build when no previous count exists
/// (the default config compiles about this many files).
const DEFAULT_CC_ESTIMATE: u64 = 1300;

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> KeyInputs {
        KeyInputs {
            source: "debian:linux-source-6.12:6.12.117-1~deb12u1".into(),
            toolchain: "gcc (Debian 12.2.0-14) 12.2.0".into(),
            fragments: vec![("10-base.config".into(), b"CONFIG_PCI=y\n".to_vec())],
            patches: vec![("0001-a.patch".into(), b"--- a/x\n+++ b/x\n".to_vec())],
            additions: vec!["KASAN=y".into()],
        }
    }

    #[test]
    fn cache_key_same_inputs_same_key() {
        assert_eq!(cache_key(&inputs()), cache_key(&inputs()));
        assert_eq!(cache_key(&inputs()).len(), 20);
    }

    #[test]
    fn cache_key_any_change_new_key() {
        let base = cache_key(&inputs());
        let mut variants = Vec::new();
        let mut k = inputs();
        k.source.push('+');
        variants.push(k);
        let mut k = inputs();
        k.toolchain = "gcc 13".into();
        variants.push(k);
        let mut k = inputs();
        k.fragments[0].1 = b"CONFIG_PCI=n\n".to_vec();
        variants.push(k);
        let mut k = inputs();
        k.patches[0].1.push(b' ');
        variants.push(k);
        let mut k = inputs();
        k.patches.push(("0002-b.patch".into(), b"x".to_vec()));
        variants.push(k);
        let mut k = inputs();
        k.additions[0] = "KASAN=n".into();
        variants.push(k);
        let mut k = inputs();
        k.additions.clear();
        variants.push(k);
        // Moving bytes between fields must not collide either.
        let mut k = inputs();
        k.fragments[0].0 = "10-base.configCONFIG_PCI=y\n".into();
        k.fragments[0].1.clear();
        variants.push(k);
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(cache_key(v), base, "variant {i} kept the key");
        }
    }

    #[test]
    fn kernel_error_classes_map_to_exit_codes() {
        let bad = KernelError::BadInput {
            what: "--kernel x".into(),
            reason: "missing".into(),
            source: None,
        };
        assert_eq!(bad.status(), Status::BadInput);
        let patch = KernelError::Patch(PatchError::DoesNotApply {
            path: "p".into(),
            report: "Hunk #1 FAILED".into(),
        });
        assert_eq!(patch.status(), Status::BadInput);
        let build = KernelError::Build {
            targets: "bzImage".into(),
            log: "l".into(),
            tail: "error".into(),
        };
        assert_eq!(build.status(), Status::Infrastructure);
        let missing = KernelError::MissingSource {
            what: "tarball".into(),
            command: "apt-get install -y linux-source-6.12".into(),
        };
        assert_eq!(missing.status(), Status::Infrastructure);
        assert!(
            missing
                .to_string()
                .contains("apt-get install -y linux-source-6.12")
        );
    }

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
        assert_eq!(e.status(), Status::BadInput);
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
