//! Fuzzes the AT24 model with arbitrary message sequences and checks it
//! against a byte-at-a-time reference written from the datasheet: every
//! read must return what the reference holds, a dump is always the chip's
//! size, and a refused load changes nothing.

#![no_main]

use arbitrary::Arbitrary;
use dangle_backends::i2c::at24::{At24, At24Model};
use dangle_backends::i2c::client::{ChipCommand, ChipReply, I2cClient};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Op {
    Write { offset: u8, data: Vec<u8> },
    Read { offset: u8, len: u16 },
    Stop,
    Reset,
    Dump,
    Load(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct Input {
    model: u8,
    ops: Vec<Op>,
}

/// The datasheet, spelled out one byte at a time.
struct Reference {
    model: At24Model,
    mem: Vec<u8>,
    counter: usize,
}

impl Reference {
    fn write(&mut self, block: usize, data: &[u8]) {
        let n = self.model.address_bytes();
        if data.len() < n {
            return;
        }
        let word = if n == 1 {
            block * 256 + usize::from(data[0])
        } else {
            usize::from(data[0]) * 256 + usize::from(data[1])
        };
        let size = self.model.size();
        let page = self.model.page_size();
        let mut address = word % size;
        for &byte in &data[n..] {
            self.mem[address] = byte;
            // Next byte: same page, next column, wrapping inside the page.
            let page_number = address / page;
            address = page_number * page + (address % page + 1) % page;
        }
        self.counter = address;
    }

    fn read(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        for _ in 0..len {
            out.push(self.mem[self.counter]);
            self.counter += 1;
            if self.counter == self.mem.len() {
                self.counter = 0;
            }
        }
        out
    }
}

fuzz_target!(|input: Input| {
    let model = At24Model::ALL[usize::from(input.model) % At24Model::ALL.len()];
    let mut chip = At24::new(model);
    let mut reference = Reference {
        model,
        mem: vec![0xff; model.size()],
        counter: 0,
    };
    let span = model.address_span();
    for op in input.ops {
        match op {
            Op::Write { offset, data } => {
                let offset = u16::from(offset) % span;
                assert!(chip.write_at(offset, &data).is_ok());
                reference.write(usize::from(offset), &data);
                assert_eq!(chip.counter(), reference.counter);
            }
            Op::Read { offset, len } => {
                let offset = u16::from(offset) % span;
                let mut buf = vec![0x5a; usize::from(len)];
                assert!(chip.read_at(offset, &mut buf).is_ok());
                assert_eq!(buf, reference.read(usize::from(len)));
            }
            Op::Stop => chip.stop(),
            Op::Reset => {
                chip.reset_bus_state();
                reference.counter = 0;
            }
            Op::Dump => {
                let ChipReply::Memory(mem) = chip.command(ChipCommand::Dump) else {
                    panic!("dump must return memory");
                };
                assert_eq!(mem.len(), model.size());
                assert_eq!(mem, reference.mem);
            }
            Op::Load(data) => {
                let result = chip.try_command(ChipCommand::Load(data.clone()));
                if data.len() <= model.size() {
                    assert_eq!(result, Ok(ChipReply::Done));
                    reference.mem[..data.len()].copy_from_slice(&data);
                } else {
                    assert!(result.is_err());
                }
            }
        }
        assert_eq!(chip.memory(), &reference.mem[..]);
        assert!(chip.counter() < model.size());
    }
});
