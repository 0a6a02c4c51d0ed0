//! VM tests: real QEMU 10, the real default kernel (built through the
//! cache on first use), real backends over vhost-user, the real agent.
//!
//! They run in their own nextest group (one VM at a time) and fail with an
//! actionable message when QEMU or the kernel cannot be had; they never
//! pass without booting.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dangle::agent::AgentClient;
use dangle::prepare::{self, Bootable, KernelSelect};
use dangle::suite::agent_guest::AgentGuest;
use dangle::suite::engine::BOOT_TIMEOUT;
use dangle::vm::devices::DeviceSpec;
use dangle::vm::fixture::{Vm, VmSpec, find_qemu};
use dangle_backends::control::Client;
use dangle_backends::gpio::lines::Direction;
use dangle_proto::{AdapterSelector, ChipSelector, ConsumerSpec, DeviceList, EdgeWait};

const REPLY: Duration = Duration::from_secs(30);

fn bootable() -> Bootable {
    assert!(
        find_qemu().is_some(),
        "qemu-system-x86_64 is missing: run `sudo bash ci/setup-host.sh` (QEMU 10 from bookworm-backports)"
    );
    prepare::bootable(&KernelSelect::default(), &[], &[]).unwrap_or_else(|e| {
        panic!(
            "cannot prepare the default kernel and initramfs: {}\n(run `sudo bash ci/setup-host.sh` for the host packages)",
            dangle::exit::chain(&e)
        )
    })
}

fn artifacts(name: &str) -> PathBuf {
    let base = std::env::var_os("DANGLE_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vm-tests"));
    base.join(name)
}

struct Booted {
    vm: Vm,
    guest: AgentGuest,
}

impl Booted {
    fn agent(&self) -> &AgentClient {
        self.guest.client()
    }
}

fn boot(name: &str, devices: Vec<DeviceSpec>) -> Booted {
    let b = bootable();
    let mut spec = VmSpec::new(b.kernel.bzimage.clone(), b.initrd.clone(), artifacts(name));
    spec.devices = devices;
    spec.backend_program = env!("CARGO_BIN_EXE_dangle").into();
    let vm =
        Vm::start(spec, None).unwrap_or_else(|e| panic!("vm start: {}", dangle::exit::chain(&e)));
    let guest = match AgentGuest::connect(&vm, BOOT_TIMEOUT) {
        Ok(g) => g,
        Err(e) => panic!(
            "agent never answered: {}\n{}",
            dangle::exit::chain(&e),
            vm.postmortem()
        ),
    };
    Booted { vm, guest }
}

fn devices(b: &Booted) -> DeviceList {
    b.agent().list_devices().expect("list devices")
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool, b: &Booted) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}\n{}", b.vm.postmortem());
}

fn write(b: &Booted, path: &str, data: &str) {
    b.agent()
        .write_file(path, data)
        .unwrap_or_else(|e| panic!("write {path}: {e}\n{}", b.vm.postmortem()));
}

