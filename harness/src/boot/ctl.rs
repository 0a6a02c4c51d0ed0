//! `dangle ctl`: hands on the hardware of a running `dangle boot` from a
//! second terminal.
//!
//! The boot process listens on a unix socket in its private socket
//! directory and relays each request to the machinery it already owns:
//! unplug and replug go through the same [`crate::unplug`] methods as
//! `dangle run`, lines, pins, faults and EEPROM contents through the
//! backends' control sockets. One JSON line in, one JSON line out.
//!
//! A boot is found by its artifacts directory (`--boot DIR`, which holds
//! `boot.json`), or else as the newest live boot of this user in
//! [`crate::paths::runtime_dir`]`/boots`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::exit::Status;
use crate::unplug::Method;

/// Longest request or reply line (an EEPROM of 64 KiB in hex fits).
pub const MAX_LINE: u64 = 1 << 20;
/// How long the client waits for a reply: an unplug may take its whole
/// timeout, and a replug its re-probe.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(180);
/// How often the server looks at its stop flag between connections.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

/// What a line does when driven from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LineAction {
    /// Drive it high.
    High,
    /// Drive it low.
    Low,
    /// High, then low after [`PULSE`]: a rising and a falling edge. The
    /// level stays up long enough for an edge reader under TCG to read it
    /// high (uAPI v1 readers take the edge from the level they read).
    Pulse,
}

/// How long a pulse stays high.
pub const PULSE: Duration = Duration::from_millis(250);

/// A level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// 1.
    High,
    /// 0.
    Low,
}

/// One request to a running boot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Devices, their guest names, state and backend counters.
    Status {},
    /// Pull a device out.
    Unplug {
        /// dangle id.
        device: String,
        /// How.
        method: Method,
        /// How long the guest may take to let go.
        timeout_ms: u64,
    },
    /// Put an unplugged device back (the same way it went).
    Replug {
        /// dangle id.
        device: String,
    },
    /// Drive a GPIO controller's input line.
    Line {
        /// dangle id.
        device: String,
        /// Line offset.
        line: u16,
        /// What to do.
        action: LineAction,
    },
    /// Drive an input pin of a GPIO expander on an adapter.
    Pin {
        /// dangle id of the adapter.
        device: String,
        /// 7-bit address of the expander.
        addr: u16,
        /// Pin number.
        pin: u8,
        /// Level.
        level: Level,
    },
    /// Replace the backend's fault plan (empty: clear it and answer what
    /// it held).
    Fault {
        /// dangle id.
        device: String,
        /// Backend fault specs.
        specs: Vec<String>,
    },
    /// Read a memory chip.
    EepromDump {
        /// dangle id of the adapter.
        device: String,
        /// 7-bit address.
        addr: u16,
    },
    /// Write a memory chip from offset 0.
    EepromLoad {
        /// dangle id of the adapter.
        device: String,
        /// 7-bit address.
        addr: u16,
        /// Contents, hex.
        hex: String,
    },
}

/// How a request ended; maps onto dangle's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Carried out.
    Ok,
    /// The guest never completed an unplug or replug: a finding.
    Finding,
    /// The request does not fit this boot (unknown device, wrong state).
    BadInput,
    /// The machinery failed.
    Failed,
}

impl Outcome {
    /// The exit status class.
    pub fn status(self) -> Status {
        match self {
            Outcome::Ok => Status::Ok,
            Outcome::Finding => Status::Findings,
            Outcome::BadInput => Status::BadInput,
            Outcome::Failed => Status::Infrastructure,
        }
    }
}

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// How it ended.
    pub outcome: Outcome,
    /// What happened, for people.
    pub message: String,
    /// EEPROM contents (hex), for dumps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
}

impl Reply {
    /// A successful reply.
    pub fn ok(message: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Ok,
            message: message.into(),
            hex: None,
        }
    }

    /// A reply with another outcome.
    pub fn with(outcome: Outcome, message: impl Into<String>) -> Self {
        Self {
            outcome,
            message: message.into(),
            hex: None,
        }
    }
}

/// What handles requests (the boot's state).
pub trait Handler: Send {
    /// Carries out one request.
    fn handle(&mut self, req: Request) -> Reply;
}

