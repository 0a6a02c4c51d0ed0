//! The device core shared by the virtio-gpio and virtio-i2c backends.
//!
//! A [`Device`] lives as long as the process and holds what outlives a
//! front end: the device's [`Model`] (the GPIO lines, the I2C bus with its
//! chips), the fault plan, the counters and the chains a `hold` fault keeps.
//! A [`Conn`] is the `VhostUserBackend` of one front-end connection: it is
//! made afresh for each, and making it brings the model's guest-visible
//! state back to power-on.
//!
//! The core does what both devices do alike: connection setup and teardown,
//! the lock, the wake eventfd through which world-side events (an input
//! line driven, a `release_held`) reach the vring worker, the request
//! pipeline below, the release of held chains, event buffers given back on
//! the other queues, and the control requests every device answers. A
//! [`Model`] says what is its own: queues, features, config space, how a
//! chain parses and runs, and its own control requests.
//!
//! # Request pipeline
//!
//! For each chain on the request queue (queue 0), under the device lock:
//!
//! 1. [`Model::parse`] makes a typed request of it. A chain that does not
//!    parse is counted (`malformed`, `errors`), gets the error status where
//!    the device's requests keep theirs ([`Model::STATUS_AT`]) if it has
//!    room, and goes back to the used ring: never dropped.
//! 2. The request is counted under its name and shown to the fault plan; a
//!    delay sleeps with the lock released.
//! 3. `abort` aborts the process and `hold` keeps the chain, unless
//!    [`Model::fails_regardless`]; otherwise [`Model::run`] executes the
//!    request, or answers it with an error the plan injects.
//! 4. Events the request made ready ([`Model::take_events`]) go back to
//!    their queues first, then the reply is written and the chain returned.

use std::fmt;
use std::io;
use std::ops::BitOrAssign;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread;

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_queue::{Queue, QueueT};
use vm_memory::{
    Bytes, GuestAddress, GuestAddressSpace, GuestMemory, GuestMemoryAtomic, GuestMemoryMmap,
};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{EventConsumer, EventNotifier};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::control::{ControlTarget, Request, Response};
use crate::counters::Counters;
use crate::fault::{FaultPlan, FaultSpec, Outcome, RequestInfo, parse_specs};
use crate::virtq::{Chain, complete, pop_all};

/// Queue size offered to the front end.
pub const QUEUE_SIZE: usize = 1024;
/// Index of the request queue, the first queue of every device.
pub const REQUEST_QUEUE: usize = 0;

/// Where a device's requests keep their status byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusAt {
    /// First byte of the first writable descriptor: the response starts
    /// with the status (virtio-gpio).
    Start,
    /// Last byte of the last writable descriptor: the chain ends with the
    /// status (virtio-i2c).
    End,
}

impl StatusAt {
    /// Writes `status` into a chain that did not parse; the bytes written.
    /// With [`StatusAt::Start`] the rest of a short response is zeroed, so
    /// no stale byte reads as a value.
    fn fail_malformed<M: GuestMemory>(self, chain: &Chain, mem: &M, status: u8) -> u32 {
        match self {
            StatusAt::Start => chain.write_leading_status(mem, status),
            StatusAt::End => chain.write_status(mem, status),
        }
    }

    /// Writes `status` into a held (well-formed) chain; the bytes written.
    fn fail_held<M: GuestMemory>(self, chain: &Chain, mem: &M, status: u8) -> u32 {
        match self {
            StatusAt::Start => chain.write_first_status(mem, status),
            StatusAt::End => chain.write_status(mem, status),
        }
    }
}

/// What running a request produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The request succeeded; a failure counts in `errors`.
    pub ok: bool,
    /// Bytes the request already wrote into the chain (the data of an I2C
    /// read).
    pub written: u32,
    /// Where the response goes.
    pub at: GuestAddress,
    /// The response: the status byte and whatever goes with it.
    pub response: Vec<u8>,
}

/// A buffer of a queue other than the request queue, given back with a
/// one-byte status (a GPIO interrupt, or the event buffer of a line whose
/// interrupt was disabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// Queue index.
    pub queue: usize,
    /// Head of the chain.
    pub head: u16,
    /// Where the status byte goes.
    pub at: GuestAddress,
    /// The status.
    pub status: u8,
    /// Counts as an interrupt delivered (`irqs`).
    pub irq: bool,
}

