//! Command-line arguments of `dangle-backend` (also reachable as the hidden
//! `dangle backend` subcommand, so the harness can spawn itself), their
//! validation into configs, and the process entry point [`run`].

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

use nix::sys::signal::{SigSet, Signal};

use crate::control;
use crate::daemon::{self, DaemonError, Shutdown};
use crate::device::{Device, Model};
use crate::fault::{FaultParseError, FaultSpec, parse_specs};
use crate::gpio::GpioDevice;
use crate::i2c::bus::{Bus, BusError};
use crate::i2c::spec::{ChipSpec, SpecError};
use crate::i2c::vhu_i2c::I2cDevice;

/// Arguments of `dangle-backend`.
#[derive(Debug, clap::Args)]
pub struct BackendArgs {
    /// The device to serve.
    #[command(subcommand)]
    pub device: DeviceArgs,
}

/// One subcommand per device.
#[derive(Debug, clap::Subcommand)]
pub enum DeviceArgs {
    /// A virtio-gpio controller.
    Gpio(GpioArgs),
    /// A virtio-i2c adapter with emulated chips.
    I2c(I2cArgs),
}

/// Arguments shared by every device.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// vhost-user socket to listen on (created 0600; its directory must be
    /// owned by the caller and not writable by others).
    #[arg(long)]
    pub socket: PathBuf,
    /// Control socket (JSON lines) to listen on.
    #[arg(long)]
    pub control: Option<PathBuf>,
    /// Fault rule, repeatable (syntax in the crate docs, e.g. `delay:ms=50`,
    /// `err:addr=0x50,nth=2`, `hold:nth=3`, `abort:nth=10`,
    /// `storm:line=3,count=100`).
    #[arg(long = "fault", value_name = "SPEC")]
    pub faults: Vec<String>,
}

/// `dangle-backend gpio`.
#[derive(Debug, Clone, clap::Args)]
pub struct GpioArgs {
    /// Socket, control socket and faults.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Number of lines.
    #[arg(long, default_value_t = 32)]
    pub lines: u32,
    /// Line names, comma separated, in line order (may be fewer than lines).
    #[arg(long, value_delimiter = ',')]
    pub names: Vec<String>,
}

/// `dangle-backend i2c`.
#[derive(Debug, Clone, clap::Args)]
pub struct I2cArgs {
    /// Socket, control socket and faults.
    #[command(flatten)]
    pub common: CommonArgs,
    /// A chip on the bus, repeatable: `at24:0x50:24c02[:file=PATH]`,
    /// `pca9555:0x20`.
    #[arg(long = "chip", value_name = "SPEC")]
    pub chips: Vec<String>,
}

/// Why arguments did not make a valid config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--lines` out of range.
    #[error("--lines {0}: must be between 1 and 65535")]
    Lines(u32),
    /// More names than lines.
    #[error("--names: {names} names for {lines} lines")]
    TooManyNames {
        /// Names given.
        names: usize,
        /// Lines.
        lines: u16,
    },
    /// A name with a NUL byte.
    #[error("--names: name {0:?} contains a NUL byte")]
    NameNul(String),
    /// A bad `--fault`.
    #[error("--fault")]
    Fault(#[source] FaultParseError),
    /// A bad `--chip`.
    #[error("--chip {spec:?}")]
    Chip {
        /// The spec.
        spec: String,
        /// Cause.
        #[source]
        source: SpecError,
    },
    /// `--control` names the vhost-user socket.
    #[error("--control {0}: same path as --socket")]
    SamePath(PathBuf),
    /// No `--chip`.
    #[error("i2c needs at least one --chip")]
    NoChips,
}

/// Validated configuration of a GPIO controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpioConfig {
    /// Number of lines (1..=65535).
    pub lines: u16,
    /// Line names, possibly fewer than `lines`.
    pub names: Vec<String>,
    /// Fault plan at start.
    pub faults: Vec<FaultSpec>,
}

/// Validated configuration of an I2C adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I2cConfig {
    /// Chips on the bus.
    pub chips: Vec<ChipSpec>,
    /// Fault plan at start.
    pub faults: Vec<FaultSpec>,
}

