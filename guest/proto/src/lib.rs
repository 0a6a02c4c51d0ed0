//! The protocol between dangle's harness (host) and its guest agent: one
//! JSON object per line on a dedicated channel (a virtio-serial port named
//! [`AGENT_PORT_NAME`], or ttyS1), never the kernel console.
//!
//! # Shape of the conversation
//! - The agent pushes [`Event::Ready`] as soon as its channel is open. The
//!   host may have connected later than that (QEMU drops bytes written to an
//!   unconnected chardev), so the host opens with [`Request::Hello`]; the
//!   reply carries the same facts as `Ready` plus the agent's protocol
//!   version. A version mismatch is an [`ErrorKind::VersionMismatch`] reply.
//! - Host to guest: [`HostMessage`] lines, each a request with an `id` chosen
//!   by the host.
//! - Guest to host: [`GuestMessage`] lines, either a [`GuestMessage::Reply`]
//!   naming the request `id` it answers, or a [`GuestMessage::Event`] pushed
//!   at any time (consumer progress, stuck syscalls, exits, logs).
//! - A line that does not parse gets a reply with [`ErrorKind::BadRequest`]
//!   naming the problem (and the `id` when one could be read); the agent
//!   never stops serving because of it.
//!
//! Example lines:
//! ```text
//! {"id":1,"op":"hello","version":1}
//! {"msg":"reply","id":1,"result":{"ok":{"kind":"hello","version":1,...}}}
//! {"id":2,"op":"start_consumer","consumer":"r0","spec":{"kind":"gpio_edge_read","chip":{"label":"virtio0"},"line":3,"wait":"blocking"},"deadline_ms":5000}
//! {"msg":"event","event":{"event":"consumer_stuck","id":"r0","syscall":"read","for_ms":5012}}
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub mod deadline;
pub mod lines;

pub use deadline::Deadline;
pub use lines::{LineError, LineReader};

/// Version of this protocol; bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// The name of the virtio-serial port the agent speaks on
/// (`/sys/class/virtio-ports/*/name`).
pub const AGENT_PORT_NAME: &str = "dangle.agent";

/// Longest line either side accepts; a longer line is a protocol error.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// Host-chosen identifier of a request, echoed in its reply.
pub type RequestId = u64;

/// One line from host to guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostMessage {
    /// Echoed in the reply.
    pub id: RequestId,
    /// What to do.
    #[serde(flatten)]
    pub request: Request,
}

/// What the host asks of the agent.
///
/// Variants without fields are written `Ping {}` so that serde rejects
/// unknown keys on them too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Version handshake; answered by [`Response::Hello`].
    Hello {
        /// The host's [`PROTOCOL_VERSION`].
        version: u32,
    },
    /// Liveness check; answered by [`Response::Pong`].
    Ping {},
    /// Runs a command to completion; answered by [`Response::Exec`].
    Exec(ExecRequest),
    /// Writes `value` to `/proc/sys/<name with dots as slashes>`.
    Sysctl {
        /// e.g. `kernel.hung_task_timeout_secs`.
        name: String,
        /// Written as is (a newline is not added).
        value: String,
    },
    /// Writes `data` to a file (sysfs, debugfs, configfs, tmpfs).
    WriteFile {
        /// Absolute guest path.
        path: String,
        /// Bytes to write, as UTF-8 text.
        data: String,
    },
    /// Reads at most `max_bytes` of a file; answered by [`Response::File`].
    ReadFile {
        /// Absolute guest path.
        path: String,
        /// Upper bound on the bytes returned.
        max_bytes: u64,
    },
    /// Starts a consumer workload; answered by [`Response::Done`] once it
    /// has been set up (its first syscalls may still be pending).
    StartConsumer {
        /// Host-chosen name, unique among live consumers.
        consumer: String,
        /// The workload.
        spec: ConsumerSpec,
        /// A syscall in flight for longer than this is reported once with
        /// [`Event::ConsumerStuck`].
        deadline_ms: u64,
        /// Period of [`Event::ConsumerProgress`]; none sends progress only
        /// on request and at exit.
        #[serde(default)]
        progress_ms: Option<u64>,
    },
    /// Asks a consumer to stop (flag + signal to its thread, see the agent
    /// docs); answered at once, [`Event::ConsumerExited`] follows.
    StopConsumer {
        /// The consumer's name.
        consumer: String,
    },
    /// Sends the stop signal to a consumer's thread without stopping it:
    /// its syscall in flight returns `EINTR` (counted) and the loop goes
    /// on. This is how a transfer gets interrupted mid-flight
    /// (i2c-interrupted-xfer). Answered at once with [`Response::Done`].
    InterruptConsumer {
        /// The consumer's name.
        consumer: String,
    },
    /// Answered by [`Response::Consumers`]; all consumers when `consumer` is
    /// none, including those that exited and were not yet forgotten.
    ConsumerStatus {
        /// Restrict to one consumer.
        #[serde(default)]
        consumer: Option<String>,
    },
    /// Answered by [`Response::Devices`].
    ListDevices {},
    /// Syncs and powers the VM off; answered by [`Response::Done`] first.
    Poweroff {},
    /// Starts the interactive shell on the console (once; later requests
    /// do nothing); answered by [`Response::Done`], or an error when the
    /// image has no shell.
    StartShell {},
}