/// Reads one line of at most [`MAX_LINE`] bytes; `None` at end of input.
fn read_line(r: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r.take(MAX_LINE + 1).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') && n as u64 > MAX_LINE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("line longer than {MAX_LINE} bytes"),
        ));
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The boot's side: a thread serving one request per connection, stopped
/// (and its socket removed) on drop.
#[derive(Debug)]
pub struct Server {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens on `socket` and serves requests with `handler`.
    pub fn start(socket: &Path, handler: Arc<Mutex<dyn Handler>>) -> std::io::Result<Server> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ctl".to_owned())
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => serve(stream, &handler),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(ACCEPT_POLL);
                        }
                        Err(e) => {
                            tracing::warn!("ctl accept: {e}");
                            std::thread::sleep(ACCEPT_POLL);
                        }
                    }
                }
            })?;
        Ok(Server {
            socket: socket.to_owned(),
            stop,
            thread: Some(thread),
        })
    }

    /// The socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn serve(stream: UnixStream, handler: &Arc<Mutex<dyn Handler>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("ctl: {e}");
            return;
        }
    };
    let mut reader = BufReader::new(stream);
    let reply = match read_line(&mut reader) {
        Ok(None) => return,
        Ok(Some(line)) => match serde_json::from_str::<Request>(&line) {
            Ok(req) => {
                let mut h = handler
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                h.handle(req)
            }
            Err(e) => Reply::with(Outcome::BadInput, format!("bad request: {e}")),
        },
        Err(e) => Reply::with(Outcome::BadInput, format!("bad request: {e}")),
    };
    let mut line = serde_json::to_vec(&reply).unwrap_or_default();
    line.push(b'\n');
    let _ = writer.write_all(&line);
}

/// What `boot.json` and the registry hold about a running boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootRecord {
    /// The boot process.
    pub pid: u32,
    /// Its artifacts directory, absolute.
    pub artifacts: PathBuf,
    /// Its ctl socket.
    pub socket: PathBuf,
    /// The kernel version.
    pub kernel: String,
    /// Device ids.
    pub devices: Vec<String>,
}

/// The registry of running boots: `RUNTIME/boots/PID.json`.
fn registry_dir() -> PathBuf {
    crate::paths::runtime_dir().join("boots")
}

/// A boot's entry in the registry and its `boot.json`; the registry entry
/// goes when this is dropped.
#[derive(Debug)]
pub struct Registration {
    entry: Option<PathBuf>,
}

impl Registration {
    /// Writes `ARTIFACTS/boot.json` and the registry entry.
    pub fn write(record: &BootRecord) -> std::io::Result<Registration> {
        let json = serde_json::to_vec_pretty(record).unwrap_or_default();
        std::fs::write(record.artifacts.join("boot.json"), &json)?;
        let dir = registry_dir();
        crate::paths::ensure_private_dir(&dir)?;
        let entry = dir.join(format!("{}.json", record.pid));
        std::fs::write(&entry, &json)?;
        Ok(Registration { entry: Some(entry) })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(e) = self.entry.take() {
            let _ = std::fs::remove_file(e);
        }
    }
}

