//! Newline-framed input with a length cap: the one line reader of every
//! JSON-lines channel in dangle (the agent protocol on both ends, the
//! backends' control socket and its client).
//!
//! A peer may send anything, so a reader must not buffer an unbounded line
//! nor stop serving because of one bad line. [`LineReader`] keeps at most
//! its limit in memory and turns every way a line can be unusable into a
//! [`LineError`]; the caller decides whether to answer, log or hang up.
//!
//! # Framing
//! - A line ends at `\n`, which is not part of the line. A `\r` before it
//!   is kept (JSON parsers skip it as whitespace).
//! - The limit counts the bytes of the line without its `\n`: a line of
//!   exactly `limit` bytes is accepted.
//! - Blank lines are returned like any other; callers skip them.
//!
//! # Errors and resynchronisation
//! - [`LineError::TooLong`] comes as soon as `limit + 1` bytes have been seen
//!   without a newline, so an endless line costs `limit` bytes of memory at
//!   most and still returns. The reader then **resyncs at the next
//!   newline**: the next call first discards the rest of that line, up to
//!   and including its `\n`, and reads the line after it. A caller that
//!   would rather drop the peer simply stops calling.
//! - [`LineError::NotUtf8`]: the whole line has been consumed; the next call
//!   reads the next line.
//! - [`LineError::Unterminated`]: the input ended inside a line (the peer
//!   went away mid-message). The partial line is dropped; the next call
//!   starts a new line (on a channel that reconnects, with the new data).
//! - [`LineError::Io`]: a read failed (other than `EINTR`, which is
//!   retried). Whatever part of a line was read is dropped.
//!
//! Every line, good or bad, counts in [`LineReader::line_number`].

use std::io::BufRead;

use crate::MAX_LINE_BYTES;

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// The line is longer than the reader's limit; the reader skips the
    /// rest of it on the next call.
    #[error("line {line} is longer than {limit} bytes")]
    TooLong {
        /// Its number (1-based).
        line: u64,
        /// The limit in force.
        limit: usize,
    },
    /// The line is not valid UTF-8.
    #[error("line {line} is not valid UTF-8")]
    NotUtf8 {
        /// Its number (1-based).
        line: u64,
        /// Where the decoding failed.
        #[source]
        source: std::str::Utf8Error,
    },
    /// The input ended before the line's newline.
    #[error("input ended inside line {line} after {len} bytes without a newline")]
    Unterminated {
        /// Its number (1-based).
        line: u64,
        /// Bytes received of it.
        len: usize,
    },
    /// Reading failed.
    #[error("cannot read from the channel")]
    Io(#[source] std::io::Error),
}

impl LineError {
    /// Whether the reader can go on after this error (every error but
    /// [`LineError::Io`]).
    pub fn is_recoverable(&self) -> bool {
        !matches!(self, LineError::Io(_))
    }
}

/// Reads newline-terminated lines of at most a given length from a
/// [`BufRead`]. See the module documentation for the framing rules.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    limit: usize,
    buf: Vec<u8>,
    /// The previous line was too long: discard up to its newline first.
    skipping: bool,
    line: u64,
}

impl<R: BufRead> LineReader<R> {
    /// A reader with the protocol's limit, [`MAX_LINE_BYTES`].
    pub fn new(inner: R) -> Self {
        Self::with_limit(inner, MAX_LINE_BYTES)
    }

    /// A reader that accepts lines of at most `limit` bytes (newline not
    /// counted).
    pub fn with_limit(inner: R, limit: usize) -> Self {
        Self {
            inner,
            limit,
            buf: Vec::new(),
            skipping: false,
            line: 0,
        }
    }

