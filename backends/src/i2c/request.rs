//! virtio-i2c requests: a descriptor chain is parsed into a typed
//! [`I2cRequest`] before anything runs, then executed as one message on the
//! [`Bus`].
//!
//! A request is a readable 8-byte header (`struct virtio_i2c_out_hdr`), an
//! optional data buffer (readable for a write, writable for a read) and a
//! writable status byte. Parsing reads only the header and never writes
//! guest memory. A chain that does not parse is described by a
//! [`ChainError`]; the transport still returns it to the guest, with `ERR`
//! in its last writable byte when it has one.

use std::fmt;

use vm_memory::{Bytes, GuestMemory};

use super::bus::Bus;
use super::client::I2cError;
use super::virtio_i2c::{VIRTIO_I2C_FLAGS_FAIL_NEXT, VIRTIO_I2C_FLAGS_M_RD, VirtioI2cOutHdr};
use crate::virtq::{Buf, Chain, Layout};

/// Longest data buffer accepted in one message (the largest AT24 is 64 KiB).
pub const MAX_MESSAGE: u32 = 64 * 1024;

/// Direction and payload of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum I2cOp {
    /// Zero-length write (SMBus quick write / address probe).
    ZeroWrite,
    /// Zero-length read.
    ZeroRead,
    /// Write the bytes of this guest buffer.
    Write(Buf),
    /// Read into this guest buffer.
    Read(Buf),
}

impl I2cOp {
    /// Counter name.
    pub fn name(self) -> &'static str {
        match self {
            I2cOp::ZeroWrite => "zero_write",
            I2cOp::ZeroRead => "zero_read",
            I2cOp::Write(_) => "write",
            I2cOp::Read(_) => "read",
        }
    }
}

/// Why a chain is not a well-formed request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The descriptors do not form header, optional buffer, status: not two
    /// or three descriptors, a writable header, a readable or empty status.
    #[error("bad descriptor layout {0}")]
    Shape(Layout),
    /// The header is not 8 bytes.
    #[error("header is {0} bytes, expected 8")]
    HeaderSize(u32),
    /// The header could not be read from guest memory.
    #[error("header not readable from guest memory")]
    Memory,
    /// `M_RD` disagrees with the data buffer's direction.
    #[error("flags {flags:#x} disagree with a {dir} buffer")]
    Direction {
        /// Flags received.
        flags: u32,
        /// Buffer direction.
        dir: &'static str,
    },
    /// The data buffer is larger than [`MAX_MESSAGE`].
    #[error("data buffer of {0} bytes is too large")]
    TooLarge(u32),
    /// Reserved flag bits set.
    #[error("reserved bits set (flags {flags:#x}, padding {padding:#x})")]
    Reserved {
        /// Flags.
        flags: u32,
        /// Padding.
        padding: u16,
    },
}

/// A request chain, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct I2cRequest {
    /// 7-bit address.
    pub addr: u16,
    /// `VIRTIO_I2C_FLAGS_FAIL_NEXT` was set.
    pub fail_next: bool,
    /// What to do.
    pub op: I2cOp,
    /// Where the status byte goes (its last byte).
    pub status: Buf,
}

impl I2cRequest {
    /// Parses a request chain (layout in the module docs).
    pub fn parse<M: GuestMemory>(chain: &Chain, mem: &M) -> Result<Self, ChainError> {
        let shape_err = || ChainError::Shape(chain.layout());
        if chain.truncated {
            return Err(shape_err());
        }
        let (hdr, data, status) = match chain.bufs.as_slice() {
            [h, s] => (*h, None, *s),
            [h, d, s] => (*h, Some(*d), *s),
            _ => return Err(shape_err()),
        };
        if hdr.writable || !status.writable || status.len < 1 {
            return Err(shape_err());
        }
        if hdr.len as usize != size_of::<VirtioI2cOutHdr>() {
            return Err(ChainError::HeaderSize(hdr.len));
        }
        let out: VirtioI2cOutHdr = mem.read_obj(hdr.addr).map_err(|_| ChainError::Memory)?;
        let flags = out.flags.to_native();
        let padding = out.padding.to_native();
        if flags & !(VIRTIO_I2C_FLAGS_FAIL_NEXT | VIRTIO_I2C_FLAGS_M_RD) != 0 {
            return Err(ChainError::Reserved { flags, padding });
        }
        let read = flags & VIRTIO_I2C_FLAGS_M_RD != 0;
        let op = match data {
            None if read => I2cOp::ZeroRead,
            None => I2cOp::ZeroWrite,
            Some(d) => {
                if d.len > MAX_MESSAGE {
                    return Err(ChainError::TooLarge(d.len));
                }
                match (d.writable, read) {
                    (true, true) => I2cOp::Read(d),
                    (false, false) => I2cOp::Write(d),
                    (writable, _) => {
                        return Err(ChainError::Direction {
                            flags,
                            dir: if writable { "writable" } else { "readable" },
                        });
                    }
                }
            }
        };
        Ok(I2cRequest {
            addr: (out.addr.to_native() >> 1) & 0x7f,
            fail_next: flags & VIRTIO_I2C_FLAGS_FAIL_NEXT != 0,
            op,
            status,
        })
    }

