//! The virtual I2C bus: 7-bit addresses mapped to chip models.
//!
//! The vhost layer turns each virtio-i2c request into one [`Bus`] call
//! ([`Bus::write`] or [`Bus::read`], then [`Bus::stop`] at the end of the
//! transfer) and never sees a chip directly. A chip that answers several
//! addresses (24c04/08/16) is reached through each of them, with the offset
//! from its base address passed to [`I2cClient::write_at`] /
//! [`I2cClient::read_at`]. An address no chip answers is
//! [`I2cError::NoDevice`], which the transport reports as
//! `VIRTIO_I2C_MSG_ERR`.

use std::fmt;

use super::client::{ChipCommand, ChipReply, I2cClient, I2cError};
use super::spec::{BuildError, ChipSpec, FIRST_ADDRESS, LAST_ADDRESS};

/// Number of 7-bit addresses.
const ADDRESSES: usize = 128;

/// Errors putting chips on a bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Two chips claim the same address.
    #[error("address {addr:#04x} is taken twice: by {first} and by {second}")]
    AddressInUse {
        /// The contested address.
        addr: u16,
        /// Model already there.
        first: String,
        /// Model that wanted it too.
        second: String,
    },
    /// A chip's addresses leave the usable range 0x08..=0x77.
    #[error(
        "{model} at {addr:#04x} answers {span} address(es), outside the usable range 0x08..=0x77"
    )]
    AddressOutOfRange {
        /// Base address.
        addr: u16,
        /// Addresses it answers.
        span: u16,
        /// The model.
        model: String,
    },
    /// A chip could not be built from its spec.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// One chip on the bus, for display.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChipInfo {
    /// Base 7-bit address.
    pub addr: u16,
    /// Consecutive addresses it answers from `addr` up.
    pub span: u16,
    /// Model name (`24c02`, `pca9555`).
    pub model: String,
}

impl fmt::Display for ChipInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.span > 1 {
            write!(
                f,
                "{:#04x}-{:#04x} {}",
                self.addr,
                self.addr + self.span - 1,
                self.model
            )
        } else {
            write!(f, "{:#04x} {}", self.addr, self.model)
        }
    }
}

#[derive(Debug)]
struct Attached {
    base: u16,
    chip: Box<dyn I2cClient>,
}

