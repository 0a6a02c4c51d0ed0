//! The consumer framework: one thread per workload, counters of its
//! syscalls, the watchdog that notices a syscall stuck past its deadline,
//! and stopping (flag + `SIGUSR1`, see the crate docs).
//!
//! Workloads wrap every syscall they make in [`Consumer::call`], which
//! records the call as in flight and counts its outcome. The watchdog
//! ([`Registry::tick`], run every [`WATCHDOG_TICK`]) reads that state; it
//! never touches the workload thread except to re-send the stop signal.

use dangle_proto::Deadline;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use dangle_proto::{ConsumerReport, ConsumerResult, Counters, Event, InFlight};
use nix::sys::pthread::{Pthread, pthread_kill, pthread_self};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use crate::op::OpError;

/// Period of the watchdog thread.
pub const WATCHDOG_TICK: Duration = Duration::from_millis(50);
/// Grace after a stop request before the stop signal, and how often it is
/// re-sent to a consumer that has not exited.
pub const RESIGNAL_PERIOD: Duration = Duration::from_millis(200);
/// Pause after a failed operation in a loop, so that a dead device (every
/// call failing at once with `ENODEV`) does not spin a CPU.
pub const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// The signal that interrupts a consumer's blocking syscall.
pub const STOP_SIGNAL: Signal = Signal::SIGUSR1;

/// Where consumers and the watchdog send their events.
pub type EventSink = Arc<dyn Fn(Event) + Send + Sync>;

/// How a workload ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// It did all it was asked to.
    Completed,
    /// It saw the stop flag.
    Stopped,
}

/// Why a consumer could not be started or found.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A live consumer already has this name.
    #[error("consumer {0:?} is already running")]
    AlreadyExists(String),
    /// No consumer has this name.
    #[error("no consumer named {0:?}")]
    NotFound(String),
    /// The thread could not be created.
    #[error("cannot start a thread for consumer {id:?}")]
    Spawn {
        /// The consumer.
        id: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

extern "C" fn on_stop_signal(_: libc::c_int) {}

/// Installs the no-op [`STOP_SIGNAL`] handler, without `SA_RESTART`, so a
/// blocking syscall in the signalled thread returns `EINTR`. Idempotent.
///
/// # Errors
/// If `sigaction` fails.
pub fn install_stop_signal_handler() -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_stop_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler does nothing at all, so it is async-signal-safe.
    unsafe { sigaction(STOP_SIGNAL, &action) }.map(|_| ())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug)]
struct Call {
    syscall: String,
    since: Instant,
    seq: u64,
}

#[derive(Debug)]
struct State {
    counters: Counters,
    in_flight: Option<Call>,
    next_seq: u64,
    stuck_reported: Option<u64>,
    result: Option<ConsumerResult>,
    thread: Option<Pthread>,
    last_progress: Instant,
    last_progress_counters: Counters,
    last_signal: Option<Instant>,
}

/// One running (or finished) consumer.
#[derive(Debug)]
pub struct Consumer {
    id: String,
    deadline: Duration,
    progress: Option<Duration>,
    stop: AtomicBool,
    state: Mutex<State>,
}

impl Consumer {
    /// A consumer that has not started yet.
    pub fn new(id: &str, deadline: Duration, progress: Option<Duration>) -> Arc<Self> {
        Arc::new(Self {
            id: id.to_owned(),
            deadline,
            progress,
            stop: AtomicBool::new(false),
            state: Mutex::new(State {
                counters: Counters::default(),
                in_flight: None,
                next_seq: 0,
                stuck_reported: None,
                result: None,
                thread: None,
                last_progress: Instant::now(),
                last_progress_counters: Counters::default(),
                last_signal: None,
            }),
        })
    }

