//! PCA953x-family I2C GPIO expanders, as the guest's `pca953x` driver sees
//! them.
//!
//! Two register maps, from the NXP/TI datasheets:
//! - 8 lines (PCA9534, PCA9554, PCA9554A, TCA6408): command 0 input port,
//!   1 output port, 2 polarity inversion, 3 configuration;
//! - 16 lines (PCA9535, PCA9539, PCA9555, TCA6416): commands 0..=7 are the
//!   same four registers, each as a pair (port 0, port 1).
//!
//! The first byte of a write message is the command byte: it selects the
//! register and stays selected until the next command byte. Further bytes
//! of the write go to that register; on the 16-line parts they alternate
//! between the two registers of the pair (after port 1 comes port 0). A read
//! message starts at the selected register and alternates the same way. A
//! command byte naming no register is NACKed. Writes to the input port are
//! acknowledged and ignored.
//!
//! Power-on state: outputs 1, no inversion, every pin an input, command 0.
//! The input port shows the pin levels XOR the polarity register: an output
//! pin's level is its latch, an input pin's level is what the outside drives
//! through [`ChipCommand::DrivePins`]. Undriven inputs read 1 (the parts
//! have, or their boards add, pull-ups). The interrupt output is not wired.
//!
//! [`I2cClient::reset_bus_state`] resets only the command byte: like a real
//! chip that stays powered while the adapter goes away, registers and the
//! outside pin levels survive a replug.

use std::fmt;

use super::client::{ChipCommand, ChipReply, I2cClient, I2cError};
use super::spec::{ChipBuildError, ChipModel, Family, Naming};

/// One member of the PCA953x family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pca953xModel {
    /// NXP PCA9534: 8 lines.
    Pca9534,
    /// NXP PCA9535: 16 lines.
    Pca9535,
    /// NXP PCA9539: 16 lines.
    Pca9539,
    /// NXP PCA9554: 8 lines, internal pull-ups.
    Pca9554,
    /// NXP PCA9554A: a PCA9554 at other addresses.
    Pca9554a,
    /// NXP PCA9555: 16 lines, internal pull-ups.
    Pca9555,
    /// TI TCA6408: 8 lines.
    Tca6408,
    /// TI TCA6416: 16 lines.
    Tca6416,
}

impl Pca953xModel {
    /// Every model.
    pub const ALL: [Self; 8] = [
        Self::Pca9534,
        Self::Pca9535,
        Self::Pca9539,
        Self::Pca9554,
        Self::Pca9554a,
        Self::Pca9555,
        Self::Tca6408,
        Self::Tca6416,
    ];

    /// The name Linux's pca953x driver uses (`pca9555`), also the spec syntax.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Pca9534 => "pca9534",
            Self::Pca9535 => "pca9535",
            Self::Pca9539 => "pca9539",
            Self::Pca9554 => "pca9554",
            Self::Pca9554a => "pca9554a",
            Self::Pca9555 => "pca9555",
            Self::Tca6408 => "tca6408",
            Self::Tca6416 => "tca6416",
        }
    }

    /// Number of GPIO lines (8 or 16).
    pub const fn ngpio(self) -> u32 {
        match self {
            Self::Pca9534 | Self::Pca9554 | Self::Pca9554a | Self::Tca6408 => 8,
            Self::Pca9535 | Self::Pca9539 | Self::Pca9555 | Self::Tca6416 => 16,
        }
    }

    /// Number of 8-line ports (1 or 2).
    pub const fn ports(self) -> u8 {
        (self.ngpio() / 8) as u8
    }

    /// Number of registers (valid command bytes are `0..registers()`).
    pub const fn registers(self) -> u8 {
        4 * self.ports()
    }

    /// Bit mask of the lines the chip has.
    pub const fn pin_mask(self) -> u32 {
        (1 << self.ngpio()) - 1
    }
}

impl fmt::Display for Pca953xModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl ChipModel for Pca953xModel {
    const MODELS: &'static [Self] = &Self::ALL;

    fn name(self) -> &'static str {
        Pca953xModel::name(self)
    }
}

/// The PCA953x family in the chip registry: `MODEL:ADDR`.
pub static FAMILY: Family<Pca953xModel> = Family {
    name: "pca953x",
    naming: Naming::Model,
    backing_file: false,
    build: build_chip,
};

fn build_chip(
    model: Pca953xModel,
    _file: Option<&std::path::Path>,
) -> Result<Box<dyn I2cClient>, ChipBuildError> {
    Ok(Box::new(Pca953x::new(model)))
}

