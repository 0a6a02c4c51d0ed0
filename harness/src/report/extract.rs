//! Turning one report's slice of console into a [`Report`]: collecting its
//! lines (same printk caller only), finding the format that describes it,
//! walking its stack for the guilty frame, judging corruption.

use memchr::memmem;
use regex::bytes::{Captures, Regex};

use super::rules::{Format, Group, Part, Pick, RULES, StackSpec, contains};
use super::{Frame, Report, title};

/// Where a console line came from, per its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ctx {
    /// No timestamp: raw output.
    None,
    /// A timestamp but no printk caller id.
    Console,
    /// `[  T123]` (task) or `[  C1]` (CPU) caller id.
    Caller(Vec<u8>),
}

impl Ctx {
    pub(crate) fn of(line: &[u8]) -> Ctx {
        if let Some(ctx) = Self::of_plain(line) {
            return ctx;
        }
        match RULES.console_prefix.captures(line) {
            None => Ctx::None,
            Some(c) => match c.get(1) {
                None => Ctx::Console,
                Some(m) => Ctx::Caller(m.as_bytes().to_vec()),
            },
        }
    }

    /// Fast path for the common `[ 12.345678][  T123] ` / `[ 12.345678] `
    /// prefixes; `None` sends the line to the full regex.
    fn of_plain(line: &[u8]) -> Option<Ctx> {
        let rest = line.strip_prefix(b"[")?;
        let close = memchr::memchr(b']', rest)?;
        let stamp = rest[..close].trim_ascii_start();
        let dot = memchr::memchr(b'.', stamp)?;
        let digits = |d: &[u8]| !d.is_empty() && d.iter().all(u8::is_ascii_digit);
        if !digits(&stamp[..dot]) || !digits(&stamp[dot + 1..]) {
            return None;
        }
        let after = &rest[close + 1..];
        if after.first() == Some(&b' ') {
            return Some(Ctx::Console);
        }
        let caller = after.strip_prefix(b"[")?;
        let end = memchr::memchr(b']', caller)?;
        let id = caller[..end].trim_ascii_start();
        let (kind, num) = id.split_first()?;
        if !matches!(kind, b'C' | b'T') || !digits(num) || caller.get(end + 1) != Some(&b' ') {
            return None;
        }
        Some(Ctx::Caller(after[..end + 2].to_vec()))
    }

    fn is_task(&self) -> bool {
        matches!(self, Ctx::Caller(c) if RULES.task_context.is_match(c))
    }

    fn is_cpu(&self) -> bool {
        matches!(self, Ctx::Caller(c) if RULES.cpu_context.is_match(c))
    }

    /// Whether a report in `self` can run alongside one in `other`: reports
    /// of two different printk callers can, and so can a caller's report
    /// and unprefixed output (user space writing to the console).
    pub(crate) fn independent_of(&self, other: &Ctx) -> bool {
        match (self, other) {
            (Ctx::Caller(a), Ctx::Caller(b)) => a != b,
            (Ctx::Caller(_), Ctx::None) | (Ctx::None, Ctx::Caller(_)) => true,
            _ => false,
        }
    }

    pub(crate) fn is_caller(&self) -> bool {
        matches!(self, Ctx::Caller(_))
    }
}

/// The group whose header this line holds, unless the line is suppressed.
pub(crate) fn match_oops(line: &[u8]) -> Option<&'static Group> {
    // One multi-pattern scan rejects the vast majority of lines.
    if !RULES.any_header.is_match(line) {
        return None;
    }
    RULES
        .groups
        .iter()
        .find(|g| g.finder.find(line).is_some() && !g.suppress.iter().any(|r| r.is_match(line)))
}

/// Oops lines that belong to the report in progress.
pub(crate) fn is_start_ignored(line: &[u8]) -> bool {
    RULES.start_ignores.iter().any(|r| r.is_match(line))
}

/// A line that starts a stack trace (`Call Trace:`, `Freed by task`, ...).
pub(crate) fn is_stack_start(line: &[u8]) -> bool {
    matches_any(line, &RULES.stack_start)
}

