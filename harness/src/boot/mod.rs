//! `dangle boot`: a test VM with the virtual hardware attached, for people.
//!
//! The VM boots to the agent, the I2C chips are bound the way DT or ACPI
//! would on real hardware (`--no-bind` leaves them), then either `--exec`
//! runs a command and dangle exits with its status, or a banner is printed
//! and a shell starts on the console. While the shell runs, `dangle ctl`
//! (see [`ctl`]) acts on the hardware from another terminal.
//!
//! Process groups: the interactive QEMU stays in dangle's foreground
//! process group so it owns the terminal; Ctrl-C reaches the guest (QEMU's
//! stdio chardev runs with `signal=off`) and Ctrl-A X leaves. The terminal
//! settings are restored when dangle exits, however QEMU ended.

pub mod ctl;
mod term;
pub mod view;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dangle_backends::control;
use dangle_backends::i2c::spec::ChipSpec;
use dangle_proto::{Deadline, DeviceList, Request, Response};

use crate::exit::{Status, print_error};
use crate::prepare::{self, KernelSelect};
use crate::suite::agent_guest::AgentGuest;
use crate::suite::engine::{AGENT_TIMEOUT, BIND_TIMEOUT, BOOT_TIMEOUT, REPROBE_TIMEOUT};
use crate::suite::guest::{self, Guest, GuestError};
use crate::suite::translate::{GuestMap, GuestName, client_name};
use crate::unplug::{self, Completion, Method, Params, Rig, UnplugError};
use crate::vm::accel::AccelChoice;
use crate::vm::devices::{DEFAULT_GPIO_LINES, DEFAULT_I2C_CHIPS, DeviceSpec};
use crate::vm::fixture::{Vm, VmSpec};
use crate::vm::machine::{Machine, control_checked};
use ctl::{LineAction, Outcome, Reply};

/// How often the interactive boot looks for QEMU's exit.
const EXIT_POLL: Duration = Duration::from_millis(100);

/// Boot a test VM with the virtual hardware attached.
///
/// Default hardware: a 32-line GPIO controller (gpio0) and an I2C adapter
/// (i2c0) with an AT24C02 EEPROM at 0x50 and a PCA9555 at 0x20, both bound
/// to their drivers. Without --exec you get a shell on the console; leave
/// with `poweroff` or Ctrl-A X, and act on the hardware from another
/// terminal with `dangle ctl`. With --exec the command runs in the guest,
/// its output is printed and dangle exits with its status.
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
    /// Leave the I2C chips unbound (no `new_device`): bind them by hand.
    #[arg(long)]
    pub no_bind: bool,
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

/// A device flag that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceArgError {
    /// `--gpio 0`.
    #[error("--gpio 0: a controller needs at least one line")]
    NoLines,
    /// A chip that does not parse.
    #[error("--i2c {chip}")]
    Chip {
        /// The chip as given.
        chip: String,
        /// Why.
        #[source]
        source: dangle_backends::i2c::spec::SpecError,
    },
}

