//! vhost-user backends that emulate the hardware dangle pulls out from under
//! the guest kernel.

pub mod cli;
pub mod i2c;
