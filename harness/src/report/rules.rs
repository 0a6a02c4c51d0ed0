//! The table of Linux oops formats: which console lines start a report and
//! how each kind of report is turned into a title.
//!
//! The rules follow the conventions of syzkaller's `pkg/report` (titles,
//! guilty-frame choice) so that titles can be searched for on syzbot and
//! lore, but the table is organised for this crate: a [`Group`] per header
//! substring, [`Format`]s inside it tried in order, and a [`StackSpec`]
//! saying where the guilty frame comes from.
//!
//! Templates use `{N}` (1-based): first the capture groups of the title (or
//! report) regex, then one guilty frame per stack trace the spec walks.

use std::sync::LazyLock;

use regex::bytes::Regex;

/// A family of reports that share a header substring (`BUG:`, `WARNING:`).
#[derive(Debug)]
pub(crate) struct Group {
    /// Cheap substring test run on every console line.
    pub header: &'static [u8],
    /// Searcher for `header`.
    pub finder: memchr::memmem::Finder<'static>,
    /// Tried in order; the earliest match in the report wins.
    pub formats: Vec<Format>,
    /// Lines holding the header that are not reports (sshd banners, ...).
    pub suppress: Vec<Regex>,
}

/// One way a report of a [`Group`] can look.
#[derive(Debug)]
pub(crate) struct Format {
    /// Matched against the report text; its position orders formats.
    pub title: Regex,
    /// If set, must also match (else the format is skipped); its capture
    /// groups replace those of `title`.
    pub report: Option<Regex>,
    /// Title template.
    pub fmt: &'static str,
    /// Alternative title templates.
    pub alt: Vec<&'static str>,
    /// Where the guilty frame(s) come from.
    pub stack: Option<StackSpec>,
    /// The format has no stack trace by nature: do not call it corrupted
    /// for lacking one.
    pub no_stack_trace: bool,
    /// A match of this format means the report is corrupted.
    pub corrupted: bool,
}

/// A step of a [`StackSpec`].
#[derive(Debug)]
pub(crate) enum Part {
    /// Skip lines up to one matching this regex; its capture groups are
    /// candidate frames.
    Line(Regex),
    /// Read a stack trace from here until the next trace starts.
    Trace,
}

/// How the guilty function is picked among candidate frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pick {
    /// The first frame that survives the skip list.
    First,
    /// Stalls and lockups: the frame just above a dispatcher (syscall
    /// entry, workqueue, softirq, VFS/socket callbacks).
    Stall,
    /// Hung tasks: group `rtnl_lock`/`synchronize_*` waiters, else the
    /// first frame that is not a wait or scheduling primitive.
    HungTask,
}

/// Recipe for the guilty frame of a [`Format`].
#[derive(Debug)]
pub(crate) struct StackSpec {
    pub parts: Vec<Part>,
    /// Tried when `parts` fails.
    pub fallback: Vec<Part>,
    /// Extra skip patterns on top of [`Rules::skip`], joined into one regex.
    pub skip: Option<Regex>,
    pub pick: Pick,
}

/// Everything the parser needs, compiled once.
#[derive(Debug)]
pub(crate) struct Rules {
    pub groups: Vec<Group>,
    /// Matches a line holding any group's header.
    pub any_header: Regex,
    /// Console line prefix: timestamp and optional printk caller id
    /// (capture 1).
    pub console_prefix: Regex,
    pub task_context: Regex,
    pub cpu_context: Regex,
    /// ` ? func+0x..`: a frame the unwinder is not sure about.
    pub questionable: Regex,
    /// Oops lines that continue the report in progress instead of starting
    /// a new one (the panic that follows a BUG, a double fault in a fault).
    pub start_ignores: Vec<Regex>,
    /// Informational messages that carry a stack trace of their own; they
    /// end the report in progress.
    pub info_with_stack: Vec<memchr::memmem::Finder<'static>>,
    /// Lines that start a stack trace.
    pub stack_start: Vec<Regex>,
    /// Lines that hold one frame (capture groups: function names).
    pub frame_res: Vec<Regex>,
    /// Frames that are never guilty: report machinery, locking, allocators,
    /// string helpers and other common infrastructure.
    pub skip: Vec<&'static str>,
    /// Lines whose presence means another report got mixed in.
    pub corrupted_lines: Vec<Regex>,
    /// Syscall wrapper prefixes stripped from frames.
    pub strip_prefixes: Vec<&'static str>,
    /// Titles holding a timestamp were cut by another printk.
    pub corrupted_titles: Vec<Regex>,
    /// The faulting PC line (`RIP: 0010:func+0x..`).
    pub rip_frame: Regex,
    /// `func+0xOFF/0xLEN [module]` anywhere in a line.
    pub backtrace_line: Regex,
    /// RISC-V prints registers then frames without a "Call Trace" line.
    pub riscv_stack_start: Regex,
    pub stall_anchors: Regex,
}

/// Whether `hay` contains the literal `needle`, with the substring searcher
/// built once per call site (building one per search dominated profiles).
macro_rules! contains {
    ($hay:expr, $needle:literal) => {{
        static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new($needle));
        FINDER.find($hay).is_some()
    }};
}
pub(crate) use contains;

/// Compiles a rule regex: bytes semantics (`.` matches any byte but `\n`,
/// classes are ASCII) and the shorthands `{{ADDR}}`, `{{PC}}`, `{{FUNC}}`
/// (captures a function name), `{{SRC}}` (captures `file.c:LINE`) and
/// `{{TASK}}` (a lazily matched task name).
pub(crate) fn re(pattern: &str) -> Regex {
    let expanded = pattern
        .replace("{{ADDR}}", "0x[0-9a-f]+")
        .replace("{{PC}}", r"\[<?(?:0x)?[0-9a-f]+>?\]")
        .replace("{{FUNC}}", r"([a-zA-Z0-9_]+)(?:\.|\+)")
        .replace("{{SRC}}", r"([a-zA-Z0-9\-_/.]+\.[a-z]+:[0-9]+)")
        .replace("{{TASK}}", r"[\s\S]{0,100}?");
    Regex::new(&format!("(?-u){expanded}"))
        .unwrap_or_else(|e| panic!("bad built-in rule regex {pattern:?}: {e}"))
}

fn any_of(patterns: &[&str]) -> Option<Regex> {
    if patterns.is_empty() {
        None
    } else {
        Some(re(&patterns.join("|")))
    }
}

const RIP: &str = r"(?:IP|NIP|pc |PC is at):? (?:(?:[0-9]+:)?(?:{{PC}} +){0,2}{{FUNC}}|(?:[0-9]+:)?0x[0-9a-f]+|(?:[0-9]+:)?{{PC}} +\[< *\(null\)>\] +\(null\)|[0-9]+: +\(null\))";
const CALL_TRACE: &str = r"(?:Call (?:T|t)race:)|(?:Backtrace:)";

