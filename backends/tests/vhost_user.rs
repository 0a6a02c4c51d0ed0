//! The backends driven by `vhost::vhost_user::Frontend` over a real unix
//! socket: negotiation, config space, a request through a real vring,
//! disconnect and reconnect, and the control socket.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on unexpected errors"
)]

mod common;

use common::D;
use common::frontend::{self, Served, SharedMem, negotiate, serve, wait_for};
use dangle_backends::control::{Client, ClientError};
use dangle_backends::gpio::GpioDevice;
use dangle_backends::i2c::bus::Bus;
use dangle_backends::i2c::vhu_i2c::I2cDevice;
use dangle_backends::i2c::virtio_i2c::*;
use vhost::VhostBackend;
use vhost::vhost_user::message::{VhostUserConfigFlags, VhostUserProtocolFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vmm_sys_util::eventfd::EventFd;

fn gpio() -> Served {
    let dev = GpioDevice::new(32, &["a".into(), "bb".into()], vec![]);
    serve(dev)
}

fn i2c() -> Served {
    let bus = Bus::from_specs(&[
        "at24:0x50:24c02".parse().unwrap(),
        "pca9555:0x20".parse().unwrap(),
    ])
    .unwrap();
    let dev = I2cDevice::with_bus(bus, vec![]);
    serve(dev)
}

#[test]
fn gpio_negotiation_offers_irq_and_config_space() {
    let s = gpio();
    let (mut fe, features) = negotiate(&s.sock, 2);
    assert_ne!(features & (1 << 0), 0, "VIRTIO_GPIO_F_IRQ");
    assert_ne!(features & (1 << 32), 0, "VIRTIO_F_VERSION_1");
    assert!(
        fe.get_protocol_features()
            .unwrap()
            .contains(VhostUserProtocolFeatures::CONFIG)
    );
    assert_eq!(fe.get_queue_num().unwrap(), 2);
    let (_, cfg) = fe
        .get_config(0, 8, VhostUserConfigFlags::empty(), &[0; 8])
        .unwrap();
    let names_size = "a\0bb\0".len() as u32 + 30;
    let mut want = vec![32, 0, 0, 0];
    want.extend_from_slice(&names_size.to_le_bytes());
    assert_eq!(cfg, want);
    let (_, part) = fe
        .get_config(4, 4, VhostUserConfigFlags::empty(), &[0; 4])
        .unwrap();
    assert_eq!(part, names_size.to_le_bytes());
    // Reads past the end are refused by the backend with an empty reply
    // (tested on `GpioConn::get_config` directly: vhost's Frontend does not
    // read that reply back).
    assert_eq!(fe.get_features().unwrap(), features);
}

#[test]
fn i2c_negotiation_offers_zero_length_request() {
    let s = i2c();
    let (mut fe, features) = negotiate(&s.sock, 1);
    assert_ne!(features & (1 << VIRTIO_I2C_F_ZERO_LENGTH_REQUEST), 0);
    assert_ne!(features & (1 << 32), 0, "VIRTIO_F_VERSION_1");
    assert_eq!(fe.get_queue_num().unwrap(), 1);
}

#[test]
fn reconnect_after_disconnect_starts_fresh_and_keeps_eeprom() {
    let s = i2c();
    let mut client = Client::connect(&s.ctl).unwrap();
    client.load_eeprom(0x50, &[0xde, 0xad]).unwrap();
    for round in 1..=3u64 {
        let (fe, _) = negotiate(&s.sock, 1);
        wait_for("connection count", || {
            client.counters().unwrap().connections == round
        });
        drop(fe);
    }
    let (_fe, features) = negotiate(&s.sock, 1);
    assert_ne!(features & 1, 0);
    assert_eq!(&client.dump_eeprom(0x50).unwrap()[..2], [0xde, 0xad]);
}

/// Size of the shared guest memory.
const MEM: usize = 0x40_0000;

/// Sets up vring `index` on the rings of `q`.
fn setup_vring(
    fe: &mut Frontend,
    sm: &SharedMem,
    q: &common::MockQueue<'_>,
    index: usize,
) -> (EventFd, EventFd) {
    frontend::setup_vring(fe, sm, index, 64, q.ring())
}

#[test]
fn i2c_request_through_real_vring_and_back() {
    let s = i2c();
    let (mut fe, _) = negotiate(&s.sock, 1);
    let sm = SharedMem::new(&mut fe, MEM);
    let mut q = common::MockQueue::new(&sm.mem, 0, 0x10_0000, 64);
    let (kick, call) = setup_vring(&mut fe, &sm, &q, 0);
    let hdr = |addr: u16, flags: u32| {
        let mut v = (addr << 1).to_le_bytes().to_vec();
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&flags.to_le_bytes());
        v
    };
    let w = q.add(&[D::R(hdr(0x50, 0)), D::R(vec![0x00, 0x42]), D::W(1)]);
    let set = q.add(&[
        D::R(hdr(0x50, VIRTIO_I2C_FLAGS_FAIL_NEXT)),
        D::R(vec![0x00]),
        D::W(1),
    ]);
    let r = q.add(&[D::R(hdr(0x50, VIRTIO_I2C_FLAGS_M_RD)), D::W(1), D::W(1)]);
    let bad = q.add(&[D::R(hdr(0x50, VIRTIO_I2C_FLAGS_M_RD))]);
    kick.write(1).unwrap();
    let mut used = Vec::new();
    wait_for("4 used entries", || {
        used.extend(q.take_used());
        used.len() == 4
    });
    assert!(call.read().unwrap() >= 1, "the guest was notified");
    assert_eq!(used[0].0, u32::from(w.head));
    assert_eq!(used[3], (u32::from(bad.head), 0));
    assert_eq!(q.read(set.addrs[2], 1), [VIRTIO_I2C_MSG_OK]);
    assert_eq!(q.read(r.addrs[1], 2), [0x42, VIRTIO_I2C_MSG_OK]);
}

