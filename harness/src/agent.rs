//! The host side of the guest agent protocol ([`dangle_proto`]).
//!
//! [`AgentClient`] speaks to the agent over any byte stream; in a VM that
//! is the unix socket of QEMU's `virtserialport` chardev named
//! `dangle.agent`. A reader thread routes replies to the request waiting
//! for them (by id) and pushes events to a channel that the caller takes
//! once with [`AgentClient::take_events`]. The agent's `Ready` event is
//! remembered; since QEMU drops what the guest writes before the host
//! connects, [`AgentClient::hello`] asks for the same facts explicitly.

use dangle_proto::Deadline;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dangle_proto::{
    ConsumerReport, ConsumerSpec, DeviceList, ErrorReply, Event, ExecOutput, ExecRequest,
    GuestInfo, GuestMessage, HostMessage, LineError, LineReader, PROTOCOL_VERSION, ReplyResult,
    Request, RequestId, Response,
};

/// Default time a request waits for its reply (Exec waits for its own
/// timeout plus this).
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often [`AgentClient::connect_unix`] retries while the socket does
/// not exist yet.
pub const CONNECT_RETRY: Duration = Duration::from_millis(50);

/// Errors of the agent client.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The socket could not be opened or written.
    #[error("agent channel {what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No reply in time.
    #[error("no reply from the agent to {request} within {timeout:?}")]
    Timeout {
        /// The request, e.g. `ping`.
        request: String,
        /// The time waited.
        timeout: Duration,
    },
    /// The channel closed before the reply came.
    #[error("the agent channel closed while waiting for the reply to {0}")]
    Disconnected(String),
    /// The agent answered with an error.
    #[error("the agent refused {request}: {reply}")]
    Refused {
        /// The request.
        request: String,
        /// The agent's error.
        reply: ErrorReply,
    },
    /// The agent answered with a response of the wrong kind.
    #[error("unexpected reply to {request}: {response:?}")]
    Unexpected {
        /// The request.
        request: String,
        /// What came back.
        response: Box<Response>,
    },
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

type Pending = Arc<Mutex<HashMap<RequestId, SyncSender<ReplyResult>>>>;

#[derive(Debug, Default)]
struct ReadyState {
    info: Option<GuestInfo>,
    closed: bool,
}

/// A connection to the guest agent.
pub struct AgentClient {
    writer: Mutex<Box<dyn Write + Send>>,
    pending: Pending,
    next_id: AtomicU64,
    events: Mutex<Option<Receiver<Event>>>,
    ready: Arc<(Mutex<ReadyState>, Condvar)>,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

fn request_name(r: &Request) -> String {
    // The serde tag is the protocol's name for the request.
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.get("op")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "request".to_owned())
}

