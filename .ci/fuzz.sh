#!/usr/bin/env bash
# Fuzzes the heap with cargo-fuzz (libFuzzer, AddressSanitizer, debug assertions on): the
# target fuzz/fuzz_targets/heap_ops.rs decodes its input into a heap configuration and a
# sequence of allocate / zeroed / free / grow / shrink / Pooled / keyed-slot / clear / trim
# actions, checks them against a model and runs Heap::check() after each.
#
# First every saved reproducer in fuzz/regressions/heap_ops/ is replayed, then the target is
# fuzzed for FUZZ_SECONDS (default 60) from the corpus in fuzz/corpus/heap_ops (kept between
# runs on one machine, not committed). Any crash, assertion or sanitizer report exits non-zero;
# libFuzzer leaves the input in fuzz/artifacts/heap_ops/ (reproduce with
# `cargo +nightly fuzz run heap_ops <file>`, minimise with `cargo +nightly fuzz tmin`).
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
cargo fuzz --version
cargo +nightly --version

export CARGO_TERM_COLOR=never
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/fuzz"
cd fuzz

cargo +nightly fuzz build heap_ops

shopt -s nullglob
regressions=(regressions/heap_ops/*)
if ((${#regressions[@]})); then
    echo "fuzz.sh: replaying ${#regressions[@]} saved reproducer(s)"
    cargo +nightly fuzz run heap_ops "${regressions[@]}" -- -runs=1
fi

mkdir -p corpus/heap_ops
cargo +nightly fuzz run heap_ops corpus/heap_ops -- \
    -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 2>&1 |
    grep -v -E '^(#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)|")' || {
    echo "fuzz.sh: heap_ops FAILED; the input is in fuzz/artifacts/heap_ops/"
    exit 1
}
echo "fuzz.sh: heap_ops ran ${FUZZ_SECONDS}s without a crash"
