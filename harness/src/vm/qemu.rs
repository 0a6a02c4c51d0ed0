//! QEMU command lines, built by pure functions from a [`QemuConfig`].
//!
//! The machine is q35 with memfd shared memory (vhost-user needs the guest
//! RAM shared with the backends), one pcie-root-port per hotpluggable device
//! (ACPI/native PCIe hotplug works per slot), the kernel console on ttyS0,
//! the agent on a virtio-serial port named `dangle.agent`, QMP on a unix
//! socket.

use std::ffi::OsString;
use std::path::PathBuf;

/// The name of the virtio-serial port the guest agent looks for.
pub const AGENT_PORT_NAME: &str = "dangle.agent";

/// CPU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization.
    Kvm,
    /// Software emulation (the norm on nested CI machines).
    Tcg,
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// The kind of a vhost-user device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// virtio-gpio controller.
    Gpio,
    /// virtio-i2c adapter.
    I2c,
}

impl DeviceKind {
    /// The QEMU `-device` driver.
    pub fn qemu_driver(self) -> &'static str {
        match self {
            DeviceKind::Gpio => "vhost-user-gpio-pci",
            DeviceKind::I2c => "vhost-user-i2c-pci",
        }
    }
}

/// One vhost-user device as QEMU sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuDevice {
    /// QEMU device id (what `device_del` names), e.g. `gpio0`.
    pub id: String,
    /// Device kind.
    pub kind: DeviceKind,
    /// The backend's vhost-user socket.
    pub socket: PathBuf,
    /// The chardev id used for the socket.
    pub chardev: String,
    /// The pcie-root-port it sits on.
    pub root_port: String,
}

/// Where the kernel console goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Console {
    /// Written by QEMU straight to this file (batch runs).
    File(PathBuf),
    /// Terminal on stdio with the QEMU monitor mux (Ctrl-A X quits, Ctrl-A C
    /// for the monitor), and a copy logged to this file.
    Interactive(PathBuf),
}

/// Everything that determines the QEMU command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuConfig {
    /// The qemu-system-x86_64 binary.
    pub qemu: PathBuf,
    /// Accelerator.
    pub accel: Accel,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// vCPUs.
    pub smp: u32,
    /// bzImage.
    pub kernel: PathBuf,
    /// initramfs.
    pub initrd: PathBuf,
    /// Kernel command line.
    pub cmdline: String,
    /// Console destination.
    pub console: Console,
    /// QMP socket (QEMU is the server).
    pub qmp_socket: PathBuf,
    /// Agent socket (QEMU is the server; the harness connects).
    pub agent_socket: PathBuf,
    /// The vhost-user devices present at boot.
    pub devices: Vec<QemuDevice>,
    /// Root ports created in addition to one per device, for devices added later.
    pub spare_root_ports: u32,
}

/// Default kernel command line. `panic=-1` with `-no-reboot` makes a panic
/// end QEMU instead of hanging; nothing here turns warnings into panics,
/// because one run should collect every report it can.
pub fn default_cmdline() -> String {
    [
        "console=ttyS0,115200",
        "rdinit=/init",
        "panic=-1",
        "panic_on_warn=0",
        "kasan.fault=report",
        // Report every KASAN bug, not only the first of the boot.
        "kasan_multi_shot",
        "printk.devkmsg=on",
        "no_hash_pointers",
        "nokaslr",
    ]
    .join(" ")
}

/// Root port names: `rp1`, `rp2`, ...
pub fn root_port_name(index: usize) -> String {
    format!("rp{}", index + 1)
}

/// PCI slot of the first root port on `pcie.0`. Root ports sit at fixed
/// slots so the guest-side PCI path of a device (`0000:00:SS.0/...`) tells
/// which dangle device it is, whatever order the guest enumerates in.
pub const FIRST_ROOT_PORT_SLOT: usize = 0x10;

/// Most root ports that fit below q35's fixed devices at slot 0x1f.
pub const MAX_ROOT_PORTS: usize = 0x1f - FIRST_ROOT_PORT_SLOT;

/// The guest PCI address of root port `index`, e.g. `0000:00:10.0`.
pub fn root_port_pci_address(index: usize) -> String {
    format!("0000:00:{:02x}.0", FIRST_ROOT_PORT_SLOT + index)
}

