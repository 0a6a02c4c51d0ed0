//! Getting a bootable pair ready: the kernel (built or from the cache) and
//! the initramfs with the agent. Shared by `dangle boot` and `dangle run`.

use std::path::PathBuf;

use crate::image::{self, ImageError, ImageOptions};
use crate::kernel::{
    self, BuiltKernel, ConfigAdd, KernelError, KernelRequest, KernelSource, Progress, ProgressMode,
};

/// Kernel selection flags shared by `dangle boot` and `dangle run`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KernelSelect {
    /// Build this kernel source tree instead of Debian's linux-source-6.12.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["kernel", "vmlinux"])]
    pub kernel_src: Option<PathBuf>,
    /// Use this prebuilt bzImage (needs --vmlinux).
    #[arg(long, value_name = "BZIMAGE", requires = "vmlinux")]
    pub kernel: Option<PathBuf>,
    /// The vmlinux that matches --kernel (symbolization).
    #[arg(long, value_name = "VMLINUX", requires = "kernel")]
    pub vmlinux: Option<PathBuf>,
    /// A kernel patch file or `git format-patch` series directory;
    /// repeatable, applied in order after dangle's own.
    #[arg(long = "patch", value_name = "FILE|DIR")]
    pub patches: Vec<PathBuf>,
    /// A config fragment or SYMBOL=value; repeatable.
    #[arg(long = "config-add", value_name = "FRAGMENT|SYMBOL=VAL")]
    pub config_add: Vec<String>,
    /// Install missing host packages (QEMU 10 from bookworm-backports,
    /// linux-source-6.12, kernel build tools) with apt.
    #[arg(long)]
    pub install_deps: bool,
}

/// Errors preparing the kernel and image.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The kernel.
    #[error("kernel")]
    Kernel(#[from] KernelError),
    /// The initramfs.
    #[error("initramfs")]
    Image(#[from] ImageError),
    /// The host setup script could not be started.
    #[error("installing host packages failed: cannot run bash")]
    InstallSpawn(#[source] std::io::Error),
    /// The host setup script failed.
    #[error("installing host packages failed: ci/setup-host.sh exited with {0}")]
    InstallFailed(std::process::ExitStatus),
}

/// What a VM boots.
#[derive(Debug, Clone)]
pub struct Bootable {
    /// The kernel.
    pub kernel: BuiltKernel,
    /// The initramfs.
    pub initrd: PathBuf,
}

/// The host setup script, embedded so an installed `dangle` can run it.
const SETUP_HOST: &str = include_str!("../../ci/setup-host.sh");

/// Host programs a default run needs (QEMU and the kernel build tools).
pub const HOST_TOOLS: [&str; 8] = [
    "qemu-system-x86_64",
    "flex",
    "bison",
    "bc",
    "ccache",
    "cpio",
    "make",
    "gcc",
];

/// The [`HOST_TOOLS`] not found on `PATH`.
pub fn missing_host_tools() -> Vec<&'static str> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    HOST_TOOLS
        .into_iter()
        .filter(|t| !std::env::split_paths(&path).any(|d| d.join(t).is_file()))
        .collect()
}

/// Runs the host setup script (apt): QEMU 10, kernel source and tools.
pub fn install_host_packages() -> Result<(), PrepareError> {
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(SETUP_HOST)
        .status()
        .map_err(PrepareError::InstallSpawn)?;
    if status.success() {
        Ok(())
    } else {
        Err(PrepareError::InstallFailed(status))
    }
}

impl KernelSelect {
    /// The kernel request, with `extra_patches` and `extra_config` added
    /// (a scenario's own requirements).
    pub fn request(
        &self,
        extra_patches: &[PathBuf],
        extra_config: &[String],
    ) -> Result<KernelRequest, KernelError> {
        let source = match (&self.kernel_src, &self.kernel, &self.vmlinux) {
            (Some(dir), _, _) => KernelSource::Tree(dir.clone()),
            (None, Some(b), Some(v)) => KernelSource::Prebuilt {
                bzimage: b.clone(),
                vmlinux: v.clone(),
            },
            _ => KernelSource::Debian,
        };
        let config_add = self
            .config_add
            .iter()
            .chain(extra_config)
            .map(|s| ConfigAdd::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KernelRequest {
            source,
            patches: self.patches.iter().chain(extra_patches).cloned().collect(),
            config_add,
            install_deps: self.install_deps,
            ..KernelRequest::default()
        })
    }
}

/// Builds (or finds) the kernel and the initramfs.
pub fn bootable(
    sel: &KernelSelect,
    extra_patches: &[PathBuf],
    extra_config: &[String],
) -> Result<Bootable, PrepareError> {
    if sel.install_deps && !missing_host_tools().is_empty() {
        install_host_packages()?;
    }
    let req = sel.request(extra_patches, extra_config)?;
    let progress = Progress::new(ProgressMode::Auto);
    let kernel = kernel::ensure_kernel(&req, &progress)?;
    let img = image::build_image(&ImageOptions::from_env())?;
    Ok(Bootable {
        kernel,
        initrd: img.path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_adds_scenario_patches_and_config_after_the_users() {
        let sel = KernelSelect {
            patches: vec!["user.patch".into()],
            config_add: vec!["CONFIG_A=y".into()],
            ..Default::default()
        };
        let r = sel
            .request(&["scenario.patch".into()], &["CONFIG_B=y".into()])
            .unwrap();
        assert_eq!(
            r.patches,
            [PathBuf::from("user.patch"), PathBuf::from("scenario.patch")]
        );
        assert_eq!(r.config_add.len(), 2);
        assert!(matches!(r.source, KernelSource::Debian));
    }

    #[test]
    fn request_bad_config_item_is_bad_input() {
        let sel = KernelSelect {
            config_add: vec!["NOT A SYMBOL".into()],
            ..Default::default()
        };
        let e = sel.request(&[], &[]).unwrap_err();
        assert_eq!(
            crate::exit::status_of(&e),
            crate::exit::Status::BadInput,
            "{e}"
        );
    }
}
