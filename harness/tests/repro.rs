//! `dangle repro` end to end on the default kernel:
//! - a console that `known-bugs/gpio-two-irqchips` produced, written to a
//!   file, is reproduced, with that scenario ranked first;
//! - a report from a subsystem no suite covers (ext4) exits 1 at once,
//!   without preparing a kernel or booting anything.
//!
//! VM tests: real QEMU 10 and the default kernel; one VM at a time (the
//! `vm` group).

mod common;
use common::require_qemu;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

fn out_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("repro")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("output dir");
    d
}

fn dangle(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dangle"))
        .args(args)
        .output()
        .expect("run dangle");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn repro_known_bugs_console_reproduces_with_its_scenario_first() {
    require_qemu();
    let dir = out_dir("gpio-two-irqchips");
    // A console known-bugs produced: run the scenario once and keep it.
    let first = dir.join("first");
    let (code, text) = dangle(&[
        "run".as_ref(),
        "known-bugs".as_ref(),
        "--only".as_ref(),
        "gpio-two-irqchips".as_ref(),
        "--artifacts".as_ref(),
        first.as_os_str(),
    ]);
    assert_eq!(
        code, 0,
        "known-bugs/gpio-two-irqchips must reproduce:\n{text}"
    );
    let console = std::fs::read(first.join("gpio-two-irqchips/console.log")).expect("console.log");
    let report = dir.join("report.txt");
    std::fs::write(&report, console).expect("write report");

    let artifacts = dir.join("repro");
    let json = dir.join("repro.json");
    let (code, text) = dangle(&[
        "repro".as_ref(),
        report.as_os_str(),
        "--budget".as_ref(),
        "5m".as_ref(),
        "--artifacts".as_ref(),
        artifacts.as_os_str(),
        "--json".as_ref(),
        json.as_os_str(),
    ]);
    assert_eq!(code, 0, "{text}");
    let v: Value = serde_json::from_slice(&std::fs::read(&json).expect("repro.json")).unwrap();
    assert_eq!(v["ranking"][0]["scenario"], "gpio-two-irqchips", "{text}");
    assert_eq!(
        v["reproduced"]["attempt"]["scenario"], "gpio-two-irqchips",
        "{text}"
    );
    assert!(text.contains("reproduced: same"), "{text}");
    let bundle = artifacts.join("bundle");
    for f in [
        "scenario.yaml",
        "run.json",
        "schedule.json",
        "kernel.json",
        "kernel.config",
        "console.txt",
        "COMMAND",
    ] {
        assert!(bundle.join(f).exists(), "bundle lacks {f}:\n{text}");
    }
    // The bundle lists the scenario with the real loader.
    let (code, text) = dangle(&[
        "run".as_ref(),
        bundle.join("scenario.yaml").as_os_str(),
        "--list".as_ref(),
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("gpio-two-irqchips"), "{text}");
}

const EXT4_KASAN: &str = "\
[   12.000000] ==================================================================
[   12.000100] BUG: KASAN: use-after-free in ext4_xattr_set_entry+0x1f2/0x2a0
[   12.000200] Read of size 4 at addr ffff888012345678 by task touch/300
[   12.000300] Call Trace:
[   12.000400]  <TASK>
[   12.000500]  dump_stack_lvl+0x5d/0x80
[   12.000600]  kasan_report+0xd8/0x110
[   12.000700]  ext4_xattr_set_entry+0x1f2/0x2a0
[   12.000800]  ext4_xattr_ibody_set+0x7a/0x1d0
[   12.000900]  ext4_xattr_set_handle+0x4c1/0xd10
[   12.001000]  __vfs_setxattr+0x10b/0x150
[   12.001100]  do_syscall_64+0x4b/0x110
[   12.001200]  entry_SYSCALL_64_after_hwframe+0x76/0x7e
[   12.001300]  </TASK>
";

#[test]
fn repro_uncovered_subsystem_exits_1_fast_without_booting() {
    let dir = out_dir("ext4");
    let report = dir.join("ext4.txt");
    std::fs::write(&report, EXT4_KASAN).expect("write report");
    let artifacts = dir.join("repro");
    let start = Instant::now();
    let (code, text) = dangle(&[
        "repro".as_ref(),
        report.as_os_str(),
        "--budget".as_ref(),
        "5m".as_ref(),
        "--artifacts".as_ref(),
        artifacts.as_os_str(),
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no scenario of"), "{text}");
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "took {:?}: something was prepared",
        start.elapsed()
    );
    assert!(!artifacts.exists(), "nothing may run:\n{text}");
}
