//! Helpers shared by the queue fuzz targets: a guest memory with
//! `MockSplitQueue`s on it, and descriptor chains built from fuzz input the
//! way a hostile guest could lay them out (wrong directions, odd sizes,
//! buffers outside or straddling the end of guest memory).

use std::collections::HashSet;

use arbitrary::Arbitrary;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::Queue;
use virtio_queue::desc::{RawDescriptor, split::Descriptor as SplitDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest memory size.
pub const MEM_SIZE: u64 = 0x10_0000;
/// Entries per queue. Chains are never recycled within one input, so this
/// also bounds the descriptors and chains one input can add to a queue.
pub const QUEUE_SIZE: u16 = 128;
/// Where queue `n`'s rings live (each fits in 0x4000 bytes).
pub fn ring_base(n: u64) -> u64 {
    n * 0x4000
}
/// Start of the data area, after the rings of up to four queues.
pub const DATA_START: u64 = 0x1_0000;
/// End of the data area: the last 64 KiB are only reached by descriptors
/// that straddle the end of memory, so those never alias a buffer whose
/// contents a target checks.
pub const DATA_END: u64 = MEM_SIZE - 0x1_0000;
/// Byte that fills every writable buffer before the device sees it.
pub const FILL: u8 = 0xee;

/// A fresh guest memory.
pub fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)])
        .expect("guest memory")
}

/// One descriptor as the guest lays it out.
#[derive(Debug, Clone, Arbitrary)]
pub enum FuzzDesc {
    /// Device-readable, holding these bytes.
    Readable(Vec<u8>),
    /// Device-writable, this long.
    Writable(u16),
    /// A buffer outside guest memory, or straddling its end.
    Outside {
        /// Length.
        len: u16,
        /// Device-writable.
        writable: bool,
        /// Starts inside memory and runs past its end.
        straddle: bool,
    },
}

/// A descriptor as added to the queue.
#[derive(Debug, Clone, Copy)]
pub struct Placed {
    /// Guest address.
    pub addr: GuestAddress,
    /// Length.
    pub len: u32,
    /// Device-writable.
    pub writable: bool,
}

/// A chain as added to the queue.
#[derive(Debug, Clone)]
pub struct Added {
    /// Head index, the id the device returns on the used ring.
    pub head: u16,
    /// Its descriptors.
    pub descs: Vec<Placed>,
}

impl Added {
    /// Bytes the device may write into this chain.
    pub fn writable_len(&self) -> u64 {
        self.descs
            .iter()
            .filter(|d| d.writable)
            .map(|d| u64::from(d.len))
            .sum()
    }
}

/// A queue the "guest" fills and the device drains.
pub struct GuestQueue<'a> {
    mem: &'a GuestMemoryMmap,
    vq: MockSplitQueue<'a, GuestMemoryMmap>,
    next_desc: u16,
    next_chain: u16,
    used_seen: u16,
    /// Chains added, by head.
    pub added: Vec<Added>,
    /// Heads returned so far.
    pub returned: HashSet<u16>,
}

impl<'a> GuestQueue<'a> {
    /// Queue `n` (0..4) on `mem`.
    pub fn new(mem: &'a GuestMemoryMmap, n: u64) -> Self {
        GuestQueue {
            mem,
            vq: MockSplitQueue::create(mem, GuestAddress(ring_base(n)), QUEUE_SIZE),
            next_desc: 0,
            next_chain: 0,
            used_seen: 0,
            added: Vec::new(),
            returned: HashSet::new(),
        }
    }

    /// The device side of the queue.
    pub fn queue(&self) -> Queue {
        self.vq.create_queue::<Queue>().expect("queue")
    }