/// Builder shorthands keep the table below readable.
fn fmt(title: &str, out: &'static str) -> Format {
    Format {
        title: re(title),
        report: None,
        fmt: out,
        alt: Vec::new(),
        stack: None,
        no_stack_trace: false,
        corrupted: false,
    }
}

impl Format {
    fn report(mut self, r: &str) -> Self {
        self.report = Some(re(r));
        self
    }
    fn alt(mut self, a: &'static str) -> Self {
        self.alt.push(a);
        self
    }
    fn stack(mut self, s: StackSpec) -> Self {
        self.stack = Some(s);
        self
    }
    fn no_stack(mut self) -> Self {
        self.no_stack_trace = true;
        self
    }
    fn corrupted(mut self) -> Self {
        self.corrupted = true;
        self
    }
}

fn stack(parts: Vec<Part>) -> StackSpec {
    StackSpec {
        parts,
        fallback: Vec::new(),
        skip: None,
        pick: Pick::First,
    }
}

impl StackSpec {
    fn skip(mut self, s: &[&str]) -> Self {
        self.skip = any_of(s);
        self
    }
    fn pick(mut self, p: Pick) -> Self {
        self.pick = p;
        self
    }
    fn fallback(mut self, parts: Vec<Part>) -> Self {
        self.fallback = parts;
        self
    }
}

fn line(r: &str) -> Part {
    Part::Line(re(r))
}
fn rip() -> Part {
    line(RIP)
}
fn call_trace() -> Part {
    line(CALL_TRACE)
}
/// RIP frame, then the call trace: faults and traps.
fn fault_stack() -> StackSpec {
    stack(vec![rip(), call_trace(), Part::Trace])
}
/// Only the call trace.
fn trace_stack() -> StackSpec {
    stack(vec![call_trace(), Part::Trace])
}
/// WARNINGs: newer kernels trap, so the stack starts at the RIP line;
/// older ones print the call trace right away.
fn warning_stack(skip: &[&str]) -> StackSpec {
    stack(vec![
        line(&format!("(?:{RIP}|--- interrupt: [0-9]+ at {{{{FUNC}}}})")),
        Part::Trace,
    ])
    .fallback(vec![call_trace(), Part::Trace])
    .skip(skip)
}

fn group(header: &'static str, formats: Vec<Format>, suppress: &[&str]) -> Group {
    Group {
        header: header.as_bytes(),
        finder: memchr::memmem::Finder::new(header.as_bytes()),
        formats,
        suppress: suppress.iter().map(|s| re(s)).collect(),
    }
}

/// The compiled rules.
pub(crate) static RULES: LazyLock<Rules> = LazyLock::new(build);

