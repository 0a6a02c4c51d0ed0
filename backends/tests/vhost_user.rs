//! The backends driven by `vhost::vhost_user::Frontend` over a real unix
//! socket: negotiation, config space, a request through a real vring,
//! disconnect and reconnect, and the control socket.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on unexpected errors"
)]

mod common;

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::D;
use dangle_backends::control::{self, Client, ClientError};
use dangle_backends::daemon::{self, Shutdown};
use dangle_backends::device::{Device, Model};
use dangle_backends::gpio::GpioDevice;
use dangle_backends::i2c::bus::Bus;
use dangle_backends::i2c::vhu_i2c::I2cDevice;
use dangle_backends::i2c::virtio_i2c::*;
use vhost::vhost_user::message::{VhostUserConfigFlags, VhostUserProtocolFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

/// How long a test waits for the backend to react before failing.
const TIMEOUT: Duration = Duration::from_secs(10);

struct Served {
    _dir: tempfile::TempDir,
    sock: PathBuf,
    ctl: PathBuf,
    shutdown: Arc<Shutdown>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn serve<M: Model>(device: Arc<Device<M>>) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dev.sock");
    let ctl = dir.path().join("dev.ctl");
    let listener = daemon::bind_socket(&sock).unwrap();
    control::spawn_server(UnixListener::bind(&ctl).unwrap(), device.clone()).unwrap();
    let shutdown = Shutdown::new().unwrap();
    let sd = shutdown.clone();
    let thread = thread::spawn(move || daemon::serve(&device, &listener, &sd).unwrap());
    Served {
        _dir: dir,
        sock,
        ctl,
        shutdown,
        thread: Some(thread),
    }
}

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

fn negotiate(path: &Path, queues: u64) -> (Frontend, u64) {
    let mut fe = Frontend::connect(path, queues).unwrap();
    fe.set_owner().unwrap();
    let features = fe.get_features().unwrap();
    fe.set_features(features).unwrap();
    let proto = fe.get_protocol_features().unwrap();
    fe.set_protocol_features(proto).unwrap();
    (fe, features)
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
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

/// Guest memory shared with the backend through a file, like QEMU's memfd.
struct SharedMem {
    mem: GuestMemoryMmap,
    _file: std::fs::File,
    host: u64,
}

const MEM: usize = 0x40_0000;

fn shared_mem(fe: &mut Frontend) -> SharedMem {
    let file = tempfile::tempfile().unwrap();
    file.set_len(MEM as u64).unwrap();
    let mem = GuestMemoryMmap::<()>::from_ranges_with_files(&[(
        GuestAddress(0),
        MEM,
        Some(FileOffset::new(file.try_clone().unwrap(), 0)),
    )])
    .unwrap();
    let host = mem.get_host_address(GuestAddress(0)).unwrap() as u64;
    let region =
        VhostUserMemoryRegionInfo::from_guest_region(mem.find_region(GuestAddress(0)).unwrap())
            .unwrap();
    fe.set_mem_table(&[region]).unwrap();
    SharedMem {
        mem,
        _file: file,
        host,
    }
}

fn setup_vring(
    fe: &mut Frontend,
    sm: &SharedMem,
    q: &common::MockQueue<'_>,
    index: usize,
) -> (EventFd, EventFd) {
    let size = 64u16;
    fe.set_vring_num(index, size).unwrap();
    fe.set_vring_addr(
        index,
        &VringConfigData {
            queue_max_size: size,
            queue_size: size,
            flags: 0,
            desc_table_addr: sm.host + q.vq.desc_table_addr().0,
            used_ring_addr: sm.host + q.vq.used_addr().0,
            avail_ring_addr: sm.host + q.vq.avail_addr().0,
            log_addr: None,
        },
    )
    .unwrap();
    fe.set_vring_base(index, 0).unwrap();
    let kick = EventFd::new(0).unwrap();
    let call = EventFd::new(0).unwrap();
    fe.set_vring_call(index, &call).unwrap();
    fe.set_vring_kick(index, &kick).unwrap();
    fe.set_vring_enable(index, true).unwrap();
    (kick, call)
}

#[test]
fn i2c_request_through_real_vring_and_back() {
    let s = i2c();
    let (mut fe, _) = negotiate(&s.sock, 1);
    let sm = shared_mem(&mut fe);
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
    let sm = shared_mem(&mut fe);
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
    let sm = shared_mem(&mut fe);
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
    let sm = shared_mem(&mut fe);
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