#[test]
fn vm_default_hardware_is_visible_and_works_both_ways() {
    let b = boot("default-hardware", DeviceSpec::defaults());
    let list = devices(&b);
    let virtio_chip = list
        .gpiochips
        .iter()
        .find(|c| c.label.starts_with("virtio"))
        .unwrap_or_else(|| panic!("no virtio gpiochip in {list:?}"));
    assert_eq!(virtio_chip.lines, 32);
    let adapter = list
        .i2c_adapters
        .iter()
        .find(|a| a.name.starts_with("i2c_virtio"))
        .unwrap_or_else(|| panic!("no virtio i2c adapter in {list:?}"))
        .clone();
    let bus = adapter.bus;

    // Clients on a virtio adapter are instantiated by hand, as on real boards without DT.
    write(
        &b,
        &format!("/sys/bus/i2c/devices/i2c-{bus}/new_device"),
        "24c02 0x50",
    );
    write(
        &b,
        &format!("/sys/bus/i2c/devices/i2c-{bus}/new_device"),
        "pca9555 0x20",
    );
    let nvmem = format!("{bus}-00500");
    let expander = format!("{bus}-0020");
    wait_until(
        "the at24 nvmem device and the pca953x gpiochip",
        Duration::from_secs(20),
        || {
            let l = devices(&b);
            l.nvmem.iter().any(|n| n.name == nvmem)
                && l.gpiochips.iter().any(|c| c.label == expander)
        },
        &b,
    );

    // Host -> guest: bytes loaded into the EEPROM are read back through nvmem sysfs.
    let i2c_ctl = b.vm.backend("i2c0").unwrap().control.clone();
    let mut i2c = Client::connect(&i2c_ctl).expect("i2c control");
    i2c.load_eeprom(0x50, b"dangle host->guest")
        .expect("load eeprom");
    let file = b
        .agent()
        .request(
            dangle_proto::Request::ReadFile {
                path: format!("/sys/bus/nvmem/devices/{nvmem}/nvmem"),
                max_bytes: 18,
            },
            REPLY,
        )
        .expect("read nvmem");
    match file {
        dangle_proto::Response::File { data, .. } => assert_eq!(data, "dangle host->guest"),
        other => panic!("{other:?}"),
    }
    // Guest -> host: bytes written to the at24 eeprom file land in the chip.
    write(
        &b,
        &format!("/sys/bus/i2c/devices/{bus}-0050/eeprom"),
        "guest->host",
    );
    let mem = i2c.dump_eeprom(0x50).expect("dump");
    assert_eq!(mem.len(), 256);
    assert_eq!(&mem[..11], b"guest->host");

    // A line the guest sets is seen in the backend.
    let gpio_ctl = b.vm.backend("gpio0").unwrap().control.clone();
    let mut gpio = Client::connect(&gpio_ctl).expect("gpio control");
    let chip = ChipSelector::Label(virtio_chip.label.clone());
    b.agent()
        .start_consumer(
            "hold5",
            ConsumerSpec::GpioHold {
                chip: chip.clone(),
                line: 5,
                value: true,
            },
            Duration::from_secs(10),
            None,
        )
        .expect("hold line 5");
    wait_until(
        "line 5 driven high by the guest",
        Duration::from_secs(10),
        || {
            gpio.read_line(5)
                .map(|l| l.direction == Direction::Out && l.output && l.value)
                .unwrap_or(false)
        },
        &b,
    );

    // An edge driven from the host wakes a reader blocked in read() on a line request.
    b.agent()
        .start_consumer(
            "edge3",
            ConsumerSpec::GpioEdgeRead {
                chip,
                line: 3,
                wait: EdgeWait::Blocking,
            },
            Duration::from_secs(600),
            None,
        )
        .expect("edge reader");
    wait_until(
        "the edge reader blocked in read",
        Duration::from_secs(10),
        || {
            b.agent()
                .consumer_status(Some("edge3"))
                .map(|c| c.first().is_some_and(|c| c.in_flight.is_some()))
                .unwrap_or(false)
        },
        &b,
    );
    gpio.drive_line(3, true).expect("drive high");
    gpio.drive_line(3, false).expect("drive low");
    wait_until(
        "edge events read by the guest",
        Duration::from_secs(15),
        || {
            b.agent()
                .consumer_status(Some("edge3"))
                .map(|c| c.first().is_some_and(|c| c.counters.ops_ok >= 1))
                .unwrap_or(false)
        },
        &b,
    );

    // PCA9555 lines set by the guest change the emulated pins.
    b.agent()
        .start_consumer(
            "pca4",
            ConsumerSpec::GpioHold {
                chip: ChipSelector::Label(expander.clone()),
                line: 4,
                value: true,
            },
            Duration::from_secs(10),
            None,
        )
        .expect("hold expander line 4");
    wait_until(
        "pca9555 pin 4 an output driven high",
        Duration::from_secs(10),
        || {
            i2c.read_pins(0x20)
                .map(|p| {
                    p.inputs & (1 << 4) == 0
                        && p.outputs & (1 << 4) != 0
                        && p.levels & (1 << 4) != 0
                })
                .unwrap_or(false)
        },
        &b,
    );
    // And the i2c-dev path answers too (SMBus read of the EEPROM).
    b.agent()
        .start_consumer(
            "smbus",
            ConsumerSpec::I2cTransfer {
                adapter: AdapterSelector::Bus(bus),
                addr: 0x50,
                op: dangle_proto::I2cOp::SmbusByte { cmd: 0 },
                period_us: 0,
                iterations: Some(10),
            },
            Duration::from_secs(10),
            None,
        )
        .expect("smbus");
    wait_until(
        "10 SMBus reads",
        Duration::from_secs(60),
        || {
            b.agent()
                .consumer_status(Some("smbus"))
                .map(|c| {
                    c.first().is_some_and(|c| {
                        matches!(
                            c.result,
                            Some(dangle_proto::ConsumerResult::Completed { .. })
                        ) && c.counters.ops_ok >= 10
                            && c.counters.total_errors() == 0
                    })
                })
                .unwrap_or(false)
        },
        &b,
    );
}

#[test]
fn vm_lkdtm_write_after_free_reaches_console_with_kasan_title() {
    let mut b = boot("lkdtm", Vec::new());
    let before = b.vm.console().len();
    write(
        &b,
        "/sys/kernel/debug/provoke-crash/DIRECT",
        "WRITE_AFTER_FREE",
    );
    let found = b.vm.console().wait_for(
        "BUG: KASAN: slab-use-after-free in lkdtm_WRITE_AFTER_FREE",
        before,
        Duration::from_secs(60),
    );
    assert!(
        found.is_some(),
        "no KASAN report on the console\n{}",
        b.vm.postmortem()
    );
    let _ = b.agent().poweroff();
    let _ = b.vm.wait_exit(Duration::from_secs(20));
    let console = std::fs::read(b.vm.console().path()).expect("console.log on disk");
    let reports = dangle::report::parse(&console);
    assert!(
        reports
            .iter()
            .any(|r| r.title == "KASAN: slab-use-after-free Write in lkdtm_WRITE_AFTER_FREE"),
        "titles: {:?}",
        reports.iter().map(|r| &r.title).collect::<Vec<_>>()
    );
}
