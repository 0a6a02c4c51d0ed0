//! The VM fixture: backends + QEMU + console + QMP as one RAII value.
//!
//! [`Vm::start`] spawns one backend per device on a private socket
//! directory (0700), waits for their sockets, starts QEMU with the console
//! going straight to `console.log` in the artifacts directory, and connects
//! QMP. Dropping the [`Vm`] kills every child (one process group). All logs
//! stay in the artifacts directory; [`Vm::postmortem`] renders them between
//! clear delimiters, with the timeouts in force, for failure messages.

use dangle_proto::Deadline;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::accel::{self, AccelChoice};
use super::console::{ConsoleLog, ConsoleSink, tail_lines};
use super::devices::DeviceSpec;
use super::process::{ChildGroup, ProcessError, Supervised};
use super::qemu::{self, Accel, Console, QemuConfig, QemuDevice};
use super::qmp::{self, QmpClient, QmpError};

/// How long a backend may take to create its vhost-user socket.
pub const BACKEND_SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

/// How long QEMU may take to exit after the guest powers off or `quit`.
pub const QEMU_EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Errors of the VM fixture. Each carries what the user needs to look at.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A required file is missing.
    #[error("{what} not found at {path}")]
    Missing { what: &'static str, path: PathBuf },
    /// QEMU is not installed.
    #[error(
        "qemu-system-x86_64 not found: install QEMU 10 with `bash ci/setup-host.sh` (bookworm-backports)"
    )]
    NoQemu,
    /// The artifacts or socket directory could not be prepared.
    #[error("cannot prepare {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A child could not be spawned.
    #[error("cannot start {0}")]
    Spawn(String, #[source] ProcessError),
    /// A backend never created its socket.
    #[error("backend {id} did not create {socket} within {timeout:?} (log: {log})")]
    BackendSocket {
        id: String,
        socket: PathBuf,
        log: PathBuf,
        timeout: Duration,
    },
    /// QEMU exited during start-up.
    #[error("qemu exited during start-up ({status}); its log: {log}")]
    QemuExited { status: String, log: PathBuf },
    /// QMP failed.
    #[error("qmp")]
    Qmp(#[from] QmpError),
    /// No device with this id.
    #[error("no device {0} in this vm")]
    NoDevice(String),
    /// A backend's control socket failed.
    #[error("control socket of {id} ({socket})")]
    Control {
        id: String,
        socket: PathBuf,
        #[source]
        source: dangle_backends::control::ClientError,
    },
    /// A backend refused a control request.
    #[error("the backend of {id} refused the request: {reason}")]
    ControlRefused { id: String, reason: String },
    /// QEMU is older than dangle needs.
    #[error(
        "{qemu} is QEMU {version}; dangle needs QEMU {MIN_QEMU_MAJOR} or newer: QEMU 7.2 never offers VIRTIO_GPIO_F_IRQ to the guest, so GPIO interrupts (edge events) cannot work. Install QEMU 10 from bookworm-backports with `sudo bash ci/setup-host.sh`"
    )]
    QemuTooOld { qemu: PathBuf, version: String },
    /// `qemu --version` did not say which version it is.
    #[error("cannot tell the version of {qemu}: {output:?}")]
    QemuVersion { qemu: PathBuf, output: String },
    /// More devices than root ports fit on the machine.
    #[error("{0} devices asked for, at most {max} fit", max = qemu::MAX_ROOT_PORTS)]
    TooManyDevices(usize),
}

/// Everything needed to start a VM.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// bzImage.
    pub kernel: PathBuf,
    /// initramfs with the agent as /init.
    pub initrd: PathBuf,
    /// Devices present at boot.
    pub devices: Vec<DeviceSpec>,
    /// Accelerator choice.
    pub accel: AccelChoice,
    /// Guest RAM, MiB.
    pub memory_mib: u32,
    /// vCPUs.
    pub smp: u32,
    /// Appended to the default kernel command line.
    pub extra_cmdline: Vec<String>,
    /// Where logs and the console go (created).
    pub artifacts: PathBuf,
    /// Program that serves devices, and the arguments before the device
    /// subcommand: `dangle backend` or `dangle-backend`.
    pub backend_program: PathBuf,
    /// See `backend_program`.
    pub backend_prefix: Vec<OsString>,
    /// QEMU binary.
    pub qemu: PathBuf,
    /// Console on the terminal (interactive `dangle boot`).
    pub interactive: bool,
    /// Cache directory (KVM probe verdict).
    pub cache_dir: PathBuf,
    /// Extra root ports for devices added later.
    pub spare_root_ports: u32,
}

