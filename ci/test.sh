#!/usr/bin/env bash
# The test command of dangle (README, .ci/run):
#   formatting, lints, unused dependencies, the kernel and initramfs the VM
#   tests boot, every test (unit, integration, VM, suites), then a short
#   fuzz run.
#
# On Debian 12 as root it installs what it needs (ci/setup-host.sh);
# otherwise it names what is missing. Environment:
#   DANGLE_NEXTEST_PROFILE  nextest profile (default: default; CI: ci)
#   FUZZ_SECONDS            seconds per fuzz target (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "host setup"
if [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null; then
    bash ci/setup-host.sh
else
    for tool in qemu-system-x86_64 flex bison bc ccache cpio; do
        command -v "$tool" >/dev/null || { echo "missing $tool: run 'sudo bash ci/setup-host.sh'" >&2; exit 3; }
    done
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo machete (unused dependencies)"
# Every Cargo.toml below the root, the fuzz crate's too. A false positive
# goes in that crate's [package.metadata.cargo-machete] ignored list, with
# the reason next to it.
command -v cargo-machete >/dev/null || cargo install --locked cargo-machete
cargo machete --skip-target-dir

step "kernel (built once, then from the cache) and initramfs"
cargo run --locked -q -p dangle -- kernel build
cargo run --locked -q -p dangle -- image

step "cargo nextest run --workspace"
cargo nextest run --workspace --locked --profile "${DANGLE_NEXTEST_PROFILE:-default}"

step "fuzz (short)"
FUZZ_SECONDS="${FUZZ_SECONDS:-10}" bash ci/fuzz.sh
