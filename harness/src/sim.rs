//! A simulated VM and guest for unit tests: [`SimMachine`] implements
//! [`Machine`] and [`SimGuest`] implements [`Guest`] over one shared
//! [`SimWorld`], so the unplug methods and the engine run their real logic
//! with no QEMU. Faults are switches on the world: an unplug that never
//! completes, a device that never comes back, a consumer that gets stuck.
//!
//! One level up, [`SimLauncher`] starts these for the engine and
//! [`SimPlatform`] prepares simulated kernels for the runner: a kernel is
//! its list of patches, and a [`SimRule`] decides, per kernel, scenario and
//! seed, what goes wrong in a run ([`SimEffect`]). Commands built on the
//! runner (`dangle validate`) are tested on it end to end.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dangle_backends::control;
use dangle_proto::{
    ConsumerReport, ConsumerResult, Counters, DeviceList, Event, ExecOutput, GpioChipInfo,
    I2cAdapterInfo, Request, Response,
};

use crate::kernel::{KernelIdentity, PatchError, PatchId, patch};
use crate::prepare::{KernelSelect, PrepareError};
use crate::suite::engine::{EngineError, Launcher};
use crate::suite::guest::{Guest, GuestError};
use crate::suite::load::Plan;
use crate::suite::runner::{KernelReq, Platform, Prepared};
use crate::vm::console::ConsoleSink;
use crate::vm::devices::DeviceSpec;
use crate::vm::fixture::VmError;
use crate::vm::machine::Machine;
use crate::vm::qemu;
use crate::vm::qmp::QmpError;

/// The state both doubles share, and the switches tests set.
#[derive(Debug, Default)]
pub struct SimWorld {
    /// Devices in root-port order.
    pub devices: Vec<DeviceSpec>,
    /// Devices the guest shows now.
    pub present: BTreeSet<String>,
    /// Devices whose `device_del` never gets `DEVICE_DELETED`.
    pub stuck_unplug: BTreeSet<String>,
    /// Devices the guest never probes again after a replug.
    pub never_returns: BTreeSet<String>,
    /// Guest file writes that never return.
    pub hanging_writes: BTreeSet<String>,
    /// Consumers whose first syscall gets stuck (an event is pushed).
    pub stuck_consumers: bool,
    /// Consumers by name: running or not.
    pub consumers: BTreeMap<String, bool>,
    /// Events the guest will push.
    pub events: Vec<Event>,
    /// Everything done to the machine and guest, in order.
    pub log: Vec<String>,
    /// Backends killed and not restarted.
    pub dead_backends: BTreeSet<String>,
    /// Set once the guest powered off.
    pub powered_off: bool,
}

impl SimWorld {
    /// A world with these devices, all present.
    pub fn new(devices: Vec<DeviceSpec>) -> Arc<Mutex<SimWorld>> {
        let present = devices.iter().map(|d| d.id().to_owned()).collect();
        Arc::new(Mutex::new(SimWorld {
            devices,
            present,
            ..SimWorld::default()
        }))
    }

    /// Log lines starting with `prefix`.
    pub fn logged(&self, prefix: &str) -> Vec<String> {
        self.log
            .iter()
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect()
    }

    fn index(&self, id: &str) -> Option<usize> {
        self.devices.iter().position(|d| d.id() == id)
    }

    fn device_list(&self) -> DeviceList {
        let mut list = DeviceList::default();
        for (i, d) in self.devices.iter().enumerate() {
            if !self.present.contains(d.id()) {
                continue;
            }
            let base = format!(
                "/sys/devices/pci0000:00/{}/0000:{:02x}:00.0/virtio{i}",
                qemu::root_port_pci_address(i),
                i + 1
            );
            match d {
                DeviceSpec::Gpio { .. } => list.gpiochips.push(GpioChipInfo {
                    name: format!("gpiochip{i}"),
                    label: format!("virtio{i}"),
                    lines: 8,
                    path: format!("/dev/gpiochip{i}"),
                    device_path: Some(format!("{base}/gpiochip{i}")),
                }),
                DeviceSpec::I2c { .. } => list.i2c_adapters.push(I2cAdapterInfo {
                    bus: u32::try_from(i).unwrap_or(0),
                    name: format!("i2c_virtio at virtio bus {i}"),
                    device_path: Some(format!("{base}/i2c-{i}")),
                }),
            }
        }
        list
    }
}

fn lock(w: &Mutex<SimWorld>) -> MutexGuard<'_, SimWorld> {
    w.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The simulated VM.
#[derive(Debug)]
pub struct SimMachine {
    world: Arc<Mutex<SimWorld>>,
    started: Instant,
    agent: PathBuf,
}