/// Informational messages with a stack trace of their own.
pub(crate) fn is_info_with_stack(line: &[u8]) -> bool {
    RULES.info_with_stack.iter().any(|f| f.find(line).is_some())
}

/// Drops the console prefix; a questionable (`?`) frame keeps only the
/// frame and is flagged.
fn strip_prefix<'a>(line: &'a [u8], ctx: &Ctx) -> (&'a [u8], bool) {
    if *ctx == Ctx::None {
        return (line, false);
    }
    let rest = after_prefix(line);
    if !contains!(rest, b"<EOI>") {
        if RULES.questionable.is_match(rest)
            && let Some(p) = memmem::find(rest, b" ? ")
        {
            return (&rest[p + 2..], true);
        }
        if let Some(r) = rest.strip_suffix(b" (unreliable)") {
            return (r, true);
        }
    }
    (rest, false)
}

/// The text after the first `"] "` (the console prefix), or all of it.
pub(crate) fn after_prefix(line: &[u8]) -> &[u8] {
    let mut from = 0;
    while let Some(p) = memchr::memchr(b']', &line[from..]) {
        let at = from + p;
        if line.get(at + 1) == Some(&b' ') {
            return &line[at + 2..];
        }
        from = at + 1;
    }
    line
}

fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&b| b == b'\n')
}

/// Lines of the report before which a panic or a lockdep splat caused by
/// reporting is cut off as noise.
fn min_lines_before_cut(oops_line: &[u8]) -> usize {
    if contains!(oops_line, b"BUG: KMSAN:") {
        16
    } else {
        22
    }
}

/// Analyses the report that starts at `buf[start..]` and ends at `end`;
/// `buf[..start]` is earlier console output, searched for context lines.
/// `base` is the stream offset of `buf[0]`.
pub(crate) fn analyze(buf: &[u8], start: usize, end: usize, base: u64) -> Option<Report> {
    let window = &buf[start..end];
    let oops_line = lines(window).next().unwrap_or_default();
    let group = match_oops(oops_line)?;
    let ctx = Ctx::of(oops_line);

    // Context lines printed just before the header by the same caller.
    let max_prefix = if ctx.is_task() { 50 } else { 5 };
    let mut prefix: Vec<&[u8]> = Vec::new();
    for l in lines(&buf[..start]) {
        let (stripped, questionable) = strip_prefix(l, &Ctx::of(l));
        if Ctx::of(l) == ctx && !stripped.is_empty() && !questionable {
            prefix.push(stripped);
            if prefix.len() > max_prefix {
                prefix.remove(0);
            }
        }
    }
    if start > 0 && buf.get(start - 1) != Some(&b'\n') {
        // Not at a line boundary: the earlier bytes are not whole lines.
        prefix.clear();
    }

    let mut report = Vec::with_capacity(window.len());
    let mut report_end = 0;
    let mut second_report = false;
    let mut text_lines = 0;
    let mut skip_rest = false;
    let mut cpu_traceback = false;
    // A final newline ends the last line; it does not start another.
    let body = window.strip_suffix(b"\n").unwrap_or(window);
    for (i, l) in lines(body).enumerate() {
        let is_oops_line = i == 0;
        let lctx = Ctx::of(l);
        let (stripped, questionable) = strip_prefix(l, &lctx);
        if !is_oops_line
            && !second_report
            && ((match_oops(l).is_some() && !is_start_ignored(l)) || is_info_with_stack(l))
        {
            second_report = true;
        }
        if !is_oops_line && (questionable || (lctx != ctx && !(cpu_traceback && lctx.is_cpu()))) {
            continue;
        }
        text_lines += 1;
        let mut skip_line = skip_rest;
        if contains!(l, b"Disabling lock debugging due to kernel taint") {
            skip_line = true;
        } else if contains!(l, b"Sending NMI from CPU") {
            // All-CPU backtraces come from other callers but belong here.
            cpu_traceback = true;
        } else if (contains!(l, b"Kernel panic - not syncing")
            || contains!(l, b"WARNING: possible circular locking dependency detected"))
            && text_lines > min_lines_before_cut(oops_line)
        {
            // panic_on_warn's panic repeats the stack, and reporting itself
            // takes locks lockdep complains about: keep the first report.
            skip_rest = true;
            skip_line = true;
        }
        if !is_oops_line && skip_line {
            continue;
        }
        report.extend_from_slice(stripped);
        report.push(b'\n');
        if !second_report || matches!(ctx, Ctx::Caller(_)) {
            report_end = report.len();
        }
    }

    let mut desc = describe(&report[..report_end], group);
    let mut text: &[u8] = &report;
    if desc.title.is_empty() {
        desc = describe(window, group);
        text = window;
    }
    let mut corrupted = desc.corrupted;
    if corrupted.is_none() {
        corrupted = judge_corruption(&desc.title, text, desc.format);
    }
    if contains!(window, b"serialport: VM disconnected.") {
        corrupted.get_or_insert("console connection lost");
    }
    let title = title::normalize(&desc.title);
    let mut alt_titles: Vec<String> = desc.alts.iter().map(|a| title::normalize(a)).collect();
    alt_titles.sort();
    alt_titles.dedup();
    alt_titles.retain(|a| *a != title);
    let frame = RULES_FRAME
        .captures(title.as_bytes())
        .and_then(|c| c.get(1))
        .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
        .unwrap_or_default();

    let mut full = Vec::new();
    for p in &prefix {
        full.extend_from_slice(p);
        full.push(b'\n');
    }
    let prefix_len = full.len();
    full.extend_from_slice(text);
    let frames = parse_frames(&full[prefix_len..]);
    Some(Report {
        kind: title::title_type(&title).to_owned(),
        title,
        alt_titles,
        frame,
        corrupted: corrupted.is_some(),
        corrupted_reason: corrupted.map(str::to_owned),
        start: base + start as u64,
        end: base + end as u64,
        report: full,
        frames,
    })
}