#[expect(clippy::too_many_lines, reason = "one declarative table")]
fn build() -> Rules {
    let kasan_access = "BUG: KASAN: ([a-z\\-]+) in {{FUNC}}";
    let bug = group(
        "BUG:",
        vec![
            fmt("BUG: KASAN:", "KASAN: {1} {3} in {4}")
                .report(&format!(
                    r"{kasan_access}(?:.*\n)+?.*(Read|Write) (?:of size|at addr) (?:[0-9a-f]+)"
                ))
                .alt("bad-access in {4}")
                .stack(
                    stack(vec![
                        line("BUG: KASAN: (?:[a-z\\-]+) in {{FUNC}}"),
                        call_trace(),
                        Part::Trace,
                    ])
                    // Hardware tag-based KASAN goes through the arm64 fault path.
                    .skip(&["kernel_fault", "tag_check", "mem_abort", "^el1_", "^el1h_"]),
                ),
            fmt("BUG: KASAN:", "KASAN: invalid-free in {2}")
                .report("BUG: KASAN: (?:double-free or invalid-free|double-free|invalid-free) in {{FUNC}}")
                .alt("invalid-free in {2}")
                .stack(
                    stack(vec![
                        line("BUG: KASAN: (?:double-free or invalid-free|double-free|invalid-free) in {{FUNC}}"),
                        call_trace(),
                        Part::Trace,
                    ])
                    .skip(&["slab_", "kfree", "vunmap", "vfree"]),
                ),
            fmt(
                r"BUG: KASAN: ([a-z\-]+) on address(?:.*\n)+?.*(Read|Write) of size ([0-9]+)",
                "KASAN: {1} {2}",
            ),
            fmt("BUG: KASAN: (.*)", "KASAN: {1}").corrupted(),
            fmt("BUG: KMSAN: kernel-usb-infoleak", "KMSAN: kernel-usb-infoleak in {2}")
                .report("BUG: KMSAN: kernel-usb-infoleak in {{FUNC}}")
                .alt("KMSAN origin in {3}")
                .stack(
                    stack(vec![
                        Part::Trace,
                        line("(Local variable .* created at:|Uninit was created at:)"),
                        Part::Trace,
                    ])
                    .skip(&[
                        "alloc_skb",
                        "usb_submit_urb",
                        "usb_start_wait_urb",
                        "usb_bulk_msg",
                        "usb_interrupt_msg",
                        "usb_control_msg",
                    ]),
                )
                .no_stack(),
            fmt("BUG: KMSAN:", "KMSAN: {1} in {3}")
                .report("BUG: KMSAN: ([a-z\\-]+) in {{FUNC}}")
                .alt("bad-access in {3}")
                .stack(
                    stack(vec![
                        Part::Trace,
                        line("(Local variable .* created at:|Uninit was created at:)"),
                        Part::Trace,
                    ])
                    .skip(&[
                        "alloc_skb",
                        "netlink_ack",
                        "netlink_rcv_skb",
                        "_encrypt$",
                        "^(?:crypto|cipher|drbg|rng)_",
                    ]),
                )
                .no_stack(),
            fmt("BUG: KCSAN: data-race", "KCSAN: {1}")
                .report("BUG: KCSAN: (.*)")
                .no_stack(),
            fmt("BUG: KCSAN:", "KCSAN: {1}").report("BUG: KCSAN: (.*)").no_stack(),
            fmt(
                "BUG: KFENCE: (use-after-free|out-of-bounds) (read|write) in {{FUNC}}",
                "KFENCE: {1} {2} in {4}",
            )
            .alt("bad-access in {4}")
            .stack(kfence_stack()),
            fmt("BUG: KFENCE: invalid free in {{FUNC}}", "KFENCE: invalid free in {2}")
                .alt("invalid-free in {2}")
                .no_stack()
                .stack(kfence_stack()),
            fmt(
                "BUG: KFENCE: invalid (read|write) in {{FUNC}}",
                "KFENCE: invalid {1} in {3}",
            )
            .alt("bad-access in {3}")
            .stack(kfence_stack()),
            fmt(
                "BUG: KFENCE: memory corruption in {{FUNC}}",
                "KFENCE: memory corruption in {2}",
            )
            .no_stack()
            .stack(kfence_stack()),
            fmt(
                "BUG: (?:unable to handle kernel paging request|unable to handle page fault for address|Unable to handle kernel data access)",
                "BUG: unable to handle kernel paging request in {1}",
            )
            .alt("bad-access in {1}")
            .stack(fault_stack()),
            fmt(
                "BUG: (?:unable to handle kernel NULL pointer dereference|kernel NULL pointer dereference|Kernel NULL pointer dereference)",
                "BUG: unable to handle kernel NULL pointer dereference in {1}",
            )
            .alt("bad-access in {1}")
            .stack(fault_stack()),
            // The second half of the header is a separate printk and can be lost.
            fmt(
                "BUG: (?:unable to handle kernel|Unable to handle kernel)",
                "BUG: unable to handle kernel",
            )
            .corrupted(),
            fmt(
                "BUG: (spinlock|rwlock) (lockup suspected|already unlocked|recursion|cpu recursion|bad magic|wrong owner|wrong CPU|trylock failure on UP)",
                "BUG: {1} {2} in {3}",
            )
            .stack(trace_stack().skip(&["spin_", "_lock", "_unlock"])),
            fmt("BUG: soft lockup", "BUG: soft lockup in {1}")
                .alt("stall in {1}")
                .stack(fault_stack().pick(Pick::Stall)),
            fmt(
                "BUG: .*still has locks held!",
                "BUG: still has locks held in {1}",
            )
            .report(r"BUG: .*still has locks held!(?:.*\n)+?.*{{PC}} +{{FUNC}}"),
            fmt(
                "BUG: scheduling while atomic",
                "BUG: scheduling while atomic in {1}",
            )
            .stack(trace_stack().skip(&["schedule"])),
            fmt(
                "BUG: lock held when returning to user space",
                "BUG: lock held when returning to user space in {1}",
            )
            .report(r"BUG: lock held when returning to user space(?:.*\n)+?.*leaving the kernel with locks still held(?:.*\n)+?.*at: (?:{{PC}} +)?{{FUNC}}")
            .no_stack(),
            fmt(
                "BUG: bad unlock balance detected!",
                "BUG: bad unlock balance in {1}",
            )
            .stack(stack(vec![line("{{PC}} +{{FUNC}}"), call_trace(), Part::Trace])),
            fmt("BUG: held lock freed!", "BUG: held lock freed in {1}")
                .report(r"BUG: held lock freed!(?:.*\n)+?.*{{PC}} +{{FUNC}}"),
            fmt("BUG: Bad rss-counter state", "BUG: Bad rss-counter state").no_stack(),
            fmt(
                "BUG: non-zero nr_ptes on freeing mm",
                "BUG: non-zero nr_ptes on freeing mm",
            )
            .no_stack(),
            fmt(
                "BUG: non-zero nr_pmds on freeing mm",
                "BUG: non-zero nr_pmds on freeing mm",
            )
            .no_stack(),
            // The filesystem type and block device would split one bug
            // into many titles.
            fmt("BUG: Dentry .* still in use", "BUG: Dentry still in use in {1}")
                .report(r"BUG: Dentry .* still in use \([0-9]+\) \[(unmount) of ([^\]]+)\]")
                .alt("BUG: Dentry still in use [{1} of {2}]"),
            fmt("BUG: Bad page (state|cache)", "BUG: Bad page {1} in {2}").stack(
                stack(vec![line("page last allocated"), Part::Trace]).skip(&[
                    "(free|put|get|update|release)_page",
                    "free_unref",
                    "^_*folio",
                    "truncate_inode_pages",
                    "page_frag_free",
                    "alloc",
                    "vmap",
                    "page_owner",
                ]),
            ),
            fmt("BUG: Bad page map", "BUG: Bad page map"),
            fmt("BUG: workqueue lockup", "BUG: workqueue lockup").no_stack(),
            fmt(
                "BUG: sleeping function called from invalid context at (.*)",
                "BUG: sleeping function called from invalid context in {2}",
            )
            .stack(trace_stack()),
            fmt(
                r"BUG: using ([a-z_]+)\(\) in preemptible",
                "BUG: using {1}() in preemptible code in {2}",
            )
            .stack(trace_stack().skip(&[
                "dump_stack",
                "preemption",
                "preempt",
                "debug_",
                "processor_id",
                "this_cpu",
            ])),
            fmt(
                "BUG: workqueue leaked lock or atomic",
                "BUG: workqueue leaked lock or atomic in {1}",
            )
            .report(r"BUG: workqueue leaked lock or atomic(?:.*\n)+?.*last function: ([a-zA-Z0-9_]+)\n")
            .no_stack(),
            fmt("BUG: memory leak", "memory leak in {1}").stack(
                stack(vec![
                    line("backtrace(?: \\(crc [[:xdigit:]]*\\))?:"),
                    Part::Trace,
                ])
                .skip(&[
                    "kmemleak",
                    "mmap",
                    "kmem",
                    "slab",
                    "alloc",
                    "create_object",
                    "idr_get",
                    "list_lru_init",
                    "kasprintf",
                    "kvasprintf",
                    "pcpu_create",
                    "strdup",
                    "strndup",
                    "memdup",
                ]),
            ),
            fmt(
                "BUG: .*stack guard page was hit at",
                "BUG: stack guard page was hit in {1}",
            )
            .alt("stack-overflow in {1}")
            .stack(fault_stack().pick(Pick::Stall)),
            // arm64 words lockdep's wait-context check differently from x86;
            // give both the x86 title.
            fmt("BUG: Invalid wait context", "WARNING: locking bug in {1}")
                .stack(trace_stack().skip(&["lock_sock", "release_sock"])),
            fmt(r"BUG:[[:space:]]*(?:\n|$)", "BUG: corrupted").corrupted(),
        ],
        &[
            "ODEBUG:",
            "Boot_DEBUG:",
            "xlog_status:",
            "DEBUG:",
            "BUG: no syscalls can create resource",
        ],
    );

    let warning = group(
        "WARNING:",
        vec![
            fmt(
                r"WARNING: .*lib/debugobjects\.c.* (?:debug_print|debug_check|at)",
                "WARNING: ODEBUG bug in {1}",
            )
            .stack(warning_stack(&[
                "debug_",
                "rcu",
                "hrtimer_",
                "timer_",
                "work_",
                "percpu_",
                "vunmap",
                "vfree",
                "__free_",
                "debug_check",
                "kobject_",
            ])),
            fmt(
                r"WARNING: .*mm/usercopy\.c.* (?:usercopy_warn|at)",
                "WARNING: bad usercopy in {1}",
            )
            .stack(warning_stack(&["usercopy", "__check"])),
            fmt(
                r"WARNING: .*lib/kobject\.c.* (?:kobject_|at)",
                "WARNING: kobject bug in {1}",
            )
            .stack(warning_stack(&["kobject_"])),
            fmt(
                r"WARNING: .*fs/proc/generic\.c.* (?:proc_register|at)",
                "WARNING: proc registration bug in {1}",
            )
            .stack(warning_stack(&["proc_"])),
            fmt(
                r"WARNING: .*lib/refcount\.c.* (?:refcount_|at)",
                "WARNING: refcount bug in {1}",
            )
            .stack(warning_stack(&["refcount", "kobject_"])),
            fmt(
                r"WARNING: .*kernel/locking/lockdep\.c.*lock_",
                "WARNING: locking bug in {1}",
            )
            .stack(warning_stack(&["lock_sock", "release_sock"])),
            fmt(
                "WARNING: .*still has locks held!",
                "WARNING: still has locks held in {1}",
            )
            .report(r"WARNING: .*still has locks held!(?:.*\n)+?.*at: {{FUNC}}"),
            fmt(
                "WARNING: Nested lock was not taken",
                "WARNING: nested lock was not taken in {1}",
            )
            .stack(warning_stack(&[])),
            fmt(
                "WARNING: lock held when returning to user space",
                "WARNING: lock held when returning to user space in {1}",
            )
            .report(r"WARNING: lock held when returning to user space(?:.*\n)+?.*leaving the kernel with locks still held(?:.*\n)+?.*at: (?:{{PC}} +)?{{FUNC}}")
            .no_stack(),
            fmt(r"WARNING: .*mm/.*\.c.* k?.?malloc", "WARNING: kmalloc bug in {1}")
                .stack(warning_stack(&["kmalloc", "krealloc", "slab", "kmem"])),
            fmt(
                r"WARNING: .*mm/vmalloc.c.*__vmalloc_node",
                "WARNING: zero-size vmalloc in {1}",
            )
            .stack(warning_stack(&[])),
            fmt("WARNING: .* usb_submit_urb", "WARNING in {1}/usb_submit_urb").stack(
                warning_stack(&[
                    "usb_submit_urb",
                    "usb_start_wait_urb",
                    "usb_bulk_msg",
                    "usb_interrupt_msg",
                    "usb_control_msg",
                ]),
            ),
            // Newer kernels: "WARNING: file.c:LINE at 0xADDR, CPU#N".
            fmt(r"WARNING: {{SRC}} at 0x\d+, CPU#\d+", "WARNING in {2}")
                .stack(warning_stack(&[])),
            fmt("WARNING: .* at {{SRC}} {{FUNC}}", "WARNING in {3}").stack(warning_stack(&[])),
            fmt("WARNING: {{SRC}} at {{FUNC}}", "WARNING in {3}").stack(warning_stack(&[])),
            fmt(r"WARNING: \[.*\] {{SRC}} at {{FUNC}}.*", "WARNING in {3}")
                .stack(warning_stack(&[])),
            fmt(
                "WARNING: possible circular locking dependency detected",
                "possible deadlock in {1}",
            )
            .report(r"WARNING: possible circular locking dependency detected(?:.*\n)+?.*is trying to acquire lock")
            .stack(
                stack(vec![
                    line("at: (?:{{PC}} +)?{{FUNC}}"),
                    line("at: (?:{{PC}} +)?{{FUNC}}"),
                    Part::Trace,
                ])
                // Work items carry lockdep maps: deadlocks "in" these are
                // about the work item, not the workqueue code.
                .skip(&[
                    "process_one_work",
                    "flush_workqueue",
                    "drain_workqueue",
                    "destroy_workqueue",
                ]),
            ),
            fmt(
                "WARNING: possible irq lock inversion dependency detected",
                "possible deadlock in {1}",
            )
            .report(r"WARNING: possible irq lock inversion dependency detected(?:.*\n)+?.*just changed the state of lock(?:.*\n)+?.*at: (?:{{PC}} +)?{{FUNC}}"),
            fmt(
                "WARNING: .*-safe -> .*-unsafe lock order detected",
                "possible deadlock in {1}",
            )
            .stack(stack(vec![line("which became (?:.*) at:"), Part::Trace])),
            fmt(
                "WARNING: possible recursive locking detected",
                "possible deadlock in {1}",
            )
            .report(r"WARNING: possible recursive locking detected(?:.*\n)+?.*is trying to acquire lock(?:.*\n)+?.*at: (?:{{PC}} +)?{{FUNC}}"),
            fmt(
                "WARNING: inconsistent lock state",
                "inconsistent lock state in {2}",
            )
            .report(r"WARNING: inconsistent lock state(?:.*\n)+?.*takes(?:.*\n)+?.*at: (?:{{PC}} +)?{{FUNC}}")
            .stack(trace_stack()),
            fmt(
                "WARNING: suspicious RCU usage",
                "WARNING: suspicious RCU usage in {2}",
            )
            .report(r"WARNING: suspicious RCU usage(?:.*\n)+?.*?{{SRC}}")
            .stack(trace_stack().skip(&["rcu", "kmem", "slab"])),
            fmt(
                "WARNING: kernel stack regs at [0-9a-f]+ in [^ ]* has bad '([^']+)' value",
                "WARNING: kernel stack regs has bad '{1}' value",
            )
            .no_stack(),
            fmt(
                "WARNING: kernel stack frame pointer at [0-9a-f]+ in [^ ]* has bad value",
                "WARNING: kernel stack frame pointer has bad value",
            )
            .no_stack(),
            fmt(
                "WARNING: bad unlock balance detected!",
                "WARNING: bad unlock balance in {1}",
            )
            .stack(stack(vec![line("{{PC}} +{{FUNC}}"), call_trace(), Part::Trace])),
            fmt("WARNING: held lock freed!", "WARNING: held lock freed in {1}")
                .report(r"WARNING: held lock freed!(?:.*\n)+?.*at:(?: {{PC}})? +{{FUNC}}"),
            fmt(
                "WARNING: kernel stack regs .* has bad 'bp' value",
                "WARNING: kernel stack regs has bad value",
            )
            .no_stack(),
            fmt(
                "WARNING: kernel stack frame pointer .* has bad value",
                "WARNING: kernel stack regs has bad value",
            )
            .no_stack(),
            fmt(r"WARNING:[[:space:]]*(?:\n|$)", "WARNING: corrupted").corrupted(),
        ],
        &[
            // User space and boot chatter that says "WARNING:".
            "WARNING: /etc/ssh/moduli does not exist, using fixed modulus",
            "WARNING: workqueue cpumask: online intersect > possible intersect",
            "WARNING: [Tt]he mand mount option",
            r"WARNING: Unsupported flag value\(s\) of 0x%x in DT_FLAGS_1",
            "WARNING: Unprivileged eBPF is enabled with eIBRS",
            r"WARNING: fbcon: Driver '(.*)' missed to adjust virtual screen size",
            "WARNING: See https.* for mitigation options.",
            "WARNING: kernel not compiled with CPU_SRSO",
            r"EXT4-[Ff][Ss](?: \(.*\))?:",
            "(?i)warning: .* uses (deprecated v2 capabilities|wireless extensions)",
            r"XFS \(\w+\): WARNING",
        ],
    );

    let info = group(
        "INFO:",
        vec![
            // Old lockdep banners: "[ INFO: ... ]".
            fmt(
                "INFO: possible circular locking dependency detected",
                "possible deadlock in {1}",
            )
            .report(r"INFO: possible circular locking dependency detected \](?:.*\n)+?.*is trying to acquire lock(?:.*\n)+?.*at: {{PC}} +{{FUNC}}"),
            fmt(
                "INFO: possible irq lock inversion dependency detected",
                "possible deadlock in {1}",
            )
            .report(r"INFO: possible irq lock inversion dependency detected \](?:.*\n)+?.*just changed the state of lock(?:.*\n)+?.*at: {{PC}} +{{FUNC}}"),
            fmt(
                "INFO: SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected",
                "possible deadlock in {1}",
            )
            .report(r"INFO: SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected \](?:.*\n)+?.*is trying to acquire(?:.*\n)+?.*at: {{PC}} +{{FUNC}}"),
            fmt(
                "INFO: possible recursive locking detected",
                "possible deadlock in {1}",
            )
            .report(r"INFO: possible recursive locking detected \](?:.*\n)+?.*is trying to acquire lock(?:.*\n)+?.*at: {{PC}} +{{FUNC}}"),
            fmt("INFO: inconsistent lock state", "inconsistent lock state in {1}")
                .report(r"INFO: inconsistent lock state \](?:.*\n)+?.*takes(?:.*\n)+?.*at: {{PC}} +{{FUNC}}"),
            fmt(
                "INFO: rcu_(?:preempt|sched|bh|tasks) (?:self-)?detected(?: expedited)? stall",
                "INFO: rcu detected stall in {1}",
            )
            .alt("stall in {1}")
            .stack(
                stack(vec![line("apic_timer_interrupt"), rip(), Part::Trace])
                    .fallback(vec![
                        line("(?:apic_timer_interrupt|Exception stack|el1h_64_irq)"),
                        Part::Trace,
                    ])
                    .skip(&["apic_timer_interrupt", "rcu"])
                    .pick(Pick::Stall),
            ),
            fmt(
                "INFO: trying to register non-static key",
                "INFO: trying to register non-static key in {1}",
            )
            .stack(trace_stack().skip(&["stack", "lock", "IRQ"])),
            fmt(
                "INFO: suspicious RCU usage",
                "INFO: suspicious RCU usage in {2}",
            )
            .report(r"INFO: suspicious RCU usage(?:.*\n)+?.*?{{SRC}}")
            .stack(trace_stack().skip(&["rcu", "kmem", "slab"])),
            fmt(
                "INFO: task {{TASK}} blocked (?:in I/O wait )?for more than [0-9]+ seconds",
                "INFO: task hung in {1}",
            )
            .alt("hang in {1}")
            .stack(trace_stack().pick(Pick::HungTask)),
            fmt(
                "INFO: task {{TASK}} can't die for more than .* seconds",
                "INFO: task can't die in {1}",
            )
            .alt("hang in {1}")
            .stack(trace_stack().skip(&["schedule"])),
            // Old-style KASAN reports cut before their header.
            fmt("INFO: (Freed|Allocated) in (.*)", "INFO: {1} in {2}").corrupted(),
            fmt(r"INFO:[[:space:]]*(?:\n|$)", "INFO: corrupted").corrupted(),
        ],
        &[
            "INFO: lockdep is turned off",
            "INFO: Stall ended before state dump start",
            "INFO: NMI handler",
            "INFO: recovery required on readonly filesystem",
            "(handler|interrupt).*took too long",
            "INFO: sys_.* is not present in /proc/kallsyms",
            "INFO: no syscalls can create resource",
            "rmt_storage:INFO:",
            "_INFO:",
        ],
    );

    let mut groups = vec![bug, warning, info];
    groups.extend([
        group(
            "Unable to handle kernel",
            vec![fmt(
                "Unable to handle kernel (paging request|NULL pointer dereference|access to user memory)",
                "BUG: unable to handle kernel {1} in {2}",
            )
            .alt("bad-access in {2}")
            .stack(fault_stack())],
            &[],
        ),
        group(
            "general protection fault",
            vec![
                fmt("general protection fault.*:", "general protection fault in {1}")
                    .alt("bad-access in {1}")
                    .stack(fault_stack()),
            ],
            // User space segfaults logged by the kernel.
            &[r"general protection fault .* error:\d+ in "],
        ),
        group(
            "stack segment: ",
            vec![fmt("stack segment: ", "stack segment fault in {1}").stack(fault_stack())],
            &[],
        ),
        group(
            "Kernel panic",
            vec![
                // A smashed stack may leave no symbol and no unwindable stack.
                fmt(
                    "Kernel panic - not syncing: stack-protector:",
                    "kernel panic: stack is corrupted in {1}",
                )
                .report("Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: {{FUNC}}")
                .no_stack(),
                fmt(
                    "Kernel panic - not syncing: stack-protector:",
                    "kernel panic: stack is corrupted in {1}",
                )
                .report("Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: [a-f0-9]+")
                .stack(trace_stack().skip(&["stack_chk"])),
                fmt(
                    "Kernel panic - not syncing: corrupted stack end",
                    "kernel panic: corrupted stack end in {1}",
                )
                .report("Kernel panic - not syncing: corrupted stack end detected inside scheduler")
                .alt("stack-overflow in {1}")
                .stack(
                    trace_stack()
                        .skip(&["schedule", "retint_kernel"])
                        .pick(Pick::Stall),
                ),
                fmt(
                    "Kernel panic - not syncing: kernel stack overflow",
                    "kernel stack overflow in {1}",
                )
                .alt("stack-overflow in {1}")
                .stack(trace_stack().skip(&["bad_stack"]).pick(Pick::Stall)),
                fmt(
                    "Kernel panic - not syncing: Attempted to kill init!",
                    "kernel panic: Attempted to kill init!",
                ),
                fmt(
                    "Kernel panic - not syncing: Couldn't open N_TTY ldisc for [^ ]+ --- error -[0-9]+",
                    "kernel panic: Couldn't open N_TTY ldisc",
                ),
                // These panics follow a report; seeing one first means the
                // report itself was lost.
                fmt(
                    "Kernel panic - not syncing: Fatal exception",
                    "kernel panic: Fatal exception",
                )
                .corrupted(),
                fmt(
                    "Kernel panic - not syncing: panic_on_warn set",
                    "kernel panic: panic_on_warn set",
                )
                .corrupted(),
                fmt(
                    "Kernel panic - not syncing: hung_task: blocked tasks",
                    "kernel panic: hung_task: blocked tasks",
                )
                .corrupted(),
                fmt("Kernel panic - not syncing: (.*)", "kernel panic: {1}"),
            ],
            &[],
        ),
        group(
            "PANIC: double fault",
            vec![fmt("PANIC: double fault", "PANIC: double fault in {1}").stack(stack(vec![rip()]))],
            &[],
        ),
        group(
            "rust_kernel: panicked",
            vec![fmt("rust_kernel: panicked", "{1} in {2}")
                .report(r"rust_kernel: panicked at [^\n]*?\n(.+?)\n")
                .stack(trace_stack().skip(&[r"__rustc::rust_begin_unwind"]))],
            &[],
        ),
        group(
            "kernel BUG",
            vec![
                fmt("kernel BUG at mm/usercopy.c", "BUG: bad usercopy in {1}")
                    .stack(trace_stack().skip(&["usercopy", "__check"])),
                fmt("kernel BUG at lib/list_debug.c", "BUG: corrupted list in {1}")
                    .alt("bad-access in {1}")
                    .stack(trace_stack()),
                fmt("kernel BUG at (.*)", "kernel BUG in {2}")
                    // BUG_ON in skb helpers is nearly always the caller's fault.
                    .stack(fault_stack().skip(&["^skb_"])),
            ],
            &[],
        ),
        group(
            "Kernel BUG",
            vec![fmt("Kernel BUG (.*)", "kernel BUG {1}")],
            &[],
        ),
        group(
            "BUG kmalloc-",
            vec![fmt(
                "BUG kmalloc-.*: Object already free",
                "BUG: Object already free",
            )],
            &[],
        ),
        group(
            "divide error:",
            vec![fmt("divide error: ", "divide error in {1}").stack(stack(vec![rip()]))],
            &[],
        ),
        // Misspelt by some kernels.
        group(
            "divide_error:",
            vec![fmt("divide_error: ", "divide error in {1}").stack(stack(vec![rip()]))],
            &[],
        ),
        group(
            "invalid opcode:",
            vec![fmt("invalid opcode: ", "invalid opcode in {1}").stack(stack(vec![rip()]))],
            &[],
        ),
        group(
            "int3:",
            vec![fmt("int3: ", "int3 in {1}").stack(fault_stack())],
            &[],
        ),
        group(
            "UBSAN:",
            vec![
                fmt("UBSAN:", "UBSAN: undefined-behaviour in {1}")
                    .report("UBSAN: Undefined behaviour in")
                    .stack(trace_stack().skip(&["ubsan", "overflow"])),
                fmt(
                    "UBSAN: array-index-out-of-bounds in",
                    "UBSAN: array-index-out-of-bounds in {1}",
                )
                .alt("bad-access in {1}")
                .stack(trace_stack().skip(&["ubsan", "overflow"])),
                fmt("UBSAN:", "UBSAN: {1} in {2}")
                    .report("UBSAN: (.*?) in")
                    .stack(trace_stack().skip(&["ubsan", "overflow"])),
            ],
            &[],
        ),
        group(
            "Booting the kernel.",
            vec![fmt("^Booting the kernel", "unexpected kernel reboot").no_stack()],
            &["Parsing ELF|Decompressing Linux|Unknown parameter '"],
        ),
        group(
            "unregister_netdevice: waiting for",
            vec![
                fmt(
                    "unregister_netdevice: waiting for (?:.*) to become free",
                    "unregister_netdevice: waiting for DEV to become free",
                )
                .no_stack(),
            ],
            &[],
        ),
        group(
            "VFS: Close: file count is 0",
            vec![
                fmt(
                    "VFS: Close: file count is 0",
                    "VFS: Close: file count is zero (use-after-free)",
                )
                .no_stack(),
            ],
            &[],
        ),
        group(
            "VFS: Busy inodes after unmount",
            vec![
                fmt(
                    "VFS: Busy inodes after unmount",
                    "VFS: Busy inodes after unmount (use-after-free)",
                )
                .no_stack(),
            ],
            &[],
        ),
        group(
            "Internal error:",
            vec![fmt("Internal error:", "Internal error in {1}")
                .alt("bad-access in {1}")
                .stack(fault_stack())],
            &[],
        ),
        group(
            "Unhandled fault:",
            vec![fmt("Unhandled fault:", "Unhandled fault in {1}")
                .alt("bad-access in {1}")
                .stack(fault_stack())],
            &[],
        ),
        group(
            "Alignment trap:",
            vec![fmt("Alignment trap:", "Alignment trap in {1}").stack(fault_stack())],
            &[],
        ),
        group(
            "trusty: panic",
            vec![
                fmt("trusty: panic.* ASSERT FAILED", "trusty: ASSERT FAILED: {1}")
                    .report(r"trusty: panic \(.*?\):(?: DEBUG)? ASSERT FAILED at \(.*?\): (.+)")
                    .no_stack(),
                fmt(
                    "trusty: panic.* ASSERT FAILED.*: *(.*)",
                    "trusty: ASSERT FAILED: {1}",
                )
                .corrupted(),
                fmt("trusty: panic", "trusty: panic: {1}")
                    .report(r"trusty: panic \(.*?\): (.+)")
                    .no_stack(),
            ],
            &[],
        ),
        group(
            "fatal error:",
            vec![fmt("fatal error:", "go runtime error").no_stack()],
            &["ALSA", "fatal error: cannot create timer"],
        ),
        // Messages of the syzkaller executor: harmless to recognise here,
        // and they keep the corpus honest.
        group(
            "SYZFAIL:",
            vec![fmt("SYZFAIL:(.*)", "SYZFAIL:{1}").no_stack()],
            &[],
        ),
        group(
            "SYZFATAL:",
            vec![fmt("SYZFATAL:(.*)()", "SYZFATAL:{1}")
                .alt("SYZFATAL{2}")
                .no_stack()],
            &[],
        ),
        group(
            "panic:",
            vec![
                fmt(
                    "panic: Sentry detected .* stuck task",
                    "panic: Sentry detected stuck tasks",
                )
                .no_stack(),
                fmt("panic:(.*)", "panic:{1}").no_stack(),
            ],
            &["_panic:", "xlog_status:", r"ddb\.onpanic:", "evtlog_status:"],
        ),
    ]);

    let riscv_stack_start = re("status: [0-9a-f]{16} badaddr: [0-9a-f]{16} cause: [0-9a-f]{16}");
    let any_header = Regex::new(
        &groups
            .iter()
            .map(|g| regex::escape(&String::from_utf8_lossy(g.header)))
            .collect::<Vec<_>>()
            .join("|"),
    )
    .unwrap_or_else(|e| panic!("bad header alternation: {e}"));
    Rules {
        any_header,
        groups,
        console_prefix: re(concat!(
            r"^(?:\*\* [0-9]+ printk messages dropped \*\* )?",
            r"(?:.* login: )?(?:<[0-9]+>)?\[ *[0-9]+\.[0-9]+\](\[ *(?:C|T)[0-9]+\])? "
        )),
        task_context: re(r"\[ *T[0-9]+\]"),
        cpu_context: re(r"\[ *C[0-9]+\]"),
        questionable: re(r"(\[<[0-9a-f]+>\])? \? "),
        start_ignores: [
            "invalid opcode: 0000",
            "Kernel panic - not syncing",
            "unregister_netdevice: waiting for",
            "PANIC: double fault",
            "Internal error:",
        ]
        .iter()
        .map(|s| re(s))
        .collect(),
        info_with_stack: [
            "vmalloc: allocation failure:",
            "FAULT_INJECTION: forcing a failure",
            "FAULT_FLAG_ALLOW_RETRY missing",
        ]
        .iter()
        .map(|s| memchr::memmem::Finder::new(s.as_bytes()))
        .collect(),
        stack_start: vec![
            re("Call (?:T|t)race"),
            re("Allocated:"),
            re("Allocated by task [0-9]+:"),
            re("Freed:"),
            re("Freed by task [0-9]+:"),
            // "backtrace:" of kmemleak but not lockdep's "stack backtrace:".
            re(r"[^k] backtrace(?: \(crc [[:xdigit:]]*\))?:"),
            re("Backtrace:"),
            re("Uninit was stored to memory at"),
            riscv_stack_start.clone(),
        ],
        frame_res: vec![
            re("^ *(?:{{PC}} ){0,2}{{FUNC}}"),
            // arm: "[<pc>] (func) from [<pc>] (caller+0x..)".
            re(r"^ *{{PC}} \(([a-zA-Z0-9_.]+)\) from {{PC}} \({{FUNC}}"),
        ],
        skip: SKIP.to_vec(),
        corrupted_lines: vec![
            // Fault injection stacks get mixed into reports.
            re(r"^( \[<?(?:0x)?[0-9a-f]+>?\])? should_fail(slab)?(\.[a-z0-9.]+)?\+0x"),
        ],
        strip_prefixes: vec![
            "SYSC_",
            "SyS_",
            "sys_",
            "__x64_",
            "__ia32_",
            "__arm64_",
            "____sys_",
            "___sys_",
            "__sys_",
            "__se_",
            "__se_sys_",
            "__do_sys_",
            "compat_SYSC_",
            "compat_SyS_",
            "ksys_",
        ],
        corrupted_titles: vec![re(r"\[ *[0-9]+\.[0-9]+\]")],
        rip_frame: re(RIP),
        backtrace_line: re(
            r"(?:\[<(?:(?:0x)?[0-9a-f]+)>\])?[ \t]+\(?(?:[0-9]+:)?([a-zA-Z0-9_.]+)\+0x([0-9a-f]+)/0x([0-9a-f]+)( ?\[([a-zA-Z0-9_.]+)( .*)?\])?\)?",
        ),
        riscv_stack_start,
        stall_anchors: re(&STALL_ANCHORS.join("|")),
    }
}

