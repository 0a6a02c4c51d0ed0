//! Kernel sources: Debian's `linux-source-6.12` package, a user's tree, or a
//! prebuilt bzImage + vmlinux; their identity for the cache key, and the
//! persistent work tree each one is built from.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::KernelError;

/// The Debian package that provides the default kernel source.
pub const DEBIAN_PACKAGE: &str = "linux-source-6.12";
/// Where that package puts its tarball.
pub const DEBIAN_TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";

/// Where the kernel comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KernelSource {
    /// Debian's `linux-source-6.12` package (the default).
    #[default]
    Debian,
    /// A kernel source tree (a git checkout, or any unpacked tree). It is
    /// never modified: dangle mirrors it into its cache and patches there.
    Tree(PathBuf),
    /// A prebuilt kernel: no build, no patches, no config.
    Prebuilt {
        /// The bzImage QEMU boots.
        bzimage: PathBuf,
        /// The matching vmlinux (ELF, ideally with DWARF) for symbolization.
        vmlinux: PathBuf,
    },
}

/// Runs a command, returns its stdout; `what` names it in errors.
pub(crate) fn capture(cmd: &mut Command, what: &str) -> Result<String, KernelError> {
    let out = cmd.output().map_err(|source| KernelError::Tool {
        tool: what.to_owned(),
        source,
    })?;
    if !out.status.success() {
        return Err(KernelError::ToolFailed {
            tool: what.to_owned(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The installed version of the Debian package, or `None` when it is not
/// installed (or dpkg is missing).
pub fn debian_version() -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}\t${Version}", DEBIAN_PACKAGE])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let (status, version) = text.split_once('\t')?;
    (status.ends_with(" installed") && !version.is_empty()).then(|| version.to_owned())
}

/// The exact command that installs the Debian source package.
pub fn install_command() -> String {
    let sudo = if nix::unistd::geteuid().is_root() {
        ""
    } else {
        "sudo "
    };
    format!("{sudo}apt-get install -y {DEBIAN_PACKAGE}")
}

/// Makes sure the Debian package is installed (installing it with apt when
/// `install` is set) and returns its version.
pub fn ensure_debian(install: bool) -> Result<String, KernelError> {
    if let Some(v) = debian_version() {
        if Path::new(DEBIAN_TARBALL).is_file() {
            return Ok(v);
        }
    }
    if !install {
        return Err(KernelError::MissingSource {
            what: format!("{DEBIAN_TARBALL} (package {DEBIAN_PACKAGE})"),
            command: install_command(),
        });
    }
    let mut cmd = if nix::unistd::geteuid().is_root() {
        Command::new("apt-get")
    } else {
        let mut c = Command::new("sudo");
        c.arg("apt-get");
        c
    };
    cmd.args(["install", "-y", "-q", DEBIAN_PACKAGE])
        .env("DEBIAN_FRONTEND", "noninteractive");
    tracing::info!("installing {DEBIAN_PACKAGE}: {cmd:?}");
    let status = cmd.status().map_err(|source| KernelError::Tool {
        tool: "apt-get".to_owned(),
        source,
    })?;
    if !status.success() {
        return Err(KernelError::ToolFailed {
            tool: install_command(),
            output: format!("exited with {status}"),
        });
    }
    match debian_version() {
        Some(v) if Path::new(DEBIAN_TARBALL).is_file() => Ok(v),
        _ => Err(KernelError::MissingSource {
            what: DEBIAN_TARBALL.to_owned(),
            command: install_command(),
        }),
    }
}

/// Unpacks the Debian tarball into `dst` (which must not exist yet), via a
/// temporary sibling directory so that a half-extracted tree is never used.
pub fn extract_tarball(tarball: &Path, dst: &Path) -> Result<(), KernelError> {
    let parent = dst.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".extract-")
        .tempdir_in(parent)
        .map_err(|source| KernelError::io(parent, source))?;
    capture(
        Command::new("tar")
            .arg("-xf")
            .arg(tarball)
            .arg("-C")
            .arg(tmp.path()),
        "tar",
    )?;
    // The tarball holds one top-level directory (linux-source-6.12/).
    let mut entries: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .map_err(|source| KernelError::io(tmp.path(), source))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    let top = match entries.len() {
        1 if entries[0].is_dir() => entries.remove(0),
        _ => tmp.path().to_owned(),
    };
    if top == tmp.path() {
        let kept = tmp.keep();
        std::fs::rename(&kept, dst).map_err(|source| KernelError::io(dst, source))?;
    } else {
        std::fs::rename(&top, dst).map_err(|source| KernelError::io(dst, source))?;
    }
    Ok(())
}

/// Checks that a directory looks like a kernel source tree.
pub fn validate_tree(dir: &Path) -> Result<PathBuf, KernelError> {
    let canon = std::fs::canonicalize(dir).map_err(|source| KernelError::BadInput {
        what: format!("--kernel-src {}", dir.display()),
        reason: "cannot be opened".to_owned(),
        source: Some(source),
    })?;
    for f in ["Makefile", "Kconfig", "scripts/kconfig"] {
        if !canon.join(f).exists() {
            return Err(KernelError::BadInput {
                what: format!("--kernel-src {}", dir.display()),
                reason: format!("not a kernel source tree: no {f}"),
                source: None,
            });
        }
    }
    Ok(canon)
}

/// The identity of a user tree for the cache key: git HEAD plus a hash of
/// the uncommitted diff and untracked files, or, outside git, a hash of
/// every file's path, size and mtime.
pub fn tree_identity(dir: &Path) -> Result<String, KernelError> {
    if dir.join(".git").exists() {
        let head = capture(
            Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(["rev-parse", "HEAD"]),
            "git",
        )?;
        let diff = capture(
            Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(["diff", "HEAD", "--binary"]),
            "git",
        )?;
        let untracked = capture(
            Command::new("git").arg("-C").arg(dir).args([
                "ls-files",
                "--others",
                "--exclude-standard",
                "-z",
            ]),
            "git",
        )?;
        let mut h = Sha256::new();
        h.update(diff.as_bytes());
        for rel in untracked.split('\0').filter(|s| !s.is_empty()) {
            h.update(rel.as_bytes());
            if let Ok(bytes) = std::fs::read(dir.join(rel)) {
                h.update(&bytes);
            }
        }
        let dirty = hex(&h.finalize());
        return Ok(format!("git:{} dirty:{}", head.trim(), &dirty[..16]));
    }
    let mut h = Sha256::new();
    walk(dir, &mut |rel, meta| {
        h.update(rel.as_bytes());
        h.update(meta.len().to_le_bytes());
        if let Ok(t) = meta.modified() {
            let ns = t
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            h.update(ns.to_le_bytes());
        }
    })?;
    Ok(format!("tree-stat:{}", &hex(&h.finalize())[..32]))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Paths a mirror never copies: `.git`, and in-tree build state that would
/// make kbuild refuse an `O=` build ("source tree is not clean").
fn excluded(rel: &str) -> bool {
    rel == ".git"
        || rel == ".config"
        || rel == "include/config"
        || rel == "include/generated"
        || (rel.starts_with("arch/") && rel.ends_with("/include/generated"))
}

/// Walks regular files and symlinks below `root` (minus [`excluded`]),
/// calling `f(relative path, metadata)` in sorted order.
fn walk(root: &Path, f: &mut dyn FnMut(&str, &std::fs::Metadata)) -> Result<(), KernelError> {
    let mut stack = vec![String::new()];
    while let Some(rel_dir) = stack.pop() {
        let dir = if rel_dir.is_empty() {
            root.to_owned()
        } else {
            root.join(&rel_dir)
        };
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|source| KernelError::io(&dir, source))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries.into_iter().rev() {
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if rel_dir.is_empty() {
                name
            } else {
                format!("{rel_dir}/{name}")
            };
            if excluded(&rel) {
                continue;
            }
            let meta = std::fs::symlink_metadata(e.path())
                .map_err(|source| KernelError::io(&e.path(), source))?;
            if meta.is_dir() {
                stack.push(rel);
            } else {
                f(&rel, &meta);
            }
        }
    }
    Ok(())
}

/// Mirrors `src` into `dst` like `rsync -a --delete`: a file is copied when
/// its size or mtime differs, and gets the source's mtime, so make sees
/// exactly the user's edits. Paths in `skip` (the patch layer's files) are
/// left alone. Returns how many files were copied or deleted.
pub fn mirror(src: &Path, dst: &Path, skip: &BTreeSet<String>) -> Result<usize, KernelError> {
    let mut changed = 0usize;
    let mut seen = BTreeSet::new();
    let mut err: Option<KernelError> = None;
    walk(src, &mut |rel, meta| {
        if err.is_some() {
            return;
        }
        seen.insert(rel.to_owned());
        if skip.contains(rel) {
            return;
        }
        match mirror_one(&src.join(rel), &dst.join(rel), meta) {
            Ok(true) => changed += 1,
            Ok(false) => {}
            Err(e) => err = Some(e),
        }
    })?;
    if let Some(e) = err {
        return Err(e);
    }
    if dst.exists() {
        let mut stale = Vec::new();
        walk(dst, &mut |rel, _| {
            if !seen.contains(rel) && !skip.contains(rel) {
                stale.push(rel.to_owned());
            }
        })?;
        for rel in stale {
            let p = dst.join(&rel);
            std::fs::remove_file(&p).map_err(|source| KernelError::io(&p, source))?;
            changed += 1;
        }
    }
    Ok(changed)
}

fn mirror_one(src: &Path, dst: &Path, meta: &std::fs::Metadata) -> Result<bool, KernelError> {
    if let Ok(dmeta) = std::fs::symlink_metadata(dst) {
        let same_type = dmeta.file_type().is_symlink() == meta.file_type().is_symlink();
        if same_type && dmeta.len() == meta.len() && dmeta.modified().ok() == meta.modified().ok() {
            return Ok(false);
        }
        std::fs::remove_file(dst).map_err(|source| KernelError::io(dst, source))?;
    }
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(|source| KernelError::io(parent, source))?;
    }
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(src).map_err(|source| KernelError::io(src, source))?;
        std::os::unix::fs::symlink(&target, dst).map_err(|source| KernelError::io(dst, source))?;
        return Ok(true);
    }
    std::fs::copy(src, dst).map_err(|source| KernelError::io(dst, source))?;
    if let Ok(t) = meta.modified() {
        let f = std::fs::File::options()
            .write(true)
            .open(dst)
            .map_err(|source| KernelError::io(dst, source))?;
        f.set_modified(t)
            .map_err(|source| KernelError::io(dst, source))?;
    }
    Ok(true)
}

