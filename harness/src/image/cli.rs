//! `dangle image`: builds the guest initramfs and prints its path.

use std::path::PathBuf;

use super::{AGENT_ENV, AgentSource, Extras, ImageError, ImageOptions, build_image};

/// Arguments of `dangle image`.
#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// Also copy the image to FILE (and print FILE).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Use this prebuilt static agent instead of building one.
    #[arg(long, value_name = "PATH", env = AGENT_ENV)]
    pub agent: Option<PathBuf>,
    /// Leave out busybox and the i2c/gpiod tools even when the host has them.
    #[arg(long)]
    pub minimal: bool,
}

impl From<&ImageArgs> for ImageOptions {
    fn from(args: &ImageArgs) -> Self {
        let mut opts = ImageOptions::from_env();
        if let Some(a) = &args.agent {
            opts.agent = AgentSource::Prebuilt(a.clone());
        }
        if args.minimal {
            opts.extras = Extras::default();
        }
        opts
    }
}

/// Runs `dangle image`.
///
/// # Errors
/// [`ImageError`] when the image cannot be built or copied to `--out`.
pub fn run(args: ImageArgs) -> Result<(), ImageError> {
    let opts = ImageOptions::from(&args);
    let image = build_image(&opts)?;
    match &args.out {
        Some(out) => {
            std::fs::copy(&image.path, out).map_err(|source| ImageError::Io {
                what: "cannot copy the image to",
                path: out.clone(),
                source,
            })?;
            println!("{}", out.display());
        }
        None => println!("{}", image.path.display()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_args_agent_and_minimal_map_to_options() {
        let args = ImageArgs {
            out: None,
            agent: Some(PathBuf::from("agent-bin")),
            minimal: true,
        };
        let opts = ImageOptions::from(&args);
        assert_eq!(
            opts.agent,
            AgentSource::Prebuilt(PathBuf::from("agent-bin"))
        );
        assert_eq!(opts.extras, Extras::default());
    }
}
