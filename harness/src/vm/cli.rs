//! `dangle boot`: a test VM with the virtual hardware attached.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::accel::AccelChoice;
use super::devices::{DEFAULT_GPIO_LINES, DEFAULT_I2C_CHIPS, DeviceSpec};
use super::fixture::{Vm, VmSpec};
use crate::exit::Status;
use crate::prepare::{self, KernelSelect};
use crate::suite::agent_guest::AgentGuest;
use crate::suite::engine::{BOOT_TIMEOUT, error_chain};

/// Boot a test VM with the virtual hardware attached.
///
/// Default hardware: a 32-line GPIO controller (gpio0) and an I2C adapter
/// (i2c0) with an AT24C02 EEPROM at 0x50 and a PCA9555 at 0x20. Without
/// --exec you get a shell on the console; leave with `poweroff -f` or
/// Ctrl-A X. With --exec the command runs in the guest, its output is
/// printed and dangle exits with its status.
#[derive(Debug, clap::Args)]
pub struct BootArgs {
    #[command(flatten)]
    pub kernel: KernelSelect,
    /// Add a GPIO controller with this many lines (repeatable; replaces the default one).
    #[arg(long, value_name = "LINES")]
    pub gpio: Vec<u16>,
    /// Add an I2C adapter with these chips, comma-separated, e.g.
    /// `at24:0x50:24c02,pca9555:0x20` (repeatable; replaces the default one).
    #[arg(long, value_name = "CHIPS")]
    pub i2c: Vec<String>,
    /// No GPIO controller.
    #[arg(long, conflicts_with = "gpio")]
    pub no_gpio: bool,
    /// No I2C adapter.
    #[arg(long, conflicts_with = "i2c")]
    pub no_i2c: bool,
    /// Run this shell command in the guest, print its output, exit with its status.
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
    /// Timeout of --exec.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    pub exec_timeout: Duration,
    /// Accelerator: auto uses KVM only if a probe VM boots.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,
    /// vCPUs.
    #[arg(long, default_value_t = 2)]
    pub smp: u32,
    /// Extra kernel command line words.
    #[arg(long, value_name = "WORDS")]
    pub cmdline: Vec<String>,
    /// Where the console and logs go (default: ./dangle-artifacts/boot-TIME).
    #[arg(long, value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
}

/// The devices asked for on the command line.
pub fn devices(a: &BootArgs) -> Result<Vec<DeviceSpec>, String> {
    let mut out = Vec::new();
    if !a.no_gpio {
        let lines = if a.gpio.is_empty() {
            vec![DEFAULT_GPIO_LINES]
        } else {
            a.gpio.clone()
        };
        for (i, n) in lines.into_iter().enumerate() {
            if n == 0 {
                return Err("--gpio 0: a controller needs at least one line".into());
            }
            out.push(DeviceSpec::gpio(&format!("gpio{i}"), n));
        }
    }
    if !a.no_i2c {
        let sets: Vec<Vec<String>> = if a.i2c.is_empty() {
            vec![DEFAULT_I2C_CHIPS.iter().map(|s| (*s).to_owned()).collect()]
        } else {
            a.i2c
                .iter()
                .map(|s| {
                    s.split(',')
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .collect()
        };
        for (i, chips) in sets.into_iter().enumerate() {
            for c in &chips {
                c.parse::<dangle_backends::i2c::spec::ChipSpec>()
                    .map_err(|e| format!("--i2c {c}: {e}"))?;
            }
            out.push(DeviceSpec::I2c {
                id: format!("i2c{i}"),
                chips,
                faults: Vec::new(),
            });
        }
    }
    Ok(out)
}

/// Runs `dangle boot`; with --exec the exit code is the command's.
pub fn run(a: BootArgs) -> ExitCode {
    match boot(a) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(st) => st.into(),
    }
}

fn boot(a: BootArgs) -> Result<i32, Status> {
    let devices = match devices(&a) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("dangle boot: {e}");
            return Err(Status::BadInput);
        }
    };
    let boot = match prepare::bootable(&a.kernel, &[], &[]) {
        Ok(b) => b,
        Err(e) => {
            crate::exit::print_error(&e);
            return Err(e.status());
        }
    };
    let artifacts = a.artifacts.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PathBuf::from("dangle-artifacts").join(format!("boot-{t}"))
    });
    let mut spec = VmSpec::new(
        boot.kernel.bzimage.clone(),
        boot.initrd.clone(),
        artifacts.clone(),
    );
    spec.devices = devices;
    spec.accel = a.accel;
    spec.memory_mib = a.memory;
    spec.smp = a.smp;
    spec.extra_cmdline = a.cmdline.clone();
    spec.interactive = a.exec.is_none();
    if spec.interactive {
        spec.extra_cmdline.push("dangle.shell=1".into());
    }
    eprintln!(
        "dangle boot: kernel {} ({}), artifacts {}",
        boot.kernel.version,
        boot.kernel.bzimage.display(),
        artifacts.display()
    );
    let mut vm = match Vm::start(spec, None) {
        Ok(vm) => vm,
        Err(e) => {
            crate::exit::print_error(&e);
            return Err(Status::Infrastructure);
        }
    };
    match &a.exec {
        None => {
            // The console is on this terminal; QEMU exits on guest poweroff
            // (-no-reboot) or Ctrl-A X.
            let st = vm.wait_exit_unbounded();
            vm.shutdown();
            eprintln!(
                "dangle boot: VM exited ({}); console: {}",
                st.map_or_else(|e| format!("wait failed: {e}"), |s| s.to_string()),
                artifacts.join("console.log").display()
            );
            Ok(0)
        }
        Some(cmd) => exec(vm, cmd, a.exec_timeout),
    }
}

fn exec(vm: Vm, cmd: &str, timeout: Duration) -> Result<i32, Status> {
    let guest = match AgentGuest::connect(&vm, BOOT_TIMEOUT) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("dangle boot: {}", error_chain(&e));
            eprintln!("{}", vm.postmortem());
            return Err(Status::Infrastructure);
        }
    };
    let req = dangle_proto::ExecRequest {
        argv: vec!["/bin/sh".into(), "-c".into(), cmd.to_owned()],
        env: Default::default(),
        timeout_ms: timeout.as_millis() as u64,
        stdin: None,
    };
    let out = guest.client().exec(req);
    let _ = guest.client().poweroff();
    let mut vm = vm;
    if vm.wait_exit(Duration::from_secs(15)).is_none() {
        vm.quit();
    }
    match out {
        Ok(o) => {
            print!("{}", o.stdout);
            eprint!("{}", o.stderr);
            if o.timed_out {
                eprintln!("dangle boot: the command timed out after {timeout:?}");
                return Ok(124);
            }
            match (o.code, o.signal) {
                (Some(c), _) => Ok(c),
                (None, Some(s)) => Ok(128 + s),
                _ => Err(Status::Infrastructure),
            }
        }
        Err(e) => {
            crate::exit::print_error(&e);
            Err(Status::Infrastructure)
        }
    }
}
