//! The test VM: QEMU command lines, QMP, process supervision, the
//! accelerator probe, the console follower and the [`fixture::Vm`] that
//! ties a kernel, an initramfs, the backends and QEMU together.

pub mod accel;
pub mod console;
pub mod devices;
pub mod fixture;
pub mod machine;
pub mod process;
pub mod qemu;
pub mod qmp;