impl VmSpec {
    /// A spec with defaults for everything but the kernel, initramfs and
    /// artifacts directory. The backend program is this executable when it
    /// is `dangle`, else `dangle` next to it (test binaries live one
    /// directory below).
    pub fn new(kernel: PathBuf, initrd: PathBuf, artifacts: PathBuf) -> Self {
        Self {
            kernel,
            initrd,
            devices: DeviceSpec::defaults(),
            accel: AccelChoice::Auto,
            memory_mib: 1024,
            smp: 2,
            extra_cmdline: Vec::new(),
            artifacts,
            backend_program: default_dangle_exe(),
            backend_prefix: vec!["backend".into()],
            qemu: find_qemu().unwrap_or_else(|| "qemu-system-x86_64".into()),
            interactive: false,
            cache_dir: crate::paths::cache_dir(),
            spare_root_ports: 2,
        }
    }
}

/// The `dangle` executable to spawn backends with: `DANGLE_EXE`, else this
/// process if it is `dangle`, else `dangle` in this directory or its parent.
pub fn default_dangle_exe() -> PathBuf {
    if let Some(p) = std::env::var_os("DANGLE_EXE") {
        return p.into();
    }
    let me = std::env::current_exe().unwrap_or_else(|_| "dangle".into());
    if me.file_name().is_some_and(|n| n == "dangle") {
        return me;
    }
    for dir in me.ancestors().skip(1).take(2) {
        let c = dir.join("dangle");
        if c.is_file() {
            return c;
        }
    }
    "dangle".into()
}

/// The oldest QEMU major version dangle works with (vhost-user-gpio with
/// VIRTIO_GPIO_F_IRQ passed through).
pub const MIN_QEMU_MAJOR: u32 = 10;

/// `(major, minor, "X.Y.Z")` from the first line of `qemu --version`
/// (`QEMU emulator version 10.0.2 (Debian ...)`).
pub fn parse_qemu_version(output: &str) -> Option<(u32, u32, String)> {
    let line = output.lines().next()?;
    let word = line.split("version").nth(1)?.split_whitespace().next()?;
    let mut parts = word.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor, word.to_owned()))
}

/// Fails when `qemu` is older than [`MIN_QEMU_MAJOR`]. The answer is
/// remembered per binary for the life of the process.
fn check_qemu_version(qemu: &Path) -> Result<(), VmError> {
    static CHECKED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mut checked = CHECKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if checked.iter().any(|p| p == qemu) {
        return Ok(());
    }
    let out = Command::new(qemu)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| VmError::QemuVersion {
            qemu: qemu.to_owned(),
            output: e.to_string(),
        })?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let Some((major, _, version)) = parse_qemu_version(&text) else {
        return Err(VmError::QemuVersion {
            qemu: qemu.to_owned(),
            output: text.lines().next().unwrap_or_default().to_owned(),
        });
    };
    if major < MIN_QEMU_MAJOR {
        return Err(VmError::QemuTooOld {
            qemu: qemu.to_owned(),
            version,
        });
    }
    checked.push(qemu.to_owned());
    Ok(())
}

/// Finds qemu-system-x86_64 on PATH.
pub fn find_qemu() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("qemu-system-x86_64"))
        .find(|p| p.is_file())
}

/// A running backend.
#[derive(Debug)]
pub struct Backend {
    /// The device it serves.
    pub spec: DeviceSpec,
    /// vhost-user socket.
    pub socket: PathBuf,
    /// Control socket.
    pub control: PathBuf,
    /// The process.
    pub process: Supervised,
    /// How many chardevs have been attached so far (ids must be new on replug).
    pub generation: u32,
}

