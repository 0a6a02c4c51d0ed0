//! The guest image: the static agent and a newc cpio initramfs around it.
//!
//! [`build_image`] gets the agent ([`AgentSource`]: built with cargo into
//! `<cache>/agent-target`, or a prebuilt one from `DANGLE_AGENT`), plans the
//! archive ([`Recipe`]: `/init` = agent, the usual top directories,
//! `/dev/console`, busybox with its applet links when the host has it, and
//! i2c-tools / gpiod tools with their shared libraries when present), and
//! writes it once per content: the file is `<cache>/images/<key>.cpio`,
//! the key a SHA-256 over every path, mode and file content.
//!
//! The archive is written with the `cpio` crate's newc writer (it does the
//! header and padding rules, and reads archives back for the tests); the
//! entries are laid out here.

pub mod cli;
mod elf;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

pub use elf::is_static_elf;

/// Environment variable naming a prebuilt agent binary to use instead of
/// building one.
pub const AGENT_ENV: &str = "DANGLE_AGENT";
/// The Rust target the agent is built for (no musl target is installed:
/// the gnu target with `+crt-static` gives a static binary).
pub const AGENT_TARGET: &str = "x86_64-unknown-linux-gnu";
/// The cargo profile of the agent (`panic = "abort"`, small).
pub const AGENT_PROFILE: &str = "guest";
/// The rustflags that make the agent static.
pub const AGENT_RUSTFLAGS: &str = "-C target-feature=+crt-static";
/// Where busybox is looked for (Debian's busybox-static installs
/// `/bin/busybox`).
pub const BUSYBOX_CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];
/// Optional tools copied with their libraries when the host has them.
pub const OPTIONAL_TOOLS: &[&str] = &[
    "i2cdetect",
    "i2cget",
    "i2cset",
    "i2cdump",
    "i2ctransfer",
    "gpiodetect",
    "gpioinfo",
    "gpioget",
    "gpioset",
    "gpiomon",
];
/// Directories the optional tools are looked up in.
pub const TOOL_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin"];
/// Bump when the image layout changes.
const RECIPE_VERSION: &str = "dangle-initramfs-v1";

/// Errors of the image builder.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// cargo could not be run.
    #[error("cannot run {cmd}")]
    CargoSpawn {
        /// The command line.
        cmd: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// cargo failed.
    #[error("building the agent failed ({status}): {cmd}")]
    CargoFailed {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// The agent binary is not static (it has an ELF interpreter).
    #[error(
        "agent {path} is not a static executable (it needs a dynamic loader); build it with {AGENT_RUSTFLAGS}"
    )]
    AgentNotStatic {
        /// The binary.
        path: PathBuf,
        /// Whether the user supplied it ([`AgentSource::Prebuilt`]) rather
        /// than dangle building it.
        prebuilt: bool,
    },
    /// A file could not be read or written.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An ELF file could not be parsed.
    #[error("cannot parse ELF file {path}")]
    Elf {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: object::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.to_owned();
    move |source| ImageError::Io { what, path, source }
}

/// Where the agent comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentSource {
    /// A prebuilt static binary.
    Prebuilt(PathBuf),
    /// Build `dangle-agent` from the workspace at `workspace` into
    /// `target_dir`.
    Build {
        /// The workspace root (holds `Cargo.toml`).
        workspace: PathBuf,
        /// The cargo target directory.
        target_dir: PathBuf,
    },
}

impl AgentSource {
    /// `DANGLE_AGENT` when set, else a build from this source tree into
    /// `<cache>/agent-target`.
    pub fn from_env(cache: &Path) -> Self {
        match std::env::var_os(AGENT_ENV).filter(|v| !v.is_empty()) {
            Some(p) => Self::Prebuilt(PathBuf::from(p)),
            None => Self::Build {
                workspace: default_workspace(),
                target_dir: cache.join("agent-target"),
            },
        }
    }
}

/// The workspace this harness was built from.
pub fn default_workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

/// The cargo command line that builds the static agent.
pub fn agent_build_command(workspace: &Path, target_dir: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .args([
            "-p",
            "dangle-agent",
            "--profile",
            AGENT_PROFILE,
            "--target",
            AGENT_TARGET,
        ])
        .env("RUSTFLAGS", AGENT_RUSTFLAGS)
        .env("CARGO_TARGET_DIR", target_dir);
    cmd
}