static RULES_FRAME: std::sync::LazyLock<Regex> =
    std::sync::LazyLock::new(|| super::rules::re(r".* in ((?:<[a-zA-Z0-9_: ]+>)?[a-zA-Z0-9_:]+)"));

/// Every `func+0xOFF/0xLEN [module]` line of a report, in order.
pub(crate) fn parse_frames(text: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    for l in lines(text) {
        let Some(c) = RULES.backtrace_line.captures(l) else {
            continue;
        };
        let hex = |i: usize| {
            c.get(i)
                .and_then(|m| std::str::from_utf8(m.as_bytes()).ok())
                .and_then(|s| u64::from_str_radix(s, 16).ok())
        };
        let (Some(offset), Some(size)) = (hex(2), hex(3)) else {
            continue;
        };
        out.push(Frame {
            function: String::from_utf8_lossy(&c[1]).into_owned(),
            offset,
            size,
            module: c
                .get(5)
                .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned()),
            file: None,
            line: None,
            inlined: false,
            exact_pc: RULES.rip_frame.is_match(l),
        });
    }
    out
}

/// What a format made of a report.
#[derive(Debug, Default)]
struct Description {
    /// Raw (not yet normalised) title; empty when nothing matched.
    title: Vec<u8>,
    alts: Vec<Vec<u8>>,
    corrupted: Option<&'static str>,
    format: Option<&'static Format>,
}

const NO_FRAMES: &str = "extracted no frames";

