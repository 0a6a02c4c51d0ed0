//! The test VM: QEMU command lines, QMP, process supervision, the
//! accelerator probe and the [`fixture::Vm`] that ties a kernel, an
//! initramfs, the backends and QEMU together (and `dangle boot`).

pub mod cli;
pub mod process;
pub mod qemu;
pub mod qmp;