    /// Runs the message on `bus`, moving data between guest memory and the
    /// chip. Returns the bytes written into the chain (the data of a read);
    /// the status byte is the caller's.
    pub fn execute<M: GuestMemory>(&self, bus: &mut Bus, mem: &M) -> Result<u32, I2cError> {
        match self.op {
            I2cOp::ZeroWrite => bus.write(self.addr, &[]).map(|()| 0),
            I2cOp::ZeroRead => bus.read(self.addr, &mut []).map(|()| 0),
            I2cOp::Write(buf) => {
                let mut data = vec![0u8; buf.len as usize];
                mem.read_slice(&mut data, buf.addr)
                    .map_err(|_| I2cError::Nack("write buffer not in guest memory"))?;
                bus.write(self.addr, &data).map(|()| 0)
            }
            I2cOp::Read(buf) => {
                let mut data = vec![0u8; buf.len as usize];
                bus.read(self.addr, &mut data)?;
                mem.write_slice(&data, buf.addr)
                    .map_err(|_| I2cError::Nack("read buffer not in guest memory"))?;
                Ok(buf.len)
            }
        }
    }
}

impl fmt::Display for I2cRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} message to {:#04x}", self.op.name(), self.addr)
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    use super::*;

    const HDR: u64 = 0x100;
    const DATA: u64 = 0x200;
    const STATUS: u64 = 0x300;

    use Buf as B;

    fn chain(bufs: &[Buf]) -> Chain {
        Chain::new(0, bufs.to_vec())
    }

    /// A memory with a header to `addr` with `flags` and `padding` at [`HDR`].
    fn with_header(addr: u16, padding: u16, flags: u32) -> GuestMemoryMmap {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let mut bytes = (addr << 1).to_le_bytes().to_vec();
        bytes.extend_from_slice(&padding.to_le_bytes());
        bytes.extend_from_slice(&flags.to_le_bytes());
        mem.write_slice(&bytes, GuestAddress(HDR)).unwrap();
        mem
    }

    fn parse(mem: &GuestMemoryMmap, bufs: &[Buf]) -> Result<I2cRequest, ChainError> {
        I2cRequest::parse(&chain(bufs), mem)
    }

    const H: Buf = Buf {
        addr: GuestAddress(HDR),
        len: 8,
        writable: false,
    };
    const S: Buf = Buf {
        addr: GuestAddress(STATUS),
        len: 1,
        writable: true,
    };

    #[test]
    fn i2c_request_well_formed_chains_parse_to_typed_requests() {
        let read = B::new(DATA, 4, true);
        let mem = with_header(0x50, 0, VIRTIO_I2C_FLAGS_M_RD | VIRTIO_I2C_FLAGS_FAIL_NEXT);
        assert_eq!(
            parse(&mem, &[H, read, S]),
            Ok(I2cRequest {
                addr: 0x50,
                fail_next: true,
                op: I2cOp::Read(read),
                status: S,
            })
        );
        assert_eq!(parse(&mem, &[H, S]).unwrap().op, I2cOp::ZeroRead);
        let write = B::new(DATA, 2, false);
        let mem = with_header(0x20, 0, 0);
        let req = parse(&mem, &[H, write, S]).unwrap();
        assert_eq!(
            (req.addr, req.fail_next, req.op),
            (0x20, false, I2cOp::Write(write))
        );
        assert_eq!(parse(&mem, &[H, S]).unwrap().op, I2cOp::ZeroWrite);
    }

