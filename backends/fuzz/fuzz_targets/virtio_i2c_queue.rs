//! Fuzzes the virtio-i2c request queue end to end: arbitrary descriptor
//! chains, and well-formed requests with arbitrary fields, go through
//! `I2cDevice::process` on a `MockSplitQueue`. Every chain must come back
//! exactly once (the Linux driver waits forever otherwise), with no more
//! bytes claimed than it can hold; a well-formed request always gets a
//! status byte of OK or ERR, and ERR when no chip has its address.

#![no_main]

use arbitrary::Arbitrary;
use dangle_backends::i2c::bus::Bus;
use dangle_backends::i2c::spec::ChipSpec;
use dangle_backends::i2c::vhu_i2c::I2cDevice;
use dangle_backends::i2c::virtio_i2c::{VIRTIO_I2C_MSG_ERR, VIRTIO_I2C_MSG_OK};
use dangle_backends_fuzz::{DATA_START, FuzzDesc, GuestQueue, memory};
use libfuzzer_sys::fuzz_target;

const CHIPS: [&str; 2] = ["at24:0x50:24c04", "pca9555:0x20"];

#[derive(Debug, Arbitrary)]
enum Data {
    None,
    Write(Vec<u8>),
    Read(u16),
    Other(FuzzDesc),
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// Any chain at all.
    Raw(Vec<FuzzDesc>),
    /// Header, optional data buffer, one status byte.
    Request {
        addr: u8,
        fail_next: bool,
        read: bool,
        /// Reserved flag bits or padding, usually zero.
        junk: Option<(u32, u16)>,
        data: Data,
    },
    Process,
    EndConnection,
}

fuzz_target!(|ops: Vec<Op>| {
    let specs: Vec<ChipSpec> = CHIPS.iter().map(|s| s.parse().expect("spec")).collect();
    let bus = Bus::from_specs(&specs).expect("bus");
    let present: Vec<bool> = (0..128).map(|a| bus.is_present(a)).collect();
    let device = I2cDevice::with_bus(bus, Vec::new());
    let mem = memory();
    let mut guest = GuestQueue::new(&mem, 0);
    let mut queue = guest.queue();
    let mut data = DATA_START;
    // (status address, 7-bit address, ERR is the only right answer).
    let mut requests = Vec::new();

    for op in ops {
        match op {
            Op::Raw(descs) => {
                guest.add(&descs, &mut data);
            }
            Op::Request {
                addr,
                fail_next,
                read,
                junk,
                data: payload,
            } => {
                let addr = u16::from(addr & 0x7f);
                let (junk_flags, padding) = junk.unwrap_or((0, 0));
                let flags = u32::from(fail_next) | (u32::from(read) << 1) | (junk_flags & !3);
                let mut header = Vec::with_capacity(8);
                header.extend_from_slice(&(addr << 1).to_le_bytes());
                header.extend_from_slice(&padding.to_le_bytes());
                header.extend_from_slice(&flags.to_le_bytes());
                let mut descs = vec![FuzzDesc::Readable(header)];
                // Whether the spec leaves the device no choice but ERR:
                // reserved flag bits, or a buffer against M_RD.
                let mut must_fail = junk_flags & !3 != 0;
                let buffer = match payload {
                    Data::None => None,
                    Data::Write(bytes) => Some(FuzzDesc::Readable(bytes)),
                    Data::Read(len) => Some(FuzzDesc::Writable(len)),
                    Data::Other(d) => Some(d),
                };
                if let Some(buffer) = buffer {
                    must_fail |= match &buffer {
                        FuzzDesc::Readable(_) => read,
                        FuzzDesc::Writable(_) => !read,
                        // Outside guest memory: the device may fail at
                        // any step; only the status is checked.
                        FuzzDesc::Outside { .. } => false,
                    };
                    descs.push(buffer);
                }
                descs.push(FuzzDesc::Writable(1));
                if let Some(added) = guest.add(&descs, &mut data) {
                    let status = added.descs.last().expect("status").addr;
                    must_fail |= !present[usize::from(addr)];
                    requests.push((status, addr, must_fail));
                }
            }
            Op::Process => {
                device.process(&mem, &mut queue);
                guest.collect_used();
            }
            Op::EndConnection => device.end_connection(),
        }
    }
    device.process(&mem, &mut queue);
    guest.collect_used();
    guest.assert_all_returned();
    for (status, addr, must_fail) in requests {
        let byte = guest.read(status, 1)[0];
        assert!(
            byte == VIRTIO_I2C_MSG_OK || byte == VIRTIO_I2C_MSG_ERR,
            "status {byte:#x} for a request to {addr:#x}"
        );
        if must_fail {
            assert_eq!(byte, VIRTIO_I2C_MSG_ERR, "request to {addr:#x} answered OK");
        }
    }
});
