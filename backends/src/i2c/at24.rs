//! AT24 serial EEPROM (24c01 … 24c512), as the guest's `at24` driver sees it.
//!
//! Behaviour follows the Atmel/Microchip datasheets:
//! - a write message is the word address (1 byte up to 24c16, 2 bytes from
//!   24c32 on) followed by data; data bytes fill the page the word address
//!   points into and wrap to the start of that same page when they run past
//!   its end ("page write roll over");
//! - a write of the word address alone only sets the address counter (the
//!   "dummy write" before a random read);
//! - reads are sequential: they start at the address counter, cross page
//!   boundaries and wrap from the last byte of the memory to byte 0;
//! - every byte read or written advances the counter.
//!
//! The 24c04, 24c08 and 24c16 answer 2, 4 or 8 consecutive I2C addresses:
//! the low bits of the I2C address are the high bits of the memory address
//! (256-byte blocks). The [`Bus`](super::bus::Bus) routes every one of those
//! addresses to the one chip through [`I2cClient::write_at`].
//!
//! Simplifications: data is programmed at the end of each write message (the
//! real chip waits for STOP, and NACKs for the few milliseconds of its write
//! cycle); a current-address read ignores the block bits of the I2C address
//! and reads at the internal counter.
//!
//! Contents survive [`I2cClient::reset_bus_state`] (a replug) like a real
//! chip. With a backing file, contents are loaded from it at start and every
//! programmed page is written through to it.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::client::{ChipCommand, ChipReply, I2cClient, I2cError};
use super::spec::{ChipBuildError, ChipModel, Family, Naming};

/// Value of an erased EEPROM byte.
pub const ERASED: u8 = 0xff;

/// Errors setting up an [`At24`].
#[derive(Debug, thiserror::Error)]
pub enum At24Error {
    /// The backing file exists but could not be opened, locked or inspected.
    #[error("cannot open eeprom backing file {}", path.display())]
    Open {
        /// The backing file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The backing file could not be read.
    #[error("cannot read eeprom backing file {}", path.display())]
    Read {
        /// The backing file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The absent backing file could not be created.
    #[error("cannot create eeprom backing file {}", path.display())]
    Create {
        /// The backing file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Another chip or process holds the backing file.
    #[error("eeprom backing file {} is in use by another chip or process", path.display())]
    InUse {
        /// The backing file.
        path: PathBuf,
    },
    /// The backing file's size differs from the chip's memory size.
    #[error(
        "eeprom backing file {} holds {actual} bytes, a {model} holds {expected}",
        path.display()
    )]
    WrongSize {
        /// The backing file.
        path: PathBuf,
        /// The file's size.
        actual: u64,
        /// The chip's memory size.
        expected: usize,
        /// The chip model.
        model: At24Model,
    },
}

/// One member of the AT24 family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum At24Model {
    /// 128 bytes, 8-byte pages, 7-bit word address.
    C01,
    /// 256 bytes, 8-byte pages.
    C02,
    /// 512 bytes, 16-byte pages, 2 I2C addresses.
    C04,
    /// 1 KiB, 16-byte pages, 4 I2C addresses.
    C08,
    /// 2 KiB, 16-byte pages, 8 I2C addresses.
    C16,
    /// 4 KiB, 32-byte pages, 2-byte word address.
    C32,
    /// 8 KiB, 32-byte pages, 2-byte word address.
    C64,
    /// 16 KiB, 64-byte pages, 2-byte word address.
    C128,
    /// 32 KiB, 64-byte pages, 2-byte word address.
    C256,
    /// 64 KiB, 128-byte pages, 2-byte word address.
    C512,
}

impl At24Model {
    /// Every model, smallest first.
    pub const ALL: [Self; 10] = [
        Self::C01,
        Self::C02,
        Self::C04,
        Self::C08,
        Self::C16,
        Self::C32,
        Self::C64,
        Self::C128,
        Self::C256,
        Self::C512,
    ];