/// The QEMU arguments (without the program) for `cfg`.
pub fn qemu_args(cfg: &QemuConfig) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |parts: &[&str]| a.extend(parts.iter().map(OsString::from));
    push(&["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"]);
    push(&["-accel", &cfg.accel.to_string()]);
    push(&[
        "-cpu",
        // TCG's `max` CPU offers LA57; a KASAN kernel booted with 5-level
        // paging sometimes reports a wild-memory-access from the first timer
        // interrupt (seen on 6.12.117), which is noise for dangle.
        if cfg.accel == Accel::Kvm {
            "host"
        } else {
            "max,la57=off"
        },
    ]);
    push(&["-smp", &cfg.smp.to_string()]);
    push(&["-m", &format!("{}M", cfg.memory_mib)]);
    push(&[
        "-object",
        &format!(
            "memory-backend-memfd,id=mem,size={}M,share=on",
            cfg.memory_mib
        ),
    ]);
    push(&["-machine", "q35,memory-backend=mem"]);
    push(&["-kernel", &cfg.kernel.to_string_lossy()]);
    push(&["-initrd", &cfg.initrd.to_string_lossy()]);
    push(&["-append", &cfg.cmdline]);
    match &cfg.console {
        Console::File(path) => {
            push(&["-chardev", &format!("file,id=con,path={}", path.display())]);
            push(&["-serial", "chardev:con"]);
        }
        Console::Interactive(log) => {
            push(&[
                "-chardev",
                &format!("stdio,id=con,mux=on,signal=off,logfile={}", log.display()),
            ]);
            push(&["-serial", "chardev:con"]);
            push(&["-mon", "chardev=con,mode=readline"]);
        }
    }
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", cfg.qmp_socket.display()),
    ]);
    push(&["-device", "virtio-serial-pci,id=vser"]);
    push(&[
        "-chardev",
        &format!(
            "socket,id=agent,path={},server=on,wait=off",
            cfg.agent_socket.display()
        ),
    ]);
    push(&[
        "-device",
        &format!("virtserialport,chardev=agent,name={AGENT_PORT_NAME}"),
    ]);
    let ports = (cfg.devices.len() + cfg.spare_root_ports as usize).min(MAX_ROOT_PORTS);
    for i in 0..ports {
        push(&[
            "-device",
            &format!(
                "pcie-root-port,id={},chassis={},slot={},bus=pcie.0,addr={:#04x}",
                root_port_name(i),
                i + 1,
                i + 1,
                FIRST_ROOT_PORT_SLOT + i
            ),
        ]);
    }
    for d in &cfg.devices {
        push(&[
            "-chardev",
            &format!("socket,id={},path={}", d.chardev, d.socket.display()),
        ]);
        push(&[
            "-device",
            &format!(
                "{},chardev={},id={},bus={}",
                d.kind.qemu_driver(),
                d.chardev,
                d.id,
                d.root_port
            ),
        ]);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> QemuConfig {
        QemuConfig {
            qemu: "qemu-system-x86_64".into(),
            accel: Accel::Tcg,
            memory_mib: 1024,
            smp: 2,
            kernel: "k/bzImage".into(),
            initrd: "k/initrd.cpio".into(),
            cmdline: default_cmdline(),
            console: Console::File("run/console.log".into()),
            qmp_socket: "run/qmp.sock".into(),
            agent_socket: "run/agent.sock".into(),
            devices: vec![
                QemuDevice {
                    id: "gpio0".into(),
                    kind: DeviceKind::Gpio,
                    socket: "s/gpio0.sock".into(),
                    chardev: "gpio0-c0".into(),
                    root_port: root_port_name(0),
                },
                QemuDevice {
                    id: "i2c0".into(),
                    kind: DeviceKind::I2c,
                    socket: "s/i2c0.sock".into(),
                    chardev: "i2c0-c0".into(),
                    root_port: root_port_name(1),
                },
            ],
            spare_root_ports: 1,
        }
    }

    fn joined(c: &QemuConfig) -> String {
        qemu_args(c)
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn qemu_args_tcg_uses_shared_memfd_and_cpu_max() {
        let s = joined(&cfg());
        assert!(s.contains("-accel tcg -cpu max,la57=off"), "{s}");
        assert!(
            s.contains("memory-backend-memfd,id=mem,size=1024M,share=on"),
            "{s}"
        );
        assert!(s.contains("-machine q35,memory-backend=mem"), "{s}");
        assert!(s.contains("-no-reboot"), "{s}");
    }

    #[test]
    fn qemu_args_devices_each_on_own_root_port_plus_spares() {
        let s = joined(&cfg());
        assert!(s.contains("pcie-root-port,id=rp1,chassis=1,slot=1,bus=pcie.0,addr=0x10"));
        assert!(s.contains("pcie-root-port,id=rp3,chassis=3,slot=3,bus=pcie.0,addr=0x12"));
        assert!(!s.contains("id=rp4"));
        assert!(s.contains("-chardev socket,id=gpio0-c0,path=s/gpio0.sock -device vhost-user-gpio-pci,chardev=gpio0-c0,id=gpio0,bus=rp1"));
        assert!(s.contains("vhost-user-i2c-pci,chardev=i2c0-c0,id=i2c0,bus=rp2"));
    }

    #[test]
    fn qemu_args_interactive_console_muxes_monitor_and_logs() {
        let mut c = cfg();
        c.console = Console::Interactive("run/console.log".into());
        c.accel = Accel::Kvm;
        let s = joined(&c);
        assert!(
            s.contains("stdio,id=con,mux=on,signal=off,logfile=run/console.log"),
            "{s}"
        );
        assert!(s.contains("-mon chardev=con,mode=readline"));
        assert!(s.contains("-accel kvm -cpu host"));
    }

    #[test]
    fn qemu_args_agent_on_named_virtio_serial_port() {
        let s = joined(&cfg());
        assert!(s.contains("socket,id=agent,path=run/agent.sock,server=on,wait=off"));
        assert!(s.contains("virtserialport,chardev=agent,name=dangle.agent"));
    }

    #[test]
    fn default_cmdline_console_on_ttys0_and_no_panic_on_warn() {
        let c = default_cmdline();
        assert!(c.contains("console=ttyS0"));
        assert!(c.contains("panic_on_warn=0"));
        assert!(c.contains("rdinit=/init"));
        assert!(
            c.contains("kasan_multi_shot"),
            "one KASAN report must not hide the next"
        );
    }
}
