//! The control socket: JSON lines over a unix socket, one reply line per
//! request line. See the crate documentation for the message table.

use std::io::{BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::thread;

use dangle_proto::{LineError, LineReader};

use crate::counters::Counters;
use crate::gpio::lines::LineState;

/// Longest line accepted either way (a 64 KiB EEPROM in hex fits easily).
pub const MAX_LINE: usize = 1 << 20;

/// One request. `cmd` selects the variant; fields are the variant's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Liveness check; replies with the device kind.
    Ping,
    /// Request counters.
    Counters,
    /// Replace the fault plan with these specs (see [`crate::fault`]).
    SetFaults {
        /// Fault specs.
        faults: Vec<String>,
    },
    /// Remove every fault rule and stop running storms.
    ClearFaults,
    /// Return every held chain to the guest with an error status.
    ReleaseHeld,
    /// GPIO: drive an input line from the world side.
    DriveLine {
        /// Line number.
        line: u16,
        /// Level.
        level: bool,
    },
    /// GPIO: read the state of every line (or just `line`).
    ReadLines {
        /// One line only.
        #[serde(default)]
        line: Option<u16>,
    },
    /// I2C: drive input pins of a GPIO expander.
    DrivePins {
        /// 7-bit chip address.
        addr: u16,
        /// Pins to drive (bit n = pin n).
        mask: u32,
        /// Levels of the driven pins.
        levels: u32,
    },
    /// I2C: read pins of a GPIO expander.
    ReadPins {
        /// 7-bit chip address.
        addr: u16,
    },
    /// I2C: dump a memory chip, as hex.
    DumpEeprom {
        /// 7-bit chip address.
        addr: u16,
    },
    /// I2C: load a memory chip from offset 0, from hex.
    LoadEeprom {
        /// 7-bit chip address.
        addr: u16,
        /// Contents, hex (two digits a byte, no separators).
        hex: String,
    },
}

impl Request {
    /// The `cmd` of the request (`ping`, `drive_line`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::Counters => "counters",
            Request::SetFaults { .. } => "set_faults",
            Request::ClearFaults => "clear_faults",
            Request::ReleaseHeld => "release_held",
            Request::DriveLine { .. } => "drive_line",
            Request::ReadLines { .. } => "read_lines",
            Request::DrivePins { .. } => "drive_pins",
            Request::ReadPins { .. } => "read_pins",
            Request::DumpEeprom { .. } => "dump_eeprom",
            Request::LoadEeprom { .. } => "load_eeprom",
        }
    }
}

/// Pin state of a GPIO expander.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pins {
    /// Level on each pin.
    pub levels: u32,
    /// Bit set = input.
    pub inputs: u32,
    /// Output latches.
    pub outputs: u32,
}

/// One reply: `ok` plus the fields the request asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Response {
    /// The request was carried out.
    pub ok: bool,
    /// Why not (when `ok` is false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Device kind (`gpio`, `i2c`), answer to `ping`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Answer to `counters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<Counters>,
    /// Fault specs in force (answer to `set_faults`, `clear_faults`, `counters`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<Vec<String>>,
    /// Chains released (answer to `release_held`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<u64>,
    /// Answer to `read_lines`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<LineState>>,
    /// Answer to `read_pins`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pins: Option<Pins>,
    /// Answer to `dump_eeprom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
}

impl Response {
    /// A bare success.
    pub fn ok() -> Self {
        Response {
            ok: true,
            ..Default::default()
        }
    }

    /// A failure with a message.
    pub fn error(msg: impl Into<String>) -> Self {
        Response {
            ok: false,
            error: Some(msg.into()),
            ..Default::default()
        }
    }

    /// A failure whose message is `err` and its causes, `: `-separated.
    pub fn failure(err: &dyn std::error::Error) -> Self {
        let mut msg = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            msg.push_str(": ");
            msg.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::error(msg)
    }
}

/// A device that answers control requests.
pub trait ControlTarget: Send + Sync {
    /// Carries out one request. Must not panic on any input.
    fn control(&self, req: Request) -> Response;
}

impl<T: ControlTarget + ?Sized> ControlTarget for Arc<T> {
    fn control(&self, req: Request) -> Response {
        (**self).control(req)
    }
}

