//! Watching a running scenario: the console through the streaming parser,
//! agent events, agent silence, QEMU and backend deaths. Everything seen
//! becomes a finding and an [`Event::Finding`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dangle_proto::{Deadline, Event as GuestEvent, Request};

use super::findings::{describe_status, finding_from_report, synthetic};
use super::{CONSOLE_QUIET, EngineError, POLL, Run};
use crate::report::{Report, Stream};
use crate::suite::events::Event;
use crate::suite::guest::{self, GuestError};
use crate::suite::outcome::{Finding, FindingSource};
use crate::suite::translate::{self, GuestMap};
use crate::vm::console::ConsoleSink;

/// The streaming parser fed by the console thread.
#[derive(Debug, Default)]
pub(super) struct ConsoleParse {
    stream: Stream,
    /// Completed reports not yet turned into findings.
    done: Vec<Report>,
    /// When console bytes last arrived.
    last_bytes: Option<Instant>,
}

impl ConsoleParse {
    /// The console sink that feeds `parse`.
    pub(super) fn sink(parse: &Arc<Mutex<ConsoleParse>>) -> ConsoleSink {
        let parse = Arc::clone(parse);
        Box::new(move |bytes: &[u8]| {
            if let Ok(mut p) = parse.lock() {
                let new = p.stream.push(bytes);
                p.done.extend(new);
                p.last_bytes = Some(Instant::now());
            }
        })
    }

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

impl Run<'_> {
    /// Waits for the guest to show every device (or `target`) and returns
    /// the map; [`EngineError::DevicesMissing`] on timeout.
    pub(super) fn wait_devices(
        &mut self,
        target: Option<&str>,
        timeout: Duration,
    ) -> Result<GuestMap, EngineError> {
        let deadline = Deadline::after(timeout);
        loop {
            let map = guest::resolve(
                self.guest.as_mut(),
                &self.plan.devices,
                super::AGENT_TIMEOUT,
            )?;
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
                return Err(EngineError::DevicesMissing {
                    devices: missing.join(", "),
                    timeout,
                });
            }
            self.watch(Duration::from_millis(300))?;
        }
    }

    /// Waits `d` while collecting findings from every source.
    pub(super) fn watch(&mut self, d: Duration) -> Result<(), EngineError> {
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
                    format!("no reply to ping within {watchdog:?}"),
                );
                self.dead = true;
            }
            Err(e) => tracing::warn!("ping: {e}"),
        }
    }

    /// Collects console reports, agent events, QEMU and backend deaths.
    pub(super) fn pump(&mut self) {
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
                self.reporters.event(&Event::ConsumerStuck {
                    scenario: self.plan.name().to_owned(),
                    consumer: id.clone(),
                    syscall: syscall.clone(),
                    for_ms,
                });
                self.add_synthetic(
                    format!("consumer stuck: {kind} in {syscall}"),
                    FindingSource::ConsumerStuck,
                    format!(
                        "consumer {id} has been blocked in {syscall} for {for_ms} ms (deadline {:?})",
                        self.plan.consumer_deadline
                    ),
                );
            }
        }
        if !self.dead && !self.stopping {
            if let Some(st) = self.vm.qemu_exited() {
                self.add_synthetic(
                    format!("QEMU exited: {}", describe_status(&st)),
                    FindingSource::QemuExited,
                    format!(
                        "QEMU exited with {st} while the scenario ran; see qemu.log in the artifacts"
                    ),
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
                format!("the backend of {id} exited with {st}; see backend-{id}.log"),
            );
        }
    }

    pub(super) fn add_synthetic(&mut self, title: String, source: FindingSource, report: String) {
        let f = synthetic(title, source, report, self.vm.uptime(), self.cycle);
        self.push(f);
    }

    pub(super) fn push(&mut self, f: Finding) {
        self.reporters.event(&Event::Finding {
            scenario: self.plan.name().to_owned(),
            finding: f.clone(),
        });
        self.findings.push(f);
    }

    /// Stops consumers, powers off, flushes the console through the parser.
    pub(super) fn finish(&mut self, clean: bool) {
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