impl SimMachine {
    /// A machine over `world`.
    pub fn new(world: &Arc<Mutex<SimWorld>>) -> Self {
        Self {
            world: Arc::clone(world),
            started: Instant::now(),
            agent: PathBuf::from("sim-agent.sock"),
        }
    }
}

impl Machine for SimMachine {
    fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    fn accel(&self) -> String {
        "sim".to_owned()
    }

    fn agent_socket(&self) -> &Path {
        &self.agent
    }

    fn unplug(&mut self, id: &str, timeout: Duration) -> Result<(), VmError> {
        let mut w = lock(&self.world);
        w.index(id)
            .ok_or_else(|| VmError::NoDevice(id.to_owned()))?;
        w.log.push(format!("device_del {id}"));
        if w.stuck_unplug.contains(id) {
            return Err(VmError::Qmp(QmpError::EventTimeout {
                event: format!("DEVICE_DELETED for {id}"),
                timeout,
            }));
        }
        w.present.remove(id);
        // Consumers end with an error when a device goes; which ones the
        // engine restarts is its business.
        for running in w.consumers.values_mut() {
            *running = false;
        }
        Ok(())
    }

    fn replug(&mut self, id: &str) -> Result<(), VmError> {
        let mut w = lock(&self.world);
        w.index(id)
            .ok_or_else(|| VmError::NoDevice(id.to_owned()))?;
        w.log.push(format!("device_add {id}"));
        if !w.never_returns.contains(id) {
            w.present.insert(id.to_owned());
        }
        Ok(())
    }

    fn kill_backend(&mut self, id: &str) -> Result<(), VmError> {
        let mut w = lock(&self.world);
        w.log.push(format!("kill {id}"));
        w.dead_backends.insert(id.to_owned());
        Ok(())
    }

    fn restart_backend(&mut self, id: &str) -> Result<(), VmError> {
        let mut w = lock(&self.world);
        w.log.push(format!("restart {id}"));
        w.dead_backends.remove(id);
        Ok(())
    }

    fn control(&mut self, id: &str, req: &control::Request) -> Result<control::Response, VmError> {
        let mut w = lock(&self.world);
        let line = serde_json::to_string(req).unwrap_or_default();
        w.log.push(format!("control {id} {line}"));
        Ok(control::Response::ok())
    }

    fn qemu_exited(&mut self) -> Option<ExitStatus> {
        lock(&self.world)
            .powered_off
            .then(|| ExitStatus::from_raw(0))
    }

    fn dead_backends(&mut self) -> Vec<(String, ExitStatus)> {
        lock(&self.world)
            .dead_backends
            .iter()
            .map(|id| (id.clone(), ExitStatus::from_raw(libc::SIGKILL)))
            .collect()
    }

    fn wait_exit(&mut self, _: Duration) -> Option<ExitStatus> {
        self.qemu_exited()
    }

    fn quit(&mut self) -> bool {
        lock(&self.world).powered_off = true;
        true
    }

    fn postmortem(&self) -> String {
        format!("sim post-mortem: {:?}", lock(&self.world).log)
    }
}

/// The simulated guest agent.
#[derive(Debug)]
pub struct SimGuest {
    world: Arc<Mutex<SimWorld>>,
}

impl SimGuest {
    /// A guest over `world`.
    pub fn new(world: &Arc<Mutex<SimWorld>>) -> Self {
        Self {
            world: Arc::clone(world),
        }
    }
}

