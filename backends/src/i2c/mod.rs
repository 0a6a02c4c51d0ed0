//! The virtio-i2c adapter and the chips on its bus.

pub mod at24;
pub mod bus;
pub mod client;
pub mod pca953x;
pub mod request;
pub mod spec;
pub mod vhu_i2c;
pub mod virtio_i2c;
