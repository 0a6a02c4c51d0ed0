//! A backend served in the test process, and the front end that talks to
//! it: `vhost::vhost_user::Frontend` over a real unix socket, with guest
//! memory shared through a file like QEMU's memfd.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use dangle_backends::control;
use dangle_backends::daemon::{self, Shutdown};
use dangle_backends::device::{Device, Model};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

/// How long a test waits for the backend to react before failing.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A device served on a socket in a temporary directory, with its control
/// socket next to it; shut down and joined on drop.
pub struct Served {
    _dir: tempfile::TempDir,
    /// The vhost-user socket.
    pub sock: PathBuf,
    /// The control socket.
    pub ctl: PathBuf,
    shutdown: Arc<Shutdown>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(t) = self.thread.take() {
            t.join().expect("serve thread");
        }
    }
}

/// Serves `device` the way `dangle-backend` does.
pub fn serve<M: Model>(device: Arc<Device<M>>) -> Served {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sock = dir.path().join("dev.sock");
    let ctl = dir.path().join("dev.ctl");
    let listener = daemon::bind_socket(&sock).expect("vhost-user socket");
    let control = UnixListener::bind(&ctl).expect("control socket");
    control::spawn_server(control, device.clone()).expect("control server");
    let shutdown = Shutdown::new().expect("shutdown switch");
    let sd = shutdown.clone();
    let thread = thread::spawn(move || daemon::serve(&device, &listener, &sd).expect("serve"));
    Served {
        _dir: dir,
        sock,
        ctl,
        shutdown,
        thread: Some(thread),
    }
}

/// Connects and negotiates the way QEMU does: the guest acks every feature
/// offered and QEMU passes them through. Returns the features.
pub fn negotiate(path: &Path, queues: u64) -> (Frontend, u64) {
    let mut fe = Frontend::connect(path, queues).expect("connect");
    fe.set_owner().expect("SET_OWNER");
    let features = fe.get_features().expect("GET_FEATURES");
    fe.set_features(features).expect("SET_FEATURES");
    let proto = fe.get_protocol_features().expect("GET_PROTOCOL_FEATURES");
    fe.set_protocol_features(proto)
        .expect("SET_PROTOCOL_FEATURES");
    (fe, features)
}

/// Guest memory at guest address 0, shared with the backend through a file.
pub struct SharedMem {
    /// The memory, as the guest sees it.
    pub mem: GuestMemoryMmap,
    _file: std::fs::File,
    /// Its address in this process (the front end's address space).
    pub host: u64,
}

impl SharedMem {
    /// `size` bytes, announced to the backend with SET_MEM_TABLE.
    pub fn new(fe: &mut Frontend, size: usize) -> Self {
        let file = tempfile::tempfile().expect("memory file");
        file.set_len(size as u64).expect("memory size");
        let fd = FileOffset::new(file.try_clone().expect("memory file"), 0);
        let mem =
            GuestMemoryMmap::<()>::from_ranges_with_files(&[(GuestAddress(0), size, Some(fd))])
                .expect("guest memory");
        let host = mem.get_host_address(GuestAddress(0)).expect("mapped") as u64;
        let region = mem.find_region(GuestAddress(0)).expect("region");
        let region = VhostUserMemoryRegionInfo::from_guest_region(region).expect("region info");
        fe.set_mem_table(&[region]).expect("SET_MEM_TABLE");
        SharedMem {
            mem,
            _file: file,
            host,
        }
    }
}

/// Guest addresses of a split ring's three parts.
#[derive(Debug, Clone, Copy)]
pub struct Ring {
    /// Descriptor table.
    pub desc: u64,
    /// Available ring.
    pub avail: u64,
    /// Used ring.
    pub used: u64,
}

/// Sets up and enables vring `index` of `size` entries at `ring`; returns
/// its kick and call eventfds.
pub fn setup_vring(
    fe: &mut Frontend,
    sm: &SharedMem,
    index: usize,
    size: u16,
    ring: Ring,
) -> (EventFd, EventFd) {
    fe.set_vring_num(index, size).expect("SET_VRING_NUM");
    let config = VringConfigData {
        queue_max_size: size,
        queue_size: size,
        flags: 0,
        desc_table_addr: sm.host + ring.desc,
        used_ring_addr: sm.host + ring.used,
        avail_ring_addr: sm.host + ring.avail,
        log_addr: None,
    };
    fe.set_vring_addr(index, &config).expect("SET_VRING_ADDR");
    fe.set_vring_base(index, 0).expect("SET_VRING_BASE");
    let kick = EventFd::new(0).expect("kick eventfd");
    let call = EventFd::new(0).expect("call eventfd");
    fe.set_vring_call(index, &call).expect("SET_VRING_CALL");
    fe.set_vring_kick(index, &kick).expect("SET_VRING_KICK");
    fe.set_vring_enable(index, true).expect("SET_VRING_ENABLE");
    (kick, call)
}

/// Polls `cond` until it holds; fails the test after [`TIMEOUT`].
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}