/// Encodes bytes as lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Why a hex string did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// Odd number of digits.
    #[error("hex string has an odd length ({0})")]
    OddLength(usize),
    /// Not a hex digit.
    #[error("invalid hex digit {digit:?} at offset {offset}")]
    BadDigit {
        /// Offset in the string.
        offset: usize,
        /// The character.
        digit: char,
    },
}

/// Decodes hex (either case).
pub fn from_hex(s: &str) -> Result<Vec<u8>, HexError> {
    let bytes = s.as_bytes();
    if bytes.len() % 2 != 0 {
        return Err(HexError::OddLength(bytes.len()));
    }
    let digit = |offset: usize| -> Result<u8, HexError> {
        let c = bytes[offset];
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
            .ok_or(HexError::BadDigit {
                offset,
                digit: char::from(c),
            })
    };
    (0..bytes.len() / 2)
        .map(|i| Ok((digit(2 * i)? << 4) | digit(2 * i + 1)?))
        .collect()
}

/// Serves one control client until it hangs up. Lines are read with
/// [`LineReader`] (at most [`MAX_LINE`] bytes): a line that is not UTF-8
/// gets an error reply and the client stays; a line that is too long or
/// cut short by the client closing its side gets an error reply, then the
/// connection is dropped.
fn serve_client(stream: UnixStream, target: &dyn ControlTarget) {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("control: cannot clone client socket: {e}");
            return;
        }
    };
    let mut lines = LineReader::with_limit(BufReader::new(stream), MAX_LINE);
    loop {
        let resp = match lines.next_line() {
            Ok(None) => return,
            Ok(Some(line)) if line.trim().is_empty() => continue,
            Ok(Some(line)) => match serde_json::from_str::<Request>(line) {
                Ok(req) => {
                    tracing::debug!("control: {req:?}");
                    target.control(req)
                }
                Err(e) => Response::error(format!("request line {}: {e}", lines.line_number())),
            },
            Err(LineError::Io(e)) => {
                tracing::debug!("control: read error: {e}");
                return;
            }
            Err(e @ LineError::NotUtf8 { .. }) => Response::error(format!("request {e}")),
            Err(e) => {
                // The rest of the stream is not worth reading.
                let _ = write_response(&mut writer, &Response::error(format!("request {e}")));
                return;
            }
        };
        if write_response(&mut writer, &resp).is_err() {
            return;
        }
    }
}

fn write_response(w: &mut UnixStream, resp: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(resp).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)
}

/// Accepts control clients on `listener` forever, one thread each.
pub fn spawn_server(listener: UnixListener, target: Arc<dyn ControlTarget>) -> std::io::Result<()> {
    thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        let target = target.clone();
                        let spawned = thread::Builder::new()
                            .name("control-client".into())
                            .spawn(move || serve_client(stream, target.as_ref()));
                        if let Err(e) = spawned {
                            tracing::warn!("control: cannot spawn client thread: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("control: accept failed: {e}"),
                }
            }
        })
        .map(|_| ())
}

