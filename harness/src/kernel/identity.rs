//! What identifies a kernel for results that depend on it: the build cache
//! key, the version, the source, the patches on top of dangle's own and a
//! hash of the final `.config`.
//!
//! Results recorded against a kernel (`dangle validate`'s base cache) are
//! keyed by [`KernelIdentity::key`], and a stored identity must equal the
//! current one field by field before it is trusted. The build cache key
//! already covers source, toolchain, fragments, patches and config
//! additions; the config hash and the version are checked on top so that a
//! cache entry rebuilt differently (another recipe, a hand-edited tree) can
//! never pass for the same kernel. A prebuilt kernel has no cache key: its
//! bzImage bytes stand in for one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cache::read_bytes;
use super::{BuiltKernel, KernelError, patch, source};

/// One patch applied on top of dangle's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchId {
    /// The file name.
    pub name: String,
    /// SHA-256 of its bytes (hex).
    pub sha256: String,
}

/// The identity of a built (or prebuilt) kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelIdentity {
    /// `make kernelrelease`, or the bzImage header of a prebuilt kernel.
    pub version: String,
    /// Debian package version, git HEAD + dirty hash, or "prebuilt".
    pub source: String,
    /// Patches beyond dangle's own (`--patch`, a scenario's, validate's
    /// PATCHes), in order.
    pub patches: Vec<PatchId>,
    /// SHA-256 of the final `.config` (hex); `None` for a prebuilt kernel.
    pub config_hash: Option<String>,
    /// The build cache key; `prebuilt-<hash of the bzImage>` for a
    /// prebuilt kernel.
    pub cache_key: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    source::hex(&Sha256::digest(bytes))
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

impl KernelIdentity {
    /// The identity of `built`, which was built with `patches` (files or
    /// series directories, as given on the command line) on top of
    /// dangle's own.
    pub fn of(built: &BuiltKernel, patches: &[PathBuf]) -> Result<Self, KernelError> {
        let series = patch::resolve_series(patches)?;
        let patches = series
            .iter()
            .map(|p| {
                Ok(PatchId {
                    name: file_name(p),
                    sha256: sha256_hex(&read_bytes(p)?),
                })
            })
            .collect::<Result<Vec<_>, KernelError>>()?;
        let config_hash = built
            .config
            .as_deref()
            .map(|c| {
                std::fs::read(c)
                    .map(|b| sha256_hex(&b))
                    .map_err(|e| KernelError::io(c, e))
            })
            .transpose()?;
        let cache_key = if built.cache_key.is_empty() {
            let bytes =
                std::fs::read(&built.bzimage).map_err(|e| KernelError::io(&built.bzimage, e))?;
            format!("prebuilt-{}", &sha256_hex(&bytes)[..20])
        } else {
            built.cache_key.clone()
        };
        Ok(Self {
            version: built.version.clone(),
            source: built.source.clone(),
            patches,
            config_hash,
            cache_key,
        })
    }

    /// A short stable name for this identity (20 hex digits over every
    /// field, each length-prefixed), for directory names.
    pub fn key(&self) -> String {
        let mut h = Sha256::new();
        let mut put = |tag: &str, s: &str| {
            h.update(tag.as_bytes());
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        put("version", &self.version);
        put("source", &self.source);
        for p in &self.patches {
            put("patch-name", &p.name);
            put("patch", &p.sha256);
        }
        put("config", self.config_hash.as_deref().unwrap_or("-"));
        put("cache-key", &self.cache_key);
        source::hex(&h.finalize())[..20].to_owned()
    }

    /// One line for people: version, source, patches, short config hash.
    pub fn describe(&self) -> String {
        let patches = if self.patches.is_empty() {
            "no extra patches".to_owned()
        } else {
            self.patches
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let config = self
            .config_hash
            .as_deref()
            .map_or("-".to_owned(), |c| c.chars().take(12).collect());
        format!(
            "{} ({}; {patches}; config {config}; build {})",
            self.version, self.source, self.cache_key
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(dir: &Path, config: &str) -> BuiltKernel {
        let cfg = dir.join("config");
        std::fs::write(&cfg, config).unwrap();
        BuiltKernel {
            bzimage: dir.join("bzImage"),
            vmlinux: dir.join("vmlinux"),
            config: Some(cfg),
            version: "6.12.117".into(),
            source: "debian 6.12.117-1".into(),
            cache_key: "0123456789abcdef0123".into(),
            log: None,
            cached: true,
        }
    }

    #[test]
    fn identity_of_records_patches_in_order_and_hashes_config() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("series");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("0002-b.patch"), "b").unwrap();
        std::fs::write(p.join("0001-a.patch"), "a").unwrap();
        let id = KernelIdentity::of(&built(dir.path(), "CONFIG_A=y\n"), &[p]).unwrap();
        let names: Vec<&str> = id.patches.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["0001-a.patch", "0002-b.patch"]);
        assert_eq!(id.config_hash.as_ref().map(String::len), Some(64));
        assert_eq!(id.cache_key, "0123456789abcdef0123");
    }

    #[test]
    fn identity_key_changes_with_any_field() {
        let dir = tempfile::tempdir().unwrap();
        let a = KernelIdentity::of(&built(dir.path(), "CONFIG_A=y\n"), &[]).unwrap();
        let b = KernelIdentity::of(&built(dir.path(), "CONFIG_A=n\n"), &[]).unwrap();
        assert_ne!(a.key(), b.key(), "another .config is another kernel");
        let mut c = a.clone();
        c.cache_key = "other".into();
        assert_ne!(a.key(), c.key());
        assert_eq!(a.key(), a.clone().key());
        assert_eq!(a.key().len(), 20);
    }

    #[test]
    fn identity_of_prebuilt_hashes_the_bzimage() {
        let dir = tempfile::tempdir().unwrap();
        let mut k = built(dir.path(), "");
        k.config = None;
        k.cache_key = String::new();
        std::fs::write(&k.bzimage, "one").unwrap();
        let one = KernelIdentity::of(&k, &[]).unwrap();
        std::fs::write(&k.bzimage, "two").unwrap();
        let two = KernelIdentity::of(&k, &[]).unwrap();
        assert!(one.cache_key.starts_with("prebuilt-"), "{}", one.cache_key);
        assert_ne!(one.key(), two.key());
        assert_eq!(one.config_hash, None);
    }
}