impl AgentClient {
    /// Connects to a unix socket (QEMU's chardev `server=on`), retrying
    /// until `timeout` while it does not accept yet.
    ///
    /// # Errors
    /// [`AgentError::Io`] when the time is up.
    pub fn connect_unix(path: &Path, timeout: Duration) -> Result<Self, AgentError> {
        let end = Deadline::after(timeout);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if end.expired() => {
                    return Err(AgentError::Io {
                        what: format!("connect {}", path.display()),
                        source: e,
                    });
                }
                Err(_) => std::thread::sleep(CONNECT_RETRY),
            }
        };
        Self::from_unix(stream)
    }

    /// Wraps a connected unix stream.
    ///
    /// # Errors
    /// If the stream cannot be duplicated for the reader thread.
    pub fn from_unix(stream: UnixStream) -> Result<Self, AgentError> {
        let reader = stream.try_clone().map_err(|source| AgentError::Io {
            what: "dup".to_owned(),
            source,
        })?;
        Ok(Self::new(reader, stream))
    }

    /// A client reading guest lines from `reader` and writing host lines to
    /// `writer`. Starts the reader thread.
    pub fn new(reader: impl Read + Send + 'static, writer: impl Write + Send + 'static) -> Self {
        let pending: Pending = Arc::default();
        let ready: Arc<(Mutex<ReadyState>, Condvar)> = Arc::default();
        let (ev_tx, ev_rx) = mpsc::channel();
        let (p2, r2) = (Arc::clone(&pending), Arc::clone(&ready));
        let spawned = std::thread::Builder::new()
            .name("agent-reader".to_owned())
            .spawn(move || read_loop(BufReader::new(reader), &p2, &r2, &ev_tx));
        if let Err(e) = spawned {
            tracing::error!("agent reader thread: {e}");
        }
        Self {
            writer: Mutex::new(Box::new(writer)),
            pending,
            next_id: AtomicU64::new(1),
            events: Mutex::new(Some(ev_rx)),
            ready,
        }
    }

    /// The event channel (consumer progress, stuck, exited, logs, ready).
    /// Returns `None` after the first call.
    pub fn take_events(&self) -> Option<Receiver<Event>> {
        lock(&self.events).take()
    }

    /// Waits up to `timeout` for the agent's `Ready` event.
    ///
    /// # Errors
    /// [`AgentError::Timeout`], or [`AgentError::Disconnected`].
    pub fn wait_ready(&self, timeout: Duration) -> Result<GuestInfo, AgentError> {
        let (m, cv) = &*self.ready;
        let end = Deadline::after(timeout);
        let mut st = lock(m);
        loop {
            if let Some(i) = &st.info {
                return Ok(i.clone());
            }
            if st.closed {
                return Err(AgentError::Disconnected("ready".to_owned()));
            }
            if end.expired() {
                return Err(AgentError::Timeout {
                    request: "ready".to_owned(),
                    timeout,
                });
            }
            st = match end.remaining() {
                Some(left) => cv
                    .wait_timeout(st, left)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0),
                None => cv.wait(st).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }

    /// Sends `request` and waits up to `timeout` for its reply.
    ///
    /// # Errors
    /// [`AgentError::Refused`] when the agent answers with an error; I/O,
    /// timeout or disconnection otherwise.
    pub fn request(&self, request: Request, timeout: Duration) -> Result<Response, AgentError> {
        let name = request_name(&request);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::sync_channel(1);
        lock(&self.pending).insert(id, tx);
        if lock(&self.ready.0).closed {
            lock(&self.pending).remove(&id);
            return Err(AgentError::Disconnected(name));
        }
        let line =
            dangle_proto::encode(&HostMessage { id, request }).map_err(|e| AgentError::Io {
                what: format!("encode {name}"),
                source: std::io::Error::other(e),
            })?;
        let sent = {
            let mut w = lock(&self.writer);
            w.write_all(line.as_bytes()).and_then(|()| w.flush())
        };
        if let Err(source) = sent {
            lock(&self.pending).remove(&id);
            return Err(AgentError::Io {
                what: format!("send {name}"),
                source,
            });
        }
        let result = match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                lock(&self.pending).remove(&id);
                return Err(AgentError::Timeout {
                    request: name,
                    timeout,
                });
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(AgentError::Disconnected(name));
            }
        };
        match result {
            ReplyResult::Ok(r) => Ok(r),
            ReplyResult::Error(reply) => Err(AgentError::Refused {
                request: name,
                reply,
            }),
        }
    }

    fn expect_done(&self, request: Request) -> Result<(), AgentError> {
        let name = request_name(&request);
        match self.request(request, DEFAULT_REPLY_TIMEOUT)? {
            Response::Done => Ok(()),
            other => Err(unexpected(name, other)),
        }
    }

    /// Version handshake; returns the guest facts.
    ///
    /// # Errors
    /// See [`AgentClient::request`]; a version mismatch is `Refused`.
    pub fn hello(&self, timeout: Duration) -> Result<GuestInfo, AgentError> {
        match self.request(
            Request::Hello {
                version: PROTOCOL_VERSION,
            },
            timeout,
        )? {
            Response::Hello { guest, .. } => Ok(guest),
            other => Err(unexpected("hello".to_owned(), other)),
        }
    }

    /// Liveness check; returns the guest uptime in ms.
    ///
    /// # Errors
    /// See [`AgentClient::request`].
    pub fn ping(&self, timeout: Duration) -> Result<u64, AgentError> {
        match self.request(Request::Ping {}, timeout)? {
            Response::Pong { uptime_ms } => Ok(uptime_ms),
            other => Err(unexpected("ping".to_owned(), other)),
        }
    }

    /// Runs a command in the guest.
    ///
    /// # Errors
    /// See [`AgentClient::request`].
    pub fn exec(&self, req: ExecRequest) -> Result<ExecOutput, AgentError> {
        let timeout = Duration::from_millis(req.timeout_ms) + DEFAULT_REPLY_TIMEOUT;
        match self.request(Request::Exec(req), timeout)? {
            Response::Exec(out) => Ok(out),
            other => Err(unexpected("exec".to_owned(), other)),
        }
    }

    /// Writes a file in the guest (sysfs, debugfs, ...).
    ///
    /// # Errors
    /// See [`AgentClient::request`].
    pub fn write_file(&self, path: &str, data: &str) -> Result<(), AgentError> {
        self.expect_done(Request::WriteFile {
            path: path.to_owned(),
            data: data.to_owned(),
        })
    }

    /// Sets a sysctl (`kernel.hung_task_timeout_secs`).
    ///
    /// # Errors
    /// See [`AgentClient::request`].
    pub fn sysctl(&self, name: &str, value: &str) -> Result<(), AgentError> {
        self.expect_done(Request::Sysctl {
            name: name.to_owned(),
            value: value.to_owned(),
        })
    }

    /// Starts a consumer.
    ///
    /// # Errors
    /// See [`AgentClient::request`].
    pub fn start_consumer(
        &self,
        consumer: &str,
        spec: ConsumerSpec,
        deadline: Duration,
        progress: Option<Duration>,
    ) -> Result<(), AgentError> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.expect_done(Request::StartConsumer {
            consumer: consumer.to_owned(),
            spec,
            deadline_ms: ms(deadline),
            progress_ms: progress.map(ms),
        })
    }

    /// Asks a consumer to stop (its `ConsumerExited` event follows).
    ///
    /// # Errors
    /// See [`AgentClient::request`].
    pub fn stop_consumer(&self, consumer: &str) -> Result<(), AgentError> {
        self.expect_done(Request::StopConsumer {
            consumer: consumer.to_owned(),
        })
    }

    /// Interrupts a consumer's syscall in flight (it gets `EINTR` and goes
    /// on).
    ///
    /// # Errors
    /// See [`AgentClient::request`].
    pub fn interrupt_consumer(&self, consumer: &str) -> Result<(), AgentError> {
        self.expect_done(Request::InterruptConsumer {
            consumer: consumer.to_owned(),
        })
    }

    /// Reports of one consumer or all.
    ///
    /// # Errors
    /// See [`AgentClient::request`].
    pub fn consumer_status(
        &self,
        consumer: Option<&str>,
    ) -> Result<Vec<ConsumerReport>, AgentError> {
        match self.request(
            Request::ConsumerStatus {
                consumer: consumer.map(str::to_owned),
            },
            DEFAULT_REPLY_TIMEOUT,
        )? {
            Response::Consumers { consumers } => Ok(consumers),
            other => Err(unexpected("consumer_status".to_owned(), other)),
        }
    }

    /// The devices the guest sees.
    ///
    /// # Errors
    /// See [`AgentClient::request`].
    pub fn list_devices(&self) -> Result<DeviceList, AgentError> {
        match self.request(Request::ListDevices {}, DEFAULT_REPLY_TIMEOUT)? {
            Response::Devices(d) => Ok(d),
            other => Err(unexpected("list_devices".to_owned(), other)),
        }
    }

    /// Powers the guest off (the reply comes before the VM stops).
    ///
    /// # Errors
    /// See [`AgentClient::request`].
    pub fn poweroff(&self) -> Result<(), AgentError> {
        self.expect_done(Request::Poweroff {})
    }
}

