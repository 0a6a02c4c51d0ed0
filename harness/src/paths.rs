//! Where dangle keeps things on the host.

use std::path::PathBuf;

/// The cache directory: `DANGLE_CACHE_DIR`, else `$XDG_CACHE_HOME/dangle`,
/// else `~/.cache/dangle`, else `dangle-cache` in the temporary directory.
/// Empty variables count as unset. Kernel builds, initramfs images, the
/// agent's build and the KVM probe verdict live under it.
pub fn cache_dir() -> PathBuf {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = nonempty("DANGLE_CACHE_DIR") {
        return d.into();
    }
    if let Some(d) = nonempty("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("dangle");
    }
    if let Some(h) = nonempty("HOME") {
        return PathBuf::from(h).join(".cache").join("dangle");
    }
    std::env::temp_dir().join("dangle-cache")
}
