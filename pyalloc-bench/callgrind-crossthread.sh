#!/usr/bin/env bash
# W8 under callgrind: instructions per cross-thread alloc+free pair of a 64-byte box, per peer
# (exact up to the thread interleaving valgrind picks: repeated runs agree within 1%, about
# two instructions per pair).
#
#   pyalloc-bench/callgrind-crossthread.sh [N] [PEER...]
#
# PEER is a key of `crossthread --peers` (glibc, mimalloc, jemalloc; pyalloc once its arm is
# in). For each peer, runs `crossthread --peers PEER --runs 1 --pairs N` and `--pairs 2N`
# (1 producer, 1 consumer) under `valgrind --tool=callgrind` and reports (Ir(2N) - Ir(N)) / N,
# so start-up, thread creation and each allocator's first-use set-up cancel out. Two columns:
#
# - allocator: only the instructions inside `crossthread::alloc_box` and
#   `crossthread::free_box` (`--toggle-collect`), the allocator's own work on both threads,
#   plus a call and a return per function (about 4 instructions per pair);
# - whole: every instruction of the run: the allocator, writing and checking each box's
#   pattern, the batches and the channel, including the channel's spinning while one thread
#   waits for the other, which depends on how valgrind interleaves the threads (it runs one
#   at a time): read it as the harness's share, and compare allocators on the first column.
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-1000000}
shift || true
peers=("$@")
if [ ${#peers[@]} -eq 0 ]; then
  peers=(glibc mimalloc jemalloc)
fi

command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q -p pyalloc-bench --bin crossthread
bin=$CARGO_TARGET_DIR/release/crossthread
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Collected instructions (Ir) of one run of `crossthread` on PEER with COUNT pairs; MODE is
# `allocator` (inside alloc_box and free_box only) or `whole`.
instructions() {
  local peer=$1 count=$2 mode=$3
  local out=$tmp/$peer.$count.$mode
  local toggles=()
  if [ "$mode" = allocator ]; then
    toggles=(--toggle-collect='*crossthread::alloc_box*' --toggle-collect='*crossthread::free_box*')
  fi
  valgrind --tool=callgrind --callgrind-out-file="$out" "${toggles[@]}" \
    "$bin" --peers "$peer" --runs 1 --pairs "$count" --producers 1 --consumers 1 \
    >"$out.stdout" 2>"$out.log" || {
    cat "$out.stdout" "$out.log" >&2
    return 1
  }
  awk '/^(summary|totals):/ { print $2; exit }' "$out"
}

# Instructions per pair: (Ir(2N) - Ir(N)) / N.
per_pair() {
  local one two
  one=$(instructions "$1" "$n" "$2")
  two=$(instructions "$1" $((2 * n)) "$2")
  awk -v a="$one" -v b="$two" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n }'
}

printf '%-12s %16s %16s\n' peer "Ir/pair alloc" "Ir/pair whole"
for peer in "${peers[@]}"; do
  alloc=$(per_pair "$peer" allocator)
  whole=$(per_pair "$peer" whole)
  printf '%-12s %16s %16s\n' "$peer" "$alloc" "$whole"
done
echo "(N = $n boxes of 64 B, 1 producer -> 1 consumer, batches of 256;"
echo " Ir/pair = (Ir(2N) - Ir(N)) / N; alloc: inside alloc_box + free_box, both threads;"
echo " whole: the whole run, pattern checks and channel included)"
