//! [`Stream`]: split a growing console into reports as bytes arrive.
//!
//! A report opens at a line that holds an oops header and closes at the
//! first of:
//! - its end marker (`---[ end trace`, `---[ end Kernel panic`, or the
//!   `=====` rule that closes KASAN/KFENCE/UBSAN reports), from the same
//!   printk caller;
//! - the next report header from the same caller (or from anyone, when the
//!   console carries no caller ids), or an informational message that dumps
//!   a stack of its own;
//! - [`MAX_REPORT_BYTES`] of console since it opened;
//! - [`Stream::finish`].
//!
//! The panic that follows a report (`Kernel panic - not syncing: Fatal
//! exception`, `panic_on_warn set`, ...) is part of that report, not a new
//! one, when it comes within [`PANIC_TAIL_LINES`] lines of it.

use std::collections::VecDeque;

use super::Report;
use super::extract::{self, Ctx};
use super::rules::contains;

/// A report still open after this much console is closed anyway, so a
/// console that never ends a report cannot grow memory without bound.
pub const MAX_REPORT_BYTES: usize = 4 << 20;

/// Lines after a closed report within which a panic line is that report's
/// consequence rather than a report of its own.
pub const PANIC_TAIL_LINES: usize = 100;

/// Console lines kept before a report header, for context lines.
const LOOKBACK_LINES: usize = 100;

#[derive(Debug)]
struct Open {
    /// Stream offset of the header line.
    start: u64,
    /// Stream offset from which earlier context is kept.
    lookback: u64,
    ctx: Ctx,
    /// A stack trace started (same caller) since the header.
    has_stack: bool,
}

/// Incremental console parser.
///
/// Feed console bytes with [`push`](Self::push) as they arrive; each call
/// returns the reports that became complete. Call
/// [`finish`](Self::finish) when the console ends (VM exit) or to force out
/// what is pending (a quiet console). Offsets in reports count bytes from
/// the first byte ever pushed. Memory stays bounded by the open reports
/// plus the last 100 console lines.
#[derive(Debug, Default)]
pub struct Stream {
    /// Console bytes from stream offset `base` on.
    buf: Vec<u8>,
    base: u64,
    /// Stream offset of the first byte not yet split into lines.
    scanned: u64,
    open: Vec<Open>,
    /// Stream offsets of the starts of the latest lines.
    recent: VecDeque<u64>,
    /// Lines since the last report closed (`None`: none closed yet).
    since_close: Option<usize>,
}

impl Stream {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends console bytes; returns the reports completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Report> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let from = self.idx(self.scanned);
            let Some(nl) = memchr::memchr(b'\n', &self.buf[from..]) else {
                break;
            };
            let line = &self.buf[from..from + nl];
            let next = &self.buf[from + nl + 1..];
            if extract::match_oops(line).is_some() && memchr::memchr(b'\n', next).is_none() {
                // Wait for the next line: it may say this one is a replay.
                break;
            }
            let line_start = self.scanned;
            let line_end = line_start + nl as u64;
            self.scanned = line_end + 1;
            self.line(line_start, line_end, &mut out);
        }
        self.compact();
        out
    }

    /// Whether a report has started and not ended yet: a caller that sees
    /// the console go quiet while this holds (a wedged guest after a hung
    /// task, say) can call [`finish`](Self::finish) to get it.
    pub fn has_open(&self) -> bool {
        !self.open.is_empty()
    }

    /// Ends the stream: the last partial line counts as a line and every
    /// open report is closed. The stream can be reused afterwards; offsets
    /// keep counting.
    pub fn finish(&mut self) -> Vec<Report> {
        let mut out = Vec::new();
        let end = self.base + self.buf.len() as u64;
        while self.scanned < end {
            let start = self.scanned;
            let from = self.idx(start);
            let line_end =
                memchr::memchr(b'\n', &self.buf[from..]).map_or(end, |nl| start + nl as u64);
            self.scanned = (line_end + 1).min(end);
            self.line(start, line_end, &mut out);
        }
        let open = std::mem::take(&mut self.open);
        for o in open {
            self.emit(&o, end, &mut out);
        }
        self.since_close = None;
        self.compact();
        out
    }

    fn idx(&self, off: u64) -> usize {
        usize::try_from(off - self.base).unwrap_or(usize::MAX)
    }

    fn line(&mut self, start: u64, end: u64, out: &mut Vec<Report>) {
        let (s, e) = (self.idx(start), self.idx(end));
        let line = &self.buf[s..e];
        let ctx = Ctx::of(line);
        let is_oops = extract::match_oops(line).is_some() && !is_replayed(&self.buf[e..]);
        if let Some(n) = self.since_close.as_mut() {
            *n += 1;
        }

        if is_oops {
            let continues = (extract::is_start_ignored(line)
                && (self.open.iter().any(|o| !o.ctx.independent_of(&ctx))
                    || self.since_close.is_some_and(|n| n <= PANIC_TAIL_LINES)))
                // A caller's report cut before its stack by another oops of
                // the same caller: that oops's stack is this report's.
                || (ctx.is_caller()
                    && self.open.iter().any(|o| o.ctx == ctx && !o.has_stack));
            if !continues {
                self.close_where(|o| !o.ctx.independent_of(&ctx), start, out);
                let lookback = self.recent.front().copied().unwrap_or(start);
                self.open.push(Open {
                    start,
                    lookback,
                    ctx: ctx.clone(),
                    has_stack: false,
                });
            }
        } else if extract::is_info_with_stack(line) {
            self.close_where(|o| !o.ctx.independent_of(&ctx), start, out);
        } else if self.open.iter().any(|o| !o.has_stack && o.ctx == ctx)
            && extract::is_stack_start(line)
        {
            for o in self.open.iter_mut().filter(|o| o.ctx == ctx) {
                o.has_stack = true;
            }
        } else if is_end_marker(line, &ctx) {
            let next = (end + 1).min(self.base + self.buf.len() as u64);
            self.close_where(|o| o.ctx == ctx, next, out);
        }
        let limit = start.saturating_sub(MAX_REPORT_BYTES as u64);
        self.close_where(|o| o.start < limit, start, out);

        self.recent.push_back(start);
        if self.recent.len() > LOOKBACK_LINES {
            self.recent.pop_front();
        }
    }

    fn close_where(&mut self, pred: impl Fn(&Open) -> bool, end: u64, out: &mut Vec<Report>) {
        let mut i = 0;
        while i < self.open.len() {
            if pred(&self.open[i]) {
                let o = self.open.remove(i);
                self.emit(&o, end, out);
            } else {
                i += 1;
            }
        }
    }

    fn emit(&mut self, o: &Open, end: u64, out: &mut Vec<Report>) {
        self.since_close = Some(0);
        let lb = self.idx(o.lookback.max(self.base));
        let (s, e) = (self.idx(o.start), self.idx(end));
        if let Some(r) =
            extract::analyze(&self.buf[lb..e], s - lb, e - lb, o.start - (s - lb) as u64)
        {
            out.push(r);
        }
    }

    /// Drops bytes no open report and no lookback needs.
    fn compact(&mut self) {
        let mut keep = self.recent.front().copied().unwrap_or(self.scanned);
        for o in &self.open {
            keep = keep.min(o.lookback);
        }
        keep = keep.min(self.scanned);
        if keep > self.base {
            let n = self.idx(keep);
            self.buf.drain(..n);
            self.base = keep;
        }
    }
}

