//! Title normalisation and the mapping from titles to report types.
//!
//! Normalisation removes what changes from run to run (addresses, numbers,
//! line numbers, CPU numbers, IPs, `+0xOFF/0xLEN`) so the same bug from two
//! runs gets the same title. Types use the names of syzkaller's corpus
//! (`KASAN-USE-AFTER-FREE-READ`, `HANG`, `LOCKDEP`, ...).

use std::sync::LazyLock;

use regex::bytes::Regex;

use super::rules::re;

/// Longest title kept: interleaved lines can make the header line huge.
const MAX_TITLE_LEN: usize = 120;

struct Replacement {
    pattern: Regex,
    with: &'static [u8],
}

static REPLACEMENTS: LazyLock<Vec<Replacement>> = LazyLock::new(|| {
    [
        // syzkaller's executor pids.
        (r"syz-executor\.?[0-9]+((/|:)[0-9]+)?", "syz-executor"),
        (r"syzkaller[0-9]+((/|:)[0-9]+)?", "syzkaller"),
        // Anything that looks like an address.
        (r"([^a-zA-Z0-9])(?:0x)?[0-9a-f]{6,}", "${1}ADDR"),
        (r"([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})", "IP"),
        // file.c:123 -> file.c:LINE
        (r"(\.\w+)(:[0-9]+)+", "${1}:LINE"),
        // func+0x1052/0x2d80 -> func
        (r"([a-zA-Z][a-zA-Z0-9_.]+)\+0x[0-9a-z]+/0x[0-9a-z]+", "${1}"),
        (r"CPU#[0-9]+", "CPU"),
        // Remaining standalone decimal numbers (repeated: "0,1,2" overlaps).
        (r"(\W)(\d+)(\W|$)", "${1}NUM${3}"),
        // Digits inside names are kept (cfg80211) unless too long to be one.
        (r"(\d+){7,}", "NUM"),
    ]
    .into_iter()
    .map(|(p, w)| Replacement {
        pattern: re(p),
        with: w.as_bytes(),
    })
    .collect()
});

/// Normalises a raw title: dynamic parts replaced, control and non-ASCII
/// bytes dropped, runs of spaces squeezed, at most 120 bytes.
pub fn normalize(raw: &[u8]) -> String {
    let mut cur = raw.to_vec();
    for r in REPLACEMENTS.iter() {
        loop {
            let next = r.pattern.replace_all(&cur, r.with).into_owned();
            if next == cur {
                break;
            }
            cur = next;
        }
    }
    sanitize(&cur)
}

fn sanitize(title: &[u8]) -> String {
    let mut out = String::with_capacity(title.len().min(MAX_TITLE_LEN));
    let mut prev = b' ';
    for &b in title.iter().take(MAX_TITLE_LEN) {
        let ch = match b {
            b'\t' => b' ',
            0..0x20 | 0x7f.. => continue,
            _ => b,
        };
        if ch == b' ' && prev == b' ' {
            continue;
        }
        out.push(char::from(ch));
        prev = ch;
    }
    out.trim().to_owned()
}