/// The devices asked for on the command line.
pub fn devices(a: &BootArgs) -> Result<Vec<DeviceSpec>, DeviceArgError> {
    let mut out = Vec::new();
    if !a.no_gpio {
        let lines = if a.gpio.is_empty() {
            vec![DEFAULT_GPIO_LINES]
        } else {
            a.gpio.clone()
        };
        for (i, n) in lines.into_iter().enumerate() {
            if n == 0 {
                return Err(DeviceArgError::NoLines);
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
                c.parse::<ChipSpec>()
                    .map_err(|source| DeviceArgError::Chip {
                        chip: c.clone(),
                        source,
                    })?;
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
        Ok(code) => ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(255)),
        Err(st) => st.into(),
    }
}

fn boot(a: BootArgs) -> Result<i32, Status> {
    let devices = devices(&a).map_err(|e| crate::exit::fail(&e))?;
    let boot = prepare::bootable(&a.kernel, &[], &[]).map_err(|e| crate::exit::fail(&e))?;
    let artifacts = a
        .artifacts
        .clone()
        .unwrap_or_else(|| crate::paths::default_artifacts("boot"));
    let interactive = a.exec.is_none();
    let mut spec = VmSpec::new(
        boot.kernel.bzimage.clone(),
        boot.initrd.clone(),
        artifacts.clone(),
    );
    spec.devices = devices.clone();
    spec.accel = a.accel;
    spec.memory_mib = a.memory;
    spec.smp = a.smp;
    spec.extra_cmdline = a.cmdline.clone();
    spec.interactive = interactive;
    eprintln!(
        "dangle boot: kernel {} ({}), artifacts {}; booting...",
        boot.kernel.version,
        boot.kernel.bzimage.display(),
        artifacts.display()
    );
    // Before QEMU touches the terminal.
    let _term = interactive.then(term::TermGuard::save);
    let vm = Vm::start(spec, None).map_err(|e| {
        print_error(&e);
        Status::Infrastructure
    })?;
    let guest = match AgentGuest::connect(&vm, BOOT_TIMEOUT) {
        Ok(g) => g,
        Err(e) => {
            print_error(&e);
            eprintln!("{}", vm.postmortem());
            return Err(Status::Infrastructure);
        }
    };
    let mut state = BootState {
        vm,
        guest,
        devices,
        map: GuestMap::new(),
        unplugged: BTreeMap::new(),
        bind: !a.no_bind,
    };
    if let Err(e) = state.settle_devices(None) {
        print_error(&e);
        eprintln!("{}", state.vm.postmortem());
        return Err(Status::Infrastructure);
    }
    match &a.exec {
        Some(cmd) => exec(state, cmd, a.exec_timeout),
        None => interact(state, &boot.kernel.version, &artifacts),
    }
}

fn interact(mut state: BootState, kernel: &str, artifacts: &Path) -> Result<i32, Status> {
    let abs = std::path::absolute(artifacts).unwrap_or_else(|_| artifacts.to_owned());
    let socket = state.vm.socket_dir().join("ctl.sock");
    let tools = match state.guest.client().exec(dangle_proto::ExecRequest {
        argv: vec!["/bin/sh".into(), "-c".into(), view::TOOLS_PROBE.into()],
        env: Default::default(),
        timeout_ms: 10_000,
        stdin: None,
    }) {
        Ok(o) => view::tools(&o.stdout),
        Err(e) => {
            tracing::warn!("tools probe: {e}");
            Vec::new()
        }
    };
    let record = ctl::BootRecord {
        pid: std::process::id(),
        artifacts: abs.clone(),
        socket: socket.clone(),
        kernel: kernel.to_owned(),
        devices: state.devices.iter().map(|d| d.id().to_owned()).collect(),
    };
    let list = state.list().unwrap_or_default();
    let banner = view::banner(
        kernel,
        &Machine::accel(&state.vm),
        &artifacts.display().to_string(),
        &view::devices(&state.devices, &list),
        &tools,
        Some(&format!(
            "dangle ctl status | line gpio0 3 pulse | unplug gpio0 | replug gpio0 (--boot {})",
            abs.display()
        )),
    );
    let state = Arc::new(Mutex::new(state));
    let handler: Arc<Mutex<dyn ctl::Handler>> = state.clone();
    let server = match ctl::Server::start(&socket, handler) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!(
                "dangle boot: no dangle ctl for this boot: {}: {e}",
                socket.display()
            );
            None
        }
    };
    let registration = ctl::Registration::write(&record)
        .map_err(|e| eprintln!("dangle boot: dangle ctl cannot find this boot by default: {e}"))
        .ok();
    eprint!("{banner}");
    {
        let st = state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = st
            .guest
            .client()
            .request(Request::StartShell {}, AGENT_TIMEOUT)
        {
            eprintln!("dangle boot: no shell: {e}");
        }
    }
    let exit = loop {
        std::thread::sleep(EXIT_POLL);
        let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = st.vm.qemu_exited() {
            break e;
        }
    };
    drop(server);
    drop(registration);
    let state = match Arc::try_unwrap(state) {
        Ok(m) => m.into_inner().unwrap_or_else(PoisonError::into_inner),
        Err(_) => {
            eprintln!("dangle boot: VM exited ({exit})");
            return Err(Status::Infrastructure);
        }
    };
    let BootState { vm, .. } = state;
    vm.shutdown();
    eprintln!(
        "dangle boot: VM exited ({exit}); console: {}",
        artifacts.join("console.log").display()
    );
    if exit.success() {
        Ok(0)
    } else {
        Err(Status::Infrastructure)
    }
}