/// The chips on one virtual I2C adapter.
pub struct Bus {
    chips: Vec<Attached>,
    /// Address -> index into `chips`.
    by_addr: [Option<u8>; ADDRESSES],
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus").field("chips", &self.chips).finish()
    }
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    /// A bus with no chips: every address answers [`I2cError::NoDevice`].
    pub fn new() -> Self {
        Self {
            chips: Vec::new(),
            by_addr: [None; ADDRESSES],
        }
    }

    /// Builds every chip and attaches it at its address.
    pub fn from_specs(specs: &[ChipSpec]) -> Result<Self, BusError> {
        let mut bus = Self::new();
        for spec in specs {
            bus.attach(spec.addr(), spec.build()?)?;
        }
        Ok(bus)
    }

    /// Attaches `chip` at `base` (and the `chip.address_span() - 1`
    /// addresses after it).
    pub fn attach(&mut self, base: u16, chip: Box<dyn I2cClient>) -> Result<(), BusError> {
        let span = chip.address_span().max(1);
        let last = u32::from(base) + u32::from(span) - 1;
        if base < FIRST_ADDRESS || last > u32::from(LAST_ADDRESS) {
            return Err(BusError::AddressOutOfRange {
                addr: base,
                span,
                model: chip.model().to_owned(),
            });
        }
        for addr in base..base + span {
            if let Some(other) = self.by_addr[usize::from(addr)] {
                return Err(BusError::AddressInUse {
                    addr,
                    first: self.chips[usize::from(other)].chip.model().to_owned(),
                    second: chip.model().to_owned(),
                });
            }
        }
        // At most 0x70 chips fit in the range, so the index fits in a u8.
        let index = u8::try_from(self.chips.len()).expect("at most 112 single-address chips");
        for addr in base..base + span {
            self.by_addr[usize::from(addr)] = Some(index);
        }
        self.chips.push(Attached { base, chip });
        Ok(())
    }

    fn lookup(&mut self, addr: u16) -> Result<(&mut dyn I2cClient, u16), I2cError> {
        let index = self
            .by_addr
            .get(usize::from(addr))
            .copied()
            .flatten()
            .ok_or(I2cError::NoDevice(addr))?;
        let attached = &mut self.chips[usize::from(index)];
        Ok((attached.chip.as_mut(), addr - attached.base))
    }

    /// Whether a chip answers `addr`.
    pub fn is_present(&self, addr: u16) -> bool {
        self.by_addr
            .get(usize::from(addr))
            .is_some_and(Option::is_some)
    }

    /// Model name of the chip answering `addr`.
    pub fn model_at(&self, addr: u16) -> Option<&str> {
        let index = (*self.by_addr.get(usize::from(addr))?)?;
        Some(self.chips[usize::from(index)].chip.model())
    }

    /// A write message to `addr` (7-bit); `data` may be empty.
    pub fn write(&mut self, addr: u16, data: &[u8]) -> Result<(), I2cError> {
        let (chip, offset) = self.lookup(addr)?;
        chip.write_at(offset, data)
    }

    /// A read message from `addr` (7-bit) filling all of `buf`. On error
    /// `buf` is left as it was.
    pub fn read(&mut self, addr: u16, buf: &mut [u8]) -> Result<(), I2cError> {
        let (chip, offset) = self.lookup(addr)?;
        chip.read_at(offset, buf)
    }

    /// STOP after the last message of a transfer (or a failed one) that
    /// went to `addr`. Nothing happens for an empty address.
    pub fn stop(&mut self, addr: u16) {
        if let Ok((chip, _)) = self.lookup(addr) {
            chip.stop();
        }
    }

    /// A new front end connected: every chip back to its power-on bus
    /// state; memory contents and outside pin levels stay.
    pub fn reset_bus_state(&mut self) {
        for attached in &mut self.chips {
            attached.chip.reset_bus_state();
        }
    }

    /// A control-socket command for the chip answering `addr`. A command
    /// the chip does not implement answers [`ChipReply::Unsupported`]; one
    /// it cannot carry out (a load longer than the memory, a pin it lacks)
    /// is an error.
    pub fn command(&mut self, addr: u16, cmd: ChipCommand) -> Result<ChipReply, I2cError> {
        let (chip, _) = self.lookup(addr)?;
        chip.try_command(cmd)
    }

    /// The chips, in attach order.
    pub fn chips(&self) -> Vec<ChipInfo> {
        self.chips
            .iter()
            .map(|a| ChipInfo {
                addr: a.base,
                span: a.chip.address_span().max(1),
                model: a.chip.model().to_owned(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i2c::at24::{At24, At24Model};
    use crate::i2c::pca953x::{Pca953x, Pca953xModel};

    fn bus(specs: &[&str]) -> Bus {
        let specs: Vec<ChipSpec> = specs.iter().map(|s| s.parse().unwrap()).collect();
        Bus::from_specs(&specs).unwrap()
    }

    #[test]
    fn bus_empty_address_answers_no_device() {
        let mut bus = bus(&["at24:0x50:24c02"]);
        assert_eq!(bus.write(0x51, &[0]), Err(I2cError::NoDevice(0x51)));
        let mut buf = [0xaa; 2];
        assert_eq!(bus.read(0x20, &mut buf), Err(I2cError::NoDevice(0x20)));
        assert_eq!(buf, [0xaa; 2], "a failed read must leave the buffer alone");
        assert_eq!(
            bus.command(0x7f, ChipCommand::Dump),
            Err(I2cError::NoDevice(0x7f))
        );
        assert_eq!(bus.write(0xffff, &[]), Err(I2cError::NoDevice(0xffff)));
        bus.stop(0x33);
        assert!(!bus.is_present(0x51) && bus.is_present(0x50));
    }

    #[test]
    fn bus_routes_messages_to_the_addressed_chip() {
        let mut bus = bus(&["at24:0x50:24c02", "pca9555:0x20"]);
        bus.write(0x50, &[0x10, 1, 2]).unwrap();
        bus.stop(0x50);
        bus.write(0x20, &[2, 0x5a]).unwrap();
        bus.stop(0x20);
        bus.write(0x50, &[0x10]).unwrap();
        let mut buf = [0; 2];
        bus.read(0x50, &mut buf).unwrap();
        bus.stop(0x50);
        assert_eq!(buf, [1, 2]);
        let mut port = [0; 1];
        bus.write(0x20, &[2]).unwrap();
        bus.read(0x20, &mut port).unwrap();
        assert_eq!(port, [0x5a]);
        assert_eq!(bus.model_at(0x20), Some("pca9555"));
        assert_eq!(bus.model_at(0x21), None);
    }

    #[test]
    fn bus_multi_address_eeprom_answers_every_block_address() {
        let mut bus = bus(&["at24:0x50:24c08"]);
        for addr in 0x50..0x54 {
            assert!(bus.is_present(addr));
            bus.write(addr, &[0x00, addr as u8]).unwrap();
        }
        assert!(!bus.is_present(0x54));
        let ChipReply::Memory(mem) = bus.command(0x53, ChipCommand::Dump).unwrap() else {
            panic!("dump must return memory");
        };
        assert_eq!(
            [mem[0], mem[0x100], mem[0x200], mem[0x300]],
            [0x50, 0x51, 0x52, 0x53]
        );
    }

    #[test]
    fn bus_duplicate_or_overlapping_addresses_are_refused() {
        let specs: Vec<ChipSpec> = ["at24:0x50:24c16", "pca9554:0x57"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let err = Bus::from_specs(&specs).unwrap_err();
        assert!(
            matches!(&err, BusError::AddressInUse { addr: 0x57, first, second }
                if first == "24c16" && second == "pca9554"),
            "{err}"
        );
        let specs: Vec<ChipSpec> = ["pca9555:0x20", "pca9535:32"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let err = Bus::from_specs(&specs).unwrap_err().to_string();
        assert!(err.contains("0x20 is taken twice"), "{err}");
    }

    #[test]
    fn bus_attach_outside_usable_range_is_refused() {
        let mut bus = Bus::new();
        let chip = Box::new(At24::new(At24Model::C16));
        assert!(matches!(
            bus.attach(0x74, chip),
            Err(BusError::AddressOutOfRange {
                addr: 0x74,
                span: 8,
                ..
            })
        ));
        let chip = Box::new(Pca953x::new(Pca953xModel::Pca9555));
        assert!(bus.attach(0x03, chip).is_err());
        assert!(bus.chips().is_empty());
    }

    #[test]
    fn bus_reset_bus_state_keeps_eeprom_contents() {
        let mut bus = bus(&["at24:0x50:24c32", "pca9554:0x38"]);
        bus.write(0x50, &[0x01, 0x00, 0xab]).unwrap();
        bus.write(0x38, &[3, 0x00]).unwrap();
        bus.reset_bus_state();
        // Counter back to 0, contents kept.
        let mut buf = [0; 1];
        bus.write(0x50, &[0x01, 0x00]).unwrap();
        bus.read(0x50, &mut buf).unwrap();
        assert_eq!(buf, [0xab]);
        // Expander pointer back to register 0 (input port).
        bus.read(0x38, &mut buf).unwrap();
        assert_eq!(buf, [0xff]);
    }

    #[test]
    fn bus_command_errors_and_unsupported_are_distinct() {
        let mut bus = bus(&["at24:0x50:24c01", "tca6416:0x21"]);
        assert!(matches!(
            bus.command(0x50, ChipCommand::Load(vec![0; 129])),
            Err(I2cError::Nack(_))
        ));
        assert_eq!(
            bus.command(0x50, ChipCommand::ReadPins),
            Ok(ChipReply::Unsupported)
        );
        assert_eq!(
            bus.command(
                0x21,
                ChipCommand::DrivePins {
                    mask: 0x8000,
                    levels: 0
                }
            ),
            Ok(ChipReply::Done)
        );
        assert_eq!(
            bus.command(0x21, ChipCommand::ReadPins),
            Ok(ChipReply::Pins {
                levels: 0x7fff,
                inputs: 0xffff,
                outputs: 0xffff
            })
        );
    }

    #[test]
    fn bus_chips_lists_address_span_and_model() {
        let bus = bus(&["at24:0x50:24c04", "pca9555:0x20"]);
        let chips = bus.chips();
        assert_eq!(
            chips,
            vec![
                ChipInfo {
                    addr: 0x50,
                    span: 2,
                    model: "24c04".into()
                },
                ChipInfo {
                    addr: 0x20,
                    span: 1,
                    model: "pca9555".into()
                },
            ]
        );
        assert_eq!(chips[0].to_string(), "0x50-0x51 24c04");
        assert_eq!(chips[1].to_string(), "0x20 pca9555");
    }
}