/// Gets the agent binary: builds it (cargo is quick when it is up to date)
/// or takes the prebuilt one; either way checks that it is static.
///
/// # Errors
/// [`ImageError`] if cargo fails or the binary is not static.
pub fn agent_binary(source: &AgentSource) -> Result<PathBuf, ImageError> {
    let path = match source {
        AgentSource::Prebuilt(p) => p.clone(),
        AgentSource::Build {
            workspace,
            target_dir,
        } => {
            let mut cmd = agent_build_command(workspace, target_dir);
            let line = format!("{cmd:?}");
            tracing::info!("building the guest agent: {line}");
            let status = cmd.status().map_err(|source| ImageError::CargoSpawn {
                cmd: line.clone(),
                source,
            })?;
            if !status.success() {
                return Err(ImageError::CargoFailed { cmd: line, status });
            }
            target_dir
                .join(AGENT_TARGET)
                .join(AGENT_PROFILE)
                .join("dangle-agent")
        }
    };
    if !is_static_elf(&path)? {
        return Err(ImageError::AgentNotStatic {
            path,
            prebuilt: matches!(source, AgentSource::Prebuilt(_)),
        });
    }
    Ok(path)
}

/// Content of a regular file in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Copied from a host file (symlinks followed).
    Host(PathBuf),
    /// Given bytes.
    Bytes(Vec<u8>),
}

/// One archive entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// A regular file.
    File {
        /// Permission bits.
        mode: u32,
        /// What it holds.
        content: Content,
    },
    /// A symbolic link.
    Symlink {
        /// Where it points.
        target: String,
    },
    /// A character device node.
    CharDev {
        /// Permission bits.
        mode: u32,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
}

/// The planned content of the initramfs: archive path (no leading `/`) to
/// entry. Parent directories are added automatically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipe {
    entries: BTreeMap<String, Entry>,
}

impl Recipe {
    /// Adds (or replaces) an entry and its missing parent directories.
    pub fn add(&mut self, path: &str, entry: Entry) {
        let path = path.trim_start_matches('/').to_owned();
        let mut parent = Path::new(&path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            self.entries
                .entry(p.to_string_lossy().into_owned())
                .or_insert(Entry::Dir { mode: 0o755 });
            parent = p.parent();
        }
        self.entries.insert(path, entry);
    }

    /// True if `path` is planned.
    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path.trim_start_matches('/'))
    }

    /// The entries, parents before children.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    /// Adds a host executable at `dest` and every shared library `ldd`
    /// lists for it, at the library's host path.
    ///
    /// # Errors
    /// If `ldd` output cannot be read (a static binary has none, which is
    /// fine).
    pub fn add_binary_with_libs(&mut self, host: &Path, dest: &str) -> Result<(), ImageError> {
        self.add(
            dest,
            Entry::File {
                mode: 0o755,
                content: Content::Host(host.to_owned()),
            },
        );
        // Scripts and other non-ELF files have no libraries to add.
        if is_static_elf(host).unwrap_or(true) {
            return Ok(());
        }
        for lib in ldd(host) {
            let dest = lib.to_string_lossy().into_owned();
            if !self.contains(&dest) {
                self.add(
                    &dest,
                    Entry::File {
                        mode: 0o755,
                        content: Content::Host(lib),
                    },
                );
            }
        }
        Ok(())
    }
}

/// Shared libraries of `bin` as `ldd` lists them (the loader included);
/// empty if ldd is missing or fails.
pub fn ldd(bin: &Path) -> Vec<PathBuf> {
    match Command::new("ldd").arg(bin).output() {
        Ok(out) if out.status.success() => parse_ldd(&String::from_utf8_lossy(&out.stdout)),
        _ => Vec::new(),
    }
}

/// Parses `ldd` output: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6
/// (0x...)` and `/lib64/ld-linux-x86-64.so.2 (0x...)`; `linux-vdso` has
/// no file and is skipped.
pub fn parse_ldd(out: &str) -> Vec<PathBuf> {
    out.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rhs)) => rhs.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Applets of a busybox binary (`busybox --list`).
