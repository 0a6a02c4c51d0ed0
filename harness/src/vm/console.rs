//! The kernel console, as QEMU writes it to disk.
//!
//! QEMU itself writes ttyS0 to `console.log`, so every byte is on disk
//! before anything parses it, even if the harness dies. A [`ConsoleLog`]
//! follows that file from a background thread, keeps the bytes in memory
//! for waiters, and hands each new chunk to an optional sink (the streaming
//! crash parser).

use dangle_proto::Deadline;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the console file is polled for growth.
pub const CONSOLE_POLL: Duration = Duration::from_millis(50);

/// A callback that receives console bytes as they arrive.
pub type ConsoleSink = Box<dyn FnMut(&[u8]) + Send>;

#[derive(Default)]
struct Shared {
    bytes: Mutex<Vec<u8>>,
    grew: Condvar,
    stop: AtomicBool,
}

/// A followed console file.
pub struct ConsoleLog {
    path: PathBuf,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ConsoleLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleLog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ConsoleLog {
    /// Starts following `path` (which may not exist yet).
    pub fn follow(path: &Path, mut sink: Option<ConsoleSink>) -> Self {
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let p = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("console".into())
            .spawn(move || {
                let mut file: Option<File> = None;
                let mut offset = 0u64;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let stopping = s.stop.load(Ordering::Acquire);
                    if file.is_none() {
                        file = File::open(&p).ok();
                    }
                    if let Some(f) = file.as_mut() {
                        loop {
                            let n = f
                                .seek(SeekFrom::Start(offset))
                                .and_then(|_| f.read(&mut buf))
                                .unwrap_or(0);
                            if n == 0 {
                                break;
                            }
                            offset += n as u64;
                            if let Some(sink) = sink.as_mut() {
                                sink(&buf[..n]);
                            }
                            if let Ok(mut b) = s.bytes.lock() {
                                b.extend_from_slice(&buf[..n]);
                            }
                            s.grew.notify_all();
                        }
                    }
                    // A last read happened after the stop flag was seen.
                    if stopping {
                        break;
                    }
                    std::thread::sleep(CONSOLE_POLL);
                }
            })
            .ok();
        Self {
            path: path.to_owned(),
            shared,
            thread,
        }
    }

    /// The console file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A copy of everything read so far.
    pub fn contents(&self) -> Vec<u8> {
        self.shared
            .bytes
            .lock()
            .map(|b| b.clone())
            .unwrap_or_default()
    }

    /// Bytes read so far.
    pub fn len(&self) -> usize {
        self.shared.bytes.lock().map(|b| b.len()).unwrap_or(0)
    }

    /// Whether nothing has been read yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until `needle` appears at or after byte `from`; returns the
    /// offset just past it, or `None` on timeout.
    pub fn wait_for(&self, needle: &str, from: usize, timeout: Duration) -> Option<usize> {
        let deadline = Deadline::after(timeout);
        let needle = needle.as_bytes();
        let mut guard = self.shared.bytes.lock().ok()?;
        loop {
            if guard.len() > from {
                if let Some(pos) = memchr::memmem::find(&guard[from..], needle) {
                    return Some(from + pos + needle.len());
                }
            }
            if deadline.expired() {
                return None;
            }
            guard = match deadline.remaining() {
                Some(left) => self.shared.grew.wait_timeout(guard, left).ok()?.0,
                None => self.shared.grew.wait(guard).ok()?,
            };
        }
    }

    /// The last `n` lines read so far, lossily decoded, for post-mortems.
    pub fn tail(&self, n: usize) -> String {
        tail_lines(&self.contents(), n)
    }

    /// Stops following after one last read; returns all bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.stop_thread();
        self.contents()
    }

    fn stop_thread(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ConsoleLog {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// The last `n` lines of `bytes`, lossily decoded.
pub fn tail_lines(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn console_log_follows_growth_and_feeds_sink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = Arc::clone(&seen);
        let log = ConsoleLog::follow(
            &path,
            Some(Box::new(move |b: &[u8]| {
                seen2.lock().unwrap().extend_from_slice(b)
            })),
        );
        let mut f = File::create(&path).unwrap();
        f.write_all(b"[    0.1] Linux version 6.12\n").unwrap();
        assert!(
            log.wait_for("Linux version", 0, Duration::from_secs(5))
                .is_some()
        );
        f.write_all(b"[    1.0] \xff\xfe binary junk\n[    1.1] Run /init as init process\n")
            .unwrap();
        let end = log
            .wait_for("Run /init", 0, Duration::from_secs(5))
            .unwrap();
        assert!(
            log.wait_for("Run /init", end, Duration::from_millis(100))
                .is_none()
        );
        let all = log.finish();
        assert_eq!(&all, &*seen.lock().unwrap());
        assert!(all.starts_with(b"[    0.1] Linux"));
    }

    #[test]
    fn tail_lines_keeps_last_n() {
        assert_eq!(tail_lines(b"a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines(b"", 2), "");
    }
}
