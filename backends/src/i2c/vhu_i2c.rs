//! vhost-user transport of the I2C adapter: runs the typed messages of
//! [`request`](super::request) on the [`Bus`], applies the fault plan and
//! the `FAIL_NEXT` group rule, and implements `VhostUserBackend` for one
//! front-end connection.
//!
//! [`I2cDevice`] (the bus with its chips, counters, fault plan) lives as
//! long as the process, so EEPROM contents survive a replug; [`I2cConn`] is
//! new for every connection and resets the chips' bus-facing state.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;

use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_INDIRECT_DESC;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddressSpace, GuestMemory, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{EventConsumer, EventNotifier};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::bus::Bus;
use super::client::{ChipCommand, ChipReply, I2cError};
use super::request::I2cRequest;
use super::virtio_i2c::*;
use crate::control::{ControlTarget, Pins, Request, Response, from_hex, to_hex};
use crate::counters::Counters;
use crate::fault::{FaultPlan, FaultSpec, Outcome, RequestInfo, parse_specs};
use crate::virtq::{Chain, complete, pop_all};

/// Queue size offered to the front end.
pub const QUEUE_SIZE: usize = 1024;
/// Number of virtqueues (requestq).
pub const NUM_QUEUES: usize = 1;
/// Epoll id of the wake eventfd (after the queue and the exit event).
pub const WAKE_EVENT: u16 = NUM_QUEUES as u16 + 1;

/// Transfer-group state carried between requests.
#[derive(Debug, Default)]
struct Group {
    /// A message of this group failed with `FAIL_NEXT` set.
    failed: bool,
    /// Addresses that saw a message in this transfer (for STOP).
    touched: Vec<u16>,
}

#[derive(Debug)]
struct I2cState {
    bus: Bus,
    plan: FaultPlan,
    specs: Vec<FaultSpec>,
    counters: Counters,
    held: Vec<Chain>,
    release_held: bool,
    group: Group,
}

impl I2cState {
    fn end_transfer(&mut self) {
        for addr in std::mem::take(&mut self.group.touched) {
            self.bus.stop(addr);
        }
        self.group.failed = false;
    }
}

/// The adapter with its chips, shared by every connection of the process.
#[derive(Debug)]
pub struct I2cDevice {
    state: Mutex<I2cState>,
    wake: Mutex<Option<EventFd>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Keep serving after a panic elsewhere: the state is still consistent
    // enough to answer with errors.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl I2cDevice {
    /// An adapter whose bus holds `bus`.
    pub fn with_bus(bus: Bus, faults: Vec<FaultSpec>) -> Arc<Self> {
        Arc::new(I2cDevice {
            state: Mutex::new(I2cState {
                bus,
                plan: FaultPlan::new(&faults),
                specs: faults,
                counters: Counters::default(),
                held: Vec::new(),
                release_held: false,
                group: Group::default(),
            }),
            wake: Mutex::new(None),
        })
    }

    fn wake(&self) {
        if let Some(fd) = lock(&self.wake).as_ref() {
            let _ = fd.write(1);
        }
    }

    fn begin_connection(&self, wake: EventFd) {
        let mut st = lock(&self.state);
        st.bus.reset_bus_state();
        st.group = Group::default();
        st.held.clear();
        st.release_held = false;
        st.counters.held = 0;
        *lock(&self.wake) = Some(wake);
    }

