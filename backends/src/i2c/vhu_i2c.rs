//! vhost-user transport of the I2C adapter: [`I2c`], the device core's
//! [`Model`] for virtio-i2c. It runs the typed messages of
//! [`request`](super::request) on the [`Bus`] and applies the `FAIL_NEXT`
//! group rule.
//!
//! [`I2cDevice`] (the bus with its chips, counters, fault plan) lives as
//! long as the process, so EEPROM contents survive a replug; [`I2cConn`] is
//! new for every connection and resets the chips' bus-facing state.

use std::sync::Arc;

use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_INDIRECT_DESC;
use virtio_queue::Queue;
use vm_memory::GuestMemory;

use super::bus::Bus;
use super::client::{ChipCommand, ChipReply, I2cError};
use super::request::{ChainError, I2cRequest};
use super::virtio_i2c::*;
use crate::control::{HexError, Pins, Request, Response, from_hex, to_hex};
use crate::device::{Conn, Device, Model, REQUEST_QUEUE, Reply, StatusAt};
use crate::fault::{FaultSpec, RequestInfo};
use crate::virtq::Chain;

/// Number of virtqueues (requestq).
pub const NUM_QUEUES: usize = 1;

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

/// The adapter with its chips, shared by every connection of the process.
pub type I2cDevice = Device<I2c>;
/// The `VhostUserBackend` of one front-end connection.
pub type I2cConn = Conn<I2c>;

/// Transfer-group state carried between requests.
#[derive(Debug, Default)]
struct Group {
    /// A message of this group failed with `FAIL_NEXT` set.
    failed: bool,
    /// Addresses that saw a message in this transfer (for STOP).
    touched: Vec<u16>,
}

/// The virtio-i2c adapter as the device core sees it: the bus and the
/// transfer in progress.
#[derive(Debug)]
pub struct I2c {
    bus: Bus,
    group: Group,
}

