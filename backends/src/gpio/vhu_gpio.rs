//! vhost-user transport of the GPIO controller: runs the typed requests of
//! [`request`](super::request) against the line model, applies the fault
//! plan, and implements `VhostUserBackend` for one front-end connection.
//!
//! [`GpioDevice`] lives as long as the process (world-driven input levels,
//! counters, fault plan); [`GpioConn`] is created afresh for every
//! connection, so a reconnecting front end starts from power-on.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;

use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_queue::{Queue, QueueT};
use vm_memory::{
    ByteValued, Bytes, GuestAddress, GuestAddressSpace, GuestMemory, GuestMemoryAtomic,
    GuestMemoryMmap,
};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{EventConsumer, EventNotifier};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::lines::{GpioError, GpioLines, LineState};
use super::request::{EventRequest, GpioRequest, GpioRequestKind};
use super::virtio_gpio::*;
use crate::control::{ControlTarget, Request, Response};
use crate::counters::Counters;
use crate::fault::{FaultAction, FaultPlan, FaultSpec, Outcome, RequestInfo, parse_specs};
use crate::virtq::{Chain, complete, pop_all};

/// Queue size offered to the front end.
pub const QUEUE_SIZE: usize = 1024;
/// Number of virtqueues (requestq, eventq).
pub const NUM_QUEUES: usize = 2;
/// Epoll id of the wake eventfd (after the queues and the exit event).
pub const WAKE_EVENT: u16 = NUM_QUEUES as u16 + 1;

/// An event buffer waiting on a line: where to write the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventToken {
    head: u16,
    status: GuestAddress,
}

#[derive(Debug)]
struct GpioState {
    lines: GpioLines<EventToken>,
    plan: FaultPlan,
    specs: Vec<FaultSpec>,
    counters: Counters,
    held: Vec<Chain>,
    release_held: bool,
}

/// The controller, shared by every connection of the process.
#[derive(Debug)]
pub struct GpioDevice {
    state: Mutex<GpioState>,
    wake: Mutex<Option<EventFd>>,
    storm_generation: Arc<AtomicU64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the model half-updated in
    // a way worse than stopping the backend would: keep serving.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Which queues need a used-buffer notification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kicks {
    /// The request queue got used buffers.
    pub request: bool,
    /// The event queue got used buffers.
    pub event: bool,
}

impl GpioDevice {
    /// A controller of `lines` lines (`names` may name fewer) under the
    /// fault plan `faults`; starts the plan's storms.
    pub fn new(lines: u16, names: &[String], faults: Vec<FaultSpec>) -> Arc<Self> {
        let dev = Arc::new(GpioDevice {
            state: Mutex::new(GpioState {
                lines: GpioLines::new(lines, names),
                plan: FaultPlan::default(),
                specs: Vec::new(),
                counters: Counters::default(),
                held: Vec::new(),
                release_held: false,
            }),
            wake: Mutex::new(None),
            storm_generation: Arc::new(AtomicU64::new(0)),
        });
        dev.set_faults(faults);
        dev
    }

    /// The config space.
    pub fn config(&self) -> VirtioGpioConfig {
        let st = lock(&self.state);
        VirtioGpioConfig {
            ngpio: st.lines.ngpio().into(),
            padding: [0; 2],
            gpio_names_size: u32::try_from(st.lines.names_block().len())
                .unwrap_or(u32::MAX)
                .into(),
        }
    }

