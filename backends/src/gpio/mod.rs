//! The virtio-gpio controller: wire format ([`virtio_gpio`]), the pure line
//! model ([`lines`]), typed requests parsed from descriptor chains
//! ([`request`]) and the vhost-user transport ([`vhu_gpio`]).

pub mod lines;
pub mod request;
pub mod vhu_gpio;
pub mod virtio_gpio;

pub use vhu_gpio::GpioDevice;
