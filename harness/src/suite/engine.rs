//! The unplug engine: runs one scenario in a fresh VM and turns everything
//! it sees into findings.
//!
//! Per scenario: boot (backends + QEMU + agent), run the setup steps, start
//! the consumers, then for each cycle of the seeded schedule wait the
//! jitter, pull the target with the scenario's method, put it back, wait
//! until the guest sees it again, redo the setup, restart consumers that
//! died with it. Throughout, the console goes through the streaming crash
//! parser; agent events (stuck syscalls), agent silence, QEMU exits and
//! backend deaths become findings too.

use dangle_proto::Deadline;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dangle_proto::{ConsumerResult, Event as GuestEvent, Request, Response};

use super::events::{Event, Reporter};
use super::guest::{self, Guest, GuestError};
use super::load::Plan;
use super::outcome::{self, Finding, FindingSource, Outcome, ScenarioResult, secs};
use super::schedule::{Schedule, Scheduler};
use super::schema::{Method, Step};
use super::translate::{self, GuestMap, GuestName};
use crate::report::{Report, Stream, Symbolizer};
use crate::vm::fixture::{Vm, VmError, VmSpec};

/// Boot to agent ready, TCG with a KASAN kernel included.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// One agent request (they are all quick unless the guest is wedged).
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(20);
/// After a replug, how long the guest may take to show the device again.
pub const REPROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new I2C client may take to get its driver bound.
pub const BIND_TIMEOUT: Duration = Duration::from_secs(15);
/// kmemleak reports only objects older than this (MSECS_MIN_AGE).
const KMEMLEAK_AGE: Duration = Duration::from_secs(6);
/// A report still open after this much console silence is complete.
const CONSOLE_QUIET: Duration = Duration::from_secs(2);
/// Poll period while waiting.
const POLL: Duration = Duration::from_millis(100);

/// Errors that end a scenario as an infrastructure failure.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The VM fixture failed.
    #[error("vm")]
    Vm(#[from] VmError),
    /// The agent failed.
    #[error("guest agent")]
    Guest(#[from] GuestError),
    /// Something else, described.
    #[error("{0}")]
    Other(String),
}

/// Finds the recorded schedule of a scenario (`--replay`).
pub type ReplayLookup<'a> = dyn Fn(&str) -> Option<Schedule> + 'a;

/// How the engine gets a guest channel for a started VM.
pub type Connect = dyn Fn(&Vm, Duration) -> Result<Box<dyn Guest>, GuestError>;

/// Inputs shared by every scenario of a run.
pub struct RunContext<'a> {
    /// Builds the VM spec for a plan (kernel, initrd, accel...).
    pub vm_spec: &'a dyn Fn(&Plan, &Path) -> Result<VmSpec, EngineError>,
    /// Connects to the agent.
    pub connect: &'a Connect,
    /// vmlinux for symbolization, if known.
    pub symbolizer: Option<&'a Symbolizer>,
    /// Seed of the run.
    pub seed: u64,
    /// Cycle count override (`--cycles`).
    pub cycles: Option<u32>,
    /// Duration override (`--duration`).
    pub duration: Option<Duration>,
    /// Artifacts root; each scenario gets a subdirectory.
    pub artifacts: PathBuf,
    /// Recorded schedules to replay, by scenario.
    pub replay: Option<&'a ReplayLookup<'a>>,
}

impl std::fmt::Debug for RunContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("seed", &self.seed)
            .field("artifacts", &self.artifacts)
            .finish_non_exhaustive()
    }
}

/// The streaming parser fed by the console thread.
#[derive(Debug, Default)]
struct ConsoleParse {
    stream: Stream,
    /// Completed reports not yet turned into findings.
    done: Vec<Report>,
    /// When console bytes last arrived.
    last_bytes: Option<Instant>,
}

impl ConsoleParse {
    /// Completed reports; with `end`, or when the console has been quiet
    /// for [`CONSOLE_QUIET`] with a report open (a hung task has no end
    /// marker), the open ones too.
    fn take(&mut self, end: bool) -> Vec<Report> {
        let quiet = self
            .last_bytes
            .is_some_and(|t| t.elapsed() >= CONSOLE_QUIET);
        if self.stream.has_open() && (end || quiet) {
            let rest = self.stream.finish();
            self.done.extend(rest);
        }
        std::mem::take(&mut self.done)
    }
}