    /// The consumer's name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs one syscall, marking it in flight for the watchdog and counting
    /// its outcome. An `EINTR` caused by a stop request is not counted.
    ///
    /// # Errors
    /// Whatever `f` returns.
    pub fn call<T>(
        &self,
        syscall: &str,
        f: impl FnOnce() -> Result<T, OpError>,
    ) -> Result<T, OpError> {
        {
            let mut st = lock(&self.state);
            let seq = st.next_seq;
            st.next_seq += 1;
            st.in_flight = Some(Call {
                syscall: syscall.to_owned(),
                since: Instant::now(),
                seq,
            });
        }
        let r = f();
        let mut st = lock(&self.state);
        st.in_flight = None;
        match &r {
            Ok(_) => st.counters.ops_ok += 1,
            Err(e) if e.is_eintr() && self.stop_requested() => {}
            Err(e) => {
                *st.counters.errors.entry(e.errno_name()).or_insert(0) += 1;
                st.counters.last_error = Some(e.to_string());
            }
        }
        r
    }

    /// True once a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sets the stop flag and interrupts the thread's syscall.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // No signal yet: a loop notices the flag between operations within
        // RESIGNAL_PERIOD, and the watchdog signals only one that has not
        // exited by then (blocked in a read). Interrupting an operation in
        // flight is itself a test of the kernel (an interrupted i2c-virtio
        // transfer frees requests the device still owns), which a plain
        // stop must not do behind the scenario's back.
        lock(&self.state).last_signal = Some(Instant::now());
    }

    /// Interrupts the thread's syscall in flight without asking it to stop.
    pub fn interrupt(&self) {
        let mut st = lock(&self.state);
        Self::signal_locked(&mut st);
    }

    fn signal_locked(st: &mut State) {
        if let Some(t) = st.thread {
            // The thread clears `thread` under this lock before it exits,
            // so `t` names a live thread here.
            if let Err(e) = pthread_kill(t, STOP_SIGNAL) {
                tracing::warn!("pthread_kill: {e}");
            }
            st.last_signal = Some(Instant::now());
        }
    }

    /// Sleeps up to `d`, in slices, returning early (false) once stopped.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = Deadline::after(d);
        loop {
            if self.stop_requested() {
                return false;
            }
            if end.expired() {
                return true;
            }
            std::thread::sleep(end.step(Duration::from_millis(20)));
        }
    }

    /// Snapshot for `ConsumerStatus`.
    pub fn report(&self, now: Instant) -> ConsumerReport {
        let st = lock(&self.state);
        ConsumerReport {
            id: self.id.clone(),
            counters: st.counters.clone(),
            in_flight: st.in_flight.as_ref().map(|c| InFlight {
                syscall: c.syscall.clone(),
                for_ms: millis(now.saturating_duration_since(c.since)),
            }),
            result: st.result.clone(),
        }
    }

    /// True once the workload has returned.
    pub fn exited(&self) -> bool {
        lock(&self.state).result.is_some()
    }

    /// The watchdog's look at this consumer: a `ConsumerStuck` the first
    /// time a call is seen past its deadline, a `ConsumerProgress` every
    /// progress period when the counters changed, and the stop signal
    /// again when the thread ignores it.
    pub fn check(&self, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        let mut st = lock(&self.state);
        if st.result.is_some() {
            return events;
        }
        if let Some(call) = &st.in_flight {
            let for_d = now.saturating_duration_since(call.since);
            if for_d >= self.deadline && st.stuck_reported != Some(call.seq) {
                events.push(Event::ConsumerStuck {
                    id: self.id.clone(),
                    syscall: call.syscall.clone(),
                    for_ms: millis(for_d),
                });
                st.stuck_reported = Some(call.seq);
            }
        }
        if let Some(p) = self.progress {
            if now.saturating_duration_since(st.last_progress) >= p {
                st.last_progress = now;
                if st.counters != st.last_progress_counters {
                    st.last_progress_counters = st.counters.clone();
                    events.push(Event::ConsumerProgress {
                        id: self.id.clone(),
                        counters: st.counters.clone(),
                    });
                }
            }
        }
        if self.stop_requested()
            && st
                .last_signal
                .is_none_or(|t| now.saturating_duration_since(t) >= RESIGNAL_PERIOD)
        {
            Self::signal_locked(&mut st);
        }
        events
    }

    /// Runs `work` on the current thread as this consumer's body and
    /// returns the exit event.
    fn run_body(&self, work: impl FnOnce(&Consumer) -> Result<Finish, OpError>) -> Event {
        lock(&self.state).thread = Some(pthread_self());
        let r = work(self);
        let mut st = lock(&self.state);
        st.thread = None;
        st.in_flight = None;
        let counters = st.counters.clone();
        let result = match r {
            Ok(Finish::Completed) => ConsumerResult::Completed { counters },
            Ok(Finish::Stopped) => ConsumerResult::Stopped { counters },
            Err(e) if e.is_eintr() && self.stop_requested() => ConsumerResult::Stopped { counters },
            Err(e) => ConsumerResult::Failed {
                error: e.to_string(),
                errno: e.errno,
                counters,
            },
        };
        st.result = Some(result.clone());
        Event::ConsumerExited {
            id: self.id.clone(),
            result,
        }
    }
}

