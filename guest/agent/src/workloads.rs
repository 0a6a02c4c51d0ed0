//! The consumer workloads: each turns a [`ConsumerSpec`] into syscalls on
//! the real uAPI (GPIO chardev v2 through gpiocdev, the v1 line event ioctl,
//! i2c-dev ioctls, nvmem and sysfs files), every call wrapped in
//! [`Consumer::call`] so it is counted and watched.
//!
//! Loops keep going after errors (counting them, with
//! [`ERROR_BACKOFF`] between tries): a consumer that sees `ENODEV` after an
//! unplug is what the scenarios want to observe. A failure during setup
//! (chip not found, open refused) ends the consumer as `Failed`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dangle_proto::{ChipSelector, ConsumerSpec, EdgeWait, I2cOp};
use gpiocdev::line::{EdgeDetection, Value};

use crate::consumer::{Consumer, ERROR_BACKOFF, Finish, Registry, RegistryError};
use crate::discovery::{self, Sysfs};
use crate::i2c;
use crate::op::OpError;

/// Consumer label of the agent's GPIO requests (shown in line info).
pub const GPIO_CONSUMER: &str = "dangle";
/// How long the gpio-aggregator workload waits for its chip to appear.
pub const AGGREGATOR_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one `poll()` in the poll-based edge reader (it then checks
/// the stop flag and polls again).
pub const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Starts `spec` as consumer `id` in `registry`.
///
/// # Errors
/// See [`Registry::start`].
pub fn start(
    registry: &Registry,
    sysfs: &Sysfs,
    id: &str,
    spec: ConsumerSpec,
    deadline: Duration,
    progress: Option<Duration>,
) -> Result<Arc<Consumer>, RegistryError> {
    let sysfs = sysfs.clone();
    registry.start(id, deadline, progress, move |c| run(c, &sysfs, &spec))
}

/// Runs `spec` on the current thread until it completes or is stopped.
///
/// # Errors
/// The failure that ended the workload.
pub fn run(c: &Consumer, sysfs: &Sysfs, spec: &ConsumerSpec) -> Result<Finish, OpError> {
    match spec {
        ConsumerSpec::GpioHold { chip, line, value } => {
            let path = chip_path(sysfs, chip)?;
            let _req = c.call("GPIO_V2_GET_LINE_IOCTL", || {
                gpiocdev::Request::builder()
                    .on_chip(&path)
                    .with_consumer(GPIO_CONSUMER)
                    .with_line(*line)
                    .as_output(Value::from(*value))
                    .request()
                    .map_err(|e| OpError::gpio("GPIO_V2_GET_LINE_IOCTL", &e))
            })?;
            hold(c)
        }
        ConsumerSpec::GpioToggle {
            chip,
            line,
            period_us,
            iterations,
        } => {
            let path = chip_path(sysfs, chip)?;
            let req = c.call("GPIO_V2_GET_LINE_IOCTL", || {
                gpiocdev::Request::builder()
                    .on_chip(&path)
                    .with_consumer(GPIO_CONSUMER)
                    .with_line(*line)
                    .as_output(Value::Inactive)
                    .request()
                    .map_err(|e| OpError::gpio("GPIO_V2_GET_LINE_IOCTL", &e))
            })?;
            let mut v = Value::Inactive;
            repeat(c, *iterations, *period_us, || {
                v = v.not();
                c.call("GPIO_V2_LINE_SET_VALUES_IOCTL", || {
                    req.set_lone_value(v)
                        .map_err(|e| OpError::gpio("GPIO_V2_LINE_SET_VALUES_IOCTL", &e))
                })
            })
        }
        ConsumerSpec::GpioEdgeRead { chip, line, wait } => {
            let path = chip_path(sysfs, chip)?;
            let req = c.call("GPIO_V2_GET_LINE_IOCTL", || edge_request(&path, *line))?;
            repeat(c, None, 0, || match wait {
                EdgeWait::Blocking => c
                    .call("read", || {
                        req.read_edge_event().map_err(|e| OpError::gpio("read", &e))
                    })
                    .map(drop),
                EdgeWait::Poll => {
                    let ready = c.call("poll", || {
                        req.wait_edge_event(POLL_TIMEOUT)
                            .map_err(|e| OpError::gpio("poll", &e))
                    })?;
                    if ready {
                        c.call("read", || {
                            req.read_edge_event().map_err(|e| OpError::gpio("read", &e))
                        })?;
                    }
                    Ok(())
                }
            })
        }
        ConsumerSpec::GpioInfoWatch { chip, line } => {
            let path = chip_path(sysfs, chip)?;
            let chip = c.call("open", || {
                gpiocdev::Chip::from_path(&path).map_err(|e| OpError::gpio("open", &e))
            })?;
            c.call("GPIO_V2_GET_LINEINFO_WATCH_IOCTL", || {
                chip.watch_line_info(*line)
                    .map_err(|e| OpError::gpio("GPIO_V2_GET_LINEINFO_WATCH_IOCTL", &e))
            })?;
            repeat(c, None, 0, || {
                c.call("read", || {
                    chip.read_line_info_change_event()
                        .map_err(|e| OpError::gpio("read", &e))
                })
                .map(drop)
            })
        }
        ConsumerSpec::GpioV1LineEvent { chip, line } => {
            let path = chip_path(sysfs, chip)?;
            let cf = c.call("open", || open_rw(&path))?;
            let ef = c.call("GPIO_GET_LINEEVENT_IOCTL", || {
                use gpiocdev_uapi::v1;
                let req = v1::EventRequest {
                    offset: *line,
                    handleflags: v1::HandleRequestFlags::INPUT,
                    eventflags: v1::EventRequestFlags::BOTH_EDGES,
                    consumer: gpiocdev_uapi::Name::from(GPIO_CONSUMER),
                    fd: 0,
                };
                v1::get_line_event(&cf, req).map_err(|e| uapi_err("GPIO_GET_LINEEVENT_IOCTL", &e))
            })?;
            repeat(c, None, 0, || {
                // struct gpioevent_data is 16 bytes: u64 timestamp, u32 id, pad.
                let mut buf = [0u64; 2];
                c.call("read", || {
                    gpiocdev_uapi::read_event(&ef, &mut buf).map_err(|e| uapi_err("read", &e))
                })
                .map(drop)
            })
        }
        ConsumerSpec::GpioRequestLoop {
            chip,
            line,
            iterations,
        } => {
            let path = chip_path(sysfs, chip)?;
            repeat(c, *iterations, 0, || {
                let req = c.call("GPIO_V2_GET_LINE_IOCTL", || edge_request(&path, *line))?;
                c.call("close", || {
                    drop(req);
                    Ok(())
                })
            })
        }
        ConsumerSpec::I2cHold { adapter } => {
            let bus = sysfs.find_adapter(adapter).map_err(discovery_err)?;
            let dev = sysfs.path(&format!("/dev/i2c-{bus}"));
            let _f = c.call("open", || open_rw(&dev))?;
            hold(c)
        }
        ConsumerSpec::I2cTransfer {
            adapter,
            addr,
            op,
            period_us,
            iterations,
        } => {
            let bus = sysfs.find_adapter(adapter).map_err(discovery_err)?;
            let dev = sysfs.path(&format!("/dev/i2c-{bus}"));
            let f = c.call("open", || open_rw(&dev))?;
            if !matches!(op, I2cOp::Rdwr { .. }) {
                c.call("I2C_SLAVE_FORCE", || {
                    i2c::set_slave_force(f.as_fd(), *addr).map_err(|e| {
                        OpError::errno("I2C_SLAVE_FORCE", e as i32, format!("addr {addr:#x}"))
                    })
                })?;
            }
            repeat(c, *iterations, *period_us, || i2c_op(c, &f, *addr, *op))
        }
        ConsumerSpec::NvmemIo {
            source,
            len,
            write,
            period_us,
            iterations,
        } => {
            let path = sysfs.find_nvmem(source).map_err(discovery_err)?;
            let mut file: Option<File> = None;
            let mut buf = vec![0u8; usize::try_from(*len).unwrap_or(0)];
            repeat(c, *iterations, *period_us, || {
                let f = match file.take() {
                    Some(f) => f,
                    None => c.call("open", || open_rw_or_ro(&path))?,
                };
                let r = c
                    .call("read", || {
                        f.read_at(&mut buf, 0)
                            .map_err(|e| OpError::io("read", &e, path.display()))
                    })
                    .and_then(|_| match write {
                        Some(data) => c.call("write", || {
                            f.write_at(data, 0)
                                .map(drop)
                                .map_err(|e| OpError::io("write", &e, path.display()))
                        }),
                        None => Ok(()),
                    });
                // A failed fd is reopened next round (the device may be back).
                if r.is_ok() {
                    file = Some(f);
                }
                r
            })
        }
        ConsumerSpec::I2cClientChurn {
            adapter,
            device,
            addr,
            period_us,
            iterations,
        } => {
            let bus = sysfs.find_adapter(adapter).map_err(discovery_err)?;
            let new = sysfs.path(&format!("/sys/bus/i2c/devices/i2c-{bus}/new_device"));
            let del = sysfs.path(&format!("/sys/bus/i2c/devices/i2c-{bus}/delete_device"));
            repeat(c, *iterations, 0, || {
                let r1 = write_file(c, &new, &format!("{device} {addr:#04x}"));
                c.sleep(Duration::from_micros(*period_us));
                let r2 = write_file(c, &del, &format!("{addr:#04x}"));
                c.sleep(Duration::from_micros(*period_us));
                r1.and(r2)
            })
        }
        ConsumerSpec::BindUnbind {
            bus,
            driver,
            device,
            period_us,
            iterations,
        } => {
            let drv = format!("/sys/bus/{bus}/drivers/{driver}");
            let unbind = sysfs.path(&format!("{drv}/unbind"));
            let bind = sysfs.path(&format!("{drv}/bind"));
            repeat(c, *iterations, 0, || {
                let r1 = write_file(c, &unbind, device);
                c.sleep(Duration::from_micros(*period_us));
                let r2 = write_file(c, &bind, device);
                c.sleep(Duration::from_micros(*period_us));
                r1.and(r2)
            })
        }
        ConsumerSpec::PciRemoveRescan {
            device,
            period_us,
            iterations,
        } => {
            let remove = sysfs.path(&format!("/sys/bus/pci/devices/{device}/remove"));
            let rescan = sysfs.path("/sys/bus/pci/rescan");
            repeat(c, *iterations, 0, || {
                let r1 = write_file(c, &remove, "1");
                c.sleep(Duration::from_micros(*period_us));
                let r2 = write_file(c, &rescan, "1");
                c.sleep(Duration::from_micros(*period_us));
                r1.and(r2)
            })
        }
        ConsumerSpec::GpioAggregator {
            chip,
            lines,
            period_us,
            iterations,
        } => aggregator(c, sysfs, chip, lines, *period_us, *iterations),
        ConsumerSpec::FileWrite {
            path,
            data,
            period_us,
            iterations,
        } => {
            let p = sysfs.path(path);
            repeat(c, Some(iterations.unwrap_or(1)), *period_us, || {
                write_file(c, &p, data)
            })
        }
        ConsumerSpec::NvmemKernelConsumer {
            device,
            period_us,
            iterations,
        } => {
            let get = sysfs.path("/sys/kernel/debug/dangle/nvmem_get");
            let read = sysfs.path("/sys/kernel/debug/dangle/nvmem_read");
            write_file(c, &get, device)?;
            repeat(c, *iterations, *period_us, || {
                c.call("read", || {
                    std::fs::read(&read)
                        .map(drop)
                        .map_err(|e| OpError::io("read", &e, read.display()))
                })
            })
        }
    }
}

/// Sleeps until stopped.
fn hold(c: &Consumer) -> Result<Finish, OpError> {
    while c.sleep(Duration::from_secs(1)) {}
    Ok(Finish::Stopped)
}

/// Runs `body` until stopped or `iterations` rounds, pausing `period_us`
/// between rounds and [`ERROR_BACKOFF`] after a failed round.
fn repeat(
    c: &Consumer,
    iterations: Option<u64>,
    period_us: u64,
    mut body: impl FnMut() -> Result<(), OpError>,
) -> Result<Finish, OpError> {
    let mut n = 0u64;
    loop {
        if c.stop_requested() {
            return Ok(Finish::Stopped);
        }
        if iterations.is_some_and(|max| n >= max) {
            return Ok(Finish::Completed);
        }
        let failed = body().is_err();
        n += 1;
        if failed && !c.sleep(ERROR_BACKOFF) {
            return Ok(Finish::Stopped);
        }
        if period_us > 0 && !c.sleep(Duration::from_micros(period_us)) {
            return Ok(Finish::Stopped);
        }
    }
}

fn chip_path(sysfs: &Sysfs, sel: &ChipSelector) -> Result<PathBuf, OpError> {
    discovery::find_chip(sysfs, sel).map_err(discovery_err)
}

fn discovery_err(e: discovery::DiscoveryError) -> OpError {
    let errno = match &e {
        discovery::DiscoveryError::List { source, .. } => source.raw_os_error(),
        discovery::DiscoveryError::NotFound { .. } => Some(libc::ENODEV),
    };
    OpError {
        syscall: "find".to_owned(),
        errno,
        detail: e.to_string(),
    }
}

fn uapi_err(syscall: &str, e: &gpiocdev_uapi::Error) -> OpError {
    match e {
        gpiocdev_uapi::Error::Os(n) => OpError::errno(syscall, n.0, e.to_string()),
        other => OpError::other(syscall, other.to_string()),
    }
}

fn edge_request(path: &Path, line: u32) -> Result<gpiocdev::Request, OpError> {
    gpiocdev::Request::builder()
        .on_chip(path)
        .with_consumer(GPIO_CONSUMER)
        .with_line(line)
        .as_input()
        .with_edge_detection(EdgeDetection::BothEdges)
        .request()
        .map_err(|e| OpError::gpio("GPIO_V2_GET_LINE_IOCTL", &e))
}

fn open_rw(path: &Path) -> Result<File, OpError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| OpError::io("open", &e, path.display()))
}

