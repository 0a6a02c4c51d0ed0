//! Setup and after steps, and the scenario's consumers.

use std::fs;
use std::time::Duration;

use dangle_backends::control;
use dangle_proto::{ConsumerResult, Deadline, Request, Response};

use super::findings::finding_from_report;
use super::{AGENT_TIMEOUT, BIND_TIMEOUT, EngineError, KMEMLEAK_AGE, Run, scenario_dir};
use crate::suite::guest;
use crate::suite::schema::{Consumer, Step};
use crate::suite::translate;
use crate::vm::machine::control_checked;

impl Run<'_> {
    pub(super) fn steps(&mut self, steps: &[Step]) -> Result<(), EngineError> {
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
                    let bus = translate::bus(&self.map, adapter)?;
                    guest::new_device(self.guest.as_mut(), bus, chip, *addr, AGENT_TIMEOUT)?;
                    self.pump();
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
                            return Err(EngineError::SetupCommand {
                                argv: argv.clone(),
                                code: o.code,
                                stderr: o.stderr.trim().to_owned(),
                            });
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
                        .ok_or(EngineError::NoConsumer(*consumer))?;
                    self.call(Request::InterruptConsumer { consumer: name })?;
                }
                Step::DriveLine {
                    device,
                    line,
                    value,
                } => {
                    let line =
                        u16::try_from(*line).map_err(|_| EngineError::LineOutOfRange(*line))?;
                    control_checked(
                        self.vm.as_mut(),
                        device,
                        &control::Request::DriveLine {
                            line,
                            level: *value,
                        },
                    )?;
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
            if guest::client_bound(self.guest.as_mut(), client, AGENT_TIMEOUT)? {
                return Ok(());
            }
            if deadline.expired() {
                return Err(EngineError::NotBound {
                    chip: chip.to_owned(),
                    client: client.to_owned(),
                    timeout: BIND_TIMEOUT,
                });
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
            let path = scenario_dir(&self.ctx.artifacts, self.plan.name()).join("kmemleak.txt");
            fs::write(&path, &text).map_err(|source| EngineError::Artifact { path, source })?;
        }
        let at = self.vm.uptime();
        for r in crate::report::parse(text.as_bytes()) {
            let f = finding_from_report(&r, at, self.cycle);
            self.push(f);
        }
        Ok(())
    }

    /// Starts consumers: all of them, or after a replug those of `target`
    /// that are no longer running.
    pub(super) fn start_consumers(&mut self, target: Option<&str>) -> Result<(), EngineError> {
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
            if let Some(t) = target {
                if !consumer_uses(c, t) {
                    // Not ours to restart: it stopped for its own reasons.
                    continue;
                }
            }
            let spec = translate::consumer_spec(c, &self.map)?;
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
    pub(super) fn check_consumers_alive(&mut self) -> Result<(), EngineError> {
        if let Response::Consumers { consumers } =
            self.call(Request::ConsumerStatus { consumer: None })?
        {
            for c in consumers {
                if let Some(ConsumerResult::Failed { error, .. }) = &c.result {
                    return Err(EngineError::ConsumerFailed {
                        consumer: c.id.clone(),
                        error: error.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Whether consumer `c` uses device `id`.
fn consumer_uses(c: &Consumer, id: &str) -> bool {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_object().and_then(|o| o.values().next().cloned()))
        .and_then(|b| b.get("device").and_then(|d| d.as_str().map(|s| s == id)))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::schema::GpioLine;

    #[test]
    fn consumer_uses_matches_device_field() {
        let c = Consumer::GpioHold(GpioLine {
            device: "gpio0".into(),
            line: 1,
        });
        assert!(consumer_uses(&c, "gpio0"));
        assert!(!consumer_uses(&c, "gpio1"));
    }
}