impl Guest for SimGuest {
    fn call(&mut self, req: Request, timeout: Duration) -> Result<Response, GuestError> {
        let mut w = lock(&self.world);
        if w.powered_off {
            return Err(GuestError::Closed);
        }
        Ok(match req {
            Request::ListDevices {} => Response::Devices(w.device_list()),
            Request::WriteFile { path, data } => {
                w.log.push(format!("write {path} {data}"));
                if w.hanging_writes.contains(&path) {
                    return Err(GuestError::Timeout {
                        what: format!("write {path}"),
                        timeout,
                    });
                }
                let owner = |w: &SimWorld, pred: &dyn Fn(usize) -> bool| {
                    w.devices
                        .iter()
                        .enumerate()
                        .find(|(i, _)| pred(*i))
                        .map(|(_, d)| d.id().to_owned())
                };
                if path.ends_with("/unbind") {
                    let virtio = data.clone();
                    if let Some(id) = owner(&w, &|i| virtio == format!("virtio{i}")) {
                        w.present.remove(&id);
                    }
                } else if path.ends_with("/bind") {
                    let virtio = data.clone();
                    if let Some(id) = owner(&w, &|i| virtio == format!("virtio{i}")) {
                        if !w.never_returns.contains(&id) {
                            w.present.insert(id);
                        }
                    }
                } else if path.ends_with("/remove") {
                    if let Some(id) =
                        owner(&w, &|i| path.contains(&format!("0000:{:02x}:00.0", i + 1)))
                    {
                        w.present.remove(&id);
                    }
                } else if path == "/sys/bus/pci/rescan" {
                    let back: Vec<String> = w
                        .devices
                        .iter()
                        .map(|d| d.id().to_owned())
                        .filter(|id| !w.never_returns.contains(id))
                        .collect();
                    w.present.extend(back);
                }
                Response::Done
            }
            Request::ReadFile { path, .. } => Response::File {
                data: if path.ends_with("/uevent") {
                    "DRIVER=sim\n".to_owned()
                } else {
                    String::new()
                },
                truncated: false,
            },
            Request::StartConsumer { consumer, .. } => {
                w.log.push(format!("start {consumer}"));
                w.consumers.insert(consumer.clone(), true);
                if w.stuck_consumers {
                    w.events.push(Event::ConsumerStuck {
                        id: consumer,
                        syscall: "read".to_owned(),
                        for_ms: 5000,
                    });
                }
                Response::Done
            }
            Request::StopConsumer { consumer } => {
                w.consumers.insert(consumer, false);
                Response::Done
            }
            Request::ConsumerStatus { .. } => Response::Consumers {
                consumers: w
                    .consumers
                    .iter()
                    .map(|(id, running)| ConsumerReport {
                        id: id.clone(),
                        counters: Counters::default(),
                        in_flight: None,
                        result: (!running).then(|| ConsumerResult::Stopped {
                            counters: Counters::default(),
                        }),
                    })
                    .collect(),
            },
            Request::Exec(_) => Response::Exec(ExecOutput {
                code: Some(0),
                signal: None,
                timed_out: false,
                stdout: String::new(),
                stderr: String::new(),
            }),
            Request::Ping {} => Response::Pong { uptime_ms: 1 },
            Request::Poweroff {} => {
                w.powered_off = true;
                Response::Done
            }
            Request::Hello { .. }
            | Request::Sysctl { .. }
            | Request::InterruptConsumer { .. }
            | Request::StartShell {} => Response::Done,
        })
    }

    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut lock(&self.world).events)
    }
}

/// What a simulated kernel does wrong in one scenario run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimEffect {
    /// The console shows a `WARNING` splat whose guilty frame is this
    /// function (title `WARNING in FUNCTION`).
    Warning(String),
    /// Every consumer's first syscall gets stuck.
    StuckConsumers,
    /// The machine does not start (an infrastructure failure).
    NoBoot,
}

/// A simulated kernel: the names of its patches, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimKernel {
    /// Patch file names.
    pub patches: Vec<String>,
}

impl SimKernel {
    /// Whether a patch of this name is applied.
    pub fn has(&self, name: &str) -> bool {
        self.patches.iter().any(|p| p == name)
    }

    /// `base` without patches, else the patch names joined by `+`.
    pub fn name(&self) -> String {
        if self.patches.is_empty() {
            "base".to_owned()
        } else {
            self.patches.join("+")
        }
    }
}

/// Decides what goes wrong: (kernel, scenario name, run seed) to effects.
pub type SimRule = dyn Fn(&SimKernel, &str, u64) -> Vec<SimEffect> + Send + Sync;

/// What the simulated platforms did, shared by every platform and launcher
/// made with the same counters.
#[derive(Debug, Default)]
pub struct SimCounters {
    /// Kernels prepared, by [`SimKernel::name`].
    pub prepares: Mutex<BTreeMap<String, usize>>,
    /// Machines started, by [`SimKernel::name`].
    pub launches: Mutex<BTreeMap<String, usize>>,
}

impl SimCounters {
    fn bump(m: &Mutex<BTreeMap<String, usize>>, k: &str) {
        *m.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(k.to_owned())
            .or_default() += 1;
    }

    fn get(m: &Mutex<BTreeMap<String, usize>>, k: &str) -> usize {
        m.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(k)
            .copied()
            .unwrap_or(0)
    }

    /// Kernels named `kernel` prepared so far.
    pub fn prepares(&self, kernel: &str) -> usize {
        Self::get(&self.prepares, kernel)
    }

    /// Machines started with the kernel named `kernel` so far.
    pub fn launches(&self, kernel: &str) -> usize {
        Self::get(&self.launches, kernel)
    }
}