/// A command for [`Request::Exec`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// Program and arguments; `argv[0]` is looked up in `PATH`.
    pub argv: Vec<String>,
    /// Extra environment variables (on top of the agent's `PATH`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Killed (whole process group) after this long.
    pub timeout_ms: u64,
    /// Fed to standard input, then closed; none gives `/dev/null`.
    #[serde(default)]
    pub stdin: Option<String>,
}

/// The payload of a successful reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    /// Reply to [`Request::Hello`].
    Hello {
        /// The agent's [`PROTOCOL_VERSION`].
        version: u32,
        /// Facts about the guest, the same as in [`Event::Ready`].
        guest: GuestInfo,
    },
    /// Reply to [`Request::Ping`].
    Pong {
        /// Guest uptime.
        uptime_ms: u64,
    },
    /// Reply to [`Request::Exec`].
    Exec(ExecOutput),
    /// Reply to [`Request::ReadFile`].
    File {
        /// Content, lossily decoded as UTF-8.
        data: String,
        /// True if the file had more than `max_bytes`.
        truncated: bool,
    },
    /// Reply to [`Request::ConsumerStatus`].
    Consumers {
        /// One entry per consumer.
        consumers: Vec<ConsumerReport>,
    },
    /// Reply to [`Request::ListDevices`].
    Devices(DeviceList),
    /// The request was carried out and has nothing to return.
    Done,
}

/// Result of [`Request::Exec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    /// Exit code, if the command exited.
    pub code: Option<i32>,
    /// Signal number, if the command was killed by a signal.
    pub signal: Option<i32>,
    /// True if the agent killed it at `timeout_ms`.
    pub timed_out: bool,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

/// Facts the agent reports about the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestInfo {
    /// `uname -r`.
    pub kernel: String,
    /// Guest uptime when the message was made.
    pub uptime_ms: u64,
    /// The agent's crate version.
    pub agent: String,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The line was not a valid request.
    BadRequest,
    /// Host and agent protocol versions differ.
    VersionMismatch,
    /// A named consumer, device or file does not exist.
    NotFound,
    /// A consumer with that name is already running.
    AlreadyExists,
    /// A system call failed (see `errno`).
    Os,
}

/// The payload of a failed reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// Class of failure.
    pub kind: ErrorKind,
    /// What went wrong, naming the field, file or syscall.
    pub message: String,
    /// The errno, when a system call failed.
    #[serde(default)]
    pub errno: Option<i32>,
}

impl fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)?;
        if let Some(e) = self.errno {
            write!(f, " (errno {e})")?;
        }
        Ok(())
    }
}

/// Outcome of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyResult {
    /// It worked.
    Ok(Response),
    /// It did not.
    Error(ErrorReply),
}

/// One line from guest to host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum GuestMessage {
    /// The answer to a request. `id` is none only for a line so broken that
    /// no id could be read from it.
    Reply {
        /// The request's id.
        id: Option<RequestId>,
        /// Its outcome.
        result: ReplyResult,
    },
    /// Something the agent pushes on its own.
    Event {
        /// What happened.
        event: Event,
    },
}

/// Messages the agent pushes without being asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The agent has mounted everything and serves requests.
    Ready {
        /// The agent's [`PROTOCOL_VERSION`].
        protocol: u32,
        /// Facts about the guest.
        guest: GuestInfo,
    },
    /// Periodic counters of a consumer.
    ConsumerProgress {
        /// The consumer's name.
        id: String,
        /// Counters so far.
        counters: Counters,
    },
    /// A consumer's syscall has been in flight longer than its deadline.
    /// Sent once per stuck call.
    ConsumerStuck {
        /// The consumer's name.
        id: String,
        /// The syscall (or uAPI operation) that is blocked, e.g. `read`.
        syscall: String,
        /// How long it had been blocked when noticed.
        for_ms: u64,
    },
    /// A consumer finished.
    ConsumerExited {
        /// The consumer's name.
        id: String,
        /// How it ended.
        result: ConsumerResult,
    },
    /// A message from the agent itself.
    Log {
        /// Severity.
        level: LogLevel,
        /// Text.
        message: String,
    },
}