impl Backend {
    /// The chardev id of the current generation.
    pub fn chardev_id(&self) -> String {
        format!("{}-c{}", self.spec.id(), self.generation)
    }
}

/// A running VM.
#[derive(Debug)]
pub struct Vm {
    spec: VmSpec,
    accel: Accel,
    accel_reason: String,
    // Field order matters for drop: the group kills children first.
    group: ChildGroup,
    qemu: Supervised,
    backends: Vec<Backend>,
    qmp: Option<QmpClient>,
    console: ConsoleLog,
    sockdir: tempfile::TempDir,
    agent_socket: PathBuf,
    root_ports: Vec<String>,
    started: Instant,
}

fn prepare_dir(path: &Path) -> Result<(), VmError> {
    fs::create_dir_all(path).map_err(|source| VmError::Dir {
        path: path.to_owned(),
        source,
    })
}

impl Vm {
    /// Starts backends and QEMU. `console_sink` receives console bytes as
    /// they arrive (the streaming crash parser).
    pub fn start(spec: VmSpec, console_sink: Option<ConsoleSink>) -> Result<Vm, VmError> {
        for (what, path) in [("kernel image", &spec.kernel), ("initramfs", &spec.initrd)] {
            if !path.is_file() {
                return Err(VmError::Missing {
                    what,
                    path: path.clone(),
                });
            }
        }
        if spec.devices.len() > qemu::MAX_ROOT_PORTS {
            return Err(VmError::TooManyDevices(spec.devices.len()));
        }
        if !spec.qemu.is_file() && find_qemu().is_none() {
            return Err(VmError::NoQemu);
        }
        check_qemu_version(&spec.qemu)?;
        prepare_dir(&spec.artifacts)?;
        // Unix socket paths are limited to 108 bytes, so sockets live in a
        // short private temp dir (tempfile creates it 0700), not in the
        // possibly deep artifacts dir.
        let sockdir = tempfile::Builder::new()
            .prefix("dangle-")
            .tempdir()
            .map_err(|source| VmError::Dir {
                path: std::env::temp_dir(),
                source,
            })?;
        let (accel, accel_reason) =
            accel::resolve(spec.accel, &spec.qemu, &spec.kernel, &spec.cache_dir);
        tracing::info!("accelerator: {accel} ({accel_reason})");

        let mut group = ChildGroup::new();
        let mut backends = Vec::new();
        for d in &spec.devices {
            backends.push(spawn_backend(&mut group, &spec, sockdir.path(), d.clone())?);
        }
        for b in &backends {
            wait_for_socket(b)?;
        }

        let console_path = spec.artifacts.join("console.log");
        let qmp_socket = sockdir.path().join("qmp.sock");
        let root_ports: Vec<String> = (0..(spec.devices.len() + spec.spare_root_ports as usize)
            .min(qemu::MAX_ROOT_PORTS))
            .map(qemu::root_port_name)
            .collect();
        let mut cmdline = qemu::default_cmdline();
        for extra in &spec.extra_cmdline {
            cmdline.push(' ');
            cmdline.push_str(extra);
        }
        let cfg = QemuConfig {
            qemu: spec.qemu.clone(),
            accel,
            memory_mib: spec.memory_mib,
            smp: spec.smp,
            kernel: spec.kernel.clone(),
            initrd: spec.initrd.clone(),
            cmdline,
            console: if spec.interactive {
                Console::Interactive(console_path.clone())
            } else {
                Console::File(console_path.clone())
            },
            qmp_socket: qmp_socket.clone(),
            agent_socket: sockdir.path().join("agent.sock"),
            devices: backends
                .iter()
                .enumerate()
                .map(|(i, b)| QemuDevice {
                    id: b.spec.id().to_owned(),
                    kind: b.spec.kind(),
                    socket: b.socket.clone(),
                    chardev: b.chardev_id(),
                    root_port: root_ports[i].clone(),
                })
                .collect(),
            spare_root_ports: spec.spare_root_ports,
        };
        let mut cmd = Command::new(&spec.qemu);
        cmd.args(qemu::qemu_args(&cfg));
        let qemu_log = spec.artifacts.join("qemu.log");
        // Start following before QEMU creates the file so nothing is missed.
        let _ = fs::remove_file(&console_path);
        let console = ConsoleLog::follow(&console_path, console_sink);
        let qemu = if spec.interactive {
            let log = fs::File::create(&qemu_log).map_err(|source| VmError::Dir {
                path: qemu_log.clone(),
                source,
            })?;
            cmd.stderr(log);
            group.spawn_foreground("qemu", cmd, &qemu_log)
        } else {
            cmd.stdin(Stdio::null());
            group.spawn("qemu", cmd, &qemu_log)
        }
        .map_err(|e| VmError::Spawn("qemu".into(), e))?;
        record_cmdlines(&spec.artifacts, &backends, &qemu);

        let mut vm = Vm {
            spec,
            accel,
            accel_reason,
            group,
            qemu,
            backends,
            qmp: None,
            console,
            agent_socket: sockdir.path().join("agent.sock"),
            sockdir,
            root_ports,
            started: Instant::now(),
        };
        match QmpClient::connect(&qmp_socket, qmp::CONNECT_TIMEOUT) {
            Ok(q) => vm.qmp = Some(q),
            Err(e) => {
                if let Ok(Some(st)) = vm.qemu.try_wait() {
                    return Err(VmError::QemuExited {
                        status: st.to_string(),
                        log: vm.qemu.log.clone(),
                    });
                }
                return Err(e.into());
            }
        }
        Ok(vm)
    }