/// Console bytes of a `WARNING` in `function`, as the kernel prints it.
pub fn warning_console(function: &str) -> Vec<u8> {
    format!(
        "[    1.0] WARNING: CPU: 0 PID: 1 at drivers/gpio/gpiolib.c:100 {function}+0x1/0x2\n\
[    1.0] RIP: 0010:{function}+0x1/0x2\n\
[    1.0] Call Trace:\n\
[    1.0]  {function}+0x1/0x2\n\
[    1.0]  driver_remove+0x1/0x2\n\
[    1.0] ---[ end trace 0 ]---\n"
    )
    .into_bytes()
}

/// The seed of the run a scenario belongs to, read the way `--replay`
/// reads it: from `run.json` in the run's artifacts directory, the parent
/// of the scenario's. 0 when there is none (the engine's own tests).
fn run_seed(scenario_artifacts: &Path) -> u64 {
    scenario_artifacts
        .parent()
        .and_then(|d| std::fs::read(d.join("run.json")).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["seed"].as_u64())
        .unwrap_or(0)
}

/// Starts simulated machines. With a fixed world ([`SimLauncher::new`])
/// every machine shares it, so a test can set it up and inspect it; made
/// by a [`SimPlatform`], each machine gets a fresh world shaped by the
/// platform's rule.
pub struct SimLauncher {
    world: Mutex<Arc<Mutex<SimWorld>>>,
    kernel: Option<(SimKernel, Arc<SimRule>, Arc<SimCounters>)>,
}

impl std::fmt::Debug for SimLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimLauncher")
            .field("kernel", &self.kernel.as_ref().map(|k| &k.0))
            .finish_non_exhaustive()
    }
}

impl SimLauncher {
    /// A launcher whose machines all run in `world`.
    pub fn new(world: &Arc<Mutex<SimWorld>>) -> Self {
        Self {
            world: Mutex::new(Arc::clone(world)),
            kernel: None,
        }
    }
}

impl Launcher for SimLauncher {
    fn start(
        &self,
        plan: &Plan,
        artifacts: &Path,
        mut console: ConsoleSink,
    ) -> Result<Box<dyn Machine>, EngineError> {
        let mut current = self
            .world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((kernel, rule, counters)) = &self.kernel {
            SimCounters::bump(&counters.launches, &kernel.name());
            let world = SimWorld::new(plan.devices.clone());
            for effect in rule(kernel, plan.name(), run_seed(artifacts)) {
                match effect {
                    SimEffect::Warning(f) => console(&warning_console(&f)),
                    SimEffect::StuckConsumers => lock(&world).stuck_consumers = true,
                    SimEffect::NoBoot => {
                        return Err(EngineError::Launch(Box::new(std::io::Error::other(
                            "the simulated machine does not boot",
                        ))));
                    }
                }
            }
            *current = world;
        }
        Ok(Box::new(SimMachine::new(&current)))
    }

    fn connect(&self, _: &dyn Machine, _: Duration) -> Result<Box<dyn Guest>, GuestError> {
        let world = self
            .world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(Box::new(SimGuest::new(&world)))
    }
}

/// Prepares simulated kernels: the patches of a [`KernelSelect`] (and of
/// the scenario) make the kernel; its identity is built from their names
/// and bytes as a real build's would be.
pub struct SimPlatform {
    patches: Vec<PathBuf>,
    config: Vec<String>,
    rule: Arc<SimRule>,
    counters: Arc<SimCounters>,
}

impl std::fmt::Debug for SimPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPlatform")
            .field("patches", &self.patches)
            .finish_non_exhaustive()
    }
}

impl SimPlatform {
    /// The platform of the kernel `sel` selects, behaving by `rule`.
    pub fn new(sel: &KernelSelect, rule: &Arc<SimRule>, counters: &Arc<SimCounters>) -> Self {
        Self {
            patches: sel.patches.clone(),
            config: sel.config_add.clone(),
            rule: Arc::clone(rule),
            counters: Arc::clone(counters),
        }
    }
}

fn hash_hex(parts: &[&[u8]]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    crate::kernel::source::hex(&h.finalize())
}