    /// The name Linux's at24 driver uses (`24c02`), also the spec syntax.
    pub const fn name(self) -> &'static str {
        match self {
            Self::C01 => "24c01",
            Self::C02 => "24c02",
            Self::C04 => "24c04",
            Self::C08 => "24c08",
            Self::C16 => "24c16",
            Self::C32 => "24c32",
            Self::C64 => "24c64",
            Self::C128 => "24c128",
            Self::C256 => "24c256",
            Self::C512 => "24c512",
        }
    }

    /// Memory size in bytes.
    pub const fn size(self) -> usize {
        match self {
            Self::C01 => 128,
            Self::C02 => 256,
            Self::C04 => 512,
            Self::C08 => 1024,
            Self::C16 => 2048,
            Self::C32 => 4096,
            Self::C64 => 8192,
            Self::C128 => 16384,
            Self::C256 => 32768,
            Self::C512 => 65536,
        }
    }

    /// Page size in bytes: the most one write message can program before
    /// it rolls over to the start of the page.
    pub const fn page_size(self) -> usize {
        match self {
            Self::C01 | Self::C02 => 8,
            Self::C04 | Self::C08 | Self::C16 => 16,
            Self::C32 | Self::C64 => 32,
            Self::C128 | Self::C256 => 64,
            Self::C512 => 128,
        }
    }

    /// Bytes of word address at the start of a write message (1 or 2).
    pub const fn address_bytes(self) -> usize {
        match self {
            Self::C01 | Self::C02 | Self::C04 | Self::C08 | Self::C16 => 1,
            _ => 2,
        }
    }

    /// Consecutive I2C addresses the chip answers (256-byte blocks for the
    /// one-byte-address chips larger than 256 bytes).
    pub const fn address_span(self) -> u16 {
        match self {
            Self::C04 => 2,
            Self::C08 => 4,
            Self::C16 => 8,
            _ => 1,
        }
    }
}

impl fmt::Display for At24Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl ChipModel for At24Model {
    const MODELS: &'static [Self] = &Self::ALL;

    fn name(self) -> &'static str {
        At24Model::name(self)
    }

    fn address_span(self) -> u16 {
        At24Model::address_span(self)
    }
}

/// The AT24 family in the chip registry: `at24:ADDR:MODEL[:file=PATH]`.
pub static FAMILY: Family<At24Model> = Family {
    name: "at24",
    naming: Naming::FamilyThenModel,
    backing_file: true,
    build: build_chip,
};

fn build_chip(model: At24Model, file: Option<&Path>) -> Result<Box<dyn I2cClient>, ChipBuildError> {
    Ok(match file {
        None => Box::new(At24::new(model)),
        Some(path) => Box::new(At24::with_backing_file(model, path)?),
    })
}

/// The file an [`At24`] writes through to.
struct Backing {
    path: PathBuf,
    /// Held locked (`flock`) for the chip's lifetime.
    file: Flock<File>,
}

/// An AT24 EEPROM on the bus.
pub struct At24 {
    model: At24Model,
    mem: Vec<u8>,
    /// The chip's internal data word address counter.
    counter: usize,
    backing: Option<Backing>,
}

impl fmt::Debug for At24 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the memory: up to 64 KiB in every log line helps nobody.
        f.debug_struct("At24")
            .field("model", &self.model)
            .field("counter", &self.counter)
            .field("backing", &self.backing.as_ref().map(|b| &b.path))
            .finish_non_exhaustive()
    }
}

impl At24 {
    /// A chip with erased memory (all bytes [`ERASED`]) and no backing file.
    pub fn new(model: At24Model) -> Self {
        Self {
            model,
            mem: vec![ERASED; model.size()],
            counter: 0,
            backing: None,
        }
    }