/// Findings collected from all sources during a scenario.
#[derive(Debug, Default)]
struct Findings {
    list: Vec<Finding>,
    reported: usize,
}

/// Converts a parsed console report into a finding.
pub fn finding_from_report(r: &Report, at: Duration, cycle: Option<u32>) -> Finding {
    Finding {
        title: r.title.clone(),
        source: FindingSource::Console,
        kind: r.kind.clone(),
        corrupted: r.corrupted,
        at_secs: secs(at),
        cycle,
        report: String::from_utf8_lossy(&r.report).into_owned(),
        functions: r.frames.iter().map(|f| f.function.clone()).collect(),
        details: serde_json::to_value(r).ok(),
    }
}

fn synthetic(
    title: String,
    source: FindingSource,
    kind: &str,
    report: String,
    at: Duration,
    cycle: Option<u32>,
) -> Finding {
    Finding {
        title,
        source,
        kind: kind.to_owned(),
        corrupted: false,
        at_secs: secs(at),
        cycle,
        report,
        functions: Vec::new(),
        details: None,
    }
}

struct Run<'a> {
    plan: &'a Plan,
    ctx: &'a RunContext<'a>,
    vm: Vm,
    guest: Box<dyn Guest>,
    map: GuestMap,
    /// Console reports arrive here from the console thread.
    console_reports: Arc<Mutex<ConsoleParse>>,
    findings: Findings,
    cycle: Option<u32>,
    /// Consumers that should be running, by name.
    consumers: Vec<(String, super::schema::Consumer)>,
    /// Backends killed on purpose (not crashes).
    killed: Vec<String>,
    reporters: &'a mut dyn Reporter,
    /// Set once the guest stopped answering or QEMU died: stop cycling.
    dead: bool,
    /// Set when we power the guest off ourselves: QEMU exiting is expected.
    stopping: bool,
}

/// Runs one scenario; never panics on guest behaviour, and always returns
/// a result (infrastructure failures included).
pub fn run_scenario(
    plan: &Plan,
    ctx: &RunContext<'_>,
    reporters: &mut dyn Reporter,
) -> ScenarioResult {
    let started = Instant::now();
    let artifacts = ctx.artifacts.join(sanitize(plan.name()));
    let mut result = ScenarioResult {
        suite: plan.suite.clone(),
        scenario: plan.name().to_owned(),
        expectation: outcome::describe(&plan.scenario.expect),
        outcome: Outcome::Met,
        findings: Vec::new(),
        method: plan.scenario.unplug.as_ref().map(|u| u.method.to_string()),
        cycles: 0,
        cycle_secs: Vec::new(),
        duration_secs: 0.0,
        boot_secs: None,
        seed: ctx.seed,
        artifacts: artifacts.clone(),
        kernel: None,
        notes: plan.scenario.notes.clone(),
    };
    let mut findings = Vec::new();
    let outcome = match run_inner(plan, ctx, &artifacts, reporters, &mut result, &mut findings) {
        Ok(()) => outcome::judge(&plan.scenario.expect, &findings),
        Err(e) => Outcome::Infrastructure {
            error: error_chain(&e),
        },
    };
    result.outcome = outcome;
    result.findings = outcome::dedup(&findings);
    result.duration_secs = secs(started.elapsed());
    let _ = fs::create_dir_all(&artifacts);
    if let Ok(j) =
        serde_json::to_vec_pretty(&serde_json::json!({ "result": &result, "findings": &findings }))
    {
        let _ = fs::write(artifacts.join("result.json"), j);
    }
    result
}