fn kfence_stack() -> StackSpec {
    stack(vec![
        line("BUG: KFENCE: (?:[a-z\\- ]+) in {{FUNC}}"),
        Part::Trace,
    ])
}

/// Functions that are never the guilty frame, matched as regex searches.
const SKIP: &[&str] = &[
    // Sanitizers and report printing.
    "__sanitizer",
    "__asan",
    "kasan",
    "hwasan",
    "__msan",
    "kmsan",
    "kcsan_setup_watchpoint",
    "check_memory_region",
    "check_heap_object",
    "check_object",
    "read_word_at_a_time",
    "(read|write)_once_.*nocheck",
    "print_address_description",
    "panic",
    "invalid_op",
    "report_bug",
    "fixup_bug",
    "print_report",
    "print_usage_bug",
    "do_error",
    "_trap$|do_trap",
    "show_stack",
    "dump_stack",
    "walk_stack",
    "dump_backtrace",
    "warn_slowpath",
    "warn_alloc",
    "warn_bogus",
    "__warn",
    "print_tainted",
    "^get_taint$",
    "__fortify_report",
    "stack_trace_consume_entry",
    "arch_stack_walk",
    "stack_trace_save",
    "hex_dump_to_buffer",
    "print_hex_dump",
    "assertfail",
    "program_check_exception",
    "program_check_common",
    // Allocators and the page cache.
    "alloc_page",
    "k?v?(?:m|z|c)alloc",
    "krealloc",
    "kmem_cache",
    "allocate_slab",
    "__alloc_frozen_pages_noprof",
    "folio_(?:alloc|unlock)",
    "filemap_alloc_folio",
    "__filemap_get_folio",
    "find_or_create_page",
    "do_read_cache_folio",
    "read_cache_page",
    "pagecache_get_page",
    "grab_cache_page_write_begin",
    "slab_",
    "^kv?free$",
    "kfree_skb",
    "xas_(?:start|load|find)",
    "find_lock_entries",
    "truncate_inode_pages_range",
    "__phys_addr",
    "^(un)?lock_page",
    // Debug objects and lockdep.
    "debug_object",
    "timer_is_static_object",
    "work_is_static_object",
    "print_unlock",
    "imbalance_bug",
    "lockdep",
    "lock_acquire",
    "lock_release",
    "lock_class",
    "mark_lock",
    "(reacquire|mark)_held_locks",
    "(trace|lockdep)_(hard|soft)irq",
    "perf_trace",
    "seqprop_assert",
    // Locking primitives.
    "bh_enable",
    "bh_disable",
    "raw_spin_rq",
    "spin_lock",
    "spin_trylock",
    "spin_unlock",
    "read_lock",
    "read_trylock",
    "write_lock",
    "write_trylock",
    "read_unlock",
    "write_unlock",
    "^down$",
    "down_read",
    "down_write",
    "down_read_trylock",
    "down_write_trylock",
    "down_trylock",
    "up_read",
    "up_write",
    "^mutex_",
    "^__mutex_",
    "^rt_mutex_",
    "owner_on_cpu",
    "osq_lock",
    "osq_unlock",
    "atomic(64)?_(dec|inc|read|set|or|xor|and|add|sub|fetch|xchg|cmpxchg|try)",
    "(set|clear|change|test)_bit",
    "__wake_up",
    "^complete$",
    "wait_for_completion",
    "finish_wait",
    "__might_fault",
    "might_fault",
    "might_sleep",
    "__might_resched",
    // Reference counting.
    "^refcount_",
    "^kref_",
    "ref_tracker",
    "^put_device$",
    "^iput$",
    "^iput_final$",
    "^ihold$",
    "fast_dput",
    "dput",
    "drop_nlink",
    // String, memory and user-copy helpers.
    "memcpy",
    "memcmp",
    "memset",
    "memchr",
    "memmove",
    "memdup",
    "strcmp",
    "strncmp",
    "strcpy",
    "strlcpy",
    "strncpy",
    "strscpy",
    "strlen",
    "strstr",
    "strnstr",
    "strnlen",
    "strchr",
    "strdup",
    "strndup",
    "copy_to_user",
    "copy_from_user",
    "copy_to_iter",
    "copy_from_iter",
    "copy_page_to_iter",
    "copy_page_from_iter",
    "copy_folio_to_iter",
    "^copyin$",
    "^copyout$",
    "put_user",
    "get_user",
    "extract_(user|iter)_to_sg",
    "string",
    "pointer",
    "snprintf",
    "scnprintf",
    "kasprintf",
    "kvasprintf",
    "printk",
    "va_format",
    "dev_info",
    "dev_notice",
    "dev_warn",
    "dev_err",
    "dev_alert",
    "dev_crit",
    "dev_emerg",
    "^crc\\d+",
    "crc_itu_t",
    // Containers.
    "list_add",
    "list_del",
    "list_replace",
    "list_move",
    "list_splice",
    "^rb_",
    "^__rb_",
    "^klist_",
    "rhashtable_lookup",
    "ida_free",
    "_indirect_thunk_",
    // Timers and workqueues.
    "del_timer",
    "lock_timer_base",
    "__timer_delete_sync",
    "sk_stop_timer_sync",
    "__mod_timer",
    "flush_work",
    "__cancel_work_timer",
    "cancel_work_sync",
    "try_to_grab_pending",
    "flush_workqueue",
    "drain_workqueue",
    "destroy_workqueue",
    "queue_work",
    "insert_work",
    "__queue_delayed_work",
    "queue_delayed_work_on",
    "kthread_stop",
    "cleanup_srcu_struct",
    "mark_buffer_dirty",
    // USB plumbing.
    "dummy_urb_enqueue",
    "usb_kill_urb",
    "usb_kill_anchored_urbs",
    "usb_control_msg",
    "usb_hcd_submit_urb",
    "usb_submit_urb",
    // MMIO/PIO accessors.
    "readb$",
    "readw$",
    "readl$",
    "readq$",
    "writeb$",
    "writew$",
    "writel$",
    "writeq$",
    "logic_in",
    "logic_out",
    // arm64 fault entry.
    "do_(kernel|translation)_fault",
    "do_mem_abort",
    "el1_abort",
    "el1h_64_sync(?:_handler)?",
];

