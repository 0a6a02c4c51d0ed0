//! The contract between the virtio-i2c transport and the emulated chips.
//!
//! A chip model is pure code: it sees I2C messages addressed to it and knows
//! nothing of virtio, queues or guest memory. The vhost layer
//! (`vhu_i2c`) turns each virtio-i2c request into one call here.

use std::fmt;

/// Why a chip refused a message. On the wire every refusal becomes
/// `VIRTIO_I2C_MSG_ERR`; the variant is kept for counters and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum I2cError {
    /// No chip answers at this address (the master sees a NACK on the address byte).
    #[error("no device at address {0:#04x}")]
    NoDevice(u16),
    /// The chip NACKed a data byte (e.g. a register that does not exist).
    #[error("device nacked: {0}")]
    Nack(&'static str),
}

/// Commands that reach a chip from the control socket (the "world side" of
/// the chip: what a test bench would do with probes and a programmer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChipCommand {
    /// Return the whole memory (EEPROMs).
    Dump,
    /// Replace memory from offset 0 (EEPROMs); shorter data leaves the rest.
    Load(Vec<u8>),
    /// Drive input pins: for each bit set in `mask`, the pin level is the
    /// matching bit of `levels` (GPIO expanders).
    DrivePins { mask: u32, levels: u32 },
    /// Report pin levels, directions and output latches (GPIO expanders).
    ReadPins,
}

/// A chip's answer to a [`ChipCommand`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChipReply {
    /// Done, nothing to report.
    Done,
    /// Memory contents (answer to [`ChipCommand::Dump`]).
    Memory(Vec<u8>),
    /// Pin state (answer to [`ChipCommand::ReadPins`]); bit n = pin n.
    Pins {
        /// Level seen on each pin (driven by the outside for inputs, by the chip for outputs).
        levels: u32,
        /// Bit set = pin configured as input.
        inputs: u32,
        /// Output latch register contents.
        outputs: u32,
    },
    /// This chip does not support the command.
    Unsupported,
}

/// One emulated device on the virtual I2C bus.
///
/// Message semantics follow the bus, not virtio: a transfer is a sequence of
/// messages separated by repeated STARTs and closed by a STOP. The transport
/// calls [`I2cClient::stop`] after the last message of a transfer (a
/// virtio-i2c request whose flags lack `VIRTIO_I2C_FLAGS_FAIL_NEXT`), and
/// also after a failed message.
pub trait I2cClient: Send + fmt::Debug {
    /// Short model name for logs and counters, e.g. `24c02`, `pca9555`.
    fn model(&self) -> &str;
    /// A write message; `data` may be empty (SMBus quick / zero-length).
    fn write(&mut self, data: &[u8]) -> Result<(), I2cError>;
    /// A read message: fill all of `buf`. `buf` may be empty.
    fn read(&mut self, buf: &mut [u8]) -> Result<(), I2cError>;
    /// End of a transfer (STOP condition).
    fn stop(&mut self) {}
    /// Bring the bus-facing state back to power-on (pointer registers,
    /// pending transfer) when a new front end connects. Persistent contents
    /// (EEPROM bytes, input pin levels driven from outside) survive.
    fn reset_bus_state(&mut self) {}
    /// Handle a command from the control socket.
    fn command(&mut self, cmd: ChipCommand) -> ChipReply {
        let _ = cmd;
        ChipReply::Unsupported
    }
    /// Like [`I2cClient::command`], but a command the chip understands and
    /// cannot carry out (a load longer than the memory, a pin the chip does
    /// not have) is an error instead of a silent partial effect. The default
    /// never fails.
    fn try_command(&mut self, cmd: ChipCommand) -> Result<ChipReply, I2cError> {
        Ok(self.command(cmd))
    }
    /// How many consecutive 7-bit addresses the chip answers, from its base
    /// address up: 1 for most chips; 2, 4 or 8 for a 24c04, 24c08 or 24c16,
    /// whose low address bits select a 256-byte block (Linux's at24 driver
    /// claims the extra addresses with dummy clients).
    fn address_span(&self) -> u16 {
        1
    }
    /// A write message sent to `base + offset`, `offset < address_span()`.
    /// The default ignores `offset`.
    fn write_at(&mut self, offset: u16, data: &[u8]) -> Result<(), I2cError> {
        let _ = offset;
        self.write(data)
    }
    /// A read message sent to `base + offset`, `offset < address_span()`.
    /// The default ignores `offset`.
    fn read_at(&mut self, offset: u16, buf: &mut [u8]) -> Result<(), I2cError> {
        let _ = offset;
        self.read(buf)
    }
}