/// What a model does with a chain of a queue other than the request queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken<E> {
    /// The model keeps it; it comes back later as an [`Event`].
    Kept,
    /// It goes straight back with this status in its first byte.
    Refused(u8),
    /// It does not parse; it goes straight back with this status in its
    /// first byte.
    Malformed(E, u8),
}

/// Which queues got used buffers (and need a used-buffer notification).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kicks(u64);

impl Kicks {
    /// Whether queue `index` got used buffers.
    pub fn queue(self, index: usize) -> bool {
        index < 64 && self.0 & (1 << index) != 0
    }

    fn set(&mut self, index: usize, used: bool) {
        if used && index < 64 {
            self.0 |= 1 << index;
        }
    }
}

impl BitOrAssign for Kicks {
    fn bitor_assign(&mut self, other: Kicks) {
        self.0 |= other.0;
    }
}

/// What one kind of device adds to the core: its queues and features, its
/// guest-visible state, and how its requests parse and run.
///
/// A model is kept under the device lock; every method runs with it held,
/// so a method must not block (a fault delay sleeps in the core, unlocked).
pub trait Model: Send + fmt::Debug + Sized + 'static {
    /// Device name: logs, thread names, the `ping` reply.
    const KIND: &'static str;
    /// Number of virtqueues; queue 0 is the request queue.
    const NUM_QUEUES: usize;
    /// Virtio features offered.
    const FEATURES: u64;
    /// vhost-user protocol features offered.
    const PROTOCOL_FEATURES: VhostUserProtocolFeatures;
    /// Where a request's status byte sits.
    const STATUS_AT: StatusAt;
    /// The status of a request that failed.
    const STATUS_ERR: u8;

    /// A parsed request-queue chain (shown in logs).
    type Request: fmt::Display;
    /// Why a chain does not parse.
    type ParseError: std::error::Error;
    /// Why a device-specific control request failed.
    type ControlError: std::error::Error;

    /// Parses a request-queue chain. Must not write guest memory.
    fn parse<Mem: GuestMemory>(
        &self,
        chain: &Chain,
        mem: &Mem,
    ) -> Result<Self::Request, Self::ParseError>;

    /// The counter name of `req` (`get_value`, `write`, ...) and what the
    /// fault plan's filters match on.
    fn describe(req: &Self::Request) -> (&'static str, RequestInfo);

    /// Runs `req`, or, with `inject_err`, answers it with the error the
    /// fault plan injects. Always produces a reply.
    fn run<Mem: GuestMemory>(&mut self, req: &Self::Request, inject_err: bool, mem: &Mem) -> Reply;

    /// Whether `req` fails whatever the fault plan says (an I2C message
    /// after a failed one of its `FAIL_NEXT` group): it is then neither
    /// held nor aborted on, and [`Model::run`] answers it.
    fn fails_regardless(&self, req: &Self::Request) -> bool {
        let _ = req;
        false
    }

    /// A request-queue chain did not parse (the I2C transfer ends).
    fn malformed(&mut self) {}

    /// Buffers of other queues ready to go back.
    fn take_events(&mut self) -> Vec<Event> {
        Vec::new()
    }

    /// A chain arrived on `queue` (not the request queue). The default
    /// refuses it with [`Model::STATUS_ERR`].
    fn take_chain<Mem: GuestMemory>(
        &mut self,
        queue: usize,
        chain: &Chain,
        mem: &Mem,
    ) -> Taken<Self::ParseError> {
        let _ = (queue, chain, mem);
        Taken::Refused(Self::STATUS_ERR)
    }

    /// Brings the guest-visible state back to power-on: a new connection,
    /// or `RESET_DEVICE`. State the world set (EEPROM bytes, driven input
    /// levels) stays.
    fn reset(&mut self);

    /// The front end went away.
    fn disconnected(&mut self);

    /// `GET_VRING_BASE`: the front end stopped `queue`.
    fn queue_stopped(&mut self, queue: usize) {
        let _ = queue;
    }

    /// `SET_FEATURES`.
    fn acked_features(&mut self, features: u64) {
        let _ = features;
    }

    /// The config space; empty when the device has none.
    fn config_space(&self) -> Vec<u8> {
        Vec::new()
    }

    /// The fault plan was replaced; `generation` is the plan's number (see
    /// [`Device::plan_generation`]). Starts what the plan runs in the
    /// background (GPIO edge storms).
    fn faults_changed(device: &Device<Self>, specs: &[FaultSpec], generation: u64) {
        let _ = (device, specs, generation);
    }

    /// A control request the core does not answer itself; `None` when it is
    /// not a request of this device.
    fn control(device: &Device<Self>, req: Request)
    -> Option<Result<Response, Self::ControlError>>;
}

