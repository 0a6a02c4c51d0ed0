//! virtio-gpio wire format (VIRTIO 1.2, section 5.17): constants named as in
//! the spec and `#[repr(C)]` structs laid out exactly as on the wire.

use vm_memory::{ByteValued, Le16, Le32};

/// Device ID of virtio-gpio.
pub const VIRTIO_ID_GPIO: u32 = 41;

/// Feature bit: the device supports interrupts on the event queue.
pub const VIRTIO_GPIO_F_IRQ: u64 = 0;

/// Request type: fetch the line names block.
pub const VIRTIO_GPIO_MSG_GET_LINE_NAMES: u16 = 0x0001;
/// Request type: read a line's direction.
pub const VIRTIO_GPIO_MSG_GET_DIRECTION: u16 = 0x0002;
/// Request type: set a line's direction.
pub const VIRTIO_GPIO_MSG_SET_DIRECTION: u16 = 0x0003;
/// Request type: read a line's value.
pub const VIRTIO_GPIO_MSG_GET_VALUE: u16 = 0x0004;
/// Request type: set a line's (output) value.
pub const VIRTIO_GPIO_MSG_SET_VALUE: u16 = 0x0005;
/// Request type: set a line's interrupt type.
pub const VIRTIO_GPIO_MSG_IRQ_TYPE: u16 = 0x0006;

/// Response status: success.
pub const VIRTIO_GPIO_STATUS_OK: u8 = 0x0;
/// Response status: failure.
pub const VIRTIO_GPIO_STATUS_ERR: u8 = 0x1;

/// Direction: the line is not used.
pub const VIRTIO_GPIO_DIRECTION_NONE: u8 = 0x00;
/// Direction: output.
pub const VIRTIO_GPIO_DIRECTION_OUT: u8 = 0x01;
/// Direction: input.
pub const VIRTIO_GPIO_DIRECTION_IN: u8 = 0x02;

/// Interrupt type: disabled.
pub const VIRTIO_GPIO_IRQ_TYPE_NONE: u8 = 0x00;
/// Interrupt type: rising edge.
pub const VIRTIO_GPIO_IRQ_TYPE_EDGE_RISING: u8 = 0x01;
/// Interrupt type: falling edge.
pub const VIRTIO_GPIO_IRQ_TYPE_EDGE_FALLING: u8 = 0x02;
/// Interrupt type: both edges.
pub const VIRTIO_GPIO_IRQ_TYPE_EDGE_BOTH: u8 = 0x03;
/// Interrupt type: level high.
pub const VIRTIO_GPIO_IRQ_TYPE_LEVEL_HIGH: u8 = 0x04;
/// Interrupt type: level low.
pub const VIRTIO_GPIO_IRQ_TYPE_LEVEL_LOW: u8 = 0x08;

/// Event status: the buffer is returned without an interrupt.
pub const VIRTIO_GPIO_IRQ_STATUS_INVALID: u8 = 0x0;
/// Event status: an interrupt occurred on the line.
pub const VIRTIO_GPIO_IRQ_STATUS_VALID: u8 = 0x1;

/// Index of the request queue.
pub const REQUEST_QUEUE: u16 = 0;
/// Index of the event queue.
pub const EVENT_QUEUE: u16 = 1;

/// Configuration space.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VirtioGpioConfig {
    /// Number of lines.
    pub ngpio: Le16,
    /// Reserved.
    pub padding: [u8; 2],
    /// Size of the line names block, 0 when there are no names.
    pub gpio_names_size: Le32,
}
// SAFETY: plain old data made of byte-valued fields, no padding (2+2+4 bytes).
unsafe impl ByteValued for VirtioGpioConfig {}

/// A request on the request queue (driver to device, read-only buffer).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VirtioGpioRequest {
    /// One of `VIRTIO_GPIO_MSG_*`.
    pub type_: Le16,
    /// Line number.
    pub gpio: Le16,
    /// Type-specific value (direction, value, IRQ type) or 0.
    pub value: Le32,
}
// SAFETY: plain old data made of byte-valued fields, no padding (2+2+4 bytes).
unsafe impl ByteValued for VirtioGpioRequest {}

/// A response on the request queue (device to driver) for every type but
/// `GET_LINE_NAMES`, whose response is the status followed by the names block.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VirtioGpioResponse {
    /// `VIRTIO_GPIO_STATUS_*`.
    pub status: u8,
    /// Direction or value, 0 otherwise.
    pub value: u8,
}
// SAFETY: two bytes, no padding.
unsafe impl ByteValued for VirtioGpioResponse {}

/// A buffer on the event queue (driver to device part).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VirtioGpioIrqRequest {
    /// Line the driver waits on.
    pub gpio: Le16,
}
// SAFETY: two bytes, no padding.
unsafe impl ByteValued for VirtioGpioIrqRequest {}

/// A buffer on the event queue (device to driver part).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VirtioGpioIrqResponse {
    /// `VIRTIO_GPIO_IRQ_STATUS_*`.
    pub status: u8,
}
// SAFETY: one byte.
unsafe impl ByteValued for VirtioGpioIrqResponse {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_structs_sizes_match_spec() {
        assert_eq!(size_of::<VirtioGpioConfig>(), 8);
        assert_eq!(size_of::<VirtioGpioRequest>(), 8);
        assert_eq!(size_of::<VirtioGpioResponse>(), 2);
        assert_eq!(size_of::<VirtioGpioIrqRequest>(), 2);
        assert_eq!(size_of::<VirtioGpioIrqResponse>(), 1);
    }
}
