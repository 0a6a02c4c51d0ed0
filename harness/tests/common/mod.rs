//! What the VM test binaries share: the precondition check that makes a
//! test without QEMU fail with the command that installs it.

/// Fails the test, saying how to install it, when QEMU is not on PATH.
pub fn require_qemu() {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("qemu-system-x86_64").is_file()));
    assert!(
        found,
        "qemu-system-x86_64 is missing: run `sudo bash ci/setup-host.sh` (QEMU 10 from bookworm-backports)"
    );
}