/// Why an I2C control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ChipControlError {
    /// No chip at the address, or the chip refused.
    #[error(transparent)]
    Chip(#[from] I2cError),
    /// The chip has no such command (a dump of a GPIO expander).
    #[error("chip at {addr:#04x} ({model}) does not support this command")]
    Unsupported {
        /// 7-bit address.
        addr: u16,
        /// The chip's model.
        model: String,
    },
    /// The chip answered with something the request does not expect.
    #[error("unexpected chip reply {0:?}")]
    UnexpectedReply(ChipReply),
    /// `load_eeprom` with bad hex.
    #[error("hex")]
    Hex(#[source] HexError),
}

impl I2c {
    /// An adapter with `bus` on it.
    pub fn new(bus: Bus) -> Self {
        I2c {
            bus,
            group: Group::default(),
        }
    }

    /// STOP to every chip of the transfer; the group ends.
    fn end_transfer(&mut self) {
        for addr in std::mem::take(&mut self.group.touched) {
            self.bus.stop(addr);
        }
        self.group.failed = false;
    }

    fn command(&mut self, addr: u16, cmd: ChipCommand) -> Result<ChipReply, ChipControlError> {
        match self.bus.command(addr, cmd)? {
            ChipReply::Unsupported => Err(ChipControlError::Unsupported {
                addr,
                model: self.bus.model_at(addr).unwrap_or_default().to_owned(),
            }),
            reply => Ok(reply),
        }
    }
}

impl Model for I2c {
    const KIND: &'static str = "i2c";
    const NUM_QUEUES: usize = NUM_QUEUES;
    const FEATURES: u64 = I2C_FEATURES;
    const PROTOCOL_FEATURES: VhostUserProtocolFeatures =
        VhostUserProtocolFeatures::MQ.union(VhostUserProtocolFeatures::REPLY_ACK);
    const STATUS_AT: StatusAt = StatusAt::End;
    const STATUS_ERR: u8 = VIRTIO_I2C_MSG_ERR;

    type Request = I2cRequest;
    type ParseError = ChainError;

    fn parse<Mem: GuestMemory>(&self, chain: &Chain, mem: &Mem) -> Result<I2cRequest, ChainError> {
        I2cRequest::parse(chain, mem)
    }

    fn describe(req: &I2cRequest) -> (&'static str, RequestInfo) {
        (req.op.name(), RequestInfo::addr(req.addr))
    }

    fn run<Mem: GuestMemory>(&mut self, req: &I2cRequest, inject_err: bool, mem: &Mem) -> Reply {
        let mut written = 0;
        let result = if self.group.failed {
            Err(I2cError::Nack("earlier message of the group failed"))
        } else if inject_err {
            Err(I2cError::Nack("fault plan"))
        } else {
            if !self.group.touched.contains(&req.addr) {
                self.group.touched.push(req.addr);
            }
            req.execute(&mut self.bus, mem).map(|n| written = n)
        };
        if let Err(e) = &result {
            tracing::debug!("{req} failed: {e}");
            if req.fail_next {
                self.group.failed = true;
            }
        }
        if !req.fail_next || result.is_err() {
            // A failed message ends the bus transfer (the chip sees a STOP);
            // the group, if any, keeps failing until its last message.
            let failed = self.group.failed && req.fail_next;
            self.end_transfer();
            self.group.failed = failed;
        }
        let status = match result {
            Ok(()) => VIRTIO_I2C_MSG_OK,
            Err(_) => VIRTIO_I2C_MSG_ERR,
        };
        Reply {
            ok: status == VIRTIO_I2C_MSG_OK,
            written,
            at: req.status.addr,
            response: vec![status],
        }
    }

    fn fails_regardless(&self, _req: &I2cRequest) -> bool {
        self.group.failed
    }

    fn malformed(&mut self) {
        // Nothing is known about the group: end the transfer.
        self.end_transfer();
    }

    fn reset(&mut self) {
        self.bus.reset_bus_state();
        self.group = Group::default();
    }

    fn disconnected(&mut self) {
        self.end_transfer();
    }

    fn queue_stopped(&mut self, _queue: usize) {
        // An open transfer ends with its ring.
        self.end_transfer();
    }

    type ControlError = ChipControlError;

    fn control(device: &I2cDevice, req: Request) -> Option<Result<Response, ChipControlError>> {
        let mut st = device.state();
        let i2c = &mut st.model;
        Some(match req {
            Request::DrivePins { addr, mask, levels } => i2c
                .command(addr, ChipCommand::DrivePins { mask, levels })
                .map(|_| Response::ok()),
            Request::ReadPins { addr } => match i2c.command(addr, ChipCommand::ReadPins) {
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
                Ok(other) => Err(ChipControlError::UnexpectedReply(other)),
                Err(e) => Err(e),
            },
            Request::DumpEeprom { addr } => match i2c.command(addr, ChipCommand::Dump) {
                Ok(ChipReply::Memory(bytes)) => Ok(Response {
                    hex: Some(to_hex(&bytes)),
                    ..Response::ok()
                }),
                Ok(other) => Err(ChipControlError::UnexpectedReply(other)),
                Err(e) => Err(e),
            },
            Request::LoadEeprom { addr, hex } => from_hex(&hex)
                .map_err(ChipControlError::Hex)
                .and_then(|bytes| i2c.command(addr, ChipCommand::Load(bytes)))
                .map(|_| Response::ok()),
            _ => return None,
        })
    }
}

impl Device<I2c> {
    /// An adapter whose bus holds `bus`, under the fault plan `faults`.
    pub fn with_bus(bus: Bus, faults: Vec<FaultSpec>) -> Arc<Self> {
        Self::with_model(I2c::new(bus), faults)
    }

    /// Handles every available chain, then releases held chains if asked.
    /// Returns whether the used ring changed.
    pub fn process<M: GuestMemory>(&self, mem: &M, queue: &mut Queue) -> bool {
        self.process_queues(mem, &mut [queue]).queue(REQUEST_QUEUE)
    }
}
