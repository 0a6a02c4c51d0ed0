//! `dangle bisect` end to end on a git tree made from the default kernel
//! source: the base (Debian's linux-source-6.12), then three commits of
//! our own, one of which puts a WARN in `virtio_gpio_remove` (the patch in
//! `tests/data/validate`, on the path `smoke/gpio-unplug-qmp` takes).
//! bisect must name that commit and leave the tree clean at its HEAD.
//!
//! Cost: the tree is new, so its first build is a cold build in a fresh
//! object tree (ccache, when warm from the default kernel, serves most
//! objects: the compiler sees the same sources under the same base
//! directory); the other commits are incremental builds of one or two
//! files plus the link. Each commit then boots one VM (`--runs 1`). Git
//! tests both endpoints and two middle commits: four builds and four
//! boots in all. Extracting the tarball and `git add` of ~90k files add
//! about a minute.
//!
//! VM test: real QEMU 10 and kernel builds, in the `vm` group (see
//! `.config/nextest.toml`, which also has a `bisect` profile for this one
//! test). Not run with `--profile quick`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's kernel source tarball (as `kernel/source.rs` finds it).
const TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=dangle test",
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn require_host() {
    common::require_qemu();
    assert!(
        Path::new(TARBALL).is_file(),
        "{TARBALL} is missing: run `sudo bash ci/setup-host.sh` (linux-source-6.12)"
    );
}

/// Appends a comment line to a file of the tree.
fn comment(tree: &Path, rel: &str, text: &str) {
    let p = tree.join(rel);
    let mut s = std::fs::read_to_string(&p).expect("read");
    s.push_str(&format!("/* {text} */\n"));
    std::fs::write(&p, s).expect("write");
}

/// Extracts the tarball into `dir/linux` and makes it a git repository
/// with one commit: the base. Returns the tree.
fn base_tree(dir: &Path) -> PathBuf {
    let out = Command::new("tar")
        .arg("-xf")
        .arg(TARBALL)
        .arg("-C")
        .arg(dir)
        .status()
        .expect("run tar");
    assert!(out.success(), "tar -xf {TARBALL}");
    let top = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("the tarball's top directory");
    let tree = dir.join("linux");
    std::fs::rename(&top, &tree).expect("rename");
    git(&tree, &["init", "-q", "-b", "main"]);
    // Debian's tarball ships a top-level .gitignore that ignores `/*`
    // (the package is not a git tree): add everything regardless.
    git(&tree, &["add", "-A", "-f"]);
    git(&tree, &["commit", "-q", "-m", "base: linux-source-6.12"]);
    tree
}

#[test]
fn bisect_warn_commit_in_default_source_is_named() {
    require_host();
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bisect");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    let tree = base_tree(&work);
    let base = git(&tree, &["rev-parse", "HEAD"]);

    comment(
        &tree,
        "drivers/gpio/gpio-virtio.c",
        "dangle bisect test: a comment",
    );
    git(&tree, &["commit", "-q", "-am", "gpio: virtio: a comment"]);
    let patch = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/validate/0001-gpio-virtio-warn-on-interrupt-lines-at-removal.patch");
    git(&tree, &["apply", patch.to_str().expect("utf-8 path")]);
    git(
        &tree,
        &[
            "commit",
            "-q",
            "-am",
            "gpio: virtio: warn on interrupt lines at removal",
        ],
    );
    let warn = git(&tree, &["rev-parse", "HEAD"]);
    comment(
        &tree,
        "drivers/i2c/i2c-core-base.c",
        "dangle bisect test: another comment",
    );
    git(
        &tree,
        &["commit", "-q", "-am", "i2c: core: another comment"],
    );
    let head = git(&tree, &["rev-parse", "HEAD"]);

    let json = work.join("bisect.json");
    let out = Command::new(env!("CARGO_BIN_EXE_dangle"))
        .arg("bisect")
        .arg("--kernel-src")
        .arg(&tree)
        .args(["--good", &base, "--bad", "HEAD"])
        .args(["--scenario", "smoke:gpio-unplug-qmp"])
        .args(["--title", "WARNING in virtio_gpio_remove"])
        .args(["--runs", "1"])
        .arg("--json")
        .arg(&json)
        .arg("--artifacts")
        .arg(work.join("artifacts"))
        .output()
        .expect("run dangle bisect");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&json).unwrap_or_else(|e| panic!("no {}: {e}\n{text}", json.display())),
    )
    .expect("JSON");
    assert_eq!(doc["conclusion"], "found", "{doc:#}");
    assert_eq!(doc["commit"]["hash"], warn.as_str(), "{text}");
    assert!(text.contains("first bad commit"), "{text}");

    // Left as found: on main at the same HEAD, clean, not bisecting.
    assert_eq!(git(&tree, &["rev-parse", "HEAD"]), head);
    assert_eq!(git(&tree, &["symbolic-ref", "HEAD"]), "refs/heads/main");
    assert_eq!(git(&tree, &["status", "--porcelain"]), "", "{text}");
    let log = Command::new("git")
        .arg("-C")
        .arg(&tree)
        .args(["bisect", "log"])
        .output()
        .expect("git bisect log");
    assert!(!log.status.success(), "a bisection is still in progress");
}
