#!/usr/bin/env bash
# The C cross-check of `replay`: replays each trace on each malloc-compatible shared library
# from a C program (replay_c.c, built with `cc -O2`), interleaving the libraries round by round,
# and prints ns per event (median, fastest..slowest) per trace and library.
#
#   pyalloc-bench/cabi/cross-check.sh [ROUNDS] [TRACE...]
#
# Libraries: glibc, Debian's libmimalloc.so.2 and libjemalloc.so.2 when installed, the mimalloc
# v2 and v3 libraries build.rs makes from the `mimalloc` crate's sources, and any NAME=PATH in
# $CABI_LIBS (space-separated), e.g. CABI_LIBS="pyalloc=target/release/libpyalloc_malloc.so".
# Each round runs every library for 3 timed replays after 1 untimed one, so ROUNDS (default 3)
# gives 3 × ROUNDS runs per library. REPLAY_CLOCK=cpu times by the thread's CPU time instead of
# the wall clock (as `replay --clock cpu`). With CALLGRIND=1, counts instructions per event
# inside the replay loop instead (valgrind; one warm run per library, exact).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
shift || true
traces=("$@")
if [ ${#traces[@]} -eq 0 ]; then
  traces=(../../shared/traces/*.trace.gz)
  [ -e "${traces[0]}" ] || traces=(/work/shared/traces/*.trace.gz)
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O2 -o "$tmp/replay_c" pyalloc-bench/cabi/replay_c.c -ldl -lz
# Debian's libjemalloc uses initial-exec TLS: dlopen needs room in the static TLS block.
export GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384

libs=("glibc=libc.so.6")
for spec in "mimalloc-debian=libmimalloc.so.2" "jemalloc-debian=libjemalloc.so.2"; do
  ldconfig -p | grep -q "${spec#*=}" && libs+=("$spec")
done
for line in v2 v3; do
  so=$(ls -t "$CARGO_TARGET_DIR"/release/build/pyalloc-bench-*/out/libmimalloc-$line.so 2>/dev/null | head -1 || true)
  [ -n "$so" ] && libs+=("mimalloc-$line=$so")
done
for spec in ${CABI_LIBS:-}; do libs+=("$spec"); done

for trace in "${traces[@]}"; do
  name=$(basename "$trace" .trace.gz)
  if [ "${CALLGRIND:-0}" = 1 ]; then
    n=$(zcat "$trace" | wc -l)
    for spec in "${libs[@]}"; do
      out=$tmp/cg.$name.${spec%%=*}
      valgrind --tool=callgrind --toggle-collect=run --dump-after=run --callgrind-out-file="$out" \
        "$tmp/replay_c" "${spec#*=}" "$trace" 1 1 >/dev/null 2>"$out.log"
      # The second dump is the timed (warm) replay.
      awk -v n="$n" -v t="$name" -v l="${spec%%=*}" \
        '/^totals:/ { printf "%s %s %.1f Ir/event\n", t, l, $2 / n; exit }' "$out.2"
    done
    continue
  fi
  for ((r = 0; r < rounds; r++)); do
    for spec in "${libs[@]}"; do
      "$tmp/replay_c" "${spec#*=}" "$trace" 3 1 | awk -v l="${spec%%=*}" '/^run/ { print l, $3 }' >>"$tmp/$name"
    done
  done
  echo "$name (ns per event, median fastest..slowest of $((3 * rounds)) runs)"
  for spec in "${libs[@]}"; do
    l=${spec%%=*}
    awk -v l="$l" '$1 == l { print $2 }' "$tmp/$name" | sort -g | awk -v l="$l" '
      { v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
        printf "  %-18s %7.2f  %.2f..%.2f\n", l, m, v[1], v[NR] }'
  done
done