/// Renders an error with its causes on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn run_inner(
    plan: &Plan,
    ctx: &RunContext<'_>,
    artifacts: &Path,
    reporters: &mut dyn Reporter,
    result: &mut ScenarioResult,
    out: &mut Vec<Finding>,
) -> Result<(), EngineError> {
    let spec = (ctx.vm_spec)(plan, artifacts)?;
    let console_reports: Arc<Mutex<ConsoleParse>> = Arc::default();
    let sink_reports = Arc::clone(&console_reports);
    let sink = Box::new(move |bytes: &[u8]| {
        if let Ok(mut p) = sink_reports.lock() {
            let new = p.stream.push(bytes);
            p.done.extend(new);
            p.last_bytes = Some(Instant::now());
        }
    });
    let vm = Vm::start(spec, Some(sink))?;
    let boot_start = Instant::now();
    let guest = match (ctx.connect)(&vm, BOOT_TIMEOUT) {
        Ok(g) => g,
        Err(e) => {
            let pm = vm.postmortem();
            let _ = fs::write(artifacts.join("postmortem.txt"), &pm);
            eprintln!("{pm}");
            return Err(e.into());
        }
    };
    let boot = boot_start.elapsed() + vm.uptime().saturating_sub(boot_start.elapsed());
    result.boot_secs = Some(secs(boot));
    reporters.event(&Event::VmReady {
        scenario: plan.name().to_owned(),
        boot_secs: secs(boot),
        accel: vm.accel().0.to_string(),
    });
    let mut run = Run {
        plan,
        ctx,
        vm,
        guest,
        map: GuestMap::new(),
        console_reports,
        findings: Findings::default(),
        cycle: None,
        consumers: Vec::new(),
        killed: Vec::new(),
        reporters,
        dead: false,
        stopping: false,
    };
    let r = run.body(result);
    run.finish(r.is_ok());
    out.append(&mut run.findings.list);
    if r.is_err() {
        let _ = fs::write(artifacts.join("postmortem.txt"), run.vm.postmortem());
    }
    r
}