/// Severity of an [`Event::Log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Progress worth knowing.
    Info,
    /// Something unexpected that the agent survived.
    Warn,
    /// Something failed.
    Error,
}

/// Progress counters of a consumer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Operations that succeeded.
    pub ops_ok: u64,
    /// Failed operations by errno name (`"ENODEV"`, `"EIO"`, ...).
    pub errors: BTreeMap<String, u64>,
    /// The most recent failure, as `syscall: error`.
    #[serde(default)]
    pub last_error: Option<String>,
}

impl Counters {
    /// Total failed operations.
    pub fn total_errors(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// How a consumer ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ConsumerResult {
    /// It finished its work (one-shot workloads, or `iterations` reached).
    Completed {
        /// Final counters.
        counters: Counters,
    },
    /// It was stopped by [`Request::StopConsumer`] or at poweroff.
    Stopped {
        /// Final counters.
        counters: Counters,
    },
    /// It gave up: setup failed or an error ended the loop.
    Failed {
        /// What failed, naming the syscall.
        error: String,
        /// The errno, when a syscall failed.
        errno: Option<i32>,
        /// Final counters.
        counters: Counters,
    },
}

/// State of one consumer, for [`Response::Consumers`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerReport {
    /// The consumer's name.
    pub id: String,
    /// Counters so far.
    pub counters: Counters,
    /// The syscall in flight and for how long, if any.
    pub in_flight: Option<InFlight>,
    /// Set once it has exited.
    pub result: Option<ConsumerResult>,
}

/// A syscall in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// Its name.
    pub syscall: String,
    /// How long it has been running.
    pub for_ms: u64,
}

/// Picks a GPIO chip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChipSelector {
    /// By chip label (virtio-gpio's label is its virtio device name, e.g.
    /// `virtio0`; a PCA953x's is its I2C client name, e.g. `0-0020`;
    /// gpio-aggregator's is its platform device, `gpio-aggregator.N`).
    Label(String),
    /// By chip name, e.g. `gpiochip0`.
    Name(String),
    /// By device path, e.g. `/dev/gpiochip0`.
    Path(String),
}

/// Picks an I2C adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterSelector {
    /// The first adapter whose name starts with this (virtio adapters are
    /// named `i2c_virtio at virtio bus N`).
    NamePrefix(String),
    /// By bus number N of `/dev/i2c-N`.
    Bus(u32),
}

/// Picks an nvmem source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NvmemSelector {
    /// `/sys/bus/nvmem/devices/<name>/nvmem` (e.g. `0-00500`).
    Device(String),
    /// The first nvmem device whose name starts with this.
    DevicePrefix(String),
    /// The at24 `eeprom` file of the client at `addr` on the adapter.
    Eeprom {
        /// The adapter.
        adapter: AdapterSelector,
        /// 7-bit client address.
        addr: u16,
    },
}

/// How an edge reader waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeWait {
    /// A plain blocking `read()` on the request fd (no poll).
    Blocking,
    /// `poll()` with a timeout, then `read()`.
    Poll,
}

/// One kind of I2C operation for [`ConsumerSpec::I2cTransfer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum I2cOp {
    /// `I2C_RDWR` with two messages: write `reg`, read `len` bytes.
    Rdwr {
        /// Register/offset byte written first.
        reg: u8,
        /// Bytes read back.
        len: u16,
    },
    /// `I2C_SMBUS` read byte data at `cmd`.
    SmbusByte {
        /// Command byte.
        cmd: u8,
    },
    /// `I2C_SMBUS` read word data at `cmd`.
    SmbusWord {
        /// Command byte.
        cmd: u8,
    },
}