    /// A chip whose contents live in `path`: loaded from it when it exists
    /// (its size must be the chip's), created erased when it does not, and
    /// written through on every programmed page.
    pub fn with_backing_file(model: At24Model, path: &Path) -> Result<Self, At24Error> {
        let mut chip = Self::new(model);
        let open_error = |source| At24Error::Open {
            path: path.to_owned(),
            source,
        };
        let (file, created) = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => (file, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map_err(|source| At24Error::Create {
                        path: path.to_owned(),
                        source,
                    })?;
                (file, true)
            }
            Err(source) => return Err(open_error(source)),
        };
        // Two chips (in this process or another backend) writing through to
        // one file would interleave pages: the first holds the file.
        let mut file = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(
            |(_, errno)| match errno {
                Errno::EWOULDBLOCK => At24Error::InUse {
                    path: path.to_owned(),
                },
                errno => open_error(io::Error::from(errno)),
            },
        )?;
        if created {
            file.write_all(&chip.mem)
                .map_err(|source| At24Error::Create {
                    path: path.to_owned(),
                    source,
                })?;
        } else {
            let actual = file.metadata().map_err(open_error)?.len();
            if actual != model.size() as u64 {
                return Err(At24Error::WrongSize {
                    path: path.to_owned(),
                    actual,
                    expected: model.size(),
                    model,
                });
            }
            file.read_exact(&mut chip.mem)
                .map_err(|source| At24Error::Read {
                    path: path.to_owned(),
                    source,
                })?;
        }
        chip.backing = Some(Backing {
            path: path.to_owned(),
            file,
        });
        Ok(chip)
    }

    /// The model.
    pub fn chip_model(&self) -> At24Model {
        self.model
    }

    /// The whole memory.
    pub fn memory(&self) -> &[u8] {
        &self.mem
    }

    /// The internal address counter: where the next current-address read
    /// starts.
    pub fn counter(&self) -> usize {
        self.counter
    }

    /// The backing file, if any.
    pub fn backing_file(&self) -> Option<&Path> {
        self.backing.as_ref().map(|b| b.path.as_path())
    }

    /// Replaces memory from offset 0 (a programmer writing the chip);
    /// bytes past `data` keep their value. Refused when `data` is longer
    /// than the memory.
    pub fn load(&mut self, data: &[u8]) -> Result<(), I2cError> {
        if data.len() > self.mem.len() {
            return Err(I2cError::Nack("load data longer than the eeprom"));
        }
        self.mem[..data.len()].copy_from_slice(data);
        self.write_through(0, data.len());
        Ok(())
    }

    /// Writes `mem[start..start + len]` to the backing file. A failure is
    /// logged, never fatal: the guest's view stays consistent either way.
    fn write_through(&mut self, start: usize, len: usize) {
        let Some(backing) = &self.backing else {
            return;
        };
        if let Err(error) = backing
            .file
            .write_all_at(&self.mem[start..start + len], start as u64)
        {
            tracing::warn!(
                path = %backing.path.display(),
                offset = start,
                len,
                %error,
                "cannot write eeprom contents through to the backing file"
            );
        }
    }
}

impl I2cClient for At24 {
    fn model(&self) -> &str {
        self.model.name()
    }