pub fn busybox_applets(busybox: &Path) -> Vec<String> {
    match Command::new(busybox).arg("--list").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// Host extras found on this machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// busybox, if present.
    pub busybox: Option<PathBuf>,
    /// Optional tools found, by name.
    pub tools: Vec<PathBuf>,
}

impl Extras {
    /// Looks for busybox and the [`OPTIONAL_TOOLS`] on the host.
    pub fn detect() -> Self {
        let busybox = BUSYBOX_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file());
        let tools = OPTIONAL_TOOLS
            .iter()
            .filter_map(|t| {
                TOOL_DIRS
                    .iter()
                    .map(|d| Path::new(d).join(t))
                    .find(|p| p.is_file())
            })
            .collect();
        Self { busybox, tools }
    }
}

/// The initramfs layout: `/init` = agent, top directories, `/dev/console`
/// and `/dev/null` (the kernel opens the console before devtmpfs is
/// mounted), busybox and its applet links, and the extra tools in
/// `/usr/bin` with their libraries.
///
/// # Errors
/// If a binary's ELF headers cannot be read.
pub fn recipe(agent: &Path, extras: &Extras) -> Result<Recipe, ImageError> {
    let mut r = Recipe::default();
    for d in [
        "dev", "proc", "sys", "tmp", "mnt", "run", "root", "etc", "bin", "sbin", "usr/bin",
        "usr/sbin",
    ] {
        r.add(d, Entry::Dir { mode: 0o755 });
    }
    r.add("tmp", Entry::Dir { mode: 0o1777 });
    r.add(
        "dev/console",
        Entry::CharDev {
            mode: 0o600,
            major: 5,
            minor: 1,
        },
    );
    r.add(
        "dev/null",
        Entry::CharDev {
            mode: 0o666,
            major: 1,
            minor: 3,
        },
    );
    r.add(
        "init",
        Entry::File {
            mode: 0o755,
            content: Content::Host(agent.to_owned()),
        },
    );
    r.add(
        "etc/passwd",
        Entry::File {
            mode: 0o644,
            content: Content::Bytes(b"root:x:0:0:root:/root:/bin/sh\n".to_vec()),
        },
    );
    if let Some(bb) = &extras.busybox {
        r.add_binary_with_libs(bb, "bin/busybox")?;
        for applet in busybox_applets(bb) {
            let dest = format!("bin/{applet}");
            if !r.contains(&dest) {
                r.add(
                    &dest,
                    Entry::Symlink {
                        target: "busybox".to_owned(),
                    },
                );
            }
        }
    }
    for tool in &extras.tools {
        if let Some(name) = tool.file_name() {
            let dest = format!("usr/bin/{}", name.to_string_lossy());
            r.add_binary_with_libs(tool, &dest)?;
        }
    }
    Ok(r)
}

fn read_content(c: &Content) -> Result<Vec<u8>, ImageError> {
    match c {
        Content::Bytes(b) => Ok(b.clone()),
        Content::Host(p) => std::fs::read(p).map_err(io_err("cannot read", p)),
    }
}

/// The cache key of a recipe: SHA-256 over the layout version and every
/// entry (path, kind, mode, content), 20 hex digits.
///
/// # Errors
/// If a host file cannot be read.
pub fn recipe_key(r: &Recipe) -> Result<String, ImageError> {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(RECIPE_VERSION.as_bytes());
    for (path, e) in r.entries() {
        field(path.as_bytes());
        match e {
            Entry::Dir { mode } => field(format!("dir {mode:o}").as_bytes()),
            Entry::Symlink { target } => field(format!("symlink {target}").as_bytes()),
            Entry::CharDev { mode, major, minor } => {
                field(format!("chr {mode:o} {major}:{minor}").as_bytes());
            }
            Entry::File { mode, content } => {
                field(format!("file {mode:o}").as_bytes());
                field(&Sha256::digest(read_content(content)?));
            }
        }
    }
    let digest = h.finalize();
    Ok(digest.iter().take(10).map(|b| format!("{b:02x}")).collect())
}