/// Title prefixes and the type they imply; the first match wins, so more
/// specific prefixes come first.
const TYPES: &[(&str, &str)] = &[
    (
        "KFENCE: use-after-free write",
        "KFENCE-USE-AFTER-FREE-WRITE",
    ),
    ("KFENCE: use-after-free", "KFENCE-USE-AFTER-FREE-READ"),
    ("KFENCE: invalid write", "KFENCE-WRITE"),
    ("KFENCE: out-of-bounds write", "KFENCE-WRITE"),
    ("KFENCE: invalid read", "KFENCE-READ"),
    ("KFENCE: out-of-bounds", "KFENCE-READ"),
    ("KFENCE: memory corruption", "KFENCE-MEMORY-CORRUPTION"),
    ("KFENCE: invalid free", "KFENCE-INVALID-FREE"),
    ("KMSAN: uninit-value", "KMSAN-UNINIT-VALUE"),
    (
        "KMSAN: kernel-infoleak-after-free",
        "KMSAN-USE-AFTER-FREE-READ",
    ),
    (
        "KMSAN: kernel-usb-infoleak-after-free",
        "KMSAN-USE-AFTER-FREE-READ",
    ),
    ("KMSAN: use-after-free", "KMSAN-USE-AFTER-FREE-READ"),
    ("KMSAN: kernel-infoleak", "KMSAN-INFO-LEAK"),
    ("KMSAN: kernel-usb-infoleak", "KMSAN-INFO-LEAK"),
    (
        "KASAN: null-ptr-deref Write",
        "KASAN-NULL-POINTER-DEREFERENCE-WRITE",
    ),
    (
        "KASAN: null-ptr-deref Read",
        "KASAN-NULL-POINTER-DEREFERENCE-READ",
    ),
    (
        "BUG: unable to handle kernel NULL pointer dereference in",
        "NULL-POINTER-DEREFERENCE",
    ),
    (
        "KASAN: slab-use-after-free Write",
        "KASAN-USE-AFTER-FREE-WRITE",
    ),
    ("KASAN: use-after-free Write", "KASAN-USE-AFTER-FREE-WRITE"),
    ("KASAN: slab-use-after-free", "KASAN-USE-AFTER-FREE-READ"),
    ("KASAN: use-after-free", "KASAN-USE-AFTER-FREE-READ"),
    ("KASAN: double-free or invalid-free", "KASAN-INVALID-FREE"),
    ("KASAN: invalid-free", "KASAN-INVALID-FREE"),
    ("KASAN: double-free", "KASAN-INVALID-FREE"),
    ("BUG: corrupted list", "MEMORY_SAFETY_BUG"),
    (
        "BUG: unable to handle kernel paging request",
        "MEMORY_SAFETY_BUG",
    ),
    ("WARNING: refcount bug", "REFCOUNT_WARNING"),
    ("UBSAN: array-index-out-of-bounds", "MEMORY_SAFETY_UBSAN"),
    ("KCSAN: data-race", "KCSAN-DATARACE"),
    ("KCSAN: assert: race in", "KCSAN-ASSERT"),
    ("BUG: bad unlock balance in", "LOCKDEP"),
    ("BUG: held lock freed in", "LOCKDEP"),
    ("BUG: rwlock", "LOCKDEP"),
    ("BUG: spinlock", "LOCKDEP"),
    ("BUG: still has locks held in", "LOCKDEP"),
    ("BUG: using", "LOCKDEP"),
    ("WARNING: bad unlock balance in", "LOCKDEP"),
    ("WARNING: held lock freed in", "LOCKDEP"),
    ("WARNING: lock held", "LOCKDEP"),
    ("WARNING: locking bug in", "LOCKDEP"),
    ("WARNING: nested lock was not taken in", "LOCKDEP"),
    ("WARNING: still has locks held in", "LOCKDEP"),
    ("WARNING: suspicious RCU usage in", "LOCKDEP"),
    ("inconsistent lock state in", "LOCKDEP"),
    ("possible deadlock in", "LOCKDEP"),
    ("BUG: scheduling while atomic in", "ATOMIC_SLEEP"),
    (
        "BUG: sleeping function called from invalid context in",
        "ATOMIC_SLEEP",
    ),
    ("memory leak in", "LEAK"),
    ("BUG: bad usercopy in", "BUG"),
    ("kernel BUG", "BUG"),
    ("WARNING in", "WARNING"),
    // printk()-style reports with no class of their own.
    ("BUG: stack guard page was hit in", ""),
    ("WARNING: corrupted", ""),
    ("WARNING: kernel stack frame pointer has bad value", ""),
    ("WARNING: kernel stack regs has bad", ""),
    ("BUG: soft lockup in", "HANG"),
    ("INFO: rcu detected stall in", "HANG"),
    ("INFO: task can't die in", "HANG"),
    ("INFO: task hung in", "HANG"),
    ("Alignment trap in", "DoS"),
    ("BUG: Object already free", "DoS"),
    ("Internal error in", "DoS"),
    ("PANIC: double fault", "DoS"),
    ("Unhandled fault in", "DoS"),
    ("VFS: Busy inodes after unmount (use-after-free)", "DoS"),
    ("VFS: Close: file count is zero (use-after-free)", "DoS"),
    ("divide error in", "DoS"),
    ("general protection fault in", "DoS"),
    ("go runtime error", "DoS"),
    ("int3 in", "DoS"),
    ("invalid opcode in", "DoS"),
    ("kernel panic:", "DoS"),
    ("kernel stack overflow", "DoS"),
    ("panic:", "DoS"),
    ("rust_kernel panicked", "DoS"),
    ("stack segment fault in", "DoS"),
    ("trusty:", "DoS"),
    (
        "unregister_netdevice: waiting for DEV to become free",
        "DoS",
    ),
    ("unexpected kernel reboot", "REBOOT"),
    ("SYZFAIL", "SYZ_FAILURE"),
    ("SYZFATAL:", "SYZ_FAILURE"),
    // Fallbacks by family.
    ("WARNING:", "WARNING"),
    ("BUG:", ""),
    ("INFO:", ""),
    ("KASAN:", "KASAN-UNKNOWN"),
    ("KFENCE:", "KFENCE-UNKNOWN"),
    ("KMSAN:", "KMSAN-UNKNOWN"),
    ("UBSAN:", "UBSAN"),
    ("KCSAN:", "KCSAN-UNKNOWN"),
];