    /// The accelerator in use and why it was chosen.
    pub fn accel(&self) -> (Accel, &str) {
        (self.accel, &self.accel_reason)
    }

    /// The spec this VM was started from.
    pub fn spec(&self) -> &VmSpec {
        &self.spec
    }

    /// The artifacts directory.
    pub fn artifacts(&self) -> &Path {
        &self.spec.artifacts
    }

    /// The followed console.
    pub fn console(&self) -> &ConsoleLog {
        &self.console
    }

    /// The agent's unix socket (QEMU's end of the virtio-serial port).
    pub fn agent_socket(&self) -> PathBuf {
        self.agent_socket.clone()
    }

    /// [`Vm::agent_socket`], borrowed.
    pub fn agent_socket_path(&self) -> &Path {
        &self.agent_socket
    }

    /// The private socket directory (0700) of this VM.
    pub fn socket_dir(&self) -> &Path {
        self.sockdir.path()
    }

    /// QMP. Panics only if called after [`Vm::shutdown`] took it, which the
    /// type prevents (shutdown consumes the VM).
    pub fn qmp(&mut self) -> &mut QmpClient {
        self.qmp
            .as_mut()
            .expect("qmp is connected for the vm's whole life")
    }

    /// Time since QEMU was spawned.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The backends, in device order.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// The backend of device `id`.
    pub fn backend(&self, id: &str) -> Result<&Backend, VmError> {
        self.backends
            .iter()
            .find(|b| b.spec.id() == id)
            .ok_or_else(|| VmError::NoDevice(id.to_owned()))
    }

    fn backend_index(&self, id: &str) -> Result<usize, VmError> {
        self.backends
            .iter()
            .position(|b| b.spec.id() == id)
            .ok_or_else(|| VmError::NoDevice(id.to_owned()))
    }

    /// The root port a device sits on.
    pub fn root_port(&self, id: &str) -> Result<String, VmError> {
        Ok(self.root_ports[self.backend_index(id)?].clone())
    }

    /// The guest PCI address of the root port a device sits on; the
    /// device's own sysfs path runs through it.
    pub fn root_port_pci_address(&self, id: &str) -> Result<String, VmError> {
        Ok(qemu::root_port_pci_address(self.backend_index(id)?))
    }