    fn write(&mut self, data: &[u8]) -> Result<(), I2cError> {
        self.write_at(0, data)
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<(), I2cError> {
        self.read_at(0, buf)
    }

    fn write_at(&mut self, offset: u16, data: &[u8]) -> Result<(), I2cError> {
        let n = self.model.address_bytes();
        // Zero-length write (SMBus quick, i2cdetect): the chip ACKs its
        // address and nothing changes. An incomplete two-byte word address
        // leaves the counter alone as well.
        if data.len() < n {
            return Ok(());
        }
        let (word, payload) = data.split_at(n);
        let address = if n == 1 {
            (usize::from(offset) << 8) | usize::from(word[0])
        } else {
            (usize::from(word[0]) << 8) | usize::from(word[1])
        };
        // Word address bits above the memory size are "don't care".
        let address = address % self.mem.len();
        let page = self.model.page_size();
        let page_start = address & !(page - 1);
        let mut column = address - page_start;
        for &byte in payload {
            self.mem[page_start + column] = byte;
            column = (column + 1) % page;
        }
        self.counter = page_start + column;
        if !payload.is_empty() {
            // A page is small: writing all of it covers the wrapped case.
            self.write_through(page_start, page);
        }
        Ok(())
    }

    fn read_at(&mut self, _offset: u16, buf: &mut [u8]) -> Result<(), I2cError> {
        for byte in buf {
            *byte = self.mem[self.counter];
            self.counter = (self.counter + 1) % self.mem.len();
        }
        Ok(())
    }

    fn reset_bus_state(&mut self) {
        self.counter = 0;
    }

    fn command(&mut self, cmd: ChipCommand) -> ChipReply {
        match self.try_command(cmd) {
            Ok(reply) => reply,
            Err(error) => {
                tracing::warn!(model = self.model.name(), %error, "eeprom command refused");
                ChipReply::Unsupported
            }
        }
    }

    fn try_command(&mut self, cmd: ChipCommand) -> Result<ChipReply, I2cError> {
        match cmd {
            ChipCommand::Dump => Ok(ChipReply::Memory(self.mem.clone())),
            ChipCommand::Load(data) => self.load(&data).map(|()| ChipReply::Done),
            ChipCommand::DrivePins { .. } | ChipCommand::ReadPins => Ok(ChipReply::Unsupported),
        }
    }

    fn address_span(&self) -> u16 {
        self.model.address_span()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_at(chip: &mut At24, address: usize, len: usize) -> Vec<u8> {
        set_pointer(chip, address);
        let mut buf = vec![0; len];
        chip.read(&mut buf).unwrap();
        buf
    }

    fn set_pointer(chip: &mut At24, address: usize) {
        let (offset, word) = address_bytes(chip.chip_model(), address);
        chip.write_at(offset, &word).unwrap();
    }

    /// The I2C address offset and word address bytes that select `address`.
    fn address_bytes(model: At24Model, address: usize) -> (u16, Vec<u8>) {
        if model.address_bytes() == 1 {
            ((address >> 8) as u16, vec![address as u8])
        } else {
            (0, vec![(address >> 8) as u8, address as u8])
        }
    }

    fn write_bytes(chip: &mut At24, address: usize, data: &[u8]) {
        let (offset, mut msg) = address_bytes(chip.chip_model(), address);
        msg.extend_from_slice(data);
        chip.write_at(offset, &msg).unwrap();
    }

    #[test]
    fn at24_models_match_datasheet_geometry() {
        let expected = [
            ("24c01", 128, 8, 1, 1),
            ("24c02", 256, 8, 1, 1),
            ("24c04", 512, 16, 1, 2),
            ("24c08", 1024, 16, 1, 4),
            ("24c16", 2048, 16, 1, 8),
            ("24c32", 4096, 32, 2, 1),
            ("24c64", 8192, 32, 2, 1),
            ("24c128", 16384, 64, 2, 1),
            ("24c256", 32768, 64, 2, 1),
            ("24c512", 65536, 128, 2, 1),
        ];
        for (name, size, page, abytes, span) in expected {
            let m = At24Model::from_name(name).unwrap();
            assert_eq!(m.name(), name);
            assert_eq!(
                (m.size(), m.page_size(), m.address_bytes(), m.address_span()),
                (size, page, abytes, span),
                "{name}"
            );
            // Blocks of 256 bytes for the one-byte-address chips.
            if abytes == 1 {
                assert_eq!(size, usize::from(span) * 256.min(size));
            }
        }
        assert_eq!(At24Model::from_name("24C02"), Some(At24Model::C02));
        assert_eq!(At24Model::from_name("24c03"), None);
    }

    #[test]
    fn at24_new_chip_reads_erased() {
        let mut chip = At24::new(At24Model::C02);
        assert_eq!(read_at(&mut chip, 0, 256), vec![0xff; 256]);
    }

    #[test]
    fn at24_page_write_then_random_read_returns_data() {
        for model in At24Model::ALL {
            let mut chip = At24::new(model);
            let address = model.size() - model.page_size() + 1;
            write_bytes(&mut chip, address, &[1, 2, 3]);
            assert_eq!(read_at(&mut chip, address, 3), vec![1, 2, 3], "{model}");
            assert_eq!(chip.memory()[address - 1], 0xff, "{model}");
            assert_eq!(chip.memory()[address + 3], 0xff, "{model}");
        }
    }

    #[test]
    fn at24_page_write_past_page_end_wraps_within_page() {
        let mut chip = At24::new(At24Model::C02);
        // Page 1 is 8..16; start at 14 with 4 bytes: 14, 15, then 8, 9.
        write_bytes(&mut chip, 14, &[0xa, 0xb, 0xc, 0xd]);
        let mem = chip.memory();
        assert_eq!(&mem[14..16], &[0xa, 0xb]);
        assert_eq!(&mem[8..10], &[0xc, 0xd]);
        assert_eq!(mem[16], 0xff, "must not spill into the next page");
        assert_eq!(&mem[10..14], &[0xff; 4]);
        // The counter follows the wrap: a current-address read continues at 10.
        assert_eq!(chip.counter(), 10);
    }

    #[test]
    fn at24_write_longer_than_page_keeps_last_bytes() {
        let mut chip = At24::new(At24Model::C32);
        let data: Vec<u8> = (0..40).collect();
        write_bytes(&mut chip, 64, &data);
        // 40 bytes into a 32-byte page: bytes 32..40 overwrite the first 8.
        let mem = chip.memory();
        assert_eq!(&mem[64..72], &data[32..40]);
        assert_eq!(&mem[72..96], &data[8..32]);
        assert_eq!(mem[96], 0xff);
    }

    #[test]
    fn at24_address_only_write_sets_pointer_without_data() {
        let mut chip = At24::new(At24Model::C64);
        chip.write(&[0x12, 0x34]).unwrap();
        assert_eq!(chip.counter(), 0x1234);
        assert!(chip.memory().iter().all(|&b| b == 0xff));
    }

    #[test]
    fn at24_sequential_read_crosses_pages_and_wraps_at_end() {
        let mut chip = At24::new(At24Model::C02);
        chip.load(&(0..=255).collect::<Vec<u8>>()).unwrap();
        // Crosses the 8-byte page boundary at 8.
        assert_eq!(read_at(&mut chip, 6, 4), vec![6, 7, 8, 9]);
        // Current-address read continues where the last one stopped.
        let mut buf = [0; 2];
        chip.read(&mut buf).unwrap();
        assert_eq!(buf, [10, 11]);
        // Rolls over from the last byte to byte 0.
        assert_eq!(read_at(&mut chip, 254, 4), vec![254, 255, 0, 1]);
        assert_eq!(chip.counter(), 2);
    }

    #[test]
    fn at24_block_bits_from_i2c_address_select_block() {
        let mut chip = At24::new(At24Model::C16);
        // I2C address offset 5 = block 5 = bytes 0x500..0x600.
        chip.write_at(5, &[0x10, 0xaa, 0xbb]).unwrap();
        assert_eq!(&chip.memory()[0x510..0x512], &[0xaa, 0xbb]);
        assert_eq!(chip.memory()[0x10], 0xff);
        // A sequential read crosses from block 5 into block 6.
        chip.write_at(5, &[0xff]).unwrap();
        let mut buf = [0; 2];
        chip.read_at(5, &mut buf).unwrap();
        assert_eq!(chip.counter(), 0x601);
    }

    #[test]
    fn at24_24c01_ignores_word_address_msb() {
        let mut chip = At24::new(At24Model::C01);
        chip.write(&[0x80 | 5, 0x42]).unwrap();
        assert_eq!(chip.memory()[5], 0x42);
    }

    #[test]
    fn at24_two_byte_address_ignores_bits_above_size() {
        let mut chip = At24::new(At24Model::C32);
        chip.write(&[0xf0 | 0x01, 0x00, 0x42]).unwrap();
        assert_eq!(chip.memory()[0x100], 0x42);
    }

    #[test]
    fn at24_short_writes_change_nothing() {
        let mut chip = At24::new(At24Model::C256);
        chip.write(&[0x00, 0x10]).unwrap();
        chip.write(&[]).unwrap();
        chip.write(&[0x55]).unwrap();
        assert_eq!(chip.counter(), 0x10);
        assert!(chip.memory().iter().all(|&b| b == 0xff));
    }

    #[test]
    fn at24_reset_bus_state_keeps_contents_and_resets_counter() {
        let mut chip = At24::new(At24Model::C02);
        write_bytes(&mut chip, 0x20, &[7, 8]);
        chip.reset_bus_state();
        assert_eq!(chip.counter(), 0);
        assert_eq!(read_at(&mut chip, 0x20, 2), vec![7, 8]);
    }

    #[test]
    fn at24_dump_and_load_commands_round_trip() {
        let mut chip = At24::new(At24Model::C01);
        let data: Vec<u8> = (0..100).collect();
        assert_eq!(
            chip.command(ChipCommand::Load(data.clone())),
            ChipReply::Done
        );
        let ChipReply::Memory(mem) = chip.command(ChipCommand::Dump) else {
            panic!("dump must return memory");
        };
        assert_eq!(mem.len(), 128);
        assert_eq!(&mem[..100], &data[..]);
        assert_eq!(&mem[100..], &[0xff; 28]);
        assert_eq!(chip.command(ChipCommand::ReadPins), ChipReply::Unsupported);
    }

    #[test]
    fn at24_load_longer_than_memory_is_refused_unchanged() {
        let mut chip = At24::new(At24Model::C01);
        assert!(matches!(
            chip.try_command(ChipCommand::Load(vec![0; 129])),
            Err(I2cError::Nack(_))
        ));
        assert!(chip.memory().iter().all(|&b| b == 0xff));
    }

    #[test]
    fn at24_absent_backing_file_is_created_erased() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eeprom.bin");
        let chip = At24::with_backing_file(At24Model::C04, &path).unwrap();
        assert_eq!(chip.backing_file(), Some(path.as_path()));
        assert_eq!(std::fs::read(&path).unwrap(), vec![0xff; 512]);
    }

    #[test]
    fn at24_backing_file_is_loaded_and_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eeprom.bin");
        let initial: Vec<u8> = (0..=255).collect();
        std::fs::write(&path, &initial).unwrap();
        let mut chip = At24::with_backing_file(At24Model::C02, &path).unwrap();
        assert_eq!(read_at(&mut chip, 0x40, 2), vec![0x40, 0x41]);

        write_bytes(&mut chip, 0x46, &[0xde, 0xad, 0xbe]);
        let mut expected = initial.clone();
        expected[0x46] = 0xde;
        expected[0x47] = 0xad;
        expected[0x40] = 0xbe; // page rollover
        assert_eq!(std::fs::read(&path).unwrap(), expected);

        chip.command(ChipCommand::Load(vec![9; 3]));
        expected[..3].copy_from_slice(&[9; 3]);
        assert_eq!(std::fs::read(&path).unwrap(), expected);

        // A new chip on the same file (backend restarted) sees the same bytes.
        drop(chip);
        let chip = At24::with_backing_file(At24Model::C02, &path).unwrap();
        assert_eq!(chip.memory(), &expected[..]);
    }

