//! virtio-i2c wire format (VIRTIO 1.2, section 5.19): constants named as in
//! the spec and `#[repr(C)]` structs laid out as on the wire.

use vm_memory::{ByteValued, Le16, Le32};

/// Device ID of the virtio-i2c adapter.
pub const VIRTIO_ID_I2C_ADAPTER: u32 = 34;

/// Feature bit: requests without a data buffer are allowed. Linux refuses
/// to probe a device that does not offer it.
pub const VIRTIO_I2C_F_ZERO_LENGTH_REQUEST: u64 = 0;

/// Flag: if this request fails, fail the rest of the group.
pub const VIRTIO_I2C_FLAGS_FAIL_NEXT: u32 = 1 << 0;
/// Flag: a read request.
pub const VIRTIO_I2C_FLAGS_M_RD: u32 = 1 << 1;

/// Status: done.
pub const VIRTIO_I2C_MSG_OK: u8 = 0;
/// Status: failed.
pub const VIRTIO_I2C_MSG_ERR: u8 = 1;

/// Driver-to-device header of every request.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VirtioI2cOutHdr {
    /// 7-bit address shifted left by one.
    pub addr: Le16,
    /// Reserved.
    pub padding: Le16,
    /// `VIRTIO_I2C_FLAGS_*`.
    pub flags: Le32,
}
// SAFETY: plain old data made of byte-valued fields, no padding (2+2+4 bytes).
unsafe impl ByteValued for VirtioI2cOutHdr {}

/// Device-to-driver trailer of every request.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VirtioI2cInHdr {
    /// `VIRTIO_I2C_MSG_*`.
    pub status: u8,
}
// SAFETY: one byte.
unsafe impl ByteValued for VirtioI2cInHdr {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_structs_sizes_match_spec() {
        assert_eq!(size_of::<VirtioI2cOutHdr>(), 8);
        assert_eq!(size_of::<VirtioI2cInHdr>(), 1);
    }
}
