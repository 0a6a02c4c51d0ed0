//! GPIO request and event queue handling, driven through `MockSplitQueue`.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on unexpected errors"
)]

mod common;

use std::sync::Arc;

use common::{D, MockQueue, memory};
use dangle_backends::control::{ControlTarget, Request};
use dangle_backends::gpio::GpioDevice;
use dangle_backends::gpio::vhu_gpio::{GPIO_FEATURES, GpioConn};
use dangle_backends::gpio::virtio_gpio::*;
use vhost_user_backend::VhostUserBackend;

fn req(t: u16, gpio: u16, value: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&t.to_le_bytes());
    v.extend_from_slice(&gpio.to_le_bytes());
    v.extend_from_slice(&value.to_le_bytes());
    v
}

fn device(faults: &[&str]) -> (Arc<GpioDevice>, Arc<GpioConn>) {
    let dev = GpioDevice::new(
        8,
        &["reset".into(), "irq".into()],
        faults.iter().map(|f| f.parse().unwrap()).collect(),
    );
    let conn = GpioConn::new(dev.clone()).unwrap();
    conn.acked_features(GPIO_FEATURES);
    (dev, conn)
}

struct Fixture<'a> {
    reqs: MockQueue<'a>,
    evs: MockQueue<'a>,
    rq: virtio_queue::Queue,
    eq: virtio_queue::Queue,
}

impl<'a> Fixture<'a> {
    fn new(mem: &'a vm_memory::GuestMemoryMmap) -> Self {
        let reqs = MockQueue::new(mem, 0x0, 0x10_0000, 64);
        let evs = MockQueue::new(mem, 0x8000, 0x20_0000, 64);
        Fixture {
            rq: reqs.queue(),
            eq: evs.queue(),
            reqs,
            evs,
        }
    }

    fn run(&mut self, dev: &GpioDevice) {
        dev.process(self.reqs.mem, &mut self.rq, &mut self.eq);
    }
}

/// Sends one request through a fresh fixture and returns (status, value).
fn one(dev: &GpioDevice, t: u16, gpio: u16, value: u32) -> (u8, u8) {
    let mem = memory();
    let mut f = Fixture::new(&mem);
    let c = f.reqs.add(&[D::R(req(t, gpio, value)), D::W(2)]);
    f.run(dev);
    assert_eq!(f.reqs.take_used(), [(u32::from(c.head), 2)]);
    let r = f.reqs.read(c.addrs[1], 2);
    (r[0], r[1])
}

#[test]
fn requests_direction_and_value_roundtrip() {
    let (dev, _conn) = device(&[]);
    assert_eq!(
        one(&dev, VIRTIO_GPIO_MSG_GET_DIRECTION, 3, 0),
        (VIRTIO_GPIO_STATUS_OK, VIRTIO_GPIO_DIRECTION_NONE)
    );
    assert_eq!(
        one(&dev, VIRTIO_GPIO_MSG_SET_VALUE, 3, 1).0,
        VIRTIO_GPIO_STATUS_OK
    );
    assert_eq!(
        one(&dev, VIRTIO_GPIO_MSG_SET_DIRECTION, 3, 1).0,
        VIRTIO_GPIO_STATUS_OK
    );
    assert_eq!(
        one(&dev, VIRTIO_GPIO_MSG_GET_DIRECTION, 3, 0),
        (VIRTIO_GPIO_STATUS_OK, VIRTIO_GPIO_DIRECTION_OUT)
    );
    assert_eq!(
        one(&dev, VIRTIO_GPIO_MSG_GET_VALUE, 3, 0),
        (VIRTIO_GPIO_STATUS_OK, 1)
    );
    // Bad direction value, bad line.
    assert_eq!(
        one(&dev, VIRTIO_GPIO_MSG_SET_DIRECTION, 3, 9).0,
        VIRTIO_GPIO_STATUS_ERR
    );
    assert_eq!(
        one(&dev, VIRTIO_GPIO_MSG_GET_VALUE, 8, 0).0,
        VIRTIO_GPIO_STATUS_ERR
    );
    // Input reads the world.
    assert_eq!(
        one(&dev, VIRTIO_GPIO_MSG_SET_DIRECTION, 4, 2).0,
        VIRTIO_GPIO_STATUS_OK
    );
    dev.drive_line(4, true).unwrap();
    assert_eq!(
        one(&dev, VIRTIO_GPIO_MSG_GET_VALUE, 4, 0),
        (VIRTIO_GPIO_STATUS_OK, 1)
    );
}

#[test]
fn requests_get_line_names_returns_block() {
    let (dev, _conn) = device(&[]);
    let size = dev.config().gpio_names_size.to_native() as usize;
    assert_eq!(size, "reset\0irq\0".len() + 6);
    let mem = memory();
    let mut f = Fixture::new(&mem);
    let c = f.reqs.add(&[
        D::R(req(VIRTIO_GPIO_MSG_GET_LINE_NAMES, 0, 0)),
        D::W(1 + size as u32),
    ]);
    f.run(&dev);
    assert_eq!(f.reqs.take_used(), [(u32::from(c.head), 1 + size as u32)]);
    let r = f.reqs.read(c.addrs[1], 1 + size);
    assert_eq!(r[0], VIRTIO_GPIO_STATUS_OK);
    assert_eq!(&r[1..], b"reset\0irq\0\0\0\0\0\0\0");
}