fn unexpected(request: String, response: Response) -> AgentError {
    AgentError::Unexpected {
        request,
        response: Box::new(response),
    }
}

fn read_loop(
    reader: impl BufRead,
    pending: &Pending,
    ready: &(Mutex<ReadyState>, Condvar),
    events: &Sender<Event>,
) {
    // The guest is under test: whatever it sends, at most MAX_LINE_BYTES
    // of it are held, and a bad line is logged and skipped.
    let mut lines = LineReader::new(reader);
    loop {
        let line = match lines.next_line() {
            Ok(None) => break,
            Ok(Some(line)) => line,
            Err(LineError::Io(e)) => {
                tracing::warn!("agent channel read: {e}");
                break;
            }
            Err(e) => {
                tracing::warn!("unreadable line from the agent: {e}");
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match dangle_proto::decode::<GuestMessage>(line) {
            Ok(GuestMessage::Reply {
                id: Some(id),
                result,
            }) => match lock(pending).remove(&id) {
                Some(tx) => {
                    let _ = tx.send(result);
                }
                None => tracing::warn!("reply to unknown or expired request {id}"),
            },
            Ok(GuestMessage::Reply { id: None, result }) => {
                tracing::warn!("agent could not read one of our lines: {result:?}");
            }
            Ok(GuestMessage::Event { event }) => {
                if let Event::Ready { guest, .. } = &event {
                    let (m, cv) = ready;
                    lock(m).info = Some(guest.clone());
                    cv.notify_all();
                }
                let _ = events.send(event);
            }
            Err(e) => tracing::warn!("unreadable line from the agent ({e}): {}", line.trim_end()),
        }
    }
    // Mark closed first: a request registered after the clear below sees
    // the flag; one registered before is woken by dropping its sender.
    let (m, cv) = ready;
    lock(m).closed = true;
    cv.notify_all();
    lock(pending).clear();
}

#[cfg(test)]
mod tests {
    use std::io::BufRead;

    use dangle_proto::{ChipSelector, ErrorKind};

    use super::*;

    fn info() -> GuestInfo {
        GuestInfo {
            kernel: "6.12.117".to_owned(),
            uptime_ms: 1234,
            agent: "0.1.0".to_owned(),
        }
    }

    fn send(w: &mut UnixStream, m: &GuestMessage) {
        let line = dangle_proto::encode(m).expect("encode");
        w.write_all(line.as_bytes()).expect("mock write");
    }

    /// MockAgent: an in-process stand-in for the guest agent. It greets
    /// with `Ready` and a line of console noise, answers hello/ping/exec/
    /// start_consumer (then pushes ConsumerStuck), never answers
    /// list_devices, and closes after poweroff.
    fn spawn_mock_agent(stream: UnixStream) -> std::thread::JoinHandle<Vec<HostMessage>> {
        std::thread::spawn(move || {
            let mut w = stream.try_clone().expect("clone");
            let mut seen = Vec::new();
            send(
                &mut w,
                &GuestMessage::Event {
                    event: Event::Ready {
                        protocol: PROTOCOL_VERSION,
                        guest: info(),
                    },
                },
            );
            w.write_all(b"[    1.0] random console noise\n")
                .expect("noise");
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let msg: HostMessage = match dangle_proto::decode(&line) {
                    Ok(m) => m,
                    Err(e) => {
                        send(&mut w, &dangle_proto::bad_request_reply(&line, &e));
                        continue;
                    }
                };
                seen.push(msg.clone());
                let reply = |r: ReplyResult| GuestMessage::Reply {
                    id: Some(msg.id),
                    result: r,
                };
                match msg.request {
                    Request::Hello { version } if version == PROTOCOL_VERSION => send(
                        &mut w,
                        &reply(ReplyResult::Ok(Response::Hello {
                            version,
                            guest: info(),
                        })),
                    ),
                    Request::Ping {} => {
                        send(
                            &mut w,
                            &reply(ReplyResult::Ok(Response::Pong { uptime_ms: 99 })),
                        );
                    }
                    Request::Exec(e) => send(
                        &mut w,
                        &reply(ReplyResult::Ok(Response::Exec(ExecOutput {
                            code: Some(0),
                            signal: None,
                            timed_out: false,
                            stdout: e.argv.join(" "),
                            stderr: String::new(),
                        }))),
                    ),
                    Request::StartConsumer { consumer, .. } => {
                        send(&mut w, &reply(ReplyResult::Ok(Response::Done)));
                        send(
                            &mut w,
                            &GuestMessage::Event {
                                event: Event::ConsumerStuck {
                                    id: consumer,
                                    syscall: "read".to_owned(),
                                    for_ms: 5000,
                                },
                            },
                        );
                    }
                    Request::StopConsumer { consumer } => send(
                        &mut w,
                        &reply(ReplyResult::Error(ErrorReply {
                            kind: ErrorKind::NotFound,
                            message: format!("no consumer named {consumer:?}"),
                            errno: None,
                        })),
                    ),
                    Request::ListDevices {} => {}
                    Request::Poweroff {} => {
                        send(&mut w, &reply(ReplyResult::Ok(Response::Done)));
                        break;
                    }
                    _ => {}
                }
            }
            seen
        })
    }

    fn pair() -> (AgentClient, std::thread::JoinHandle<Vec<HostMessage>>) {
        let (host, guest) = UnixStream::pair().expect("socketpair");
        let mock = spawn_mock_agent(guest);
        (AgentClient::from_unix(host).expect("client"), mock)
    }

    #[test]
    fn agent_client_mock_ready_hello_ping_exec_work() {
        let (c, _mock) = pair();
        assert_eq!(c.wait_ready(Duration::from_secs(5)).expect("ready"), info());
        assert_eq!(
            c.hello(Duration::from_secs(5)).expect("hello").kernel,
            "6.12.117"
        );
        assert_eq!(c.ping(Duration::from_secs(5)).expect("ping"), 99);
        let out = c
            .exec(ExecRequest {
                argv: vec!["echo".to_owned(), "hi".to_owned()],
                env: Default::default(),
                timeout_ms: 100,
                stdin: None,
            })
            .expect("exec");
        assert_eq!(out.stdout, "echo hi");
    }

    #[test]
    fn agent_client_events_arrive_on_the_channel() {
        let (c, _mock) = pair();
        let events = c.take_events().expect("events");
        assert!(c.take_events().is_none());
        c.start_consumer(
            "r0",
            ConsumerSpec::GpioInfoWatch {
                chip: ChipSelector::Label("virtio0".to_owned()),
                line: 0,
            },
            Duration::from_secs(5),
            None,
        )
        .expect("start");
        let mut got = Vec::new();
        while got.len() < 2 {
            got.push(events.recv_timeout(Duration::from_secs(5)).expect("event"));
        }
        assert!(matches!(got[0], Event::Ready { .. }), "{got:?}");
        assert_eq!(
            got[1],
            Event::ConsumerStuck {
                id: "r0".to_owned(),
                syscall: "read".to_owned(),
                for_ms: 5000
            }
        );
    }

    #[test]
    fn agent_client_error_reply_is_refused_with_the_agent_message() {
        let (c, _mock) = pair();
        let e = c.stop_consumer("ghost").expect_err("refused");
        match &e {
            AgentError::Refused { request, reply } => {
                assert_eq!(request, "stop_consumer");
                assert_eq!(reply.kind, ErrorKind::NotFound);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(e.to_string().contains("ghost"), "{e}");
    }

    #[test]
    fn agent_client_unanswered_request_times_out_then_the_channel_still_works() {
        let (c, _mock) = pair();
        let t0 = std::time::Instant::now();
        let e = c
            .request(Request::ListDevices {}, Duration::from_millis(200))
            .expect_err("timeout");
        assert!(
            matches!(e, AgentError::Timeout { ref request, .. } if request == "list_devices"),
            "{e}"
        );
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert_eq!(c.ping(Duration::from_secs(5)).expect("ping"), 99);
    }

    #[test]
    fn agent_client_closed_channel_fails_waiting_requests() {
        let (c, mock) = pair();
        c.poweroff().expect("poweroff");
        let seen = mock.join().expect("mock");
        assert!(matches!(
            seen.last(),
            Some(HostMessage {
                request: Request::Poweroff {},
                ..
            })
        ));
        let e = c.ping(Duration::from_secs(5)).expect_err("closed");
        assert!(
            matches!(e, AgentError::Disconnected(_) | AgentError::Io { .. }),
            "{e}"
        );
    }

    #[test]
    fn agent_client_overlong_and_bad_lines_from_the_guest_are_skipped() {
        let (host, guest) = UnixStream::pair().expect("socketpair");
        let c = AgentClient::from_unix(host).expect("client");
        let writer = std::thread::spawn(move || {
            let mut w = guest;
            let mut junk = vec![b'x'; dangle_proto::MAX_LINE_BYTES + 10];
            junk.extend_from_slice(b"\n\xff\n");
            w.write_all(&junk).expect("junk");
            send(
                &mut w,
                &GuestMessage::Event {
                    event: Event::Ready {
                        protocol: PROTOCOL_VERSION,
                        guest: info(),
                    },
                },
            );
            w
        });
        assert_eq!(
            c.wait_ready(Duration::from_secs(10)).expect("ready"),
            info()
        );
        drop(writer.join().expect("writer"));
    }
}