fn exec(state: BootState, cmd: &str, timeout: Duration) -> Result<i32, Status> {
    let req = dangle_proto::ExecRequest {
        argv: vec!["/bin/sh".into(), "-c".into(), cmd.to_owned()],
        env: Default::default(),
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        stdin: None,
    };
    let out = state.guest.client().exec(req);
    let _ = state.guest.client().poweroff();
    let mut vm = state.vm;
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
            print_error(&e);
            Err(Status::Infrastructure)
        }
    }
}

/// Why the devices could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The agent failed.
    #[error("guest agent")]
    Guest(#[from] GuestError),
    /// A device never showed.
    #[error("the guest does not show {devices} after {timeout:?}")]
    Missing {
        /// Device ids.
        devices: String,
        /// How long we waited.
        timeout: Duration,
    },
}

/// A running boot: the VM, its agent, and what has been done to it.
struct BootState {
    vm: Vm,
    guest: AgentGuest,
    devices: Vec<DeviceSpec>,
    map: GuestMap,
    /// Devices pulled out through `dangle ctl`, and how.
    unplugged: BTreeMap<String, Method>,
    /// Bind the I2C chips after boot and after each replug.
    bind: bool,
}

impl BootState {
    fn list(&mut self) -> Result<DeviceList, GuestError> {
        match self.guest.call(Request::ListDevices {}, AGENT_TIMEOUT)? {
            Response::Devices(l) => Ok(l),
            other => Err(GuestError::Unexpected {
                what: "list_devices".into(),
                reply: format!("{other:?}"),
            }),
        }
    }