/// Why no boot could be reached.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// `--boot DIR` without `boot.json`.
    #[error("{dir} has no boot.json: expected the artifacts directory of a running `dangle boot`")]
    NotABoot {
        /// The directory given.
        dir: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// `boot.json` does not parse.
    #[error("{path} is not a dangle boot record")]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// No live boot in the registry.
    #[error(
        "no running `dangle boot` of this user (looked in {dir}); start one, or pass --boot DIR"
    )]
    NoneRunning {
        /// The registry.
        dir: PathBuf,
    },
    /// The boot does not answer.
    #[error("the boot in {artifacts} (pid {pid}) does not answer on {socket}: has it exited?")]
    NotAnswering {
        /// Its artifacts directory.
        artifacts: PathBuf,
        /// Its pid.
        pid: u32,
        /// Its socket.
        socket: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn read_record(path: &Path) -> Result<BootRecord, FindError> {
    let bytes = std::fs::read(path).map_err(|source| FindError::NotABoot {
        dir: path.parent().unwrap_or(Path::new(".")).to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| FindError::BadRecord {
        path: path.to_owned(),
        source,
    })
}

fn alive(pid: u32) -> bool {
    i32::try_from(pid)
        .is_ok_and(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok())
}

/// The boot `--boot DIR` names, or the newest live one of this user.
pub fn find(dir: Option<&Path>) -> Result<BootRecord, FindError> {
    if let Some(d) = dir {
        return read_record(&d.join("boot.json"));
    }
    let reg = registry_dir();
    let mut live: Vec<(std::time::SystemTime, BootRecord)> = Vec::new();
    for e in std::fs::read_dir(&reg).into_iter().flatten().flatten() {
        let Ok(rec) = read_record(&e.path()) else {
            continue;
        };
        if !alive(rec.pid) {
            // A boot that was killed before it could clean up.
            let _ = std::fs::remove_file(e.path());
            continue;
        }
        let t = e
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        live.push((t, rec));
    }
    live.sort_by_key(|(t, _)| *t);
    live.pop()
        .map(|(_, r)| r)
        .ok_or(FindError::NoneRunning { dir: reg })
}

/// Sends one request to `boot` and waits for its reply.
pub fn send(boot: &BootRecord, req: &Request) -> Result<Reply, FindError> {
    let not_answering = |source| FindError::NotAnswering {
        artifacts: boot.artifacts.clone(),
        pid: boot.pid,
        socket: boot.socket.clone(),
        source,
    };
    let stream = UnixStream::connect(&boot.socket).map_err(not_answering)?;
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .map_err(not_answering)?;
    let mut w = stream.try_clone().map_err(not_answering)?;
    let mut line = serde_json::to_vec(req).unwrap_or_default();
    line.push(b'\n');
    w.write_all(&line).map_err(not_answering)?;
    let mut r = BufReader::new(stream);
    let reply = read_line(&mut r)
        .map_err(not_answering)?
        .ok_or_else(|| not_answering(std::io::ErrorKind::UnexpectedEof.into()))?;
    serde_json::from_str(&reply)
        .map_err(|e| not_answering(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Act on the hardware of a running `dangle boot` from another terminal.
///
/// The boot is the newest one of this user still running, or the one whose
/// artifacts directory --boot names.
#[derive(Debug, clap::Args)]
#[command(after_help = crate::exit::EXIT_CODES_HELP)]
pub struct CtlArgs {
    /// The artifacts directory of the boot (default: the newest running).
    #[arg(long, value_name = "DIR", global = true)]
    pub boot: Option<PathBuf>,
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// What to do.
#[derive(Debug, clap::Subcommand)]
pub enum CtlCommand {
    /// The devices, their guest names, whether each is plugged, counters.
    Status,
    /// Pull a device out (QMP device_del by default); "never completed"
    /// after the timeout is a finding (exit 1).
    Unplug {
        /// Device id, e.g. gpio0.
        device: String,
        /// qmp, unbind, pci-remove, backend-kill or backend-stall.
        #[arg(long, default_value = "qmp", value_parser = parse_method)]
        method: Method,
        /// How long the guest may take to let go.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "20s")]
        timeout: Duration,
    },
    /// Put an unplugged device back, the way it went, and wait until the
    /// guest shows it again.
    Replug {
        /// Device id.
        device: String,
    },
    /// Drive an input line of a GPIO controller: high, low or pulse.
    Line {
        /// Device id, e.g. gpio0.
        device: String,
        /// Line offset.
        line: u16,
        /// high, low or pulse (high then low).
        #[arg(value_enum)]
        action: LineAction,
    },
    /// Drive an input pin of a GPIO expander on an I2C adapter.
    Pin {
        /// Adapter id, e.g. i2c0.
        device: String,
        /// Expander address, e.g. 0x20.
        #[arg(value_parser = parse_addr)]
        addr: u16,
        /// Pin number.
        pin: u8,
        /// high or low.
        #[arg(value_enum)]
        level: Level,
    },
    /// Set the backend's fault plan: `delay=200ms`, `hold`, `clear`, or
    /// backend specs such as `err:addr=0x50` (several replace the plan).
    Fault {
        /// Device id.
        device: String,
        /// Faults, or `clear`.
        #[arg(required = true, value_parser = parse_fault)]
        faults: Vec<String>,
    },
    /// Dump a memory chip to FILE (or hex to stdout), or load it from FILE.
    Eeprom {
        /// Adapter id.
        device: String,
        /// Chip address, e.g. 0x50.
        #[arg(value_parser = parse_addr)]
        addr: u16,
        /// dump or load.
        #[command(subcommand)]
        op: EepromOp,
    },
}

/// EEPROM operations.
#[derive(Debug, clap::Subcommand)]
pub enum EepromOp {
    /// Read the whole chip.
    Dump {
        /// Write the bytes here (default: hex on stdout).
        file: Option<PathBuf>,
    },
    /// Write FILE's bytes from offset 0.
    Load {
        /// The bytes.
        file: PathBuf,
    },
}

fn parse_method(s: &str) -> Result<Method, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
        format!("{s:?}: expected qmp, unbind, pci-remove, backend-kill or backend-stall")
    })
}

fn parse_addr(s: &str) -> Result<u16, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u16::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s:?}: {e}"))?;
    if v > 0x7f {
        return Err(format!("{s:?}: a 7-bit address is at most 0x7f"));
    }
    Ok(v)
}

/// `clear`, `delay=200ms` (shorthand) or a backend fault spec.
pub fn parse_fault(s: &str) -> Result<String, String> {
    if s == "clear" {
        return Ok(s.to_owned());
    }
    let spec = match s.strip_prefix("delay=") {
        Some(d) => {
            let d = humantime::parse_duration(d).map_err(|e| format!("{s:?}: {e}"))?;
            format!("delay:us={}", d.as_micros())
        }
        None => s.to_owned(),
    };
    spec.parse::<dangle_backends::fault::FaultSpec>()
        .map_err(|e| e.to_string())?;
    Ok(spec)
}

/// The request a command sends.
pub fn request(cmd: &CtlCommand) -> Result<Request, (Status, String)> {
    Ok(match cmd {
        CtlCommand::Status => Request::Status {},
        CtlCommand::Unplug {
            device,
            method,
            timeout,
        } => Request::Unplug {
            device: device.clone(),
            method: *method,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        },
        CtlCommand::Replug { device } => Request::Replug {
            device: device.clone(),
        },
        CtlCommand::Line {
            device,
            line,
            action,
        } => Request::Line {
            device: device.clone(),
            line: *line,
            action: *action,
        },
        CtlCommand::Pin {
            device,
            addr,
            pin,
            level,
        } => Request::Pin {
            device: device.clone(),
            addr: *addr,
            pin: *pin,
            level: *level,
        },
        CtlCommand::Fault { device, faults } => Request::Fault {
            device: device.clone(),
            specs: faults.iter().filter(|f| *f != "clear").cloned().collect(),
        },
        CtlCommand::Eeprom { device, addr, op } => match op {
            EepromOp::Dump { .. } => Request::EepromDump {
                device: device.clone(),
                addr: *addr,
            },
            EepromOp::Load { file } => {
                let bytes = std::fs::read(file).map_err(|e| {
                    (
                        Status::BadInput,
                        format!("cannot read {}: {e}", file.display()),
                    )
                })?;
                Request::EepromLoad {
                    device: device.clone(),
                    addr: *addr,
                    hex: dangle_backends::control::to_hex(&bytes),
                }
            }
        },
    })
}

/// Runs `dangle ctl`.
pub fn run(args: CtlArgs) -> Status {
    let req = match request(&args.command) {
        Ok(r) => r,
        Err((st, msg)) => {
            eprintln!("dangle ctl: {msg}");
            return st;
        }
    };
    let boot = match find(args.boot.as_deref()) {
        Ok(b) => b,
        Err(e) => return crate::exit::fail(&e),
    };
    let reply = match send(&boot, &req) {
        Ok(r) => r,
        Err(e) => return crate::exit::fail(&e),
    };
    match (&args.command, &reply.hex) {
        (
            CtlCommand::Eeprom {
                op: EepromOp::Dump { file: Some(f) },
                ..
            },
            Some(hex),
        ) => {
            let bytes = match dangle_backends::control::from_hex(hex) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("dangle ctl: the boot sent bad hex: {e}");
                    return Status::Infrastructure;
                }
            };
            if let Err(e) = std::fs::write(f, &bytes) {
                eprintln!("dangle ctl: cannot write {}: {e}", f.display());
                return Status::Infrastructure;
            }
            println!(
                "{} ({} bytes to {})",
                reply.message,
                bytes.len(),
                f.display()
            );
        }
        (_, Some(hex)) => println!("{}\n{hex}", reply.message),
        _ if reply.outcome == Outcome::Ok => println!("{}", reply.message),
        _ => eprintln!("dangle ctl: {}", reply.message),
    }
    reply.outcome.status()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(Vec<Request>);

    impl Handler for Echo {
        fn handle(&mut self, req: Request) -> Reply {
            self.0.push(req.clone());
            match req {
                Request::Replug { device } if device == "nope" => {
                    Reply::with(Outcome::BadInput, "no device nope")
                }
                _ => Reply::ok("done"),
            }
        }
    }

    fn record(dir: &Path) -> BootRecord {
        BootRecord {
            pid: std::process::id(),
            artifacts: dir.to_owned(),
            socket: dir.join("ctl.sock"),
            kernel: "6.12.117".into(),
            devices: vec!["gpio0".into()],
        }
    }

    #[test]
    fn server_relays_requests_and_replies_one_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let rec = record(dir.path());
        let h = Arc::new(Mutex::new(Echo(Vec::new())));
        let server = Server::start(&rec.socket, h.clone()).unwrap();
        let r = send(
            &rec,
            &Request::Line {
                device: "gpio0".into(),
                line: 3,
                action: LineAction::Pulse,
            },
        )
        .unwrap();
        assert_eq!(r, Reply::ok("done"));
        let r = send(
            &rec,
            &Request::Replug {
                device: "nope".into(),
            },
        )
        .unwrap();
        assert_eq!(r.outcome, Outcome::BadInput);
        assert_eq!(h.lock().unwrap().0.len(), 2);
        drop(server);
        assert!(!rec.socket.exists(), "the socket goes with the server");
        let e = send(&rec, &Request::Status {}).unwrap_err();
        assert!(e.to_string().contains("does not answer"), "{e}");
    }

    #[test]
    fn server_answers_garbage_and_endless_lines_with_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let rec = record(dir.path());
        let _server = Server::start(&rec.socket, Arc::new(Mutex::new(Echo(Vec::new())))).unwrap();
        let ask = |bytes: &[u8]| {
            let mut s = UnixStream::connect(&rec.socket).unwrap();
            let _ = s.write_all(bytes);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut out = String::new();
            BufReader::new(s).read_line(&mut out).unwrap();
            serde_json::from_str::<Reply>(&out).unwrap()
        };
        assert_eq!(ask(b"{\"cmd\":\"explode\"}\n").outcome, Outcome::BadInput);
        let endless = vec![b'x'; (MAX_LINE + 10) as usize];
        let r = ask(&endless);
        assert_eq!(r.outcome, Outcome::BadInput);
        assert!(r.message.contains("longer than"), "{}", r.message);
    }

    #[test]
    fn find_with_dir_reads_boot_json_and_names_a_wrong_dir() {
        let dir = tempfile::tempdir().unwrap();
        let e = find(Some(dir.path())).unwrap_err();
        assert!(e.to_string().contains("has no boot.json"), "{e}");
        let rec = record(dir.path());
        std::fs::write(
            dir.path().join("boot.json"),
            serde_json::to_vec(&rec).unwrap(),
        )
        .unwrap();
        assert_eq!(find(Some(dir.path())).unwrap(), rec);
    }

    #[test]
    fn parse_fault_shorthand_and_backend_specs() {
        assert_eq!(parse_fault("delay=200ms").unwrap(), "delay:us=200000");
        assert_eq!(parse_fault("hold").unwrap(), "hold");
        assert_eq!(parse_fault("err:addr=0x50").unwrap(), "err:addr=0x50");
        assert_eq!(parse_fault("clear").unwrap(), "clear");
        assert!(parse_fault("explode").is_err());
        assert!(parse_fault("delay=soon").is_err());
    }

    #[test]
    fn parse_addr_hex_decimal_and_range() {
        assert_eq!(parse_addr("0x50"), Ok(0x50));
        assert_eq!(parse_addr("32"), Ok(32));
        assert!(parse_addr("0x80").is_err());
        assert!(parse_addr("zz").is_err());
    }
}
