//! `dangle kernel build|config|bench`: arguments and their conversion into a
//! [`KernelRequest`].

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{KernelError, KernelRequest, Progress, ProgressMode};
use crate::prepare::KernelSelect;

/// Arguments of `dangle kernel`.
#[derive(Debug, Args)]
pub struct KernelArgs {
    #[command(subcommand)]
    command: KernelCommand,
}

#[derive(Debug, Subcommand)]
enum KernelCommand {
    /// Build the test kernel (or find it in the cache) and print its paths.
    Build(BuildArgs),
    /// Print the merged config requests (fragments + --config-add), one
    /// `CONFIG_X=v` a line with where each came from.
    Config(BuildArgs),
    /// Measure a cold build, a rebuild after a one-file patch and a cached
    /// call, in a separate cache (`<cache>/bench`).
    Bench(super::bench::BenchArgs),
}

/// Source, patch and config selection shared by the subcommands.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Source, patches, config items and --install-deps, as on `run` and `boot`.
    #[command(flatten)]
    pub select: KernelSelect,
    /// Do not apply images/kernel/patches/.
    #[arg(long)]
    pub no_default_patches: bool,
    /// Directory with the *.config fragments and patches/ (default: this
    /// checkout's images/kernel).
    #[arg(long, value_name = "DIR")]
    pub images_dir: Option<PathBuf>,
    /// Cache root (default: $DANGLE_CACHE_DIR, $XDG_CACHE_HOME/dangle, ~/.cache/dangle).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// make -j (default: number of CPUs).
    #[arg(short, long)]
    pub jobs: Option<usize>,
    /// Rebuild even if the cache has this build (reuses the object tree).
    #[arg(long)]
    pub force: bool,
    /// Progress display.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

impl TryFrom<&BuildArgs> for KernelRequest {
    type Error = KernelError;

    fn try_from(a: &BuildArgs) -> Result<Self, KernelError> {
        let mut req = KernelRequest {
            default_patches: !a.no_default_patches,
            cache_dir: a.cache_dir.clone(),
            jobs: a.jobs,
            force: a.force,
            ..a.select.request(&[], &[])?
        };
        if let Some(d) = &a.images_dir {
            req.images_dir = d.clone();
        }
        Ok(req)
    }
}

/// Runs `dangle kernel`.
///
/// # Errors
/// [`KernelError`]; the caller prints it and picks the exit code.
pub fn run(args: KernelArgs) -> Result<(), KernelError> {
    match args.command {
        KernelCommand::Build(a) => build(&a),
        KernelCommand::Config(a) => print_config(&a),
        KernelCommand::Bench(a) => super::bench::run(&a),
    }
}

fn build(a: &BuildArgs) -> Result<(), KernelError> {
    let req = KernelRequest::try_from(a)?;
    let progress = Progress::new(a.progress);
    let k = super::ensure_kernel(&req, &progress)?;
    if a.json {
        let text = serde_json::to_string_pretty(&k)
            .map_err(|e| KernelError::io("stdout".as_ref(), std::io::Error::other(e)))?;
        println!("{text}");
        return Ok(());
    }
    println!("bzImage:   {}", k.bzimage.display());
    println!("vmlinux:   {}", k.vmlinux.display());
    if let Some(c) = &k.config {
        println!("config:    {}", c.display());
    }
    println!("version:   {}", k.version);
    println!("source:    {}", k.source);
    if !k.cache_key.is_empty() {
        println!(
            "cache-key: {}{}",
            k.cache_key,
            if k.cached { " (cached)" } else { "" }
        );
    }
    if let Some(l) = &k.log {
        println!("log:       {}", l.display());
    }
    Ok(())
}

fn print_config(a: &BuildArgs) -> Result<(), KernelError> {
    let req = KernelRequest::try_from(a)?;
    let mut all = Vec::new();
    for f in super::config::fragment_files(&req.images_dir)? {
        all.extend(super::config::read_fragment(&f)?);
    }
    for c in &req.config_add {
        all.extend(c.requests()?);
    }
    let mut text = String::from("# applied to `make tinyconfig`, then `make olddefconfig`\n");
    for r in super::config::merge(&all) {
        let line = match r.value {
            super::Value::No => format!("# CONFIG_{} is not set", r.symbol),
            v => format!("CONFIG_{}={v}", r.symbol),
        };
        text.push_str(&format!("{line:<50} # {}\n", r.origin));
    }
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{ConfigAdd, KernelSource};
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        a: BuildArgs,
    }

    #[test]
    fn build_args_to_request_maps_sources_and_additions() {
        let t = T::parse_from([
            "t",
            "--kernel-src",
            "/k",
            "--config-add",
            "KASAN=n",
            "--patch",
            "a.patch",
        ]);
        let req = KernelRequest::try_from(&t.a).unwrap();
        assert_eq!(req.source, KernelSource::Tree("/k".into()));
        assert_eq!(
            req.config_add,
            [ConfigAdd::Symbol("KASAN".into(), super::super::Value::No)]
        );
        assert_eq!(req.patches, [PathBuf::from("a.patch")]);
        assert!(req.default_patches);
        let t = T::parse_from(["t"]);
        assert_eq!(
            KernelRequest::try_from(&t.a).unwrap().source,
            KernelSource::Debian
        );
    }

    #[test]
    fn build_args_bad_config_add_is_bad_input() {
        let t = T::parse_from(["t", "--config-add", "nonsense"]);
        let e = KernelRequest::try_from(&t.a).unwrap_err();
        assert_eq!(crate::exit::status_of(&e), crate::exit::Status::BadInput);
    }

    #[test]
    fn build_args_kernel_needs_vmlinux() {
        assert!(T::try_parse_from(["t", "--kernel", "bz"]).is_err());
        let t = T::parse_from(["t", "--kernel", "bz", "--vmlinux", "vm"]);
        assert!(matches!(
            KernelRequest::try_from(&t.a).unwrap().source,
            KernelSource::Prebuilt { .. }
        ));
    }
}