#[test]
fn malformed_chains_get_err_and_are_always_returned() {
    let (dev, _conn) = device(&[]);
    let mem = memory();
    let mut f = Fixture::new(&mem);
    let get = req(VIRTIO_GPIO_MSG_GET_VALUE, 0, 0);
    let cases = [
        f.reqs.add(&[D::R(get.clone())]), // no response buffer
        f.reqs.add(&[D::R(get.clone()), D::R(vec![0, 0])]), // wrong direction
        f.reqs.add(&[D::R(get.clone()), D::W(1)]), // short response
        f.reqs.add(&[D::R(get[..6].to_vec()), D::W(2)]), // short request
        f.reqs.add(&[D::R(req(0x77, 0, 0)), D::W(2)]), // unknown type
        f.reqs.add(&[D::RBad(8), D::W(2)]), // request outside memory
        f.reqs.add(&[D::W(2), D::R(get.clone())]), // reversed
        f.reqs.add(&[D::R(get.clone()), D::W(2), D::W(2)]), // too many
        f.reqs
            .add(&[D::R(req(VIRTIO_GPIO_MSG_GET_LINE_NAMES, 0, 0)), D::W(2)]), // names too short
    ];
    f.run(&dev);
    let used = f.reqs.take_used();
    assert_eq!(used.len(), cases.len(), "every chain is returned");
    assert_eq!(used[0], (u32::from(cases[0].head), 0));
    assert_eq!(used[1], (u32::from(cases[1].head), 0));
    // virtio-gpio responses lead with their status (`{u8 status; u8
    // value}`): ERR goes in the first byte of the first writable
    // descriptor and the rest of that descriptor is zeroed, so a guest that
    // left zeroes (= OK) there cannot mistake the error for success.
    let first_writable = [0, 0, 1, 2, 2, 2, 2, 2, 2];
    for (i, c) in cases.iter().enumerate().skip(2) {
        assert_eq!(used[i].0, u32::from(c.head));
        assert_eq!(
            used[i].1, first_writable[i],
            "case {i}: the status response is written"
        );
    }
    assert_eq!(f.reqs.read(cases[2].addrs[1], 1), [VIRTIO_GPIO_STATUS_ERR]);
    for i in [3, 4, 5, 7, 8] {
        assert_eq!(
            f.reqs.read(cases[i].addrs[1], 2),
            [VIRTIO_GPIO_STATUS_ERR, 0],
            "case {i}: status byte first"
        );
    }
    assert_eq!(
        f.reqs.read(cases[6].addrs[0], 2),
        [VIRTIO_GPIO_STATUS_ERR, 0]
    );
    let mut q = ControlProbe(dev.clone());
    assert_eq!(q.counters().malformed, cases.len() as u64);
}

struct ControlProbe(Arc<GpioDevice>);
impl ControlProbe {
    fn counters(&mut self) -> dangle_backends::counters::Counters {
        self.0.control(Request::Counters).counters.unwrap()
    }
}

#[test]
fn irq_edge_reaches_event_queue_and_none_returns_invalid() {
    let (dev, _conn) = device(&[]);
    let mem = memory();
    let mut f = Fixture::new(&mem);
    // Line 1: rising edge; queue its event buffer.
    f.reqs
        .add(&[D::R(req(VIRTIO_GPIO_MSG_SET_DIRECTION, 1, 2)), D::W(2)]);
    let set = f.reqs.add(&[
        D::R(req(
            VIRTIO_GPIO_MSG_IRQ_TYPE,
            1,
            u32::from(VIRTIO_GPIO_IRQ_TYPE_EDGE_RISING),
        )),
        D::W(2),
    ]);
    let ev = f.evs.add(&[D::R(1u16.to_le_bytes().to_vec()), D::W(1)]);
    f.run(&dev);
    assert_eq!(f.reqs.take_used().len(), 2);
    assert_eq!(f.reqs.read(set.addrs[1], 1), [VIRTIO_GPIO_STATUS_OK]);
    assert!(f.evs.take_used().is_empty(), "no edge yet");
    dev.drive_line(1, true).unwrap();
    f.run(&dev);
    assert_eq!(f.evs.take_used(), [(u32::from(ev.head), 1)]);
    assert_eq!(f.evs.read(ev.addrs[1], 1), [VIRTIO_GPIO_IRQ_STATUS_VALID]);

    // Masked: an edge latches; the next buffer fires at once.
    dev.drive_line(1, false).unwrap();
    dev.drive_line(1, true).unwrap();
    let ev2 = f.evs.add(&[D::R(1u16.to_le_bytes().to_vec()), D::W(1)]);
    f.run(&dev);
    assert_eq!(f.evs.take_used(), [(u32::from(ev2.head), 1)]);
    assert_eq!(f.evs.read(ev2.addrs[1], 1), [VIRTIO_GPIO_IRQ_STATUS_VALID]);

    // Queue one more, then disable: it comes back INVALID.
    let ev3 = f.evs.add(&[D::R(1u16.to_le_bytes().to_vec()), D::W(1)]);
    f.run(&dev);
    assert!(f.evs.take_used().is_empty());
    f.reqs
        .add(&[D::R(req(VIRTIO_GPIO_MSG_IRQ_TYPE, 1, 0)), D::W(2)]);
    f.run(&dev);
    assert_eq!(f.evs.take_used(), [(u32::from(ev3.head), 1)]);
    assert_eq!(
        f.evs.read(ev3.addrs[1], 1),
        [VIRTIO_GPIO_IRQ_STATUS_INVALID]
    );
    assert_eq!(f.reqs.take_used().len(), 1);
}