/// What a register holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    Input,
    Output,
    Polarity,
    Config,
}

/// A PCA953x GPIO expander on the bus. Bit n of every 16-bit value is pin n
/// (port 0 = pins 0..8, port 1 = pins 8..16).
#[derive(Debug, Clone)]
pub struct Pca953x {
    model: Pca953xModel,
    output: u16,
    polarity: u16,
    /// Bit set = input.
    config: u16,
    /// Levels driven from outside on each pin.
    external: u16,
    /// The last command byte (selected register).
    command: u8,
}

impl Pca953x {
    /// A chip in its power-on state.
    pub fn new(model: Pca953xModel) -> Self {
        let mask = model.pin_mask() as u16;
        Self {
            model,
            output: mask,
            polarity: 0,
            config: mask,
            external: mask,
            command: 0,
        }
    }

    /// The model.
    pub fn chip_model(&self) -> Pca953xModel {
        self.model
    }

    /// The selected register (last command byte).
    pub fn selected_register(&self) -> u8 {
        self.command
    }

    /// Level on each pin: the output latch for outputs, the outside level
    /// for inputs.
    pub fn levels(&self) -> u16 {
        (self.config & self.external) | (!self.config & self.output & self.mask())
    }

    /// Drives the input pins in `mask` to `levels` from outside. A pin
    /// currently configured as output keeps showing its latch until it
    /// becomes an input. Pins the chip lacks are refused.
    pub fn drive_pins(&mut self, mask: u32, levels: u32) -> Result<(), I2cError> {
        if mask & !self.model.pin_mask() != 0 {
            return Err(I2cError::Nack("no such pin on this expander"));
        }
        let (mask, levels) = (mask as u16, levels as u16);
        self.external = (self.external & !mask) | (levels & mask);
        Ok(())
    }

    fn mask(&self) -> u16 {
        self.model.pin_mask() as u16
    }

    fn decode(&self, register: u8) -> (Function, u32) {
        let ports = self.model.ports();
        let function = match register / ports {
            0 => Function::Input,
            1 => Function::Output,
            2 => Function::Polarity,
            _ => Function::Config,
        };
        (function, u32::from(register % ports) * 8)
    }

    fn read_register(&self, register: u8) -> u8 {
        let (function, shift) = self.decode(register);
        let value = match function {
            Function::Input => self.levels() ^ self.polarity,
            Function::Output => self.output,
            Function::Polarity => self.polarity,
            Function::Config => self.config,
        };
        (value >> shift) as u8
    }

    fn write_register(&mut self, register: u8, byte: u8) {
        let (function, shift) = self.decode(register);
        let field = match function {
            // Read-only: the chip ACKs and ignores the byte.
            Function::Input => return,
            Function::Output => &mut self.output,
            Function::Polarity => &mut self.polarity,
            Function::Config => &mut self.config,
        };
        *field = (*field & !(0xff << shift)) | (u16::from(byte) << shift);
    }

    /// The register after `register` in a sequential access: the other one
    /// of its pair on 16-line parts, the same one on 8-line parts.
    fn next(&self, register: u8) -> u8 {
        if self.model.ports() == 2 {
            register ^ 1
        } else {
            register
        }
    }
}

impl I2cClient for Pca953x {
    fn model(&self) -> &str {
        self.model.name()
    }