    #[test]
    fn i2c_request_bad_layouts_are_shape_errors() {
        let mem = with_header(0x50, 0, 0);
        let d = B::new(DATA, 2, false);
        let empty_status = B::new(STATUS, 0, true);
        let writable_hdr = B::new(HDR, 8, true);
        for bufs in [
            vec![],
            vec![H],
            vec![H, d],
            vec![H, d, d, S],
            vec![writable_hdr, S],
            vec![H, empty_status],
        ] {
            assert!(
                matches!(parse(&mem, &bufs), Err(ChainError::Shape(_))),
                "{bufs:?}"
            );
        }
        let mut long = chain(&[H, S]);
        long.truncated = true;
        assert_eq!(
            I2cRequest::parse(&long, &mem).unwrap_err().to_string(),
            "bad descriptor layout [R8, W1, ...]"
        );
    }

    #[test]
    fn i2c_request_wrong_header_size_is_rejected() {
        let mem = with_header(0x50, 0, 0);
        assert_eq!(
            parse(&mem, &[B::new(HDR, 7, false), S]),
            Err(ChainError::HeaderSize(7))
        );
        assert_eq!(
            parse(&mem, &[B::new(HDR, 16, false), S]),
            Err(ChainError::HeaderSize(16))
        );
    }

    #[test]
    fn i2c_request_header_outside_memory_is_memory_error() {
        let mem = with_header(0x50, 0, 0);
        assert_eq!(
            parse(&mem, &[B::new(0x10_0000, 8, false), S]),
            Err(ChainError::Memory)
        );
    }

    #[test]
    fn i2c_request_reserved_flags_are_rejected() {
        let mem = with_header(0x50, 7, 1 << 2);
        assert_eq!(
            parse(&mem, &[H, S]),
            Err(ChainError::Reserved {
                flags: 1 << 2,
                padding: 7
            })
        );
    }

    #[test]
    fn i2c_request_direction_mismatch_is_rejected() {
        let mem = with_header(0x50, 0, VIRTIO_I2C_FLAGS_M_RD);
        assert_eq!(
            parse(&mem, &[H, B::new(DATA, 2, false), S]),
            Err(ChainError::Direction {
                flags: VIRTIO_I2C_FLAGS_M_RD,
                dir: "readable"
            })
        );
        let mem = with_header(0x50, 0, 0);
        assert_eq!(
            parse(&mem, &[H, B::new(DATA, 2, true), S]),
            Err(ChainError::Direction {
                flags: 0,
                dir: "writable"
            })
        );
    }

    #[test]
    fn i2c_request_oversized_buffer_is_rejected() {
        let mem = with_header(0x50, 0, 0);
        assert_eq!(
            parse(&mem, &[H, B::new(DATA, MAX_MESSAGE + 1, false), S]),
            Err(ChainError::TooLarge(MAX_MESSAGE + 1))
        );
    }

    #[test]
    fn i2c_request_execute_moves_data_through_the_bus() {
        let mut bus = Bus::from_specs(&["at24:0x50:24c02".parse().unwrap()]).unwrap();
        let mem = with_header(0x50, 0, 0);
        mem.write_slice(&[0x10, 0xab, 0xcd], GuestAddress(DATA))
            .unwrap();
        let write = parse(&mem, &[H, B::new(DATA, 3, false), S]).unwrap();
        assert_eq!(write.execute(&mut bus, &mem), Ok(0));
        bus.stop(0x50);
        mem.write_slice(&[0x10], GuestAddress(DATA)).unwrap();
        let set = parse(&mem, &[H, B::new(DATA, 1, false), S]).unwrap();
        assert_eq!(set.execute(&mut bus, &mem), Ok(0));
        let mem_rd = with_header(0x50, 0, VIRTIO_I2C_FLAGS_M_RD);
        let read = parse(&mem_rd, &[H, B::new(DATA, 2, true), S]).unwrap();
        assert_eq!(read.execute(&mut bus, &mem_rd), Ok(2));
        let mut got = [0u8; 2];
        mem_rd.read_slice(&mut got, GuestAddress(DATA)).unwrap();
        assert_eq!(got, [0xab, 0xcd]);
        let nobody = with_header(0x51, 0, 0);
        let req = parse(&nobody, &[H, S]).unwrap();
        assert_eq!(
            req.execute(&mut bus, &nobody),
            Err(I2cError::NoDevice(0x51))
        );
    }
}
