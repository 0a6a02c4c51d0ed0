//! vhost-user transport of the GPIO controller: [`Gpio`], the device core's
//! [`Model`] for virtio-gpio. It runs the typed requests of
//! [`request`](super::request) on the line model, keeps the event buffers
//! the driver queues until their line's interrupt fires, and runs the edge
//! storms of the fault plan.
//!
//! [`GpioDevice`] lives as long as the process (world-driven input levels,
//! counters, fault plan); [`GpioConn`] is created afresh for every
//! connection, so a reconnecting front end starts from power-on.

use std::sync::Arc;
use std::thread;

use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_queue::Queue;
use vm_memory::{ByteValued, GuestAddress, GuestMemory};

use super::lines::{GpioError, GpioLines, LineState};
use super::request::{ChainError, EventRequest, GpioRequest, GpioRequestKind};
use super::virtio_gpio::*;
use crate::control::{Request, Response};
use crate::device::{Conn, Device, Event, Kicks, Model, Reply, StatusAt, Taken};
use crate::fault::{FaultAction, FaultSpec, RequestInfo};
use crate::virtq::Chain;

/// Number of virtqueues (requestq, eventq).
pub const NUM_QUEUES: usize = 2;

/// Features offered: VERSION_1, VIRTIO_GPIO_F_IRQ, vhost-user protocol features.
pub const GPIO_FEATURES: u64 = (1 << VIRTIO_F_VERSION_1)
    | (1 << VIRTIO_GPIO_F_IRQ)
    | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();

/// The controller, shared by every connection of the process.
pub type GpioDevice = Device<Gpio>;
/// The `VhostUserBackend` of one front-end connection.
pub type GpioConn = Conn<Gpio>;

/// An event buffer waiting on a line: where to write the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventToken {
    head: u16,
    status: GuestAddress,
}

/// The virtio-gpio controller as the device core sees it: the lines.
#[derive(Debug)]
pub struct Gpio {
    lines: GpioLines<EventToken>,
}

impl Gpio {
    /// A controller of `lines` lines; `names` may name fewer.
    pub fn new(lines: u16, names: &[String]) -> Self {
        Gpio {
            lines: GpioLines::new(lines, names),
        }
    }

    /// The config space.
    pub fn config(&self) -> VirtioGpioConfig {
        VirtioGpioConfig {
            ngpio: self.lines.ngpio().into(),
            padding: [0; 2],
            gpio_names_size: u32::try_from(self.lines.names_block().len())
                .unwrap_or(u32::MAX)
                .into(),
        }
    }
}

impl Model for Gpio {
    const KIND: &'static str = "gpio";
    const NUM_QUEUES: usize = NUM_QUEUES;
    const FEATURES: u64 = GPIO_FEATURES;
    const PROTOCOL_FEATURES: VhostUserProtocolFeatures = VhostUserProtocolFeatures::MQ
        .union(VhostUserProtocolFeatures::CONFIG)
        .union(VhostUserProtocolFeatures::REPLY_ACK);
    const STATUS_AT: StatusAt = StatusAt::Start;
    const STATUS_ERR: u8 = VIRTIO_GPIO_STATUS_ERR;

    type Request = GpioRequest;
    type ParseError = ChainError;

    fn parse<Mem: GuestMemory>(&self, chain: &Chain, mem: &Mem) -> Result<GpioRequest, ChainError> {
        GpioRequest::parse(chain, mem, self.lines.names_block().len())
    }

    fn describe(req: &GpioRequest) -> (&'static str, RequestInfo) {
        (req.kind.name(), RequestInfo::line(req.gpio))
    }

    fn run<Mem: GuestMemory>(&mut self, req: &GpioRequest, inject_err: bool, _mem: &Mem) -> Reply {
        let (status, value) = if inject_err {
            (VIRTIO_GPIO_STATUS_ERR, 0)
        } else {
            match req.execute(&mut self.lines) {
                Ok(v) => (VIRTIO_GPIO_STATUS_OK, v),
                Err(e) => {
                    tracing::debug!("{req} failed: {e}");
                    (VIRTIO_GPIO_STATUS_ERR, 0)
                }
            }
        };
        let ok = status == VIRTIO_GPIO_STATUS_OK;
        let response = if req.kind == GpioRequestKind::GetLineNames && ok {
            let mut resp = Vec::with_capacity(1 + self.lines.names_block().len());
            resp.push(status);
            resp.extend_from_slice(self.lines.names_block());
            resp
        } else {
            VirtioGpioResponse { status, value }.as_slice().to_vec()
        };
        Reply {
            ok,
            written: 0,
            at: req.resp.addr,
            response,
        }
    }