/// A consumer workload. Loops run until stopped, or for `iterations` when
/// given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConsumerSpec {
    /// Requests a line as output and holds it until stopped.
    GpioHold {
        /// The chip.
        chip: ChipSelector,
        /// Line offset.
        line: u32,
        /// Output value.
        value: bool,
    },
    /// Toggles an output line in a loop.
    GpioToggle {
        /// The chip.
        chip: ChipSelector,
        /// Line offset.
        line: u32,
        /// Pause between toggles.
        period_us: u64,
        /// Stop after this many toggles.
        #[serde(default)]
        iterations: Option<u64>,
    },
    /// Reads edge events from a v2 line request with edge detection.
    GpioEdgeRead {
        /// The chip.
        chip: ChipSelector,
        /// Line offset.
        line: u32,
        /// Blocking read, or poll then read.
        wait: EdgeWait,
    },
    /// Watches a line's info on the chip fd and reads the change events
    /// with a blocking read.
    GpioInfoWatch {
        /// The chip.
        chip: ChipSelector,
        /// Line offset.
        line: u32,
    },
    /// Requests a v1 line event fd (`GPIO_GET_LINEEVENT_IOCTL`) and reads
    /// it with a blocking read.
    GpioV1LineEvent {
        /// The chip.
        chip: ChipSelector,
        /// Line offset.
        line: u32,
    },
    /// Requests the line with edge detection and closes it, in a loop.
    GpioRequestLoop {
        /// The chip.
        chip: ChipSelector,
        /// Line offset.
        line: u32,
        /// Stop after this many request/close pairs.
        #[serde(default)]
        iterations: Option<u64>,
    },
    /// Opens `/dev/i2c-N` and holds it open until stopped.
    I2cHold {
        /// The adapter.
        adapter: AdapterSelector,
    },
    /// Loops one I2C operation against `addr` (I2C_SLAVE_FORCE for SMBus,
    /// so it works with a bound driver).
    I2cTransfer {
        /// The adapter.
        adapter: AdapterSelector,
        /// 7-bit address.
        addr: u16,
        /// The operation.
        op: I2cOp,
        /// Pause between operations.
        #[serde(default)]
        period_us: u64,
        /// Stop after this many operations.
        #[serde(default)]
        iterations: Option<u64>,
    },
    /// Reads (and optionally writes) an nvmem file in a loop.
    NvmemIo {
        /// Which file.
        source: NvmemSelector,
        /// Bytes per read (from offset 0).
        len: u32,
        /// When set, each round also writes this byte pattern at offset 0.
        #[serde(default)]
        write: Option<Vec<u8>>,
        /// Pause between rounds.
        #[serde(default)]
        period_us: u64,
        /// Stop after this many rounds.
        #[serde(default)]
        iterations: Option<u64>,
    },
    /// Loops `new_device` / `delete_device` on an adapter's sysfs files.
    I2cClientChurn {
        /// The adapter.
        adapter: AdapterSelector,
        /// e.g. `24c02`.
        device: String,
        /// 7-bit address.
        addr: u16,
        /// Pause after each write.
        #[serde(default)]
        period_us: u64,
        /// Stop after this many create/delete pairs.
        #[serde(default)]
        iterations: Option<u64>,
    },
    /// Loops `unbind` / `bind` of a device on its driver
    /// (`/sys/bus/<bus>/drivers/<driver>/{unbind,bind}`).
    BindUnbind {
        /// Bus, e.g. `i2c` or `virtio`.
        bus: String,
        /// Driver name, e.g. `at24`.
        driver: String,
        /// Device name, e.g. `0-0050`.
        device: String,
        /// Pause after each write.
        #[serde(default)]
        period_us: u64,
        /// Stop after this many pairs.
        #[serde(default)]
        iterations: Option<u64>,
    },
    /// Loops PCI `remove` of a device then `rescan` of the bus.
    PciRemoveRescan {
        /// PCI address, e.g. `0000:01:00.0`.
        device: String,
        /// Pause after each write.
        #[serde(default)]
        period_us: u64,
        /// Stop after this many pairs.
        #[serde(default)]
        iterations: Option<u64>,
    },
    /// Creates a gpio-aggregator over lines of a chip (sysfs
    /// `new_device`), toggles its lines, deletes it when stopped.
    GpioAggregator {
        /// The chip the aggregator takes lines from.
        chip: ChipSelector,
        /// Lines in gpio-aggregator syntax, e.g. `0-3`.
        lines: String,
        /// Pause between toggles.
        #[serde(default)]
        period_us: u64,
        /// Stop after this many toggles.
        #[serde(default)]
        iterations: Option<u64>,
    },
    /// Writes `data` to a file (debugfs, sysfs) `iterations` times
    /// (default once), e.g. LKDTM's `provoke-crash/DIRECT`.
    FileWrite {
        /// Absolute path.
        path: String,
        /// Bytes written per iteration.
        data: String,
        /// Pause between writes.
        #[serde(default)]
        period_us: u64,
        /// How many writes; none means once.
        #[serde(default)]
        iterations: Option<u64>,
    },
    /// dangle's nvmem test module: writes `device` to
    /// `/sys/kernel/debug/dangle/nvmem_get`, then reads
    /// `/sys/kernel/debug/dangle/nvmem_read` in a loop.
    NvmemKernelConsumer {
        /// The nvmem device name the module takes a reference on.
        device: String,
        /// Pause between reads.
        #[serde(default)]
        period_us: u64,
        /// Stop after this many reads.
        #[serde(default)]
        iterations: Option<u64>,
    },
}