impl Run<'_> {
    fn body(&mut self, result: &mut ScenarioResult) -> Result<(), EngineError> {
        self.map = self.wait_devices(None, REPROBE_TIMEOUT)?;
        // Forget boot-time kmemleak suspects: a scenario answers for its own.
        if self
            .plan
            .scenario
            .after
            .iter()
            .any(|s| matches!(s, Step::Kmemleak))
        {
            let _ = self.guest.call(
                Request::WriteFile {
                    path: "/sys/kernel/debug/kmemleak".into(),
                    data: "clear".into(),
                },
                AGENT_TIMEOUT,
            );
        }
        let setup = self.plan.scenario.setup.clone();
        self.steps(&setup)?;
        for (i, c) in self.plan.scenario.consumers.iter().enumerate() {
            self.consumers
                .push((translate::consumer_name(i, c), c.clone()));
        }
        self.start_consumers(None)?;

        let targets = match &self.plan.scenario.unplug {
            Some(u) if u.targets.is_empty() => self
                .plan
                .devices
                .iter()
                .map(|d| d.id().to_owned())
                .collect(),
            Some(u) => u.targets.clone(),
            None => Vec::new(),
        };
        let mut sched = match self.ctx.replay.and_then(|f| f(self.plan.name())) {
            Some(s) => Scheduler::replay(&s, targets, self.plan.delay),
            None => Scheduler::new(self.ctx.seed, self.plan.name(), targets, self.plan.delay),
        };
        let duration = self.ctx.duration.or(self.plan.duration);
        let cycles = self.ctx.cycles.unwrap_or(self.plan.cycles);
        let unplug = self.plan.scenario.unplug.clone();
        let began = Instant::now();
        if let Some(u) = &unplug {
            loop {
                let more = match duration {
                    Some(d) => began.elapsed() < d,
                    None => result.cycles < cycles,
                };
                if !more || self.dead {
                    break;
                }
                let Some(c) = sched.next_cycle() else { break };
                self.cycle = Some(c.index);
                self.watch(Duration::from_millis(c.delay_ms))?;
                if c.index == 0 {
                    self.check_consumers_alive()?;
                }
                let t0 = Instant::now();
                let last = duration.is_none() && result.cycles + 1 == cycles;
                let replug = !(last && u.no_replug);
                let ok = self.cycle_once(u.method, &c.target, replug)?;
                let dt = t0.elapsed();
                result.cycles += 1;
                result.cycle_secs.push(secs(dt));
                self.reporters.event(&Event::Cycle {
                    scenario: self.plan.name().to_owned(),
                    index: c.index,
                    of: duration.is_none().then_some(cycles),
                    target: c.target.clone(),
                    secs: secs(dt),
                });
                if !ok {
                    break;
                }
            }
        }
        let _ = fs::write(
            self.ctx
                .artifacts
                .join(sanitize(self.plan.name()))
                .join("schedule.json"),
            serde_json::to_vec_pretty(sched.realised()).unwrap_or_default(),
        );
        self.cycle = None;
        if !self.dead {
            let after = self.plan.scenario.after.clone();
            self.steps(&after)?;
        }
        self.watch(self.plan.settle)?;
        Ok(())
    }

    /// One unplug + replug. Returns false when cycling should stop (the
    /// device never went away, or never came back).
    fn cycle_once(
        &mut self,
        method: Method,
        target: &str,
        replug: bool,
    ) -> Result<bool, EngineError> {
        let timeout = self.plan.unplug_timeout;
        let finding_never = |method: Method, target: &str, what: &str| {
            format!("unplug never completed: {target} ({method}{what})")
        };
        match method {
            Method::Qmp => match self.vm.unplug(target, timeout) {
                Ok(()) => {}
                Err(VmError::Qmp(crate::vm::qmp::QmpError::EventTimeout { .. })) => {
                    self.add_synthetic(
                        finding_never(method, target, ""),
                        FindingSource::UnplugTimeout,
                        "HANG",
                        format!("device_del {target}: no DEVICE_DELETED within {timeout:?}; the guest never released the device"),
                    );
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            },
            Method::Unbind | Method::PciRemove => {
                let (path, data) = self.guest_unplug_write(method, target)?;
                if !self.guest_write_with_deadline(&path, &data, timeout)? {
                    self.add_synthetic(
                        finding_never(method, target, ""),
                        FindingSource::UnplugTimeout,
                        "HANG",
                        format!("write {data:?} to {path} did not return within {timeout:?}"),
                    );
                    return Ok(false);
                }
            }
            Method::BackendKill => {
                self.vm.kill_backend(target)?;
                self.killed.push(target.to_owned());
                // Let consumers run into the dead device.
                self.watch(self.plan.delay.1.max(Duration::from_secs(1)))?;
                self.vm.restart_backend(target)?;
                self.killed.retain(|k| k != target);
                // The old connection is gone; give the guest a fresh device.
                match self.vm.unplug(target, timeout) {
                    Ok(()) => {}
                    Err(VmError::Qmp(crate::vm::qmp::QmpError::EventTimeout { .. })) => {
                        self.add_synthetic(
                            finding_never(method, target, " then device_del"),
                            FindingSource::UnplugTimeout,
                            "HANG",
                            format!("after the backend of {target} was killed, device_del got no DEVICE_DELETED within {timeout:?}"),
                        );
                        return Ok(false);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Method::BackendStall => {
                let control = self.vm.backend(target)?.control.clone();
                with_control(&control, |c| c.set_faults(&["hold"]))?;
                self.watch(timeout)?;
                with_control(&control, |c| {
                    c.clear_faults()?;
                    c.release_held().map(drop)
                })?;
                return Ok(true);
            }
        }
        if !replug {
            return Ok(true);
        }
        match method {
            Method::Qmp | Method::BackendKill => self.vm.replug(target)?,
            Method::Unbind | Method::PciRemove => {
                let (path, data) = self.guest_replug_write(method, target)?;
                if !self.guest_write_with_deadline(&path, &data, timeout)? {
                    self.add_synthetic(
                        format!("replug never completed: {target} ({method})"),
                        FindingSource::UnplugTimeout,
                        "HANG",
                        format!("write {data:?} to {path} did not return within {timeout:?}"),
                    );
                    return Ok(false);
                }
            }
            Method::BackendStall => {}
        }
        match self.wait_devices(Some(target), REPROBE_TIMEOUT) {
            Ok(m) => self.map = m,
            Err(EngineError::Other(msg)) => {
                self.add_synthetic(
                    format!("device never came back: {target} ({method})"),
                    FindingSource::UnplugTimeout,
                    "HANG",
                    msg,
                );
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        let setup = self.plan.scenario.setup.clone();
        self.steps(&setup)?;
        self.start_consumers(Some(target))?;
        Ok(true)
    }

    /// Which guest file write unplugs `target`, and with what.
    fn guest_unplug_write(
        &self,
        method: Method,
        target: &str,
    ) -> Result<(String, String), EngineError> {
        let name = self.map.get(target).ok_or_else(|| {
            EngineError::Other(format!(
                "{target} is not visible in the guest, cannot unplug it"
            ))
        })?;
        let place = name.place();
        let missing =
            |what: &str| EngineError::Other(format!("no {what} known for {target} in the guest"));
        Ok(match method {
            Method::Unbind => {
                let virtio = place
                    .virtio
                    .clone()
                    .ok_or_else(|| missing("virtio device"))?;
                (
                    format!("/sys/bus/virtio/drivers/{}/unbind", virtio_driver(name)),
                    virtio,
                )
            }
            _ => {
                let pci = place.pci.clone().ok_or_else(|| missing("PCI endpoint"))?;
                (format!("/sys/bus/pci/devices/{pci}/remove"), "1".into())
            }
        })
    }

    /// The write that puts `target` back. Uses the names from before the
    /// unplug (the map still holds them).
    fn guest_replug_write(
        &self,
        method: Method,
        target: &str,
    ) -> Result<(String, String), EngineError> {
        Ok(match method {
            Method::Unbind => {
                let name = self.map.get(target).ok_or_else(|| {
                    EngineError::Other(format!("{target}: unknown before unbind"))
                })?;
                let virtio = name.place().virtio.clone().unwrap_or_default();
                (
                    format!("/sys/bus/virtio/drivers/{}/bind", virtio_driver(name)),
                    virtio,
                )
            }
            _ => ("/sys/bus/pci/rescan".into(), "1".into()),
        })
    }

    /// Writes a guest file; false if the write had not returned by the
    /// deadline (the agent keeps the write in its own thread).
    fn guest_write_with_deadline(
        &mut self,
        path: &str,
        data: &str,
        timeout: Duration,
    ) -> Result<bool, EngineError> {
        let req = Request::WriteFile {
            path: path.to_owned(),
            data: data.to_owned(),
        };
        match self.guest.call(req, timeout) {
            Ok(_) => Ok(true),
            Err(GuestError::Timeout { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn steps(&mut self, steps: &[Step]) -> Result<(), EngineError> {
        for s in steps {
            match s {
                Step::Write { path, data } => {
                    self.call(Request::WriteFile {
                        path: path.clone(),
                        data: data.clone(),
                    })?;
                }
                Step::NewDevice {
                    adapter,
                    chip,
                    addr,
                } => {
                    let bus = translate::bus(&self.map, adapter)
                        .map_err(|e| EngineError::Other(e.to_string()))?;
                    self.call(Request::WriteFile {
                        path: format!("/sys/bus/i2c/devices/i2c-{bus}/new_device"),
                        data: format!("{chip} {addr:#04x}"),
                    })?;
                    self.wait_bound(&translate::client_name(bus, *addr), chip)?;
                }
                Step::Exec(argv) => {
                    let r = self.call(Request::Exec(dangle_proto::ExecRequest {
                        argv: argv.clone(),
                        env: Default::default(),
                        timeout_ms: AGENT_TIMEOUT.as_millis() as u64,
                        stdin: None,
                    }))?;
                    if let Response::Exec(o) = r {
                        if o.code != Some(0) {
                            return Err(EngineError::Other(format!(
                                "setup command {argv:?} failed ({:?}): {}",
                                o.code,
                                o.stderr.trim()
                            )));
                        }
                    }
                }
                Step::Sleep(d) => self.watch(*d)?,
                Step::Kmemleak => self.kmemleak()?,
                Step::Interrupt { consumer } => {
                    let name = self
                        .consumers
                        .get(*consumer)
                        .map(|(n, _)| n.clone())
                        .ok_or_else(|| {
                            EngineError::Other(format!("no consumer {consumer} to interrupt"))
                        })?;
                    self.call(Request::InterruptConsumer { consumer: name })?;
                }
                Step::DriveLine {
                    device,
                    line,
                    value,
                } => {
                    let control = self.vm.backend(device)?.control.clone();
                    let line = u16::try_from(*line)
                        .map_err(|_| EngineError::Other(format!("line {line} out of range")))?;
                    with_control(&control, |c| c.drive_line(line, *value))?;
                }
            }
        }
        Ok(())
    }

    /// Waits until a driver is bound to the I2C client `client` (drivers
    /// such as at24 may probe asynchronously): its `uevent` shows `DRIVER=`.
    fn wait_bound(&mut self, client: &str, chip: &str) -> Result<(), EngineError> {
        let deadline = Deadline::after(BIND_TIMEOUT);
        loop {
            let r = self.guest.call(
                Request::ReadFile {
                    path: format!("/sys/bus/i2c/devices/{client}/uevent"),
                    max_bytes: 4096,
                },
                AGENT_TIMEOUT,
            );
            if let Ok(Response::File { data, .. }) = &r {
                if data.lines().any(|l| l.starts_with("DRIVER=")) {
                    return Ok(());
                }
            }
            if deadline.expired() {
                return Err(EngineError::Other(format!(
                    "new-device {chip} at {client}: no driver bound within {BIND_TIMEOUT:?}"
                )));
            }
            self.watch(Duration::from_millis(200))?;
        }
    }

    /// Two scans (kmemleak only reports objects it has seen unreferenced
    /// twice and older than 5 s), then the report file through the parser.
    fn kmemleak(&mut self) -> Result<(), EngineError> {
        const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";
        for _ in 0..2 {
            self.watch(KMEMLEAK_AGE)?;
            self.call(Request::WriteFile {
                path: KMEMLEAK.into(),
                data: "scan".into(),
            })?;
        }
        let text = match self.call(Request::ReadFile {
            path: KMEMLEAK.into(),
            max_bytes: 1 << 20,
        })? {
            Response::File { data, .. } => data,
            _ => String::new(),
        };
        if !text.is_empty() {
            let _ = fs::write(
                self.ctx
                    .artifacts
                    .join(sanitize(self.plan.name()))
                    .join("kmemleak.txt"),
                &text,
            );
        }
        let at = self.vm.uptime();
        for r in crate::report::parse(text.as_bytes()) {
            let f = finding_from_report(&r, at, self.cycle);
            self.push(f);
        }
        Ok(())
    }

    fn call(&mut self, req: Request) -> Result<Response, EngineError> {
        let r = self.guest.call(req, AGENT_TIMEOUT);
        self.pump();
        Ok(r?)
    }

    /// Starts consumers: all of them, or after a replug those of `target`
    /// that are no longer running.
    fn start_consumers(&mut self, target: Option<&str>) -> Result<(), EngineError> {
        let running: Vec<String> = match self.call(Request::ConsumerStatus { consumer: None })? {
            Response::Consumers { consumers } => consumers
                .into_iter()
                .filter(|c| c.result.is_none())
                .map(|c| c.id)
                .collect(),
            _ => Vec::new(),
        };
        let list = self.consumers.clone();
        for (name, c) in &list {
            if running.contains(name) {
                continue;
            }
            if target.is_some() && !consumer_uses(c, target.unwrap_or_default()) {
                // Not ours to restart: it stopped for its own reasons.
                continue;
            }
            let spec = translate::consumer_spec(c, &self.map)
                .map_err(|e| EngineError::Other(e.to_string()))?;
            self.call(Request::StartConsumer {
                consumer: name.clone(),
                spec,
                deadline_ms: self.plan.consumer_deadline.as_millis() as u64,
                progress_ms: None,
            })?;
        }
        Ok(())
    }

    /// Before the first unplug every consumer must be running: a scenario
    /// whose consumers failed to start tests nothing.
    fn check_consumers_alive(&mut self) -> Result<(), EngineError> {
        if let Response::Consumers { consumers } =
            self.call(Request::ConsumerStatus { consumer: None })?
        {
            for c in consumers {
                if let Some(ConsumerResult::Failed { error, .. }) = &c.result {
                    return Err(EngineError::Other(format!(
                        "consumer {} failed before the first unplug: {error}",
                        c.id
                    )));
                }
            }
        }
        Ok(())
    }

    /// Waits for the guest to show every device (or `target`) and returns
    /// the map; `EngineError::Other` on timeout.
    fn wait_devices(
        &mut self,
        target: Option<&str>,
        timeout: Duration,
    ) -> Result<GuestMap, EngineError> {
        let deadline = Deadline::after(timeout);
        loop {
            let map = guest::resolve(self.guest.as_mut(), &self.plan.devices, AGENT_TIMEOUT)?;
            let ready = match target {
                Some(t) => map.contains_key(t),
                None => self.plan.devices.iter().all(|d| map.contains_key(d.id())),
            };
            if ready {
                return Ok(map);
            }
            if deadline.expired() {
                let missing: Vec<&str> = self
                    .plan
                    .devices
                    .iter()
                    .map(|d| d.id())
                    .filter(|id| !map.contains_key(*id) && target.is_none_or(|t| t == *id))
                    .collect();
                return Err(EngineError::Other(format!(
                    "the guest does not show {} after {timeout:?}",
                    missing.join(", ")
                )));
            }
            self.watch(Duration::from_millis(300))?;
        }
    }

    /// Waits `d` while collecting findings from every source.
    fn watch(&mut self, d: Duration) -> Result<(), EngineError> {
        let end = Deadline::after(d);
        let mut last_ping = Instant::now();
        loop {
            self.pump();
            if self.dead {
                return Ok(());
            }
            if last_ping.elapsed() >= Duration::from_secs(5) {
                last_ping = Instant::now();
                self.ping();
            }
            if end.expired() {
                return Ok(());
            }
            std::thread::sleep(end.step(POLL));
        }
    }

    fn ping(&mut self) {
        let watchdog = self.plan.watchdog;
        match self.guest.call(Request::Ping {}, watchdog) {
            Ok(_) => {}
            Err(GuestError::Timeout { .. }) | Err(GuestError::Closed) => {
                self.add_synthetic(
                    "guest silent: the agent stopped answering".into(),
                    FindingSource::GuestSilent,
                    "HANG",
                    format!("no reply to ping within {watchdog:?}"),
                );
                self.dead = true;
            }
            Err(e) => tracing::warn!("ping: {e}"),
        }
    }

    /// Collects console reports, agent events, QEMU and backend deaths.
    fn pump(&mut self) {
        let at = self.vm.uptime();
        let new: Vec<Report> = self
            .console_reports
            .lock()
            .map(|mut p| p.take(false))
            .unwrap_or_default();
        for mut r in new {
            if let Some(s) = self.ctx.symbolizer {
                r.symbolize(s);
            }
            let f = finding_from_report(&r, at, self.cycle);
            self.push(f);
        }
        for e in self.guest.take_events() {
            if let GuestEvent::ConsumerStuck {
                id,
                syscall,
                for_ms,
            } = e
            {
                let kind = self
                    .consumers
                    .iter()
                    .find(|(n, _)| *n == id)
                    .map(|(_, c)| {
                        translate::consumer_name(0, c)
                            .trim_start_matches("c0-")
                            .to_owned()
                    })
                    .unwrap_or_else(|| id.clone());
                self.add_synthetic(
                    format!("consumer stuck: {kind} in {syscall}"),
                    FindingSource::ConsumerStuck,
                    "HANG",
                    format!("consumer {id} has been blocked in {syscall} for {for_ms} ms (deadline {:?})", self.plan.consumer_deadline),
                );
            }
        }
        if !self.dead && !self.stopping {
            if let Some(st) = self.vm.qemu_exited() {
                self.add_synthetic(
                    format!("QEMU exited: {}", describe_status(&st)),
                    FindingSource::QemuExited,
                    "QEMU",
                    format!("QEMU exited with {st} while the scenario ran; see qemu.log in the artifacts"),
                );
                self.dead = true;
            }
        }
        let dead = self.vm.dead_backends();
        for (id, st) in dead {
            if self.killed.contains(&id) {
                continue;
            }
            self.killed.push(id.clone());
            self.add_synthetic(
                format!("backend crashed: {id} ({})", describe_status(&st)),
                FindingSource::BackendCrashed,
                "BACKEND",
                format!("the backend of {id} exited with {st}; see backend-{id}.log"),
            );
        }
    }

    fn add_synthetic(&mut self, title: String, source: FindingSource, kind: &str, report: String) {
        let f = synthetic(title, source, kind, report, self.vm.uptime(), self.cycle);
        self.push(f);
    }

    fn push(&mut self, f: Finding) {
        self.reporters.event(&Event::Finding {
            scenario: self.plan.name().to_owned(),
            finding: f.clone(),
        });
        self.findings.list.push(f);
        self.findings.reported += 1;
    }

    /// Stops consumers, powers off, flushes the console through the parser.
    fn finish(&mut self, clean: bool) {
        // Collect what is pending before QEMU exiting becomes expected.
        self.pump();
        self.stopping = true;
        if !self.dead {
            for (name, _) in self.consumers.clone() {
                let _ = self.guest.call(
                    Request::StopConsumer { consumer: name },
                    Duration::from_secs(5),
                );
            }
            let _ = self
                .guest
                .call(Request::Poweroff {}, Duration::from_secs(5));
            if self
                .vm
                .wait_exit(Duration::from_secs(if clean { 15 } else { 5 }))
                .is_none()
            {
                self.vm.quit();
            }
        } else {
            self.vm.quit();
        }
        // Let the console follower read QEMU's last bytes, then close any
        // report still open.
        std::thread::sleep(crate::vm::console::CONSOLE_POLL * 4);
        self.pump();
        let at = self.vm.uptime();
        let rest = self
            .console_reports
            .lock()
            .map(|mut p| p.take(true))
            .unwrap_or_default();
        for mut r in rest {
            if let Some(s) = self.ctx.symbolizer {
                r.symbolize(s);
            }
            let f = finding_from_report(&r, at, self.cycle);
            self.push(f);
        }
    }
}

/// The Linux virtio driver of a device (`drivers/gpio/gpio-virtio.c` is
/// registered as its module name, `drivers/i2c/busses/i2c-virtio.c` names
/// itself `i2c_virtio`).
fn virtio_driver(n: &GuestName) -> &'static str {
    match n {
        GuestName::GpioChip { .. } => "gpio_virtio",
        GuestName::I2cBus { .. } => "i2c_virtio",
    }
}

/// Whether consumer `c` uses device `id`.
fn consumer_uses(c: &super::schema::Consumer, id: &str) -> bool {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_object().and_then(|o| o.values().next().cloned()))
        .and_then(|b| b.get("device").and_then(|d| d.as_str().map(|s| s == id)))
        .unwrap_or(false)
}

fn describe_status(st: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!(
            "signal {}",
            nix::sys::signal::Signal::try_from(s)
                .map_or_else(|_| s.to_string(), |sig| sig.as_str().to_owned())
        ),
        _ => st.to_string(),
    }
}

/// Runs `f` on a fresh connection to a backend's control socket.
fn with_control<T>(
    control: &Path,
    f: impl FnOnce(
        &mut dangle_backends::control::Client,
    ) -> Result<T, dangle_backends::control::ClientError>,
) -> Result<T, EngineError> {
    let mut c = dangle_backends::control::Client::connect(control).map_err(|e| {
        EngineError::Other(format!(
            "backend control {}: {}",
            control.display(),
            error_chain(&e)
        ))
    })?;
    f(&mut c).map_err(|e| {
        EngineError::Other(format!(
            "backend control {}: {}",
            control.display(),
            error_chain(&e)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::schema::{Consumer, GpioLine};

    #[test]
    fn consumer_uses_matches_device_field() {
        let c = Consumer::GpioHold(GpioLine {
            device: "gpio0".into(),
            line: 1,
        });
        assert!(consumer_uses(&c, "gpio0"));
        assert!(!consumer_uses(&c, "gpio1"));
    }

    #[test]
    fn sanitize_keeps_names_path_safe() {
        assert_eq!(sanitize("a/b c"), "a_b_c");
    }
}
