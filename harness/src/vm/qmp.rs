//! A small synchronous QMP client.
//!
//! Commands are the typed structs of the `qapi-qmp` crate (generated from
//! QEMU's schema), so their names and arguments are checked at compile time.
//! Replies and events are read here rather than through `qapi::Qmp`, for two
//! reasons: an event that the crate's schema predates (QEMU 10 has several)
//! must not make the whole stream undecodable, and EOF or a stuck QEMU must
//! be an error with a timeout, not a panic or a hang.

use dangle_proto::Deadline;
use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use qapi::Command;
use qapi::qmp;
use serde_json::{Value, json};

/// How long one QMP command may take before QEMU is considered stuck.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How long QEMU may take to create its QMP socket after spawn.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the QMP client.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket never accepted a connection.
    #[error("cannot connect to qmp socket {path}")]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading or writing the socket failed (QEMU exited, timeout).
    #[error("qmp i/o failed during {during}")]
    Io {
        during: String,
        #[source]
        source: io::Error,
    },
    /// QEMU closed the connection.
    #[error("qemu closed the qmp connection during {0}")]
    Closed(String),
    /// QEMU sent something that is not QMP.
    #[error("unexpected qmp message during {during}: {line}")]
    Protocol { during: String, line: String },
    /// QEMU answered a command with an error.
    #[error("qmp command {command} failed: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
    /// A wait for an event ran out of time.
    #[error("no {event} event within {timeout:?}")]
    EventTimeout { event: String, timeout: Duration },
}

/// An asynchronous QMP event.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// The event name, e.g. `DEVICE_DELETED`.
    pub name: String,
    /// The event's `data` member (`null` when absent).
    pub data: Value,
}

/// A QMP connection in command mode.
#[derive(Debug)]
pub struct QmpClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    events: VecDeque<QmpEvent>,
}

