//! Small safe wrappers over the i2c-dev ioctls (`linux/i2c-dev.h`,
//! `linux/i2c.h`): `I2C_SLAVE_FORCE`, `I2C_RDWR` and `I2C_SMBUS`.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

/// `I2C_SLAVE_FORCE`: use this address even if a driver holds it.
pub const I2C_SLAVE_FORCE: u32 = 0x0706;
/// `I2C_RDWR`: combined transfer, one STOP.
pub const I2C_RDWR: u32 = 0x0707;
/// `I2C_SMBUS`: SMBus transfer.
pub const I2C_SMBUS: u32 = 0x0720;
/// `I2C_M_RD` in `i2c_msg.flags`.
pub const I2C_M_RD: u16 = 0x0001;
/// `I2C_SMBUS_READ`.
pub const I2C_SMBUS_READ: u8 = 1;
/// `I2C_SMBUS_BYTE_DATA`.
pub const I2C_SMBUS_BYTE_DATA: u32 = 2;
/// `I2C_SMBUS_WORD_DATA`.
pub const I2C_SMBUS_WORD_DATA: u32 = 3;
/// `I2C_SMBUS_BLOCK_MAX`.
pub const I2C_SMBUS_BLOCK_MAX: usize = 32;

/// `struct i2c_msg`.
#[repr(C)]
#[derive(Debug)]
struct I2cMsg {
    addr: u16,
    flags: u16,
    len: u16,
    buf: *mut u8,
}

/// `struct i2c_rdwr_ioctl_data`.
#[repr(C)]
#[derive(Debug)]
struct I2cRdwrIoctlData {
    msgs: *mut I2cMsg,
    nmsgs: u32,
}

/// `union i2c_smbus_data`: byte, word, or block of `I2C_SMBUS_BLOCK_MAX + 2`.
#[repr(C, align(2))]
#[derive(Debug)]
struct I2cSmbusData([u8; I2C_SMBUS_BLOCK_MAX + 2]);

/// `struct i2c_smbus_ioctl_data`.
#[repr(C)]
#[derive(Debug)]
struct I2cSmbusIoctlData {
    read_write: u8,
    command: u8,
    size: u32,
    data: *mut I2cSmbusData,
}

nix::ioctl_write_int_bad!(ioctl_slave_force, I2C_SLAVE_FORCE);
nix::ioctl_write_ptr_bad!(ioctl_rdwr, I2C_RDWR, I2cRdwrIoctlData);
nix::ioctl_write_ptr_bad!(ioctl_smbus, I2C_SMBUS, I2cSmbusIoctlData);

/// Sets the client address of an i2c-dev fd for SMBus calls, even when a
/// kernel driver is bound there.
///
/// # Errors
/// The ioctl's errno.
pub fn set_slave_force(fd: BorrowedFd<'_>, addr: u16) -> Result<(), Errno> {
    // SAFETY: I2C_SLAVE_FORCE takes the address by value; no memory is shared.
    unsafe { ioctl_slave_force(fd.as_raw_fd(), libc::c_int::from(addr)) }.map(|_| ())
}

/// `I2C_RDWR` with two messages: write `reg` to `addr`, then read
/// `out.len()` bytes.
///
/// # Errors
/// The ioctl's errno; `EINVAL` if `out` is longer than `u16::MAX`.
pub fn write_read(fd: BorrowedFd<'_>, addr: u16, reg: u8, out: &mut [u8]) -> Result<(), Errno> {
    let len = u16::try_from(out.len()).map_err(|_| Errno::EINVAL)?;
    let mut reg_buf = [reg];
    let mut msgs = [
        I2cMsg {
            addr,
            flags: 0,
            len: 1,
            buf: reg_buf.as_mut_ptr(),
        },
        I2cMsg {
            addr,
            flags: I2C_M_RD,
            len,
            buf: out.as_mut_ptr(),
        },
    ];
    let data = I2cRdwrIoctlData {
        msgs: msgs.as_mut_ptr(),
        nmsgs: 2,
    };
    // SAFETY: `data` points at two messages whose buffers (`reg_buf`, `out`)
    // live until the ioctl returns and are as long as their `len` says.
    unsafe { ioctl_rdwr(fd.as_raw_fd(), &data) }.map(|_| ())
}

fn smbus_read(fd: BorrowedFd<'_>, cmd: u8, size: u32) -> Result<I2cSmbusData, Errno> {
    let mut block = I2cSmbusData([0; I2C_SMBUS_BLOCK_MAX + 2]);
    let args = I2cSmbusIoctlData {
        read_write: I2C_SMBUS_READ,
        command: cmd,
        size,
        data: &mut block,
    };
    // SAFETY: `args.data` points at a full `union i2c_smbus_data` that
    // outlives the call.
    unsafe { ioctl_smbus(fd.as_raw_fd(), &args) }?;
    Ok(block)
}

/// SMBus "read byte data" at command `cmd` (address set by
/// [`set_slave_force`]).
///
/// # Errors
/// The ioctl's errno.
pub fn smbus_read_byte_data(fd: BorrowedFd<'_>, cmd: u8) -> Result<u8, Errno> {
    smbus_read(fd, cmd, I2C_SMBUS_BYTE_DATA).map(|d| d.0[0])
}

/// SMBus "read word data" at command `cmd`.
///
/// # Errors
/// The ioctl's errno.
pub fn smbus_read_word_data(fd: BorrowedFd<'_>, cmd: u8) -> Result<u16, Errno> {
    smbus_read(fd, cmd, I2C_SMBUS_WORD_DATA).map(|d| u16::from_ne_bytes([d.0[0], d.0[1]]))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn struct_layouts_match_the_kernel_abi() {
        assert_eq!(size_of::<I2cMsg>(), 16);
        assert_eq!(size_of::<I2cRdwrIoctlData>(), 16);
        assert_eq!(size_of::<I2cSmbusIoctlData>(), 16);
        assert_eq!(size_of::<I2cSmbusData>(), 34);
    }

    #[test]
    fn ioctls_on_a_non_i2c_fd_fail_with_enotty() {
        let f = tempfile::tempfile().expect("tempfile");
        assert_eq!(set_slave_force(f.as_fd(), 0x50), Err(Errno::ENOTTY));
        let mut out = [0u8; 4];
        assert_eq!(write_read(f.as_fd(), 0x50, 0, &mut out), Err(Errno::ENOTTY));
        assert_eq!(smbus_read_byte_data(f.as_fd(), 0), Err(Errno::ENOTTY));
    }
}