    /// Ends a connection: held chains die with their ring.
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
        st.end_transfer();
        *lock(&self.wake) = None;
    }

    /// Handles every available chain, then releases held chains if asked.
    /// Returns whether the used ring changed.
    pub fn process<M: GuestMemory>(&self, mem: &M, queue: &mut Queue) -> bool {
        let mut used = false;
        if queue.ready() {
            for chain in pop_all(queue, mem) {
                used |= self.process_request(mem, chain, queue);
            }
        }
        used | self.flush(mem, queue)
    }

    fn process_request<M: GuestMemory>(&self, mem: &M, chain: Chain, queue: &mut Queue) -> bool {
        let mut st = lock(&self.state);
        let req = match I2cRequest::parse(&chain, mem) {
            Ok(req) => req,
            Err(e) => {
                tracing::warn!("malformed request chain {}: {e}", chain.head);
                st.counters.request("malformed");
                st.counters.malformed += 1;
                st.counters.errors += 1;
                // Nothing is known about the group: end the transfer.
                st.end_transfer();
                drop(st);
                let len = chain.write_status(mem, VIRTIO_I2C_MSG_ERR);
                return complete(queue, mem, chain.head, len);
            }
        };
        st.counters.request(req.op.name());
        let verdict = st.plan.on_request(RequestInfo {
            addr: Some(req.addr),
            line: None,
        });
        st.counters.fired(&verdict.fired);
        if !verdict.delay.is_zero() {
            drop(st);
            thread::sleep(verdict.delay);
            st = lock(&self.state);
        }
        let mut written = 0u32;
        let result: Result<(), I2cError> = if st.group.failed {
            Err(I2cError::Nack("earlier message of the group failed"))
        } else {
            match verdict.outcome {
                Outcome::Abort => {
                    tracing::error!("fault plan: aborting at a message to {:#04x}", req.addr);
                    std::process::abort();
                }
                Outcome::Hold => {
                    tracing::info!("fault plan: holding a message to {:#04x}", req.addr);
                    st.held.push(chain);
                    st.counters.held += 1;
                    return false;
                }
                Outcome::Err => Err(I2cError::Nack("fault plan")),
                Outcome::Execute => {
                    if !st.group.touched.contains(&req.addr) {
                        st.group.touched.push(req.addr);
                    }
                    req.execute(&mut st.bus, mem).map(|n| written = n)
                }
            }
        };
        let status = match &result {
            Ok(()) => VIRTIO_I2C_MSG_OK,
            Err(e) => {
                tracing::debug!("message to {:#04x} failed: {e}", req.addr);
                st.counters.errors += 1;
                VIRTIO_I2C_MSG_ERR
            }
        };
        if result.is_err() && req.fail_next {
            st.group.failed = true;
        }
        if !req.fail_next || result.is_err() {
            // A failed message ends the bus transfer (the chip sees a STOP);
            // the group, if any, keeps failing until its last message.
            let failed = st.group.failed && req.fail_next;
            st.end_transfer();
            st.group.failed = failed;
        }
        drop(st);
        if mem.write_obj(status, req.status.addr).is_ok() {
            written += 1;
        }
        tracing::debug!(
            head = chain.head,
            addr = req.addr,
            op = req.op.name(),
            fail_next = req.fail_next,
            status,
            written,
            layout = %chain.layout(),
            "i2c request"
        );
        complete(queue, mem, chain.head, written)
    }

    /// Releases held chains if asked to (control `release_held`).
    pub fn flush<M: GuestMemory>(&self, mem: &M, queue: &mut Queue) -> bool {
        let held = {
            let mut st = lock(&self.state);
            if !st.release_held {
                return false;
            }
            st.release_held = false;
            st.counters.held = 0;
            std::mem::take(&mut st.held)
        };
        let mut used = false;
        for chain in held {
            let len = chain.write_status(mem, VIRTIO_I2C_MSG_ERR);
            used |= complete(queue, mem, chain.head, len);
        }
        used
    }

    fn command(&self, addr: u16, cmd: ChipCommand) -> Result<ChipReply, String> {
        let mut st = lock(&self.state);
        let model = st.bus.model_at(addr).map(str::to_owned);
        match st.bus.command(addr, cmd) {
            Ok(ChipReply::Unsupported) => Err(format!(
                "chip at {addr:#04x} ({}) does not support this command",
                model.unwrap_or_default()
            )),
            Ok(reply) => Ok(reply),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl ControlTarget for Arc<I2cDevice> {
    fn control(&self, req: Request) -> Response {
        let result = match req {
            Request::Ping => Ok(Response {
                device: Some("i2c".into()),
                ..Response::ok()
            }),
            Request::Counters => {
                let st = lock(&self.state);
                Ok(Response {
                    counters: Some(st.counters.clone()),
                    faults: Some(st.specs.iter().map(ToString::to_string).collect()),
                    ..Response::ok()
                })
            }
            Request::SetFaults { faults } => parse_specs(&faults)
                .map(|specs| {
                    let mut st = lock(&self.state);
                    st.plan = FaultPlan::new(&specs);
                    st.specs = specs;
                    Response {
                        faults: Some(faults),
                        ..Response::ok()
                    }
                })
                .map_err(|e| e.to_string()),
            Request::ClearFaults => {
                let mut st = lock(&self.state);
                st.plan = FaultPlan::default();
                st.specs.clear();
                Ok(Response {
                    faults: Some(Vec::new()),
                    ..Response::ok()
                })
            }
            Request::ReleaseHeld => {
                let n = {
                    let mut st = lock(&self.state);
                    st.release_held = true;
                    st.held.len() as u64
                };
                self.wake();
                Ok(Response {
                    released: Some(n),
                    ..Response::ok()
                })
            }
            Request::DrivePins { addr, mask, levels } => self
                .command(addr, ChipCommand::DrivePins { mask, levels })
                .map(|_| Response::ok()),
            Request::ReadPins { addr } => match self.command(addr, ChipCommand::ReadPins) {
                Ok(ChipReply::Pins {
                    levels,
                    inputs,
                    outputs,
                }) => Ok(Response {
                    pins: Some(Pins {
                        levels,
                        inputs,
                        outputs,
                    }),
                    ..Response::ok()
                }),
                Ok(other) => Err(format!("unexpected chip reply {other:?}")),
                Err(e) => Err(e),
            },
            Request::DumpEeprom { addr } => match self.command(addr, ChipCommand::Dump) {
                Ok(ChipReply::Memory(bytes)) => Ok(Response {
                    hex: Some(to_hex(&bytes)),
                    ..Response::ok()
                }),
                Ok(other) => Err(format!("unexpected chip reply {other:?}")),
                Err(e) => Err(e),
            },
            Request::LoadEeprom { addr, hex } => match from_hex(&hex) {
                Ok(bytes) => self
                    .command(addr, ChipCommand::Load(bytes))
                    .map(|_| Response::ok()),
                Err(e) => Err(format!("hex: {e}")),
            },
            other => Err(format!("{} is not an i2c request", other.name())),
        };
        result.unwrap_or_else(Response::error)
    }
}

/// The `VhostUserBackend` of one front-end connection.
#[derive(Debug)]
pub struct I2cConn {
    device: Arc<I2cDevice>,
    mem: Mutex<Option<GuestMemoryAtomic<GuestMemoryMmap>>>,
    wake: EventFd,
}

impl I2cConn {
    /// Starts a connection on `device` (resetting bus-facing chip state).
    pub fn new(device: Arc<I2cDevice>) -> io::Result<Arc<Self>> {
        let wake = EventFd::new(EFD_NONBLOCK)?;
        device.begin_connection(wake.try_clone()?);
        Ok(Arc::new(I2cConn {
            device,
            mem: Mutex::new(None),
            wake,
        }))
    }
}

/// Features offered: VERSION_1, RING_F_INDIRECT_DESC, ZERO_LENGTH_REQUEST,
/// vhost-user protocol features.
///
/// `INDIRECT_DESC` is not optional in practice: QEMU's vhost-user-i2c
/// device has a fixed queue of 4 descriptors and passes the back end's
/// features through unchanged. Without indirect descriptors one message
/// takes 2 or 3 ring descriptors, so Linux's i2c-virtio cannot queue the
/// second message of a transfer (`virtqueue_add_sgs` fails with `ENOSPC`),
/// sends only the first, and the transfer fails with `EIO`: every
/// write-then-read (SMBus byte data, the at24 probe) is lost. With them
/// each message takes one ring descriptor, so up to 4 messages fit.
pub const I2C_FEATURES: u64 = (1 << VIRTIO_F_VERSION_1)
    | (1 << VIRTIO_RING_F_INDIRECT_DESC)
    | (1 << VIRTIO_I2C_F_ZERO_LENGTH_REQUEST)
    | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();

impl VhostUserBackend for I2cConn {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> usize {
        QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        tracing::debug!("i2c: GET_FEATURES -> {:#x}", I2C_FEATURES);
        I2C_FEATURES
    }

    fn acked_features(&self, features: u64) {
        tracing::debug!("i2c: SET_FEATURES {features:#x}");
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::MQ | VhostUserProtocolFeatures::REPLY_ACK
    }

    fn reset_device(&self) {
        tracing::debug!("i2c: RESET_DEVICE");
        let mut st = lock(&self.device.state);
        st.bus.reset_bus_state();
        st.group = Group::default();
        st.held.clear();
        st.counters.held = 0;
    }

    fn set_event_idx(&self, _enabled: bool) {}

    fn stop_vring(&self, queue_index: u32) -> io::Result<()> {
        // GET_VRING_BASE: the ring stops (driver reset or disconnect). Held
        // chains can never be returned into a later ring; an open transfer
        // ends.
        tracing::debug!("i2c: GET_VRING_BASE {queue_index} (stop)");
        let mut st = lock(&self.device.state);
        st.held.clear();
        st.counters.held = 0;
        st.end_transfer();
        Ok(())
    }

    fn update_memory(&self, mem: GuestMemoryAtomic<GuestMemoryMmap>) -> io::Result<()> {
        crate::daemon::log_mem_table("i2c", &*mem.memory());
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
        let [vring] = vrings else {
            return Err(io::Error::other("i2c needs one vring"));
        };
        let mem = atomic.memory();
        let mut state = vring.get_mut();
        if self.device.process(&*mem, state.get_queue_mut()) {
            state.signal_used_queue()?;
        }
        Ok(())
    }
}

impl crate::daemon::Device for Arc<I2cDevice> {
    type Conn = I2cConn;

    fn kind(&self) -> &'static str {
        "i2c"
    }

    fn connect(&self) -> io::Result<Arc<I2cConn>> {
        I2cConn::new(self.clone())
    }

    fn wake(conn: &I2cConn) -> (&EventFd, u16) {
        (&conn.wake, WAKE_EVENT)
    }

    fn connected(&self) {
        lock(&self.state).counters.connections += 1;
    }

    fn disconnect(&self) {
        self.end_connection();
    }
}