    /// Replaces the fault plan and (re)starts storms.
    pub fn set_faults(self: &Arc<Self>, specs: Vec<FaultSpec>) {
        let generation = self.storm_generation.fetch_add(1, Ordering::SeqCst) + 1;
        {
            let mut st = lock(&self.state);
            st.plan = FaultPlan::new(&specs);
            st.specs = specs.clone();
        }
        for spec in specs {
            if let FaultAction::Storm {
                line,
                count,
                period,
            } = spec.action
            {
                let dev = Arc::downgrade(self);
                let gen_ref = self.storm_generation.clone();
                let spawned = thread::Builder::new()
                    .name("gpio-storm".into())
                    .spawn(move || {
                        for _ in 0..count {
                            if gen_ref.load(Ordering::SeqCst) != generation {
                                return;
                            }
                            let Some(dev) = dev.upgrade() else { return };
                            // Invert the line's level, so every step is an edge.
                            let level = match lock(&dev.state).lines.state(line) {
                                Ok(state) => !state.input,
                                Err(e) => {
                                    tracing::warn!("edge storm stopped: {e}");
                                    return;
                                }
                            };
                            if dev.drive_line(line, level).is_err() {
                                return;
                            }
                            lock(&dev.state).counters.fired(&["storm"]);
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

    /// The world drives an input line; interrupts reach the guest.
    pub fn drive_line(&self, line: u16, level: bool) -> Result<(), GpioError> {
        lock(&self.state).lines.drive_input(line, level)?;
        self.wake();
        Ok(())
    }

    fn wake(&self) {
        if let Some(fd) = lock(&self.wake).as_ref() {
            let _ = fd.write(1);
        }
    }

    /// Snapshot of the lines.
    pub fn line_states(&self) -> Vec<LineState> {
        let st = lock(&self.state);
        (0..st.lines.ngpio())
            .filter_map(|l| st.lines.state(l).ok())
            .collect()
    }

    /// Starts a connection: forget the previous front end's state.
    fn begin_connection(&self, wake: EventFd) {
        let mut st = lock(&self.state);
        st.lines.reset_guest_state();
        st.held.clear();
        st.release_held = false;
        st.counters.held = 0;
        *lock(&self.wake) = Some(wake);
    }

    /// Ends a connection: held chains die with their rings.
    pub fn end_connection(&self) {
        let mut st = lock(&self.state);
        if !st.held.is_empty() {
            tracing::info!(
                "dropping {} held chain(s) of the closed connection",
                st.held.len()
            );
        }
        st.held.clear();
        st.counters.held = 0;
        st.lines.reset_guest_state();
        *lock(&self.wake) = None;
    }

    /// Handles every available chain of both queues, then delivers ready
    /// events and releases held chains if asked to.
    pub fn process<M: GuestMemory>(&self, mem: &M, reqq: &mut Queue, evq: &mut Queue) -> Kicks {
        let mut kicks = Kicks::default();
        // Requests first: a driver queues an event buffer only after its
        // SET_IRQ_TYPE completed, so both may be pending in one batch.
        if reqq.ready() {
            for chain in pop_all(reqq, mem) {
                let k = self.process_request(mem, chain, reqq, evq);
                kicks.request |= k.request;
                kicks.event |= k.event;
            }
        }
        if evq.ready() {
            kicks.event |= self.process_events(mem, evq);
        }
        let k = self.flush(mem, reqq, evq);
        kicks.request |= k.request;
        kicks.event |= k.event;
        kicks
    }

    fn process_events<M: GuestMemory>(&self, mem: &M, evq: &mut Queue) -> bool {
        let mut used = false;
        for chain in pop_all(evq, mem) {
            let mut st = lock(&self.state);
            let rejected = match EventRequest::parse(&chain, mem) {
                Ok(EventRequest { gpio, status }) => {
                    let token = EventToken {
                        head: chain.head,
                        status,
                    };
                    match st.lines.queue_event(gpio, token) {
                        Ok(()) => None,
                        Err((_, e)) => {
                            tracing::debug!("event buffer for line {gpio} rejected: {e}");
                            Some(())
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("malformed event chain {}: {e}", chain.head);
                    st.counters.malformed += 1;
                    Some(())
                }
            };
            drop(st);
            if rejected.is_some() {
                let len = chain.write_leading_status(mem, VIRTIO_GPIO_IRQ_STATUS_INVALID);
                used |= complete(evq, mem, chain.head, len);
            }
        }
        used
    }

    fn process_request<M: GuestMemory>(
        &self,
        mem: &M,
        chain: Chain,
        reqq: &mut Queue,
        evq: &mut Queue,
    ) -> Kicks {
        let mut kicks = Kicks::default();
        let mut st = lock(&self.state);
        let names_size = st.lines.names_block().len();
        let req = match GpioRequest::parse(&chain, mem, names_size) {
            Ok(req) => req,
            Err(e) => {
                tracing::warn!("malformed request chain {}: {e}", chain.head);
                st.counters.request("malformed");
                st.counters.malformed += 1;
                st.counters.errors += 1;
                drop(st);
                let len = chain.write_leading_status(mem, VIRTIO_GPIO_STATUS_ERR);
                kicks.request = complete(reqq, mem, chain.head, len);
                return kicks;
            }
        };
        st.counters.request(req.kind.name());
        let verdict = st.plan.on_request(RequestInfo {
            addr: None,
            line: Some(req.gpio),
        });
        st.counters.fired(&verdict.fired);
        if !verdict.delay.is_zero() {
            drop(st);
            thread::sleep(verdict.delay);
            st = lock(&self.state);
        }
        let (status, value) = match verdict.outcome {
            Outcome::Abort => {
                tracing::error!(
                    "fault plan: aborting at {:?} on line {}",
                    req.kind,
                    req.gpio
                );
                std::process::abort();
            }
            Outcome::Hold => {
                tracing::info!("fault plan: holding {:?} on line {}", req.kind, req.gpio);
                st.held.push(chain);
                st.counters.held += 1;
                return kicks;
            }
            Outcome::Err => (VIRTIO_GPIO_STATUS_ERR, 0),
            Outcome::Execute => match req.execute(&mut st.lines) {
                Ok(v) => (VIRTIO_GPIO_STATUS_OK, v),
                Err(e) => {
                    tracing::debug!("{:?} on line {} failed: {e}", req.kind, req.gpio);
                    (VIRTIO_GPIO_STATUS_ERR, 0)
                }
            },
        };
        if status != VIRTIO_GPIO_STATUS_OK {
            st.counters.errors += 1;
        }
        // Events the request made ready (IRQ type NONE) go back first, so the
        // driver sees its event buffer before the request completes.
        let ready = st.lines.take_ready();
        let len = if req.kind == GpioRequestKind::GetLineNames && status == VIRTIO_GPIO_STATUS_OK {
            let mut resp = Vec::with_capacity(1 + names_size);
            resp.push(status);
            resp.extend_from_slice(st.lines.names_block());
            write_bytes(mem, req.resp.addr, &resp)
        } else {
            let resp = VirtioGpioResponse { status, value };
            write_bytes(mem, req.resp.addr, resp.as_slice())
        };
        drop(st);
        kicks.event |= self.return_events(mem, evq, ready);
        kicks.request |= complete(reqq, mem, chain.head, len);
        kicks
    }

    fn return_events<M: GuestMemory>(
        &self,
        mem: &M,
        evq: &mut Queue,
        ready: Vec<(EventToken, u8)>,
    ) -> bool {
        let mut used = false;
        let mut irqs = 0;
        for (token, status) in ready {
            let len = match mem.write_obj(status, token.status) {
                Ok(()) => 1,
                Err(_) => 0,
            };
            if status == VIRTIO_GPIO_IRQ_STATUS_VALID {
                irqs += 1;
            }
            used |= complete(evq, mem, token.head, len);
        }
        if irqs > 0 {
            lock(&self.state).counters.irqs += irqs;
        }
        used
    }

    /// Delivers events made ready from the world side, and held chains if a
    /// release was requested.
    pub fn flush<M: GuestMemory>(&self, mem: &M, reqq: &mut Queue, evq: &mut Queue) -> Kicks {
        let mut st = lock(&self.state);
        let ready = st.lines.take_ready();
        let held = if st.release_held {
            st.release_held = false;
            st.counters.held = 0;
            std::mem::take(&mut st.held)
        } else {
            Vec::new()
        };
        drop(st);
        let mut kicks = Kicks {
            event: self.return_events(mem, evq, ready),
            request: false,
        };
        for chain in held {
            // Held chains were well formed: the status is the first byte of
            // the response buffer.
            let len = match chain.bufs.iter().find(|b| b.writable && b.len > 0) {
                Some(b) => write_bytes(mem, b.addr, &[VIRTIO_GPIO_STATUS_ERR]),
                None => 0,
            };
            kicks.request |= complete(reqq, mem, chain.head, len);
        }
        kicks
    }
}

fn write_bytes<M: GuestMemory>(mem: &M, addr: GuestAddress, bytes: &[u8]) -> u32 {
    match mem.write_slice(bytes, addr) {
        Ok(()) => u32::try_from(bytes.len()).unwrap_or(0),
        Err(e) => {
            tracing::warn!("cannot write response at {:#x}: {e}", addr.0);
            0
        }
    }
}

impl ControlTarget for Arc<GpioDevice> {
    fn control(&self, req: Request) -> Response {
        match req {
            Request::Ping => Response {
                device: Some("gpio".into()),
                ..Response::ok()
            },
            Request::Counters => {
                let st = lock(&self.state);
                Response {
                    counters: Some(st.counters.clone()),
                    faults: Some(st.specs.iter().map(ToString::to_string).collect()),
                    ..Response::ok()
                }
            }
            Request::SetFaults { faults } => match parse_specs(&faults) {
                Ok(specs) => {
                    self.set_faults(specs);
                    Response {
                        faults: Some(faults),
                        ..Response::ok()
                    }
                }
                Err(e) => Response::error(e.to_string()),
            },
            Request::ClearFaults => {
                self.set_faults(Vec::new());
                Response {
                    faults: Some(Vec::new()),
                    ..Response::ok()
                }
            }
            Request::ReleaseHeld => {
                let n = {
                    let mut st = lock(&self.state);
                    st.release_held = true;
                    st.held.len() as u64
                };
                self.wake();
                Response {
                    released: Some(n),
                    ..Response::ok()
                }
            }
            Request::DriveLine { line, level } => match self.drive_line(line, level) {
                Ok(()) => Response::ok(),
                Err(e) => Response::error(e.to_string()),
            },
            Request::ReadLines { line } => {
                let lines = match line {
                    None => Ok(self.line_states()),
                    Some(l) => lock(&self.state).lines.state(l).map(|s| vec![s]),
                };
                match lines {
                    Ok(lines) => Response {
                        lines: Some(lines),
                        ..Response::ok()
                    },
                    Err(e) => Response::error(e.to_string()),
                }
            }
            other => Response::error(format!("{} is not a gpio request", other.name())),
        }
    }
}

/// The `VhostUserBackend` of one front-end connection.
#[derive(Debug)]
pub struct GpioConn {
    device: Arc<GpioDevice>,
    mem: Mutex<Option<GuestMemoryAtomic<GuestMemoryMmap>>>,
    wake: EventFd,
}

impl GpioConn {
    /// Starts a connection on `device` (resetting the guest-visible state).
    pub fn new(device: Arc<GpioDevice>) -> io::Result<Arc<Self>> {
        let wake = EventFd::new(EFD_NONBLOCK)?;
        device.begin_connection(wake.try_clone()?);
        Ok(Arc::new(GpioConn {
            device,
            mem: Mutex::new(None),
            wake,
        }))
    }

    /// The eventfd to register with the worker's epoll under [`WAKE_EVENT`].
    pub fn wake_fd(&self) -> &EventFd {
        &self.wake
    }
}

/// Features offered: VERSION_1, VIRTIO_GPIO_F_IRQ, vhost-user protocol features.
pub const GPIO_FEATURES: u64 = (1 << VIRTIO_F_VERSION_1)
    | (1 << VIRTIO_GPIO_F_IRQ)
    | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();

impl VhostUserBackend for GpioConn {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> usize {
        QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        tracing::debug!("gpio: GET_FEATURES -> {:#x}", GPIO_FEATURES);
        GPIO_FEATURES
    }

    fn acked_features(&self, features: u64) {
        tracing::debug!("gpio: SET_FEATURES {features:#x}");
        lock(&self.device.state)
            .lines
            .set_irq_negotiated(features & (1 << VIRTIO_GPIO_F_IRQ) != 0);
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::REPLY_ACK
    }

    fn reset_device(&self) {
        tracing::debug!("gpio: RESET_DEVICE");
        let mut st = lock(&self.device.state);
        st.lines.reset_guest_state();
        st.held.clear();
        st.counters.held = 0;
    }

    fn set_event_idx(&self, _enabled: bool) {}

    fn stop_vring(&self, queue_index: u32) -> io::Result<()> {
        // GET_VRING_BASE: the ring stops (driver reset or disconnect). Chains
        // taken from it can never be returned into a later ring.
        tracing::debug!("gpio: GET_VRING_BASE {queue_index} (stop)");
        let mut st = lock(&self.device.state);
        match u16::try_from(queue_index) {
            Ok(REQUEST_QUEUE) => {
                st.held.clear();
                st.counters.held = 0;
            }
            Ok(EVENT_QUEUE) => st.lines.forget_event_buffers(),
            _ => {}
        }
        Ok(())
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        tracing::debug!("gpio: GET_CONFIG offset {offset} size {size}");
        let config = self.device.config();
        let bytes = config.as_slice();
        let start = offset as usize;
        match start.checked_add(size as usize) {
            Some(end) if end <= bytes.len() => bytes[start..end].to_vec(),
            _ => {
                tracing::warn!("config read out of bounds: offset {offset}, size {size}");
                Vec::new()
            }
        }
    }

    fn update_memory(&self, mem: GuestMemoryAtomic<GuestMemoryMmap>) -> io::Result<()> {
        crate::daemon::log_mem_table("gpio", &*mem.memory());
        *lock(&self.mem) = Some(mem);
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        crate::daemon::exit_event()
    }

    fn handle_event(
        &self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[VringRwLock],
        _thread_id: usize,
    ) -> io::Result<()> {
        if device_event == WAKE_EVENT {
            let _ = self.wake.read();
        } else if usize::from(device_event) >= NUM_QUEUES {
            return Err(io::Error::other(format!("unexpected event {device_event}")));
        }
        let Some(atomic) = lock(&self.mem).clone() else {
            return Ok(());
        };
        let [reqv, evv] = vrings else {
            return Err(io::Error::other("gpio needs two vrings"));
        };
        let mem = atomic.memory();
        let mut req = reqv.get_mut();
        let mut ev = evv.get_mut();
        if !req.get_queue().ready() && !ev.get_queue().ready() {
            return Ok(());
        }
        let kicks = self
            .device
            .process(&*mem, req.get_queue_mut(), ev.get_queue_mut());
        if kicks.event {
            ev.signal_used_queue()?;
        }
        if kicks.request {
            req.signal_used_queue()?;
        }
        Ok(())
    }
}

impl crate::daemon::Device for Arc<GpioDevice> {
    type Conn = GpioConn;

    fn kind(&self) -> &'static str {
        "gpio"
    }

    fn connect(&self) -> io::Result<Arc<GpioConn>> {
        GpioConn::new(self.clone())
    }

    fn wake(conn: &GpioConn) -> (&EventFd, u16) {
        (&conn.wake, WAKE_EVENT)
    }

    fn connected(&self) {
        lock(&self.state).counters.connections += 1;
    }

    fn disconnect(&self) {
        self.end_connection();
    }
}