/// Every consumer the agent started, by name.
pub struct Registry {
    consumers: Mutex<BTreeMap<String, Arc<Consumer>>>,
    sink: EventSink,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("consumers", &self.consumers)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry sending events to `sink`.
    pub fn new(sink: EventSink) -> Arc<Self> {
        Arc::new(Self {
            consumers: Mutex::new(BTreeMap::new()),
            sink,
        })
    }

    /// Starts `work` in a new thread as consumer `id`. A finished consumer
    /// of the same name is replaced.
    ///
    /// # Errors
    /// [`RegistryError::AlreadyExists`] if a live consumer has the name,
    /// [`RegistryError::Spawn`] if no thread could be made.
    pub fn start(
        &self,
        id: &str,
        deadline: Duration,
        progress: Option<Duration>,
        work: impl FnOnce(&Consumer) -> Result<Finish, OpError> + Send + 'static,
    ) -> Result<Arc<Consumer>, RegistryError> {
        let mut map = lock(&self.consumers);
        if map.get(id).is_some_and(|c| !c.exited()) {
            return Err(RegistryError::AlreadyExists(id.to_owned()));
        }
        let consumer = Consumer::new(id, deadline, progress);
        let c2 = Arc::clone(&consumer);
        let sink = Arc::clone(&self.sink);
        std::thread::Builder::new()
            .name(format!("consumer-{id}"))
            .spawn(move || {
                let ev = c2.run_body(work);
                sink(ev);
            })
            .map_err(|source| RegistryError::Spawn {
                id: id.to_owned(),
                source,
            })?;
        map.insert(id.to_owned(), Arc::clone(&consumer));
        Ok(consumer)
    }

    /// Asks consumer `id` to stop.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`].
    pub fn stop(&self, id: &str) -> Result<(), RegistryError> {
        let map = lock(&self.consumers);
        let c = map
            .get(id)
            .ok_or_else(|| RegistryError::NotFound(id.to_owned()))?;
        c.request_stop();
        Ok(())
    }

    /// Interrupts consumer `id`'s syscall in flight (see
    /// [`Consumer::interrupt`]).
    ///
    /// # Errors
    /// [`RegistryError::NotFound`].
    pub fn interrupt(&self, id: &str) -> Result<(), RegistryError> {
        let map = lock(&self.consumers);
        let c = map
            .get(id)
            .ok_or_else(|| RegistryError::NotFound(id.to_owned()))?;
        c.interrupt();
        Ok(())
    }

    /// Asks every consumer to stop.
    pub fn stop_all(&self) {
        for c in lock(&self.consumers).values() {
            c.request_stop();
        }
    }

