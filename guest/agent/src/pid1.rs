//! The agent as PID 1: mounts, sysctls, channel discovery, the serve loop
//! and poweroff.
//!
//! Kernel command line options read by the agent:
//! - `dangle.hung_task_timeout_secs=N`: written to
//!   `/proc/sys/kernel/hung_task_timeout_secs` at boot;
//! - `dangle.channel=PATH`: use this device instead of looking for the
//!   `dangle.agent` virtio-serial port (then `/dev/ttyS1`);
//! - `dangle.shell=1`: run `/bin/sh` on the console (busybox, when the image
//!   has it) from boot, respawned when it exits (see [`crate::shell`]; the
//!   host can also start it later).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dangle_proto::{AGENT_PORT_NAME, Event, GuestMessage, PROTOCOL_VERSION};
use nix::mount::{MsFlags, mount};
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};

use crate::consumer::install_stop_signal_handler;
use crate::discovery::Sysfs;
use crate::exec::Reaper;
use crate::kmsg::{self, KmsgWriter};
use crate::server::{Action, Outbox, Server, guest_info};
use crate::shell;

/// How long the agent waits for the virtio-serial port before falling
/// back to [`FALLBACK_CHANNEL`].
pub const CHANNEL_WAIT: Duration = Duration::from_secs(10);
/// The serial port used when no virtio-serial port is named
/// [`AGENT_PORT_NAME`].
pub const FALLBACK_CHANNEL: &str = "/dev/ttyS1";
/// When the agent is not PID 1 (tests on the host), the channel device is
/// taken from this environment variable instead of the kernel cmdline.
pub const CHANNEL_ENV: &str = "DANGLE_AGENT_CHANNEL";
/// How often the poweroff watcher looks at its signal flag.
const POWEROFF_POLL: Duration = Duration::from_millis(100);
/// Pause before reading again after the host side closed the channel.
pub const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// What the kernel command line asks of the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootConfig {
    /// `dangle.hung_task_timeout_secs=N`.
    pub hung_task_timeout_secs: Option<u32>,
    /// `dangle.channel=PATH`.
    pub channel: Option<PathBuf>,
    /// `dangle.shell=1`.
    pub shell: bool,
}

impl BootConfig {
    /// Parses `/proc/cmdline`; unknown words are ignored, bad values are
    /// logged and ignored.
    pub fn parse(cmdline: &str) -> Self {
        let mut cfg = Self::default();
        for word in cmdline.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            match key {
                "dangle.hung_task_timeout_secs" => match value.parse() {
                    Ok(n) => cfg.hung_task_timeout_secs = Some(n),
                    Err(e) => tracing::warn!("kernel cmdline {word}: {e}"),
                },
                "dangle.channel" => cfg.channel = Some(PathBuf::from(value)),
                "dangle.shell" => cfg.shell = value == "1",
                _ => {}
            }
        }
        cfg
    }
}

/// The `/dev` node of the virtio-serial port named [`AGENT_PORT_NAME`]
/// (`/sys/class/virtio-ports/<vportNpM>/name`), if there is one.
pub fn find_virtio_port(sysfs: &Sysfs) -> Option<PathBuf> {
    let rd = std::fs::read_dir(sysfs.path("/sys/class/virtio-ports")).ok()?;
    let mut names: Vec<String> = rd
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names.into_iter().find_map(|port| {
        let name =
            std::fs::read_to_string(sysfs.path(&format!("/sys/class/virtio-ports/{port}/name")))
                .ok()?;
        (name.trim() == AGENT_PORT_NAME).then(|| sysfs.path(&format!("/dev/{port}")))
    })
}

fn mount_one(source: &str, target: &str, fstype: &str) {
    if let Err(e) = std::fs::create_dir_all(target) {
        tracing::warn!("mkdir {target}: {e}");
    }
    match mount(
        Some(source),
        target,
        Some(fstype),
        MsFlags::MS_NOSUID,
        None::<&str>,
    ) {
        Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
        Err(e) => tracing::warn!("mount {fstype} on {target}: {e}"),
    }
}

/// Mounts proc, sysfs, devtmpfs, debugfs, configfs and a tmpfs on /tmp.
pub fn mount_all() {
    mount_one("proc", "/proc", "proc");
    mount_one("sysfs", "/sys", "sysfs");
    mount_one("devtmpfs", "/dev", "devtmpfs");
    mount_one("debugfs", "/sys/kernel/debug", "debugfs");
    mount_one("configfs", "/sys/kernel/config", "configfs");
    mount_one("tmpfs", "/tmp", "tmpfs");
}

