//! Kernel console -> crash reports, titled the way syzkaller's `pkg/report`
//! titles them, optionally symbolized with the vmlinux DWARF.
//!
//! # Detection
//! A console is read as bytes (non-UTF-8 is fine). Report headers cover
//! KASAN (every access kind), KFENCE, KMSAN, KCSAN, UBSAN, every `BUG:`
//! (NULL dereference, paging request, sleeping in atomic context, spinlock
//! bugs, soft lockup, memory leak, ...), general protection faults, `kernel
//! BUG at`, `WARNING:` (refcount_t and lockdep included), hung tasks, RCU
//! stalls, kernel panics, Oops-style traps (`invalid opcode`, `divide
//! error`, `int3`) and arm's `Internal error`/`Unable to handle kernel`.
//! With `CONFIG_PRINTK_CALLER` (`[  T123]`, `[  C1]`), a report only keeps
//! the lines of its own caller. A report that is cut, interleaved, or has
//! no usable stack is flagged [`Report::corrupted`] (with a reason).
//!
//! # Titles
//! `KASAN: slab-use-after-free Read in at24_read`, `INFO: task hung in
//! i2c_del_adapter`, `possible deadlock in X`, `WARNING in X`, ... The
//! guilty frame is the first frame that is not report machinery, locking,
//! allocator or other common infrastructure; stalls and hung tasks have
//! rules of their own. Titles are normalised (addresses, numbers, line
//! numbers) so the same bug gets the same title from run to run.
//! [`Report::kind`] uses syzkaller's type names (`KASAN-USE-AFTER-FREE-READ`,
//! `HANG`, `LOCKDEP`, `WARNING`, ...).
//!
//! # API
//! - [`parse`]: every report of a whole console, in order.
//! - [`Stream`]: the same, fed as the console grows; reports come out as
//!   soon as they are complete (see [`stream`] for when that is), the rest
//!   on [`Stream::finish`]. `parse(log)` equals pushing `log` into a
//!   `Stream` and finishing it.
//! - [`Symbolizer`]: `func+0xOFF/0xLEN` frames to `file:line` with inlined
//!   frames, from a vmlinux with DWARF ([`Report::symbolize`]).
//! - [`dedup`]: one report per bug (titles and alternative titles).
//!
//! ```
//! let log = b"[ 1.0] INFO: task kworker/u8:1:25 blocked for more than 20 seconds.\n\
//! [ 1.0] Call Trace:\n[ 1.0]  schedule+0x1/0x2\n[ 1.0]  i2c_del_adapter+0x1/0x2\n";
//! let reports = dangle::report::parse(log);
//! assert_eq!(reports[0].title, "INFO: task hung in i2c_del_adapter");
//! assert_eq!(reports[0].kind, "HANG");
//! ```

pub mod cli;
mod extract;
mod rules;
pub mod stream;
pub mod symbolize;
mod title;

use serde::Serialize;

pub use stream::Stream;
pub use symbolize::{SymbolizeError, Symbolizer};
pub use title::{normalize as normalize_title, title_type};

/// One crash report found in a console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Normalised title, e.g. `KASAN: slab-use-after-free Read in at24_read`.
    pub title: String,
    /// Other titles of the same bug, for deduplication.
    pub alt_titles: Vec<String>,
    /// Report type with syzkaller's names (`HANG`, `LOCKDEP`, ...); empty
    /// when the title has no class.
    #[serde(rename = "type")]
    pub kind: String,
    /// The guilty function named in the title (empty if none).
    pub frame: String,
    /// The report is cut, interleaved or lacks a usable stack.
    pub corrupted: bool,
    /// Why it is corrupted.
    pub corrupted_reason: Option<String>,
    /// Console offset of the first byte of the header line.
    pub start: u64,
    /// Console offset one past the report's last byte.
    pub end: u64,
    /// The report's text: a few context lines of the same caller, then its
    /// lines with console prefixes removed (bytes as printed).
    #[serde(serialize_with = "lossy")]
    pub report: Vec<u8>,
    /// The `func+0xOFF/0xLEN` frames of the report, in order.
    pub frames: Vec<Frame>,
}