/// The state behind the device lock.
#[derive(Debug)]
pub(crate) struct State<M> {
    /// The device model.
    pub(crate) model: M,
    plan: FaultPlan,
    specs: Vec<FaultSpec>,
    /// Counters.
    pub(crate) counters: Counters,
    held: Vec<Chain>,
    release_held: bool,
}

impl<M> State<M> {
    /// Forgets the held chains (their ring went away).
    fn drop_held(&mut self) {
        self.held.clear();
        self.counters.held = 0;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the model half-updated in
    // a way worse than stopping the backend would: keep serving.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One device, shared by every connection of the process.
#[derive(Debug)]
pub struct Device<M: Model> {
    me: Weak<Self>,
    state: Mutex<State<M>>,
    wake: Mutex<Option<EventFd>>,
    generation: AtomicU64,
}

impl<M: Model> Device<M> {
    /// A device around `model` under the fault plan `faults`.
    pub fn with_model(model: M, faults: Vec<FaultSpec>) -> Arc<Self> {
        let dev = Arc::new_cyclic(|me| Device {
            me: me.clone(),
            state: Mutex::new(State {
                model,
                plan: FaultPlan::default(),
                specs: Vec::new(),
                counters: Counters::default(),
                held: Vec::new(),
                release_held: false,
            }),
            wake: Mutex::new(None),
            generation: AtomicU64::new(0),
        });
        dev.set_faults(faults);
        dev
    }

    /// The lock.
    pub(crate) fn state(&self) -> MutexGuard<'_, State<M>> {
        lock(&self.state)
    }

    /// A weak reference, for threads that must not keep the device alive.
    pub fn weak(&self) -> Weak<Self> {
        self.me.clone()
    }

    /// Replaces the fault plan; [`Model::faults_changed`] starts what it
    /// runs in the background, and what the old plan ran stops.
    pub fn set_faults(&self, specs: Vec<FaultSpec>) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        {
            let mut st = self.state();
            st.plan = FaultPlan::new(&specs);
            st.specs.clone_from(&specs);
        }
        M::faults_changed(self, &specs, generation);
    }

    /// The number of the fault plan in force; a background job of an
    /// older plan stops when it sees a newer number.
    pub fn plan_generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Wakes the vring worker of the current connection, if any.
    pub fn wake(&self) {
        if let Some(fd) = lock(&self.wake).as_ref() {
            let _ = fd.write(1);
        }
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        self.state().counters.clone()
    }

    /// Starts a connection: forget the previous front end's state.
    fn begin_connection(&self, wake: EventFd) {
        let mut st = self.state();
        st.model.reset();
        st.drop_held();
        st.release_held = false;
        *lock(&self.wake) = Some(wake);
    }

    /// A front end was accepted on the connection.
    pub(crate) fn connected(&self) {
        self.state().counters.connections += 1;
    }

    /// Ends a connection: held chains die with their rings.
    pub fn end_connection(&self) {
        let mut st = self.state();
        if !st.held.is_empty() {
            tracing::info!(
                "{}: dropping {} held chain(s) of the closed connection",
                M::KIND,
                st.held.len()
            );
        }
        st.drop_held();
        st.model.disconnected();
        *lock(&self.wake) = None;
    }

    /// Handles every available chain of every ready queue (the request
    /// queue first), then gives back ready events and, if asked, the held
    /// chains. `queues` are the device's queues in order.
    pub fn process_queues<Mem: GuestMemory>(&self, mem: &Mem, queues: &mut [&mut Queue]) -> Kicks {
        let mut kicks = Kicks::default();
        if let Some(reqq) = queues.get_mut(REQUEST_QUEUE) {
            if reqq.ready() {
                for chain in pop_all(reqq, mem) {
                    kicks |= self.process_request(mem, chain, queues);
                }
            }
        }
        for index in REQUEST_QUEUE + 1..queues.len() {
            kicks |= self.process_other(mem, index, queues);
        }
        kicks |= self.flush(mem, queues);
        kicks
    }

