#!/usr/bin/env bash
# The test command of dangle (README, .ci/run): formatting, lints, the unit
# and integration tests, then the short fuzz run.
#
# Installs what it needs on Debian 12 when run as root (ci/setup-host.sh);
# otherwise names the missing pieces.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "host setup"
bash ci/setup-host.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo nextest run --workspace"
cargo nextest run --workspace --locked --profile "${DANGLE_NEXTEST_PROFILE:-default}"