#[test]
fn gpio_interrupt_driven_from_control_reaches_real_vring() {
    let s = gpio();
    let (mut fe, _) = negotiate(&s.sock, 2);
    let sm = SharedMem::new(&mut fe, MEM);
    let mut rq = common::MockQueue::new(&sm.mem, 0, 0x10_0000, 64);
    let mut eq = common::MockQueue::new(&sm.mem, 0x8000, 0x20_0000, 64);
    let (rkick, _rcall) = setup_vring(&mut fe, &sm, &rq, 0);
    let (ekick, ecall) = setup_vring(&mut fe, &sm, &eq, 1);
    let req = |t: u16, gpio: u16, value: u32| {
        let mut v = t.to_le_bytes().to_vec();
        v.extend_from_slice(&gpio.to_le_bytes());
        v.extend_from_slice(&value.to_le_bytes());
        v
    };
    // Level-high interrupt on line 7.
    rq.add(&[D::R(req(6, 7, 4)), D::W(2)]);
    rkick.write(1).unwrap();
    let mut used = Vec::new();
    wait_for("SET_IRQ_TYPE reply", || {
        used.extend(rq.take_used());
        used.len() == 1
    });
    let ev = eq.add(&[D::R(7u16.to_le_bytes().to_vec()), D::W(1)]);
    ekick.write(1).unwrap();
    let mut client = Client::connect(&s.ctl).unwrap();
    wait_for("line unmasked", || client.read_line(7).unwrap().unmasked);
    client.drive_line(7, true).unwrap();
    let mut evs = Vec::new();
    wait_for("interrupt", || {
        evs.extend(eq.take_used());
        !evs.is_empty()
    });
    assert_eq!(evs, [(u32::from(ev.head), 1)]);
    assert_eq!(eq.read(ev.addrs[1], 1), [1]);
    assert!(ecall.read().unwrap() >= 1);
    assert_eq!(client.counters().unwrap().irqs, 1);
}

#[test]
fn control_socket_round_trips_and_refusals() {
    let s = gpio();
    let mut c = Client::connect(&s.ctl).unwrap();
    assert_eq!(c.ping().unwrap(), "gpio");
    c.drive_line(3, true).unwrap();
    let l = c.read_line(3).unwrap();
    assert!(l.input && l.value);
    assert_eq!(c.read_lines().unwrap().len(), 32);
    assert_eq!(c.read_lines().unwrap()[1].name, "bb");
    c.set_faults(&["delay:ms=1", "err:line=4"]).unwrap();
    match c.set_faults(&["err:addr=0x99"]) {
        Err(ClientError::Refused(msg)) => assert!(msg.contains("7-bit address"), "{msg}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    match c.drive_line(99, true) {
        Err(ClientError::Refused(msg)) => assert!(msg.contains("out of range"), "{msg}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(matches!(c.dump_eeprom(0x50), Err(ClientError::Refused(_))));
    c.clear_faults().unwrap();
    assert_eq!(c.release_held().unwrap(), 0);
}

#[test]
fn held_chain_dropped_when_ring_stops() {
    let s = i2c();
    let (mut fe, _) = negotiate(&s.sock, 1);
    let sm = SharedMem::new(&mut fe, MEM);
    let mut q = common::MockQueue::new(&sm.mem, 0, 0x10_0000, 64);
    let (kick, _call) = setup_vring(&mut fe, &sm, &q, 0);
    let mut client = Client::connect(&s.ctl).unwrap();
    client.set_faults(&["hold:addr=0x50"]).unwrap();
    let mut hdr = (0x50u16 << 1).to_le_bytes().to_vec();
    hdr.extend_from_slice(&[0; 6]);
    q.add(&[D::R(hdr), D::W(1)]);
    kick.write(1).unwrap();
    wait_for("held chain", || client.counters().unwrap().held == 1);
    assert!(q.take_used().is_empty(), "a held chain is not returned");
    fe.get_vring_base(0).unwrap();
    assert_eq!(client.counters().unwrap().held, 0);
    assert_eq!(client.release_held().unwrap(), 0);
}

#[test]
fn abort_fault_kills_the_process_at_request_n() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("i2c.sock");
    // Through a shell that turns core dumps off: the abort is expected.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -c 0; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_dangle-backend"))
        .args([
            "i2c",
            "--socket",
            sock.to_str().unwrap(),
            "--chip",
            "at24:0x50:24c02",
        ])
        .args(["--fault", "abort:nth=2"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("backend socket", || sock.exists());
    let (mut fe, _) = negotiate(&sock, 1);
    let sm = SharedMem::new(&mut fe, MEM);
    let mut q = common::MockQueue::new(&sm.mem, 0, 0x10_0000, 64);
    let (kick, _call) = setup_vring(&mut fe, &sm, &q, 0);
    let mut hdr = (0x50u16 << 1).to_le_bytes().to_vec();
    hdr.extend_from_slice(&[0; 6]);
    q.add(&[D::R(hdr.clone()), D::W(1)]);
    kick.write(1).unwrap();
    wait_for("first reply", || q.take_used().len() == 1);
    assert!(child.try_wait().unwrap().is_none(), "alive after request 1");
    q.add(&[D::R(hdr), D::W(1)]);
    kick.write(1).unwrap();
    let mut status = None;
    wait_for("backend exit", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().signal(), Some(6), "SIGABRT");
}