    /// Waits up to `timeout` for every consumer to exit; true if they did.
    pub fn wait_all(&self, timeout: Duration) -> bool {
        let end = Deadline::after(timeout);
        loop {
            if lock(&self.consumers).values().all(|c| c.exited()) {
                return true;
            }
            if end.expired() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Reports of one consumer or all.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] for an unknown name.
    pub fn status(&self, id: Option<&str>) -> Result<Vec<ConsumerReport>, RegistryError> {
        let now = Instant::now();
        let map = lock(&self.consumers);
        match id {
            Some(id) => map
                .get(id)
                .map(|c| vec![c.report(now)])
                .ok_or_else(|| RegistryError::NotFound(id.to_owned())),
            None => Ok(map.values().map(|c| c.report(now)).collect()),
        }
    }

    /// One watchdog round: checks every consumer and sends the events.
    pub fn tick(&self, now: Instant) {
        let consumers: Vec<Arc<Consumer>> = lock(&self.consumers).values().cloned().collect();
        for c in consumers {
            for ev in c.check(now) {
                (self.sink)(ev);
            }
        }
    }

    /// Starts the watchdog thread, ticking every [`WATCHDOG_TICK`].
    ///
    /// # Errors
    /// If the thread cannot be created.
    pub fn spawn_watchdog(self: &Arc<Self>) -> std::io::Result<()> {
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("watchdog".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(WATCHDOG_TICK);
                    me.tick(Instant::now());
                }
            })
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::sync::mpsc;

    use super::*;

    fn collecting_sink() -> (EventSink, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let sink: EventSink = Arc::new(move |ev| {
            let _ = lock(&tx).send(ev);
        });
        (sink, rx)
    }

