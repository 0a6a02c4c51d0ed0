//! Test fixtures: a guest memory with `MockSplitQueue`s on it and a builder
//! for descriptor chains; in [`frontend`], a backend served in the test
//! process and a vhost-user front end for it.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the fixtures"
)]

use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{RawDescriptor, split::Descriptor as SplitDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub mod frontend;

/// Memory size of the fixture.
pub const MEM_SIZE: usize = 0x40_0000;

/// A fresh guest memory.
pub fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).expect("guest memory")
}

/// One descriptor to build.
#[derive(Debug, Clone)]
pub enum D {
    /// Device-readable, with these contents.
    R(Vec<u8>),
    /// Device-writable, this long (filled with 0xee so writes show).
    W(u32),
    /// Device-readable, this long, at an address outside guest memory.
    RBad(u32),
}

/// A mock split queue plus allocation state.
pub struct MockQueue<'a> {
    pub mem: &'a GuestMemoryMmap,
    pub vq: MockSplitQueue<'a, GuestMemoryMmap>,
    next_desc: u16,
    next_data: u64,
    used_seen: u16,
    len: u16,
}

/// A chain added to the queue: its head and each descriptor's address.
#[derive(Debug, Clone)]
pub struct Added {
    pub head: u16,
    pub addrs: Vec<GuestAddress>,
}

impl<'a> MockQueue<'a> {
    /// A queue of `len` entries at `base`, data from `data`.
    pub fn new(mem: &'a GuestMemoryMmap, base: u64, data: u64, len: u16) -> Self {
        MockQueue {
            mem,
            vq: MockSplitQueue::create(mem, GuestAddress(base), len),
            next_desc: 0,
            next_data: data,
            used_seen: 0,
            len,
        }
    }

    /// Where the queue's rings are, for a vhost-user front end.
    pub fn ring(&self) -> frontend::Ring {
        frontend::Ring {
            desc: self.vq.desc_table_addr().0,
            avail: self.vq.avail_addr().0,
            used: self.vq.used_addr().0,
        }
    }

    /// The device-side queue.
    pub fn queue(&self) -> Queue {
        self.vq.create_queue::<Queue>().expect("queue")
    }

    /// Adds one chain.
    pub fn add(&mut self, descs: &[D]) -> Added {
        let head = self.next_desc;
        let mut raw = Vec::new();
        let mut addrs = Vec::new();
        for (i, d) in descs.iter().enumerate() {
            let idx = head + u16::try_from(i).expect("small chain");
            let last = i + 1 == descs.len();
            let (addr, len, mut flags) = match d {
                D::R(bytes) => {
                    let a = GuestAddress(self.next_data);
                    self.mem.write_slice(bytes, a).expect("write request");
                    (a, u32::try_from(bytes.len()).expect("len"), 0u16)
                }
                D::W(n) => {
                    let a = GuestAddress(self.next_data);
                    self.mem
                        .write_slice(&vec![0xee; *n as usize], a)
                        .expect("fill response");
                    (a, *n, VRING_DESC_F_WRITE as u16)
                }
                D::RBad(n) => (GuestAddress(0x1_0000_0000), *n, 0u16),
            };
            self.next_data += u64::from(len.max(1)).next_multiple_of(16);
            if !last {
                flags |= VRING_DESC_F_NEXT as u16;
            }
            let next = if last { 0 } else { idx + 1 };
            raw.push(RawDescriptor::from(SplitDescriptor::new(
                addr.0, len, flags, next,
            )));
            addrs.push(addr);
        }
        self.vq.add_desc_chains(&raw, head).expect("add chain");
        self.next_desc += u16::try_from(descs.len()).expect("small chain");
        Added { head, addrs }
    }

    /// Used entries added since the last call, as (id, len).
    pub fn take_used(&mut self) -> Vec<(u32, u32)> {
        let idx = self.vq.used().idx().load();
        let mut out = Vec::new();
        while self.used_seen != idx {
            let e = self
                .vq
                .used()
                .ring()
                .ref_at(usize::from(self.used_seen % self.len))
                .expect("used entry")
                .load();
            out.push((e.id(), e.len()));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        out
    }

    /// Reads `n` bytes at `addr`.
    pub fn read(&self, addr: GuestAddress, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.mem.read_slice(&mut v, addr).expect("read back");
        v
    }
}

/// Keeps `Queue`'s trait in scope for callers.
pub fn ready(q: &Queue) -> bool {
    q.ready()
}
