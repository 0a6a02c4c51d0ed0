//! Request dispatch: one decoded [`HostMessage`] in, one [`GuestMessage`]
//! reply out (through the outbox), events pushed by consumers on the same
//! outbox. Independent of the channel, so tests drive it over pipes.

use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use dangle_proto::{
    DeviceList, ErrorKind, ErrorReply, Event, GuestInfo, GuestMessage, HostMessage, LineError,
    LineReader, PROTOCOL_VERSION, ReplyResult, Request, Response,
};

use crate::consumer::{EventSink, Registry, RegistryError};
use crate::discovery::{self, Sysfs};
use crate::exec::{self, ExecError, Reaper};
use crate::workloads;

/// Where replies and events go (the channel writer).
pub type Outbox = Arc<dyn Fn(GuestMessage) + Send + Sync>;

/// What the main loop must do after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Keep serving.
    Continue,
    /// The reply to `Poweroff` was sent: sync and power off.
    Poweroff,
}

/// How long `Poweroff` waits for consumers to stop before powering off
/// anyway.
pub const POWEROFF_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// The request handler.
pub struct Server {
    registry: Arc<Registry>,
    reaper: Arc<Reaper>,
    sysfs: Sysfs,
    outbox: Outbox,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("registry", &self.registry)
            .field("sysfs", &self.sysfs)
            .finish_non_exhaustive()
    }
}

fn err(kind: ErrorKind, message: impl Into<String>, errno: Option<i32>) -> ReplyResult {
    ReplyResult::Error(ErrorReply {
        kind,
        message: message.into(),
        errno,
    })
}

fn io_err(what: &str, e: &std::io::Error) -> ReplyResult {
    let kind = if e.kind() == std::io::ErrorKind::NotFound {
        ErrorKind::NotFound
    } else {
        ErrorKind::Os
    };
    err(kind, format!("{what}: {e}"), e.raw_os_error())
}

fn registry_err(e: &RegistryError) -> ReplyResult {
    let kind = match e {
        RegistryError::AlreadyExists(_) => ErrorKind::AlreadyExists,
        RegistryError::NotFound(_) => ErrorKind::NotFound,
        RegistryError::Spawn { .. } => ErrorKind::Os,
    };
    err(kind, e.to_string(), None)
}

