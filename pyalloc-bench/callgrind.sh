#!/usr/bin/env bash
# Instructions per alloc+free pair of 32 B, per peer, counted by callgrind (exact and repeatable,
# unlike time on a shared machine).
#
#   pyalloc-bench/callgrind.sh [N] [PEER...]
#
# PEER is a peer key, `loop` (the harness alone), `pyalloc-global` (`pyalloc::Global` through
# `GlobalAlloc`), `global-allocator` (`Global` as a binary's `#[global_allocator]`, `Box::new`
# and drop in a loop of its own: the path programs take), `pyalloc-pooled` and `pyalloc-poolbox` (a layer-3 hit on a `Heap` and on the
# thread's heap of `Global`) or `bare-lifo` (the same loop on a bare typed LIFO list).
#
# For each peer, runs `pairs PEER N` and `pairs PEER 2N` under `valgrind --tool=callgrind` and
# reports (Ir(2N) - Ir(N)) / N: start-up, CPython's initialisation included, cancels out. The
# figure includes the benchmark loop (a counter, `black_box`, and the chunking of
# `workloads::pairs`), a few instructions per pair. Two columns: with one other 32-byte block
# kept live (the pool stays in use, as in a running program), and with the size class
# otherwise empty (`--empty`: each free empties the pool, each allocation takes it again).
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-1000000}
shift || true
peers=("$@")
if [ ${#peers[@]} -eq 0 ]; then
  peers=(loop pyalloc pyalloc-global global-allocator glibc mimalloc mimalloc-globalalloc jemalloc pymalloc bumpalo lifo-floor
         pyalloc-pooled pyalloc-poolbox bare-lifo)
fi

command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q -p pyalloc-bench --bin pairs --bin pairs_global
bin=$CARGO_TARGET_DIR/release/pairs
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Total instructions (Ir) of one run of `pairs PEER COUNT [--empty]` (`global-allocator` runs
# the `pairs_global` binary instead: `Global` as its `#[global_allocator]`, `Box::new` + drop).
instructions() {
  local out=$tmp/$1.$2${3:-}
  local cmd=("$bin" "$@")
  if [ "$1" = global-allocator ]; then
    cmd=("$bin"_global "${@:2}")
  fi
  valgrind --tool=callgrind --callgrind-out-file="$out" "${cmd[@]}" >"$out.stdout" 2>"$out.log" || {
    cat "$out.stdout" "$out.log" >&2
    return 1
  }
  awk '/^(summary|totals):/ { print $2; exit }' "$out"
}

# Instructions per pair of `pairs PEER N [--empty]`.
per_pair() {
  local one two
  one=$(instructions "$1" "$n" ${2:-})
  two=$(instructions "$1" $((2 * n)) ${2:-})
  awk -v a="$one" -v b="$two" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n }'
}

printf '%-16s %14s %14s\n' peer "Ir/pair kept" "Ir/pair empty"
for peer in "${peers[@]}"; do
  if [ "$peer" = pymalloc ] && "$bin" pymalloc 0 | grep -q skipped; then
    echo "pymalloc: skipped (no libpython at build time)"
    continue
  fi
  kept=$(per_pair "$peer")
  if [ "$peer" = pyalloc-pooled ] || [ "$peer" = pyalloc-poolbox ] || [ "$peer" = bare-lifo ]; then
    empty=-
  else
    empty=$(per_pair "$peer" --empty)
  fi
  printf '%-16s %14s %14s\n' "$peer" "$kept" "$empty"
done
echo "(N = $n pairs of 32 B; Ir/pair = (Ir(2N) - Ir(N)) / N, loop included;"
echo " kept: one other 32 B block live; empty: nothing else live in the class;"
echo " loop: the pair loop on a peer that does nothing; pyalloc-pooled, -poolbox and bare-lifo share"
echo " a loop of their own: compare them with each other)"