    /// The longest line accepted, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many lines (good or bad) have been read so far: the number of
    /// the line last returned or reported.
    pub fn line_number(&self) -> u64 {
        self.line
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The underlying reader, mutably (reading from it directly breaks the
    /// framing).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The next line without its `\n`, or `None` at the end of input.
    ///
    /// # Errors
    /// [`LineError`]; after any but [`LineError::Io`] the next call goes on
    /// with the following line.
    pub fn next_line(&mut self) -> Result<Option<&str>, LineError> {
        if self.skipping {
            self.skip_rest_of_line()?;
        }
        self.buf.clear();
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.clear();
                    return Err(LineError::Io(e));
                }
            };
            if avail.is_empty() {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                self.line += 1;
                let len = self.buf.len();
                self.buf.clear();
                return Err(LineError::Unterminated {
                    line: self.line,
                    len,
                });
            }
            let newline = avail.iter().position(|&b| b == b'\n');
            let content = newline.unwrap_or(avail.len());
            if self.buf.len() + content > self.limit {
                // Never hold more than the limit: drop what we have, and
                // the rest of the line now or on the next call.
                let consumed = newline.map_or(avail.len(), |i| i + 1);
                self.inner.consume(consumed);
                self.skipping = newline.is_none();
                self.buf.clear();
                self.line += 1;
                return Err(LineError::TooLong {
                    line: self.line,
                    limit: self.limit,
                });
            }
            self.buf.extend_from_slice(&avail[..content]);
            match newline {
                None => self.inner.consume(content),
                Some(_) => {
                    self.inner.consume(content + 1);
                    self.line += 1;
                    return match std::str::from_utf8(&self.buf) {
                        Ok(s) => Ok(Some(s)),
                        Err(source) => Err(LineError::NotUtf8 {
                            line: self.line,
                            source,
                        }),
                    };
                }
            }
        }
    }

    /// Discards input up to and including the next `\n` (or to the end).
    fn skip_rest_of_line(&mut self) -> Result<(), LineError> {
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LineError::Io(e)),
            };
            if avail.is_empty() {
                self.skipping = false;
                return Ok(());
            }
            match avail.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.inner.consume(i + 1);
                    self.skipping = false;
                    return Ok(());
                }
                None => {
                    let n = avail.len();
                    self.inner.consume(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufReader, Cursor, Read};

    use super::*;

    fn reader(bytes: &[u8], limit: usize) -> LineReader<Cursor<Vec<u8>>> {
        LineReader::with_limit(Cursor::new(bytes.to_vec()), limit)
    }

    fn next(r: &mut LineReader<impl BufRead>) -> Result<Option<String>, LineError> {
        r.next_line().map(|l| l.map(str::to_owned))
    }

    #[test]
    fn next_line_plain_lines_come_without_newline_and_are_counted() {
        let mut r = reader(b"one\n\ntwo\r\n", 16);
        assert_eq!(next(&mut r).unwrap().as_deref(), Some("one"));
        assert_eq!(next(&mut r).unwrap().as_deref(), Some(""));
        assert_eq!(next(&mut r).unwrap().as_deref(), Some("two\r"));
        assert_eq!(r.line_number(), 3);
        assert_eq!(next(&mut r).unwrap(), None);
        assert_eq!(next(&mut r).unwrap(), None);
    }

    #[test]
    fn next_line_exactly_at_the_limit_is_accepted() {
        let mut input = vec![b'x'; 8];
        input.push(b'\n');
        let mut r = reader(&input, 8);
        assert_eq!(next(&mut r).unwrap().as_deref(), Some("xxxxxxxx"));
    }

    #[test]
    fn next_line_one_past_the_limit_is_too_long_and_the_next_line_survives() {
        let mut input = vec![b'x'; 9];
        input.extend_from_slice(b"\nnext\n");
        let mut r = reader(&input, 8);
        assert!(matches!(
            next(&mut r),
            Err(LineError::TooLong { line: 1, limit: 8 })
        ));
        assert_eq!(next(&mut r).unwrap().as_deref(), Some("next"));
        assert_eq!(r.line_number(), 2);
    }

    #[test]
    fn next_line_long_line_across_reads_resyncs_at_its_newline() {
        // A tiny buffer makes the over-long line span many fill_buf calls,
        // so the reader errs before it has seen the newline.
        let mut input = vec![b'y'; 100];
        input.extend_from_slice(b"\nafter\n");
        let mut r = LineReader::with_limit(BufReader::with_capacity(4, Cursor::new(input)), 10);
        assert!(matches!(next(&mut r), Err(LineError::TooLong { .. })));
        assert_eq!(next(&mut r).unwrap().as_deref(), Some("after"));
        assert_eq!(next(&mut r).unwrap(), None);
    }

    #[test]
    fn next_line_endless_line_without_newline_errs_with_bounded_memory() {
        let endless = BufReader::with_capacity(64, std::io::repeat(b'z'));
        let mut r = LineReader::with_limit(endless, 1000);
        assert!(matches!(
            next(&mut r),
            Err(LineError::TooLong {
                line: 1,
                limit: 1000
            })
        ));
        assert!(r.buf.capacity() <= 2 * 1000, "{}", r.buf.capacity());
        // What comes after is still the same line: a caller that wants to
        // go on can bound it by the underlying reader (here: take()).
        let rest = std::io::repeat(b'z').take(5000).chain(&b"\nok\n"[..]);
        let mut r = LineReader::with_limit(BufReader::with_capacity(64, rest), 1000);
        assert!(matches!(next(&mut r), Err(LineError::TooLong { .. })));
        assert_eq!(next(&mut r).unwrap().as_deref(), Some("ok"));
    }

    #[test]
    fn next_line_invalid_utf8_is_an_error_and_the_next_line_survives() {
        let mut r = reader(b"ab\xff\xfecd\n{\"ok\":1}\n", 64);
        match next(&mut r) {
            Err(LineError::NotUtf8 { line: 1, source }) => {
                assert_eq!(source.valid_up_to(), 2);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(next(&mut r).unwrap().as_deref(), Some("{\"ok\":1}"));
    }

    #[test]
    fn next_line_eof_mid_line_is_unterminated_then_end() {
        let mut r = reader(b"whole\npart", 64);
        assert_eq!(next(&mut r).unwrap().as_deref(), Some("whole"));
        assert!(matches!(
            next(&mut r),
            Err(LineError::Unterminated { line: 2, len: 4 })
        ));
        assert_eq!(next(&mut r).unwrap(), None);
    }

    #[test]
    fn next_line_too_long_at_eof_ends_cleanly() {
        let mut r = reader(&[b'q'; 20], 8);
        assert!(matches!(next(&mut r), Err(LineError::TooLong { .. })));
        assert_eq!(next(&mut r).unwrap(), None);
    }

    #[test]
    fn next_line_read_error_is_io_and_not_recoverable() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("gone"))
            }
        }
        let mut r = LineReader::new(BufReader::new(Broken));
        let e = next(&mut r).unwrap_err();
        assert!(matches!(e, LineError::Io(_)));
        assert!(!e.is_recoverable());
        assert_eq!(r.limit(), MAX_LINE_BYTES);
    }
}