impl QmpClient {
    /// Connects to a QMP unix socket, retrying until `timeout` while QEMU
    /// starts up, and negotiates capabilities.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let deadline = Deadline::after(timeout);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if !deadline.expired() => {
                    tracing::trace!("qmp connect {}: {e}", path.display());
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(source) => {
                    return Err(QmpError::Connect {
                        path: path.to_owned(),
                        source,
                    });
                }
            }
        };
        Self::from_stream(stream)
    }

    /// Takes an already connected stream (tests use a socketpair).
    pub fn from_stream(stream: UnixStream) -> Result<Self, QmpError> {
        let io_err = |source| QmpError::Io {
            during: "handshake".into(),
            source,
        };
        stream
            .set_read_timeout(Some(COMMAND_TIMEOUT))
            .map_err(io_err)?;
        let writer = stream.try_clone().map_err(io_err)?;
        let mut client = Self {
            reader: BufReader::new(stream),
            writer,
            events: VecDeque::new(),
        };
        let greeting = client.read_message("handshake")?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol {
                during: "handshake".into(),
                line: greeting.to_string(),
            });
        }
        client.execute(&qmp::qmp_capabilities { enable: None })?;
        Ok(client)
    }

    fn read_message(&mut self, during: &str) -> Result<Value, QmpError> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(|source| QmpError::Io {
                    during: during.to_owned(),
                    source,
                })?;
            if n == 0 {
                return Err(QmpError::Closed(during.to_owned()));
            }
            if line.trim().is_empty() {
                continue;
            }
            return serde_json::from_str(&line).map_err(|_| QmpError::Protocol {
                during: during.to_owned(),
                line: line.trim_end().to_owned(),
            });
        }
    }

    /// Runs a typed command and returns its typed result. Events that arrive
    /// meanwhile are queued for [`QmpClient::wait_event`].
    pub fn execute<C: Command>(&mut self, cmd: &C) -> Result<C::Ok, QmpError> {
        let value =
            self.execute_value(C::NAME, serde_json::to_value(cmd).unwrap_or(Value::Null))?;
        serde_json::from_value(value.clone()).map_err(|_| QmpError::Protocol {
            during: C::NAME.to_owned(),
            line: value.to_string(),
        })
    }

    /// Runs a command given by name with raw JSON arguments.
    pub fn execute_value(&mut self, name: &str, arguments: Value) -> Result<Value, QmpError> {
        let mut msg = json!({ "execute": name });
        if !arguments.is_null() && arguments.as_object().is_none_or(|o| !o.is_empty()) {
            msg["arguments"] = arguments;
        }
        tracing::debug!(target: "dangle::qmp", "-> {msg}");
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(b'\n');
        self.writer
            .write_all(&bytes)
            .map_err(|source| QmpError::Io {
                during: name.to_owned(),
                source,
            })?;
        loop {
            let reply = self.read_message(name)?;
            if let Some(event) = reply.get("event").and_then(Value::as_str) {
                tracing::debug!(target: "dangle::qmp", "<- event {reply}");
                self.events.push_back(QmpEvent {
                    name: event.to_owned(),
                    data: reply.get("data").cloned().unwrap_or(Value::Null),
                });
                continue;
            }
            tracing::debug!(target: "dangle::qmp", "<- {reply}");
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                return Err(QmpError::Command {
                    command: name.to_owned(),
                    class: err["class"].as_str().unwrap_or("?").to_owned(),
                    desc: err["desc"].as_str().unwrap_or("?").to_owned(),
                });
            }
            return Err(QmpError::Protocol {
                during: name.to_owned(),
                line: reply.to_string(),
            });
        }
    }

    /// Removes and returns every queued event.
    pub fn drain_events(&mut self) -> Vec<QmpEvent> {
        self.events.drain(..).collect()
    }

    /// Waits until an event matching `pred` arrives, polling QEMU with a
    /// cheap command so that the socket is read. Other events stay queued.
    pub fn wait_event(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&QmpEvent) -> bool,
    ) -> Result<QmpEvent, QmpError> {
        let deadline = Deadline::after(timeout);
        loop {
            if let Some(pos) = self.events.iter().position(&mut pred) {
                return Ok(self.events.remove(pos).expect("position is in range"));
            }
            if deadline.expired() {
                return Err(QmpError::EventTimeout {
                    event: what.to_owned(),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
            self.execute(&qmp::query_status {})?;
        }
    }

    /// `device_del` then wait for its `DEVICE_DELETED`. A timeout is returned
    /// as [`QmpError::EventTimeout`]: the caller decides whether that is a
    /// finding ("unplug never completed").
    pub fn device_del_and_wait(&mut self, id: &str, timeout: Duration) -> Result<(), QmpError> {
        self.execute(&qmp::device_del { id: id.to_owned() })?;
        self.wait_event(&format!("DEVICE_DELETED for {id}"), timeout, |e| {
            e.name == "DEVICE_DELETED" && e.data.get("device").and_then(Value::as_str) == Some(id)
        })
        .map(drop)
    }

    /// `chardev-add` of a unix socket client chardev.
    pub fn chardev_add_unix(&mut self, id: &str, path: &Path) -> Result<(), QmpError> {
        let addr = qmp::SocketAddressLegacy::unix(qmp::UnixSocketAddressWrapper {
            data: qmp::UnixSocketAddress {
                abstract_: None,
                tight: None,
                path: path.to_string_lossy().into_owned(),
            },
        });
        let sock = qmp::ChardevSocket {
            base: qmp::ChardevCommon {
                logappend: None,
                logfile: None,
            },
            nodelay: None,
            reconnect: None,
            server: Some(false),
            telnet: None,
            tls_authz: None,
            tls_creds: None,
            tn3270: None,
            wait: None,
            websocket: None,
            addr,
        };
        self.execute(&qmp::chardev_add {
            id: id.to_owned(),
            backend: qmp::ChardevBackend::socket(qmp::ChardevSocketWrapper { data: sock }),
        })
        .map(drop)
    }

    /// `chardev-remove`.
    pub fn chardev_remove(&mut self, id: &str) -> Result<(), QmpError> {
        self.execute(&qmp::chardev_remove { id: id.to_owned() })
            .map(drop)
    }

    /// `device_add` with the given driver, id, bus and extra properties.
    pub fn device_add(
        &mut self,
        driver: &str,
        id: &str,
        bus: Option<&str>,
        props: &[(&str, &str)],
    ) -> Result<(), QmpError> {
        let mut arguments = qapi::Dictionary::new();
        for (k, v) in props {
            arguments.insert((*k).to_owned(), Value::String((*v).to_owned()));
        }
        self.execute(&qmp::device_add {
            bus: bus.map(str::to_owned),
            id: Some(id.to_owned()),
            driver: driver.to_owned(),
            arguments,
        })
        .map(drop)
    }

    /// A human monitor command (`info ...`); returns its text output.
    pub fn hmp(&mut self, command_line: &str) -> Result<String, QmpError> {
        self.execute(&qmp::human_monitor_command {
            cpu_index: None,
            command_line: command_line.to_owned(),
        })
    }

    /// Asks QEMU to exit now.
    pub fn quit(&mut self) -> Result<(), QmpError> {
        self.execute(&qmp::quit {}).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A scripted QMP peer: answers each command line with the next reply.
    fn mock_qemu(replies: Vec<&'static str>) -> (UnixStream, std::thread::JoinHandle<Vec<String>>) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let handle = std::thread::spawn(move || {
            let mut w = theirs.try_clone().unwrap();
            let mut r = BufReader::new(theirs);
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .unwrap();
            let mut seen = Vec::new();
            for reply in replies {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                seen.push(line.trim().to_owned());
                w.write_all(reply.as_bytes()).unwrap();
            }
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest);
            seen
        });
        (ours, handle)
    }

    #[test]
    fn device_del_and_wait_unknown_event_first_still_finds_deleted() {
        let (s, h) = mock_qemu(vec![
            "{\"return\": {}}\n",
            "{\"event\": \"SOMETHING_NEW_IN_QEMU_11\", \"data\": {\"x\": 1}, \"timestamp\": {}}\n{\"return\": {}}\n",
            "{\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"gpio0\", \"path\": \"/machine/peripheral/gpio0\"}}\n{\"return\": {\"running\": true, \"status\": \"running\"}}\n",
        ]);
        let mut c = QmpClient::from_stream(s).unwrap();
        c.device_del_and_wait("gpio0", Duration::from_secs(5))
            .unwrap();
        let rest = c.drain_events();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].name, "SOMETHING_NEW_IN_QEMU_11");
        drop(c);
        let seen = h.join().unwrap();
        assert!(seen[0].contains("qmp_capabilities"));
        assert!(seen[1].contains("\"device_del\"") && seen[1].contains("gpio0"));
    }

    #[test]
    fn execute_error_reply_is_command_error() {
        let (s, _h) = mock_qemu(vec![
            "{\"return\": {}}\n",
            "{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Device 'x' not found\"}}\n",
        ]);
        let mut c = QmpClient::from_stream(s).unwrap();
        let err = c.execute(&qmp::device_del { id: "x".into() }).unwrap_err();
        assert!(
            matches!(err, QmpError::Command { ref class, .. } if class == "DeviceNotFound"),
            "{err}"
        );
    }

    #[test]
    fn execute_peer_closes_is_closed_error_not_panic() {
        let (s, h) = mock_qemu(vec!["{\"return\": {}}\n"]);
        let mut c = QmpClient::from_stream(s).unwrap();
        // The mock stops replying after capabilities and drains until EOF,
        // so shut our write side to end it, then expect Closed on read.
        c.writer.shutdown(std::net::Shutdown::Write).unwrap();
        h.join().unwrap();
        let err = c.execute(&qmp::query_status {}).unwrap_err();
        assert!(
            matches!(err, QmpError::Io { .. } | QmpError::Closed(_)),
            "{err}"
        );
    }

    #[test]
    fn chardev_add_unix_serializes_legacy_socket_address() {
        let (s, h) = mock_qemu(vec!["{\"return\": {}}\n", "{\"return\": {}}\n"]);
        let mut c = QmpClient::from_stream(s).unwrap();
        c.chardev_add_unix("gpio0-2", Path::new("sock/gpio0.sock"))
            .unwrap();
        drop(c);
        let seen = h.join().unwrap();
        let v: Value = serde_json::from_str(&seen[1]).unwrap();
        assert_eq!(v["execute"], "chardev-add");
        assert_eq!(v["arguments"]["id"], "gpio0-2");
        assert_eq!(v["arguments"]["backend"]["type"], "socket");
        assert_eq!(v["arguments"]["backend"]["data"]["addr"]["type"], "unix");
        assert_eq!(
            v["arguments"]["backend"]["data"]["addr"]["data"]["path"],
            "sock/gpio0.sock"
        );
        assert_eq!(v["arguments"]["backend"]["data"]["server"], false);
    }
}
