//! The virtio-i2c adapter and the chips on its bus.
//!
//! # Adding a chip
//!
//! A chip is one model file: the chip as an [`I2cClient`](client::I2cClient),
//! its models as a [`ChipModel`](spec::ChipModel), and a `pub static FAMILY`
//! ([`Family`](spec::Family)) that says how a `--chip` spec names it and how
//! to build it. Declare the file below and add its `FAMILY` to [`CHIPS`]:
//! spec parsing, messages, `Display` and the bus need nothing else.

pub mod at24;
pub mod bus;
pub mod client;
pub mod pca953x;
pub mod request;
pub mod spec;
pub mod vhu_i2c;
pub mod virtio_i2c;

/// The chip registry: every family a `--chip` spec can name.
pub static CHIPS: &[&dyn spec::ChipFamily] = &[&at24::FAMILY, &pca953x::FAMILY];