fn write_sysctl(path: &str, value: &str) {
    if let Err(e) = std::fs::write(path, value) {
        tracing::warn!("{path} = {value}: {e}");
    }
}

fn open_channel(sysfs: &Sysfs, cfg: &BootConfig) -> Option<File> {
    let open = |p: &Path| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(p)
    };
    if let Some(p) = &cfg.channel {
        return match open(p) {
            Ok(f) => {
                make_raw_if_tty(&f, p);
                Some(f)
            }
            Err(e) => {
                tracing::error!("channel {}: {e}", p.display());
                None
            }
        };
    }
    let end = Instant::now() + CHANNEL_WAIT;
    while Instant::now() < end {
        if let Some(p) = find_virtio_port(sysfs) {
            match open(&p) {
                Ok(f) => {
                    tracing::info!("channel: {}", p.display());
                    return Some(f);
                }
                Err(e) => tracing::warn!("channel {}: {e}", p.display()),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    match open(Path::new(FALLBACK_CHANNEL)) {
        Ok(f) => {
            make_raw_if_tty(&f, Path::new(FALLBACK_CHANNEL));
            tracing::info!("channel: {FALLBACK_CHANNEL}");
            Some(f)
        }
        Err(e) => {
            tracing::error!("no channel: no {AGENT_PORT_NAME} port and {FALLBACK_CHANNEL}: {e}");
            None
        }
    }
}

/// A serial line or pty must not echo, translate newlines or treat
/// control characters: the protocol is bytes.
fn make_raw_if_tty(f: &File, path: &Path) {
    if !nix::unistd::isatty(f).unwrap_or(false) {
        return;
    }
    match tcgetattr(f) {
        Ok(mut t) => {
            cfmakeraw(&mut t);
            if let Err(e) = tcsetattr(f, SetArg::TCSANOW, &t) {
                tracing::warn!("raw mode on {}: {e}", path.display());
            }
        }
        Err(e) => tracing::warn!("tcgetattr {}: {e}", path.display()),
    }
}

fn spawn_writer(mut out: File) -> Outbox {
    let (tx, rx) = mpsc::channel::<GuestMessage>();
    let spawned = std::thread::Builder::new()
        .name("writer".to_owned())
        .spawn(move || {
            for msg in rx {
                match dangle_proto::encode(&msg) {
                    Ok(line) => {
                        if let Err(e) = out.write_all(line.as_bytes()) {
                            tracing::warn!("channel write: {e}");
                        }
                    }
                    Err(e) => tracing::error!("encode: {e}"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("writer thread: {e}");
    }
    let tx = Mutex::new(tx);
    Arc::new(move |msg| {
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(msg);
        }
    })
}

/// busybox `poweroff` and `reboot` signal init instead of calling
/// reboot(2) themselves: stop the consumers and power off, as for
/// [`dangle_proto::Request::Poweroff`].
fn spawn_poweroff_watcher(server: &Server) {
    if let Err(e) = shell::install_poweroff_handler() {
        tracing::error!("poweroff signal handlers: {e}");
        return;
    }
    let registry = server.registry().clone();
    let r = std::thread::Builder::new()
        .name("poweroff".to_owned())
        .spawn(move || {
            while !shell::poweroff_requested() {
                std::thread::sleep(POWEROFF_POLL);
            }
            tracing::info!("poweroff requested by signal");
            registry.stop_all();
            if !registry.wait_all(crate::server::POWEROFF_STOP_TIMEOUT) {
                tracing::warn!("poweroff: some consumers did not stop");
            }
            poweroff()
        });
    if let Err(e) = r {
        tracing::error!("poweroff thread: {e}");
    }
}

fn halt_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn poweroff() -> ! {
    tracing::info!("powering off");
    nix::unistd::sync();
    let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    tracing::error!("reboot(RB_POWER_OFF): {e}");
    halt_forever()
}

/// The agent's entry point. Never returns: PID 1 exiting panics the kernel.
pub fn main() -> ! {
    let writer = KmsgWriter::default();
    kmsg::init(writer.clone());
    let pid1 = std::process::id() == 1;
    if pid1 {
        mount_all();
    } else {
        tracing::warn!("not PID 1: not mounting anything");
    }
    if let Err(e) = writer.open() {
        tracing::warn!("/dev/kmsg: {e}");
    }
    let sysfs = Sysfs::default();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let mut cfg = BootConfig::parse(&cmdline);
    if !pid1 {
        // Outside a VM (tests) the host's cmdline says nothing to us.
        cfg = BootConfig {
            channel: std::env::var_os(CHANNEL_ENV).map(PathBuf::from),
            ..BootConfig::default()
        };
    }
    if pid1 {
        write_sysctl("/proc/sys/kernel/panic_on_warn", "0");
        if let Some(n) = cfg.hung_task_timeout_secs {
            write_sysctl("/proc/sys/kernel/hung_task_timeout_secs", &n.to_string());
        }
    }
    if let Err(e) = install_stop_signal_handler() {
        tracing::error!("SIGUSR1 handler: {e}");
    }
    let reaper = Reaper::new();
    if let Err(e) = reaper.spawn_thread() {
        tracing::error!("reaper thread: {e}");
    }
    if cfg.shell {
        shell::start_once(&reaper);
    }
    // PID 1 must never exit (the kernel would panic); a test run may.
    let give_up = || -> ! {
        if pid1 {
            halt_forever()
        }
        std::process::exit(1)
    };
    if !pid1 && cfg.channel.is_none() {
        tracing::error!("not PID 1 and {CHANNEL_ENV} is not set: no channel");
        give_up()
    }
    let Some(channel) = open_channel(&sysfs, &cfg) else {
        give_up()
    };
    let (reader, writer_file) = match channel.try_clone() {
        Ok(w) => (channel, w),
        Err(e) => {
            tracing::error!("dup channel: {e}");
            give_up()
        }
    };
    let outbox = spawn_writer(writer_file);
    let server = Server::new(sysfs.clone(), reaper, outbox);
    if let Err(e) = server.registry().spawn_watchdog() {
        tracing::error!("watchdog thread: {e}");
    }
    if pid1 {
        spawn_poweroff_watcher(&server);
    }
    server.send_event(Event::Ready {
        protocol: PROTOCOL_VERSION,
        guest: guest_info(&sysfs),
    });
    tracing::info!("ready, protocol {PROTOCOL_VERSION}");
    let mut input = BufReader::new(reader);
    loop {
        match server.serve(&mut input) {
            Ok(Action::Poweroff) => break,
            // End of input: the host end is not connected (virtio-serial
            // reads return 0 then). Wait for it to come back.
            Ok(Action::Continue) => std::thread::sleep(RECONNECT_PAUSE),
            Err(e) => {
                tracing::warn!("channel read: {e}");
                std::thread::sleep(RECONNECT_PAUSE);
            }
        }
    }
    // Let the writer flush the reply to Poweroff.
    std::thread::sleep(Duration::from_millis(200));
    if pid1 {
        poweroff()
    }
    std::process::exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_config_parse_reads_dangle_options_and_ignores_the_rest() {
        let cfg = BootConfig::parse(
            "console=ttyS0 dangle.hung_task_timeout_secs=20 quiet dangle.channel=/dev/ttyS2 dangle.shell=1\n",
        );
        assert_eq!(
            cfg,
            BootConfig {
                hung_task_timeout_secs: Some(20),
                channel: Some(PathBuf::from("/dev/ttyS2")),
                shell: true,
            }
        );
        assert_eq!(
            BootConfig::parse("dangle.hung_task_timeout_secs=abc"),
            BootConfig::default()
        );
    }

    #[test]
    fn find_virtio_port_fake_tree_picks_the_named_port() {
        let t = tempfile::tempdir().expect("tempdir");
        for (port, name) in [
            ("vport0p0", "org.qemu.guest_agent.0"),
            ("vport1p1", "dangle.agent"),
        ] {
            let d = t.path().join("sys/class/virtio-ports").join(port);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("name"), format!("{name}\n")).expect("write");
        }
        let s = Sysfs::new(t.path());
        let p = find_virtio_port(&s).expect("port");
        assert!(p.ends_with("dev/vport1p1"), "{}", p.display());
        std::fs::remove_dir_all(t.path().join("sys/class/virtio-ports/vport1p1")).expect("rm");
        assert_eq!(find_virtio_port(&s), None);
    }
}
