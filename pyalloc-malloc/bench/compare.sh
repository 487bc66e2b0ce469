#!/usr/bin/env bash
# compare.sh RUNS COMMAND...: runs COMMAND RUNS times without and RUNS times with
# libpyalloc_malloc.so preloaded, alternating (this machine is shared and noisy: alternating
# spreads the noise over both), and prints the median wall time of each, with every run.
# The library is target/release/libpyalloc_malloc.so, or $PYALLOC_MALLOC_LIB.
# Output goes to /dev/null; stdin is /dev/null (give a script a file argument instead).
set -euo pipefail
lib=${PYALLOC_MALLOC_LIB:-$(cd "$(dirname "$0")/../.." && pwd)/target/release/libpyalloc_malloc.so}
[ -f "$lib" ] || { echo "no $lib: cargo build --release -p pyalloc-malloc" >&2; exit 1; }
runs=$1
shift
plain=()
preloaded=()
seconds() {
    local start end
    start=$(date +%s.%N)
    "$@" < /dev/null > /dev/null 2>&1
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}
for _ in $(seq "$runs"); do
    plain+=("$(seconds "$@")")
    preloaded+=("$(seconds env LD_PRELOAD="$lib" "$@")")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
printf 'glibc   median %.3f s   runs %s\n' "$(median "${plain[@]}")" "${plain[*]}"
printf 'pyalloc median %.3f s   runs %s\n' "$(median "${preloaded[@]}")" "${preloaded[*]}"