    /// Waits until the guest shows every device (or `only`), then binds
    /// the chips of the adapters among them.
    fn settle_devices(&mut self, only: Option<&str>) -> Result<(), SetupError> {
        let deadline = Deadline::after(REPROBE_TIMEOUT);
        loop {
            self.map = guest::resolve(&mut self.guest, &self.devices, AGENT_TIMEOUT)?;
            let missing: Vec<&str> = self
                .devices
                .iter()
                .map(DeviceSpec::id)
                .filter(|id| only.is_none_or(|o| o == *id))
                .filter(|id| !self.unplugged.contains_key(*id) && !self.map.contains_key(*id))
                .collect();
            if missing.is_empty() {
                break;
            }
            if deadline.expired() {
                return Err(SetupError::Missing {
                    devices: missing.join(", "),
                    timeout: REPROBE_TIMEOUT,
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if self.bind {
            self.bind_chips(only)?;
        }
        Ok(())
    }

    /// `new_device` for every chip of every adapter the guest shows (or
    /// `only`), then waits for their drivers. A chip whose driver does not
    /// bind is reported and left.
    fn bind_chips(&mut self, only: Option<&str>) -> Result<(), GuestError> {
        let mut pending = Vec::new();
        for d in &self.devices {
            let DeviceSpec::I2c { id, chips, .. } = d else {
                continue;
            };
            if only.is_some_and(|o| o != id) {
                continue;
            }
            let Some(GuestName::I2cBus { bus, .. }) = self.map.get(id) else {
                continue;
            };
            for c in chips.iter().filter_map(|c| c.parse::<ChipSpec>().ok()) {
                guest::new_device(
                    &mut self.guest,
                    *bus,
                    c.model_name(),
                    c.addr(),
                    AGENT_TIMEOUT,
                )?;
                pending.push((client_name(*bus, c.addr()), c.model_name()));
            }
        }
        let deadline = Deadline::after(BIND_TIMEOUT);
        while !pending.is_empty() {
            let mut still = Vec::new();
            for (client, model) in pending {
                if !guest::client_bound(&mut self.guest, &client, AGENT_TIMEOUT)? {
                    still.push((client, model));
                }
            }
            pending = still;
            if deadline.expired() {
                for (client, model) in &pending {
                    eprintln!(
                        "dangle boot: {model} at {client}: no driver bound within {BIND_TIMEOUT:?}"
                    );
                }
                break;
            }
            if !pending.is_empty() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    fn known(&self, id: &str) -> Result<&DeviceSpec, Reply> {
        self.devices.iter().find(|d| d.id() == id).ok_or_else(|| {
            let ids: Vec<&str> = self.devices.iter().map(DeviceSpec::id).collect();
            Reply::with(
                Outcome::BadInput,
                format!("no device {id} in this boot (it has {})", ids.join(", ")),
            )
        })
    }

    fn control(&mut self, id: &str, req: &control::Request) -> Result<control::Response, Reply> {
        control_checked(&mut self.vm, id, req).map_err(|e| {
            Reply::with(
                Outcome::Failed,
                format!("backend of {id}: {}", crate::exit::chain(&e)),
            )
        })
    }

    fn status(&mut self) -> Reply {
        let list = match self.list() {
            Ok(l) => l,
            Err(e) => return failed(&e),
        };
        let views = view::devices(&self.devices, &list);
        let mut s = String::new();
        for (d, v) in self.devices.clone().iter().zip(views) {
            let state = match self.unplugged.get(d.id()) {
                Some(m) => format!("unplugged ({m})"),
                None => "plugged".to_owned(),
            };
            s.push_str(&format!(
                "{:<6} {:<24} {:<18} {}\n",
                v.id, v.what, state, v.guest
            ));
            for c in &v.chips {
                s.push_str(&format!(
                    "{:<6}   {:<22} {:<18} {}\n",
                    "", c.what, "", c.guest
                ));
            }
            match self.control(d.id(), &control::Request::Counters) {
                Ok(r) => {
                    let counters = r
                        .counters
                        .map(|c| {
                            let reqs: u64 = c.requests.values().sum();
                            format!(
                                "requests {reqs}, errors {}, irqs {}, held {}, connections {}",
                                c.errors, c.irqs, c.held, c.connections
                            )
                        })
                        .unwrap_or_default();
                    let faults = r
                        .faults
                        .filter(|f| !f.is_empty())
                        .map_or_else(|| "none".to_owned(), |f| f.join(" "));
                    s.push_str(&format!(
                        "{:<6}   backend: {counters}; faults: {faults}\n",
                        ""
                    ));
                }
                Err(r) => s.push_str(&format!("{:<6}   backend: {}\n", "", r.message)),
            }
        }
        Reply::ok(s.trim_end().to_owned())
    }

    fn unplug(&mut self, id: &str, method: Method, timeout: Duration) -> Reply {
        if let Err(r) = self.known(id) {
            return r;
        }
        if let Some(m) = self.unplugged.get(id) {
            return Reply::with(
                Outcome::BadInput,
                format!("{id} is already unplugged ({m}); replug it first"),
            );
        }
        let params = Params {
            timeout,
            dead_time: Duration::from_secs(1),
        };
        let t0 = Instant::now();
        match unplug::method(method).unplug(self, id, params) {
            Ok(Completion::Done) => {
                if unplug::method(method).removes_device() {
                    self.unplugged.insert(id.to_owned(), method);
                }
                Reply::ok(format!(
                    "{id} unplugged ({method}) in {:.2} s",
                    t0.elapsed().as_secs_f64()
                ))
            }
            Ok(Completion::Never(s)) => {
                self.unplugged.insert(id.to_owned(), method);
                Reply::with(Outcome::Finding, format!("{}: {}", s.title, s.detail))
            }
            Err(e) => failed(&e),
        }
    }

    fn replug(&mut self, id: &str) -> Reply {
        if let Err(r) = self.known(id) {
            return r;
        }
        let Some(method) = self.unplugged.get(id).copied() else {
            return Reply::with(
                Outcome::BadInput,
                format!("{id} is plugged; unplug it first"),
            );
        };
        let params = Params {
            timeout: REPROBE_TIMEOUT,
            dead_time: Duration::from_secs(1),
        };
        let t0 = Instant::now();
        match unplug::method(method).replug(self, id, params) {
            Ok(Completion::Done) => {}
            Ok(Completion::Never(s)) => {
                return Reply::with(Outcome::Finding, format!("{}: {}", s.title, s.detail));
            }
            Err(e) => return failed(&e),
        }
        self.unplugged.remove(id);
        if let Err(e) = self.settle_devices(Some(id)) {
            return Reply::with(
                Outcome::Finding,
                format!(
                    "device never came back: {id} ({method}): {}",
                    crate::exit::chain(&e)
                ),
            );
        }
        let list = self.list().unwrap_or_default();
        let where_ = view::devices(&self.devices, &list)
            .into_iter()
            .find(|v| v.id == id)
            .map(|v| v.guest)
            .unwrap_or_default();
        Reply::ok(format!(
            "{id} replugged ({method}) in {:.2} s: {where_}",
            t0.elapsed().as_secs_f64()
        ))
    }
}

fn failed(e: &(dyn std::error::Error + 'static)) -> Reply {
    Reply::with(Outcome::Failed, crate::exit::chain(e).to_string())
}

impl Rig for BootState {
    fn machine(&mut self) -> &mut dyn Machine {
        &mut self.vm
    }

    fn guest(&mut self) -> &mut dyn Guest {
        &mut self.guest
    }

    fn guest_name(&self, id: &str) -> Option<GuestName> {
        self.map.get(id).cloned()
    }

    fn pause(&mut self, d: Duration) -> Result<(), UnplugError> {
        std::thread::sleep(d);
        Ok(())
    }
}

impl ctl::Handler for BootState {
    fn handle(&mut self, req: ctl::Request) -> Reply {
        match req {
            ctl::Request::Status {} => self.status(),
            ctl::Request::Unplug {
                device,
                method,
                timeout_ms,
            } => self.unplug(&device, method, Duration::from_millis(timeout_ms)),
            ctl::Request::Replug { device } => self.replug(&device),
            ctl::Request::Line {
                device,
                line,
                action,
            } => {
                match self.known(&device) {
                    Ok(DeviceSpec::Gpio { lines, .. }) if line < *lines => {}
                    Ok(DeviceSpec::Gpio { lines, .. }) => {
                        return Reply::with(
                            Outcome::BadInput,
                            format!("{device} has lines 0..{lines}, not {line}"),
                        );
                    }
                    Ok(_) => {
                        return Reply::with(
                            Outcome::BadInput,
                            format!("{device} is not a GPIO controller (pin drives expander pins)"),
                        );
                    }
                    Err(r) => return r,
                }
                let levels: &[bool] = match action {
                    LineAction::High => &[true],
                    LineAction::Low => &[false],
                    LineAction::Pulse => &[true, false],
                };
                for (i, level) in levels.iter().enumerate() {
                    if i > 0 {
                        std::thread::sleep(ctl::PULSE);
                    }
                    if let Err(r) = self.control(
                        &device,
                        &control::Request::DriveLine {
                            line,
                            level: *level,
                        },
                    ) {
                        return r;
                    }
                }
                Reply::ok(format!("{device} line {line}: {action:?}").to_lowercase())
            }
            ctl::Request::Pin {
                device,
                addr,
                pin,
                level,
            } => {
                if let Err(r) = self.known(&device) {
                    return r;
                }
                if pin >= 32 {
                    return Reply::with(Outcome::BadInput, format!("pin {pin}: at most 31"));
                }
                let mask = 1u32 << pin;
                let levels = if level == ctl::Level::High { mask } else { 0 };
                match self.control(&device, &control::Request::DrivePins { addr, mask, levels }) {
                    Ok(_) => Reply::ok(format!(
                        "{device} {addr:#04x} pin {pin}: {}",
                        if levels != 0 { "high" } else { "low" }
                    )),
                    Err(r) => r,
                }
            }
            ctl::Request::Fault { device, specs } => {
                if let Err(r) = self.known(&device) {
                    return r;
                }
                if specs.is_empty() {
                    let released = self
                        .control(&device, &control::Request::ClearFaults)
                        .and_then(|_| self.control(&device, &control::Request::ReleaseHeld));
                    return match released {
                        Ok(r) => Reply::ok(format!(
                            "{device}: faults cleared, {} held request(s) answered",
                            r.released.unwrap_or(0)
                        )),
                        Err(r) => r,
                    };
                }
                match self.control(
                    &device,
                    &control::Request::SetFaults {
                        faults: specs.clone(),
                    },
                ) {
                    Ok(_) => Reply::ok(format!("{device}: faults {}", specs.join(" "))),
                    Err(r) => r,
                }
            }
            ctl::Request::EepromDump { device, addr } => {
                if let Err(r) = self.known(&device) {
                    return r;
                }
                match self.control(&device, &control::Request::DumpEeprom { addr }) {
                    Ok(r) => Reply {
                        outcome: Outcome::Ok,
                        message: format!("{device} {addr:#04x}: dumped"),
                        hex: r.hex,
                    },
                    Err(r) => r,
                }
            }
            ctl::Request::EepromLoad { device, addr, hex } => {
                if let Err(r) = self.known(&device) {
                    return r;
                }
                let n = hex.len() / 2;
                match self.control(&device, &control::Request::LoadEeprom { addr, hex }) {
                    Ok(_) => Reply::ok(format!("{device} {addr:#04x}: {n} bytes loaded")),
                    Err(r) => r,
                }
            }
        }
    }
}