#[test]
fn event_buffer_for_disabled_line_returned_invalid() {
    let (dev, _conn) = device(&[]);
    let mem = memory();
    let mut f = Fixture::new(&mem);
    let ev = f.evs.add(&[D::R(5u16.to_le_bytes().to_vec()), D::W(1)]);
    let bad = f.evs.add(&[D::R(vec![1])]);
    f.run(&dev);
    assert_eq!(
        f.evs.take_used(),
        [(u32::from(ev.head), 1), (u32::from(bad.head), 0)]
    );
    assert_eq!(f.evs.read(ev.addrs[1], 1), [VIRTIO_GPIO_IRQ_STATUS_INVALID]);
}

#[test]
fn irq_type_without_negotiated_feature_fails() {
    let dev = GpioDevice::new(2, &[], vec![]);
    let _conn = GpioConn::new(dev.clone()).unwrap();
    assert_eq!(
        one(&dev, VIRTIO_GPIO_MSG_IRQ_TYPE, 0, 1).0,
        VIRTIO_GPIO_STATUS_ERR
    );
}

#[test]
fn fault_err_nth_and_hold_release() {
    let (dev, _conn) = device(&["err:nth=2"]);
    assert_eq!(
        one(&dev, VIRTIO_GPIO_MSG_GET_VALUE, 0, 0).0,
        VIRTIO_GPIO_STATUS_OK
    );
    assert_eq!(
        one(&dev, VIRTIO_GPIO_MSG_GET_VALUE, 0, 0).0,
        VIRTIO_GPIO_STATUS_ERR
    );
    assert_eq!(
        one(&dev, VIRTIO_GPIO_MSG_GET_VALUE, 0, 0).0,
        VIRTIO_GPIO_STATUS_OK
    );

    let resp = dev.control(Request::SetFaults {
        faults: vec!["hold:line=2".into()],
    });
    assert!(resp.ok, "{resp:?}");
    let mem = memory();
    let mut f = Fixture::new(&mem);
    let held = f
        .reqs
        .add(&[D::R(req(VIRTIO_GPIO_MSG_GET_VALUE, 2, 0)), D::W(2)]);
    let free = f
        .reqs
        .add(&[D::R(req(VIRTIO_GPIO_MSG_GET_VALUE, 1, 0)), D::W(2)]);
    f.run(&dev);
    assert_eq!(f.reqs.take_used(), [(u32::from(free.head), 2)]);
    let resp = dev.control(Request::ReleaseHeld);
    assert_eq!(resp.released, Some(1));
    f.run(&dev);
    assert_eq!(f.reqs.take_used(), [(u32::from(held.head), 1)]);
    assert_eq!(f.reqs.read(held.addrs[1], 1), [VIRTIO_GPIO_STATUS_ERR]);
    let c = dev.control(Request::Counters).counters.unwrap();
    assert_eq!(c.faults_fired.get("err"), Some(&1));
    assert_eq!(c.faults_fired.get("hold"), Some(&1));
    assert_eq!(c.requests.get("get_value"), Some(&5));
}

#[test]
fn storm_fault_toggles_line() {
    let (dev, _conn) = device(&["storm:line=6,count=5,period_us=10"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let c = dev.control(Request::Counters).counters.unwrap();
        if c.faults_fired.get("storm") == Some(&5) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "storm did not finish: {c:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // 5 toggles from low: high, low, high, low, high.
    assert!(dev.line_states()[6].input);
}

#[test]
fn config_space_reads_are_bounds_checked() {
    let (_dev, conn) = device(&[]);
    let full = conn.get_config(0, 8);
    assert_eq!(full.len(), 8);
    assert_eq!(&full[..2], &8u16.to_le_bytes());
    assert_eq!(conn.get_config(6, 2), full[6..8]);
    assert!(conn.get_config(4, 8).is_empty());
    assert!(conn.get_config(8, 1).is_empty());
    assert!(conn.get_config(u32::MAX, 2).is_empty());
}
