//! Process lifecycle: the listening socket, the serve loop that gives every
//! front-end connection a fresh vhost-user daemon, and clean shutdown.
//!
//! # Socket safety
//!
//! The vhost-user socket and the control socket are created by
//! [`bind_socket`], which refuses a directory that the caller does not own
//! or that is writable by group or others (so nobody else can swap or
//! pre-create the path), refuses to replace anything that is not a socket,
//! and leaves the socket at mode 0600. `dangle-backend` also sets its umask
//! to 0077 before creating anything, so the socket is never reachable by
//! others even between `bind` and `chmod`.
//!
//! # Reconnects
//!
//! The listening socket stays bound for the life of the process. Each
//! accepted connection gets a new `VhostUserDaemon` with a new backend
//! object (fresh vrings, features, guest-visible device state); the device
//! model behind it (EEPROM contents, driven input levels, counters, fault
//! plan) persists. When the front end hangs up (e.g. QMP `device_del` then
//! `chardev-remove`), the worker threads are stopped through the backend's
//! `exit_event()` and the loop accepts the next connection on the same path.
//!
//! Chains held by a `hold` fault are released when their ring goes away:
//! on `GET_VRING_BASE` (the front end stops the ring) and on disconnect they
//! are dropped, since a stopped ring can take no used entries; while the
//! ring runs, the control request `release_held` returns them with `ERR`.
//! A `delay` fault sleeps in the ring's worker thread, so it also delays
//! the ring's stop by up to one delay.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use vhost::vhost_user::{Error as VhostUserError, Listener};
use vhost_user_backend::{ShutdownHandle, VhostUserBackend, VhostUserDaemon, VringRwLock};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// Errors of the lifecycle layer.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The socket directory cannot be inspected.
    #[error("cannot inspect socket directory {path}")]
    SocketDirStat {
        /// Directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The socket directory is not safe.
    #[error("refusing socket directory {path}: {reason}")]
    UnsafeSocketDir {
        /// Directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Something that is not a socket sits at the socket path.
    #[error("refusing to replace {path}: it exists and is not a socket")]
    NotASocket {
        /// Path.
        path: PathBuf,
    },
    /// Binding or preparing the socket failed.
    #[error("cannot create socket {path}")]
    Bind {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Setting up a connection failed.
    #[error("cannot set up a front-end connection")]
    Connection(#[source] io::Error),
    /// vhost-user-backend refused to create or start the daemon.
    #[error("vhost-user daemon: {0}")]
    Vhost(String),
}

/// Creates a unix socket listener at `path` (see the module docs).
pub fn bind_socket(path: &Path) -> Result<UnixListener, DaemonError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let meta = std::fs::metadata(&dir).map_err(|source| DaemonError::SocketDirStat {
        path: dir.clone(),
        source,
    })?;
    let uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(DaemonError::UnsafeSocketDir {
            path: dir,
            reason: format!("owned by uid {}, not by the caller (uid {uid})", meta.uid()),
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(DaemonError::UnsafeSocketDir {
            path: dir,
            reason: format!(
                "writable by group or others (mode {:o})",
                meta.mode() & 0o7777
            ),
        });
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|source| DaemonError::Bind {
                path: path.to_path_buf(),
                source,
            })?;
        }
        Ok(_) => {
            return Err(DaemonError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Err(_) => {}
    }
    let bind_err = |source| DaemonError::Bind {
        path: path.to_path_buf(),
        source,
    };
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    Ok(listener)
}

/// Asks the serve loop to stop; shared with the signal thread.
pub struct Shutdown {
    requested: AtomicBool,
    event: EventFd,
    active: Mutex<Option<ShutdownHandle>>,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("requested", &self.requested)
            .finish_non_exhaustive()
    }
}

impl Shutdown {
    /// A fresh, untriggered shutdown switch.
    pub fn new() -> io::Result<Arc<Self>> {
        Ok(Arc::new(Shutdown {
            requested: AtomicBool::new(false),
            event: EventFd::new(EFD_NONBLOCK)?,
            active: Mutex::new(None),
        }))
    }

    /// Stops the serve loop: closes the current connection, if any, and
    /// stops accepting.
    pub fn trigger(&self) {
        self.requested.store(true, Ordering::SeqCst);
        let _ = self.event.write(1);
        if let Some(h) = self
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            h.shutdown();
        }
    }

    /// Whether [`Shutdown::trigger`] was called.
    pub fn is_triggered(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    fn set_active(&self, handle: Option<ShutdownHandle>) {
        *self.active.lock().unwrap_or_else(PoisonError::into_inner) = handle;
    }
}

/// A device that can serve successive front-end connections.
pub trait Device: Send + Sync + 'static {
    /// The per-connection backend.
    type Conn: VhostUserBackend<Bitmap = (), Vring = VringRwLock> + 'static;
    /// Thread name / log tag.
    fn kind(&self) -> &'static str;
    /// Starts a connection: fresh guest-visible state, new backend object.
    fn connect(&self) -> io::Result<Arc<Self::Conn>>;
    /// The eventfd the connection's worker waits on for world-side events,
    /// and its epoll id.
    fn wake(conn: &Self::Conn) -> (&EventFd, u16);
    /// A front end was accepted on the connection made by `connect`.
    fn connected(&self) {}
    /// The connection ended.
    fn disconnect(&self);
}

/// Waits until `listener` has a pending connection; false on shutdown.
fn wait_for_connection(listener: &UnixListener, shutdown: &Shutdown) -> io::Result<bool> {
    loop {
        if shutdown.is_triggered() {
            return Ok(false);
        }
        // SAFETY: the eventfd is owned by `shutdown`, which outlives this
        // borrow (the poll below returns before `shutdown` can be dropped).
        let event_fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(shutdown.event.as_raw_fd()) };
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(event_fd, PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if fds[1].any().unwrap_or(false) || shutdown.is_triggered() {
            return Ok(false);
        }
        if fds[0].any().unwrap_or(false) {
            return Ok(true);
        }
    }
}

/// Serves front ends on `listener` one after another until `shutdown`.
pub fn serve<D: Device>(
    device: &D,
    listener: &UnixListener,
    shutdown: &Shutdown,
) -> Result<(), DaemonError>
where
    Arc<D::Conn>: VhostUserBackend<Bitmap = (), Vring = VringRwLock> + Clone,
{
    while wait_for_connection(listener, shutdown).map_err(DaemonError::Connection)? {
        let conn = device.connect().map_err(DaemonError::Connection)?;
        let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let mut daemon = VhostUserDaemon::new(device.kind().to_owned(), conn.clone(), mem)
            .map_err(|e| DaemonError::Vhost(e.to_string()))?;
        let (wake, id) = D::wake(&conn);
        for handler in daemon.get_epoll_handlers() {
            handler
                .register_listener(wake.as_raw_fd(), EventSet::IN, u64::from(id))
                .map_err(DaemonError::Connection)?;
        }
        let mut vhost_listener =
            Listener::from(listener.try_clone().map_err(DaemonError::Connection)?);
        daemon
            .start(&mut vhost_listener)
            .map_err(|e| DaemonError::Vhost(e.to_string()))?;
        tracing::info!("{}: front end connected", device.kind());
        device.connected();
        shutdown.set_active(daemon.shutdown_handle());
        if shutdown.is_triggered() {
            daemon.request_shutdown();
        }
        match daemon.wait() {
            Ok(()) => tracing::info!("{}: front end disconnected", device.kind()),
            Err(vhost_user_backend::Error::HandleRequest(
                VhostUserError::Disconnected | VhostUserError::PartialMessage,
            )) => tracing::info!("{}: front end disconnected", device.kind()),
            Err(e) => tracing::warn!("{}: connection ended: {e}", device.kind()),
        }
        shutdown.set_active(None);
        device.disconnect();
        // Dropping the daemon fires the exit event and joins the workers.
        drop(daemon);
    }
    Ok(())
}

/// The exit event every backend gives vhost-user-backend's worker threads
/// (without it, dropping the daemon after a disconnect deadlocks).
pub fn exit_event() -> Option<(
    vmm_sys_util::event::EventConsumer,
    vmm_sys_util::event::EventNotifier,
)> {
    use vmm_sys_util::event::{EventFlag, new_event_consumer_and_notifier};
    new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC)
        .inspect_err(|e| tracing::error!("cannot create exit event: {e}"))
        .ok()
}

/// Logs a SET_MEM_TABLE the way every backend does.
pub fn log_mem_table<M: vm_memory::GuestMemoryBackend>(device: &str, mem: &M) {
    use vm_memory::GuestMemoryRegion;
    tracing::debug!(
        "{device}: SET_MEM_TABLE: {} region(s), {} bytes",
        mem.num_regions(),
        mem.iter().map(|r| r.len()).sum::<u64>()
    );
}
