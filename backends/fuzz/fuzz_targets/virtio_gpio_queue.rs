//! Fuzzes the virtio-gpio request and event queues end to end: arbitrary
//! chains, well-formed requests with arbitrary fields, event buffers and
//! world-side line changes go through `GpioDevice::process` on two
//! `MockSplitQueue`s. Every request chain must come back exactly once, no
//! chain of either queue twice, none claiming more bytes than it holds; a
//! request with a proper response buffer gets OK or ERR in its status byte,
//! and ERR for a type the spec does not define.

#![no_main]

use arbitrary::Arbitrary;
use dangle_backends::gpio::GpioDevice;
use dangle_backends::gpio::vhu_gpio::{GPIO_FEATURES, GpioConn};
use dangle_backends::gpio::virtio_gpio::{VIRTIO_GPIO_STATUS_ERR, VIRTIO_GPIO_STATUS_OK};
use dangle_backends_fuzz::{DATA_START, FuzzDesc, GuestQueue, memory};
use libfuzzer_sys::fuzz_target;
use vhost_user_backend::VhostUserBackend;

const LINES: u16 = 8;

#[derive(Debug, Arbitrary)]
enum Op {
    /// Any chain on the request queue.
    RawRequest(Vec<FuzzDesc>),
    /// Any chain on the event queue.
    RawEvent(Vec<FuzzDesc>),
    /// A request with a two-byte response buffer.
    Request {
        kind: u16,
        gpio: u16,
        value: u32,
    },
    /// An event buffer for a line.
    Event {
        gpio: u16,
    },
    /// The world drives an input line.
    Drive {
        line: u16,
        level: bool,
    },
    Process,
    /// Features acked again, with or without VIRTIO_GPIO_F_IRQ.
    Ack {
        irq: bool,
    },
}

/// Keeps line numbers mostly valid, sometimes not.
fn line(gpio: u16) -> u16 {
    if gpio & 0x8000 != 0 {
        gpio
    } else {
        gpio % LINES
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let device = GpioDevice::new(
        LINES,
        &["reset".into(), String::new(), "irq".into()],
        Vec::new(),
    );
    let conn = GpioConn::new(device.clone()).expect("connection");
    conn.acked_features(GPIO_FEATURES);
    let mem = memory();
    let mut requests = GuestQueue::new(&mem, 0);
    let mut events = GuestQueue::new(&mem, 1);
    let mut reqq = requests.queue();
    let mut evq = events.queue();
    let mut data = DATA_START;
    // (response address, request type) of requests with a 2-byte response.
    let mut checked = Vec::new();

    for op in ops {
        match op {
            Op::RawRequest(descs) => {
                requests.add(&descs, &mut data);
            }
            Op::RawEvent(descs) => {
                events.add(&descs, &mut data);
            }
            Op::Request { kind, gpio, value } => {
                let kind = if kind & 0x8000 != 0 { kind } else { kind % 8 };
                let mut req = Vec::with_capacity(8);
                req.extend_from_slice(&kind.to_le_bytes());
                req.extend_from_slice(&line(gpio).to_le_bytes());
                req.extend_from_slice(&value.to_le_bytes());
                let descs = [FuzzDesc::Readable(req), FuzzDesc::Writable(2)];
                if let Some(added) = requests.add(&descs, &mut data) {
                    checked.push((added.descs[1].addr, kind));
                }
            }
            Op::Event { gpio } => {
                let descs = [
                    FuzzDesc::Readable(line(gpio).to_le_bytes().to_vec()),
                    FuzzDesc::Writable(1),
                ];
                events.add(&descs, &mut data);
            }
            Op::Drive { line: l, level } => {
                let _ = device.drive_line(line(l), level);
            }
            Op::Process => {
                device.process(&mem, &mut reqq, &mut evq);
                requests.collect_used();
                events.collect_used();
            }
            Op::Ack { irq } => {
                let features = if irq {
                    GPIO_FEATURES
                } else {
                    GPIO_FEATURES & !1
                };
                conn.acked_features(features);
            }
        }
    }
    device.process(&mem, &mut reqq, &mut evq);
    requests.collect_used();
    events.collect_used();
    // Event buffers may legitimately wait for an edge; requests may not.
    requests.assert_all_returned();
    for (resp, kind) in checked {
        let status = requests.read(resp, 1)[0];
        assert!(
            status == VIRTIO_GPIO_STATUS_OK || status == VIRTIO_GPIO_STATUS_ERR,
            "status {status:#x} for request type {kind}"
        );
        // GET_LINE_NAMES needs a bigger buffer than 2 bytes here, and
        // types outside 1..=6 do not exist: both must fail.
        if !(2..=6).contains(&kind) {
            assert_eq!(
                status, VIRTIO_GPIO_STATUS_ERR,
                "request type {kind} answered OK"
            );
        }
    }
    drop(conn);
});