    fn process_request<Mem: GuestMemory>(
        &self,
        mem: &Mem,
        chain: Chain,
        queues: &mut [&mut Queue],
    ) -> Kicks {
        let mut kicks = Kicks::default();
        let mut st = self.state();
        let req = match st.model.parse(&chain, mem) {
            Ok(req) => req,
            Err(e) => {
                tracing::warn!("{}: malformed request chain {}: {e}", M::KIND, chain.head);
                st.counters.request("malformed");
                st.counters.malformed += 1;
                st.counters.errors += 1;
                st.model.malformed();
                drop(st);
                let len = M::STATUS_AT.fail_malformed(&chain, mem, M::STATUS_ERR);
                return_chain(&mut kicks, queues, mem, REQUEST_QUEUE, chain.head, len);
                return kicks;
            }
        };
        let (name, info) = M::describe(&req);
        st.counters.request(name);
        let verdict = st.plan.on_request(info);
        st.counters.fired(&verdict.fired);
        if !verdict.delay.is_zero() {
            drop(st);
            thread::sleep(verdict.delay);
            st = self.state();
        }
        let fault_applies = !st.model.fails_regardless(&req);
        let reply = match verdict.outcome {
            Outcome::Abort if fault_applies => {
                tracing::error!("{}: fault plan: aborting at {req}", M::KIND);
                std::process::abort();
            }
            Outcome::Hold if fault_applies => {
                tracing::info!("{}: fault plan: holding {req}", M::KIND);
                st.held.push(chain);
                st.counters.held += 1;
                return kicks;
            }
            outcome => st.model.run(&req, outcome == Outcome::Err, mem),
        };
        if !reply.ok {
            st.counters.errors += 1;
        }
        let events = st.model.take_events();
        drop(st);
        let len = reply.written + write_response(mem, reply.at, &reply.response);
        tracing::debug!(
            head = chain.head,
            request = %req,
            ok = reply.ok,
            written = len,
            layout = %chain.layout(),
            "{} request",
            M::KIND
        );
        // Events the request made ready (a GPIO line's interrupt disabled)
        // go back first, so the driver sees its event buffer before the
        // request completes.
        kicks |= self.deliver(mem, queues, events);
        return_chain(&mut kicks, queues, mem, REQUEST_QUEUE, chain.head, len);
        kicks
    }

    /// Chains on queue `index`, handed to [`Model::take_chain`].
    fn process_other<Mem: GuestMemory>(
        &self,
        mem: &Mem,
        index: usize,
        queues: &mut [&mut Queue],
    ) -> Kicks {
        let mut kicks = Kicks::default();
        let Some(queue) = queues.get_mut(index) else {
            return kicks;
        };
        if !queue.ready() {
            return kicks;
        }
        for chain in pop_all(queue, mem) {
            let mut st = self.state();
            let status = match st.model.take_chain(index, &chain, mem) {
                Taken::Kept => None,
                Taken::Refused(status) => Some(status),
                Taken::Malformed(e, status) => {
                    tracing::warn!(
                        "{}: malformed chain {} on queue {index}: {e}",
                        M::KIND,
                        chain.head
                    );
                    st.counters.malformed += 1;
                    Some(status)
                }
            };
            drop(st);
            if let Some(status) = status {
                let len = chain.write_leading_status(mem, status);
                return_chain(&mut kicks, queues, mem, index, chain.head, len);
            }
        }
        kicks
    }

    /// Gives back the events made ready from the world side, and the held
    /// chains if a release was requested.
    fn flush<Mem: GuestMemory>(&self, mem: &Mem, queues: &mut [&mut Queue]) -> Kicks {
        let mut st = self.state();
        let events = st.model.take_events();
        let held = if st.release_held {
            st.release_held = false;
            st.counters.held = 0;
            std::mem::take(&mut st.held)
        } else {
            Vec::new()
        };
        drop(st);
        let mut kicks = self.deliver(mem, queues, events);
        for chain in held {
            let len = M::STATUS_AT.fail_held(&chain, mem, M::STATUS_ERR);
            return_chain(&mut kicks, queues, mem, REQUEST_QUEUE, chain.head, len);
        }
        kicks
    }