impl TryFrom<GpioArgs> for GpioConfig {
    type Error = ConfigError;

    fn try_from(args: GpioArgs) -> Result<Self, ConfigError> {
        let lines = u16::try_from(args.lines)
            .ok()
            .filter(|l| *l > 0)
            .ok_or(ConfigError::Lines(args.lines))?;
        if args.names.len() > usize::from(lines) {
            return Err(ConfigError::TooManyNames {
                names: args.names.len(),
                lines,
            });
        }
        if let Some(bad) = args.names.iter().find(|n| n.contains('\0')) {
            return Err(ConfigError::NameNul(bad.clone()));
        }
        Ok(GpioConfig {
            lines,
            names: args.names,
            faults: parse_specs(&args.common.faults).map_err(ConfigError::Fault)?,
        })
    }
}

impl TryFrom<I2cArgs> for I2cConfig {
    type Error = ConfigError;

    fn try_from(args: I2cArgs) -> Result<Self, ConfigError> {
        if args.chips.is_empty() {
            return Err(ConfigError::NoChips);
        }
        let chips = args
            .chips
            .iter()
            .map(|s| {
                s.parse::<ChipSpec>().map_err(|source| ConfigError::Chip {
                    spec: s.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(I2cConfig {
            chips,
            faults: parse_specs(&args.common.faults).map_err(ConfigError::Fault)?,
        })
    }
}

/// Errors of [`run`].
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad arguments.
    #[error("invalid arguments")]
    Config(#[from] ConfigError),
    /// Socket or serve loop failure.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    /// The chips could not be put on the bus.
    #[error("cannot set up the i2c bus")]
    Bus(#[source] BusError),
    /// Signal handling or thread setup failed.
    #[error("cannot set up the process")]
    Setup(#[source] std::io::Error),
}

/// Blocks SIGTERM/SIGINT in this thread (and the threads it spawns later)
/// and spawns a thread that turns them into a clean shutdown.
fn install_signal_thread(shutdown: Arc<Shutdown>) -> Result<(), RunError> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block().map_err(|e| RunError::Setup(e.into()))?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || match set.wait() {
            Ok(sig) => {
                tracing::info!("{sig}: shutting down");
                shutdown.trigger();
            }
            Err(e) => tracing::error!("sigwait failed: {e}"),
        })
        .map_err(RunError::Setup)?;
    Ok(())
}

/// Serves `device` until SIGTERM: binds the sockets, starts the control
/// server, runs the serve loop, removes the sockets.
pub fn serve_device<M: Model>(
    device: Arc<Device<M>>,
    common: &CommonArgs,
    shutdown: &Shutdown,
) -> Result<(), RunError> {
    if common.control.as_ref() == Some(&common.socket) {
        return Err(ConfigError::SamePath(common.socket.clone()).into());
    }
    let listener = daemon::bind_socket(&common.socket)?;
    let control_listener = match &common.control {
        Some(path) => match daemon::bind_socket(path) {
            Ok(l) => Some(l),
            Err(e) => {
                let _ = std::fs::remove_file(&common.socket);
                return Err(e.into());
            }
        },
        None => None,
    };
    if let Some(l) = control_listener {
        control::spawn_server(l, device.clone()).map_err(RunError::Setup)?;
    }
    tracing::info!(
        "{}: listening on {}{}",
        M::KIND,
        common.socket.display(),
        common
            .control
            .as_ref()
            .map(|c| format!(", control on {}", c.display()))
            .unwrap_or_default()
    );
    let result = daemon::serve(&device, &listener, shutdown);
    let _ = std::fs::remove_file(&common.socket);
    if let Some(c) = &common.control {
        let _ = std::fs::remove_file(c);
    }
    result.map_err(RunError::from)
}

/// Runs a backend until SIGTERM or SIGINT.
pub fn run(args: BackendArgs) -> Result<(), Box<dyn Error + Send + Sync>> {
    // Everything this process creates (sockets, a new EEPROM backing file)
    // is private to the caller; set before any thread exists.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let shutdown = Shutdown::new().map_err(RunError::Setup)?;
    match args.device {
        DeviceArgs::Gpio(args) => {
            let common = args.common.clone();
            let config = GpioConfig::try_from(args).map_err(RunError::from)?;
            install_signal_thread(shutdown.clone())?;
            let device = GpioDevice::new(config.lines, &config.names, config.faults);
            serve_device(device, &common, &shutdown)?;
        }
        DeviceArgs::I2c(args) => {
            let common = args.common.clone();
            let config = I2cConfig::try_from(args).map_err(RunError::from)?;
            install_signal_thread(shutdown.clone())?;
            let bus = Bus::from_specs(&config.chips).map_err(RunError::Bus)?;
            let device = I2cDevice::with_bus(bus, config.faults);
            serve_device(device, &common, &shutdown)?;
        }
    }
    Ok(())
}

/// Parses a list of fault specs given on a command line (helper for callers
/// that build args programmatically).
pub fn parse_faults(specs: &[String]) -> Result<Vec<FaultSpec>, ConfigError> {
    parse_specs(specs).map_err(ConfigError::Fault)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Top {
        #[command(flatten)]
        args: BackendArgs,
    }

    fn gpio(argv: &[&str]) -> Result<GpioConfig, ConfigError> {
        let mut full = vec!["dangle-backend", "gpio", "--socket", "s"];
        full.extend_from_slice(argv);
        match Top::parse_from(full).args.device {
            DeviceArgs::Gpio(a) => GpioConfig::try_from(a),
            DeviceArgs::I2c(_) => unreachable!("parsed gpio"),
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Top::command().debug_assert();
    }

    #[test]
    fn gpio_args_defaults_to_32_lines() {
        let c = gpio(&[]).unwrap();
        assert_eq!(c.lines, 32);
        assert!(c.names.is_empty());
    }

    #[test]
    fn gpio_args_names_split_on_commas() {
        let c = gpio(&["--lines", "3", "--names", "a,b"]).unwrap();
        assert_eq!(c.names, ["a", "b"]);
    }

    fn i2c(argv: &[&str]) -> Result<I2cConfig, ConfigError> {
        let mut full = vec!["dangle-backend", "i2c", "--socket", "s"];
        full.extend_from_slice(argv);
        match Top::parse_from(full).args.device {
            DeviceArgs::I2c(a) => I2cConfig::try_from(a),
            DeviceArgs::Gpio(_) => unreachable!("parsed i2c"),
        }
    }

    #[test]
    fn i2c_args_chips_and_faults_parse() {
        let c = i2c(&[
            "--chip",
            "at24:0x50:24c02",
            "--chip",
            "pca9555:0x20",
            "--fault",
            "err:addr=0x50",
        ])
        .unwrap();
        let chips: Vec<String> = c.chips.iter().map(ToString::to_string).collect();
        assert_eq!(chips, ["at24:0x50:24c02", "pca9555:0x20"]);
        assert_eq!(c.faults.len(), 1);
    }

    #[test]
    fn i2c_args_bad_values_rejected() {
        assert!(matches!(i2c(&[]), Err(ConfigError::NoChips)));
        let err = i2c(&["--chip", "foo:0x20"]).unwrap_err();
        assert!(matches!(err, ConfigError::Chip { ref spec, .. } if spec == "foo:0x20"));
        let source = Error::source(&err).unwrap().to_string();
        assert!(source.contains("unknown chip `foo`"), "{source}");
        assert!(matches!(
            i2c(&["--chip", "pca9555:0x20", "--fault", "boom"]),
            Err(ConfigError::Fault(_))
        ));
    }

    #[test]
    fn gpio_args_bad_values_rejected() {
        assert!(matches!(
            gpio(&["--lines", "0"]),
            Err(ConfigError::Lines(0))
        ));
        assert!(matches!(
            gpio(&["--lines", "70000"]),
            Err(ConfigError::Lines(70000))
        ));
        assert!(matches!(
            gpio(&["--lines", "1", "--names", "a,b"]),
            Err(ConfigError::TooManyNames { .. })
        ));
        assert!(matches!(
            gpio(&["--fault", "boom"]),
            Err(ConfigError::Fault(_))
        ));
    }
}
