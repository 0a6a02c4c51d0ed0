//! dangle's guest agent: PID 1 of the test VM.
//!
//! It mounts the pseudo filesystems, finds its channel to the host (a
//! virtio-serial port named `dangle.agent`, else `/dev/ttyS1`), pushes
//! `Ready`, and then serves [`dangle_proto`] requests: commands, sysctls,
//! sysfs writes, device listings and consumer workloads that hammer the
//! GPIO, I2C and nvmem uAPIs while the host pulls the devices away.
//!
//! The agent never panics on purpose: it runs with `panic = "abort"` and a
//! PID 1 abort panics the kernel. Every failure becomes an error reply or an
//! event.
//!
//! # Stopping consumers
//! Each consumer runs in its own thread. `StopConsumer` sets the consumer's
//! stop flag, which loops check between operations; a consumer that has not
//! exited after [`consumer::RESIGNAL_PERIOD`] (blocked in a syscall) gets
//! `SIGUSR1` on its thread (so a plain stop never interrupts an operation
//! that would have finished); the agent installs a no-op
//! `SIGUSR1` handler without `SA_RESTART`, so a blocking `read()` or
//! `ioctl()` returns `EINTR` and the loop sees the flag. The watchdog
//! re-sends the signal every [`consumer::RESIGNAL_PERIOD`] until the thread
//! is gone (a signal that lands just before the syscall starts is lost). A
//! thread in uninterruptible sleep (D state) cannot be stopped: it stays
//! listed as in flight, which is itself the finding.

pub mod consumer;
pub mod discovery;
pub mod exec;
pub mod i2c;
pub mod kmsg;
pub mod op;
pub mod pid1;
pub mod server;
pub mod shell;
pub mod workloads;