    /// Adds a chain whose data goes from `*data` on (bumped). Returns
    /// `None`, adding nothing, when the queue or the data area is full or
    /// the chain is empty.
    pub fn add(&mut self, descs: &[FuzzDesc], data: &mut u64) -> Option<Added> {
        let count = u16::try_from(descs.len()).ok()?;
        if count == 0
            || self.next_chain >= QUEUE_SIZE
            || u32::from(self.next_desc) + u32::from(count) > u32::from(QUEUE_SIZE)
        {
            return None;
        }
        let mut placed = Vec::with_capacity(descs.len());
        let mut cursor = *data;
        for d in descs {
            let (addr, len, writable) = match d {
                FuzzDesc::Readable(bytes) => {
                    let len = u64::try_from(bytes.len()).ok()?;
                    if cursor + len > DATA_END {
                        return None;
                    }
                    (GuestAddress(cursor), len, false)
                }
                FuzzDesc::Writable(len) => {
                    let len = u64::from(*len);
                    if cursor + len > DATA_END {
                        return None;
                    }
                    (GuestAddress(cursor), len, true)
                }
                FuzzDesc::Outside {
                    len,
                    writable,
                    straddle,
                } => {
                    let addr = if *straddle && *len > 1 {
                        MEM_SIZE - u64::from(*len / 2)
                    } else {
                        MEM_SIZE + 0x1000
                    };
                    placed.push(Placed {
                        addr: GuestAddress(addr),
                        len: u32::from(*len),
                        writable: *writable,
                    });
                    continue;
                }
            };
            placed.push(Placed {
                addr,
                len: len as u32,
                writable,
            });
            cursor += len.max(1).next_multiple_of(8);
        }
        // Everything fits: write contents, then publish the chain.
        let mut raw = Vec::with_capacity(placed.len());
        for (i, (d, p)) in descs.iter().zip(&placed).enumerate() {
            match d {
                FuzzDesc::Readable(bytes) => {
                    self.mem.write_slice(bytes, p.addr).expect("in memory");
                }
                FuzzDesc::Writable(len) => {
                    self.mem
                        .write_slice(&vec![FILL; usize::from(*len)], p.addr)
                        .expect("in memory");
                }
                FuzzDesc::Outside { .. } => {}
            }
            let last = i + 1 == placed.len();
            let index = self.next_desc + i as u16;
            let mut flags = if p.writable {
                VRING_DESC_F_WRITE as u16
            } else {
                0
            };
            if !last {
                flags |= VRING_DESC_F_NEXT as u16;
            }
            let next = if last { 0 } else { index + 1 };
            raw.push(RawDescriptor::from(SplitDescriptor::new(
                p.addr.0, p.len, flags, next,
            )));
        }
        self.vq
            .add_desc_chains(&raw, self.next_desc)
            .expect("chain fits the table");
        let added = Added {
            head: self.next_desc,
            descs: placed,
        };
        self.next_desc += count;
        self.next_chain += 1;
        *data = cursor;
        self.added.push(added.clone());
        Some(added)
    }

    /// Reads the used ring entries the device added since the last call
    /// and checks each: it names a chain that was added, has not been
    /// returned before, and claims no more bytes than the chain could take.
    pub fn collect_used(&mut self) {
        let idx = self.vq.used().idx().load();
        while self.used_seen != idx {
            let entry = self
                .vq
                .used()
                .ring()
                .ref_at(usize::from(self.used_seen % QUEUE_SIZE))
                .expect("used entry")
                .load();
            let id = u16::try_from(entry.id()).expect("used id fits u16");
            let chain = self
                .added
                .iter()
                .find(|a| a.head == id)
                .unwrap_or_else(|| panic!("used ring names chain {id}, never added"));
            assert!(
                u64::from(entry.len()) <= chain.writable_len(),
                "chain {id}: used len {} > {} writable bytes",
                entry.len(),
                chain.writable_len()
            );
            assert!(self.returned.insert(id), "chain {id} returned twice");
            self.used_seen = self.used_seen.wrapping_add(1);
        }
    }

    /// Panics unless every chain added has come back.
    pub fn assert_all_returned(&self) {
        for a in &self.added {
            assert!(
                self.returned.contains(&a.head),
                "chain {} ({:?}) was never returned",
                a.head,
                a.descs
            );
        }
    }

    /// Reads `len` bytes of guest memory at `addr`.
    pub fn read(&self, addr: GuestAddress, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_slice(&mut v, addr).expect("in memory");
        v
    }
}
