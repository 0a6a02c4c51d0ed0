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

/// Per-user directory for what lives only while dangle runs (the registry
/// of running boots that `dangle ctl` reads): `DANGLE_RUNTIME_DIR`, else
/// `$XDG_RUNTIME_DIR/dangle`, else `dangle-UID` in the temp dir. Created
/// 0700 by [`ensure_private_dir`].
pub fn runtime_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DANGLE_RUNTIME_DIR") {
        return d.into();
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(d).join("dangle");
    }
    std::env::temp_dir().join(format!("dangle-{}", nix::unistd::getuid()))
}

/// Creates `dir` (and parents) with mode 0700 for the last component, and
/// fails when it exists but belongs to another user or is open to others.
pub fn ensure_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::metadata(dir)?;
    if meta.uid() != nix::unistd::getuid().as_raw() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{} belongs to another user", dir.display()),
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Where a command's consoles and logs go by default:
/// `./dangle-artifacts/COMMAND-UNIXTIME`.
pub fn default_artifacts(command: &str) -> PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("dangle-artifacts").join(format!("{command}-{t}"))
}
