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
use vhost_user_backend::{ShutdownHandle, VhostUserDaemon, VhostUserHandlerError};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::device::{Conn, Device, Model};

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
    #[error("vhost-user daemon")]
    Vhost(#[source] VhostError),
}

/// An error of vhost-user-backend's daemon. Its own error type implements
/// only `Display`, and one variant holds a thread's panic payload, which is
/// not `Sync`; this keeps the cause of every other variant as a source.
#[derive(Debug, thiserror::Error)]
pub enum VhostError {
    /// The vhost-user handler (vrings, worker threads) could not be made.
    #[error("cannot create the vhost-user handler")]
    Handler(#[source] VhostUserHandlerError),
    /// The vhost-user connection could not be set up or served.
    #[error("vhost-user connection")]
    Connection(#[source] VhostUserError),
    /// The daemon thread could not be started.
    #[error("cannot start the daemon thread")]
    Thread(#[source] io::Error),
    /// The daemon thread panicked.
    #[error("the daemon thread panicked")]
    Panicked,
}

impl From<vhost_user_backend::Error> for VhostError {
    fn from(e: vhost_user_backend::Error) -> Self {
        use vhost_user_backend::Error as E;
        match e {
            E::NewVhostUserHandler(e) => VhostError::Handler(e),
            E::CreateBackendListener(e)
            | E::CreateBackendReqHandler(e)
            | E::CreateVhostUserListener(e)
            | E::HandleRequest(e) => VhostError::Connection(e),
            E::StartDaemon(e) => VhostError::Thread(e),
            E::WaitDaemon(_) => VhostError::Panicked,
        }
    }
}

impl From<vhost_user_backend::Error> for DaemonError {
    fn from(e: vhost_user_backend::Error) -> Self {
        DaemonError::Vhost(e.into())
    }
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

/// Serves front ends of `device` on `listener` one after another until
/// `shutdown`.
pub fn serve<M: Model>(
    device: &Arc<Device<M>>,
    listener: &UnixListener,
    shutdown: &Shutdown,
) -> Result<(), DaemonError> {
    let kind = M::KIND;
    while wait_for_connection(listener, shutdown).map_err(DaemonError::Connection)? {
        let conn = Conn::new(device.clone()).map_err(DaemonError::Connection)?;
        let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let mut daemon = VhostUserDaemon::new(kind.to_owned(), conn.clone(), mem)?;
        for handler in daemon.get_epoll_handlers() {
            handler
                .register_listener(
                    conn.wake_fd().as_raw_fd(),
                    EventSet::IN,
                    u64::from(Conn::<M>::WAKE_EVENT),
                )
                .map_err(DaemonError::Connection)?;
        }
        let mut vhost_listener =
            Listener::from(listener.try_clone().map_err(DaemonError::Connection)?);
        daemon.start(&mut vhost_listener)?;
        tracing::info!("{kind}: front end connected");
        device.connected();
        shutdown.set_active(daemon.shutdown_handle());
        if shutdown.is_triggered() {
            daemon.request_shutdown();
        }
        match daemon.wait() {
            Ok(())
            | Err(vhost_user_backend::Error::HandleRequest(
                VhostUserError::Disconnected | VhostUserError::PartialMessage,
            )) => tracing::info!("{kind}: front end disconnected"),
            Err(e) => tracing::warn!("{kind}: connection ended: {e}"),
        }
        shutdown.set_active(None);
        device.end_connection();
        // Dropping the daemon fires the exit event and joins the workers.
        drop(daemon);
    }
    Ok(())
}
