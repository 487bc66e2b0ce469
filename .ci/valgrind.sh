#!/usr/bin/env bash
# Memcheck over pyalloc with the `valgrind` feature: the core tells memcheck which pool blocks
# are live, freed or uninitialised (client requests, pyalloc-core/src/valgrind.rs), so use after
# free, uninitialised reads and leaks inside arenas are seen as they are in malloc'd memory.
#
# 1. The test suites and minipy (package minipy: its tests, and one run of each workload) run
#    under memcheck and must report 0 errors and 0 definitely lost blocks (`--error-exitcode=1`).
# 2. Deliberate mistakes (pyalloc-core/tests/valgrind_memcheck.rs's ignored tests, and the
#    debug-mode tests that touch freed memory on purpose) must each be reported
#    (`--error-exitcode=99`): proof that memcheck really sees inside the pools.
#
# The binaries are built with optimisations (opt-level 2, debug assertions and line tables
# kept) in a target directory of their own: memcheck runs them ~30 times faster than
# unoptimised ones. PROPTEST_CASES=16 shrinks the proptests that do not fix their case count.
# Two valgrind processes run at a time (valgrind runs one thread of a process at a time).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null; then
    echo "valgrind.sh: installing valgrind"
    apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi
valgrind --version

export CARGO_TERM_COLOR=never
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/valgrind"
export CARGO_PROFILE_DEV_OPT_LEVEL=2
export CARGO_PROFILE_DEV_DEBUG=line-tables-only
export PROPTEST_CASES=16
export RUST_BACKTRACE=0
LOGS="$CARGO_TARGET_DIR/memcheck-logs"
rm -rf "$LOGS" && mkdir -p "$LOGS"

MEMCHECK=(valgrind --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite
    --num-callers=30)

# Build every test binary with the feature and find each one's executable by target name.
cargo build --locked -p minipy --features valgrind
cargo test --locked -p pyalloc-core -p pyalloc -p minipy --features valgrind --no-run \
    --message-format=json >"$LOGS/build.json"
declare -A BIN
while read -r name exe; do
    BIN[$name]=$exe
done < <(grep '"executable":"' "$LOGS/build.json" |
    sed -n 's/.*"target":{[^}]*"name":"\([^"]*\)".*"executable":"\([^"]*\)".*/\1 \2/p')
for name in model minipy pyalloc_core valgrind_memcheck heap debug_mode unhappy derive; do
    [[ -x "${BIN[$name]:-}" ]] || { echo "valgrind.sh: no test binary named $name" >&2; exit 1; }
done
bin() { echo "${BIN[$1]}"; }
MINIPY="$CARGO_TARGET_DIR/debug/minipy"

# The debug-mode tests that read or write freed memory on purpose: memcheck must catch them.
DELIBERATE_DEBUG=(freed_blocks_are_filled_with_the_dead_pattern
    write_after_free_is_caught_when_the_block_is_reused
    write_to_a_slot_on_a_free_list_is_caught_when_popped)
# The debug mode's own write-after-free tests: each writes into memory the core has told
# memcheck is no longer addressable (a freed pool block, a quarantined large block, a slot
# resting out of band), so memcheck must report each as an invalid write.
DELIBERATE_WRITES=(write_to_the_first_word_of_a_resting_slot_is_caught
    write_after_free_into_a_large_block_is_caught_by_check
    write_after_free_into_a_large_block_is_caught_by_trim
    write_after_free_into_a_large_block_is_caught_when_it_leaves_the_quarantine
    write_after_free_is_caught_before_the_pool_is_recycled
    a_corrupted_free_block_link_is_caught_before_it_is_followed
    clearing_the_free_lists_checks_each_slot
    trim_checks_each_slot
    shrinking_a_free_list_checks_each_slot_it_evicts
    check_reports_a_written_resting_slot)
SKIPS=()
for t in "${DELIBERATE_DEBUG[@]}" "${DELIBERATE_WRITES[@]}"; do SKIPS+=(--skip "$t"); done