/// Whether the text after a line says that line was a replayed printk
/// fragment (`** replaying previous printk message **`).
fn is_replayed(after: &[u8]) -> bool {
    let Some(next) = after.strip_prefix(b"\n") else {
        return false;
    };
    let eol = memchr::memchr(b'\n', next).unwrap_or(next.len());
    contains!(&next[..eol], b"** replaying previous printk message **")
}

/// A line that closes the report in progress.
fn is_end_marker(line: &[u8], ctx: &Ctx) -> bool {
    let body = if *ctx == Ctx::None {
        line
    } else {
        extract::after_prefix(line)
    };
    let body = body.trim_ascii_end();
    if body.len() >= 20 && body.iter().all(|&b| b == b'=') {
        return true;
    }
    contains!(body, b"---[ end trace") || contains!(body, b"---[ end Kernel panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &[u8] = b"[    1.0] boot\n\
[    2.0] ==================================================================\n\
[    2.0] BUG: KASAN: slab-use-after-free in foo_read+0x10/0x20\n\
[    2.0] Read of size 4 at addr ffff888000000000 by task a/1\n\
[    2.0] Call Trace:\n\
[    2.0]  <TASK>\n\
[    2.0]  dump_stack_lvl+0x1/0x2\n\
[    2.0]  kasan_report+0x1/0x2\n\
[    2.0]  foo_read+0x10/0x20\n\
[    2.0]  vfs_read+0x1/0x2\n\
[    2.0]  </TASK>\n\
[    2.0] ==================================================================\n\
[    3.0] after\n";

    #[test]
    fn stream_byte_by_byte_matches_one_shot() {
        let one_shot = crate::report::parse(LOG);
        let mut s = Stream::new();
        let mut got = Vec::new();
        for b in LOG {
            got.extend(s.push(std::slice::from_ref(b)));
        }
        assert_eq!(got.len(), 1, "the closing rule completes the report");
        got.extend(s.finish());
        assert_eq!(got.len(), 1);
        assert_eq!(one_shot.len(), 1);
        assert_eq!(got[0].title, one_shot[0].title);
        assert_eq!(got[0].start, one_shot[0].start);
        assert_eq!(got[0].end, one_shot[0].end);
        assert_eq!(got[0].title, "KASAN: slab-use-after-free Read in foo_read");
        let start = got[0].start as usize;
        assert!(LOG[start..].starts_with(b"[    2.0] BUG: KASAN"));
        assert!(LOG[..got[0].end as usize].ends_with(b"=====\n"));
    }

    #[test]
    fn stream_open_report_waits_for_finish() {
        let mut s = Stream::new();
        let head = b"[    5.0] INFO: task kworker/u8:1:25 blocked for more than 20 seconds.\n\
[    5.0] Call Trace:\n[    5.0]  schedule+0x1/0x2\n[    5.0]  i2c_del_adapter+0x1/0x2\n";
        assert!(s.push(head).is_empty());
        assert!(s.has_open());
        let r = s.finish();
        assert!(!s.has_open());
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].title, "INFO: task hung in i2c_del_adapter");
    }
}
