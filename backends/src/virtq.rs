//! Descriptor-chain plumbing shared by the devices: a chain is first
//! collected into plain buffer descriptions, which the device parsers turn
//! into typed requests. Nothing here panics on guest input.

use std::fmt;

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};

/// Chains longer than this are refused as malformed (no device here needs
/// more than three descriptors; the cap bounds the work a guest can cause).
pub const MAX_CHAIN_DESCRIPTORS: usize = 64;

/// One descriptor of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buf {
    /// Guest physical address.
    pub addr: GuestAddress,
    /// Length in bytes.
    pub len: u32,
    /// Device-writable (`VIRTQ_DESC_F_WRITE`).
    pub writable: bool,
}

/// A chain taken off the available ring, detached from guest memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Head descriptor index, the id to put on the used ring.
    pub head: u16,
    /// Descriptors in order.
    pub bufs: Vec<Buf>,
    /// The chain had more than [`MAX_CHAIN_DESCRIPTORS`] descriptors.
    pub truncated: bool,
}

impl Buf {
    /// A descriptor of `len` bytes at guest address `addr`.
    pub fn new(addr: u64, len: u32, writable: bool) -> Buf {
        Buf {
            addr: GuestAddress(addr),
            len,
            writable,
        }
    }
}

impl Chain {
    /// A chain of `bufs` whose head descriptor is `head` (for parsers fed
    /// without a ring).
    pub fn new(head: u16, bufs: Vec<Buf>) -> Chain {
        Chain {
            head,
            bufs,
            truncated: false,
        }
    }

    /// Collects the descriptors of `chain`.
    pub fn collect<M>(chain: DescriptorChain<M>) -> Chain
    where
        M: std::ops::Deref,
        M::Target: GuestMemory,
    {
        let head = chain.head_index();
        let mut bufs = Vec::new();
        let mut truncated = false;
        for desc in chain {
            if bufs.len() == MAX_CHAIN_DESCRIPTORS {
                truncated = true;
                break;
            }
            bufs.push(Buf {
                addr: desc.addr(),
                len: desc.len(),
                writable: desc.is_write_only(),
            });
        }
        Chain {
            head,
            bufs,
            truncated,
        }
    }

    /// The chain's descriptor layout, for messages.
    pub fn layout(&self) -> Layout {
        Layout {
            bufs: self.bufs.iter().map(|b| (b.writable, b.len)).collect(),
            truncated: self.truncated,
        }
    }

    /// Writes `status` into the first byte of the first writable
    /// descriptor and zeroes the rest of that descriptor: the layout of
    /// virtio-gpio responses (`{u8 status; u8 value}`, event `{u8 status}`),
    /// whose status leads. Returns the bytes written (0 when the chain has
    /// nowhere to write).
    pub fn write_leading_status<M: GuestMemory>(&self, mem: &M, status: u8) -> u32 {
        let Some(first) = self.bufs.iter().find(|b| b.writable && b.len > 0) else {
            return 0;
        };
        // A response is a few bytes; never zero-fill a huge guest buffer.
        let len = first.len.min(MAX_STATUS_RESPONSE);
        let mut bytes = vec![0u8; len as usize];
        bytes[0] = status;
        match mem.write_slice(&bytes, first.addr) {
            Ok(()) => len,
            Err(_) => 0,
        }
    }

    /// Writes `status` into the first byte of the first writable
    /// descriptor, and nothing else. Returns the bytes written (0 when the
    /// chain has nowhere to write).
    pub fn write_first_status<M: GuestMemory>(&self, mem: &M, status: u8) -> u32 {
        let Some(first) = self.bufs.iter().find(|b| b.writable && b.len > 0) else {
            return 0;
        };
        match mem.write_obj(status, first.addr) {
            Ok(()) => 1,
            Err(_) => 0,
        }
    }

    /// Writes `status` into the last byte of the last writable descriptor
    /// (where a well-formed request keeps its status byte). Returns the
    /// number of bytes written: 0 when the chain has nowhere to write.
    pub fn write_status<M: GuestMemory>(&self, mem: &M, status: u8) -> u32 {
        let Some(last) = self.bufs.iter().rev().find(|b| b.writable && b.len > 0) else {
            return 0;
        };
        let Some(addr) = last.addr.checked_add(u64::from(last.len) - 1) else {
            return 0;
        };
        match mem.write_obj(status, addr) {
            Ok(()) => 1,
            Err(_) => 0,
        }
    }
}

/// The descriptor layout of a chain, written `[R8, W2]`: `R` readable, `W`
/// writable, then the length; `, ...` at the end when the chain had more
/// than [`MAX_CHAIN_DESCRIPTORS`] descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// (writable, length) of each descriptor.
    pub bufs: Vec<(bool, u32)>,
    /// The chain was cut at [`MAX_CHAIN_DESCRIPTORS`].
    pub truncated: bool,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, (writable, len)) in self.bufs.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{}{len}", if *writable { 'W' } else { 'R' })?;
        }
        f.write_str(if self.truncated { ", ...]" } else { "]" })
    }
}

/// Most bytes [`Chain::write_leading_status`] writes.
const MAX_STATUS_RESPONSE: u32 = 8;

/// Pops every available chain of `queue`. A broken ring (index out of
/// range) ends the batch; what was popped so far is returned.
pub fn pop_all<M>(queue: &mut Queue, mem: &M) -> Vec<Chain>
where
    M: GuestMemory,
{
    let mut chains = Vec::new();
    match queue.iter(mem) {
        Ok(iter) => chains.extend(iter.map(Chain::collect)),
        Err(e) => tracing::warn!("cannot walk the available ring: {e}"),
    }
    chains
}

/// Puts `head` on the used ring with `len` bytes written. Returns false
/// (and logs) if the ring cannot take it.
pub fn complete<M: GuestMemory>(queue: &mut Queue, mem: &M, head: u16, len: u32) -> bool {
    match queue.add_used(mem, head, len) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("cannot return chain {head} to the used ring: {e}");
            false
        }
    }
}
