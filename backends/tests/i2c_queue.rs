//! I2C request queue handling, driven through `MockSplitQueue`.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on unexpected errors"
)]

mod common;

use std::sync::{Arc, Mutex};

use common::{D, MockQueue, memory};
use dangle_backends::control::{ControlTarget, Request};
use dangle_backends::i2c::bus::Bus;
use dangle_backends::i2c::client::{I2cClient, I2cError};
use dangle_backends::i2c::vhu_i2c::{I2cConn, I2cDevice};
use dangle_backends::i2c::virtio_i2c::*;
use vm_memory::GuestMemoryMmap;

const EEPROM: u16 = 0x50;

fn hdr(addr: u16, flags: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(addr << 1).to_le_bytes());
    v.extend_from_slice(&0u16.to_le_bytes());
    v.extend_from_slice(&flags.to_le_bytes());
    v
}

/// A chip that records what it sees.
#[derive(Debug, Clone, Default)]
struct MockChip {
    log: Arc<Mutex<Vec<String>>>,
}

impl I2cClient for MockChip {
    fn model(&self) -> &str {
        "mock"
    }
    fn write(&mut self, data: &[u8]) -> Result<(), I2cError> {
        self.log.lock().unwrap().push(format!("w{data:?}"));
        Ok(())
    }
    fn read(&mut self, buf: &mut [u8]) -> Result<(), I2cError> {
        buf.fill(0x5a);
        self.log.lock().unwrap().push(format!("r{}", buf.len()));
        Ok(())
    }
    fn stop(&mut self) {
        self.log.lock().unwrap().push("stop".into());
    }
}

fn device(faults: &[&str]) -> (Arc<I2cDevice>, Arc<Mutex<Vec<String>>>, Arc<I2cConn>) {
    let chip = MockChip::default();
    let log = chip.log.clone();
    let mut bus = Bus::from_specs(&["at24:0x50:24c02".parse().unwrap()]).unwrap();
    bus.attach(0x30, Box::new(chip)).unwrap();
    let dev = I2cDevice::with_bus(bus, faults.iter().map(|f| f.parse().unwrap()).collect());
    let conn = I2cConn::new(dev.clone()).unwrap();
    (dev, log, conn)
}

struct Fixture<'a> {
    q: MockQueue<'a>,
    queue: virtio_queue::Queue,
}

impl<'a> Fixture<'a> {
    fn new(mem: &'a GuestMemoryMmap) -> Self {
        let q = MockQueue::new(mem, 0, 0x10_0000, 64);
        Fixture {
            queue: q.queue(),
            q,
        }
    }
    fn run(&mut self, dev: &I2cDevice) {
        dev.process(self.q.mem, &mut self.queue);
    }
}

#[test]
fn eeprom_write_then_read_through_queue() {
    let (dev, _, _conn) = device(&[]);
    let mem = memory();
    let mut f = Fixture::new(&mem);
    let w = f.q.add(&[
        D::R(hdr(EEPROM, 0)),
        D::R(vec![0x10, 0xaa, 0xbb, 0xcc]),
        D::W(1),
    ]);
    let set = f.q.add(&[
        D::R(hdr(EEPROM, VIRTIO_I2C_FLAGS_FAIL_NEXT)),
        D::R(vec![0x10]),
        D::W(1),
    ]);
    let r =
        f.q.add(&[D::R(hdr(EEPROM, VIRTIO_I2C_FLAGS_M_RD)), D::W(3), D::W(1)]);
    f.run(&dev);
    let used = f.q.take_used();
    assert_eq!(
        used,
        [
            (u32::from(w.head), 1),
            (u32::from(set.head), 1),
            (u32::from(r.head), 4)
        ]
    );
    assert_eq!(f.q.read(w.addrs[2], 1), [VIRTIO_I2C_MSG_OK]);
    assert_eq!(f.q.read(r.addrs[1], 3), [0xaa, 0xbb, 0xcc]);
    assert_eq!(f.q.read(r.addrs[2], 1), [VIRTIO_I2C_MSG_OK]);
    let dump = dev
        .control(Request::DumpEeprom { addr: EEPROM })
        .hex
        .unwrap();
    assert_eq!(&dump[0x20..0x26], "aabbcc");
}

