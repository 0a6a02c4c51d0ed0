//! Fuzzes the I2C bus with arbitrary messages to arbitrary addresses, the
//! way a guest's i2c-dev user could: an address answers iff a chip sits
//! there, the EEPROM reads back a byte just written to it, and nothing
//! panics.

#![no_main]

use arbitrary::Arbitrary;
use dangle_backends::i2c::bus::Bus;
use dangle_backends::i2c::client::{ChipCommand, ChipReply, I2cError};
use dangle_backends::i2c::spec::ChipSpec;
use libfuzzer_sys::fuzz_target;

/// The bus under test: a multi-address EEPROM, a two-byte-address EEPROM,
/// both expander widths.
const SPECS: [&str; 4] = [
    "at24:0x50:24c16",
    "at24:0x60:24c64",
    "pca9555:0x20",
    "pca9554a:0x38",
];

#[derive(Debug, Arbitrary)]
enum Command {
    Dump,
    Load(Vec<u8>),
    Drive { mask: u32, levels: u32 },
    ReadPins,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Write {
        addr: u16,
        data: Vec<u8>,
    },
    Read {
        addr: u16,
        len: u16,
    },
    Stop {
        addr: u16,
    },
    Reset,
    Command {
        addr: u16,
        command: Command,
    },
    /// Write `byte` at `word` of the 24c16 block at `addr`, then read it back.
    Probe {
        block: u8,
        word: u8,
        byte: u8,
    },
}

fn expect_presence<T: std::fmt::Debug>(bus: &Bus, addr: u16, result: &Result<T, I2cError>) {
    if bus.is_present(addr) {
        assert!(
            !matches!(result, Err(I2cError::NoDevice(_))),
            "{addr:#x}: {result:?}"
        );
    } else {
        assert_eq!(
            result.as_ref().err(),
            Some(&I2cError::NoDevice(addr)),
            "{addr:#x}"
        );
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let specs: Vec<ChipSpec> = SPECS
        .iter()
        .map(|s| s.parse().expect("valid spec"))
        .collect();
    let mut bus = Bus::from_specs(&specs).expect("bus builds");
    for op in ops {
        match op {
            Op::Write { addr, data } => {
                let result = bus.write(addr, &data);
                expect_presence(&bus, addr, &result);
            }
            Op::Read { addr, len } => {
                let mut buf = vec![0x5a; usize::from(len)];
                let result = bus.read(addr, &mut buf);
                expect_presence(&bus, addr, &result);
                if result.is_err() {
                    assert!(
                        buf.iter().all(|&b| b == 0x5a),
                        "failed read wrote the buffer"
                    );
                }
            }
            Op::Stop { addr } => bus.stop(addr),
            Op::Reset => bus.reset_bus_state(),
            Op::Command { addr, command } => {
                let command = match command {
                    Command::Dump => ChipCommand::Dump,
                    Command::Load(data) => ChipCommand::Load(data),
                    Command::Drive { mask, levels } => ChipCommand::DrivePins { mask, levels },
                    Command::ReadPins => ChipCommand::ReadPins,
                };
                let result = bus.command(addr, command);
                expect_presence(&bus, addr, &result);
                if let Ok(ChipReply::Memory(mem)) = &result {
                    let expected = match bus.model_at(addr) {
                        Some("24c16") => 2048,
                        Some("24c64") => 8192,
                        other => panic!("memory from {other:?}"),
                    };
                    assert_eq!(mem.len(), expected);
                }
            }
            Op::Probe { block, word, byte } => {
                let addr = 0x50 + u16::from(block % 8);
                bus.write(addr, &[word, byte]).expect("eeprom acks");
                bus.stop(addr);
                bus.write(addr, &[word]).expect("eeprom acks");
                let mut buf = [0; 1];
                bus.read(addr, &mut buf).expect("eeprom acks");
                bus.stop(addr);
                assert_eq!(buf[0], byte, "{addr:#x}/{word:#x}");
                let Ok(ChipReply::Memory(mem)) = bus.command(0x57, ChipCommand::Dump) else {
                    panic!("24c16 dump");
                };
                assert_eq!(mem[usize::from(block % 8) * 256 + usize::from(word)], byte);
            }
        }
    }
});
