//! Fuzzes the PCA953x models with arbitrary message sequences and checks
//! them against a reference register file kept per 8-bit port, written from
//! the datasheets: a command byte past the last register is the only NACK,
//! every read matches the reference, and the input port always equals the
//! pin levels XOR polarity.

#![no_main]

use arbitrary::Arbitrary;
use dangle_backends::i2c::client::{ChipCommand, ChipReply, I2cClient, I2cError};
use dangle_backends::i2c::pca953x::{Pca953x, Pca953xModel};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Op {
    Write(Vec<u8>),
    Read(u8),
    Stop,
    Reset,
    Drive { mask: u32, levels: u32 },
    ReadPins,
}

#[derive(Debug, Arbitrary)]
struct Input {
    model: u8,
    ops: Vec<Op>,
}

/// Registers per port: output, polarity, config; plus outside levels.
#[derive(Debug)]
struct Reference {
    ports: usize,
    output: [u8; 2],
    polarity: [u8; 2],
    config: [u8; 2],
    outside: [u8; 2],
    command: u8,
}

impl Reference {
    fn level(&self, port: usize) -> u8 {
        (self.config[port] & self.outside[port]) | (!self.config[port] & self.output[port])
    }

    fn register(&self, command: u8) -> (usize, usize) {
        let command = usize::from(command);
        (command / self.ports, command % self.ports)
    }

    fn read(&self, command: u8) -> u8 {
        let (function, port) = self.register(command);
        match function {
            0 => self.level(port) ^ self.polarity[port],
            1 => self.output[port],
            2 => self.polarity[port],
            _ => self.config[port],
        }
    }

    fn write(&mut self, command: u8, byte: u8) {
        let (function, port) = self.register(command);
        match function {
            0 => {}
            1 => self.output[port] = byte,
            2 => self.polarity[port] = byte,
            _ => self.config[port] = byte,
        }
    }

    /// Sequential access: the other register of the pair on 16-line parts.
    fn next(&self, command: u8) -> u8 {
        if self.ports == 2 {
            command ^ 1
        } else {
            command
        }
    }

    fn word(bytes: [u8; 2]) -> u32 {
        u32::from(u16::from_le_bytes(bytes))
    }
}

fuzz_target!(|input: Input| {
    let model = Pca953xModel::ALL[usize::from(input.model) % Pca953xModel::ALL.len()];
    let mut chip = Pca953x::new(model);
    let ports = usize::from(model.ports());
    let all = if ports == 2 { [0xff, 0xff] } else { [0xff, 0] };
    let mut reference = Reference {
        ports,
        output: all,
        polarity: [0; 2],
        config: all,
        outside: all,
        command: 0,
    };
    for op in input.ops {
        match op {
            Op::Write(data) => {
                let result = chip.write(&data);
                match data.split_first() {
                    None => assert_eq!(result, Ok(())),
                    Some((&command, _)) if usize::from(command) >= 4 * ports => {
                        assert!(matches!(result, Err(I2cError::Nack(_))));
                    }
                    Some((&command, payload)) => {
                        assert_eq!(result, Ok(()));
                        reference.command = command;
                        let mut register = command;
                        for &byte in payload {
                            reference.write(register, byte);
                            register = reference.next(register);
                        }
                    }
                }
            }
            Op::Read(len) => {
                let mut buf = vec![0; usize::from(len)];
                assert_eq!(chip.read(&mut buf), Ok(()));
                let mut register = reference.command;
                for byte in buf {
                    assert_eq!(byte, reference.read(register), "register {register}");
                    register = reference.next(register);
                }
            }
            Op::Stop => chip.stop(),
            Op::Reset => {
                chip.reset_bus_state();
                reference.command = 0;
            }
            Op::Drive { mask, levels } => {
                let result = chip.try_command(ChipCommand::DrivePins { mask, levels });
                if mask & !model.pin_mask() != 0 {
                    assert!(result.is_err());
                } else {
                    assert_eq!(result, Ok(ChipReply::Done));
                    for port in 0..ports {
                        let m = (mask >> (8 * port)) as u8;
                        let l = (levels >> (8 * port)) as u8;
                        reference.outside[port] = (reference.outside[port] & !m) | (l & m);
                    }
                }
            }
            Op::ReadPins => {
                let levels = [reference.level(0), reference.level(1) & all[1]];
                assert_eq!(
                    chip.command(ChipCommand::ReadPins),
                    ChipReply::Pins {
                        levels: Reference::word(levels),
                        inputs: Reference::word(reference.config),
                        outputs: Reference::word(reference.output),
                    }
                );
            }
        }
        assert_eq!(chip.selected_register(), reference.command);
        assert_eq!(chip.levels() as u32 & !model.pin_mask(), 0);
    }
});