#[test]
fn zero_length_requests_probe_presence() {
    let (dev, _, _conn) = device(&[]);
    let mem = memory();
    let mut f = Fixture::new(&mem);
    let present = f.q.add(&[D::R(hdr(EEPROM, 0)), D::W(1)]);
    let absent = f.q.add(&[D::R(hdr(0x51, 0)), D::W(1)]);
    let absent_rd = f.q.add(&[D::R(hdr(0x77, VIRTIO_I2C_FLAGS_M_RD)), D::W(1)]);
    f.run(&dev);
    assert_eq!(f.q.take_used().len(), 3);
    assert_eq!(f.q.read(present.addrs[1], 1), [VIRTIO_I2C_MSG_OK]);
    assert_eq!(f.q.read(absent.addrs[1], 1), [VIRTIO_I2C_MSG_ERR]);
    assert_eq!(f.q.read(absent_rd.addrs[1], 1), [VIRTIO_I2C_MSG_ERR]);
}

#[test]
fn fail_next_group_fails_after_first_error_and_stops() {
    let (dev, log, _conn) = device(&[]);
    let mem = memory();
    let mut f = Fixture::new(&mem);
    // Group 1: mock write (ok), empty address (fails), mock read (must fail, not run).
    let a = f.q.add(&[
        D::R(hdr(0x30, VIRTIO_I2C_FLAGS_FAIL_NEXT)),
        D::R(vec![1]),
        D::W(1),
    ]);
    let b = f.q.add(&[
        D::R(hdr(0x31, VIRTIO_I2C_FLAGS_FAIL_NEXT)),
        D::R(vec![2]),
        D::W(1),
    ]);
    let c =
        f.q.add(&[D::R(hdr(0x30, VIRTIO_I2C_FLAGS_M_RD)), D::W(2), D::W(1)]);
    // Group 2: runs normally.
    let d =
        f.q.add(&[D::R(hdr(0x30, VIRTIO_I2C_FLAGS_M_RD)), D::W(2), D::W(1)]);
    f.run(&dev);
    assert_eq!(f.q.take_used().len(), 4);
    assert_eq!(f.q.read(a.addrs[2], 1), [VIRTIO_I2C_MSG_OK]);
    assert_eq!(f.q.read(b.addrs[2], 1), [VIRTIO_I2C_MSG_ERR]);
    assert_eq!(f.q.read(c.addrs[2], 1), [VIRTIO_I2C_MSG_ERR]);
    assert_eq!(
        f.q.read(c.addrs[1], 2),
        [0xee, 0xee],
        "failed read not executed"
    );
    assert_eq!(f.q.read(d.addrs[2], 1), [VIRTIO_I2C_MSG_OK]);
    assert_eq!(f.q.read(d.addrs[1], 2), [0x5a, 0x5a]);
    assert_eq!(*log.lock().unwrap(), ["w[1]", "stop", "r2", "stop"]);
}

#[test]
fn malformed_chains_get_err_and_are_always_returned() {
    let (dev, _, _conn) = device(&[]);
    let mem = memory();
    let mut f = Fixture::new(&mem);
    let cases = [
        f.q.add(&[D::R(hdr(EEPROM, 0))]), // no status
        f.q.add(&[
            D::R(hdr(EEPROM, VIRTIO_I2C_FLAGS_M_RD)),
            D::R(vec![0]),
            D::W(1),
        ]), // read flag, readable buf
        f.q.add(&[D::R(hdr(EEPROM, 0)), D::W(4), D::W(1)]), // write flag, writable buf
        f.q.add(&[D::R(hdr(EEPROM, 0)[..4].to_vec()), D::W(1)]), // short header
        f.q.add(&[D::R(hdr(EEPROM, 0x80)), D::W(1)]), // reserved flag
        f.q.add(&[D::RBad(8), D::W(1)]),  // header outside memory
        f.q.add(&[D::R(hdr(EEPROM, 0)), D::R(vec![0]), D::R(vec![0]), D::W(1)]), // too many
        f.q.add(&[
            D::R(hdr(EEPROM, VIRTIO_I2C_FLAGS_M_RD)),
            D::W(70_000),
            D::W(1),
        ]), // too large
    ];
    f.run(&dev);
    let used = f.q.take_used();
    assert_eq!(used.len(), cases.len(), "every chain is returned");
    assert_eq!(used[0], (u32::from(cases[0].head), 0));
    for (i, c) in cases.iter().enumerate().skip(1) {
        assert_eq!(used[i], (u32::from(c.head), 1), "case {i}");
        let status = *c.addrs.last().unwrap();
        assert_eq!(f.q.read(status, 1), [VIRTIO_I2C_MSG_ERR], "case {i}");
    }
    let counters = dev.control(Request::Counters).counters.unwrap();
    assert_eq!(counters.malformed, cases.len() as u64);
}