impl Platform for SimPlatform {
    fn prepare(&mut self, req: &KernelReq) -> Result<Prepared, PrepareError> {
        let wanted: Vec<PathBuf> = self.patches.iter().chain(&req.patches).cloned().collect();
        let series = patch::resolve_series(&wanted).map_err(crate::kernel::KernelError::Patch)?;
        let mut ids = Vec::new();
        for p in &series {
            let bytes = std::fs::read(p).map_err(|source| {
                crate::kernel::KernelError::Patch(PatchError::Read {
                    path: p.clone(),
                    source,
                })
            })?;
            ids.push(PatchId {
                name: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                sha256: hash_hex(&[&bytes]),
            });
        }
        let kernel = SimKernel {
            patches: ids.iter().map(|p| p.name.clone()).collect(),
        };
        SimCounters::bump(&self.counters.prepares, &kernel.name());
        let config: Vec<&[u8]> = self
            .config
            .iter()
            .chain(&req.config)
            .map(|c| c.as_bytes())
            .collect();
        let config_hash = hash_hex(&config);
        let mut key_parts: Vec<&[u8]> = ids.iter().map(|p| p.sha256.as_bytes()).collect();
        key_parts.push(config_hash.as_bytes());
        let identity = KernelIdentity {
            version: "6.12.0-sim".to_owned(),
            source: "sim".to_owned(),
            patches: ids.clone(),
            config_hash: Some(config_hash.clone()),
            cache_key: hash_hex(&key_parts)[..20].to_owned(),
        };
        Ok(Prepared {
            launcher: Arc::new(SimLauncher {
                world: Mutex::new(SimWorld::new(Vec::new())),
                kernel: Some((kernel, Arc::clone(&self.rule), Arc::clone(&self.counters))),
            }),
            kernel: identity,
            symbolizer: None,
            config: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::events::{Event as RunEvent, Reporter};
    use crate::suite::outcome::Outcome;
    use crate::suite::runner::{self, RunOptions};

    struct Nothing;

    impl Reporter for Nothing {
        fn event(&mut self, _: &RunEvent) {}
    }

    const SUITE: &str = "name: sim
defaults:
  settle: 0s
scenarios:
  - name: warn
    devices: [{ kind: gpio, id: gpio0, lines: 8 }]
    unplug: { method: qmp, delay: 0ms }
    expect: clean
  - name: stuck
    devices: [{ kind: gpio, id: gpio0, lines: 8 }]
    consumers:
      - gpio-edge-blocking: { device: gpio0, line: 1 }
    unplug: { method: qmp, delay: 0ms }
    expect: clean
";

    /// Runs the suite once with `seed` on the kernel `patches` select.
    fn run_on(
        patches: Vec<PathBuf>,
        seed: u64,
        counters: &Arc<SimCounters>,
    ) -> Vec<(Outcome, Vec<String>)> {
        let rule: Arc<SimRule> = Arc::new(|k: &SimKernel, scenario: &str, seed: u64| {
            if k.has("bad.patch") {
                vec![SimEffect::NoBoot]
            } else if scenario == "warn" && seed % 2 == 0 {
                vec![SimEffect::Warning("sim_remove".into())]
            } else if scenario == "stuck" {
                vec![SimEffect::StuckConsumers]
            } else {
                Vec::new()
            }
        });
        let sel = KernelSelect {
            patches,
            ..KernelSelect::default()
        };
        let plans = crate::suite::load::load_str(SUITE, Path::new("sim.yaml")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut opts = RunOptions::new(seed, dir.path().to_owned());
        opts.timing.reprobe = Duration::from_millis(400);
        let mut platform = SimPlatform::new(&sel, &rule, counters);
        let summary = runner::run(&plans, &[], &mut platform, &opts, &mut Nothing).unwrap();
        summary
            .results
            .into_iter()
            .map(|r| (r.outcome, r.findings.into_iter().map(|g| g.title).collect()))
            .collect()
    }

    #[test]
    fn sim_platform_rule_decides_findings_by_kernel_scenario_and_seed() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.patch");
        std::fs::write(&bad, "--- a/x.c\n+++ b/x.c\n").unwrap();
        let counters = Arc::default();
        let even = run_on(Vec::new(), 2, &counters);
        assert_eq!(
            even[0].1,
            ["WARNING in sim_remove"],
            "the console splat is parsed"
        );
        assert_eq!(even[1].1, ["consumer stuck: gpio-edge-blocking in read"]);
        let odd = run_on(Vec::new(), 3, &counters);
        assert_eq!(odd[0], (Outcome::Met, Vec::new()), "seed 3 shows nothing");
        let down = run_on(vec![bad], 2, &counters);
        assert!(
            down.iter()
                .all(|(o, _)| matches!(o, Outcome::Infrastructure { .. })),
            "{down:?}"
        );
        assert_eq!(counters.prepares("base"), 2, "one kernel per run");
        assert_eq!(counters.launches("base"), 4);
        assert_eq!(counters.prepares("bad.patch"), 1);
        assert_eq!(counters.launches("bad.patch"), 2);
    }
}