/// Picks the earliest-matching format of `group` and fills its template.
fn describe(text: &[u8], group: &'static Group) -> Description {
    let mut best = Description::default();
    let mut best_pos = text.len();
    let mut matched_title = false;
    for f in &group.formats {
        let Some(m) = f.title.find(text) else {
            continue;
        };
        if m.start() > best_pos || (m.start() == best_pos && !best.title.is_empty()) {
            continue;
        }
        if m.start() < best_pos {
            best = Description::default();
            best_pos = m.start();
        }
        matched_title = true;
        let caps = match &f.report {
            Some(r) => match r.captures(text) {
                Some(c) => c,
                None => continue,
            },
            None => match f.title.captures(text) {
                Some(c) => c,
                None => continue,
            },
        };
        let args = capture_args(&caps);
        let at = caps.get(0).map_or(0, |m| m.start());
        let mut corrupted = None;
        let mut frames: Vec<(String, String)> = Vec::new();
        if let Some(spec) = &f.stack {
            let (fr, ok) = guilty_frames(spec, &text[at..]);
            frames = fr;
            if !ok {
                corrupted = Some(NO_FRAMES);
            }
        }
        let mut full_args = args.clone();
        full_args.extend(frames.iter().map(|(canon, _)| canon.as_bytes().to_vec()));
        let title = fill(f.fmt, &full_args);
        let mut alts: Vec<Vec<u8>> = f.alt.iter().map(|a| fill(a, &full_args)).collect();
        // Titles with the raw and partially stripped frames help dedup
        // across kernels that name syscall wrappers differently.
        for variant in partially_stripped(&frames) {
            let mut v = args.clone();
            v.extend(variant.into_iter().map(String::into_bytes));
            let t = fill(f.fmt, &v);
            if t != title {
                alts.push(t);
            }
            alts.extend(f.alt.iter().map(|a| fill(a, &v)));
        }
        best = Description {
            title,
            alts,
            corrupted,
            format: Some(f),
        };
    }
    if best.title.is_empty() {
        if matched_title {
            best.corrupted = Some("matched title but not report regexp");
        }
        if let Some(pos) = memmem::find(text, group.header) {
            let eol = memchr::memchr(b'\n', &text[pos..]).map_or(text.len(), |e| pos + e);
            best.title = text[pos..eol].to_vec();
        }
    }
    if best.corrupted.is_none() && best.format.is_some_and(|f| f.corrupted) {
        best.corrupted = Some("report format is marked as corrupted");
    }
    best
}

fn capture_args(caps: &Captures<'_>) -> Vec<Vec<u8>> {
    caps.iter()
        .skip(1)
        .map(|m| m.map(|m| m.as_bytes().to_vec()).unwrap_or_default())
        .collect()
}

/// Fills `{N}` (1-based) placeholders.
fn fill(template: &str, args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(template.len() + 32);
    let t = template.as_bytes();
    let mut i = 0;
    while i < t.len() {
        if t[i] == b'{'
            && let Some(close) = t[i..].iter().position(|&b| b == b'}')
            && let Some(n) = std::str::from_utf8(&t[i + 1..i + close])
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
        {
            if let Some(a) = n.checked_sub(1).and_then(|k| args.get(k)) {
                out.extend_from_slice(a);
            }
            i += close + 1;
            continue;
        }
        out.push(t[i]);
        i += 1;
    }
    out
}

fn partially_stripped(frames: &[(String, String)]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    if frames.is_empty() {
        return out;
    }
    out.push(frames.iter().map(|(_, raw)| raw.clone()).collect());
    for p in &RULES.strip_prefixes {
        let v: Vec<String> = frames
            .iter()
            .map(|(_, raw)| raw.strip_prefix(p).unwrap_or(raw).to_owned())
            .collect();
        if v.iter().zip(frames).any(|(a, (_, raw))| a != raw) {
            out.push(v);
        }
    }
    out
}

/// The frame with the syscall wrapper prefix that shortens it most removed.
fn strip_frame(frame: &str) -> &str {
    RULES
        .strip_prefixes
        .iter()
        .filter_map(|p| frame.strip_prefix(p))
        .min_by_key(|s| s.len())
        .unwrap_or(frame)
}

struct Skip<'a> {
    extra: Option<&'a Regex>,
    teardown: bool,
}

static GLOBAL_SKIP: std::sync::LazyLock<Regex> =
    std::sync::LazyLock::new(|| super::rules::re(&RULES.skip.join("|")));
static TEARDOWN: std::sync::LazyLock<Regex> =
    std::sync::LazyLock::new(|| super::rules::re(&super::rules::TEARDOWN_SKIP.join("|")));