    fn write(&mut self, data: &[u8]) -> Result<(), I2cError> {
        let Some((&command, payload)) = data.split_first() else {
            // Zero-length write: the address is ACKed, nothing changes.
            return Ok(());
        };
        if command >= self.model.registers() {
            return Err(I2cError::Nack("no such register on this expander"));
        }
        self.command = command;
        let mut register = command;
        for &byte in payload {
            self.write_register(register, byte);
            register = self.next(register);
        }
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<(), I2cError> {
        let mut register = self.command;
        for byte in buf {
            *byte = self.read_register(register);
            register = self.next(register);
        }
        Ok(())
    }

    fn reset_bus_state(&mut self) {
        self.command = 0;
    }

    fn command(&mut self, cmd: ChipCommand) -> ChipReply {
        if let ChipCommand::DrivePins { mask, levels } = cmd {
            // The infallible form drops pins the chip lacks.
            let mask = mask & self.model.pin_mask();
            let _ = self.drive_pins(mask, levels);
            return ChipReply::Done;
        }
        self.try_command(cmd).unwrap_or(ChipReply::Unsupported)
    }

    fn try_command(&mut self, cmd: ChipCommand) -> Result<ChipReply, I2cError> {
        match cmd {
            ChipCommand::DrivePins { mask, levels } => {
                self.drive_pins(mask, levels).map(|()| ChipReply::Done)
            }
            ChipCommand::ReadPins => Ok(ChipReply::Pins {
                levels: u32::from(self.levels()),
                inputs: u32::from(self.config),
                outputs: u32::from(self.output),
            }),
            ChipCommand::Dump | ChipCommand::Load(_) => Ok(ChipReply::Unsupported),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_reg(chip: &mut Pca953x, register: u8, len: usize) -> Vec<u8> {
        chip.write(&[register]).unwrap();
        let mut buf = vec![0; len];
        chip.read(&mut buf).unwrap();
        buf
    }

    #[test]
    fn pca953x_models_have_datasheet_widths() {
        for (name, ngpio, regs) in [
            ("pca9534", 8, 4),
            ("pca9554", 8, 4),
            ("pca9554a", 8, 4),
            ("tca6408", 8, 4),
            ("pca9535", 16, 8),
            ("pca9539", 16, 8),
            ("pca9555", 16, 8),
            ("tca6416", 16, 8),
        ] {
            let m = Pca953xModel::from_name(name).unwrap();
            assert_eq!((m.name(), m.ngpio(), m.registers()), (name, ngpio, regs));
        }
        assert_eq!(
            Pca953xModel::from_name("PCA9555"),
            Some(Pca953xModel::Pca9555)
        );
        assert_eq!(Pca953xModel::from_name("pca9556"), None);
    }

    #[test]
    fn pca9555_power_on_registers_match_datasheet() {
        let mut chip = Pca953x::new(Pca953xModel::Pca9555);
        // input (pulled up, all inputs), output 0xff, polarity 0, config 0xff
        assert_eq!(
            read_reg(&mut chip, 0, 1)
                .into_iter()
                .chain(read_reg(&mut chip, 1, 1))
                .chain(read_reg(&mut chip, 2, 1))
                .chain(read_reg(&mut chip, 3, 1))
                .chain(read_reg(&mut chip, 4, 1))
                .chain(read_reg(&mut chip, 5, 1))
                .chain(read_reg(&mut chip, 6, 1))
                .chain(read_reg(&mut chip, 7, 1))
                .collect::<Vec<_>>(),
            vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0xff, 0xff]
        );
    }

    #[test]
    fn pca9554_power_on_registers_match_datasheet() {
        let mut chip = Pca953x::new(Pca953xModel::Pca9554);
        let regs: Vec<u8> = (0..4).map(|r| read_reg(&mut chip, r, 1)[0]).collect();
        assert_eq!(regs, vec![0xff, 0xff, 0, 0xff]);
    }

    #[test]
    fn pca9555_sequential_write_toggles_within_pair() {
        let mut chip = Pca953x::new(Pca953xModel::Pca9555);
        // Command 3 (output port 1), then 3 bytes: port 1, port 0, port 1.
        chip.write(&[3, 0x11, 0x22, 0x33]).unwrap();
        assert_eq!(read_reg(&mut chip, 2, 2), vec![0x22, 0x33]);
        assert_eq!(
            chip.command(ChipCommand::ReadPins),
            ChipReply::Pins {
                levels: 0xffff,
                inputs: 0xffff,
                outputs: 0x3322,
            }
        );
    }

    #[test]
    fn pca9555_sequential_read_toggles_within_pair() {
        let mut chip = Pca953x::new(Pca953xModel::Pca9555);
        chip.write(&[6, 0x0f, 0xf0]).unwrap();
        // Starting at config port 1: 7, 6, 7, 6.
        assert_eq!(read_reg(&mut chip, 7, 4), vec![0xf0, 0x0f, 0xf0, 0x0f]);
    }

    #[test]
    fn pca953x_command_byte_stays_selected_for_later_reads() {
        let mut chip = Pca953x::new(Pca953xModel::Pca9555);
        chip.write(&[4, 0xaa]).unwrap();
        let mut buf = [0; 1];
        chip.read(&mut buf).unwrap();
        assert_eq!(buf, [0xaa]);
        // A new read message starts again at the selected register.
        chip.read(&mut buf).unwrap();
        assert_eq!(buf, [0xaa]);
        assert_eq!(chip.selected_register(), 4);
    }

    #[test]
    fn pca9554_sequential_access_stays_on_register() {
        let mut chip = Pca953x::new(Pca953xModel::Pca9554);
        chip.write(&[1, 0x01, 0x02]).unwrap();
        assert_eq!(read_reg(&mut chip, 1, 3), vec![0x02, 0x02, 0x02]);
    }

    #[test]
    fn pca953x_invalid_register_is_nacked_and_pointer_kept() {
        let mut chip = Pca953x::new(Pca953xModel::Pca9555);
        chip.write(&[2]).unwrap();
        assert!(matches!(chip.write(&[8, 0]), Err(I2cError::Nack(_))));
        assert_eq!(chip.selected_register(), 2);
        let mut small = Pca953x::new(Pca953xModel::Tca6408);
        assert!(matches!(small.write(&[4]), Err(I2cError::Nack(_))));
        assert!(small.write(&[3]).is_ok());
    }

    #[test]
    fn pca953x_input_port_is_levels_xor_polarity() {
        let mut chip = Pca953x::new(Pca953xModel::Pca9555);
        chip.command(ChipCommand::DrivePins {
            mask: 0xffff,
            levels: 0x00f5,
        });
        assert_eq!(read_reg(&mut chip, 0, 2), vec![0xf5, 0x00]);
        // Invert pins 0..4 and 8.
        chip.write(&[4, 0x0f, 0x01]).unwrap();
        assert_eq!(read_reg(&mut chip, 0, 2), vec![0xfa, 0x01]);
        // ReadPins reports the raw levels, not the inverted ones.
        let ChipReply::Pins { levels, .. } = chip.command(ChipCommand::ReadPins) else {
            panic!("pins expected");
        };
        assert_eq!(levels, 0x00f5);
    }

    #[test]
    fn pca953x_output_pins_read_back_latch() {
        let mut chip = Pca953x::new(Pca953xModel::Pca9554);
        chip.command(ChipCommand::DrivePins {
            mask: 0xff,
            levels: 0x00,
        });
        // Pins 4..8 outputs, latch 0xa0 on them.
        chip.write(&[1, 0xa5]).unwrap();
        chip.write(&[3, 0x0f]).unwrap();
        assert_eq!(read_reg(&mut chip, 0, 1), vec![0xa0]);
        // Polarity inversion applies to output pins too.
        chip.write(&[2, 0xff]).unwrap();
        assert_eq!(read_reg(&mut chip, 0, 1), vec![0x5f]);
        // Back to inputs: the outside levels show again.
        chip.write(&[2, 0x00]).unwrap();
        chip.write(&[3, 0xff]).unwrap();
        assert_eq!(read_reg(&mut chip, 0, 1), vec![0x00]);
    }

    #[test]
    fn pca953x_input_port_write_is_ignored() {
        let mut chip = Pca953x::new(Pca953xModel::Pca9555);
        chip.write(&[0, 0x00, 0x00]).unwrap();
        assert_eq!(read_reg(&mut chip, 0, 2), vec![0xff, 0xff]);
    }

    #[test]
    fn pca953x_drive_pins_beyond_width_is_refused() {
        let mut chip = Pca953x::new(Pca953xModel::Pca9554);
        assert!(
            chip.try_command(ChipCommand::DrivePins {
                mask: 0x100,
                levels: 0
            })
            .is_err()
        );
        assert_eq!(
            chip.try_command(ChipCommand::DrivePins {
                mask: 0x1,
                levels: 0
            }),
            Ok(ChipReply::Done)
        );
        assert_eq!(read_reg(&mut chip, 0, 1), vec![0xfe]);
        assert_eq!(chip.command(ChipCommand::Dump), ChipReply::Unsupported);
    }

    #[test]
    fn pca953x_reset_bus_state_keeps_registers_and_resets_pointer() {
        let mut chip = Pca953x::new(Pca953xModel::Pca9535);
        chip.command(ChipCommand::DrivePins {
            mask: 0x1,
            levels: 0,
        });
        chip.write(&[6, 0x00]).unwrap();
        chip.reset_bus_state();
        assert_eq!(chip.selected_register(), 0);
        assert_eq!(read_reg(&mut chip, 6, 2), vec![0x00, 0xff]);
        let ChipReply::Pins { levels, inputs, .. } = chip.command(ChipCommand::ReadPins) else {
            panic!("pins expected");
        };
        // Pin 0 is an output now (latch 1); the outside level stays recorded.
        assert_eq!((levels, inputs), (0xffff, 0xff00));
        chip.write(&[6, 0xff]).unwrap();
        assert_eq!(read_reg(&mut chip, 0, 1), vec![0xfe]);
    }

    #[test]
    fn pca953x_zero_length_write_keeps_pointer() {
        let mut chip = Pca953x::new(Pca953xModel::Pca9555);
        chip.write(&[5]).unwrap();
        chip.write(&[]).unwrap();
        assert_eq!(chip.selected_register(), 5);
    }
}