    fn deliver<Mem: GuestMemory>(
        &self,
        mem: &Mem,
        queues: &mut [&mut Queue],
        events: Vec<Event>,
    ) -> Kicks {
        let mut kicks = Kicks::default();
        let mut irqs = 0;
        for ev in events {
            let len = match mem.write_obj(ev.status, ev.at) {
                Ok(()) => 1,
                Err(_) => 0,
            };
            if ev.irq {
                irqs += 1;
            }
            return_chain(&mut kicks, queues, mem, ev.queue, ev.head, len);
        }
        if irqs > 0 {
            self.state().counters.irqs += irqs;
        }
        kicks
    }

    fn release_held(&self) -> u64 {
        let n = {
            let mut st = self.state();
            st.release_held = true;
            st.held.len() as u64
        };
        self.wake();
        n
    }
}

/// Puts `head` on the used ring of queue `index` and notes the kick.
fn return_chain<Mem: GuestMemory>(
    kicks: &mut Kicks,
    queues: &mut [&mut Queue],
    mem: &Mem,
    index: usize,
    head: u16,
    len: u32,
) {
    let used = match queues.get_mut(index) {
        Some(queue) => complete(queue, mem, head, len),
        None => {
            tracing::warn!("chain {head} belongs to queue {index}, which does not exist");
            false
        }
    };
    kicks.set(index, used);
}

/// Writes a response; the bytes written (0, logged, when the guest gave an
/// address outside its memory).
fn write_response<Mem: GuestMemory>(mem: &Mem, addr: GuestAddress, bytes: &[u8]) -> u32 {
    match mem.write_slice(bytes, addr) {
        Ok(()) => u32::try_from(bytes.len()).unwrap_or(0),
        Err(e) => {
            tracing::warn!("cannot write response at {:#x}: {e}", addr.0);
            0
        }
    }
}

impl<M: Model> ControlTarget for Device<M> {
    fn control(&self, req: Request) -> Response {
        match req {
            Request::Ping => Response {
                device: Some(M::KIND.into()),
                ..Response::ok()
            },
            Request::Counters => {
                let st = self.state();
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
                Err(e) => Response::failure(&e),
            },
            Request::ClearFaults => {
                self.set_faults(Vec::new());
                Response {
                    faults: Some(Vec::new()),
                    ..Response::ok()
                }
            }
            Request::ReleaseHeld => Response {
                released: Some(self.release_held()),
                ..Response::ok()
            },
            other => {
                let name = other.name();
                match M::control(self, other) {
                    Some(Ok(resp)) => resp,
                    Some(Err(e)) => Response::failure(&e),
                    None => {
                        // "a gpio request", "an i2c request".
                        let article = match M::KIND.chars().next() {
                            Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
                            _ => "a",
                        };
                        Response::error(format!("{name} is not {article} {} request", M::KIND))
                    }
                }
            }
        }
    }
}

/// The `VhostUserBackend` of one front-end connection.
#[derive(Debug)]
pub struct Conn<M: Model> {
    device: Arc<Device<M>>,
    mem: Mutex<Option<GuestMemoryAtomic<GuestMemoryMmap>>>,
    wake: EventFd,
}

impl<M: Model> Conn<M> {
    /// Epoll id of the wake eventfd (after the queues and the exit event).
    pub const WAKE_EVENT: u16 = M::NUM_QUEUES as u16 + 1;

    /// Starts a connection on `device` (resetting the guest-visible state).
    pub fn new(device: Arc<Device<M>>) -> io::Result<Arc<Self>> {
        let wake = EventFd::new(EFD_NONBLOCK)?;
        device.begin_connection(wake.try_clone()?);
        Ok(Arc::new(Conn {
            device,
            mem: Mutex::new(None),
            wake,
        }))
    }

    /// The device.
    pub fn device(&self) -> &Arc<Device<M>> {
        &self.device
    }

    /// The eventfd to register with the worker's epoll under
    /// [`Conn::WAKE_EVENT`].
    pub fn wake_fd(&self) -> &EventFd {
        &self.wake
    }
}