    fn take_events(&mut self) -> Vec<Event> {
        self.lines
            .take_ready()
            .into_iter()
            .map(|(token, status)| Event {
                queue: usize::from(EVENT_QUEUE),
                head: token.head,
                at: token.status,
                status,
                irq: status == VIRTIO_GPIO_IRQ_STATUS_VALID,
            })
            .collect()
    }

    fn take_chain<Mem: GuestMemory>(
        &mut self,
        _queue: usize,
        chain: &Chain,
        mem: &Mem,
    ) -> Taken<ChainError> {
        let ev = match EventRequest::parse(chain, mem) {
            Ok(ev) => ev,
            Err(e) => return Taken::Malformed(e, VIRTIO_GPIO_IRQ_STATUS_INVALID),
        };
        let token = EventToken {
            head: chain.head,
            status: ev.status,
        };
        match self.lines.queue_event(ev.gpio, token) {
            Ok(()) => Taken::Kept,
            Err((_, e)) => {
                tracing::debug!("event buffer for line {} rejected: {e}", ev.gpio);
                Taken::Refused(VIRTIO_GPIO_IRQ_STATUS_INVALID)
            }
        }
    }

    fn reset(&mut self) {
        self.lines.reset_guest_state();
    }

    fn disconnected(&mut self) {
        self.lines.reset_guest_state();
    }

    fn queue_stopped(&mut self, queue: usize) {
        if queue == usize::from(EVENT_QUEUE) {
            self.lines.forget_event_buffers();
        }
    }

    fn acked_features(&mut self, features: u64) {
        self.lines
            .set_irq_negotiated(features & (1 << VIRTIO_GPIO_F_IRQ) != 0);
    }

    fn config_space(&self) -> Vec<u8> {
        self.config().as_slice().to_vec()
    }

    fn faults_changed(device: &GpioDevice, specs: &[FaultSpec], generation: u64) {
        for spec in specs {
            if let FaultAction::Storm {
                line,
                count,
                period,
            } = spec.action
            {
                let weak = device.weak();
                let spawned = thread::Builder::new()
                    .name("gpio-storm".into())
                    .spawn(move || {
                        for _ in 0..count {
                            let Some(dev) = weak.upgrade() else { return };
                            if dev.plan_generation() != generation {
                                return;
                            }
                            // Invert the line's level, so every step is an edge.
                            let level = match dev.state().model.lines.state(line) {
                                Ok(state) => !state.input,
                                Err(e) => {
                                    tracing::warn!("edge storm stopped: {e}");
                                    return;
                                }
                            };
                            if dev.drive_line(line, level).is_err() {
                                return;
                            }
                            dev.state().counters.fired(&["storm"]);
                            drop(dev);
                            thread::sleep(period);
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!("cannot start edge storm on line {line}: {e}");
                }
            }
        }
    }

    type ControlError = GpioError;

    fn control(device: &GpioDevice, req: Request) -> Option<Result<Response, GpioError>> {
        Some(match req {
            Request::DriveLine { line, level } => {
                device.drive_line(line, level).map(|()| Response::ok())
            }
            Request::ReadLines { line } => match line {
                None => Ok(device.line_states()),
                Some(l) => device.state().model.lines.state(l).map(|s| vec![s]),
            }
            .map(|lines| Response {
                lines: Some(lines),
                ..Response::ok()
            }),
            _ => return None,
        })
    }
}

impl Device<Gpio> {
    /// A controller of `lines` lines (`names` may name fewer) under the
    /// fault plan `faults`; starts the plan's storms.
    pub fn new(lines: u16, names: &[String], faults: Vec<FaultSpec>) -> Arc<Self> {
        Self::with_model(Gpio::new(lines, names), faults)
    }

    /// The config space.
    pub fn config(&self) -> VirtioGpioConfig {
        self.state().model.config()
    }

    /// The world drives an input line; interrupts reach the guest.
    pub fn drive_line(&self, line: u16, level: bool) -> Result<(), GpioError> {
        self.state().model.lines.drive_input(line, level)?;
        self.wake();
        Ok(())
    }

    /// Snapshot of the lines.
    pub fn line_states(&self) -> Vec<LineState> {
        let st = self.state();
        let lines = &st.model.lines;
        (0..lines.ngpio())
            .filter_map(|l| lines.state(l).ok())
            .collect()
    }

    /// Handles every available chain of both queues, then delivers ready
    /// events and releases held chains if asked to.
    pub fn process<M: GuestMemory>(&self, mem: &M, reqq: &mut Queue, evq: &mut Queue) -> Kicks {
        self.process_queues(mem, &mut [reqq, evq])
    }
}