    /// `Some(status)` if QEMU has exited.
    pub fn qemu_exited(&mut self) -> Option<ExitStatus> {
        self.qemu.try_wait().ok().flatten()
    }

    /// Backends that have exited, with their status.
    pub fn dead_backends(&mut self) -> Vec<(String, ExitStatus)> {
        self.backends
            .iter_mut()
            .filter_map(|b| Some((b.spec.id().to_owned(), b.process.try_wait().ok().flatten()?)))
            .collect()
    }

    /// SIGKILLs the backend of `id` and waits for it.
    pub fn kill_backend(&mut self, id: &str) -> Result<(), VmError> {
        let i = self.backend_index(id)?;
        self.backends[i].process.kill();
        Ok(())
    }

    /// Starts the backend of `id` again (after it died or was killed).
    pub fn restart_backend(&mut self, id: &str) -> Result<(), VmError> {
        let i = self.backend_index(id)?;
        self.backends[i].process.kill();
        let _ = fs::remove_file(&self.backends[i].socket);
        let generation = self.backends[i].generation;
        let mut b = spawn_backend(
            &mut self.group,
            &self.spec,
            self.sockdir.path(),
            self.backends[i].spec.clone(),
        )?;
        b.generation = generation;
        wait_for_socket(&b)?;
        self.backends[i] = b;
        Ok(())
    }

    /// QMP unplug of `id`: `device_del`, wait up to `timeout` for
    /// `DEVICE_DELETED`, then `chardev-remove`. Returns
    /// `Err(QmpError::EventTimeout)` when the guest never lets go.
    pub fn unplug(&mut self, id: &str, timeout: Duration) -> Result<(), VmError> {
        let i = self.backend_index(id)?;
        let chardev = self.backends[i].chardev_id();
        let qmp = self.qmp();
        qmp.device_del_and_wait(id, timeout)?;
        qmp.chardev_remove(&chardev)?;
        Ok(())
    }

    /// QMP replug of `id` after [`Vm::unplug`]: `chardev-add` with a new
    /// id on the same socket, `device_add` on the same root port.
    pub fn replug(&mut self, id: &str) -> Result<(), VmError> {
        let i = self.backend_index(id)?;
        self.backends[i].generation += 1;
        let chardev = self.backends[i].chardev_id();
        let socket = self.backends[i].socket.clone();
        let driver = self.backends[i].spec.kind().qemu_driver();
        let port = self.root_ports[i].clone();
        let qmp = self.qmp();
        qmp.chardev_add_unix(&chardev, &socket)?;
        qmp.device_add(driver, id, Some(&port), &[("chardev", &chardev)])?;
        Ok(())
    }

    /// Asks QEMU to quit and waits for it; returns whether it exited.
    pub fn quit(&mut self) -> bool {
        if let Some(q) = self.qmp.as_mut() {
            let _ = q.quit();
        }
        matches!(self.qemu.wait_timeout(QEMU_EXIT_TIMEOUT), Ok(Some(_)))
    }

