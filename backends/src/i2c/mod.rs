//! The virtio-i2c adapter and the chips on its bus.

pub mod client;