/// Writes `r` as a newc cpio archive (uid/gid 0, mtime 0, so the same
/// recipe gives the same bytes).
///
/// # Errors
/// If a host file cannot be read or `out` fails.
pub fn write_newc<W: Write>(r: &Recipe, out: W) -> Result<W, ImageError> {
    let werr = |source| ImageError::Io {
        what: "cannot write the archive",
        path: PathBuf::new(),
        source,
    };
    let mut out = out;
    for (ino, (path, e)) in (1u32..).zip(r.entries()) {
        let b = cpio::NewcBuilder::new(path).ino(ino).uid(0).gid(0).mtime(0);
        let (b, data) = match e {
            Entry::Dir { mode } => (b.mode(0o040_000 | mode).nlink(2), Vec::new()),
            Entry::File { mode, content } => (b.mode(0o100_000 | mode), read_content(content)?),
            Entry::Symlink { target } => (b.mode(0o120_777), target.as_bytes().to_vec()),
            Entry::CharDev { mode, major, minor } => (
                b.mode(0o020_000 | mode)
                    .rdev_major(*major)
                    .rdev_minor(*minor),
                Vec::new(),
            ),
        };
        let len = u32::try_from(data.len()).map_err(|_| ImageError::Io {
            what: "file too large for newc (4 GiB)",
            path: PathBuf::from(path),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        })?;
        let mut w = b.write(out, len);
        w.write_all(&data).map_err(werr)?;
        out = w.finish().map_err(werr)?;
    }
    cpio::newc::trailer(out).map_err(werr)
}

/// A built image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The cpio file.
    pub path: PathBuf,
    /// Its cache key.
    pub key: String,
    /// The agent it holds.
    pub agent: PathBuf,
    /// True if it was already in the cache.
    pub cached: bool,
}

/// What [`build_image`] needs.
#[derive(Debug, Clone)]
pub struct ImageOptions {
    /// Cache root (`<cache>/images/`, `<cache>/agent-target/`).
    pub cache_dir: PathBuf,
    /// Where the agent comes from.
    pub agent: AgentSource,
    /// busybox and tools to add.
    pub extras: Extras,
}

impl ImageOptions {
    /// The defaults: dangle's cache dir, `DANGLE_AGENT` or a build, and
    /// whatever busybox/tools the host has.
    pub fn from_env() -> Self {
        let cache_dir = crate::paths::cache_dir();
        Self {
            agent: AgentSource::from_env(&cache_dir),
            cache_dir,
            extras: Extras::detect(),
        }
    }
}

/// Builds (or finds in the cache) the initramfs.
///
/// # Errors
/// [`ImageError`] if the agent cannot be built or a file cannot be read or
/// written.
pub fn build_image(opts: &ImageOptions) -> Result<Image, ImageError> {
    let agent = agent_binary(&opts.agent)?;
    let r = recipe(&agent, &opts.extras)?;
    let key = recipe_key(&r)?;
    let dir = opts.cache_dir.join("images");
    let path = dir.join(format!("initramfs-{key}.cpio"));
    if path.is_file() {
        return Ok(Image {
            path,
            key,
            agent,
            cached: true,
        });
    }
    std::fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
    let tmp =
        tempfile::NamedTempFile::new_in(&dir).map_err(io_err("cannot create a file in", &dir))?;
    let w = write_newc(&r, BufWriter::new(tmp))?;
    let tmp = w.into_inner().map_err(|e| ImageError::Io {
        what: "cannot write",
        path: path.clone(),
        source: e.into_error(),
    })?;
    // NamedTempFile is 0600; the image is no secret and others (a CI
    // user, QEMU under another uid) may read it.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .map_err(io_err("cannot chmod", tmp.path()))?;
    tmp.persist(&path).map_err(|e| ImageError::Io {
        what: "cannot rename into",
        path: path.clone(),
        source: e.error,
    })?;
    tracing::info!("initramfs {} ({} entries)", path.display(), r.entries.len());
    Ok(Image {
        path,
        key,
        agent,
        cached: false,
    })
}

/// Paths of host files a recipe copies (for diagnostics).
pub fn host_files(r: &Recipe) -> BTreeSet<PathBuf> {
    r.entries()
        .filter_map(|(_, e)| match e {
            Entry::File {
                content: Content::Host(p),
                ..
            } => Some(p.clone()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
