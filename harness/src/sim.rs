//! A simulated VM and guest for unit tests: [`SimMachine`] implements
//! [`Machine`] and [`SimGuest`] implements [`Guest`] over one shared
//! [`SimWorld`], so the unplug methods and the engine run their real logic
//! with no QEMU. Faults are switches on the world: an unplug that never
//! completes, a device that never comes back, a consumer that gets stuck.

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

use crate::suite::guest::{Guest, GuestError};
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
