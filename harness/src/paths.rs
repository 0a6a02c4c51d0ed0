//! Where dangle keeps things on the host.

use std::path::PathBuf;

/// The cache directory: `DANGLE_CACHE_DIR`, else `$XDG_CACHE_HOME/dangle`,
/// else `~/.cache/dangle`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DANGLE_CACHE_DIR") {
        return d.into();
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("dangle");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache").join("dangle");
    }
    std::env::temp_dir().join("dangle-cache")
}