/// Facts about the running guest.
pub fn guest_info(sysfs: &Sysfs) -> GuestInfo {
    let kernel = std::fs::read_to_string(sysfs.path("/proc/sys/kernel/osrelease"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    GuestInfo {
        kernel,
        uptime_ms: uptime_ms(sysfs),
        agent: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// Uptime from `/proc/uptime`, 0 if unreadable.
pub fn uptime_ms(sysfs: &Sysfs) -> u64 {
    std::fs::read_to_string(sysfs.path("/proc/uptime"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |secs| (secs * 1000.0) as u64)
}

/// `/proc/sys/<name with dots as slashes>`, refusing names that escape it.
pub fn sysctl_path(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name
            .split('.')
            .all(|c| !c.is_empty() && c != ".." && !c.contains('/'));
    ok.then(|| format!("/proc/sys/{}", name.replace('.', "/")))
}

impl Server {
    /// A server whose consumers and replies go to `outbox`.
    pub fn new(sysfs: Sysfs, reaper: Arc<Reaper>, outbox: Outbox) -> Self {
        let ob = Arc::clone(&outbox);
        let sink: EventSink = Arc::new(move |event| ob(GuestMessage::Event { event }));
        Self {
            registry: Registry::new(sink),
            reaper,
            sysfs,
            outbox,
        }
    }

    /// The consumer registry (for the watchdog).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Sends an event.
    pub fn send_event(&self, event: Event) {
        (self.outbox)(GuestMessage::Event { event });
    }

    /// Serves lines from `input` until it ends (`Ok(Continue)`) or a
    /// `Poweroff` is handled. A line that cannot be read (longer than
    /// [`dangle_proto::MAX_LINE_BYTES`], not UTF-8, cut short by the end of
    /// input) gets a `BadRequest` reply without an id, and serving goes on
    /// with the next line (see [`dangle_proto::lines`]).
    ///
    /// # Errors
    /// A read error of `input`.
    pub fn serve(&self, input: &mut impl BufRead) -> std::io::Result<Action> {
        let mut lines = LineReader::new(input);
        loop {
            match lines.next_line() {
                Ok(None) => return Ok(Action::Continue),
                Ok(Some(line)) if line.trim().is_empty() => {}
                Ok(Some(line)) => {
                    if self.handle_line(line) == Action::Poweroff {
                        return Ok(Action::Poweroff);
                    }
                }
                Err(LineError::Io(e)) => return Err(e),
                Err(e) => {
                    tracing::warn!("unreadable request line: {e}");
                    (self.outbox)(dangle_proto::unreadable_line_reply(&e));
                }
            }
        }
    }

    /// Decodes and handles one line; a bad line gets a `BadRequest` reply.
    pub fn handle_line(&self, line: &str) -> Action {
        match dangle_proto::decode::<HostMessage>(line) {
            Ok(msg) => self.handle(msg),
            Err(e) => {
                tracing::warn!("bad request line: {e}");
                (self.outbox)(dangle_proto::bad_request_reply(line, &e));
                Action::Continue
            }
        }
    }

    fn reply(&self, id: u64, result: ReplyResult) {
        (self.outbox)(GuestMessage::Reply {
            id: Some(id),
            result,
        });
    }

    /// Handles one request. `Exec` runs on its own thread and replies from
    /// there; everything else replies before this returns.
    pub fn handle(&self, msg: HostMessage) -> Action {
        let id = msg.id;
        let result = match msg.request {
            Request::Hello { version } => {
                if version == PROTOCOL_VERSION {
                    ReplyResult::Ok(Response::Hello {
                        version: PROTOCOL_VERSION,
                        guest: guest_info(&self.sysfs),
                    })
                } else {
                    err(
                        ErrorKind::VersionMismatch,
                        format!("host speaks protocol {version}, agent speaks {PROTOCOL_VERSION}"),
                        None,
                    )
                }
            }
            Request::Ping {} => ReplyResult::Ok(Response::Pong {
                uptime_ms: uptime_ms(&self.sysfs),
            }),
            Request::Exec(req) => {
                let reaper = Arc::clone(&self.reaper);
                let outbox = Arc::clone(&self.outbox);
                let spawned = std::thread::Builder::new()
                    .name(format!("exec-{id}"))
                    .spawn(move || {
                        let result = match exec::run(&reaper, &req) {
                            Ok(out) => ReplyResult::Ok(Response::Exec(out)),
                            Err(e @ ExecError::Spawn { .. }) => {
                                let errno = match &e {
                                    ExecError::Spawn { source, .. } => source.raw_os_error(),
                                    _ => None,
                                };
                                err(ErrorKind::Os, format!("{e}: {}", source_text(&e)), errno)
                            }
                            Err(e @ ExecError::NotFound(_)) => {
                                err(ErrorKind::NotFound, e.to_string(), None)
                            }
                            Err(e @ ExecError::EmptyArgv) => {
                                err(ErrorKind::BadRequest, e.to_string(), None)
                            }
                        };
                        outbox(GuestMessage::Reply {
                            id: Some(id),
                            result,
                        });
                    });
                match spawned {
                    Ok(_) => return Action::Continue,
                    Err(e) => io_err("spawn exec thread", &e),
                }
            }
            Request::Sysctl { name, value } => match sysctl_path(&name) {
                Some(p) => self.write(&p, &value),
                None => err(
                    ErrorKind::BadRequest,
                    format!("invalid sysctl name {name:?}"),
                    None,
                ),
            },
            Request::WriteFile { path, data } => self.write(&path, &data),
            Request::ReadFile { path, max_bytes } => self.read(&path, max_bytes),
            Request::StartConsumer {
                consumer,
                spec,
                deadline_ms,
                progress_ms,
            } => {
                tracing::info!("start consumer {consumer}: {spec:?}");
                match workloads::start(
                    &self.registry,
                    &self.sysfs,
                    &consumer,
                    spec,
                    Duration::from_millis(deadline_ms),
                    progress_ms.map(Duration::from_millis),
                ) {
                    Ok(_) => ReplyResult::Ok(Response::Done),
                    Err(e) => registry_err(&e),
                }
            }
            Request::StopConsumer { consumer } => match self.registry.stop(&consumer) {
                Ok(()) => ReplyResult::Ok(Response::Done),
                Err(e) => registry_err(&e),
            },
            Request::InterruptConsumer { consumer } => match self.registry.interrupt(&consumer) {
                Ok(()) => ReplyResult::Ok(Response::Done),
                Err(e) => registry_err(&e),
            },
            Request::ConsumerStatus { consumer } => {
                match self.registry.status(consumer.as_deref()) {
                    Ok(consumers) => ReplyResult::Ok(Response::Consumers { consumers }),
                    Err(e) => registry_err(&e),
                }
            }
            Request::ListDevices {} => ReplyResult::Ok(Response::Devices(self.list_devices())),
            Request::StartShell {} => {
                if crate::shell::start_once(&self.reaper) {
                    ReplyResult::Ok(Response::Done)
                } else {
                    err(ErrorKind::NotFound, "the image has no /bin/sh", None)
                }
            }
            Request::Poweroff {} => {
                self.registry.stop_all();
                if !self.registry.wait_all(POWEROFF_STOP_TIMEOUT) {
                    tracing::warn!("poweroff: some consumers did not stop");
                }
                self.reply(id, ReplyResult::Ok(Response::Done));
                return Action::Poweroff;
            }
        };
        self.reply(id, result);
        Action::Continue
    }

    fn write(&self, path: &str, data: &str) -> ReplyResult {
        let p = self.sysfs.path(path);
        let r = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&p)
            .and_then(|mut f| std::io::Write::write_all(&mut f, data.as_bytes()));
        match r {
            Ok(()) => ReplyResult::Ok(Response::Done),
            Err(e) => io_err(&format!("write {path}"), &e),
        }
    }

    fn read(&self, path: &str, max_bytes: u64) -> ReplyResult {
        use std::io::Read;
        let p = self.sysfs.path(path);
        let mut data = Vec::new();
        let r = std::fs::File::open(&p)
            .and_then(|f| f.take(max_bytes.saturating_add(1)).read_to_end(&mut data));
        match r {
            Ok(_) => {
                let cap = usize::try_from(max_bytes).unwrap_or(usize::MAX);
                let truncated = data.len() > cap;
                data.truncate(cap);
                ReplyResult::Ok(Response::File {
                    data: String::from_utf8_lossy(&data).into_owned(),
                    truncated,
                })
            }
            Err(e) => io_err(&format!("read {path}"), &e),
        }
    }

    fn list_devices(&self) -> DeviceList {
        DeviceList {
            gpiochips: discovery::gpio_chips(&self.sysfs),
            i2c_adapters: self.sysfs.i2c_adapters().unwrap_or_default(),
            nvmem: self.sysfs.nvmem_devices().unwrap_or_default(),
        }
    }
}

fn source_text(e: &dyn std::error::Error) -> String {
    e.source().map(ToString::to_string).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::sync::Mutex;
    use std::sync::mpsc;

    use dangle_proto::MAX_LINE_BYTES;

    use super::*;

    fn server(root: &std::path::Path) -> (Server, mpsc::Receiver<GuestMessage>) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let outbox: Outbox = Arc::new(move |m| {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(m);
            }
        });
        let reaper = Reaper::new();
        reaper.spawn_thread().expect("reaper");
        (Server::new(Sysfs::new(root), reaper, outbox), rx)
    }

    fn reply(rx: &mpsc::Receiver<GuestMessage>) -> (Option<u64>, ReplyResult) {
        loop {
            match rx.recv_timeout(Duration::from_secs(10)).expect("reply") {
                GuestMessage::Reply { id, result } => return (id, result),
                GuestMessage::Event { .. } => continue,
            }
        }
    }

    #[test]
    fn serve_good_and_bad_lines_each_get_a_reply() {
        let t = tempfile::tempdir().expect("tempdir");
        let (s, rx) = server(t.path());
        let input = "{\"id\":1,\"op\":\"ping\"}\nnot json\n\n{\"id\":2,\"op\":\"fly\"}\n";
        let action = s.serve(&mut Cursor::new(input)).expect("serve");
        assert_eq!(action, Action::Continue);
        let (id, r) = reply(&rx);
        assert_eq!(id, Some(1));
        assert!(matches!(r, ReplyResult::Ok(Response::Pong { .. })));
        let (id, r) = reply(&rx);
        assert_eq!(id, None);
        assert!(matches!(
            r,
            ReplyResult::Error(ErrorReply {
                kind: ErrorKind::BadRequest,
                ..
            })
        ));
        let (id, r) = reply(&rx);
        assert_eq!(id, Some(2));
        match r {
            ReplyResult::Error(e) => assert!(e.message.contains("fly"), "{}", e.message),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn handle_sysctl_writes_under_proc_sys_and_rejects_escapes() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("proc/sys/kernel");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("hung_task_timeout_secs"), "120").expect("write");
        let (s, rx) = server(t.path());
        s.handle_line(
            r#"{"id":5,"op":"sysctl","name":"kernel.hung_task_timeout_secs","value":"20"}"#,
        );
        assert_eq!(reply(&rx), (Some(5), ReplyResult::Ok(Response::Done)));
        assert_eq!(
            std::fs::read_to_string(dir.join("hung_task_timeout_secs")).expect("read"),
            "20"
        );
        s.handle_line(r#"{"id":6,"op":"sysctl","name":"kernel...x","value":"1"}"#);
        assert!(matches!(
            reply(&rx).1,
            ReplyResult::Error(ErrorReply {
                kind: ErrorKind::BadRequest,
                ..
            })
        ));
        s.handle_line(r#"{"id":7,"op":"write_file","path":"/nope/x","data":"1"}"#);
        assert!(matches!(
            reply(&rx).1,
            ReplyResult::Error(ErrorReply {
                kind: ErrorKind::NotFound,
                errno: Some(2),
                ..
            })
        ));
    }

    #[test]
    fn handle_exec_replies_from_its_thread() {
        let t = tempfile::tempdir().expect("tempdir");
        let (s, rx) = server(t.path());
        s.handle_line(r#"{"id":9,"op":"exec","argv":["echo","hi"],"timeout_ms":5000}"#);
        match reply(&rx) {
            (Some(9), ReplyResult::Ok(Response::Exec(out))) => {
                assert_eq!(out.stdout, "hi\n");
                assert_eq!(out.code, Some(0));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn handle_hello_wrong_version_is_refused() {
        let t = tempfile::tempdir().expect("tempdir");
        let (s, rx) = server(t.path());
        s.handle_line(r#"{"id":1,"op":"hello","version":999}"#);
        assert!(matches!(
            reply(&rx).1,
            ReplyResult::Error(ErrorReply {
                kind: ErrorKind::VersionMismatch,
                ..
            })
        ));
    }

    #[test]
    fn serve_unreadable_lines_get_bad_request_and_serving_goes_on() {
        let t = tempfile::tempdir().expect("tempdir");
        let (s, rx) = server(t.path());
        let mut input = vec![b'a'; MAX_LINE_BYTES + 100];
        input.extend_from_slice(b"\n\xff\xfe\n{\"id\":3,\"op\":\"ping\"}\n{\"id\":4");
        let action = s.serve(&mut Cursor::new(input)).expect("serve");
        assert_eq!(action, Action::Continue);
        for needle in ["longer than", "not valid UTF-8"] {
            match reply(&rx) {
                (
                    None,
                    ReplyResult::Error(ErrorReply {
                        kind: ErrorKind::BadRequest,
                        message,
                        ..
                    }),
                ) => assert!(message.contains(needle), "{message}"),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(matches!(
            reply(&rx),
            (Some(3), ReplyResult::Ok(Response::Pong { .. }))
        ));
        match reply(&rx) {
            (None, ReplyResult::Error(e)) => {
                assert!(e.message.contains("ended inside"), "{}", e.message)
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