impl Skip<'_> {
    fn skips(&self, frame: &str) -> bool {
        let f = frame.as_bytes();
        GLOBAL_SKIP.is_match(f)
            || (self.teardown && TEARDOWN.is_match(f))
            || self.extra.is_some_and(|r| r.is_match(f))
    }
}

/// One guilty frame per stack trace the spec walks: (canonical, raw).
fn guilty_frames(spec: &StackSpec, text: &[u8]) -> (Vec<(String, String)>, bool) {
    let skip = Skip {
        extra: spec.skip.as_ref(),
        teardown: spec.pick != Pick::HungTask,
    };
    let (frames, ok) = walk(&spec.parts, spec.pick, &skip, text);
    if ok || spec.fallback.is_empty() {
        return (frames, ok);
    }
    walk(&spec.fallback, spec.pick, &skip, text)
}

/// Rust symbols (`_R...` v0, `_ZN...` legacy) as paths without hashes;
/// other names unchanged.
fn demangle(name: &str) -> String {
    if name.starts_with("_R") || name.starts_with("_ZN") {
        if let Ok(d) = rustc_demangle::try_demangle(name) {
            return format!("{d:#}");
        }
    }
    name.to_owned()
}

fn matches_any(l: &[u8], res: &[Regex]) -> bool {
    res.iter().any(|r| r.is_match(l))
}

fn push_frames(raw: &mut Vec<String>, caps: Option<Captures<'_>>, skip: &Skip<'_>) {
    let Some(c) = caps else { return };
    for m in c.iter().skip(1).flatten() {
        let f = demangle(&String::from_utf8_lossy(m.as_bytes()));
        if !skip.skips(&f) {
            raw.push(f);
        }
    }
}

fn walk(parts: &[Part], pick: Pick, skip: &Skip<'_>, text: &[u8]) -> (Vec<(String, String)>, bool) {
    let all: Vec<&[u8]> = lines(text).collect();
    let mut cur = 0;
    let mut raw: Vec<String> = Vec::new();
    let mut results = Vec::new();
    let mut ok = true;
    let mut traces = 0;
    let mut idx = 0;
    loop {
        let at_end = idx >= parts.len();
        if at_end || (matches!(parts[idx], Part::Trace) && traces > 0) {
            match choose(pick, &raw) {
                Some(f) => results.push(f),
                None => {
                    results.push(("corrupted".to_owned(), "corrupted".to_owned()));
                    ok = false;
                }
            }
            raw.clear();
        }
        if at_end {
            break;
        }
        match &parts[idx] {
            Part::Trace => {
                traces += 1;
                while cur < all.len() {
                    let l = all[cur];
                    cur += 1;
                    if matches_any(l, &RULES.corrupted_lines) {
                        ok = false;
                        break;
                    }
                    if matches_any(l, &RULES.stack_start) {
                        break;
                    }
                    if let Some(Part::Line(next)) = parts.get(idx + 1)
                        && let Some(c) = next.captures(l)
                    {
                        push_frames(&mut raw, Some(c), skip);
                        idx += 1;
                        break;
                    }
                    let caps = RULES.frame_res.iter().find_map(|r| r.captures(l));
                    push_frames(&mut raw, caps, skip);
                }
            }
            Part::Line(r) => {
                while cur < all.len() {
                    let l = all[cur];
                    cur += 1;
                    if matches_any(l, &RULES.corrupted_lines) {
                        ok = false;
                        break;
                    }
                    if let Some(c) = r.captures(l) {
                        push_frames(&mut raw, Some(c), skip);
                        break;
                    }
                }
            }
        }
        idx += 1;
    }
    (results, ok)
}

fn choose(pick: Pick, raw: &[String]) -> Option<(String, String)> {
    if raw.is_empty() {
        return None;
    }
    let stripped: Vec<&str> = raw.iter().map(|f| strip_frame(f)).collect();
    let (frame, idx) = match pick {
        Pick::First => (stripped[0].to_owned(), 0),
        Pick::Stall => stall_frame(&stripped)?,
        Pick::HungTask => hung_task_frame(&stripped)?,
    };
    (!frame.is_empty()).then(|| (frame, raw[idx].clone()))
}