    fn wait_in_flight(c: &Consumer) {
        for _ in 0..500 {
            if c.report(Instant::now()).in_flight.is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("call never became in flight");
    }

    #[test]
    fn check_blocked_call_past_deadline_reports_stuck_once() {
        let (sink, rx) = collecting_sink();
        let reg = Registry::new(sink);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let c = reg
            .start("mock", Duration::from_millis(100), None, move |c| {
                c.call("read", || {
                    release_rx
                        .recv()
                        .map_err(|_| OpError::other("read", "channel closed"))
                })?;
                Ok(Finish::Completed)
            })
            .expect("start");
        wait_in_flight(&c);
        let t0 = Instant::now();
        // Before the deadline: nothing.
        assert!(c.check(t0).is_empty());
        // Past it: exactly one stuck event, whatever the number of checks.
        let later = t0 + Duration::from_millis(150);
        let evs = c.check(later);
        assert_eq!(evs.len(), 1, "{evs:?}");
        match &evs[0] {
            Event::ConsumerStuck {
                id,
                syscall,
                for_ms,
            } => {
                assert_eq!(id, "mock");
                assert_eq!(syscall, "read");
                assert!(*for_ms >= 100, "for_ms {for_ms}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(c.check(later + Duration::from_secs(5)).is_empty());
        release_tx.send(()).expect("release");
        match rx.recv_timeout(Duration::from_secs(5)).expect("exit event") {
            Event::ConsumerExited {
                result: ConsumerResult::Completed { counters },
                ..
            } => assert_eq!(counters.ops_ok, 1),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn check_second_stuck_call_reports_again() {
        let (sink, _rx) = collecting_sink();
        let reg = Registry::new(sink);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let c = reg
            .start("twice", Duration::from_millis(10), None, move |c| {
                for _ in 0..2 {
                    c.call("ioctl", || {
                        release_rx.recv().map_err(|_| OpError::other("x", "y"))
                    })?;
                }
                Ok(Finish::Completed)
            })
            .expect("start");
        let mut stuck = 0;
        for _ in 0..2 {
            wait_in_flight(&c);
            let far = Instant::now() + Duration::from_secs(1);
            stuck += c.check(far).len();
            stuck += c.check(far).len();
            release_tx.send(()).expect("release");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(stuck, 2);
    }

    #[test]
    fn stop_blocked_read_on_pipe_is_interrupted() {
        install_stop_signal_handler().expect("sigaction");
        let (sink, rx) = collecting_sink();
        let reg = Registry::new(sink);
        let (r, _w) = nix::unistd::pipe().expect("pipe");
        let c = reg
            .start("reader", Duration::from_secs(60), None, move |c| {
                loop {
                    let mut buf = [0u8; 8];
                    match c.call("read", || {
                        nix::unistd::read(r.as_fd(), &mut buf)
                            .map_err(|e| OpError::errno("read", e as i32, "pipe"))
                    }) {
                        Ok(_) => {}
                        Err(_) if c.stop_requested() => return Ok(Finish::Stopped),
                        Err(e) => return Err(e),
                    }
                }
            })
            .expect("start");
        wait_in_flight(&c);
        reg.stop("reader").expect("stop");
        // The watchdog re-signals in case the first signal came too early.
        let end = Instant::now() + Duration::from_secs(5);
        let ev = loop {
            reg.tick(Instant::now());
            if let Ok(ev) = rx.recv_timeout(Duration::from_millis(50)) {
                break ev;
            }
            assert!(Instant::now() < end, "reader never stopped");
        };
        match ev {
            Event::ConsumerExited {
                id,
                result: ConsumerResult::Stopped { counters },
            } => {
                assert_eq!(id, "reader");
                assert_eq!(counters.total_errors(), 0, "EINTR must not count");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn interrupt_blocked_read_counts_eintr_and_keeps_going() {
        install_stop_signal_handler().expect("sigaction");
        let (sink, rx) = collecting_sink();
        let reg = Registry::new(sink);
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let c = reg
            .start("intr", Duration::from_secs(60), None, move |c| {
                let mut buf = [0u8; 1];
                // Two reads: the first is interrupted, the second gets a byte.
                for _ in 0..2 {
                    let _ = c.call("read", || {
                        nix::unistd::read(r.as_fd(), &mut buf)
                            .map_err(|e| OpError::errno("read", e as i32, "pipe"))
                    });
                }
                Ok(Finish::Completed)
            })
            .expect("start");
        wait_in_flight(&c);
        // Re-interrupt until the EINTR is counted (the first signal may
        // land before read() starts).
        let end = Instant::now() + Duration::from_secs(5);
        while !c
            .report(Instant::now())
            .counters
            .errors
            .contains_key("EINTR")
        {
            reg.interrupt("intr").expect("interrupt");
            std::thread::sleep(Duration::from_millis(20));
            assert!(Instant::now() < end, "read never interrupted");
        }
        wait_in_flight(&c);
        nix::unistd::write(&w, b"x").expect("write");
        match rx.recv_timeout(Duration::from_secs(5)).expect("exit") {
            Event::ConsumerExited {
                result: ConsumerResult::Completed { counters },
                ..
            } => {
                assert_eq!(counters.ops_ok, 1);
                assert_eq!(counters.errors.get("EINTR"), Some(&1));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn call_errors_are_counted_by_errno_name() {
        let c = Consumer::new("e", Duration::from_secs(1), Some(Duration::ZERO));
        let _ = c.call("read", || {
            Err::<(), _>(OpError::errno("read", libc::ENODEV, "x"))
        });
        let _ = c.call("read", || {
            Err::<(), _>(OpError::errno("read", libc::ENODEV, "x"))
        });
        let _ = c.call("write", || Ok(()));
        let rep = c.report(Instant::now());
        assert_eq!(rep.counters.ops_ok, 1);
        assert_eq!(rep.counters.errors.get("ENODEV"), Some(&2));
        // Progress is sent when counters changed, and only then.
        let evs = c.check(Instant::now());
        assert!(
            matches!(evs.as_slice(), [Event::ConsumerProgress { .. }]),
            "{evs:?}"
        );
        assert!(c.check(Instant::now()).is_empty());
    }

    #[test]
    fn start_duplicate_live_name_is_refused() {
        let (sink, _rx) = collecting_sink();
        let reg = Registry::new(sink);
        let (tx, rx) = mpsc::channel::<()>();
        reg.start("dup", Duration::from_secs(1), None, move |_| {
            let _ = rx.recv();
            Ok(Finish::Completed)
        })
        .expect("first");
        let second = reg.start("dup", Duration::from_secs(1), None, |_| {
            Ok(Finish::Completed)
        });
        assert!(matches!(second, Err(RegistryError::AlreadyExists(_))));
        drop(tx);
        assert!(reg.wait_all(Duration::from_secs(5)));
        reg.start("dup", Duration::from_secs(1), None, |_| {
            Ok(Finish::Completed)
        })
        .expect("a finished consumer's name is free again");
        assert!(matches!(reg.stop("nope"), Err(RegistryError::NotFound(_))));
    }
}
