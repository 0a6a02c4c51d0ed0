//! Logging to `/dev/kmsg`, so the agent's messages land in the kernel log
//! (and on the console) interleaved with what the kernel prints.
//!
//! A `tracing` subscriber formats each event into one line; [`KmsgWriter`]
//! writes it as one kmsg record with the `<level>dangle-agent: ` prefix.
//! Before `/dev/kmsg` exists (devtmpfs not mounted yet) lines go to stderr,
//! which is the console for PID 1.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

/// Priority prefix of the records: KERN_INFO.
pub const KMSG_PRIORITY: &str = "<6>";

/// A `MakeWriter` for tracing-subscriber writing to `/dev/kmsg` once open.
#[derive(Debug, Clone, Default)]
pub struct KmsgWriter {
    file: Arc<Mutex<Option<File>>>,
}

impl KmsgWriter {
    /// Opens `/dev/kmsg` (call again after mounting devtmpfs).
    ///
    /// # Errors
    /// If it cannot be opened; stderr keeps being used.
    pub fn open(&self) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open("/dev/kmsg")?;
        *self.file.lock().unwrap_or_else(PoisonError::into_inner) = Some(f);
        Ok(())
    }
}

/// One formatted event being written.
#[derive(Debug)]
pub struct KmsgLine {
    file: Arc<Mutex<Option<File>>>,
}

impl Write for KmsgLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut g = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        match g.as_mut() {
            Some(f) => {
                let text = String::from_utf8_lossy(buf);
                let record = format!("{KMSG_PRIORITY}dangle-agent: {}", text.trim_end());
                // kmsg refuses records over ~1 KiB with EINVAL: cut them.
                let cut = record
                    .char_indices()
                    .nth(900)
                    .map_or(record.len(), |(i, _)| i);
                let _ = f.write(&record.as_bytes()[..cut]);
                Ok(buf.len())
            }
            None => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for KmsgWriter {
    type Writer = KmsgLine;

    fn make_writer(&'a self) -> Self::Writer {
        KmsgLine {
            file: Arc::clone(&self.file),
        }
    }
}

/// Installs the global subscriber writing to `writer`.
pub fn init(writer: KmsgWriter) {
    let _ = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_max_level(tracing::Level::INFO)
        .try_init();
}