/// A stack frame of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Frame {
    /// Function name.
    pub function: String,
    /// Offset into the function (`+0xOFF`).
    pub offset: u64,
    /// Function size (`/0xLEN`).
    #[serde(skip)]
    pub size: u64,
    /// Module the function lives in (`[module]`), `None` for vmlinux.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Source file, once symbolized.
    pub file: Option<String>,
    /// Source line, once symbolized.
    pub line: Option<u32>,
    /// An inlined call inside the next frame of the list (same address).
    pub inlined: bool,
    /// The address is the faulting PC (a `RIP:` line), not a return address.
    #[serde(skip)]
    pub exact_pc: bool,
}

fn lossy<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(bytes))
}

/// Every report in a whole console log, in order of their header lines.
pub fn parse(console: &[u8]) -> Vec<Report> {
    let mut s = Stream::new();
    let mut out = s.push(console);
    out.extend(s.finish());
    out.sort_by_key(|r| r.start);
    out
}

/// Keeps the first report of each bug: two reports are the same bug when
/// their titles or alternative titles intersect. A corrupted report never
/// absorbs a clean one: if the first of a bug was corrupted and a later one
/// is not, the clean one takes its place. Returns the reports with how many
/// times each bug was seen, in order of first appearance.
pub fn dedup(reports: Vec<Report>) -> Vec<(Report, usize)> {
    let mut out: Vec<(Report, usize)> = Vec::new();
    for r in reports {
        let same = out.iter_mut().find(|(k, _)| {
            let names = |x: &Report| {
                std::iter::once(x.title.clone())
                    .chain(x.alt_titles.iter().cloned())
                    .collect::<Vec<_>>()
            };
            let theirs = names(k);
            names(&r).iter().any(|t| theirs.contains(t))
        });
        match same {
            Some((kept, n)) => {
                *n += 1;
                if kept.corrupted && !r.corrupted {
                    *kept = r;
                }
            }
            None => out.push((r, 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A KASAN report as lkdtm's WRITE_AFTER_FREE prints it on 6.12.
    const LKDTM_UAF: &str = "\
[   41.123456][  T321] lkdtm: Performing direct entry WRITE_AFTER_FREE
[   41.123789][  T321] lkdtm: Allocated memory ffff888104a3c000-ffff888104a3c400
[   41.124001][  T321] lkdtm: Attempting bad write to freed memory at ffff888104a3c200
[   41.124400][  T321] ==================================================================
[   41.124900][  T321] BUG: KASAN: slab-use-after-free in lkdtm_WRITE_AFTER_FREE+0x10b/0x130
[   41.125300][  T321] Write of size 4 at addr ffff888104a3c200 by task sh/321
[   41.125700][  T321]
[   41.125900][  T321] CPU: 1 UID: 0 PID: 321 Comm: sh Not tainted 6.12.48 #1
[   41.126300][  T321] Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.3-debian-1.16.3-2 04/01/2014
[   41.126700][  T321] Call Trace:
[   41.126900][  T321]  <TASK>
[   41.127100][  T321]  dump_stack_lvl+0x5d/0x80
[   41.127300][  T321]  print_report+0xce/0x630
[   41.127500][  T321]  ? lkdtm_WRITE_AFTER_FREE+0x10b/0x130
[   41.127700][  T321]  kasan_report+0xd8/0x110
[   41.127900][  T321]  ? lkdtm_WRITE_AFTER_FREE+0x10b/0x130
[   41.128100][  T321]  lkdtm_WRITE_AFTER_FREE+0x10b/0x130
[   41.128300][  T321]  lkdtm_do_action+0x22/0x40
[   41.128500][  T321]  direct_entry+0x17c/0x1e0
[   41.128700][  T321]  full_proxy_write+0x10b/0x190
[   41.128900][  T321]  vfs_write+0x1a1/0xc30
[   41.129100][  T321]  ksys_write+0xec/0x1c0
[   41.129300][  T321]  do_syscall_64+0x4b/0x110
[   41.129500][  T321]  entry_SYSCALL_64_after_hwframe+0x76/0x7e
[   41.129700][  T321] RIP: 0033:0x7f3c5b2a1234
[   41.129900][  T321]  </TASK>
[   41.130100][  T321]
[   41.130300][  T321] Allocated by task 321:
[   41.130500][  T321]  kasan_save_stack+0x33/0x60
[   41.130700][  T321]  kasan_save_track+0x14/0x30
[   41.130900][  T321]  __kasan_kmalloc+0xaa/0xb0
[   41.131100][  T321]  lkdtm_WRITE_AFTER_FREE+0x45/0x130
[   41.131300][  T321]  lkdtm_do_action+0x22/0x40
[   41.131500][  T321]
[   41.131700][  T321] Freed by task 321:
[   41.131900][  T321]  kasan_save_stack+0x33/0x60
[   41.132100][  T321]  kasan_save_track+0x14/0x30
[   41.132300][  T321]  kasan_save_free_info+0x3b/0x60
[   41.132500][  T321]  __kasan_slab_free+0x51/0x70
[   41.132700][  T321]  kfree+0x130/0x390
[   41.132900][  T321]  lkdtm_WRITE_AFTER_FREE+0x83/0x130
[   41.133100][  T321]
[   41.133300][  T321] The buggy address belongs to the object at ffff888104a3c000
[   41.133500][  T321]  which belongs to the cache kmalloc-1k of size 1024
[   41.133700][  T321] ==================================================================
[   41.133900][  T321] Disabling lock debugging due to kernel taint
[   41.134100][  T321] lkdtm: Memory correctly poisoned (0)
";

    /// A hung unplug: the kworker removing a virtio-i2c adapter waits for
    /// the adapter's last user forever.
    const HUNG_UNPLUG: &str = "\
[  143.551000] virtio_i2c virtio3: removing
[  184.760211] INFO: task kworker/u8:1:25 blocked for more than 20 seconds.
[  184.761003]       Not tainted 6.12.48 #1
[  184.761512] \"echo 0 > /proc/sys/kernel/hung_task_timeout_secs\" disables this message.
[  184.762220] task:kworker/u8:1    state:D stack:0     pid:25    tgid:25    ppid:2      flags:0x00004000
[  184.763050] Workqueue: kacpi_hotplug acpi_hotplug_work_fn
[  184.763600] Call Trace:
[  184.763900]  <TASK>
[  184.764100]  __schedule+0x8c4/0x2390
[  184.764500]  ? __pfx___schedule+0x10/0x10
[  184.764900]  schedule+0xe7/0x3a0
[  184.765200]  schedule_timeout+0x1f8/0x270
[  184.765600]  ? __pfx_schedule_timeout+0x10/0x10
[  184.766000]  __wait_for_common+0x1d3/0x4e0
[  184.766400]  wait_for_completion+0x1c/0x30
[  184.766800]  i2c_del_adapter+0x3c6/0x5f0
[  184.767200]  virtio_i2c_remove+0x2e/0x70
[  184.767600]  virtio_dev_remove+0xdd/0x250
[  184.768000]  device_release_driver_internal+0x371/0x530
[  184.768400]  bus_remove_device+0x212/0x390
[  184.768800]  device_del+0x37f/0x9d0
[  184.769200]  device_unregister+0x17/0xb0
[  184.769600]  unregister_virtio_device+0x42/0x90
[  184.770000]  virtio_pci_remove+0x9a/0x150
[  184.770400]  pci_device_remove+0xab/0x1e0
[  184.770800]  process_one_work+0x958/0x1b30
[  184.771200]  worker_thread+0x6c8/0xf10
[  184.771600]  kthread+0x2c1/0x3a0
[  184.772000]  ret_from_fork+0x45/0x80
[  184.772400]  ret_from_fork_asm+0x1a/0x30
[  184.772800]  </TASK>
[  184.773200] 
[  184.773200] Showing all locks held in the system:
[  184.773600] 1 lock held by khungtaskd/30:
";

    #[test]
    fn parse_lkdtm_write_after_free_titled_as_kasan_write() {
        let r = parse(LKDTM_UAF.as_bytes());
        assert_eq!(r.len(), 1, "{r:#?}");
        let r = &r[0];
        assert_eq!(
            r.title,
            "KASAN: slab-use-after-free Write in lkdtm_WRITE_AFTER_FREE"
        );
        assert_eq!(r.kind, "KASAN-USE-AFTER-FREE-WRITE");
        assert_eq!(r.frame, "lkdtm_WRITE_AFTER_FREE");
        assert!(!r.corrupted, "{:?}", r.corrupted_reason);
        let start = usize::try_from(r.start).expect("fits");
        assert!(LKDTM_UAF.as_bytes()[start..].starts_with(b"[   41.124900][  T321] BUG: KASAN"));
        assert!(r.report.starts_with(b"lkdtm: Performing direct entry"));
        assert!(r.frames.iter().any(|f| f.function == "lkdtm_do_action"));
    }

    #[test]
    fn parse_hung_unplug_titled_in_i2c_del_adapter() {
        let r = parse(HUNG_UNPLUG.as_bytes());
        assert_eq!(r.len(), 1, "{r:#?}");
        assert_eq!(r[0].title, "INFO: task hung in i2c_del_adapter");
        assert_eq!(r[0].kind, "HANG");
        assert!(!r[0].corrupted, "{:?}", r[0].corrupted_reason);
        assert!(
            r[0].alt_titles
                .contains(&"hang in i2c_del_adapter".to_owned())
        );
    }

    #[test]
    fn parse_clean_boot_log_has_no_reports() {
        let log = b"[    0.000000] Linux version 6.12.48\n[    1.0] WARNING: kernel not compiled with CPU_SRSO\n\
[    2.0] virtio_i2c virtio3: probed\n";
        assert!(parse(log).is_empty());
    }

    #[test]
    fn parse_truncated_report_marked_corrupted() {
        let log = b"[   10.0] BUG: kernel NULL pointer dereference, address: 0000000000000008\n\
[   10.0] #PF: supervisor read access in kernel mode\n";
        let r = parse(log);
        assert_eq!(r.len(), 1);
        assert!(r[0].corrupted);
        assert_eq!(
            r[0].title,
            "BUG: unable to handle kernel NULL pointer dereference in corrupted"
        );
    }

    #[test]
    fn parse_interleaved_callers_give_two_clean_reports() {
        let mut log = String::new();
        let hung: Vec<&str> = HUNG_UNPLUG.lines().skip(1).collect();
        let uaf: Vec<&str> = LKDTM_UAF.lines().collect();
        for i in 0..hung.len().max(uaf.len()) {
            if let Some(l) = uaf.get(i) {
                log.push_str(l);
                log.push('\n');
            }
            if let Some(l) = hung.get(i) {
                // Give the hung-task lines a caller id of their own.
                log.push_str(&l.replacen("] ", "][   T30] ", 1));
                log.push('\n');
            }
        }
        let r = parse(log.as_bytes());
        let titles: Vec<&str> = r.iter().map(|r| r.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "INFO: task hung in i2c_del_adapter",
                "KASAN: slab-use-after-free Write in lkdtm_WRITE_AFTER_FREE"
            ],
            "{r:#?}"
        );
        assert!(r.iter().all(|r| !r.corrupted), "{r:#?}");
    }

    #[test]
    fn dedup_same_title_counted_once() {
        let mut twice = parse(HUNG_UNPLUG.as_bytes());
        twice.extend(parse(HUNG_UNPLUG.as_bytes()));
        twice.extend(parse(LKDTM_UAF.as_bytes()));
        let d = dedup(twice);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].1, 2);
        assert_eq!(d[1].1, 1);
    }

    #[test]
    fn parse_other_callers_lines_filtered_out() {
        let mut log = String::new();
        for l in LKDTM_UAF.lines() {
            log.push_str(l);
            log.push('\n');
            if l.contains("Call Trace") {
                log.push_str("[   41.126800][  T999] other_task_noise+0x1/0x2\n");
            }
        }
        let r = parse(log.as_bytes());
        assert_eq!(r.len(), 1);
        assert!(!String::from_utf8_lossy(&r[0].report).contains("other_task_noise"));
    }
}