/// Driver-core teardown entry points. For most reports the caller that
/// removes the device is the interesting frame; for a hung task the
/// teardown call that never returns *is* the identity (an unplug that hangs
/// in `i2c_del_adapter`), so hung tasks do not skip these.
pub(crate) const TEARDOWN_SKIP: &[&str] = &[
    "kobject_",
    "add_uevent_var",
    "get_device_parent",
    "device_add",
    "device_del",
    "device_unregister",
    "device_destroy",
    "device_release",
    "devres_release_all",
    "hwrng_unregister",
    "i2c_del_adapter",
    "__unregister_client",
    "device_for_each_child",
    "rollback_registered",
    "unregister_netdev",
    "sysfs_remove",
    "device_remove_file",
    "tty_unregister_device",
];

/// Dispatchers below which a stalled loop's identity is taken.
const STALL_ANCHORS: &[&str] = &[
    // Generic dispatch and entry points.
    "process_one_work",
    "do_syscall_",
    "do_fast_syscall_",
    "sysenter_dispatch",
    "tracesys_phase2",
    "el0_svc_handler",
    "invoke_syscall",
    "ret_fast_syscall",
    "netif_receive_skb",
    "do_softirq",
    "call_timer_fn",
    "_run_timers",
    "run_timer_softirq",
    "hrtimer_run",
    "run_ksoftirqd",
    "smpboot_thread_fn",
    "^kthread$",
    "start_secondary",
    "cpu_startup_entry",
    "ret_from_fork",
    // File operation callbacks.
    "vfs_write",
    "vfs_read",
    "vfs_iter_read",
    "vfs_iter_write",
    "do_iter_read",
    "do_iter_write",
    "call_read_iter",
    "call_write_iter",
    "new_sync_read",
    "new_sync_write",
    "vfs_ioctl",
    "ksys_ioctl",
    "compat_ioctl",
    "compat_sys_ioctl",
    "blkdev_driver_ioctl",
    "blkdev_ioctl",
    "do_iter_readv_writev",
    "^call_mmap",
    "mmap_region",
    "do_mmap",
    "do_dentry_open",
    "vfs_open",
    // Socket callbacks.
    "^sock_sendmsg",
    "^sock_recvmsg",
    "^sock_release",
    "^__sock_release",
    "^setsockopt$",
    "kernel_setsockopt",
    "sock_common_setsockopt",
    "^listen$",
    "kernel_listen",
    "sk_common_release",
    "^sock_mmap",
    "^accept$",
    "kernel_accept",
    "^sock_do_ioctl",
    "^sock_ioctl",
    "^compat_sock_ioctl",
    "^nfnetlink_rcv_msg",
    "^rtnetlink_rcv_msg",
    "^netlink_dump",
    "^(sys_)?(socketpair|connect|ioctl)",
    // Page faults.
    "__do_fault",
    "do_page_fault",
    "^page_fault$",
    // Return-to-user work.
    "__fput",
    "task_work_run",
    "exit_to_usermode",
    "smp_call_function",
    "tasklet_action",
    "tasklet_hi_action",
];