impl<M: Model> VhostUserBackend for Conn<M> {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        M::NUM_QUEUES
    }

    fn max_queue_size(&self) -> usize {
        QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        tracing::debug!("{}: GET_FEATURES -> {:#x}", M::KIND, M::FEATURES);
        M::FEATURES
    }

    fn acked_features(&self, features: u64) {
        tracing::debug!("{}: SET_FEATURES {features:#x}", M::KIND);
        self.device.state().model.acked_features(features);
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        M::PROTOCOL_FEATURES
    }

    fn reset_device(&self) {
        tracing::debug!("{}: RESET_DEVICE", M::KIND);
        let mut st = self.device.state();
        st.model.reset();
        st.drop_held();
    }

    fn set_event_idx(&self, _enabled: bool) {}

    fn stop_vring(&self, queue_index: u32) -> io::Result<()> {
        // GET_VRING_BASE: the ring stops (driver reset or disconnect). Chains
        // taken from it can never be returned into a later ring.
        tracing::debug!("{}: GET_VRING_BASE {queue_index} (stop)", M::KIND);
        let index = queue_index as usize;
        let mut st = self.device.state();
        if index == REQUEST_QUEUE {
            st.drop_held();
        }
        st.model.queue_stopped(index);
        Ok(())
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        tracing::debug!("{}: GET_CONFIG offset {offset} size {size}", M::KIND);
        let bytes = self.device.state().model.config_space();
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
        log_mem_table(M::KIND, &*mem.memory());
        *lock(&self.mem) = Some(mem);
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        // Without it, dropping the daemon after a disconnect deadlocks.
        use vmm_sys_util::event::{EventFlag, new_event_consumer_and_notifier};
        new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC)
            .inspect_err(|e| tracing::error!("cannot create exit event: {e}"))
            .ok()
    }

    fn handle_event(
        &self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[VringRwLock],
        _thread_id: usize,
    ) -> io::Result<()> {
        if device_event == Self::WAKE_EVENT {
            let _ = self.wake.read();
        } else if usize::from(device_event) >= M::NUM_QUEUES {
            return Err(io::Error::other(format!("unexpected event {device_event}")));
        }
        let Some(atomic) = lock(&self.mem).clone() else {
            return Ok(());
        };
        if vrings.len() != M::NUM_QUEUES {
            return Err(io::Error::other(format!(
                "{} needs {} vring(s), got {}",
                M::KIND,
                M::NUM_QUEUES,
                vrings.len()
            )));
        }
        let mem = atomic.memory();
        let mut guards: Vec<_> = vrings.iter().map(VringRwLock::get_mut).collect();
        if !guards.iter().any(|g| g.get_queue().ready()) {
            return Ok(());
        }
        let mut queues: Vec<&mut Queue> = guards.iter_mut().map(|g| g.get_queue_mut()).collect();
        let kicks = self.device.process_queues(&*mem, &mut queues);
        drop(queues);
        for (index, guard) in guards.iter().enumerate() {
            if kicks.queue(index) {
                guard.signal_used_queue()?;
            }
        }
        Ok(())
    }
}

/// Logs a SET_MEM_TABLE.
fn log_mem_table<M: vm_memory::GuestMemoryBackend>(device: &str, mem: &M) {
    use vm_memory::GuestMemoryRegion;
    tracing::debug!(
        "{device}: SET_MEM_TABLE: {} region(s), {} bytes",
        mem.num_regions(),
        mem.iter().map(|r| r.len()).sum::<u64>()
    );
}

