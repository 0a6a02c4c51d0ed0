//! In-process cost of one GPIO request and one I2C transfer through the
//! request handling of the backends (chain parsing, fault plan, model,
//! response, used ring), on `MockSplitQueue` rings: no vhost-user socket, no
//! guest. Run with `cargo bench -p dangle-backends --bench requests`.

#![expect(clippy::unwrap_used, reason = "a benchmark fails loudly")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use dangle_backends::gpio::GpioDevice;
use dangle_backends::gpio::vhu_gpio::{GPIO_FEATURES, GpioConn};
use dangle_backends::gpio::virtio_gpio::VIRTIO_GPIO_MSG_GET_VALUE;
use dangle_backends::i2c::bus::Bus;
use dangle_backends::i2c::vhu_i2c::I2cDevice;
use dangle_backends::i2c::virtio_i2c::{VIRTIO_I2C_FLAGS_FAIL_NEXT, VIRTIO_I2C_FLAGS_M_RD};
use vhost_user_backend::VhostUserBackend;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::Queue;
use virtio_queue::desc::{RawDescriptor, split::Descriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Measuring time per figure.
const BUDGET: Duration = Duration::from_secs(2);

/// (address, length, writable) of each descriptor of each chain.
type Chains = Vec<Vec<(u64, u32, bool)>>;

fn raw(chains: &Chains) -> Vec<RawDescriptor> {
    let mut out = Vec::new();
    for chain in chains {
        for (i, &(addr, len, writable)) in chain.iter().enumerate() {
            let last = i + 1 == chain.len();
            let mut flags = if writable {
                VRING_DESC_F_WRITE as u16
            } else {
                0
            };
            if !last {
                flags |= VRING_DESC_F_NEXT as u16;
            }
            let next = if last {
                0
            } else {
                u16::try_from(out.len() + 1).unwrap()
            };
            out.push(RawDescriptor::from(Descriptor::new(addr, len, flags, next)));
        }
    }
    out
}

/// Runs `process` on fresh rings holding `chains` until the budget is
/// spent; returns ns per chain-group of `per` chains.
fn measure(
    mem: &GuestMemoryMmap,
    qlen: u16,
    chains: &Chains,
    per: usize,
    mut process: impl FnMut(&mut Queue, &mut Queue),
) -> f64 {
    let descs = raw(chains);
    let mut spent = Duration::ZERO;
    let mut done = 0usize;
    while spent < BUDGET {
        let vq = MockSplitQueue::create(mem, GuestAddress(0), qlen);
        let ev = MockSplitQueue::create(mem, GuestAddress(0x10_0000), qlen);
        vq.add_desc_chains(&descs, 0).unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let mut e: Queue = ev.create_queue().unwrap();
        let start = Instant::now();
        process(&mut q, &mut e);
        spent += start.elapsed();
        assert_eq!(
            usize::from(vq.used().idx().load()),
            chains.len(),
            "every chain completed"
        );
        done += chains.len() / per;
    }
    spent.as_nanos() as f64 / done as f64
}

fn gpio(mem: &GuestMemoryMmap) -> f64 {
    let dev = GpioDevice::new(32, &[], vec![]);
    let conn = GpioConn::new(dev.clone()).unwrap();
    conn.acked_features(GPIO_FEATURES);
    let qlen = 256u16;
    let mut chains = Chains::new();
    for i in 0..u64::from(qlen / 2) {
        let base = 0x20_0000 + i * 32;
        let mut req = VIRTIO_GPIO_MSG_GET_VALUE.to_le_bytes().to_vec();
        req.extend_from_slice(&u16::try_from(i % 32).unwrap().to_le_bytes());
        req.extend_from_slice(&0u32.to_le_bytes());
        mem.write_slice(&req, GuestAddress(base)).unwrap();
        chains.push(vec![(base, 8, false), (base + 16, 2, true)]);
    }
    measure(mem, qlen, &chains, 1, |q, e| {
        black_box(dev.process(mem, q, e));
    })
}

fn i2c(mem: &GuestMemoryMmap) -> f64 {
    let bus = Bus::from_specs(&["at24:0x50:24c32".parse().unwrap()]).unwrap();
    let dev = I2cDevice::with_bus(bus, vec![]);
    let _conn = dangle_backends::i2c::vhu_i2c::I2cConn::new(dev.clone()).unwrap();
    let qlen = 1024u16;
    let hdr = |flags: u32| {
        let mut v = (0x50u16 << 1).to_le_bytes().to_vec();
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&flags.to_le_bytes());
        v
    };
    let mut chains = Chains::new();
    // One transfer = set the word address (FAIL_NEXT), then read 16 bytes.
    for i in 0..u64::from(qlen / 6) {
        let base = 0x20_0000 + i * 128;
        mem.write_slice(&hdr(VIRTIO_I2C_FLAGS_FAIL_NEXT), GuestAddress(base))
            .unwrap();
        mem.write_slice(&[0x01, 0x00], GuestAddress(base + 16))
            .unwrap();
        mem.write_slice(&hdr(VIRTIO_I2C_FLAGS_M_RD), GuestAddress(base + 48))
            .unwrap();
        chains.push(vec![
            (base, 8, false),
            (base + 16, 2, false),
            (base + 32, 1, true),
        ]);
        chains.push(vec![
            (base + 48, 8, false),
            (base + 64, 16, true),
            (base + 96, 1, true),
        ]);
    }
    measure(mem, qlen, &chains, 2, |q, _| {
        black_box(dev.process(mem, q));
    })
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
    println!("gpio GET_VALUE request:            {:>8.0} ns", gpio(&mem));
    println!("i2c transfer (2 msgs, 16-byte read): {:>6.0} ns", i2c(&mem));
}