#[test]
fn faults_err_at_address_and_hold_release() {
    let (dev, _, _conn) = device(&["err:addr=0x50"]);
    let mem = memory();
    let mut f = Fixture::new(&mem);
    let e = f.q.add(&[D::R(hdr(EEPROM, 0)), D::W(1)]);
    let ok = f.q.add(&[D::R(hdr(0x30, 0)), D::W(1)]);
    f.run(&dev);
    assert_eq!(f.q.take_used().len(), 2);
    assert_eq!(f.q.read(e.addrs[1], 1), [VIRTIO_I2C_MSG_ERR]);
    assert_eq!(f.q.read(ok.addrs[1], 1), [VIRTIO_I2C_MSG_OK]);

    assert!(
        dev.control(Request::SetFaults {
            faults: vec!["hold:nth=1".into()]
        })
        .ok
    );
    let held = f.q.add(&[D::R(hdr(0x30, 0)), D::W(1)]);
    let after = f.q.add(&[D::R(hdr(0x30, 0)), D::W(1)]);
    f.run(&dev);
    assert_eq!(f.q.take_used(), [(u32::from(after.head), 1)]);
    assert_eq!(dev.control(Request::ReleaseHeld).released, Some(1));
    f.run(&dev);
    assert_eq!(f.q.take_used(), [(u32::from(held.head), 1)]);
    assert_eq!(f.q.read(held.addrs[1], 1), [VIRTIO_I2C_MSG_ERR]);
}

#[test]
fn delay_fault_delays_reply() {
    let (dev, _, _conn) = device(&["delay:ms=60,nth=1"]);
    let mem = memory();
    let mut f = Fixture::new(&mem);
    f.q.add(&[D::R(hdr(0x30, 0)), D::W(1)]);
    let t = std::time::Instant::now();
    f.run(&dev);
    assert!(t.elapsed() >= std::time::Duration::from_millis(60));
    assert_eq!(f.q.take_used().len(), 1);
}

#[test]
fn control_chip_commands_reach_the_bus() {
    let (dev, _, _conn) = device(&[]);
    let r = dev.control(Request::LoadEeprom {
        addr: EEPROM,
        hex: "0102".into(),
    });
    assert!(r.ok, "{r:?}");
    let hex = dev
        .control(Request::DumpEeprom { addr: EEPROM })
        .hex
        .unwrap();
    assert!(
        hex.starts_with("0102ff") || hex.starts_with("010200"),
        "{}",
        &hex[..8]
    );
    assert_eq!(hex.len(), 512);
    let r = dev.control(Request::ReadPins { addr: EEPROM });
    assert!(!r.ok && r.error.unwrap().contains("does not support"));
    let r = dev.control(Request::DumpEeprom { addr: 0x44 });
    assert!(!r.ok);
    let r = dev.control(Request::LoadEeprom {
        addr: EEPROM,
        hex: "0".into(),
    });
    assert!(!r.ok && r.error.unwrap().contains("odd length"));
    let r = dev.control(Request::DriveLine {
        line: 0,
        level: true,
    });
    assert!(!r.ok && r.error.unwrap().contains("not an i2c request"));
}