/// Errors of [`Client`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, sending or receiving failed.
    #[error("control socket i/o")]
    Io(#[from] std::io::Error),
    /// The reply was not a valid response line.
    #[error("bad reply from control socket")]
    BadReply(#[source] serde_json::Error),
    /// The backend closed the connection.
    #[error("control socket closed by the backend")]
    Closed,
    /// The reply line could not be read (too long, not UTF-8, cut short).
    #[error("unreadable reply from control socket")]
    BadLine(#[source] LineError),
    /// The backend refused the request.
    #[error("backend refused the request: {0}")]
    Refused(String),
    /// The reply lacked the expected field.
    #[error("reply lacks field {0}")]
    MissingField(&'static str),
    /// An EEPROM dump was not valid hex.
    #[error("bad hex in reply")]
    BadHex(#[source] HexError),
}

/// A control-socket client with typed methods (used by the harness).
#[derive(Debug)]
pub struct Client {
    reader: LineReader<BufReader<UnixStream>>,
    writer: UnixStream,
}

impl Client {
    /// Connects to a backend's control socket.
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path)?;
        Ok(Client {
            writer: stream.try_clone()?,
            reader: LineReader::with_limit(BufReader::new(stream), MAX_LINE),
        })
    }

    /// Sends one request and returns the reply as is (`ok` may be false).
    pub fn request(&mut self, req: &Request) -> Result<Response, ClientError> {
        let mut line = serde_json::to_vec(req).map_err(ClientError::BadReply)?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
        match self.reader.next_line() {
            Ok(Some(reply)) => serde_json::from_str(reply).map_err(ClientError::BadReply),
            Ok(None) => Err(ClientError::Closed),
            Err(LineError::Io(e)) => Err(ClientError::Io(e)),
            Err(e) => Err(ClientError::BadLine(e)),
        }
    }

    fn checked(&mut self, req: &Request) -> Result<Response, ClientError> {
        let resp = self.request(req)?;
        if resp.ok {
            Ok(resp)
        } else {
            Err(ClientError::Refused(resp.error.unwrap_or_default()))
        }
    }

    /// `ping`: the device kind.
    pub fn ping(&mut self) -> Result<String, ClientError> {
        self.checked(&Request::Ping)?
            .device
            .ok_or(ClientError::MissingField("device"))
    }

    /// `counters`.
    pub fn counters(&mut self) -> Result<Counters, ClientError> {
        self.checked(&Request::Counters)?
            .counters
            .ok_or(ClientError::MissingField("counters"))
    }

    /// `set_faults`: replaces the plan.
    pub fn set_faults<S: AsRef<str>>(&mut self, faults: &[S]) -> Result<(), ClientError> {
        let faults = faults.iter().map(|s| s.as_ref().to_owned()).collect();
        self.checked(&Request::SetFaults { faults }).map(|_| ())
    }

    /// `clear_faults`.
    pub fn clear_faults(&mut self) -> Result<(), ClientError> {
        self.checked(&Request::ClearFaults).map(|_| ())
    }

    /// `release_held`: how many chains were returned.
    pub fn release_held(&mut self) -> Result<u64, ClientError> {
        self.checked(&Request::ReleaseHeld)?
            .released
            .ok_or(ClientError::MissingField("released"))
    }

    /// `drive_line` (GPIO).
    pub fn drive_line(&mut self, line: u16, level: bool) -> Result<(), ClientError> {
        self.checked(&Request::DriveLine { line, level })
            .map(|_| ())
    }

    /// `read_lines` (GPIO), every line.
    pub fn read_lines(&mut self) -> Result<Vec<LineState>, ClientError> {
        self.checked(&Request::ReadLines { line: None })?
            .lines
            .ok_or(ClientError::MissingField("lines"))
    }

    /// `read_lines` for one line (GPIO).
    pub fn read_line(&mut self, line: u16) -> Result<LineState, ClientError> {
        self.checked(&Request::ReadLines { line: Some(line) })?
            .lines
            .and_then(|mut l| l.pop())
            .ok_or(ClientError::MissingField("lines"))
    }

    /// `drive_pins` (I2C expander).
    pub fn drive_pins(&mut self, addr: u16, mask: u32, levels: u32) -> Result<(), ClientError> {
        self.checked(&Request::DrivePins { addr, mask, levels })
            .map(|_| ())
    }

    /// `read_pins` (I2C expander).
    pub fn read_pins(&mut self, addr: u16) -> Result<Pins, ClientError> {
        self.checked(&Request::ReadPins { addr })?
            .pins
            .ok_or(ClientError::MissingField("pins"))
    }

    /// `dump_eeprom` (I2C memory chip).
    pub fn dump_eeprom(&mut self, addr: u16) -> Result<Vec<u8>, ClientError> {
        let hex = self
            .checked(&Request::DumpEeprom { addr })?
            .hex
            .ok_or(ClientError::MissingField("hex"))?;
        from_hex(&hex).map_err(ClientError::BadHex)
    }

    /// `load_eeprom` (I2C memory chip).
    pub fn load_eeprom(&mut self, addr: u16, data: &[u8]) -> Result<(), ClientError> {
        self.checked(&Request::LoadEeprom {
            addr,
            hex: to_hex(data),
        })
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::io::BufRead;

    use super::*;

    #[test]
    fn request_name_is_the_cmd_tag() {
        let all = [
            Request::Ping,
            Request::Counters,
            Request::SetFaults { faults: vec![] },
            Request::ClearFaults,
            Request::ReleaseHeld,
            Request::DriveLine {
                line: 0,
                level: false,
            },
            Request::ReadLines { line: None },
            Request::DrivePins {
                addr: 0,
                mask: 0,
                levels: 0,
            },
            Request::ReadPins { addr: 0 },
            Request::DumpEeprom { addr: 0 },
            Request::LoadEeprom {
                addr: 0,
                hex: String::new(),
            },
        ];
        for req in all {
            let json = serde_json::to_value(&req).unwrap();
            assert_eq!(json["cmd"], req.name(), "{req:?}");
        }
    }

    #[test]
    fn hex_roundtrip_and_errors() {
        assert_eq!(to_hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert_eq!(from_hex("00AB7f"), Ok(vec![0x00, 0xab, 0x7f]));
        assert_eq!(from_hex("abc"), Err(HexError::OddLength(3)));
        assert_eq!(
            from_hex("0g"),
            Err(HexError::BadDigit {
                offset: 1,
                digit: 'g'
            })
        );
    }

    #[test]
    fn request_json_uses_cmd_tag() {
        let r: Request =
            serde_json::from_str(r#"{"cmd":"drive_line","line":3,"level":true}"#).unwrap();
        assert_eq!(
            r,
            Request::DriveLine {
                line: 3,
                level: true
            }
        );
        let r: Request = serde_json::from_str(r#"{"cmd":"read_lines"}"#).unwrap();
        assert_eq!(r, Request::ReadLines { line: None });
        assert!(
            serde_json::from_str::<Request>(r#"{"cmd":"drive_line","line":1,"level":true,"x":1}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"explode"}"#).is_err());
    }

    struct Echo;
    impl ControlTarget for Echo {
        fn control(&self, req: Request) -> Response {
            match req {
                Request::Ping => Response {
                    device: Some("echo".into()),
                    ..Response::ok()
                },
                _ => Response::error("unsupported"),
            }
        }
    }

    #[test]
    fn server_malformed_line_gets_error_and_keeps_serving() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl");
        spawn_server(UnixListener::bind(&path).unwrap(), Arc::new(Echo)).unwrap();
        let mut stream = UnixStream::connect(&path).unwrap();
        stream
            .write_all(b"{not json\n\n{\"cmd\":\"ping\"}\n")
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut l1 = String::new();
        reader.read_line(&mut l1).unwrap();
        let r1: Response = serde_json::from_str(&l1).unwrap();
        assert!(!r1.ok);
        assert!(r1.error.unwrap().contains("request line 1"));
        let mut l2 = String::new();
        reader.read_line(&mut l2).unwrap();
        let r2: Response = serde_json::from_str(&l2).unwrap();
        assert_eq!(r2.device.as_deref(), Some("echo"));
        let mut client = Client::connect(&path).unwrap();
        assert_eq!(client.ping().unwrap(), "echo");
        assert!(matches!(client.counters(), Err(ClientError::Refused(_))));
    }

    fn reply_line(reader: &mut BufReader<UnixStream>) -> Response {
        let mut l = String::new();
        reader.read_line(&mut l).unwrap();
        serde_json::from_str(&l).unwrap()
    }

    #[test]
    fn server_invalid_utf8_gets_error_and_keeps_serving() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl");
        spawn_server(UnixListener::bind(&path).unwrap(), Arc::new(Echo)).unwrap();
        let mut stream = UnixStream::connect(&path).unwrap();
        stream
            .write_all(b"{\"cmd\":\xff}\n{\"cmd\":\"ping\"}\n")
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let r1 = reply_line(&mut reader);
        assert!(r1.error.unwrap().contains("line 1 is not valid UTF-8"));
        assert_eq!(reply_line(&mut reader).device.as_deref(), Some("echo"));
    }

    #[test]
    fn server_overlong_line_gets_error_then_the_connection_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl");
        spawn_server(UnixListener::bind(&path).unwrap(), Arc::new(Echo)).unwrap();
        let stream = UnixStream::connect(&path).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        // The server hangs up without reading all of it: ignore EPIPE.
        let mut w = stream;
        let writer = thread::spawn(move || {
            let _ = w.write_all(&vec![b'x'; MAX_LINE + 1]);
        });
        let r = reply_line(&mut reader);
        assert!(
            r.error
                .unwrap()
                .contains(&format!("longer than {MAX_LINE} bytes")),
            "too long"
        );
        let mut rest = String::new();
        assert_eq!(reader.read_line(&mut rest).unwrap(), 0, "{rest}");
        writer.join().unwrap();
    }
}