    #[test]
    fn at24_wrong_size_backing_file_names_path_and_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.bin");
        std::fs::write(&path, [0u8; 100]).unwrap();
        let err = At24::with_backing_file(At24Model::C02, &path).unwrap_err();
        assert!(matches!(
            err,
            At24Error::WrongSize {
                actual: 100,
                expected: 256,
                ..
            }
        ));
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains("100") && msg.contains("256") && msg.contains("24c02"),
            "{msg}"
        );
    }

    #[test]
    fn at24_backing_file_in_use_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eeprom.bin");
        let first = At24::with_backing_file(At24Model::C02, &path).unwrap();
        let err = At24::with_backing_file(At24Model::C02, &path).unwrap_err();
        assert!(matches!(err, At24Error::InUse { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        // Released with the chip.
        drop(first);
        At24::with_backing_file(At24Model::C02, &path).unwrap();
    }

    #[test]
    fn at24_unopenable_backing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory exists but cannot be opened for writing.
        let err = At24::with_backing_file(At24Model::C02, dir.path()).unwrap_err();
        assert!(matches!(err, At24Error::Open { .. }), "{err:?}");
        let missing_parent = dir.path().join("no/such/dir/eeprom.bin");
        let err = At24::with_backing_file(At24Model::C02, &missing_parent).unwrap_err();
        assert!(
            matches!(err, At24Error::Open { .. } | At24Error::Create { .. }),
            "{err:?}"
        );
    }
}