/// Checks a prebuilt kernel: both files exist, the bzImage has the x86 boot
/// header ("HdrS"), the vmlinux is an ELF file. Returns the version string
/// embedded in the bzImage header (empty if it has none).
pub fn validate_prebuilt(bzimage: &Path, vmlinux: &Path) -> Result<String, KernelError> {
    let bad = |what: &Path, flag: &str, reason: String, source: Option<std::io::Error>| {
        KernelError::BadInput {
            what: format!("{flag} {}", what.display()),
            reason,
            source,
        }
    };
    let image = std::fs::read(bzimage)
        .map_err(|e| bad(bzimage, "--kernel", "cannot be read".into(), Some(e)))?;
    if image.get(0x202..0x206) != Some(b"HdrS".as_slice()) {
        return Err(bad(
            bzimage,
            "--kernel",
            "not an x86 bzImage (no \"HdrS\" boot header at 0x202)".into(),
            None,
        ));
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(vmlinux)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| bad(vmlinux, "--vmlinux", "cannot be read".into(), Some(e)))?;
    if &magic != b"\x7fELF" {
        return Err(bad(vmlinux, "--vmlinux", "not an ELF file".into(), None));
    }
    Ok(bzimage_version(&image).unwrap_or_default())
}

/// The kernel version string from a bzImage's setup header
/// (`kernel_version` at 0x20e points at a NUL-terminated string, + 0x200).
pub fn bzimage_version(image: &[u8]) -> Option<String> {
    let ptr = u16::from_le_bytes([*image.get(0x20e)?, *image.get(0x20f)?]) as usize;
    if ptr == 0 {
        return None;
    }
    let start = ptr + 0x200;
    let rest = image.get(start..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    let s = String::from_utf8_lossy(&rest[..end]).into_owned();
    Some(s.split_whitespace().next().unwrap_or("").to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_bzimage(version: &str) -> Vec<u8> {
        let mut img = vec![0u8; 0x600];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        let ptr: u16 = 0x300;
        img[0x20e..0x210].copy_from_slice(&ptr.to_le_bytes());
        let s = format!("{version} (builder@host) #1 SMP\0");
        img[0x500..0x500 + s.len()].copy_from_slice(s.as_bytes());
        img
    }

    #[test]
    fn validate_prebuilt_good_files_give_version() {
        let d = tempfile::tempdir().unwrap();
        let (b, v) = (d.path().join("bzImage"), d.path().join("vmlinux"));
        std::fs::write(&b, fake_bzimage("6.12.117")).unwrap();
        std::fs::write(&v, b"\x7fELF\x02\x01\x01").unwrap();
        assert_eq!(validate_prebuilt(&b, &v).unwrap(), "6.12.117");
    }

    #[test]
    fn validate_prebuilt_bad_files_rejected_as_bad_input() {
        let d = tempfile::tempdir().unwrap();
        let (b, v) = (d.path().join("bzImage"), d.path().join("vmlinux"));
        std::fs::write(&b, fake_bzimage("6.12.117")).unwrap();
        std::fs::write(&v, b"not elf").unwrap();
        let e = validate_prebuilt(&b, &v).unwrap_err();
        assert!(e.to_string().contains("not an ELF"), "{e}");
        assert_eq!(crate::exit::status_of(&e), crate::exit::Status::BadInput);
        let e = validate_prebuilt(&d.path().join("missing"), &v).unwrap_err();
        assert!(e.to_string().contains("--kernel"), "{e}");
        assert_eq!(crate::exit::status_of(&e), crate::exit::Status::BadInput);
        std::fs::write(&b, b"MZ").unwrap();
        assert!(
            validate_prebuilt(&b, &v)
                .unwrap_err()
                .to_string()
                .contains("HdrS")
        );
    }

    #[test]
    fn validate_tree_non_kernel_dir_rejected() {
        let d = tempfile::tempdir().unwrap();
        let e = validate_tree(d.path()).unwrap_err();
        assert!(e.to_string().contains("not a kernel source tree"), "{e}");
    }

    #[test]
    fn tree_identity_git_dirty_change_new_identity() {
        let d = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .arg("-C")
                .arg(d.path())
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        git(&["init", "-q"]);
        std::fs::write(d.path().join("Makefile"), "all:\n").unwrap();
        git(&["add", "Makefile"]);
        git(&["commit", "-qm", "init"]);
        let clean = tree_identity(d.path()).unwrap();
        assert!(clean.starts_with("git:"), "{clean}");
        assert_eq!(tree_identity(d.path()).unwrap(), clean);
        std::fs::write(d.path().join("Makefile"), "all: x\n").unwrap();
        let dirty = tree_identity(d.path()).unwrap();
        assert_ne!(dirty, clean);
        std::fs::write(d.path().join("new.c"), "int x;\n").unwrap();
        assert_ne!(tree_identity(d.path()).unwrap(), dirty);
    }

    #[test]
    fn mirror_copies_changes_only_and_deletes_stale() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("src"), d.path().join("dst"));
        std::fs::create_dir_all(src.join("a/b")).unwrap();
        std::fs::create_dir_all(src.join(".git")).unwrap();
        std::fs::write(src.join("a/b/c.c"), "c").unwrap();
        std::fs::write(src.join("x.c"), "x").unwrap();
        std::fs::write(src.join(".config"), "CONFIG_X=y").unwrap();
        std::fs::write(src.join(".git/HEAD"), "ref").unwrap();
        let none = BTreeSet::new();
        assert_eq!(mirror(&src, &dst, &none).unwrap(), 2);
        assert!(!dst.join(".git").exists());
        assert!(!dst.join(".config").exists());
        assert_eq!(mirror(&src, &dst, &none).unwrap(), 0);
        std::fs::remove_file(src.join("x.c")).unwrap();
        std::fs::write(src.join("a/b/c.c"), "changed").unwrap();
        assert_eq!(mirror(&src, &dst, &none).unwrap(), 2);
        assert!(!dst.join("x.c").exists());
        assert_eq!(
            std::fs::read_to_string(dst.join("a/b/c.c")).unwrap(),
            "changed"
        );
        let skip: BTreeSet<String> = ["a/b/c.c".to_owned()].into();
        std::fs::write(dst.join("a/b/c.c"), "patched").unwrap();
        assert_eq!(mirror(&src, &dst, &skip).unwrap(), 0);
        assert_eq!(
            std::fs::read_to_string(dst.join("a/b/c.c")).unwrap(),
            "patched"
        );
    }
}