/// A stalled loop is identified by the frame just above the dispatcher that
/// ran it, not by wherever the NMI happened to land.
fn stall_frame(frames: &[&str]) -> Option<(String, usize)> {
    let mut prev = (frames[0].to_owned(), 0);
    for (i, f) in frames.iter().enumerate() {
        if RULES.stall_anchors.is_match(f.as_bytes()) {
            if f.contains("smp_call_function") {
                return Some(("smp_call_function".to_owned(), i));
            }
            return Some(prev);
        }
        prev = ((*f).to_owned(), i);
    }
    None
}

/// Hung tasks are victims: RCU and RTNL waiters are bucketed together,
/// otherwise the first frame that is not a wait primitive is taken.
fn hung_task_frame(frames: &[&str]) -> Option<(String, usize)> {
    for (i, f) in frames.iter().enumerate() {
        if f.contains("rtnl_lock") {
            return Some(((*f).to_owned(), i));
        }
        if [
            "synchronize_rcu",
            "synchronize_srcu",
            "synchronize_net",
            "synchronize_sched",
        ]
        .iter()
        .any(|a| f.contains(a))
        {
            return Some(("synchronize_rcu".to_owned(), i));
        }
    }
    const WAITS: &[&str] = &[
        "sched",
        "_lock",
        "_slowlock",
        "down",
        "rwsem",
        "completion",
        "kthread",
        "wait",
        "synchronize",
        "context_switch",
        "__switch_to",
        "cancel_delayed_work",
        "rcu_barrier",
    ];
    frames
        .iter()
        .enumerate()
        .find(|(_, f)| !WAITS.iter().any(|w| f.contains(w)))
        .map(|(i, f)| ((*f).to_owned(), i))
}

/// A report whose stack trace is missing or cut is corrupted.
fn judge_corruption(
    raw_title: &[u8],
    report: &[u8],
    format: Option<&Format>,
) -> Option<&'static str> {
    if matches_any(raw_title, &RULES.corrupted_titles) {
        return Some("title matches corrupted regexp");
    }
    let f = format?;
    if f.no_stack_trace {
        return None;
    }
    let mut has_trace = false;
    for key in &RULES.stack_start {
        let Some(m) = key.find(report) else {
            continue;
        };
        let following: Vec<&[u8]> = lines(&report[m.start()..]).collect();
        if following.len() < 4 {
            return Some("call trace is missed");
        }
        let mut corrupted = true;
        for l in following.iter().skip(1).take(15) {
            if matches_any(l, &RULES.stack_start) {
                break;
            }
            if contains!(l, b"(stack is not available)") || matches_any(l, &RULES.frame_res) {
                has_trace = true;
                corrupted = false;
                break;
            }
        }
        if corrupted && key.as_str() != RULES.riscv_stack_start.as_str() {
            return Some("no frames in a stack trace");
        }
    }
    if !has_trace {
        return Some("no stack trace in report");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctx_fast_path_agrees_with_regex() {
        let lines: &[&[u8]] = &[
            b"[   41.124900][  T321] BUG: KASAN",
            b"[   41.124900][    C1] rcu: INFO",
            b"[   41.124900] plain",
            b"[  584.319520][T11919] WARNING",
            b"[ INFO: possible circular locking dependency detected ]",
            b"no prefix",
            b"<4>[   41.1] with level",
            b"[   41.1][  X1] odd caller",
            b"[   41.1]x",
        ];
        for l in lines {
            let slow = match RULES.console_prefix.captures(l) {
                None => Ctx::None,
                Some(c) => c
                    .get(1)
                    .map_or(Ctx::Console, |m| Ctx::Caller(m.as_bytes().to_vec())),
            };
            assert_eq!(Ctx::of(l), slow, "{}", String::from_utf8_lossy(l));
        }
    }
}
