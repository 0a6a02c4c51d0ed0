//! Choosing the accelerator: KVM only when a probe VM really boots.
//!
//! On nested cloud machines `/dev/kvm` exists and opens, yet the first
//! real guest code dies with "KVM internal error". So `auto` boots the
//! actual test kernel under KVM without an initramfs: reaching the
//! "VFS: Unable to mount root fs" panic (or running init) proves that KVM
//! executes a whole kernel boot. The verdict is cached per host boot (it
//! cannot change until the host reboots).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::qemu::Accel;

/// How long the KVM probe may take; a working KVM boots to the panic in a
/// second or two, so this only bounds the broken cases that hang.
pub const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the user asked for.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    /// KVM if a probe VM boots, else TCG.
    #[default]
    Auto,
    /// KVM, no fallback.
    Kvm,
    /// TCG.
    Tcg,
}

/// The outcome of a KVM probe, with the reason for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeVerdict {
    /// Whether KVM booted the kernel.
    pub usable: bool,
    /// Human reason ("booted to init panic in 1.2s", "KVM internal error").
    pub reason: String,
}

/// Markers on the console that prove the kernel ran its whole boot.
const BOOTED_MARKERS: [&str; 3] = [
    "VFS: Unable to mount root fs",
    "Run /init as init process",
    "No working init found",
];

/// Judges a finished or timed-out probe from its console and stderr.
pub fn judge_probe(console: &str, stderr: &str, elapsed: Duration) -> ProbeVerdict {
    if stderr.contains("KVM internal error") || console.contains("KVM internal error") {
        return ProbeVerdict {
            usable: false,
            reason: "KVM internal error (nested KVM is broken on this host)".into(),
        };
    }
    if BOOTED_MARKERS.iter().any(|m| console.contains(m)) {
        return ProbeVerdict {
            usable: true,
            reason: format!(
                "probe kernel booted under KVM in {:.1}s",
                elapsed.as_secs_f64()
            ),
        };
    }
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    ProbeVerdict {
        usable: false,
        reason: if last.is_empty() {
            format!(
                "probe kernel did not boot under KVM within {:.0}s",
                elapsed.as_secs_f64()
            )
        } else {
            format!("qemu: {last}")
        },
    }
}

/// Boots `kernel` under KVM without an initramfs and judges the result.
pub fn probe_kvm(qemu: &Path, kernel: &Path, work: &Path) -> ProbeVerdict {
    if fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return ProbeVerdict {
            usable: false,
            reason: "/dev/kvm is missing or not accessible".into(),
        };
    }
    let console = work.join("kvm-probe-console.log");
    let stderr_path = work.join("kvm-probe-stderr.log");
    let _ = fs::remove_file(&console);
    let Ok(stderr_file) = fs::File::create(&stderr_path) else {
        return ProbeVerdict {
            usable: false,
            reason: format!("cannot write {}", stderr_path.display()),
        };
    };
    let mut cmd = Command::new(qemu);
    cmd.args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
        .args(["-accel", "kvm", "-cpu", "host", "-m", "256M", "-smp", "1"])
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr_file);
    let start = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return ProbeVerdict {
                usable: false,
                reason: format!("cannot start {}: {e}", qemu.display()),
            };
        }
    };
    let mut verdict = None;
    while start.elapsed() < KVM_PROBE_TIMEOUT {
        let text = fs::read_to_string(&console).unwrap_or_default();
        let err = fs::read_to_string(&stderr_path).unwrap_or_default();
        let v = judge_probe(&text, &err, start.elapsed());
        if v.usable || err.contains("KVM internal error") {
            verdict = Some(v);
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    verdict.unwrap_or_else(|| {
        judge_probe(
            &fs::read_to_string(&console).unwrap_or_default(),
            &fs::read_to_string(&stderr_path).unwrap_or_default(),
            start.elapsed(),
        )
    })
}

fn host_boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// Resolves the user's choice to an accelerator, probing (and caching the
/// verdict in `cache_dir`) for `auto`.
pub fn resolve(
    choice: AccelChoice,
    qemu: &Path,
    kernel: &Path,
    cache_dir: &Path,
) -> (Accel, String) {
    match choice {
        AccelChoice::Kvm => (Accel::Kvm, "requested".into()),
        AccelChoice::Tcg => (Accel::Tcg, "requested".into()),
        AccelChoice::Auto => {
            let cache: PathBuf = cache_dir.join(format!("kvm-probe-{}", host_boot_id()));
            if let Ok(s) = fs::read_to_string(&cache) {
                if let Some((verdict, reason)) = s.split_once('\n') {
                    let accel = if verdict == "kvm" {
                        Accel::Kvm
                    } else {
                        Accel::Tcg
                    };
                    return (accel, format!("{} (cached)", reason.trim()));
                }
            }
            let _ = fs::create_dir_all(cache_dir);
            let v = probe_kvm(qemu, kernel, cache_dir);
            let accel = if v.usable { Accel::Kvm } else { Accel::Tcg };
            let _ = fs::write(&cache, format!("{accel}\n{}\n", v.reason));
            (accel, v.reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_probe_internal_error_is_unusable() {
        let v = judge_probe(
            "",
            "KVM internal error. Suberror: 1\nextra data[0]: 0x0\n",
            Duration::from_secs(1),
        );
        assert!(!v.usable);
        assert!(v.reason.contains("KVM internal error"));
    }

    #[test]
    fn judge_probe_vfs_panic_is_usable() {
        let v = judge_probe(
            "[    1.2] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n",
            "",
            Duration::from_millis(1500),
        );
        assert!(v.usable, "{v:?}");
    }

    #[test]
    fn judge_probe_silence_is_unusable_with_reason() {
        let v = judge_probe("SeaBIOS\n", "", Duration::from_secs(30));
        assert!(!v.usable);
        assert!(v.reason.contains("did not boot"), "{}", v.reason);
        let v = judge_probe(
            "",
            "qemu-system-x86_64: failed to initialize kvm: Permission denied\n",
            Duration::from_secs(1),
        );
        assert!(v.reason.contains("Permission denied"), "{}", v.reason);
    }
}