/// Devices the guest sees, for [`Response::Devices`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceList {
    /// GPIO chips.
    pub gpiochips: Vec<GpioChipInfo>,
    /// I2C adapters.
    pub i2c_adapters: Vec<I2cAdapterInfo>,
    /// nvmem devices.
    pub nvmem: Vec<NvmemInfo>,
}

/// One GPIO chip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpioChipInfo {
    /// e.g. `gpiochip0`.
    pub name: String,
    /// e.g. `virtio0`.
    pub label: String,
    /// Number of lines.
    pub lines: u32,
    /// e.g. `/dev/gpiochip0`.
    pub path: String,
    /// The chip's device in sysfs, resolved, e.g.
    /// `/sys/devices/pci0000:00/0000:00:10.0/0000:01:00.0/virtio1/gpiochip0`:
    /// the PCI part tells the host which of its devices this is.
    #[serde(default)]
    pub device_path: Option<String>,
}

/// One I2C adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct I2cAdapterInfo {
    /// Bus number N (`i2c-N`).
    pub bus: u32,
    /// The adapter's name attribute.
    pub name: String,
    /// The adapter's device in sysfs, resolved (see
    /// [`GpioChipInfo::device_path`]).
    #[serde(default)]
    pub device_path: Option<String>,
}

/// One nvmem device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvmemInfo {
    /// e.g. `0-00500`.
    pub name: String,
    /// Size of its `nvmem` file in bytes, when readable.
    pub size: Option<u64>,
}

/// Why a line could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The line is longer than [`MAX_LINE_BYTES`].
    #[error("line of {len} bytes exceeds the limit of {MAX_LINE_BYTES}")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// The line is not the JSON expected.
    #[error("invalid message at column {column}")]
    Json {
        /// Column of the problem (1-based).
        column: usize,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
}

/// Encodes one message as a line, `\n` included.
///
/// # Errors
/// Only if serde_json fails, which our types never make it do.
pub fn encode<T: Serialize>(msg: &T) -> Result<String, serde_json::Error> {
    let mut s = serde_json::to_string(msg)?;
    s.push('\n');
    Ok(s)
}

/// Decodes one line (with or without its trailing newline).
///
/// # Errors
/// [`DecodeError`] naming the column of the problem.
pub fn decode<T: for<'de> Deserialize<'de>>(line: &str) -> Result<T, DecodeError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(DecodeError::TooLong { len: line.len() });
    }
    serde_json::from_str(line.trim_end_matches(['\n', '\r'])).map_err(|source| DecodeError::Json {
        column: source.column(),
        source,
    })
}

/// Best effort: the `id` of a host line that failed to decode, so the error
/// reply can name the request.
pub fn salvage_id(line: &str) -> Option<RequestId> {
    let v: serde_json::Value = serde_json::from_str(line.trim_end()).ok()?;
    v.get("id")?.as_u64()
}

/// Builds the error reply the agent sends for a line it could not decode.
pub fn bad_request_reply(line: &str, err: &DecodeError) -> GuestMessage {
    let mut message = err.to_string();
    if let DecodeError::Json { source, .. } = err {
        message = format!("{message}: {source}");
    }
    GuestMessage::Reply {
        id: salvage_id(line),
        result: ReplyResult::Error(ErrorReply {
            kind: ErrorKind::BadRequest,
            message,
            errno: None,
        }),
    }
}

/// Builds the error reply the agent sends for a line it could not read at
/// all (too long, not UTF-8, cut short): there is no request id to name.
pub fn unreadable_line_reply(err: &LineError) -> GuestMessage {
    GuestMessage::Reply {
        id: None,
        result: ReplyResult::Error(ErrorReply {
            kind: ErrorKind::BadRequest,
            message: err.to_string(),
            errno: None,
        }),
    }
}

#[cfg(test)]
mod tests;