/// The KASAN read/write types are keyed on the access kind too.
const KASAN_ACCESS: &[(&str, &str)] = &[
    ("KASAN: invalid-access Read", "KASAN-READ"),
    ("KASAN: unknown-crash Read", "KASAN-READ"),
];

/// The report type of a normalised title, as named by syzkaller's corpus;
/// empty when the title has no class.
pub fn title_type(title: &str) -> &'static str {
    if let Some(rest) = title.strip_prefix("KASAN: ") {
        // "<kind>-out-of-bounds Read|Write", "*-memory-access Read|Write".
        let kind = rest.split(' ').next().unwrap_or("");
        if kind.ends_with("out-of-bounds") || kind.ends_with("-memory-access") {
            let access = rest.get(kind.len()..).unwrap_or("");
            if access.starts_with(" Write") {
                return "KASAN-WRITE";
            }
            // Without an access kind it is at least a read.
            if access.starts_with(" Read")
                || matches!(
                    kind,
                    "slab-out-of-bounds" | "stack-out-of-bounds" | "wild-memory-access"
                )
            {
                return "KASAN-READ";
            }
        }
    }
    KASAN_ACCESS
        .iter()
        .chain(TYPES)
        .find(|(prefix, _)| title.starts_with(prefix))
        .map_or("", |(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_addresses_and_numbers_replaced() {
        assert_eq!(
            normalize(b"BUG: Bad page state in process syz-executor.3  pfn:ffff8880 at 10.0.2.15 CPU#1 x.c:12"),
            "BUG: Bad page state in process syz-executor pfn:ADDR at IP CPU x.c:LINE"
        );
        assert_eq!(normalize(b"WARNING in foo+0x12/0x40"), "WARNING in foo");
        assert_eq!(
            normalize(b"kernel panic: 1,2,3"),
            "kernel panic: NUM,NUM,NUM"
        );
    }

    #[test]
    fn normalize_non_ascii_dropped_and_truncated() {
        let mut raw = b"BUG: \xff\xfeweird\t\ttitle".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 300));
        let t = normalize(&raw);
        assert!(t.starts_with("BUG: weird title"));
        assert!(t.len() <= MAX_TITLE_LEN);
    }

    #[test]
    fn title_type_known_prefixes_mapped() {
        assert_eq!(
            title_type("KASAN: slab-use-after-free Write in lkdtm_WRITE_AFTER_FREE"),
            "KASAN-USE-AFTER-FREE-WRITE"
        );
        assert_eq!(
            title_type("KASAN: slab-out-of-bounds Write in x"),
            "KASAN-WRITE"
        );
        assert_eq!(title_type("KASAN: stack-out-of-bounds in x"), "KASAN-READ");
        assert_eq!(title_type("INFO: task hung in i2c_del_adapter"), "HANG");
        assert_eq!(title_type("WARNING: refcount bug in x"), "REFCOUNT_WARNING");
        assert_eq!(title_type("possible deadlock in x"), "LOCKDEP");
        assert_eq!(title_type("BUG: stack guard page was hit in x"), "");
    }
}
