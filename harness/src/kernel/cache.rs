//! The build cache: what a build's key covers, where its tree and its
//! finished artefacts live (see the layout in the [module docs](super)), and
//! finding a finished build.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{
    BuiltKernel, ConfigAdd, KernelError, KernelRequest, KernelSource, build, config, patch, source,
};

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

pub(super) fn read_bytes(p: &Path) -> Result<Vec<u8>, KernelError> {
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
    let root = req
        .cache_dir
        .clone()
        .unwrap_or_else(crate::paths::cache_dir);
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
pub(super) fn lookup(build_dir: &Path) -> Option<BuiltKernel> {
    let bytes = std::fs::read(build_dir.join("kernel.json")).ok()?;
    let k: BuiltKernel = serde_json::from_slice(&bytes).ok()?;
    (k.bzimage.is_file() && k.vmlinux.is_file()).then_some(BuiltKernel { cached: true, ..k })
}

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
}