/// nvmem files are read-only when the provider is (at24 with read-only).
fn open_rw_or_ro(path: &Path) -> Result<File, OpError> {
    open_rw(path).or_else(|_| File::open(path).map_err(|e| OpError::io("open", &e, path.display())))
}

/// One `write()` of `data` to a sysfs/debugfs file (opened each time, as
/// `echo` does).
fn write_file(c: &Consumer, path: &Path, data: &str) -> Result<(), OpError> {
    c.call("write", || {
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .and_then(|mut f| f.write_all(data.as_bytes()))
            .map_err(|e| OpError::io("write", &e, path.display()))
    })
}

fn i2c_op(c: &Consumer, f: &File, addr: u16, op: I2cOp) -> Result<(), OpError> {
    let errno = |name: &'static str| {
        move |e: nix::errno::Errno| OpError::errno(name, e as i32, format!("addr {addr:#x}"))
    };
    match op {
        I2cOp::Rdwr { reg, len } => {
            let mut buf = vec![0u8; usize::from(len)];
            c.call("I2C_RDWR", || {
                i2c::write_read(f.as_fd(), addr, reg, &mut buf).map_err(errno("I2C_RDWR"))
            })
        }
        I2cOp::SmbusByte { cmd } => c
            .call("I2C_SMBUS", || {
                i2c::smbus_read_byte_data(f.as_fd(), cmd).map_err(errno("I2C_SMBUS"))
            })
            .map(drop),
        I2cOp::SmbusWord { cmd } => c
            .call("I2C_SMBUS", || {
                i2c::smbus_read_word_data(f.as_fd(), cmd).map_err(errno("I2C_SMBUS"))
            })
            .map(drop),
    }
}