#[cfg(test)]
mod tests {
    use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{RawDescriptor, split::Descriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestMemoryMmap;

    use super::*;

    /// Where request bytes live; the status byte of chain `n` is at
    /// `STATUS + n`.
    const REQ: u64 = 0x1_0000;
    const STATUS: u64 = 0x2_0000;

    /// A device whose request is one readable byte: 0 succeeds, 1 fails,
    /// 2 makes the buffer waiting on queue 1 ready. Requests after a
    /// failed one fail regardless while `sticky` is set.
    #[derive(Debug, Default)]
    struct MockModel {
        waiting: Option<(u16, GuestAddress)>,
        ready: bool,
        sticky: bool,
        failed: bool,
    }

    #[derive(Debug, Clone, Copy)]
    struct MockRequest(u8, GuestAddress);

    impl fmt::Display for MockRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "mock {}", self.0)
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("not one readable then one writable byte")]
    struct MockParseError;

    impl Model for MockModel {
        const KIND: &'static str = "mock";
        const NUM_QUEUES: usize = 2;
        const FEATURES: u64 = 0;
        const PROTOCOL_FEATURES: VhostUserProtocolFeatures = VhostUserProtocolFeatures::MQ;
        const STATUS_AT: StatusAt = StatusAt::End;
        const STATUS_ERR: u8 = 0xe;

        type Request = MockRequest;
        type ParseError = MockParseError;

        fn parse<Mem: GuestMemory>(
            &self,
            chain: &Chain,
            mem: &Mem,
        ) -> Result<MockRequest, MockParseError> {
            match chain.bufs.as_slice() {
                [r, w] if !r.writable && w.writable && r.len == 1 => {
                    let byte = mem.read_obj(r.addr).map_err(|_| MockParseError)?;
                    Ok(MockRequest(byte, w.addr))
                }
                _ => Err(MockParseError),
            }
        }

        fn describe(req: &MockRequest) -> (&'static str, RequestInfo) {
            ("mock", RequestInfo::line(u16::from(req.0)))
        }

        fn run<Mem: GuestMemory>(&mut self, req: &MockRequest, inject: bool, _: &Mem) -> Reply {
            let ok = !inject && !self.failed && req.0 != 1;
            self.failed = self.sticky && !ok;
            self.ready |= req.0 == 2;
            Reply {
                ok,
                written: 0,
                at: req.1,
                response: vec![if ok { 0 } else { Self::STATUS_ERR }],
            }
        }

        fn fails_regardless(&self, _req: &MockRequest) -> bool {
            self.failed
        }

        fn take_events(&mut self) -> Vec<Event> {
            match self.waiting.take_if(|_| self.ready) {
                Some((head, at)) => vec![Event {
                    queue: 1,
                    head,
                    at,
                    status: 7,
                    irq: true,
                }],
                None => Vec::new(),
            }
        }

        fn take_chain<Mem: GuestMemory>(
            &mut self,
            _: usize,
            chain: &Chain,
            _: &Mem,
        ) -> Taken<MockParseError> {
            match chain.bufs.as_slice() {
                [w] if w.writable => {
                    self.waiting = Some((chain.head, w.addr));
                    Taken::Kept
                }
                _ => Taken::Malformed(MockParseError, 9),
            }
        }

        fn reset(&mut self) {}

        fn disconnected(&mut self) {}

        type ControlError = MockParseError;

        fn control(_: &Device<Self>, _: Request) -> Option<Result<Response, MockParseError>> {
            None
        }
    }

    /// Two queues on one memory; chains are added as (readable byte or
    /// none, writable) pairs.
    struct Rings<'a> {
        mem: &'a GuestMemoryMmap,
        reqs: MockSplitQueue<'a, GuestMemoryMmap>,
        events: MockSplitQueue<'a, GuestMemoryMmap>,
        queues: [Queue; 2],
    }

    impl<'a> Rings<'a> {
        /// Request chain `n` carries `bytes` (one descriptor each, all
        /// readable) then a writable status byte.
        fn new(mem: &'a GuestMemoryMmap, requests: &[&[u8]], event: bool) -> Self {
            let reqs = MockSplitQueue::create(mem, GuestAddress(0), 16);
            let events = MockSplitQueue::create(mem, GuestAddress(0x8000), 16);
            let mut raw = Vec::new();
            for (n, bytes) in requests.iter().enumerate() {
                let n = n as u64;
                for (i, b) in bytes.iter().enumerate() {
                    let addr = REQ + 16 * n + i as u64;
                    mem.write_obj(*b, GuestAddress(addr)).unwrap();
                    let next = raw.len() as u16 + 1;
                    raw.push(RawDescriptor::from(Descriptor::new(
                        addr,
                        1,
                        VRING_DESC_F_NEXT as u16,
                        next,
                    )));
                }
                let flags = VRING_DESC_F_WRITE as u16;
                raw.push(RawDescriptor::from(Descriptor::new(
                    STATUS + n,
                    1,
                    flags,
                    0,
                )));
            }
            reqs.add_desc_chains(&raw, 0).unwrap();
            if event {
                let flags = VRING_DESC_F_WRITE as u16;
                let ev = [RawDescriptor::from(Descriptor::new(
                    STATUS + 15,
                    1,
                    flags,
                    0,
                ))];
                events.add_desc_chains(&ev, 0).unwrap();
            }
            let queues = [reqs.create_queue().unwrap(), events.create_queue().unwrap()];
            Rings {
                mem,
                reqs,
                events,
                queues,
            }
        }

        fn process(&mut self, dev: &Device<MockModel>) -> Kicks {
            let [q0, q1] = &mut self.queues;
            dev.process_queues(self.mem, &mut [q0, q1])
        }

        fn used(&self, events: bool) -> u16 {
            let q = if events { &self.events } else { &self.reqs };
            q.used().idx().load()
        }

        fn status(&self, n: u64) -> u8 {
            self.mem.read_obj(GuestAddress(STATUS + n)).unwrap()
        }
    }

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x4_0000)]).unwrap()
    }

    fn device(model: MockModel, faults: &[&str]) -> Arc<Device<MockModel>> {
        let faults = faults.iter().map(|f| f.parse().unwrap()).collect();
        Device::with_model(model, faults)
    }

    #[test]
    fn core_malformed_chain_is_returned_with_error_status() {
        let mem = memory();
        let dev = device(MockModel::default(), &[]);
        let mut rings = Rings::new(&mem, &[&[0, 0], &[0]], false);
        let kicks = rings.process(&dev);
        assert!(kicks.queue(0) && !kicks.queue(1));
        assert_eq!(rings.used(false), 2, "both chains are back");
        assert_eq!(
            (rings.status(0), rings.status(1)),
            (MockModel::STATUS_ERR, 0)
        );
        let c = dev.counters();
        assert_eq!((c.malformed, c.errors, c.requests["malformed"]), (1, 1, 1));
    }

    #[test]
    fn core_hold_keeps_the_chain_until_release() {
        let mem = memory();
        let dev = device(MockModel::default(), &["hold:nth=1"]);
        let mut rings = Rings::new(&mem, &[&[0], &[0]], false);
        rings.process(&dev);
        assert_eq!((rings.used(false), dev.counters().held), (1, 1));
        assert_eq!(dev.control(Request::ReleaseHeld).released, Some(1));
        rings.process(&dev);
        assert_eq!((rings.used(false), dev.counters().held), (2, 0));
        assert_eq!(rings.status(0), MockModel::STATUS_ERR);
    }

    #[test]
    fn core_injected_error_and_model_error_are_counted() {
        let mem = memory();
        let dev = device(MockModel::default(), &["err:nth=1"]);
        let mut rings = Rings::new(&mem, &[&[0], &[1], &[0]], false);
        rings.process(&dev);
        let statuses = [rings.status(0), rings.status(1), rings.status(2)];
        assert_eq!(statuses, [MockModel::STATUS_ERR, MockModel::STATUS_ERR, 0]);
        let c = dev.counters();
        assert_eq!(
            (c.errors, c.requests["mock"], c.faults_fired["err"]),
            (2, 3, 1)
        );
    }

    #[test]
    fn core_fails_regardless_is_neither_held_nor_aborted() {
        let mem = memory();
        let model = MockModel {
            sticky: true,
            ..MockModel::default()
        };
        // The second request would be held; it fails after the first.
        let dev = device(model, &["hold:nth=2"]);
        let mut rings = Rings::new(&mem, &[&[1], &[0]], false);
        rings.process(&dev);
        assert_eq!((rings.used(false), dev.counters().held), (2, 0));
        assert_eq!(rings.status(1), MockModel::STATUS_ERR);
    }

    #[test]
    fn core_event_made_ready_by_a_request_goes_back_on_its_queue() {
        let mem = memory();
        let dev = device(MockModel::default(), &[]);
        let mut rings = Rings::new(&mem, &[&[2]], true);
        let kicks = rings.process(&dev);
        assert!(kicks.queue(0) && kicks.queue(1));
        assert_eq!((rings.used(false), rings.used(true)), (1, 1));
        assert_eq!(rings.status(15), 7);
        assert_eq!(dev.counters().irqs, 1);
    }

    #[test]
    fn core_control_answers_common_requests_and_refuses_others() {
        let dev = device(MockModel::default(), &[]);
        assert_eq!(dev.control(Request::Ping).device.as_deref(), Some("mock"));
        let r = dev.control(Request::SetFaults {
            faults: vec!["delay:ms=soon".into()],
        });
        assert!(!r.ok);
        let err = r.error.unwrap();
        assert!(
            err.contains("bad value \"soon\" for ms: invalid digit"),
            "{err}"
        );
        let r = dev.control(Request::ReadPins { addr: 0x20 });
        assert_eq!(r.error.as_deref(), Some("read_pins is not a mock request"));
    }
}
