#!/usr/bin/env bash
# The real program under each global allocator, side by side: builds one binary per
# allocator feature, runs them RUNS times interleaved (run r starts at the r-th allocator of
# the list, so none always runs first), checks that every run printed the same output digest,
# and reports the median wall time (with min..max) and the median peak RSS per allocator.
#
#   pyalloc-bench/realprog/run.sh [RUNS] [-- PROGRAM ARGS...]
#   ALLOCATORS="system mimalloc" pyalloc-bench/realprog/run.sh 5 -- --records 1e5
#
# ALLOCATORS: features of pyalloc-realprog, by default "pyalloc system mimalloc jemalloc";
# ratios are to the first one. The binaries are kept
# in $CARGO_TARGET_DIR/realprog/realprog-FEATURE.
set -euo pipefail
cd "$(dirname "$0")/../.."

runs=${1:-5}
shift || true
if [ "${1:-}" = "--" ]; then
  shift
fi
read -r -a allocators <<<"${ALLOCATORS:-pyalloc system mimalloc jemalloc}"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
bindir=$CARGO_TARGET_DIR/realprog
mkdir -p "$bindir"
for a in "${allocators[@]}"; do
  cargo build --release -q -p pyalloc-realprog --features "$a"
  cp "$CARGO_TARGET_DIR/release/pyalloc-realprog" "$bindir/realprog-$a"
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

n=${#allocators[@]}
for ((r = 0; r < runs; r++)); do
  for ((k = 0; k < n; k++)); do
    a=${allocators[$(((k + r) % n))]}
    line=$("$bindir/realprog-$a" "$@" 2>"$tmp/stages" | grep '^result ') || {
      cat "$tmp/stages" >&2
      echo "realprog-$a failed" >&2
      exit 1
    }
    echo "run $((r + 1)): $line"
    # result allocator=A wall_s=W maxrss_mib=M digest=D
    awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); print kv[2] } }' <<<"$line" |
      paste -sd' ' >>"$tmp/result.$a"
  done
done

digests=$(cat "$tmp"/result.* | awk '{ print $4 }' | sort -u)
if [ "$(wc -l <<<"$digests")" -ne 1 ]; then
  echo "the outputs differ between runs:" $digests >&2
  exit 1
fi

# Median, min and max of column COL of FILE.
stats() {
  awk -v c="$2" '{ print $c }' "$1" | sort -g |
    awk '{ v[NR] = $1 } END {
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%s %s %s\n", m, v[1], v[NR] }'
}

echo
echo "pyalloc-realprog, $runs runs per allocator, interleaved; args: ${*:-(defaults)}; digest $digests"
printf '%-10s %8s %15s %8s %9s %12s %12s\n' allocator "wall s" "min..max" spread "÷ ${allocators[0]}" "peak RSS MiB" "min..max"
base=
for a in "${allocators[@]}"; do
  read -r wall lo hi < <(stats "$tmp/result.$a" 2)
  read -r rss rlo rhi < <(stats "$tmp/result.$a" 3)
  base=${base:-$wall}
  awk -v a="$a" -v w="$wall" -v lo="$lo" -v hi="$hi" -v b="$base" -v r="$rss" -v rlo="$rlo" -v rhi="$rhi" 'BEGIN {
    printf "%-10s %8.2f %15s %7.1f%% %9.2f %12.0f %12s\n", a, w, sprintf("%.2f..%.2f", lo, hi),
      (hi - lo) / 2 / w * 100, w / b, r, sprintf("%.0f..%.0f", rlo, rhi) }'
done
echo "(median of the runs; spread = half the min..max range over the median; wall = the"
echo " program's stages, start-up and exit excluded; peak RSS = getrusage's ru_maxrss)"