FAILED="$LOGS/failed"
: >"$FAILED"
# clean LABEL CMD...: memcheck must find nothing.
clean() {
    local label=$1 log="$LOGS/$1.log"
    shift
    local start=$SECONDS rc=0
    "${MEMCHECK[@]}" --error-exitcode=1 "$@" >"$log" 2>&1 || rc=$?
    local summary lost
    summary=$(grep -o 'ERROR SUMMARY: [0-9]* errors' "$log" | tail -1 || true)
    lost=$(grep -o 'definitely lost: [0-9,]* bytes' "$log" | tail -1 || true)
    printf '  %-34s %-26s %-28s %4ss\n' "$label" "$summary" "${lost:-definitely lost: 0 bytes}" \
        $((SECONDS - start))
    if [[ $rc -ne 0 ]]; then
        echo "FAILED (exit $rc): $label; the end of $log:"
        tail -60 "$log"
        echo "$label" >>"$FAILED"
    fi
}
# caught LABEL PATTERN CMD...: memcheck must report PATTERN and exit 99.
caught() {
    local label=$1 pattern=$2 log="$LOGS/$1.log"
    shift 2
    local rc=0
    "${MEMCHECK[@]}" --error-exitcode=99 "$@" >"$log" 2>&1 || rc=$?
    if [[ $rc -eq 99 ]] && grep -q "$pattern" "$log"; then
        printf '  %-60s caught: %s\n' "$label" "$pattern"
    else
        echo "NOT CAUGHT (exit $rc, wanted 99 and \"$pattern\"): $label; the end of $log:"
        tail -40 "$log"
        echo "$label" >>"$FAILED"
    fi
}
# Runs its arguments in the background, at most two at a time.
spawn() {
    while [[ $(jobs -rp | wc -l) -ge 2 ]]; do wait -n || true; done
    "$@" &
}

echo "memcheck, expecting no error and no definite leak:"
spawn clean model "$(bin model)"
spawn clean minipy-tests "$(bin minipy)"
spawn clean pyalloc-core-unit "$(bin pyalloc_core)"
spawn clean valgrind_memcheck "$(bin valgrind_memcheck)"
spawn clean heap "$(bin heap)"
spawn clean debug_mode "$(bin debug_mode)" "${SKIPS[@]}"
spawn clean unhappy "$(bin unhappy)"
spawn clean derive "$(bin derive)"
for w in nqueens json_dumps float richards; do
    spawn clean "minipy-$w" "$MINIPY" "$w" --size 1 --runs 1
done
wait

echo "memcheck, expecting each deliberate mistake to be reported:"
VM=$(bin valgrind_memcheck)
DM=$(bin debug_mode)
spawn caught read_after_free_of_a_pool_block "Invalid read" \
    "$VM" --ignored --exact read_after_free_of_a_pool_block
spawn caught write_after_free_of_a_pool_block "Invalid write" \
    "$VM" --ignored --exact write_after_free_of_a_pool_block
spawn caught branch_on_uninitialised_pool_memory "depends on uninitialised value" \
    "$VM" --ignored --exact branch_on_uninitialised_pool_memory
spawn caught read_of_a_pooled_value_on_its_free_list "Invalid read" \
    "$VM" --ignored --exact read_of_a_pooled_value_on_its_free_list
spawn caught leaked_pool_block_is_definitely_lost "definitely lost in loss record" \
    "$VM" --ignored --exact leaked_pool_block_is_definitely_lost
spawn caught "debug_mode::${DELIBERATE_DEBUG[0]}" "Invalid read" \
    "$DM" --exact "${DELIBERATE_DEBUG[0]}"
spawn caught "debug_mode::${DELIBERATE_DEBUG[1]}" "Invalid write" \
    "$DM" --exact "${DELIBERATE_DEBUG[1]}"
spawn caught "debug_mode::${DELIBERATE_DEBUG[2]}" "Invalid write" \
    "$DM" --exact "${DELIBERATE_DEBUG[2]}"
for t in "${DELIBERATE_WRITES[@]}"; do
    spawn caught "debug_mode::$t" "Invalid write" "$DM" --exact "$t"
done
wait

if [[ -s "$FAILED" ]]; then
    echo "valgrind.sh: FAILED: $(tr '\n' ' ' <"$FAILED")"
    exit 1
fi
echo "valgrind.sh: all clean runs clean, every deliberate mistake caught (logs in $LOGS)"