fn list_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// gpio-aggregator: `new_device` takes `<chip label> <lines>` and makes a
/// platform device `gpio-aggregator.N` whose gpiochip is labelled with that
/// device name; `delete_device` takes the device name.
fn aggregator(
    c: &Consumer,
    sysfs: &Sysfs,
    chip: &ChipSelector,
    lines: &str,
    period_us: u64,
    iterations: Option<u64>,
) -> Result<Finish, OpError> {
    let label = match chip {
        ChipSelector::Label(l) => l.clone(),
        other => {
            let chips = discovery::gpio_chips(sysfs);
            discovery::select_chip(&chips, other)
                .map(|c| c.label.clone())
                .ok_or_else(|| OpError::errno("find", libc::ENODEV, format!("no chip {other:?}")))?
        }
    };
    let drv = "/sys/bus/platform/drivers/gpio-aggregator";
    let devices = sysfs.path("/sys/bus/platform/devices");
    let before = list_names(&devices);
    write_file(
        c,
        &sysfs.path(&format!("{drv}/new_device")),
        &format!("{label} {lines}"),
    )?;
    let name = list_names(&devices)
        .into_iter()
        .find(|n| n.starts_with("gpio-aggregator.") && !before.contains(n))
        .ok_or_else(|| OpError::other("new_device", "no new gpio-aggregator device appeared"))?;
    let result = (|| {
        let sel = ChipSelector::Label(name.clone());
        let end = Instant::now() + AGGREGATOR_PROBE_TIMEOUT;
        let info = loop {
            let chips = discovery::gpio_chips(sysfs);
            if let Some(i) = discovery::select_chip(&chips, &sel) {
                break i.clone();
            }
            if Instant::now() >= end {
                return Err(OpError::errno(
                    "find",
                    libc::ENODEV,
                    format!("gpiochip of {name} did not appear"),
                ));
            }
            if !c.sleep(Duration::from_millis(50)) {
                return Ok(Finish::Stopped);
            }
        };
        let offsets: Vec<u32> = (0..info.lines).collect();
        let req = c.call("GPIO_V2_GET_LINE_IOCTL", || {
            gpiocdev::Request::builder()
                .on_chip(&info.path)
                .with_consumer(GPIO_CONSUMER)
                .with_lines(&offsets)
                .as_output(Value::Inactive)
                .request()
                .map_err(|e| OpError::gpio("GPIO_V2_GET_LINE_IOCTL", &e))
        })?;
        let mut v = Value::Inactive;
        let mut i = 0usize;
        repeat(c, iterations, period_us, || {
            let Some(&line) = offsets.get(i % offsets.len().max(1)) else {
                return Err(OpError::other("toggle", "aggregator has no lines"));
            };
            if i % offsets.len() == 0 {
                v = v.not();
            }
            i += 1;
            c.call("GPIO_V2_LINE_SET_VALUES_IOCTL", || {
                req.set_value(line, v)
                    .map_err(|e| OpError::gpio("GPIO_V2_LINE_SET_VALUES_IOCTL", &e))
            })
        })
    })();
    // Best effort: the aggregator may already be gone with its supplier.
    let _ = write_file(c, &sysfs.path(&format!("{drv}/delete_device")), &name);
    result
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::sync::Mutex;
    use std::sync::mpsc;

    use dangle_proto::{AdapterSelector, ConsumerResult, Event, NvmemSelector};

    use super::*;
    use crate::consumer::EventSink;

    fn registry() -> (Arc<Registry>, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let sink: EventSink = Arc::new(move |ev| {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(ev);
            }
        });
        (Registry::new(sink), rx)
    }

    fn exit_of(rx: &mpsc::Receiver<Event>) -> ConsumerResult {
        loop {
            match rx.recv_timeout(Duration::from_secs(10)).expect("event") {
                Event::ConsumerExited { result, .. } => return result,
                _ => continue,
            }
        }
    }

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tempdir");
        for (p, d) in [
            (
                "sys/bus/i2c/devices/i2c-2/name",
                "i2c_virtio at virtio bus 0\n",
            ),
            ("sys/bus/i2c/devices/i2c-2/new_device", ""),
            ("sys/bus/i2c/devices/i2c-2/delete_device", ""),
            ("sys/bus/nvmem/devices/2-00500/nvmem", "0123456789abcdef"),
            ("sys/kernel/debug/provoke-crash/DIRECT", ""),
        ] {
            let p = t.path().join(p);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, d).expect("write");
        }
        t
    }

    #[test]
    fn nvmem_io_fake_file_reads_and_writes_counted() {
        let t = tree();
        let (reg, rx) = registry();
        let spec = ConsumerSpec::NvmemIo {
            source: NvmemSelector::Device("2-00500".to_owned()),
            len: 8,
            write: Some(b"XY".to_vec()),
            period_us: 0,
            iterations: Some(3),
        };
        start(
            &reg,
            &Sysfs::new(t.path()),
            "nv",
            spec,
            Duration::from_secs(5),
            None,
        )
        .expect("start");
        match exit_of(&rx) {
            // open + 3 × (read + write)
            ConsumerResult::Completed { counters } => assert_eq!(counters.ops_ok, 7),
            other => panic!("unexpected {other:?}"),
        }
        let data = fs::read(t.path().join("sys/bus/nvmem/devices/2-00500/nvmem")).expect("read");
        assert_eq!(&data[..4], b"XY23");
    }

    #[test]
    fn i2c_client_churn_fake_adapter_writes_new_and_delete() {
        let t = tree();
        let (reg, rx) = registry();
        let spec = ConsumerSpec::I2cClientChurn {
            adapter: AdapterSelector::NamePrefix("i2c_virtio".to_owned()),
            device: "24c02".to_owned(),
            addr: 0x50,
            period_us: 0,
            iterations: Some(2),
        };
        start(
            &reg,
            &Sysfs::new(t.path()),
            "churn",
            spec,
            Duration::from_secs(5),
            None,
        )
        .expect("start");
        assert!(
            matches!(exit_of(&rx), ConsumerResult::Completed { counters } if counters.ops_ok == 4)
        );
        let dir = t.path().join("sys/bus/i2c/devices/i2c-2");
        assert_eq!(
            fs::read_to_string(dir.join("new_device")).expect("r"),
            "24c02 0x50"
        );
        assert_eq!(
            fs::read_to_string(dir.join("delete_device")).expect("r"),
            "0x50"
        );
    }

    #[test]
    fn file_write_missing_file_counts_enoent() {
        let t = tree();
        let (reg, rx) = registry();
        let spec = ConsumerSpec::FileWrite {
            path: "/sys/kernel/debug/nope/DIRECT".to_owned(),
            data: "WRITE_AFTER_FREE".to_owned(),
            period_us: 0,
            iterations: Some(2),
        };
        start(
            &reg,
            &Sysfs::new(t.path()),
            "fw",
            spec,
            Duration::from_secs(5),
            None,
        )
        .expect("start");
        match exit_of(&rx) {
            ConsumerResult::Completed { counters } => {
                assert_eq!(counters.ops_ok, 0);
                assert_eq!(counters.errors.get("ENOENT"), Some(&2));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn i2c_transfer_unknown_adapter_fails_naming_it() {
        let t = tree();
        let (reg, rx) = registry();
        let spec = ConsumerSpec::I2cTransfer {
            adapter: AdapterSelector::Bus(9),
            addr: 0x50,
            op: I2cOp::SmbusByte { cmd: 0 },
            period_us: 0,
            iterations: None,
        };
        start(
            &reg,
            &Sysfs::new(t.path()),
            "x",
            spec,
            Duration::from_secs(5),
            None,
        )
        .expect("start");
        match exit_of(&rx) {
            ConsumerResult::Failed { error, errno, .. } => {
                assert!(error.contains("Bus(9)"), "{error}");
                assert_eq!(errno, Some(libc::ENODEV));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
