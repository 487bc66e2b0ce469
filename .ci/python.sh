#!/usr/bin/env bash
# CPython's own regression tests on pyalloc: builds pyalloc-python (python3 with pyalloc
# serving the OBJ and MEM allocator domains) and runs the named set of CPython's tests with it.
# The tests' subprocesses run sys.executable, which is pyalloc-python too.
#
# Skipped, with a printed line, where python3-config is missing (pyalloc-python is then built
# as a stub); any other failure fails the step.
set -euo pipefail
cd "$(dirname "$0")/.."

tests=(test_dict test_tuple test_list test_json test_float test_set test_gc test_weakref)

if ! command -v python3-config >/dev/null; then
    echo "python.sh: skipped: python3-config is not on PATH (no embeddable CPython)"
    exit 0
fi
cargo build --release --locked -p pyalloc-python
binary="${CARGO_TARGET_DIR:-$PWD/target}/release/pyalloc-python"
stub=$("$binary" 2>&1 </dev/null || true)
if [[ $stub == *"built without an embeddable Python"* ]]; then
    # The stub says why (e.g. a Python built without --enable-shared).
    echo "python.sh: skipped: $stub"
    exit 0
fi
"$binary" -c 'import sys; print("pyalloc-python:", sys.version)'
# regrtest writes its scratch files under the current directory's temporary area: run it
# from a directory of its own.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$binary" -m test "${tests[@]}"
