#!/usr/bin/env bash
# Runs every cargo-fuzz target of backends/fuzz for a bounded time and fails
# when one of them finds a crash, printing the saved input (artefact).
#
#   FUZZ_SECONDS=30 bash ci/fuzz.sh [TARGET...]
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 30; CI uses a few)
#   FUZZ_TOOLCHAIN  rustup toolchain with -Z flags (default nightly)
#   FUZZ_SANITIZER  cargo-fuzz --sanitizer (default none: the code under test
#                   is safe Rust, so ASan only slows the build and the run;
#                   use address to check anyway)
#
# Corpora grow under backends/fuzz/corpus/TARGET (ignored by git) and are
# reused on the next run. Reproduce a crash with
#   cd backends/fuzz && cargo +nightly fuzz run TARGET ARTEFACT
set -euo pipefail
cd "$(dirname "$0")/../backends/fuzz"

seconds="${FUZZ_SECONDS:-30}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
sanitizer="${FUZZ_SANITIZER:-none}"

if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "fuzz.sh: FUZZ_SECONDS must be a whole number of seconds >= 1, not '$seconds'" >&2
    exit 2
fi
if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    echo "fuzz.sh: toolchain '$toolchain' is missing: rustup toolchain install $toolchain" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

fuzz=(cargo "+$toolchain" fuzz)
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <("${fuzz[@]}" list)
fi
if [ "${#targets[@]}" -eq 0 ]; then
    echo "fuzz.sh: no fuzz targets found" >&2
    exit 2
fi

# Debug assertions on: an arithmetic overflow is a bug worth a crash here.
build_flags=(--sanitizer "$sanitizer" --debug-assertions)
echo "==> building ${targets[*]}"
for target in "${targets[@]}"; do
    "${fuzz[@]}" build "${build_flags[@]}" "$target"
done

failed=()
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for target in "${targets[@]}"; do
    echo "==> fuzzing $target for ${seconds}s"
    mkdir -p "corpus/$target" "artifacts/$target"
    if ! "${fuzz[@]}" run "${build_flags[@]}" "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        2>&1 | tee "$log"; then
        failed+=("$target")
        echo "fuzz.sh: target $target failed; input saved as:" >&2
        # libFuzzer names the file it wrote: "Test unit written to PATH".
        sed -n 's/.*Test unit written to \(.*\)$/  \1/p' "$log" >&2
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz.sh: failing targets: ${failed[*]}" >&2
    exit 1
fi
echo "==> all ${#targets[@]} fuzz targets ran ${seconds}s without a crash"