    /// Waits for QEMU to exit on its own (guest poweroff) up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.qemu.wait_timeout(timeout).ok().flatten()
    }

    /// Waits for QEMU to exit on its own (guest poweroff, or Ctrl-A X on an
    /// interactive console) with no time limit.
    pub fn wait_exit_unbounded(&mut self) -> io::Result<ExitStatus> {
        self.qemu.wait()
    }

    /// Stops everything and returns the whole console.
    pub fn shutdown(mut self) -> Vec<u8> {
        if self.qemu_exited().is_none() {
            self.quit();
        }
        self.group.kill_all();
        let console = std::mem::replace(&mut self.console, ConsoleLog::follow(Path::new(""), None));
        console.finish()
    }

    /// Console, QEMU and backend logs between delimiters, with the
    /// timeouts in force, for failure messages.
    pub fn postmortem(&self) -> String {
        let mut s = String::new();
        let read_tail = |p: &Path| tail_lines(&fs::read(p).unwrap_or_default(), 40);
        s.push_str(&format!(
            "==== dangle vm post-mortem (artifacts: {}) ====\n",
            self.spec.artifacts.display()
        ));
        s.push_str(&format!(
            "accel: {} ({}); uptime {:.1}s; timeouts: backend socket {:?}, qmp connect {:?}, qmp command {:?}, qemu exit {:?}\n",
            self.accel,
            self.accel_reason,
            self.started.elapsed().as_secs_f64(),
            BACKEND_SOCKET_TIMEOUT,
            qmp::CONNECT_TIMEOUT,
            qmp::COMMAND_TIMEOUT,
            QEMU_EXIT_TIMEOUT
        ));
        s.push_str(&format!(
            "---- console (last 80 lines of {}) ----\n",
            self.console.path().display()
        ));
        s.push_str(&self.console.tail(80));
        s.push_str(&format!("\n---- qemu ({}) ----\n", self.qemu.log.display()));
        s.push_str(&read_tail(&self.qemu.log));
        for b in &self.backends {
            s.push_str(&format!(
                "\n---- backend {} ({}) ----\n",
                b.spec.id(),
                b.process.log.display()
            ));
            s.push_str(&read_tail(&b.process.log));
        }
        s.push_str("\n==== end of post-mortem ====\n");
        s
    }
}

fn spawn_backend(
    group: &mut ChildGroup,
    spec: &VmSpec,
    sockdir: &Path,
    d: DeviceSpec,
) -> Result<Backend, VmError> {
    let socket = sockdir.join(format!("{}.sock", d.id()));
    let control = sockdir.join(format!("{}.ctl", d.id()));
    let _ = fs::remove_file(&socket);
    let _ = fs::remove_file(&control);
    let mut cmd = Command::new(&spec.backend_program);
    cmd.args(&spec.backend_prefix)
        .args(d.backend_args(&socket, &control));
    cmd.stdin(Stdio::null());
    let name = format!("backend-{}", d.id());
    let log = spec.artifacts.join(format!("{name}.log"));
    let process = group
        .spawn(&name, cmd, &log)
        .map_err(|e| VmError::Spawn(name, e))?;
    Ok(Backend {
        spec: d,
        socket,
        control,
        process,
        generation: 0,
    })
}

fn wait_for_socket(b: &Backend) -> Result<(), VmError> {
    let deadline = Deadline::after(BACKEND_SOCKET_TIMEOUT);
    while !deadline.expired() {
        if b.socket.exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(VmError::BackendSocket {
        id: b.spec.id().to_owned(),
        socket: b.socket.clone(),
        log: b.process.log.clone(),
        timeout: BACKEND_SOCKET_TIMEOUT,
    })
}

fn record_cmdlines(artifacts: &Path, backends: &[Backend], qemu: &Supervised) {
    let mut s = String::new();
    for b in backends {
        s.push_str(&format!("{}: {}\n", b.process.name, b.process.cmdline));
    }
    s.push_str(&format!("{}: {}\n", qemu.name, qemu.cmdline));
    let _ = fs::write(artifacts.join("cmdlines.txt"), s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_qemu_version_debian_backports_and_old_bookworm() {
        assert_eq!(
            parse_qemu_version(
                "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright"
            ),
            Some((10, 0, "10.0.2".to_owned()))
        );
        assert_eq!(
            parse_qemu_version("QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u13)"),
            Some((7, 2, "7.2.15".to_owned()))
        );
        assert_eq!(parse_qemu_version("something else"), None);
        assert_eq!(parse_qemu_version(""), None);
    }

    #[test]
    fn check_qemu_version_old_qemu_names_the_feature_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("qemu-system-x86_64");
        fs::write(
            &fake,
            "#!/bin/sh\necho 'QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u13)'\n",
        )
        .unwrap();
        fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let e = check_qemu_version(&fake).unwrap_err().to_string();
        assert!(e.contains("QEMU 7.2.15"), "{e}");
        assert!(e.contains("VIRTIO_GPIO_F_IRQ"), "{e}");
        assert!(e.contains("setup-host.sh"), "{e}");
    }
}
